/*
 * fs/fetch.c - reads through the cache, misses from the Hub (fs/fetch.h).
 *
 * A read: (1) note it for prefetch (fs/prefetch.c); (2) make the chunks it
 * covers present: chunks already stored are skipped, chunks another run is
 * fetching are waited for (single flight, fs/fetch_int.h), the rest are
 * grouped into runs of consecutive chunks, one Range GET each (long runs
 * cut into MFS_FETCH_PIECE GETs done in parallel by the workers); (3) if the
 * blob is now complete and not yet verified, hash it once (sha256 for LFS,
 * the git blob id otherwise): a mismatch drops every chunk, logs, and the
 * read fails with -EIO; (4) copy the bytes out of the cache.  If chunks
 * vanish between (2) and (4) (eviction, a concurrent drop), the read starts
 * over, a bounded number of times.
 *
 * Small files are fetched whole on their first miss (LFS files up to 1 MiB,
 * regular git files up to 16 MiB), so their checksum is checked before any
 * byte of them is returned.
 *
 * A run's GET streams into a MFS_FETCH_BATCH buffer that is stored as
 * chunk rows in one transaction whenever it fills, and waiters are woken
 * per batch, so a reader waits for its batch, not for the whole GET.  The
 * batch is 4 MiB because every commit also rewrites a few 64 KiB pages of
 * metadata (a chunks leaf, the LRU index, the blob row): at 1 MiB that was a
 * quarter more WAL bytes than data.  The checksum of a blob is computed
 * from these batches as they are stored, in order; a batch that lands
 * ahead of the hash front is parked until the front reaches it
 * (fetch_hash_feed).
 * Memory: one batch buffer per GET in flight (smaller for a short run),
 * plus the parked batches (at most max_window / FETCH_PARK_SHARE bytes).
 */
#include "fs/fetch_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"

#define FETCH_WHOLE_LFS (1u << 20)          /* LFS files fetched whole on a miss, bytes */
#define FETCH_WHOLE_GIT (16u << 20)         /* regular files fetched whole on a miss, bytes */
#define FETCH_ROUNDS 3                      /* read attempts when chunks vanish meanwhile */
#define FETCH_HASH_STEP (1u << 20)          /* bytes read per step while hashing */

static uint64_t fetch_nchunks(uint64_t size)
{
    return (size + MFS_CACHE_CHUNK - 1) / MFS_CACHE_CHUNK;
}

void mfs_fetch_run_put_locked(struct mfs_fetch_run *run)
{
    if (!run || --run->refs > 0)
        return;
    free(run->path);
    free(run);
}

static void fetch_run_unlink_locked(struct mfs_fetch *f, struct mfs_fetch_run *run)
{
    struct mfs_fetch_run **pp;

    for (pp = &f->runs; *pp; pp = &(*pp)->next)
        if (*pp == run) {
            *pp = run->next;
            run->next = NULL;
            return;
        }
}

void mfs_fetch_run_abandon_locked(struct mfs_fetch *f, struct mfs_fetch_run *run,
                                  const char *why)
{
    mfs_err_set(&run->err, -EIO, "cannot fetch '%s': %s", run->path, why);
    run->finished = true;
    fetch_run_unlink_locked(f, run);
    pthread_cond_broadcast(&f->cond);
    mfs_fetch_run_put_locked(run);
}

/* The run covering chunk idx of cid that is still in flight, or NULL. */
static struct mfs_fetch_run *fetch_run_find_locked(struct mfs_fetch *f, const char *cid,
                                                   uint64_t idx)
{
    struct mfs_fetch_run *r;

    for (r = f->runs; r; r = r->next)
        if (!r->finished && idx >= r->first && idx < r->first + r->count &&
            !strcmp(r->cid, cid))
            return r;
    return NULL;
}

static struct mfs_fetch_run *fetch_run_new_locked(struct mfs_fetch *f, const struct mfs_entry *e,
                                                  uint64_t first, uint64_t count)
{
    struct mfs_fetch_run *run = calloc(1, sizeof(*run));

    if (!run)
        return NULL;
    run->path = strdup(e->path);
    if (!run->path) {
        free(run);
        return NULL;
    }
    snprintf(run->cid, sizeof(run->cid), "%s", mfs_entry_content_id(e));
    run->size = e->size;
    run->is_lfs = e->is_lfs;
    run->first = first;
    run->count = count;
    run->refs = 1;                          /* the executor's */
    run->next = f->runs;
    f->runs = run;
    return run;
}

struct fetch_sink {
    struct mfs_fetch *f;
    struct mfs_fetch_run *run;
    bool is_lfs;                            /* sha256, else git blob id */
    unsigned char *buf;                     /* cap bytes */
    size_t cap;                             /* MFS_FETCH_BATCH, or less for a short run */
    size_t fill;                            /* bytes in buf */
    uint64_t next_idx;                      /* chunk index of buf[0] */
    struct mfs_err err;                     /* a cache failure */
};

#define FETCH_MAX_HASHINGS 64               /* blobs hashed on arrival at once */
#define FETCH_CATCHUP_CHUNKS 64             /* chunks one presence query looks at */
#define FETCH_CATCHUP_READ 4                /* chunks read back from the cache at a time */
#define FETCH_HASH_LAG 2                    /* x max_window: runs this far ahead read back */
#define FETCH_PARK_SHARE 2                  /* parked batches: at most max_window / this */

/* Start hashing cid on arrival, if there is room.  Caller holds f->lock. */
static struct mfs_fetch_hashing *fetch_hash_start_locked(struct mfs_fetch *f, const char *cid,
                                                         uint64_t size, bool is_lfs)
{
    struct mfs_fetch_hashing *hs;

    /* A blob that cannot stay whole in the cache is never verified: skip it. */
    if (f->nhashings >= FETCH_MAX_HASHINGS || (f->room && size > f->room))
        return NULL;
    hs = calloc(1, sizeof(*hs));
    if (!hs)
        return NULL;
    hs->h = is_lfs ? mfs_hash_new(MFS_HASH_SHA256) : mfs_hash_git_blob_new(size);
    if (!hs->h) {
        free(hs);
        return NULL;
    }
    snprintf(hs->cid, sizeof(hs->cid), "%s", cid);
    hs->size = size;
    hs->epoch = mfs_cache_epoch(f->cache);
    hs->next = f->hashings;
    f->hashings = hs;
    f->nhashings++;
    return hs;
}

/* Hash stored chunks from hs->next_off on, read back from the cache, up to
 * the first one missing.  Caller is hs's feeder (busy). */
static void fetch_hash_catch_up(struct mfs_fetch *f, struct mfs_fetch_hashing *hs)
{
    unsigned char present[FETCH_CATCHUP_CHUNKS];
    unsigned char *tmp = NULL;
    uint64_t nchunks = (hs->size + MFS_CACHE_CHUNK - 1) / MFS_CACHE_CHUNK;
    uint64_t k;

    while (hs->next_off < hs->size) {
        uint64_t idx = hs->next_off / MFS_CACHE_CHUNK;
        uint64_t want = nchunks - idx;
        uint64_t end;
        size_t bytes;

        if (want > FETCH_CATCHUP_CHUNKS)
            want = FETCH_CATCHUP_CHUNKS;
        if (mfs_cache_chunks_present(f->cache, hs->cid, idx, want, present, NULL) < 0)
            break;
        for (k = 0; k < want && present[k]; k++)
            ;
        if (k == 0)
            break;
        /* A few chunks per read keep the buffer small. */
        if (k > FETCH_CATCHUP_READ)
            k = FETCH_CATCHUP_READ;
        end = (idx + k) * MFS_CACHE_CHUNK < hs->size ? (idx + k) * MFS_CACHE_CHUNK : hs->size;
        bytes = (size_t)(end - hs->next_off);
        if (!tmp)
            tmp = malloc(FETCH_CATCHUP_READ * MFS_CACHE_CHUNK);
        if (!tmp)
            break;
        if (mfs_cache_get(f->cache, hs->cid, hs->next_off, bytes, tmp, NULL) != (ssize_t)bytes)
            break;
        mfs_hash_update(hs->h, tmp, bytes);
        hs->next_off = end;
    }
    free(tmp);
}

/* Park a stored batch ahead of the hash front in hs's list (sorted by
 * offset), taking the buffer *keep, if all parked batches stay within
 * max_window bytes.  Caller holds f->lock.  True if parked. */
static bool fetch_hash_park_locked(struct mfs_fetch *f, struct mfs_fetch_hashing *hs,
                                   uint64_t off, size_t len, unsigned char **keep)
{
    struct mfs_fetch_parked *pk;
    struct mfs_fetch_parked **pp;

    if (!keep || !*keep || f->parked_bytes + len > f->max_window / FETCH_PARK_SHARE)
        return false;
    pk = malloc(sizeof(*pk));
    if (!pk)
        return false;
    pk->off = off;
    pk->len = len;
    pk->data = *keep;
    *keep = NULL;
    for (pp = &hs->parked; *pp && (*pp)->off < off; pp = &(*pp)->next)
        ;
    pk->next = *pp;
    *pp = pk;
    hs->parked_bytes += len;
    f->parked_bytes += len;
    return true;
}

/* Hash, from memory, the parked batches that the front has reached, and
 * free them.  Caller is hs's feeder (busy) and holds f->lock, which is let
 * go while hashing. */
static void fetch_hash_drain_locked(struct mfs_fetch *f, struct mfs_fetch_hashing *hs)
{
    struct mfs_fetch_parked *pk;

    while (hs->parked && hs->parked->off <= hs->next_off) {
        pk = hs->parked;
        hs->parked = pk->next;
        hs->parked_bytes -= pk->len;
        f->parked_bytes -= pk->len;
        pthread_mutex_unlock(&f->lock);
        if (pk->off + pk->len > hs->next_off) {
            mfs_hash_update(hs->h, pk->data + (hs->next_off - pk->off),
                            (size_t)(pk->off + pk->len - hs->next_off));
            hs->next_off = pk->off + pk->len;
        }
        free(pk->data);
        free(pk);
        pthread_mutex_lock(&f->lock);
    }
}

/* Hash what can be hashed in order.  data holds bytes [off, off+len) of
 * the blob, just stored by a run (keep is then the run's batch buffer,
 * which may be taken: *keep set to NULL) or just read by a reader (keep
 * NULL).  The part of it at the hash's front is hashed from memory.
 *
 * Runs finish out of order (max_parallel GETs at once): a stored batch
 * ahead of the front is parked in memory (up to half max_window in all)
 * and hashed by whichever feeder brings the front to it.  So a file read
 * in order is hashed once, from memory, as it arrives; without parking,
 * the batches skipped over had to be read back from the cache (a pread
 * and a copy per byte, a quarter of the fetch workers' time).  When the
 * parking is full, a run far ahead of the front (FETCH_HASH_LAG windows)
 * reads the stored chunks back from the cache (catch_up), since a chunk
 * left behind would otherwise be hashed only by the reader that completes
 * the blob, on its critical path.  A sequential reader feeds the front as
 * it reads (the feeder of last resort).  A run never waits: if another
 * thread is feeding, it parks its batch for that feeder or tells it to
 * look again; a reader waits only for a run hashing (a few ms). */
static void fetch_hash_feed(struct mfs_fetch *f, const char *cid, uint64_t size, bool is_lfs,
                            uint64_t off, const unsigned char *data, size_t len,
                            unsigned char **keep)
{
    struct mfs_fetch_hashing *hs;
    bool stored = keep != NULL;
    bool own;
    bool catch_up = false;

    pthread_mutex_lock(&f->lock);
    for (;;) {
        for (hs = f->hashings; hs; hs = hs->next)
            if (!strcmp(hs->cid, cid))
                break;
        /* A reader's bytes are gone once it returns, and the reader is the
         * feeder of last resort: wait for a run hashing (short), not for
         * one reading back (long; it covers these bytes anyway).  hs may
         * be taken meanwhile: look it up again. */
        if (!hs || stored || !hs->busy || hs->catching)
            break;
        pthread_cond_wait(&f->cond, &f->lock);
    }
    if (!hs && off == 0 && stored)
        hs = fetch_hash_start_locked(f, cid, size, is_lfs);
    if (!hs || (hs->busy && !stored)) {
        pthread_mutex_unlock(&f->lock);
        return;
    }
    if (hs->busy) {
        /* next_off is the feeder's while busy; it drains parked batches
         * before it lets go, so ours is hashed if it is next. */
        if (!fetch_hash_park_locked(f, hs, off, len, keep))
            hs->again = true;
        pthread_mutex_unlock(&f->lock);
        return;
    }
    own = hs->next_off >= off && hs->next_off < off + len;
    if (hs->next_off >= hs->size || (!own && off + len <= hs->next_off)) {
        pthread_mutex_unlock(&f->lock);
        return;                             /* hashed already */
    }
    if (!own) {
        if (!stored || fetch_hash_park_locked(f, hs, off, len, keep)) {
            pthread_mutex_unlock(&f->lock);
            return;
        }
        catch_up = off > hs->next_off + f->max_window * FETCH_HASH_LAG;
        if (!catch_up) {
            pthread_mutex_unlock(&f->lock);
            return;
        }
    }
    hs->busy = true;
    hs->catching = catch_up;
    hs->again = false;
    pthread_mutex_unlock(&f->lock);

    if (own) {
        mfs_hash_update(hs->h, data + (hs->next_off - off), (size_t)(off + len - hs->next_off));
        hs->next_off = off + len;
    }
    if (catch_up)
        fetch_hash_catch_up(f, hs);
    pthread_mutex_lock(&f->lock);
    for (;;) {
        fetch_hash_drain_locked(f, hs);
        if (!catch_up || !hs->again || hs->next_off >= hs->size)
            break;
        hs->again = false;                  /* a chunk may have come meanwhile: look again */
        pthread_mutex_unlock(&f->lock);
        fetch_hash_catch_up(f, hs);
        pthread_mutex_lock(&f->lock);
    }
    hs->busy = false;
    hs->catching = false;
    hs->again = false;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/* Take cid's hashing state out of the list (waiting for its feeder), or NULL. */
static struct mfs_fetch_hashing *fetch_hash_take(struct mfs_fetch *f, const char *cid)
{
    struct mfs_fetch_hashing **pp;
    struct mfs_fetch_hashing *hs = NULL;

    pthread_mutex_lock(&f->lock);
    for (pp = &f->hashings; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->cid, cid))
            break;
    if (*pp) {
        hs = *pp;
        while (hs->busy)
            pthread_cond_wait(&f->cond, &f->lock);
        /* The list may have changed while we waited: unlink by value. */
        for (pp = &f->hashings; *pp && *pp != hs; pp = &(*pp)->next)
            ;
        if (*pp)
            *pp = hs->next;
        f->nhashings--;
        f->parked_bytes -= hs->parked_bytes;
    }
    pthread_mutex_unlock(&f->lock);
    return hs;
}

static void fetch_hashing_free(struct mfs_fetch_hashing *hs)
{
    if (!hs)
        return;
    while (hs->parked) {
        struct mfs_fetch_parked *pk = hs->parked;

        hs->parked = pk->next;
        free(pk->data);
        free(pk);
    }
    mfs_hash_free(hs->h);
    free(hs);
}

static int fetch_sink_flush(struct fetch_sink *s)
{
    struct mfs_fetch_run *run = s->run;
    uint64_t n;
    int rc;

    if (s->fill == 0)
        return 0;
    rc = mfs_cache_put_chunks(s->f->cache, run->cid, run->size, s->next_idx, s->buf, s->fill,
                              &s->err);
    if (rc < 0)
        return rc;
    n = (s->fill + MFS_CACHE_CHUNK - 1) / MFS_CACHE_CHUNK;
    pthread_mutex_lock(&s->f->lock);
    run->ready += n;
    pthread_cond_broadcast(&s->f->cond);
    pthread_mutex_unlock(&s->f->lock);
    fetch_hash_feed(s->f, run->cid, run->size, s->is_lfs, s->next_idx * MFS_CACHE_CHUNK, s->buf,
                    s->fill, &s->buf);
    s->next_idx += n;
    s->fill = 0;
    if (!s->buf) {
        s->buf = malloc(s->cap);            /* the last one was parked for the hash */
        if (!s->buf)
            return mfs_err_set(&s->err, -ENOMEM, "cannot fetch '%s': out of memory", run->path);
    }
    return 0;
}

static int fetch_sink(void *ctx, const void *data, size_t len)
{
    struct fetch_sink *s = ctx;
    const unsigned char *p = data;
    size_t total = len;
    int rc;

    while (len > 0) {
        size_t n = s->cap - s->fill;

        if (n > len)
            n = len;
        memcpy(s->buf + s->fill, p, n);
        s->fill += n;
        p += n;
        len -= n;
        if (s->fill == s->cap) {
            rc = fetch_sink_flush(s);
            if (rc < 0)
                return rc;
        }
    }
    pthread_mutex_lock(&s->f->lock);
    s->run->bytes_done += total;
    pthread_mutex_unlock(&s->f->lock);
    return 0;
}

void mfs_fetch_run_exec(struct mfs_fetch *f, struct mfs_fetch_run *run)
{
    struct fetch_sink s;
    struct mfs_err err = MFS_ERR_INIT;
    uint64_t off = run->first * MFS_CACHE_CHUNK;
    uint64_t end = (run->first + run->count) * MFS_CACHE_CHUNK;
    unsigned char *present = malloc(run->count);
    uint64_t k = 0;
    int rc = 0;

    /* Another run may have stored the first chunks between the caller's
     * look at the cache and the registration of this run: skip them. */
    if (present && mfs_cache_chunks_present(f->cache, run->cid, run->first, run->count,
                                            present, NULL) == 0)
        while (k < run->count && present[k])
            k++;
    free(present);
    if (k > 0) {
        pthread_mutex_lock(&f->lock);
        run->ready = k;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
    }
    memset(&s, 0, sizeof(s));
    s.f = f;
    s.run = run;
    s.next_idx = run->first + k;
    s.is_lfs = run->is_lfs;
    off += k * MFS_CACHE_CHUNK;
    if (end > run->size)
        end = run->size;
    if (k < run->count) {
        /* A short run (a tensor's few chunks) needs no full batch buffer. */
        s.cap = end - off < MFS_FETCH_BATCH ? (size_t)(end - off) : MFS_FETCH_BATCH;
        s.buf = malloc(s.cap);
    }
    if (k == run->count) {
        rc = 0;                             /* all there already */
    } else if (!s.buf) {
        rc = mfs_err_set(&err, -ENOMEM, "cannot fetch '%s': out of memory", run->path);
    } else if (!f->hub) {
        rc = mfs_err_set(&err, -EIO, "cannot read '%s': offline and not cached", run->path);
    } else {
        rc = mfs_hub_get_range(f->hub, f->repo_id, f->commit, run->path, off, end - off,
                               fetch_sink, &s, &err);
        if (rc == 0)
            rc = fetch_sink_flush(&s);
        if (rc < 0 && s.err.code < 0)
            err = s.err;                    /* the cache's reason beats "read aborted" */
        if (rc == -ENETDOWN)
            rc = mfs_err_set(&err, -EIO, "cannot read '%s': offline and not cached",
                             run->path);
        else if (rc == -ESHUTDOWN || rc == -ENOMEM)
            rc = -EIO;
        if (rc < 0 && rc != -ENOENT && rc != -EACCES && rc != -ENOSPC)
            rc = -EIO;
    }
    free(s.buf);
    pthread_mutex_lock(&f->lock);
    if (rc < 0) {
        run->err = err;
        run->err.code = rc;
    }
    run->finished = true;
    fetch_run_unlink_locked(f, run);
    pthread_cond_broadcast(&f->cond);
    mfs_fetch_run_put_locked(run);
    pthread_mutex_unlock(&f->lock);
}

/* Wait until chunks [a, b] of run are stored or the run is over.  Returns
 * 0 or the run's error.  Caller holds f->lock. */
static int fetch_wait_locked(struct mfs_fetch *f, struct mfs_fetch_run *run, uint64_t b,
                             struct mfs_err *err)
{
    while (!run->finished && run->first + run->ready <= b)
        pthread_cond_wait(&f->cond, &f->lock);
    if (run->first + run->ready > b)
        return 0;
    if (run->err.code < 0) {
        if (err)
            *err = run->err;
        return run->err.code;
    }
    return 0;                               /* finished without error: chunks were stored */
}

int mfs_fetch_ensure(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t first,
                     uint64_t last, bool wait, bool split, struct mfs_err *err)
{
    const char *cid = mfs_entry_content_id(e);
    uint64_t count = last - first + 1;
    unsigned char *present;
    struct mfs_fetch_run **mine = NULL;
    struct mfs_fetch_run **theirs = NULL;
    uint64_t *their_last = NULL;
    size_t nmine = 0;
    size_t ntheirs = 0;
    size_t i;
    uint64_t idx;
    int rc;

    present = malloc(count);
    if (!present)
        return mfs_err_set(err, -ENOMEM, "cannot read '%s': out of memory", e->path);
    rc = mfs_cache_chunks_present(f->cache, cid, first, count, present, err);
    if (rc < 0)
        goto out_free_present;
    for (idx = 0; idx < count && present[idx]; idx++)
        ;
    if (idx == count)
        goto out_free_present;              /* all there */
    /* At most one entry per chunk in either list. */
    mine = calloc(count, sizeof(*mine));
    theirs = calloc(count, sizeof(*theirs));
    their_last = calloc(count, sizeof(*their_last));
    if (!mine || !theirs || !their_last) {
        rc = mfs_err_set(err, -ENOMEM, "cannot read '%s': out of memory", e->path);
        goto out_free_lists;
    }
    pthread_mutex_lock(&f->lock);
    idx = 0;
    while (idx < count) {
        struct mfs_fetch_run *r;
        uint64_t start = idx;

        if (present[idx]) {
            idx++;
            continue;
        }
        r = fetch_run_find_locked(f, cid, first + idx);
        if (r) {
            /* Someone fetches it: wait on that run up to where it or our need ends. */
            while (idx < count && first + idx < r->first + r->count && !present[idx])
                idx++;
            if (wait) {
                r->refs++;
                theirs[ntheirs] = r;
                their_last[ntheirs++] = first + idx - 1;
            }
            continue;
        }
        while (idx < count && !present[idx] && idx - start < MFS_FETCH_PIECE / MFS_CACHE_CHUNK &&
               !fetch_run_find_locked(f, cid, first + idx))
            idx++;
        r = fetch_run_new_locked(f, e, first + start, idx - start);
        if (!r) {
            rc = mfs_err_set(err, -ENOMEM, "cannot read '%s': out of memory", e->path);
            break;
        }
        mine[nmine++] = r;
    }
    pthread_mutex_unlock(&f->lock);
    if (rc < 0) {
        /* Nothing started yet: give up the runs we registered. */
        pthread_mutex_lock(&f->lock);
        for (i = 0; i < nmine; i++)
            mfs_fetch_run_abandon_locked(f, mine[i], "out of memory");
        for (i = 0; i < ntheirs; i++)
            mfs_fetch_run_put_locked(theirs[i]);
        pthread_mutex_unlock(&f->lock);
        goto out_free_lists;
    }
    /* Our runs: keep a reference to learn their outcome; the workers take
     * all but the first when splitting, this thread runs the rest. */
    pthread_mutex_lock(&f->lock);
    for (i = 0; i < nmine; i++) {
        mine[i]->refs++;
        theirs[ntheirs] = mine[i];
        their_last[ntheirs++] = mine[i]->first + mine[i]->count - 1;
    }
    pthread_mutex_unlock(&f->lock);
    for (i = 0; i < nmine; i++) {
        if (split && i > 0 && f->nworkers > 0)
            mfs_fetch_pf_queue_run(f, mine[i]);
        else
            mfs_fetch_run_exec(f, mine[i]);
    }
    pthread_mutex_lock(&f->lock);
    for (i = 0; i < ntheirs; i++) {
        struct mfs_err werr = MFS_ERR_INIT;
        int wrc = fetch_wait_locked(f, theirs[i], their_last[i], &werr);

        if (wrc < 0 && rc == 0) {
            rc = wrc;
            if (err)
                *err = werr;
        }
        mfs_fetch_run_put_locked(theirs[i]);
    }
    pthread_mutex_unlock(&f->lock);
out_free_lists:
    free(their_last);
    free(theirs);
    free(mine);
out_free_present:
    free(present);
    return rc;
}

/* Hash the whole blob from the cache and compare with its id.  0: matched
 * (now marked verified) or could not be checked (chunks gone meanwhile);
 * -EIO: mismatch, chunks dropped. */
static int fetch_hash_blob(struct mfs_fetch *f, const struct mfs_entry *e, struct mfs_err *err)
{
    const char *cid = mfs_entry_content_id(e);
    struct mfs_fetch_hashing *hs = fetch_hash_take(f, cid);
    struct mfs_hash *h = NULL;
    unsigned char *buf;
    char hex[MFS_SHA256_HEX];
    uint64_t epoch = 0;
    uint64_t off = 0;
    int rc = 0;

    /* Most of a blob fetched in order was hashed on arrival: only the rest
     * is read back, unless chunks were deleted meanwhile. */
    if (hs && hs->epoch == mfs_cache_epoch(f->cache) && hs->size == e->size) {
        h = hs->h;
        hs->h = NULL;
        off = hs->next_off;
        epoch = hs->epoch;
    }
    fetch_hashing_free(hs);
    buf = malloc(FETCH_HASH_STEP);
    if (!h)
        h = e->is_lfs ? mfs_hash_new(MFS_HASH_SHA256) : mfs_hash_git_blob_new(e->size);
    if (!buf || !h) {
        mfs_hash_free(h);
        free(buf);
        return mfs_err_set(err, -ENOMEM, "cannot verify '%s': out of memory", e->path);
    }
    for (; off < e->size; off += FETCH_HASH_STEP) {
        size_t n = e->size - off < FETCH_HASH_STEP ? (size_t)(e->size - off) : FETCH_HASH_STEP;
        ssize_t got = mfs_cache_get(f->cache, cid, off, n, buf, err);

        if (got == -ENODATA) {
            mfs_hash_free(h);
            h = NULL;
            mfs_err_clear(err);
            goto out_free_buf;              /* evicted meanwhile: check another time */
        }
        if (got < 0) {
            rc = (int)got;
            mfs_hash_free(h);
            h = NULL;
            goto out_free_buf;
        }
        mfs_hash_update(h, buf, n);
    }
    mfs_hash_final_hex(h, hex);
    h = NULL;
    if (epoch && epoch != mfs_cache_epoch(f->cache)) {
        /* Chunks hashed on arrival may have been deleted and fetched again:
         * what was hashed is not surely what is stored; hash it all. */
        free(buf);
        return fetch_hash_blob(f, e, err);
    }
    if (!strcmp(hex, cid)) {
        rc = mfs_cache_mark_verified(f->cache, cid, err);
        if (rc == -ENODATA) {
            mfs_err_clear(err);
            rc = 0;
        }
        goto out_free_buf;
    }
    mfs_cache_drop(f->cache, cid, NULL);
    rc = mfs_err_set(err, -EIO, "checksum mismatch in '%s': expected %s %.16s..., got %.16s...",
                     e->path, e->is_lfs ? "sha256" : "git blob", cid, hex);
    if (f->log)
        f->log(f->log_ctx, e->path, err);
out_free_buf:
    free(buf);
    return rc;
}

/* If every chunk of e is stored and it was never checked, check it now,
 * once for all concurrent readers (they share the result). */
static int fetch_verify(struct mfs_fetch *f, const struct mfs_entry *e, struct mfs_err *err)
{
    const char *cid = mfs_entry_content_id(e);
    struct mfs_cache_blob_info info;
    struct mfs_fetch_verify *v;
    struct mfs_fetch_verify **pp;
    int rc;

    rc = mfs_cache_blob_info(f->cache, cid, &info, err);
    if (rc == -ENODATA) {
        mfs_err_clear(err);
        return 0;
    }
    if (rc < 0)
        return rc;
    if (info.verified || info.stored < info.size)
        return 0;
    pthread_mutex_lock(&f->lock);
    for (v = f->verifies; v; v = v->next)
        if (!strcmp(v->cid, cid))
            break;
    if (v) {
        v->refs++;
        while (!v->done)
            pthread_cond_wait(&f->cond, &f->lock);
        rc = v->err.code;
        if (rc < 0 && err)
            *err = v->err;
        if (--v->refs == 0)
            free(v);
        pthread_mutex_unlock(&f->lock);
        return rc;
    }
    v = calloc(1, sizeof(*v));
    if (!v) {
        pthread_mutex_unlock(&f->lock);
        return mfs_err_set(err, -ENOMEM, "cannot verify '%s': out of memory", e->path);
    }
    snprintf(v->cid, sizeof(v->cid), "%s", cid);
    v->refs = 1;
    v->next = f->verifies;
    f->verifies = v;
    pthread_mutex_unlock(&f->lock);

    rc = fetch_hash_blob(f, e, &v->err);
    v->err.code = rc;

    pthread_mutex_lock(&f->lock);
    for (pp = &f->verifies; *pp; pp = &(*pp)->next)
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    v->done = true;
    pthread_cond_broadcast(&f->cond);
    if (rc < 0 && err)
        *err = v->err;
    if (--v->refs == 0)
        free(v);
    pthread_mutex_unlock(&f->lock);
    return rc;
}

int mfs_fetch_new(const struct mfs_fetch_cfg *cfg, struct mfs_fetch **fp, struct mfs_err *err)
{
    struct mfs_fetch *f;
    int rc;

    *fp = NULL;
    if (!cfg->cache || !cfg->repo_id || !cfg->commit)
        return mfs_err_set(err, -EINVAL, "fetch: no cache, repo or commit given");
    f = calloc(1, sizeof(*f));
    if (!f)
        return mfs_err_set(err, -ENOMEM, "fetch: out of memory");
    f->hub = cfg->hub;
    f->cache = cfg->cache;
    f->repo_id = strdup(cfg->repo_id);
    f->commit = strdup(cfg->commit);
    if (!f->repo_id || !f->commit) {
        rc = mfs_err_set(err, -ENOMEM, "fetch: out of memory");
        goto out_free;
    }
    f->max_parallel = cfg->max_parallel ? cfg->max_parallel : 8;
    if (f->max_parallel > 64)
        f->max_parallel = 64;
    f->max_window = cfg->max_window ? cfg->max_window : (64u << 20);
    /* Read-ahead and whole-file fetches must fit in the cache with room to
     * spare, or they would evict the very chunks a reader waits for. */
    f->room = mfs_cache_max_bytes(cfg->cache) / 4;
    if (f->room && f->max_window > f->room)
        f->max_window = f->room > MFS_CACHE_CHUNK ? f->room : MFS_CACHE_CHUNK;
    f->log = cfg->log;
    f->log_ctx = cfg->log_ctx;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    pthread_cond_init(&f->job_cond, NULL);
    if (f->hub) {
        rc = mfs_fetch_pf_start(f, err);
        if (rc < 0)
            goto out_destroy;
    }
    *fp = f;
    return 0;
out_destroy:
    pthread_cond_destroy(&f->job_cond);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
out_free:
    free(f->commit);
    free(f->repo_id);
    free(f);
    return rc;
}

void mfs_fetch_free(struct mfs_fetch **fp)
{
    struct mfs_fetch *f;
    struct mfs_fetch_stream *st;

    if (!fp || !*fp)
        return;
    f = *fp;
    mfs_fetch_pf_stop(f);
    while (f->hashings) {
        struct mfs_fetch_hashing *hs = f->hashings;

        f->hashings = hs->next;
        fetch_hashing_free(hs);
    }
    while (f->streams) {
        st = f->streams;
        f->streams = st->next;
        free(st);
    }
    pthread_cond_destroy(&f->job_cond);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f->commit);
    free(f->repo_id);
    free(f);
    *fp = NULL;
}

struct direct_sink {
    unsigned char *dst;                     /* the caller's buffer */
    size_t len;                             /* bytes wanted */
    size_t got;                             /* bytes received so far */
};

static int direct_sink_fn(void *ctx, const void *data, size_t len)
{
    struct direct_sink *d = ctx;

    if (len > d->len - d->got)
        return -EIO;
    memcpy(d->dst + d->got, data, len);
    d->got += len;
    return 0;
}

/* Bytes [off, off+len) of e from the Hub into buf, bypassing the cache. */
static int fetch_direct(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t off, size_t len,
                        unsigned char *buf, struct mfs_err *err)
{
    struct direct_sink d = { buf, len, 0 };
    int rc;

    if (!f->hub)
        return mfs_err_set(err, -EIO, "cannot read '%s': offline and not cached", e->path);
    rc = mfs_hub_get_range(f->hub, f->repo_id, f->commit, e->path, off, len, direct_sink_fn, &d,
                           err);
    if (rc == 0 && d.got != len)
        rc = mfs_err_set(err, -EIO, "cannot read '%s': short answer", e->path);
    return rc;
}

/* The chunks of a read did not all stay in the cache until they were
 * copied (a cache smaller than what is read and read ahead): fetch and copy
 * one chunk at a time, so each only has to survive its own copy. */
static ssize_t fetch_read_piecewise(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t off,
                                    size_t len, unsigned char *buf, struct mfs_err *err)
{
    const char *cid = mfs_entry_content_id(e);
    size_t done = 0;

    while (done < len) {
        uint64_t pos = off + done;
        uint64_t idx = pos / MFS_CACHE_CHUNK;
        size_t n = (size_t)((idx + 1) * MFS_CACHE_CHUNK - pos);
        ssize_t rc = -ENODATA;
        int round;

        if (n > len - done)
            n = len - done;
        for (round = 0; round < FETCH_ROUNDS && rc == -ENODATA; round++) {
            rc = mfs_fetch_ensure(f, e, idx, idx, true, false, err);
            if (rc < 0) {
                if (f->log)
                    f->log(f->log_ctx, e->path, err);
                return rc;
            }
            rc = mfs_cache_get(f->cache, cid, pos, n, buf + done, err);
        }
        if (rc == -ENODATA) {
            /* The cache is too small for what is read and read ahead at
             * once: serve this piece straight from the Hub rather than
             * fail the read (the strict Range checks still hold). */
            rc = fetch_direct(f, e, pos, n, buf + done, err);
            if (rc < 0) {
                if (f->log)
                    f->log(f->log_ctx, e->path, err);
                return rc;
            }
        }
        if (rc < 0)
            return rc;
        done += n;
    }
    mfs_err_clear(err);
    return (ssize_t)len;
}

ssize_t mfs_fetch_read(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t stream,
                       uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    const char *cid = mfs_entry_content_id(e);
    struct mfs_cache_blob_info info;
    uint64_t first;
    uint64_t last;
    int round;
    ssize_t rc;

    if (e->is_dir)
        return mfs_err_set(err, -EISDIR, "cannot read '%s': a folder", e->path);
    if (off >= e->size || len == 0)
        return 0;
    if (len > e->size - off)
        len = (size_t)(e->size - off);
    if (!cid[0])
        return mfs_err_set(err, -EIO, "cannot read '%s': no content id", e->path);
    if (stream)
        mfs_fetch_pf_note(f, e, stream, off, len);
    /* Fast path: bytes already there, and the blob either verified or not
     * complete yet (a complete unverified blob is checked first). */
    if (mfs_cache_blob_info(f->cache, cid, &info, NULL) == 0 && info.size == e->size &&
        (info.verified || info.stored < info.size)) {
        rc = mfs_cache_get(f->cache, cid, off, len, buf, NULL);
        if (rc >= 0 && !info.verified)
            fetch_hash_feed(f, cid, e->size, e->is_lfs, off, buf, len, NULL);
        if (rc >= 0)
            return rc;
    }
    for (round = 0; round < FETCH_ROUNDS; round++) {
        bool whole = e->is_lfs ? e->size <= FETCH_WHOLE_LFS : e->size <= FETCH_WHOLE_GIT;

        if (f->room && e->size > f->room)
            whole = false;
        first = whole ? 0 : off / MFS_CACHE_CHUNK;
        last = whole ? fetch_nchunks(e->size) - 1 : (off + len - 1) / MFS_CACHE_CHUNK;
        rc = mfs_fetch_ensure(f, e, first, last, true, true, err);
        if (rc < 0) {
            if (f->log)
                f->log(f->log_ctx, e->path, err);
            return rc;
        }
        rc = fetch_verify(f, e, err);
        if (rc < 0)
            return rc;
        rc = mfs_cache_get(f->cache, cid, off, len, buf, err);
        if (rc >= 0)
            fetch_hash_feed(f, cid, e->size, e->is_lfs, off, buf, len, NULL);
        if (rc != -ENODATA)
            return rc;
        mfs_err_clear(err);
        if (last > first)
            return fetch_read_piecewise(f, e, off, len, buf, err);
    }
    return mfs_err_set(err, -EIO, "cannot read '%s': its chunks keep being evicted "
                       "(cache too small?)", e->path);
}

size_t mfs_fetch_transfers(struct mfs_fetch *f, struct mfs_fetch_transfer *out, size_t max)
{
    struct mfs_fetch_run *r;
    size_t n = 0;

    pthread_mutex_lock(&f->lock);
    for (r = f->runs; r; r = r->next) {
        if (n < max) {
            uint64_t end = (r->first + r->count) * MFS_CACHE_CHUNK;

            snprintf(out[n].path, sizeof(out[n].path), "%s", r->path);
            out[n].done = r->bytes_done;
            out[n].total = (end > r->size ? r->size : end) - r->first * MFS_CACHE_CHUNK;
        }
        n++;
    }
    pthread_mutex_unlock(&f->lock);
    return n;
}
