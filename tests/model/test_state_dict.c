/*
 * tests/model/test_state_dict.c - model/state_dict.c: the order in which
 * transformers' state_dict() yields a checkpoint's names, checked against
 * data/golden/sharding.json's state_dict_order (whatever order the names
 * come in), against the real checkpoints of every data/models folder (each
 * name exactly once, the architecture's known landmarks in place, layers in
 * numeric order), and on small tables for unknown names and architectures.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/checkpoint.h"
#include "model/shard.h"

#define MAX_FILES 64

/* A data/models folder as a repo. */
struct repo {
    char dir[1024];
    size_t n;
    struct mfs_ckpt_file files[MAX_FILES];
    char names[MAX_FILES][256];
};

static ssize_t repo_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    const struct repo *r = ctx;
    char real[1400];

    snprintf(real, sizeof(real), "%s/%s", r->dir, path);
    return check_pread_file(real, off, len, buf, err);
}

static int repo_load(struct repo *r, const char *dir)
{
    struct dirent *de;
    DIR *dp;

    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    dp = opendir(dir);
    if (!dp)
        return -1;
    while ((de = readdir(dp)) && r->n < MAX_FILES) {
        char real[1400];
        struct stat st;

        snprintf(real, sizeof(real), "%s/%s", dir, de->d_name);
        if (stat(real, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(r->names[r->n], sizeof(r->names[r->n]), "%s", de->d_name);
        r->files[r->n].path = r->names[r->n];
        r->files[r->n].size = (uint64_t)st.st_size;
        r->n++;
    }
    closedir(dp);
    return 0;
}

static char *model_config(const char *model, size_t *len)
{
    char path[1024];

    snprintf(path, sizeof(path), "%s/models/%s/config.json", check_data_dir(), model);
    return check_slurp(path, len);
}

/* Order names[0..n) and check the result is golden[0..n). */
static int same_order(const char *cfg, size_t cfg_len, const char **names, size_t n,
                      const char *const *golden)
{
    size_t *order = calloc(n + 1, sizeof(*order));
    struct mfs_err e = MFS_ERR_INIT;
    size_t i;
    int same;

    same = mfs_model_state_dict_order(cfg, cfg_len, names, n, order, &e) == 0;
    for (i = 0; same && i < n; i++) {
        if (strcmp(names[order[i]], golden[i])) {
            printf("# at %zu: got '%s', want '%s'\n", i, names[order[i]], golden[i]);
            same = 0;
        }
    }
    free(order);
    return same;
}

static void test_golden(void)
{
    char path[1024];
    const cJSON *cases;
    const cJSON *c;
    cJSON *root;
    char *text;
    size_t len;
    int n_cases = 0;

    snprintf(path, sizeof(path), "%s/golden/sharding.json", check_data_dir());
    text = check_slurp(path, &len);
    CHECK(text != NULL, "read %s", path);
    if (!text)
        return;
    root = cJSON_ParseWithLength(text, len);
    cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    cJSON_ArrayForEach(c, cases) {
        const char *model = cJSON_GetObjectItemCaseSensitive(c, "model")->valuestring;
        const cJSON *sd = cJSON_GetObjectItemCaseSensitive(c, "state_dict_order");
        const char *size = cJSON_GetObjectItemCaseSensitive(c, "max_shard_size")->valuestring;
        size_t n = (size_t)cJSON_GetArraySize(sd);
        const char **golden = calloc(n + 1, sizeof(*golden));
        const char **shuffled = calloc(n + 1, sizeof(*shuffled));
        size_t cfg_len = 0;
        char *cfg = model_config(model, &cfg_len);
        size_t i;

        for (i = 0; i < n; i++)
            golden[i] = cJSON_GetArrayItem(sd, (int)i)->valuestring;
        /* reversed */
        for (i = 0; i < n; i++)
            shuffled[i] = golden[n - 1 - i];
        CHECK(cfg && same_order(cfg, cfg_len, shuffled, n, golden),
              "%s %s: golden state_dict_order from reversed names", model, size);
        /* a stride permutation (7 is prime to every n here but multiples of 7) */
        for (i = 0; i < n; i++)
            shuffled[i] = golden[(i * 7 + 3) % n];
        if (n % 7 != 0)
            CHECK(cfg && same_order(cfg, cfg_len, shuffled, n, golden),
                  "%s %s: golden state_dict_order from shuffled names", model, size);
        /* file order: the data-offset order of the shards as written */
        free(cfg);
        free(shuffled);
        free(golden);
        n_cases++;
    }
    CHECK(n_cases >= 7, "golden cases: %d", n_cases);
    cJSON_Delete(root);
    free(text);
}

/* Landmarks: the name at position pos (negative: from the end). */
static const struct {
    const char *model;
    long pos;
    const char *name;
} landmarks[] = {
    { "stories260K-hf-sharded", 0, "model.embed_tokens.weight" },
    { "stories260K-hf-sharded", 1, "model.layers.0.self_attn.q_proj.weight" },
    { "stories260K-hf-sharded", -1, "model.norm.weight" },
    { "stories260K-hf-bf16", 9, "model.layers.0.post_attention_layernorm.weight" },
    { "tiny-random-qwen2", 1, "model.layers.0.self_attn.q_proj.weight" },
    { "tiny-random-qwen2", 2, "model.layers.0.self_attn.q_proj.bias" },
    { "tiny-random-qwen2", 7, "model.layers.0.self_attn.o_proj.weight" },
    { "tiny-random-qwen2", -1, "model.norm.weight" },
    { "tiny-random-mistral", -2, "model.norm.weight" },
    { "tiny-random-mistral", -1, "lm_head.weight" },
    { "tiny-random-llama-bf16", -1, "lm_head.weight" },
    { "tiny-random-gpt2", 0, "transformer.wte.weight" },
    { "tiny-random-gpt2", 1, "transformer.wpe.weight" },
    { "tiny-random-gpt2", 2, "transformer.h.0.ln_1.weight" },
    { "tiny-random-gpt2", 3, "transformer.h.0.ln_1.bias" },
    { "tiny-random-gpt2", 4, "transformer.h.0.attn.c_attn.weight" },
    { "tiny-random-gpt2", 13, "transformer.h.0.mlp.c_proj.bias" },
    { "tiny-random-gpt2", 14, "transformer.h.1.ln_1.weight" },
    { "tiny-random-gpt2", -2, "transformer.ln_f.weight" },
    { "tiny-random-gpt2", -1, "transformer.ln_f.bias" },
    { "fake-gpt2", 0, "transformer.wte.weight" },
    { "fake-gpt2", -1, "transformer.ln_f.bias" },
    { "tiny-random-bert", 0, "embeddings.word_embeddings.weight" },
    { "tiny-random-bert", 4, "embeddings.LayerNorm.bias" },
    { "tiny-random-bert", 5, "encoder.layer.0.attention.self.query.weight" },
    { "tiny-random-bert", 20, "encoder.layer.0.output.LayerNorm.bias" },
    { "tiny-random-bert", -2, "pooler.dense.weight" },
    { "tiny-random-bert", -1, "pooler.dense.bias" },
    { "bert-tiniest", 0, "bert.embeddings.word_embeddings.weight" },
    { "bert-tiniest", 21, "cls.predictions.bias" },
    { "bert-tiniest", -1, "cls.predictions.transform.LayerNorm.bias" },
    { "tiny-random-bloom", 0, "transformer.word_embeddings.weight" },
    { "tiny-random-bloom", 2, "transformer.word_embeddings_layernorm.bias" },
    { "tiny-random-bloom", 5, "transformer.h.0.self_attention.query_key_value.weight" },
    { "tiny-random-bloom", 14, "transformer.h.0.mlp.dense_4h_to_h.bias" },
    { "tiny-random-bloom", -3, "transformer.ln_f.weight" },
    { "tiny-random-bloom", -1, "lm_head.weight" },
    { "tiny-random-gpt2-bin", 0, "transformer.wte.weight" },
    { "tiny-random-gpt2-bin", 4, "transformer.h.0.attn.c_attn.weight" },
    { "tiny-random-gpt2-bin-sharded", 2, "transformer.h.0.ln_1.weight" },
    { "tiny-random-gpt2-bin-sharded", -2, "transformer.ln_f.bias" },
    { "tiny-random-gpt2-bin-sharded", -1, "lm_head.weight" },
};

/* The layer number of name (after "layers.", "h." or "layer."), or -1. */
static long layer_of(const char *name)
{
    static const char *const keys[] = { ".layers.", ".h.", ".layer.", "layers.", "h." };
    size_t k;

    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const char *p = strstr(name, keys[k]);

        if (p && (k >= 3 ? p == name : 1)) {
            p += strlen(keys[k]);
            if (*p >= '0' && *p <= '9')
                return strtol(p, NULL, 10);
        }
    }
    return -1;
}

static void test_models(void)
{
    char dir[1024];
    struct dirent *de;
    DIR *dp;
    int n_models = 0;

    snprintf(dir, sizeof(dir), "%s/models", check_data_dir());
    dp = opendir(dir);
    CHECK(dp != NULL, "open %s", dir);
    if (!dp)
        return;
    while ((de = readdir(dp))) {
        struct repo r;
        struct mfs_err e = MFS_ERR_INIT;
        struct mfs_ckpt_io io = { repo_read, NULL, &r };
        struct mfs_ckpt *c = NULL;
        char mdir[1400];
        const char **names;
        size_t *order;
        char *seen;
        size_t cfg_len = 0;
        char *cfg;
        size_t i;
        size_t k;
        long last_layer = -1;
        int once = 1;
        int mono = 1;

        if (de->d_name[0] == '.')
            continue;
        snprintf(mdir, sizeof(mdir), "%s/%s", dir, de->d_name);
        if (repo_load(&r, mdir) < 0)
            continue;
        if (mfs_ckpt_open(r.files, r.n, NULL, &io, &c, &e) < 0 || c->n_tensors == 0) {
            mfs_ckpt_free(&c);
            continue;
        }
        cfg = model_config(de->d_name, &cfg_len);
        names = calloc(c->n_tensors, sizeof(*names));
        order = calloc(c->n_tensors, sizeof(*order));
        seen = calloc(c->n_tensors, 1);
        for (i = 0; i < c->n_tensors; i++)
            names[i] = c->tensors[i].name;
        CHECK(mfs_model_state_dict_order(cfg, cfg_len, names, c->n_tensors, order, &e) == 0,
              "%s: order of %zu names", de->d_name, c->n_tensors);
        for (i = 0; i < c->n_tensors; i++) {
            long l = layer_of(names[order[i]]);

            if (order[i] >= c->n_tensors || seen[order[i]])
                once = 0;
            else
                seen[order[i]] = 1;
            if (l >= 0 && l < last_layer) {
                printf("# %s: layer %ld after %ld at '%s'\n", de->d_name, l, last_layer,
                       names[order[i]]);
                mono = 0;
            }
            if (l >= 0)
                last_layer = l;
        }
        CHECK(once, "%s: every name exactly once", de->d_name);
        CHECK(mono, "%s: layers in numeric order", de->d_name);
        for (k = 0; k < sizeof(landmarks) / sizeof(landmarks[0]); k++) {
            long p = landmarks[k].pos;
            size_t at;

            if (strcmp(landmarks[k].model, de->d_name))
                continue;
            at = p >= 0 ? (size_t)p : c->n_tensors - (size_t)(-p);
            CHECK(at < c->n_tensors && !strcmp(names[order[at]], landmarks[k].name),
                  "%s: '%s' at %ld (got '%s')", de->d_name, landmarks[k].name, p,
                  at < c->n_tensors ? names[order[at]] : "");
        }
        free(seen);
        free(order);
        free(names);
        free(cfg);
        mfs_ckpt_free(&c);
        n_models++;
    }
    closedir(dp);
    CHECK(n_models >= 12, "models with a checkpoint: %d", n_models);
}

/* Unknown names and architectures: natural order, after the known ones. */
static const struct {
    const char *label;
    const char *config;                     /* NULL: none */
    const char *in[8];
    const char *want[8];
} rows[] = {
    { "no config: natural order", NULL,
      { "b.10", "b.2", "a", "b.1", "b.02", NULL },
      { "a", "b.1", "b.2", "b.02", "b.10", NULL } },
    { "unknown model_type", "{\"model_type\": \"t5\", \"architectures\": [\"LlamaForCausalLM\"]}",
      { "model.norm.weight", "model.embed_tokens.weight", NULL },
      { "model.embed_tokens.weight", "model.norm.weight", NULL } },
    { "architectures without model_type", "{\"architectures\": [\"LlamaForCausalLM\"]}",
      { "model.norm.weight", "model.embed_tokens.weight", "lm_head.weight", NULL },
      { "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", NULL } },
    { "not JSON", "{\"model_type\": ",
      { "z", "y.3", "y.20", NULL },
      { "y.3", "y.20", "z", NULL } },
    { "llama: unknown names after the known ones, layer 10 after layer 9",
      "{\"model_type\": \"llama\"}",
      { "extra.scale", "model.layers.10.input_layernorm.weight", "lm_head.weight",
        "model.layers.9.mlp.down_proj.weight", "model.layers.9.rotary.inv_freq", NULL },
      { "model.layers.9.mlp.down_proj.weight", "model.layers.10.input_layernorm.weight",
        "lm_head.weight", "extra.scale", "model.layers.9.rotary.inv_freq", NULL } },
    { "bare LlamaModel names", "{\"model_type\": \"mistral\"}",
      { "norm.weight", "layers.0.mlp.up_proj.weight", "embed_tokens.weight",
        "layers.0.self_attn.v_proj.weight", NULL },
      { "embed_tokens.weight", "layers.0.self_attn.v_proj.weight",
        "layers.0.mlp.up_proj.weight", "norm.weight", NULL } },
    { "gpt2 buffers before c_attn", "{\"model_type\": \"gpt2\"}",
      { "h.0.attn.c_attn.weight", "h.0.attn.masked_bias", "h.0.attn.bias", "wte.weight", NULL },
      { "wte.weight", "h.0.attn.bias", "h.0.attn.masked_bias", "h.0.attn.c_attn.weight",
        NULL } },
    { "bloom", "{\"model_type\": \"bloom\"}",
      { "lm_head.weight", "transformer.h.0.mlp.dense_4h_to_h.bias",
        "transformer.h.0.input_layernorm.weight", "transformer.ln_f.weight",
        "transformer.word_embeddings_layernorm.bias", "transformer.word_embeddings.weight", NULL },
      { "transformer.word_embeddings.weight", "transformer.word_embeddings_layernorm.bias",
        "transformer.h.0.input_layernorm.weight", "transformer.h.0.mlp.dense_4h_to_h.bias",
        "transformer.ln_f.weight", "lm_head.weight", NULL } },
};

static void test_rows(void)
{
    struct mfs_err e = MFS_ERR_INIT;
    size_t order[2];
    const char *bad[2] = { "a", NULL };
    size_t r;

    for (r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        size_t n = 0;

        while (rows[r].in[n])
            n++;
        CHECK(same_order(rows[r].config, rows[r].config ? strlen(rows[r].config) : 0,
                         (const char **)rows[r].in, n, rows[r].want),
              "%s", rows[r].label);
    }
    CHECK(mfs_model_state_dict_order(NULL, 0, bad, 2, order, &e) == -EINVAL && e.msg[0],
          "a NULL name is -EINVAL: %s", e.msg);
    CHECK(mfs_model_state_dict_order(NULL, 0, NULL, 0, NULL, NULL) == 0, "no names is fine");
}

int main(void)
{
    test_golden();
    test_models();
    test_rows();
    return check_done();
}
