/*
 * model/gen_request.h - the text written to .modelfs/generate (and the
 * load words of .modelfs/load: mfs_model_load_opts_parse in model.h),
 * docs/design.md, Control files.
 *
 * A request is either a plain-text prompt (one trailing "\n" or "\r\n",
 * as echo adds, is dropped) or, when its first non-blank byte is '{', a
 * JSON object with exactly one of "prompt" (string) and "input_ids"
 * (array of token ids), and optionally "max_new_tokens", "do_sample",
 * "temperature", "top_k", "top_p", "repetition_penalty", "seed" and
 * "stop" (a string or up to 8 strings).  A prompt that itself starts
 * with '{' must be sent as JSON.  Anything else -- unknown or repeated
 * keys, wrong types, negative or out-of-range numbers, non-UTF-8 or NUL
 * bytes, an empty prompt -- is -EINVAL with the key and the rule in *err.
 * Pure functions on memory; any thread.
 */
#ifndef MFS_MODEL_GEN_REQUEST_H
#define MFS_MODEL_GEN_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "model/model.h"

struct mfs_gen_request {
    bool is_json;                           /* the request was JSON (reply in JSON) */
    char *prompt;                           /* owned UTF-8 text, or NULL (input_ids given) */
    int32_t *input_ids;                     /* owned, or NULL (prompt given) */
    size_t n_ids;
    bool has_max_new_tokens;
    int64_t max_new_tokens;                 /* >= 0 */
    bool has_do_sample;
    bool do_sample;
    bool has_temperature;
    double temperature;                     /* >= 0; 0 means greedy */
    bool has_top_k;
    int64_t top_k;                          /* >= 0; 0 = off */
    bool has_top_p;
    double top_p;                           /* [0, 1] */
    bool has_repetition_penalty;
    double repetition_penalty;              /* > 0 */
    bool has_seed;
    uint64_t seed;                          /* [0, 2^53] */
    size_t n_stop;
    char *stop[MFS_GEN_MAX_STOP];           /* owned, non-empty */
};

/* Parse text[0..len).  OUT: *req (release with mfs_gen_request_release
 * whatever the result).  -EINVAL with the reason; -ENOMEM. */
int mfs_gen_request_parse(const char *text, size_t len, struct mfs_gen_request *req,
                          struct mfs_err *err);

void mfs_gen_request_release(struct mfs_gen_request *req);

/* Decoding settings: gen's defaults (generation_config.json) overridden by
 * what req sets.  p->stop borrows req's strings (valid until release).
 * -EINVAL: do_sample with temperature 0. */
int mfs_gen_request_params(const struct mfs_gen_request *req, const struct mfs_gen_config *gen,
                           struct mfs_gen_params *p, struct mfs_err *err);

struct mfs_tok;

/* The prompt ids of req: input_ids as given, or the prompt encoded with
 * tok by data/golden/README.md's prompt rule: llama and mistral get
 * [bos_token_id] + encode(text, add_special_tokens=false); gpt2, qwen2,
 * bloom get encode(text, add_special_tokens=false); bert gets
 * encode(text, add_special_tokens=true) ([CLS] ... [SEP]).  An encoding
 * that comes out empty becomes [bos_token_id].  OUT: *ids (malloc'ed,
 * free()) and *n.  -EINVAL: no tokenizer for a text prompt, the text
 * cannot be encoded, or nothing to start from; -ENOMEM. */
int mfs_gen_request_ids(const struct mfs_gen_request *req, const struct mfs_tok *tok,
                        const struct mfs_model_config *cfg, int32_t **ids, size_t *n,
                        struct mfs_err *err);

/* A struct mfs_gen_callbacks detok function over model/tokenizer.h: ctx
 * is the const struct mfs_tok *; decodes with skip_special_tokens. */
int mfs_gen_detok_tok(void *ctx, const int32_t *ids, size_t n, struct mfs_buf *out,
                      struct mfs_err *err);

/* True iff s[0..len) is valid UTF-8 without NUL bytes. */
bool mfs_gen_text_valid(const char *s, size_t len);

#endif
