/*
 * cache/stage_pt.c - piece tables of staged files (cache/stage_int.h):
 * the extent list in memory (split, replace, merge, truncate, slice) and
 * its encoding in stage_entries.extents.  No SQLite here: cache/stage.c
 * stores, reads and reference-counts what these functions build.
 *
 * The encoded piece table is a sequence of records, one per extent, in file
 * order (host byte order: the file never leaves this machine):
 *   u8 source, u64 len, then
 *   OBJ:    i64 object id, u64 offset in the object
 *   REMOTE: u64 offset in the blob, u64 blob size, u8 is_lfs, 40 bytes oid,
 *           64 bytes lfs_oid, u32 path length, the path (no NUL)
 *   ZERO:   nothing
 *
 * Threads: a piece table belongs to its caller (a writer's thread, or a
 * reader under the stage's lock); nothing here locks.
 */
#include "stage_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- remote entries and extents ------------------------------------------ */

struct mfs_entry *mfs_stage_remote_dup(const struct mfs_entry *e)
{
    struct mfs_entry *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    *r = *e;
    r->path = strdup(e->path ? e->path : "");
    if (!r->path) {
        free(r);
        return NULL;
    }
    r->oid[sizeof(r->oid) - 1] = '\0';
    r->lfs_oid[sizeof(r->lfs_oid) - 1] = '\0';
    r->is_dir = false;
    return r;
}

void mfs_stage_remote_free(struct mfs_entry *r)
{
    if (r) {
        free(r->path);
        free(r);
    }
}

static bool stage_remote_same(const struct mfs_entry *a, const struct mfs_entry *b)
{
    return a->size == b->size && a->is_lfs == b->is_lfs && !strcmp(a->oid, b->oid) &&
           !strcmp(a->lfs_oid, b->lfs_oid) && !strcmp(a->path, b->path);
}

void mfs_stage_ext_release(struct stage_ext *x)
{
    mfs_stage_remote_free(x->rem);
    x->rem = NULL;
}

/* Deep copy src into *dst.  -ENOMEM. */
static int stage_ext_copy(struct stage_ext *dst, const struct stage_ext *src)
{
    *dst = *src;
    dst->rem = NULL;
    if (src->src == SRC_REMOTE) {
        dst->rem = mfs_stage_remote_dup(src->rem);
        if (!dst->rem)
            return -ENOMEM;
    }
    return 0;
}

static bool stage_ext_mergeable(const struct stage_ext *a, const struct stage_ext *b)
{
    if (a->src != b->src)
        return false;
    switch (a->src) {
    case SRC_ZERO:
        return true;
    case SRC_OBJ:
        return a->obj == b->obj && a->src_off + a->len == b->src_off;
    case SRC_REMOTE:
        return a->src_off + a->len == b->src_off && stage_remote_same(a->rem, b->rem);
    }
    return false;
}

/* ---- piece tables ---------------------------------------------------------- */

void mfs_stage_pt_release(struct stage_pt *pt)
{
    size_t i;

    for (i = 0; i < pt->n; i++)
        mfs_stage_ext_release(&pt->v[i]);
    free(pt->v);
    memset(pt, 0, sizeof(*pt));
}

static int stage_pt_reserve(struct stage_pt *pt, size_t extra)
{
    struct stage_ext *v;
    size_t cap;

    if (pt->n + extra <= pt->cap)
        return 0;
    cap = pt->cap ? pt->cap : 8;
    while (cap < pt->n + extra)
        cap *= 2;
    v = realloc(pt->v, cap * sizeof(*v));
    if (!v)
        return -ENOMEM;
    pt->v = v;
    pt->cap = cap;
    return 0;
}

/* Index of the extent holding byte at (at < size). */
size_t mfs_stage_pt_find(const struct stage_pt *pt, uint64_t at)
{
    size_t lo = 0;
    size_t hi = pt->n;
    size_t mid;

    while (hi - lo > 1) {
        mid = lo + (hi - lo) / 2;
        if (pt->v[mid].off <= at)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Make an extent start at byte at; *idxp = its index (n when at >= size).
 * Needs one free slot (stage_pt_reserve).  -ENOMEM. */
static int stage_pt_split(struct stage_pt *pt, uint64_t at, size_t *idxp)
{
    struct stage_ext right;
    struct stage_ext *x;
    size_t k;
    uint64_t cut;

    if (at >= pt->size) {
        *idxp = pt->n;
        return 0;
    }
    k = mfs_stage_pt_find(pt, at);
    x = &pt->v[k];
    if (x->off == at) {
        *idxp = k;
        return 0;
    }
    if (stage_ext_copy(&right, x) < 0)
        return -ENOMEM;
    cut = at - x->off;
    right.off = at;
    right.len = x->len - cut;
    if (right.src != SRC_ZERO)
        right.src_off += cut;
    x->len = cut;
    memmove(&pt->v[k + 2], &pt->v[k + 1], (pt->n - k - 1) * sizeof(*pt->v));
    pt->v[k + 1] = right;
    pt->n++;
    *idxp = k + 1;
    return 0;
}

/* Merge mergeable neighbours among extents [lo, hi) (indices clipped). */
static void stage_pt_merge(struct stage_pt *pt, size_t lo, size_t hi)
{
    size_t k;

    if (hi > pt->n)
        hi = pt->n;
    k = lo + 1;
    while (k < hi) {
        if (stage_ext_mergeable(&pt->v[k - 1], &pt->v[k])) {
            pt->v[k - 1].len += pt->v[k].len;
            mfs_stage_ext_release(&pt->v[k]);
            memmove(&pt->v[k], &pt->v[k + 1], (pt->n - k - 1) * sizeof(*pt->v));
            pt->n--;
            hi--;
        } else {
            k++;
        }
    }
}

/* Replace bytes [off, off+sum of lens) by ins[0..nins), which become owned
 * by pt on success (their off fields are set here); bytes between the old
 * end and off become zeros.  On failure pt is unchanged and ins still the
 * caller's.  -ENOMEM. */
int mfs_stage_pt_replace(struct stage_pt *pt, uint64_t off, struct stage_ext *ins,
                         size_t nins)
{
    uint64_t len = 0;
    uint64_t at;
    size_t i;
    size_t j;
    size_t k;

    for (k = 0; k < nins; k++)
        len += ins[k].len;
    if (stage_pt_reserve(pt, nins + 3) < 0)
        return -ENOMEM;
    if (off > pt->size) {
        pt->v[pt->n] = (struct stage_ext){ .off = pt->size, .len = off - pt->size,
                                           .src = SRC_ZERO };
        pt->n++;
        pt->size = off;
        stage_pt_merge(pt, pt->n >= 2 ? pt->n - 2 : 0, pt->n);
    }
    if (stage_pt_split(pt, off, &i) < 0 || stage_pt_split(pt, off + len, &j) < 0)
        return -ENOMEM;     /* a split alone changes no byte: pt is still right */
    for (k = i; k < j; k++)
        mfs_stage_ext_release(&pt->v[k]);
    memmove(&pt->v[i + nins], &pt->v[j], (pt->n - j) * sizeof(*pt->v));
    at = off;
    for (k = 0; k < nins; k++) {
        pt->v[i + k] = ins[k];
        pt->v[i + k].off = at;
        at += ins[k].len;
    }
    pt->n = pt->n - (j - i) + nins;
    if (off + len > pt->size)
        pt->size = off + len;
    stage_pt_merge(pt, i ? i - 1 : 0, i + nins + 1);
    return 0;
}

/* Set the size: drop bytes past it or add zeros.  -ENOMEM. */
int mfs_stage_pt_truncate(struct stage_pt *pt, uint64_t size)
{
    struct stage_ext z = { .src = SRC_ZERO };
    size_t i;
    size_t k;

    if (size > pt->size) {
        z.len = size - pt->size;
        return mfs_stage_pt_replace(pt, pt->size, &z, 1);
    }
    if (stage_pt_reserve(pt, 1) < 0 || stage_pt_split(pt, size, &i) < 0)
        return -ENOMEM;
    for (k = i; k < pt->n; k++)
        mfs_stage_ext_release(&pt->v[k]);
    pt->n = i;
    pt->size = size;
    return 0;
}

/* Deep copies of the extents of bytes [off, off+len) (off+len <= size).
 * OUT: *outp (free each, then the array), *np.  -ENOMEM. */
int mfs_stage_pt_slice(const struct stage_pt *pt, uint64_t off, uint64_t len,
                       struct stage_ext **outp, size_t *np)
{
    struct stage_ext *out;
    size_t n = 0;
    size_t k;
    uint64_t a;
    uint64_t b;
    const struct stage_ext *x;

    *outp = NULL;
    *np = 0;
    if (len == 0)
        return 0;
    k = mfs_stage_pt_find(pt, off);
    out = calloc(pt->n - k, sizeof(*out));
    if (!out)
        return -ENOMEM;
    for (; k < pt->n && pt->v[k].off < off + len; k++) {
        x = &pt->v[k];
        a = x->off > off ? x->off : off;
        b = x->off + x->len < off + len ? x->off + x->len : off + len;
        if (stage_ext_copy(&out[n], x) < 0)
            goto out_nomem;
        if (out[n].src != SRC_ZERO)
            out[n].src_off += a - x->off;
        out[n].off = a - off;
        out[n].len = b - a;
        n++;
    }
    *outp = out;
    *np = n;
    return 0;
out_nomem:
    while (n)
        mfs_stage_ext_release(&out[--n]);
    free(out);
    return -ENOMEM;
}

/* ---- piece table encoding ---------------------------------------------------- */

int mfs_stage_pt_encode(const struct stage_pt *pt, unsigned char **bp, size_t *np)
{
    unsigned char *b;
    unsigned char *p;
    size_t n = 0;
    size_t k;
    uint32_t plen;
    uint8_t u8;
    const struct stage_ext *x;

    *bp = NULL;
    *np = 0;
    for (k = 0; k < pt->n; k++) {
        n += 1 + 8;
        if (pt->v[k].src == SRC_OBJ)
            n += 16;
        else if (pt->v[k].src == SRC_REMOTE)
            n += STAGE_REMOTE_REC + strlen(pt->v[k].rem->path);
    }
    b = malloc(n ? n : 1);
    if (!b)
        return -ENOMEM;
    p = b;
    for (k = 0; k < pt->n; k++) {
        x = &pt->v[k];
        u8 = (uint8_t)x->src;
        *p++ = u8;
        memcpy(p, &x->len, 8);
        p += 8;
        if (x->src == SRC_OBJ) {
            memcpy(p, &x->obj, 8);
            memcpy(p + 8, &x->src_off, 8);
            p += 16;
        } else if (x->src == SRC_REMOTE) {
            memcpy(p, &x->src_off, 8);
            memcpy(p + 8, &x->rem->size, 8);
            p[16] = x->rem->is_lfs;
            memcpy(p + 17, x->rem->oid, 40);
            memcpy(p + 57, x->rem->lfs_oid, 64);
            plen = (uint32_t)strlen(x->rem->path);
            memcpy(p + 121, &plen, 4);
            memcpy(p + 125, x->rem->path, plen);
            p += STAGE_REMOTE_REC + plen;
        }
    }
    *bp = b;
    *np = n;
    return 0;
}

/* Decode a stored piece table of a file of size bytes.  -EIO (damaged),
 * -ENOMEM. */
int mfs_stage_pt_decode(const unsigned char *b, size_t n, uint64_t size, struct stage_pt *pt,
                        const char *path, struct mfs_err *err)
{
    struct stage_ext x;
    const unsigned char *p = b;
    const unsigned char *end = b + n;
    uint64_t off = 0;
    uint32_t plen;
    int rc;

    memset(pt, 0, sizeof(*pt));
    while (p < end) {
        memset(&x, 0, sizeof(x));
        if (end - p < 9)
            goto out_damaged;
        x.src = (enum stage_src)p[0];
        memcpy(&x.len, p + 1, 8);
        p += 9;
        if (x.len == 0 || x.len > size - off)
            goto out_damaged;
        x.off = off;
        if (x.src == SRC_OBJ) {
            if (end - p < 16)
                goto out_damaged;
            memcpy(&x.obj, p, 8);
            memcpy(&x.src_off, p + 8, 8);
            p += 16;
            if (x.obj <= 0 || x.obj >= ((int64_t)1 << (62 - STAGE_IDX_BITS)) ||
                x.src_off > STAGE_MAX_OFF || x.len > STAGE_MAX_OFF - x.src_off)
                goto out_damaged;
        } else if (x.src == SRC_REMOTE) {
            if ((size_t)(end - p) < STAGE_REMOTE_REC)
                goto out_damaged;
            memcpy(&plen, p + 121, 4);
            if (plen >= STAGE_MAX_PATH || (size_t)(end - p) - STAGE_REMOTE_REC < plen)
                goto out_damaged;
            x.rem = calloc(1, sizeof(*x.rem));
            if (!x.rem)
                goto out_nomem;
            x.rem->path = malloc(plen + 1);
            if (!x.rem->path) {
                free(x.rem);
                goto out_nomem;
            }
            memcpy(&x.src_off, p, 8);
            memcpy(&x.rem->size, p + 8, 8);
            x.rem->is_lfs = p[16] != 0;
            memcpy(x.rem->oid, p + 17, 40);
            memcpy(x.rem->lfs_oid, p + 57, 64);
            memcpy(x.rem->path, p + 125, plen);
            x.rem->path[plen] = '\0';
            p += STAGE_REMOTE_REC + plen;
            if (x.src_off > x.rem->size || x.len > x.rem->size - x.src_off) {
                mfs_stage_remote_free(x.rem);
                goto out_damaged;
            }
        } else if (x.src != SRC_ZERO) {
            goto out_damaged;
        }
        if (stage_pt_reserve(pt, 1) < 0) {
            mfs_stage_remote_free(x.rem);
            goto out_nomem;
        }
        pt->v[pt->n++] = x;
        off += x.len;
    }
    if (off != size)
        goto out_damaged;
    pt->size = size;
    return 0;
out_damaged:
    rc = mfs_err_set(err, -EIO, "stage: damaged piece table of '%s'", path);
    mfs_stage_pt_release(pt);
    return rc;
out_nomem:
    mfs_stage_pt_release(pt);
    return stage_nomem(err);
}

/* The distinct data objects pt names.  OUT: *objsp (free()), *np. */
int mfs_stage_pt_objects(const struct stage_pt *pt, int64_t **objsp, size_t *np)
{
    int64_t *v;
    size_t n = 0;
    size_t k;
    size_t i;

    *objsp = NULL;
    *np = 0;
    if (pt->n == 0)
        return 0;
    v = malloc(pt->n * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (k = 0; k < pt->n; k++) {
        if (pt->v[k].src != SRC_OBJ)
            continue;
        for (i = 0; i < n && v[i] != pt->v[k].obj; i++)
            ;
        if (i == n)
            v[n++] = pt->v[k].obj;
    }
    *objsp = v;
    *np = n;
    return 0;
}
