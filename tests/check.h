/*
 * tests/check.h - the C side of the test protocol (tests/run.sh).
 *
 * A test program prints one line per check: "ok - NAME" or
 * "not ok - NAME: why", and exits non-zero if any check failed.  Keep
 * cases in tables (curl unit1302.c); every bug fix adds a row.
 *
 *     CHECK(x == 3, "parse '%s'", s);
 *     return check_done();
 *
 * Test data lives in the repository: MFS_DATA is the path of data/
 * (run.sh exports it; tests read only what the repository holds).
 */
#ifndef MFS_TESTS_CHECK_H
#define MFS_TESTS_CHECK_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/err.h"

static int check_failed_;
static int check_count_;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        check_count_++;                                                       \
        if (cond) {                                                           \
            printf("ok - ");                                                  \
            printf(__VA_ARGS__);                                              \
            printf("\n");                                                     \
        } else {                                                              \
            check_failed_++;                                                  \
            printf("not ok - ");                                              \
            printf(__VA_ARGS__);                                              \
            printf(": %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                     \
        fflush(stdout);                                                       \
    } while (0)

/* Path of the repository's data/ folder (models, golden outputs). */
static inline const char *check_data_dir(void)
{
    const char *d = getenv("MFS_DATA");

    return d && *d ? d : "data";
}

/* What a test's io callback over plain files answers: up to len bytes of
 * file path from off into buf, the count (0 at the end); -ENOENT when the
 * file is missing, else -EIO, with the reason in *err. */
static inline ssize_t check_pread_file(const char *path, uint64_t off, size_t len, void *buf,
                                       struct mfs_err *err)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;

    if (fd < 0)
        return mfs_err_set(err, errno == ENOENT ? -ENOENT : -EIO, "cannot open '%s': %s",
                           path, strerror(errno));
    n = pread(fd, buf, len, (off_t)off);
    close(fd);
    return n < 0 ? mfs_err_set(err, -EIO, "cannot read '%s'", path) : n;
}

/* Whole file into memory, NUL-terminated (the NUL not counted in *len);
 * NULL when it cannot be read.  free() the result. */
static inline char *check_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (len)
        *len = 0;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        if (buf) {
            buf[n] = '\0';
            if (len)
                *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static inline int check_done(void)
{
    if (check_count_ == 0) {
        printf("not ok - no checks ran\n");
        return 1;
    }
    return check_failed_ ? 1 : 0;
}

#endif
