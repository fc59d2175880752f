/* tests/common/test_common.c - size strings, hashes, buffers (common/). */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "common/buf.h"
#include "common/hash.h"
#include "common/size.h"

int main(void)
{
    /* Rows from huggingface_hub parse_size_to_int (docs/hub-api.md 10.2). */
    static const struct { const char *s; unsigned flags; int rc; uint64_t bytes; } sizes[] = {
        { "5GB", 0, 0, 5000000000ull },      { "300KB", 0, 0, 300000 },
        { "1.5MB", 0, 0, 1500000 },          { "100kb", 0, 0, 100000 },
        { "12345", 0, 0, 12345 },            { "2TB", 0, 0, 2000000000000ull },
        { "1GiB", 0, -EINVAL, 0 },           { "1GiB", MFS_SIZE_BINARY, 0, 1073741824ull },
        { "", 0, -EINVAL, 0 },               { "GB", 0, -EINVAL, 0 },
        { "-5GB", 0, -EINVAL, 0 },           { "5XB", 0, -EINVAL, 0 },
        { "-1", 0, -EINVAL, 0 },
    };
    struct mfs_buf b = MFS_BUF_INIT;
    char hex[MFS_SHA256_HEX];
    char sha1[MFS_SHA1_HEX];
    size_t i;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct mfs_err err = MFS_ERR_INIT;
        uint64_t v = 42;
        int rc = mfs_size_parse(sizes[i].s, sizes[i].flags, &v, &err);

        CHECK(rc == sizes[i].rc && (rc < 0 || v == sizes[i].bytes) && (rc == 0 || err.msg[0]),
              "size '%s' flags %u -> %d %llu", sizes[i].s, sizes[i].flags, rc,
              (unsigned long long)v);
    }

    mfs_hash_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
          "sha256('abc')");
    /* `printf 'hello\n' | git hash-object --stdin` */
    mfs_hash_git_blob_hex("hello\n", 6, sha1);
    CHECK(!strcmp(sha1, "ce013625030ba8dba906f756967f9e9ca394464a"), "git blob id of 'hello\\n'");
    mfs_hash_git_blob_hex("", 0, sha1);
    CHECK(!strcmp(sha1, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"), "git blob id of ''");
    CHECK(mfs_hash_is_hex(sha1, 40) && !mfs_hash_is_hex("ABC", 3), "is_hex");

    for (i = 0; i < 1000; i++)
        mfs_buf_printf(&b, "%zu,", i);
    CHECK(b.len == strlen(b.data) && !strncmp(b.data, "0,1,2,", 6),
          "buf grows, stays NUL-terminated");
    mfs_buf_release(&b);
    return check_done();
}
