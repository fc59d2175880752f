/*
 * model/tokenizer.c - the tokenizer pipeline and public API (model/tokenizer.h).
 *
 * encode follows TokenizerImpl::encode_single_sequence of tokenizers 0.22:
 *   1. AddedVocabulary::extract_and_normalize: added tokens with
 *      normalized=false are cut out of the raw text (leftmost-longest, as
 *      the aho-corasick automaton), the remaining pieces are normalized and
 *      the normalized=true tokens are cut out of them;
 *   2. the pre-tokenizer splits what is left, the model tokenizes each split;
 *   3. offsets map back through the alignments to bytes of the input, then
 *      to code points (BytesToCharOffsetConverter);
 *   4. the post-processor adds special tokens / trims offsets.
 * decode maps ids to token strings (added tokens first), drops special
 * ones when asked, and runs the decoder (or joins with spaces without one).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_int.h"
#include "model/tokenizer.h"

/* Alignments are 32-bit byte offsets. */
#define MFS_TOK_MAX_TEXT (1u << 30)

struct mfs_tok_added {
    char *content;                          /* token text */
    size_t len;                             /* bytes of content */
    int32_t id;                             /* assigned id */
    bool special;                           /* skipped by decode(skip_special) */
    bool single_word;                       /* only between non-word chars */
    bool lstrip;                            /* swallows whitespace on its left */
    bool rstrip;                            /* swallows whitespace on its right */
    bool normalized;                        /* matched on normalized text */
    char *pat;                              /* text matched: content, normalized if normalized */
    size_t plen;                            /* bytes of pat */
};

enum mfs_tok_post_type {
    MFS_TOK_PP_TEMPLATE,
    MFS_TOK_PP_BYTELEVEL,
    MFS_TOK_PP_BERT,
    MFS_TOK_PP_ROBERTA,
    MFS_TOK_PP_SEQ,
};

/* One special token the post-processor inserts. */
struct mfs_tok_ins {
    int32_t id;                             /* token id */
    char *tok;                              /* token string */
};

struct mfs_tok_post {
    enum mfs_tok_post_type type;
    struct mfs_tok_ins *single;                 /* TEMPLATE: pieces; id -1 = sequence A */
    size_t nsingle;                         /* pieces */
    struct mfs_tok_ins cls;                     /* BERT, ROBERTA */
    struct mfs_tok_ins sep;                     /* BERT, ROBERTA */
    bool trim_offsets;                      /* BYTELEVEL, ROBERTA */
    bool add_prefix_space;                  /* BYTELEVEL, ROBERTA */
    struct mfs_tok_post **sub;                  /* SEQ */
    size_t nsub;                            /* members */
};

struct mfs_tok {
    struct mfs_tok_norm *norm;                  /* or NULL */
    struct mfs_tok_pre *pre;                    /* or NULL */
    struct mfs_tok_model *model;                /* never NULL */
    struct mfs_tok_post *post;                  /* or NULL */
    struct mfs_tok_dec *dec;                    /* or NULL */
    struct mfs_tok_added *added;                /* added tokens, in file order */
    size_t nadded;                          /* entries */
    struct mfs_tok_smap added_map;              /* content -> id */
    int32_t *added_r;                       /* [nadded_r] id -> index in added, -1 */
    size_t nadded_r;                        /* largest added id + 1 */
    struct mfs_tok_smap special;                /* contents of special tokens */
    size_t vocab_size;                      /* largest id + 1 */
};

/* ---- post-processors ---- */

static void mfs_tok_post_free(struct mfs_tok_post *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->nsingle; i++)
        free(p->single[i].tok);
    free(p->single);
    free(p->cls.tok);
    free(p->sep.tok);
    for (i = 0; i < p->nsub; i++)
        mfs_tok_post_free(p->sub[i]);
    free(p->sub);
    free(p);
}

static int mfs_tok_post_pair(const cJSON *j, const char *k, struct mfs_tok_ins *out,
                             struct mfs_err *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, k);
    const cJSON *s = cJSON_GetArrayItem(a, 0);
    const cJSON *n = cJSON_GetArrayItem(a, 1);

    if (!cJSON_IsArray(a) || !cJSON_IsString(s) || !cJSON_IsNumber(n) || n->valuedouble < 0)
        return mfs_err_set(err, -EINVAL, "post_processor: '%s' must be [token, id]", k);
    out->id = (int32_t)n->valuedouble;
    out->tok = strdup(s->valuestring);
    return out->tok ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
}

static int mfs_tok_post_template(struct mfs_tok_post *p, const cJSON *j, struct mfs_err *err)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    const cJSON *piece;
    size_t cap = 0;

    if (!cJSON_IsArray(single))
        return mfs_err_set(err, -EINVAL, "TemplateProcessing without 'single'");
    cJSON_ArrayForEach(piece, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
        const cJSON *def;
        const cJSON *ids;
        const cJSON *toks;
        const char *name;
        int k;
        int n;

        if (sq) {
            const char *id = mfs_tok_js_str(sq, "id");

            if (id && !strcmp(id, "B"))
                continue;                   /* single sequences have no B */
            if (p->nsingle == cap) {
                struct mfs_tok_ins *v;

                cap = cap ? cap * 2 : 8;
                v = realloc(p->single, cap * sizeof(*v));
                if (!v)
                    return mfs_err_set(err, -ENOMEM, "out of memory");
                p->single = v;
            }
            p->single[p->nsingle].id = -1;
            p->single[p->nsingle++].tok = NULL;
            continue;
        }
        name = mfs_tok_js_str(sp, "id");
        def = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
        toks = cJSON_GetObjectItemCaseSensitive(def, "tokens");
        if (!name || !cJSON_IsArray(ids) || !cJSON_IsArray(toks) ||
            cJSON_GetArraySize(ids) != cJSON_GetArraySize(toks))
            return mfs_err_set(err, -EINVAL, "TemplateProcessing: bad special token '%s'",
                               name ? name : "?");
        n = cJSON_GetArraySize(ids);
        for (k = 0; k < n; k++) {
            const cJSON *id = cJSON_GetArrayItem(ids, k);
            const cJSON *tk = cJSON_GetArrayItem(toks, k);

            if (!cJSON_IsNumber(id) || !cJSON_IsString(tk))
                return mfs_err_set(err, -EINVAL, "TemplateProcessing: bad special token '%s'",
                                   name);
            if (p->nsingle == cap) {
                struct mfs_tok_ins *v;

                cap = cap ? cap * 2 : 8;
                v = realloc(p->single, cap * sizeof(*v));
                if (!v)
                    return mfs_err_set(err, -ENOMEM, "out of memory");
                p->single = v;
            }
            p->single[p->nsingle].id = (int32_t)id->valuedouble;
            p->single[p->nsingle].tok = strdup(tk->valuestring);
            if (!p->single[p->nsingle++].tok)
                return mfs_err_set(err, -ENOMEM, "out of memory");
        }
    }
    return 0;
}

static int mfs_tok_post_new(const cJSON *j, struct mfs_tok_post **pp, struct mfs_err *err)
{
    struct mfs_tok_post *p;
    const char *type = mfs_tok_js_str(j, "type");
    int rc = 0;
    int v;

    *pp = NULL;
    if (!type)
        return mfs_err_set(err, -EINVAL, "post_processor without a 'type'");
    p = calloc(1, sizeof(*p));
    if (!p)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!strcmp(type, "TemplateProcessing")) {
        p->type = MFS_TOK_PP_TEMPLATE;
        rc = mfs_tok_post_template(p, j, err);
    } else if (!strcmp(type, "ByteLevel") || !strcmp(type, "RobertaProcessing")) {
        p->type = !strcmp(type, "ByteLevel") ? MFS_TOK_PP_BYTELEVEL : MFS_TOK_PP_ROBERTA;
        v = mfs_tok_js_bool(j, "trim_offsets", true);
        p->trim_offsets = v > 0;
        v = v < 0 ? v : mfs_tok_js_bool(j, "add_prefix_space", true);
        p->add_prefix_space = v > 0;
        if (v < 0)
            rc = mfs_err_set(err, -EINVAL, "post_processor '%s': bad boolean", type);
        if (rc == 0 && p->type == MFS_TOK_PP_ROBERTA) {
            rc = mfs_tok_post_pair(j, "sep", &p->sep, err);
            if (rc == 0)
                rc = mfs_tok_post_pair(j, "cls", &p->cls, err);
        }
    } else if (!strcmp(type, "BertProcessing")) {
        p->type = MFS_TOK_PP_BERT;
        rc = mfs_tok_post_pair(j, "sep", &p->sep, err);
        if (rc == 0)
            rc = mfs_tok_post_pair(j, "cls", &p->cls, err);
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "processors");
        const cJSON *e;

        p->type = MFS_TOK_PP_SEQ;
        if (!cJSON_IsArray(arr)) {
            rc = mfs_err_set(err, -EINVAL, "post_processor 'Sequence' without 'processors'");
        } else {
            p->sub = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*p->sub));
            if (!p->sub)
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
            cJSON_ArrayForEach(e, arr) {
                if (rc < 0)
                    break;
                rc = mfs_tok_post_new(e, &p->sub[p->nsub], err);
                if (rc == 0)
                    p->nsub++;
            }
        }
    } else {
        rc = mfs_err_set(err, -EINVAL, "unsupported post_processor '%s'", type);
    }
    if (rc < 0) {
        mfs_tok_post_free(p);
        return rc;
    }
    *pp = p;
    return 0;
}

/* An encoding being built: token strings live in pool. */
struct mfs_tok_wenc {
    int32_t *ids;                           /* [n] */
    size_t *vo;                             /* [n] offset of the token string in pool */
    struct mfs_tok_span *ob;                /* [n] byte offsets */
    struct mfs_tok_span *oc;                /* [n] code point offsets */
    size_t n;                               /* tokens */
    size_t cap;                             /* allocated */
    struct mfs_buf pool;                    /* NUL-terminated token strings */
};

static void mfs_tok_wenc_release(struct mfs_tok_wenc *w)
{
    free(w->ids);
    free(w->vo);
    free(w->ob);
    free(w->oc);
    mfs_buf_release(&w->pool);
    memset(w, 0, sizeof(*w));
}

static int mfs_tok_wenc_add(struct mfs_tok_wenc *w, int32_t id, const char *s, size_t len,
                        struct mfs_tok_span ob, struct mfs_tok_span oc)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        int32_t *ids = realloc(w->ids, cap * sizeof(*ids));
        size_t *vo;
        struct mfs_tok_span *a;
        struct mfs_tok_span *b;

        if (!ids)
            return -ENOMEM;
        w->ids = ids;
        vo = realloc(w->vo, cap * sizeof(*vo));
        if (!vo)
            return -ENOMEM;
        w->vo = vo;
        a = realloc(w->ob, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        w->ob = a;
        b = realloc(w->oc, cap * sizeof(*b));
        if (!b)
            return -ENOMEM;
        w->oc = b;
        w->cap = cap;
    }
    w->ids[w->n] = id;
    w->vo[w->n] = w->pool.len;
    w->ob[w->n] = ob;
    w->oc[w->n] = oc;
    if (mfs_buf_append(&w->pool, s, len) < 0 || mfs_buf_append(&w->pool, "", 1) < 0)
        return -ENOMEM;
    w->n++;
    return 0;
}

/* processors/byte_level.rs process_offsets, on one offsets array. */
static void mfs_tok_trim_offsets(struct mfs_tok_wenc *w, struct mfs_tok_span *o,
                                 bool add_prefix_space)
{
    size_t i;

    for (i = 0; i < w->n; i++) {
        const char *s = w->pool.data + w->vo[i];
        size_t len = strlen(s);
        size_t lead = 0;
        size_t trail = 0;
        size_t p = 0;
        uint32_t c;

        while (p < len) {
            int l = mfs_tok_utf8_dec(s + p, len - p, &c);

            if (l < 0 || !(c == 0x120 || mfs_tok_is_whitespace(c)))
                break;
            lead++;
            p += (size_t)l;
        }
        p = len;
        while (p > 0) {
            size_t q = p - 1;

            while (q > 0 && ((unsigned char)s[q] & 0xc0) == 0x80)
                q--;
            if (mfs_tok_utf8_dec(s + q, p - q, &c) < 0 || !(c == 0x120 || mfs_tok_is_whitespace(c)))
                break;
            trail++;
            p = q;
        }
        if (lead > 0) {
            bool first = i == 0 || o[i].start == 0;

            if (first && add_prefix_space && lead == 1)
                lead = 0;
            o[i].start = o[i].start + lead < o[i].end ? o[i].start + lead : o[i].end;
        }
        if (trail > 0 && o[i].end >= trail)
            o[i].end = o[i].end - trail > o[i].start ? o[i].end - trail : o[i].start;
    }
}

/* Wrap w with the given pieces (id -1 = w itself). */
static int mfs_tok_wrap(struct mfs_tok_wenc *w, const struct mfs_tok_ins *pieces, size_t n)
{
    struct mfs_tok_wenc o = { 0 };
    struct mfs_tok_span zero = { 0, 0 };
    size_t i;
    size_t k;
    int rc = 0;

    for (i = 0; i < n && rc == 0; i++) {
        if (pieces[i].id >= 0) {
            rc = mfs_tok_wenc_add(&o, pieces[i].id, pieces[i].tok, strlen(pieces[i].tok), zero,
                              zero);
            continue;
        }
        for (k = 0; k < w->n && rc == 0; k++) {
            const char *s = w->pool.data + w->vo[k];

            rc = mfs_tok_wenc_add(&o, w->ids[k], s, strlen(s), w->ob[k], w->oc[k]);
        }
    }
    if (rc < 0) {
        mfs_tok_wenc_release(&o);
        return rc;
    }
    mfs_tok_wenc_release(w);
    *w = o;
    return 0;
}

static int mfs_tok_post_apply(const struct mfs_tok_post *p, struct mfs_tok_wenc *w,
                              bool add_special)
{
    struct mfs_tok_ins three[3];
    size_t i;
    int rc = 0;

    switch (p->type) {
    case MFS_TOK_PP_TEMPLATE:
        if (add_special)
            rc = mfs_tok_wrap(w, p->single, p->nsingle);
        break;
    case MFS_TOK_PP_BYTELEVEL:
        if (p->trim_offsets) {
            mfs_tok_trim_offsets(w, w->ob, p->add_prefix_space);
            mfs_tok_trim_offsets(w, w->oc, p->add_prefix_space);
        }
        break;
    case MFS_TOK_PP_ROBERTA:
    case MFS_TOK_PP_BERT:
        if (p->type == MFS_TOK_PP_ROBERTA && p->trim_offsets) {
            mfs_tok_trim_offsets(w, w->ob, p->add_prefix_space);
            mfs_tok_trim_offsets(w, w->oc, p->add_prefix_space);
        }
        if (!add_special)
            break;
        three[0] = p->cls;
        three[1].id = -1;
        three[1].tok = NULL;
        three[2] = p->sep;
        rc = mfs_tok_wrap(w, three, 3);
        break;
    case MFS_TOK_PP_SEQ:
        for (i = 0; i < p->nsub && rc == 0; i++)
            rc = mfs_tok_post_apply(p->sub[i], w, add_special);
        break;
    }
    return rc;
}

/* ---- construction ---- */

void mfs_tok_free(struct mfs_tok **tokp)
{
    struct mfs_tok *t;
    size_t i;

    if (!tokp || !*tokp)
        return;
    t = *tokp;
    mfs_tok_norm_free(t->norm);
    mfs_tok_pre_free(t->pre);
    mfs_tok_model_free(t->model);
    mfs_tok_post_free(t->post);
    mfs_tok_dec_free(t->dec);
    for (i = 0; i < t->nadded; i++) {
        free(t->added[i].content);
        free(t->added[i].pat);
    }
    free(t->added);
    free(t->added_r);
    mfs_tok_smap_release(&t->added_map);
    mfs_tok_smap_release(&t->special);
    free(t);
    *tokp = NULL;
}

static int mfs_tok_added_flag(const cJSON *e, const char *k, bool dflt, bool *out,
                          struct mfs_err *err)
{
    int v = mfs_tok_js_bool(e, k, dflt);

    if (v < 0)
        return mfs_err_set(err, -EINVAL, "added token: '%s' must be a boolean", k);
    *out = v;
    return 0;
}

/* added_vocabulary.rs add_tokens: ids come from the model's vocabulary or
 * are assigned after it (the ids in the file are only checked there). */
static int mfs_tok_load_added(struct mfs_tok *t, const cJSON *arr, struct mfs_err *err)
{
    size_t model_size = mfs_tok_model_vocab_size(t->model);
    int32_t max_added = -1;
    const cJSON *e;
    size_t i;
    int rc = 0;

    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return mfs_err_set(err, -EINVAL, "'added_tokens' must be an array");
    t->added = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*t->added));
    if (!t->added)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, arr) {
        struct mfs_tok_added *a = &t->added[t->nadded];
        const char *content = mfs_tok_js_str(e, "content");
        int32_t id;
        bool dup = false;

        if (!content)
            return mfs_err_set(err, -EINVAL, "added token without 'content'");
        if (!*content)
            continue;
        rc = mfs_tok_added_flag(e, "special", false, &a->special, err);
        if (rc == 0)
            rc = mfs_tok_added_flag(e, "single_word", false, &a->single_word, err);
        if (rc == 0)
            rc = mfs_tok_added_flag(e, "lstrip", false, &a->lstrip, err);
        if (rc == 0)
            rc = mfs_tok_added_flag(e, "rstrip", false, &a->rstrip, err);
        if (rc == 0)
            rc = mfs_tok_added_flag(e, "normalized", !a->special, &a->normalized, err);
        if (rc < 0)
            return rc;
        for (i = 0; i < t->nadded; i++)
            dup |= !strcmp(t->added[i].content, content);
        if (dup)
            continue;
        a->len = strlen(content);
        a->content = strdup(content);
        if (!a->content)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        id = mfs_tok_smap_get(&t->added_map, content, a->len);
        if (id < 0)
            id = mfs_tok_model_token_to_id(t->model, content, a->len);
        if (id < 0) {
            if (max_added < 0)
                id = (int32_t)model_size;
            else if ((size_t)max_added >= model_size || model_size == 0)
                id = max_added + 1;
            else
                id = (int32_t)model_size;
        }
        a->id = id;
        if (id > max_added)
            max_added = id;
        if (mfs_tok_smap_put(&t->added_map, content, a->len, id) < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        if (a->special && mfs_tok_smap_put(&t->special, content, a->len, id) < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        t->nadded++;
    }
    t->nadded_r = max_added >= 0 ? (size_t)max_added + 1 : 0;
    t->added_r = malloc((t->nadded_r + 1) * sizeof(*t->added_r));
    if (!t->added_r)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (i = 0; i < t->nadded_r; i++)
        t->added_r[i] = -1;
    for (i = 0; i < t->nadded; i++)
        t->added_r[t->added[i].id] = (int32_t)i;
    /* Normalized tokens are matched by their normalized text. */
    for (i = 0; i < t->nadded; i++) {
        struct mfs_tok_added *a = &t->added[i];
        struct mfs_tok_ns ns;

        if (mfs_tok_ns_init(&ns, a->content, a->len) < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        if (a->normalized && t->norm)
            rc = mfs_tok_norm_apply(t->norm, &ns);
        if (rc < 0) {
            mfs_tok_ns_release(&ns);
            return mfs_err_set(err, rc, "cannot normalize added token '%s'", a->content);
        }
        a->pat = ns.s;
        a->plen = ns.len;
        ns.s = NULL;
        mfs_tok_ns_release(&ns);
    }
    return 0;
}

static const cJSON *mfs_tok_member(const cJSON *root, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, k);

    return v && !cJSON_IsNull(v) ? v : NULL;
}

int mfs_tok_new(const char *json, size_t len, struct mfs_tok **tokp, struct mfs_err *err)
{
    struct mfs_tok *t = NULL;
    cJSON *root;
    const cJSON *v;
    int rc;

    *tokp = NULL;
    root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return mfs_err_set(err, -EINVAL, "tokenizer.json is not a JSON object");
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    v = mfs_tok_member(root, "model");
    if (!v) {
        rc = mfs_err_set(err, -EINVAL, "tokenizer.json has no 'model'");
        goto out_free;
    }
    rc = mfs_tok_model_new(v, &t->model, err);
    v = mfs_tok_member(root, "normalizer");
    if (rc == 0 && v)
        rc = mfs_tok_norm_new(v, &t->norm, err);
    v = mfs_tok_member(root, "pre_tokenizer");
    if (rc == 0 && v)
        rc = mfs_tok_pre_new(v, &t->pre, err);
    v = mfs_tok_member(root, "post_processor");
    if (rc == 0 && v)
        rc = mfs_tok_post_new(v, &t->post, err);
    v = mfs_tok_member(root, "decoder");
    if (rc == 0 && v)
        rc = mfs_tok_dec_new(v, &t->dec, err);
    if (rc == 0)
        rc = mfs_tok_load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err);
    if (rc < 0)
        goto out_free;
    t->vocab_size = mfs_tok_model_id_bound(t->model);
    if (t->nadded_r > t->vocab_size)
        t->vocab_size = t->nadded_r;
    *tokp = t;
    t = NULL;
out_free:
    mfs_tok_free(&t);
    cJSON_Delete(root);
    return rc;
}

/* ---- added tokens ---- */

static bool mfs_tok_ends_word(const char *s, size_t len)
{
    size_t p = len;
    uint32_t c;

    if (len == 0)
        return false;
    p--;
    while (p > 0 && ((unsigned char)s[p] & 0xc0) == 0x80)
        p--;
    return mfs_tok_utf8_dec(s + p, len - p, &c) > 0 && mfs_tok_is_word(c);
}

static bool mfs_tok_starts_word(const char *s, size_t len)
{
    uint32_t c;

    return len > 0 && mfs_tok_utf8_dec(s, len, &c) > 0 && mfs_tok_is_word(c);
}

/* Split every pending piece of pts on the added tokens whose normalized
 * flag equals normalized (AddedVocabulary::find_matches). */
static int mfs_tok_split_added(const struct mfs_tok *t, struct mfs_tok_pts *pts,
                           const struct mfs_tok_ns *ns, bool normalized)
{
    const char *s = ns->s;
    size_t len = ns->len;
    size_t pos = 0;
    size_t start_off = 0;
    size_t i;
    int rc = 0;

    while (pos < len && rc == 0) {
        size_t p;
        size_t best_len = 0;
        size_t best = 0;
        size_t start;
        size_t stop;
        const struct mfs_tok_added *a;

        /* Leftmost-longest match from pos (aho-corasick's find_iter). */
        for (p = pos; p < len && best_len == 0; p++) {
            for (i = 0; i < t->nadded; i++) {
                const struct mfs_tok_added *c = &t->added[i];

                if (c->normalized != normalized || c->plen == 0 || c->plen <= best_len ||
                    c->plen > len - p || c->pat[0] != s[p] || memcmp(c->pat, s + p, c->plen))
                    continue;
                best_len = c->plen;
                best = i;
            }
            if (best_len)
                break;
        }
        if (best_len == 0)
            break;
        a = &t->added[best];
        start = p;
        stop = p + best_len;
        pos = stop;
        if (a->single_word) {
            bool start_space = start == 0 || !mfs_tok_ends_word(s, start);
            bool stop_space = stop == len || !mfs_tok_starts_word(s + stop, len - stop);

            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            size_t ns0 = start;

            while (ns0 > 0) {
                size_t q = ns0 - 1;
                uint32_t c;

                while (q > 0 && ((unsigned char)s[q] & 0xc0) == 0x80)
                    q--;
                if (mfs_tok_utf8_dec(s + q, ns0 - q, &c) < 0 || !mfs_tok_is_whitespace(c))
                    break;
                ns0 = q;
            }
            start = ns0 > start_off ? ns0 : start_off;
        }
        if (a->rstrip) {
            while (stop < len) {
                uint32_t c;
                int l = mfs_tok_utf8_dec(s + stop, len - stop, &c);

                if (l < 0 || !mfs_tok_is_whitespace(c))
                    break;
                stop += (size_t)l;
            }
            /* The automaton goes on from the raw match end, not from stop. */
        }
        if (start_off < start) {
            struct mfs_tok_ns piece;

            rc = mfs_tok_ns_slice(ns, start_off, start, &piece);
            if (rc == 0)
                rc = mfs_tok_pts_push(pts, &piece);
        }
        if (rc == 0) {
            struct mfs_tok_ns piece;

            rc = mfs_tok_ns_slice(ns, start, stop, &piece);
            if (rc == 0) {
                size_t t0 = pts->nt;

                rc = mfs_tok_pts_tok(pts, a->id, piece.s, piece.len, 0, piece.len);
                if (rc == 0 && piece.len > 0) {
                    rc = mfs_tok_pts_push(pts, &piece);
                    if (rc == 0) {
                        pts->v[pts->n - 1].done = true;
                        pts->v[pts->n - 1].t0 = t0;
                        pts->v[pts->n - 1].nt = 1;
                    }
                } else {
                    mfs_tok_ns_release(&piece);
                }
            }
        }
        start_off = stop;
    }
    if (rc == 0 && start_off != len) {
        struct mfs_tok_ns piece;

        rc = mfs_tok_ns_slice(ns, start_off, len, &piece);
        if (rc == 0)
            rc = mfs_tok_pts_push(pts, &piece);
    }
    return rc;
}

/* One pass of extract_and_normalize: every pending split is (optionally
 * normalized and) cut on the added tokens with that normalized flag. */
static int mfs_tok_added_pass(const struct mfs_tok *t, struct mfs_tok_pts *pts, bool normalized)
{
    size_t n = pts->n;
    size_t i;
    int rc = 0;

    /* New pieces go after the current ones, which are dropped at the end. */
    for (i = 0; i < n && rc == 0; i++) {
        struct mfs_tok_ns cur = pts->v[i].ns;
        bool done = pts->v[i].done;
        size_t t0 = pts->v[i].t0;
        size_t nt = pts->v[i].nt;

        memset(&pts->v[i].ns, 0, sizeof(pts->v[i].ns));
        if (done) {
            rc = mfs_tok_pts_push(pts, &cur);
            if (rc == 0) {
                pts->v[pts->n - 1].done = true;
                pts->v[pts->n - 1].t0 = t0;
                pts->v[pts->n - 1].nt = nt;
            }
            continue;
        }
        if (normalized && t->norm)
            rc = mfs_tok_norm_apply(t->norm, &cur);
        if (rc == 0)
            rc = mfs_tok_split_added(t, pts, &cur, normalized);
        mfs_tok_ns_release(&cur);
    }
    for (i = 0; i < n; i++)
        mfs_tok_ns_release(&pts->v[i].ns);
    if (pts->n > n)
        memmove(pts->v, pts->v + n, (pts->n - n) * sizeof(*pts->v));
    pts->n -= n;
    return rc;
}

/* ---- encode ---- */

void mfs_tok_enc_release(struct mfs_tok_enc *enc)
{
    if (!enc)
        return;
    free(enc->ids);
    free(enc->tokens);
    free(enc->offsets);
    free(enc->offsets_cp);
    free(enc->pool);
    memset(enc, 0, sizeof(*enc));
}

int mfs_tok_encode(const struct mfs_tok *tok, const char *text, size_t len,
                   bool add_special_tokens, struct mfs_tok_enc *out, struct mfs_err *err)
{
    struct mfs_tok_pts pts = { 0 };
    struct mfs_tok_wenc w = { 0 };
    struct mfs_tok_scratch sc = { 0 };
    struct mfs_tok_ns whole;
    size_t *cidx = NULL;                    /* byte -> code point index */
    size_t nchars = 0;
    size_t i;
    size_t k;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!text && len)
        return mfs_err_set(err, -EINVAL, "cannot encode: NULL text");
    if (len > MFS_TOK_MAX_TEXT)
        return mfs_err_set(err, -EINVAL, "cannot encode: text of %zu bytes is over the %u limit",
                           len, MFS_TOK_MAX_TEXT);
    if (!mfs_tok_utf8_valid(text ? text : "", len))
        return mfs_err_set(err, -EINVAL, "cannot encode: text is not valid UTF-8");
    if (!text)
        text = "";
    rc = mfs_tok_ns_init(&whole, text, len);
    if (rc == 0)
        rc = mfs_tok_pts_push(&pts, &whole);
    if (rc == 0)
        rc = mfs_tok_added_pass(tok, &pts, false);
    if (rc == 0)
        rc = mfs_tok_added_pass(tok, &pts, true);
    if (rc == 0 && tok->pre)
        rc = mfs_tok_pre_apply(tok->pre, &pts);
    for (i = 0; i < pts.n && rc == 0; i++) {
        struct mfs_tok_split *sp = &pts.v[i];

        if (sp->done)
            continue;
        sp->t0 = pts.nt;
        rc = mfs_tok_model_tokenize(tok->model, &sc, sp->ns.s, sp->ns.len, &pts);
        sp->nt = pts.nt - sp->t0;
        sp->done = true;
    }
    if (rc < 0) {
        rc = mfs_err_set(err, rc, "cannot encode: %s",
                         rc == -ENOMEM ? "out of memory"
                                       : "the model cannot tokenize this text (unk token missing)");
        goto out_free;
    }
    cidx = malloc((len + 1) * sizeof(*cidx));
    if (!cidx) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    for (i = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xc0) != 0x80 && i > 0)
            nchars++;
        cidx[i] = nchars;
    }
    /* into_encoding: offsets back to the input, then BytesToCharOffsetConverter. */
    for (i = 0; i < pts.n && rc == 0; i++) {
        const struct mfs_tok_split *sp = &pts.v[i];

        for (k = 0; k < sp->nt && rc == 0; k++) {
            const struct mfs_tok_token *tk = &pts.t[sp->t0 + k];
            struct mfs_tok_span ob = { tk->s, tk->e };
            struct mfs_tok_span oc;
            size_t oa;
            size_t obb;

            if (mfs_tok_ns_n2o(&sp->ns, tk->s, tk->e, &oa, &obb)) {
                ob.start = sp->ns.shift + oa;
                ob.end = sp->ns.shift + obb;
            }
            oc = ob;
            if (ob.start < len) {
                oc.start = cidx[ob.start];
                if (ob.end < len)
                    oc.end = cidx[ob.end];
                else if (ob.end >= 1 && ob.end - 1 < len)
                    oc.end = cidx[ob.end - 1] + 1;
                else
                    oc.end = cidx[ob.start] + 1;
            }
            rc = mfs_tok_wenc_add(&w, tk->id, pts.pool.data + tk->vo, tk->vlen, ob, oc);
        }
    }
    if (rc == 0 && tok->post)
        rc = mfs_tok_post_apply(tok->post, &w, add_special_tokens);
    if (rc < 0) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    out->n = w.n;
    out->ids = malloc((w.n + 1) * sizeof(*out->ids));
    out->tokens = malloc((w.n + 1) * sizeof(*out->tokens));
    out->offsets = malloc((w.n + 1) * sizeof(*out->offsets));
    out->offsets_cp = malloc((w.n + 1) * sizeof(*out->offsets_cp));
    out->pool = malloc(w.pool.len + 1);
    if (!out->ids || !out->tokens || !out->offsets || !out->offsets_cp || !out->pool) {
        mfs_tok_enc_release(out);
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    if (w.pool.len)
        memcpy(out->pool, w.pool.data, w.pool.len);
    for (i = 0; i < w.n; i++) {
        out->ids[i] = w.ids[i];
        out->tokens[i] = out->pool + w.vo[i];
        out->offsets[i] = w.ob[i];
        out->offsets_cp[i] = w.oc[i];
    }
    rc = 0;
out_free:
    mfs_tok_scratch_release(&sc);
    free(cidx);
    mfs_tok_wenc_release(&w);
    mfs_tok_pts_release(&pts);
    return rc;
}

/* ---- lookups ---- */

int32_t mfs_tok_token_to_id(const struct mfs_tok *tok, const char *token)
{
    size_t len = strlen(token);
    int32_t id = mfs_tok_smap_get(&tok->added_map, token, len);

    return id >= 0 ? id : mfs_tok_model_token_to_id(tok->model, token, len);
}

const char *mfs_tok_id_to_token(const struct mfs_tok *tok, int32_t id)
{
    if (id < 0)
        return NULL;
    if ((size_t)id < tok->nadded_r && tok->added_r[id] >= 0)
        return tok->added[tok->added_r[id]].content;
    return mfs_tok_model_id_to_token(tok->model, id);
}

size_t mfs_tok_vocab_size(const struct mfs_tok *tok)
{
    return tok->vocab_size;
}

bool mfs_tok_is_special(const struct mfs_tok *tok, int32_t id)
{
    const char *s = mfs_tok_id_to_token(tok, id);

    return s && mfs_tok_smap_get(&tok->special, s, strlen(s)) >= 0;
}

/* ---- decode ---- */

int mfs_tok_decode(const struct mfs_tok *tok, const int32_t *ids, size_t n, bool skip_special,
                   char **textp, size_t *lenp, struct mfs_err *err)
{
    struct mfs_buf out = MFS_BUF_INIT;
    const char **toks;
    size_t nt = 0;
    size_t i;
    int rc;

    *textp = NULL;
    if (lenp)
        *lenp = 0;
    toks = malloc((n + 1) * sizeof(*toks));
    if (!toks)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        const char *s = mfs_tok_id_to_token(tok, ids[i]);

        if (!s)
            continue;
        if (skip_special && mfs_tok_smap_get(&tok->special, s, strlen(s)) >= 0)
            continue;
        toks[nt++] = s;
    }
    rc = mfs_tok_dec_apply(tok->dec, toks, nt, &out);
    free(toks);
    if (rc < 0) {
        mfs_buf_release(&out);
        return mfs_err_set(err, rc, "cannot decode: out of memory");
    }
    if (lenp)
        *lenp = out.len;
    *textp = mfs_buf_steal(&out);
    if (!*textp)
        return mfs_err_set(err, -ENOMEM, "cannot decode: out of memory");
    return 0;
}

/* ---- streaming decode ---- */

void mfs_tok_stream_init(struct mfs_tok_stream *st, bool skip_special)
{
    memset(st, 0, sizeof(*st));
    st->skip_special = skip_special;
}

void mfs_tok_stream_release(struct mfs_tok_stream *st)
{
    bool skip;

    if (!st)
        return;
    skip = st->skip_special;
    free(st->ids);
    free(st->prefix);
    mfs_tok_stream_init(st, skip);
}

int mfs_tok_stream_step(const struct mfs_tok *tok, struct mfs_tok_stream *st, int32_t id,
                        char **textp, struct mfs_err *err)
{
    char *s = NULL;
    size_t slen = 0;
    int rc;

    *textp = NULL;
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        int32_t *v = realloc(st->ids, cap * sizeof(*v));

        if (!v)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        st->ids = v;
        st->cap = cap;
    }
    st->ids[st->n++] = id;
    rc = mfs_tok_decode(tok, st->ids, st->n, st->skip_special, &s, &slen, err);
    if (rc < 0)
        return rc;
    /* DecodeStream::step: emit once the text grew and does not end in
     * U+FFFD (an unfinished UTF-8 sequence). */
    if (slen > st->prefix_len && !(slen >= 3 && !memcmp(s + slen - 3, "\xef\xbf\xbd", 3))) {
        size_t new_prefix_index = st->n - st->prefix_index;
        char *text;

        if (st->prefix_len && memcmp(s, st->prefix, st->prefix_len)) {
            free(s);
            return mfs_err_set(err, -EINVAL, "decode stream: the decoder changed earlier text");
        }
        text = strdup(s + st->prefix_len);
        free(s);
        if (!text)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        memmove(st->ids, st->ids + st->prefix_index, (st->n - st->prefix_index) * sizeof(*st->ids));
        st->n -= st->prefix_index;
        free(st->prefix);
        st->prefix = NULL;
        rc = mfs_tok_decode(tok, st->ids, st->n, st->skip_special, &st->prefix, &st->prefix_len,
                            err);
        if (rc < 0) {
            free(text);
            return rc;
        }
        st->prefix_index = new_prefix_index;
        *textp = text;
        return 0;
    }
    free(s);
    return 0;
}
