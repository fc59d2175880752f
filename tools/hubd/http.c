/*
 * tools/hubd/http.c - the local Hub's HTTP plumbing on libmicrohttpd: the
 * daemon, per-request state, body buffering and upload streaming, routing,
 * auth (hub-api.md section 3), error headers, the fault switch and stats.
 *
 * URLs reach the handler still percent-encoded (a no-op unescape callback)
 * so that "refs%2Fpr%2F1" (one segment) and "refs/pr/1" (three) stay
 * distinguishable and a "%00" can be refused instead of cutting the path.
 */
#include "tools/hubd/hubd_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers -------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *mfs_hubd_decode(const char *s, size_t len, bool plus_space)
{
    char *out = malloc(len + 1);
    size_t i;
    size_t o = 0;

    if (!out)
        return NULL;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (c == '%') {
            int h;
            int l;

            if (i + 2 >= len)
                goto out_bad;
            h = hexval(s[i + 1]);
            l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                goto out_bad;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (c == '\0')
            goto out_bad;
        out[o++] = c;
    }
    out[o] = '\0';
    return out;

out_bad:
    free(out);
    return NULL;
}

int mfs_hubd_encode(struct mfs_buf *b, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && keep_slash)) {
            rc = mfs_buf_append(b, s, 1);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };

            rc = mfs_buf_append(b, e, 3);
        }
    }
    return rc;
}

const char *mfs_hubd_header(struct mfs_hubd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

char *mfs_hubd_arg(struct mfs_hubd_req *r, const char *name)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);

    return v ? mfs_hubd_decode(v, strlen(v), true) : NULL;
}

bool mfs_hubd_arg_bool(struct mfs_hubd_req *r, const char *name)
{
    char *v = mfs_hubd_arg(r, name);
    bool on;

    if (!v)
        return false;
    on = !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "");
    free(v);
    return on;
}

char *mfs_hubd_join_path(struct mfs_hubd_req *r, size_t from, size_t to)
{
    struct mfs_buf raw = MFS_BUF_INIT;
    char *path;
    size_t i;

    if (from >= to)
        return NULL;
    for (i = from; i < to; i++) {
        if (i > from)
            mfs_buf_puts(&raw, "/");
        mfs_buf_puts(&raw, r->seg[i]);
    }
    if (!raw.data)
        return NULL;
    path = mfs_hubd_decode(raw.data, raw.len, false);
    mfs_buf_release(&raw);
    if (path && !mfs_hubd_path_ok(path)) {
        free(path);
        return NULL;
    }
    return path;
}

void mfs_hubd_sign(struct mfs_hubd_srv *srv, const char *what, char hex[65])
{
    struct mfs_hash *h = mfs_hash_new(MFS_HASH_SHA256);

    if (!h) {
        memset(hex, '0', 64);
        hex[64] = '\0';
        return;
    }
    mfs_hash_update(h, srv->secret, strlen(srv->secret));
    mfs_hash_update(h, ":", 1);
    mfs_hash_update(h, what, strlen(what));
    mfs_hash_final_hex(h, hex);
}

/* Compare two hex signatures in time that does not depend on where they
 * differ, so that a client cannot find a valid one byte by byte. */
static bool sig_equal(const char *want, const char *got)
{
    size_t n = strlen(want);
    unsigned char diff = 0;
    size_t i;

    if (strlen(got) != n)
        return false;
    for (i = 0; i < n; i++)
        diff |= (unsigned char)(want[i] ^ got[i]);
    return diff == 0;
}

bool mfs_hubd_sig_ok(struct mfs_hubd_req *r, const char *oid)
{
    char *exp = mfs_hubd_arg(r, "expires");
    char *sig = mfs_hubd_arg(r, "sig");
    char what[128];
    char want[65];
    unsigned long long e = 0;
    char *end = NULL;
    bool ok = false;

    if (exp && sig) {
        e = strtoull(exp, &end, 10);
        if (end && *end == '\0' && end != exp && (long long)e >= (long long)time(NULL)) {
            snprintf(what, sizeof(what), "%s:%llu", oid, e);
            mfs_hubd_sign(r->srv, what, want);
            ok = sig_equal(want, sig);
        }
    }
    free(exp);
    free(sig);
    return ok;
}

const char *mfs_hubd_type_prefix(const char *type)
{
    if (!strcmp(type, "dataset"))
        return "datasets/";
    if (!strcmp(type, "space"))
        return "spaces/";
    return "";
}

/* ---- replies -------------------------------------------------------------------------- */

enum MHD_Result mfs_hubd_reply(struct mfs_hubd_req *r, unsigned status,
                               struct MHD_Response *resp)
{
    enum MHD_Result ret;
    char id[32];

    if (!resp)
        return MHD_NO;
    snprintf(id, sizeof(id), "modelfs-%" PRIu64, r->id);
    MHD_add_response_header(resp, "Server", "modelfs-hub");
    MHD_add_response_header(resp, "X-Request-Id", id);
    if (status >= 400) {
        /* One line per failed request: the test logs say what went wrong. */
        const char *code = MHD_get_response_header(resp, "X-Error-Code");
        const char *msg = MHD_get_response_header(resp, "X-Error-Message");

        fprintf(stderr, "modelfs hub: %s %.200s -> %u %s: %.200s\n", r->method, r->url, status,
                code ? code : "-", msg ? msg : "");
    }
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->replied = true;
    return ret;
}

enum MHD_Result mfs_hubd_reply_json(struct mfs_hubd_req *r, unsigned status, cJSON *json)
{
    struct MHD_Response *resp;
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;

    cJSON_Delete(json);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
    return mfs_hubd_reply(r, status, resp);
}

/* X-Error-Code for errors the Hub has no specific code for: every error
 * carries one, so clients never see a bare status. */
static const char *default_code(unsigned status)
{
    static const struct {
        unsigned status;
        const char *code;
    } codes[] = {
        { 400, "BadRequest" }, { 401, "Unauthorized" }, { 403, "Forbidden" },
        { 404, "NotFound" }, { 405, "MethodNotAllowed" }, { 409, "Conflict" },
        { 412, "PreconditionFailed" }, { 413, "PayloadTooLarge" },
        { 416, "RangeNotSatisfiable" }, { 500, "InternalError" }, { 507, "InsufficientStorage" },
    };
    size_t i;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i].status == status)
            return codes[i].code;
    return "Error";
}

static enum MHD_Result reply_error_v(struct mfs_hubd_req *r, unsigned status, const char *code,
                                     const char *hname, const char *hvalue, const char *fmt,
                                     va_list ap)
{
    struct MHD_Response *resp;
    char msg[512];
    char hmsg[512];
    cJSON *o;
    char *text;
    size_t i;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* A header value must not carry CR/LF or other control bytes. */
    for (i = 0; msg[i] && i < sizeof(hmsg) - 1; i++)
        hmsg[i] = (unsigned char)msg[i] < 0x20 ? ' ' : msg[i];
    hmsg[i] = '\0';
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(resp, "X-Error-Code", code ? code : default_code(status));
    MHD_add_response_header(resp, "X-Error-Message", hmsg);
    if (hname && hvalue)
        MHD_add_response_header(resp, hname, hvalue);
    return mfs_hubd_reply(r, status, resp);
}

enum MHD_Result mfs_hubd_reply_error(struct mfs_hubd_req *r, unsigned status, const char *code,
                                     const char *fmt, ...)
{
    enum MHD_Result ret;
    va_list ap;

    va_start(ap, fmt);
    ret = reply_error_v(r, status, code, NULL, NULL, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result mfs_hubd_reply_error_h(struct mfs_hubd_req *r, unsigned status,
                                       const char *code, const char *hname,
                                       const char *hvalue, const char *fmt, ...)
{
    enum MHD_Result ret;
    va_list ap;

    va_start(ap, fmt);
    ret = reply_error_v(r, status, code, hname, hvalue, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result mfs_hubd_reply_errno(struct mfs_hubd_req *r, int rc, const char *enoent_code,
                                     const struct mfs_err *err)
{
    const char *msg = err && err->msg[0] ? err->msg : strerror(-rc);

    switch (rc) {
    case -ENOENT:
        return mfs_hubd_reply_error(r, 404, enoent_code, "%s", msg);
    case -EEXIST:
        return mfs_hubd_reply_error(r, 409, NULL, "%s", msg);
    case -ESTALE:
        return mfs_hubd_reply_error(r, 412, NULL, "%s", msg);
    case -EINVAL:
    case -ENAMETOOLONG:
        return mfs_hubd_reply_error(r, 400, NULL, "%s", msg);
    case -EACCES:
        return mfs_hubd_reply_error(r, 403, NULL, "%s", msg);
    case -ENOSPC:
        return mfs_hubd_reply_error(r, 507, NULL, "%s", msg);
    default:
        return mfs_hubd_reply_error(r, 500, NULL, "%s", msg);
    }
}

/* ---- auth ----------------------------------------------------------------------------- */

static void parse_auth(struct mfs_hubd_req *r)
{
    const char *h = mfs_hubd_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t i;

    r->auth = MFS_HUBD_ANON;
    if (!h || !*h)
        return;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        r->auth = MFS_HUBD_INVALID;
        return;
    }
    h += 7;
    while (*h == ' ')
        h++;
    r->auth = MFS_HUBD_INVALID;
    if (r->srv->open_mode) {
        if (!strncmp(h, "hf_", 3) && strlen(h) > 3) {
            r->auth = MFS_HUBD_VALID;
            snprintf(r->user, sizeof(r->user), "user");
        }
        return;
    }
    for (i = 0; i < r->srv->ntokens; i++) {
        if (!strcmp(r->srv->tokens[i].token, h)) {
            r->auth = MFS_HUBD_VALID;
            snprintf(r->user, sizeof(r->user), "%s", r->srv->tokens[i].user);
            return;
        }
    }
}

int mfs_hubd_need_write(struct mfs_hubd_req *r)
{
    if (r->auth == MFS_HUBD_VALID)
        return 0;
    if (r->auth == MFS_HUBD_ANON && r->srv->open_mode) {
        snprintf(r->user, sizeof(r->user), "user");
        return 0;
    }
    mfs_hubd_reply_error(r, 401, NULL, r->auth == MFS_HUBD_INVALID ?
                         "Invalid credentials in Authorization header" :
                         "You must be authenticated to write");
    return -1;
}

bool mfs_hubd_owns(struct mfs_hubd_req *r, const char *name)
{
    const char *slash = strchr(name, '/');
    size_t ns;
    size_t i;

    if (!slash)
        return true;
    ns = (size_t)(slash - name);
    if (strlen(r->user) == ns && !strncmp(r->user, name, ns))
        return true;
    for (i = 0; i < r->srv->ntokens; i++) {
        const char *u = r->srv->tokens[i].user;

        if (strlen(u) == ns && !strncmp(u, name, ns))
            return false;
    }
    return true;
}

int mfs_hubd_repo_access(struct mfs_hubd_req *r, const char *type, const char *name,
                         bool content, bool write, struct mfs_hubd_repo *repo)
{
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    if (r->auth == MFS_HUBD_INVALID) {
        mfs_hubd_reply_error(r, 401, NULL, "Invalid credentials in Authorization header");
        return -1;
    }
    rc = mfs_hubd_repo_get(r->srv->store, type, name, repo, &err);
    if (rc < 0 && rc != -ENOENT) {
        mfs_hubd_reply_errno(r, rc, NULL, &err);
        return -1;
    }
    if (rc == -ENOENT || (repo->is_private &&
                          (r->auth != MFS_HUBD_VALID || !mfs_hubd_owns(r, name)))) {
        /* The Hub does not leak existence: 401 to anonymous callers. */
        mfs_hubd_reply_error(r, r->auth == MFS_HUBD_VALID ? 404 : 401, "RepoNotFound",
                             "Repository Not Found for url: %s. Please make sure you specified"
                             " the correct `repo_id` and `repo_type`. If you are trying to"
                             " access a private or gated repo, make sure you are authenticated.",
                             r->url);
        return -1;
    }
    if (content && repo->gated[0] && r->auth != MFS_HUBD_VALID) {
        mfs_hubd_reply_error(r, 403, "GatedRepo", "Access to %s %s is restricted. You must have"
                             " access to it and be authenticated to access it. Please log in.",
                             type, name);
        return -1;
    }
    if (write && mfs_hubd_need_write(r) < 0)
        return -1;
    if (write && !mfs_hubd_owns(r, name)) {
        mfs_hubd_reply_error(r, 403, NULL, "You don't have write access to '%s' as '%s'",
                             name, r->user);
        return -1;
    }
    return 0;
}

int mfs_hubd_split_rev(struct mfs_hubd_req *r, const struct mfs_hubd_repo *repo, size_t from,
                       size_t to, char commit[41], size_t *next, char *rev)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_buf raw = MFS_BUF_INIT;
    char *cand;
    size_t k;
    size_t i;

    rev[0] = '\0';
    if (from >= to) {
        mfs_hubd_reply_error(r, 404, "RevisionNotFound", "Invalid rev id: (none)");
        return -1;
    }
    cand = mfs_hubd_decode(r->seg[from], strlen(r->seg[from]), false);
    if (cand && mfs_hubd_rev_resolve(r->srv->store, repo->id, cand, commit, NULL, &err) == 0) {
        snprintf(rev, MFS_HUBD_REF_MAX, "%s", cand);
        free(cand);
        *next = from + 1;
        return 0;
    }
    if (cand)
        snprintf(rev, MFS_HUBD_REF_MAX, "%s", cand);
    free(cand);
    /* A raw revision with '/': the longest run of segments naming a ref. */
    for (k = to; k >= from + 2; k--) {
        mfs_buf_reset(&raw);
        for (i = from; i < k; i++) {
            if (i > from)
                mfs_buf_puts(&raw, "/");
            mfs_buf_puts(&raw, r->seg[i]);
        }
        if (!raw.data || raw.len >= MFS_HUBD_REF_MAX)
            continue;
        cand = mfs_hubd_decode(raw.data, raw.len, false);
        if (cand && mfs_hubd_rev_resolve(r->srv->store, repo->id, cand, commit, NULL,
                                         NULL) == 0) {
            snprintf(rev, MFS_HUBD_REF_MAX, "%s", cand);
            free(cand);
            mfs_buf_release(&raw);
            *next = k;
            return 0;
        }
        free(cand);
    }
    mfs_buf_release(&raw);
    mfs_hubd_reply_error(r, 404, "RevisionNotFound", "Invalid rev id: %s", rev);
    return -1;
}

void mfs_hubd_fault(struct mfs_hubd_req *r, char mode[16])
{
    const char *file = r->srv->opts->fault_file;
    char line[512];
    char *path;
    char *save = NULL;
    char *m;
    char *sub;
    FILE *f;

    mode[0] = '\0';
    if (!file)
        return;
    f = fopen(file, "r");
    if (!f)
        return;
    if (!fgets(line, sizeof(line), f)) {
        fclose(f);
        return;
    }
    fclose(f);
    m = strtok_r(line, " \t\r\n", &save);
    sub = m ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    if (!m)
        return;
    path = mfs_hubd_decode(r->url, strlen(r->url), false);
    if (!sub || strstr(path ? path : r->url, sub))
        snprintf(mode, 16, "%s", m);
    free(path);
}

/* ---- routing -------------------------------------------------------------------------- */

static bool is_api_keyword(const char *s)
{
    static const char *const kw[] = {
        "revision", "tree", "paths-info", "refs", "commits", "preupload", "commit", "branch",
        "tag", "xet-read-token", "xet-write-token", "settings", "discussions",
    };
    size_t i;

    for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
        if (!strcmp(s, kw[i]))
            return true;
    return false;
}

static const char *api_type(const char *plural)
{
    if (!strcmp(plural, "models"))
        return "model";
    if (!strcmp(plural, "datasets"))
        return "dataset";
    if (!strcmp(plural, "spaces"))
        return "space";
    return NULL;
}

static bool repo_exists(struct mfs_hubd_req *r, const char *type, const char *name)
{
    struct mfs_hubd_repo repo;

    return mfs_hubd_repo_get(r->srv->store, type, name, &repo, NULL) == 0;
}

/* Decode one or two raw segments into a repo id; false if not valid. */
static bool repo_name(struct mfs_hubd_req *r, size_t at, size_t nparts, char *out, size_t size)
{
    char *a = mfs_hubd_decode(r->seg[at], strlen(r->seg[at]), false);
    char *b = nparts == 2 ? mfs_hubd_decode(r->seg[at + 1], strlen(r->seg[at + 1]), false)
              : NULL;
    bool ok = a && (nparts == 1 || b);

    if (ok) {
        if (nparts == 2)
            snprintf(out, size, "%s/%s", a, b);
        else
            snprintf(out, size, "%s", a);
        ok = mfs_hubd_repo_name_ok(out);
    }
    free(a);
    free(b);
    return ok;
}

static enum MHD_Result route_stats(struct mfs_hubd_req *r)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddNumberToObject(o, "requests", (double)atomic_load(&r->srv->n_requests));
    cJSON_AddNumberToObject(o, "content_requests", (double)atomic_load(&r->srv->n_content));
    cJSON_AddNumberToObject(o, "content_bytes", (double)atomic_load(&r->srv->content_bytes));
    return mfs_hubd_reply_json(r, 200, o);
}

static enum MHD_Result route_api(struct mfs_hubd_req *r)
{
    const char *type;
    char name[MFS_HUBD_NAME_MAX];
    size_t from;

    if (r->nseg == 3 && !strcmp(r->seg[1], "_modelfs") && !strcmp(r->seg[2], "stats"))
        return route_stats(r);
    if (r->nseg == 2 && !strcmp(r->seg[1], "whoami-v2"))
        return mfs_hubd_route_whoami(r);
    if (r->nseg == 2 && !strcmp(r->seg[1], "validate-yaml"))
        return mfs_hubd_route_validate_yaml(r);
    if (r->nseg == 3 && !strcmp(r->seg[1], "repos") && !strcmp(r->seg[2], "create"))
        return mfs_hubd_route_repo_create(r);
    if (r->nseg == 3 && !strcmp(r->seg[1], "repos") && !strcmp(r->seg[2], "delete"))
        return mfs_hubd_route_repo_delete(r);
    type = r->nseg >= 3 ? api_type(r->seg[1]) : NULL;
    if (!type)
        return mfs_hubd_reply_error(r, 404, NULL, "no such route: %s %s", r->method, r->url);
    /* {repo} is "ns/name" or a legacy "name": prefer whichever exists. */
    if (r->nseg >= 4 && !is_api_keyword(r->seg[3]))
        from = 4;
    else if (r->nseg >= 4 && repo_name(r, 2, 2, name, sizeof(name)) &&
             repo_exists(r, type, name))
        from = 4;
    else
        from = 3;
    if (!repo_name(r, 2, from - 2, name, sizeof(name)))
        return mfs_hubd_reply_error(r, r->auth == MFS_HUBD_VALID ? 404 : 401, "RepoNotFound",
                                    "Repository Not Found: invalid repo id");
    return mfs_hubd_route_api_repo(r, type, name, from);
}

static enum MHD_Result route_web(struct mfs_hubd_req *r)
{
    const char *type = "model";
    char name[MFS_HUBD_NAME_MAX];
    size_t off = 0;
    size_t k;

    if (r->nseg >= 1 && !strcmp(r->seg[0], "datasets")) {
        type = "dataset";
        off = 1;
    } else if (r->nseg >= 1 && !strcmp(r->seg[0], "spaces")) {
        type = "space";
        off = 1;
    }
    for (k = off; k <= off + 2 && k < r->nseg; k++) {
        const char *s = r->seg[k];
        size_t len = strlen(s);

        if (len > 4 && !strcmp(s + len - 4, ".git") && k + 5 == r->nseg &&
            !strcmp(r->seg[k + 1], "info") && !strcmp(r->seg[k + 2], "lfs") &&
            !strcmp(r->seg[k + 3], "objects") && !strcmp(r->seg[k + 4], "batch")) {
            char last[MFS_HUBD_NAME_MAX];

            snprintf(last, sizeof(last), "%.*s", (int)(len - 4), s);
            if (k == off)
                snprintf(name, sizeof(name), "%s", last);
            else
                snprintf(name, sizeof(name), "%s/%s", r->seg[off], last);
            if (!mfs_hubd_repo_name_ok(name))
                return mfs_hubd_reply_error(r, 404, "RepoNotFound", "invalid repo id");
            return mfs_hubd_route_lfs_batch(r, type, name);
        }
        if (k > off && (!strcmp(s, "resolve") || !strcmp(s, "raw")) && k + 1 < r->nseg) {
            if (!repo_name(r, off, k - off, name, sizeof(name)))
                return mfs_hubd_reply_error(r, r->auth == MFS_HUBD_VALID ? 404 : 401,
                                            "RepoNotFound", "Repository Not Found");
            return mfs_hubd_route_resolve(r, type, name, k + 1, !strcmp(s, "raw"));
        }
    }
    return mfs_hubd_reply_error(r, 404, NULL, "no such route: %s %s", r->method, r->url);
}

static enum MHD_Result dispatch(struct mfs_hubd_req *r)
{
    if (r->nseg >= 1 && !strcmp(r->seg[0], "api"))
        return route_api(r);
    if (r->nseg >= 2 && !strcmp(r->seg[0], "_lfs"))
        return mfs_hubd_route_lfs_get(r);
    if (r->nseg >= 2 && !strcmp(r->seg[0], "_lfs_upload"))
        return mfs_hubd_route_lfs_upload(r);
    if (r->nseg >= 2 && !strcmp(r->seg[0], "_lfs_verify"))
        return mfs_hubd_route_lfs_verify(r);
    return route_web(r);
}

/* ---- request lifecycle ---------------------------------------------------------------- */

static void req_free(struct mfs_hubd_req *r)
{
    size_t i;

    if (!r)
        return;
    mfs_hubd_part_abort(r);
    if (r->up_fd >= 0)
        close(r->up_fd);
    if (r->up_tmp[0])
        unlink(r->up_tmp);
    mfs_hash_free(r->up_sha);
    for (i = 0; i < r->nseg; i++)
        free(r->seg[i]);
    free(r->seg);
    free(r->url);
    mfs_buf_release(&r->body);
    free(r);
}

static int split_url(struct mfs_hubd_req *r)
{
    const char *p = r->url;
    size_t cap = 8;

    r->seg = calloc(cap, sizeof(*r->seg));
    if (!r->seg)
        return -ENOMEM;
    while (*p) {
        const char *e;

        while (*p == '/')
            p++;
        if (!*p)
            break;
        e = strchr(p, '/');
        if (!e)
            e = p + strlen(p);
        if (r->nseg == cap) {
            char **a = realloc(r->seg, cap * 2 * sizeof(*a));

            if (!a)
                return -ENOMEM;
            r->seg = a;
            cap *= 2;
        }
        r->seg[r->nseg] = strndup(p, (size_t)(e - p));
        if (!r->seg[r->nseg])
            return -ENOMEM;
        r->nseg++;
        p = e;
    }
    return 0;
}

static void set_base(struct mfs_hubd_req *r)
{
    const char *host = mfs_hubd_header(r, MHD_HTTP_HEADER_HOST);
    const char *c;

    if (host && *host && strlen(host) < sizeof(r->base) - 8) {
        for (c = host; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || strchr(".-:[]_", *c)))
                break;
        if (!*c) {
            snprintf(r->base, sizeof(r->base), "http://%s", host);
            return;
        }
    }
    snprintf(r->base, sizeof(r->base), "%s", r->srv->bind_url);
}

/* First call for a request: headers are in, no body yet.  Sets up body
 * handling; may reply at once (oversized body, unsigned upload). */
static enum MHD_Result req_start(struct mfs_hubd_srv *srv, struct MHD_Connection *conn,
                                 const char *url, const char *method, void **con_cls)
{
    struct mfs_hubd_req *r = calloc(1, sizeof(*r));
    const char *cl;
    size_t i;

    if (!r)
        return MHD_NO;
    r->srv = srv;
    r->conn = conn;
    r->method = method;
    r->up_fd = -1;
    r->url = strdup(url);
    *con_cls = r;
    if (!r->url || split_url(r) < 0)
        return MHD_NO;
    r->id = atomic_fetch_add(&srv->n_requests, 1) + 1;
    parse_auth(r);
    set_base(r);
    r->body_max = MFS_HUBD_JSON_BODY_MAX;
    /* NDJSON commits carry base64 file contents: /api/{T}/{repo}/commit/{rev...}. */
    for (i = 3; i + 1 < r->nseg && !strcmp(r->seg[0], "api"); i++)
        if (!strcmp(r->seg[i], "commit"))
            r->body_max = MFS_HUBD_COMMIT_BODY_MAX;
    if (!strcmp(method, "PUT") && r->nseg >= 2 && !strcmp(r->seg[0], "_lfs_upload")) {
        if (!mfs_hash_is_hex(r->seg[1], 64) || !mfs_hubd_sig_ok(r, r->seg[1]))
            return mfs_hubd_reply_error(r, 403, NULL, "upload URL is not signed or expired");
        if (r->nseg == 3)
            return mfs_hubd_part_start(r);
        if (mfs_hubd_tmp_path(srv->store, "upload", r->up_tmp, sizeof(r->up_tmp)) < 0)
            return mfs_hubd_reply_error(r, 500, NULL, "hub root path too long");
        r->up_fd = open(r->up_tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
        r->up_sha = mfs_hash_new(MFS_HASH_SHA256);
        if (r->up_fd < 0 || !r->up_sha) {
            r->up_tmp[0] = '\0';
            return mfs_hubd_reply_error(r, 500, NULL, "cannot stage an upload: %s",
                                        strerror(errno));
        }
        return MHD_YES;
    }
    cl = mfs_hubd_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);

        if (end && *end == '\0' && n > r->body_max)
            return mfs_hubd_reply_error(r, 413, NULL, "request body too large: %llu bytes"
                                        " (limit %zu)", n, r->body_max);
    }
    return MHD_YES;
}

static void req_body(struct mfs_hubd_req *r, const char *data, size_t len)
{
    if (r->replied || r->body_too_big || r->up_oversize)
        return;
    if (r->up_fd >= 0) {
        size_t done = 0;

        /* A part goes straight to its place in the object (no copy when the
         * upload completes), hashed on the way only when it comes in order
         * (routes_upload.c). */
        if (r->up_part && len > MFS_HUBD_PART_SIZE - r->up_len) {
            r->up_oversize = true;
            return;
        }
        if (r->up_sha)
            mfs_hash_update(r->up_sha, data, len);
        while (done < len) {
            ssize_t w = r->up_part ? pwrite(r->up_fd, data + done, len - done,
                                            (off_t)(r->up_off + r->up_len + done))
                                   : write(r->up_fd, data + done, len - done);

            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r->body_too_big = true;     /* reported as a failed write at the end */
                return;
            }
            done += (size_t)w;
        }
        r->up_len += len;
        return;
    }
    if (r->body.len + len > r->body_max || mfs_buf_append(&r->body, data, len) < 0) {
        r->body_too_big = true;
        mfs_buf_release(&r->body);
    }
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version,
                               const char *upload_data, size_t *upload_data_size,
                               void **con_cls)
{
    struct mfs_hubd_srv *srv = cls;
    struct mfs_hubd_req *r = *con_cls;
    long left;

    if (!r)
        return req_start(srv, conn, url, method, con_cls);
    if (*upload_data_size > 0) {
        req_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->replied)
        return MHD_YES;
    for (left = srv->opts->delay_ms; left > 0 && !atomic_load(&srv->stopping); left -= 50)
        usleep((useconds_t)(left < 50 ? left : 50) * 1000);
    if (r->body_too_big && r->up_fd < 0)
        return mfs_hubd_reply_error(r, 413, NULL, "request body too large (limit %zu bytes)",
                                    r->body_max);
    return dispatch(r);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    req_free(*con_cls);
    *con_cls = NULL;
}

static size_t unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
    return strlen(s);
}

/* ---- server --------------------------------------------------------------------------- */

static int load_tokens(struct mfs_hubd_srv *srv, const char *file, struct mfs_err *err)
{
    char line[1024];
    FILE *f = fopen(file, "r");
    int lineno = 0;
    int rc = 0;

    if (!f)
        return mfs_err_set(err, -errno, "cannot read token file '%s': %s", file,
                           strerror(errno));
    while (rc == 0 && fgets(line, sizeof(line), f)) {
        char *save = NULL;
        char *tok;
        char *user;
        struct mfs_hubd_token *a;

        lineno++;
        tok = strtok_r(line, " \t\r\n", &save);
        if (!tok || tok[0] == '#')
            continue;
        user = strtok_r(NULL, " \t\r\n", &save);
        if (user && user[0] == '#')
            user = NULL;
        if (strncmp(tok, "hf_", 3) != 0 || strlen(tok) < 4) {
            rc = mfs_err_set(err, -EINVAL, "bad token on line %d of '%s': tokens start with"
                             " 'hf_'", lineno, file);
            break;
        }
        a = realloc(srv->tokens, (srv->ntokens + 1) * sizeof(*a));
        if (!a) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        srv->tokens = a;
        a[srv->ntokens].token = strdup(tok);
        a[srv->ntokens].user = strdup(user ? user : "user");
        srv->ntokens++;
    }
    fclose(f);
    return rc;
}

static void free_tokens(struct mfs_hubd_srv *srv)
{
    size_t i;

    for (i = 0; i < srv->ntokens; i++) {
        free(srv->tokens[i].token);
        free(srv->tokens[i].user);
    }
    free(srv->tokens);
}

/* Uploads and imports killed mid-way leave files in ROOT/tmp; a day-old
 * one belongs to nobody (signed upload URLs live MFS_HUBD_URL_TTL_S). */
static void sweep_tmp(const char *root)
{
    char dir[PATH_MAX];
    struct dirent *de;
    time_t now = time(NULL);
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/tmp", root);
    d = opendir(dir);
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat sb;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
            sb.st_mtime + MFS_HUBD_URL_TTL_S < now)
            unlink(path);
    }
    closedir(d);
}

/* How many connections to accept at once.  One thread and one fd each; a
 * client that sends its headers slowly holds one until the idle timeout,
 * so the limit must sit far above what a few slow clients can fill
 * (libmicrohttpd's default, FD_SETSIZE - 4, was filled by 1020 of them and
 * then every other client was refused).  Raises the soft fd limit to the
 * hard one first: serve runs this before any thread exists. */
static unsigned conn_limit(void)
{
    struct rlimit rl;
    rlim_t want = MFS_HUBD_CONN_MAX + 64;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1000;
    if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur >= want)
        return MFS_HUBD_CONN_MAX;
    return rl.rlim_cur > 128 ? (unsigned)(rl.rlim_cur - 64) : 64;
}

static int bind_addr(const char *host, unsigned port, struct sockaddr_storage *ss,
                     socklen_t *len, struct mfs_err *err)
{
    struct addrinfo hints = { 0 };
    struct addrinfo *ai = NULL;
    char ports[16];
    int rc;

    snprintf(ports, sizeof(ports), "%u", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, ports, &hints, &ai);
    if (rc != 0 || !ai)
        return mfs_err_set(err, -EINVAL, "cannot resolve host '%s': %s", host,
                           gai_strerror(rc));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int mfs_hubd_serve(const struct mfs_hubd_serve_opts *o, const sigset_t *stop,
                   struct mfs_err *err)
{
    struct mfs_hubd_srv *srv;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    unsigned char rnd[32];
    const char *host = o->host ? o->host : "127.0.0.1";
    unsigned flags;
    int rc;

    srv = calloc(1, sizeof(*srv));
    if (!srv)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&srv->asm_lock, NULL);
    srv->opts = o;
    srv->open_mode = o->token_file == NULL;
    if (o->token_file) {
        rc = load_tokens(srv, o->token_file, err);
        if (rc < 0)
            goto out_free_srv;
    }
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        rc = mfs_err_set(err, -EIO, "cannot get random bytes: %s", strerror(errno));
        goto out_free_srv;
    }
    mfs_hash_to_hex(rnd, sizeof(rnd), srv->secret);
    rc = mfs_hubd_store_open(o->root, &srv->store, err);
    if (rc < 0)
        goto out_free_srv;
    sweep_tmp(o->root);
    rc = bind_addr(host, o->port, &ss, &sslen, err);
    if (rc < 0)
        goto out_close_store;
    flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handler, srv,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, srv,
                         MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)MFS_HUBD_IDLE_TIMEOUT_S,
                         MHD_OPTION_CONNECTION_LIMIT, conn_limit(),
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
                         MHD_OPTION_END);
    if (!d) {
        rc = mfs_err_set(err, -EADDRINUSE, "cannot listen on %s:%u", host, o->port);
        goto out_close_store;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(srv->bind_url, sizeof(srv->bind_url), strchr(host, ':') ? "http://[%s]:%u"
             : "http://%s:%u", host, info ? (unsigned)info->port : o->port);
    printf("modelfs hub: serving %s\n", srv->bind_url);
    fflush(stdout);
    for (;;) {
        struct timespec ts = { 1, 0 };

        if (sigtimedwait(stop, NULL, &ts) >= 0)
            break;
    }
    atomic_store(&srv->stopping, true);
    MHD_stop_daemon(d);
    rc = 0;
out_close_store:
    mfs_hubd_store_close(&srv->store);
out_free_srv:
    free_tokens(srv);
    mfs_hubd_asm_release(srv);
    pthread_mutex_destroy(&srv->asm_lock);
    free(srv);
    return rc;
}

/* ---- bodies --------------------------------------------------------------------------- */

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int mfs_hubd_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
    unsigned char *o;
    uint32_t acc = 0;
    size_t bits = 0;
    size_t n = 0;
    size_t i;

    *out = NULL;
    *outlen = 0;
    while (len > 0 && s[len - 1] == '=')
        len--;
    o = malloc(len / 4 * 3 + 3);
    if (!o)
        return -ENOMEM;
    for (i = 0; i < len; i++) {
        int v = b64val(s[i]);

        if (v < 0) {
            free(o);
            return -EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits >= 6) {
        free(o);
        return -EINVAL;
    }
    *out = o;
    *outlen = n;
    return 0;
}

cJSON *mfs_hubd_body_json(struct mfs_hubd_req *r)
{
    cJSON *j;

    if (!r->body.data || r->body.len == 0) {
        mfs_hubd_reply_error(r, 400, NULL, "request body must be JSON");
        return NULL;
    }
    if (mfs_hubd_json_has_nul(r->body.data, r->body.len)) {
        mfs_hubd_reply_error(r, 400, NULL, "NUL characters are not allowed in JSON strings");
        return NULL;
    }
    j = cJSON_ParseWithLength(r->body.data, r->body.len);
    if (!j || (!cJSON_IsObject(j) && !cJSON_IsArray(j))) {
        cJSON_Delete(j);
        mfs_hubd_reply_error(r, 400, NULL, "request body is not valid JSON");
        return NULL;
    }
    return j;
}

bool mfs_hubd_json_has_nul(const char *p, size_t len)
{
    /* A raw NUL byte cuts a cJSON string just the same (and is never valid JSON). */
    return p && (memchr(p, 0, len) != NULL || memmem(p, len, "\\u0000", 6) != NULL);
}
