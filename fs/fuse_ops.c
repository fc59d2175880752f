/*
 * fs/fuse_ops.c - FUSE in, FUSE out; everything else is the view's job
 * (fs/fuse_ops.h, style.md rule 12).  Each op takes the view from the
 * request's userdata, calls one mfs_view_* that returns 0 or -errno, and
 * replies; failures other than the expected ones (a missing name, a missing
 * xattr) become a line in .modelfs/log.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "common/buf.h"
#include "fs/fuse_ops.h"
#include "fs/view.h"

#define MFS_FUSE_TIMEOUT 3600.0             /* seconds: the tree of a commit never changes */
#define MFS_FUSE_TIMEOUT_RW 1.0             /* seconds: a writable tree also changes by push */
#define MFS_FUSE_IO (1u << 20)              /* bytes per read/write request */

extern char **environ;

struct mfs_fuse {
    struct fuse_session *se;                /* owned */
    struct mfs_view *view;                  /* borrowed */
    char *mountpoint;                       /* owned; NULL until mounted */
    pthread_mutex_t mu;                     /* guards detached */
    bool detached;                          /* mfs_fuse_exit unmounted it */
    mfs_fuse_ready_fn ready;
    void *ready_ctx;
};

static void to_stat(const struct mfs_view_attr *a, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = a->ino;
    st->st_mode = a->mode;
    st->st_nlink = a->nlink;
    st->st_size = (off_t)a->size;
    st->st_uid = a->uid;
    st->st_gid = a->gid;
    st->st_blksize = MFS_FUSE_IO;
    st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
    st->st_mtim.tv_sec = a->mtime;
    st->st_atim.tv_sec = a->mtime;
    st->st_ctim.tv_sec = a->mtime;
}

/* How long the kernel may trust names and attributes. */
static double timeout_of(struct mfs_view *view)
{
    return mfs_view_writable(view) ? MFS_FUSE_TIMEOUT_RW : MFS_FUSE_TIMEOUT;
}

static void reply_fail(fuse_req_t req, const char *op, fuse_ino_t ino, int rc,
                       const struct mfs_err *err)
{
    struct mfs_view *view = fuse_req_userdata(req);

    mfs_view_log(view, op, ino, err);
    fuse_reply_err(req, -rc);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    (void)userdata;
    conn->max_write = MFS_FUSE_IO;
    conn->max_read = MFS_FUSE_IO;           /* must match the max_read mount option */
    conn->max_readahead = MFS_FUSE_IO;
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
        conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
    if (conn->capable & FUSE_CAP_ASYNC_READ)
        conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    /* Nothing changes behind the kernel's back at a pinned commit. */
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct fuse_entry_param e;
    struct mfs_view_attr a;
    int rc;

    memset(&e, 0, sizeof(e));
    rc = mfs_view_lookup(view, parent, name, &a, &err);
    if (rc == -ENOENT) {
        /* A negative entry: the name stays missing for the timeout. */
        e.ino = 0;
        e.entry_timeout = timeout_of(view);
        fuse_reply_entry(req, &e);
        return;
    }
    if (rc < 0) {
        reply_fail(req, "lookup", parent, rc, &err);
        return;
    }
    e.ino = a.ino;
    e.generation = 1;
    e.attr_timeout = timeout_of(view);
    e.entry_timeout = timeout_of(view);
    to_stat(&a, &e.attr);
    if (fuse_reply_entry(req, &e) != 0)
        mfs_view_forget(view, a.ino, 1);    /* the kernel never got it */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    mfs_view_forget(fuse_req_userdata(req), ino, nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    struct mfs_view *view = fuse_req_userdata(req);
    size_t i;

    for (i = 0; i < count; i++)
        mfs_view_forget(view, forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    struct stat st;
    int rc;

    (void)fi;
    rc = mfs_view_getattr(view, ino, &a, &err);
    if (rc < 0) {
        reply_fail(req, "getattr", ino, rc, &err);
        return;
    }
    to_stat(&a, &st);
    fuse_reply_attr(req, &st, timeout_of(view));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    struct stat st;
    int rc = 0;

    (void)fi;
    /* Owners are the mount's; times are the commit's or the staging's:
     * a writable mount accepts and ignores both (cp -p, touch). */
    if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) && !mfs_view_writable(view))
        rc = mfs_err_set(&err, -EROFS, "cannot change attributes: the mount is read-only");
    if (rc == 0 && (to_set & FUSE_SET_ATTR_MODE))
        rc = mfs_view_chmod(view, ino, attr->st_mode & 07777, &err);
    if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE))
        rc = mfs_view_truncate(view, ino, (uint64_t)attr->st_size, &err);
    else if (rc == 0 && !mfs_view_writable(view) && !(to_set & FUSE_SET_ATTR_SIZE))
        /* Control files ignore times (echo > .modelfs/X); elsewhere a
         * read-only mount refuses them as it refuses a truncate. */
        rc = mfs_view_truncate(view, ino, 0, &err);
    if (rc == 0)
        rc = mfs_view_getattr(view, ino, &a, &err);
    if (rc < 0) {
        reply_fail(req, "setattr", ino, rc, &err);
        return;
    }
    to_stat(&a, &st);
    fuse_reply_attr(req, &st, timeout_of(view));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct mfs_err err = MFS_ERR_INIT;
    unsigned flags = 0;
    uint64_t fh = 0;
    int rc;

    rc = mfs_view_open(view, ino, fi->flags, ctx->pid, &fh, &flags, &err);
    if (rc < 0) {
        reply_fail(req, "open", ino, rc, &err);
        return;
    }
    fi->fh = fh;
    fi->keep_cache = (flags & MFS_VIEW_KEEP_CACHE) != 0;
    fi->direct_io = (flags & MFS_VIEW_DIRECT_IO) != 0;
    if (fuse_reply_open(req, fi) != 0)
        mfs_view_release(view, ino, fh);    /* interrupted: the kernel has no handle */
}

struct read_intr {
    struct mfs_view *view;
    fuse_ino_t ino;
    uint64_t fh;
};

/* The reader got a signal: a read waiting on a streaming reply returns. */
static void on_interrupt(fuse_req_t req, void *data)
{
    struct read_intr *ri = data;

    (void)req;
    mfs_view_interrupt(ri->view, ri->ino, ri->fh, true);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct read_intr ri = { view, ino, fi->fh };
    struct mfs_err err = MFS_ERR_INIT;
    ssize_t n;
    char *buf;

    buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* (fi->direct_io is not filled in on reads, so every read registers;
     * the view ignores it for anything but control files.) */
    fuse_req_interrupt_func(req, on_interrupt, &ri);
    n = mfs_view_read(view, ino, fi->fh, (uint64_t)off, size, buf, &err);
    fuse_req_interrupt_func(req, NULL, NULL);
    mfs_view_interrupt(view, ino, fi->fh, false);
    if (n == -EINTR)
        fuse_reply_err(req, EINTR);
    else if (n < 0)
        reply_fail(req, "read", ino, (int)n, &err);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    ssize_t n;

    n = mfs_view_write(view, ino, fi->fh, (uint64_t)off, data, size, &err);
    if (n < 0) {
        fuse_reply_err(req, (int)-n);       /* the view logged it with its reason */
        return;
    }
    fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    /* The view logs a failed commit with its reason. */
    rc = mfs_view_flush(fuse_req_userdata(req), ino, fi->fh, &err);
    fuse_reply_err(req, -rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    (void)datasync;
    rc = mfs_view_fsync(fuse_req_userdata(req), ino, fi->fh, &err);
    fuse_reply_err(req, -rc);
}

/* `sync MOUNT` (fsync of the folder): push what is staged.  libfuse 3.14
 * has no syncfs op, so a plain sync(1) never reaches us. */
static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    int rc = 0;

    (void)ino;
    (void)datasync;
    (void)fi;
    if (mfs_view_writable(view) && mfs_view_pusher(view))
        rc = mfs_view_push(view, NULL, NULL, &err);
    /* As fsync: a push that failed is EIO to sync(1) (ESTALE would read
     * "Stale file handle"); EBUSY, a file still being written, stays. */
    if (rc < 0 && rc != -EROFS && rc != -ENOMEM && rc != -EBUSY && rc != -ENOSPC)
        rc = -EIO;
    fuse_reply_err(req, -rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    mfs_view_release(fuse_req_userdata(req), ino, fi->fh);
    fuse_reply_err(req, 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    int rc;

    rc = mfs_view_getattr(view, ino, &a, &err);
    if (rc == 0 && !S_ISDIR(a.mode))
        rc = mfs_err_set(&err, -ENOTDIR, "not a folder");
    if (rc < 0) {
        reply_fail(req, "opendir", ino, rc, &err);
        return;
    }
    fi->fh = 0;
    /* A writable tree changes: the kernel must ask again. */
    fi->keep_cache = !mfs_view_writable(view);
    fi->cache_readdir = !mfs_view_writable(view);
    fuse_reply_open(req, fi);
}

struct dir_fill {
    fuse_req_t req;
    char *buf;
    size_t size;                            /* bytes the kernel asked for */
    size_t used;
};

static bool fill_one(void *ctx, const char *name, const struct mfs_view_attr *a,
                     uint64_t next_off)
{
    struct dir_fill *d = ctx;
    struct stat st;
    size_t need;

    memset(&st, 0, sizeof(st));
    st.st_ino = a->ino;
    st.st_mode = a->mode;
    need = fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, name, &st,
                             (off_t)next_off);
    if (need > d->size - d->used)
        return true;
    d->used += need;
    return false;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct dir_fill d = { req, NULL, size, 0 };
    int rc;

    (void)fi;
    d.buf = malloc(size ? size : 1);
    if (!d.buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    rc = mfs_view_readdir(view, ino, (uint64_t)off, fill_one, &d, &err);
    if (rc < 0)
        reply_fail(req, "readdir", ino, rc, &err);
    else
        fuse_reply_buf(req, d.buf, d.used);
    free(d.buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    (void)fi;
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct statvfs sv;
    uint64_t bytes;
    uint64_t nodes;

    (void)ino;
    mfs_view_totals(view, &bytes, &nodes);
    memset(&sv, 0, sizeof(sv));
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = (bytes + 4095) / 4096;
    sv.f_files = nodes;
    if (mfs_view_writable(view)) {
        /* Staging is bounded by the cache's disk, which says ENOSPC
         * itself; tools that look first (rsync, installers) see room. */
        sv.f_bfree = 1ull << 32;
        sv.f_bavail = sv.f_bfree;
        sv.f_blocks += sv.f_bfree;
        sv.f_ffree = 1ull << 32;
        sv.f_favail = sv.f_ffree;
        sv.f_files += sv.f_ffree;
    }
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    char *buf = NULL;
    ssize_t n;

    if (size) {
        buf = malloc(size);
        if (!buf) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
    }
    n = mfs_view_getxattr(view, ino, name, buf, size, &err);
    if (n < 0)
        fuse_reply_err(req, (int)-n);       /* a missing xattr is no error worth a log line */
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    char *buf = NULL;
    ssize_t n;

    if (size) {
        buf = malloc(size);
        if (!buf) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
    }
    n = mfs_view_listxattr(view, ino, buf, size, &err);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

/* Reply to a request that made name in parent (one lookup counted). */
static void reply_entry(fuse_req_t req, const struct mfs_view_attr *a)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct fuse_entry_param e;

    memset(&e, 0, sizeof(e));
    e.ino = a->ino;
    e.generation = 1;
    e.attr_timeout = timeout_of(view);
    e.entry_timeout = timeout_of(view);
    to_stat(a, &e.attr);
    if (fuse_reply_entry(req, &e) != 0)
        mfs_view_forget(view, a->ino, 1);
}

/* What the mount never does, writable or not. */
static void refuse(fuse_req_t req, const char *op, fuse_ino_t parent, const char *name)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    if (mfs_view_writable(view))
        rc = mfs_err_set(&err, -EPERM, "cannot %s '%s': the Hub stores only files and folders",
                         op, name ? name : "");
    else
        rc = mfs_err_set(&err, -EROFS, "cannot %s '%s': the mount is read-only", op,
                         name ? name : "");
    reply_fail(req, op, parent, rc, &err);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    struct mfs_view *view = fuse_req_userdata(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct fuse_entry_param e;
    struct mfs_view_attr a;
    unsigned flags = 0;
    uint64_t fh = 0;
    int rc;

    rc = mfs_view_create(view, parent, name, mode & 07777, fi->flags, ctx->pid, &a, &fh, &flags,
                         &err);
    if (rc < 0) {
        reply_fail(req, "create", parent, rc, &err);
        return;
    }
    memset(&e, 0, sizeof(e));
    e.ino = a.ino;
    e.generation = 1;
    e.attr_timeout = timeout_of(view);
    e.entry_timeout = timeout_of(view);
    to_stat(&a, &e.attr);
    fi->fh = fh;
    fi->keep_cache = (flags & MFS_VIEW_KEEP_CACHE) != 0;
    fi->direct_io = (flags & MFS_VIEW_DIRECT_IO) != 0;
    if (fuse_reply_create(req, &e, fi) != 0) {
        mfs_view_release(view, a.ino, fh);   /* interrupted: the kernel has neither */
        mfs_view_forget(view, a.ino, 1);
    }
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
    struct mfs_view *view = fuse_req_userdata(req);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    unsigned flags = 0;
    uint64_t fh = 0;
    int rc;

    (void)rdev;
    if (!S_ISREG(mode)) {
        refuse(req, "mknod", parent, name);
        return;
    }
    rc = mfs_view_create(view, parent, name, mode & 07777, O_WRONLY | O_EXCL, ctx->pid, &a, &fh,
                         &flags, &err);
    if (rc == 0)
        mfs_view_release(view, a.ino, fh);
    if (rc < 0)
        reply_fail(req, "mknod", parent, rc, &err);
    else
        reply_entry(req, &a);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct mfs_view *view = fuse_req_userdata(req);
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    int rc;

    rc = mfs_view_mkdir(view, parent, name, mode & 07777, &a, &err);
    if (rc < 0)
        reply_fail(req, "mkdir", parent, rc, &err);
    else
        reply_entry(req, &a);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    rc = mfs_view_unlink(fuse_req_userdata(req), parent, name, &err);
    if (rc < 0)
        reply_fail(req, "unlink", parent, rc, &err);
    else
        fuse_reply_err(req, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    rc = mfs_view_rmdir(fuse_req_userdata(req), parent, name, &err);
    if (rc < 0 && rc != -ENOTEMPTY)
        reply_fail(req, "rmdir", parent, rc, &err);
    else
        fuse_reply_err(req, -rc);           /* rm -r probes with rmdir: no log line */
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    (void)link;
    refuse(req, "symlink", parent, name);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    struct mfs_err err = MFS_ERR_INIT;
    unsigned vflags = 0;
    int rc;

    if (flags & RENAME_NOREPLACE)
        vflags |= MFS_VIEW_RENAME_NOREPLACE;
    if (flags & RENAME_EXCHANGE)
        vflags |= MFS_VIEW_RENAME_EXCHANGE;
    rc = mfs_view_rename(fuse_req_userdata(req), parent, name, newparent, newname, vflags, &err);
    if (rc < 0)
        reply_fail(req, "rename", parent, rc, &err);
    else
        fuse_reply_err(req, 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    (void)ino;
    refuse(req, "link", newparent, newname);
}

/* The Hub keeps no attributes.  ENOTSUP, not EPERM: it is what a file
 * system without xattrs answers, so cp -a, sed -i and rsync -X skip the
 * copy of ACLs quietly (gnulib's qcopy_acl falls back to chmod on ENOTSUP
 * and fails on anything else).  No log line: every cp -a would leave one. */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    (void)value;
    (void)size;
    (void)flags;
    if (mfs_view_writable(fuse_req_userdata(req)))
        fuse_reply_err(req, ENOTSUP);
    else
        refuse(req, "setxattr", ino, name);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    if (mfs_view_writable(fuse_req_userdata(req)))
        fuse_reply_err(req, ENOTSUP);
    else
        refuse(req, "removexattr", ino, name);
}

static const struct fuse_lowlevel_ops mfs_fuse_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .fsyncdir = op_fsyncdir,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .create = op_create,
};

int mfs_fuse_new(struct mfs_view *view, const char *repo_id, const char *opts,
                 struct mfs_fuse **fp, struct mfs_err *err)
{
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct mfs_buf o = MFS_BUF_INIT;
    struct mfs_fuse *f;
    int rc = 0;

    *fp = NULL;
    f = calloc(1, sizeof(*f));
    if (!f)
        return mfs_err_set(err, -ENOMEM, "cannot make the FUSE session: out of memory");
    pthread_mutex_init(&f->mu, NULL);
    f->view = view;
    /* fsname may not hold a comma (the option separator). */
    if (mfs_buf_puts(&o, "fsname=modelfs:") < 0) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_opts;
    }
    for (const char *p = repo_id; *p; p++)
        if (mfs_buf_append(&o, *p == ',' ? "_" : p, 1) < 0) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            goto out_free_opts;
        }
    if (mfs_buf_printf(&o, ",subtype=modelfs,default_permissions,max_read=%u%s%s", MFS_FUSE_IO,
                       opts && *opts ? "," : "", opts && *opts ? opts : "") < 0) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_opts;
    }
    if (fuse_opt_add_arg(&args, "modelfs") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
        fuse_opt_add_arg(&args, o.data) != 0) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_args;
    }
    f->se = fuse_session_new(&args, &mfs_fuse_ops, sizeof(mfs_fuse_ops), view);
    if (!f->se) {
        rc = mfs_err_set(err, -EINVAL, "cannot make the FUSE session: bad mount options '%s'",
                         opts ? opts : "");
        goto out_free_args;
    }
    fuse_opt_free_args(&args);
    mfs_buf_release(&o);
    *fp = f;
    return 0;

out_free_args:
    fuse_opt_free_args(&args);
out_free_opts:
    mfs_buf_release(&o);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return rc;
}

int mfs_fuse_mount(struct mfs_fuse *f, const char *mountpoint, struct mfs_err *err)
{
    struct stat st;

    if (stat(mountpoint, &st) != 0)
        return mfs_err_set(err, -errno, "cannot mount on '%s': %s", mountpoint, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return mfs_err_set(err, -ENOTDIR, "cannot mount on '%s': not a folder", mountpoint);
    if (fuse_session_mount(f->se, mountpoint) != 0)
        return mfs_err_set(err, -EIO, "cannot mount on '%s': the FUSE mount failed "
                           "(is /dev/fuse there, and is fusermount3 installed?)", mountpoint);
    f->mountpoint = strdup(mountpoint);
    if (!f->mountpoint) {
        fuse_session_unmount(f->se);
        return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

/* Let the kernel read ahead as far as one request carries: FUSE's bdi
 * starts at 128 KiB whatever max_readahead says.  Root only; best effort. */
static void raise_readahead(const struct stat *st)
{
    char path[96];
    FILE *fp;

    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st->st_dev),
             minor(st->st_dev));
    fp = fopen(path, "w");
    if (!fp)
        return;
    fprintf(fp, "%u\n", MFS_FUSE_IO / 1024);
    fclose(fp);
}

static void *ready_main(void *p)
{
    struct mfs_fuse *f = p;
    struct stat st;
    int rc = 0;

    /* Answered by the loop, so it proves the mount is usable. */
    if (stat(f->mountpoint, &st) != 0)
        rc = -errno;
    else
        raise_readahead(&st);
    if (f->ready)
        f->ready(f->ready_ctx, rc);
    return NULL;
}

int mfs_fuse_run(struct mfs_fuse *f, unsigned max_threads, mfs_fuse_ready_fn ready,
                 void *ready_ctx, struct mfs_err *err)
{
    struct fuse_loop_config *cfg;
    pthread_t tid;
    bool have_ready = false;
    int rc;

    cfg = fuse_loop_cfg_create();
    if (!cfg)
        return mfs_err_set(err, -ENOMEM, "cannot run the FUSE loop: out of memory");
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_max_threads(cfg, max_threads ? max_threads : 16);
    f->ready = ready;
    f->ready_ctx = ready_ctx;
    if (pthread_create(&tid, NULL, ready_main, f) == 0)
        have_ready = true;
    else if (ready)
        ready(ready_ctx, 0);
    rc = fuse_session_loop_mt(f->se, cfg);
    if (have_ready)
        pthread_join(tid, NULL);
    fuse_loop_cfg_destroy(cfg);
    if (rc < 0)
        return mfs_err_set(err, -EIO, "the FUSE loop failed: %s", strerror(-rc));
    return 0;
}

static void detach(const char *mountpoint)
{
    char *argv[] = { "fusermount3", "-u", "-z", "-q", (char *)mountpoint, NULL };
    pid_t pid;
    int status;

    if (umount2(mountpoint, MNT_DETACH) == 0)
        return;
    if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0)
        waitpid(pid, &status, 0);
}

void mfs_fuse_exit(struct mfs_fuse *f)
{
    bool first;

    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    first = !f->detached && f->mountpoint;
    f->detached = true;
    pthread_mutex_unlock(&f->mu);
    fuse_session_exit(f->se);
    if (first)
        detach(f->mountpoint);
}

/* True once the kernel side of the session is gone (unmounted and all
 * files closed): libfuse then skips its unmount by path. */
static bool connection_gone(struct fuse_session *se)
{
    struct pollfd pfd = { fuse_session_fd(se), 0, 0 };

    return pfd.fd < 0 || (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLERR));
}

void mfs_fuse_free(struct mfs_fuse **fp)
{
    struct mfs_fuse *f;

    if (!fp || !*fp)
        return;
    f = *fp;
    if (f->se) {
        /* After mfs_fuse_exit detached it, the path may already hold a
         * new mount: unmounting by name again could hit that one. */
        if (f->mountpoint && (!f->detached || connection_gone(f->se)))
            fuse_session_unmount(f->se);    /* after a detach: frees, unmounts nothing */
        fuse_session_destroy(f->se);
    }
    free(f->mountpoint);
    pthread_mutex_destroy(&f->mu);
    free(f);
    *fp = NULL;
}
