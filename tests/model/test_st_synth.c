/*
 * tests/model/test_st_synth.c - `modelfs synth` (tools/synth.c): for each
 * real model in data/models, the synthetic checkpoint made from its
 * config.json has exactly the real checkpoint's tensor names, dtypes and
 * shapes; dtype conversion, sharding, determinism, value ranges, and the
 * --raw-size mode.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/checkpoint.h"
#include "tools/cli.h"

struct dir {
    char path[1024];
    struct mfs_ckpt_file files[64];
    char names[64][256];
    size_t n;
};

static ssize_t dir_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                        struct mfs_err *err)
{
    const struct dir *d = ctx;
    char full[1400];

    snprintf(full, sizeof(full), "%s/%s", d->path, path);
    return check_pread_file(full, off, len, buf, err);
}

static int open_dir(struct dir *d, const char *path, struct mfs_ckpt **c)
{
    struct mfs_ckpt_io io = { dir_read, NULL, d };
    struct dirent *e;
    DIR *dp;

    memset(d, 0, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "%s", path);
    dp = opendir(path);
    while (dp && (e = readdir(dp)) != NULL && d->n < 64) {
        char full[1400];
        struct stat st;

        if (e->d_name[0] == '.')
            continue;
        snprintf(d->names[d->n], sizeof(d->names[0]), "%s", e->d_name);
        snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
        d->files[d->n].path = d->names[d->n];
        d->files[d->n].size = stat(full, &st) == 0 ? (uint64_t)st.st_size : 0;
        d->n++;
    }
    if (dp)
        closedir(dp);
    return mfs_ckpt_open(d->files, d->n, NULL, &io, c, NULL);
}

static int synth(const char *a0, const char *a1, const char *a2, const char *a3,
                 const char *a4, const char *a5, const char *a6, const char *a7)
{
    char *argv[10] = { "synth", (char *)a0, (char *)a1, (char *)a2, (char *)a3, (char *)a4,
                       (char *)a5, (char *)a6, (char *)a7, NULL };
    int argc = 1;

    while (argc < 9 && argv[argc])
        argc++;
    return mfs_cli_synth(argc, argv);
}

static const char *tmp(void)
{
    const char *t = getenv("MFS_TMP");

    return t && *t ? t : "/tmp";
}

static float bf16f(const unsigned char *p)
{
    uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
    float f;

    memcpy(&f, &u, 4);
    return f;
}

static float f16f(const unsigned char *p)
{
    unsigned h = (unsigned)(p[0] | p[1] << 8);
    unsigned e = (h >> 10) & 31;
    float m = (float)(h & 1023);
    float v = e == 0 ? ldexpf(m, -24) : ldexpf(1024 + m, (int)e - 25);

    return (h & 0x8000) ? -v : v;
}

static unsigned char *tensor(const struct dir *d, const struct mfs_ckpt_tensor *t)
{
    unsigned char *p = malloc(t->nbytes + 1);

    if (p && dir_read((void *)d, t->file, t->offset, t->nbytes, p, NULL) != (ssize_t)t->nbytes) {
        free(p);
        p = NULL;
    }
    return p;
}

static void test_shapes(void)
{
    static const char *models[] = {
        "tiny-random-llama", "tiny-random-mistral", "tiny-random-qwen2", "tiny-random-gpt2",
        "tiny-random-bert", "stories260K-hf", "fake-gpt2",
    };
    size_t i;

    for (i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        static struct dir dr;
        static struct dir ds;
        struct mfs_ckpt *real = NULL;
        struct mfs_ckpt *syn = NULL;
        char cfg[1024];
        char out[1024];
        char path[1024];
        size_t k;
        int ok;
        int rc;

        snprintf(cfg, sizeof(cfg), "%s/models/%s/config.json", check_data_dir(), models[i]);
        snprintf(out, sizeof(out), "%s/%s", tmp(), models[i]);
        rc = synth("--config", cfg, "--out", out, "--seed", "1", NULL, NULL);
        snprintf(path, sizeof(path), "%s/models/%s", check_data_dir(), models[i]);
        ok = rc == 0 && open_dir(&dr, path, &real) == 0 && open_dir(&ds, out, &syn) == 0 &&
             real->n_tensors == syn->n_tensors;
        for (k = 0; ok && k < real->n_tensors; k++) {
            const struct mfs_ckpt_tensor *a = &real->tensors[k];
            const struct mfs_ckpt_tensor *b = &syn->tensors[k];

            ok = !strcmp(a->name, b->name) && a->dtype == b->dtype && a->ndim == b->ndim &&
                 !memcmp(a->shape, b->shape, sizeof(a->shape));
            if (!ok)
                printf("# %s: '%s' differs from synth's '%s'\n", models[i], a->name, b->name);
        }
        CHECK(ok, "synth %s: same %zu tensor names, dtypes and shapes as the real checkpoint",
              models[i], real ? real->n_tensors : 0);
        mfs_ckpt_free(&real);
        mfs_ckpt_free(&syn);
    }
}

static void test_dtypes_and_shards(void)
{
    static struct dir d32;
    static struct dir d16;
    static struct dir dh;
    struct mfs_ckpt *c32 = NULL;
    struct mfs_ckpt *c16 = NULL;
    struct mfs_ckpt *ch = NULL;
    char cfg[1024];
    char o32[1024];
    char o16[1024];
    char oh[1024];
    size_t k;
    int ok = 1;
    int finite = 1;
    int norms = 1;

    snprintf(cfg, sizeof(cfg), "%s/models/stories260K-hf/config.json", check_data_dir());
    snprintf(o32, sizeof(o32), "%s/s32", tmp());
    snprintf(o16, sizeof(o16), "%s/sbf16", tmp());
    snprintf(oh, sizeof(oh), "%s/sf16", tmp());
    CHECK(synth("--config", cfg, "--out", o32, "--seed", "5", NULL, NULL) == 0 &&
          synth("--config", cfg, "--out", o16, "--seed", "5", "--dtype", "BF16") == 0 &&
          synth("--config", cfg, "--out", oh, "--seed", "5", "--max-shard-size", "100KB") == 0,
          "synth F32, BF16 and sharded F32");
    if (open_dir(&d32, o32, &c32) < 0 || open_dir(&d16, o16, &c16) < 0 ||
        open_dir(&dh, oh, &ch) < 0) {
        CHECK(0, "open synth outputs");
        goto out;
    }
    CHECK(ch->n_files == 11 && ch->n_tensors == 47, "100KB: 11 shards via the index, 47 tensors");
    for (k = 0; k < c32->n_tensors; k++) {
        const struct mfs_ckpt_tensor *a = &c32->tensors[k];
        const struct mfs_ckpt_tensor *b = mfs_ckpt_find(c16, a->name);
        const struct mfs_ckpt_tensor *h = mfs_ckpt_find(ch, a->name);
        unsigned char *pa = tensor(&d32, a);
        unsigned char *pb = b ? tensor(&d16, b) : NULL;
        unsigned char *ph = h ? tensor(&dh, h) : NULL;
        size_t e;

        ok = ok && pa && pb && ph && b->dtype == MFS_ST_BF16 && b->nbytes * 2 == a->nbytes &&
             h->nbytes == a->nbytes && !memcmp(pa, ph, a->nbytes);
        for (e = 0; ok && e < a->nbytes / 4; e++) {
            float f;
            float g;

            memcpy(&f, pa + 4 * e, 4);
            g = bf16f(pb + 2 * e);
            finite = finite && isfinite(f) && fabsf(f) < 2.0f;
            ok = fabsf(g - f) <= fabsf(f) * (1.0f / 256) + 1e-30f;
            if (strstr(a->name, "norm"))
                norms = norms && f > 0.9f && f < 1.1f;
        }
        free(pa);
        free(pb);
        free(ph);
    }
    CHECK(ok, "BF16 values are the F32 ones rounded (within 2^-8), shards hold the same bytes");
    CHECK(finite && norms, "weights small and finite, norm weights within 1 +- 0.1");
out:
    mfs_ckpt_free(&c32);
    mfs_ckpt_free(&c16);
    mfs_ckpt_free(&ch);
}

static void test_f16_and_seed(void)
{
    static struct dir da;
    static struct dir db;
    struct mfs_ckpt *a = NULL;
    struct mfs_ckpt *b = NULL;
    char cfg[1024];
    char oa[1024];
    char ob[1024];
    char oc[1024];
    char pa[1100];
    char pc[1100];
    const struct mfs_ckpt_tensor *ta;
    const struct mfs_ckpt_tensor *tb;
    unsigned char *x = NULL;
    unsigned char *y = NULL;
    size_t e;
    int ok;

    snprintf(cfg, sizeof(cfg), "%s/models/tiny-random-gpt2/config.json", check_data_dir());
    snprintf(oa, sizeof(oa), "%s/g32", tmp());
    snprintf(ob, sizeof(ob), "%s/g16", tmp());
    snprintf(oc, sizeof(oc), "%s/g32b", tmp());
    ok = synth("--config", cfg, "--out", oa, "--seed", "9", NULL, NULL) == 0 &&
         synth("--config", cfg, "--out", ob, "--seed", "9", "--dtype", "F16") == 0 &&
         synth("--config", cfg, "--out", oc, "--seed", "9", NULL, NULL) == 0 &&
         open_dir(&da, oa, &a) == 0 && open_dir(&db, ob, &b) == 0;
    ta = ok ? mfs_ckpt_find(a, "transformer.h.0.mlp.c_fc.weight") : NULL;
    tb = ok ? mfs_ckpt_find(b, "transformer.h.0.mlp.c_fc.weight") : NULL;
    if (ta && tb) {
        x = tensor(&da, ta);
        y = tensor(&db, tb);
    }
    ok = x && y && tb->dtype == MFS_ST_F16;
    for (e = 0; ok && e < ta->nbytes / 4; e++) {
        float f;
        float g;

        memcpy(&f, x + 4 * e, 4);
        g = f16f(y + 2 * e);
        ok = fabsf(g - f) <= fabsf(f) * (1.0f / 2048) + 3e-8f;
    }
    CHECK(ok, "F16 values are the F32 ones rounded (within 2^-11, subnormals too)");
    free(x);
    free(y);
    snprintf(pa, sizeof(pa), "%s/model.safetensors", oa);
    snprintf(pc, sizeof(pc), "%s/model.safetensors", oc);
    {
        size_t la = 0;
        size_t lc = 0;
        FILE *fa = fopen(pa, "rb");
        FILE *fc = fopen(pc, "rb");
        int same = fa && fc;
        int ch1;
        int ch2;

        while (same) {
            ch1 = fgetc(fa);
            ch2 = fgetc(fc);
            same = ch1 == ch2;
            la += ch1 != EOF;
            lc += ch2 != EOF;
            if (ch1 == EOF)
                break;
        }
        CHECK(same && la == lc && la > 0, "same seed, same bytes (%zu)", la);
        if (fa)
            fclose(fa);
        if (fc)
            fclose(fc);
    }
    mfs_ckpt_free(&a);
    mfs_ckpt_free(&b);
}

static void test_raw(void)
{
    static struct dir d;
    struct mfs_ckpt *c = NULL;
    char out[1024];
    /* one 64 MiB block, 3 rows of 4096, 2 floats, 3 bytes */
    const uint64_t want = 67108864ull + 3 * 4096 * 4 + 8 + 3;
    char size[32];
    uint64_t sum = 0;
    size_t k;
    int rc;

    snprintf(out, sizeof(out), "%s/raw", tmp());
    snprintf(size, sizeof(size), "%llu", (unsigned long long)want);
    rc = synth("--raw-size", size, "--out", out, NULL, NULL, NULL, NULL);
    CHECK(rc == 0 && open_dir(&d, out, &c) == 0, "synth --raw-size %s", size);
    for (k = 0; c && k < c->n_tensors; k++)
        sum += c->tensors[k].nbytes;
    CHECK(c && c->n_tensors == 4 && sum == want && c->tensors[0].shape[1] == 4096,
          "raw: %zu tensors, %llu data bytes", c ? c->n_tensors : 0, (unsigned long long)sum);
    mfs_ckpt_free(&c);
    CHECK(synth("--raw-size", "10", NULL, NULL, NULL, NULL, NULL, NULL) == 2,
          "usage error without --out");
    CHECK(synth("--config", "/nonexistent.json", "--out", out, NULL, NULL, NULL, NULL) == 1,
          "missing config fails");
    CHECK(synth("--raw-size", "1", "--out", out, "--dtype", "I8", NULL, NULL) == 2,
          "dtype I8 refused");
}

int main(void)
{
    test_shapes();
    test_dtypes_and_shards();
    test_f16_and_seed();
    test_raw();
    return check_done();
}
