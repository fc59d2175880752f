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

#endif
