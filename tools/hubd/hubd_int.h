/*
 * tools/hubd/hubd_int.h - internals shared by the HTTP side of the local
 * Hub: the server, one request, reply helpers (http.c) and the route
 * handlers (routes_*.c).  Not for use outside tools/hubd/.
 *
 * Threads: libmicrohttpd runs one thread per connection; a request belongs
 * to its connection's thread, the server is shared (counters are atomic,
 * the store has its own lock, everything else is read-only after start).
 */
#ifndef MFS_TOOLS_HUBD_HUBD_INT_H
#define MFS_TOOLS_HUBD_HUBD_INT_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/hash.h"
#include "tools/hubd/hubd.h"

#define MFS_HUBD_JSON_BODY_MAX (16u << 20)    /* bytes of a JSON request body */
#define MFS_HUBD_COMMIT_BODY_MAX (512u << 20) /* bytes of an NDJSON commit body */
#define MFS_HUBD_REGULAR_MAX (10u << 20)      /* bytes of an inline (non-LFS) file */
#define MFS_HUBD_URL_TTL_S (24 * 3600)        /* lifetime of signed LFS URLs */
#define MFS_HUBD_CONN_MAX 4096                /* connections (threads) served at once */
#define MFS_HUBD_IDLE_TIMEOUT_S 120           /* a connection silent this long is closed */
#define MFS_HUBD_PART_SIZE (8u << 20)         /* multipart chunk_size in bytes */
#define MFS_HUBD_MULTIPART_MIN (16u << 20)    /* objects this big upload in parts */
#define MFS_HUBD_PARTS_MAX 10000              /* parts of one multipart upload */
#define MFS_HUBD_OBJECT_MAX ((uint64_t)MFS_HUBD_PART_SIZE * MFS_HUBD_PARTS_MAX) /* bytes */

struct mfs_hubd_token {
    char *token;                            /* owned, "hf_..." */
    char *user;                             /* owned, user name */
};

#define MFS_HUBD_ASM_MAX 16                   /* multipart uploads with a running hash kept */

/* The running sha256 of a multipart upload whose parts arrive in order:
 * object bytes [0, next) were hashed as they came, so the completion only
 * hashes what follows (routes_upload.c). */
struct mfs_hubd_asm {
    char oid[65];                           /* the object; "" = a free slot */
    uint64_t next;                          /* bytes hashed into h */
    struct mfs_hash *h;                     /* NULL while busy, or when nothing is hashed */
    bool busy;                              /* a part PUT is hashing [next, next + part) */
    uint64_t gen;                           /* changes whenever the slot is reset */
};

struct mfs_hubd_srv {
    struct mfs_hubd_store *store;           /* the root's store */
    const struct mfs_hubd_serve_opts *opts; /* borrowed for the server's life */
    struct mfs_hubd_token *tokens;          /* from --token-file */
    size_t ntokens;                         /* entries in tokens */
    bool open_mode;                         /* no --token-file: any hf_ token is valid */
    char secret[65];                        /* random key that signs LFS URLs */
    char bind_url[128];                     /* http://HOST:PORT as printed */
    atomic_bool stopping;                   /* set before MHD_stop_daemon */
    atomic_uint_fast64_t n_requests;        /* every request */
    atomic_uint_fast64_t n_content;         /* resolve/raw/LFS bodies served */
    atomic_uint_fast64_t content_bytes;     /* bytes in those bodies */
    pthread_mutex_t asm_lock;               /* guards asms and asm_gen */
    struct mfs_hubd_asm asms[MFS_HUBD_ASM_MAX];
    uint64_t asm_gen;                       /* last gen handed out */
};

enum mfs_hubd_auth {
    MFS_HUBD_ANON,                          /* no Authorization header */
    MFS_HUBD_VALID,                         /* a known token (or open mode) */
    MFS_HUBD_INVALID,                       /* a token we do not know */
};

struct mfs_hubd_req {
    struct mfs_hubd_srv *srv;               /* the server */
    struct MHD_Connection *conn;            /* libmicrohttpd's connection */
    const char *method;                     /* "GET", "HEAD", ... (MHD's) */
    char *url;                              /* owned raw path, still percent-encoded */
    char **seg;                             /* owned raw path segments */
    size_t nseg;                            /* entries in seg */
    enum mfs_hubd_auth auth;                /* what the token says */
    char user[64];                          /* user name when auth is VALID */
    char base[300];                         /* http://HOST the client used, no '/' */
    struct mfs_buf body;                    /* request body when buffered */
    size_t body_max;                        /* limit for body */
    bool body_too_big;                      /* body exceeded body_max */
    bool replied;                           /* a response was queued early */
    uint64_t id;                            /* request number, sent as X-Request-Id */
    int up_fd;                              /* streamed upload temp file, or -1 */
    char up_tmp[PATH_MAX];                  /* its path, "" when none */
    struct mfs_hash *up_sha;                /* sha256 of the streamed bytes (a part: of
                                               the object so far, when in order; else NULL) */
    uint64_t up_len;                        /* bytes streamed so far */
    unsigned up_part;                       /* a multipart part PUT: its number, else 0 */
    uint64_t up_off;                        /* part: object offset of its first byte */
    bool up_oversize;                       /* part: more bytes than chunk_size came */
    uint64_t up_gen;                        /* part hashed in order (up_sha): its slot's gen */
};

/* ---- http.c: replies ---- */

/* Queue resp with status, adding the common headers; destroys resp. */
enum MHD_Result mfs_hubd_reply(struct mfs_hubd_req *r, unsigned status,
                               struct MHD_Response *resp);
/* JSON reply; takes json (freed). */
enum MHD_Result mfs_hubd_reply_json(struct mfs_hubd_req *r, unsigned status, cJSON *json);
/* Error reply: X-Error-Code (code may be NULL), X-Error-Message and a JSON
 * {"error": msg} body. */
enum MHD_Result mfs_hubd_reply_error(struct mfs_hubd_req *r, unsigned status, const char *code,
                                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like mfs_hubd_reply_error, adding header name: value (e.g. X-Repo-Commit). */
enum MHD_Result mfs_hubd_reply_error_h(struct mfs_hubd_req *r, unsigned status,
                                       const char *code, const char *hname,
                                       const char *hvalue, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Map an errno from the store to a reply (ENOENT -> 404 code, ...). */
enum MHD_Result mfs_hubd_reply_errno(struct mfs_hubd_req *r, int rc, const char *enoent_code,
                                     const struct mfs_err *err);

/* ---- http.c: request helpers ---- */

/* Percent-decode s (len bytes) into a fresh string; plus_space turns '+'
 * into ' ' (forms, query strings).  NULL if it decodes to a NUL byte, has
 * a bad escape, or on ENOMEM. */
char *mfs_hubd_decode(const char *s, size_t len, bool plus_space);
/* Decoded query argument name, or NULL.  Caller frees. */
char *mfs_hubd_arg(struct mfs_hubd_req *r, const char *name);
/* Query argument as a boolean: 1, true, True, yes. */
bool mfs_hubd_arg_bool(struct mfs_hubd_req *r, const char *name);
/* Request header value (borrowed), or NULL. */
const char *mfs_hubd_header(struct mfs_hubd_req *r, const char *name);
/* Join raw segments [from, to) with '/' and decode: a repo path.  NULL if
 * it decodes to a NUL byte or to an invalid path (mfs_hubd_path_ok), or
 * when from == to. */
char *mfs_hubd_join_path(struct mfs_hubd_req *r, size_t from, size_t to);
/* Percent-encode s for a URL: keep_slash leaves '/' as is. */
int mfs_hubd_encode(struct mfs_buf *b, const char *s, bool keep_slash);
/* Signature of an LFS URL for what (oid and expiry) into hex. */
void mfs_hubd_sign(struct mfs_hubd_srv *srv, const char *what, char hex[65]);
/* True iff the query's expires/sig sign what and have not expired. */
bool mfs_hubd_sig_ok(struct mfs_hubd_req *r, const char *oid);

/* Look up repo and check the caller may see it (hub-api.md section 3):
 * private repos need a valid token (401 RepoNotFound anonymously, 404 for
 * a missing repo with a token); content=true also refuses gated repos to
 * callers without a valid token (403 GatedRepo); write=true needs a valid
 * token (or open mode).  Returns 0, or -1 after replying. */
int mfs_hubd_repo_access(struct mfs_hubd_req *r, const char *type, const char *name,
                         bool content, bool write, struct mfs_hubd_repo *repo);

/* True iff the caller (r->user) may act for the namespace of repo id name:
 * it is the caller's own, or no token of --token-file belongs to it, or
 * name has no namespace.  Open mode (no token file) owns everything. */
bool mfs_hubd_owns(struct mfs_hubd_req *r, const char *name);

/* Check the caller may write (valid token, or open mode without one).
 * Returns 0, or -1 after replying 401. */
int mfs_hubd_need_write(struct mfs_hubd_req *r);

/* Resolve the revision at the start of segments [from, to): the first
 * segment decoded, or, for raw revisions holding '/', the longest run of
 * segments that names a ref.  OUT: commit, *next (first segment after the
 * revision), rev (decoded name, MFS_HUBD_REF_MAX bytes).  Returns 0, or -1
 * after replying 404 RevisionNotFound. */
int mfs_hubd_split_rev(struct mfs_hubd_req *r, const struct mfs_hubd_repo *repo, size_t from,
                       size_t to, char commit[41], size_t *next, char *rev);

/* Fault switch (--fault-file): the mode for this request path, or "". */
void mfs_hubd_fault(struct mfs_hubd_req *r, char mode[16]);

/* ---- routes ---- */

/* resolve / raw: segs [from, nseg) are REV/PATH; raw=true for raw/. */
enum MHD_Result mfs_hubd_route_resolve(struct mfs_hubd_req *r, const char *type,
                                       const char *repo, size_t from, bool raw);
/* GET/HEAD /_lfs/{sha256}/...?expires=&sig= */
enum MHD_Result mfs_hubd_route_lfs_get(struct mfs_hubd_req *r);
/* /api/{T}/{repo}[/ACTION/...]: action at seg index from (== nseg: info). */
enum MHD_Result mfs_hubd_route_api_repo(struct mfs_hubd_req *r, const char *type,
                                        const char *repo, size_t from);
enum MHD_Result mfs_hubd_route_whoami(struct mfs_hubd_req *r);
enum MHD_Result mfs_hubd_route_repo_create(struct mfs_hubd_req *r);
enum MHD_Result mfs_hubd_route_repo_delete(struct mfs_hubd_req *r);
enum MHD_Result mfs_hubd_route_validate_yaml(struct mfs_hubd_req *r);
/* POST /{P}{repo}.git/info/lfs/objects/batch */
enum MHD_Result mfs_hubd_route_lfs_batch(struct mfs_hubd_req *r, const char *type,
                                         const char *repo);
/* PUT/POST /_lfs_upload/{oid}[/{part}], POST /_lfs_verify/{oid}: after the
 * body was streamed (PUT) or buffered (POST). */
enum MHD_Result mfs_hubd_route_lfs_upload(struct mfs_hubd_req *r);
/* Start a multipart part PUT (_lfs_upload/OID/K, headers in, signature
 * checked): r->up_fd becomes the object's assembly file, share-locked, at
 * r->up_off = (K-1) * chunk_size (routes_upload.c explains).  MHD_YES, or
 * the error reply's result. */
enum MHD_Result mfs_hubd_part_start(struct mfs_hubd_req *r);
/* A part PUT that ends without part_done (dropped connection): give back
 * its share of the running hash.  No-op for other requests. */
void mfs_hubd_part_abort(struct mfs_hubd_req *r);
/* Free the running hashes of srv (at shutdown). */
void mfs_hubd_asm_release(struct mfs_hubd_srv *srv);
enum MHD_Result mfs_hubd_route_lfs_verify(struct mfs_hubd_req *r);
/* Repo routes that write, from mfs_hubd_route_api_repo. */
enum MHD_Result mfs_hubd_route_preupload(struct mfs_hubd_req *r, const char *type,
                                         const struct mfs_hubd_repo *repo, size_t from);
enum MHD_Result mfs_hubd_route_commit(struct mfs_hubd_req *r, const char *type,
                                      const struct mfs_hubd_repo *repo, size_t from);

/* Web URL prefix of a repo type: "" for models, "datasets/", "spaces/". */
const char *mfs_hubd_type_prefix(const char *type);

/* Decode base64 text (len bytes, padding optional, no whitespace) into a
 * fresh buffer.  OUT: *out (free()), *outlen.  -EINVAL on bad input. */
int mfs_hubd_b64_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* True iff JSON text [p, p+len) holds a raw NUL byte or a \u0000 escape
 * (cJSON would cut the string there, so a path could silently change). */
bool mfs_hubd_json_has_nul(const char *p, size_t len);

/* Request body as JSON (a JSON object or array).  NULL after replying 400. */
cJSON *mfs_hubd_body_json(struct mfs_hubd_req *r);

/* Tree entry JSON for a file (hub-api.md section 5.2). */
cJSON *mfs_hubd_file_json(const struct mfs_hubd_file *f);

#endif
