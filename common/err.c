/* common/err.c - see err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int mfs_err_set(struct mfs_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int mfs_err_wrap(struct mfs_err *err, int code, const char *fmt, ...)
{
    char prefix[MFS_ERR_MSG_SIZE];
    char old[MFS_ERR_MSG_SIZE];
    va_list ap;

    if (!err)
        return code;
    if (err->code == 0)
        err->code = code;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    if (old[0])
        snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
    else
        snprintf(err->msg, sizeof(err->msg), "%s", prefix);
    return err->code;
}

void mfs_err_clear(struct mfs_err *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}
