/*
 * model/model.c - loading (streamed, one tensor at a time, converting the
 * dtype on the way), request state, generation and the info numbers; the
 * architectures themselves are in llama.c, gpt2.c and bert.c.
 */
#include "model/model_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/clock.h"

#define STAGE_BYTES (1u << 20)              /* converted bytes uploaded per step */
#define MAX_CONFIG (16u << 20)              /* config.json we accept */

/* ---- reading through io ---- */

static int read_full(const struct mfs_ckpt_io *io, const char *path, uint64_t off, size_t len,
                     void *buf, struct mfs_err *err)
{
    size_t done = 0;

    while (done < len) {
        ssize_t got = io->read(io->ctx, path, off + done, len - done, (char *)buf + done, err);

        if (got < 0)
            return (int)got;
        if (got == 0)
            return mfs_err_set(err, -EIO, "cannot read '%s': file ends at %llu", path,
                               (unsigned long long)(off + done));
        done += (size_t)got;
    }
    return 0;
}

static const struct mfs_ckpt_file *find_file(const struct mfs_ckpt_file *files, size_t n,
                                             const char *path)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(files[i].path, path))
            return &files[i];
    return NULL;
}

/* Read a whole small repo file; OUT: *text (malloc'ed, NUL-terminated). */
static int read_small(const struct mfs_ckpt_io *io, const struct mfs_ckpt_file *f, char **text,
                      struct mfs_err *err)
{
    char *buf;
    int rc;

    *text = NULL;
    if (f->size > MAX_CONFIG)
        return mfs_err_set(err, -EINVAL, "'%s' is too large (%llu bytes)", f->path,
                           (unsigned long long)f->size);
    buf = malloc((size_t)f->size + 1);
    if (!buf)
        return mfs_err_set(err, -ENOMEM, "cannot read '%s': out of memory", f->path);
    rc = read_full(io, f->path, 0, (size_t)f->size, buf, err);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[f->size] = '\0';
    *text = buf;
    return 0;
}

/* ---- the loader ---- */

static int track(struct mfs_model *m, void *p, struct mfs_err *err)
{
    if (m->n_allocs == m->cap_allocs) {
        size_t cap = m->cap_allocs ? m->cap_allocs * 2 : 64;
        void **a = realloc(m->allocs, cap * sizeof(*a));

        if (!a)
            return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
        m->allocs = a;
        m->cap_allocs = cap;
    }
    m->allocs[m->n_allocs++] = p;
    return 0;
}

/* Make *p hold at least need bytes; its old contents are dropped (the
 * loader's buffers are scratch).  Big buffers ask for transparent huge
 * pages: the Conv1D transpose reads them with a stride of a row, and with
 * 4 KiB pages nearly every element would miss the TLB. */
static int grow(void **p, size_t *cap, size_t need)
{
    const size_t huge = (size_t)2 << 20;
    void *q = NULL;

    if (*cap >= need)
        return 0;
    free(*p);
    *p = NULL;
    *cap = 0;
    if (need >= huge) {
        need = (need + huge - 1) / huge * huge;
        if (posix_memalign(&q, huge, need) != 0)
            return -ENOMEM;
        (void)madvise(q, need, MADV_HUGEPAGE);   /* advice only: fine if refused */
    } else {
        q = malloc(need);
        if (!q)
            return -ENOMEM;
    }
    *p = q;
    *cap = need;
    return 0;
}

/* ---- loading in parallel pieces ----
 *
 * A load is bound by copying bytes out of the cache (and, cold, by the
 * disk) and by the Conv1D transposes.  Each big tensor is cut into
 * pieces of about LOAD_PIECE checkpoint bytes, one io call each, and the
 * loader's thread plus helper threads claim pieces until none is left:
 * several reads in flight keep the disk busy, and on a warm cache the
 * copies and transposes use every core.  A transposed piece is a slab of
 * checkpoint rows, which is a block of output columns, so the thread that
 * read it transposes it at once while it is still in cache.  Meanwhile
 * model/readahead.c reads the next tensors, so a cold disk never idles
 * while every thread computes. */
#define LOAD_PIECE (4u << 20)               /* checkpoint bytes per piece (one io call) */
#define LOAD_MAX_HELPERS 7                  /* helper threads at most */

/* Run piece idx of a job; 0 or a negative errno with the reason in *err. */
typedef int (*load_piece_fn)(void *arg, size_t idx, struct mfs_err *err);

struct mfs_model_load_pool {
    pthread_mutex_t mu;                     /* guards every field below */
    pthread_cond_t job_cv;                  /* a job was posted, or stop */
    pthread_cond_t idle_cv;                 /* busy dropped to 0 */
    unsigned gen;                           /* job generation */
    bool stop;                              /* helpers exit */
    load_piece_fn fn;                       /* the current job */
    void *arg;
    size_t n;                               /* pieces in the job */
    size_t next;                            /* first unclaimed piece */
    int busy;                               /* helpers not yet done with the job */
    int rc;                                 /* first failure of the job, or 0 */
    struct mfs_err err;                     /* its reason */
    int n_helpers;                          /* threads started */
    pthread_t th[LOAD_MAX_HELPERS];
};

/* Claim and run pieces of the current job until none is left or one
 * failed.  Called with pool->mu held; returns with it held. */
static void pool_claim(struct mfs_model_load_pool *pool)
{
    struct mfs_err err = MFS_ERR_INIT;

    while (pool->next < pool->n && pool->rc == 0) {
        size_t idx = pool->next++;
        load_piece_fn fn = pool->fn;
        void *arg = pool->arg;
        int rc;

        pthread_mutex_unlock(&pool->mu);
        rc = fn(arg, idx, &err);
        pthread_mutex_lock(&pool->mu);
        if (rc < 0 && pool->rc == 0) {
            pool->rc = rc;
            pool->err = err;
        }
    }
}

static void *pool_helper(void *arg)
{
    struct mfs_model_load_pool *pool = arg;
    unsigned seen = 0;

    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (pool->gen == seen && !pool->stop)
            pthread_cond_wait(&pool->job_cv, &pool->mu);
        if (pool->stop)
            break;
        seen = pool->gen;
        pool_claim(pool);
        if (--pool->busy == 0)
            pthread_cond_signal(&pool->idle_cv);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* Start up to n_helpers helper threads (fewer if the system refuses).
 * OUT: *poolp; NULL when out of memory (the load then runs on one thread). */
static void pool_start(int n_helpers, struct mfs_model_load_pool **poolp)
{
    struct mfs_model_load_pool *pool;

    *poolp = NULL;
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->job_cv, NULL);
    pthread_cond_init(&pool->idle_cv, NULL);
    if (n_helpers > LOAD_MAX_HELPERS)
        n_helpers = LOAD_MAX_HELPERS;
    while (pool->n_helpers < n_helpers &&
           pthread_create(&pool->th[pool->n_helpers], NULL, pool_helper, pool) == 0)
        pool->n_helpers++;
    *poolp = pool;
}

static void pool_stop(struct mfs_model_load_pool **poolp)
{
    struct mfs_model_load_pool *pool = *poolp;
    int i;

    if (!pool)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stop = true;
    pthread_cond_broadcast(&pool->job_cv);
    pthread_mutex_unlock(&pool->mu);
    for (i = 0; i < pool->n_helpers; i++)
        pthread_join(pool->th[i], NULL);
    pthread_cond_destroy(&pool->idle_cv);
    pthread_cond_destroy(&pool->job_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
    *poolp = NULL;
}

/* Run pieces 0..n-1 of fn on the loader's thread and the helpers; return
 * when all are done: 0, or the first failure with its reason in *err. */
static int pool_run(struct mfs_model_loader *ld, load_piece_fn fn, void *arg, size_t n,
                    struct mfs_err *err)
{
    struct mfs_model_load_pool *pool = ld->pool;
    size_t i;
    int rc;

    if (!pool || pool->n_helpers == 0 || n < 2) {
        for (i = 0; i < n; i++) {
            rc = fn(arg, i, err);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->next = 0;
    pool->rc = 0;
    pool->busy = pool->n_helpers;
    pool->gen++;
    pthread_cond_broadcast(&pool->job_cv);
    pool_claim(pool);
    while (pool->busy > 0)
        pthread_cond_wait(&pool->idle_cv, &pool->mu);
    rc = pool->rc;
    if (rc < 0 && err)
        *err = pool->err;
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

/* Map in the whole pages of host memory [p, p+len) with one call
 * instead of a page fault per 4 KiB page, which under a hypervisor cost
 * about a third of a load.  Advice only: older kernels say EINVAL and the
 * pages then fault in as they are written. */
static void prefault(void *p, size_t len)
{
    uintptr_t a = ((uintptr_t)p + 4095) & ~(uintptr_t)4095;
    uintptr_t e = ((uintptr_t)p + len) & ~(uintptr_t)4095;

#ifdef MADV_POPULATE_WRITE
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_POPULATE_WRITE);
#else
    (void)a;
    (void)e;
#endif
}

/* Bytes [off, off+len) of file into dst, as pieces in parallel. */
struct read_job {
    const struct mfs_ckpt_io *io;
    const char *file;
    uint64_t off;                           /* bytes from the start of file */
    size_t len;
    char *dst;                              /* [len] */
    bool host;                              /* dst is host memory we may prefault */
};

static int read_piece(void *arg, size_t idx, struct mfs_err *err)
{
    struct read_job *j = arg;
    size_t o = idx * LOAD_PIECE;
    size_t n = j->len - o < LOAD_PIECE ? j->len - o : LOAD_PIECE;

    if (j->host)
        prefault(j->dst + o, n);
    return read_full(j->io, j->file, j->off + o, n, j->dst + o, err);
}

/* host: dst is fresh host memory (prefault it piece by piece). */
static int read_par(struct mfs_model_loader *ld, const char *file, uint64_t off, size_t len,
                    void *dst, bool host, struct mfs_err *err)
{
    struct read_job j = { ld->io, file, off, len, dst, host };

    return pool_run(ld, read_piece, &j, (len + LOAD_PIECE - 1) / LOAD_PIECE, err);
}

struct prefault_job {
    char *p;
    size_t len;
};

static int prefault_piece(void *arg, size_t idx, struct mfs_err *err)
{
    struct prefault_job *j = arg;
    size_t o = idx * LOAD_PIECE;

    prefault(j->p + o, j->len - o < LOAD_PIECE ? j->len - o : LOAD_PIECE);
    return 0;
}

const struct mfs_ckpt_tensor *mfs_model_loader_find(struct mfs_model_loader *ld,
                                                    const char *name)
{
    char full[256];

    snprintf(full, sizeof(full), "%s%s", ld->prefix ? ld->prefix : "", name);
    return mfs_ckpt_find(ld->ckpt, full);
}

static int src_dtype(enum mfs_st_dtype d, enum mfs_be_dtype *out)
{
    switch (d) {
    case MFS_ST_F32:
        *out = MFS_BE_F32;
        return 0;
    case MFS_ST_F16:
        *out = MFS_BE_F16;
        return 0;
    case MFS_ST_BF16:
        *out = MFS_BE_BF16;
        return 0;
    default:
        return -EINVAL;
    }
}

static float elem_f32(const void *raw, enum mfs_be_dtype d, int64_t i)
{
    if (d == MFS_BE_F32)
        return ((const float *)raw)[i];
    if (d == MFS_BE_BF16)
        return mfs_be_bf16_to_f32(((const uint16_t *)raw)[i]);
    return mfs_be_f16_to_f32(((const uint16_t *)raw)[i]);
}

static void put_elem(void *dst, enum mfs_be_dtype d, int64_t i, float v)
{
    if (d == MFS_BE_F32)
        ((float *)dst)[i] = v;
    else if (d == MFS_BE_BF16)
        ((uint16_t *)dst)[i] = mfs_be_f32_to_bf16(v);
    else
        ((uint16_t *)dst)[i] = mfs_be_f32_to_f16(v);
}

/* Check that t's dtype is loadable and its byte count matches its shape.
 * OUT: *sd, its dtype. */
static int check_tensor(const struct mfs_ckpt_tensor *t, enum mfs_be_dtype *sd,
                        struct mfs_err *err)
{
    uint64_t numel = 1;
    int d;

    if (src_dtype(t->dtype, sd) < 0)
        return mfs_err_set(err, -EINVAL, "tensor '%s' has unsupported dtype %s", t->name,
                           mfs_st_dtype_name(t->dtype));
    for (d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    if (t->ndim < 1 || numel * mfs_be_dtype_size(*sd) != t->nbytes)
        return mfs_err_set(err, -EINVAL, "tensor '%s' holds %llu bytes, not its shape's", t->name,
                           (unsigned long long)t->nbytes);
    return 0;
}

/* Read tensor t's bytes into ld->raw.  Returns its source dtype. */
static int read_raw(struct mfs_model_loader *ld, const struct mfs_ckpt_tensor *t,
                    enum mfs_be_dtype *sd, struct mfs_err *err)
{
    int rc;

    rc = check_tensor(t, sd, err);
    if (rc < 0)
        return rc;
    /* GPT-2's fused c_attn is asked for three times (q, k, v rows): read
     * its bytes once. */
    if (ld->raw_of == t)
        return 0;
    ld->raw_of = NULL;
    if (grow(&ld->raw, &ld->raw_cap, (size_t)t->nbytes) < 0)
        return mfs_err_set(err, -ENOMEM, "cannot load '%s': out of memory", t->name);
    rc = read_par(ld, t->file, t->offset, (size_t)t->nbytes, ld->raw, false, err);
    if (rc == 0)
        ld->raw_of = t;
    return rc;
}

/* Output rows [0, nr) of dst: row r is source row r0+r (or map[r]) of
 * the [rows, cols] matrix held in raw as-is, converted from sd to dd. */
static void convert_rows(const void *raw, enum mfs_be_dtype sd, void *dst, enum mfs_be_dtype dd,
                         int64_t cols, int64_t r0, int64_t nr, const int64_t *map)
{
    size_t esz = mfs_be_dtype_size(sd);
    int64_t r;
    int64_t c;

    for (r = 0; r < nr; r++) {
        int64_t sr = map ? map[r] : r0 + r;

        if (sd == dd) {
            memcpy((char *)dst + (size_t)(r * cols) * esz,
                   (const char *)raw + (size_t)(sr * cols) * esz, (size_t)cols * esz);
            continue;
        }
        for (c = 0; c < cols; c++)
            put_elem(dst, dd, r * cols + c, elem_f32(raw, sd, sr * cols + c));
    }
}

#define TILE_R 64                           /* destination rows per transpose block */
#define TILE_C 16                           /* columns per block: one cache line of F32 */

/* Columns [c0, c1) of dst[nr, cols] from raw, a Conv1D weight stored as
 * [cols, rows]: dst[r][c] = raw[c][r0 + r] (or raw[c][map[r]]).  In
 * TILE_R x TILE_C blocks, so that the strided source lines (a checkpoint
 * row apart, often a 4 KiB multiple, so they alias in L1) are reused
 * while cached: about 1 ns an element against 3-5 unblocked. */
static void transpose_cols(const void *raw, enum mfs_be_dtype sd, void *dst, enum mfs_be_dtype dd,
                           int64_t rows, int64_t cols, int64_t r0, int64_t nr, const int64_t *map,
                           int64_t c0, int64_t c1)
{
    int64_t rt;
    int64_t ct;
    int64_t r;
    int64_t c;

    /* The common case (F32 kept F32) in 16x16 register blocks: 4-5x
     * faster than element by element. */
    if (sd == MFS_BE_F32 && dd == MFS_BE_F32 && !map) {
        mfs_cpu_transpose_f32(mfs_cpu_isa_best(), (const float *)raw + c0 * rows + r0, rows,
                              (float *)dst + c0, cols, nr, c1 - c0);
        return;
    }
    for (rt = 0; rt < nr; rt += TILE_R) {
        int64_t re = rt + TILE_R < nr ? rt + TILE_R : nr;

        for (ct = c0; ct < c1; ct += TILE_C) {
            int64_t ce = ct + TILE_C < c1 ? ct + TILE_C : c1;

            for (r = rt; r < re; r++) {
                int64_t sr = map ? map[r] : r0 + r;

                if (sd == MFS_BE_F32 && dd == MFS_BE_F32) {
                    const float *sp = (const float *)raw + sr;
                    float *dp = (float *)dst + r * cols;

                    for (c = ct; c < ce; c++)
                        dp[c] = sp[c * rows];
                } else if (sd == dd) {
                    const uint16_t *sp = (const uint16_t *)raw + sr;
                    uint16_t *dp = (uint16_t *)dst + r * cols;

                    for (c = ct; c < ce; c++)
                        dp[c] = sp[c * rows];
                } else {
                    for (c = ct; c < ce; c++)
                        put_elem(dst, dd, r * cols + c, elem_f32(raw, sd, c * rows + sr));
                }
            }
        }
    }
}

/* Conv1D tensor t ([cols, rows] in the checkpoint, dtype sd) into host
 * dst[nr, cols] (dtype dd), transposed, in pieces of checkpoint rows:
 * each piece is read into its place in raw (unless raw already holds t)
 * and transposed into its columns of dst. */
struct tp_job {
    const struct mfs_ckpt_io *io;
    const struct mfs_ckpt_tensor *t;
    bool read;                              /* read the pieces first (raw does not hold t) */
    void *raw;                              /* [cols, rows] checkpoint bytes */
    enum mfs_be_dtype sd;
    void *dst;                              /* host [nr, cols] */
    enum mfs_be_dtype dd;
    int64_t rows;
    int64_t cols;
    int64_t r0;
    int64_t nr;
    const int64_t *map;
    int64_t per;                            /* checkpoint rows per piece */
};

static int tp_piece(void *arg, size_t idx, struct mfs_err *err)
{
    struct tp_job *j = arg;
    size_t row_bytes = (size_t)j->rows * mfs_be_dtype_size(j->sd);
    int64_t c0 = (int64_t)idx * j->per;
    int64_t c1 = c0 + j->per < j->cols ? c0 + j->per : j->cols;
    int rc;

    if (j->read) {
        rc = read_full(j->io, j->t->file, j->t->offset + (uint64_t)c0 * row_bytes,
                       (size_t)(c1 - c0) * row_bytes, (char *)j->raw + (size_t)c0 * row_bytes,
                       err);
        if (rc < 0)
            return rc;
    }
    transpose_cols(j->raw, j->sd, j->dst, j->dd, j->rows, j->cols, j->r0, j->nr, j->map, c0, c1);
    return 0;
}

static int read_transposed(struct mfs_model_loader *ld, const struct mfs_ckpt_tensor *t,
                           enum mfs_be_dtype sd, void *dst, enum mfs_be_dtype dd, int64_t rows,
                           int64_t cols, int64_t r0, int64_t nr, const int64_t *map,
                           struct mfs_err *err)
{
    struct tp_job j = { .io = ld->io, .t = t };
    struct prefault_job pf = { dst, (size_t)nr * (size_t)cols * mfs_be_dtype_size(dd) };
    size_t row_bytes = (size_t)rows * mfs_be_dtype_size(sd);
    int rc;

    j.read = ld->raw_of != t;
    if (j.read) {
        ld->raw_of = NULL;
        if (grow(&ld->raw, &ld->raw_cap, (size_t)t->nbytes) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot load '%s': out of memory", t->name);
    }
    j.raw = ld->raw;
    j.sd = sd;
    j.dst = dst;
    j.dd = dd;
    j.rows = rows;
    j.cols = cols;
    j.r0 = r0;
    j.nr = nr;
    j.map = map;
    j.per = (int64_t)(LOAD_PIECE / row_bytes);
    if (j.per < 1)
        j.per = 1;
    /* Columns in whole TILE_C blocks, so two pieces never split a block. */
    j.per = (j.per + TILE_C - 1) / TILE_C * TILE_C;
    /* Every piece writes a column block of every output row, so map the
     * output in first, in parallel, rather than fault it in mid-transpose. */
    rc = pool_run(ld, prefault_piece, &pf, (pf.len + LOAD_PIECE - 1) / LOAD_PIECE, err);
    if (rc == 0)
        rc = pool_run(ld, tp_piece, &j, (size_t)((cols + j.per - 1) / j.per), err);
    if (rc == 0)
        ld->raw_of = t;
    return rc;
}

/* Rows r0.. (or map[0..nr) when map is not NULL) of tensor name. */
static int load_matrix(struct mfs_model_loader *ld, const char *name, int64_t rows, int64_t cols,
                       int64_t r0, int64_t nr, const int64_t *map, unsigned flags,
                       struct mfs_tensor *out, struct mfs_err *err)
{
    struct mfs_model *m = ld->m;
    const struct mfs_ckpt_tensor *t = mfs_model_loader_find(ld, name);
    int transpose = !!(flags & MFS_LOAD_TRANSPOSE);
    enum mfs_be_dtype sd;
    enum mfs_be_dtype dd;
    size_t esz;
    size_t per_stage;
    size_t total;
    size_t done;
    void *dst = NULL;
    bool host;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!t) {
        if (flags & MFS_LOAD_OPTIONAL)
            return 0;
        return mfs_err_set(err, -EINVAL, "missing tensor '%s%s'", ld->prefix ? ld->prefix : "",
                           name);
    }
    if (t->ndim != 2 || (int64_t)t->shape[0] != (transpose ? cols : rows) ||
        (int64_t)t->shape[1] != (transpose ? rows : cols))
        return mfs_err_set(err, -EINVAL, "tensor '%s' has shape [%llu, %llu], expected "
                           "[%lld, %lld]", t->name, (unsigned long long)t->shape[0],
                           (unsigned long long)(t->ndim > 1 ? t->shape[1] : 0),
                           (long long)(transpose ? cols : rows),
                           (long long)(transpose ? rows : cols));
    if (nr == 0) {
        r0 = 0;
        nr = rows;
    }
    rc = check_tensor(t, &sd, err);
    if (rc < 0)
        return rc;
    switch (m->dtype) {
    case MFS_MODEL_DTYPE_F32:
        dd = MFS_BE_F32;
        break;
    case MFS_MODEL_DTYPE_BF16:
        dd = MFS_BE_BF16;
        break;
    case MFS_MODEL_DTYPE_F16:
        dd = MFS_BE_F16;
        break;
    default:
        dd = sd;
        break;
    }
    if (flags & MFS_LOAD_F32)
        dd = MFS_BE_F32;
    esz = mfs_be_dtype_size(dd);
    total = (size_t)nr * (size_t)cols;
    rc = mfs_be_alloc(m->be, total * esz, &dst, err);
    if (rc < 0)
        return rc;
    rc = track(m, dst, err);
    if (rc < 0) {
        mfs_be_free(m->be, dst);
        return rc;
    }
    /* CPU weights are host memory: read or convert straight into them
     * rather than through raw/stage and an upload copy (a 500 MB model
     * would otherwise be copied once more). */
    host = !strcmp(m->be->ops->name, "cpu");
    if (!transpose && sd == dd && !map && host) {
        rc = read_par(ld, t->file, t->offset + (uint64_t)r0 * (uint64_t)cols * esz,
                      total * esz, dst, true, err);
        if (rc < 0)
            return rc;
        goto out_done;
    }
    if (transpose && host) {
        rc = read_transposed(ld, t, sd, dst, dd, rows, cols, r0, nr, map, err);
        if (rc < 0)
            return rc;
        goto out_done;
    }
    rc = read_raw(ld, t, &sd, err);
    if (rc < 0)
        return rc;
    if (!transpose && sd == dd && !map) {
        rc = mfs_be_upload(m->be, dst, (const char *)ld->raw + (size_t)r0 * cols * esz,
                           total * esz);
    } else if (host) {
        convert_rows(ld->raw, sd, dst, dd, cols, r0, nr, map);
    } else {
        /* Whole output rows per step: at least one, else STAGE_BYTES' worth. */
        per_stage = STAGE_BYTES / esz / (size_t)cols;
        if (per_stage == 0)
            per_stage = 1;
        if (grow(&ld->stage, &ld->stage_cap, per_stage * (size_t)cols * esz) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot load '%s': out of memory", t->name);
        for (done = 0; done < (size_t)nr && rc == 0; done += per_stage) {
            size_t cnt = (size_t)nr - done < per_stage ? (size_t)nr - done : per_stage;

            if (transpose)
                transpose_cols(ld->raw, sd, ld->stage, dd, rows, cols, r0 + (int64_t)done,
                               (int64_t)cnt, map ? map + done : NULL, 0, cols);
            else
                convert_rows(ld->raw, sd, ld->stage, dd, cols, r0 + (int64_t)done,
                             (int64_t)cnt, map ? map + done : NULL);
            rc = mfs_be_upload(m->be, (char *)dst + done * (size_t)cols * esz, ld->stage,
                               cnt * (size_t)cols * esz);
        }
    }
    if (rc < 0)
        return mfs_err_set(err, rc, "cannot upload '%s'", t->name);
out_done:
    out->dtype = dd;
    out->rows = nr;
    out->cols = cols;
    out->data = dst;
    m->weight_bytes += total * esz;
    m->dtype_seen |= 1u << dd;
    return 1;
}

int mfs_model_load_lm_head(struct mfs_model_loader *ld, struct mfs_model *m,
                           struct mfs_err *err)
{
    const char *saved = ld->prefix;
    int rc;

    if (m->cfg.tie_word_embeddings) {
        m->lm_head = m->tok_emb;
        return 0;
    }
    ld->prefix = "";
    rc = mfs_model_load_matrix(ld, "lm_head.weight", m->cfg.vocab_size, m->cfg.hidden_size, 0,
                               0, 0, &m->lm_head, err);
    ld->prefix = saved;
    return rc;
}

int mfs_model_load_matrix(struct mfs_model_loader *ld, const char *name, int64_t rows,
                          int64_t cols, int64_t r0, int64_t nr, unsigned flags,
                          struct mfs_tensor *t, struct mfs_err *err)
{
    return load_matrix(ld, name, rows, cols, r0, nr, NULL, flags, t, err);
}

int mfs_model_load_matrix_rows(struct mfs_model_loader *ld, const char *name, int64_t rows,
                               int64_t cols, const int64_t *row_idx, int64_t nr, unsigned flags,
                               struct mfs_tensor *t, struct mfs_err *err)
{
    int64_t i;

    for (i = 0; i < nr; i++)
        if (row_idx[i] < 0 || row_idx[i] >= rows)
            return mfs_err_set(err, -EINVAL, "row %lld of '%s' out of range",
                               (long long)row_idx[i], name);
    return load_matrix(ld, name, rows, cols, 0, nr, row_idx, flags, t, err);
}

/* Elements off.. (or map[0..cnt)) of vector name. */
static int load_vector(struct mfs_model_loader *ld, const char *name, int64_t n, int64_t off,
                       int64_t cnt, const int64_t *map, unsigned flags, float **out,
                       struct mfs_err *err)
{
    struct mfs_model *m = ld->m;
    const struct mfs_ckpt_tensor *t = mfs_model_loader_find(ld, name);
    enum mfs_be_dtype sd;
    float *host;
    void *dst = NULL;
    int64_t i;
    int rc;

    *out = NULL;
    if (!t) {
        if (flags & MFS_LOAD_OPTIONAL)
            return 0;
        return mfs_err_set(err, -EINVAL, "missing tensor '%s%s'", ld->prefix ? ld->prefix : "",
                           name);
    }
    if (t->ndim != 1 || (int64_t)t->shape[0] != n)
        return mfs_err_set(err, -EINVAL, "tensor '%s' has %d dims and %llu elements, expected "
                           "[%lld]", t->name, t->ndim, (unsigned long long)t->shape[0],
                           (long long)n);
    if (cnt == 0) {
        off = 0;
        cnt = n;
    }
    rc = read_raw(ld, t, &sd, err);
    if (rc < 0)
        return rc;
    if (grow(&ld->stage, &ld->stage_cap, (size_t)cnt * sizeof(float)) < 0)
        return mfs_err_set(err, -ENOMEM, "cannot load '%s': out of memory", t->name);
    host = ld->stage;
    for (i = 0; i < cnt; i++)
        host[i] = elem_f32(ld->raw, sd, map ? map[i] : off + i);
    /* Kept in F32 for compute, but with the values of the load dtype, as
     * transformers' torch_dtype=bfloat16 rounds norms and biases too. */
    if (m->dtype == MFS_MODEL_DTYPE_BF16)
        for (i = 0; i < cnt; i++)
            host[i] = mfs_be_bf16_to_f32(mfs_be_f32_to_bf16(host[i]));
    else if (m->dtype == MFS_MODEL_DTYPE_F16)
        for (i = 0; i < cnt; i++)
            host[i] = mfs_be_f16_to_f32(mfs_be_f32_to_f16(host[i]));
    rc = mfs_be_alloc(m->be, (size_t)cnt * sizeof(float), &dst, err);
    if (rc < 0)
        return rc;
    rc = track(m, dst, err);
    if (rc < 0) {
        mfs_be_free(m->be, dst);
        return rc;
    }
    rc = mfs_be_upload(m->be, dst, host, (size_t)cnt * sizeof(float));
    if (rc < 0)
        return mfs_err_set(err, rc, "cannot upload '%s'", t->name);
    m->weight_bytes += (uint64_t)cnt * sizeof(float);
    *out = dst;
    return 1;
}

int mfs_model_load_vector(struct mfs_model_loader *ld, const char *name, int64_t n, int64_t off,
                          int64_t cnt, unsigned flags, float **out, struct mfs_err *err)
{
    return load_vector(ld, name, n, off, cnt, NULL, flags, out, err);
}

int mfs_model_load_vector_rows(struct mfs_model_loader *ld, const char *name, int64_t n,
                               const int64_t *idx, int64_t cnt, unsigned flags, float **out,
                               struct mfs_err *err)
{
    int64_t i;

    for (i = 0; i < cnt; i++)
        if (idx[i] < 0 || idx[i] >= n)
            return mfs_err_set(err, -EINVAL, "element %lld of '%s' out of range",
                               (long long)idx[i], name);
    return load_vector(ld, name, n, 0, cnt, idx, flags, out, err);
}

/* ---- load / free ---- */

/* OUT: *config (free()), config.json's text, *config_len its bytes. */
static int load_configs(struct mfs_model *m, const struct mfs_ckpt_file *files, size_t n,
                        const struct mfs_ckpt_io *io, char **config, size_t *config_len,
                        struct mfs_err *err)
{
    const struct mfs_ckpt_file *f = find_file(files, n, "config.json");
    char *text = NULL;
    int rc;

    if (!f)
        return mfs_err_set(err, -ENOENT, "cannot load model: no 'config.json' in the repo");
    rc = read_small(io, f, config, err);
    if (rc < 0)
        return rc;
    *config_len = (size_t)f->size;
    rc = mfs_model_config_parse(*config, *config_len, &m->cfg, err);
    if (rc < 0)
        return rc;
    if (m->cfg.arch == MFS_ARCH_UNKNOWN)
        return mfs_err_set(err, -EINVAL, "unsupported architecture '%s'",
                           m->cfg.model_type[0] ? m->cfg.model_type
                                                : (m->cfg.architecture[0] ? m->cfg.architecture
                                                                          : "(none)"));
    f = find_file(files, n, "generation_config.json");
    if (f) {
        rc = read_small(io, f, &text, err);
        if (rc < 0)
            return rc;
    }
    rc = mfs_gen_config_parse(text, f ? (size_t)f->size : 0, &m->cfg, &m->gen, err);
    free(text);
    return rc;
}

int mfs_model_load(const struct mfs_ckpt_file *files, size_t n, const struct mfs_ckpt_io *io,
                   const struct mfs_model_load_opts *opts, struct mfs_model **mp,
                   struct mfs_err *err)
{
    struct mfs_model_loader ld = { 0 };
    struct mfs_model_readahead *ra = NULL;
    struct mfs_ckpt *ckpt = NULL;
    struct mfs_model *m;
    char *config = NULL;
    size_t config_len = 0;
    int rc;

    *mp = NULL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
    snprintf(m->device, sizeof(m->device), "%s",
             opts && opts->device[0] ? opts->device : "cpu");
    m->dtype = opts ? opts->dtype : MFS_MODEL_DTYPE_AUTO;
    rc = load_configs(m, files, n, io, &config, &config_len, err);
    if (rc < 0)
        goto out_free_model;
    rc = mfs_ckpt_open(files, n, NULL, io, &ckpt, err);
    if (rc < 0)
        goto out_free_model;
    if (ckpt->n_tensors == 0) {
        rc = mfs_err_set(err, -ENOENT, "cannot load model: no checkpoint in the repo");
        goto out_free_ckpt;
    }
    rc = mfs_be_open(m->device, opts ? opts->threads : 0, &m->be, err);
    if (rc < 0)
        goto out_free_ckpt;
    ld.m = m;
    ld.ckpt = ckpt;
    /* A failed start only loses the overlap of reading with computing. */
    (void)mfs_model_readahead_start(ckpt, io, config, config_len, &ra);
    ld.io = mfs_model_readahead_io(ra, io);
    ld.prefix = "";
    /* As many loading threads as compute threads: the user's threads=
     * says how much of the machine the model may use. */
    pool_start(m->be->n_threads > 1 ? m->be->n_threads - 1 : 0, &ld.pool);
    switch (m->cfg.arch) {
    case MFS_ARCH_LLAMA:
        rc = mfs_model_llama_load(&ld, err);
        break;
    case MFS_ARCH_GPT2:
        rc = mfs_model_gpt2_load(&ld, err);
        break;
    case MFS_ARCH_BERT:
        rc = mfs_model_bert_load(&ld, err);
        break;
    case MFS_ARCH_BLOOM:
        rc = mfs_model_bloom_load(&ld, err);
        break;
    default:
        rc = mfs_err_set(err, -EINVAL, "unsupported architecture '%s'", m->cfg.model_type);
        break;
    }
    pool_stop(&ld.pool);
    mfs_model_readahead_stop(&ra);
    free(ld.raw);
    free(ld.stage);
    if (rc < 0)
        goto out_free_ckpt;
    mfs_ckpt_free(&ckpt);
    free(config);
    *mp = m;
    return 0;

out_free_ckpt:
    mfs_ckpt_free(&ckpt);
out_free_model:
    free(config);
    mfs_model_free(&m);
    return rc;
}

void mfs_model_free(struct mfs_model **mp)
{
    struct mfs_model *m;
    size_t i;

    if (!mp || !*mp)
        return;
    m = *mp;
    for (i = 0; i < m->n_allocs; i++)
        mfs_be_free(m->be, m->allocs[i]);
    free(m->allocs);
    free(m->layers);
    free(m->alibi);
    mfs_be_close(&m->be);
    free(m);
    *mp = NULL;
}

const struct mfs_model_config *mfs_model_get_config(const struct mfs_model *m)
{
    return &m->cfg;
}

const struct mfs_gen_config *mfs_model_get_gen_config(const struct mfs_model *m)
{
    return &m->gen;
}

const char *mfs_model_device(const struct mfs_model *m)
{
    return m->device;
}

int mfs_model_threads(const struct mfs_model *m)
{
    return m->be->n_threads;
}

uint64_t mfs_model_weight_bytes(const struct mfs_model *m)
{
    return m->weight_bytes;
}

const char *mfs_model_weight_dtype(const struct mfs_model *m)
{
    unsigned s = m->dtype_seen;

    if (s == 1u << MFS_BE_F32)
        return "F32";
    if (s == 1u << MFS_BE_BF16)
        return "BF16";
    if (s == 1u << MFS_BE_F16)
        return "F16";
    return "mixed";
}

bool mfs_model_can_generate(const struct mfs_model *m)
{
    return m->cfg.arch != MFS_ARCH_BERT;
}

/* ---- state ---- */

int mfs_model_state_new(const struct mfs_model *m, int64_t max_tokens,
                        struct mfs_model_state **sp, struct mfs_err *err)
{
    const struct mfs_model_config *c = &m->cfg;
    struct mfs_model_state *s;
    int64_t kvdim = c->n_kv_heads * c->head_dim;
    int64_t l;
    int rc = -ENOMEM;

    *sp = NULL;
    if (c->arch == MFS_ARCH_BERT)
        return mfs_err_set(err, -EINVAL, "model '%s' is an encoder: it cannot generate",
                           c->model_type);
    if (m->pos_emb.data && max_tokens > c->max_positions)
        max_tokens = c->max_positions;
    if (max_tokens <= 0)
        return mfs_err_set(err, -EINVAL, "invalid cache size %lld", (long long)max_tokens);
    s = calloc(1, sizeof(*s));
    if (!s)
        return mfs_err_set(err, -ENOMEM, "cannot allocate request state");
    s->m = m;
    s->max_tokens = max_tokens;
    s->kc = calloc((size_t)c->n_layers, sizeof(*s->kc));
    s->vc = calloc((size_t)c->n_layers, sizeof(*s->vc));
    s->inv_freq = calloc((size_t)c->head_dim / 2 + 1, sizeof(float));
    if (!s->kc || !s->vc || !s->inv_freq) {
        mfs_err_set(err, -ENOMEM, "cannot allocate request state");
        goto out_free_state;
    }
    for (l = 0; l < c->n_layers; l++) {
        size_t bytes = (size_t)max_tokens * (size_t)kvdim * sizeof(float);

        rc = mfs_be_alloc(m->be, bytes, (void **)&s->kc[l], err);
        if (rc == 0)
            rc = mfs_be_alloc(m->be, bytes, (void **)&s->vc[l], err);
        if (rc < 0)
            goto out_free_state;
    }
    *sp = s;
    return 0;

out_free_state:
    mfs_model_state_free(&s);
    return rc;
}

void mfs_model_state_free(struct mfs_model_state **sp)
{
    struct mfs_model_state *s;
    struct mfs_be *be;
    int64_t l;

    if (!sp || !*sp)
        return;
    s = *sp;
    be = s->m->be;
    for (l = 0; s->kc && l < s->m->cfg.n_layers; l++) {
        mfs_be_free(be, s->kc[l]);
        mfs_be_free(be, s->vc[l]);
    }
    free(s->kc);
    free(s->vc);
    mfs_be_free(be, s->x);
    mfs_be_free(be, s->h);
    mfs_be_free(be, s->q);
    mfs_be_free(be, s->att);
    mfs_be_free(be, s->ff1);
    mfs_be_free(be, s->ff2);
    mfs_be_free(be, s->logits);
    free(s->inv_freq);
    free(s);
    *sp = NULL;
}

void mfs_model_state_reset(struct mfs_model_state *s)
{
    s->n_past = 0;
}

int64_t mfs_model_state_len(const struct mfs_model_state *s)
{
    return s->n_past;
}

int mfs_model_state_reserve(struct mfs_model_state *s, int64_t n, struct mfs_err *err)
{
    const struct mfs_model_config *c = &s->m->cfg;
    struct mfs_be *be = s->m->be;
    size_t d = (size_t)c->hidden_size;
    size_t qd = (size_t)(c->n_heads * c->head_dim);
    size_t ff = (size_t)c->intermediate_size;
    size_t nn = (size_t)n;
    int rc = 0;

    if (n <= s->cap_tok)
        return 0;
    mfs_be_free(be, s->x);
    mfs_be_free(be, s->h);
    mfs_be_free(be, s->q);
    mfs_be_free(be, s->att);
    mfs_be_free(be, s->ff1);
    mfs_be_free(be, s->ff2);
    s->x = s->h = s->q = s->att = s->ff1 = s->ff2 = NULL;
    s->cap_tok = 0;
    rc = mfs_be_alloc(be, nn * d * 4, (void **)&s->x, err);
    if (rc == 0)
        rc = mfs_be_alloc(be, nn * d * 4, (void **)&s->h, err);
    if (rc == 0)
        rc = mfs_be_alloc(be, nn * qd * 4, (void **)&s->q, err);
    if (rc == 0)
        rc = mfs_be_alloc(be, nn * qd * 4, (void **)&s->att, err);
    if (rc == 0)
        rc = mfs_be_alloc(be, nn * ff * 4, (void **)&s->ff1, err);
    if (rc == 0)
        rc = mfs_be_alloc(be, nn * ff * 4, (void **)&s->ff2, err);
    if (rc == 0)
        s->cap_tok = n;
    return rc;
}

int mfs_model_forward(const struct mfs_model *m, struct mfs_model_state *s, const int32_t *ids,
                      size_t n, unsigned flags, float *logits, struct mfs_err *err)
{
    if (m->cfg.arch == MFS_ARCH_BERT)
        return mfs_err_set(err, -EINVAL, "model '%s' is an encoder: use embed",
                           m->cfg.model_type);
    return mfs_model_decoder_forward(m, s, ids, n, flags, logits, err);
}

int mfs_model_encode(const struct mfs_model *m, const int32_t *ids, size_t n, float *hidden,
                     float *pooled, bool *has_pooler, struct mfs_err *err)
{
    if (has_pooler)
        *has_pooler = m->has_pooler;
    if (m->cfg.arch != MFS_ARCH_BERT)
        return mfs_err_set(err, -EINVAL, "model '%s' is not an encoder", m->cfg.model_type);
    return mfs_model_bert_forward(m, ids, n, hidden, pooled, err);
}

int mfs_model_embed(const struct mfs_model *m, const int32_t *ids, size_t n,
                    enum mfs_model_pool pool, float *out, struct mfs_err *err)
{
    int64_t d = m->cfg.hidden_size;
    float *hidden;
    size_t i;
    int64_t k;
    int rc;

    if (pool == MFS_MODEL_POOL_CLS)
        return mfs_model_encode(m, ids, n, NULL, out, NULL, err);
    if (n == 0)
        return mfs_err_set(err, -EINVAL, "cannot embed an empty input");
    hidden = malloc(n * (size_t)d * sizeof(float));
    if (!hidden)
        return mfs_err_set(err, -ENOMEM, "cannot embed: out of memory");
    rc = mfs_model_encode(m, ids, n, hidden, NULL, NULL, err);
    if (rc == 0) {
        for (k = 0; k < d; k++) {
            double sum = 0;

            for (i = 0; i < n; i++)
                sum += hidden[i * (size_t)d + (size_t)k];
            out[k] = (float)(sum / (double)n);
        }
    }
    free(hidden);
    return rc;
}

/* ---- generation ---- */

void mfs_gen_params_init(struct mfs_gen_params *p, const struct mfs_gen_config *gen)
{
    memset(p, 0, sizeof(*p));
    p->max_new_tokens = gen->max_new_tokens;
    p->do_sample = gen->do_sample;
    p->temperature = gen->temperature;
    p->top_k = gen->top_k;
    p->top_p = gen->top_p;
    p->repetition_penalty = gen->repetition_penalty;
    p->n_eos = gen->n_eos;
    memcpy(p->eos_token_id, gen->eos_token_id, sizeof(p->eos_token_id));
}

void mfs_gen_result_release(struct mfs_gen_result *r)
{
    if (!r)
        return;
    free(r->ids);
    r->ids = NULL;
    r->n_ids = 0;
}

/* Index of the first stop string found in text, or -1. */
static int find_stop(const struct mfs_gen_params *p, const char *text)
{
    size_t i;

    for (i = 0; i < p->n_stop; i++)
        if (p->stop[i] && p->stop[i][0] && strstr(text, p->stop[i]))
            return (int)i;
    return -1;
}

int mfs_model_generate(const struct mfs_model *m, const int32_t *prompt, size_t n_prompt,
                       const struct mfs_gen_params *p, const struct mfs_gen_callbacks *cb,
                       struct mfs_gen_result *res, struct mfs_err *err)
{
    struct mfs_model_state *s = NULL;
    struct mfs_model_rng rng;
    struct mfs_buf text = MFS_BUF_INIT;
    int64_t vocab = m->cfg.vocab_size;
    int64_t max_new = p->max_new_tokens;
    int32_t *hist = NULL;
    float *logits = NULL;
    size_t n_hist = n_prompt;
    int64_t cap;
    double t0;
    int64_t i;
    int rc;

    memset(res, 0, sizeof(*res));
    res->stop_index = -1;
    if (n_prompt == 0)
        return mfs_err_set(err, -EINVAL, "cannot generate from an empty prompt");
    if (p->n_stop > 0 && (!cb || !cb->detok))
        return mfs_err_set(err, -EINVAL, "stop strings need a tokenizer to decode with");
    if (max_new < 0) {
        max_new = m->gen.max_length - (int64_t)n_prompt;
        if (max_new < 0)
            max_new = 0;
    }
    if (m->pos_emb.data && (int64_t)n_prompt > m->cfg.max_positions)
        return mfs_err_set(err, -EINVAL, "prompt of %zu tokens exceeds the model's %lld "
                           "positions", n_prompt, (long long)m->cfg.max_positions);
    cap = (int64_t)n_prompt + (max_new > 0 ? max_new : 1);
    /* The cache stops at the model's positions (a longer run ends with
     * MFS_GEN_STOP_CONTEXT) unless the prompt alone is already longer. */
    if (cap > m->cfg.max_positions && (int64_t)n_prompt < m->cfg.max_positions)
        cap = m->cfg.max_positions;
    rc = mfs_model_state_new(m, cap, &s, err);
    if (rc < 0)
        return rc;
    hist = malloc((n_prompt + (size_t)max_new + 1) * sizeof(*hist));
    res->ids = malloc(((size_t)max_new + 1) * sizeof(*res->ids));
    logits = malloc((size_t)vocab * sizeof(*logits));
    if (!hist || !res->ids || !logits) {
        rc = mfs_err_set(err, -ENOMEM, "cannot generate: out of memory");
        goto out_free;
    }
    memcpy(hist, prompt, n_prompt * sizeof(*hist));
    mfs_model_rng_seed(&rng, p->seed);
    res->stop = MFS_GEN_STOP_LENGTH;
    if (max_new == 0)
        goto out_free;
    t0 = mfs_clock_s();
    rc = mfs_model_forward(m, s, prompt, n_prompt, 0, logits, err);
    res->prefill_ms = (mfs_clock_s() - t0) * 1e3;
    t0 = mfs_clock_s();
    for (i = 0; rc == 0; i++) {
        int32_t id;
        size_t e;

        rc = mfs_model_sample(logits, vocab, p, hist, n_hist, &rng, &id, err);
        if (rc < 0)
            break;
        hist[n_hist++] = id;
        res->ids[res->n_ids++] = id;
        if (cb && cb->on_token && cb->on_token(cb->ctx, id, (size_t)i)) {
            res->stop = MFS_GEN_STOP_CALLBACK;
            break;
        }
        for (e = 0; e < p->n_eos; e++)
            if (p->eos_token_id[e] == id)
                break;
        if (e < p->n_eos) {
            res->stop = MFS_GEN_STOP_EOS;
            break;
        }
        if (p->n_stop > 0) {
            mfs_buf_reset(&text);
            rc = cb->detok(cb->ctx, res->ids, res->n_ids, &text, err);
            if (rc < 0)
                break;
            res->stop_index = find_stop(p, text.data ? text.data : "");
            if (res->stop_index >= 0) {
                res->stop = MFS_GEN_STOP_STRING;
                break;
            }
        }
        if ((int64_t)res->n_ids >= max_new) {
            res->stop = MFS_GEN_STOP_LENGTH;
            break;
        }
        if (mfs_model_state_len(s) >= s->max_tokens) {
            res->stop = MFS_GEN_STOP_CONTEXT;
            break;
        }
        rc = mfs_model_forward(m, s, &id, 1, 0, logits, err);
    }
    res->decode_ms = (mfs_clock_s() - t0) * 1e3;

out_free:
    if (rc < 0)
        mfs_gen_result_release(res);
    mfs_buf_release(&text);
    free(logits);
    free(hist);
    mfs_model_state_free(&s);
    return rc;
}

/* ---- info ---- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s);
    size_t lx = strlen(suffix);

    return ls >= lx && !strcmp(s + ls - lx, suffix);
}

bool mfs_model_is_embedding_name(const char *name)
{
    static const char *const suffixes[] = {
        "embed_tokens.weight", "wte.weight", "wpe.weight", "word_embeddings.weight",
        "position_embeddings.weight", "token_type_embeddings.weight", "embed_positions.weight",
    };
    size_t i;

    for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        if (ends_with(name, suffixes[i]))
            return true;
    return false;
}

/* State-dict entries that are buffers or tied aliases, not parameters. */
static bool not_a_parameter(const struct mfs_model_config *cfg, const char *name)
{
    if (ends_with(name, ".attn.bias") && cfg->arch == MFS_ARCH_GPT2)
        return true;
    if (ends_with(name, ".attn.masked_bias") || ends_with(name, "rotary_emb.inv_freq") ||
        ends_with(name, "embeddings.position_ids") || ends_with(name, "embeddings.token_type_ids"))
        return true;
    if (cfg->tie_word_embeddings && !strcmp(name, "lm_head.weight"))
        return true;
    /* BertLMHeadModel ties the decoder to the word embeddings and its bias. */
    if (!strcmp(name, "cls.predictions.decoder.weight") ||
        !strcmp(name, "cls.predictions.decoder.bias"))
        return true;
    return false;
}

static bool is_linear_weight(const struct mfs_ckpt_tensor *t)
{
    return t->ndim == 2 && !mfs_model_is_embedding_name(t->name) &&
           strcmp(t->name, "lm_head.weight") != 0;
}

int mfs_model_info_compute(const struct mfs_model_config *cfg, const struct mfs_ckpt *ckpt,
                           struct mfs_model_info *info, struct mfs_err *err)
{
    uint64_t numel_all = 0;
    uint64_t numel_emb = 0;
    uint64_t numel_lin = 0;
    uint64_t buf_f32 = 0;
    uint64_t buf_bf16 = 0;
    uint64_t buf_int8 = 0;
    size_t i;

    memset(info, 0, sizeof(*info));
    if (!ckpt || ckpt->n_tensors == 0)
        return mfs_err_set(err, -EINVAL, "no checkpoint: cannot count parameters");
    for (i = 0; i < ckpt->n_tensors; i++) {
        const struct mfs_ckpt_tensor *t = &ckpt->tensors[i];
        uint64_t ne = 1;
        int d;

        if (not_a_parameter(cfg, t->name))
            continue;
        for (d = 0; d < t->ndim; d++)
            ne *= t->shape[d];
        numel_all += ne;
        if (mfs_model_is_embedding_name(t->name))
            numel_emb += ne;
        if (is_linear_weight(t))
            numel_lin += ne;
    }
    /* Buffers registered by transformers 4.37's modules (model-ops.json). */
    if (cfg->arch == MFS_ARCH_LLAMA) {
        uint64_t cs = 2 * (uint64_t)cfg->max_positions * (uint64_t)cfg->head_dim;
        uint64_t inv = (uint64_t)cfg->head_dim / 2 * 4;

        buf_f32 = (uint64_t)cfg->n_layers * (inv + cs * 4);
        buf_bf16 = (uint64_t)cfg->n_layers * (inv + cs * 2);
        buf_int8 = buf_bf16;
    } else if (cfg->arch == MFS_ARCH_GPT2) {
        uint64_t mask = (uint64_t)cfg->max_positions * (uint64_t)cfg->max_positions;

        buf_f32 = (uint64_t)cfg->n_layers * (mask + 4);
        buf_bf16 = (uint64_t)cfg->n_layers * (mask + 2);
        buf_int8 = buf_bf16;
    } else if (cfg->arch == MFS_ARCH_BERT) {
        buf_f32 = 2 * (uint64_t)cfg->max_positions * 8;
        buf_bf16 = buf_f32;
        buf_int8 = buf_f32;
    }
    info->num_parameters = numel_all;
    info->num_parameters_exclude_embeddings = numel_all - numel_emb;
    info->footprint_f32 = numel_all * 4 + buf_f32;
    info->footprint_bf16 = numel_all * 2 + buf_bf16;
    info->footprint_f16 = numel_all * 2 + buf_bf16;
    info->footprint_int8 = numel_lin + (numel_all - numel_lin) * 2 + buf_int8;
    info->footprint_int4 = (numel_lin + 1) / 2 + (numel_lin + 63) / 64 * 4 +
                           (numel_all - numel_lin) * 2 + buf_int8;
    info->flops_per_token = 6 * info->num_parameters_exclude_embeddings;
    info->flops_per_token_all = 6 * numel_all;
    info->can_generate = ends_with(cfg->architecture, "ForCausalLM") ||
                         ends_with(cfg->architecture, "LMHeadModel") ||
                         ends_with(cfg->architecture, "ForConditionalGeneration");
    info->tied = cfg->tie_word_embeddings;
    if (cfg->arch == MFS_ARCH_BERT) {
        /* BertModel has no head, so nothing is tied; an LM, MaskedLM or
         * PreTraining head ties its decoder to word_embeddings unless the
         * config says tie_word_embeddings=false (model-ops.json:
         * bert-tiniest's cls.predictions.decoder.* are aliases). */
        info->tied = cfg->tie_word_embeddings &&
                     (strstr(cfg->architecture, "LMHead") != NULL ||
                      strstr(cfg->architecture, "MaskedLM") != NULL ||
                      strstr(cfg->architecture, "PreTraining") != NULL);
    }
    info->loaded_dtype_auto = cfg->torch_dtype[0] ? cfg->torch_dtype : "float32";
    return 0;
}
