/*
 * model/bert.c - BERT encoder (transformers 4.37 modeling_bert.py,
 * BertModel): embeddings = LayerNorm(word + position + token_type(0)),
 * then per layer the post-LN block
 *   x = LN(x + dense(attention(x)));  x = LN(x + out(gelu(inter(x))))
 * with full (non-causal) attention, and the pooler tanh(dense(x[0])) when
 * the checkpoint has one.  Checkpoints of the BertFor... and BertLMHeadModel classes keep
 * the encoder under "bert."; the heads are ignored.
 */
#include "model/model_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mfs_model_bert_load(struct mfs_model_loader *ld, struct mfs_err *err)
{
    struct mfs_model *m = ld->m;
    const struct mfs_model_config *c = &m->cfg;
    int64_t d = c->hidden_size;
    int64_t ff = c->intermediate_size;
    const unsigned vf = MFS_LOAD_F32;
    char name[160];
    int64_t l;
    int rc;

    m->rms = false;
    m->rope = false;
    m->gated = false;
    m->act = c->act == MFS_CFG_ACT_GELU_NEW ? MFS_BE_ACT_GELU_TANH
             : c->act == MFS_CFG_ACT_RELU   ? MFS_BE_ACT_RELU
                                            : MFS_BE_ACT_GELU;
    ld->prefix = mfs_model_loader_find(ld, "embeddings.word_embeddings.weight") ? "" : "bert.";
    m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
    if (!m->layers)
        return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
    rc = mfs_model_load_matrix(ld, "embeddings.word_embeddings.weight", c->vocab_size, d, 0, 0,
                               0, &m->tok_emb, err);
    if (rc >= 0)
        rc = mfs_model_load_matrix(ld, "embeddings.position_embeddings.weight", c->max_positions,
                                   d, 0, 0, 0, &m->pos_emb, err);
    if (rc >= 0)
        rc = mfs_model_load_matrix(ld, "embeddings.token_type_embeddings.weight",
                                   c->type_vocab_size, d, 0, 0, 0, &m->type_emb, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "embeddings.LayerNorm.weight", d, 0, 0, vf, &m->emb_ln_w,
                                   err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "embeddings.LayerNorm.bias", d, 0, 0, vf, &m->emb_ln_b,
                                   err);
    if (rc >= 0)
        rc = mfs_model_load_matrix(ld, "pooler.dense.weight", d, d, 0, 0, MFS_LOAD_OPTIONAL,
                                   &m->pool_w, err);
    if (rc > 0) {
        m->has_pooler = true;
        rc = mfs_model_load_vector(ld, "pooler.dense.bias", d, 0, 0, vf, &m->pool_b, err);
    }
    for (l = 0; l < c->n_layers && rc >= 0; l++) {
        struct mfs_layer *L = &m->layers[l];

#define NM(fmt) (snprintf(name, sizeof(name), "encoder.layer.%lld." fmt, (long long)l), name)
        rc = mfs_model_load_matrix(ld, NM("attention.self.query.weight"), d, d, 0, 0, 0, &L->wq,
                                   err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attention.self.key.weight"), d, d, 0, 0, 0,
                                       &L->wk, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attention.self.value.weight"), d, d, 0, 0, 0,
                                       &L->wv, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attention.output.dense.weight"), d, d, 0, 0, 0,
                                       &L->wo, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attention.self.query.bias"), d, 0, 0, vf, &L->bq,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attention.self.key.bias"), d, 0, 0, vf, &L->bk,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attention.self.value.bias"), d, 0, 0, vf, &L->bv,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attention.output.dense.bias"), d, 0, 0, vf,
                                       &L->bo, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attention.output.LayerNorm.weight"), d, 0, 0, vf,
                                       &L->ln1_w, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attention.output.LayerNorm.bias"), d, 0, 0, vf,
                                       &L->ln1_b, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("intermediate.dense.weight"), ff, d, 0, 0, 0,
                                       &L->w_up, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("intermediate.dense.bias"), ff, 0, 0, vf, &L->b_up,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("output.dense.weight"), d, ff, 0, 0, 0, &L->w_down,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("output.dense.bias"), d, 0, 0, vf, &L->b_down, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("output.LayerNorm.weight"), d, 0, 0, vf, &L->ln2_w,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("output.LayerNorm.bias"), d, 0, 0, vf, &L->ln2_b,
                                       err);
#undef NM
    }
    return rc < 0 ? rc : 0;
}

/* Scratch of one bert forward, in backend memory. */
struct bert_buf {
    float *x;                               /* [n, d] */
    float *h;                               /* [n, d] */
    float *q;                               /* [n, d] */
    float *k;                               /* [n, d] */
    float *v;                               /* [n, d] */
    float *att;                             /* [n, d] */
    float *ff;                              /* [n, ff] */
    float *pool;                            /* [d] */
};

static int bert_layer(const struct mfs_model *m, const struct mfs_layer *L, struct bert_buf *b,
                      int64_t n)
{
    const struct mfs_model_config *c = &m->cfg;
    struct mfs_be *be = m->be;
    int64_t d = c->hidden_size;
    float eps = (float)c->norm_eps;
    struct mfs_be_attn a = { 0 };
    int rc;

    a.n_tok = (int)n;
    a.pos0 = 0;
    a.n_heads = (int)c->n_heads;
    a.n_kv_heads = (int)c->n_heads;
    a.head_dim = (int)c->head_dim;
    a.causal = 0;
    a.scale = 1.0f / sqrtf((float)c->head_dim);
    rc = mfs_be_linear(be, b->x, n, &L->wq, L->bq, b->q);
    if (rc == 0)
        rc = mfs_be_linear(be, b->x, n, &L->wk, L->bk, b->k);
    if (rc == 0)
        rc = mfs_be_linear(be, b->x, n, &L->wv, L->bv, b->v);
    if (rc == 0)
        rc = mfs_be_attention(be, b->q, b->k, b->v, &a, b->att);
    if (rc == 0)
        rc = mfs_be_linear(be, b->att, n, &L->wo, L->bo, b->h);
    if (rc == 0)
        rc = mfs_be_add(be, b->h, b->h, b->x, n * d);
    if (rc == 0)
        rc = mfs_be_layernorm(be, b->h, L->ln1_w, L->ln1_b, n, d, eps, b->x);
    if (rc == 0)
        rc = mfs_be_linear(be, b->x, n, &L->w_up, L->b_up, b->ff);
    if (rc == 0)
        rc = mfs_be_act(be, m->act, b->ff, n * c->intermediate_size);
    if (rc == 0)
        rc = mfs_be_linear(be, b->ff, n, &L->w_down, L->b_down, b->h);
    if (rc == 0)
        rc = mfs_be_add(be, b->h, b->h, b->x, n * d);
    if (rc == 0)
        rc = mfs_be_layernorm(be, b->h, L->ln2_w, L->ln2_b, n, d, eps, b->x);
    return rc;
}

int mfs_model_bert_forward(const struct mfs_model *m, const int32_t *ids, size_t n,
                           float *hidden, float *pooled, struct mfs_err *err)
{
    const struct mfs_model_config *c = &m->cfg;
    struct mfs_be *be = m->be;
    int64_t d = c->hidden_size;
    int64_t nn = (int64_t)n;
    struct bert_buf b = { 0 };
    float **bufs[] = { &b.x, &b.h, &b.q, &b.k, &b.v, &b.att };
    int32_t *aux = NULL;
    size_t i;
    int64_t l;
    int rc = 0;

    if (n == 0)
        return mfs_err_set(err, -EINVAL, "cannot encode an empty input");
    if (nn > c->max_positions)
        return mfs_err_set(err, -EINVAL, "%zu tokens exceed the model's %lld positions", n,
                           (long long)c->max_positions);
    for (i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mfs_err_set(err, -EINVAL, "token id %d outside the vocabulary of %lld",
                               (int)ids[i], (long long)c->vocab_size);
    for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]) && rc == 0; i++)
        rc = mfs_be_alloc(be, (size_t)nn * (size_t)d * 4, (void **)bufs[i], err);
    if (rc == 0)
        rc = mfs_be_alloc(be, (size_t)nn * (size_t)c->intermediate_size * 4, (void **)&b.ff,
                          err);
    if (rc == 0)
        rc = mfs_be_alloc(be, (size_t)d * 4, (void **)&b.pool, err);
    aux = calloc(n, sizeof(*aux));
    if (rc < 0 || !aux) {
        rc = rc < 0 ? rc : mfs_err_set(err, -ENOMEM, "cannot encode: out of memory");
        goto out_free;
    }
    rc = mfs_be_embedding(be, &m->tok_emb, ids, nn, b.x);
    for (i = 0; i < n; i++)
        aux[i] = (int32_t)i;
    if (rc == 0)
        rc = mfs_be_embedding(be, &m->pos_emb, aux, nn, b.h);
    if (rc == 0)
        rc = mfs_be_add(be, b.x, b.x, b.h, nn * d);
    memset(aux, 0, n * sizeof(*aux));
    if (rc == 0)
        rc = mfs_be_embedding(be, &m->type_emb, aux, nn, b.h);
    if (rc == 0)
        rc = mfs_be_add(be, b.x, b.x, b.h, nn * d);
    if (rc == 0)
        rc = mfs_be_layernorm(be, b.x, m->emb_ln_w, m->emb_ln_b, nn, d, (float)c->norm_eps, b.x);
    for (l = 0; l < c->n_layers && rc == 0; l++)
        rc = bert_layer(m, &m->layers[l], &b, nn);
    if (rc == 0 && hidden)
        rc = mfs_be_download(be, hidden, b.x, (size_t)nn * (size_t)d * 4);
    if (rc == 0 && pooled) {
        if (m->has_pooler) {
            rc = mfs_be_linear(be, b.x, 1, &m->pool_w, m->pool_b, b.pool);
            if (rc == 0)
                rc = mfs_be_act(be, MFS_BE_ACT_TANH, b.pool, d);
            if (rc == 0)
                rc = mfs_be_download(be, pooled, b.pool, (size_t)d * 4);
        } else {
            rc = mfs_be_download(be, pooled, b.x, (size_t)d * 4);
        }
    }
    if (rc < 0)
        mfs_err_set(err, rc, "encoder forward failed on '%s'", be->ops->name);

out_free:
    free(aux);
    for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        mfs_be_free(be, *bufs[i]);
    mfs_be_free(be, b.ff);
    mfs_be_free(be, b.pool);
    return rc;
}
