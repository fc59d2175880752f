/* Skeleton: every function fails with -ENOSYS until its owner lands it. */
#include <errno.h>
#include <stdlib.h>
#include "fs/push.h"

int mfs_push_new(const struct mfs_push_cfg *cfg, struct mfs_push **pp, struct mfs_err *err)
{
    return -ENOSYS;
}

void mfs_push_free(struct mfs_push **pp)
{
}

int mfs_push_run(struct mfs_push *p, const char *base_commit, const struct mfs_entry *base,
                 size_t nbase, const struct mfs_push_opts *opts, struct mfs_push_result *res,
                 struct mfs_err *err)
{
    return -ENOSYS;
}

void mfs_push_result_release(struct mfs_push_result *res)
{
}

void mfs_push_progress_get(struct mfs_push *p, struct mfs_push_progress *pr)
{
}

int mfs_push_last_json(struct mfs_push *p, struct mfs_buf *out, struct mfs_err *err)
{
    return -ENOSYS;
}
