/* Skeleton: every function fails with -ENOSYS until its owner lands it. */
#include <errno.h>
#include <stdlib.h>
#include "fs/reshard.h"

int mfs_reshard_run(struct mfs_stage *s, const struct mfs_reshard_in *in, uint64_t max_shard_size,
                    bool force, struct mfs_reshard_result *res, struct mfs_err *err)
{
    return -ENOSYS;
}
