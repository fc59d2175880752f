/*
 * tests/infer_mount/ctl_tool.c - a control-file client for the inference
 * mount tests, built by the test itself (not a test binary):
 *
 *   ctl_tool FILE REQ [REQ...]   open FILE read-write once; for each REQ
 *                                (a string, or @PATH for a file's bytes)
 *                                write it in one write(2), then read the
 *                                reply on the same handle to EOF and print
 *                                it; replies are separated by "\n--\n".
 * Exit status: 0 when every write succeeded, 3 when a write failed with
 * EINVAL, 4 on any other failure (message on stderr).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *slurp(const char *path, size_t *len)
{
    struct stat st;
    char *buf;
    int fd = open(path, O_RDONLY);

    if (fd < 0 || fstat(fd, &st) < 0)
        return NULL;
    buf = malloc((size_t)st.st_size + 1);
    if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
        close(fd);
        free(buf);
        return NULL;
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

int main(int argc, char **argv)
{
    char buf[65536];
    int status = 0;
    int fd;
    int i;

    if (argc < 3) {
        fprintf(stderr, "usage: ctl_tool FILE REQ [REQ...]\n");
        return 4;
    }
    fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        fprintf(stderr, "ctl_tool: open %s: %s\n", argv[1], strerror(errno));
        return 4;
    }
    for (i = 2; i < argc; i++) {
        size_t len = strlen(argv[i]);
        char *req = argv[i];
        ssize_t n;

        if (argv[i][0] == '@') {
            req = slurp(argv[i] + 1, &len);
            if (!req) {
                fprintf(stderr, "ctl_tool: cannot read %s\n", argv[i] + 1);
                return 4;
            }
        }
        if (i > 2)
            fputs("\n--\n", stdout);
        n = write(fd, req, len);
        if (n < 0) {
            fprintf(stderr, "ctl_tool: write: %s\n", strerror(errno));
            status = errno == EINVAL ? 3 : 4;
        }
        if (req != argv[i])
            free(req);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            fwrite(buf, 1, (size_t)n, stdout);
        if (n < 0) {
            fprintf(stderr, "ctl_tool: read: %s\n", strerror(errno));
            status = 4;
        }
        fflush(stdout);
    }
    close(fd);
    return status;
}
