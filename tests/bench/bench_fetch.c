/* tests/bench/bench_fetch.c - the fetch layer's speed without FUSE: a big
 * LFS file read through mfs_fetch_read (128 KiB sequential reads, as the
 * kernel sends them) against `modelfs hub serve --delay-ms 10`, compared with
 * one plain libcurl GET of the same file (cold), and with read() of the
 * local source file with its page cache dropped (warm).  Size: BENCH_FETCH_MB
 * (default 1024).  Prints "name: ours X, baseline Y, ratio R (target T)",
 * and the CPU time the cold read took in this process (all threads), which
 * on a shared machine moves less than the wall-clock figures. */
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "fs/fetch.h"
#include "hub/hub.h"

#define READ_SIZE (128u * 1024u)

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    *(size_t *)ctx += size * n;
    return size * n;
}

static void drop_page_cache(const char *path)
{
    int fd = open(path, O_RDONLY);

    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static long vm_hwm_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;

    while (fp && fgets(line, sizeof(line), fp))
        if (!strncmp(line, "VmHWM:", 6))
            v = strtol(line + 6, NULL, 10);
    if (fp)
        fclose(fp);
    return v;
}

int main(void)
{
    const char *tmp = getenv("MFS_TMP") ? getenv("MFS_TMP") : "/tmp";
    const char *bin = getenv("MFS_BIN") ? getenv("MFS_BIN") : "build/modelfs";
    const char *mb_s = getenv("BENCH_FETCH_MB");
    uint64_t size = (mb_s ? strtoull(mb_s, NULL, 10) : 1024) << 20;
    char src_dir[512];
    char src[600];
    char root[512];
    char outp[512];
    char cmd[2048];
    char url[128] = "";
    char line[512];
    char cache_dir[512];
    char db[600];
    char resolve[1024];
    struct mfs_hub_cfg hcfg = { 0 };
    struct mfs_hub *hub = NULL;
    struct mfs_cache *cache = NULL;
    struct mfs_fetch_cfg fcfg = { 0 };
    struct mfs_fetch *f = NULL;
    struct mfs_hub_repo_info info;
    struct mfs_entry *v = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    unsigned char *buf = malloc(READ_SIZE);
    unsigned char *chunk = malloc(1 << 20);
    size_t n = 0;
    size_t got = 0;
    size_t i;
    double t0;
    double t_curl;
    double t_cold;
    double t_warm;
    double t_cat;
    double cpu_cold;
    uint64_t off;
    uint64_t x = 88172645463325252ull;
    pid_t pid;
    FILE *fp;
    CURL *c;
    int fd;

    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(src_dir, sizeof(src_dir), "%s/src", tmp);
    snprintf(src, sizeof(src), "%s/big.bin", src_dir);
    snprintf(root, sizeof(root), "%s/hub", tmp);
    snprintf(outp, sizeof(outp), "%s/hub.out", tmp);
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", tmp);
    snprintf(db, sizeof(db), "%s/modelfs.db", cache_dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", src_dir);
    if (system(cmd) != 0)
        return 1;
    fp = fopen(src, "wb");
    for (off = 0; fp && off < size; off += 1 << 20) {
        for (i = 0; i < (1 << 20) / 8; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(chunk + i * 8, &x, 8);
        }
        fwrite(chunk, 1, 1 << 20, fp);
    }
    if (fp)
        fclose(fp);
    snprintf(cmd, sizeof(cmd), "'%s' hub import '%s' bench/big --root '%s' >/dev/null", bin,
             src_dir, root);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_fetch: import failed\n");
        return 1;
    }
    pid = fork();
    if (pid == 0) {
        if (!freopen(outp, "w", stdout))
            _exit(126);
        execl(bin, bin, "hub", "serve", "--root", root, "--host", "127.0.0.1", "--port", "0",
              "--delay-ms", "10", (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 100 && !url[0]; i++) {
        usleep(100000);
        fp = fopen(outp, "r");
        while (fp && fgets(line, sizeof(line), fp))
            if (strstr(line, "serving ") && sscanf(strstr(line, "serving ") + 8, "%127s", url))
                break;
        if (fp)
            fclose(fp);
    }
    hcfg.endpoint = url;
    if (!url[0] || mfs_hub_new(&hcfg, &hub, &err) < 0 ||
        mfs_hub_repo_info(hub, "bench/big", NULL, &info, &err) < 0 ||
        mfs_hub_tree(hub, "bench/big", info.commit, &v, &n, &err) < 0) {
        fprintf(stderr, "bench_fetch: hub: %s\n", err.msg);
        goto out;
    }
    for (i = 0; i < n && strcmp(v[i].path, "big.bin"); i++)
        ;
    if (i == n) {
        fprintf(stderr, "bench_fetch: big.bin not in the tree\n");
        goto out;
    }

    /* Baseline: one GET of the whole file with curl. */
    snprintf(resolve, sizeof(resolve), "%s/bench/big/resolve/%s/big.bin", url, info.commit);
    c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, resolve);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    t0 = now_s();
    curl_easy_perform(c);
    t_curl = now_s() - t0;
    curl_easy_cleanup(c);

    /* Cold: through the fetch layer into a fresh cache. */
    mfs_cache_open(cache_dir, 0, &cache, NULL);
    fcfg.hub = hub;
    fcfg.cache = cache;
    fcfg.repo_id = "bench/big";
    fcfg.commit = info.commit;
    mfs_fetch_new(&fcfg, &f, NULL);
    cpu_cold = cpu_s();
    t0 = now_s();
    for (off = 0; off < size; off += READ_SIZE)
        if (mfs_fetch_read(f, &v[i], 1, off, READ_SIZE, buf, &err) != READ_SIZE) {
            fprintf(stderr, "bench_fetch: cold read at %llu: %s\n", (unsigned long long)off,
                    err.msg);
            goto out;
        }
    t_cold = now_s() - t0;
    cpu_cold = cpu_s() - cpu_cold;
    mfs_fetch_free(&f);

    /* Warm: from SQLite, page cache dropped, against read() of the source. */
    drop_page_cache(db);
    fcfg.hub = NULL;
    mfs_fetch_new(&fcfg, &f, NULL);
    t0 = now_s();
    for (off = 0; off < size; off += READ_SIZE)
        if (mfs_fetch_read(f, &v[i], 1, off, READ_SIZE, buf, &err) != READ_SIZE) {
            fprintf(stderr, "bench_fetch: warm read: %s\n", err.msg);
            goto out;
        }
    t_warm = now_s() - t0;
    drop_page_cache(src);
    fd = open(src, O_RDONLY);
    t0 = now_s();
    while (fd >= 0 && read(fd, buf, READ_SIZE) > 0)
        ;
    t_cat = now_s() - t0;
    if (fd >= 0)
        close(fd);

    printf("fetch cold %llu MiB (delay 10 ms): ours %.0f MB/s, baseline curl %.0f MB/s, "
           "ratio %.2f (target 1.0; and ours >= 500 MB/s)\n", (unsigned long long)(size >> 20),
           size / t_cold / 1e6, got / t_curl / 1e6, t_curl / t_cold);
    printf("fetch cold CPU: %.2f s per GiB in this process (user+sys, all threads; "
           "the hub server's not counted)\n", cpu_cold / ((double)size / (1u << 30)));
    printf("fetch warm: ours %.0f MB/s, baseline read() %.0f MB/s, ratio %.2f (target 0.5)\n",
           size / t_warm / 1e6, size / t_cat / 1e6, t_cat / t_warm);
    printf("fetch peak RSS: %ld KiB (target <= 64 MiB + buffers)\n", vm_hwm_kb());
out:
    mfs_fetch_free(&f);
    mfs_cache_close(&cache);
    mfs_entries_free(v, n);
    mfs_hub_free(&hub);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    free(buf);
    free(chunk);
    curl_global_cleanup();
    return 0;
}
