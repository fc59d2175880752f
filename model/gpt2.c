/*
 * model/gpt2.c - GPT-2 (transformers 4.37 modeling_gpt2.py) mapped onto
 * the shared decoder of llama.c: learned positions (wpe), LayerNorm,
 * plain MLP with gelu_new, lm_head tied to wte.
 *
 * GPT-2's Conv1D stores W[in, out]; we transpose at load so the backend
 * sees W[out, in] like every other linear, and split c_attn [d, 3d] into
 * separate q, k, v matrices (columns [0,d), [d,2d), [2d,3d)).
 */
#include "model/model_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int mfs_model_gpt2_load(struct mfs_model_loader *ld, struct mfs_err *err)
{
    struct mfs_model *m = ld->m;
    const struct mfs_model_config *c = &m->cfg;
    int64_t d = c->hidden_size;
    int64_t ff = c->intermediate_size;
    char name[160];
    int64_t l;
    int rc;

    m->rms = false;
    m->rope = false;
    m->gated = false;
    switch (c->act) {
    case MFS_CFG_ACT_GELU:
        m->act = MFS_BE_ACT_GELU;
        break;
    case MFS_CFG_ACT_RELU:
        m->act = MFS_BE_ACT_RELU;
        break;
    case MFS_CFG_ACT_SILU:
        m->act = MFS_BE_ACT_SILU;
        break;
    default:
        m->act = MFS_BE_ACT_GELU_TANH;
        break;
    }
    /* Checkpoints saved from GPT2LMHeadModel prefix "transformer.", bare GPT2Model not. */
    ld->prefix = mfs_model_loader_find(ld, "transformer.wte.weight") ? "transformer." : "";
    m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
    if (!m->layers)
        return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
    rc = mfs_model_load_matrix(ld, "wte.weight", c->vocab_size, d, 0, 0, 0, &m->tok_emb, err);
    if (rc >= 0)
        rc = mfs_model_load_matrix(ld, "wpe.weight", c->max_positions, d, 0, 0, 0, &m->pos_emb,
                                   err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "ln_f.weight", d, 0, 0, MFS_LOAD_F32, &m->lnf_w, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "ln_f.bias", d, 0, 0, MFS_LOAD_F32, &m->lnf_b, err);
    if (rc >= 0)
        rc = mfs_model_load_lm_head(ld, m, err);
    if (rc < 0)
        return rc;
    for (l = 0; l < c->n_layers && rc >= 0; l++) {
        struct mfs_layer *L = &m->layers[l];
        const unsigned tf = MFS_LOAD_TRANSPOSE;
        const unsigned vf = MFS_LOAD_F32;

#define NM(fmt) (snprintf(name, sizeof(name), "h.%lld." fmt, (long long)l), name)
        rc = mfs_model_load_vector(ld, NM("ln_1.weight"), d, 0, 0, vf, &L->ln1_w, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("ln_1.bias"), d, 0, 0, vf, &L->ln1_b, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("ln_2.weight"), d, 0, 0, vf, &L->ln2_w, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("ln_2.bias"), d, 0, 0, vf, &L->ln2_b, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attn.c_attn.weight"), 3 * d, d, 0, d, tf, &L->wq,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attn.c_attn.weight"), 3 * d, d, d, d, tf, &L->wk,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attn.c_attn.weight"), 3 * d, d, 2 * d, d, tf,
                                       &L->wv, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attn.c_attn.bias"), 3 * d, 0, d, vf, &L->bq, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attn.c_attn.bias"), 3 * d, d, d, vf, &L->bk, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attn.c_attn.bias"), 3 * d, 2 * d, d, vf, &L->bv,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("attn.c_proj.weight"), d, d, 0, 0, tf, &L->wo, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("attn.c_proj.bias"), d, 0, 0, vf, &L->bo, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.c_fc.weight"), ff, d, 0, 0, tf, &L->w_up, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.c_fc.bias"), ff, 0, 0, vf, &L->b_up, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.c_proj.weight"), d, ff, 0, 0, tf, &L->w_down,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.c_proj.bias"), d, 0, 0, vf, &L->b_down, err);
#undef NM
    }
    return rc < 0 ? rc : 0;
}
