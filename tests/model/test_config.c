/*
 * tests/model/test_config.c - model/config.c (config.json,
 * generation_config.json, RoPE frequencies) and the .modelfs/info numbers
 * of model.c checked exactly against data/golden/model-ops.json
 * (transformers' num_parameters, get_memory_footprint, floating_point_ops,
 * can_generate; README section 4).
 *
 * EVIDENCE-OF: docs/design.md "num_parameters (total, and without
 * embeddings), memory footprint in bytes per dtype ..., floating-point
 * ops per token (transformers' 6*N rule), can_generate".
 */
#include <math.h>

#include "test_infer_io.h"

static int parse_text(const char *json, struct mfs_model_config *cfg, struct mfs_err *err)
{
    return mfs_model_config_parse(json, strlen(json), cfg, err);
}

static void check_folders(void)
{
    static const struct {
        const char *model;
        enum mfs_arch arch;
        int64_t vocab;
        int64_t n_kv;
        int64_t head_dim;
        int64_t window;
        bool tied;
    } rows[] = {
        { "stories260K-hf", MFS_ARCH_LLAMA, 512, 4, 8, 0, true },
        { "tiny-random-llama", MFS_ARCH_LLAMA, 32011, 2, 4, 0, false },
        { "tiny-random-mistral", MFS_ARCH_LLAMA, 512, 2, 16, 8, false },
        { "tiny-random-qwen2", MFS_ARCH_LLAMA, 50257, 2, 4, 0, true },
        { "tiny-random-gpt2", MFS_ARCH_GPT2, 50257, 4, 4, 0, true },
        { "fake-gpt2", MFS_ARCH_GPT2, 50257, 1, 2, 0, true },
        { "tiny-random-bert", MFS_ARCH_BERT, 30522, 4, 4, 0, true },
        { "bert-tiniest", MFS_ARCH_BERT, 30522, 1, 4, 0, true },
        { "tiny-random-bloom", MFS_ARCH_BLOOM, 1024, 4, 8, 0, true },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_model_config cfg;
        struct mfs_gen_config gen;
        struct mfs_err err = MFS_ERR_INIT;
        char path[1024];
        size_t len = 0;
        char *text;
        int rc;

        snprintf(path, sizeof(path), "%s/models/%s/config.json", check_data_dir(),
                 rows[i].model);
        text = ti_slurp(path, &len);
        rc = text ? mfs_model_config_parse(text, len, &cfg, &err) : -1;
        CHECK(rc == 0 && cfg.arch == rows[i].arch && cfg.vocab_size == rows[i].vocab &&
              cfg.n_kv_heads == rows[i].n_kv && cfg.head_dim == rows[i].head_dim &&
              cfg.sliding_window == rows[i].window && cfg.tie_word_embeddings == rows[i].tied,
              "%s: config.json -> %s, vocab %lld, kv heads %lld, head_dim %lld, window %lld (%s)",
              rows[i].model, mfs_model_arch_name(cfg.arch), (long long)cfg.vocab_size,
              (long long)cfg.n_kv_heads, (long long)cfg.head_dim, (long long)cfg.sliding_window,
              err.msg);
        free(text);
        snprintf(path, sizeof(path), "%s/models/%s/generation_config.json", check_data_dir(),
                 rows[i].model);
        text = ti_slurp(path, &len);
        rc = mfs_gen_config_parse(text, text ? len : 0, &cfg, &gen, &err);
        CHECK(rc == 0 && gen.max_length == 20 && !gen.do_sample && gen.top_k == 50 &&
              gen.temperature == 1.0 && gen.max_new_tokens == -1,
              "%s: generation_config.json over GenerationConfig defaults (%s)", rows[i].model,
              err.msg);
        free(text);
    }
}

static void check_bad_configs(void)
{
    static const struct {
        const char *json;
        const char *why;
    } rows[] = {
        { "[1,2]", "not a JSON object" },
        { "{\"model_type\":\"llama\",", "truncated" },
        { "{\"model_type\":7}", "model_type not a string" },
        { "{\"model_type\":\"llama\",\"hidden_size\":\"64\"}", "hidden_size a string" },
        { "{\"model_type\":\"llama\",\"hidden_size\":-64}", "negative hidden_size" },
        { "{\"model_type\":\"llama\",\"hidden_size\":64.5}", "fractional hidden_size" },
        { "{\"model_type\":\"llama\",\"num_attention_heads\":8,\"num_key_value_heads\":3}",
          "heads not a multiple of kv heads" },
        { "{\"model_type\":\"gpt2\",\"n_embd\":10,\"n_head\":3}", "n_embd not divisible" },
        { "{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2}}",
          "unknown rope_scaling" },
        { "{\"model_type\":\"llama\",\"hidden_act\":\"swoosh\"}", "unknown activation" },
        { "{\"model_type\":\"llama\",\"eos_token_id\":[1,\"x\"]}", "eos list with a string" },
        { "{\"model_type\":\"llama\",\"tie_word_embeddings\":1}", "tie not a boolean" },
        { "{\"model_type\":\"bloom\",\"apply_residual_connection_post_layernorm\":true}",
          "bloom post-LN residual" },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_model_config cfg;
        struct mfs_err err = MFS_ERR_INIT;
        int rc = parse_text(rows[i].json, &cfg, &err);

        CHECK(rc == -EINVAL && err.msg[0], "bad config (%s): -EINVAL \"%s\"", rows[i].why,
              err.msg);
    }
    {
        struct mfs_model_config cfg;
        struct mfs_gen_config gen;
        struct mfs_err err = MFS_ERR_INIT;
        const char *g = "{\"eos_token_id\":[2,7],\"max_new_tokens\":64,\"do_sample\":true,"
                        "\"top_p\":0.9,\"temperature\":0.7}";
        int rc = parse_text("{\"model_type\":\"llama\",\"eos_token_id\":2}", &cfg, &err);

        rc = rc == 0 ? mfs_gen_config_parse(g, strlen(g), &cfg, &gen, &err) : rc;
        CHECK(rc == 0 && gen.n_eos == 2 && gen.eos_token_id[1] == 7 && gen.max_new_tokens == 64 &&
              gen.do_sample && gen.top_p == 0.9 && gen.temperature == 0.7,
              "generation_config: eos list and sampling settings (%s)", err.msg);
        g = "{\"top_p\":1.5}";
        rc = mfs_gen_config_parse(g, strlen(g), &cfg, &gen, &err);
        CHECK(rc == -EINVAL, "generation_config top_p 1.5: -EINVAL \"%s\"", err.msg);
    }
}

static void check_rope(void)
{
    struct mfs_model_config cfg;
    struct mfs_err err = MFS_ERR_INIT;
    float base[64];
    float f[64];
    int rc;
    int i;
    int ok;

    rc = parse_text("{\"model_type\":\"llama\",\"hidden_size\":1024,\"num_attention_heads\":8,"
                    "\"rope_theta\":500000.0}", &cfg, &err);
    mfs_model_config_inv_freq(&cfg, 16, base);
    CHECK(rc == 0 && base[0] == 1.0f && fabsf(base[1] - 1.0f / powf(500000.0f, 2.0f / 128)) <
          1e-9f, "rope inv_freq = 1/theta^(2i/d)");
    rc = parse_text("{\"model_type\":\"llama\",\"hidden_size\":1024,\"num_attention_heads\":8,"
                    "\"rope_theta\":500000.0,\"rope_scaling\":{\"type\":\"linear\","
                    "\"factor\":4.0}}", &cfg, &err);
    mfs_model_config_inv_freq(&cfg, 16, f);
    for (ok = rc == 0, i = 0; i < 64; i++)
        ok = ok && fabsf(f[i] - base[i] / 4) <= 1e-6f * base[i];
    CHECK(ok, "rope_scaling linear divides every frequency by the factor");
    rc = parse_text("{\"model_type\":\"llama\",\"hidden_size\":1024,\"num_attention_heads\":8,"
                    "\"rope_theta\":500000.0,\"max_position_embeddings\":100,"
                    "\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}", &cfg, &err);
    mfs_model_config_inv_freq(&cfg, 50, f);
    ok = rc == 0 && !memcmp(f, base, sizeof(f));
    mfs_model_config_inv_freq(&cfg, 400, f);
    ok = ok && f[0] == 1.0f && f[63] < base[63];
    CHECK(ok, "rope_scaling dynamic: unchanged within max positions, lower beyond");
    rc = parse_text("{\"model_type\":\"llama\",\"hidden_size\":1024,\"num_attention_heads\":8,"
                    "\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\","
                    "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                    "\"original_max_position_embeddings\":8192}}", &cfg, &err);
    mfs_model_config_inv_freq(&cfg, 16, f);
    CHECK(rc == 0 && f[0] == base[0] && fabsf(f[63] - base[63] / 8) <= 1e-6f * base[63] &&
          f[40] <= base[40] && f[40] >= base[40] / 8,
          "rope_scaling llama3: high frequencies kept, low ones / factor, smooth between (%s)",
          err.msg);
}

static uint64_t num(const cJSON *o, const char *k)
{
    return (uint64_t)cJSON_GetObjectItem(o, k)->valuedouble;
}

static void check_model_ops(void)
{
    cJSON *ops = ti_golden("model-ops.json");
    const cJSON *mo;

    CHECK(ops != NULL, "model-ops.json parses");
    if (!ops)
        return;
    cJSON_ArrayForEach(mo, cJSON_GetObjectItem(ops, "models")) {
        const char *name = mo->string;
        const cJSON *fp = cJSON_GetObjectItem(mo, "memory_footprint");
        const cJSON *fl;
        struct ti_repo *r = calloc(1, sizeof(*r));
        struct mfs_model_config cfg;
        struct mfs_model_info info;
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_ckpt *ck = NULL;
        char path[1100];
        size_t len = 0;
        char *text;
        int flops_ok = 1;
        int rc;

        rc = r && ti_repo_open(r, name) == 0 ? 0 : -1;
        snprintf(path, sizeof(path), "%s/config.json", r ? r->dir : "");
        text = rc == 0 ? ti_slurp(path, &len) : NULL;
        rc = text ? mfs_model_config_parse(text, len, &cfg, &err) : -1;
        if (rc == 0)
            rc = mfs_ckpt_open(r->files, r->n, NULL, &r->io, &ck, &err);
        if (rc == 0)
            rc = mfs_model_info_compute(&cfg, ck, &info, &err);
        CHECK(rc == 0, "%s: info computed (%s)", name, err.msg);
        if (rc == 0) {
            CHECK(info.num_parameters == num(mo, "num_parameters") &&
                  info.num_parameters_exclude_embeddings ==
                  num(mo, "num_parameters_exclude_embeddings"),
                  "%s: num_parameters %llu / %llu without embeddings", name,
                  (unsigned long long)info.num_parameters,
                  (unsigned long long)info.num_parameters_exclude_embeddings);
            CHECK(info.footprint_f32 ==
                  num(cJSON_GetObjectItem(fp, "float32"), "get_memory_footprint") &&
                  info.footprint_bf16 ==
                  num(cJSON_GetObjectItem(fp, "bfloat16"), "get_memory_footprint"),
                  "%s: memory footprint f32 %llu, bf16 %llu", name,
                  (unsigned long long)info.footprint_f32,
                  (unsigned long long)info.footprint_bf16);
            CHECK(info.can_generate == cJSON_IsTrue(cJSON_GetObjectItem(mo, "can_generate")),
                  "%s: can_generate %d", name, info.can_generate);
            CHECK(!strcmp(info.loaded_dtype_auto,
                          cJSON_GetObjectItem(cJSON_GetObjectItem(fp, "torch_dtype_auto"),
                                              "loaded_dtype")->valuestring),
                  "%s: torch_dtype auto loads %s", name, info.loaded_dtype_auto);
            cJSON_ArrayForEach(fl, cJSON_GetObjectItem(mo, "floating_point_ops")) {
                uint64_t tok = (uint64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(fl,
                                                            "input_ids_shape"), 1)->valuedouble;

                flops_ok = flops_ok && info.flops_per_token * tok == num(fl, "value") &&
                           info.flops_per_token_all * tok == num(fl, "exclude_embeddings_false");
            }
            CHECK(flops_ok, "%s: floating_point_ops = 6 * tokens * N for [1,1], [1,16], [1,128]",
                  name);
        }
        mfs_ckpt_free(&ck);
        free(text);
        free(r);
    }
    cJSON_Delete(ops);
}

int main(void)
{
    check_folders();
    check_bad_configs();
    check_rope();
    check_model_ops();
    return check_done();
}
