/* tests/hub/test_upload.c - hub/upload.c against the real local Hub
 * (`modelfs hub serve`, started here on 127.0.0.1 port 0 with a token
 * file): repo creation, regular + LFS + empty files read back byte for
 * byte, the unchanged-files skip, a stale parent, create_pr, deletions,
 * a multipart upload, auth errors, a failing read callback, progress.
 * A tiny flaky server (libmicrohttpd, below) checks the retries of
 * mfs_hub_send: 503s, then the whole body sent again from the callback. */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "check_hub.h"
#include "common/hash.h"
#include "hub/hub.h"
#include "hub/hub_int.h"
#include "hub/upload.h"

#define TOKEN "hf_uploadtesttoken"
#define REPO "alice/up"

/* Bytes from memory. */
struct mem_src {
    const unsigned char *data;
    size_t len;
    int reads;                              /* calls seen */
};

static int mem_read(void *ctx, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    struct mem_src *m = ctx;

    m->reads++;
    if (off > m->len || len > m->len - off)
        return mfs_err_set(err, -EIO, "read past the end");
    memcpy(buf, m->data + off, len);
    return 0;
}

/* A generated file (never in memory): byte i = gen_byte(i). */
static unsigned char gen_byte(uint64_t i)
{
    return (unsigned char)((i * 2654435761u) >> 7 ^ (i >> 12));
}

static int gen_read(void *ctx, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    unsigned char *p = buf;
    size_t i;

    for (i = 0; i < len; i++)
        p[i] = gen_byte(off + i);
    return 0;
}

/* Fails once past the first 4 KiB, like a disk going away. */
static int bad_read(void *ctx, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    if (off + len > 4096)
        return mfs_err_set(err, -EIO, "cannot read staged bytes: disk gone");
    memset(buf, 0, len);
    return 0;
}

struct prog {
    int calls;
    uint64_t last_done;
    uint64_t last_total;
    bool total_changed;
};

static void on_progress(void *ctx, const char *path, uint64_t done, uint64_t total)
{
    struct prog *p = ctx;

    if (p->calls && total != p->last_total)
        p->total_changed = true;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

static struct mfs_hub *hub_for(const char *url, const char *token)
{
    struct mfs_hub_cfg cfg = { 0 };
    struct mfs_hub *hub = NULL;

    cfg.endpoint = url;
    cfg.token = token;
    cfg.timeout_ms = 10000;
    mfs_hub_new(&cfg, &hub, NULL);
    return hub;
}

/* Whole file path at commit equals want[0..len). */
static bool read_back(struct mfs_hub *hub, const char *repo, const char *commit,
                      const char *path, const unsigned char *want, size_t len)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct check_collect c = { 0 };
    bool same;
    int rc;

    if (len == 0) {
        struct mfs_entry *v = NULL;
        size_t n = 0;
        size_t i;

        same = false;
        if (mfs_hub_tree(hub, repo, commit, &v, &n, &err) == 0)
            for (i = 0; i < n; i++)
                if (!strcmp(v[i].path, path))
                    same = v[i].size == 0;
        mfs_entries_free(v, n);
        return same;
    }
    c.cap = len;
    c.buf = malloc(len);
    rc = mfs_hub_get_range(hub, repo, commit, path, 0, len, check_collect_sink, &c, &err);
    same = rc == 0 && c.len == len && !memcmp(c.buf, want, len);
    if (!same)
        printf("# read back '%s': rc %d %s\n", path, rc, err.msg);
    free(c.buf);
    return same;
}

/* The entry of path in the tree at commit (copied), found or not. */
static bool tree_entry(struct mfs_hub *hub, const char *repo, const char *commit,
                       const char *path, struct mfs_entry *out)
{
    struct mfs_entry *v = NULL;
    size_t n = 0;
    size_t i;
    bool found = false;

    memset(out, 0, sizeof(*out));
    if (mfs_hub_tree(hub, repo, commit, &v, &n, NULL) < 0)
        return false;
    for (i = 0; i < n; i++)
        if (!strcmp(v[i].path, path)) {
            *out = v[i];
            out->path = NULL;
            found = true;
        }
    mfs_entries_free(v, n);
    return found;
}

static bool head_is(struct mfs_hub *hub, const char *repo, const char *rev, const char *want)
{
    struct mfs_hub_repo_info info;

    return mfs_hub_repo_info(hub, repo, rev, &info, NULL) == 0 && !strcmp(info.commit, want);
}

/* ---- a flaky server for the retry path ---------------------------------------------- */

struct flaky {
    struct MHD_Daemon *d;
    char url[64];
    pthread_mutex_t lock;
    int fails_left;                         /* answer 503 this many more times */
    int requests;                           /* requests seen */
    unsigned char *got;                     /* body of the last successful request */
    size_t got_len;
    const char *answer;                     /* canned 200 body for every POST, or NULL */
};

struct flaky_conn {
    unsigned char *buf;
    size_t len;
};

static enum MHD_Result flaky_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version,
                                     const char *data, size_t *data_size, void **con_cls)
{
    struct flaky *f = cls;
    struct flaky_conn *fc = *con_cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    unsigned status = 200;

    if (!fc) {
        fc = calloc(1, sizeof(*fc));
        *con_cls = fc;
        return fc ? MHD_YES : MHD_NO;
    }
    if (*data_size) {
        unsigned char *grown = realloc(fc->buf, fc->len + *data_size);

        if (!grown)
            return MHD_NO;
        fc->buf = grown;
        memcpy(fc->buf + fc->len, data, *data_size);
        fc->len += *data_size;
        *data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&f->lock);
    f->requests++;
    if (f->fails_left > 0) {
        f->fails_left--;
        status = 503;
    } else {
        free(f->got);
        f->got = fc->buf;
        f->got_len = fc->len;
        fc->buf = NULL;
    }
    pthread_mutex_unlock(&f->lock);
    if (f->answer && status == 200 && !strcmp(method, "POST"))
        /* A copy: the test frees the answer once the client has given up,
         * which may be before the server has finished sending it. */
        r = MHD_create_response_from_buffer(strlen(f->answer), (void *)f->answer,
                                            MHD_RESPMEM_MUST_COPY);
    else
        r = MHD_create_response_from_buffer(2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "ETag", "\"part-etag\"");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void flaky_done(void *cls, struct MHD_Connection *c, void **con_cls,
                       enum MHD_RequestTerminationCode toe)
{
    struct flaky_conn *fc = *con_cls;

    if (fc) {
        free(fc->buf);
        free(fc);
        *con_cls = NULL;
    }
}

static int flaky_start(struct flaky *f)
{
    const union MHD_DaemonInfo *info;

    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    f->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                            MHD_USE_ERROR_LOG, 0, NULL, NULL, flaky_handler, f,
                            MHD_OPTION_NOTIFY_COMPLETED, flaky_done, f,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!f->d)
        return -1;
    info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u", (unsigned)info->port);
    return 0;
}

static void flaky_stop(struct flaky *f)
{
    if (f->d)
        MHD_stop_daemon(f->d);
    pthread_mutex_destroy(&f->lock);
    free(f->got);
}

static void test_retries(void)
{
    static const char post_body[] = "{\"oid\": \"x\"}";
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hub_send s;
    struct mfs_hub *hub;
    struct flaky f;
    char url[128];
    unsigned char *want;
    const uint64_t size = 300000;
    int rc;

    if (flaky_start(&f) < 0) {
        CHECK(0, "start the flaky server");
        return;
    }
    hub = hub_for(f.url, TOKEN);
    want = malloc(size);
    gen_read(NULL, 1000, size, want, NULL);
    snprintf(url, sizeof(url), "%s/put", f.url);

    /* Two 503s, then the streamed body must arrive whole, from its offset. */
    memset(&s, 0, sizeof(s));
    s.method = "PUT";
    s.url = url;
    s.what = "part";
    s.read = gen_read;
    s.off = 1000;
    s.size = size;
    f.fails_left = 2;
    mfs_err_clear(&err);
    rc = mfs_hub_send(hub, &s, &err);
    CHECK(rc == 0 && f.requests == 3 && f.got_len == size && !memcmp(f.got, want, size) &&
          !strcmp(s.etag, "\"part-etag\""), "PUT after two 503s: body re-read whole, ETag"
          " '%s' (%d requests): %s", s.etag, f.requests, err.msg);

    /* Always 503: -EIO after the tries, with the status in the reason. */
    f.requests = 0;
    f.fails_left = 100;
    mfs_err_clear(&err);
    rc = mfs_hub_send(hub, &s, &err);
    CHECK(rc == -EIO && f.requests == 4 && strstr(err.msg, "503") &&
          strstr(err.msg, "after 4 tries"), "PUT that keeps failing -> -EIO: %s", err.msg);

    /* An in-memory POST is sent again too. */
    f.requests = 0;
    f.fails_left = 1;
    memset(&s, 0, sizeof(s));
    s.method = "POST";
    s.url = url;
    s.what = "complete";
    s.content_type = "application/json";
    s.data = post_body;
    s.len = sizeof(post_body) - 1;
    mfs_err_clear(&err);
    rc = mfs_hub_send(hub, &s, &err);
    CHECK(rc == 0 && f.requests == 2 && f.got_len == s.len && !memcmp(f.got, post_body, s.len),
          "POST after a 503: body sent again: %s", err.msg);

    /* A server that lies: one canned answer serves preupload ("files"), the
     * LFS batch ("objects") and the commit; each lie is -EIO, no crash. */
    {
        static const struct { const char *answer; const char *why; } rows[] = {
            { "not json", "not a JSON object" },
            { "{\"files\": 3}", "no 'files'" },
            { "{\"files\": [{\"path\": \"w.bin\"}]}", "without path or uploadMode" },
            { "{\"files\": [{\"path\": \"other\", \"uploadMode\": \"lfs\"}]}",
              "nothing about 'w.bin'" },
            { "{\"files\": [{\"path\": \"w.bin\", \"uploadMode\": \"lfs\"}]}",
              "no 'objects'" },
            { "{\"files\": [{\"path\": \"w.bin\", \"uploadMode\": \"lfs\"}],"
              " \"objects\": []}", "nothing about 'w.bin'" },
            { "{\"files\": [{\"path\": \"w.bin\", \"uploadMode\": \"lfs\"}],"
              " \"objects\": [{\"oid\": \"@\", \"size\": 5000, \"error\": {\"code\": 422,"
              " \"message\": \"refused\"}}]}", "LFS batch error 422: refused" },
            { "{\"files\": [{\"path\": \"w.bin\", \"uploadMode\": \"lfs\"}],"
              " \"objects\": [{\"oid\": \"@\", \"size\": 5000, \"actions\": {\"upload\":"
              " {\"href\": \"URL/put\", \"header\": {\"chunk_size\": \"1000\","
              " \"00001\": \"URL/put\"}}}}]}", "1 part URLs for 5 parts" },
            { "{\"files\": [{\"path\": \"w.bin\", \"uploadMode\": \"lfs\"}],"
              " \"objects\": [{\"oid\": \"@\", \"size\": 5000, \"actions\": {\"upload\":"
              " {\"href\": 7}}}]}", "upload without href" },
            { "{\"files\": [{\"path\": \"w.bin\", \"uploadMode\": \"regular\"}],"
              " \"commitOid\": \"xyz\"}", "no 40-hex commitOid" },
        };
        struct mfs_hub_commit_opts opts = { 0 };
        struct mfs_hub_commit_result res;
        struct mfs_hub_op op = { 0 };
        char sha[65];
        size_t i;

        gen_read(NULL, 0, 5000, want, NULL);
        mfs_hash_sha256_hex(want, 5000, sha);
        op.kind = MFS_HUB_OP_ADD;
        op.path = "w.bin";
        op.size = 5000;
        op.read = gen_read;
        opts.summary = "lies";
        for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            struct mfs_buf a = MFS_BUF_INIT;
            const char *p;

            /* "@" is the object's oid, "URL" the server's own address. */
            for (p = rows[i].answer; *p; p++) {
                if (*p == '@') {
                    mfs_buf_puts(&a, sha);
                } else if (!strncmp(p, "URL", 3)) {
                    mfs_buf_puts(&a, f.url);
                    p += 2;
                } else {
                    mfs_buf_append(&a, p, 1);
                }
            }
            f.answer = a.data;
            f.fails_left = 0;
            rc = mfs_hub_commit(hub, "alice/lies", "main", &op, 1, &opts, &res, &err);
            CHECK(rc == -EIO && !res.committed && strstr(err.msg, rows[i].why),
                  "lying server (%s) -> -EIO: %s", rows[i].why, err.msg);
            f.answer = NULL;
            mfs_buf_release(&a);
        }
    }
    free(want);
    mfs_hub_free(&hub);
    flaky_stop(&f);
}

static void add_op(struct mfs_hub_op *op, const char *path, struct mem_src *src)
{
    memset(op, 0, sizeof(*op));
    op->kind = MFS_HUB_OP_ADD;
    op->path = path;
    op->size = src->len;
    op->read = mem_read;
    op->read_ctx = src;
}

int main(void)
{
    static unsigned char lfs_bytes[300000];
    static const char config1[] = "{\"model_type\": \"gpt2\", \"n_layer\": 2}\n";
    static const char config2[] = "{\"model_type\": \"gpt2\", \"n_layer\": 3}\n";
    static const char config3[] = "{\"model_type\": \"gpt2\", \"n_layer\": 4}\n";
    static const char notes[] = "notes in a folder\n";
    const char *tmpdir = getenv("MFS_TMP");
    char dirbuf[] = "/tmp/mfs-upload.XXXXXX";
    struct mem_src src_cfg = { (const unsigned char *)config1, sizeof(config1) - 1, 0 };
    struct mem_src src_notes = { (const unsigned char *)notes, sizeof(notes) - 1, 0 };
    struct mem_src src_lfs = { lfs_bytes, sizeof(lfs_bytes), 0 };
    struct mem_src src_empty = { (const unsigned char *)"", 0, 0 };
    struct mfs_hub_commit_opts opts = { 0 };
    struct mfs_hub_commit_result res;
    struct mfs_hub_repo_info info;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hub_op ops[4];
    struct mfs_hub_stats st0;
    struct mfs_hub_stats st1;
    struct mfs_hub *hub = NULL;
    struct mfs_hub *anon = NULL;
    struct mfs_entry e;
    struct check_hub srv;
    struct prog prog = { 0 };
    char initial[41];
    char first[41];
    char lfs_sha[65];
    uint64_t sum;
    size_t i;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    if (!tmpdir || !*tmpdir)
        tmpdir = mkdtemp(dirbuf);
    if (check_hub_start(&srv, tmpdir, TOKEN " alice\nhf_othertoken bob\n", NULL) < 0) {
        printf("not ok - start the local hub (MFS_BIN=%s)\n", getenv("MFS_BIN"));
        check_hub_stop(&srv);
        return 1;
    }
    hub = hub_for(srv.url, TOKEN);
    anon = hub_for(srv.url, NULL);
    for (i = 0; i < sizeof(lfs_bytes); i++)
        lfs_bytes[i] = gen_byte(i * 7 + 1);
    lfs_bytes[3] = 0;                       /* a NUL in the sample: the server says LFS */
    mfs_hash_sha256_hex(lfs_bytes, sizeof(lfs_bytes), lfs_sha);

    /* Repo creation (hub-api.md section 7). */
    rc = mfs_hub_repo_create(hub, REPO, false, false, &err);
    CHECK(rc == 0, "create '%s': %s", REPO, err.msg);
    rc = mfs_hub_repo_create(hub, REPO, false, true, &err);
    CHECK(rc == 0, "create again with exist_ok -> 0: %s", err.msg);
    rc = mfs_hub_repo_create(hub, REPO, false, false, &err);
    CHECK(rc == -EEXIST, "create again without exist_ok -> -EEXIST: %s", err.msg);
    rc = mfs_hub_repo_create(anon, "alice/anon", false, false, &err);
    CHECK(rc == -EACCES, "create without a token -> -EACCES: %s", err.msg);
    rc = mfs_hub_repo_info(hub, REPO, "main", &info, &err);
    CHECK(rc == 0, "new repo has a head: %s", err.msg);
    memcpy(initial, info.commit, sizeof(initial));

    /* Regular, LFS and empty files in one commit, with progress. */
    add_op(&ops[0], "config.json", &src_cfg);
    add_op(&ops[1], "sub/notes.txt", &src_notes);
    add_op(&ops[2], "model.bin", &src_lfs);
    add_op(&ops[3], "empty.txt", &src_empty);
    sum = src_cfg.len + src_notes.len + src_lfs.len;
    opts.summary = "first upload";
    opts.description = "regular, lfs and empty files";
    opts.parent_commit = initial;
    opts.progress = on_progress;
    opts.progress_ctx = &prog;
    rc = mfs_hub_commit(hub, REPO, NULL, ops, 4, &opts, &res, &err);
    CHECK(rc == 0 && res.committed && mfs_hash_is_hex(res.commit, 40) &&
          strcmp(res.commit, initial), "commit 4 files: %s", err.msg);
    CHECK(res.files_uploaded == 4 && res.bytes_uploaded == sum,
          "result counts 4 files, %llu bytes (got %zu, %llu)", (unsigned long long)sum,
          res.files_uploaded, (unsigned long long)res.bytes_uploaded);
    CHECK(strstr(res.commit_url, srv.url) && strstr(res.commit_url, "/alice/up/commit/") &&
          strstr(res.commit_url, res.commit) && !res.pr_url[0] && !res.pr_ref[0],
          "commit url '%s'", res.commit_url);
    CHECK(prog.calls >= 2 && prog.last_done == sum && prog.last_total == sum &&
          !prog.total_changed, "progress ends at done == total == %llu (calls %d, %llu/%llu)",
          (unsigned long long)sum, prog.calls, (unsigned long long)prog.last_done,
          (unsigned long long)prog.last_total);
    CHECK(head_is(hub, REPO, "main", res.commit), "main moved to the new commit");
    memcpy(first, res.commit, sizeof(first));
    CHECK(read_back(hub, REPO, first, "config.json", src_cfg.data, src_cfg.len) &&
          read_back(hub, REPO, first, "sub/notes.txt", src_notes.data, src_notes.len) &&
          read_back(hub, REPO, first, "model.bin", lfs_bytes, sizeof(lfs_bytes)) &&
          read_back(hub, REPO, first, "empty.txt", NULL, 0), "every file reads back byte for"
          " byte");
    CHECK(tree_entry(hub, REPO, first, "model.bin", &e) && e.is_lfs &&
          !strcmp(e.lfs_oid, lfs_sha), "model.bin is LFS with oid sha256 of its bytes");
    CHECK(tree_entry(hub, REPO, first, "config.json", &e) && !e.is_lfs,
          "config.json is a regular file");

    /* Same files again: nothing sent, no commit (hub-api.md 6.1). */
    src_lfs.reads = 0;
    memset(&prog, 0, sizeof(prog));
    opts.summary = "again";
    opts.parent_commit = first;
    rc = mfs_hub_commit(hub, REPO, "main", ops, 4, &opts, &res, &err);
    CHECK(rc == 0 && !res.committed && !strcmp(res.commit, first) && res.bytes_uploaded == 0 &&
          res.files_uploaded == 0, "unchanged files: no commit, head reported, 0 bytes: %s",
          err.msg);
    CHECK(head_is(hub, REPO, "main", first), "main did not move");
    /* Known hashes: the LFS file is read only for its preupload sample. */
    ops[2].sha256 = lfs_sha;
    src_lfs.reads = 0;
    rc = mfs_hub_commit(hub, REPO, "main", ops, 4, &opts, &res, &err);
    CHECK(rc == 0 && !res.committed && src_lfs.reads == 1,
          "sha256 given: no hashing pass (%d reads)", src_lfs.reads);

    /* A stale parent: 412 -> -ESTALE, nothing changes. */
    src_cfg.data = (const unsigned char *)config2;
    src_cfg.len = sizeof(config2) - 1;
    ops[0].size = src_cfg.len;
    opts.summary = "stale";
    opts.parent_commit = initial;
    rc = mfs_hub_commit(hub, REPO, "main", ops, 1, &opts, &res, &err);
    CHECK(rc == -ESTALE && !res.committed && err.msg[0], "stale parent -> -ESTALE: %s",
          err.msg);
    CHECK(head_is(hub, REPO, "main", first) &&
          read_back(hub, REPO, "main", "config.json", (const unsigned char *)config1,
                    sizeof(config1) - 1), "after -ESTALE main and its files are unchanged");

    /* create_pr: refs/pr/N and a discussions URL; main stays. */
    opts.summary = "a pull request";
    opts.parent_commit = NULL;
    opts.create_pr = true;
    rc = mfs_hub_commit(hub, REPO, "main", ops, 1, &opts, &res, &err);
    CHECK(rc == 0 && res.committed && !strncmp(res.pr_ref, "refs/pr/", 8) &&
          strstr(res.pr_url, "/alice/up/discussions/") &&
          !strcmp(strrchr(res.pr_url, '/') + 1, res.pr_ref + 8), "create_pr -> '%s' at '%s':"
          " %s", res.pr_ref, res.pr_url, err.msg);
    CHECK(head_is(hub, REPO, "main", first) && head_is(hub, REPO, res.pr_ref, res.commit),
          "the PR ref has the commit, main does not");
    CHECK(read_back(hub, REPO, res.commit, "config.json", src_cfg.data, src_cfg.len),
          "the PR commit has the new config.json");
    opts.create_pr = false;

    /* A commit to the PR ref itself. */
    {
        char pr_ref[32];

        memcpy(pr_ref, res.pr_ref, sizeof(pr_ref));
        src_cfg.data = (const unsigned char *)config3;
        src_cfg.len = sizeof(config3) - 1;
        ops[0].size = src_cfg.len;
        opts.summary = "to the PR";
        rc = mfs_hub_commit(hub, REPO, pr_ref, ops, 1, &opts, &res, &err);
        CHECK(rc == 0 && res.committed && head_is(hub, REPO, pr_ref, res.commit) &&
              head_is(hub, REPO, "main", first), "commit to '%s': %s", pr_ref, err.msg);
    }

    /* A failing read callback: its errno, nothing committed. */
    {
        struct mfs_hub_op bad = { 0 };

        bad.kind = MFS_HUB_OP_ADD;
        bad.path = "big/broken.bin";
        bad.size = 100000;
        bad.read = bad_read;
        opts.summary = "broken";
        rc = mfs_hub_commit(hub, REPO, "main", &bad, 1, &opts, &res, &err);
        CHECK(rc == -EIO && strstr(err.msg, "disk gone") && !res.committed &&
              head_is(hub, REPO, "main", first), "read callback error -> -EIO, no commit: %s",
              err.msg);
    }

    /* Bad arguments: refused before any request. */
    {
        static const char *const bad_paths[] = { "../x", "/abs", "a//b", "a/./b", ".git/config",
                                                 "", "dir/" };
        struct mfs_hub_op op;

        mfs_hub_stats_get(hub, &st0);
        for (i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
            add_op(&op, bad_paths[i], &src_notes);
            opts.summary = "bad";
            rc = mfs_hub_commit(hub, REPO, "main", &op, 1, &opts, &res, &err);
            CHECK(rc == -EINVAL, "path '%s' -> -EINVAL: %s", bad_paths[i], err.msg);
        }
        add_op(&op, "fine.txt", &src_notes);
        opts.summary = "";
        rc = mfs_hub_commit(hub, REPO, "main", &op, 1, &opts, &res, &err);
        CHECK(rc == -EINVAL, "empty summary -> -EINVAL: %s", err.msg);
        mfs_hub_stats_get(hub, &st1);
        CHECK(st1.requests == st0.requests, "no request was sent for bad arguments");
    }

    /* Deletions: a file and a folder; a missing file is -ENOENT. */
    {
        struct mfs_hub_op del[2] = { { 0 }, { 0 } };

        del[0].kind = MFS_HUB_OP_DELETE_FILE;
        del[0].path = "config.json";
        del[1].kind = MFS_HUB_OP_DELETE_FOLDER;
        del[1].path = "sub/";
        opts.summary = "deletions";
        opts.parent_commit = first;
        rc = mfs_hub_commit(hub, REPO, "main", del, 2, &opts, &res, &err);
        CHECK(rc == 0 && res.committed && res.files_uploaded == 0 && res.bytes_uploaded == 0,
              "delete a file and a folder: %s", err.msg);
        CHECK(!tree_entry(hub, REPO, res.commit, "config.json", &e) &&
              !tree_entry(hub, REPO, res.commit, "sub/notes.txt", &e) &&
              tree_entry(hub, REPO, res.commit, "model.bin", &e),
              "config.json and sub/ are gone, model.bin stays");
        opts.parent_commit = NULL;
        rc = mfs_hub_commit(hub, REPO, "main", del, 1, &opts, &res, &err);
        CHECK(rc == -ENOENT, "delete a missing file -> -ENOENT: %s", err.msg);
    }

    /* LFS content the server already has (model.bin) under a new path: no
     * PUT; new content under two paths: one PUT. */
    {
        struct mfs_hub_op two[2];
        static unsigned char copy[sizeof(lfs_bytes)];
        struct mem_src src_copy = { copy, sizeof(copy), 0 };

        add_op(&two[0], "again/model.bin", &src_lfs);
        opts.summary = "known object";
        opts.parent_commit = NULL;
        ops[2].sha256 = NULL;
        rc = mfs_hub_commit(hub, REPO, "main", two, 1, &opts, &res, &err);
        CHECK(rc == 0 && res.committed && res.files_uploaded == 0 && res.bytes_uploaded == 0 &&
              read_back(hub, REPO, res.commit, "again/model.bin", lfs_bytes, sizeof(lfs_bytes)),
              "an object the server has is committed without a PUT: %s", err.msg);
        memcpy(copy, lfs_bytes, sizeof(copy));
        copy[100] ^= 0xff;
        add_op(&two[0], "dup/one.bin", &src_copy);
        add_op(&two[1], "dup/two.bin", &src_copy);
        opts.summary = "same content twice";
        rc = mfs_hub_commit(hub, REPO, "main", two, 2, &opts, &res, &err);
        CHECK(rc == 0 && res.committed && res.files_uploaded == 1 &&
              res.bytes_uploaded == sizeof(copy) &&
              read_back(hub, REPO, res.commit, "dup/one.bin", copy, sizeof(copy)) &&
              read_back(hub, REPO, res.commit, "dup/two.bin", copy, sizeof(copy)),
              "one content under two paths goes up once: %s", err.msg);
    }

    /* A .gitattributes in the same commit decides LFS for the other files. */
    {
        static const char attrs[] = "*.txt filter=lfs diff=lfs merge=lfs -text\n";
        static const char text[] = "plain text, LFS by pattern\n";
        struct mem_src src_attrs = { (const unsigned char *)attrs, sizeof(attrs) - 1, 0 };
        struct mem_src src_text = { (const unsigned char *)text, sizeof(text) - 1, 0 };
        struct mfs_hub_op two[2];

        add_op(&two[0], ".gitattributes", &src_attrs);
        add_op(&two[1], "notes/a.txt", &src_text);
        opts.summary = "attributes";
        rc = mfs_hub_commit(hub, REPO, "main", two, 2, &opts, &res, &err);
        CHECK(rc == 0 && res.committed && tree_entry(hub, REPO, res.commit, "notes/a.txt", &e) &&
              e.is_lfs && read_back(hub, REPO, res.commit, "notes/a.txt", src_text.data,
                                    src_text.len), "a .gitattributes pattern in the commit"
              " makes notes/a.txt LFS: %s", err.msg);
    }

    /* Multipart: above the server's 16 MiB threshold (tools/hubd/hubd_int.h
     * MFS_HUBD_MULTIPART_MIN, parts of 8 MiB): 3 parts, streamed. */
    {
        const uint64_t big = (17u << 20) + 12345;
        static const uint64_t offs[] = { 0, (8u << 20) - 100, (16u << 20) - 7, (17u << 20) };
        struct mfs_hub_op op = { 0 };
        struct mfs_hash *h = mfs_hash_new(MFS_HASH_SHA256);
        unsigned char *chunk = malloc(1 << 20);
        char big_sha[65];
        uint64_t off;
        bool same = true;

        for (off = 0; off < big; off += 1 << 20) {
            size_t k = big - off < (1u << 20) ? (size_t)(big - off) : (1u << 20);

            gen_read(NULL, off, k, chunk, NULL);
            mfs_hash_update(h, chunk, k);
        }
        mfs_hash_final_hex(h, big_sha);
        op.kind = MFS_HUB_OP_ADD;
        op.path = "weights/big.safetensors";
        op.size = big;
        op.read = gen_read;
        memset(&prog, 0, sizeof(prog));
        opts.summary = "multipart";
        rc = mfs_hub_commit(hub, REPO, "main", &op, 1, &opts, &res, &err);
        CHECK(rc == 0 && res.committed && res.bytes_uploaded == big && res.files_uploaded == 1,
              "multipart upload of %llu bytes: %s", (unsigned long long)big, err.msg);
        CHECK(prog.last_done == big && prog.last_total == big && prog.calls > 3,
              "multipart progress reaches %llu in %d calls", (unsigned long long)big,
              prog.calls);
        CHECK(tree_entry(hub, REPO, res.commit, op.path, &e) && e.is_lfs && e.size == big &&
              !strcmp(e.lfs_oid, big_sha), "the big file is LFS with the right sha256");
        for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
            unsigned char want[4096];
            size_t len = big - offs[i] < sizeof(want) ? (size_t)(big - offs[i]) : sizeof(want);
            struct check_collect c = { chunk, 0, len };

            gen_read(NULL, offs[i], len, want, NULL);
            rc = mfs_hub_get_range(hub, REPO, res.commit, op.path, offs[i], len, check_collect_sink,
                                   &c, &err);
            if (rc < 0 || c.len != len || memcmp(chunk, want, len))
                same = false;
        }
        CHECK(same, "ranges across the part boundaries read back");
        memset(&prog, 0, sizeof(prog));
        rc = mfs_hub_commit(hub, REPO, "main", &op, 1, &opts, &res, &err);
        CHECK(rc == 0 && !res.committed && res.bytes_uploaded == 0,
              "the big file again: 0 bytes, no commit: %s", err.msg);
        free(chunk);
    }

    /* A private repo: invisible and unwritable without a token. */
    {
        struct mfs_hub_op op;

        rc = mfs_hub_repo_create(hub, "alice/secret", true, false, &err);
        CHECK(rc == 0, "create a private repo: %s", err.msg);
        add_op(&op, "config.json", &src_notes);
        opts.summary = "anonymous";
        rc = mfs_hub_commit(anon, "alice/secret", "main", &op, 1, &opts, &res, &err);
        CHECK(rc == -EACCES && !res.committed, "commit to a private repo without a token ->"
              " -EACCES: %s", err.msg);
        rc = mfs_hub_commit(hub, "alice/missing", "main", &op, 1, &opts, &res, &err);
        CHECK(rc == -ENOENT, "commit to a missing repo -> -ENOENT: %s", err.msg);
        opts.summary = "owner";
        rc = mfs_hub_commit(hub, "alice/secret", "main", &op, 1, &opts, &res, &err);
        CHECK(rc == 0 && res.committed, "the owner commits to the private repo: %s", err.msg);
    }

    /* Offline mode: no request leaves the process. */
    {
        struct mfs_hub_cfg cfg = { 0 };
        struct mfs_hub *off = NULL;

        cfg.endpoint = srv.url;
        cfg.token = TOKEN;
        cfg.offline = true;
        mfs_hub_new(&cfg, &off, NULL);
        opts.summary = "offline";
        rc = mfs_hub_commit(off, REPO, "main", ops, 1, &opts, &res, &err);
        CHECK(rc == -ENETDOWN && !res.committed, "offline commit -> -ENETDOWN: %s", err.msg);
        rc = mfs_hub_repo_create(off, "alice/offline", false, true, &err);
        CHECK(rc == -ENETDOWN, "offline repo create -> -ENETDOWN: %s", err.msg);
        mfs_hub_free(&off);
    }

    mfs_hub_free(&anon);
    mfs_hub_free(&hub);
    check_hub_stop(&srv);
    test_retries();
    return check_done();
}
