/*
 * fs/ctl_infer.c - the inference control files of a mount: .modelfs/load,
 * unload, generate, tokenize and embed (docs/design.md, Control files and
 * Inference), on top of the conversations of fs/control.h.
 *
 * One mount has one shared state (struct infer): the repo's config.json and
 * generation_config.json, its tokenizer (tokenizer.json, read once on first
 * need) and the loaded model.  The five files share it: only "load" is in
 * mfs_ctl_plugins[], and its init registers the four others on the same
 * state (mfs_ctl_add on mfs_view_ctl), so the state is made and freed once.
 *
 * Requests:
 *   load      "device=cpu dtype=bf16 threads=2" (model/gen_request.c parses
 *             it).  The write returns once the model is loaded (so
 *             `echo > load && cat generate` works in that order); a failure
 *             (unsupported architecture, missing tensor) fails the write with
 *             its errno and the reason.  Reading gives a JSON report.
 *   unload    anything: drop the model.  Requests already running keep it
 *             alive until they end (the model is reference counted).
 *   generate  plain text, or JSON (model/gen_request.h) plus our own key
 *             "stream" (true: the reply is text, as for plain text).  An
 *             empty prompt means [bos_token_id].  Text replies echo the
 *             prompt, then stream the continuation as tokens are produced
 *             (the tokenizer's streaming decode, so a UTF-8 character is
 *             never split), then a final "\n": the output reads like
 *             transformers' pipeline (return_full_text) and llama2.c.  JSON
 *             requests get one JSON object at the end: input_ids, new_ids,
 *             text (the continuation), timings.  An unloaded model is loaded
 *             with default options first.
 *   tokenize  plain text, or JSON {"text", "add_special_tokens"}: ids,
 *             tokens, decoded pieces and byte offsets as JSON.
 *   embed     plain text, or JSON {"text", "pooling": "cls"|"mean"}: the
 *             pooled vector (pooler_output when the checkpoint has a pooler)
 *             as JSON.  Encoder models only.
 * Prompt encoding follows data/golden/README.md "Prompts": the tokenizer's
 * encode(text, add_special_tokens=true), and for llama/mistral a BOS is put
 * first when the post-processor did not add one; GPT-2-style tokenizers add
 * nothing.  Everything that can be checked without the model (syntax, types,
 * ranges, UTF-8, prompt longer than max_position_embeddings, an id outside
 * the vocabulary, the wrong kind of model) fails the write with EINVAL; the
 * slow part (loading, generating, embedding) runs in a worker thread.
 *
 * Threads: FUSE workers call the handlers concurrently; infer.mu guards the
 * model slot, meta_mu the lazily read repo metadata and tokenizer.  A loaded
 * model and the tokenizer are read-only, so requests run on them at once.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/clock.h"
#include "fs/control.h"
#include "fs/view.h"
#include "model/config.h"
#include "model/gen_request.h"
#include "model/model.h"
#include "model/tokenizer.h"

#define MAX_CONFIG_BYTES (16u << 20)        /* config.json, generation_config.json */
#define MAX_TOKENIZER_BYTES (512u << 20)    /* tokenizer.json */
#define SIBLINGS 4                          /* files registered by load's init */

/* One loaded model, shared by the slot and the requests running on it. */
struct infer_model {
    struct mfs_model *m;                    /* owned */
    int refs;                               /* slot + running requests; under infer.mu */
    struct mfs_model_load_opts opts;        /* as asked */
    double seconds;                         /* wall time of the load */
};

struct infer {
    struct mfs_view *view;                  /* borrowed: the mount's view */
    pthread_mutex_t mu;                     /* guards cur, loading, load_err */
    pthread_cond_t cv;                      /* signalled when a load ends */
    struct infer_model *cur;                /* the loaded model, or NULL */
    bool loading;                           /* a load is running */
    struct mfs_err load_err;                /* last failed load, code 0 if none */
    pthread_mutex_t meta_mu;                /* guards everything below */
    bool have_meta;                         /* cfg and gen are read */
    struct mfs_model_config cfg;            /* config.json */
    struct mfs_gen_config gen;              /* generation_config.json over cfg */
    struct mfs_tok *tok;                    /* tokenizer.json, NULL until needed */
};

/* What a generate worker needs; freed by job_free. */
struct gen_job {
    struct infer *in;                       /* borrowed; outlives workers */
    const struct mfs_tok *tok;              /* borrowed from in, or NULL: no tokenizer */
    struct mfs_gen_request req;             /* parsed request (owns the stop strings) */
    struct mfs_gen_params params;           /* decoding settings; stop borrows req */
    bool text_reply;                        /* plain text / "stream": stream text */
    bool clamped;                           /* max_new_tokens was cut to the context */
    int32_t *ids;                           /* [n_prompt + room] prompt then new ids */
    size_t n_prompt;
    size_t n_ids;                           /* prompt + new so far */
    char *prompt_text;                      /* decode of the prompt (stop strings) */
    size_t prompt_text_len;
    struct mfs_tok_stream st;               /* streaming decode of the new ids */
    struct mfs_buf text;                    /* continuation text (JSON replies) */
    struct mfs_ctl_reply *reply;            /* borrowed while the worker runs */
    struct mfs_err step_err;                /* first streaming-decode failure */
};

struct embed_job {
    struct infer *in;                       /* borrowed */
    int32_t *ids;                           /* owned, [n] */
    size_t n;
    bool mean;                              /* pooling "mean" instead of CLS/pooler */
};

/* ---- repo files, config and tokenizer ----------------------------------- */

/* Read the whole repo file path (at most max bytes).  OUT: *textp
 * (NUL-terminated, free()), *lenp.  -ENOENT: not in the repo; -EINVAL: too
 * large; -EIO from the reader; -ENOMEM. */
static int read_repo_file(struct mfs_view *view, const char *path, uint64_t max, char **textp,
                          size_t *lenp, struct mfs_err *err)
{
    const struct mfs_entry *e = mfs_view_entry(view, path);
    size_t done = 0;
    char *buf;
    int rc = 0;

    *textp = NULL;
    *lenp = 0;
    if (!e)
        return mfs_err_set(err, -ENOENT, "no '%s' in the repo", path);
    if (e->size > max)
        return mfs_err_set(err, -EINVAL, "'%s' is too large (%llu bytes)", path,
                           (unsigned long long)e->size);
    buf = malloc((size_t)e->size + 1);
    if (!buf)
        return mfs_err_set(err, -ENOMEM, "cannot read '%s': out of memory", path);
    while (done < e->size) {
        ssize_t got = mfs_view_read_file(view, path, done, (size_t)e->size - done, buf + done,
                                         err);

        if (got < 0) {
            rc = (int)got;
            goto out_free_buf;
        }
        if (got == 0) {
            rc = mfs_err_set(err, -EIO, "cannot read '%s': it ends at byte %zu", path, done);
            goto out_free_buf;
        }
        done += (size_t)got;
    }
    buf[done] = '\0';
    *textp = buf;
    *lenp = done;
    return 0;

out_free_buf:
    free(buf);
    return rc;
}

/* Read config.json and generation_config.json once.  Call with meta_mu
 * held.  Failures are not remembered (a network error may pass). */
static int meta_load_locked(struct infer *in, struct mfs_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (in->have_meta)
        return 0;
    rc = read_repo_file(in->view, "config.json", MAX_CONFIG_BYTES, &text, &len, err);
    if (rc < 0)
        return mfs_err_wrap(err, rc, "cannot read the model's config");
    rc = mfs_model_config_parse(text, len, &in->cfg, err);
    free(text);
    text = NULL;
    if (rc < 0)
        return mfs_err_wrap(err, rc, "bad 'config.json'");
    if (mfs_view_entry(in->view, "generation_config.json")) {
        rc = read_repo_file(in->view, "generation_config.json", MAX_CONFIG_BYTES, &text, &len,
                            err);
        if (rc < 0)
            return rc;
    }
    rc = mfs_gen_config_parse(text, len, &in->cfg, &in->gen, err);
    free(text);
    if (rc < 0)
        return mfs_err_wrap(err, rc, "bad 'generation_config.json'");
    in->have_meta = true;
    return 0;
}

/* OUT: copies of the config and generation config. */
static int meta_get(struct infer *in, struct mfs_model_config *cfg, struct mfs_gen_config *gen,
                    struct mfs_err *err)
{
    int rc;

    pthread_mutex_lock(&in->meta_mu);
    rc = meta_load_locked(in, err);
    if (rc == 0) {
        if (cfg)
            *cfg = in->cfg;
        if (gen)
            *gen = in->gen;
    }
    pthread_mutex_unlock(&in->meta_mu);
    return rc;
}

/* The tokenizer, built from tokenizer.json on first need.  OUT: *tokp,
 * borrowed until the state is freed (a tokenizer is immutable). */
static int tok_get(struct infer *in, const struct mfs_tok **tokp, struct mfs_err *err)
{
    char *json = NULL;
    size_t len = 0;
    int rc = 0;

    *tokp = NULL;
    pthread_mutex_lock(&in->meta_mu);
    if (!in->tok) {
        rc = read_repo_file(in->view, "tokenizer.json", MAX_TOKENIZER_BYTES, &json, &len, err);
        if (rc < 0) {
            mfs_err_wrap(err, rc, "cannot read the tokenizer");
            goto out_unlock;
        }
        rc = mfs_tok_new(json, len, &in->tok, err);
        free(json);
        if (rc < 0) {
            mfs_err_wrap(err, rc, "bad 'tokenizer.json'");
            goto out_unlock;
        }
    }
    *tokp = in->tok;
out_unlock:
    pthread_mutex_unlock(&in->meta_mu);
    return rc;
}

/* Whether prompts of this model get a BOS in front (data/golden/README.md,
 * Prompts: "bos+text" for llama and mistral, "text" for GPT-2 style). */
static bool wants_bos(const struct mfs_model_config *cfg)
{
    return cfg->bos_token_id >= 0 &&
           (!strcmp(cfg->model_type, "llama") || !strcmp(cfg->model_type, "mistral"));
}

/* Prompt text to ids: encode with special tokens, BOS first where the
 * model wants one and the post-processor did not add it; "" is [BOS].
 * OUT: *idsp (free()), *np.  -EINVAL: not UTF-8, empty prompt without a
 * BOS; -ENOMEM. */
static int encode_prompt(struct infer *in, const struct mfs_model_config *cfg, const char *text,
                         size_t len, int32_t **idsp, size_t *np, struct mfs_err *err)
{
    struct mfs_tok_enc enc = MFS_TOK_ENC_INIT;
    const struct mfs_tok *tok;
    bool bos = false;
    int32_t *ids;
    int rc;

    *idsp = NULL;
    *np = 0;
    if (len == 0) {
        if (cfg->bos_token_id < 0)
            return mfs_err_set(err, -EINVAL, "invalid request: empty prompt, and the model "
                               "has no bos_token_id to start from");
        ids = malloc(sizeof(*ids));
        if (!ids)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        ids[0] = (int32_t)cfg->bos_token_id;
        *idsp = ids;
        *np = 1;
        return 0;
    }
    rc = tok_get(in, &tok, err);
    if (rc < 0)
        return rc;
    rc = mfs_tok_encode(tok, text, len, true, &enc, err);
    if (rc < 0)
        return mfs_err_wrap(err, rc, "invalid request: cannot tokenize the prompt");
    bos = wants_bos(cfg) && (enc.n == 0 || enc.ids[0] != (int32_t)cfg->bos_token_id);
    ids = malloc((enc.n + 1) * sizeof(*ids));
    if (!ids) {
        mfs_tok_enc_release(&enc);
        return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    if (bos)
        ids[0] = (int32_t)cfg->bos_token_id;
    if (enc.n)
        memcpy(ids + bos, enc.ids, enc.n * sizeof(*ids));
    *np = enc.n + bos;
    *idsp = ids;
    mfs_tok_enc_release(&enc);
    return 0;
}

/* ---- the model slot ------------------------------------------------------ */

static void model_put(struct infer *in, struct infer_model *im)
{
    int left;

    if (!im)
        return;
    pthread_mutex_lock(&in->mu);
    left = --im->refs;
    pthread_mutex_unlock(&in->mu);
    if (left == 0) {
        mfs_model_free(&im->m);
        free(im);
    }
}

static ssize_t io_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                       struct mfs_err *err)
{
    return mfs_view_read_file(ctx, path, off, len, buf, err);
}

static void io_log(void *ctx, const char *path, const struct mfs_err *err)
{
    mfs_view_log_path(ctx, path, err);
}

/* The repo files the loader needs: configs, the index files and the
 * checkpoint files the view found.  OUT: *filesp (free()), *np. */
static int load_files(struct mfs_view *view, struct mfs_ckpt_file **filesp, size_t *np,
                      struct mfs_err *err)
{
    static const char *const fixed[] = {
        "config.json", "generation_config.json", "model.safetensors",
        "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    };
    const struct mfs_ckpt *ckpt = mfs_view_ckpt(view);
    size_t cap = sizeof(fixed) / sizeof(fixed[0]) + (ckpt ? ckpt->n_files : 0);
    struct mfs_ckpt_file *files;
    size_t n = 0;
    size_t i;

    *filesp = NULL;
    *np = 0;
    files = calloc(cap, sizeof(*files));
    if (!files)
        return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
    for (i = 0; i < cap; i++) {
        size_t nf = sizeof(fixed) / sizeof(fixed[0]);
        const char *path = i < nf ? fixed[i] : ckpt->files[i - nf];
        const struct mfs_entry *e = mfs_view_entry(view, path);
        size_t k;

        if (!e)
            continue;
        for (k = 0; k < n; k++)
            if (!strcmp(files[k].path, e->path))
                break;
        if (k < n)
            continue;
        files[n].path = e->path;
        files[n].size = e->size;
        n++;
    }
    *filesp = files;
    *np = n;
    return 0;
}

/* Load a model with opts (NULL: defaults).  OUT: *imp with one reference. */
static int model_load(struct infer *in, const struct mfs_model_load_opts *opts,
                      struct infer_model **imp, struct mfs_err *err)
{
    struct mfs_ckpt_io io = { io_read, io_log, in->view };
    struct mfs_ckpt_file *files = NULL;
    struct infer_model *im;
    size_t n = 0;
    double t0 = mfs_clock_s();
    int rc;

    *imp = NULL;
    im = calloc(1, sizeof(*im));
    if (!im)
        return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
    if (opts)
        im->opts = *opts;
    else
        snprintf(im->opts.device, sizeof(im->opts.device), "cpu");
    rc = load_files(in->view, &files, &n, err);
    if (rc < 0)
        goto out_free_im;
    rc = mfs_model_load(files, n, &io, &im->opts, &im->m, err);
    free(files);
    if (rc < 0)
        goto out_free_im;
    im->seconds = mfs_clock_s() - t0;
    im->refs = 1;
    *imp = im;
    return 0;

out_free_im:
    free(im);
    return rc;
}

/* The loaded model with a reference (drop it with model_put).  opts NULL:
 * any loaded model will do, else load one with default options; opts set:
 * load anew with them and make it the loaded model.  Loads run one at a
 * time.  Errors of mfs_model_load(). */
static int model_get(struct infer *in, const struct mfs_model_load_opts *opts,
                     struct infer_model **imp, struct mfs_err *err)
{
    struct infer_model *old = NULL;
    struct infer_model *im = NULL;
    int rc;

    *imp = NULL;
    pthread_mutex_lock(&in->mu);
    while (in->loading)
        pthread_cond_wait(&in->cv, &in->mu);
    if (!opts && in->cur) {
        in->cur->refs++;
        *imp = in->cur;
        pthread_mutex_unlock(&in->mu);
        return 0;
    }
    in->loading = true;
    pthread_mutex_unlock(&in->mu);

    rc = model_load(in, opts, &im, err);

    pthread_mutex_lock(&in->mu);
    in->loading = false;
    pthread_cond_broadcast(&in->cv);
    if (rc == 0) {
        old = in->cur;
        in->cur = im;                       /* the slot's reference */
        im->refs++;                         /* the caller's */
        mfs_err_clear(&in->load_err);
        *imp = im;
    } else {
        in->load_err = err ? *err : (struct mfs_err)MFS_ERR_INIT;
        in->load_err.code = rc;
        if (!in->load_err.msg[0])
            snprintf(in->load_err.msg, sizeof(in->load_err.msg), "%s", strerror(-rc));
    }
    pthread_mutex_unlock(&in->mu);
    model_put(in, old);
    return rc;
}

/* ---- JSON helpers --------------------------------------------------------- */

static int reply_json(struct mfs_ctl_reply *r, cJSON *root, bool pretty, struct mfs_err *err)
{
    char *text = NULL;
    int rc = 0;

    if (root)
        text = pretty ? cJSON_Print(root) : cJSON_PrintUnformatted(root);
    if (!text) {
        rc = mfs_err_set(err, -ENOMEM, "cannot build the reply: out of memory");
        goto out_delete;
    }
    rc = mfs_ctl_reply_write(r, text, strlen(text));
    if (rc == 0)
        rc = mfs_ctl_reply_write(r, "\n", 1);
    if (rc < 0)
        rc = mfs_err_set(err, rc, "cannot build the reply: out of memory");
    free(text);
out_delete:
    cJSON_Delete(root);
    return rc;
}

static cJSON *ids_array(const int32_t *ids, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    size_t i;

    for (i = 0; a && i < n; i++) {
        cJSON *v = cJSON_CreateNumber(ids[i]);

        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static const char *dtype_name(enum mfs_model_dtype d)
{
    switch (d) {
    case MFS_MODEL_DTYPE_F32:
        return "float32";
    case MFS_MODEL_DTYPE_BF16:
        return "bfloat16";
    case MFS_MODEL_DTYPE_F16:
        return "float16";
    default:
        return "auto";
    }
}

/* The load report: what is loaded where, or that nothing is (and why). */
static cJSON *load_report(struct infer *in)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *dev;

    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "repo_id", mfs_view_repo_id(in->view));
    cJSON_AddStringToObject(root, "commit", mfs_view_commit(in->view));
    pthread_mutex_lock(&in->mu);
    cJSON_AddBoolToObject(root, "loaded", in->cur != NULL);
    cJSON_AddBoolToObject(root, "loading", in->loading);
    if (in->cur) {
        const struct mfs_model *m = in->cur->m;
        const struct mfs_model_config *cfg = mfs_model_get_config(m);

        cJSON_AddStringToObject(root, "model_type", cfg->model_type);
        cJSON_AddStringToObject(root, "architecture", cfg->architecture);
        cJSON_AddStringToObject(root, "device", mfs_model_device(m));
        cJSON_AddStringToObject(root, "dtype", mfs_model_weight_dtype(m));
        cJSON_AddStringToObject(root, "dtype_requested", dtype_name(in->cur->opts.dtype));
        cJSON_AddNumberToObject(root, "threads", mfs_model_threads(m));
        cJSON_AddNumberToObject(root, "bytes", (double)mfs_model_weight_bytes(m));
        dev = cJSON_AddObjectToObject(root, "bytes_per_device");
        if (dev)
            cJSON_AddNumberToObject(dev, mfs_model_device(m), (double)mfs_model_weight_bytes(m));
        cJSON_AddNumberToObject(root, "seconds", in->cur->seconds);
        cJSON_AddBoolToObject(root, "can_generate", mfs_model_can_generate(m));
    } else if (in->load_err.code) {
        cJSON_AddStringToObject(root, "error", in->load_err.msg);
    }
    pthread_mutex_unlock(&in->mu);
    return root;
}

/* ---- load, unload --------------------------------------------------------- */

static int load_request(struct mfs_view *view, void *state, const char *req, size_t len,
                        struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct infer *in = state;
    struct mfs_model_load_opts opts;
    struct infer_model *im = NULL;
    int rc;

    (void)view;
    rc = mfs_model_load_opts_parse(req, len, &opts, err);
    if (rc < 0)
        return rc;
    rc = model_get(in, &opts, &im, err);
    if (rc < 0)
        return mfs_err_wrap(err, rc, "cannot load '%s'", mfs_view_repo_id(in->view));
    model_put(in, im);
    return reply_json(reply, load_report(in), true, err);
}

static int load_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *reply,
                     struct mfs_err *err)
{
    (void)view;
    return reply_json(reply, load_report(state), true, err);
}

static int unload_request(struct mfs_view *view, void *state, const char *req, size_t len,
                          struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct infer *in = state;
    struct infer_model *old;
    cJSON *root;

    (void)view;
    (void)req;
    (void)len;
    pthread_mutex_lock(&in->mu);
    old = in->cur;
    in->cur = NULL;
    pthread_mutex_unlock(&in->mu);
    /* Requests still running hold their own reference. */
    model_put(in, old);
    root = cJSON_CreateObject();
    if (root) {
        cJSON_AddBoolToObject(root, "loaded", false);
        cJSON_AddBoolToObject(root, "unloaded", old != NULL);
    }
    return reply_json(reply, root, false, err);
}

/* ---- generate ------------------------------------------------------------- */

static void gen_job_free(void *p)
{
    struct gen_job *job = p;

    if (!job)
        return;
    mfs_gen_request_release(&job->req);
    free(job->ids);
    free(job->prompt_text);
    mfs_tok_stream_release(&job->st);
    mfs_buf_release(&job->text);
    free(job);
}

/* Our own keys of a JSON generate request, before model/gen_request.c sees
 * it: "stream" (dropped) and an empty "prompt" (it becomes input_ids
 * [bos]).  OUT: *outp: the rewritten request (free()), or NULL when it is
 * unchanged or not a JSON object (the parser reports what is wrong). */
static int gen_prepass(const char *req, size_t len, int64_t bos, char **outp, bool *stream,
                       bool *empty, struct mfs_err *err)
{
    cJSON *root;
    cJSON *it;
    bool changed = false;
    size_t i = 0;
    int rc = 0;

    *outp = NULL;
    *stream = false;
    *empty = false;
    while (i < len && strchr(" \t\r\n", req[i]))
        i++;
    if (i == len || req[i] != '{' || !mfs_gen_text_valid(req, len))
        return 0;
    root = cJSON_ParseWithLength(req, len);
    if (!root)
        return 0;
    if (!cJSON_IsObject(root))
        goto out_delete;
    it = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (it) {
        if (!cJSON_IsBool(it)) {
            rc = mfs_err_set(err, -EINVAL, "invalid request: 'stream' must be true or false");
            goto out_delete;
        }
        *stream = cJSON_IsTrue(it);
        cJSON_DeleteItemFromObjectCaseSensitive(root, "stream");
        changed = true;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (cJSON_IsString(it) && it->valuestring && !it->valuestring[0] &&
        !cJSON_GetObjectItemCaseSensitive(root, "input_ids")) {
        cJSON *ids;

        if (bos < 0) {
            rc = mfs_err_set(err, -EINVAL, "invalid request: empty prompt, and the model has "
                             "no bos_token_id to start from");
            goto out_delete;
        }
        ids = cJSON_CreateArray();
        if (!ids || !cJSON_AddItemToArray(ids, cJSON_CreateNumber((double)bos))) {
            cJSON_Delete(ids);
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            goto out_delete;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(root, "prompt");
        cJSON_AddItemToObject(root, "input_ids", ids);
        *empty = true;
        changed = true;
    }
    if (changed) {
        *outp = cJSON_PrintUnformatted(root);
        if (!*outp)
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
    }
out_delete:
    cJSON_Delete(root);
    return rc;
}

/* Flush what the stream still holds (an unfinished character at the end)
 * as the decoder gives it. */
static int stream_rest(const struct mfs_tok *tok, struct mfs_tok_stream *st, char **textp,
                       struct mfs_err *err)
{
    char *s = NULL;
    size_t slen = 0;
    int rc;

    *textp = NULL;
    if (st->n == 0)
        return 0;
    rc = mfs_tok_decode(tok, st->ids, st->n, st->skip_special, &s, &slen, err);
    if (rc < 0)
        return rc;
    if (slen > st->prefix_len && (!st->prefix_len || !memcmp(s, st->prefix, st->prefix_len))) {
        memmove(s, s + st->prefix_len, slen - st->prefix_len + 1);
        *textp = s;
        return 0;
    }
    free(s);
    return 0;
}

/* Emit text produced for the new tokens: to the reply as it comes (text
 * replies) or into job->text (JSON). */
static int gen_emit(struct gen_job *job, const char *s)
{
    size_t n = strlen(s);

    if (!n)
        return 0;
    if (job->text_reply)
        return mfs_ctl_reply_write(job->reply, s, n);
    return mfs_buf_append(&job->text, s, n);
}

static int gen_on_token(void *ctx, int32_t id, size_t index)
{
    struct gen_job *job = ctx;
    const struct mfs_tok *tok = job->tok;
    struct mfs_err err = MFS_ERR_INIT;
    char *piece = NULL;
    int rc;

    (void)index;
    job->ids[job->n_ids++] = id;
    if (tok && !job->step_err.code) {
        rc = mfs_tok_stream_step(tok, &job->st, id, &piece, &err);
        if (rc < 0) {
            /* The decoder rewrote earlier text: start the stream afresh
             * so the rest still comes out. */
            mfs_tok_stream_release(&job->st);
            mfs_tok_stream_init(&job->st, true);
            rc = mfs_tok_stream_step(tok, &job->st, id, &piece, &err);
            if (rc < 0)
                job->step_err = err;
        }
        if (piece) {
            gen_emit(job, piece);
            free(piece);
        }
    }
    return mfs_ctl_reply_cancelled(job->reply) ? 1 : 0;
}

/* Text of the new ids (for stop strings), decoded after the prompt so a
 * leading space survives the decoder's strip. */
static int gen_detok(void *ctx, const int32_t *ids, size_t n, struct mfs_buf *out,
                     struct mfs_err *err)
{
    struct gen_job *job = ctx;
    const struct mfs_tok *tok = job->tok;
    char *s = NULL;
    size_t slen = 0;
    int rc;

    (void)ids;
    (void)n;
    if (!tok)
        return 0;
    rc = mfs_tok_decode(tok, job->ids, job->n_ids, true, &s, &slen, err);
    if (rc < 0)
        return rc;
    if (slen >= job->prompt_text_len && !memcmp(s, job->prompt_text, job->prompt_text_len))
        rc = mfs_buf_append(out, s + job->prompt_text_len, slen - job->prompt_text_len);
    else
        rc = mfs_buf_append(out, s, slen);
    free(s);
    return rc < 0 ? mfs_err_set(err, rc, "out of memory") : 0;
}

static const char *stop_name(enum mfs_gen_stop_reason s, bool clamped)
{
    switch (s) {
    case MFS_GEN_STOP_EOS:
        return "eos";
    case MFS_GEN_STOP_STRING:
        return "stop_string";
    case MFS_GEN_STOP_CALLBACK:
        return "cancelled";
    case MFS_GEN_STOP_CONTEXT:
        return "context";
    default:
        return clamped ? "context" : "length";
    }
}

static int gen_work(struct mfs_ctl_reply *reply, void *arg, struct mfs_err *err)
{
    struct gen_job *job = arg;
    struct mfs_gen_callbacks cb = { gen_on_token, gen_detok, job };
    struct mfs_gen_result res = { 0 };
    struct infer_model *im = NULL;
    double t0 = mfs_clock_s();
    double load_s;
    char *rest = NULL;
    cJSON *root;
    int rc;

    job->reply = reply;
    rc = model_get(job->in, NULL, &im, err);
    if (rc < 0) {
        mfs_err_wrap(err, rc, "cannot load '%s'", mfs_view_repo_id(job->in->view));
        goto out_error;
    }
    load_s = mfs_clock_s() - t0;
    rc = mfs_model_generate(im->m, job->ids, job->n_prompt, &job->params, &cb, &res, err);
    model_put(job->in, im);
    if (rc < 0)
        goto out_error;
    if (job->tok && !job->step_err.code && stream_rest(job->tok, &job->st, &rest,
                                                            err) == 0 && rest) {
        gen_emit(job, rest);
        free(rest);
    }
    if (job->text_reply) {
        rc = mfs_ctl_reply_write(reply, "\n", 1);
        goto out_release;
    }
    root = cJSON_CreateObject();
    if (root) {
        double decode_s = res.decode_ms / 1e3;

        cJSON_AddItemToObject(root, "input_ids", ids_array(job->ids, job->n_prompt));
        cJSON_AddItemToObject(root, "new_ids", ids_array(res.ids, res.n_ids));
        if (job->tok)
            cJSON_AddStringToObject(root, "text", job->text.data ? job->text.data : "");
        else
            cJSON_AddNullToObject(root, "text");
        cJSON_AddStringToObject(root, "stop_reason", stop_name(res.stop, job->clamped));
        if (res.stop == MFS_GEN_STOP_STRING && res.stop_index >= 0 &&
            (size_t)res.stop_index < job->params.n_stop)
            cJSON_AddStringToObject(root, "stop_string", job->params.stop[res.stop_index]);
        cJSON_AddNumberToObject(root, "n_prompt_tokens", (double)job->n_prompt);
        cJSON_AddNumberToObject(root, "n_new_tokens", (double)res.n_ids);
        cJSON_AddNumberToObject(root, "load_ms", load_s * 1e3);
        cJSON_AddNumberToObject(root, "prefill_ms", res.prefill_ms);
        cJSON_AddNumberToObject(root, "decode_ms", res.decode_ms);
        cJSON_AddNumberToObject(root, "tokens_per_second",
                                decode_s > 0 && res.n_ids > 1 ? (double)(res.n_ids - 1) / decode_s
                                                              : 0);
    }
    rc = reply_json(reply, root, true, err);
out_release:
    mfs_gen_result_release(&res);
    return rc;

out_error:
    /* The framework appends "error: REASON"; start it on a line of its own
     * after streamed text (modelfs run looks for it there). */
    if (job->text_reply)
        mfs_ctl_reply_write(reply, "\n", 1);
    return rc;
}

/* Check the parsed request against the config (ids, lengths) and fill job:
 * prompt ids, decoding settings, the streaming decoder past the prompt. */
static int gen_prepare(struct infer *in, const struct mfs_model_config *cfg,
                       const struct mfs_gen_config *gen, struct gen_job *job,
                       struct mfs_err *err)
{
    const struct mfs_tok *tok = NULL;
    int32_t *prompt = NULL;
    size_t n = 0;
    int64_t max_new;
    int64_t room;
    size_t i;
    int rc;

    rc = mfs_gen_request_params(&job->req, gen, &job->params, err);
    if (rc < 0)
        return rc;
    if (job->req.prompt) {
        rc = encode_prompt(in, cfg, job->req.prompt, strlen(job->req.prompt), &prompt, &n, err);
        if (rc < 0)
            return rc;
    } else {
        n = job->req.n_ids;
        prompt = malloc((n ? n : 1) * sizeof(*prompt));
        if (!prompt)
            return mfs_err_set(err, -ENOMEM, "out of memory");
        for (i = 0; i < n; i++) {
            if (job->req.input_ids[i] < 0 || job->req.input_ids[i] >= cfg->vocab_size) {
                free(prompt);
                return mfs_err_set(err, -EINVAL, "invalid request: input_ids[%zu] = %d is "
                                   "outside the vocabulary (0..%lld)", i,
                                   (int)job->req.input_ids[i], (long long)cfg->vocab_size - 1);
            }
            prompt[i] = job->req.input_ids[i];
        }
    }
    if (n == 0) {
        free(prompt);
        return mfs_err_set(err, -EINVAL, "invalid request: the prompt has no tokens");
    }
    if (cfg->max_positions > 0 && (int64_t)n > cfg->max_positions) {
        free(prompt);
        return mfs_err_set(err, -EINVAL, "invalid request: the prompt is %zu tokens, longer "
                           "than max_position_embeddings (%lld)", n,
                           (long long)cfg->max_positions);
    }
    max_new = job->params.max_new_tokens;
    if (max_new < 0)
        max_new = gen->max_length - (int64_t)n;
    if (max_new < 0)
        max_new = 0;
    /* The context bounds the work and the memory of one request. */
    room = cfg->max_positions > 0 ? cfg->max_positions - (int64_t)n : max_new;
    if (max_new > room) {
        max_new = room;
        job->clamped = true;
    }
    job->params.max_new_tokens = max_new;
    job->ids = malloc((n + (size_t)max_new + 1) * sizeof(*job->ids));
    if (!job->ids) {
        free(prompt);
        return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    memcpy(job->ids, prompt, n * sizeof(*prompt));
    free(prompt);
    job->n_prompt = n;
    job->n_ids = n;
    /* The streaming decode starts after the prompt, so the first new
     * piece keeps its leading space. */
    mfs_tok_stream_init(&job->st, true);
    /* Requests by input_ids with a JSON reply can do without a tokenizer
     * (their "text" is null); everything else needs one. */
    rc = tok_get(in, &tok, err);
    if (rc < 0 && (job->req.prompt || job->text_reply || job->params.n_stop))
        return rc;
    mfs_err_clear(err);
    job->tok = tok;
    if (tok) {
        for (i = 0; i < n; i++) {
            char *piece = NULL;

            rc = mfs_tok_stream_step(tok, &job->st, job->ids[i], &piece, err);
            free(piece);
            if (rc < 0)
                return rc;
        }
        rc = mfs_tok_decode(tok, job->ids, n, true, &job->prompt_text, &job->prompt_text_len,
                            err);
        if (rc < 0)
            return rc;
    } else if (job->params.n_stop) {
        return mfs_err_set(err, -EINVAL, "invalid request: stop strings need 'tokenizer.json'");
    }
    return 0;
}

static int generate_request(struct mfs_view *view, void *state, const char *req, size_t len,
                            struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct infer *in = state;
    struct mfs_model_config cfg;
    struct mfs_gen_config gen;
    struct gen_job *job;
    char *rewritten = NULL;
    bool stream = false;
    bool empty = false;
    int rc;

    (void)view;
    rc = meta_get(in, &cfg, &gen, err);
    if (rc < 0)
        return rc;
    if (cfg.arch == MFS_ARCH_UNKNOWN)
        return mfs_err_set(err, -EINVAL, "cannot generate: unsupported architecture '%s'",
                           cfg.model_type[0] ? cfg.model_type : cfg.architecture);
    if (cfg.arch == MFS_ARCH_BERT)
        return mfs_err_set(err, -EINVAL, "cannot generate: '%s' is an encoder model (use "
                           "'embed')", cfg.model_type);
    job = calloc(1, sizeof(*job));
    if (!job)
        return mfs_err_set(err, -ENOMEM, "cannot take the request: out of memory");
    job->in = in;
    mfs_buf_init(&job->text);
    mfs_tok_stream_init(&job->st, true);
    if (len == 0) {
        /* `echo > generate`: start from BOS, as llama2.c does. */
        rc = gen_prepass("{\"prompt\":\"\"}", 13, cfg.bos_token_id, &rewritten, &stream, &empty,
                         err);
        stream = true;
    } else {
        rc = gen_prepass(req, len, cfg.bos_token_id, &rewritten, &stream, &empty, err);
    }
    if (rc < 0)
        goto out_free_job;
    if (rewritten)
        rc = mfs_gen_request_parse(rewritten, strlen(rewritten), &job->req, err);
    else
        rc = mfs_gen_request_parse(req, len, &job->req, err);
    free(rewritten);
    if (rc < 0)
        goto out_free_job;
    job->text_reply = !job->req.is_json || stream;
    rc = gen_prepare(in, &cfg, &gen, job, err);
    if (rc < 0)
        goto out_free_job;
    if (job->text_reply) {
        /* Echo the prompt first: the reply reads as prompt + continuation. */
        if (job->req.prompt)
            rc = mfs_ctl_reply_write(reply, job->req.prompt, strlen(job->req.prompt));
        else if (job->prompt_text)
            rc = mfs_ctl_reply_write(reply, job->prompt_text, job->prompt_text_len);
        if (rc < 0) {
            rc = mfs_err_set(err, rc, "out of memory");
            goto out_free_job;
        }
    }
    return mfs_ctl_reply_spawn(reply, gen_work, job, gen_job_free, err);

out_free_job:
    gen_job_free(job);
    return rc;
}

/* ---- tokenize, embed ---------------------------------------------------- */

/* A text request: plain text, or (first non-blank byte '{') a JSON object
 * with "text" and one optional key flag_key: a bool when flag_true is NULL,
 * else one of the strings flag_true / flag_false.  OUT: *textp (free()),
 * *lenp, *flag (set only when the key is given).  file names the request. */
static int text_request(const char *req, size_t len, const char *file, const char *flag_key,
                        const char *flag_true, const char *flag_false, char **textp,
                        size_t *lenp, bool *flag, struct mfs_err *err)
{
    const cJSON *it;
    cJSON *root;
    size_t i = 0;
    int rc = 0;

    *textp = NULL;
    *lenp = 0;
    if (!mfs_gen_text_valid(req, len))
        return mfs_err_set(err, -EINVAL, "invalid %s request: not valid UTF-8 (or has NUL "
                           "bytes)", file);
    while (i < len && strchr(" \t\r\n", req[i]))
        i++;
    if (i == len || req[i] != '{') {
        *textp = strndup(req, len);
        *lenp = len;
        return *textp ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
    }
    root = cJSON_ParseWithLength(req, len);
    if (!root || !cJSON_IsObject(root)) {
        rc = mfs_err_set(err, -EINVAL, "invalid %s request: not a JSON object (send text "
                         "that starts with '{' as {\"text\": ...})", file);
        goto out_delete;
    }
    cJSON_ArrayForEach(it, root) {
        const cJSON *prev;

        for (prev = root->child; prev != it; prev = prev->next)
            if (!strcmp(prev->string, it->string))
                break;
        if (prev != it) {
            rc = mfs_err_set(err, -EINVAL, "invalid %s request: key '%.64s' given twice", file,
                             it->string);
            goto out_delete;
        }
        if (!strcmp(it->string, "text")) {
            if (!cJSON_IsString(it) || !it->valuestring) {
                rc = mfs_err_set(err, -EINVAL, "invalid %s request: 'text' must be a string",
                                 file);
                goto out_delete;
            }
            *lenp = strlen(it->valuestring);
            *textp = strdup(it->valuestring);
            if (!*textp) {
                rc = mfs_err_set(err, -ENOMEM, "out of memory");
                goto out_delete;
            }
        } else if (!strcmp(it->string, flag_key)) {
            if (!flag_true && cJSON_IsBool(it)) {
                *flag = cJSON_IsTrue(it);
            } else if (flag_true && cJSON_IsString(it) && !strcmp(it->valuestring, flag_true)) {
                *flag = true;
            } else if (flag_true && cJSON_IsString(it) && !strcmp(it->valuestring, flag_false)) {
                *flag = false;
            } else {
                if (flag_true)
                    rc = mfs_err_set(err, -EINVAL, "invalid %s request: '%s' must be \"%s\" or "
                                     "\"%s\"", file, flag_key, flag_true, flag_false);
                else
                    rc = mfs_err_set(err, -EINVAL, "invalid %s request: '%s' must be true or "
                                     "false", file, flag_key);
                goto out_delete;
            }
        } else {
            rc = mfs_err_set(err, -EINVAL, "invalid %s request: unknown key '%.64s'", file,
                             it->string);
            goto out_delete;
        }
    }
    if (!*textp)
        rc = mfs_err_set(err, -EINVAL, "invalid %s request: no 'text'", file);
out_delete:
    if (rc < 0) {
        free(*textp);
        *textp = NULL;
    }
    cJSON_Delete(root);
    return rc;
}

static int tokenize_request(struct mfs_view *view, void *state, const char *req, size_t len,
                            struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct infer *in = state;
    struct mfs_tok_enc enc = MFS_TOK_ENC_INIT;
    const struct mfs_tok *tok;
    bool special = true;
    char *text = NULL;
    size_t tlen = 0;
    cJSON *root = NULL;
    cJSON *tokens;
    cJSON *pieces;
    cJSON *offsets;
    size_t i;
    int rc;

    (void)view;
    rc = text_request(req, len, "tokenize", "add_special_tokens", NULL, NULL, &text, &tlen,
                      &special, err);
    if (rc < 0)
        return rc;
    rc = tok_get(in, &tok, err);
    if (rc < 0)
        goto out_free_text;
    rc = mfs_tok_encode(tok, text, tlen, special, &enc, err);
    if (rc < 0) {
        mfs_err_wrap(err, rc, "invalid tokenize request");
        goto out_free_text;
    }
    root = cJSON_CreateObject();
    if (!root) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_release_enc;
    }
    cJSON_AddBoolToObject(root, "add_special_tokens", special);
    cJSON_AddNumberToObject(root, "n_tokens", (double)enc.n);
    cJSON_AddItemToObject(root, "ids", ids_array(enc.ids, enc.n));
    tokens = cJSON_AddArrayToObject(root, "tokens");
    pieces = cJSON_AddArrayToObject(root, "pieces");
    offsets = cJSON_AddArrayToObject(root, "offsets");
    for (i = 0; tokens && pieces && offsets && i < enc.n; i++) {
        double span[2] = { (double)enc.offsets[i].start, (double)enc.offsets[i].end };
        char *piece = NULL;

        cJSON_AddItemToArray(tokens, cJSON_CreateString(enc.tokens[i]));
        rc = mfs_tok_decode(tok, &enc.ids[i], 1, false, &piece, NULL, err);
        if (rc < 0)
            goto out_delete;
        cJSON_AddItemToArray(pieces, cJSON_CreateString(piece));
        free(piece);
        cJSON_AddItemToArray(offsets, cJSON_CreateDoubleArray(span, 2));
    }
    rc = reply_json(reply, root, false, err);
    root = NULL;
out_delete:
    cJSON_Delete(root);
out_release_enc:
    mfs_tok_enc_release(&enc);
out_free_text:
    free(text);
    return rc;
}

static void embed_job_free(void *p)
{
    struct embed_job *job = p;

    if (!job)
        return;
    free(job->ids);
    free(job);
}

static int embed_work(struct mfs_ctl_reply *reply, void *arg, struct mfs_err *err)
{
    struct embed_job *job = arg;
    struct infer_model *im = NULL;
    const struct mfs_model_config *cfg;
    bool has_pooler = false;
    float *vec = NULL;
    cJSON *root;
    cJSON *arr;
    int64_t i;
    int rc;

    rc = model_get(job->in, NULL, &im, err);
    if (rc < 0)
        return mfs_err_wrap(err, rc, "cannot load '%s'", mfs_view_repo_id(job->in->view));
    cfg = mfs_model_get_config(im->m);
    vec = calloc((size_t)cfg->hidden_size, sizeof(*vec));
    if (!vec) {
        rc = mfs_err_set(err, -ENOMEM, "cannot embed: out of memory");
        goto out_put;
    }
    if (job->mean)
        rc = mfs_model_embed(im->m, job->ids, job->n, MFS_MODEL_POOL_MEAN, vec, err);
    else
        rc = mfs_model_encode(im->m, job->ids, job->n, NULL, vec, &has_pooler, err);
    if (rc < 0)
        goto out_free_vec;
    root = cJSON_CreateObject();
    if (root) {
        cJSON_AddStringToObject(root, "pooling", job->mean ? "mean" : has_pooler ? "pooler"
                                                                                 : "cls");
        cJSON_AddNumberToObject(root, "n_tokens", (double)job->n);
        cJSON_AddNumberToObject(root, "dim", (double)cfg->hidden_size);
        arr = cJSON_AddArrayToObject(root, "embedding");
        for (i = 0; arr && i < cfg->hidden_size; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)vec[i]));
    }
    rc = reply_json(reply, root, false, err);
out_free_vec:
    free(vec);
out_put:
    model_put(job->in, im);
    return rc;
}

static int embed_request(struct mfs_view *view, void *state, const char *req, size_t len,
                         struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct infer *in = state;
    struct mfs_tok_enc enc = MFS_TOK_ENC_INIT;
    struct mfs_model_config cfg;
    const struct mfs_tok *tok;
    struct embed_job *job = NULL;
    bool mean = false;
    char *text = NULL;
    size_t tlen = 0;
    int rc;

    (void)view;
    rc = meta_get(in, &cfg, NULL, err);
    if (rc < 0)
        return rc;
    if (cfg.arch != MFS_ARCH_BERT)
        return mfs_err_set(err, -EINVAL, "cannot embed: '%s' is not an encoder model (bert)",
                           cfg.model_type[0] ? cfg.model_type : cfg.architecture);
    rc = text_request(req, len, "embed", "pooling", "mean", "cls", &text, &tlen, &mean, err);
    if (rc < 0)
        return rc;
    rc = tok_get(in, &tok, err);
    if (rc < 0)
        goto out_free_text;
    rc = mfs_tok_encode(tok, text, tlen, true, &enc, err);
    if (rc < 0) {
        mfs_err_wrap(err, rc, "invalid embed request");
        goto out_free_text;
    }
    if (enc.n == 0 || (cfg.max_positions > 0 && (int64_t)enc.n > cfg.max_positions)) {
        rc = mfs_err_set(err, -EINVAL, "invalid embed request: the text is %zu tokens, want "
                         "1..%lld", enc.n, (long long)cfg.max_positions);
        goto out_release_enc;
    }
    job = calloc(1, sizeof(*job));
    if (!job) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_release_enc;
    }
    job->in = in;
    job->mean = mean;
    job->n = enc.n;
    job->ids = enc.ids;                     /* taken over */
    enc.ids = NULL;
    rc = mfs_ctl_reply_spawn(reply, embed_work, job, embed_job_free, err);
out_release_enc:
    mfs_tok_enc_release(&enc);
out_free_text:
    free(text);
    return rc;
}

/* ---- registration ----------------------------------------------------------- */

static const struct mfs_ctl_handler ctl_unload = {
    "unload", unload_request, NULL, NULL, NULL,
};
static const struct mfs_ctl_handler ctl_generate = {
    "generate", generate_request, NULL, NULL, NULL,
};
static const struct mfs_ctl_handler ctl_tokenize = {
    "tokenize", tokenize_request, NULL, NULL, NULL,
};
static const struct mfs_ctl_handler ctl_embed = {
    "embed", embed_request, NULL, NULL, NULL,
};

static void infer_fini(void *state)
{
    struct infer *in = state;

    if (!in)
        return;
    if (in->cur)
        model_put(in, in->cur);
    mfs_tok_free(&in->tok);
    pthread_cond_destroy(&in->cv);
    pthread_mutex_destroy(&in->meta_mu);
    pthread_mutex_destroy(&in->mu);
    free(in);
}

/* Make the shared state and register the sibling files on it.  Nothing is
 * read here: the tree is not complete yet, and a mount must not wait for a
 * tokenizer it may never use. */
static int infer_init(struct mfs_view *view, void **statep, struct mfs_err *err)
{
    static const struct mfs_ctl_handler *const siblings[SIBLINGS] = {
        &ctl_unload, &ctl_generate, &ctl_tokenize, &ctl_embed,
    };
    struct mfs_ctl *ctl = mfs_view_ctl(view);
    struct infer *in;
    size_t i;

    *statep = NULL;
    /* All or nothing: a sibling added and then orphaned would point at
     * freed state (fs/control.h allows 64 files). */
    if (!ctl || mfs_ctl_count(ctl) + SIBLINGS + 1 > 64)
        return mfs_err_set(err, -ENOSPC, "cannot add the inference files: table full");
    in = calloc(1, sizeof(*in));
    if (!in)
        return mfs_err_set(err, -ENOMEM, "cannot make the inference files: out of memory");
    in->view = view;
    pthread_mutex_init(&in->mu, NULL);
    pthread_mutex_init(&in->meta_mu, NULL);
    pthread_cond_init(&in->cv, NULL);
    /* Once a sibling is in the table it points at in, so from here on the
     * init succeeds (load owns and frees in); a sibling that cannot be
     * added is only logged. */
    for (i = 0; i < SIBLINGS; i++) {
        struct mfs_err e = MFS_ERR_INIT;
        char path[96];

        if (mfs_ctl_add(ctl, siblings[i], in, &e) < 0) {
            snprintf(path, sizeof(path), "%s/%s", MFS_VIEW_CONTROL, siblings[i]->name);
            mfs_view_log_path(view, path, &e);
        }
    }
    *statep = in;
    return 0;
}

const struct mfs_ctl_handler mfs_ctl_load = {
    "load", load_request, load_show, infer_init, infer_fini,
};
