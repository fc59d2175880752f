/*
 * tools/hubd/hubd.h - the local Hub server (`modelfs hub serve`) and its
 * store (`modelfs hub import`): the contract between the store, the HTTP
 * routes and the CLI.  Protocol: docs/hub-api.md.
 *
 * Storage under a root folder (the --root of serve and import):
 *   ROOT/hub.db             SQLite (WAL): repos, refs, commits, the file
 *                           list of every commit (one row per file)
 *   ROOT/objects/ab/cdef..  content-addressed blobs, named by the sha256 of
 *                           the content, for regular and LFS files alike
 *   ROOT/tmp/               uploads in progress (renamed into objects/)
 * Blobs are written first and made durable, then a commit is one SQLite
 * transaction, so a crash mid-commit leaves the previous commit intact.
 * Several processes may share a root (serve, and import while it serves):
 * SQLite serialises writers with BEGIN IMMEDIATE.
 *
 * Object ids (hub-api.md section 8): a regular file's oid is its git blob
 * sha1; an LFS file's oid is the git blob sha1 of its pointer text and its
 * lfs oid the sha256 of the content.  Commit and folder ids are 40 hex
 * digits, unique but not real git objects.
 *
 * Returns: >= 0 on success, negative errno on failure with the reason in
 * *err.  -ENOENT: repo, revision or file missing; -EEXIST: already exists;
 * -ESTALE: parentCommit is not the branch head; -EINVAL: bad argument;
 * -EIO: database or disk failure.  One struct mfs_hubd_store may be used
 * by any number of threads (calls are serialised by its mutex).
 */
#ifndef MFS_TOOLS_HUBD_HUBD_H
#define MFS_TOOLS_HUBD_HUBD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define MFS_HUBD_LFS_MIN_SIZE (10u << 20)   /* bytes: files this big are LFS (hub-api 6.1) */
#define MFS_HUBD_NAME_MAX 200               /* bytes of a repo id, NUL included */
#define MFS_HUBD_REF_MAX 256                /* bytes of a full ref name, NUL included */

struct mfs_hubd_store;

struct mfs_hubd_repo {
    int64_t id;                             /* row id in the store */
    char type[16];                          /* "model", "dataset" or "space" */
    char name[MFS_HUBD_NAME_MAX];           /* "ns/name" or a legacy "name" */
    bool is_private;                        /* invisible without a valid token */
    char gated[16];                         /* "", "auto" or "manual" */
    int64_t created;                        /* unix seconds */
};

struct mfs_hubd_file {
    char *path;                             /* owned; from the repo root, no leading '/' */
    uint64_t size;                          /* content bytes (LFS: the large file's) */
    char oid[41];                           /* git blob sha1 (LFS: of the pointer) */
    char sha256[65];                        /* sha256 of the content: names the blob */
    bool lfs;                               /* stored as an LFS object */
};

struct mfs_hubd_commit_info {
    char oid[41];                           /* this commit */
    char parent[41];                        /* "" for a first commit */
    char title[256];                        /* summary line */
    char *message;                          /* owned, may be "" */
    char author[64];                        /* user name */
    int64_t time;                           /* unix seconds */
};

enum mfs_hubd_op_kind {
    MFS_HUBD_OP_ADD,                        /* add or replace path with a stored blob */
    MFS_HUBD_OP_DELETE_FILE,                /* delete one file; -ENOENT if missing */
    MFS_HUBD_OP_DELETE_FOLDER,              /* delete every file under path/ */
};

struct mfs_hubd_op {
    enum mfs_hubd_op_kind kind;             /* what to do */
    const char *path;                       /* borrowed; a valid repo path (mfs_hubd_path_ok) */
    bool lfs;                               /* ADD: store as LFS */
    uint64_t size;                          /* ADD: content bytes */
    char sha256[65];                        /* ADD: blob already in the store */
    char oid[41];                           /* ADD: git blob sha1 of the content (regular) */
};

struct mfs_hubd_commit_req {
    const char *rev;                        /* branch, refs/heads/X or refs/pr/N; NULL = main */
    bool create_branch;                     /* create rev if it does not exist (import) */
    bool create_pr;                         /* open refs/pr/N from rev (or parent) */
    const char *parent;                     /* NULL, or hex the head must start with */
    const char *title;                      /* commit summary */
    const char *message;                    /* description, NULL = "" */
    const char *author;                     /* user name */
    const struct mfs_hubd_op *ops;          /* borrowed, applied in order */
    size_t nops;                            /* entries in ops */
};

/* Open (creating if needed) the store under root.  OUT: *storep, close
 * with mfs_hubd_store_close().  -EACCES/-EIO: root unusable. */
int mfs_hubd_store_open(const char *root, struct mfs_hubd_store **storep, struct mfs_err *err);

/* Close *storep and set it to NULL.  NULL is a no-op. */
void mfs_hubd_store_close(struct mfs_hubd_store **storep);

/* Path of the blob with content sha256 into buf (size bytes); the file
 * may not exist yet.  Returns 0, -ENAMETOOLONG. */
int mfs_hubd_blob_path(struct mfs_hubd_store *st, const char *sha256, char *buf, size_t size);

/* True iff the blob with that sha256 is stored; *size gets its bytes. */
bool mfs_hubd_blob_exists(struct mfs_hubd_store *st, const char *sha256, uint64_t *size);

/* Copy the file src into the store.  OUT: sha256, oid (git blob sha1 of
 * the content), *size.  Streams: never holds the file in memory.
 * -ENOENT/-EACCES: cannot read src; -EIO; -ENOSPC. */
int mfs_hubd_blob_put_file(struct mfs_hubd_store *st, const char *src, char sha256[65],
                           char oid[41], uint64_t *size, struct mfs_err *err);

/* Store len bytes at p.  OUT: sha256, oid as above.  -EIO, -ENOSPC. */
int mfs_hubd_blob_put_mem(struct mfs_hubd_store *st, const void *p, size_t len,
                          char sha256[65], char oid[41], struct mfs_err *err);

/* Path ROOT/tmp/assembly-{oid} of the file a multipart upload's parts are
 * written into, each at its offset, into buf.  Returns 0 or -ENAMETOOLONG. */
int mfs_hubd_assembly_path(struct mfs_hubd_store *st, const char *oid, char *buf, size_t size);

/* Path ROOT/tmp/part-{oid}-{part} of one multipart upload part's record
 * (its length in bytes, decimal) into buf.  Returns 0 or -ENAMETOOLONG. */
int mfs_hubd_part_path(struct mfs_hubd_store *st, const char *oid, unsigned part, char *buf,
                       size_t size);

/* Make a fresh temp file path under ROOT/tmp into buf (size bytes) for an
 * upload; the caller creates it.  Returns 0 or -ENAMETOOLONG. */
int mfs_hubd_tmp_path(struct mfs_hubd_store *st, const char *tag, char *buf, size_t size);

/* Move the finished temp file tmp (whose content hashes to sha256, as the
 * caller checked) into the store, fsyncing it first.  -EIO. */
int mfs_hubd_blob_adopt(struct mfs_hubd_store *st, const char *tmp, const char *sha256,
                        struct mfs_err *err);

/* Look up repo name of type ("model", "dataset", "space").  OUT: *repo.
 * -ENOENT. */
int mfs_hubd_repo_get(struct mfs_hubd_store *st, const char *type, const char *name,
                      struct mfs_hubd_repo *repo, struct mfs_err *err);

/* Create a repo, with no commit; -EEXIST if it exists.  OUT: *repo. */
int mfs_hubd_repo_create(struct mfs_hubd_store *st, const char *type, const char *name,
                         bool is_private, const char *gated, struct mfs_hubd_repo *repo,
                         struct mfs_err *err);

/* Set the private and gated flags of an existing repo.  -ENOENT. */
int mfs_hubd_repo_set_flags(struct mfs_hubd_store *st, int64_t repo_id, bool is_private,
                            const char *gated, struct mfs_err *err);

/* Delete a repo with its refs and commits (blobs stay).  -ENOENT. */
int mfs_hubd_repo_delete(struct mfs_hubd_store *st, int64_t repo_id, struct mfs_err *err);

/* Resolve rev (branch, tag, full ref, "HEAD", a commit id or a hex prefix
 * of at least 4 digits) of repo_id to a commit.  A full commit id names that commit
 * even when a branch or tag has the same name.  OUT: commit; refname gets
 * the full ref ("refs/heads/main") or "" for a commit id (refname may be
 * NULL).  -ENOENT: unknown or ambiguous. */
int mfs_hubd_rev_resolve(struct mfs_hubd_store *st, int64_t repo_id, const char *rev,
                         char commit[41], char refname[MFS_HUBD_REF_MAX], struct mfs_err *err);

/* All refs of a repo, as parallel arrays of owned strings "refs/..." and
 * commits.  OUT: *names, *commits (free each and the arrays), *n. */
int mfs_hubd_refs_list(struct mfs_hubd_store *st, int64_t repo_id, char ***names,
                       char ***commits, size_t *n, struct mfs_err *err);

/* Point full ref name at commit.  With must_be_new, -EEXIST if it exists. */
int mfs_hubd_ref_set(struct mfs_hubd_store *st, int64_t repo_id, const char *name,
                     const char *commit, bool must_be_new, struct mfs_err *err);

/* Delete full ref name.  -ENOENT. */
int mfs_hubd_ref_delete(struct mfs_hubd_store *st, int64_t repo_id, const char *name,
                        struct mfs_err *err);

/* Every file at commit, sorted by path.  OUT: *files (free with
 * mfs_hubd_files_free()), *n. */
int mfs_hubd_files_list(struct mfs_hubd_store *st, const char *commit,
                        struct mfs_hubd_file **files, size_t *n, struct mfs_err *err);

/* One file at commit.  OUT: *file (path owned: free with
 * mfs_hubd_file_release()).  -ENOENT. */
int mfs_hubd_file_get(struct mfs_hubd_store *st, const char *commit, const char *path,
                      struct mfs_hubd_file *file, struct mfs_err *err);

/* Free file->path and set it to NULL.  NULL, or a zeroed file, is a no-op. */
void mfs_hubd_file_release(struct mfs_hubd_file *file);
/* Free n files and the array from mfs_hubd_files_list().  NULL is a no-op. */
void mfs_hubd_files_free(struct mfs_hubd_file *files, size_t n);

/* Commit metadata.  OUT: *info (release with mfs_hubd_commit_info_release). */
int mfs_hubd_commit_get(struct mfs_hubd_store *st, const char *commit,
                        struct mfs_hubd_commit_info *info, struct mfs_err *err);
/* Free info->message.  NULL is a no-op. */
void mfs_hubd_commit_info_release(struct mfs_hubd_commit_info *info);

/* Make one commit on repo_id (hub-api.md section 6.6): apply req->ops to
 * the head of req->rev, add .gitattributes lines for LFS paths no pattern
 * covers, move the ref.  Every blob named by an ADD op must be stored.
 * OUT: oid (the new commit), *pr_num (N of a new refs/pr/N, else 0).
 * -ENOENT: revision (or a deleted file) missing; -ESTALE: parent is not
 * the head; -EINVAL: bad op. */
int mfs_hubd_commit_create(struct mfs_hubd_store *st, int64_t repo_id,
                           const struct mfs_hubd_commit_req *req, char oid[41], int *pr_num,
                           struct mfs_err *err);

/* LFS pointer text for content sha256/size into buf (>= 200 bytes);
 * returns its length (hub-api.md section 8). */
size_t mfs_hubd_lfs_pointer(const char *sha256, uint64_t size, char *buf, size_t bufsize);

/* True iff path is acceptable in a repo: not empty, not absolute, well-formed
 * UTF-8 (no overlong forms), no control byte or backslash, no "." / ".." /
 * ".git" component, no empty component, < 1024 bytes. */
bool mfs_hubd_path_ok(const char *path);

/* True iff name is a valid repo id (hub-api.md section 2). */
bool mfs_hubd_repo_name_ok(const char *name);

/* True iff .gitattributes text attrs (may be NULL) or the Hub's default
 * patterns mark path as LFS (filter=lfs). */
bool mfs_hubd_attr_is_lfs(const char *attrs, const char *path);

/* The Hub's default .gitattributes for new repos. */
extern const char mfs_hubd_default_gitattributes[];

/* `modelfs hub import` (tools/hubd/import.c): one commit of the files
 * under src (recursively, skipping .git) to repo type/name on branch, in
 * the store at root, creating the repo if needed.  OUT: oid.  A symlink counts as the file
 * it names only when that is a regular file inside src; any other symlink
 * (outside src, to a folder, dangling) fails the import with -EINVAL. */
struct mfs_hubd_import_opts {
    const char *root;                       /* store root */
    const char *type;                       /* "model" or "dataset" */
    const char *branch;                     /* NULL = main */
    const char *message;                    /* NULL = "Import from SRC" */
    bool is_private;                        /* set the repo private */
    bool gated;                             /* set the repo gated ("auto") */
};
int mfs_hubd_import(const char *src, const char *name, const struct mfs_hubd_import_opts *o,
                    char oid[41], struct mfs_err *err);

/* `modelfs hub serve` (tools/hubd/http.c).
 *
 * Auth (hub-api.md section 3).  A token file has lines "hf_TOKEN [USER]"
 * (USER defaults to "user"; '#' starts a comment).  A namespace that is
 * some token's user belongs to it: only that token sees its private repos
 * and writes there.  Other namespaces (and legacy "name" repos) are open
 * to every valid token.  Without --token-file every "hf_..." token is
 * valid (user "user") and anonymous writes are allowed.  Private repos:
 * 401 RepoNotFound to anonymous callers, 404 RepoNotFound to others (as
 * for a missing repo).  Gated repos: metadata is public, content
 * (resolve, raw, LFS download) needs a valid token, else 403 GatedRepo.
 * An unknown token: 401 "Invalid credentials in Authorization header".
 * Every error has X-Error-Code, X-Error-Message and {"error": ...}, and
 * is logged as one line on stderr. */
struct mfs_hubd_serve_opts {
    const char *root;                       /* store root */
    const char *host;                       /* bind address, default 127.0.0.1 */
    unsigned port;                          /* 0 = ephemeral */
    const char *token_file;                 /* NULL = any hf_ token is valid, writes open */
    long delay_ms;                          /* added to every response */
    const char *fault_file;                 /* test fault switch, re-read per request */
};

/* Serve until one of the signals in *stop arrives; the caller blocks them
 * (in the main thread, before any other thread starts) so that they are
 * collected with sigtimedwait and no handler or global is needed.  Prints
 * "modelfs hub: serving http://HOST:PORT" on stdout once listening.
 * -EADDRINUSE, -EIO. */
int mfs_hubd_serve(const struct mfs_hubd_serve_opts *o, const sigset_t *stop,
                   struct mfs_err *err);

#endif
