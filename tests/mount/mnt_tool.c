/*
 * tests/mount/mnt_tool.c - small probes for the mount tests, compiled by
 * tests/mount/lib_mount.sh (not a test itself).  Independent of modelfs'
 * own code on purpose: a test that reused model/ to find tensor offsets
 * could not catch model/'s mistakes.
 *
 *   mnt_tool slices FILE            one line per tensor of a safetensors
 *                                   file: NAME BEGIN END DTYPE (absolute
 *                                   byte offsets, END exclusive)
 *   mnt_tool pread FILE OFF LEN     LEN bytes at OFF to stdout (one pread)
 *   mnt_tool mmapcmp FILE REF       mmap FILE, compare every byte with REF
 *   mnt_tool xattr FILE NAME        the value of xattr NAME, or the errno name
 *   mnt_tool ctl FILE REQUEST       open O_RDWR, write REQUEST, print the
 *                                   reply read on the same handle, or the
 *                                   errno name of a failed write then the reply
 *   mnt_tool readall FILE           read FILE to stdout in 1 MiB reads; on a
 *                                   failure print the errno name to stderr, exit 3
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char *ename(int e)
{
    switch (e) {
    case EIO: return "EIO";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case EINVAL: return "EINVAL";
    case ENODATA: return "ENODATA";
    case ERANGE: return "ERANGE";
    case ENOTCONN: return "ENOTCONN";
    case EPERM: return "EPERM";
    default: return strerror(e);
    }
}

static int slices(const char *path)
{
    unsigned char len8[8];
    uint64_t n = 0;
    char *json;
    cJSON *root;
    cJSON *it;
    FILE *f = fopen(path, "rb");
    int i;

    if (!f || fread(len8, 1, 8, f) != 8)
        return 1;
    for (i = 7; i >= 0; i--)
        n = n << 8 | len8[i];
    if (n > 100000000)
        return 1;
    json = malloc(n + 1);
    if (!json || fread(json, 1, n, f) != n)
        return 1;
    fclose(f);
    json[n] = '\0';
    root = cJSON_Parse(json);
    for (it = root ? root->child : NULL; it; it = it->next) {
        cJSON *o = cJSON_GetObjectItem(it, "data_offsets");

        if (!strcmp(it->string, "__metadata__") || !o)
            continue;
        printf("%s %llu %llu %s\n", it->string,
               (unsigned long long)(8 + n + (uint64_t)cJSON_GetArrayItem(o, 0)->valuedouble),
               (unsigned long long)(8 + n + (uint64_t)cJSON_GetArrayItem(o, 1)->valuedouble),
               cJSON_GetObjectItem(it, "dtype")->valuestring);
    }
    cJSON_Delete(root);
    free(json);
    return 0;
}

static int do_pread(const char *path, const char *offs, const char *lens)
{
    uint64_t off = strtoull(offs, NULL, 10);
    size_t len = (size_t)strtoull(lens, NULL, 10);
    char *buf = malloc(len ? len : 1);
    int fd = open(path, O_RDONLY);
    ssize_t n;

    if (fd < 0 || !buf) {
        fprintf(stderr, "%s\n", ename(errno));
        return 3;
    }
    n = pread(fd, buf, len, (off_t)off);
    if (n < 0) {
        fprintf(stderr, "%s\n", ename(errno));
        return 3;
    }
    fwrite(buf, 1, (size_t)n, stdout);
    close(fd);
    free(buf);
    return 0;
}

static int mmapcmp(const char *path, const char *ref)
{
    struct stat st;
    unsigned char *m;
    unsigned char buf[65536];
    size_t at = 0;
    size_t n;
    int fd = open(path, O_RDONLY);
    FILE *r = fopen(ref, "rb");

    if (fd < 0 || !r || fstat(fd, &st) != 0)
        return 1;
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 1;
    /* Touch pages back to front so the kernel cannot just stream ahead. */
    for (size_t p = (size_t)st.st_size; p > 0; p -= p >= 4096 ? 4096 : p)
        (void)*(volatile unsigned char *)(m + p - 1);
    while ((n = fread(buf, 1, sizeof(buf), r)) > 0) {
        if (at + n > (size_t)st.st_size || memcmp(m + at, buf, n))
            return 2;
        at += n;
    }
    munmap(m, (size_t)st.st_size);
    close(fd);
    fclose(r);
    return at == (size_t)st.st_size ? 0 : 2;
}

static int xattr(const char *path, const char *name)
{
    char buf[4096];
    ssize_t n = getxattr(path, name, buf, sizeof(buf) - 1);

    if (n < 0) {
        printf("%s\n", ename(errno));
        return 3;
    }
    buf[n] = '\0';
    printf("%s\n", buf);
    return 0;
}

static int ctl(const char *path, const char *req)
{
    char buf[65536];
    ssize_t n;
    int rc = 0;
    int fd = open(path, O_RDWR);

    if (fd < 0) {
        printf("%s\n", ename(errno));
        return 3;
    }
    if (write(fd, req, strlen(req)) < 0) {
        printf("%s\n", ename(errno));
        rc = 3;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    close(fd);
    return rc;
}

static int readall(const char *path)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    ssize_t n;
    int fd = open(path, O_RDONLY);

    if (fd < 0 || !buf) {
        fprintf(stderr, "%s\n", ename(errno));
        return 3;
    }
    while ((n = read(fd, buf, cap)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    if (n < 0) {
        fprintf(stderr, "%s\n", ename(errno));
        return 3;
    }
    close(fd);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "slices"))
        return slices(argv[2]);
    if (argc == 5 && !strcmp(argv[1], "pread"))
        return do_pread(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "mmapcmp"))
        return mmapcmp(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "xattr"))
        return xattr(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "ctl"))
        return ctl(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "readall"))
        return readall(argv[2]);
    fprintf(stderr, "usage: mnt_tool slices|pread|mmapcmp|xattr|ctl|readall ...\n");
    return 2;
}
