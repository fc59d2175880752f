/*
 * model/tok_util.c - building blocks of the tokenizer: hash maps, UTF-8,
 * Unicode classes (from utf8proc, no tables of our own), the
 * NormalizedString with its alignment bookkeeping, and patterns (regexes in
 * Oniguruma syntax run by PCRE2, literals, char predicates).
 *
 * The NormalizedString functions follow tokenizers/src/tokenizer/
 * normalizer.rs line by line, including its quirks (an empty normalized
 * range converts to itself; strip compares a char index with a byte
 * length), because offsets must match the reference exactly.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "model/tok_int.h"

/* ---- hash maps ---- */

static uint64_t mfs_tok_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void mfs_tok_smap_release(struct mfs_tok_smap *m)
{
    size_t i;

    if (!m)
        return;
    for (i = 0; i < m->n; i++)
        free(m->ent[i].key);
    free(m->ent);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

static int mfs_tok_smap_grow(struct mfs_tok_smap *m)
{
    size_t nslots = m->slots ? (m->mask + 1) * 2 : 64;
    int32_t *slots = malloc(nslots * sizeof(*slots));
    size_t i;

    if (!slots)
        return -ENOMEM;
    memset(slots, 0xff, nslots * sizeof(*slots));
    for (i = 0; i < m->n; i++) {
        size_t j = mfs_tok_hash(m->ent[i].key, m->ent[i].len) & (nslots - 1);

        while (slots[j] >= 0)
            j = (j + 1) & (nslots - 1);
        slots[j] = (int32_t)i;
    }
    free(m->slots);
    m->slots = slots;
    m->mask = nslots - 1;
    return 0;
}

static int32_t *mfs_tok_smap_slot(const struct mfs_tok_smap *m, const char *key, size_t len)
{
    size_t j = mfs_tok_hash(key, len) & m->mask;

    for (;;) {
        int32_t e = m->slots[j];

        if (e < 0 || (m->ent[e].len == len && !memcmp(m->ent[e].key, key, len)))
            return &m->slots[j];
        j = (j + 1) & m->mask;
    }
}

int mfs_tok_smap_put(struct mfs_tok_smap *m, const char *key, size_t len, int32_t val)
{
    int32_t *slot;
    char *k;

    if (len > UINT32_MAX || m->n >= INT32_MAX - 1)
        return -EINVAL;
    if (!m->slots || (m->n + 1) * 2 > m->mask + 1) {
        if (mfs_tok_smap_grow(m) < 0)
            return -ENOMEM;
    }
    slot = mfs_tok_smap_slot(m, key, len);
    if (*slot >= 0) {
        m->ent[*slot].val = val;
        return 0;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct mfs_tok_sent *ent = realloc(m->ent, cap * sizeof(*ent));

        if (!ent)
            return -ENOMEM;
        m->ent = ent;
        m->cap = cap;
    }
    k = malloc(len + 1);
    if (!k)
        return -ENOMEM;
    memcpy(k, key, len);
    k[len] = 0;
    m->ent[m->n].key = k;
    m->ent[m->n].len = (uint32_t)len;
    m->ent[m->n].val = val;
    *slot = (int32_t)m->n++;
    return 0;
}

int32_t mfs_tok_smap_get(const struct mfs_tok_smap *m, const char *key, size_t len)
{
    int32_t e;

    if (!m->slots)
        return -1;
    e = *mfs_tok_smap_slot(m, key, len);
    return e < 0 ? -1 : m->ent[e].val;
}

void mfs_tok_pmap_release(struct mfs_tok_pmap *m)
{
    if (!m)
        return;
    free(m->keys);
    free(m->rank);
    free(m->new_id);
    memset(m, 0, sizeof(*m));
}

static size_t mfs_tok_pmap_idx(uint64_t key, size_t mask)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & mask;
}

static int mfs_tok_pmap_grow(struct mfs_tok_pmap *m)
{
    size_t nslots = m->keys ? (m->mask + 1) * 2 : 1024;
    uint64_t *keys = malloc(nslots * sizeof(*keys));
    uint32_t *rank = malloc(nslots * sizeof(*rank));
    int32_t *new_id = malloc(nslots * sizeof(*new_id));
    size_t i;

    if (!keys || !rank || !new_id) {
        free(keys);
        free(rank);
        free(new_id);
        return -ENOMEM;
    }
    memset(keys, 0xff, nslots * sizeof(*keys));
    for (i = 0; m->keys && i <= m->mask; i++) {
        size_t j;

        if (m->keys[i] == UINT64_MAX)
            continue;
        j = mfs_tok_pmap_idx(m->keys[i], nslots - 1);
        while (keys[j] != UINT64_MAX)
            j = (j + 1) & (nslots - 1);
        keys[j] = m->keys[i];
        rank[j] = m->rank[i];
        new_id[j] = m->new_id[i];
    }
    mfs_tok_pmap_release(m);
    m->keys = keys;
    m->rank = rank;
    m->new_id = new_id;
    m->mask = nslots - 1;
    return 0;
}

int mfs_tok_pmap_put(struct mfs_tok_pmap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t n = m->n;
    size_t j;

    if (!m->keys || (n + 1) * 2 > m->mask + 1) {
        if (mfs_tok_pmap_grow(m) < 0)
            return -ENOMEM;
        m->n = n;
    }
    j = mfs_tok_pmap_idx(key, m->mask);
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key)
        j = (j + 1) & m->mask;
    if (m->keys[j] == UINT64_MAX)
        m->n++;
    m->keys[j] = key;
    m->rank[j] = rank;
    m->new_id[j] = new_id;
    return 0;
}

bool mfs_tok_pmap_get(const struct mfs_tok_pmap *m, int32_t a, int32_t b, uint32_t *rank,
                  int32_t *new_id)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t j;

    if (!m->keys)
        return false;
    j = mfs_tok_pmap_idx(key, m->mask);
    while (m->keys[j] != UINT64_MAX) {
        if (m->keys[j] == key) {
            *rank = m->rank[j];
            *new_id = m->new_id[j];
            return true;
        }
        j = (j + 1) & m->mask;
    }
    return false;
}

/* ---- UTF-8 ---- */

int mfs_tok_utf8_clen(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xf0)
        return 4;
    if (b >= 0xe0)
        return 3;
    return 2;
}

int mfs_tok_utf8_dec(const char *str, size_t len, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    uint32_t c;
    int n;
    int i;

    if (len == 0)
        return -1;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] < 0xc2 || s[0] > 0xf4)
        return -1;
    n = mfs_tok_utf8_clen(s[0]);
    if ((size_t)n > len)
        return -1;
    c = s[0] & (0x7f >> n);
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return -1;
    *cp = c;
    return n;
}

int mfs_tok_utf8_enc(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

bool mfs_tok_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    uint32_t c;

    while (i < len) {
        int n = mfs_tok_utf8_dec(s + i, len - i, &c);

        if (n < 0)
            return false;
        i += (size_t)n;
    }
    return true;
}

/* Bytes of s[0..len) that are a valid prefix of one UTF-8 character
 * (Unicode's "maximal subpart"), at least 1. */
static size_t mfs_tok_utf8_subpart(const unsigned char *s, size_t len)
{
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    size_t need;
    size_t i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4;
    else
        return 1;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    for (i = 1; i < need && i < len; i++) {
        unsigned char l = i == 1 ? lo : 0x80;
        unsigned char h = i == 1 ? hi : 0xbf;

        if (s[i] < l || s[i] > h)
            break;
    }
    return i;
}

int mfs_tok_utf8_lossy(struct mfs_buf *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    uint32_t c;

    while (i < len) {
        int n = mfs_tok_utf8_dec(str + i, len - i, &c);

        if (n > 0) {
            if (mfs_buf_append(b, str + i, (size_t)n) < 0)
                return -ENOMEM;
            i += (size_t)n;
            continue;
        }
        if (mfs_buf_append(b, "\xef\xbf\xbd", 3) < 0)
            return -ENOMEM;
        i += mfs_tok_utf8_subpart(s + i, len - i);
    }
    return 0;
}

/* ---- Unicode classes ---- */

bool mfs_tok_is_whitespace(uint32_t c)
{
    utf8proc_category_t cat;

    /* White_Space = Zs, Zl, Zp plus TAB..CR and NEL (PropList.txt). */
    if ((c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85)
        return true;
    if (c < 0x80)
        return false;
    cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
           cat == UTF8PROC_CATEGORY_ZP;
}

bool mfs_tok_is_punct(uint32_t c)
{
    utf8proc_category_t cat;

    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) ||
               (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
    cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

bool mfs_tok_is_numeric(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);

    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
           cat == UTF8PROC_CATEGORY_NO;
}

bool mfs_tok_is_word(uint32_t c)
{
    utf8proc_category_t cat;

    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (c == 0x200c || c == 0x200d)         /* Join_Control */
        return true;
    if (c >= 0x24b6 && c <= 0x24e9)         /* circled letters: So but Alphabetic */
        return true;
    cat = utf8proc_category((utf8proc_int32_t)c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME) ||
           cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL ||
           cat == UTF8PROC_CATEGORY_PC;
}

bool mfs_tok_is_other(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);

    return cat == UTF8PROC_CATEGORY_CN || cat >= UTF8PROC_CATEGORY_CC;
}

bool mfs_tok_is_mn(uint32_t c)
{
    return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN;
}

int mfs_tok_ccc(uint32_t c)
{
    return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

/* ---- NormalizedString ---- */

int mfs_tok_ns_init(struct mfs_tok_ns *ns, const char *s, size_t len)
{
    size_t i = 0;

    memset(ns, 0, sizeof(*ns));
    ns->s = malloc(len + 1);
    ns->aln = malloc((len ? len : 1) * sizeof(*ns->aln));
    if (!ns->s || !ns->aln) {
        mfs_tok_ns_release(ns);
        return -ENOMEM;
    }
    memcpy(ns->s, s, len);
    ns->s[len] = 0;
    while (i < len) {
        size_t n = (size_t)mfs_tok_utf8_clen((unsigned char)s[i]);
        size_t k;

        if (i + n > len)
            n = len - i;
        for (k = 0; k < n; k++) {
            ns->aln[i + k].s = (uint32_t)i;
            ns->aln[i + k].e = (uint32_t)(i + n);
        }
        i += n;
    }
    ns->len = len;
    ns->orig_len = len;
    return 0;
}

void mfs_tok_ns_release(struct mfs_tok_ns *ns)
{
    if (!ns)
        return;
    free(ns->s);
    free(ns->aln);
    memset(ns, 0, sizeof(*ns));
}

/* convert_offsets(Range::Original(a..b)) -> normalized range. */
static bool mfs_tok_ns_o2n(const struct mfs_tok_ns *ns, size_t a, size_t b, size_t *na, size_t *nb)
{
    bool has_s = false;
    bool has_e = false;
    size_t s = 0;
    size_t e = 0;
    size_t i;

    if (a == b) {
        *na = a;
        *nb = b;
        return true;
    }
    if (a > b)
        return false;
    for (i = 0; i < ns->len && b >= ns->aln[i].e; i++) {
        if (!has_s && a <= ns->aln[i].s && ns->aln[i].s != ns->aln[i].e) {
            s = i;
            has_s = true;
        }
        e = i + 1;
        has_e = true;
    }
    if (has_s && !has_e)
        e = s;
    else if (!has_s && has_e)
        s = e;
    else if (!has_s && !has_e)
        return false;
    *na = s;
    *nb = e;
    return true;
}

bool mfs_tok_ns_n2o(const struct mfs_tok_ns *ns, size_t a, size_t b, size_t *oa, size_t *ob)
{
    if (a == b) {
        *oa = a;
        *ob = b;
        return true;
    }
    if (a > b || b > ns->len)
        return false;
    *oa = ns->aln[a].s;
    *ob = ns->aln[b - 1].e;
    return true;
}

int mfs_tok_ns_chars(const struct mfs_tok_ns *ns, uint32_t **cps, size_t *n)
{
    uint32_t *v = malloc((ns->len + 1) * sizeof(*v));
    size_t i = 0;
    size_t k = 0;

    if (!v)
        return -ENOMEM;
    while (i < ns->len) {
        int l = mfs_tok_utf8_dec(ns->s + i, ns->len - i, &v[k]);

        if (l < 0) {
            v[k] = 0xfffd;
            l = 1;
        }
        k++;
        i += (size_t)l;
    }
    *cps = v;
    *n = k;
    return 0;
}

int mfs_tok_ns_transform_range(struct mfs_tok_ns *ns, size_t a, size_t b,
                               const struct mfs_tok_chg *chg, size_t n, size_t initial_offset)
{
    size_t cap = a + 4 * n + (ns->len - b) + 1;  /* a char is at most 4 bytes */
    char *s = malloc(cap);
    struct mfs_tok_aln *aln = malloc(cap * sizeof(*aln));
    size_t rp = a;                          /* next replaced char in [a, b) */
    size_t p = a;                           /* bytes written to s */
    size_t offset;
    size_t k;

    if (!s || !aln) {
        free(s);
        free(aln);
        return -ENOMEM;
    }
    memcpy(s, ns->s, a);
    memcpy(aln, ns->aln, a * sizeof(*aln));
    for (k = 0; k < initial_offset && rp < b; k++)
        rp += (size_t)mfs_tok_utf8_clen((unsigned char)ns->s[rp]);
    offset = rp;
    for (k = 0; k < n; k++) {
        struct mfs_tok_aln al = { 0, 0 };
        size_t idx = offset;
        int ul = mfs_tok_utf8_enc(chg[k].c, s + p);
        int j;

        /* An inserted char (+1) shares the alignment of the byte before
         * it; a replacing one (0 or -N) takes that of the char it replaces. */
        if (chg[k].chg > 0) {
            if (idx >= 1 && idx - 1 < ns->len)
                al = ns->aln[idx - 1];
        } else if (idx < ns->len) {
            al = ns->aln[idx];
        } else if (ns->len) {
            al = ns->aln[ns->len - 1];      /* the reference would panic here */
        }
        if (chg[k].chg <= 0 && rp < b) {
            size_t cl = (size_t)mfs_tok_utf8_clen((unsigned char)ns->s[rp]);

            rp += cl;
            offset += cl;
        }
        if (chg[k].chg < 0) {
            int32_t r;

            for (r = 0; r < -chg[k].chg && rp < b; r++) {
                size_t cl = (size_t)mfs_tok_utf8_clen((unsigned char)ns->s[rp]);

                rp += cl;
                offset += cl;
            }
        }
        for (j = 0; j < ul; j++)
            aln[p + (size_t)j] = al;
        p += (size_t)ul;
    }
    memcpy(s + p, ns->s + b, ns->len - b);
    memcpy(aln + p, ns->aln + b, (ns->len - b) * sizeof(*aln));
    p += ns->len - b;
    s[p] = 0;
    free(ns->s);
    free(ns->aln);
    ns->s = s;
    ns->aln = aln;
    ns->len = p;
    return 0;
}

int mfs_tok_ns_transform(struct mfs_tok_ns *ns, const struct mfs_tok_chg *chg, size_t n,
                     size_t initial_offset)
{
    size_t a;
    size_t b;

    if (!mfs_tok_ns_o2n(ns, 0, ns->orig_len, &a, &b))
        return 0;
    if (b > ns->len)
        b = ns->len;
    if (a > b)
        a = b;
    return mfs_tok_ns_transform_range(ns, a, b, chg, n, initial_offset);
}

int mfs_tok_ns_bytelevel(struct mfs_tok_ns *ns)
{
    struct mfs_tok_chg *t;
    size_t a;
    size_t b;
    size_t i = 0;
    size_t k = 0;
    int rc;

    if (mfs_tok_ns_o2n(ns, 0, ns->orig_len, &a, &b) && a == 0 && b == ns->len) {
        /* The common case, in one pass: what transform() makes of one char
         * per byte, the first replacing the original char (its alignment),
         * the others inserted after it (the alignment of its last byte). */
        char *s = malloc(2 * ns->len + 1);
        struct mfs_tok_aln *aln = malloc((2 * ns->len + 1) * sizeof(*aln));
        size_t p = 0;

        if (!s || !aln) {
            free(s);
            free(aln);
            return -ENOMEM;
        }
        while (i < ns->len) {
            size_t cl = (size_t)mfs_tok_utf8_clen((unsigned char)ns->s[i]);
            size_t j;

            if (i + cl > ns->len)
                cl = ns->len - i;
            for (j = 0; j < cl; j++) {
                struct mfs_tok_aln al = ns->aln[j == 0 ? i : i + cl - 1];
                int ul = mfs_tok_utf8_enc(mfs_tok_bl_char((unsigned char)ns->s[i + j]), s + p);
                int u;

                for (u = 0; u < ul; u++)
                    aln[p + (size_t)u] = al;
                p += (size_t)ul;
            }
            i += cl;
        }
        s[p] = 0;
        free(ns->s);
        free(ns->aln);
        ns->s = s;
        ns->aln = aln;
        ns->len = p;
        return 0;
    }
    t = malloc((ns->len + 1) * sizeof(*t));
    if (!t)
        return -ENOMEM;
    while (i < ns->len) {
        size_t cl = (size_t)mfs_tok_utf8_clen((unsigned char)ns->s[i]);
        size_t j;

        for (j = 0; j < cl && i + j < ns->len; j++) {
            t[k].c = mfs_tok_bl_char((unsigned char)ns->s[i + j]);
            t[k].chg = j > 0 ? 1 : 0;
            k++;
        }
        i += cl;
    }
    rc = mfs_tok_ns_transform(ns, t, k, 0);
    free(t);
    return rc;
}

static bool mfs_tok_is_boundary(const struct mfs_tok_ns *ns, size_t i)
{
    return i == 0 || i >= ns->len || ((unsigned char)ns->s[i] & 0xc0) != 0x80;
}

int mfs_tok_ns_slice(const struct mfs_tok_ns *ns, size_t a, size_t b, struct mfs_tok_ns *out)
{
    size_t oa;
    size_t ob;
    size_t i;
    size_t n = b - a;

    memset(out, 0, sizeof(*out));
    if (a > b || b > ns->len || !mfs_tok_is_boundary(ns, a) || !mfs_tok_is_boundary(ns, b))
        return -EINVAL;
    if (!mfs_tok_ns_n2o(ns, a, b, &oa, &ob))
        return -EINVAL;
    out->s = malloc(n + 1);
    out->aln = malloc((n ? n : 1) * sizeof(*out->aln));
    if (!out->s || !out->aln) {
        mfs_tok_ns_release(out);
        return -ENOMEM;
    }
    memcpy(out->s, ns->s + a, n);
    out->s[n] = 0;
    for (i = 0; i < n; i++) {
        struct mfs_tok_aln al = ns->aln[a + i];

        out->aln[i].s = al.s >= oa ? al.s - (uint32_t)oa : 0;
        out->aln[i].e = al.e >= oa ? al.e - (uint32_t)oa : 0;
    }
    out->len = n;
    out->orig_len = ob <= ns->orig_len && oa <= ob ? ob - oa : 0;
    out->shift = ns->shift + oa;
    return 0;
}

int mfs_tok_ns_prepend(struct mfs_tok_ns *ns, const char *p)
{
    struct mfs_tok_chg chg[64];
    size_t n = 0;
    size_t i = 0;
    size_t plen = strlen(p);
    uint32_t next;
    int nl;

    if (ns->len == 0)
        return 0;
    nl = mfs_tok_utf8_dec(ns->s, ns->len, &next);
    if (nl < 0)
        return -EINVAL;
    while (i < plen && n < 63) {
        uint32_t c;
        int l = mfs_tok_utf8_dec(p + i, plen - i, &c);

        if (l < 0)
            return -EINVAL;
        chg[n].c = c;
        chg[n].chg = n == 0 ? 0 : 1;
        n++;
        i += (size_t)l;
    }
    chg[n].c = next;
    chg[n].chg = 1;
    n++;
    return mfs_tok_ns_transform_range(ns, 0, (size_t)nl, chg, n, 0);
}

int mfs_tok_ns_lowercase(struct mfs_tok_ns *ns)
{
    uint32_t *cps = NULL;
    struct mfs_tok_chg *chg = NULL;
    size_t n;
    size_t k = 0;
    size_t i;
    int rc;

    rc = mfs_tok_ns_chars(ns, &cps, &n);
    if (rc < 0)
        return rc;
    chg = malloc((2 * n + 1) * sizeof(*chg));
    if (!chg) {
        rc = -ENOMEM;
        goto out_free;
    }
    for (i = 0; i < n; i++) {
        /* Rust's char::to_lowercase: the simple mapping, except U+0130
         * whose full lowercase is two chars (SpecialCasing.txt). */
        if (cps[i] == 0x130) {
            chg[k++] = (struct mfs_tok_chg){ 0x69, 0 };
            chg[k++] = (struct mfs_tok_chg){ 0x307, 1 };
        } else {
            uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cps[i]);

            chg[k++] = (struct mfs_tok_chg){ lc, 0 };
        }
    }
    rc = mfs_tok_ns_transform(ns, chg, k, 0);
out_free:
    free(chg);
    free(cps);
    return rc;
}

/* compose(a, b) of the unicode-normalization crate: the primary composite
 * of a and b, or 0. */
static uint32_t mfs_tok_compose(uint32_t a, uint32_t b)
{
    utf8proc_int32_t buf[2] = { (utf8proc_int32_t)a, (utf8proc_int32_t)b };
    utf8proc_ssize_t n = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE);

    return n == 1 ? (uint32_t)buf[0] : 0;
}

int mfs_tok_ns_nf(struct mfs_tok_ns *ns, bool compose, bool compat)
{
    uint32_t *cps = NULL;
    struct mfs_tok_chg *d = NULL;               /* decomposed, with changes */
    struct mfs_tok_chg *o = NULL;               /* recomposed */
    struct mfs_tok_chg *buf = NULL;             /* blocked marks while composing */
    size_t n;
    size_t nd = 0;
    size_t dcap;
    size_t no = 0;
    size_t i;
    int rc;

    rc = mfs_tok_ns_chars(ns, &cps, &n);
    if (rc < 0)
        return rc;
    dcap = n * 4 + 16;
    d = malloc(dcap * sizeof(*d));
    if (!d) {
        rc = -ENOMEM;
        goto out_free;
    }
    for (i = 0; i < n; i++) {
        utf8proc_int32_t tmp[32];
        int bound = 0;
        utf8proc_ssize_t m;
        utf8proc_ssize_t j;

        m = utf8proc_decompose_char((utf8proc_int32_t)cps[i], tmp, 32,
                                    UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0),
                                    &bound);
        if (m < 0 || m > 32) {
            tmp[0] = (utf8proc_int32_t)cps[i];
            m = 1;
        }
        if (nd + (size_t)m > dcap) {
            struct mfs_tok_chg *nd2;

            dcap = (nd + (size_t)m) * 2;
            nd2 = realloc(d, dcap * sizeof(*d));
            if (!nd2) {
                rc = -ENOMEM;
                goto out_free;
            }
            d = nd2;
        }
        for (j = 0; j < m; j++) {
            d[nd].c = (uint32_t)tmp[j];
            d[nd].chg = j == 0 ? 0 : 1;
            nd++;
        }
    }
    /* Canonical ordering: stable sort of each run of non-starters by ccc. */
    for (i = 1; i < nd; i++) {
        struct mfs_tok_chg x = d[i];
        int cx = mfs_tok_ccc(x.c);
        size_t j = i;

        if (cx == 0)
            continue;
        while (j > 0) {
            int cy = mfs_tok_ccc(d[j - 1].c);

            if (cy == 0 || cy <= cx)
                break;
            d[j] = d[j - 1];
            j--;
        }
        d[j] = x;
    }
    if (!compose) {
        rc = mfs_tok_ns_transform(ns, d, nd, 0);
        goto out_free;
    }
    o = malloc((nd + 1) * sizeof(*o));
    buf = malloc((nd + 1) * sizeof(*buf));
    if (!o || !buf) {
        rc = -ENOMEM;
        goto out_free;
    }
    {
        /* The Recompositions iterator of unicode-normalization-alignments. */
        bool has_k = false;
        struct mfs_tok_chg k = { 0, 0 };
        bool has_last = false;
        int last = 0;
        size_t nb = 0;
        size_t j;

        for (i = 0; i < nd; i++) {
            struct mfs_tok_chg ch = d[i];
            int cc = mfs_tok_ccc(ch.c);
            uint32_t r;

            if (!has_k) {
                if (cc != 0) {
                    o[no++] = ch;
                    continue;
                }
                k = ch;
                has_k = true;
                continue;
            }
            if (!has_last) {
                r = mfs_tok_compose(k.c, ch.c);
                if (r) {
                    k.c = r;
                    k.chg = k.chg + ch.chg - 1;
                    continue;
                }
                if (cc == 0) {
                    o[no++] = k;
                    k = ch;
                    continue;
                }
                buf[nb++] = ch;
                has_last = true;
                last = cc;
                continue;
            }
            if (last >= cc) {
                if (cc == 0) {
                    o[no++] = k;
                    for (j = 0; j < nb; j++)
                        o[no++] = buf[j];
                    nb = 0;
                    k = ch;
                    has_last = false;
                    continue;
                }
                buf[nb++] = ch;
                last = cc;
                continue;
            }
            r = mfs_tok_compose(k.c, ch.c);
            if (r) {
                k.c = r;
                k.chg = k.chg + ch.chg - 1;
                continue;
            }
            buf[nb++] = ch;
            last = cc;
        }
        if (has_k)
            o[no++] = k;
        for (j = 0; j < nb; j++)
            o[no++] = buf[j];
    }
    rc = mfs_tok_ns_transform(ns, o, no, 0);
out_free:
    free(buf);
    free(o);
    free(d);
    free(cps);
    return rc;
}

int mfs_tok_ns_filter(struct mfs_tok_ns *ns, bool (*keep)(uint32_t c))
{
    uint32_t *cps = NULL;
    struct mfs_tok_chg *t = NULL;
    size_t n;
    size_t nt = 0;
    size_t removed = 0;
    size_t removed_start = 0;
    bool has_last = false;
    uint32_t last = 0;
    size_t i;
    int rc;

    rc = mfs_tok_ns_chars(ns, &cps, &n);
    if (rc < 0)
        return rc;
    t = malloc((n + 1) * sizeof(*t));
    if (!t) {
        rc = -ENOMEM;
        goto out_free;
    }
    for (i = 0; i < n; i++) {
        if (keep(cps[i])) {
            if (has_last)
                t[nt++] = (struct mfs_tok_chg){ last, -(int32_t)removed };
            else
                removed_start = removed;
            last = cps[i];
            has_last = true;
            removed = 0;
        } else {
            removed++;
        }
    }
    if (has_last)
        t[nt++] = (struct mfs_tok_chg){ last, -(int32_t)removed };
    rc = mfs_tok_ns_transform(ns, t, nt, removed_start);
out_free:
    free(t);
    free(cps);
    return rc;
}

int mfs_tok_ns_strip(struct mfs_tok_ns *ns, bool left, bool right)
{
    uint32_t *cps = NULL;
    struct mfs_tok_chg *t = NULL;
    size_t n;
    size_t lead = 0;
    size_t trail = 0;
    size_t nt = 0;
    size_t i;
    int rc;

    rc = mfs_tok_ns_chars(ns, &cps, &n);
    if (rc < 0)
        return rc;
    while (left && lead < n && mfs_tok_is_whitespace(cps[lead]))
        lead++;
    while (right && trail < n && mfs_tok_is_whitespace(cps[n - 1 - trail]))
        trail++;
    if (lead == 0 && trail == 0)
        goto out_free;
    t = malloc((n + 1) * sizeof(*t));
    if (!t) {
        rc = -ENOMEM;
        goto out_free;
    }
    /* As the reference: i counts chars but is compared with the length in
     * bytes (self.len()), which matters only for non-ASCII text. */
    for (i = 0; i < n; i++) {
        if (i < lead || (ns->len >= trail && i >= ns->len - trail))
            continue;
        if (ns->len >= trail + 1 && i == ns->len - trail - 1)
            t[nt++] = (struct mfs_tok_chg){ cps[i], -(int32_t)trail };
        else
            t[nt++] = (struct mfs_tok_chg){ cps[i], 0 };
    }
    rc = mfs_tok_ns_transform(ns, t, nt, lead);
out_free:
    free(t);
    free(cps);
    return rc;
}

int mfs_tok_ns_replace(struct mfs_tok_ns *ns, const struct mfs_tok_mlist *ml, const char *content)
{
    size_t clen = strlen(content);
    size_t nm = 0;
    size_t cap;
    size_t p = 0;
    size_t i;
    char *s;
    struct mfs_tok_aln *aln;

    /* Equivalent to the reference's transform_range per match (content
     * chars inserted with change +1 after removing the whole match), done
     * in one pass: every byte of the content takes the alignment of the
     * match's last byte, or (0, 0) for an empty match at the start. */
    if (clen > 0 && !mfs_tok_utf8_valid(content, clen))
        return -EINVAL;
    for (i = 0; i < ml->n; i++)
        nm += ml->v[i].match;
    if (nm == 0)
        return 0;
    cap = ns->len + nm * clen + 1;
    s = malloc(cap);
    aln = malloc(cap * sizeof(*aln));
    if (!s || !aln) {
        free(s);
        free(aln);
        return -ENOMEM;
    }
    for (i = 0; i < ml->n; i++) {
        const struct mfs_tok_m *m = &ml->v[i];
        size_t k;

        if (m->e > ns->len || m->s > m->e) {
            free(s);
            free(aln);
            return -EINVAL;
        }
        if (!m->match) {
            memcpy(s + p, ns->s + m->s, m->e - m->s);
            memcpy(aln + p, ns->aln + m->s, (m->e - m->s) * sizeof(*aln));
            p += m->e - m->s;
            continue;
        }
        for (k = 0; k < clen; k++) {
            struct mfs_tok_aln al = { 0, 0 };

            if (m->e >= 1)
                al = ns->aln[m->e - 1];
            s[p] = content[k];
            aln[p++] = al;
        }
    }
    s[p] = 0;
    free(ns->s);
    free(ns->aln);
    ns->s = s;
    ns->aln = aln;
    ns->len = p;
    return 0;
}

/* ---- patterns ---- */

void mfs_tok_mlist_release(struct mfs_tok_mlist *ml)
{
    if (!ml)
        return;
    free(ml->v);
    memset(ml, 0, sizeof(*ml));
}

int mfs_tok_mlist_add(struct mfs_tok_mlist *ml, size_t s, size_t e, bool match)
{
    if (ml->n == ml->cap) {
        size_t cap = ml->cap ? ml->cap * 2 : 16;
        struct mfs_tok_m *v = realloc(ml->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        ml->v = v;
        ml->cap = cap;
    }
    ml->v[ml->n].s = s;
    ml->v[ml->n].e = e;
    ml->v[ml->n].match = match;
    ml->n++;
    return 0;
}

/* Translate an Oniguruma (Ruby syntax) pattern to PCRE2: \s \S \w \W get
 * Oniguruma's Unicode meaning, and nested character classes ([a[bc]],
 * a union in Oniguruma, literal '[' in PCRE2) are flattened.  Negated
 * nested classes and && intersections are refused. */
static int mfs_tok_re_translate(const char *p, size_t len, struct mfs_buf *o, struct mfs_err *err)
{
    static const char ws[] = "\\t-\\r\\x{85}\\p{Z}";
    static const char wd[] = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
    int depth = 0;                          /* nesting of [] */
    bool class_start = false;               /* just after [ or [^ */
    size_t i = 0;
    int rc = 0;

    while (i < len && rc == 0) {
        char c = p[i];

        if (c == '\\' && i + 1 < len) {
            char e = p[i + 1];

            if (depth == 0 && (e == 's' || e == 'S' || e == 'w' || e == 'W'))
                rc = mfs_buf_printf(o, "[%s%s]", (e == 'S' || e == 'W') ? "^" : "",
                                    (e == 's' || e == 'S') ? ws : wd);
            else if (depth > 0 && (e == 's' || e == 'w'))
                rc = mfs_buf_puts(o, e == 's' ? ws : wd);
            else
                rc = mfs_buf_append(o, p + i, 2);
            i += 2;
            class_start = false;
            continue;
        }
        if (depth == 0) {
            if (c == '[') {
                depth = 1;
                class_start = true;
                rc = mfs_buf_append(o, p + i, 1);
                i++;
                if (i < len && p[i] == '^') {
                    rc = mfs_buf_append(o, "^", 1);
                    i++;
                }
                continue;
            }
            rc = mfs_buf_append(o, p + i, 1);
            i++;
            continue;
        }
        if (c == ']' && !class_start) {
            depth--;
            if (depth == 0)
                rc = mfs_buf_append(o, "]", 1);
            i++;
            continue;
        }
        if (c == '[' && i + 1 < len && p[i + 1] == ':') {
            const char *end = memchr(p + i, ']', len - i);

            if (!end)
                return mfs_err_set(err, -EINVAL, "bad POSIX class in regex");
            rc = mfs_buf_append(o, p + i, (size_t)(end - (p + i)) + 1);
            i = (size_t)(end - p) + 1;
            class_start = false;
            continue;
        }
        if (c == '[') {
            if (i + 1 < len && p[i + 1] == '^')
                return mfs_err_set(err, -EINVAL, "unsupported regex: negated nested class");
            depth++;
            class_start = true;
            i++;
            continue;
        }
        if (c == '&' && i + 1 < len && p[i + 1] == '&')
            return mfs_err_set(err, -EINVAL, "unsupported regex: class intersection");
        if (c == '[' || c == ']')
            rc = mfs_buf_append(o, "\\", 1);
        if (rc == 0)
            rc = mfs_buf_append(o, p + i, 1);
        class_start = false;
        i++;
    }
    if (rc < 0)
        return mfs_err_set(err, -ENOMEM, "out of memory translating regex");
    if (depth != 0)
        return mfs_err_set(err, -EINVAL, "unterminated character class in regex");
    return 0;
}

int mfs_tok_re_compile(struct mfs_tok_re *re, const char *pat, size_t len, bool literal,
                   struct mfs_err *err)
{
    struct mfs_buf t = MFS_BUF_INIT;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    int rc;

    memset(re, 0, sizeof(*re));
    if (literal) {
        opts = PCRE2_UTF | PCRE2_LITERAL;
        rc = mfs_buf_append(&t, pat, len);
        if (rc < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
    } else {
        rc = mfs_tok_re_translate(pat, len, &t, err);
        if (rc < 0)
            goto out_release;
    }
    re->code = pcre2_compile((PCRE2_SPTR)(t.data ? t.data : ""), t.len, opts, &errcode,
                             &erroff, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[120];

        pcre2_get_error_message(errcode, msg, sizeof(msg));
        rc = mfs_err_set(err, -EINVAL, "bad regex '%.60s': %s at %zu", pat, (char *)msg,
                         (size_t)erroff);
        goto out_release;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    rc = 0;
out_release:
    mfs_buf_release(&t);
    return rc;
}

void mfs_tok_re_release(struct mfs_tok_re *re)
{
    if (!re)
        return;
    pcre2_code_free(re->code);
    re->code = NULL;
}

int mfs_tok_re_find(const struct mfs_tok_re *re, const char *s, size_t len,
                    struct mfs_tok_mlist *ml)
{
    pcre2_match_data *md;
    size_t last_end = 0;
    bool has_last_match = false;
    size_t last_match_end = 0;
    size_t prev = 0;
    int rc = 0;

    ml->n = 0;
    if (len == 0)
        return mfs_tok_mlist_add(ml, 0, 0, false);
    md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md)
        return -ENOMEM;
    /* The onig crate's find_iter: an empty match right after the previous
     * match is skipped by moving one char on. */
    while (last_end <= len) {
        PCRE2_SIZE *ov;
        size_t ms;
        size_t me;
        int r = pcre2_match(re->code, (PCRE2_SPTR)s, len, last_end, PCRE2_NO_UTF_CHECK, md, NULL);

        if (r == PCRE2_ERROR_JIT_STACKLIMIT)
            r = pcre2_match(re->code, (PCRE2_SPTR)s, len, last_end,
                            PCRE2_NO_JIT | PCRE2_NO_UTF_CHECK, md, NULL);

        if (r == PCRE2_ERROR_NOMATCH)
            break;
        if (r < 0) {
            rc = -EINVAL;
            goto out_free;
        }
        ov = pcre2_get_ovector_pointer(md);
        ms = ov[0];
        me = ov[1];
        if (ms == me && has_last_match && last_match_end == me) {
            last_end += last_end < len ? (size_t)mfs_tok_utf8_clen((unsigned char)s[last_end]) : 1;
            continue;
        }
        last_end = me;
        has_last_match = true;
        last_match_end = me;
        if (prev != ms)
            rc = mfs_tok_mlist_add(ml, prev, ms, false);
        if (rc == 0)
            rc = mfs_tok_mlist_add(ml, ms, me, true);
        if (rc < 0)
            goto out_free;
        prev = me;
    }
    if (prev != len)
        rc = mfs_tok_mlist_add(ml, prev, len, false);
out_free:
    pcre2_match_data_free(md);
    return rc;
}

int mfs_tok_pred_find(bool (*pred)(uint32_t c, const void *ctx), const void *ctx, const char *s,
                  size_t len, struct mfs_tok_mlist *ml)
{
    size_t last_off = 0;
    size_t i = 0;
    int rc = 0;

    ml->n = 0;
    if (len == 0)
        return mfs_tok_mlist_add(ml, 0, 0, false);
    while (i < len && rc == 0) {
        uint32_t c;
        int l = mfs_tok_utf8_dec(s + i, len - i, &c);

        if (l < 0)
            return -EINVAL;
        if (pred(c, ctx)) {
            if (last_off < i)
                rc = mfs_tok_mlist_add(ml, last_off, i, false);
            if (rc == 0)
                rc = mfs_tok_mlist_add(ml, i, i + (size_t)l, true);
            last_off = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (rc == 0 && len > last_off)
        rc = mfs_tok_mlist_add(ml, last_off, len, false);
    return rc;
}

int mfs_tok_re_from_json(struct mfs_tok_re *re, const cJSON *pat, const char *what,
                         struct mfs_err *err)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");

    memset(re, 0, sizeof(*re));
    if (cJSON_IsString(s))
        return mfs_tok_re_compile(re, s->valuestring, strlen(s->valuestring), true, err);
    if (cJSON_IsString(r))
        return mfs_tok_re_compile(re, r->valuestring, strlen(r->valuestring), false, err);
    return mfs_err_set(err, -EINVAL, "%s: pattern must be {\"String\"} or {\"Regex\"}", what);
}

/* ---- PreTokenizedString ---- */

void mfs_tok_pts_release(struct mfs_tok_pts *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->n; i++)
        mfs_tok_ns_release(&p->v[i].ns);
    free(p->v);
    free(p->t);
    mfs_buf_release(&p->pool);
    memset(p, 0, sizeof(*p));
}

int mfs_tok_pts_push(struct mfs_tok_pts *p, struct mfs_tok_ns *ns)
{
    if (ns->len == 0) {
        mfs_tok_ns_release(ns);
        return 0;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct mfs_tok_split *v = realloc(p->v, cap * sizeof(*v));

        if (!v) {
            mfs_tok_ns_release(ns);
            return -ENOMEM;
        }
        p->v = v;
        p->cap = cap;
    }
    memset(&p->v[p->n], 0, sizeof(p->v[p->n]));
    p->v[p->n].ns = *ns;
    memset(ns, 0, sizeof(*ns));
    p->n++;
    return 0;
}

int mfs_tok_pts_tok(struct mfs_tok_pts *p, int32_t id, const char *v, size_t vlen, size_t s,
                    size_t e)
{
    if (p->nt == p->tcap) {
        size_t cap = p->tcap ? p->tcap * 2 : 64;
        struct mfs_tok_token *t = realloc(p->t, cap * sizeof(*t));

        if (!t)
            return -ENOMEM;
        p->t = t;
        p->tcap = cap;
    }
    p->t[p->nt].id = id;
    p->t[p->nt].vo = p->pool.len;
    p->t[p->nt].vlen = vlen;
    p->t[p->nt].s = s;
    p->t[p->nt].e = e;
    if (mfs_buf_append(&p->pool, v, vlen) < 0 || mfs_buf_append(&p->pool, "", 1) < 0)
        return -ENOMEM;
    p->nt++;
    return 0;
}

int mfs_tok_ns_split(struct mfs_tok_ns *ns, const struct mfs_tok_mlist *ml,
                     enum mfs_tok_split_behavior b,
                 struct mfs_tok_pts *out)
{
    struct mfs_tok_m *sp = malloc((ml->n + 1) * sizeof(*sp));
    size_t n = 0;
    bool prev = false;
    size_t i;
    int rc = 0;

    if (!sp)
        return -ENOMEM;
    /* sp[].match now means "remove this piece". */
    for (i = 0; i < ml->n; i++) {
        struct mfs_tok_m m = ml->v[i];

        switch (b) {
        case MFS_TOK_SPLIT_ISOLATED:
            m.match = false;
            sp[n++] = m;
            break;
        case MFS_TOK_SPLIT_REMOVED:
            sp[n++] = m;
            break;
        case MFS_TOK_SPLIT_CONTIGUOUS:
            if (m.match == prev && n > 0) {
                sp[n - 1].e = m.e;
            } else {
                sp[n] = m;
                sp[n++].match = false;
            }
            prev = ml->v[i].match;
            break;
        case MFS_TOK_SPLIT_MERGED_PREV:
            if (m.match && !prev && n > 0) {
                sp[n - 1].e = m.e;
            } else {
                sp[n] = m;
                sp[n++].match = false;
            }
            prev = ml->v[i].match;
            break;
        case MFS_TOK_SPLIT_MERGED_NEXT:
            break;
        }
    }
    if (b == MFS_TOK_SPLIT_MERGED_NEXT) {
        /* Walk backwards, then restore the order. */
        for (i = ml->n; i-- > 0;) {
            struct mfs_tok_m m = ml->v[i];

            if (m.match && !prev && n > 0) {
                sp[n - 1].s = m.s;
            } else {
                sp[n] = m;
                sp[n++].match = false;
            }
            prev = ml->v[i].match;
        }
        for (i = 0; i < n / 2; i++) {
            struct mfs_tok_m t = sp[i];

            sp[i] = sp[n - 1 - i];
            sp[n - 1 - i] = t;
        }
    }
    for (i = 0; i < n && rc == 0; i++) {
        struct mfs_tok_ns piece;

        if (sp[i].match)
            continue;
        rc = mfs_tok_ns_slice(ns, sp[i].s, sp[i].e, &piece);
        if (rc == 0)
            rc = mfs_tok_pts_push(out, &piece);
    }
    free(sp);
    return rc;
}

/* ---- byte-level alphabet (GPT-2 bytes_to_unicode) ---- */

uint32_t mfs_tok_bl_char(unsigned char b)
{
    /* Printable Latin-1 bytes map to themselves; the 68 others, in byte
     * order (0x00-0x20, 0x7f-0xa0, 0xad), to 256, 257, ... */
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7f && b <= 0xa0)
        return 256u + 33u + (b - 0x7fu);
    if (b == 0xad)
        return 256u + 33u + 34u;
    return b;
}

int mfs_tok_bl_byte(uint32_t c)
{
    if ((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff))
        return (int)c;
    if (c >= 256 && c < 256 + 33)
        return (int)(c - 256);
    if (c >= 256 + 33 && c < 256 + 33 + 34)
        return (int)(c - 256 - 33 + 0x7f);
    if (c == 256 + 33 + 34)
        return 0xad;
    return -1;
}

/* ---- JSON ---- */

const char *mfs_tok_js_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int mfs_tok_js_bool(const cJSON *o, const char *k, bool dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

    if (!v || cJSON_IsNull(v))
        return dflt;
    if (!cJSON_IsBool(v))
        return -1;
    return cJSON_IsTrue(v) ? 1 : 0;
}
