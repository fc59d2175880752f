/*
 * tests/model/test_readahead.c - the loader's read-ahead thread
 * (model/readahead.c) over a fake io serving a GPT-2-shaped checkpoint of
 * 456 MiB that exists only as a function of the offset: the loader's reads
 * pass through unchanged and are counted; the read-ahead walks the tensors
 * in state-dict order (wte first, although it is last in the file); it
 * stays within its window of the loader; it reads every chunk from a slow
 * (disk-like) source and only probes a fast (memory-like) one; a failing
 * read ends it quietly; stopping it while it waits on the window returns.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model/model_int.h"

#define MiB ((uint64_t)1 << 20)
#define N_LAYERS 12

struct fake {
    pthread_t main;                         /* the "loader" thread */
    atomic_ullong ahead_bytes;              /* bytes the other thread read */
    atomic_ullong first_off;                /* its first read's offset + 1, or 0 */
    atomic_int slow;                        /* sleep 5 ms per read (about 0.8 GB/s) */
    atomic_ullong fail_lo;                  /* reads overlapping [fail_lo, fail_hi) fail */
    atomic_ullong fail_hi;
};

static unsigned char byte_at(uint64_t off)
{
    return (unsigned char)((off >> 12) * 7 + 1);
}

static ssize_t fake_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    struct fake *f = ctx;
    size_t done = 0;

    if (strcmp(path, "model.safetensors"))
        return mfs_err_set(err, -ENOENT, "no file '%s'", path);
    if (off < atomic_load(&f->fail_hi) && off + len > atomic_load(&f->fail_lo))
        return mfs_err_set(err, -EIO, "injected failure at %llu", (unsigned long long)off);
    while (done < len) {                    /* 4 KiB blocks of one value each */
        uint64_t o = off + done;
        size_t n = (size_t)(4096 - (o & 4095));

        if (n > len - done)
            n = len - done;
        memset((char *)buf + done, byte_at(o), n);
        done += n;
    }
    if (!pthread_equal(pthread_self(), f->main)) {
        unsigned long long zero = 0;

        atomic_compare_exchange_strong(&f->first_off, &zero, off + 1);
        atomic_fetch_add(&f->ahead_bytes, len);
        if (atomic_load(&f->slow))
            usleep(5000);
    }
    return (ssize_t)len;
}

/* A GPT-2-named checkpoint: h.N.attn.c_attn.weight (32 MiB each) in file
 * order h.0, h.1, h.10, h.11, h.2..., then wte (64 MiB) last, as
 * safetensors sorts names; plus one small bias per layer. */
struct ckpt_fix {
    struct mfs_ckpt ckpt;
    struct mfs_ckpt_tensor t[2 * N_LAYERS + 1];
    char names[2 * N_LAYERS + 1][64];
    uint64_t total;
};

static void fix_init(struct ckpt_fix *fx)
{
    const char *order[N_LAYERS] = { "0", "1", "10", "11", "2", "3", "4", "5", "6", "7", "8",
                                    "9" };
    uint64_t off = 4096;
    size_t k = 0;
    int i;

    memset(fx, 0, sizeof(*fx));
    for (i = 0; i < N_LAYERS; i++) {
        int b;

        for (b = 0; b < 2; b++) {
            struct mfs_ckpt_tensor *t = &fx->t[k];

            snprintf(fx->names[k], sizeof(fx->names[k]), "transformer.h.%s.attn.c_attn.%s",
                     order[i], b ? "weight" : "bias");
            t->name = fx->names[k];
            t->dtype = MFS_ST_F32;
            t->ndim = 1;
            t->nbytes = b ? 32 * MiB : 9216;
            t->shape[0] = t->nbytes / 4;
            t->file = "model.safetensors";
            t->offset = off;
            off += t->nbytes;
            k++;
        }
    }
    snprintf(fx->names[k], sizeof(fx->names[k]), "transformer.wte.weight");
    fx->t[k].name = fx->names[k];
    fx->t[k].dtype = MFS_ST_F32;
    fx->t[k].ndim = 1;
    fx->t[k].nbytes = 64 * MiB;
    fx->t[k].shape[0] = 16 * MiB;
    fx->t[k].file = "model.safetensors";
    fx->t[k].offset = off;
    k++;
    fx->ckpt.n_tensors = k;
    fx->ckpt.tensors = fx->t;
    for (k = 0; k < fx->ckpt.n_tensors; k++)
        fx->total += fx->t[k].nbytes;
}

static const char CONFIG[] = "{\"model_type\":\"gpt2\",\"architectures\":[\"GPT2LMHeadModel\"]}";

/* Wait until the read-ahead has read nothing new for 500 ms; its total. */
static uint64_t settle(struct fake *f)
{
    uint64_t last = atomic_load(&f->ahead_bytes);
    int still = 0;
    int i;

    for (i = 0; i < 300 && still < 10; i++) {
        uint64_t now;

        usleep(50 * 1000);
        now = atomic_load(&f->ahead_bytes);
        still = now == last ? still + 1 : 0;
        last = now;
    }
    return last;
}

/* The loader's part: read tensors [from, to) of the state-dict order
 * (wte, then h.0 .. h.11) through io in 4 MiB pieces, checking bytes. */
static int load_range(const struct ckpt_fix *fx, const struct mfs_ckpt_io *io, int from, int to)
{
    static unsigned char buf[4 << 20];
    int bad = 0;
    int i;

    for (i = from; i < to; i++) {
        const struct mfs_ckpt_tensor *t;
        char name[64];
        uint64_t done = 0;
        size_t k;

        if (i == 0)
            snprintf(name, sizeof(name), "transformer.wte.weight");
        else
            snprintf(name, sizeof(name), "transformer.h.%d.attn.c_attn.weight", i - 1);
        for (k = 0; k < fx->ckpt.n_tensors; k++)
            if (!strcmp(fx->t[k].name, name))
                break;
        t = &fx->t[k];
        while (done < t->nbytes) {
            size_t n = t->nbytes - done < sizeof(buf) ? (size_t)(t->nbytes - done) : sizeof(buf);
            struct mfs_err err = MFS_ERR_INIT;
            ssize_t got = io->read(io->ctx, t->file, t->offset + done, n, buf, &err);

            if (got != (ssize_t)n || buf[0] != byte_at(t->offset + done) ||
                buf[n - 1] != byte_at(t->offset + done + n - 1))
                bad++;
            done += n;
        }
    }
    return bad;
}

static void test_window_and_order(void)
{
    static struct ckpt_fix fx;
    struct fake f = { .main = pthread_self() };
    struct mfs_ckpt_io src = { fake_read, NULL, &f };
    struct mfs_model_readahead *ra = NULL;
    const struct mfs_ckpt_io *io;
    uint64_t a0;
    uint64_t a1;
    int rc;

    fix_init(&fx);
    atomic_store(&f.slow, 1);               /* disk-like: every chunk is read */
    rc = mfs_model_readahead_start(&fx.ckpt, &src, CONFIG, sizeof(CONFIG) - 1, &ra);
    CHECK(rc == 0 && ra, "read-ahead starts (rc %d)", rc);
    if (!ra)
        return;
    io = mfs_model_readahead_io(ra, &src);
    CHECK(io != &src, "the loader reads through the read-ahead's counting io");
    CHECK(mfs_model_readahead_io(NULL, &src) == &src, "without a read-ahead, the plain io");
    a0 = settle(&f);
    CHECK(atomic_load(&f.first_off) == fx.t[2 * N_LAYERS].offset + 1,
          "its first read is wte, first in state-dict order though last in the file "
          "(offset %llu)", (unsigned long long)atomic_load(&f.first_off) - 1);
    CHECK(a0 <= MFS_MODEL_RA_WINDOW && a0 + MFS_MODEL_RA_CHUNK > MFS_MODEL_RA_WINDOW,
          "with the loader idle it fills its window and waits: %llu MiB ahead",
          (unsigned long long)(a0 / MiB));
    CHECK(load_range(&fx, io, 0, 3) == 0, "the loader's reads pass through unchanged");
    a1 = settle(&f);
    CHECK(a1 <= MFS_MODEL_RA_WINDOW + 128 * MiB &&
          a1 + MFS_MODEL_RA_CHUNK > a0 + 128 * MiB - 9216 * 3,
          "128 MiB read by the loader move the window by as much: %llu -> %llu MiB",
          (unsigned long long)(a0 / MiB), (unsigned long long)(a1 / MiB));
    CHECK(load_range(&fx, io, 3, N_LAYERS + 1) == 0, "the rest of the loader's reads are intact");
    a1 = settle(&f);
    CHECK(a1 == fx.total, "from a slow source it reads every byte once: %llu of %llu",
          (unsigned long long)a1, (unsigned long long)fx.total);
    mfs_model_readahead_stop(&ra);
    CHECK(ra == NULL, "stop clears the handle");
}

static void test_fast_source_probes(void)
{
    static struct ckpt_fix fx;
    struct fake f = { .main = pthread_self() };
    struct mfs_ckpt_io src = { fake_read, NULL, &f };
    struct mfs_model_readahead *ra = NULL;
    uint64_t got;
    int rc;

    fix_init(&fx);
    rc = mfs_model_readahead_start(&fx.ckpt, &src, CONFIG, sizeof(CONFIG) - 1, &ra);
    CHECK(rc == 0, "read-ahead starts on a fast source");
    CHECK(load_range(&fx, mfs_model_readahead_io(ra, &src), 0, N_LAYERS + 1) == 0,
          "loader reads intact");
    got = settle(&f);
    mfs_model_readahead_stop(&ra);
    /* memset-speed reads (>= 3 GB/s) look like the page cache: a warm
     * load should not pay a second copy of the model. */
    CHECK(got > 0 && got < fx.total / 2, "from a memory-fast source it only probes: %llu of "
          "%llu MiB", (unsigned long long)(got / MiB), (unsigned long long)(fx.total / MiB));
}

static void test_failure_and_stop(void)
{
    static struct ckpt_fix fx;
    struct fake f = { .main = pthread_self() };
    struct mfs_ckpt_io src = { fake_read, NULL, &f };
    struct mfs_model_readahead *ra = NULL;
    uint64_t a0;
    int rc;

    fix_init(&fx);
    atomic_store(&f.slow, 1);
    /* h.2's weight cannot be read: wte, h.0 and h.1 read fine. */
    atomic_store(&f.fail_lo, fx.t[9].offset);
    atomic_store(&f.fail_hi, fx.t[9].offset + 1);
    rc = mfs_model_readahead_start(&fx.ckpt, &src, CONFIG, sizeof(CONFIG) - 1, &ra);
    CHECK(rc == 0, "read-ahead starts");
    CHECK(load_range(&fx, mfs_model_readahead_io(ra, &src), 0, 2) == 0,
          "the loader's reads before the bad range work");
    a0 = settle(&f);
    CHECK(a0 >= 128 * MiB && a0 < 129 * MiB, "a failing read ends the read-ahead quietly, "
          "after wte, h.0 and h.1 (%llu bytes read)", (unsigned long long)a0);
    mfs_model_readahead_stop(&ra);
    CHECK(ra == NULL, "and it stops");

    /* Stopped while it waits for the loader (window full). */
    memset(&f, 0, sizeof(f));
    f.main = pthread_self();
    atomic_store(&f.slow, 1);
    rc = mfs_model_readahead_start(&fx.ckpt, &src, CONFIG, sizeof(CONFIG) - 1, &ra);
    CHECK(rc == 0, "read-ahead starts again");
    a0 = settle(&f);
    mfs_model_readahead_stop(&ra);
    CHECK(ra == NULL && a0 <= MFS_MODEL_RA_WINDOW, "stop returns while it waits on its window");

    /* An unknown architecture still reads ahead, in name order. */
    memset(&f, 0, sizeof(f));
    f.main = pthread_self();
    rc = mfs_model_readahead_start(&fx.ckpt, &src, "{}", 2, &ra);
    CHECK(rc == 0, "read-ahead starts without a known model_type");
    settle(&f);
    CHECK(atomic_load(&f.first_off) == fx.t[0].offset + 1,
          "and reads in natural name order (h.0 first)");
    mfs_model_readahead_stop(&ra);
}

int main(void)
{
    test_window_and_order();
    test_fast_source_probes();
    test_failure_and_stop();
    return check_done();
}
