/*
 * model/pytorch_bin.h - legacy pytorch_model.bin checkpoints (torch.save's
 * zip format), read without running pickle code (docs/design.md, The tree;
 * data/golden/README.md section 6).
 *
 * The file is a zip archive of stored (uncompressed) entries under one top
 * folder <prefix>/: data.pkl, the pickled state dict, and data/<key>, the
 * raw bytes of each storage.  The central directory (zip64 too) is parsed
 * here, and data.pkl is run on a tiny pickle machine that knows only the
 * protocol-2 opcodes torch.save emits and only three globals:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 and the
 * torch.*Storage classes.  Any other opcode or global is -EINVAL
 * ("unsupported pickle opcode 0x.."), so nothing from the file is ever
 * executed.  A tensor is then a byte range of its storage's zip entry.
 *
 * Only header bytes are read, through the caller's read callback: the end
 * of the file (central directory), data.pkl, and each storage's 30-byte
 * local header.  Pure functions on the callback; any thread.
 */
#ifndef MFS_MODEL_PYTORCH_BIN_H
#define MFS_MODEL_PYTORCH_BIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "model/safetensors.h"

#define MFS_PT_MAX_PICKLE (64u << 20)       /* bytes of data.pkl we accept */

/* Read len bytes at byte off of the file into buf; return the bytes read
 * (len unless the file ends first) or a negative errno with *err set. */
typedef ssize_t (*mfs_pt_read_fn)(void *ctx, uint64_t off, size_t len, void *buf,
                                  struct mfs_err *err);

struct mfs_pt_tensor {
    char *name;                             /* owned; the state-dict key */
    enum mfs_st_dtype dtype;                /* from the storage class, safetensors spelling */
    int ndim;                               /* 0 = scalar */
    uint64_t shape[MFS_ST_MAX_DIMS];        /* outermost first */
    int64_t stride[MFS_ST_MAX_DIMS];        /* in elements, as pickled */
    char *storage_key;                      /* owned; zip entry <prefix>data/<key> */
    uint64_t storage_numel;                 /* elements in the storage */
    uint64_t storage_offset;                /* elements from the storage's start */
    uint64_t offset;                        /* absolute byte offset of the data in the .bin */
    uint64_t nbytes;                        /* numel * element size */
    long shares_with;                       /* index of the first tensor on the same
                                               storage (tied weights), or -1 */
};

struct mfs_pt_file {
    size_t n_tensors;
    struct mfs_pt_tensor *tensors;          /* owned; in pickle (state-dict) order */
    size_t n_skipped;
    char **skipped;                         /* owned; "name: why" of tensors left out
                                               (non-contiguous, non-tensor values) */
    char *prefix;                           /* owned; the archive's top folder, with '/' */
};

/* Parse the .bin file called name (for messages) of size bytes.
 * OUT: *f, release with mfs_pt_release().  -EINVAL: not a zip, compressed
 * or missing entries, hostile or unsupported pickle, a storage too small
 * for its tensors; -EIO and others from read; -ENOMEM. */
int mfs_pt_open(const char *name, uint64_t size, mfs_pt_read_fn read, void *ctx,
                struct mfs_pt_file *f, struct mfs_err *err);

/* Free what *f owns and zero it.  NULL is a no-op. */
void mfs_pt_release(struct mfs_pt_file *f);

#endif
