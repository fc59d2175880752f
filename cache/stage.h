/*
 * cache/stage.h - the staged changes of a writable mount, kept durably in
 * the cache database (docs/design.md, Writes, resharding, push and Cache).
 *
 * A stage belongs to one (endpoint, repo_type, repo_id, revision): the
 * branch a push will commit to.  It is independent of the commit the mount
 * pinned, so after a failed push (the branch moved) a remount at the new
 * head shows the same staged changes over it.  It holds path entries, each
 * overriding the commit's tree at that path:
 *   MFS_STAGE_FILE     the path holds bytes described by an extent list;
 *   MFS_STAGE_DELETED  a whiteout: the commit's file (or folder) is gone;
 *   MFS_STAGE_DIR      a folder made by mkdir (the Hub stores no empty
 *                      folders: a push ignores it).
 * Paths are relative to the repo root, no leading '/', no '.'/'..'/empty
 * components (checked: -EINVAL).
 *
 * Bytes.  A file's content is a piece table: extents [off, off+len) of the
 * file, in order, without gaps, each taking its bytes from one source:
 *   - a data object (written bytes, stored as MFS_CACHE_CHUNK-byte chunk
 *     rows at the file offsets they were written at, so a sparse object
 *     costs only what was written),
 *   - a remote blob (a struct mfs_entry of some commit: its bytes come from
 *     the base_read callback, i.e. the cache and the Hub),
 *   - zeros (a truncate that extended the file).
 * So a rename of an unmodified repo file, a write of one tensor inside a
 * 5 GB shard, and a reshard that only moves tensors between files store
 * only what is new: the reshard writer (mfs_stage_writer_link) links
 * ranges of existing sources instead of copying them.
 *
 * Writers.  mfs_stage_writer_open() starts an uncommitted change of one
 * file (a draft): writes go to a fresh data object and to the writer's
 * piece table in memory, in batches of whole chunks.  Nothing a writer does
 * is visible to mfs_stage_get/list/read until mfs_stage_writer_commit(),
 * which makes the path point at the writer's content in one transaction:
 * after it returns, a kill -9 of the process keeps the change (WAL,
 * synchronous=NORMAL: what is committed survives the process, docs/design.md
 * "Errors").  A writer can commit several times (fsync, then close).  A
 * draft never committed is lost with its process: mfs_stage_open() deletes
 * data objects no extent refers to.  mfs_stage_writer_read() shows the
 * writer's own uncommitted bytes (read-your-writes for the open file).
 *
 * Hashes.  A writer whose file is exactly the bytes written to it in
 * order from offset 0 (a `cp`; an O_TRUNC or truncate to 0 starts over)
 * computes their sha256 as they come and stores it with the entry at
 * commit (struct mfs_stage_entry.sha256), so a push need not read the
 * file back to hash it.  Any other change (a write elsewhere, a link, a
 * truncate to another size, a writer starting from existing content)
 * leaves it unknown ("").
 *
 * Push bookkeeping.  mfs_stage_generation() counts committed changes;
 * mfs_stage_clear_upto() drops what a push committed and keeps changes made
 * while it ran.
 *
 * Errors: -EINVAL (bad path, bad range), -ENOENT (no entry), -ENOSPC (disk
 * full: the transaction rolled back, everything committed before is
 * intact), -EIO (SQLite failure; base_read's own errors pass through),
 * -ENOMEM, with the reason in *err.
 * Threads: any thread may call any function on a stage; a writer is used by
 * one thread at a time (the caller locks).
 * Processes: one process at a time has a given stage open (the mount's
 * daemon): mfs_stage_open() deletes the data objects no committed entry
 * names, which would include another live process's drafts.
 * mfs_stage_open() enforces it with an flock(2) on
 * CACHE_DIR/stage-HASH.lock held for the stage's lifetime (the kernel drops
 * it when the process dies).
 */
#ifndef MFS_CACHE_STAGE_H
#define MFS_CACHE_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "common/entry.h"
#include "common/err.h"

struct mfs_stage;
struct mfs_stage_writer;

/* Read len bytes at off of the remote file e (a commit's blob, e->size
 * bytes) into buf: return len or a negative errno with *err set.  Called
 * for extents whose source is a remote blob. */
typedef ssize_t (*mfs_stage_base_read_fn)(void *ctx, const struct mfs_entry *e, uint64_t off,
                                          size_t len, void *buf, struct mfs_err *err);

/* Open the stage of (repo, revision) in the cache database of cache_dir
 * (made by mfs_cache_open; the stage uses its own connection and its own
 * tables).  base_read/base_ctx serve remote-blob extents (NULL: such reads
 * fail with -EIO).  Deletes orphaned data objects (drafts of a killed
 * process).  OUT: *sp, close with mfs_stage_close().  -EBUSY: another
 * open stage (another process, or this one) holds it; the reason names the
 * holder's pid. */
int mfs_stage_open(const char *cache_dir, const struct mfs_cache_repo *repo,
                   const char *revision, mfs_stage_base_read_fn base_read, void *base_ctx,
                   struct mfs_stage **sp, struct mfs_err *err);

/* Close *sp (writers must be closed first) and set it to NULL. */
void mfs_stage_close(struct mfs_stage **sp);

enum mfs_stage_kind {
    MFS_STAGE_FILE = 1,
    MFS_STAGE_DELETED = 2,
    MFS_STAGE_DIR = 3,
};

struct mfs_stage_entry {
    char *path;                             /* owned */
    enum mfs_stage_kind kind;
    uint64_t size;                          /* FILE: bytes */
    uint32_t mode;                          /* FILE/DIR: permission bits (0644, 0755) */
    int64_t mtime;                          /* unix seconds of the last committed change */
    uint64_t generation;                    /* mfs_stage_generation() when last changed */
    bool unchanged_remote;                  /* FILE: one extent = a whole remote blob, */
    struct mfs_entry remote;                /*   that blob (path owned); else zeroed */
    char sha256[65];                        /* FILE: 64 hex sha256 of the content when the
                                               stage knows it (written in order from offset
                                               0 by one writer, then renamed or chmodded at
                                               most), else "" */
};

/* Every entry, sorted by path (strcmp).  OUT: *ep (mfs_stage_entries_free),
 * *np. */
int mfs_stage_list(struct mfs_stage *s, struct mfs_stage_entry **ep, size_t *np,
                   struct mfs_err *err);
void mfs_stage_entries_free(struct mfs_stage_entry *e, size_t n);

/* The entry at path.  OUT: *e (release its path and remote.path with
 * mfs_stage_entries_free(e, 0)-style: free(e->path); free(e->remote.path)).
 * -ENOENT: no entry (the commit's tree decides). */
int mfs_stage_get(struct mfs_stage *s, const char *path, struct mfs_stage_entry *e,
                  struct mfs_err *err);

/* Read up to len bytes at off of the committed content of FILE entry path
 * into buf.  Returns the bytes read (fewer only at the end, 0 past it).
 * -ENOENT: no FILE entry. */
ssize_t mfs_stage_read(struct mfs_stage *s, const char *path, uint64_t off, size_t len,
                       void *buf, struct mfs_err *err);

/* One change of mfs_stage_apply(). */
enum mfs_stage_op {
    MFS_STAGE_OP_REMOVE,                    /* forget path's entry (the commit shows through) */
    MFS_STAGE_OP_WHITEOUT,                  /* path is deleted */
    MFS_STAGE_OP_MKDIR,                     /* path is a made folder (mode) */
    MFS_STAGE_OP_REMOTE,                    /* path holds remote blob `remote` unchanged */
    MFS_STAGE_OP_MOVE,                      /* path takes the content of entry `from`, which is
                                               removed (no copy of bytes) */
    MFS_STAGE_OP_CHMOD,                     /* FILE/DIR path gets mode */
};

struct mfs_stage_change {
    enum mfs_stage_op op;
    const char *path;
    const char *from;                       /* MOVE */
    const struct mfs_entry *remote;         /* REMOTE */
    uint32_t mode;                          /* MKDIR, REMOTE, CHMOD */
};

/* Apply changes[0..n) in order in one transaction: all or none (a rename
 * of a folder is one call).  -ENOENT: MOVE from a path with no FILE entry;
 * -EINVAL. */
int mfs_stage_apply(struct mfs_stage *s, const struct mfs_stage_change *changes, size_t n,
                    struct mfs_err *err);

/* Start a change of path's content.  base: the content it starts from:
 * MFS_STAGE_BASE_EMPTY (new file, O_TRUNC), MFS_STAGE_BASE_STAGED (the
 * committed FILE entry of path: -ENOENT if none) or MFS_STAGE_BASE_REMOTE
 * (remote, a commit's blob).  mode is the file's permission bits.
 * OUT: *wp. */
enum mfs_stage_base {
    MFS_STAGE_BASE_EMPTY,
    MFS_STAGE_BASE_STAGED,
    MFS_STAGE_BASE_REMOTE,
};
int mfs_stage_writer_open(struct mfs_stage *s, const char *path, enum mfs_stage_base base,
                          const struct mfs_entry *remote, uint32_t mode,
                          struct mfs_stage_writer **wp, struct mfs_err *err);

/* Write len bytes at off (a hole between the old end and off reads as
 * zeros).  Returns len.  Full chunks go to the database in batches;
 * -ENOSPC when the disk is full (the draft is then unusable: commit fails;
 * what was committed before stays). */
ssize_t mfs_stage_writer_write(struct mfs_stage_writer *w, uint64_t off, const void *data,
                               size_t len, struct mfs_err *err);

/* Link len bytes of committed FILE entry src_path, from src_off, into the
 * writer's file at off, without copying them (resharding, tensor moves).
 * The link refers to src's sources (data objects, remote blobs), not to
 * the path, so removing or replacing src_path later does not change it.
 * Returns len.  -ENOENT, -EINVAL (past src's end). */
ssize_t mfs_stage_writer_link(struct mfs_stage_writer *w, uint64_t off, const char *src_path,
                              uint64_t src_off, uint64_t len, struct mfs_err *err);

/* Link len bytes of the remote blob `remote` (a commit's file, not
 * staged), from src_off, into the writer's file at off.  Returns len.
 * -EINVAL (past its end). */
ssize_t mfs_stage_writer_link_remote(struct mfs_stage_writer *w, uint64_t off,
                                     const struct mfs_entry *remote, uint64_t src_off,
                                     uint64_t len, struct mfs_err *err);

/* Set the writer's file size (shrink drops bytes, growth adds zeros). */
int mfs_stage_writer_truncate(struct mfs_stage_writer *w, uint64_t size, struct mfs_err *err);

/* The writer's current size and a read of its current content (its own
 * uncommitted writes included). */
uint64_t mfs_stage_writer_size(const struct mfs_stage_writer *w);
ssize_t mfs_stage_writer_read(struct mfs_stage_writer *w, uint64_t off, size_t len, void *buf,
                              struct mfs_err *err);

/* Make path hold the writer's content, durably, in one transaction; the
 * writer stays open for more writes (fsync, then close).  Bumps the
 * generation.  -ENOSPC/-EIO: nothing changed.  A writer with nothing new
 * since its last successful commit (the close after an fsync) commits
 * nothing and returns 0: no new generation, so a push running meanwhile
 * does not see the file as changed again. */
int mfs_stage_writer_commit(struct mfs_stage_writer *w, struct mfs_err *err);

/* Commit writers[0..nw) (each to its own path) and apply changes[0..nc)
 * after them, all in one transaction: all or nothing.  This is how a
 * reshard replaces a checkpoint (new shards + whiteouts of old files) so
 * that a kill -9 shows either the old or the new checkpoint.  Writers with
 * nothing new are skipped; nothing at all to do returns 0 without a new
 * generation.  A writer whose flush failed (-ENOSPC) fails the whole call. */
int mfs_stage_commit(struct mfs_stage *s, struct mfs_stage_writer *const *writers, size_t nw,
                     const struct mfs_stage_change *changes, size_t nc, struct mfs_err *err);

/* Drop the writer: uncommitted writes are lost, its unreferenced data is
 * deleted.  NULL is a no-op. */
void mfs_stage_writer_close(struct mfs_stage_writer **wp);

/* A counter that grows with every committed change (apply, writer
 * commit); 0 for an empty, never-changed stage. */
uint64_t mfs_stage_generation(struct mfs_stage *s);

/* Remove every entry whose generation is <= gen (what a push committed);
 * later changes stay.  One transaction.  The data no longer referenced is
 * deleted soon after by the stage's background thread in small
 * transactions (a 5 GB file's rows take seconds to delete, which a push
 * does not wait for); unreachable meanwhile, and collected at the next
 * mfs_stage_open() if the process dies first. */
int mfs_stage_clear_upto(struct mfs_stage *s, uint64_t gen, struct mfs_err *err);

/* Number of entries and bytes of FILE entries (for .modelfs/status). */
void mfs_stage_totals(struct mfs_stage *s, size_t *n_entries, uint64_t *file_bytes);

#endif
