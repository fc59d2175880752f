/*
 * fs/view.c - the mounted tree (fs/view.h): nodes, tensors/, .modelfs/,
 * and on a writable mount the staged changes merged over the commit.
 *
 * Nodes live in an array of pointers (inode = index + 1) and are never
 * freed before mfs_view_free(), so an unlinked node an open handle or the
 * kernel still names stays valid, and no inode number is reused.  A
 * folder's children are sorted by name: lookup is a binary search and
 * readdir offsets are child indices.  mfs_view_new() builds the commit's
 * tree with a hash of full paths, then merges the stage (sync_tree).
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
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/stage.h"
#include "common/buf.h"
#include "fs/control.h"
#include "fs/push.h"
#include "fs/reshard.h"
#include "fs/view.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"

/* config.json larger than this is not a config (info shows nulls). */
#define INFO_MAX_CONFIG_BYTES (4u << 20)
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

/* ---- small helpers ------------------------------------------------------ */

static struct node *node_of(const struct mfs_view *view, uint64_t ino)
{
    if (ino < 1 || ino > view->n_nodes)
        return NULL;
    return view->nodes[ino - 1];
}

static void rdlock(struct mfs_view *view)
{
    pthread_rwlock_rdlock(&view->tree);
}

static void wrlock(struct mfs_view *view)
{
    pthread_rwlock_wrlock(&view->tree);
}

static void unlock(struct mfs_view *view)
{
    pthread_rwlock_unlock(&view->tree);
}

/* Keep p (a path an unlocked reader may still hold) until the view goes. */
static void bury(struct mfs_view *view, void *p)
{
    if (!p)
        return;
    if (view->dead.n == view->dead.cap) {
        size_t cap = view->dead.cap ? view->dead.cap * 2 : 64;
        void **np = realloc(view->dead.p, cap * sizeof(*np));

        if (!np)
            return;                         /* leak it rather than free it early */
        view->dead.p = np;
        view->dead.cap = cap;
    }
    view->dead.p[view->dead.n++] = p;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

/* Open-addressing map from a node's full path to its inode, used while
 * building only. */
struct path_map {
    uint64_t *slots;                        /* inode or 0 */
    size_t mask;
    size_t used;                            /* slots taken; kept <= half, so probes end */
};

static int map_init(struct path_map *m, size_t n)
{
    size_t cap = 64;

    while (cap < 2 * n + 64)
        cap <<= 1;
    m->slots = calloc(cap, sizeof(*m->slots));
    m->mask = cap - 1;
    m->used = 0;
    return m->slots ? 0 : -ENOMEM;
}

static uint64_t map_get(const struct mfs_view *view, const struct path_map *m, const char *path)
{
    size_t i = hash_str(path) & m->mask;

    while (m->slots[i]) {
        if (!strcmp(view->nodes[m->slots[i] - 1]->path, path))
            return m->slots[i];
        i = (i + 1) & m->mask;
    }
    return 0;
}

static void map_insert(const struct mfs_view *view, struct path_map *m, uint64_t ino)
{
    size_t i = hash_str(view->nodes[ino - 1]->path) & m->mask;

    while (m->slots[i])
        i = (i + 1) & m->mask;
    m->slots[i] = ino;
    m->used++;
}

/* Add ino, doubling the table first when it would be more than half full:
 * the number of nodes (files, folders, tensors) is not known up front, and
 * a full table would make map_get probe forever.  -ENOMEM. */
static int map_put(const struct mfs_view *view, struct path_map *m, uint64_t ino)
{
    if (2 * (m->used + 1) > m->mask + 1) {
        struct path_map bigger;
        size_t i;

        bigger.mask = 2 * (m->mask + 1) - 1;
        bigger.used = 0;
        bigger.slots = calloc(bigger.mask + 1, sizeof(*bigger.slots));
        if (!bigger.slots)
            return -ENOMEM;
        for (i = 0; i <= m->mask; i++)
            if (m->slots[i])
                map_insert(view, &bigger, m->slots[i]);
        free(m->slots);
        *m = bigger;
    }
    map_insert(view, m, ino);
    return 0;
}

static void node_set_path(struct node *n, char *path)
{
    const char *slash = strrchr(path, '/');

    n->path = path;
    n->name = slash ? slash + 1 : path;
    n->pub.path = path;
}

/* Append a node (path is taken over); returns its inode or 0 on ENOMEM. */
static uint64_t node_add(struct mfs_view *view, enum node_kind kind, char *path, uint64_t parent)
{
    struct node *n;

    if (view->n_nodes == view->cap_nodes) {
        size_t cap = view->cap_nodes ? view->cap_nodes * 2 : 64;
        struct node **nn = realloc(view->nodes, cap * sizeof(*nn));

        if (!nn) {
            free(path);
            return 0;
        }
        view->nodes = nn;
        view->cap_nodes = cap;
    }
    n = calloc(1, sizeof(*n));
    if (!n) {
        free(path);
        return 0;
    }
    n->kind = kind;
    node_set_path(n, path);
    n->parent = parent ? parent : view->n_nodes + 1;
    atomic_init(&n->lookups, 0);
    view->nodes[view->n_nodes++] = n;
    return view->n_nodes;
}

/* Append child to dir's list (unsorted: building only). */
static int child_add(struct mfs_view *view, uint64_t dir, uint64_t child)
{
    struct node *d = view->nodes[dir - 1];

    if (d->n_children == d->cap_children) {
        size_t cap = d->cap_children ? d->cap_children * 2 : 8;
        uint64_t *c = realloc(d->children, cap * sizeof(*c));

        if (!c)
            return -ENOMEM;
        d->children = c;
        d->cap_children = cap;
    }
    d->children[d->n_children++] = child;
    if (view->nodes[child - 1]->kind == NODE_DIR)
        d->n_subdirs++;
    return 0;
}

/* Index of name among dir's sorted children, or where it would go (*found
 * false). */
static size_t child_pos(const struct mfs_view *view, const struct node *d, const char *name,
                        bool *found)
{
    size_t lo = 0;
    size_t hi = d->n_children;

    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, view->nodes[d->children[mid] - 1]->name);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static uint64_t child_find(const struct mfs_view *view, uint64_t dir, const char *name)
{
    const struct node *d = node_of(view, dir);
    bool found;
    size_t i;

    if (!d || d->kind != NODE_DIR)
        return 0;
    i = child_pos(view, d, name, &found);
    return found ? d->children[i] : 0;
}

/* Insert child in dir's sorted list (its name is not there).  -ENOMEM. */
static int child_insert(struct mfs_view *view, uint64_t dir, uint64_t child)
{
    struct node *d = view->nodes[dir - 1];
    struct node *c = view->nodes[child - 1];
    bool found;
    size_t i;

    if (d->n_children == d->cap_children) {
        size_t cap = d->cap_children ? d->cap_children * 2 : 8;
        uint64_t *nc = realloc(d->children, cap * sizeof(*nc));

        if (!nc)
            return -ENOMEM;
        d->children = nc;
        d->cap_children = cap;
    }
    i = child_pos(view, d, c->name, &found);
    memmove(&d->children[i + 1], &d->children[i], (d->n_children - i) * sizeof(*d->children));
    d->children[i] = child;
    d->n_children++;
    if (c->kind == NODE_DIR)
        d->n_subdirs++;
    c->parent = dir;
    return 0;
}

static void child_remove(struct mfs_view *view, uint64_t dir, uint64_t child)
{
    struct node *d = node_of(view, dir);
    struct node *c = view->nodes[child - 1];
    size_t i;

    if (!d)
        return;
    for (i = 0; i < d->n_children; i++) {
        if (d->children[i] != child)
            continue;
        memmove(&d->children[i], &d->children[i + 1],
                (d->n_children - i - 1) * sizeof(*d->children));
        d->n_children--;
        if (c->kind == NODE_DIR && d->n_subdirs)
            d->n_subdirs--;
        break;
    }
}

/* Take ino and everything under it out of the tree (the nodes stay for
 * whoever still holds their inode).  An open writer of a file in it will
 * not commit any more. */
static void detach(struct mfs_view *view, uint64_t ino)
{
    struct node *n = node_of(view, ino);
    size_t i;

    if (!n || ino == MFS_VIEW_ROOT_INO || !n->parent)
        return;
    for (i = n->n_children; i > 0; i--)
        detach(view, n->children[i - 1]);
    child_remove(view, n->parent, ino);
    n->parent = 0;
    if (n->wn) {
        pthread_mutex_lock(&n->wn->mu);
        n->wn->orphan = true;
        pthread_mutex_unlock(&n->wn->mu);
    }
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir);
    size_t b = strlen(name);
    char *p = malloc(a + b + 2);

    if (!p)
        return NULL;
    if (a) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    } else {
        memcpy(p, name, b + 1);
    }
    return p;
}

/* True iff path is a safe relative repo path: no leading '/', no empty,
 * "." or ".." component (docs/hub-api.md section 2). */
static bool path_safe(const char *path)
{
    const char *p = path;

    if (!*p || *p == '/')
        return false;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);

        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!e)
            break;
        p = e + 1;
        if (!*p)
            return false;
    }
    return strlen(path) < PATH_MAXLEN;
}

/* Find or make the folder at path (and its parents); returns its inode or 0.
 * -ENOTDIR in *rc when a file already has that path. */
static uint64_t ensure_dir(struct mfs_view *view, struct path_map *m, const char *path, int *rc)
{
    uint64_t ino;
    uint64_t parent;
    const char *slash;
    char *copy;
    char *parent_path;

    if (!*path)
        return MFS_VIEW_ROOT_INO;
    ino = map_get(view, m, path);
    if (ino) {
        if (view->nodes[ino - 1]->kind != NODE_DIR) {
            *rc = -ENOTDIR;
            return 0;
        }
        return ino;
    }
    slash = strrchr(path, '/');
    parent_path = slash ? strndup(path, (size_t)(slash - path)) : strdup("");
    if (!parent_path) {
        *rc = -ENOMEM;
        return 0;
    }
    parent = ensure_dir(view, m, parent_path, rc);
    free(parent_path);
    if (!parent)
        return 0;
    copy = strdup(path);
    if (!copy) {
        *rc = -ENOMEM;
        return 0;
    }
    ino = node_add(view, NODE_DIR, copy, parent);
    if (!ino || child_add(view, parent, ino) < 0) {
        *rc = -ENOMEM;
        return 0;
    }
    if (map_put(view, m, ino) < 0) {
        *rc = -ENOMEM;
        return 0;
    }
    return ino;
}

/* The node at path in the live tree (walking sorted children), or 0. */
static uint64_t walk(const struct mfs_view *view, const char *path)
{
    char comp[256];
    uint64_t ino = MFS_VIEW_ROOT_INO;
    const char *p = path;

    while (*p && ino) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);

        if (n >= sizeof(comp))
            return 0;
        memcpy(comp, p, n);
        comp[n] = '\0';
        ino = child_find(view, ino, comp);
        p = e ? e + 1 : p + n;
    }
    return ino;
}

/* Find or make the folder at path in the live tree (sorted inserts),
 * marking each folder on the way with the current epoch.  Returns its
 * inode, 0 on ENOMEM or when a file is in the way (*rc -ENOTDIR). */
static uint64_t walk_mkdirs(struct mfs_view *view, const char *path, int *rc)
{
    uint64_t ino = MFS_VIEW_ROOT_INO;
    const char *p = path;

    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *sub = strndup(path, (size_t)(p - path) + n);
        char *name;
        uint64_t next;

        if (!sub) {
            *rc = -ENOMEM;
            return 0;
        }
        name = strrchr(sub, '/');
        name = name ? name + 1 : sub;
        next = child_find(view, ino, name);
        if (next && view->nodes[next - 1]->kind != NODE_DIR) {
            free(sub);
            *rc = -ENOTDIR;
            return 0;
        }
        if (!next) {
            next = node_add(view, NODE_DIR, sub, ino);
            if (!next || child_insert(view, ino, next) < 0) {
                *rc = -ENOMEM;
                return 0;
            }
        } else {
            free(sub);
        }
        view->nodes[next - 1]->mark = view->epoch;
        ino = next;
        p = e ? e + 1 : p + n;
    }
    return ino;
}

static int cmp_entry_path(const void *a, const void *b)
{
    return strcmp(((const struct mfs_entry *)a)->path, ((const struct mfs_entry *)b)->path);
}

/* The view whose nodes a qsort_r of children compares. */
static int cmp_child(const void *a, const void *b, void *ctx)
{
    const struct mfs_view *view = ctx;

    return strcmp(view->nodes[*(const uint64_t *)a - 1]->name,
                  view->nodes[*(const uint64_t *)b - 1]->name);
}

static void log_line(struct mfs_view *view, const char *text)
{
    char stamp[32];
    struct tm tm;
    time_t now = time(NULL);
    struct mfs_buf b = MFS_BUF_INIT;
    size_t slot;
    char *line;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (mfs_buf_printf(&b, "%s %s", stamp, text) < 0)
        return;
    line = mfs_buf_steal(&b);
    if (!line)
        return;
    /* One line each: a reason from a server may carry newlines. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    pthread_mutex_lock(&view->log_mu);
    if (view->log_n == MFS_VIEW_LOG_LINES) {
        free(view->log[view->log_head]);
        view->log[view->log_head] = line;
        view->log_head = (view->log_head + 1) % MFS_VIEW_LOG_LINES;
    } else {
        slot = (view->log_head + view->log_n) % MFS_VIEW_LOG_LINES;
        view->log[slot] = line;
        view->log_n++;
    }
    pthread_mutex_unlock(&view->log_mu);
}

static void logf_view(struct mfs_view *view, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void logf_view(struct mfs_view *view, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_line(view, text);
}

void mfs_view_log(struct mfs_view *view, const char *op, uint64_t ino, const struct mfs_err *err)
{
    const struct node *n;
    char path[PATH_MAXLEN];

    if (!view)
        return;
    rdlock(view);
    n = node_of(view, ino);
    snprintf(path, sizeof(path), "%s", n ? n->path : "?");
    unlock(view);
    logf_view(view, "%s '%s': %s", op, path, err && err->msg[0] ? err->msg : "failed");
}

void mfs_view_log_path(void *viewp, const char *path, const struct mfs_err *err)
{
    struct mfs_view *view = viewp;

    if (!view)
        return;
    if (err && err->msg[0] && path && strstr(err->msg, path))
        logf_view(view, "%s", err->msg);      /* the reason already names the file */
    else
        logf_view(view, "'%s': %s", path ? path : "", err && err->msg[0] ? err->msg : "failed");
}

/* ---- reading repo files ---------------------------------------------------- */

static ssize_t read_fetch(void *ctx, const struct mfs_entry *e, uint64_t stream, uint64_t off,
                          size_t len, void *buf, struct mfs_err *err)
{
    if (!ctx)
        return mfs_err_set(err, -EIO, "cannot read '%s': no reader", e->path);
    return mfs_fetch_read(ctx, e, stream, off, len, buf, err);
}

static const struct mfs_entry *entry_find(const struct mfs_view *view, const char *path)
{
    struct mfs_entry key = { 0 };

    key.path = (char *)path;
    return bsearch(&key, view->entries, view->n_entries, sizeof(key), cmp_entry_path);
}

/* Whether the commit has path, or anything under it (a folder). */
static bool base_has(const struct mfs_view *view, const char *path)
{
    size_t lo = 0;
    size_t hi = view->n_entries;
    size_t len = strlen(path);

    if (entry_find(view, path))
        return true;
    while (lo < hi) {                       /* the first entry > path */
        size_t mid = lo + (hi - lo) / 2;

        if (strcmp(view->entries[mid].path, path) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Entries under "a/" sort among those starting with "a" after "a",
     * but "a-b" or "a.c" may come first: scan those. */
    for (; lo < view->n_entries && !strncmp(view->entries[lo].path, path, len); lo++)
        if (view->entries[lo].path[len] == '/')
            return true;
    return false;
}

/* Read up to len bytes at off of file node ino: an open writer's bytes
 * (read-your-writes), the stage's, or the commit blob's.  Takes the tree
 * lock itself; a fetch runs without it. */
static ssize_t read_node(struct mfs_view *view, uint64_t ino, uint64_t stream, uint64_t off,
                         size_t len, void *buf, struct mfs_err *err)
{
    struct node *n;
    struct mfs_entry e;
    char path[PATH_MAXLEN];
    mfs_view_read_fn fn;
    void *ctx;
    ssize_t r;

    rdlock(view);
    n = node_of(view, ino);
    if (!n || n->kind != NODE_FILE) {
        unlock(view);
        return mfs_err_set(err, -ENOENT, "no file at inode %llu", (unsigned long long)ino);
    }
    if (n->wn) {
        struct wnode *wn = n->wn;

        pthread_mutex_lock(&wn->mu);
        if (wn->w)
            r = mfs_stage_writer_read(wn->w, off, len, buf, err);
        else
            r = mfs_err_set(err, -EIO, "cannot read '%s': its writer failed", n->path);
        pthread_mutex_unlock(&wn->mu);
        unlock(view);
        return r;
    }
    if (!n->remote) {
        snprintf(path, sizeof(path), "%s", n->path);
        unlock(view);
        if (!view->stage)
            return mfs_err_set(err, -EIO, "cannot read '%s': nothing staged", path);
        return mfs_stage_read(view->stage, path, off, len, buf, err);
    }
    e = n->ent;
    snprintf(path, sizeof(path), "%s", n->ent.path);
    e.path = path;
    fn = view->read;
    ctx = view->read_ctx;
    unlock(view);
    if (off >= e.size || len == 0)
        return 0;
    if (len > e.size - off)
        len = (size_t)(e.size - off);
    return fn(ctx, &e, stream, off, len, buf, err);
}

const struct mfs_entry *mfs_view_entry(const struct mfs_view *view, const char *path)
{
    struct mfs_view *v = (struct mfs_view *)view;
    const struct mfs_entry *e = NULL;
    uint64_t ino;

    rdlock(v);
    ino = walk(v, path);
    /* Only files of the repo tree: tensors/ and .modelfs/ hold other kinds. */
    if (ino && v->nodes[ino - 1]->kind == NODE_FILE)
        e = &v->nodes[ino - 1]->pub;
    unlock(v);
    return e;
}

ssize_t mfs_view_read_file(struct mfs_view *view, const char *path, uint64_t off, size_t len,
                           void *buf, struct mfs_err *err)
{
    uint64_t ino;

    rdlock(view);
    ino = walk(view, path);
    if (ino && view->nodes[ino - 1]->kind != NODE_FILE)
        ino = 0;
    unlock(view);
    if (!ino)
        return mfs_err_set(err, -ENOENT, "cannot read '%s': no such file in the repo", path);
    return read_node(view, ino, 0, off, len, buf, err);
}

static ssize_t ckpt_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    return mfs_view_read_file(ctx, path, off, len, buf, err);
}

/* Whether a change of path may change the checkpoint (tensors/). */
static bool is_ckpt_path(const char *path)
{
    size_t n = strlen(path);

    if (strchr(path, '/'))
        return false;
    return (n > 12 && !strcmp(path + n - 12, ".safetensors")) ||
           (n > 11 && !strcmp(path + n - 11, ".index.json")) ||
           (n > 4 && !strcmp(path + n - 4, ".bin"));
}

/* ---- building and merging ------------------------------------------------ */

static void node_set_size(struct node *n, uint64_t size)
{
    n->size = size;
    n->pub.size = size;
}

/* Make file node n show commit blob e (copied).  -ENOMEM. */
static int node_set_remote(struct node *n, const struct mfs_entry *e)
{
    char *p = strdup(e->path ? e->path : "");

    if (!p)
        return -ENOMEM;
    free(n->ent.path);
    n->ent = *e;
    n->ent.path = p;
    n->remote = true;
    return 0;
}

static int build_files(struct mfs_view *view, const struct mfs_view_cfg *cfg, struct path_map *m,
                       struct mfs_err *err)
{
    size_t i;
    size_t kept = 0;
    int rc = 0;

    view->entries = calloc(cfg->n_entries ? cfg->n_entries : 1, sizeof(*view->entries));
    if (!view->entries)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    for (i = 0; i < cfg->n_entries; i++) {
        const struct mfs_entry *src = &cfg->entries[i];
        const char *p = src->path ? src->path : "";
        bool is_control = !strcmp(p, MFS_VIEW_CONTROL) ||
                          !strncmp(p, MFS_VIEW_CONTROL "/", sizeof(MFS_VIEW_CONTROL));

        if (!path_safe(p)) {
            logf_view(view, "'%s': unsafe path in the repo's file list, left out", p);
            continue;
        }
        if (is_control) {
            logf_view(view, "'%s': hidden by the control folder", p);
            continue;
        }
        view->entries[kept] = *src;
        view->entries[kept].path = strdup(p);
        if (!view->entries[kept].path)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        kept++;
    }
    view->n_entries = kept;
    qsort(view->entries, kept, sizeof(*view->entries), cmp_entry_path);
    for (i = 0; i < kept; i++) {
        const struct mfs_entry *e = &view->entries[i];
        const char *slash;
        char *dir;
        char *path;
        uint64_t parent;
        uint64_t ino;

        if (e->is_dir) {
            rc = 0;
            if (!ensure_dir(view, m, e->path, &rc) && rc == -ENOMEM)
                return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
            if (rc)
                logf_view(view, "'%s': both a file and a folder, folder left out", e->path);
            continue;
        }
        if (map_get(view, m, e->path)) {
            logf_view(view, "'%s': listed twice or also a folder, left out", e->path);
            continue;
        }
        slash = strrchr(e->path, '/');
        dir = slash ? strndup(e->path, (size_t)(slash - e->path)) : strdup("");
        if (!dir)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        rc = 0;
        parent = ensure_dir(view, m, dir, &rc);
        free(dir);
        if (!parent) {
            if (rc == -ENOMEM)
                return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
            logf_view(view, "'%s': its folder is also a file, left out", e->path);
            continue;
        }
        path = strdup(e->path);
        if (!path)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        ino = node_add(view, NODE_FILE, path, parent);
        if (!ino || child_add(view, parent, ino) < 0 ||
            node_set_remote(view->nodes[ino - 1], e) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        node_set_size(view->nodes[ino - 1], e->size);
        view->total_bytes += e->size;
        if (map_put(view, m, ino) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    }
    return 0;
}

static int cmp_stage_path(const void *a, const void *b)
{
    return strcmp(((const struct mfs_stage_entry *)a)->path,
                  ((const struct mfs_stage_entry *)b)->path);
}

static const struct mfs_stage_entry *stage_find(const struct mfs_stage_entry *se, size_t ns,
                                                const char *path)
{
    struct mfs_stage_entry key;

    if (!se || ns == 0)
        return NULL;
    memset(&key, 0, sizeof(key));
    key.path = (char *)path;
    return bsearch(&key, se, ns, sizeof(key), cmp_stage_path);
}

/* Whether the commit's path is hidden by the stage: an entry at path, or
 * a whiteout (or a file) at one of its folders. */
static bool stage_hides(const struct mfs_stage_entry *se, size_t ns, const char *path)
{
    char buf[PATH_MAXLEN];
    char *slash;

    if (stage_find(se, ns, path))
        return true;
    snprintf(buf, sizeof(buf), "%s", path);
    for (slash = strrchr(buf, '/'); slash; slash = strrchr(buf, '/')) {
        const struct mfs_stage_entry *s;

        *slash = '\0';
        s = stage_find(se, ns, buf);
        if (s && (s->kind == MFS_STAGE_DELETED || s->kind == MFS_STAGE_FILE))
            return true;
    }
    return false;
}

/* The control folder and (when shown) tensors/ are the view's own. */
static bool special_path(const struct mfs_view *view, const char *p)
{
    if (!strcmp(p, MFS_VIEW_CONTROL) || !strncmp(p, MFS_VIEW_CONTROL "/", 9))
        return true;
    return view->tensors_ino &&
           (!strcmp(p, MFS_VIEW_TENSORS) || !strncmp(p, MFS_VIEW_TENSORS "/", 8));
}

/* Make file path of the live tree show base entry e or stage entry s
 * (sync_tree).  Tree lock held exclusively.  -ENOMEM; a folder in the way
 * of a file is left (logged). */
static int sync_file(struct mfs_view *view, const char *path, const struct mfs_entry *e,
                     const struct mfs_stage_entry *s)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup("");
    uint64_t parent;
    uint64_t ino;
    struct node *n;
    int rc = 0;

    if (!dir)
        return -ENOMEM;
    parent = walk_mkdirs(view, dir, &rc);
    free(dir);
    if (!parent) {
        if (rc == -ENOTDIR) {
            logf_view(view, "'%s': its folder is also a file, left out", path);
            rc = 0;
        }
        return rc;
    }
    ino = child_find(view, parent, slash ? slash + 1 : path);
    if (ino && view->nodes[ino - 1]->kind != NODE_FILE) {
        detach(view, ino);
        ino = 0;
    }
    if (!ino) {
        char *copy = strdup(path);

        if (!copy)
            return -ENOMEM;
        ino = node_add(view, NODE_FILE, copy, parent);
        if (!ino || child_insert(view, parent, ino) < 0)
            return -ENOMEM;
    }
    n = view->nodes[ino - 1];
    n->mark = view->epoch;
    if (e) {
        rc = node_set_remote(n, e);
        node_set_size(n, e->size);
        n->staged = false;
        n->mode = 0;
        n->mtime = 0;
    } else {
        if (s->unchanged_remote)
            rc = node_set_remote(n, &s->remote);
        else
            n->remote = false;
        node_set_size(n, s->size);
        n->staged = true;
        n->mode = s->mode;
        n->mtime = s->mtime;
    }
    return rc;
}

/* Rebuild the live tree (but tensors/ and .modelfs/) from the commit's
 * entries with the stage merged over them, keeping the inode of every path
 * that stays.  No lock held by the caller.  -ENOMEM, the stage's errors. */
static int sync_tree(struct mfs_view *view, struct mfs_err *err)
{
    struct mfs_stage_entry *se = NULL;
    uint64_t *gone = NULL;
    size_t n_gone = 0;
    size_t ns = 0;
    size_t i;
    int rc;

    if (!view->stage)
        return 0;
    rc = mfs_stage_list(view->stage, &se, &ns, err);
    if (rc < 0)
        return rc;
    wrlock(view);
    view->epoch++;
    view->nodes[0]->mark = view->epoch;
    if (view->tensors_ino)
        view->nodes[view->tensors_ino - 1]->mark = view->epoch;
    if (view->control_ino)
        view->nodes[view->control_ino - 1]->mark = view->epoch;
    for (i = 0; i < view->n_entries && rc == 0; i++) {
        const struct mfs_entry *e = &view->entries[i];

        if (special_path(view, e->path) || stage_hides(se, ns, e->path))
            continue;
        if (e->is_dir) {
            if (!walk_mkdirs(view, e->path, &rc) && rc == -ENOTDIR)
                rc = 0;
        } else {
            rc = sync_file(view, e->path, e, NULL);
        }
    }
    for (i = 0; i < ns && rc == 0; i++) {
        const struct mfs_stage_entry *s = &se[i];
        uint64_t ino;

        if (!path_safe(s->path) || special_path(view, s->path) ||
            s->kind == MFS_STAGE_DELETED)
            continue;
        if (s->kind == MFS_STAGE_FILE) {
            rc = sync_file(view, s->path, NULL, s);
            continue;
        }
        ino = walk_mkdirs(view, s->path, &rc);
        if (!ino && rc == -ENOTDIR)
            rc = 0;
        if (ino) {
            view->nodes[ino - 1]->staged = true;
            view->nodes[ino - 1]->mode = s->mode;
            view->nodes[ino - 1]->mtime = s->mtime;
        }
    }
    if (rc == 0)
        gone = calloc(view->n_nodes + 1, sizeof(*gone));
    if (rc == 0 && !gone)
        rc = -ENOMEM;
    for (i = 1; rc == 0 && i < view->n_nodes; i++) {
        struct node *n = view->nodes[i];

        if (!n->parent || n->mark == view->epoch ||
            (n->kind != NODE_FILE && n->kind != NODE_DIR))
            continue;
        if (n->wn && !n->wn->orphan)
            continue;                       /* open and not yet committed: stays */
        gone[n_gone++] = i + 1;
    }
    for (i = 0; i < n_gone; i++)
        detach(view, gone[i]);
    view->total_bytes = 0;
    for (i = 0; i < view->n_nodes; i++)
        if (view->nodes[i]->kind == NODE_FILE && view->nodes[i]->parent)
            view->total_bytes += view->nodes[i]->size;
    unlock(view);
    free(gone);
    mfs_stage_entries_free(se, ns);
    if (rc == -ENOMEM)
        return mfs_err_set(err, -ENOMEM, "cannot merge the staged changes: out of memory");
    return rc;
}

/* Current size of file node n (its writer's when open).  Tree lock held. */
static uint64_t node_size(const struct node *n)
{
    uint64_t size = n->size;

    if (n->kind == NODE_FILE && n->wn) {
        pthread_mutex_lock(&n->wn->mu);
        if (n->wn->w)
            size = mfs_stage_writer_size(n->wn->w);
        pthread_mutex_unlock(&n->wn->mu);
    }
    return size;
}

/* Make tensors/ match the checkpoint of the live tree: read its headers
 * through the merged reader, then swap the tensor nodes (same name, same
 * inode).  A checkpoint that cannot be read leaves tensors/ empty (logged).
 * No lock held by the caller.  -ENOMEM. */
static int tensors_rebuild(struct mfs_view *view, struct mfs_err *err)
{
    bool oom;
    struct mfs_ckpt_io io = { ckpt_read, mfs_view_log_path, view };
    struct mfs_ckpt_file *files = NULL;
    struct mfs_ckpt *ck = NULL;
    struct mfs_ckpt **olds;
    size_t n = 0;
    size_t i;
    int rc = 0;

    if (!view->tensors_ino || view->no_tensors)
        return 0;
    pthread_mutex_lock(&view->ckpt_mu);
    rdlock(view);
    files = calloc(view->n_nodes + 1, sizeof(*files));
    oom = !files;
    for (i = 0; files && i < view->n_nodes; i++) {
        struct node *nd = view->nodes[i];

        if (nd->kind != NODE_FILE || !nd->parent)
            continue;
        files[n].path = strdup(nd->path);
        files[n].size = node_size(nd);
        if (!files[n].path) {
            oom = true;
            break;
        }
        n++;
    }
    unlock(view);
    if (oom) {
        rc = mfs_err_set(err, -ENOMEM, "cannot list the checkpoint: out of memory");
        goto out_free_files;
    }
    rc = mfs_ckpt_open(files, n, NULL, &io, &ck, err);
    if (rc == -ENOMEM)
        goto out_free_files;
    if (rc < 0) {
        /* The files still work without tensors/ (a gated repo, a flaky
         * server): say why in the log rather than refuse the mount. */
        logf_view(view, "tensors/ is empty: %s", err && err->msg[0] ? err->msg : "no checkpoint");
        mfs_err_clear(err);
        ck = NULL;
        rc = 0;
    }
    olds = realloc(view->old_ckpts, (view->n_old_ckpts + 1) * sizeof(*olds));
    if (!olds) {
        mfs_ckpt_free(&ck);
        rc = mfs_err_set(err, -ENOMEM, "cannot rebuild tensors/: out of memory");
        goto out_free_files;
    }
    view->old_ckpts = olds;
    wrlock(view);
    view->epoch++;
    for (i = 0; ck && i < ck->n_tensors; i++) {
        const struct mfs_ckpt_tensor *t = &ck->tensors[i];
        uint64_t shard = walk(view, t->file);
        struct node *s = shard ? view->nodes[shard - 1] : NULL;
        uint64_t size = s && s->kind == NODE_FILE ? node_size(s) : 0;
        uint64_t ino;

        if (!t->name || !t->name[0] || strchr(t->name, '/') || !strcmp(t->name, ".") ||
            !strcmp(t->name, "..")) {
            logf_view(view, "'%s': tensor name '%s' cannot be a file name, left out",
                      t->file, t->name ? t->name : "");
            continue;
        }
        if (!s || s->kind != NODE_FILE || t->offset > size || t->nbytes > size - t->offset) {
            logf_view(view, "'%s': tensor '%s' lies outside its file, left out", t->file,
                      t->name);
            continue;
        }
        ino = child_find(view, view->tensors_ino, t->name);
        if (ino && view->nodes[ino - 1]->mark == view->epoch)
            continue;                       /* a name twice: the first wins */
        if (!ino) {
            char *path = join(MFS_VIEW_TENSORS, t->name);

            if (!path) {
                rc = -ENOMEM;
                break;
            }
            ino = node_add(view, NODE_TENSOR, path, view->tensors_ino);
            if (!ino || child_insert(view, view->tensors_ino, ino) < 0) {
                rc = -ENOMEM;
                break;
            }
        }
        view->nodes[ino - 1]->tensor = t;
        node_set_size(view->nodes[ino - 1], t->nbytes);
        view->nodes[ino - 1]->mark = view->epoch;
    }
    {
        struct node *d = view->nodes[view->tensors_ino - 1];

        for (i = d->n_children; i > 0; i--)
            if (view->nodes[d->children[i - 1] - 1]->mark != view->epoch)
                detach(view, d->children[i - 1]);
    }
    if (view->ckpt)
        view->old_ckpts[view->n_old_ckpts++] = view->ckpt;
    view->ckpt = ck;
    unlock(view);
    if (rc < 0)
        rc = mfs_err_set(err, rc, "cannot rebuild tensors/: out of memory");
out_free_files:
    for (i = 0; files && i < n; i++)
        free((char *)files[i].path);
    free(files);
    pthread_mutex_unlock(&view->ckpt_mu);
    return rc;
}

static int add_ctl_node(struct mfs_view *view, size_t idx, struct mfs_err *err)
{
    char *path = join(MFS_VIEW_CONTROL, mfs_ctl_name(view->ctl, idx));
    uint64_t ino;

    if (!path)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    ino = node_add(view, NODE_CTL, path, view->control_ino);
    if (!ino || child_insert(view, view->control_ino, ino) < 0)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    view->nodes[ino - 1]->ctl = idx;
    return 0;
}

static const struct mfs_ctl_handler ctl_info;
static const struct mfs_ctl_handler ctl_status;
static const struct mfs_ctl_handler ctl_log;

static int build_control(struct mfs_view *view, const struct mfs_view_cfg *cfg,
                         struct mfs_err *err)
{
    const struct mfs_ctl_handler *const builtin[] = { &ctl_info, &ctl_log, &ctl_status };
    size_t i;
    int rc = 0;

    view->control_ino = walk_mkdirs(view, MFS_VIEW_CONTROL, &rc);
    if (!view->control_ino)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    rc = mfs_ctl_new(view, &view->ctl, err);
    if (rc < 0)
        return rc;
    for (i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        rc = mfs_ctl_add(view->ctl, builtin[i], NULL, err);
        if (rc < 0)
            return rc;
    }
    if (!cfg->no_control_plugins) {
        for (i = 0; mfs_ctl_plugins[i]; i++) {
            rc = mfs_ctl_add_init(view->ctl, mfs_ctl_plugins[i], err);
            if (rc < 0) {
                logf_view(view, "'%s/%s': %s", MFS_VIEW_CONTROL, mfs_ctl_plugins[i]->name,
                          err ? err->msg : "cannot start");
                mfs_err_clear(err);
            }
        }
    }
    return 0;
}

int mfs_view_ctl_add(struct mfs_view *view, const struct mfs_ctl_handler *h, void *state,
                     struct mfs_err *err)
{
    int rc = mfs_ctl_add(view->ctl, h, state, err);

    if (rc < 0)
        return rc;
    wrlock(view);
    rc = add_ctl_node(view, mfs_ctl_count(view->ctl) - 1, err);
    unlock(view);
    return rc;
}

int mfs_view_new(const struct mfs_view_cfg *cfg, struct mfs_view **viewp, struct mfs_err *err)
{
    struct mfs_view *view;
    struct path_map map = { NULL, 0, 0 };
    char *root_path;
    size_t i;
    int rc;

    *viewp = NULL;
    view = calloc(1, sizeof(*view));
    if (!view)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    pthread_mutex_init(&view->log_mu, NULL);
    pthread_rwlock_init(&view->tree, NULL);
    pthread_mutex_init(&view->push_mu, NULL);
    pthread_mutex_init(&view->ckpt_mu, NULL);
    pthread_mutex_init(&view->settings_mu, NULL);
    view->repo_id = strdup(cfg->repo_id ? cfg->repo_id : "");
    view->revision = strdup(cfg->revision ? cfg->revision : "main");
    snprintf(view->commit, sizeof(view->commit), "%s", cfg->commit ? cfg->commit : "");
    view->commit_time = cfg->commit_time;
    view->read = cfg->read ? cfg->read : read_fetch;
    view->read_ctx = cfg->read ? cfg->read_ctx : cfg->fetch;
    view->fetch = cfg->fetch;
    view->cache = cfg->cache;
    view->hub = cfg->hub;
    view->uid = cfg->uid;
    view->gid = cfg->gid;
    view->pid = getpid();
    view->no_tensors = cfg->no_tensors;
    view->stage = cfg->stage;
    view->push = cfg->stage ? cfg->push : NULL;
    view->refetch = cfg->refetch;
    view->refetch_ctx = cfg->refetch_ctx;
    view->settings.max_shard_size = cfg->max_shard_size ? cfg->max_shard_size
                                                        : DEFAULT_MAX_SHARD;
    view->settings.create_pr = cfg->create_pr;
    snprintf(view->settings.commit_message, sizeof(view->settings.commit_message), "%s",
             cfg->commit_message ? cfg->commit_message : "");
    if (!view->repo_id || !view->revision) {
        rc = mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        goto out_free_view;
    }
    rc = map_init(&map, cfg->n_entries * 2 + 16);
    if (rc < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        goto out_free_view;
    }
    root_path = strdup("");
    if (!root_path || !node_add(view, NODE_DIR, root_path, 0)) {
        rc = mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        goto out_free_map;
    }
    rc = build_files(view, cfg, &map, err);
    if (rc < 0)
        goto out_free_map;
    for (i = 0; i < view->n_nodes; i++) {
        struct node *n = view->nodes[i];

        if (n->kind == NODE_DIR && n->n_children > 1)
            qsort_r(n->children, n->n_children, sizeof(*n->children), cmp_child, view);
    }
    rc = sync_tree(view, err);
    if (rc < 0)
        goto out_free_map;
    rc = build_control(view, cfg, err);
    if (rc < 0)
        goto out_free_map;
    if (walk(view, MFS_VIEW_TENSORS)) {
        logf_view(view, "'%s': the repo has its own, so the tensor folder is not shown",
                  MFS_VIEW_TENSORS);
    } else {
        view->tensors_ino = walk_mkdirs(view, MFS_VIEW_TENSORS, &rc);
        if (!view->tensors_ino) {
            rc = mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
            goto out_free_map;
        }
        /* After every mfs_ctl_add_init: handlers may look at the tree. */
        rc = tensors_rebuild(view, err);
        if (rc < 0)
            goto out_free_map;
    }
    for (i = 0; i < mfs_ctl_count(view->ctl); i++) {
        rc = add_ctl_node(view, i, err);
        if (rc < 0)
            goto out_free_map;
    }
    free(map.slots);
    *viewp = view;
    return 0;

out_free_map:
    free(map.slots);
out_free_view:
    mfs_view_free(&view);
    return rc;
}

void mfs_view_shutdown(struct mfs_view *view)
{
    if (view)
        mfs_ctl_shutdown(view->ctl);
}

static void wnode_free(struct wnode *wn)
{
    if (!wn)
        return;
    mfs_stage_writer_close(&wn->w);
    pthread_mutex_destroy(&wn->mu);
    free(wn);
}

void mfs_view_free(struct mfs_view **viewp)
{
    struct mfs_view *view;
    size_t i;

    if (!viewp || !*viewp)
        return;
    view = *viewp;
    mfs_ctl_free(&view->ctl);
    for (i = 0; i < view->n_nodes; i++) {
        struct node *n = view->nodes[i];

        /* A writer still attached lost its handles without a release
         * (never with FUSE): drop it. */
        wnode_free(n->wn);
        free(n->path);
        free(n->children);
        free(n->ent.path);
        free(n);
    }
    free(view->nodes);
    mfs_ckpt_free(&view->ckpt);
    for (i = 0; i < view->n_old_ckpts; i++)
        mfs_ckpt_free(&view->old_ckpts[i]);
    free(view->old_ckpts);
    for (i = 0; i < view->dead.n; i++)
        free(view->dead.p[i]);
    free(view->dead.p);
    mfs_entries_free(view->entries, view->n_entries);
    for (i = 0; i < view->log_n; i++)
        free(view->log[(view->log_head + i) % MFS_VIEW_LOG_LINES]);
    pthread_mutex_destroy(&view->log_mu);
    pthread_rwlock_destroy(&view->tree);
    pthread_mutex_destroy(&view->push_mu);
    pthread_mutex_destroy(&view->ckpt_mu);
    pthread_mutex_destroy(&view->settings_mu);
    free(view->repo_id);
    free(view->revision);
    free(view);
    *viewp = NULL;
}

/* ---- attributes, lookup, readdir --------------------------------------- */

/* Tree lock held (shared is enough). */
static void fill_attr(const struct mfs_view *view, const struct node *n, uint64_t ino,
                      struct mfs_view_attr *a)
{
    bool writable = view->stage != NULL;

    memset(a, 0, sizeof(*a));
    a->ino = ino;
    a->mtime = n->mtime ? n->mtime : view->commit_time;
    a->uid = view->uid;
    a->gid = view->gid;
    switch (n->kind) {
    case NODE_DIR:
        a->mode = S_IFDIR | (writable ? (n->mode ? (n->mode & 07777) : 0755) : 0555);
        a->nlink = 2 + n->n_subdirs;
        break;
    case NODE_CTL:
        a->mode = S_IFREG | (mfs_ctl_writable(view->ctl, n->ctl) ? 0666 : 0444);
        a->nlink = 1;
        break;
    case NODE_FILE:
        a->mode = S_IFREG | (writable ? (n->mode ? (n->mode & 07777) : 0644) : 0444);
        a->nlink = 1;
        a->size = node_size(n);
        break;
    default:
        a->mode = S_IFREG | (writable ? 0644 : 0444);
        a->nlink = 1;
        a->size = n->size;
        break;
    }
}

int mfs_view_getattr(struct mfs_view *view, uint64_t ino, struct mfs_view_attr *attr,
                     struct mfs_err *err)
{
    const struct node *n;
    int rc = 0;

    rdlock(view);
    n = node_of(view, ino);
    if (!n)
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    else
        fill_attr(view, n, ino, attr);
    unlock(view);
    return rc;
}

int mfs_view_lookup(struct mfs_view *view, uint64_t parent, const char *name,
                    struct mfs_view_attr *attr, struct mfs_err *err)
{
    const struct node *d;
    uint64_t ino = 0;
    int rc = 0;

    rdlock(view);
    d = node_of(view, parent);
    if (!d) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)parent);
        goto out_unlock;
    }
    if (d->kind != NODE_DIR) {
        rc = mfs_err_set(err, -ENOTDIR, "'%s' is not a folder", d->path);
        goto out_unlock;
    }
    if (!strcmp(name, "."))
        ino = parent;
    else if (!strcmp(name, ".."))
        ino = d->parent ? d->parent : parent;
    else
        ino = child_find(view, parent, name);
    if (!ino) {
        rc = mfs_err_set(err, -ENOENT, "'%s%s%s' does not exist", d->path,
                         d->path[0] ? "/" : "", name);
        goto out_unlock;
    }
    atomic_fetch_add(&view->nodes[ino - 1]->lookups, 1);
    fill_attr(view, view->nodes[ino - 1], ino, attr);
out_unlock:
    unlock(view);
    return rc;
}

void mfs_view_forget(struct mfs_view *view, uint64_t ino, uint64_t nlookup)
{
    struct node *n;
    uint64_t cur;

    rdlock(view);
    n = node_of(view, ino);
    if (n) {
        cur = atomic_load(&n->lookups);
        /* Never below zero, even if the kernel forgets more than we counted. */
        while (!atomic_compare_exchange_weak(&n->lookups, &cur,
                                             cur > nlookup ? cur - nlookup : 0))
            ;
    }
    unlock(view);
}

uint64_t mfs_view_lookups(struct mfs_view *view, uint64_t ino)
{
    struct node *n;
    uint64_t v;

    rdlock(view);
    n = node_of(view, ino);
    v = n ? atomic_load(&n->lookups) : 0;
    unlock(view);
    return v;
}

int mfs_view_readdir(struct mfs_view *view, uint64_t ino, uint64_t off, mfs_view_fill_fn fill,
                     void *ctx, struct mfs_err *err)
{
    const struct node *d;
    struct mfs_view_attr a;
    uint64_t i;
    int rc = 0;

    rdlock(view);
    d = node_of(view, ino);
    if (!d) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (d->kind != NODE_DIR) {
        rc = mfs_err_set(err, -ENOTDIR, "'%s' is not a folder", d->path);
        goto out_unlock;
    }
    for (i = off; i < 2 + (uint64_t)d->n_children; i++) {
        const char *name;
        uint64_t child;

        if (i == 0) {
            name = ".";
            child = ino;
        } else if (i == 1) {
            name = "..";
            child = d->parent ? d->parent : ino;
        } else {
            child = d->children[i - 2];
            name = view->nodes[child - 1]->name;
        }
        fill_attr(view, view->nodes[child - 1], child, &a);
        if (fill(ctx, name, &a, i + 1))
            break;
    }
out_unlock:
    unlock(view);
    return rc;
}

/* ---- open, read, write ---------------------------------------------------- */

static struct wnode *wnode_new(void)
{
    struct wnode *wn = calloc(1, sizeof(*wn));

    if (wn)
        pthread_mutex_init(&wn->mu, NULL);
    return wn;
}

/* Open (or share) the writer of file node n for flags.  Tree lock held
 * exclusively.  OUT: *wnp. */
static int open_file_writer(struct mfs_view *view, struct node *n, int flags,
                            struct wnode **wnp, struct mfs_err *err)
{
    struct wnode *wn = n->wn;
    enum mfs_stage_base base;
    int rc = 0;

    if (wn) {
        if (wn->tensor)
            return mfs_err_set(err, -EBUSY, "cannot write '%s': a tensor of it is being "
                               "written", n->path);
        if (flags & O_TRUNC) {
            pthread_mutex_lock(&wn->mu);
            rc = wn->w ? mfs_stage_writer_truncate(wn->w, 0, err)
                       : mfs_err_set(err, -EIO, "cannot write '%s': its writer failed",
                                     n->path);
            if (rc == 0)
                wn->dirty = true;
            pthread_mutex_unlock(&wn->mu);
            if (rc < 0)
                return rc;
        }
        wn->handles++;
        *wnp = wn;
        return 0;
    }
    wn = wnode_new();
    if (!wn)
        return mfs_err_set(err, -ENOMEM, "cannot open '%s': out of memory", n->path);
    if (flags & O_TRUNC)
        base = MFS_STAGE_BASE_EMPTY;
    else if (n->staged)
        base = MFS_STAGE_BASE_STAGED;
    else
        base = MFS_STAGE_BASE_REMOTE;
    rc = mfs_stage_writer_open(view->stage, n->path, base, n->remote ? &n->ent : NULL,
                               n->mode ? n->mode & 07777 : 0644, &wn->w, err);
    if (rc < 0) {
        wnode_free(wn);
        return rc;
    }
    wn->dirty = (flags & O_TRUNC) != 0;   /* the truncation itself is a change */
    wn->handles = 1;
    n->wn = wn;
    *wnp = wn;
    return 0;
}

/* Open a writer of tensor node n's shard, private to handle h.  Tree lock
 * held exclusively. */
static int open_tensor_writer(struct mfs_view *view, struct node *n, struct view_handle *h,
                              struct mfs_err *err)
{
    const struct mfs_ckpt_tensor *t = n->tensor;
    uint64_t shard = walk(view, t->file);
    struct node *s = shard ? view->nodes[shard - 1] : NULL;
    struct wnode *wn;
    int rc;

    if (!s || s->kind != NODE_FILE)
        return mfs_err_set(err, -ENOENT, "cannot write tensor '%s': its file '%s' is gone",
                           t->name, t->file);
    if (s->wn)
        return mfs_err_set(err, -EBUSY, "cannot write tensor '%s': '%s' is open for writing",
                           t->name, t->file);
    wn = wnode_new();
    if (!wn)
        return mfs_err_set(err, -ENOMEM, "cannot open '%s': out of memory", n->path);
    rc = mfs_stage_writer_open(view->stage, s->path,
                               s->staged ? MFS_STAGE_BASE_STAGED : MFS_STAGE_BASE_REMOTE,
                               s->remote ? &s->ent : NULL, s->mode ? s->mode & 07777 : 0644,
                               &wn->w, err);
    if (rc < 0) {
        wnode_free(wn);
        return rc;
    }
    wn->tensor = true;
    wn->handles = 1;
    s->wn = wn;
    h->wn = wn;
    h->shard_ino = shard;
    h->t_off = t->offset;
    h->t_size = t->nbytes;
    return 0;
}

static void handle_free(struct view_handle *h)
{
    if (!h)
        return;
    free(h->cov);
    free(h);
}

int mfs_view_open(struct mfs_view *view, uint64_t ino, int flags, pid_t pid, uint64_t *fh,
                  unsigned *open_flags, struct mfs_err *err)
{
    bool wr = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
    struct view_handle *h;
    struct node *n;
    size_t ctl = 0;
    uint64_t bound = 0;
    int rc = 0;

    *fh = 0;
    *open_flags = 0;
    h = calloc(1, sizeof(*h));
    if (!h)
        return mfs_err_set(err, -ENOMEM, "cannot open inode %llu: out of memory",
                           (unsigned long long)ino);
    h->ino = ino;
    if (wr && view->stage)
        wrlock(view);
    else
        rdlock(view);
    n = node_of(view, ino);
    if (!n) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (n->kind == NODE_DIR) {
        rc = mfs_err_set(err, -EISDIR, "cannot open '%s': is a folder", n->path);
        goto out_unlock;
    }
    if (n->kind == NODE_CTL) {
        ctl = n->ctl;
        *open_flags = MFS_VIEW_DIRECT_IO;
    } else if (wr && !view->stage) {
        rc = mfs_err_set(err, -EROFS, "cannot write '%s': the mount is read-only", n->path);
    } else if (wr && n->kind == NODE_FILE) {
        rc = open_file_writer(view, n, flags, &h->wn, err);
    } else if (wr) {
        rc = open_tensor_writer(view, n, h, err);
    } else if (!view->stage || (n->kind == NODE_FILE && n->remote && !n->staged && !n->wn)) {
        /* Immutable bytes (a commit's blob): the page cache may keep them. */
        *open_flags = MFS_VIEW_KEEP_CACHE;
    }
    if (rc == 0 && n->kind == NODE_TENSOR && !wr)
        bound = n->tensor->offset + n->tensor->nbytes;
out_unlock:
    unlock(view);
    if (rc == 0 && n->kind == NODE_CTL)
        rc = mfs_ctl_open(view->ctl, ctl, flags, pid, &h->ctl, err);
    if (rc < 0) {
        handle_free(h);
        *open_flags = 0;
        return rc;
    }
    *fh = (uint64_t)(uintptr_t)h;
    /* Reading one tensor should fetch about that tensor, not the
     * prefetch window past its end. */
    if (bound && view->fetch && view->read == read_fetch)
        mfs_fetch_stream_bound(view->fetch, *fh, bound);
    return 0;
}

ssize_t mfs_view_read(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                      size_t len, void *buf, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    struct node *n;
    enum node_kind kind;
    uint64_t size = 0;
    uint64_t base = 0;
    uint64_t shard = 0;

    rdlock(view);
    n = node_of(view, ino);
    if (!n) {
        unlock(view);
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    }
    kind = n->kind;
    if (kind == NODE_DIR) {
        unlock(view);
        return mfs_err_set(err, -EISDIR, "cannot read '%s': is a folder", n->path);
    }
    if (kind == NODE_TENSOR) {
        size = n->size;
        base = n->tensor->offset;
        shard = walk(view, n->tensor->file);
    }
    unlock(view);
    switch (kind) {
    case NODE_CTL:
        if (!h || !h->ctl)
            return mfs_err_set(err, -EBADF, "cannot read inode %llu: not open",
                               (unsigned long long)ino);
        return mfs_ctl_read(view->ctl, h->ctl, off, len, buf, err);
    case NODE_FILE:
        return read_node(view, ino, fh, off, len, buf, err);
    default:
        break;
    }
    if (off >= size || len == 0)
        return 0;
    if (len > size - off)
        len = (size_t)(size - off);
    if (!shard)
        return mfs_err_set(err, -EIO, "cannot read tensor at inode %llu: its file is gone",
                           (unsigned long long)ino);
    return read_node(view, shard, fh, base + off, len, buf, err);
}

/* Add [off, end) to h's written ranges (kept sorted and merged). */
static int cover_add(struct view_handle *h, uint64_t off, uint64_t end)
{
    size_t i = 0;
    size_t j;

    while (i < h->n_cov && h->cov[i].end < off)
        i++;
    j = i;
    while (j < h->n_cov && h->cov[j].off <= end) {
        off = h->cov[j].off < off ? h->cov[j].off : off;
        end = h->cov[j].end > end ? h->cov[j].end : end;
        j++;
    }
    if (j == i) {                           /* no overlap: insert */
        if (h->n_cov == h->cap_cov) {
            size_t cap = h->cap_cov ? h->cap_cov * 2 : 8;
            struct range *r = realloc(h->cov, cap * sizeof(*r));

            if (!r)
                return -ENOMEM;
            h->cov = r;
            h->cap_cov = cap;
        }
        memmove(&h->cov[i + 1], &h->cov[i], (h->n_cov - i) * sizeof(*h->cov));
        h->n_cov++;
    } else {                                /* cov[i..j) merge into cov[i] */
        memmove(&h->cov[i + 1], &h->cov[j], (h->n_cov - j) * sizeof(*h->cov));
        h->n_cov -= j - i - 1;
    }
    h->cov[i].off = off;
    h->cov[i].end = end;
    return 0;
}

/* The path of ino for a message (copied into buf). */
static const char *path_of(struct mfs_view *view, uint64_t ino, char *buf, size_t size)
{
    struct node *n;

    rdlock(view);
    n = node_of(view, ino);
    snprintf(buf, size, "%s", n ? n->path : "?");
    unlock(view);
    return buf;
}

ssize_t mfs_view_write(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                       const void *data, size_t len, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    char path[PATH_MAXLEN];
    struct wnode *wn;
    ssize_t r;

    if (h && h->ctl)
        return mfs_ctl_write(view->ctl, h->ctl, data, len, err);
    if (!view->stage) {
        r = mfs_err_set(err, -EROFS, "cannot write '%s': the mount is read-only",
                        path_of(view, ino, path, sizeof(path)));
        goto out_log;
    }
    if (!h || !h->wn || h->dropped) {
        r = mfs_err_set(err, -EBADF, "cannot write '%s': %s",
                        path_of(view, ino, path, sizeof(path)),
                        h && h->dropped ? "the change was dropped" : "not open for writing");
        goto out_log;
    }
    wn = h->wn;
    if (wn->tensor && (off > h->t_size || len > h->t_size - off)) {
        r = mfs_err_set(err, -EINVAL, "cannot write '%s': bytes %llu..%llu are past the "
                        "tensor's %llu bytes", path_of(view, ino, path, sizeof(path)),
                        (unsigned long long)off, (unsigned long long)(off + len),
                        (unsigned long long)h->t_size);
        goto out_log;
    }
    pthread_mutex_lock(&wn->mu);
    if (!wn->w)
        r = mfs_err_set(err, -EIO, "its writer failed earlier");
    else
        r = mfs_stage_writer_write(wn->w, wn->tensor ? h->t_off + off : off, data, len, err);
    if (r >= 0) {
        wn->dirty = true;
        if (wn->tensor && cover_add(h, off, off + len) < 0)
            r = mfs_err_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&wn->mu);
    if (r >= 0)
        return r;
out_log:
    mfs_view_log(view, "write", ino, err);
    return r;
}

void mfs_view_interrupt(struct mfs_view *view, uint64_t ino, uint64_t fh, bool on)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;

    (void)ino;
    if (h && h->ctl)
        mfs_ctl_interrupt(view->ctl, h->ctl, on);
}

/* After a commit of file node ino's writer: show the staged content.  A
 * checkpoint file rebuilds tensors/. */
static void after_commit(struct mfs_view *view, uint64_t ino, uint64_t size)
{
    struct node *n;
    bool ckpt = false;

    wrlock(view);
    n = node_of(view, ino);
    if (n && n->kind == NODE_FILE && n->parent) {
        n->staged = true;
        n->remote = false;
        node_set_size(n, size);
        n->mtime = (int64_t)time(NULL);
        ckpt = is_ckpt_path(n->path);
    }
    unlock(view);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (tensors_rebuild(view, &e) < 0)
            logf_view(view, "tensors/: %s", e.msg);
    }
}

/* Commit what h's writer holds.  A tensor handle must have written all of
 * its tensor, else its change is dropped (-EINVAL). */
static int handle_commit(struct mfs_view *view, struct view_handle *h, struct mfs_err *err)
{
    struct wnode *wn = h->wn;
    uint64_t target = h->shard_ino ? h->shard_ino : h->ino;
    uint64_t size = 0;
    bool did = false;
    int rc = 0;

    if (!wn || h->dropped)
        return 0;
    pthread_mutex_lock(&wn->mu);
    if (wn->tensor && wn->dirty &&
        !(h->n_cov == 1 && h->cov[0].off == 0 && h->cov[0].end == h->t_size)) {
        char path[PATH_MAXLEN];

        h->dropped = true;
        mfs_stage_writer_close(&wn->w);
        pthread_mutex_unlock(&wn->mu);
        rc = mfs_err_set(err, -EINVAL, "cannot write '%s': a tensor is written whole, all "
                         "its %llu bytes from offset 0; the change is dropped",
                         path_of(view, h->ino, path, sizeof(path)),
                         (unsigned long long)h->t_size);
        wrlock(view);
        if (node_of(view, target) && view->nodes[target - 1]->wn == wn)
            view->nodes[target - 1]->wn = NULL;
        wn->handles = 0;
        unlock(view);
        return rc;
    }
    if (wn->w && wn->dirty && !wn->orphan) {
        rc = mfs_stage_writer_commit(wn->w, err);
        if (rc == 0) {
            wn->dirty = false;
            wn->committed = true;
            did = true;
            size = mfs_stage_writer_size(wn->w);
        }
    }
    pthread_mutex_unlock(&wn->mu);
    if (did)
        after_commit(view, target, size);
    return rc;
}

int mfs_view_flush(struct mfs_view *view, uint64_t ino, uint64_t fh, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    int rc;

    if (!h || !h->wn)
        return 0;
    rc = handle_commit(view, h, err);
    if (rc < 0)
        mfs_view_log(view, "close", ino, err);
    return rc;
}

int mfs_view_fsync(struct mfs_view *view, uint64_t ino, uint64_t fh, struct mfs_err *err)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    int rc;

    if (!h || !h->wn)
        return 0;
    rc = mfs_view_flush(view, ino, fh, err);
    if (rc == 0 && view->push)
        rc = mfs_view_push(view, NULL, NULL, err);
    return rc;
}

void mfs_view_release(struct mfs_view *view, uint64_t ino, uint64_t fh)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    struct mfs_err err = MFS_ERR_INIT;
    struct wnode *wn;
    bool last = false;

    if (!h)
        return;
    if (h->ctl) {
        mfs_ctl_release(view->ctl, h->ctl);
    } else if (h->wn) {
        wn = h->wn;
        if (handle_commit(view, h, &err) < 0)
            mfs_view_log(view, "close", ino, &err);
        wrlock(view);
        if (wn->handles > 0)
            wn->handles--;
        last = wn->handles == 0;
        if (last) {
            uint64_t target = h->shard_ino ? h->shard_ino : h->ino;
            struct node *n = node_of(view, target);

            if (n && n->wn == wn)
                n->wn = NULL;
        }
        unlock(view);
        if (last)
            wnode_free(wn);
    } else if (view->fetch && view->read == read_fetch) {
        mfs_fetch_stream_end(view->fetch, fh);
    }
    handle_free(h);
}

int mfs_view_truncate(struct mfs_view *view, uint64_t ino, uint64_t size, struct mfs_err *err)
{
    struct mfs_stage_writer *w = NULL;
    struct node *n;
    bool ckpt = false;
    int rc = 0;

    wrlock(view);
    n = node_of(view, ino);
    if (!n) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (n->kind == NODE_CTL)
        goto out_unlock;
    if (n->kind == NODE_DIR) {
        rc = mfs_err_set(err, -EISDIR, "cannot truncate '%s': is a folder", n->path);
        goto out_unlock;
    }
    if (!view->stage) {
        rc = mfs_err_set(err, -EROFS, "cannot truncate '%s': the mount is read-only", n->path);
        goto out_unlock;
    }
    if (n->kind == NODE_TENSOR) {
        if (size != n->size)
            rc = mfs_err_set(err, -EINVAL, "cannot truncate '%s' to %llu bytes: a tensor "
                             "keeps its size (%llu bytes)", n->path,
                             (unsigned long long)size, (unsigned long long)n->size);
        goto out_unlock;
    }
    if (n->wn) {
        pthread_mutex_lock(&n->wn->mu);
        rc = n->wn->w ? mfs_stage_writer_truncate(n->wn->w, size, err)
                      : mfs_err_set(err, -EIO, "cannot truncate '%s': its writer failed",
                                    n->path);
        if (rc == 0)
            n->wn->dirty = true;
        pthread_mutex_unlock(&n->wn->mu);
        goto out_unlock;
    }
    if (size == node_size(n))
        goto out_unlock;
    /* Not open for writing: stage the new size now (truncate(1)). */
    rc = mfs_stage_writer_open(view->stage, n->path,
                               size == 0 ? MFS_STAGE_BASE_EMPTY
                                         : n->staged ? MFS_STAGE_BASE_STAGED
                                                     : MFS_STAGE_BASE_REMOTE,
                               n->remote ? &n->ent : NULL, n->mode ? n->mode & 07777 : 0644,
                               &w, err);
    if (rc == 0)
        rc = mfs_stage_writer_truncate(w, size, err);
    if (rc == 0)
        rc = mfs_stage_writer_commit(w, err);
    mfs_stage_writer_close(&w);
    if (rc == 0) {
        n->staged = true;
        n->remote = false;
        node_set_size(n, size);
        n->mtime = (int64_t)time(NULL);
        ckpt = is_ckpt_path(n->path);
    }
out_unlock:
    unlock(view);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (tensors_rebuild(view, &e) < 0)
            logf_view(view, "tensors/: %s", e.msg);
    }
    return rc;
}

/* ---- changing the tree ------------------------------------------------------ */

bool mfs_view_writable(const struct mfs_view *view)
{
    return view->stage != NULL;
}

/* Whether op may make or remove name in folder dir.  Tree lock held. */
static int dir_check(struct mfs_view *view, uint64_t dir, const char *op, const char *name,
                     struct mfs_err *err)
{
    struct node *d = node_of(view, dir);

    if (!view->stage)
        return mfs_err_set(err, -EROFS, "cannot %s '%s': the mount is read-only", op, name);
    if (!d)
        return mfs_err_set(err, -ENOENT, "cannot %s '%s': no folder %llu", op, name,
                           (unsigned long long)dir);
    if (d->kind != NODE_DIR)
        return mfs_err_set(err, -ENOTDIR, "cannot %s '%s': '%s' is not a folder", op, name,
                           d->path);
    if (!d->parent)
        return mfs_err_set(err, -ENOENT, "cannot %s '%s': its folder was removed", op, name);
    if (dir == view->control_ino)
        return mfs_err_set(err, -EACCES, "cannot %s '%s/%s': the control folder has only its "
                           "own files", op, MFS_VIEW_CONTROL, name);
    if (dir == view->tensors_ino)
        return mfs_err_set(err, -EPERM, "cannot %s '%s/%s': tensors/ shows the checkpoint's "
                           "tensors; write a tensor's bytes into its file instead", op,
                           MFS_VIEW_TENSORS, name);
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
        return mfs_err_set(err, -EINVAL, "cannot %s '%s': not a file name", op, name);
    if (strlen(name) > 255 || strlen(d->path) + strlen(name) + 2 > PATH_MAXLEN)
        return mfs_err_set(err, -ENAMETOOLONG, "cannot %s '%s': name too long", op, name);
    return 0;
}

int mfs_view_create(struct mfs_view *view, uint64_t parent, const char *name, uint32_t mode,
                    int flags, pid_t pid, struct mfs_view_attr *attr, uint64_t *fh,
                    unsigned *open_flags, struct mfs_err *err)
{
    struct view_handle *h = NULL;
    struct wnode *wn = NULL;
    char *path = NULL;
    struct node *n;
    uint64_t ino;
    int rc;

    *fh = 0;
    *open_flags = 0;
    wrlock(view);
    rc = dir_check(view, parent, "create", name, err);
    if (rc < 0)
        goto out_unlock;
    ino = child_find(view, parent, name);
    if (ino) {
        unlock(view);
        if (flags & O_EXCL)
            return mfs_err_set(err, -EEXIST, "cannot create '%s': it exists", name);
        rc = mfs_view_open(view, ino, flags, pid, fh, open_flags, err);
        if (rc == 0)
            rc = mfs_view_lookup(view, parent, name, attr, err);
        return rc;
    }
    path = join(view->nodes[parent - 1]->path, name);
    h = calloc(1, sizeof(*h));
    wn = wnode_new();
    if (!path || !h || !wn) {
        rc = mfs_err_set(err, -ENOMEM, "cannot create '%s': out of memory", name);
        goto out_free;
    }
    rc = mfs_stage_writer_open(view->stage, path, MFS_STAGE_BASE_EMPTY, NULL, mode & 07777,
                               &wn->w, err);
    if (rc == 0)
        rc = mfs_stage_writer_commit(wn->w, err);    /* the empty file is durable */
    if (rc < 0)
        goto out_free;
    ino = node_add(view, NODE_FILE, path, parent);
    path = NULL;                            /* taken over, even on failure */
    if (!ino || child_insert(view, parent, ino) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot create '%s': out of memory", name);
        goto out_free;
    }
    n = view->nodes[ino - 1];
    n->staged = true;
    n->mode = mode & 07777;
    n->mtime = (int64_t)time(NULL);
    n->wn = wn;
    wn->handles = 1;
    wn->committed = true;
    h->ino = ino;
    h->wn = wn;
    atomic_fetch_add(&n->lookups, 1);
    fill_attr(view, n, ino, attr);
    unlock(view);
    *fh = (uint64_t)(uintptr_t)h;
    return 0;

out_free:
    wnode_free(wn);
    handle_free(h);
    free(path);
out_unlock:
    unlock(view);
    return rc;
}

int mfs_view_mkdir(struct mfs_view *view, uint64_t parent, const char *name, uint32_t mode,
                   struct mfs_view_attr *attr, struct mfs_err *err)
{
    struct mfs_stage_change ch;
    char *path = NULL;
    struct node *n;
    uint64_t ino;
    int rc;

    wrlock(view);
    rc = dir_check(view, parent, "mkdir", name, err);
    if (rc < 0)
        goto out_unlock;
    if (child_find(view, parent, name)) {
        rc = mfs_err_set(err, -EEXIST, "cannot mkdir '%s': it exists", name);
        goto out_unlock;
    }
    path = join(view->nodes[parent - 1]->path, name);
    if (!path) {
        rc = mfs_err_set(err, -ENOMEM, "cannot mkdir '%s': out of memory", name);
        goto out_unlock;
    }
    memset(&ch, 0, sizeof(ch));
    ch.op = MFS_STAGE_OP_MKDIR;
    ch.path = path;
    ch.mode = mode & 07777;
    rc = mfs_stage_apply(view->stage, &ch, 1, err);
    if (rc < 0) {
        free(path);
        goto out_unlock;
    }
    ino = node_add(view, NODE_DIR, path, parent);
    if (!ino || child_insert(view, parent, ino) < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot mkdir '%s': out of memory", name);
        goto out_unlock;
    }
    n = view->nodes[ino - 1];
    n->staged = true;
    n->mode = mode & 07777;
    n->mtime = (int64_t)time(NULL);
    atomic_fetch_add(&n->lookups, 1);
    fill_attr(view, n, ino, attr);
out_unlock:
    unlock(view);
    return rc;
}

/* Remove file or folder name of parent (rmdir: dir true). */
static int remove_name(struct mfs_view *view, uint64_t parent, const char *name, bool dir,
                       struct mfs_err *err)
{
    const char *op = dir ? "rmdir" : "unlink";
    struct mfs_stage_change ch;
    struct node *n;
    uint64_t ino;
    bool ckpt = false;
    int rc;

    wrlock(view);
    rc = dir_check(view, parent, op, name, err);
    if (rc < 0)
        goto out_unlock;
    ino = child_find(view, parent, name);
    if (!ino) {
        rc = mfs_err_set(err, -ENOENT, "cannot %s '%s': no such file", op, name);
        goto out_unlock;
    }
    n = view->nodes[ino - 1];
    if (ino == view->tensors_ino || ino == view->control_ino) {
        rc = mfs_err_set(err, -EBUSY, "cannot %s '%s': the mount's own folder", op, n->path);
        goto out_unlock;
    }
    if (dir && n->kind != NODE_DIR) {
        rc = mfs_err_set(err, -ENOTDIR, "cannot rmdir '%s': not a folder", n->path);
        goto out_unlock;
    }
    if (!dir && n->kind == NODE_DIR) {
        rc = mfs_err_set(err, -EISDIR, "cannot unlink '%s': is a folder", n->path);
        goto out_unlock;
    }
    if (dir && n->n_children) {
        rc = mfs_err_set(err, -ENOTEMPTY, "cannot rmdir '%s': not empty", n->path);
        goto out_unlock;
    }
    memset(&ch, 0, sizeof(ch));
    ch.op = base_has(view, n->path) ? MFS_STAGE_OP_WHITEOUT : MFS_STAGE_OP_REMOVE;
    ch.path = n->path;
    rc = mfs_stage_apply(view->stage, &ch, 1, err);
    if (rc == -ENOENT && ch.op == MFS_STAGE_OP_REMOVE) {
        mfs_err_clear(err);                 /* a folder implied by its files */
        rc = 0;
    }
    if (rc < 0)
        goto out_unlock;
    ckpt = !dir && is_ckpt_path(n->path);
    detach(view, ino);
    view->total_bytes -= dir || view->total_bytes < n->size ? 0 : n->size;
out_unlock:
    unlock(view);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (tensors_rebuild(view, &e) < 0)
            logf_view(view, "tensors/: %s", e.msg);
    }
    return rc;
}

int mfs_view_unlink(struct mfs_view *view, uint64_t parent, const char *name,
                    struct mfs_err *err)
{
    return remove_name(view, parent, name, false, err);
}

int mfs_view_rmdir(struct mfs_view *view, uint64_t parent, const char *name,
                   struct mfs_err *err)
{
    return remove_name(view, parent, name, true, err);
}

/* Nodes of the subtree at ino, folders before their contents. */
struct subtree {
    uint64_t *ino;
    size_t n;
    size_t cap;
};

static int subtree_collect(struct mfs_view *view, uint64_t ino, struct subtree *st)
{
    struct node *n = view->nodes[ino - 1];
    size_t i;

    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        uint64_t *p = realloc(st->ino, cap * sizeof(*p));

        if (!p)
            return -ENOMEM;
        st->ino = p;
        st->cap = cap;
    }
    st->ino[st->n++] = ino;
    for (i = 0; n->kind == NODE_DIR && i < n->n_children; i++)
        if (subtree_collect(view, n->children[i], st) < 0)
            return -ENOMEM;
    return 0;
}

/* The path a subtree node gets when its top moves from old_top to
 * new_top. */
static char *moved_path(const char *path, size_t old_len, const char *new_top)
{
    struct mfs_buf b = MFS_BUF_INIT;

    if (mfs_buf_printf(&b, "%s%s", new_top, path + old_len) < 0)
        return NULL;
    return mfs_buf_steal(&b);
}

/* Stage and show a rename of node src (in the tree) to new_path under
 * folder newparent.  Tree lock held exclusively; dst (0: none) is the node
 * replaced. */
static int rename_locked(struct mfs_view *view, uint64_t src, uint64_t newparent,
                         const char *new_path, uint64_t dst, struct mfs_err *err)
{
    struct subtree st = { NULL, 0, 0 };
    struct mfs_stage_change *ch = NULL;
    char **newp = NULL;
    size_t old_len = strlen(view->nodes[src - 1]->path);
    size_t nch = 0;
    size_t i;
    int rc;

    if (subtree_collect(view, src, &st) < 0)
        goto out_nomem;
    ch = calloc(3 * st.n + 1, sizeof(*ch));
    newp = calloc(st.n, sizeof(*newp));
    if (!ch || !newp)
        goto out_nomem;
    for (i = 0; i < st.n; i++) {
        struct node *n = view->nodes[st.ino[i] - 1];

        newp[i] = moved_path(n->path, old_len, new_path);
        if (!newp[i])
            goto out_nomem;
        if (n->wn && n->wn->tensor) {
            rc = mfs_err_set(err, -EBUSY, "cannot rename '%s': a tensor of it is being written",
                             n->path);
            goto out_free;
        }
        /* An open writer commits to its path: commit it now, and reopen
         * it at the new path once the rename is staged. */
        if (n->wn) {
            pthread_mutex_lock(&n->wn->mu);
            rc = 0;
            if (n->wn->w && n->wn->dirty) {
                rc = mfs_stage_writer_commit(n->wn->w, err);
                if (rc == 0) {
                    n->wn->dirty = false;
                    n->staged = true;
                    n->remote = false;
                    node_set_size(n, mfs_stage_writer_size(n->wn->w));
                }
            }
            pthread_mutex_unlock(&n->wn->mu);
            if (rc < 0)
                goto out_free;
        }
    }
    for (i = 0; i < st.n; i++) {                /* the new paths */
        struct node *n = view->nodes[st.ino[i] - 1];
        struct mfs_stage_change *c = &ch[nch++];

        c->path = newp[i];
        if (n->kind == NODE_DIR) {
            c->op = MFS_STAGE_OP_MKDIR;
            c->mode = n->mode ? n->mode : 0755;
        } else if (n->staged) {
            c->op = MFS_STAGE_OP_MOVE;
            c->from = n->path;
        } else {
            c->op = MFS_STAGE_OP_REMOTE;
            c->remote = &n->ent;
            c->mode = n->mode ? n->mode : 0644;
        }
    }
    for (i = st.n; i > 0; i--) {                /* the old ones, contents first */
        struct node *n = view->nodes[st.ino[i - 1] - 1];

        if (base_has(view, n->path)) {
            ch[nch].op = MFS_STAGE_OP_WHITEOUT;
            ch[nch++].path = n->path;
        } else if (n->kind == NODE_DIR && n->staged) {
            ch[nch].op = MFS_STAGE_OP_REMOVE;
            ch[nch++].path = n->path;
        }
    }
    rc = mfs_stage_apply(view->stage, ch, nch, err);
    if (rc < 0)
        goto out_free;
    if (dst)
        detach(view, dst);
    child_remove(view, view->nodes[src - 1]->parent, src);
    for (i = 0; i < st.n; i++) {
        struct node *n = view->nodes[st.ino[i] - 1];

        bury(view, n->path);
        node_set_path(n, newp[i]);
        newp[i] = NULL;
        n->staged = true;                   /* the stage holds it now (MOVE, REMOTE, MKDIR) */
        if (n->wn && n->wn->w) {
            struct mfs_err e = MFS_ERR_INIT;

            pthread_mutex_lock(&n->wn->mu);
            mfs_stage_writer_close(&n->wn->w);
            if (mfs_stage_writer_open(view->stage, n->path, MFS_STAGE_BASE_STAGED, NULL,
                                      n->mode ? n->mode & 07777 : 0644, &n->wn->w, &e) < 0)
                logf_view(view, "rename '%s': cannot reopen its writer: %s", n->path, e.msg);
            pthread_mutex_unlock(&n->wn->mu);
        }
    }
    /* The node keeps its inode: the kernel moved its dentry already. */
    if (child_insert(view, newparent, src) < 0)
        goto out_nomem;
    rc = 0;
    goto out_free;

out_nomem:
    rc = mfs_err_set(err, -ENOMEM, "cannot rename: out of memory");
out_free:
    for (i = 0; newp && i < st.n; i++)
        free(newp[i]);
    free(newp);
    free(ch);
    free(st.ino);
    return rc;
}

int mfs_view_rename(struct mfs_view *view, uint64_t parent, const char *name,
                    uint64_t newparent, const char *newname, unsigned flags,
                    struct mfs_err *err)
{
    struct node *s;
    uint64_t src;
    uint64_t dst;
    uint64_t up;
    char *new_path = NULL;
    bool ckpt = false;
    int rc;

    if (flags & MFS_VIEW_RENAME_EXCHANGE)
        return mfs_err_set(err, -EINVAL, "cannot exchange '%s' and '%s': not supported", name,
                           newname);
    wrlock(view);
    rc = dir_check(view, parent, "rename", name, err);
    if (rc == 0)
        rc = dir_check(view, newparent, "rename", newname, err);
    if (rc < 0)
        goto out_unlock;
    src = child_find(view, parent, name);
    if (!src) {
        rc = mfs_err_set(err, -ENOENT, "cannot rename '%s': no such file", name);
        goto out_unlock;
    }
    s = view->nodes[src - 1];
    if (src == view->tensors_ino || src == view->control_ino) {
        rc = mfs_err_set(err, -EBUSY, "cannot rename '%s': the mount's own folder", s->path);
        goto out_unlock;
    }
    dst = child_find(view, newparent, newname);
    if (dst == src)
        goto out_unlock;
    if (dst) {
        struct node *d = view->nodes[dst - 1];

        if (flags & MFS_VIEW_RENAME_NOREPLACE)
            rc = mfs_err_set(err, -EEXIST, "cannot rename '%s' to '%s': it exists", s->path,
                             d->path);
        else if (dst == view->tensors_ino || dst == view->control_ino)
            rc = mfs_err_set(err, -EBUSY, "cannot replace '%s': the mount's own folder",
                             d->path);
        else if (s->kind == NODE_DIR && d->kind != NODE_DIR)
            rc = mfs_err_set(err, -ENOTDIR, "cannot rename folder '%s' over file '%s'",
                             s->path, d->path);
        else if (s->kind != NODE_DIR && d->kind == NODE_DIR)
            rc = mfs_err_set(err, -EISDIR, "cannot rename file '%s' over folder '%s'",
                             s->path, d->path);
        else if (d->kind == NODE_DIR && d->n_children)
            rc = mfs_err_set(err, -ENOTEMPTY, "cannot rename '%s' over '%s': not empty",
                             s->path, d->path);
        if (rc < 0)
            goto out_unlock;
    }
    for (up = newparent; s->kind == NODE_DIR && up != MFS_VIEW_ROOT_INO && up;
         up = view->nodes[up - 1]->parent) {
        if (up == src) {
            rc = mfs_err_set(err, -EINVAL, "cannot move '%s' into itself", s->path);
            goto out_unlock;
        }
    }
    new_path = join(view->nodes[newparent - 1]->path, newname);
    if (!new_path) {
        rc = mfs_err_set(err, -ENOMEM, "cannot rename '%s': out of memory", s->path);
        goto out_unlock;
    }
    ckpt = is_ckpt_path(s->path) || is_ckpt_path(new_path);
    rc = rename_locked(view, src, newparent, new_path, dst, err);
    if (rc < 0)
        ckpt = false;
out_unlock:
    unlock(view);
    free(new_path);
    if (ckpt) {
        struct mfs_err e = MFS_ERR_INIT;

        if (tensors_rebuild(view, &e) < 0)
            logf_view(view, "tensors/: %s", e.msg);
    }
    return rc;
}

int mfs_view_chmod(struct mfs_view *view, uint64_t ino, uint32_t mode, struct mfs_err *err)
{
    struct mfs_stage_change ch;
    struct node *n;
    int rc = 0;

    wrlock(view);
    n = node_of(view, ino);
    if (!n) {
        rc = mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
        goto out_unlock;
    }
    if (!view->stage) {
        rc = mfs_err_set(err, -EROFS, "cannot chmod '%s': the mount is read-only", n->path);
        goto out_unlock;
    }
    if (n->kind == NODE_CTL || n->kind == NODE_TENSOR || ino == MFS_VIEW_ROOT_INO ||
        ino == view->tensors_ino || ino == view->control_ino) {
        rc = mfs_err_set(err, -EPERM, "cannot chmod '%s': the mount's own file", n->path);
        goto out_unlock;
    }
    /* Only staged entries keep a mode (the Hub stores none); a repo file's
     * mode lives as long as the mount. */
    if (n->staged) {
        memset(&ch, 0, sizeof(ch));
        ch.op = MFS_STAGE_OP_CHMOD;
        ch.path = n->path;
        ch.mode = mode & 07777;
        rc = mfs_stage_apply(view->stage, &ch, 1, err);
        if (rc == -ENOENT && n->kind == NODE_DIR) {
            mfs_err_clear(err);
            rc = 0;
        }
    }
    if (rc == 0)
        n->mode = mode & 07777;
out_unlock:
    unlock(view);
    return rc;
}
/* ---- xattrs ----------------------------------------------------------------- */

static int shape_text(const struct mfs_ckpt_tensor *t, char *out, size_t size)
{
    size_t used = 0;
    int i;

    used += (size_t)snprintf(out, size, "[");
    for (i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)t->shape[i]);
    if (used < size)
        used += (size_t)snprintf(out + used, size - used, "]");
    return used < size ? 0 : -ERANGE;
}

static ssize_t xattr_reply(const char *value, size_t vlen, char *buf, size_t size,
                           const char *name, struct mfs_err *err)
{
    if (size == 0)
        return (ssize_t)vlen;
    if (size < vlen)
        return mfs_err_set(err, -ERANGE, "xattr '%s': buffer of %zu bytes too small for %zu",
                           name, size, vlen);
    memcpy(buf, value, vlen);
    return (ssize_t)vlen;
}

static ssize_t getxattr_locked(struct mfs_view *view, uint64_t ino, const char *name,
                               char *buf, size_t size, struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);
    char value[MFS_ST_MAX_DIMS * 24 + 8];

    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (ino == MFS_VIEW_ROOT_INO && !strcmp(name, "user.modelfs.pid")) {
        snprintf(value, sizeof(value), "%d", (int)view->pid);
        return xattr_reply(value, strlen(value), buf, size, name, err);
    }
    /* Not listed: modelfs umount asks it before pushing. */
    if (ino == MFS_VIEW_ROOT_INO && !strcmp(name, "user.modelfs.writable"))
        return xattr_reply(view->stage ? "1" : "0", 1, buf, size, name, err);
    if (ino == MFS_VIEW_ROOT_INO && !strcmp(name, "user.modelfs.commit"))
        return xattr_reply(view->commit, strlen(view->commit), buf, size, name, err);
    if (n->kind == NODE_TENSOR) {
        const struct mfs_ckpt_tensor *t = n->tensor;

        if (!strcmp(name, "user.dtype")) {
            const char *d = mfs_st_dtype_name(t->dtype);

            return xattr_reply(d, strlen(d), buf, size, name, err);
        }
        if (!strcmp(name, "user.shape")) {
            if (shape_text(t, value, sizeof(value)) < 0)
                return mfs_err_set(err, -EIO, "shape of '%s' too long", t->name);
            return xattr_reply(value, strlen(value), buf, size, name, err);
        }
        if (!strcmp(name, "user.file"))
            return xattr_reply(t->file, strlen(t->file), buf, size, name, err);
    }
    return mfs_err_set(err, -ENODATA, "'%s' has no attribute '%s'", n->path, name);
}

static ssize_t listxattr_locked(struct mfs_view *view, uint64_t ino, char *buf, size_t size,
                                struct mfs_err *err)
{
    static const char tensor_names[] = "user.dtype\0user.shape\0user.file";
    static const char root_names[] = "user.modelfs.pid\0user.modelfs.commit";
    const struct node *n = node_of(view, ino);

    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (n->kind == NODE_TENSOR)
        return xattr_reply(tensor_names, sizeof(tensor_names), buf, size, "list", err);
    if (ino == MFS_VIEW_ROOT_INO)
        return xattr_reply(root_names, sizeof(root_names), buf, size, "list", err);
    return 0;
}

ssize_t mfs_view_getxattr(struct mfs_view *view, uint64_t ino, const char *name, char *buf,
                          size_t size, struct mfs_err *err)
{
    ssize_t r;

    rdlock(view);
    r = getxattr_locked(view, ino, name, buf, size, err);
    unlock(view);
    return r;
}

ssize_t mfs_view_listxattr(struct mfs_view *view, uint64_t ino, char *buf, size_t size,
                           struct mfs_err *err)
{
    ssize_t r;

    rdlock(view);
    r = listxattr_locked(view, ino, buf, size, err);
    unlock(view);
    return r;
}

void mfs_view_totals(struct mfs_view *view, uint64_t *bytes, uint64_t *nodes)
{
    size_t i;

    rdlock(view);
    *bytes = view->total_bytes;
    if (view->stage) {
        /* Writes change sizes at any time: count them now. */
        *bytes = 0;
        for (i = 0; i < view->n_nodes; i++)
            if (view->nodes[i]->kind == NODE_FILE && view->nodes[i]->parent)
                *bytes += node_size(view->nodes[i]);
    }
    *nodes = view->n_nodes;
    unlock(view);
}

/* ---- accessors --------------------------------------------------------------- */

const char *mfs_view_repo_id(const struct mfs_view *view)
{
    return view->repo_id;
}

const char *mfs_view_revision(const struct mfs_view *view)
{
    return view->revision;
}

const char *mfs_view_commit(const struct mfs_view *view)
{
    return view->commit;
}

const struct mfs_ckpt *mfs_view_ckpt(const struct mfs_view *view)
{
    struct mfs_view *v = (struct mfs_view *)view;
    const struct mfs_ckpt *ck;

    /* Replaced checkpoints live until mfs_view_free: the pointer stays
     * valid after the lock. */
    rdlock(v);
    ck = v->ckpt;
    unlock(v);
    return ck;
}

struct mfs_fetch *mfs_view_fetch(const struct mfs_view *view)
{
    return view->fetch;
}

/* ---- info, status, log ---------------------------------------------------- */

static int reply_json(struct mfs_ctl_reply *r, cJSON *root, struct mfs_err *err)
{
    char *text = cJSON_Print(root);
    int rc;

    if (!text) {
        cJSON_Delete(root);
        return mfs_err_set(err, -ENOMEM, "cannot print JSON: out of memory");
    }
    rc = mfs_ctl_reply_write(r, text, strlen(text));
    if (rc == 0)
        rc = mfs_ctl_reply_write(r, "\n", 1);
    free(text);
    cJSON_Delete(root);
    return rc < 0 ? mfs_err_set(err, rc, "cannot build the reply: out of memory") : 0;
}

/* config.json of the repo as cJSON, or NULL when there is none, it is too
 * large or it is not a JSON object (info then shows nulls: a dataset or a
 * bare repo is still a valid mount).  The reason goes to the log. */
static cJSON *info_config(struct mfs_view *view, char **textp, size_t *lenp)
{
    const struct mfs_entry *e = mfs_view_entry(view, "config.json");
    struct mfs_err err = MFS_ERR_INIT;
    cJSON *root = NULL;
    size_t done = 0;
    char *buf;

    *textp = NULL;
    *lenp = 0;
    if (!e || e->size > INFO_MAX_CONFIG_BYTES)
        return NULL;
    buf = malloc((size_t)e->size + 1);
    if (!buf)
        return NULL;
    while (done < e->size) {
        ssize_t got = mfs_view_read_file(view, "config.json", done, (size_t)e->size - done,
                                         buf + done, &err);

        if (got <= 0) {
            if (got == 0)
                mfs_err_set(&err, -EIO, "it ends at byte %zu", done);
            mfs_view_log_path(view, "config.json", &err);
            goto out_free_buf;
        }
        done += (size_t)got;
    }
    buf[done] = '\0';
    root = cJSON_ParseWithLength(buf, done);
    if (root && !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        root = NULL;
    }
    if (!root)
        goto out_free_buf;
    *textp = buf;
    *lenp = done;
    return root;

out_free_buf:
    free(buf);
    return NULL;
}

/* The checkpoint's dtype: the one dtype of all its tensors, "mixed", or
 * NULL for no tensors. */
static const char *info_ckpt_dtype(const struct mfs_ckpt *ckpt)
{
    int first = -1;
    size_t i;

    for (i = 0; ckpt && i < ckpt->n_tensors; i++) {
        int d = (int)ckpt->tensors[i].dtype;

        if (first < 0)
            first = d;
        else if (d != first)
            return "mixed";
    }
    return first < 0 ? NULL : mfs_st_dtype_name((enum mfs_st_dtype)first);
}

static void add_u64_or_null(cJSON *obj, const char *key, bool have, uint64_t v)
{
    if (have)
        cJSON_AddNumberToObject(obj, key, (double)v);
    else
        cJSON_AddNullToObject(obj, key);
}

static void add_str_or_null(cJSON *obj, const char *key, const char *s)
{
    if (s && *s)
        cJSON_AddStringToObject(obj, key, s);
    else
        cJSON_AddNullToObject(obj, key);
}

/* Model fields of info: architectures, model_type, dtype, parameter
 * counts, footprints, flops, can_generate, tied (design.md, Control
 * files), from config.json and the checkpoint headers only; nulls for
 * what cannot be known. */
static void info_model(struct mfs_view *view, cJSON *root)
{
    const struct mfs_ckpt *ckpt = mfs_view_ckpt(view);
    struct mfs_model_config cfg;
    struct mfs_model_info mi;
    struct mfs_err err = MFS_ERR_INIT;
    bool have = false;
    char *text = NULL;
    size_t len = 0;
    cJSON *conf = info_config(view, &text, &len);
    cJSON *archs = conf ? cJSON_GetObjectItem(conf, "architectures") : NULL;
    cJSON *mt = conf ? cJSON_GetObjectItem(conf, "model_type") : NULL;
    cJSON *td = conf ? cJSON_GetObjectItem(conf, "torch_dtype") : NULL;
    cJSON *obj;

    memset(&mi, 0, sizeof(mi));
    if (cJSON_IsArray(archs)) {
        cJSON_AddItemToObject(root, "architectures", cJSON_Duplicate(archs, true));
    } else {
        cJSON_AddNullToObject(root, "architectures");
    }
    add_str_or_null(root, "model_type", cJSON_IsString(mt) ? mt->valuestring : NULL);
    add_str_or_null(root, "torch_dtype", cJSON_IsString(td) ? td->valuestring : NULL);
    add_str_or_null(root, "dtype", info_ckpt_dtype(ckpt));
    if (conf && ckpt && ckpt->n_tensors > 0) {
        if (mfs_model_config_parse(text, len, &cfg, &err) < 0) {
            mfs_view_log_path(view, "config.json", &err);
        } else if (mfs_model_info_compute(&cfg, ckpt, &mi, &err) < 0) {
            mfs_view_log_path(view, "config.json", &err);
        } else {
            have = true;
        }
    }
    add_u64_or_null(root, "num_parameters", have, mi.num_parameters);
    add_u64_or_null(root, "num_parameters_exclude_embeddings", have,
                    mi.num_parameters_exclude_embeddings);
    obj = cJSON_AddObjectToObject(root, "memory_footprint");
    if (obj) {
        add_u64_or_null(obj, "F32", have, mi.footprint_f32);
        add_u64_or_null(obj, "BF16", have, mi.footprint_bf16);
        add_u64_or_null(obj, "F16", have, mi.footprint_f16);
        add_u64_or_null(obj, "8-bit", have, mi.footprint_int8);
        add_u64_or_null(obj, "4-bit", have, mi.footprint_int4);
    }
    add_u64_or_null(root, "flops_per_token", have, mi.flops_per_token);
    add_u64_or_null(root, "flops_per_token_with_embeddings", have, mi.flops_per_token_all);
    if (have) {
        cJSON_AddBoolToObject(root, "can_generate", mi.can_generate);
        cJSON_AddBoolToObject(root, "tied_weights", mi.tied);
    } else {
        cJSON_AddNullToObject(root, "can_generate");
        cJSON_AddNullToObject(root, "tied_weights");
    }
    cJSON_Delete(conf);
    free(text);
}

static int info_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *r,
                     struct mfs_err *err)
{
    static const char *const formats[] = { "none", "safetensors", "pytorch" };
    uint64_t by_dtype[MFS_ST_DTYPE_COUNT] = { 0 };
    const struct mfs_ckpt *ck = mfs_view_ckpt(view);
    uint64_t files = 0;
    uint64_t bytes = 0;
    char commit[41];
    char stamp[32];
    struct tm tm;
    time_t t;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr;
    cJSON *obj;
    size_t i;
    int d;

    (void)state;
    if (!root)
        return mfs_err_set(err, -ENOMEM, "cannot build 'info': out of memory");
    rdlock(view);
    for (i = 0; i < view->n_nodes; i++) {
        if (view->nodes[i]->kind == NODE_FILE && view->nodes[i]->parent) {
            files++;
            bytes += node_size(view->nodes[i]);
        }
    }
    t = (time_t)view->commit_time;
    snprintf(commit, sizeof(commit), "%s", view->commit);
    unlock(view);
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(root, "repo_id", view->repo_id);
    cJSON_AddStringToObject(root, "revision", view->revision);
    cJSON_AddStringToObject(root, "commit", commit);
    cJSON_AddStringToObject(root, "commit_time", stamp);
    cJSON_AddBoolToObject(root, "read_only", view->stage == NULL);
    cJSON_AddNumberToObject(root, "files", (double)files);
    cJSON_AddNumberToObject(root, "bytes", (double)bytes);
    info_model(view, root);
    for (i = 0; ck && i < ck->n_tensors; i++) {
        const struct mfs_ckpt_tensor *ct = &ck->tensors[i];
        uint64_t n = 1;
        int k;

        for (k = 0; k < ct->ndim; k++)
            n *= ct->shape[k];
        if ((unsigned)ct->dtype < MFS_ST_DTYPE_COUNT)
            by_dtype[ct->dtype] += n;
    }
    d = ck && ck->format >= 0 && ck->format <= 2 ? ck->format : 0;
    cJSON_AddStringToObject(root, "checkpoint", formats[d]);
    arr = cJSON_AddArrayToObject(root, "shards");
    for (i = 0; ck && arr && i < ck->n_files; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(ck->files[i]));
    cJSON_AddNumberToObject(root, "tensors", ck ? (double)ck->n_tensors : 0);
    /* Stored elements per dtype: tied aliases stored twice count twice
     * here, unlike num_parameters. */
    obj = cJSON_AddObjectToObject(root, "elements_by_dtype");
    for (d = 0; obj && d < MFS_ST_DTYPE_COUNT; d++)
        if (by_dtype[d])
            cJSON_AddNumberToObject(obj, mfs_st_dtype_name((enum mfs_st_dtype)d),
                                    (double)by_dtype[d]);
    if (view->cache) {
        struct mfs_cache_stats cs;

        mfs_cache_stats_get(view->cache, &cs);
        cJSON_AddNumberToObject(root, "bytes_cached", (double)cs.bytes_stored);
    } else {
        cJSON_AddNullToObject(root, "bytes_cached");
    }
    return reply_json(r, root, err);
}


/* The writes part of status: "read_only", "pending" (the staged entries)
 * and "push" (the upload in progress). */
static void status_writes(struct mfs_view *view, cJSON *root)
{
    static const char *const kinds[] = { "?", "file", "deleted", "folder" };
    struct mfs_stage_entry *se = NULL;
    struct mfs_err err = MFS_ERR_INIT;
    size_t ns = 0;
    size_t i;
    cJSON *arr;
    cJSON *obj;

    cJSON_AddBoolToObject(root, "read_only", view->stage == NULL);
    if (view->stage && mfs_stage_list(view->stage, &se, &ns, &err) < 0) {
        logf_view(view, "status: cannot list the staged changes: %s", err.msg);
        ns = 0;
    }
    cJSON_AddNumberToObject(root, "pending_changes", (double)ns);
    arr = cJSON_AddArrayToObject(root, "pending");
    for (i = 0; arr && i < ns; i++) {
        obj = cJSON_CreateObject();
        if (!obj)
            break;
        cJSON_AddStringToObject(obj, "path", se[i].path);
        cJSON_AddStringToObject(obj, "kind", (unsigned)se[i].kind < 4 ? kinds[se[i].kind] : "?");
        cJSON_AddNumberToObject(obj, "size", (double)se[i].size);
        cJSON_AddItemToArray(arr, obj);
    }
    mfs_stage_entries_free(se, ns);
    obj = cJSON_AddObjectToObject(root, "push");
    if (obj) {
        struct mfs_push_progress pr;

        memset(&pr, 0, sizeof(pr));
        if (view->push)
            mfs_push_progress_get(view->push, &pr);
        pr.path[sizeof(pr.path) - 1] = '\0';
        cJSON_AddBoolToObject(obj, "running", pr.running);
        cJSON_AddStringToObject(obj, "path", pr.path);
        cJSON_AddNumberToObject(obj, "done", (double)pr.done);
        cJSON_AddNumberToObject(obj, "total", (double)pr.total);
    }
}
static int status_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *r,
                       struct mfs_err *err)
{
    struct mfs_fetch_transfer tr[32];
    struct mfs_fetch *fetch;
    cJSON *root = cJSON_CreateObject();
    cJSON *obj;
    cJSON *arr;
    size_t n = 0;
    size_t i;

    (void)state;
    if (!root)
        return mfs_err_set(err, -ENOMEM, "cannot build 'status': out of memory");
    cJSON_AddStringToObject(root, "repo_id", view->repo_id);
    rdlock(view);
    cJSON_AddStringToObject(root, "commit", view->commit);
    unlock(view);
    cJSON_AddBoolToObject(root, "offline", view->hub == NULL);
    status_writes(view, root);
    if (view->hub) {
        struct mfs_hub_stats hs;

        mfs_hub_stats_get(view->hub, &hs);
        obj = cJSON_AddObjectToObject(root, "hub");
        cJSON_AddNumberToObject(obj, "requests", (double)hs.requests);
        cJSON_AddNumberToObject(obj, "bytes_fetched", (double)hs.bytes_received);
        cJSON_AddNumberToObject(obj, "errors", (double)hs.errors);
        cJSON_AddNumberToObject(root, "bytes_fetched", (double)hs.bytes_received);
    } else {
        cJSON_AddNumberToObject(root, "bytes_fetched", 0);
    }
    if (view->cache) {
        struct mfs_cache_stats cs;

        mfs_cache_stats_get(view->cache, &cs);
        obj = cJSON_AddObjectToObject(root, "cache");
        cJSON_AddNumberToObject(obj, "hits", (double)cs.hits);
        cJSON_AddNumberToObject(obj, "misses", (double)cs.misses);
        cJSON_AddNumberToObject(obj, "bytes_stored", (double)cs.bytes_stored);
        cJSON_AddNumberToObject(obj, "bytes_evicted", (double)cs.bytes_evicted);
    }
    rdlock(view);
    fetch = view->fetch;
    unlock(view);
    if (fetch)
        n = mfs_fetch_transfers(fetch, tr, sizeof(tr) / sizeof(tr[0]));
    if (n > sizeof(tr) / sizeof(tr[0]))
        n = sizeof(tr) / sizeof(tr[0]);
    arr = cJSON_AddArrayToObject(root, "transfers");
    for (i = 0; arr && i < n; i++) {
        obj = cJSON_CreateObject();
        if (!obj)
            break;
        tr[i].path[sizeof(tr[i].path) - 1] = '\0';
        cJSON_AddStringToObject(obj, "path", tr[i].path);
        cJSON_AddNumberToObject(obj, "done", (double)tr[i].done);
        cJSON_AddNumberToObject(obj, "total", (double)tr[i].total);
        cJSON_AddItemToArray(arr, obj);
    }
    return reply_json(r, root, err);
}

static int log_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *r,
                    struct mfs_err *err)
{
    size_t i;
    int rc = 0;

    (void)state;
    pthread_mutex_lock(&view->log_mu);
    for (i = 0; i < view->log_n && rc == 0; i++) {
        const char *line = view->log[(view->log_head + i) % MFS_VIEW_LOG_LINES];

        rc = mfs_ctl_reply_write(r, line, strlen(line));
        if (rc == 0)
            rc = mfs_ctl_reply_write(r, "\n", 1);
    }
    pthread_mutex_unlock(&view->log_mu);
    return rc < 0 ? mfs_err_set(err, rc, "cannot build 'log': out of memory") : 0;
}

static const struct mfs_ctl_handler ctl_info = { "info", NULL, info_show, NULL, NULL };
static const struct mfs_ctl_handler ctl_status = { "status", NULL, status_show, NULL, NULL };
static const struct mfs_ctl_handler ctl_log = { "log", NULL, log_show, NULL, NULL };

/* Added by "ctl" (fs/ctl_infer.c): a plugin's init registers sibling files
 * that share its state. */
struct mfs_ctl *mfs_view_ctl(const struct mfs_view *view)
{
    return view->ctl;
}


/* ---- push, settings ------------------------------------------------------------- */

void mfs_view_settings_get(struct mfs_view *view, struct mfs_view_settings *s)
{
    pthread_mutex_lock(&view->settings_mu);
    *s = view->settings;
    pthread_mutex_unlock(&view->settings_mu);
}

/* Commit every open writer's bytes (their handles stay open). */
static int commit_writers(struct mfs_view *view, struct mfs_err *err)
{
    uint64_t *inos = NULL;
    uint64_t *sizes = NULL;
    size_t n = 0;
    size_t i;
    int rc = 0;

    rdlock(view);
    inos = calloc(view->n_nodes + 1, sizeof(*inos));
    sizes = calloc(view->n_nodes + 1, sizeof(*sizes));
    if (!inos || !sizes)
        rc = mfs_err_set(err, -ENOMEM, "cannot commit open files: out of memory");
    for (i = 0; rc == 0 && i < view->n_nodes; i++) {
        struct node *nd = view->nodes[i];
        struct wnode *wn = nd->wn;

        if (nd->kind != NODE_FILE || !wn || wn->tensor)
            continue;
        pthread_mutex_lock(&wn->mu);
        if (wn->w && wn->dirty && !wn->orphan) {
            rc = mfs_stage_writer_commit(wn->w, err);
            if (rc == 0) {
                wn->dirty = false;
                wn->committed = true;
                inos[n] = i + 1;
                sizes[n++] = mfs_stage_writer_size(wn->w);
            }
        }
        pthread_mutex_unlock(&wn->mu);
    }
    unlock(view);
    for (i = 0; i < n; i++)
        after_commit(view, inos[i], sizes[i]);
    free(inos);
    free(sizes);
    return rc;
}

/* Reshard the merged tree's checkpoints (fs/reshard.h); when something was
 * rewritten, show it.  push_mu held. */
static int reshard(struct mfs_view *view, uint64_t max_shard_size, bool force,
                   struct mfs_err *err)
{
    struct mfs_reshard_file *files = NULL;
    struct mfs_entry *remotes = NULL;
    struct mfs_reshard_result res;
    struct mfs_reshard_in in;
    size_t n = 0;
    size_t i;
    int rc = 0;

    memset(&res, 0, sizeof(res));
    rdlock(view);
    files = calloc(view->n_nodes + 1, sizeof(*files));
    remotes = calloc(view->n_nodes + 1, sizeof(*remotes));
    for (i = 0; files && remotes && i < view->n_nodes; i++) {
        struct node *nd = view->nodes[i];

        if (nd->kind != NODE_FILE || !nd->parent)
            continue;
        files[n].path = strdup(nd->path);
        files[n].size = node_size(nd);
        if (nd->remote && !nd->staged) {
            remotes[n] = nd->ent;
            remotes[n].path = strdup(nd->ent.path);
            files[n].remote = &remotes[n];
            if (!remotes[n].path)
                rc = -ENOMEM;
        }
        n++;
        if (!files[n - 1].path)
            rc = -ENOMEM;
    }
    unlock(view);
    if (!files || !remotes || rc < 0) {
        rc = mfs_err_set(err, -ENOMEM, "cannot reshard: out of memory");
        goto out_free;
    }
    in.files = files;
    in.n_files = n;
    in.read = ckpt_read;
    in.read_ctx = view;
    rc = mfs_reshard_run(view->stage, &in, max_shard_size, force, &res, err);
    if (rc == -ENOSYS) {
        logf_view(view, "reshard: not available, checkpoint left as written");
        mfs_err_clear(err);
        rc = 0;
    }
    if (rc < 0) {
        logf_view(view, "reshard: %s", err && err->msg[0] ? err->msg : "failed");
        goto out_free;
    }
    if (res.n_checkpoints > 0) {
        rc = sync_tree(view, err);
        if (rc == 0)
            rc = tensors_rebuild(view, err);
    }
out_free:
    for (i = 0; files && i < n; i++)
        free((char *)files[i].path);
    for (i = 0; remotes && i < n; i++)
        free(remotes[i].path);
    free(files);
    free(remotes);
    return rc;
}

int mfs_view_settings_set(struct mfs_view *view, const struct mfs_view_settings *s,
                          struct mfs_err *err)
{
    bool changed;
    int rc = 0;

    if (!view->stage)
        return mfs_err_set(err, -EROFS, "cannot change the settings: the mount is read-only");
    if (s->max_shard_size == 0)
        return mfs_err_set(err, -EINVAL, "bad max_shard_size 0: want a size such as 5GB");
    pthread_mutex_lock(&view->push_mu);
    pthread_mutex_lock(&view->settings_mu);
    changed = s->max_shard_size != view->settings.max_shard_size;
    view->settings = *s;
    view->settings.commit_message[sizeof(view->settings.commit_message) - 1] = '\0';
    view->settings.commit_description[sizeof(view->settings.commit_description) - 1] = '\0';
    pthread_mutex_unlock(&view->settings_mu);
    if (changed) {
        rc = commit_writers(view, err);
        if (rc == 0)
            rc = reshard(view, s->max_shard_size, true, err);
    }
    pthread_mutex_unlock(&view->push_mu);
    return rc;
}

/* Show commit r->commit with tree r->entries (after a push).  push_mu
 * held. */
static int rebase(struct mfs_view *view, const struct mfs_push_result *r, struct mfs_err *err)
{
    struct mfs_entry *ents;
    struct mfs_entry *old;
    size_t n_old;
    size_t kept = 0;
    void *ctx = NULL;
    size_t i;
    int rc;

    ents = calloc(r->n_entries + 1, sizeof(*ents));
    if (!ents)
        return mfs_err_set(err, -ENOMEM, "cannot show the new commit: out of memory");
    for (i = 0; i < r->n_entries; i++) {
        const char *p = r->entries[i].path ? r->entries[i].path : "";

        if (!path_safe(p) || !strcmp(p, MFS_VIEW_CONTROL) ||
            !strncmp(p, MFS_VIEW_CONTROL "/", 9))
            continue;
        ents[kept] = r->entries[i];
        ents[kept].path = strdup(p);
        if (!ents[kept].path) {
            mfs_entries_free(ents, kept);
            return mfs_err_set(err, -ENOMEM, "cannot show the new commit: out of memory");
        }
        kept++;
    }
    qsort(ents, kept, sizeof(*ents), cmp_entry_path);
    if (view->refetch)
        ctx = view->refetch(view->refetch_ctx, r->commit);
    wrlock(view);
    old = view->entries;
    n_old = view->n_entries;
    view->entries = ents;
    view->n_entries = kept;
    snprintf(view->commit, sizeof(view->commit), "%s", r->commit);
    if (r->commit_time)
        view->commit_time = r->commit_time;
    if (ctx) {
        if (view->read == read_fetch)
            view->fetch = ctx;
        view->read_ctx = ctx;
    }
    unlock(view);
    mfs_entries_free(old, n_old);
    rc = sync_tree(view, err);
    if (rc == 0)
        rc = tensors_rebuild(view, err);
    return rc;
}

int mfs_view_push(struct mfs_view *view, const struct mfs_push_opts *opts,
                  struct mfs_push_result *res, struct mfs_err *err)
{
    struct mfs_view_settings s;
    struct mfs_push_result r;
    struct mfs_push_opts o;
    int rc;

    if (res)
        memset(res, 0, sizeof(*res));
    if (!view->stage)
        return mfs_err_set(err, -EROFS, "cannot push: the mount is read-only");
    if (!view->push) {
        if (!view->hub)
            rc = mfs_err_set(err, -EIO, "cannot push: the mount is offline");
        else
            rc = mfs_err_set(err, -EROFS, "cannot push: no push is configured");
        logf_view(view, "push: %s", err ? err->msg : "failed");
        return rc;
    }
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&view->push_mu);
    mfs_view_settings_get(view, &s);
    rc = commit_writers(view, err);
    if (rc == 0)
        rc = reshard(view, s.max_shard_size, false, err);
    if (rc < 0)
        goto out_log;
    if (opts) {
        o = *opts;
    } else {
        o.message = s.commit_message;
        o.description = s.commit_description;
        o.create_pr = s.create_pr;
    }
    rc = mfs_push_run(view->push, view->commit, view->entries, view->n_entries, &o, &r, err);
    if (rc < 0)
        goto out_log;
    if (r.entries)
        rc = rebase(view, &r, err);
    if (rc < 0)
        goto out_log;
    if (r.committed)
        logf_view(view, "push: commit %s%s%s", r.commit, r.pr_url[0] ? " " : "", r.pr_url);
    if (res)
        *res = r;
    else
        mfs_push_result_release(&r);
    pthread_mutex_unlock(&view->push_mu);
    return 0;

out_log:
    logf_view(view, "push: %s", err && err->msg[0] ? err->msg : "failed");
    mfs_push_result_release(&r);
    pthread_mutex_unlock(&view->push_mu);
    return rc;
}

struct mfs_stage *mfs_view_stage(const struct mfs_view *view)
{
    return view->stage;
}

struct mfs_push *mfs_view_pusher(const struct mfs_view *view)
{
    return view->push;
}
