/*
 * fs/view.c - the mounted tree (fs/view.h): nodes, reads, tensors/,
 * .modelfs/ (info, status, log).  The write half (the stage merged over
 * the commit, open files and their writers, tree changes, push and
 * settings) is fs/view_write.c; the structs both use are in fs/view_int.h,
 * which also gives the lock order.
 *
 * A folder's children are sorted by name: lookup is a binary search and
 * readdir offsets are child indices.  mfs_view_new() builds the commit's
 * tree with a hash of full paths, then merges the stage
 * (mfs_view_sync_tree).
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
#include "fs/view_int.h"

/* config.json larger than this is not a config (info shows nulls). */
#define INFO_MAX_CONFIG_BYTES (4u << 20)

/* ---- small helpers ------------------------------------------------------ */

/* Keep p (a path an unlocked reader may still hold) until the view goes. */
void mfs_view_bury(struct mfs_view *view, void *p)
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

void mfs_view_node_set_path(struct node *n, char *path)
{
    const char *slash = strrchr(path, '/');

    n->path = path;
    n->name = slash ? slash + 1 : path;
    n->pub.path = path;
}

/* Append a node (path is taken over); returns its inode or 0 on ENOMEM. */
uint64_t mfs_view_node_add(struct mfs_view *view, enum node_kind kind, char *path, uint64_t parent)
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
    mfs_view_node_set_path(n, path);
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

uint64_t mfs_view_child_find(const struct mfs_view *view, uint64_t dir, const char *name)
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
int mfs_view_child_insert(struct mfs_view *view, uint64_t dir, uint64_t child)
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

void mfs_view_child_remove(struct mfs_view *view, uint64_t dir, uint64_t child)
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
void mfs_view_detach(struct mfs_view *view, uint64_t ino)
{
    struct node *n = node_of(view, ino);
    size_t i;

    if (!n || ino == MFS_VIEW_ROOT_INO || !n->parent)
        return;
    for (i = n->n_children; i > 0; i--)
        mfs_view_detach(view, n->children[i - 1]);
    mfs_view_child_remove(view, n->parent, ino);
    n->parent = 0;
    if (n->wn) {
        pthread_mutex_lock(&n->wn->mu);
        n->wn->orphan = true;
        pthread_mutex_unlock(&n->wn->mu);
    }
}

char *mfs_view_join(const char *dir, const char *name)
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
bool mfs_view_path_safe(const char *path)
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
    ino = mfs_view_node_add(view, NODE_DIR, copy, parent);
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
uint64_t mfs_view_walk(const struct mfs_view *view, const char *path)
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
        ino = mfs_view_child_find(view, ino, comp);
        p = e ? e + 1 : p + n;
    }
    return ino;
}

/* Find or make the folder at path in the live tree (sorted inserts),
 * marking each folder on the way with the current epoch.  Returns its
 * inode, 0 on ENOMEM or when a file is in the way (*rc -ENOTDIR). */
uint64_t mfs_view_walk_mkdirs(struct mfs_view *view, const char *path, int *rc)
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
        next = mfs_view_child_find(view, ino, name);
        if (next && view->nodes[next - 1]->kind != NODE_DIR) {
            free(sub);
            *rc = -ENOTDIR;
            return 0;
        }
        if (!next) {
            next = mfs_view_node_add(view, NODE_DIR, sub, ino);
            if (!next || mfs_view_child_insert(view, ino, next) < 0) {
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

int mfs_view_cmp_entry_path(const void *a, const void *b)
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

void mfs_view_logf(struct mfs_view *view, const char *fmt, ...)
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
    mfs_view_logf(view, "%s '%s': %s", op, path, err && err->msg[0] ? err->msg : "failed");
}

void mfs_view_log_path(void *viewp, const char *path, const struct mfs_err *err)
{
    struct mfs_view *view = viewp;

    if (!view)
        return;
    if (err && err->msg[0] && path && strstr(err->msg, path))
        mfs_view_logf(view, "%s", err->msg);      /* the reason already names the file */
    else
        mfs_view_logf(view, "'%s': %s", path ? path : "", err && err->msg[0] ? err->msg : "failed");
}

/* ---- reading repo files ---------------------------------------------------- */

ssize_t mfs_view_read_fetch(void *ctx, const struct mfs_entry *e, uint64_t stream, uint64_t off,
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
    return bsearch(&key, view->entries, view->n_entries, sizeof(key), mfs_view_cmp_entry_path);
}

/* Whether the commit has path, or anything under it (a folder). */
bool mfs_view_base_has(const struct mfs_view *view, const char *path)
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
ssize_t mfs_view_read_node(struct mfs_view *view, uint64_t ino, uint64_t stream, uint64_t off,
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
    ino = mfs_view_walk(v, path);
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
    ino = mfs_view_walk(view, path);
    if (ino && view->nodes[ino - 1]->kind != NODE_FILE)
        ino = 0;
    unlock(view);
    if (!ino)
        return mfs_err_set(err, -ENOENT, "cannot read '%s': no such file in the repo", path);
    return mfs_view_read_node(view, ino, 0, off, len, buf, err);
}

ssize_t mfs_view_ckpt_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                           struct mfs_err *err)
{
    return mfs_view_read_file(ctx, path, off, len, buf, err);
}

/* Whether a change of path may change the checkpoint (tensors/). */
bool mfs_view_is_ckpt_path(const char *path)
{
    size_t n = strlen(path);

    if (strchr(path, '/'))
        return false;
    return (n > 12 && !strcmp(path + n - 12, ".safetensors")) ||
           (n > 11 && !strcmp(path + n - 11, ".index.json")) ||
           (n > 4 && !strcmp(path + n - 4, ".bin"));
}

/* ---- building and merging ------------------------------------------------ */

void mfs_view_node_set_size(struct node *n, uint64_t size)
{
    n->size = size;
    n->pub.size = size;
}

/* Make file node n show commit blob e (copied).  -ENOMEM. */
int mfs_view_node_set_remote(struct node *n, const struct mfs_entry *e)
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

        if (!mfs_view_path_safe(p)) {
            mfs_view_logf(view, "'%s': unsafe path in the repo's file list, left out", p);
            continue;
        }
        if (is_control) {
            mfs_view_logf(view, "'%s': hidden by the control folder", p);
            continue;
        }
        view->entries[kept] = *src;
        view->entries[kept].path = strdup(p);
        if (!view->entries[kept].path)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        kept++;
    }
    view->n_entries = kept;
    qsort(view->entries, kept, sizeof(*view->entries), mfs_view_cmp_entry_path);
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
                mfs_view_logf(view, "'%s': both a file and a folder, folder left out", e->path);
            continue;
        }
        if (map_get(view, m, e->path)) {
            mfs_view_logf(view, "'%s': listed twice or also a folder, left out", e->path);
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
            mfs_view_logf(view, "'%s': its folder is also a file, left out", e->path);
            continue;
        }
        path = strdup(e->path);
        if (!path)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        ino = mfs_view_node_add(view, NODE_FILE, path, parent);
        if (!ino || child_add(view, parent, ino) < 0 ||
            mfs_view_node_set_remote(view->nodes[ino - 1], e) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        mfs_view_node_set_size(view->nodes[ino - 1], e->size);
        view->total_bytes += e->size;
        if (map_put(view, m, ino) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    }
    return 0;
}

/* Current size of file node n (its writer's when open).  Tree lock held. */
uint64_t mfs_view_node_size(const struct node *n)
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
int mfs_view_tensors_rebuild(struct mfs_view *view, struct mfs_err *err)
{
    bool oom;
    struct mfs_ckpt_io io = { mfs_view_ckpt_read, mfs_view_log_path, view };
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
        files[n].size = mfs_view_node_size(nd);
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
        mfs_view_logf(view, "tensors/ is empty: %s",
                      err && err->msg[0] ? err->msg : "no checkpoint");
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
        uint64_t shard = mfs_view_walk(view, t->file);
        struct node *s = shard ? view->nodes[shard - 1] : NULL;
        uint64_t size = s && s->kind == NODE_FILE ? mfs_view_node_size(s) : 0;
        uint64_t ino;

        if (!t->name || !t->name[0] || strchr(t->name, '/') || !strcmp(t->name, ".") ||
            !strcmp(t->name, "..")) {
            mfs_view_logf(view, "'%s': tensor name '%s' cannot be a file name, left out",
                          t->file, t->name ? t->name : "");
            continue;
        }
        if (!s || s->kind != NODE_FILE || t->offset > size || t->nbytes > size - t->offset) {
            mfs_view_logf(view, "'%s': tensor '%s' lies outside its file, left out", t->file,
                          t->name);
            continue;
        }
        ino = mfs_view_child_find(view, view->tensors_ino, t->name);
        if (ino && view->nodes[ino - 1]->mark == view->epoch)
            continue;                       /* a name twice: the first wins */
        if (!ino) {
            char *path = mfs_view_join(MFS_VIEW_TENSORS, t->name);

            if (!path) {
                rc = -ENOMEM;
                break;
            }
            ino = mfs_view_node_add(view, NODE_TENSOR, path, view->tensors_ino);
            if (!ino || mfs_view_child_insert(view, view->tensors_ino, ino) < 0) {
                rc = -ENOMEM;
                break;
            }
        }
        view->nodes[ino - 1]->tensor = t;
        mfs_view_node_set_size(view->nodes[ino - 1], t->nbytes);
        view->nodes[ino - 1]->mark = view->epoch;
    }
    {
        struct node *d = view->nodes[view->tensors_ino - 1];

        for (i = d->n_children; i > 0; i--)
            if (view->nodes[d->children[i - 1] - 1]->mark != view->epoch)
                mfs_view_detach(view, d->children[i - 1]);
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
    char *path = mfs_view_join(MFS_VIEW_CONTROL, mfs_ctl_name(view->ctl, idx));
    uint64_t ino;

    if (!path)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    ino = mfs_view_node_add(view, NODE_CTL, path, view->control_ino);
    if (!ino || mfs_view_child_insert(view, view->control_ino, ino) < 0)
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

    view->control_ino = mfs_view_walk_mkdirs(view, MFS_VIEW_CONTROL, &rc);
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
                mfs_view_logf(view, "'%s/%s': %s", MFS_VIEW_CONTROL, mfs_ctl_plugins[i]->name,
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
    view->read = cfg->read ? cfg->read : mfs_view_read_fetch;
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
    if (!root_path || !mfs_view_node_add(view, NODE_DIR, root_path, 0)) {
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
    rc = mfs_view_sync_tree(view, err);
    if (rc < 0)
        goto out_free_map;
    rc = build_control(view, cfg, err);
    if (rc < 0)
        goto out_free_map;
    if (mfs_view_walk(view, MFS_VIEW_TENSORS)) {
        mfs_view_logf(view, "'%s': the repo has its own, so the tensor folder is not shown",
                      MFS_VIEW_TENSORS);
    } else {
        view->tensors_ino = mfs_view_walk_mkdirs(view, MFS_VIEW_TENSORS, &rc);
        if (!view->tensors_ino) {
            rc = mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
            goto out_free_map;
        }
        /* After every mfs_ctl_add_init: handlers may look at the tree. */
        rc = mfs_view_tensors_rebuild(view, err);
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

void mfs_view_wnode_free(struct wnode *wn)
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
        mfs_view_wnode_free(n->wn);
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
void mfs_view_fill_attr(const struct mfs_view *view, const struct node *n, uint64_t ino,
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
        a->size = mfs_view_node_size(n);
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
        mfs_view_fill_attr(view, n, ino, attr);
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
        ino = mfs_view_child_find(view, parent, name);
    if (!ino) {
        rc = mfs_err_set(err, -ENOENT, "'%s%s%s' does not exist", d->path,
                         d->path[0] ? "/" : "", name);
        goto out_unlock;
    }
    atomic_fetch_add(&view->nodes[ino - 1]->lookups, 1);
    mfs_view_fill_attr(view, view->nodes[ino - 1], ino, attr);
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
        mfs_view_fill_attr(view, view->nodes[child - 1], child, &a);
        if (fill(ctx, name, &a, i + 1))
            break;
    }
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
                *bytes += mfs_view_node_size(view->nodes[i]);
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
            bytes += mfs_view_node_size(view->nodes[i]);
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
        mfs_view_logf(view, "status: cannot list the staged changes: %s", err.msg);
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
