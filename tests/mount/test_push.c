/*
 * tests/mount/test_push.c - fs/push.c over a real stage (cache/stage.c in
 * a temp cache) and the real local Hub (`modelfs hub serve` on 127.0.0.1
 * port 0): adds, replaces and deletions of files and folders, an unchanged
 * re-push that sends nothing and makes no commit, a rename that does not
 * upload the LFS object again, create_pr, a branch that moved (412 ->
 * -ESTALE, nothing cleared, then a push over the new head), progress, the
 * last-push JSON, and a change made while a push runs (a slowed server)
 * surviving the clear.
 *
 * docs/design.md: "The commit names its parent; if the branch moved
 * meanwhile, the push fails with a clear error and nothing staged is lost."
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "check_hub.h"
#include "cache/cache.h"
#include "cache/stage.h"
#include "common/buf.h"
#include "common/hash.h"
#include "fs/push.h"
#include "hub/hub.h"
#include "hub/upload.h"

#define TOKEN "hf_pushtesttoken"
#define REPO "alice/pushed"

static struct mfs_hub *hub_for(const char *url)
{
    struct mfs_hub_cfg cfg = { 0 };
    struct mfs_hub *hub = NULL;

    cfg.endpoint = url;
    cfg.token = TOKEN;
    cfg.timeout_ms = 10000;
    mfs_hub_new(&cfg, &hub, NULL);
    return hub;
}

/* ---- remote blobs for the stage: where each one can be read ---------------------------- */

struct known {
    char cid[65];                           /* content id */
    char commit[41];
    char path[256];
};

struct base_src {
    struct mfs_hub *hub;                    /* swapped when the server restarts */
    struct known k[64];
    size_t n;
};

static void remember(struct base_src *bs, const struct mfs_entry *e, const char *commit)
{
    if (bs->n == sizeof(bs->k) / sizeof(bs->k[0]))
        return;
    snprintf(bs->k[bs->n].cid, sizeof(bs->k[0].cid), "%s", mfs_entry_content_id(e));
    snprintf(bs->k[bs->n].commit, sizeof(bs->k[0].commit), "%s", commit);
    snprintf(bs->k[bs->n].path, sizeof(bs->k[0].path), "%s", e->path);
    bs->n++;
}

static ssize_t base_read(void *ctx, const struct mfs_entry *e, uint64_t off, size_t len,
                         void *buf, struct mfs_err *err)
{
    struct base_src *bs = ctx;
    struct check_collect c = { buf, 0, len };
    size_t i;
    int rc;

    if (off >= e->size)
        return 0;
    if (len > e->size - off)
        len = (size_t)(e->size - off);
    c.cap = len;
    for (i = 0; i < bs->n; i++) {
        if (strcmp(bs->k[i].cid, mfs_entry_content_id(e)))
            continue;
        rc = mfs_hub_get_range(bs->hub, REPO, bs->k[i].commit, bs->k[i].path, off, len,
                               check_collect_sink, &c, err);
        return rc < 0 ? rc : (ssize_t)len;
    }
    return mfs_err_set(err, -EIO, "test: unknown remote blob '%s'", e->path);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static int stage_put(struct mfs_stage *s, const char *path, const void *data, size_t len)
{
    struct mfs_stage_writer *w = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    rc = mfs_stage_writer_open(s, path, MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, &err);
    if (rc == 0 && len)
        rc = mfs_stage_writer_write(w, 0, data, len, &err) == (ssize_t)len ? 0 : -EIO;
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, &err);
    mfs_stage_writer_close(&w);
    if (rc < 0)
        printf("# stage_put '%s': %d %s\n", path, rc, err.msg);
    return rc;
}

static int stage_do(struct mfs_stage *s, enum mfs_stage_op op, const char *path,
                    const char *from, const struct mfs_entry *remote)
{
    struct mfs_stage_change c = { 0 };
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    c.op = op;
    c.path = path;
    c.from = from;
    c.remote = remote;
    c.mode = op == MFS_STAGE_OP_MKDIR ? 0755 : 0644;
    rc = mfs_stage_apply(s, &c, 1, &err);
    if (rc < 0)
        printf("# stage op %d '%s': %d %s\n", (int)op, path, rc, err.msg);
    return rc;
}

static size_t stage_count(struct mfs_stage *s)
{
    struct mfs_stage_entry *e = NULL;
    size_t n = 0;

    if (mfs_stage_list(s, &e, &n, NULL) < 0)
        return (size_t)-1;
    mfs_stage_entries_free(e, n);
    return n;
}

static bool stage_has(struct mfs_stage *s, const char *path)
{
    struct mfs_stage_entry e;
    bool found = mfs_stage_get(s, path, &e, NULL) == 0;

    if (found) {
        free(e.path);
        free(e.remote.path);
    }
    return found;
}

static bool read_back(struct mfs_hub *hub, const char *commit, const char *path,
                      const void *want, size_t len)
{
    struct check_collect c = { 0 };
    struct mfs_err err = MFS_ERR_INIT;
    bool same;
    int rc;

    if (len == 0)
        return true;
    c.cap = len;
    c.buf = malloc(len);
    rc = mfs_hub_get_range(hub, REPO, commit, path, 0, len, check_collect_sink, &c, &err);
    same = rc == 0 && c.len == len && !memcmp(c.buf, want, len);
    if (!same)
        printf("# read back '%s': rc %d %s\n", path, rc, err.msg);
    free(c.buf);
    return same;
}

static int head_of(struct mfs_hub *hub, const char *rev, char out[41])
{
    struct mfs_hub_repo_info info;
    int rc = mfs_hub_repo_info(hub, REPO, rev, &info, NULL);

    if (rc == 0)
        memcpy(out, info.commit, 41);
    return rc;
}

/* The base a mount would show: the tree of the branch head. */
struct base {
    char commit[41];
    struct mfs_entry *v;
    size_t n;
};

static int base_load(struct mfs_hub *hub, struct base *b)
{
    mfs_entries_free(b->v, b->n);
    b->v = NULL;
    b->n = 0;
    if (head_of(hub, "main", b->commit) < 0)
        return -1;
    return mfs_hub_tree(hub, REPO, b->commit, &b->v, &b->n, NULL);
}

static unsigned char gen_byte(uint64_t i)
{
    return (unsigned char)((i * 2654435761u) >> 7 ^ (i >> 12));
}

struct push_thread {
    struct mfs_push *p;
    struct base *b;
    struct mfs_push_result res;
    struct mfs_err err;
    int rc;
};

static void *push_main(void *arg)
{
    struct push_thread *t = arg;

    t->rc = mfs_push_run(t->p, t->b->commit, t->b->v, t->b->n, NULL, &t->res, &t->err);
    return NULL;
}

int main(void)
{
    static unsigned char lfs[300000];
    static unsigned char big[2000000];
    static const char cfg1[] = "{\"model_type\": \"llama\"}\n";
    static const char cfg2[] = "{\"model_type\": \"llama\", \"vocab_size\": 512}\n";
    static const char notes[] = "notes in a folder\n";
    const char *tmpdir = getenv("MFS_TMP");
    char dirbuf[] = "/tmp/mfs-push.XXXXXX";
    char cache_dir[512];
    struct mfs_cache_repo repo = { 0 };
    struct mfs_push_cfg pcfg = { 0 };
    struct mfs_push_opts opts = { 0 };
    struct mfs_push_result res;
    struct mfs_push_progress prog;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_cache *cache = NULL;
    struct mfs_stage *stage = NULL;
    struct mfs_push *push = NULL;
    struct mfs_hub *hub = NULL;
    struct base_src bs = { 0 };
    struct base b;
    struct check_hub srv;
    struct mfs_buf json = MFS_BUF_INIT;
    const struct mfs_entry *e;
    char head[41];
    char before[41];
    char got[41];
    struct mfs_entry *tv = NULL;
    size_t tn = 0;
    int64_t ctime = 0;
    size_t i;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    memset(&b, 0, sizeof(b));
    if (!tmpdir || !*tmpdir)
        tmpdir = mkdtemp(dirbuf);
    for (i = 0; i < sizeof(lfs); i++)
        lfs[i] = gen_byte(i * 3 + 5);
    lfs[7] = 0;                             /* a NUL: the server says LFS */
    for (i = 0; i < sizeof(big); i++)
        big[i] = gen_byte(i * 11 + 1);
    big[1] = 0;
    if (check_hub_start(&srv, tmpdir, TOKEN " alice\n", "0") < 0) {
        printf("not ok - start the local hub (MFS_BIN=%s)\n", getenv("MFS_BIN"));
        check_hub_stop(&srv);
        return 1;
    }
    hub = hub_for(srv.url);
    bs.hub = hub;
    rc = mfs_hub_repo_create(hub, REPO, false, false, &err);
    CHECK(rc == 0, "create '%s': %s", REPO, err.msg);

    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", tmpdir);
    rc = mfs_cache_open(cache_dir, 0, &cache, &err);
    CHECK(rc == 0, "open the cache: %s", err.msg);
    repo.endpoint = srv.url;
    repo.repo_type = "model";
    repo.repo_id = REPO;
    rc = mfs_stage_open(cache_dir, &repo, "main", base_read, &bs, &stage, &err);
    CHECK(rc == 0, "open the stage: %s", err.msg);
    if (rc < 0 || !cache) {
        check_hub_stop(&srv);
        return check_done();
    }
    pcfg.hub = hub;
    pcfg.stage = stage;
    pcfg.cache = cache;
    pcfg.repo = &repo;
    pcfg.revision = "main";
    rc = mfs_push_new(&pcfg, &push, &err);
    CHECK(rc == 0, "make the pusher: %s", err.msg);
    rc = mfs_push_last_json(push, &json, &err);
    CHECK(rc == 0 && strstr(json.data, "\"status\":\"none\""), "last push before any: %s",
          json.data ? json.data : err.msg);

    /* 1. Adds: a regular file, an LFS file, a file in a folder, an empty
     * folder (nothing: the Hub keeps no empty folders). */
    CHECK(base_load(hub, &b) == 0, "tree of the new repo");
    stage_put(stage, "config.json", cfg1, sizeof(cfg1) - 1);
    stage_put(stage, "model.bin", lfs, sizeof(lfs));
    stage_put(stage, "sub/notes.txt", notes, sizeof(notes) - 1);
    stage_do(stage, MFS_STAGE_OP_MKDIR, "emptydir", NULL, NULL);
    memset(&opts, 0, sizeof(opts));
    opts.message = "first push";
    rc = mfs_push_run(push, b.commit, b.v, b.n, &opts, &res, &err);
    CHECK(rc == 0 && res.committed && strcmp(res.commit, b.commit),
          "push 3 files: one commit: %s", err.msg);
    CHECK(res.files_added == 3 && res.files_deleted == 0,
          "counts 3 added, 0 deleted (got %zu, %zu)", res.files_added, res.files_deleted);
    CHECK(res.bytes_uploaded == sizeof(cfg1) - 1 + sizeof(lfs) + sizeof(notes) - 1,
          "sent every byte once (%llu)", (unsigned long long)res.bytes_uploaded);
    CHECK(strstr(res.commit_url, "/alice/pushed/commit/") != NULL && !res.pr_url[0],
          "commit url '%s'", res.commit_url);
    CHECK(head_of(hub, "main", head) == 0 && !strcmp(head, res.commit), "main moved to it");
    CHECK(read_back(hub, res.commit, "config.json", cfg1, sizeof(cfg1) - 1) &&
          read_back(hub, res.commit, "model.bin", lfs, sizeof(lfs)) &&
          read_back(hub, res.commit, "sub/notes.txt", notes, sizeof(notes) - 1),
          "remote bytes equal the staged ones");
    e = check_find_entry(res.entries, res.n_entries, "model.bin");
    CHECK(e && e->is_lfs && e->size == sizeof(lfs), "result lists the new tree (model.bin LFS)");
    CHECK(!check_find_entry(res.entries, res.n_entries, "emptydir"),
          "a made empty folder is not pushed");
    CHECK(stage_count(stage) == 0, "the stage is empty after the push");
    mfs_push_progress_get(push, &prog);
    CHECK(!prog.running && prog.total > 0 && prog.done == prog.total,
          "progress reached done == total (%llu/%llu)", (unsigned long long)prog.done,
          (unsigned long long)prog.total);
    CHECK(mfs_cache_ref_get(cache, &repo, "main", got, NULL) == 0 && !strcmp(got, res.commit),
          "cache: main -> the new commit");
    CHECK(mfs_cache_tree_get(cache, &repo, res.commit, &tv, &tn, &ctime, NULL) == 0 &&
          check_find_entry(tv, tn, "sub/notes.txt") && ctime > 0, "cache: the new tree is stored");
    mfs_entries_free(tv, tn);
    mfs_buf_reset(&json);
    rc = mfs_push_last_json(push, &json, &err);
    CHECK(rc == 0 && strstr(json.data, "\"status\":\"ok\"") && strstr(json.data, res.commit) &&
          strstr(json.data, "\"files_added\":3"), "last push JSON: %s", json.data);
    mfs_push_result_release(&res);

    /* 2. Nothing to push: an empty stage, then the same bytes written
     * again and a remote blob put back at its own path. */
    CHECK(base_load(hub, &b) == 0, "tree after push 1");
    for (i = 0; i < b.n; i++)
        remember(&bs, &b.v[i], b.commit);
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    CHECK(rc == 0 && !res.committed && !strcmp(res.commit, b.commit) && res.n_entries == b.n,
          "empty stage: no commit, the base shown: %s", err.msg);
    mfs_push_result_release(&res);
    stage_put(stage, "model.bin", lfs, sizeof(lfs));
    stage_put(stage, "config.json", cfg1, sizeof(cfg1) - 1);
    stage_do(stage, MFS_STAGE_OP_REMOTE, "sub/notes.txt", NULL,
             check_find_entry(b.v, b.n, "sub/notes.txt"));
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    CHECK(rc == 0 && !res.committed && res.bytes_uploaded == 0 && res.files_uploaded == 0,
          "unchanged re-push: 0 bytes, no commit (%llu bytes): %s",
          (unsigned long long)res.bytes_uploaded, err.msg);
    CHECK(head_of(hub, "main", head) == 0 && !strcmp(head, b.commit), "main did not move");
    CHECK(stage_count(stage) == 0, "the stage is cleared anyway");
    mfs_buf_reset(&json);
    mfs_push_last_json(push, &json, NULL);
    CHECK(strstr(json.data, "\"committed\":false") && strstr(json.data, "\"bytes_uploaded\":0"),
          "last push JSON says nothing was sent: %s", json.data);
    mfs_push_result_release(&res);

    /* 3. A rename of an unchanged LFS file is not uploaded again; a
     * whiteout of a path the base lacks is dropped. */
    stage_do(stage, MFS_STAGE_OP_REMOTE, "weights/renamed.bin", NULL,
             check_find_entry(b.v, b.n, "model.bin"));
    stage_do(stage, MFS_STAGE_OP_WHITEOUT, "model.bin", NULL, NULL);
    stage_do(stage, MFS_STAGE_OP_WHITEOUT, "never-there.txt", NULL, NULL);
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    CHECK(rc == 0 && res.committed, "push a rename: %s", err.msg);
    CHECK(res.bytes_uploaded == 0, "rename uploads 0 bytes (LFS dedup; got %llu)",
          (unsigned long long)res.bytes_uploaded);
    CHECK(res.files_added == 1 && res.files_deleted == 1, "rename = 1 add + 1 delete (%zu, %zu)",
          res.files_added, res.files_deleted);
    CHECK(!check_find_entry(res.entries, res.n_entries, "model.bin") &&
          read_back(hub, res.commit, "weights/renamed.bin", lfs, sizeof(lfs)),
          "the remote holds the file under its new name only");
    mfs_push_result_release(&res);

    /* 4. Replace a file, delete a folder, add a big LFS file. */
    CHECK(base_load(hub, &b) == 0, "tree after push 3");
    stage_put(stage, "config.json", cfg2, sizeof(cfg2) - 1);
    stage_do(stage, MFS_STAGE_OP_WHITEOUT, "sub", NULL, NULL);
    stage_do(stage, MFS_STAGE_OP_WHITEOUT, "sub/notes.txt", NULL, NULL);
    stage_put(stage, "big.bin", big, sizeof(big));
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    CHECK(rc == 0 && res.committed, "push replace + folder delete + big add: %s", err.msg);
    CHECK(read_back(hub, res.commit, "config.json", cfg2, sizeof(cfg2) - 1) &&
          read_back(hub, res.commit, "big.bin", big, sizeof(big)), "replaced and added bytes");
    CHECK(!check_find_entry(res.entries, res.n_entries, "sub/notes.txt") &&
          !check_find_entry(res.entries, res.n_entries, "sub"), "the folder is gone");
    CHECK(res.files_added == 2 && res.files_deleted == 1, "counts 2 added, 1 deleted (%zu, %zu)",
          res.files_added, res.files_deleted);
    mfs_push_result_release(&res);

    /* 5. Another client commits first: 412 -> -ESTALE, nothing cleared;
     * then a push over the new head succeeds. */
    CHECK(base_load(hub, &b) == 0, "tree after push 4");
    memcpy(before, b.commit, sizeof(before));
    {
        struct mfs_hub_op op = { 0 };
        struct mfs_hub_commit_opts co = { 0 };
        struct mfs_hub_commit_result cr;

        op.kind = MFS_HUB_OP_DELETE_FILE;
        op.path = "big.bin";
        co.summary = "another client";
        rc = mfs_hub_commit(hub, REPO, "main", &op, 1, &co, &cr, &err);
        CHECK(rc == 0 && cr.committed, "another client commits: %s", err.msg);
    }
    stage_put(stage, "x.txt", "x\n", 2);
    rc = mfs_push_run(push, before, b.v, b.n, NULL, &res, &err);
    CHECK(rc == -ESTALE && strstr(err.msg, "moved"), "stale base -> -ESTALE: %s", err.msg);
    CHECK(stage_has(stage, "x.txt"), "nothing staged is lost");
    mfs_buf_reset(&json);
    mfs_push_last_json(push, &json, NULL);
    CHECK(strstr(json.data, "\"status\":\"error\"") && strstr(json.data, "moved"),
          "last push JSON has the reason: %s", json.data);
    CHECK(base_load(hub, &b) == 0 && strcmp(b.commit, before), "remount: the new head");
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    CHECK(rc == 0 && res.committed && check_find_entry(res.entries, res.n_entries, "x.txt") &&
          !check_find_entry(res.entries, res.n_entries, "big.bin"),
          "push over the new head: %s", err.msg);
    CHECK(stage_count(stage) == 0, "stage empty after");
    mfs_push_result_release(&res);

    /* 5b. A file replaced by a folder of the same name, and a folder by a
     * file: the base's entry is deleted first, in the same commit. */
    CHECK(base_load(hub, &b) == 0, "tree after push 5");
    stage_put(stage, "swap", "a file\n", 7);
    stage_put(stage, "dir2/a", "in a folder\n", 12);
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    CHECK(rc == 0 && res.committed, "push a file 'swap' and a folder 'dir2': %s", err.msg);
    mfs_push_result_release(&res);
    CHECK(base_load(hub, &b) == 0, "tree after push 5b");
    stage_do(stage, MFS_STAGE_OP_MKDIR, "swap", NULL, NULL);
    stage_put(stage, "swap/in.txt", "now a folder\n", 13);
    stage_do(stage, MFS_STAGE_OP_WHITEOUT, "dir2", NULL, NULL);
    stage_put(stage, "dir2", "now a file\n", 11);
    rc = mfs_push_run(push, b.commit, b.v, b.n, NULL, &res, &err);
    e = check_find_entry(res.entries, res.n_entries, "swap");
    CHECK(rc == 0 && res.committed && e && e->is_dir && check_find_entry(res.entries, res.n_entries,
          "swap/in.txt"), "file -> folder: 'swap/' holds in.txt: %s", err.msg);
    e = check_find_entry(res.entries, res.n_entries, "dir2");
    CHECK(e && !e->is_dir && e->size == 11 &&
          !check_find_entry(res.entries, res.n_entries, "dir2/a"),
          "folder -> file: 'dir2' is a file of 11 bytes");
    mfs_push_result_release(&res);

    /* 6. create_pr: a pull request, main untouched. */
    CHECK(base_load(hub, &b) == 0, "tree after push 5b (2)");
    stage_put(stage, "pr.txt", "proposed\n", 9);
    memset(&opts, 0, sizeof(opts));
    opts.create_pr = true;
    opts.description = "a change for review";
    rc = mfs_push_run(push, b.commit, b.v, b.n, &opts, &res, &err);
    CHECK(rc == 0 && res.committed && !strncmp(res.pr_ref, "refs/pr/", 8) &&
          strstr(res.pr_url, "/discussions/"), "create_pr -> %s %s: %s", res.pr_ref, res.pr_url,
          err.msg);
    CHECK(check_find_entry(res.entries, res.n_entries, "pr.txt") != NULL,
          "the result shows the PR's tree");
    CHECK(head_of(hub, "main", head) == 0 && !strcmp(head, b.commit), "main did not move");
    CHECK(head_of(hub, res.pr_ref, head) == 0 && !strcmp(head, res.commit),
          "the PR ref is at the pushed commit");
    mfs_push_result_release(&res);

    /* 7. A change made while a push runs survives the clear: a slowed
     * server, the change made once the upload has started. */
    mfs_push_free(&push);
    mfs_hub_free(&hub);
    check_hub_stop(&srv);
    if (check_hub_start(&srv, tmpdir, TOKEN " alice\n", "300") < 0) {
        CHECK(0, "restart the hub slowed");
        goto out;
    }
    hub = hub_for(srv.url);
    bs.hub = hub;
    pcfg.hub = hub;
    rc = mfs_push_new(&pcfg, &push, &err);
    CHECK(rc == 0 && base_load(hub, &b) == 0, "pusher over the slowed hub: %s", err.msg);
    stage_put(stage, "during1.bin", lfs, sizeof(lfs));
    {
        struct push_thread t = { 0 };
        pthread_t tid;
        int waited = 0;

        t.p = push;
        t.b = &b;
        pthread_create(&tid, NULL, push_main, &t);
        for (;;) {
            struct timespec ts = { 0, 20 * 1000000L };

            mfs_push_progress_get(push, &prog);
            if (prog.total > 0 || waited++ > 1000)
                break;
            nanosleep(&ts, NULL);
        }
        CHECK(prog.running && prog.total == sizeof(lfs), "progress while the push runs: %llu/%llu",
              (unsigned long long)prog.done, (unsigned long long)prog.total);
        stage_put(stage, "during2.txt", "late\n", 5);
        pthread_join(tid, NULL);
        CHECK(t.rc == 0 && t.res.committed &&
              check_find_entry(t.res.entries, t.res.n_entries, "during1.bin")
              && !check_find_entry(t.res.entries, t.res.n_entries, "during2.txt"),
              "the push sent what was staged at its start: %s", t.err.msg);
        CHECK(stage_has(stage, "during2.txt") && !stage_has(stage, "during1.bin"),
              "the change made during the push is still staged");
        mfs_push_result_release(&t.res);
    }

out:
    mfs_buf_release(&json);
    mfs_entries_free(b.v, b.n);
    mfs_push_free(&push);
    mfs_stage_close(&stage);
    mfs_cache_close(&cache);
    mfs_hub_free(&hub);
    check_hub_stop(&srv);
    return check_done();
}
