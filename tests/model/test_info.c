/*
 * tests/model/test_info.c - every number mfs_model_info_compute gives
 * (.modelfs/info) against data/golden/model-ops.json, for every model
 * there, tied weights included (issue #4: bert-tiniest, a BertLMHeadModel,
 * is tied; BertModel has no head and ties nothing).
 *
 * EVIDENCE-OF: docs/design.md "num_parameters (total, and without
 * embeddings), memory footprint in bytes per dtype ..., floating-point
 * ops per token (transformers' 6*N rule), can_generate, tied weights".
 */
#include "test_infer_io.h"

static uint64_t num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);

    return cJSON_IsNumber(v) ? (uint64_t)v->valuedouble : UINT64_MAX;
}

/* Golden: a model is tied when its state dict holds aliases of a
 * parameter (lm_head.weight, cls.predictions.decoder.*). */
static bool golden_tied(const cJSON *mo)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(mo, "state_dict_aliases_not_in_parameters")) > 0;
}

/* Independent of the golden file: what each model's class implies, so a
 * golden file that lost its alias list cannot make the test pass. */
static const struct {
    const char *model;
    bool tied;
} tied_rows[] = {
    { "stories260K-hf", true },
    { "fake-gpt2", true },
    { "tiny-random-llama", false },
    { "tiny-random-mistral", false },
    { "tiny-random-qwen2", true },
    { "tiny-random-gpt2", true },
    { "tiny-random-bloom", true },
    { "tiny-random-bert", false },          /* BertModel: no head */
    { "bert-tiniest", true },               /* BertLMHeadModel, default tie (issue #4) */
    { "stories260K-hf-bf16", true },
    { "tiny-random-llama-bf16", false },
};

static void check_one(const char *name, const cJSON *mo)
{
    const cJSON *fp = cJSON_GetObjectItem(mo, "memory_footprint");
    const cJSON *f32 = cJSON_GetObjectItem(fp, "float32");
    const cJSON *bf16 = cJSON_GetObjectItem(fp, "bfloat16");
    const cJSON *autod = cJSON_GetObjectItem(fp, "torch_dtype_auto");
    const cJSON *ld = cJSON_GetObjectItem(autod, "loaded_dtype");
    struct ti_repo *r = calloc(1, sizeof(*r));
    struct mfs_model_config cfg;
    struct mfs_model_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_ckpt *ck = NULL;
    const cJSON *fl;
    char path[1100];
    size_t len = 0;
    char *text = NULL;
    bool flops_ok = true;
    bool row_seen = false;
    size_t i;
    int rc;

    rc = r && ti_repo_open(r, name) == 0 ? 0 : -1;
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/config.json", r->dir);
        text = ti_slurp(path, &len);
    }
    rc = text ? mfs_model_config_parse(text, len, &cfg, &err) : -1;
    if (rc == 0)
        rc = mfs_ckpt_open(r->files, r->n, NULL, &r->io, &ck, &err);
    if (rc == 0)
        rc = mfs_model_info_compute(&cfg, ck, &info, &err);
    CHECK(rc == 0, "%s: info computed (%s)", name, err.msg);
    if (rc < 0)
        goto out_free;
    CHECK(info.num_parameters == num(mo, "num_parameters") &&
          info.num_parameters == num(mo, "num_parameters_only_trainable"),
          "%s: num_parameters %llu", name, (unsigned long long)info.num_parameters);
    CHECK(info.num_parameters_exclude_embeddings == num(mo, "num_parameters_exclude_embeddings"),
          "%s: num_parameters without embeddings %llu", name,
          (unsigned long long)info.num_parameters_exclude_embeddings);
    CHECK(info.footprint_f32 == num(f32, "get_memory_footprint"),
          "%s: F32 footprint %llu", name, (unsigned long long)info.footprint_f32);
    CHECK(info.footprint_bf16 == num(bf16, "get_memory_footprint"),
          "%s: BF16 footprint %llu", name, (unsigned long long)info.footprint_bf16);
    /* float16 has bfloat16's element size for parameters and buffers. */
    CHECK(info.footprint_f16 == num(bf16, "get_memory_footprint"),
          "%s: F16 footprint %llu", name, (unsigned long long)info.footprint_f16);
    CHECK(info.footprint_int8 > 0 && info.footprint_int8 < info.footprint_bf16 &&
          info.footprint_int4 > 0 && info.footprint_int4 < info.footprint_int8,
          "%s: 8-bit %llu < BF16, 4-bit %llu < 8-bit", name,
          (unsigned long long)info.footprint_int8, (unsigned long long)info.footprint_int4);
    cJSON_ArrayForEach(fl, cJSON_GetObjectItem(mo, "floating_point_ops")) {
        uint64_t tok = (uint64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(fl, "input_ids_shape"),
                                                    1)->valuedouble;

        flops_ok = flops_ok && info.flops_per_token * tok == num(fl, "value") &&
                   info.flops_per_token_all * tok == num(fl, "exclude_embeddings_false");
    }
    CHECK(flops_ok, "%s: floating_point_ops %llu / %llu per token", name,
          (unsigned long long)info.flops_per_token, (unsigned long long)info.flops_per_token_all);
    CHECK(info.can_generate == cJSON_IsTrue(cJSON_GetObjectItem(mo, "can_generate")),
          "%s: can_generate %d", name, info.can_generate);
    CHECK(info.tied == golden_tied(mo), "%s: tied %d (golden aliases: %d)", name, info.tied,
          golden_tied(mo));
    for (i = 0; i < sizeof(tied_rows) / sizeof(tied_rows[0]); i++) {
        if (strcmp(tied_rows[i].model, name) != 0)
            continue;
        row_seen = true;
        CHECK(info.tied == tied_rows[i].tied, "%s: tied row says %d", name, tied_rows[i].tied);
    }
    CHECK(row_seen, "%s: has a tied row", name);
    CHECK(cJSON_IsString(ld) && !strcmp(info.loaded_dtype_auto, ld->valuestring),
          "%s: torch_dtype auto loads %s", name, info.loaded_dtype_auto);
out_free:
    mfs_ckpt_free(&ck);
    free(text);
    free(r);
}

int main(void)
{
    cJSON *ops = ti_golden("model-ops.json");
    const cJSON *mo;
    int n = 0;

    CHECK(ops != NULL, "model-ops.json parses");
    if (ops) {
        cJSON_ArrayForEach(mo, cJSON_GetObjectItem(ops, "models")) {
            check_one(mo->string, mo);
            n++;
        }
    }
    CHECK(n == (int)(sizeof(tied_rows) / sizeof(tied_rows[0])), "%d models in model-ops.json",
          n);
    cJSON_Delete(ops);
    return check_done();
}
