/*
 * tests/model/test_sample.c - model/sample.c: the PRNG, greedy ties,
 * repetition penalty, temperature, top-k, top-p and the multinomial draw
 * (transformers 4.37 logits processors and warpers, in that order).
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "check.h"
#include "model/model.h"

static void base_params(struct mfs_gen_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = 1.0;
    p->top_p = 1.0;
    p->repetition_penalty = 1.0;
}

static void check_rng(void)
{
    struct mfs_model_rng a;
    struct mfs_model_rng b;
    int same = 1;
    int in_range = 1;
    int i;

    mfs_model_rng_seed(&a, 7);
    mfs_model_rng_seed(&b, 7);
    for (i = 0; i < 1000; i++) {
        double u = mfs_model_rng_uniform(&a);

        same = same && u == mfs_model_rng_uniform(&b);
        in_range = in_range && u >= 0 && u < 1;
    }
    CHECK(same && in_range, "same seed, same uniform stream in [0, 1)");
    mfs_model_rng_seed(&b, 8);
    CHECK(mfs_model_rng_next(&a) != mfs_model_rng_next(&b), "another seed, another stream");
    mfs_model_rng_seed(&a, 0);
    CHECK(a.s[0] | a.s[1] | a.s[2] | a.s[3], "seed 0 gives a non-zero state");
}

static void check_greedy(void)
{
    struct mfs_gen_params p;
    struct mfs_err err = MFS_ERR_INIT;
    float l[6] = { 0.5f, 2.0f, -1.0f, 2.0f, 1.9f, -3.0f };
    int32_t hist[2] = { 1, 1 };
    int32_t id = -1;
    int rc;

    base_params(&p);
    rc = mfs_model_sample(l, 6, &p, NULL, 0, NULL, &id, &err);
    CHECK(rc == 0 && id == 1, "greedy: exact tie goes to the lowest id (%d)", id);
    /* penalty 2: 2.0 -> 1.0 for id 1 (counted once though it appears twice); -1.0 -> -2.0 */
    p.repetition_penalty = 2.0;
    hist[1] = 2;
    rc = mfs_model_sample(l, 6, &p, hist, 2, NULL, &id, &err);
    CHECK(rc == 0 && id == 3 && l[1] == 1.0f && l[2] == -2.0f && l[3] == 2.0f,
          "repetition penalty divides positive and multiplies negative scores, once per id");
    p.repetition_penalty = 0;
    rc = mfs_model_sample(l, 6, &p, hist, 2, NULL, &id, &err);
    CHECK(rc == -EINVAL, "repetition_penalty 0: -EINVAL \"%s\"", err.msg);
}

/* Frequencies of 20000 draws from logits l[n] under p. */
static void freq(const float *l, int n, const struct mfs_gen_params *p, uint64_t seed,
                 double *f)
{
    struct mfs_model_rng rng;
    struct mfs_err err = MFS_ERR_INIT;
    float work[8];
    int i;

    mfs_model_rng_seed(&rng, seed);
    memset(f, 0, (size_t)n * sizeof(*f));
    for (i = 0; i < 20000; i++) {
        int32_t id = -1;

        memcpy(work, l, (size_t)n * sizeof(float));
        if (mfs_model_sample(work, n, p, NULL, 0, &rng, &id, &err) == 0 && id >= 0 && id < n)
            f[id] += 1.0 / 20000;
    }
}

static void check_sampling(void)
{
    const float l[4] = { 0.0f, logf(2.0f), logf(3.0f), logf(4.0f) };  /* probs 1:2:3:4 */
    struct mfs_gen_params p;
    double f[4];
    int i;
    int ok;

    base_params(&p);
    p.do_sample = true;
    freq(l, 4, &p, 1, f);
    for (ok = 1, i = 0; i < 4; i++)
        ok = ok && fabs(f[i] - (i + 1) / 10.0) < 0.015;
    CHECK(ok, "multinomial draw follows softmax: %.3f %.3f %.3f %.3f", f[0], f[1], f[2], f[3]);
    p.temperature = 0.5;                   /* probs ^2: 1:4:9:16 */
    freq(l, 4, &p, 2, f);
    for (ok = 1, i = 0; i < 4; i++)
        ok = ok && fabs(f[i] - (double)(i + 1) * (i + 1) / 30.0) < 0.015;
    CHECK(ok, "temperature 0.5 squares the odds: %.3f %.3f %.3f %.3f", f[0], f[1], f[2], f[3]);
    p.temperature = 1.0;
    p.top_k = 2;                           /* keep ids 3, 2: 3:4 */
    freq(l, 4, &p, 3, f);
    CHECK(f[0] == 0 && f[1] == 0 && fabs(f[2] - 3.0 / 7) < 0.015,
          "top_k 2 keeps the two best: %.3f %.3f %.3f %.3f", f[0], f[1], f[2], f[3]);
    p.top_k = 0;
    p.top_p = 0.65;                        /* ascending cum: .1 .3 .6 1; drop <= .35: ids 0,1 */
    freq(l, 4, &p, 4, f);
    CHECK(f[0] == 0 && f[1] == 0 && fabs(f[3] - 4.0 / 7) < 0.015,
          "top_p 0.65 drops the tail with cumulative prob <= 0.35: %.3f %.3f %.3f %.3f", f[0],
          f[1], f[2], f[3]);
    p.top_p = 0.0;
    freq(l, 4, &p, 5, f);
    CHECK(f[0] == 0 && f[1] == 0 && f[2] == 0 && f[3] > 0.999,
          "top_p 0 keeps only the most likely token");
    {
        const float tie[4] = { 1.0f, 1.0f, 1.0f, 0.0f };

        p.top_p = 1.0;
        p.top_k = 1;                       /* ties at the k-th value stay (scores < kth removed) */
        freq(tie, 4, &p, 6, f);
        CHECK(f[3] == 0 && f[0] > 0.25 && f[1] > 0.25 && f[2] > 0.25,
              "top_k keeps every token tied with the k-th: %.3f %.3f %.3f", f[0], f[1], f[2]);
    }
    {
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_model_rng rng;
        float w[4];
        int32_t id;
        int rc;

        mfs_model_rng_seed(&rng, 1);
        memcpy(w, l, sizeof(w));
        p.top_k = 0;
        p.temperature = 0;
        rc = mfs_model_sample(w, 4, &p, NULL, 0, &rng, &id, &err);
        CHECK(rc == -EINVAL, "sampling with temperature 0: -EINVAL \"%s\"", err.msg);
    }
}

int main(void)
{
    check_rng();
    check_greedy();
    check_sampling();
    return check_done();
}
