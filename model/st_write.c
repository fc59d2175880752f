/*
 * model/st_write.c - the safetensors writer (see safetensors.h, Writing).
 *
 * Byte-identical output with the reference matters: a resharded
 * checkpoint pushed from a mount must hash the same as the one
 * save_pretrained writes, so nothing changes on the Hub when nothing
 * changed.  Hence serde_json's exact escaping and the reference sort.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"

#define CHUNK (4u << 20)                    /* bytes pulled from fill per call */

int mfs_st_tensor_nbytes(enum mfs_st_dtype dtype, int ndim, const uint64_t *shape,
                         uint64_t *nbytes, struct mfs_err *err)
{
    uint64_t nelem = 1;
    uint64_t bits = mfs_st_dtype_bits(dtype);
    int k;

    *nbytes = 0;
    if (bits == 0 || ndim < 0 || ndim > MFS_ST_MAX_DIMS)
        return mfs_err_set(err, -EINVAL, "invalid tensor: bad dtype or rank");
    for (k = 0; k < ndim; k++) {
        if (shape[k] && nelem > UINT64_MAX / shape[k])
            return mfs_err_set(err, -EINVAL, "invalid tensor: shape overflows");
        nelem *= shape[k];
    }
    if (nelem && bits > UINT64_MAX / nelem)
        return mfs_err_set(err, -EINVAL, "invalid tensor: size overflows");
    if ((nelem * bits) % 8)
        return mfs_err_set(err, -EINVAL, "invalid tensor: not a whole number of bytes");
    *nbytes = nelem * bits / 8;
    return 0;
}

/* A JSON string as serde_json writes it: ", \ and control characters
 * escaped (short forms where JSON has them), everything else raw. */
static int put_json_string(struct mfs_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    int rc = mfs_buf_append(b, "\"", 1);

    for (; rc == 0 && *p; p++) {
        char esc[7];

        switch (*p) {
        case '"': rc = mfs_buf_append(b, "\\\"", 2); break;
        case '\\': rc = mfs_buf_append(b, "\\\\", 2); break;
        case '\b': rc = mfs_buf_append(b, "\\b", 2); break;
        case '\f': rc = mfs_buf_append(b, "\\f", 2); break;
        case '\n': rc = mfs_buf_append(b, "\\n", 2); break;
        case '\r': rc = mfs_buf_append(b, "\\r", 2); break;
        case '\t': rc = mfs_buf_append(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 15];
                rc = mfs_buf_append(b, esc, 6);
            } else {
                rc = mfs_buf_append(b, p, 1);
            }
        }
    }
    if (rc == 0)
        rc = mfs_buf_append(b, "\"", 1);
    return rc;
}

struct sort_ctx {
    const struct mfs_st_wtensor *t;
    size_t i;
};

static int cmp_layout(const void *a, const void *b)
{
    const struct sort_ctx *x = a;
    const struct sort_ctx *y = b;

    if (x->t->dtype != y->t->dtype)
        return x->t->dtype > y->t->dtype ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct sort_ctx *)a)->t->name, ((const struct sort_ctx *)b)->t->name);
}

int mfs_st_layout(const struct mfs_st_wtensor *t, size_t n, const char *const *meta_keys,
                  const char *const *meta_values, size_t n_meta, struct mfs_buf *out,
                  size_t *order, uint64_t *begin, uint64_t *file_size, struct mfs_err *err)
{
    struct mfs_buf js = MFS_BUF_INIT;
    struct sort_ctx *sc;
    unsigned char len8[8];
    uint64_t pos = 0;
    size_t i;
    int k;
    int rc = 0;

    sc = calloc(n + 1, sizeof(*sc));
    if (!sc)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        sc[i].t = &t[i];
        sc[i].i = i;
        if (!t[i].name || !strcmp(t[i].name, "__metadata__")) {
            rc = mfs_err_set(err, -EINVAL, "invalid tensor name '%s'",
                             t[i].name ? t[i].name : "(null)");
            goto out_free_sort;
        }
    }
    qsort(sc, n, sizeof(*sc), cmp_name);
    for (i = 1; i < n; i++) {
        if (!strcmp(sc[i - 1].t->name, sc[i].t->name)) {
            rc = mfs_err_set(err, -EINVAL, "duplicate tensor name '%.64s'", sc[i].t->name);
            goto out_free_sort;
        }
    }
    qsort(sc, n, sizeof(*sc), cmp_layout);
    rc = mfs_buf_append(&js, "{", 1);
    if (n_meta > 0) {
        rc = rc ? rc : mfs_buf_puts(&js, "\"__metadata__\":{");
        for (i = 0; rc == 0 && i < n_meta; i++) {
            rc = i ? mfs_buf_append(&js, ",", 1) : 0;
            rc = rc ? rc : put_json_string(&js, meta_keys[i]);
            rc = rc ? rc : mfs_buf_append(&js, ":", 1);
            rc = rc ? rc : put_json_string(&js, meta_values[i]);
        }
        rc = rc ? rc : mfs_buf_append(&js, "}", 1);
    }
    for (i = 0; rc == 0 && i < n; i++) {
        const struct mfs_st_wtensor *w = sc[i].t;
        uint64_t nb;

        rc = mfs_st_tensor_nbytes(w->dtype, w->ndim, w->shape, &nb, err);
        if (rc < 0) {
            mfs_err_wrap(err, rc, "cannot lay out '%.64s'", w->name);
            goto out_release_js;
        }
        if (order)
            order[i] = sc[i].i;
        if (begin)
            begin[sc[i].i] = pos;              /* relative until N is known */
        rc = (i || n_meta) ? mfs_buf_append(&js, ",", 1) : 0;
        rc = rc ? rc : put_json_string(&js, w->name);
        rc = rc ? rc : mfs_buf_printf(&js, ":{\"dtype\":\"%s\",\"shape\":[",
                                      mfs_st_dtype_name(w->dtype));
        for (k = 0; rc == 0 && k < w->ndim; k++)
            rc = mfs_buf_printf(&js, k ? ",%llu" : "%llu", (unsigned long long)w->shape[k]);
        rc = rc ? rc : mfs_buf_printf(&js, "],\"data_offsets\":[%llu,%llu]}",
                                      (unsigned long long)pos, (unsigned long long)(pos + nb));
        pos += nb;
    }
    rc = rc ? rc : mfs_buf_append(&js, "}", 1);
    while (rc == 0 && js.len % 8)
        rc = mfs_buf_append(&js, " ", 1);
    if (rc < 0) {
        rc = mfs_err_set(err, rc, "out of memory");
        goto out_release_js;
    }
    for (k = 0; k < 8; k++)
        len8[k] = (unsigned char)((uint64_t)js.len >> (8 * k));
    rc = mfs_buf_append(out, len8, 8);
    rc = rc ? rc : mfs_buf_append(out, js.data, js.len);
    if (rc < 0) {
        rc = mfs_err_set(err, rc, "out of memory");
        goto out_release_js;
    }
    for (i = 0; begin && i < n; i++)
        begin[i] += 8 + js.len;
    if (file_size)
        *file_size = 8 + js.len + pos;
out_release_js:
    mfs_buf_release(&js);
out_free_sort:
    free(sc);
    return rc;
}

static int write_all(int fd, const void *p, size_t len, struct mfs_err *err)
{
    const char *c = p;

    while (len > 0) {
        ssize_t w = write(fd, c, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return mfs_err_set(err, errno == ENOSPC ? -ENOSPC : -EIO,
                               "cannot write safetensors file: %s", strerror(errno));
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int mfs_st_write_fd(int fd, const struct mfs_st_wtensor *t, size_t n,
                    const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                    mfs_st_fill_fn fill, void *ctx, uint64_t *file_size, struct mfs_err *err)
{
    struct mfs_buf hdr = MFS_BUF_INIT;
    size_t *order;
    char *chunk = NULL;
    uint64_t total = 0;
    size_t i;
    int rc;

    order = calloc(n + 1, sizeof(*order));
    if (!order)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    rc = mfs_st_layout(t, n, meta_keys, meta_values, n_meta, &hdr, order, NULL, &total, err);
    if (rc < 0)
        goto out_free_order;
    rc = write_all(fd, hdr.data, hdr.len, err);
    if (rc < 0)
        goto out_release_hdr;
    for (i = 0; i < n; i++) {
        const struct mfs_st_wtensor *w = &t[order[i]];
        uint64_t nb;
        uint64_t off;

        mfs_st_tensor_nbytes(w->dtype, w->ndim, w->shape, &nb, NULL);
        if (nb > 0 && !chunk) {
            chunk = malloc(CHUNK);
            if (!chunk) {
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
                goto out_release_hdr;
            }
        }
        for (off = 0; off < nb; off += CHUNK) {
            size_t len = nb - off < CHUNK ? (size_t)(nb - off) : CHUNK;

            rc = fill(ctx, order[i], off, chunk, len, err);
            if (rc < 0)
                goto out_free_chunk;
            rc = write_all(fd, chunk, len, err);
            if (rc < 0)
                goto out_free_chunk;
        }
    }
    if (file_size)
        *file_size = total;
out_free_chunk:
    free(chunk);
out_release_hdr:
    mfs_buf_release(&hdr);
out_free_order:
    free(order);
    return rc;
}
