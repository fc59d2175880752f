/*
 * hub/upload.c - one Hub commit from a list of operations, and repo
 * creation: the client side of docs/hub-api.md sections 6 and 7 (contract
 * in hub/upload.h).
 *
 * The order of a commit, and why:
 *   1. check every argument before the first request, so a bad path never
 *      reaches the server and a refused call changes nothing;
 *   2. preupload (6.1) tells, per file, "lfs" or "regular" and the oid of
 *      the file now at that path; a file whose own hash (sha256 for LFS,
 *      git blob sha1 for regular, section 8) equals it is dropped;
 *   3. LFS objects go up before the commit names them (6.2-6.5): the batch
 *      API answers an href per object still missing, a basic PUT or the
 *      parts of a multipart transfer stream from the read callback;
 *   4. the NDJSON commit (6.6) names the parent, so a branch that moved is
 *      a 412 (-ESTALE) and nothing changes on the server.
 * Uploaded objects that no commit names are harmless: the server keeps
 * them unreferenced and the next try finds them stored.
 */
#include "hub/upload.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "hub/hub_int.h"

#define UP_BATCH 256                        /* files per preupload / LFS batch call (PY) */
#define UP_SAMPLE 512                       /* bytes of the preupload sample */
#define UP_HASH_BUF (1u << 20)              /* bytes per read while hashing */
#define UP_REGULAR_MAX (64u << 20)          /* largest file sent inline, bytes */
#define UP_PATH_MAX 1024                    /* bytes of a repo path */
#define UP_ATTRS_MAX (1u << 20)             /* largest .gitattributes sent to preupload */
#define LFS_TYPE "application/vnd.git-lfs+json"

struct up_file {
    const struct mfs_hub_op *op;            /* borrowed: the ADD op */
    bool lfs;                               /* preupload said "lfs" */
    bool skip;                              /* unchanged on the server: not sent */
    bool have_mode;                         /* preupload answered for it */
    char remote[65];                        /* preupload "oid", "" if none */
    char sha256[65];                        /* content sha256 ("" until known) */
    char sha1[41];                          /* git blob id ("" until known) */
    unsigned char *content;                 /* owned: a regular file's bytes */
};

struct up_ctx {
    struct mfs_hub *hub;                    /* borrowed */
    const char *repo_id;                    /* borrowed */
    const char *rev;                        /* borrowed, never NULL */
    const struct mfs_hub_commit_opts *opts; /* borrowed */
    struct up_file *files;                  /* owned, one per ADD op */
    size_t nfiles;                          /* entries in files */
    char *gitattributes;                    /* owned: a .gitattributes being committed, or NULL */
    uint64_t total;                         /* progress: bytes of files to send */
    uint64_t done;                          /* progress: bytes finished */
};

/* Progress of one streamed body: base + the bytes of the current attempt. */
struct up_sent {
    struct up_ctx *up;                      /* borrowed */
    const char *path;                       /* borrowed */
    uint64_t base;                          /* progress bytes before this body */
};

static void up_progress(struct up_ctx *up, const char *path, uint64_t done)
{
    if (up->opts->progress)
        up->opts->progress(up->opts->progress_ctx, path, done, up->total);
}

static void up_on_sent(void *ctx, uint64_t attempt_bytes)
{
    struct up_sent *s = ctx;

    up_progress(s->up, s->path, s->base + attempt_bytes);
}

/* True iff p names a file inside a repo: relative, no empty, ".", ".." or
 * ".git" component, no NUL/newline/backslash (docs/hub-api.md section 2). */
static bool up_path_ok(const char *p, bool folder)
{
    size_t n = p ? strlen(p) : 0;
    const char *c = p;

    if (folder)
        while (n > 1 && p[n - 1] == '/')
            n--;                            /* PY sends deletedFolder paths with a '/' */
    if (n == 0 || n >= UP_PATH_MAX || p[0] == '/')
        return false;
    while (c < p + n) {
        const char *slash = memchr(c, '/', (size_t)(p + n - c));
        size_t len = slash ? (size_t)(slash - c) : (size_t)(p + n - c);

        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && !memcmp(c, "..", 2)) ||
            (len == 4 && !memcmp(c, ".git", 4)))
            return false;
        if (memchr(c, '\\', len) || memchr(c, '\n', len) || memchr(c, '\r', len))
            return false;
        if (!slash)
            break;
        c = slash + 1;
        if (c == p + n)
            return false;
    }
    return true;
}

/* base64 of [p, p+len) as a NUL-terminated string; free() it.  NULL on ENOMEM. */
static char *up_base64(const unsigned char *p, size_t len)
{
    size_t out_len = 4 * ((len + 2) / 3) + 1;
    unsigned char *out = malloc(out_len);
    size_t i = 0;
    size_t o = 0;

    if (!out)
        return NULL;
    /* EVP_EncodeBlock takes an int length: feed it in pieces of whole triples. */
    while (i < len) {
        size_t k = len - i > (48u << 20) ? (48u << 20) : len - i;

        o += (size_t)EVP_EncodeBlock(out + o, p + i, (int)k);
        i += k;
    }
    out[o] = '\0';
    return (char *)out;
}

static int up_url_api(struct up_ctx *up, struct mfs_buf *url, const char *route)
{
    int rc = mfs_buf_printf(url, "%s/api/%s/%s/%s/", mfs_hub_endpoint(up->hub),
                            mfs_hub_api_type(up->hub), up->repo_id, route);

    if (rc == 0)
        rc = mfs_hub_buf_escape(url, up->rev, false);
    if (rc == 0 && up->opts->create_pr)
        rc = mfs_buf_puts(url, "?create_pr=1");
    return rc;
}

/* POST a JSON document (cJSON, consumed) to url with the token; the answer
 * parsed into *outp (free with cJSON_Delete) when outp is not NULL. */
static int up_post_json(struct up_ctx *up, const char *url, const char *what, cJSON *doc,
                        const char *type, bool auth, cJSON **outp, struct mfs_err *err)
{
    struct mfs_hub_send s = { 0 };
    struct mfs_buf resp = MFS_BUF_INIT;
    char *text = cJSON_PrintUnformatted(doc);
    int rc;

    if (outp)
        *outp = NULL;
    cJSON_Delete(doc);
    if (!text)
        return mfs_err_set(err, -ENOMEM, "hub: out of memory");
    s.method = "POST";
    s.url = url;
    s.what = what;
    s.content_type = type;
    s.accept = type;
    s.auth = auth;
    s.data = text;
    s.len = strlen(text);
    s.resp = &resp;
    rc = mfs_hub_send(up->hub, &s, err);
    if (rc == 0 && outp) {
        *outp = cJSON_ParseWithLength(resp.data ? resp.data : "", resp.len);
        if (!cJSON_IsObject(*outp)) {
            cJSON_Delete(*outp);
            *outp = NULL;
            rc = mfs_err_set(err, -EIO, "bad answer to '%s': not a JSON object", what);
        }
    }
    mfs_buf_release(&resp);
    free(text);
    return rc;
}

/* ---- 1. arguments ---------------------------------------------------------------------- */

static int up_check(const char *repo_id, const struct mfs_hub_op *ops, size_t n,
                    const struct mfs_hub_commit_opts *opts, struct mfs_err *err)
{
    size_t i;
    int rc = mfs_hub_check_repo_id(repo_id, err);

    if (rc < 0)
        return rc;
    if (!opts || !opts->summary || !*opts->summary)
        return mfs_err_set(err, -EINVAL, "cannot commit to '%s': empty summary", repo_id);
    if (opts->parent_commit) {
        size_t pl = strlen(opts->parent_commit);

        if (pl < 5 || pl > 40 || !mfs_hash_is_hex(opts->parent_commit, pl))
            return mfs_err_set(err, -EINVAL, "cannot commit to '%s': invalid parent '%s'",
                               repo_id, opts->parent_commit);
    }
    if (n > 0 && !ops)
        return mfs_err_set(err, -EINVAL, "cannot commit to '%s': no operations", repo_id);
    for (i = 0; i < n; i++) {
        const struct mfs_hub_op *op = &ops[i];

        if (!up_path_ok(op->path, op->kind == MFS_HUB_OP_DELETE_FOLDER))
            return mfs_err_set(err, -EINVAL, "cannot commit '%.200s': invalid path in repo",
                               op->path ? op->path : "");
        if (op->kind == MFS_HUB_OP_ADD) {
            if (!op->read && op->size > 0)
                return mfs_err_set(err, -EINVAL, "cannot commit '%s': no read callback",
                                   op->path);
            if ((op->sha256 && !mfs_hash_is_hex(op->sha256, 64)) ||
                (op->git_sha1 && !mfs_hash_is_hex(op->git_sha1, 40)))
                return mfs_err_set(err, -EINVAL, "cannot commit '%s': invalid hash given",
                                   op->path);
        } else if (op->kind != MFS_HUB_OP_DELETE_FILE && op->kind != MFS_HUB_OP_DELETE_FOLDER) {
            return mfs_err_set(err, -EINVAL, "cannot commit '%s': unknown operation",
                               op->path);
        }
    }
    return 0;
}

/* ---- 2. preupload and the unchanged check ---------------------------------------------- */

static int up_read(const struct mfs_hub_op *op, uint64_t off, size_t len, void *buf,
                   struct mfs_err *err)
{
    int rc;

    if (len == 0)
        return 0;
    rc = op->read(op->read_ctx, off, len, buf, err);
    if (rc < 0 && err && !err->msg[0])
        mfs_err_set(err, rc, "cannot read '%s'", op->path);
    return rc < 0 ? rc : 0;
}

static int up_preupload_batch(struct up_ctx *up, size_t from, size_t to, struct mfs_err *err)
{
    struct mfs_buf url = MFS_BUF_INIT;
    unsigned char sample[UP_SAMPLE];
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = doc ? cJSON_AddArrayToObject(doc, "files") : NULL;
    cJSON *out = NULL;
    const cJSON *files;
    const cJSON *e;
    size_t i;
    int rc = 0;

    /* A .gitattributes in this commit decides LFS for the others (JS sends it). */
    if (!arr || (up->gitattributes &&
                 !cJSON_AddStringToObject(doc, "gitAttributes", up->gitattributes))) {
        cJSON_Delete(doc);
        return mfs_err_set(err, -ENOMEM, "hub: out of memory");
    }
    for (i = from; i < to && rc == 0; i++) {
        const struct mfs_hub_op *op = up->files[i].op;
        size_t k = op->size < UP_SAMPLE ? (size_t)op->size : UP_SAMPLE;
        cJSON *f = cJSON_CreateObject();
        char *b64;

        rc = up_read(op, 0, k, sample, err);
        b64 = rc == 0 ? up_base64(sample, k) : NULL;
        if (rc == 0 && (!f || !b64 || !cJSON_AddStringToObject(f, "path", op->path) ||
                        !cJSON_AddStringToObject(f, "sample", b64) ||
                        !cJSON_AddNumberToObject(f, "size", (double)op->size)))
            rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        free(b64);
        if (rc == 0)
            cJSON_AddItemToArray(arr, f);
        else
            cJSON_Delete(f);
    }
    if (rc < 0) {
        cJSON_Delete(doc);
        goto out_release;
    }
    if (up_url_api(up, &url, "preupload") < 0) {
        cJSON_Delete(doc);
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_release;
    }
    rc = up_post_json(up, url.data, up->repo_id, doc, "application/json", true, &out, err);
    if (rc < 0)
        goto out_release;
    files = cJSON_GetObjectItemCaseSensitive(out, "files");
    if (!cJSON_IsArray(files)) {
        rc = mfs_err_set(err, -EIO, "bad preupload answer for '%s': no 'files'", up->repo_id);
        goto out_free_json;
    }
    cJSON_ArrayForEach(e, files) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "path");
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(e, "uploadMode");
        const cJSON *oid = cJSON_GetObjectItemCaseSensitive(e, "oid");
        struct up_file *f = NULL;

        if (!cJSON_IsString(p) || !cJSON_IsString(mode) ||
            (strcmp(mode->valuestring, "lfs") && strcmp(mode->valuestring, "regular"))) {
            rc = mfs_err_set(err, -EIO, "bad preupload answer for '%s': entry without path"
                             " or uploadMode", up->repo_id);
            goto out_free_json;
        }
        for (i = from; i < to && !f; i++)
            if (!up->files[i].have_mode && !strcmp(up->files[i].op->path, p->valuestring))
                f = &up->files[i];
        if (!f)
            continue;                       /* not asked for: ignore */
        f->have_mode = true;
        /* Empty files are regular whatever the server says (S3 rejects empty LFS objects). */
        f->lfs = !strcmp(mode->valuestring, "lfs") && f->op->size > 0;
        if (cJSON_IsString(oid) && (mfs_hash_is_hex(oid->valuestring, 64) ||
                                    mfs_hash_is_hex(oid->valuestring, 40)))
            snprintf(f->remote, sizeof(f->remote), "%s", oid->valuestring);
    }
    for (i = from; i < to; i++)
        if (!up->files[i].have_mode) {
            rc = mfs_err_set(err, -EIO, "bad preupload answer for '%s': nothing about '%.100s'",
                             up->repo_id, up->files[i].op->path);
            goto out_free_json;
        }
out_free_json:
    cJSON_Delete(out);
out_release:
    mfs_buf_release(&url);
    return rc;
}

/* One streaming pass of an LFS file's bytes for its sha256. */
static int up_hash_stream(struct up_file *f, struct mfs_err *err)
{
    const struct mfs_hub_op *op = f->op;
    struct mfs_hash *h = mfs_hash_new(MFS_HASH_SHA256);
    unsigned char *buf = malloc(UP_HASH_BUF);
    uint64_t off;
    int rc = 0;

    if (!h || !buf) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_free;
    }
    for (off = 0; off < op->size && rc == 0; ) {
        size_t k = op->size - off > UP_HASH_BUF ? UP_HASH_BUF : (size_t)(op->size - off);

        rc = up_read(op, off, k, buf, err);
        if (rc == 0)
            mfs_hash_update(h, buf, k);
        off += k;
    }
    if (rc == 0) {
        mfs_hash_final_hex(h, f->sha256);
        h = NULL;
    }
out_free:
    mfs_hash_free(h);
    free(buf);
    return rc;
}

/* Hash f as its mode needs and decide whether it changed; a regular file's
 * bytes are kept for the commit body. */
static int up_prepare(struct up_file *f, struct mfs_err *err)
{
    const struct mfs_hub_op *op = f->op;
    int rc;

    if (f->lfs) {
        if (op->sha256) {
            snprintf(f->sha256, sizeof(f->sha256), "%s", op->sha256);
        } else {
            rc = up_hash_stream(f, err);
            if (rc < 0)
                return rc;
        }
        f->skip = f->remote[0] && !strcmp(f->remote, f->sha256);
        return 0;
    }
    if (op->git_sha1 && f->remote[0] && !strcmp(f->remote, op->git_sha1)) {
        f->skip = true;                     /* known unchanged: not even read */
        return 0;
    }
    if (op->size > UP_REGULAR_MAX)
        return mfs_err_set(err, -EFBIG, "cannot commit '%s': %" PRIu64 " bytes is too large"
                           " for a regular (non-LFS) file", op->path, op->size);
    f->content = malloc(op->size ? (size_t)op->size : 1);
    if (!f->content)
        return mfs_err_set(err, -ENOMEM, "hub: out of memory");
    rc = up_read(op, 0, (size_t)op->size, f->content, err);
    if (rc < 0)
        return rc;
    mfs_hash_git_blob_hex(f->content, (size_t)op->size, f->sha1);
    f->skip = f->remote[0] && !strcmp(f->remote, f->sha1);
    if (f->skip) {
        free(f->content);
        f->content = NULL;
    }
    return 0;
}

/* ---- 3. LFS objects -------------------------------------------------------------------- */

static int up_put(struct up_ctx *up, const struct mfs_hub_op *op, const char *url, uint64_t off,
                  uint64_t len, uint64_t base, char *etag, size_t etag_cap, struct mfs_err *err)
{
    struct mfs_hub_send s = { 0 };
    struct up_sent sent = { up, op->path, base };
    int rc;

    s.method = "PUT";
    s.url = url;
    s.what = op->path;
    s.auth = false;                         /* pre-signed: never the token (section 6.3) */
    s.read = (mfs_hub_read_fn)op->read;
    s.read_ctx = op->read_ctx;
    s.off = off;
    s.size = len;
    s.sent = up_on_sent;
    s.sent_ctx = &sent;
    rc = mfs_hub_send(up->hub, &s, err);
    if (rc == 0 && etag)
        snprintf(etag, etag_cap, "%s", s.etag);
    return rc;
}

/* Section 6.4: PUT each part to its URL, then POST the ETags to href. */
static int up_multipart(struct up_ctx *up, struct up_file *f, const char *href,
                        const cJSON *header, struct mfs_err *err)
{
    const struct mfs_hub_op *op = f->op;
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(header, "chunk_size");
    const cJSON *item;
    unsigned long long chunk;
    uint64_t nparts;
    uint64_t keys = 0;
    uint64_t k;
    char *end = NULL;
    cJSON *doc = NULL;
    cJSON *parts;
    int rc = 0;

    chunk = cJSON_IsString(cs) ? strtoull(cs->valuestring, &end, 10) : 0;
    if (!end || *end || chunk == 0)
        return mfs_err_set(err, -EIO, "bad LFS answer for '%s': invalid chunk_size", op->path);
    nparts = (op->size + chunk - 1) / chunk;
    cJSON_ArrayForEach(item, header) {
        const char *s = item->string;

        if (s && *s && strspn(s, "0123456789") == strlen(s))
            keys++;
    }
    if (keys != nparts || nparts > 10000)
        return mfs_err_set(err, -EIO, "bad LFS answer for '%s': %" PRIu64 " part URLs for %"
                           PRIu64 " parts", op->path, keys, nparts);
    doc = cJSON_CreateObject();
    parts = cJSON_CreateArray();
    if (!doc || !parts || !cJSON_AddStringToObject(doc, "oid", f->sha256)) {
        cJSON_Delete(parts);
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_free_doc;
    }
    cJSON_AddItemToObject(doc, "parts", parts);
    for (k = 1; k <= nparts && rc == 0; k++) {
        const cJSON *url = NULL;
        uint64_t off = (k - 1) * chunk;
        uint64_t len = op->size - off < chunk ? op->size - off : chunk;
        char etag[160];
        cJSON *p;

        /* Keys are zero-padded decimals ("00001"): match by value, as JS does. */
        cJSON_ArrayForEach(item, header) {
            const char *s = item->string;

            if (s && *s && strspn(s, "0123456789") == strlen(s) &&
                strtoull(s, NULL, 10) == k)
                url = item;
        }
        if (!cJSON_IsString(url)) {
            rc = mfs_err_set(err, -EIO, "bad LFS answer for '%s': no URL for part %" PRIu64,
                             op->path, k);
            break;
        }
        rc = up_put(up, op, url->valuestring, off, len, up->done + off, etag, sizeof(etag),
                    err);
        if (rc < 0)
            break;
        if (!etag[0]) {
            rc = mfs_err_set(err, -EIO, "cannot upload '%s': part %" PRIu64 " answered"
                             " without an ETag", op->path, k);
            break;
        }
        p = cJSON_CreateObject();
        if (!p || !cJSON_AddNumberToObject(p, "partNumber", (double)k) ||
            !cJSON_AddStringToObject(p, "etag", etag)) {
            cJSON_Delete(p);
            rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
            break;
        }
        cJSON_AddItemToArray(parts, p);
    }
    if (rc < 0)
        goto out_free_doc;
    /* The completion goes to the pre-signed href: no token (section 6.4). */
    rc = up_post_json(up, href, op->path, doc, LFS_TYPE, false, NULL, err);
    doc = NULL;
out_free_doc:
    cJSON_Delete(doc);
    return rc;
}

/* One object of the batch answer: upload it (basic or multipart), then
 * verify when asked.  *sent is set when bytes went up. */
static int up_object(struct up_ctx *up, struct up_file *f, const cJSON *obj, bool *sent,
                     struct mfs_err *err)
{
    const struct mfs_hub_op *op = f->op;
    const cJSON *actions = cJSON_GetObjectItemCaseSensitive(obj, "actions");
    const cJSON *upload = cJSON_GetObjectItemCaseSensitive(actions, "upload");
    const cJSON *verify = cJSON_GetObjectItemCaseSensitive(actions, "verify");
    const cJSON *href = cJSON_GetObjectItemCaseSensitive(upload, "href");
    const cJSON *header = cJSON_GetObjectItemCaseSensitive(upload, "header");
    int rc;

    *sent = false;
    if (!upload)
        return 0;                           /* no actions: the server has it */
    if (!cJSON_IsObject(upload) || !cJSON_IsString(href) ||
        (header && !cJSON_IsObject(header)))
        return mfs_err_set(err, -EIO, "bad LFS answer for '%s': upload without href", op->path);
    if (header && cJSON_GetObjectItemCaseSensitive(header, "chunk_size"))
        rc = up_multipart(up, f, href->valuestring, header, err);
    else
        rc = up_put(up, op, href->valuestring, 0, op->size, up->done, NULL, 0, err);
    if (rc < 0)
        return rc;
    *sent = true;
    if (verify) {
        const cJSON *vh = cJSON_GetObjectItemCaseSensitive(verify, "href");
        cJSON *doc;

        if (!cJSON_IsString(vh))
            return mfs_err_set(err, -EIO, "bad LFS answer for '%s': verify without href",
                               op->path);
        doc = cJSON_CreateObject();
        if (!doc || !cJSON_AddStringToObject(doc, "oid", f->sha256) ||
            !cJSON_AddNumberToObject(doc, "size", (double)op->size)) {
            cJSON_Delete(doc);
            return mfs_err_set(err, -ENOMEM, "hub: out of memory");
        }
        /* PY sends its Hub headers; the token only ever goes to the endpoint. */
        rc = up_post_json(up, vh->valuestring, op->path, doc, LFS_TYPE,
                          mfs_hub_same_origin(up->hub, vh->valuestring), NULL, err);
        if (rc < 0)
            return mfs_err_wrap(err, rc, "verify failed");
    }
    return 0;
}

static int up_lfs_batch(struct up_ctx *up, struct up_file **batch, size_t n,
                        struct mfs_hub_commit_result *res, struct mfs_err *err)
{
    struct mfs_buf url = MFS_BUF_INIT;
    cJSON *doc = cJSON_CreateObject();
    cJSON *transfers = cJSON_CreateArray();
    cJSON *objs = cJSON_CreateArray();
    cJSON *out = NULL;
    const cJSON *answer;
    const cJSON *o;
    size_t i;
    int rc = 0;

    if (!doc || !transfers || !objs) {
        cJSON_Delete(transfers);
        cJSON_Delete(objs);
        rc = -ENOMEM;
        goto out_nomem;
    }
    cJSON_AddItemToObject(doc, "transfers", transfers);
    cJSON_AddItemToObject(doc, "objects", objs);
    if (!cJSON_AddStringToObject(doc, "operation", "upload") ||
        !cJSON_AddItemToArray(transfers, cJSON_CreateString("basic")) ||
        !cJSON_AddItemToArray(transfers, cJSON_CreateString("multipart")) ||
        !cJSON_AddStringToObject(doc, "hash_algo", "sha256"))
        goto out_nomem;
    if (!up->opts->create_pr) {
        cJSON *ref = cJSON_AddObjectToObject(doc, "ref");

        if (!ref || !cJSON_AddStringToObject(ref, "name", up->rev))
            goto out_nomem;
    }
    for (i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();

        if (!e || !cJSON_AddStringToObject(e, "oid", batch[i]->sha256) ||
            !cJSON_AddNumberToObject(e, "size", (double)batch[i]->op->size)) {
            cJSON_Delete(e);
            goto out_nomem;
        }
        cJSON_AddItemToArray(objs, e);
    }
    if (mfs_buf_printf(&url, "%s/%s%s.git/info/lfs/objects/batch", mfs_hub_endpoint(up->hub),
                       mfs_hub_web_prefix(up->hub), up->repo_id) < 0)
        goto out_nomem;
    rc = up_post_json(up, url.data, up->repo_id, doc, LFS_TYPE, true, &out, err);
    doc = NULL;
    if (rc < 0)
        goto out_release;
    answer = cJSON_GetObjectItemCaseSensitive(out, "objects");
    if (!cJSON_IsArray(answer)) {
        rc = mfs_err_set(err, -EIO, "bad LFS answer for '%s': no 'objects'", up->repo_id);
        goto out_release;
    }
    /* Every object we asked about must be answered, and nothing else. */
    for (i = 0; i < n && rc == 0; i++) {
        struct up_file *f = batch[i];
        const cJSON *mine = NULL;
        const cJSON *er;
        bool sent = false;

        cJSON_ArrayForEach(o, answer) {
            const cJSON *oid = cJSON_GetObjectItemCaseSensitive(o, "oid");

            if (cJSON_IsString(oid) && !strcmp(oid->valuestring, f->sha256))
                mine = o;
        }
        if (!mine) {
            rc = mfs_err_set(err, -EIO, "bad LFS answer for '%s': nothing about '%.100s'",
                             up->repo_id, f->op->path);
            break;
        }
        er = cJSON_GetObjectItemCaseSensitive(mine, "error");
        if (er) {
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(er, "message");
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(er, "code");

            rc = mfs_err_set(err, -EIO, "cannot upload '%s': LFS batch error %d: %.120s",
                             f->op->path, cJSON_IsNumber(code) ? code->valueint : 0,
                             cJSON_IsString(msg) ? msg->valuestring : "");
            break;
        }
        rc = up_object(up, f, mine, &sent, err);
        if (rc < 0)
            break;
        if (sent) {
            res->files_uploaded++;
            res->bytes_uploaded += f->op->size;
        }
        up->done += f->op->size;
        up_progress(up, f->op->path, up->done);
    }
    goto out_release;
out_nomem:
    rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
out_release:
    cJSON_Delete(doc);
    cJSON_Delete(out);
    mfs_buf_release(&url);
    return rc;
}

/* ---- 4. the commit --------------------------------------------------------------------- */

/* Append one NDJSON line {"key": key, "value": value} (value consumed). */
static int up_line(struct mfs_buf *b, const char *key, cJSON *value)
{
    cJSON *line = cJSON_CreateObject();
    char *text;
    int rc;

    if (!line || !value || !cJSON_AddStringToObject(line, "key", key)) {
        cJSON_Delete(line);
        cJSON_Delete(value);
        return -ENOMEM;
    }
    cJSON_AddItemToObject(line, "value", value);
    text = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    if (!text)
        return -ENOMEM;
    rc = mfs_buf_puts(b, text);
    if (rc == 0)
        rc = mfs_buf_puts(b, "\n");
    free(text);
    return rc;
}

static cJSON *up_value_path(const char *path)
{
    cJSON *v = cJSON_CreateObject();

    if (v && !cJSON_AddStringToObject(v, "path", path)) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

static int up_ndjson(struct up_ctx *up, const struct mfs_hub_op *ops, size_t n,
                     struct mfs_buf *b)
{
    const struct mfs_hub_commit_opts *o = up->opts;
    cJSON *v = cJSON_CreateObject();
    size_t fi = 0;
    size_t i;
    int rc;

    if (!v || !cJSON_AddStringToObject(v, "summary", o->summary) ||
        !cJSON_AddStringToObject(v, "description", o->description ? o->description : "") ||
        (o->parent_commit && !cJSON_AddStringToObject(v, "parentCommit", o->parent_commit))) {
        cJSON_Delete(v);
        return -ENOMEM;
    }
    rc = up_line(b, "header", v);
    for (i = 0; i < n && rc == 0; i++) {
        const struct mfs_hub_op *op = &ops[i];
        struct up_file *f;
        char *b64;

        if (op->kind == MFS_HUB_OP_DELETE_FILE) {
            rc = up_line(b, "deletedFile", up_value_path(op->path));
            continue;
        }
        if (op->kind == MFS_HUB_OP_DELETE_FOLDER) {
            rc = up_line(b, "deletedFolder", up_value_path(op->path));
            continue;
        }
        f = &up->files[fi++];
        if (f->skip)
            continue;
        v = up_value_path(op->path);
        if (!v)
            return -ENOMEM;
        if (f->lfs) {
            if (!cJSON_AddStringToObject(v, "algo", "sha256") ||
                !cJSON_AddStringToObject(v, "oid", f->sha256) ||
                !cJSON_AddNumberToObject(v, "size", (double)op->size)) {
                cJSON_Delete(v);
                return -ENOMEM;
            }
            rc = up_line(b, "lfsFile", v);
            continue;
        }
        b64 = up_base64(f->content, (size_t)op->size);
        if (!b64 || !cJSON_AddStringToObject(v, "content", b64) ||
            !cJSON_AddStringToObject(v, "encoding", "base64")) {
            free(b64);
            cJSON_Delete(v);
            return -ENOMEM;
        }
        free(b64);
        free(f->content);                   /* the line holds it now */
        f->content = NULL;
        rc = up_line(b, "file", v);
    }
    return rc;
}

/* Read the commit answer into res (section 6.6). */
static int up_commit_answer(struct up_ctx *up, const cJSON *out, struct mfs_hub_commit_result *res,
                            struct mfs_err *err)
{
    const cJSON *oid = cJSON_GetObjectItemCaseSensitive(out, "commitOid");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(out, "commitUrl");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(out, "pullRequestUrl");

    if (!cJSON_IsString(oid) || !mfs_hash_is_hex(oid->valuestring, 40))
        return mfs_err_set(err, -EIO, "bad commit answer for '%s': no 40-hex commitOid",
                           up->repo_id);
    memcpy(res->commit, oid->valuestring, 41);
    if (cJSON_IsString(url))
        snprintf(res->commit_url, sizeof(res->commit_url), "%s", url->valuestring);
    if (cJSON_IsString(pr)) {
        const char *d = strstr(pr->valuestring, "/discussions/");
        const char *num = d ? d + 13 : "";
        size_t digits = strspn(num, "0123456789");

        snprintf(res->pr_url, sizeof(res->pr_url), "%s", pr->valuestring);
        /* PY: ".*\/discussions/(\d+)$" gives refs/pr/N. */
        if (digits > 0 && digits < 10 && num[digits] == '\0')
            snprintf(res->pr_ref, sizeof(res->pr_ref), "refs/pr/%s", num);
    }
    if (up->opts->create_pr && !res->pr_ref[0])
        return mfs_err_set(err, -EIO, "bad commit answer for '%s': no pullRequestUrl",
                           up->repo_id);
    return 0;
}

static int up_commit(struct up_ctx *up, const struct mfs_hub_op *ops, size_t n,
                     struct mfs_hub_commit_result *res, struct mfs_err *err)
{
    struct mfs_hub_send s = { 0 };
    struct mfs_buf url = MFS_BUF_INIT;
    struct mfs_buf body = MFS_BUF_INIT;
    struct mfs_buf resp = MFS_BUF_INIT;
    cJSON *out = NULL;
    int rc;

    if (up_url_api(up, &url, "commit") < 0 || up_ndjson(up, ops, n, &body) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_release;
    }
    s.method = "POST";
    s.url = url.data;
    s.what = up->repo_id;
    s.content_type = "application/x-ndjson";
    s.accept = "application/json";
    s.auth = true;
    s.data = body.data;
    s.len = body.len;
    s.resp = &resp;
    rc = mfs_hub_send(up->hub, &s, err);
    if (rc < 0)
        goto out_release;
    out = cJSON_ParseWithLength(resp.data ? resp.data : "", resp.len);
    if (!cJSON_IsObject(out)) {
        rc = mfs_err_set(err, -EIO, "bad commit answer for '%s': not a JSON object",
                         up->repo_id);
        goto out_free_json;
    }
    rc = up_commit_answer(up, out, res, err);
    if (rc == 0)
        res->committed = true;
out_free_json:
    cJSON_Delete(out);
out_release:
    mfs_buf_release(&resp);
    mfs_buf_release(&body);
    mfs_buf_release(&url);
    return rc;
}

int mfs_hub_commit(struct mfs_hub *hub, const char *repo_id, const char *revision,
                   const struct mfs_hub_op *ops, size_t n, const struct mfs_hub_commit_opts *opts,
                   struct mfs_hub_commit_result *res, struct mfs_err *err)
{
    struct up_ctx up = { 0 };
    struct up_file **batch = NULL;
    size_t nbatch = 0;
    size_t ndeletes = 0;
    size_t nsend = 0;
    size_t i;
    int rc;

    memset(res, 0, sizeof(*res));
    mfs_err_clear(err);                     /* a success leaves no stale reason behind */
    rc = up_check(repo_id, ops, n, opts, err);
    if (rc < 0)
        return rc;
    up.hub = hub;
    up.repo_id = repo_id;
    up.rev = revision && *revision ? revision : "main";
    up.opts = opts;
    up.files = calloc(n ? n : 1, sizeof(*up.files));
    batch = calloc(n ? n : 1, sizeof(*batch));
    if (!up.files || !batch) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_free_files;
    }
    for (i = 0; i < n; i++) {
        if (ops[i].kind == MFS_HUB_OP_ADD)
            up.files[up.nfiles++].op = &ops[i];
        else
            ndeletes++;
    }
    for (i = 0; i < up.nfiles && rc == 0; i++) {
        const struct mfs_hub_op *op = up.files[i].op;

        if (strcmp(op->path, ".gitattributes") || op->size > UP_ATTRS_MAX)
            continue;
        free(up.gitattributes);
        up.gitattributes = calloc(1, (size_t)op->size + 1);
        if (!up.gitattributes)
            rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        else
            rc = up_read(op, 0, (size_t)op->size, up.gitattributes, err);
    }
    for (i = 0; i < up.nfiles && rc == 0; i += UP_BATCH)
        rc = up_preupload_batch(&up, i, i + UP_BATCH < up.nfiles ? i + UP_BATCH : up.nfiles,
                                err);
    for (i = 0; i < up.nfiles && rc == 0; i++)
        rc = up_prepare(&up.files[i], err);
    if (rc < 0)
        goto out_free_files;
    for (i = 0; i < up.nfiles; i++) {
        if (up.files[i].skip)
            continue;
        nsend++;
        up.total += up.files[i].op->size;
    }
    if (nsend == 0 && ndeletes == 0) {
        struct mfs_hub_repo_info info;

        /* Nothing changed: no commit, report the head (PY create_commit). */
        rc = mfs_hub_repo_info(hub, repo_id, up.rev, &info, err);
        if (rc == 0)
            memcpy(res->commit, info.commit, sizeof(res->commit));
        goto out_free_files;
    }
    for (i = 0; i < up.nfiles && rc == 0; i++) {
        struct up_file *f = &up.files[i];
        bool dup = false;
        size_t j;

        if (f->skip || !f->lfs)
            continue;
        /* Two paths with the same content: one object goes up once. */
        for (j = 0; j < i && !dup; j++)
            dup = !up.files[j].skip && up.files[j].lfs &&
                  !strcmp(up.files[j].sha256, f->sha256);
        if (dup) {
            up.done += f->op->size;
            continue;
        }
        batch[nbatch++] = f;
        if (nbatch == UP_BATCH) {
            rc = up_lfs_batch(&up, batch, nbatch, res, err);
            nbatch = 0;
        }
    }
    if (rc == 0 && nbatch > 0)
        rc = up_lfs_batch(&up, batch, nbatch, res, err);
    if (rc < 0)
        goto out_free_files;
    /* Regular files travel inside the commit body. */
    for (i = 0; i < up.nfiles; i++) {
        struct up_file *f = &up.files[i];

        if (f->skip || f->lfs)
            continue;
        res->files_uploaded++;
        res->bytes_uploaded += f->op->size;
    }
    rc = up_commit(&up, ops, n, res, err);
    if (rc == 0 && up.total > up.done) {
        up.done = up.total;
        up_progress(&up, "", up.done);
    }
out_free_files:
    if (rc < 0) {
        res->files_uploaded = 0;
        res->bytes_uploaded = 0;
        res->commit[0] = '\0';
    }
    for (i = 0; i < up.nfiles; i++)
        free(up.files[i].content);
    free(up.gitattributes);
    free(up.files);
    free(batch);
    return rc;
}

/* ---- repo creation --------------------------------------------------------------------- */

int mfs_hub_repo_create(struct mfs_hub *hub, const char *repo_id, bool is_private, bool exist_ok,
                        struct mfs_err *err)
{
    struct mfs_hub_commit_opts none = { 0 };
    struct up_ctx up = { 0 };
    struct mfs_buf url = MFS_BUF_INIT;
    const char *slash;
    cJSON *doc;
    char ns[128];
    int rc;

    mfs_err_clear(err);
    rc = mfs_hub_check_repo_id(repo_id, err);
    if (rc < 0)
        return rc;
    slash = strchr(repo_id, '/');
    if (!slash || (size_t)(slash - repo_id) >= sizeof(ns))
        return mfs_err_set(err, -EINVAL, "cannot create '%s': need \"namespace/name\"",
                           repo_id);
    memcpy(ns, repo_id, (size_t)(slash - repo_id));
    ns[slash - repo_id] = '\0';
    up.hub = hub;
    up.repo_id = repo_id;
    up.rev = "main";
    up.opts = &none;
    doc = cJSON_CreateObject();
    if (!doc || !cJSON_AddStringToObject(doc, "name", slash + 1) ||
        !cJSON_AddStringToObject(doc, "organization", ns) ||
        !cJSON_AddStringToObject(doc, "type", mfs_hub_web_prefix(hub)[0] ? "dataset" : "model")
        || !cJSON_AddStringToObject(doc, "visibility", is_private ? "private" : "public") ||
        !cJSON_AddBoolToObject(doc, "private", is_private) ||
        mfs_buf_printf(&url, "%s/api/repos/create", mfs_hub_endpoint(hub)) < 0) {
        cJSON_Delete(doc);
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_release;
    }
    rc = up_post_json(&up, url.data, repo_id, doc, "application/json", true, NULL, err);
    if (rc == -EEXIST && exist_ok) {
        mfs_err_clear(err);
        rc = 0;
    }
out_release:
    mfs_buf_release(&url);
    return rc;
}
