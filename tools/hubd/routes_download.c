/*
 * tools/hubd/routes_download.c - file content: GET/HEAD resolve and raw,
 * and the signed LFS URLs resolve redirects to (hub-api.md section 4).
 *
 * A regular file is served by resolve itself.  An LFS file answers 302 to
 * an absolute /_lfs/{sha256}/{repo}/{path}?expires=&sig= URL on this
 * server, with X-Repo-Commit, X-Linked-Etag and X-Linked-Size on the 302
 * (section 4.3).  Bodies stream from the blob file (sendfile) and honour a
 * single Range (section 4.5); the fault switch swaps in a callback that
 * stalls, truncates or corrupts the body.
 */
#include "tools/hubd/hubd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct fault_body {
    struct mfs_hubd_srv *srv;               /* for the stopping flag */
    int fd;                                 /* owned blob fd, or -1 for mem */
    const char *mem;                        /* owned bytes when fd < 0 */
    uint64_t off;                           /* body start, bytes from the blob start */
    uint64_t len;                           /* body bytes announced */
    char mode[16];                          /* stall, truncate or corrupt */
};

static ssize_t fault_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct fault_body *fb = cls;
    uint64_t limit = fb->len;
    size_t n;
    uint64_t i;
    ssize_t got;

    if (!strcmp(fb->mode, "stall")) {
        int waited;

        /* Headers are out; hold the connection with no body byte. */
        for (waited = 0; waited < 1200 && !atomic_load(&fb->srv->stopping); waited++)
            usleep(100 * 1000);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (!strcmp(fb->mode, "truncate"))
        limit = fb->len / 2;
    if (pos >= limit)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    n = max;
    if ((uint64_t)n > limit - pos)
        n = (size_t)(limit - pos);
    if (fb->fd >= 0) {
        got = pread(fb->fd, buf, n, (off_t)(fb->off + pos));
        if (got <= 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        memcpy(buf, fb->mem + fb->off + pos, n);
        got = (ssize_t)n;
    }
    if (!strcmp(fb->mode, "corrupt")) {
        /* One flipped byte per 4 KiB of the blob, at blob offsets k*4096. */
        uint64_t abs = fb->off + pos;

        for (i = (abs + 4095) / 4096 * 4096; i < abs + (uint64_t)got; i += 4096)
            buf[i - abs] ^= 0x5a;
    }
    return got;
}

static void fault_free(void *cls)
{
    struct fault_body *fb = cls;

    if (fb->fd >= 0)
        close(fb->fd);
    free((void *)fb->mem);
    free(fb);
}

/* Parse a Range header against size.  Returns 0: no usable range (serve
 * all), 1: one satisfiable range in *off and *len, -1: unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    unsigned long long a;
    unsigned long long b;
    char *end = NULL;
    const char *p;

    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    p = h + 6;
    while (*p == ' ')
        p++;
    if (*p == '-') {
        /* strtoull would take "--5" or "- 5" as a wrapped or spaced number. */
        if (p[1] < '0' || p[1] > '9')
            return 0;
        b = strtoull(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0')
            return 0;
        if (b == 0 || size == 0)
            return -1;
        if (b > size)
            b = size;
        *off = size - b;
        *len = b;
        return 1;
    }
    if (*p < '0' || *p > '9')
        return 0;
    a = strtoull(p, &end, 10);
    if (*end != '-')
        return 0;
    p = end + 1;
    if (*p == '\0') {
        b = size ? size - 1 : 0;
    } else {
        if (*p < '0' || *p > '9')
            return 0;
        b = strtoull(p, &end, 10);
        if (*end != '\0')
            return 0;
        if (b < a)
            return 0;
    }
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

struct body_src {
    int fd;                                 /* owned blob fd, or -1 */
    char *mem;                              /* owned bytes when fd < 0 */
    uint64_t size;                          /* total bytes */
};

/* Serve src (ownership taken) with Range and fault handling.  Extra
 * headers: etag (quoted by us), commit (X-Repo-Commit, may be NULL),
 * filename (Content-Disposition, may be NULL). */
static enum MHD_Result serve_body(struct mfs_hubd_req *r, struct body_src *src,
                                  const char *etag, const char *commit, const char *filename,
                                  const char *mode)
{
    struct MHD_Response *resp = NULL;
    char hdr[300];
    uint64_t off = 0;
    uint64_t len = src->size;
    bool head = !strcmp(r->method, "HEAD");
    bool empty_range = false;
    unsigned status = 200;
    int pr;

    pr = parse_range(mfs_hubd_header(r, MHD_HTTP_HEADER_RANGE), src->size, &off, &len);
    if (pr < 0 && src->size == 0) {
        /* JS probes with bytes=0-0 and needs a Content-Range to learn the
         * size; 416 would make an empty file undownloadable (4.5). */
        pr = 0;
        empty_range = true;
    }
    if (pr < 0) {
        if (src->fd >= 0)
            close(src->fd);
        free(src->mem);
        snprintf(hdr, sizeof(hdr), "bytes */%" PRIu64, src->size);
        return mfs_hubd_reply_error_h(r, 416, NULL, "Content-Range", hdr,
                                      "Requested range not satisfiable: %s (size %" PRIu64 ")",
                                      mfs_hubd_header(r, MHD_HTTP_HEADER_RANGE), src->size);
    }
    if (pr > 0)
        status = 206;
    if (!head && mode[0] && (!strcmp(mode, "stall") || !strcmp(mode, "truncate") ||
                             !strcmp(mode, "corrupt"))) {
        struct fault_body *fb = calloc(1, sizeof(*fb));

        if (fb) {
            fb->srv = r->srv;
            fb->fd = src->fd;
            fb->mem = src->mem;
            fb->off = off;
            fb->len = len;
            snprintf(fb->mode, sizeof(fb->mode), "%s", mode);
            resp = MHD_create_response_from_callback(len, 64 * 1024, fault_read, fb,
                                                     fault_free);
            if (!resp)
                fault_free(fb);
        }
        src->fd = -1;
        src->mem = NULL;
    } else if (src->fd >= 0 && len > 0) {
        resp = MHD_create_response_from_fd_at_offset64(len, src->fd, off);
        if (!resp)
            close(src->fd);
        src->fd = -1;
    } else {
        if (src->fd >= 0)
            close(src->fd);
        src->fd = -1;
        if (len == 0) {
            resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        } else {
            char *copy = malloc(len);

            if (copy) {
                memcpy(copy, src->mem + off, len);
                resp = MHD_create_response_from_buffer(len, copy, MHD_RESPMEM_MUST_FREE);
                if (!resp)
                    free(copy);
            }
        }
        free(src->mem);
        src->mem = NULL;
    }
    if (!resp)
        return mfs_hubd_reply_error(r, 500, NULL, "cannot build a response");
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    snprintf(hdr, sizeof(hdr), "\"%s\"", etag);
    MHD_add_response_header(resp, "ETag", hdr);
    if (commit)
        MHD_add_response_header(resp, "X-Repo-Commit", commit);
    if (filename) {
        snprintf(hdr, sizeof(hdr), "inline; filename=\"%s\"", filename);
        if (!strpbrk(filename, "\"\r\n\\"))
            MHD_add_response_header(resp, "Content-Disposition", hdr);
    }
    if (empty_range)
        MHD_add_response_header(resp, "Content-Range", "bytes */0");
    if (status == 206) {
        snprintf(hdr, sizeof(hdr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                 off + len - 1, src->size);
        MHD_add_response_header(resp, "Content-Range", hdr);
    }
    if (!head) {
        atomic_fetch_add(&r->srv->n_content, 1);
        atomic_fetch_add(&r->srv->content_bytes,
                         !strcmp(mode, "truncate") ? len / 2 : !strcmp(mode, "stall") ? 0 : len);
    }
    return mfs_hubd_reply(r, status, resp);
}

static int open_blob(struct mfs_hubd_req *r, const char *sha256, struct body_src *src)
{
    char path[PATH_MAX];
    struct stat sb;

    src->fd = -1;
    src->mem = NULL;
    if (mfs_hubd_blob_path(r->srv->store, sha256, path, sizeof(path)) < 0)
        return -ENAMETOOLONG;
    src->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (src->fd < 0)
        return -errno;
    if (fstat(src->fd, &sb) < 0) {
        close(src->fd);
        src->fd = -1;
        return -EIO;
    }
    src->size = (uint64_t)sb.st_size;
    return 0;
}

static enum MHD_Result redirect_lfs(struct mfs_hubd_req *r, const char *repo,
                                    const struct mfs_hubd_file *f, const char *commit)
{
    struct mfs_buf loc = MFS_BUF_INIT;
    struct MHD_Response *resp;
    unsigned long long exp = (unsigned long long)time(NULL) + MFS_HUBD_URL_TTL_S;
    char what[128];
    char sig[65];
    char hdr[128];
    char *body;
    int rc;

    snprintf(what, sizeof(what), "%s:%llu", f->sha256, exp);
    mfs_hubd_sign(r->srv, what, sig);
    rc = mfs_buf_printf(&loc, "%s/_lfs/%s/", r->base, f->sha256);
    rc = rc ? rc : mfs_hubd_encode(&loc, repo, true);
    rc = rc ? rc : mfs_buf_puts(&loc, "/");
    rc = rc ? rc : mfs_hubd_encode(&loc, f->path, true);
    rc = rc ? rc : mfs_buf_printf(&loc, "?expires=%llu&sig=%s", exp, sig);
    if (rc < 0) {
        mfs_buf_release(&loc);
        return mfs_hubd_reply_error(r, 500, NULL, "out of memory");
    }
    body = NULL;
    if (asprintf(&body, "Found. Redirecting to %s", loc.data) < 0)
        body = NULL;
    resp = body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
           : NULL;
    if (!resp) {
        free(body);
        mfs_buf_release(&loc);
        return mfs_hubd_reply_error(r, 500, NULL, "out of memory");
    }
    MHD_add_response_header(resp, "Location", loc.data);
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "X-Repo-Commit", commit);
    snprintf(hdr, sizeof(hdr), "\"%s\"", f->sha256);
    MHD_add_response_header(resp, "X-Linked-Etag", hdr);
    MHD_add_response_header(resp, "ETag", hdr);
    snprintf(hdr, sizeof(hdr), "%" PRIu64, f->size);
    MHD_add_response_header(resp, "X-Linked-Size", hdr);
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    mfs_buf_release(&loc);
    return mfs_hubd_reply(r, 302, resp);
}

enum MHD_Result mfs_hubd_route_resolve(struct mfs_hubd_req *r, const char *type,
                                       const char *repo, size_t from, bool raw)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_repo rp;
    struct mfs_hubd_file f = { 0 };
    struct body_src src = { -1, NULL, 0 };
    char rev[MFS_HUBD_REF_MAX];
    char commit[41];
    char mode[16];
    const char *base;
    enum MHD_Result ret;
    size_t next;
    char *path;
    int rc;

    if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
        return mfs_hubd_reply_error(r, 405, NULL, "method %s not allowed here", r->method);
    if (mfs_hubd_repo_access(r, type, repo, true, false, &rp) < 0)
        return MHD_YES;
    if (mfs_hubd_split_rev(r, &rp, from, r->nseg, commit, &next, rev) < 0)
        return MHD_YES;
    path = mfs_hubd_join_path(r, next, r->nseg);
    if (!path)
        return mfs_hubd_reply_error_h(r, next >= r->nseg ? 404 : 400,
                                      next >= r->nseg ? "EntryNotFound" : NULL,
                                      "X-Repo-Commit", commit, "invalid file path in '%s'",
                                      r->url);
    rc = mfs_hubd_file_get(r->srv->store, commit, path, &f, &err);
    if (rc == -ENOENT) {
        ret = mfs_hubd_reply_error_h(r, 404, "EntryNotFound", "X-Repo-Commit", commit,
                                     "Entry not found: %s", path);
        goto out_free_path;
    }
    if (rc < 0) {
        ret = mfs_hubd_reply_errno(r, rc, NULL, &err);
        goto out_free_path;
    }
    mfs_hubd_fault(r, mode);
    if (!strcmp(mode, "500")) {
        ret = mfs_hubd_reply_error(r, 500, NULL, "injected fault (fault file)");
        goto out_release_file;
    }
    if (f.lfs && !raw) {
        ret = redirect_lfs(r, repo, &f, commit);
        goto out_release_file;
    }
    base = strrchr(f.path, '/');
    base = base ? base + 1 : f.path;
    if (f.lfs) {
        char ptr[256];
        size_t n = mfs_hubd_lfs_pointer(f.sha256, f.size, ptr, sizeof(ptr));

        src.mem = strndup(ptr, n);
        src.size = n;
        if (!src.mem) {
            ret = mfs_hubd_reply_error(r, 500, NULL, "out of memory");
            goto out_release_file;
        }
    } else {
        rc = open_blob(r, f.sha256, &src);
        if (rc < 0) {
            ret = mfs_hubd_reply_error(r, 500, NULL, "blob of '%s' is missing from the store",
                                       f.path);
            goto out_release_file;
        }
    }
    ret = serve_body(r, &src, f.oid, commit, base, mode);
out_release_file:
    mfs_hubd_file_release(&f);
out_free_path:
    free(path);
    return ret;
}

enum MHD_Result mfs_hubd_route_lfs_get(struct mfs_hubd_req *r)
{
    struct body_src src = { -1, NULL, 0 };
    const char *sha = r->seg[1];
    const char *name = r->seg[r->nseg - 1];
    char mode[16];
    char *fname;
    enum MHD_Result ret;

    if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD"))
        return mfs_hubd_reply_error(r, 405, NULL, "method %s not allowed here", r->method);
    if (!mfs_hash_is_hex(sha, 64) || !mfs_hubd_sig_ok(r, sha))
        return mfs_hubd_reply_error(r, 403, NULL, "LFS URL is not signed or has expired");
    if (open_blob(r, sha, &src) < 0)
        return mfs_hubd_reply_error(r, 404, "EntryNotFound", "LFS object %s not found", sha);
    mfs_hubd_fault(r, mode);
    if (!strcmp(mode, "500")) {
        close(src.fd);
        return mfs_hubd_reply_error(r, 500, NULL, "injected fault (fault file)");
    }
    fname = r->nseg > 2 ? mfs_hubd_decode(name, strlen(name), false) : NULL;
    ret = serve_body(r, &src, sha, NULL, fname, mode);
    free(fname);
    return ret;
}
