/* tests/fetch/test_fetch.c - fs/fetch.c + fs/prefetch.c over a real cache
 * and the Hub double (tests/hub/mock_hub.h): every file of real model repos
 * read at odd offsets and sizes, concurrent readers, single flight counted
 * on the server, content shared between repos, offline reads, each fault
 * mode, corrupt LFS content, auth, eviction, and the prefetch bound. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "check.h"
#include "fs/fetch.h"
#include "hub/hub.h"
#include "hub/mock_hub.h"

struct env {
    struct mock_hub m;
    struct mfs_hub *hub;
    struct mfs_cache *cache;
    struct mfs_fetch *f;
    int logs;                               /* log lines */
    char last_log[256];
};

static int cache_seq;

static void on_log(void *ctx, const char *path, const struct mfs_err *err)
{
    struct env *e = ctx;

    e->logs++;
    snprintf(e->last_log, sizeof(e->last_log), "%s", err ? err->msg : "");
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void entry_of(struct mock_file *f, struct mfs_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->path = f->path;
    e->size = f->size;
    memcpy(e->oid, f->oid, 41);
    e->is_lfs = f->lfs;
    if (f->lfs)
        memcpy(e->lfs_oid, f->sha256, 65);
}

static struct mfs_fetch *fetch_for(struct env *v, struct mfs_hub *hub, const char *repo,
                                   const char *commit)
{
    struct mfs_fetch_cfg cfg = { 0 };
    struct mfs_fetch *f = NULL;

    cfg.hub = hub;
    cfg.cache = v->cache;
    cfg.repo_id = repo;
    cfg.commit = commit;
    cfg.log = on_log;
    cfg.log_ctx = v;
    mfs_fetch_new(&cfg, &f, NULL);
    return f;
}

/* A fresh cache dir and fetch; the mock keeps running. */
static void env_reset(struct env *v, uint64_t max_bytes)
{
    char dir[512];
    const char *t = getenv("MFS_TMP");

    mfs_fetch_free(&v->f);
    mfs_cache_close(&v->cache);
    snprintf(dir, sizeof(dir), "%s/cache%d", t && *t ? t : "/tmp", cache_seq++);
    mfs_cache_open(dir, max_bytes, &v->cache, NULL);
    v->f = fetch_for(v, v->hub, v->m.repo, v->m.commit);
    atomic_store(&v->m.content_requests, 0);
    atomic_store(&v->m.content_bytes, 0);
    v->logs = 0;
}

static int env_start(struct env *v, const char *model, const char *repo, long timeout_ms)
{
    struct mfs_hub_cfg cfg = { 0 };
    char dir[512];

    memset(v, 0, sizeof(*v));
    snprintf(dir, sizeof(dir), "%s/models/%s", check_data_dir(), model);
    mock_add_dir(&v->m, dir);
    if (v->m.nfiles == 0 || mock_start(&v->m, repo) < 0)
        return -1;
    cfg.endpoint = v->m.url;
    cfg.timeout_ms = timeout_ms;
    if (mfs_hub_new(&cfg, &v->hub, NULL) < 0)
        return -1;
    env_reset(v, 0);
    return v->f ? 0 : -1;
}

static void env_stop(struct env *v)
{
    mfs_fetch_free(&v->f);
    mfs_cache_close(&v->cache);
    mfs_hub_free(&v->hub);
    mock_stop(&v->m);
}

static struct mock_file *biggest(struct env *v)
{
    struct mock_file *b = &v->m.files[0];
    int i;

    for (i = 1; i < v->m.nfiles; i++)
        if (v->m.files[i].size > b->size)
            b = &v->m.files[i];
    return b;
}

/* Read all of f in odd-sized pieces (sequentially with a stream, then at
 * scattered offsets without one) and compare with the source. */
static bool read_all_odd(struct mfs_fetch *fe, struct mock_file *f, uint64_t stream,
                         struct mfs_err *err)
{
    static const size_t sizes[] = { 1, 4097, 100000, 262145, 7, 131072, 524289 };
    struct mfs_entry e;
    unsigned char *buf = malloc(600000);
    uint64_t off = 0;
    bool ok = true;
    unsigned seed = 17;
    int i = 0;

    entry_of(f, &e);
    while (ok && off < f->size) {
        size_t want = sizes[i++ % 7];
        ssize_t got = mfs_fetch_read(fe, &e, stream, off, want, buf, err);
        size_t expect = f->size - off < want ? (size_t)(f->size - off) : want;

        ok = got == (ssize_t)expect && !memcmp(buf, f->data + off, expect);
        off += expect;
    }
    for (i = 0; ok && i < 20; i++) {
        uint64_t o;
        size_t want = sizes[i % 7];
        ssize_t got;
        size_t expect;

        seed = seed * 1103515245u + 12345u;
        o = f->size ? (seed >> 4) % f->size : 0;
        expect = f->size - o < want ? (size_t)(f->size - o) : want;
        got = mfs_fetch_read(fe, &e, 0, o, want, buf, err);
        ok = got == (ssize_t)expect && !memcmp(buf, f->data + o, expect);
    }
    ok = ok && mfs_fetch_read(fe, &e, 0, f->size, 10, buf, err) == 0;
    free(buf);
    return ok;
}

static void test_models(void)
{
    static const char *const models[] = { "tiny-random-gpt2", "stories260K-hf-sharded",
                                          "tiny-random-llama" };
    size_t k;
    int i;

    for (k = 0; k < sizeof(models) / sizeof(models[0]); k++) {
        struct env v;
        int good = 0;

        if (env_start(&v, models[k], "org/m", 2000) < 0) {
            CHECK(0, "start mock for %s", models[k]);
            continue;
        }
        for (i = 0; i < v.m.nfiles; i++) {
            struct mfs_err err = MFS_ERR_INIT;
            struct mock_file *f = &v.m.files[i];
            bool ok = read_all_odd(v.f, f, 100 + (uint64_t)i, &err);

            CHECK(ok && mfs_cache_is_verified(v.cache, f->lfs ? f->sha256 : f->oid),
                  "%s/%s (%zu bytes%s) read at odd offsets, verified: %s", models[k], f->path,
                  f->size, f->lfs ? ", lfs" : "", err.msg);
            good += ok;
        }
        CHECK(good == v.m.nfiles && v.logs == 0, "%s: %d of %d files, %d log lines", models[k],
              good, v.m.nfiles, v.logs);
        env_stop(&v);
    }
}

struct reader {
    struct env *v;
    struct mock_file *f;
    uint64_t stream;
    uint64_t off;                           /* fixed offset mode when len != 0 */
    size_t len;
    pthread_barrier_t *bar;
    int bad;
};

static void *reader_main(void *p)
{
    struct reader *r = p;
    struct mfs_entry e;
    unsigned char *buf = malloc(65536);
    uint64_t off;

    entry_of(r->f, &e);
    pthread_barrier_wait(r->bar);
    if (r->len) {
        ssize_t got = mfs_fetch_read(r->v->f, &e, 0, r->off, r->len, buf, NULL);

        r->bad += got != (ssize_t)r->len || memcmp(buf, r->f->data + r->off, r->len);
    } else {
        for (off = 0; off < r->f->size; off += 65536) {
            size_t n = r->f->size - off < 65536 ? (size_t)(r->f->size - off) : 65536;
            ssize_t got = mfs_fetch_read(r->v->f, &e, r->stream, off, n, buf, NULL);

            r->bad += got != (ssize_t)n || memcmp(buf, r->f->data + off, n);
        }
    }
    free(buf);
    return NULL;
}

static int run_readers(struct env *v, struct mock_file *f, uint64_t off, size_t len)
{
    pthread_barrier_t bar;
    pthread_t t[8];
    struct reader r[8];
    int bad = 0;
    int i;

    pthread_barrier_init(&bar, NULL, 8);
    for (i = 0; i < 8; i++) {
        r[i].v = v;
        r[i].f = f;
        r[i].stream = 1000 + (uint64_t)i;
        r[i].off = off;
        r[i].len = len;
        r[i].bar = &bar;
        r[i].bad = 0;
        pthread_create(&t[i], NULL, reader_main, &r[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        bad += r[i].bad;
    }
    pthread_barrier_destroy(&bar);
    return bad;
}

static void test_concurrency(struct env *v)
{
    struct mock_file *f = biggest(v);
    long bytes;
    int bad;

    env_reset(v, 0);
    bad = run_readers(v, f, 3 * MFS_CACHE_CHUNK + 12345, 40000);
    CHECK(bad == 0 && atomic_load(&v->m.content_requests) == 1,
          "8 readers of one missing chunk at once: one GET (%ld)",
          atomic_load(&v->m.content_requests));
    env_reset(v, 0);
    bad = run_readers(v, f, 0, 0);
    bytes = atomic_load(&v->m.content_bytes);
    CHECK(bad == 0 && bytes >= (long)f->size && bytes <= (long)(f->size + f->size / 10),
          "8 concurrent sequential readers of '%s': %d bad, %ld bytes fetched for %zu", f->path,
          bad, bytes, f->size);
    CHECK(mfs_cache_is_verified(v->cache, f->sha256), "the file was verified once complete");
}

static void test_shared_and_offline(struct env *v)
{
    struct mock_file *f = biggest(v);
    struct mfs_fetch *other;
    struct mfs_fetch *off;
    struct mfs_entry e;
    struct mfs_err err = MFS_ERR_INIT;
    struct mock_file *small = NULL;
    unsigned char *buf = malloc(f->size);
    ssize_t got;
    long before;
    int i;

    env_reset(v, 0);
    entry_of(f, &e);
    got = mfs_fetch_read(v->f, &e, 1, 0, f->size, buf, &err);
    CHECK(got == (ssize_t)f->size && !memcmp(buf, f->data, f->size), "read '%s' in one call: %s",
          f->path, err.msg);
    /* "the same blob in two revisions or two repos is fetched once" */
    before = atomic_load(&v->m.content_requests);
    other = fetch_for(v, v->hub, "org/elsewhere", "c0ffee0000000000000000000000000000000002");
    got = mfs_fetch_read(other, &e, 2, 0, f->size, buf, &err);
    CHECK(got == (ssize_t)f->size && !memcmp(buf, f->data, f->size) &&
          atomic_load(&v->m.content_requests) == before,
          "same blob in another repo comes from the cache: %s", err.msg);
    mfs_fetch_free(&other);
    off = fetch_for(v, NULL, v->m.repo, v->m.commit);
    got = mfs_fetch_read(off, &e, 3, 100, 5000, buf, &err);
    CHECK(got == 5000 && !memcmp(buf, f->data + 100, 5000), "offline read of cached bytes");
    for (i = 0; i < v->m.nfiles; i++)
        if (&v->m.files[i] != f)
            small = &v->m.files[i];
    entry_of(small, &e);
    got = mfs_fetch_read(off, &e, 3, 0, 10, buf, &err);
    CHECK(got == -EIO && strstr(err.msg, "offline"), "offline miss -> -EIO: %s", err.msg);
    mfs_fetch_free(&off);
    entry_of(f, &e);
    e.path = "no-such-file.bin";
    memset(e.lfs_oid, 'e', 64);
    got = mfs_fetch_read(v->f, &e, 0, 0, 10, buf, &err);
    CHECK(got == -ENOENT, "file gone from the server -> -ENOENT: %s", err.msg);
    free(buf);
}

static void test_faults(struct env *v)
{
    static const struct { int mode; const char *name; } rows[] = {
        { MOCK_STALL, "stall" },
        { MOCK_TRUNCATE, "truncate" },
        { MOCK_IGNORE_RANGE, "200 for a range" },
        { MOCK_BAD_CRANGE, "wrong Content-Range" },
        { MOCK_503, "503" },
    };
    struct mock_file *f = biggest(v);
    struct mock_file *reg = NULL;
    struct mfs_cache_blob_info info;
    struct mfs_entry e;
    struct mfs_err err = MFS_ERR_INIT;
    unsigned char *buf = malloc(f->size);
    double t0;
    ssize_t got;
    size_t i;
    int k;

    entry_of(f, &e);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        env_reset(v, 0);
        atomic_store(&v->m.mode, rows[i].mode);
        atomic_store(&v->m.fail_count, 1000);
        memset(buf, 0, 300000);
        t0 = now_s();
        got = mfs_fetch_read(v->f, &e, 0, 1000, 300000, buf, &err);
        CHECK(got == -EIO && now_s() - t0 < 2.0 + 1.5 && v->logs > 0,
              "%s -> -EIO in %.1fs and a log line: %s", rows[i].name, now_s() - t0, err.msg);
        atomic_store(&v->m.mode, MOCK_OK);
        got = mfs_fetch_read(v->f, &e, 0, 1000, 300000, buf, &err);
        CHECK(got == 300000 && !memcmp(buf, f->data + 1000, 300000),
              "after '%s' the same read gets the right bytes", rows[i].name);
    }
    env_reset(v, 0);
    atomic_store(&v->m.mode, MOCK_503);
    atomic_store(&v->m.fail_count, 2);
    got = mfs_fetch_read(v->f, &e, 0, 0, 4096, buf, &err);
    CHECK(got == 4096 && !memcmp(buf, f->data, 4096), "two 503s are retried away: %s", err.msg);

    /* "Every fully fetched LFS file is checked against its sha256; a mismatch is an
     * error (EIO) and the bad chunks are dropped." */
    env_reset(v, 0);
    atomic_store(&v->m.mode, MOCK_CORRUPT);
    got = mfs_fetch_read(v->f, &e, 7, 0, f->size, buf, &err);
    mfs_cache_blob_info(v->cache, f->sha256, &info, NULL);
    CHECK(got == -EIO && strstr(err.msg, "checksum") && info.stored == 0 &&
          strstr(v->last_log, "checksum"), "corrupt LFS file -> -EIO, chunks dropped, logged: %s",
          err.msg);
    for (k = 0; k < v->m.nfiles; k++)
        if (!v->m.files[k].lfs && v->m.files[k].size > 100)
            reg = &v->m.files[k];
    if (reg) {
        entry_of(reg, &e);
        got = mfs_fetch_read(v->f, &e, 0, 10, 20, buf, &err);
        CHECK(got == -EIO, "corrupt small git file -> -EIO on the first read: %s", err.msg);
    }
    atomic_store(&v->m.mode, MOCK_OK);
    entry_of(f, &e);
    got = mfs_fetch_read(v->f, &e, 8, 0, f->size, buf, &err);
    CHECK(got == (ssize_t)f->size && !memcmp(buf, f->data, f->size) &&
          mfs_cache_is_verified(v->cache, f->sha256), "server fixed: refetched and verified");

    v->m.token = "hf_secret";
    env_reset(v, 0);
    got = mfs_fetch_read(v->f, &e, 0, 0, 10, buf, &err);
    CHECK(got == -ENOENT || got == -EACCES, "private repo without a token -> %zd: %s", got,
          err.msg);
    v->m.token = NULL;
    free(buf);
}

static void test_eviction_and_bound(struct env *v)
{
    struct mock_file *f = biggest(v);
    struct mfs_cache_stats st;
    struct mfs_entry e;
    struct mfs_err err = MFS_ERR_INIT;
    bool ok;
    unsigned char *buf = malloc(131072);
    uint64_t lo = 600000;
    uint64_t hi = 600000 + 1000000;
    uint64_t off;
    long bytes;
    ssize_t got;

    env_reset(v, 4 * MFS_CACHE_CHUNK);
    ok = read_all_odd(v->f, f, 55, &err);
    mfs_cache_stats_get(v->cache, &st);
    CHECK(ok && st.bytes_stored <= 4 * MFS_CACHE_CHUNK && st.bytes_evicted > 0,
          "read '%s' through a 1 MiB cache: stored %llu, evicted %llu: %s", f->path,
          (unsigned long long)st.bytes_stored, (unsigned long long)st.bytes_evicted, err.msg);

    /* A tensor-like read of S bytes fetches at most 1.1*S + 1 MiB. */
    env_reset(v, 0);
    entry_of(f, &e);
    mfs_fetch_stream_bound(v->f, 77, hi);
    ok = true;
    for (off = lo; ok && off < hi; off += 131072) {
        size_t n = hi - off < 131072 ? (size_t)(hi - off) : 131072;

        got = mfs_fetch_read(v->f, &e, 77, off, n, buf, &err);
        ok = got == (ssize_t)n && !memcmp(buf, f->data + off, n);
    }
    usleep(200000);                         /* let prefetch workers finish */
    bytes = atomic_load(&v->m.content_bytes);
    CHECK(ok && bytes <= (long)((hi - lo) * 11 / 10 + (1 << 20)),
          "bounded stream: %ld bytes fetched for a %llu-byte range", bytes,
          (unsigned long long)(hi - lo));
    mfs_fetch_stream_end(v->f, 77);
    free(buf);
}

static void test_prefetch(struct env *v)
{
    struct mock_file *f = biggest(v);
    struct mfs_fetch_transfer tr[4];
    struct mfs_entry e;
    unsigned char *buf = malloc(65536);
    uint64_t off;
    long reads = 0;
    bool ok = true;

    env_reset(v, 0);
    entry_of(f, &e);
    for (off = 0; ok && off < f->size; off += 65536, reads++) {
        size_t n = f->size - off < 65536 ? (size_t)(f->size - off) : 65536;

        ok = mfs_fetch_read(v->f, &e, 9, off, n, buf, NULL) == (ssize_t)n &&
             !memcmp(buf, f->data + off, n);
    }
    CHECK(ok && atomic_load(&v->m.content_requests) * 4 < reads,
          "sequential 64 KiB reads: %ld GETs for %ld reads (prefetch)",
          atomic_load(&v->m.content_requests), reads);
    /* Read-ahead may still be finishing its last GET: give it a moment. */
    for (off = 0; off < 50 && mfs_fetch_transfers(v->f, tr, 4) > 0; off++)
        usleep(100000);
    CHECK(mfs_fetch_transfers(v->f, tr, 4) == 0, "no transfer left in progress");
    free(buf);
}

/* The checksum of a file read sequentially is computed while it arrives
 * (by the runs that store it and by the reader, fs/fetch.c): a corrupt
 * file must still fail the read that completes it, and a good one must
 * end verified. */
static void test_sequential_verify(struct env *v)
{
    struct mock_file *f = biggest(v);
    struct mfs_cache_blob_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_entry e;
    unsigned char *buf = malloc(65536);
    uint64_t off;
    ssize_t got = 0;
    bool ok = true;
    int pass;

    entry_of(f, &e);
    for (pass = 0; pass < 2; pass++) {
        env_reset(v, 0);
        atomic_store(&v->m.mode, pass == 0 ? MOCK_CORRUPT : MOCK_OK);
        for (off = 0; off < f->size; off += 65536) {
            size_t n = f->size - off < 65536 ? (size_t)(f->size - off) : 65536;

            got = mfs_fetch_read(v->f, &e, 21, off, n, buf, &err);
            if (got != (ssize_t)n)
                break;
            if (pass == 1 && memcmp(buf, f->data + off, n))
                ok = false;
        }
        memset(&info, 0, sizeof(info));
        mfs_cache_blob_info(v->cache, f->sha256, &info, NULL);
        if (pass == 0)
            CHECK(got == -EIO && strstr(err.msg, "checksum") && info.stored < f->size,
                  "corrupt LFS file read in 64 KiB steps -> -EIO by its end (%zd): %s", got,
                  err.msg);
        else
            CHECK(ok && off >= f->size && info.verified,
                  "good LFS file read in 64 KiB steps: right bytes, verified at its end");
    }
    atomic_store(&v->m.mode, MOCK_OK);
    free(buf);
}

/* A file of many batches read sequentially: the prefetch GETs run in
 * parallel and finish out of order, so stored batches ahead of the hash
 * front are parked in memory and hashed when the front reaches them
 * (fs/fetch.c fetch_hash_feed); with a small window nothing fits in the
 * parking and runs far ahead read back from the cache instead.  Either
 * way: "Every fully fetched LFS file is checked against its sha256; a
 * mismatch is an error (EIO) and the bad chunks are dropped" (design.md),
 * and a good file ends verified with the right bytes. */
static void test_parallel_hash(void)
{
    static const uint64_t windows[] = { 0, 4u << 20 };  /* default (64 MiB), and tiny */
    size_t size = (40u << 20) + 12345;
    unsigned char *data = malloc(size);
    unsigned char *buf = malloc(1u << 20);
    struct mfs_hub_cfg hcfg = { 0 };
    struct env v;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t i;
    int w;
    int pass;

    memset(&v, 0, sizeof(v));
    for (i = 0; i + 8 <= size; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(data + i, &x, 8);
    }
    mock_add(&v.m, "big.safetensors", data, size, true);
    if (mock_start(&v.m, "org/big") < 0) {
        CHECK(0, "start mock with a 40 MiB file");
        goto out;
    }
    hcfg.endpoint = v.m.url;
    if (mfs_hub_new(&hcfg, &v.hub, NULL) < 0) {
        CHECK(0, "hub client for the mock");
        goto out;
    }
    for (w = 0; w < 2; w++) {
        for (pass = 0; pass < 2; pass++) {
            struct mfs_fetch_cfg cfg = { 0 };
            struct mfs_cache_blob_info info;
            struct mfs_err err = MFS_ERR_INIT;
            struct mfs_entry e;
            uint64_t off;
            ssize_t got = 0;
            bool same = true;

            env_reset(&v, 0);
            mfs_fetch_free(&v.f);
            cfg.hub = v.hub;
            cfg.cache = v.cache;
            cfg.repo_id = v.m.repo;
            cfg.commit = v.m.commit;
            cfg.max_window = windows[w];
            mfs_fetch_new(&cfg, &v.f, NULL);
            entry_of(&v.m.files[0], &e);
            atomic_store(&v.m.mode, pass == 0 ? MOCK_CORRUPT : MOCK_OK);
            for (off = 0; v.f && off < size; off += 1u << 20) {
                size_t n = size - off < (1u << 20) ? (size_t)(size - off) : (1u << 20);

                got = mfs_fetch_read(v.f, &e, 7, off, n, buf, &err);
                if (got != (ssize_t)n)
                    break;
                if (memcmp(buf, data + off, n))
                    same = false;
            }
            memset(&info, 0, sizeof(info));
            mfs_cache_blob_info(v.cache, v.m.files[0].sha256, &info, NULL);
            if (pass == 0)
                CHECK(got == -EIO && strstr(err.msg, "checksum") && info.stored < size,
                      "%s window: corrupt 40 MiB file -> -EIO by its end, chunks dropped "
                      "(%zd): %s", w ? "4 MiB" : "default", got, err.msg);
            else
                CHECK(same && off >= size && info.verified && mfs_cache_check(v.cache, &err) == 0,
                      "%s window: 40 MiB file in 1 MiB reads: right bytes, verified: %s",
                      w ? "4 MiB" : "default", err.msg);
        }
    }
    atomic_store(&v.m.mode, MOCK_OK);
out:
    env_stop(&v);
    free(buf);
    free(data);
}

int main(void)
{
    struct env v;

    test_models();
    if (env_start(&v, "tiny-random-llama", "org/llama", 1000) < 0) {
        CHECK(0, "start mock for tiny-random-llama");
        return check_done();
    }
    test_concurrency(&v);
    test_shared_and_offline(&v);
    test_faults(&v);
    test_eviction_and_bound(&v);
    test_prefetch(&v);
    test_sequential_verify(&v);
    env_stop(&v);
    test_parallel_hash();
    return check_done();
}
