/*
 * common/size.h - size strings such as max_shard_size="5GB" and
 * --cache-size 50GB.
 *
 * Rule (docs/hub-api.md section 10.2, huggingface_hub serialization/_base.py
 * parse_size_to_int): an integer is bytes; otherwise the last two characters,
 * case-insensitive, are TB/GB/MB/KB = 10^12/10^9/10^6/10^3 and the number
 * before them may be fractional.  With MFS_SIZE_BINARY, KiB/MiB/GiB/TiB
 * (2^10..2^40) are accepted too (cache sizes); max_shard_size refuses them as
 * huggingface_hub does.
 */
#ifndef MFS_COMMON_SIZE_H
#define MFS_COMMON_SIZE_H

#include <stdint.h>

#include "err.h"

enum mfs_size_parse_flags {
    MFS_SIZE_BINARY = 1 << 0,               /* accept KiB, MiB, GiB, TiB */
};

/* Parse s into *bytes.  -EINVAL with a reason for anything else. */
int mfs_size_parse(const char *s, unsigned flags, uint64_t *bytes, struct mfs_err *err);

#endif
