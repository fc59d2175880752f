/*
 * tools/cli_mount.c - `modelfs mount`, `modelfs umount`, and the
 * mount.fuse3 form `modelfs REPO_ID MOUNTPOINT -o opt1,opt2=val` that
 * `mount -t fuse.modelfs` and fstab lines run (docs/design.md, Commands).
 *
 * Mount: resolve the revision to its commit (pinned for the life of the
 * mount), get the commit's file list (cache first: a commit never changes),
 * build the view, mount, serve.  Unless -f, the command forks a daemon and
 * waits on a pipe until the daemon has answered a stat of the mountpoint
 * (the mount is usable) or has failed; the daemon's one-line reason becomes
 * this command's message.  Everything that may start threads or open
 * SQLite happens in the daemon, after the fork.
 *
 * fstab (the -o names of the mount.fuse3 form; each long option of
 * `modelfs mount` also works as NAME=VALUE with '-' or '_'):
 *   org/name  /mnt/m  fuse.modelfs  revision=main,endpoint=http://hub:8080,
 *             cache_dir=/var/cache/modelfs,cache_size=50GB,offline,
 *             repo_type=model,timeout=30,token_file=/etc/modelfs/token,
 *             allow_other  0 0
 * Options modelfs does not know go to FUSE (allow_other, ro...); fstab-only
 * words (defaults, noauto, user, _netdev, nofail, x-*) are dropped.
 *
 * Umount: ask the daemon (its pid is the root's user.modelfs.pid xattr) to
 * stop: it aborts transfers in flight (mfs_hub_shutdown), ends streaming
 * control replies and detaches the mount, so the command returns within
 * seconds even with reads in flight.  A daemon that does not answer is
 * unmounted with fusermount3 -u (then -z).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/stage.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/size.h"
#include "fs/fetch.h"
#include "fs/fuse_ops.h"
#include "fs/push.h"
#include "fs/view.h"
#include "hub/hub.h"
#include "hub/upload.h"
#include "tools/cli.h"

extern char **environ;

struct mount_opts {
    char *repo_id;                          /* owned */
    char *mountpoint;                       /* owned; absolute */
    char *revision;                         /* owned; "main" by default */
    char *endpoint;                         /* owned; no trailing '/' */
    char *token;                            /* owned; NULL = anonymous */
    char *cache_dir;                        /* owned; absolute */
    char *repo_type;                        /* owned; "model" or "dataset" */
    uint64_t cache_size;                    /* bytes, 0 = no bound */
    long timeout_ms;                        /* read stall bound */
    bool offline;
    bool foreground;
    bool read_only;                         /* --read-only, -o ro: writes are EROFS */
    uint64_t max_shard_size;                /* bytes; 0 = the default 5GB */
    char *commit_message;                   /* owned; NULL = the push's default */
    bool create_pr;                         /* pushes open pull requests */
    bool create;                            /* create the repo first */
    bool is_private;                        /* with create */
    struct mfs_buf fuse_opts;               /* "-o" options for FUSE, comma-separated */
};

/* The daemon's shared state for the signal thread and log relay. */
struct mount_run {
    struct mfs_hub *hub;
    struct mfs_fetch_cfg fcfg;              /* how to make a fetch for another commit */
    struct mfs_fetch **fetches;             /* owned; fetches of later commits (pushes) */
    size_t n_fetches;
    pthread_mutex_t fetch_mu;               /* guards fetches */
    struct mfs_fuse *fuse;
    _Atomic(struct mfs_view *) view;        /* set once built; fetch logs go there */
    int ready_fd;                           /* pipe to the waiting parent, -1 in -f */
    pthread_mutex_t mu;                     /* guards done */
    bool done;                              /* the loop has returned */
};

static void mount_usage(FILE *f)
{
    fputs("usage: modelfs mount [options] REPO_ID MOUNTPOINT\n"
          "  --revision REV        branch, tag, commit or refs/pr/N (default main), pinned\n"
          "  --endpoint URL        default $HF_ENDPOINT, else https://huggingface.co\n"
          "  --token TOKEN         default $HF_TOKEN, else $HF_TOKEN_PATH or $HF_HOME/token\n"
          "  --token-file FILE     read the token from FILE\n"
          "  --cache-dir DIR       default $MODELFS_CACHE, else $HF_HOME/modelfs\n"
          "  --cache-size SIZE     eviction bound for cached bytes (50GB, 20GiB)\n"
          "  --offline             only what is cached ($HF_HUB_OFFLINE=1 too)\n"
          "  --repo-type TYPE      model (default) or dataset\n"
          "  --timeout SECONDS     a transfer stalled this long fails with EIO (default 30)\n"
          "  --read-only           refuse writes (EROFS); also -o ro.  One writable mount\n"
          "                        per repo, revision and cache dir at a time: a second\n"
          "                        fails (EBUSY) unless --read-only\n"
          "  --max-shard-size SIZE reshard checkpoints above SIZE at push (default 5GB)\n"
          "  --commit-message MSG  title of the commits pushes make\n"
          "  --create-pr           pushes open pull requests instead of moving the branch\n"
          "  --create [--private]  create the repo if it does not exist\n"
          "  -f                    stay in the foreground\n"
          "  -o OPT[,OPT...]       the same options as NAME=VALUE, others go to FUSE\n"
          "mount.fuse3 form: modelfs REPO_ID MOUNTPOINT -o revision=main,cache_dir=...\n"
          "MOUNTPOINT must be an existing empty folder.\n"
          "Writes are staged in the cache at once and pushed as one commit by sync MOUNT,\n"
          "fsync, a write to MOUNT/.modelfs/push, modelfs push and modelfs umount.\n"
          "usage: modelfs umount MOUNTPOINT\n", f);
}

static void opts_release(struct mount_opts *o)
{
    free(o->repo_id);
    free(o->mountpoint);
    free(o->revision);
    free(o->endpoint);
    free(o->token);
    free(o->cache_dir);
    free(o->repo_type);
    free(o->commit_message);
    mfs_buf_release(&o->fuse_opts);
}

static int set_str(char **dst, const char *v)
{
    char *c = strdup(v);

    if (!c)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* Per hub-api.md section 1: true iff upper-cased value is 1, ON, YES, TRUE. */
static bool env_true(const char *name)
{
    const char *v = getenv(name);

    return v && (!strcasecmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") ||
                 !strcasecmp(v, "true"));
}

/* The content of a token file without CR/LF and surrounding blanks; NULL if
 * the file is missing or empty (hub-api.md section 1). */
static char *read_token_file(const char *path)
{
    char buf[4096];
    size_t n;
    size_t a = 0;
    FILE *f = fopen(path, "r");

    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    while (a < n && isspace((unsigned char)buf[a]))
        a++;
    return buf[a] ? strdup(buf + a) : NULL;
}

static char *hf_home(void)
{
    struct mfs_buf b = MFS_BUF_INIT;
    const char *v = getenv("HF_HOME");

    if (v && *v)
        return strdup(v);
    v = getenv("XDG_CACHE_HOME");
    if (v && *v)
        mfs_buf_printf(&b, "%s/huggingface", v);
    else
        mfs_buf_printf(&b, "%s/.cache/huggingface", getenv("HOME") ? getenv("HOME") : "/root");
    return mfs_buf_steal(&b);
}

/* Names that only mean something to mount(8) or fstab. */
static bool fstab_only(const char *o)
{
    static const char *const words[] = {
        "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail",
        "owner", "group",
    };
    size_t i;

    if (!strncmp(o, "x-", 2) || !strncmp(o, "comment=", 8))
        return true;
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (!strcmp(o, words[i]))
            return true;
    return false;
}

static int apply_opt(struct mount_opts *o, const char *name, const char *val, bool *token_set,
                     struct mfs_err *err);

/* Split "a,b=c" and apply each; unknown ones go to o->fuse_opts. */
static int apply_o(struct mount_opts *o, const char *list, bool *token_set, struct mfs_err *err)
{
    char *copy = strdup(list);
    char *save = NULL;
    char *tok;
    int rc = 0;

    if (!copy)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        char name[64];
        char *eq = strchr(tok, '=');
        size_t nlen = eq ? (size_t)(eq - tok) : strlen(tok);
        size_t i;

        if (!*tok || fstab_only(tok))
            continue;
        if (nlen >= sizeof(name)) {
            rc = mfs_err_set(err, -EINVAL, "bad option '%s'", tok);
            break;
        }
        for (i = 0; i < nlen; i++)
            name[i] = tok[i] == '_' ? '-' : tok[i];
        name[nlen] = '\0';
        rc = apply_opt(o, name, eq ? eq + 1 : NULL, token_set, err);
        if (rc == 1) {                      /* not ours: FUSE's */
            rc = 0;
            if ((o->fuse_opts.len && mfs_buf_puts(&o->fuse_opts, ",") < 0) ||
                mfs_buf_puts(&o->fuse_opts, tok) < 0)
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
        }
    }
    free(copy);
    return rc;
}

/* Apply option name (without dashes) with value val (NULL for flags).
 * Returns 0, 1 when the name is not a modelfs option, or -EINVAL. */
static int apply_opt(struct mount_opts *o, const char *name, const char *val, bool *token_set,
                     struct mfs_err *err)
{
    static const char *const valued[] = {
        "revision", "endpoint", "token", "token-file", "cache-dir", "cache-size", "repo-type",
        "timeout", "max-shard-size", "commit-message",
    };
    bool needs_val = false;
    uint64_t bytes;
    char *end;
    size_t i;
    int rc = 0;

    for (i = 0; i < sizeof(valued) / sizeof(valued[0]); i++)
        if (!strcmp(name, valued[i]))
            needs_val = true;
    if (needs_val && (!val || !*val))
        return mfs_err_set(err, -EINVAL, "option '%s' needs a value", name);
    if (!strcmp(name, "revision")) {
        rc = set_str(&o->revision, val);
    } else if (!strcmp(name, "endpoint")) {
        rc = set_str(&o->endpoint, val);
    } else if (!strcmp(name, "token")) {
        rc = set_str(&o->token, val);
        *token_set = true;
    } else if (!strcmp(name, "token-file")) {
        free(o->token);
        o->token = read_token_file(val);
        if (!o->token)
            return mfs_err_set(err, -EINVAL, "cannot read a token from '%s'", val);
        *token_set = true;
    } else if (!strcmp(name, "cache-dir")) {
        rc = set_str(&o->cache_dir, val);
    } else if (!strcmp(name, "cache-size")) {
        rc = mfs_size_parse(val, MFS_SIZE_BINARY, &bytes, err);
        if (rc < 0)
            return rc;
        o->cache_size = bytes;
    } else if (!strcmp(name, "repo-type")) {
        if (strcmp(val, "model") && strcmp(val, "dataset"))
            return mfs_err_set(err, -EINVAL, "bad repo type '%s': use model or dataset", val);
        rc = set_str(&o->repo_type, val);
    } else if (!strcmp(name, "timeout")) {
        double s = strtod(val, &end);

        if (end == val || *end || !(s > 0) || s > 86400)
            return mfs_err_set(err, -EINVAL, "bad timeout '%s': seconds, more than 0", val);
        o->timeout_ms = (long)(s * 1000.0);
    } else if (!strcmp(name, "max-shard-size")) {
        rc = mfs_size_parse(val, 0, &bytes, err);
        if (rc < 0)
            return rc;
        if (bytes == 0)
            return mfs_err_set(err, -EINVAL, "bad max shard size '%s': more than 0", val);
        o->max_shard_size = bytes;
    } else if (!strcmp(name, "commit-message")) {
        rc = set_str(&o->commit_message, val);
    } else if (!strcmp(name, "create-pr")) {
        o->create_pr = true;
    } else if (!strcmp(name, "ro")) {
        o->read_only = true;
    } else if (!strcmp(name, "rw")) {
        o->read_only = false;
    } else if (!strcmp(name, "offline")) {
        o->offline = true;
    } else if (!strcmp(name, "read-only")) {
        o->read_only = true;
    } else if (!strcmp(name, "foreground")) {
        o->foreground = true;
    } else if (!strcmp(name, "create")) {
        o->create = true;
    } else if (!strcmp(name, "private")) {
        o->is_private = true;
    } else {
        return 1;
    }
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

/* Whether id is a Hub repo id: "name" or "namespace/name", each part of
 * letters, digits, '-', '_', '.', not starting or ending with '-' or '.',
 * no "--" or "..", at most 96 characters (huggingface_hub's
 * validate_repo_id).  Spaces, slashes beyond one and ".." are refused
 * here, before any request names them. */
static bool repo_id_ok(const char *id)
{
    size_t len = strlen(id);
    size_t part = 0;
    int slashes = 0;
    size_t i;

    if (len == 0 || len > 96 || strstr(id, "..") || strstr(id, "--"))
        return false;
    for (i = 0; i <= len; i++) {
        char c = id[i];

        if (c == '/' || c == '\0') {
            if (part == 0 || id[i - 1] == '-' || id[i - 1] == '.')
                return false;
            if (c == '/' && ++slashes > 1)
                return false;
            part = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
        if (part == 0 && (c == '-' || c == '.'))
            return false;
        part++;
    }
    return true;
}

/* 0 when path is an empty folder.  -ENOTDIR, -ENOTEMPTY (mounting there
 * would hide its files, as mountpoint-s3 and rclone refuse to), or the
 * error of opendir, with the reason in *err. */
static int mountpoint_check(const char *path, struct mfs_err *err)
{
    struct dirent *de;
    DIR *d = opendir(path);
    int rc = 0;

    if (!d)
        return mfs_err_set(err, -errno, "cannot mount on '%s': %s", path, strerror(errno));
    for (de = readdir(d); de; de = readdir(d)) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            rc = mfs_err_set(err, -ENOTEMPTY,
                             "cannot mount on '%s': the folder is not empty (its files would "
                             "be hidden); use an empty folder", path);
            break;
        }
    }
    closedir(d);
    return rc;
}

static int parse_args(int argc, char **argv, struct mount_opts *o, struct mfs_err *err)
{
    const char *pos[2] = { NULL, NULL };
    bool token_set = false;
    char *home = NULL;
    char path[PATH_MAX];
    int npos = 0;
    int i;
    int rc = 0;

    mfs_buf_init(&o->fuse_opts);
    o->timeout_ms = 30000;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!strcmp(a, "-f")) {
            o->foreground = true;
        } else if (!strcmp(a, "-o")) {
            if (i + 1 >= argc)
                return mfs_err_set(err, -EINVAL, "-o needs options");
            rc = apply_o(o, argv[++i], &token_set, err);
        } else if (!strncmp(a, "-o", 2)) {
            rc = apply_o(o, a + 2, &token_set, err);
        } else if (!strncmp(a, "--", 2) && a[2]) {
            char name[64];
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            const char *val = eq ? eq + 1 : NULL;

            if (n >= sizeof(name))
                return mfs_err_set(err, -EINVAL, "unknown option '%s'", a);
            memcpy(name, a + 2, n);
            name[n] = '\0';
            if (!eq && i + 1 < argc && strcmp(name, "offline") && strcmp(name, "read-only") &&
                strcmp(name, "foreground") && strcmp(name, "create") && strcmp(name, "private") &&
                strcmp(name, "create-pr"))
                val = argv[++i];
            rc = apply_opt(o, name, val, &token_set, err);
            if (rc == 1)
                return mfs_err_set(err, -EINVAL, "unknown option '%s'", a);
        } else if (a[0] == '-' && a[1]) {
            return mfs_err_set(err, -EINVAL, "unknown option '%s'", a);
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            return mfs_err_set(err, -EINVAL, "too many arguments ('%s')", a);
        }
        if (rc < 0)
            return rc;
    }
    if (npos != 2)
        return mfs_err_set(err, -EINVAL, "expected REPO_ID and MOUNTPOINT");
    /* mount.fuse3's old "type#source" spelling. */
    if (!strncmp(pos[0], "modelfs#", 8))
        pos[0] += 8;
    if (!repo_id_ok(pos[0]))
        return mfs_err_set(err, -EINVAL, "bad repo id '%s': want NAME or NAMESPACE/NAME of "
                           "letters, digits, '-', '_', '.'", pos[0]);
    if (!realpath(pos[1], path))
        return mfs_err_set(err, -errno, "cannot mount on '%s': %s", pos[1], strerror(errno));
    rc = mountpoint_check(path, err);
    if (rc < 0)
        return rc;
    if (set_str(&o->repo_id, pos[0]) < 0 || set_str(&o->mountpoint, path) < 0)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!o->revision && set_str(&o->revision, "main") < 0)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!o->repo_type && set_str(&o->repo_type, "model") < 0)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!o->endpoint) {
        const char *e = getenv("HF_ENDPOINT");

        if (set_str(&o->endpoint, e && *e ? e : "https://huggingface.co") < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    while (strlen(o->endpoint) > 1 && o->endpoint[strlen(o->endpoint) - 1] == '/')
        o->endpoint[strlen(o->endpoint) - 1] = '\0';
    if (env_true("HF_HUB_OFFLINE") || env_true("TRANSFORMERS_OFFLINE"))
        o->offline = true;
    home = hf_home();
    if (!home)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!token_set) {
        const char *t = getenv("HF_TOKEN");

        if (!t || !*t)
            t = getenv("HUGGING_FACE_HUB_TOKEN");
        if (t && *t) {
            rc = set_str(&o->token, t);
        } else {
            const char *tp = getenv("HF_TOKEN_PATH");
            struct mfs_buf b = MFS_BUF_INIT;

            if (tp && *tp) {
                o->token = read_token_file(tp);
            } else if (mfs_buf_printf(&b, "%s/token", home) == 0) {
                o->token = read_token_file(b.data);
            }
            mfs_buf_release(&b);
        }
    }
    if (rc == 0 && !o->cache_dir) {
        const char *c = getenv("MODELFS_CACHE");
        struct mfs_buf b = MFS_BUF_INIT;

        if (c && *c)
            rc = set_str(&o->cache_dir, c);
        else if (mfs_buf_printf(&b, "%s/modelfs", home) == 0)
            o->cache_dir = mfs_buf_steal(&b);
        else
            rc = -ENOMEM;
        mfs_buf_release(&b);
    }
    free(home);
    if (rc < 0 || !o->cache_dir)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    /* The daemon runs in '/': make a relative cache dir absolute now. */
    if (o->cache_dir[0] != '/') {
        struct mfs_buf b = MFS_BUF_INIT;

        if (!getcwd(path, sizeof(path)) || mfs_buf_printf(&b, "%s/%s", path, o->cache_dir) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot make '%s' absolute", o->cache_dir);
        free(o->cache_dir);
        o->cache_dir = mfs_buf_steal(&b);
        if (!o->cache_dir)
            return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- the daemon ------------------------------------------------------------ */

static void relay_log(void *ctx, const char *path, const struct mfs_err *err)
{
    struct mount_run *run = ctx;
    struct mfs_view *view = atomic_load(&run->view);

    if (view)
        mfs_view_log_path(view, path, err);
}

static void report(int fd, const char *msg)
{
    size_t n = strlen(msg);
    ssize_t w;

    if (fd < 0)
        return;
    while (n > 0) {
        w = write(fd, msg, n);
        if (w <= 0)
            break;
        msg += w;
        n -= (size_t)w;
    }
}

static void on_ready(void *ctx, int rc)
{
    struct mount_run *run = ctx;
    char line[300];
    int fd = run->ready_fd;
    int devnull;

    if (rc < 0) {
        snprintf(line, sizeof(line), "ERR the mount does not answer: %s\n", strerror(-rc));
        if (fd < 0)
            fprintf(stderr, "modelfs: %s", line + 4);
        mfs_fuse_exit(run->fuse);           /* the caller is told it failed: go away */
    } else {
        snprintf(line, sizeof(line), "OK\n");
    }
    report(fd, line);
    if (fd >= 0) {
        close(fd);
        run->ready_fd = -1;
        /* Detach from the terminal of the command that started us. */
        devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
            if (devnull > 2)
                close(devnull);
        }
    }
}

/* Set by the handler of SIGTERM/SIGINT/SIGHUP when one reaches a thread
 * that has them unblocked (a library's own thread); the only mutable
 * file-scope state, as style.md rule 4 allows for signal handlers. */
static volatile sig_atomic_t stop_signalled;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_signalled = 1;
}

static void *signal_main(void *p)
{
    struct mount_run *run = p;
    struct timespec tick = { 0, 200 * 1000000L };
    sigset_t set;
    bool done = false;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* The signals are blocked in every thread we start, so sigtimedwait
     * takes them here; the tick also notices the handler's flag and the
     * loop's end. */
    for (;;) {
        if (sigtimedwait(&set, NULL, &tick) > 0 || stop_signalled)
            break;
        pthread_mutex_lock(&run->mu);
        done = run->done;
        pthread_mutex_unlock(&run->mu);
        if (done)
            return NULL;
    }
    /* Unblock everything first, then detach: reads in flight fail fast
     * with EIO, streaming replies end, and the loop sees the unmount. */
    mfs_view_shutdown(atomic_load(&run->view));
    if (run->hub)
        mfs_hub_shutdown(run->hub);
    pthread_mutex_lock(&run->mu);
    done = run->done;
    pthread_mutex_unlock(&run->mu);
    if (!done)
        mfs_fuse_exit(run->fuse);
    return NULL;
}

/* Bytes of a commit blob a staged file still refers to (a renamed or
 * partly rewritten repo file), through the newest commit's fetch. */
static ssize_t stage_base_read(void *ctx, const struct mfs_entry *e, uint64_t off, size_t len,
                               void *buf, struct mfs_err *err)
{
    struct mount_run *run = ctx;
    struct mfs_fetch *f;

    pthread_mutex_lock(&run->fetch_mu);
    f = run->n_fetches ? run->fetches[run->n_fetches - 1] : NULL;
    pthread_mutex_unlock(&run->fetch_mu);
    if (!f)
        return mfs_err_set(err, -EIO, "cannot read '%s': no reader", e->path);
    return mfs_fetch_read(f, e, 0, off, len, buf, err);
}

/* The view moved to commit (a push): a fetch for that commit, kept until
 * the daemon ends (reads in flight may still use the older ones). */
static void *refetch(void *ctx, const char *commit)
{
    struct mount_run *run = ctx;
    struct mfs_fetch_cfg c = run->fcfg;
    struct mfs_fetch *f = NULL;
    struct mfs_fetch **nf;

    c.commit = commit;
    if (mfs_fetch_new(&c, &f, NULL) < 0)
        return NULL;
    pthread_mutex_lock(&run->fetch_mu);
    nf = realloc(run->fetches, (run->n_fetches + 1) * sizeof(*nf));
    if (nf) {
        run->fetches = nf;
        run->fetches[run->n_fetches++] = f;
    }
    pthread_mutex_unlock(&run->fetch_mu);
    if (!nf)
        mfs_fetch_free(&f);
    return f;
}

static bool is_commit(const char *rev)
{
    return strlen(rev) == 40 && mfs_hash_is_hex(rev, 40);
}

static int resolve(const struct mount_opts *o, struct mfs_hub *hub, struct mfs_cache *cache,
                   char commit[41], int64_t *commit_time, struct mfs_entry **entries, size_t *n,
                   struct mfs_err *err)
{
    struct mfs_cache_repo repo = { o->endpoint, o->repo_type, o->repo_id };
    struct mfs_hub_repo_info info;
    int rc;

    *commit_time = 0;
    if (!hub) {
        if (is_commit(o->revision)) {
            snprintf(commit, 41, "%s", o->revision);
        } else {
            rc = mfs_cache_ref_get(cache, &repo, o->revision, commit, err);
            if (rc == -ENODATA)
                return mfs_err_set(err, -ENOENT, "offline, and '%s' at '%s' from '%s' is not "
                                   "cached", o->repo_id, o->revision, o->endpoint);
            if (rc < 0)
                return rc;
        }
    } else {
        rc = mfs_hub_repo_info(hub, o->repo_id, o->revision, &info, err);
        if (rc < 0)
            return rc;
        snprintf(commit, 41, "%s", info.commit);
        *commit_time = info.last_modified;
        mfs_cache_ref_put(cache, &repo, o->revision, commit, NULL);
    }
    rc = mfs_cache_tree_get(cache, &repo, commit, entries, n, commit_time, err);
    if (rc == 0)
        return 0;
    if (rc != -ENODATA)
        return rc;
    mfs_err_clear(err);
    if (!hub)
        return mfs_err_set(err, -ENOENT, "offline, and the file list of '%s' at %s is not cached",
                           o->repo_id, commit);
    rc = mfs_hub_tree(hub, o->repo_id, commit, entries, n, err);
    if (rc < 0)
        return rc;
    if (*commit_time == 0)
        *commit_time = (int64_t)time(NULL);
    mfs_cache_tree_put(cache, &repo, commit, *commit_time, *entries, *n, NULL);
    return 0;
}

/* Build everything, mount, serve until unmounted.  Returns 0 or -errno
 * with the reason in *err (already reported on ready_fd when set). */
static int serve(const struct mount_opts *o, int ready_fd, struct mfs_err *err)
{
    struct mount_run run;
    struct mfs_cache_repo repo = { o->endpoint, o->repo_type, o->repo_id };
    struct mfs_hub_cfg hcfg = { 0 };
    struct mfs_view_cfg vcfg = { 0 };
    struct mfs_push_cfg pcfg = { 0 };
    struct mfs_cache *cache = NULL;
    struct mfs_fetch *fetch = NULL;
    struct mfs_stage *stage = NULL;
    struct mfs_push *push = NULL;
    struct mfs_view *view = NULL;
    struct mfs_entry *entries = NULL;
    size_t n = 0;
    size_t i;
    char commit[41] = "";
    int64_t commit_time = 0;
    pthread_t sig_tid;
    bool have_sig = false;
    sigset_t set;
    int rc;

    memset(&run, 0, sizeof(run));
    pthread_mutex_init(&run.mu, NULL);
    pthread_mutex_init(&run.fetch_mu, NULL);
    atomic_init(&run.view, NULL);
    run.ready_fd = ready_fd;
    /* Every thread started from here on inherits the mask; only the signal
     * thread takes these signals. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }

    rc = mfs_cache_open(o->cache_dir, o->cache_size, &cache, err);
    if (rc < 0)
        goto out_report;
    if (!o->offline) {
        hcfg.endpoint = o->endpoint;
        hcfg.token = o->token;
        hcfg.repo_type = o->repo_type;
        hcfg.timeout_ms = o->timeout_ms;
        rc = mfs_hub_new(&hcfg, &run.hub, err);
        if (rc < 0)
            goto out_close_cache;
    }
    if (o->create) {
        if (!run.hub) {
            rc = mfs_err_set(err, -EINVAL, "cannot create '%s' offline", o->repo_id);
            goto out_free_hub;
        }
        rc = mfs_hub_repo_create(run.hub, o->repo_id, o->is_private, true, err);
        if (rc < 0)
            goto out_free_hub;
    }
    rc = resolve(o, run.hub, cache, commit, &commit_time, &entries, &n, err);
    if (rc < 0)
        goto out_free_hub;
    run.fcfg.hub = run.hub;
    run.fcfg.cache = cache;
    run.fcfg.repo_id = o->repo_id;
    run.fcfg.commit = commit;
    run.fcfg.log = relay_log;
    run.fcfg.log_ctx = &run;
    rc = mfs_fetch_new(&run.fcfg, &fetch, err);
    if (rc < 0)
        goto out_free_entries;
    run.fetches = calloc(1, sizeof(*run.fetches));
    if (!run.fetches) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_fetch;
    }
    run.fetches[0] = fetch;                 /* borrowed: freed below, not with the list */
    run.n_fetches = 1;
    if (!o->read_only) {
        const int busy_tries = 30;          /* polls of a held stage, busy_poll_ms apart */
        const long busy_poll_ms = 100;
        int tries;

        /* Writes stage in the cache database; offline mounts stage too,
         * their pushes fail with a reason ("offline"). */
        rc = mfs_stage_open(o->cache_dir, &repo, o->revision, stage_base_read, &run, &stage,
                            err);
        /* The daemon of a mount just detached (fusermount3 -u, then a
         * remount at once) may still be closing its stage: wait for it a
         * little, polling, before calling the stage taken. */
        for (tries = 0; rc == -EBUSY && tries < busy_tries; tries++) {
            struct timespec ts = { 0, busy_poll_ms * 1000000L };

            nanosleep(&ts, NULL);
            rc = mfs_stage_open(o->cache_dir, &repo, o->revision, stage_base_read, &run,
                                &stage, err);
        }
        if (rc == -EBUSY && err) {
            /* Another live mount holds this branch's staged changes (its
             * uncommitted writes would be lost): say how to mount anyway. */
            char why[sizeof(err->msg)];

            snprintf(why, sizeof(why), "%s", err->msg);
            rc = mfs_err_set(err, -EBUSY, "%s; mount with --read-only, or another cache dir",
                             why);
        }
        if (rc < 0)
            goto out_free_fetch;
        if (run.hub) {
            pcfg.hub = run.hub;
            pcfg.stage = stage;
            pcfg.cache = cache;
            pcfg.repo = &repo;
            pcfg.revision = o->revision;
            rc = mfs_push_new(&pcfg, &push, err);
            if (rc < 0)
                goto out_close_stage;
        }
    }
    vcfg.repo_id = o->repo_id;
    vcfg.revision = o->revision;
    vcfg.commit = commit;
    vcfg.commit_time = commit_time;
    vcfg.entries = entries;
    vcfg.n_entries = n;
    vcfg.fetch = fetch;
    vcfg.cache = cache;
    vcfg.hub = run.hub;
    vcfg.uid = (uint32_t)getuid();
    vcfg.gid = (uint32_t)getgid();
    vcfg.stage = stage;
    vcfg.push = push;
    vcfg.max_shard_size = o->max_shard_size;
    vcfg.commit_message = o->commit_message;
    vcfg.create_pr = o->create_pr;
    vcfg.refetch = refetch;
    vcfg.refetch_ctx = &run;
    rc = mfs_view_new(&vcfg, &view, err);
    if (rc < 0)
        goto out_free_push;
    atomic_store(&run.view, view);
    rc = mfs_fuse_new(view, o->repo_id, o->fuse_opts.data, &run.fuse, err);
    if (rc < 0)
        goto out_free_view;
    rc = mfs_fuse_mount(run.fuse, o->mountpoint, err);
    if (rc < 0)
        goto out_free_fuse;
    if (pthread_create(&sig_tid, NULL, signal_main, &run) == 0)
        have_sig = true;
    if (o->foreground)
        fprintf(stderr, "modelfs: '%s' at %s mounted on %s%s\n", o->repo_id, commit,
                o->mountpoint, stage ? "" : " (read-only)");
    rc = mfs_fuse_run(run.fuse, 32, on_ready, &run, err);
    pthread_mutex_lock(&run.mu);
    run.done = true;
    pthread_mutex_unlock(&run.mu);
    if (have_sig)
        pthread_join(sig_tid, NULL);        /* it sees done within a tick */
    if (push) {
        /* What is still staged goes now; on failure it stays in the cache
         * for the next mount. */
        struct mfs_err perr = MFS_ERR_INIT;
        size_t staged = 0;
        uint64_t bytes = 0;

        mfs_stage_totals(stage, &staged, &bytes);
        if (staged > 0 && mfs_view_push(view, NULL, NULL, &perr) < 0 && o->foreground)
            fprintf(stderr, "modelfs: the push at unmount failed, the changes stay staged: "
                    "%s\n", perr.msg);
    }
    /* Stop workers that might still call into the hub. */
    mfs_view_shutdown(view);
    if (run.hub)
        mfs_hub_shutdown(run.hub);
out_free_fuse:
    mfs_fuse_free(&run.fuse);
out_free_view:
    atomic_store(&run.view, NULL);
    mfs_view_free(&view);
out_free_push:
    mfs_push_free(&push);
out_close_stage:
    mfs_stage_close(&stage);
out_free_fetch:
    for (i = 1; i < run.n_fetches; i++)
        mfs_fetch_free(&run.fetches[i]);
    free(run.fetches);
    mfs_fetch_free(&fetch);
out_free_entries:
    mfs_entries_free(entries, n);
out_free_hub:
    mfs_hub_free(&run.hub);
out_close_cache:
    mfs_cache_close(&cache);
out_report:
    if (rc < 0 && run.ready_fd >= 0) {
        char line[MFS_ERR_MSG_SIZE + 16];

        snprintf(line, sizeof(line), "ERR %s\n", err && err->msg[0] ? err->msg : strerror(-rc));
        report(run.ready_fd, line);
    }
    pthread_mutex_destroy(&run.fetch_mu);
    pthread_mutex_destroy(&run.mu);
    return rc;
}

static bool mount_lookup(const char *mnt, char *type, size_t n);
static int run_fusermount(const char *mnt, bool lazy);

int mfs_cli_mount(int argc, char **argv)
{
    struct mount_opts o;
    struct mfs_err err = MFS_ERR_INIT;
    char buf[MFS_ERR_MSG_SIZE + 16];
    size_t got = 0;
    bool timed_out = false;
    long start_ms;
    long wait_ms;
    int fds[2];
    pid_t pid;
    int status;
    int rc;

    memset(&o, 0, sizeof(o));
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        mount_usage(stdout);
        return 0;
    }
    rc = parse_args(argc, argv, &o, &err);
    if (rc < 0) {
        fprintf(stderr, "modelfs: %s\n", err.msg);
        if (rc == -EINVAL) {
            mount_usage(stderr);
            opts_release(&o);
            return 2;
        }
        opts_release(&o);
        return 1;
    }
    if (o.foreground) {
        rc = serve(&o, -1, &err);
        if (rc < 0)
            fprintf(stderr, "modelfs: cannot mount '%s': %s\n", o.repo_id, err.msg);
        opts_release(&o);
        return rc < 0 ? 1 : 0;
    }
    if (pipe(fds) != 0) {
        fprintf(stderr, "modelfs: cannot mount '%s': %s\n", o.repo_id, strerror(errno));
        opts_release(&o);
        return 1;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "modelfs: cannot mount '%s': fork: %s\n", o.repo_id, strerror(errno));
        opts_release(&o);
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        setsid();
        if (chdir("/") != 0)
            _exit(1);
        rc = serve(&o, fds[1], &err);
        opts_release(&o);
        _exit(rc < 0 ? 1 : 0);
    }
    close(fds[1]);
    /* Every step of start-up is bounded by the stall timeout, but a bug
     * must not leave the caller (a shell, mount(8), a boot) waiting
     * forever: past the deadline the daemon is killed and the mount fails. */
    start_ms = mfs_clock_ms();
    wait_ms = o.timeout_ms * 4 > 120000 ? o.timeout_ms * 4 : 120000;
    while (got < sizeof(buf) - 1) {
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        long left = wait_ms - (mfs_clock_ms() - start_ms);
        ssize_t r;

        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) <= 0)
            continue;                       /* EINTR, or the deadline: checked above */
        r = read(fds[0], buf + got, sizeof(buf) - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(buf, '\n', got))
            break;
    }
    close(fds[0]);
    buf[got] = '\0';
    if (got >= 3 && !strncmp(buf, "OK\n", 3)) {
        opts_release(&o);
        return 0;
    }
    buf[strcspn(buf, "\n")] = '\0';
    if (timed_out) {
        char type[64];

        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (mount_lookup(o.mountpoint, type, sizeof(type)))
            run_fusermount(o.mountpoint, true);
        fprintf(stderr, "modelfs: cannot mount '%s': the daemon was not ready after %ld s\n",
                o.repo_id, wait_ms / 1000);
    } else if (!strncmp(buf, "ERR ", 4))
        fprintf(stderr, "modelfs: cannot mount '%s': %s\n", o.repo_id, buf + 4);
    else
        fprintf(stderr, "modelfs: cannot mount '%s': the daemon exited\n", o.repo_id);
    waitpid(pid, &status, 0);
    opts_release(&o);
    return 1;
}

/* ---- umount ----------------------------------------------------------------- */

/* Whether mnt is a mount point (/proc/self/mountinfo), with its file
 * system type ("fuse.modelfs") copied into type[0..n) when it is. */
static bool mount_lookup(const char *mnt, char *type, size_t n)
{
    char line[8192];
    bool found = false;
    FILE *f = fopen("/proc/self/mountinfo", "r");

    if (n)
        type[0] = '\0';
    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        /* "id parent maj:min root MOUNTPOINT ... - FSTYPE SOURCE ...":
         * the mount point is field 5, octal-escaped. */
        char *p = line;
        char point[PATH_MAX];
        const char *sep;
        size_t k = 0;
        int field;

        for (field = 1; field < 5 && p; field++) {
            p = strchr(p, ' ');
            if (p)
                p++;
        }
        if (!p)
            continue;
        while (*p && *p != ' ' && k < sizeof(point) - 1) {
            if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
                point[k++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                p += 4;
            } else {
                point[k++] = *p++;
            }
        }
        point[k] = '\0';
        found = !strcmp(point, mnt);
        sep = found ? strstr(p, " - ") : NULL;
        if (sep && n) {
            size_t len = strcspn(sep + 3, " ");

            if (len >= n)
                len = n - 1;
            memcpy(type, sep + 3, len);
            type[len] = '\0';
        }
    }
    fclose(f);
    return found;
}

static bool is_mounted(const char *mnt)
{
    return mount_lookup(mnt, NULL, 0);
}

static int run_fusermount(const char *mnt, bool lazy)
{
    char *argv_l[] = { "fusermount3", "-u", "-z", (char *)mnt, NULL };
    char *argv_n[] = { "fusermount3", "-u", (char *)mnt, NULL };
    pid_t pid;
    int status;

    if (posix_spawnp(&pid, "fusermount3", NULL, NULL, lazy ? argv_l : argv_n, environ) != 0)
        return -ENOENT;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -EBUSY;
    return 0;
}

/* True while pid runs: a zombie (exited, not yet reaped by whoever
 * adopted it) counts as gone. */
/* Whether pid runs the modelfs binary (/proc/PID/comm), so that a pid
 * xattr served by someone else's FUSE daemon cannot aim SIGTERM at an
 * unrelated process. */
static bool pid_is_modelfs(pid_t pid)
{
    char path[64];
    char comm[32] = "";
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    if (!fgets(comm, sizeof(comm), f))
        comm[0] = '\0';
    fclose(f);
    return !strncmp(comm, "modelfs", 7);
}

static bool pid_alive(pid_t pid)
{
    char path[64];
    char line[512];
    const char *p;
    FILE *f;
    bool alive;

    if (kill(pid, 0) != 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return false;
    alive = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    p = alive ? strrchr(line, ')') : NULL;
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* The root's xattr name (user.modelfs.pid: the daemon) into buf (size
 * bytes); its length or -1.  The getxattr runs in a child process: a daemon that
 * does not answer within 3 s counts as none, and the child (blocked in a
 * FUSE request, which SIGKILL ends) is killed, so nothing of ours stays
 * stuck on the mount. */
static ssize_t probe_xattr(const char *mnt, const char *name, char *buf, size_t size)
{
    struct pollfd pfd;
    char value[32];
    ssize_t n = -1;
    int fds[2];
    pid_t child;
    int status;

    if (pipe(fds) != 0)
        return -1;
    child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (child == 0) {
        ssize_t got;

        close(fds[0]);
        got = getxattr(mnt, name, value, sizeof(value) - 1);
        if (got > 0 && write(fds[1], value, (size_t)got) != got)
            _exit(1);
        _exit(got > 0 ? 0 : 1);
    }
    close(fds[1]);
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, 3000) == 1) {
        n = read(fds[0], value, sizeof(value) - 1);
        if (n > 0 && (size_t)n < size)
            memcpy(buf, value, (size_t)n);
        else
            n = -1;
    }
    close(fds[0]);
    kill(child, SIGKILL);                   /* harmless when it is done */
    waitpid(child, &status, 0);
    return n;
}

/* Number of staged changes mnt reports in .modelfs/status ("pending_changes"),
 * -1 when it cannot be read. */
static long pending_changes(const char *mnt)
{
    char path[PATH_MAX + 32];
    char buf[65536];
    const char *p;
    size_t n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s/status", mnt, MFS_VIEW_CONTROL);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strstr(buf, "\"pending_changes\":");
    if (!p)
        return -1;
    p += strlen("\"pending_changes\":");
    while (*p == ' ' || *p == '\t')
        p++;
    return strtol(p, NULL, 10);
}

/* Push what mnt has staged before it goes: a write to MOUNT/.modelfs/push
 * (the daemon answers once the commit is made or has failed).  Returns 0
 * when it pushed or there is nothing to push (a read-only mount), -EBUSY
 * when a file is still open with writes not yet closed (the push refused
 * to send it half written), else -1; the reason is printed. */
static int push_before_umount(const char *mnt)
{
    char value[8];
    char path[PATH_MAX + 32];
    char reply[2048];
    ssize_t n = probe_xattr(mnt, "user.modelfs.writable", value, sizeof(value));
    ssize_t got = 0;
    bool busy;
    int fd;

    if (n != 1 || value[0] != '1')
        return 0;                           /* read-only, or an older daemon */
    if (pending_changes(mnt) == 0)
        return 0;                           /* nothing staged: no need of the Hub */
    snprintf(path, sizeof(path), "%s/%s/push", mnt, MFS_VIEW_CONTROL);
    fd = open(path, O_RDWR);
    if (fd < 0)
        return 0;                           /* no push file: nothing pushes here */
    if (write(fd, "\n", 1) == 1) {
        close(fd);
        return 0;
    }
    n = errno;
    busy = n == EBUSY;
    /* The reply on the same handle says why. */
    while (got < (ssize_t)sizeof(reply) - 1) {
        ssize_t r = read(fd, reply + got, sizeof(reply) - 1 - (size_t)got);

        if (r <= 0)
            break;
        got += r;
    }
    close(fd);
    reply[got] = '\0';
    reply[strcspn(reply, "\n")] = '\0';
    /* The control file's reply reads "error: REASON"; the line says it. */
    if (busy) {
        fprintf(stderr, "modelfs: cannot unmount '%s': target is busy: %s\n", mnt,
                reply[0] ? reply + (strncmp(reply, "error: ", 7) ? 0 : 7) : strerror(EBUSY));
        return -EBUSY;
    }
    fprintf(stderr, "modelfs: cannot push '%s' before unmounting (the changes stay staged "
            "for the next mount): %s\n", mnt,
            reply[0] ? reply + (strncmp(reply, "error: ", 7) ? 0 : 7) : strerror((int)n));
    return -1;
}

int mfs_cli_umount(int argc, char **argv)
{
    bool push_failed = false;
    const char *arg = NULL;
    char mnt[PATH_MAX];
    char pidbuf[32];
    char fstype[64];
    ssize_t n;
    pid_t pid = 0;
    int i;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs("usage: modelfs umount MOUNTPOINT\n"
                  "Pushes what the mount has staged (as modelfs push), then unmounts.  If the\n"
                  "push fails, the mount still goes, the reason is printed, the exit status is\n"
                  "1 and the changes stay staged in the cache for the next mount.  While a file\n"
                  "is still being written (a cp running) it refuses, as umount does: busy.\n",
                  stdout);
            return 0;
        }
        if (argv[i][0] == '-' || arg) {
            fprintf(stderr, "modelfs: usage: modelfs umount MOUNTPOINT\n");
            return 2;
        }
        arg = argv[i];
    }
    if (!arg) {
        fprintf(stderr, "modelfs: usage: modelfs umount MOUNTPOINT\n");
        return 2;
    }
    /* realpath would stat through a dead mount (ENOTCONN); a plain
     * absolute path is enough for /proc/self/mountinfo. */
    if (arg[0] == '/') {
        snprintf(mnt, sizeof(mnt), "%s", arg);
    } else {
        char cwd[PATH_MAX];

        if (!getcwd(cwd, sizeof(cwd))) {
            fprintf(stderr, "modelfs: cannot unmount '%s': %s\n", arg, strerror(errno));
            return 1;
        }
        snprintf(mnt, sizeof(mnt), "%s/%s", cwd, arg);
    }
    while (strlen(mnt) > 1 && mnt[strlen(mnt) - 1] == '/')
        mnt[strlen(mnt) - 1] = '\0';
    if (!mount_lookup(mnt, fstype, sizeof(fstype))) {
        fprintf(stderr, "modelfs: cannot unmount '%s': not mounted\n", arg);
        return 1;
    }
    /* Only our own mounts: the pid xattr below is trusted only there, and
     * another file system is not ours to detach. */
    if (strcmp(fstype, "fuse.modelfs") != 0) {
        fprintf(stderr, "modelfs: cannot unmount '%s': not a modelfs mount (%s); use umount\n",
                arg, fstype[0] ? fstype : "unknown type");
        return 1;
    }
    {
        int prc = push_before_umount(mnt);

        /* As umount(8) on a busy file system: stopping the daemon now
         * would cut the writer off and lose what it has not closed. */
        if (prc == -EBUSY)
            return 1;
        push_failed = prc < 0;
    }
    n = probe_xattr(mnt, "user.modelfs.pid", pidbuf, sizeof(pidbuf));
    if (n > 0) {
        char *end;
        unsigned long long v;

        pidbuf[n] = '\0';
        v = strtoull(pidbuf, &end, 10);
        if (end != pidbuf && *end == '\0' && v > 1 && v < (unsigned long long)INT_MAX)
            pid = (pid_t)v;
    }
    if (pid > 0 && pid_is_modelfs(pid) && kill(pid, SIGTERM) == 0) {
        for (i = 0; i < 100 && is_mounted(mnt); i++)
            sleep_ms(50);
        /* Give the daemon a moment to finish its own clean-up (cache). */
        for (i = 0; i < 100 && pid_alive(pid); i++)
            sleep_ms(50);
        if (!is_mounted(mnt))
            return push_failed ? 1 : 0;
    }
    if (run_fusermount(mnt, false) == 0 || run_fusermount(mnt, true) == 0)
        return push_failed ? 1 : 0;
    fprintf(stderr, "modelfs: cannot unmount '%s': fusermount3 failed\n", arg);
    return 1;
}
