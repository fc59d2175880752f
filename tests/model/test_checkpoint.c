/*
 * tests/model/test_checkpoint.c - model/checkpoint.c: which files make the
 * checkpoint (docs/design.md, The tree) and what their tensors are, on the
 * real model folders of data/models and on repos assembled from them
 * under other names (variants, broken indexes, missing shards, adapters).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/checkpoint.h"

/* A repo: repo paths mapped to real files. */
struct repo {
    size_t n;
    struct mfs_ckpt_file files[32];
    char real[32][1024];
    char names[32][256];
    int logs;                               /* lines the checkpoint logged */
    char last_log[512];
    int fail_reads;                         /* make every read fail with -EIO */
};

static ssize_t repo_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    struct repo *r = ctx;
    size_t i;

    if (r->fail_reads)
        return mfs_err_set(err, -EIO, "cannot read '%s': injected failure", path);
    for (i = 0; i < r->n; i++)
        if (!strcmp(r->files[i].path, path))
            break;
    if (i == r->n)
        return mfs_err_set(err, -ENOENT, "no file '%s'", path);
    return check_pread_file(r->real[i], off, len, buf, err);
}

static void repo_log(void *ctx, const char *path, const struct mfs_err *err)
{
    struct repo *r = ctx;

    r->logs++;
    snprintf(r->last_log, sizeof(r->last_log), "%s: %s", path, err->msg);
}

static void repo_add(struct repo *r, const char *name, const char *real)
{
    struct stat st;

    snprintf(r->names[r->n], sizeof(r->names[0]), "%s", name);
    snprintf(r->real[r->n], sizeof(r->real[0]), "%s", real);
    r->files[r->n].path = r->names[r->n];
    r->files[r->n].size = stat(real, &st) == 0 ? (uint64_t)st.st_size : 0;
    r->n++;
}

/* A repo holding the files of data/models/<model>. */
static void repo_model(struct repo *r, const char *model)
{
    char dir[1024];
    char real[1024];
    struct dirent *d;
    DIR *dp;

    memset(r, 0, sizeof(*r));
    snprintf(dir, sizeof(dir), "%s/models/%s", check_data_dir(), model);
    dp = opendir(dir);
    while (dp && (d = readdir(dp)) != NULL) {
        if (d->d_name[0] == '.' || r->n == 32)
            continue;
        snprintf(real, sizeof(real), "%s/%s", dir, d->d_name);
        repo_add(r, d->d_name, real);
    }
    if (dp)
        closedir(dp);
}

static void model_path(char *out, size_t size, const char *model, const char *file)
{
    snprintf(out, size, "%s/models/%s/%s", check_data_dir(), model, file);
}

static int open_repo(struct repo *r, const char *variant, struct mfs_ckpt **c,
                     struct mfs_err *err)
{
    struct mfs_ckpt_io io = { repo_read, repo_log, r };

    return mfs_ckpt_open(r->files, r->n, variant, &io, c, err);
}

static unsigned char *tensor_bytes(const struct repo *r, const struct mfs_ckpt_tensor *t)
{
    unsigned char *p = malloc(t->nbytes + 1);
    struct mfs_err err = MFS_ERR_INIT;

    if (p && repo_read((void *)r, t->file, t->offset, t->nbytes, p, &err) != (ssize_t)t->nbytes) {
        free(p);
        p = NULL;
    }
    return p;
}

/* Every tensor of a must be in b with the same dtype, shape and bytes. */
static int same_tensors(const struct repo *ra, const struct mfs_ckpt *a, const struct repo *rb,
                        const struct mfs_ckpt *b, size_t *compared)
{
    size_t i;
    int ok = 1;

    *compared = 0;
    for (i = 0; i < a->n_tensors; i++) {
        const struct mfs_ckpt_tensor *x = &a->tensors[i];
        const struct mfs_ckpt_tensor *y = mfs_ckpt_find(b, x->name);
        unsigned char *px;
        unsigned char *py;

        if (!y)
            continue;
        px = tensor_bytes(ra, x);
        py = tensor_bytes(rb, y);
        ok = ok && px && py && x->dtype == y->dtype && x->ndim == y->ndim &&
             !memcmp(x->shape, y->shape, sizeof(x->shape)) && x->nbytes == y->nbytes &&
             !memcmp(px, py, x->nbytes);
        free(px);
        free(py);
        (*compared)++;
    }
    return ok;
}

static void test_models(void)
{
    static const struct {
        const char *model;
        int format;
        size_t n_tensors;
        size_t n_files;
        const char *probe;                  /* a tensor, its file and dtype */
        const char *probe_file;
        const char *probe_dtype;
    } rows[] = {
        { "bert-tiniest", MFS_CKPT_SAFETENSORS, 26, 1, "cls.predictions.transform.dense.weight",
          "model.safetensors", "F32" },
        { "fake-gpt2", MFS_CKPT_SAFETENSORS, 16, 1, "transformer.wte.weight",
          "model.safetensors", "F32" },
        { "stories260K", MFS_CKPT_NONE, 0, 0, NULL, NULL, NULL },
        { "stories260K-hf", MFS_CKPT_SAFETENSORS, 47, 1, "model.norm.weight",
          "model.safetensors", "F32" },
        { "stories260K-hf-bf16", MFS_CKPT_SAFETENSORS, 47, 1, "model.norm.weight",
          "model.safetensors", "BF16" },
        { "stories260K-hf-sharded", MFS_CKPT_SAFETENSORS, 47, 4,
          "model.layers.2.mlp.up_proj.weight",
          "model-00003-of-00004.safetensors", "F32" },
        { "tiny-random-bert", MFS_CKPT_SAFETENSORS, 39, 1, "pooler.dense.weight",
          "model.safetensors", "F32" },
        { "tiny-random-bloom", MFS_CKPT_PYTORCH, 66, 1, "lm_head.weight", "pytorch_model.bin",
          "F32" },
        { "tiny-random-gpt2", MFS_CKPT_SAFETENSORS, 28, 1, "transformer.h.1.attn.c_attn.weight",
          "model.safetensors", "F32" },
        { "tiny-random-gpt2-bin", MFS_CKPT_PYTORCH, 29, 1, "transformer.h.1.attn.c_attn.weight",
          "pytorch_model.bin", "F32" },
        { "tiny-random-gpt2-bin-sharded", MFS_CKPT_PYTORCH, 29, 2, "lm_head.weight",
          "pytorch_model-00001-of-00002.bin", "F32" },
        { "tiny-random-llama", MFS_CKPT_SAFETENSORS, 21, 1, "lm_head.weight",
          "model.safetensors", "F32" },
        { "tiny-random-llama-bf16", MFS_CKPT_SAFETENSORS, 21, 1, "lm_head.weight",
          "model.safetensors", "BF16" },
        { "tiny-random-mistral", MFS_CKPT_SAFETENSORS, 21, 1, "lm_head.weight",
          "model.safetensors", "F32" },
        { "tiny-random-qwen2", MFS_CKPT_SAFETENSORS, 26, 1, "model.layers.0.self_attn.q_proj.bias",
          "model.safetensors", "F32" },
        { "tokenizer-phi3-mini", MFS_CKPT_NONE, 0, 0, NULL, NULL, NULL },
    };
    static struct repo r;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_ckpt *c = NULL;
        const struct mfs_ckpt_tensor *t;
        size_t k;
        int in_file = 1;
        int sorted = 1;
        int rc;

        repo_model(&r, rows[i].model);
        rc = open_repo(&r, NULL, &c, &err);
        CHECK(rc == 0 && c, "open %s (%s)", rows[i].model, err.msg);
        if (rc < 0)
            continue;
        CHECK(c->format == rows[i].format && c->n_tensors == rows[i].n_tensors &&
              c->n_files == rows[i].n_files && r.logs == 0,
              "%s: format %d, %zu tensors in %zu files, %d log lines (%s)", rows[i].model,
              c->format, c->n_tensors, c->n_files, r.logs, r.last_log);
        for (k = 0; k < c->n_tensors; k++) {
            size_t f;

            for (f = 0; f < r.n; f++)
                if (!strcmp(r.files[f].path, c->tensors[k].file))
                    break;
            in_file = in_file && f < r.n &&
                      c->tensors[k].offset + c->tensors[k].nbytes <= r.files[f].size;
            sorted = sorted && (k == 0 || strcmp(c->tensors[k - 1].name, c->tensors[k].name) < 0);
        }
        CHECK(in_file && sorted, "%s: tensors sorted by name, each inside its file",
              rows[i].model);
        if (rows[i].probe) {
            t = mfs_ckpt_find(c, rows[i].probe);
            CHECK(t && !strcmp(t->file, rows[i].probe_file) &&
                  !strcmp(mfs_st_dtype_name(t->dtype), rows[i].probe_dtype),
                  "%s: '%s' in '%s' as %s", rows[i].model, rows[i].probe, rows[i].probe_file,
                  rows[i].probe_dtype);
        }
        CHECK(mfs_ckpt_find(c, "no.such.tensor") == NULL, "%s: unknown name is NULL",
              rows[i].model);
        mfs_ckpt_free(&c);
        CHECK(c == NULL, "%s: free clears the pointer", rows[i].model);
    }
}

/* Same weights in other layouts give the same bytes (data/golden README,
 * also_valid_for). */
static void test_same_weights(void)
{
    static const struct {
        const char *a;
        const char *b;
        size_t min_compared;
    } rows[] = {
        { "stories260K-hf-sharded", "stories260K-hf", 47 },
        { "tiny-random-gpt2-bin", "tiny-random-gpt2", 28 },
        { "tiny-random-gpt2-bin-sharded", "tiny-random-gpt2-bin", 29 },
    };
    static struct repo ra;
    static struct repo rb;
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_ckpt *a = NULL;
        struct mfs_ckpt *b = NULL;
        size_t n = 0;

        repo_model(&ra, rows[i].a);
        repo_model(&rb, rows[i].b);
        if (open_repo(&ra, NULL, &a, NULL) == 0 && open_repo(&rb, NULL, &b, NULL) == 0)
            CHECK(same_tensors(&ra, a, &rb, b, &n) && n >= rows[i].min_compared,
                  "%s and %s hold the same tensors (%zu compared byte for byte)", rows[i].a,
                  rows[i].b, n);
        else
            CHECK(0, "open %s and %s", rows[i].a, rows[i].b);
        mfs_ckpt_free(&a);
        mfs_ckpt_free(&b);
    }
}

static const char *tmpdir(void)
{
    const char *t = getenv("MFS_TMP");

    return t && *t ? t : "/tmp";
}

static int write_bytes(const char *path, const char *p, size_t len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ssize_t w;

    if (fd < 0)
        return -1;
    w = write(fd, p, len);
    close(fd);
    return w == (ssize_t)len ? 0 : -1;
}

static int write_text(const char *path, const char *text)
{
    return write_bytes(path, text, strlen(text));
}

/* Write an index for the stories260K-hf-sharded shards renamed by fmt
 * (e.g. "model.fp16-%05d-of-00004.safetensors"), plus extra entries. */
static int write_index(const char *path, const char *fmt, const char *extra)
{
    static struct repo r;
    struct mfs_ckpt *c = NULL;
    char *text = malloc(1 << 16);
    size_t len = 0;
    size_t i;
    int rc;

    repo_model(&r, "stories260K-hf-sharded");
    rc = open_repo(&r, NULL, &c, NULL);
    if (rc == 0) {
        len += (size_t)snprintf(text + len, 65536 - len, "{\"metadata\":{},\"weight_map\":{%s",
                                extra);
        for (i = 0; i < c->n_tensors; i++) {
            char shard[256];
            int k = (int)(c->tensors[i].file[10] - '0');

            snprintf(shard, sizeof(shard), fmt, k);
            len += (size_t)snprintf(text + len, 65536 - len, "%s\"%s\":\"%s\"",
                                    i || *extra ? "," : "", c->tensors[i].name, shard);
        }
        snprintf(text + len, 65536 - len, "}}");
        rc = write_text(path, text);
    }
    mfs_ckpt_free(&c);
    free(text);
    return rc;
}

static void add_shards(struct repo *r, const char *fmt, int skip)
{
    char name[256];
    char real[1024];
    char src[64];
    int k;

    for (k = 1; k <= 4; k++) {
        if (k == skip)
            continue;
        snprintf(name, sizeof(name), fmt, k);
        snprintf(src, sizeof(src), "model-%05d-of-00004.safetensors", k);
        model_path(real, sizeof(real), "stories260K-hf-sharded", src);
        repo_add(r, name, real);
    }
}

static void test_layouts(void)
{
    static struct repo r;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_ckpt *c = NULL;
    const struct mfs_ckpt_tensor *t;
    char real[1024];
    char idx[1024];
    int rc;

    /* Variants: model.<v>.safetensors next to the plain file. */
    memset(&r, 0, sizeof(r));
    model_path(real, sizeof(real), "tiny-random-llama", "model.safetensors");
    repo_add(&r, "model.safetensors", real);
    model_path(real, sizeof(real), "tiny-random-llama-bf16", "model.safetensors");
    repo_add(&r, "model.fp16.safetensors", real);
    rc = open_repo(&r, NULL, &c, &err);
    t = c ? mfs_ckpt_find(c, "lm_head.weight") : NULL;
    CHECK(rc == 0 && c->n_files == 1 && t && t->dtype == MFS_ST_F32,
          "no variant: model.safetensors, the variant file is not part of it");
    mfs_ckpt_free(&c);
    rc = open_repo(&r, "fp16", &c, &err);
    t = c ? mfs_ckpt_find(c, "lm_head.weight") : NULL;
    CHECK(rc == 0 && c->n_files == 1 && t && t->dtype == MFS_ST_BF16 &&
          !strcmp(t->file, "model.fp16.safetensors"), "variant fp16: model.fp16.safetensors");
    mfs_ckpt_free(&c);
    rc = open_repo(&r, "int8", &c, &err);
    CHECK(rc == 0 && c->n_tensors == 0 && c->format == MFS_CKPT_NONE,
          "absent variant: an empty checkpoint, not an error");
    mfs_ckpt_free(&c);

    /* Sharded variant: model.safetensors.index.fp16.json. */
    memset(&r, 0, sizeof(r));
    snprintf(idx, sizeof(idx), "%s/index-fp16.json", tmpdir());
    CHECK(write_index(idx, "model.fp16-%05d-of-00004.safetensors", "") == 0, "write index");
    repo_add(&r, "model.safetensors.index.fp16.json", idx);
    add_shards(&r, "model.fp16-%05d-of-00004.safetensors", 0);
    rc = open_repo(&r, "fp16", &c, &err);
    t = c ? mfs_ckpt_find(c, "model.embed_tokens.weight") : NULL;
    CHECK(rc == 0 && c->n_tensors == 47 && c->n_files == 4 && r.logs == 0 && t &&
          !strcmp(t->file, "model.fp16-00001-of-00004.safetensors"),
          "variant index and shards (%s)", r.last_log);
    mfs_ckpt_free(&c);

    /* A shard the index names is missing; a mapped tensor is absent. */
    memset(&r, 0, sizeof(r));
    snprintf(idx, sizeof(idx), "%s/index-ghost.json", tmpdir());
    write_index(idx, "model-%05d-of-00004.safetensors",
                "\"ghost.weight\":\"model-00001-of-00004.safetensors\"");
    repo_add(&r, "model.safetensors.index.json", idx);
    add_shards(&r, "model-%05d-of-00004.safetensors", 4);
    rc = open_repo(&r, NULL, &c, &err);
    CHECK(rc == 0 && c->n_tensors == 47 - 13 && c->n_files == 3 && r.logs == 2 &&
          !mfs_ckpt_find(c, "ghost.weight"),
          "missing shard and ghost tensor: logged, the rest is there (%zu tensors, %d logs)",
          c ? c->n_tensors : 0, r.logs);
    mfs_ckpt_free(&c);

    /* An index that is not JSON: logged, then every root *.safetensors. */
    memset(&r, 0, sizeof(r));
    snprintf(idx, sizeof(idx), "%s/index-bad.json", tmpdir());
    write_text(idx, "{\"weight_map\": [1, 2");
    repo_add(&r, "model.safetensors.index.json", idx);
    add_shards(&r, "model-%05d-of-00004.safetensors", 0);
    rc = open_repo(&r, NULL, &c, &err);
    CHECK(rc == 0 && c->n_tensors == 47 && c->n_files == 4 && r.logs == 1,
          "invalid index: logged, shards still found (%s)", r.last_log);
    mfs_ckpt_free(&c);

    /* Shards without an index, a corrupt file, a file in a folder. */
    memset(&r, 0, sizeof(r));
    add_shards(&r, "model-%05d-of-00004.safetensors", 0);
    snprintf(idx, sizeof(idx), "%s/garbage.safetensors", tmpdir());
    write_bytes(idx, "\x10\0\0\0\0\0\0\0{\"a\":nope}      ", 24);
    repo_add(&r, "broken.safetensors", idx);
    model_path(real, sizeof(real), "tiny-random-llama", "model.safetensors");
    repo_add(&r, "sub/model.safetensors", real);
    rc = open_repo(&r, NULL, &c, &err);
    CHECK(rc == 0 && c->n_tensors == 47 && c->n_files == 4 && r.logs == 1 &&
          strstr(r.last_log, "broken.safetensors"),
          "no index: root *.safetensors; a corrupt one is logged and left out (%s)",
          r.last_log);
    mfs_ckpt_free(&c);

    /* adapter_model.safetensors: not part of model.safetensors' checkpoint;
     * on its own it is the checkpoint.  Duplicate names: first file wins. */
    memset(&r, 0, sizeof(r));
    model_path(real, sizeof(real), "tiny-random-llama", "model.safetensors");
    repo_add(&r, "model.safetensors", real);
    model_path(real, sizeof(real), "tiny-random-mistral", "model.safetensors");
    repo_add(&r, "adapter_model.safetensors", real);
    rc = open_repo(&r, NULL, &c, &err);
    CHECK(rc == 0 && c->n_files == 1 && !strcmp(c->files[0], "model.safetensors"),
          "adapter next to model.safetensors is not part of the checkpoint");
    mfs_ckpt_free(&c);
    r.files[0].path = "zz_other.safetensors";
    rc = open_repo(&r, NULL, &c, &err);
    t = c ? mfs_ckpt_find(c, "model.norm.weight") : NULL;
    CHECK(rc == 0 && c->n_files == 2 && t && !strcmp(t->file, "adapter_model.safetensors") &&
          r.logs == 21, "no main checkpoint: every root file, the first in path order wins "
          "(%d duplicates logged)", r.logs);
    mfs_ckpt_free(&c);

    /* safetensors is preferred over pytorch_model.bin. */
    memset(&r, 0, sizeof(r));
    model_path(real, sizeof(real), "tiny-random-gpt2-bin", "pytorch_model.bin");
    repo_add(&r, "pytorch_model.bin", real);
    model_path(real, sizeof(real), "tiny-random-gpt2", "model.safetensors");
    repo_add(&r, "model.safetensors", real);
    rc = open_repo(&r, NULL, &c, &err);
    CHECK(rc == 0 && c->format == MFS_CKPT_SAFETENSORS && c->n_tensors == 28,
          "model.safetensors wins over pytorch_model.bin");
    mfs_ckpt_free(&c);

    /* The reader fails: -EIO with its reason, nothing returned. */
    r.fail_reads = 1;
    memset(&err, 0, sizeof(err));
    rc = open_repo(&r, NULL, &c, &err);
    CHECK(rc == -EIO && c == NULL && strstr(err.msg, "injected"),
          "io failure is -EIO with the reader's reason (%s)", err.msg);
    mfs_ckpt_free(&c);
}

int main(void)
{
    test_models();
    test_same_weights();
    test_layouts();
    return check_done();
}
