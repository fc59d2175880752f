/*
 * fs/reshard.c - rewrite a mount's safetensors checkpoints into shards of at
 * most max_shard_size bytes, as staged changes (see reshard.h).
 *
 * For each checkpoint (the plain one and every variant found by name):
 *   1. model/checkpoint.c reads its headers through the merged tree; any
 *      file it had to leave out (a missing shard, an invalid or truncated
 *      header, a tensor the index misplaces) makes the checkpoint
 *      incomplete, and it is left alone: it is probably still being copied.
 *   2. It needs a reshard when a weight file is larger than the limit and
 *      some file of it (or its index) is staged, i.e. it was written in
 *      this mount; or always when forced (max_shard_size changed).  An
 *      untouched checkpoint of the commit is never rewritten just because
 *      some unrelated file is pushed (docs/design.md: "A safetensors
 *      checkpoint written into the mount ... is resharded").
 *   3. The tensors are put in state-dict order (config.json's architecture,
 *      model/state_dict.c) and split by model/shard.c's transformers rule.
 *   4. If the files already are the plan's (same names, same header bytes,
 *      same sizes, the same index text, nothing extra), nothing is done:
 *      resharding is idempotent, so a forced run after a run is a no-op.
 *   5. Each new shard is a stage writer: its header from mfs_st_layout()
 *      with metadata {"format": "pt"} (byte-identical to save_pretrained's)
 *      is written, and each tensor's bytes are linked from where they are
 *      now, a staged file (mfs_stage_writer_link) or an unchanged blob of
 *      the commit (mfs_stage_writer_link_remote): no tensor byte is read or
 *      copied.  The index JSON is written as a small file.
 * All checkpoints' writers, plus whiteouts of the old files the plan does
 * not reuse, go into ONE mfs_stage_commit(), so a kill -9 at any moment
 * leaves either every old checkpoint or every new one.
 *
 * Old files are whited out, never just forgotten (MFS_STAGE_OP_REMOVE):
 * the merged tree does not say whether a staged path also exists in the
 * commit, and forgetting such a path would bring the commit's old shard
 * back.  A whiteout of a path the commit lacks costs one stage row, and a
 * push drops it (fs/push.h).
 */
#include "fs/reshard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "model/shard.h"

#define MAX_CONFIG (16u << 20)              /* bytes of config.json we read */
#define NAME_MAX_LEN 512                    /* file names we build */

/* The checkpoint reader's context: the merged tree plus a count of files
 * it left out. */
struct io_ctx {
    const struct mfs_reshard_in *in;
    size_t n_logged;                        /* files or tensors left out: incomplete */
};

/* What one run collects for its single commit. */
struct batch {
    struct mfs_stage_writer **writers;      /* owned; closed at the end */
    size_t nw;
    size_t cap_w;
    struct mfs_stage_change *changes;       /* paths owned (in paths) */
    char **paths;
    size_t nc;
    size_t cap_c;
};

static ssize_t io_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                       struct mfs_err *err)
{
    const struct io_ctx *c = ctx;

    return c->in->read(c->in->read_ctx, path, off, len, buf, err);
}

static void io_log(void *ctx, const char *path, const struct mfs_err *err)
{
    struct io_ctx *c = ctx;

    c->n_logged++;
}

static const struct mfs_reshard_file *find_file(const struct mfs_reshard_in *in,
                                                const char *path)
{
    size_t i;

    for (i = 0; i < in->n_files; i++)
        if (in->files[i].path && !strcmp(in->files[i].path, path))
            return &in->files[i];
    return NULL;
}

/* transformers _add_variant: the variant goes before the last extension. */
static int add_variant(const char *name, const char *variant, char *out, size_t size)
{
    const char *dot = strrchr(name, '.');
    int n;

    if (!variant)
        n = snprintf(out, size, "%s", name);
    else
        n = snprintf(out, size, "%.*s.%s%s", (int)(dot - name), name, variant, dot);
    return n < 0 || (size_t)n >= size ? -EINVAL : 0;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);

    return len >= sl && !memcmp(s + len - sl, suffix, sl);
}

/* True iff s[0..len) ends in "-NNNNN-of-NNNNN" (a shard, not a variant). */
static int is_shard_suffix(const char *s, size_t len)
{
    static const char pat[] = "-00000-of-00000";
    size_t pl = sizeof(pat) - 1;
    size_t i;

    if (len < pl)
        return 0;
    s += len - pl;
    for (i = 0; i < pl; i++) {
        if (pat[i] == '0' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return 0;
    }
    return 1;
}

/* The variant a root file names: 1 with *v = NULL (plain) or a fresh
 * string, 0 when the file is no checkpoint entry point, -ENOMEM. */
static int variant_of(const char *path, char **v)
{
    static const char idx_pre[] = "model.safetensors.index.";
    static const char st_pre[] = "model.";
    size_t len = strlen(path);
    const char *mid = NULL;
    size_t ml = 0;

    *v = NULL;
    if (strchr(path, '/'))
        return 0;
    if (!strcmp(path, "model.safetensors") || !strcmp(path, "model.safetensors.index.json"))
        return 1;
    if (!strncmp(path, idx_pre, sizeof(idx_pre) - 1) && ends_with(path, len, ".json")) {
        mid = path + sizeof(idx_pre) - 1;
        ml = len - (sizeof(idx_pre) - 1) - 5;
    } else if (!strncmp(path, st_pre, sizeof(st_pre) - 1) &&
               ends_with(path, len, ".safetensors") &&
               len > sizeof(st_pre) - 1 + 12) {
        mid = path + sizeof(st_pre) - 1;
        ml = len - (sizeof(st_pre) - 1) - 12;
        if (is_shard_suffix(mid, ml))
            return 0;
    }
    if (!mid || ml == 0)
        return 0;
    *v = strndup(mid, ml);
    return *v ? 1 : -ENOMEM;
}

static int batch_add_writer(struct batch *b, struct mfs_stage_writer *w)
{
    if (b->nw == b->cap_w) {
        size_t cap = b->cap_w ? 2 * b->cap_w : 16;
        struct mfs_stage_writer **nw = realloc(b->writers, cap * sizeof(*nw));

        if (!nw)
            return -ENOMEM;
        b->writers = nw;
        b->cap_w = cap;
    }
    b->writers[b->nw++] = w;
    return 0;
}

static int batch_add_whiteout(struct batch *b, const char *path)
{
    char *p;

    if (b->nc == b->cap_c) {
        size_t cap = b->cap_c ? 2 * b->cap_c : 16;
        struct mfs_stage_change *nc = realloc(b->changes, cap * sizeof(*nc));
        char **np;

        if (!nc)
            return -ENOMEM;
        b->changes = nc;
        np = realloc(b->paths, cap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        b->paths = np;
        b->cap_c = cap;
    }
    p = strdup(path);
    if (!p)
        return -ENOMEM;
    memset(&b->changes[b->nc], 0, sizeof(b->changes[b->nc]));
    b->changes[b->nc].op = MFS_STAGE_OP_WHITEOUT;
    b->changes[b->nc].path = p;
    b->paths[b->nc] = p;
    b->nc++;
    return 0;
}

static void batch_release(struct batch *b)
{
    size_t i;

    for (i = 0; i < b->nw; i++)
        mfs_stage_writer_close(&b->writers[i]);
    for (i = 0; i < b->nc; i++)
        free(b->paths[i]);
    free(b->writers);
    free(b->changes);
    free(b->paths);
    memset(b, 0, sizeof(*b));
}

/* Whole content of a small file of the tree; NULL *textp when absent.
 * OUT: *textp (free()), *lenp. */
static int read_small(const struct mfs_reshard_in *in, const char *path, uint64_t limit,
                      char **textp, size_t *lenp, struct mfs_err *err)
{
    const struct mfs_reshard_file *f = find_file(in, path);
    char *text;
    ssize_t got;

    *textp = NULL;
    *lenp = 0;
    if (!f)
        return 0;
    if (f->size > limit)
        return mfs_err_set(err, -EIO, "cannot read '%s': larger than %llu bytes", path,
                           (unsigned long long)limit);
    text = malloc((size_t)f->size + 1);
    if (!text)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    got = in->read(in->read_ctx, path, 0, (size_t)f->size, text, err);
    if (got >= 0 && (uint64_t)got != f->size)
        got = mfs_err_set(err, -EIO, "cannot read '%s': %zd of %llu bytes", path, got,
                          (unsigned long long)f->size);
    if (got < 0) {
        free(text);
        return (int)got;
    }
    text[f->size] = '\0';
    *textp = text;
    *lenp = (size_t)f->size;
    return 0;
}

/* One checkpoint's tensors in state-dict order, and the plan. */
struct work {
    const struct mfs_ckpt *ckpt;
    size_t *order;                          /* state-dict position -> ckpt tensor */
    struct mfs_shard_item *items;           /* in state-dict order */
    struct mfs_shard_plan plan;
    char index_path[NAME_MAX_LEN];          /* the variant's index name */
    char single_path[NAME_MAX_LEN];         /* the variant's single-file name */
};

static const char *const meta_keys[] = { "format" };
static const char *const meta_values[] = { "pt" };

/* Header bytes of shard s into out (appended).  OUT: begin[k] for the k-th
 * tensor of the shard in state-dict order (absolute offsets), *file_size,
 * idx[k] = the ckpt tensor; *np = tensors in the shard. */
static int shard_layout(const struct work *wk, size_t s, struct mfs_st_wtensor *wt,
                        size_t *idx, uint64_t *begin, size_t *np, uint64_t *file_size,
                        struct mfs_buf *out, struct mfs_err *err)
{
    size_t k = 0;
    size_t i;

    for (i = 0; i < wk->ckpt->n_tensors; i++) {
        const struct mfs_ckpt_tensor *t;

        if (wk->plan.shard_of[i] != s)
            continue;
        t = &wk->ckpt->tensors[wk->order[i]];
        wt[k].name = t->name;
        wt[k].dtype = t->dtype;
        wt[k].ndim = t->ndim;
        memset(wt[k].shape, 0, sizeof(wt[k].shape));
        memcpy(wt[k].shape, t->shape, sizeof(t->shape[0]) * (size_t)t->ndim);
        idx[k] = wk->order[i];
        k++;
    }
    *np = k;
    return mfs_st_layout(wt, k, meta_keys, meta_values, 1, out, NULL, begin, file_size, err);
}

static int is_plan_file(const struct work *wk, const char *path)
{
    size_t s;

    for (s = 0; s < wk->plan.n_shards; s++)
        if (!strcmp(wk->plan.files[s], path))
            return 1;
    return wk->plan.index_name && !strcmp(wk->plan.index_name, path);
}

/* True iff path exists with exactly size bytes beginning with want[0..n). */
static int file_matches(const struct mfs_reshard_in *in, const char *path, const char *want,
                        size_t n, uint64_t size, struct mfs_err *err)
{
    const struct mfs_reshard_file *f = find_file(in, path);
    char *have;
    ssize_t got;
    int same;

    if (!f || f->size != size)
        return 0;
    have = malloc(n + 1);
    if (!have)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    got = in->read(in->read_ctx, path, 0, n, have, err);
    if (got < 0) {
        free(have);
        return (int)got;
    }
    same = (size_t)got == n && !memcmp(have, want, n);
    free(have);
    return same;
}

/* 1 when the checkpoint's files already are exactly the plan's, 0 if
 * not, or a negative errno. */
static int already_planned(const struct mfs_reshard_in *in, const struct work *wk,
                           struct mfs_st_wtensor *wt, size_t *idx, uint64_t *begin,
                           struct mfs_err *err)
{
    struct mfs_buf hdr = MFS_BUF_INIT;
    size_t s;
    size_t i;
    int rc = 1;

    for (i = 0; rc == 1 && i < wk->ckpt->n_files; i++)
        rc = is_plan_file(wk, wk->ckpt->files[i]);
    if (rc == 1 && !wk->plan.index_name && find_file(in, wk->index_path))
        rc = 0;
    for (s = 0; rc == 1 && s < wk->plan.n_shards; s++) {
        uint64_t file_size = 0;
        size_t n = 0;

        mfs_buf_reset(&hdr);
        rc = shard_layout(wk, s, wt, idx, begin, &n, &file_size, &hdr, err);
        if (rc == 0)
            rc = file_matches(in, wk->plan.files[s], hdr.data, hdr.len, file_size, err);
    }
    if (rc == 1 && wk->plan.index_name) {
        mfs_buf_reset(&hdr);
        rc = mfs_shard_index_json(&wk->plan, wk->items, wk->ckpt->n_tensors, &hdr, err);
        if (rc == 0)
            rc = file_matches(in, wk->plan.index_name, hdr.data, hdr.len, hdr.len, err);
    }
    mfs_buf_release(&hdr);
    return rc;
}

/* Open a writer for path holding bytes[0..n).  OUT: added to b. */
static int write_small(struct mfs_stage *s, struct batch *b, const char *path,
                       const char *bytes, size_t n, struct mfs_stage_writer **wp,
                       struct mfs_err *err)
{
    struct mfs_stage_writer *w = NULL;
    ssize_t wr;
    int rc;

    *wp = NULL;
    rc = mfs_stage_writer_open(s, path, MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, err);
    if (rc < 0)
        return rc;
    rc = batch_add_writer(b, w);
    if (rc < 0) {
        mfs_stage_writer_close(&w);
        return mfs_err_set(err, rc, "out of memory");
    }
    wr = n ? mfs_stage_writer_write(w, 0, bytes, n, err) : 0;
    if (wr >= 0 && (size_t)wr != n)
        wr = mfs_err_set(err, -EIO, "cannot stage '%s': short write", path);
    *wp = w;
    return wr < 0 ? (int)wr : 0;
}

/* Stage the new shards and index of wk into b, and whiteouts of the old
 * files the plan does not reuse. */
static int build(struct mfs_stage *s, const struct mfs_reshard_in *in, const struct work *wk,
                 struct batch *b, struct mfs_st_wtensor *wt, size_t *idx, uint64_t *begin,
                 struct mfs_err *err)
{
    struct mfs_buf hdr = MFS_BUF_INIT;
    size_t sh;
    size_t i;
    int rc = 0;

    for (sh = 0; rc == 0 && sh < wk->plan.n_shards; sh++) {
        const char *path = wk->plan.files[sh];
        struct mfs_stage_writer *w = NULL;
        uint64_t file_size = 0;
        size_t n = 0;
        size_t k;

        mfs_buf_reset(&hdr);
        rc = shard_layout(wk, sh, wt, idx, begin, &n, &file_size, &hdr, err);
        if (rc == 0)
            rc = write_small(s, b, path, hdr.data, hdr.len, &w, err);
        for (k = 0; rc == 0 && k < n; k++) {
            const struct mfs_ckpt_tensor *t = &wk->ckpt->tensors[idx[k]];
            const struct mfs_reshard_file *src = find_file(in, t->file);
            ssize_t got;

            if (t->nbytes == 0)
                continue;
            if (src && src->remote)
                got = mfs_stage_writer_link_remote(w, begin[k], src->remote, t->offset,
                                                   t->nbytes, err);
            else
                got = mfs_stage_writer_link(w, begin[k], t->file, t->offset, t->nbytes, err);
            if (got < 0)
                rc = mfs_err_wrap(err, (int)got, "cannot link '%.64s' into '%s'", t->name,
                                  path);
        }
        if (rc == 0 && mfs_stage_writer_size(w) != file_size)
            rc = mfs_err_set(err, -EIO, "resharded '%s' is %llu bytes, not %llu", path,
                             (unsigned long long)mfs_stage_writer_size(w),
                             (unsigned long long)file_size);
    }
    if (rc == 0 && wk->plan.index_name) {
        struct mfs_stage_writer *w = NULL;

        mfs_buf_reset(&hdr);
        rc = mfs_shard_index_json(&wk->plan, wk->items, wk->ckpt->n_tensors, &hdr, err);
        if (rc == 0)
            rc = write_small(s, b, wk->plan.index_name, hdr.data, hdr.len, &w, err);
    }
    for (i = 0; rc == 0 && i < wk->ckpt->n_files; i++)
        if (!is_plan_file(wk, wk->ckpt->files[i]))
            rc = batch_add_whiteout(b, wk->ckpt->files[i]);
    if (rc == 0 && find_file(in, wk->index_path) && !is_plan_file(wk, wk->index_path))
        rc = batch_add_whiteout(b, wk->index_path);
    if (rc == -ENOMEM && err && !err->code)
        mfs_err_set(err, rc, "out of memory");
    mfs_buf_release(&hdr);
    return rc;
}

static uint64_t numel_of(const struct mfs_ckpt_tensor *t)
{
    uint64_t n = 1;
    int k;

    for (k = 0; k < t->ndim; k++)
        n = t->shape[k] && n > UINT64_MAX / t->shape[k] ? UINT64_MAX : n * t->shape[k];
    return n;
}

/* True iff some *.safetensors file is larger than max: only then can
 * an unforced run have work. */
static int any_big(const struct mfs_reshard_in *in, uint64_t max)
{
    size_t i;

    for (i = 0; i < in->n_files; i++) {
        const char *p = in->files[i].path;

        if (p && in->files[i].size > max && ends_with(p, strlen(p), ".safetensors"))
            return 1;
    }
    return 0;
}

/* Plan and stage one checkpoint (variant NULL: the plain one) into b.
 * Returns 1 when it was rewritten, 0 when left alone, or -errno. */
static int reshard_one(struct mfs_stage *s, const struct mfs_reshard_in *in,
                       const struct mfs_ckpt_file *files, const char *config, size_t config_len,
                       const char *variant, uint64_t max_shard_size, bool force,
                       struct batch *b, struct mfs_reshard_result *res, struct mfs_err *err)
{
    struct io_ctx ic = { in, 0 };
    struct mfs_ckpt_io io = { io_read, io_log, &ic };
    struct mfs_ckpt *ckpt = NULL;
    const char **names = NULL;
    struct mfs_st_wtensor *wt = NULL;
    size_t *idx = NULL;
    uint64_t *begin = NULL;
    struct work wk;
    const struct mfs_reshard_file *idx_file;
    bool written = false;
    bool big = false;
    bool need;
    size_t n;
    size_t i;
    int rc;

    memset(&wk, 0, sizeof(wk));
    if (add_variant("model.safetensors", variant, wk.single_path, sizeof(wk.single_path)) < 0 ||
        add_variant("model.safetensors.index.json", variant, wk.index_path,
                    sizeof(wk.index_path)) < 0)
        return 0;                           /* a name too long to be ours */
    if (!find_file(in, wk.single_path) && !find_file(in, wk.index_path))
        return 0;
    if (!force && !any_big(in, max_shard_size))
        return 0;                           /* no header read before every push */
    rc = mfs_ckpt_open(files, in->n_files, variant, &io, &ckpt, err);
    if (rc < 0)
        return rc;
    n = ckpt->n_tensors;
    if (ic.n_logged || ckpt->format != MFS_CKPT_SAFETENSORS || n == 0) {
        rc = 0;                             /* incomplete or not ours: leave it alone */
        goto out_free_ckpt;
    }
    for (i = 0; i < ckpt->n_files; i++) {
        const struct mfs_reshard_file *f = find_file(in, ckpt->files[i]);

        big = big || (f && f->size > max_shard_size);
        written = written || (f && !f->remote);
    }
    idx_file = find_file(in, wk.index_path);
    written = written || (idx_file && !idx_file->remote);
    need = force || (big && written);
    if (!need) {
        rc = 0;
        goto out_free_ckpt;
    }
    wk.ckpt = ckpt;
    names = calloc(n, sizeof(*names));
    wk.order = calloc(n, sizeof(*wk.order));
    wk.items = calloc(n, sizeof(*wk.items));
    wt = calloc(n, sizeof(*wt));
    idx = calloc(n, sizeof(*idx));
    begin = calloc(n, sizeof(*begin));
    if (!names || !wk.order || !wk.items || !wt || !idx || !begin) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    for (i = 0; i < n; i++)
        names[i] = ckpt->tensors[i].name;
    rc = mfs_model_state_dict_order(config, config_len, names, n, wk.order, err);
    if (rc < 0)
        goto out_free;
    for (i = 0; i < n; i++) {
        const struct mfs_ckpt_tensor *t = &ckpt->tensors[wk.order[i]];

        wk.items[i].name = t->name;
        wk.items[i].nbytes = mfs_shard_tensor_size(t->dtype, numel_of(t));
        wk.items[i].alias_of = -1;
    }
    rc = mfs_shard_plan_make(wk.items, n, max_shard_size, MFS_SHARD_TRANSFORMERS,
                             "model.safetensors", variant, &wk.plan, err);
    if (rc < 0)
        goto out_free;
    rc = already_planned(in, &wk, wt, idx, begin, err);
    if (rc != 0) {
        rc = rc == 1 ? 0 : rc;              /* 1: the files already are the plan's */
        goto out_release_plan;
    }
    rc = build(s, in, &wk, b, wt, idx, begin, err);
    if (rc < 0)
        goto out_release_plan;
    res->n_checkpoints++;
    res->n_shards = wk.plan.n_shards;
    res->total_size = wk.plan.total_size;
    rc = 1;
out_release_plan:
    mfs_shard_plan_release(&wk.plan);
out_free:
    free(begin);
    free(idx);
    free(wt);
    free(wk.items);
    free(wk.order);
    free(names);
out_free_ckpt:
    mfs_ckpt_free(&ckpt);
    return rc;
}

int mfs_reshard_run(struct mfs_stage *s, const struct mfs_reshard_in *in, uint64_t max_shard_size,
                    bool force, struct mfs_reshard_result *res, struct mfs_err *err)
{
    struct mfs_reshard_result local;
    struct mfs_reshard_result *r = res ? res : &local;
    struct mfs_ckpt_file *files = NULL;
    char **variants = NULL;
    size_t n_variants = 0;
    struct batch b;
    char *config = NULL;
    size_t config_len = 0;
    size_t i;
    size_t k;
    int rc;

    memset(r, 0, sizeof(*r));
    memset(&b, 0, sizeof(b));
    if (!s || !in || !in->read || (in->n_files && !in->files))
        return mfs_err_set(err, -EINVAL, "reshard: no stage or no tree");
    if (max_shard_size == 0)
        return mfs_err_set(err, -EINVAL, "invalid max_shard_size 0");
    files = calloc(in->n_files + 1, sizeof(*files));
    variants = calloc(in->n_files + 1, sizeof(*variants));
    if (!files || !variants) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    for (i = 0; i < in->n_files; i++) {
        files[i].path = in->files[i].path;
        files[i].size = in->files[i].size;
    }
    /* each checkpoint (plain or variant) once, in the tree's order */
    for (i = 0; i < in->n_files; i++) {
        char *v = NULL;
        int dup = 0;

        rc = in->files[i].path ? variant_of(in->files[i].path, &v) : 0;
        if (rc < 0) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            goto out_free;
        }
        if (rc == 0)
            continue;
        for (k = 0; k < n_variants; k++)
            dup |= (!v && !variants[k]) || (v && variants[k] && !strcmp(v, variants[k]));
        if (dup) {
            free(v);
            continue;
        }
        variants[n_variants++] = v;
    }
    rc = read_small(in, "config.json", MAX_CONFIG, &config, &config_len, err);
    for (k = 0; rc >= 0 && k < n_variants; k++)
        rc = reshard_one(s, in, files, config, config_len, variants[k], max_shard_size, force,
                         &b, r, err);
    if (rc >= 0 && b.nw + b.nc > 0)
        rc = mfs_stage_commit(s, b.writers, b.nw, b.changes, b.nc, err);
    if (rc < 0)
        memset(r, 0, sizeof(*r));
    rc = rc < 0 ? rc : 0;
out_free:
    batch_release(&b);
    free(config);
    for (k = 0; variants && k < n_variants; k++)
        free(variants[k]);
    free(variants);
    free(files);
    return rc;
}
