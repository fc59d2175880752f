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
 * (run.sh exports it; tests never read ../shared).
 */
#ifndef MFS_TESTS_CHECK_H
#define MFS_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

static inline int check_done(void)
{
    if (check_count_ == 0) {
        printf("not ok - no checks ran\n");
        return 1;
    }
    return check_failed_ ? 1 : 0;
}

#endif
