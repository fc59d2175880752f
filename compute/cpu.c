/*
 * compute/cpu.c - the CPU backend: host memory, OpenBLAS sgemm for
 * prefill (n_tok > 1), our own SIMD matrix-vector kernels for decode
 * (compute/cpu_kernels.c), scalar loops for the cheap elementwise ops.
 *
 * Threads: one persistent pool per backend handle, n_threads - 1 workers
 * plus the calling thread.  We chose a pthread pool over OpenMP because
 * it composes with OpenBLAS (whose own threads we set to 1, so every
 * sgemm runs single-threaded inside one of our threads on a block of the
 * output rows: never n_threads^2 threads), and because concurrent
 * requests on one model can share the pool: a run_lock lets one job at a
 * time use the workers, and small ops run on the caller's thread without
 * taking it.
 *
 * A job is cut into chunks (row blocks, attention heads) whose bounds do
 * not depend on the thread count, so results are bit-identical for any
 * number of threads.  Threads claim chunks from an atomic ticket; the
 * caller claims too, so when the machine is oversubscribed and a worker
 * is not scheduled, the caller simply does the work instead of waiting
 * for a time slice at every op.  The ticket's high 32 bits are the job
 * generation: a worker runs a chunk only if its compare-and-swap on the
 * ticket succeeds, which proves the job it read is still the current one.
 * Idle workers spin briefly on the published generation, then sleep on a
 * condition variable.
 */
#include "compute/backend.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_PAUSE() _mm_pause()
#else
#define CPU_PAUSE() do { } while (0)
#endif

#define POOL_SPIN 2000                      /* pauses (~100 us) before sleeping or yielding */
#define INLINE_WORK (1 << 15)               /* multiply-adds below which ops stay inline */
#define ROW_ALIGN 16                        /* rows per chunk are a multiple of this */
#define LINEAR_CHUNKS 16                    /* chunks per matrix-vector product */
#define GEMM_ROWS 64                        /* rows per chunk (and per F32 conversion) in prefill */
#define SMALL_BATCH 4                       /* n_tok up to this uses the matvec kernel */

struct cpu_scratch {
    void *p;                                /* per-thread buffer, grown on demand */
    size_t cap;                             /* bytes */
};

/* Run chunk idx of n_chunks of the job arg, using scratch s. */
typedef void (*cpu_job_fn)(void *arg, int idx, int n_chunks, struct cpu_scratch *s);

struct cpu_pool {
    pthread_mutex_t run_lock;               /* one job at a time on the workers */
    pthread_mutex_t lock;                   /* guards sleeping on start_cv */
    pthread_cond_t start_cv;                /* gen_pub moved or stop set */
    unsigned gen;                           /* last job generation (under run_lock) */
    atomic_uint gen_pub;                    /* generation workers should look at */
    atomic_ullong ticket;                   /* gen << 32 | next unclaimed chunk */
    atomic_uint done;                       /* chunks finished in the current job */
    _Atomic(cpu_job_fn) fn;                 /* the current job */
    void *_Atomic arg;
    atomic_uint n_chunks;
    atomic_int stop;                        /* 1: workers exit */
    int n_workers;                          /* threads started */
    pthread_t *threads;                     /* [n_workers] */
    struct cpu_scratch *scratch;            /* [n_workers + 1]; 0 is the caller's */
};

struct cpu_worker_arg {
    struct cpu_pool *pool;
    int ith;                                /* 1.. */
};

struct cpu_be {
    struct cpu_pool pool;
    struct cpu_worker_arg *wargs;           /* [n_workers] */
    enum mfs_cpu_isa isa;                   /* decode kernels in use */
};

static int scratch_reserve(struct cpu_scratch *s, size_t nbytes)
{
    void *p;

    if (s->cap >= nbytes)
        return 0;
    free(s->p);
    s->p = NULL;
    s->cap = 0;
    if (posix_memalign(&p, 64, nbytes))
        return -ENOMEM;
    s->p = p;
    s->cap = nbytes;
    return 0;
}

/* Claim and run chunks of job generation g until none is left. */
static void pool_work(struct cpu_pool *pool, unsigned g, struct cpu_scratch *s)
{
    for (;;) {
        unsigned long long t = atomic_load(&pool->ticket);
        cpu_job_fn fn;
        void *arg;
        unsigned n;
        unsigned idx = (unsigned)(t & 0xffffffffu);

        if ((unsigned)(t >> 32) != g)
            return;
        fn = atomic_load(&pool->fn);
        arg = atomic_load(&pool->arg);
        n = atomic_load(&pool->n_chunks);
        if (idx >= n)
            return;
        if (!atomic_compare_exchange_weak(&pool->ticket, &t, t + 1))
            continue;
        fn(arg, (int)idx, (int)n, s);
        atomic_fetch_add(&pool->done, 1);
    }
}

static void *pool_worker(void *v)
{
    struct cpu_worker_arg *wa = v;
    struct cpu_pool *pool = wa->pool;
    unsigned seen = 0;

    for (;;) {
        unsigned g = atomic_load(&pool->gen_pub);
        int k;

        for (k = 0; g == seen && k < POOL_SPIN && !atomic_load(&pool->stop); k++) {
            CPU_PAUSE();
            g = atomic_load(&pool->gen_pub);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->lock);
            while (atomic_load(&pool->gen_pub) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->start_cv, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
            g = atomic_load(&pool->gen_pub);
        }
        if (atomic_load(&pool->stop))
            break;
        seen = g;
        pool_work(pool, g, &pool->scratch[wa->ith]);
    }
    return NULL;
}

/* Run chunks 0..n_chunks-1 of fn on the pool and the caller; return when
 * all are done.  work is the op's size in multiply-adds: small ops run
 * inline on the caller. */
static void pool_run(struct cpu_be *cb, cpu_job_fn fn, void *arg, int n_chunks, double work)
{
    struct cpu_pool *pool = &cb->pool;
    unsigned g;
    int k;

    if (pool->n_workers == 0 || work < INLINE_WORK || n_chunks == 1) {
        struct cpu_scratch s = { NULL, 0 };

        for (k = 0; k < n_chunks; k++)
            fn(arg, k, n_chunks, &s);
        free(s.p);
        return;
    }
    pthread_mutex_lock(&pool->run_lock);
    g = ++pool->gen;
    atomic_store(&pool->fn, fn);
    atomic_store(&pool->arg, arg);
    atomic_store(&pool->n_chunks, (unsigned)n_chunks);
    atomic_store(&pool->done, 0);
    atomic_store(&pool->ticket, (unsigned long long)g << 32);
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->gen_pub, g);
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->lock);
    pool_work(pool, g, &pool->scratch[0]);
    /* Only chunks a worker already claimed can be left: wait for them,
     * yielding the CPU to that worker if it was preempted. */
    for (k = 0; atomic_load(&pool->done) < (unsigned)n_chunks; k++) {
        if (k < POOL_SPIN)
            CPU_PAUSE();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&pool->run_lock);
}

/* Rows [*r0, *r1) of chunk idx out of n, in multiples of ROW_ALIGN. */
static void split_rows(int64_t rows, int idx, int n, int64_t *r0, int64_t *r1)
{
    int64_t chunk = (rows + n - 1) / n;

    chunk = (chunk + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    *r0 = chunk * idx;
    *r1 = *r0 + chunk;
    if (*r0 > rows)
        *r0 = rows;
    if (*r1 > rows)
        *r1 = rows;
}

static void cpu_close(struct mfs_be *be)
{
    struct cpu_be *cb = be->priv;
    struct cpu_pool *pool;
    int i;

    if (!cb)
        return;
    pool = &cb->pool;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->lock);
    for (i = 0; i < pool->n_workers; i++)
        pthread_join(pool->threads[i], NULL);
    for (i = 0; i <= pool->n_workers; i++)
        free(pool->scratch[i].p);
    free(pool->scratch);
    free(pool->threads);
    free(cb->wargs);
    pthread_cond_destroy(&pool->start_cv);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->run_lock);
    free(cb);
    be->priv = NULL;
}

static int cpu_open(struct mfs_be *be, int device, int n_threads, struct mfs_err *err)
{
    struct cpu_be *cb;
    struct cpu_pool *pool;
    int i;

    if (device != 0)
        return mfs_err_set(err, -ENODEV, "no cpu device %d", device);
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    /* Each sgemm runs single-threaded inside one of our workers.  Only when
     * needed: after the mount's fork a set call restarts OpenBLAS's own
     * threads, which then spin for ~0.1 CPU-s, slowing the first load. */
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
    cb = calloc(1, sizeof(*cb));
    if (!cb)
        return mfs_err_set(err, -ENOMEM, "cannot open cpu backend: out of memory");
    pool = &cb->pool;
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->start_cv, NULL);
    cb->isa = mfs_cpu_isa_best();
    be->priv = cb;
    pool->threads = calloc((size_t)n_threads, sizeof(*pool->threads));
    pool->scratch = calloc((size_t)n_threads + 1, sizeof(*pool->scratch));
    cb->wargs = calloc((size_t)n_threads, sizeof(*cb->wargs));
    if (!pool->threads || !pool->scratch || !cb->wargs)
        goto out_close;
    for (i = 1; i < n_threads; i++) {
        cb->wargs[i - 1].pool = pool;
        cb->wargs[i - 1].ith = i;
        if (pthread_create(&pool->threads[i - 1], NULL, pool_worker, &cb->wargs[i - 1]))
            goto out_close;
        pool->n_workers++;
    }
    be->n_threads = n_threads;
    return 0;

out_close:
    cpu_close(be);
    return mfs_err_set(err, -ENOMEM, "cannot start %d cpu threads", n_threads);
}

/* Every buffer starts CPU_HDR bytes after a header saying how to free it.
 * Big buffers (weights, KV cache) are their own anonymous mapping: a
 * fresh mapping is already zero, so they need no memset, which at load
 * was a whole extra pass over the weights right before the read wrote
 * them (and took every page fault itself, on the loader's one thread).
 * No transparent huge pages: under this project's hypervisor a fresh
 * 2 MiB page costs about 4x the faults of its 4 KiB pages (the host backs
 * it on first touch), and decode, bound by DRAM bandwidth on both
 * threads, measured no faster with them. */
#define CPU_HDR 64                          /* header bytes before a buffer (keeps alignment) */
#ifdef __SANITIZE_ADDRESS__
#define CPU_MAP_MIN SIZE_MAX                /* ASan builds: all from malloc, with redzones */
#else
#define CPU_MAP_MIN ((size_t)1 << 20)       /* buffers from this size on get their own mapping */
#endif

struct cpu_hdr {
    void *base;                             /* what to free or munmap */
    size_t map_len;                         /* bytes mapped at base; 0: base is from malloc */
};

static int cpu_alloc(struct mfs_be *be, size_t nbytes, void **dptr)
{
    struct cpu_hdr *h;
    void *p;

    *dptr = NULL;
    if (nbytes > SIZE_MAX - CPU_HDR - 64)
        return -ENOMEM;
    if (nbytes >= CPU_MAP_MIN) {
        p = mmap(NULL, CPU_HDR + nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
        if (p == MAP_FAILED)
            return -ENOMEM;
        h = p;
        h->map_len = CPU_HDR + nbytes;
    } else {
        if (posix_memalign(&p, 64, CPU_HDR + (nbytes ? nbytes : 64)))
            return -ENOMEM;
        memset(p, 0, CPU_HDR + nbytes);
        h = p;
        h->map_len = 0;
    }
    h->base = p;
    *dptr = (char *)p + CPU_HDR;
    return 0;
}

static void cpu_free(struct mfs_be *be, void *dptr)
{
    struct cpu_hdr *h;

    if (!dptr)
        return;
    h = (struct cpu_hdr *)((char *)dptr - CPU_HDR);
    if (h->map_len)
        munmap(h->base, h->map_len);
    else
        free(h->base);
}

static int cpu_memcpy(struct mfs_be *be, void *dst, const void *src, size_t nbytes)
{
    if (nbytes)
        memmove(dst, src, nbytes);
    return 0;
}

#define LINEAR_PARTS 4                      /* matrices per linear_multi call */

/* Up to LINEAR_PARTS products of the same x, as one pool job. */
struct linear_job {
    const float *x;                         /* [n_tok, in] */
    int64_t n_tok;
    int n_parts;
    const struct mfs_tensor *w[LINEAR_PARTS]; /* [out_p, in] */
    const float *bias[LINEAR_PARTS];        /* [out_p] or NULL */
    float *y[LINEAR_PARTS];                 /* [n_tok, out_p] */
    int chunks[LINEAR_PARTS];               /* row blocks of part p */
    enum mfs_cpu_isa isa;
    atomic_int rc;                          /* first failure */
};

static void to_f32_rows(const struct mfs_tensor *w, int64_t r0, int64_t nr, float *dst)
{
    const uint16_t *src = (const uint16_t *)w->data + r0 * w->cols;
    int64_t i;
    int64_t n = nr * w->cols;

    if (w->dtype == MFS_BE_BF16) {
        for (i = 0; i < n; i++)
            dst[i] = mfs_be_bf16_to_f32(src[i]);
    } else {
        for (i = 0; i < n; i++)
            dst[i] = mfs_be_f16_to_f32(src[i]);
    }
}

static void linear_run(void *arg, int idx, int n_chunks, struct cpu_scratch *s)
{
    struct linear_job *j = arg;
    const struct mfs_tensor *w;
    const float *bias;
    float *y;
    int64_t in;
    int64_t out;
    int64_t r0;
    int64_t r1;
    int64_t t;
    int64_t r;
    int p = 0;

    while (p < j->n_parts - 1 && idx >= j->chunks[p])
        idx -= j->chunks[p++];
    w = j->w[p];
    bias = j->bias[p];
    y = j->y[p];
    in = w->cols;
    out = w->rows;
    split_rows(out, idx, j->chunks[p], &r0, &r1);
    if (r0 >= r1)
        return;
    if (j->n_tok <= SMALL_BATCH) {
        for (t = 0; t < j->n_tok; t++)
            mfs_cpu_matvec(j->isa, w, j->x + t * in, r0, r1, y + t * out);
    } else if (w->dtype == MFS_BE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n_tok, (int)(r1 - r0),
                    (int)in, 1.0f, j->x, (int)in, (const float *)w->data + r0 * in, (int)in,
                    0.0f, y + r0, (int)out);
    } else {
        if (scratch_reserve(s, (size_t)GEMM_ROWS * (size_t)in * sizeof(float)) < 0) {
            atomic_store(&j->rc, -ENOMEM);
            return;
        }
        for (r = r0; r < r1; r += GEMM_ROWS) {
            int64_t nr = r1 - r < GEMM_ROWS ? r1 - r : GEMM_ROWS;

            to_f32_rows(w, r, nr, s->p);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n_tok, (int)nr,
                        (int)in, 1.0f, j->x, (int)in, s->p, (int)in, 0.0f, y + r, (int)out);
        }
    }
    if (bias) {
        for (t = 0; t < j->n_tok; t++) {
            float *yt = y + t * out;

            for (r = r0; r < r1; r++)
                yt[r] += bias[r];
        }
    }
}

static int cpu_linear_multi(struct mfs_be *be, const float *x, int64_t n_tok, int n,
                            const struct mfs_tensor *const *w, const float *const *bias,
                            float *const *y)
{
    struct cpu_be *cb = be->priv;
    struct linear_job j;
    double work = 0;
    int total = 0;
    int p;

    if (n < 1 || n > LINEAR_PARTS || n_tok <= 0)
        return -EINVAL;
    memset(&j, 0, sizeof(j));
    j.x = x;
    j.n_tok = n_tok;
    j.n_parts = n;
    j.isa = cb->isa;
    for (p = 0; p < n; p++) {
        int64_t rows = w[p]->rows;
        int64_t max_chunks = (rows + ROW_ALIGN - 1) / ROW_ALIGN;
        int64_t c;

        if (rows <= 0 || w[p]->cols != w[0]->cols || w[p]->cols <= 0 ||
            w[p]->cols > INT32_MAX || rows > INT32_MAX)
            return -EINVAL;
        /* Decode: a fixed number of row blocks; prefill: blocks of GEMM_ROWS.
         * Either way the same for any thread count. */
        c = n_tok <= SMALL_BATCH ? LINEAR_CHUNKS : (rows + GEMM_ROWS - 1) / GEMM_ROWS;
        j.chunks[p] = (int)(c < max_chunks ? c : max_chunks);
        j.w[p] = w[p];
        j.bias[p] = bias ? bias[p] : NULL;
        j.y[p] = y[p];
        total += j.chunks[p];
        work += (double)n_tok * (double)rows * (double)w[p]->cols;
    }
    pool_run(cb, linear_run, &j, total, work);
    return atomic_load(&j.rc);
}

static int cpu_linear(struct mfs_be *be, const float *x, int64_t n_tok,
                      const struct mfs_tensor *w, const float *bias, float *y)
{
    return cpu_linear_multi(be, x, n_tok, 1, &w, &bias, &y);
}

static int cpu_embedding(struct mfs_be *be, const struct mfs_tensor *table, const int32_t *ids,
                         int64_t n, float *y)
{
    int64_t d = table->cols;
    int64_t i;
    int64_t k;

    for (i = 0; i < n; i++) {
        float *dst = y + i * d;

        if (ids[i] < 0 || ids[i] >= table->rows)
            return -EINVAL;
        if (table->dtype == MFS_BE_F32) {
            memcpy(dst, (const float *)table->data + (int64_t)ids[i] * d, (size_t)d * 4);
        } else {
            const uint16_t *src = (const uint16_t *)table->data + (int64_t)ids[i] * d;

            for (k = 0; k < d; k++)
                dst[k] = table->dtype == MFS_BE_BF16 ? mfs_be_bf16_to_f32(src[k])
                                                     : mfs_be_f16_to_f32(src[k]);
        }
    }
    return 0;
}

static int cpu_rmsnorm(struct mfs_be *be, const float *x, const float *w, int64_t n, int64_t d,
                       float eps, float *y)
{
    int64_t i;
    int64_t k;

    for (i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *yi = y + i * d;
        double ss = 0;
        float r;

        for (k = 0; k < d; k++)
            ss += (double)xi[k] * xi[k];
        /* transformers: x * rsqrt(mean(x^2) + eps), then weight * that, in F32 */
        r = 1.0f / sqrtf((float)(ss / (double)d) + eps);
        for (k = 0; k < d; k++)
            yi[k] = w[k] * (xi[k] * r);
    }
    return 0;
}

static int cpu_layernorm(struct mfs_be *be, const float *x, const float *w, const float *b,
                         int64_t n, int64_t d, float eps, float *y)
{
    int64_t i;
    int64_t k;

    for (i = 0; i < n; i++) {
        const float *xi = x + i * d;
        float *yi = y + i * d;
        double mean = 0;
        double var = 0;
        float mf;
        float r;

        for (k = 0; k < d; k++)
            mean += xi[k];
        mean /= (double)d;
        for (k = 0; k < d; k++)
            var += ((double)xi[k] - mean) * ((double)xi[k] - mean);
        var /= (double)d;
        mf = (float)mean;
        r = (float)(1.0 / sqrt(var + (double)eps));
        for (k = 0; k < d; k++)
            yi[k] = (xi[k] - mf) * r * w[k] + (b ? b[k] : 0.0f);
    }
    return 0;
}

static int cpu_rope(struct mfs_be *be, float *x, int64_t n_tok, int n_heads, int head_dim,
                    int64_t pos0, const float *inv_freq)
{
    int half = head_dim / 2;
    int64_t t;
    int h;
    int i;

    for (t = 0; t < n_tok; t++) {
        float pos = (float)(pos0 + t);

        for (i = 0; i < half; i++) {
            float ang = pos * inv_freq[i];
            float c = cosf(ang);
            float s = sinf(ang);

            for (h = 0; h < n_heads; h++) {
                float *v = x + (t * n_heads + h) * head_dim;
                float a = v[i];
                float b = v[i + half];

                /* rotate_half: [a, b] -> [a c - b s, b c + a s] */
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
    return 0;
}

struct attn_job {
    const float *q;
    const float *kc;
    const float *vc;
    const struct mfs_be_attn *a;
    float *out;
    enum mfs_cpu_isa isa;
    atomic_int rc;
};

static void attn_run(void *arg, int idx, int n_chunks, struct cpu_scratch *s)
{
    struct attn_job *j = arg;
    const struct mfs_be_attn *a = j->a;
    int hd = a->head_dim;
    int group = a->n_heads / a->n_kv_heads;
    int64_t total = (int64_t)a->pos0 + a->n_tok;
    int64_t qstride = (int64_t)a->n_heads * hd;
    int64_t kstride = (int64_t)a->n_kv_heads * hd;
    float *sc;
    int h;

    if (scratch_reserve(s, (size_t)total * sizeof(float)) < 0) {
        atomic_store(&j->rc, -ENOMEM);
        return;
    }
    sc = s->p;
    for (h = idx; h < a->n_heads; h += n_chunks) {
        int kvh = h / group;
        int i;

        for (i = 0; i < a->n_tok; i++) {
            const float *qi = j->q + i * qstride + (int64_t)h * hd;
            float *oi = j->out + i * qstride + (int64_t)h * hd;
            int64_t p = (int64_t)a->pos0 + i;
            int64_t hi = a->causal ? p : total - 1;
            int64_t lo = 0;
            float mx = -INFINITY;
            double sum = 0;
            int64_t jk;
            int d;

            if (a->window > 0 && p - a->window + 1 > 0)
                lo = p - a->window + 1;
            for (jk = lo; jk <= hi; jk++) {
                struct mfs_tensor krow = { MFS_BE_F32, 1, hd, (void *)(j->kc + jk * kstride +
                                                                       (int64_t)kvh * hd) };
                float v;

                mfs_cpu_matvec(j->isa, &krow, qi, 0, 1, &v);
                v *= a->scale;
                if (a->alibi)
                    v += a->alibi[h] * (float)jk;
                sc[jk] = v;
                if (v > mx)
                    mx = v;
            }
            for (jk = lo; jk <= hi; jk++) {
                sc[jk] = expf(sc[jk] - mx);
                sum += sc[jk];
            }
            for (d = 0; d < hd; d++)
                oi[d] = 0;
            for (jk = lo; jk <= hi; jk++) {
                const float *vr = j->vc + jk * kstride + (int64_t)kvh * hd;
                float pr = (float)(sc[jk] / sum);

                for (d = 0; d < hd; d++)
                    oi[d] += pr * vr[d];
            }
        }
    }
}

static int cpu_attention(struct mfs_be *be, const float *q, const float *kc, const float *vc,
                         const struct mfs_be_attn *a, float *out)
{
    struct cpu_be *cb = be->priv;
    struct attn_job j = { q, kc, vc, a, out, cb->isa, 0 };
    double work;

    if (a->n_tok <= 0 || a->n_heads <= 0 || a->n_kv_heads <= 0 ||
        a->n_heads % a->n_kv_heads || a->head_dim <= 0 || a->pos0 < 0)
        return -EINVAL;
    work = (double)a->n_tok * (double)(a->pos0 + a->n_tok) * a->n_heads * a->head_dim * 2;
    pool_run(cb, attn_run, &j, a->n_heads, work);
    return atomic_load(&j.rc);
}

static int cpu_softmax(struct mfs_be *be, float *x, int64_t rows, int64_t cols)
{
    int64_t i;
    int64_t k;

    for (i = 0; i < rows; i++) {
        float *r = x + i * cols;
        float mx = -INFINITY;
        double sum = 0;

        for (k = 0; k < cols; k++)
            if (r[k] > mx)
                mx = r[k];
        for (k = 0; k < cols; k++) {
            r[k] = expf(r[k] - mx);
            sum += r[k];
        }
        for (k = 0; k < cols; k++)
            r[k] = (float)(r[k] / sum);
    }
    return 0;
}

static int cpu_act(struct mfs_be *be, enum mfs_be_act act, float *x, int64_t n)
{
    const float k0 = 0.7978845608028654f;  /* sqrt(2/pi) */
    int64_t i;

    switch (act) {
    case MFS_BE_ACT_SILU:
        for (i = 0; i < n; i++)
            x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case MFS_BE_ACT_GELU:
        for (i = 0; i < n; i++)
            x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
        break;
    case MFS_BE_ACT_GELU_TANH:
        for (i = 0; i < n; i++) {
            float v = x[i];

            x[i] = 0.5f * v * (1.0f + tanhf(k0 * (v + 0.044715f * v * v * v)));
        }
        break;
    case MFS_BE_ACT_TANH:
        for (i = 0; i < n; i++)
            x[i] = tanhf(x[i]);
        break;
    case MFS_BE_ACT_RELU:
        for (i = 0; i < n; i++)
            x[i] = x[i] > 0 ? x[i] : 0;
        break;
    default:
        return -EINVAL;
    }
    return 0;
}

static int cpu_add(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n)
{
    int64_t i;

    for (i = 0; i < n; i++)
        y[i] = a[i] + b[i];
    return 0;
}

static int cpu_mul(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n)
{
    int64_t i;

    for (i = 0; i < n; i++)
        y[i] = a[i] * b[i];
    return 0;
}

enum mfs_cpu_isa mfs_cpu_isa_set(struct mfs_be *be, enum mfs_cpu_isa isa)
{
    struct cpu_be *cb = be->priv;
    enum mfs_cpu_isa best = mfs_cpu_isa_best();

    cb->isa = isa > best ? best : isa;
    return cb->isa;
}

void mfs_cpu_process_init(char **argv)
{
    /* Our pool parallelises across ops; OpenBLAS threads on top would
     * oversubscribe the cores.  A misdetected OpenBLAS core (Prescott on an
     * AVX-512 machine) only slows prefill: decode never calls OpenBLAS, and
     * users may set OPENBLAS_CORETYPE themselves. */
    (void)argv;
    openblas_set_num_threads(1);
}

double mfs_cpu_sgemm_gflops(int m, int n, int k)
{
    float *a = calloc((size_t)m * (size_t)k, sizeof(float));
    float *b = calloc((size_t)n * (size_t)k, sizeof(float));
    float *c = calloc((size_t)m * (size_t)n, sizeof(float));
    struct timespec t0;
    struct timespec t1;
    double secs;
    double gf = 0;
    int reps = 0;

    if (!a || !b || !c)
        goto out_free;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f,
                    c, n);
        reps++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    } while (secs < 0.3);
    gf = 2.0 * m * n * (double)k * reps / secs * 1e-9;

out_free:
    free(a);
    free(b);
    free(c);
    return gf;
}

const struct mfs_be_ops mfs_cpu_ops = {
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .linear = cpu_linear,
    .linear_multi = cpu_linear_multi,
    .embedding = cpu_embedding,
    .rmsnorm = cpu_rmsnorm,
    .layernorm = cpu_layernorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .softmax = cpu_softmax,
    .act = cpu_act,
    .add = cpu_add,
    .mul = cpu_mul,
    .sync = NULL,
};
