/* tests/cache/test_cache.c - cache/cache.c: refs, trees, chunks, eviction,
 * pinning, threads, and surviving kill -9 in the middle of writes. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/cache.h"
#include "check.h"
#include "common/hash.h"

#define CH MFS_CACHE_CHUNK

static const char *tmpdir(const char *name, char *out, size_t cap)
{
    const char *t = getenv("MFS_TMP");

    snprintf(out, cap, "%s/%s", t && *t ? t : "/tmp", name);
    return out;
}

static void fill_random(unsigned char *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

/* Store every chunk of a blob. */
static int put_all(struct mfs_cache *c, const char *cid, const unsigned char *p, uint64_t size)
{
    return mfs_cache_put_chunks(c, cid, size, 0, p, size, NULL);
}

static void test_refs_trees(struct mfs_cache *c)
{
    struct mfs_cache_repo repo = { "http://127.0.0.1:1", "model", "org/a" };
    struct mfs_cache_repo other = { "http://127.0.0.1:2", "model", "org/a" };
    struct mfs_entry in[3];
    struct mfs_entry *out = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    char commit[41];
    size_t n = 0;
    int64_t t = 0;
    int rc;

    rc = mfs_cache_ref_get(c, &repo, "main", commit, &err);
    CHECK(rc == -ENODATA && err.msg[0], "unknown ref is a miss (%d)", rc);
    rc = mfs_cache_ref_put(c, &repo, "main", "0123456789abcdef0123456789abcdef01234567", NULL);
    CHECK(rc == 0, "ref put");
    rc = mfs_cache_ref_get(c, &repo, "main", commit, NULL);
    CHECK(rc == 0 && !strcmp(commit, "0123456789abcdef0123456789abcdef01234567"), "ref get");
    rc = mfs_cache_ref_get(c, &other, "main", commit, NULL);
    CHECK(rc == -ENODATA, "same repo id on another endpoint is another repo");
    rc = mfs_cache_ref_put(c, &repo, "main", "not-a-commit", NULL);
    CHECK(rc == -EINVAL, "ref put refuses a non-commit");

    memset(in, 0, sizeof(in));
    in[0].path = "config.json";
    in[0].size = 42;
    snprintf(in[0].oid, sizeof(in[0].oid), "%s", "1111111111111111111111111111111111111111");
    in[1].path = "sub";
    in[1].is_dir = true;
    in[2].path = "sub/model.safetensors";
    in[2].size = 123456789;
    in[2].is_lfs = true;
    snprintf(in[2].oid, sizeof(in[2].oid), "%s", "2222222222222222222222222222222222222222");
    memset(in[2].lfs_oid, 'a', 64);
    rc = mfs_cache_tree_get(c, &repo, "0123456789abcdef0123456789abcdef01234567", &out, &n, &t,
                            NULL);
    CHECK(rc == -ENODATA, "unknown tree is a miss");
    rc = mfs_cache_tree_put(c, &repo, "0123456789abcdef0123456789abcdef01234567", 1700000000,
                            in, 3, NULL);
    CHECK(rc == 0, "tree put");
    rc = mfs_cache_tree_put(c, &repo, "0123456789abcdef0123456789abcdef01234567", 1700000001,
                            in, 3, NULL);
    CHECK(rc == 0, "tree put again replaces");
    rc = mfs_cache_tree_get(c, &repo, "0123456789abcdef0123456789abcdef01234567", &out, &n, &t,
                            NULL);
    CHECK(rc == 0 && n == 3 && t == 1700000001, "tree get: %zu entries, time %lld", n,
          (long long)t);
    if (rc == 0 && n == 3) {
        CHECK(!strcmp(out[0].path, "config.json") && out[0].size == 42 && !out[0].is_lfs &&
              !strcmp(out[0].oid, in[0].oid), "entry 0 round-trips");
        CHECK(!strcmp(out[1].path, "sub") && out[1].is_dir, "entry 1 is a folder");
        CHECK(!strcmp(out[2].path, "sub/model.safetensors") && out[2].is_lfs &&
              out[2].size == 123456789 && !strcmp(out[2].lfs_oid, in[2].lfs_oid),
              "entry 2 keeps its lfs oid and size");
    }
    mfs_entries_free(out, n);
}

static void test_chunks(struct mfs_cache *c)
{
    /* 3.5 chunks: the last one is short. */
    uint64_t size = 3 * CH + CH / 2;
    unsigned char *src = malloc(size);
    unsigned char *dst = malloc(size);
    unsigned char present[4];
    struct mfs_cache_blob_info info;
    struct mfs_cache_stats st0;
    struct mfs_cache_stats st1;
    static const struct { uint64_t off; size_t len; } reads[] = {
        { 0, 1 }, { 1, 7 }, { CH - 1, 2 }, { CH - 3, CH + 7 }, { 0, 3 * CH + CH / 2 },
        { 3 * CH, CH / 2 }, { 3 * CH + CH / 2 - 1, 1 }, { 12345, 2 * CH }, { 2 * CH, 0 },
    };
    const char *cid = "b10b000000000000000000000000000000000000";
    struct mfs_err err = MFS_ERR_INIT;
    ssize_t got;
    size_t i;
    int rc;

    fill_random(src, size, 7);
    mfs_cache_stats_get(c, &st0);
    got = mfs_cache_get(c, cid, 0, 10, dst, &err);
    CHECK(got == -ENODATA, "unknown blob is a miss");
    rc = mfs_cache_put_chunk(c, cid, size, 1, src + CH, CH, NULL);
    CHECK(rc == 0, "put one chunk");
    rc = mfs_cache_put_chunk(c, cid, size, 1, src + CH, CH, NULL);
    CHECK(rc == 0, "put the same chunk twice");
    rc = mfs_cache_put_chunk(c, cid, size, 3, src + 3 * CH, CH, NULL);
    CHECK(rc == -EINVAL, "put refuses a chunk of the wrong length");
    rc = mfs_cache_put_chunk(c, cid, size + 1, 0, src, CH, NULL);
    CHECK(rc == -EIO, "put refuses a blob whose size changed");
    CHECK(mfs_cache_has_chunk(c, cid, 1) && !mfs_cache_has_chunk(c, cid, 0), "has_chunk");
    got = mfs_cache_get(c, cid, CH + 5, 100, dst, NULL);
    CHECK(got == 100 && !memcmp(dst, src + CH + 5, 100), "get inside a stored chunk");
    got = mfs_cache_get(c, cid, CH - 5, 100, dst, NULL);
    CHECK(got == -ENODATA, "get touching a missing chunk is a miss");
    rc = mfs_cache_chunks_present(c, cid, 0, 4, present, NULL);
    CHECK(rc == 0 && !present[0] && present[1] && !present[2] && !present[3], "chunks_present");
    rc = mfs_cache_put_chunks(c, cid, size, 2, src + 2 * CH, CH + CH / 2, NULL);
    CHECK(rc == 0, "put the last two chunks in one transaction");
    rc = mfs_cache_put_chunk(c, cid, size, 0, src, CH, NULL);
    CHECK(rc == 0, "put chunk 0");
    for (i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        memset(dst, 0, size);
        got = mfs_cache_get(c, cid, reads[i].off, reads[i].len, dst, NULL);
        CHECK(got == (ssize_t)reads[i].len && !memcmp(dst, src + reads[i].off, reads[i].len),
              "get [%llu, +%zu)", (unsigned long long)reads[i].off, reads[i].len);
    }
    got = mfs_cache_get(c, cid, size - 1, 2, dst, NULL);
    CHECK(got == -EINVAL, "get past the end is refused");
    rc = mfs_cache_blob_info(c, cid, &info, NULL);
    CHECK(rc == 0 && info.size == size && info.stored == size && !info.verified,
          "blob info: complete, unverified");
    CHECK(!mfs_cache_is_verified(c, cid), "not verified yet");
    CHECK(mfs_cache_mark_verified(c, cid, NULL) == 0 && mfs_cache_is_verified(c, cid),
          "mark verified");
    mfs_cache_stats_get(c, &st1);
    CHECK(st1.bytes_stored == st0.bytes_stored + size, "bytes_stored counts each chunk once");
    CHECK(st1.hits > st0.hits && st1.misses >= st0.misses + 2, "hits and misses counted");
    rc = mfs_cache_drop(c, cid, NULL);
    CHECK(rc == 0, "drop");
    got = mfs_cache_get(c, cid, 0, 10, dst, NULL);
    CHECK(got == -ENODATA && !mfs_cache_is_verified(c, cid), "dropped blob is a miss, unverified");
    mfs_cache_stats_get(c, &st1);
    CHECK(st1.bytes_stored == st0.bytes_stored, "drop gives the bytes back");
    free(src);
    free(dst);
}

static void test_eviction(void)
{
    char dir[512];
    struct mfs_cache *c = NULL;
    struct mfs_cache_stats st;
    unsigned char *blob = malloc(2 * CH);
    unsigned char tmp[16];
    char cid[41];
    int i;
    int rc;

    tmpdir("evict", dir, sizeof(dir));
    rc = mfs_cache_open(dir, 4 * CH, &c, NULL);
    CHECK(rc == 0, "open with max_bytes %u", 4 * CH);
    if (rc < 0)
        return;
    fill_random(blob, 2 * CH, 3);
    put_all(c, "pinned00000000000000000000000000000000000", blob, CH);
    CHECK(mfs_cache_pin(c, "pinned00000000000000000000000000000000000", true, NULL) == 0,
          "pin a blob");
    CHECK(mfs_cache_pin(c, "nosuchblob", true, NULL) == -ENODATA, "pin an unknown blob");
    for (i = 0; i < 6; i++) {
        snprintf(cid, sizeof(cid), "%040d", i);
        rc = put_all(c, cid, blob, 2 * CH);
        usleep(2000);                       /* distinct access times */
    }
    mfs_cache_stats_get(c, &st);
    CHECK(rc == 0 && st.bytes_stored <= 4 * CH && st.bytes_evicted >= 9 * CH,
          "eviction keeps bytes under max: stored %llu evicted %llu",
          (unsigned long long)st.bytes_stored, (unsigned long long)st.bytes_evicted);
    CHECK(mfs_cache_get(c, "pinned00000000000000000000000000000000000", 0, 16, tmp, NULL) == 16,
          "pinned blob survives eviction");
    snprintf(cid, sizeof(cid), "%040d", 5);
    CHECK(mfs_cache_get(c, cid, 0, 16, tmp, NULL) == 16, "most recent blob survives");
    snprintf(cid, sizeof(cid), "%040d", 0);
    CHECK(mfs_cache_get(c, cid, 0, 16, tmp, NULL) == -ENODATA, "oldest blob was evicted");
    mfs_cache_close(&c);
    CHECK(c == NULL, "close clears the pointer");
    mfs_cache_close(&c);
    free(blob);
}

struct worker {
    struct mfs_cache *c;
    int id;
    int bad;
};

static void *thread_main(void *arg)
{
    struct worker *w = arg;
    unsigned char *src = malloc(2 * CH + 100);
    unsigned char *dst = malloc(2 * CH + 100);
    char cid[41];
    int round;

    for (round = 0; round < 10; round++) {
        snprintf(cid, sizeof(cid), "%020d%020d", w->id, round);
        fill_random(src, 2 * CH + 100, (unsigned)(w->id * 100 + round));
        if (put_all(w->c, cid, src, 2 * CH + 100) < 0 ||
            mfs_cache_get(w->c, cid, 0, 2 * CH + 100, dst, NULL) != 2 * CH + 100 ||
            memcmp(src, dst, 2 * CH + 100))
            w->bad++;
    }
    free(src);
    free(dst);
    return NULL;
}

static void test_threads(struct mfs_cache *c)
{
    pthread_t t[12];
    struct worker w[12];
    int bad = 0;
    int i;

    for (i = 0; i < 12; i++) {
        w[i].c = c;
        w[i].id = i;
        w[i].bad = 0;
        pthread_create(&t[i], NULL, thread_main, &w[i]);
    }
    for (i = 0; i < 12; i++) {
        pthread_join(t[i], NULL);
        bad += w[i].bad;
    }
    CHECK(bad == 0, "12 threads put and get their own blobs (%d bad)", bad);
}

static double query_num(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    double v = -1;

    if (sqlite3_open(db, &h) == SQLITE_OK && sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK
        && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

/* Chunk rows of db whose bytes differ from the same chunk of want (every
 * blob of the kill -9 test holds the same bytes); -1 if db cannot be read.
 * A chunk is made with zeros and then filled through a blob handle in one
 * transaction (cache.c): a kill between the two must never leave zeros. */
static long chunks_differing(const char *db, const unsigned char *want, size_t size)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    long bad = -1;

    if (sqlite3_open(db, &h) == SQLITE_OK &&
        sqlite3_prepare_v2(h, "SELECT id, data FROM chunks", -1, &s, NULL) == SQLITE_OK) {
        bad = 0;
        while (sqlite3_step(s) == SQLITE_ROW) {
            uint64_t off = ((uint64_t)sqlite3_column_int64(s, 0) & 0xffffff) * CH;
            const void *p = sqlite3_column_blob(s, 1);
            size_t n = (size_t)sqlite3_column_bytes(s, 1);

            if (off >= size || n != (size - off < CH ? size - off : CH) ||
                memcmp(p, want + off, n))
                bad++;
        }
    }
    sqlite3_finalize(s);
    sqlite3_close(h);
    return bad;
}

/* "It must survive kill -9 (WAL) and PRAGMA integrity_check must pass afterwards." */
static void test_kill9(void)
{
    char dir[512];
    char db[600];
    struct mfs_cache *c = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_cache_stats st;
    unsigned char *want;
    long bad;
    pid_t pid;
    int status;
    int rc;
    int k;

    tmpdir("crash", dir, sizeof(dir));
    snprintf(db, sizeof(db), "%s/modelfs.db", dir);
    for (k = 0; k < 3; k++) {
        pid = fork();
        if (pid == 0) {
            unsigned char *blob = malloc(4 * CH);
            char cid[41];
            int i;

            if (mfs_cache_open(dir, 16 * CH, &c, NULL) < 0)
                _exit(3);
            fill_random(blob, 4 * CH, 11);
            for (i = 0;; i++) {
                snprintf(cid, sizeof(cid), "%d%039d", k, i);
                mfs_cache_put_chunks(c, cid, 4 * CH, 0, blob, 4 * CH, NULL);
                if (i % 3 == 0)
                    mfs_cache_drop(c, cid, NULL);
            }
        }
        usleep(300000 + 100000 * k);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "writer %d killed with -9", k);
    }
    rc = mfs_cache_open(dir, 16 * CH, &c, &err);
    CHECK(rc == 0, "reopen after kill -9: %s", err.msg);
    if (rc < 0)
        return;
    rc = mfs_cache_check(c, &err);
    CHECK(rc == 0, "integrity_check passes after kill -9: %s", err.msg);
    mfs_cache_stats_get(c, &st);
    CHECK(st.bytes_stored > 0 && st.bytes_stored <= 16 * CH, "bytes_stored %llu is bounded",
          (unsigned long long)st.bytes_stored);
    mfs_cache_close(&c);
    CHECK(query_num(db, "SELECT total(stored) FROM blobs") ==
          query_num(db, "SELECT total(length(data)) FROM chunks"),
          "per-blob counters match the chunk rows after kill -9");
    want = malloc(4 * CH);
    fill_random(want, 4 * CH, 11);
    bad = chunks_differing(db, want, 4 * CH);
    CHECK(bad == 0, "every chunk row holds its bytes after kill -9 (%ld differ)", bad);
    free(want);
}

static void test_damaged(void)
{
    char dir[512];
    char db[600];
    struct mfs_cache *c = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    FILE *fp;
    int i;
    int rc;

    tmpdir("damaged", dir, sizeof(dir));
    rc = mfs_cache_open(dir, 0, &c, NULL);
    mfs_cache_close(&c);
    snprintf(db, sizeof(db), "%s/modelfs.db", dir);
    fp = fopen(db, "w");
    for (i = 0; fp && i < 4096; i++)
        fputs("this is not a database ", fp);
    if (fp)
        fclose(fp);
    rc = mfs_cache_open(dir, 0, &c, &err);
    CHECK(rc == -EIO && c == NULL && err.msg[0], "a damaged database is -EIO: %s", err.msg);
    rc = mfs_cache_open("/proc/modelfs-cannot-exist", 0, &c, &err);
    CHECK(rc < 0 && c == NULL, "an unusable dir fails: %d %s", rc, err.msg);
}

int main(void)
{
    char dir[512];
    struct mfs_cache *c = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    rc = mfs_cache_open(tmpdir("main", dir, sizeof(dir)), 0, &c, &err);
    CHECK(rc == 0, "open '%s': %s", dir, err.msg);
    if (rc < 0)
        return check_done();
    test_refs_trees(c);
    test_chunks(c);
    test_threads(c);
    CHECK(mfs_cache_check(c, NULL) == 0, "integrity_check passes");
    mfs_cache_close(&c);
    rc = mfs_cache_open(dir, 0, &c, &err);
    CHECK(rc == 0, "reopen");
    if (rc == 0) {
        char commit[41];
        struct mfs_cache_repo repo = { "http://127.0.0.1:1", "model", "org/a" };

        CHECK(mfs_cache_ref_get(c, &repo, "main", commit, NULL) == 0, "refs persist");
        mfs_cache_close(&c);
    }
    test_eviction();
    test_kill9();
    test_damaged();
    return check_done();
}
