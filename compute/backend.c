/*
 * compute/backend.c - backend selection ("cpu", "cuda:N"), the mfs_be_*
 * dispatchers over the ops table, and dtype conversions shared by every
 * backend and by model/ at load time.
 */
#include "compute/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t mfs_be_dtype_size(enum mfs_be_dtype dtype)
{
    return dtype == MFS_BE_F32 ? 4 : 2;
}

const char *mfs_be_dtype_name(enum mfs_be_dtype dtype)
{
    switch (dtype) {
    case MFS_BE_F32:
        return "F32";
    case MFS_BE_F16:
        return "F16";
    case MFS_BE_BF16:
        return "BF16";
    }
    return "?";
}

uint16_t mfs_be_f32_to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof(u));
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);    /* keep it a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1);             /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

/* Fabian Giesen's float_to_half_fast3_rtne: exact round-to-nearest-even,
 * subnormals through a magic add (relies on the FPU's RNE mode). */
uint16_t mfs_be_f32_to_f16(float f)
{
    const uint32_t f32_inf = 255u << 23;
    const uint32_t f16_max = (127u + 16u) << 23;
    const uint32_t magic_u = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t u;
    uint32_t sign;
    uint16_t o;

    memcpy(&u, &f, sizeof(u));
    sign = u & 0x80000000u;
    u ^= sign;
    if (u >= f16_max) {
        o = u > f32_inf ? 0x7e00 : 0x7c00;
    } else if (u < (113u << 23)) {
        float v;
        float magic;

        memcpy(&v, &u, sizeof(v));
        memcpy(&magic, &magic_u, sizeof(magic));
        v += magic;
        memcpy(&u, &v, sizeof(u));
        o = (uint16_t)(u - magic_u);
    } else {
        uint32_t mant_odd = (u >> 13) & 1;

        u += (uint32_t)((15 - 127) * (1 << 23)) + 0xfffu;
        u += mant_odd;
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

float mfs_be_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

float mfs_be_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t u;
    float f;

    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (mant << 13);
    } else if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        f = (float)mant * 5.9604644775390625e-08f;
        return sign ? -f : f;
    } else {
        u = sign | ((exp + 112) << 23) | (mant << 13);
    }
    memcpy(&f, &u, sizeof(f));
    return f;
}

int mfs_be_open(const char *spec, int n_threads, struct mfs_be **bep, struct mfs_err *err)
{
    const struct mfs_be_ops *ops = NULL;
    struct mfs_be *be;
    int device = 0;
    int rc;

    *bep = NULL;
    if (!spec || !strcmp(spec, "cpu")) {
        ops = &mfs_cpu_ops;
    } else if (!strncmp(spec, "cuda", 4) && (spec[4] == '\0' || spec[4] == ':')) {
        if (spec[4] == ':') {
            char *end;
            unsigned long v = strtoul(spec + 5, &end, 10);

            if (end == spec + 5 || *end || v > 64)
                return mfs_err_set(err, -EINVAL, "invalid device '%s': expected cuda:N", spec);
            device = (int)v;
        }
#ifdef MFS_WITH_CUDA
        ops = &mfs_cuda_ops;
#else
        return mfs_err_set(err, -ENODEV, "cannot use device '%s': CUDA backend not built "
                           "(no nvcc at build time)", spec);
#endif
    } else {
        return mfs_err_set(err, -EINVAL, "unknown device '%s': expected cpu or cuda:N", spec);
    }
    be = calloc(1, sizeof(*be));
    if (!be)
        return mfs_err_set(err, -ENOMEM, "cannot open backend '%s': out of memory", spec);
    be->ops = ops;
    be->device = device;
    rc = ops->open(be, device, n_threads, err);
    if (rc < 0)
        goto out_free_be;
    *bep = be;
    return 0;

out_free_be:
    free(be);
    return rc;
}

void mfs_be_close(struct mfs_be **bep)
{
    if (!bep || !*bep)
        return;
    (*bep)->ops->close(*bep);
    free(*bep);
    *bep = NULL;
}

int mfs_be_alloc(struct mfs_be *be, size_t nbytes, void **dptr, struct mfs_err *err)
{
    int rc = be->ops->alloc(be, nbytes, dptr);

    if (rc < 0)
        return mfs_err_set(err, rc, "cannot allocate %zu bytes on '%s'", nbytes, be->ops->name);
    return 0;
}

void mfs_be_free(struct mfs_be *be, void *dptr)
{
    if (be && dptr)
        be->ops->free(be, dptr);
}

int mfs_be_upload(struct mfs_be *be, void *dst, const void *src, size_t nbytes)
{
    return be->ops->upload(be, dst, src, nbytes);
}

int mfs_be_download(struct mfs_be *be, void *dst, const void *src, size_t nbytes)
{
    return be->ops->download(be, dst, src, nbytes);
}

int mfs_be_copy(struct mfs_be *be, void *dst, const void *src, size_t nbytes)
{
    return be->ops->copy(be, dst, src, nbytes);
}

int mfs_be_linear(struct mfs_be *be, const float *x, int64_t n_tok, const struct mfs_tensor *w,
                  const float *bias, float *y)
{
    return be->ops->linear(be, x, n_tok, w, bias, y);
}

int mfs_be_linear_multi(struct mfs_be *be, const float *x, int64_t n_tok, int n,
                        const struct mfs_tensor *const *w, const float *const *bias,
                        float *const *y)
{
    int rc = 0;
    int p;

    if (be->ops->linear_multi)
        return be->ops->linear_multi(be, x, n_tok, n, w, bias, y);
    for (p = 0; p < n && rc == 0; p++)
        rc = be->ops->linear(be, x, n_tok, w[p], bias ? bias[p] : NULL, y[p]);
    return rc;
}

int mfs_be_embedding(struct mfs_be *be, const struct mfs_tensor *table, const int32_t *ids,
                     int64_t n, float *y)
{
    return be->ops->embedding(be, table, ids, n, y);
}

int mfs_be_rmsnorm(struct mfs_be *be, const float *x, const float *w, int64_t n, int64_t d,
                   float eps, float *y)
{
    return be->ops->rmsnorm(be, x, w, n, d, eps, y);
}

int mfs_be_layernorm(struct mfs_be *be, const float *x, const float *w, const float *b,
                     int64_t n, int64_t d, float eps, float *y)
{
    return be->ops->layernorm(be, x, w, b, n, d, eps, y);
}

int mfs_be_rope(struct mfs_be *be, float *x, int64_t n_tok, int n_heads, int head_dim,
                int64_t pos0, const float *inv_freq)
{
    return be->ops->rope(be, x, n_tok, n_heads, head_dim, pos0, inv_freq);
}

int mfs_be_attention(struct mfs_be *be, const float *q, const float *kc, const float *vc,
                     const struct mfs_be_attn *a, float *out)
{
    return be->ops->attention(be, q, kc, vc, a, out);
}

int mfs_be_softmax(struct mfs_be *be, float *x, int64_t rows, int64_t cols)
{
    return be->ops->softmax(be, x, rows, cols);
}

int mfs_be_act(struct mfs_be *be, enum mfs_be_act act, float *x, int64_t n)
{
    return be->ops->act(be, act, x, n);
}

int mfs_be_add(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n)
{
    return be->ops->add(be, y, a, b, n);
}

int mfs_be_mul(struct mfs_be *be, float *y, const float *a, const float *b, int64_t n)
{
    return be->ops->mul(be, y, a, b, n);
}

int mfs_be_sync(struct mfs_be *be)
{
    return be->ops->sync ? be->ops->sync(be) : 0;
}
