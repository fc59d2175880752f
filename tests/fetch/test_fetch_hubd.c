/* tests/fetch/test_fetch_hubd.c - hub/ + cache/ + fs/fetch.c end to end
 * against the real local Hub (`modelfs hub serve`, $MFS_BIN): imported model
 * repos read at odd offsets, single flight and content sharing proven by the
 * server's own counters (GET /api/_modelfs/stats), private repos and tokens,
 * unknown repos and revisions, each fault of --fault-file, offline reads. */
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "check.h"
#include "check_hub.h"
#include "common/buf.h"
#include "common/hash.h"
#include "fs/fetch.h"
#include "hub/hub.h"

struct srv {
    pid_t pid;
    char url[128];
    char root[512];
    char fault[512];                        /* the --fault-file */
};

struct file {
    char path[256];
    unsigned char *data;
    size_t size;
};

static const char *tmp(void)
{
    const char *t = getenv("MFS_TMP");

    return t && *t ? t : "/tmp";
}

static const char *bin(void)
{
    const char *b = getenv("MFS_BIN");

    return b && *b ? b : "build/modelfs";
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int srv_start(struct srv *s)
{
    char tokens[600];
    char outp[600];
    char line[512];
    FILE *fp;
    int i;

    snprintf(s->root, sizeof(s->root), "%s/hub", tmp());
    snprintf(s->fault, sizeof(s->fault), "%s/fault", tmp());
    snprintf(tokens, sizeof(tokens), "%s/tokens", tmp());
    snprintf(outp, sizeof(outp), "%s/hub.out", tmp());
    fp = fopen(tokens, "w");
    if (!fp)
        return -1;
    fputs("hf_testtoken alice\n", fp);
    fclose(fp);
    fp = fopen(s->fault, "w");
    if (fp)
        fclose(fp);
    s->pid = fork();
    if (s->pid == 0) {
        if (!freopen(outp, "w", stdout))
            _exit(126);
        execl(bin(), bin(), "hub", "serve", "--root", s->root, "--host", "127.0.0.1", "--port",
              "0", "--token-file", tokens, "--fault-file", s->fault, (char *)NULL);
        _exit(127);
    }
    s->url[0] = '\0';
    for (i = 0; i < 100 && !s->url[0]; i++) {
        usleep(100000);
        fp = fopen(outp, "r");
        while (fp && fgets(line, sizeof(line), fp)) {
            char *p = strstr(line, "serving ");

            if (p && sscanf(p + 8, "%127s", s->url) == 1)
                break;
        }
        if (fp)
            fclose(fp);
    }
    return s->url[0] ? 0 : -1;
}

static void srv_stop(struct srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static void set_fault(struct srv *s, const char *line)
{
    FILE *fp = fopen(s->fault, "w");

    if (fp) {
        fputs(line, fp);
        fclose(fp);
    }
}

static int import(struct srv *s, const char *model, const char *repo, const char *extra)
{
    char cmd[2048];

    snprintf(cmd, sizeof(cmd), "'%s' hub import '%s/models/%s' '%s' --root '%s' %s >/dev/null",
             bin(), check_data_dir(), model, repo, s->root, extra);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t stats_write(char *p, size_t size, size_t n, void *ctx)
{
    mfs_buf_append(ctx, p, size * n);
    return size * n;
}

/* content_requests from the server's own counters, -1 if unreadable. */
static long srv_content_requests(struct srv *s)
{
    struct mfs_buf b = MFS_BUF_INIT;
    char url[256];
    CURL *c = curl_easy_init();
    cJSON *j;
    long v = -1;

    snprintf(url, sizeof(url), "%s/api/_modelfs/stats", s->url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, stats_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(c) == CURLE_OK && b.data) {
        j = cJSON_Parse(b.data);
        if (cJSON_IsNumber(cJSON_GetObjectItem(j, "content_requests")))
            v = (long)cJSON_GetObjectItem(j, "content_requests")->valuedouble;
        cJSON_Delete(j);
    }
    curl_easy_cleanup(c);
    mfs_buf_release(&b);
    return v;
}

static struct mfs_hub *hub_new(struct srv *s, const char *token, long timeout_ms)
{
    struct mfs_hub_cfg cfg = { 0 };
    struct mfs_hub *hub = NULL;

    cfg.endpoint = s->url;
    cfg.token = token;
    cfg.timeout_ms = timeout_ms;
    mfs_hub_new(&cfg, &hub, NULL);
    return hub;
}

static struct mfs_cache *cache_new(void)
{
    static int seq;
    char dir[600];
    struct mfs_cache *c = NULL;

    snprintf(dir, sizeof(dir), "%s/cache%d", tmp(), seq++);
    mfs_cache_open(dir, 0, &c, NULL);
    return c;
}

static struct mfs_fetch *fetch_new(struct mfs_hub *hub, struct mfs_cache *c, const char *repo,
                                   const char *commit)
{
    struct mfs_fetch_cfg cfg = { 0 };
    struct mfs_fetch *f = NULL;

    cfg.hub = hub;
    cfg.cache = c;
    cfg.repo_id = repo;
    cfg.commit = commit;
    mfs_fetch_new(&cfg, &f, NULL);
    return f;
}

static bool load_file(const char *model, const char *name, struct file *out)
{
    char p[1024];
    FILE *fp;
    long n;

    snprintf(p, sizeof(p), "%s/models/%s/%s", check_data_dir(), model, name);
    fp = fopen(p, "rb");
    if (!fp)
        return false;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    out->data = malloc((size_t)n + 1);
    out->size = fread(out->data, 1, (size_t)n, fp);
    fclose(fp);
    snprintf(out->path, sizeof(out->path), "%s", name);
    return true;
}

static bool read_odd(struct mfs_fetch *f, const struct mfs_entry *e, uint64_t stream,
                     const struct file *src, struct mfs_err *err)
{
    static const size_t sizes[] = { 3, 65537, 4096, 262147, 131072, 999 };
    unsigned char *buf = malloc(300000);
    uint64_t off = 0;
    bool ok = true;
    int i = 0;

    while (ok && off < src->size) {
        size_t want = sizes[i++ % 6];
        size_t expect = src->size - off < want ? (size_t)(src->size - off) : want;
        ssize_t got = mfs_fetch_read(f, e, stream, off, want, buf, err);

        ok = got == (ssize_t)expect && !memcmp(buf, src->data + off, expect);
        off += expect;
    }
    free(buf);
    return ok;
}

struct rd {
    struct mfs_fetch *f;
    const struct mfs_entry *e;
    const struct file *src;
    pthread_barrier_t *bar;
    int bad;
};

static void *rd_main(void *p)
{
    struct rd *r = p;
    unsigned char buf[50000];
    uint64_t off = 2 * MFS_CACHE_CHUNK + 777;
    ssize_t got;

    pthread_barrier_wait(r->bar);
    got = mfs_fetch_read(r->f, r->e, 0, off, sizeof(buf), buf, NULL);
    r->bad = got != (ssize_t)sizeof(buf) || memcmp(buf, r->src->data + off, sizeof(buf));
    return NULL;
}

static long parallel_same_chunk(struct srv *s, struct mfs_hub *hub, const char *repo,
                                const char *commit, const struct mfs_entry *e,
                                const struct file *src, int n, int *bad)
{
    struct mfs_cache *c = cache_new();
    struct mfs_fetch *f = fetch_new(hub, c, repo, commit);
    pthread_barrier_t bar;
    pthread_t t[8];
    struct rd r[8];
    long before = srv_content_requests(s);
    int i;

    pthread_barrier_init(&bar, NULL, (unsigned)n);
    for (i = 0; i < n; i++) {
        r[i].f = f;
        r[i].e = e;
        r[i].src = src;
        r[i].bar = &bar;
        r[i].bad = 0;
        pthread_create(&t[i], NULL, rd_main, &r[i]);
    }
    *bad = 0;
    for (i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        *bad += r[i].bad;
    }
    pthread_barrier_destroy(&bar);
    mfs_fetch_free(&f);
    mfs_cache_close(&c);
    return srv_content_requests(s) - before;
}

int main(void)
{
    static const char *const names[] = { "config.json", "tokenizer.json", "model.safetensors",
                                         "generation_config.json" };
    struct srv s = { 0 };
    struct mfs_hub *hub;
    struct mfs_hub *anon;
    struct mfs_hub *authed;
    struct mfs_cache *cache;
    struct mfs_fetch *f;
    struct mfs_hub_repo_info info;
    struct mfs_entry *v = NULL;
    struct file src[4];
    struct mfs_err err = MFS_ERR_INIT;
    const struct mfs_entry *big;
    size_t n = 0;
    size_t i;
    long d1;
    long d8;
    int bad;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(src, 0, sizeof(src));
    for (i = 0; i < 4; i++)
        load_file("tiny-random-llama", names[i], &src[i]);
    if (srv_start(&s) < 0 || import(&s, "tiny-random-llama", "org/llama", "") < 0 ||
        import(&s, "tiny-random-llama", "org/llama-copy", "") < 0 ||
        import(&s, "stories260K-hf", "org/private", "--private") < 0) {
        CHECK(0, "start '%s hub serve' and import repos", bin());
        srv_stop(&s);
        return check_done();
    }
    hub = hub_new(&s, NULL, 1500);
    rc = mfs_hub_repo_info(hub, "org/llama", NULL, &info, &err);
    CHECK(rc == 0 && mfs_hash_is_hex(info.commit, 40), "revision main of org/llama: %s", err.msg);
    rc = mfs_hub_tree(hub, "org/llama", info.commit, &v, &n, &err);
    CHECK(rc == 0 && n >= 4, "tree: %zu entries: %s", n, err.msg);
    for (i = 0; i < 4; i++) {
        const struct mfs_entry *e = check_find_entry(v, n, names[i]);
        char sha[65];

        mfs_hash_sha256_hex(src[i].data, src[i].size, sha);
        CHECK(e && e->size == src[i].size && (!e->is_lfs || !strcmp(e->lfs_oid, sha)),
              "tree entry '%s': size %llu%s", names[i], e ? (unsigned long long)e->size : 0ull,
              e && e->is_lfs ? ", lfs oid = sha256" : "");
    }
    CHECK(mfs_hub_repo_info(hub, "org/nope", NULL, &info, &err) == -ENOENT,
          "unknown repo -> -ENOENT: %s", err.msg);
    CHECK(mfs_hub_repo_info(hub, "org/llama", "no-such-branch", &info, &err) == -ENOENT,
          "unknown revision -> -ENOENT: %s", err.msg);
    mfs_hub_repo_info(hub, "org/llama", NULL, &info, NULL);

    cache = cache_new();
    f = fetch_new(hub, cache, "org/llama", info.commit);
    for (i = 0; i < 4; i++) {
        const struct mfs_entry *e = check_find_entry(v, n, names[i]);

        CHECK(e && read_odd(f, e, 10 + i, &src[i], &err) &&
              mfs_cache_is_verified(cache, mfs_entry_content_id(e)),
              "'%s' through fetch at odd offsets, verified: %s", names[i], err.msg);
    }
    mfs_fetch_free(&f);

    /* Same blob, another repo, same cache: served without a content request. */
    {
        struct mfs_hub_repo_info info2;
        long before;

        mfs_hub_repo_info(hub, "org/llama-copy", NULL, &info2, NULL);
        f = fetch_new(hub, cache, "org/llama-copy", info2.commit);
        before = srv_content_requests(&s);
        big = check_find_entry(v, n, "model.safetensors");
        CHECK(big && read_odd(f, big, 20, &src[2], &err) && srv_content_requests(&s) == before,
              "the same blob in a second repo is not fetched again (%ld requests)",
              srv_content_requests(&s) - before);
        mfs_fetch_free(&f);
    }
    f = fetch_new(NULL, cache, "org/llama", info.commit);
    CHECK(big && read_odd(f, big, 21, &src[2], &err), "offline: served from the cache: %s",
          err.msg);
    mfs_fetch_free(&f);

    /* Single flight, counted by the server: 8 readers cost what 1 costs. */
    d1 = parallel_same_chunk(&s, hub, "org/llama", info.commit, big, &src[2], 1, &bad);
    d8 = parallel_same_chunk(&s, hub, "org/llama", info.commit, big, &src[2], 8, &bad);
    CHECK(bad == 0 && d1 >= 1 && d8 == d1, "8 readers of one missing chunk: %ld content "
          "requests, 1 reader: %ld", d8, d1);

    /* Faults (--fault-file, re-read per request). */
    {
        static const struct { const char *line; const char *name; } faults[] = {
            { "stall model.safetensors\n", "stall" },
            { "500 model.safetensors\n", "500" },
            { "truncate model.safetensors\n", "truncate" },
        };
        struct mfs_cache_blob_info bi;
        unsigned char *buf = malloc(big ? big->size : 1);
        double t0;
        ssize_t got;

        for (i = 0; big && i < sizeof(faults) / sizeof(faults[0]); i++) {
            struct mfs_cache *c = cache_new();

            f = fetch_new(hub, c, "org/llama", info.commit);
            set_fault(&s, faults[i].line);
            t0 = now_s();
            got = mfs_fetch_read(f, big, 0, 300000, 200000, buf, &err);
            CHECK(got == -EIO && now_s() - t0 < 1.5 + 2.0, "fault %s -> -EIO in %.1fs: %s",
                  faults[i].name, now_s() - t0, err.msg);
            set_fault(&s, "");
            got = mfs_fetch_read(f, big, 0, 300000, 200000, buf, &err);
            CHECK(got == 200000 && !memcmp(buf, src[2].data + 300000, 200000),
                  "after %s: right bytes", faults[i].name);
            mfs_fetch_free(&f);
            mfs_cache_close(&c);
        }
        if (big) {
            struct mfs_cache *c = cache_new();

            f = fetch_new(hub, c, "org/llama", info.commit);
            set_fault(&s, "corrupt model.safetensors\n");
            got = mfs_fetch_read(f, big, 1, 0, big->size, buf, &err);
            mfs_cache_blob_info(c, big->lfs_oid, &bi, NULL);
            CHECK(got == -EIO && strstr(err.msg, "checksum") && bi.stored == 0,
                  "corrupt content -> -EIO, chunks dropped: %s", err.msg);
            set_fault(&s, "");
            got = mfs_fetch_read(f, big, 1, 0, big->size, buf, &err);
            CHECK(got == (ssize_t)big->size && !memcmp(buf, src[2].data, big->size),
                  "after corrupt: refetched right bytes: %s", err.msg);
            mfs_fetch_free(&f);
            mfs_cache_close(&c);
        }
        free(buf);
    }

    /* Private repo: without a token it does not exist or is forbidden. */
    anon = hub;
    authed = hub_new(&s, "hf_testtoken", 1500);
    rc = mfs_hub_repo_info(anon, "org/private", NULL, &info, &err);
    CHECK(rc == -EACCES || rc == -ENOENT, "private repo without a token -> %d: %s", rc, err.msg);
    rc = mfs_hub_repo_info(authed, "org/private", NULL, &info, &err);
    CHECK(rc == 0 && info.is_private, "private repo with its token: %s", err.msg);
    if (rc == 0) {
        struct mfs_entry *pv = NULL;
        size_t pn = 0;
        const struct mfs_entry *pe;
        struct file cfgsrc;
        unsigned char buf[4096];

        rc = mfs_hub_tree(authed, "org/private", info.commit, &pv, &pn, &err);
        pe = rc == 0 ? check_find_entry(pv, pn, "config.json") : NULL;
        load_file("stories260K-hf", "config.json", &cfgsrc);
        f = fetch_new(authed, cache, "org/private", info.commit);
        CHECK(pe && mfs_fetch_read(f, pe, 0, 0, sizeof(buf), buf, &err) == (ssize_t)cfgsrc.size &&
              !memcmp(buf, cfgsrc.data, cfgsrc.size), "private file read with the token: %s",
              err.msg);
        mfs_fetch_free(&f);
        {
            struct mfs_cache *c2 = cache_new();
            ssize_t got;

            f = fetch_new(anon, c2, "org/private", info.commit);
            got = pe ? mfs_fetch_read(f, pe, 0, 0, 10, buf, &err) : 0;
            CHECK(got == -EACCES || got == -ENOENT, "private file without a token -> %zd: %s",
                  got, err.msg);
            mfs_fetch_free(&f);
            mfs_cache_close(&c2);
        }
        free(cfgsrc.data);
        mfs_entries_free(pv, pn);
    }
    mfs_hub_free(&authed);
    mfs_hub_free(&hub);
    mfs_cache_close(&cache);
    mfs_entries_free(v, n);
    for (i = 0; i < 4; i++)
        free(src[i].data);
    srv_stop(&s);
    curl_global_cleanup();
    return check_done();
}
