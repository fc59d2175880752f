/*
 * tests/bench/bench_infer.c - CPU inference speed (make bench).
 *
 * Synthetic GPT-2-124M-shaped (n_embd 768, 12 layers, 12 heads, vocab
 * 50257, n_positions 1024) and ~100M-parameter Llama-shaped checkpoints
 * are written with `modelfs synth` under $MFS_TMP, loaded through the
 * normal streaming loader, and timed: prefill tokens/s (one forward of
 * 128 tokens) and decode tokens/s (48 single-token steps with the KV
 * cache after a 16-token prompt), best of 3, with MFS_BENCH_THREADS
 * (default 2) threads.  The baseline is a
 * naive single-threaded C loop (two nested loops per matrix-vector
 * product, no SIMD intrinsics, no BLAS, no threads) over the same weights:
 * it does only the model's matrix products, so it is an upper bound for a
 * naive implementation.  Also printed: the linked OpenBLAS's sgemm
 * GFLOP/s and core name (Debian's OpenBLAS 0.3.21 does not know Sapphire
 * Rapids and falls back to its 'Prescott' SSE3 kernels, 4x slower; when
 * OPENBLAS_CORETYPE is unset on an AVX-512 CPU the bench re-executes
 * itself with OPENBLAS_CORETYPE=SkylakeX, which prefill uses; decode never
 * calls BLAS), and the peak RSS after loading against the loader's bound
 * (weights + largest tensor + 64 MiB).
 *
 * Output lines: "name: ours X, baseline Y, ratio R (target T)".
 */
#include <cblas.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../model/test_infer_io.h"
#include "model/model_int.h"

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char gpt2_cfg[] =
    "{\"architectures\":[\"GPT2LMHeadModel\"],\"model_type\":\"gpt2\",\"n_embd\":768,"
    "\"n_layer\":12,\"n_head\":12,\"vocab_size\":50257,\"n_positions\":1024,"
    "\"activation_function\":\"gelu_new\",\"layer_norm_epsilon\":1e-5,"
    "\"initializer_range\":0.02,\"torch_dtype\":\"float32\"}";

static const char llama_cfg[] =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":768,"
    "\"intermediate_size\":2048,\"num_hidden_layers\":12,\"num_attention_heads\":12,"
    "\"num_key_value_heads\":4,\"vocab_size\":32000,\"max_position_embeddings\":2048,"
    "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"tie_word_embeddings\":true,"
    "\"hidden_act\":\"silu\",\"initializer_range\":0.02,\"torch_dtype\":\"float32\"}";

/* Naive y = W x, one thread, plain loops; W as loaded (F32/BF16/F16). */
static void naive_matvec(const struct mfs_tensor *w, const float *x, float *y)
{
    int64_t r;
    int64_t c;

    for (r = 0; r < w->rows; r++) {
        float s = 0;

        if (w->dtype == MFS_BE_F32) {
            const float *row = (const float *)w->data + r * w->cols;

            for (c = 0; c < w->cols; c++)
                s += row[c] * x[c];
        } else if (w->dtype == MFS_BE_BF16) {
            const uint16_t *row = (const uint16_t *)w->data + r * w->cols;

            for (c = 0; c < w->cols; c++) {
                uint32_t u = (uint32_t)row[c] << 16;
                float f;

                memcpy(&f, &u, sizeof(f));
                s += f * x[c];
            }
        } else {
            const uint16_t *row = (const uint16_t *)w->data + r * w->cols;

            for (c = 0; c < w->cols; c++)
                s += mfs_be_f16_to_f32(row[c]) * x[c];
        }
        y[r] = s;
    }
}

/* One token's matrix products of the model, naive; returns seconds. */
static double naive_token(const struct mfs_model *m, float *x, float *y)
{
    double t0 = now_s();
    int64_t l;

    for (l = 0; l < m->cfg.n_layers; l++) {
        const struct mfs_layer *L = &m->layers[l];

        naive_matvec(&L->wq, x, y);
        naive_matvec(&L->wk, x, y);
        naive_matvec(&L->wv, x, y);
        naive_matvec(&L->wo, x, y);
        naive_matvec(&L->w_up, x, y);
        if (L->w_gate.data)
            naive_matvec(&L->w_gate, x, y);
        naive_matvec(&L->w_down, y, x);
    }
    naive_matvec(&m->lm_head, x, y);
    return now_s() - t0;
}

static int synth(const char *name, const char *cfg, const char *dtype, char *dir, size_t dsize)
{
    const char *tmp = getenv("MFS_TMP");
    const char *bin = getenv("MFS_BIN");
    char cfgpath[1024];
    char cmd[4096];
    FILE *f;

    if (!tmp || !bin) {
        fprintf(stderr, "bench_infer: needs MFS_TMP and MFS_BIN (run through make bench)\n");
        return -1;
    }
    snprintf(cfgpath, sizeof(cfgpath), "%s/%s.config.json", tmp, name);
    snprintf(dir, dsize, "%s/%s-%s", tmp, name, dtype);
    f = fopen(cfgpath, "w");
    if (!f)
        return -1;
    fputs(cfg, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s' synth --config '%s' --out '%s' --dtype %s >/dev/null", bin,
             cfgpath, dir, dtype);
    return system(cmd) == 0 ? 0 : -1;
}

/* Bytes of the largest tensor in dir's checkpoint (for the RSS bound). */
static uint64_t largest_tensor(struct ti_repo *r)
{
    struct mfs_ckpt *ck = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    uint64_t mx = 0;
    size_t i;

    if (mfs_ckpt_open(r->files, r->n, NULL, &r->io, &ck, &err) < 0)
        return 0;
    for (i = 0; i < ck->n_tensors; i++)
        if (ck->tensors[i].nbytes > mx)
            mx = ck->tensors[i].nbytes;
    mfs_ckpt_free(&ck);
    return mx;
}

static void bench_model(const char *name, const char *cfg, const char *dtype, int threads,
                        double decode_target, int report_rss)
{
    char dir[1100];
    char opts[64];
    struct ti_repo *r = calloc(1, sizeof(*r));
    struct mfs_model_load_opts lo;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_model *m = NULL;
    struct mfs_model_state *s = NULL;
    int32_t ids[128];
    float *logits = NULL;
    float *x = NULL;
    float *y = NULL;
    double t0;
    double load_s;
    double prefill;
    double decode;
    double base = 0;
    int i;
    int k;
    int rc;

    if (!r || synth(name, cfg, dtype, dir, sizeof(dir)) < 0) {
        printf("%s %s: cannot synthesize the checkpoint\n", name, dtype);
        free(r);
        return;
    }
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    {
        /* ti_repo_open wants a model name under $MFS_DATA; list dir directly */
        struct dirent *d;
        DIR *dp = opendir(dir);

        while (dp && (d = readdir(dp)) && r->n < TI_MAX_FILES) {
            char real[1400];
            struct stat st;

            snprintf(real, sizeof(real), "%s/%s", dir, d->d_name);
            if (d->d_name[0] == '.' || stat(real, &st) || !S_ISREG(st.st_mode))
                continue;
            snprintf(r->names[r->n], sizeof(r->names[0]), "%s", d->d_name);
            r->files[r->n].path = r->names[r->n];
            r->files[r->n].size = (uint64_t)st.st_size;
            r->n++;
        }
        if (dp)
            closedir(dp);
        r->io.read = ti_read;
        r->io.ctx = r;
    }
    snprintf(opts, sizeof(opts), "threads=%d", threads);
    mfs_model_load_opts_parse(opts, strlen(opts), &lo, &err);
    t0 = now_s();
    rc = mfs_model_load(r->files, r->n, &r->io, &lo, &m, &err);
    load_s = now_s() - t0;
    if (rc < 0) {
        printf("%s %s: load failed: %s\n", name, dtype, err.msg);
        goto out_free;
    }
    for (i = 0; i < 128; i++)
        ids[i] = (i * 7919 + 13) % 1000;
    logits = malloc((size_t)m->cfg.vocab_size * 4);
    x = calloc((size_t)m->cfg.intermediate_size * 4 + 4096, 4);
    y = calloc((size_t)(m->cfg.vocab_size > m->cfg.intermediate_size * 4
                        ? m->cfg.vocab_size : m->cfg.intermediate_size * 4) + 4096, 4);
    rc = mfs_model_state_new(m, 256, &s, &err);
    if (rc < 0 || !logits || !x || !y)
        goto out_free;
    /* Best of 3: the machine is shared, and a slower run only measures
     * someone else's load. */
    prefill = 0;
    decode = 0;
    for (k = 0; k < 3 && rc == 0; k++) {
        double t;

        mfs_model_state_reset(s);
        t0 = now_s();
        rc = mfs_model_forward(m, s, ids, 128, 0, logits, &err);
        t = 128 / (now_s() - t0);
        prefill = t > prefill ? t : prefill;
        mfs_model_state_reset(s);
        rc = rc == 0 ? mfs_model_forward(m, s, ids, 16, 0, logits, &err) : rc;
        t0 = now_s();
        for (i = 0; rc == 0 && i < 48; i++)
            rc = mfs_model_forward(m, s, &ids[16 + i], 1, 0, logits, &err);
        t = 48 / (now_s() - t0);
        decode = t > decode ? t : decode;
    }
    if (rc < 0) {
        printf("%s %s: forward failed: %s\n", name, dtype, err.msg);
        goto out_free;
    }
    for (i = 0; i < (int)m->cfg.hidden_size; i++)
        x[i] = 0.01f * (float)(i % 17);
    for (i = 0; i < 3; i++)
        base += naive_token(m, x, y);
    base = 3 / base;
    /* The load-vs-cat ratio of the issue is tests/bench/bench_load.sh:
     * there both read the same cached shard from the mount's cache. */
    printf("infer %s %s load from local files: %.2f s for %.0f MB of weights (%.0f MB/s)\n",
           name, dtype, load_s, (double)mfs_model_weight_bytes(m) / 1e6,
           (double)mfs_model_weight_bytes(m) / 1e6 / load_s);
    if (report_rss) {
        struct rusage ru;
        double bound = (double)mfs_model_weight_bytes(m) + (double)largest_tensor(r) +
                       64.0 * 1048576;

        getrusage(RUSAGE_SELF, &ru);
        printf("infer %s %s peak RSS after load: ours %.0f MB, bound %.0f MB, ratio %.2f "
               "(target <= 1)\n", name, dtype, (double)ru.ru_maxrss / 1024 * 1.048576,
               bound / 1e6, (double)ru.ru_maxrss * 1024 / bound);
    }
    printf("infer %s %s prefill (128 tok, %d threads): ours %.1f tok/s, baseline %.1f tok/s, "
           "ratio %.1f (target > 1)\n", name, dtype, threads, prefill, base, prefill / base);
    printf("infer %s %s decode (%d threads): ours %.1f tok/s, baseline %.1f tok/s, ratio %.1f",
           name, dtype, threads, decode, base, decode / base);
    if (decode_target > 0)
        printf(" (target >= %.0f tok/s)", decode_target);
    printf("\n");
    fflush(stdout);

out_free:
    free(logits);
    free(x);
    free(y);
    mfs_model_state_free(&s);
    mfs_model_free(&m);
    free(r);
}

int main(int argc, char **argv)
{
    const char *te = getenv("MFS_BENCH_THREADS");
    int threads = te ? (int)strtol(te, NULL, 10) : 2;

    mfs_cpu_process_init(argv);
    openblas_set_num_threads(1);
    printf("infer sgemm (OpenBLAS core '%s', 1 thread, 128x768x768): %.1f GFLOP/s\n",
           openblas_get_corename(), mfs_cpu_sgemm_gflops(128, 768, 768));
    printf("infer decode kernels: %s\n", mfs_cpu_isa_best() == MFS_CPU_AVX512 ? "avx512"
                                         : mfs_cpu_isa_best() == MFS_CPU_AVX2 ? "avx2" : "scalar");
    bench_model("gpt2-124M", gpt2_cfg, "F32", threads, 40, 1);
    bench_model("gpt2-124M", gpt2_cfg, "BF16", threads, 0, 0);
    bench_model("llama-100M", llama_cfg, "F32", threads, 0, 0);
    bench_model("llama-100M", llama_cfg, "BF16", threads, 0, 0);
    return 0;
}
