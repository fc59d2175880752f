/*
 * tests/model/test_safetensors.c - model/safetensors.c (reader) and
 * model/st_write.c (writer): every model file in data/models, a table of
 * corrupt headers (one row per reader rule of docs/hub-api.md 10.1), a
 * little fuzzing, and writer round trips.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/buf.h"
#include "model/safetensors.h"

#define slurp(path, len) ((unsigned char *)check_slurp((path), (len)))

/* Parse a whole in-memory file: header length, then header. */
static int parse_mem(const unsigned char *p, size_t len, struct mfs_st_header *h,
                     struct mfs_err *err)
{
    uint64_t n;
    int rc;

    memset(h, 0, sizeof(*h));
    rc = mfs_st_header_len(p, len, &n, err);
    if (rc < 0)
        return rc;
    return mfs_st_header_parse("t.safetensors", (const char *)p + 8, (size_t)n, len, h, err);
}

static const struct mfs_st_tensor *find(const struct mfs_st_header *h, const char *name)
{
    size_t i;

    for (i = 0; i < h->n_tensors; i++)
        if (!strcmp(h->tensors[i].name, name))
            return &h->tensors[i];
    return NULL;
}

/* Re-lay out the parsed tensors with the writer: every file in data/
 * was written by the reference, so the header bytes must come back
 * identical, and the offsets must agree with the parser's. */
static int relayout_matches(const unsigned char *file, size_t len, const struct mfs_st_header *h)
{
    struct mfs_st_wtensor *w = calloc(h->n_tensors + 1, sizeof(*w));
    uint64_t *begin = calloc(h->n_tensors + 1, sizeof(*begin));
    struct mfs_buf out = MFS_BUF_INIT;
    uint64_t fsize = 0;
    size_t i;
    int ok = 0;

    for (i = 0; i < h->n_tensors; i++) {
        w[i].name = h->tensors[i].name;
        w[i].dtype = h->tensors[i].dtype;
        w[i].ndim = h->tensors[i].ndim;
        memcpy(w[i].shape, h->tensors[i].shape, sizeof(w[i].shape));
    }
    if (mfs_st_layout(w, h->n_tensors, (const char *const *)h->meta_keys,
                      (const char *const *)h->meta_values, h->n_meta, &out, NULL, begin, &fsize,
                      NULL) == 0) {
        ok = out.len == h->data_start && !memcmp(out.data, file, out.len) && fsize == len;
        for (i = 0; i < h->n_tensors; i++)
            ok = ok && begin[i] == h->tensors[i].begin;
    }
    mfs_buf_release(&out);
    free(begin);
    free(w);
    return ok;
}

static void test_models(void)
{
    /* file, tensors, N, the last tensor by name: dtype, rank, shape, absolute begin
     * (read off the files with an independent JSON reader). */
    static const struct {
        const char *file;
        size_t n;
        uint64_t hlen;
        const char *name;
        const char *dtype;
        int ndim;
        uint64_t shape[2];
        uint64_t begin;
    } rows[] = {
        { "bert-tiniest/model.safetensors", 26, 2744, "cls.predictions.transform.dense.weight",
          "F32", 2, { 4, 4 }, 622184 },
        { "fake-gpt2/model.safetensors", 16, 1392, "transformer.wte.weight", "F32", 2,
          { 50257, 2 }, 9904 },
        { "stories260K-hf-bf16/model.safetensors", 47, 4888, "model.norm.weight", "BF16", 1,
          { 64 }, 524832 },
        { "stories260K-hf-sharded/model-00001-of-00004.safetensors", 7, 744,
          "model.layers.0.self_attn.v_proj.weight", "F32", 2, { 32, 64 }, 260848 },
        { "stories260K-hf-sharded/model-00002-of-00004.safetensors", 16, 1672,
          "model.layers.2.self_attn.v_proj.weight", "F32", 2, { 32, 64 }, 268944 },
        { "stories260K-hf-sharded/model-00003-of-00004.safetensors", 11, 1152,
          "model.layers.3.self_attn.v_proj.weight", "F32", 2, { 32, 64 }, 262792 },
        { "stories260K-hf-sharded/model-00004-of-00004.safetensors", 13, 1336,
          "model.norm.weight", "F32", 1, { 64 }, 227648 },
        { "stories260K-hf/model.safetensors", 47, 4856, "model.norm.weight", "F32", 1, { 64 },
          1044736 },
        { "tiny-random-bert/model.safetensors", 39, 4096, "pooler.dense.weight", "F32", 2,
          { 16, 16 }, 1992264 },
        { "tiny-random-gpt2/model.safetensors", 28, 2560, "transformer.wte.weight", "F32", 2,
          { 50257, 16 }, 37128 },
        { "tiny-random-llama-bf16/model.safetensors", 21, 2200, "model.norm.weight", "BF16", 1,
          { 16 }, 2063328 },
        { "tiny-random-llama/model.safetensors", 21, 2176, "model.norm.weight", "F32", 1,
          { 16 }, 4124424 },
        { "tiny-random-mistral/model.safetensors", 21, 2144, "model.norm.weight", "F32", 1,
          { 64 }, 560232 },
        { "tiny-random-qwen2/model.safetensors", 26, 2696, "model.norm.weight", "F32", 1,
          { 16 }, 3244240 },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_st_header h;
        const struct mfs_st_tensor *t;
        char path[1024];
        unsigned char *p;
        size_t len;
        uint64_t sum = 0;
        size_t k;
        int rc;

        snprintf(path, sizeof(path), "%s/models/%s", check_data_dir(), rows[i].file);
        p = slurp(path, &len);
        CHECK(p != NULL, "read %s", rows[i].file);
        if (!p)
            continue;
        rc = parse_mem(p, len, &h, &err);
        CHECK(rc == 0, "parse %s (%s)", rows[i].file, err.msg);
        if (rc == 0) {
            t = find(&h, rows[i].name);
            CHECK(h.n_tensors == rows[i].n && h.header_len == rows[i].hlen &&
                  h.data_start == 8 + rows[i].hlen, "%s: %zu tensors, N %llu", rows[i].file,
                  h.n_tensors, (unsigned long long)h.header_len);
            CHECK(t && !strcmp(mfs_st_dtype_name(t->dtype), rows[i].dtype) &&
                  t->ndim == rows[i].ndim && t->shape[0] == rows[i].shape[0] &&
                  (t->ndim < 2 || t->shape[1] == rows[i].shape[1]) &&
                  t->begin == rows[i].begin, "%s: '%s' dtype, shape, offset", rows[i].file,
                  rows[i].name);
            for (k = 0; k < h.n_tensors; k++)
                sum += h.tensors[k].nbytes;
            CHECK(h.data_start + sum == len && h.n_meta == 1 &&
                  !strcmp(h.meta_keys[0], "format") && !strcmp(h.meta_values[0], "pt"),
                  "%s: data bytes fill the file, __metadata__ format=pt", rows[i].file);
            CHECK(relayout_matches(p, len, &h), "%s: writer re-creates the header byte for byte",
                  rows[i].file);
            mfs_st_header_release(&h);
        }
        free(p);
    }
}

/* A file from a header text and data_len data bytes (N = strlen(json)). */
static unsigned char *mk(const char *json, size_t data_len, size_t *len)
{
    size_t n = strlen(json);
    unsigned char *p = calloc(1, 8 + n + data_len + 1);
    int k;

    for (k = 0; k < 8; k++)
        p[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(p + 8, json, n);
    *len = 8 + n + data_len;
    return p;
}

static void test_corrupt(void)
{
    static const struct {
        const char *label;
        const char *json;
        size_t data;
        int rc;
    } rows[] = {
        { "empty object", "{}", 0, 0 },
        { "padded with spaces", "{}      ", 0, 0 },
        { "metadata only", "{\"__metadata__\":{\"format\":\"pt\"}}", 0, 0 },
        { "scalar", "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 0 },
        { "zero-size dim", "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}",
          0, 0 },
        { "F4 pair is one byte", "{\"f\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}",
          1, 0 },
        { "two in file order", "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 4, 0 },
        { "unknown field ignored",
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1, 0 },
        { "does not start with {", " {}", 0, -EINVAL },
        { "array", "[]", 0, -EINVAL },
        { "truncated JSON", "{\"a\":", 0, -EINVAL },
        { "garbage after object", "{} x", 0, -EINVAL },
        { "NUL byte", "{}\0  ", 0, -EINVAL },
        { "invalid UTF-8", "{\"\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
          1, -EINVAL },
        { "overlong UTF-8", "{\"\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],"
          "\"data_offsets\":[0,1]}}", 1, -EINVAL },
        { "metadata value not a string", "{\"__metadata__\":{\"a\":1}}", 0, -EINVAL },
        { "metadata not an object", "{\"__metadata__\":\"x\"}", 0, -EINVAL },
        { "entry not an object", "{\"a\":5}", 0, -EINVAL },
        { "unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
          -EINVAL },
        { "missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -EINVAL },
        { "missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, -EINVAL },
        { "fractional dim", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}",
          1, -EINVAL },
        { "negative dim", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1,
          -EINVAL },
        { "string dim", "{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1,
          -EINVAL },
        { "nine dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
          "\"data_offsets\":[0,1]}}", 1, -EINVAL },
        { "three offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1,
          -EINVAL },
        { "end before begin", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", 1,
          -EINVAL },
        { "gap at start", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
          -EINVAL },
        { "gap between", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 3, -EINVAL },
        { "overlap", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6, -EINVAL },
        { "same range twice", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
          "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, -EINVAL },
        { "size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
          -EINVAL },
        { "misaligned F4", "{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
          -EINVAL },
        { "trailing data", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 2,
          -EINVAL },
        { "missing data", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3,
          -EINVAL },
        { "duplicate key", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, -EINVAL },
        { "shape product overflows", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,"
          "4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, -EINVAL },
        { "bits overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4503599627370496,"
          "4503599627370496],\"data_offsets\":[0,8]}}", 8, -EINVAL },
        { "offset beyond 2^53", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],"
          "\"data_offsets\":[18446744073709551615,0]}}", 1, -EINVAL },
        { "offset 1e300", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e300]}}",
          1, -EINVAL },
        { "huge end", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4503599627370496],"
          "\"data_offsets\":[0,4503599627370496]}}", 1, -EINVAL },
        { "deep nesting", "{\"__metadata__\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]"
          "]]]]]]]]]]]]]}", 0, -EINVAL },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_st_header h;
        size_t len;
        unsigned char *p = mk(rows[i].json, rows[i].data, &len);
        int rc;

        if (!strcmp(rows[i].label, "NUL byte")) {
            free(p);
            p = mk("{}\x01  ", 0, &len);
            p[10] = '\0';
        }
        rc = parse_mem(p, len, &h, &err);
        CHECK(rc == rows[i].rc && (rc == 0 || (err.code == rc && err.msg[0])),
              "header '%s' -> %d (%s)", rows[i].label, rc, err.msg);
        if (rc == 0)
            mfs_st_header_release(&h);
        free(p);
    }
}

static void test_header_len(void)
{
    unsigned char b[8] = { 0 };
    struct mfs_err err = MFS_ERR_INIT;
    uint64_t n = 1;
    uint64_t big = 100000001;
    int k;

    CHECK(mfs_st_header_len(b, 7, &n, &err) == -EINVAL && n == 0,
          "HeaderTooSmall: a 7-byte file (%s)", err.msg);
    for (k = 0; k < 8; k++)
        b[k] = (unsigned char)(big >> (8 * k));
    CHECK(mfs_st_header_len(b, 1ull << 40, &n, &err) == -EINVAL,
          "HeaderTooLarge: N = 100000001 (%s)", err.msg);
    memset(b, 0, sizeof(b));
    b[0] = 16;
    CHECK(mfs_st_header_len(b, 23, &n, &err) == -EINVAL, "InvalidHeaderLength: 8+N past the end");
    CHECK(mfs_st_header_len(b, 24, &n, NULL) == 0 && n == 16, "N = 16 in a 24-byte file");
    memset(b, 0xff, sizeof(b));
    CHECK(mfs_st_header_len(b, UINT64_MAX, &n, &err) == -EINVAL, "N = 2^64-1 does not wrap");
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Hostile input never crashes: flipped bytes, cut files, random bytes.
 * Every answer is success or -EINVAL with a reason, and a success never
 * points outside the file. */
static void test_fuzz(void)
{
    char path[1024];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    size_t len;
    unsigned char *orig;
    int bad = 0;
    int accepted = 0;
    int it;

    snprintf(path, sizeof(path), "%s/models/stories260K-hf-sharded/"
             "model-00004-of-00004.safetensors", check_data_dir());
    orig = slurp(path, &len);
    CHECK(orig != NULL, "read fuzz seed file");
    if (!orig)
        return;
    for (it = 0; it < 3000; it++) {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_st_header h;
        size_t flen = len;
        size_t hl = 8 + 1336;
        unsigned char *p = malloc(len);
        int flips = 1 + (int)(xs(&seed) % 4);
        int rc;
        size_t k;

        memcpy(p, orig, len);
        if (it % 3 == 0) {
            flen = (size_t)(xs(&seed) % (len + 1));
        } else if (it % 3 == 1) {
            while (flips--)
                p[xs(&seed) % hl] = (unsigned char)xs(&seed);
        } else {
            for (k = 0; k < hl && k < 512; k++)
                p[k] = (unsigned char)xs(&seed);
            p[0] = (unsigned char)(xs(&seed) % 64);
            p[1] = p[2] = p[3] = p[4] = p[5] = p[6] = p[7] = 0;
            p[8] = '{';
        }
        rc = parse_mem(p, flen, &h, &err);
        if (rc == 0) {
            accepted++;
            for (k = 0; k < h.n_tensors; k++)
                if (h.tensors[k].begin + h.tensors[k].nbytes > flen)
                    bad++;
            mfs_st_header_release(&h);
        } else if (rc != -EINVAL || !err.msg[0]) {
            bad++;
        }
        free(p);
    }
    CHECK(bad == 0, "fuzz: 3000 mutated files, %d accepted, every other one -EINVAL with a "
          "reason", accepted);
    free(orig);
}

struct fill_ctx {
    const unsigned char *const *data;
};

static int fill(void *ctx, size_t idx, uint64_t off, void *buf, size_t len, struct mfs_err *err)
{
    const struct fill_ctx *f = ctx;

    memcpy(buf, f->data[idx] + off, len);
    return 0;
}

static void test_writer(void)
{
    static const unsigned char d_a[4] = { 1, 2, 3, 4 };
    static const unsigned char d_b[2] = { 5, 6 };
    static const unsigned char d_c[8] = { 7, 8, 9, 10, 11, 12, 13, 14 };
    static const unsigned char d_q[1] = { 15 };
    const unsigned char *data[] = { d_a, d_b, d_c, d_q };
    struct mfs_st_wtensor w[] = {
        { "a", MFS_ST_F32, 1, { 1 } },
        { "b", MFS_ST_BF16, 0, { 0 } },
        { "c", MFS_ST_I64, 2, { 1, 1 } },
        { "we\"ird\n\x01", MFS_ST_BOOL, 1, { 1 } },
    };
    const char *mk_keys[] = { "format", "note" };
    const char *mk_vals[] = { "pt", "x\\y" };
    struct fill_ctx fc = { data };
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_buf out = MFS_BUF_INIT;
    struct mfs_st_header h;
    char path[1024];
    size_t order[4];
    uint64_t begin[4];
    uint64_t fsize = 0;
    unsigned char *p;
    size_t len;
    int fd;
    int rc;

    rc = mfs_st_layout(w, 4, mk_keys, mk_vals, 2, &out, order, begin, &fsize, &err);
    CHECK(rc == 0 && order[0] == 2 && order[1] == 0 && order[2] == 1 && order[3] == 3,
          "layout: dtype descending (I64, F32, BF16, BOOL), then name");
    CHECK(rc == 0 && (out.len - 8) % 8 == 0 &&
          !memcmp(out.data + 8, "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\\\\y\"},"
                  "\"c\":{\"dtype\":\"I64\",\"shape\":[1,1],\"data_offsets\":[0,8]},", 101),
          "layout: metadata first, compact JSON, padded to 8");
    CHECK(rc == 0 && strstr(out.data + 8, "\"we\\\"ird\\n\\u0001\"") != NULL,
          "layout: names escaped as serde_json does");
    CHECK(rc == 0 && begin[2] == out.len && begin[0] == out.len + 8 && begin[1] == out.len + 12 &&
          begin[3] == out.len + 14 && fsize == out.len + 15, "layout: offsets and file size");
    mfs_buf_release(&out);

    snprintf(path, sizeof(path), "%s/w.safetensors", getenv("MFS_TMP") ? getenv("MFS_TMP") :
             "/tmp");
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    rc = mfs_st_write_fd(fd, w, 4, mk_keys, mk_vals, 2, fill, &fc, &fsize, &err);
    close(fd);
    p = slurp(path, &len);
    CHECK(rc == 0 && p && len == fsize, "write_fd: %llu bytes", (unsigned long long)fsize);
    if (p && parse_mem(p, len, &h, &err) == 0) {
        const struct mfs_st_tensor *t = find(&h, "we\"ird\n\x01");
        const struct mfs_st_tensor *c = find(&h, "c");

        CHECK(h.n_tensors == 4 && t && c && p[t->begin] == 15 && !memcmp(p + c->begin, d_c, 8)
              && h.n_meta == 2 && !strcmp(h.meta_values[1], "x\\y"),
              "write_fd output parses back with the same names, metadata and bytes");
        mfs_st_header_release(&h);
    } else {
        CHECK(0, "write_fd output parses (%s)", err.msg);
    }
    free(p);
    unlink(path);

    w[1].name = "a";
    CHECK(mfs_st_layout(w, 2, NULL, NULL, 0, &out, NULL, NULL, NULL, &err) == -EINVAL,
          "layout refuses duplicate names");
    mfs_buf_release(&out);
    w[1].name = "__metadata__";
    CHECK(mfs_st_layout(w, 2, NULL, NULL, 0, &out, NULL, NULL, NULL, &err) == -EINVAL,
          "layout refuses a tensor called __metadata__");
    mfs_buf_release(&out);
    w[1].name = "b";
    w[1].dtype = MFS_ST_F4;
    w[1].ndim = 1;
    w[1].shape[0] = 3;
    CHECK(mfs_st_layout(w, 2, NULL, NULL, 0, &out, NULL, NULL, NULL, &err) == -EINVAL,
          "layout refuses 3 x F4 (12 bits)");
    mfs_buf_release(&out);
    CHECK(mfs_st_layout(NULL, 0, NULL, NULL, 0, &out, NULL, NULL, &fsize, &err) == 0 &&
          out.len == 16 && !memcmp(out.data + 8, "{}      ", 8) && fsize == 16,
          "layout of nothing is '{}' padded");
    mfs_buf_release(&out);
}

static void test_dtypes(void)
{
    enum mfs_st_dtype d;
    int i;
    int ok = 1;

    for (i = 0; i < MFS_ST_DTYPE_COUNT; i++)
        ok = ok && mfs_st_dtype_parse(mfs_st_dtype_name(i), &d) == 0 && (int)d == i;
    CHECK(ok, "every dtype name parses back");
    CHECK(mfs_st_dtype_bits(MFS_ST_F4) == 4 && mfs_st_dtype_bits(MFS_ST_F6_E2M3) == 6 &&
          mfs_st_dtype_bits(MFS_ST_BOOL) == 8 && mfs_st_dtype_bits(MFS_ST_BF16) == 16 &&
          mfs_st_dtype_bits(MFS_ST_C64) == 64 && mfs_st_dtype_bits(MFS_ST_U64) == 64,
          "dtype bits");
    CHECK(mfs_st_dtype_parse("f32", &d) == -EINVAL && mfs_st_dtype_parse(NULL, &d) == -EINVAL,
          "dtype names are case-sensitive");
}

int main(void)
{
    test_dtypes();
    test_header_len();
    test_models();
    test_corrupt();
    test_fuzz();
    test_writer();
    return check_done();
}
