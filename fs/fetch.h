/*
 * fs/fetch.h - reading repo files through the cache: a miss is fetched
 * from the Hub with Range GETs, stored as chunks, then served.
 *
 * This is where the three lower layers meet (hub -> cache -> views): the
 * FUSE view and the model loader both read file bytes only through here.
 * Policy (fs/prefetch.c opens with the algorithm):
 *   - a miss fetches only the missing chunks covering the request (one
 *     Range GET per run of consecutive missing chunks);
 *   - concurrent readers of a missing chunk share one fetch (single flight);
 *   - a sequential reader of a file triggers parallel prefetch of the next
 *     chunks in a window that grows (doubling up to a bound) while the
 *     reads stay sequential and resets on a seek;
 *   - when every chunk of an LFS file has been fetched, its sha256 is
 *     checked once; a mismatch drops the chunks, logs the cause and the
 *     read returns -EIO (never wrong bytes).
 *   - small files are fetched whole on their first miss (LFS files up to
 *     1 MiB, regular git files up to 16 MiB) and checked before any byte
 *     is returned; regular files are checked against their git blob id;
 *   - read-ahead and whole-file fetches are capped at a quarter of the
 *     cache's max_bytes, so they never evict what a reader waits for;
 *   - offline: misses are -EIO with "offline and not cached".
 * Memory: one 4 MiB batch buffer per GET in flight (at most max_parallel
 * prefetch GETs, plus the readers' own), and stored batches that arrived
 * ahead of the checksum's front, kept until it reaches them (at most half
 * of max_window in all: 32 MiB by default).
 *
 * Threads: any thread may call any function.
 */
#ifndef MFS_FS_FETCH_H
#define MFS_FS_FETCH_H

#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "common/entry.h"
#include "common/err.h"
#include "hub/hub.h"

struct mfs_fetch;

/* Called for every error worth a line in .modelfs/log (path, cause). */
typedef void (*mfs_fetch_log_fn)(void *ctx, const char *path, const struct mfs_err *err);

struct mfs_fetch_cfg {
    struct mfs_hub *hub;                    /* borrowed; NULL = offline */
    struct mfs_cache *cache;                /* borrowed */
    const char *repo_id;                    /* copied */
    const char *commit;                     /* copied; 40 hex */
    unsigned max_parallel;                  /* concurrent Range GETs; 0 = 8 */
    uint64_t max_window;                    /* prefetch bound in bytes; 0 = 64 MiB */
    mfs_fetch_log_fn log;                   /* may be NULL */
    void *log_ctx;
};

/* OUT: *fp, free with mfs_fetch_free().  -ENOMEM. */
int mfs_fetch_new(const struct mfs_fetch_cfg *cfg, struct mfs_fetch **fp, struct mfs_err *err);

/* Stop prefetch workers, wait for them, free *fp, set it to NULL. */
void mfs_fetch_free(struct mfs_fetch **fp);

/* Read up to len bytes at off of the file e (a file entry of the mounted
 * commit; e is borrowed for the call) into buf.  Returns bytes read: len,
 * or fewer only at end of file (0 at or past it).  stream is a per-open
 * handle cookie (e.g. the FUSE fh) used to detect sequential reading; 0
 * means "no prefetch".  -EIO (fetch failed, checksum mismatch, offline
 * miss), -EACCES, -ENOENT (the file vanished on the server), -ENOSPC (the
 * cache's disk is full), -EISDIR.  Failures are also passed to cfg.log. */
ssize_t mfs_fetch_read(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t stream,
                       uint64_t off, size_t len, void *buf, struct mfs_err *err);

/* Never prefetch bytes at or past end (an offset in the file) for stream:
 * set at open of tensors/NAME to the tensor's end in its shard, so that
 * reading one tensor of S bytes fetches at most about S + 1 MiB.  A stream
 * with a bound also starts prefetching on its first read, wherever it is.
 * Any thread; stream 0 is ignored. */
void mfs_fetch_stream_bound(struct mfs_fetch *f, uint64_t stream, uint64_t end);

/* Forget the sequential-read state of stream (on release). */
void mfs_fetch_stream_end(struct mfs_fetch *f, uint64_t stream);

/* Transfers in progress, for .modelfs/status: fills up to max items and
 * returns the number in progress. */
struct mfs_fetch_transfer {
    char path[256];                         /* repo path */
    uint64_t done;                          /* bytes received so far */
    uint64_t total;                         /* bytes requested */
};
size_t mfs_fetch_transfers(struct mfs_fetch *f, struct mfs_fetch_transfer *out, size_t max);

#endif
