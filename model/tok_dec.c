/*
 * model/tok_dec.c - decoders (tokenizers/src/decoders/).
 *
 * A decoder maps a list of token strings to a list of strings
 * (decode_chain); the final text is their concatenation.  Sequence chains
 * them.  ByteLevel maps the GPT-2 alphabet back to bytes and repairs
 * invalid UTF-8 as String::from_utf8_lossy does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_int.h"

enum mfs_tok_dec_type {
    MFS_TOK_D_BYTELEVEL,
    MFS_TOK_D_METASPACE,
    MFS_TOK_D_WORDPIECE,
    MFS_TOK_D_BPE,
    MFS_TOK_D_BYTEFALLBACK,
    MFS_TOK_D_FUSE,
    MFS_TOK_D_STRIP,
    MFS_TOK_D_REPLACE,
    MFS_TOK_D_CTC,
    MFS_TOK_D_SEQ,
};

struct mfs_tok_dec {
    enum mfs_tok_dec_type type;
    uint32_t ch;                            /* Metaspace replacement, Strip content */
    bool prepend;                           /* Metaspace: prepend_scheme != never */
    char *str;                              /* WordPiece prefix, BPE suffix, Replace content,
                                             * CTC pad token */
    char *str2;                             /* CTC word delimiter */
    bool cleanup;                           /* WordPiece, CTC */
    size_t start;                           /* Strip */
    size_t stop;                            /* Strip */
    struct mfs_tok_re re;                       /* Replace */
    struct mfs_tok_dec **sub;                   /* Sequence */
    size_t nsub;                            /* members */
};

/* A list of owned strings. */
struct mfs_tok_strs {
    struct mfs_buf *v;                      /* [n] */
    size_t n;                               /* used */
};

void mfs_tok_dec_free(struct mfs_tok_dec *d)
{
    size_t i;

    if (!d)
        return;
    for (i = 0; i < d->nsub; i++)
        mfs_tok_dec_free(d->sub[i]);
    free(d->sub);
    free(d->str);
    free(d->str2);
    mfs_tok_re_release(&d->re);
    free(d);
}

static int mfs_tok_dec_str(const cJSON *j, const char *k, const char *dflt, char **out,
                       struct mfs_err *err)
{
    const char *s = mfs_tok_js_str(j, k);

    if (!s)
        s = dflt;
    if (!s)
        return mfs_err_set(err, -EINVAL, "decoder: missing '%s'", k);
    *out = strdup(s);
    return *out ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
}

static int mfs_tok_dec_char(const cJSON *j, const char *k, uint32_t *out, struct mfs_err *err)
{
    const char *s = mfs_tok_js_str(j, k);
    int l;

    if (!s)
        return mfs_err_set(err, -EINVAL, "decoder: missing '%s'", k);
    l = mfs_tok_utf8_dec(s, strlen(s), out);
    if (l < 0 || s[l])
        return mfs_err_set(err, -EINVAL, "decoder: '%s' must be one character", k);
    return 0;
}

static int mfs_tok_dec_bool(const cJSON *j, const char *k, bool dflt, bool *out,
                            struct mfs_err *err)
{
    int v = mfs_tok_js_bool(j, k, dflt);

    if (v < 0)
        return mfs_err_set(err, -EINVAL, "decoder: '%s' must be a boolean", k);
    *out = v;
    return 0;
}

static int mfs_tok_dec_size(const cJSON *j, const char *k, size_t *out, struct mfs_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);

    *out = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9)
        return mfs_err_set(err, -EINVAL, "decoder: '%s' must be a count", k);
    *out = (size_t)v->valuedouble;
    return 0;
}

int mfs_tok_dec_new(const cJSON *j, struct mfs_tok_dec **dp, struct mfs_err *err)
{
    struct mfs_tok_dec *d;
    const char *type = mfs_tok_js_str(j, "type");
    int rc = 0;

    *dp = NULL;
    if (!type)
        return mfs_err_set(err, -EINVAL, "decoder without a 'type'");
    d = calloc(1, sizeof(*d));
    if (!d)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!strcmp(type, "ByteLevel")) {
        d->type = MFS_TOK_D_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        const char *scheme = mfs_tok_js_str(j, "prepend_scheme");

        d->type = MFS_TOK_D_METASPACE;
        rc = mfs_tok_dec_char(j, "replacement", &d->ch, err);
        if (rc == 0 && scheme)
            d->prepend = strcmp(scheme, "never") != 0;
        else if (rc == 0)
            rc = mfs_tok_dec_bool(j, "add_prefix_space", true, &d->prepend, err);
    } else if (!strcmp(type, "WordPiece")) {
        d->type = MFS_TOK_D_WORDPIECE;
        rc = mfs_tok_dec_str(j, "prefix", "##", &d->str, err);
        if (rc == 0)
            rc = mfs_tok_dec_bool(j, "cleanup", true, &d->cleanup, err);
    } else if (!strcmp(type, "BPEDecoder")) {
        d->type = MFS_TOK_D_BPE;
        rc = mfs_tok_dec_str(j, "suffix", "</w>", &d->str, err);
    } else if (!strcmp(type, "ByteFallback")) {
        d->type = MFS_TOK_D_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->type = MFS_TOK_D_FUSE;
    } else if (!strcmp(type, "Strip")) {
        d->type = MFS_TOK_D_STRIP;
        rc = mfs_tok_dec_char(j, "content", &d->ch, err);
        if (rc == 0)
            rc = mfs_tok_dec_size(j, "start", &d->start, err);
        if (rc == 0)
            rc = mfs_tok_dec_size(j, "stop", &d->stop, err);
    } else if (!strcmp(type, "Replace")) {
        d->type = MFS_TOK_D_REPLACE;
        rc = mfs_tok_dec_str(j, "content", NULL, &d->str, err);
        if (rc == 0)
            rc = mfs_tok_re_from_json(&d->re, cJSON_GetObjectItemCaseSensitive(j, "pattern"),
                                  "decoder 'Replace'", err);
    } else if (!strcmp(type, "CTC")) {
        d->type = MFS_TOK_D_CTC;
        rc = mfs_tok_dec_str(j, "pad_token", "<pad>", &d->str, err);
        if (rc == 0)
            rc = mfs_tok_dec_str(j, "word_delimiter_token", "|", &d->str2, err);
        if (rc == 0)
            rc = mfs_tok_dec_bool(j, "cleanup", true, &d->cleanup, err);
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "decoders");
        const cJSON *e;

        d->type = MFS_TOK_D_SEQ;
        if (!cJSON_IsArray(arr)) {
            rc = mfs_err_set(err, -EINVAL, "decoder 'Sequence' without 'decoders'");
        } else {
            d->sub = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*d->sub));
            if (!d->sub)
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
            cJSON_ArrayForEach(e, arr) {
                if (rc < 0)
                    break;
                rc = mfs_tok_dec_new(e, &d->sub[d->nsub], err);
                if (rc == 0)
                    d->nsub++;
            }
        }
    } else {
        rc = mfs_err_set(err, -EINVAL, "unsupported decoder '%s'", type);
    }
    if (rc < 0) {
        mfs_tok_dec_free(d);
        return rc;
    }
    *dp = d;
    return 0;
}

/* Replace every occurrence of from with to in b (str::replace). */
static int mfs_tok_buf_replace(struct mfs_buf *b, const char *from, const char *to)
{
    struct mfs_buf o = MFS_BUF_INIT;
    size_t fl = strlen(from);
    size_t i = 0;
    int rc = 0;

    if (!b->data || fl == 0 || !memmem(b->data, b->len, from, fl))
        return 0;
    while (i < b->len && rc == 0) {
        const char *hit = memmem(b->data + i, b->len - i, from, fl);

        if (!hit) {
            rc = mfs_buf_append(&o, b->data + i, b->len - i);
            break;
        }
        rc = mfs_buf_append(&o, b->data + i, (size_t)(hit - (b->data + i)));
        if (rc == 0)
            rc = mfs_buf_puts(&o, to);
        i = (size_t)(hit - b->data) + fl;
    }
    if (rc < 0) {
        mfs_buf_release(&o);
        return rc;
    }
    if (!o.data && mfs_buf_append(&o, "", 0) < 0)
        return -ENOMEM;
    mfs_buf_release(b);
    *b = o;
    return 0;
}

/* decoders/wordpiece.rs cleanup(). */
static int mfs_tok_wp_cleanup(struct mfs_buf *b)
{
    static const char *const pairs[][2] = {
        { " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
        { " n't", "n't" }, { " 'm", "'m" }, { " do not", " don't" }, { " 's", "'s" },
        { " 've", "'ve" }, { " 're", "'re" },
    };
    size_t i;
    int rc = 0;

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]) && rc == 0; i++)
        rc = mfs_tok_buf_replace(b, pairs[i][0], pairs[i][1]);
    return rc;
}

static void mfs_tok_strs_release(struct mfs_tok_strs *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        mfs_buf_release(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Replace the contents of b with s[0..len). */
static int mfs_tok_set(struct mfs_buf *b, const char *s, size_t len)
{
    struct mfs_buf o = MFS_BUF_INIT;

    if (mfs_buf_append(&o, s, len) < 0)
        return -ENOMEM;
    mfs_buf_release(b);
    *b = o;
    return 0;
}

static int mfs_tok_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int mfs_tok_dec_chain(const struct mfs_tok_dec *d, struct mfs_tok_strs *l)
{
    struct mfs_buf o = MFS_BUF_INIT;
    size_t i;
    size_t k;
    int rc = 0;

    switch (d->type) {
    case MFS_TOK_D_BYTELEVEL: {
        struct mfs_buf raw = MFS_BUF_INIT;

        for (i = 0; i < l->n && rc == 0; i++) {
            const char *s = l->v[i].data ? l->v[i].data : "";
            size_t len = l->v[i].len;
            size_t start = raw.len;
            size_t p = 0;
            bool all = true;

            while (p < len && rc == 0) {
                uint32_t c;
                int cl = mfs_tok_utf8_dec(s + p, len - p, &c);
                int byte = cl > 0 ? mfs_tok_bl_byte(c) : -1;
                char ch;

                if (byte < 0) {
                    all = false;
                    break;
                }
                ch = (char)byte;
                rc = mfs_buf_append(&raw, &ch, 1);
                p += (size_t)cl;
            }
            if (rc == 0 && !all) {
                /* A token outside the alphabet keeps its own bytes. */
                raw.len = start;
                rc = mfs_buf_append(&raw, s, len);
            }
        }
        if (rc == 0)
            rc = mfs_tok_utf8_lossy(&o, raw.data ? raw.data : "", raw.len);
        mfs_buf_release(&raw);
        if (rc == 0) {
            mfs_tok_strs_release(l);
            l->v = calloc(1, sizeof(*l->v));
            if (!l->v) {
                rc = -ENOMEM;
                break;
            }
            l->v[0] = o;
            l->n = 1;
            memset(&o, 0, sizeof(o));
        }
        break;
    }
    case MFS_TOK_D_METASPACE:
        for (i = 0; i < l->n && rc == 0; i++) {
            const char *s = l->v[i].data ? l->v[i].data : "";
            size_t len = l->v[i].len;
            size_t p = 0;

            mfs_buf_reset(&o);
            while (p < len && rc == 0) {
                uint32_t c;
                int cl = mfs_tok_utf8_dec(s + p, len - p, &c);

                if (cl < 0)
                    cl = 1;
                if (cl > 0 && c == d->ch) {
                    if (!(i == 0 && d->prepend))
                        rc = mfs_buf_append(&o, " ", 1);
                } else {
                    rc = mfs_buf_append(&o, s + p, (size_t)cl);
                }
                p += (size_t)cl;
            }
            if (rc == 0)
                rc = mfs_tok_set(&l->v[i], o.data ? o.data : "", o.len);
        }
        break;
    case MFS_TOK_D_WORDPIECE:
        for (i = 0; i < l->n && rc == 0; i++) {
            const char *s = l->v[i].data ? l->v[i].data : "";
            size_t pl = strlen(d->str);

            mfs_buf_reset(&o);
            if (i != 0) {
                if (l->v[i].len >= pl && !memcmp(s, d->str, pl)) {
                    rc = mfs_buf_append(&o, s + pl, l->v[i].len - pl);
                } else {
                    rc = mfs_buf_append(&o, " ", 1);
                    if (rc == 0)
                        rc = mfs_buf_append(&o, s, l->v[i].len);
                }
            } else {
                rc = mfs_buf_append(&o, s, l->v[i].len);
            }
            if (rc == 0 && d->cleanup)
                rc = mfs_tok_wp_cleanup(&o);
            if (rc == 0)
                rc = mfs_tok_set(&l->v[i], o.data ? o.data : "", o.len);
        }
        break;
    case MFS_TOK_D_BPE:
        for (i = 0; i < l->n && rc == 0; i++) {
            rc = mfs_tok_buf_replace(&l->v[i], d->str, i + 1 == l->n ? "" : " ");
        }
        break;
    case MFS_TOK_D_BYTEFALLBACK: {
        struct mfs_tok_strs nl = { calloc(l->n + 1, sizeof(*nl.v)), 0 };
        struct mfs_buf bytes = MFS_BUF_INIT;

        if (!nl.v) {
            rc = -ENOMEM;
            break;
        }
        for (i = 0; i <= l->n && rc == 0; i++) {
            const char *s = i < l->n && l->v[i].data ? l->v[i].data : "";
            bool is_byte = false;
            char ch = 0;

            if (i < l->n && l->v[i].len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                /* u8::from_str_radix(&token[3..5], 16): hex digits, or '+'
                 * and one digit. */
                int hi = mfs_tok_hexval(s[3]);
                int lo = mfs_tok_hexval(s[4]);

                if (lo >= 0 && (hi >= 0 || s[3] == '+')) {
                    is_byte = true;
                    ch = (char)((hi >= 0 ? hi * 16 : 0) + lo);
                }
            }
            if (is_byte) {
                rc = mfs_buf_append(&bytes, &ch, 1);
                continue;
            }
            if (bytes.len) {
                /* k byte tokens give 1 or k strings: nl never outgrows l. */
                if (mfs_tok_utf8_valid(bytes.data, bytes.len)) {
                    mfs_buf_init(&nl.v[nl.n]);
                    rc = mfs_buf_append(&nl.v[nl.n++], bytes.data, bytes.len);
                } else {
                    for (k = 0; k < bytes.len && rc == 0; k++) {
                        mfs_buf_init(&nl.v[nl.n]);
                        rc = mfs_buf_append(&nl.v[nl.n++], "\xef\xbf\xbd", 3);
                    }
                }
                mfs_buf_reset(&bytes);
            }
            if (rc == 0 && i < l->n) {
                nl.v[nl.n++] = l->v[i];
                memset(&l->v[i], 0, sizeof(l->v[i]));
            }
        }
        mfs_buf_release(&bytes);
        mfs_tok_strs_release(l);
        *l = nl;
        break;
    }
    case MFS_TOK_D_FUSE:
        for (i = 0; i < l->n && rc == 0; i++)
            rc = mfs_buf_append(&o, l->v[i].data ? l->v[i].data : "", l->v[i].len);
        if (rc == 0 && !o.data)
            rc = mfs_buf_append(&o, "", 0);
        if (rc == 0) {
            mfs_tok_strs_release(l);
            l->v = calloc(1, sizeof(*l->v));
            if (!l->v) {
                rc = -ENOMEM;
                break;
            }
            l->v[0] = o;
            l->n = 1;
            memset(&o, 0, sizeof(o));
        }
        break;
    case MFS_TOK_D_STRIP:
        for (i = 0; i < l->n && rc == 0; i++) {
            const char *s = l->v[i].data ? l->v[i].data : "";
            size_t len = l->v[i].len;
            size_t a = 0;
            size_t b = len;
            size_t n;
            uint32_t c;

            for (n = 0; n < d->start && a < len; n++) {
                int cl = mfs_tok_utf8_dec(s + a, len - a, &c);

                if (cl < 0 || c != d->ch)
                    break;
                a += (size_t)cl;
            }
            for (n = 0; n < d->stop && b > a; n++) {
                size_t p = b - 1;

                while (p > a && ((unsigned char)s[p] & 0xc0) == 0x80)
                    p--;
                if (mfs_tok_utf8_dec(s + p, b - p, &c) < 0 || c != d->ch)
                    break;
                b = p;
            }
            rc = mfs_tok_set(&l->v[i], s + a, b - a);
        }
        break;
    case MFS_TOK_D_REPLACE: {
        struct mfs_tok_mlist ml = { 0 };

        for (i = 0; i < l->n && rc == 0; i++) {
            const char *s = l->v[i].data ? l->v[i].data : "";

            rc = mfs_tok_re_find(&d->re, s, l->v[i].len, &ml);
            mfs_buf_reset(&o);
            for (k = 0; k < ml.n && rc == 0; k++) {
                if (ml.v[k].match)
                    rc = mfs_buf_puts(&o, d->str);
                else
                    rc = mfs_buf_append(&o, s + ml.v[k].s, ml.v[k].e - ml.v[k].s);
            }
            if (rc == 0)
                rc = mfs_tok_set(&l->v[i], o.data ? o.data : "", o.len);
        }
        mfs_tok_mlist_release(&ml);
        break;
    }
    case MFS_TOK_D_CTC: {
        struct mfs_tok_strs nl = { calloc(l->n + 1, sizeof(*nl.v)), 0 };

        if (!nl.v) {
            rc = -ENOMEM;
            break;
        }
        for (i = 0; i < l->n && rc == 0; i++) {
            struct mfs_buf t = MFS_BUF_INIT;
            const char *s = l->v[i].data ? l->v[i].data : "";

            /* dedup(): consecutive equal tokens count once. */
            if (i > 0 && l->v[i].len == l->v[i - 1].len &&
                !memcmp(s, l->v[i - 1].data ? l->v[i - 1].data : "", l->v[i].len))
                continue;
            rc = mfs_buf_append(&t, s, l->v[i].len);
            if (rc == 0)
                rc = mfs_tok_buf_replace(&t, d->str, "");
            if (rc == 0 && d->cleanup) {
                rc = mfs_tok_wp_cleanup(&t);
                if (rc == 0)
                    rc = mfs_tok_buf_replace(&t, d->str2, " ");
            }
            if (rc == 0 && t.len > 0)
                nl.v[nl.n++] = t;
            else
                mfs_buf_release(&t);
        }
        mfs_tok_strs_release(l);
        *l = nl;
        break;
    }
    case MFS_TOK_D_SEQ:
        for (i = 0; i < d->nsub && rc == 0; i++)
            rc = mfs_tok_dec_chain(d->sub[i], l);
        break;
    }
    mfs_buf_release(&o);
    return rc;
}

int mfs_tok_dec_apply(const struct mfs_tok_dec *d, const char *const *toks, size_t n,
                  struct mfs_buf *out)
{
    struct mfs_tok_strs l = { calloc(n + 1, sizeof(*l.v)), 0 };
    size_t i;
    int rc = 0;

    if (!l.v)
        return -ENOMEM;
    for (i = 0; i < n && rc == 0; i++) {
        mfs_buf_init(&l.v[i]);
        rc = mfs_buf_puts(&l.v[i], toks[i]);
        l.n++;
    }
    if (rc == 0 && d)
        rc = mfs_tok_dec_chain(d, &l);
    for (i = 0; i < l.n && rc == 0; i++) {
        if (!d && i > 0)
            rc = mfs_buf_append(out, " ", 1);
        if (rc == 0)
            rc = mfs_buf_append(out, l.v[i].data ? l.v[i].data : "", l.v[i].len);
    }
    mfs_tok_strs_release(&l);
    return rc;
}
