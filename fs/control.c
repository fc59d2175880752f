/*
 * fs/control.c - conversations of the .modelfs/ control files (fs/control.h).
 *
 * A reply is a growing buffer with a mutex and a condition variable; the
 * handle that wrote the request, the session table and the worker thread
 * each hold a reference.  Readers wait on the condition until the buffer
 * grows past their cursor or the reply is marked done.  The session table
 * maps (session id, file) to the last reply, bounded by MAX_SESSIONS slots
 * (the oldest is reused), so a forgotten terminal costs one slot.
 * Workers are detached threads counted in the ctl; mfs_ctl_free waits for
 * the count to reach zero after setting the shutdown flag they poll.
 * Lock order: ctl->mu before a reply's mu, never the other way (a reader
 * waiting on a reply checks the shutdown flag, an atomic, without ctl->mu).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "fs/control.h"
#include "fs/view.h"

#define MAX_FILES 64                        /* control files per mount */
#define MAX_SESSIONS 128                    /* remembered (session, file) replies */
#define MAX_REQUEST (16u << 20)             /* bytes of one request */

/* Control files of every mount besides the view's own info/status/log.
 * Add one line per plugin (fs/control.h, ADDING A CONTROL FILE). */
const struct mfs_ctl_handler *const mfs_ctl_plugins[] = {
    &mfs_ctl_load,
    &mfs_ctl_push,
    &mfs_ctl_config,
    NULL
};

struct mfs_ctl_reply {
    pthread_mutex_t mu;                     /* guards everything below */
    pthread_cond_t cv;                      /* signalled on append and on done */
    struct mfs_buf buf;                     /* reply bytes so far */
    bool done;                              /* no more bytes will come */
    bool spawned;                           /* a worker owns the completion */
    int refs;                               /* handle + session + worker */
    struct mfs_ctl *ctl;                    /* owner, for cancel and log */
    size_t file;                            /* index of the control file */
};

struct ctl_file {
    const struct mfs_ctl_handler *h;        /* borrowed (static tables) */
    void *state;                            /* handler's per-mount state */
    bool owns_state;                        /* fini is ours to call */
};

struct ctl_session {
    pid_t sid;                              /* process session id (free: reply NULL) */
    size_t file;                            /* index in files */
    struct mfs_ctl_reply *reply;            /* one reference */
    uint64_t stamp;                         /* last use, for reuse of the oldest */
};

struct mfs_ctl {
    struct mfs_view *view;                  /* owner */
    pthread_mutex_t mu;                     /* guards sessions, workers, shutdown */
    pthread_cond_t idle;                    /* signalled when workers drops */
    struct ctl_file files[MAX_FILES];
    size_t n_files;
    struct ctl_session sessions[MAX_SESSIONS];
    uint64_t clock;                         /* stamp source */
    int workers;                            /* live worker threads */
    _Atomic bool shutdown;                  /* the mount is going away (no lock: see read) */
};

struct mfs_ctl_handle {
    size_t file;                            /* index in files */
    pid_t sid;                              /* caller's session at open */
    struct mfs_ctl_reply *reply;            /* this handle's conversation, or NULL */
    bool snapshot;                          /* reply is a show() snapshot: use offsets */
    uint64_t pos;                           /* stream cursor in a conversation reply */
    _Atomic bool interrupted;               /* a blocked read must return EINTR */
};

struct worker_arg {
    struct mfs_ctl_reply *r;
    int (*work)(struct mfs_ctl_reply *r, void *arg, struct mfs_err *err);
    void *arg;
    void (*arg_free)(void *arg);
};

static struct mfs_ctl_reply *reply_new(struct mfs_ctl *ctl, size_t file)
{
    struct mfs_ctl_reply *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    mfs_buf_init(&r->buf);
    r->refs = 1;
    r->ctl = ctl;
    r->file = file;
    return r;
}

static void reply_ref(struct mfs_ctl_reply *r)
{
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
}

static void reply_unref(struct mfs_ctl_reply *r)
{
    int left;

    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0)
        return;
    mfs_buf_release(&r->buf);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void reply_finish(struct mfs_ctl_reply *r)
{
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

int mfs_ctl_reply_write(struct mfs_ctl_reply *r, const void *p, size_t len)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    rc = mfs_buf_append(&r->buf, p, len);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int mfs_ctl_reply_printf(struct mfs_ctl_reply *r, const char *fmt, ...)
{
    char small[512];
    char *big = NULL;
    va_list ap;
    int n;
    int rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof(small))
        return mfs_ctl_reply_write(r, small, (size_t)n);
    big = malloc((size_t)n + 1);
    if (!big)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = mfs_ctl_reply_write(r, big, (size_t)n);
    free(big);
    return rc;
}

bool mfs_ctl_reply_cancelled(struct mfs_ctl_reply *r)
{
    return atomic_load(&r->ctl->shutdown);
}

static void log_ctl(struct mfs_ctl *ctl, size_t file, const struct mfs_err *err)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/%s", MFS_VIEW_CONTROL, ctl->files[file].h->name);
    mfs_view_log_path(ctl->view, path, err);
}

static void *worker_main(void *p)
{
    struct worker_arg *wa = p;
    struct mfs_ctl_reply *r = wa->r;
    struct mfs_ctl *ctl = r->ctl;
    struct mfs_err err = MFS_ERR_INIT;
    int rc;

    rc = wa->work(r, wa->arg, &err);
    if (rc < 0) {
        if (!err.msg[0])
            mfs_err_set(&err, rc, "'%s' failed: %s", ctl->files[r->file].h->name,
                        strerror(-rc));
        mfs_ctl_reply_printf(r, "error: %s\n", err.msg);
        log_ctl(ctl, r->file, &err);
    }
    if (wa->arg_free)
        wa->arg_free(wa->arg);
    reply_finish(r);
    reply_unref(r);
    free(wa);
    pthread_mutex_lock(&ctl->mu);
    ctl->workers--;
    pthread_cond_broadcast(&ctl->idle);
    pthread_mutex_unlock(&ctl->mu);
    return NULL;
}

int mfs_ctl_reply_spawn(struct mfs_ctl_reply *r,
                        int (*work)(struct mfs_ctl_reply *r, void *arg, struct mfs_err *err),
                        void *arg, void (*arg_free)(void *arg), struct mfs_err *err)
{
    struct mfs_ctl *ctl = r->ctl;
    struct worker_arg *wa;
    pthread_attr_t attr;
    pthread_t tid;
    int rc = 0;

    wa = calloc(1, sizeof(*wa));
    if (!wa) {
        rc = mfs_err_set(err, -ENOMEM, "cannot start a worker: out of memory");
        goto out_free_arg;
    }
    wa->r = r;
    wa->work = work;
    wa->arg = arg;
    wa->arg_free = arg_free;
    pthread_mutex_lock(&ctl->mu);
    if (atomic_load(&ctl->shutdown)) {
        pthread_mutex_unlock(&ctl->mu);
        rc = mfs_err_set(err, -EAGAIN, "cannot start a worker: the mount is going away");
        goto out_free_wa;
    }
    ctl->workers++;
    pthread_mutex_unlock(&ctl->mu);
    reply_ref(r);
    pthread_mutex_lock(&r->mu);
    r->spawned = true;
    pthread_mutex_unlock(&r->mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, worker_main, wa);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&r->mu);
        r->spawned = false;
        r->refs--;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_lock(&ctl->mu);
        ctl->workers--;
        pthread_cond_broadcast(&ctl->idle);
        pthread_mutex_unlock(&ctl->mu);
        rc = mfs_err_set(err, -EAGAIN, "cannot start a worker: %s", strerror(rc));
        goto out_free_wa;
    }
    return 0;

out_free_wa:
    free(wa);
out_free_arg:
    if (arg_free)
        arg_free(arg);
    return rc;
}

pid_t mfs_ctl_sid_of(pid_t pid)
{
    char path[64];
    char line[1024];
    const char *p;
    unsigned long long sid;
    char *end;
    FILE *f;
    int field;

    if (pid <= 0)
        return pid;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return pid;
    if (!fgets(line, sizeof(line), f)) {
        fclose(f);
        return pid;
    }
    fclose(f);
    /* "pid (comm) state ppid pgrp session ...": comm may hold spaces and
     * parentheses, so scan from the last ')'. */
    p = strrchr(line, ')');
    if (!p)
        return pid;
    p++;
    for (field = 2; field < 5 && *p; field++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    sid = strtoull(p, &end, 10);
    if (end == p)
        return pid;
    return (pid_t)sid;
}

int mfs_ctl_new(struct mfs_view *view, struct mfs_ctl **ctlp, struct mfs_err *err)
{
    struct mfs_ctl *ctl;

    *ctlp = NULL;
    ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return mfs_err_set(err, -ENOMEM, "cannot make control files: out of memory");
    ctl->view = view;
    pthread_mutex_init(&ctl->mu, NULL);
    pthread_cond_init(&ctl->idle, NULL);
    atomic_init(&ctl->shutdown, false);
    *ctlp = ctl;
    return 0;
}

void mfs_ctl_shutdown(struct mfs_ctl *ctl)
{
    size_t i;

    if (!ctl)
        return;
    atomic_store(&ctl->shutdown, true);
    /* Wake readers of the remembered replies; readers of other replies
     * check the flag when their reply next changes. */
    pthread_mutex_lock(&ctl->mu);
    for (i = 0; i < MAX_SESSIONS; i++) {
        struct mfs_ctl_reply *r = ctl->sessions[i].reply;

        if (r) {
            pthread_mutex_lock(&r->mu);
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
        }
    }
    pthread_mutex_unlock(&ctl->mu);
}

void mfs_ctl_free(struct mfs_ctl **ctlp)
{
    struct mfs_ctl *ctl;
    size_t i;

    if (!ctlp || !*ctlp)
        return;
    ctl = *ctlp;
    mfs_ctl_shutdown(ctl);
    pthread_mutex_lock(&ctl->mu);
    while (ctl->workers > 0)
        pthread_cond_wait(&ctl->idle, &ctl->mu);
    pthread_mutex_unlock(&ctl->mu);
    for (i = 0; i < MAX_SESSIONS; i++)
        reply_unref(ctl->sessions[i].reply);
    for (i = 0; i < ctl->n_files; i++)
        if (ctl->files[i].owns_state && ctl->files[i].h->fini)
            ctl->files[i].h->fini(ctl->files[i].state);
    pthread_cond_destroy(&ctl->idle);
    pthread_mutex_destroy(&ctl->mu);
    free(ctl);
    *ctlp = NULL;
}

int mfs_ctl_add(struct mfs_ctl *ctl, const struct mfs_ctl_handler *h, void *state,
                struct mfs_err *err)
{
    size_t i;

    if (!h || !h->name || !h->name[0] || strchr(h->name, '/') || !strcmp(h->name, ".") ||
        !strcmp(h->name, "..") || strlen(h->name) > 64)
        return mfs_err_set(err, -EINVAL, "cannot add control file '%s': bad name",
                           h && h->name ? h->name : "");
    for (i = 0; i < ctl->n_files; i++)
        if (!strcmp(ctl->files[i].h->name, h->name))
            return mfs_err_set(err, -EEXIST, "cannot add control file '%s': exists", h->name);
    if (ctl->n_files == MAX_FILES)
        return mfs_err_set(err, -ENOSPC, "cannot add control file '%s': table full", h->name);
    ctl->files[ctl->n_files].h = h;
    ctl->files[ctl->n_files].state = state;
    ctl->files[ctl->n_files].owns_state = false;
    ctl->n_files++;
    return 0;
}

int mfs_ctl_add_init(struct mfs_ctl *ctl, const struct mfs_ctl_handler *h, struct mfs_err *err)
{
    void *state = NULL;
    int rc;

    if (h->init) {
        rc = h->init(ctl->view, &state, err);
        if (rc < 0)
            return rc;
    }
    rc = mfs_ctl_add(ctl, h, state, err);
    if (rc < 0) {
        if (h->fini)
            h->fini(state);
        return rc;
    }
    ctl->files[ctl->n_files - 1].owns_state = true;
    return 0;
}

size_t mfs_ctl_count(struct mfs_ctl *ctl)
{
    return ctl->n_files;
}

const char *mfs_ctl_name(struct mfs_ctl *ctl, size_t i)
{
    return ctl->files[i].h->name;
}

bool mfs_ctl_writable(struct mfs_ctl *ctl, size_t i)
{
    return ctl->files[i].h->request != NULL;
}

int mfs_ctl_open(struct mfs_ctl *ctl, size_t i, int flags, pid_t pid,
                 struct mfs_ctl_handle **hp, struct mfs_err *err)
{
    struct mfs_ctl_handle *h;

    *hp = NULL;
    if ((flags & O_ACCMODE) != O_RDONLY && !ctl->files[i].h->request)
        return mfs_err_set(err, -EACCES, "cannot write '%s/%s': it takes no requests",
                           MFS_VIEW_CONTROL, ctl->files[i].h->name);
    h = calloc(1, sizeof(*h));
    if (!h)
        return mfs_err_set(err, -ENOMEM, "cannot open '%s': out of memory",
                           ctl->files[i].h->name);
    h->file = i;
    h->sid = mfs_ctl_sid_of(pid);
    *hp = h;
    return 0;
}

/* The session's last reply to file, with a reference, or NULL. */
static struct mfs_ctl_reply *session_get(struct mfs_ctl *ctl, pid_t sid, size_t file)
{
    struct mfs_ctl_reply *r = NULL;
    size_t i;

    pthread_mutex_lock(&ctl->mu);
    for (i = 0; i < MAX_SESSIONS; i++) {
        if (ctl->sessions[i].reply && ctl->sessions[i].sid == sid &&
            ctl->sessions[i].file == file) {
            r = ctl->sessions[i].reply;
            reply_ref(r);
            ctl->sessions[i].stamp = ++ctl->clock;
            break;
        }
    }
    pthread_mutex_unlock(&ctl->mu);
    return r;
}

/* Remember r as the session's last reply to file (takes a new reference). */
static void session_put(struct mfs_ctl *ctl, pid_t sid, size_t file, struct mfs_ctl_reply *r)
{
    struct mfs_ctl_reply *old = NULL;
    size_t slot = MAX_SESSIONS;
    size_t i;

    reply_ref(r);
    pthread_mutex_lock(&ctl->mu);
    for (i = 0; i < MAX_SESSIONS; i++) {
        if (ctl->sessions[i].reply && ctl->sessions[i].sid == sid &&
            ctl->sessions[i].file == file) {
            slot = i;
            break;
        }
    }
    if (slot == MAX_SESSIONS) {
        for (i = 0; i < MAX_SESSIONS; i++) {
            if (!ctl->sessions[i].reply) {
                slot = i;
                break;
            }
            if (slot == MAX_SESSIONS || ctl->sessions[i].stamp < ctl->sessions[slot].stamp)
                slot = i;
        }
    }
    old = ctl->sessions[slot].reply;
    ctl->sessions[slot].sid = sid;
    ctl->sessions[slot].file = file;
    ctl->sessions[slot].reply = r;
    ctl->sessions[slot].stamp = ++ctl->clock;
    pthread_mutex_unlock(&ctl->mu);
    reply_unref(old);
}

/* Give h something to read: its session's last reply, else a snapshot. */
static int handle_bind(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, struct mfs_err *err)
{
    const struct ctl_file *cf = &ctl->files[h->file];
    struct mfs_ctl_reply *r;
    int rc;

    r = session_get(ctl, h->sid, h->file);
    if (r) {
        h->reply = r;
        h->pos = 0;
        h->snapshot = false;
        return 0;
    }
    r = reply_new(ctl, h->file);
    if (!r)
        return mfs_err_set(err, -ENOMEM, "cannot read '%s': out of memory", cf->h->name);
    if (cf->h->show) {
        rc = cf->h->show(ctl->view, cf->state, r, err);
        if (rc < 0) {
            reply_unref(r);
            return rc;
        }
    }
    reply_finish(r);
    h->reply = r;
    h->snapshot = true;
    return 0;
}

ssize_t mfs_ctl_read(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, uint64_t off, size_t len,
                     void *buf, struct mfs_err *err)
{
    struct mfs_ctl_reply *r;
    uint64_t at;
    size_t n = 0;
    int rc;

    if (!h->reply) {
        rc = handle_bind(ctl, h, err);
        if (rc < 0)
            return rc;
    }
    r = h->reply;
    at = h->snapshot ? off : h->pos;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->buf.len > at || r->done)
            break;
        if (atomic_load(&h->interrupted)) {
            pthread_mutex_unlock(&r->mu);
            return mfs_err_set(err, -EINTR, "read of '%s' interrupted",
                               ctl->files[h->file].h->name);
        }
        /* Never ctl->mu here: session_get takes ctl->mu then r->mu. */
        if (atomic_load(&ctl->shutdown))
            break;
        pthread_cond_wait(&r->cv, &r->mu);
    }
    if (r->buf.len > at) {
        n = r->buf.len - (size_t)at;
        if (n > len)
            n = len;
        memcpy(buf, r->buf.data + at, n);
    }
    pthread_mutex_unlock(&r->mu);
    if (!h->snapshot)
        h->pos = at + n;
    return (ssize_t)n;
}

ssize_t mfs_ctl_write(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, const void *data,
                      size_t len, struct mfs_err *err)
{
    const struct ctl_file *cf = &ctl->files[h->file];
    struct mfs_ctl_reply *r;
    char *req;
    size_t n = len;
    bool spawned;
    int rc;

    if (!cf->h->request)
        return mfs_err_set(err, -EACCES, "cannot write '%s/%s': it takes no requests",
                           MFS_VIEW_CONTROL, cf->h->name);
    if (len > MAX_REQUEST)
        return mfs_err_set(err, -EINVAL, "bad request to '%s': longer than %u bytes",
                           cf->h->name, MAX_REQUEST);
    req = malloc(len + 1);
    if (!req)
        return mfs_err_set(err, -ENOMEM, "cannot take a request to '%s': out of memory",
                           cf->h->name);
    memcpy(req, data, len);
    while (n > 0 && (req[n - 1] == '\n' || req[n - 1] == '\r'))
        n--;
    req[n] = '\0';
    r = reply_new(ctl, h->file);
    if (!r) {
        rc = mfs_err_set(err, -ENOMEM, "cannot take a request to '%s': out of memory",
                         cf->h->name);
        goto out_free_req;
    }
    rc = cf->h->request(ctl->view, cf->state, req, n, r, err);
    if (rc < 0) {
        if (!err || !err->msg[0])
            mfs_err_set(err, rc, "bad request to '%s': %s", cf->h->name, strerror(-rc));
        mfs_ctl_reply_printf(r, "error: %s\n", err && err->msg[0] ? err->msg : strerror(-rc));
        log_ctl(ctl, h->file, err);
    }
    pthread_mutex_lock(&r->mu);
    spawned = r->spawned;
    pthread_mutex_unlock(&r->mu);
    if (!spawned)
        reply_finish(r);
    /* The handle's new conversation replaces any earlier one; the session
     * remembers it for `cat` on a fresh handle. */
    reply_unref(h->reply);
    h->reply = r;
    h->snapshot = false;
    h->pos = 0;
    session_put(ctl, h->sid, h->file, r);
    if (rc >= 0)
        rc = (int)len;
out_free_req:
    free(req);
    return rc < 0 ? rc : (ssize_t)len;
}

void mfs_ctl_interrupt(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, bool on)
{
    struct mfs_ctl_reply *r = h->reply;

    (void)ctl;
    atomic_store(&h->interrupted, on);
    if (on && r) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
}

void mfs_ctl_release(struct mfs_ctl *ctl, struct mfs_ctl_handle *h)
{
    (void)ctl;
    if (!h)
        return;
    reply_unref(h->reply);
    free(h);
}
