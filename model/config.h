/*
 * model/config.h - a model repo's config.json and generation_config.json,
 * as transformers 4.37 reads them (PretrainedConfig subclasses and
 * GenerationConfig), reduced to what inference needs.
 *
 * The architecture comes from model_type (llama, mistral, qwen2, gpt2,
 * bert, bloom); anything else parses (so .modelfs/info can show it) but has
 * arch MFS_ARCH_UNKNOWN and fails at load with -EINVAL.  Fields missing
 * from the JSON take transformers' class defaults.  Pure functions on
 * memory; any thread.
 */
#ifndef MFS_MODEL_CONFIG_H
#define MFS_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MFS_CFG_MAX_EOS 8                   /* eos_token_id list entries kept */

enum mfs_arch {
    MFS_ARCH_UNKNOWN,
    MFS_ARCH_LLAMA,                         /* llama, mistral, qwen2 */
    MFS_ARCH_GPT2,
    MFS_ARCH_BERT,
    MFS_ARCH_BLOOM,                         /* ALiBi, fused per-head q/k/v */
};

enum mfs_rope_kind {
    MFS_ROPE_NONE,                          /* plain rotate-half RoPE */
    MFS_ROPE_LINEAR,                        /* positions / factor */
    MFS_ROPE_DYNAMIC,                       /* NTK: theta grows past max_position_embeddings */
    MFS_ROPE_LLAMA3,                        /* per-frequency smooth scaling */
};

enum mfs_cfg_act {
    MFS_CFG_ACT_SILU,
    MFS_CFG_ACT_GELU,                       /* erf form */
    MFS_CFG_ACT_GELU_NEW,                   /* tanh form (gelu_new, gelu_pytorch_tanh) */
    MFS_CFG_ACT_RELU,
};

struct mfs_model_config {
    char model_type[32];                    /* "llama", "bloom", ... ("" if absent) */
    char architecture[64];                  /* architectures[0], "" if absent */
    char torch_dtype[16];                   /* "float32", "bfloat16", ... ("" if absent) */
    enum mfs_arch arch;
    int64_t vocab_size;
    int64_t hidden_size;                    /* d_model (n_embd for gpt2) */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;                     /* = n_heads when absent */
    int64_t head_dim;                       /* hidden_size / n_heads unless given */
    int64_t intermediate_size;              /* MLP width (gpt2: n_inner or 4*n_embd) */
    int64_t max_positions;                  /* max_position_embeddings / n_positions */
    int64_t type_vocab_size;                /* bert token types */
    double norm_eps;                        /* rms_norm_eps / layer_norm_eps(ilon) */
    double rope_theta;
    enum mfs_rope_kind rope_kind;
    double rope_factor;                     /* rope_scaling.factor */
    double rope_low_freq_factor;            /* llama3 */
    double rope_high_freq_factor;           /* llama3 */
    int64_t rope_orig_max_positions;        /* llama3 original_max_position_embeddings */
    int64_t sliding_window;                 /* keys per query incl. itself; 0 = none */
    bool tie_word_embeddings;               /* lm_head shares the token embedding */
    bool attention_bias;                    /* q/k/v(/o) biases (qwen2: q/k/v) */
    bool mlp_bias;
    enum mfs_cfg_act act;                   /* hidden_act / activation_function */
    bool scale_attn_weights;                /* gpt2: divide scores by sqrt(head_dim) */
    bool scale_attn_by_inverse_layer_idx;   /* gpt2 */
    int64_t bos_token_id;                   /* -1 if none */
    int64_t pad_token_id;                   /* -1 if none */
    size_t n_eos;
    int64_t eos_token_id[MFS_CFG_MAX_EOS];  /* from config.json */
};

/* generation_config.json over transformers' GenerationConfig defaults. */
struct mfs_gen_config {
    int64_t max_length;                     /* 20 */
    int64_t max_new_tokens;                 /* -1: not set (then max_length applies) */
    bool do_sample;                         /* false */
    double temperature;                     /* 1.0 */
    int64_t top_k;                          /* 50 */
    double top_p;                           /* 1.0 */
    double repetition_penalty;              /* 1.0 */
    int64_t bos_token_id;                   /* -1 if none */
    int64_t pad_token_id;                   /* -1 if none */
    size_t n_eos;
    int64_t eos_token_id[MFS_CFG_MAX_EOS];
};

/* Parse config.json text json[0..len).  OUT: *cfg.  -EINVAL: not a JSON
 * object, a field of the wrong type, or numbers out of range (a negative
 * or zero size, heads not dividing the hidden size), with the field
 * named in *err.  An unknown model_type is not an error here. */
int mfs_model_config_parse(const char *json, size_t len, struct mfs_model_config *cfg,
                           struct mfs_err *err);

/* Parse generation_config.json json[0..len) (NULL: defaults only) over
 * the model config's bos/eos/pad.  OUT: *gen.  -EINVAL as above. */
int mfs_gen_config_parse(const char *json, size_t len, const struct mfs_model_config *cfg,
                         struct mfs_gen_config *gen, struct mfs_err *err);

/* Name of an architecture family ("llama", "gpt2", "bert", "unknown"). */
const char *mfs_model_arch_name(enum mfs_arch arch);

/* RoPE inverse frequencies for head_dim/2 pairs when the sequence has
 * seq_len tokens (only dynamic scaling depends on it), as transformers
 * computes them in float32.  inv_freq has head_dim/2 entries. */
void mfs_model_config_inv_freq(const struct mfs_model_config *cfg, int64_t seq_len,
                               float *inv_freq);

#endif
