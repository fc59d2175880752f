/*
 * cache/cache.h - the local store: one SQLite database (WAL) per cache dir.
 *
 * Holds (docs/design.md, Cache): refs -> commits, commit -> file list,
 * content chunks, and (later) staged changes and settings.  Content is
 * named by its content id: the LFS sha256 or the git blob sha1, lower-case
 * hex (docs/hub-api.md section 8), so the same blob in two revisions or two
 * repos is stored and fetched once.  A blob is cut into MFS_CACHE_CHUNK-byte
 * chunks (the last one shorter); chunk i holds bytes
 * [i*MFS_CACHE_CHUNK, min(size, (i+1)*MFS_CACHE_CHUNK)).  The cache knows
 * nothing of HTTP or FUSE; a miss is not an error (-ENODATA).
 *
 * Eviction: when cached chunk bytes exceed max_bytes, least recently used
 * chunks of blobs that are not pinned are deleted (pinned = staged or
 * unpushed data, later).
 *
 * Threads: any thread may call any function; the struct serialises what
 * SQLite needs serialised (one connection per thread or a mutex: its
 * choice, invisible to callers).
 * Errors: -EIO (SQLite failure, damaged database), -ENOSPC (disk full),
 * -ENOMEM, -EACCES (dir not writable), -ENODATA (miss), with the reason in
 * *err (sqlite3_errmsg copied in).
 */
#ifndef MFS_CACHE_CACHE_H
#define MFS_CACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/entry.h"
#include "common/err.h"

#define MFS_CACHE_CHUNK (256u * 1024u)      /* bytes per chunk row */

struct mfs_cache;

/* Open (creating if needed) the cache database in dir, which is created
 * too.  max_bytes bounds cached chunk bytes (0 = no bound).  OUT: *cachep,
 * close with mfs_cache_close(). */
int mfs_cache_open(const char *dir, uint64_t max_bytes, struct mfs_cache **cachep,
                   struct mfs_err *err);

/* Close *cachep and set it to NULL.  NULL is a no-op. */
void mfs_cache_close(struct mfs_cache **cachep);

/* A repo is named by (endpoint, repo_type, repo_id): the same id on two
 * Hubs is two repos.  Content is shared across all of them. */
struct mfs_cache_repo {
    const char *endpoint;                   /* borrowed */
    const char *repo_type;                  /* "model" or "dataset" */
    const char *repo_id;                    /* "org/name" or "name" */
};

/* Remember that revision resolved to commit (40 hex) at unix time now. */
int mfs_cache_ref_put(struct mfs_cache *cache, const struct mfs_cache_repo *repo,
                      const char *revision, const char *commit, struct mfs_err *err);
/* OUT: commit (41 bytes).  -ENODATA if never resolved. */
int mfs_cache_ref_get(struct mfs_cache *cache, const struct mfs_cache_repo *repo,
                      const char *revision, char commit[41], struct mfs_err *err);

/* Store the file list of repo at commit (replacing any earlier one), with
 * the commit's time in unix seconds. */
int mfs_cache_tree_put(struct mfs_cache *cache, const struct mfs_cache_repo *repo,
                       const char *commit, int64_t commit_time,
                       const struct mfs_entry *entries, size_t n, struct mfs_err *err);
/* OUT: *entriesp (mfs_entries_free()), *np, *commit_time.  -ENODATA. */
int mfs_cache_tree_get(struct mfs_cache *cache, const struct mfs_cache_repo *repo,
                       const char *commit, struct mfs_entry **entriesp, size_t *np,
                       int64_t *commit_time, struct mfs_err *err);

/* Copy bytes [off, off+len) of blob cid into buf.  Returns len (callers
 * never ask past the blob's end).  -ENODATA if any byte is not cached. */
ssize_t mfs_cache_get(struct mfs_cache *cache, const char *cid, uint64_t off, size_t len,
                      void *buf, struct mfs_err *err);

/* True iff chunk idx of cid is stored. */
bool mfs_cache_has_chunk(struct mfs_cache *cache, const char *cid, uint64_t idx);

/* Store chunk idx of cid (blob_size bytes in all; len must be the chunk's
 * full length).  Storing a chunk twice is harmless. */
int mfs_cache_put_chunk(struct mfs_cache *cache, const char *cid, uint64_t blob_size,
                        uint64_t idx, const void *data, size_t len, struct mfs_err *err);

/* Delete every chunk of cid (after a failed checksum). */
int mfs_cache_drop(struct mfs_cache *cache, const char *cid, struct mfs_err *err);

/* Record that cid was fully fetched and matched its checksum, so it is not
 * hashed again; mfs_cache_is_verified() asks. */
int mfs_cache_mark_verified(struct mfs_cache *cache, const char *cid, struct mfs_err *err);
bool mfs_cache_is_verified(struct mfs_cache *cache, const char *cid);

/* Store consecutive whole chunks first, first+1, ... of cid (blob_size bytes
 * in all) from data[0, len) in one transaction: len must end on a chunk
 * boundary or at the blob's end.  Chunks already stored are kept.  This is
 * how the fetch layer writes one Range GET (cheap: one commit per batch).
 * -EINVAL (not whole chunks, size disagrees), -ENOSPC, -EIO. */
int mfs_cache_put_chunks(struct mfs_cache *cache, const char *cid, uint64_t blob_size,
                         uint64_t first, const void *data, size_t len, struct mfs_err *err);

/* Which of chunks [first, first+count) of cid are stored: present[i] is
 * set to 1 or 0 for chunk first+i (one query for the whole range).
 * -EIO on a database failure. */
int mfs_cache_chunks_present(struct mfs_cache *cache, const char *cid, uint64_t first,
                             uint64_t count, unsigned char *present, struct mfs_err *err);

/* What the cache holds of one blob. */
struct mfs_cache_blob_info {
    uint64_t size;                          /* the blob's size in bytes */
    uint64_t stored;                        /* chunk bytes held; == size when complete */
    bool verified;                          /* checksum matched since the last drop/evict */
    bool pinned;                            /* never evicted */
};

/* OUT: *info.  -ENODATA: no chunk of cid was ever stored; -EIO. */
int mfs_cache_blob_info(struct mfs_cache *cache, const char *cid,
                        struct mfs_cache_blob_info *info, struct mfs_err *err);

/* Pin (or unpin) cid so eviction never deletes its chunks (staged and
 * unpushed data).  -ENODATA: cid not in the cache. */
int mfs_cache_pin(struct mfs_cache *cache, const char *cid, bool pinned, struct mfs_err *err);

/* Run SQLite's integrity_check.  0 if it says "ok", else -EIO with its
 * first complaint (`modelfs cache verify`, crash tests). */
int mfs_cache_check(struct mfs_cache *cache, struct mfs_err *err);

/* The max_bytes given to mfs_cache_open (0 = no bound), so that readers
 * can size read-ahead to fit. */
uint64_t mfs_cache_max_bytes(const struct mfs_cache *cache);

/* A counter that moves whenever chunks are deleted (eviction, drop).  A
 * reader that remembers facts about stored chunks (fs/fetch.c hashes them
 * as they arrive) trusts them only while the epoch has not moved. */
uint64_t mfs_cache_epoch(struct mfs_cache *cache);

struct mfs_cache_stats {
    uint64_t hits;                          /* mfs_cache_get calls answered */
    uint64_t misses;                        /* mfs_cache_get calls that gave -ENODATA */
    uint64_t bytes_stored;                  /* chunk bytes held now */
    uint64_t bytes_evicted;                 /* chunk bytes deleted by eviction */
};
void mfs_cache_stats_get(struct mfs_cache *cache, struct mfs_cache_stats *st);

#endif
