/*
 * fs/view.h - the mounted tree, with no FUSE types (style.md rule 12).
 *
 * A view is one repo at one pinned commit: the commit's file list merged
 * into folders, the flat tensors/ folder (one regular file per tensor of
 * the checkpoint) and the hidden .modelfs/ folder of control files
 * (fs/control.h), as docs/design.md "The tree" describes.  fs/fuse_ops.c
 * turns each FUSE request into one mfs_view_* call; tests call the same
 * functions directly, without /dev/fuse.
 *
 * Writable views (cfg->stage set) show the commit's files merged with the
 * staged changes (cache/stage.h): staged files add or override, whiteouts
 * hide, made folders add; create, write, rename, unlink... stage at once.
 *
 * Inodes: a node lives until mfs_view_free(), even once unlinked (a kernel
 * or an open handle may still name it), and inode numbers are never reused;
 * an inode number is the node's index + 1 and MFS_VIEW_ROOT_INO is the
 * root.  Paths keep their inode across a push (the rebase) and a rename.
 *
 * Offsets and lengths are bytes from the start of the file.  Errors are
 * negative errno with the reason in *err (docs/design.md, Errors):
 * -ENOENT (no such name), -ENOTDIR, -EISDIR, -EROFS (a write on a read-only
 * mount), -EEXIST, -ENOTEMPTY, -EPERM (tensors/ rules), -ENOSPC (staging),
 * -EACCES, -EIO (the bytes could not be fetched), -EINVAL (a bad request),
 * -ENODATA (no such xattr), -ERANGE (xattr buffer too small), -ENOMEM.
 *
 * Threads: after mfs_view_new() returns, any thread may call any function
 * concurrently (FUSE's multithreaded loop does); mfs_view_free() must be
 * the last call.
 */
#ifndef MFS_FS_VIEW_H
#define MFS_FS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "common/entry.h"
#include "common/err.h"
#include "fs/fetch.h"
#include "hub/hub.h"
#include "model/checkpoint.h"

#define MFS_VIEW_ROOT_INO 1
#define MFS_VIEW_TENSORS "tensors"          /* the tensor folder at the root */
#define MFS_VIEW_CONTROL ".modelfs"         /* the control folder at the root */
#define MFS_VIEW_LOG_LINES 256              /* lines kept by the .modelfs/log ring */

struct mfs_view;

/* Read up to len bytes at off of repo file e into buf (the contract of
 * mfs_fetch_read(): returns len, fewer only at end of file).  stream is a
 * per-open cookie for sequential-read detection, 0 for one-off reads. */
typedef ssize_t (*mfs_view_read_fn)(void *ctx, const struct mfs_entry *e, uint64_t stream,
                                    uint64_t off, size_t len, void *buf, struct mfs_err *err);

struct mfs_view_cfg {
    const char *repo_id;                    /* copied; "org/name" */
    const char *revision;                   /* copied; as asked at mount ("main") */
    const char *commit;                     /* copied; 40 hex the revision resolved to */
    int64_t commit_time;                    /* unix seconds; mtime of every node */
    const struct mfs_entry *entries;        /* copied; the commit's recursive file list */
    size_t n_entries;
    mfs_view_read_fn read;                  /* NULL = mfs_fetch_read() on fetch */
    void *read_ctx;                         /* ctx of read */
    struct mfs_fetch *fetch;                /* borrowed until mfs_view_free; may be NULL */
    struct mfs_cache *cache;                /* borrowed, for info/status; may be NULL */
    struct mfs_hub *hub;                    /* borrowed, for status; NULL when offline */
    bool no_tensors;                        /* do not open the checkpoint (tensors/ empty) */
    bool no_control_plugins;                /* only info/status/log in .modelfs/ (tests) */
    uint32_t uid;                           /* owner shown on every node */
    uint32_t gid;
    /* Writes (issue #5).  stage NULL = a read-only mount (every write is
     * -EROFS).  push NULL = changes are staged but never pushed. */
    struct mfs_stage *stage;                /* borrowed until mfs_view_free */
    struct mfs_push *push;                  /* borrowed until mfs_view_free */
    uint64_t max_shard_size;                /* bytes; 0 = 5000000000 (transformers' "5GB") */
    const char *commit_message;             /* copied; NULL = the push's default */
    bool create_pr;                         /* pushes open pull requests */
    /* Called after a push moved the view to commit (40 hex): returns a
     * reader for that commit's files (its ctx: read_ctx, or a fetch when
     * read is NULL), borrowed until mfs_view_free.  NULL: keep the reader. */
    void *(*refetch)(void *ctx, const char *commit);
    void *refetch_ctx;
};

/* Build the view: the folders of cfg->entries, tensors/ from the
 * checkpoint's headers (read through cfg->read, so only header bytes are
 * fetched; files with invalid headers are left out and logged), and
 * .modelfs/.  Entries whose paths are unsafe ('..', '.', empty components,
 * a leading '/') are left out and logged, never shown.  OUT: *viewp, free
 * with mfs_view_free().  -EIO: a checkpoint header could not be read;
 * -ENOMEM.  Call from one thread, before any other mfs_view_* call. */
int mfs_view_new(const struct mfs_view_cfg *cfg, struct mfs_view **viewp, struct mfs_err *err);

/* Stop control-file workers (waiting for them), free *viewp and set it to
 * NULL.  NULL is a no-op.  No other call may be in progress. */
void mfs_view_free(struct mfs_view **viewp);

/* Make blocked control-file readers return and workers see "cancelled"
 * (umount).  Any thread; later reads of streaming replies end at once. */
void mfs_view_shutdown(struct mfs_view *view);

struct mfs_view_attr {
    uint64_t ino;                           /* inode number, >= 1 */
    uint32_t mode;                          /* S_IFDIR|0555, S_IFREG|0444, S_IFREG|0666;
                                               writable: S_IFDIR|0755, S_IFREG|0644 */
    uint32_t nlink;                         /* 1 for files, 2 + subfolders for folders */
    uint64_t size;                          /* bytes; exact before any byte is fetched */
    int64_t mtime;                          /* unix seconds: the commit's time */
    uint32_t uid;
    uint32_t gid;
};

/* Find name in folder parent and count one lookup of the result (FUSE
 * lookup; release with mfs_view_forget).  OUT: *attr.  -ENOENT, -ENOTDIR. */
int mfs_view_lookup(struct mfs_view *view, uint64_t parent, const char *name,
                    struct mfs_view_attr *attr, struct mfs_err *err);

/* Drop nlookup lookups of ino (FUSE forget).  Unknown inodes are ignored. */
void mfs_view_forget(struct mfs_view *view, uint64_t ino, uint64_t nlookup);

/* Current lookup count of ino (tests). */
uint64_t mfs_view_lookups(struct mfs_view *view, uint64_t ino);

/* OUT: *attr of ino.  -ENOENT: no such inode. */
int mfs_view_getattr(struct mfs_view *view, uint64_t ino, struct mfs_view_attr *attr,
                     struct mfs_err *err);

/* Called by mfs_view_readdir for each name; next_off is the offset that
 * resumes after this name.  Return true to stop (the reply is full). */
typedef bool (*mfs_view_fill_fn)(void *ctx, const char *name, const struct mfs_view_attr *attr,
                                 uint64_t next_off);

/* List folder ino from offset off: 0 is ".", 1 is "..", 2 + i the i-th
 * child in name order, so a listing resumed at any offset it was given
 * continues without repeats or gaps.  Counts no lookups.  -ENOTDIR, -ENOENT. */
int mfs_view_readdir(struct mfs_view *view, uint64_t ino, uint64_t off, mfs_view_fill_fn fill,
                     void *ctx, struct mfs_err *err);

enum mfs_view_open_flags {
    MFS_VIEW_KEEP_CACHE = 1 << 0,           /* immutable bytes: keep the page cache */
    MFS_VIEW_DIRECT_IO = 1 << 1,            /* control file: no page cache, streaming */
};

/* Open ino with open(2) flags (O_ACCMODE, O_TRUNC...).  pid is the caller's
 * process: its session id picks the control-file conversation a fresh
 * handle reads (fs/control.h).  OUT: *fh (pass to read/write/release),
 * *open_flags (enum mfs_view_open_flags).  -EISDIR; -EROFS: write access
 * to a repo file or tensor; -EACCES: write access to a read-only control
 * file; -ENOMEM. */
int mfs_view_open(struct mfs_view *view, uint64_t ino, int flags, pid_t pid, uint64_t *fh,
                  unsigned *open_flags, struct mfs_err *err);

/* Read up to len bytes at off into buf.  Returns the bytes read: len, or
 * fewer only at end of file (0 at or past it).  A tensor file reads only
 * its byte range of its shard.  A streaming control reply blocks until
 * bytes arrive or the reply is complete.  -EIO with the cause, -EACCES. */
ssize_t mfs_view_read(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                      size_t len, void *buf, struct mfs_err *err);

/* on: make a read of fh now blocked waiting for a streaming control reply
 * (or about to block) return -EINTR, because its caller got a signal
 * (FUSE interrupt); off: clear that once the read has returned.  Other
 * files ignore it (their reads are bounded by the fetch timeout).  Any
 * thread. */
void mfs_view_interrupt(struct mfs_view *view, uint64_t ino, uint64_t fh, bool on);

/* Write len bytes at off.  A control file takes each write as one request
 * (-EINVAL: a bad request, the reason is also the reply read from the same
 * handle and a log line).  A file opened for writing stages the bytes (seen
 * at once by reads, durable at flush); tensors/NAME writes inside the
 * tensor only (-EINVAL past its end).  Returns len.  -EROFS (read-only
 * mount), -EBADF (not open for writing), -ENOSPC. */
ssize_t mfs_view_write(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                       const void *data, size_t len, struct mfs_err *err);

/* Close fh.  Never fails. */
void mfs_view_release(struct mfs_view *view, uint64_t ino, uint64_t fh);

/* Truncate ino to size (setattr).  Control files accept it (echo's O_TRUNC)
 * and ignore it; a file is staged at that size (through its open writer
 * when it is open for writing, else at once); a tensor only to its own size
 * (-EINVAL).  -EROFS on a read-only mount. */
int mfs_view_truncate(struct mfs_view *view, uint64_t ino, uint64_t size, struct mfs_err *err);

/* Extended attribute name of ino into buf (size bytes).  size 0 asks for
 * the length.  Tensor files have user.dtype ("F32"), user.shape
 * ("[768, 2304]") and user.file (the repo path of its shard).  Returns the
 * value's length.  -ENODATA: no such attribute; -ERANGE: buf too small. */
ssize_t mfs_view_getxattr(struct mfs_view *view, uint64_t ino, const char *name, char *buf,
                          size_t size, struct mfs_err *err);

/* NUL-separated attribute names of ino, as listxattr(2).  size 0 asks for
 * the length.  -ERANGE. */
ssize_t mfs_view_listxattr(struct mfs_view *view, uint64_t ino, char *buf, size_t size,
                           struct mfs_err *err);

/* Totals for statfs: bytes of all repo files, number of nodes. */
void mfs_view_totals(struct mfs_view *view, uint64_t *bytes, uint64_t *nodes);

/* Add a line "op 'PATH': reason" to the .modelfs/log ring, PATH being
 * ino's path in the mount (errors of failed operations).  Any thread. */
void mfs_view_log(struct mfs_view *view, const char *op, uint64_t ino, const struct mfs_err *err);

/* Add a line "'path': reason" (errors from the fetch and checkpoint
 * layers, path relative to the repo).  Any thread; NULL view is a no-op
 * (used as a mfs_fetch_log_fn with ctx = the view). */
void mfs_view_log_path(void *view, const char *path, const struct mfs_err *err);

/* Accessors for control-file handlers (borrowed, valid until free). */
const char *mfs_view_repo_id(const struct mfs_view *view);
const char *mfs_view_revision(const struct mfs_view *view);
const char *mfs_view_commit(const struct mfs_view *view);
const struct mfs_ckpt *mfs_view_ckpt(const struct mfs_view *view);   /* NULL: none */
struct mfs_fetch *mfs_view_fetch(const struct mfs_view *view);        /* may be NULL */
/* The repo file at path (no leading '/'), or NULL. */
const struct mfs_entry *mfs_view_entry(const struct mfs_view *view, const char *path);
/* Read bytes of a repo file through the view's reader (for handlers that
 * load config.json or weights).  Same contract as mfs_view_read_fn. */
ssize_t mfs_view_read_file(struct mfs_view *view, const char *path, uint64_t off, size_t len,
                           void *buf, struct mfs_err *err);

/* ---- writes, resharding, push (issue #5) ------------------------------ */

struct mfs_stage;
struct mfs_push;
struct mfs_push_opts;
struct mfs_push_result;

/* The mount's push settings (.modelfs/config, mount options). */
struct mfs_view_settings {
    uint64_t max_shard_size;                /* bytes */
    bool create_pr;
    char commit_message[512];               /* "" = the push's default */
    char commit_description[2048];
};
void mfs_view_settings_get(struct mfs_view *view, struct mfs_view_settings *s);
/* Replace the settings.  A changed max_shard_size reshards the whole
 * checkpoint now (fs/reshard.h, force).  -EROFS on a read-only mount,
 * -EINVAL (max_shard_size 0), a reshard's errors. */
int mfs_view_settings_set(struct mfs_view *view, const struct mfs_view_settings *s,
                          struct mfs_err *err);

/* Reshard what needs it, push the stage as one Hub commit (fs/push.h) and
 * show the new commit; with create_pr the mount stays on its branch's
 * commit and shows it without what went into the pull request.  One at a
 * time; opts NULL = from the settings.  OUT: *res (may be NULL; release
 * with mfs_push_result_release).  -EBUSY: a file is open with writes not
 * yet closed (nothing is pushed, so no half-written file is published; the
 * reason names it).  -EROFS (read-only or no push configured), errors of
 * mfs_push_run (-ESTALE: the branch moved; -EIO; -EACCES); the reason also
 * goes to .modelfs/log. */
int mfs_view_push(struct mfs_view *view, const struct mfs_push_opts *opts,
                  struct mfs_push_result *res, struct mfs_err *err);

/* True when the view stages writes (cfg->stage was set). */
bool mfs_view_writable(const struct mfs_view *view);

/* Make file name in folder parent (mode: permission bits) and open it
 * with open(2) flags, as creat(2); when it exists, -EEXIST with O_EXCL,
 * else it is opened as mfs_view_open does.  The new empty file is staged
 * at once.  Counts one lookup.  OUT: *attr, *fh, *open_flags.  -EROFS,
 * -EACCES (.modelfs/), -EPERM (tensors/), -EINVAL (a bad name), -ENOSPC. */
int mfs_view_create(struct mfs_view *view, uint64_t parent, const char *name, uint32_t mode,
                    int flags, pid_t pid, struct mfs_view_attr *attr, uint64_t *fh,
                    unsigned *open_flags, struct mfs_err *err);

/* Make folder name in parent (staged as a made folder).  Counts one
 * lookup.  OUT: *attr.  -EEXIST, -EROFS, -EACCES, -EPERM. */
int mfs_view_mkdir(struct mfs_view *view, uint64_t parent, const char *name, uint32_t mode,
                   struct mfs_view_attr *attr, struct mfs_err *err);

/* Remove file name of parent (a whiteout when the commit has it).
 * -ENOENT, -EISDIR, -EROFS, -EPERM. */
int mfs_view_unlink(struct mfs_view *view, uint64_t parent, const char *name,
                    struct mfs_err *err);

/* Remove the empty folder name of parent.  -ENOTEMPTY, -ENOTDIR, -EBUSY
 * (tensors/, .modelfs/). */
int mfs_view_rmdir(struct mfs_view *view, uint64_t parent, const char *name,
                   struct mfs_err *err);

/* Rename a file or folder, as rename(2)/renameat2(2) with flags
 * MFS_VIEW_RENAME_NOREPLACE (-EEXIST when newname exists);
 * MFS_VIEW_RENAME_EXCHANGE is -EINVAL.  One stage transaction; no bytes
 * are copied.  -ENOENT, -EISDIR, -ENOTDIR, -ENOTEMPTY, -EINVAL (a folder
 * into itself), -EPERM (tensors/, .modelfs/). */
#define MFS_VIEW_RENAME_NOREPLACE (1u << 0)
#define MFS_VIEW_RENAME_EXCHANGE (1u << 1)
int mfs_view_rename(struct mfs_view *view, uint64_t parent, const char *name,
                    uint64_t newparent, const char *newname, unsigned flags,
                    struct mfs_err *err);

/* Set the permission bits of ino (chmod): staged files and folders keep
 * them; a repo file is staged unchanged with the new mode.  -EROFS. */
int mfs_view_chmod(struct mfs_view *view, uint64_t ino, uint32_t mode, struct mfs_err *err);

/* close(2) of fh: commit what it wrote (durable once this returns).  A
 * tensors/NAME handle must have written exactly [0, size) of the tensor,
 * else -EINVAL and its change is dropped.  -ENOSPC, -EIO. */
int mfs_view_flush(struct mfs_view *view, uint64_t ino, uint64_t fh, struct mfs_err *err);

/* fsync(2) of fh: commit what it wrote, then push (mfs_view_push) when a
 * push is configured, unless another file still has writes not yet closed
 * (then 0: the push waits for the next trigger, and a log line says so).
 * A failed push is -EIO (-EROFS, -ENOMEM, -ENOSPC pass through). */
int mfs_view_fsync(struct mfs_view *view, uint64_t ino, uint64_t fh, struct mfs_err *err);

/* Borrowed; NULL on a read-only mount / when no push is configured. */
struct mfs_stage *mfs_view_stage(const struct mfs_view *view);
struct mfs_push *mfs_view_pusher(const struct mfs_view *view);

/* The control-file table (borrowed, valid until free), so that a plugin's
 * init can register sibling files sharing its state with mfs_ctl_add()
 * (not mfs_view_ctl_add: the nodes are made after every init). */
struct mfs_ctl;
struct mfs_ctl *mfs_view_ctl(const struct mfs_view *view);

#endif
