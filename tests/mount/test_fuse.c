/*
 * tests/mount/test_fuse.c - fs/fuse_ops.c through the kernel, without the
 * network: a view over a data/models folder (read with pread) is mounted
 * in this process, the session loop runs in a thread, and the checks use
 * plain syscalls on the mountpoint: stat, readdir, read at odd offsets,
 * xattrs, EROFS, control-file conversations (both ways), then exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs/control.h"
#include "fs/fuse_ops.h"
#include "fs/view.h"

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

static int upper_request(struct mfs_view *view, void *state, const char *req, size_t len,
                         struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    size_t i;
    char *up;
    int rc;

    (void)view;
    (void)state;
    if (len == 0)
        return mfs_err_set(err, -EINVAL, "bad request to 'upper': empty");
    up = strdup(req);
    for (i = 0; i < len; i++)
        if (up[i] >= 'a' && up[i] <= 'z')
            up[i] = (char)(up[i] - 32);
    rc = mfs_ctl_reply_printf(reply, "%s\n", up);
    free(up);
    return rc;
}

static const struct mfs_ctl_handler upper = { "upper", upper_request, NULL, NULL, NULL };

/* A reply that streams one byte per 50 ms for up to 100 s, unless the
 * mount goes away. */
static int slow_work(struct mfs_ctl_reply *r, void *arg, struct mfs_err *err)
{
    struct timespec ts = { 0, 50 * 1000000L };
    int i;

    (void)arg;
    (void)err;
    for (i = 0; i < 2000 && !mfs_ctl_reply_cancelled(r); i++) {
        mfs_ctl_reply_write(r, "x", 1);
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int slow_request(struct mfs_view *view, void *state, const char *req, size_t len,
                        struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    (void)view;
    (void)state;
    (void)req;
    (void)len;
    return mfs_ctl_reply_spawn(reply, slow_work, NULL, NULL, err);
}

static const struct mfs_ctl_handler slow = { "slow", slow_request, NULL, NULL, NULL };

struct loop {
    struct mfs_fuse *f;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;                              /* 0 waiting, 1 ok, -errno failed */
};

static void on_ready(void *ctx, int rc)
{
    struct loop *l = ctx;

    pthread_mutex_lock(&l->mu);
    l->ready = rc < 0 ? rc : 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void *loop_main(void *p)
{
    struct loop *l = p;

    mfs_fuse_run(l->f, 8, on_ready, l, NULL);
    return NULL;
}

static int slurp_fd(int fd, char *out, size_t cap)
{
    size_t got = 0;
    ssize_t n;

    while (got < cap - 1 && (n = read(fd, out + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    return (int)got;
}

static bool same_bytes(const char *a, const char *b, off_t off, size_t len)
{
    char *x = malloc(len + 1);
    char *y = malloc(len + 1);
    int fa = open(a, O_RDONLY);
    int fb = open(b, O_RDONLY);
    ssize_t na = pread(fa, x, len, off);
    ssize_t nb = pread(fb, y, len, off);
    bool same = fa >= 0 && fb >= 0 && na == nb && na >= 0 && !memcmp(x, y, (size_t)na);

    close(fa);
    close(fb);
    free(x);
    free(y);
    return same;
}

int main(void)
{
    static const char *const names[] = {
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json",
    };
    struct mfs_entry e[6];
    struct dir_reader dr;
    struct mfs_view_cfg cfg = { 0 };
    struct mfs_view *view = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    struct loop l = { NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    const char *tmp = getenv("MFS_TMP");
    char mnt[1024];
    char p[2048];
    char q[2048];
    char buf[8192];
    pthread_t tid;
    struct stat st;
    size_t i;
    int fd;
    int rc;

    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        printf("ok - SKIP no usable /dev/fuse\n");
        return 0;
    }
    snprintf(dr.dir, sizeof(dr.dir), "%s/models/stories260K-hf", check_data_dir());
    snprintf(mnt, sizeof(mnt), "%s/fusemnt", tmp ? tmp : "/tmp");
    mkdir(mnt, 0755);
    memset(e, 0, sizeof(e));
    for (i = 0; i < 6; i++) {
        snprintf(p, sizeof(p), "%s/%s", dr.dir, names[i]);
        stat(p, &st);
        e[i].path = (char *)names[i];
        e[i].size = (uint64_t)st.st_size;
    }
    cfg.repo_id = "karpathy/stories260K";
    cfg.revision = "main";
    cfg.commit = "0123456789abcdef0123456789abcdef01234567";
    cfg.commit_time = 1700000000;
    cfg.entries = e;
    cfg.n_entries = 6;
    cfg.read = dir_read;
    cfg.read_ctx = &dr;
    cfg.no_control_plugins = true;
    cfg.uid = (uint32_t)getuid();
    cfg.gid = (uint32_t)getgid();
    rc = mfs_view_new(&cfg, &view, &err);
    CHECK(rc == 0, "view builds (%s)", err.msg);
    if (rc < 0)
        return check_done();
    mfs_view_ctl_add(view, &upper, NULL, NULL);
    mfs_view_ctl_add(view, &slow, NULL, NULL);
    rc = mfs_fuse_new(view, cfg.repo_id, NULL, &l.f, &err);
    CHECK(rc == 0, "FUSE session (%s)", err.msg);
    if (rc == 0)
        rc = mfs_fuse_mount(l.f, mnt, &err);
    CHECK(rc == 0, "mounted on %s (%s)", mnt, err.msg);
    if (rc < 0) {
        mfs_fuse_free(&l.f);
        mfs_view_free(&view);
        return check_done();
    }
    pthread_create(&tid, NULL, loop_main, &l);
    pthread_mutex_lock(&l.mu);
    while (!l.ready)
        pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    CHECK(l.ready == 1, "the ready callback saw the mount answer");

    /* stat and readdir */
    snprintf(p, sizeof(p), "%s/model.safetensors", mnt);
    CHECK(stat(p, &st) == 0 && st.st_size == 1044992 && st.st_mtime == 1700000000 &&
          (st.st_mode & 0777) == 0444, "stat model.safetensors: size, mtime, mode");
    {
        DIR *d;
        struct dirent *de;
        int n = 0;

        snprintf(p, sizeof(p), "%s/tensors", mnt);
        d = opendir(p);
        while (d && (de = readdir(d)))
            n += de->d_name[0] != '.';
        if (d)
            closedir(d);
        CHECK(n == 47, "readdir tensors/ gives 47 names (%d)", n);
    }
    /* reads at odd offsets */
    snprintf(p, sizeof(p), "%s/model.safetensors", mnt);
    snprintf(q, sizeof(q), "%s/model.safetensors", dr.dir);
    CHECK(same_bytes(p, q, 0, 1044992), "whole shard read through FUSE is identical");
    CHECK(same_bytes(p, q, 4095, 8193) && same_bytes(p, q, 1044990, 100) &&
          same_bytes(p, q, 333333, 1), "reads at odd offsets are identical");
    snprintf(p, sizeof(p), "%s/tensors/model.norm.weight", mnt);
    rc = (int)getxattr(p, "user.shape", buf, sizeof(buf));
    CHECK(rc == 4 && !memcmp(buf, "[64]", 4), "getxattr user.shape through FUSE");
    CHECK(stat(p, &st) == 0 && st.st_size == 256, "tensor file size 256");
    /* read-only */
    snprintf(p, sizeof(p), "%s/config.json", mnt);
    fd = open(p, O_WRONLY);
    CHECK(fd < 0 && errno == EROFS, "open for writing: EROFS (%s)", strerror(errno));
    snprintf(p, sizeof(p), "%s/new", mnt);
    fd = open(p, O_CREAT | O_WRONLY, 0644);
    CHECK(fd < 0 && errno == EROFS, "create: EROFS");
    /* control files: way 1 */
    snprintf(p, sizeof(p), "%s/.modelfs/upper", mnt);
    fd = open(p, O_RDWR);
    CHECK(fd >= 0 && write(fd, "abc\n", 4) == 4, "write a request to .modelfs/upper");
    slurp_fd(fd, buf, sizeof(buf));
    CHECK(!strcmp(buf, "ABC\n"), "reply on the same handle ('%s')", buf);
    CHECK(write(fd, "", 0) == 0, "an empty write is no request");
    close(fd);
    fd = open(p, O_RDWR);
    errno = 0;
    CHECK(write(fd, "\n", 1) < 0 && errno == EINVAL, "bad request: write fails with EINVAL");
    slurp_fd(fd, buf, sizeof(buf));
    CHECK(strstr(buf, "error: bad request to 'upper': empty") != NULL,
          "the reason reads from the same handle ('%s')", buf);
    close(fd);
    /* way 2: a shell in its own session writes, then a fresh handle reads */
    {
        pid_t child = fork();

        if (child == 0) {
            char cmd[4200];

            setsid();
            snprintf(cmd, sizeof(cmd), "echo 'from shell' > %s; cat %s > %s/shell.out", p, p,
                     tmp ? tmp : "/tmp");
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        waitpid(child, &rc, 0);
        snprintf(q, sizeof(q), "%s/shell.out", tmp ? tmp : "/tmp");
        fd = open(q, O_RDONLY);
        slurp_fd(fd, buf, sizeof(buf));
        close(fd);
        CHECK(!strcmp(buf, "FROM SHELL\n"), "echo > X; cat X in one session ('%s')", buf);
        fd = open(p, O_RDONLY);
        slurp_fd(fd, buf, sizeof(buf));
        close(fd);
        CHECK(strcmp(buf, "FROM SHELL\n") != 0,
              "another session does not see that reply ('%s')", buf);
    }
    snprintf(p, sizeof(p), "%s/.modelfs/info", mnt);
    fd = open(p, O_RDONLY);
    slurp_fd(fd, buf, sizeof(buf));
    close(fd);
    CHECK(strstr(buf, "\"repo_id\":\t\"karpathy/stories260K\"") ||
          strstr(buf, "\"repo_id\": \"karpathy/stories260K\""), ".modelfs/info through FUSE");

    /* Ctrl-C on a reader blocked in a streaming reply ends the read. */
    {
        char cmd[4200];
        time_t t0 = time(NULL);
        pid_t child = fork();

        snprintf(p, sizeof(p), "%s/.modelfs/slow", mnt);
        if (child == 0) {
            snprintf(cmd, sizeof(cmd), "echo go > %s; timeout -s INT 1 cat %s > /dev/null", p,
                     p);
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        waitpid(child, &rc, 0);
        CHECK(time(NULL) - t0 <= 10, "SIGINT ends a read blocked on a streaming reply (%lds)",
              (long)(time(NULL) - t0));
    }

    mfs_view_shutdown(view);
    mfs_fuse_exit(l.f);
    pthread_join(tid, NULL);
    CHECK(1, "the loop returned after mfs_fuse_exit");
    mfs_fuse_free(&l.f);
    mfs_view_free(&view);
    return check_done();
}
