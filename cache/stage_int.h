/*
 * cache/stage_int.h - what cache/stage.c (the SQLite store: entries,
 * objects, chunks, writers) and cache/stage_pt.c (piece tables and their
 * encoding) share.  Private to cache/: only cache/stage*.c include it.
 *
 * A piece table is a file's content as extents in order, without gaps,
 * covering [0, size); each extent takes its bytes from one source
 * (enum stage_src).  stage_pt.c builds and encodes them in memory;
 * stage.c stores them in stage_entries.extents and counts the objects
 * they name.  Returns: >= 0 on success, negative errno on failure.
 * Threads: a piece table belongs to one thread at a time (the caller's).
 */
#ifndef MFS_CACHE_STAGE_INT_H
#define MFS_CACHE_STAGE_INT_H

#include <errno.h>
#include <stdint.h>

#include "cache/stage.h"

#define STAGE_IDX_BITS 24                   /* chunk index bits in a chunk rowid */
#define STAGE_MAX_OFF ((uint64_t)MFS_CACHE_CHUNK << STAGE_IDX_BITS) /* 4 TiB per file */
#define STAGE_MAX_PATH 4096                 /* bytes of a path */
#define STAGE_REMOTE_REC (8 + 8 + 1 + 40 + 64 + 4) /* fixed bytes of an encoded REMOTE */

enum stage_src {
    SRC_ZERO = 0,
    SRC_OBJ = 1,
    SRC_REMOTE = 2,
};

/* One extent of a piece table: file bytes [off, off+len) come from src. */
struct stage_ext {
    uint64_t off;                           /* bytes from the file's start */
    uint64_t len;                           /* > 0 */
    enum stage_src src;
    int64_t obj;                            /* SRC_OBJ: the data object */
    uint64_t src_off;                       /* OBJ/REMOTE: where in the source off lies */
    struct mfs_entry *rem;                  /* SRC_REMOTE: owned copy of the blob */
};

/* A file's content: extents in order, without gaps, covering [0, size). */
struct stage_pt {
    struct stage_ext *v;                    /* n used, cap allocated */
    size_t n;
    size_t cap;
    uint64_t size;                          /* bytes */
};

static inline int stage_nomem(struct mfs_err *err)
{
    return mfs_err_set(err, -ENOMEM, "stage: out of memory");
}

/* A heap copy of blob e (path copied, is_dir cleared), or NULL (no memory).
 * Free with mfs_stage_remote_free() (NULL is a no-op). */
struct mfs_entry *mfs_stage_remote_dup(const struct mfs_entry *e);
void mfs_stage_remote_free(struct mfs_entry *r);

/* Free what extent x owns (its remote copy). */
void mfs_stage_ext_release(struct stage_ext *x);

/* Free pt's extents and zero it. */
void mfs_stage_pt_release(struct stage_pt *pt);

/* Index of the extent holding byte at (at < size). */
size_t mfs_stage_pt_find(const struct stage_pt *pt, uint64_t at);

/* Replace bytes [off, off+sum of lens) by ins[0..nins), which become owned
 * by pt on success (their off fields are set here); bytes between the old
 * end and off become zeros.  On failure pt is unchanged and ins still the
 * caller's.  -ENOMEM. */
int mfs_stage_pt_replace(struct stage_pt *pt, uint64_t off, struct stage_ext *ins,
                         size_t nins);

/* Set the size: drop bytes past it or add zeros.  -ENOMEM. */
int mfs_stage_pt_truncate(struct stage_pt *pt, uint64_t size);

/* Deep copies of the extents of bytes [off, off+len) (off+len <= size),
 * offsets relative to off.  OUT: *outp (mfs_stage_ext_release each, then
 * free the array), *np.  -ENOMEM. */
int mfs_stage_pt_slice(const struct stage_pt *pt, uint64_t off, uint64_t len,
                       struct stage_ext **outp, size_t *np);

/* Encode pt (format: cache/stage_pt.c).  OUT: *bp (free()), *np bytes.
 * -ENOMEM. */
int mfs_stage_pt_encode(const struct stage_pt *pt, unsigned char **bp, size_t *np);

/* Decode a stored piece table of a file of size bytes (path only names it
 * in messages).  OUT: *pt (mfs_stage_pt_release).  -EIO (damaged),
 * -ENOMEM. */
int mfs_stage_pt_decode(const unsigned char *b, size_t n, uint64_t size, struct stage_pt *pt,
                        const char *path, struct mfs_err *err);

/* The distinct data objects pt names.  OUT: *objsp (free()), *np.
 * -ENOMEM. */
int mfs_stage_pt_objects(const struct stage_pt *pt, int64_t **objsp, size_t *np);

#endif
