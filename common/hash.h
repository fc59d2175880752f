/*
 * common/hash.h - SHA-256 and SHA-1 over OpenSSL's libcrypto, and the two
 * object ids of the Hub (docs/hub-api.md section 8): an LFS oid is the
 * sha256 of the content; a git blob id is sha1("blob <len>\0" + content).
 * Hex digests are lower case and NUL-terminated (65 and 41 bytes).
 * Any thread may call any function; a context belongs to one thread.
 */
#ifndef MFS_COMMON_HASH_H
#define MFS_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MFS_SHA256_HEX 65                   /* 64 hex digits + NUL */
#define MFS_SHA1_HEX 41                     /* 40 hex digits + NUL */

enum mfs_hash_algo {
    MFS_HASH_SHA256,
    MFS_HASH_SHA1,
};

struct mfs_hash;                            /* an incremental digest */

/* Start a digest.  Returns NULL on ENOMEM. Free with mfs_hash_free(). */
struct mfs_hash *mfs_hash_new(enum mfs_hash_algo algo);
/* Feed len bytes. */
void mfs_hash_update(struct mfs_hash *h, const void *p, size_t len);
/* Finish, write the hex digest to hex (65 or 41 bytes) and free h. */
void mfs_hash_final_hex(struct mfs_hash *h, char *hex);
/* Free an unfinished digest.  NULL is a no-op. */
void mfs_hash_free(struct mfs_hash *h);

/* One-shot sha256 of [p, p+len) as 64 hex digits. */
void mfs_hash_sha256_hex(const void *p, size_t len, char hex[MFS_SHA256_HEX]);
/* Git blob id of content [p, p+len) as 40 hex digits. */
void mfs_hash_git_blob_hex(const void *p, size_t len, char hex[MFS_SHA1_HEX]);
/* Start a git blob digest for content of exactly size bytes (feeds the
 * "blob <size>\0" prefix); finish with mfs_hash_final_hex(). */
struct mfs_hash *mfs_hash_git_blob_new(uint64_t size);
/* Bytes -> lower-case hex; hex must hold 2*len+1 bytes. */
void mfs_hash_to_hex(const unsigned char *p, size_t len, char *hex);
/* True iff s is exactly n lower-case hex digits. */
int mfs_hash_is_hex(const char *s, size_t n);

#endif
