/*
 * compute/backend.h - what a device backend gives model/ (docs/style.md
 * rules 15, 16, 19).
 *
 * A backend is a const ops table (struct mfs_be_ops) plus one open handle
 * (struct mfs_be).  model/ calls only the mfs_be_* functions below; it
 * never touches device memory itself except through upload/download.
 *
 * Conventions:
 *  - Shapes are outermost-first, as in safetensors headers: a weight is
 *    W[out, in] row-major (checkpoint quirks such as GPT-2's Conv1D
 *    [in, out] are fixed by model/ at load time), activations are
 *    x[n_tok, dim] row-major F32.
 *  - Weights (struct mfs_tensor) are F32, F16 or BF16; every op computes
 *    in F32.  Norm weights and biases are F32.
 *  - Pointers named d_* / float * activations are backend memory from
 *    mfs_be_alloc(); ids and inv_freq tables are host memory.
 *  - Every op returns 0 or a negative errno.  Ops on one handle may be
 *    called from several threads at once (concurrent requests on one
 *    model): a backend serializes internally what it must.
 */
#ifndef MFS_COMPUTE_BACKEND_H
#define MFS_COMPUTE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum mfs_be_dtype {
    MFS_BE_F32,
    MFS_BE_F16,
    MFS_BE_BF16,
};

/* A weight matrix W[rows, cols] (a vector has rows == 1) in backend memory. */
struct mfs_tensor {
    enum mfs_be_dtype dtype;                /* element type of data */
    int64_t rows;                           /* outermost dim: out features, vocab rows */
    int64_t cols;                           /* innermost dim: in features */
    void *data;                             /* rows*cols elements, row-major; owned by the model */
};

enum mfs_be_act {
    MFS_BE_ACT_SILU,                        /* x * sigmoid(x) */
    MFS_BE_ACT_GELU,                        /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    MFS_BE_ACT_GELU_TANH,                   /* gelu_new: tanh approximation of gelu */
    MFS_BE_ACT_TANH,
    MFS_BE_ACT_RELU,
};

/* Geometry of one attention call: n_tok new queries at positions
 * pos0..pos0+n_tok-1 attend to keys 0..pos0+n_tok-1 of the cache. */
struct mfs_be_attn {
    int n_tok;                              /* queries in this call, >= 1 */
    int pos0;                               /* position of the first query = keys already cached */
    int n_heads;                            /* query heads */
    int n_kv_heads;                         /* key/value heads; n_heads % n_kv_heads == 0 (GQA) */
    int head_dim;                           /* elements per head */
    int causal;                             /* 1: query i sees keys j <= pos0+i; 0: all keys */
    int window;                             /* 0: none; else keys j with i - window < j <= i */
    float scale;                            /* multiplies q.k, usually 1/sqrt(head_dim) */
    const float *alibi;                     /* host: slope per head added as slope*j, or NULL */
};

struct mfs_be;

struct mfs_be_ops {
    const char *name;                       /* "cpu" or "cuda" */
    /* Set up be->priv for device number device with n_threads workers
     * (<= 0: one per core).  -ENODEV: no such device; -ENOMEM. */
    int (*open)(struct mfs_be *be, int device, int n_threads, struct mfs_err *err);
    void (*close)(struct mfs_be *be);
    /* nbytes of backend memory, 64-byte aligned, zeroed.  -ENOMEM. */
    int (*alloc)(struct mfs_be *be, size_t nbytes, void **dptr);
    void (*free)(struct mfs_be *be, void *dptr);
    int (*upload)(struct mfs_be *be, void *dst, const void *src, size_t nbytes);
    int (*download)(struct mfs_be *be, void *dst, const void *src, size_t nbytes);
    int (*copy)(struct mfs_be *be, void *dst, const void *src, size_t nbytes);
    /* y[n_tok, w.rows] = x[n_tok, w.cols] * W^T (+ bias[w.rows] if not NULL). */
    int (*linear)(struct mfs_be *be, const float *x, int64_t n_tok, const struct mfs_tensor *w,
                  const float *bias, float *y);
    /* (optional: NULL = n calls of linear) y[p] = x w[p]^T (+ bias[p]) for
     * p < n <= 4 matrices of the same in-width, as one parallel job (fewer
     * thread handoffs per decoded token).  bias may be NULL. */
    int (*linear_multi)(struct mfs_be *be, const float *x, int64_t n_tok, int n,
                        const struct mfs_tensor *const *w, const float *const *bias,
                        float *const *y);
    /* y[n, table.cols] = table[ids[i], :]; ids on the host, checked < rows. */
    int (*embedding)(struct mfs_be *be, const struct mfs_tensor *table, const int32_t *ids,
                     int64_t n, float *y);
    /* y[n, d] = x * rsqrt(mean(x^2) + eps) * w[d]  (y may be x). */
    int (*rmsnorm)(struct mfs_be *be, const float *x, const float *w, int64_t n, int64_t d,
                   float eps, float *y);
    /* y[n, d] = (x - mean) / sqrt(var + eps) * w + b  (biased variance; y may be x). */
    int (*layernorm)(struct mfs_be *be, const float *x, const float *w, const float *b,
                     int64_t n, int64_t d, float eps, float *y);
    /* Rotate-half RoPE in place on x[n_tok, n_heads, head_dim] for positions
     * pos0..: angle = (float)pos * inv_freq[i], i < head_dim/2 (host). */
    int (*rope)(struct mfs_be *be, float *x, int64_t n_tok, int n_heads, int head_dim,
                int64_t pos0, const float *inv_freq);
    /* out[n_tok, n_heads*head_dim] = softmax(q k^T * scale + mask) v, with
     * q[n_tok, n_heads*head_dim] and kc, vc[pos0+n_tok, n_kv_heads*head_dim]. */
    int (*attention)(struct mfs_be *be, const float *q, const float *kc, const float *vc,
                     const struct mfs_be_attn *a, float *out);
    /* Row-wise softmax of x[rows, cols] in place. */
    int (*softmax)(struct mfs_be *be, float *x, int64_t rows, int64_t cols);
    /* x[n] = act(x) in place. */
    int (*act)(struct mfs_be *be, enum mfs_be_act act, float *x, int64_t n);
    /* y[n] = a + b; y[n] = a * b  (y may alias a or b). */
    int (*add)(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n);
    int (*mul)(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n);
    int (*sync)(struct mfs_be *be);         /* optional: NULL = synchronous */
};

struct mfs_be {
    const struct mfs_be_ops *ops;           /* the backend's table */
    int device;                             /* device number, 0 for the CPU */
    int n_threads;                          /* worker threads in use */
    void *priv;                             /* backend state, owned by ops */
};

extern const struct mfs_be_ops mfs_cpu_ops;     /* compute/cpu.c, OpenBLAS + SIMD */
#ifdef MFS_WITH_CUDA
extern const struct mfs_be_ops mfs_cuda_ops;    /* compute/cuda.cu, cuBLAS */
#endif

/* Open the backend named by spec: "cpu", "cuda" or "cuda:N", with n_threads
 * CPU workers (<= 0: one per online core).  OUT: *bep, close with
 * mfs_be_close().  -ENODEV: "cuda:N" when CUDA is not built in or no GPU is
 * present (the reason says which); -EINVAL: unknown spec; -ENOMEM.
 * Any thread. */
int mfs_be_open(const char *spec, int n_threads, struct mfs_be **bep, struct mfs_err *err);

/* Close *bep and set it to NULL.  NULL is a no-op.  No op may be running. */
void mfs_be_close(struct mfs_be **bep);

/* Bytes per element of dtype: 4 or 2. */
size_t mfs_be_dtype_size(enum mfs_be_dtype dtype);

/* "F32", "F16", "BF16". */
const char *mfs_be_dtype_name(enum mfs_be_dtype dtype);

/* Scalar conversions, round-to-nearest-even (NaN stays NaN, overflow to
 * inf, subnormals kept), as PyTorch's .to(dtype). */
uint16_t mfs_be_f32_to_bf16(float f);
uint16_t mfs_be_f32_to_f16(float f);
float mfs_be_bf16_to_f32(uint16_t h);
float mfs_be_f16_to_f32(uint16_t h);

/* Thin dispatchers over be->ops (see struct mfs_be_ops for contracts). */
int mfs_be_alloc(struct mfs_be *be, size_t nbytes, void **dptr, struct mfs_err *err);
void mfs_be_free(struct mfs_be *be, void *dptr);
int mfs_be_upload(struct mfs_be *be, void *dst, const void *src, size_t nbytes);
int mfs_be_download(struct mfs_be *be, void *dst, const void *src, size_t nbytes);
int mfs_be_copy(struct mfs_be *be, void *dst, const void *src, size_t nbytes);
int mfs_be_linear(struct mfs_be *be, const float *x, int64_t n_tok, const struct mfs_tensor *w,
                  const float *bias, float *y);
int mfs_be_linear_multi(struct mfs_be *be, const float *x, int64_t n_tok, int n,
                        const struct mfs_tensor *const *w, const float *const *bias,
                        float *const *y);
int mfs_be_embedding(struct mfs_be *be, const struct mfs_tensor *table, const int32_t *ids,
                     int64_t n, float *y);
int mfs_be_rmsnorm(struct mfs_be *be, const float *x, const float *w, int64_t n, int64_t d,
                   float eps, float *y);
int mfs_be_layernorm(struct mfs_be *be, const float *x, const float *w, const float *b,
                     int64_t n, int64_t d, float eps, float *y);
int mfs_be_rope(struct mfs_be *be, float *x, int64_t n_tok, int n_heads, int head_dim,
                int64_t pos0, const float *inv_freq);
int mfs_be_attention(struct mfs_be *be, const float *q, const float *kc, const float *vc,
                     const struct mfs_be_attn *a, float *out);
int mfs_be_softmax(struct mfs_be *be, float *x, int64_t rows, int64_t cols);
int mfs_be_act(struct mfs_be *be, enum mfs_be_act act, float *x, int64_t n);
int mfs_be_add(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n);
int mfs_be_mul(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n);
int mfs_be_sync(struct mfs_be *be);

/* CPU backend internals exposed for tests/compute and benchmarks. */
enum mfs_cpu_isa {
    MFS_CPU_SCALAR,
    MFS_CPU_AVX2,                           /* AVX2 + FMA + F16C */
    MFS_CPU_AVX512,                         /* AVX-512F + BW */
};

/* The best ISA this CPU supports (checked at run time). */
enum mfs_cpu_isa mfs_cpu_isa_best(void);

/* Force the decode kernels of an open CPU backend to isa (clamped to what
 * the CPU supports); returns the ISA now in use.  For tests. */
enum mfs_cpu_isa mfs_cpu_isa_set(struct mfs_be *be, enum mfs_cpu_isa isa);

/* y[r] = dot(W[r, :], x) for rows [r0, r1) of w with the given ISA, one
 * thread, no BLAS: the decode matrix-vector kernel.  For tests/bench. */
void mfs_cpu_matvec(enum mfs_cpu_isa isa, const struct mfs_tensor *w, const float *x,
                    int64_t r0, int64_t r1, float *y);

/* dst[r, c] = src[c, r] for r < nr, c < nc, F32, with the given ISA: the
 * loader's Conv1D transpose.  Strides in elements: src row c starts at
 * src + c*src_stride, dst row r at dst + r*dst_stride.  Pure data
 * movement, so every ISA gives the same bits.  Any thread. */
void mfs_cpu_transpose_f32(enum mfs_cpu_isa isa, const float *src, int64_t src_stride,
                           float *dst, int64_t dst_stride, int64_t nr, int64_t nc);

/* Process-wide CPU setup, for main() before any thread starts (style.md
 * rule 4): OpenBLAS single-threaded, since our pool owns the threads.
 * Debian's OpenBLAS 0.3.21 may take a recent CPU for 'Prescott' (SSE3
 * kernels, ~4x slower sgemm); that only slows prefill, and we leave the
 * choice of OPENBLAS_CORETYPE to the user.  argv is unused. */
void mfs_cpu_process_init(char **argv);

/* Measured single-call sgemm throughput of the linked BLAS, GFLOP/s, for
 * an [m,k]x[k,n] product (bench). */
double mfs_cpu_sgemm_gflops(int m, int n, int k);

#endif
