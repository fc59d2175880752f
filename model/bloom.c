/*
 * model/bloom.c - BLOOM (transformers 4.37 modeling_bloom.py) mapped onto
 * the shared decoder of llama.c: LayerNorm after the word embeddings,
 * pre-LN blocks with LayerNorm, ALiBi instead of position embeddings,
 * gelu (tanh form), lm_head tied to the word embeddings.
 *
 * query_key_value.weight [3d, d] is fused per head: rows
 * [3*h*hd, 3*h*hd + hd) are head h's query, the next hd its key, the next
 * hd its value (the view [.., n_head, 3, head_dim]).  We gather them into
 * separate q, k, v matrices at load.  ALiBi slopes follow
 * build_alibi_tensor: 2^(-8/n * i) for the closest power of two n, plus
 * the odd powers of the next one for the remaining heads; the bias is
 * slope * key_position (softmax ignores the per-query constant).
 */
#include "model/model_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void alibi_slopes(int n_head, float *out)
{
    int closest = 1;
    double base;
    int i;

    while (closest * 2 <= n_head)
        closest *= 2;
    base = pow(2.0, -pow(2.0, -(log2((double)closest) - 3)));
    for (i = 0; i < closest; i++)
        out[i] = (float)pow(base, i + 1);
    if (closest != n_head) {
        double extra = pow(2.0, -pow(2.0, -(log2(2.0 * closest) - 3)));
        int rem = n_head - closest < closest ? n_head - closest : closest;

        for (i = 0; i < rem; i++)
            out[closest + i] = (float)pow(extra, 2 * i + 1);
    }
}

int mfs_model_bloom_load(struct mfs_model_loader *ld, struct mfs_err *err)
{
    struct mfs_model *m = ld->m;
    const struct mfs_model_config *c = &m->cfg;
    int64_t d = c->hidden_size;
    int64_t hd = c->head_dim;
    int64_t ff = c->intermediate_size;
    const unsigned vf = MFS_LOAD_F32;
    int64_t *idx[3] = { NULL, NULL, NULL };
    char name[160];
    int64_t l;
    int64_t h;
    int64_t k;
    int rc = 0;
    int p;

    m->rms = false;
    m->rope = false;
    m->gated = false;
    m->act = MFS_BE_ACT_GELU_TANH;
    ld->prefix = mfs_model_loader_find(ld, "transformer.word_embeddings.weight") ? "transformer."
                                                                                 : "";
    m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
    m->alibi = calloc((size_t)c->n_heads, sizeof(*m->alibi));
    for (p = 0; p < 3; p++)
        idx[p] = calloc((size_t)d, sizeof(*idx[p]));
    if (!m->layers || !m->alibi || !idx[0] || !idx[1] || !idx[2]) {
        rc = mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
        goto out_free_idx;
    }
    alibi_slopes((int)c->n_heads, m->alibi);
    for (p = 0; p < 3; p++)
        for (h = 0; h < c->n_heads; h++)
            for (k = 0; k < hd; k++)
                idx[p][h * hd + k] = (3 * h + p) * hd + k;
    rc = mfs_model_load_matrix(ld, "word_embeddings.weight", c->vocab_size, d, 0, 0, 0,
                               &m->tok_emb, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "word_embeddings_layernorm.weight", d, 0, 0, vf,
                                   &m->emb_ln_w, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "word_embeddings_layernorm.bias", d, 0, 0, vf,
                                   &m->emb_ln_b, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "ln_f.weight", d, 0, 0, vf, &m->lnf_w, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "ln_f.bias", d, 0, 0, vf, &m->lnf_b, err);
    if (rc >= 0)
        rc = mfs_model_load_lm_head(ld, m, err);
    if (rc < 0)
        goto out_free_idx;
    for (l = 0; l < c->n_layers && rc >= 0; l++) {
        struct mfs_layer *L = &m->layers[l];
        struct mfs_tensor *w3[3] = { &L->wq, &L->wk, &L->wv };
        float **b3[3] = { &L->bq, &L->bk, &L->bv };

#define NM(fmt) (snprintf(name, sizeof(name), "h.%lld." fmt, (long long)l), name)
        rc = mfs_model_load_vector(ld, NM("input_layernorm.weight"), d, 0, 0, vf, &L->ln1_w,
                                   err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("input_layernorm.bias"), d, 0, 0, vf, &L->ln1_b,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("post_attention_layernorm.weight"), d, 0, 0, vf,
                                       &L->ln2_w, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("post_attention_layernorm.bias"), d, 0, 0, vf,
                                       &L->ln2_b, err);
        for (p = 0; p < 3 && rc >= 0; p++) {
            rc = mfs_model_load_matrix_rows(ld, NM("self_attention.query_key_value.weight"),
                                            3 * d, d, idx[p], d, 0, w3[p], err);
            if (rc >= 0)
                rc = mfs_model_load_vector_rows(ld, NM("self_attention.query_key_value.bias"),
                                                3 * d, idx[p], d, vf, b3[p], err);
        }
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("self_attention.dense.weight"), d, d, 0, 0, 0,
                                       &L->wo, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("self_attention.dense.bias"), d, 0, 0, vf, &L->bo,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.dense_h_to_4h.weight"), ff, d, 0, 0, 0,
                                       &L->w_up, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.dense_h_to_4h.bias"), ff, 0, 0, vf, &L->b_up,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.dense_4h_to_h.weight"), d, ff, 0, 0, 0,
                                       &L->w_down, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.dense_4h_to_h.bias"), d, 0, 0, vf,
                                       &L->b_down, err);
#undef NM
    }
    if (rc > 0)
        rc = 0;

out_free_idx:
    for (p = 0; p < 3; p++)
        free(idx[p]);
    return rc < 0 ? rc : 0;
}
