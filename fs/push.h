/*
 * fs/push.h - one Hub commit of a mount's staged changes (docs/design.md,
 * Writes, resharding, push; docs/hub-api.md section 6).
 *
 * A push turns the stage (cache/stage.h) into operations over the commit
 * the mount shows: each FILE entry is an add (its bytes read through the
 * stage; an unchanged remote blob carries its known sha256/git oid so it is
 * never hashed nor sent again, and a file the stage hashed while it was
 * written in order, mfs_stage_entry.sha256, is not hashed again), each
 * whiteout of a file or folder of the base tree a deletion (whiteouts of
 * paths the base does not have are dropped: they were already pushed),
 * empty made folders nothing.  Then
 * mfs_hub_commit() with parent_commit = the base commit: preupload drops
 * files the remote already holds, LFS files go through the batch API
 * (basic or multipart), the rest inline, all as ONE commit.  On success the
 * entries the push covered (generation <= the one read at its start) are
 * cleared from the stage, and the new commit's tree is fetched so the
 * caller can show it.  On any failure (-ESTALE: the branch moved, HTTP 412;
 * -EIO; -EACCES) nothing is cleared.
 *
 * Exactly once: if the process dies after the Hub made the commit but
 * before the stage was cleared, the remount shows the new commit, which
 * already holds every staged file, and the next push finds nothing to send
 * and makes no commit (the adds are dropped by preupload, the deletions by
 * the rule above); it then just clears the stage.
 *
 * Threads: one push at a time per struct mfs_push (it locks); progress and
 * last-result queries may come from any thread meanwhile.
 */
#ifndef MFS_FS_PUSH_H
#define MFS_FS_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "cache/stage.h"
#include "common/entry.h"
#include "common/err.h"
#include "hub/hub.h"

struct mfs_buf;
struct mfs_push;

struct mfs_push_cfg {
    struct mfs_hub *hub;                    /* borrowed */
    struct mfs_stage *stage;                /* borrowed */
    struct mfs_cache *cache;                /* borrowed; the new ref and tree are stored */
    const struct mfs_cache_repo *repo;      /* copied */
    const char *revision;                   /* copied; the branch pushed to */
};

struct mfs_push_opts {
    const char *message;                    /* commit title; NULL/"" = the default */
    const char *description;                /* NULL = "" */
    bool create_pr;                         /* open refs/pr/N instead of moving the branch */
};

struct mfs_push_result {
    bool committed;                         /* false: nothing to push, no commit made */
    char commit[41];                        /* the new commit (or the unchanged head) */
    char commit_url[512];
    char pr_url[512];                       /* "" unless create_pr */
    char pr_ref[32];                        /* "refs/pr/N" or "" */
    size_t files_added;                     /* adds in the commit */
    size_t files_deleted;                   /* deletions in the commit */
    size_t files_uploaded;                  /* files whose bytes were sent */
    uint64_t bytes_uploaded;                /* their bytes */
    double seconds;
    int64_t commit_time;                    /* unix seconds of the new commit */
    struct mfs_entry *entries;              /* owned: the new commit's file list */
    size_t n_entries;
};

int mfs_push_new(const struct mfs_push_cfg *cfg, struct mfs_push **pp, struct mfs_err *err);
void mfs_push_free(struct mfs_push **pp);

/* Push the stage over base[0..nbase) (the tree of base_commit, 40 hex,
 * which the mount shows).  OUT: *res (release with mfs_push_result_release).
 * Errors: see the header comment; the reason is also kept for
 * mfs_push_last_json(). */
int mfs_push_run(struct mfs_push *p, const char *base_commit, const struct mfs_entry *base,
                 size_t nbase, const struct mfs_push_opts *opts, struct mfs_push_result *res,
                 struct mfs_err *err);
void mfs_push_result_release(struct mfs_push_result *res);

/* Upload progress of the push running now (running false when none). */
struct mfs_push_progress {
    bool running;
    char path[512];                         /* file being sent */
    uint64_t done;                          /* bytes sent of all files to send */
    uint64_t total;
};
void mfs_push_progress_get(struct mfs_push *p, struct mfs_push_progress *pr);

/* Append the JSON of the last push (what .modelfs/push shows):
 * {"status":"ok"|"error"|"none", "commit", "commit_url", "pr_url",
 *  "files_added", "files_deleted", "files_uploaded", "bytes_uploaded",
 *  "seconds", "error"}.  -ENOMEM. */
int mfs_push_last_json(struct mfs_push *p, struct mfs_buf *out, struct mfs_err *err);

#endif
