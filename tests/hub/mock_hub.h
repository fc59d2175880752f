/*
 * tests/hub/mock_hub.h - a tiny Hub double on libmicrohttpd, for the client
 * tests that need a server to misbehave on cue (mountpoint-s3's
 * failure_client.rs in spirit): stall, ignore Range, lie in Content-Range,
 * close mid-body, answer 503 a few times, corrupt bytes, redirect to another
 * port, hostile JSON.  It serves one repo (files from a folder or memory) at
 * one commit, counts requests, and records the Authorization header it got.
 * Header-only: each test program includes it once.  The end-to-end tests use
 * the real `modelfs hub serve`.
 */
#ifndef MFS_TESTS_MOCK_HUB_H
#define MFS_TESTS_MOCK_HUB_H

#include <dirent.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hash.h"

enum mock_mode {
    MOCK_OK,
    MOCK_STALL,                             /* send half the body, then nothing */
    MOCK_IGNORE_RANGE,                      /* 200 with the whole file */
    MOCK_BAD_CRANGE,                        /* 206 whose Content-Range names other bytes */
    MOCK_TRUNCATE,                          /* close the connection mid-body */
    MOCK_503,                               /* answer 503 fail_count times, then OK */
    MOCK_CORRUPT,                           /* flip a byte of every body */
    MOCK_LONG,                              /* 206 with more bytes than asked */
};

struct mock_file {
    char *path;
    unsigned char *data;
    size_t size;
    bool lfs;
    char oid[41];                           /* git blob id of the content (or pointer) */
    char sha256[65];
};

struct mock_hub {
    struct MHD_Daemon *d;
    char url[64];                           /* http://127.0.0.1:PORT */
    char repo[128];                         /* the one repo served */
    char commit[41];
    struct mock_file files[64];
    int nfiles;
    const char *token;                      /* required when set */
    int page;                               /* tree entries per page (0 = all) */
    char redirect[64];                      /* resolve -> 302 to this base URL + same path */
    char hostile[32];                       /* JSON trick for revision/tree answers */
    atomic_int mode;
    atomic_int fail_count;
    atomic_int stopping;
    atomic_long requests;
    atomic_long content_requests;
    atomic_long content_bytes;
    pthread_mutex_t lock;
    char last_auth[256];                    /* Authorization of the last request */
};

static void mock_add(struct mock_hub *m, const char *path, const void *data, size_t size,
                     bool lfs)
{
    struct mock_file *f = &m->files[m->nfiles++];
    char ptr[256];

    f->path = strdup(path);
    f->data = malloc(size ? size : 1);
    memcpy(f->data, data, size);
    f->size = size;
    f->lfs = lfs;
    mfs_hash_sha256_hex(data, size, f->sha256);
    if (lfs) {
        int n = snprintf(ptr, sizeof(ptr), "version https://git-lfs.github.com/spec/v1\n"
                         "oid sha256:%s\nsize %zu\n", f->sha256, size);

        mfs_hash_git_blob_hex(ptr, (size_t)n, f->oid);
    } else {
        mfs_hash_git_blob_hex(data, size, f->oid);
    }
}

/* Add every regular file of dir (one level); *.safetensors and *.bin are LFS. */
static void mock_add_dir(struct mock_hub *m, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        char p[1024];
        struct stat st;
        FILE *fp;
        unsigned char *buf;
        size_t n;

        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        fp = fopen(p, "rb");
        if (!fp)
            continue;
        buf = malloc((size_t)st.st_size + 1);
        n = fread(buf, 1, (size_t)st.st_size, fp);
        fclose(fp);
        mock_add(m, de->d_name, buf, n, strstr(de->d_name, ".safetensors") != NULL ||
                 strstr(de->d_name, ".bin") != NULL);
        free(buf);
    }
    if (d)
        closedir(d);
}

struct mock_body {
    struct mock_hub *m;
    const unsigned char *data;              /* the bytes to send */
    size_t len;
    int mode;
};

static ssize_t mock_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct mock_body *b = cls;
    size_t n;

    if (pos >= b->len)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (b->mode == MOCK_STALL && pos >= b->len / 2) {
        while (!atomic_load(&b->m->stopping))
            usleep(20000);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (b->mode == MOCK_TRUNCATE && pos >= b->len / 2)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    n = b->len - pos < max ? b->len - pos : max;
    if ((b->mode == MOCK_STALL || b->mode == MOCK_TRUNCATE) && pos < b->len / 2 &&
        pos + n > b->len / 2)
        n = b->len / 2 - pos;
    if (b->mode == MOCK_STALL && n == 0)
        return 0;
    memcpy(buf, b->data + pos, n);
    if (b->mode == MOCK_CORRUPT && pos == 0 && n > 0)
        buf[0] ^= 0x5a;
    atomic_fetch_add(&b->m->content_bytes, (long)n);
    return (ssize_t)n;
}

static void mock_free_body(void *cls)
{
    free(cls);
}

static enum MHD_Result mock_reply(struct MHD_Connection *c, unsigned status, const char *type,
                                  const char *body, const char *code, const char *link)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    MHD_add_response_header(r, "Content-Type", type);
    if (code)
        MHD_add_response_header(r, "X-Error-Code", code);
    if (link)
        MHD_add_response_header(r, "Link", link);
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result mock_tree(struct mock_hub *m, struct MHD_Connection *c)
{
    const char *cur = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cursor");
    int start = cur ? (int)strtol(cur, NULL, 10) : 0;
    int end = m->page ? start + m->page : m->nfiles;
    char *out = malloc(65536);
    size_t used = 0;
    char link[256];
    enum MHD_Result ret;
    int i;

    if (end > m->nfiles)
        end = m->nfiles;
    used += (size_t)snprintf(out + used, 65536 - used, "[");
    for (i = start; i < end; i++) {
        struct mock_file *f = &m->files[i];

        used += (size_t)snprintf(out + used, 65536 - used,
                                 "%s{\"type\":\"file\",\"path\":\"%s\",\"oid\":\"%s\","
                                 "\"size\":%zu", i > start ? "," : "", f->path, f->oid, f->size);
        if (f->lfs)
            used += (size_t)snprintf(out + used, 65536 - used,
                                     ",\"lfs\":{\"oid\":\"%s\",\"size\":%zu,\"pointerSize\":134}",
                                     f->sha256, f->size);
        used += (size_t)snprintf(out + used, 65536 - used, "}");
    }
    if (!strcmp(m->hostile, "dotdot"))
        used += (size_t)snprintf(out + used, 65536 - used, ",{\"type\":\"file\",\"path\":"
                                 "\"a/../../etc/passwd\",\"oid\":\"%s\",\"size\":1}",
                                 m->files[0].oid);
    if (!strcmp(m->hostile, "abs"))
        used += (size_t)snprintf(out + used, 65536 - used, ",{\"type\":\"file\",\"path\":"
                                 "\"/etc/passwd\",\"oid\":\"%s\",\"size\":1}", m->files[0].oid);
    if (!strcmp(m->hostile, "size"))
        used += (size_t)snprintf(out + used, 65536 - used, ",{\"type\":\"file\",\"path\":"
                                 "\"x\",\"oid\":\"%s\",\"size\":\"12\"}", m->files[0].oid);
    snprintf(out + used, 65536 - used, "]");
    link[0] = '\0';
    if (end < m->nfiles)
        snprintf(link, sizeof(link), "<%s/api/models/%s/tree/%s?recursive=true&cursor=%d>; "
                 "rel=\"next\"", !strcmp(m->hostile, "elsewhere") ? "http://10.0.0.1:1" : m->url,
                 m->repo, m->commit, end);
    ret = mock_reply(c, 200, "application/json", out, NULL, link[0] ? link : NULL);
    free(out);
    return ret;
}

static enum MHD_Result mock_resolve(struct mock_hub *m, struct MHD_Connection *c,
                                    const char *url, const char *path)
{
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    struct mock_file *f = NULL;
    struct mock_body *b;
    struct MHD_Response *r;
    unsigned long long a = 0;
    unsigned long long z = 0;
    char cr[128];
    enum MHD_Result ret;
    int mode = atomic_load(&m->mode);
    int i;

    if (m->redirect[0]) {
        char loc[1024];

        snprintf(loc, sizeof(loc), "%s%s", m->redirect, url);
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Location", loc);
        ret = MHD_queue_response(c, 302, r);
        MHD_destroy_response(r);
        return ret;
    }
    for (i = 0; i < m->nfiles; i++)
        if (!strcmp(m->files[i].path, path))
            f = &m->files[i];
    if (!f)
        return mock_reply(c, 404, "application/json", "{\"error\":\"Entry not found\"}",
                          "EntryNotFound", NULL);
    atomic_fetch_add(&m->content_requests, 1);
    if (mode == MOCK_503 && atomic_fetch_sub(&m->fail_count, 1) > 0)
        return mock_reply(c, 503, "text/plain", "busy", NULL, NULL);
    b = calloc(1, sizeof(*b));
    b->m = m;
    b->mode = mode;
    if (range && sscanf(range, "bytes=%llu-%llu", &a, &z) == 2 && a <= z && z < f->size &&
        mode != MOCK_IGNORE_RANGE) {
        b->data = f->data + a;
        b->len = (size_t)(z - a + 1);
        if (mode == MOCK_LONG && z + 1 < f->size)
            b->len++;
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%zu", mode == MOCK_BAD_CRANGE ? a + 1 : a,
                 mode == MOCK_BAD_CRANGE ? z + 1 : z, f->size);
    } else {
        b->data = f->data;
        b->len = f->size;
        cr[0] = '\0';
    }
    r = MHD_create_response_from_callback(b->len, 64 * 1024, mock_read, b, mock_free_body);
    if (cr[0])
        MHD_add_response_header(r, "Content-Range", cr);
    MHD_add_response_header(r, "X-Repo-Commit", m->commit);
    ret = MHD_queue_response(c, cr[0] ? 206 : 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result mock_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_size, void **state)
{
    struct mock_hub *m = cls;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    char prefix[256];
    size_t n;

    if (!*state) {
        *state = (void *)1;                 /* headers only on the first call */
        return MHD_YES;
    }
    atomic_fetch_add(&m->requests, 1);
    pthread_mutex_lock(&m->lock);
    snprintf(m->last_auth, sizeof(m->last_auth), "%s", auth ? auth : "");
    pthread_mutex_unlock(&m->lock);
    if (m->token) {
        char want[256];

        snprintf(want, sizeof(want), "Bearer %s", m->token);
        if (!auth)
            return mock_reply(c, 401, "application/json", "{\"error\":\"Repository not found\"}",
                              "RepoNotFound", NULL);
        if (strcmp(auth, want)) {
            struct MHD_Response *r = MHD_create_response_from_buffer(2, (void *)"{}",
                                                                     MHD_RESPMEM_PERSISTENT);
            enum MHD_Result ret;

            MHD_add_response_header(r, "X-Error-Message",
                                    "Invalid credentials in Authorization header");
            ret = MHD_queue_response(c, 401, r);
            MHD_destroy_response(r);
            return ret;
        }
    }
    snprintf(prefix, sizeof(prefix), "/api/models/%s/", m->repo);
    n = strlen(prefix);
    if (!strncmp(url, prefix, n) && !strncmp(url + n, "revision/", 9)) {
        const char *rev = url + n + 9;
        char body[512];

        if (strcmp(rev, "main") && strcmp(rev, m->commit) && strcmp(rev, "refs/pr/1"))
            return mock_reply(c, 404, "application/json", "{\"error\":\"Invalid rev id\"}",
                              "RevisionNotFound", NULL);
        if (!strcmp(m->hostile, "sha-type"))
            snprintf(body, sizeof(body), "{\"id\":\"%s\",\"sha\":12}", m->repo);
        else if (!strcmp(m->hostile, "notjson"))
            snprintf(body, sizeof(body), "<html>hello</html>");
        else
            snprintf(body, sizeof(body), "{\"id\":\"%s\",\"sha\":\"%s\",\"private\":%s,"
                     "\"gated\":false,\"lastModified\":\"2024-05-01T12:34:56.000Z\"}", m->repo,
                     !strcmp(rev, "refs/pr/1") ? "1111111111111111111111111111111111111111"
                                               : m->commit, m->token ? "true" : "false");
        return mock_reply(c, 200, "application/json", body, NULL, NULL);
    }
    if (!strncmp(url, prefix, n) && !strncmp(url + n, "tree/", 5))
        return mock_tree(m, c);
    snprintf(prefix, sizeof(prefix), "/%s/resolve/", m->repo);
    n = strlen(prefix);
    if (!strncmp(url, prefix, n)) {
        const char *rev = url + n;
        const char *slash = strchr(rev, '/');

        if (!slash || (size_t)(slash - rev) != 40 || strncmp(rev, m->commit, 40))
            return mock_reply(c, 404, "application/json", "{\"error\":\"Invalid rev id\"}",
                              "RevisionNotFound", NULL);
        return mock_resolve(m, c, url, slash + 1);
    }
    if (!strncmp(url, "/api/models/", 12))
        return mock_reply(c, 404, "application/json", "{\"error\":\"Repository not found\"}",
                          "RepoNotFound", NULL);
    return mock_reply(c, 404, "text/plain", "not found", NULL, NULL);
}

static int mock_start(struct mock_hub *m, const char *repo)
{
    const union MHD_DaemonInfo *info;

    pthread_mutex_init(&m->lock, NULL);
    snprintf(m->repo, sizeof(m->repo), "%s", repo);
    if (!m->commit[0])
        snprintf(m->commit, sizeof(m->commit), "%s", "c0ffee0000000000000000000000000000000001");
    m->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                            MHD_USE_ERROR_LOG, 0, NULL, NULL, mock_handler, m,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!m->d)
        return -1;
    info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(m->url, sizeof(m->url), "http://127.0.0.1:%u", (unsigned)info->port);
    return 0;
}

static void mock_stop(struct mock_hub *m)
{
    int i;

    atomic_store(&m->stopping, 1);
    if (m->d)
        MHD_stop_daemon(m->d);
    m->d = NULL;
    for (i = 0; i < m->nfiles; i++) {
        free(m->files[i].path);
        free(m->files[i].data);
    }
    m->nfiles = 0;
    pthread_mutex_destroy(&m->lock);
}

#endif
