/*
 * model/tok_pre.c - pre-tokenizers (tokenizers/src/pre_tokenizers/).
 *
 * A pre-tokenizer cuts every split that has no tokens yet into smaller
 * splits (PreTokenizedString::split); ByteLevel then also rewrites each
 * piece into the GPT-2 byte alphabet.  Regexes are the reference's
 * (Oniguruma syntax, run by PCRE2 after translation in tok_util.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_int.h"

/* pre_tokenizers/byte_level.rs */
static const char mfs_tok_gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

enum mfs_tok_pre_type {
    MFS_TOK_P_BYTELEVEL,
    MFS_TOK_P_SPLIT,
    MFS_TOK_P_METASPACE,
    MFS_TOK_P_WHITESPACE,
    MFS_TOK_P_WSSPLIT,
    MFS_TOK_P_BERT,
    MFS_TOK_P_PUNCT,
    MFS_TOK_P_DIGITS,
    MFS_TOK_P_CHARDELIM,
    MFS_TOK_P_SEQ,
};

enum mfs_tok_prepend {
    MFS_TOK_PREPEND_ALWAYS,
    MFS_TOK_PREPEND_FIRST,
    MFS_TOK_PREPEND_NEVER,
};

struct mfs_tok_pre {
    enum mfs_tok_pre_type type;
    bool add_prefix_space;                  /* ByteLevel */
    bool use_regex;                         /* ByteLevel */
    struct mfs_tok_re re;                       /* ByteLevel (GPT-2) or Split pattern */
    enum mfs_tok_split_behavior behavior;       /* Split, Punctuation */
    bool invert;                            /* Split */
    uint32_t replacement;                   /* Metaspace char, CharDelimiterSplit delimiter */
    char rep[5];                            /* Metaspace char as UTF-8 */
    enum mfs_tok_prepend prepend;               /* Metaspace */
    bool split;                             /* Metaspace */
    bool individual;                        /* Digits */
    struct mfs_tok_pre **sub;                   /* Sequence members */
    size_t nsub;                            /* members */
};

void mfs_tok_pre_free(struct mfs_tok_pre *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->nsub; i++)
        mfs_tok_pre_free(p->sub[i]);
    free(p->sub);
    mfs_tok_re_release(&p->re);
    free(p);
}

static int mfs_tok_pre_behavior(const cJSON *j, enum mfs_tok_split_behavior dflt,
                            enum mfs_tok_split_behavior *out, struct mfs_err *err)
{
    static const struct { const char *name; enum mfs_tok_split_behavior b; } names[] = {
        { "Removed", MFS_TOK_SPLIT_REMOVED },
        { "Isolated", MFS_TOK_SPLIT_ISOLATED },
        { "MergedWithPrevious", MFS_TOK_SPLIT_MERGED_PREV },
        { "MergedWithNext", MFS_TOK_SPLIT_MERGED_NEXT },
        { "Contiguous", MFS_TOK_SPLIT_CONTIGUOUS },
    };
    const char *s = mfs_tok_js_str(j, "behavior");
    size_t i;

    *out = dflt;
    if (!s)
        return 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcmp(s, names[i].name)) {
            *out = names[i].b;
            return 0;
        }
    }
    return mfs_err_set(err, -EINVAL, "unsupported split behavior '%s'", s);
}

static int mfs_tok_pre_bool(const cJSON *j, const char *k, bool dflt, bool *out,
                            struct mfs_err *err)
{
    int v = mfs_tok_js_bool(j, k, dflt);

    if (v < 0)
        return mfs_err_set(err, -EINVAL, "pre_tokenizer: '%s' must be a boolean", k);
    *out = v;
    return 0;
}

static int mfs_tok_pre_metaspace(const cJSON *j, struct mfs_tok_pre *p, struct mfs_err *err)
{
    const char *rep = mfs_tok_js_str(j, "replacement");
    const char *scheme = mfs_tok_js_str(j, "prepend_scheme");
    int l;
    int rc;

    if (!rep || !*rep)
        return mfs_err_set(err, -EINVAL, "pre_tokenizer 'Metaspace' without 'replacement'");
    l = mfs_tok_utf8_dec(rep, strlen(rep), &p->replacement);
    if (l < 0 || rep[l])
        return mfs_err_set(err, -EINVAL, "Metaspace replacement must be one character");
    memcpy(p->rep, rep, (size_t)l);
    p->rep[l] = 0;
    rc = mfs_tok_pre_bool(j, "split", true, &p->split, err);
    if (rc < 0)
        return rc;
    if (!scheme) {
        bool aps = true;

        /* Files written before prepend_scheme existed use add_prefix_space. */
        rc = mfs_tok_pre_bool(j, "add_prefix_space", true, &aps, err);
        p->prepend = aps ? MFS_TOK_PREPEND_ALWAYS : MFS_TOK_PREPEND_NEVER;
        return rc;
    }
    if (!strcmp(scheme, "always"))
        p->prepend = MFS_TOK_PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first"))
        p->prepend = MFS_TOK_PREPEND_FIRST;
    else if (!strcmp(scheme, "never"))
        p->prepend = MFS_TOK_PREPEND_NEVER;
    else
        return mfs_err_set(err, -EINVAL, "unsupported Metaspace prepend_scheme '%s'", scheme);
    return 0;
}

int mfs_tok_pre_new(const cJSON *j, struct mfs_tok_pre **pp, struct mfs_err *err)
{
    struct mfs_tok_pre *p;
    const char *type = mfs_tok_js_str(j, "type");
    int rc = 0;

    *pp = NULL;
    if (!type)
        return mfs_err_set(err, -EINVAL, "pre_tokenizer without a 'type'");
    p = calloc(1, sizeof(*p));
    if (!p)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!strcmp(type, "ByteLevel")) {
        p->type = MFS_TOK_P_BYTELEVEL;
        rc = mfs_tok_pre_bool(j, "add_prefix_space", true, &p->add_prefix_space, err);
        if (rc == 0)
            rc = mfs_tok_pre_bool(j, "use_regex", true, &p->use_regex, err);
        if (rc == 0 && p->use_regex)
            rc = mfs_tok_re_compile(&p->re, mfs_tok_gpt2_re, strlen(mfs_tok_gpt2_re), false, err);
    } else if (!strcmp(type, "Split")) {
        p->type = MFS_TOK_P_SPLIT;
        rc = mfs_tok_re_from_json(&p->re, cJSON_GetObjectItemCaseSensitive(j, "pattern"),
                              "pre_tokenizer 'Split'", err);
        if (rc == 0)
            rc = mfs_tok_pre_behavior(j, MFS_TOK_SPLIT_REMOVED, &p->behavior, err);
        if (rc == 0 && !cJSON_GetObjectItemCaseSensitive(j, "behavior"))
            rc = mfs_err_set(err, -EINVAL, "pre_tokenizer 'Split' without 'behavior'");
        if (rc == 0)
            rc = mfs_tok_pre_bool(j, "invert", false, &p->invert, err);
    } else if (!strcmp(type, "Metaspace")) {
        p->type = MFS_TOK_P_METASPACE;
        rc = mfs_tok_pre_metaspace(j, p, err);
    } else if (!strcmp(type, "Whitespace")) {
        p->type = MFS_TOK_P_WHITESPACE;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        p->type = MFS_TOK_P_WSSPLIT;
    } else if (!strcmp(type, "BertPreTokenizer")) {
        p->type = MFS_TOK_P_BERT;
    } else if (!strcmp(type, "Punctuation")) {
        p->type = MFS_TOK_P_PUNCT;
        rc = mfs_tok_pre_behavior(j, MFS_TOK_SPLIT_ISOLATED, &p->behavior, err);
    } else if (!strcmp(type, "Digits")) {
        p->type = MFS_TOK_P_DIGITS;
        rc = mfs_tok_pre_bool(j, "individual_digits", false, &p->individual, err);
    } else if (!strcmp(type, "CharDelimiterSplit")) {
        const char *d = mfs_tok_js_str(j, "delimiter");
        int l = d ? mfs_tok_utf8_dec(d, strlen(d), &p->replacement) : -1;

        p->type = MFS_TOK_P_CHARDELIM;
        if (l < 0 || d[l])
            rc = mfs_err_set(err, -EINVAL, "CharDelimiterSplit: 'delimiter' must be one char");
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        const cJSON *e;

        p->type = MFS_TOK_P_SEQ;
        if (!cJSON_IsArray(arr)) {
            rc = mfs_err_set(err, -EINVAL, "pre_tokenizer 'Sequence' without 'pretokenizers'");
        } else {
            p->sub = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*p->sub));
            if (!p->sub)
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
            cJSON_ArrayForEach(e, arr) {
                if (rc < 0)
                    break;
                rc = mfs_tok_pre_new(e, &p->sub[p->nsub], err);
                if (rc == 0)
                    p->nsub++;
            }
        }
    } else {
        rc = mfs_err_set(err, -EINVAL, "unsupported pre_tokenizer '%s'", type);
    }
    if (rc < 0) {
        mfs_tok_pre_free(p);
        return rc;
    }
    *pp = p;
    return 0;
}

static bool mfs_tok_pred_ws(uint32_t c, const void *ctx)
{
    (void)ctx;
    return mfs_tok_is_whitespace(c);
}

static bool mfs_tok_pred_punct(uint32_t c, const void *ctx)
{
    (void)ctx;
    return mfs_tok_is_punct(c);
}

static bool mfs_tok_pred_num(uint32_t c, const void *ctx)
{
    (void)ctx;
    return mfs_tok_is_numeric(c);
}

static bool mfs_tok_pred_char(uint32_t c, const void *ctx)
{
    return c == *(const uint32_t *)ctx;
}

/* Whitespace: `\w+|[^\w\s]+` (Rust regex, Unicode \w and \s) inverted:
 * the runs are kept (not matches), the gaps between them removed. */
static int mfs_tok_find_whitespace(const char *s, size_t len, struct mfs_tok_mlist *ml)
{
    size_t i = 0;
    size_t prev = 0;
    int rc = 0;

    ml->n = 0;
    if (len == 0)
        return mfs_tok_mlist_add(ml, 0, 0, true);
    while (i < len && rc == 0) {
        uint32_t c;
        int l = mfs_tok_utf8_dec(s + i, len - i, &c);
        int cls;
        size_t st = i;

        if (l < 0)
            return -EINVAL;
        cls = mfs_tok_is_word(c) ? 1 : mfs_tok_is_whitespace(c) ? 0 : 2;
        if (cls == 0) {
            i += (size_t)l;
            continue;
        }
        while (i < len) {
            int l2 = mfs_tok_utf8_dec(s + i, len - i, &c);
            int c2;

            if (l2 < 0)
                return -EINVAL;
            c2 = mfs_tok_is_word(c) ? 1 : mfs_tok_is_whitespace(c) ? 0 : 2;
            if (c2 != cls)
                break;
            i += (size_t)l2;
        }
        if (prev != st)
            rc = mfs_tok_mlist_add(ml, prev, st, true);
        if (rc == 0)
            rc = mfs_tok_mlist_add(ml, st, i, false);
        prev = i;
    }
    if (rc == 0 && prev != len)
        rc = mfs_tok_mlist_add(ml, prev, len, true);
    return rc;
}

/* Apply one splitting step to every split without tokens. */
enum mfs_tok_step {
    MFS_TOK_STEP_BYTELEVEL_SPLIT,
    MFS_TOK_STEP_BYTELEVEL_MAP,
    MFS_TOK_STEP_SPLIT,
    MFS_TOK_STEP_METASPACE,
    MFS_TOK_STEP_WHITESPACE,
    MFS_TOK_STEP_WS,
    MFS_TOK_STEP_PUNCT,
    MFS_TOK_STEP_DIGITS,
    MFS_TOK_STEP_CHARDELIM,
};

static int mfs_tok_step_one(const struct mfs_tok_pre *p, enum mfs_tok_step step,
                            struct mfs_tok_ns *ns,
                        struct mfs_tok_pts *out, struct mfs_tok_mlist *ml)
{
    enum mfs_tok_split_behavior b = MFS_TOK_SPLIT_ISOLATED;
    size_t i;
    int rc = 0;

    switch (step) {
    case MFS_TOK_STEP_BYTELEVEL_SPLIT:
        if (p->add_prefix_space && (ns->len == 0 || ns->s[0] != ' '))
            rc = mfs_tok_ns_prepend(ns, " ");
        if (rc < 0)
            return rc;
        if (!p->use_regex)
            return mfs_tok_pts_push(out, ns);
        rc = mfs_tok_re_find(&p->re, ns->s, ns->len, ml);
        break;
    case MFS_TOK_STEP_BYTELEVEL_MAP:
        rc = mfs_tok_ns_bytelevel(ns);
        if (rc < 0)
            return rc;
        return mfs_tok_pts_push(out, ns);
    case MFS_TOK_STEP_SPLIT:
        rc = mfs_tok_re_find(&p->re, ns->s, ns->len, ml);
        b = p->behavior;
        if (p->invert) {
            for (i = 0; i < ml->n; i++)
                ml->v[i].match = !ml->v[i].match;
        }
        break;
    case MFS_TOK_STEP_METASPACE:
        rc = mfs_tok_pred_find(mfs_tok_pred_char, &(uint32_t){ ' ' }, ns->s, ns->len, ml);
        if (rc == 0)
            rc = mfs_tok_ns_replace(ns, ml, p->rep);
        if (rc < 0)
            return rc;
        {
            uint32_t first = 0;
            bool starts = ns->len > 0 && mfs_tok_utf8_dec(ns->s, ns->len, &first) > 0 &&
                          first == p->replacement;

            if (p->prepend == MFS_TOK_PREPEND_ALWAYS && !starts)
                rc = mfs_tok_ns_prepend(ns, p->rep);
            else if (p->prepend == MFS_TOK_PREPEND_FIRST && !starts && ns->shift == 0)
                rc = mfs_tok_ns_prepend(ns, p->rep);
        }
        if (rc < 0)
            return rc;
        if (!p->split)
            return mfs_tok_pts_push(out, ns);
        rc = mfs_tok_pred_find(mfs_tok_pred_char, &p->replacement, ns->s, ns->len, ml);
        b = MFS_TOK_SPLIT_MERGED_NEXT;
        break;
    case MFS_TOK_STEP_WHITESPACE:
        rc = mfs_tok_find_whitespace(ns->s, ns->len, ml);
        b = MFS_TOK_SPLIT_REMOVED;
        break;
    case MFS_TOK_STEP_WS:
        rc = mfs_tok_pred_find(mfs_tok_pred_ws, NULL, ns->s, ns->len, ml);
        b = MFS_TOK_SPLIT_REMOVED;
        break;
    case MFS_TOK_STEP_PUNCT:
        rc = mfs_tok_pred_find(mfs_tok_pred_punct, NULL, ns->s, ns->len, ml);
        b = p->type == MFS_TOK_P_BERT ? MFS_TOK_SPLIT_ISOLATED : p->behavior;
        break;
    case MFS_TOK_STEP_CHARDELIM:
        rc = mfs_tok_pred_find(mfs_tok_pred_char, &p->replacement, ns->s, ns->len, ml);
        b = MFS_TOK_SPLIT_REMOVED;
        break;
    case MFS_TOK_STEP_DIGITS:
        rc = mfs_tok_pred_find(mfs_tok_pred_num, NULL, ns->s, ns->len, ml);
        b = p->individual ? MFS_TOK_SPLIT_ISOLATED : MFS_TOK_SPLIT_CONTIGUOUS;
        break;
    }
    if (rc < 0)
        return rc;
    rc = mfs_tok_ns_split(ns, ml, b, out);
    mfs_tok_ns_release(ns);
    return rc;
}

static int mfs_tok_step(const struct mfs_tok_pre *p, enum mfs_tok_step step,
                        struct mfs_tok_pts *pts)
{
    struct mfs_tok_pts out = { 0 };
    struct mfs_tok_mlist ml = { 0 };
    size_t i;
    int rc = 0;

    for (i = 0; i < pts->n; i++) {
        struct mfs_tok_split *sp = &pts->v[i];

        if (rc < 0) {
            mfs_tok_ns_release(&sp->ns);
            continue;
        }
        if (sp->done) {
            size_t t0 = sp->t0;
            size_t nt = sp->nt;

            rc = mfs_tok_pts_push(&out, &sp->ns);
            if (rc == 0) {
                out.v[out.n - 1].done = true;
                out.v[out.n - 1].t0 = t0;
                out.v[out.n - 1].nt = nt;
            }
            continue;
        }
        rc = mfs_tok_step_one(p, step, &sp->ns, &out, &ml);
        mfs_tok_ns_release(&sp->ns);
    }
    mfs_tok_mlist_release(&ml);
    free(pts->v);
    pts->v = out.v;
    pts->n = out.n;
    pts->cap = out.cap;
    return rc;
}

int mfs_tok_pre_apply(const struct mfs_tok_pre *p, struct mfs_tok_pts *pts)
{
    size_t i;
    int rc = 0;

    switch (p->type) {
    case MFS_TOK_P_BYTELEVEL:
        rc = mfs_tok_step(p, MFS_TOK_STEP_BYTELEVEL_SPLIT, pts);
        if (rc == 0)
            rc = mfs_tok_step(p, MFS_TOK_STEP_BYTELEVEL_MAP, pts);
        break;
    case MFS_TOK_P_SPLIT:
        rc = mfs_tok_step(p, MFS_TOK_STEP_SPLIT, pts);
        break;
    case MFS_TOK_P_METASPACE:
        rc = mfs_tok_step(p, MFS_TOK_STEP_METASPACE, pts);
        break;
    case MFS_TOK_P_WHITESPACE:
        rc = mfs_tok_step(p, MFS_TOK_STEP_WHITESPACE, pts);
        break;
    case MFS_TOK_P_WSSPLIT:
        rc = mfs_tok_step(p, MFS_TOK_STEP_WS, pts);
        break;
    case MFS_TOK_P_BERT:
        rc = mfs_tok_step(p, MFS_TOK_STEP_WS, pts);
        if (rc == 0)
            rc = mfs_tok_step(p, MFS_TOK_STEP_PUNCT, pts);
        break;
    case MFS_TOK_P_PUNCT:
        rc = mfs_tok_step(p, MFS_TOK_STEP_PUNCT, pts);
        break;
    case MFS_TOK_P_DIGITS:
        rc = mfs_tok_step(p, MFS_TOK_STEP_DIGITS, pts);
        break;
    case MFS_TOK_P_CHARDELIM:
        rc = mfs_tok_step(p, MFS_TOK_STEP_CHARDELIM, pts);
        break;
    case MFS_TOK_P_SEQ:
        for (i = 0; i < p->nsub && rc == 0; i++)
            rc = mfs_tok_pre_apply(p->sub[i], pts);
        break;
    }
    return rc;
}
