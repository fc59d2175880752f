/*
 * fs/reshard.h - rewrite a mount's checkpoint into shards of at most
 * max_shard_size bytes, the way save_pretrained(max_shard_size=...) lays
 * them out (docs/design.md, Writes, resharding; docs/hub-api.md section
 * 10.2; data/golden/README.md section 3), as staged changes.
 *
 * What is a checkpoint here: the safetensors files model/checkpoint.c
 * picks among the merged tree (stage over commit): model.safetensors, or
 * the shards of model.safetensors.index.json, or, for a variant v,
 * model.v.safetensors / model.safetensors.index.v.json.  Every variant
 * present is handled on its own.  A checkpoint that is not complete and
 * consistent (an index naming a missing shard or a tensor no shard holds,
 * a shard with an invalid header, a file still shorter than its header
 * says) is left alone: it is probably being copied.
 *
 * When: a checkpoint written in this mount (some file of it or its index
 * is staged) is resharded when one of its weight files exceeds
 * max_shard_size; with force (max_shard_size changed) every checkpoint is,
 * staged or not; either way nothing happens when its files already are
 * exactly the plan's.  An untouched checkpoint is never rewritten by a push
 * of unrelated files.  Old files not in the plan are whited out (a push
 * drops whiteouts of paths its base lacks).  The plan walks the tensors
 * in state-dict order (model/shard.h, MFS_SHARD_TRANSFORMERS; the order
 * from mfs_model_state_dict_order() and config.json), so the shard names,
 * their tensors, the headers and the index JSON are byte-identical to
 * save_pretrained's (data/golden/sharding.json).
 *
 * How: no tensor byte is copied.  Each new shard is a stage writer holding
 * its header (written) and links to the tensors' bytes in the old files
 * (mfs_stage_writer_link / _link_remote); the new shards, the new index
 * (or its removal when one shard is left) and whiteouts of the old files
 * that are not reused are committed in one transaction (mfs_stage_commit),
 * so a kill -9 leaves either the old or the new checkpoint.  Memory: the
 * headers only.
 *
 * Errors: -EIO (a read failed: the reason), -ENOSPC, -ENOMEM, -EINVAL
 * (max_shard_size 0) with *err set; nothing is staged on error.
 * Threads: the caller serialises reshards and pushes of one stage.
 */
#ifndef MFS_FS_RESHARD_H
#define MFS_FS_RESHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/stage.h"
#include "common/entry.h"
#include "common/err.h"
#include "model/checkpoint.h"

/* One file of the merged tree. */
struct mfs_reshard_file {
    const char *path;                       /* repo path, no leading '/' */
    uint64_t size;                          /* bytes */
    const struct mfs_entry *remote;         /* the commit's blob when not staged, else NULL */
};

struct mfs_reshard_in {
    const struct mfs_reshard_file *files;   /* every file of the merged tree */
    size_t n_files;
    mfs_ckpt_read_fn read;                  /* reads merged content of any of them by path */
    void *read_ctx;
};

struct mfs_reshard_result {
    size_t n_checkpoints;                   /* checkpoints rewritten (0: nothing to do) */
    size_t n_shards;                        /* shards of the last one rewritten */
    uint64_t total_size;                    /* its metadata.total_size */
};

/* Reshard every checkpoint of in that needs it (see above) into stage s.
 * OUT: *res (may be NULL). */
int mfs_reshard_run(struct mfs_stage *s, const struct mfs_reshard_in *in, uint64_t max_shard_size,
                    bool force, struct mfs_reshard_result *res, struct mfs_err *err);

#endif
