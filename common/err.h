/*
 * common/err.h - negative errno plus a reason, the error currency of modelfs.
 *
 * Every function that can fail returns int/ssize_t: >= 0 is success, a
 * negative errno is failure (docs/design.md, Errors).  It takes a
 * struct mfs_err *err as its last argument (NULL allowed) and, on failure,
 * writes a one-line reason in git's style: lowercase, no final period, what
 * failed first, the subject in single quotes, the cause after a colon.
 * Example: cannot fetch 'model.safetensors': HTTP 503 after 3 tries
 * Each request keeps its mfs_err on the stack; threads never share one.
 */
#ifndef MFS_COMMON_ERR_H
#define MFS_COMMON_ERR_H

#include <stddef.h>

#define MFS_ERR_MSG_SIZE 256                /* curl's CURL_ERROR_SIZE */

struct mfs_err {
    int code;                               /* 0 or a negative errno */
    char msg[MFS_ERR_MSG_SIZE];             /* NUL-terminated reason, "" if none */
};

#define MFS_ERR_INIT { 0, { 0 } }

/* Record code (a negative errno) and a printf-style reason in *err (if err
 * is not NULL) and return code, so callers write
 *     return mfs_err_set(err, -EIO, "cannot read '%s': %s", path, why);
 * A message longer than MFS_ERR_MSG_SIZE-1 bytes is truncated. */
int mfs_err_set(struct mfs_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the reason already in *err with printf-style context and ": ",
 * keeping err->code; returns err->code (or code when err is NULL). */
int mfs_err_wrap(struct mfs_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reset *err to MFS_ERR_INIT.  NULL is a no-op. */
void mfs_err_clear(struct mfs_err *err);

#endif
