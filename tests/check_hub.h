/*
 * tests/check_hub.h - a local `modelfs hub serve` for C tests that talk to
 * a real Hub over loopback (tests/lib.sh hub_start is the shell twin).
 *
 *     struct check_hub h;
 *     if (check_hub_start(&h, tmpdir, "hf_token alice\n", NULL) < 0) ...
 *     ... h.url ...
 *     check_hub_stop(&h);
 *
 * The server binary is $MFS_BIN (run.sh exports it), else build/modelfs.
 * Also what such tests share: a download sink into a fixed buffer
 * (check_collect_sink) and a lookup in a listed tree (check_find_entry).
 */
#ifndef MFS_TESTS_CHECK_HUB_H
#define MFS_TESTS_CHECK_HUB_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/entry.h"

/* Where check_collect_sink puts a download: buf[0..cap), filled to len. */
struct check_collect {
    unsigned char *buf;                     /* what arrived, in order */
    size_t len;
    size_t cap;
};

/* A hub sink (ctx: struct check_collect *): appends, -EIO past cap. */
static inline int check_collect_sink(void *ctx, const void *data, size_t len)
{
    struct check_collect *c = ctx;

    if (c->len + len > c->cap)
        return -EIO;
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    return 0;
}

/* The entry of v[0..n) with this path, or NULL. */
static inline const struct mfs_entry *check_find_entry(const struct mfs_entry *v, size_t n,
                                                       const char *path)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(v[i].path, path))
            return &v[i];
    return NULL;
}

struct check_hub {
    pid_t pid;
    FILE *out;                              /* its stdout (kept open: no SIGPIPE) */
    char url[128];                          /* "http://127.0.0.1:PORT" */
};

/* Serve DIR/hub on a free loopback port, with the token file DIR/tokens
 * holding tokens ("TOKEN USER" lines) and --delay-ms delay_ms unless NULL;
 * the server's stderr is appended to DIR/hub.err.  Returns once it prints
 * its URL: 0, or -1 (*h is still safe to pass to check_hub_stop). */
static inline int check_hub_start(struct check_hub *h, const char *dir, const char *tokens,
                                  const char *delay_ms)
{
    char root[512];
    char token_file[512];
    char errlog[512];
    char line[256];
    const char *bin = getenv("MFS_BIN");
    int fds[2];
    FILE *f;

    memset(h, 0, sizeof(*h));
    if (!bin || !*bin)
        bin = "build/modelfs";
    snprintf(root, sizeof(root), "%s/hub", dir);
    snprintf(token_file, sizeof(token_file), "%s/tokens", dir);
    snprintf(errlog, sizeof(errlog), "%s/hub.err", dir);
    mkdir(root, 0755);
    f = fopen(token_file, "w");
    if (!f)
        return -1;
    fputs(tokens, f);
    fclose(f);
    if (pipe(fds) < 0)
        return -1;
    h->pid = fork();
    if (h->pid < 0)
        return -1;
    if (h->pid == 0) {
        int e = open(errlog, O_WRONLY | O_CREAT | O_APPEND, 0644);

        dup2(fds[1], 1);
        if (e >= 0)
            dup2(e, 2);
        close(fds[0]);
        if (delay_ms)
            execl(bin, bin, "hub", "serve", "--root", root, "--host", "127.0.0.1", "--port",
                  "0", "--token-file", token_file, "--delay-ms", delay_ms, (char *)NULL);
        else
            execl(bin, bin, "hub", "serve", "--root", root, "--host", "127.0.0.1", "--port",
                  "0", "--token-file", token_file, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    h->out = fdopen(fds[0], "r");
    if (!h->out || !fgets(line, sizeof(line), h->out))
        return -1;
    if (sscanf(line, "modelfs hub: serving %127s", h->url) != 1)
        return -1;
    return 0;
}

/* Stop the server (SIGTERM, then wait) and forget it; idempotent. */
static inline void check_hub_stop(struct check_hub *h)
{
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        waitpid(h->pid, NULL, 0);
        h->pid = 0;
    }
    if (h->out)
        fclose(h->out);
    h->out = NULL;
}

#endif
