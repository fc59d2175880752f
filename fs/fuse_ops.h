/*
 * fs/fuse_ops.h - a view served through the libfuse3 low-level API.
 *
 * fs/fuse_ops.c holds one thin adapter per FUSE op (style.md rule 12): it
 * takes the view from the session's userdata, calls one mfs_view_* and
 * replies.  This header is the only place outside fs/fuse_ops.c that
 * knows FUSE exists, and it shows no FUSE types either.
 *
 * Kernel settings: files at a commit are immutable, so opens of them keep
 * the page cache; entry/attribute timeouts are long on a read-only mount and
 * 1 s on a writable one (a push changes the tree), whose folders are not
 * cached and whose staged files drop the page cache at open; reads and writes of up to
 * 1 MiB per request (max_write, hence max_pages 256; max_readahead 1 MiB and
 * the bdi's read_ahead_kb raised to match when writable); control files use
 * direct_io.  The loop is multithreaded, so a stalled read blocks only its
 * own thread.
 */
#ifndef MFS_FS_FUSE_OPS_H
#define MFS_FS_FUSE_OPS_H

#include <stdbool.h>

#include "common/err.h"
#include "fs/view.h"

struct mfs_fuse;

/* Make a session for view (borrowed until mfs_fuse_free) with mount
 * options opts ("allow_other,..." as -o takes them; NULL for none) on top
 * of fsname=modelfs:REPO, subtype=modelfs, default_permissions.
 * OUT: *fp.  -EINVAL: libfuse refused an option; -ENOMEM. */
int mfs_fuse_new(struct mfs_view *view, const char *repo_id, const char *opts,
                 struct mfs_fuse **fp, struct mfs_err *err);

/* Mount on mountpoint.  -EIO with libfuse's reason (not a folder, no
 * /dev/fuse, already mounted...). */
int mfs_fuse_mount(struct mfs_fuse *f, const char *mountpoint, struct mfs_err *err);

/* Called once the mount answers (a stat of the mountpoint came back):
 * rc 0, or the negative errno of that stat. */
typedef void (*mfs_fuse_ready_fn)(void *ctx, int rc);

/* Serve requests with up to max_threads workers until the file system is
 * unmounted or mfs_fuse_exit() is called; ready (may be NULL) is called from
 * a helper thread when the mount is usable.  Returns 0 or -EIO. */
int mfs_fuse_run(struct mfs_fuse *f, unsigned max_threads, mfs_fuse_ready_fn ready,
                 void *ready_ctx, struct mfs_err *err);

/* Make mfs_fuse_run return: end the loop and detach the mount (lazy
 * unmount: open files keep working until closed).  Any thread; idempotent. */
void mfs_fuse_exit(struct mfs_fuse *f);

/* Unmount if still mounted, destroy the session, free *fp, set it NULL. */
void mfs_fuse_free(struct mfs_fuse **fp);

#endif
