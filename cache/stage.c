/* Skeleton: every function fails with -ENOSYS until its owner lands it. */
#include <errno.h>
#include <stdlib.h>
#include "cache/stage.h"

int mfs_stage_open(const char *cache_dir, const struct mfs_cache_repo *repo,
                   const char *revision, mfs_stage_base_read_fn base_read, void *base_ctx,
                   struct mfs_stage **sp, struct mfs_err *err)
{
    return -ENOSYS;
}

void mfs_stage_close(struct mfs_stage **sp)
{
}

int mfs_stage_list(struct mfs_stage *s, struct mfs_stage_entry **ep, size_t *np,
                   struct mfs_err *err)
{
    return -ENOSYS;
}

void mfs_stage_entries_free(struct mfs_stage_entry *e, size_t n)
{
}

int mfs_stage_get(struct mfs_stage *s, const char *path, struct mfs_stage_entry *e,
                  struct mfs_err *err)
{
    return -ENOSYS;
}

ssize_t mfs_stage_read(struct mfs_stage *s, const char *path, uint64_t off, size_t len,
                       void *buf, struct mfs_err *err)
{
    return -ENOSYS;
}

int mfs_stage_apply(struct mfs_stage *s, const struct mfs_stage_change *changes, size_t n,
                    struct mfs_err *err)
{
    return -ENOSYS;
}

int mfs_stage_writer_open(struct mfs_stage *s, const char *path, enum mfs_stage_base base,
                          const struct mfs_entry *remote, uint32_t mode,
                          struct mfs_stage_writer **wp, struct mfs_err *err)
{
    return -ENOSYS;
}

ssize_t mfs_stage_writer_write(struct mfs_stage_writer *w, uint64_t off, const void *data,
                               size_t len, struct mfs_err *err)
{
    return -ENOSYS;
}

ssize_t mfs_stage_writer_link(struct mfs_stage_writer *w, uint64_t off, const char *src_path,
                              uint64_t src_off, uint64_t len, struct mfs_err *err)
{
    return -ENOSYS;
}

ssize_t mfs_stage_writer_link_remote(struct mfs_stage_writer *w, uint64_t off,
                                     const struct mfs_entry *remote, uint64_t src_off,
                                     uint64_t len, struct mfs_err *err)
{
    return -ENOSYS;
}

int mfs_stage_writer_truncate(struct mfs_stage_writer *w, uint64_t size, struct mfs_err *err)
{
    return -ENOSYS;
}

uint64_t mfs_stage_writer_size(const struct mfs_stage_writer *w)
{
    return 0;
}

ssize_t mfs_stage_writer_read(struct mfs_stage_writer *w, uint64_t off, size_t len, void *buf,
                              struct mfs_err *err)
{
    return -ENOSYS;
}

int mfs_stage_writer_commit(struct mfs_stage_writer *w, struct mfs_err *err)
{
    return -ENOSYS;
}

int mfs_stage_commit(struct mfs_stage *s, struct mfs_stage_writer *const *writers, size_t nw,
                     const struct mfs_stage_change *changes, size_t nc, struct mfs_err *err)
{
    return -ENOSYS;
}

void mfs_stage_writer_close(struct mfs_stage_writer **wp)
{
}

uint64_t mfs_stage_generation(struct mfs_stage *s)
{
    return 0;
}

int mfs_stage_clear_upto(struct mfs_stage *s, uint64_t gen, struct mfs_err *err)
{
    return -ENOSYS;
}

void mfs_stage_totals(struct mfs_stage *s, size_t *n_entries, uint64_t *file_bytes)
{
}
