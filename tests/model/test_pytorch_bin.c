/*
 * tests/model/test_pytorch_bin.c - model/pytorch_bin.c against
 * data/golden/pytorch-bin.json (every tensor of the three .bin files:
 * offsets, shapes, strides, storages, tied weights, sha256 of the bytes),
 * the sharded index through model/checkpoint.c, and hostile archives
 * built here: forbidden globals, unknown opcodes, compressed entries,
 * truncations and flipped bytes.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/buf.h"
#include "common/hash.h"
#include "model/checkpoint.h"
#include "model/pytorch_bin.h"

struct mem {
    const unsigned char *p;
    size_t len;
};

static ssize_t mem_read(void *ctx, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    const struct mem *m = ctx;

    if (off > m->len)
        return mfs_err_set(err, -EIO, "read past the end");
    if (len > m->len - off)
        len = m->len - (size_t)off;
    memcpy(buf, m->p + off, len);
    return (ssize_t)len;
}

#define slurp(path, len) ((unsigned char *)check_slurp((path), (len)))

static cJSON *load_json(const char *rel)
{
    char path[1024];
    size_t len;
    unsigned char *p;
    cJSON *j;

    snprintf(path, sizeof(path), "%s/%s", check_data_dir(), rel);
    p = slurp(path, &len);
    if (!p)
        return NULL;
    j = cJSON_ParseWithLength((const char *)p, len);
    free(p);
    return j;
}

static int int_list_eq(const cJSON *a, const uint64_t *u, const int64_t *s, int n)
{
    const cJSON *x;
    int k = 0;

    if (cJSON_GetArraySize(a) != n)
        return 0;
    cJSON_ArrayForEach(x, a) {
        if (u && x->valuedouble != (double)u[k])
            return 0;
        if (s && x->valuedouble != (double)s[k])
            return 0;
        k++;
    }
    return 1;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Each file of pytorch-bin.json: every tensor, field by field. */
static void test_golden(void)
{
    cJSON *g = load_json("golden/pytorch-bin.json");
    const cJSON *file;

    CHECK(g != NULL, "load golden/pytorch-bin.json");
    if (!g)
        return;
    cJSON_ArrayForEach(file, cJSON_GetObjectItemCaseSensitive(g, "files")) {
        const char *rel = jstr(file, "file");
        const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(file, "tensors");
        const cJSON *ents = cJSON_GetObjectItemCaseSensitive(file, "zip_entries");
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_pt_file f;
        char path[1024];
        struct mem m;
        size_t len;
        unsigned char *p;
        const cJSON *gt;
        size_t i = 0;
        int fields_ok = 1;
        int bytes_ok = 1;
        int rc;

        snprintf(path, sizeof(path), "%s/%s", check_data_dir(), rel ? rel : "?");
        p = slurp(path, &len);
        CHECK(p && len == jnum(file, "size"), "read %s", rel);
        if (!p)
            continue;
        m.p = p;
        m.len = len;
        rc = mfs_pt_open(rel, len, mem_read, &m, &f, &err);
        CHECK(rc == 0, "parse %s (%s)", rel, err.msg);
        if (rc < 0) {
            free(p);
            continue;
        }
        CHECK(f.n_tensors == (size_t)cJSON_GetArraySize(tensors) && f.n_skipped == 0 &&
              !strcmp(f.prefix, jstr(file, "archive_prefix")),
              "%s: %zu tensors, prefix '%s'", rel, f.n_tensors, f.prefix);
        cJSON_ArrayForEach(gt, tensors) {
            const struct mfs_pt_tensor *t = i < f.n_tensors ? &f.tensors[i] : NULL;
            const char *shares = jstr(gt, "shares_storage_with");
            char entry[512];
            char hex[MFS_SHA256_HEX];
            const cJSON *e;
            double data_off = -1;

            i++;
            if (!t) {
                fields_ok = 0;
                break;
            }
            snprintf(entry, sizeof(entry), "%sdata/%s", f.prefix, t->storage_key);
            cJSON_ArrayForEach(e, ents)
                if (jstr(e, "name") && !strcmp(jstr(e, "name"), entry))
                    data_off = jnum(e, "data_offset");
            if (strcmp(t->name, jstr(gt, "name")) ||
                strcmp(mfs_st_dtype_name(t->dtype), jstr(gt, "dtype")) ||
                !int_list_eq(cJSON_GetObjectItemCaseSensitive(gt, "shape"), t->shape, NULL,
                             t->ndim) ||
                !int_list_eq(cJSON_GetObjectItemCaseSensitive(gt, "stride"), NULL, t->stride,
                             t->ndim) ||
                strcmp(t->storage_key, jstr(gt, "storage_key")) ||
                (double)t->storage_numel != jnum(gt, "storage_numel") ||
                (double)t->storage_offset != jnum(gt, "storage_offset") ||
                (double)t->nbytes != jnum(gt, "nbytes") ||
                (double)(t->offset - t->storage_offset * (mfs_st_dtype_bits(t->dtype) / 8)) !=
                data_off ||
                (shares ? t->shares_with < 0 || strcmp(f.tensors[t->shares_with].name, shares)
                        : t->shares_with != -1)) {
                printf("# mismatch: %s\n", t->name);
                fields_ok = 0;
            }
            if (t->offset + t->nbytes > len) {
                bytes_ok = 0;
                continue;
            }
            mfs_hash_sha256_hex(p + t->offset, t->nbytes, hex);
            if (strcmp(hex, jstr(gt, "sha256"))) {
                printf("# sha256 mismatch: %s\n", t->name);
                bytes_ok = 0;
            }
        }
        CHECK(fields_ok, "%s: name, dtype, shape, stride, storage, offset, ties as golden", rel);
        CHECK(bytes_ok, "%s: sha256 of every tensor's bytes as golden", rel);
        mfs_pt_release(&f);
        free(p);
    }
    cJSON_Delete(g);
}

/* The sharded .bin through the checkpoint: each tensor in the file its
 * index names, and the same tensors as the single file. */
struct dir_io {
    char dir[1024];
};

static ssize_t dir_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                        struct mfs_err *err)
{
    struct dir_io *d = ctx;
    char full[1400];

    snprintf(full, sizeof(full), "%s/%s", d->dir, path);
    return check_pread_file(full, off, len, buf, err);
}

static void test_sharded_index(void)
{
    static const char *names[] = {
        "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json", "config.json",
    };
    struct mfs_ckpt_file files[4];
    struct dir_io d;
    struct mfs_ckpt_io io = { dir_read, NULL, &d };
    struct mfs_ckpt *c = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    cJSON *idx = load_json("models/tiny-random-gpt2-bin-sharded/pytorch_model.bin.index.json");
    const cJSON *w;
    size_t i;
    int n = 0;
    int ok = 1;

    snprintf(d.dir, sizeof(d.dir), "%s/models/tiny-random-gpt2-bin-sharded", check_data_dir());
    for (i = 0; i < 4; i++) {
        char full[1400];
        struct stat st;

        snprintf(full, sizeof(full), "%s/%s", d.dir, names[i]);
        files[i].path = names[i];
        files[i].size = stat(full, &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    CHECK(idx && mfs_ckpt_open(files, 4, NULL, &io, &c, &err) == 0 &&
          c->format == MFS_CKPT_PYTORCH && c->n_files == 2, "open sharded .bin (%s)", err.msg);
    if (c && idx) {
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(idx, "weight_map")) {
            const struct mfs_ckpt_tensor *t = mfs_ckpt_find(c, w->string);

            ok = ok && t && !strcmp(t->file, w->valuestring);
            n++;
        }
        CHECK(ok && (size_t)n == c->n_tensors && n == 29,
              "each of the %d indexed tensors is in the shard the index names", n);
    }
    mfs_ckpt_free(&c);
    cJSON_Delete(idx);
}

/* ---- hostile archives --------------------------------------------------- */

static void put16(struct mfs_buf *b, unsigned v)
{
    unsigned char x[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

    mfs_buf_append(b, x, 2);
}

static void put32(struct mfs_buf *b, uint32_t v)
{
    put16(b, v & 0xffff);
    put16(b, v >> 16);
}

/* A zip of stored entries (method as given for the last one). */
static void mkzip(struct mfs_buf *z, const char *const *names, const struct mem *data, int n,
                  unsigned last_method)
{
    uint32_t lho[8];
    size_t cd;
    int i;

    mfs_buf_reset(z);
    for (i = 0; i < n; i++) {
        lho[i] = (uint32_t)z->len;
        mfs_buf_append(z, "PK\3\4", 4);
        put16(z, 20);
        put16(z, 0);
        put16(z, i == n - 1 ? last_method : 0);
        put32(z, 0);
        put32(z, 0);                            /* crc: not checked */
        put32(z, (uint32_t)data[i].len);
        put32(z, (uint32_t)data[i].len);
        put16(z, (unsigned)strlen(names[i]));
        put16(z, 3);                            /* 3 bytes of extra, like torch's padding */
        mfs_buf_puts(z, names[i]);
        mfs_buf_append(z, "FB\0", 3);
        mfs_buf_append(z, data[i].p, data[i].len);
    }
    cd = z->len;
    for (i = 0; i < n; i++) {
        mfs_buf_append(z, "PK\1\2", 4);
        put16(z, 20);
        put16(z, 20);
        put16(z, 0);
        put16(z, i == n - 1 ? last_method : 0);
        put32(z, 0);
        put32(z, 0);
        put32(z, (uint32_t)data[i].len);
        put32(z, (uint32_t)data[i].len);
        put16(z, (unsigned)strlen(names[i]));
        put16(z, 0);
        put16(z, 0);
        put16(z, 0);
        put16(z, 0);
        put32(z, 0);
        put32(z, lho[i]);
        mfs_buf_puts(z, names[i]);
    }
    mfs_buf_append(z, "PK\5\6", 4);
    put16(z, 0);
    put16(z, 0);
    put16(z, (unsigned)n);
    put16(z, (unsigned)n);
    put32(z, (uint32_t)(z->len - cd - 12));
    put32(z, (uint32_t)cd);
    put16(z, 0);
}

/* A state dict {'w': tensor of 4 floats, shape SHAPE, stride STRIDE} as
 * torch pickles it; the hole "%s" takes extra opcodes before STOP. */
static size_t mkpickle(unsigned char *out, const char *shape_stride, size_t ss_len,
                       const char *tail, size_t tail_len)
{
    static const char head[] =
        "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00w"
        "ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storage"
        "ctorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQK\x00";
    static const char rest[] = "\x89h\x00)RtRu";
    size_t n = 0;

    memcpy(out + n, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    memcpy(out + n, shape_stride, ss_len);
    n += ss_len;
    memcpy(out + n, rest, sizeof(rest) - 1);
    n += sizeof(rest) - 1;
    memcpy(out + n, tail, tail_len);
    n += tail_len;
    out[n++] = '.';
    return n;
}

static int parse_zip(const struct mfs_buf *z, struct mfs_pt_file *f, struct mfs_err *err)
{
    struct mem m = { (const unsigned char *)z->data, z->len };

    return mfs_pt_open("t.bin", z->len, mem_read, &m, f, err);
}

static void test_hostile(void)
{
    static const unsigned char floats[16] = { 0, 0, 128, 63 };
    static const struct {
        const char *label;
        const char *ss;                     /* size and stride tuples */
        size_t ss_len;
        const char *tail;
        size_t tail_len;
        int rc;
        size_t n_tensors;
    } rows[] = {
        { "contiguous [2, 2]", "K\x02K\x02\x86K\x02K\x01\x86", 10, "", 0, 0, 1 },
        { "transposed [2, 2] left out", "K\x02K\x02\x86K\x01K\x02\x86", 10, "", 0, 0, 0 },
        { "size-1 dim with any stride", "K\x01K\x04\x86K\x07K\x01\x86", 10, "", 0, 0, 1 },
        { "too big for its storage", "K\x05\x85K\x01\x85", 6, "", 0, -EINVAL, 0 },
        { "negative size", "J\xff\xff\xff\xff\x85K\x01\x85", 9, "", 0, -EINVAL, 0 },
        { "os.system global", "K\x04\x85K\x01\x85", 6, "0cos\nsystem\n", 12, -EINVAL, 0 },
        { "builtins.eval global", "K\x04\x85K\x01\x85", 6, "0cbuiltins\neval\n", 16, -EINVAL, 0 },
        { "INST opcode", "K\x04\x85K\x01\x85", 6, "0(iposix\nsystem\n", 16, -EINVAL, 0 },
        { "OBJ opcode", "K\x04\x85K\x01\x85", 6, "0(o", 3, -EINVAL, 0 },
        { "NEWOBJ opcode", "K\x04\x85K\x01\x85", 6, "0\x81", 2, -EINVAL, 0 },
        { "memo get of an unset slot", "K\x04\x85K\x01\x85", 6, "0h\x63", 3, -EINVAL, 0 },
        { "huge memo index", "K\x04\x85K\x01\x85", 6, "r\xff\xff\xff\xff", 5, -EINVAL, 0 },
        { "string past the end", "K\x04\x85K\x01\x85", 6, "X\xff\xff\xff\x7f", 5, -EINVAL, 0 },
        { "stack underflow", "K\x04\x85K\x01\x85", 6, "000000", 6, -EINVAL, 0 },
    };
    const char *names[2] = { "arch/data.pkl", "arch/data/0" };
    struct mfs_buf z = MFS_BUF_INIT;
    unsigned char pk[512];
    struct mem data[2];
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_pt_file f;
        int rc;

        data[0].p = pk;
        data[0].len = mkpickle(pk, rows[i].ss, rows[i].ss_len, rows[i].tail, rows[i].tail_len);
        data[1].p = floats;
        data[1].len = sizeof(floats);
        mkzip(&z, names, data, 2, 0);
        rc = parse_zip(&z, &f, &err);
        CHECK(rc == rows[i].rc && (rc < 0 ? err.msg[0] != 0 : f.n_tensors == rows[i].n_tensors &&
              f.n_tensors + f.n_skipped == 1), "pickle '%s' -> %d %zu (%s)", rows[i].label, rc,
              rc == 0 ? f.n_tensors : 0, err.msg);
        if (rc == 0 && f.n_tensors == 1)
            CHECK(f.tensors[0].offset == 30 + 13 + 3 + data[0].len + 30 + 11 + 3 &&
                  f.tensors[0].nbytes == 16, "offset after the local header's padding");
        if (rc == 0)
            mfs_pt_release(&f);
    }

    /* Compressed storage; not a zip; no data.pkl. */
    {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_pt_file f;
        const char *other[2] = { "arch/other.pkl", "arch/data/0" };

        data[0].len = mkpickle(pk, "K\x04\x85K\x01\x85", 6, "", 0);
        mkzip(&z, names, data, 2, 8);
        CHECK(parse_zip(&z, &f, &err) == -EINVAL && strstr(err.msg, "compressed"),
              "deflated storage is refused (%s)", err.msg);
        mkzip(&z, other, data, 2, 0);
        CHECK(parse_zip(&z, &f, &err) == -EINVAL, "zip without data.pkl (%s)", err.msg);
        mfs_buf_reset(&z);
        mfs_buf_puts(&z, "this is not a zip file at all, just some text long enough");
        CHECK(parse_zip(&z, &f, &err) == -EINVAL, "not a zip (%s)", err.msg);
    }
    mfs_buf_release(&z);
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Cut and flipped real files: success or -EINVAL, never a crash, and a
 * success never points outside the file. */
static void test_fuzz(void)
{
    char path[1024];
    uint64_t seed = 88172645463325252ull;
    unsigned char *orig;
    size_t len;
    int bad = 0;
    int it;

    snprintf(path, sizeof(path), "%s/models/tiny-random-gpt2-bin-sharded/"
             "pytorch_model-00002-of-00002.bin", check_data_dir());
    orig = slurp(path, &len);
    CHECK(orig != NULL, "read fuzz seed");
    if (!orig)
        return;
    for (it = 0; it < 2000; it++) {
        unsigned char *p = malloc(len);
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_pt_file f;
        struct mem m;
        size_t flen = len;
        int flips = 1 + (int)(xs(&seed) % 3);
        size_t k;
        int rc;

        memcpy(p, orig, len);
        if (it % 4 == 0) {
            flen = (size_t)(xs(&seed) % len);
        } else if (it % 4 == 1) {
            while (flips--)                     /* in data.pkl (starts at byte 64) */
                p[64 + xs(&seed) % 2900] = (unsigned char)xs(&seed);
        } else if (it % 4 == 2) {
            while (flips--)                     /* in the central directory */
                p[len - 1 - xs(&seed) % 2600] = (unsigned char)xs(&seed);
        } else {
            p[64 + xs(&seed) % 2900] = (unsigned char)"cRbQqhjrX\x8a(tu}"[xs(&seed) % 14];
        }
        m.p = p;
        m.len = flen;
        rc = mfs_pt_open("fuzz.bin", flen, mem_read, &m, &f, &err);
        if (rc == 0) {
            for (k = 0; k < f.n_tensors; k++)
                if (f.tensors[k].offset + f.tensors[k].nbytes > flen)
                    bad++;
            mfs_pt_release(&f);
        } else if (rc != -EINVAL || !err.msg[0]) {
            bad++;
        }
        free(p);
    }
    CHECK(bad == 0, "fuzz: 2000 cut or flipped .bin files, each parsed or -EINVAL");
    free(orig);
}

int main(void)
{
    test_golden();
    test_sharded_index();
    test_hostile();
    test_fuzz();
    return check_done();
}
