/*
 * model/model_int.h - internals shared by model.c (load plumbing, state,
 * generate), llama.c (llama/mistral/qwen2 tensor map and the decoder
 * forward shared with gpt2), gpt2.c and bert.c.  Not for other modules.
 *
 * Every architecture is mapped onto one layer struct: weights W[out, in]
 * (the backend's only layout), F32 biases and norm weights.
 */
#ifndef MFS_MODEL_MODEL_INT_H
#define MFS_MODEL_MODEL_INT_H

#include "compute/backend.h"
#include "model/model.h"

struct mfs_layer {
    struct mfs_tensor wq;                   /* [n_heads*hd, d] */
    struct mfs_tensor wk;                   /* [n_kv*hd, d] */
    struct mfs_tensor wv;                   /* [n_kv*hd, d] */
    struct mfs_tensor wo;                   /* [d, n_heads*hd] */
    float *bq;                              /* [n_heads*hd] or NULL */
    float *bk;                              /* [n_kv*hd] or NULL */
    float *bv;                              /* [n_kv*hd] or NULL */
    float *bo;                              /* [d] or NULL */
    struct mfs_tensor w_up;                 /* [ff, d]: up_proj, or the plain MLP's fc */
    struct mfs_tensor w_gate;               /* [ff, d]: gate_proj (gated MLPs only) */
    struct mfs_tensor w_down;               /* [d, ff] */
    float *b_up;                            /* [ff] or NULL */
    float *b_gate;                          /* [ff] or NULL */
    float *b_down;                          /* [d] or NULL */
    float *ln1_w;                           /* [d] before attention (bert: after it) */
    float *ln1_b;                           /* [d] or NULL (RMSNorm) */
    float *ln2_w;                           /* [d] before the MLP (bert: after it) */
    float *ln2_b;                           /* [d] or NULL */
};

struct mfs_model {
    struct mfs_model_config cfg;
    struct mfs_gen_config gen;
    struct mfs_be *be;                      /* owned */
    char device[32];
    enum mfs_model_dtype dtype;             /* requested weight dtype */
    bool rms;                               /* RMSNorm (else LayerNorm) */
    bool rope;                              /* RoPE */
    float *alibi;                           /* host [n_heads] ALiBi slopes (bloom), or NULL */
    bool gated;                             /* SwiGLU MLP */
    enum mfs_be_act act;
    struct mfs_tensor tok_emb;              /* [vocab, d] */
    struct mfs_tensor pos_emb;              /* [max_pos, d] (gpt2, bert) */
    struct mfs_tensor type_emb;             /* [type_vocab, d] (bert) */
    float *emb_ln_w;                        /* [d] LayerNorm after the embeddings (bert, bloom) */
    float *emb_ln_b;
    struct mfs_layer *layers;               /* [n_layers] */
    float *lnf_w;                           /* [d] final norm (decoders) */
    float *lnf_b;
    struct mfs_tensor lm_head;              /* [vocab, d]; data may alias tok_emb's */
    bool has_pooler;                        /* bert */
    struct mfs_tensor pool_w;               /* [d, d] */
    float *pool_b;                          /* [d] */
    void **allocs;                          /* backend buffers to free */
    size_t n_allocs;
    size_t cap_allocs;
    uint64_t weight_bytes;                  /* sum of weight buffers */
    unsigned dtype_seen;                    /* bit per mfs_be_dtype held */
};

struct mfs_model_load_pool;
struct mfs_model_readahead;

#define MFS_MODEL_RA_CHUNK (4u << 20)       /* bytes per read-ahead read */
#define MFS_MODEL_RA_WINDOW ((uint64_t)256 << 20) /* read at most this far ahead of the loader */

/* Start reading ckpt's tensors through io ahead of the loader, in the
 * load order of the architecture in config_json (model/readahead.c).  The
 * loader must then read through mfs_model_readahead_io(), which counts its
 * progress.  OUT: *rap, to stop even on failure (it may be set then).
 * -ENOMEM, -EAGAIN (no thread); the load works without it. */
int mfs_model_readahead_start(const struct mfs_ckpt *ckpt, const struct mfs_ckpt_io *io,
                              const char *config_json, size_t config_len,
                              struct mfs_model_readahead **rap);
/* The io the loader reads through: ra's counting io, or io when ra is NULL. */
const struct mfs_ckpt_io *mfs_model_readahead_io(const struct mfs_model_readahead *ra,
                                                 const struct mfs_ckpt_io *io);
/* Stop the thread (after its current read) and free; *rap becomes NULL. */
void mfs_model_readahead_stop(struct mfs_model_readahead **rap);

/* Reads tensors of one checkpoint into backend memory. */
struct mfs_model_loader {
    struct mfs_model *m;
    const struct mfs_ckpt *ckpt;
    const struct mfs_ckpt_io *io;
    void *raw;                              /* host: one tensor's checkpoint bytes */
    size_t raw_cap;
    const struct mfs_ckpt_tensor *raw_of;   /* tensor whose bytes raw holds, or NULL */
    void *stage;                            /* host: converted chunk before upload */
    size_t stage_cap;
    const char *prefix;                     /* prepended to names ("bert."), or "" */
    struct mfs_model_load_pool *pool;       /* helper threads for big tensors, or NULL */
};

enum mfs_load_flags {
    MFS_LOAD_OPTIONAL = 1 << 0,             /* absent: leave empty, no error */
    MFS_LOAD_TRANSPOSE = 1 << 1,            /* checkpoint holds [in, out] (Conv1D) */
    MFS_LOAD_F32 = 1 << 2,                  /* always F32, whatever the load dtype */
};

/* Load tensor name with checkpoint shape [rows, cols] (after transpose:
 * [cols, rows] in the checkpoint) into *t, taking rows [r0, r0+nr) only
 * (nr 0: all).  Returns 1 when loaded, 0 when optional and absent.
 * -EINVAL: wrong shape or dtype; -EIO; -ENOMEM. */
int mfs_model_load_matrix(struct mfs_model_loader *ld, const char *name, int64_t rows,
                          int64_t cols, int64_t r0, int64_t nr, unsigned flags,
                          struct mfs_tensor *t, struct mfs_err *err);

/* The output projection W[vocab, hidden] into m->lm_head: the token
 * embedding when tie_word_embeddings (transformers' tie_weights(): the
 * embedding wins even over a stored lm_head.weight), else lm_head.weight
 * at the checkpoint's root whatever the loader's prefix.  Call after
 * m->tok_emb is loaded.  Errors as mfs_model_load_matrix. */
int mfs_model_load_lm_head(struct mfs_model_loader *ld, struct mfs_model *m,
                           struct mfs_err *err);

/* As mfs_model_load_matrix, but rows row_idx[0..nr) of the [rows, cols]
 * checkpoint tensor, in that order (bloom's per-head interleaved q/k/v). */
int mfs_model_load_matrix_rows(struct mfs_model_loader *ld, const char *name, int64_t rows,
                               int64_t cols, const int64_t *row_idx, int64_t nr, unsigned flags,
                               struct mfs_tensor *t, struct mfs_err *err);

/* Elements idx[0..cnt) of 1-D tensor name of n elements, as F32. */
int mfs_model_load_vector_rows(struct mfs_model_loader *ld, const char *name, int64_t n,
                               const int64_t *idx, int64_t cnt, unsigned flags, float **out,
                               struct mfs_err *err);

/* Load 1-D tensor name of n elements as F32 (optionally only
 * [off, off+cnt), cnt 0: all).  Returns 1 / 0 as above. */
int mfs_model_load_vector(struct mfs_model_loader *ld, const char *name, int64_t n, int64_t off,
                          int64_t cnt, unsigned flags, float **out, struct mfs_err *err);

/* The tensor name (with the loader's prefix), or NULL. */
const struct mfs_ckpt_tensor *mfs_model_loader_find(struct mfs_model_loader *ld,
                                                    const char *name);

int mfs_model_llama_load(struct mfs_model_loader *ld, struct mfs_err *err);
int mfs_model_gpt2_load(struct mfs_model_loader *ld, struct mfs_err *err);
int mfs_model_bert_load(struct mfs_model_loader *ld, struct mfs_err *err);
int mfs_model_bloom_load(struct mfs_model_loader *ld, struct mfs_err *err);

/* Per-request buffers of a decoder (llama.c). */
struct mfs_model_state {
    const struct mfs_model *m;
    int64_t max_tokens;                     /* cache rows */
    int64_t n_past;                         /* rows filled */
    float **kc;                             /* [n_layers] -> [max_tokens, n_kv*hd] */
    float **vc;
    int64_t cap_tok;                        /* scratch sized for this many new tokens */
    float *x;                               /* [cap, d] residual stream */
    float *h;                               /* [cap, d] normed input */
    float *q;                               /* [cap, n_heads*hd] */
    float *att;                             /* [cap, n_heads*hd] */
    float *ff1;                             /* [cap, ff] */
    float *ff2;                             /* [cap, ff] */
    float *logits;                          /* [vocab] last-position logits, or NULL */
    float *inv_freq;                        /* host [hd/2] */
};

/* Grow the state's scratch to n new tokens.  -ENOMEM. */
int mfs_model_state_reserve(struct mfs_model_state *s, int64_t n, struct mfs_err *err);

/* The decoder forward of llama.c (llama, mistral, qwen2, gpt2): see
 * mfs_model_forward. */
int mfs_model_decoder_forward(const struct mfs_model *m, struct mfs_model_state *s,
                              const int32_t *ids, size_t n, unsigned flags, float *logits,
                              struct mfs_err *err);

/* The bert forward (bert.c): see mfs_model_encode. */
int mfs_model_bert_forward(const struct mfs_model *m, const int32_t *ids, size_t n,
                           float *hidden, float *pooled, struct mfs_err *err);

#endif
