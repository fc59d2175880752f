/* common/buf.c - see buf.h. */
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mfs_buf_init(struct mfs_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void mfs_buf_release(struct mfs_buf *b)
{
    if (!b)
        return;
    free(b->data);
    mfs_buf_init(b);
}

int mfs_buf_reserve(struct mfs_buf *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *p;

    if (extra > (size_t)-1 - b->len - 1)
        return -ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int mfs_buf_append(struct mfs_buf *b, const void *p, size_t len)
{
    int rc = mfs_buf_reserve(b, len);

    if (rc < 0)
        return rc;
    if (len)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int mfs_buf_puts(struct mfs_buf *b, const char *s)
{
    return mfs_buf_append(b, s, strlen(s));
}

int mfs_buf_printf(struct mfs_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    int rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    rc = mfs_buf_reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void mfs_buf_reset(struct mfs_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *mfs_buf_steal(struct mfs_buf *b)
{
    char *p = b->data;

    if (!p)
        p = calloc(1, 1);
    mfs_buf_init(b);
    return p;
}
