/*
 * model/shard.h - splitting a state dict into checkpoint shards the way
 * save_pretrained does, naming the shards, the index JSON, and writing
 * the shard files (docs/hub-api.md section 10.2; docs/design.md, Writes,
 * resharding; data/golden/README.md section 3).
 *
 * Two split rules exist and give different plans when a tensor is larger
 * than the limit:
 *   MFS_SHARD_TRANSFORMERS  transformers 4.37 shard_checkpoint: walk the
 *       state dict in order; if current + size > limit and the current
 *       shard is not empty, start a new shard; add.  Sizes [1,1,10,1],
 *       limit 5 -> [t0 t1] [t2] [t3].  This is what data/golden was made
 *       with, so the shards come out byte-identical to save_pretrained's;
 *       it is the default of the write path.
 *   MFS_SHARD_HUB  huggingface_hub split_state_dict_into_shards_factory
 *       (transformers 5): a tensor larger than the limit becomes its own
 *       shard at once, without closing the one being filled, so it gets an
 *       earlier number: [1,1,10,1], limit 5 -> [t2] [t0 t1 t3].
 * Both: strict '>' (an exact fit stays), no bin packing, a tensor sharing
 * storage with an earlier one (alias_of) joins that tensor's shard and is
 * not counted again; total_size = the sum of counted tensor data bytes.
 *
 * Names: one shard -> the plain weights name (model.safetensors) and no
 * index; else <stem>-00001-of-0000N<ext>, 1-based, 5 digits.  A variant v
 * goes before the last extension first (transformers _add_variant):
 * model.v.safetensors, model.v-00001-of-00002.safetensors, and the index
 * model.safetensors.index.v.json.
 * Pure functions; any thread.
 */
#ifndef MFS_MODEL_SHARD_H
#define MFS_MODEL_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "model/safetensors.h"

struct mfs_buf;

enum mfs_shard_rule {
    MFS_SHARD_TRANSFORMERS,                 /* transformers 4.37 shard_checkpoint (default) */
    MFS_SHARD_HUB,                          /* huggingface_hub split_state_dict_into_shards */
};

/* One state-dict entry, in state-dict order. */
struct mfs_shard_item {
    const char *name;                       /* borrowed; the state-dict key */
    uint64_t nbytes;                        /* size that counts: numel * element size */
    long alias_of;                          /* index of an earlier item on the same storage
                                               (tied weights), or -1 */
};

struct mfs_shard_plan {
    size_t n_shards;                        /* >= 1 when there is any item */
    char **files;                           /* owned; shard i's file name */
    size_t *shard_of;                       /* owned; per item, its shard (0-based) */
    uint64_t total_size;                    /* bytes of counted items (aliases once) */
    char *index_name;                       /* owned; the index file name, NULL if one shard */
};

/* Bytes a tensor counts for in the split: numel * bits / 8, rounded up
 * (transformers counts a bool as 1/8 byte). */
uint64_t mfs_shard_tensor_size(enum mfs_st_dtype dtype, uint64_t numel);

/* Plan the split of items[0..n) under max_shard_size bytes (> 0) with
 * rule.  weights_name is "model.safetensors" or "pytorch_model.bin";
 * variant may be NULL.  OUT: *plan, release with mfs_shard_plan_release().
 * -EINVAL: max_shard_size 0, alias_of not an earlier item, bad names;
 * -ENOMEM. */
int mfs_shard_plan_make(const struct mfs_shard_item *items, size_t n, uint64_t max_shard_size,
                        enum mfs_shard_rule rule, const char *weights_name, const char *variant,
                        struct mfs_shard_plan *plan, struct mfs_err *err);

/* Free what *plan owns and zero it.  NULL is a no-op. */
void mfs_shard_plan_release(struct mfs_shard_plan *plan);

/* Shard i (0-based) of n for weights_name and variant, into out[size].
 * n == 1 gives the plain name.  -EINVAL: does not fit or no extension. */
int mfs_shard_file_name(const char *weights_name, const char *variant, size_t i, size_t n,
                        char *out, size_t size);

/* Append the index JSON exactly as transformers 4.37.2 writes it:
 * json.dumps({"metadata": {"total_size": T}, "weight_map": {name: file}},
 * indent=2, sort_keys=True) + "\n", with Python's ensure_ascii escaping.
 * -ENOMEM. */
int mfs_shard_index_json(const struct mfs_shard_plan *plan, const struct mfs_shard_item *items,
                         size_t n, struct mfs_buf *out, struct mfs_err *err);

/* One tensor for mfs_shard_write(). */
struct mfs_shard_tensor {
    const char *name;                       /* borrowed */
    enum mfs_st_dtype dtype;
    int ndim;
    uint64_t shape[MFS_ST_MAX_DIMS];        /* outermost first */
    long alias_of;                          /* -1, or an earlier tensor on the same storage:
                                               not written (save_pretrained drops tied
                                               aliases from safetensors) */
};

/* Split tensors[0..n) (state-dict order) with rule and write the shards
 * and, when there are several, the index into the existing directory dir,
 * as save_pretrained(safe_serialization=True, max_shard_size=...) does:
 * metadata {"format": "pt"}, the reference layout (safetensors.h,
 * Writing).  Data comes from fill (idx = index into tensors), in chunks,
 * so memory stays bounded.  OUT: *plan (may be NULL), whose items are the
 * written tensors.  -EINVAL, -ENOMEM, -EIO/-ENOSPC writing, and fill's
 * errors; files already written are left for the caller to remove. */
int mfs_shard_write(const char *dir, const struct mfs_shard_tensor *tensors, size_t n,
                    uint64_t max_shard_size, enum mfs_shard_rule rule, const char *variant,
                    mfs_st_fill_fn fill, void *ctx, struct mfs_shard_plan *plan,
                    struct mfs_err *err);

/* Reshard the safetensors checkpoint made of the files srcs[0..n_src)
 * (paths on the local disk, e.g. staged writes) into dir under
 * max_shard_size, as mfs_shard_write() does.  State-dict order is not
 * stored in safetensors files, so tensors are taken in source order: file
 * by file, each in data-offset order; for files written by save_pretrained
 * that gives the same shards whenever the plan has one shard, and a plan of
 * the same sizes otherwise.  Reads one 4 MiB chunk at a time.  A tensor
 * name found twice is -EINVAL.  OUT: *plan (may be NULL).  -EINVAL: an
 * invalid source header; -EIO reading; errors of mfs_shard_write(). */
int mfs_shard_reshard_files(const char *const *srcs, size_t n_src, const char *dir,
                            uint64_t max_shard_size, const char *variant,
                            struct mfs_shard_plan *plan, struct mfs_err *err);

/* State-dict order (model/state_dict.c): OUT: order[0..n) = a permutation
 * of 0..n-1 listing names[] in the order transformers' model.state_dict()
 * yields them for the architecture of config.json (model_type, else
 * architectures[0]): llama, mistral, qwen2, gpt2, bert, bloom, with or
 * without the base model's prefix; layers in numeric order, weight before
 * bias.  Names the architecture does not have, and all names of an unknown
 * architecture (config_json NULL, not JSON, or another model_type), follow
 * in natural order (digit runs compared as numbers).  Safetensors files
 * lose this order; the shard plan needs it (data/golden/sharding.json
 * state_dict_order).  -EINVAL: names or order NULL with n > 0, a NULL
 * name; -ENOMEM.  Pure; any thread. */
int mfs_model_state_dict_order(const char *config_json, size_t config_len,
                               const char *const *names, size_t n, size_t *order,
                               struct mfs_err *err);

#endif
