/*
 * model/gen_request.c - parse .modelfs/generate requests (cJSON) and
 * .modelfs/load words; see gen_request.h and model.h.
 */
#include "model/gen_request.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tokenizer.h"

#define MAX_NEW_TOKENS (1 << 20)            /* beyond this a request is surely a mistake */
#define MAX_SEED 9007199254740992.0         /* 2^53: exact in a JSON double */

bool mfs_gen_text_valid(const char *s, size_t len)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    size_t off = 0;

    while (off < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t n = utf8proc_iterate(p + off, (utf8proc_ssize_t)(len - off), &cp);

        if (n <= 0 || cp == 0)
            return false;
        off += (size_t)n;
    }
    return true;
}

void mfs_gen_request_release(struct mfs_gen_request *req)
{
    size_t i;

    if (!req)
        return;
    free(req->prompt);
    free(req->input_ids);
    for (i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    memset(req, 0, sizeof(*req));
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int want_number(const cJSON *it, double min, double max, double *out, struct mfs_err *err)
{
    if (!cJSON_IsNumber(it))
        return mfs_err_set(err, -EINVAL, "invalid request: '%s' must be a number", it->string);
    if (!(it->valuedouble >= min && it->valuedouble <= max))
        return mfs_err_set(err, -EINVAL, "invalid request: '%s' = %g is out of range [%g, %g]",
                           it->string, it->valuedouble, min, max);
    *out = it->valuedouble;
    return 0;
}

static int want_int(const cJSON *it, double max, int64_t *out, struct mfs_err *err)
{
    double v;
    int rc;

    if (!cJSON_IsNumber(it))
        return mfs_err_set(err, -EINVAL, "invalid request: '%s' must be an integer", it->string);
    rc = want_number(it, 0, max, &v, err);
    if (rc < 0)
        return rc;
    if (v != floor(v))
        return mfs_err_set(err, -EINVAL, "invalid request: '%s' = %g is not an integer",
                           it->string, v);
    *out = (int64_t)v;
    return 0;
}

static int parse_string(const cJSON *it, char **out, struct mfs_err *err)
{
    size_t n;

    if (!cJSON_IsString(it))
        return mfs_err_set(err, -EINVAL, "invalid request: '%s' must be a string", it->string);
    n = strlen(it->valuestring);
    if (!mfs_gen_text_valid(it->valuestring, n))
        return mfs_err_set(err, -EINVAL, "invalid request: '%s' is not valid UTF-8",
                           it->string);
    *out = dup_n(it->valuestring, n);
    return *out ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
}

static int parse_ids(const cJSON *it, struct mfs_gen_request *req, struct mfs_err *err)
{
    const cJSON *e;
    int n;
    int i = 0;

    if (!cJSON_IsArray(it))
        return mfs_err_set(err, -EINVAL, "invalid request: 'input_ids' must be an array of "
                           "integers");
    n = cJSON_GetArraySize(it);
    if (n == 0)
        return mfs_err_set(err, -EINVAL, "invalid request: 'input_ids' is empty");
    req->input_ids = calloc((size_t)n, sizeof(*req->input_ids));
    if (!req->input_ids)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, it) {
        double v;

        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
            e->valuedouble < 0 || e->valuedouble > INT32_MAX) {
            return mfs_err_set(err, -EINVAL, "invalid request: 'input_ids'[%d] is not a token "
                               "id (a non-negative integer)", i);
        }
        v = e->valuedouble;
        req->input_ids[i++] = (int32_t)v;
    }
    req->n_ids = (size_t)n;
    return 0;
}

static int parse_stop(const cJSON *it, struct mfs_gen_request *req, struct mfs_err *err)
{
    const cJSON *e;
    int rc;

    if (cJSON_IsString(it)) {
        if (!it->valuestring[0])
            return mfs_err_set(err, -EINVAL, "invalid request: 'stop' is an empty string");
        rc = parse_string(it, &req->stop[0], err);
        if (rc == 0)
            req->n_stop = 1;
        return rc;
    }
    if (!cJSON_IsArray(it))
        return mfs_err_set(err, -EINVAL, "invalid request: 'stop' must be a string or an "
                           "array of strings");
    if (cJSON_GetArraySize(it) > MFS_GEN_MAX_STOP)
        return mfs_err_set(err, -EINVAL, "invalid request: more than %d 'stop' strings",
                           MFS_GEN_MAX_STOP);
    cJSON_ArrayForEach(e, it) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return mfs_err_set(err, -EINVAL, "invalid request: 'stop'[%zu] is not a non-empty "
                               "string", req->n_stop);
        if (!mfs_gen_text_valid(e->valuestring, strlen(e->valuestring)))
            return mfs_err_set(err, -EINVAL, "invalid request: 'stop'[%zu] is not valid UTF-8",
                               req->n_stop);
        req->stop[req->n_stop] = dup_n(e->valuestring, strlen(e->valuestring));
        if (!req->stop[req->n_stop])
            return mfs_err_set(err, -ENOMEM, "out of memory");
        req->n_stop++;
    }
    return 0;
}

static int parse_key(const cJSON *it, struct mfs_gen_request *req, struct mfs_err *err)
{
    const char *k = it->string;
    int64_t iv;
    int rc;

    if (!strcmp(k, "prompt"))
        return parse_string(it, &req->prompt, err);
    if (!strcmp(k, "input_ids"))
        return parse_ids(it, req, err);
    if (!strcmp(k, "stop"))
        return parse_stop(it, req, err);
    if (!strcmp(k, "do_sample")) {
        if (!cJSON_IsBool(it))
            return mfs_err_set(err, -EINVAL, "invalid request: 'do_sample' must be true or "
                               "false");
        req->has_do_sample = true;
        req->do_sample = cJSON_IsTrue(it);
        return 0;
    }
    if (!strcmp(k, "max_new_tokens")) {
        rc = want_int(it, MAX_NEW_TOKENS, &req->max_new_tokens, err);
        req->has_max_new_tokens = rc == 0;
        return rc;
    }
    if (!strcmp(k, "top_k")) {
        rc = want_int(it, INT32_MAX, &req->top_k, err);
        req->has_top_k = rc == 0;
        return rc;
    }
    if (!strcmp(k, "seed")) {
        rc = want_int(it, MAX_SEED, &iv, err);
        req->seed = (uint64_t)iv;
        req->has_seed = rc == 0;
        return rc;
    }
    if (!strcmp(k, "temperature")) {
        rc = want_number(it, 0, 1e6, &req->temperature, err);
        req->has_temperature = rc == 0;
        return rc;
    }
    if (!strcmp(k, "top_p")) {
        rc = want_number(it, 0, 1, &req->top_p, err);
        req->has_top_p = rc == 0;
        return rc;
    }
    if (!strcmp(k, "repetition_penalty")) {
        rc = want_number(it, 0, 1e6, &req->repetition_penalty, err);
        if (rc == 0 && req->repetition_penalty == 0)
            rc = mfs_err_set(err, -EINVAL, "invalid request: 'repetition_penalty' must be > 0");
        req->has_repetition_penalty = rc == 0;
        return rc;
    }
    return mfs_err_set(err, -EINVAL, "invalid request: unknown key '%.64s'", k);
}

static int parse_json(const char *text, size_t len, struct mfs_gen_request *req,
                      struct mfs_err *err)
{
    const char *end = NULL;
    const cJSON *it;
    cJSON *root;
    int rc = 0;

    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root)
        return mfs_err_set(err, -EINVAL, "invalid request: not valid JSON near byte %td",
                           end ? end - text : (ptrdiff_t)0);
    while (end && (size_t)(end - text) < len && strchr(" \t\r\n", *end))
        end++;
    if (end && (size_t)(end - text) < len) {
        rc = mfs_err_set(err, -EINVAL, "invalid request: text after the JSON object");
        goto out_delete;
    }
    if (!cJSON_IsObject(root)) {
        rc = mfs_err_set(err, -EINVAL, "invalid request: not a JSON object");
        goto out_delete;
    }
    cJSON_ArrayForEach(it, root) {
        const cJSON *prev;

        for (prev = root->child; prev != it; prev = prev->next)
            if (!strcmp(prev->string, it->string))
                break;
        if (prev != it) {
            rc = mfs_err_set(err, -EINVAL, "invalid request: key '%.64s' given twice",
                             it->string);
            goto out_delete;
        }
        rc = parse_key(it, req, err);
        if (rc < 0)
            goto out_delete;
    }
    if (!req->prompt == !req->input_ids)
        rc = mfs_err_set(err, -EINVAL, "invalid request: give exactly one of 'prompt' and "
                         "'input_ids'");
    else if (req->prompt && !req->prompt[0])
        rc = mfs_err_set(err, -EINVAL, "invalid request: 'prompt' is empty");

out_delete:
    cJSON_Delete(root);
    return rc;
}

int mfs_gen_request_parse(const char *text, size_t len, struct mfs_gen_request *req,
                          struct mfs_err *err)
{
    size_t i = 0;

    memset(req, 0, sizeof(*req));
    while (i < len && strchr(" \t\r\n", text[i]) && text[i])
        i++;
    if (i < len && text[i] == '{') {
        req->is_json = true;
        if (!mfs_gen_text_valid(text, len))
            return mfs_err_set(err, -EINVAL, "invalid request: not valid UTF-8 (or has NUL "
                               "bytes)");
        return parse_json(text, len, req, err);
    }
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > 0 && text[len - 1] == '\r')
        len--;
    if (len == 0)
        return mfs_err_set(err, -EINVAL, "invalid request: empty prompt");
    if (!mfs_gen_text_valid(text, len))
        return mfs_err_set(err, -EINVAL, "invalid request: the prompt is not valid UTF-8 (or "
                           "has NUL bytes)");
    req->prompt = dup_n(text, len);
    if (!req->prompt)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    return 0;
}

int mfs_gen_request_params(const struct mfs_gen_request *req, const struct mfs_gen_config *gen,
                           struct mfs_gen_params *p, struct mfs_err *err)
{
    size_t i;

    mfs_gen_params_init(p, gen);
    if (req->has_max_new_tokens)
        p->max_new_tokens = req->max_new_tokens;
    if (req->has_do_sample)
        p->do_sample = req->do_sample;
    if (req->has_temperature) {
        if (req->temperature == 0) {
            if (req->has_do_sample && req->do_sample)
                return mfs_err_set(err, -EINVAL, "invalid request: 'do_sample' needs "
                                   "'temperature' > 0");
            p->do_sample = false;
        } else {
            p->temperature = req->temperature;
        }
    }
    if (req->has_top_k)
        p->top_k = req->top_k;
    if (req->has_top_p)
        p->top_p = req->top_p;
    if (req->has_repetition_penalty)
        p->repetition_penalty = req->repetition_penalty;
    if (req->has_seed)
        p->seed = req->seed;
    p->n_stop = req->n_stop;
    for (i = 0; i < req->n_stop; i++)
        p->stop[i] = req->stop[i];
    if (p->do_sample && !(p->temperature > 0))
        return mfs_err_set(err, -EINVAL, "invalid settings: sampling needs temperature > 0");
    return 0;
}

int mfs_gen_request_ids(const struct mfs_gen_request *req, const struct mfs_tok *tok,
                        const struct mfs_model_config *cfg, int32_t **ids, size_t *n,
                        struct mfs_err *err)
{
    struct mfs_tok_enc enc = MFS_TOK_ENC_INIT;
    bool bert = cfg->arch == MFS_ARCH_BERT;
    bool bos = cfg->bos_token_id >= 0 && (!strcmp(cfg->model_type, "llama") ||
                                          !strcmp(cfg->model_type, "mistral"));
    int rc;

    *ids = NULL;
    *n = 0;
    if (req->input_ids) {
        *ids = malloc(req->n_ids * sizeof(**ids));
        if (!*ids)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        memcpy(*ids, req->input_ids, req->n_ids * sizeof(**ids));
        *n = req->n_ids;
        return 0;
    }
    if (!tok)
        return mfs_err_set(err, -EINVAL, "cannot encode the prompt: the repo has no usable "
                           "tokenizer.json");
    rc = mfs_tok_encode(tok, req->prompt, strlen(req->prompt), bert, &enc, err);
    if (rc < 0)
        return rc;
    if (enc.n == 0)
        bos = cfg->bos_token_id >= 0;
    if (enc.n == 0 && !bos) {
        rc = mfs_err_set(err, -EINVAL, "the prompt encodes to no tokens");
        goto out_release;
    }
    *ids = malloc((enc.n + 1) * sizeof(**ids));
    if (!*ids) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_release;
    }
    if (bos)
        (*ids)[0] = (int32_t)cfg->bos_token_id;
    if (enc.n)
        memcpy(*ids + bos, enc.ids, enc.n * sizeof(**ids));
    *n = enc.n + bos;

out_release:
    mfs_tok_enc_release(&enc);
    return rc;
}

int mfs_gen_detok_tok(void *ctx, const int32_t *ids, size_t n, struct mfs_buf *out,
                      struct mfs_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    rc = mfs_tok_decode(ctx, ids, n, true, &text, &len, err);
    if (rc < 0)
        return rc;
    rc = mfs_buf_append(out, text, len);
    free(text);
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

/* ---- .modelfs/load ---- */

static int parse_dtype(const char *v, enum mfs_model_dtype *d)
{
    static const struct {
        const char *name;
        enum mfs_model_dtype d;
    } names[] = {
        { "auto", MFS_MODEL_DTYPE_AUTO },      { "f32", MFS_MODEL_DTYPE_F32 },
        { "float32", MFS_MODEL_DTYPE_F32 },    { "fp32", MFS_MODEL_DTYPE_F32 },
        { "bf16", MFS_MODEL_DTYPE_BF16 },      { "bfloat16", MFS_MODEL_DTYPE_BF16 },
        { "f16", MFS_MODEL_DTYPE_F16 },        { "float16", MFS_MODEL_DTYPE_F16 },
        { "fp16", MFS_MODEL_DTYPE_F16 },
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strcasecmp(v, names[i].name)) {
            *d = names[i].d;
            return 0;
        }
    }
    return -EINVAL;
}

static int load_word(const char *w, struct mfs_model_load_opts *o, unsigned *seen,
                     struct mfs_err *err)
{
    static const char *const keys[] = { "device", "dtype", "threads", "device_map",
                                        "max_memory" };
    const char *eq = strchr(w, '=');
    size_t klen;
    const char *v;
    size_t k;

    if (!eq || eq == w)
        return mfs_err_set(err, -EINVAL, "invalid load request: '%.64s' is not key=value", w);
    klen = (size_t)(eq - w);
    v = eq + 1;
    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if (strlen(keys[k]) == klen && !strncmp(w, keys[k], klen))
            break;
    if (k == sizeof(keys) / sizeof(keys[0]))
        return mfs_err_set(err, -EINVAL, "invalid load request: unknown key '%.*s'", (int)klen,
                           w);
    if (*seen & (1u << k))
        return mfs_err_set(err, -EINVAL, "invalid load request: '%s' given twice", keys[k]);
    *seen |= 1u << k;
    if (!*v)
        return mfs_err_set(err, -EINVAL, "invalid load request: '%s' has no value", keys[k]);
    switch (k) {
    case 0:
        if (strcmp(v, "cpu") && strncmp(v, "cuda", 4))
            return mfs_err_set(err, -EINVAL, "invalid load request: unknown device '%.32s' "
                               "(cpu or cuda:N)", v);
        if (strlen(v) >= sizeof(o->device))
            return mfs_err_set(err, -EINVAL, "invalid load request: device name too long");
        snprintf(o->device, sizeof(o->device), "%s", v);
        return 0;
    case 1:
        if (parse_dtype(v, &o->dtype) < 0)
            return mfs_err_set(err, -EINVAL, "invalid load request: unknown dtype '%.32s' "
                               "(auto, float32, bfloat16, float16)", v);
        return 0;
    case 2: {
        char *end;
        unsigned long long t = strtoull(v, &end, 10);

        if (*end || v[0] == '-' || v[0] == '+' || t < 1 || t > 1024)
            return mfs_err_set(err, -EINVAL, "invalid load request: threads must be 1..1024, "
                               "got '%.32s'", v);
        o->threads = (int)t;
        return 0;
    }
    case 3:
        if (strcmp(v, "auto") && strcmp(v, "cpu"))
            return mfs_err_set(err, -EINVAL, "invalid load request: device_map '%.32s' (auto "
                               "or cpu)", v);
        snprintf(o->device_map, sizeof(o->device_map), "%s", v);
        return 0;
    default:
        if (strlen(v) >= sizeof(o->max_memory))
            return mfs_err_set(err, -EINVAL, "invalid load request: max_memory too long");
        snprintf(o->max_memory, sizeof(o->max_memory), "%s", v);
        return 0;
    }
}

int mfs_model_load_opts_parse(const char *text, size_t len, struct mfs_model_load_opts *opts,
                              struct mfs_err *err)
{
    unsigned seen = 0;
    char word[256];
    size_t i = 0;
    int rc = 0;

    memset(opts, 0, sizeof(*opts));
    snprintf(opts->device, sizeof(opts->device), "cpu");
    if (!mfs_gen_text_valid(text, len))
        return mfs_err_set(err, -EINVAL, "invalid load request: not valid UTF-8");
    while (i < len && rc == 0) {
        size_t start;
        size_t wl;

        while (i < len && strchr(" \t\r\n", text[i]))
            i++;
        start = i;
        while (i < len && !strchr(" \t\r\n", text[i]))
            i++;
        wl = i - start;
        if (wl == 0)
            break;
        if (wl >= sizeof(word))
            return mfs_err_set(err, -EINVAL, "invalid load request: word too long");
        memcpy(word, text + start, wl);
        word[wl] = '\0';
        rc = load_word(word, opts, &seen, err);
    }
    return rc;
}
