/*
 * tools/hubd/routes_upload.c - the write path of the local Hub
 * (hub-api.md section 6): preupload, the LFS batch API with basic and
 * multipart transfers to self-authorising signed URLs, verify, and the
 * NDJSON commit (with create_pr and the parentCommit 412).
 *
 * Uploaded bytes land in ROOT/tmp and are renamed into the store only
 * once their sha256 matches the oid they were announced with, so a lying
 * or broken upload never becomes a blob.
 *
 * Multipart: every part K is written straight to its place, offset
 * (K-1) * chunk_size, in the object's assembly file ROOT/tmp/assembly-OID,
 * and its length recorded in ROOT/tmp/part-OID-K; the completion checks
 * the parts, hashes the assembly file once and adopts it as the blob, so
 * no byte is copied after it arrived.  Part writers hold a shared flock(2)
 * on the assembly file, the completion an exclusive one while it renames
 * the file away to a private name, so no part write can reach a file once
 * it is being hashed (a writer that opened the old file re-checks the
 * path after locking and starts a new one).  Parts sent in order (as the
 * Python, JS and modelfs clients do) are hashed as they arrive, into the
 * upload's slot of srv->asms, so the completion only hashes what did not
 * come in order: a part that would change bytes already hashed (or being
 * hashed) resets the slot, and a failed part too.
 */
#include "tools/hubd/hubd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MFS_HUBD_HASH_BUF (4u << 20)          /* bytes per read when hashing an assembly */

/* Read the .gitattributes of commit, or NULL. */
static char *read_attrs(struct mfs_hubd_req *r, const char *commit)
{
    struct mfs_hubd_file f;
    char path[PATH_MAX];
    char *text = NULL;
    ssize_t n;
    int fd;

    if (mfs_hubd_file_get(r->srv->store, commit, ".gitattributes", &f, NULL) < 0)
        return NULL;
    if (!f.lfs && f.size < (1 << 20) &&
        mfs_hubd_blob_path(r->srv->store, f.sha256, path, sizeof(path)) == 0) {
        fd = open(path, O_RDONLY);
        text = fd >= 0 ? malloc(f.size + 1) : NULL;
        if (text) {
            n = pread(fd, text, f.size, 0);
            text[n > 0 ? n : 0] = '\0';
        }
        if (fd >= 0)
            close(fd);
    }
    mfs_hubd_file_release(&f);
    return text;
}

static char *strip_path(const char *p)
{
    char *s;
    size_t len;

    while (*p == '/' || (p[0] == '.' && p[1] == '/'))
        p += *p == '/' ? 1 : 2;
    s = strdup(p);
    if (!s)
        return NULL;
    len = strlen(s);
    while (len > 0 && s[len - 1] == '/')
        s[--len] = '\0';
    return s;
}

enum MHD_Result mfs_hubd_route_preupload(struct mfs_hubd_req *r, const char *type,
                                         const struct mfs_hubd_repo *repo, size_t from)
{
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    char *attrs = NULL;
    cJSON *body;
    cJSON *files;
    cJSON *ga;
    cJSON *f;
    cJSON *out;
    cJSON *arr;
    enum MHD_Result ret;
    size_t next;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "preupload takes POST");
    if (mfs_hubd_split_rev(r, repo, from, r->nseg, commit, &next, rev) < 0)
        return MHD_YES;
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    files = cJSON_GetObjectItemCaseSensitive(body, "files");
    if (!cJSON_IsArray(files)) {
        ret = mfs_hubd_reply_error(r, 400, NULL, "'files' must be an array");
        goto out_free_body;
    }
    cJSON_ArrayForEach(f, files) {
        cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size");
        char *path = cJSON_IsString(p) ? strip_path(p->valuestring) : NULL;
        bool ok = path && mfs_hubd_path_ok(path) && cJSON_IsNumber(sz) && sz->valuedouble >= 0;

        free(path);
        if (!ok) {
            ret = mfs_hubd_reply_error(r, 400, NULL, "invalid file entry: each needs a valid"
                                       " 'path' and a 'size'");
            goto out_free_body;
        }
    }
    ga = cJSON_GetObjectItemCaseSensitive(body, "gitAttributes");
    attrs = cJSON_IsString(ga) ? strdup(ga->valuestring) : read_attrs(r, commit);
    out = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(out, "files");
    cJSON_ArrayForEach(f, files) {
        cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        cJSON *sample = cJSON_GetObjectItemCaseSensitive(f, "sample");
        double size = cJSON_GetObjectItemCaseSensitive(f, "size")->valuedouble;
        char *path = strip_path(p->valuestring);
        struct mfs_hubd_file cur;
        unsigned char *bytes = NULL;
        size_t nbytes = 0;
        bool lfs;
        cJSON *e;

        if (!path)
            continue;
        if (cJSON_IsString(sample))
            mfs_hubd_b64_decode(sample->valuestring, strlen(sample->valuestring), &bytes,
                                &nbytes);
        /* hub-api.md section 6.1: size, a NUL in the sample, or a pattern;
         * empty files are always regular (S3 rejects empty LFS objects). */
        lfs = size > 0 && (size >= MFS_HUBD_LFS_MIN_SIZE || mfs_hubd_attr_is_lfs(attrs, path)
                           || (bytes && memchr(bytes, 0, nbytes)));
        if (!strcmp(path, ".gitattributes") || !strcmp(path, ".gitignore"))
            lfs = false;
        free(bytes);
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "path", p->valuestring);
        cJSON_AddStringToObject(e, "uploadMode", lfs ? "lfs" : "regular");
        cJSON_AddBoolToObject(e, "shouldIgnore", false);
        if (mfs_hubd_file_get(r->srv->store, commit, path, &cur, NULL) == 0)
            cJSON_AddStringToObject(e, "oid", cur.lfs ? cur.sha256 : cur.oid);
        mfs_hubd_file_release(&cur);
        cJSON_AddItemToArray(arr, e);
        free(path);
    }
    cJSON_AddStringToObject(out, "commitOid", commit);
    ret = mfs_hubd_reply_json(r, 200, out);
    (void)type;
out_free_body:
    free(attrs);
    cJSON_Delete(body);
    return ret;
}

/* ---- commit --------------------------------------------------------------------------- */

struct commit_parse {
    cJSON *keep;                            /* owns every parsed line (op paths point in) */
    struct mfs_hubd_op *ops;                /* operations, in order */
    char **paths;                           /* owned normalised paths, one per op */
    size_t nops;                            /* used */
    size_t maxops;                          /* allocated entries of ops and paths */
    const char *summary;                    /* borrowed from keep */
    const char *description;                /* borrowed from keep, may be NULL */
    const char *parent;                     /* borrowed from keep, may be NULL */
};

static void commit_parse_release(struct commit_parse *cp)
{
    size_t i;

    for (i = 0; i < cp->nops; i++)
        free(cp->paths[i]);
    free(cp->paths);
    free(cp->ops);
    cJSON_Delete(cp->keep);
}

/* Parse one NDJSON line into cp.  Returns 0 or a negative errno with the
 * reason in err. */
static int parse_line(struct mfs_hubd_req *r, struct commit_parse *cp, cJSON *line, bool first,
                      struct mfs_err *err)
{
    cJSON *key = cJSON_GetObjectItemCaseSensitive(line, "key");
    cJSON *val = cJSON_GetObjectItemCaseSensitive(line, "value");
    struct mfs_hubd_op *op;
    cJSON *p;
    int rc;

    if (!cJSON_IsString(key) || !cJSON_IsObject(val))
        return mfs_err_set(err, -EINVAL, "each line needs a string 'key' and an object 'value'");
    if (first != !strcmp(key->valuestring, "header"))
        return mfs_err_set(err, -EINVAL, "the first line, and only it, must be the header");
    if (first) {
        cJSON *s = cJSON_GetObjectItemCaseSensitive(val, "summary");
        cJSON *d = cJSON_GetObjectItemCaseSensitive(val, "description");
        cJSON *pc = cJSON_GetObjectItemCaseSensitive(val, "parentCommit");

        if (!cJSON_IsString(s))
            return mfs_err_set(err, -EINVAL, "the header needs a 'summary'");
        cp->summary = s->valuestring;
        cp->description = cJSON_IsString(d) ? d->valuestring : NULL;
        if (cJSON_IsString(pc)) {
            size_t pl = strlen(pc->valuestring);

            if (pl < 4 || pl > 40 || !mfs_hash_is_hex(pc->valuestring, pl))
                return mfs_err_set(err, -EINVAL, "invalid parentCommit '%s'", pc->valuestring);
            cp->parent = pc->valuestring;
        }
        return 0;
    }
    p = cJSON_GetObjectItemCaseSensitive(val, "path");
    if (!cJSON_IsString(p))
        return mfs_err_set(err, -EINVAL, "operation '%s' needs a 'path'", key->valuestring);
    if (cp->nops >= cp->maxops)
        return mfs_err_set(err, -EINVAL, "more operations than lines in the commit");
    op = &cp->ops[cp->nops];
    memset(op, 0, sizeof(*op));
    cp->paths[cp->nops] = strip_path(p->valuestring);
    if (!cp->paths[cp->nops])
        return mfs_err_set(err, -ENOMEM, "out of memory");
    op->path = cp->paths[cp->nops];
    cp->nops++;
    if (!mfs_hubd_path_ok(op->path))
        return mfs_err_set(err, -EINVAL, "invalid path in repo: '%s'", p->valuestring);
    if (!strcmp(key->valuestring, "file")) {
        cJSON *c = cJSON_GetObjectItemCaseSensitive(val, "content");
        cJSON *enc = cJSON_GetObjectItemCaseSensitive(val, "encoding");
        unsigned char *data = NULL;
        size_t len = 0;

        if (!cJSON_IsString(c))
            return mfs_err_set(err, -EINVAL, "file '%s' needs a 'content'", op->path);
        /* The Hub refuses regular blobs above 10 MiB (hub-api.md section 6.1);
         * checking before decoding also bounds what one line makes us hold. */
        if (strlen(c->valuestring) / 4 * 3 > MFS_HUBD_REGULAR_MAX + 3)
            return mfs_err_set(err, -EINVAL, "Your push was rejected because it contains files"
                               " larger than 10 MiB: '%s'. Please use Git LFS", op->path);
        if (!cJSON_IsString(enc) || !strcmp(enc->valuestring, "base64")) {
            if (mfs_hubd_b64_decode(c->valuestring, strlen(c->valuestring), &data, &len) < 0)
                return mfs_err_set(err, -EINVAL, "invalid base64 content for '%s'", op->path);
        } else if (!strcmp(enc->valuestring, "utf-8") || !strcmp(enc->valuestring, "utf8")) {
            len = strlen(c->valuestring);
            data = (unsigned char *)strdup(c->valuestring);
            if (!data)
                return mfs_err_set(err, -ENOMEM, "out of memory");
        } else {
            return mfs_err_set(err, -EINVAL, "unknown encoding '%s'", enc->valuestring);
        }
        if (len > MFS_HUBD_REGULAR_MAX) {
            free(data);
            return mfs_err_set(err, -EINVAL, "Your push was rejected because it contains files"
                               " larger than 10 MiB: '%s'. Please use Git LFS", op->path);
        }
        op->kind = MFS_HUBD_OP_ADD;
        op->size = len;
        rc = mfs_hubd_blob_put_mem(r->srv->store, data ? (const void *)data : "", len,
                                   op->sha256, op->oid, err);
        free(data);
        return rc;
    }
    if (!strcmp(key->valuestring, "lfsFile")) {
        cJSON *oid = cJSON_GetObjectItemCaseSensitive(val, "oid");
        cJSON *algo = cJSON_GetObjectItemCaseSensitive(val, "algo");
        cJSON *sz = cJSON_GetObjectItemCaseSensitive(val, "size");
        uint64_t have = 0;

        if (cJSON_IsString(algo) && strcmp(algo->valuestring, "sha256") &&
            strcmp(algo->valuestring, "sha_256"))
            return mfs_err_set(err, -EINVAL, "unsupported LFS algo '%s'", algo->valuestring);
        if (!cJSON_IsString(oid) || !mfs_hash_is_hex(oid->valuestring, 64))
            return mfs_err_set(err, -EINVAL, "lfsFile '%s' needs a sha256 'oid'", op->path);
        if (!mfs_hubd_blob_exists(r->srv->store, oid->valuestring, &have))
            return mfs_err_set(err, -EINVAL, "LFS object %s of '%s' was not uploaded",
                               oid->valuestring, op->path);
        if (cJSON_IsNumber(sz) && sz->valuedouble != (double)have)
            return mfs_err_set(err, -EINVAL, "LFS object %s has %" PRIu64 " bytes, not %.0f",
                               oid->valuestring, have, sz->valuedouble);
        op->kind = MFS_HUBD_OP_ADD;
        op->lfs = true;
        op->size = have;
        snprintf(op->sha256, sizeof(op->sha256), "%s", oid->valuestring);
        return 0;
    }
    if (!strcmp(key->valuestring, "deletedFile")) {
        op->kind = MFS_HUBD_OP_DELETE_FILE;
        return 0;
    }
    if (!strcmp(key->valuestring, "deletedFolder")) {
        op->kind = MFS_HUBD_OP_DELETE_FOLDER;
        return 0;
    }
    return mfs_err_set(err, -EINVAL, "unknown operation key '%s'", key->valuestring);
}

enum MHD_Result mfs_hubd_route_commit(struct mfs_hubd_req *r, const char *type,
                                      const struct mfs_hubd_repo *repo, size_t from)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct commit_parse cp = { 0 };
    struct mfs_hubd_commit_req req = { 0 };
    char *rev;
    char oid[41];
    char url[700];
    const char *s;
    const char *end;
    size_t maxops = 1;
    int lineno = 0;
    int pr = 0;
    int rc = 0;
    cJSON *o;
    enum MHD_Result ret;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "commit takes POST");
    /* The revision is everything after "commit/", encoded or raw. */
    {
        struct mfs_buf raw = MFS_BUF_INIT;
        size_t i;

        for (i = from; i < r->nseg; i++) {
            if (i > from)
                mfs_buf_puts(&raw, "/");
            mfs_buf_puts(&raw, r->seg[i]);
        }
        rev = raw.data ? mfs_hubd_decode(raw.data, raw.len, false) : NULL;
        mfs_buf_release(&raw);
    }
    if (!rev || !*rev) {
        free(rev);
        return mfs_hubd_reply_error(r, 404, "RevisionNotFound", "Invalid rev id");
    }
    if (!r->body.data || !r->body.len) {
        free(rev);
        return mfs_hubd_reply_error(r, 400, NULL, "empty commit body");
    }
    if (mfs_hubd_json_has_nul(r->body.data, r->body.len)) {
        free(rev);
        return mfs_hubd_reply_error(r, 400, NULL, "NUL characters are not allowed in JSON"
                                    " strings");
    }
    /* Count over the whole body: a raw NUL byte must not end the count early,
     * or the lines after it would overrun ops[] (every line is at most one op). */
    for (s = r->body.data; s < r->body.data + r->body.len; s++)
        maxops += *s == '\n';
    cp.keep = cJSON_CreateArray();
    cp.ops = calloc(maxops, sizeof(*cp.ops));
    cp.paths = calloc(maxops, sizeof(*cp.paths));
    cp.maxops = maxops;
    if (!cp.keep || !cp.ops || !cp.paths) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "out of memory");
        goto out_release;
    }
    for (s = r->body.data; s < r->body.data + r->body.len && rc == 0; s = end + 1) {
        const char *e2;
        cJSON *line;
        const char *after = NULL;

        end = memchr(s, '\n', (size_t)(r->body.data + r->body.len - s));
        if (!end)
            end = r->body.data + r->body.len;
        for (e2 = s; e2 < end && (*e2 == ' ' || *e2 == '\r' || *e2 == '\t'); e2++)
            ;
        if (e2 == end)
            continue;
        /* One JSON value per line: text after it is an error, not ignored. */
        line = cJSON_ParseWithLengthOpts(s, (size_t)(end - s), &after, false);
        for (; line && after < end; after++) {
            if (*after != ' ' && *after != '\r' && *after != '\t') {
                cJSON_Delete(line);
                line = NULL;
            }
        }
        if (!line) {
            rc = mfs_err_set(&err, -EINVAL, "line %d of the commit is not valid JSON",
                             lineno + 1);
            break;
        }
        cJSON_AddItemToArray(cp.keep, line);
        rc = parse_line(r, &cp, line, lineno == 0, &err);
        if (rc < 0)
            mfs_err_wrap(&err, rc, "line %d", lineno + 1);
        lineno++;
    }
    if (rc == 0 && lineno == 0)
        rc = mfs_err_set(&err, -EINVAL, "the commit has no header line");
    if (rc < 0) {
        ret = mfs_hubd_reply_errno(r, rc, NULL, &err);
        goto out_release;
    }
    req.rev = rev;
    req.create_pr = mfs_hubd_arg_bool(r, "create_pr");
    req.parent = cp.parent;
    req.title = cp.summary;
    req.message = cp.description;
    req.author = r->user[0] ? r->user : "user";
    req.ops = cp.ops;
    req.nops = cp.nops;
    rc = mfs_hubd_commit_create(r->srv->store, repo->id, &req, oid, &pr, &err);
    if (rc < 0) {
        ret = mfs_hubd_reply_errno(r, rc, strstr(err.msg, "doesn't exist") ? "EntryNotFound"
                                   : "RevisionNotFound", &err);
        goto out_release;
    }
    o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "success", true);
    cJSON_AddStringToObject(o, "commitOid", oid);
    snprintf(url, sizeof(url), "%s/%s%s/commit/%s", r->base, mfs_hubd_type_prefix(type),
             repo->name, oid);
    cJSON_AddStringToObject(o, "commitUrl", url);
    if (pr > 0) {
        snprintf(url, sizeof(url), "%s/%s%s/discussions/%d", r->base,
                 mfs_hubd_type_prefix(type), repo->name, pr);
        cJSON_AddStringToObject(o, "pullRequestUrl", url);
    }
    ret = mfs_hubd_reply_json(r, 200, o);
out_release:
    commit_parse_release(&cp);
    free(rev);
    return ret;
}

/* ---- LFS batch ------------------------------------------------------------------------ */

static void signed_url(struct mfs_hubd_req *r, struct mfs_buf *b, const char *route,
                       const char *oid, const char *tail)
{
    unsigned long long exp = (unsigned long long)time(NULL) + MFS_HUBD_URL_TTL_S;
    char what[128];
    char sig[65];

    snprintf(what, sizeof(what), "%s:%llu", oid, exp);
    mfs_hubd_sign(r->srv, what, sig);
    mfs_buf_printf(b, "%s/%s/%s%s?expires=%llu&sig=%s", r->base, route, oid, tail, exp, sig);
}

static cJSON *batch_object(struct mfs_hubd_req *r, cJSON *obj, bool upload)
{
    cJSON *oid = cJSON_GetObjectItemCaseSensitive(obj, "oid");
    cJSON *sz = cJSON_GetObjectItemCaseSensitive(obj, "size");
    cJSON *e = cJSON_CreateObject();
    struct mfs_buf url = MFS_BUF_INIT;
    uint64_t have = 0;
    uint64_t size;
    cJSON *actions;
    cJSON *up;

    cJSON_AddStringToObject(e, "oid", cJSON_IsString(oid) ? oid->valuestring : "");
    cJSON_AddNumberToObject(e, "size", cJSON_IsNumber(sz) ? sz->valuedouble : 0);
    if (!cJSON_IsString(oid) || !mfs_hash_is_hex(oid->valuestring, 64) || !cJSON_IsNumber(sz) ||
        sz->valuedouble < 0) {
        cJSON *er = cJSON_AddObjectToObject(e, "error");

        cJSON_AddNumberToObject(er, "code", 422);
        cJSON_AddStringToObject(er, "message", "invalid oid or size");
        return e;
    }
    /* Past what 10000 parts can hold the upload could never complete, and a
     * size near 2^64 made us sign billions of part URLs (memory, CPU). */
    if (sz->valuedouble > (double)MFS_HUBD_OBJECT_MAX) {
        cJSON *er = cJSON_AddObjectToObject(e, "error");

        cJSON_AddNumberToObject(er, "code", 422);
        cJSON_AddStringToObject(er, "message", "object too large");
        return e;
    }
    size = (uint64_t)sz->valuedouble;
    if (!upload) {
        if (!mfs_hubd_blob_exists(r->srv->store, oid->valuestring, &have)) {
            cJSON *er = cJSON_AddObjectToObject(e, "error");

            cJSON_AddNumberToObject(er, "code", 404);
            cJSON_AddStringToObject(er, "message", "Object does not exist");
            return e;
        }
        actions = cJSON_AddObjectToObject(e, "actions");
        up = cJSON_AddObjectToObject(actions, "download");
        signed_url(r, &url, "_lfs", oid->valuestring, "/object");
        cJSON_AddStringToObject(up, "href", url.data ? url.data : "");
        cJSON_AddNumberToObject(up, "expires_in", MFS_HUBD_URL_TTL_S);
        mfs_buf_release(&url);
        return e;
    }
    if (mfs_hubd_blob_exists(r->srv->store, oid->valuestring, &have) && have == size)
        return e;                           /* stored: no actions, the client skips it */
    cJSON_AddBoolToObject(e, "authenticated", true);
    actions = cJSON_AddObjectToObject(e, "actions");
    up = cJSON_AddObjectToObject(actions, "upload");
    signed_url(r, &url, "_lfs_upload", oid->valuestring, "");
    cJSON_AddStringToObject(up, "href", url.data ? url.data : "");
    mfs_buf_reset(&url);
    cJSON_AddNumberToObject(up, "expires_in", MFS_HUBD_URL_TTL_S);
    if (size >= MFS_HUBD_MULTIPART_MIN) {
        cJSON *h = cJSON_AddObjectToObject(up, "header");
        uint64_t parts = (size + MFS_HUBD_PART_SIZE - 1) / MFS_HUBD_PART_SIZE;
        uint64_t k;
        char num[32];

        snprintf(num, sizeof(num), "%u", MFS_HUBD_PART_SIZE);
        cJSON_AddStringToObject(h, "chunk_size", num);
        for (k = 1; k <= parts; k++) {
            char tail[32];

            snprintf(num, sizeof(num), "%05" PRIu64, k);
            snprintf(tail, sizeof(tail), "/%" PRIu64, k);
            mfs_buf_reset(&url);
            signed_url(r, &url, "_lfs_upload", oid->valuestring, tail);
            cJSON_AddStringToObject(h, num, url.data ? url.data : "");
        }
    }
    mfs_buf_reset(&url);
    up = cJSON_AddObjectToObject(actions, "verify");
    signed_url(r, &url, "_lfs_verify", oid->valuestring, "");
    cJSON_AddStringToObject(up, "href", url.data ? url.data : "");
    mfs_buf_release(&url);
    return e;
}

enum MHD_Result mfs_hubd_route_lfs_batch(struct mfs_hubd_req *r, const char *type,
                                         const char *name)
{
    struct mfs_hubd_repo repo;
    struct MHD_Response *resp;
    cJSON *body;
    cJSON *op;
    cJSON *algo;
    cJSON *objs;
    cJSON *obj;
    cJSON *out;
    cJSON *arr;
    char *text;
    bool upload;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "the LFS batch API takes POST");
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    op = cJSON_GetObjectItemCaseSensitive(body, "operation");
    upload = !cJSON_IsString(op) || strcmp(op->valuestring, "download");
    if (mfs_hubd_repo_access(r, type, name, !upload, upload, &repo) < 0) {
        cJSON_Delete(body);
        return MHD_YES;
    }
    algo = cJSON_GetObjectItemCaseSensitive(body, "hash_algo");
    objs = cJSON_GetObjectItemCaseSensitive(body, "objects");
    if (algo && (!cJSON_IsString(algo) || (strcmp(algo->valuestring, "sha256") &&
                                           strcmp(algo->valuestring, "sha_256")))) {
        cJSON_Delete(body);
        return mfs_hubd_reply_error(r, 409, NULL, "unsupported hash algorithm");
    }
    if (!cJSON_IsArray(objs) || (cJSON_IsString(op) && strcmp(op->valuestring, "upload") &&
                                 strcmp(op->valuestring, "download"))) {
        cJSON_Delete(body);
        return mfs_hubd_reply_error(r, 400, NULL, "need 'operation' upload or download and"
                                    " an 'objects' array");
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "transfer", "basic");
    arr = cJSON_AddArrayToObject(out, "objects");
    cJSON_ArrayForEach(obj, objs)
        cJSON_AddItemToArray(arr, batch_object(r, obj, upload));
    cJSON_AddStringToObject(out, "hash_algo", "sha256");
    cJSON_Delete(body);
    text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    resp = text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
           : NULL;
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/vnd.git-lfs+json");
    return mfs_hubd_reply(r, 200, resp);
}

/* ---- transfers ------------------------------------------------------------------------ */

static int cmp_part(const void *a, const void *b)
{
    long x = *(const long *)a;
    long y = *(const long *)b;

    return (x > y) - (x < y);
}

/* Open (creating when create) the assembly file of oid and lock it (op:
 * LOCK_SH or LOCK_EX), retrying when the path changed meanwhile (a
 * completion renamed it away).  Returns the fd, -ENOENT (none and not
 * create), or another negative errno. */
static int assembly_open(struct mfs_hubd_req *r, const char *oid, bool create, int op)
{
    char path[PATH_MAX];
    struct stat a;
    struct stat b;
    int tries;
    int fd;

    if (mfs_hubd_assembly_path(r->srv->store, oid, path, sizeof(path)) < 0)
        return -ENAMETOOLONG;
    for (tries = 0; tries < 8; tries++) {
        fd = open(path, create ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDWR | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        if (flock(fd, op) < 0) {
            close(fd);
            return -EIO;
        }
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            return fd;
        close(fd);                          /* renamed away while we waited: again */
        if (!create)
            return -ENOENT;
    }
    return -EAGAIN;
}

/* The slot of oid (under asm_lock); with make, a new one when none (a
 * free slot, else one not in use).  NULL when none. */
static struct mfs_hubd_asm *asm_find(struct mfs_hubd_srv *srv, const char *oid, bool make)
{
    struct mfs_hubd_asm *spare = NULL;
    size_t i;

    for (i = 0; i < MFS_HUBD_ASM_MAX; i++) {
        struct mfs_hubd_asm *a = &srv->asms[i];

        if (!strcmp(a->oid, oid))
            return a;
        if (!a->busy && (!spare || !a->oid[0]))
            spare = a;
    }
    if (!make || !spare)
        return NULL;
    mfs_hash_free(spare->h);
    memset(spare, 0, sizeof(*spare));
    snprintf(spare->oid, sizeof(spare->oid), "%s", oid);
    spare->gen = ++srv->asm_gen;
    return spare;
}

/* Forget what slot a hashed (under asm_lock). */
static void asm_reset(struct mfs_hubd_srv *srv, struct mfs_hubd_asm *a)
{
    mfs_hash_free(a->h);
    a->h = NULL;
    a->next = 0;
    a->busy = false;
    a->gen = ++srv->asm_gen;
}

/* A part PUT at r->up_off starts: hash it on the way in when it is the
 * next one in order. */
static void asm_part_start(struct mfs_hubd_req *r, const char *oid)
{
    struct mfs_hubd_srv *srv = r->srv;
    struct mfs_hubd_asm *a;

    pthread_mutex_lock(&srv->asm_lock);
    a = asm_find(srv, oid, true);
    if (a && r->up_off < a->next + (a->busy ? MFS_HUBD_PART_SIZE : 0) &&
        !(r->up_off == a->next && !a->busy))
        asm_reset(srv, a);                  /* it rewrites hashed bytes */
    if (a && r->up_off == a->next && !a->busy) {
        r->up_sha = a->h ? a->h : (a->next == 0 ? mfs_hash_new(MFS_HASH_SHA256) : NULL);
        a->h = NULL;
        if (r->up_sha) {
            a->busy = true;
            r->up_gen = a->gen;
        }
    }
    pthread_mutex_unlock(&srv->asm_lock);
}

/* The part PUT that hashed (r->up_sha) ends: ok, its bytes extend the
 * slot's hash; else the slot is reset. */
static void asm_part_end(struct mfs_hubd_req *r, bool ok)
{
    struct mfs_hubd_srv *srv = r->srv;
    struct mfs_hubd_asm *a;

    if (!r->up_part || !r->up_sha)
        return;
    pthread_mutex_lock(&srv->asm_lock);
    a = asm_find(srv, r->seg[1], false);
    if (a && a->gen == r->up_gen && a->busy) {
        if (ok) {
            a->h = r->up_sha;
            a->next = r->up_off + r->up_len;
            a->busy = false;
            r->up_sha = NULL;
        } else {
            asm_reset(srv, a);
        }
    }
    pthread_mutex_unlock(&srv->asm_lock);
    mfs_hash_free(r->up_sha);
    r->up_sha = NULL;
}

void mfs_hubd_part_abort(struct mfs_hubd_req *r)
{
    asm_part_end(r, false);
}

void mfs_hubd_asm_release(struct mfs_hubd_srv *srv)
{
    size_t i;

    for (i = 0; i < MFS_HUBD_ASM_MAX; i++) {
        mfs_hash_free(srv->asms[i].h);
        srv->asms[i].h = NULL;
    }
}

/* The completion takes oid's slot: the hash of [0, *next), or NULL. */
static struct mfs_hash *asm_take(struct mfs_hubd_req *r, const char *oid, uint64_t total,
                                 uint64_t *next)
{
    struct mfs_hubd_srv *srv = r->srv;
    struct mfs_hubd_asm *a;
    struct mfs_hash *h = NULL;

    *next = 0;
    pthread_mutex_lock(&srv->asm_lock);
    a = asm_find(srv, oid, false);
    if (a && !a->busy && a->h && a->next <= total) {
        h = a->h;
        *next = a->next;
        a->h = NULL;
    }
    if (a) {
        asm_reset(srv, a);
        a->oid[0] = '\0';
    }
    pthread_mutex_unlock(&srv->asm_lock);
    return h;
}

enum MHD_Result mfs_hubd_part_start(struct mfs_hubd_req *r)
{
    char part[PATH_MAX];
    char *end = NULL;
    unsigned long k = strtoul(r->seg[2], &end, 10);
    int fd;

    if (!end || *end || k < 1 || k > MFS_HUBD_PARTS_MAX)
        return mfs_hubd_reply_error(r, 400, NULL, "invalid part number '%s'", r->seg[2]);
    /* A part sent again: until it has all arrived, the old record is void. */
    if (mfs_hubd_part_path(r->srv->store, r->seg[1], (unsigned)k, part, sizeof(part)) < 0)
        return mfs_hubd_reply_error(r, 500, NULL, "hub root path too long");
    unlink(part);
    fd = assembly_open(r, r->seg[1], true, LOCK_SH);
    if (fd < 0)
        return mfs_hubd_reply_error(r, 500, NULL, "cannot stage an upload: %s", strerror(-fd));
    r->up_fd = fd;
    r->up_part = (unsigned)k;
    r->up_off = (uint64_t)(k - 1) * MFS_HUBD_PART_SIZE;
    asm_part_start(r, r->seg[1]);
    return MHD_YES;
}

/* The end of a part PUT: record its length; the ETag names the part. */
static enum MHD_Result part_done(struct mfs_hubd_req *r, const char *oid)
{
    struct MHD_Response *resp;
    char part[PATH_MAX];
    char tmp[PATH_MAX];
    char text[32];
    char etag[80];
    int n;
    int fd;

    /* Before the lock goes: a completion then finds the slot up to date. */
    asm_part_end(r, !r->up_oversize && !r->body_too_big);
    close(r->up_fd);                        /* drops the shared lock */
    r->up_fd = -1;
    if (r->up_oversize)
        return mfs_hubd_reply_error(r, 400, NULL, "part %u is larger than chunk_size (%u "
                                    "bytes)", r->up_part, MFS_HUBD_PART_SIZE);
    if (r->body_too_big)
        return mfs_hubd_reply_error(r, 507, NULL, "cannot write the upload to disk");
    mfs_hubd_part_path(r->srv->store, oid, r->up_part, part, sizeof(part));
    n = snprintf(text, sizeof(text), "%" PRIu64 "\n", r->up_len);
    fd = mfs_hubd_tmp_path(r->srv->store, "partlen", tmp, sizeof(tmp)) < 0 ? -1
         : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return mfs_hubd_reply_error(r, 500, NULL, "cannot keep part %u: %s", r->up_part,
                                    strerror(errno));
    if (write(fd, text, (size_t)n) != n || close(fd) < 0 || rename(tmp, part) < 0) {
        unlink(tmp);
        return mfs_hubd_reply_error(r, 507, NULL, "cannot keep part %u", r->up_part);
    }
    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    snprintf(etag, sizeof(etag), "\"%.16s-%u-%" PRIu64 "\"", oid, r->up_part, r->up_len);
    MHD_add_response_header(resp, "ETag", etag);
    return mfs_hubd_reply(r, 200, resp);
}

/* The recorded length of part k of oid: 0, or -ENOENT (never completed). */
static int part_len(struct mfs_hubd_req *r, const char *oid, long k, uint64_t *len)
{
    char part[PATH_MAX];
    char text[32];
    char *end = NULL;
    ssize_t n;
    int fd;

    mfs_hubd_part_path(r->srv->store, oid, (unsigned)k, part, sizeof(part));
    fd = open(part, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ENOENT;
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    *len = strtoull(text, &end, 10);
    return n > 0 && end != text && *end == '\n' ? 0 : -ENOENT;
}

/* Multipart completion: the parts must be 1..N, each chunk_size bytes but
 * the last; their assembly file is then the object (see the header). */
static enum MHD_Result complete_multipart(struct mfs_hubd_req *r, const char *oid)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hash *h = NULL;
    char tmp[PATH_MAX];
    char path[PATH_MAX];
    char part[PATH_MAX];
    char got[65];
    char *buf = NULL;
    long *nums = NULL;
    uint64_t total = 0;
    uint64_t len = 0;
    uint64_t off;
    size_t n = 0;
    size_t m = 0;
    size_t i;
    cJSON *body;
    cJSON *parts;
    cJSON *p;
    int fd = -1;
    enum MHD_Result ret;

    tmp[0] = '\0';
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    parts = cJSON_GetObjectItemCaseSensitive(body, "parts");
    if (!cJSON_IsArray(parts) || cJSON_GetArraySize(parts) < 1 ||
        cJSON_GetArraySize(parts) > MFS_HUBD_PARTS_MAX) {
        cJSON_Delete(body);
        return mfs_hubd_reply_error(r, 400, NULL, "'parts' must be a non-empty array");
    }
    nums = calloc((size_t)cJSON_GetArraySize(parts), sizeof(*nums));
    buf = malloc(MFS_HUBD_HASH_BUF);
    if (!nums || !buf) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "out of memory");
        goto out_free;
    }
    cJSON_ArrayForEach(p, parts) {
        cJSON *pn = cJSON_GetObjectItemCaseSensitive(p, "partNumber");

        if (!cJSON_IsNumber(pn) || pn->valuedouble < 1 || pn->valuedouble > MFS_HUBD_PARTS_MAX) {
            ret = mfs_hubd_reply_error(r, 400, NULL, "invalid partNumber");
            goto out_free;
        }
        nums[n++] = (long)pn->valuedouble;
    }
    qsort(nums, n, sizeof(*nums), cmp_part);
    for (i = 0; i < n; i++) {
        if (i > 0 && nums[i] == nums[i - 1])
            continue;
        if (nums[i] != (long)m + 1) {
            ret = mfs_hubd_reply_error(r, 400, NULL, "parts must be numbered 1 to N: no part "
                                       "%zu", m + 1);
            goto out_free;
        }
        nums[m++] = nums[i];
    }
    for (i = 0; i < m; i++) {
        if (part_len(r, oid, nums[i], &len) < 0) {
            ret = mfs_hubd_reply_error(r, 400, NULL, "part %ld of %s was not uploaded",
                                       nums[i], oid);
            goto out_free;
        }
        if (i + 1 < m && len != MFS_HUBD_PART_SIZE) {
            ret = mfs_hubd_reply_error(r, 400, NULL, "part %ld holds %" PRIu64 " bytes, not "
                                       "chunk_size (%u)", nums[i], len, MFS_HUBD_PART_SIZE);
            goto out_free;
        }
        total += len;
    }
    /* Exclusive: no part write is under way, none can reach it once renamed. */
    fd = assembly_open(r, oid, false, LOCK_EX);
    if (fd < 0) {
        ret = mfs_hubd_reply_error(r, fd == -ENOENT ? 400 : 500, NULL, "no parts of %s to "
                                   "assemble: %s", oid, strerror(-fd));
        goto out_free;
    }
    if (mfs_hubd_assembly_path(r->srv->store, oid, path, sizeof(path)) < 0 ||
        mfs_hubd_tmp_path(r->srv->store, "multipart", tmp, sizeof(tmp)) < 0 ||
        rename(path, tmp) < 0) {
        tmp[0] = '\0';
        ret = mfs_hubd_reply_error(r, 500, NULL, "cannot assemble an upload: %s",
                                   strerror(errno));
        goto out_close;
    }
    /* A longer file is left from an earlier try with more parts. */
    if (ftruncate(fd, (off_t)total) < 0) {
        ret = mfs_hubd_reply_error(r, 507, NULL, "cannot assemble an upload: %s",
                                   strerror(errno));
        goto out_unlink;
    }
    /* What came in order is hashed already: only the rest is read. */
    h = asm_take(r, oid, total, &off);
    if (!h)
        h = mfs_hash_new(MFS_HASH_SHA256);
    if (!h) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "out of memory");
        goto out_unlink;
    }
    while (off < total) {
        size_t want = total - off < MFS_HUBD_HASH_BUF ? (size_t)(total - off) : MFS_HUBD_HASH_BUF;
        ssize_t k = pread(fd, buf, want, (off_t)off);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            ret = mfs_hubd_reply_error(r, 500, NULL, "cannot read an upload: %s",
                                       k < 0 ? strerror(errno) : "short file");
            goto out_unlink;
        }
        mfs_hash_update(h, buf, (size_t)k);
        off += (uint64_t)k;
    }
    mfs_hash_final_hex(h, got);
    h = NULL;
    if (strcmp(got, oid)) {
        ret = mfs_hubd_reply_error(r, 400, NULL, "uploaded parts hash to %s, not %s", got, oid);
        goto out_unlink;
    }
    if (mfs_hubd_blob_adopt(r->srv->store, tmp, oid, &err) < 0) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "%s", err.msg);
        goto out_unlink;
    }
    tmp[0] = '\0';
    for (i = 0; i < m; i++) {
        mfs_hubd_part_path(r->srv->store, oid, (unsigned)nums[i], part, sizeof(part));
        unlink(part);
    }
    ret = mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
    goto out_close;

out_unlink:
    unlink(tmp);
out_close:
    close(fd);
out_free:
    mfs_hash_free(h);
    free(nums);
    free(buf);
    cJSON_Delete(body);
    return ret;
}

enum MHD_Result mfs_hubd_route_lfs_upload(struct mfs_hubd_req *r)
{
    struct mfs_err err = MFS_ERR_INIT;
    const char *oid = r->seg[1];
    char got[65];

    if (!mfs_hash_is_hex(oid, 64) || !mfs_hubd_sig_ok(r, oid))
        return mfs_hubd_reply_error(r, 403, NULL, "upload URL is not signed or has expired");
    if (!strcmp(r->method, "POST") && r->nseg == 2)
        return complete_multipart(r, oid);
    if (strcmp(r->method, "PUT") || r->up_fd < 0 || r->nseg > 3)
        return mfs_hubd_reply_error(r, 405, NULL, "LFS uploads take PUT");
    if (r->up_part)
        return part_done(r, oid);
    close(r->up_fd);
    r->up_fd = -1;
    mfs_hash_final_hex(r->up_sha, got);
    r->up_sha = NULL;
    if (r->body_too_big)
        return mfs_hubd_reply_error(r, 507, NULL, "cannot write the upload to disk");
    if (strcmp(got, oid))
        return mfs_hubd_reply_error(r, 400, NULL, "uploaded bytes hash to %s, not %s (%" PRIu64
                                    " bytes)", got, oid, r->up_len);
    if (mfs_hubd_blob_adopt(r->srv->store, r->up_tmp, oid, &err) < 0)
        return mfs_hubd_reply_error(r, 500, NULL, "%s", err.msg);
    r->up_tmp[0] = '\0';
    return mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
}

enum MHD_Result mfs_hubd_route_lfs_verify(struct mfs_hubd_req *r)
{
    const char *oid = r->seg[1];
    uint64_t have = 0;
    cJSON *body;
    cJSON *sz;
    bool ok;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "verify takes POST");
    if (!mfs_hash_is_hex(oid, 64) || !mfs_hubd_sig_ok(r, oid))
        return mfs_hubd_reply_error(r, 403, NULL, "verify URL is not signed or has expired");
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    sz = cJSON_GetObjectItemCaseSensitive(body, "size");
    ok = mfs_hubd_blob_exists(r->srv->store, oid, &have) &&
         (!cJSON_IsNumber(sz) || sz->valuedouble == (double)have);
    cJSON_Delete(body);
    if (!ok)
        return mfs_hubd_reply_error(r, 404, NULL, "LFS object %s is not stored with that size",
                                    oid);
    return mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
}
