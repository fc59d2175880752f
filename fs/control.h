/*
 * fs/control.h - the .modelfs/ control files: a table of handlers, and the
 * conversations that carry their requests and replies (docs/design.md,
 * Control files).
 *
 * Two ways of use both work and never mix two users' replies:
 *   1. open read-write, write a request, read the reply on the same handle
 *      (each handle is its own conversation);
 *   2. `echo req > .modelfs/X; cat .modelfs/X`: a read on a fresh handle
 *      returns the reply to the last request made to X from the caller's
 *      process session (getsid of the caller's pid, which a shell's jobs
 *      share), so two terminals never see each other's replies.
 * A handle that made no request and finds no session reply reads the
 * file's show() snapshot (info, status, log), or nothing.
 *
 * Each write(2) is one request; a trailing newline is dropped (echo adds
 * one).  A request handler that fails with -EINVAL makes the write fail
 * with EINVAL; the reason is the reply ("error: REASON\n"), readable on the
 * same handle and by the session, and a line in .modelfs/log.
 *
 * Streaming: a handler may hand the rest of its work to a worker thread
 * (mfs_ctl_reply_spawn) that appends to the reply as it goes; readers
 * block until more bytes arrive or the reply is complete, then see EOF.
 * Conversation replies are read as a stream: each read returns the next
 * bytes whatever the file offset (after a write on an O_RDWR handle the
 * offset is past the request).  The files are opened with direct_io.
 *
 * ADDING A CONTROL FILE (one line): write a
 *     const struct mfs_ctl_handler mfs_ctl_generate = { "generate", ... };
 * in your own fs/ctl_*.c, declare it extern below next to the others, and
 * add &mfs_ctl_generate to mfs_ctl_plugins[] in fs/control.c.  Every mount
 * then shows .modelfs/generate.  Tests may instead call mfs_view_ctl_add()
 * on a view of their own.
 *
 * Threads: handlers are called from FUSE worker threads, several at once
 * for different handles; per-mount state (init's *statep) must lock what
 * it shares.
 */
#ifndef MFS_FS_CONTROL_H
#define MFS_FS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

struct mfs_view;
struct mfs_ctl;                             /* a view's control files and conversations */
struct mfs_ctl_reply;                       /* one reply: refcounted, growing, streamable */
struct mfs_ctl_handle;                      /* one open control file */

struct mfs_ctl_handler {
    const char *name;                       /* file name in .modelfs/, no '/' */
    /* Handle one request: req[0..len) (NUL-terminated copy, newline
     * dropped).  Append the reply with mfs_ctl_reply_write/printf, or hand
     * the slow part to mfs_ctl_reply_spawn.  Return 0, or -EINVAL (bad
     * request: the write fails) or another negative errno with *err set.
     * NULL: the file takes no requests (opening it for writing is EACCES). */
    int (*request)(struct mfs_view *view, void *state, const char *req, size_t len,
                   struct mfs_ctl_reply *reply, struct mfs_err *err);
    /* The snapshot a handle reads when it has no conversation (info,
     * status, log).  NULL: such a handle reads nothing. */
    int (*show)(struct mfs_view *view, void *state, struct mfs_ctl_reply *reply,
                struct mfs_err *err);
    /* Optional per-mount state: called once when the view is built
     * (OUT: *statep) and fini once when it is freed, after every worker
     * has returned. */
    int (*init)(struct mfs_view *view, void **statep, struct mfs_err *err);
    void (*fini)(void *state);
};

/* Append len bytes to the reply and wake its readers.  -ENOMEM. */
int mfs_ctl_reply_write(struct mfs_ctl_reply *r, const void *p, size_t len);
/* Append printf-style text.  -ENOMEM. */
int mfs_ctl_reply_printf(struct mfs_ctl_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Finish the request in a worker thread: work(reply, arg, err) runs there
 * and may append for as long as it likes; the reply is complete when it
 * returns (its failure is appended as "error: REASON\n" and logged).
 * arg_free(arg) runs after work (NULL: nothing to free).  Call at most once,
 * from a request handler.  -ENOMEM, -EAGAIN (no thread; arg_free has run). */
int mfs_ctl_reply_spawn(struct mfs_ctl_reply *r,
                        int (*work)(struct mfs_ctl_reply *r, void *arg, struct mfs_err *err),
                        void *arg, void (*arg_free)(void *arg), struct mfs_err *err);

/* True once the mount is going away: a worker should stop soon. */
bool mfs_ctl_reply_cancelled(struct mfs_ctl_reply *r);

/* Add handler to view's .modelfs/ (state passed to its callbacks; init is
 * not called).  Call before the view is mounted.  -EEXIST, -ENOSPC (more
 * than 64 files), -EINVAL (bad name). */
int mfs_view_ctl_add(struct mfs_view *view, const struct mfs_ctl_handler *h, void *state,
                     struct mfs_err *err);

/* Control files every mount gets besides info/status/log (fs/control.c),
 * NULL-terminated. */
extern const struct mfs_ctl_handler *const mfs_ctl_plugins[];
/* fs/ctl_infer.c: load; its init adds unload, generate, tokenize, embed */
extern const struct mfs_ctl_handler mfs_ctl_load;
/* fs/ctl_push.c: push (one Hub commit per write) and config (the push settings) */
extern const struct mfs_ctl_handler mfs_ctl_push;
extern const struct mfs_ctl_handler mfs_ctl_config;

/* Process session id of pid (/proc/PID/stat field 6); pid itself when
 * unknown (the process is gone), so each unknown caller is its own session.
 * 0, as getsid() says, when the session leader lives outside the caller's
 * PID namespace (containers, CI runners): all such callers share it, which
 * is what the kernel tells them too. */
pid_t mfs_ctl_sid_of(pid_t pid);

/* ---- for fs/view.c (and plugin inits, through mfs_view_ctl) ----------- */

/* Make view's table, empty.  OUT: *ctlp.  -ENOMEM.  One thread. */
int mfs_ctl_new(struct mfs_view *view, struct mfs_ctl **ctlp, struct mfs_err *err);
/* Shut down, wait for workers, run fini, free, set *ctlp to NULL.  NULL is
 * a no-op.  No handle may be in use. */
void mfs_ctl_free(struct mfs_ctl **ctlp);
/* Set the shutdown flag: workers see mfs_ctl_reply_cancelled(), blocked
 * readers return what they have.  Any thread, idempotent. */
void mfs_ctl_shutdown(struct mfs_ctl *ctl);
/* Add h with state (its init is not called, fini never is: the caller owns
 * state).  -EINVAL (bad name), -EEXIST, -ENOSPC (64 files).  Before the
 * mount serves requests only. */
int mfs_ctl_add(struct mfs_ctl *ctl, const struct mfs_ctl_handler *h, void *state,
                struct mfs_err *err);
/* Call h's init, add h with the state it made (fini runs at free).  Its
 * errors are init's or mfs_ctl_add's (init's state is then finied). */
int mfs_ctl_add_init(struct mfs_ctl *ctl, const struct mfs_ctl_handler *h, struct mfs_err *err);
/* Number of files, and file i's name (borrowed) and whether it takes
 * requests (mode 0666 rather than 0444).  i < mfs_ctl_count(). */
size_t mfs_ctl_count(struct mfs_ctl *ctl);
const char *mfs_ctl_name(struct mfs_ctl *ctl, size_t i);
bool mfs_ctl_writable(struct mfs_ctl *ctl, size_t i);
/* Open file i with open(2) flags for process pid (its session id is taken
 * now).  OUT: *hp, for read/write/interrupt/release.  -EACCES: write access
 * to a file without requests; -ENOMEM.  Any thread. */
int mfs_ctl_open(struct mfs_ctl *ctl, size_t i, int flags, pid_t pid,
                 struct mfs_ctl_handle **hp, struct mfs_err *err);
/* Read up to len bytes of h's reply (conversation: the next bytes, off
 * ignored; snapshot: at off), waiting while a streaming reply has no new
 * bytes.  Returns the bytes, 0 at the end.  -EINTR (interrupted), -ENOMEM,
 * or show()'s error.  One reader per handle at a time. */
ssize_t mfs_ctl_read(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, uint64_t off, size_t len,
                     void *buf, struct mfs_err *err);
/* Make data[0, len) a request: it becomes h's conversation and the
 * session's last reply even when it fails.  Returns len, or the handler's
 * error (-EINVAL: a bad request, its reason readable as the reply and
 * logged), -EACCES (no requests), -ENOMEM. */
ssize_t mfs_ctl_write(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, const void *data,
                      size_t len, struct mfs_err *err);
/* on: make a read of h blocked on a streaming reply return -EINTR (the
 * reader got a signal); off: clear that.  Any thread. */
void mfs_ctl_interrupt(struct mfs_ctl *ctl, struct mfs_ctl_handle *h, bool on);
/* Close h (its reply lives on while the session or a worker holds it).
 * NULL is a no-op. */
void mfs_ctl_release(struct mfs_ctl *ctl, struct mfs_ctl_handle *h);

#endif
