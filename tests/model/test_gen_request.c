/*
 * tests/model/test_gen_request.c - model/gen_request.c: .modelfs/generate
 * requests (plain text or JSON) and .modelfs/load words, good and bad.
 *
 * EVIDENCE-OF: docs/design.md "a prompt as plain text, or JSON {"prompt"
 * or "input_ids", "max_new_tokens", "do_sample", "temperature", "top_k",
 * "top_p", "repetition_penalty", "seed", "stop"}; defaults from
 * generation_config.json" and "bad control-file request: EINVAL on write,
 * the reason readable".
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "model/gen_request.h"

struct bad_row {
    const char *text;
    size_t len;                             /* 0: strlen */
    const char *reason;                     /* substring of the message */
};

static const struct bad_row bad[] = {
    { "", 0, "empty prompt" },
    { "\n", 0, "empty prompt" },
    { "caf\xc3", 0, "UTF-8" },
    { "bad \xff byte", 0, "UTF-8" },
    { "nul\0inside", 10, "UTF-8" },
    { "{", 0, "not valid JSON" },
    { "{\"prompt\": \"hi\"} trailing", 0, "after the JSON" },
    { "{}", 0, "exactly one of 'prompt' and 'input_ids'" },
    { "{\"prompt\":\"a\",\"input_ids\":[1]}", 0, "exactly one of" },
    { "{\"prompt\":\"\"}", 0, "'prompt' is empty" },
    { "{\"prompt\":5}", 0, "'prompt' must be a string" },
    { "{\"prompt\":\"a\",\"bogus\":1}", 0, "unknown key 'bogus'" },
    { "{\"prompt\":\"a\",\"prompt\":\"b\"}", 0, "given twice" },
    { "{\"input_ids\":[]}", 0, "'input_ids' is empty" },
    { "{\"input_ids\":[1,-2]}", 0, "'input_ids'[1]" },
    { "{\"input_ids\":[1,2.5]}", 0, "'input_ids'[1]" },
    { "{\"input_ids\":\"1 2\"}", 0, "array of integers" },
    { "{\"input_ids\":[1,\"2\"]}", 0, "'input_ids'[1]" },
    { "{\"prompt\":\"a\",\"max_new_tokens\":-1}", 0, "'max_new_tokens'" },
    { "{\"prompt\":\"a\",\"max_new_tokens\":1.5}", 0, "not an integer" },
    { "{\"prompt\":\"a\",\"max_new_tokens\":\"8\"}", 0, "must be an integer" },
    { "{\"prompt\":\"a\",\"temperature\":-0.5}", 0, "'temperature'" },
    { "{\"prompt\":\"a\",\"top_k\":-1}", 0, "'top_k'" },
    { "{\"prompt\":\"a\",\"top_p\":1.5}", 0, "'top_p'" },
    { "{\"prompt\":\"a\",\"top_p\":-0.1}", 0, "'top_p'" },
    { "{\"prompt\":\"a\",\"repetition_penalty\":0}", 0, "'repetition_penalty'" },
    { "{\"prompt\":\"a\",\"repetition_penalty\":-1}", 0, "'repetition_penalty'" },
    { "{\"prompt\":\"a\",\"seed\":-3}", 0, "'seed'" },
    { "{\"prompt\":\"a\",\"do_sample\":1}", 0, "'do_sample'" },
    { "{\"prompt\":\"a\",\"stop\":7}", 0, "'stop'" },
    { "{\"prompt\":\"a\",\"stop\":\"\"}", 0, "'stop'" },
    { "{\"prompt\":\"a\",\"stop\":[\"x\",3]}", 0, "'stop'[1]" },
    { "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}", 0,
      "more than 8" },
    { "{\"prompt\":\"\xc3\x28\"}", 0, "UTF-8" },
    { "{\"prompt\":\"a\"}{\"x\":1}", 0, "after the JSON" },
};

static void check_bad(void)
{
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mfs_gen_request req;
        struct mfs_err err = MFS_ERR_INIT;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        int rc = mfs_gen_request_parse(bad[i].text, len, &req, &err);

        CHECK(rc == -EINVAL && strstr(err.msg, bad[i].reason),
              "bad request %zu: -EINVAL with \"%s\" (got %d \"%s\")", i, bad[i].reason, rc,
              err.msg);
        mfs_gen_request_release(&req);
    }
}

static void check_good(void)
{
    struct mfs_gen_config gen = { 0 };
    struct mfs_gen_request req;
    struct mfs_gen_params p;
    struct mfs_err err = MFS_ERR_INIT;
    const char *j;
    int rc;

    rc = mfs_gen_request_parse("Once upon a time\n", 17, &req, &err);
    CHECK(rc == 0 && !req.is_json && !strcmp(req.prompt, "Once upon a time"),
          "plain text prompt, echo's newline dropped");
    mfs_gen_request_release(&req);
    rc = mfs_gen_request_parse("two\nlines\r\n", 11, &req, &err);
    CHECK(rc == 0 && !strcmp(req.prompt, "two\nlines"), "plain text keeps inner newlines");
    mfs_gen_request_release(&req);
    rc = mfs_gen_request_parse("caf\xc3\xa9 \xe2\x98\x83", 9, &req, &err);
    CHECK(rc == 0 && !strcmp(req.prompt, "caf\xc3\xa9 \xe2\x98\x83"), "UTF-8 prompt");
    mfs_gen_request_release(&req);

    j = " {\"prompt\":\"Hi\",\"max_new_tokens\":8,\"do_sample\":true,\"temperature\":0.7,"
        "\"top_k\":20,\"top_p\":0.9,\"repetition_penalty\":1.2,\"seed\":42,"
        "\"stop\":[\"\\n\",\"The end\"]}\n";
    rc = mfs_gen_request_parse(j, strlen(j), &req, &err);
    CHECK(rc == 0 && req.is_json && !strcmp(req.prompt, "Hi") && req.max_new_tokens == 8 &&
          req.do_sample && req.temperature == 0.7 && req.top_k == 20 && req.top_p == 0.9 &&
          req.repetition_penalty == 1.2 && req.seed == 42 && req.n_stop == 2 &&
          !strcmp(req.stop[0], "\n") && !strcmp(req.stop[1], "The end"),
          "JSON request with every key (%s)", err.msg);
    gen.max_length = 20;
    gen.max_new_tokens = -1;
    gen.temperature = 1.0;
    gen.top_k = 50;
    gen.top_p = 1.0;
    gen.repetition_penalty = 1.0;
    gen.n_eos = 1;
    gen.eos_token_id[0] = 2;
    rc = rc == 0 ? mfs_gen_request_params(&req, &gen, &p, &err) : rc;
    CHECK(rc == 0 && p.max_new_tokens == 8 && p.do_sample && p.temperature == 0.7 &&
          p.top_k == 20 && p.seed == 42 && p.n_stop == 2 && p.n_eos == 1 &&
          p.eos_token_id[0] == 2, "request settings override generation_config defaults");
    mfs_gen_request_release(&req);

    j = "{\"input_ids\":[1, 403, 407],\"stop\":\"!\"}";
    rc = mfs_gen_request_parse(j, strlen(j), &req, &err);
    CHECK(rc == 0 && !req.prompt && req.n_ids == 3 && req.input_ids[2] == 407 &&
          req.n_stop == 1, "input_ids request");
    gen.do_sample = true;
    gen.top_k = 7;
    rc = rc == 0 ? mfs_gen_request_params(&req, &gen, &p, &err) : rc;
    CHECK(rc == 0 && p.max_new_tokens == -1 && p.do_sample && p.top_k == 7,
          "unset keys keep generation_config's values");
    mfs_gen_request_release(&req);

    j = "{\"prompt\":\"a\",\"temperature\":0}";
    rc = mfs_gen_request_parse(j, strlen(j), &req, &err);
    rc = rc == 0 ? mfs_gen_request_params(&req, &gen, &p, &err) : rc;
    CHECK(rc == 0 && !p.do_sample, "temperature 0 means greedy");
    mfs_gen_request_release(&req);
    j = "{\"prompt\":\"a\",\"temperature\":0,\"do_sample\":true}";
    rc = mfs_gen_request_parse(j, strlen(j), &req, &err);
    rc = rc == 0 ? mfs_gen_request_params(&req, &gen, &p, &err) : rc;
    CHECK(rc == -EINVAL, "do_sample with temperature 0: -EINVAL \"%s\"", err.msg);
    mfs_gen_request_release(&req);
}

static void check_load(void)
{
    static const struct {
        const char *text;
        int rc;
        const char *device;
        enum mfs_model_dtype dtype;
        int threads;
    } rows[] = {
        { "", 0, "cpu", MFS_MODEL_DTYPE_AUTO, 0 },
        { "device=cpu  dtype=bf16\tthreads=2", 0, "cpu", MFS_MODEL_DTYPE_BF16, 2 },
        { "dtype=float32", 0, "cpu", MFS_MODEL_DTYPE_F32, 0 },
        { "dtype=F16 threads=1", 0, "cpu", MFS_MODEL_DTYPE_F16, 1 },
        { "device=cuda:0", 0, "cuda:0", MFS_MODEL_DTYPE_AUTO, 0 },
        { "device_map=auto max_memory=cuda:0=20GiB,cpu=64GiB", 0, "cpu", MFS_MODEL_DTYPE_AUTO,
          0 },
        { "device=tpu", -EINVAL, NULL, 0, 0 },
        { "dtype=int3", -EINVAL, NULL, 0, 0 },
        { "threads=0", -EINVAL, NULL, 0, 0 },
        { "threads=-2", -EINVAL, NULL, 0, 0 },
        { "threads=2x", -EINVAL, NULL, 0, 0 },
        { "threads=99999", -EINVAL, NULL, 0, 0 },
        { "color=red", -EINVAL, NULL, 0, 0 },
        { "dtype", -EINVAL, NULL, 0, 0 },
        { "dtype=", -EINVAL, NULL, 0, 0 },
        { "=bf16", -EINVAL, NULL, 0, 0 },
        { "dtype=bf16 dtype=f32", -EINVAL, NULL, 0, 0 },
        { "device_map=balanced", -EINVAL, NULL, 0, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct mfs_model_load_opts o;
        struct mfs_err err = MFS_ERR_INIT;
        int rc = mfs_model_load_opts_parse(rows[i].text, strlen(rows[i].text), &o, &err);

        if (rows[i].rc == 0)
            CHECK(rc == 0 && !strcmp(o.device, rows[i].device) && o.dtype == rows[i].dtype &&
                  o.threads == rows[i].threads, "load words '%s' (%s)", rows[i].text, err.msg);
        else
            CHECK(rc == rows[i].rc && err.msg[0], "load words '%s': -EINVAL \"%s\"",
                  rows[i].text, err.msg);
    }
}

int main(void)
{
    check_bad();
    check_good();
    check_load();
    return check_done();
}
