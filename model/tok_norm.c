/*
 * model/tok_norm.c - normalizers (tokenizers/src/normalizers/).
 *
 * Each one edits a mfs_tok_ns in place through the alignment-keeping
 * operations of tok_util.c, in the same steps as the reference, so that
 * offsets map back to the original text the same way.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_int.h"

enum mfs_tok_norm_type {
    MFS_TOK_N_BERT,
    MFS_TOK_N_LOWER,
    MFS_TOK_N_STRIP,
    MFS_TOK_N_STRIP_ACCENTS,
    MFS_TOK_N_NFC,
    MFS_TOK_N_NFD,
    MFS_TOK_N_NFKC,
    MFS_TOK_N_NFKD,
    MFS_TOK_N_REPLACE,
    MFS_TOK_N_PREPEND,
    MFS_TOK_N_APPEND,
    MFS_TOK_N_SEQ,
};

struct mfs_tok_norm {
    enum mfs_tok_norm_type type;
    bool clean_text;                        /* Bert */
    bool chinese;                           /* Bert handle_chinese_chars */
    bool strip_accents;                     /* Bert (null resolved to lowercase) */
    bool lowercase;                         /* Bert */
    bool left;                              /* Strip */
    bool right;                             /* Strip */
    char *str;                              /* Prepend/Append text, Replace content */
    struct mfs_tok_re re;                       /* Replace pattern */
    struct mfs_tok_norm **sub;                  /* Sequence members */
    size_t nsub;                            /* members */
};

void mfs_tok_norm_free(struct mfs_tok_norm *n)
{
    size_t i;

    if (!n)
        return;
    for (i = 0; i < n->nsub; i++)
        mfs_tok_norm_free(n->sub[i]);
    free(n->sub);
    free(n->str);
    mfs_tok_re_release(&n->re);
    free(n);
}

static int mfs_tok_norm_bool(const cJSON *j, const char *k, bool dflt, bool *out,
                         struct mfs_err *err)
{
    int v = mfs_tok_js_bool(j, k, dflt);

    if (v < 0)
        return mfs_err_set(err, -EINVAL, "normalizer: '%s' must be a boolean", k);
    *out = v;
    return 0;
}

int mfs_tok_norm_new(const cJSON *j, struct mfs_tok_norm **np, struct mfs_err *err)
{
    struct mfs_tok_norm *n;
    const char *type = mfs_tok_js_str(j, "type");
    int rc = 0;

    *np = NULL;
    if (!type)
        return mfs_err_set(err, -EINVAL, "normalizer without a 'type'");
    n = calloc(1, sizeof(*n));
    if (!n)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!strcmp(type, "BertNormalizer")) {
        n->type = MFS_TOK_N_BERT;
        rc = mfs_tok_norm_bool(j, "clean_text", true, &n->clean_text, err);
        if (rc == 0)
            rc = mfs_tok_norm_bool(j, "handle_chinese_chars", true, &n->chinese, err);
        if (rc == 0)
            rc = mfs_tok_norm_bool(j, "lowercase", true, &n->lowercase, err);
        /* strip_accents: null means "follow lowercase" (bert.rs). */
        if (rc == 0)
            rc = mfs_tok_norm_bool(j, "strip_accents", n->lowercase, &n->strip_accents, err);
    } else if (!strcmp(type, "Lowercase")) {
        n->type = MFS_TOK_N_LOWER;
    } else if (!strcmp(type, "Strip")) {
        n->type = MFS_TOK_N_STRIP;
        rc = mfs_tok_norm_bool(j, "strip_left", true, &n->left, err);
        if (rc == 0)
            rc = mfs_tok_norm_bool(j, "strip_right", true, &n->right, err);
    } else if (!strcmp(type, "StripAccents")) {
        n->type = MFS_TOK_N_STRIP_ACCENTS;
    } else if (!strcmp(type, "NFC")) {
        n->type = MFS_TOK_N_NFC;
    } else if (!strcmp(type, "NFD")) {
        n->type = MFS_TOK_N_NFD;
    } else if (!strcmp(type, "NFKC")) {
        n->type = MFS_TOK_N_NFKC;
    } else if (!strcmp(type, "NFKD")) {
        n->type = MFS_TOK_N_NFKD;
    } else if (!strcmp(type, "Replace")) {
        const char *content = mfs_tok_js_str(j, "content");

        n->type = MFS_TOK_N_REPLACE;
        if (!content) {
            rc = mfs_err_set(err, -EINVAL, "normalizer 'Replace' without 'content'");
        } else {
            n->str = strdup(content);
            rc = n->str ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
        }
        if (rc == 0)
            rc = mfs_tok_re_from_json(&n->re, cJSON_GetObjectItemCaseSensitive(j, "pattern"),
                                  "normalizer 'Replace'", err);
    } else if (!strcmp(type, "Prepend") || !strcmp(type, "Append")) {
        const char *s;

        n->type = !strcmp(type, "Prepend") ? MFS_TOK_N_PREPEND : MFS_TOK_N_APPEND;
        s = mfs_tok_js_str(j, n->type == MFS_TOK_N_APPEND ? "append" : "prepend");
        if (!s) {
            rc = mfs_err_set(err, -EINVAL, "normalizer '%s' without its string", type);
        } else {
            n->str = strdup(s);
            rc = n->str ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
        }
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        const cJSON *e;

        n->type = MFS_TOK_N_SEQ;
        if (!cJSON_IsArray(arr)) {
            rc = mfs_err_set(err, -EINVAL, "normalizer 'Sequence' without 'normalizers'");
        } else {
            n->sub = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*n->sub));
            if (!n->sub)
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
            cJSON_ArrayForEach(e, arr) {
                if (rc < 0)
                    break;
                rc = mfs_tok_norm_new(e, &n->sub[n->nsub], err);
                if (rc == 0)
                    n->nsub++;
            }
        }
    } else {
        rc = mfs_err_set(err, -EINVAL, "unsupported normalizer '%s'", type);
    }
    if (rc < 0) {
        mfs_tok_norm_free(n);
        return rc;
    }
    *np = n;
    return 0;
}

static bool mfs_tok_keep_clean(uint32_t c)
{
    if (c == 0 || c == 0xfffd)
        return false;
    if (c == '\t' || c == '\n' || c == '\r')
        return true;
    return !mfs_tok_is_other(c);
}

static bool mfs_tok_keep_non_mn(uint32_t c)
{
    return !mfs_tok_is_mn(c);
}

static bool mfs_tok_is_chinese(uint32_t c)
{
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
           (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* Bert clean_text's map (whitespace -> ' ') or chinese padding. */
static int mfs_tok_norm_bert_map(struct mfs_tok_ns *ns, bool chinese)
{
    uint32_t *cps = NULL;
    struct mfs_tok_chg *t = NULL;
    size_t n;
    size_t k = 0;
    size_t i;
    int rc;

    rc = mfs_tok_ns_chars(ns, &cps, &n);
    if (rc < 0)
        return rc;
    t = malloc((3 * n + 1) * sizeof(*t));
    if (!t) {
        rc = -ENOMEM;
        goto out_free;
    }
    for (i = 0; i < n; i++) {
        uint32_t c = cps[i];

        if (chinese) {
            if (mfs_tok_is_chinese(c)) {
                t[k++] = (struct mfs_tok_chg){ ' ', 0 };
                t[k++] = (struct mfs_tok_chg){ c, 1 };
                t[k++] = (struct mfs_tok_chg){ ' ', 1 };
            } else {
                t[k++] = (struct mfs_tok_chg){ c, 0 };
            }
        } else {
            bool ws = c == '\t' || c == '\n' || c == '\r' || mfs_tok_is_whitespace(c);

            t[k++] = (struct mfs_tok_chg){ ws ? ' ' : c, 0 };
        }
    }
    rc = mfs_tok_ns_transform(ns, t, k, 0);
out_free:
    free(t);
    free(cps);
    return rc;
}

static int mfs_tok_ns_append(struct mfs_tok_ns *ns, const char *a)
{
    struct mfs_tok_chg chg[65];
    size_t n = 1;
    size_t i = 0;
    size_t alen = strlen(a);
    size_t b;
    uint32_t prev;

    if (ns->len == 0)
        return 0;
    b = ns->len - 1;
    while (b > 0 && ((unsigned char)ns->s[b] & 0xc0) == 0x80)
        b--;
    if (mfs_tok_utf8_dec(ns->s + b, ns->len - b, &prev) < 0)
        return -EINVAL;
    chg[0] = (struct mfs_tok_chg){ prev, 0 };
    while (i < alen && n < 65) {
        uint32_t c;
        int l = mfs_tok_utf8_dec(a + i, alen - i, &c);

        if (l < 0)
            return -EINVAL;
        chg[n++] = (struct mfs_tok_chg){ c, 1 };
        i += (size_t)l;
    }
    return mfs_tok_ns_transform_range(ns, b, ns->len, chg, n, 0);
}

int mfs_tok_norm_apply(const struct mfs_tok_norm *n, struct mfs_tok_ns *ns)
{
    struct mfs_tok_mlist ml = { 0 };
    size_t i;
    int rc = 0;

    switch (n->type) {
    case MFS_TOK_N_BERT:
        if (n->clean_text) {
            rc = mfs_tok_ns_filter(ns, mfs_tok_keep_clean);
            if (rc == 0)
                rc = mfs_tok_norm_bert_map(ns, false);
        }
        if (rc == 0 && n->chinese)
            rc = mfs_tok_norm_bert_map(ns, true);
        if (rc == 0 && n->strip_accents) {
            rc = mfs_tok_ns_nf(ns, false, false);
            if (rc == 0)
                rc = mfs_tok_ns_filter(ns, mfs_tok_keep_non_mn);
        }
        if (rc == 0 && n->lowercase)
            rc = mfs_tok_ns_lowercase(ns);
        break;
    case MFS_TOK_N_LOWER:
        rc = mfs_tok_ns_lowercase(ns);
        break;
    case MFS_TOK_N_STRIP:
        rc = mfs_tok_ns_strip(ns, n->left, n->right);
        break;
    case MFS_TOK_N_STRIP_ACCENTS:
        rc = mfs_tok_ns_filter(ns, mfs_tok_keep_non_mn);
        break;
    case MFS_TOK_N_NFC:
        rc = mfs_tok_ns_nf(ns, true, false);
        break;
    case MFS_TOK_N_NFD:
        rc = mfs_tok_ns_nf(ns, false, false);
        break;
    case MFS_TOK_N_NFKC:
        rc = mfs_tok_ns_nf(ns, true, true);
        break;
    case MFS_TOK_N_NFKD:
        rc = mfs_tok_ns_nf(ns, false, true);
        break;
    case MFS_TOK_N_REPLACE:
        rc = mfs_tok_re_find(&n->re, ns->s, ns->len, &ml);
        if (rc == 0)
            rc = mfs_tok_ns_replace(ns, &ml, n->str);
        break;
    case MFS_TOK_N_PREPEND:
        rc = mfs_tok_ns_prepend(ns, n->str);
        break;
    case MFS_TOK_N_APPEND:
        rc = mfs_tok_ns_append(ns, n->str);
        break;
    case MFS_TOK_N_SEQ:
        for (i = 0; i < n->nsub && rc == 0; i++)
            rc = mfs_tok_norm_apply(n->sub[i], ns);
        break;
    }
    mfs_tok_mlist_release(&ml);
    return rc;
}
