/*
 * tools/hubd/import.c - `modelfs hub import`: a local folder becomes one
 * commit of a repo in the store.  A file is LFS when the Hub would store it
 * so (hub-api.md section 6.1): size >= 10 MiB, a NUL byte in its first
 * 8 KiB, or a .gitattributes filter=lfs pattern (the folder's own, else the
 * Hub's defaults) matches it; README.md and SOURCE.md stay regular.
 */
#include "tools/hubd/hubd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"

struct import_list {
    char **paths;                           /* owned relative paths */
    size_t n;                               /* used */
    size_t cap;                             /* allocated */
};

static int list_add(struct import_list *l, const char *rel)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **a = realloc(l->paths, nc * sizeof(*a));

        if (!a)
            return -ENOMEM;
        l->paths = a;
        l->cap = nc;
    }
    l->paths[l->n] = strdup(rel);
    if (!l->paths[l->n])
        return -ENOMEM;
    l->n++;
    return 0;
}

/* A symlink is imported as the file it names only when that is a regular
 * file inside the folder (real path under real_root): one pointing outside
 * would publish whatever it names (/etc/shadow, ~/.cache/huggingface/token),
 * and one to a folder can loop.  Anything else is refused, not skipped, so
 * that the commit never silently lacks a file the user sees. */
static int check_link(const char *full, const char *real_root, struct mfs_err *err)
{
    char real[PATH_MAX];
    struct stat sb;
    size_t n = strlen(real_root);

    if (!realpath(full, real))
        return mfs_err_set(err, -EINVAL, "cannot import symlink '%s': %s", full,
                           strerror(errno));
    if (strncmp(real, real_root, n) != 0 || (real[n] != '/' && n > 1))
        return mfs_err_set(err, -EINVAL, "cannot import symlink '%s': it points outside"
                           " the folder, to '%s'", full, real);
    if (stat(real, &sb) < 0 || !S_ISREG(sb.st_mode))
        return mfs_err_set(err, -EINVAL, "cannot import symlink '%s': it does not name a"
                           " regular file", full);
    return 0;
}

static int walk(const char *root, const char *real_root, const char *rel,
                struct import_list *l, struct mfs_err *err)
{
    char dir[PATH_MAX];
    struct dirent *de;
    DIR *d;
    int rc = 0;

    snprintf(dir, sizeof(dir), "%s%s%s", root, *rel ? "/" : "", rel);
    d = opendir(dir);
    if (!d)
        return mfs_err_set(err, -errno, "cannot read folder '%s': %s", dir, strerror(errno));
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        char full[PATH_MAX];
        struct stat sb;
        int n;

        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, ".git"))
            continue;
        n = snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof(sub)) {
            rc = mfs_err_set(err, -ENAMETOOLONG, "path too long under '%s'", dir);
            break;
        }
        snprintf(full, sizeof(full), "%s/%s", root, sub);
        if (lstat(full, &sb) < 0) {
            rc = mfs_err_set(err, -errno, "cannot stat '%s': %s", full, strerror(errno));
            break;
        }
        if (S_ISLNK(sb.st_mode))
            rc = check_link(full, real_root, err);
        if (rc < 0)
            break;
        if (S_ISDIR(sb.st_mode))
            rc = walk(root, real_root, sub, l, err);
        else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))
            rc = list_add(l, sub) < 0 ? mfs_err_set(err, -ENOMEM, "out of memory") : 0;
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True iff the first 8 KiB of the file hold a NUL byte (git's binary test). */
static bool has_nul(const char *path)
{
    char buf[8192];
    ssize_t n;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    return n > 0 && memchr(buf, 0, (size_t)n) != NULL;
}

static char *read_text(const char *path, size_t max)
{
    struct mfs_buf b = MFS_BUF_INIT;
    char chunk[4096];
    size_t n;
    FILE *f = fopen(path, "rb");

    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < max)
        mfs_buf_append(&b, chunk, n);
    fclose(f);
    return mfs_buf_steal(&b);
}

int mfs_hubd_import(const char *src, const char *name, const struct mfs_hubd_import_opts *o,
                    char oid[41], struct mfs_err *err)
{
    struct mfs_hubd_store *st = NULL;
    struct import_list l = { 0 };
    struct mfs_hubd_op *ops = NULL;
    struct mfs_hubd_commit_req req = { 0 };
    struct mfs_hubd_repo repo;
    char head[41];
    char *attrs = NULL;
    char title[300];
    char real_src[PATH_MAX];
    bool need_attrs = true;
    int pr_num;
    size_t nops = 0;
    size_t i;
    int rc;

    oid[0] = '\0';
    if (!realpath(src, real_src)) {
        rc = mfs_err_set(err, -errno, "cannot read folder '%s': %s", src, strerror(errno));
        goto out_free_list;
    }
    rc = walk(src, real_src, "", &l, err);
    if (rc < 0)
        goto out_free_list;
    qsort(l.paths, l.n, sizeof(*l.paths), cmp_str);
    rc = mfs_hubd_store_open(o->root, &st, err);
    if (rc < 0)
        goto out_free_list;
    rc = mfs_hubd_repo_get(st, o->type, name, &repo, NULL);
    if (rc == -ENOENT)
        rc = mfs_hubd_repo_create(st, o->type, name, o->is_private, o->gated ? "auto" : "",
                                  &repo, err);
    else if (rc == 0 && (o->is_private || o->gated))
        rc = mfs_hubd_repo_set_flags(st, repo.id, o->is_private || repo.is_private,
                                     o->gated ? "auto" : repo.gated, err);
    if (rc < 0)
        goto out_close_store;
    ops = calloc(l.n + 1, sizeof(*ops));
    if (!ops) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_close_store;
    }
    for (i = 0; i < l.n; i++) {
        if (!strcmp(l.paths[i], ".gitattributes")) {
            char full[PATH_MAX];

            snprintf(full, sizeof(full), "%s/.gitattributes", src);
            attrs = read_text(full, 1 << 20);
            need_attrs = false;
        }
    }
    /* On top of an existing branch its .gitattributes counts as present. */
    if (need_attrs &&
        mfs_hubd_rev_resolve(st, repo.id, o->branch ? o->branch : "main", head, NULL, NULL) == 0) {
        struct mfs_hubd_file f;

        if (mfs_hubd_file_get(st, head, ".gitattributes", &f, NULL) == 0)
            need_attrs = false;
        mfs_hubd_file_release(&f);
    }
    if (need_attrs) {
        struct mfs_hubd_op *op = &ops[nops++];

        op->kind = MFS_HUBD_OP_ADD;
        op->path = ".gitattributes";
        op->size = strlen(mfs_hubd_default_gitattributes);
        rc = mfs_hubd_blob_put_mem(st, mfs_hubd_default_gitattributes, op->size, op->sha256,
                                   op->oid, err);
        if (rc < 0)
            goto out_free_ops;
    }
    for (i = 0; i < l.n; i++) {
        struct mfs_hubd_op *op = &ops[nops];
        const char *base = strrchr(l.paths[i], '/');
        char full[PATH_MAX];

        base = base ? base + 1 : l.paths[i];
        if (!mfs_hubd_path_ok(l.paths[i])) {
            rc = mfs_err_set(err, -EINVAL, "cannot import '%s': not a valid repo path",
                             l.paths[i]);
            goto out_free_ops;
        }
        snprintf(full, sizeof(full), "%s/%s", src, l.paths[i]);
        op->kind = MFS_HUBD_OP_ADD;
        op->path = l.paths[i];
        rc = mfs_hubd_blob_put_file(st, full, op->sha256, op->oid, &op->size, err);
        if (rc < 0)
            goto out_free_ops;
        if (strcmp(base, "README.md") && strcmp(base, "SOURCE.md") &&
            strcmp(l.paths[i], ".gitattributes"))
            op->lfs = op->size >= MFS_HUBD_LFS_MIN_SIZE || mfs_hubd_attr_is_lfs(attrs, op->path)
                      || has_nul(full);
        nops++;
    }
    snprintf(title, sizeof(title), "Import from %s", src);
    req.rev = o->branch;
    req.create_branch = true;
    req.title = o->message ? o->message : title;
    req.message = "";
    req.author = "modelfs";
    req.ops = ops;
    req.nops = nops;
    rc = mfs_hubd_commit_create(st, repo.id, &req, oid, &pr_num, err);

out_free_ops:
    free(ops);
out_close_store:
    mfs_hubd_store_close(&st);
out_free_list:
    for (i = 0; i < l.n; i++)
        free(l.paths[i]);
    free(l.paths);
    free(attrs);
    return rc;
}
