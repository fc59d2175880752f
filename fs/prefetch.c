/*
 * fs/prefetch.c - read-ahead for sequential readers, and the worker pool.
 *
 * Algorithm (per stream, i.e. per open file handle):
 *   - A read is sequential when it starts at or after the previous read's
 *     start and no further than FETCH_SLACK past the previous read's end
 *     (FUSE may deliver a reader's requests slightly out of order), or when
 *     it is a stream's first read at offset 0 (or anywhere, for a stream
 *     with a bound: it reads one tensor from its start).
 *   - A sequential read grows the window: 1 MiB at first, then doubling on
 *     every sequential read up to max_window.  A non-sequential read (a
 *     seek) resets the window to 0 and forgets what was queued.
 *   - After each sequential read, [max(queued_end, read_end), read_end +
 *     window) is queued as prefetch jobs of `piece` bytes (window /
 *     max_parallel, between 1 and 8 MiB), once at least a piece is due (or
 *     the rest of the file is smaller).  Nothing is queued past the file's
 *     end or past the stream's bound (mfs_fetch_stream_bound: a tensor's end,
 *     so that reading one tensor fetches little more than the tensor).
 *   - max_parallel worker threads take jobs in order; each job fetches the
 *     chunks of its range that are neither cached nor being fetched (one
 *     Range GET per run).  Runs a reader splits off (fs/fetch.c) go to the
 *     head of the queue, before any prefetch.
 *   - Backpressure: at most FETCH_MAX_JOBS prefetch jobs wait in the queue;
 *     beyond that new prefetch is dropped (readers then fetch on demand).
 *     Memory per GET in flight is one MFS_FETCH_BATCH buffer.
 */
#include "fs/fetch_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_SLACK (1u << 20)              /* bytes of reordering still "sequential" */
#define FETCH_WINDOW0 (1u << 20)            /* first window, bytes */
#define FETCH_PIECE_MIN (1u << 20)          /* smallest prefetch job, bytes */
#define FETCH_MAX_JOBS 256                  /* queued prefetch jobs at most */
#define FETCH_MAX_STREAMS 1024              /* remembered streams at most */

static void fetch_job_free(struct mfs_fetch_job *job)
{
    if (!job)
        return;
    free(job->e.path);
    free(job);
}

static void *fetch_worker(void *arg)
{
    struct mfs_fetch *f = arg;
    struct mfs_fetch_job *job;

    pthread_setname_np(pthread_self(), "mfs-fetch");   /* for top/perf */
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->jobs && !f->stopping)
            pthread_cond_wait(&f->job_cond, &f->lock);
        if (f->stopping)
            break;
        job = f->jobs;
        f->jobs = job->next;
        if (!f->jobs)
            f->jobs_tail = NULL;
        if (!job->run)
            f->njobs--;
        pthread_mutex_unlock(&f->lock);
        if (job->run) {
            mfs_fetch_run_exec(f, job->run);
        } else {
            struct mfs_err err = MFS_ERR_INIT;

            /* Prefetch failures are not the reader's: it retries on demand. */
            mfs_fetch_ensure(f, &job->e, job->first, job->last, false, false, &err);
        }
        fetch_job_free(job);
        pthread_mutex_lock(&f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

int mfs_fetch_pf_start(struct mfs_fetch *f, struct mfs_err *err)
{
    unsigned i;
    int rc;

    f->workers = calloc(f->max_parallel, sizeof(*f->workers));
    if (!f->workers)
        return mfs_err_set(err, -ENOMEM, "fetch: out of memory");
    for (i = 0; i < f->max_parallel; i++) {
        rc = pthread_create(&f->workers[i], NULL, fetch_worker, f);
        if (rc != 0) {
            mfs_fetch_pf_stop(f);
            return mfs_err_set(err, -rc, "fetch: cannot start a worker: %s", strerror(rc));
        }
        f->nworkers++;
    }
    return 0;
}

void mfs_fetch_pf_stop(struct mfs_fetch *f)
{
    struct mfs_fetch_job *job;
    unsigned i;

    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_broadcast(&f->job_cond);
    pthread_mutex_unlock(&f->lock);
    for (i = 0; i < f->nworkers; i++)
        pthread_join(f->workers[i], NULL);
    f->nworkers = 0;
    free(f->workers);
    f->workers = NULL;
    pthread_mutex_lock(&f->lock);
    while (f->jobs) {
        job = f->jobs;
        f->jobs = job->next;
        if (job->run)
            mfs_fetch_run_abandon_locked(f, job->run, "shutting down");
        fetch_job_free(job);
    }
    f->jobs_tail = NULL;
    f->njobs = 0;
    pthread_mutex_unlock(&f->lock);
}

void mfs_fetch_pf_queue_run(struct mfs_fetch *f, struct mfs_fetch_run *run)
{
    struct mfs_fetch_job *job = calloc(1, sizeof(*job));

    pthread_mutex_lock(&f->lock);
    if (!job || f->stopping) {
        pthread_mutex_unlock(&f->lock);
        free(job);
        mfs_fetch_run_exec(f, run);         /* no worker to take it: do it here */
        return;
    }
    job->run = run;
    job->next = f->jobs;
    f->jobs = job;
    if (!f->jobs_tail)
        f->jobs_tail = job;
    pthread_cond_signal(&f->job_cond);
    pthread_mutex_unlock(&f->lock);
}

/* Queue chunks [first, last] of e as one prefetch job.  Caller holds f->lock. */
static void fetch_queue_prefetch_locked(struct mfs_fetch *f, const struct mfs_entry *e,
                                        uint64_t first, uint64_t last)
{
    struct mfs_fetch_job *job;

    if (f->stopping || f->njobs >= FETCH_MAX_JOBS)
        return;
    job = calloc(1, sizeof(*job));
    if (!job)
        return;
    job->e = *e;
    job->e.path = strdup(e->path);
    if (!job->e.path) {
        free(job);
        return;
    }
    job->first = first;
    job->last = last;
    if (f->jobs_tail)
        f->jobs_tail->next = job;
    else
        f->jobs = job;
    f->jobs_tail = job;
    f->njobs++;
    pthread_cond_signal(&f->job_cond);
}

static struct mfs_fetch_stream *fetch_stream_find_locked(struct mfs_fetch *f, uint64_t id,
                                                         bool create)
{
    struct mfs_fetch_stream **pp;
    struct mfs_fetch_stream *st;

    for (pp = &f->streams; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            st = *pp;
            *pp = st->next;                 /* move to the front: most recent first */
            st->next = f->streams;
            f->streams = st;
            return st;
        }
    if (!create)
        return NULL;
    if (f->nstreams >= FETCH_MAX_STREAMS) {
        /* Forget the least recently used stream (the list's tail). */
        for (pp = &f->streams; (*pp)->next; pp = &(*pp)->next)
            ;
        free(*pp);
        *pp = NULL;
        f->nstreams--;
    }
    st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->id = id;
    st->next = f->streams;
    f->streams = st;
    f->nstreams++;
    return st;
}

void mfs_fetch_pf_note(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t stream,
                       uint64_t off, size_t len)
{
    const char *cid = mfs_entry_content_id(e);
    struct mfs_fetch_stream *st;
    uint64_t end = off + len;
    uint64_t limit;
    uint64_t start;
    uint64_t want;
    uint64_t piece;
    bool seq;

    if (!f->hub || f->nworkers == 0)
        return;
    pthread_mutex_lock(&f->lock);
    st = fetch_stream_find_locked(f, stream, true);
    if (!st)
        goto out_unlock;
    if (strcmp(st->cid, cid)) {
        /* A new file on this cookie: start over (keeps a bound set before the first read). */
        uint64_t bound = st->reads == 0 ? st->bound : 0;

        snprintf(st->cid, sizeof(st->cid), "%s", cid);
        st->window = 0;
        st->ahead_end = 0;
        st->reads = 0;
        st->bound = bound;
    }
    if (st->reads == 0)
        seq = off == 0 || st->bound != 0;
    else
        seq = off >= st->last_off && off <= st->next_off + FETCH_SLACK;
    st->reads++;
    st->last_off = off;
    st->next_off = end;
    if (!seq) {
        st->window = 0;
        st->ahead_end = 0;
        goto out_unlock;
    }
    st->window = st->window ? st->window * 2 : FETCH_WINDOW0;
    if (st->window > f->max_window)
        st->window = f->max_window;
    limit = st->bound && st->bound < e->size ? st->bound : e->size;
    want = end + st->window < limit ? end + st->window : limit;
    start = st->ahead_end > end ? st->ahead_end : end;
    piece = st->window / f->max_parallel;
    if (piece < FETCH_PIECE_MIN)
        piece = FETCH_PIECE_MIN;
    if (piece > MFS_FETCH_PIECE)
        piece = MFS_FETCH_PIECE;
    if (piece > st->window)
        piece = st->window;                 /* a small cache: small read-ahead */
    if (want <= start || (want - start < piece && want < limit))
        goto out_unlock;
    /* Whole chunks: the first one the range touches up to the last one. */
    while (start < want) {
        uint64_t stop = start + piece < want ? start + piece : want;
        uint64_t c0 = start / MFS_CACHE_CHUNK;
        uint64_t c1 = (stop - 1) / MFS_CACHE_CHUNK;

        /* A chunk shared with the previous job is left to it (or to demand). */
        if (start % MFS_CACHE_CHUNK && start != end)
            c0++;
        if (c0 <= c1)
            fetch_queue_prefetch_locked(f, e, c0, c1);
        start = stop;
    }
    st->ahead_end = want;
out_unlock:
    pthread_mutex_unlock(&f->lock);
}

void mfs_fetch_stream_bound(struct mfs_fetch *f, uint64_t stream, uint64_t end)
{
    struct mfs_fetch_stream *st;

    if (!stream)
        return;
    pthread_mutex_lock(&f->lock);
    st = fetch_stream_find_locked(f, stream, true);
    if (st)
        st->bound = end;
    pthread_mutex_unlock(&f->lock);
}

void mfs_fetch_stream_end(struct mfs_fetch *f, uint64_t stream)
{
    struct mfs_fetch_stream **pp;
    struct mfs_fetch_stream *st;

    pthread_mutex_lock(&f->lock);
    for (pp = &f->streams; *pp; pp = &(*pp)->next)
        if ((*pp)->id == stream) {
            st = *pp;
            *pp = st->next;
            free(st);
            f->nstreams--;
            break;
        }
    pthread_mutex_unlock(&f->lock);
}
