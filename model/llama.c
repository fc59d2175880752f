/*
 * model/llama.c - Llama, Mistral and Qwen2 (transformers 4.37
 * modeling_llama.py / modeling_mistral.py / modeling_qwen2.py), and the
 * pre-norm decoder forward they share with GPT-2 and BLOOM (gpt2.c and
 * bloom.c map their tensors onto the same layer struct).
 *
 * Per layer, for new tokens x[n, d] at positions p0..p0+n-1:
 *   h = norm1(x); q = h Wq^T (+bq); k, v likewise, written straight into
 *   the cache rows p0..; RoPE on q and k (llama family); att =
 *   attention(q, cache) with GQA, causal, sliding window (mistral);
 *   x += att Wo^T (+bo); h = norm2(x); x += MLP(h), where the MLP is
 *   down(act(gate(h)) * up(h)) (SwiGLU) or proj(act(fc(h))) (gpt2).
 * Then the final norm and lm_head (tied: the token embedding).  Learned
 * positions (gpt2) are added to the token embeddings; bloom normalizes the
 * embeddings and adds ALiBi slope*key_position to the attention scores.
 */
#include "model/model_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum mfs_be_act be_act(enum mfs_cfg_act a)
{
    switch (a) {
    case MFS_CFG_ACT_GELU:
        return MFS_BE_ACT_GELU;
    case MFS_CFG_ACT_GELU_NEW:
        return MFS_BE_ACT_GELU_TANH;
    case MFS_CFG_ACT_RELU:
        return MFS_BE_ACT_RELU;
    default:
        return MFS_BE_ACT_SILU;
    }
}

int mfs_model_llama_load(struct mfs_model_loader *ld, struct mfs_err *err)
{
    struct mfs_model *m = ld->m;
    const struct mfs_model_config *c = &m->cfg;
    int64_t d = c->hidden_size;
    int64_t qd = c->n_heads * c->head_dim;
    int64_t kvd = c->n_kv_heads * c->head_dim;
    int64_t ff = c->intermediate_size;
    unsigned bias = c->attention_bias ? 0 : MFS_LOAD_OPTIONAL;
    char name[160];
    int64_t l;
    int rc;

    m->rms = true;
    m->rope = true;
    m->gated = true;
    m->act = be_act(c->act);
    m->layers = calloc((size_t)c->n_layers, sizeof(*m->layers));
    if (!m->layers)
        return mfs_err_set(err, -ENOMEM, "cannot load model: out of memory");
    rc = mfs_model_load_matrix(ld, "model.embed_tokens.weight", c->vocab_size, d, 0, 0, 0,
                               &m->tok_emb, err);
    if (rc >= 0)
        rc = mfs_model_load_vector(ld, "model.norm.weight", d, 0, 0, MFS_LOAD_F32, &m->lnf_w,
                                   err);
    if (rc >= 0)
        rc = mfs_model_load_lm_head(ld, m, err);
    if (rc < 0)
        return rc;
    for (l = 0; l < c->n_layers && rc >= 0; l++) {
        struct mfs_layer *L = &m->layers[l];

#define NM(fmt) (snprintf(name, sizeof(name), "model.layers.%lld." fmt, (long long)l), name)
        rc = mfs_model_load_vector(ld, NM("input_layernorm.weight"), d, 0, 0, MFS_LOAD_F32,
                                   &L->ln1_w, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("post_attention_layernorm.weight"), d, 0, 0,
                                       MFS_LOAD_F32, &L->ln2_w, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("self_attn.q_proj.weight"), qd, d, 0, 0, 0, &L->wq,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("self_attn.k_proj.weight"), kvd, d, 0, 0, 0,
                                       &L->wk, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("self_attn.v_proj.weight"), kvd, d, 0, 0, 0,
                                       &L->wv, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("self_attn.o_proj.weight"), d, qd, 0, 0, 0, &L->wo,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("self_attn.q_proj.bias"), qd, 0, 0,
                                       bias | MFS_LOAD_F32, &L->bq, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("self_attn.k_proj.bias"), kvd, 0, 0,
                                       bias | MFS_LOAD_F32, &L->bk, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("self_attn.v_proj.bias"), kvd, 0, 0,
                                       bias | MFS_LOAD_F32, &L->bv, err);
        /* llama's attention_bias covers o_proj too; qwen2 has none there. */
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("self_attn.o_proj.bias"), d, 0, 0,
                                       MFS_LOAD_OPTIONAL | MFS_LOAD_F32, &L->bo, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.gate_proj.weight"), ff, d, 0, 0, 0,
                                       &L->w_gate, err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.up_proj.weight"), ff, d, 0, 0, 0, &L->w_up,
                                       err);
        if (rc >= 0)
            rc = mfs_model_load_matrix(ld, NM("mlp.down_proj.weight"), d, ff, 0, 0, 0,
                                       &L->w_down, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.gate_proj.bias"), ff, 0, 0,
                                       MFS_LOAD_OPTIONAL | MFS_LOAD_F32, &L->b_gate, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.up_proj.bias"), ff, 0, 0,
                                       MFS_LOAD_OPTIONAL | MFS_LOAD_F32, &L->b_up, err);
        if (rc >= 0)
            rc = mfs_model_load_vector(ld, NM("mlp.down_proj.bias"), d, 0, 0,
                                       MFS_LOAD_OPTIONAL | MFS_LOAD_F32, &L->b_down, err);
#undef NM
    }
    return rc < 0 ? rc : 0;
}

static int norm(const struct mfs_model *m, const float *x, const float *w, const float *b,
                int64_t n, float *y)
{
    const struct mfs_model_config *c = &m->cfg;

    if (m->rms)
        return mfs_be_rmsnorm(m->be, x, w, n, c->hidden_size, (float)c->norm_eps, y);
    return mfs_be_layernorm(m->be, x, w, b, n, c->hidden_size, (float)c->norm_eps, y);
}

static int layer_forward(const struct mfs_model *m, struct mfs_model_state *s, int64_t l,
                         int64_t n)
{
    const struct mfs_model_config *c = &m->cfg;
    const struct mfs_layer *L = &m->layers[l];
    struct mfs_be *be = m->be;
    int64_t d = c->hidden_size;
    int64_t kvd = c->n_kv_heads * c->head_dim;
    int64_t ff = c->intermediate_size;
    int64_t p0 = s->n_past;
    float *kc = s->kc[l] + p0 * kvd;
    float *vc = s->vc[l] + p0 * kvd;
    const struct mfs_tensor *qkv_w[3] = { &L->wq, &L->wk, &L->wv };
    const float *qkv_b[3] = { L->bq, L->bk, L->bv };
    float *qkv_y[3] = { s->q, kc, vc };
    const struct mfs_tensor *gu_w[2] = { &L->w_gate, &L->w_up };
    const float *gu_b[2] = { L->b_gate, L->b_up };
    float *gu_y[2] = { s->ff1, s->ff2 };
    struct mfs_be_attn a = { 0 };
    int rc;

    /* q, and k, v straight into the cache rows, as one parallel job */
    rc = norm(m, s->x, L->ln1_w, L->ln1_b, n, s->h);
    if (rc == 0)
        rc = mfs_be_linear_multi(be, s->h, n, 3, qkv_w, qkv_b, qkv_y);
    if (rc == 0 && m->rope) {
        rc = mfs_be_rope(be, s->q, n, (int)c->n_heads, (int)c->head_dim, p0, s->inv_freq);
        if (rc == 0)
            rc = mfs_be_rope(be, kc, n, (int)c->n_kv_heads, (int)c->head_dim, p0, s->inv_freq);
    }
    if (rc < 0)
        return rc;
    a.n_tok = (int)n;
    a.pos0 = (int)p0;
    a.n_heads = (int)c->n_heads;
    a.n_kv_heads = (int)c->n_kv_heads;
    a.head_dim = (int)c->head_dim;
    a.causal = 1;
    a.window = (int)c->sliding_window;
    a.scale = 1.0f / sqrtf((float)c->head_dim);
    a.alibi = m->alibi;
    if (c->arch == MFS_ARCH_GPT2) {
        if (!c->scale_attn_weights)
            a.scale = 1.0f;
        if (c->scale_attn_by_inverse_layer_idx)
            a.scale /= (float)(l + 1);
    }
    rc = mfs_be_attention(be, s->q, s->kc[l], s->vc[l], &a, s->att);
    if (rc == 0)
        rc = mfs_be_linear(be, s->att, n, &L->wo, L->bo, s->h);
    if (rc == 0)
        rc = mfs_be_add(be, s->x, s->x, s->h, n * d);
    if (rc == 0)
        rc = norm(m, s->x, L->ln2_w, L->ln2_b, n, s->h);
    if (rc < 0)
        return rc;
    if (m->gated) {
        rc = mfs_be_linear_multi(be, s->h, n, 2, gu_w, gu_b, gu_y);
        if (rc == 0)
            rc = mfs_be_act(be, m->act, s->ff1, n * ff);
        if (rc == 0)
            rc = mfs_be_mul(be, s->ff1, s->ff1, s->ff2, n * ff);
    } else {
        rc = mfs_be_linear(be, s->h, n, &L->w_up, L->b_up, s->ff1);
        if (rc == 0)
            rc = mfs_be_act(be, m->act, s->ff1, n * ff);
    }
    if (rc == 0)
        rc = mfs_be_linear(be, s->ff1, n, &L->w_down, L->b_down, s->h);
    if (rc == 0)
        rc = mfs_be_add(be, s->x, s->x, s->h, n * d);
    return rc;
}

int mfs_model_decoder_forward(const struct mfs_model *m, struct mfs_model_state *s,
                              const int32_t *ids, size_t n, unsigned flags, float *logits,
                              struct mfs_err *err)
{
    const struct mfs_model_config *c = &m->cfg;
    struct mfs_be *be = m->be;
    int64_t d = c->hidden_size;
    int64_t nn = (int64_t)n;
    int64_t n_out = (flags & MFS_MODEL_ALL_LOGITS) ? nn : 1;
    float *dlogits = NULL;
    int32_t *pos = NULL;
    size_t i;
    int64_t l;
    int rc;

    if (n == 0)
        return mfs_err_set(err, -EINVAL, "forward of zero tokens");
    if (s->n_past + nn > s->max_tokens)
        return mfs_err_set(err, -EINVAL, "%zu more tokens overflow the cache of %lld "
                           "(%lld used)", n, (long long)s->max_tokens, (long long)s->n_past);
    for (i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return mfs_err_set(err, -EINVAL, "token id %d outside the vocabulary of %lld",
                               (int)ids[i], (long long)c->vocab_size);
    rc = mfs_model_state_reserve(s, nn, err);
    if (rc < 0)
        return rc;
    /* One token's logits live in the state; all positions' are per call. */
    if (n_out == 1 && !s->logits)
        rc = mfs_be_alloc(be, (size_t)c->vocab_size * sizeof(float), (void **)&s->logits, err);
    if (rc < 0)
        return rc;
    if (n_out == 1)
        dlogits = s->logits;
    else
        rc = mfs_be_alloc(be, (size_t)n_out * (size_t)c->vocab_size * sizeof(float),
                          (void **)&dlogits, err);
    if (rc < 0)
        return rc;
    rc = mfs_be_embedding(be, &m->tok_emb, ids, nn, s->x);
    if (rc == 0 && m->pos_emb.data) {
        pos = malloc(n * sizeof(*pos));
        if (!pos) {
            rc = -ENOMEM;
            goto out_fail;
        }
        for (i = 0; i < n; i++)
            pos[i] = (int32_t)(s->n_past + (int64_t)i);
        rc = mfs_be_embedding(be, &m->pos_emb, pos, nn, s->h);
        if (rc == 0)
            rc = mfs_be_add(be, s->x, s->x, s->h, nn * d);
    }
    if (rc == 0 && m->emb_ln_w)
        rc = mfs_be_layernorm(be, s->x, m->emb_ln_w, m->emb_ln_b, nn, d, (float)c->norm_eps,
                              s->x);
    if (m->rope)
        mfs_model_config_inv_freq(c, s->n_past + nn, s->inv_freq);
    for (l = 0; l < c->n_layers && rc == 0; l++)
        rc = layer_forward(m, s, l, nn);
    if (rc == 0)
        rc = norm(m, s->x + (nn - n_out) * d, m->lnf_w, m->lnf_b, n_out, s->h);
    if (rc == 0)
        rc = mfs_be_linear(be, s->h, n_out, &m->lm_head, NULL, dlogits);
    if (rc == 0)
        rc = mfs_be_download(be, logits, dlogits,
                             (size_t)n_out * (size_t)c->vocab_size * sizeof(float));
    if (rc < 0)
        goto out_fail;
    s->n_past += nn;
    free(pos);
    if (dlogits != s->logits)
        mfs_be_free(be, dlogits);
    return 0;

out_fail:
    free(pos);
    if (dlogits != s->logits)
        mfs_be_free(be, dlogits);
    return mfs_err_set(err, rc, "forward failed on '%s'", be->ops->name);
}
