/*
 * fs/view_int.h - what fs/view.c (the tree, reads, tensors/, .modelfs/
 * info/status/log) and fs/view_write.c (the stage merged over the commit,
 * open files and their writers, create/rename/unlink/mkdir, push and
 * settings) share.  Private to fs/: only fs/view*.c include it.
 *
 * Nodes live in an array of pointers (inode = index + 1) and are never
 * freed before mfs_view_free(), so an unlinked node an open handle or the
 * kernel still names stays valid, and no inode number is reused.
 *
 * Locking, in this order:
 *   push_mu    serialises pushes, reshards and settings changes;
 *   ckpt_mu    serialises rebuilds of tensors/;
 *   tree       (rwlock) the node graph, node fields, entries, commit;
 *              readers take it shared and copy what they need, so a read
 *              of a repo file holds it only while copying its entry, never
 *              during the fetch;
 *   wnode.mu   one open file's stage writer (writes, commits);
 *   log_mu     the log ring (leaf).
 * A tree mutation (create, rename...) holds the tree exclusively while it
 * stages its change, so the tree and the stage agree at every instant.
 * Each function below says which lock its caller must hold.
 */
#ifndef MFS_FS_VIEW_INT_H
#define MFS_FS_VIEW_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/stage.h"
#include "fs/control.h"
#include "fs/push.h"
#include "fs/view.h"
#include "model/model.h"
#include "model/safetensors.h"

#define DEFAULT_MAX_SHARD 5000000000ull     /* transformers' "5GB" */
#define PATH_MAXLEN 4096                    /* bytes of a repo path, NUL included */

enum node_kind {
    NODE_DIR,
    NODE_FILE,                              /* a repo file (commit or staged) */
    NODE_TENSOR,                            /* tensors/<name> */
    NODE_CTL,                               /* .modelfs/<name> */
};

/* The stage writer of one open file, shared by its write handles. */
struct wnode {
    pthread_mutex_t mu;                     /* guards w, dirty, committed */
    struct mfs_stage_writer *w;             /* owned; NULL once dropped */
    unsigned handles;                       /* write handles open (tree lock) */
    bool dirty;                             /* writes since the last commit */
    bool committed;                         /* committed at least once */
    bool orphan;                            /* its node was unlinked or replaced: never commit
                                               (tree lock) */
    bool tensor;                            /* a tensors/NAME handle's own writer */
};

struct node {
    enum node_kind kind;
    char *path;                             /* owned; from the mount root, "" for the root */
    const char *name;                       /* last component, inside path */
    uint64_t parent;                        /* parent's inode (the root's is itself); 0 once
                                               unlinked */
    uint64_t *children;                     /* owned; child inodes sorted by name (folders) */
    size_t n_children;
    size_t cap_children;
    uint32_t n_subdirs;                     /* child folders, for nlink */
    uint64_t size;                          /* bytes (committed content) */
    bool remote;                            /* FILE: bytes are the commit blob ent */
    struct mfs_entry ent;                   /* FILE when remote: the blob (ent.path owned: its
                                               path in the commit, for the fetch) */
    struct mfs_entry pub;                   /* FILE: what mfs_view_entry shows (path = path) */
    bool staged;                            /* FILE: the stage holds its bytes; DIR: made */
    uint32_t mode;                          /* permission bits; 0 = the default */
    int64_t mtime;                          /* unix seconds; 0 = the commit's time */
    const struct mfs_ckpt_tensor *tensor;   /* TENSOR (kept until free) */
    size_t ctl;                             /* CTL: index in the control table */
    struct wnode *wn;                       /* FILE: the open writer, or NULL */
    uint64_t mark;                          /* sync epoch */
    _Atomic uint64_t lookups;               /* FUSE lookup count */
};

struct range {
    uint64_t off;
    uint64_t end;
};

struct view_handle {
    uint64_t ino;                           /* what was opened */
    struct mfs_ctl_handle *ctl;             /* control files only */
    struct wnode *wn;                       /* opened for writing: the node's writer */
    uint64_t shard_ino;                     /* tensor writes: the shard's node */
    uint64_t t_off;                         /* tensor writes: its bytes in the shard */
    uint64_t t_size;
    struct range *cov;                      /* tensor writes: written ranges, merged, sorted */
    size_t n_cov;
    size_t cap_cov;
    bool dropped;                           /* tensor write refused at flush */
};

/* Things that may still be borrowed by a reader: freed with the view. */
struct graveyard {
    void **p;
    size_t n;
    size_t cap;
};

struct mfs_view {
    char *repo_id;                          /* owned */
    char *revision;                         /* owned */
    char commit[41];
    int64_t commit_time;                    /* unix seconds */
    struct mfs_entry *entries;              /* owned; the commit's safe entries, path order */
    size_t n_entries;
    struct node **nodes;                    /* owned; inode i is nodes[i - 1] */
    size_t n_nodes;
    size_t cap_nodes;
    uint64_t tensors_ino;                   /* 0 when the repo has its own "tensors" */
    uint64_t control_ino;
    mfs_view_read_fn read;
    void *read_ctx;
    struct mfs_fetch *fetch;                /* borrowed */
    struct mfs_cache *cache;                /* borrowed */
    struct mfs_hub *hub;                    /* borrowed */
    struct mfs_ckpt *ckpt;                  /* owned; NULL: none opened */
    struct mfs_ckpt **old_ckpts;            /* owned; replaced ones, still pointed at */
    size_t n_old_ckpts;
    struct mfs_ctl *ctl;                    /* owned */
    uint32_t uid;
    uint32_t gid;
    pid_t pid;                              /* the daemon, for umount */
    uint64_t total_bytes;                   /* sum of repo file sizes */
    bool no_tensors;
    struct mfs_stage *stage;                /* borrowed; NULL = read-only */
    struct mfs_push *push;                  /* borrowed; NULL = never pushed */
    void *(*refetch)(void *ctx, const char *commit);
    void *refetch_ctx;
    uint64_t epoch;                         /* sync marks */
    struct graveyard dead;                  /* old paths */
    pthread_rwlock_t tree;                  /* see the top of the file */
    pthread_mutex_t push_mu;
    pthread_mutex_t ckpt_mu;
    pthread_mutex_t settings_mu;            /* guards settings */
    struct mfs_view_settings settings;
    pthread_mutex_t log_mu;                 /* guards the ring */
    char *log[MFS_VIEW_LOG_LINES];          /* owned lines, oldest at log_head */
    size_t log_head;
    size_t log_n;
};

/* Tree accessors every half uses: the node of inode ino (NULL if none;
 * tree lock held), and the tree lock (see the top of this file). */
static inline struct node *node_of(const struct mfs_view *view, uint64_t ino)
{
    if (ino < 1 || ino > view->n_nodes)
        return NULL;
    return view->nodes[ino - 1];
}

static inline void rdlock(struct mfs_view *view)
{
    pthread_rwlock_rdlock(&view->tree);
}

static inline void wrlock(struct mfs_view *view)
{
    pthread_rwlock_wrlock(&view->tree);
}

static inline void unlock(struct mfs_view *view)
{
    pthread_rwlock_unlock(&view->tree);
}

/* ---- fs/view.c: tree helpers (tree lock held exclusively unless said) --- */

/* Keep p (a path an unlocked reader may still hold) until the view goes. */
void mfs_view_bury(struct mfs_view *view, void *p);

/* Set n's path (taken over) and the name and pub.path inside it. */
void mfs_view_node_set_path(struct node *n, char *path);

/* Append a node (path is taken over); returns its inode or 0 on ENOMEM. */
uint64_t mfs_view_node_add(struct mfs_view *view, enum node_kind kind, char *path,
                           uint64_t parent);

/* The child of folder dir named name, or 0.  Tree lock held (shared is
 * enough). */
uint64_t mfs_view_child_find(const struct mfs_view *view, uint64_t dir, const char *name);

/* Insert child in dir's sorted list (its name is not there).  -ENOMEM. */
int mfs_view_child_insert(struct mfs_view *view, uint64_t dir, uint64_t child);

/* Take child out of dir's list (and its folder count). */
void mfs_view_child_remove(struct mfs_view *view, uint64_t dir, uint64_t child);

/* Take ino and everything under it out of the tree (the nodes stay for
 * whoever still holds their inode).  An open writer of a file in it will
 * not commit any more. */
void mfs_view_detach(struct mfs_view *view, uint64_t ino);

/* "dir/name" ("name" when dir is the root's ""), or NULL on ENOMEM.
 * Returned, freed by the caller with free(). */
char *mfs_view_join(const char *dir, const char *name);

/* True iff path is a safe relative repo path: no leading '/', no empty,
 * "." or ".." component (docs/hub-api.md section 2). */
bool mfs_view_path_safe(const char *path);

/* The node at path in the live tree (walking sorted children), or 0.
 * Tree lock held (shared is enough). */
uint64_t mfs_view_walk(const struct mfs_view *view, const char *path);

/* Find or make the folder at path in the live tree (sorted inserts),
 * marking each folder on the way with the current epoch.  Returns its
 * inode, 0 on ENOMEM or when a file is in the way (*rc -ENOTDIR). */
uint64_t mfs_view_walk_mkdirs(struct mfs_view *view, const char *path, int *rc);

/* qsort/bsearch order of struct mfs_entry: by path (strcmp). */
int mfs_view_cmp_entry_path(const void *a, const void *b);

/* Add a line to the log ring (.modelfs/log).  Any thread, no lock held
 * but the tree lock or none (log_mu is a leaf). */
void mfs_view_logf(struct mfs_view *view, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- fs/view.c: reading ------------------------------------------------- */

/* The default mfs_view_read_fn: the fetcher ctx (struct mfs_fetch). */
ssize_t mfs_view_read_fetch(void *ctx, const struct mfs_entry *e, uint64_t stream, uint64_t off,
                            size_t len, void *buf, struct mfs_err *err);

/* Whether the commit has path, or anything under it (a folder).  Tree lock
 * held (shared is enough). */
bool mfs_view_base_has(const struct mfs_view *view, const char *path);

/* Read up to len bytes at off of file node ino: an open writer's bytes
 * (read-your-writes), the stage's, or the commit blob's.  Takes the tree
 * lock itself; a fetch runs without it. */
ssize_t mfs_view_read_node(struct mfs_view *view, uint64_t ino, uint64_t stream, uint64_t off,
                           size_t len, void *buf, struct mfs_err *err);

/* A struct mfs_ckpt_io / reshard reader over the merged tree (ctx = the
 * view): mfs_view_read_file(). */
ssize_t mfs_view_ckpt_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                           struct mfs_err *err);

/* Whether a change of path may change the checkpoint (tensors/). */
bool mfs_view_is_ckpt_path(const char *path);

/* Set file node n's committed size (and what mfs_view_entry shows). */
void mfs_view_node_set_size(struct node *n, uint64_t size);

/* Make file node n show commit blob e (copied).  -ENOMEM. */
int mfs_view_node_set_remote(struct node *n, const struct mfs_entry *e);

/* Current size of file node n (its writer's when open).  Tree lock held. */
uint64_t mfs_view_node_size(const struct node *n);

/* Make tensors/ match the checkpoint of the live tree: read its headers
 * through the merged reader, then swap the tensor nodes (same name, same
 * inode).  A checkpoint that cannot be read leaves tensors/ empty (logged).
 * No lock held by the caller.  -ENOMEM. */
int mfs_view_tensors_rebuild(struct mfs_view *view, struct mfs_err *err);

/* Close wn's writer and free it.  NULL is a no-op. */
void mfs_view_wnode_free(struct wnode *wn);

/* Attributes of node n (inode ino).  Tree lock held (shared is enough). */
void mfs_view_fill_attr(const struct mfs_view *view, const struct node *n, uint64_t ino,
                        struct mfs_view_attr *a);

/* ---- fs/view_write.c ---------------------------------------------------- */

/* Rebuild the live tree (but tensors/ and .modelfs/) from the commit's
 * entries with the stage merged over them, keeping the inode of every path
 * that stays.  No lock held by the caller.  -ENOMEM, the stage's errors. */
int mfs_view_sync_tree(struct mfs_view *view, struct mfs_err *err);

#endif
