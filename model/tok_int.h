/*
 * model/tok_int.h - internals of the tokenizer (model/tokenizer.h).
 *
 * The central piece is struct mfs_tok_ns, the reference's NormalizedString: the
 * normalized text plus, for each of its bytes, the [start, end) byte range
 * of the original text it came from.  Every normalizer and pre-tokenizer
 * edits it through mfs_tok_ns_transform(), which updates the alignments with
 * the exact rules of tokenizers/src/tokenizer/normalizer.rs
 * (transform_range), so offsets come out as the reference's do, quirks
 * included.  A struct mfs_tok_pts is the PreTokenizedString: a list of splits,
 * each a mfs_tok_ns plus, once known, its tokens.
 *
 * Files: tok_util.c (hash maps, UTF-8, Unicode classes, mfs_tok_ns, patterns),
 * tok_norm.c (normalizers), tok_pre.c (pre-tokenizers), tok_model.c (BPE,
 * WordPiece, Unigram), tok_dec.c (decoders), tokenizer.c (added tokens,
 * post-processors, the public API).
 */
#ifndef MFS_MODEL_TOK_INT_H
#define MFS_MODEL_TOK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cJSON.h>
#include <pcre2.h>

#include "common/buf.h"
#include "common/err.h"

/* ---- hash maps ---- */

/* String -> int32 map; keys are copied into the map. */
struct mfs_tok_smap {
    int32_t *slots;                         /* index into ent, -1 = empty; size mask+1 */
    size_t mask;                            /* slot count - 1 (power of two) */
    struct mfs_tok_sent {
        char *key;                          /* owned, NUL-terminated */
        uint32_t len;                       /* bytes of key */
        int32_t val;                        /* value */
    } *ent;                                 /* entries in insertion order */
    size_t n;                               /* entries used */
    size_t cap;                             /* entries allocated */
};

void mfs_tok_smap_release(struct mfs_tok_smap *m);
/* Insert or overwrite.  -ENOMEM. */
int mfs_tok_smap_put(struct mfs_tok_smap *m, const char *key, size_t len, int32_t val);
/* Value for key, or -1. */
int32_t mfs_tok_smap_get(const struct mfs_tok_smap *m, const char *key, size_t len);

/* (id, id) pair -> (rank, new id), for BPE merges. */
struct mfs_tok_pmap {
    uint64_t *keys;                         /* UINT64_MAX = empty */
    uint32_t *rank;                         /* merge rank (line number) */
    int32_t *new_id;                        /* id of the merged token */
    size_t mask;                            /* slot count - 1 */
    size_t n;                               /* slots used */
};

void mfs_tok_pmap_release(struct mfs_tok_pmap *m);
int mfs_tok_pmap_put(struct mfs_tok_pmap *m, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
/* true, with *rank and *new_id set, when (a, b) is a merge. */
bool mfs_tok_pmap_get(const struct mfs_tok_pmap *m, int32_t a, int32_t b, uint32_t *rank,
                  int32_t *new_id);

/* ---- UTF-8 and Unicode classes (utf8proc) ---- */

/* Decode the code point at s[0..len); returns its byte length (>= 1) or -1. */
int mfs_tok_utf8_dec(const char *s, size_t len, uint32_t *cp);
/* Encode cp into out[4]; returns the byte length. */
int mfs_tok_utf8_enc(uint32_t cp, char *out);
/* Byte length of the character that starts with byte b. */
int mfs_tok_utf8_clen(unsigned char b);
bool mfs_tok_utf8_valid(const char *s, size_t len);
/* Append from_utf8_lossy(s[0..len)) to b: invalid sequences become U+FFFD
 * with Rust's maximal-subpart rule.  -ENOMEM. */
int mfs_tok_utf8_lossy(struct mfs_buf *b, const char *s, size_t len);

bool mfs_tok_is_whitespace(uint32_t c);         /* Rust char::is_whitespace */
bool mfs_tok_is_punct(uint32_t c);              /* ASCII punct or Unicode P* */
bool mfs_tok_is_numeric(uint32_t c);            /* Rust char::is_numeric: Nd Nl No */
bool mfs_tok_is_word(uint32_t c);               /* regex \w: alphabetic, M, Nd, Pc, join controls */
bool mfs_tok_is_other(uint32_t c);              /* categories C* */
bool mfs_tok_is_mn(uint32_t c);                 /* Mn */
int mfs_tok_ccc(uint32_t c);                    /* canonical combining class */

/* ---- NormalizedString ---- */

struct mfs_tok_aln {
    uint32_t s;                             /* original byte start (relative to this slice) */
    uint32_t e;                             /* original byte end */
};

struct mfs_tok_ns {
    char *s;                                /* normalized text, NUL-terminated, owned */
    size_t len;                             /* bytes of s */
    struct mfs_tok_aln *aln;                    /* [len] alignment of each normalized byte */
    size_t orig_len;                        /* bytes of the original slice */
    size_t shift;                           /* offset of the original slice in the input */
};

/* One character of a transformation: the new char and its change
 * (0 replaces a char, +1 inserts one, -N replaces one and removes N). */
struct mfs_tok_chg {
    uint32_t c;                             /* code point */
    int32_t chg;                            /* change, as in transform_range */
};

int mfs_tok_ns_init(struct mfs_tok_ns *ns, const char *s, size_t len);
void mfs_tok_ns_release(struct mfs_tok_ns *ns);
/* transform_range on the normalized byte range [a, b). */
int mfs_tok_ns_transform_range(struct mfs_tok_ns *ns, size_t a, size_t b,
                               const struct mfs_tok_chg *chg,
                           size_t n, size_t initial_offset);
/* transform (the range given as Original(..), as the reference does). */
int mfs_tok_ns_transform(struct mfs_tok_ns *ns, const struct mfs_tok_chg *chg, size_t n,
                     size_t initial_offset);
/* Normalized [a, b) -> original; false when out of range. */
bool mfs_tok_ns_n2o(const struct mfs_tok_ns *ns, size_t a, size_t b, size_t *oa, size_t *ob);
/* Slice normalized [a, b) into *out. */
int mfs_tok_ns_slice(const struct mfs_tok_ns *ns, size_t a, size_t b, struct mfs_tok_ns *out);
/* Characters of ns->s as code points.  OUT: *cps (free), *n. */
int mfs_tok_ns_chars(const struct mfs_tok_ns *ns, uint32_t **cps, size_t *n);

int mfs_tok_ns_prepend(struct mfs_tok_ns *ns, const char *s);
int mfs_tok_ns_lowercase(struct mfs_tok_ns *ns);
int mfs_tok_ns_nf(struct mfs_tok_ns *ns, bool compose, bool compat);
/* Keep the chars for which keep(c) is true. */
int mfs_tok_ns_filter(struct mfs_tok_ns *ns, bool (*keep)(uint32_t c));
int mfs_tok_ns_strip(struct mfs_tok_ns *ns, bool left, bool right);
/* Rewrite every byte as its GPT-2 byte-level char (ByteLevel pre_tokenize). */
int mfs_tok_ns_bytelevel(struct mfs_tok_ns *ns);

/* ---- patterns ---- */

/* A match list: consecutive ranges covering the whole string, each a match
 * of the pattern or not (the reference's Vec<(Offsets, bool)>). */
struct mfs_tok_mlist {
    struct mfs_tok_m {
        size_t s;                           /* byte start in the searched string */
        size_t e;                           /* byte end */
        bool match;                         /* true for a pattern match */
    } *v;                                   /* ranges, in order */
    size_t n;                               /* used */
    size_t cap;                             /* allocated */
};

void mfs_tok_mlist_release(struct mfs_tok_mlist *ml);
int mfs_tok_mlist_add(struct mfs_tok_mlist *ml, size_t s, size_t e, bool match);

/* A compiled regex (Oniguruma syntax translated to PCRE2) or literal. */
struct mfs_tok_re {
    pcre2_code *code;                       /* compiled, JIT when available */
};

/* Compile pat[0..len); literal=true for a plain string.  -EINVAL with the reason. */
int mfs_tok_re_compile(struct mfs_tok_re *re, const char *pat, size_t len, bool literal,
                   struct mfs_err *err);
void mfs_tok_re_release(struct mfs_tok_re *re);
/* The reference's Pattern::find_matches for a regex.  -ENOMEM, -EINVAL. */
int mfs_tok_re_find(const struct mfs_tok_re *re, const char *s, size_t len,
                    struct mfs_tok_mlist *ml);
/* find_matches for a char predicate (one match per matching char). */
int mfs_tok_pred_find(bool (*pred)(uint32_t c, const void *ctx), const void *ctx, const char *s,
                  size_t len, struct mfs_tok_mlist *ml);
/* Parse a {"String": s} / {"Regex": r} pattern object. */
int mfs_tok_re_from_json(struct mfs_tok_re *re, const cJSON *pat, const char *what,
                         struct mfs_err *err);

enum mfs_tok_split_behavior {
    MFS_TOK_SPLIT_REMOVED,
    MFS_TOK_SPLIT_ISOLATED,
    MFS_TOK_SPLIT_MERGED_PREV,
    MFS_TOK_SPLIT_MERGED_NEXT,
    MFS_TOK_SPLIT_CONTIGUOUS,
};

/* ns.replace(pattern, content) given the pattern's matches on ns->s. */
int mfs_tok_ns_replace(struct mfs_tok_ns *ns, const struct mfs_tok_mlist *ml, const char *content);

/* ---- PreTokenizedString ---- */

struct mfs_tok_token {
    int32_t id;                             /* token id */
    size_t vo;                              /* offset of the value in the pool */
    size_t vlen;                            /* bytes of the value */
    size_t s;                               /* byte start in the split's normalized text */
    size_t e;                               /* byte end */
};

struct mfs_tok_split {
    struct mfs_tok_ns ns;                       /* the piece of text */
    bool done;                              /* tokens known (an added token, or tokenized) */
    size_t t0;                              /* first token in the mfs_tok_pts token list */
    size_t nt;                              /* tokens of this split */
};

struct mfs_tok_pts {
    struct mfs_tok_split *v;                    /* splits in text order */
    size_t n;                               /* used */
    size_t cap;                             /* allocated */
    struct mfs_tok_token *t;                    /* all tokens */
    size_t nt;                              /* used */
    size_t tcap;                            /* allocated */
    struct mfs_buf pool;                    /* token values */
};

void mfs_tok_pts_release(struct mfs_tok_pts *p);
/* Add a split (takes ns over; an empty ns is freed and dropped). */
int mfs_tok_pts_push(struct mfs_tok_pts *p, struct mfs_tok_ns *ns);
/* Append a token with value v[0..vlen).  -ENOMEM. */
int mfs_tok_pts_tok(struct mfs_tok_pts *p, int32_t id, const char *v, size_t vlen, size_t s,
                    size_t e);
/* Replace split i (not done) by the pieces of ns cut by ml and behavior. */
int mfs_tok_ns_split(struct mfs_tok_ns *ns, const struct mfs_tok_mlist *ml,
                     enum mfs_tok_split_behavior b,
                 struct mfs_tok_pts *out);

/* ---- components ---- */

struct mfs_tok_norm;
struct mfs_tok_pre;
struct mfs_tok_model;
struct mfs_tok_dec;

int mfs_tok_norm_new(const cJSON *j, struct mfs_tok_norm **np, struct mfs_err *err);
void mfs_tok_norm_free(struct mfs_tok_norm *n);
int mfs_tok_norm_apply(const struct mfs_tok_norm *n, struct mfs_tok_ns *ns);

int mfs_tok_pre_new(const cJSON *j, struct mfs_tok_pre **pp, struct mfs_err *err);
void mfs_tok_pre_free(struct mfs_tok_pre *p);
/* Pre-tokenize every split of pts that is not done. */
int mfs_tok_pre_apply(const struct mfs_tok_pre *p, struct mfs_tok_pts *pts);

int mfs_tok_model_new(const cJSON *j, struct mfs_tok_model **mp, struct mfs_err *err);
void mfs_tok_model_free(struct mfs_tok_model *m);
/* Buffers one encode reuses from word to word (BPE symbols and heap). */
struct mfs_tok_scratch {
    void *sym;                              /* BPE symbols */
    size_t symcap;                          /* symbols allocated */
    void *heap;                             /* BPE merge heap */
    size_t heapcap;                         /* heap entries allocated */
    struct mfs_buf str;                     /* symbol text */
};

void mfs_tok_scratch_release(struct mfs_tok_scratch *sc);
/* Tokenize s[0..len), appending tokens (offsets in s) to pts. */
int mfs_tok_model_tokenize(const struct mfs_tok_model *m, struct mfs_tok_scratch *sc,
                           const char *s, size_t len, struct mfs_tok_pts *pts);
int32_t mfs_tok_model_token_to_id(const struct mfs_tok_model *m, const char *s, size_t len);
const char *mfs_tok_model_id_to_token(const struct mfs_tok_model *m, int32_t id);
/* Entries in the vocabulary (the reference's get_vocab_size). */
size_t mfs_tok_model_vocab_size(const struct mfs_tok_model *m);
/* Largest id + 1. */
size_t mfs_tok_model_id_bound(const struct mfs_tok_model *m);

int mfs_tok_dec_new(const cJSON *j, struct mfs_tok_dec **dp, struct mfs_err *err);
void mfs_tok_dec_free(struct mfs_tok_dec *d);
/* Decode a token list into text.  toks[i] are NUL-terminated.  OUT: *out. */
int mfs_tok_dec_apply(const struct mfs_tok_dec *d, const char *const *toks, size_t n,
                  struct mfs_buf *out);

/* The byte-level (GPT-2) alphabet: byte -> code point, and back (-1). */
uint32_t mfs_tok_bl_char(unsigned char b);
int mfs_tok_bl_byte(uint32_t c);

/* ---- small JSON helpers ---- */

/* String member or NULL. */
const char *mfs_tok_js_str(const cJSON *o, const char *k);
/* Bool member: true/false, dflt when absent or null; -1 when not a bool. */
int mfs_tok_js_bool(const cJSON *o, const char *k, bool dflt);

#endif
