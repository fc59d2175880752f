/*
 * model/tokenizer.h - Hugging Face tokenizers, read straight from tokenizer.json.
 *
 * Implements the pipeline of the reference `tokenizers` library (0.22.2):
 * added tokens are split out first (non-normalized ones on the raw text,
 * normalized ones after the normalizer), then normalizer, pre-tokenizer,
 * model (BPE, WordPiece, Unigram), post-processor; decode runs the decoder
 * chain.  Offsets are [start, end) in UTF-8 bytes of the input text and, in
 * a second array, in Unicode code points (what the Python binding returns).
 * Truncation and padding in tokenizer.json are ignored.  Regexes are
 * Oniguruma syntax (the reference's) run by PCRE2 with Unicode properties;
 * Unicode data comes from utf8proc.
 *
 * Typical use (model/ and the .modelfs/tokenize control file):
 *     struct mfs_tok *tok;
 *     struct mfs_tok_enc enc = MFS_TOK_ENC_INIT;
 *     mfs_tok_new(json, json_len, &tok, &err);
 *     mfs_tok_encode(tok, "Hello", 5, true, &enc, &err);   enc.ids[0..enc.n)
 *     mfs_tok_enc_release(&enc);
 *     mfs_tok_decode(tok, ids, n, true, &text, NULL, &err); free(text);
 *     mfs_tok_free(&tok);
 *
 * A struct mfs_tok is immutable once mfs_tok_new() returns: any number of
 * threads may encode and decode with it at the same time.
 * Returns: >= 0 on success, negative errno on failure, reason in *err.
 */
#ifndef MFS_MODEL_TOKENIZER_H
#define MFS_MODEL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct mfs_tok;

struct mfs_tok_span {
    size_t start;                           /* first unit of the token in the input */
    size_t end;                             /* one past the last; start == end for added [CLS] */
};

/* The result of one encode.  Embed it, fill it with mfs_tok_encode(), free
 * its contents with mfs_tok_enc_release(). */
struct mfs_tok_enc {
    size_t n;                               /* number of tokens */
    int32_t *ids;                           /* [n] token ids */
    char **tokens;                          /* [n] token strings, NUL-terminated, owned */
    struct mfs_tok_span *offsets;           /* [n] in UTF-8 bytes of the input */
    struct mfs_tok_span *offsets_cp;        /* [n] in code points of the input */
    char *pool;                             /* storage behind tokens[] */
};

#define MFS_TOK_ENC_INIT { 0, NULL, NULL, NULL, NULL, NULL }

/* Build a tokenizer from the bytes of a tokenizer.json (json[0..len), need
 * not be NUL-terminated).  OUT: *tokp, free with mfs_tok_free().
 * -EINVAL: not JSON, a malformed field, or a component or option this
 * implementation does not support (the reason names it, e.g.
 * "unsupported pre_tokenizer 'UnicodeScripts'"): never a silent wrong answer.
 * -ENOMEM.  Any thread. */
int mfs_tok_new(const char *json, size_t len, struct mfs_tok **tokp, struct mfs_err *err);

/* Free *tokp and set it to NULL.  NULL is a no-op.  No encode or decode may
 * be running on it. */
void mfs_tok_free(struct mfs_tok **tokp);

/* Tokenize text[0..len) (UTF-8), as the reference `encode(text,
 * add_special_tokens)`.  OUT: *out (its previous contents are not freed;
 * pass a fresh MFS_TOK_ENC_INIT or a released one); zeroed on failure.
 * -EINVAL: text is not valid UTF-8, is over 1 GiB, or the model cannot
 * cover it (no unk token where one is needed; a regex hit its match
 * limit).  -ENOMEM.  Any thread. */
int mfs_tok_encode(const struct mfs_tok *tok, const char *text, size_t len,
                   bool add_special_tokens, struct mfs_tok_enc *out, struct mfs_err *err);

/* Free the arrays of an encoding and reset it to MFS_TOK_ENC_INIT.  NULL is a no-op. */
void mfs_tok_enc_release(struct mfs_tok_enc *enc);

/* Turn ids[0..n) back into text, as the reference `decode(ids,
 * skip_special_tokens)` (no clean_up_tokenization_spaces).  Unknown ids are
 * skipped, as the reference does.  OUT: *textp, NUL-terminated, free()
 * it; *lenp (may be NULL) gets its length in bytes.  -ENOMEM.  Any thread. */
int mfs_tok_decode(const struct mfs_tok *tok, const int32_t *ids, size_t n, bool skip_special,
                   char **textp, size_t *lenp, struct mfs_err *err);

/* Id of a token string (added tokens first, then the model's vocabulary),
 * or -1 when there is none.  Any thread. */
int32_t mfs_tok_token_to_id(const struct mfs_tok *tok, const char *token);

/* Token string of an id (borrowed, valid until mfs_tok_free), or NULL. */
const char *mfs_tok_id_to_token(const struct mfs_tok *tok, int32_t id);

/* Number of ids: the model's vocabulary plus added tokens (largest id + 1). */
size_t mfs_tok_vocab_size(const struct mfs_tok *tok);

/* True when id is a special added token (decode skips it with skip_special). */
bool mfs_tok_is_special(const struct mfs_tok *tok, int32_t id);

/*
 * Streaming decode for generation (the reference DecodeStream): feed ids
 * one at a time and get back only the new text, once it is complete UTF-8
 * (a token that ends inside a multi-byte character gives nothing until the
 * character is finished).  The caller embeds the struct, one per sequence.
 */
struct mfs_tok_stream {
    bool skip_special;                      /* passed to decode */
    int32_t *ids;                           /* ids since prefix_index trimmed, owned */
    size_t n;                               /* ids used */
    size_t cap;                             /* ids allocated */
    char *prefix;                           /* decode of ids[0..prefix_index), owned */
    size_t prefix_len;                      /* bytes of prefix */
    size_t prefix_index;                    /* ids already covered by prefix */
};

/* Set up a stream; allocates nothing. */
void mfs_tok_stream_init(struct mfs_tok_stream *st, bool skip_special);

/* Free a stream's contents and re-init it.  NULL is a no-op. */
void mfs_tok_stream_release(struct mfs_tok_stream *st);

/* Add one id.  OUT: *textp: the newly completed text, free() it, or NULL
 * when nothing is complete yet (returns 0 either way).  -EINVAL: the
 * decoder rewrote text already returned (the reference's InvalidPrefix).
 * -ENOMEM.  One thread per stream. */
int mfs_tok_stream_step(const struct mfs_tok *tok, struct mfs_tok_stream *st, int32_t id,
                        char **textp, struct mfs_err *err);

#endif
