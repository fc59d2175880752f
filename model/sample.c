/*
 * model/sample.c - choosing the next token, as transformers 4.37's
 * generate() does: the logits processor (RepetitionPenaltyLogitsProcessor)
 * first, then when sampling the warpers TemperatureLogitsWarper,
 * TopKLogitsWarper, TopPLogitsWarper (min_tokens_to_keep 1), softmax and
 * a multinomial draw.  The random stream is our own xoshiro256** (torch's
 * generator cannot be reproduced), so a seed gives the same tokens run
 * to run and thread count to thread count, not the same as PyTorch.
 */
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mfs_model_rng_seed(struct mfs_model_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    int i;

    for (i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t mfs_model_rng_next(struct mfs_model_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double mfs_model_rng_uniform(struct mfs_model_rng *r)
{
    return (double)(mfs_model_rng_next(r) >> 11) * 0x1.0p-53;
}

struct idval {
    float v;
    int32_t id;
};

/* Descending by value, then ascending id. */
static int cmp_desc(const void *a, const void *b)
{
    const struct idval *x = a;
    const struct idval *y = b;

    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    int64_t i;

    for (i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

int mfs_model_sample(float *logits, int64_t vocab, const struct mfs_gen_params *p,
                     const int32_t *history, size_t n_hist, struct mfs_model_rng *rng,
                     int32_t *id, struct mfs_err *err)
{
    struct idval *iv = NULL;
    int64_t i;
    int64_t n_keep;
    double sum;
    double u;
    int rc = 0;

    *id = 0;
    if (vocab <= 0)
        return mfs_err_set(err, -EINVAL, "empty vocabulary");
    if (!(p->repetition_penalty > 0))
        return mfs_err_set(err, -EINVAL, "repetition_penalty must be > 0, got %g",
                           p->repetition_penalty);
    if (p->repetition_penalty != 1.0) {
        /* Each distinct id once: gather-then-scatter in transformers. */
        float pen = (float)p->repetition_penalty;
        size_t k;

        for (k = 0; k < n_hist; k++) {
            int32_t t = history[k];
            size_t j;

            if (t < 0 || t >= vocab)
                continue;
            for (j = 0; j < k && history[j] != t; j++)
                ;
            if (j < k)
                continue;
            logits[t] = logits[t] < 0 ? logits[t] * pen : logits[t] / pen;
        }
    }
    if (!p->do_sample) {
        *id = argmax(logits, vocab);
        return 0;
    }
    if (!(p->temperature > 0))
        return mfs_err_set(err, -EINVAL, "temperature must be > 0 when sampling, got %g",
                           p->temperature);
    if (p->top_k < 0 || !(p->top_p >= 0 && p->top_p <= 1))
        return mfs_err_set(err, -EINVAL, "invalid top_k %lld or top_p %g", (long long)p->top_k,
                           p->top_p);
    if (p->temperature != 1.0) {
        float t = (float)p->temperature;

        for (i = 0; i < vocab; i++)
            logits[i] = logits[i] / t;
    }
    iv = malloc((size_t)vocab * sizeof(*iv));
    if (!iv)
        return mfs_err_set(err, -ENOMEM, "cannot sample: out of memory");
    for (i = 0; i < vocab; i++) {
        iv[i].v = logits[i];
        iv[i].id = (int32_t)i;
    }
    qsort(iv, (size_t)vocab, sizeof(*iv), cmp_desc);
    n_keep = vocab;
    if (p->top_k > 0 && p->top_k < vocab) {
        /* keep every score >= the k-th largest (ties at the border stay) */
        float kth = iv[p->top_k - 1].v;

        for (n_keep = p->top_k; n_keep < vocab && iv[n_keep].v >= kth; n_keep++)
            ;
    }
    if (p->top_p < 1.0) {
        /* Remove the low tail whose cumulative probability (ascending order)
         * is <= 1 - top_p; the most likely token always stays. */
        double mx = iv[0].v;
        double total = 0;
        double cum = 0;
        int64_t cut = n_keep;

        for (i = 0; i < n_keep; i++)
            total += exp((double)iv[i].v - mx);
        for (i = n_keep - 1; i > 0; i--) {
            cum += exp((double)iv[i].v - mx) / total;
            if (cum <= 1.0 - p->top_p)
                cut = i;
            else
                break;
        }
        n_keep = cut;
    }
    sum = 0;
    for (i = 0; i < n_keep; i++)
        sum += exp((double)iv[i].v - (double)iv[0].v);
    u = mfs_model_rng_uniform(rng) * sum;
    *id = iv[n_keep - 1].id;
    for (i = 0; i < n_keep; i++) {
        u -= exp((double)iv[i].v - (double)iv[0].v);
        if (u < 0) {
            *id = iv[i].id;
            break;
        }
    }
    free(iv);
    return rc;
}
