/*
 * fs/view_write.c - the write half of the mounted tree (fs/view.h): the
 * stage merged over the commit (mfs_view_sync_tree), open files and the
 * stage writers behind them (repo files and tensors/NAME writes into their
 * shard), create/mkdir/unlink/rmdir/rename/chmod, and push and settings
 * (reshard, rebase on the new commit).  Reads, the tree's helpers and
 * .modelfs/ info/status/log are fs/view.c; fs/view_int.h has the structs
 * and the lock order.  Every change is staged while the tree lock is held
 * exclusively, so the tree and the stage agree at every instant.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "cache/stage.h"
#include "fs/push.h"
#include "fs/reshard.h"
#include "fs/view.h"
#include "fs/view_int.h"

/* ---- merging the stage ------------------------------------------------ */

static int cmp_stage_path(const void *a, const void *b)
{
    return strcmp(((const struct mfs_stage_entry *)a)->path,
                  ((const struct mfs_stage_entry *)b)->path);
}

static const struct mfs_stage_entry *stage_find(const struct mfs_stage_entry *se, size_t ns,
                                                const char *path)
{
    struct mfs_stage_entry key;

    if (!se || ns == 0)
        return NULL;
    memset(&key, 0, sizeof(key));
    key.path = (char *)path;
    return bsearch(&key, se, ns, sizeof(key), cmp_stage_path);
}

/* Whether the commit's path is hidden by the stage: an entry at path, or
 * a whiteout (or a file) at one of its folders. */
static bool stage_hides(const struct mfs_stage_entry *se, size_t ns, const char *path)
{
    char buf[PATH_MAXLEN];
    char *slash;

    if (stage_find(se, ns, path))
        return true;
    snprintf(buf, sizeof(buf), "%s", path);
    for (slash = strrchr(buf, '/'); slash; slash = strrchr(buf, '/')) {
        const struct mfs_stage_entry *s;

        *slash = '\0';
        s = stage_find(se, ns, buf);
        if (s && (s->kind == MFS_STAGE_DELETED || s->kind == MFS_STAGE_FILE))
            return true;
    }
    return false;
}

/* The control folder and (when shown) tensors/ are the view's own. */
static bool special_path(const struct mfs_view *view, const char *p)
{
    if (!strcmp(p, MFS_VIEW_CONTROL) || !strncmp(p, MFS_VIEW_CONTROL "/", 9))
        return true;
    return view->tensors_ino &&
           (!strcmp(p, MFS_VIEW_TENSORS) || !strncmp(p, MFS_VIEW_TENSORS "/", 8));
}

/* Make file path of the live tree show base entry e or stage entry s
 * (mfs_view_sync_tree).  Tree lock held exclusively.  -ENOMEM; a folder
 * in the way of a file is left (logged). */
static int sync_file(struct mfs_view *view, const char *path, const struct mfs_entry *e,
                     const struct mfs_stage_entry *s)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup("");
    uint64_t parent;
    uint64_t ino;
    struct node *n;
    int rc = 0;

    if (!dir)
        return -ENOMEM;
    parent = mfs_view_walk_mkdirs(view, dir, &rc);
    free(dir);
    if (!parent) {
        if (rc == -ENOTDIR) {
            mfs_view_logf(view, "'%s': its folder is also a file, left out", path);
            rc = 0;
        }
        return rc;
    }
    ino = mfs_view_child_find(view, parent, slash ? slash + 1 : path);
    if (ino && view->nodes[ino - 1]->kind != NODE_FILE) {
        mfs_view_detach(view, ino);
        ino = 0;
    }
    if (!ino) {
        char *copy = strdup(path);

        if (!copy)
            return -ENOMEM;
        ino = mfs_view_node_add(view, NODE_FILE, copy, parent);
        if (!ino || mfs_view_child_insert(view, parent, ino) < 0)
            return -ENOMEM;
    }
    n = view->nodes[ino - 1];
    n->mark = view->epoch;
    if (e) {
        rc = mfs_view_node_set_remote(n, e);
        mfs_view_node_set_size(n, e->size);
        n->staged = false;
        n->mode = 0;
        n->mtime = 0;
    } else {
        if (s->unchanged_remote)
            rc = mfs_view_node_set_remote(n, &s->remote);
        else
            n->remote = false;
        mfs_view_node_set_size(n, s->size);
        n->staged = true;
        n->mode = s->mode;
        n->mtime = s->mtime;
    }
    return rc;
}

/* Rebuild the live tree (but tensors/ and .modelfs/) from the commit's
 * entries with the stage merged over them, keeping the inode of every path
 * that stays.  No lock held by the caller.  -ENOMEM, the stage's errors. */
int mfs_view_sync_tree(struct mfs_view *view, struct mfs_err *err)
{
    struct mfs_stage_entry *se = NULL;
    uint64_t *gone = NULL;
    size_t n_gone = 0;
    size_t ns = 0;
    size_t i;
    int rc;

    if (!view->stage)
        return 0;
    rc = mfs_stage_list(view->stage, &se, &ns, err);
    if (rc < 0)
        return rc;
    wrlock(view);
    view->epoch++;
    view->nodes[0]->mark = view->epoch;
    if (view->tensors_ino)
        view->nodes[view->tensors_ino - 1]->mark = view->epoch;
    if (view->control_ino)
        view->nodes[view->control_ino - 1]->mark = view->epoch;
    for (i = 0; i < view->n_entries && rc == 0; i++) {
        const struct mfs_entry *e = &view->entries[i];

        if (special_path(view, e->path) || stage_hides(se, ns, e->path))
            continue;
        if (e->is_dir) {
            if (!mfs_view_walk_mkdirs(view, e->path, &rc) && rc == -ENOTDIR)
                rc = 0;
        } else {
            rc = sync_file(view, e->path, e, NULL);
        }
    }
    for (i = 0; i < ns && rc == 0; i++) {
        const struct mfs_stage_entry *s = &se[i];
        uint64_t ino;

        if (!mfs_view_path_safe(s->path) || special_path(view, s->path) ||
            s->kind == MFS_STAGE_DELETED)
            continue;
        if (s->kind == MFS_STAGE_FILE) {
            rc = sync_file(view, s->path, NULL, s);
            continue;
        }
        ino = mfs_view_walk_mkdirs(view, s->path, &rc);
        if (!ino && rc == -ENOTDIR)
            rc = 0;
        if (ino) {
            view->nodes[ino - 1]->staged = true;
            view->nodes[ino - 1]->mode = s->mode;
            view->nodes[ino - 1]->mtime = s->mtime;
        }
    }
    if (rc == 0)
        gone = calloc(view->n_nodes + 1, sizeof(*gone));
    if (rc == 0 && !gone)
        rc = -ENOMEM;
    for (i = 1; rc == 0 && i < view->n_nodes; i++) {
        struct node *n = view->nodes[i];

        if (!n->parent || n->mark == view->epoch ||
            (n->kind != NODE_FILE && n->kind != NODE_DIR))
            continue;
        if (n->wn && !n->wn->orphan)
            continue;                       /* open and not yet committed: stays */
        gone[n_gone++] = i + 1;
    }
    for (i = 0; i < n_gone; i++)
        mfs_view_detach(view, gone[i]);
    view->total_bytes = 0;
    for (i = 0; i < view->n_nodes; i++)
        if (view->nodes[i]->kind == NODE_FILE && view->nodes[i]->parent)
            view->total_bytes += view->nodes[i]->size;
    unlock(view);
    free(gone);
    mfs_stage_entries_free(se, ns);
    if (rc == -ENOMEM)
        return mfs_err_set(err, -ENOMEM, "cannot merge the staged changes: out of memory");
    return rc;
}


/* ---- open, read, write ---------------------------------------------------- */

static struct wnode *wnode_new(void)
{
    struct wnode *wn = calloc(1, sizeof(*wn));

    if (wn)
        pthread_mutex_init(&wn->mu, NULL);
    return wn;
}

/* Open (or share) the writer of file node n for flags.  Tree lock held
 * exclusively.  OUT: *wnp. */
static int open_file_writer(struct mfs_view *view, struct node *n, int flags,
                            struct wnode **wnp, struct mfs_err *err)
{
    struct wnode *wn = n->wn;
    enum mfs_stage_base base;
    int rc = 0;

    if (wn) {
        if (wn->tensor)
            return mfs_err_set(err, -EBUSY, "cannot write '%s': a tensor of it is being "
                               "written", n->path);
        if (flags & O_TRUNC) {
            pthread_mutex_lock(&wn->mu);
            rc = wn->w ? mfs_stage_writer_truncate(wn->w, 0, err)
                       : mfs_err_set(err, -EIO, "cannot write '%s': its writer failed",
                                     n->path);
            if (rc == 0)
                wn->dirty = true;
            pthread_mutex_unlock(&wn->mu);
            if (rc < 0)
                return rc;
        }
        wn->handles++;
        *wnp = wn;
        return 0;
    }
    wn = wnode_new();
    if (!wn)
        return mfs_err_set(err, -ENOMEM, "cannot open '%s': out of memory", n->path);
    if (flags & O_TRUNC)
        base = MFS_STAGE_BASE_EMPTY;
    else if (n->staged)
        base = MFS_STAGE_BASE_STAGED;
    else
        base = MFS_STAGE_BASE_REMOTE;
    rc = mfs_stage_writer_open(view->stage, n->path, base, n->remote ? &n->ent : NULL,
                               n->mode ? n->mode & 07777 : 0644, &wn->w, err);
    if (rc < 0) {
        mfs_view_wnode_free(wn);
        return rc;
    }
    wn->dirty = (flags & O_TRUNC) != 0;   /* the truncation itself is a change */
    wn->handles = 1;
    n->wn = wn;
    *wnp = wn;
    return 0;
}

/* Open a writer of tensor node n's shard, private to handle h.  Tree lock
 * held exclusively. */
static int open_tensor_writer(struct mfs_view *view, struct node *n, struct view_handle *h,
                              struct mfs_err *err)
{
    const struct mfs_ckpt_tensor *t = n->tensor;
    uint64_t shard = mfs_view_walk(view, t->file);
    struct node *s = shard ? view->nodes[shard - 1] : NULL;
    struct wnode *wn;
    int rc;

    if (!s || s->kind != NODE_FILE)
        return mfs_err_set(err, -ENOENT, "cannot write tensor '%s': its file '%s' is gone",
                           t->name, t->file);
    if (s->wn)
        return mfs_err_set(err, -EBUSY, "cannot write tensor '%s': '%s' is open for writing",
                           t->name, t->file);
    wn = wnode_new();
    if (!wn)
        return mfs_err_set(err, -ENOMEM, "cannot open '%s': out of memory", n->path);
    rc = mfs_stage_writer_open(view->stage, s->path,
                               s->staged ? MFS_STAGE_BASE_STAGED : MFS_STAGE_BASE_REMOTE,
                               s->remote ? &s->ent : NULL, s->mode ? s->mode & 07777 : 0644,
                               &wn->w, err);
    if (rc < 0) {
        mfs_view_wnode_free(wn);
        return rc;
    }
    wn->tensor = true;
    wn->handles = 1;
    s->wn = wn;
    h->wn = wn;
    h->shard_ino = shard;
    h->t_off = t->offset;
    h->t_size = t->nbytes;
    return 0;
}

static void handle_free(struct view_handle *h)
{
    if (!h)
        return;
    free(h->cov);
    free(h);
}

int mfs_view_open(struct mfs_view *view, uint64_t ino, int flags, pid_t pid, uint64_t *fh,
                  unsigned *open_flags, struct mfs_err *err)
{
    bool wr = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
    struct view_handle *h;
    struct node *n;
    size_t ctl = 0;
    uint64_t bound = 0;
    int rc = 0;

    *fh = 0;
    *open_flags = 0;
    h = calloc(1, sizeof(*h));
    if (!h)
        return mfs_err_set(err, -ENOMEM, "cannot open inode %llu: out of memory",
                           (unsigned long long)ino);
    h->ino = ino;
    if (wr && view->stage)
        wrlock(view);
    else
        rdlock(view);
    n = node_of(view, ino);
    if (!n) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (n->kind == NODE_DIR) {
        rc = mfs_err_set(err, -EISDIR, "cannot open '%s': is a folder", n->path);
        goto out_unlock;
    }
    if (n->kind == NODE_CTL) {
        ctl = n->ctl;
        *open_flags = MFS_VIEW_DIRECT_IO;
    } else if (wr && !view->stage) {
        rc = mfs_err_set(err, -EROFS, "cannot write '%s': the mount is read-only", n->path);
    } else if (wr && n->kind == NODE_FILE) {
        rc = open_file_writer(view, n, flags, &h->wn, err);
    } else if (wr) {
        rc = open_tensor_writer(view, n, h, err);
    } else if (!view->stage || (n->kind == NODE_FILE && n->remote && !n->staged && !n->wn)) {
        /* Immutable bytes (a commit's blob): the page cache may keep them. */
        *open_flags = MFS_VIEW_KEEP_CACHE;
    }
    if (rc == 0 && n->kind == NODE_TENSOR && !wr)
        bound = n->tensor->offset + n->tensor->nbytes;
out_unlock:
    unlock(view);
    if (rc == 0 && n->kind == NODE_CTL)
        rc = mfs_ctl_open(view->ctl, ctl, flags, pid, &h->ctl, err);
    if (rc < 0) {
        handle_free(h);
        *open_flags = 0;
        return rc;
    }
    *fh = (uint64_t)(uintptr_t)h;
    /* Reading one tensor should fetch about that tensor, not the
     * prefetch window past its end. */
    if (bound && view->fetch && view->read == mfs_view_read_fetch)
        mfs_fetch_stream_bound(view->fetch, *fh, bound);
    return 0;
}

ssize_t mfs_view_read(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                      size_t len, void *buf, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    struct node *n;
    enum node_kind kind;
    uint64_t size = 0;
    uint64_t base = 0;
    uint64_t shard = 0;

    rdlock(view);
    n = node_of(view, ino);
    if (!n) {
        unlock(view);
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    }
    kind = n->kind;
    if (kind == NODE_DIR) {
        unlock(view);
        return mfs_err_set(err, -EISDIR, "cannot read '%s': is a folder", n->path);
    }
    if (kind == NODE_TENSOR) {
        size = n->size;
        base = n->tensor->offset;
        shard = mfs_view_walk(view, n->tensor->file);
    }
    unlock(view);
    switch (kind) {
    case NODE_CTL:
        if (!h || !h->ctl)
            return mfs_err_set(err, -EBADF, "cannot read inode %llu: not open",
                               (unsigned long long)ino);
        return mfs_ctl_read(view->ctl, h->ctl, off, len, buf, err);
    case NODE_FILE:
        return mfs_view_read_node(view, ino, fh, off, len, buf, err);
    default:
        break;
    }
    if (off >= size || len == 0)
        return 0;
    if (len > size - off)
        len = (size_t)(size - off);
    if (!shard)
        return mfs_err_set(err, -EIO, "cannot read tensor at inode %llu: its file is gone",
                           (unsigned long long)ino);
    return mfs_view_read_node(view, shard, fh, base + off, len, buf, err);
}

/* Add [off, end) to h's written ranges (kept sorted and merged). */
static int cover_add(struct view_handle *h, uint64_t off, uint64_t end)
{
    size_t i = 0;
    size_t j;

    while (i < h->n_cov && h->cov[i].end < off)
        i++;
    j = i;
    while (j < h->n_cov && h->cov[j].off <= end) {
        off = h->cov[j].off < off ? h->cov[j].off : off;
        end = h->cov[j].end > end ? h->cov[j].end : end;
        j++;
    }
    if (j == i) {                           /* no overlap: insert */
        if (h->n_cov == h->cap_cov) {
            size_t cap = h->cap_cov ? h->cap_cov * 2 : 8;
            struct range *r = realloc(h->cov, cap * sizeof(*r));

            if (!r)
                return -ENOMEM;
            h->cov = r;
            h->cap_cov = cap;
        }
        memmove(&h->cov[i + 1], &h->cov[i], (h->n_cov - i) * sizeof(*h->cov));
        h->n_cov++;
    } else {                                /* cov[i..j) merge into cov[i] */
        memmove(&h->cov[i + 1], &h->cov[j], (h->n_cov - j) * sizeof(*h->cov));
        h->n_cov -= j - i - 1;
    }
    h->cov[i].off = off;
    h->cov[i].end = end;
    return 0;
}

/* The path of ino for a message (copied into buf). */
static const char *path_of(struct mfs_view *view, uint64_t ino, char *buf, size_t size)
{
    struct node *n;

    rdlock(view);
    n = node_of(view, ino);
    snprintf(buf, size, "%s", n ? n->path : "?");
    unlock(view);
    return buf;
}

ssize_t mfs_view_write(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                       const void *data, size_t len, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    char path[PATH_MAXLEN];
    struct wnode *wn;
    ssize_t r;

    if (h && h->ctl)
        return mfs_ctl_write(view->ctl, h->ctl, data, len, err);
    if (!view->stage) {
        r = mfs_err_set(err, -EROFS, "cannot write '%s': the mount is read-only",
                        path_of(view, ino, path, sizeof(path)));
        goto out_log;
    }
    if (!h || !h->wn || h->dropped) {
        r = mfs_err_set(err, -EBADF, "cannot write '%s': %s",
                        path_of(view, ino, path, sizeof(path)),
                        h && h->dropped ? "the change was dropped" : "not open for writing");
        goto out_log;
    }
    wn = h->wn;
    if (wn->tensor && (off > h->t_size || len > h->t_size - off)) {
        r = mfs_err_set(err, -EINVAL, "cannot write '%s': bytes %llu..%llu are past the "
                        "tensor's %llu bytes", path_of(view, ino, path, sizeof(path)),
                        (unsigned long long)off, (unsigned long long)(off + len),
                        (unsigned long long)h->t_size);
        goto out_log;
    }
    pthread_mutex_lock(&wn->mu);
    if (!wn->w)
        r = mfs_err_set(err, -EIO, "its writer failed earlier");
    else
        r = mfs_stage_writer_write(wn->w, wn->tensor ? h->t_off + off : off, data, len, err);
    if (r >= 0) {
        wn->dirty = true;
        if (wn->tensor && cover_add(h, off, off + len) < 0)
            r = mfs_err_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&wn->mu);
    if (r >= 0)
        return r;
out_log:
    mfs_view_log(view, "write", ino, err);
    return r;
}

void mfs_view_interrupt(struct mfs_view *view, uint64_t ino, uint64_t fh, bool on)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;

    (void)ino;
    if (h && h->ctl)
        mfs_ctl_interrupt(view->ctl, h->ctl, on);
}

/* After a commit of file node ino's writer: show the staged content.  A
 * checkpoint file rebuilds tensors/. */
static void after_commit(struct mfs_view *view, uint64_t ino, uint64_t size)
{
    struct node *n;
    bool ckpt = false;

    wrlock(view);
    n = node_of(view, ino);
    if (n && n->kind == NODE_FILE && n->parent) {
        n->staged = true;
        n->remote = false;
        mfs_view_node_set_size(n, size);
        n->mtime = (int64_t)time(NULL);
        ckpt = mfs_view_is_ckpt_path(n->path);
    }
    unlock(view);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (mfs_view_tensors_rebuild(view, &e) < 0)
            mfs_view_logf(view, "tensors/: %s", e.msg);
    }
}

/* Commit what h's writer holds.  A tensor handle must have written all of
 * its tensor, else its change is dropped (-EINVAL). */
static int handle_commit(struct mfs_view *view, struct view_handle *h, struct mfs_err *err)
{
    struct wnode *wn = h->wn;
    uint64_t target = h->shard_ino ? h->shard_ino : h->ino;
    uint64_t size = 0;
    bool did = false;
    int rc = 0;

    if (!wn || h->dropped)
        return 0;
    pthread_mutex_lock(&wn->mu);
    if (wn->tensor && wn->dirty &&
        !(h->n_cov == 1 && h->cov[0].off == 0 && h->cov[0].end == h->t_size)) {
        char path[PATH_MAXLEN];

        h->dropped = true;
        mfs_stage_writer_close(&wn->w);
        pthread_mutex_unlock(&wn->mu);
        rc = mfs_err_set(err, -EINVAL, "cannot write '%s': a tensor is written whole, all "
                         "its %llu bytes from offset 0; the change is dropped",
                         path_of(view, h->ino, path, sizeof(path)),
                         (unsigned long long)h->t_size);
        wrlock(view);
        if (node_of(view, target) && view->nodes[target - 1]->wn == wn)
            view->nodes[target - 1]->wn = NULL;
        wn->handles = 0;
        unlock(view);
        return rc;
    }
    if (wn->w && wn->dirty && !wn->orphan) {
        rc = mfs_stage_writer_commit(wn->w, err);
        if (rc == 0) {
            wn->dirty = false;
            wn->committed = true;
            did = true;
            size = mfs_stage_writer_size(wn->w);
        }
    }
    pthread_mutex_unlock(&wn->mu);
    if (did)
        after_commit(view, target, size);
    return rc;
}

int mfs_view_flush(struct mfs_view *view, uint64_t ino, uint64_t fh, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    int rc;

    if (!h || !h->wn)
        return 0;
    rc = handle_commit(view, h, err);
    if (rc < 0)
        mfs_view_log(view, "close", ino, err);
    return rc;
}

static bool dirty_writer(struct mfs_view *view, char *buf, size_t size);

int mfs_view_fsync(struct mfs_view *view, uint64_t ino, uint64_t fh, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    char busy[PATH_MAXLEN];
    int rc;

    if (!h || !h->wn)
        return 0;
    rc = mfs_view_flush(view, ino, fh, err);
    if (rc < 0 || !view->push)
        return rc;
    /* This file is durable now.  Another one still being written would
     * fail the push (EBUSY), which no program expects of fsync: the push
     * waits for the next sync, fsync or umount instead. */
    if (dirty_writer(view, busy, sizeof(busy))) {
        mfs_view_logf(view, "fsync: push deferred: '%s' is open for writing", busy);
        return 0;
    }
    rc = mfs_view_push(view, NULL, NULL, err);
    /* fsync(2) knows EIO for "not written out"; ESTALE (the branch moved)
     * would read "Stale file handle", as if the file were gone.  The
     * reason, in .modelfs/log, keeps the cause. */
    if (rc < 0 && rc != -EROFS && rc != -ENOMEM && rc != -ENOSPC)
        rc = -EIO;
    return rc;
}

void mfs_view_release(struct mfs_view *view, uint64_t ino, uint64_t fh)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    struct mfs_err err = MFS_ERR_INIT;
    struct wnode *wn;
    bool last = false;

    if (!h)
        return;
    if (h->ctl) {
        mfs_ctl_release(view->ctl, h->ctl);
    } else if (h->wn) {
        wn = h->wn;
        if (handle_commit(view, h, &err) < 0)
            mfs_view_log(view, "close", ino, &err);
        wrlock(view);
        if (wn->handles > 0)
            wn->handles--;
        last = wn->handles == 0;
        if (last) {
            uint64_t target = h->shard_ino ? h->shard_ino : h->ino;
            struct node *n = node_of(view, target);

            if (n && n->wn == wn)
                n->wn = NULL;
        }
        unlock(view);
        if (last)
            mfs_view_wnode_free(wn);
    } else if (view->fetch && view->read == mfs_view_read_fetch) {
        mfs_fetch_stream_end(view->fetch, fh);
    }
    handle_free(h);
}

int mfs_view_truncate(struct mfs_view *view, uint64_t ino, uint64_t size, struct mfs_err *err)
{
    struct mfs_stage_writer *w = NULL;
    struct node *n;
    bool ckpt = false;
    int rc = 0;

    wrlock(view);
    n = node_of(view, ino);
    if (!n) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (n->kind == NODE_CTL)
        goto out_unlock;
    if (n->kind == NODE_DIR) {
        rc = mfs_err_set(err, -EISDIR, "cannot truncate '%s': is a folder", n->path);
        goto out_unlock;
    }
    if (!view->stage) {
        rc = mfs_err_set(err, -EROFS, "cannot truncate '%s': the mount is read-only", n->path);
        goto out_unlock;
    }
    if (n->kind == NODE_TENSOR) {
        if (size != n->size)
            rc = mfs_err_set(err, -EINVAL, "cannot truncate '%s' to %llu bytes: a tensor "
                             "keeps its size (%llu bytes)", n->path,
                             (unsigned long long)size, (unsigned long long)n->size);
        goto out_unlock;
    }
    if (n->wn) {
        pthread_mutex_lock(&n->wn->mu);
        rc = n->wn->w ? mfs_stage_writer_truncate(n->wn->w, size, err)
                      : mfs_err_set(err, -EIO, "cannot truncate '%s': its writer failed",
                                    n->path);
        if (rc == 0)
            n->wn->dirty = true;
        pthread_mutex_unlock(&n->wn->mu);
        goto out_unlock;
    }
    if (size == mfs_view_node_size(n))
        goto out_unlock;
    /* Not open for writing: stage the new size now (truncate(1)). */
    rc = mfs_stage_writer_open(view->stage, n->path,
                               size == 0 ? MFS_STAGE_BASE_EMPTY
                                         : n->staged ? MFS_STAGE_BASE_STAGED
                                                     : MFS_STAGE_BASE_REMOTE,
                               n->remote ? &n->ent : NULL, n->mode ? n->mode & 07777 : 0644,
                               &w, err);
    if (rc == 0)
        rc = mfs_stage_writer_truncate(w, size, err);
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, err);
    mfs_stage_writer_close(&w);
    if (rc == 0) {
        n->staged = true;
        n->remote = false;
        mfs_view_node_set_size(n, size);
        n->mtime = (int64_t)time(NULL);
        ckpt = mfs_view_is_ckpt_path(n->path);
    }
out_unlock:
    unlock(view);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (mfs_view_tensors_rebuild(view, &e) < 0)
            mfs_view_logf(view, "tensors/: %s", e.msg);
    }
    return rc;
}

/* ---- changing the tree ------------------------------------------------------ */

bool mfs_view_writable(const struct mfs_view *view)
{
    return view->stage != NULL;
}

/* Whether op may make or remove name in folder dir.  Tree lock held. */
static int dir_check(struct mfs_view *view, uint64_t dir, const char *op, const char *name,
                     struct mfs_err *err)
{
    struct node *d = node_of(view, dir);

    if (!view->stage)
        return mfs_err_set(err, -EROFS, "cannot %s '%s': the mount is read-only", op, name);
    if (!d)
        return mfs_err_set(err, -ENOENT, "cannot %s '%s': no folder %llu", op, name,
                           (unsigned long long)dir);
    if (d->kind != NODE_DIR)
        return mfs_err_set(err, -ENOTDIR, "cannot %s '%s': '%s' is not a folder", op, name,
                           d->path);
    if (!d->parent)
        return mfs_err_set(err, -ENOENT, "cannot %s '%s': its folder was removed", op, name);
    if (dir == view->control_ino)
        return mfs_err_set(err, -EACCES, "cannot %s '%s/%s': the control folder has only its "
                           "own files", op, MFS_VIEW_CONTROL, name);
    if (dir == view->tensors_ino)
        return mfs_err_set(err, -EPERM, "cannot %s '%s/%s': tensors/ shows the checkpoint's "
                           "tensors; write a tensor's bytes into its file instead", op,
                           MFS_VIEW_TENSORS, name);
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
        return mfs_err_set(err, -EINVAL, "cannot %s '%s': not a file name", op, name);
    if (strlen(name) > 255 || strlen(d->path) + strlen(name) + 2 > PATH_MAXLEN)
        return mfs_err_set(err, -ENAMETOOLONG, "cannot %s '%s': name too long", op, name);
    return 0;
}

/* Whether name, made in folder dir_path, is a path the Hub takes: the
 * hub refuses control characters, backslashes (a folder separator to
 * Windows clients), bytes that are not UTF-8, a ".git" component and paths
 * of HUB_PATH_MAX bytes or more (docs/hub-api.md section 2; hub/upload.c
 * and tools/hubd check the same).  Refused here, at once, rather than
 * staged and then failing every push until the file is renamed. */
#define HUB_PATH_MAX 1024                   /* bytes of a repo path, as hub/upload.c */
static int name_check(const char *dir_path, const char *name, const char *op,
                      struct mfs_err *err)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)name;
    utf8proc_ssize_t left = (utf8proc_ssize_t)strlen(name);
    size_t dlen = strlen(dir_path);

    if (!strcmp(name, ".git"))
        return mfs_err_set(err, -EINVAL, "cannot %s '%s': the Hub refuses a '.git' folder "
                           "or file", op, name);
    while (left > 0) {
        utf8proc_int32_t cp = -1;
        utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);

        if (n <= 0 || cp < 0)
            return mfs_err_set(err, -EINVAL, "cannot %s '%s': the name is not UTF-8, which "
                               "the Hub requires", op, name);
        if (cp < 0x20 || cp == 0x7f || cp == '\\')
            return mfs_err_set(err, -EINVAL, "cannot %s '%s': the Hub refuses control "
                               "characters and backslashes in names", op, name);
        p += n;
        left -= n;
    }
    if ((dlen ? dlen + 1 : 0) + strlen(name) >= HUB_PATH_MAX)
        return mfs_err_set(err, -ENAMETOOLONG, "cannot %s '%s': the Hub takes paths of at "
                           "most %d bytes", op, name, HUB_PATH_MAX - 1);
    return 0;
}

/* name_check for what a folder's rename moves: no path below s may reach
 * HUB_PATH_MAX bytes once s's path is new_path.  Tree lock held. */
static int subtree_len_check(struct mfs_view *view, const struct node *s, const char *new_path,
                             struct mfs_err *err)
{
    size_t old_len = strlen(s->path);
    size_t new_len = strlen(new_path);
    size_t i;

    for (i = 0; new_len > old_len && i < view->n_nodes; i++) {
        const struct node *nd = view->nodes[i];

        if (!nd->parent || strncmp(nd->path, s->path, old_len) || nd->path[old_len] != '/')
            continue;
        if (strlen(nd->path) - old_len + new_len >= HUB_PATH_MAX)
            return mfs_err_set(err, -ENAMETOOLONG, "cannot rename '%s' to '%s': '%s' would "
                               "have a path longer than the Hub's %d bytes", s->path, new_path,
                               nd->path + old_len + 1, HUB_PATH_MAX - 1);
    }
    return 0;
}

int mfs_view_create(struct mfs_view *view, uint64_t parent, const char *name, uint32_t mode,
                    int flags, pid_t pid, struct mfs_view_attr *attr, uint64_t *fh,
                    unsigned *open_flags, struct mfs_err *err)
{
    struct view_handle *h = NULL;
    struct wnode *wn = NULL;
    char *path = NULL;
    struct node *n;
    uint64_t ino;
    int rc;

    *fh = 0;
    *open_flags = 0;
    wrlock(view);
    rc = dir_check(view, parent, "create", name, err);
    if (rc < 0)
        goto out_unlock;
    ino = mfs_view_child_find(view, parent, name);
    if (ino) {
        unlock(view);
        if (flags & O_EXCL)
            return mfs_err_set(err, -EEXIST, "cannot create '%s': it exists", name);
        rc = mfs_view_open(view, ino, flags, pid, fh, open_flags, err);
        if (rc == 0)
            rc = mfs_view_lookup(view, parent, name, attr, err);
        return rc;
    }
    rc = name_check(view->nodes[parent - 1]->path, name, "create", err);
    if (rc < 0)
        goto out_unlock;
    path = mfs_view_join(view->nodes[parent - 1]->path, name);
    h = calloc(1, sizeof(*h));
    wn = wnode_new();
    if (!path || !h || !wn) {
        rc = mfs_err_set(err, -ENOMEM, "cannot create '%s': out of memory", name);
        goto out_free;
    }
    rc = mfs_stage_writer_open(view->stage, path, MFS_STAGE_BASE_EMPTY, NULL, mode & 07777,
                               &wn->w, err);
    if (rc == 0)
        rc = mfs_stage_writer_commit(wn->w, err);    /* the empty file is durable */
    if (rc < 0)
        goto out_free;
    ino = mfs_view_node_add(view, NODE_FILE, path, parent);
    path = NULL;                            /* taken over, even on failure */
    if (!ino || mfs_view_child_insert(view, parent, ino) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot create '%s': out of memory", name);
        goto out_free;
    }
    n = view->nodes[ino - 1];
    n->staged = true;
    n->mode = mode & 07777;
    n->mtime = (int64_t)time(NULL);
    n->wn = wn;
    wn->handles = 1;
    wn->committed = true;
    h->ino = ino;
    h->wn = wn;
    atomic_fetch_add(&n->lookups, 1);
    mfs_view_fill_attr(view, n, ino, attr);
    unlock(view);
    *fh = (uint64_t)(uintptr_t)h;
    return 0;

out_free:
    mfs_view_wnode_free(wn);
    handle_free(h);
    free(path);
out_unlock:
    unlock(view);
    return rc;
}

int mfs_view_mkdir(struct mfs_view *view, uint64_t parent, const char *name, uint32_t mode,
                   struct mfs_view_attr *attr, struct mfs_err *err)
{
    struct mfs_stage_change ch;
    char *path = NULL;
    struct node *n;
    uint64_t ino;
    int rc;

    wrlock(view);
    rc = dir_check(view, parent, "mkdir", name, err);
    if (rc < 0)
        goto out_unlock;
    if (mfs_view_child_find(view, parent, name)) {
        rc = mfs_err_set(err, -EEXIST, "cannot mkdir '%s': it exists", name);
        goto out_unlock;
    }
    rc = name_check(view->nodes[parent - 1]->path, name, "mkdir", err);
    if (rc < 0)
        goto out_unlock;
    path = mfs_view_join(view->nodes[parent - 1]->path, name);
    if (!path) {
        rc = mfs_err_set(err, -ENOMEM, "cannot mkdir '%s': out of memory", name);
        goto out_unlock;
    }
    memset(&ch, 0, sizeof(ch));
    ch.op = MFS_STAGE_OP_MKDIR;
    ch.path = path;
    ch.mode = mode & 07777;
    rc = mfs_stage_apply(view->stage, &ch, 1, err);
    if (rc < 0) {
        free(path);
        goto out_unlock;
    }
    ino = mfs_view_node_add(view, NODE_DIR, path, parent);
    if (!ino || mfs_view_child_insert(view, parent, ino) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot mkdir '%s': out of memory", name);
        goto out_unlock;
    }
    n = view->nodes[ino - 1];
    n->staged = true;
    n->mode = mode & 07777;
    n->mtime = (int64_t)time(NULL);
    atomic_fetch_add(&n->lookups, 1);
    mfs_view_fill_attr(view, n, ino, attr);
out_unlock:
    unlock(view);
    return rc;
}

/* Remove file or folder name of parent (rmdir: dir true). */
static int remove_name(struct mfs_view *view, uint64_t parent, const char *name, bool dir,
                       struct mfs_err *err)
{
    const char *op = dir ? "rmdir" : "unlink";
    struct mfs_stage_change ch;
    struct node *n;
    uint64_t ino;
    bool ckpt = false;
    int rc;

    wrlock(view);
    rc = dir_check(view, parent, op, name, err);
    if (rc < 0)
        goto out_unlock;
    ino = mfs_view_child_find(view, parent, name);
    if (!ino) {
        rc = mfs_err_set(err, -ENOENT, "cannot %s '%s': no such file", op, name);
        goto out_unlock;
    }
    n = view->nodes[ino - 1];
    if (ino == view->tensors_ino || ino == view->control_ino) {
        rc = mfs_err_set(err, -EBUSY, "cannot %s '%s': the mount's own folder", op, n->path);
        goto out_unlock;
    }
    if (dir && n->kind != NODE_DIR) {
        rc = mfs_err_set(err, -ENOTDIR, "cannot rmdir '%s': not a folder", n->path);
        goto out_unlock;
    }
    if (!dir && n->kind == NODE_DIR) {
        rc = mfs_err_set(err, -EISDIR, "cannot unlink '%s': is a folder", n->path);
        goto out_unlock;
    }
    if (dir && n->n_children) {
        rc = mfs_err_set(err, -ENOTEMPTY, "cannot rmdir '%s': not empty", n->path);
        goto out_unlock;
    }
    memset(&ch, 0, sizeof(ch));
    ch.op = mfs_view_base_has(view, n->path) ? MFS_STAGE_OP_WHITEOUT : MFS_STAGE_OP_REMOVE;
    ch.path = n->path;
    rc = mfs_stage_apply(view->stage, &ch, 1, err);
    if (rc == -ENOENT && ch.op == MFS_STAGE_OP_REMOVE) {
        mfs_err_clear(err);                 /* a folder implied by its files */
        rc = 0;
    }
    if (rc < 0)
        goto out_unlock;
    ckpt = !dir && mfs_view_is_ckpt_path(n->path);
    mfs_view_detach(view, ino);
    view->total_bytes -= dir || view->total_bytes < n->size ? 0 : n->size;
out_unlock:
    unlock(view);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (mfs_view_tensors_rebuild(view, &e) < 0)
            mfs_view_logf(view, "tensors/: %s", e.msg);
    }
    return rc;
}

int mfs_view_unlink(struct mfs_view *view, uint64_t parent, const char *name,
                    struct mfs_err *err)
{
    return remove_name(view, parent, name, false, err);
}

int mfs_view_rmdir(struct mfs_view *view, uint64_t parent, const char *name,
                   struct mfs_err *err)
{
    return remove_name(view, parent, name, true, err);
}

/* Nodes of the subtree at ino, folders before their contents. */
struct subtree {
    uint64_t *ino;
    size_t n;
    size_t cap;
};

static int subtree_collect(struct mfs_view *view, uint64_t ino, struct subtree *st)
{
    struct node *n = view->nodes[ino - 1];
    size_t i;

    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        uint64_t *p = realloc(st->ino, cap * sizeof(*p));

        if (!p)
            return -ENOMEM;
        st->ino = p;
        st->cap = cap;
    }
    st->ino[st->n++] = ino;
    for (i = 0; n->kind == NODE_DIR && i < n->n_children; i++)
        if (subtree_collect(view, n->children[i], st) < 0)
            return -ENOMEM;
    return 0;
}

/* The path a subtree node gets when its top moves from old_top to
 * new_top. */
static char *moved_path(const char *path, size_t old_len, const char *new_top)
{
    struct mfs_buf b = MFS_BUF_INIT;

    if (mfs_buf_printf(&b, "%s%s", new_top, path + old_len) < 0)
        return NULL;
    return mfs_buf_steal(&b);
}

/* Stage and show a rename of node src (in the tree) to new_path under
 * folder newparent.  Tree lock held exclusively; dst (0: none) is the node
 * replaced. */
static int rename_locked(struct mfs_view *view, uint64_t src, uint64_t newparent,
                         const char *new_path, uint64_t dst, struct mfs_err *err)
{
    struct subtree st = { NULL, 0, 0 };
    struct mfs_stage_change *ch = NULL;
    char **newp = NULL;
    size_t old_len = strlen(view->nodes[src - 1]->path);
    size_t nch = 0;
    size_t i;
    int rc;

    if (subtree_collect(view, src, &st) < 0)
        goto out_nomem;
    ch = calloc(3 * st.n + 1, sizeof(*ch));
    newp = calloc(st.n, sizeof(*newp));
    if (!ch || !newp)
        goto out_nomem;
    for (i = 0; i < st.n; i++) {
        struct node *n = view->nodes[st.ino[i] - 1];

        newp[i] = moved_path(n->path, old_len, new_path);
        if (!newp[i])
            goto out_nomem;
        if (n->wn && n->wn->tensor) {
            rc = mfs_err_set(err, -EBUSY, "cannot rename '%s': a tensor of it is being written",
                             n->path);
            goto out_free;
        }
        /* An open writer commits to its path: commit it now, and reopen
         * it at the new path once the rename is staged. */
        if (n->wn) {
            pthread_mutex_lock(&n->wn->mu);
            rc = 0;
            if (n->wn->w && n->wn->dirty) {
                rc = mfs_stage_writer_commit(n->wn->w, err);
                if (rc == 0) {
                    n->wn->dirty = false;
                    n->staged = true;
                    n->remote = false;
                    mfs_view_node_set_size(n, mfs_stage_writer_size(n->wn->w));
                }
            }
            pthread_mutex_unlock(&n->wn->mu);
            if (rc < 0)
                goto out_free;
        }
    }
    for (i = 0; i < st.n; i++) {                /* the new paths */
        struct node *n = view->nodes[st.ino[i] - 1];
        struct mfs_stage_change *c = &ch[nch++];

        c->path = newp[i];
        if (n->kind == NODE_DIR) {
            c->op = MFS_STAGE_OP_MKDIR;
            c->mode = n->mode ? n->mode : 0755;
        } else if (n->staged) {
            c->op = MFS_STAGE_OP_MOVE;
            c->from = n->path;
        } else {
            c->op = MFS_STAGE_OP_REMOTE;
            c->remote = &n->ent;
            c->mode = n->mode ? n->mode : 0644;
        }
    }
    for (i = st.n; i > 0; i--) {                /* the old ones, contents first */
        struct node *n = view->nodes[st.ino[i - 1] - 1];

        if (mfs_view_base_has(view, n->path)) {
            ch[nch].op = MFS_STAGE_OP_WHITEOUT;
            ch[nch++].path = n->path;
        } else if (n->kind == NODE_DIR && n->staged) {
            ch[nch].op = MFS_STAGE_OP_REMOVE;
            ch[nch++].path = n->path;
        }
    }
    rc = mfs_stage_apply(view->stage, ch, nch, err);
    if (rc < 0)
        goto out_free;
    if (dst)
        mfs_view_detach(view, dst);
    mfs_view_child_remove(view, view->nodes[src - 1]->parent, src);
    for (i = 0; i < st.n; i++) {
        struct node *n = view->nodes[st.ino[i] - 1];

        mfs_view_bury(view, n->path);
        mfs_view_node_set_path(n, newp[i]);
        newp[i] = NULL;
        n->staged = true;                   /* the stage holds it now (MOVE, REMOTE, MKDIR) */
        if (n->wn && n->wn->w) {
            struct mfs_err e = MFS_ERR_INIT;

            pthread_mutex_lock(&n->wn->mu);
            mfs_stage_writer_close(&n->wn->w);
            if (mfs_stage_writer_open(view->stage, n->path, MFS_STAGE_BASE_STAGED, NULL,
                                      n->mode ? n->mode & 07777 : 0644, &n->wn->w, &e) < 0)
                mfs_view_logf(view, "rename '%s': cannot reopen its writer: %s", n->path, e.msg);
            pthread_mutex_unlock(&n->wn->mu);
        }
    }
    /* The node keeps its inode: the kernel moved its dentry already. */
    if (mfs_view_child_insert(view, newparent, src) < 0)
        goto out_nomem;
    rc = 0;
    goto out_free;

out_nomem:
    rc = mfs_err_set(err, -ENOMEM, "cannot rename: out of memory");
out_free:
    for (i = 0; newp && i < st.n; i++)
        free(newp[i]);
    free(newp);
    free(ch);
    free(st.ino);
    return rc;
}

int mfs_view_rename(struct mfs_view *view, uint64_t parent, const char *name,
                    uint64_t newparent, const char *newname, unsigned flags,
                    struct mfs_err *err)
{
    struct node *s;
    uint64_t src;
    uint64_t dst;
    uint64_t up;
    char *new_path = NULL;
    bool ckpt = false;
    int rc;

    if (flags & MFS_VIEW_RENAME_EXCHANGE)
        return mfs_err_set(err, -EINVAL, "cannot exchange '%s' and '%s': not supported", name,
                           newname);
    wrlock(view);
    rc = dir_check(view, parent, "rename", name, err);
    if (rc == 0)
        rc = dir_check(view, newparent, "rename", newname, err);
    if (rc < 0)
        goto out_unlock;
    src = mfs_view_child_find(view, parent, name);
    if (!src) {
        rc = mfs_err_set(err, -ENOENT, "cannot rename '%s': no such file", name);
        goto out_unlock;
    }
    s = view->nodes[src - 1];
    if (src == view->tensors_ino || src == view->control_ino) {
        rc = mfs_err_set(err, -EBUSY, "cannot rename '%s': the mount's own folder", s->path);
        goto out_unlock;
    }
    dst = mfs_view_child_find(view, newparent, newname);
    if (dst == src)
        goto out_unlock;
    if (!dst) {
        rc = name_check(view->nodes[newparent - 1]->path, newname, "rename", err);
        if (rc < 0)
            goto out_unlock;
    }
    if (dst) {
        struct node *d = view->nodes[dst - 1];

        if (flags & MFS_VIEW_RENAME_NOREPLACE)
            rc = mfs_err_set(err, -EEXIST, "cannot rename '%s' to '%s': it exists", s->path,
                             d->path);
        else if (dst == view->tensors_ino || dst == view->control_ino)
            rc = mfs_err_set(err, -EBUSY, "cannot replace '%s': the mount's own folder",
                             d->path);
        else if (s->kind == NODE_DIR && d->kind != NODE_DIR)
            rc = mfs_err_set(err, -ENOTDIR, "cannot rename folder '%s' over file '%s'",
                             s->path, d->path);
        else if (s->kind != NODE_DIR && d->kind == NODE_DIR)
            rc = mfs_err_set(err, -EISDIR, "cannot rename file '%s' over folder '%s'",
                             s->path, d->path);
        else if (d->kind == NODE_DIR && d->n_children)
            rc = mfs_err_set(err, -ENOTEMPTY, "cannot rename '%s' over '%s': not empty",
                             s->path, d->path);
        if (rc < 0)
            goto out_unlock;
    }
    for (up = newparent; s->kind == NODE_DIR && up != MFS_VIEW_ROOT_INO && up;
         up = view->nodes[up - 1]->parent) {
        if (up == src) {
            rc = mfs_err_set(err, -EINVAL, "cannot move '%s' into itself", s->path);
            goto out_unlock;
        }
    }
    new_path = mfs_view_join(view->nodes[newparent - 1]->path, newname);
    if (!new_path) {
        rc = mfs_err_set(err, -ENOMEM, "cannot rename '%s': out of memory", s->path);
        goto out_unlock;
    }
    if (s->kind == NODE_DIR) {
        rc = subtree_len_check(view, s, new_path, err);
        if (rc < 0)
            goto out_unlock;
    }
    ckpt = mfs_view_is_ckpt_path(s->path) || mfs_view_is_ckpt_path(new_path);
    rc = rename_locked(view, src, newparent, new_path, dst, err);
    if (rc < 0)
        ckpt = false;
out_unlock:
    unlock(view);
    free(new_path);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (mfs_view_tensors_rebuild(view, &e) < 0)
            mfs_view_logf(view, "tensors/: %s", e.msg);
    }
    return rc;
}

int mfs_view_chmod(struct mfs_view *view, uint64_t ino, uint32_t mode, struct mfs_err *err)
{
    struct mfs_stage_change ch;
    struct node *n;
    int rc = 0;

    wrlock(view);
    n = node_of(view, ino);
    if (!n) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (!view->stage) {
        rc = mfs_err_set(err, -EROFS, "cannot chmod '%s': the mount is read-only", n->path);
        goto out_unlock;
    }
    if (n->kind == NODE_CTL || n->kind == NODE_TENSOR || ino == MFS_VIEW_ROOT_INO ||
        ino == view->tensors_ino || ino == view->control_ino) {
        rc = mfs_err_set(err, -EPERM, "cannot chmod '%s': the mount's own file", n->path);
        goto out_unlock;
    }
    /* Only staged entries keep a mode (the Hub stores none); a repo file's
     * mode lives as long as the mount. */
    if (n->staged) {
        memset(&ch, 0, sizeof(ch));
        ch.op = MFS_STAGE_OP_CHMOD;
        ch.path = n->path;
        ch.mode = mode & 07777;
        rc = mfs_stage_apply(view->stage, &ch, 1, err);
        if (rc == -ENOENT && n->kind == NODE_DIR) {
            mfs_err_clear(err);
            rc = 0;
        }
    }
    if (rc == 0)
        n->mode = mode & 07777;
out_unlock:
    unlock(view);
    return rc;
}

/* ---- push, settings ------------------------------------------------------------- */

void mfs_view_settings_get(struct mfs_view *view, struct mfs_view_settings *s)
{
    pthread_mutex_lock(&view->settings_mu);
    *s = view->settings;
    pthread_mutex_unlock(&view->settings_mu);
}

/* Commit every open writer's bytes (their handles stay open). */
static int commit_writers(struct mfs_view *view, struct mfs_err *err)
{
    uint64_t *inos = NULL;
    uint64_t *sizes = NULL;
    size_t n = 0;
    size_t i;
    int rc = 0;

    rdlock(view);
    inos = calloc(view->n_nodes + 1, sizeof(*inos));
    sizes = calloc(view->n_nodes + 1, sizeof(*sizes));
    if (!inos || !sizes)
        rc = mfs_err_set(err, -ENOMEM, "cannot commit open files: out of memory");
    for (i = 0; rc == 0 && i < view->n_nodes; i++) {
        struct node *nd = view->nodes[i];
        struct wnode *wn = nd->wn;

        if (nd->kind != NODE_FILE || !wn || wn->tensor)
            continue;
        pthread_mutex_lock(&wn->mu);
        if (wn->w && wn->dirty && !wn->orphan) {
            rc = mfs_stage_writer_commit(wn->w, err);
            if (rc == 0) {
                wn->dirty = false;
                wn->committed = true;
                inos[n] = i + 1;
                sizes[n++] = mfs_stage_writer_size(wn->w);
            }
        }
        pthread_mutex_unlock(&wn->mu);
    }
    unlock(view);
    for (i = 0; i < n; i++)
        after_commit(view, inos[i], sizes[i]);
    free(inos);
    free(sizes);
    return rc;
}

/* Whether some file has writes not yet committed (open, written, neither
 * closed nor fsync'ed); its path goes into buf.  A push must not publish
 * such a file: what is committed of it is the state before a copy that is
 * still running, so the Hub would get a truncated or stale file. */
static bool dirty_writer(struct mfs_view *view, char *buf, size_t size)
{
    bool found = false;
    size_t i;

    rdlock(view);
    for (i = 0; !found && i < view->n_nodes; i++) {
        struct node *nd = view->nodes[i];
        struct wnode *wn = nd->wn;

        if (nd->kind != NODE_FILE || !wn || wn->tensor)
            continue;
        pthread_mutex_lock(&wn->mu);
        found = wn->w && wn->dirty && !wn->orphan;
        pthread_mutex_unlock(&wn->mu);
        if (found)
            snprintf(buf, size, "%s", nd->path);
    }
    unlock(view);
    return found;
}

/* Reshard the merged tree's checkpoints (fs/reshard.h); when something was
 * rewritten, show it.  push_mu held. */
static int reshard(struct mfs_view *view, uint64_t max_shard_size, bool force,
                   struct mfs_err *err)
{
    struct mfs_reshard_file *files = NULL;
    struct mfs_entry *remotes = NULL;
    struct mfs_reshard_result res;
    struct mfs_reshard_in in;
    size_t n = 0;
    size_t i;
    int rc = 0;

    memset(&res, 0, sizeof(res));
    rdlock(view);
    files = calloc(view->n_nodes + 1, sizeof(*files));
    remotes = calloc(view->n_nodes + 1, sizeof(*remotes));
    for (i = 0; files && remotes && i < view->n_nodes; i++) {
        struct node *nd = view->nodes[i];

        if (nd->kind != NODE_FILE || !nd->parent)
            continue;
        files[n].path = strdup(nd->path);
        files[n].size = mfs_view_node_size(nd);
        if (nd->remote && !nd->staged) {
            remotes[n] = nd->ent;
            remotes[n].path = strdup(nd->ent.path);
            files[n].remote = &remotes[n];
            if (!remotes[n].path)
                rc = -ENOMEM;
        }
        n++;
        if (!files[n - 1].path)
            rc = -ENOMEM;
    }
    unlock(view);
    if (!files || !remotes || rc < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot reshard: out of memory");
        goto out_free;
    }
    in.files = files;
    in.n_files = n;
    in.read = mfs_view_ckpt_read;
    in.read_ctx = view;
    rc = mfs_reshard_run(view->stage, &in, max_shard_size, force, &res, err);
    if (rc == -ENOSYS) {
        mfs_view_logf(view, "reshard: not available, checkpoint left as written");
        mfs_err_clear(err);
        rc = 0;
    }
    if (rc < 0) {
        mfs_view_logf(view, "reshard: %s", err && err->msg[0] ? err->msg : "failed");
        goto out_free;
    }
    if (res.n_checkpoints > 0) {
        rc = mfs_view_sync_tree(view, err);
        if (rc == 0)
            rc = mfs_view_tensors_rebuild(view, err);
    }
out_free:
    for (i = 0; files && i < n; i++)
        free((char *)files[i].path);
    for (i = 0; remotes && i < n; i++)
        free(remotes[i].path);
    free(files);
    free(remotes);
    return rc;
}

int mfs_view_settings_set(struct mfs_view *view, const struct mfs_view_settings *s,
                          struct mfs_err *err)
{
    bool changed;
    int rc = 0;

    if (!view->stage)
        return mfs_err_set(err, -EROFS, "cannot change the settings: the mount is read-only");
    if (s->max_shard_size == 0)
        return mfs_err_set(err, -EINVAL, "bad max_shard_size 0: want a size such as 5GB");
    pthread_mutex_lock(&view->push_mu);
    pthread_mutex_lock(&view->settings_mu);
    changed = s->max_shard_size != view->settings.max_shard_size;
    view->settings = *s;
    view->settings.commit_message[sizeof(view->settings.commit_message) - 1] = '\0';
    view->settings.commit_description[sizeof(view->settings.commit_description) - 1] = '\0';
    pthread_mutex_unlock(&view->settings_mu);
    if (changed) {
        rc = commit_writers(view, err);
        if (rc == 0)
            rc = reshard(view, s->max_shard_size, true, err);
    }
    pthread_mutex_unlock(&view->push_mu);
    return rc;
}

/* Show commit r->commit with tree r->entries (after a push).  push_mu
 * held. */
static int rebase(struct mfs_view *view, const struct mfs_push_result *r, struct mfs_err *err)
{
    struct mfs_entry *ents;
    struct mfs_entry *old;
    size_t n_old;
    size_t kept = 0;
    void *ctx = NULL;
    size_t i;
    int rc;

    ents = calloc(r->n_entries + 1, sizeof(*ents));
    if (!ents)
        return mfs_err_set(err, -ENOMEM, "cannot show the new commit: out of memory");
    for (i = 0; i < r->n_entries; i++) {
        const char *p = r->entries[i].path ? r->entries[i].path : "";

        if (!mfs_view_path_safe(p) || !strcmp(p, MFS_VIEW_CONTROL) ||
            !strncmp(p, MFS_VIEW_CONTROL "/", 9))
            continue;
        ents[kept] = r->entries[i];
        ents[kept].path = strdup(p);
        if (!ents[kept].path) {
            mfs_entries_free(ents, kept);
            return mfs_err_set(err, -ENOMEM, "cannot show the new commit: out of memory");
        }
        kept++;
    }
    qsort(ents, kept, sizeof(*ents), mfs_view_cmp_entry_path);
    if (view->refetch)
        ctx = view->refetch(view->refetch_ctx, r->commit);
    wrlock(view);
    old = view->entries;
    n_old = view->n_entries;
    view->entries = ents;
    view->n_entries = kept;
    snprintf(view->commit, sizeof(view->commit), "%s", r->commit);
    if (r->commit_time)
        view->commit_time = r->commit_time;
    if (ctx) {
        if (view->read == mfs_view_read_fetch)
            view->fetch = ctx;
        view->read_ctx = ctx;
    }
    unlock(view);
    mfs_entries_free(old, n_old);
    rc = mfs_view_sync_tree(view, err);
    if (rc == 0)
        rc = mfs_view_tensors_rebuild(view, err);
    return rc;
}

int mfs_view_push(struct mfs_view *view, const struct mfs_push_opts *opts,
                  struct mfs_push_result *res, struct mfs_err *err)
{
    struct mfs_view_settings s;
    struct mfs_push_result r;
    struct mfs_push_opts o;
    char busy[PATH_MAXLEN];
    int rc;

    if (res)
        memset(res, 0, sizeof(*res));
    if (!view->stage)
        return mfs_err_set(err, -EROFS, "cannot push: the mount is read-only");
    if (!view->push) {
        if (!view->hub)
            rc = mfs_err_set(err, -EIO, "cannot push: the mount is offline");
        else
            rc = mfs_err_set(err, -EROFS, "cannot push: no push is configured");
        mfs_view_logf(view, "push: %s", err ? err->msg : "failed");
        return rc;
    }
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&view->push_mu);
    mfs_view_settings_get(view, &s);
    /* Open files are not committed for the push: a file still being
     * written fails it, explicitly, rather than going out half written. */
    if (dirty_writer(view, busy, sizeof(busy)))
        rc = mfs_err_set(err, -EBUSY, "cannot push: '%s' is open for writing; push once it "
                         "is closed", busy);
    else
        rc = reshard(view, s.max_shard_size, false, err);
    if (rc < 0)
        goto out_log;
    if (opts) {
        o = *opts;
    } else {
        o.message = s.commit_message;
        o.description = s.commit_description;
        o.create_pr = s.create_pr;
    }
    rc = mfs_push_run(view->push, view->commit, view->entries, view->n_entries, &o, &r, err);
    if (rc < 0)
        goto out_log;
    /* A pull request leaves the branch where it was: the mount stays on
     * the branch's commit (the next push's parent) and shows it without
     * what went into the PR, which the push cleared from the stage. */
    if (r.entries && !r.pr_ref[0]) {
        rc = rebase(view, &r, err);
    } else if (r.committed) {
        rc = mfs_view_sync_tree(view, err);
        if (rc == 0)
            rc = mfs_view_tensors_rebuild(view, err);
    }
    if (rc < 0)
        goto out_log;
    if (r.committed)
        mfs_view_logf(view, "push: commit %s%s%s", r.commit, r.pr_url[0] ? " " : "", r.pr_url);
    if (res)
        *res = r;
    else
        mfs_push_result_release(&r);
    pthread_mutex_unlock(&view->push_mu);
    return 0;

out_log:
    mfs_view_logf(view, "push: %s", err && err->msg[0] ? err->msg : "failed");
    mfs_push_result_release(&r);
    pthread_mutex_unlock(&view->push_mu);
    return rc;
}

struct mfs_stage *mfs_view_stage(const struct mfs_view *view)
{
    return view->stage;
}

struct mfs_push *mfs_view_pusher(const struct mfs_view *view)
{
    return view->push;
}
