/*
 * model/safetensors.c - the safetensors reader (see safetensors.h).
 *
 * The header is untrusted network input.  Before cJSON sees it, the bytes
 * are checked to be UTF-8 with no control characters outside JSON
 * whitespace, so a NUL cannot cut a string short.  Numbers go through
 * cJSON's double; a value must be a non-negative integer below 2^53 to be
 * exact, which every real file satisfies (no file has 2^53 bytes), so
 * larger values are refused rather than rounded.  Then the rules of
 * safetensors/src/tensor.rs Metadata::validate run on the sorted offsets,
 * with every multiplication checked for overflow.
 */
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* In the Rust enum's order, which is the alignment order the writer sorts by. */
static const struct {
    const char *name;
    unsigned bits;
} dtypes[MFS_ST_DTYPE_COUNT] = {
    [MFS_ST_BOOL] = { "BOOL", 8 },          [MFS_ST_F4] = { "F4", 4 },
    [MFS_ST_F6_E2M3] = { "F6_E2M3", 6 },    [MFS_ST_F6_E3M2] = { "F6_E3M2", 6 },
    [MFS_ST_U8] = { "U8", 8 },              [MFS_ST_I8] = { "I8", 8 },
    [MFS_ST_F8_E5M2] = { "F8_E5M2", 8 },    [MFS_ST_F8_E4M3] = { "F8_E4M3", 8 },
    [MFS_ST_F8_E8M0] = { "F8_E8M0", 8 },    [MFS_ST_F8_E4M3FNUZ] = { "F8_E4M3FNUZ", 8 },
    [MFS_ST_F8_E5M2FNUZ] = { "F8_E5M2FNUZ", 8 },
    [MFS_ST_I16] = { "I16", 16 },           [MFS_ST_U16] = { "U16", 16 },
    [MFS_ST_F16] = { "F16", 16 },           [MFS_ST_BF16] = { "BF16", 16 },
    [MFS_ST_I32] = { "I32", 32 },           [MFS_ST_U32] = { "U32", 32 },
    [MFS_ST_F32] = { "F32", 32 },           [MFS_ST_C64] = { "C64", 64 },
    [MFS_ST_F64] = { "F64", 64 },           [MFS_ST_I64] = { "I64", 64 },
    [MFS_ST_U64] = { "U64", 64 },
};

#define MAX_EXACT 9007199254740992.0        /* 2^53: doubles are exact below */

const char *mfs_st_dtype_name(enum mfs_st_dtype d)
{
    if ((unsigned)d >= MFS_ST_DTYPE_COUNT)
        return "?";
    return dtypes[d].name;
}

int mfs_st_dtype_parse(const char *s, enum mfs_st_dtype *d)
{
    int i;

    for (i = 0; i < MFS_ST_DTYPE_COUNT; i++) {
        if (s && !strcmp(s, dtypes[i].name)) {
            *d = (enum mfs_st_dtype)i;
            return 0;
        }
    }
    return -EINVAL;
}

unsigned mfs_st_dtype_bits(enum mfs_st_dtype d)
{
    if ((unsigned)d >= MFS_ST_DTYPE_COUNT)
        return 0;
    return dtypes[d].bits;
}

int mfs_st_header_len(const unsigned char first8[8], uint64_t file_size, uint64_t *n,
                      struct mfs_err *err)
{
    uint64_t v = 0;
    int i;

    *n = 0;
    if (file_size < 8)
        return mfs_err_set(err, -EINVAL,
                           "invalid safetensors file: %llu bytes, shorter than the 8-byte "
                           "header length", (unsigned long long)file_size);
    for (i = 7; i >= 0; i--)
        v = (v << 8) | first8[i];
    if (v > MFS_ST_MAX_HEADER)
        return mfs_err_set(err, -EINVAL,
                           "invalid safetensors file: header length %llu exceeds %llu",
                           (unsigned long long)v, MFS_ST_MAX_HEADER);
    if (8 + v > file_size)
        return mfs_err_set(err, -EINVAL,
                           "invalid safetensors file: header length %llu runs past the end "
                           "of the %llu-byte file", (unsigned long long)v,
                           (unsigned long long)file_size);
    *n = v;
    return 0;
}

void mfs_st_header_release(struct mfs_st_header *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->n_tensors; i++)
        free(h->tensors[i].name);
    free(h->tensors);
    for (i = 0; i < h->n_meta; i++) {
        free(h->meta_keys[i]);
        free(h->meta_values[i]);
    }
    free(h->meta_keys);
    free(h->meta_values);
    memset(h, 0, sizeof(*h));
}

/* True iff p[0..n) is UTF-8 (no overlongs, surrogates or > U+10FFFF) and
 * has no control byte other than JSON whitespace. */
static int text_ok(const unsigned char *p, size_t n, size_t *bad)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = p[i];
        unsigned need;
        uint32_t cp;
        uint32_t min;
        size_t k;

        if (c < 0x80) {
            if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
                goto out_bad;
            if (c == 0x7f)
                goto out_bad;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            goto out_bad;
        }
        if (n - i <= need)
            goto out_bad;
        for (k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                goto out_bad;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto out_bad;
        i += need + 1;
    }
    return 1;
out_bad:
    *bad = i;
    return 0;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_u64(const cJSON *j, uint64_t *v)
{
    double d;

    if (!cJSON_IsNumber(j))
        return -EINVAL;
    d = j->valuedouble;
    if (!(d >= 0) || d >= MAX_EXACT || floor(d) != d)
        return -EINVAL;
    *v = (uint64_t)d;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int parse_metadata(const char *name, const cJSON *meta, struct mfs_st_header *h,
                          struct mfs_err *err)
{
    const cJSON *m;
    size_t count = 0;

    if (!cJSON_IsObject(meta))
        return mfs_err_set(err, -EINVAL,
                           "invalid safetensors header in '%s': __metadata__ is not an object",
                           name);
    cJSON_ArrayForEach(m, meta)
        count++;
    if (count == 0)
        return 0;
    h->meta_keys = calloc(count, sizeof(*h->meta_keys));
    h->meta_values = calloc(count, sizeof(*h->meta_values));
    if (!h->meta_keys || !h->meta_values)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(m, meta) {
        if (!cJSON_IsString(m) || !m->string)
            return mfs_err_set(err, -EINVAL,
                               "invalid safetensors header in '%s': __metadata__ value of "
                               "'%.64s' is not a string", name, m->string ? m->string : "");
        h->meta_keys[h->n_meta] = strdup(m->string);
        h->meta_values[h->n_meta] = strdup(m->valuestring);
        if (!h->meta_keys[h->n_meta] || !h->meta_values[h->n_meta]) {
            free(h->meta_keys[h->n_meta]);
            free(h->meta_values[h->n_meta]);
            return mfs_err_set(err, -ENOMEM, "out of memory");
        }
        h->n_meta++;
    }
    return 0;
}

/* Fill t from one header entry {"dtype", "shape", "data_offsets"}; begin
 * and nbytes are still relative here (begin = data_offsets[0]). */
static int parse_tensor(const char *name, const cJSON *e, struct mfs_st_tensor *t,
                        uint64_t *end, struct mfs_err *err)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const cJSON *d;
    uint64_t b;

    if (!cJSON_IsObject(e))
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': entry '%.64s' "
                           "is not an object", name, e->string);
    if (!cJSON_IsString(dt) || mfs_st_dtype_parse(dt->valuestring, &t->dtype) < 0)
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': unknown dtype "
                           "of '%.64s'", name, e->string);
    if (!cJSON_IsArray(shape))
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': shape of "
                           "'%.64s' is not an array", name, e->string);
    t->ndim = 0;
    cJSON_ArrayForEach(d, shape) {
        if (t->ndim >= MFS_ST_MAX_DIMS)
            return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': '%.64s' "
                               "has more than %d dimensions", name, e->string,
                               MFS_ST_MAX_DIMS);
        if (json_u64(d, &t->shape[t->ndim]) < 0)
            return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': shape of "
                               "'%.64s' is not a list of integers below 2^53", name,
                               e->string);
        t->ndim++;
    }
    if (cJSON_GetArraySize(offs) != 2 || !cJSON_IsArray(offs) ||
        json_u64(offs->child, &b) < 0 || json_u64(offs->child->next, end) < 0)
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': data_offsets "
                           "of '%.64s' are not two integers below 2^53", name, e->string);
    t->begin = b;
    return 0;
}

struct span {
    uint64_t begin;
    uint64_t end;
    size_t idx;
};

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a;
    const struct span *y = b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

/* Metadata::validate: sorted offsets contiguous from 0, sizes match the
 * shapes, and the buffer ends exactly at the end of the file. */
static int validate(const char *name, struct mfs_st_header *h, struct span *sp,
                    uint64_t file_size, struct mfs_err *err)
{
    uint64_t pos = 0;
    size_t i;
    int k;

    qsort(sp, h->n_tensors, sizeof(*sp), cmp_span);
    for (i = 0; i < h->n_tensors; i++) {
        struct mfs_st_tensor *t = &h->tensors[sp[i].idx];
        uint64_t nelem = 1;
        uint64_t bits = mfs_st_dtype_bits(t->dtype);

        if (sp[i].begin != pos || sp[i].end < sp[i].begin)
            return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': offsets of "
                               "'%.64s' [%llu, %llu) %s", name, t->name,
                               (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end,
                               sp[i].end < sp[i].begin ? "end before begin" :
                               sp[i].begin < pos ? "overlap" : "leave a gap");
        for (k = 0; k < t->ndim; k++) {
            if (t->shape[k] && nelem > UINT64_MAX / t->shape[k])
                return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': shape "
                                   "of '%.64s' overflows", name, t->name);
            nelem *= t->shape[k];
        }
        if (nelem && bits > UINT64_MAX / nelem)
            return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': size of "
                               "'%.64s' overflows", name, t->name);
        if ((nelem * bits) % 8)
            return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': '%.64s' "
                               "is not a whole number of bytes", name, t->name);
        if ((nelem * bits) / 8 != sp[i].end - sp[i].begin)
            return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': '%.64s' "
                               "has %llu bytes, its shape and dtype need %llu", name, t->name,
                               (unsigned long long)(sp[i].end - sp[i].begin),
                               (unsigned long long)(nelem * bits / 8));
        pos = sp[i].end;
    }
    if (h->data_start > file_size || file_size - h->data_start != pos)
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': data ends at "
                           "byte %llu, the file has %llu", name,
                           (unsigned long long)(h->data_start + pos),
                           (unsigned long long)file_size);
    for (i = 0; i < h->n_tensors; i++) {
        struct mfs_st_tensor *t = &h->tensors[sp[i].idx];

        t->nbytes = sp[i].end - sp[i].begin;
        t->begin = h->data_start + sp[i].begin;
    }
    return 0;
}

int mfs_st_header_parse(const char *name, const char *json, size_t n, uint64_t file_size,
                        struct mfs_st_header *h, struct mfs_err *err)
{
    const char *parse_end = NULL;
    const char **names = NULL;
    struct span *sp = NULL;
    const cJSON *e;
    cJSON *root = NULL;
    size_t count = 0;
    size_t bad = 0;
    size_t i;
    int rc = 0;

    memset(h, 0, sizeof(*h));
    if (!name)
        name = "";
    if (n > MFS_ST_MAX_HEADER || 8 + (uint64_t)n > file_size)
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': header length "
                           "%zu does not fit the %llu-byte file", name, n,
                           (unsigned long long)file_size);
    h->header_len = n;
    h->data_start = 8 + (uint64_t)n;
    if (n == 0 || json[0] != '{')
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': does not start "
                           "with '{'", name);
    if (!text_ok((const unsigned char *)json, n, &bad))
        return mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': invalid UTF-8 "
                           "or control byte at offset %zu", name, bad);
    root = cJSON_ParseWithLengthOpts(json, n, &parse_end, 0);
    if (!root) {
        rc = mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': invalid JSON",
                         name);
        goto out;
    }
    for (; parse_end && parse_end < json + n; parse_end++) {
        if (*parse_end != ' ' && *parse_end != '\t' && *parse_end != '\n' &&
            *parse_end != '\r') {
            rc = mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': bytes after "
                             "the JSON object", name);
            goto out_delete_root;
        }
    }
    if (!cJSON_IsObject(root)) {
        rc = mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': not a JSON object",
                         name);
        goto out_delete_root;
    }
    cJSON_ArrayForEach(e, root)
        count++;
    names = calloc(count + 1, sizeof(*names));
    h->tensors = calloc(count + 1, sizeof(*h->tensors));
    sp = calloc(count + 1, sizeof(*sp));
    if (!names || !h->tensors || !sp) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_names;
    }
    i = 0;
    cJSON_ArrayForEach(e, root)
        names[i++] = e->string ? e->string : "";
    qsort(names, count, sizeof(*names), cmp_str_ptr);
    for (i = 1; i < count; i++) {
        if (!strcmp(names[i - 1], names[i])) {
            rc = mfs_err_set(err, -EINVAL, "invalid safetensors header in '%s': duplicate "
                             "key '%.64s'", name, names[i]);
            goto out_free_names;
        }
    }
    cJSON_ArrayForEach(e, root) {
        struct mfs_st_tensor *t;
        uint64_t end = 0;

        if (e->string && !strcmp(e->string, "__metadata__")) {
            rc = parse_metadata(name, e, h, err);
            if (rc < 0)
                goto out_free_names;
            continue;
        }
        t = &h->tensors[h->n_tensors];
        rc = parse_tensor(name, e, t, &end, err);
        if (rc < 0)
            goto out_free_names;
        t->name = strdup(e->string ? e->string : "");
        if (!t->name) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            goto out_free_names;
        }
        sp[h->n_tensors].begin = t->begin;
        sp[h->n_tensors].end = end;
        sp[h->n_tensors].idx = h->n_tensors;
        h->n_tensors++;
    }
    rc = validate(name, h, sp, file_size, err);
out_free_names:
    free(sp);
    free(names);
out_delete_root:
    cJSON_Delete(root);
out:
    if (rc < 0)
        mfs_st_header_release(h);
    return rc;
}
