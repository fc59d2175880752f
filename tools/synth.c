/*
 * tools/synth.c - `modelfs synth`: random-weight checkpoints of real
 * shapes, for benchmarks and tests that need a model bigger than the ones
 * in data/models.
 *
 *   modelfs synth --config CONFIG.json --out DIR [--dtype F32|BF16|F16]
 *                 [--seed N] [--max-shard-size SIZE]
 *   modelfs synth --raw-size BYTES --out DIR [--seed N]
 *
 * The first form writes the tensors transformers' save_pretrained would
 * write for the architecture of config.json (llama, mistral, qwen2, gpt2,
 * bert), with transformers' names and state-dict order, sharded by
 * model/shard.h's rule when --max-shard-size is given (else one
 * model.safetensors), and copies config.json in.  Norm weights are about
 * 1; other weights are bell-shaped (a sum of two uniforms, so bounded) with
 * std min(initializer_range, 1/sqrt(fan_in)), so activations stay bounded
 * through any depth; biases are 10x smaller.  The second form writes DIR/model.safetensors holding
 * BYTES data bytes of F32 tensors of 4096-wide rows (an I/O benchmark
 * file of any size).
 *
 * Values come from a counter-based generator (splitmix64 of seed, tensor
 * and element index), so any chunk can be made on its own and the output
 * depends only on the seed; data is made in 4 MiB chunks straight into
 * the writer's buffer, so even 10 GB files are written at disk speed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/size.h"
#include "model/safetensors.h"
#include "model/shard.h"
#include "tools/cli.h"

#define RAW_COLS 4096                       /* row width of --raw-size tensors */

enum init_kind {
    INIT_WEIGHT,                            /* uniform, std = t->std */
    INIT_NORM,                              /* 1 + small noise */
    INIT_BIAS,                              /* uniform, std = t->std / 10 */
};

struct synth {
    struct mfs_shard_tensor *t;
    char **names;                           /* owned, one per tensor */
    enum init_kind *kind;
    float *std;
    size_t n;
    size_t cap;
    uint64_t seed;
    enum mfs_st_dtype dtype;
};

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* float -> bfloat16, round to nearest even (values here are finite). */
static uint16_t to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* float -> IEEE half, round to nearest even, subnormals included. */
static uint16_t to_f16(float f)
{
    uint32_t u;
    uint32_t sign;
    int32_t exp;
    uint32_t man;

    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000;
    exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    man = u & 0x7fffff;
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        uint32_t shift;
        uint32_t half;
        uint32_t r;

        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        shift = (uint32_t)(14 - exp);
        half = 1u << (shift - 1);
        r = man >> shift;
        if ((man & ((1u << shift) - 1)) > half || ((man & ((1u << shift) - 1)) == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    {
        uint32_t r = (uint32_t)exp << 10 | man >> 13;
        uint32_t rest = man & 0x1fff;

        if (rest > 0x1000 || (rest == 0x1000 && (r & 1)))
            r++;                            /* may carry into the exponent: still right */
        return (uint16_t)(sign | r);
    }
}

/* Element e of tensor idx: a float of the tensor's distribution. */
static float value(const struct synth *s, size_t idx, uint64_t e)
{
    uint64_t r = splitmix64(s->seed ^ splitmix64(idx + 1) ^ (e * 0x2545f4914f6cdd1dull));
    uint32_t b1 = 0x3f800000u | (uint32_t)(r >> 41);
    uint32_t b2 = 0x3f800000u | (uint32_t)(r & 0x7fffff);
    float u1;
    float u2;
    float u;

    memcpy(&u1, &b1, 4);
    memcpy(&u2, &b2, 4);
    u = (u1 + u2 - 3.0f) * 2.4494897f;      /* sum of two uniforms: mean 0, std 1, |u| < 2.45 */
    switch (s->kind[idx]) {
    case INIT_NORM:
        return 1.0f + 0.02f * u;
    case INIT_BIAS:
        return 0.1f * s->std[idx] * u;
    default:
        return s->std[idx] * u;
    }
}

static int fill(void *ctx, size_t idx, uint64_t off, void *buf, size_t len, struct mfs_err *err)
{
    const struct synth *s = ctx;
    enum mfs_st_dtype d = s->t[idx].dtype;
    size_t es = mfs_st_dtype_bits(d) / 8;
    uint64_t e0 = off / es;
    size_t n = len / es;
    size_t i;

    if (d == MFS_ST_U8) {                   /* raw-size tail bytes */
        for (i = 0; i < len; i++)
            ((unsigned char *)buf)[i] = (unsigned char)splitmix64(s->seed + off + i);
        return 0;
    }
    for (i = 0; i < n; i++) {
        float v = value(s, idx, e0 + i);

        if (d == MFS_ST_F32) {
            memcpy((char *)buf + 4 * i, &v, 4);
        } else {
            uint16_t h = d == MFS_ST_BF16 ? to_bf16(v) : to_f16(v);

            memcpy((char *)buf + 2 * i, &h, 2);
        }
    }
    return 0;
}

static int add(struct synth *s, enum init_kind kind, float std, enum mfs_st_dtype dtype,
               int ndim, uint64_t d0, uint64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

static int add(struct synth *s, enum init_kind kind, float std, enum mfs_st_dtype dtype,
               int ndim, uint64_t d0, uint64_t d1, const char *fmt, ...)
{
    char name[256];
    va_list ap;

    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        struct mfs_shard_tensor *t = realloc(s->t, cap * sizeof(*t));
        char **names;
        enum init_kind *k;
        float *sd;

        if (!t)
            return -ENOMEM;
        s->t = t;
        names = realloc(s->names, cap * sizeof(*names));
        if (!names)
            return -ENOMEM;
        s->names = names;
        k = realloc(s->kind, cap * sizeof(*k));
        if (!k)
            return -ENOMEM;
        s->kind = k;
        sd = realloc(s->std, cap * sizeof(*sd));
        if (!sd)
            return -ENOMEM;
        s->std = sd;
        s->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    s->names[s->n] = strdup(name);
    if (!s->names[s->n])
        return -ENOMEM;
    memset(&s->t[s->n], 0, sizeof(s->t[s->n]));
    s->t[s->n].name = s->names[s->n];
    s->t[s->n].dtype = dtype;
    s->t[s->n].ndim = ndim;
    s->t[s->n].shape[0] = d0;
    s->t[s->n].shape[1] = d1;
    s->t[s->n].alias_of = -1;
    s->kind[s->n] = kind;
    s->std[s->n] = std;
    s->n++;
    return 0;
}

static void synth_release(struct synth *s)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    free(s->t);
    free(s->kind);
    free(s->std);
}

static int64_t cfg_int(const cJSON *c, const char *key, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);

    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e12)
        return def;
    return (int64_t)v->valuedouble;
}

static int cfg_bool(const cJSON *c, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);

    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static float lin_std(float init, uint64_t fan_in)
{
    float s = fan_in ? 1.0f / sqrtf((float)fan_in) : init;

    return init < s ? init : s;
}

#define ADD(...)                                                                   \
    do {                                                                           \
        if (rc == 0)                                                               \
            rc = add(s, __VA_ARGS__);                                              \
    } while (0)

/* Llama, Mistral, Qwen2 (transformers LlamaForCausalLM state dict). */
static int build_llama(struct synth *s, const cJSON *c, int qwen2, struct mfs_err *err)
{
    enum mfs_st_dtype d = s->dtype;
    int64_t v = cfg_int(c, "vocab_size", 0);
    int64_t h = cfg_int(c, "hidden_size", 0);
    int64_t im = cfg_int(c, "intermediate_size", 0);
    int64_t nl = cfg_int(c, "num_hidden_layers", -1);
    int64_t nh = cfg_int(c, "num_attention_heads", 0);
    int64_t nkv = cfg_int(c, "num_key_value_heads", nh);
    int64_t hd = nh ? cfg_int(c, "head_dim", h / nh) : 0;
    int bias = qwen2 || cfg_bool(c, "attention_bias", 0);
    int obias = !qwen2 && cfg_bool(c, "attention_bias", 0);
    float init = (float)(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "initializer_range"))
                         ? cJSON_GetObjectItemCaseSensitive(c, "initializer_range")->valuedouble
                         : 0.02);
    float e_std = init < 0.02f ? init : 0.02f;
    int64_t i;
    int rc = 0;

    if (v <= 0 || h <= 0 || im <= 0 || nl < 0 || nh <= 0 || nkv <= 0 || hd <= 0)
        return mfs_err_set(err, -EINVAL, "config lacks vocab_size, hidden_size, "
                           "intermediate_size, num_hidden_layers or num_attention_heads");
    ADD(INIT_WEIGHT, e_std, d, 2, v, h, "model.embed_tokens.weight");
    for (i = 0; i < nl; i++) {
        const char *p = "model.layers";

        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, nh * hd, h, "%s.%lld.self_attn.q_proj.weight",
            p, (long long)i);
        if (bias)
            ADD(INIT_BIAS, lin_std(init, h), d, 1, nh * hd, 0, "%s.%lld.self_attn.q_proj.bias",
                p, (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, nkv * hd, h, "%s.%lld.self_attn.k_proj.weight",
            p, (long long)i);
        if (bias)
            ADD(INIT_BIAS, lin_std(init, h), d, 1, nkv * hd, 0, "%s.%lld.self_attn.k_proj.bias",
                p, (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, nkv * hd, h, "%s.%lld.self_attn.v_proj.weight",
            p, (long long)i);
        if (bias)
            ADD(INIT_BIAS, lin_std(init, h), d, 1, nkv * hd, 0, "%s.%lld.self_attn.v_proj.bias",
                p, (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, nh * hd), d, 2, h, nh * hd,
            "%s.%lld.self_attn.o_proj.weight", p, (long long)i);
        if (obias)
            ADD(INIT_BIAS, lin_std(init, nh * hd), d, 1, h, 0, "%s.%lld.self_attn.o_proj.bias",
                p, (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, im, h, "%s.%lld.mlp.gate_proj.weight", p,
            (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, im, h, "%s.%lld.mlp.up_proj.weight", p,
            (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, im), d, 2, h, im, "%s.%lld.mlp.down_proj.weight", p,
            (long long)i);
        ADD(INIT_NORM, 0, d, 1, h, 0, "%s.%lld.input_layernorm.weight", p, (long long)i);
        ADD(INIT_NORM, 0, d, 1, h, 0, "%s.%lld.post_attention_layernorm.weight", p,
            (long long)i);
    }
    ADD(INIT_NORM, 0, d, 1, h, 0, "model.norm.weight");
    if (!cfg_bool(c, "tie_word_embeddings", 0))
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, v, h, "lm_head.weight");
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

/* GPT-2 (GPT2LMHeadModel; Conv1D weights are [in, out]; lm_head tied). */
static int build_gpt2(struct synth *s, const cJSON *c, struct mfs_err *err)
{
    enum mfs_st_dtype d = s->dtype;
    int64_t v = cfg_int(c, "vocab_size", 0);
    int64_t e = cfg_int(c, "n_embd", 0);
    int64_t nl = cfg_int(c, "n_layer", -1);
    int64_t np = cfg_int(c, "n_positions", cfg_int(c, "n_ctx", 0));
    int64_t inner = cfg_int(c, "n_inner", 4 * e);
    float init = 0.02f;
    int64_t i;
    int rc = 0;

    if (v <= 0 || e <= 0 || nl < 0 || np <= 0)
        return mfs_err_set(err, -EINVAL, "config lacks vocab_size, n_embd, n_layer or "
                           "n_positions");
    ADD(INIT_WEIGHT, init, d, 2, v, e, "transformer.wte.weight");
    ADD(INIT_WEIGHT, init, d, 2, np, e, "transformer.wpe.weight");
    for (i = 0; i < nl; i++) {
        ADD(INIT_NORM, 0, d, 1, e, 0, "transformer.h.%lld.ln_1.weight", (long long)i);
        ADD(INIT_BIAS, init, d, 1, e, 0, "transformer.h.%lld.ln_1.bias", (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, e), d, 2, e, 3 * e, "transformer.h.%lld.attn.c_attn.weight",
            (long long)i);
        ADD(INIT_BIAS, init, d, 1, 3 * e, 0, "transformer.h.%lld.attn.c_attn.bias", (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, e), d, 2, e, e, "transformer.h.%lld.attn.c_proj.weight",
            (long long)i);
        ADD(INIT_BIAS, init, d, 1, e, 0, "transformer.h.%lld.attn.c_proj.bias", (long long)i);
        ADD(INIT_NORM, 0, d, 1, e, 0, "transformer.h.%lld.ln_2.weight", (long long)i);
        ADD(INIT_BIAS, init, d, 1, e, 0, "transformer.h.%lld.ln_2.bias", (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, e), d, 2, e, inner, "transformer.h.%lld.mlp.c_fc.weight",
            (long long)i);
        ADD(INIT_BIAS, init, d, 1, inner, 0, "transformer.h.%lld.mlp.c_fc.bias", (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, inner), d, 2, inner, e,
            "transformer.h.%lld.mlp.c_proj.weight", (long long)i);
        ADD(INIT_BIAS, init, d, 1, e, 0, "transformer.h.%lld.mlp.c_proj.bias", (long long)i);
    }
    ADD(INIT_NORM, 0, d, 1, e, 0, "transformer.ln_f.weight");
    ADD(INIT_BIAS, init, d, 1, e, 0, "transformer.ln_f.bias");
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

/* BERT (BertModel with pooler; names without the "bert." prefix). */
static int build_bert(struct synth *s, const cJSON *c, struct mfs_err *err)
{
    enum mfs_st_dtype d = s->dtype;
    int64_t v = cfg_int(c, "vocab_size", 0);
    int64_t h = cfg_int(c, "hidden_size", 0);
    int64_t im = cfg_int(c, "intermediate_size", 0);
    int64_t nl = cfg_int(c, "num_hidden_layers", -1);
    int64_t np = cfg_int(c, "max_position_embeddings", 512);
    int64_t tv = cfg_int(c, "type_vocab_size", 2);
    float init = 0.02f;
    int64_t i;
    int rc = 0;

    if (v <= 0 || h <= 0 || im <= 0 || nl < 0 || np <= 0 || tv <= 0)
        return mfs_err_set(err, -EINVAL, "config lacks vocab_size, hidden_size, "
                           "intermediate_size or num_hidden_layers");
    ADD(INIT_WEIGHT, init, d, 2, v, h, "embeddings.word_embeddings.weight");
    ADD(INIT_WEIGHT, init, d, 2, np, h, "embeddings.position_embeddings.weight");
    ADD(INIT_WEIGHT, init, d, 2, tv, h, "embeddings.token_type_embeddings.weight");
    ADD(INIT_NORM, 0, d, 1, h, 0, "embeddings.LayerNorm.weight");
    ADD(INIT_BIAS, init, d, 1, h, 0, "embeddings.LayerNorm.bias");
    for (i = 0; i < nl; i++) {
        static const char *const qkv[] = { "query", "key", "value" };
        int k;

        for (k = 0; k < 3; k++) {
            ADD(INIT_WEIGHT, lin_std(init, h), d, 2, h, h,
                "encoder.layer.%lld.attention.self.%s.weight", (long long)i, qkv[k]);
            ADD(INIT_BIAS, init, d, 1, h, 0, "encoder.layer.%lld.attention.self.%s.bias",
                (long long)i, qkv[k]);
        }
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, h, h,
            "encoder.layer.%lld.attention.output.dense.weight", (long long)i);
        ADD(INIT_BIAS, init, d, 1, h, 0, "encoder.layer.%lld.attention.output.dense.bias",
            (long long)i);
        ADD(INIT_NORM, 0, d, 1, h, 0, "encoder.layer.%lld.attention.output.LayerNorm.weight",
            (long long)i);
        ADD(INIT_BIAS, init, d, 1, h, 0, "encoder.layer.%lld.attention.output.LayerNorm.bias",
            (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, h), d, 2, im, h,
            "encoder.layer.%lld.intermediate.dense.weight", (long long)i);
        ADD(INIT_BIAS, init, d, 1, im, 0, "encoder.layer.%lld.intermediate.dense.bias",
            (long long)i);
        ADD(INIT_WEIGHT, lin_std(init, im), d, 2, h, im,
            "encoder.layer.%lld.output.dense.weight", (long long)i);
        ADD(INIT_BIAS, init, d, 1, h, 0, "encoder.layer.%lld.output.dense.bias", (long long)i);
        ADD(INIT_NORM, 0, d, 1, h, 0, "encoder.layer.%lld.output.LayerNorm.weight",
            (long long)i);
        ADD(INIT_BIAS, init, d, 1, h, 0, "encoder.layer.%lld.output.LayerNorm.bias",
            (long long)i);
    }
    ADD(INIT_WEIGHT, lin_std(init, h), d, 2, h, h, "pooler.dense.weight");
    ADD(INIT_BIAS, init, d, 1, h, 0, "pooler.dense.bias");
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

/* --raw-size: bytes of F32 in [4096, 4096] blocks, then the rest. */
static int build_raw(struct synth *s, uint64_t bytes, struct mfs_err *err)
{
    uint64_t block = (uint64_t)RAW_COLS * RAW_COLS * 4;
    uint64_t i = 0;
    int rc = 0;

    s->dtype = MFS_ST_F32;
    for (; rc == 0 && bytes >= block; bytes -= block, i++)
        ADD(INIT_WEIGHT, 0.02f, MFS_ST_F32, 2, RAW_COLS, RAW_COLS, "raw.%06llu.weight",
            (unsigned long long)i);
    if (bytes >= (uint64_t)RAW_COLS * 4) {
        ADD(INIT_WEIGHT, 0.02f, MFS_ST_F32, 2, bytes / (RAW_COLS * 4), RAW_COLS,
            "raw.%06llu.weight", (unsigned long long)i++);
        bytes %= RAW_COLS * 4;
    }
    if (bytes >= 4) {
        ADD(INIT_WEIGHT, 0.02f, MFS_ST_F32, 1, bytes / 4, 0, "raw.%06llu.weight",
            (unsigned long long)i++);
        bytes %= 4;
    }
    if (bytes > 0)
        ADD(INIT_WEIGHT, 0, MFS_ST_U8, 1, bytes, 0, "raw.%06llu.tail", (unsigned long long)i);
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

static int copy_file(const char *from, const char *to, struct mfs_err *err)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out;
    ssize_t r;
    int rc = 0;

    if (in < 0)
        return mfs_err_set(err, -errno, "cannot open '%s': %s", from, strerror(errno));
    out = open(to, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = mfs_err_set(err, -errno, "cannot create '%s': %s", to, strerror(errno));
        goto out_close_in;
    }
    while ((r = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)r) != r) {
            rc = mfs_err_set(err, -EIO, "cannot write '%s'", to);
            break;
        }
    }
    if (r < 0)
        rc = mfs_err_set(err, -EIO, "cannot read '%s'", from);
    if (close(out) < 0 && rc == 0)
        rc = mfs_err_set(err, -EIO, "cannot write '%s'", to);
out_close_in:
    close(in);
    return rc;
}

static cJSON *read_config(const char *path, struct mfs_err *err)
{
    struct stat st;
    char *text;
    cJSON *c = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        mfs_err_set(err, -ENOENT, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) == 0 && st.st_size < (64 << 20)) {
        text = malloc((size_t)st.st_size + 1);
        if (text && read(fd, text, (size_t)st.st_size) == st.st_size)
            c = cJSON_ParseWithLength(text, (size_t)st.st_size);
        free(text);
    }
    close(fd);
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        mfs_err_set(err, -EINVAL, "invalid config '%s': not a JSON object", path);
        return NULL;
    }
    return c;
}

static void usage(FILE *f)
{
    fputs("usage: modelfs synth --config CONFIG.json --out DIR [--dtype F32|BF16|F16]\n"
          "                     [--seed N] [--max-shard-size SIZE]\n"
          "       modelfs synth --raw-size BYTES --out DIR [--seed N]\n", f);
}

int mfs_cli_synth(int argc, char **argv)
{
    const char *config = NULL;
    const char *out = NULL;
    const char *dtype = "F32";
    const char *shard = NULL;
    const char *raw = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_shard_plan plan;
    struct synth s;
    cJSON *c = NULL;
    uint64_t max_shard = UINT64_MAX;
    uint64_t raw_bytes = 0;
    uint64_t total = 0;
    char path[4096];
    int rc = 0;
    int a;

    memset(&s, 0, sizeof(s));
    s.seed = 0;
    for (a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;

        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v || strncmp(argv[a], "--", 2)) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(argv[a], "--config")) {
            config = v;
        } else if (!strcmp(argv[a], "--out")) {
            out = v;
        } else if (!strcmp(argv[a], "--dtype")) {
            dtype = v;
        } else if (!strcmp(argv[a], "--max-shard-size")) {
            shard = v;
        } else if (!strcmp(argv[a], "--raw-size")) {
            raw = v;
        } else if (!strcmp(argv[a], "--seed")) {
            char *end;

            errno = 0;
            s.seed = strtoull(v, &end, 0);
            if (errno || *end || !*v) {
                fprintf(stderr, "modelfs: invalid seed '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "modelfs: unknown option '%s'\n", argv[a]);
            usage(stderr);
            return 2;
        }
        a++;
    }
    if (!out || (!config == !raw)) {
        usage(stderr);
        return 2;
    }
    if (mfs_st_dtype_parse(dtype, &s.dtype) < 0 ||
        (s.dtype != MFS_ST_F32 && s.dtype != MFS_ST_BF16 && s.dtype != MFS_ST_F16)) {
        fprintf(stderr, "modelfs: invalid dtype '%s': use F32, BF16 or F16\n", dtype);
        return 2;
    }
    if (shard && mfs_size_parse(shard, 0, &max_shard, &err) < 0) {
        fprintf(stderr, "modelfs: %s\n", err.msg);
        return 2;
    }
    if (raw && mfs_size_parse(raw, MFS_SIZE_BINARY, &raw_bytes, &err) < 0) {
        fprintf(stderr, "modelfs: %s\n", err.msg);
        return 2;
    }
    if (mkdir(out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "modelfs: cannot create '%s': %s\n", out, strerror(errno));
        return 1;
    }
    if (raw) {
        rc = build_raw(&s, raw_bytes, &err);
    } else {
        const cJSON *mt;

        c = read_config(config, &err);
        mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
        if (!c)
            rc = err.code;
        else if (!cJSON_IsString(mt))
            rc = mfs_err_set(&err, -EINVAL, "config '%s' has no model_type", config);
        else if (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "mistral"))
            rc = build_llama(&s, c, 0, &err);
        else if (!strcmp(mt->valuestring, "qwen2"))
            rc = build_llama(&s, c, 1, &err);
        else if (!strcmp(mt->valuestring, "gpt2"))
            rc = build_gpt2(&s, c, &err);
        else if (!strcmp(mt->valuestring, "bert"))
            rc = build_bert(&s, c, &err);
        else
            rc = mfs_err_set(&err, -EINVAL, "model_type '%.64s' is not supported: use llama, "
                             "mistral, qwen2, gpt2 or bert", mt->valuestring);
    }
    if (rc == 0)
        rc = mfs_shard_write(out, s.t, s.n, max_shard, MFS_SHARD_TRANSFORMERS, NULL, fill, &s,
                             &plan, &err);
    if (rc == 0) {
        total = plan.total_size;
        if (config) {
            snprintf(path, sizeof(path), "%s/config.json", out);
            rc = copy_file(config, path, &err);
        }
        if (rc == 0)
            printf("wrote %zu tensors, %llu data bytes in %zu file%s to %s\n", s.n,
                   (unsigned long long)total, plan.n_shards + (plan.index_name ? 1 : 0),
                   plan.n_shards + (plan.index_name ? 1 : 0) == 1 ? "" : "s", out);
        mfs_shard_plan_release(&plan);
    }
    if (rc < 0)
        fprintf(stderr, "modelfs: synth: %s\n", err.msg);
    cJSON_Delete(c);
    synth_release(&s);
    return rc < 0 ? 1 : 0;
}
