/*
 * tools/cli_push.c - `modelfs push MOUNTPOINT [-m MESSAGE] [--description D]
 * [--create-pr]`: commit a mount's staged changes now (docs/design.md,
 * Commands; fs/ctl_push.c does the work inside the mount).
 *
 * It writes the options that differ from the mount's settings to
 * .modelfs/config, writes the message (or a bare newline: the settings'
 * message, else the default) to .modelfs/push on a read-write handle, and
 * reads the reply on the same handle: the push's JSON, or "error: REASON"
 * when the write failed.  Options given here are for this push only: the
 * settings they replaced are written back afterwards, so one
 * `--create-pr` does not turn every later sync into a pull request.
 * While the write blocks, a second thread polls .modelfs/status ("push":
 * done and total bytes) and draws a one-line bar on stderr, only when
 * stderr is a terminal.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "tools/cli.h"

#define BAR_WIDTH 30                        /* characters of the progress bar */
#define POLL_MS 250                         /* status polling period */

static void usage(FILE *f)
{
    fputs("usage: modelfs push MOUNTPOINT [-m MESSAGE] [--description TEXT] [--create-pr]\n"
          "Commits every staged change of the mount as one Hub commit (or, with\n"
          "--create-pr, one pull request) and prints its URL.  Without -m the mount's\n"
          "commit_message setting is used, else \"Upload N files with modelfs\".\n", f);
}

/* The whole content of path (a control file: read until EOF).  OUT: *out.
 * -errno. */
static int slurp_fd(int fd, struct mfs_buf *out)
{
    char buf[4096];
    ssize_t n;

    for (;;) {
        n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        if (mfs_buf_append(out, buf, (size_t)n) < 0)
            return -ENOMEM;
    }
}

static int slurp_path(const char *path, struct mfs_buf *out)
{
    int fd = open(path, O_RDONLY);
    int rc;

    if (fd < 0)
        return -errno;
    rc = slurp_fd(fd, out);
    close(fd);
    return rc;
}

/* One request to a control file on a read-write handle; the reply (or the
 * error text) into *reply.  Returns 0, or -errno of the write. */
static int ctl_request(const char *path, const char *req, size_t len, struct mfs_buf *reply)
{
    ssize_t n;
    int fd;
    int rc = 0;

    fd = open(path, O_RDWR);
    if (fd < 0)
        return -errno;
    do {
        n = write(fd, req, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        rc = -errno;
    if (slurp_fd(fd, reply) < 0 && rc == 0)
        rc = -EIO;
    close(fd);
    return rc;
}

/* Append v as a config value: quoted, with '"' and '\\' escaped. */
static int quote_value(struct mfs_buf *b, const char *v)
{
    int rc = mfs_buf_puts(b, "\"");

    for (; rc == 0 && *v; v++) {
        if (*v == '"' || *v == '\\')
            rc = mfs_buf_puts(b, "\\");
        if (rc == 0)
            rc = mfs_buf_append(b, v, 1);
    }
    return rc == 0 ? mfs_buf_puts(b, "\"") : rc;
}

/* The reply's reason: "error: REASON\n" -> "REASON". */
static const char *reason_of(struct mfs_buf *reply, int rc)
{
    char *s = reply->data;
    size_t n;

    if (!s || !*s)
        return strerror(-rc);
    if (!strncmp(s, "error: ", 7))
        s += 7;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

struct progress {
    const char *status_path;                /* MOUNTPOINT/.modelfs/status */
    atomic_bool stop;                       /* set by the main thread when the push ended */
    bool drawn;                             /* a bar is on the line */
};

static void human(uint64_t n, char *buf, size_t size)
{
    if (n >= 1000000000ull)
        snprintf(buf, size, "%.2f GB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(buf, size, "%.1f MB", (double)n / 1e6);
    else
        snprintf(buf, size, "%.1f kB", (double)n / 1e3);
}

/* Draw the bar from the status JSON's "push": {"done", "total", "path"}. */
static void draw(struct progress *pg, const char *json)
{
    const cJSON *push;
    const cJSON *done;
    const cJSON *total;
    cJSON *root = cJSON_Parse(json);
    char bar[BAR_WIDTH + 1];
    char a[32];
    char b[32];
    double frac;
    int fill;
    int i;

    if (!root)
        return;
    push = cJSON_GetObjectItemCaseSensitive(root, "push");
    done = cJSON_GetObjectItemCaseSensitive(push, "done");
    total = cJSON_GetObjectItemCaseSensitive(push, "total");
    if (cJSON_IsNumber(done) && cJSON_IsNumber(total) && total->valuedouble > 0) {
        frac = done->valuedouble / total->valuedouble;
        if (frac > 1)
            frac = 1;
        fill = (int)(frac * BAR_WIDTH);
        for (i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[BAR_WIDTH] = '\0';
        human((uint64_t)done->valuedouble, a, sizeof(a));
        human((uint64_t)total->valuedouble, b, sizeof(b));
        fprintf(stderr, "\rpushing [%s] %3d%% %s / %s   ", bar, (int)(frac * 100), a, b);
        fflush(stderr);
        pg->drawn = true;
    }
    cJSON_Delete(root);
}

static void *progress_main(void *arg)
{
    struct progress *pg = arg;
    struct timespec ts = { 0, POLL_MS * 1000000L };
    struct mfs_buf st = MFS_BUF_INIT;

    while (!atomic_load(&pg->stop)) {
        nanosleep(&ts, NULL);
        if (atomic_load(&pg->stop))
            break;
        mfs_buf_reset(&st);
        if (slurp_path(pg->status_path, &st) == 0 && st.data)
            draw(pg, st.data);
    }
    mfs_buf_release(&st);
    return NULL;
}

/* Read the settings JSON of .modelfs/config.  OUT: *create_pr, desc
 * (owned, free()).  -errno. */
static int settings_read(const char *cfg_path, bool *create_pr, char **desc)
{
    struct mfs_buf b = MFS_BUF_INIT;
    const cJSON *it;
    cJSON *root;
    int rc;

    *create_pr = false;
    *desc = NULL;
    rc = slurp_path(cfg_path, &b);
    if (rc < 0)
        goto out_release;
    root = cJSON_Parse(b.data ? b.data : "");
    if (!root) {
        rc = -EIO;
        goto out_release;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "create_pr");
    *create_pr = cJSON_IsTrue(it);
    it = cJSON_GetObjectItemCaseSensitive(root, "commit_description");
    *desc = strdup(cJSON_IsString(it) ? it->valuestring : "");
    if (!*desc)
        rc = -ENOMEM;
    cJSON_Delete(root);
out_release:
    mfs_buf_release(&b);
    return rc;
}

/* Write create_pr and commit_description to config. */
static int settings_write(const char *cfg_path, bool create_pr, const char *desc,
                          struct mfs_buf *reply)
{
    struct mfs_buf req = MFS_BUF_INIT;
    int rc;

    rc = mfs_buf_printf(&req, "create_pr=%d commit_description=", create_pr ? 1 : 0);
    if (rc == 0)
        rc = quote_value(&req, desc);
    if (rc == 0)
        rc = ctl_request(cfg_path, req.data, req.len, reply);
    mfs_buf_release(&req);
    return rc;
}

int mfs_cli_push(int argc, char **argv)
{
    const char *mnt = NULL;
    const char *message = NULL;
    const char *description = NULL;
    bool create_pr = false;
    bool old_pr = false;
    char *old_desc = NULL;
    bool changed = false;
    char push_path[4096];
    char cfg_path[4096];
    char status_path[4096];
    struct mfs_buf reply = MFS_BUF_INIT;
    struct mfs_buf tmp = MFS_BUF_INIT;
    struct progress pg;
    pthread_t tid;
    bool thread = false;
    cJSON *root = NULL;
    int rc;
    int ret = 1;
    int i;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--message")) && i + 1 < argc) {
            message = argv[++i];
        } else if (!strcmp(argv[i], "--description") && i + 1 < argc) {
            description = argv[++i];
        } else if (!strcmp(argv[i], "--create-pr")) {
            create_pr = true;
        } else if (argv[i][0] == '-' || mnt) {
            usage(stderr);
            return 2;
        } else {
            mnt = argv[i];
        }
    }
    if (!mnt) {
        usage(stderr);
        return 2;
    }
    if (message && strchr(message, '\n')) {
        fprintf(stderr, "modelfs: push: the message (-m) is one line; put more in "
                "--description\n");
        return 2;
    }
    snprintf(push_path, sizeof(push_path), "%s/.modelfs/push", mnt);
    snprintf(cfg_path, sizeof(cfg_path), "%s/.modelfs/config", mnt);
    snprintf(status_path, sizeof(status_path), "%s/.modelfs/status", mnt);
    if (access(push_path, W_OK) != 0) {
        int e = errno;
        struct stat st;

        /* ENOENT says nothing useful when mnt is a folder: name the cause. */
        if (e == ENOENT && stat(mnt, &st) == 0)
            fprintf(stderr, "modelfs: cannot push '%s': not the mountpoint of a modelfs "
                    "mount (give the folder that was mounted)\n", mnt);
        else if (e == EACCES || e == EROFS)
            fprintf(stderr, "modelfs: cannot push '%s': the mount does not push (read-only "
                    "or offline)\n", mnt);
        else
            fprintf(stderr, "modelfs: cannot push '%s': %s\n", mnt, strerror(e));
        return 1;
    }

    if (create_pr || description) {
        rc = settings_read(cfg_path, &old_pr, &old_desc);
        if (rc == 0)
            rc = settings_write(cfg_path, create_pr || old_pr,
                                description ? description : old_desc, &tmp);
        if (rc < 0) {
            fprintf(stderr, "modelfs: cannot set the push options of '%s': %s\n", mnt,
                    reason_of(&tmp, rc));
            goto out_release;
        }
        changed = true;
    }

    memset(&pg, 0, sizeof(pg));
    pg.status_path = status_path;
    atomic_init(&pg.stop, false);
    if (isatty(STDERR_FILENO) && pthread_create(&tid, NULL, progress_main, &pg) == 0)
        thread = true;
    if (message && *message)
        rc = ctl_request(push_path, message, strlen(message), &reply);
    else
        rc = ctl_request(push_path, "\n", 1, &reply);
    if (thread) {
        atomic_store(&pg.stop, true);
        pthread_join(tid, NULL);
        if (pg.drawn)
            fputs("\r\033[K", stderr);
    }
    if (rc < 0) {
        fprintf(stderr, "modelfs: push failed: %s\n", reason_of(&reply, rc));
        goto out_restore;
    }
    root = cJSON_Parse(reply.data ? reply.data : "");
    if (!root) {
        fprintf(stderr, "modelfs: push: unreadable answer from '%s'\n", push_path);
        goto out_restore;
    }
    {
        const cJSON *committed = cJSON_GetObjectItemCaseSensitive(root, "committed");
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "commit_url");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "pr_url");
        const cJSON *commit = cJSON_GetObjectItemCaseSensitive(root, "commit");
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(root, "bytes_uploaded");

        if (!cJSON_IsTrue(committed)) {
            printf("nothing to push: the remote is at %s\n",
                   cJSON_IsString(commit) ? commit->valuestring : "its head");
        } else if (cJSON_IsString(pr) && pr->valuestring[0]) {
            printf("%s\n", pr->valuestring);
        } else if (cJSON_IsString(url) && url->valuestring[0]) {
            printf("%s\n", url->valuestring);
        } else {
            printf("%s\n", cJSON_IsString(commit) ? commit->valuestring : "pushed");
        }
        if (isatty(STDERR_FILENO) && cJSON_IsNumber(bytes) && cJSON_IsTrue(committed)) {
            char h[32];

            human((uint64_t)bytes->valuedouble, h, sizeof(h));
            fprintf(stderr, "uploaded %s\n", h);
        }
    }
    ret = 0;
out_restore:
    if (changed) {
        mfs_buf_reset(&tmp);
        rc = settings_write(cfg_path, old_pr, old_desc ? old_desc : "", &tmp);
        if (rc < 0)
            fprintf(stderr, "modelfs: warning: cannot restore the push options of '%s': %s\n",
                    mnt, reason_of(&tmp, rc));
    }
out_release:
    cJSON_Delete(root);
    free(old_desc);
    mfs_buf_release(&reply);
    mfs_buf_release(&tmp);
    return ret;
}
