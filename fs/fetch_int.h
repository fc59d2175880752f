/*
 * fs/fetch_int.h - what fs/fetch.c (runs, single flight, checksums) and
 * fs/prefetch.c (streams, window, worker pool) share.  Private to fs/.
 *
 * A "run" is one Range GET of consecutive chunks [first, first+count) of a
 * blob.  While it is in f->runs, any reader needing one of its chunks waits
 * on f->cond for run->ready to pass that chunk instead of fetching it again
 * (single flight).  A run is referenced by its executor and by each waiter;
 * the last mfs_fetch_run_put() frees it.  Everything in struct mfs_fetch
 * below "lock" is guarded by it.
 */
#ifndef MFS_FS_FETCH_INT_H
#define MFS_FS_FETCH_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "common/hash.h"
#include "fs/fetch.h"

#define MFS_FETCH_PIECE (8u << 20)          /* bytes per Range GET at most */
#define MFS_FETCH_BATCH (4u << 20)          /* bytes stored per cache transaction */

struct mfs_fetch_run {
    char cid[65];                           /* content id */
    char *path;                             /* owned repo path (for the URL) */
    uint64_t size;                          /* blob size in bytes */
    bool is_lfs;                            /* checked by sha256, else git blob id */
    uint64_t first;                         /* first chunk index */
    uint64_t count;                         /* chunks */
    uint64_t ready;                         /* chunks from first stored so far */
    uint64_t bytes_done;                    /* body bytes received */
    bool finished;                          /* the GET is over (ok or not) */
    struct mfs_err err;                     /* its failure, code 0 if none */
    unsigned refs;                          /* executor + waiters */
    struct mfs_fetch_run *next;             /* f->runs link while not finished */
};

struct mfs_fetch_job {
    struct mfs_fetch_run *run;              /* a registered run to execute, or NULL */
    struct mfs_entry e;                     /* prefetch: the file (path owned) */
    uint64_t first;                         /* prefetch: first chunk */
    uint64_t last;                          /* prefetch: last chunk, inclusive */
    struct mfs_fetch_job *next;
};

struct mfs_fetch_stream {
    uint64_t id;                            /* the caller's stream cookie */
    char cid[65];                           /* the file it reads */
    uint64_t last_off;                      /* offset of the last read */
    uint64_t next_off;                      /* end of the last read */
    uint64_t window;                        /* prefetch window in bytes, 0 = off */
    uint64_t ahead_end;                     /* prefetch queued up to here (bytes) */
    uint64_t bound;                         /* never prefetch past this offset, 0 = EOF */
    unsigned reads;                         /* reads seen */
    struct mfs_fetch_stream *next;
};

struct mfs_fetch_verify {
    char cid[65];                           /* blob being hashed */
    bool done;
    struct mfs_err err;                     /* result, code 0 = ok or not checkable */
    unsigned refs;                          /* verifier + waiters */
    struct mfs_fetch_verify *next;
};

/* A stored batch that arrived ahead of the hash front, kept in memory
 * until the front reaches it (so it is hashed from memory, not read back
 * from the cache).  Sorted by off in its hashing's list. */
struct mfs_fetch_parked {
    uint64_t off;                           /* blob offset of data[0], bytes */
    size_t len;                             /* bytes in data */
    unsigned char *data;                    /* owned (the run's batch buffer) */
    struct mfs_fetch_parked *next;
};

/* A blob's checksum computed while it arrives: bytes [0, next_off) are in
 * h.  Fed, one thread at a time (busy), by the run that stores the bytes
 * at next_off or by the reader that reads them (fs/fetch.c
 * fetch_hash_feed); taken by the verifier, which only has to hash the
 * rest.  Trusted only while the cache's epoch has not moved (no chunk was
 * deleted, so none was refetched with other bytes). */
struct mfs_fetch_hashing {
    char cid[65];
    struct mfs_hash *h;                     /* sha256, or git blob id for regular files */
    uint64_t next_off;                      /* bytes hashed: [0, next_off) */
    uint64_t size;                          /* blob bytes */
    uint64_t epoch;                         /* mfs_cache_epoch() when started */
    bool busy;                              /* a thread is feeding it (outside f->lock) */
    bool again;                             /* a feed came while busy: the feeder looks again */
    bool catching;                          /* the feeder reads back from the cache */
    struct mfs_fetch_parked *parked;        /* batches ahead of next_off, by offset */
    uint64_t parked_bytes;                  /* their bytes */
    struct mfs_fetch_hashing *next;
};

struct mfs_fetch {
    struct mfs_hub *hub;                    /* borrowed; NULL = offline */
    struct mfs_cache *cache;                /* borrowed */
    char *repo_id;                          /* owned */
    char *commit;                           /* owned */
    unsigned max_parallel;                  /* prefetch workers */
    uint64_t max_window;                    /* bytes */
    uint64_t room;                          /* a quarter of the cache bound, 0 = no bound */
    mfs_fetch_log_fn log;
    void *log_ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;                    /* run progress, verify results */
    struct mfs_fetch_run *runs;             /* runs in flight */
    struct mfs_fetch_verify *verifies;      /* checksums in progress */
    struct mfs_fetch_hashing *hashings;     /* checksums being computed on arrival */
    unsigned nhashings;
    uint64_t parked_bytes;                  /* all hashings' parked bytes, <= max_window / 2 */
    struct mfs_fetch_stream *streams;       /* sequential-read state */
    unsigned nstreams;
    pthread_cond_t job_cond;                /* a job was queued, or stopping */
    struct mfs_fetch_job *jobs;             /* queue head */
    struct mfs_fetch_job *jobs_tail;
    unsigned njobs;                         /* prefetch jobs queued */
    bool stopping;                          /* mfs_fetch_free started */
    pthread_t *workers;                     /* max_parallel threads */
    unsigned nworkers;                      /* started */
};

/* Make chunks [first, last] of e present.  wait: also wait for chunks that
 * other runs are fetching (a reader); otherwise skip them (prefetch).
 * split: cut long runs into MFS_FETCH_PIECE GETs run by the workers in
 * parallel (never from a worker, which could wait on itself).  -EIO,
 * -EACCES, -ENOENT, -ENOSPC with the reason. */
int mfs_fetch_ensure(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t first,
                     uint64_t last, bool wait, bool split, struct mfs_err *err);

/* Execute a registered run (its GET), then mark it finished and drop the
 * executor's reference.  Any thread. */
void mfs_fetch_run_exec(struct mfs_fetch *f, struct mfs_fetch_run *run);

/* Finish run with err without fetching (shutdown), dropping the executor's
 * reference.  Caller holds f->lock. */
void mfs_fetch_run_abandon_locked(struct mfs_fetch *f, struct mfs_fetch_run *run,
                                  const char *why);

/* Drop a reference; the last one frees run.  Caller holds f->lock. */
void mfs_fetch_run_put_locked(struct mfs_fetch_run *run);

/* prefetch.c: start/stop the workers; note a read of stream (sequential
 * detection, window, queue prefetch jobs); queue a run at the head. */
int mfs_fetch_pf_start(struct mfs_fetch *f, struct mfs_err *err);
void mfs_fetch_pf_stop(struct mfs_fetch *f);
void mfs_fetch_pf_note(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t stream,
                       uint64_t off, size_t len);
void mfs_fetch_pf_queue_run(struct mfs_fetch *f, struct mfs_fetch_run *run);

#endif
