/* common/hash.c - see hash.h.  OpenSSL EVP does the digests. */
#include "hash.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mfs_hash {
    EVP_MD_CTX *ctx;                        /* owned */
};

struct mfs_hash *mfs_hash_new(enum mfs_hash_algo algo)
{
    struct mfs_hash *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx)
        goto out_free;
    if (EVP_DigestInit_ex(h->ctx, algo == MFS_HASH_SHA1 ? EVP_sha1() : EVP_sha256(), NULL) != 1)
        goto out_free_ctx;
    return h;
out_free_ctx:
    EVP_MD_CTX_free(h->ctx);
out_free:
    free(h);
    return NULL;
}

void mfs_hash_update(struct mfs_hash *h, const void *p, size_t len)
{
    if (len)
        EVP_DigestUpdate(h->ctx, p, len);
}

void mfs_hash_final_hex(struct mfs_hash *h, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    EVP_DigestFinal_ex(h->ctx, md, &n);
    mfs_hash_to_hex(md, n, hex);
    mfs_hash_free(h);
}

void mfs_hash_free(struct mfs_hash *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void mfs_hash_sha256_hex(const void *p, size_t len, char hex[MFS_SHA256_HEX])
{
    unsigned char md[32];

    EVP_Digest(p, len, md, NULL, EVP_sha256(), NULL);
    mfs_hash_to_hex(md, sizeof(md), hex);
}

struct mfs_hash *mfs_hash_git_blob_new(uint64_t size)
{
    struct mfs_hash *h = mfs_hash_new(MFS_HASH_SHA1);
    char prefix[32];
    int n;

    if (!h)
        return NULL;
    n = snprintf(prefix, sizeof(prefix), "blob %llu", (unsigned long long)size);
    mfs_hash_update(h, prefix, (size_t)n + 1);      /* the NUL is part of it */
    return h;
}

void mfs_hash_git_blob_hex(const void *p, size_t len, char hex[MFS_SHA1_HEX])
{
    struct mfs_hash *h = mfs_hash_git_blob_new(len);

    if (!h) {
        hex[0] = '\0';
        return;
    }
    mfs_hash_update(h, p, len);
    mfs_hash_final_hex(h, hex);
}

void mfs_hash_to_hex(const unsigned char *p, size_t len, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        hex[2 * i] = digits[p[i] >> 4];
        hex[2 * i + 1] = digits[p[i] & 15];
    }
    hex[2 * len] = '\0';
}

int mfs_hash_is_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[n] == '\0';
}
