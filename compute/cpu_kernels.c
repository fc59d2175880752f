/*
 * compute/cpu_kernels.c - the decode matrix-vector kernel y = W x for
 * W[rows, cols] in F32, BF16 or F16, read in place (no conversion pass):
 * scalar, AVX2+FMA+F16C and AVX-512 versions, picked at run time with
 * __builtin_cpu_supports.  Decode is memory-bound, so each row is one
 * streaming dot product with several accumulators; the x vector stays in
 * L1.  The SIMD functions carry __attribute__((target)) so the rest of
 * the build needs no -mavx flags and runs on any x86-64.
 */
#include "compute/backend.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define MFS_CPU_X86 1
#endif

static float dot_f32_scalar(const float *w, const float *x, int64_t n)
{
    float acc[4] = { 0, 0, 0, 0 };
    int64_t i = 0;

    for (; i + 4 <= n; i += 4) {
        acc[0] += w[i] * x[i];
        acc[1] += w[i + 1] * x[i + 1];
        acc[2] += w[i + 2] * x[i + 2];
        acc[3] += w[i + 3] * x[i + 3];
    }
    for (; i < n; i++)
        acc[0] += w[i] * x[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

static float dot_bf16_scalar(const uint16_t *w, const float *x, int64_t n)
{
    float acc = 0;
    int64_t i;

    for (i = 0; i < n; i++)
        acc += mfs_be_bf16_to_f32(w[i]) * x[i];
    return acc;
}

static float dot_f16_scalar(const uint16_t *w, const float *x, int64_t n)
{
    float acc = 0;
    int64_t i;

    for (i = 0; i < n; i++)
        acc += mfs_be_f16_to_f32(w[i]) * x[i];
    return acc;
}

#ifdef MFS_CPU_X86
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

AVX2_TARGET static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);

    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

AVX2_TARGET static __m256 load_bf16_avx2(const uint16_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);

    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2_TARGET static __m256 load_f16_avx2(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AVX2_TARGET static float dot_f32_avx2(const float *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    int64_t i = 0;
    float s;

    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        s += w[i] * x[i];
    return s;
}

AVX2_TARGET static float dot_bf16_avx2(const uint16_t *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    int64_t i = 0;
    float s;

    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16_avx2(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16_avx2(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_bf16_avx2(w + i), _mm256_loadu_ps(x + i), a0);
    s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += mfs_be_bf16_to_f32(w[i]) * x[i];
    return s;
}

AVX2_TARGET static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    int64_t i = 0;
    float s;

    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_f16_avx2(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16_avx2(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_f16_avx2(w + i), _mm256_loadu_ps(x + i), a0);
    s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += mfs_be_f16_to_f32(w[i]) * x[i];
    return s;
}

AVX512_TARGET static __m512 load_bf16_avx512(const uint16_t *p)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)p);

    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512_TARGET static __m512 load_f16_avx512(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

AVX512_TARGET static float dot_f32_avx512(const float *w, const float *x, int64_t n)
{
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps();
    __m512 a3 = _mm512_setzero_ps();
    int64_t i = 0;
    float s;

    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);

        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, x + i), a1);
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    return s;
}

AVX512_TARGET static float dot_bf16_avx512(const uint16_t *w, const float *x, int64_t n)
{
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    int64_t i = 0;
    float s;

    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(load_bf16_avx512(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_bf16_avx512(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_bf16_avx512(w + i), _mm512_loadu_ps(x + i), a0);
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++)
        s += mfs_be_bf16_to_f32(w[i]) * x[i];
    return s;
}

AVX512_TARGET static float dot_f16_avx512(const uint16_t *w, const float *x, int64_t n)
{
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    int64_t i = 0;
    float s;

    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(load_f16_avx512(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_f16_avx512(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_f16_avx512(w + i), _mm512_loadu_ps(x + i), a0);
    s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++)
        s += mfs_be_f16_to_f32(w[i]) * x[i];
    return s;
}
#endif

enum mfs_cpu_isa mfs_cpu_isa_best(void)
{
#ifdef MFS_CPU_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return MFS_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return MFS_CPU_AVX2;
#endif
    return MFS_CPU_SCALAR;
}

void mfs_cpu_matvec(enum mfs_cpu_isa isa, const struct mfs_tensor *w, const float *x,
                    int64_t r0, int64_t r1, float *y)
{
    int64_t n = w->cols;
    int64_t r;

    switch (w->dtype) {
    case MFS_BE_F32: {
        const float *base = w->data;
        float (*dot)(const float *, const float *, int64_t) = dot_f32_scalar;

#ifdef MFS_CPU_X86
        if (isa == MFS_CPU_AVX512)
            dot = dot_f32_avx512;
        else if (isa == MFS_CPU_AVX2)
            dot = dot_f32_avx2;
#endif
        for (r = r0; r < r1; r++)
            y[r] = dot(base + r * n, x, n);
        break;
    }
    case MFS_BE_BF16:
    case MFS_BE_F16: {
        const uint16_t *base = w->data;
        int bf = w->dtype == MFS_BE_BF16;
        float (*dot)(const uint16_t *, const float *, int64_t) =
            bf ? dot_bf16_scalar : dot_f16_scalar;

#ifdef MFS_CPU_X86
        if (isa == MFS_CPU_AVX512)
            dot = bf ? dot_bf16_avx512 : dot_f16_avx512;
        else if (isa == MFS_CPU_AVX2)
            dot = bf ? dot_bf16_avx2 : dot_f16_avx2;
#endif
        for (r = r0; r < r1; r++)
            y[r] = dot(base + r * n, x, n);
        break;
    }
    }
}

static void transpose_f32_scalar(const float *src, int64_t ss, float *dst, int64_t ds,
                                 int64_t nr, int64_t nc)
{
    int64_t r;
    int64_t c;

    for (c = 0; c < nc; c++)
        for (r = 0; r < nr; r++)
            dst[r * ds + c] = src[c * ss + r];
}

#ifdef MFS_CPU_X86
/* Store one 64-byte line of a transpose: streaming when aligned (nt), as
 * each output line is written once and not read again during the load,
 * so filling it through the cache would first read it from DRAM. */
AVX512_TARGET static inline void store_line(float *p, __m512 v, bool nt)
{
    if (nt)
        _mm512_stream_ps(p, v);
    else
        _mm512_storeu_ps(p, v);
}

/* One 16x16 block: dst row j, 16 floats = src column j of 16 rows.  Four
 * rounds of shuffles: pairs of rows, 4x4 blocks within each 128-bit lane,
 * then lanes across registers (u[4g+m] lane L holds column 4L+m of rows
 * 4g..4g+3). */
AVX512_TARGET static void transpose16_avx512(const float *src, int64_t ss, float *dst,
                                             int64_t ds, bool nt)
{
    __m512 a[16];
    __m512 t[16];
    __m512 u[16];
    int k;
    int m;

    for (k = 0; k < 16; k++)
        a[k] = _mm512_loadu_ps(src + k * ss);
    for (k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]);
    }
    for (k = 0; k < 4; k++) {
        u[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        u[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
        u[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        u[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (m = 0; m < 4; m++) {
        __m512 p = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
        __m512 q = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        __m512 p2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
        __m512 q2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);

        store_line(dst + m * ds, _mm512_shuffle_f32x4(p, p2, 0x88), nt);
        store_line(dst + (4 + m) * ds, _mm512_shuffle_f32x4(p, p2, 0xDD), nt);
        store_line(dst + (8 + m) * ds, _mm512_shuffle_f32x4(q, q2, 0x88), nt);
        store_line(dst + (12 + m) * ds, _mm512_shuffle_f32x4(q, q2, 0xDD), nt);
    }
}

/* Whole 16x16 blocks with AVX-512, edges scalar.  Column blocks outer:
 * the 16 source rows of a block are read front to back as 16 streams,
 * and the output lines go out with streaming stores when every one is
 * 64-byte aligned (3x faster on a 9 MB Conv1D weight). */
AVX512_TARGET static void transpose_f32_avx512(const float *src, int64_t ss, float *dst,
                                               int64_t ds, int64_t nr, int64_t nc)
{
    bool nt = ((uintptr_t)dst % 64) == 0 && ds % 16 == 0;
    int64_t r;
    int64_t c;

    for (c = 0; c + 16 <= nc; c += 16) {
        for (r = 0; r + 16 <= nr; r += 16)
            transpose16_avx512(src + c * ss + r, ss, dst + r * ds + c, ds, nt);
        if (r < nr)
            transpose_f32_scalar(src + c * ss + r, ss, dst + r * ds + c, ds, nr - r, 16);
    }
    if (c < nc)
        transpose_f32_scalar(src + c * ss, ss, dst + c, ds, nr, nc - c);
    _mm_sfence();                           /* streaming stores are visible before we return */
}
#endif

void mfs_cpu_transpose_f32(enum mfs_cpu_isa isa, const float *src, int64_t src_stride,
                           float *dst, int64_t dst_stride, int64_t nr, int64_t nc)
{
#ifdef MFS_CPU_X86
    if (isa == MFS_CPU_AVX512) {
        transpose_f32_avx512(src, src_stride, dst, dst_stride, nr, nc);
        return;
    }
#endif
    transpose_f32_scalar(src, src_stride, dst, dst_stride, nr, nc);
}
