/*
 * hub/upload.h - the write side of the Hub client: one Hub commit from a
 * list of operations, and repo creation (docs/hub-api.md sections 6, 7, 8).
 *
 * A commit runs: preupload (batches of 256; files whose content equals the
 * remote one are dropped, section 6.1), the LFS batch API (hash_algo
 * sha256, transfers basic + multipart, "ref" unless create_pr, section
 * 6.2), one PUT per LFS object streamed from the caller's read callback,
 * or the parts of a multipart transfer and its completion POST (6.3, 6.4),
 * verify when offered (6.5), then the NDJSON commit (6.6).  Regular files
 * go inline, base64, in the commit body, so they are read into memory; LFS
 * objects never are.  A commit left with nothing to do makes no commit.
 *
 * Every request is retried on 408/429/5xx and network errors with backoff
 * (the body is read again from the callback), and fails after timeout_ms
 * without progress, as the rest of hub/ (hub.h).  A commit POST whose answer
 * was lost may have been applied: its retry then fails with -ESTALE (when
 * parent_commit is set) although the branch holds the commit; callers that
 * care compare the branch head with what they pushed.
 *
 * Errors: -EINVAL bad arguments (repo id, unsafe path, empty summary,
 * missing read callback); -ESTALE parent_commit is not the branch head
 * (HTTP 412), the server's message in the reason; -EACCES 401/403 (no or
 * refused token, no write access); -ENOENT 404 (repo, revision, or a
 * deleted file that is not there); -EEXIST 409; -EIO network, 5xx after
 * retries, a malformed answer; a read callback's own errno.
 *
 * Threads: any thread may call these on a shared struct mfs_hub; the read
 * and progress callbacks run on the calling thread only.
 */
#ifndef MFS_HUB_UPLOAD_H
#define MFS_HUB_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "hub/hub.h"

/* Fill buf with exactly len bytes of the file starting at off (bytes from
 * the start of the file); return 0, or a negative errno with the reason in
 * *err (the commit then fails with that errno).  May be called several
 * times for the same bytes (hashing, the upload, retries). */
typedef int (*mfs_hub_file_read_fn)(void *ctx, uint64_t off, size_t len, void *buf,
                                    struct mfs_err *err);

/* Progress of a commit's uploads: path is the file being sent, done and
 * total count body bytes of all files that need sending (after preupload
 * dropped unchanged ones); the last call has done == total. */
typedef void (*mfs_hub_progress_fn)(void *ctx, const char *path, uint64_t done,
                                    uint64_t total);

enum mfs_hub_op_kind {
    MFS_HUB_OP_ADD,                         /* add or replace path with size bytes from read */
    MFS_HUB_OP_DELETE_FILE,                 /* delete one file (-ENOENT if missing) */
    MFS_HUB_OP_DELETE_FOLDER,               /* delete everything under path/ */
};

struct mfs_hub_op {
    enum mfs_hub_op_kind kind;              /* what to do */
    const char *path;                       /* borrowed; relative, no "."/".."/".git" part */
    uint64_t size;                          /* ADD: bytes of the file */
    mfs_hub_file_read_fn read;              /* ADD: where the bytes come from */
    void *read_ctx;                         /* ADD: passed to read */
    const char *sha256;                     /* ADD: 64 hex of the content if known, else NULL */
    const char *git_sha1;                   /* ADD: 40 hex git blob id if known, else NULL */
};

struct mfs_hub_commit_opts {
    const char *summary;                    /* commit title, required, not empty */
    const char *description;                /* NULL = "" */
    const char *parent_commit;              /* NULL, or the commit the branch must still be at */
    bool create_pr;                         /* open refs/pr/N from revision instead */
    mfs_hub_progress_fn progress;           /* NULL = none */
    void *progress_ctx;                     /* passed to progress */
};

struct mfs_hub_commit_result {
    bool committed;                         /* false: nothing changed, no commit made */
    char commit[41];                        /* the new commit, or the head when !committed */
    char commit_url[512];                   /* "{E}/{repo}/commit/{oid}", "" when !committed */
    char pr_url[512];                       /* "{E}/{repo}/discussions/N" or "" */
    char pr_ref[32];                        /* "refs/pr/N" or "" */
    size_t files_uploaded;                  /* files whose bytes were sent (inline or LFS) */
    uint64_t bytes_uploaded;                /* their bytes; 0 when nothing changed */
};

/* Make one commit of ops[0..n) on revision (a branch or refs/pr/N; NULL =
 * "main") of repo_id, docs/hub-api.md section 6.  Files whose content is
 * already at that path are skipped (sha256 for LFS, git blob id for
 * regular files); when nothing is left, no commit is made and res->commit
 * is the current head.  ADD ops whose hashes are not given are hashed in
 * one streaming pass of their read callback.  OUT: *res (zeroed first).
 * Errors: see the header comment; on any error nothing is committed. */
int mfs_hub_commit(struct mfs_hub *hub, const char *repo_id, const char *revision,
                   const struct mfs_hub_op *ops, size_t n, const struct mfs_hub_commit_opts *opts,
                   struct mfs_hub_commit_result *res, struct mfs_err *err);

/* Create repo_id ("ns/name"; the hub's repo type), private or public
 * (docs/hub-api.md section 7).  A repo that exists is 0 with exist_ok,
 * else -EEXIST.  -EACCES: no token or no right to that namespace;
 * -EINVAL: bad repo id; -EIO. */
int mfs_hub_repo_create(struct mfs_hub *hub, const char *repo_id, bool is_private, bool exist_ok,
                        struct mfs_err *err);

#endif
