/*
 * tests/compute/test_compute.c - every compute/ op against a plain
 * reference loop in double precision, by normalized MSE under a per-op
 * tolerance (ggml's test-backend-ops; docs/style.md rule 19): the decode
 * matrix-vector kernel for each ISA (scalar, AVX2, AVX-512 as the CPU
 * allows) and each weight dtype (F32, BF16, F16), linear through the
 * backend for decode and prefill shapes with 1 and 2 threads, attention
 * (causal, GQA, sliding window, encoder), norms, RoPE, activations, and
 * the F32 <-> BF16/F16 conversions against data/golden/convert.json.
 * The CUDA backend is not built: its comparison is skipped and says so.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "compute/backend.h"

#define NMSE_LINEAR 1e-10                   /* F32 sums in another order */
#define NMSE_OPS 1e-10

static uint64_t rng_state = 0x1234567;

static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static double nmse(const float *got, const double *want, size_t n)
{
    double num = 0;
    double den = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];

        num += d * d;
        den += want[i] * want[i];
    }
    if (isnan(num))
        return INFINITY;
    return den > 0 ? num / den : num;
}

/* W[rows, cols] in dtype dt; also the exact F32 values the kernel sees. */
static void make_weight(enum mfs_be_dtype dt, int64_t rows, int64_t cols, struct mfs_tensor *w,
                        float *exact)
{
    int64_t i;

    w->dtype = dt;
    w->rows = rows;
    w->cols = cols;
    w->data = malloc((size_t)(rows * cols) * mfs_be_dtype_size(dt));
    for (i = 0; i < rows * cols; i++) {
        float v = frand();

        if (dt == MFS_BE_F32) {
            ((float *)w->data)[i] = v;
            exact[i] = v;
        } else if (dt == MFS_BE_BF16) {
            ((uint16_t *)w->data)[i] = mfs_be_f32_to_bf16(v);
            exact[i] = mfs_be_bf16_to_f32(((uint16_t *)w->data)[i]);
        } else {
            ((uint16_t *)w->data)[i] = mfs_be_f32_to_f16(v);
            exact[i] = mfs_be_f16_to_f32(((uint16_t *)w->data)[i]);
        }
    }
}

static void ref_linear(const float *x, int64_t n, const float *w, int64_t rows, int64_t cols,
                       const float *bias, double *y)
{
    int64_t t;
    int64_t r;
    int64_t c;

    for (t = 0; t < n; t++)
        for (r = 0; r < rows; r++) {
            double s = bias ? bias[r] : 0;

            for (c = 0; c < cols; c++)
                s += (double)x[t * cols + c] * w[r * cols + c];
            y[t * rows + r] = s;
        }
}

static const char *isa_name(enum mfs_cpu_isa isa)
{
    return isa == MFS_CPU_AVX512 ? "avx512" : isa == MFS_CPU_AVX2 ? "avx2" : "scalar";
}

static void check_matvec(void)
{
    static const enum mfs_be_dtype dts[] = { MFS_BE_F32, MFS_BE_BF16, MFS_BE_F16 };
    static const int64_t shapes[][2] = { { 67, 131 }, { 64, 768 }, { 5, 7 } };
    enum mfs_cpu_isa best = mfs_cpu_isa_best();
    int isa;
    size_t d;
    size_t s;

    for (d = 0; d < 3; d++)
        for (s = 0; s < 3; s++) {
            int64_t rows = shapes[s][0];
            int64_t cols = shapes[s][1];
            float *exact = malloc((size_t)(rows * cols) * sizeof(float));
            float *x = malloc((size_t)cols * sizeof(float));
            float *y = malloc((size_t)rows * sizeof(float));
            double *want = malloc((size_t)rows * sizeof(double));
            struct mfs_tensor w;
            int64_t i;

            make_weight(dts[d], rows, cols, &w, exact);
            for (i = 0; i < cols; i++)
                x[i] = frand();
            ref_linear(x, 1, exact, rows, cols, NULL, want);
            for (isa = MFS_CPU_SCALAR; isa <= (int)best; isa++) {
                double e;

                memset(y, 0, (size_t)rows * sizeof(float));
                mfs_cpu_matvec((enum mfs_cpu_isa)isa, &w, x, 0, rows, y);
                e = nmse(y, want, (size_t)rows);
                CHECK(e < NMSE_LINEAR, "matvec %s %s W[%lld, %lld]: nmse %.2g",
                      isa_name((enum mfs_cpu_isa)isa), mfs_be_dtype_name(dts[d]),
                      (long long)rows, (long long)cols, e);
            }
            free(w.data);
            free(exact);
            free(x);
            free(y);
            free(want);
        }
    if (best < MFS_CPU_AVX512)
        printf("# avx512 kernels not checked: this CPU lacks AVX-512\n");
}

static void check_linear(void)
{
    static const enum mfs_be_dtype dts[] = { MFS_BE_F32, MFS_BE_BF16, MFS_BE_F16 };
    static const int64_t ntoks[] = { 1, 3, 7, 33 };
    static const int threads[] = { 1, 2 };
    const int64_t rows = 300;
    const int64_t cols = 257;
    size_t ti;

    for (ti = 0; ti < 2; ti++) {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_be *be = NULL;
        int rc = mfs_be_open("cpu", threads[ti], &be, &err);
        size_t d;
        size_t k;

        CHECK(rc == 0 && be->n_threads == threads[ti], "open cpu with %d threads (%s)",
              threads[ti], err.msg);
        if (rc < 0)
            continue;
        for (d = 0; d < 3; d++)
            for (k = 0; k < 4; k++) {
                int64_t n = ntoks[k];
                float *exact = malloc((size_t)(rows * cols) * sizeof(float));
                float *x = malloc((size_t)(n * cols) * sizeof(float));
                float *bias = malloc((size_t)rows * sizeof(float));
                float *y = malloc((size_t)(n * rows) * sizeof(float));
                double *want = malloc((size_t)(n * rows) * sizeof(double));
                struct mfs_tensor w;
                double e;
                int64_t i;

                make_weight(dts[d], rows, cols, &w, exact);
                for (i = 0; i < n * cols; i++)
                    x[i] = frand();
                for (i = 0; i < rows; i++)
                    bias[i] = frand();
                ref_linear(x, n, exact, rows, cols, bias, want);
                rc = mfs_be_linear(be, x, n, &w, bias, y);
                e = nmse(y, want, (size_t)(n * rows));
                CHECK(rc == 0 && e < NMSE_LINEAR, "linear %s n_tok %lld, %d threads: nmse %.2g",
                      mfs_be_dtype_name(dts[d]), (long long)n, threads[ti], e);
                free(w.data);
                free(exact);
                free(x);
                free(bias);
                free(y);
                free(want);
            }
        mfs_be_close(&be);
        CHECK(be == NULL, "close clears the handle");
    }
}

/* linear_multi gives, bit for bit, what separate linear calls give. */
static void check_linear_multi(struct mfs_be *be)
{
    static const int64_t ntoks[] = { 1, 9 };
    static const enum mfs_be_dtype dts[3] = { MFS_BE_F32, MFS_BE_BF16, MFS_BE_F16 };
    static const int64_t rows[3] = { 200, 64, 64 };
    const int64_t cols = 160;
    struct mfs_tensor w[3];
    float *exact = malloc((size_t)(200 * cols) * sizeof(float));
    float *x = malloc((size_t)(9 * cols) * sizeof(float));
    float *bias[3];
    float *y1[3];
    float *y2[3];
    size_t k;
    int p;
    int i;

    for (p = 0; p < 3; p++) {
        make_weight(dts[p], rows[p], cols, &w[p], exact);
        bias[p] = malloc((size_t)rows[p] * sizeof(float));
        y1[p] = malloc((size_t)(9 * rows[p]) * sizeof(float));
        y2[p] = malloc((size_t)(9 * rows[p]) * sizeof(float));
        for (i = 0; i < rows[p]; i++)
            bias[p][i] = frand();
    }
    for (i = 0; i < 9 * cols; i++)
        x[i] = frand();
    for (k = 0; k < 2; k++) {
        const struct mfs_tensor *wp[3] = { &w[0], &w[1], &w[2] };
        const float *bp[3] = { bias[0], NULL, bias[2] };
        int same = 1;
        int rc = 0;

        for (p = 0; p < 3 && rc == 0; p++)
            rc = mfs_be_linear(be, x, ntoks[k], wp[p], bp[p], y1[p]);
        if (rc == 0)
            rc = mfs_be_linear_multi(be, x, ntoks[k], 3, wp, bp, y2);
        for (p = 0; p < 3 && rc == 0; p++)
            same = same && !memcmp(y1[p], y2[p], (size_t)(ntoks[k] * rows[p]) * sizeof(float));
        CHECK(rc == 0 && same, "linear_multi of 3 matrices (F32, BF16, F16) equals 3 linear "
              "calls bit for bit, n_tok %lld", (long long)ntoks[k]);
        CHECK(mfs_be_linear_multi(be, x, ntoks[k], 5, wp, bp, y2) == -EINVAL &&
              mfs_be_linear_multi(be, x, ntoks[k], 0, wp, bp, y2) == -EINVAL,
              "linear_multi of 0 or 5 matrices: -EINVAL");
    }
    {
        struct mfs_tensor narrow = w[1];
        const struct mfs_tensor *wp[2] = { &w[0], &narrow };

        narrow.cols = 80;
        CHECK(mfs_be_linear_multi(be, x, 1, 2, wp, NULL, y2) == -EINVAL,
              "linear_multi of matrices with different in-widths: -EINVAL");
    }
    for (p = 0; p < 3; p++) {
        free(w[p].data);
        free(bias[p]);
        free(y1[p]);
        free(y2[p]);
    }
    free(exact);
    free(x);
}

static void ref_attention(const float *q, const float *kc, const float *vc,
                          const struct mfs_be_attn *a, double *out)
{
    int hd = a->head_dim;
    int group = a->n_heads / a->n_kv_heads;
    int total = a->pos0 + a->n_tok;
    int h;
    int i;

    for (h = 0; h < a->n_heads; h++)
        for (i = 0; i < a->n_tok; i++) {
            int p = a->pos0 + i;
            double sc[256];
            double mx = -INFINITY;
            double sum = 0;
            int j;
            int d;

            for (j = 0; j < total; j++) {
                int visible = !a->causal || j <= p;

                if (a->window > 0 && !(p - a->window < j))
                    visible = 0;
                sc[j] = -INFINITY;
                if (!visible)
                    continue;
                sc[j] = 0;
                for (d = 0; d < hd; d++)
                    sc[j] += (double)q[(i * a->n_heads + h) * hd + d] *
                             kc[(j * a->n_kv_heads + h / group) * hd + d];
                sc[j] *= a->scale;
                mx = fmax(mx, sc[j]);
            }
            for (j = 0; j < total; j++) {
                sc[j] = sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
                sum += sc[j];
            }
            for (d = 0; d < hd; d++) {
                double o = 0;

                for (j = 0; j < total; j++)
                    o += sc[j] / sum * vc[(j * a->n_kv_heads + h / group) * hd + d];
                out[(i * a->n_heads + h) * hd + d] = o;
            }
        }
}

static void check_attention(struct mfs_be *be)
{
    static const struct mfs_be_attn rows[] = {
        /* n_tok pos0 heads kv hd causal window scale */
        { 1, 0, 4, 4, 8, 1, 0, 0.35f, NULL },
        { 5, 0, 4, 2, 8, 1, 0, 0.35f, NULL },
        { 1, 20, 4, 2, 16, 1, 0, 0.25f, NULL },
        { 21, 0, 4, 2, 16, 1, 8, 0.25f, NULL },
        { 3, 17, 8, 2, 8, 1, 8, 0.35f, NULL },
        { 6, 0, 4, 4, 4, 0, 0, 0.5f, NULL },
        { 64, 0, 12, 12, 64, 1, 0, 0.125f, NULL },
    };
    size_t r;

    for (r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
        const struct mfs_be_attn *a = &rows[r];
        int total = a->pos0 + a->n_tok;
        size_t nq = (size_t)a->n_tok * (size_t)a->n_heads * (size_t)a->head_dim;
        size_t nk = (size_t)total * (size_t)a->n_kv_heads * (size_t)a->head_dim;
        float *q = malloc(nq * sizeof(float));
        float *kc = malloc(nk * sizeof(float));
        float *vc = malloc(nk * sizeof(float));
        float *out = malloc(nq * sizeof(float));
        double *want = malloc(nq * sizeof(double));
        double e;
        size_t i;
        int rc;

        for (i = 0; i < nq; i++)
            q[i] = frand() * 3;
        for (i = 0; i < nk; i++) {
            kc[i] = frand();
            vc[i] = frand();
        }
        ref_attention(q, kc, vc, a, want);
        rc = mfs_be_attention(be, q, kc, vc, a, out);
        e = nmse(out, want, nq);
        CHECK(rc == 0 && e < NMSE_OPS, "attention n_tok %d pos0 %d heads %d/%d hd %d causal %d "
              "window %d: nmse %.2g", a->n_tok, a->pos0, a->n_heads, a->n_kv_heads, a->head_dim,
              a->causal, a->window, e);
        free(q);
        free(kc);
        free(vc);
        free(out);
        free(want);
    }
    {
        struct mfs_be_attn bad = { 1, 0, 4, 3, 8, 1, 0, 1.0f, NULL };
        float z[64] = { 0 };

        CHECK(mfs_be_attention(be, z, z, z, &bad, z) == -EINVAL,
              "attention with heads not a multiple of kv heads: -EINVAL");
    }
}

static void check_small_ops(struct mfs_be *be)
{
    enum { N = 3, D = 40, H = 5, HD = 8 };
    float x[N * D];
    float w[D];
    float b[D];
    float y[N * D];
    double want[N * D];
    float inv[HD / 2];
    int i;
    int t;
    int k;

    for (i = 0; i < N * D; i++)
        x[i] = frand() * 4;
    for (i = 0; i < D; i++) {
        w[i] = frand();
        b[i] = frand();
    }
    for (t = 0; t < N; t++) {
        double ss = 0;
        double mean = 0;
        double var = 0;

        for (k = 0; k < D; k++)
            ss += (double)x[t * D + k] * x[t * D + k];
        for (k = 0; k < D; k++)
            want[t * D + k] = x[t * D + k] / sqrt(ss / D + 1e-5) * w[k];
        (void)mean;
        (void)var;
    }
    CHECK(mfs_be_rmsnorm(be, x, w, N, D, 1e-5f, y) == 0 && nmse(y, want, N * D) < NMSE_OPS,
          "rmsnorm: nmse %.2g", nmse(y, want, N * D));
    for (t = 0; t < N; t++) {
        double mean = 0;
        double var = 0;

        for (k = 0; k < D; k++)
            mean += x[t * D + k];
        mean /= D;
        for (k = 0; k < D; k++)
            var += (x[t * D + k] - mean) * (x[t * D + k] - mean);
        var /= D;
        for (k = 0; k < D; k++)
            want[t * D + k] = (x[t * D + k] - mean) / sqrt(var + 1e-12) * w[k] + b[k];
    }
    CHECK(mfs_be_layernorm(be, x, w, b, N, D, 1e-12f, y) == 0 && nmse(y, want, N * D) < NMSE_OPS,
          "layernorm: nmse %.2g", nmse(y, want, N * D));

    /* RoPE on x viewed as [N, H, HD] at positions 7.. */
    for (i = 0; i < HD / 2; i++)
        inv[i] = 1.0f / powf(10000.0f, (float)(2 * i) / HD);
    for (t = 0; t < N; t++)
        for (i = 0; i < H; i++)
            for (k = 0; k < HD / 2; k++) {
                const float *v = x + (t * H + i) * HD;
                double ang = (double)(7 + t) * inv[k];

                want[(t * H + i) * HD + k] = v[k] * cos(ang) - v[k + HD / 2] * sin(ang);
                want[(t * H + i) * HD + k + HD / 2] = v[k + HD / 2] * cos(ang) + v[k] * sin(ang);
            }
    memcpy(y, x, sizeof(x));
    CHECK(mfs_be_rope(be, y, N, H, HD, 7, inv) == 0 && nmse(y, want, N * H * HD) < NMSE_OPS,
          "rope rotate-half: nmse %.2g", nmse(y, want, N * H * HD));

    {
        static const enum mfs_be_act acts[] = { MFS_BE_ACT_SILU, MFS_BE_ACT_GELU,
                                                MFS_BE_ACT_GELU_TANH, MFS_BE_ACT_TANH,
                                                MFS_BE_ACT_RELU };
        static const char *const names[] = { "silu", "gelu", "gelu_new", "tanh", "relu" };
        size_t a;

        for (a = 0; a < 5; a++) {
            for (i = 0; i < N * D; i++) {
                double v = x[i];

                switch (acts[a]) {
                case MFS_BE_ACT_SILU:
                    want[i] = v / (1 + exp(-v));
                    break;
                case MFS_BE_ACT_GELU:
                    want[i] = 0.5 * v * (1 + erf(v / sqrt(2.0)));
                    break;
                case MFS_BE_ACT_GELU_TANH:
                    want[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                    break;
                case MFS_BE_ACT_TANH:
                    want[i] = tanh(v);
                    break;
                default:
                    want[i] = v > 0 ? v : 0;
                    break;
                }
            }
            memcpy(y, x, sizeof(x));
            CHECK(mfs_be_act(be, acts[a], y, N * D) == 0 && nmse(y, want, N * D) < NMSE_OPS,
                  "act %s: nmse %.2g", names[a], nmse(y, want, N * D));
        }
    }
    for (t = 0; t < N; t++) {
        double mx = -INFINITY;
        double s = 0;

        for (k = 0; k < D; k++)
            mx = fmax(mx, x[t * D + k]);
        for (k = 0; k < D; k++)
            s += exp(x[t * D + k] - mx);
        for (k = 0; k < D; k++)
            want[t * D + k] = exp(x[t * D + k] - mx) / s;
    }
    memcpy(y, x, sizeof(x));
    CHECK(mfs_be_softmax(be, y, N, D) == 0 && nmse(y, want, N * D) < NMSE_OPS,
          "softmax: nmse %.2g", nmse(y, want, N * D));
    for (i = 0; i < N * D; i++)
        want[i] = (double)x[i] + w[i % D];
    {
        float w3[N * D];

        for (i = 0; i < N * D; i++)
            w3[i] = w[i % D];
        CHECK(mfs_be_add(be, y, x, w3, N * D) == 0 && nmse(y, want, N * D) < 1e-14,
              "add");
        for (i = 0; i < N * D; i++)
            want[i] = (double)x[i] * w3[i];
        CHECK(mfs_be_mul(be, y, x, w3, N * D) == 0 && nmse(y, want, N * D) < 1e-14,
              "mul");
    }
    {
        struct mfs_tensor tab;
        float exact[10 * D];
        int32_t ids[3] = { 9, 0, 4 };
        int32_t badid = 10;

        make_weight(MFS_BE_BF16, 10, D, &tab, exact);
        for (t = 0; t < 3; t++)
            for (k = 0; k < D; k++)
                want[t * D + k] = exact[ids[t] * D + k];
        CHECK(mfs_be_embedding(be, &tab, ids, 3, y) == 0 && nmse(y, want, 3 * D) == 0,
              "embedding lookup of BF16 rows");
        CHECK(mfs_be_embedding(be, &tab, &badid, 1, y) == -EINVAL,
              "embedding id past the table: -EINVAL");
        free(tab.data);
    }
}

static unsigned long hexval(const cJSON *o, const char *k)
{
    return strtoul(cJSON_GetObjectItem(o, k)->valuestring, NULL, 16);
}

static void check_conversions(void)
{
    char path[1024];
    FILE *f;
    char *text = NULL;
    long n = 0;
    cJSON *j = NULL;
    const cJSON *sv;
    const cJSON *e;
    int bf_ok = 1;
    int f16_ok = 1;
    int widen_ok = 1;
    int count = 0;

    snprintf(path, sizeof(path), "%s/golden/convert.json", check_data_dir());
    f = fopen(path, "rb");
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
        text = calloc((size_t)n + 1, 1);
        if (text && fread(text, 1, (size_t)n, f) == (size_t)n)
            j = cJSON_Parse(text);
    }
    if (f)
        fclose(f);
    free(text);
    sv = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dtype_conversion"), "special_values");
    CHECK(cJSON_IsArray(sv), "convert.json special_values");
    cJSON_ArrayForEach(e, sv) {
        uint32_t bits = (uint32_t)hexval(e, "f32_bits");
        uint16_t wbf = (uint16_t)hexval(e, "bf16_bits");
        uint16_t wf16 = (uint16_t)hexval(e, "f16_bits");
        float v;
        uint16_t gbf;
        uint16_t gf16;

        memcpy(&v, &bits, 4);
        gbf = mfs_be_f32_to_bf16(v);
        gf16 = mfs_be_f32_to_f16(v);
        count++;
        if (isnan(v)) {
            /* README: only "is a NaN" is required */
            bf_ok = bf_ok && isnan(mfs_be_bf16_to_f32(gbf));
            f16_ok = f16_ok && isnan(mfs_be_f16_to_f32(gf16));
            continue;
        }
        if (gbf != wbf || gf16 != wf16)
            printf("# 0x%08x: bf16 0x%04x want 0x%04x, f16 0x%04x want 0x%04x\n", bits, gbf, wbf,
                   gf16, wf16);
        bf_ok = bf_ok && gbf == wbf;
        f16_ok = f16_ok && gf16 == wf16;
        {
            float back = mfs_be_bf16_to_f32(gbf);
            uint32_t bb;

            memcpy(&bb, &back, 4);
            widen_ok = widen_ok && bb == (uint32_t)hexval(e, "bf16_widened_back_f32_bits");
        }
    }
    CHECK(count > 10 && bf_ok, "f32 -> bf16 round-to-nearest-even on %d special values", count);
    CHECK(count > 10 && f16_ok, "f32 -> f16 round-to-nearest-even (subnormals, overflow) on %d "
          "special values", count);
    CHECK(widen_ok, "bf16 -> f32 widening is exact");
    {
        int ok = 1;
        uint32_t h;

        /* every finite f16 widens and rounds back to itself */
        for (h = 0; h < 0x10000; h++) {
            float v = mfs_be_f16_to_f32((uint16_t)h);

            if ((h & 0x7c00) == 0x7c00)
                continue;
            ok = ok && mfs_be_f32_to_f16(v) == (uint16_t)h;
        }
        CHECK(ok, "f16 -> f32 -> f16 round trip of all 63488 finite values");
    }
    cJSON_Delete(j);
}

/* The loader's Conv1D transpose: every ISA moves exactly the same bits
 * as the definition dst[r][c] = src[c][r], on whole 16x16 blocks, ragged
 * edges and strides wider than the block (a column range of a tensor). */
static void check_transpose(void)
{
    static const int64_t shapes[][4] = {
        /* nr, nc, src_stride, dst_stride */
        { 16, 16, 16, 16 },   { 1, 1, 1, 1 },       { 37, 53, 40, 60 },
        { 64, 48, 768, 48 },  { 17, 15, 17, 15 },   { 0, 5, 1, 5 },
        { 96, 33, 2304, 777 }, { 48, 64, 3072, 768 },
    };
    enum mfs_cpu_isa best = mfs_cpu_isa_best();
    int isa;
    size_t k;

    for (k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        int64_t nr = shapes[k][0];
        int64_t nc = shapes[k][1];
        int64_t ss = shapes[k][2];
        int64_t ds = shapes[k][3];
        float *src = malloc((size_t)(nc * ss + 1) * sizeof(float));
        /* 64-byte aligned, so strides of 16 take the streaming-store path */
        float *dst = aligned_alloc(64, ((size_t)(nr * ds + 1) * sizeof(float) + 63) / 64 * 64);
        int64_t i;

        for (i = 0; i < nc * ss; i++)
            src[i] = frand();
        for (isa = MFS_CPU_SCALAR; isa <= (int)best; isa++) {
            bool same = true;
            int64_t r;
            int64_t c;

            for (i = 0; i < nr * ds; i++)
                dst[i] = -1.0f;
            mfs_cpu_transpose_f32((enum mfs_cpu_isa)isa, src, ss, dst, ds, nr, nc);
            for (r = 0; r < nr; r++)
                for (c = 0; c < ds; c++) {
                    float want = c < nc ? src[c * ss + r] : -1.0f;

                    if (memcmp(&dst[r * ds + c], &want, sizeof(want)))
                        same = false;
                }
            CHECK(same, "transpose %s [%lld x %lld] strides %lld/%lld: exact, nothing else "
                  "written", isa_name((enum mfs_cpu_isa)isa), (long long)nr, (long long)nc,
                  (long long)ss, (long long)ds);
        }
        free(src);
        free(dst);
    }
}

int main(void)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_be *be = NULL;
    int rc;

    check_conversions();
    check_matvec();
    check_transpose();
    check_linear();
    rc = mfs_be_open("cpu", 2, &be, &err);
    CHECK(rc == 0, "open cpu backend (%s)", err.msg);
    if (rc == 0) {
        check_attention(be);
        check_small_ops(be);
        check_linear_multi(be);
        mfs_be_close(&be);
    }
    rc = mfs_be_open("cuda:0", 0, &be, &err);
#ifdef MFS_WITH_CUDA
    CHECK(rc == 0 || rc == -ENODEV, "cuda:0 opens or says no GPU (%s)", err.msg);
    mfs_be_close(&be);
#else
    CHECK(rc == -ENODEV && strstr(err.msg, "CUDA") && be == NULL,
          "cuda:0 without the CUDA backend: -ENODEV \"%s\"", err.msg);
    printf("ok - CPU vs CUDA comparison skipped: CUDA backend not built (no nvcc)\n");
#endif
    rc = mfs_be_open("tpu", 0, &be, &err);
    CHECK(rc == -EINVAL, "unknown device 'tpu': -EINVAL \"%s\"", err.msg);
    rc = mfs_be_open("cuda:x", 0, &be, &err);
    CHECK(rc == -EINVAL, "device 'cuda:x': -EINVAL \"%s\"", err.msg);
    return check_done();
}
