/*
 * fs/push.c - one Hub commit of a mount's staged changes (contract in
 * fs/push.h; docs/design.md "Writes, resharding, push"; docs/hub-api.md
 * section 6).
 *
 * A push, in order, and why:
 *   1. read the stage's generation before listing it: an entry changed
 *      after that read has a larger generation and survives the final
 *      clear, so a write racing the push is never dropped unpushed (the
 *      other order could clear a change the list did not contain);
 *   2. turn the listed entries (generation <= that value) into Hub
 *      operations over the base tree: deletions first, so that a folder
 *      deleted and made again as a file of the same name (or the reverse)
 *      commits in the order the user did it; a deletion below a folder
 *      that is itself deleted is dropped (the server would answer 404);
 *      a FILE that is the base's own blob at the same path is no change;
 *   3. mfs_hub_commit() with parent_commit = base: a moved branch is a
 *      412 (-ESTALE) and nothing changes anywhere;
 *   4. only then clear the stage up to the generation and record the new
 *      ref and tree in the cache, so a crash between 3 and 4 leaves a
 *      stage whose next push is empty (fs/push.h, "Exactly once").
 * The counts of the result (files added and deleted) come from comparing
 * the base tree with the new commit's tree: the commit's parent is the
 * base, so the difference is exactly what the commit did, whatever the
 * server's preupload dropped.
 */
#include "fs/push.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/clock.h"
#include "hub/upload.h"

enum last_status {
    LAST_NONE,                              /* no push yet */
    LAST_OK,
    LAST_ERROR,
};

struct mfs_push {
    struct mfs_hub *hub;                    /* borrowed */
    struct mfs_stage *stage;                /* borrowed */
    struct mfs_cache *cache;                /* borrowed; may be NULL */
    char *endpoint;                         /* owned copies behind repo */
    char *repo_type;
    char *repo_id;
    struct mfs_cache_repo repo;             /* points at the copies above */
    char *revision;                         /* the branch pushed to */
    pthread_mutex_t run_mu;                 /* one push at a time */
    pthread_mutex_t mu;                     /* guards prog and the last-push fields */
    struct mfs_push_progress prog;
    enum last_status last;
    struct mfs_push_result last_res;        /* entries never kept (NULL) */
    struct mfs_err last_err;
};

/* Read-ahead shared by every file of one push.  libcurl asks for the body
 * in pieces of 64 KiB and each mfs_stage_read() looks the path's piece
 * table up again, so reads are served from blocks of READ_AHEAD bytes; and
 * while the caller hashes or sends one block, a helper thread reads the
 * next one, so the stage's reads overlap the hashing and the network.  The
 * callbacks of a commit run on one thread (hub/upload.h), so one pair of
 * blocks serves every file: memory stays at two blocks per push.
 * cur is touched by the calling thread only; next belongs to the helper
 * while it is WANTED or FILLING, and to the caller otherwise (mu guards the
 * state, and the swap). */
#define READ_AHEAD (8u << 20)               /* bytes of one read-ahead block */

enum ra_state {
    RA_EMPTY,                               /* holds nothing */
    RA_WANTED,                              /* the helper is asked to fill it */
    RA_FILLING,                             /* the helper is reading into it */
    RA_READY,                               /* holds [off, off + len) of owner */
    RA_FAILED,                              /* the helper's read failed: rc, err */
};

struct ra_block {
    const struct stage_src *owner;          /* whose bytes, or NULL */
    uint64_t off;                           /* file offset of data[0] */
    size_t len;                             /* bytes wanted / held */
    char *data;                             /* READ_AHEAD bytes */
    enum ra_state state;
    int rc;                                 /* RA_FAILED: the read's errno */
    struct mfs_err err;                     /* RA_FAILED: its reason */
};

struct read_ahead {
    pthread_mutex_t mu;                     /* guards next and quit */
    pthread_cond_t cv;                      /* signalled on every state change */
    bool inited;                            /* mu/cv made, blocks allocated */
    bool started;                           /* tid runs */
    bool quit;                              /* the helper must return */
    pthread_t tid;
    struct ra_block cur;                    /* the caller's block */
    struct ra_block next;                   /* the helper's block */
};

/* Where an ADD op's bytes come from: the stage's committed content. */
struct stage_src {
    struct mfs_stage *stage;
    const char *path;                       /* borrowed from the stage list */
    uint64_t size;                          /* bytes the list gave */
    struct read_ahead *ra;                  /* shared by the plan */
};

/* Exactly len bytes at off of the staged file, straight from the stage. */
static int stage_read_full(const struct stage_src *src, uint64_t off, size_t len, char *buf,
                           struct mfs_err *err)
{
    size_t got = 0;
    ssize_t n;

    while (got < len) {
        n = mfs_stage_read(src->stage, src->path, off + got, len - got, buf + got, err);
        if (n < 0)
            return mfs_err_wrap(err, (int)n, "cannot read staged '%s'", src->path);
        if (n == 0)
            return mfs_err_set(err, -EIO, "cannot read staged '%s': it shrank during the push "
                               "(push again)", src->path);
        got += (size_t)n;
    }
    return 0;
}

static void *ra_main(void *arg)
{
    struct read_ahead *ra = arg;
    struct ra_block *b = &ra->next;

    pthread_mutex_lock(&ra->mu);
    for (;;) {
        while (!ra->quit && b->state != RA_WANTED)
            pthread_cond_wait(&ra->cv, &ra->mu);
        if (ra->quit)
            break;
        b->state = RA_FILLING;
        pthread_mutex_unlock(&ra->mu);
        mfs_err_clear(&b->err);
        b->rc = stage_read_full(b->owner, b->off, b->len, b->data, &b->err);
        pthread_mutex_lock(&ra->mu);
        b->state = b->rc < 0 ? RA_FAILED : RA_READY;
        pthread_cond_broadcast(&ra->cv);
    }
    pthread_mutex_unlock(&ra->mu);
    return NULL;
}

/* Make the blocks and the helper; false when memory or a thread is
 * lacking (reads then go straight to the stage). */
static bool ra_init(struct read_ahead *ra)
{
    if (ra->inited)
        return true;
    ra->cur.data = malloc(READ_AHEAD);
    ra->next.data = malloc(READ_AHEAD);
    if (!ra->cur.data || !ra->next.data) {
        free(ra->cur.data);
        free(ra->next.data);
        ra->cur.data = NULL;
        ra->next.data = NULL;
        return false;
    }
    pthread_mutex_init(&ra->mu, NULL);
    pthread_cond_init(&ra->cv, NULL);
    ra->inited = true;
    ra->started = pthread_create(&ra->tid, NULL, ra_main, ra) == 0;
    return true;
}

static void ra_release(struct read_ahead *ra)
{
    if (ra->inited) {
        pthread_mutex_lock(&ra->mu);
        ra->quit = true;
        pthread_cond_broadcast(&ra->cv);
        pthread_mutex_unlock(&ra->mu);
        if (ra->started)
            pthread_join(ra->tid, NULL);
        pthread_cond_destroy(&ra->cv);
        pthread_mutex_destroy(&ra->mu);
    }
    free(ra->cur.data);
    free(ra->next.data);
    memset(ra, 0, sizeof(*ra));
}

/* Ask the helper for the block after cur (caller holds mu, next is idle). */
static void ra_want_next_locked(struct read_ahead *ra)
{
    const struct stage_src *src = ra->cur.owner;
    uint64_t at = ra->cur.off + ra->cur.len;

    if (!ra->started || !src || at >= src->size)
        return;
    ra->next.owner = src;
    ra->next.off = at;
    ra->next.len = src->size - at < READ_AHEAD ? (size_t)(src->size - at) : READ_AHEAD;
    ra->next.state = RA_WANTED;
    pthread_cond_broadcast(&ra->cv);
}

/* Make cur hold the block of src starting at off: the helper's next block
 * when it is that one, else a read of our own. */
static int ra_load(struct read_ahead *ra, const struct stage_src *src, uint64_t off,
                   struct mfs_err *err)
{
    struct ra_block *c = &ra->cur;
    struct ra_block *n = &ra->next;
    struct ra_block tmp;
    int rc = 0;

    pthread_mutex_lock(&ra->mu);
    while (n->state == RA_WANTED || n->state == RA_FILLING) {
        if (n->owner == src && n->off == off)
            pthread_cond_wait(&ra->cv, &ra->mu);
        else if (n->state == RA_WANTED)
            n->state = RA_EMPTY;            /* not needed: take the request back */
        else
            pthread_cond_wait(&ra->cv, &ra->mu);
    }
    if ((n->state == RA_READY || n->state == RA_FAILED) && n->owner == src && n->off == off) {
        if (n->state == RA_FAILED) {
            rc = n->rc;
            if (err)
                *err = n->err;
            n->state = RA_EMPTY;
            c->owner = NULL;
            goto out_unlock;
        }
        tmp = *c;
        *c = *n;
        *n = tmp;
        n->state = RA_EMPTY;
    } else {
        n->state = RA_EMPTY;
        pthread_mutex_unlock(&ra->mu);
        c->owner = NULL;
        c->len = src->size - off < READ_AHEAD ? (size_t)(src->size - off) : READ_AHEAD;
        rc = stage_read_full(src, off, c->len, c->data, err);
        if (rc < 0)
            return rc;
        c->owner = src;
        c->off = off;
        pthread_mutex_lock(&ra->mu);
    }
    ra_want_next_locked(ra);
out_unlock:
    pthread_mutex_unlock(&ra->mu);
    return rc;
}

static int stage_src_read(void *ctx, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    struct stage_src *src = ctx;
    struct read_ahead *ra = src->ra;
    char *out = buf;
    int rc;

    if (off >= src->size || len > src->size - off || !ra_init(ra))
        return stage_read_full(src, off, len, out, err);
    while (len > 0) {
        struct ra_block *c = &ra->cur;
        size_t k;

        if (c->owner != src || off < c->off || off >= c->off + c->len) {
            rc = ra_load(ra, src, off, err);
            if (rc < 0)
                return rc;
            continue;
        }
        k = (size_t)(c->off + c->len - off);
        if (k > len)
            k = len;
        memcpy(out, c->data + (off - c->off), k);
        out += k;
        off += k;
        len -= k;
    }
    return 0;
}

static void on_progress(void *ctx, const char *path, uint64_t done, uint64_t total)
{
    struct mfs_push *p = ctx;

    pthread_mutex_lock(&p->mu);
    if (path && *path)
        snprintf(p->prog.path, sizeof(p->prog.path), "%s", path);
    p->prog.done = done;
    p->prog.total = total;
    pthread_mutex_unlock(&p->mu);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int mfs_push_new(const struct mfs_push_cfg *cfg, struct mfs_push **pp, struct mfs_err *err)
{
    struct mfs_push *p;

    *pp = NULL;
    if (!cfg || !cfg->hub || !cfg->stage || !cfg->repo || !cfg->repo->repo_id)
        return mfs_err_set(err, -EINVAL, "cannot set up pushes: hub, stage and repo are needed");
    p = calloc(1, sizeof(*p));
    if (!p)
        return mfs_err_set(err, -ENOMEM, "cannot set up pushes: out of memory");
    p->hub = cfg->hub;
    p->stage = cfg->stage;
    p->cache = cfg->cache;
    p->endpoint = dup_or_empty(cfg->repo->endpoint);
    p->repo_type = dup_or_empty(cfg->repo->repo_type ? cfg->repo->repo_type : "model");
    p->repo_id = dup_or_empty(cfg->repo->repo_id);
    p->revision = dup_or_empty(cfg->revision && *cfg->revision ? cfg->revision : "main");
    if (!p->endpoint || !p->repo_type || !p->repo_id || !p->revision) {
        free(p->endpoint);
        free(p->repo_type);
        free(p->repo_id);
        free(p->revision);
        free(p);
        return mfs_err_set(err, -ENOMEM, "cannot set up pushes: out of memory");
    }
    p->repo.endpoint = p->endpoint;
    p->repo.repo_type = p->repo_type;
    p->repo.repo_id = p->repo_id;
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    *pp = p;
    return 0;
}

void mfs_push_free(struct mfs_push **pp)
{
    struct mfs_push *p;

    if (!pp || !*pp)
        return;
    p = *pp;
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p->endpoint);
    free(p->repo_type);
    free(p->repo_id);
    free(p->revision);
    free(p);
    *pp = NULL;
}

void mfs_push_result_release(struct mfs_push_result *res)
{
    if (!res)
        return;
    mfs_entries_free(res->entries, res->n_entries);
    res->entries = NULL;
    res->n_entries = 0;
}

void mfs_push_progress_get(struct mfs_push *p, struct mfs_push_progress *pr)
{
    memset(pr, 0, sizeof(*pr));
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    *pr = p->prog;
    pthread_mutex_unlock(&p->mu);
}

/* ---- the base tree, sorted for lookups ------------------------------------------------ */

struct base_index {
    const struct mfs_entry **v;             /* sorted by path (strcmp) */
    size_t n;
};

static int cmp_entry_ptr(const void *a, const void *b)
{
    const struct mfs_entry *const *x = a;
    const struct mfs_entry *const *y = b;

    return strcmp((*x)->path, (*y)->path);
}

static int base_index_init(struct base_index *bi, const struct mfs_entry *base, size_t nbase,
                           struct mfs_err *err)
{
    size_t i;

    bi->n = 0;
    bi->v = calloc(nbase ? nbase : 1, sizeof(*bi->v));
    if (!bi->v)
        return mfs_err_set(err, -ENOMEM, "cannot push: out of memory");
    for (i = 0; i < nbase; i++)
        if (base[i].path)
            bi->v[bi->n++] = &base[i];
    qsort(bi->v, bi->n, sizeof(*bi->v), cmp_entry_ptr);
    return 0;
}

/* Index of the first entry whose path is >= key. */
static size_t base_lower(const struct base_index *bi, const char *key)
{
    size_t lo = 0;
    size_t hi = bi->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (strcmp(bi->v[mid]->path, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct mfs_entry *base_find(const struct base_index *bi, const char *path)
{
    size_t i = base_lower(bi, path);

    return i < bi->n && !strcmp(bi->v[i]->path, path) ? bi->v[i] : NULL;
}

/* True when the base has a folder at path: a folder entry, or any file
 * below it (a tree from the cache may list files only). */
static bool base_has_dir(const struct base_index *bi, const char *path)
{
    const struct mfs_entry *e = base_find(bi, path);
    size_t plen = strlen(path);
    size_t i;

    if (e)
        return e->is_dir;
    /* "path/" sorts right after every "path" + a byte below '/'. */
    for (i = base_lower(bi, path); i < bi->n; i++) {
        const char *q = bi->v[i]->path;

        if (strncmp(q, path, plen) != 0)
            break;
        if (q[plen] == '/')
            return true;
    }
    return false;
}

/* True when FILE entry se is the base's own blob at the same path. */
static bool same_as_base(const struct base_index *bi, const struct mfs_stage_entry *se)
{
    const struct mfs_entry *b;

    if (!se->unchanged_remote)
        return false;
    b = base_find(bi, se->path);
    if (!b || b->is_dir || b->size != se->remote.size || b->is_lfs != se->remote.is_lfs)
        return false;
    return !strcmp(mfs_entry_content_id(b), mfs_entry_content_id(&se->remote));
}

/* True when some parent folder of path is in the sorted folder list. */
static bool under_deleted_folder(char *const *folders, size_t nfolders, const char *path)
{
    char buf[1024];
    char *slash;
    size_t i;

    if (nfolders == 0 || strlen(path) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", path);
    for (;;) {
        slash = strrchr(buf, '/');
        if (!slash)
            return false;
        *slash = '\0';
        for (i = 0; i < nfolders; i++)
            if (!strcmp(folders[i], buf))
                return true;
    }
}

/* ---- building the operations ---------------------------------------------------------- */

struct plan {
    struct mfs_hub_op *ops;                 /* deletions first, then adds */
    struct stage_src *srcs;                 /* one per op (adds use theirs) */
    struct read_ahead ra;                   /* shared by the srcs */
    size_t n;
    size_t n_add;
    size_t n_del;
};

static void plan_release(struct plan *pl)
{
    ra_release(&pl->ra);
    free(pl->ops);
    free(pl->srcs);
    memset(pl, 0, sizeof(*pl));
}

static int plan_build(struct mfs_push *p, const struct base_index *bi,
                      const struct mfs_stage_entry *se, size_t nse, uint64_t gen,
                      struct plan *pl, struct mfs_err *err)
{
    char **folders = NULL;
    size_t nfolders = 0;
    size_t i;
    int rc = 0;

    memset(pl, 0, sizeof(*pl));
    /* At most two ops per entry: a file made where the base has a folder
     * deletes the folder first. */
    pl->ops = calloc(nse ? 2 * nse : 1, sizeof(*pl->ops));
    pl->srcs = calloc(nse ? 2 * nse : 1, sizeof(*pl->srcs));
    folders = calloc(nse ? nse : 1, sizeof(*folders));
    if (!pl->ops || !pl->srcs || !folders) {
        rc = mfs_err_set(err, -ENOMEM, "cannot push: out of memory");
        goto out_free_folders;
    }
    /* Folder deletions first: file deletions below them are dropped.  A
     * base folder goes when it is whited out or a file took its place. */
    for (i = 0; i < nse; i++)
        if (se[i].generation <= gen && (se[i].kind == MFS_STAGE_DELETED ||
                                        se[i].kind == MFS_STAGE_FILE) &&
            base_has_dir(bi, se[i].path))
            folders[nfolders++] = se[i].path;
    for (i = 0; i < nse; i++) {
        const struct mfs_entry *b;
        struct mfs_hub_op *op;

        if (se[i].generation > gen || under_deleted_folder(folders, nfolders, se[i].path))
            continue;
        b = base_find(bi, se[i].path);
        op = &pl->ops[pl->n];
        if (se[i].kind == MFS_STAGE_DELETED && b && !b->is_dir) {
            op->kind = MFS_HUB_OP_DELETE_FILE;
        } else if (se[i].kind == MFS_STAGE_DIR && b && !b->is_dir) {
            op->kind = MFS_HUB_OP_DELETE_FILE;  /* a folder made where a file was */
        } else if (se[i].kind != MFS_STAGE_DIR && base_has_dir(bi, se[i].path)) {
            op->kind = MFS_HUB_OP_DELETE_FOLDER;
        } else {
            continue;                       /* nothing of the base to remove */
        }
        op->path = se[i].path;
        pl->n++;
        pl->n_del++;
    }
    for (i = 0; i < nse; i++) {
        struct mfs_hub_op *op;

        if (se[i].generation > gen || se[i].kind != MFS_STAGE_FILE || same_as_base(bi, &se[i]))
            continue;
        op = &pl->ops[pl->n];
        pl->srcs[pl->n].stage = p->stage;
        pl->srcs[pl->n].path = se[i].path;
        pl->srcs[pl->n].size = se[i].size;
        pl->srcs[pl->n].ra = &pl->ra;
        op->kind = MFS_HUB_OP_ADD;
        op->path = se[i].path;
        op->size = se[i].size;
        op->read = stage_src_read;
        op->read_ctx = &pl->srcs[pl->n];
        /* An untouched remote blob (a rename, a copy linked by a reshard)
         * has known hashes: it is neither hashed nor, when the server
         * holds its LFS object, sent again. */
        if (se[i].unchanged_remote && se[i].remote.size == se[i].size) {
            if (se[i].remote.is_lfs && se[i].remote.lfs_oid[0])
                op->sha256 = se[i].remote.lfs_oid;
            else if (!se[i].remote.is_lfs && se[i].remote.oid[0])
                op->git_sha1 = se[i].remote.oid;
        }
        /* A file copied in whole was hashed as it was written (cache/stage.h,
         * "Hashes"): no pass over its bytes before the LFS batch call. */
        if (!op->sha256 && se[i].sha256[0])
            op->sha256 = se[i].sha256;
        pl->n++;
        pl->n_add++;
    }
out_free_folders:
    free(folders);
    if (rc < 0)
        plan_release(pl);
    return rc;
}

/* "Upload 3 files with modelfs", "Delete 1 file with modelfs", ... */
static void default_message(const struct plan *pl, char *buf, size_t size)
{
    if (pl->n_add && pl->n_del)
        snprintf(buf, size, "Upload %zu file%s and delete %zu with modelfs", pl->n_add,
                 pl->n_add == 1 ? "" : "s", pl->n_del);
    else if (pl->n_del)
        snprintf(buf, size, "Delete %zu file%s with modelfs", pl->n_del,
                 pl->n_del == 1 ? "" : "s");
    else
        snprintf(buf, size, "Upload %zu file%s with modelfs", pl->n_add,
                 pl->n_add == 1 ? "" : "s");
}

/* Copy entries[0..n) (deep) into *outp. */
static int entries_copy(const struct mfs_entry *v, size_t n, struct mfs_entry **outp,
                        struct mfs_err *err)
{
    struct mfs_entry *out;
    size_t i;

    *outp = NULL;
    out = calloc(n ? n : 1, sizeof(*out));
    if (!out)
        return mfs_err_set(err, -ENOMEM, "cannot push: out of memory");
    for (i = 0; i < n; i++) {
        out[i] = v[i];
        out[i].path = strdup(v[i].path ? v[i].path : "");
        if (!out[i].path) {
            mfs_entries_free(out, i);
            return mfs_err_set(err, -ENOMEM, "cannot push: out of memory");
        }
    }
    *outp = out;
    return 0;
}

/* Files of the new tree that the base lacks or holds with other bytes, and
 * base files the new tree lacks. */
static void count_changes(const struct base_index *bi, const struct mfs_entry *nv, size_t nn,
                          size_t *added, size_t *deleted)
{
    struct base_index ni = { 0 };
    size_t i;

    *added = 0;
    *deleted = 0;
    for (i = 0; i < nn; i++) {
        const struct mfs_entry *b;

        if (nv[i].is_dir)
            continue;
        b = base_find(bi, nv[i].path);
        if (!b || b->is_dir || b->size != nv[i].size ||
            strcmp(mfs_entry_content_id(b), mfs_entry_content_id(&nv[i])))
            (*added)++;
    }
    if (base_index_init(&ni, nv, nn, NULL) < 0)
        return;
    for (i = 0; i < bi->n; i++)
        if (!bi->v[i]->is_dir && !base_find(&ni, bi->v[i]->path))
            (*deleted)++;
    free(ni.v);
}

static void record_last(struct mfs_push *p, int rc, const struct mfs_push_result *res,
                        const struct mfs_err *err)
{
    pthread_mutex_lock(&p->mu);
    p->prog.running = false;
    if (rc < 0) {
        p->last = LAST_ERROR;
        memset(&p->last_res, 0, sizeof(p->last_res));
        p->last_res.seconds = res->seconds;
        p->last_err.code = rc;
        snprintf(p->last_err.msg, sizeof(p->last_err.msg), "%s",
                 err && err->msg[0] ? err->msg : strerror(-rc));
    } else {
        p->last = LAST_OK;
        p->last_res = *res;
        p->last_res.entries = NULL;
        p->last_res.n_entries = 0;
        mfs_err_clear(&p->last_err);
    }
    pthread_mutex_unlock(&p->mu);
}

/* Fetch the tree of commit into res and record ref and tree in the cache. */
static int adopt_commit(struct mfs_push *p, const struct base_index *bi, const char *base_commit,
                        const struct mfs_entry *base, size_t nbase, const char *ref,
                        struct mfs_push_result *res, struct mfs_err *err)
{
    struct mfs_hub_repo_info info;
    struct mfs_err cerr = MFS_ERR_INIT;
    int rc;

    if (!res->committed && !strcmp(res->commit, base_commit)) {
        /* Nothing moved: the base is the tree; no request needed. */
        rc = entries_copy(base, nbase, &res->entries, err);
        if (rc < 0)
            return rc;
        res->n_entries = nbase;
    } else {
        rc = mfs_hub_tree(p->hub, p->repo_id, res->commit, &res->entries, &res->n_entries, err);
        if (rc < 0)
            return mfs_err_wrap(err, rc, "pushed, but cannot list commit %.12s (remount to see "
                                "it)", res->commit);
    }
    if (mfs_hub_repo_info(p->hub, p->repo_id, res->commit, &info, &cerr) == 0)
        res->commit_time = info.last_modified;
    if (!res->commit_time)
        res->commit_time = (int64_t)time(NULL);
    if (res->committed)
        count_changes(bi, res->entries, res->n_entries, &res->files_added, &res->files_deleted);
    /* The cache is a memo: a failure to record there costs a request at
     * the next mount, never correctness, so it does not fail the push. */
    if (p->cache) {
        mfs_cache_tree_put(p->cache, &p->repo, res->commit, res->commit_time, res->entries,
                           res->n_entries, &cerr);
        if (ref && *ref)
            mfs_cache_ref_put(p->cache, &p->repo, ref, res->commit, &cerr);
    }
    return 0;
}

int mfs_push_run(struct mfs_push *p, const char *base_commit, const struct mfs_entry *base,
                 size_t nbase, const struct mfs_push_opts *opts, struct mfs_push_result *res,
                 struct mfs_err *err)
{
    struct mfs_hub_commit_opts co = { 0 };
    struct mfs_hub_commit_result cr;
    struct mfs_stage_entry *se = NULL;
    struct base_index bi = { 0 };
    struct plan pl = { 0 };
    char message[512];
    size_t nse = 0;
    uint64_t gen;
    double t0 = mfs_clock_s();
    int rc;

    memset(res, 0, sizeof(*res));
    if (!p || !base_commit || strlen(base_commit) != 40)
        return mfs_err_set(err, -EINVAL, "cannot push: no base commit");
    pthread_mutex_lock(&p->run_mu);
    pthread_mutex_lock(&p->mu);
    memset(&p->prog, 0, sizeof(p->prog));
    p->prog.running = true;
    pthread_mutex_unlock(&p->mu);

    gen = mfs_stage_generation(p->stage);   /* before the list: see the header */
    rc = base_index_init(&bi, base, nbase, err);
    if (rc < 0)
        goto out_record;
    rc = mfs_stage_list(p->stage, &se, &nse, err);
    if (rc < 0) {
        mfs_err_wrap(err, rc, "cannot push '%s'", p->repo_id);
        goto out_free_index;
    }
    rc = plan_build(p, &bi, se, nse, gen, &pl, err);
    if (rc < 0)
        goto out_free_list;
    if (opts && opts->message && *opts->message)
        snprintf(message, sizeof(message), "%s", opts->message);
    else
        default_message(&pl, message, sizeof(message));
    co.summary = message;
    co.description = opts && opts->description ? opts->description : "";
    co.parent_commit = base_commit;
    co.create_pr = opts && opts->create_pr;
    co.progress = on_progress;
    co.progress_ctx = p;
    if (pl.n == 0) {
        /* Only made folders, or what the base already holds: no request. */
        memset(&cr, 0, sizeof(cr));
        snprintf(cr.commit, sizeof(cr.commit), "%s", base_commit);
    } else {
        rc = mfs_hub_commit(p->hub, p->repo_id, p->revision, pl.ops, pl.n, &co, &cr, err);
        if (rc < 0) {
            if (rc == -ESTALE)
                mfs_err_wrap(err, rc, "cannot push to '%s' (%s): the branch moved since "
                             "commit %.12s was mounted; remount and push again", p->repo_id,
                             p->revision, base_commit);
            else
                mfs_err_wrap(err, rc, "cannot push to '%s' (%s)", p->repo_id, p->revision);
            goto out_release_plan;
        }
    }
    res->committed = cr.committed;
    memcpy(res->commit, cr.commit, sizeof(res->commit));
    memcpy(res->commit_url, cr.commit_url, sizeof(res->commit_url));
    memcpy(res->pr_url, cr.pr_url, sizeof(res->pr_url));
    memcpy(res->pr_ref, cr.pr_ref, sizeof(res->pr_ref));
    res->files_uploaded = cr.files_uploaded;
    res->bytes_uploaded = cr.bytes_uploaded;
    /* The Hub holds the changes now: drop them from the stage (keeping
     * any made during the push), then show the new commit. */
    rc = mfs_stage_clear_upto(p->stage, gen, err);
    if (rc < 0) {
        mfs_err_wrap(err, rc, "pushed commit %.12s, but cannot clear the stage", res->commit);
        goto out_release_plan;
    }
    rc = adopt_commit(p, &bi, base_commit, base, nbase,
                      co.create_pr ? res->pr_ref : p->revision, res, err);
out_release_plan:
    plan_release(&pl);
out_free_list:
    mfs_stage_entries_free(se, nse);
out_free_index:
    free(bi.v);
out_record:
    res->seconds = mfs_clock_s() - t0;
    if (rc < 0)
        mfs_push_result_release(res);
    record_last(p, rc, res, err);
    pthread_mutex_unlock(&p->run_mu);
    return rc;
}

int mfs_push_last_json(struct mfs_push *p, struct mfs_buf *out, struct mfs_err *err)
{
    static const char *const names[] = { "none", "ok", "error" };
    cJSON *o;
    char *text;
    int rc = 0;

    o = cJSON_CreateObject();
    if (!o)
        return mfs_err_set(err, -ENOMEM, "cannot show the last push: out of memory");
    pthread_mutex_lock(&p->mu);
    cJSON_AddStringToObject(o, "status", names[p->last]);
    cJSON_AddBoolToObject(o, "committed", p->last_res.committed);
    cJSON_AddStringToObject(o, "commit", p->last_res.commit);
    cJSON_AddStringToObject(o, "commit_url", p->last_res.commit_url);
    cJSON_AddStringToObject(o, "pr_url", p->last_res.pr_url);
    cJSON_AddStringToObject(o, "pr_ref", p->last_res.pr_ref);
    cJSON_AddNumberToObject(o, "files_added", (double)p->last_res.files_added);
    cJSON_AddNumberToObject(o, "files_deleted", (double)p->last_res.files_deleted);
    cJSON_AddNumberToObject(o, "files_uploaded", (double)p->last_res.files_uploaded);
    cJSON_AddNumberToObject(o, "bytes_uploaded", (double)p->last_res.bytes_uploaded);
    cJSON_AddNumberToObject(o, "seconds", p->last_res.seconds);
    if (p->last == LAST_ERROR)
        cJSON_AddStringToObject(o, "error", p->last_err.msg);
    else
        cJSON_AddNullToObject(o, "error");
    pthread_mutex_unlock(&p->mu);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text)
        return mfs_err_set(err, -ENOMEM, "cannot show the last push: out of memory");
    if (mfs_buf_puts(out, text) < 0 || mfs_buf_puts(out, "\n") < 0)
        rc = mfs_err_set(err, -ENOMEM, "cannot show the last push: out of memory");
    free(text);
    return rc;
}
