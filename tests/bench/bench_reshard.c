/*
 * tests/bench/bench_reshard.c - `make bench`: resharding a 1 GiB staged
 * synthetic checkpoint (issue #5: vs cp of the same bytes on the same disk,
 * ratio cp_time / reshard_time >= 0.5).
 *
 * A model.safetensors of 16 F32 [4096, 4096] tensors (64 MiB each, 1 GiB)
 * is written in MFS_TMP and staged through a stage writer (not timed).  A
 * child process then opens the stage and runs mfs_reshard_run() into
 * 256MB shards (the whole job, commit included, timed) and reports its
 * peak RSS (getrusage).  Resharding links tensor bytes instead of copying
 * them, so the bytes are read later: the second line times reading every
 * resharded shard back through mfs_stage_read(), to be honest about where
 * the cost went.  The baseline is `cp` of the 1 GiB file in the same dir.
 * Prints "name: ours X, baseline Y, ratio R (target T)" lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/stage.h"
#include "fs/reshard.h"
#include "model/safetensors.h"

#define N_TENSORS 16
#define DIM 4096ull                         /* [4096, 4096] F32 = 64 MiB per tensor */
#define CHUNK (8u << 20)                    /* bytes per read/write call */
#define MAX_SHARD 256000000ull              /* "256MB", transformers' decimal units */

static const struct mfs_cache_repo repo = { "http://127.0.0.1:1", "model", "bench/reshard" };

struct tree {
    struct mfs_stage *s;
    struct mfs_stage_entry *st;
    size_t n;
    struct mfs_reshard_file *files;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Tensor bytes: a cheap pattern of (tensor, offset), so a read-back can be
 * checked anywhere without keeping the file. */
static void pattern(size_t idx, uint64_t off, unsigned char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        buf[i] = (unsigned char)((off + i) * 31 + idx * 7 + ((off + i) >> 12));
}

static int fill(void *ctx, size_t idx, uint64_t off, void *buf, size_t len, struct mfs_err *err)
{
    pattern(idx, off, buf, len);
    return 0;
}

static int write_model(const char *path, struct mfs_err *err)
{
    struct mfs_st_wtensor t[N_TENSORS];
    char names[N_TENSORS][32];
    size_t i;
    int fd;
    int rc;

    for (i = 0; i < N_TENSORS; i++) {
        snprintf(names[i], sizeof(names[i]), "layers.%zu.weight", i);
        t[i].name = names[i];
        t[i].dtype = MFS_ST_F32;
        t[i].ndim = 2;
        memset(t[i].shape, 0, sizeof(t[i].shape));
        t[i].shape[0] = DIM;
        t[i].shape[1] = DIM;
    }
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return mfs_err_set(err, -errno, "cannot create '%s'", path);
    rc = mfs_st_write_fd(fd, t, N_TENSORS, NULL, NULL, 0, fill, NULL, NULL, err);
    close(fd);
    return rc;
}

/* Stage the file at path as model.safetensors, 8 MiB at a time. */
static int stage_model(struct mfs_stage *s, const char *path, struct mfs_err *err)
{
    struct mfs_stage_writer *w = NULL;
    char *buf = malloc(CHUNK);
    uint64_t off = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = buf && fd >= 0 ? 0 : mfs_err_set(err, -EIO, "cannot read '%s'", path);

    if (rc == 0)
        rc = mfs_stage_writer_open(s, "model.safetensors", MFS_STAGE_BASE_EMPTY, NULL, 0644,
                                   &w, err);
    while (rc == 0) {
        ssize_t got = pread(fd, buf, CHUNK, (off_t)off);

        if (got <= 0) {
            rc = got < 0 ? mfs_err_set(err, -EIO, "cannot read '%s'", path) : 0;
            break;
        }
        got = mfs_stage_writer_write(w, off, buf, (size_t)got, err);
        rc = got < 0 ? (int)got : 0;
        off += got > 0 ? (uint64_t)got : 0;
    }
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, err);
    mfs_stage_writer_close(&w);
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

static ssize_t tree_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    const struct tree *t = ctx;

    return mfs_stage_read(t->s, path, off, len, buf, err);
}

/* The stage's FILE entries as the merged tree (nothing in the commit). */
static int tree_load(struct tree *t, struct mfs_err *err)
{
    size_t n = 0;
    size_t i;
    int rc;

    mfs_stage_entries_free(t->st, t->n);
    free(t->files);
    t->st = NULL;
    t->files = NULL;
    rc = mfs_stage_list(t->s, &t->st, &t->n, err);
    if (rc < 0)
        return rc;
    t->files = calloc(t->n + 1, sizeof(*t->files));
    if (!t->files)
        return -ENOMEM;
    for (i = 0; i < t->n; i++) {
        if (t->st[i].kind != MFS_STAGE_FILE)
            continue;
        t->files[n].path = t->st[i].path;
        t->files[n].size = t->st[i].size;
        n++;
    }
    return (int)n;
}

/* In a child process: reshard, then report seconds and peak RSS (KiB). */
static void child_reshard(const char *cache_dir, int fd_out)
{
    struct mfs_reshard_result res;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_reshard_in in;
    struct rusage ru;
    struct tree t = { NULL, NULL, 0, NULL };
    double t0 = now_s();
    double secs = -1;
    char line[256];
    int n = 0;
    int rc;

    rc = mfs_stage_open(cache_dir, &repo, "main", NULL, NULL, &t.s, &err);
    if (rc == 0)
        n = tree_load(&t, &err);
    rc = rc < 0 ? rc : n < 0 ? n : 0;
    if (rc == 0) {
        in.files = t.files;
        in.n_files = (size_t)n;
        in.read = tree_read;
        in.read_ctx = &t;
        rc = mfs_reshard_run(t.s, &in, MAX_SHARD, false, &res, &err);
    }
    secs = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru);
    snprintf(line, sizeof(line), "%d %.6f %ld %zu %s\n", rc, secs, ru.ru_maxrss,
             rc == 0 ? res.n_shards : 0, err.msg);
    if (write(fd_out, line, strlen(line)) < 0)
        rc = -EIO;
    mfs_stage_entries_free(t.st, t.n);
    free(t.files);
    mfs_stage_close(&t.s);
    _exit(rc == 0 ? 0 : 1);
}

/* Read every staged .safetensors file back; check tensors' first bytes. */
static int read_back(const char *cache_dir, uint64_t *bytes, struct mfs_err *err)
{
    struct tree t = { NULL, NULL, 0, NULL };
    unsigned char *buf = malloc(CHUNK);
    int n;
    int i;
    int rc;

    *bytes = 0;
    rc = mfs_stage_open(cache_dir, &repo, "main", NULL, NULL, &t.s, err);
    n = rc < 0 ? rc : tree_load(&t, err);
    for (i = 0; buf && n > 0 && i < n && rc == 0; i++) {
        uint64_t off = 0;

        if (!strstr(t.files[i].path, "safetensors"))
            continue;
        while (off < t.files[i].size) {
            ssize_t got = mfs_stage_read(t.s, t.files[i].path, off, CHUNK, buf, err);

            if (got <= 0) {
                rc = got < 0 ? (int)got : -EIO;
                break;
            }
            off += (uint64_t)got;
            *bytes += (uint64_t)got;
        }
    }
    mfs_stage_entries_free(t.st, t.n);
    free(t.files);
    mfs_stage_close(&t.s);
    free(buf);
    return rc < 0 ? rc : n < 0 ? n : 0;
}

/* The first 4 KiB of tensor k of the resharded checkpoint equal the
 * pattern (a resharding that moved the wrong bytes fails here). */
static int spot_check(const char *cache_dir, struct mfs_err *err)
{
    struct tree t = { NULL, NULL, 0, NULL };
    struct mfs_st_header h;
    unsigned char want[4096];
    unsigned char got[4096];
    char *json = NULL;
    int checked = 0;
    int n;
    int i;
    int rc;

    rc = mfs_stage_open(cache_dir, &repo, "main", NULL, NULL, &t.s, err);
    n = rc < 0 ? rc : tree_load(&t, err);
    for (i = 0; n > 0 && i < n && rc == 0; i++) {
        unsigned char first[8];
        uint64_t hl = 0;
        size_t k;

        if (!strstr(t.files[i].path, "-of-"))
            continue;
        rc = mfs_stage_read(t.s, t.files[i].path, 0, 8, first, err) == 8 ? 0 : -EIO;
        rc = rc ? rc : mfs_st_header_len(first, t.files[i].size, &hl, err);
        json = rc ? NULL : malloc((size_t)hl);
        if (!rc && (!json || mfs_stage_read(t.s, t.files[i].path, 8, (size_t)hl, json,
                                            err) != (ssize_t)hl))
            rc = -EIO;
        memset(&h, 0, sizeof(h));
        rc = rc ? rc : mfs_st_header_parse(t.files[i].path, json, (size_t)hl,
                                           t.files[i].size, &h, err);
        free(json);
        for (k = 0; rc == 0 && k < h.n_tensors; k++) {
            size_t idx = strtoul(h.tensors[k].name + strlen("layers."), NULL, 10);

            pattern(idx, 0, want, sizeof(want));
            if (mfs_stage_read(t.s, t.files[i].path, h.tensors[k].begin, sizeof(got), got,
                               err) != (ssize_t)sizeof(got) || memcmp(want, got, sizeof(got)))
                rc = mfs_err_set(err, -EIO, "tensor '%s' of '%s' has wrong bytes",
                                 h.tensors[k].name, t.files[i].path);
            checked++;
        }
        mfs_st_header_release(&h);
    }
    mfs_stage_entries_free(t.st, t.n);
    free(t.files);
    mfs_stage_close(&t.s);
    if (rc == 0 && checked != N_TENSORS)
        rc = mfs_err_set(err, -EIO, "found %d of %d tensors in the shards", checked,
                         N_TENSORS);
    return rc;
}

int main(void)
{
    const char *tmp = getenv("MFS_TMP");
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_cache *cache = NULL;
    struct mfs_stage *s = NULL;
    char cache_dir[1024];
    char model[1024];
    char copy[1024];
    char cmd[2200];
    char line[512] = "";
    double t0;
    double cp_s;
    double rd_s;
    double rs_s = -1;
    long rss_kb = 0;
    size_t n_shards = 0;
    uint64_t bytes = 0;
    int fds[2];
    pid_t pid;
    int status = 0;
    int rc;

    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(cache_dir, sizeof(cache_dir), "%s/reshard-cache", tmp);
    snprintf(model, sizeof(model), "%s/model.safetensors", tmp);
    snprintf(copy, sizeof(copy), "%s/model.copy", tmp);
    rc = write_model(model, &err);
    rc = rc ? rc : mfs_cache_open(cache_dir, 0, &cache, &err);
    mfs_cache_close(&cache);
    rc = rc ? rc : mfs_stage_open(cache_dir, &repo, "main", NULL, NULL, &s, &err);
    t0 = now_s();
    rc = rc ? rc : stage_model(s, model, &err);
    mfs_stage_close(&s);
    if (rc < 0) {
        printf("reshard bench: setup failed: %s\n", err.msg);
        return 1;
    }
    printf("# staged 1 GiB through a writer in %.2f s\n", now_s() - t0);
    if (pipe(fds) < 0)
        return 1;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child_reshard(cache_dir, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], line, sizeof(line) - 1) < 0)
        line[0] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    if (sscanf(line, "%d %lf %ld %zu", &rc, &rs_s, &rss_kb, &n_shards) != 4 || rc != 0 ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("reshard bench: the reshard failed: %s\n", line);
        return 1;
    }
    t0 = now_s();
    rc = read_back(cache_dir, &bytes, &err);
    rd_s = now_s() - t0;
    if (rc == 0)
        rc = spot_check(cache_dir, &err);
    if (rc < 0) {
        printf("reshard bench: read back failed: %s\n", err.msg);
        return 1;
    }
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", model, copy);
    t0 = now_s();
    rc = system(cmd);
    cp_s = now_s() - t0;
    unlink(copy);
    if (rc != 0) {
        printf("reshard bench: cp failed\n");
        return 1;
    }
    printf("reshard 1 GiB staged checkpoint into %zu shards of 256MB (commit included): "
           "ours %.3f s, baseline cp %.3f s, ratio %.2f (target 0.5)%s\n", n_shards, rs_s, cp_s,
           cp_s / rs_s, cp_s / rs_s >= 0.5 ? "" : "  BELOW TARGET");
    printf("read back all resharded shards through mfs_stage_read (%.0f MB): ours %.3f s "
           "(%.0f MB/s), baseline cp %.3f s, ratio %.2f (no target: where the cost moved)\n",
           (double)bytes / 1e6, rd_s, (double)bytes / 1e6 / rd_s, cp_s, cp_s / rd_s);
    printf("reshard peak RSS: ours %.1f MiB, baseline largest tensor + 64 MiB = %.1f MiB, "
           "ratio %.2f (target <= 1.0)%s\n", (double)rss_kb / 1024.0,
           (double)(DIM * DIM * 4 + (64u << 20)) / 1048576.0,
           (double)rss_kb * 1024.0 / (double)(DIM * DIM * 4 + (64u << 20)),
           (double)rss_kb * 1024.0 <= (double)(DIM * DIM * 4 + (64u << 20)) ? ""
                                                                            : "  ABOVE TARGET");
    unlink(model);
    return 0;
}
