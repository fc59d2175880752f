/*
 * tests/mount/test_reshard.c - fs/reshard.c over a real stage
 * (cache/stage.c in $MFS_TMP) with a base_read serving data/models files
 * as the commit's remote blobs.
 *
 * EVIDENCE (docs/design.md, Writes, resharding, push): "A safetensors
 * checkpoint written into the mount (one big file, or shards with an index)
 * is resharded when it exceeds max_shard_size: shards named
 * model-00001-of-0000N.safetensors (with the variant when present), an index
 * with metadata.total_size and weight_map, split by the same rule
 * transformers and huggingface_hub use."
 *
 * Checked: every golden case of data/golden/sharding.json (file list, shard
 * bytes by sha256, header, tensors, index JSON bytes), tensors read back
 * through mfs_stage_read equal the originals, a remote (unstaged) sharded
 * checkpoint resharded to one file and back, a forced run with files that
 * already match is a no-op, incomplete checkpoints are left alone, a
 * variant, and kill -9 in the middle of a reshard leaves the old or the new
 * checkpoint, never a mix, with PRAGMA integrity_check ok.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/stage.h"
#include "check.h"
#include "check_db.h"
#include "common/buf.h"
#include "common/hash.h"
#include "fs/reshard.h"
#include "model/safetensors.h"

#define MAX_TREE 64

/* Remote blobs by content id -> a real file. */
struct blobs {
    size_t n;
    char cid[MAX_TREE][MFS_SHA256_HEX];
    char real[MAX_TREE][1024];
};

/* The merged tree the view would show: the commit's files under the stage. */
struct tree {
    struct mfs_stage *s;
    struct blobs *bl;
    size_t n_commit;
    struct mfs_entry commit[MAX_TREE];      /* paths owned */
    struct mfs_stage_entry *st;             /* the stage's entries */
    size_t n_st;
    size_t n;
    struct mfs_reshard_file files[2 * MAX_TREE];
};

/* Bytes of written data the stage keeps (cache/stage.c's stage_chunks). */
#define STORED_BYTES "SELECT total(length(data)) FROM stage_chunks"

static const struct mfs_cache_repo repo = { "http://127.0.0.1:1", "model", "test/reshard" };

static ssize_t base_read(void *ctx, const struct mfs_entry *e, uint64_t off, size_t len,
                         void *buf, struct mfs_err *err)
{
    const struct blobs *b = ctx;
    const char *cid = mfs_entry_content_id(e);
    size_t i;

    for (i = 0; i < b->n; i++)
        if (!strcmp(b->cid[i], cid))
            break;
    if (i == b->n)
        return mfs_err_set(err, -EIO, "no blob '%s'", cid);
    return check_pread_file(b->real[i], off, len, buf, err);
}

static void model_path(char *out, size_t size, const char *model, const char *file)
{
    snprintf(out, size, "%s/models/%s/%s", check_data_dir(), model, file);
}

static char *sha256_of(const char *p, size_t n, char hex[MFS_SHA256_HEX])
{
    mfs_hash_sha256_hex(p, n, hex);
    return hex;
}

/* Put data/models/model/file into the commit as path (a remote blob). */
static void commit_add(struct tree *t, const char *model, const char *file, const char *path)
{
    struct mfs_entry *e = &t->commit[t->n_commit];
    char real[1024];
    size_t len = 0;
    char *data;

    model_path(real, sizeof(real), model, file);
    data = check_slurp(real, &len);
    if (!data)
        return;
    memset(e, 0, sizeof(*e));
    e->path = strdup(path);
    e->size = len;
    e->is_lfs = true;
    sha256_of(data, len, e->lfs_oid);
    snprintf(t->bl->cid[t->bl->n], sizeof(t->bl->cid[0]), "%s", e->lfs_oid);
    snprintf(t->bl->real[t->bl->n], sizeof(t->bl->real[0]), "%s", real);
    t->bl->n++;
    t->n_commit++;
    free(data);
}

static const struct mfs_stage_entry *staged(const struct tree *t, const char *path)
{
    size_t i;

    for (i = 0; i < t->n_st; i++)
        if (!strcmp(t->st[i].path, path))
            return &t->st[i];
    return NULL;
}

/* Rebuild the merged file list from the commit and the stage. */
static int tree_build(struct tree *t)
{
    struct mfs_err e = MFS_ERR_INIT;
    size_t i;
    int rc;

    mfs_stage_entries_free(t->st, t->n_st);
    t->st = NULL;
    t->n_st = 0;
    t->n = 0;
    rc = mfs_stage_list(t->s, &t->st, &t->n_st, &e);
    if (rc < 0) {
        printf("# stage list: %s\n", e.msg);
        return rc;
    }
    for (i = 0; i < t->n_commit; i++) {
        if (staged(t, t->commit[i].path))
            continue;
        t->files[t->n].path = t->commit[i].path;
        t->files[t->n].size = t->commit[i].size;
        t->files[t->n].remote = &t->commit[i];
        t->n++;
    }
    for (i = 0; i < t->n_st; i++) {
        if (t->st[i].kind != MFS_STAGE_FILE)
            continue;
        t->files[t->n].path = t->st[i].path;
        t->files[t->n].size = t->st[i].size;
        t->files[t->n].remote = t->st[i].unchanged_remote ? &t->st[i].remote : NULL;
        t->n++;
    }
    return 0;
}

static const struct mfs_reshard_file *tree_file(const struct tree *t, const char *path)
{
    size_t i;

    for (i = 0; i < t->n; i++)
        if (!strcmp(t->files[i].path, path))
            return &t->files[i];
    return NULL;
}

static ssize_t tree_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    const struct tree *t = ctx;
    const struct mfs_reshard_file *f = tree_file(t, path);

    if (!f)
        return mfs_err_set(err, -ENOENT, "no file '%s'", path);
    if (f->remote && !staged(t, path))
        return base_read(t->bl, f->remote, off, len, buf, err);
    return mfs_stage_read(t->s, path, off, len, buf, err);
}

/* Whole content of path in the merged tree (free()); NULL if absent. */
static char *tree_slurp(struct tree *t, const char *path, size_t *len)
{
    const struct mfs_reshard_file *f = tree_file(t, path);
    struct mfs_err e = MFS_ERR_INIT;
    char *buf;

    *len = 0;
    if (!f)
        return NULL;
    buf = malloc(f->size + 1);
    if (buf && tree_read(t, path, 0, f->size, buf, &e) != (ssize_t)f->size) {
        printf("# read '%s': %s\n", path, e.msg);
        free(buf);
        return NULL;
    }
    *len = f->size;
    return buf;
}

static int tree_open(struct tree *t, struct blobs *bl, const char *dir, const char *revision)
{
    struct mfs_err e = MFS_ERR_INIT;
    int rc;

    memset(t, 0, sizeof(*t));
    memset(bl, 0, sizeof(*bl));
    t->bl = bl;
    rc = mfs_stage_open(dir, &repo, revision, base_read, bl, &t->s, &e);
    if (rc < 0)
        printf("# stage open: %s\n", e.msg);
    return rc;
}

static void tree_close(struct tree *t)
{
    size_t i;

    mfs_stage_entries_free(t->st, t->n_st);
    for (i = 0; i < t->n_commit; i++)
        free(t->commit[i].path);
    mfs_stage_close(&t->s);
    memset(t, 0, sizeof(*t));
}

/* Stage data/models/model/file at path through a writer, in odd-sized
 * pieces; only the first `keep` bytes when keep is not SIZE_MAX. */
static int stage_file(struct tree *t, const char *model, const char *file, const char *path,
                      size_t keep)
{
    struct mfs_stage_writer *w = NULL;
    struct mfs_err e = MFS_ERR_INIT;
    char real[1024];
    size_t len = 0;
    size_t off = 0;
    char *data;
    int rc;

    model_path(real, sizeof(real), model, file);
    data = check_slurp(real, &len);
    if (!data)
        return -ENOENT;
    if (keep < len)
        len = keep;
    rc = mfs_stage_writer_open(t->s, path, MFS_STAGE_BASE_EMPTY, NULL, 0644, &w, &e);
    while (rc == 0 && off < len) {
        size_t n = len - off < 100003 ? len - off : 100003;
        ssize_t wr = mfs_stage_writer_write(w, off, data + off, n, &e);

        rc = wr < 0 ? (int)wr : 0;
        off += n;
    }
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, &e);
    if (rc < 0)
        printf("# stage '%s': %s\n", path, e.msg);
    mfs_stage_writer_close(&w);
    free(data);
    return rc;
}

static int run(struct tree *t, uint64_t max, bool force, struct mfs_reshard_result *res,
               struct mfs_err *e)
{
    struct mfs_reshard_in in;
    int rc;

    rc = tree_build(t);
    if (rc < 0)
        return rc;
    in.files = t->files;
    in.n_files = t->n;
    in.read = tree_read;
    in.read_ctx = t;
    rc = mfs_reshard_run(t->s, &in, max, force, res, e);
    if (rc < 0)
        printf("# reshard: %s\n", e->msg);
    if (tree_build(t) < 0)
        rc = -EIO;
    return rc;
}

/* A safetensors header of bytes p[0..n). */
static int parse_header(const char *name, const char *p, size_t n, struct mfs_st_header *h)
{
    struct mfs_err e = MFS_ERR_INIT;
    uint64_t hl = 0;

    memset(h, 0, sizeof(*h));
    if (mfs_st_header_len((const unsigned char *)p, n, &hl, &e) < 0)
        return -EINVAL;
    return mfs_st_header_parse(name, p + 8, (size_t)hl, n, h, &e);
}

/* Every tensor of p[0..n) equals the same tensor of the original file. */
static int tensors_equal_original(const char *p, size_t n, const char *orig, size_t on)
{
    struct mfs_st_header h;
    struct mfs_st_header oh;
    size_t i;
    size_t k;
    int same = 1;

    if (parse_header("new", p, n, &h) < 0)
        return 0;
    if (parse_header("orig", orig, on, &oh) < 0) {
        mfs_st_header_release(&h);
        return 0;
    }
    for (i = 0; same && i < h.n_tensors; i++) {
        for (k = 0; k < oh.n_tensors; k++)
            if (!strcmp(oh.tensors[k].name, h.tensors[i].name))
                break;
        same = k < oh.n_tensors && oh.tensors[k].nbytes == h.tensors[i].nbytes &&
               !memcmp(p + h.tensors[i].begin, orig + oh.tensors[k].begin,
                       h.tensors[i].nbytes);
    }
    mfs_st_header_release(&oh);
    mfs_st_header_release(&h);
    return same;
}

/* Count the tensors of a safetensors file held in the tree. */
static size_t tensor_count(struct tree *t, const char *path)
{
    struct mfs_st_header h;
    size_t len = 0;
    char *p = tree_slurp(t, path, &len);
    size_t n = 0;

    if (p && parse_header(path, p, len, &h) == 0) {
        n = h.n_tensors;
        mfs_st_header_release(&h);
    }
    free(p);
    return n;
}

/* True iff path is a file of the variant's checkpoint (NULL: plain). */
static int belongs(const char *path, const char *variant)
{
    char pre[128];

    if (!variant)
        return !strncmp(path, "model-", 6) || !strcmp(path, "model.safetensors") ||
               !strcmp(path, "model.safetensors.index.json");
    snprintf(pre, sizeof(pre), "model.%s", variant);
    return !strncmp(path, pre, strlen(pre)) || (!strncmp(path, "model.safetensors.index.", 24) &&
                                                strstr(path, variant));
}

/* Checks of one golden case on the tree: shard files, bytes, headers,
 * tensors, index; rename maps golden "model-" names to the variant's. */
static void check_case(struct tree *t, const cJSON *c, const char *label, const char *variant,
                       const char *orig, size_t orig_len)
{
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(c, "shards");
    const cJSON *idx_text = cJSON_GetObjectItemCaseSensitive(c, "index_json_text");
    const cJSON *sh;
    size_t n_files = 0;
    size_t n_golden = 0;
    char index_name[256];
    size_t i;

    snprintf(index_name, sizeof(index_name), "model.safetensors.index%s%s.json",
             variant ? "." : "", variant ? variant : "");
    cJSON_ArrayForEach(sh, shards) {
        const char *gfile = cJSON_GetObjectItemCaseSensitive(sh, "file")->valuestring;
        const char *gsha = cJSON_GetObjectItemCaseSensitive(sh, "sha256")->valuestring;
        const cJSON *order = cJSON_GetObjectItemCaseSensitive(sh, "tensors_file_order");
        uint64_t hlen = (uint64_t)cJSON_GetObjectItemCaseSensitive(sh, "header_length")
                            ->valuedouble;
        char file[256];
        char hex[MFS_SHA256_HEX];
        struct mfs_st_header h;
        size_t len = 0;
        char *p;
        int names_ok = 1;

        if (variant)
            snprintf(file, sizeof(file), "model.%s%s", variant, gfile + strlen("model"));
        else
            snprintf(file, sizeof(file), "%s", gfile);
        p = tree_slurp(t, file, &len);
        n_golden++;
        CHECK(p != NULL, "%s: '%s' is in the tree", label, file);
        if (!p)
            continue;
        CHECK(!strcmp(sha256_of(p, len, hex), gsha), "%s: '%s' bytes equal the golden sha256",
              label, file);
        CHECK(parse_header(file, p, len, &h) == 0 && h.header_len == hlen,
              "%s: '%s' header valid, %llu bytes", label, file, (unsigned long long)hlen);
        for (i = 0; i < h.n_tensors; i++) {
            const cJSON *g = cJSON_GetArrayItem(order, (int)i);

            names_ok &= g && !strcmp(g->valuestring, h.tensors[i].name);
        }
        CHECK(names_ok && h.n_tensors == (size_t)cJSON_GetArraySize(order),
              "%s: '%s' holds the golden tensors in file order", label, file);
        mfs_st_header_release(&h);
        CHECK(tensors_equal_original(p, len, orig, orig_len),
              "%s: '%s' tensors read back equal the original bytes", label, file);
        free(p);
    }
    if (cJSON_IsString(idx_text)) {
        size_t len = 0;
        char *p = tree_slurp(t, index_name, &len);
        struct mfs_buf want = MFS_BUF_INIT;
        const char *g = idx_text->valuestring;

        /* the variant's index names the variant's shards */
        while (variant && *g) {
            const char *m = strstr(g, "\"model-");

            if (!m) {
                mfs_buf_puts(&want, g);
                break;
            }
            mfs_buf_append(&want, g, (size_t)(m - g));
            mfs_buf_printf(&want, "\"model.%s-", variant);
            g = m + strlen("\"model-");
        }
        if (!variant)
            mfs_buf_puts(&want, g);
        CHECK(p && len == want.len && !memcmp(p, want.data, len),
              "%s: '%s' bytes equal the golden index text", label, index_name);
        free(p);
        mfs_buf_release(&want);
    } else {
        CHECK(tree_file(t, index_name) == NULL, "%s: one shard, no index", label);
    }
    for (i = 0; i < t->n; i++)
        n_files += belongs(t->files[i].path, variant);
    CHECK(n_files == n_golden + (cJSON_IsString(idx_text) ? 1 : 0),
          "%s: the tree's checkpoint files are exactly the plan's (%zu)", label, n_files);
}

static cJSON *load_golden(void)
{
    char path[1024];
    size_t len = 0;
    char *text;
    cJSON *root;

    snprintf(path, sizeof(path), "%s/golden/sharding.json", check_data_dir());
    text = check_slurp(path, &len);
    root = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return root;
}

/* Every golden case, from a staged copy of the model's model.safetensors. */
static void test_golden_staged(const cJSON *golden, const char *dir)
{
    const cJSON *c;
    int k = 0;

    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(golden, "cases")) {
        const char *model = cJSON_GetObjectItemCaseSensitive(c, "model")->valuestring;
        const char *size = cJSON_GetObjectItemCaseSensitive(c, "max_shard_size")->valuestring;
        uint64_t max = (uint64_t)cJSON_GetObjectItemCaseSensitive(c, "max_shard_size_bytes")
                           ->valuedouble;
        size_t n_shards = (size_t)cJSON_GetObjectItemCaseSensitive(c, "num_shards")->valuedouble;
        struct mfs_reshard_result res;
        struct mfs_err e = MFS_ERR_INIT;
        struct blobs bl;
        struct tree t;
        char label[128];
        char rev[64];
        char real[1024];
        size_t orig_len = 0;
        char *orig;
        uint64_t gen;
        long long before;
        long long after;

        snprintf(label, sizeof(label), "%s %s", model, size);
        snprintf(rev, sizeof(rev), "golden-%d", k++);
        model_path(real, sizeof(real), model, "model.safetensors");
        orig = check_slurp(real, &orig_len);
        if (tree_open(&t, &bl, dir, rev) < 0 || !orig) {
            CHECK(0, "%s: open a stage", label);
            free(orig);
            continue;
        }
        CHECK(stage_file(&t, model, "model.safetensors", "model.safetensors", SIZE_MAX) == 0 &&
              stage_file(&t, model, "config.json", "config.json", SIZE_MAX) == 0,
              "%s: stage model.safetensors and config.json", label);
        before = check_db_int(dir, STORED_BYTES);
        CHECK(run(&t, max, false, &res, &e) == 0 && res.n_checkpoints == 1 &&
              res.n_shards == n_shards, "%s: resharded into %zu shards (got %zu)", label,
              n_shards, res.n_shards);
        after = check_db_int(dir, STORED_BYTES);
        /* "How: no tensor byte is copied" (fs/reshard.h): only headers and the index
         * are new data */
        CHECK(before >= 0 && after >= before && after - before < 64 * 1024,
              "%s: the reshard stored %lld new bytes (headers and index only)", label,
              after - before);
        check_case(&t, c, label, NULL, orig, orig_len);
        CHECK(staged(&t, "model.safetensors") &&
              staged(&t, "model.safetensors")->kind == MFS_STAGE_DELETED,
              "%s: the old model.safetensors is gone", label);
        CHECK(tree_file(&t, "config.json") != NULL, "%s: config.json kept", label);
        gen = mfs_stage_generation(t.s);
        CHECK(run(&t, max, true, &res, &e) == 0 && res.n_checkpoints == 0 &&
              mfs_stage_generation(t.s) == gen,
              "%s: forced again at the same size: a no-op", label);
        tree_close(&t);
        free(orig);
    }
}

/* stories260K-hf-sharded as the commit's files, nothing staged. */
static void remote_sharded(struct tree *t, int skip_shard)
{
    static const char *const files[] = {
        "config.json", "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
        "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
        "model.safetensors.index.json",
    };
    size_t i;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if ((int)i != skip_shard)
            commit_add(t, "stories260K-hf-sharded", files[i], files[i]);
}

static const cJSON *golden_case(const cJSON *golden, const char *model, const char *size)
{
    const cJSON *c;

    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(golden, "cases")) {
        if (!strcmp(cJSON_GetObjectItemCaseSensitive(c, "model")->valuestring, model) &&
            !strcmp(cJSON_GetObjectItemCaseSensitive(c, "max_shard_size")->valuestring, size))
            return c;
    }
    return NULL;
}

static void test_remote(const cJSON *golden, const char *dir)
{
    const cJSON *c300 = golden_case(golden, "stories260K-hf", "300KB");
    struct mfs_reshard_result res;
    struct mfs_err e = MFS_ERR_INIT;
    struct blobs bl;
    struct tree t;
    char real[1024];
    char hex[MFS_SHA256_HEX];
    char ohex[MFS_SHA256_HEX];
    size_t orig_len = 0;
    size_t len = 0;
    char *orig;
    char *p;
    uint64_t gen;
    size_t i;
    int all_remote = 1;

    model_path(real, sizeof(real), "stories260K-hf", "model.safetensors");
    orig = check_slurp(real, &orig_len);
    if (tree_open(&t, &bl, dir, "remote-single") < 0 || !orig || !c300) {
        CHECK(0, "remote: open a stage");
        free(orig);
        return;
    }
    /* an untouched single file of the commit: only a forced run rewrites it */
    commit_add(&t, "stories260K-hf", "model.safetensors", "model.safetensors");
    commit_add(&t, "stories260K-hf", "config.json", "config.json");
    gen = mfs_stage_generation(t.s);
    CHECK(run(&t, 100000, false, &res, &e) == 0 && res.n_checkpoints == 0 &&
          mfs_stage_generation(t.s) == gen,
          "remote: an unwritten checkpoint over the limit is not resharded unforced");
    CHECK(run(&t, 1000000, true, &res, &e) == 0 && res.n_checkpoints == 1 &&
          res.n_shards == 2, "remote: forced to 1MB: 2 shards");
    check_case(&t, golden_case(golden, "stories260K-hf", "1MB"), "remote single forced 1MB",
               NULL, orig, orig_len);
    tree_close(&t);
    if (tree_open(&t, &bl, dir, "remote") < 0) {
        CHECK(0, "remote: open a stage");
        free(orig);
        return;
    }
    remote_sharded(&t, -1);
    gen = mfs_stage_generation(t.s);
    CHECK(run(&t, 300000, true, &res, &e) == 0 && res.n_checkpoints == 0 &&
          mfs_stage_generation(t.s) == gen,
          "remote: forced at 300KB on the 300KB shards: a no-op");
    CHECK(run(&t, 5000000000ull, false, &res, &e) == 0 && res.n_checkpoints == 0 &&
          mfs_stage_generation(t.s) == gen, "remote: under the limit and not forced: a no-op");
    CHECK(run(&t, 1000000000ull, true, &res, &e) == 0 && res.n_checkpoints == 1 &&
          res.n_shards == 1 && res.total_size == 1040128,
          "remote: forced to 1GB: one shard, total_size %llu",
          (unsigned long long)res.total_size);
    p = tree_slurp(&t, "model.safetensors", &len);
    CHECK(p && tensors_equal_original(p, len, orig, orig_len) &&
          tensor_count(&t, "model.safetensors") == 47,
          "remote: model.safetensors holds the 47 original tensors");
    CHECK(p && !strcmp(sha256_of(p, len, hex), sha256_of(orig, orig_len, ohex)),
          "remote: model.safetensors equals stories260K-hf's, byte for byte");
    free(p);
    for (i = 1; i <= 4; i++) {
        char name[64];

        snprintf(name, sizeof(name), "model-%05zu-of-00004.safetensors", i);
        CHECK(tree_file(&t, name) == NULL && staged(&t, name) &&
              staged(&t, name)->kind == MFS_STAGE_DELETED, "remote: '%s' whited out", name);
    }
    CHECK(tree_file(&t, "model.safetensors.index.json") == NULL,
          "remote: the index is gone with one shard");
    CHECK(run(&t, 300000, true, &res, &e) == 0 && res.n_checkpoints == 1 &&
          res.n_shards == 4, "remote: back to 300KB: 4 shards");
    check_case(&t, c300, "remote back to 300KB", NULL, orig, orig_len);
    for (i = 0; i < t.n; i++)
        if (strstr(t.files[i].path, "model-"))
            all_remote &= staged(&t, t.files[i].path) != NULL;
    CHECK(all_remote, "remote: the new shards are staged entries");
    tree_close(&t);
    free(orig);
}

/* Some shards staged (a complete copy), the others the commit's. */
static void test_mixed(const char *dir)
{
    struct mfs_reshard_result res;
    struct mfs_err e = MFS_ERR_INIT;
    struct blobs bl;
    struct tree t;
    char real[1024];
    char hex[MFS_SHA256_HEX];
    char ohex[MFS_SHA256_HEX];
    size_t orig_len = 0;
    size_t len = 0;
    char *orig;
    char *p;

    model_path(real, sizeof(real), "stories260K-hf", "model.safetensors");
    orig = check_slurp(real, &orig_len);
    if (tree_open(&t, &bl, dir, "mixed") < 0 || !orig) {
        CHECK(0, "mixed: open a stage");
        free(orig);
        return;
    }
    remote_sharded(&t, -1);
    CHECK(stage_file(&t, "stories260K-hf-sharded", "model-00002-of-00004.safetensors",
                     "model-00002-of-00004.safetensors", SIZE_MAX) == 0 &&
          stage_file(&t, "stories260K-hf-sharded", "model-00004-of-00004.safetensors",
                     "model-00004-of-00004.safetensors", SIZE_MAX) == 0,
          "mixed: stage shards 2 and 4 over the commit's");
    CHECK(run(&t, 1000000000ull, true, &res, &e) == 0 && res.n_checkpoints == 1 &&
          res.n_shards == 1, "mixed: forced to one shard");
    p = tree_slurp(&t, "model.safetensors", &len);
    CHECK(p && !strcmp(sha256_of(p, len, hex), sha256_of(orig, orig_len, ohex)),
          "mixed: model.safetensors from staged and remote shards equals stories260K-hf's");
    free(p);
    tree_close(&t);
    free(orig);
}

static void test_incomplete(const char *dir)
{
    struct mfs_reshard_result res;
    struct mfs_err e = MFS_ERR_INIT;
    struct blobs bl;
    struct tree t;
    uint64_t gen;

    /* an index naming a shard the tree lacks */
    if (tree_open(&t, &bl, dir, "incomplete-index") == 0) {
        remote_sharded(&t, 3);
        gen = mfs_stage_generation(t.s);
        CHECK(run(&t, 100000, true, &res, &e) == 0 && res.n_checkpoints == 0 &&
              mfs_stage_generation(t.s) == gen,
              "incomplete: an index naming a missing shard is left alone");
        tree_close(&t);
    }
    /* a single file still being copied */
    if (tree_open(&t, &bl, dir, "incomplete-truncated") == 0) {
        CHECK(stage_file(&t, "stories260K-hf", "model.safetensors", "model.safetensors",
                         500000) == 0, "incomplete: stage half a model.safetensors");
        gen = mfs_stage_generation(t.s);
        CHECK(run(&t, 100000, true, &res, &e) == 0 && res.n_checkpoints == 0 &&
              mfs_stage_generation(t.s) == gen,
              "incomplete: a truncated model.safetensors is left alone");
        tree_close(&t);
    }
    /* a staged shard cut short next to a complete index */
    if (tree_open(&t, &bl, dir, "incomplete-shard") == 0) {
        remote_sharded(&t, -1);
        CHECK(stage_file(&t, "stories260K-hf-sharded", "model-00002-of-00004.safetensors",
                         "model-00002-of-00004.safetensors", 200000) == 0,
              "incomplete: stage a truncated shard over the commit's");
        gen = mfs_stage_generation(t.s);
        CHECK(run(&t, 1000000, true, &res, &e) == 0 && res.n_checkpoints == 0 &&
              mfs_stage_generation(t.s) == gen,
              "incomplete: a truncated shard is left alone");
        tree_close(&t);
    }
    if (tree_open(&t, &bl, dir, "bad-size") == 0) {
        CHECK(run(&t, 0, false, &res, &e) == -EINVAL && e.msg[0],
              "max_shard_size 0 is -EINVAL: %s", e.msg);
        tree_close(&t);
    }
}

static void test_variant(const cJSON *golden, const char *dir)
{
    const cJSON *c300 = golden_case(golden, "stories260K-hf", "300KB");
    struct mfs_reshard_result res;
    struct mfs_err e = MFS_ERR_INIT;
    struct blobs bl;
    struct tree t;
    char real[1024];
    size_t orig_len = 0;
    char *orig;

    model_path(real, sizeof(real), "stories260K-hf", "model.safetensors");
    orig = check_slurp(real, &orig_len);
    if (tree_open(&t, &bl, dir, "variant") < 0 || !orig || !c300) {
        CHECK(0, "variant: open a stage");
        free(orig);
        return;
    }
    CHECK(stage_file(&t, "stories260K-hf", "model.safetensors", "model.fp16.safetensors",
                     SIZE_MAX) == 0 &&
          stage_file(&t, "stories260K-hf", "config.json", "config.json", SIZE_MAX) == 0,
          "variant: stage model.fp16.safetensors");
    CHECK(stage_file(&t, "stories260K-hf", "model.safetensors", "model.safetensors",
                     SIZE_MAX) == 0, "variant: stage the plain model.safetensors too");
    CHECK(run(&t, 300000, false, &res, &e) == 0 && res.n_checkpoints == 2 &&
          res.n_shards == 4, "variant: both checkpoints resharded into 4 shards");
    check_case(&t, c300, "variant fp16 300KB", "fp16", orig, orig_len);
    check_case(&t, c300, "plain next to the variant 300KB", NULL, orig, orig_len);
    CHECK(tree_file(&t, "model.fp16.safetensors") == NULL, "variant: the single file is gone");
    tree_close(&t);
    free(orig);
}

/* kill -9 of a reshard at a few delays: old or new, never a mix. */
static void test_kill(const cJSON *golden, const char *dir)
{
    static const long delays_us[] = { 0, 5000, 15000, 20000, 25000, 30000, 35000, 40000, 80000 };
    const cJSON *c100 = golden_case(golden, "stories260K-hf", "100KB");
    struct mfs_err e = MFS_ERR_INIT;
    struct blobs bl;
    struct tree t;
    char real[1024];
    size_t orig_len = 0;
    char *orig;
    size_t d;
    int n_old = 0;
    int n_new = 0;

    model_path(real, sizeof(real), "stories260K-hf", "model.safetensors");
    orig = check_slurp(real, &orig_len);
    for (d = 0; orig && c100 && d < sizeof(delays_us) / sizeof(delays_us[0]); d++) {
        struct mfs_reshard_result res;
        char rev[64];
        pid_t pid;
        int status = 0;
        int old_ok;
        int new_ok;
        size_t n_shards = 0;
        size_t i;

        snprintf(rev, sizeof(rev), "kill-%zu", d);
        if (tree_open(&t, &bl, dir, rev) < 0)
            break;
        CHECK(stage_file(&t, "stories260K-hf", "model.safetensors", "model.safetensors",
                         SIZE_MAX) == 0 &&
              stage_file(&t, "stories260K-hf", "config.json", "config.json", SIZE_MAX) == 0,
              "kill after %ld us: stage the model", delays_us[d]);
        tree_close(&t);
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            struct blobs cbl;
            struct tree ct;
            int rc = tree_open(&ct, &cbl, dir, rev);

            if (rc == 0)
                rc = run(&ct, 100000, false, &res, &e);
            _exit(rc == 0 ? 0 : 1);
        }
        if (delays_us[d]) {
            struct timespec ts = { 0, delays_us[d] * 1000 };

            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        if (tree_open(&t, &bl, dir, rev) < 0 || tree_build(&t) < 0) {
            CHECK(0, "kill after %ld us: reopen the stage", delays_us[d]);
            tree_close(&t);
            continue;
        }
        for (i = 0; i < t.n; i++)
            n_shards += strstr(t.files[i].path, "-of-00011.safetensors") != NULL;
        old_ok = tree_file(&t, "model.safetensors") && n_shards == 0 &&
                 !tree_file(&t, "model.safetensors.index.json") &&
                 tree_file(&t, "model.safetensors")->size == orig_len;
        new_ok = !tree_file(&t, "model.safetensors") && n_shards == 11 &&
                 tree_file(&t, "model.safetensors.index.json");
        CHECK(old_ok || new_ok, "kill after %ld us: %s checkpoint, not a mix", delays_us[d],
              old_ok ? "the old" : new_ok ? "the new" : "NEITHER");
        if (new_ok)
            check_case(&t, c100, "after kill", NULL, orig, orig_len);
        n_old += old_ok;
        n_new += new_ok;
        CHECK(check_db_integrity_ok(dir), "kill after %ld us: PRAGMA integrity_check ok",
              delays_us[d]);
        tree_close(&t);
    }
    printf("# kill -9: %d old, %d new\n", n_old, n_new);
    free(orig);
}

int main(void)
{
    struct mfs_cache *cache = NULL;
    struct mfs_err e = MFS_ERR_INIT;
    const char *tmp = getenv("MFS_TMP");
    cJSON *golden = load_golden();
    char dir[1024];

    snprintf(dir, sizeof(dir), "%s/cache", tmp && *tmp ? tmp : "/tmp");
    CHECK(golden != NULL, "load data/golden/sharding.json");
    CHECK(mfs_cache_open(dir, 0, &cache, &e) == 0, "open the cache: %s", e.msg);
    mfs_cache_close(&cache);
    if (golden) {
        test_golden_staged(golden, dir);
        test_remote(golden, dir);
        test_mixed(dir);
        test_incomplete(dir);
        test_variant(golden, dir);
        test_kill(golden, dir);
    }
    cJSON_Delete(golden);
    return check_done();
}
