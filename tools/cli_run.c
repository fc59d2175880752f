/*
 * tools/cli_run.c - `modelfs run MOUNTPOINT "prompt" [options]`: generate
 * text through the mount's control files (docs/design.md, Commands).
 *
 * It opens MOUNTPOINT/.modelfs/generate read-write, writes one JSON request
 * and copies the reply to stdout as it streams in (fs/ctl_infer.c): the
 * prompt, then the continuation token by token, like the llama2.c demo.
 * With --json the reply is the JSON object of the request instead (ids,
 * text, timings).  A rejected request fails the write with EINVAL; the
 * reason is then read from the same handle and printed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"

#define TAIL_BYTES 512                      /* reply tail kept to spot a worker's error */

static void usage(FILE *f)
{
    fputs("usage: modelfs run MOUNTPOINT \"prompt\" [--max-new-tokens N] [--temperature T]\n"
          "           [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S]\n"
          "           [--do-sample] [--stop STRING]... [--json]\n"
          "Prints the prompt and its continuation as it is generated (an empty prompt\n"
          "starts from the BOS token); --json prints the reply with token ids and\n"
          "timings instead.  Defaults come from the repo's generation_config.json.\n", f);
}

/* Add option value v as a number to the request: integers for int_key. */
static int add_number(cJSON *req, const char *key, const char *v, bool integer)
{
    char *end = NULL;
    double d;

    errno = 0;
    if (integer) {
        long long n = strtoll(v, &end, 10);

        d = (double)n;
    } else {
        d = strtod(v, &end);
    }
    if (!*v || !end || *end || errno) {
        fprintf(stderr, "modelfs: run: '%s' needs a number, got '%s'\n", key, v);
        return -EINVAL;
    }
    return cJSON_AddNumberToObject(req, key, d) ? 0 : -ENOMEM;
}

/* Parse argv into the JSON request.  OUT: *mnt.  0, or 2 (usage). */
static int parse_args(int argc, char **argv, cJSON *req, const char **mnt, bool *json)
{
    static const struct {
        const char *opt;
        const char *key;
        bool integer;
    } nums[] = {
        { "--max-new-tokens", "max_new_tokens", true },
        { "--temperature", "temperature", false },
        { "--top-k", "top_k", true },
        { "--top-p", "top_p", false },
        { "--repetition-penalty", "repetition_penalty", false },
        { "--seed", "seed", true },
    };
    const char *prompt = NULL;
    cJSON *stop = NULL;
    int i;

    *mnt = NULL;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t k;

        for (k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
            if (!strcmp(a, nums[k].opt))
                break;
        if (k < sizeof(nums) / sizeof(nums[0])) {
            if (i + 1 >= argc) {
                fprintf(stderr, "modelfs: run: %s needs a value\n", a);
                return 2;
            }
            if (add_number(req, nums[k].key, argv[++i], nums[k].integer) < 0)
                return 2;
        } else if (!strcmp(a, "--do-sample")) {
            cJSON_AddBoolToObject(req, "do_sample", true);
        } else if (!strcmp(a, "--json")) {
            *json = true;
        } else if (!strcmp(a, "--stop")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "modelfs: run: --stop needs a value\n");
                return 2;
            }
            if (!stop)
                stop = cJSON_AddArrayToObject(req, "stop");
            if (!stop || !cJSON_AddItemToArray(stop, cJSON_CreateString(argv[++i])))
                return 2;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 3;
        } else if (a[0] == '-' && a[1] == '-' && a[2]) {
            fprintf(stderr, "modelfs: run: unknown option '%s'\n", a);
            return 2;
        } else if (!*mnt) {
            *mnt = a;
        } else if (!prompt) {
            prompt = a;
        } else {
            fprintf(stderr, "modelfs: run: too many arguments ('%s')\n", a);
            return 2;
        }
    }
    if (!*mnt || !prompt) {
        usage(stderr);
        return 2;
    }
    if (!cJSON_AddStringToObject(req, "prompt", prompt))
        return 2;
    if (!*json)
        cJSON_AddBoolToObject(req, "stream", true);
    return 0;
}

/* Copy the reply to stdout as it comes.  Returns 0, or 1 when it ended with
 * a worker's "error: REASON" line (printed to stderr instead). */
static int copy_reply(int fd, const char *path)
{
    char buf[1 << 16];
    char tail[TAIL_BYTES + 1];
    size_t tail_len = 0;
    const char *line;
    ssize_t got;

    for (;;) {
        got = read(fd, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            fprintf(stderr, "modelfs: cannot read '%s': %s\n", path, strerror(errno));
            return 1;
        }
        if (got == 0)
            break;
        fwrite(buf, 1, (size_t)got, stdout);
        fflush(stdout);
        if ((size_t)got >= TAIL_BYTES) {
            memcpy(tail, buf + got - TAIL_BYTES, TAIL_BYTES);
            tail_len = TAIL_BYTES;
        } else {
            size_t keep = tail_len + (size_t)got > TAIL_BYTES ? TAIL_BYTES - (size_t)got
                                                               : tail_len;

            memmove(tail, tail + tail_len - keep, keep);
            memcpy(tail + keep, buf, (size_t)got);
            tail_len = keep + (size_t)got;
        }
    }
    tail[tail_len] = '\0';
    /* A worker that fails appends "error: REASON\n" (fs/control.h). */
    if (tail_len && tail[tail_len - 1] == '\n')
        tail[--tail_len] = '\0';
    line = strrchr(tail, '\n');
    line = line ? line + 1 : tail;
    if (!strncmp(line, "error: ", 7)) {
        fprintf(stderr, "modelfs: %s\n", line + 7);
        return 1;
    }
    return 0;
}

int mfs_cli_run(int argc, char **argv)
{
    cJSON *req = cJSON_CreateObject();
    const char *mnt = NULL;
    char path[4096];
    char reason[1024];
    bool json = false;
    char *text = NULL;
    ssize_t n;
    int fd;
    int rc;

    if (!req) {
        fputs("modelfs: out of memory\n", stderr);
        return 1;
    }
    rc = parse_args(argc, argv, req, &mnt, &json);
    if (rc) {
        rc = rc == 3 ? 0 : rc;
        goto out_delete;
    }
    text = cJSON_PrintUnformatted(req);
    if (!text) {
        fputs("modelfs: out of memory\n", stderr);
        rc = 1;
        goto out_delete;
    }
    snprintf(path, sizeof(path), "%s/.modelfs/generate", mnt);
    fd = open(path, O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "modelfs: cannot open '%s': %s%s\n", path, strerror(errno),
                errno == ENOENT ? " (is a modelfs mount there?)" : "");
        rc = 1;
        goto out_free_text;
    }
    /* One write is one request. */
    n = write(fd, text, strlen(text));
    if (n < 0) {
        int e = errno;
        ssize_t r = read(fd, reason, sizeof(reason) - 1);

        reason[r > 0 ? r : 0] = '\0';
        reason[strcspn(reason, "\n")] = '\0';
        fprintf(stderr, "modelfs: %s\n", !strncmp(reason, "error: ", 7) ? reason + 7
                                         : reason[0] ? reason : strerror(e));
        rc = 1;
        goto out_close_fd;
    }
    if ((size_t)n != strlen(text)) {
        fprintf(stderr, "modelfs: cannot write '%s': short write\n", path);
        rc = 1;
        goto out_close_fd;
    }
    rc = copy_reply(fd, path);
out_close_fd:
    close(fd);
out_free_text:
    free(text);
out_delete:
    cJSON_Delete(req);
    return rc;
}
