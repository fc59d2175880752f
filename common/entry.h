/*
 * common/entry.h - one file or folder of a repo at a commit, as the Hub's
 * tree API describes it (docs/hub-api.md section 5.2) and as the cache
 * stores it.  Plain data shared by hub/ (which fills it from JSON), cache/
 * (which stores it) and fs/ (which shows it); no behaviour here.
 */
#ifndef MFS_COMMON_ENTRY_H
#define MFS_COMMON_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mfs_entry {
    char *path;                             /* owned; path from the repo root, no leading / */
    bool is_dir;                            /* "directory" entries */
    uint64_t size;                          /* real content size in bytes (LFS: the large file's) */
    char oid[41];                           /* git blob sha1 (LFS: of the pointer) or tree sha1 */
    bool is_lfs;                            /* true iff lfs_oid is set */
    char lfs_oid[65];                       /* sha256 of the content for LFS files, else "" */
};

/* The content id that names the bytes in the cache: lfs_oid for LFS
 * files, else the git blob oid (docs/design.md, Cache). */
static inline const char *mfs_entry_content_id(const struct mfs_entry *e)
{
    return e->is_lfs ? e->lfs_oid : e->oid;
}

/* Free the paths of n entries and the array itself.  NULL is a no-op. */
void mfs_entries_free(struct mfs_entry *entries, size_t n);

#endif
