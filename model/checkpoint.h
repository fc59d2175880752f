/*
 * model/checkpoint.h - the tensors of a repo's checkpoint, whatever its
 * layout: one model.safetensors, shards listed by
 * model.safetensors.index.json, variants (model.<v>.safetensors,
 * model.safetensors.index.<v>.json), legacy pytorch_model.bin (zip +
 * pickle, read without running pickle code) and its sharded index
 * (docs/design.md, The tree; docs/hub-api.md section 10).
 *
 * The checkpoint reads only header bytes, through the caller's io
 * callback (the mount passes its cache-backed reader, tests a directory
 * reader), so opening it never downloads weights.  A file whose header is
 * invalid is left out: its tensors do not appear, and the reason goes to
 * the log callback; the other files still work.
 *
 * Names are exactly as in the checkpoint (they contain dots, never '/').
 * When two files hold the same name, the one the index names wins, else the
 * first file in path order.  Pure data after open; any thread may read it.
 *
 * Which files (details in checkpoint.c): model.safetensors, else the
 * shards of model.safetensors.index.json, else pytorch_model.bin, else the
 * shards of pytorch_model.bin.index.json (a variant v makes these
 * model.v.safetensors, model.safetensors.index.v.json, ...).  Other root
 * *.safetensors files (adapter_model.safetensors, other variants) are not
 * part of such a checkpoint.  Only when none of those exist and no variant
 * is asked is every *.safetensors file at the repo root used (shards
 * without an index, adapter-only repos).  A name that cannot be a file in
 * tensors/ (empty, ".", "..", containing '/') is left out and logged, and
 * so is a non-contiguous tensor of a .bin file.
 */
#ifndef MFS_MODEL_CHECKPOINT_H
#define MFS_MODEL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "model/safetensors.h"

/* Read len bytes at off of repo file path into buf; return bytes read
 * (len unless the file ends) or a negative errno with *err set. */
typedef ssize_t (*mfs_ckpt_read_fn)(void *ctx, const char *path, uint64_t off, size_t len,
                                    void *buf, struct mfs_err *err);
/* Report a file left out (path) and why. */
typedef void (*mfs_ckpt_log_fn)(void *ctx, const char *path, const struct mfs_err *err);

struct mfs_ckpt_io {
    mfs_ckpt_read_fn read;
    mfs_ckpt_log_fn log;                    /* may be NULL */
    void *ctx;
};

/* One file of the repo, as listed by the tree. */
struct mfs_ckpt_file {
    const char *path;                       /* borrowed for the open call */
    uint64_t size;                          /* bytes */
};

struct mfs_ckpt_tensor {
    char *name;                             /* owned by the checkpoint */
    enum mfs_st_dtype dtype;
    int ndim;
    uint64_t shape[MFS_ST_MAX_DIMS];        /* outermost first */
    const char *file;                       /* owned by the checkpoint: repo path of its file */
    uint64_t offset;                        /* absolute byte offset of the data in that file */
    uint64_t nbytes;                        /* bytes, little-endian, row-major */
};

struct mfs_ckpt {
    size_t n_tensors;
    struct mfs_ckpt_tensor *tensors;        /* sorted by name (strcmp) for bsearch */
    size_t n_files;
    char **files;                           /* checkpoint files used, in path order */
    int format;                             /* MFS_CKPT_SAFETENSORS or MFS_CKPT_PYTORCH */
};

#define MFS_CKPT_NONE 0
#define MFS_CKPT_SAFETENSORS 1
#define MFS_CKPT_PYTORCH 2

/* Find the checkpoint among files[0..n) and read its headers through io.
 * variant NULL picks the plain checkpoint (safetensors preferred over .bin,
 * as transformers does); a repo with no checkpoint gives an empty one
 * (n_tensors 0, format MFS_CKPT_NONE), not an error.  OUT: *ckptp, free
 * with mfs_ckpt_free().  -EIO when io fails (the reason from io), -ENOMEM.
 * Invalid files are skipped and logged, not returned as errors. */
int mfs_ckpt_open(const struct mfs_ckpt_file *files, size_t n, const char *variant,
                  const struct mfs_ckpt_io *io, struct mfs_ckpt **ckptp, struct mfs_err *err);

/* Free *ckptp and set it to NULL.  NULL and *ckptp == NULL are no-ops. */
void mfs_ckpt_free(struct mfs_ckpt **ckptp);

/* The tensor called name, or NULL. */
const struct mfs_ckpt_tensor *mfs_ckpt_find(const struct mfs_ckpt *ckpt, const char *name);

#endif
