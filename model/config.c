/*
 * model/config.c - config.json and generation_config.json with cJSON; see
 * config.h.  Defaults are those of transformers 4.37's config classes
 * (LlamaConfig, MistralConfig, Qwen2Config, GPT2Config, BertConfig,
 * GenerationConfig).
 */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Integer field key of obj into *out (default def when absent or null).
 * -EINVAL when it is not an integral number in [min, max]. */
static int get_int(const cJSON *obj, const char *key, int64_t def, int64_t min, int64_t max,
                   int64_t *out, struct mfs_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    double v;

    *out = def;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsNumber(it))
        return mfs_err_set(err, -EINVAL, "invalid config: '%s' is not a number", key);
    v = it->valuedouble;
    if (v != floor(v) || v < (double)min || v > (double)max)
        return mfs_err_set(err, -EINVAL, "invalid config: '%s' = %g out of range", key, v);
    *out = (int64_t)v;
    return 0;
}

static int get_double(const cJSON *obj, const char *key, double def, double min, double max,
                      double *out, struct mfs_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    *out = def;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsNumber(it))
        return mfs_err_set(err, -EINVAL, "invalid config: '%s' is not a number", key);
    if (!(it->valuedouble >= min && it->valuedouble <= max))
        return mfs_err_set(err, -EINVAL, "invalid config: '%s' = %g out of range", key,
                           it->valuedouble);
    *out = it->valuedouble;
    return 0;
}

static int get_bool(const cJSON *obj, const char *key, bool def, bool *out, struct mfs_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    *out = def;
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsBool(it))
        return mfs_err_set(err, -EINVAL, "invalid config: '%s' is not a boolean", key);
    *out = cJSON_IsTrue(it);
    return 0;
}

static int get_str(const cJSON *obj, const char *key, char *out, size_t cap,
                   struct mfs_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);

    out[0] = '\0';
    if (!it || cJSON_IsNull(it))
        return 0;
    if (!cJSON_IsString(it))
        return mfs_err_set(err, -EINVAL, "invalid config: '%s' is not a string", key);
    snprintf(out, cap, "%s", it->valuestring);
    return 0;
}

/* eos_token_id: an int or a list of ints (GenerationConfig accepts both). */
static int get_eos(const cJSON *obj, int64_t *ids, size_t *n, struct mfs_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
    const cJSON *e;

    if (!it || cJSON_IsNull(it))
        return 0;
    *n = 0;
    if (cJSON_IsNumber(it))
        return get_int(obj, "eos_token_id", -1, 0, INT32_MAX, &ids[(*n)++], err);
    if (!cJSON_IsArray(it))
        return mfs_err_set(err, -EINVAL, "invalid config: 'eos_token_id' is not an int or list");
    cJSON_ArrayForEach(e, it) {
        double v;

        if (!cJSON_IsNumber(e))
            return mfs_err_set(err, -EINVAL, "invalid config: 'eos_token_id' holds a non-number");
        v = e->valuedouble;
        if (v != floor(v) || v < 0 || v > INT32_MAX)
            return mfs_err_set(err, -EINVAL, "invalid config: 'eos_token_id' %g out of range", v);
        if (*n < MFS_CFG_MAX_EOS)
            ids[(*n)++] = (int64_t)v;
    }
    return 0;
}

static int parse_act(const char *s, enum mfs_cfg_act *act, struct mfs_err *err)
{
    if (!strcmp(s, "silu") || !strcmp(s, "swish"))
        *act = MFS_CFG_ACT_SILU;
    else if (!strcmp(s, "gelu"))
        *act = MFS_CFG_ACT_GELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") ||
             !strcmp(s, "gelu_fast"))
        *act = MFS_CFG_ACT_GELU_NEW;
    else if (!strcmp(s, "relu"))
        *act = MFS_CFG_ACT_RELU;
    else
        return mfs_err_set(err, -EINVAL, "unsupported activation '%s'", s);
    return 0;
}

static int parse_rope_scaling(const cJSON *root, struct mfs_model_config *cfg,
                              struct mfs_err *err)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    char kind[32];
    int rc;

    cfg->rope_kind = MFS_ROPE_NONE;
    cfg->rope_factor = 1.0;
    if (!rs || cJSON_IsNull(rs))
        return 0;
    if (!cJSON_IsObject(rs))
        return mfs_err_set(err, -EINVAL, "invalid config: 'rope_scaling' is not an object");
    rc = get_str(rs, "rope_type", kind, sizeof(kind), err);
    if (rc == 0 && !kind[0])
        rc = get_str(rs, "type", kind, sizeof(kind), err);
    if (rc < 0)
        return rc;
    rc = get_double(rs, "factor", 1.0, 1e-6, 1e6, &cfg->rope_factor, err);
    if (rc < 0)
        return rc;
    if (!strcmp(kind, "linear")) {
        cfg->rope_kind = MFS_ROPE_LINEAR;
    } else if (!strcmp(kind, "dynamic")) {
        cfg->rope_kind = MFS_ROPE_DYNAMIC;
    } else if (!strcmp(kind, "llama3")) {
        cfg->rope_kind = MFS_ROPE_LLAMA3;
        rc = get_double(rs, "low_freq_factor", 1.0, 1e-6, 1e6, &cfg->rope_low_freq_factor, err);
        if (rc == 0)
            rc = get_double(rs, "high_freq_factor", 4.0, 1e-6, 1e6,
                            &cfg->rope_high_freq_factor, err);
        if (rc == 0)
            rc = get_int(rs, "original_max_position_embeddings", 8192, 1, INT32_MAX,
                         &cfg->rope_orig_max_positions, err);
        if (rc == 0 && cfg->rope_high_freq_factor <= cfg->rope_low_freq_factor)
            rc = mfs_err_set(err, -EINVAL, "invalid config: llama3 rope_scaling needs "
                             "high_freq_factor > low_freq_factor");
        return rc;
    } else if (!strcmp(kind, "default")) {
        cfg->rope_kind = MFS_ROPE_NONE;
    } else {
        return mfs_err_set(err, -EINVAL, "unsupported rope_scaling type '%s'", kind);
    }
    return 0;
}

static int parse_llama(const cJSON *root, struct mfs_model_config *cfg, struct mfs_err *err)
{
    bool use_sw = true;
    char act[32];
    int rc;

    rc = get_int(root, "vocab_size", 32000, 1, INT32_MAX, &cfg->vocab_size, err);
    if (rc == 0)
        rc = get_int(root, "hidden_size", 4096, 1, 1 << 20, &cfg->hidden_size, err);
    if (rc == 0)
        rc = get_int(root, "intermediate_size", 11008, 1, 1 << 24, &cfg->intermediate_size,
                     err);
    if (rc == 0)
        rc = get_int(root, "num_hidden_layers", 32, 1, 4096, &cfg->n_layers, err);
    if (rc == 0)
        rc = get_int(root, "num_attention_heads", 32, 1, 4096, &cfg->n_heads, err);
    if (rc == 0)
        rc = get_int(root, "num_key_value_heads", cfg->n_heads, 1, 4096, &cfg->n_kv_heads, err);
    if (rc == 0)
        rc = get_int(root, "head_dim", cfg->hidden_size / cfg->n_heads, 1, 1 << 16,
                     &cfg->head_dim, err);
    if (rc == 0)
        rc = get_int(root, "max_position_embeddings", 2048, 1, INT32_MAX, &cfg->max_positions,
                     err);
    if (rc == 0)
        rc = get_double(root, "rms_norm_eps", 1e-6, 0, 1, &cfg->norm_eps, err);
    if (rc == 0)
        rc = get_double(root, "rope_theta", 10000.0, 1e-3, 1e30, &cfg->rope_theta, err);
    if (rc == 0)
        rc = get_bool(root, "tie_word_embeddings", false, &cfg->tie_word_embeddings, err);
    if (rc == 0)
        rc = get_bool(root, "attention_bias", cfg->attention_bias, &cfg->attention_bias, err);
    if (rc == 0)
        rc = get_bool(root, "mlp_bias", false, &cfg->mlp_bias, err);
    if (rc == 0)
        rc = get_int(root, "sliding_window", 0, 0, INT32_MAX, &cfg->sliding_window, err);
    if (rc == 0)
        rc = get_bool(root, "use_sliding_window", true, &use_sw, err);
    if (rc == 0)
        rc = get_str(root, "hidden_act", act, sizeof(act), err);
    if (rc == 0)
        rc = parse_act(act[0] ? act : "silu", &cfg->act, err);
    if (rc == 0)
        rc = parse_rope_scaling(root, cfg, err);
    if (rc < 0)
        return rc;
    /* Qwen2 keeps the window out unless use_sliding_window; llama has none. */
    if (!strcmp(cfg->model_type, "llama") || !use_sw)
        cfg->sliding_window = 0;
    if (cfg->n_heads % cfg->n_kv_heads)
        return mfs_err_set(err, -EINVAL, "invalid config: num_attention_heads %lld is not a "
                           "multiple of num_key_value_heads %lld", (long long)cfg->n_heads,
                           (long long)cfg->n_kv_heads);
    if (cfg->head_dim % 2)
        return mfs_err_set(err, -EINVAL, "invalid config: head_dim %lld is odd",
                           (long long)cfg->head_dim);
    return 0;
}

static int parse_gpt2(const cJSON *root, struct mfs_model_config *cfg, struct mfs_err *err)
{
    char act[32];
    int64_t inner;
    int rc;

    rc = get_int(root, "vocab_size", 50257, 1, INT32_MAX, &cfg->vocab_size, err);
    if (rc == 0)
        rc = get_int(root, "n_embd", 768, 1, 1 << 20, &cfg->hidden_size, err);
    if (rc == 0)
        rc = get_int(root, "n_layer", 12, 1, 4096, &cfg->n_layers, err);
    if (rc == 0)
        rc = get_int(root, "n_head", 12, 1, 4096, &cfg->n_heads, err);
    if (rc == 0)
        rc = get_int(root, "n_positions", 1024, 1, INT32_MAX, &cfg->max_positions, err);
    if (rc == 0)
        rc = get_int(root, "n_inner", 0, 0, 1 << 24, &inner, err);
    if (rc == 0)
        rc = get_double(root, "layer_norm_epsilon", 1e-5, 0, 1, &cfg->norm_eps, err);
    if (rc == 0)
        rc = get_bool(root, "scale_attn_weights", true, &cfg->scale_attn_weights, err);
    if (rc == 0)
        rc = get_bool(root, "scale_attn_by_inverse_layer_idx", false,
                      &cfg->scale_attn_by_inverse_layer_idx, err);
    if (rc == 0)
        rc = get_bool(root, "tie_word_embeddings", true, &cfg->tie_word_embeddings, err);
    if (rc == 0)
        rc = get_str(root, "activation_function", act, sizeof(act), err);
    if (rc == 0)
        rc = parse_act(act[0] ? act : "gelu_new", &cfg->act, err);
    if (rc < 0)
        return rc;
    cfg->intermediate_size = inner ? inner : 4 * cfg->hidden_size;
    cfg->n_kv_heads = cfg->n_heads;
    if (cfg->hidden_size % cfg->n_heads)
        return mfs_err_set(err, -EINVAL, "invalid config: n_embd %lld is not a multiple of "
                           "n_head %lld", (long long)cfg->hidden_size, (long long)cfg->n_heads);
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->attention_bias = true;
    cfg->mlp_bias = true;
    return 0;
}

static int parse_bert(const cJSON *root, struct mfs_model_config *cfg, struct mfs_err *err)
{
    char act[32];
    int rc;

    rc = get_int(root, "vocab_size", 30522, 1, INT32_MAX, &cfg->vocab_size, err);
    if (rc == 0)
        rc = get_int(root, "hidden_size", 768, 1, 1 << 20, &cfg->hidden_size, err);
    if (rc == 0)
        rc = get_int(root, "num_hidden_layers", 12, 1, 4096, &cfg->n_layers, err);
    if (rc == 0)
        rc = get_int(root, "num_attention_heads", 12, 1, 4096, &cfg->n_heads, err);
    if (rc == 0)
        rc = get_int(root, "intermediate_size", 3072, 1, 1 << 24, &cfg->intermediate_size,
                     err);
    if (rc == 0)
        rc = get_int(root, "max_position_embeddings", 512, 1, INT32_MAX, &cfg->max_positions,
                     err);
    if (rc == 0)
        rc = get_int(root, "type_vocab_size", 2, 1, 1 << 20, &cfg->type_vocab_size, err);
    if (rc == 0)
        rc = get_double(root, "layer_norm_eps", 1e-12, 0, 1, &cfg->norm_eps, err);
    if (rc == 0)
        rc = get_str(root, "hidden_act", act, sizeof(act), err);
    if (rc == 0)
        rc = parse_act(act[0] ? act : "gelu", &cfg->act, err);
    if (rc == 0)
        rc = get_bool(root, "tie_word_embeddings", true, &cfg->tie_word_embeddings, err);
    if (rc < 0)
        return rc;
    cfg->n_kv_heads = cfg->n_heads;
    if (cfg->hidden_size % cfg->n_heads)
        return mfs_err_set(err, -EINVAL, "invalid config: hidden_size %lld is not a multiple "
                           "of num_attention_heads %lld", (long long)cfg->hidden_size,
                           (long long)cfg->n_heads);
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->attention_bias = true;
    cfg->mlp_bias = true;
    return 0;
}

static int parse_bloom(const cJSON *root, struct mfs_model_config *cfg, struct mfs_err *err)
{
    bool post_ln = false;
    int64_t n_embed;
    int rc;

    rc = get_int(root, "vocab_size", 250880, 1, INT32_MAX, &cfg->vocab_size, err);
    if (rc == 0)
        rc = get_int(root, "n_embed", 64, 1, 1 << 20, &n_embed, err);
    if (rc == 0)
        rc = get_int(root, "hidden_size", n_embed, 1, 1 << 20, &cfg->hidden_size, err);
    if (rc == 0)
        rc = get_int(root, "n_layer", 2, 1, 4096, &cfg->n_layers, err);
    if (rc == 0)
        rc = get_int(root, "n_head", 8, 1, 4096, &cfg->n_heads, err);
    if (rc == 0)
        rc = get_double(root, "layer_norm_epsilon", 1e-5, 0, 1, &cfg->norm_eps, err);
    if (rc == 0)
        rc = get_bool(root, "tie_word_embeddings", true, &cfg->tie_word_embeddings, err);
    if (rc == 0)
        rc = get_bool(root, "apply_residual_connection_post_layernorm", false, &post_ln, err);
    if (rc < 0)
        return rc;
    if (post_ln)
        return mfs_err_set(err, -EINVAL, "unsupported bloom option "
                           "'apply_residual_connection_post_layernorm'");
    if (cfg->hidden_size % cfg->n_heads)
        return mfs_err_set(err, -EINVAL, "invalid config: hidden_size %lld is not a multiple "
                           "of n_head %lld", (long long)cfg->hidden_size,
                           (long long)cfg->n_heads);
    cfg->n_kv_heads = cfg->n_heads;
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    cfg->intermediate_size = 4 * cfg->hidden_size;
    cfg->max_positions = INT32_MAX;         /* ALiBi: no learned position table */
    cfg->act = MFS_CFG_ACT_GELU_NEW;        /* bloom_gelu_forward is the tanh form */
    cfg->attention_bias = true;
    cfg->mlp_bias = true;
    return 0;
}

int mfs_model_config_parse(const char *json, size_t len, struct mfs_model_config *cfg,
                           struct mfs_err *err)
{
    cJSON *root;
    const cJSON *archs;
    int rc = 0;

    memset(cfg, 0, sizeof(*cfg));
    cfg->bos_token_id = -1;
    cfg->pad_token_id = -1;
    root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = mfs_err_set(err, -EINVAL, "invalid 'config.json': not a JSON object");
        goto out_delete;
    }
    rc = get_str(root, "model_type", cfg->model_type, sizeof(cfg->model_type), err);
    if (rc == 0)
        rc = get_str(root, "torch_dtype", cfg->torch_dtype, sizeof(cfg->torch_dtype), err);
    if (rc < 0)
        goto out_delete;
    archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0)))
        snprintf(cfg->architecture, sizeof(cfg->architecture), "%s",
                 cJSON_GetArrayItem(archs, 0)->valuestring);
    rc = get_int(root, "bos_token_id", -1, 0, INT32_MAX, &cfg->bos_token_id, err);
    if (rc == 0)
        rc = get_int(root, "pad_token_id", -1, 0, INT32_MAX, &cfg->pad_token_id, err);
    if (rc == 0)
        rc = get_eos(root, cfg->eos_token_id, &cfg->n_eos, err);
    if (rc < 0)
        goto out_delete;
    if (!strcmp(cfg->model_type, "llama") || !strcmp(cfg->model_type, "mistral") ||
        !strcmp(cfg->model_type, "qwen2")) {
        cfg->arch = MFS_ARCH_LLAMA;
        cfg->attention_bias = !strcmp(cfg->model_type, "qwen2");
        rc = parse_llama(root, cfg, err);
    } else if (!strcmp(cfg->model_type, "gpt2")) {
        cfg->arch = MFS_ARCH_GPT2;
        rc = parse_gpt2(root, cfg, err);
    } else if (!strcmp(cfg->model_type, "bert")) {
        cfg->arch = MFS_ARCH_BERT;
        rc = parse_bert(root, cfg, err);
    } else if (!strcmp(cfg->model_type, "bloom")) {
        cfg->arch = MFS_ARCH_BLOOM;
        rc = parse_bloom(root, cfg, err);
    } else {
        /* Parsed only for .modelfs/info (PretrainedConfig's default). */
        cfg->arch = MFS_ARCH_UNKNOWN;
        rc = get_bool(root, "tie_word_embeddings", true, &cfg->tie_word_embeddings, err);
    }
    if (rc < 0)
        mfs_err_wrap(err, rc, "invalid 'config.json' (%s)", cfg->model_type);

out_delete:
    cJSON_Delete(root);
    return rc;
}

int mfs_gen_config_parse(const char *json, size_t len, const struct mfs_model_config *cfg,
                         struct mfs_gen_config *gen, struct mfs_err *err)
{
    cJSON *root = NULL;
    int rc = 0;

    memset(gen, 0, sizeof(*gen));
    gen->max_length = 20;
    gen->max_new_tokens = -1;
    gen->temperature = 1.0;
    gen->top_k = 50;
    gen->top_p = 1.0;
    gen->repetition_penalty = 1.0;
    gen->bos_token_id = cfg ? cfg->bos_token_id : -1;
    gen->pad_token_id = cfg ? cfg->pad_token_id : -1;
    if (cfg) {
        gen->n_eos = cfg->n_eos;
        memcpy(gen->eos_token_id, cfg->eos_token_id, sizeof(gen->eos_token_id));
    }
    if (!json)
        return 0;
    root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = mfs_err_set(err, -EINVAL, "invalid 'generation_config.json': not a JSON object");
        goto out_delete;
    }
    rc = get_int(root, "max_length", 20, 0, INT32_MAX, &gen->max_length, err);
    if (rc == 0)
        rc = get_int(root, "max_new_tokens", -1, 0, INT32_MAX, &gen->max_new_tokens, err);
    if (rc == 0)
        rc = get_bool(root, "do_sample", false, &gen->do_sample, err);
    if (rc == 0)
        rc = get_double(root, "temperature", 1.0, 0, 1e6, &gen->temperature, err);
    if (rc == 0)
        rc = get_int(root, "top_k", 50, 0, INT32_MAX, &gen->top_k, err);
    if (rc == 0)
        rc = get_double(root, "top_p", 1.0, 0, 1, &gen->top_p, err);
    if (rc == 0)
        rc = get_double(root, "repetition_penalty", 1.0, 1e-6, 1e6, &gen->repetition_penalty,
                        err);
    if (rc == 0)
        rc = get_int(root, "bos_token_id", gen->bos_token_id, -1, INT32_MAX, &gen->bos_token_id,
                     err);
    if (rc == 0)
        rc = get_int(root, "pad_token_id", gen->pad_token_id, -1, INT32_MAX, &gen->pad_token_id,
                     err);
    if (rc == 0)
        rc = get_eos(root, gen->eos_token_id, &gen->n_eos, err);
    if (rc < 0)
        mfs_err_wrap(err, rc, "invalid 'generation_config.json'");

out_delete:
    cJSON_Delete(root);
    return rc;
}

const char *mfs_model_arch_name(enum mfs_arch arch)
{
    switch (arch) {
    case MFS_ARCH_LLAMA:
        return "llama";
    case MFS_ARCH_GPT2:
        return "gpt2";
    case MFS_ARCH_BERT:
        return "bert";
    case MFS_ARCH_BLOOM:
        return "bloom";
    default:
        return "unknown";
    }
}

void mfs_model_config_inv_freq(const struct mfs_model_config *cfg, int64_t seq_len,
                               float *inv_freq)
{
    int64_t dim = cfg->head_dim;
    int64_t half = dim / 2;
    double base = cfg->rope_theta;
    int64_t i;

    if (cfg->rope_kind == MFS_ROPE_DYNAMIC && seq_len > cfg->max_positions) {
        double f = cfg->rope_factor;

        base = base * pow(f * (double)seq_len / (double)cfg->max_positions - (f - 1.0),
                          (double)dim / (double)(dim - 2));
    }
    for (i = 0; i < half; i++) {
        /* float32 as torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) */
        float e = (float)(2 * i) / (float)dim;

        inv_freq[i] = 1.0f / powf((float)base, e);
    }
    if (cfg->rope_kind == MFS_ROPE_LINEAR) {
        for (i = 0; i < half; i++)
            inv_freq[i] = (float)(inv_freq[i] / cfg->rope_factor);
    } else if (cfg->rope_kind == MFS_ROPE_LLAMA3) {
        double f = cfg->rope_factor;
        double old = (double)cfg->rope_orig_max_positions;
        double lo_wl = old / cfg->rope_low_freq_factor;
        double hi_wl = old / cfg->rope_high_freq_factor;

        for (i = 0; i < half; i++) {
            double fr = inv_freq[i];
            double wl = 2 * M_PI / fr;

            if (wl > lo_wl) {
                fr = fr / f;
            } else if (wl >= hi_wl) {
                double s = (old / wl - cfg->rope_low_freq_factor) /
                           (cfg->rope_high_freq_factor - cfg->rope_low_freq_factor);

                fr = (1 - s) * fr / f + s * fr;
            }
            inv_freq[i] = (float)fr;
        }
    }
}
