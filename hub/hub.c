/*
 * hub/hub.c - the HTTP transport of the Hub client: a pool of libcurl easy
 * handles sharing one connection cache and DNS cache (CURLSH), the error
 * model of docs/hub-api.md section 3, retries, stall detection, and strict
 * range GETs (section 4.5).  The JSON calls are in hub/hub_api.c.
 *
 * Time limits: every call keeps the time it last saw progress (its start,
 * then each byte received).  A transfer that sees no byte for timeout_ms
 * since then is aborted (xferinfo callback), and a retry is only started if
 * it can begin before that bound, so a dead or stalled server fails a call
 * within about timeout_ms (+ up to a second: libcurl calls xferinfo about
 * once a second while idle).  A range GET that breaks mid-body resumes with
 * the remaining range; a server that answers wrongly (200 for a range, a
 * Content-Range that does not match, more bytes than asked) fails at once:
 * it would answer the same way again, and wrong bytes must never pass.
 *
 * Auth: "authorization: Bearer <token>" goes in CURLOPT_HTTPHEADER; libcurl
 * (>= 7.83) does not send a custom Authorization header to another host or
 * port after a redirect (CURLOPT_UNRESTRICTED_AUTH stays off), which is what
 * section 4.3 asks for pre-signed CDN URLs.
 */
#include "hub/hub_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"

#define HUB_POOL_MAX 32                     /* idle easy handles kept */
#define HUB_MAX_TRIES 4                     /* attempts per call */
#define HUB_BACKOFF_MS 100                  /* first retry wait, doubled each time */
#define HUB_ERR_BODY_MAX 4096               /* bytes of an error body kept for the reason */
#define HUB_DEFAULT_TIMEOUT_MS 30000

struct hub_handle {
    CURL *curl;                             /* owned */
    struct hub_handle *next;                /* idle list link */
};

struct mfs_hub {
    char *endpoint;                         /* owned, no trailing '/' */
    char *auth_header;                      /* owned "authorization: Bearer ..." or NULL */
    bool dataset;                           /* repo_type "dataset" */
    long timeout_ms;                        /* stall bound per call */
    bool offline;                           /* refuse every request */
    CURLSH *share;                          /* connections + DNS, shared by all handles */
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST]; /* one per curl_lock_data */
    pthread_mutex_t lock;                   /* guards idle, nidle; pairs with wake */
    pthread_cond_t wake;                    /* broadcast by mfs_hub_shutdown (ends backoffs) */
    struct hub_handle *idle;                /* handles not in use */
    unsigned nidle;
    atomic_bool shutdown;                   /* set once by mfs_hub_shutdown */
    atomic_uint_fast64_t requests;          /* stats, see hub.h */
    atomic_uint_fast64_t bytes_received;
    atomic_uint_fast64_t errors;
};

/* One attempt's view of the answer, filled by the callbacks. */
struct hub_xfer {
    struct mfs_hub *hub;
    long status;                            /* status of the last response line seen */
    char error_code[64];                    /* X-Error-Code */
    char error_msg[160];                    /* X-Error-Message */
    char *link_next;                        /* owned: Link rel="next" URL */
    bool has_range;                         /* Content-Range seen on the final response */
    uint64_t cr_first;                      /* its bytes first-last/total */
    uint64_t cr_last;
    long retry_after_s;                     /* Retry-After seconds, -1 if absent */
    /* range GETs */
    bool ranged;                            /* this attempt asked for a range */
    uint64_t want_off;                      /* first byte asked for */
    uint64_t want_len;                      /* bytes asked for in this attempt */
    uint64_t got;                           /* body bytes passed to the sink */
    mfs_hub_sink_fn sink;
    void *sink_ctx;
    int sink_rc;                            /* the sink's or our own abort reason */
    char abort_msg[160];                    /* why the write callback aborted */
    /* other bodies */
    struct mfs_buf *body;                   /* where a non-range body goes */
    size_t body_max;                        /* cap in bytes */
    /* progress */
    int64_t *last_progress_ms;              /* the call's; moved by every byte */
    bool stalled;                           /* aborted for no progress */
    bool shut;                              /* aborted by mfs_hub_shutdown */
    /* sends (mfs_hub_send) */
    const struct mfs_hub_send *send;        /* NULL for GETs */
    uint64_t sent;                          /* streamed body bytes handed to libcurl */
    char etag[160];                         /* ETag of the final response */
};

static void hub_share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ctx)
{
    struct mfs_hub *hub = ctx;

    pthread_mutex_lock(&hub->share_locks[data % CURL_LOCK_DATA_LAST]);
}

static void hub_share_unlock(CURL *h, curl_lock_data data, void *ctx)
{
    struct mfs_hub *hub = ctx;

    pthread_mutex_unlock(&hub->share_locks[data % CURL_LOCK_DATA_LAST]);
}

const char *mfs_hub_endpoint(const struct mfs_hub *hub)
{
    return hub->endpoint;
}

const char *mfs_hub_api_type(const struct mfs_hub *hub)
{
    return hub->dataset ? "datasets" : "models";
}

const char *mfs_hub_web_prefix(const struct mfs_hub *hub)
{
    return hub->dataset ? "datasets/" : "";
}

int mfs_hub_buf_escape(struct mfs_buf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;
    int rc = 0;

    for (p = (const unsigned char *)s; *p && rc == 0; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
                     *p == '~' || (keep_slash && *p == '/');
        char enc[3] = { '%', hex[*p >> 4], hex[*p & 15] };

        rc = plain ? mfs_buf_append(b, p, 1) : mfs_buf_append(b, enc, 3);
    }
    return rc;
}

int mfs_hub_check_repo_id(const char *repo_id, struct mfs_err *err)
{
    const char *p;
    size_t part = 0;
    int slashes = 0;

    if (!repo_id || !*repo_id || strlen(repo_id) > 200)
        goto out_bad;
    for (p = repo_id; *p; p++) {
        if (*p == '/') {
            if (part == 0 || ++slashes > 1)
                goto out_bad;
            part = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            goto out_bad;
        if (*p == '.' && p[1] == '.')
            goto out_bad;
        part++;
    }
    if (part == 0)
        goto out_bad;
    return 0;
out_bad:
    return mfs_err_set(err, -EINVAL, "invalid repo id '%s'", repo_id ? repo_id : "");
}

int mfs_hub_new(const struct mfs_hub_cfg *cfg, struct mfs_hub **hubp, struct mfs_err *err)
{
    struct mfs_hub *hub;
    size_t n;
    int i;
    int rc;

    *hubp = NULL;
    if (!cfg->endpoint || (strncmp(cfg->endpoint, "http://", 7) &&
                           strncmp(cfg->endpoint, "https://", 8)))
        return mfs_err_set(err, -EINVAL, "invalid endpoint '%s': not an http(s) URL",
                           cfg->endpoint ? cfg->endpoint : "");
    if (cfg->repo_type && strcmp(cfg->repo_type, "model") && strcmp(cfg->repo_type, "dataset"))
        return mfs_err_set(err, -EINVAL, "invalid repo type '%s'", cfg->repo_type);
    hub = calloc(1, sizeof(*hub));
    if (!hub)
        return mfs_err_set(err, -ENOMEM, "hub: out of memory");
    hub->endpoint = strdup(cfg->endpoint);
    if (!hub->endpoint)
        goto out_nomem;
    n = strlen(hub->endpoint);
    while (n > 0 && hub->endpoint[n - 1] == '/')
        hub->endpoint[--n] = '\0';
    if (cfg->token && *cfg->token) {
        if (strpbrk(cfg->token, "\r\n")) {
            rc = mfs_err_set(err, -EINVAL, "invalid token: contains a line break");
            goto out_free;
        }
        n = strlen(cfg->token) + sizeof("authorization: Bearer ");
        hub->auth_header = malloc(n);
        if (!hub->auth_header)
            goto out_nomem;
        snprintf(hub->auth_header, n, "authorization: Bearer %s", cfg->token);
    }
    hub->dataset = cfg->repo_type && !strcmp(cfg->repo_type, "dataset");
    hub->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : HUB_DEFAULT_TIMEOUT_MS;
    hub->offline = cfg->offline;
    hub->share = curl_share_init();
    if (!hub->share)
        goto out_nomem;
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&hub->share_locks[i], NULL);
    pthread_mutex_init(&hub->lock, NULL);
    pthread_cond_init(&hub->wake, NULL);
    curl_share_setopt(hub->share, CURLSHOPT_LOCKFUNC, hub_share_lock);
    curl_share_setopt(hub->share, CURLSHOPT_UNLOCKFUNC, hub_share_unlock);
    curl_share_setopt(hub->share, CURLSHOPT_USERDATA, hub);
    curl_share_setopt(hub->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(hub->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(hub->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    atomic_init(&hub->shutdown, false);
    atomic_init(&hub->requests, 0);
    atomic_init(&hub->bytes_received, 0);
    atomic_init(&hub->errors, 0);
    *hubp = hub;
    return 0;
out_nomem:
    rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
out_free:
    free(hub->auth_header);
    free(hub->endpoint);
    free(hub);
    return rc;
}

void mfs_hub_free(struct mfs_hub **hubp)
{
    struct mfs_hub *hub;
    struct hub_handle *h;
    int i;

    if (!hubp || !*hubp)
        return;
    hub = *hubp;
    while (hub->idle) {
        h = hub->idle;
        hub->idle = h->next;
        curl_easy_cleanup(h->curl);
        free(h);
    }
    curl_share_cleanup(hub->share);
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&hub->share_locks[i]);
    pthread_cond_destroy(&hub->wake);
    pthread_mutex_destroy(&hub->lock);
    free(hub->auth_header);
    free(hub->endpoint);
    free(hub);
    *hubp = NULL;
}

void mfs_hub_shutdown(struct mfs_hub *hub)
{
    if (!hub)
        return;
    atomic_store(&hub->shutdown, true);
    pthread_mutex_lock(&hub->lock);
    pthread_cond_broadcast(&hub->wake);
    pthread_mutex_unlock(&hub->lock);
}

void mfs_hub_stats_get(struct mfs_hub *hub, struct mfs_hub_stats *st)
{
    st->requests = atomic_load(&hub->requests);
    st->bytes_received = atomic_load(&hub->bytes_received);
    st->errors = atomic_load(&hub->errors);
}

static struct hub_handle *hub_handle_take(struct mfs_hub *hub)
{
    struct hub_handle *h;

    pthread_mutex_lock(&hub->lock);
    h = hub->idle;
    if (h) {
        hub->idle = h->next;
        hub->nidle--;
    }
    pthread_mutex_unlock(&hub->lock);
    if (h) {
        curl_easy_reset(h->curl);           /* keeps the connection and DNS caches */
        return h;
    }
    h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return NULL;
    }
    return h;
}

static void hub_handle_give(struct mfs_hub *hub, struct hub_handle *h)
{
    pthread_mutex_lock(&hub->lock);
    if (hub->nidle < HUB_POOL_MAX) {
        h->next = hub->idle;
        hub->idle = h;
        hub->nidle++;
        h = NULL;
    }
    pthread_mutex_unlock(&hub->lock);
    if (h) {
        curl_easy_cleanup(h->curl);
        free(h);
    }
}

/* Sleep ms, or less if mfs_hub_shutdown() is called meanwhile. */
static void hub_sleep(struct mfs_hub *hub, long ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&hub->lock);
    while (!atomic_load(&hub->shutdown))
        if (pthread_cond_timedwait(&hub->wake, &hub->lock, &ts) != 0)
            break;
    pthread_mutex_unlock(&hub->lock);
}

static void hub_copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    while (n > 0 && *v == ' ') {
        v++;
        n--;
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Link: <url>; rel="next", possibly among other comma-separated links. */
static char *hub_parse_link_next(const char *v, size_t n)
{
    const char *end = v + n;
    const char *p = v;

    while (p < end) {
        const char *lt = memchr(p, '<', (size_t)(end - p));
        const char *gt;
        const char *stop;

        if (!lt)
            return NULL;
        gt = memchr(lt, '>', (size_t)(end - lt));
        if (!gt)
            return NULL;
        stop = memchr(gt, ',', (size_t)(end - gt));
        if (!stop)
            stop = end;
        if (memmem(gt, (size_t)(stop - gt), "rel=\"next\"", 10) ||
            memmem(gt, (size_t)(stop - gt), "rel=next", 8))
            return strndup(lt + 1, (size_t)(gt - lt - 1));
        p = stop;
    }
    return NULL;
}

static size_t hub_on_header(char *data, size_t size, size_t nitems, void *ctx)
{
    struct hub_xfer *x = ctx;
    size_t n = size * nitems;
    const char *colon;
    size_t klen;
    const char *v;
    size_t vlen;

    *x->last_progress_ms = mfs_clock_ms();
    if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
        const char *sp = memchr(data, ' ', n);

        /* A new response (after a redirect): forget the previous one's headers. */
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->error_code[0] = '\0';
        x->error_msg[0] = '\0';
        free(x->link_next);
        x->link_next = NULL;
        x->has_range = false;
        x->retry_after_s = -1;
        x->etag[0] = '\0';
        return n;
    }
    colon = memchr(data, ':', n);
    if (!colon)
        return n;
    klen = (size_t)(colon - data);
    v = colon + 1;
    vlen = n - klen - 1;
    if (klen == 12 && !strncasecmp(data, "x-error-code", 12)) {
        hub_copy_value(x->error_code, sizeof(x->error_code), v, vlen);
    } else if (klen == 15 && !strncasecmp(data, "x-error-message", 15)) {
        hub_copy_value(x->error_msg, sizeof(x->error_msg), v, vlen);
    } else if (klen == 4 && !strncasecmp(data, "etag", 4)) {
        hub_copy_value(x->etag, sizeof(x->etag), v, vlen);
    } else if (klen == 4 && !strncasecmp(data, "link", 4)) {
        free(x->link_next);
        x->link_next = hub_parse_link_next(v, vlen);
    } else if (klen == 11 && !strncasecmp(data, "retry-after", 11)) {
        char tmp[32];
        char *endp;
        long s;

        hub_copy_value(tmp, sizeof(tmp), v, vlen);
        s = strtol(tmp, &endp, 10);
        if (endp != tmp && *endp == '\0' && s >= 0)
            x->retry_after_s = s;
    } else if (klen == 13 && !strncasecmp(data, "content-range", 13)) {
        char tmp[96];
        unsigned long long a;
        unsigned long long b;
        int used = 0;

        hub_copy_value(tmp, sizeof(tmp), v, vlen);
        if (sscanf(tmp, "bytes %llu-%llu/%*[0-9*]%n", &a, &b, &used) == 2 && used > 0 &&
            tmp[used] == '\0') {
            x->has_range = true;
            x->cr_first = a;
            x->cr_last = b;
        }
    }
    return n;
}

static size_t hub_abort_write(struct hub_xfer *x, int rc, const char *msg)
{
    x->sink_rc = rc;
    snprintf(x->abort_msg, sizeof(x->abort_msg), "%s", msg);
    return 0;                               /* != size: libcurl stops with CURLE_WRITE_ERROR */
}

static size_t hub_on_body(char *data, size_t size, size_t nitems, void *ctx)
{
    struct hub_xfer *x = ctx;
    size_t n = size * nitems;
    int rc;

    *x->last_progress_ms = mfs_clock_ms();
    if (x->status >= 300 && x->status < 400)
        return n;                           /* a redirect's own body */
    if (x->ranged && x->status >= 200 && x->status < 300) {
        if (x->status != 206)
            return hub_abort_write(x, -EIO, "server ignored the range (HTTP 200)");
        if (x->got == 0 && (!x->has_range || x->cr_first != x->want_off ||
                            x->cr_last != x->want_off + x->want_len - 1))
            return hub_abort_write(x, -EIO, "Content-Range does not match the request");
        if (n > x->want_len - x->got)
            return hub_abort_write(x, -EIO, "server sent more bytes than asked for");
        rc = x->sink(x->sink_ctx, data, n);
        if (rc < 0)
            return hub_abort_write(x, rc, "read aborted");
        x->got += n;
        atomic_fetch_add(&x->hub->bytes_received, n);
        return n;
    }
    if (x->body) {
        size_t room = x->body_max > x->body->len ? x->body_max - x->body->len : 0;

        if (n > room) {
            if (x->status >= 200 && x->status < 300)
                return hub_abort_write(x, -EIO, "answer too large");
            n = room;                       /* an error body: keep its start for the reason */
        }
        if (n && mfs_buf_append(x->body, data, n) < 0)
            return hub_abort_write(x, -ENOMEM, "out of memory");
    }
    return size * nitems;
}

static int hub_on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                           curl_off_t ulnow)
{
    struct hub_xfer *x = ctx;

    if (atomic_load(&x->hub->shutdown)) {
        x->shut = true;
        return 1;
    }
    if (mfs_clock_ms() - *x->last_progress_ms > x->hub->timeout_ms) {
        x->stalled = true;
        return 1;
    }
    return 0;
}

/* Streamed request body: bytes come from the caller's read callback straight
 * into libcurl's buffer, so a file is never held whole in memory. */
static size_t hub_on_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    struct hub_xfer *x = ctx;
    const struct mfs_hub_send *s = x->send;
    struct mfs_err rerr = MFS_ERR_INIT;
    size_t n = size * nitems;
    int rc;

    if (n > s->size - x->sent)
        n = (size_t)(s->size - x->sent);
    if (n == 0)
        return 0;
    rc = s->read(s->read_ctx, s->off + x->sent, n, buf, &rerr);
    if (rc < 0) {
        x->sink_rc = rc;
        snprintf(x->abort_msg, sizeof(x->abort_msg), "%s",
                 rerr.msg[0] ? rerr.msg : "cannot read the body");
        return CURL_READFUNC_ABORT;
    }
    x->sent += n;
    *x->last_progress_ms = mfs_clock_ms();
    if (s->sent)
        s->sent(s->sent_ctx, x->sent);
    return n;
}

/* libcurl rewinds the body when it must send it again (a redirect). */
static int hub_on_seek(void *ctx, curl_off_t offset, int origin)
{
    struct hub_xfer *x = ctx;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->send->size)
        return CURL_SEEKFUNC_CANTSEEK;
    x->sent = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* The errno for a final HTTP status (hub.h, docs/hub-api.md section 3).  The
 * Hub answers 401 + RepoNotFound for a repo that is missing *or* private when
 * the caller has no (valid) token, so as not to leak its existence: that is
 * "not found" unless the message says the token itself was refused. */
static int hub_status_errno(long status, const char *code, const char *msg)
{
    if (!strcmp(code, "GatedRepo") || strstr(msg, "Invalid credentials") ||
        !strcmp(msg, "Access to this resource is disabled."))
        return -EACCES;
    if (!strcmp(code, "RepoNotFound") || !strcmp(code, "RevisionNotFound") ||
        !strcmp(code, "EntryNotFound") || status == 404 || status == 410)
        return -ENOENT;
    if (status == 401 || status == 403)
        return -EACCES;
    return -EIO;
}

/* The same for a write (hub_int.h): a write without valid credentials is an
 * access problem even when the Hub hides the repo behind RepoNotFound, 412
 * means the branch moved past parentCommit (section 6.6), 409 a conflict. */
static int hub_send_errno(long status, const char *code, const char *msg)
{
    if (status == 401 || status == 403)
        return -EACCES;
    if (status == 409)
        return -EEXIST;
    if (status == 412)
        return -ESTALE;
    return hub_status_errno(status, code, msg);
}

static bool hub_status_retryable(long status)
{
    return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
           status == 504;
}

static bool hub_curl_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

/* Short reason from an error body: JSON {"error": "..."} or its first line. */
static void hub_body_reason(const struct mfs_buf *body, char *out, size_t cap)
{
    const char *p;
    const char *q;

    out[0] = '\0';
    if (!body->len)
        return;
    p = strstr(body->data, "\"error\"");
    if (p) {
        p = strchr(p + 7, '"');
        q = p ? strchr(p + 1, '"') : NULL;
        if (p && q) {
            hub_copy_value(out, cap, p + 1, (size_t)(q - p - 1));
            return;
        }
    }
    p = body->data;
    q = strchr(p, '\n');
    hub_copy_value(out, cap, p, q ? (size_t)(q - p) : body->len);
}

struct hub_call {
    const char *url;                        /* borrowed */
    const char *what;                       /* subject for messages */
    const char *verb;                       /* "get" (NULL too), "post", "upload" */
    struct mfs_hub_send *send;              /* a POST/PUT, else NULL (a GET) */
    /* range GET, else a body */
    bool ranged;
    uint64_t off;
    uint64_t len;
    mfs_hub_sink_fn sink;
    void *sink_ctx;
    struct mfs_buf *body;
    char **next_url;                        /* OUT: Link rel="next" */
};

static void hub_setup(struct mfs_hub *hub, CURL *c, struct hub_xfer *x, struct curl_slist *hdrs,
                      char *errbuf, const char *url, const char *range)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_SHARE, hub->share);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "modelfs/0.1; libcurl/" LIBCURL_VERSION);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, hub->timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hub_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, hub_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, hub_on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (range)
        curl_easy_setopt(c, CURLOPT_RANGE, range);
}

static void hub_setup_send(CURL *c, struct hub_xfer *x, const struct mfs_hub_send *s)
{
    if (s->read) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        /* libcurl asks the read callback for 64 KiB at a time by default:
         * a stage read per 64 KiB costs more than the bytes. */
        curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, hub_on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, hub_on_seek);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->size);
        if (strcmp(s->method, "PUT"))
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, s->method);
    } else {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, s->len ? s->data : "");
        if (strcmp(s->method, "POST"))
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, s->method);
    }
}

/* One call: attempts until success, a final error, HUB_MAX_TRIES, or the
 * no-progress bound.  Returns 0 or a negative errno with the reason. */
static int hub_call(struct mfs_hub *hub, struct hub_call *call, struct mfs_err *err)
{
    struct curl_slist *hdrs = NULL;
    struct curl_slist *tmp;
    struct hub_handle *h;
    char errbuf[CURL_ERROR_SIZE];
    char reason[200];
    int64_t last_progress = mfs_clock_ms();
    uint64_t done = 0;                      /* range bytes delivered by earlier attempts */
    long backoff = HUB_BACKOFF_MS;
    int tries = 0;
    const char *verb = call->verb ? call->verb : "get";
    int rc = -EIO;

    if (call->next_url)
        *call->next_url = NULL;
    if (hub->offline)
        return mfs_err_set(err, -ENETDOWN, "cannot %s '%s': offline mode", verb, call->what);
    if (atomic_load(&hub->shutdown))
        return mfs_err_set(err, -ESHUTDOWN, "cannot %s '%s': shutting down", verb, call->what);
    h = hub_handle_take(hub);
    if (!h)
        return mfs_err_set(err, -ENOMEM, "hub: out of memory");
    tmp = curl_slist_append(hdrs, "Accept-Encoding: identity");
    if (tmp)
        hdrs = tmp;
    if (tmp && hub->auth_header && (!call->send || call->send->auth)) {
        tmp = curl_slist_append(hdrs, hub->auth_header);
        if (tmp)
            hdrs = tmp;
    }
    if (tmp && call->send) {
        char line[200];

        /* No "Expect: 100-continue" round trip before a body. */
        tmp = curl_slist_append(hdrs, "Expect:");
        if (tmp)
            hdrs = tmp;
        if (tmp && call->send->content_type) {
            snprintf(line, sizeof(line), "Content-Type: %s", call->send->content_type);
            tmp = curl_slist_append(hdrs, line);
            if (tmp)
                hdrs = tmp;
        }
        if (tmp && call->send->accept) {
            snprintf(line, sizeof(line), "Accept: %s", call->send->accept);
            tmp = curl_slist_append(hdrs, line);
            if (tmp)
                hdrs = tmp;
        }
    }
    if (!tmp) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_free_headers;
    }
    for (;;) {
        struct hub_xfer x;
        char range[64];
        CURLcode cc;
        bool retry = false;
        long wait_ms;

        memset(&x, 0, sizeof(x));
        x.hub = hub;
        x.retry_after_s = -1;
        x.last_progress_ms = &last_progress;
        x.ranged = call->ranged;
        x.want_off = call->off + done;
        x.want_len = call->len - done;
        x.sink = call->sink;
        x.sink_ctx = call->sink_ctx;
        x.body = call->body;
        x.body_max = call->ranged ? HUB_ERR_BODY_MAX : MFS_HUB_JSON_MAX;
        if (call->body)
            mfs_buf_reset(call->body);
        errbuf[0] = '\0';
        if (call->ranged)
            snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, x.want_off,
                     x.want_off + x.want_len - 1);
        curl_easy_reset(h->curl);
        hub_setup(hub, h->curl, &x, hdrs, errbuf, call->url, call->ranged ? range : NULL);
        x.send = call->send;
        if (call->send)
            hub_setup_send(h->curl, &x, call->send);
        tries++;
        atomic_fetch_add(&hub->requests, 1);
        cc = curl_easy_perform(h->curl);
        done += x.got;
        if (cc == CURLE_OK && x.status == 0)
            curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &x.status);
        if (x.shut || (cc != CURLE_OK && atomic_load(&hub->shutdown))) {
            rc = mfs_err_set(err, -ESHUTDOWN, "cannot %s '%s': shutting down", verb, call->what);
        } else if (x.stalled) {
            rc = mfs_err_set(err, -EIO, "cannot %s '%s': no data for %ld ms", verb, call->what,
                             hub->timeout_ms);
        } else if ((cc == CURLE_WRITE_ERROR || cc == CURLE_ABORTED_BY_CALLBACK) &&
                   x.sink_rc < 0) {
            rc = mfs_err_set(err, x.sink_rc, "cannot %s '%s': %s", verb, call->what, x.abort_msg);
        } else if (cc != CURLE_OK) {
            rc = mfs_err_set(err, -EIO, "cannot %s '%s': %s", verb, call->what,
                             errbuf[0] ? errbuf : curl_easy_strerror(cc));
            retry = hub_curl_retryable(cc);
        } else if (x.status >= 200 && x.status < 300) {
            if (!call->ranged) {
                rc = 0;
            } else if (x.status != 206) {
                rc = mfs_err_set(err, -EIO, "cannot %s '%s': server ignored the range",
                                 verb, call->what);
            } else if (done == call->len) {
                rc = 0;
            } else {
                rc = mfs_err_set(err, -EIO, "cannot %s '%s': short body (%" PRIu64
                                 " of %" PRIu64 " bytes)", verb, call->what, done, call->len);
                retry = true;
            }
            if (rc == 0 && call->next_url) {
                *call->next_url = x.link_next;
                x.link_next = NULL;
            }
        } else {
            struct mfs_buf *b = call->body;

            reason[0] = '\0';
            if (x.error_msg[0])
                snprintf(reason, sizeof(reason), "%s", x.error_msg);
            else if (b)
                hub_body_reason(b, reason, sizeof(reason));
            rc = mfs_err_set(err, call->send ? hub_send_errno(x.status, x.error_code, x.error_msg)
                             : hub_status_errno(x.status, x.error_code, x.error_msg),
                             "cannot %s '%s': HTTP %ld%s%s%s%s%s", verb, call->what, x.status,
                             x.error_code[0] ? " " : "", x.error_code,
                             x.status == 401 && !hub->auth_header ? " (no token given)" : "",
                             reason[0] ? ": " : "", reason);
            retry = hub_status_retryable(x.status);
        }
        free(x.link_next);
        if (call->send) {
            call->send->status = x.status;
            snprintf(call->send->etag, sizeof(call->send->etag), "%s", x.etag);
        }
        if (rc == 0 || !retry || tries >= HUB_MAX_TRIES)
            break;
        wait_ms = backoff;
        if (x.retry_after_s >= 0)
            wait_ms = x.retry_after_s * 1000;
        /* Never start an attempt past the no-progress bound. */
        if (mfs_clock_ms() + wait_ms - last_progress >= hub->timeout_ms)
            break;
        hub_sleep(hub, wait_ms);
        if (atomic_load(&hub->shutdown)) {
            rc = mfs_err_set(err, -ESHUTDOWN, "cannot %s '%s': shutting down", verb, call->what);
            break;
        }
        backoff *= 2;
    }
    if (rc < 0 && tries > 1 && err && rc != -ESHUTDOWN) {
        size_t used = strlen(err->msg);

        snprintf(err->msg + used, sizeof(err->msg) - used, " after %d tries", tries);
    }
    if (rc < 0)
        atomic_fetch_add(&hub->errors, 1);
out_free_headers:
    curl_slist_free_all(hdrs);
    hub_handle_give(hub, h);
    return rc;
}

int mfs_hub_get_json(struct mfs_hub *hub, const char *url, const char *what,
                     struct mfs_buf *body, char **next_url, struct mfs_err *err)
{
    struct hub_call call = { 0 };

    call.url = url;
    call.what = what;
    call.body = body;
    call.next_url = next_url;
    return hub_call(hub, &call, err);
}

int mfs_hub_get_range(struct mfs_hub *hub, const char *repo_id, const char *commit,
                      const char *path, uint64_t off, uint64_t len,
                      mfs_hub_sink_fn sink, void *ctx, struct mfs_err *err)
{
    struct mfs_buf url = MFS_BUF_INIT;
    struct mfs_buf body = MFS_BUF_INIT;
    struct hub_call call = { 0 };
    int rc;

    if (len == 0)
        return 0;
    if (off + len < off)
        return mfs_err_set(err, -EINVAL, "cannot get '%s': bad range", path);
    rc = mfs_hub_check_repo_id(repo_id, err);
    if (rc < 0)
        return rc;
    if (!path || !*path || !commit || !*commit)
        return mfs_err_set(err, -EINVAL, "cannot get a file: no path or commit");
    rc = mfs_buf_printf(&url, "%s/%s%s/resolve/", hub->endpoint, hub->dataset ? "datasets/" : "",
                        repo_id);
    if (rc == 0)
        rc = mfs_hub_buf_escape(&url, commit, false);
    if (rc == 0)
        rc = mfs_buf_puts(&url, "/");
    if (rc == 0)
        rc = mfs_hub_buf_escape(&url, path, true);
    if (rc < 0) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_release;
    }
    call.url = url.data;
    call.what = path;
    call.ranged = true;
    call.off = off;
    call.len = len;
    call.sink = sink;
    call.sink_ctx = ctx;
    call.body = &body;                      /* only error bodies land here */
    rc = hub_call(hub, &call, err);
out_release:
    mfs_buf_release(&body);
    mfs_buf_release(&url);
    return rc;
}

int mfs_hub_send(struct mfs_hub *hub, struct mfs_hub_send *s, struct mfs_err *err)
{
    struct mfs_buf local = MFS_BUF_INIT;
    struct hub_call call = { 0 };
    int rc;

    s->etag[0] = '\0';
    s->status = 0;
    call.url = s->url;
    call.what = s->what;
    call.verb = s->read ? "upload" : "post";
    call.send = s;
    call.body = s->resp ? s->resp : &local; /* error bodies give the reason */
    rc = hub_call(hub, &call, err);
    mfs_buf_release(&local);
    return rc;
}

bool mfs_hub_same_origin(const struct mfs_hub *hub, const char *url)
{
    const char *ep = hub->endpoint;
    const char *host = strstr(ep, "://");
    const char *path = host ? strchr(host + 3, '/') : NULL;
    size_t n = path ? (size_t)(path - ep) : strlen(ep);

    return !strncmp(url, ep, n) && (url[n] == '/' || url[n] == '\0' || url[n] == '?');
}
