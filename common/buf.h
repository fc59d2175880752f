/*
 * common/buf.h - growable byte buffer (curl's dynbuf, redis' sds in spirit).
 *
 * data is always NUL-terminated (the NUL is not counted in len), so a
 * buffer of text can be handed to C string functions.  A failed append
 * leaves the buffer as it was and returns -ENOMEM.  The caller embeds the
 * struct: mfs_buf_init() allocates nothing, mfs_buf_release() frees the
 * contents, mfs_buf_steal() hands data to the caller (free() it).
 */
#ifndef MFS_COMMON_BUF_H
#define MFS_COMMON_BUF_H

#include <stddef.h>

struct mfs_buf {
    char *data;                             /* NULL until the first append */
    size_t len;                             /* bytes used, NUL not counted */
    size_t cap;                             /* bytes allocated */
};

#define MFS_BUF_INIT { NULL, 0, 0 }

void mfs_buf_init(struct mfs_buf *b);
void mfs_buf_release(struct mfs_buf *b);
/* Ensure room for extra more bytes (plus the NUL).  -ENOMEM. */
int mfs_buf_reserve(struct mfs_buf *b, size_t extra);
/* Append len bytes.  -ENOMEM. */
int mfs_buf_append(struct mfs_buf *b, const void *p, size_t len);
/* Append a NUL-terminated string.  -ENOMEM. */
int mfs_buf_puts(struct mfs_buf *b, const char *s);
/* Append printf-style text.  -ENOMEM. */
int mfs_buf_printf(struct mfs_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Set len to 0, keeping the allocation. */
void mfs_buf_reset(struct mfs_buf *b);
/* Return data (never NULL: an empty buffer gives a fresh "") and re-init
 * the buffer.  The caller frees the result with free(); NULL on ENOMEM. */
char *mfs_buf_steal(struct mfs_buf *b);

#endif
