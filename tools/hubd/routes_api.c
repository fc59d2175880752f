/*
 * tools/hubd/routes_api.c - the JSON API of the local Hub: repo info,
 * tree, paths-info, refs, commits (hub-api.md section 5), repo creation
 * and deletion, branches, tags, whoami (section 7) and validate-yaml
 * (section 6, step 0).  Writes of content live in routes_upload.c.
 */
#include "tools/hubd/hubd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TREE_PAGE_DEFAULT 1000              /* entries per tree page */
#define TREE_PAGE_MAX 100000                /* largest page a client may ask for */
#define LAST_COMMIT_WALK_MAX 200            /* commits walked for lastCommit */

static void iso_time(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;

    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

cJSON *mfs_hubd_file_json(const struct mfs_hubd_file *f)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "type", "file");
    cJSON_AddStringToObject(o, "oid", f->oid);
    cJSON_AddNumberToObject(o, "size", (double)f->size);
    cJSON_AddStringToObject(o, "path", f->path);
    if (f->lfs) {
        char ptr[256];
        cJSON *l = cJSON_AddObjectToObject(o, "lfs");

        cJSON_AddStringToObject(l, "oid", f->sha256);
        cJSON_AddNumberToObject(l, "size", (double)f->size);
        cJSON_AddNumberToObject(l, "pointerSize",
                                (double)mfs_hubd_lfs_pointer(f->sha256, f->size, ptr,
                                                             sizeof(ptr)));
    }
    return o;
}

/* Folder id: a digest of every (path, oid) below it; stable for equal trees. */
static void dir_oid(const struct mfs_hubd_file *files, size_t n, const char *dir, char oid[41])
{
    struct mfs_hash *h = mfs_hash_new(MFS_HASH_SHA1);
    size_t dlen = strlen(dir);
    size_t i;

    if (!h) {
        memset(oid, '0', 40);
        oid[40] = '\0';
        return;
    }
    mfs_hash_update(h, "tree ", 5);
    for (i = 0; i < n; i++) {
        if (strncmp(files[i].path, dir, dlen) || files[i].path[dlen] != '/')
            continue;
        mfs_hash_update(h, files[i].path + dlen, strlen(files[i].path + dlen) + 1);
        mfs_hash_update(h, files[i].oid, 40);
    }
    mfs_hash_final_hex(h, oid);
}

static cJSON *dir_json(const struct mfs_hubd_file *files, size_t n, const char *dir)
{
    cJSON *o = cJSON_CreateObject();
    char oid[41];

    dir_oid(files, n, dir, oid);
    cJSON_AddStringToObject(o, "type", "directory");
    cJSON_AddStringToObject(o, "oid", oid);
    cJSON_AddNumberToObject(o, "size", 0);
    cJSON_AddStringToObject(o, "path", dir);
    return o;
}

/* The oldest commit on the first-parent chain from commit that still has
 * path with the same oid (what the Hub calls lastCommit). */
static void add_last_commit(struct mfs_hubd_req *r, cJSON *entry, const char *commit,
                            const char *path, const char *oid)
{
    struct mfs_hubd_commit_info ci;
    char cur[41];
    int steps;
    char date[32];
    cJSON *lc;

    snprintf(cur, sizeof(cur), "%s", commit);
    for (steps = 0; oid && steps < LAST_COMMIT_WALK_MAX; steps++) {
        struct mfs_hubd_file pf;
        bool same;

        if (mfs_hubd_commit_get(r->srv->store, cur, &ci, NULL) < 0)
            break;
        if (!ci.parent[0]) {
            mfs_hubd_commit_info_release(&ci);
            break;
        }
        same = mfs_hubd_file_get(r->srv->store, ci.parent, path, &pf, NULL) == 0 &&
               !strcmp(pf.oid, oid);
        mfs_hubd_file_release(&pf);
        if (same)
            snprintf(cur, sizeof(cur), "%s", ci.parent);
        mfs_hubd_commit_info_release(&ci);
        if (!same)
            break;
    }
    if (mfs_hubd_commit_get(r->srv->store, cur, &ci, NULL) < 0)
        return;
    lc = cJSON_AddObjectToObject(entry, "lastCommit");
    cJSON_AddStringToObject(lc, "id", ci.oid);
    cJSON_AddStringToObject(lc, "title", ci.title);
    iso_time(ci.time, date);
    cJSON_AddStringToObject(lc, "date", date);
    mfs_hubd_commit_info_release(&ci);
    if (oid) {
        cJSON *sec = cJSON_AddObjectToObject(entry, "securityFileStatus");

        cJSON_AddStringToObject(sec, "status", "safe");
    }
}

/* ---- repo info ------------------------------------------------------------------------ */

/* Add the parameter counts of one safetensors blob to params (per dtype). */
static void count_params(struct mfs_hubd_req *r, const struct mfs_hubd_file *f, cJSON *params,
                         double *total)
{
    char path[PATH_MAX];
    unsigned char n8[8];
    uint64_t n = 0;
    char *hdr;
    cJSON *j;
    cJSON *t;
    int fd;
    int i;

    if (mfs_hubd_blob_path(r->srv->store, f->sha256, path, sizeof(path)) < 0)
        return;
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    if (pread(fd, n8, 8, 0) != 8) {
        close(fd);
        return;
    }
    for (i = 7; i >= 0; i--)
        n = (n << 8) | n8[i];
    if (n == 0 || n > 25000000 || n + 8 > f->size) {
        close(fd);
        return;
    }
    hdr = malloc(n);
    if (!hdr || pread(fd, hdr, n, 8) != (ssize_t)n) {
        free(hdr);
        close(fd);
        return;
    }
    close(fd);
    j = cJSON_ParseWithLength(hdr, n);
    free(hdr);
    cJSON_ArrayForEach(t, j) {
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
        cJSON *dim;
        cJSON *cur;
        double cnt = 1;

        if (!strcmp(t->string ? t->string : "", "__metadata__") || !cJSON_IsString(dt) ||
            !cJSON_IsArray(shape))
            continue;
        cJSON_ArrayForEach(dim, shape)
            cnt *= cJSON_IsNumber(dim) ? dim->valuedouble : 0;
        cur = cJSON_GetObjectItemCaseSensitive(params, dt->valuestring);
        if (cur)
            cJSON_SetNumberValue(cur, cur->valuedouble + cnt);
        else
            cJSON_AddNumberToObject(params, dt->valuestring, cnt);
        *total += cnt;
    }
    cJSON_Delete(j);
}

static enum MHD_Result route_info(struct mfs_hubd_req *r, const struct mfs_hubd_repo *repo,
                                  const char *commit)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_commit_info ci;
    struct mfs_hubd_file *files = NULL;
    char date[32];
    char id24[65];
    cJSON *o;
    cJSON *sib;
    cJSON *params;
    double total = 0;
    const char *slash;
    size_t n = 0;
    size_t i;
    int rc;

    rc = mfs_hubd_files_list(r->srv->store, commit, &files, &n, &err);
    if (rc < 0)
        return mfs_hubd_reply_errno(r, rc, NULL, &err);
    rc = mfs_hubd_commit_get(r->srv->store, commit, &ci, &err);
    if (rc < 0) {
        mfs_hubd_files_free(files, n);
        return mfs_hubd_reply_errno(r, rc, "RevisionNotFound", &err);
    }
    o = cJSON_CreateObject();
    mfs_hash_sha256_hex(repo->name, strlen(repo->name), id24);
    id24[24] = '\0';
    cJSON_AddStringToObject(o, "_id", id24);
    cJSON_AddStringToObject(o, "id", repo->name);
    if (!strcmp(repo->type, "model"))
        cJSON_AddStringToObject(o, "modelId", repo->name);
    slash = strchr(repo->name, '/');
    if (slash) {
        char author[MFS_HUBD_NAME_MAX];

        snprintf(author, sizeof(author), "%.*s", (int)(slash - repo->name), repo->name);
        cJSON_AddStringToObject(o, "author", author);
    }
    cJSON_AddStringToObject(o, "sha", commit);
    cJSON_AddBoolToObject(o, "private", repo->is_private);
    if (repo->gated[0])
        cJSON_AddStringToObject(o, "gated", repo->gated);
    else
        cJSON_AddFalseToObject(o, "gated");
    cJSON_AddFalseToObject(o, "disabled");
    cJSON_AddNumberToObject(o, "downloads", 0);
    cJSON_AddNumberToObject(o, "likes", 0);
    cJSON_AddArrayToObject(o, "tags");
    iso_time(repo->created, date);
    cJSON_AddStringToObject(o, "createdAt", date);
    iso_time(ci.time, date);
    cJSON_AddStringToObject(o, "lastModified", date);
    mfs_hubd_commit_info_release(&ci);
    sib = cJSON_AddArrayToObject(o, "siblings");
    params = cJSON_CreateObject();
    for (i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateObject();
        size_t plen = strlen(files[i].path);

        cJSON_AddStringToObject(s, "rfilename", files[i].path);
        cJSON_AddNumberToObject(s, "size", (double)files[i].size);
        cJSON_AddStringToObject(s, "blobId", files[i].oid);
        if (files[i].lfs) {
            char ptr[256];
            cJSON *l = cJSON_AddObjectToObject(s, "lfs");

            cJSON_AddStringToObject(l, "sha256", files[i].sha256);
            cJSON_AddNumberToObject(l, "size", (double)files[i].size);
            cJSON_AddNumberToObject(l, "pointerSize",
                                    (double)mfs_hubd_lfs_pointer(files[i].sha256,
                                                                 files[i].size, ptr,
                                                                 sizeof(ptr)));
        }
        cJSON_AddItemToArray(sib, s);
        if (plen > 12 && !strcmp(files[i].path + plen - 12, ".safetensors"))
            count_params(r, &files[i], params, &total);
    }
    if (total > 0) {
        cJSON *st = cJSON_AddObjectToObject(o, "safetensors");

        cJSON_AddItemToObject(st, "parameters", params);
        cJSON_AddNumberToObject(st, "total", total);
    } else {
        cJSON_Delete(params);
    }
    mfs_hubd_files_free(files, n);
    return mfs_hubd_reply_json(r, 200, o);
}

/* ---- tree and paths-info -------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct tree_item {
    const char *path;                       /* borrowed: a file path or a dirs[] entry */
    const struct mfs_hubd_file *file;       /* NULL for a folder */
};

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const struct tree_item *)a)->path, ((const struct tree_item *)b)->path);
}

static enum MHD_Result route_tree(struct mfs_hubd_req *r, const char *type,
                                  const struct mfs_hubd_repo *repo, size_t from)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_file *files = NULL;
    struct tree_item *items = NULL;
    char **dirs = NULL;
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    char *path = NULL;
    char *arg;
    bool recursive = mfs_hubd_arg_bool(r, "recursive");
    bool expand = mfs_hubd_arg_bool(r, "expand");
    unsigned long long limit = TREE_PAGE_DEFAULT;
    unsigned long long cursor = 0;
    size_t n = 0;
    size_t ndirs = 0;
    size_t nitems = 0;
    size_t plen = 0;
    size_t maxdirs = 0;
    const char *s;
    size_t i;
    size_t next;
    bool found;
    enum MHD_Result ret;
    cJSON *arr;
    int rc;

    if (mfs_hubd_split_rev(r, repo, from, r->nseg, commit, &next, rev) < 0)
        return MHD_YES;
    if (next < r->nseg) {
        path = mfs_hubd_join_path(r, next, r->nseg);
        if (!path)
            return mfs_hubd_reply_error(r, 400, NULL, "invalid path in '%s'", r->url);
        plen = strlen(path);
    }
    arg = mfs_hubd_arg(r, "limit");
    if (arg) {
        char *end = NULL;

        limit = strtoull(arg, &end, 10);
        if (!end || *end || limit == 0)
            limit = TREE_PAGE_DEFAULT;
        /* Bounded so that cursor + limit cannot wrap (an empty page, a loop). */
        if (limit > TREE_PAGE_MAX)
            limit = TREE_PAGE_MAX;
        free(arg);
    }
    arg = mfs_hubd_arg(r, "cursor");
    if (arg) {
        char *end = NULL;

        cursor = strtoull(arg, &end, 10);
        if (!end || *end) {
            free(arg);
            ret = mfs_hubd_reply_error(r, 400, NULL, "invalid cursor");
            goto out_free;
        }
        free(arg);
    }
    rc = mfs_hubd_files_list(r->srv->store, commit, &files, &n, &err);
    if (rc < 0) {
        ret = mfs_hubd_reply_errno(r, rc, NULL, &err);
        goto out_free;
    }
    /* One folder entry per '/' at most: deep trees must not lose folders. */
    for (i = 0; i < n; i++)
        for (s = files[i].path; (s = strchr(s, '/')) != NULL; s++)
            maxdirs++;
    if (cursor > n + maxdirs)
        cursor = n + maxdirs;
    /* Files plus every distinct folder: a deep path adds one folder per level. */
    items = calloc(n + maxdirs + 1, sizeof(*items));
    dirs = calloc(maxdirs + 1, sizeof(*dirs));
    if (!items || !dirs) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "out of memory");
        goto out_free;
    }
    found = path == NULL;
    for (i = 0; i < n; i++) {
        const char *rest;
        const char *sl;

        if (path && (strncmp(files[i].path, path, plen) || files[i].path[plen] != '/'))
            continue;
        found = true;
        rest = files[i].path + (path ? plen + 1 : 0);
        sl = strchr(rest, '/');
        if (!sl) {
            items[nitems].path = files[i].path;
            items[nitems++].file = &files[i];
            continue;
        }
        /* Every folder between the listed one and the file. */
        while (sl && ndirs < maxdirs) {
            dirs[ndirs] = strndup(files[i].path, (size_t)(sl - files[i].path));
            if (dirs[ndirs])
                ndirs++;
            if (!recursive)
                break;
            sl = strchr(sl + 1, '/');
        }
        if (recursive) {
            items[nitems].path = files[i].path;
            items[nitems++].file = &files[i];
        }
    }
    if (!found) {
        ret = mfs_hubd_reply_error_h(r, 404, "EntryNotFound", "X-Repo-Commit", commit,
                                     "Entry not found: folder '%s'", path);
        goto out_free;
    }
    qsort(dirs, ndirs, sizeof(*dirs), cmp_str);
    for (i = 0; i < ndirs; i++) {
        if (i > 0 && !strcmp(dirs[i], dirs[i - 1]))
            continue;
        items[nitems].path = dirs[i];
        items[nitems++].file = NULL;
    }
    qsort(items, nitems, sizeof(*items), cmp_item);
    arr = cJSON_CreateArray();
    for (i = (size_t)(cursor < nitems ? cursor : nitems); i < nitems && i < cursor + limit;
         i++) {
        cJSON *e = items[i].file ? mfs_hubd_file_json(items[i].file)
                   : dir_json(files, n, items[i].path);

        if (expand)
            add_last_commit(r, e, commit, items[i].path,
                            items[i].file ? items[i].file->oid : NULL);
        cJSON_AddItemToArray(arr, e);
    }
    if (cursor + limit < nitems) {
        struct mfs_buf link = MFS_BUF_INIT;
        struct MHD_Response *resp;
        char *text = cJSON_PrintUnformatted(arr);

        cJSON_Delete(arr);
        mfs_buf_printf(&link, "<%s/api/%ss/%s/tree/", r->base, type, repo->name);
        mfs_hubd_encode(&link, rev, false);
        if (path) {
            mfs_buf_puts(&link, "/");
            mfs_hubd_encode(&link, path, true);
        }
        mfs_buf_printf(&link, "?recursive=%s&expand=%s&limit=%llu&cursor=%llu>; rel=\"next\"",
                       recursive ? "true" : "false", expand ? "true" : "false", limit,
                       cursor + limit);
        resp = text ? MHD_create_response_from_buffer(strlen(text), text,
                                                      MHD_RESPMEM_MUST_FREE) : NULL;
        if (!resp) {
            free(text);
            mfs_buf_release(&link);
            ret = MHD_NO;
            goto out_free;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
        MHD_add_response_header(resp, "Link", link.data);
        mfs_buf_release(&link);
        ret = mfs_hubd_reply(r, 200, resp);
    } else {
        ret = mfs_hubd_reply_json(r, 200, arr);
    }
out_free:
    for (i = 0; i < ndirs; i++)
        free(dirs[i]);
    free(dirs);
    free(items);
    mfs_hubd_files_free(files, n);
    free(path);
    return ret;
}

/* Append the form values of key ("paths=a&paths=b") to arr as strings. */
static void form_values(const char *body, size_t len, const char *key, cJSON *arr,
                        bool *expand)
{
    size_t klen = strlen(key);
    size_t i = 0;

    while (i < len) {
        size_t j = i;
        const char *eq;
        char *val;

        while (j < len && body[j] != '&')
            j++;
        eq = memchr(body + i, '=', j - i);
        if (eq) {
            size_t nlen = (size_t)(eq - (body + i));
            bool is_key = (nlen == klen && !memcmp(body + i, key, klen)) ||
                          (nlen == klen + 6 && !memcmp(body + i, key, klen) &&
                           !memcmp(body + i + klen, "%5B%5D", 6));

            val = mfs_hubd_decode(eq + 1, (size_t)(body + j - eq - 1), true);
            if (val && is_key)
                cJSON_AddItemToArray(arr, cJSON_CreateString(val));
            else if (val && nlen == 6 && !memcmp(body + i, "expand", 6))
                *expand = !strcmp(val, "1") || !strcasecmp(val, "true");
            free(val);
        }
        i = j + 1;
    }
}

static enum MHD_Result route_paths_info(struct mfs_hubd_req *r,
                                        const struct mfs_hubd_repo *repo, size_t from)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_file *files = NULL;
    const char *ctype = mfs_hubd_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    cJSON *paths = NULL;
    cJSON *body = NULL;
    cJSON *out;
    cJSON *p;
    bool expand = false;
    enum MHD_Result ret;
    size_t next;
    size_t n = 0;
    int rc;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "paths-info takes POST");
    if (mfs_hubd_split_rev(r, repo, from, r->nseg, commit, &next, rev) < 0)
        return MHD_YES;
    /* JS sends JSON, PY a form (hub-api.md section 5.3). */
    if (ctype && !strncasecmp(ctype, "application/json", 16)) {
        body = mfs_hubd_body_json(r);
        if (!body)
            return MHD_YES;
        paths = cJSON_GetObjectItemCaseSensitive(body, "paths");
        expand = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "expand"));
    } else {
        body = cJSON_CreateArray();
        paths = body;
        if (r->body.data)
            form_values(r->body.data, r->body.len, "paths", paths, &expand);
    }
    rc = cJSON_IsArray(paths) ? 0 : -EINVAL;
    cJSON_ArrayForEach(p, paths)
        rc = cJSON_IsString(p) ? rc : -EINVAL;
    if (rc < 0) {
        ret = mfs_hubd_reply_error(r, 400, NULL, "'paths' must be an array of strings");
        goto out_free_body;
    }
    rc = mfs_hubd_files_list(r->srv->store, commit, &files, &n, &err);
    if (rc < 0) {
        ret = mfs_hubd_reply_errno(r, rc, NULL, &err);
        goto out_free_body;
    }
    out = cJSON_CreateArray();
    cJSON_ArrayForEach(p, paths) {
        char want[1100];
        size_t wl;
        size_t i;
        cJSON *e = NULL;

        snprintf(want, sizeof(want), "%s", p->valuestring[0] == '/' ? p->valuestring + 1
                 : p->valuestring);
        wl = strlen(want);
        while (wl > 0 && want[wl - 1] == '/')
            want[--wl] = '\0';
        if (!wl || !mfs_hubd_path_ok(want))
            continue;                       /* missing paths are silently omitted */
        for (i = 0; i < n && !e; i++) {
            if (!strcmp(files[i].path, want)) {
                e = mfs_hubd_file_json(&files[i]);
                if (expand)
                    add_last_commit(r, e, commit, files[i].path, files[i].oid);
            } else if (!strncmp(files[i].path, want, wl) && files[i].path[wl] == '/') {
                e = dir_json(files, n, want);
                if (expand)
                    add_last_commit(r, e, commit, want, NULL);
            }
        }
        if (e)
            cJSON_AddItemToArray(out, e);
    }
    mfs_hubd_files_free(files, n);
    ret = mfs_hubd_reply_json(r, 200, out);
out_free_body:
    cJSON_Delete(body);
    return ret;
}

/* ---- refs, commits -------------------------------------------------------------------- */

static enum MHD_Result route_refs(struct mfs_hubd_req *r, const struct mfs_hubd_repo *repo)
{
    struct mfs_err err = MFS_ERR_INIT;
    char **names = NULL;
    char **commits = NULL;
    size_t n = 0;
    size_t i;
    cJSON *o;
    cJSON *br;
    cJSON *cv;
    cJSON *tg;
    cJSON *pr;
    int rc;

    rc = mfs_hubd_refs_list(r->srv->store, repo->id, &names, &commits, &n, &err);
    if (rc < 0)
        return mfs_hubd_reply_errno(r, rc, NULL, &err);
    o = cJSON_CreateObject();
    br = cJSON_AddArrayToObject(o, "branches");
    cv = cJSON_AddArrayToObject(o, "converts");
    tg = cJSON_AddArrayToObject(o, "tags");
    pr = cJSON_AddArrayToObject(o, "pullRequests");
    for (i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON *to = NULL;
        const char *name = names[i];

        if (!strncmp(name, "refs/heads/", 11)) {
            to = br;
            name += 11;
        } else if (!strncmp(name, "refs/tags/", 10)) {
            to = tg;
            name += 10;
        } else if (!strncmp(name, "refs/convert/", 13)) {
            to = cv;
            name += 13;
        } else if (!strncmp(name, "refs/pr/", 8)) {
            to = pr;
        }
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddStringToObject(e, "ref", names[i]);
        cJSON_AddStringToObject(e, "targetCommit", commits[i]);
        if (to)
            cJSON_AddItemToArray(to, e);
        else
            cJSON_Delete(e);
        free(names[i]);
        free(commits[i]);
    }
    free(names);
    free(commits);
    return mfs_hubd_reply_json(r, 200, o);
}

static enum MHD_Result route_commits(struct mfs_hubd_req *r, const char *type,
                                     const struct mfs_hubd_repo *repo, size_t from)
{
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    char cur[41];
    unsigned long long limit = 50;
    unsigned long long cursor = 0;
    unsigned long long idx = 0;
    size_t next;
    char *arg;
    cJSON *arr;
    bool more = false;

    if (mfs_hubd_split_rev(r, repo, from, r->nseg, commit, &next, rev) < 0)
        return MHD_YES;
    arg = mfs_hubd_arg(r, "limit");
    if (arg) {
        limit = strtoull(arg, NULL, 10);
        if (limit == 0)
            limit = 50;
        free(arg);
    }
    arg = mfs_hubd_arg(r, "cursor");
    if (arg) {
        cursor = strtoull(arg, NULL, 10);
        free(arg);
    }
    arr = cJSON_CreateArray();
    snprintf(cur, sizeof(cur), "%s", commit);
    while (cur[0]) {
        struct mfs_hubd_commit_info ci;

        if (mfs_hubd_commit_get(r->srv->store, cur, &ci, NULL) < 0)
            break;
        if (idx >= cursor + limit) {
            more = true;
            mfs_hubd_commit_info_release(&ci);
            break;
        }
        if (idx >= cursor) {
            cJSON *e = cJSON_CreateObject();
            cJSON *au = cJSON_AddArrayToObject(e, "authors");
            cJSON *a = cJSON_CreateObject();
            char date[32];

            cJSON_AddStringToObject(e, "id", ci.oid);
            cJSON_AddStringToObject(a, "user", ci.author);
            cJSON_AddItemToArray(au, a);
            iso_time(ci.time, date);
            cJSON_AddStringToObject(e, "date", date);
            cJSON_AddStringToObject(e, "title", ci.title);
            cJSON_AddStringToObject(e, "message", ci.message);
            cJSON_AddItemToArray(arr, e);
        }
        idx++;
        snprintf(cur, sizeof(cur), "%s", ci.parent);
        mfs_hubd_commit_info_release(&ci);
    }
    if (more) {
        struct mfs_buf link = MFS_BUF_INIT;
        struct MHD_Response *resp;
        char *text = cJSON_PrintUnformatted(arr);

        cJSON_Delete(arr);
        mfs_buf_printf(&link, "<%s/api/%ss/%s/commits/", r->base, type, repo->name);
        mfs_hubd_encode(&link, rev, false);
        mfs_buf_printf(&link, "?limit=%llu&cursor=%llu>; rel=\"next\"", limit, cursor + limit);
        resp = text ? MHD_create_response_from_buffer(strlen(text), text,
                                                      MHD_RESPMEM_MUST_FREE) : NULL;
        if (!resp) {
            free(text);
            mfs_buf_release(&link);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json; charset=utf-8");
        MHD_add_response_header(resp, "Link", link.data);
        mfs_buf_release(&link);
        return mfs_hubd_reply(r, 200, resp);
    }
    return mfs_hubd_reply_json(r, 200, arr);
}

/* ---- branches and tags ---------------------------------------------------------------- */

static bool ref_name_ok(const char *name)
{
    return name && *name && strncmp(name, "refs/", 5) && strcmp(name, "HEAD") &&
           mfs_hubd_path_ok(name) && strlen(name) < MFS_HUBD_REF_MAX - 16 &&
           !strpbrk(name, " ~^:?*[\\");
}

static enum MHD_Result route_branch(struct mfs_hubd_req *r, const struct mfs_hubd_repo *repo,
                                    size_t from)
{
    struct mfs_err err = MFS_ERR_INIT;
    char ref[MFS_HUBD_REF_MAX];
    char commit[41];
    char *name = mfs_hubd_join_path(r, from, r->nseg);
    enum MHD_Result ret;
    int rc;

    if (!ref_name_ok(name)) {
        free(name);
        return mfs_hubd_reply_error(r, 400, NULL, "Invalid reference for a branch");
    }
    snprintf(ref, sizeof(ref), "refs/heads/%s", name);
    if (!strcmp(r->method, "DELETE")) {
        if (!strcmp(name, "main"))
            ret = mfs_hubd_reply_error(r, 403, NULL, "Cannot delete refs/heads/main");
        else if ((rc = mfs_hubd_ref_delete(r->srv->store, repo->id, ref, &err)) < 0)
            ret = mfs_hubd_reply_errno(r, rc, "RevisionNotFound", &err);
        else
            ret = mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
    } else if (!strcmp(r->method, "POST")) {
        cJSON *body = r->body.len ? mfs_hubd_body_json(r) : cJSON_CreateObject();
        cJSON *sp = body ? cJSON_GetObjectItemCaseSensitive(body, "startingPoint") : NULL;
        bool empty = body && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "emptyBranch"));
        bool overwrite = body && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body,
                                                                                "overwrite"));

        if (!body) {
            free(name);
            return MHD_YES;
        }
        if (!overwrite && mfs_hubd_rev_resolve(r->srv->store, repo->id, ref, commit, NULL,
                                               NULL) == 0) {
            ret = mfs_hubd_reply_error(r, 409, NULL, "Reference %s already exists", ref);
        } else if (empty) {
            struct mfs_hubd_commit_req req = { 0 };
            int pr;

            if (overwrite)
                mfs_hubd_ref_delete(r->srv->store, repo->id, ref, NULL);
            req.rev = ref;
            req.create_branch = true;
            req.title = "Create empty branch";
            req.author = r->user;
            rc = mfs_hubd_commit_create(r->srv->store, repo->id, &req, commit, &pr, &err);
            ret = rc < 0 ? mfs_hubd_reply_errno(r, rc, "RevisionNotFound", &err)
                  : mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
        } else {
            rc = mfs_hubd_rev_resolve(r->srv->store, repo->id, cJSON_IsString(sp) ?
                                      sp->valuestring : "main", commit, NULL, &err);
            if (rc == 0)
                rc = mfs_hubd_ref_set(r->srv->store, repo->id, ref, commit, !overwrite, &err);
            ret = rc < 0 ? mfs_hubd_reply_errno(r, rc, "RevisionNotFound", &err)
                  : mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
        }
        cJSON_Delete(body);
    } else {
        ret = mfs_hubd_reply_error(r, 405, NULL, "branch takes POST or DELETE");
    }
    free(name);
    return ret;
}

static enum MHD_Result route_tag(struct mfs_hubd_req *r, const struct mfs_hubd_repo *repo,
                                 size_t from)
{
    struct mfs_err err = MFS_ERR_INIT;
    char ref[MFS_HUBD_REF_MAX];
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    enum MHD_Result ret;
    size_t next;
    int rc;

    if (!strcmp(r->method, "DELETE")) {
        char *name = mfs_hubd_join_path(r, from, r->nseg);

        if (!ref_name_ok(name)) {
            free(name);
            return mfs_hubd_reply_error(r, 400, NULL, "Invalid tag name");
        }
        snprintf(ref, sizeof(ref), "refs/tags/%s", name);
        free(name);
        rc = mfs_hubd_ref_delete(r->srv->store, repo->id, ref, &err);
        return rc < 0 ? mfs_hubd_reply_errno(r, rc, "RevisionNotFound", &err)
               : mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
    }
    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "tag takes POST or DELETE");
    if (mfs_hubd_split_rev(r, repo, from, r->nseg, commit, &next, rev) < 0)
        return MHD_YES;
    {
        cJSON *body = mfs_hubd_body_json(r);
        cJSON *tag = body ? cJSON_GetObjectItemCaseSensitive(body, "tag") : NULL;

        if (!body)
            return MHD_YES;
        if (!cJSON_IsString(tag) || !ref_name_ok(tag->valuestring)) {
            ret = mfs_hubd_reply_error(r, 400, NULL, "Invalid tag name");
        } else {
            snprintf(ref, sizeof(ref), "refs/tags/%s", tag->valuestring);
            rc = mfs_hubd_ref_set(r->srv->store, repo->id, ref, commit, true, &err);
            ret = rc < 0 ? mfs_hubd_reply_errno(r, rc, "RevisionNotFound", &err)
                  : mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
        }
        cJSON_Delete(body);
    }
    return ret;
}

/* ---- dispatch ------------------------------------------------------------------------- */

enum MHD_Result mfs_hubd_route_api_repo(struct mfs_hubd_req *r, const char *type,
                                        const char *name, size_t from)
{
    const char *action = from < r->nseg ? r->seg[from] : "";
    bool writes = !strcmp(action, "branch") || !strcmp(action, "tag") ||
                  !strcmp(action, "preupload") || !strcmp(action, "commit");
    struct mfs_hubd_repo repo;
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    size_t next;

    if (mfs_hubd_repo_access(r, type, name, false, writes, &repo) < 0)
        return MHD_YES;
    if (!*action || !strcmp(action, "revision")) {
        struct mfs_err err = MFS_ERR_INIT;

        if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
            return mfs_hubd_reply_error(r, 405, NULL, "method %s not allowed here", r->method);
        if (*action) {
            if (mfs_hubd_split_rev(r, &repo, from + 1, r->nseg, commit, &next, rev) < 0)
                return MHD_YES;
        } else if (mfs_hubd_rev_resolve(r->srv->store, repo.id, "main", commit, NULL,
                                        &err) < 0) {
            return mfs_hubd_reply_error(r, 404, "RevisionNotFound", "%s", err.msg);
        }
        return route_info(r, &repo, commit);
    }
    if (!strcmp(action, "tree"))
        return route_tree(r, type, &repo, from + 1);
    if (!strcmp(action, "paths-info"))
        return route_paths_info(r, &repo, from + 1);
    if (!strcmp(action, "refs"))
        return route_refs(r, &repo);
    if (!strcmp(action, "commits"))
        return route_commits(r, type, &repo, from + 1);
    if (!strcmp(action, "branch"))
        return route_branch(r, &repo, from + 1);
    if (!strcmp(action, "tag"))
        return route_tag(r, &repo, from + 1);
    if (!strcmp(action, "preupload"))
        return mfs_hubd_route_preupload(r, type, &repo, from + 1);
    if (!strcmp(action, "commit"))
        return mfs_hubd_route_commit(r, type, &repo, from + 1);
    return mfs_hubd_reply_error(r, 404, NULL, "no such route: %s %s", r->method, r->url);
}

/* ---- identity, repos ------------------------------------------------------------------ */

enum MHD_Result mfs_hubd_route_whoami(struct mfs_hubd_req *r)
{
    cJSON *o;
    cJSON *auth;
    cJSON *tok;
    char id[65];

    if (r->auth != MFS_HUBD_VALID)
        return mfs_hubd_reply_error(r, 401, NULL, "Invalid user token");
    mfs_hash_sha256_hex(r->user, strlen(r->user), id);
    id[24] = '\0';
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "user");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "name", r->user);
    cJSON_AddStringToObject(o, "fullname", r->user);
    cJSON_AddNullToObject(o, "email");
    cJSON_AddBoolToObject(o, "emailVerified", false);
    cJSON_AddBoolToObject(o, "isPro", false);
    cJSON_AddArrayToObject(o, "orgs");
    auth = cJSON_AddObjectToObject(o, "auth");
    cJSON_AddStringToObject(auth, "type", "access_token");
    tok = cJSON_AddObjectToObject(auth, "accessToken");
    cJSON_AddStringToObject(tok, "displayName", "modelfs");
    cJSON_AddStringToObject(tok, "role", "write");
    return mfs_hubd_reply_json(r, 200, o);
}

/* Repo id and type from a create/delete body.  Returns 0 or -1 after
 * replying.  type gets "model" when the body has none (PY omits it). */
static int body_repo_id(struct mfs_hubd_req *r, cJSON *body, char name[MFS_HUBD_NAME_MAX],
                        const char **type)
{
    cJSON *nm = cJSON_GetObjectItemCaseSensitive(body, "name");
    cJSON *org = cJSON_GetObjectItemCaseSensitive(body, "organization");
    cJSON *ty = cJSON_GetObjectItemCaseSensitive(body, "type");

    *type = "model";
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "dataset"))
        *type = "dataset";
    else if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "space"))
        *type = "space";
    else if (cJSON_IsString(ty) && strcmp(ty->valuestring, "model")) {
        mfs_hubd_reply_error(r, 400, NULL, "Invalid repo type '%s'", ty->valuestring);
        return -1;
    }
    if (!cJSON_IsString(nm)) {
        mfs_hubd_reply_error(r, 400, NULL, "'name' is required");
        return -1;
    }
    if (strchr(nm->valuestring, '/'))
        snprintf(name, MFS_HUBD_NAME_MAX, "%s", nm->valuestring);
    else if (cJSON_IsString(org) && org->valuestring[0])
        snprintf(name, MFS_HUBD_NAME_MAX, "%s/%s", org->valuestring, nm->valuestring);
    else
        snprintf(name, MFS_HUBD_NAME_MAX, "%s/%s", r->user[0] ? r->user : "user",
                 nm->valuestring);
    if (!mfs_hubd_repo_name_ok(name)) {
        mfs_hubd_reply_error(r, 400, NULL, "Invalid repo id '%s'", name);
        return -1;
    }
    return 0;
}

enum MHD_Result mfs_hubd_route_repo_create(struct mfs_hubd_req *r)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_commit_req req = { 0 };
    struct mfs_hubd_op *ops = NULL;
    struct mfs_hubd_repo repo;
    char name[MFS_HUBD_NAME_MAX];
    char url[600];
    char oid[41];
    const char *type;
    cJSON *body;
    cJSON *vis;
    cJSON *priv;
    cJSON *files;
    cJSON *f;
    cJSON *o;
    bool is_private;
    size_t nops = 0;
    size_t i;
    int pr;
    int rc;
    enum MHD_Result ret;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "repos/create takes POST");
    if (mfs_hubd_need_write(r) < 0)
        return MHD_YES;
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    if (body_repo_id(r, body, name, &type) < 0) {
        cJSON_Delete(body);
        return MHD_YES;
    }
    if (!mfs_hubd_owns(r, name)) {
        cJSON_Delete(body);
        return mfs_hubd_reply_error(r, 403, NULL, "You don't have the rights to create a repo"
                                    " in '%.*s'", (int)(strchr(name, '/') - name), name);
    }
    vis = cJSON_GetObjectItemCaseSensitive(body, "visibility");
    priv = cJSON_GetObjectItemCaseSensitive(body, "private");
    is_private = cJSON_IsTrue(priv) ||
                 (cJSON_IsString(vis) && strcmp(vis->valuestring, "public"));
    snprintf(url, sizeof(url), "%s/%s%s", r->base, mfs_hubd_type_prefix(type), name);
    rc = mfs_hubd_repo_create(r->srv->store, type, name, is_private, "", &repo, &err);
    if (rc == -EEXIST) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", err.msg);
        cJSON_AddStringToObject(o, "url", url);
        cJSON_Delete(body);
        return mfs_hubd_reply_json(r, 409, o);
    }
    if (rc < 0) {
        cJSON_Delete(body);
        return mfs_hubd_reply_errno(r, rc, NULL, &err);
    }
    files = cJSON_GetObjectItemCaseSensitive(body, "files");
    ops = calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(*ops));
    if (!ops) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "out of memory");
        goto out_delete;
    }
    ops[0].kind = MFS_HUBD_OP_ADD;
    ops[0].path = ".gitattributes";
    ops[0].size = strlen(mfs_hubd_default_gitattributes);
    rc = mfs_hubd_blob_put_mem(r->srv->store, mfs_hubd_default_gitattributes, ops[0].size,
                               ops[0].sha256, ops[0].oid, &err);
    nops = 1;
    cJSON_ArrayForEach(f, files) {
        cJSON *p = cJSON_GetObjectItemCaseSensitive(f, "path");
        cJSON *c = cJSON_GetObjectItemCaseSensitive(f, "content");
        cJSON *enc = cJSON_GetObjectItemCaseSensitive(f, "encoding");
        unsigned char *data = NULL;
        size_t len = 0;

        if (rc < 0)
            break;
        if (!cJSON_IsString(p) || !cJSON_IsString(c) || !mfs_hubd_path_ok(p->valuestring)) {
            rc = mfs_err_set(&err, -EINVAL, "invalid file in 'files'");
            break;
        }
        if (cJSON_IsString(enc) && !strcmp(enc->valuestring, "base64")) {
            rc = mfs_hubd_b64_decode(c->valuestring, strlen(c->valuestring), &data, &len);
            if (rc < 0) {
                rc = mfs_err_set(&err, -EINVAL, "invalid base64 for '%s'", p->valuestring);
                break;
            }
        } else {
            len = strlen(c->valuestring);
            data = (unsigned char *)strdup(c->valuestring);
        }
        ops[nops].kind = MFS_HUBD_OP_ADD;
        ops[nops].path = p->valuestring;
        ops[nops].size = len;
        rc = mfs_hubd_blob_put_mem(r->srv->store, data ? (const void *)data : "", len,
                                   ops[nops].sha256, ops[nops].oid, &err);
        free(data);
        nops++;
    }
    if (rc == 0) {
        req.rev = "main";
        req.create_branch = true;
        req.title = "initial commit";
        req.author = r->user;
        req.ops = ops;
        req.nops = nops;
        rc = mfs_hubd_commit_create(r->srv->store, repo.id, &req, oid, &pr, &err);
    }
    if (rc < 0) {
        ret = mfs_hubd_reply_errno(r, rc, NULL, &err);
        goto out_delete;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "url", url);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "id", name);
    ret = mfs_hubd_reply_json(r, 200, o);
    goto out_free;

out_delete:
    mfs_hubd_repo_delete(r->srv->store, repo.id, NULL);
out_free:
    (void)i;
    free(ops);
    cJSON_Delete(body);
    return ret;
}

enum MHD_Result mfs_hubd_route_repo_delete(struct mfs_hubd_req *r)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_repo repo;
    char name[MFS_HUBD_NAME_MAX];
    const char *type;
    cJSON *body;
    int rc;

    if (strcmp(r->method, "DELETE"))
        return mfs_hubd_reply_error(r, 405, NULL, "repos/delete takes DELETE");
    if (mfs_hubd_need_write(r) < 0)
        return MHD_YES;
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    rc = body_repo_id(r, body, name, &type);
    cJSON_Delete(body);
    if (rc < 0)
        return MHD_YES;
    rc = mfs_hubd_repo_get(r->srv->store, type, name, &repo, &err);
    if (rc == 0)
        rc = mfs_hubd_owns(r, name) ? 0 : -EACCES;
    if (rc == -EACCES)
        mfs_err_set(&err, rc, "You don't have write access to '%s'", name);
    if (rc == 0)
        rc = mfs_hubd_repo_delete(r->srv->store, repo.id, &err);
    if (rc < 0)
        return mfs_hubd_reply_errno(r, rc, "RepoNotFound", &err);
    return mfs_hubd_reply_json(r, 200, cJSON_CreateObject());
}

enum MHD_Result mfs_hubd_route_validate_yaml(struct mfs_hubd_req *r)
{
    cJSON *body;
    cJSON *content;
    cJSON *o;
    const char *text;
    bool bad = false;

    if (strcmp(r->method, "POST"))
        return mfs_hubd_reply_error(r, 405, NULL, "validate-yaml takes POST");
    body = mfs_hubd_body_json(r);
    if (!body)
        return MHD_YES;
    content = cJSON_GetObjectItemCaseSensitive(body, "content");
    text = cJSON_IsString(content) ? content->valuestring : "";
    /* Front matter that opens with "---" must close with "---". */
    if (!strncmp(text, "---\n", 4) || !strncmp(text, "---\r\n", 5))
        bad = !strstr(text + 3, "\n---");
    o = cJSON_CreateObject();
    if (bad) {
        cJSON *errs = cJSON_AddArrayToObject(o, "errors");
        cJSON *e = cJSON_CreateObject();

        cJSON_AddStringToObject(e, "message", "YAML front matter is not closed by '---'");
        cJSON_AddItemToArray(errs, e);
        cJSON_AddStringToObject(o, "error", "YAML front matter is not closed by '---'");
    } else {
        cJSON_AddArrayToObject(o, "errors");
        cJSON_AddArrayToObject(o, "warnings");
    }
    cJSON_Delete(body);
    return mfs_hubd_reply_json(r, bad ? 400 : 200, o);
}
