/*
 * tools/hubd/store.c - the local Hub's storage: SQLite metadata plus
 * content-addressed blob files (layout and guarantees in hubd.h).
 *
 * Every commit row owns a full copy of its file list (files table), so a
 * read at any commit is one indexed query and history never needs a walk.
 * Copying the parent's rows costs one INSERT ... SELECT per commit, cheap
 * for the repos a local test Hub holds.
 */
#include "tools/hubd/hubd.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/hash.h"

struct mfs_hubd_store {
    char *root;                             /* owned; the --root folder */
    sqlite3 *db;                            /* ROOT/hub.db */
    pthread_mutex_t lock;                   /* serialises every use of db */
};

const char mfs_hubd_default_gitattributes[] =
    "*.7z filter=lfs diff=lfs merge=lfs -text\n"
    "*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.bz2 filter=lfs diff=lfs merge=lfs -text\n"
    "*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    "*.ftz filter=lfs diff=lfs merge=lfs -text\n"
    "*.gguf filter=lfs diff=lfs merge=lfs -text\n"
    "*.gz filter=lfs diff=lfs merge=lfs -text\n"
    "*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    "*.joblib filter=lfs diff=lfs merge=lfs -text\n"
    "*.lfs.* filter=lfs diff=lfs merge=lfs -text\n"
    "*.mlmodel filter=lfs diff=lfs merge=lfs -text\n"
    "*.model filter=lfs diff=lfs merge=lfs -text\n"
    "*.msgpack filter=lfs diff=lfs merge=lfs -text\n"
    "*.npy filter=lfs diff=lfs merge=lfs -text\n"
    "*.npz filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    "*.ot filter=lfs diff=lfs merge=lfs -text\n"
    "*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    "*.pb filter=lfs diff=lfs merge=lfs -text\n"
    "*.pickle filter=lfs diff=lfs merge=lfs -text\n"
    "*.pkl filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.pth filter=lfs diff=lfs merge=lfs -text\n"
    "*.rar filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "saved_model/**/* filter=lfs diff=lfs merge=lfs -text\n"
    "*.tar.* filter=lfs diff=lfs merge=lfs -text\n"
    "*.tar filter=lfs diff=lfs merge=lfs -text\n"
    "*.tflite filter=lfs diff=lfs merge=lfs -text\n"
    "*.tgz filter=lfs diff=lfs merge=lfs -text\n"
    "*.wasm filter=lfs diff=lfs merge=lfs -text\n"
    "*.xz filter=lfs diff=lfs merge=lfs -text\n"
    "*.zip filter=lfs diff=lfs merge=lfs -text\n"
    "*.zst filter=lfs diff=lfs merge=lfs -text\n"
    "*tfevents* filter=lfs diff=lfs merge=lfs -text\n";

static const char schema_sql[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS repos(id INTEGER PRIMARY KEY, type TEXT NOT NULL,"
    " name TEXT NOT NULL, private INTEGER NOT NULL DEFAULT 0, gated TEXT NOT NULL DEFAULT '',"
    " created INTEGER NOT NULL, next_pr INTEGER NOT NULL DEFAULT 1, UNIQUE(type, name));"
    "CREATE TABLE IF NOT EXISTS refs(repo INTEGER NOT NULL, name TEXT NOT NULL,"
    " commit_oid TEXT NOT NULL, PRIMARY KEY(repo, name));"
    "CREATE TABLE IF NOT EXISTS commits(oid TEXT PRIMARY KEY, repo INTEGER NOT NULL,"
    " parent TEXT NOT NULL, title TEXT NOT NULL, message TEXT NOT NULL, author TEXT NOT NULL,"
    " time INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS commits_repo ON commits(repo, oid);"
    "CREATE TABLE IF NOT EXISTS files(commit_oid TEXT NOT NULL, path TEXT NOT NULL,"
    " size INTEGER NOT NULL, oid TEXT NOT NULL, sha256 TEXT NOT NULL, lfs INTEGER NOT NULL,"
    " PRIMARY KEY(commit_oid, path)) WITHOUT ROWID;";

static int db_fail(struct mfs_hubd_store *st, struct mfs_err *err, const char *what)
{
    return mfs_err_set(err, -EIO, "hub store: cannot %s: %s", what, sqlite3_errmsg(st->db));
}

static int mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    size_t i;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s", dir);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    for (i = 1; tmp[i]; i++) {
        if (tmp[i] != '/')
            continue;
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        tmp[i] = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int mfs_hubd_store_open(const char *root, struct mfs_hubd_store **storep, struct mfs_err *err)
{
    struct mfs_hubd_store *st;
    char path[PATH_MAX];
    char *emsg = NULL;
    int rc;

    *storep = NULL;
    st = calloc(1, sizeof(*st));
    if (!st)
        return mfs_err_set(err, -ENOMEM, "hub store: out of memory");
    st->root = strdup(root);
    if (!st->root) {
        rc = mfs_err_set(err, -ENOMEM, "hub store: out of memory");
        goto out_free_st;
    }
    snprintf(path, sizeof(path), "%s/tmp", root);
    rc = mkdir_p(path);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/objects", root);
        rc = mkdir_p(path);
    }
    if (rc < 0) {
        rc = mfs_err_set(err, rc, "cannot create hub root '%s': %s", root, strerror(-rc));
        goto out_free_root;
    }
    snprintf(path, sizeof(path), "%s/hub.db", root);
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        rc = mfs_err_set(err, -EIO, "cannot open '%s': %s", path,
                         st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto out_close_db;
    }
    sqlite3_busy_timeout(st->db, 30000);
    if (sqlite3_exec(st->db, schema_sql, NULL, NULL, &emsg) != SQLITE_OK) {
        rc = mfs_err_set(err, -EIO, "cannot set up '%s': %s", path, emsg ? emsg : "?");
        sqlite3_free(emsg);
        goto out_close_db;
    }
    pthread_mutex_init(&st->lock, NULL);
    *storep = st;
    return 0;

out_close_db:
    sqlite3_close(st->db);
out_free_root:
    free(st->root);
out_free_st:
    free(st);
    return rc;
}

void mfs_hubd_store_close(struct mfs_hubd_store **storep)
{
    struct mfs_hubd_store *st;

    if (!storep || !*storep)
        return;
    st = *storep;
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->lock);
    free(st->root);
    free(st);
    *storep = NULL;
}

/* ---- blobs ---------------------------------------------------------------------------- */

int mfs_hubd_blob_path(struct mfs_hubd_store *st, const char *sha256, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/objects/%.2s/%s", st->root, sha256, sha256 + 2);

    return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

bool mfs_hubd_blob_exists(struct mfs_hubd_store *st, const char *sha256, uint64_t *size)
{
    char path[PATH_MAX];
    struct stat sb;

    if (!mfs_hash_is_hex(sha256, 64) || mfs_hubd_blob_path(st, sha256, path, sizeof(path)))
        return false;
    if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
        return false;
    if (size)
        *size = (uint64_t)sb.st_size;
    return true;
}

int mfs_hubd_tmp_path(struct mfs_hubd_store *st, const char *tag, char *buf, size_t size)
{
    unsigned char rnd[8];
    char hex[17];
    int n;

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0, sizeof(rnd));
    mfs_hash_to_hex(rnd, sizeof(rnd), hex);
    n = snprintf(buf, size, "%s/tmp/%s.%ld.%s", st->root, tag, (long)getpid(), hex);
    return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

int mfs_hubd_blob_adopt(struct mfs_hubd_store *st, const char *tmp, const char *sha256,
                        struct mfs_err *err)
{
    char path[PATH_MAX];
    char dir[PATH_MAX];
    int fd;
    int rc;

    if (mfs_hubd_blob_path(st, sha256, path, sizeof(path)))
        return mfs_err_set(err, -ENAMETOOLONG, "hub store: root path too long");
    fd = open(tmp, O_RDONLY);
    if (fd < 0)
        return mfs_err_set(err, -EIO, "cannot open '%s': %s", tmp, strerror(errno));
    rc = fsync(fd);
    close(fd);
    if (rc < 0)
        return mfs_err_set(err, -EIO, "cannot sync '%s': %s", tmp, strerror(errno));
    snprintf(dir, sizeof(dir), "%s/objects/%.2s", st->root, sha256);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return mfs_err_set(err, -EIO, "cannot create '%s': %s", dir, strerror(errno));
    /* Same name means same bytes: an existing blob is as good as ours. */
    if (rename(tmp, path) < 0) {
        rc = -errno;
        unlink(tmp);
        return mfs_err_set(err, rc == -ENOSPC ? -ENOSPC : -EIO, "cannot store blob '%s': %s",
                           sha256, strerror(-rc));
    }
    chmod(path, 0444);
    return 0;
}

static int write_all(int fd, const void *p, size_t len)
{
    const char *c = p;

    while (len > 0) {
        ssize_t w = write(fd, c, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int mfs_hubd_blob_put_file(struct mfs_hubd_store *st, const char *src, char sha256[65],
                           char oid[41], uint64_t *size, struct mfs_err *err)
{
    struct mfs_hash *hs = NULL;
    struct mfs_hash *hg = NULL;
    char tmp[PATH_MAX];
    char *buf;
    struct stat sb;
    uint64_t done = 0;
    int in;
    int out;
    int rc;

    buf = malloc(1 << 20);
    if (!buf)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    in = open(src, O_RDONLY);
    if (in < 0) {
        rc = mfs_err_set(err, -errno, "cannot open '%s': %s", src, strerror(errno));
        goto out_free_buf;
    }
    if (fstat(in, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        rc = mfs_err_set(err, -EINVAL, "cannot import '%s': not a regular file", src);
        goto out_close_in;
    }
    /* A cut-short temp name could land outside ROOT/tmp: refuse it. */
    out = mfs_hubd_tmp_path(st, "import", tmp, sizeof(tmp)) < 0 ? -1
          : open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (out < 0) {
        rc = mfs_err_set(err, -EIO, "cannot create '%s': %s", tmp, strerror(errno));
        goto out_close_in;
    }
    hs = mfs_hash_new(MFS_HASH_SHA256);
    hg = mfs_hash_git_blob_new((uint64_t)sb.st_size);
    if (!hs || !hg) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_unlink;
    }
    for (;;) {
        ssize_t n = read(in, buf, 1 << 20);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = mfs_err_set(err, -EIO, "cannot read '%s': %s", src, strerror(errno));
            goto out_unlink;
        }
        if (n == 0)
            break;
        mfs_hash_update(hs, buf, (size_t)n);
        mfs_hash_update(hg, buf, (size_t)n);
        rc = write_all(out, buf, (size_t)n);
        if (rc < 0) {
            rc = mfs_err_set(err, rc == -ENOSPC ? -ENOSPC : -EIO, "cannot write '%s': %s",
                             tmp, strerror(-rc));
            goto out_unlink;
        }
        done += (uint64_t)n;
    }
    if (done != (uint64_t)sb.st_size) {
        rc = mfs_err_set(err, -EIO, "cannot import '%s': it changed while being read", src);
        goto out_unlink;
    }
    mfs_hash_final_hex(hs, sha256);
    mfs_hash_final_hex(hg, oid);
    hs = NULL;
    hg = NULL;
    close(out);
    out = -1;
    rc = mfs_hubd_blob_adopt(st, tmp, sha256, err);
    if (rc == 0)
        *size = done;
    goto out_close_in;

out_unlink:
    close(out);
    unlink(tmp);
out_close_in:
    mfs_hash_free(hs);
    mfs_hash_free(hg);
    close(in);
out_free_buf:
    free(buf);
    return rc;
}

int mfs_hubd_blob_put_mem(struct mfs_hubd_store *st, const void *p, size_t len,
                          char sha256[65], char oid[41], struct mfs_err *err)
{
    char tmp[PATH_MAX];
    int fd;
    int rc;

    mfs_hash_sha256_hex(p, len, sha256);
    mfs_hash_git_blob_hex(p, len, oid);
    if (mfs_hubd_blob_exists(st, sha256, NULL))
        return 0;
    fd = mfs_hubd_tmp_path(st, "mem", tmp, sizeof(tmp)) < 0 ? -1
         : open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return mfs_err_set(err, -EIO, "cannot create '%s': %s", tmp, strerror(errno));
    rc = write_all(fd, p, len);
    close(fd);
    if (rc < 0) {
        unlink(tmp);
        return mfs_err_set(err, rc == -ENOSPC ? -ENOSPC : -EIO, "cannot write '%s': %s", tmp,
                           strerror(-rc));
    }
    return mfs_hubd_blob_adopt(st, tmp, sha256, err);
}

size_t mfs_hubd_lfs_pointer(const char *sha256, uint64_t size, char *buf, size_t bufsize)
{
    int n = snprintf(buf, bufsize, "version https://git-lfs.github.com/spec/v1\n"
                     "oid sha256:%s\nsize %" PRIu64 "\n", sha256, size);

    return n < 0 ? 0 : (size_t)n;
}

/* ---- names ---------------------------------------------------------------------------- */

/* True iff s is well-formed UTF-8 with no control byte and no backslash:
 * overlong forms (a disguised "..") and surrogates are refused, and
 * clients on Windows would take a backslash for a folder separator. */
static bool path_bytes_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s;
        unsigned need;
        unsigned cp;
        unsigned k;

        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f || c == '\\')
                return false;
            s++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;                   /* continuation, overlong lead or > U+10FFFF */
        }
        for (k = 1; k <= need; k++) {
            if ((s[k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[k] & 0x3fu);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0))
            return false;
        s += need + 1;
    }
    return true;
}

bool mfs_hubd_path_ok(const char *path)
{
    const char *p = path;
    size_t len = strlen(path);

    if (len == 0 || len >= 1024 || path[0] == '/')
        return false;
    if (!path_bytes_ok((const unsigned char *)path))
        return false;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);

        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && !memcmp(p, "..", 2)) ||
            (n == 4 && !memcmp(p, ".git", 4)))
            return false;
        if (!e)
            break;
        p = e + 1;
        if (!*p)
            return false;                   /* trailing '/' */
    }
    return true;
}

static bool name_part_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 96 || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
        if (i > 0 && ((c == '-' && s[i - 1] == '-') || (c == '.' && s[i - 1] == '.')))
            return false;
    }
    return true;
}

bool mfs_hubd_repo_name_ok(const char *name)
{
    const char *slash = strchr(name, '/');
    size_t len = strlen(name);

    if (len == 0 || len >= MFS_HUBD_NAME_MAX)
        return false;
    if (len >= 4 && !strcmp(name + len - 4, ".git"))
        return false;
    if (!slash)
        return name_part_ok(name, len);
    if (strchr(slash + 1, '/'))
        return false;
    return name_part_ok(name, (size_t)(slash - name)) &&
           name_part_ok(slash + 1, strlen(slash + 1));
}

static bool attrs_match(const char *attrs, const char *path)
{
    const char *base = strrchr(path, '/');
    const char *line = attrs;
    bool lfs = false;

    base = base ? base + 1 : path;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        char *pat;
        char *rest;
        char *save = NULL;

        if (n < sizeof(buf)) {
            memcpy(buf, line, n);
            buf[n] = '\0';
            pat = strtok_r(buf, " \t\r", &save);
            rest = pat ? strtok_r(NULL, "\r", &save) : NULL;
            if (pat && pat[0] != '#' && rest) {
                const char *p = pat[0] == '/' ? pat + 1 : pat;
                bool hit = strchr(p, '/') ? fnmatch(p, path, 0) == 0 : fnmatch(p, base, 0) == 0;

                /* Later lines override earlier ones, as in git. */
                if (hit && strstr(rest, "filter=lfs"))
                    lfs = true;
                else if (hit && (strstr(rest, "-filter") || strstr(rest, "!filter")))
                    lfs = false;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return lfs;
}

bool mfs_hubd_attr_is_lfs(const char *attrs, const char *path)
{
    if (attrs && attrs_match(attrs, path))
        return true;
    return attrs_match(mfs_hubd_default_gitattributes, path);
}

/* ---- repos ---------------------------------------------------------------------------- */

static int repo_row(sqlite3_stmt *s, struct mfs_hubd_repo *repo)
{
    memset(repo, 0, sizeof(*repo));
    repo->id = sqlite3_column_int64(s, 0);
    snprintf(repo->type, sizeof(repo->type), "%s", (const char *)sqlite3_column_text(s, 1));
    snprintf(repo->name, sizeof(repo->name), "%s", (const char *)sqlite3_column_text(s, 2));
    repo->is_private = sqlite3_column_int(s, 3) != 0;
    snprintf(repo->gated, sizeof(repo->gated), "%s", (const char *)sqlite3_column_text(s, 4));
    repo->created = sqlite3_column_int64(s, 5);
    return 0;
}

static int repo_get_locked(struct mfs_hubd_store *st, const char *type, const char *name,
                           struct mfs_hubd_repo *repo, struct mfs_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (sqlite3_prepare_v2(st->db, "SELECT id, type, name, private, gated, created FROM repos"
                           " WHERE type = ? AND name = ?", -1, &s, NULL) != SQLITE_OK)
        return db_fail(st, err, "look up a repo");
    sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = repo_row(s, repo);
    else if (rc == SQLITE_DONE)
        rc = mfs_err_set(err, -ENOENT, "Repository not found: '%s'", name);
    else
        rc = db_fail(st, err, "look up a repo");
    sqlite3_finalize(s);
    return rc;
}

int mfs_hubd_repo_get(struct mfs_hubd_store *st, const char *type, const char *name,
                      struct mfs_hubd_repo *repo, struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    rc = repo_get_locked(st, type, name, repo, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int mfs_hubd_repo_create(struct mfs_hubd_store *st, const char *type, const char *name,
                         bool is_private, const char *gated, struct mfs_hubd_repo *repo,
                         struct mfs_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (!mfs_hubd_repo_name_ok(name))
        return mfs_err_set(err, -EINVAL, "invalid repo id '%s'", name);
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "INSERT INTO repos(type, name, private, gated, created)"
                           " VALUES(?, ?, ?, ?, ?)", -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "create a repo");
        goto out_unlock;
    }
    sqlite3_bind_text(s, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, is_private);
    sqlite3_bind_text(s, 4, gated ? gated : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT) {
        rc = mfs_err_set(err, -EEXIST, "You already created this %s repo: '%s'", type, name);
        goto out_finalize;
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(st, err, "create a repo");
        goto out_finalize;
    }
    rc = repo ? repo_get_locked(st, type, name, repo, err) : 0;
out_finalize:
    sqlite3_finalize(s);
out_unlock:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int exec_bind(struct mfs_hubd_store *st, const char *sql, const char *what,
                     struct mfs_err *err, int64_t i1, const char *t2, const char *t3)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return db_fail(st, err, what);
    sqlite3_bind_int64(s, 1, i1);
    if (t2)
        sqlite3_bind_text(s, 2, t2, -1, SQLITE_STATIC);
    if (t3)
        sqlite3_bind_text(s, 3, t3, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        rc = sqlite3_changes(st->db);
    else if (rc == SQLITE_CONSTRAINT)
        rc = mfs_err_set(err, -EEXIST, "cannot %s: it exists", what);
    else
        rc = db_fail(st, err, what);
    sqlite3_finalize(s);
    return rc;
}

int mfs_hubd_repo_set_flags(struct mfs_hubd_store *st, int64_t repo_id, bool is_private,
                            const char *gated, struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    rc = exec_bind(st, is_private ? "UPDATE repos SET private = 1, gated = ?2 WHERE id = ?1"
                   : "UPDATE repos SET private = 0, gated = ?2 WHERE id = ?1",
                   "update a repo", err, repo_id, gated ? gated : "", NULL);
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        return mfs_err_set(err, -ENOENT, "Repository not found");
    return rc < 0 ? rc : 0;
}

int mfs_hubd_repo_delete(struct mfs_hubd_store *st, int64_t repo_id, struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "begin a transaction");
        goto out_unlock;
    }
    rc = exec_bind(st, "DELETE FROM files WHERE commit_oid IN"
                   " (SELECT oid FROM commits WHERE repo = ?)", "delete files", err, repo_id,
                   NULL, NULL);
    if (rc >= 0)
        rc = exec_bind(st, "DELETE FROM commits WHERE repo = ?", "delete commits", err,
                       repo_id, NULL, NULL);
    if (rc >= 0)
        rc = exec_bind(st, "DELETE FROM refs WHERE repo = ?", "delete refs", err, repo_id,
                       NULL, NULL);
    if (rc >= 0) {
        rc = exec_bind(st, "DELETE FROM repos WHERE id = ?", "delete repo", err, repo_id,
                       NULL, NULL);
        if (rc == 0)
            rc = mfs_err_set(err, -ENOENT, "Repository not found");
    }
    if (rc < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        goto out_unlock;
    }
    rc = 0;
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "commit");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
out_unlock:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- refs ----------------------------------------------------------------------------- */

static int ref_get_locked(struct mfs_hubd_store *st, int64_t repo_id, const char *name,
                          char commit[41])
{
    sqlite3_stmt *s = NULL;
    int rc = -ENOENT;

    if (sqlite3_prepare_v2(st->db, "SELECT commit_oid FROM refs WHERE repo = ? AND name = ?",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, repo_id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        snprintf(commit, 41, "%s", (const char *)sqlite3_column_text(s, 0));
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

static bool is_lower_hex(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static bool commit_exists_locked(struct mfs_hubd_store *st, int64_t repo_id, const char *oid)
{
    sqlite3_stmt *s = NULL;
    bool hit;

    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM commits WHERE repo = ? AND oid = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_int64(s, 1, repo_id);
    sqlite3_bind_text(s, 2, oid, -1, SQLITE_STATIC);
    hit = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return hit;
}

static int rev_resolve_locked(struct mfs_hubd_store *st, int64_t repo_id, const char *rev,
                              char commit[41], char refname[MFS_HUBD_REF_MAX],
                              struct mfs_err *err)
{
    char ref[MFS_HUBD_REF_MAX];
    size_t len = strlen(rev);
    char dummy[MFS_HUBD_REF_MAX];

    if (!refname)
        refname = dummy;
    refname[0] = '\0';
    if (len == 0 || len >= MFS_HUBD_REF_MAX - 16)
        return mfs_err_set(err, -ENOENT, "Invalid rev id: '%s'", rev);
    if (!strcmp(rev, "HEAD"))
        rev = "main";
    /* A full commit id names that commit even when a branch or tag has the
     * same name: clients cache 40-hex revisions as immutable (hub-api.md
     * section 1), so a branch must not be able to shadow one. */
    if (len == 40 && is_lower_hex(rev) && commit_exists_locked(st, repo_id, rev)) {
        snprintf(commit, 41, "%s", rev);
        return 0;
    }
    if (!strncmp(rev, "refs/", 5)) {
        if (ref_get_locked(st, repo_id, rev, commit) == 0) {
            snprintf(refname, MFS_HUBD_REF_MAX, "%s", rev);
            return 0;
        }
    } else {
        snprintf(ref, sizeof(ref), "refs/heads/%s", rev);
        if (ref_get_locked(st, repo_id, ref, commit) == 0) {
            snprintf(refname, MFS_HUBD_REF_MAX, "%s", ref);
            return 0;
        }
        snprintf(ref, sizeof(ref), "refs/tags/%s", rev);
        if (ref_get_locked(st, repo_id, ref, commit) == 0) {
            snprintf(refname, MFS_HUBD_REF_MAX, "%s", ref);
            return 0;
        }
    }
    if (len >= 4 && len <= 40 && is_lower_hex(rev)) {
        sqlite3_stmt *s = NULL;
        int found = 0;

        /* The rev is plain hex, so it cannot carry LIKE wildcards. */
        if (sqlite3_prepare_v2(st->db, "SELECT oid FROM commits WHERE repo = ? AND oid LIKE ?"
                               " || '%' LIMIT 2", -1, &s, NULL) != SQLITE_OK)
            return db_fail(st, err, "look up a commit");
        sqlite3_bind_int64(s, 1, repo_id);
        sqlite3_bind_text(s, 2, rev, -1, SQLITE_STATIC);
        while (sqlite3_step(s) == SQLITE_ROW) {
            if (found++ == 0)
                snprintf(commit, 41, "%s", (const char *)sqlite3_column_text(s, 0));
        }
        sqlite3_finalize(s);
        if (found == 1)
            return 0;
    }
    return mfs_err_set(err, -ENOENT, "Invalid rev id: '%s'", rev);
}

int mfs_hubd_rev_resolve(struct mfs_hubd_store *st, int64_t repo_id, const char *rev,
                         char commit[41], char refname[MFS_HUBD_REF_MAX], struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    rc = rev_resolve_locked(st, repo_id, rev, commit, refname, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int mfs_hubd_refs_list(struct mfs_hubd_store *st, int64_t repo_id, char ***names,
                       char ***commits, size_t *n, struct mfs_err *err)
{
    sqlite3_stmt *s = NULL;
    char **nv = NULL;
    char **cv = NULL;
    size_t cnt = 0;
    size_t cap = 0;
    int rc = 0;

    *names = NULL;
    *commits = NULL;
    *n = 0;
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "SELECT name, commit_oid FROM refs WHERE repo = ?"
                           " ORDER BY name", -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "list refs");
        goto out_unlock;
    }
    sqlite3_bind_int64(s, 1, repo_id);
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **a = realloc(nv, nc * sizeof(*a));
            char **b;

            if (a)
                nv = a;
            b = a ? realloc(cv, nc * sizeof(*b)) : NULL;
            if (!b) {
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
                break;
            }
            cv = b;
            cap = nc;
        }
        nv[cnt] = strdup((const char *)sqlite3_column_text(s, 0));
        cv[cnt] = strdup((const char *)sqlite3_column_text(s, 1));
        cnt++;
        if (!nv[cnt - 1] || !cv[cnt - 1]) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            break;
        }
    }
    sqlite3_finalize(s);
out_unlock:
    pthread_mutex_unlock(&st->lock);
    if (rc < 0) {
        size_t i;

        for (i = 0; i < cnt; i++) {
            free(nv[i]);
            free(cv[i]);
        }
        free(nv);
        free(cv);
        return rc;
    }
    *names = nv;
    *commits = cv;
    *n = cnt;
    return 0;
}

int mfs_hubd_ref_set(struct mfs_hubd_store *st, int64_t repo_id, const char *name,
                     const char *commit, bool must_be_new, struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    rc = exec_bind(st, must_be_new ? "INSERT INTO refs(repo, name, commit_oid) VALUES(?, ?, ?)"
                   : "INSERT OR REPLACE INTO refs(repo, name, commit_oid) VALUES(?, ?, ?)",
                   "set a ref", err, repo_id, name, commit);
    pthread_mutex_unlock(&st->lock);
    if (rc == -EEXIST)
        return mfs_err_set(err, -EEXIST, "Reference %s already exists", name);
    return rc < 0 ? rc : 0;
}

int mfs_hubd_ref_delete(struct mfs_hubd_store *st, int64_t repo_id, const char *name,
                        struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    rc = exec_bind(st, "DELETE FROM refs WHERE repo = ? AND name = ?", "delete a ref", err,
                   repo_id, name, NULL);
    pthread_mutex_unlock(&st->lock);
    if (rc == 0)
        return mfs_err_set(err, -ENOENT, "Invalid rev id: '%s'", name);
    return rc < 0 ? rc : 0;
}

/* ---- files and commits ---------------------------------------------------------------- */

static void file_row(sqlite3_stmt *s, struct mfs_hubd_file *f)
{
    f->path = strdup((const char *)sqlite3_column_text(s, 0));
    f->size = (uint64_t)sqlite3_column_int64(s, 1);
    snprintf(f->oid, sizeof(f->oid), "%s", (const char *)sqlite3_column_text(s, 2));
    snprintf(f->sha256, sizeof(f->sha256), "%s", (const char *)sqlite3_column_text(s, 3));
    f->lfs = sqlite3_column_int(s, 4) != 0;
}

void mfs_hubd_file_release(struct mfs_hubd_file *file)
{
    if (!file)
        return;
    free(file->path);
    file->path = NULL;
}

void mfs_hubd_files_free(struct mfs_hubd_file *files, size_t n)
{
    size_t i;

    if (!files)
        return;
    for (i = 0; i < n; i++)
        free(files[i].path);
    free(files);
}

int mfs_hubd_files_list(struct mfs_hubd_store *st, const char *commit,
                        struct mfs_hubd_file **files, size_t *n, struct mfs_err *err)
{
    struct mfs_hubd_file *v = NULL;
    sqlite3_stmt *s = NULL;
    size_t cnt = 0;
    size_t cap = 0;
    int rc = 0;

    *files = NULL;
    *n = 0;
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "SELECT path, size, oid, sha256, lfs FROM files"
                           " WHERE commit_oid = ? ORDER BY path", -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "list files");
        goto out_unlock;
    }
    sqlite3_bind_text(s, 1, commit, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct mfs_hubd_file *a = realloc(v, nc * sizeof(*a));

            if (!a) {
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
                break;
            }
            v = a;
            cap = nc;
        }
        file_row(s, &v[cnt]);
        if (!v[cnt].path) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        cnt++;
    }
    sqlite3_finalize(s);
out_unlock:
    pthread_mutex_unlock(&st->lock);
    if (rc < 0) {
        mfs_hubd_files_free(v, cnt);
        return rc;
    }
    *files = v;
    *n = cnt;
    return 0;
}

static int file_get_locked(struct mfs_hubd_store *st, const char *commit, const char *path,
                           struct mfs_hubd_file *file, struct mfs_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc;

    memset(file, 0, sizeof(*file));
    if (sqlite3_prepare_v2(st->db, "SELECT path, size, oid, sha256, lfs FROM files"
                           " WHERE commit_oid = ? AND path = ?", -1, &s, NULL) != SQLITE_OK)
        return db_fail(st, err, "look up a file");
    sqlite3_bind_text(s, 1, commit, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        file_row(s, file);
        rc = file->path ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        rc = mfs_err_set(err, -ENOENT, "Entry not found: '%s'", path);
    } else {
        rc = db_fail(st, err, "look up a file");
    }
    sqlite3_finalize(s);
    return rc;
}

int mfs_hubd_file_get(struct mfs_hubd_store *st, const char *commit, const char *path,
                      struct mfs_hubd_file *file, struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    rc = file_get_locked(st, commit, path, file, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void mfs_hubd_commit_info_release(struct mfs_hubd_commit_info *info)
{
    if (!info)
        return;
    free(info->message);
    info->message = NULL;
}

int mfs_hubd_commit_get(struct mfs_hubd_store *st, const char *commit,
                        struct mfs_hubd_commit_info *info, struct mfs_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc;

    memset(info, 0, sizeof(*info));
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "SELECT oid, parent, title, message, author, time"
                           " FROM commits WHERE oid = ?", -1, &s, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "look up a commit");
        goto out_unlock;
    }
    sqlite3_bind_text(s, 1, commit, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(info->oid, sizeof(info->oid), "%s", (const char *)sqlite3_column_text(s, 0));
        snprintf(info->parent, sizeof(info->parent), "%s",
                 (const char *)sqlite3_column_text(s, 1));
        snprintf(info->title, sizeof(info->title), "%s",
                 (const char *)sqlite3_column_text(s, 2));
        info->message = strdup((const char *)sqlite3_column_text(s, 3));
        snprintf(info->author, sizeof(info->author), "%s",
                 (const char *)sqlite3_column_text(s, 4));
        info->time = sqlite3_column_int64(s, 5);
        rc = info->message ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
    } else if (rc == SQLITE_DONE) {
        rc = mfs_err_set(err, -ENOENT, "Invalid rev id: '%s'", commit);
    } else {
        rc = db_fail(st, err, "look up a commit");
    }
    sqlite3_finalize(s);
out_unlock:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* Read a small stored blob (.gitattributes) into a NUL-terminated string. */
static char *blob_read_small(struct mfs_hubd_store *st, const char *sha256, size_t max)
{
    char path[PATH_MAX];
    struct mfs_buf b = MFS_BUF_INIT;
    char chunk[4096];
    FILE *f;
    size_t n;

    if (mfs_hubd_blob_path(st, sha256, path, sizeof(path)))
        return NULL;
    f = fopen(path, "rb");
    if (!f)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < max)
        mfs_buf_append(&b, chunk, n);
    fclose(f);
    return mfs_buf_steal(&b);
}

/* Append ".gitattributes" lines for LFS files of commit no pattern covers
 * (hub-api.md section 6.6, last paragraph).  Runs inside the transaction. */
static int fix_gitattributes(struct mfs_hubd_store *st, const char *commit,
                             const struct mfs_hubd_op *ops, size_t nops, struct mfs_err *err)
{
    struct mfs_hubd_file ga;
    struct mfs_buf text = MFS_BUF_INIT;
    sqlite3_stmt *s = NULL;
    char *old = NULL;
    char sha[65];
    char oid[41];
    bool changed = false;
    size_t i;
    int rc;

    rc = file_get_locked(st, commit, ".gitattributes", &ga, NULL);
    if (rc == 0 && !ga.lfs)
        old = blob_read_small(st, ga.sha256, 1 << 20);
    mfs_hubd_file_release(&ga);
    if (old && mfs_buf_puts(&text, old) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    for (i = 0; i < nops; i++) {
        const struct mfs_hubd_op *op = &ops[i];

        if (op->kind != MFS_HUBD_OP_ADD || !op->lfs)
            continue;
        if (text.len ? attrs_match(text.data, op->path) : false)
            continue;
        if (text.len && text.data[text.len - 1] != '\n')
            mfs_buf_puts(&text, "\n");
        /* Spaces would split the pattern; git escapes them as [[:space:]]. */
        if (strpbrk(op->path, " \t*?[\\#!")) {
            const char *c;

            for (c = op->path; *c; c++) {
                if (*c == ' ' || *c == '\t')
                    mfs_buf_puts(&text, "[[:space:]]");
                else if (strchr("*?[\\#!", *c))
                    mfs_buf_printf(&text, "\\%c", *c);
                else
                    mfs_buf_append(&text, c, 1);
            }
            mfs_buf_puts(&text, " filter=lfs diff=lfs merge=lfs -text\n");
        } else {
            mfs_buf_printf(&text, "%s filter=lfs diff=lfs merge=lfs -text\n", op->path);
        }
        changed = true;
    }
    if (!changed) {
        rc = 0;
        goto out_free;
    }
    rc = mfs_hubd_blob_put_mem(st, text.data, text.len, sha, oid, err);
    if (rc < 0)
        goto out_free;
    if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO files(commit_oid, path, size, oid,"
                           " sha256, lfs) VALUES(?, '.gitattributes', ?, ?, ?, 0)", -1, &s,
                           NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "update .gitattributes");
        goto out_free;
    }
    sqlite3_bind_text(s, 1, commit, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)text.len);
    sqlite3_bind_text(s, 3, oid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, sha, -1, SQLITE_STATIC);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(st, err, "update .gitattributes");
    sqlite3_finalize(s);
out_free:
    free(old);
    mfs_buf_release(&text);
    return rc;
}

/* True iff commit has a file at path, or (under=true) a file below path/. */
static bool path_taken(struct mfs_hubd_store *st, const char *commit, const char *path,
                       size_t len, bool under)
{
    sqlite3_stmt *s = NULL;
    char buf[1100];
    bool hit = false;

    snprintf(buf, sizeof(buf), "%.*s%s", (int)len, path, under ? "/" : "");
    if (sqlite3_prepare_v2(st->db, under ? "SELECT 1 FROM files WHERE commit_oid = ?1 AND"
                           " substr(path, 1, length(?2)) = ?2 LIMIT 1"
                           : "SELECT 1 FROM files WHERE commit_oid = ?1 AND path = ?2",
                           -1, &s, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(s, 1, commit, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, buf, -1, SQLITE_STATIC);
    hit = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_finalize(s);
    return hit;
}

/* A file cannot sit where a folder is, nor below another file (git trees). */
static int check_no_clash(struct mfs_hubd_store *st, const char *commit, const char *path,
                          struct mfs_err *err)
{
    const char *p;

    if (path_taken(st, commit, path, strlen(path), true))
        return mfs_err_set(err, -EINVAL, "cannot add '%s': a folder of that name exists", path);
    for (p = strchr(path, '/'); p; p = strchr(p + 1, '/'))
        if (path_taken(st, commit, path, (size_t)(p - path), false))
            return mfs_err_set(err, -EINVAL, "cannot add '%s': '%.*s' is a file", path,
                               (int)(p - path), path);
    return 0;
}

static int apply_op(struct mfs_hubd_store *st, const char *commit, const struct mfs_hubd_op *op,
                    struct mfs_err *err)
{
    sqlite3_stmt *s = NULL;
    char pointer[256];
    char dir[1100];
    int rc;

    if (!mfs_hubd_path_ok(op->path))
        return mfs_err_set(err, -EINVAL, "invalid path in repo: '%s'", op->path);
    switch (op->kind) {
    case MFS_HUBD_OP_ADD:
        rc = check_no_clash(st, commit, op->path, err);
        if (rc < 0)
            return rc;
        if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO files(commit_oid, path, size,"
                               " oid, sha256, lfs) VALUES(?, ?, ?, ?, ?, ?)", -1, &s,
                               NULL) != SQLITE_OK)
            return db_fail(st, err, "add a file");
        sqlite3_bind_text(s, 1, commit, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, op->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)op->size);
        if (op->lfs) {
            char poid[41];
            size_t n = mfs_hubd_lfs_pointer(op->sha256, op->size, pointer, sizeof(pointer));

            mfs_hash_git_blob_hex(pointer, n, poid);
            sqlite3_bind_text(s, 4, poid, -1, SQLITE_TRANSIENT);
        } else {
            sqlite3_bind_text(s, 4, op->oid, -1, SQLITE_STATIC);
        }
        sqlite3_bind_text(s, 5, op->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 6, op->lfs);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(st, err, "add a file");
        sqlite3_finalize(s);
        return rc;
    case MFS_HUBD_OP_DELETE_FILE:
        rc = exec_bind(st, "DELETE FROM files WHERE ?1 = ?1 AND commit_oid = ?2 AND path = ?3",
                       "delete a file", err, 0, commit, op->path);
        if (rc == 0)
            return mfs_err_set(err, -ENOENT, "A file with this name doesn't exist: '%s'",
                               op->path);
        return rc < 0 ? rc : 0;
    case MFS_HUBD_OP_DELETE_FOLDER:
        snprintf(dir, sizeof(dir), "%s/", op->path);
        rc = exec_bind(st, "DELETE FROM files WHERE ?1 = ?1 AND commit_oid = ?2 AND"
                       " substr(path, 1, length(?3)) = ?3", "delete a folder", err, 0, commit,
                       dir);
        if (rc == 0)
            return mfs_err_set(err, -ENOENT, "A folder with this name doesn't exist: '%s'",
                               op->path);
        return rc < 0 ? rc : 0;
    }
    return mfs_err_set(err, -EINVAL, "unknown commit operation");
}

static void new_commit_oid(const char *parent, const char *title, char oid[41])
{
    struct mfs_hash *h = mfs_hash_new(MFS_HASH_SHA1);
    unsigned char rnd[16];
    struct timespec ts;
    char line[128];

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        memset(rnd, 0, sizeof(rnd));
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(line, sizeof(line), "commit %lld.%09ld %ld\n", (long long)ts.tv_sec, ts.tv_nsec,
             (long)getpid());
    if (!h) {
        mfs_hash_sha256_hex(rnd, sizeof(rnd), line);
        memcpy(oid, line, 40);
        oid[40] = '\0';
        return;
    }
    mfs_hash_update(h, line, strlen(line));
    mfs_hash_update(h, parent, strlen(parent));
    mfs_hash_update(h, title, strlen(title));
    mfs_hash_update(h, rnd, sizeof(rnd));
    mfs_hash_final_hex(h, oid);
}

int mfs_hubd_commit_create(struct mfs_hubd_store *st, int64_t repo_id,
                           const struct mfs_hubd_commit_req *req, char oid[41], int *pr_num,
                           struct mfs_err *err)
{
    char ref[MFS_HUBD_REF_MAX];
    char head[41] = "";
    char base[41] = "";
    sqlite3_stmt *s = NULL;
    const char *rev = req->rev ? req->rev : "main";
    size_t i;
    int rc;

    *pr_num = 0;
    oid[0] = '\0';
    if (!strncmp(rev, "refs/", 5)) {
        if (strncmp(rev, "refs/heads/", 11) && strncmp(rev, "refs/pr/", 8))
            return mfs_err_set(err, -ENOENT, "Invalid rev id: '%s' is not a branch", rev);
        snprintf(ref, sizeof(ref), "%s", rev);
    } else {
        if (strlen(rev) + 12 >= sizeof(ref))
            return mfs_err_set(err, -ENOENT, "Invalid rev id: '%s'", rev);
        snprintf(ref, sizeof(ref), "refs/heads/%s", !strcmp(rev, "HEAD") ? "main" : rev);
    }
    if (req->create_pr && strncmp(ref, "refs/heads/", 11))
        return mfs_err_set(err, -ENOENT, "Invalid rev id: cannot open a pull request on '%s'",
                           rev);
    pthread_mutex_lock(&st->lock);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "begin a transaction");
        goto out_unlock;
    }
    rc = ref_get_locked(st, repo_id, ref, head);
    if (rc == -ENOENT && !req->create_branch) {
        rc = mfs_err_set(err, -ENOENT, "Invalid rev id: '%s'", rev);
        goto out_rollback;
    }
    if (rc == -EIO) {
        rc = db_fail(st, err, "read a ref");
        goto out_rollback;
    }
    snprintf(base, sizeof(base), "%s", head);
    if (req->create_pr) {
        sqlite3_stmt *q = NULL;

        if (req->parent && *req->parent) {
            rc = rev_resolve_locked(st, repo_id, req->parent, base, NULL, err);
            if (rc < 0)
                goto out_rollback;
        }
        if (sqlite3_prepare_v2(st->db, "UPDATE repos SET next_pr = next_pr + 1 WHERE id = ?"
                               " RETURNING next_pr - 1", -1, &q, NULL) != SQLITE_OK) {
            rc = db_fail(st, err, "number a pull request");
            goto out_rollback;
        }
        sqlite3_bind_int64(q, 1, repo_id);
        if (sqlite3_step(q) == SQLITE_ROW)
            *pr_num = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
        if (*pr_num <= 0) {
            rc = db_fail(st, err, "number a pull request");
            goto out_rollback;
        }
        snprintf(ref, sizeof(ref), "refs/pr/%d", *pr_num);
    } else if (req->parent && *req->parent) {
        size_t plen = strlen(req->parent);

        if (plen > 40 || strncmp(head, req->parent, plen) != 0) {
            rc = mfs_err_set(err, -ESTALE, "The branch was updated since you opened this page."
                             " Please refresh and try again.");
            goto out_rollback;
        }
    }
    new_commit_oid(base, req->title ? req->title : "", oid);
    if (base[0]) {
        rc = exec_bind(st, "INSERT INTO files(commit_oid, path, size, oid, sha256, lfs)"
                       " SELECT ?2, path, size, oid, sha256, lfs FROM files"
                       " WHERE commit_oid = ?3 AND ?1 = ?1", "copy the file list", err, 0,
                       oid, base);
        if (rc < 0)
            goto out_rollback;
    }
    for (i = 0; i < req->nops; i++) {
        rc = apply_op(st, oid, &req->ops[i], err);
        if (rc < 0)
            goto out_rollback;
    }
    rc = fix_gitattributes(st, oid, req->ops, req->nops, err);
    if (rc < 0)
        goto out_rollback;
    if (sqlite3_prepare_v2(st->db, "INSERT INTO commits(oid, repo, parent, title, message,"
                           " author, time) VALUES(?, ?, ?, ?, ?, ?, ?)", -1, &s,
                           NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "record a commit");
        goto out_rollback;
    }
    sqlite3_bind_text(s, 1, oid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, repo_id);
    sqlite3_bind_text(s, 3, base, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, req->title ? req->title : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, req->message ? req->message : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, req->author ? req->author : "user", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(st, err, "record a commit");
    sqlite3_finalize(s);
    if (rc < 0)
        goto out_rollback;
    rc = exec_bind(st, "INSERT OR REPLACE INTO refs(repo, name, commit_oid) VALUES(?, ?, ?)",
                   "move the ref", err, repo_id, ref, oid);
    if (rc < 0)
        goto out_rollback;
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_fail(st, err, "commit");
        goto out_rollback;
    }
    rc = 0;
    goto out_unlock;

out_rollback:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    oid[0] = '\0';
    *pr_num = 0;
out_unlock:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int mfs_hubd_assembly_path(struct mfs_hubd_store *st, const char *oid, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/tmp/assembly-%s", st->root, oid);

    return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

int mfs_hubd_part_path(struct mfs_hubd_store *st, const char *oid, unsigned part, char *buf,
                       size_t size)
{
    int n = snprintf(buf, size, "%s/tmp/part-%s-%u", st->root, oid, part);

    return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}
