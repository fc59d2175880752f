/*
 * model/readahead.c - reads a checkpoint's tensor bytes ahead of the
 * loader, on one thread, so that the disk (or the network) stays busy
 * while the loader's threads copy and transpose what they already have.
 *
 * Without it a cold load alternates: every loader thread waits for its
 * piece, then computes with no read in flight.  The read-ahead thread
 * walks the tensors in the order the architectures load them (transformers'
 * state-dict order, model/state_dict.c) and reads each through the same
 * io into a scratch buffer it throws away: what it leaves behind is the
 * cache's pages in the kernel's page cache (or the chunks in the SQLite
 * cache, when they were not there yet), where the loader's own read of
 * the same bytes finds them.  It stays at most RA_WINDOW bytes ahead of
 * what the loader has read, so a model larger than memory does not evict
 * its own next tensors.  Its failures are ignored: the loader reads the
 * same bytes and reports them.
 */
#include "model/model_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "model/shard.h"

#define RA_CHUNK MFS_MODEL_RA_CHUNK
#define RA_WINDOW MFS_MODEL_RA_WINDOW
/* A chunk read faster than this came from memory (the page cache, or the
 * loader got there first), where reading ahead only duplicates the
 * loader's copy: the thread then skips chunks, twice as many after each
 * fast probe (up to RA_SKIP_MAX), and reads every chunk again after a slow
 * one.  A warm load so costs a handful of probes.  Disks that fast are
 * rare; copies from the page cache through the cache run at 3.5-5 GB/s. */
#define RA_MEM_BPS 3e9
#define RA_SKIP_MAX 64

struct mfs_model_readahead {
    struct mfs_ckpt_io io;                  /* the loader's io: counts, then reads through */
    const struct mfs_ckpt_io *src;          /* the io both read from */
    const struct mfs_ckpt *ckpt;
    size_t *order;                          /* [ckpt->n_tensors] tensors in load order */
    char *buf;                              /* [RA_CHUNK] scratch */
    pthread_t th;
    bool started;
    pthread_mutex_t mu;                     /* guards the fields below */
    pthread_cond_t cv;                      /* consumed grew, or stop */
    uint64_t ahead;                         /* bytes read ahead so far */
    uint64_t consumed;                      /* bytes the loader has read so far */
    bool stop;
};

/* The loader's reads: counted, so the read-ahead knows how far it is. */
static ssize_t ra_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                       struct mfs_err *err)
{
    struct mfs_model_readahead *ra = ctx;
    ssize_t got = ra->src->read(ra->src->ctx, path, off, len, buf, err);

    if (got > 0) {
        pthread_mutex_lock(&ra->mu);
        ra->consumed += (uint64_t)got;
        pthread_cond_signal(&ra->cv);
        pthread_mutex_unlock(&ra->mu);
    }
    return got;
}

static void ra_log(void *ctx, const char *path, const struct mfs_err *err)
{
    struct mfs_model_readahead *ra = ctx;

    if (ra->src->log)
        ra->src->log(ra->src->ctx, path, err);
}

/* Wait until the next n bytes fit in the window; false once stopped. */
static bool ra_wait(struct mfs_model_readahead *ra, uint64_t n)
{
    bool go;

    pthread_mutex_lock(&ra->mu);
    while (!ra->stop && ra->ahead + n > ra->consumed + RA_WINDOW)
        pthread_cond_wait(&ra->cv, &ra->mu);
    go = !ra->stop;
    if (go)
        ra->ahead += n;
    pthread_mutex_unlock(&ra->mu);
    return go;
}

static void *ra_main(void *arg)
{
    struct mfs_model_readahead *ra = arg;
    unsigned skip = 0;                      /* chunks left to skip (they were in memory) */
    unsigned next_skip = 4;                 /* chunks to skip after the next fast probe */
    size_t i;

    for (i = 0; i < ra->ckpt->n_tensors; i++) {
        const struct mfs_ckpt_tensor *t = &ra->ckpt->tensors[ra->order[i]];
        uint64_t done = 0;

        while (done < t->nbytes) {
            size_t n = t->nbytes - done < RA_CHUNK ? (size_t)(t->nbytes - done) : RA_CHUNK;
            struct mfs_err err = MFS_ERR_INIT;
            double t0;
            ssize_t got;

            if (!ra_wait(ra, n))
                return NULL;
            if (skip > 0) {
                skip--;
                done += n;
                continue;
            }
            t0 = mfs_clock_s();
            got = ra->src->read(ra->src->ctx, t->file, t->offset + done, n, ra->buf, &err);
            if (got <= 0)
                return NULL;                /* the loader meets it too, and says why */
            if (got >= (ssize_t)(RA_CHUNK / 4) && (double)got > RA_MEM_BPS * (mfs_clock_s() - t0)) {
                skip = next_skip;
                next_skip = next_skip * 2 < RA_SKIP_MAX ? next_skip * 2 : RA_SKIP_MAX;
            } else if (got >= (ssize_t)(RA_CHUNK / 4)) {
                next_skip = 4;
            }
            done += (uint64_t)got;
        }
    }
    return NULL;
}

int mfs_model_readahead_start(const struct mfs_ckpt *ckpt, const struct mfs_ckpt_io *io,
                              const char *config_json, size_t config_len,
                              struct mfs_model_readahead **rap)
{
    struct mfs_model_readahead *ra;
    struct mfs_err err = MFS_ERR_INIT;
    const char **names;
    size_t i;
    int rc;

    *rap = NULL;
    ra = calloc(1, sizeof(*ra));
    if (!ra)
        return -ENOMEM;
    ra->io.read = ra_read;
    ra->io.log = ra_log;
    ra->io.ctx = ra;
    ra->src = io;
    ra->ckpt = ckpt;
    pthread_mutex_init(&ra->mu, NULL);
    pthread_cond_init(&ra->cv, NULL);
    *rap = ra;
    names = calloc(ckpt->n_tensors ? ckpt->n_tensors : 1, sizeof(*names));
    ra->order = calloc(ckpt->n_tensors ? ckpt->n_tensors : 1, sizeof(*ra->order));
    ra->buf = malloc(RA_CHUNK);
    if (!names || !ra->order || !ra->buf) {
        free(names);
        return -ENOMEM;
    }
    for (i = 0; i < ckpt->n_tensors; i++)
        names[i] = ckpt->tensors[i].name;
    rc = mfs_model_state_dict_order(config_json, config_len, names, ckpt->n_tensors, ra->order,
                                    &err);
    free(names);
    if (rc < 0)
        return rc;
    if (pthread_create(&ra->th, NULL, ra_main, ra) != 0)
        return -EAGAIN;
    ra->started = true;
    return 0;
}

const struct mfs_ckpt_io *mfs_model_readahead_io(const struct mfs_model_readahead *ra,
                                                 const struct mfs_ckpt_io *io)
{
    return ra ? &ra->io : io;
}

void mfs_model_readahead_stop(struct mfs_model_readahead **rap)
{
    struct mfs_model_readahead *ra = *rap;

    if (!ra)
        return;
    if (ra->started) {
        pthread_mutex_lock(&ra->mu);
        ra->stop = true;
        pthread_cond_signal(&ra->cv);
        pthread_mutex_unlock(&ra->mu);
        pthread_join(ra->th, NULL);
    }
    pthread_cond_destroy(&ra->cv);
    pthread_mutex_destroy(&ra->mu);
    free(ra->order);
    free(ra->buf);
    free(ra);
    *rap = NULL;
}
