/*
 * cache/stage.c - the staged changes of a writable mount (cache/stage.h),
 * kept in the cache database through a connection of the stage's own.
 *
 * Tables (all prefixed stage_, next to cache.c's; version in stage_meta):
 *   stage_meta(key) -> value                      ('schema', STAGE_SCHEMA)
 *   stage_stages(id, endpoint, repo_type, repo_id, revision) -> generation
 *   stage_entries(stage_id, path) -> kind, size, mode, mtime, generation,
 *                                    extents (the piece table, encoded below)
 *   stage_objects(id, stage_id) -> refs   (entries whose extents name it)
 *   stage_chunks(id = object id << 24 | chunk index) -> data
 *
 * A data object holds the bytes one writer wrote between two commits, as
 * chunk rows at the file offsets they were written at (chunk i holds bytes
 * [i*MFS_CACHE_CHUNK, ...) of the object, a row only as long as its last
 * written byte).  Objects are immutable once a commit made an entry point
 * at them: the writer then starts a fresh object for later writes, so no
 * flush can change committed content.  refs counts the entries whose piece
 * table names the object (each entry once) and changes in the transaction
 * that changes the entries, so it stays exact across kill -9.  An object
 * with refs 0 that no open writer holds is garbage: deleted after commits,
 * at writer close, at open (the drafts of a killed process), and after
 * mfs_stage_clear_upto() by the checkpoint thread, in small transactions
 * (stage_gc_run).  stage_entries.sha256 is the content's sha256 when the
 * writer saw every byte in order (cache/stage.h "Hashes"), else NULL.
 *
 * Piece tables (which bytes of a file come from which source) and their
 * encoding in stage_entries.extents live in cache/stage_pt.c.
 *
 * Writers buffer chunks in memory: a chunk written end to end is "full";
 * full chunks go to the database in one transaction per STAGE_FLUSH_BYTES,
 * everything once STAGE_MAX_BUFFERED is buffered (random writes), and the
 * rest with the commit.  A later write into a flushed chunk reads its row
 * back first.  Extents, not rows, say which bytes are valid.
 *
 * Durability: WAL with synchronous=NORMAL, as cache.c: a commit is in the
 * WAL (the OS's page cache) when it returns, so it survives kill -9 of the
 * process.  Checkpoints run in a thread of the stage's own (see struct
 * mfs_stage).  SQLITE_FULL, or an I/O error with errno ENOSPC, is -ENOSPC;
 * the transaction is rolled back, so what was committed before stays.
 *
 * Processes: one at a time per stage (cache/stage.h): mfs_stage_open()
 * flock(2)s CACHE_DIR/stage-HASH.lock for the stage's lifetime, before its
 * orphan collection, and fails with -EBUSY (naming the holder's pid) when
 * another open stage holds it; the kernel drops the lock with its process.
 *
 * Threads: one connection per stage behind s->lock, held for short
 * statements only; remote bytes (base_read, maybe a network fetch) are read
 * with the lock released.  A writer's own fields belong to its caller's
 * thread; what other threads must see of a writer (the objects it holds)
 * lives in s->held, under s->lock.  Lock order: s->lock, then ckpt_lock.
 */
#include "stage_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hash.h"

#define STAGE_SCHEMA 1                      /* stage_meta 'schema' this code reads */
#define STAGE_BUSY_MS 30000                 /* wait for another writer at most this long */
#define STAGE_FLUSH_BYTES (8u << 20)        /* full chunks written per batch transaction */
#define STAGE_MAX_BUFFERED (64u << 20)      /* buffered chunk bytes that force a flush */
#define STAGE_CKPT_PAGES 1024               /* WAL pages (64 KiB) that wake the checkpointer */
#define STAGE_PAGE_SIZE 65536               /* bytes per page: the PRAGMA page_size below */
#define STAGE_CKPT_BUSY_MS 100              /* the checkpointer's wait for readers, at most */
#define STAGE_GC_ROWS 64                    /* chunk rows (16 MiB) per lazy GC transaction */
#define STAGE_GC_DELAY_MS 1000              /* lazy GC starts this long after a clear */
#define STAGE_GC_REST_MS 20                 /* and rests at least this long between steps */
#define STAGE_GC_IDLE_MS 250                /* it waits for writers quiet this long, */
#define STAGE_GC_WAIT_MS 10000              /*   but not longer than this in all */

enum stage_stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_STAGE_GET,
    ST_STAGE_INS,
    ST_GEN_GET,
    ST_GEN_SET,
    ST_ENTRY_GET,
    ST_ENTRY_PUT,
    ST_ENTRY_DEL,
    ST_ENTRY_LIST,
    ST_ENTRY_OLD,
    ST_TOTALS,
    ST_OBJ_INS,
    ST_OBJ_REF,
    ST_OBJ_DEAD,
    ST_OBJ_DEL,
    ST_CHUNK_PUT,
    ST_CHUNK_GET,
    ST_CHUNK_DEL,
    ST_CHUNK_DEL_SOME,
    ST_COUNT
};

static const char *const stage_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_STAGE_GET] = "SELECT id, generation FROM stage_stages WHERE endpoint = ?1 "
                     "AND repo_type = ?2 AND repo_id = ?3 AND revision = ?4",
    [ST_STAGE_INS] = "INSERT OR IGNORE INTO stage_stages(endpoint, repo_type, repo_id, "
                     "revision, generation) VALUES(?1, ?2, ?3, ?4, 0)",
    [ST_GEN_GET] = "SELECT generation FROM stage_stages WHERE id = ?1",
    [ST_GEN_SET] = "UPDATE stage_stages SET generation = ?2 WHERE id = ?1",
    [ST_ENTRY_GET] = "SELECT kind, size, mode, mtime, generation, extents, sha256 "
                     "FROM stage_entries WHERE stage_id = ?1 AND path = ?2",
    [ST_ENTRY_PUT] = "INSERT OR REPLACE INTO stage_entries(stage_id, path, kind, size, mode, "
                     "mtime, generation, extents, sha256) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_ENTRY_DEL] = "DELETE FROM stage_entries WHERE stage_id = ?1 AND path = ?2",
    [ST_ENTRY_LIST] = "SELECT path, kind, size, mode, mtime, generation, extents, sha256 "
                      "FROM stage_entries WHERE stage_id = ?1 ORDER BY path",
    [ST_ENTRY_OLD] = "SELECT path FROM stage_entries WHERE stage_id = ?1 AND generation <= ?2",
    [ST_TOTALS] = "SELECT count(*), total(CASE WHEN kind = 1 THEN size ELSE 0 END) "
                  "FROM stage_entries WHERE stage_id = ?1",
    [ST_OBJ_INS] = "INSERT INTO stage_objects(stage_id, refs) VALUES(?1, 0)",
    [ST_OBJ_REF] = "UPDATE stage_objects SET refs = refs + ?2 WHERE id = ?1",
    [ST_OBJ_DEAD] = "SELECT id FROM stage_objects WHERE stage_id = ?1 AND refs <= 0",
    [ST_OBJ_DEL] = "DELETE FROM stage_objects WHERE id = ?1",
    [ST_CHUNK_PUT] = "INSERT OR REPLACE INTO stage_chunks(id, data) VALUES(?1, ?2)",
    [ST_CHUNK_GET] = "SELECT data FROM stage_chunks WHERE id = ?1",
    [ST_CHUNK_DEL] = "DELETE FROM stage_chunks WHERE id BETWEEN ?1 AND ?2",
    [ST_CHUNK_DEL_SOME] = "DELETE FROM stage_chunks WHERE id IN (SELECT id FROM stage_chunks "
                          "WHERE id BETWEEN ?1 AND ?2 LIMIT ?3)",
};

static const char stage_schema[] =
    "CREATE TABLE IF NOT EXISTS stage_meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO stage_meta(key, value) VALUES('schema', 1);"
    "CREATE TABLE IF NOT EXISTS stage_stages(id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL,"
    " repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, revision TEXT NOT NULL,"
    " generation INTEGER NOT NULL, UNIQUE(endpoint, repo_type, repo_id, revision));"
    "CREATE TABLE IF NOT EXISTS stage_entries(stage_id INTEGER NOT NULL, path TEXT NOT NULL,"
    " kind INTEGER NOT NULL, size INTEGER NOT NULL, mode INTEGER NOT NULL,"
    " mtime INTEGER NOT NULL, generation INTEGER NOT NULL, extents BLOB, sha256 TEXT,"
    " PRIMARY KEY(stage_id, path));"
    "CREATE TABLE IF NOT EXISTS stage_objects(id INTEGER PRIMARY KEY,"
    " stage_id INTEGER NOT NULL, refs INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS stage_objects_refs ON stage_objects(stage_id, refs);"
    "CREATE TABLE IF NOT EXISTS stage_chunks(id INTEGER PRIMARY KEY, data BLOB NOT NULL);";

/* A chunk of the writer's draft object held in memory. */
struct stage_chunk {
    uint64_t idx;                           /* chunk index in the object */
    unsigned char *data;                    /* MFS_CACHE_CHUNK bytes */
    uint32_t end;                           /* row length: past the last byte ever written */
    uint32_t lo;                            /* [lo, hi): contiguous span written so far */
    uint32_t hi;
};

/* An object some open writer's piece table may name (s->held). */
struct stage_hold {
    int64_t obj;
    unsigned count;                         /* holds by open writers */
};

struct mfs_stage {
    char *db_path;                          /* owned: CACHE_DIR/modelfs.db */
    sqlite3 *db;                            /* owned; used under lock */
    sqlite3_stmt *st[ST_COUNT];             /* prepared lazily, finalized at close */
    int64_t id;                             /* stage_stages.id */
    mfs_stage_base_read_fn base_read;       /* NULL: remote extents fail with -EIO */
    void *base_ctx;
    pthread_mutex_t lock;                   /* guards db, st, held */
    struct stage_hold *held;                /* objects open writers hold */
    size_t nheld;
    size_t capheld;
    int lock_fd;                            /* flock(2)ed stage-HASH.lock; -1 = none */
    /* Checkpoints (the only fsyncs with synchronous=NORMAL) run in a thread
     * of their own, woken by the WAL hook, so that a writer streaming a big
     * file never waits for the disk (cache.c does the same for its
     * connections; its thread never hears of this connection's commits). */
    pthread_t ckpt_thread;
    bool ckpt_started;
    pthread_mutex_t ckpt_lock;              /* guards the two below */
    pthread_cond_t ckpt_cond;               /* ckpt_due, gc_pending, or ckpt_stop */
    bool ckpt_due;                          /* the WAL passed the checkpoint threshold */
    bool ckpt_stop;
    /* mfs_stage_clear_upto() leaves the data of the entries it dropped to
     * this thread too: deleting a pushed 5 GB file's chunk rows reads every
     * overflow page (~2 s/GiB here), which a push should not wait for. */
    bool gc_pending;                        /* dead objects may wait for deletion */
    int64_t last_write_ms;                  /* CLOCK_MONOTONIC of the last flush (s->lock) */
};

struct mfs_stage_writer {
    struct mfs_stage *s;                    /* borrowed */
    char *path;                             /* owned */
    uint32_t mode;                          /* permission bits */
    struct stage_pt pt;                     /* current content */
    int64_t obj;                            /* draft object, 0 = none yet */
    struct stage_chunk *ch;                 /* buffered chunks of obj */
    size_t nch;
    size_t capch;
    size_t full;                            /* buffered chunks written end to end */
    unsigned char **spare;                  /* freed chunk buffers kept for reuse */
    size_t nspare;
    int64_t *holds;                         /* objects this writer put in s->held */
    size_t nholds;
    size_t capholds;
    bool flushed;                           /* some chunk row of obj was written */
    bool dirty;                             /* changed since opened or last committed */
    int broken;                             /* 0, or the errno a failed flush left */
    /* While the content is exactly the bytes written so far, in order, from
     * offset 0 (a `cp`), their sha256 runs along, so a push need not read
     * the file back to hash it (~0.7 s/GiB); any other change drops it. */
    EVP_MD_CTX *seq;                        /* sha256 of [0, pt.size), or NULL: unknown */
};

/* ---- errors, statements, transactions ---------------------------------- */

static int stage_errno(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_IOERR:
        return db && sqlite3_system_errno(db) == ENOSPC ? -ENOSPC : -EIO;
    default:
        return -EIO;
    }
}

static int stage_fail(struct mfs_stage *s, int rc, const char *what, struct mfs_err *err)
{
    int code = stage_errno(s->db, rc);

    return mfs_err_set(err, code, "stage: cannot %s: %s", what,
                       code == -ENOSPC ? "disk full" :
                       s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

/* The prepared statement k, reset and unbound. */
static int stage_stmt(struct mfs_stage *s, enum stage_stmt k, sqlite3_stmt **sp,
                      struct mfs_err *err)
{
    int rc;

    *sp = NULL;
    if (!s->st[k]) {
        rc = sqlite3_prepare_v3(s->db, stage_sql[k], -1, SQLITE_PREPARE_PERSISTENT, &s->st[k],
                                NULL);
        if (rc != SQLITE_OK)
            return stage_fail(s, rc, "prepare a statement", err);
    }
    sqlite3_reset(s->st[k]);
    sqlite3_clear_bindings(s->st[k]);
    *sp = s->st[k];
    return 0;
}

static int stage_step_done(struct mfs_stage *s, sqlite3_stmt *st, const char *what,
                           struct mfs_err *err)
{
    int rc = sqlite3_step(st);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = stage_fail(s, rc, what, err);
        sqlite3_reset(st);
        return rc;
    }
    sqlite3_reset(st);
    return 0;
}

static int stage_exec(struct mfs_stage *s, enum stage_stmt k, struct mfs_err *err)
{
    sqlite3_stmt *st;
    int rc;

    rc = stage_stmt(s, k, &st, err);
    if (rc == 0)
        rc = stage_step_done(s, st, stage_sql[k], err);
    return rc;
}

static void stage_rollback(struct mfs_stage *s)
{
    if (!sqlite3_get_autocommit(s->db))
        stage_exec(s, ST_ROLLBACK, NULL);
}

static int64_t stage_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- paths --------------------------------------------------------------- */

/* stage.h: relative, no leading '/', no '.', '..' or empty components. */
static int stage_check_path(const char *path, struct mfs_err *err)
{
    const char *p;
    const char *q;
    size_t n;

    if (!path || !*path)
        return mfs_err_set(err, -EINVAL, "stage: empty path");
    if (strlen(path) >= STAGE_MAX_PATH)
        return mfs_err_set(err, -EINVAL, "stage: path too long");
    for (p = path;; p = q + 1) {
        q = strchr(p, '/');
        n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return mfs_err_set(err, -EINVAL, "stage: bad path '%s'", path);
        if (!q)
            break;
    }
    return 0;
}

/* ---- object holds (under s->lock) ---------------------------------------- */

static bool stage_is_held(const struct mfs_stage *s, int64_t obj)
{
    size_t i;

    for (i = 0; i < s->nheld; i++)
        if (s->held[i].obj == obj)
            return true;
    return false;
}

/* Record that w's piece table may name obj, so GC keeps it.  -ENOMEM. */
static int stage_hold_locked(struct mfs_stage_writer *w, int64_t obj)
{
    struct mfs_stage *s = w->s;
    struct stage_hold *nh;
    int64_t *nw;
    size_t i;
    size_t cap;

    for (i = 0; i < w->nholds; i++)
        if (w->holds[i] == obj)
            return 0;
    if (w->nholds == w->capholds) {
        cap = w->capholds ? 2 * w->capholds : 8;
        nw = realloc(w->holds, cap * sizeof(*nw));
        if (!nw)
            return -ENOMEM;
        w->holds = nw;
        w->capholds = cap;
    }
    for (i = 0; i < s->nheld && s->held[i].obj != obj; i++)
        ;
    if (i == s->nheld) {
        if (s->nheld == s->capheld) {
            cap = s->capheld ? 2 * s->capheld : 16;
            nh = realloc(s->held, cap * sizeof(*nh));
            if (!nh)
                return -ENOMEM;
            s->held = nh;
            s->capheld = cap;
        }
        s->held[s->nheld++] = (struct stage_hold){ .obj = obj, .count = 0 };
    }
    s->held[i].count++;
    w->holds[w->nholds++] = obj;
    return 0;
}

static int stage_hold_pt_locked(struct mfs_stage_writer *w, const struct stage_ext *v, size_t n)
{
    size_t k;

    for (k = 0; k < n; k++)
        if (v[k].src == SRC_OBJ && stage_hold_locked(w, v[k].obj) < 0)
            return -ENOMEM;
    return 0;
}

static void stage_unhold_all_locked(struct mfs_stage_writer *w)
{
    struct mfs_stage *s = w->s;
    size_t i;
    size_t k;

    for (k = 0; k < w->nholds; k++) {
        for (i = 0; i < s->nheld && s->held[i].obj != w->holds[k]; i++)
            ;
        if (i < s->nheld && --s->held[i].count == 0)
            s->held[i] = s->held[--s->nheld];
    }
    w->nholds = 0;
}

/* ---- objects and chunks (under s->lock) ----------------------------------- */

static int64_t stage_chunk_rowid(int64_t obj, uint64_t idx)
{
    return (int64_t)((uint64_t)obj << STAGE_IDX_BITS | idx);
}

/* Add delta to the refs of each object of pt. */
static int stage_ref_pt(struct mfs_stage *s, const struct stage_pt *pt, int delta,
                        struct mfs_err *err)
{
    sqlite3_stmt *st;
    int64_t *objs;
    size_t n;
    size_t i;
    int rc;

    if (mfs_stage_pt_objects(pt, &objs, &n) < 0)
        return stage_nomem(err);
    rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        rc = stage_stmt(s, ST_OBJ_REF, &st, err);
        if (rc < 0)
            break;
        sqlite3_bind_int64(st, 1, objs[i]);
        sqlite3_bind_int(st, 2, delta);
        rc = stage_step_done(s, st, "count references", err);
    }
    free(objs);
    return rc;
}

/* Delete the objects no entry names and no open writer holds, with their
 * chunks (inside the caller's transaction, or on its own). */
static int stage_gc_locked(struct mfs_stage *s, struct mfs_err *err)
{
    sqlite3_stmt *st;
    int64_t *dead = NULL;
    int64_t *grown;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    int64_t obj;
    int rc;

    rc = stage_stmt(s, ST_OBJ_DEAD, &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, s->id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        obj = sqlite3_column_int64(st, 0);
        if (stage_is_held(s, obj))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            grown = realloc(dead, cap * sizeof(*dead));
            if (!grown) {
                rc = stage_nomem(err);
                goto out_reset;
            }
            dead = grown;
        }
        dead[n++] = obj;
    }
    if (rc != SQLITE_DONE) {
        rc = stage_fail(s, rc, "find unused data", err);
        goto out_reset;
    }
    sqlite3_reset(st);
    rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        rc = stage_stmt(s, ST_CHUNK_DEL, &st, err);
        if (rc < 0)
            break;
        sqlite3_bind_int64(st, 1, stage_chunk_rowid(dead[i], 0));
        sqlite3_bind_int64(st, 2, stage_chunk_rowid(dead[i], (1u << STAGE_IDX_BITS) - 1));
        rc = stage_step_done(s, st, "delete unused data", err);
        if (rc < 0)
            break;
        rc = stage_stmt(s, ST_OBJ_DEL, &st, err);
        if (rc < 0)
            break;
        sqlite3_bind_int64(st, 1, dead[i]);
        rc = stage_step_done(s, st, "delete unused data", err);
    }
    free(dead);
    return rc;
out_reset:
    sqlite3_reset(st);
    free(dead);
    return rc;
}

/* GC in a transaction of its own (after a writer close). */
static int stage_gc_txn_locked(struct mfs_stage *s, struct mfs_err *err)
{
    int rc = stage_exec(s, ST_BEGIN, err);

    if (rc < 0)
        return rc;
    rc = stage_gc_locked(s, err);
    if (rc == 0)
        rc = stage_exec(s, ST_COMMIT, err);
    if (rc < 0)
        stage_rollback(s);
    return rc;
}

/* Copy len bytes at off of data object obj from its chunk rows into buf. */
static int stage_obj_read_locked(struct mfs_stage *s, int64_t obj, uint64_t off, size_t len,
                                 unsigned char *buf, struct mfs_err *err)
{
    sqlite3_blob *blob = NULL;
    uint64_t idx;
    uint32_t at;
    size_t n;
    int64_t rowid;
    int rc = 0;
    int src;

    while (len > 0) {
        idx = off / MFS_CACHE_CHUNK;
        at = (uint32_t)(off % MFS_CACHE_CHUNK);
        n = MFS_CACHE_CHUNK - at < len ? MFS_CACHE_CHUNK - at : len;
        rowid = stage_chunk_rowid(obj, idx);
        if (blob)
            src = sqlite3_blob_reopen(blob, rowid);
        else
            src = sqlite3_blob_open(s->db, "main", "stage_chunks", "data", rowid, 0, &blob);
        if (src != SQLITE_OK) {
            rc = mfs_err_set(err, -EIO, "stage: missing chunk %llu of data object %lld: %s",
                             (unsigned long long)idx, (long long)obj, sqlite3_errmsg(s->db));
            break;
        }
        if ((uint64_t)sqlite3_blob_bytes(blob) < (uint64_t)at + n) {
            rc = mfs_err_set(err, -EIO, "stage: short chunk %llu of data object %lld",
                             (unsigned long long)idx, (long long)obj);
            break;
        }
        src = sqlite3_blob_read(blob, buf, (int)n, (int)at);
        if (src != SQLITE_OK) {
            rc = stage_fail(s, src, "read staged data", err);
            break;
        }
        buf += n;
        off += n;
        len -= n;
    }
    if (blob)
        sqlite3_blob_close(blob);
    return rc;
}

/* ---- reading a piece table --------------------------------------------------- */

enum stage_pass {
    PASS_OBJ = 1,                           /* data objects (caller holds s->lock) */
    PASS_OTHER = 2,                         /* remote blobs and zeros (lock not held) */
};

static int stage_writer_obj_read(struct mfs_stage_writer *w, uint64_t off, size_t len,
                                 unsigned char *buf, struct mfs_err *err);

/* Fill the parts of buf[0, len) = file bytes [off, off+len) (within size)
 * whose extents pass selects.  w NULL: the caller holds s->lock for
 * PASS_OBJ.  w set: the reader is that writer, whose draft object's chunks
 * may be in memory; s->lock is taken here for the others. */
static int stage_pt_read(struct mfs_stage *s, struct mfs_stage_writer *w,
                         const struct stage_pt *pt, uint64_t off, size_t len,
                         unsigned char *buf, unsigned pass, struct mfs_err *err)
{
    const struct stage_ext *x;
    uint64_t a;
    uint64_t b;
    size_t k;
    ssize_t got;
    int rc = 0;

    if (len == 0)
        return 0;
    for (k = mfs_stage_pt_find(pt, off); k < pt->n && pt->v[k].off < off + len && rc == 0; k++) {
        x = &pt->v[k];
        a = x->off > off ? x->off : off;
        b = x->off + x->len < off + len ? x->off + x->len : off + len;
        if (x->src == SRC_OBJ && (pass & PASS_OBJ)) {
            if (w && x->obj == w->obj) {
                rc = stage_writer_obj_read(w, x->src_off + (a - x->off), (size_t)(b - a),
                                           buf + (a - off), err);
            } else {
                if (w)
                    pthread_mutex_lock(&s->lock);
                rc = stage_obj_read_locked(s, x->obj, x->src_off + (a - x->off),
                                           (size_t)(b - a), buf + (a - off), err);
                if (w)
                    pthread_mutex_unlock(&s->lock);
            }
        } else if (x->src == SRC_ZERO && (pass & PASS_OTHER)) {
            memset(buf + (a - off), 0, (size_t)(b - a));
        } else if (x->src == SRC_REMOTE && (pass & PASS_OTHER)) {
            if (!s->base_read) {
                rc = mfs_err_set(err, -EIO, "stage: no reader for remote '%s'", x->rem->path);
                break;
            }
            got = s->base_read(s->base_ctx, x->rem, x->src_off + (a - x->off), (size_t)(b - a),
                               buf + (a - off), err);
            if (got < 0)
                rc = (int)got;
            else if ((uint64_t)got != b - a)
                rc = mfs_err_set(err, -EIO, "stage: short read of remote '%s'", x->rem->path);
        }
    }
    return rc;
}

/* ---- entries (under s->lock) --------------------------------------------- */

struct stage_row {
    enum mfs_stage_kind kind;
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    uint64_t generation;
    struct stage_pt pt;                     /* FILE: decoded */
    char sha256[65];                        /* FILE: sha256 of the content, "" if unknown */
};

/* Column col of st as a sha256 into out[65]: "" unless 64 hex digits. */
static void stage_sha_col(sqlite3_stmt *st, int col, char *out)
{
    const char *t = (const char *)sqlite3_column_text(st, col);

    out[0] = '\0';
    if (t && sqlite3_column_bytes(st, col) == 64 && mfs_hash_is_hex(t, 64))
        memcpy(out, t, 65);
}

/* Load path's entry.  -ENOENT: none. */
static int stage_row_get_locked(struct mfs_stage *s, const char *path, struct stage_row *r,
                                struct mfs_err *err)
{
    sqlite3_stmt *st;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = stage_stmt(s, ST_ENTRY_GET, &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = mfs_err_set(err, -ENOENT, "stage: no staged entry '%s'", path);
    } else if (rc != SQLITE_ROW) {
        rc = stage_fail(s, rc, "read a staged entry", err);
    } else {
        r->kind = (enum mfs_stage_kind)sqlite3_column_int(st, 0);
        r->size = (uint64_t)sqlite3_column_int64(st, 1);
        r->mode = (uint32_t)sqlite3_column_int64(st, 2);
        r->mtime = sqlite3_column_int64(st, 3);
        r->generation = (uint64_t)sqlite3_column_int64(st, 4);
        stage_sha_col(st, 6, r->sha256);
        rc = 0;
        if (r->kind == MFS_STAGE_FILE)
            rc = mfs_stage_pt_decode(sqlite3_column_blob(st, 5),
                                     (size_t)sqlite3_column_bytes(st, 5), r->size, &r->pt, path,
                                     err);
        else if (r->kind != MFS_STAGE_DELETED && r->kind != MFS_STAGE_DIR)
            rc = mfs_err_set(err, -EIO, "stage: damaged entry '%s'", path);
    }
    sqlite3_reset(st);
    return rc;
}

/* Forget path's entry, dropping its references. */
static int stage_row_del_locked(struct mfs_stage *s, const char *path, struct mfs_err *err)
{
    struct stage_row old;
    sqlite3_stmt *st;
    int rc;

    rc = stage_row_get_locked(s, path, &old, err);
    if (rc == -ENOENT) {
        mfs_err_clear(err);
        return 0;
    }
    if (rc < 0)
        return rc;
    rc = stage_ref_pt(s, &old.pt, -1, err);
    mfs_stage_pt_release(&old.pt);
    if (rc < 0)
        return rc;
    rc = stage_stmt(s, ST_ENTRY_DEL, &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    return stage_step_done(s, st, "delete a staged entry", err);
}

/* Make path's entry kind (pt: FILE content, else NULL), replacing any;
 * mtime 0 = now (a rename or chmod keeps the old one, as POSIX does);
 * sha256: the content's, when known (NULL or "": unknown). */
static int stage_row_put_locked(struct mfs_stage *s, const char *path, enum mfs_stage_kind kind,
                                uint32_t mode, const struct stage_pt *pt, uint64_t gen,
                                int64_t mtime, const char *sha256, struct mfs_err *err)
{
    sqlite3_stmt *st;
    unsigned char *blob = NULL;
    size_t nblob = 0;
    int rc;

    rc = stage_row_del_locked(s, path, err);
    if (rc < 0)
        return rc;
    if (pt) {
        if (mfs_stage_pt_encode(pt, &blob, &nblob) < 0)
            return stage_nomem(err);
        rc = stage_ref_pt(s, pt, 1, err);
        if (rc < 0)
            goto out_free_blob;
    }
    rc = stage_stmt(s, ST_ENTRY_PUT, &st, err);
    if (rc < 0)
        goto out_free_blob;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)kind);
    sqlite3_bind_int64(st, 4, pt ? (int64_t)pt->size : 0);
    sqlite3_bind_int64(st, 5, mode);
    sqlite3_bind_int64(st, 6, mtime ? mtime : stage_now());
    sqlite3_bind_int64(st, 7, (int64_t)gen);
    if (pt)
        sqlite3_bind_blob(st, 8, blob, (int)nblob, SQLITE_STATIC);
    if (pt && sha256 && *sha256)
        sqlite3_bind_text(st, 9, sha256, -1, SQLITE_STATIC);
    rc = stage_step_done(s, st, "store a staged entry", err);
out_free_blob:
    free(blob);
    return rc;
}

/* Inside a transaction: the generation the changes of this transaction get. */
static int stage_next_gen_locked(struct mfs_stage *s, uint64_t *genp, struct mfs_err *err)
{
    sqlite3_stmt *st;
    int rc;

    *genp = 0;
    rc = stage_stmt(s, ST_GEN_GET, &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, s->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *genp = (uint64_t)sqlite3_column_int64(st, 0) + 1;
        rc = 0;
    } else {
        rc = stage_fail(s, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "read the generation", err);
    }
    sqlite3_reset(st);
    if (rc < 0)
        return rc;
    rc = stage_stmt(s, ST_GEN_SET, &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_int64(st, 2, (int64_t)*genp);
    return stage_step_done(s, st, "count the change", err);
}

/* ---- the process lock ------------------------------------------------------ */

/* Take the stage's process lock (stage.h "Processes"): flock(2) on
 * CACHE_DIR/stage-HASH.lock, HASH = sha256 of the stage's key, held until
 * mfs_stage_close() or the process's death (the kernel drops it then, so a
 * kill -9 never leaves a stale lock).  The file holds the holder's pid for
 * the message a second opener gets; it is never deleted, because a
 * deletion would let two processes lock two different files of one name.
 * -EBUSY: another open stage holds it (this process's too). */
static int stage_lock(struct mfs_stage *s, const char *cache_dir,
                      const struct mfs_cache_repo *repo, const char *revision,
                      struct mfs_err *err)
{
    const char *key[4];
    struct mfs_hash *h;
    char hex[MFS_SHA256_HEX];
    char text[32];
    char *path;
    char *end;
    size_t n;
    ssize_t got;
    unsigned long long pid;
    int fd;
    int i;
    int rc;

    key[0] = repo->endpoint ? repo->endpoint : "";
    key[1] = repo->repo_type ? repo->repo_type : "model";
    key[2] = repo->repo_id ? repo->repo_id : "";
    key[3] = revision ? revision : "main";
    h = mfs_hash_new(MFS_HASH_SHA256);
    if (!h)
        return stage_nomem(err);
    for (i = 0; i < 4; i++)
        mfs_hash_update(h, key[i], strlen(key[i]) + 1);   /* the NULs keep fields apart */
    mfs_hash_final_hex(h, hex);              /* frees h */
    n = strlen(cache_dir) + sizeof("/stage-.lock") + 32;
    path = malloc(n);
    if (!path)
        return stage_nomem(err);
    snprintf(path, n, "%s/stage-%.32s.lock", cache_dir, hex);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = mfs_err_set(err, errno == EACCES || errno == EROFS ? -EACCES : -EIO,
                         "stage: cannot open '%s': %s", path, strerror(errno));
        goto out_free_path;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK) {
            rc = mfs_err_set(err, -EIO, "stage: cannot lock '%s': %s", path, strerror(errno));
            goto out_close_fd;
        }
        got = pread(fd, text, sizeof(text) - 1, 0);
        text[got > 0 ? got : 0] = '\0';
        pid = strtoull(text, &end, 10);
        if (end != text && pid > 0)
            rc = mfs_err_set(err, -EBUSY, "the staged changes of %s@%s are held by another "
                             "mount (pid %llu)", key[2], key[3], pid);
        else
            rc = mfs_err_set(err, -EBUSY, "the staged changes of %s@%s are held by another "
                             "mount", key[2], key[3]);
        goto out_close_fd;
    }
    n = (size_t)snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, n, 0) != (ssize_t)n) {
        rc = mfs_err_set(err, errno == ENOSPC ? -ENOSPC : -EIO,
                         "stage: cannot write '%s': %s", path, strerror(errno));
        goto out_close_fd;                  /* closing drops the lock too */
    }
    s->lock_fd = fd;
    free(path);
    return 0;
out_close_fd:
    close(fd);
out_free_path:
    free(path);
    return rc;
}

/* ---- open / close ---------------------------------------------------------- */

/* WAL pages after which the checkpointer runs: STAGE_CKPT_PAGES, or a
 * quarter of the room left on the cache's disk when that is less.  Staged
 * bytes sit in the WAL until a checkpoint copies them into the database
 * file, and the copy needs room of its own: on a small disk, a WAL let grow
 * to the full threshold would leave no room for the copy, and then not even
 * a deletion (itself a WAL append) could free anything. */
static int stage_ckpt_limit(const struct mfs_stage *s)
{
    struct statvfs v;
    uint64_t room;

    if (statvfs(s->db_path, &v) != 0)
        return STAGE_CKPT_PAGES;
    room = (uint64_t)v.f_bavail * v.f_frsize / STAGE_PAGE_SIZE / 4;
    if (room >= STAGE_CKPT_PAGES)
        return STAGE_CKPT_PAGES;
    return room > 0 ? (int)room : 1;
}

static int stage_wal_hook(void *ctx, sqlite3 *db, const char *name, int pages)
{
    struct mfs_stage *s = ctx;

    if (pages >= STAGE_CKPT_PAGES || pages >= stage_ckpt_limit(s)) {
        pthread_mutex_lock(&s->ckpt_lock);
        s->ckpt_due = true;
        pthread_cond_signal(&s->ckpt_cond);
        pthread_mutex_unlock(&s->ckpt_lock);
    }
    return SQLITE_OK;
}

/* One small transaction of the lazy GC (mfs_stage_clear_upto): up to
 * STAGE_GC_ROWS chunk rows of one dead object, and the object itself once
 * it has none left, so that writers wait for s->lock at most that long.
 * Chunks go before their object: an object id is never reused while rows
 * of it remain.  Returns 1 when there may be more to do, 0 when done, a
 * negative errno on failure (the rest is left to the next open). */
static int stage_gc_step(struct mfs_stage *s)
{
    sqlite3_stmt *st;
    int64_t obj = 0;
    int more = 0;
    int rc;

    pthread_mutex_lock(&s->lock);
    rc = stage_exec(s, ST_BEGIN, NULL);
    if (rc < 0)
        goto out_unlock;
    rc = stage_stmt(s, ST_OBJ_DEAD, &st, NULL);
    if (rc < 0)
        goto out_rollback;
    sqlite3_bind_int64(st, 1, s->id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        obj = sqlite3_column_int64(st, 0);
        if (!stage_is_held(s, obj))
            break;
        obj = 0;
    }
    sqlite3_reset(st);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
    if (rc < 0 || obj == 0)
        goto out_commit;
    rc = stage_stmt(s, ST_CHUNK_DEL_SOME, &st, NULL);
    if (rc < 0)
        goto out_rollback;
    sqlite3_bind_int64(st, 1, stage_chunk_rowid(obj, 0));
    sqlite3_bind_int64(st, 2, stage_chunk_rowid(obj, (1u << STAGE_IDX_BITS) - 1));
    sqlite3_bind_int(st, 3, STAGE_GC_ROWS);
    rc = stage_step_done(s, st, "delete unused data", NULL);
    if (rc < 0)
        goto out_rollback;
    more = 1;
    if (sqlite3_changes(s->db) < STAGE_GC_ROWS) {
        rc = stage_stmt(s, ST_OBJ_DEL, &st, NULL);
        if (rc < 0)
            goto out_rollback;
        sqlite3_bind_int64(st, 1, obj);
        rc = stage_step_done(s, st, "delete unused data", NULL);
    }
out_commit:
    if (rc == 0)
        rc = stage_exec(s, ST_COMMIT, NULL);
out_rollback:
    if (rc < 0)
        stage_rollback(s);
out_unlock:
    pthread_mutex_unlock(&s->lock);
    return rc < 0 ? rc : more;
}

/* Sleep ms, or less when the stage closes meanwhile; false then. */
static bool stage_ckpt_nap(struct mfs_stage *s, long ms)
{
    struct timespec until;
    bool stop;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->ckpt_lock);
    while (!s->ckpt_stop &&
           pthread_cond_timedwait(&s->ckpt_cond, &s->ckpt_lock, &until) == 0)
        ;
    stop = s->ckpt_stop;
    pthread_mutex_unlock(&s->ckpt_lock);
    return !stop;
}

/* The lazy GC after a clear.  Its transactions hold the database's write
 * lock, which the cache's own connections (the push recording its new
 * commit, fetches) then wait for in SQLite's busy handler, sleeping up to
 * 100 ms a try, and s->lock, which a writer streaming a file waits for: so
 * it starts a moment after the clear, once the push has finished its own
 * writes, steps aside while writers are busy (up to STAGE_GC_WAIT_MS, so
 * the space comes back even under endless writes), and rests between steps
 * at least as long as a step took. */
static void stage_gc_run(struct mfs_stage *s)
{
    int64_t since = mfs_clock_ms();
    int64_t t;
    int64_t last;
    long ms;
    int rc;

    if (!stage_ckpt_nap(s, STAGE_GC_DELAY_MS))
        return;
    do {
        pthread_mutex_lock(&s->lock);
        last = s->last_write_ms;
        pthread_mutex_unlock(&s->lock);
        t = mfs_clock_ms();
        if (t - last < STAGE_GC_IDLE_MS && t - since < STAGE_GC_WAIT_MS) {
            rc = 1;
            ms = STAGE_GC_IDLE_MS;          /* a writer is busy: later */
            continue;
        }
        rc = stage_gc_step(s);
        ms = (long)(mfs_clock_ms() - t);
        if (ms < STAGE_GC_REST_MS)
            ms = STAGE_GC_REST_MS;
    } while (rc > 0 && stage_ckpt_nap(s, ms));
}

static void *stage_ckpt_main(void *arg)
{
    struct mfs_stage *s = arg;
    sqlite3 *db = NULL;

    pthread_mutex_lock(&s->ckpt_lock);
    for (;;) {
        while (!s->ckpt_stop && !s->ckpt_due && !s->gc_pending)
            pthread_cond_wait(&s->ckpt_cond, &s->ckpt_lock);
        if (s->ckpt_stop)
            break;
        if (s->gc_pending) {
            s->gc_pending = false;
            pthread_mutex_unlock(&s->ckpt_lock);
            stage_gc_run(s);
            pthread_mutex_lock(&s->ckpt_lock);
            continue;                       /* the deletions may have grown the WAL */
        }
        s->ckpt_due = false;
        pthread_mutex_unlock(&s->ckpt_lock);
        if (!db && sqlite3_open_v2(s->db_path, &db, SQLITE_OPEN_READWRITE |
                                   SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
            sqlite3_close(db);
            db = NULL;
        }
        if (db) {
            sqlite3_busy_timeout(db, STAGE_CKPT_BUSY_MS);
            /* The bulk while writers go on, then the WAL restarts from its
             * start with this stage's writers held for the few frames
             * appended meanwhile (cache.c's cache_ckpt_main explains). */
            sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            pthread_mutex_lock(&s->lock);
            sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
            pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_lock(&s->ckpt_lock);
    }
    pthread_mutex_unlock(&s->ckpt_lock);
    sqlite3_close(db);
    return NULL;
}

/* A database made before entries kept their sha256 gets the column (NULL:
 * unknown, as for any file not written in order). */
static int stage_add_sha_column(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('stage_entries') "
                            "WHERE name = 'sha256'", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return SQLITE_OK;
    if (rc != SQLITE_DONE)
        return rc;
    return sqlite3_exec(db, "ALTER TABLE stage_entries ADD COLUMN sha256 TEXT", NULL, NULL,
                        NULL);
}

static int stage_open_db(struct mfs_stage *s, const char *cache_dir, struct mfs_err *err)
{
    static const char pragmas[] =
        "PRAGMA journal_mode = WAL;"
        "PRAGMA synchronous = NORMAL;"
        "PRAGMA cache_size = -32768;"
        "PRAGMA journal_size_limit = 134217728;"
        "PRAGMA foreign_keys = OFF;";
    sqlite3_stmt *st = NULL;
    char *path;
    size_t n;
    int rc;

    n = strlen(cache_dir) + sizeof("/modelfs.db");
    path = malloc(n);
    if (!path)
        return stage_nomem(err);
    snprintf(path, n, "%s/modelfs.db", cache_dir);
    s->db_path = path;
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = mfs_err_set(err, rc == SQLITE_CANTOPEN ? -EACCES : stage_errno(s->db, rc),
                         "stage: cannot open '%s': %s", path,
                         s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return rc;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STAGE_BUSY_MS);
    /* cache.c's pragmas (page_size only takes on a new file), but a page
     * cache that holds a whole flush batch, so that no page is spilled to
     * the WAL mid-transaction and written there twice. */
    rc = sqlite3_exec(s->db, "PRAGMA page_size = 65536;", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(s->db, stage_schema, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = stage_add_sha_column(s->db);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        rc = stage_fail(s, rc, "create the stage tables", err);
        stage_rollback(s);
        return rc;
    }
    rc = sqlite3_prepare_v2(s->db, "SELECT value FROM stage_meta WHERE key = 'schema'", -1, &st,
                            NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_int64(st, 0) == STAGE_SCHEMA) {
        rc = 0;
    } else if (rc == SQLITE_OK) {
        rc = mfs_err_set(err, -EIO, "stage: '%s' holds an unknown stage schema", path);
    } else {
        rc = stage_fail(s, rc, "read the stage schema", err);
    }
    sqlite3_finalize(st);
    if (rc == 0)
        sqlite3_wal_hook(s->db, stage_wal_hook, s);   /* replaces the inline autocheckpoint */
    return rc;
}

/* Find or make the stage row of (repo, revision). */
static int stage_find_locked(struct mfs_stage *s, const struct mfs_cache_repo *repo,
                             const char *revision, struct mfs_err *err)
{
    sqlite3_stmt *st;
    int pass;
    int rc = 0;

    for (pass = 0; pass < 2; pass++) {
        rc = stage_stmt(s, pass ? ST_STAGE_GET : ST_STAGE_INS, &st, err);
        if (rc < 0)
            return rc;
        sqlite3_bind_text(st, 1, repo->endpoint ? repo->endpoint : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, repo->repo_type ? repo->repo_type : "model", -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(st, 3, repo->repo_id ? repo->repo_id : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, revision ? revision : "main", -1, SQLITE_STATIC);
        if (pass == 0) {
            rc = stage_step_done(s, st, "make the stage", err);
            if (rc < 0)
                return rc;
            continue;
        }
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            s->id = sqlite3_column_int64(st, 0);
            rc = 0;
        } else {
            rc = stage_fail(s, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "find the stage", err);
        }
        sqlite3_reset(st);
    }
    return rc;
}

int mfs_stage_open(const char *cache_dir, const struct mfs_cache_repo *repo,
                   const char *revision, mfs_stage_base_read_fn base_read, void *base_ctx,
                   struct mfs_stage **sp, struct mfs_err *err)
{
    struct mfs_stage *s;
    int rc;

    *sp = NULL;
    if (!cache_dir || !*cache_dir || !repo)
        return mfs_err_set(err, -EINVAL, "stage: no cache dir or repo given");
    s = calloc(1, sizeof(*s));
    if (!s)
        return stage_nomem(err);
    s->base_read = base_read;
    s->base_ctx = base_ctx;
    s->lock_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->ckpt_lock, NULL);
    pthread_cond_init(&s->ckpt_cond, NULL);
    /* Before the orphan collection below: it would delete a live mount's
     * drafts. */
    rc = stage_lock(s, cache_dir, repo, revision, err);
    if (rc < 0)
        goto out_close;
    rc = stage_open_db(s, cache_dir, err);
    if (rc < 0)
        goto out_close;
    rc = stage_find_locked(s, repo, revision, err);
    if (rc < 0)
        goto out_close;
    /* Drafts of a process that died before committing them. */
    rc = stage_gc_txn_locked(s, err);
    if (rc < 0)
        goto out_close;
    s->ckpt_started = pthread_create(&s->ckpt_thread, NULL, stage_ckpt_main, s) == 0;
    if (!s->ckpt_started)
        sqlite3_wal_autocheckpoint(s->db, STAGE_CKPT_PAGES);   /* inline, in the committer */
    *sp = s;
    return 0;
out_close:
    mfs_stage_close(&s);
    return rc;
}

void mfs_stage_close(struct mfs_stage **sp)
{
    struct mfs_stage *s;
    int i;

    if (!sp || !*sp)
        return;
    s = *sp;
    if (s->ckpt_started) {
        pthread_mutex_lock(&s->ckpt_lock);
        s->ckpt_stop = true;
        pthread_cond_signal(&s->ckpt_cond);
        pthread_mutex_unlock(&s->ckpt_lock);
        pthread_join(s->ckpt_thread, NULL);
    }
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    if (s->lock_fd >= 0)
        close(s->lock_fd);                  /* after the database: the next holder starts clean */
    pthread_cond_destroy(&s->ckpt_cond);
    pthread_mutex_destroy(&s->ckpt_lock);
    pthread_mutex_destroy(&s->lock);
    free(s->db_path);
    free(s->held);
    free(s);
    *sp = NULL;
}

/* ---- entries: list, get, read ------------------------------------------- */

/* Fill e from a row (path copied).  -ENOMEM. */
static int stage_entry_fill(struct mfs_stage_entry *e, const char *path,
                            const struct stage_row *r)
{
    const struct stage_ext *x;

    memset(e, 0, sizeof(*e));
    e->path = strdup(path);
    if (!e->path)
        return -ENOMEM;
    e->kind = r->kind;
    e->size = r->kind == MFS_STAGE_FILE ? r->size : 0;
    e->mode = r->mode;
    e->mtime = r->mtime;
    e->generation = r->generation;
    if (r->kind == MFS_STAGE_FILE)
        memcpy(e->sha256, r->sha256, sizeof(e->sha256));
    if (r->kind == MFS_STAGE_FILE && r->pt.n == 1) {
        x = &r->pt.v[0];
        if (x->src == SRC_REMOTE && x->src_off == 0 && x->len == x->rem->size) {
            e->unchanged_remote = true;
            e->remote = *x->rem;
            e->remote.path = strdup(x->rem->path);
            if (!e->remote.path) {
                free(e->path);
                e->path = NULL;
                return -ENOMEM;
            }
        }
    }
    return 0;
}

int mfs_stage_list(struct mfs_stage *s, struct mfs_stage_entry **ep, size_t *np,
                   struct mfs_err *err)
{
    struct mfs_stage_entry *v = NULL;
    struct mfs_stage_entry *grown;
    struct stage_row r;
    sqlite3_stmt *st;
    const char *path;
    size_t n = 0;
    size_t cap = 0;
    int rc;

    *ep = NULL;
    *np = 0;
    pthread_mutex_lock(&s->lock);
    rc = stage_stmt(s, ST_ENTRY_LIST, &st, err);
    if (rc < 0)
        goto out_unlock;
    sqlite3_bind_int64(st, 1, s->id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        path = (const char *)sqlite3_column_text(st, 0);
        r.kind = (enum mfs_stage_kind)sqlite3_column_int(st, 1);
        r.size = (uint64_t)sqlite3_column_int64(st, 2);
        r.mode = (uint32_t)sqlite3_column_int64(st, 3);
        r.mtime = sqlite3_column_int64(st, 4);
        r.generation = (uint64_t)sqlite3_column_int64(st, 5);
        stage_sha_col(st, 7, r.sha256);
        if (!path) {
            rc = mfs_err_set(err, -EIO, "stage: damaged entry");
            goto out_reset;
        }
        if (r.kind == MFS_STAGE_FILE) {
            rc = mfs_stage_pt_decode(sqlite3_column_blob(st, 6),
                                     (size_t)sqlite3_column_bytes(st, 6), r.size, &r.pt,
                                     path, err);
            if (rc < 0)
                goto out_reset;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            grown = realloc(v, cap * sizeof(*v));
            if (!grown) {
                mfs_stage_pt_release(&r.pt);
                rc = stage_nomem(err);
                goto out_reset;
            }
            v = grown;
        }
        rc = stage_entry_fill(&v[n], path, &r);
        mfs_stage_pt_release(&r.pt);
        if (rc < 0) {
            rc = stage_nomem(err);
            goto out_reset;
        }
        n++;
    }
    if (rc != SQLITE_DONE) {
        rc = stage_fail(s, rc, "list staged entries", err);
        goto out_reset;
    }
    rc = 0;
    *ep = v;
    *np = n;
    v = NULL;
    n = 0;
out_reset:
    sqlite3_reset(st);
    mfs_stage_entries_free(v, n);
out_unlock:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void mfs_stage_entries_free(struct mfs_stage_entry *e, size_t n)
{
    size_t i;

    if (!e)
        return;
    for (i = 0; i < n; i++) {
        free(e[i].path);
        free(e[i].remote.path);
    }
    free(e);
}

int mfs_stage_get(struct mfs_stage *s, const char *path, struct mfs_stage_entry *e,
                  struct mfs_err *err)
{
    struct stage_row r;
    int rc;

    memset(e, 0, sizeof(*e));
    rc = stage_check_path(path, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    rc = stage_row_get_locked(s, path, &r, err);
    pthread_mutex_unlock(&s->lock);
    if (rc < 0)
        return rc;
    if (stage_entry_fill(e, path, &r) < 0)
        rc = stage_nomem(err);
    mfs_stage_pt_release(&r.pt);
    return rc;
}

ssize_t mfs_stage_read(struct mfs_stage *s, const char *path, uint64_t off, size_t len,
                       void *buf, struct mfs_err *err)
{
    struct stage_row r;
    size_t n;
    int rc;

    rc = stage_check_path(path, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    rc = stage_row_get_locked(s, path, &r, err);
    if (rc == 0 && r.kind != MFS_STAGE_FILE)
        rc = mfs_err_set(err, -ENOENT, "stage: '%s' is not a staged file", path);
    if (rc < 0) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    n = off >= r.size ? 0 : (r.size - off < len ? (size_t)(r.size - off) : len);
    /* Objects under the lock, so that a commit cannot delete them meanwhile;
     * remote blobs (maybe a network fetch) without it. */
    rc = stage_pt_read(s, NULL, &r.pt, off, n, buf, PASS_OBJ, err);
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        rc = stage_pt_read(s, NULL, &r.pt, off, n, buf, PASS_OTHER, err);
    mfs_stage_pt_release(&r.pt);
    return rc < 0 ? rc : (ssize_t)n;
}

/* ---- apply ------------------------------------------------------------------ */

static int stage_change_locked(struct mfs_stage *s, const struct mfs_stage_change *c,
                               uint64_t gen, struct mfs_err *err)
{
    struct stage_ext x = { .src = SRC_REMOTE };
    struct stage_pt pt = { 0 };
    struct stage_row r;
    int rc;

    rc = stage_check_path(c->path, err);
    if (rc < 0)
        return rc;
    switch (c->op) {
    case MFS_STAGE_OP_REMOVE:
        return stage_row_del_locked(s, c->path, err);
    case MFS_STAGE_OP_WHITEOUT:
        return stage_row_put_locked(s, c->path, MFS_STAGE_DELETED, 0, NULL, gen, 0, NULL, err);
    case MFS_STAGE_OP_MKDIR:
        return stage_row_put_locked(s, c->path, MFS_STAGE_DIR, c->mode, NULL, gen, 0, NULL,
                                    err);
    case MFS_STAGE_OP_REMOTE:
        if (!c->remote || c->remote->is_dir)
            return mfs_err_set(err, -EINVAL, "stage: no remote file for '%s'", c->path);
        if (c->remote->size > 0) {
            x.len = c->remote->size;
            x.rem = mfs_stage_remote_dup(c->remote);
            if (!x.rem)
                return stage_nomem(err);
            if (mfs_stage_pt_replace(&pt, 0, &x, 1) < 0) {
                mfs_stage_remote_free(x.rem);
                return stage_nomem(err);
            }
        }
        rc = stage_row_put_locked(s, c->path, MFS_STAGE_FILE, c->mode, &pt, gen, 0, NULL, err);
        mfs_stage_pt_release(&pt);
        return rc;
    case MFS_STAGE_OP_MOVE:
        rc = stage_check_path(c->from, err);
        if (rc < 0)
            return rc;
        rc = stage_row_get_locked(s, c->from, &r, err);
        if (rc == 0 && r.kind != MFS_STAGE_FILE)
            rc = mfs_err_set(err, -ENOENT, "stage: cannot move '%s': not a staged file",
                             c->from);
        if (rc < 0) {
            mfs_stage_pt_release(&r.pt);
            return rc;
        }
        rc = stage_row_put_locked(s, c->path, MFS_STAGE_FILE, r.mode, &r.pt, gen, r.mtime,
                                  r.sha256, err);
        if (rc == 0 && strcmp(c->from, c->path) != 0)
            rc = stage_row_del_locked(s, c->from, err);
        mfs_stage_pt_release(&r.pt);
        return rc;
    case MFS_STAGE_OP_CHMOD:
        rc = stage_row_get_locked(s, c->path, &r, err);
        if (rc == 0 && r.kind == MFS_STAGE_DELETED)
            rc = mfs_err_set(err, -ENOENT, "stage: cannot chmod '%s': deleted", c->path);
        if (rc == 0)
            rc = stage_row_put_locked(s, c->path, r.kind, c->mode,
                                      r.kind == MFS_STAGE_FILE ? &r.pt : NULL, gen, r.mtime,
                                      r.sha256, err);
        mfs_stage_pt_release(&r.pt);
        return rc;
    }
    return mfs_err_set(err, -EINVAL, "stage: unknown change %d", (int)c->op);
}

/* ---- writers ------------------------------------------------------------------ */

static void stage_seq_drop(struct mfs_stage_writer *w)
{
    EVP_MD_CTX_free(w->seq);
    w->seq = NULL;
}

/* The content is empty now: hash what comes next (no memory: never mind,
 * a push then hashes the file itself). */
static void stage_seq_start(struct mfs_stage_writer *w)
{
    stage_seq_drop(w);
    w->seq = EVP_MD_CTX_new();
    if (w->seq && EVP_DigestInit_ex(w->seq, EVP_sha256(), NULL) != 1)
        stage_seq_drop(w);
}

/* The sha256 of w's content into hex[65], or "" when unknown; the running
 * digest goes on (a commit after an fsync, then more writes). */
static void stage_seq_hex(const struct mfs_stage_writer *w, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *c;

    hex[0] = '\0';
    if (!w->seq)
        return;
    c = EVP_MD_CTX_new();
    if (c && EVP_MD_CTX_copy_ex(c, w->seq) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1 &&
        n == 32)
        mfs_hash_to_hex(md, n, hex);
    EVP_MD_CTX_free(c);
}

static void stage_writer_drop_chunks(struct mfs_stage_writer *w, bool all)
{
    size_t i;
    size_t k = 0;
    unsigned char **grown;

    for (i = 0; i < w->nch; i++) {
        if (!all && !(w->ch[i].lo == 0 && w->ch[i].hi == MFS_CACHE_CHUNK)) {
            w->ch[k++] = w->ch[i];
            continue;
        }
        grown = w->nspare < 8 ? realloc(w->spare, (w->nspare + 1) * sizeof(*grown)) : NULL;
        if (grown) {
            w->spare = grown;
            w->spare[w->nspare++] = w->ch[i].data;
        } else {
            free(w->ch[i].data);
        }
    }
    w->nch = k;
    w->full = 0;
}

/* Write buffered chunks (all, or only the full ones) in the caller's
 * transaction. */
static int stage_writer_put_chunks_locked(struct mfs_stage_writer *w, bool all,
                                          struct mfs_err *err)
{
    struct mfs_stage *s = w->s;
    sqlite3_stmt *st;
    size_t i;
    int rc = 0;

    for (i = 0; i < w->nch && rc == 0; i++) {
        if (!all && !(w->ch[i].lo == 0 && w->ch[i].hi == MFS_CACHE_CHUNK))
            continue;
        rc = stage_stmt(s, ST_CHUNK_PUT, &st, err);
        if (rc < 0)
            break;
        sqlite3_bind_int64(st, 1, stage_chunk_rowid(w->obj, w->ch[i].idx));
        sqlite3_bind_blob(st, 2, w->ch[i].data, (int)w->ch[i].end, SQLITE_STATIC);
        rc = stage_step_done(s, st, "store written data", err);
    }
    return rc;
}

/* One batch transaction of buffered chunks; a failure breaks the writer. */
static int stage_writer_flush(struct mfs_stage_writer *w, bool all, struct mfs_err *err)
{
    struct mfs_stage *s = w->s;
    int rc;

    pthread_mutex_lock(&s->lock);
    s->last_write_ms = mfs_clock_ms();
    rc = stage_exec(s, ST_BEGIN, err);
    if (rc == 0) {
        rc = stage_writer_put_chunks_locked(w, all, err);
        if (rc == 0)
            rc = stage_exec(s, ST_COMMIT, err);
        if (rc < 0)
            stage_rollback(s);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) {
        w->broken = rc;
    } else {
        w->flushed = true;
        stage_writer_drop_chunks(w, all);
    }
    return rc;
}

/* The buffered chunk idx of the draft, made (from its stored row, if a
 * flush wrote one) when missing; bytes [at, at+n) of a new one are left for
 * the caller to fill.  OUT: *cp. */
static int stage_writer_chunk(struct mfs_stage_writer *w, uint64_t idx, uint32_t at, uint32_t n,
                              struct stage_chunk **cp, struct mfs_err *err)
{
    struct mfs_stage *s = w->s;
    struct stage_chunk *c;
    struct stage_chunk *grown;
    sqlite3_stmt *st;
    size_t i;
    size_t cap;
    int got;
    int rc;

    for (i = w->nch; i > 0; i--) {
        if (w->ch[i - 1].idx == idx) {
            *cp = &w->ch[i - 1];
            return 0;
        }
    }
    if (w->nch == w->capch) {
        cap = w->capch ? 2 * w->capch : 16;
        grown = realloc(w->ch, cap * sizeof(*grown));
        if (!grown)
            return stage_nomem(err);
        w->ch = grown;
        w->capch = cap;
    }
    c = &w->ch[w->nch];
    memset(c, 0, sizeof(*c));
    c->idx = idx;
    if (w->nspare) {
        c->data = w->spare[--w->nspare];
    } else {
        c->data = malloc(MFS_CACHE_CHUNK);
        if (!c->data)
            return stage_nomem(err);
    }
    if (!w->flushed) {
        /* no row to start from: zero what the write will not cover (the
         * bytes a sequential copy writes are never zeroed first) */
        memset(c->data, 0, at);
        memset(c->data + at + n, 0, MFS_CACHE_CHUNK - at - n);
        w->nch++;
        *cp = c;
        return 0;
    }
    memset(c->data, 0, MFS_CACHE_CHUNK);
    pthread_mutex_lock(&s->lock);
    rc = stage_stmt(s, ST_CHUNK_GET, &st, err);
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, stage_chunk_rowid(w->obj, idx));
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            got = sqlite3_column_bytes(st, 0);
            if (got > (int)MFS_CACHE_CHUNK)
                got = MFS_CACHE_CHUNK;
            if (got > 0)
                memcpy(c->data, sqlite3_column_blob(st, 0), (size_t)got);
            c->end = (uint32_t)got;
            rc = 0;
        } else if (rc == SQLITE_DONE) {
            rc = 0;
        } else {
            rc = stage_fail(s, rc, "read written data", err);
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) {
        free(c->data);
        return rc;
    }
    w->nch++;
    *cp = c;
    return 0;
}

/* Read the draft object's bytes [off, off+len): buffered chunks from
 * memory, flushed ones from the database. */
static int stage_writer_obj_read(struct mfs_stage_writer *w, uint64_t off, size_t len,
                                 unsigned char *buf, struct mfs_err *err)
{
    size_t i;
    size_t n;
    uint64_t idx;
    uint32_t at;
    int rc;

    while (len > 0) {
        idx = off / MFS_CACHE_CHUNK;
        at = (uint32_t)(off % MFS_CACHE_CHUNK);
        n = MFS_CACHE_CHUNK - at < len ? MFS_CACHE_CHUNK - at : len;
        for (i = 0; i < w->nch && w->ch[i].idx != idx; i++)
            ;
        if (i < w->nch) {
            memcpy(buf, w->ch[i].data + at, n);
        } else {
            pthread_mutex_lock(&w->s->lock);
            rc = stage_obj_read_locked(w->s, w->obj, off, n, buf, err);
            pthread_mutex_unlock(&w->s->lock);
            if (rc < 0)
                return rc;
        }
        buf += n;
        off += n;
        len -= n;
    }
    return 0;
}

int mfs_stage_writer_open(struct mfs_stage *s, const char *path, enum mfs_stage_base base,
                          const struct mfs_entry *remote, uint32_t mode,
                          struct mfs_stage_writer **wp, struct mfs_err *err)
{
    struct mfs_stage_writer *w;
    struct stage_ext x = { .src = SRC_REMOTE };
    struct stage_row r;
    int rc;

    *wp = NULL;
    rc = stage_check_path(path, err);
    if (rc < 0)
        return rc;
    if (base == MFS_STAGE_BASE_REMOTE && (!remote || remote->is_dir))
        return mfs_err_set(err, -EINVAL, "stage: no remote file to start '%s' from", path);
    if (base != MFS_STAGE_BASE_EMPTY && base != MFS_STAGE_BASE_STAGED &&
        base != MFS_STAGE_BASE_REMOTE)
        return mfs_err_set(err, -EINVAL, "stage: bad base for '%s'", path);
    w = calloc(1, sizeof(*w));
    if (!w)
        return stage_nomem(err);
    w->s = s;
    w->mode = mode;
    w->dirty = true;
    if (base == MFS_STAGE_BASE_EMPTY)
        stage_seq_start(w);
    w->path = strdup(path);
    if (!w->path) {
        rc = stage_nomem(err);
        goto out_free;
    }
    if (base == MFS_STAGE_BASE_REMOTE && remote->size > 0) {
        x.len = remote->size;
        x.rem = mfs_stage_remote_dup(remote);
        if (!x.rem || mfs_stage_pt_replace(&w->pt, 0, &x, 1) < 0) {
            mfs_stage_remote_free(x.rem);
            rc = stage_nomem(err);
            goto out_free;
        }
    }
    pthread_mutex_lock(&s->lock);
    if (base == MFS_STAGE_BASE_STAGED) {
        rc = stage_row_get_locked(s, path, &r, err);
        if (rc == 0 && r.kind != MFS_STAGE_FILE)
            rc = mfs_err_set(err, -ENOENT, "stage: '%s' is not a staged file", path);
        if (rc == 0) {
            w->pt = r.pt;
            memset(&r.pt, 0, sizeof(r.pt));
            if (stage_hold_pt_locked(w, w->pt.v, w->pt.n) < 0)
                rc = stage_nomem(err);
        }
        mfs_stage_pt_release(&r.pt);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc < 0)
        goto out_free;
    *wp = w;
    return 0;
out_free:
    mfs_stage_writer_close(&w);
    return rc;
}

ssize_t mfs_stage_writer_write(struct mfs_stage_writer *w, uint64_t off, const void *data,
                               size_t len, struct mfs_err *err)
{
    struct mfs_stage *s = w->s;
    struct stage_ext x = { .src = SRC_OBJ };
    struct stage_chunk *c = NULL;
    sqlite3_stmt *st;
    const unsigned char *p = data;
    uint64_t pos;
    uint64_t idx;
    uint32_t at;
    uint32_t n;
    bool was_full;
    bool appends;
    int rc;

    if (w->broken)
        return mfs_err_set(err, w->broken, "stage: '%s' lost written data earlier", w->path);
    if (off > STAGE_MAX_OFF || len > STAGE_MAX_OFF - off)
        return mfs_err_set(err, -EINVAL, "stage: write past 4 TiB in '%s'", w->path);
    if (len == 0)
        return 0;
    if (!w->obj) {
        pthread_mutex_lock(&s->lock);
        rc = stage_stmt(s, ST_OBJ_INS, &st, err);
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, s->id);
            rc = stage_step_done(s, st, "make a data object", err);
        }
        if (rc == 0) {
            w->obj = sqlite3_last_insert_rowid(s->db);
            w->flushed = false;
            if (stage_hold_locked(w, w->obj) < 0)
                rc = stage_nomem(err);
        }
        pthread_mutex_unlock(&s->lock);
        if (rc < 0) {
            w->obj = 0;
            return rc;
        }
    }
    for (pos = off; pos < off + len; pos += n) {
        idx = pos / MFS_CACHE_CHUNK;
        at = (uint32_t)(pos % MFS_CACHE_CHUNK);
        n = MFS_CACHE_CHUNK - at;
        if (n > off + len - pos)
            n = (uint32_t)(off + len - pos);
        rc = stage_writer_chunk(w, idx, at, n, &c, err);
        if (rc < 0)
            return rc;
        memcpy(c->data + at, p + (pos - off), n);
        if (at + n > c->end)
            c->end = at + n;
        was_full = c->lo == 0 && c->hi == MFS_CACHE_CHUNK;
        if (c->hi == 0 || (at <= c->hi && at + n >= c->lo)) {
            if (c->hi == 0 || at < c->lo)
                c->lo = at;
            if (at + n > c->hi)
                c->hi = at + n;
        } else if (n > c->hi - c->lo) {
            c->lo = at;
            c->hi = at + n;
        }
        if (!was_full && c->lo == 0 && c->hi == MFS_CACHE_CHUNK)
            w->full++;
    }
    x.obj = w->obj;
    x.src_off = off;
    x.len = len;
    appends = off == w->pt.size;
    if (mfs_stage_pt_replace(&w->pt, off, &x, 1) < 0)
        return stage_nomem(err);
    /* Still exactly the bytes written in order from 0? */
    if (!w->seq || !appends || EVP_DigestUpdate(w->seq, data, len) != 1)
        stage_seq_drop(w);
    w->dirty = true;
    if ((uint64_t)w->nch * MFS_CACHE_CHUNK >= STAGE_MAX_BUFFERED)
        rc = stage_writer_flush(w, true, err);
    else if ((uint64_t)w->full * MFS_CACHE_CHUNK >= STAGE_FLUSH_BYTES)
        rc = stage_writer_flush(w, false, err);
    else
        rc = 0;
    return rc < 0 ? rc : (ssize_t)len;
}

ssize_t mfs_stage_writer_link(struct mfs_stage_writer *w, uint64_t off, const char *src_path,
                              uint64_t src_off, uint64_t len, struct mfs_err *err)
{
    struct mfs_stage *s = w->s;
    struct stage_ext *v = NULL;
    struct stage_row r;
    size_t n = 0;
    int rc;

    rc = stage_check_path(src_path, err);
    if (rc < 0)
        return rc;
    if (off > STAGE_MAX_OFF || len > STAGE_MAX_OFF - off)
        return mfs_err_set(err, -EINVAL, "stage: link past 4 TiB in '%s'", w->path);
    stage_seq_drop(w);                      /* content not written here: not hashed */
    pthread_mutex_lock(&s->lock);
    rc = stage_row_get_locked(s, src_path, &r, err);
    if (rc == 0 && r.kind != MFS_STAGE_FILE)
        rc = mfs_err_set(err, -ENOENT, "stage: '%s' is not a staged file", src_path);
    if (rc == 0 && (src_off > r.size || len > r.size - src_off))
        rc = mfs_err_set(err, -EINVAL, "stage: cannot link %llu bytes at %llu of '%s': "
                         "past its end", (unsigned long long)len,
                         (unsigned long long)src_off, src_path);
    if (rc == 0 && mfs_stage_pt_slice(&r.pt, src_off, len, &v, &n) < 0)
        rc = stage_nomem(err);
    /* Held before the lock goes: a commit could drop src's last reference. */
    if (rc == 0 && stage_hold_pt_locked(w, v, n) < 0)
        rc = stage_nomem(err);
    pthread_mutex_unlock(&s->lock);
    mfs_stage_pt_release(&r.pt);
    if (rc == 0 && n > 0) {
        if (mfs_stage_pt_replace(&w->pt, off, v, n) < 0)
            rc = stage_nomem(err);
        else
            n = 0;                          /* owned by w->pt now */
        w->dirty = true;
    }
    while (n)
        mfs_stage_ext_release(&v[--n]);
    free(v);
    return rc < 0 ? rc : (ssize_t)len;
}

ssize_t mfs_stage_writer_link_remote(struct mfs_stage_writer *w, uint64_t off,
                                     const struct mfs_entry *remote, uint64_t src_off,
                                     uint64_t len, struct mfs_err *err)
{
    struct stage_ext x = { .src = SRC_REMOTE };

    if (!remote || remote->is_dir)
        return mfs_err_set(err, -EINVAL, "stage: no remote file to link into '%s'", w->path);
    if (src_off > remote->size || len > remote->size - src_off)
        return mfs_err_set(err, -EINVAL, "stage: cannot link %llu bytes at %llu of '%s': "
                           "past its end", (unsigned long long)len,
                           (unsigned long long)src_off, remote->path ? remote->path : "");
    if (off > STAGE_MAX_OFF || len > STAGE_MAX_OFF - off)
        return mfs_err_set(err, -EINVAL, "stage: link past 4 TiB in '%s'", w->path);
    if (len == 0)
        return 0;
    stage_seq_drop(w);
    x.len = len;
    x.src_off = src_off;
    x.rem = mfs_stage_remote_dup(remote);
    if (!x.rem || mfs_stage_pt_replace(&w->pt, off, &x, 1) < 0) {
        mfs_stage_remote_free(x.rem);
        return stage_nomem(err);
    }
    w->dirty = true;
    return (ssize_t)len;
}

int mfs_stage_writer_truncate(struct mfs_stage_writer *w, uint64_t size, struct mfs_err *err)
{
    if (size > STAGE_MAX_OFF)
        return mfs_err_set(err, -EINVAL, "stage: '%s' cannot grow past 4 TiB", w->path);
    if (size == w->pt.size)
        return 0;
    if (mfs_stage_pt_truncate(&w->pt, size) < 0)
        return stage_nomem(err);
    if (size == 0)
        stage_seq_start(w);                 /* O_TRUNC, then a copy from the start */
    else
        stage_seq_drop(w);
    w->dirty = true;
    return 0;
}

uint64_t mfs_stage_writer_size(const struct mfs_stage_writer *w)
{
    return w->pt.size;
}

ssize_t mfs_stage_writer_read(struct mfs_stage_writer *w, uint64_t off, size_t len, void *buf,
                              struct mfs_err *err)
{
    size_t n;
    int rc;

    n = off >= w->pt.size ? 0 : (w->pt.size - off < len ? (size_t)(w->pt.size - off) : len);
    rc = stage_pt_read(w->s, w, &w->pt, off, n, buf, PASS_OBJ | PASS_OTHER, err);
    return rc < 0 ? rc : (ssize_t)n;
}

/* Inside the commit transaction: write w's chunks, point its path at it. */
static int stage_writer_commit_locked(struct mfs_stage_writer *w, uint64_t gen,
                                      struct mfs_err *err)
{
    char sha[65];
    int rc;

    if (w->broken)
        return mfs_err_set(err, w->broken, "stage: '%s' lost written data earlier", w->path);
    if (!w->dirty)
        return 0;                           /* fsync then close: nothing new */
    rc = stage_writer_put_chunks_locked(w, true, err);
    stage_seq_hex(w, sha);
    if (rc == 0)
        rc = stage_row_put_locked(w->s, w->path, MFS_STAGE_FILE, w->mode, &w->pt, gen, 0,
                                  sha, err);
    return rc;
}

/* After the commit transaction: the draft is sealed, later writes start a
 * fresh object (its piece table keeps naming the sealed one, still held). */
static void stage_writer_sealed(struct mfs_stage_writer *w)
{
    stage_writer_drop_chunks(w, true);
    w->obj = 0;
    w->dirty = false;
}

int mfs_stage_commit(struct mfs_stage *s, struct mfs_stage_writer *const *writers, size_t nw,
                     const struct mfs_stage_change *changes, size_t nc, struct mfs_err *err)
{
    bool any = nc > 0;
    uint64_t gen;
    size_t i;
    int rc;

    for (i = 0; i < nw; i++) {
        if (!writers[i] || writers[i]->s != s)
            return mfs_err_set(err, -EINVAL, "stage: writer %zu is not of this stage", i);
        if (writers[i]->broken)
            return mfs_err_set(err, writers[i]->broken, "stage: '%s' lost written data "
                               "earlier", writers[i]->path);
        any = any || writers[i]->dirty;
    }
    if (!any)
        return 0;                           /* nothing to commit: no new generation */
    pthread_mutex_lock(&s->lock);
    rc = stage_exec(s, ST_BEGIN, err);
    if (rc < 0)
        goto out_unlock;
    rc = stage_next_gen_locked(s, &gen, err);
    for (i = 0; i < nw && rc == 0; i++)
        rc = stage_writer_commit_locked(writers[i], gen, err);
    for (i = 0; i < nc && rc == 0; i++)
        rc = stage_change_locked(s, &changes[i], gen, err);
    if (rc == 0)
        rc = stage_gc_locked(s, err);
    if (rc == 0)
        rc = stage_exec(s, ST_COMMIT, err);
    if (rc < 0) {
        stage_rollback(s);
        goto out_unlock;
    }
    for (i = 0; i < nw; i++)
        stage_writer_sealed(writers[i]);
out_unlock:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int mfs_stage_writer_commit(struct mfs_stage_writer *w, struct mfs_err *err)
{
    return mfs_stage_commit(w->s, &w, 1, NULL, 0, err);
}

int mfs_stage_apply(struct mfs_stage *s, const struct mfs_stage_change *changes, size_t n,
                    struct mfs_err *err)
{
    if (n > 0 && !changes)
        return mfs_err_set(err, -EINVAL, "stage: no changes given");
    return mfs_stage_commit(s, NULL, 0, changes, n, err);
}

void mfs_stage_writer_close(struct mfs_stage_writer **wp)
{
    struct mfs_stage_writer *w;
    struct mfs_stage *s;
    size_t i;

    if (!wp || !*wp)
        return;
    w = *wp;
    s = w->s;
    pthread_mutex_lock(&s->lock);
    stage_unhold_all_locked(w);
    if (w->obj)
        stage_gc_txn_locked(s, NULL);       /* a failure leaves it to the next open */
    pthread_mutex_unlock(&s->lock);
    stage_writer_drop_chunks(w, true);
    for (i = 0; i < w->nspare; i++)
        free(w->spare[i]);
    free(w->spare);
    free(w->ch);
    free(w->holds);
    stage_seq_drop(w);
    mfs_stage_pt_release(&w->pt);
    free(w->path);
    free(w);
    *wp = NULL;
}

/* ---- generation, clear, totals ---------------------------------------------- */

uint64_t mfs_stage_generation(struct mfs_stage *s)
{
    sqlite3_stmt *st;
    uint64_t gen = 0;

    pthread_mutex_lock(&s->lock);
    if (stage_stmt(s, ST_GEN_GET, &st, NULL) == 0) {
        sqlite3_bind_int64(st, 1, s->id);
        if (sqlite3_step(st) == SQLITE_ROW)
            gen = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->lock);
    return gen;
}

int mfs_stage_clear_upto(struct mfs_stage *s, uint64_t gen, struct mfs_err *err)
{
    sqlite3_stmt *st;
    char **paths = NULL;
    char **grown;
    size_t n = 0;
    size_t cap = 0;
    size_t i;
    int rc;

    pthread_mutex_lock(&s->lock);
    rc = stage_exec(s, ST_BEGIN, err);
    if (rc < 0)
        goto out_unlock;
    rc = stage_stmt(s, ST_ENTRY_OLD, &st, err);
    if (rc < 0)
        goto out_rollback;
    sqlite3_bind_int64(st, 1, s->id);
    sqlite3_bind_int64(st, 2, gen > INT64_MAX ? INT64_MAX : (int64_t)gen);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            grown = realloc(paths, cap * sizeof(*paths));
            if (!grown)
                break;
            paths = grown;
        }
        paths[n] = strdup((const char *)sqlite3_column_text(st, 0));
        if (!paths[n])
            break;
        n++;
    }
    if (rc == SQLITE_ROW)
        rc = stage_nomem(err);
    else if (rc != SQLITE_DONE)
        rc = stage_fail(s, rc, "list pushed entries", err);
    else
        rc = 0;
    sqlite3_reset(st);
    for (i = 0; i < n && rc == 0; i++)
        rc = stage_row_del_locked(s, paths[i], err);
    /* The entries go now; their data (refs 0, so no reader can reach it)
     * is deleted by the checkpoint thread in small transactions, or at the
     * next open if the process dies first. */
    if (rc == 0 && !s->ckpt_started)
        rc = stage_gc_locked(s, err);
    if (rc == 0)
        rc = stage_exec(s, ST_COMMIT, err);
out_rollback:
    if (rc < 0)
        stage_rollback(s);
out_unlock:
    if (rc == 0 && n > 0 && s->ckpt_started) {
        pthread_mutex_lock(&s->ckpt_lock);
        s->gc_pending = true;
        pthread_cond_signal(&s->ckpt_cond);
        pthread_mutex_unlock(&s->ckpt_lock);
    }
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

void mfs_stage_totals(struct mfs_stage *s, size_t *n_entries, uint64_t *file_bytes)
{
    sqlite3_stmt *st;

    *n_entries = 0;
    *file_bytes = 0;
    pthread_mutex_lock(&s->lock);
    if (stage_stmt(s, ST_TOTALS, &st, NULL) == 0) {
        sqlite3_bind_int64(st, 1, s->id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *n_entries = (size_t)sqlite3_column_int64(st, 0);
            *file_bytes = (uint64_t)sqlite3_column_double(st, 1);
        }
        sqlite3_reset(st);
    }
    pthread_mutex_unlock(&s->lock);
}
