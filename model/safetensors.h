/*
 * model/safetensors.h - the safetensors format (docs/hub-api.md section
 * 10.1, safetensors/src/tensor.rs read_metadata + Metadata::validate).
 *
 * A file is: 8 bytes N (u64 little-endian), N bytes of UTF-8 JSON, then the
 * data buffer; tensor offsets are relative to the buffer's start, byte 8+N.
 * The parser enforces every reader rule of the reference: header size
 * limits, JSON object with string->string __metadata__, known dtypes,
 * contiguous sorted offsets starting at 0, shape*bits == 8*(end-begin),
 * and 8+N+last_end == file size.  Anything else is -EINVAL with the rule
 * that failed in *err ("invalid safetensors header in 'x': offsets of 'w'
 * overlap"), never a crash: headers come from the network.
 * Pure functions on memory; any thread.
 */
#ifndef MFS_MODEL_SAFETENSORS_H
#define MFS_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MFS_ST_MAX_HEADER 100000000ull      /* format limit (HeaderTooLarge) */
#define MFS_ST_MAX_DIMS 8

enum mfs_st_dtype {
    MFS_ST_BOOL, MFS_ST_F4, MFS_ST_F6_E2M3, MFS_ST_F6_E3M2, MFS_ST_U8, MFS_ST_I8,
    MFS_ST_F8_E5M2, MFS_ST_F8_E4M3, MFS_ST_F8_E8M0, MFS_ST_F8_E4M3FNUZ, MFS_ST_F8_E5M2FNUZ,
    MFS_ST_I16, MFS_ST_U16, MFS_ST_F16, MFS_ST_BF16, MFS_ST_I32, MFS_ST_U32, MFS_ST_F32,
    MFS_ST_C64, MFS_ST_F64, MFS_ST_I64, MFS_ST_U64,
    MFS_ST_DTYPE_COUNT
};

struct mfs_st_tensor {
    char *name;                             /* owned; as in the header */
    enum mfs_st_dtype dtype;
    int ndim;                               /* 0 = scalar */
    uint64_t shape[MFS_ST_MAX_DIMS];        /* outermost first */
    uint64_t begin;                         /* absolute byte offset in the file:
                                               8 + N + data_offsets[0] */
    uint64_t nbytes;                        /* data_offsets[1] - data_offsets[0] */
};

struct mfs_st_header {
    uint64_t header_len;                    /* N */
    uint64_t data_start;                    /* 8 + N */
    size_t n_tensors;
    struct mfs_st_tensor *tensors;          /* owned; in header (JSON) order */
    size_t n_meta;
    char **meta_keys;                       /* owned; __metadata__ keys */
    char **meta_values;                     /* owned; __metadata__ values */
};

/* Read N from the first 8 bytes of a file of file_size bytes.  OUT: *n.
 * -EINVAL: file shorter than 8 bytes, N > MFS_ST_MAX_HEADER, or 8+N past
 * the end of the file. */
int mfs_st_header_len(const unsigned char first8[8], uint64_t file_size, uint64_t *n,
                      struct mfs_err *err);

/* Parse and validate the N header bytes json[0..n) of a file of file_size
 * bytes.  name is the file's name, for messages.  OUT: *h, release with
 * mfs_st_header_release().  -EINVAL, -ENOMEM. */
int mfs_st_header_parse(const char *name, const char *json, size_t n, uint64_t file_size,
                        struct mfs_st_header *h, struct mfs_err *err);

/* Free what *h owns and zero it.  NULL is a no-op. */
void mfs_st_header_release(struct mfs_st_header *h);

/* "F32", "BF16", ... as safetensors spells them; parse returns -EINVAL for
 * unknown names. */
const char *mfs_st_dtype_name(enum mfs_st_dtype d);
int mfs_st_dtype_parse(const char *s, enum mfs_st_dtype *d);
/* Bits per element: 4, 6, 8, 16, 32 or 64. */
unsigned mfs_st_dtype_bits(enum mfs_st_dtype d);

/*
 * Writing (model/st_write.c): the reference writer's layout
 * (safetensors/src/tensor.rs prepare + serialize; docs/hub-api.md 10.1):
 * "__metadata__" first, then tensors sorted by dtype descending in the
 * enum above (its alignment order), then by name (bytes); compact JSON as
 * serde_json writes it; the JSON padded with spaces to a multiple of 8, so
 * the data starts 8-aligned.  A file written from the same tensors is
 * byte-identical to safetensors.torch.save_file's.
 */
struct mfs_st_wtensor {
    const char *name;                       /* borrowed; UTF-8 */
    enum mfs_st_dtype dtype;
    int ndim;                               /* 0 = scalar */
    uint64_t shape[MFS_ST_MAX_DIMS];        /* outermost first */
};

struct mfs_buf;

/* OUT: *nbytes, the data bytes of a tensor of this dtype and shape.
 * -EINVAL: its bits are not a multiple of 8, or the size overflows. */
int mfs_st_tensor_nbytes(enum mfs_st_dtype dtype, int ndim, const uint64_t *shape,
                         uint64_t *nbytes, struct mfs_err *err);

/* Build the file's first 8+N bytes for t[0..n) and optional string
 * metadata (n_meta pairs, written in this order; none: no "__metadata__").
 * Appends them to out.  OUT: order[0..n) = indices into t in file order
 * (may be NULL), begin[0..n) = absolute file offset of each t[i]'s data
 * (may be NULL), *file_size = the whole file's size (may be NULL).
 * -EINVAL: duplicate name, "__metadata__" as a tensor name, bad shape;
 * -ENOMEM.  Any thread. */
int mfs_st_layout(const struct mfs_st_wtensor *t, size_t n, const char *const *meta_keys,
                  const char *const *meta_values, size_t n_meta, struct mfs_buf *out,
                  size_t *order, uint64_t *begin, uint64_t *file_size, struct mfs_err *err);

/* Supply bytes [off, off+len) of the data of tensor idx (an index into the
 * caller's array) into buf.  0 or a negative errno with *err set. */
typedef int (*mfs_st_fill_fn)(void *ctx, size_t idx, uint64_t off, void *buf, size_t len,
                              struct mfs_err *err);

/* Write a whole safetensors file to fd (from its current position): the
 * header of mfs_st_layout(), then each tensor's bytes in file order, pulled
 * through fill in chunks of at most 4 MiB, so memory stays bounded whatever
 * the tensor sizes (resharding needs no whole tensor in memory).
 * OUT: *file_size (may be NULL).  -EIO/-ENOSPC from write(2), errors of
 * fill and of mfs_st_layout.  On failure the file is partial: the caller
 * removes it. */
int mfs_st_write_fd(int fd, const struct mfs_st_wtensor *t, size_t n,
                    const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                    mfs_st_fill_fn fill, void *ctx, uint64_t *file_size, struct mfs_err *err);

#endif
