/*
 * hub/hub.h - the Hugging Face Hub HTTP client, on libcurl.
 *
 * Speaks the protocol in docs/hub-api.md to https://huggingface.co or to
 * `modelfs hub serve`; knows nothing of SQLite or FUSE (style.md rule 13).
 * Revisions are percent-encoded as one path segment (section 2); every
 * request carries "authorization: Bearer <token>" when a token is set, and
 * curl drops it on a redirect to another host (section 4.3).
 *
 * Errors (the lowest layer that knows the cause picks the errno, design.md):
 *   -ENOENT  X-Error-Code RepoNotFound/RevisionNotFound/EntryNotFound, or a
 *            bare 404.  The Hub answers 401 + RepoNotFound for a repo that is
 *            missing *or* private when no token is sent (so as not to leak
 *            that it exists): that is -ENOENT too, and the reason then says
 *            "(no token given)".
 *   -EACCES  GatedRepo, a refused token ("Invalid credentials" in
 *            X-Error-Message), a disabled repo, other 401/403
 *   -EIO     network down, 5xx after retries, a stalled transfer (no byte for
 *            timeout_ms), a short or lying answer (wrong Content-Range, size),
 *            malformed or hostile JSON (wrong types, unsafe paths)
 *   -ENETDOWN offline mode: the call would have opened a connection
 *   -ESHUTDOWN after mfs_hub_shutdown()
 *   -EINVAL  an invalid repo id (not "[namespace/]name" of [A-Za-z0-9_.-])
 * Retries: 408/429/5xx and network errors, up to 4 tries with backoff from
 * 100 ms, never starting one later than timeout_ms after the call last saw a
 * byte; a range GET broken mid-body resumes with the bytes still missing.
 * The reason names the URL path and the cause (HTTP status, X-Error-Message,
 * curl's error buffer).
 *
 * Threads: one struct mfs_hub is shared by all threads; every function may
 * be called concurrently (a pool of easy handles, a share handle for the
 * connection cache and DNS, so connections are kept alive and reused).
 *
 * Writes (one Hub commit from a list of operations, repo creation) are in
 * hub/upload.h, on the same struct mfs_hub.
 */
#ifndef MFS_HUB_HUB_H
#define MFS_HUB_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/entry.h"
#include "common/err.h"

struct mfs_hub;

struct mfs_hub_cfg {
    const char *endpoint;                   /* "https://huggingface.co"; trailing '/' dropped */
    const char *token;                      /* NULL or "" = anonymous */
    const char *repo_type;                  /* "model" (NULL too) or "dataset" */
    long timeout_ms;                        /* stall limit per transfer; 0 = 30000 */
    bool offline;                           /* refuse every request with -ENETDOWN */
};

/* Make a client.  Strings in cfg are copied.  OUT: *hubp, free with
 * mfs_hub_free().  -EINVAL: bad endpoint or repo_type; -ENOMEM. */
int mfs_hub_new(const struct mfs_hub_cfg *cfg, struct mfs_hub **hubp, struct mfs_err *err);

/* Free *hubp (waits for nothing: callers finish their calls first) and
 * set it to NULL.  NULL is a no-op. */
void mfs_hub_free(struct mfs_hub **hubp);

/* Abort every transfer in flight and make later calls fail at once with
 * -ESHUTDOWN (used by umount so that it finishes within seconds).  Safe
 * from any thread. */
void mfs_hub_shutdown(struct mfs_hub *hub);

/* What the Hub says about a repo at a revision (section 5.1,
 * GET /api/{T}/{repo}/revision/{rev}). */
struct mfs_hub_repo_info {
    char commit[41];                        /* "sha": the 40-hex commit rev resolves to */
    int64_t last_modified;                  /* unix seconds of lastModified, 0 if absent */
    bool is_private;                        /* "private" */
    bool gated;                             /* "gated" is not false */
};

/* Resolve revision (branch, tag, commit, refs/pr/N; NULL = "main") of
 * repo_id.  OUT: *info.  -ENOENT (repo or revision), -EACCES, -EIO. */
int mfs_hub_repo_info(struct mfs_hub *hub, const char *repo_id, const char *revision,
                      struct mfs_hub_repo_info *info, struct mfs_err *err);

/* The whole recursive file list of repo_id at commit (section 5.2,
 * recursive=true, following Link rel="next" pages).  Folders are included
 * as is_dir entries.  OUT: *entriesp (free with mfs_entries_free()) and
 * *np.  -ENOENT, -EACCES, -EIO (also for malformed JSON). */
int mfs_hub_tree(struct mfs_hub *hub, const char *repo_id, const char *commit,
                 struct mfs_entry **entriesp, size_t *np, struct mfs_err *err);

/* Called with each piece of a body as it arrives; return 0 to go on, a
 * negative errno to abort the transfer (that errno is returned). */
typedef int (*mfs_hub_sink_fn)(void *ctx, const void *data, size_t len);

/* Stream bytes [off, off+len) of path at commit to sink, with one
 * "Range: bytes=off-(off+len-1)" GET of /{repo}/resolve/{commit}/{path}
 * (redirects followed, section 4.5).  Exactly len bytes reach the sink or
 * the call fails: a 200 that ignores the range, a wrong Content-Range or a
 * short body is -EIO.  Returns 0.  len 0 is a no-op. */
int mfs_hub_get_range(struct mfs_hub *hub, const char *repo_id, const char *commit,
                      const char *path, uint64_t off, uint64_t len,
                      mfs_hub_sink_fn sink, void *ctx, struct mfs_err *err);

/* Counters since mfs_hub_new(), for .modelfs/status and tests. */
struct mfs_hub_stats {
    uint64_t requests;                      /* HTTP requests sent */
    uint64_t bytes_received;                /* body bytes of range GETs */
    uint64_t errors;                        /* requests that failed */
};
void mfs_hub_stats_get(struct mfs_hub *hub, struct mfs_hub_stats *st);

#endif
