/*
 * tests/mount/test_view.c - the view (fs/view.h) and the control-file
 * framework (fs/control.h) driven directly, without FUSE: the tree built
 * from a file list (folders, unsafe paths left out), lookup and readdir
 * offsets, tensors/ slices of a real checkpoint checked against an
 * independent reading of its header (cJSON here, not model/), xattrs, and
 * both control-file conversations, streaming and bad requests.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs/control.h"
#include "fs/view.h"

/* ---- a directory-backed reader ----------------------------------------- */

struct dir_reader {
    char dir[1024];
};

static ssize_t dir_read(void *ctx, const struct mfs_entry *e, uint64_t stream, uint64_t off,
                        size_t len, void *buf, struct mfs_err *err)
{
    struct dir_reader *d = ctx;
    char path[2048];

    (void)stream;
    snprintf(path, sizeof(path), "%s/%s", d->dir, e->path);
    return check_pread_file(path, off, len, buf, err);
}

/* Synthetic content: byte i of a file is (i * 7 + strlen(path)) & 0xff. */
static ssize_t pattern_read(void *ctx, const struct mfs_entry *e, uint64_t stream, uint64_t off,
                            size_t len, void *buf, struct mfs_err *err)
{
    size_t i;

    (void)ctx;
    (void)stream;
    (void)err;
    if (off >= e->size)
        return 0;
    if (len > e->size - off)
        len = (size_t)(e->size - off);
    for (i = 0; i < len; i++)
        ((unsigned char *)buf)[i] = (unsigned char)(((off + i) * 7 + strlen(e->path)) & 0xff);
    return (ssize_t)len;
}

struct names {
    char list[64][128];
    uint64_t offs[64];
    int n;
    int stop_after;                         /* pretend the buffer fills after this many */
};

static bool collect(void *ctx, const char *name, const struct mfs_view_attr *a, uint64_t next)
{
    struct names *nm = ctx;

    (void)a;
    if (nm->n >= 64 || (nm->stop_after && nm->n >= nm->stop_after))
        return true;
    snprintf(nm->list[nm->n], sizeof(nm->list[0]), "%s", name);
    nm->offs[nm->n] = next;
    nm->n++;
    return false;
}

static uint64_t lookup_path(struct mfs_view *v, const char *path)
{
    char buf[512];
    char *save = NULL;
    char *tok;
    uint64_t ino = MFS_VIEW_ROOT_INO;
    struct mfs_view_attr a;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
        if (mfs_view_lookup(v, ino, tok, &a, NULL) < 0)
            return 0;
        else
            ino = a.ino;
    return ino;
}

/* Read a whole file through the view with odd-sized reads. */
static ssize_t read_all(struct mfs_view *v, uint64_t ino, uint64_t fh, unsigned char *out,
                        size_t cap, size_t step)
{
    size_t got = 0;
    ssize_t n;

    for (;;) {
        n = mfs_view_read(v, ino, fh, got, step < cap - got ? step : cap - got, out + got, NULL);
        if (n < 0)
            return n;
        if (n == 0 || got + (size_t)n >= cap)
            return (ssize_t)(got + (size_t)n);
        got += (size_t)n;
    }
}

/* ---- the synthetic tree ------------------------------------------------------ */

static void test_tree(void)
{
    static const struct {
        const char *path;
        bool is_dir;
        uint64_t size;
    } rows[] = {
        { "README.md", false, 100 },
        { "sub", true, 0 },
        { "sub/a.txt", false, 5000 },
        { "sub/deep/b.bin", false, 3 },
        { "other/c.txt", false, 0 },         /* folder "other" only implied */
        { "../escape", false, 10 },          /* unsafe: left out */
        { "/abs", false, 10 },
        { "x//y", false, 10 },
        { "x/./y", false, 10 },
        { "x/..", false, 10 },
        { ".modelfs/info", false, 10 },       /* hidden by the control folder */
        { "README.md", false, 100 },         /* listed twice */
        { "sub/a.txt/z", false, 1 },         /* its folder is a file */
    };
    struct mfs_entry e[sizeof(rows) / sizeof(rows[0])];
    struct mfs_view_cfg cfg = { 0 };
    struct mfs_view *v = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_view_attr a;
    struct names nm = { 0 };
    unsigned char buf[6000];
    unsigned char want[6000];
    uint64_t ino;
    uint64_t fh = 0;
    unsigned flags = 0;
    size_t i;
    ssize_t n;
    int rc;

    memset(e, 0, sizeof(e));
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        e[i].path = (char *)rows[i].path;
        e[i].is_dir = rows[i].is_dir;
        e[i].size = rows[i].size;
    }
    cfg.repo_id = "org/tree";
    cfg.revision = "main";
    cfg.commit = "0123456789abcdef0123456789abcdef01234567";
    cfg.commit_time = 1700000000;
    cfg.entries = e;
    cfg.n_entries = sizeof(rows) / sizeof(rows[0]);
    cfg.read = pattern_read;
    cfg.no_control_plugins = true;
    cfg.uid = 1000;
    cfg.gid = 1000;
    rc = mfs_view_new(&cfg, &v, &err);
    CHECK(rc == 0, "view of a synthetic tree builds (%s)", err.msg);
    if (rc < 0)
        return;

    CHECK(mfs_view_readdir(v, MFS_VIEW_ROOT_INO, 0, collect, &nm, NULL) == 0, "readdir root");
    {
        static const char *const want_root[] = {
            ".", "..", ".modelfs", "README.md", "other", "sub", "tensors",
        };
        bool same = nm.n == 7;

        for (i = 0; same && i < 7; i++)
            same = !strcmp(nm.list[i], want_root[i]);
        CHECK(same, "root lists . .. .modelfs README.md other sub tensors, sorted (got %d)",
              nm.n);
    }
    CHECK(lookup_path(v, "x") == 0, "unsafe paths leave no folder 'x'");
    CHECK(lookup_path(v, "abs") == 0 && lookup_path(v, "escape") == 0,
          "'/abs' and '../escape' are not shown");
    CHECK(lookup_path(v, "sub/a.txt/z") == 0, "a file under a file is left out");
    CHECK(lookup_path(v, "other/c.txt") != 0, "implied folder 'other' holds c.txt");

    /* Resume a listing at each offset it gave: no repeats, no gaps. */
    {
        struct names part = { 0 };
        struct names rest = { 0 };

        part.stop_after = 3;
        mfs_view_readdir(v, MFS_VIEW_ROOT_INO, 0, collect, &part, NULL);
        mfs_view_readdir(v, MFS_VIEW_ROOT_INO, part.offs[part.n - 1], collect, &rest, NULL);
        CHECK(part.n == 3 && rest.n == 4 && !strcmp(rest.list[0], "README.md"),
              "readdir resumed at offset %llu continues with README.md",
              (unsigned long long)part.offs[2]);
    }

    ino = lookup_path(v, "sub/a.txt");
    rc = mfs_view_getattr(v, ino, &a, NULL);
    CHECK(rc == 0 && a.size == 5000 && a.mode == (S_IFREG | 0444) && a.nlink == 1 &&
          a.mtime == 1700000000 && a.uid == 1000, "stat of sub/a.txt: size, mode, mtime, owner");
    rc = mfs_view_getattr(v, lookup_path(v, "sub"), &a, NULL);
    CHECK(rc == 0 && a.mode == (S_IFDIR | 0555) && a.nlink == 3, "sub: folder, nlink 3");
    {
        uint64_t before = mfs_view_lookups(v, ino);

        mfs_view_lookup(v, lookup_path(v, "sub"), "a.txt", &a, NULL);
        CHECK(mfs_view_lookups(v, ino) == before + 1, "each lookup is counted");
        mfs_view_forget(v, ino, before + 1);
        CHECK(mfs_view_lookups(v, ino) == 0, "forget of them all brings it back to 0");
    }
    mfs_view_forget(v, ino, 5);
    CHECK(mfs_view_lookups(v, ino) == 0, "over-forgetting stays at 0");

    rc = mfs_view_open(v, ino, O_RDONLY, getpid(), &fh, &flags, &err);
    CHECK(rc == 0 && (flags & MFS_VIEW_KEEP_CACHE), "open sub/a.txt keeps the page cache");
    n = read_all(v, ino, fh, buf, sizeof(buf), 777);
    pattern_read(NULL, &(struct mfs_entry){ .path = "sub/a.txt", .size = 5000 }, 0, 0, 5000,
                 want, NULL);
    CHECK(n == 5000 && !memcmp(buf, want, 5000), "read in 777-byte steps gives the bytes");
    CHECK(mfs_view_read(v, ino, fh, 4999, 10, buf, NULL) == 1, "read across the end is short");
    CHECK(mfs_view_read(v, ino, fh, 5000, 10, buf, NULL) == 0, "read at the end is 0");
    CHECK(mfs_view_write(v, ino, fh, 0, "x", 1, &err) == -EROFS, "write to a repo file: EROFS");
    mfs_view_release(v, ino, fh);
    CHECK(mfs_view_open(v, ino, O_WRONLY, getpid(), &fh, &flags, NULL) == -EROFS,
          "open for writing: EROFS");
    CHECK(mfs_view_open(v, ino, O_RDONLY | O_TRUNC, getpid(), &fh, &flags, NULL) == -EROFS,
          "open with O_TRUNC: EROFS");
    CHECK(mfs_view_truncate(v, ino, 0, NULL) == -EROFS, "truncate: EROFS");
    CHECK(mfs_view_lookup(v, ino, "x", &a, NULL) == -ENOTDIR, "lookup under a file: ENOTDIR");
    CHECK(mfs_view_lookup(v, MFS_VIEW_ROOT_INO, "nope", &a, NULL) == -ENOENT,
          "lookup of a missing name: ENOENT");
    CHECK(mfs_view_getattr(v, 999999, &a, NULL) == -ENOENT, "getattr of a bad inode: ENOENT");

    /* The log names the paths it left out. */
    {
        uint64_t log_ino = lookup_path(v, ".modelfs/log");
        char text[8192];

        rc = mfs_view_open(v, log_ino, O_RDONLY, getpid(), &fh, &flags, NULL);
        n = read_all(v, log_ino, fh, (unsigned char *)text, sizeof(text) - 1, 100);
        text[n > 0 ? n : 0] = '\0';
        mfs_view_release(v, log_ino, fh);
        CHECK(rc == 0 && (flags & MFS_VIEW_DIRECT_IO) && strstr(text, "'../escape'") &&
              strstr(text, "'x//y'") && strstr(text, "'.modelfs/info'"),
              ".modelfs/log lists the unsafe and hidden paths");
    }
    mfs_view_free(&v);
    CHECK(v == NULL, "free clears the pointer");
}

/* ---- tensors/ of a real checkpoint ------------------------------------------ */

static void test_tensors(const char *model)
{
    struct dir_reader dr;
    struct mfs_view_cfg cfg = { 0 };
    struct mfs_entry *e = NULL;
    struct mfs_view *v = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    char path[1200];
    size_t n = 0;
    size_t checked = 0;
    size_t bad = 0;
    int rc;
    static const char *const files[] = {
        "config.json", "model.safetensors", "tokenizer.json", "model-00001-of-00004.safetensors",
        "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
        "model-00004-of-00004.safetensors", "model.safetensors.index.json",
    };
    size_t i;

    snprintf(dr.dir, sizeof(dr.dir), "%s/models/%s", check_data_dir(), model);
    e = calloc(sizeof(files) / sizeof(files[0]), sizeof(*e));
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct stat st;

        snprintf(path, sizeof(path), "%s/%s", dr.dir, files[i]);
        if (stat(path, &st) != 0)
            continue;
        e[n].path = (char *)files[i];
        e[n].size = (uint64_t)st.st_size;
        n++;
    }
    cfg.repo_id = model;
    cfg.commit = "0123456789abcdef0123456789abcdef01234567";
    cfg.entries = e;
    cfg.n_entries = n;
    cfg.read = dir_read;
    cfg.read_ctx = &dr;
    cfg.no_control_plugins = true;
    rc = mfs_view_new(&cfg, &v, &err);
    CHECK(rc == 0, "%s: view with tensors builds (%s)", model, err.msg);
    if (rc < 0)
        goto out;

    /* Check every tensor against the header, read here with cJSON. */
    for (i = 0; i < n; i++) {
        size_t flen;
        unsigned char *blob;
        uint64_t hlen = 0;
        cJSON *root;
        cJSON *it;
        int k;

        if (!strstr(e[i].path, ".safetensors") || strstr(e[i].path, ".json"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dr.dir, e[i].path);
        blob = (unsigned char *)check_slurp(path, &flen);
        if (!blob)
            continue;
        for (k = 7; k >= 0; k--)
            hlen = hlen << 8 | blob[k];
        root = cJSON_ParseWithLength((const char *)blob + 8, (size_t)hlen);
        for (it = root ? root->child : NULL; it; it = it->next) {
            cJSON *offs = cJSON_GetObjectItem(it, "data_offsets");
            char tpath[600];
            char val[256];
            uint64_t ino;
            uint64_t b;
            uint64_t end;
            uint64_t fh = 0;
            unsigned fl;
            unsigned char *got;
            ssize_t r;

            if (!strcmp(it->string, "__metadata__") || !offs)
                continue;
            b = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
            end = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
            snprintf(tpath, sizeof(tpath), "tensors/%s", it->string);
            ino = lookup_path(v, tpath);
            if (!ino) {
                bad++;
                continue;
            }
            got = malloc(end - b + 1);
            mfs_view_open(v, ino, O_RDONLY, getpid(), &fh, &fl, NULL);
            r = read_all(v, ino, fh, got, end - b + 1, 4093);
            if (r != (ssize_t)(end - b) || memcmp(got, blob + 8 + hlen + b, end - b))
                bad++;
            r = mfs_view_getxattr(v, ino, "user.file", val, sizeof(val) - 1, NULL);
            if (r < 0 || (size_t)r != strlen(e[i].path) || memcmp(val, e[i].path, (size_t)r))
                bad++;
            r = mfs_view_getxattr(v, ino, "user.dtype", val, sizeof(val) - 1, NULL);
            val[r > 0 ? r : 0] = '\0';
            if (strcmp(val, cJSON_GetObjectItem(it, "dtype")->valuestring))
                bad++;
            mfs_view_release(v, ino, fh);
            free(got);
            checked++;
        }
        cJSON_Delete(root);
        free(blob);
    }
    CHECK(checked > 0 && bad == 0, "%s: %zu tensor files equal their header's byte slices, "
          "user.file and user.dtype right (%zu bad)", model, checked, bad);
out:
    mfs_view_free(&v);
    free(e);
}

static void test_tensor_xattrs(void)
{
    struct dir_reader dr;
    struct mfs_entry e[2];
    struct mfs_view_cfg cfg = { 0 };
    struct mfs_view *v = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct stat st;
    char val[128];
    char list[256];
    uint64_t ino;
    ssize_t n;

    snprintf(dr.dir, sizeof(dr.dir), "%s/models/stories260K-hf", check_data_dir());
    memset(e, 0, sizeof(e));
    snprintf(val, sizeof(val), "%s/model.safetensors", dr.dir);
    stat(val, &st);
    e[0].path = "model.safetensors";
    e[0].size = (uint64_t)st.st_size;
    cfg.repo_id = "karpathy/stories260K";
    cfg.commit = "0123456789abcdef0123456789abcdef01234567";
    cfg.entries = e;
    cfg.n_entries = 1;
    cfg.read = dir_read;
    cfg.read_ctx = &dr;
    cfg.no_control_plugins = true;
    if (mfs_view_new(&cfg, &v, &err) < 0) {
        CHECK(0, "stories260K view: %s", err.msg);
        return;
    }
    ino = lookup_path(v, "tensors/model.layers.0.mlp.gate_proj.weight");
    n = mfs_view_getxattr(v, ino, "user.shape", NULL, 0, NULL);
    CHECK(n == (ssize_t)strlen("[172, 64]"), "user.shape size query gives %zd", n);
    n = mfs_view_getxattr(v, ino, "user.shape", val, sizeof(val), NULL);
    CHECK(n > 0 && !strncmp(val, "[172, 64]", (size_t)n), "user.shape is [172, 64]");
    CHECK(mfs_view_getxattr(v, ino, "user.shape", val, 3, NULL) == -ERANGE,
          "a small buffer gives ERANGE");
    CHECK(mfs_view_getxattr(v, ino, "user.nope", val, sizeof(val), NULL) == -ENODATA,
          "a missing xattr gives ENODATA");
    n = mfs_view_listxattr(v, ino, list, sizeof(list), NULL);
    CHECK(n == (ssize_t)sizeof("user.dtype\0user.shape\0user.file") &&
          !strcmp(list + 11, "user.shape"), "listxattr names dtype, shape, file");
    ino = lookup_path(v, "tensors/model.norm.weight");
    n = mfs_view_getxattr(v, ino, "user.shape", val, sizeof(val), NULL);
    CHECK(n > 0 && !strncmp(val, "[64]", (size_t)n), "1-D shape is [64]");
    {
        struct mfs_view_attr a;

        mfs_view_getattr(v, lookup_path(v, "tensors"), &a, NULL);
        CHECK(mfs_view_getattr(v, ino, &a, NULL) == 0 && a.size == 256,
              "tensors/model.norm.weight is 256 bytes");
    }
    mfs_view_free(&v);
}

/* ---- control files ----------------------------------------------------------- */

struct echo_state {
    int requests;
};

static int echo_request(struct mfs_view *view, void *state, const char *req, size_t len,
                        struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct echo_state *es = state;

    (void)view;
    if (len == 0 || !strcmp(req, "bad"))
        return mfs_err_set(err, -EINVAL, "bad request to 'echo': '%s' is not allowed", req);
    es->requests++;
    return mfs_ctl_reply_printf(reply, "echo:%s\n", req);
}

static int slow_work(struct mfs_ctl_reply *r, void *arg, struct mfs_err *err)
{
    int i;
    int count = *(int *)arg;
    struct timespec ts = { 0, 20 * 1000000L };

    for (i = 0; i < count && !mfs_ctl_reply_cancelled(r); i++) {
        mfs_ctl_reply_printf(r, "tok%d ", i);
        nanosleep(&ts, NULL);
    }
    if (count == 3)
        return mfs_err_set(err, -EIO, "stream broke after 3");
    return mfs_ctl_reply_write(r, "\n", 1);
}

static int stream_request(struct mfs_view *view, void *state, const char *req, size_t len,
                          struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    int *count = malloc(sizeof(*count));
    char *end;

    (void)view;
    (void)state;
    (void)len;
    if (!count)
        return -ENOMEM;
    *count = (int)strtol(req, &end, 10);
    if (end == req || *count < 0 || *count > 100) {
        free(count);
        return mfs_err_set(err, -EINVAL, "bad request to 'stream': want a count");
    }
    return mfs_ctl_reply_spawn(reply, slow_work, count, free, err);
}

static const struct mfs_ctl_handler echo_handler = { "echo", echo_request, NULL, NULL, NULL };
static const struct mfs_ctl_handler stream_handler = { "stream", stream_request, NULL, NULL,
                                                       NULL };

static size_t ctl_read_all(struct mfs_view *v, uint64_t ino, uint64_t fh, char *out, size_t cap)
{
    size_t got = 0;
    ssize_t n;

    while (got < cap - 1) {
        n = mfs_view_read(v, ino, fh, got, 7, out + got, NULL);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    out[got] = '\0';
    return got;
}

static void test_control(void)
{
    struct mfs_entry e = { 0 };
    struct mfs_view_cfg cfg = { 0 };
    struct mfs_view *v = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct echo_state es = { 0 };
    char text[4096];
    uint64_t echo;
    uint64_t stream;
    uint64_t fh;
    uint64_t fh2;
    unsigned fl;
    pid_t me = getpid();
    pid_t other;
    ssize_t n;

    e.path = "config.json";
    e.size = 10;
    cfg.repo_id = "org/ctl";
    cfg.revision = "main";
    cfg.commit = "0123456789abcdef0123456789abcdef01234567";
    cfg.entries = &e;
    cfg.n_entries = 1;
    cfg.read = pattern_read;
    cfg.no_tensors = true;
    cfg.no_control_plugins = true;
    if (mfs_view_new(&cfg, &v, &err) < 0) {
        CHECK(0, "control view: %s", err.msg);
        return;
    }
    CHECK(mfs_view_ctl_add(v, &echo_handler, &es, &err) == 0, "register 'echo' in one call");
    CHECK(mfs_view_ctl_add(v, &stream_handler, NULL, &err) == 0, "register 'stream'");
    CHECK(mfs_view_ctl_add(v, &echo_handler, &es, NULL) == -EEXIST, "a second 'echo': EEXIST");
    CHECK(mfs_ctl_sid_of(me) == getsid(0), "sid of this process from /proc is getsid()");
    /* Another session: a child that leads its own (pid 1 may share ours in
     * a PID namespace). */
    int ready[2];
    char c;
    CHECK(pipe(ready) == 0, "pipe");
    other = fork();
    if (other == 0) {
        setsid();
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    CHECK(other > 0 && read(ready[0], &c, 1) == 1, "a child in a session of its own");
    close(ready[0]);
    close(ready[1]);
    CHECK(mfs_ctl_sid_of(other) == other, "the child's sid is its pid");
    echo = lookup_path(v, ".modelfs/echo");
    stream = lookup_path(v, ".modelfs/stream");
    CHECK(echo && stream, ".modelfs/echo and .modelfs/stream appear");

    /* Way 1: one handle, write then read. */
    mfs_view_open(v, echo, O_RDWR, me, &fh, &fl, NULL);
    CHECK(fl & MFS_VIEW_DIRECT_IO, "control files use direct_io");
    n = mfs_view_write(v, echo, fh, 0, "hello\n", 6, &err);
    CHECK(n == 6, "write a request returns its length");
    ctl_read_all(v, echo, fh, text, sizeof(text));
    CHECK(!strcmp(text, "echo:hello\n"), "the same handle reads the reply ('%s')", text);
    /* A second request on the same handle replaces the conversation. */
    mfs_view_write(v, echo, fh, 6, "again", 5, &err);
    ctl_read_all(v, echo, fh, text, sizeof(text));
    CHECK(!strcmp(text, "echo:again\n"), "a new request on the handle gives the new reply");
    mfs_view_release(v, echo, fh);

    /* Way 2: echo > X from one session, cat X from a fresh handle. */
    mfs_view_open(v, echo, O_WRONLY | O_TRUNC, me, &fh, &fl, NULL);
    CHECK(mfs_view_truncate(v, echo, 0, NULL) == 0, "truncating a control file is accepted");
    mfs_view_write(v, echo, fh, 0, "mine\n", 5, NULL);
    mfs_view_release(v, echo, fh);
    mfs_view_open(v, echo, O_WRONLY, other, &fh, &fl, NULL);
    mfs_view_write(v, echo, fh, 0, "theirs\n", 7, NULL);
    mfs_view_release(v, echo, fh);
    mfs_view_open(v, echo, O_RDONLY, me, &fh, &fl, NULL);
    ctl_read_all(v, echo, fh, text, sizeof(text));
    mfs_view_release(v, echo, fh);
    CHECK(!strcmp(text, "echo:mine\n"), "a fresh handle reads its own session's reply ('%s')",
          text);
    mfs_view_open(v, echo, O_RDONLY, other, &fh, &fl, NULL);
    ctl_read_all(v, echo, fh, text, sizeof(text));
    mfs_view_release(v, echo, fh);
    CHECK(!strcmp(text, "echo:theirs\n"), "the other session reads its own ('%s')", text);
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);

    /* A bad request: EINVAL on write, reason on the handle and in log. */
    mfs_view_open(v, echo, O_RDWR, me, &fh, &fl, NULL);
    mfs_err_clear(&err);
    n = mfs_view_write(v, echo, fh, 0, "bad\n", 4, &err);
    CHECK(n == -EINVAL, "a bad request fails the write with EINVAL");
    ctl_read_all(v, echo, fh, text, sizeof(text));
    CHECK(strstr(text, "error: ") && strstr(text, "'bad' is not allowed"),
          "the reason is readable from the same handle ('%s')", text);
    mfs_view_release(v, echo, fh);
    {
        uint64_t log = lookup_path(v, ".modelfs/log");

        mfs_view_open(v, log, O_RDONLY, me, &fh, &fl, NULL);
        ctl_read_all(v, log, fh, text, sizeof(text));
        mfs_view_release(v, log, fh);
        CHECK(strstr(text, ".modelfs/echo") && strstr(text, "'bad' is not allowed"),
              "and it is a line in .modelfs/log");
        CHECK(mfs_view_open(v, log, O_WRONLY, me, &fh, &fl, NULL) == -EACCES,
              "opening log for writing: EACCES");
    }

    /* Streaming: a reader sees the bytes as the worker appends them. */
    mfs_view_open(v, stream, O_RDWR, me, &fh, &fl, NULL);
    n = mfs_view_write(v, stream, fh, 0, "5", 1, &err);
    CHECK(n == 1, "stream request accepted");
    mfs_view_open(v, stream, O_RDONLY, me, &fh2, &fl, NULL);
    ctl_read_all(v, stream, fh, text, sizeof(text));
    CHECK(!strcmp(text, "tok0 tok1 tok2 tok3 tok4 \n"), "streamed reply complete ('%s')", text);
    ctl_read_all(v, stream, fh2, text, sizeof(text));
    CHECK(!strcmp(text, "tok0 tok1 tok2 tok3 tok4 \n"), "a concurrent session reader sees it too");
    mfs_view_release(v, stream, fh2);
    n = mfs_view_write(v, stream, fh, 0, "3", 1, &err);
    ctl_read_all(v, stream, fh, text, sizeof(text));
    CHECK(strstr(text, "tok2 error: stream broke after 3"),
          "a worker's failure ends the stream with its reason ('%s')", text);
    /* A long stream left running: free must stop and wait for it. */
    n = mfs_view_write(v, stream, fh, 0, "100", 3, &err);
    mfs_view_release(v, stream, fh);

    /* info is JSON with the repo and commit. */
    {
        uint64_t info = lookup_path(v, ".modelfs/info");
        cJSON *j;

        mfs_view_open(v, info, O_RDONLY, me, &fh, &fl, NULL);
        ctl_read_all(v, info, fh, text, sizeof(text));
        mfs_view_release(v, info, fh);
        j = cJSON_Parse(text);
        CHECK(j && !strcmp(cJSON_GetObjectItem(j, "repo_id")->valuestring, "org/ctl") &&
              cJSON_GetObjectItem(j, "files")->valuedouble == 1,
              ".modelfs/info is JSON naming the repo and its file count");
        cJSON_Delete(j);
    }
    CHECK(es.requests == 4, "echo saw 4 good requests (%d)", es.requests);
    mfs_view_free(&v);
    CHECK(v == NULL, "free with a stream running returns");
}

int main(void)
{
    test_tree();
    test_tensors("stories260K-hf");
    test_tensors("stories260K-hf-sharded");
    test_tensor_xattrs();
    test_control();
    return check_done();
}
