/*
 * model/shard.c - the save_pretrained split, names, index and shard files
 * (see shard.h).
 */
#include "model/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"

uint64_t mfs_shard_tensor_size(enum mfs_st_dtype dtype, uint64_t numel)
{
    uint64_t bits = dtype == MFS_ST_BOOL ? 1 : mfs_st_dtype_bits(dtype);

    if (numel > UINT64_MAX / 64)
        return UINT64_MAX;
    return (numel * bits + 7) / 8;
}

/* transformers _add_variant: the variant goes before the last extension. */
static int add_variant(const char *name, const char *variant, char *out, size_t size)
{
    const char *dot = strrchr(name, '.');
    int n;

    if (!variant || !*variant)
        n = snprintf(out, size, "%s", name);
    else if (!dot)
        n = snprintf(out, size, "%s.%s", name, variant);
    else
        n = snprintf(out, size, "%.*s.%s%s", (int)(dot - name), name, variant, dot);
    return n < 0 || (size_t)n >= size ? -EINVAL : 0;
}

int mfs_shard_file_name(const char *weights_name, const char *variant, size_t i, size_t n,
                        char *out, size_t size)
{
    char base[512];
    const char *dot;
    int len;

    if (!weights_name || add_variant(weights_name, variant, base, sizeof(base)) < 0)
        return -EINVAL;
    if (n <= 1) {
        len = snprintf(out, size, "%s", base);
        return len < 0 || (size_t)len >= size ? -EINVAL : 0;
    }
    dot = strrchr(base, '.');
    if (!dot || i >= n)
        return -EINVAL;
    len = snprintf(out, size, "%.*s-%05zu-of-%05zu%s", (int)(dot - base), base, i + 1, n, dot);
    return len < 0 || (size_t)len >= size ? -EINVAL : 0;
}

void mfs_shard_plan_release(struct mfs_shard_plan *plan)
{
    size_t i;

    if (!plan)
        return;
    for (i = 0; plan->files && i < plan->n_shards; i++)
        free(plan->files[i]);
    free(plan->files);
    free(plan->shard_of);
    free(plan->index_name);
    memset(plan, 0, sizeof(*plan));
}

int mfs_shard_plan_make(const struct mfs_shard_item *items, size_t n, uint64_t max_shard_size,
                        enum mfs_shard_rule rule, const char *weights_name, const char *variant,
                        struct mfs_shard_plan *plan, struct mfs_err *err)
{
    size_t *count = NULL;                   /* items per shard, aliases included */
    size_t cur = 0;                         /* the shard being filled */
    uint64_t cur_size = 0;
    size_t n_shards = 0;
    char name[512];
    size_t i;
    int rc = 0;

    memset(plan, 0, sizeof(*plan));
    if (max_shard_size == 0)
        return mfs_err_set(err, -EINVAL, "invalid max_shard_size 0");
    plan->shard_of = calloc(n + 1, sizeof(*plan->shard_of));
    count = calloc(n + 2, sizeof(*count));
    if (!plan->shard_of || !count) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_count;
    }
    /* Shards are numbered in creation order.  Transformers: the current
     * shard is always the last.  Hub: oversized tensors are appended as
     * they come, and the one being filled takes the next number when it
     * closes, so its number is assigned late (cur = SIZE_MAX until then). */
    cur = rule == MFS_SHARD_HUB ? SIZE_MAX : 0;
    if (rule != MFS_SHARD_HUB)
        n_shards = 1;
    for (i = 0; i < n; i++) {
        long a = items[i].alias_of;
        uint64_t sz = items[i].nbytes;

        if (a >= 0) {
            if ((size_t)a >= i || items[a].alias_of >= 0) {
                rc = mfs_err_set(err, -EINVAL, "invalid alias of '%.64s'", items[i].name);
                goto out_free_count;
            }
            plan->shard_of[i] = plan->shard_of[a];
            count[plan->shard_of[i] == SIZE_MAX ? n + 1 : plan->shard_of[i]]++;
            continue;
        }
        if (rule == MFS_SHARD_HUB) {
            if (sz > max_shard_size) {
                plan->shard_of[i] = n_shards++;
                count[plan->shard_of[i]]++;
                plan->total_size += sz;
                continue;
            }
            if (cur_size + sz > max_shard_size) {
                /* close the shard being filled: give its items their number */
                size_t k;

                for (k = 0; k < i; k++)
                    if (plan->shard_of[k] == SIZE_MAX)
                        plan->shard_of[k] = n_shards;
                count[n_shards++] = count[n + 1];
                count[n + 1] = 0;
                cur_size = 0;
            }
            plan->shard_of[i] = SIZE_MAX;
            count[n + 1]++;
        } else {
            if (cur_size + sz > max_shard_size && count[cur] > 0) {
                cur = n_shards++;
                cur_size = 0;
            }
            plan->shard_of[i] = cur;
            count[cur]++;
        }
        cur_size += sz;
        plan->total_size += sz;
    }
    if (rule == MFS_SHARD_HUB && count[n + 1] > 0) {
        for (i = 0; i < n; i++)
            if (plan->shard_of[i] == SIZE_MAX)
                plan->shard_of[i] = n_shards;
        n_shards++;
    }
    if (n == 0)
        n_shards = 1;
    plan->n_shards = n_shards;
    plan->files = calloc(n_shards, sizeof(*plan->files));
    if (!plan->files) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_count;
    }
    for (i = 0; i < n_shards; i++) {
        if (mfs_shard_file_name(weights_name, variant, i, n_shards, name, sizeof(name)) < 0) {
            rc = mfs_err_set(err, -EINVAL, "invalid weights name '%s'",
                             weights_name ? weights_name : "");
            goto out_free_count;
        }
        plan->files[i] = strdup(name);
        if (!plan->files[i]) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            goto out_free_count;
        }
    }
    if (n_shards > 1) {
        char idx[600];

        snprintf(idx, sizeof(idx), "%s.index.json", weights_name);
        if (add_variant(idx, variant, name, sizeof(name)) < 0) {
            rc = mfs_err_set(err, -EINVAL, "invalid variant");
            goto out_free_count;
        }
        plan->index_name = strdup(name);
        if (!plan->index_name)
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
    }
out_free_count:
    free(count);
    if (rc < 0)
        mfs_shard_plan_release(plan);
    return rc;
}

/* A JSON string as Python's json.dumps writes it (ensure_ascii=True). */
static int put_py_string(struct mfs_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    int rc = mfs_buf_append(b, "\"", 1);

    while (rc == 0 && *p) {
        uint32_t cp = *p;
        size_t len = 1;

        if (cp >= 0xc0 && cp < 0xe0 && (p[1] & 0xc0) == 0x80) {
            cp = (cp & 0x1f) << 6 | (p[1] & 0x3f);
            len = 2;
        } else if (cp >= 0xe0 && cp < 0xf0 && (p[1] & 0xc0) == 0x80 &&
                   (p[2] & 0xc0) == 0x80) {
            cp = (cp & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
            len = 3;
        } else if (cp >= 0xf0 && cp < 0xf8 && (p[1] & 0xc0) == 0x80 &&
                   (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80) {
            cp = (cp & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
                 (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
            len = 4;
        }
        p += len;
        if (cp == '"')
            rc = mfs_buf_puts(b, "\\\"");
        else if (cp == '\\')
            rc = mfs_buf_puts(b, "\\\\");
        else if (cp == '\n')
            rc = mfs_buf_puts(b, "\\n");
        else if (cp == '\r')
            rc = mfs_buf_puts(b, "\\r");
        else if (cp == '\t')
            rc = mfs_buf_puts(b, "\\t");
        else if (cp == '\b')
            rc = mfs_buf_puts(b, "\\b");
        else if (cp == '\f')
            rc = mfs_buf_puts(b, "\\f");
        else if (cp >= 0x20 && cp < 0x7f)
            rc = mfs_buf_append(b, p - 1, 1);
        else if (cp < 0x10000)
            rc = mfs_buf_printf(b, "\\u%04x", (unsigned)cp);
        else
            rc = mfs_buf_printf(b, "\\u%04x\\u%04x", (unsigned)(0xd800 + ((cp - 0x10000) >> 10)),
                                (unsigned)(0xdc00 + ((cp - 0x10000) & 0x3ff)));
    }
    if (rc == 0)
        rc = mfs_buf_append(b, "\"", 1);
    return rc;
}

struct named {
    const char *name;
    size_t i;
};

static int cmp_named(const void *a, const void *b)
{
    const struct named *x = a;
    const struct named *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : (x->i < y->i ? -1 : x->i > y->i);
}

int mfs_shard_index_json(const struct mfs_shard_plan *plan, const struct mfs_shard_item *items,
                         size_t n, struct mfs_buf *out, struct mfs_err *err)
{
    struct named *s = calloc(n + 1, sizeof(*s));
    size_t i;
    int rc;

    if (!s)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        s[i].name = items[i].name;
        s[i].i = i;
    }
    qsort(s, n, sizeof(*s), cmp_named);
    rc = mfs_buf_printf(out, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n"
                        "  \"weight_map\": {", (unsigned long long)plan->total_size);
    for (i = 0; rc == 0 && i < n; i++) {
        /* a repeated key keeps the later value, as a Python dict does */
        if (i + 1 < n && !strcmp(s[i].name, s[i + 1].name))
            continue;
        rc = mfs_buf_puts(out, i ? ",\n    " : "\n    ");
        rc = rc ? rc : put_py_string(out, s[i].name);
        rc = rc ? rc : mfs_buf_puts(out, ": ");
        rc = rc ? rc : put_py_string(out, plan->files[plan->shard_of[s[i].i]]);
    }
    rc = rc ? rc : mfs_buf_puts(out, n ? "\n  }\n}\n" : "}\n}\n");
    free(s);
    return rc < 0 ? mfs_err_set(err, -ENOMEM, "out of memory") : 0;
}

struct sub_fill {
    mfs_st_fill_fn fill;
    void *ctx;
    const size_t *map;                      /* shard-local index -> caller's index */
};

static int sub_fill(void *ctx, size_t idx, uint64_t off, void *buf, size_t len,
                    struct mfs_err *err)
{
    const struct sub_fill *s = ctx;

    return s->fill(s->ctx, s->map[idx], off, buf, len, err);
}

static int write_file(const char *dir, const char *name, const char *text, size_t len,
                      struct mfs_err *err)
{
    char path[4096];
    ssize_t w;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return mfs_err_set(err, -errno, "cannot create '%s': %s", path, strerror(errno));
    w = write(fd, text, len);
    if (w != (ssize_t)len) {
        close(fd);
        return mfs_err_set(err, -EIO, "cannot write '%s'", path);
    }
    if (close(fd) < 0)
        return mfs_err_set(err, -EIO, "cannot write '%s': %s", path, strerror(errno));
    return 0;
}

int mfs_shard_write(const char *dir, const struct mfs_shard_tensor *tensors, size_t n,
                    uint64_t max_shard_size, enum mfs_shard_rule rule, const char *variant,
                    mfs_st_fill_fn fill, void *ctx, struct mfs_shard_plan *plan,
                    struct mfs_err *err)
{
    static const char *const meta_k[] = { "format" };
    static const char *const meta_v[] = { "pt" };
    struct mfs_shard_plan local;
    struct mfs_shard_plan *pl = plan ? plan : &local;
    struct mfs_shard_item *items = calloc(n + 1, sizeof(*items));
    struct mfs_st_wtensor *w = calloc(n + 1, sizeof(*w));
    size_t *map = calloc(n + 1, sizeof(*map));
    size_t *sub = calloc(n + 1, sizeof(*sub));
    struct mfs_buf index = MFS_BUF_INIT;
    size_t m = 0;
    size_t s;
    size_t i;
    int rc;

    memset(pl, 0, sizeof(*pl));
    if (!items || !w || !map || !sub) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    for (i = 0; i < n; i++) {
        uint64_t numel = 1;
        uint64_t nb;
        int k;

        if (tensors[i].alias_of >= 0)
            continue;
        rc = mfs_st_tensor_nbytes(tensors[i].dtype, tensors[i].ndim, tensors[i].shape, &nb,
                                  err);
        if (rc < 0)
            goto out_free;
        for (k = 0; k < tensors[i].ndim; k++)
            numel *= tensors[i].shape[k];
        items[m].name = tensors[i].name;
        items[m].nbytes = mfs_shard_tensor_size(tensors[i].dtype, numel);
        items[m].alias_of = -1;
        map[m] = i;
        m++;
    }
    rc = mfs_shard_plan_make(items, m, max_shard_size, rule, "model.safetensors", variant, pl,
                             err);
    if (rc < 0)
        goto out_free;
    for (s = 0; s < pl->n_shards; s++) {
        struct sub_fill sf = { fill, ctx, sub };
        char path[4096];
        size_t k = 0;
        int fd;

        for (i = 0; i < m; i++) {
            if (pl->shard_of[i] != s)
                continue;
            w[k].name = tensors[map[i]].name;
            w[k].dtype = tensors[map[i]].dtype;
            w[k].ndim = tensors[map[i]].ndim;
            memcpy(w[k].shape, tensors[map[i]].shape, sizeof(w[k].shape));
            sub[k] = map[i];
            k++;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, pl->files[s]);
        fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) {
            rc = mfs_err_set(err, -errno, "cannot create '%s': %s", path, strerror(errno));
            goto out_free;
        }
        rc = mfs_st_write_fd(fd, w, k, meta_k, meta_v, 1, sub_fill, &sf, NULL, err);
        if (close(fd) < 0 && rc == 0)
            rc = mfs_err_set(err, -EIO, "cannot write '%s': %s", path, strerror(errno));
        if (rc < 0)
            goto out_free;
    }
    if (pl->index_name) {
        rc = mfs_shard_index_json(pl, items, m, &index, err);
        rc = rc ? rc : write_file(dir, pl->index_name, index.data, index.len, err);
    }
out_free:
    mfs_buf_release(&index);
    if (rc < 0 || !plan)
        mfs_shard_plan_release(pl);
    free(sub);
    free(map);
    free(w);
    free(items);
    return rc;
}

struct reshard {
    int *fds;                               /* one per source file */
    size_t *src_of;                         /* per tensor: its source file */
    uint64_t *begin;                        /* per tensor: absolute offset in its file */
};

static int reshard_fill(void *ctx, size_t idx, uint64_t off, void *buf, size_t len,
                        struct mfs_err *err)
{
    const struct reshard *r = ctx;
    size_t done = 0;

    while (done < len) {
        ssize_t got = pread(r->fds[r->src_of[idx]], (char *)buf + done, len - done,
                            (off_t)(r->begin[idx] + off + done));

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return mfs_err_set(err, -EIO, "cannot read source tensor: %s",
                               got < 0 ? strerror(errno) : "file shrank");
        done += (size_t)got;
    }
    return 0;
}

/* Read and validate the header of the open file fd called path. */
static int read_header(int fd, const char *path, struct mfs_st_header *h, struct mfs_err *err)
{
    unsigned char first[8];
    uint64_t size;
    uint64_t n = 0;
    char *json;
    off_t end = lseek(fd, 0, SEEK_END);
    int rc;

    memset(h, 0, sizeof(*h));
    if (end < 0)
        return mfs_err_set(err, -EIO, "cannot read '%s': %s", path, strerror(errno));
    size = (uint64_t)end;
    if (size >= 8 && pread(fd, first, 8, 0) != 8)
        return mfs_err_set(err, -EIO, "cannot read '%s'", path);
    rc = mfs_st_header_len(first, size, &n, err);
    if (rc < 0)
        return mfs_err_wrap(err, rc, "'%s'", path);
    json = malloc((size_t)n + 1);
    if (!json)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (pread(fd, json, (size_t)n, 8) != (ssize_t)n)
        rc = mfs_err_set(err, -EIO, "cannot read '%s'", path);
    else
        rc = mfs_st_header_parse(path, json, (size_t)n, size, h, err);
    free(json);
    return rc;
}

struct by_offset {
    const struct mfs_st_tensor *t;
    size_t src;
};

static int cmp_by_offset(const void *a, const void *b)
{
    const struct by_offset *x = a;
    const struct by_offset *y = b;

    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    return x->t->begin < y->t->begin ? -1 : x->t->begin > y->t->begin;
}

static int cmp_name_only(const void *a, const void *b)
{
    return strcmp(((const struct by_offset *)a)->t->name,
                  ((const struct by_offset *)b)->t->name);
}

int mfs_shard_reshard_files(const char *const *srcs, size_t n_src, const char *dir,
                            uint64_t max_shard_size, const char *variant,
                            struct mfs_shard_plan *plan, struct mfs_err *err)
{
    struct mfs_st_header *h = calloc(n_src + 1, sizeof(*h));
    struct reshard r = { NULL, NULL, NULL };
    struct mfs_shard_tensor *t = NULL;
    struct by_offset *all = NULL;
    size_t n = 0;
    size_t i;
    size_t k;
    int rc = 0;

    r.fds = calloc(n_src + 1, sizeof(*r.fds));
    if (!h || !r.fds) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    for (i = 0; i < n_src; i++)
        r.fds[i] = -1;
    for (i = 0; i < n_src; i++) {
        r.fds[i] = open(srcs[i], O_RDONLY | O_CLOEXEC);
        if (r.fds[i] < 0) {
            rc = mfs_err_set(err, -errno, "cannot open '%s': %s", srcs[i], strerror(errno));
            goto out_close;
        }
        rc = read_header(r.fds[i], srcs[i], &h[i], err);
        if (rc < 0)
            goto out_close;
        n += h[i].n_tensors;
    }
    all = calloc(n + 1, sizeof(*all));
    t = calloc(n + 1, sizeof(*t));
    r.src_of = calloc(n + 1, sizeof(*r.src_of));
    r.begin = calloc(n + 1, sizeof(*r.begin));
    if (!all || !t || !r.src_of || !r.begin) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_close;
    }
    for (i = 0, n = 0; i < n_src; i++) {
        for (k = 0; k < h[i].n_tensors; k++) {
            all[n].t = &h[i].tensors[k];
            all[n].src = i;
            n++;
        }
    }
    qsort(all, n, sizeof(*all), cmp_name_only);
    for (i = 1; i < n; i++) {
        if (!strcmp(all[i - 1].t->name, all[i].t->name)) {
            rc = mfs_err_set(err, -EINVAL, "tensor '%.64s' is in two source files",
                             all[i].t->name);
            goto out_close;
        }
    }
    qsort(all, n, sizeof(*all), cmp_by_offset);
    for (i = 0; i < n; i++) {
        t[i].name = all[i].t->name;
        t[i].dtype = all[i].t->dtype;
        t[i].ndim = all[i].t->ndim;
        memcpy(t[i].shape, all[i].t->shape, sizeof(t[i].shape));
        t[i].alias_of = -1;
        r.src_of[i] = all[i].src;
        r.begin[i] = all[i].t->begin;
    }
    rc = mfs_shard_write(dir, t, n, max_shard_size, MFS_SHARD_TRANSFORMERS, variant,
                         reshard_fill, &r, plan, err);
out_close:
    for (i = 0; i < n_src; i++) {
        if (r.fds[i] >= 0)
            close(r.fds[i]);
        mfs_st_header_release(&h[i]);
    }
out_free:
    free(r.begin);
    free(r.src_of);
    free(t);
    free(all);
    free(r.fds);
    free(h);
    return rc;
}
