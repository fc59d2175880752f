/* tests/cache/test_stage.c - cache/stage.c: writers and piece tables checked
 * against an in-memory model, links of staged and remote ranges, apply,
 * generations, and the durability promises of cache/stage.h: kill -9 keeps
 * committed changes and loses drafts, integrity after a kill at any time,
 * a full disk rolls back and loses nothing, multi-writer commits are all or
 * nothing. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/stage.h"
#include "check.h"
#include "check_db.h"
#include "common/hash.h"

#define CH MFS_CACHE_CHUNK

static const struct mfs_cache_repo REPO = { "http://127.0.0.1:1", "model", "org/staged" };

static const char *tmpdir(const char *name, char *out, size_t cap)
{
    const char *t = getenv("MFS_TMP");

    snprintf(out, cap, "%s/%s", t && *t ? t : "/tmp", name);
    return out;
}

static uint32_t rnd(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* ---- a fake remote: byte o of blob e is a function of (oid, o) ---------- */

struct fake_base {
    pthread_mutex_t lock;
    unsigned calls;                         /* base_read calls */
    uint64_t bytes;                         /* bytes served */
};

static unsigned char remote_byte(const struct mfs_entry *e, uint64_t o)
{
    return (unsigned char)((o * 131u + (unsigned char)e->oid[0] * 7u + (o >> 16)) & 0xff);
}

static ssize_t fake_read(void *ctx, const struct mfs_entry *e, uint64_t off, size_t len,
                         void *buf, struct mfs_err *err)
{
    struct fake_base *fb = ctx;
    unsigned char *p = buf;
    size_t i;

    if (off + len > e->size)
        return mfs_err_set(err, -EIO, "fake: read past the end of '%s'", e->path);
    for (i = 0; i < len; i++)
        p[i] = remote_byte(e, off + i);
    pthread_mutex_lock(&fb->lock);
    fb->calls++;
    fb->bytes += len;
    pthread_mutex_unlock(&fb->lock);
    return (ssize_t)len;
}

static void make_remote(struct mfs_entry *e, const char *path, char tag, uint64_t size)
{
    memset(e, 0, sizeof(*e));
    e->path = (char *)path;
    e->size = size;
    memset(e->oid, tag, 40);
    e->is_lfs = true;
    memset(e->lfs_oid, tag, 64);
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    size_t i;

    for (i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

/* Whole committed content of path equals want[0, n). */
static bool staged_equals(struct mfs_stage *s, const char *path, const unsigned char *want,
                          size_t n)
{
    struct mfs_stage_entry e;
    unsigned char *got;
    ssize_t r;
    bool ok;

    if (mfs_stage_get(s, path, &e, NULL) < 0)
        return false;
    ok = e.kind == MFS_STAGE_FILE && e.size == n;
    free(e.path);
    free(e.remote.path);
    if (!ok)
        return false;
    got = malloc(n + 1);
    r = mfs_stage_read(s, path, 0, n + 1, got, NULL);
    ok = r == (ssize_t)n && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static int open_stage(const char *dir, struct fake_base *fb, struct mfs_stage **sp)
{
    struct mfs_cache *c = NULL;
    int rc;

    rc = mfs_cache_open(dir, 0, &c, NULL);
    mfs_cache_close(&c);
    if (rc < 0)
        return rc;
    return mfs_stage_open(dir, &REPO, "main", fb ? fake_read : NULL, fb, sp, NULL);
}

/* ---- basic writer, list, get, apply --------------------------------------- */

static void test_basic(const char *dir, struct fake_base *fb)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_entry *list = NULL;
    struct mfs_stage_entry e;
    struct mfs_err err = MFS_ERR_INIT;
    unsigned char buf[64];
    size_t n = 0;
    uint64_t bytes = 0;
    ssize_t r;
    int rc;

    rc = open_stage(dir, fb, &s);
    CHECK(rc == 0 && s, "open a stage (%d)", rc);
    if (!s)
        return;
    CHECK(mfs_stage_generation(s) == 0, "a new stage is at generation 0");
    rc = mfs_stage_list(s, &list, &n, NULL);
    CHECK(rc == 0 && n == 0, "a new stage is empty");
    mfs_stage_entries_free(list, n);

    rc = mfs_stage_writer_open(s, "config.json", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    CHECK(rc == 0 && w, "writer open (%d)", rc);
    r = mfs_stage_writer_write(w, 0, "{\"a\": 1}", 8, NULL);
    CHECK(r == 8, "write returns len");
    r = mfs_stage_writer_read(w, 0, sizeof(buf), buf, NULL);
    CHECK(r == 8 && !memcmp(buf, "{\"a\": 1}", 8), "the writer reads its own draft");
    rc = mfs_stage_get(s, "config.json", &e, &err);
    CHECK(rc == -ENOENT && err.msg[0], "a draft is invisible before commit (%d)", rc);
    rc = mfs_stage_writer_commit(w, NULL);
    CHECK(rc == 0, "commit (%d)", rc);
    CHECK(mfs_stage_generation(s) == 1, "commit bumps the generation");
    r = mfs_stage_read(s, "config.json", 0, sizeof(buf), buf, NULL);
    CHECK(r == 8 && !memcmp(buf, "{\"a\": 1}", 8), "read after commit");
    r = mfs_stage_read(s, "config.json", 6, sizeof(buf), buf, NULL);
    CHECK(r == 2 && !memcmp(buf, "1}", 2), "read at an offset, short at the end");
    r = mfs_stage_read(s, "config.json", 8, sizeof(buf), buf, NULL);
    CHECK(r == 0, "read at the end gives 0");
    r = mfs_stage_read(s, "config.json", 100, sizeof(buf), buf, NULL);
    CHECK(r == 0, "read past the end gives 0");
    /* Written again after a commit: the committed bytes must not move. */
    r = mfs_stage_writer_write(w, 0, "{\"b\"", 4, NULL);
    r = mfs_stage_read(s, "config.json", 0, sizeof(buf), buf, NULL);
    CHECK(r == 8 && !memcmp(buf, "{\"a\": 1}", 8), "writes after a commit stay a draft");
    rc = mfs_stage_writer_commit(w, NULL);
    r = mfs_stage_read(s, "config.json", 0, sizeof(buf), buf, NULL);
    CHECK(rc == 0 && r == 8 && !memcmp(buf, "{\"b\": 1}", 8), "second commit of one writer");
    CHECK(mfs_stage_generation(s) == 2, "second commit bumps the generation");
    rc = mfs_stage_writer_commit(w, NULL);
    CHECK(rc == 0 && mfs_stage_generation(s) == 2,
          "a commit with nothing new (fsync, then close) is no new generation");
    rc = mfs_stage_apply(s, NULL, 0, NULL);
    CHECK(rc == 0 && mfs_stage_generation(s) == 2, "an empty apply is no new generation");
    mfs_stage_writer_close(&w);
    CHECK(w == NULL, "writer close clears the pointer");
    mfs_stage_writer_close(&w);

    rc = mfs_stage_get(s, "config.json", &e, NULL);
    CHECK(rc == 0 && e.kind == MFS_STAGE_FILE && e.size == 8 && e.mode == 0644 &&
          e.generation == 2 && !e.unchanged_remote && e.mtime > 1600000000,
          "get of a written file");
    free(e.path);
    free(e.remote.path);

    {
        struct mfs_entry rem;
        struct mfs_stage_change ch[] = {
            { .op = MFS_STAGE_OP_MKDIR, .path = "sub", .mode = 0755 },
            { .op = MFS_STAGE_OP_WHITEOUT, .path = "old.bin" },
            { .op = MFS_STAGE_OP_REMOTE, .path = "sub/renamed.bin", .remote = &rem,
              .mode = 0644 },
            { .op = MFS_STAGE_OP_MOVE, .path = "moved.json", .from = "config.json" },
            { .op = MFS_STAGE_OP_CHMOD, .path = "moved.json", .mode = 0600 },
        };
        static const char *const want[] = { "moved.json", "old.bin", "sub", "sub/renamed.bin" };
        static const enum mfs_stage_kind kinds[] = { MFS_STAGE_FILE, MFS_STAGE_DELETED,
                                                     MFS_STAGE_DIR, MFS_STAGE_FILE };
        size_t i;
        bool ok;

        make_remote(&rem, "old.bin", 'a', 3 * CH + 17);
        rc = mfs_stage_apply(s, ch, sizeof(ch) / sizeof(ch[0]), NULL);
        CHECK(rc == 0, "apply mkdir, whiteout, remote, move, chmod (%d)", rc);
        CHECK(mfs_stage_generation(s) == 3, "one apply is one generation");
        rc = mfs_stage_list(s, &list, &n, NULL);
        ok = rc == 0 && n == 4;
        for (i = 0; ok && i < n; i++)
            ok = !strcmp(list[i].path, want[i]) && list[i].kind == kinds[i] &&
                 list[i].generation == 3;
        CHECK(ok, "list is sorted with the right kinds (%zu entries)", n);
        ok = ok && list[0].mode == 0600 && list[0].size == 8 && list[2].mode == 0755 &&
             list[3].unchanged_remote && list[3].size == rem.size &&
             !strcmp(list[3].remote.path, "old.bin") && list[3].remote.is_lfs &&
             list[3].remote.lfs_oid[0] == 'a' && list[3].remote.size == rem.size;
        CHECK(ok, "list fields: modes, sizes, unchanged remote blob");
        mfs_stage_entries_free(list, n);
        rc = mfs_stage_get(s, "config.json", &e, NULL);
        CHECK(rc == -ENOENT, "move removes the source entry");
        r = mfs_stage_read(s, "moved.json", 0, sizeof(buf), buf, NULL);
        CHECK(r == 8 && !memcmp(buf, "{\"b\": 1}", 8), "moved content, no copy needed");
        fb->calls = 0;
        {
            unsigned char big[300];
            bool same = true;

            r = mfs_stage_read(s, "sub/renamed.bin", CH - 100, sizeof(big), big, NULL);
            for (i = 0; i < sizeof(big); i++)
                same = same && big[i] == remote_byte(&rem, CH - 100 + i);
            CHECK(r == (ssize_t)sizeof(big) && same && fb->calls == 1,
                  "a remote entry reads through base_read (%u calls)", fb->calls);
        }
        r = mfs_stage_read(s, "sub", 0, sizeof(buf), buf, NULL);
        CHECK(r == -ENOENT, "read of a folder entry is -ENOENT");
        r = mfs_stage_read(s, "old.bin", 0, sizeof(buf), buf, NULL);
        CHECK(r == -ENOENT, "read of a whiteout is -ENOENT");
        mfs_stage_totals(s, &n, &bytes);
        CHECK(n == 4 && bytes == 8 + rem.size, "totals (%zu entries, %llu bytes)", n,
              (unsigned long long)bytes);
    }
    {
        struct mfs_stage_change bad[] = {
            { .op = MFS_STAGE_OP_MKDIR, .path = "made", .mode = 0755 },
            { .op = MFS_STAGE_OP_MOVE, .path = "x", .from = "nope" },
        };
        struct mfs_stage_change chmod_none = { .op = MFS_STAGE_OP_CHMOD, .path = "none",
                                               .mode = 0600 };
        struct mfs_stage_change rm = { .op = MFS_STAGE_OP_REMOVE, .path = "old.bin" };

        rc = mfs_stage_apply(s, bad, 2, &err);
        CHECK(rc == -ENOENT, "move from a missing entry is -ENOENT (%d)", rc);
        rc = mfs_stage_get(s, "made", &e, NULL);
        CHECK(rc == -ENOENT && mfs_stage_generation(s) == 3,
              "a failed apply changes nothing (all or none)");
        rc = mfs_stage_apply(s, &chmod_none, 1, NULL);
        CHECK(rc == -ENOENT, "chmod of a missing entry is -ENOENT");
        rc = mfs_stage_apply(s, &rm, 1, NULL);
        CHECK(rc == 0 && mfs_stage_get(s, "old.bin", &e, NULL) == -ENOENT,
              "remove forgets an entry");
    }
    mfs_stage_close(&s);
    CHECK(s == NULL, "close clears the pointer");
    mfs_stage_close(&s);

    /* Reopen: everything committed is there. */
    rc = open_stage(dir, fb, &s);
    r = rc == 0 ? mfs_stage_read(s, "moved.json", 0, sizeof(buf), buf, NULL) : rc;
    CHECK(r == 8 && !memcmp(buf, "{\"b\": 1}", 8) && mfs_stage_generation(s) == 4,
          "reopen shows committed content and generation");
    /* Another revision of the same repo is another stage. */
    {
        struct mfs_stage *s2 = NULL;

        rc = mfs_stage_open(dir, &REPO, "dev", NULL, NULL, &s2, NULL);
        CHECK(rc == 0 && mfs_stage_generation(s2) == 0 &&
              mfs_stage_get(s2, "moved.json", &e, NULL) == -ENOENT,
              "stages are per (repo, revision)");
        mfs_stage_close(&s2);
    }
    mfs_stage_close(&s);
}

/* ---- hostile input ----------------------------------------------------------- */

static void test_hostile(const char *dir)
{
    static const char *const bad[] = {
        "", "/abs", "a/../b", "..", ".", "a/./b", "a//b", "a/", "/", "../x", "x/..",
    };
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_entry e;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_entry rem;
    unsigned char buf[8];
    size_t i;
    int rc;

    if (open_stage(dir, NULL, &s) < 0)
        return;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mfs_stage_change ch = { .op = MFS_STAGE_OP_WHITEOUT, .path = bad[i] };

        mfs_err_clear(&err);
        rc = mfs_stage_writer_open(s, bad[i], MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, &err);
        CHECK(rc == -EINVAL && !w && err.msg[0], "writer open '%s' is -EINVAL", bad[i]);
        CHECK(mfs_stage_apply(s, &ch, 1, NULL) == -EINVAL, "whiteout '%s' is -EINVAL",
              bad[i]);
        CHECK(mfs_stage_get(s, bad[i], &e, NULL) == -EINVAL, "get '%s' is -EINVAL", bad[i]);
        CHECK(mfs_stage_read(s, bad[i], 0, 1, buf, NULL) == -EINVAL, "read '%s' is -EINVAL",
              bad[i]);
    }
    {
        struct mfs_stage_change ch = { .op = MFS_STAGE_OP_WHITEOUT, .path = NULL };
        struct mfs_stage_change mv = { .op = MFS_STAGE_OP_MOVE, .path = "a", .from = "../a" };
        struct mfs_stage_change rm = { .op = MFS_STAGE_OP_REMOTE, .path = "a", .remote = NULL };

        CHECK(mfs_stage_apply(s, &ch, 1, NULL) == -EINVAL, "NULL path is -EINVAL");
        CHECK(mfs_stage_apply(s, &mv, 1, NULL) == -EINVAL, "move from '../a' is -EINVAL");
        CHECK(mfs_stage_apply(s, &rm, 1, NULL) == -EINVAL, "remote without a blob is -EINVAL");
    }
    rc = mfs_stage_writer_open(s, "f", MFS_STAGE_BASE_REMOTE, NULL, 0644, &w, NULL);
    CHECK(rc == -EINVAL && !w, "BASE_REMOTE without a blob is -EINVAL");
    rc = mfs_stage_writer_open(s, "f", MFS_STAGE_BASE_STAGED, NULL, 0644, &w, NULL);
    CHECK(rc == -ENOENT && !w, "BASE_STAGED without an entry is -ENOENT");
    rc = mfs_stage_writer_open(s, "f", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    if (rc == 0) {
        make_remote(&rem, "r", 'b', 1000);
        CHECK(mfs_stage_writer_link(w, 0, "nope", 0, 1, NULL) == -ENOENT,
              "link from a missing entry is -ENOENT");
        CHECK(mfs_stage_writer_link(w, 0, "../x", 0, 1, NULL) == -EINVAL,
              "link from a bad path is -EINVAL");
        CHECK(mfs_stage_writer_link_remote(w, 0, &rem, 990, 11, NULL) == -EINVAL,
              "link past a remote blob's end is -EINVAL");
        CHECK(mfs_stage_writer_write(w, UINT64_MAX - 2, "abc", 3, NULL) == -EINVAL,
              "a write past 4 TiB is -EINVAL");
        CHECK(mfs_stage_writer_write(w, 0, "abc", 3, NULL) == 3, "a sane write still works");
        CHECK(mfs_stage_writer_commit(w, NULL) == 0, "and commits");
        CHECK(mfs_stage_writer_link(w, 0, "f", 2, 2, NULL) == -EINVAL,
              "link past a staged file's end is -EINVAL");
        mfs_stage_writer_close(&w);
    }
    mfs_stage_close(&s);
}

static int db_exec(const char *dir, const char *sql)
{
    char path[512];
    sqlite3 *db = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/modelfs.db", dir);
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* A damaged database gives -EIO with a reason, never wrong bytes or a crash. */
static void test_damaged(const char *dir)
{
    static const char *const bad_extents[] = {
        "x'01'",                                            /* truncated record */
        "x'0700000000000000000000000000000000'",            /* unknown source */
        "zeroblob(9)",                                      /* a zero-length extent */
        "x'000100000000000000'",                            /* 1 byte of zeros, size 4 */
        "x'0104000000000000000000000000000000ffffffffffffffff'", /* object 0 */
    };
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_entry *list = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    unsigned char buf[8];
    char sql[256];
    size_t n = 0;
    size_t i;
    int rc;

    if (open_stage(dir, NULL, &s) < 0)
        return;
    rc = mfs_stage_writer_open(s, "f", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    rc = rc ? rc : (int)mfs_stage_writer_write(w, 0, "abcd", 4, NULL);
    rc = rc < 0 ? rc : mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    mfs_stage_close(&s);
    CHECK(rc == 0, "staged a file to damage");
    for (i = 0; i < sizeof(bad_extents) / sizeof(bad_extents[0]); i++) {
        snprintf(sql, sizeof(sql), "UPDATE stage_entries SET extents = %s WHERE path = 'f'",
                 bad_extents[i]);
        rc = db_exec(dir, sql);
        if (rc == SQLITE_OK)
            rc = open_stage(dir, NULL, &s);
        mfs_err_clear(&err);
        rc = rc == 0 ? (int)mfs_stage_read(s, "f", 0, sizeof(buf), buf, &err) : 1;
        CHECK(rc == -EIO && strstr(err.msg, "damaged"), "damaged piece table %zu: -EIO (%d: %s)",
              i, rc, err.msg);
        rc = s ? mfs_stage_list(s, &list, &n, NULL) : 1;
        CHECK(rc == -EIO && !list, "list of a damaged stage is -EIO (%d)", rc);
        mfs_stage_close(&s);
    }
    /* a chunk row gone under a valid piece table */
    rc = db_exec(dir, "DELETE FROM stage_chunks");
    rc = rc == SQLITE_OK ? db_exec(dir, "UPDATE stage_entries SET extents = "
                                  "(SELECT x'0104000000000000000100000000000000"
                                  "0000000000000000') WHERE path = 'f'") : rc;
    if (rc == SQLITE_OK && open_stage(dir, NULL, &s) == 0) {
        mfs_err_clear(&err);
        rc = (int)mfs_stage_read(s, "f", 0, sizeof(buf), buf, &err);
        CHECK(rc == -EIO && err.msg[0], "a missing chunk is -EIO (%d: %s)", rc, err.msg);
        mfs_stage_close(&s);
    }
    rc = db_exec(dir, "UPDATE stage_meta SET value = 99 WHERE key = 'schema'");
    mfs_err_clear(&err);
    rc = rc == SQLITE_OK ? mfs_stage_open(dir, &REPO, "main", NULL, NULL, &s, &err) : 1;
    CHECK(rc == -EIO && !s && strstr(err.msg, "schema"), "an unknown schema is -EIO (%s)",
          err.msg);
}

/* ---- piece tables against a model ------------------------------------------ */

#define PT_SPAN (24u << 20)                 /* largest file of the property test */

struct model {
    unsigned char *b;                       /* PT_SPAN bytes */
    uint64_t size;
};

static void model_write(struct model *m, uint64_t off, const unsigned char *p, size_t n)
{
    if (off > m->size)
        memset(m->b + m->size, 0, off - m->size);
    memcpy(m->b + off, p, n);
    if (off + n > m->size)
        m->size = off + n;
}

static void model_truncate(struct model *m, uint64_t size)
{
    if (size > m->size)
        memset(m->b + m->size, 0, size - m->size);
    m->size = size;
}

static bool sha_matches(struct mfs_stage *s, const char *path, const unsigned char *want,
                        size_t n);

/* Random writes, truncates, links of staged and remote ranges, commits and
 * reopened writers, each checked against the model (fixed seed).  A known
 * content hash must be the model's. */
static void test_property(const char *dir, struct fake_base *fb)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct model m = { 0 };
    unsigned char *src = NULL;
    unsigned char *tmp = NULL;
    unsigned char *got = NULL;
    struct mfs_entry rem;
    uint32_t seed = 12345;
    const uint64_t src_size = 3 * CH + 1234;
    uint64_t off;
    uint64_t len;
    uint64_t so;
    unsigned op;
    unsigned i;
    unsigned bad_reads = 0;
    unsigned bad_ops = 0;
    unsigned bad_commits = 0;
    unsigned commits = 0;
    ssize_t r;
    int rc;

    m.b = calloc(1, PT_SPAN);
    src = malloc(src_size);
    tmp = malloc(PT_SPAN);
    got = malloc(PT_SPAN);
    if (!m.b || !src || !tmp || !got || open_stage(dir, fb, &s) < 0)
        goto out;
    make_remote(&rem, "remote.bin", 'r', 5 * CH + 77);
    /* A committed source file for links. */
    fill_pattern(src, src_size, 99);
    rc = mfs_stage_writer_open(s, "src.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    if (rc == 0) {
        mfs_stage_writer_write(w, 0, src, src_size, NULL);
        rc = mfs_stage_writer_commit(w, NULL);
    }
    mfs_stage_writer_close(&w);
    CHECK(rc == 0 && staged_equals(s, "src.bin", src, src_size), "link source staged");

    rc = mfs_stage_writer_open(s, "p.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    for (i = 0; i < 3000 && rc == 0; i++) {
        op = rnd(&seed) % 100;
        if (op < 45) {
            /* a write: small, around chunk boundaries, or a big sequential run */
            if (op < 5)
                len = 1 + rnd(&seed) % (3u << 20);
            else if (op < 20)
                len = CH;
            else
                len = 1 + rnd(&seed) % 5000;
            off = rnd(&seed) % (PT_SPAN / 2);
            if (op >= 5 && op < 20)
                off = off / CH * CH;
            else if (op < 30)
                off = off / CH * CH + CH - 1 - rnd(&seed) % 3;
            if (off + len > PT_SPAN)
                len = PT_SPAN - off;
            fill_pattern(tmp, len, i);
            r = mfs_stage_writer_write(w, off, tmp, len, &err);
            if (r != (ssize_t)len)
                bad_ops++;
            model_write(&m, off, tmp, len);
        } else if (op < 55) {
            off = rnd(&seed) % (m.size + CH);
            if (off > PT_SPAN)
                off = PT_SPAN;
            if (mfs_stage_writer_truncate(w, off, NULL) < 0)
                bad_ops++;
            model_truncate(&m, off);
        } else if (op < 65) {
            so = rnd(&seed) % src_size;
            len = rnd(&seed) % (src_size - so + 1);
            off = rnd(&seed) % (m.size + 1000);
            if (off + len > PT_SPAN)
                continue;
            if (mfs_stage_writer_link(w, off, "src.bin", so, len, NULL) != (ssize_t)len)
                bad_ops++;
            if (len)                        /* an empty link changes nothing */
                model_write(&m, off, src + so, len);
        } else if (op < 75) {
            so = rnd(&seed) % rem.size;
            len = rnd(&seed) % (rem.size - so + 1);
            off = rnd(&seed) % (m.size + 1000);
            if (off + len > PT_SPAN)
                continue;
            if (mfs_stage_writer_link_remote(w, off, &rem, so, len, NULL) != (ssize_t)len)
                bad_ops++;
            for (op = 0; op < len; op++)
                tmp[op] = remote_byte(&rem, so + op);
            if (len)
                model_write(&m, off, tmp, len);
        } else if (op < 93) {
            off = m.size ? rnd(&seed) % m.size : 0;
            len = 1 + rnd(&seed) % (2 * CH);
            r = mfs_stage_writer_read(w, off, len, got, NULL);
            if (len > m.size - off)
                len = m.size - off;
            if (r != (ssize_t)len || memcmp(got, m.b + off, len) != 0)
                bad_reads++;
        } else {
            /* commit; sometimes reopen the writer on the staged file */
            if (mfs_stage_writer_size(w) != m.size)
                bad_ops++;
            rc = mfs_stage_writer_commit(w, &err);
            commits++;
            if (rc < 0 || !staged_equals(s, "p.bin", m.b, m.size))
                bad_commits++;
            if (rc == 0 && !sha_matches(s, "p.bin", m.b, m.size))
                bad_commits++;
            if (op >= 97) {
                mfs_stage_writer_close(&w);
                rc = mfs_stage_writer_open(s, "p.bin", MFS_STAGE_BASE_STAGED, NULL, 0644, &w,
                                           NULL);
            }
        }
    }
    CHECK(rc == 0 && bad_ops == 0, "3000 random ops succeed (%u failed: %s)", bad_ops, err.msg);
    CHECK(bad_reads == 0, "writer reads match the model (%u differ)", bad_reads);
    CHECK(commits > 50 && bad_commits == 0, "%u commits match the model (%u differ)", commits,
          bad_commits);
    rc = w ? mfs_stage_writer_commit(w, NULL) : -1;
    mfs_stage_writer_close(&w);
    mfs_stage_close(&s);
    rc = rc == 0 ? open_stage(dir, fb, &s) : rc;
    CHECK(rc == 0 && staged_equals(s, "p.bin", m.b, m.size) &&
          staged_equals(s, "src.bin", src, src_size),
          "after reopen the content is the model's (%llu bytes)", (unsigned long long)m.size);
    mfs_stage_close(&s);
out:
    free(m.b);
    free(src);
    free(tmp);
    free(got);
}

/* ---- links, remote bases, truncation, GC ---------------------------------------- */

#define ORPHANS "SELECT count(*) FROM stage_chunks WHERE (id >> 24) NOT IN " \
                "(SELECT id FROM stage_objects WHERE refs > 0)"

static void test_links(const char *dir, struct fake_base *fb)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_writer *w2 = NULL;
    struct mfs_stage_entry e;
    struct mfs_entry rem;
    unsigned char *a = NULL;
    unsigned char *want = NULL;
    const size_t na = 2 * CH + 5000;
    struct mfs_stage_change rm = { .op = MFS_STAGE_OP_REMOVE, .path = "a.bin" };
    int rc;
    size_t i;
    bool ok;

    a = malloc(na);
    want = calloc(1, 4 * CH);
    if (!a || !want || open_stage(dir, fb, &s) < 0)
        goto out;
    fill_pattern(a, na, 7);
    rc = mfs_stage_writer_open(s, "a.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    if (rc == 0 && mfs_stage_writer_write(w, 0, a, na, NULL) == (ssize_t)na)
        rc = mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    CHECK(rc == 0, "staged a.bin");

    /* b = a[100, 100+CH) + remote[10, 1010) + zeros, linked, no bytes copied. */
    make_remote(&rem, "weights.bin", 'w', 3 * CH);
    rc = mfs_stage_writer_open(s, "b.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    ok = rc == 0 && mfs_stage_writer_link(w, 0, "a.bin", 100, CH, NULL) == (ssize_t)CH &&
         mfs_stage_writer_link_remote(w, CH, &rem, 10, 1000, NULL) == 1000 &&
         mfs_stage_writer_truncate(w, CH + 1000 + 333, NULL) == 0 &&
         mfs_stage_writer_commit(w, NULL) == 0;
    mfs_stage_writer_close(&w);
    memcpy(want, a + 100, CH);
    for (i = 0; i < 1000; i++)
        want[CH + i] = remote_byte(&rem, 10 + i);
    memset(want + CH + 1000, 0, 333);
    CHECK(ok && staged_equals(s, "b.bin", want, CH + 1333), "link staged + remote + zeros");
    /* The link names a's data, not its path: removing a keeps b. */
    rc = mfs_stage_apply(s, &rm, 1, NULL);
    CHECK(rc == 0 && staged_equals(s, "b.bin", want, CH + 1333),
          "removing the link source keeps the linked bytes");
    CHECK(check_db_int(dir, ORPHANS) == 0, "no chunk without a referencing entry");

    /* Truncate shrink then grow reads zeros, not the old bytes. */
    rc = mfs_stage_writer_open(s, "b.bin", MFS_STAGE_BASE_STAGED, NULL, 0644, &w, NULL);
    ok = rc == 0 && mfs_stage_writer_truncate(w, 50, NULL) == 0 &&
         mfs_stage_writer_size(w) == 50 && mfs_stage_writer_truncate(w, 2 * CH, NULL) == 0 &&
         mfs_stage_writer_commit(w, NULL) == 0;
    mfs_stage_writer_close(&w);
    memset(want + 50, 0, 2 * CH - 50);
    CHECK(ok && staged_equals(s, "b.bin", want, 2 * CH), "truncate shrink then grow");

    /* Remote base: only the written range is new; the rest reads remote. */
    fb->calls = 0;
    rc = mfs_stage_writer_open(s, "weights.bin", MFS_STAGE_BASE_REMOTE, &rem, 0644, &w, NULL);
    ok = rc == 0 && mfs_stage_writer_write(w, CH + 10, "XYZ", 3, NULL) == 3 &&
         mfs_stage_writer_commit(w, NULL) == 0;
    for (i = 0; i < 3 * CH; i++)
        want[i] = remote_byte(&rem, i);
    memcpy(want + CH + 10, "XYZ", 3);
    CHECK(ok && staged_equals(s, "weights.bin", want, 3 * CH) && fb->calls == 2,
          "remote base: write spliced in, the rest read remote (%u calls)", fb->calls);
    rc = mfs_stage_get(s, "weights.bin", &e, NULL);
    CHECK(rc == 0 && !e.unchanged_remote, "a modified remote file is not unchanged_remote");
    free(e.path);
    free(e.remote.path);

    /* A writer's links hold their data even when the source goes meanwhile. */
    rc = mfs_stage_writer_open(s, "c.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w2, NULL);
    ok = rc == 0 && mfs_stage_writer_link(w2, 0, "b.bin", 0, 40, NULL) == 40;
    rm.path = "b.bin";
    ok = ok && mfs_stage_apply(s, &rm, 1, NULL) == 0;
    ok = ok && mfs_stage_writer_commit(w2, NULL) == 0;
    mfs_stage_writer_close(&w2);
    CHECK(ok && staged_equals(s, "c.bin", a + 100, 40),
          "an open writer's linked data survives removal of its source");
    mfs_stage_writer_close(&w);

    /* Batches a writer flushes after a commit never touch committed bytes. */
    rc = mfs_stage_writer_open(s, "sealed.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    for (i = 0; rc == 0 && i < 40; i++)
        if (mfs_stage_writer_write(w, i * CH, want, CH, NULL) != (ssize_t)CH)
            rc = -1;
    rc = rc ? rc : mfs_stage_writer_commit(w, NULL);
    for (i = 0; rc == 0 && i < 40; i++)
        if (mfs_stage_writer_write(w, i * CH, a, CH, NULL) != (ssize_t)CH)
            rc = -1;
    ok = rc == 0 && check_db_int(dir, ORPHANS) > 0;
    for (i = 0; ok && i < 40; i++) {
        unsigned char one[64];

        ok = mfs_stage_read(s, "sealed.bin", i * CH + 1000, 64, one, NULL) == 64 &&
             !memcmp(one, want + 1000, 64);
    }
    CHECK(ok, "flushed writes after a commit leave the committed content alone");
    mfs_stage_writer_close(&w);

    /* An abandoned draft is deleted at close. */
    rc = mfs_stage_writer_open(s, "draft.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    for (i = 0; rc == 0 && i < 40; i++)
        if (mfs_stage_writer_write(w, i * CH, want, CH, NULL) != (ssize_t)CH)
            rc = -1;
    CHECK(rc == 0 && check_db_int(dir, ORPHANS) > 0, "a big draft flushed chunks before commit");
    mfs_stage_writer_close(&w);
    CHECK(check_db_int(dir, ORPHANS) == 0, "closing an uncommitted writer deletes its data");
    mfs_stage_close(&s);
out:
    free(a);
    free(want);
}

/* Sequential writes keep one extent: the encoded piece table is one record. */
static void test_sequential(const char *dir)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    unsigned char *buf;
    const size_t step = 128 * 1024 + 17;
    uint64_t off = 0;
    int rc = -1;
    int i;

    buf = malloc(step);
    if (!buf || open_stage(dir, NULL, &s) < 0)
        goto out;
    fill_pattern(buf, step, 3);
    rc = mfs_stage_writer_open(s, "seq.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    for (i = 0; rc == 0 && i < 160; i++, off += step)
        if (mfs_stage_writer_write(w, off, buf, step, NULL) != (ssize_t)step)
            rc = -1;
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    CHECK(rc == 0 && check_db_int(dir, "SELECT length(extents) FROM stage_entries "
                                 "WHERE path = 'seq.bin'") == 25,
          "a 20 MiB sequential write is one extent");
    mfs_stage_close(&s);
out:
    free(buf);
}

/* ---- content hashes of files written in order ------------------------------ */

/* True when path's entry has no sha256, or the right one for want. */
static bool sha_matches(struct mfs_stage *s, const char *path, const unsigned char *want,
                        size_t n)
{
    struct mfs_stage_entry e;
    char hex[65];
    bool ok;

    if (mfs_stage_get(s, path, &e, NULL) < 0)
        return false;
    mfs_hash_sha256_hex(want, n, hex);
    ok = !e.sha256[0] || !strcmp(e.sha256, hex);
    free(e.path);
    free(e.remote.path);
    return ok;
}

/* The sha256 path's entry carries ("" if none) into out[65]. */
static void sha_of(struct mfs_stage *s, const char *path, char *out)
{
    struct mfs_stage_entry e;

    out[0] = '\0';
    if (mfs_stage_get(s, path, &e, NULL) < 0)
        return;
    memcpy(out, e.sha256, 65);
    free(e.path);
    free(e.remote.path);
}

/* Write [0, n) of data in pieces of step bytes (in order, or with the
 * first two pieces swapped), then commit; returns the commit's rc. */
static int write_pieces(struct mfs_stage *s, const char *path, const unsigned char *data,
                        size_t n, size_t step, bool swap, enum mfs_stage_base base)
{
    struct mfs_stage_writer *w = NULL;
    size_t off;
    int rc;

    rc = mfs_stage_writer_open(s, path, base, NULL, 0644, &w, NULL);
    if (rc == 0 && swap && n > 2 * step) {
        if (mfs_stage_writer_write(w, step, data + step, step, NULL) != (ssize_t)step ||
            mfs_stage_writer_write(w, 0, data, step, NULL) != (ssize_t)step)
            rc = -1;
        off = 2 * step;
    } else {
        off = 0;
    }
    for (; rc == 0 && off < n; off += step) {
        size_t k = n - off < step ? n - off : step;

        if (mfs_stage_writer_write(w, off, data + off, k, NULL) != (ssize_t)k)
            rc = -1;
    }
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    return rc;
}

/* cache/stage.h "Hashes": a file written in order from 0 carries its
 * sha256; anything else leaves it unknown, never wrong. */
static void test_hashes(const char *dir)
{
    static const struct {
        const char *name;
        size_t size;
        size_t step;
        bool swap;
        bool known;
    } cases[] = {
        { "empty", 0, 1, false, true },
        { "one byte", 1, 1, false, true },
        { "small pieces", 3 * CH + 5, 4096 + 7, false, true },
        { "whole chunks", 4 * CH, CH, false, true },
        { "one big write", 2 * CH + 99, 2 * CH + 99, false, true },
        { "out of order", 3 * CH, CH / 2, true, false },
    };
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_change mv = { .op = MFS_STAGE_OP_MOVE, .path = "moved", .from = "f" };
    struct mfs_stage_change cm = { .op = MFS_STAGE_OP_CHMOD, .path = "moved", .mode = 0600 };
    unsigned char *data;
    char want[65];
    char got[65];
    size_t i;
    int rc;

    data = malloc(4 * CH + 100);
    if (!data || open_stage(dir, NULL, &s) < 0)
        goto out;
    fill_pattern(data, 4 * CH + 100, 7);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rc = write_pieces(s, "f", data, cases[i].size, cases[i].step, cases[i].swap,
                          MFS_STAGE_BASE_EMPTY);
        mfs_hash_sha256_hex(data, cases[i].size, want);
        sha_of(s, "f", got);
        CHECK(rc == 0 && (cases[i].known ? !strcmp(got, want) : got[0] == '\0'),
              "hash of a file written %s: %s", cases[i].name, got[0] ? got : "(unknown)");
    }
    /* An fsync midway, more writes, then the close: both commits right. */
    rc = mfs_stage_writer_open(s, "f", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    if (rc == 0 && mfs_stage_writer_write(w, 0, data, CH + 3, NULL) == (ssize_t)(CH + 3))
        rc = mfs_stage_writer_commit(w, NULL);
    CHECK(rc == 0 && sha_matches(s, "f", data, CH + 3) && (sha_of(s, "f", got), got[0]),
          "hash at an fsync midway");
    if (rc == 0 && mfs_stage_writer_write(w, CH + 3, data + CH + 3, CH, NULL) == (ssize_t)CH)
        rc = mfs_stage_writer_commit(w, NULL);
    mfs_hash_sha256_hex(data, 2 * CH + 3, want);
    sha_of(s, "f", got);
    CHECK(rc == 0 && !strcmp(got, want), "hash after more writes and a second commit");
    /* O_TRUNC on an open file starts over; a shrink loses it. */
    if (rc == 0 && mfs_stage_writer_truncate(w, 0, NULL) == 0 &&
        mfs_stage_writer_write(w, 0, data + 5, 1000, NULL) == 1000)
        rc = mfs_stage_writer_commit(w, NULL);
    mfs_hash_sha256_hex(data + 5, 1000, want);
    sha_of(s, "f", got);
    CHECK(rc == 0 && !strcmp(got, want), "truncate to 0, then writes: hashed again");
    if (rc == 0 && mfs_stage_writer_truncate(w, 10, NULL) == 0)
        rc = mfs_stage_writer_commit(w, NULL);
    sha_of(s, "f", got);
    CHECK(rc == 0 && got[0] == '\0', "truncate to another size: hash unknown");
    mfs_stage_writer_close(&w);
    /* Rename and chmod keep the content, so the hash. */
    rc = write_pieces(s, "f", data, 3 * CH, CH, false, MFS_STAGE_BASE_EMPTY);
    mfs_hash_sha256_hex(data, 3 * CH, want);
    if (rc == 0)
        rc = mfs_stage_apply(s, &mv, 1, NULL);
    if (rc == 0)
        rc = mfs_stage_apply(s, &cm, 1, NULL);
    sha_of(s, "moved", got);
    CHECK(rc == 0 && !strcmp(got, want), "rename and chmod keep the hash");
    mfs_stage_close(&s);
    rc = open_stage(dir, NULL, &s);
    sha_of(s, "moved", got);
    CHECK(rc == 0 && !strcmp(got, want), "the hash is stored with the entry (reopen)");
    /* A writer that starts from staged bytes, or links bytes in, cannot know. */
    rc = write_pieces(s, "moved", data + 3 * CH, CH, CH, false, MFS_STAGE_BASE_STAGED);
    sha_of(s, "moved", got);
    CHECK(rc == 0 && got[0] == '\0', "appending to a staged file: hash unknown");
    rc = mfs_stage_writer_open(s, "l", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    if (rc == 0 && mfs_stage_writer_link(w, 0, "moved", 0, CH, NULL) == (ssize_t)CH)
        rc = mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    sha_of(s, "l", got);
    CHECK(rc == 0 && got[0] == '\0', "a linked file: hash unknown");
    mfs_stage_close(&s);
out:
    free(data);
}

/* ---- generations and clear_upto ------------------------------------------- */

static void test_clear(const char *dir)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_entry *list = NULL;
    struct mfs_stage_change wo = { .op = MFS_STAGE_OP_WHITEOUT, .path = "gone" };
    size_t n = 0;
    uint64_t g;
    int tries;
    int rc;

    if (open_stage(dir, NULL, &s) < 0)
        return;
    rc = mfs_stage_writer_open(s, "one", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    mfs_stage_writer_write(w, 0, "1", 1, NULL);
    mfs_stage_writer_commit(w, NULL);
    mfs_stage_apply(s, &wo, 1, NULL);
    g = mfs_stage_generation(s);            /* a push starts here */
    mfs_stage_writer_write(w, 0, "2", 1, NULL);
    rc = mfs_stage_writer_commit(w, NULL);  /* changed while pushing */
    mfs_stage_writer_close(&w);
    rc = rc == 0 ? mfs_stage_writer_open(s, "two", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL)
                 : rc;
    mfs_stage_writer_write(w, 0, "t", 1, NULL);
    mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    rc = mfs_stage_clear_upto(s, g, NULL);
    CHECK(rc == 0, "clear_upto (%d)", rc);
    rc = mfs_stage_list(s, &list, &n, NULL);
    CHECK(rc == 0 && n == 2 && !strcmp(list[0].path, "one") && !strcmp(list[1].path, "two"),
          "clear_upto keeps the changes made after gen");
    CHECK(staged_equals(s, "one", (const unsigned char *)"2", 1), "the later content stays");
    mfs_stage_entries_free(list, n);
    rc = mfs_stage_clear_upto(s, mfs_stage_generation(s), NULL);
    mfs_stage_totals(s, &n, &g);
    CHECK(rc == 0 && n == 0 && g == 0, "clear_upto(generation) empties the stage");
    /* The data goes in the background (a push does not wait for it). */
    for (tries = 0; tries < 400 && (check_db_int(dir, "SELECT count(*) FROM stage_chunks") != 0 ||
                                    check_db_int(dir, "SELECT count(*) FROM stage_objects") != 0);
         tries++)
        usleep(25 * 1000);
    CHECK(check_db_int(dir, "SELECT count(*) FROM stage_chunks") == 0 &&
          check_db_int(dir, "SELECT count(*) FROM stage_objects") == 0,
          "clear_upto deletes the data no longer referenced (soon after)");
    mfs_stage_close(&s);
}

/* A stage closed (or killed) before its background GC ran: the next open
 * collects the data of the cleared entries. */
static void test_clear_then_close(const char *dir)
{
    struct mfs_stage *s = NULL;
    unsigned char *buf;
    size_t n = 1;
    uint64_t bytes = 1;
    int rc = -1;

    buf = malloc(3 * CH);
    if (!buf || open_stage(dir, NULL, &s) < 0)
        goto out;
    fill_pattern(buf, 3 * CH, 5);
    rc = write_pieces(s, "a", buf, 3 * CH, CH, false, MFS_STAGE_BASE_EMPTY);
    if (rc == 0)
        rc = write_pieces(s, "b", buf, 2 * CH + 1, CH, false, MFS_STAGE_BASE_EMPTY);
    if (rc == 0)
        rc = mfs_stage_clear_upto(s, mfs_stage_generation(s), NULL);
    mfs_stage_close(&s);                    /* at once: no time for the background GC */
    if (rc == 0)
        rc = open_stage(dir, NULL, &s);
    if (rc == 0)
        mfs_stage_totals(s, &n, &bytes);
    CHECK(rc == 0 && n == 0 && bytes == 0 &&
          check_db_int(dir, "SELECT count(*) FROM stage_chunks") == 0 &&
          check_db_int(dir, "SELECT count(*) FROM stage_objects") == 0,
          "clear_upto, then close at once: the next open deletes the data (%d)", rc);
    mfs_stage_close(&s);
out:
    free(buf);
}

/* ---- multi-writer commit ----------------------------------------------------- */

static void test_multi_commit(const char *dir)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w[2] = { NULL, NULL };
    struct mfs_stage_entry e;
    struct mfs_stage_change ok_ch[] = { { .op = MFS_STAGE_OP_WHITEOUT, .path = "model.bin" } };
    struct mfs_stage_change bad_ch[] = {
        { .op = MFS_STAGE_OP_WHITEOUT, .path = "model.bin" },
        { .op = MFS_STAGE_OP_MOVE, .path = "x", .from = "missing" },
    };
    uint64_t g;
    int rc;

    if (open_stage(dir, NULL, &s) < 0)
        return;
    rc = mfs_stage_writer_open(s, "shard-1", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w[0], NULL);
    rc = rc ? rc : mfs_stage_writer_open(s, "shard-2", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w[1],
                                         NULL);
    if (rc < 0)
        goto out;
    mfs_stage_writer_write(w[0], 0, "aaaa", 4, NULL);
    mfs_stage_writer_write(w[1], 0, "bbbb", 4, NULL);
    g = mfs_stage_generation(s);
    rc = mfs_stage_commit(s, w, 2, bad_ch, 2, NULL);
    CHECK(rc == -ENOENT && mfs_stage_generation(s) == g &&
          mfs_stage_get(s, "shard-1", &e, NULL) == -ENOENT &&
          mfs_stage_get(s, "model.bin", &e, NULL) == -ENOENT,
          "a failing multi-writer commit changes nothing");
    rc = mfs_stage_commit(s, w, 2, ok_ch, 1, NULL);
    CHECK(rc == 0 && mfs_stage_generation(s) == g + 1 &&
          staged_equals(s, "shard-1", (const unsigned char *)"aaaa", 4) &&
          staged_equals(s, "shard-2", (const unsigned char *)"bbbb", 4) &&
          mfs_stage_get(s, "model.bin", &e, NULL) == 0 && e.kind == MFS_STAGE_DELETED &&
          e.generation == g + 1, "a multi-writer commit is one generation");
    if (rc == 0)
        free(e.path);
out:
    mfs_stage_writer_close(&w[0]);
    mfs_stage_writer_close(&w[1]);
    mfs_stage_close(&s);
}

/* ---- threads: readers while a writer commits ------------------------------------- */

struct reader_arg {
    struct mfs_stage *s;
    int bad;
    int reads;
};

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    unsigned char buf[CH / 2];
    ssize_t r;
    size_t i;
    int k;

    for (k = 0; k < 300; k++) {
        r = mfs_stage_read(a->s, "hot.bin", CH / 4, sizeof(buf), buf, NULL);
        if (r != (ssize_t)sizeof(buf)) {
            a->bad++;
            continue;
        }
        /* every version is one repeated byte: a torn read mixes two */
        for (i = 1; i < sizeof(buf); i++)
            if (buf[i] != buf[0])
                break;
        if (i != sizeof(buf))
            a->bad++;
        a->reads++;
    }
    return NULL;
}

static void test_threads(const char *dir)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct reader_arg ra = { 0 };
    unsigned char *buf;
    pthread_t t;
    int rc;
    int k;

    buf = malloc(2 * CH);
    if (!buf || open_stage(dir, NULL, &s) < 0)
        goto out;
    memset(buf, 1, 2 * CH);
    rc = mfs_stage_writer_open(s, "hot.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    rc = rc ? rc : (int)mfs_stage_writer_write(w, 0, buf, 2 * CH, NULL);
    rc = rc < 0 ? rc : mfs_stage_writer_commit(w, NULL);
    ra.s = s;
    if (rc == 0 && pthread_create(&t, NULL, reader_main, &ra) == 0) {
        for (k = 2; k < 60 && rc == 0; k++) {
            memset(buf, k, 2 * CH);
            if (mfs_stage_writer_write(w, 0, buf, 2 * CH, NULL) < 0 ||
                mfs_stage_writer_commit(w, NULL) < 0)
                rc = -1;
        }
        pthread_join(t, NULL);
    }
    CHECK(rc == 0 && ra.bad == 0 && ra.reads == 300,
          "reads during commits see whole versions (%d bad)", ra.bad);
    mfs_stage_writer_close(&w);
    mfs_stage_close(&s);
out:
    free(buf);
}

struct writer_arg {
    struct mfs_stage *s;
    const char *path;
    unsigned seed;
    int rc;
};

/* 20 MiB in odd-sized pieces (so batches flush while the other thread's do). */
static void *writer_main(void *p)
{
    struct writer_arg *a = p;
    struct mfs_stage_writer *w = NULL;
    unsigned char *buf = malloc(20u << 20);
    uint64_t off;
    size_t n;

    a->rc = buf ? mfs_stage_writer_open(a->s, a->path, MFS_STAGE_BASE_EMPTY, NULL, 0644, &w,
                                        NULL) : -ENOMEM;
    if (a->rc == 0)
        fill_pattern(buf, 20u << 20, a->seed);
    for (off = 0; a->rc == 0 && off < (20u << 20); off += n) {
        n = 100000 < (20u << 20) - off ? 100000 : (20u << 20) - off;
        if (mfs_stage_writer_write(w, off, buf + off, n, NULL) != (ssize_t)n)
            a->rc = -1;
    }
    a->rc = a->rc ? a->rc : mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    free(buf);
    return NULL;
}

static void test_two_writers(const char *dir)
{
    struct mfs_stage *s = NULL;
    struct writer_arg wa[2] = { { .path = "one.bin", .seed = 1 },
                                { .path = "two.bin", .seed = 2 } };
    unsigned char *want = malloc(20u << 20);
    pthread_t t[2];
    int started = 0;
    int i;

    if (!want || open_stage(dir, NULL, &s) < 0)
        goto out;
    for (i = 0; i < 2; i++) {
        wa[i].s = s;
        if (pthread_create(&t[i], NULL, writer_main, &wa[i]) == 0)
            started++;
    }
    for (i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    for (i = 0; i < 2; i++) {
        fill_pattern(want, 20u << 20, wa[i].seed);
        CHECK(started == 2 && wa[i].rc == 0 && staged_equals(s, wa[i].path, want, 20u << 20),
              "two threads writing at once: '%s' is exact", wa[i].path);
    }
    mfs_stage_close(&s);
out:
    free(want);
}

/* ---- kill -9 at random moments ---------------------------------------------------- */

/* Content of the file committed at generation g: its size and bytes. */
static size_t crash_content(uint64_t g, unsigned char *buf)
{
    size_t n = (size_t)((g * 7919u) % (3 * CH)) + 1;

    fill_pattern(buf, n, (unsigned)g);
    return n;
}

/* The child: commits forever; after each commit reports its generation. */
static void crash_child(const char *dir, int fd)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w[2] = { NULL, NULL };
    struct mfs_stage_writer *draft = NULL;
    unsigned char *buf = malloc(3 * CH + 1);
    char path[32];
    uint64_t g;
    size_t n;
    int rc;

    if (!buf || open_stage(dir, NULL, &s) < 0)
        _exit(2);
    for (;;) {
        g = mfs_stage_generation(s) + 1;
        n = crash_content(g, buf);
        if (g % 4 == 0) {
            /* two files in one commit: both or neither */
            rc = mfs_stage_writer_open(s, "pair/a", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w[0],
                                       NULL);
            rc = rc ? rc : mfs_stage_writer_open(s, "pair/b", MFS_STAGE_BASE_EMPTY, NULL, 0644,
                                                 &w[1], NULL);
            rc = rc ? rc : (int)mfs_stage_writer_write(w[0], 0, buf, n, NULL);
            rc = rc < 0 ? rc : (int)mfs_stage_writer_write(w[1], 0, buf, n, NULL);
            rc = rc < 0 ? rc : mfs_stage_commit(s, w, 2, NULL, 0, NULL);
            mfs_stage_writer_close(&w[0]);
            mfs_stage_writer_close(&w[1]);
        } else {
            snprintf(path, sizeof(path), "f%u", (unsigned)(g % 3));
            rc = mfs_stage_writer_open(s, path, g % 2 ? MFS_STAGE_BASE_STAGED :
                                       MFS_STAGE_BASE_EMPTY, NULL, 0644, &w[0], NULL);
            if (rc == -ENOENT)
                rc = mfs_stage_writer_open(s, path, MFS_STAGE_BASE_EMPTY, NULL, 0644, &w[0],
                                           NULL);
            rc = rc ? rc : (int)mfs_stage_writer_write(w[0], 0, buf, n, NULL);
            rc = rc < 0 ? rc : mfs_stage_writer_truncate(w[0], n, NULL);
            rc = rc < 0 ? rc : mfs_stage_writer_commit(w[0], NULL);
            mfs_stage_writer_close(&w[0]);
        }
        if (rc < 0)
            _exit(3);
        if (write(fd, &g, sizeof(g)) != sizeof(g))
            _exit(4);
        /* a big draft that flushes chunks and is never committed */
        if (g % 5 == 0 && !draft) {
            rc = mfs_stage_writer_open(s, "draft", MFS_STAGE_BASE_EMPTY, NULL, 0644, &draft,
                                       NULL);
            for (n = 0; rc == 0 && n < 40; n++)
                if (mfs_stage_writer_write(draft, n * CH, buf, CH, NULL) < 0)
                    rc = -1;
        }
    }
}

static void test_crash(const char *dir)
{
    unsigned char *want = malloc(3 * CH + 1);
    struct mfs_stage_entry *list = NULL;
    struct mfs_stage *s = NULL;
    uint32_t seed = 777;
    uint64_t last = 0;
    uint64_t g;
    size_t n = 0;
    size_t i;
    int round;
    int fds[2];
    int status;
    pid_t pid;
    bool integrity = true;
    bool durable = true;
    bool exact = true;
    bool clean = true;
    bool pair = true;
    ssize_t r;

    if (!want)
        return;
    for (round = 0; round < 6; round++) {
        if (pipe(fds) < 0)
            break;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            crash_child(dir, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        usleep(50000 + rnd(&seed) % 400000);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        while ((r = read(fds[0], &g, sizeof(g))) == sizeof(g))
            last = g;
        close(fds[0]);
        if (!WIFSIGNALED(status)) {
            durable = false;
            break;
        }
        integrity = integrity && check_db_integrity_ok(dir);
        if (open_stage(dir, NULL, &s) < 0) {
            integrity = false;
            break;
        }
        durable = durable && mfs_stage_generation(s) >= last;
        if (mfs_stage_list(s, &list, &n, NULL) == 0) {
            for (i = 0; i < n; i++) {
                size_t len = crash_content(list[i].generation, want);

                exact = exact && staged_equals(s, list[i].path, want, len);
            }
            pair = pair && n >= 2 && !strcmp(list[0].path, "f0") &&
                   (n < 5 || (!strcmp(list[3].path, "pair/a") &&
                              list[3].generation == list[4].generation));
            mfs_stage_entries_free(list, n);
        }
        mfs_stage_close(&s);
        clean = clean && check_db_int(dir, ORPHANS) == 0 &&
                check_db_int(dir, "SELECT count(*) FROM stage_objects WHERE refs <= 0") == 0;
    }
    CHECK(last > 10, "the child committed before its kills (generation %llu)",
          (unsigned long long)last);
    CHECK(integrity, "PRAGMA integrity_check is ok after every kill -9");
    CHECK(durable, "every commit reported before a kill -9 survives it");
    CHECK(exact, "every entry holds exactly the content of its generation");
    CHECK(pair, "a two-file commit shows both files at one generation");
    CHECK(clean, "uncommitted drafts are deleted at the next open");
    free(want);
}

/* ---- one process per stage ------------------------------------------------- */

/* The child of test_lock: hold the stage with an uncommitted draft, say so
 * on ready, wait for go, then commit the draft and exit 0 iff it reads
 * back whole (so a failed open by the parent must not have deleted it). */
static void lock_child(const char *dir, int ready, int go)
{
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    size_t n = (9u << 20) + 100;            /* past one flush batch (8 MiB) */
    unsigned char *data = malloc(n);
    char c = 'r';
    bool same;

    if (!data)
        _exit(2);
    fill_pattern(data, n, 99);
    if (open_stage(dir, NULL, &s) < 0 ||
        mfs_stage_writer_open(s, "draft.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL) < 0 ||
        mfs_stage_writer_write(w, 0, data, n, NULL) != (ssize_t)n)
        _exit(2);
    /* The draft's full chunks are in the database now: an orphan
     * collection by another opener would delete them. */
    if (write(ready, &c, 1) != 1 || read(go, &c, 1) != 1)
        _exit(3);
    if (mfs_stage_writer_commit(w, NULL) < 0)
        _exit(4);
    mfs_stage_writer_close(&w);
    same = staged_equals(s, "draft.bin", data, n);
    free(data);
    mfs_stage_close(&s);
    _exit(same ? 0 : 5);
}

static void test_lock(const char *dir)
{
    static const struct mfs_cache_repo other = { "http://127.0.0.1:1", "model", "org/other" };
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_stage *s = NULL;
    struct mfs_stage *s2 = NULL;
    char want[64];
    int ready[2];
    int go[2];
    int status = -1;
    int rc;
    char c;
    pid_t pid;

    if (pipe(ready) < 0 || pipe(go) < 0)
        return;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        lock_child(dir, ready[1], go[0]);
    }
    close(ready[1]);
    close(go[0]);
    CHECK(read(ready[0], &c, 1) == 1, "lock: the child holds the stage with a draft");
    CHECK(check_db_int(dir, ORPHANS) > 0, "lock: the child's draft chunks are in the database");
    rc = mfs_stage_open(dir, &REPO, "main", NULL, NULL, &s, &err);
    snprintf(want, sizeof(want), "(pid %ld)", (long)pid);
    CHECK(rc == -EBUSY && !s, "lock: a second process's open fails with EBUSY (rc %d)", rc);
    CHECK(strstr(err.msg, "the staged changes of org/staged@main are held by another mount") &&
          strstr(err.msg, want), "lock: the reason names the stage and the holder: '%s'",
          err.msg);
    rc = mfs_stage_open(dir, &REPO, "dev", NULL, NULL, &s, NULL);
    CHECK(rc == 0, "lock: another revision of the repo is a stage of its own (rc %d)", rc);
    mfs_stage_close(&s);
    rc = mfs_stage_open(dir, &other, "main", NULL, NULL, &s, NULL);
    CHECK(rc == 0, "lock: another repo's stage opens meanwhile (rc %d)", rc);
    mfs_stage_close(&s);
    c = 'g';
    if (write(go[1], &c, 1) != 1)
        kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    close(ready[0]);
    close(go[1]);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "lock: the holder's draft survived the refused open and commits whole (status %d)",
          status);
    rc = mfs_stage_open(dir, &REPO, "main", NULL, NULL, &s, &err);
    CHECK(rc == 0, "lock: the stage opens once its holder closed it (rc %d)", rc);
    if (rc == 0) {
        rc = mfs_stage_open(dir, &REPO, "main", NULL, NULL, &s2, NULL);
        CHECK(rc == -EBUSY, "lock: a second open in the same process fails too (rc %d)", rc);
        mfs_stage_close(&s2);
        mfs_stage_close(&s);
    }

    /* A holder killed -9 leaves no lock behind: the kernel drops it. */
    if (pipe(ready) < 0)
        return;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(ready[0]);
        if (open_stage(dir, NULL, &s) < 0 || write(ready[1], "r", 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    close(ready[1]);
    rc = read(ready[0], &c, 1) == 1 ? 0 : -1;
    close(ready[0]);
    CHECK(rc == 0 && mfs_stage_open(dir, &REPO, "main", NULL, NULL, &s, NULL) == -EBUSY,
          "lock: held while the second child lives");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    mfs_err_clear(&err);
    rc = mfs_stage_open(dir, &REPO, "main", NULL, NULL, &s, &err);
    CHECK(rc == 0, "lock: the stage opens after its holder was killed -9 (rc %d: %s)", rc,
          err.msg);
    mfs_stage_close(&s);
}

/* ---- a full disk --------------------------------------------------------------- */

static void test_enospc(const char *base)
{
    char dir[512];
    struct mfs_stage *s = NULL;
    struct mfs_stage_writer *w = NULL;
    struct mfs_stage_writer *w2 = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    unsigned char *keep = NULL;
    unsigned char *buf = NULL;
    const size_t nkeep = 100 * 1024 + 3;
    uint64_t off = 0;
    uint64_t g;
    ssize_t r = 0;
    int rc;

    snprintf(dir, sizeof(dir), "%s/small", base);
    mkdir(dir, 0700);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=8m") < 0) {
        printf("ok - full disk test skipped: cannot mount a tmpfs (%s)\n", strerror(errno));
        return;
    }
    keep = malloc(nkeep);
    buf = malloc(1 << 20);
    if (!keep || !buf || open_stage(dir, NULL, &s) < 0) {
        CHECK(0, "open a stage on a small tmpfs");
        goto out_umount;
    }
    fill_pattern(keep, nkeep, 5);
    fill_pattern(buf, 1 << 20, 6);
    rc = mfs_stage_writer_open(s, "keep.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    rc = rc ? rc : (int)mfs_stage_writer_write(w, 0, keep, nkeep, NULL);
    rc = rc < 0 ? rc : mfs_stage_writer_commit(w, NULL);
    mfs_stage_writer_close(&w);
    CHECK(rc == 0, "stage a file on the small disk");
    g = mfs_stage_generation(s);
    /* A second writer with a draft in memory, committed after the disk filled. */
    rc = mfs_stage_writer_open(s, "late.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w2, NULL);
    rc = rc ? rc : (int)mfs_stage_writer_write(w2, 0, buf, 3 * CH, NULL);
    rc = mfs_stage_writer_open(s, "big.bin", MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, NULL);
    while (rc == 0 && off < (64u << 20)) {
        r = mfs_stage_writer_write(w, off, buf, 1 << 20, &err);
        if (r < 0)
            break;
        off += 1 << 20;
    }
    CHECK(r == -ENOSPC && err.msg[0], "writing until the disk is full gives -ENOSPC (%zd: %s)",
          r, err.msg);
    rc = mfs_stage_writer_commit(w, NULL);
    CHECK(rc == -ENOSPC, "the broken draft cannot commit (%d)", rc);
    {
        struct mfs_stage_writer *both[2] = { w2, w };
        struct mfs_stage_entry e;

        rc = mfs_stage_commit(s, both, 2, NULL, 0, NULL);
        CHECK(rc == -ENOSPC && mfs_stage_get(s, "late.bin", &e, NULL) == -ENOENT,
              "a multi-writer commit with a broken writer commits none (%d)", rc);
        /* the disk is still full of the broken draft: all or nothing */
        rc = mfs_stage_writer_commit(w2, NULL);
        CHECK((rc == -ENOSPC && mfs_stage_get(s, "late.bin", &e, NULL) == -ENOENT &&
               mfs_stage_generation(s) == g) ||
              (rc == 0 && staged_equals(s, "late.bin", buf, 3 * CH)),
              "a commit on a full disk is all or nothing (%d)", rc);
        g = mfs_stage_generation(s);
    }
    mfs_stage_writer_close(&w);
    CHECK(staged_equals(s, "keep.bin", keep, nkeep) && mfs_stage_generation(s) == g,
          "after ENOSPC everything committed before is intact");
    /* The space the draft took is back: a small commit works again. */
    mfs_err_clear(&err);
    rc = mfs_stage_writer_commit(w2, &err);
    CHECK(rc == 0 && staged_equals(s, "late.bin", buf, 3 * CH),
          "after the draft is dropped a commit fits again (%d: %s)", rc, err.msg);
    mfs_stage_writer_close(&w2);
    mfs_stage_close(&s);
    CHECK(open_stage(dir, NULL, &s) == 0 && staged_equals(s, "keep.bin", keep, nkeep) &&
          check_db_integrity_ok(dir), "after ENOSPC a reopen finds the committed data");
    mfs_stage_close(&s);
out_umount:
    free(keep);
    free(buf);
    if (umount2(dir, MNT_DETACH) < 0)
        printf("# cannot unmount '%s': %s\n", dir, strerror(errno));
}

int main(void)
{
    struct fake_base fb = { .lock = PTHREAD_MUTEX_INITIALIZER };
    char dir[512];
    char base[512];

    tmpdir("", base, sizeof(base));
    test_basic(tmpdir("basic", dir, sizeof(dir)), &fb);
    test_hostile(tmpdir("hostile", dir, sizeof(dir)));
    test_damaged(tmpdir("damaged", dir, sizeof(dir)));
    test_links(tmpdir("links", dir, sizeof(dir)), &fb);
    test_sequential(tmpdir("seq", dir, sizeof(dir)));
    test_hashes(tmpdir("hashes", dir, sizeof(dir)));
    test_clear(tmpdir("clear", dir, sizeof(dir)));
    test_clear_then_close(tmpdir("clear2", dir, sizeof(dir)));
    test_multi_commit(tmpdir("multi", dir, sizeof(dir)));
    test_threads(tmpdir("threads", dir, sizeof(dir)));
    test_two_writers(tmpdir("two", dir, sizeof(dir)));
    test_property(tmpdir("prop", dir, sizeof(dir)), &fb);
    test_crash(tmpdir("crash", dir, sizeof(dir)));
    test_lock(tmpdir("lock", dir, sizeof(dir)));
    test_enospc(base);
    return check_done();
}
