/*
 * model/tok_model.c - the tokenization models: BPE (models/bpe/model.rs and
 * word.rs), WordPiece (models/wordpiece/mod.rs) and Unigram
 * (models/unigram/model.rs, encode_optimized).
 *
 * BPE merges a word with a binary heap of candidate pairs ordered by
 * (rank, position), skipping stale entries, exactly as Word::merge_all;
 * merges live in a hash map (id, id) -> (rank, new id).  Unigram runs the
 * reference's Viterbi over byte positions with prefix lookups in the
 * vocabulary map, shortest prefix first so that ties resolve the same way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_int.h"

/* Ids are array indexes here: a hostile file must not make us allocate
 * gigabytes (the largest real vocabularies are ~256K). */
#define MFS_TOK_MAX_ID (1 << 24)

enum mfs_tok_model_type {
    MFS_TOK_M_BPE,
    MFS_TOK_M_WORDPIECE,
    MFS_TOK_M_UNIGRAM,
};

struct mfs_tok_model {
    enum mfs_tok_model_type type;
    struct mfs_tok_smap vocab;                  /* token -> id */
    char **vocab_r;                         /* [nr] id -> token (borrowed from vocab), or NULL */
    size_t nr;                              /* largest id + 1 */
    struct mfs_tok_pmap merges;                 /* BPE */
    char *unk;                              /* unk token, or NULL */
    int32_t unk_id;                         /* Unigram unk id, or -1 */
    char *prefix;                           /* continuing_subword_prefix, or NULL */
    char *suffix;                           /* end_of_word_suffix, or NULL */
    bool fuse_unk;                          /* BPE */
    bool byte_fallback;                     /* BPE, Unigram */
    bool ignore_merges;                     /* BPE */
    size_t max_chars;                       /* WordPiece max_input_chars_per_word */
    double *scores;                         /* Unigram [nr] */
    double min_score;                       /* Unigram */
    size_t max_piece;                       /* Unigram longest piece, bytes */
};

void mfs_tok_model_free(struct mfs_tok_model *m)
{
    if (!m)
        return;
    mfs_tok_smap_release(&m->vocab);
    mfs_tok_pmap_release(&m->merges);
    free(m->vocab_r);
    free(m->unk);
    free(m->prefix);
    free(m->suffix);
    free(m->scores);
    free(m);
}

static int mfs_tok_model_optstr(const cJSON *j, const char *k, const char *dflt, char **out,
                            struct mfs_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    const char *s = dflt;

    *out = NULL;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return mfs_err_set(err, -EINVAL, "model: '%s' must be a string", k);
        s = v->valuestring;
    }
    if (!s)
        return 0;
    *out = strdup(s);
    return *out ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
}

static int mfs_tok_model_bool(const cJSON *j, const char *k, bool dflt, bool *out,
                          struct mfs_err *err)
{
    int v = mfs_tok_js_bool(j, k, dflt);

    if (v < 0)
        return mfs_err_set(err, -EINVAL, "model: '%s' must be a boolean", k);
    *out = v;
    return 0;
}

/* Build vocab_r from the vocab map. */
static int mfs_tok_model_reverse(struct mfs_tok_model *m, struct mfs_err *err)
{
    size_t i;

    m->nr = 0;
    for (i = 0; i < m->vocab.n; i++) {
        if ((size_t)m->vocab.ent[i].val + 1 > m->nr)
            m->nr = (size_t)m->vocab.ent[i].val + 1;
    }
    m->vocab_r = calloc(m->nr + 1, sizeof(*m->vocab_r));
    if (!m->vocab_r)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    for (i = 0; i < m->vocab.n; i++)
        m->vocab_r[m->vocab.ent[i].val] = m->vocab.ent[i].key;
    return 0;
}

static int mfs_tok_model_vocab_obj(struct mfs_tok_model *m, const cJSON *v, struct mfs_err *err)
{
    const cJSON *e;

    if (!cJSON_IsObject(v))
        return mfs_err_set(err, -EINVAL, "model: 'vocab' must be an object");
    cJSON_ArrayForEach(e, v) {
        double d = e->valuedouble;

        if (!cJSON_IsNumber(e) || d < 0 || d >= MFS_TOK_MAX_ID || d != (double)(int32_t)d)
            return mfs_err_set(err, -EINVAL, "model: bad id for token '%.40s'", e->string);
        if (mfs_tok_smap_put(&m->vocab, e->string, strlen(e->string), (int32_t)d) < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    return mfs_tok_model_reverse(m, err);
}

static int mfs_tok_model_merges(struct mfs_tok_model *m, const cJSON *arr, struct mfs_err *err)
{
    struct mfs_buf t = MFS_BUF_INIT;
    size_t plen = m->prefix ? strlen(m->prefix) : 0;
    const cJSON *e;
    uint32_t rank = 0;
    int rc = 0;

    if (!cJSON_IsArray(arr))
        return mfs_err_set(err, -EINVAL, "BPE: 'merges' must be an array");
    cJSON_ArrayForEach(e, arr) {
        const char *a;
        const char *b;
        size_t alen;
        size_t blen;
        int32_t ia;
        int32_t ib;
        int32_t in;

        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');

            /* "a b": exactly one space (serialization.rs). */
            if (!sp || strchr(sp + 1, ' ')) {
                rc = mfs_err_set(err, -EINVAL, "BPE: bad merge '%.60s'", e->valuestring);
                break;
            }
            a = e->valuestring;
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        } else {
            rc = mfs_err_set(err, -EINVAL, "BPE: merge %u is not \"a b\" or [a, b]", rank);
            break;
        }
        ia = mfs_tok_smap_get(&m->vocab, a, alen);
        ib = mfs_tok_smap_get(&m->vocab, b, blen);
        mfs_buf_reset(&t);
        rc = mfs_buf_append(&t, a, alen);
        if (rc == 0 && blen >= plen)
            rc = mfs_buf_append(&t, b + plen, blen - plen);
        if (rc < 0) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        in = mfs_tok_smap_get(&m->vocab, t.data ? t.data : "", t.len);
        if (ia < 0 || ib < 0 || in < 0) {
            rc = mfs_err_set(err, -EINVAL, "BPE: merge %u: token '%.40s' not in the vocabulary",
                             rank, ia < 0 ? a : ib < 0 ? b : t.data);
            break;
        }
        if (mfs_tok_pmap_put(&m->merges, ia, ib, rank, in) < 0) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        rank++;
    }
    mfs_buf_release(&t);
    return rc;
}

static int mfs_tok_model_bpe(struct mfs_tok_model *m, const cJSON *j, struct mfs_err *err)
{
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(j, "dropout");
    int rc;

    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return mfs_err_set(err, -EINVAL, "unsupported BPE option 'dropout'");
    rc = mfs_tok_model_optstr(j, "unk_token", NULL, &m->unk, err);
    if (rc == 0)
        rc = mfs_tok_model_optstr(j, "continuing_subword_prefix", NULL, &m->prefix, err);
    if (rc == 0)
        rc = mfs_tok_model_optstr(j, "end_of_word_suffix", NULL, &m->suffix, err);
    if (rc == 0)
        rc = mfs_tok_model_bool(j, "fuse_unk", false, &m->fuse_unk, err);
    if (rc == 0)
        rc = mfs_tok_model_bool(j, "byte_fallback", false, &m->byte_fallback, err);
    if (rc == 0)
        rc = mfs_tok_model_bool(j, "ignore_merges", false, &m->ignore_merges, err);
    if (rc == 0)
        rc = mfs_tok_model_vocab_obj(m, cJSON_GetObjectItemCaseSensitive(j, "vocab"), err);
    if (rc == 0)
        rc = mfs_tok_model_merges(m, cJSON_GetObjectItemCaseSensitive(j, "merges"), err);
    return rc;
}

static int mfs_tok_model_wordpiece(struct mfs_tok_model *m, const cJSON *j, struct mfs_err *err)
{
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(j, "max_input_chars_per_word");
    int rc;

    m->max_chars = 100;
    if (mc && !cJSON_IsNull(mc)) {
        if (!cJSON_IsNumber(mc) || mc->valuedouble < 0)
            return mfs_err_set(err, -EINVAL, "WordPiece: bad 'max_input_chars_per_word'");
        m->max_chars = (size_t)mc->valuedouble;
    }
    rc = mfs_tok_model_optstr(j, "unk_token", "[UNK]", &m->unk, err);
    if (rc == 0)
        rc = mfs_tok_model_optstr(j, "continuing_subword_prefix", "##", &m->prefix, err);
    if (rc == 0)
        rc = mfs_tok_model_vocab_obj(m, cJSON_GetObjectItemCaseSensitive(j, "vocab"), err);
    return rc;
}

static int mfs_tok_model_unigram(struct mfs_tok_model *m, const cJSON *j, struct mfs_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "vocab");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "unk_id");
    const cJSON *e;
    int32_t id = 0;
    int rc;

    m->unk_id = -1;
    rc = mfs_tok_model_bool(j, "byte_fallback", false, &m->byte_fallback, err);
    if (rc < 0)
        return rc;
    if (!cJSON_IsArray(v))
        return mfs_err_set(err, -EINVAL, "Unigram: 'vocab' must be an array");
    m->nr = (size_t)cJSON_GetArraySize(v);
    m->vocab_r = calloc(m->nr + 1, sizeof(*m->vocab_r));
    m->scores = calloc(m->nr + 1, sizeof(*m->scores));
    if (!m->vocab_r || !m->scores)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    m->min_score = 1e300;
    cJSON_ArrayForEach(e, v) {
        const cJSON *p = cJSON_GetArrayItem(e, 0);
        const cJSON *s = cJSON_GetArrayItem(e, 1);
        size_t len;

        if (!cJSON_IsArray(e) || !cJSON_IsString(p) || !cJSON_IsNumber(s))
            return mfs_err_set(err, -EINVAL, "Unigram: vocab entry %d is not [piece, score]",
                               id);
        len = strlen(p->valuestring);
        if (mfs_tok_smap_put(&m->vocab, p->valuestring, len, id) < 0)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        m->scores[id] = s->valuedouble;
        if (s->valuedouble < m->min_score)
            m->min_score = s->valuedouble;
        if (len > m->max_piece)
            m->max_piece = len;
        id++;
    }
    /* vocab_r points at the map's copies; a repeated piece keeps the last id. */
    {
        size_t i;

        for (i = 0; i < m->vocab.n; i++)
            m->vocab_r[m->vocab.ent[i].val] = m->vocab.ent[i].key;
        id = 0;
        cJSON_ArrayForEach(e, v) {
            const char *p = cJSON_GetArrayItem(e, 0)->valuestring;

            if (!m->vocab_r[id]) {
                int32_t other = mfs_tok_smap_get(&m->vocab, p, strlen(p));

                m->vocab_r[id] = m->vocab_r[other];
            }
            id++;
        }
    }
    if (u && !cJSON_IsNull(u)) {
        if (!cJSON_IsNumber(u) || u->valuedouble < 0 || u->valuedouble >= (double)m->nr)
            return mfs_err_set(err, -EINVAL, "Unigram: 'unk_id' out of range");
        m->unk_id = (int32_t)u->valuedouble;
    }
    return 0;
}

int mfs_tok_model_new(const cJSON *j, struct mfs_tok_model **mp, struct mfs_err *err)
{
    struct mfs_tok_model *m;
    const char *type = mfs_tok_js_str(j, "type");
    int rc;

    *mp = NULL;
    m = calloc(1, sizeof(*m));
    if (!m)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    if (!type) {
        /* Old files omit the type; the reference guesses from the fields. */
        if (cJSON_GetObjectItemCaseSensitive(j, "merges"))
            type = "BPE";
        else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "vocab")))
            type = "Unigram";
        else if (cJSON_GetObjectItemCaseSensitive(j, "max_input_chars_per_word"))
            type = "WordPiece";
        else
            type = "?";
    }
    if (!strcmp(type, "BPE")) {
        m->type = MFS_TOK_M_BPE;
        rc = mfs_tok_model_bpe(m, j, err);
    } else if (!strcmp(type, "WordPiece")) {
        m->type = MFS_TOK_M_WORDPIECE;
        rc = mfs_tok_model_wordpiece(m, j, err);
    } else if (!strcmp(type, "Unigram")) {
        m->type = MFS_TOK_M_UNIGRAM;
        rc = mfs_tok_model_unigram(m, j, err);
    } else {
        rc = mfs_err_set(err, -EINVAL, "unsupported model '%s'", type);
    }
    if (rc < 0) {
        mfs_tok_model_free(m);
        return rc;
    }
    *mp = m;
    return 0;
}

int32_t mfs_tok_model_token_to_id(const struct mfs_tok_model *m, const char *s, size_t len)
{
    return mfs_tok_smap_get(&m->vocab, s, len);
}

const char *mfs_tok_model_id_to_token(const struct mfs_tok_model *m, int32_t id)
{
    if (id < 0 || (size_t)id >= m->nr)
        return NULL;
    return m->vocab_r[id];
}

size_t mfs_tok_model_id_bound(const struct mfs_tok_model *m)
{
    return m->nr;
}

size_t mfs_tok_model_vocab_size(const struct mfs_tok_model *m)
{
    return m->type == MFS_TOK_M_UNIGRAM ? m->nr : m->vocab.n;
}

/* ---- BPE ---- */

struct mfs_tok_sym {
    int32_t c;                              /* token id */
    int prev;                               /* index of the previous symbol, -1 */
    int next;                               /* index of the next symbol, -1 */
    size_t len;                             /* bytes of input covered; 0 = merged away */
};

struct mfs_tok_merge {
    uint32_t rank;                          /* merge rank */
    int pos;                                /* left symbol */
    int32_t new_id;                         /* result */
};

static bool mfs_tok_merge_before(const struct mfs_tok_merge *a, const struct mfs_tok_merge *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void mfs_tok_heap_push(struct mfs_tok_merge *h, size_t *n, struct mfs_tok_merge x)
{
    size_t i = (*n)++;

    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (!mfs_tok_merge_before(&x, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static struct mfs_tok_merge mfs_tok_heap_pop(struct mfs_tok_merge *h, size_t *n)
{
    struct mfs_tok_merge top = h[0];
    struct mfs_tok_merge x = h[--(*n)];
    size_t i = 0;

    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;
        const struct mfs_tok_merge *best = &x;

        if (l < *n && mfs_tok_merge_before(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && mfs_tok_merge_before(&h[r], best))
            m = r;
        if (m == i)
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0)
        h[i] = x;
    return top;
}

static int mfs_tok_sym_add(struct mfs_tok_sym **v, size_t *n, size_t *cap, int32_t c, size_t len)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        struct mfs_tok_sym *nv = realloc(*v, nc * sizeof(*nv));

        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[*n].c = c;
    (*v)[*n].prev = *n > 0 ? (int)*n - 1 : -1;
    (*v)[*n].next = -1;
    (*v)[*n].len = len;
    if (*n > 0)
        (*v)[*n - 1].next = (int)*n;
    (*n)++;
    return 0;
}

static int mfs_tok_bpe(const struct mfs_tok_model *m, struct mfs_tok_scratch *sc,
                       const char *w, size_t wlen,
                       struct mfs_tok_pts *pts)
{
    struct mfs_buf s = sc->str;
    struct mfs_tok_sym *sym = sc->sym;
    struct mfs_tok_merge *heap = sc->heap;
    size_t ns = 0;
    size_t cap = sc->symcap;
    size_t nh = 0;
    bool has_unk = false;
    int32_t unk_id = -1;
    size_t unk_len = 0;
    size_t i = 0;
    size_t off;
    int rc = 0;

    if (wlen == 0)
        return 0;
    if (m->ignore_merges) {
        int32_t id = mfs_tok_smap_get(&m->vocab, w, wlen);

        if (id >= 0)
            return mfs_tok_pts_tok(pts, id, w, wlen, 0, wlen);
    }
    while (i < wlen && rc == 0) {
        size_t cl = (size_t)mfs_tok_utf8_clen((unsigned char)w[i]);
        int32_t id;

        if (i + cl > wlen)
            cl = wlen - i;
        /* The symbol is the char, with the prefix unless first and the
         * suffix when last (merge_word). */
        mfs_buf_reset(&s);
        if (i > 0 && m->prefix)
            rc = mfs_buf_puts(&s, m->prefix);
        if (rc == 0)
            rc = mfs_buf_append(&s, w + i, cl);
        if (rc == 0 && i + cl == wlen && m->suffix)
            rc = mfs_buf_puts(&s, m->suffix);
        if (rc < 0)
            break;
        id = mfs_tok_smap_get(&m->vocab, s.data, s.len);
        if (id >= 0) {
            if (has_unk) {
                rc = mfs_tok_sym_add(&sym, &ns, &cap, unk_id, unk_len);
                has_unk = false;
            }
            if (rc == 0)
                rc = mfs_tok_sym_add(&sym, &ns, &cap, id, cl);
            i += cl;
            continue;
        }
        if (m->byte_fallback) {
            int32_t bid[64];
            size_t b;
            bool all = s.len <= 64;

            for (b = 0; all && b < s.len; b++) {
                char code[8];

                snprintf(code, sizeof(code), "<0x%02X>", (unsigned char)s.data[b]);
                bid[b] = mfs_tok_smap_get(&m->vocab, code, 6);
                all = bid[b] >= 0;
            }
            if (all) {
                /* As the reference: a pending unk is not flushed here. */
                for (b = 0; b < s.len && rc == 0; b++)
                    rc = mfs_tok_sym_add(&sym, &ns, &cap, bid[b], 1);
                i += cl;
                continue;
            }
        }
        if (m->unk) {
            int32_t uid = mfs_tok_smap_get(&m->vocab, m->unk, strlen(m->unk));

            if (uid < 0) {
                rc = -EINVAL;
                break;
            }
            if (has_unk && m->fuse_unk) {
                unk_len += cl;
            } else {
                if (has_unk)
                    rc = mfs_tok_sym_add(&sym, &ns, &cap, unk_id, unk_len);
                has_unk = true;
                unk_id = uid;
                unk_len = cl;
            }
        }
        i += cl;
    }
    if (rc == 0 && has_unk)
        rc = mfs_tok_sym_add(&sym, &ns, &cap, unk_id, unk_len);
    if (rc < 0 || ns == 0)
        goto out_free;
    if (sc->heapcap < ns * 3 + 3) {
        struct mfs_tok_merge *nh2 = realloc(heap, (ns * 3 + 3) * sizeof(*heap));

        if (!nh2) {
            rc = -ENOMEM;
            goto out_free;
        }
        heap = nh2;
        sc->heapcap = ns * 3 + 3;
    }
    for (i = 0; i + 1 < ns; i++) {
        struct mfs_tok_merge mg = { 0, (int)i, 0 };

        if (mfs_tok_pmap_get(&m->merges, sym[i].c, sym[i + 1].c, &mg.rank, &mg.new_id))
            mfs_tok_heap_push(heap, &nh, mg);
    }
    while (nh > 0) {
        struct mfs_tok_merge top = mfs_tok_heap_pop(heap, &nh);
        struct mfs_tok_sym *cur = &sym[top.pos];
        uint32_t rank;
        int32_t nid;
        int nx;

        if (cur->len == 0 || cur->next < 0)
            continue;
        nx = cur->next;
        if (!mfs_tok_pmap_get(&m->merges, cur->c, sym[nx].c, &rank, &nid) || nid != top.new_id)
            continue;
        cur->c = top.new_id;
        cur->len += sym[nx].len;
        cur->next = sym[nx].next;
        sym[nx].len = 0;
        if (cur->next >= 0)
            sym[cur->next].prev = top.pos;
        /* At most ns-1 initial entries plus two per merge: 3*ns slots
         * always suffice. */
        if (cur->prev >= 0) {
            struct mfs_tok_merge mg = { 0, cur->prev, 0 };

            if (mfs_tok_pmap_get(&m->merges, sym[cur->prev].c, cur->c, &mg.rank, &mg.new_id))
                mfs_tok_heap_push(heap, &nh, mg);
        }
        if (cur->next >= 0) {
            struct mfs_tok_merge mg = { 0, top.pos, 0 };

            if (mfs_tok_pmap_get(&m->merges, cur->c, sym[cur->next].c, &mg.rank, &mg.new_id))
                mfs_tok_heap_push(heap, &nh, mg);
        }
    }
    off = 0;
    for (i = 0; i < ns && rc == 0; i++) {
        const char *v;

        if (sym[i].len == 0)
            continue;
        v = mfs_tok_model_id_to_token(m, sym[i].c);
        if (!v)
            v = "";
        rc = mfs_tok_pts_tok(pts, sym[i].c, v, strlen(v), off, off + sym[i].len);
        off += sym[i].len;
    }
out_free:
    /* Hand the buffers back for the next word. */
    sc->heap = heap;
    sc->sym = sym;
    sc->symcap = cap;
    sc->str = s;
    return rc;
}

/* ---- WordPiece ---- */

static int mfs_tok_wordpiece(const struct mfs_tok_model *m, const char *w, size_t wlen,
                         struct mfs_tok_pts *pts)
{
    struct mfs_buf sub = MFS_BUF_INIT;
    size_t first = pts->nt;
    size_t nchars = 0;
    size_t start = 0;
    size_t i;
    bool bad = false;
    int32_t unk;
    int rc = 0;

    unk = mfs_tok_smap_get(&m->vocab, m->unk, strlen(m->unk));
    for (i = 0; i < wlen; i++)
        nchars += ((unsigned char)w[i] & 0xc0) != 0x80;
    if (nchars > m->max_chars) {
        if (unk < 0)
            return -EINVAL;
        return mfs_tok_pts_tok(pts, unk, m->unk, strlen(m->unk), 0, wlen);
    }
    while (start < wlen && rc == 0) {
        size_t end = wlen;
        bool found = false;

        while (start < end) {
            int32_t id;

            mfs_buf_reset(&sub);
            if (start > 0)
                rc = mfs_buf_puts(&sub, m->prefix);
            if (rc == 0)
                rc = mfs_buf_append(&sub, w + start, end - start);
            if (rc < 0)
                break;
            id = mfs_tok_smap_get(&m->vocab, sub.data, sub.len);
            if (id >= 0) {
                rc = mfs_tok_pts_tok(pts, id, sub.data, sub.len, start, end);
                found = true;
                break;
            }
            /* Drop the last char of the candidate (of the prefixed string,
             * as the reference: the prefix is never the last char here). */
            end--;
            while (end > start && ((unsigned char)w[end] & 0xc0) == 0x80)
                end--;
        }
        if (rc < 0)
            break;
        if (!found) {
            bad = true;
            break;
        }
        start = end;
    }
    if (rc == 0 && bad) {
        pts->nt = first;                    /* drop the partial pieces */
        if (unk < 0)
            rc = -EINVAL;
        else
            rc = mfs_tok_pts_tok(pts, unk, m->unk, strlen(m->unk), 0, wlen);
    }
    mfs_buf_release(&sub);
    return rc;
}

/* ---- Unigram ---- */

struct mfs_tok_node {
    int32_t id;                             /* token id of the best path's last piece */
    double score;                           /* best path score */
    long starts_at;                         /* start of that piece, -1 = unreached */
};

static int mfs_tok_unigram(const struct mfs_tok_model *m, const char *w, size_t wlen,
                       struct mfs_tok_pts *pts)
{
    struct mfs_tok_node *best = NULL;
    size_t *cuts = NULL;                    /* piece boundaries, from the end */
    size_t ncuts = 0;
    double unk_score = m->min_score - 10.0; /* K_UNK_PENALTY */
    size_t st = 0;
    size_t end;
    size_t i;
    int rc = 0;

    if (wlen == 0)
        return 0;
    best = malloc((wlen + 1) * sizeof(*best));
    cuts = malloc((2 * wlen + 2) * sizeof(*cuts));
    if (!best || !cuts) {
        rc = -ENOMEM;
        goto out_free;
    }
    for (i = 0; i <= wlen; i++) {
        best[i].id = 0;
        best[i].score = 0;
        best[i].starts_at = -1;
    }
    while (st < wlen) {
        double here = best[st].score;
        size_t mblen = (size_t)mfs_tok_utf8_clen((unsigned char)w[st]);
        bool single = false;
        size_t l;

        if (st + mblen > wlen)
            mblen = wlen - st;
        for (l = 1; l <= m->max_piece && st + l <= wlen; l++) {
            int32_t id = mfs_tok_smap_get(&m->vocab, w + st, l);
            struct mfs_tok_node *t = &best[st + l];
            double cand;

            if (id < 0)
                continue;
            cand = m->scores[id] + here;
            if (t->starts_at < 0 || cand > t->score) {
                t->score = cand;
                t->starts_at = (long)st;
                t->id = id;
            }
            if (l == mblen)
                single = true;
        }
        if (!single) {
            struct mfs_tok_node *t = &best[st + mblen];
            double cand = unk_score + here;

            if (m->unk_id < 0) {
                rc = -EINVAL;
                goto out_free;
            }
            if (t->starts_at < 0 || cand > t->score) {
                t->score = cand;
                t->starts_at = (long)st;
                t->id = m->unk_id;
            }
        }
        st += mblen;
    }
    /* Walk back; consecutive unk pieces are fused (fuse_unk is always on). */
    end = wlen;
    cuts[ncuts++] = wlen;
    while (end > 0) {
        struct mfs_tok_node *nd = &best[end];
        size_t s0 = (size_t)nd->starts_at;

        if (nd->starts_at < 0) {
            rc = -EINVAL;
            goto out_free;
        }
        if (!(nd->id == m->unk_id && m->unk_id >= 0 && s0 > 0 &&
              best[s0].id == m->unk_id && best[s0].starts_at >= 0))
            cuts[ncuts++] = s0;
        end = s0;
    }
    if (cuts[ncuts - 1] != 0)
        cuts[ncuts++] = 0;
    for (i = ncuts - 1; i > 0 && rc == 0; i--) {
        size_t a = cuts[i];
        size_t b = cuts[i - 1];
        int32_t id = mfs_tok_smap_get(&m->vocab, w + a, b - a);

        if (id < 0 && m->byte_fallback) {
            int32_t bid[256];
            size_t k;
            bool all = b - a <= 256;

            for (k = 0; all && k < b - a; k++) {
                char code[8];

                snprintf(code, sizeof(code), "<0x%02X>", (unsigned char)w[a + k]);
                bid[k] = mfs_tok_smap_get(&m->vocab, code, 6);
                all = bid[k] >= 0;
            }
            if (all) {
                for (k = 0; k < b - a && rc == 0; k++) {
                    char code[8];

                    snprintf(code, sizeof(code), "<0x%02X>", (unsigned char)w[a + k]);
                    rc = mfs_tok_pts_tok(pts, bid[k], code, 6, a, b);
                }
                continue;
            }
        }
        if (id < 0) {
            if (m->unk_id < 0) {
                rc = -EINVAL;
                break;
            }
            id = m->unk_id;
        }
        rc = mfs_tok_pts_tok(pts, id, w + a, b - a, a, b);
    }
out_free:
    free(cuts);
    free(best);
    return rc;
}

void mfs_tok_scratch_release(struct mfs_tok_scratch *sc)
{
    if (!sc)
        return;
    free(sc->sym);
    free(sc->heap);
    mfs_buf_release(&sc->str);
    memset(sc, 0, sizeof(*sc));
}

int mfs_tok_model_tokenize(const struct mfs_tok_model *m, struct mfs_tok_scratch *sc,
                           const char *s, size_t len, struct mfs_tok_pts *pts)
{
    switch (m->type) {
    case MFS_TOK_M_BPE:
        return mfs_tok_bpe(m, sc, s, len, pts);
    case MFS_TOK_M_WORDPIECE:
        return mfs_tok_wordpiece(m, s, len, pts);
    case MFS_TOK_M_UNIGRAM:
        return mfs_tok_unigram(m, s, len, pts);
    }
    return -EINVAL;
}
