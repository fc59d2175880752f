/*
 * tests/mount/test_view_write.c - the writable view (fs/view.h, "writes")
 * driven directly over a real stage (cache/stage.h) in $MFS_TMP, without
 * /dev/fuse: the commit is data/models/stories260K-hf read from disk.
 *
 * docs/design.md, Writes: "Writing, creating, renaming or deleting files
 * under the mount stages the change durably ... and shows it in the mount
 * at once."  Each case checks the view (read-your-writes, listings, inode
 * numbers) and the stage (what a push would send), and a second view over
 * the same stage (a remount) shows the same tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/stage.h"
#include "check.h"
#include "fs/view.h"

#define MODEL "models/stories260K-hf"

static const struct mfs_cache_repo REPO = { "http://hub.test", "model", "org/w" };

static char g_dir[1024];                    /* the model folder (the commit's bytes) */

/* The commit's bytes: the model folder on disk. */
static ssize_t disk_read(const struct mfs_entry *e, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    char path[2048];

    snprintf(path, sizeof(path), "%s/%s", g_dir, e->path);
    return check_pread_file(path, off, len, buf, err);
}

static ssize_t view_read(void *ctx, const struct mfs_entry *e, uint64_t stream, uint64_t off,
                         size_t len, void *buf, struct mfs_err *err)
{
    (void)ctx;
    (void)stream;
    return disk_read(e, off, len, buf, err);
}

static ssize_t base_read(void *ctx, const struct mfs_entry *e, uint64_t off, size_t len,
                         void *buf, struct mfs_err *err)
{
    (void)ctx;
    return disk_read(e, off, len, buf, err);
}

static unsigned char *model_file(const char *name, size_t *n)
{
    char path[2048];

    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    return (unsigned char *)check_slurp(path, n);
}

/* Inode of path ("a/b") in v, 0 if missing (counts lookups: tests only). */
static uint64_t ino_of(struct mfs_view *v, const char *path)
{
    char copy[1024];
    char *save = NULL;
    uint64_t ino = MFS_VIEW_ROOT_INO;
    struct mfs_view_attr a;

    snprintf(copy, sizeof(copy), "%s", path);
    for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (mfs_view_lookup(v, ino, t, &a, NULL) < 0)
            return 0;
        ino = a.ino;
    }
    return ino;
}

/* The whole content of path through an open handle; NULL when it fails. */
static unsigned char *read_all(struct mfs_view *v, const char *path, size_t *n)
{
    uint64_t ino = ino_of(v, path);
    struct mfs_view_attr a;
    unsigned char *buf;
    uint64_t fh = 0;
    unsigned fl = 0;
    size_t got = 0;

    *n = 0;
    if (!ino || mfs_view_getattr(v, ino, &a, NULL) < 0 ||
        mfs_view_open(v, ino, O_RDONLY, getpid(), &fh, &fl, NULL) < 0)
        return NULL;
    buf = malloc(a.size + 1);
    while (buf && got < a.size) {
        ssize_t r = mfs_view_read(v, ino, fh, got, a.size - got, buf + got, NULL);

        if (r <= 0) {
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)r;
    }
    mfs_view_release(v, ino, fh);
    *n = got;
    return buf;
}

static bool file_is(struct mfs_view *v, const char *path, const void *want, size_t len)
{
    size_t n;
    unsigned char *got = read_all(v, path, &n);
    bool same = got && n == len && memcmp(got, want, len) == 0;

    free(got);
    return same;
}

struct names {
    char list[64][128];
    int n;
};

static bool collect(void *ctx, const char *name, const struct mfs_view_attr *a, uint64_t next)
{
    struct names *nm = ctx;

    (void)a;
    (void)next;
    if (nm->n < 64)
        snprintf(nm->list[nm->n++], sizeof(nm->list[0]), "%s", name);
    return false;
}

static bool listed(struct mfs_view *v, uint64_t dir, const char *name)
{
    struct names nm;
    int i;

    memset(&nm, 0, sizeof(nm));
    mfs_view_readdir(v, dir, 0, collect, &nm, NULL);
    for (i = 0; i < nm.n; i++)
        if (!strcmp(nm.list[i], name))
            return true;
    return false;
}

static int stage_kind(struct mfs_stage *s, const char *path, uint64_t *size)
{
    struct mfs_stage_entry e;
    int rc = mfs_stage_get(s, path, &e, NULL);

    if (rc < 0)
        return rc;
    if (size)
        *size = e.size;
    free(e.path);
    free(e.remote.path);
    return (int)e.kind;
}

static int new_view(struct mfs_stage *s, const struct mfs_entry *e, size_t n,
                    struct mfs_view **vp, struct mfs_err *err)
{
    struct mfs_view_cfg cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.repo_id = "org/w";
    cfg.revision = "main";
    cfg.commit = "0123456789abcdef0123456789abcdef01234567";
    cfg.commit_time = 1700000000;
    cfg.entries = e;
    cfg.n_entries = n;
    cfg.read = view_read;
    cfg.no_control_plugins = true;
    cfg.uid = 1000;
    cfg.gid = 1000;
    cfg.stage = s;
    return mfs_view_new(&cfg, vp, err);
}

/* Write data[0..len) to a new file path (in folder parent) and close it. */
static int put_file(struct mfs_view *v, uint64_t parent, const char *name, const void *data,
                    size_t len, struct mfs_err *err)
{
    struct mfs_view_attr a;
    uint64_t fh = 0;
    unsigned fl = 0;
    int rc;

    rc = mfs_view_create(v, parent, name, 0644, O_WRONLY | O_CREAT | O_TRUNC, getpid(), &a,
                         &fh, &fl, err);
    if (rc < 0)
        return rc;
    if (len && mfs_view_write(v, a.ino, fh, 0, data, len, err) != (ssize_t)len)
        rc = -EIO;
    if (rc == 0)
        rc = mfs_view_flush(v, a.ino, fh, err);
    mfs_view_release(v, a.ino, fh);
    return rc;
}

static void test_files(struct mfs_view *v, struct mfs_stage *s)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    unsigned char buf[64];
    unsigned char *orig;
    size_t orig_n;
    uint64_t fh = 0;
    uint64_t ino;
    uint64_t size = 0;
    unsigned fl = 0;
    int rc;

    CHECK(mfs_view_writable(v), "a view with a stage is writable");
    /* create + write + read-your-writes on the same handle */
    rc = mfs_view_create(v, MFS_VIEW_ROOT_INO, "new.txt", 0640, O_RDWR | O_CREAT, getpid(), &a,
                         &fh, &fl, &err);
    CHECK(rc == 0 && S_ISREG(a.mode) && (a.mode & 07777) == 0640 && a.size == 0,
          "create new.txt: mode 0640, size 0 (%s)", err.msg);
    ino = a.ino;
    CHECK(stage_kind(s, "new.txt", &size) == MFS_STAGE_FILE && size == 0,
          "the created empty file is staged at once");
    CHECK(mfs_view_write(v, ino, fh, 0, "hello world", 11, &err) == 11, "write 11 bytes");
    CHECK(mfs_view_read(v, ino, fh, 0, sizeof(buf), buf, &err) == 11 &&
          !memcmp(buf, "hello world", 11), "read-your-writes before close");
    CHECK(mfs_view_getattr(v, ino, &a, NULL) == 0 && a.size == 11, "stat shows 11 bytes");
    CHECK(stage_kind(s, "new.txt", &size) == MFS_STAGE_FILE && size == 0,
          "not yet committed before close");
    CHECK(mfs_view_write(v, ino, fh, 20, "!", 1, &err) == 1, "write past the end (a hole)");
    CHECK(mfs_view_flush(v, ino, fh, &err) == 0, "close commits (%s)", err.msg);
    CHECK(stage_kind(s, "new.txt", &size) == MFS_STAGE_FILE && size == 21,
          "the stage holds 21 bytes after close");
    mfs_view_release(v, ino, fh);
    CHECK(file_is(v, "new.txt", "hello world\0\0\0\0\0\0\0\0\0!", 21),
          "a fresh handle reads the written bytes, the hole as zeros");
    CHECK(mfs_view_create(v, MFS_VIEW_ROOT_INO, "new.txt", 0644, O_WRONLY | O_CREAT | O_EXCL,
                          getpid(), &a, &fh, &fl, NULL) == -EEXIST, "O_EXCL on a name: EEXIST");

    /* a repo file changed in place: base bytes + the write */
    orig = model_file("config.json", &orig_n);
    ino = ino_of(v, "config.json");
    rc = mfs_view_open(v, ino, O_WRONLY, getpid(), &fh, &fl, &err);
    CHECK(rc == 0, "open a repo file for writing (%s)", err.msg);
    CHECK(mfs_view_write(v, ino, fh, 1, "XY", 2, &err) == 2, "overwrite 2 bytes of config.json");
    CHECK(mfs_view_flush(v, ino, fh, &err) == 0, "close");
    mfs_view_release(v, ino, fh);
    if (orig && orig_n > 3) {
        orig[1] = 'X';
        orig[2] = 'Y';
        CHECK(file_is(v, "config.json", orig, orig_n),
              "config.json reads the repo's bytes with the 2 written over them");
    }
    free(orig);
    CHECK(ino_of(v, "config.json") == ino, "the changed file keeps its inode");

    /* O_TRUNC and truncate */
    ino = ino_of(v, "special_tokens_map.json");
    CHECK(mfs_view_open(v, ino, O_WRONLY | O_TRUNC, getpid(), &fh, &fl, &err) == 0,
          "open with O_TRUNC");
    CHECK(mfs_view_getattr(v, ino, &a, NULL) == 0 && a.size == 0, "O_TRUNC empties it");
    mfs_view_flush(v, ino, fh, NULL);
    mfs_view_release(v, ino, fh);
    CHECK(stage_kind(s, "special_tokens_map.json", &size) == MFS_STAGE_FILE && size == 0,
          "the truncation is staged even with no write");
    ino = ino_of(v, "tokenizer_config.json");
    CHECK(mfs_view_truncate(v, ino, 5, &err) == 0, "truncate(1) to 5 bytes (%s)", err.msg);
    orig = model_file("tokenizer_config.json", &orig_n);
    CHECK(orig && file_is(v, "tokenizer_config.json", orig, 5),
          "the first 5 bytes stay after truncate");
    free(orig);
}

static void test_tree(struct mfs_view *v, struct mfs_stage *s)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    unsigned char *orig;
    size_t orig_n;
    uint64_t dir;
    uint64_t ino;
    uint64_t ino2;
    uint64_t fh = 0;
    unsigned fl = 0;

    /* mkdir, files in it, rmdir rules */
    CHECK(mfs_view_mkdir(v, MFS_VIEW_ROOT_INO, "d", 0755, &a, &err) == 0 && S_ISDIR(a.mode),
          "mkdir d (%s)", err.msg);
    dir = a.ino;
    CHECK(stage_kind(s, "d", NULL) == MFS_STAGE_DIR, "the folder is staged");
    CHECK(mfs_view_mkdir(v, MFS_VIEW_ROOT_INO, "d", 0755, &a, NULL) == -EEXIST,
          "mkdir again: EEXIST");
    CHECK(put_file(v, dir, "f.txt", "in d", 4, &err) == 0, "create d/f.txt");
    CHECK(mfs_view_rmdir(v, MFS_VIEW_ROOT_INO, "d", NULL) == -ENOTEMPTY,
          "rmdir of a folder with a file: ENOTEMPTY");
    CHECK(mfs_view_unlink(v, MFS_VIEW_ROOT_INO, "d", NULL) == -EISDIR, "unlink a folder: EISDIR");
    CHECK(mfs_view_rmdir(v, MFS_VIEW_ROOT_INO, "new.txt", NULL) == -ENOTDIR,
          "rmdir a file: ENOTDIR");

    /* rename of a file across folders keeps its inode and bytes */
    ino = ino_of(v, "d/f.txt");
    CHECK(mfs_view_rename(v, dir, "f.txt", MFS_VIEW_ROOT_INO, "g.txt", 0, &err) == 0,
          "rename d/f.txt to g.txt (%s)", err.msg);
    CHECK(ino_of(v, "g.txt") == ino, "the renamed file keeps its inode");
    CHECK(ino_of(v, "d/f.txt") == 0, "the old name is gone");
    CHECK(file_is(v, "g.txt", "in d", 4), "g.txt reads the bytes");
    CHECK(stage_kind(s, "g.txt", NULL) == MFS_STAGE_FILE && stage_kind(s, "d/f.txt", NULL) < 0,
          "the stage moved the entry");
    CHECK(mfs_view_rmdir(v, MFS_VIEW_ROOT_INO, "d", &err) == 0, "rmdir the empty folder");
    CHECK(ino_of(v, "d") == 0 && !listed(v, MFS_VIEW_ROOT_INO, "d"), "d is gone");

    /* rename of a repo file: no copy, the commit's bytes under a new name */
    orig = model_file("tokenizer.json", &orig_n);
    ino = ino_of(v, "tokenizer.json");
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "tokenizer.json", MFS_VIEW_ROOT_INO, "tok2.json",
                          0, &err) == 0, "rename a repo file (%s)", err.msg);
    CHECK(ino_of(v, "tok2.json") == ino && ino_of(v, "tokenizer.json") == 0,
          "inode kept, old name gone");
    CHECK(orig && file_is(v, "tok2.json", orig, orig_n), "tok2.json has the repo bytes");
    CHECK(stage_kind(s, "tokenizer.json", NULL) == MFS_STAGE_DELETED,
          "the old repo path is a whiteout");
    free(orig);

    /* unlink of a repo file */
    CHECK(mfs_view_unlink(v, MFS_VIEW_ROOT_INO, "generation_config.json", &err) == 0,
          "unlink a repo file");
    CHECK(ino_of(v, "generation_config.json") == 0 &&
          !listed(v, MFS_VIEW_ROOT_INO, "generation_config.json"), "it is gone from the listing");
    CHECK(stage_kind(s, "generation_config.json", NULL) == MFS_STAGE_DELETED,
          "staged as a whiteout");
    CHECK(mfs_view_unlink(v, MFS_VIEW_ROOT_INO, "nope", NULL) == -ENOENT, "unlink nothing: ENOENT");

    /* folder rename with contents */
    CHECK(mfs_view_mkdir(v, MFS_VIEW_ROOT_INO, "x", 0755, &a, NULL) == 0, "mkdir x");
    dir = a.ino;
    CHECK(mfs_view_mkdir(v, dir, "y", 0755, &a, NULL) == 0, "mkdir x/y");
    CHECK(put_file(v, a.ino, "z.bin", "zzz", 3, NULL) == 0, "create x/y/z.bin");
    ino = ino_of(v, "x/y/z.bin");
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "x", MFS_VIEW_ROOT_INO, "w", 0, &err) == 0,
          "rename folder x to w (%s)", err.msg);
    CHECK(ino_of(v, "w") == dir && ino_of(v, "w/y/z.bin") == ino && ino_of(v, "x") == 0,
          "the folder and its files keep their inodes");
    CHECK(file_is(v, "w/y/z.bin", "zzz", 3), "w/y/z.bin reads its bytes");
    CHECK(stage_kind(s, "w/y/z.bin", NULL) == MFS_STAGE_FILE &&
          stage_kind(s, "x/y/z.bin", NULL) < 0, "the stage moved the folder's file");
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "w", dir, "inner", 0, NULL) == -EINVAL,
          "a folder into itself: EINVAL");

    /* rename flags and replacement */
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "g.txt", MFS_VIEW_ROOT_INO, "new.txt",
                          MFS_VIEW_RENAME_NOREPLACE, NULL) == -EEXIST, "RENAME_NOREPLACE: EEXIST");
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "g.txt", MFS_VIEW_ROOT_INO, "new.txt",
                          MFS_VIEW_RENAME_EXCHANGE, NULL) == -EINVAL, "RENAME_EXCHANGE: EINVAL");
    ino = ino_of(v, "g.txt");
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "g.txt", MFS_VIEW_ROOT_INO, "new.txt", 0,
                          &err) == 0 && ino_of(v, "new.txt") == ino && file_is(v, "new.txt",
                                                                               "in d", 4),
          "rename over an existing file replaces it");
    CHECK(mfs_view_rename(v, MFS_VIEW_ROOT_INO, "new.txt", MFS_VIEW_ROOT_INO, "w", 0, NULL) ==
          -EISDIR, "a file over a folder: EISDIR");

    /* an open writer of a file unlinked meanwhile never brings it back */
    CHECK(put_file(v, MFS_VIEW_ROOT_INO, "gone.txt", "a", 1, NULL) == 0, "create gone.txt");
    ino2 = ino_of(v, "gone.txt");
    CHECK(mfs_view_open(v, ino2, O_WRONLY, getpid(), &fh, &fl, &err) == 0, "open it for writing");
    CHECK(mfs_view_unlink(v, MFS_VIEW_ROOT_INO, "gone.txt", NULL) == 0, "unlink it while open");
    CHECK(mfs_view_write(v, ino2, fh, 0, "bbbb", 4, NULL) == 4, "write to the unlinked file");
    mfs_view_flush(v, ino2, fh, NULL);
    mfs_view_release(v, ino2, fh);
    CHECK(stage_kind(s, "gone.txt", NULL) < 0 && ino_of(v, "gone.txt") == 0,
          "its close does not bring it back");

    /* chmod */
    ino = ino_of(v, "new.txt");
    CHECK(mfs_view_chmod(v, ino, 0600, &err) == 0 && mfs_view_getattr(v, ino, &a, NULL) == 0 &&
          (a.mode & 07777) == 0600, "chmod a staged file");
}

static void test_rules(struct mfs_view *v, struct mfs_stage *s)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    uint64_t tdir = ino_of(v, MFS_VIEW_TENSORS);
    uint64_t cdir = ino_of(v, MFS_VIEW_CONTROL);
    uint64_t fh = 0;
    unsigned fl = 0;

    (void)s;
    CHECK(mfs_view_create(v, cdir, "mine", 0644, O_WRONLY | O_CREAT, getpid(), &a, &fh, &fl,
                          &err) == -EACCES, "create in .modelfs/: EACCES (%s)", err.msg);
    CHECK(mfs_view_mkdir(v, cdir, "sub", 0755, &a, NULL) == -EACCES, "mkdir in .modelfs/: EACCES");
    CHECK(mfs_view_create(v, tdir, "new.tensor", 0644, O_WRONLY | O_CREAT, getpid(), &a, &fh, &fl,
                          &err) == -EPERM, "create in tensors/: EPERM (%s)", err.msg);
    CHECK(mfs_view_unlink(v, tdir, "model.norm.weight", NULL) == -EPERM,
          "unlink in tensors/: EPERM");
    CHECK(mfs_view_rename(v, tdir, "model.norm.weight", MFS_VIEW_ROOT_INO, "n", 0, NULL) ==
          -EPERM, "rename out of tensors/: EPERM");
    CHECK(mfs_view_rmdir(v, MFS_VIEW_ROOT_INO, MFS_VIEW_TENSORS, NULL) == -EBUSY,
          "rmdir tensors/: EBUSY");
    CHECK(mfs_view_create(v, MFS_VIEW_ROOT_INO, "a/b", 0644, O_WRONLY, getpid(), &a, &fh, &fl,
                          NULL) == -EINVAL, "a name with '/': EINVAL");
}

/* tensors/NAME: a whole write replaces exactly that tensor. */
static void test_tensors(struct mfs_view *v)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    unsigned char *orig;
    unsigned char *now;
    unsigned char *data;
    size_t orig_n;
    size_t now_n;
    char file[256] = "";
    uint64_t ino = ino_of(v, MFS_VIEW_TENSORS "/model.norm.weight");
    uint64_t fh = 0;
    unsigned fl = 0;
    uint64_t size;
    uint64_t off = 0;
    size_t i;

    CHECK(ino != 0, "tensors/model.norm.weight exists");
    if (!ino || mfs_view_getattr(v, ino, &a, NULL) < 0)
        return;
    size = a.size;
    mfs_view_getxattr(v, ino, "user.file", file, sizeof(file) - 1, NULL);
    orig = read_all(v, file, &orig_n);
    CHECK(orig != NULL && size > 8, "the shard '%s' reads (%zu bytes)", file, orig_n);
    if (!orig || size <= 8) {
        free(orig);
        return;
    }
    /* Where the tensor lies in its shard, and that tensors/ reads it. */
    if (mfs_view_ckpt(v) && mfs_ckpt_find(mfs_view_ckpt(v), "model.norm.weight"))
        off = mfs_ckpt_find(mfs_view_ckpt(v), "model.norm.weight")->offset;
    now = read_all(v, MFS_VIEW_TENSORS "/model.norm.weight", &now_n);
    CHECK(now && now_n == size && off + size <= orig_n && !memcmp(orig + off, now, size),
          "tensors/model.norm.weight reads its %llu bytes at %llu of the shard",
          (unsigned long long)size, (unsigned long long)off);
    free(now);
    data = malloc(size);
    for (i = 0; data && i < size; i++)
        data[i] = (unsigned char)(i * 13 + 5);

    /* a partial write is dropped at close with EINVAL */
    CHECK(mfs_view_open(v, ino, O_WRONLY, getpid(), &fh, &fl, &err) == 0,
          "open a tensor for writing (%s)", err.msg);
    CHECK(mfs_view_write(v, ino, fh, 0, data, 4, NULL) == 4, "write its first 4 bytes");
    CHECK(mfs_view_write(v, ino, fh, size - 2, data, 4, &err) == -EINVAL,
          "a write past the tensor's end: EINVAL (%s)", err.msg);
    CHECK(mfs_view_flush(v, ino, fh, &err) == -EINVAL, "close of a partial write: EINVAL (%s)",
          err.msg);
    mfs_view_release(v, ino, fh);
    CHECK(file_is(v, file, orig, orig_n), "the shard is unchanged after the dropped write");

    /* a whole write replaces exactly the tensor's bytes */
    CHECK(mfs_view_open(v, ino, O_WRONLY | O_TRUNC, getpid(), &fh, &fl, &err) == 0,
          "open it again (O_TRUNC, as cp does)");
    CHECK(mfs_view_write(v, ino, fh, size / 2, data + size / 2, size - size / 2, NULL) ==
          (ssize_t)(size - size / 2) && mfs_view_write(v, ino, fh, 0, data, size / 2, NULL) ==
          (ssize_t)(size / 2), "write all its bytes, second half first");
    CHECK(mfs_view_flush(v, ino, fh, &err) == 0, "close commits (%s)", err.msg);
    mfs_view_release(v, ino, fh);
    CHECK(data && file_is(v, MFS_VIEW_TENSORS "/model.norm.weight", data, size),
          "the tensor reads the new bytes");
    if (data && off + size <= orig_n) {
        memcpy(orig + off, data, size);
        CHECK(file_is(v, file, orig, orig_n),
              "the shard differs exactly in the tensor's bytes (other tensors unchanged)");
    }
    CHECK(mfs_view_truncate(v, ino, size, NULL) == 0 && mfs_view_truncate(v, ino, 1, NULL) ==
          -EINVAL, "truncate of a tensor: its own size only");
    free(data);
    free(orig);
}

/* Readers of repo files and listings while another thread changes the
 * tree: every read returns the right bytes (the tree lock is shared by
 * readers and never held during a fetch). */
struct reader {
    struct mfs_view *v;
    const unsigned char *want;
    size_t want_n;
    int rounds;
    int bad;
};

static void *reader_main(void *p)
{
    struct reader *r = p;
    int i;

    for (i = 0; i < r->rounds; i++) {
        struct names nm;

        if (!file_is(r->v, "SOURCE.md", r->want, r->want_n))
            r->bad++;
        memset(&nm, 0, sizeof(nm));
        mfs_view_readdir(r->v, MFS_VIEW_ROOT_INO, 0, collect, &nm, NULL);
    }
    return NULL;
}

static void test_concurrent(struct mfs_view *v)
{
    struct reader r[2];
    pthread_t tid[2];
    unsigned char *want;
    size_t want_n;
    int started = 0;
    int ok_ops = 0;
    int i;

    want = model_file("SOURCE.md", &want_n);
    if (!want) {
        CHECK(false, "read SOURCE.md from disk");
        return;
    }
    for (i = 0; i < 2; i++) {
        r[i].v = v;
        r[i].want = want;
        r[i].want_n = want_n;
        r[i].rounds = 200;
        r[i].bad = 0;
        if (pthread_create(&tid[i], NULL, reader_main, &r[i]) == 0)
            started++;
    }
    for (i = 0; i < 40; i++) {
        char name[32];
        char name2[32];

        snprintf(name, sizeof(name), "c%d.txt", i);
        snprintf(name2, sizeof(name2), "r%d.txt", i);
        if (put_file(v, MFS_VIEW_ROOT_INO, name, name, strlen(name), NULL) == 0 &&
            mfs_view_rename(v, MFS_VIEW_ROOT_INO, name, MFS_VIEW_ROOT_INO, name2, 0, NULL) == 0 &&
            file_is(v, name2, name, strlen(name)) &&
            mfs_view_unlink(v, MFS_VIEW_ROOT_INO, name2, NULL) == 0)
            ok_ops++;
    }
    for (i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    CHECK(started == 2 && r[0].bad == 0 && r[1].bad == 0,
          "2 readers x 200 reads of a repo file, all right, while the tree changes");
    CHECK(ok_ops == 40, "40 create/write/rename/unlink rounds meanwhile (%d ok)", ok_ops);
    free(want);
}

int main(void)
{
    static const char *const names[] = {
        "SOURCE.md", "config.json", "generation_config.json", "model.safetensors",
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
    };
    struct mfs_entry e[sizeof(names) / sizeof(names[0])];
    const char *tmp = getenv("MFS_TMP");
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_cache *cache = NULL;
    struct mfs_stage *s = NULL;
    struct mfs_view *v = NULL;
    struct mfs_view *ro = NULL;
    struct mfs_view_attr a;
    char cdir[1024];
    uint64_t fh = 0;
    unsigned fl = 0;
    size_t i;
    int rc;

    snprintf(g_dir, sizeof(g_dir), "%s/%s", check_data_dir(), MODEL);
    snprintf(cdir, sizeof(cdir), "%s/cache", tmp && *tmp ? tmp : "/tmp");
    mkdir(cdir, 0755);
    memset(e, 0, sizeof(e));
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[2048];
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", g_dir, names[i]);
        e[i].path = (char *)names[i];
        e[i].size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
        snprintf(e[i].oid, sizeof(e[i].oid), "%040zx", i + 1);
    }
    rc = mfs_cache_open(cdir, 0, &cache, &err);
    if (rc == 0)
        rc = mfs_stage_open(cdir, &REPO, "main", base_read, NULL, &s, &err);
    CHECK(rc == 0, "open a stage in $MFS_TMP (%s)", err.msg);
    if (rc < 0)
        return check_done();
    rc = new_view(s, e, sizeof(e) / sizeof(e[0]), &v, &err);
    CHECK(rc == 0, "a writable view builds (%s)", err.msg);
    if (rc == 0) {
        test_files(v, s);
        test_tree(v, s);
        test_rules(v, s);
        test_tensors(v);
        test_concurrent(v);
        mfs_view_free(&v);
    }

    /* A remount: the same stage over the same commit shows the same tree. */
    rc = new_view(s, e, sizeof(e) / sizeof(e[0]), &v, &err);
    CHECK(rc == 0, "a second view over the stage builds (%s)", err.msg);
    if (rc == 0) {
        CHECK(file_is(v, "new.txt", "in d", 4) && file_is(v, "w/y/z.bin", "zzz", 3),
              "staged files are shown again");
        CHECK(ino_of(v, "tokenizer.json") == 0 && ino_of(v, "generation_config.json") == 0 &&
              !listed(v, MFS_VIEW_ROOT_INO, "generation_config.json"),
              "whiteouts hide the commit's files");
        CHECK(ino_of(v, "tok2.json") != 0 && ino_of(v, "x") == 0 && ino_of(v, "d") == 0,
              "renames and removed folders are as left");
        CHECK(listed(v, MFS_VIEW_ROOT_INO, "SOURCE.md") && listed(v, MFS_VIEW_ROOT_INO, "w"),
              "untouched repo files and made folders are listed");
        mfs_view_free(&v);
    }

    /* Read-only: every change is EROFS. */
    {
        struct mfs_view_cfg cfg;

        memset(&cfg, 0, sizeof(cfg));
        cfg.repo_id = "org/w";
        cfg.commit = "0123456789abcdef0123456789abcdef01234567";
        cfg.entries = e;
        cfg.n_entries = sizeof(e) / sizeof(e[0]);
        cfg.read = view_read;
        cfg.no_control_plugins = true;
        rc = mfs_view_new(&cfg, &ro, &err);
        CHECK(rc == 0 && !mfs_view_writable(ro), "a view without a stage is read-only");
        if (rc == 0) {
            CHECK(mfs_view_create(ro, MFS_VIEW_ROOT_INO, "n", 0644, O_WRONLY, getpid(), &a, &fh,
                                  &fl, NULL) == -EROFS &&
                  mfs_view_mkdir(ro, MFS_VIEW_ROOT_INO, "n", 0755, &a, NULL) == -EROFS &&
                  mfs_view_unlink(ro, MFS_VIEW_ROOT_INO, "config.json", NULL) == -EROFS &&
                  mfs_view_rename(ro, MFS_VIEW_ROOT_INO, "config.json", MFS_VIEW_ROOT_INO, "c",
                                  0, NULL) == -EROFS &&
                  mfs_view_push(ro, NULL, NULL, NULL) == -EROFS,
                  "read-only: create, mkdir, unlink, rename, push are EROFS");
            mfs_view_free(&ro);
        }
    }
    mfs_stage_close(&s);
    mfs_cache_close(&cache);
    return check_done();
}
