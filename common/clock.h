/*
 * common/clock.h - elapsed time for timeouts, pauses and the seconds the
 * control files report: CLOCK_MONOTONIC, which wall-clock steps (NTP, a
 * user's date) do not move.  Timed waits on a pthread condition use
 * CLOCK_REALTIME deadlines instead and build them where they wait.
 */
#ifndef MFS_COMMON_CLOCK_H
#define MFS_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since an arbitrary start (CLOCK_MONOTONIC). */
static inline int64_t mfs_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds since an arbitrary start (CLOCK_MONOTONIC), to the nanosecond. */
static inline double mfs_clock_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
