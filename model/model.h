/*
 * model/model.h - CPU (and later CUDA) inference over a checkpoint:
 * load, forward with a KV cache, generate, embed, and the numbers of
 * .modelfs/info (docs/design.md, Inference and Control files).
 *
 * Architectures (config.json model_type): llama, mistral (sliding
 * window), qwen2 (q/k/v bias) -- RMSNorm, rotate-half RoPE (with linear,
 * dynamic and llama3 rope_scaling), GQA, SwiGLU; gpt2 -- learned
 * positions, LayerNorm, gelu_new, Conv1D weights transposed at load;
 * bert -- post-LN encoder, pooler.  Anything else fails to load with
 * -EINVAL "unsupported architecture 'bloom'".
 *
 * Weights are read one tensor at a time through the caller's io callback
 * (model/checkpoint.h), converted to the load dtype on the way, so peak
 * memory is the final weights plus the largest tensor plus a little.
 * Compute is F32.  A loaded model is read-only: any number of threads
 * may run requests on it at once, each with its own mfs_model_state.
 * Returns: >= 0 on success, negative errno with the reason in *err.
 */
#ifndef MFS_MODEL_MODEL_H
#define MFS_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "model/checkpoint.h"
#include "model/config.h"

struct mfs_model;
struct mfs_model_state;

enum mfs_model_dtype {
    MFS_MODEL_DTYPE_AUTO,                   /* keep the checkpoint's F32/F16/BF16 */
    MFS_MODEL_DTYPE_F32,
    MFS_MODEL_DTYPE_BF16,
    MFS_MODEL_DTYPE_F16,
};

/* What `.modelfs/load` asks for: "device=cpu dtype=bf16 threads=2". */
struct mfs_model_load_opts {
    char device[32];                        /* "cpu" (default when "") or "cuda:N" */
    enum mfs_model_dtype dtype;             /* weights in memory */
    int threads;                            /* CPU threads; 0 = one per core */
    char device_map[16];                    /* "" or "auto" (CPU only for now) */
    char max_memory[128];                   /* as given, e.g. "cuda:0=20GiB,cpu=64GiB" */
};

/* Parse key=value words separated by blanks (model/gen_request.c).
 * Keys: device, dtype (auto, float32/f32, bfloat16/bf16, float16/f16),
 * threads (1..1024), device_map (auto), max_memory.  OUT: *opts (defaults
 * for keys not given).  -EINVAL: unknown key, bad value, repeated key. */
int mfs_model_load_opts_parse(const char *text, size_t len, struct mfs_model_load_opts *opts,
                              struct mfs_err *err);

/* Load the model in files[0..n) (the repo's file list: config.json,
 * generation_config.json and the checkpoint), reading every byte through
 * io.  opts NULL: cpu, dtype auto, one thread per core.  OUT: *mp, free
 * with mfs_model_free().  -EINVAL: unsupported architecture, bad config,
 * missing or misshaped tensor (named in *err); -ENOENT: no config.json or
 * no checkpoint; -ENODEV: device unavailable; -EIO: io failed; -ENOMEM. */
int mfs_model_load(const struct mfs_ckpt_file *files, size_t n, const struct mfs_ckpt_io *io,
                   const struct mfs_model_load_opts *opts, struct mfs_model **mp,
                   struct mfs_err *err);

/* Free *mp and set it NULL.  NULL is a no-op.  No request may be running. */
void mfs_model_free(struct mfs_model **mp);

/* Borrowed views, valid until mfs_model_free(). */
const struct mfs_model_config *mfs_model_get_config(const struct mfs_model *m);
const struct mfs_gen_config *mfs_model_get_gen_config(const struct mfs_model *m);
const char *mfs_model_device(const struct mfs_model *m);    /* "cpu" */
int mfs_model_threads(const struct mfs_model *m);
/* Bytes of weights held in memory, and their dtype name ("F32", "BF16",
 * "F16", or "mixed" for auto over a mixed checkpoint). */
uint64_t mfs_model_weight_bytes(const struct mfs_model *m);
const char *mfs_model_weight_dtype(const struct mfs_model *m);
bool mfs_model_can_generate(const struct mfs_model *m);

/* A request's KV cache and scratch for up to max_tokens positions
 * (clamped to the model's position limit for learned positions).
 * OUT: *sp, free with mfs_model_state_free().  -ENOMEM; -EINVAL: an
 * encoder-only model. */
int mfs_model_state_new(const struct mfs_model *m, int64_t max_tokens,
                        struct mfs_model_state **sp, struct mfs_err *err);
void mfs_model_state_free(struct mfs_model_state **sp);
/* Forget the cached tokens (keeps the memory). */
void mfs_model_state_reset(struct mfs_model_state *s);
/* Tokens in the cache so far. */
int64_t mfs_model_state_len(const struct mfs_model_state *s);

enum mfs_model_forward_flags {
    MFS_MODEL_ALL_LOGITS = 1 << 0,          /* logits for every new position, not only the last */
};

/* Run ids[0..n) at positions len..len+n-1, appending them to the cache.
 * logits: [n, vocab] with MFS_MODEL_ALL_LOGITS, else [vocab] for the last
 * position (host memory, F32).  -EINVAL: n == 0, an id outside the
 * vocabulary, or the cache would overflow (state untouched). */
int mfs_model_forward(const struct mfs_model *m, struct mfs_model_state *s, const int32_t *ids,
                      size_t n, unsigned flags, float *logits, struct mfs_err *err);

/* Encoder models (bert): hidden[n, hidden_size] = last_hidden_state;
 * pooled[hidden_size] = pooler_output (tanh(dense(CLS))) when the
 * checkpoint has a pooler, else the CLS hidden state; either may be NULL.
 * OUT: *has_pooler may be NULL.  -EINVAL: not an encoder, bad id, too
 * many tokens. */
int mfs_model_encode(const struct mfs_model *m, const int32_t *ids, size_t n, float *hidden,
                     float *pooled, bool *has_pooler, struct mfs_err *err);

enum mfs_model_pool {
    MFS_MODEL_POOL_CLS,                     /* pooler output if present, else CLS hidden state */
    MFS_MODEL_POOL_MEAN,                    /* mean of all positions' hidden states */
};

/* The pooled vector out[hidden_size] of ids (encoder models). */
int mfs_model_embed(const struct mfs_model *m, const int32_t *ids, size_t n,
                    enum mfs_model_pool pool, float *out, struct mfs_err *err);

/* ---- generation ---- */

#define MFS_GEN_MAX_STOP 8                  /* stop strings per request */

/* Decoding settings after merging a request over generation_config.json. */
struct mfs_gen_params {
    int64_t max_new_tokens;                 /* >= 0 */
    bool do_sample;                         /* false: greedy (argmax, lowest id on ties) */
    double temperature;                     /* > 0 when sampling */
    int64_t top_k;                          /* 0 = off */
    double top_p;                           /* 1.0 = off */
    double repetition_penalty;              /* 1.0 = off; applied to prompt and new ids */
    uint64_t seed;                          /* PRNG seed (same seed, same output) */
    size_t n_eos;
    int64_t eos_token_id[MFS_CFG_MAX_EOS];  /* stop after emitting one of these */
    size_t n_stop;
    const char *stop[MFS_GEN_MAX_STOP];     /* borrowed stop strings */
};

/* Defaults from gen (max_new_tokens: gen's, else max_length - n_prompt
 * computed at generate time when max_new_tokens < 0; seed 0). */
void mfs_gen_params_init(struct mfs_gen_params *p, const struct mfs_gen_config *gen);

/* Called after each new token (index counts from 0); return non-zero to
 * stop.  Runs on the generating thread. */
typedef int (*mfs_gen_token_fn)(void *ctx, int32_t id, size_t index);
/* Append the text of new ids[0..n) (all new ids so far) to out, so stop
 * strings can be found; return 0 or a negative errno. */
typedef int (*mfs_gen_detok_fn)(void *ctx, const int32_t *ids, size_t n, struct mfs_buf *out,
                                struct mfs_err *err);

struct mfs_gen_callbacks {
    mfs_gen_token_fn on_token;              /* may be NULL */
    mfs_gen_detok_fn detok;                 /* needed when stop strings are set */
    void *ctx;
};

enum mfs_gen_stop_reason {
    MFS_GEN_STOP_LENGTH,                    /* max_new_tokens reached */
    MFS_GEN_STOP_EOS,                       /* an eos_token_id was emitted (it is in ids) */
    MFS_GEN_STOP_STRING,                    /* a stop string appeared in the text */
    MFS_GEN_STOP_CALLBACK,                  /* on_token returned non-zero */
    MFS_GEN_STOP_CONTEXT,                   /* the position limit was reached */
};

struct mfs_gen_result {
    int32_t *ids;                           /* new ids, malloc'ed; mfs_gen_result_release() */
    size_t n_ids;
    enum mfs_gen_stop_reason stop;
    int stop_index;                         /* which stop string, or -1 */
    double prefill_ms;                      /* prompt forward */
    double decode_ms;                       /* all later steps */
};

void mfs_gen_result_release(struct mfs_gen_result *r);

/* Generate after prompt[0..n_prompt) with a fresh KV cache.  OUT: *res.
 * -EINVAL: empty prompt, bad id, bad params, encoder-only model, stop
 * strings without a detok callback; -ENOMEM.  Any thread, concurrently
 * with other requests on m. */
int mfs_model_generate(const struct mfs_model *m, const int32_t *prompt, size_t n_prompt,
                       const struct mfs_gen_params *p, const struct mfs_gen_callbacks *cb,
                       struct mfs_gen_result *res, struct mfs_err *err);

/* ---- sampling (model/sample.c) ---- */

/* xoshiro256** seeded through splitmix64: same seed, same sequence. */
struct mfs_model_rng {
    uint64_t s[4];                          /* state, never all zero */
};

void mfs_model_rng_seed(struct mfs_model_rng *r, uint64_t seed);
uint64_t mfs_model_rng_next(struct mfs_model_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double mfs_model_rng_uniform(struct mfs_model_rng *r);

/* Pick the next id from logits[vocab] (modified in place) as transformers
 * 4.37 does: repetition_penalty over history[0..n_hist) (a logits
 * processor), then temperature, top_k, top_p (warpers, in that order)
 * and a multinomial draw; greedy argmax (lowest id on ties) when
 * !do_sample.  OUT: *id.  -EINVAL: bad params; -ENOMEM. */
int mfs_model_sample(float *logits, int64_t vocab, const struct mfs_gen_params *p,
                     const int32_t *history, size_t n_hist, struct mfs_model_rng *rng,
                     int32_t *id, struct mfs_err *err);

/* ---- .modelfs/info numbers (transformers' ModelMixin, checked against
 * data/golden/model-ops.json) ---- */

struct mfs_model_info {
    uint64_t num_parameters;                /* distinct parameters; tied ones once */
    uint64_t num_parameters_exclude_embeddings; /* minus nn.Embedding weights */
    uint64_t footprint_f32;                 /* get_memory_footprint(): params + buffers, bytes */
    uint64_t footprint_bf16;
    uint64_t footprint_f16;
    uint64_t footprint_int8;                /* estimate: Linear weights 1 byte, rest F16 */
    uint64_t footprint_int4;                /* estimate: Linear weights 4 bits + F32 scale per 64 */
    uint64_t flops_per_token;               /* 6 * num_parameters_exclude_embeddings */
    uint64_t flops_per_token_all;           /* 6 * num_parameters */
    bool can_generate;                      /* *ForCausalLM, *LMHeadModel */
    bool tied;                              /* output weights shared with the input embedding */
    const char *loaded_dtype_auto;          /* dtype of torch_dtype="auto": "float32", ... */
};

/* Compute info from the config and the checkpoint's tensor list (no
 * weights read).  -EINVAL: empty checkpoint. */
int mfs_model_info_compute(const struct mfs_model_config *cfg, const struct mfs_ckpt *ckpt,
                           struct mfs_model_info *info, struct mfs_err *err);

/* Whether a checkpoint tensor is an nn.Embedding weight (token, position,
 * token type embeddings). */
bool mfs_model_is_embedding_name(const char *name);

#endif
