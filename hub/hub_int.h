/*
 * hub/hub_int.h - what hub/hub.c (transport) and hub/hub_api.c (the JSON
 * calls) share.  Private to hub/.
 */
#ifndef MFS_HUB_HUB_INT_H
#define MFS_HUB_HUB_INT_H

#include "common/buf.h"
#include "hub/hub.h"

#define MFS_HUB_JSON_MAX (64u << 20)        /* largest metadata body accepted, bytes */

/* The endpoint with no trailing '/', e.g. "http://127.0.0.1:8080". */
const char *mfs_hub_endpoint(const struct mfs_hub *hub);

/* "models" or "datasets" for /api routes; "" or "datasets/" for web routes. */
const char *mfs_hub_api_type(const struct mfs_hub *hub);
const char *mfs_hub_web_prefix(const struct mfs_hub *hub);

/* Append s percent-encoded to b; '/' is kept when keep_slash (paths), else
 * encoded too (a revision is one segment, hub-api.md section 2).  -ENOMEM. */
int mfs_hub_buf_escape(struct mfs_buf *b, const char *s, bool keep_slash);

/* 0 if repo_id is "[namespace/]name" of [A-Za-z0-9_.-], else -EINVAL. */
int mfs_hub_check_repo_id(const char *repo_id, struct mfs_err *err);

/* GET url (a metadata call) with retries; the body goes to *body (reset
 * first, at most MFS_HUB_JSON_MAX bytes).  OUT: *next_url (free()), the
 * Link rel="next" target when next_url is not NULL and the answer has one,
 * else NULL.  what names the subject in error messages.  Errors as in
 * hub.h. */
int mfs_hub_get_json(struct mfs_hub *hub, const char *url, const char *what,
                     struct mfs_buf *body, char **next_url, struct mfs_err *err);

/* ---- sends: POST/PUT with a body (hub/upload.c, docs/hub-api.md section 6) ---- */

/* Fill buf with exactly len bytes of a body starting at off (bytes from the
 * start of the file); 0, or a negative errno with the reason in *err.
 * Called on the sending thread, again from the start on a retry. */
typedef int (*mfs_hub_read_fn)(void *ctx, uint64_t off, size_t len, void *buf,
                               struct mfs_err *err);

/* Told how many body bytes the current attempt has handed to libcurl. */
typedef void (*mfs_hub_sent_fn)(void *ctx, uint64_t attempt_bytes);

/* One POST or PUT.  The body is data/len, or (read != NULL) bytes
 * [off, off+size) streamed from read: a PUT that never holds the body. */
struct mfs_hub_send {
    const char *method;                     /* "POST" or "PUT" */
    const char *url;                        /* borrowed, absolute */
    const char *what;                       /* subject in messages */
    const char *content_type;               /* NULL: no Content-Type */
    const char *accept;                     /* NULL: no Accept */
    bool auth;                              /* send the token (never to pre-signed URLs) */
    const void *data;                       /* in-memory body (may be NULL when len 0) */
    size_t len;                             /* its bytes */
    mfs_hub_read_fn read;                   /* streamed body, or NULL */
    void *read_ctx;                         /* passed to read */
    uint64_t off;                           /* first byte of the streamed body */
    uint64_t size;                          /* bytes of the streamed body */
    mfs_hub_sent_fn sent;                   /* optional progress hook */
    void *sent_ctx;                         /* passed to sent */
    struct mfs_buf *resp;                   /* OUT (optional): answer body, JSON size cap */
    char etag[160];                         /* OUT: ETag of the answer, "" if none */
    long status;                            /* OUT: final HTTP status, 0 if none */
};

/* Send s with the retries of hub.c (408/429/5xx and network errors, the
 * body re-read from the start each time).  Errors as in hub.h, except:
 * 401/403 -EACCES (a write without valid credentials), 409 -EEXIST,
 * 412 -ESTALE; a read callback failure returns its errno at once.
 * Any thread may call it. */
int mfs_hub_send(struct mfs_hub *hub, struct mfs_hub_send *s, struct mfs_err *err);

/* True iff url has the endpoint's scheme, host and port, so that the token
 * may go there. */
bool mfs_hub_same_origin(const struct mfs_hub *hub, const char *url);

#endif
