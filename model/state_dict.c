/*
 * model/state_dict.c - the order in which transformers' model.state_dict()
 * yields a checkpoint's tensor names (see shard.h,
 * mfs_model_state_dict_order).
 *
 * Safetensors files do not store that order (their headers are sorted by
 * dtype and name), but save_pretrained walks it when it splits a model into
 * shards, so resharding must rebuild it to come out byte-identical
 * (data/golden/sharding.json, state_dict_order).
 *
 * torch's Module.state_dict() emits a module's own parameters (in
 * registration order), then its own persistent buffers, then recurses into
 * its children in registration order.  For the architectures modelfs knows
 * that gives, per architecture, a fixed list of names before the layers,
 * the layers in numeric order each with a fixed list of leaves, a list after
 * the layers, and the task head at the root (lm_head, cls.*).  The tables
 * below spell those lists out from the transformers 4.37 module __init__
 * order (LlamaDecoderLayer: self_attn q/k/v/o, mlp gate/up/down,
 * input_layernorm, post_attention_layernorm; GPT2Block: ln_1, attn (its
 * buffers bias, masked_bias first), ln_2, mlp; ...).  The base model's
 * prefix ("model.", "transformer.", "bert.") is optional: bare LlamaModel /
 * GPT2Model / BertModel checkpoints have none.
 *
 * Anything else, and every name of an unknown architecture, comes after the
 * known names in natural order (digit runs compared as numbers, so
 * "x.2" < "x.10"); full ties are broken by strcmp, so the order is total.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "model/shard.h"

enum section {
    SEC_PRE,                                /* before the layers */
    SEC_LAYER,                              /* inside layer N */
    SEC_POST,                               /* after the layers, inside the base model */
    SEC_HEAD,                               /* the task head, at the root */
    SEC_UNKNOWN,                            /* natural order, last */
};

struct arch {
    const char *model_types[4];             /* config.json model_type values, NULL-ended */
    const char *arch_prefixes[4];           /* architectures[0] prefixes, NULL-ended */
    const char *base;                       /* optional prefix of the base model's names */
    const char *const *pre;                 /* relative to base, NULL-ended */
    const char *layer_prefix;               /* relative to base, then N, then '.' */
    const char *const *layer;               /* leaves in a layer, NULL-ended */
    const char *const *post;                /* relative to base, NULL-ended */
    const char *const *head;                /* full names, NULL-ended */
};

static const char *const llama_pre[] = { "embed_tokens.weight", NULL };
static const char *const llama_layer[] = {
    "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.weight", "self_attn.k_proj.bias",
    "self_attn.v_proj.weight", "self_attn.v_proj.bias",
    "self_attn.o_proj.weight", "self_attn.o_proj.bias",
    "mlp.gate_proj.weight", "mlp.gate_proj.bias",
    "mlp.up_proj.weight", "mlp.up_proj.bias",
    "mlp.down_proj.weight", "mlp.down_proj.bias",
    "input_layernorm.weight", "post_attention_layernorm.weight",
    NULL
};
static const char *const llama_post[] = { "norm.weight", NULL };
static const char *const lm_head[] = { "lm_head.weight", "lm_head.bias", NULL };

static const char *const gpt2_pre[] = { "wte.weight", "wpe.weight", NULL };
static const char *const gpt2_layer[] = {
    "ln_1.weight", "ln_1.bias",
    "attn.bias", "attn.masked_bias",        /* buffers, persistent in old checkpoints */
    "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias",
    "ln_2.weight", "ln_2.bias",
    "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias",
    NULL
};
static const char *const gpt2_post[] = { "ln_f.weight", "ln_f.bias", NULL };

static const char *const bert_pre[] = {
    "embeddings.position_ids", "embeddings.token_type_ids",   /* own buffers come first */
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
    NULL
};
static const char *const bert_layer[] = {
    "attention.self.query.weight", "attention.self.query.bias",
    "attention.self.key.weight", "attention.self.key.bias",
    "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias",
    NULL
};
static const char *const bert_post[] = { "pooler.dense.weight", "pooler.dense.bias", NULL };
static const char *const bert_head[] = {
    /* BertLMPredictionHead registers its own bias after its children, but
     * own parameters are emitted before children */
    "cls.predictions.bias",
    "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
    "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
    "cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
    "cls.seq_relationship.weight", "cls.seq_relationship.bias",
    "classifier.weight", "classifier.bias",
    "qa_outputs.weight", "qa_outputs.bias",
    NULL
};

static const char *const bloom_pre[] = {
    "word_embeddings.weight",
    "word_embeddings_layernorm.weight", "word_embeddings_layernorm.bias",
    NULL
};
static const char *const bloom_layer[] = {
    "input_layernorm.weight", "input_layernorm.bias",
    "self_attention.query_key_value.weight", "self_attention.query_key_value.bias",
    "self_attention.dense.weight", "self_attention.dense.bias",
    "post_attention_layernorm.weight", "post_attention_layernorm.bias",
    "mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias",
    "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias",
    NULL
};

static const struct arch arches[] = {
    { { "llama", "mistral", "qwen2", NULL }, { "Llama", "Mistral", "Qwen2", NULL }, "model.",
      llama_pre, "layers.", llama_layer, llama_post, lm_head },
    { { "gpt2", NULL }, { "GPT2", NULL }, "transformer.",
      gpt2_pre, "h.", gpt2_layer, gpt2_post, lm_head },
    { { "bert", NULL }, { "Bert", NULL }, "bert.",
      bert_pre, "encoder.layer.", bert_layer, bert_post, bert_head },
    { { "bloom", NULL }, { "Bloom", NULL }, "transformer.",
      bloom_pre, "h.", bloom_layer, gpt2_post, lm_head },
};

struct keyed {
    const char *name;                       /* borrowed from the caller */
    size_t i;                               /* index into the caller's names */
    enum section sec;
    uint64_t layer;                         /* SEC_LAYER: N */
    size_t idx;                             /* position in its table */
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Position of s in the NULL-ended list, or -1. */
static long find_in(const char *const *list, const char *s)
{
    long i;

    for (i = 0; list && list[i]; i++)
        if (!strcmp(list[i], s))
            return i;
    return -1;
}

/* The architecture of config.json: model_type, else architectures[0] as
 * <Prefix>For..., <Prefix>Model or <Prefix>LMHead...; NULL when unknown or
 * the JSON is not an object. */
static const struct arch *find_arch(const char *json, size_t len)
{
    const struct arch *found = NULL;
    const cJSON *mt;
    const cJSON *ar;
    cJSON *root;
    size_t a;
    size_t k;

    if (!json || !len)
        return NULL;
    root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root))
        goto out_delete;
    mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    ar = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (cJSON_IsString(mt)) {
        for (a = 0; !found && a < sizeof(arches) / sizeof(arches[0]); a++)
            for (k = 0; !found && arches[a].model_types[k]; k++)
                if (!strcmp(arches[a].model_types[k], mt->valuestring))
                    found = &arches[a];
        goto out_delete;                    /* a model_type we do not know stays unknown */
    }
    if (cJSON_IsArray(ar) && cJSON_IsString(cJSON_GetArrayItem(ar, 0))) {
        const char *s = cJSON_GetArrayItem(ar, 0)->valuestring;

        for (a = 0; !found && a < sizeof(arches) / sizeof(arches[0]); a++) {
            for (k = 0; !found && arches[a].arch_prefixes[k]; k++) {
                const char *p = arches[a].arch_prefixes[k];
                size_t pl = strlen(p);

                if (!strncmp(s, p, pl) && (!strncmp(s + pl, "For", 3) ||
                                           !strncmp(s + pl, "Model", 5) ||
                                           !strncmp(s + pl, "LMHead", 6)))
                    found = &arches[a];
            }
        }
    }
out_delete:
    cJSON_Delete(root);
    return found;
}

/* Fill k's section, layer and idx for its name under arch a. */
static void classify(const struct arch *a, struct keyed *k)
{
    const char *rel = k->name;
    size_t bl;
    size_t pl;
    long pos;

    k->sec = SEC_UNKNOWN;
    if (!a)
        return;
    pos = find_in(a->head, k->name);
    if (pos >= 0) {
        k->sec = SEC_HEAD;
        k->idx = (size_t)pos;
        return;
    }
    bl = strlen(a->base);
    if (!strncmp(rel, a->base, bl))
        rel += bl;
    pos = find_in(a->pre, rel);
    if (pos >= 0) {
        k->sec = SEC_PRE;
        k->idx = (size_t)pos;
        return;
    }
    pos = find_in(a->post, rel);
    if (pos >= 0) {
        k->sec = SEC_POST;
        k->idx = (size_t)pos;
        return;
    }
    pl = strlen(a->layer_prefix);
    if (!strncmp(rel, a->layer_prefix, pl) && is_digit(rel[pl])) {
        const char *p = rel + pl;
        uint64_t n = 0;
        int digits = 0;

        while (is_digit(*p) && digits < 18) {
            n = n * 10 + (uint64_t)(*p - '0');
            p++;
            digits++;
        }
        if (*p != '.')
            return;                         /* too long a number, or no leaf */
        pos = find_in(a->layer, p + 1);
        if (pos >= 0) {
            k->sec = SEC_LAYER;
            k->layer = n;
            k->idx = (size_t)pos;
        }
    }
}

/* Natural order: digit runs compare as numbers (leading zeros ignored, then
 * fewer leading zeros first), everything else bytewise. */
static int natural_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (is_digit(*a) && is_digit(*b)) {
            const char *za = a;
            const char *zb = b;
            size_t la = 0;
            size_t lb = 0;
            int c;

            while (*a == '0')
                a++;
            while (*b == '0')
                b++;
            while (is_digit(a[la]))
                la++;
            while (is_digit(b[lb]))
                lb++;
            if (la != lb)
                return la < lb ? -1 : 1;
            c = memcmp(a, b, la);
            if (c)
                return c < 0 ? -1 : 1;
            if (a - za != b - zb)
                return a - za < b - zb ? -1 : 1;
            a += la;
            b += lb;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++;
        b++;
    }
    return (unsigned char)*a < (unsigned char)*b ? -1 : (unsigned char)*a > (unsigned char)*b;
}

static int cmp_keyed(const void *pa, const void *pb)
{
    const struct keyed *a = pa;
    const struct keyed *b = pb;
    int c;

    if (a->sec != b->sec)
        return a->sec < b->sec ? -1 : 1;
    if (a->sec == SEC_LAYER && a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    if (a->sec != SEC_UNKNOWN && a->idx != b->idx)
        return a->idx < b->idx ? -1 : 1;
    c = natural_cmp(a->name, b->name);
    if (c)
        return c;
    c = strcmp(a->name, b->name);
    if (c)
        return c;
    return a->i < b->i ? -1 : a->i > b->i;
}

int mfs_model_state_dict_order(const char *config_json, size_t config_len,
                               const char *const *names, size_t n, size_t *order,
                               struct mfs_err *err)
{
    const struct arch *a;
    struct keyed *k;
    size_t i;
    int rc = 0;

    if (n && (!names || !order))
        return mfs_err_set(err, -EINVAL, "state dict order: no names or no output");
    k = calloc(n + 1, sizeof(*k));
    if (!k)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    a = find_arch(config_json, config_len);
    for (i = 0; i < n; i++) {
        if (!names[i]) {
            rc = mfs_err_set(err, -EINVAL, "state dict order: name %zu is NULL", i);
            goto out_free_keys;
        }
        k[i].name = names[i];
        k[i].i = i;
        classify(a, &k[i]);
    }
    qsort(k, n, sizeof(*k), cmp_keyed);
    for (i = 0; i < n; i++)
        order[i] = k[i].i;
out_free_keys:
    free(k);
    return rc;
}
