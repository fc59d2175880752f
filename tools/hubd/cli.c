/*
 * tools/hubd/cli.c - `modelfs hub serve` and `modelfs hub import`
 * (tools/cli.h conventions: exit 0 ok, 1 failure, 2 usage).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/cli.h"
#include "tools/hubd/hubd.h"

static int usage(FILE *f)
{
    fputs("usage: modelfs hub serve --root DIR [--host 127.0.0.1] [--port N] [--token-file F]\n"
          "                         [--delay-ms N] [--fault-file F]\n"
          "       modelfs hub import SRC_DIR REPO_ID [--root DIR] [--branch B] [--message M]\n"
          "                          [--private] [--gated] [--repo-type model|dataset]\n", f);
    return 2;
}

static int parse_num(const char *s, unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long long v;

    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || !end || *end || v > max)
        return -EINVAL;
    *out = (unsigned long)v;
    return 0;
}

/* Never runs while the signals are blocked; installing it replaces an
 * inherited SIG_IGN (background jobs of scripts ignore SIGINT), which would
 * make the kernel drop the signal instead of queueing it for sigtimedwait. */
static void on_stop_signal(int sig)
{
    (void)sig;
}

static int cmd_serve(int argc, char **argv)
{
    struct mfs_hubd_serve_opts o = { 0 };
    struct mfs_err err = MFS_ERR_INIT;
    struct sigaction sa;
    sigset_t set;
    sigset_t old;
    unsigned long v;
    int i;
    int rc;

    o.host = "127.0.0.1";
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!val)
            return usage(stderr);
        if (!strcmp(a, "--root"))
            o.root = val;
        else if (!strcmp(a, "--host"))
            o.host = val;
        else if (!strcmp(a, "--port") && parse_num(val, 65535, &v) == 0)
            o.port = (unsigned)v;
        else if (!strcmp(a, "--token-file"))
            o.token_file = val;
        else if (!strcmp(a, "--delay-ms") && parse_num(val, 600000, &v) == 0)
            o.delay_ms = (long)v;
        else if (!strcmp(a, "--fault-file"))
            o.fault_file = val;
        else
            return usage(stderr);
        i++;
    }
    if (!o.root)
        return usage(stderr);
    /* SIGTERM/SIGINT stay blocked; the server collects them (hubd.h). */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    rc = mfs_hubd_serve(&o, &set, &err);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        fprintf(stderr, "modelfs: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int cmd_import(int argc, char **argv)
{
    struct mfs_hubd_import_opts o = { 0 };
    struct mfs_err err = MFS_ERR_INIT;
    const char *src = NULL;
    const char *repo = NULL;
    char oid[41];
    int i;

    o.root = getenv("MODELFS_HUB_ROOT");
    o.type = "model";
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--private")) {
            o.is_private = true;
            continue;
        }
        if (!strcmp(a, "--gated")) {
            o.gated = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (!val)
                return usage(stderr);
            if (!strcmp(a, "--root"))
                o.root = val;
            else if (!strcmp(a, "--branch"))
                o.branch = val;
            else if (!strcmp(a, "--message"))
                o.message = val;
            else if (!strcmp(a, "--repo-type") && (!strcmp(val, "model") ||
                                                   !strcmp(val, "dataset")))
                o.type = val;
            else
                return usage(stderr);
            i++;
        } else if (!src) {
            src = a;
        } else if (!repo) {
            repo = a;
        } else {
            return usage(stderr);
        }
    }
    if (!src || !repo || !o.root)
        return usage(stderr);
    if (!mfs_hubd_repo_name_ok(repo)) {
        fprintf(stderr, "modelfs: invalid repo id '%s'\n", repo);
        return 1;
    }
    if (mfs_hubd_import(src, repo, &o, oid, &err) < 0) {
        fprintf(stderr, "modelfs: cannot import '%s' as '%s': %s\n", src, repo, err.msg);
        return 1;
    }
    printf("%s\n", oid);
    return 0;
}

int mfs_hubd_cli(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (!strcmp(argv[1], "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "import"))
        return cmd_import(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    return usage(stderr);
}
