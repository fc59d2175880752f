/*
 * model/checkpoint.c - find a repo's checkpoint and list its tensors (see
 * checkpoint.h).
 *
 * Which files make the checkpoint, in transformers' order of preference
 * (modeling_utils.py from_pretrained; a variant v is inserted before the
 * last extension, _add_variant):
 *   1. model.safetensors                     (model.v.safetensors)
 *   2. model.safetensors.index.json          (model.safetensors.index.v.json)
 *      and the shards its weight_map names
 *   3. pytorch_model.bin                     (pytorch_model.v.bin)
 *   4. pytorch_model.bin.index.json          (pytorch_model.bin.index.v.json)
 *   5. with no variant and none of the above: every *.safetensors file at
 *      the repo root (shards without an index, adapter-only repos,
 *      single files with other names such as adapter_model.safetensors).
 * Other *.safetensors files next to a checkpoint found by 1-4 (an adapter,
 * another variant) are not part of it: transformers would not load them
 * with the model.  They stay ordinary files of the tree.
 *
 * An index whose JSON is invalid is logged and treated as absent, so case
 * 5 (or a .bin fallback) still shows what the files hold.  A shard the
 * index names that is not in the repo, and a tensor the index maps to a
 * shard that does not hold it, are logged; the rest still works.
 * A tensor whose name cannot be a file name in tensors/ (empty, ".", "..",
 * or containing '/') is left out and logged.
 */
#include "model/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/pytorch_bin.h"

#define FIRST_READ (64u << 10)              /* one read usually covers a whole header */
#define MAX_INDEX (64u << 20)               /* bytes of an index.json we accept */

/* One tensor found in one file, before duplicates are resolved. */
struct found {
    struct mfs_ckpt_tensor t;               /* t.name owned until moved into the ckpt */
    size_t file;                            /* index into the ckpt's files */
    int indexed;                            /* the index maps t.name to this file */
    size_t seq;                             /* discovery order, for "first file wins" */
};

struct wmap_entry {
    const char *name;                       /* borrowed from the cJSON tree */
    const char *file;
};

struct state {
    const struct mfs_ckpt_io *io;
    const struct mfs_ckpt_file *files;
    size_t n_files;
    struct mfs_ckpt *ckpt;
    struct found *found;
    size_t n_found;
    size_t cap_found;
    struct wmap_entry *wmap;                /* sorted by name; NULL without an index */
    size_t n_wmap;
    cJSON *index;                           /* owns the strings of wmap */
};

static void log_err(const struct state *s, const char *path, const struct mfs_err *e)
{
    if (s->io->log)
        s->io->log(s->io->ctx, path, e);
}

static void log_msg(const struct state *s, const char *path, int code, const char *fmt,
                    const char *a, const char *b)
{
    struct mfs_err e = MFS_ERR_INIT;

    mfs_err_set(&e, code, fmt, a, b);
    log_err(s, path, &e);
}

/* Hand the reason in *e to the caller's err; returns rc. */
static int copy_err(struct mfs_err *err, const struct mfs_err *e, int rc)
{
    if (err)
        *err = *e;
    if (err && !err->code)
        err->code = rc;
    return rc;
}

static const struct mfs_ckpt_file *find_file(const struct state *s, const char *path)
{
    size_t i;

    for (i = 0; i < s->n_files; i++)
        if (s->files[i].path && !strcmp(s->files[i].path, path))
            return &s->files[i];
    return NULL;
}

/* "model.safetensors" + "fp16" -> "model.fp16.safetensors"; the variant
 * goes before the last extension (transformers _add_variant). */
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

static ssize_t read_exact(const struct state *s, const char *path, uint64_t off, size_t len,
                          void *buf, struct mfs_err *err)
{
    ssize_t r = s->io->read(s->io->ctx, path, off, len, buf, err);

    if (r < 0)
        return r;
    if ((size_t)r != len)
        return mfs_err_set(err, -EIO, "cannot read '%s': %zd of %zu bytes at %llu", path, r,
                           len, (unsigned long long)off);
    return r;
}

/* A repo path the index may name: relative, no ".." component. */
static int path_ok(const char *p)
{
    const char *c = p;

    if (!*p || *p == '/')
        return 0;
    while (c) {
        if (!strncmp(c, "..", 2) && (c[2] == '/' || c[2] == '\0'))
            return 0;
        c = strchr(c, '/');
        c = c ? c + 1 : NULL;
    }
    return 1;
}

static int name_ok(const char *n)
{
    return *n && strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/');
}

static int cmp_wmap(const void *a, const void *b)
{
    return strcmp(((const struct wmap_entry *)a)->name, ((const struct wmap_entry *)b)->name);
}

static const struct wmap_entry *wmap_find(const struct state *s, const char *name)
{
    struct wmap_entry key = { name, NULL };

    if (!s->wmap)
        return NULL;
    return bsearch(&key, s->wmap, s->n_wmap, sizeof(key), cmp_wmap);
}

/* Load the index at path: weight_map into s->wmap.  -EINVAL: invalid
 * (logged by the caller), -EIO etc. from io. */
static int load_index(struct state *s, const struct mfs_ckpt_file *f, struct mfs_err *err)
{
    const cJSON *wm;
    const cJSON *e;
    char *text;
    size_t n = 0;
    int rc;

    if (f->size > MAX_INDEX)
        return mfs_err_set(err, -EINVAL, "index '%s' is larger than %u bytes", f->path,
                           MAX_INDEX);
    text = malloc(f->size + 1);
    if (!text)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    rc = (int)read_exact(s, f->path, 0, f->size, text, err);
    if (rc < 0)
        goto out_free_text;
    rc = 0;
    s->index = cJSON_ParseWithLength(text, f->size);
    wm = cJSON_GetObjectItemCaseSensitive(s->index, "weight_map");
    if (!cJSON_IsObject(s->index) || !cJSON_IsObject(wm)) {
        rc = mfs_err_set(err, -EINVAL, "invalid index '%s': not JSON with a weight_map object",
                         f->path);
        goto out_free_text;
    }
    cJSON_ArrayForEach(e, wm)
        n++;
    s->wmap = calloc(n + 1, sizeof(*s->wmap));
    if (!s->wmap) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_text;
    }
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !e->string) {
            rc = mfs_err_set(err, -EINVAL, "invalid index '%s': weight_map value of '%.64s' "
                             "is not a file name", f->path, e->string ? e->string : "");
            goto out_free_text;
        }
        s->wmap[s->n_wmap].name = e->string;
        s->wmap[s->n_wmap].file = e->valuestring;
        s->n_wmap++;
    }
    qsort(s->wmap, s->n_wmap, sizeof(*s->wmap), cmp_wmap);
out_free_text:
    free(text);
    if (rc < 0) {
        free(s->wmap);
        s->wmap = NULL;
        s->n_wmap = 0;
        cJSON_Delete(s->index);
        s->index = NULL;
    }
    return rc;
}

/* Add path to the checkpoint's file list unless it is there.  OUT: *idx. */
static int add_file(struct state *s, const char *path, size_t *idx)
{
    struct mfs_ckpt *c = s->ckpt;
    char **nf;
    size_t i;

    for (i = 0; i < c->n_files; i++) {
        if (!strcmp(c->files[i], path)) {
            *idx = i;
            return 0;
        }
    }
    nf = realloc(c->files, (c->n_files + 1) * sizeof(*nf));
    if (!nf)
        return -ENOMEM;
    c->files = nf;
    c->files[c->n_files] = strdup(path);
    if (!c->files[c->n_files])
        return -ENOMEM;
    *idx = c->n_files++;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int push_found(struct state *s, const char *name, enum mfs_st_dtype dtype, int ndim,
                      const uint64_t *shape, uint64_t offset, uint64_t nbytes, size_t file)
{
    const struct wmap_entry *w;
    struct found *f;

    if (s->n_found == s->cap_found) {
        size_t cap = s->cap_found ? 2 * s->cap_found : 64;
        struct found *nf = realloc(s->found, cap * sizeof(*nf));

        if (!nf)
            return -ENOMEM;
        s->found = nf;
        s->cap_found = cap;
    }
    f = &s->found[s->n_found];
    memset(f, 0, sizeof(*f));
    f->t.name = strdup(name);
    if (!f->t.name)
        return -ENOMEM;
    f->t.dtype = dtype;
    f->t.ndim = ndim;
    memcpy(f->t.shape, shape, sizeof(f->t.shape[0]) * (size_t)ndim);
    f->t.offset = offset;
    f->t.nbytes = nbytes;
    f->file = file;
    w = wmap_find(s, name);
    f->indexed = w && !strcmp(w->file, s->ckpt->files[file]);
    f->seq = s->n_found;
    s->n_found++;
    return 0;
}

/* Read and validate one safetensors header.  -EINVAL: the file is
 * invalid (logged by the caller); other errors come from io. */
static int read_st(struct state *s, const struct mfs_ckpt_file *f, struct mfs_st_header *h,
                   struct mfs_err *err)
{
    size_t first = f->size < FIRST_READ ? (size_t)f->size : FIRST_READ;
    unsigned char *buf;
    char *json = NULL;
    uint64_t n = 0;
    int rc;

    memset(h, 0, sizeof(*h));
    buf = calloc(1, first + 8);
    if (!buf)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (first < 8) {
        rc = mfs_st_header_len(buf, f->size, &n, err);
        goto out_free_buf;
    }
    rc = (int)read_exact(s, f->path, 0, first, buf, err);
    if (rc < 0)
        goto out_free_buf;
    rc = mfs_st_header_len(buf, f->size, &n, err);
    if (rc < 0)
        goto out_wrap;
    if (8 + n <= first) {
        rc = mfs_st_header_parse(f->path, (const char *)buf + 8, (size_t)n, f->size, h, err);
        goto out_free_buf;
    }
    json = malloc((size_t)n + 1);
    if (!json) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_buf;
    }
    rc = (int)read_exact(s, f->path, 8, (size_t)n, json, err);
    if (rc < 0)
        goto out_free_json;
    rc = mfs_st_header_parse(f->path, json, (size_t)n, f->size, h, err);
out_free_json:
    free(json);
out_wrap:
    if (rc < 0 && n == 0)
        mfs_err_wrap(err, rc, "'%s'", f->path);
out_free_buf:
    free(buf);
    return rc > 0 ? 0 : rc;
}

static int load_st_file(struct state *s, const struct mfs_ckpt_file *f, struct mfs_err *err)
{
    struct mfs_err e = MFS_ERR_INIT;
    struct mfs_st_header h;
    size_t idx;
    size_t i;
    int rc;

    rc = read_st(s, f, &h, &e);
    if (rc == -EINVAL) {
        log_err(s, f->path, &e);
        return 0;
    }
    if (rc < 0)
        return copy_err(err, &e, rc);
    rc = add_file(s, f->path, &idx);
    for (i = 0; rc == 0 && i < h.n_tensors; i++) {
        const struct mfs_st_tensor *t = &h.tensors[i];

        if (!name_ok(t->name)) {
            log_msg(s, f->path, -EINVAL, "tensor '%.64s' in '%s' left out: not a file name",
                    t->name, f->path);
            continue;
        }
        rc = push_found(s, t->name, t->dtype, t->ndim, t->shape, t->begin, t->nbytes, idx);
    }
    mfs_st_header_release(&h);
    if (rc < 0)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    return 0;
}

struct pt_ctx {
    const struct state *s;
    const char *path;
};

static ssize_t pt_read(void *ctx, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    const struct pt_ctx *p = ctx;

    return p->s->io->read(p->s->io->ctx, p->path, off, len, buf, err);
}

static int load_pt_file(struct state *s, const struct mfs_ckpt_file *f, struct mfs_err *err)
{
    struct pt_ctx pc = { s, f->path };
    struct mfs_err e = MFS_ERR_INIT;
    struct mfs_pt_file pf;
    size_t idx;
    size_t i;
    int rc;

    rc = mfs_pt_open(f->path, f->size, pt_read, &pc, &pf, &e);
    if (rc == -EINVAL) {
        log_err(s, f->path, &e);
        return 0;
    }
    if (rc < 0)
        return copy_err(err, &e, rc);
    for (i = 0; i < pf.n_skipped; i++)
        log_msg(s, f->path, -EINVAL, "tensor left out of '%s': %s", f->path, pf.skipped[i]);
    rc = add_file(s, f->path, &idx);
    for (i = 0; rc == 0 && i < pf.n_tensors; i++) {
        const struct mfs_pt_tensor *t = &pf.tensors[i];

        if (!name_ok(t->name)) {
            log_msg(s, f->path, -EINVAL, "tensor '%.64s' in '%s' left out: not a file name",
                    t->name, f->path);
            continue;
        }
        rc = push_found(s, t->name, t->dtype, t->ndim, t->shape, t->offset, t->nbytes, idx);
    }
    mfs_pt_release(&pf);
    if (rc < 0)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    return 0;
}

/* Paths of the files to load, sorted: the shards of the index, or the
 * single file, or the root-level files with the suffix.  OUT: *paths
 * (strings borrowed from s->files or s->index). */
static int pick_shards(struct state *s, const char *single, const char *suffix,
                       const char ***pathsp, size_t *np)
{
    const char **paths;
    size_t n = 0;
    size_t i;
    size_t cap = s->wmap ? s->n_wmap : s->n_files;

    *pathsp = NULL;
    *np = 0;
    paths = calloc(cap + 1, sizeof(*paths));
    if (!paths)
        return -ENOMEM;
    if (single) {
        paths[n++] = find_file(s, single)->path;
    } else if (s->wmap) {
        for (i = 0; i < s->n_wmap; i++)
            paths[n++] = s->wmap[i].file;
    } else {
        size_t sl = strlen(suffix);

        for (i = 0; i < s->n_files; i++) {
            const char *p = s->files[i].path;
            size_t pl = p ? strlen(p) : 0;

            if (p && !strchr(p, '/') && pl > sl && !strcmp(p + pl - sl, suffix))
                paths[n++] = p;
        }
    }
    qsort(paths, n, sizeof(*paths), cmp_str_ptr);
    for (i = 0; n > 1 && i + 1 < n;) {          /* unique */
        if (!strcmp(paths[i], paths[i + 1])) {
            memmove(&paths[i + 1], &paths[i + 2], (n - i - 2) * sizeof(*paths));
            n--;
        } else {
            i++;
        }
    }
    *pathsp = paths;
    *np = n;
    return 0;
}

static int load_files(struct state *s, const char *single, const char *suffix, int pytorch,
                      const char *index_path, struct mfs_err *err)
{
    const char **paths = NULL;
    size_t n = 0;
    size_t i;
    int rc;

    rc = pick_shards(s, single, suffix, &paths, &n);
    if (rc < 0)
        return mfs_err_set(err, rc, "out of memory");
    for (i = 0; i < n; i++) {
        const struct mfs_ckpt_file *f = find_file(s, paths[i]);

        if (!f || !path_ok(paths[i])) {
            log_msg(s, index_path ? index_path : paths[i], -ENOENT,
                    "shard '%s' named by '%s' is not in the repo", paths[i],
                    index_path ? index_path : "");
            continue;
        }
        rc = pytorch ? load_pt_file(s, f, err) : load_st_file(s, f, err);
        if (rc < 0)
            break;
    }
    free(paths);
    return rc;
}

static int cmp_found(const void *a, const void *b)
{
    const struct found *x = a;
    const struct found *y = b;
    int c = strcmp(x->t.name, y->t.name);

    if (c)
        return c;
    if (x->indexed != y->indexed)
        return x->indexed ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Resolve duplicates, check the index against what the shards hold, and
 * move the tensors into the checkpoint, sorted by name. */
static int finish(struct state *s, const char *index_path, struct mfs_err *err)
{
    struct mfs_ckpt *c = s->ckpt;
    size_t i;

    if (s->n_found > 1)
        qsort(s->found, s->n_found, sizeof(*s->found), cmp_found);
    c->tensors = calloc(s->n_found + 1, sizeof(*c->tensors));
    if (!c->tensors)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (i = 0; i < s->n_found; i++) {
        struct found *f = &s->found[i];

        if (c->n_tensors && !strcmp(c->tensors[c->n_tensors - 1].name, f->t.name)) {
            log_msg(s, c->files[f->file], -EINVAL, "tensor '%.64s' also in '%s' ignored",
                    f->t.name, c->files[f->file]);
            free(f->t.name);
            f->t.name = NULL;
            continue;
        }
        c->tensors[c->n_tensors] = f->t;
        c->tensors[c->n_tensors].file = c->files[f->file];
        f->t.name = NULL;
        c->n_tensors++;
    }
    for (i = 0; i < s->n_wmap; i++) {
        const struct mfs_ckpt_tensor *t = mfs_ckpt_find(c, s->wmap[i].name);
        size_t k;
        int loaded = 0;

        for (k = 0; k < c->n_files; k++)
            loaded |= !strcmp(c->files[k], s->wmap[i].file);
        if (loaded && (!t || strcmp(t->file, s->wmap[i].file)))
            log_msg(s, index_path, -EINVAL, "index maps '%.64s' to '%s' but it is not there",
                    s->wmap[i].name, s->wmap[i].file);
    }
    return 0;
}

static int cmp_files(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mfs_ckpt_open(const struct mfs_ckpt_file *files, size_t n, const char *variant,
                  const struct mfs_ckpt_io *io, struct mfs_ckpt **ckptp, struct mfs_err *err)
{
    char st_single[512];
    char st_index[512];
    char pt_single[512];
    char pt_index[512];
    struct mfs_err e = MFS_ERR_INIT;
    struct state s;
    const char *index_path = NULL;
    size_t i;
    int rc = 0;

    *ckptp = NULL;
    memset(&s, 0, sizeof(s));
    s.io = io;
    s.files = files;
    s.n_files = n;
    if (add_variant("model.safetensors", variant, st_single, sizeof(st_single)) < 0 ||
        add_variant("model.safetensors.index.json", variant, st_index, sizeof(st_index)) < 0 ||
        add_variant("pytorch_model.bin", variant, pt_single, sizeof(pt_single)) < 0 ||
        add_variant("pytorch_model.bin.index.json", variant, pt_index, sizeof(pt_index)) < 0)
        return mfs_err_set(err, -EINVAL, "invalid variant '%.64s'", variant);
    s.ckpt = calloc(1, sizeof(*s.ckpt));
    if (!s.ckpt)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (find_file(&s, st_single)) {
        s.ckpt->format = MFS_CKPT_SAFETENSORS;
        rc = load_files(&s, st_single, NULL, 0, NULL, err);
        goto out_finish;
    }
    if (find_file(&s, st_index)) {
        rc = load_index(&s, find_file(&s, st_index), &e);
        if (rc == 0) {
            s.ckpt->format = MFS_CKPT_SAFETENSORS;
            index_path = st_index;
            rc = load_files(&s, NULL, NULL, 0, st_index, err);
            goto out_finish;
        }
        if (rc != -EINVAL) {
            copy_err(err, &e, rc);
            goto out_free;
        }
        log_err(&s, st_index, &e);
        rc = 0;
    }
    if (find_file(&s, pt_single)) {
        s.ckpt->format = MFS_CKPT_PYTORCH;
        rc = load_files(&s, pt_single, NULL, 1, NULL, err);
        goto out_finish;
    }
    if (find_file(&s, pt_index)) {
        mfs_err_clear(&e);
        rc = load_index(&s, find_file(&s, pt_index), &e);
        if (rc == 0) {
            s.ckpt->format = MFS_CKPT_PYTORCH;
            index_path = pt_index;
            rc = load_files(&s, NULL, NULL, 1, pt_index, err);
            goto out_finish;
        }
        if (rc != -EINVAL) {
            copy_err(err, &e, rc);
            goto out_free;
        }
        log_err(&s, pt_index, &e);
        rc = 0;
    }
    if (!variant || !*variant) {
        rc = load_files(&s, NULL, ".safetensors", 0, NULL, err);
        if (rc == 0 && s.ckpt->n_files > 0)
            s.ckpt->format = MFS_CKPT_SAFETENSORS;
    }
out_finish:
    if (rc == 0)
        rc = finish(&s, index_path, err);
    if (rc == 0 && s.ckpt->n_files == 0)
        s.ckpt->format = MFS_CKPT_NONE;
    if (s.ckpt->n_files > 1)
        qsort(s.ckpt->files, s.ckpt->n_files, sizeof(*s.ckpt->files), cmp_files);
out_free:
    for (i = 0; i < s.n_found; i++)
        free(s.found[i].t.name);
    free(s.found);
    free(s.wmap);
    cJSON_Delete(s.index);
    if (rc < 0) {
        if (err && !err->code)
            mfs_err_set(err, rc, "cannot open checkpoint: error %d", rc);
        mfs_ckpt_free(&s.ckpt);
        return rc;
    }
    *ckptp = s.ckpt;
    return 0;
}

void mfs_ckpt_free(struct mfs_ckpt **ckptp)
{
    struct mfs_ckpt *c;
    size_t i;

    if (!ckptp || !*ckptp)
        return;
    c = *ckptp;
    for (i = 0; i < c->n_tensors; i++)
        free(c->tensors[i].name);
    free(c->tensors);
    for (i = 0; i < c->n_files; i++)
        free(c->files[i]);
    free(c->files);
    free(c);
    *ckptp = NULL;
}

static int cmp_tensor_name(const void *key, const void *elem)
{
    return strcmp(key, ((const struct mfs_ckpt_tensor *)elem)->name);
}

const struct mfs_ckpt_tensor *mfs_ckpt_find(const struct mfs_ckpt *ckpt, const char *name)
{
    if (!ckpt || !name || !ckpt->n_tensors)
        return NULL;
    return bsearch(name, ckpt->tensors, ckpt->n_tensors, sizeof(*ckpt->tensors),
                   cmp_tensor_name);
}
