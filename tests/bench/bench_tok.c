/*
 * tests/bench/bench_tok.c - tokenizer encode throughput (model/tokenizer.c).
 *
 * For each of the five tokenizer.json files in data/models: encode the
 * 2 KB English paragraph of the golden corpus (line 171 of
 * data/golden/tokenizer-corpus.txt) repeated to about 64 KB, several
 * times, and print MB of input text per CPU second.  Also the single-paragraph rate,
 * which is what generation prompts look like.  There is no baseline
 * program on this machine (the reference is Rust/Python), so the line
 * carries only our figure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "check.h"
#include "model/tokenizer.h"

#define slurp check_slurp

static double now_s(void)
{
    struct timespec ts;

    /* CPU time of this process: the figures stay meaningful on a machine
     * shared with parallel builds (the encode is single-threaded). */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The text of corpus line `want` (0-based): each line is a JSON string. */
static char *corpus_line(const char *data_dir, int want)
{
    char path[512];
    size_t len = 0;
    char *all;
    char *line;
    char *save = NULL;
    char *out = NULL;
    int n = 0;

    snprintf(path, sizeof(path), "%s/golden/tokenizer-corpus.txt", data_dir);
    all = slurp(path, &len);
    for (line = all ? strtok_r(all, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save), n++) {
        if (n == want) {
            cJSON *s = cJSON_Parse(line);

            if (cJSON_IsString(s))
                out = strdup(s->valuestring);
            cJSON_Delete(s);
            break;
        }
    }
    free(all);
    return out;
}

static double rate(const struct mfs_tok *tok, const char *text, size_t len, int reps,
                   size_t *ntok)
{
    double t0 = now_s();
    double dt;
    int r;

    for (r = 0; r < reps; r++) {
        struct mfs_tok_enc e = MFS_TOK_ENC_INIT;

        if (mfs_tok_encode(tok, text, len, true, &e, NULL) < 0)
            return -1;
        *ntok = e.n;
        mfs_tok_enc_release(&e);
    }
    dt = now_s() - t0;
    return dt > 0 ? (double)len * reps / dt / 1e6 : 0;
}

int main(int argc, char **argv)
{
    static const char *const names[] = {
        "bert-tiniest", "fake-gpt2", "stories260K-hf", "tiny-random-bloom",
        "tokenizer-phi3-mini",
    };
    const char *data = getenv("MFS_DATA");
    char *para;
    char *big;
    size_t plen;
    size_t blen = 0;
    size_t i;
    int rc = 0;

    if (!data || !*data)
        data = "data";
    para = corpus_line(data, 171);
    if (!para) {
        fprintf(stderr, "bench_tok: cannot read corpus line 171 under %s\n", data);
        return 1;
    }
    plen = strlen(para);
    big = malloc(plen * 33 + 1);
    if (!big)
        return 1;
    for (i = 0; i < 32; i++) {
        memcpy(big + blen, para, plen);
        blen += plen;
        big[blen++] = ' ';
    }
    big[blen] = 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[512];
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_tok *tok = NULL;
        size_t jlen = 0;
        size_t n1 = 0;
        size_t n2 = 0;
        char *json;
        double t0;
        double load_ms;
        double r1;
        double r2;

        if (argc > 1 && !strstr(names[i], argv[1]))
            continue;                       /* bench_tok NAME: only that tokenizer */
        snprintf(path, sizeof(path), "%s/models/%s/tokenizer.json", data, names[i]);
        json = slurp(path, &jlen);
        t0 = now_s();
        if (!json || mfs_tok_new(json, jlen, &tok, &err) < 0) {
            fprintf(stderr, "bench_tok: %s: %s\n", names[i], json ? err.msg : "unreadable");
            free(json);
            rc = 1;
            continue;
        }
        load_ms = (now_s() - t0) * 1e3;
        free(json);
        r1 = rate(tok, para, plen, 50, &n1);
        r2 = rate(tok, big, blen, 3, &n2);
        printf("tok encode %s: ours %.2f MB/s on a %zu-byte paragraph (%zu tokens), "
               "%.2f MB/s on %zu bytes; load %.0f ms\n",
               names[i], r1, plen, n1, r2, blen, load_ms);
        mfs_tok_free(&tok);
    }
    free(big);
    free(para);
    return rc;
}
