/* tests/hub/test_hub.c - hub/: URLs, errors, retries, stalls, strict ranges,
 * auth and redirects, hostile JSON, shutdown, threads; against the
 * misbehaving double in tests/hub/mock_hub.h. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "check_hub.h"
#include "hub/hub.h"
#include "hub/hub_int.h"
#include "hub/mock_hub.h"

#define REPO "org/tiny"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct mfs_hub *hub_for(const char *url, const char *token, long timeout_ms)
{
    struct mfs_hub_cfg cfg = { 0 };
    struct mfs_hub *hub = NULL;

    cfg.endpoint = url;
    cfg.token = token;
    cfg.timeout_ms = timeout_ms;
    mfs_hub_new(&cfg, &hub, NULL);
    return hub;
}

static void test_escape(void)
{
    static const struct { const char *in; bool keep; const char *out; } rows[] = {
        { "main", false, "main" },
        { "refs/pr/1", false, "refs%2Fpr%2F1" },
        { "feature/x y", false, "feature%2Fx%20y" },
        { "dir/a b.txt", true, "dir/a%20b.txt" },
        { "\xc3\xbc#?%", true, "%C3%BC%23%3F%25" },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_buf b = MFS_BUF_INIT;

        mfs_hub_buf_escape(&b, rows[i].in, rows[i].keep);
        CHECK(b.data && !strcmp(b.data, rows[i].out), "escape '%s' -> '%s'", rows[i].in,
              b.data ? b.data : "");
        mfs_buf_release(&b);
    }
    CHECK(mfs_hub_check_repo_id("gpt2", NULL) == 0 && mfs_hub_check_repo_id("a/b.c", NULL) == 0,
          "valid repo ids");
    CHECK(mfs_hub_check_repo_id("../x", NULL) == -EINVAL &&
          mfs_hub_check_repo_id("a/b/c", NULL) == -EINVAL &&
          mfs_hub_check_repo_id("a?b", NULL) == -EINVAL && mfs_hub_check_repo_id("", NULL) ==
          -EINVAL, "invalid repo ids");
}

static void test_metadata(struct mock_hub *m, struct mfs_hub *hub)
{
    struct mfs_hub_repo_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_entry *v = NULL;
    size_t n = 0;
    size_t i;
    int ok = 1;
    int rc;

    rc = mfs_hub_repo_info(hub, REPO, NULL, &info, &err);
    CHECK(rc == 0 && !strcmp(info.commit, m->commit) && !info.is_private && !info.gated &&
          info.last_modified == 1714566896, "repo info at main: %s", err.msg);
    rc = mfs_hub_repo_info(hub, REPO, "refs/pr/1", &info, &err);
    CHECK(rc == 0 && !strcmp(info.commit, "1111111111111111111111111111111111111111"),
          "repo info at refs/pr/1");
    rc = mfs_hub_repo_info(hub, REPO, "nope", &info, &err);
    CHECK(rc == -ENOENT && strstr(err.msg, "RevisionNotFound"), "unknown revision: %s", err.msg);
    rc = mfs_hub_repo_info(hub, "org/other", "main", &info, &err);
    CHECK(rc == -ENOENT && strstr(err.msg, "RepoNotFound"), "unknown repo: %s", err.msg);
    rc = mfs_hub_repo_info(hub, "../etc", "main", &info, &err);
    CHECK(rc == -EINVAL, "bad repo id");

    m->page = 3;                            /* forces Link rel="next" pages */
    rc = mfs_hub_tree(hub, REPO, m->commit, &v, &n, &err);
    CHECK(rc == 0 && n == (size_t)m->nfiles, "tree over %d pages: %zu entries: %s",
          (m->nfiles + 2) / 3, n, err.msg);
    for (i = 0; rc == 0 && i < n; i++) {
        struct mock_file *f = &m->files[i];

        if (strcmp(v[i].path, f->path) || v[i].size != f->size || v[i].is_lfs != f->lfs ||
            strcmp(v[i].oid, f->oid) || (f->lfs && strcmp(v[i].lfs_oid, f->sha256)))
            ok = 0;
    }
    CHECK(rc == 0 && ok, "tree entries match the files");
    mfs_entries_free(v, n);
}

static void test_hostile(struct mock_hub *m, struct mfs_hub *hub)
{
    static const char *const tricks[] = { "dotdot", "abs", "size", "elsewhere" };
    struct mfs_hub_repo_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_entry *v = NULL;
    size_t n = 0;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(tricks) / sizeof(tricks[0]); i++) {
        snprintf(m->hostile, sizeof(m->hostile), "%s", tricks[i]);
        rc = mfs_hub_tree(hub, REPO, m->commit, &v, &n, &err);
        CHECK(rc == -EIO && v == NULL && n == 0, "hostile tree '%s' -> -EIO: %s", tricks[i],
              err.msg);
    }
    snprintf(m->hostile, sizeof(m->hostile), "sha-type");
    rc = mfs_hub_repo_info(hub, REPO, "main", &info, &err);
    CHECK(rc == -EIO, "revision answer with a numeric sha -> -EIO: %s", err.msg);
    snprintf(m->hostile, sizeof(m->hostile), "notjson");
    rc = mfs_hub_repo_info(hub, REPO, "main", &info, &err);
    CHECK(rc == -EIO, "revision answer that is not JSON -> -EIO: %s", err.msg);
    m->hostile[0] = '\0';
}

/* Read [off, off+len) of file f and compare; returns the call's rc. */
static int read_range(struct mfs_hub *hub, struct mock_hub *m, struct mock_file *f,
                      uint64_t off, uint64_t len, bool *prefix_ok, struct mfs_err *err)
{
    struct check_collect c = { 0 };
    int rc;

    c.cap = (size_t)len;
    c.buf = malloc(c.cap + 1);
    rc = mfs_hub_get_range(hub, REPO, m->commit, f->path, off, len, check_collect_sink, &c, err);
    /* Never wrong bytes: whatever reached the sink is the file's. */
    *prefix_ok = c.len <= len && !memcmp(c.buf, f->data + off, c.len) &&
                 (rc < 0 || c.len == len);
    free(c.buf);
    return rc;
}

static void test_ranges(struct mock_hub *m, struct mfs_hub *hub, struct mock_file *f)
{
    static const struct { uint64_t off; uint64_t len; } rows[] = {
        { 0, 1 }, { 1, 100 }, { 4095, 4097 }, { 0, 0 }, { 262143, 3 },
    };
    struct mfs_err err = MFS_ERR_INIT;
    bool same;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        rc = read_range(hub, m, f, rows[i].off, rows[i].len, &same, &err);
        CHECK(rc == 0 && same, "range [%llu, +%llu) of '%s': %s",
              (unsigned long long)rows[i].off, (unsigned long long)rows[i].len, f->path,
              err.msg);
    }
    rc = read_range(hub, m, f, 0, f->size, &same, &err);
    CHECK(rc == 0 && same, "whole '%s' (%zu bytes) as one range", f->path, f->size);
    rc = mfs_hub_get_range(hub, REPO, m->commit, "no/such/file", 0, 10, check_collect_sink, NULL,
                           &err);
    CHECK(rc == -ENOENT, "missing file -> -ENOENT: %s", err.msg);
    rc = mfs_hub_get_range(hub, REPO, "0000000000000000000000000000000000000000", f->path, 0, 10,
                           check_collect_sink, NULL, &err);
    CHECK(rc == -ENOENT, "unknown commit -> -ENOENT: %s", err.msg);
}

static void test_faults(struct mock_hub *m, struct mfs_hub *hub, struct mock_file *f)
{
    static const struct { int mode; const char *name; } rows[] = {
        { MOCK_IGNORE_RANGE, "200 ignoring the range" },
        { MOCK_BAD_CRANGE, "wrong Content-Range" },
        { MOCK_LONG, "more bytes than asked" },
        { MOCK_TRUNCATE, "connection closed mid-body" },
        { MOCK_STALL, "stalled body" },
    };
    struct mfs_hub_stats s0;
    struct mfs_hub_stats s1;
    struct mfs_err err = MFS_ERR_INIT;
    bool same;
    double t0;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        atomic_store(&m->mode, rows[i].mode);
        t0 = now_s();
        rc = read_range(hub, m, f, 1000, 200000, &same, &err);
        CHECK(rc == -EIO && same && now_s() - t0 < 1.0 + 1.5,
              "%s -> -EIO in %.1fs, no wrong byte: %s", rows[i].name, now_s() - t0, err.msg);
    }
    atomic_store(&m->mode, MOCK_503);
    atomic_store(&m->fail_count, 2);
    mfs_hub_stats_get(hub, &s0);
    rc = read_range(hub, m, f, 5, 5000, &same, &err);
    mfs_hub_stats_get(hub, &s1);
    CHECK(rc == 0 && same && s1.requests - s0.requests == 3, "two 503s then success: %llu requests",
          (unsigned long long)(s1.requests - s0.requests));
    atomic_store(&m->fail_count, 100);
    rc = mfs_hub_get_range(hub, REPO, m->commit, f->path, 0, 10, check_collect_sink, NULL, &err);
    CHECK(rc == -EIO && strstr(err.msg, "503") && strstr(err.msg, "tries"), "503 forever: %s",
          err.msg);
    atomic_store(&m->mode, MOCK_OK);
}

static void test_auth(struct mock_hub *m, struct mock_hub *cdn, struct mock_file *f)
{
    struct mfs_hub_repo_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hub *anon = hub_for(m->url, NULL, 1000);
    struct mfs_hub *bad = hub_for(m->url, "hf_wrong", 1000);
    struct mfs_hub *good = hub_for(m->url, "hf_secret", 1000);
    bool same;
    int rc;

    m->token = "hf_secret";
    rc = mfs_hub_repo_info(anon, REPO, "main", &info, &err);
    CHECK(rc == -ENOENT && strstr(err.msg, "no token"),
          "private repo without a token looks missing (-ENOENT), says why: %s", err.msg);
    rc = mfs_hub_repo_info(bad, REPO, "main", &info, &err);
    CHECK(rc == -EACCES, "private repo with a wrong token -> -EACCES");
    rc = mfs_hub_repo_info(good, REPO, "main", &info, &err);
    CHECK(rc == 0 && info.is_private && !strcmp(m->last_auth, "Bearer hf_secret"),
          "private repo with its token: %s", err.msg);
    /* LFS 302 to another host:port: the token must not follow (hub-api.md 4.3). */
    snprintf(m->redirect, sizeof(m->redirect), "%s", cdn->url);
    rc = read_range(good, m, f, 10, 1000, &same, &err);
    CHECK(rc == 0 && same, "range through a redirect: %s", err.msg);
    CHECK(!strcmp(m->last_auth, "Bearer hf_secret") && cdn->last_auth[0] == '\0',
          "authorization sent to the Hub, not to the redirect target ('%s')", cdn->last_auth);
    m->redirect[0] = '\0';
    m->token = NULL;
    mfs_hub_free(&anon);
    mfs_hub_free(&bad);
    mfs_hub_free(&good);
}

struct shut_arg {
    struct mfs_hub *hub;
    struct mock_hub *m;
    struct mock_file *f;
    int rc;
};

static void *shut_thread(void *p)
{
    struct shut_arg *a = p;
    bool same;

    a->rc = read_range(a->hub, a->m, a->f, 0, a->f->size, &same, NULL);
    return NULL;
}

static void test_shutdown(struct mock_hub *m, struct mock_file *f)
{
    struct mfs_hub *hub = hub_for(m->url, NULL, 30000);
    struct shut_arg a = { hub, m, f, 1 };
    struct mfs_hub_repo_info info;
    pthread_t t;
    double t0;
    int rc;

    atomic_store(&m->mode, MOCK_STALL);
    pthread_create(&t, NULL, shut_thread, &a);
    usleep(300000);
    t0 = now_s();
    mfs_hub_shutdown(hub);
    pthread_join(t, NULL);
    CHECK(a.rc == -ESHUTDOWN && now_s() - t0 < 2.0, "shutdown aborts a stalled transfer "
          "in %.1fs (rc %d)", now_s() - t0, a.rc);
    rc = mfs_hub_repo_info(hub, REPO, "main", &info, NULL);
    CHECK(rc == -ESHUTDOWN, "calls after shutdown fail at once");
    atomic_store(&m->mode, MOCK_OK);
    mfs_hub_free(&hub);
    CHECK(hub == NULL, "free clears the pointer");
    mfs_hub_free(&hub);
}

struct par_arg {
    struct mfs_hub *hub;
    struct mock_hub *m;
    struct mock_file *f;
    int bad;
};

static void *par_thread(void *p)
{
    struct par_arg *a = p;
    bool same;
    int i;

    for (i = 0; i < 20; i++) {
        uint64_t off = (uint64_t)(i * 7919) % a->f->size;
        uint64_t len = a->f->size - off < 3000 ? a->f->size - off : 3000;

        if (read_range(a->hub, a->m, a->f, off, len, &same, NULL) < 0 || !same)
            a->bad++;
    }
    return NULL;
}

int main(void)
{
    struct mock_hub m;
    struct mock_hub cdn;
    struct mfs_hub *hub;
    struct mfs_hub_cfg cfg = { 0 };
    struct mfs_hub_repo_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mock_file *big = NULL;
    pthread_t t[8];
    struct par_arg pa[8];
    char dir[512];
    int i;
    int bad = 0;
    int rc;

    test_escape();
    memset(&m, 0, sizeof(m));
    memset(&cdn, 0, sizeof(cdn));
    snprintf(dir, sizeof(dir), "%s/models/tiny-random-gpt2", check_data_dir());
    mock_add_dir(&m, dir);
    mock_add_dir(&cdn, dir);
    CHECK(m.nfiles >= 4, "mock serves %d files of %s", m.nfiles, dir);
    for (i = 0; i < m.nfiles; i++)
        if (!big || m.files[i].size > big->size)
            big = &m.files[i];
    if (mock_start(&m, REPO) < 0 || mock_start(&cdn, REPO) < 0 || !big) {
        CHECK(0, "mock hub starts");
        return check_done();
    }
    cfg.endpoint = "ftp://x";
    CHECK(mfs_hub_new(&cfg, &hub, &err) == -EINVAL && hub == NULL, "ftp endpoint refused");
    hub = hub_for(m.url, NULL, 1000);
    CHECK(hub != NULL, "client for %s", m.url);
    test_metadata(&m, hub);
    test_hostile(&m, hub);
    test_ranges(&m, hub, big);
    test_faults(&m, hub, big);
    test_auth(&m, &cdn, big);
    for (i = 0; i < 8; i++) {
        pa[i].hub = hub;
        pa[i].m = &m;
        pa[i].f = big;
        pa[i].bad = 0;
        pthread_create(&t[i], NULL, par_thread, &pa[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        bad += pa[i].bad;
    }
    CHECK(bad == 0, "8 threads x 20 ranges on one client (%d bad)", bad);
    test_shutdown(&m, big);
    mfs_hub_free(&hub);

    cfg.endpoint = m.url;
    cfg.offline = true;
    mfs_hub_new(&cfg, &hub, NULL);
    rc = mfs_hub_repo_info(hub, REPO, "main", &info, &err);
    CHECK(rc == -ENETDOWN, "offline client refuses requests: %s", err.msg);
    mfs_hub_free(&hub);
    mock_stop(&cdn);
    hub = hub_for(cdn.url, NULL, 1000);
    rc = mfs_hub_repo_info(hub, REPO, "main", &info, &err);
    CHECK(rc == -EIO, "server gone -> -EIO: %s", err.msg);
    mfs_hub_free(&hub);
    mock_stop(&m);
    return check_done();
}
