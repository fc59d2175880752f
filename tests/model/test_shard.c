/*
 * tests/model/test_shard.c - model/shard.c against data/golden/sharding.json:
 * every rule vector, every save_pretrained case written for real and
 * compared by sha256 (shard files byte-identical, index text identical),
 * data/models/stories260K-hf-sharded byte for byte, the huggingface_hub
 * rule's own vectors (docs/hub-api.md 10.2), and shard names.
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
#include "model/safetensors.h"
#include "model/shard.h"

#define slurp(path, len) ((unsigned char *)check_slurp((path), (len)))

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : "";
}

static const cJSON *jget(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* shard_checkpoint vectors: tiny tensors, shards as file -> names. */
static void test_vectors(const cJSON *rule)
{
    const cJSON *v;
    int n_vec = 0;

    cJSON_ArrayForEach(v, jget(rule, "vectors")) {
        const cJSON *names = jget(v, "tensor_names");
        const cJSON *sizes = jget(v, "tensor_sizes_bytes");
        const cJSON *golden_index = jget(v, "index");
        struct mfs_shard_item items[16];
        struct mfs_shard_plan plan;
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_buf idx = MFS_BUF_INIT;
        const cJSON *sh;
        int n = cJSON_GetArraySize(names);
        int ok;
        int i;
        int rc;

        for (i = 0; i < n && i < 16; i++) {
            const char *nm = cJSON_GetArrayItem(names, i)->valuestring;
            const char *al = strstr(nm, "_alias_of_");
            int k;

            items[i].name = nm;
            items[i].nbytes = (uint64_t)cJSON_GetArrayItem(sizes, i)->valuedouble;
            items[i].alias_of = -1;
            for (k = 0; al && k < i; k++)
                if (!strcmp(items[k].name, al + 10))
                    items[i].alias_of = k;
        }
        rc = mfs_shard_plan_make(items, (size_t)n, (uint64_t)jget(v, "max_shard_size")->valuedouble,
                                 MFS_SHARD_TRANSFORMERS, jstr(v, "weights_name"), NULL, &plan,
                                 &err);
        ok = rc == 0 && plan.n_shards == (size_t)cJSON_GetArraySize(jget(v, "shards"));
        cJSON_ArrayForEach(sh, jget(v, "shards")) {
            const cJSON *t;
            size_t s;

            for (s = 0; ok && s < plan.n_shards; s++)
                if (!strcmp(plan.files[s], sh->string))
                    break;
            ok = ok && s < plan.n_shards;
            cJSON_ArrayForEach(t, sh) {
                for (i = 0; ok && i < n; i++)
                    if (!strcmp(items[i].name, t->valuestring))
                        ok = plan.shard_of[i] == s;
            }
        }
        if (ok && cJSON_IsNull(golden_index)) {
            ok = plan.index_name == NULL;
        } else if (ok) {
            cJSON *mine;

            ok = mfs_shard_index_json(&plan, items, (size_t)n, &idx, NULL) == 0;
            mine = cJSON_Parse(idx.data);
            ok = ok && mine && cJSON_Compare(mine, golden_index, 1) &&
                 !strcmp(plan.index_name, strstr(jstr(v, "weights_name"), ".bin") ?
                         "pytorch_model.bin.index.json" : "model.safetensors.index.json");
            cJSON_Delete(mine);
        }
        CHECK(ok, "vector '%s' (%s): shards and index as transformers (%s)",
              jstr(v, "label"), jstr(v, "weights_name"), err.msg);
        mfs_buf_release(&idx);
        mfs_shard_plan_release(&plan);
        n_vec++;
    }
    CHECK(n_vec >= 17, "%d rule vectors checked", n_vec);
    CHECK(mfs_shard_tensor_size(MFS_ST_F32, 1) == 4 && mfs_shard_tensor_size(MFS_ST_BF16, 2) == 4 &&
          mfs_shard_tensor_size(MFS_ST_I64, 1) == 8 && mfs_shard_tensor_size(MFS_ST_BOOL, 8) == 1,
          "sizes: f32 x1 = 4, bf16 x2 = 4, i64 x1 = 8, bool x8 = 1");
}

/* huggingface_hub's rule (docs/hub-api.md 10.2): oversized tensors get
 * their own shard at once, ahead of the shard being filled. */
static void test_hub_rule(void)
{
    static const struct {
        const char *label;
        int n;
        uint64_t sizes[6];
        long alias[6];
        uint64_t limit;
        size_t n_shards;
        size_t shard_of[6];
    } rows[] = {
        { "[1,1,10,1] limit 5", 4, { 1, 1, 10, 1 }, { -1, -1, -1, -1 }, 5, 2, { 1, 1, 0, 1 } },
        { "oversized in the middle", 3, { 2, 9, 2 }, { -1, -1, -1 }, 5, 2, { 1, 0, 1 } },
        { "oversized first", 3, { 6, 1, 1 }, { -1, -1, -1 }, 5, 2, { 0, 1, 1 } },
        { "exact fit", 2, { 3, 2 }, { -1, -1 }, 5, 1, { 0, 0 } },
        { "greedy", 5, { 3, 2, 1, 4, 1 }, { -1, -1, -1, -1, -1 }, 5, 3, { 0, 0, 1, 1, 2 } },
        { "alias joins its tensor", 4, { 4, 4, 4, 1 }, { -1, -1, 0, -1 }, 5, 2, { 0, 1, 0, 1 } },
        { "alias of an oversized one", 3, { 9, 1, 9 }, { -1, -1, 0 }, 5, 2, { 0, 1, 0 } },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_shard_item items[6];
        struct mfs_shard_plan plan;
        int ok;
        int k;

        for (k = 0; k < rows[i].n; k++) {
            items[k].name = "t";
            items[k].nbytes = rows[i].sizes[k];
            items[k].alias_of = rows[i].alias[k];
        }
        ok = mfs_shard_plan_make(items, (size_t)rows[i].n, rows[i].limit, MFS_SHARD_HUB,
                                 "model.safetensors", NULL, &plan, NULL) == 0 &&
             plan.n_shards == rows[i].n_shards;
        for (k = 0; ok && k < rows[i].n; k++)
            ok = plan.shard_of[k] == rows[i].shard_of[k];
        CHECK(ok, "hub rule: %s", rows[i].label);
        mfs_shard_plan_release(&plan);
    }
}

static void test_names(void)
{
    static const struct {
        const char *weights;
        const char *variant;
        size_t i;
        size_t n;
        const char *want;
    } rows[] = {
        { "model.safetensors", NULL, 0, 1, "model.safetensors" },
        { "model.safetensors", NULL, 0, 3, "model-00001-of-00003.safetensors" },
        { "model.safetensors", NULL, 11, 12, "model-00012-of-00012.safetensors" },
        { "model.safetensors", "fp16", 0, 1, "model.fp16.safetensors" },
        { "model.safetensors", "fp16", 1, 3, "model.fp16-00002-of-00003.safetensors" },
        { "pytorch_model.bin", NULL, 0, 2, "pytorch_model-00001-of-00002.bin" },
        { "pytorch_model.bin", "v2", 1, 2, "pytorch_model.v2-00002-of-00002.bin" },
        { "model.safetensors", NULL, 0, 123456, "model-00001-of-123456.safetensors" },
    };
    struct mfs_shard_item items[2] = { { "a", 5, -1 }, { "b", 5, -1 } };
    struct mfs_shard_plan plan;
    char out[256];
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        CHECK(mfs_shard_file_name(rows[i].weights, rows[i].variant, rows[i].i, rows[i].n, out,
                                  sizeof(out)) == 0 && !strcmp(out, rows[i].want),
              "name %s", rows[i].want);
    CHECK(mfs_shard_file_name("model.safetensors", NULL, 0, 3, out, 10) == -EINVAL,
          "name that does not fit is -EINVAL");
    CHECK(mfs_shard_plan_make(items, 2, 5, MFS_SHARD_TRANSFORMERS, "model.safetensors", "fp16",
                              &plan, NULL) == 0 && plan.n_shards == 2 &&
          !strcmp(plan.index_name, "model.safetensors.index.fp16.json") &&
          !strcmp(plan.files[1], "model.fp16-00002-of-00002.safetensors"),
          "variant index name model.safetensors.index.fp16.json");
    mfs_shard_plan_release(&plan);
    CHECK(mfs_shard_plan_make(items, 2, 0, MFS_SHARD_TRANSFORMERS, "model.safetensors", NULL,
                              &plan, NULL) == -EINVAL, "max_shard_size 0 is -EINVAL");
    items[0].alias_of = 1;
    CHECK(mfs_shard_plan_make(items, 2, 5, MFS_SHARD_TRANSFORMERS, "model.safetensors", NULL,
                              &plan, NULL) == -EINVAL, "alias of a later item is -EINVAL");
}

static void test_index_escaping(void)
{
    struct mfs_shard_item items[3] = {
        { "z\xc3\xa9", 1, -1 }, { "a\"b\\c", 1, -1 }, { "e\xf0\x9f\x98\x80\x7f", 1, -1 },
    };
    struct mfs_shard_plan plan;
    struct mfs_buf b = MFS_BUF_INIT;
    int rc = mfs_shard_plan_make(items, 3, 2, MFS_SHARD_TRANSFORMERS, "model.safetensors", NULL,
                                 &plan, NULL);

    rc = rc ? rc : mfs_shard_index_json(&plan, items, 3, &b, NULL);
    CHECK(rc == 0 && !strcmp(b.data, "{\n  \"metadata\": {\n    \"total_size\": 3\n  },\n"
                             "  \"weight_map\": {\n"
                             "    \"a\\\"b\\\\c\": \"model-00001-of-00002.safetensors\",\n"
                             "    \"e\\ud83d\\ude00\\u007f\": "
                             "\"model-00002-of-00002.safetensors\",\n"
                             "    \"z\\u00e9\": \"model-00001-of-00002.safetensors\"\n  }\n}\n"),
          "index escapes as Python's json.dumps (ensure_ascii), keys sorted");
    mfs_buf_release(&b);
    mfs_shard_plan_release(&plan);
}

struct src {
    int fd;
    const struct mfs_st_tensor **t;         /* per shard tensor: where it is in the source */
};

static int src_fill(void *ctx, size_t idx, uint64_t off, void *buf, size_t len,
                    struct mfs_err *err)
{
    const struct src *s = ctx;

    if (pread(s->fd, buf, len, (off_t)(s->t[idx]->begin + off)) != (ssize_t)len)
        return mfs_err_set(err, -EIO, "short read");
    return 0;
}

static int sha_file(const char *path, char hex[MFS_SHA256_HEX], size_t *len)
{
    unsigned char *p = slurp(path, len);

    if (!p)
        return -1;
    mfs_hash_sha256_hex(p, *len, hex);
    free(p);
    return 0;
}

static int same_file(const char *a, const char *b)
{
    size_t la;
    size_t lb;
    unsigned char *pa = slurp(a, &la);
    unsigned char *pb = slurp(b, &lb);
    int same = pa && pb && la == lb && !memcmp(pa, pb, la);

    free(pa);
    free(pb);
    return same;
}

/* save_pretrained(max_shard_size=...) cases, written for real. */
static void test_cases(const cJSON *cases)
{
    const cJSON *c;
    int k = 0;

    cJSON_ArrayForEach(c, cases) {
        const char *model = jstr(c, "model");
        const cJSON *order = jget(c, "state_dict_order");
        int n = cJSON_GetArraySize(order);
        struct mfs_shard_tensor *t = calloc((size_t)n + 1, sizeof(*t));
        const struct mfs_st_tensor **where = calloc((size_t)n + 1, sizeof(*where));
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_shard_plan plan;
        struct mfs_st_header h;
        struct src s;
        char path[1024];
        char dir[1024];
        unsigned char *file;
        const cJSON *sh;
        size_t len;
        uint64_t hn = 0;
        int found = 0;
        int ok = 1;
        int i;
        int rc;

        snprintf(path, sizeof(path), "%s/models/%s/model.safetensors", check_data_dir(), model);
        file = slurp(path, &len);
        if (!file || mfs_st_header_len(file, len, &hn, NULL) < 0 ||
            mfs_st_header_parse(path, (const char *)file + 8, (size_t)hn, len, &h, NULL) < 0) {
            CHECK(0, "read %s", path);
            free(file);
            free(t);
            free(where);
            continue;
        }
        for (i = 0; i < n; i++) {
            const char *nm = cJSON_GetArrayItem(order, i)->valuestring;
            size_t j;

            for (j = 0; j < h.n_tensors; j++) {
                if (!strcmp(h.tensors[j].name, nm)) {
                    where[i] = &h.tensors[j];
                    t[i].name = nm;
                    t[i].dtype = h.tensors[j].dtype;
                    t[i].ndim = h.tensors[j].ndim;
                    memcpy(t[i].shape, h.tensors[j].shape, sizeof(t[i].shape));
                    t[i].alias_of = -1;
                    found++;
                }
            }
        }
        snprintf(dir, sizeof(dir), "%s/case%d", getenv("MFS_TMP") ? getenv("MFS_TMP") : "/tmp",
                 k++);
        mkdir(dir, 0755);
        s.fd = open(path, O_RDONLY);
        s.t = where;
        rc = found == n ? mfs_shard_write(dir, t, (size_t)n,
                                          (uint64_t)jget(c, "max_shard_size_bytes")->valuedouble,
                                          MFS_SHARD_TRANSFORMERS, NULL, src_fill, &s, &plan, &err)
                        : -ENOENT;
        close(s.fd);
        CHECK(rc == 0 && plan.n_shards == (size_t)jget(c, "num_shards")->valuedouble,
              "%s %s: %zu shards written (%s)", model, jstr(c, "max_shard_size"),
              rc == 0 ? plan.n_shards : 0, err.msg);
        cJSON_ArrayForEach(sh, jget(c, "shards")) {
            char hex[MFS_SHA256_HEX];
            size_t flen = 0;

            snprintf(path, sizeof(path), "%s/%s", dir, jstr(sh, "file"));
            ok = ok && sha_file(path, hex, &flen) == 0 && !strcmp(hex, jstr(sh, "sha256")) &&
                 flen == (size_t)jget(sh, "size")->valuedouble;
        }
        CHECK(rc == 0 && ok, "%s %s: every shard file byte-identical (sha256) to save_pretrained's",
              model, jstr(c, "max_shard_size"));
        if (rc == 0 && !cJSON_IsNull(jget(c, "index_json_text"))) {
            size_t ilen;
            unsigned char *itext;

            snprintf(path, sizeof(path), "%s/%s", dir, plan.index_name ? plan.index_name : "?");
            itext = slurp(path, &ilen);
            CHECK(itext && !strcmp((char *)itext, jstr(c, "index_json_text")),
                  "%s %s: model.safetensors.index.json text identical", model,
                  jstr(c, "max_shard_size"));
            free(itext);
        } else if (rc == 0) {
            CHECK(plan.index_name == NULL, "%s %s: one file, no index", model,
                  jstr(c, "max_shard_size"));
        }
        if (rc == 0 && !strcmp(model, "stories260K-hf") &&
            !strcmp(jstr(c, "max_shard_size"), "300KB")) {
            char theirs[1024];
            size_t f;
            int same = 1;

            for (f = 0; f < plan.n_shards; f++) {
                snprintf(path, sizeof(path), "%s/%s", dir, plan.files[f]);
                snprintf(theirs, sizeof(theirs), "%s/models/stories260K-hf-sharded/%s",
                         check_data_dir(), plan.files[f]);
                same = same && same_file(path, theirs);
            }
            snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
            snprintf(theirs, sizeof(theirs),
                     "%s/models/stories260K-hf-sharded/model.safetensors.index.json",
                     check_data_dir());
            same = same && same_file(path, theirs);
            CHECK(same, "300KB: identical to data/models/stories260K-hf-sharded, index included");
        }
        if (rc == 0)
            mfs_shard_plan_release(&plan);
        mfs_st_header_release(&h);
        free(file);
        free(t);
        free(where);
    }
    CHECK(k == 7, "%d save_pretrained cases", k);
}

/* Resharding files: 4 shards -> one file gives save_pretrained's single
 * file byte for byte; one -> 300KB shards -> one is the identity. */
static void test_reshard(void)
{
    const char *t = getenv("MFS_TMP") ? getenv("MFS_TMP") : "/tmp";
    char shards[4][1024];
    const char *srcs[12];
    char single[1024];
    char d1[1024];
    char d2[1024];
    char d3[1024];
    char path[1200];
    char again[11][1200];
    struct mfs_shard_plan plan;
    struct mfs_err err = MFS_ERR_INIT;
    size_t i;
    int rc;

    for (i = 0; i < 4; i++) {
        snprintf(shards[i], sizeof(shards[i]),
                 "%s/models/stories260K-hf-sharded/model-%05zu-of-00004.safetensors",
                 check_data_dir(), i + 1);
        srcs[i] = shards[i];
    }
    snprintf(single, sizeof(single), "%s/models/stories260K-hf/model.safetensors",
             check_data_dir());
    snprintf(d1, sizeof(d1), "%s/reshard1", t);
    snprintf(d2, sizeof(d2), "%s/reshard2", t);
    snprintf(d3, sizeof(d3), "%s/reshard3", t);
    mkdir(d1, 0755);
    mkdir(d2, 0755);
    mkdir(d3, 0755);
    rc = mfs_shard_reshard_files(srcs, 4, d1, UINT64_MAX, NULL, NULL, &err);
    snprintf(path, sizeof(path), "%s/model.safetensors", d1);
    CHECK(rc == 0 && same_file(path, single),
          "reshard 4 shards into one: identical to stories260K-hf/model.safetensors (%s)",
          err.msg);
    srcs[0] = single;
    rc = mfs_shard_reshard_files(srcs, 1, d2, 300000, "v1", &plan, &err);
    CHECK(rc == 0 && plan.n_shards == 4 && plan.total_size == 1040128 &&
          !strcmp(plan.index_name, "model.safetensors.index.v1.json") &&
          !strcmp(plan.files[0], "model.v1-00001-of-00004.safetensors"),
          "reshard one file at 300KB with variant v1: 4 shards (%s)", err.msg);
    for (i = 0; rc == 0 && i < plan.n_shards; i++) {
        snprintf(again[i], sizeof(again[i]), "%s/%s", d2, plan.files[i]);
        srcs[i] = again[i];
    }
    if (rc == 0) {
        rc = mfs_shard_reshard_files(srcs, plan.n_shards, d3, 5000000000ull, NULL, NULL, &err);
        snprintf(path, sizeof(path), "%s/model.safetensors", d3);
        CHECK(rc == 0 && same_file(path, single), "and back into one file: identical");
        mfs_shard_plan_release(&plan);
    }
    srcs[0] = single;
    srcs[1] = single;
    CHECK(mfs_shard_reshard_files(srcs, 2, d3, 1000, NULL, NULL, &err) == -EINVAL,
          "the same tensor in two sources is -EINVAL (%s)", err.msg);
    snprintf(path, sizeof(path), "%s/golden/README.md", check_data_dir());
    srcs[0] = path;
    CHECK(mfs_shard_reshard_files(srcs, 1, d3, 1000, NULL, NULL, &err) == -EINVAL,
          "a source that is not safetensors is -EINVAL (%s)", err.msg);
}

int main(void)
{
    char path[1024];
    size_t len;
    unsigned char *text;
    cJSON *g;

    snprintf(path, sizeof(path), "%s/golden/sharding.json", check_data_dir());
    text = slurp(path, &len);
    g = text ? cJSON_ParseWithLength((const char *)text, len) : NULL;
    CHECK(g != NULL, "load golden/sharding.json");
    if (g) {
        test_vectors(jget(g, "rule"));
        test_cases(jget(g, "cases"));
    }
    test_hub_rule();
    test_names();
    test_index_escaping();
    test_reshard();
    cJSON_Delete(g);
    free(text);
    return check_done();
}
