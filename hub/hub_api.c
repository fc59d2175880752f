/*
 * hub/hub_api.c - the JSON calls of the Hub client: revision info
 * (docs/hub-api.md section 5.1) and the recursive tree listing (section
 * 5.2, Link rel="next" pagination).  Every field is checked before use:
 * a server that sends the wrong type, misses a field, or names a path with
 * "..", "." or a leading '/' gets -EIO with the reason, so nothing above
 * ever sees a path that could leave the mount.
 */
#include "hub/hub_int.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/hash.h"

#define HUB_TREE_MAX_PAGES 100000           /* a server that paginates forever is lying */
#define HUB_PATH_MAX 4096                   /* bytes of a repo path */

/* "2024-05-01T12:34:56.000Z" -> unix seconds; 0 when it does not parse. */
static int64_t hub_parse_time(const char *s)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return 0;
    return (int64_t)timegm(&tm);
}

static int hub_url_api(struct mfs_hub *hub, struct mfs_buf *url, const char *repo_id,
                       const char *route, const char *rev, const char *query)
{
    int rc = mfs_buf_printf(url, "%s/api/%s/%s/%s/", mfs_hub_endpoint(hub),
                            mfs_hub_api_type(hub), repo_id, route);

    if (rc == 0)
        rc = mfs_hub_buf_escape(url, rev, false);
    if (rc == 0 && query)
        rc = mfs_buf_puts(url, query);
    return rc;
}

int mfs_hub_repo_info(struct mfs_hub *hub, const char *repo_id, const char *revision,
                      struct mfs_hub_repo_info *info, struct mfs_err *err)
{
    struct mfs_buf url = MFS_BUF_INIT;
    struct mfs_buf body = MFS_BUF_INIT;
    const cJSON *sha;
    const cJSON *v;
    cJSON *root = NULL;
    int rc;

    memset(info, 0, sizeof(*info));
    if (!revision || !*revision)
        revision = "main";
    rc = mfs_hub_check_repo_id(repo_id, err);
    if (rc < 0)
        return rc;
    if (hub_url_api(hub, &url, repo_id, "revision", revision, NULL) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_release;
    }
    rc = mfs_hub_get_json(hub, url.data, repo_id, &body, NULL, err);
    if (rc < 0)
        goto out_release;
    root = cJSON_ParseWithLength(body.data ? body.data : "", body.len);
    if (!cJSON_IsObject(root)) {
        rc = mfs_err_set(err, -EIO, "bad answer for '%s' at '%s': not a JSON object", repo_id,
                         revision);
        goto out_free_json;
    }
    sha = cJSON_GetObjectItemCaseSensitive(root, "sha");
    if (!cJSON_IsString(sha) || !mfs_hash_is_hex(sha->valuestring, 40)) {
        rc = mfs_err_set(err, -EIO, "bad answer for '%s' at '%s': no 40-hex \"sha\"", repo_id,
                         revision);
        goto out_free_json;
    }
    memcpy(info->commit, sha->valuestring, 41);
    v = cJSON_GetObjectItemCaseSensitive(root, "lastModified");
    if (cJSON_IsString(v))
        info->last_modified = hub_parse_time(v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(root, "private");
    info->is_private = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(root, "gated");
    info->gated = v && !cJSON_IsFalse(v) && !cJSON_IsNull(v);
    rc = 0;
out_free_json:
    cJSON_Delete(root);
out_release:
    mfs_buf_release(&body);
    mfs_buf_release(&url);
    return rc;
}

/* True iff p is a relative path whose components are all real names. */
static bool hub_path_ok(const char *p)
{
    const char *c = p;
    size_t n = strlen(p);

    if (n == 0 || n >= HUB_PATH_MAX || p[0] == '/')
        return false;
    while (*c) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);

        if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (memchr(c, '\\', len) || memchr(c, '\n', len))
            return false;
        if (!slash)
            break;
        c = slash + 1;
        if (!*c)
            return false;                   /* trailing '/' */
    }
    return true;
}

static bool hub_json_size(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return false;
    *out = (uint64_t)v->valuedouble;
    return true;
}

/* Fill e from one tree entry; returns 1 if filled, 0 to skip, -EIO if bad. */
static int hub_tree_entry(const cJSON *item, struct mfs_entry *e, const char *repo_id,
                          struct mfs_err *err)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(item, "path");
    const cJSON *oid = cJSON_GetObjectItemCaseSensitive(item, "oid");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "size");
    const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(item, "lfs");

    memset(e, 0, sizeof(*e));
    if (!cJSON_IsObject(item) || !cJSON_IsString(type) || !cJSON_IsString(path))
        return mfs_err_set(err, -EIO, "bad tree of '%s': entry without type or path", repo_id);
    if (!hub_path_ok(path->valuestring))
        return mfs_err_set(err, -EIO, "bad tree of '%s': unsafe path '%.100s'", repo_id,
                           path->valuestring);
    if (!strcmp(type->valuestring, "directory")) {
        e->is_dir = true;
        if (cJSON_IsString(oid) && mfs_hash_is_hex(oid->valuestring, 40))
            memcpy(e->oid, oid->valuestring, 41);
    } else if (!strcmp(type->valuestring, "file")) {
        if (!cJSON_IsString(oid) || !mfs_hash_is_hex(oid->valuestring, 40))
            return mfs_err_set(err, -EIO, "bad tree of '%s': '%.100s' has no 40-hex oid",
                               repo_id, path->valuestring);
        memcpy(e->oid, oid->valuestring, 41);
        if (!hub_json_size(size, &e->size))
            return mfs_err_set(err, -EIO, "bad tree of '%s': '%.100s' has no valid size",
                               repo_id, path->valuestring);
        if (lfs && !cJSON_IsNull(lfs)) {
            const cJSON *lo = cJSON_GetObjectItemCaseSensitive(lfs, "oid");
            const cJSON *ls = cJSON_GetObjectItemCaseSensitive(lfs, "size");
            uint64_t lsize;

            if (!cJSON_IsObject(lfs) || !cJSON_IsString(lo) ||
                !mfs_hash_is_hex(lo->valuestring, 64))
                return mfs_err_set(err, -EIO, "bad tree of '%s': '%.100s' has a bad lfs oid",
                                   repo_id, path->valuestring);
            if (ls && (!hub_json_size(ls, &lsize) || lsize != e->size))
                return mfs_err_set(err, -EIO, "bad tree of '%s': '%.100s' has two sizes",
                                   repo_id, path->valuestring);
            memcpy(e->lfs_oid, lo->valuestring, 65);
            e->is_lfs = true;
        }
    } else {
        return 0;                           /* "unknown" and future kinds: not shown */
    }
    e->path = strdup(path->valuestring);
    if (!e->path)
        return mfs_err_set(err, -ENOMEM, "hub: out of memory");
    return 1;
}

/* A next-page URL is followed only on the endpoint itself, so that the
 * token never goes to a host the user did not name. */
static bool hub_same_origin(struct mfs_hub *hub, const char *url)
{
    const char *ep = mfs_hub_endpoint(hub);
    const char *host = strstr(ep, "://");
    const char *path = host ? strchr(host + 3, '/') : NULL;
    size_t n = path ? (size_t)(path - ep) : strlen(ep);

    return !strncmp(url, ep, n) && (url[n] == '/' || url[n] == '\0');
}

int mfs_hub_tree(struct mfs_hub *hub, const char *repo_id, const char *commit,
                 struct mfs_entry **entriesp, size_t *np, struct mfs_err *err)
{
    struct mfs_buf url = MFS_BUF_INIT;
    struct mfs_buf body = MFS_BUF_INIT;
    struct mfs_entry *v = NULL;
    size_t n = 0;
    size_t cap = 0;
    char *next = NULL;
    int pages = 0;
    int rc;

    *entriesp = NULL;
    *np = 0;
    rc = mfs_hub_check_repo_id(repo_id, err);
    if (rc < 0)
        return rc;
    if (!commit || !*commit)
        commit = "main";
    if (hub_url_api(hub, &url, repo_id, "tree", commit, "?recursive=true&expand=false") < 0) {
        rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
        goto out_release;
    }
    for (;;) {
        char *cur = next;
        cJSON *root;
        const cJSON *item;

        next = NULL;
        rc = mfs_hub_get_json(hub, cur ? cur : url.data, repo_id, &body, &next, err);
        free(cur);
        if (rc < 0)
            goto out_free_entries;
        root = cJSON_ParseWithLength(body.data ? body.data : "", body.len);
        if (!cJSON_IsArray(root)) {
            cJSON_Delete(root);
            rc = mfs_err_set(err, -EIO, "bad tree of '%s': not a JSON array", repo_id);
            goto out_free_entries;
        }
        cJSON_ArrayForEach(item, root) {
            struct mfs_entry e;

            rc = hub_tree_entry(item, &e, repo_id, err);
            if (rc < 0)
                break;
            if (rc == 0)
                continue;
            if (n == cap) {
                struct mfs_entry *grown;

                cap = cap ? cap * 2 : 64;
                grown = realloc(v, cap * sizeof(*v));
                if (!grown) {
                    free(e.path);
                    rc = mfs_err_set(err, -ENOMEM, "hub: out of memory");
                    break;
                }
                v = grown;
            }
            v[n++] = e;
            rc = 0;
        }
        cJSON_Delete(root);
        if (rc < 0)
            goto out_free_entries;
        if (!next)
            break;
        if (!hub_same_origin(hub, next) || ++pages >= HUB_TREE_MAX_PAGES) {
            rc = mfs_err_set(err, -EIO, "bad tree of '%s': next page '%.80s' is elsewhere",
                             repo_id, next);
            goto out_free_entries;
        }
    }
    *entriesp = v;
    *np = n;
    v = NULL;
    n = 0;
    rc = 0;
out_free_entries:
    free(next);
    mfs_entries_free(v, n);
out_release:
    mfs_buf_release(&body);
    mfs_buf_release(&url);
    return rc;
}
