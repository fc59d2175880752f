/*
 * fs/view.c - the mounted tree (fs/view.h): nodes, tensors/, .modelfs/.
 *
 * mfs_view_new() builds every node up front in one array (inode = index +
 * 1): folders are made from the file paths (a hash of full paths finds a
 * parent or a duplicate in O(1)), each folder's children are sorted by name
 * so lookup is a binary search and readdir offsets are child indices.
 * Nothing in the array changes after that except lookup counts (atomics),
 * so readers need no lock.  The log ring has its own mutex; control-file
 * conversations live in fs/control.c.
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

#include "common/buf.h"
#include "fs/control.h"
#include "fs/view.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"

/* config.json larger than this is not a config (info shows nulls). */
#define INFO_MAX_CONFIG_BYTES (4u << 20)

enum node_kind {
    NODE_DIR,
    NODE_FILE,                              /* a repo file */
    NODE_TENSOR,                            /* tensors/<name> */
    NODE_CTL,                               /* .modelfs/<name> */
};

struct node {
    enum node_kind kind;
    char *path;                             /* owned; from the mount root, "" for the root */
    const char *name;                       /* last component, inside path */
    uint64_t parent;                        /* parent's inode (the root's is itself) */
    uint64_t *children;                     /* owned; child inodes sorted by name (folders) */
    size_t n_children;
    size_t cap_children;
    uint32_t n_subdirs;                     /* child folders, for nlink */
    uint64_t size;                          /* bytes */
    const struct mfs_entry *entry;          /* FILE: itself; TENSOR: its shard */
    const struct mfs_ckpt_tensor *tensor;   /* TENSOR */
    size_t ctl;                             /* CTL: index in the control table */
    _Atomic uint64_t lookups;               /* FUSE lookup count */
};

struct view_handle {
    uint64_t ino;                           /* what was opened */
    struct mfs_ctl_handle *ctl;             /* control files only */
};

struct mfs_view {
    char *repo_id;                          /* owned */
    char *revision;                         /* owned */
    char commit[41];
    int64_t commit_time;                    /* unix seconds */
    struct mfs_entry *entries;              /* owned; the safe entries, path order */
    size_t n_entries;
    struct node *nodes;                     /* owned; inode i is nodes[i - 1] */
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
    struct mfs_ctl *ctl;                    /* owned */
    uint32_t uid;
    uint32_t gid;
    pid_t pid;                              /* the daemon, for umount */
    uint64_t total_bytes;                   /* sum of repo file sizes */
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
    return &view->nodes[ino - 1];
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
        if (!strcmp(view->nodes[m->slots[i] - 1].path, path))
            return m->slots[i];
        i = (i + 1) & m->mask;
    }
    return 0;
}

static void map_insert(const struct mfs_view *view, struct path_map *m, uint64_t ino)
{
    size_t i = hash_str(view->nodes[ino - 1].path) & m->mask;

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

/* Append a node (path is taken over); returns its inode or 0 on ENOMEM. */
static uint64_t node_add(struct mfs_view *view, enum node_kind kind, char *path, uint64_t parent)
{
    struct node *n;
    const char *slash;

    if (view->n_nodes == view->cap_nodes) {
        size_t cap = view->cap_nodes ? view->cap_nodes * 2 : 64;
        struct node *nn = realloc(view->nodes, cap * sizeof(*nn));

        if (!nn) {
            free(path);
            return 0;
        }
        view->nodes = nn;
        view->cap_nodes = cap;
    }
    n = &view->nodes[view->n_nodes];
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->path = path;
    slash = strrchr(path, '/');
    n->name = slash ? slash + 1 : path;
    n->parent = parent ? parent : view->n_nodes + 1;
    atomic_init(&n->lookups, 0);
    view->n_nodes++;
    return view->n_nodes;
}

static int child_add(struct mfs_view *view, uint64_t dir, uint64_t child)
{
    struct node *d = &view->nodes[dir - 1];

    if (d->n_children == d->cap_children) {
        size_t cap = d->cap_children ? d->cap_children * 2 : 8;
        uint64_t *c = realloc(d->children, cap * sizeof(*c));

        if (!c)
            return -ENOMEM;
        d->children = c;
        d->cap_children = cap;
    }
    d->children[d->n_children++] = child;
    if (view->nodes[child - 1].kind == NODE_DIR)
        d->n_subdirs++;
    return 0;
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
    return strlen(path) < 4096;
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
        if (view->nodes[ino - 1].kind != NODE_DIR) {
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

static int cmp_entry_path(const void *a, const void *b)
{
    return strcmp(((const struct mfs_entry *)a)->path, ((const struct mfs_entry *)b)->path);
}

/* The view whose nodes a qsort_r of children compares. */
static int cmp_child(const void *a, const void *b, void *ctx)
{
    const struct mfs_view *view = ctx;

    return strcmp(view->nodes[*(const uint64_t *)a - 1].name,
                  view->nodes[*(const uint64_t *)b - 1].name);
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

    if (!view)
        return;
    n = node_of(view, ino);
    logf_view(view, "%s '%s': %s", op, n ? n->path : "?",
              err && err->msg[0] ? err->msg : "failed");
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

const struct mfs_entry *mfs_view_entry(const struct mfs_view *view, const char *path)
{
    const struct mfs_entry *e = entry_find(view, path);

    return e && !e->is_dir ? e : NULL;
}

ssize_t mfs_view_read_file(struct mfs_view *view, const char *path, uint64_t off, size_t len,
                           void *buf, struct mfs_err *err)
{
    const struct mfs_entry *e = mfs_view_entry(view, path);

    if (!e)
        return mfs_err_set(err, -ENOENT, "cannot read '%s': no such file in the repo", path);
    if (off >= e->size)
        return 0;
    if (len > e->size - off)
        len = (size_t)(e->size - off);
    return view->read(view->read_ctx, e, 0, off, len, buf, err);
}

static ssize_t ckpt_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                         struct mfs_err *err)
{
    return mfs_view_read_file(ctx, path, off, len, buf, err);
}

/* ---- building ------------------------------------------------------------- */

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
        if (!ino || child_add(view, parent, ino) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        view->nodes[ino - 1].entry = e;
        view->nodes[ino - 1].size = e->size;
        view->total_bytes += e->size;
        if (map_put(view, m, ino) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    }
    return 0;
}

static int build_tensors(struct mfs_view *view, const struct mfs_view_cfg *cfg,
                         struct path_map *m, struct mfs_err *err)
{
    struct mfs_ckpt_file *files = NULL;
    struct mfs_ckpt_io io = { ckpt_read, mfs_view_log_path, view };
    size_t n = 0;
    size_t i;
    int rc = 0;

    if (map_get(view, m, MFS_VIEW_TENSORS)) {
        logf_view(view, "'%s': the repo has its own, so the tensor folder is not shown",
                  MFS_VIEW_TENSORS);
        return 0;
    }
    view->tensors_ino = ensure_dir(view, m, MFS_VIEW_TENSORS, &rc);
    if (!view->tensors_ino)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    if (cfg->no_tensors)
        return 0;
    files = calloc(view->n_entries ? view->n_entries : 1, sizeof(*files));
    if (!files)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    for (i = 0; i < view->n_entries; i++) {
        if (view->entries[i].is_dir)
            continue;
        files[n].path = view->entries[i].path;
        files[n].size = view->entries[i].size;
        n++;
    }
    rc = mfs_ckpt_open(files, n, NULL, &io, &view->ckpt, err);
    free(files);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        /* The files still work without tensors/ (a gated repo, a flaky
         * server): say why in the log rather than refuse the mount. */
        logf_view(view, "tensors/ is empty: %s", err && err->msg[0] ? err->msg : "no checkpoint");
        mfs_err_clear(err);
        view->ckpt = NULL;
        return 0;
    }
    for (i = 0; i < view->ckpt->n_tensors; i++) {
        const struct mfs_ckpt_tensor *t = &view->ckpt->tensors[i];
        const struct mfs_entry *e = entry_find(view, t->file);
        char *path;
        uint64_t ino;

        if (!t->name || !t->name[0] || strchr(t->name, '/') || !strcmp(t->name, ".") ||
            !strcmp(t->name, "..")) {
            logf_view(view, "'%s': tensor name '%s' cannot be a file name, left out",
                      t->file, t->name ? t->name : "");
            continue;
        }
        if (!e || e->is_dir || t->offset > e->size || t->nbytes > e->size - t->offset) {
            logf_view(view, "'%s': tensor '%s' lies outside its file, left out", t->file,
                      t->name);
            continue;
        }
        path = join(MFS_VIEW_TENSORS, t->name);
        if (!path)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        if (map_get(view, m, path)) {
            free(path);
            continue;
        }
        ino = node_add(view, NODE_TENSOR, path, view->tensors_ino);
        if (!ino || child_add(view, view->tensors_ino, ino) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
        view->nodes[ino - 1].tensor = t;
        view->nodes[ino - 1].entry = e;
        view->nodes[ino - 1].size = t->nbytes;
        if (map_put(view, m, ino) < 0)
            return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    }
    return 0;
}

static int add_ctl_node(struct mfs_view *view, size_t idx, struct mfs_err *err)
{
    char *path = join(MFS_VIEW_CONTROL, mfs_ctl_name(view->ctl, idx));
    struct node *d;
    uint64_t ino;

    if (!path)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    ino = node_add(view, NODE_CTL, path, view->control_ino);
    if (!ino || child_add(view, view->control_ino, ino) < 0)
        return mfs_err_set(err, -ENOMEM, "cannot build the view: out of memory");
    view->nodes[ino - 1].ctl = idx;
    d = &view->nodes[view->control_ino - 1];
    qsort_r(d->children, d->n_children, sizeof(*d->children), cmp_child, view);
    return 0;
}

static const struct mfs_ctl_handler ctl_info;
static const struct mfs_ctl_handler ctl_status;
static const struct mfs_ctl_handler ctl_log;

static int build_control(struct mfs_view *view, const struct mfs_view_cfg *cfg,
                         struct path_map *m, struct mfs_err *err)
{
    const struct mfs_ctl_handler *const builtin[] = { &ctl_info, &ctl_log, &ctl_status };
    size_t i;
    int rc = 0;

    view->control_ino = ensure_dir(view, m, MFS_VIEW_CONTROL, &rc);
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
    return add_ctl_node(view, mfs_ctl_count(view->ctl) - 1, err);
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
    rc = build_control(view, cfg, &map, err);
    if (rc < 0)
        goto out_free_map;
    /* The tensor table grows the node array, so it comes after every
     * mfs_ctl_add_init (handlers may look at the tree). */
    rc = build_tensors(view, cfg, &map, err);
    if (rc < 0)
        goto out_free_map;
    for (i = 0; i < view->n_nodes; i++) {
        struct node *n = &view->nodes[i];

        if (n->kind == NODE_DIR && n->n_children > 1)
            qsort_r(n->children, n->n_children, sizeof(*n->children), cmp_child, view);
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

void mfs_view_free(struct mfs_view **viewp)
{
    struct mfs_view *view;
    size_t i;

    if (!viewp || !*viewp)
        return;
    view = *viewp;
    mfs_ctl_free(&view->ctl);
    for (i = 0; i < view->n_nodes; i++) {
        free(view->nodes[i].path);
        free(view->nodes[i].children);
    }
    free(view->nodes);
    mfs_ckpt_free(&view->ckpt);
    mfs_entries_free(view->entries, view->n_entries);
    for (i = 0; i < view->log_n; i++)
        free(view->log[(view->log_head + i) % MFS_VIEW_LOG_LINES]);
    pthread_mutex_destroy(&view->log_mu);
    free(view->repo_id);
    free(view->revision);
    free(view);
    *viewp = NULL;
}

/* ---- attributes, lookup, readdir --------------------------------------- */

static void fill_attr(const struct mfs_view *view, const struct node *n, uint64_t ino,
                      struct mfs_view_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->ino = ino;
    a->mtime = view->commit_time;
    a->uid = view->uid;
    a->gid = view->gid;
    switch (n->kind) {
    case NODE_DIR:
        a->mode = S_IFDIR | 0555;
        a->nlink = 2 + n->n_subdirs;
        break;
    case NODE_CTL:
        a->mode = S_IFREG | (mfs_ctl_writable(view->ctl, n->ctl) ? 0666 : 0444);
        a->nlink = 1;
        break;
    default:
        a->mode = S_IFREG | 0444;
        a->nlink = 1;
        a->size = n->size;
        break;
    }
}

int mfs_view_getattr(struct mfs_view *view, uint64_t ino, struct mfs_view_attr *attr,
                     struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);

    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    fill_attr(view, n, ino, attr);
    return 0;
}

int mfs_view_lookup(struct mfs_view *view, uint64_t parent, const char *name,
                    struct mfs_view_attr *attr, struct mfs_err *err)
{
    const struct node *d = node_of(view, parent);
    size_t lo = 0;
    size_t hi;
    uint64_t ino = 0;

    if (!d)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)parent);
    if (d->kind != NODE_DIR)
        return mfs_err_set(err, -ENOTDIR, "'%s' is not a folder", d->path);
    if (!strcmp(name, "."))
        ino = parent;
    else if (!strcmp(name, ".."))
        ino = d->parent;
    hi = d->n_children;
    while (!ino && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, view->nodes[d->children[mid] - 1].name);

        if (c == 0)
            ino = d->children[mid];
        else if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (!ino)
        return mfs_err_set(err, -ENOENT, "'%s%s%s' does not exist", d->path,
                           d->path[0] ? "/" : "", name);
    atomic_fetch_add(&view->nodes[ino - 1].lookups, 1);
    fill_attr(view, &view->nodes[ino - 1], ino, attr);
    return 0;
}

void mfs_view_forget(struct mfs_view *view, uint64_t ino, uint64_t nlookup)
{
    struct node *n = node_of(view, ino);
    uint64_t cur;

    if (!n)
        return;
    cur = atomic_load(&n->lookups);
    /* Never below zero, even if the kernel forgets more than we counted. */
    while (!atomic_compare_exchange_weak(&n->lookups, &cur, cur > nlookup ? cur - nlookup : 0))
        ;
}

uint64_t mfs_view_lookups(struct mfs_view *view, uint64_t ino)
{
    struct node *n = node_of(view, ino);

    return n ? atomic_load(&n->lookups) : 0;
}

int mfs_view_readdir(struct mfs_view *view, uint64_t ino, uint64_t off, mfs_view_fill_fn fill,
                     void *ctx, struct mfs_err *err)
{
    const struct node *d = node_of(view, ino);
    struct mfs_view_attr a;
    uint64_t i;

    if (!d)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (d->kind != NODE_DIR)
        return mfs_err_set(err, -ENOTDIR, "'%s' is not a folder", d->path);
    for (i = off; i < 2 + (uint64_t)d->n_children; i++) {
        const char *name;
        uint64_t child;

        if (i == 0) {
            name = ".";
            child = ino;
        } else if (i == 1) {
            name = "..";
            child = d->parent;
        } else {
            child = d->children[i - 2];
            name = view->nodes[child - 1].name;
        }
        fill_attr(view, &view->nodes[child - 1], child, &a);
        if (fill(ctx, name, &a, i + 1))
            break;
    }
    return 0;
}

/* ---- open, read, write ---------------------------------------------------- */

int mfs_view_open(struct mfs_view *view, uint64_t ino, int flags, pid_t pid, uint64_t *fh,
                  unsigned *open_flags, struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);
    struct view_handle *h;
    int rc;

    *fh = 0;
    *open_flags = 0;
    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (n->kind == NODE_DIR)
        return mfs_err_set(err, -EISDIR, "cannot open '%s': is a folder", n->path);
    if (n->kind != NODE_CTL && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
        return mfs_err_set(err, -EROFS, "cannot write '%s': the mount is read-only", n->path);
    h = calloc(1, sizeof(*h));
    if (!h)
        return mfs_err_set(err, -ENOMEM, "cannot open '%s': out of memory", n->path);
    h->ino = ino;
    if (n->kind == NODE_CTL) {
        rc = mfs_ctl_open(view->ctl, n->ctl, flags, pid, &h->ctl, err);
        if (rc < 0) {
            free(h);
            return rc;
        }
        *open_flags = MFS_VIEW_DIRECT_IO;
    } else {
        *open_flags = MFS_VIEW_KEEP_CACHE;
    }
    *fh = (uint64_t)(uintptr_t)h;
    /* Reading one tensor should fetch about that tensor, not the
     * prefetch window past its end. */
    if (n->kind == NODE_TENSOR && view->fetch && view->read == read_fetch)
        mfs_fetch_stream_bound(view->fetch, *fh, n->tensor->offset + n->tensor->nbytes);
    return 0;
}

ssize_t mfs_view_read(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                      size_t len, void *buf, struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;
    uint64_t base;

    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    switch (n->kind) {
    case NODE_DIR:
        return mfs_err_set(err, -EISDIR, "cannot read '%s': is a folder", n->path);
    case NODE_CTL:
        if (!h || !h->ctl)
            return mfs_err_set(err, -EBADF, "cannot read '%s': not open", n->path);
        return mfs_ctl_read(view->ctl, h->ctl, off, len, buf, err);
    default:
        break;
    }
    if (off >= n->size || len == 0)
        return 0;
    if (len > n->size - off)
        len = (size_t)(n->size - off);
    base = n->kind == NODE_TENSOR ? n->tensor->offset : 0;
    return view->read(view->read_ctx, n->entry, fh, base + off, len, buf, err);
}

ssize_t mfs_view_write(struct mfs_view *view, uint64_t ino, uint64_t fh, uint64_t off,
                       const void *data, size_t len, struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;

    (void)off;
    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (n->kind != NODE_CTL)
        return mfs_err_set(err, -EROFS, "cannot write '%s': the mount is read-only", n->path);
    if (!h || !h->ctl)
        return mfs_err_set(err, -EBADF, "cannot write '%s': not open", n->path);
    return mfs_ctl_write(view->ctl, h->ctl, data, len, err);
}

void mfs_view_interrupt(struct mfs_view *view, uint64_t ino, uint64_t fh, bool on)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;

    (void)ino;
    if (h && h->ctl)
        mfs_ctl_interrupt(view->ctl, h->ctl, on);
}

void mfs_view_release(struct mfs_view *view, uint64_t ino, uint64_t fh)
{
    struct view_handle *h = (struct view_handle *)(uintptr_t)fh;

    (void)ino;
    if (!h)
        return;
    if (h->ctl)
        mfs_ctl_release(view->ctl, h->ctl);
    else if (view->fetch && view->read == read_fetch)
        mfs_fetch_stream_end(view->fetch, fh);
    free(h);
}

int mfs_view_truncate(struct mfs_view *view, uint64_t ino, uint64_t size, struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);

    (void)size;
    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (n->kind == NODE_CTL)
        return 0;
    if (n->kind == NODE_DIR)
        return mfs_err_set(err, -EISDIR, "cannot truncate '%s': is a folder", n->path);
    return mfs_err_set(err, -EROFS, "cannot truncate '%s': the mount is read-only", n->path);
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

ssize_t mfs_view_getxattr(struct mfs_view *view, uint64_t ino, const char *name, char *buf,
                          size_t size, struct mfs_err *err)
{
    const struct node *n = node_of(view, ino);
    char value[MFS_ST_MAX_DIMS * 24 + 8];

    if (!n)
        return mfs_err_set(err, -ENOENT, "no inode %llu", (unsigned long long)ino);
    if (ino == MFS_VIEW_ROOT_INO && !strcmp(name, "user.modelfs.pid")) {
        snprintf(value, sizeof(value), "%d", (int)view->pid);
        return xattr_reply(value, strlen(value), buf, size, name, err);
    }
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

ssize_t mfs_view_listxattr(struct mfs_view *view, uint64_t ino, char *buf, size_t size,
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

void mfs_view_totals(struct mfs_view *view, uint64_t *bytes, uint64_t *nodes)
{
    *bytes = view->total_bytes;
    *nodes = view->n_nodes;
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
    return view->ckpt;
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
    add_str_or_null(root, "dtype", info_ckpt_dtype(view->ckpt));
    if (conf && view->ckpt && view->ckpt->n_tensors > 0) {
        if (mfs_model_config_parse(text, len, &cfg, &err) < 0) {
            mfs_view_log_path(view, "config.json", &err);
        } else if (mfs_model_info_compute(&cfg, view->ckpt, &mi, &err) < 0) {
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
    uint64_t files = 0;
    char stamp[32];
    struct tm tm;
    time_t t = (time_t)view->commit_time;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr;
    cJSON *obj;
    size_t i;
    int d;

    (void)state;
    if (!root)
        return mfs_err_set(err, -ENOMEM, "cannot build 'info': out of memory");
    for (i = 0; i < view->n_entries; i++)
        files += !view->entries[i].is_dir;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(root, "repo_id", view->repo_id);
    cJSON_AddStringToObject(root, "revision", view->revision);
    cJSON_AddStringToObject(root, "commit", view->commit);
    cJSON_AddStringToObject(root, "commit_time", stamp);
    cJSON_AddNumberToObject(root, "files", (double)files);
    cJSON_AddNumberToObject(root, "bytes", (double)view->total_bytes);
    info_model(view, root);
    for (i = 0; view->ckpt && i < view->ckpt->n_tensors; i++) {
        const struct mfs_ckpt_tensor *ct = &view->ckpt->tensors[i];
        uint64_t n = 1;
        int k;

        for (k = 0; k < ct->ndim; k++)
            n *= ct->shape[k];
        if ((unsigned)ct->dtype < MFS_ST_DTYPE_COUNT)
            by_dtype[ct->dtype] += n;
    }
    d = view->ckpt && view->ckpt->format >= 0 && view->ckpt->format <= 2 ? view->ckpt->format : 0;
    cJSON_AddStringToObject(root, "checkpoint", formats[d]);
    arr = cJSON_AddArrayToObject(root, "shards");
    for (i = 0; view->ckpt && arr && i < view->ckpt->n_files; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(view->ckpt->files[i]));
    cJSON_AddNumberToObject(root, "tensors", view->ckpt ? (double)view->ckpt->n_tensors : 0);
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

static int status_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *r,
                       struct mfs_err *err)
{
    struct mfs_fetch_transfer tr[32];
    cJSON *root = cJSON_CreateObject();
    cJSON *obj;
    cJSON *arr;
    size_t n = 0;
    size_t i;

    (void)state;
    if (!root)
        return mfs_err_set(err, -ENOMEM, "cannot build 'status': out of memory");
    cJSON_AddStringToObject(root, "repo_id", view->repo_id);
    cJSON_AddStringToObject(root, "commit", view->commit);
    cJSON_AddBoolToObject(root, "offline", view->hub == NULL);
    cJSON_AddNumberToObject(root, "pending_changes", 0);
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
    if (view->fetch)
        n = mfs_fetch_transfers(view->fetch, tr, sizeof(tr) / sizeof(tr[0]));
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

/* ---- writes: skeleton until the write path lands ------------------------ */

void mfs_view_settings_get(struct mfs_view *view, struct mfs_view_settings *s)
{
    memset(s, 0, sizeof(*s));
}

int mfs_view_settings_set(struct mfs_view *view, const struct mfs_view_settings *s,
                          struct mfs_err *err)
{
    return mfs_err_set(err, -ENOSYS, "writes are not implemented yet");
}

int mfs_view_push(struct mfs_view *view, const struct mfs_push_opts *opts,
                  struct mfs_push_result *res, struct mfs_err *err)
{
    return mfs_err_set(err, -ENOSYS, "writes are not implemented yet");
}

struct mfs_stage *mfs_view_stage(const struct mfs_view *view)
{
    return NULL;
}

struct mfs_push *mfs_view_pusher(const struct mfs_view *view)
{
    return NULL;
}
