/*
 * fs/ctl_push.c - the .modelfs/push and .modelfs/config control files
 * (docs/design.md, Control files; Writes, resharding, push), on top of the
 * conversations of fs/control.h and the view's write API (fs/view.h).
 *
 *   push    a write is one push: its text (if any) is the commit title, the
 *           rest comes from the settings.  The write returns once the push
 *           is done, so `echo > push && cat push` reads its result.  A
 *           failed push fails the write with EIO (EROFS on a mount that
 *           does not push, EBUSY while a file is still open with writes not
 *           yet closed); the reason is the reply ("error: REASON") and a
 *           line in .modelfs/log, and the staged changes stay.  A read with
 *           no conversation shows the JSON of the mount's last push.
 *   config  a write is `key=value` pairs separated by blanks or newlines;
 *           a value may be written "..." to hold blanks (\" and \\ inside).
 *           Keys: max_shard_size (bytes or "5GB"-style, common/size.h),
 *           create_pr (0/1/true/false), commit_message, commit_description.
 *           All pairs apply together or none (an unknown key or bad value
 *           is EINVAL with the reason).  Reading shows the settings JSON.
 * Neither file has state of its own: the view holds the settings and the
 * pusher, and locks them.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/size.h"
#include "fs/control.h"
#include "fs/push.h"
#include "fs/view.h"

#define CFG_VALUE_MAX 4096                  /* bytes of one config value */

static int reply_buf(struct mfs_ctl_reply *reply, struct mfs_buf *b, const char *file,
                     struct mfs_err *err)
{
    if (mfs_ctl_reply_write(reply, b->data ? b->data : "", b->len) < 0)
        return mfs_err_set(err, -ENOMEM, "cannot answer '%s': out of memory", file);
    return 0;
}

/* ---- push ------------------------------------------------------------------------------ */

static int push_request(struct mfs_view *view, void *state, const char *req, size_t len,
                        struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct mfs_view_settings s;
    struct mfs_push_opts opts = { 0 };
    struct mfs_push_result res;
    struct mfs_buf out = MFS_BUF_INIT;
    struct mfs_push *pusher = mfs_view_pusher(view);
    int rc;

    (void)state;
    if (!pusher)
        return mfs_err_set(err, -EROFS, "cannot push '%s': this mount does not push "
                           "(read-only or offline)", mfs_view_repo_id(view));
    if (memchr(req, '\0', len))
        return mfs_err_set(err, -EINVAL, "invalid push request: the commit message has a NUL "
                           "byte");
    mfs_view_settings_get(view, &s);
    opts.message = len ? req : (s.commit_message[0] ? s.commit_message : NULL);
    opts.description = s.commit_description;
    opts.create_pr = s.create_pr;
    rc = mfs_view_push(view, &opts, &res, err);
    if (rc < 0) {
        /* A push that failed is an I/O error to the writer whatever the
         * cause (docs/design.md: "the push fails with a clear error");
         * the reason keeps the cause.  EBUSY (a file still being written)
         * stays: nothing was tried, and retrying later is the remedy. */
        if (rc != -EROFS && rc != -ENOMEM && rc != -EBUSY)
            rc = -EIO;
        if (err)
            err->code = rc;
        return rc;
    }
    mfs_push_result_release(&res);
    rc = mfs_push_last_json(pusher, &out, err);
    if (rc == 0)
        rc = reply_buf(reply, &out, "push", err);
    mfs_buf_release(&out);
    return rc;
}

static int push_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *reply,
                     struct mfs_err *err)
{
    struct mfs_push *pusher = mfs_view_pusher(view);
    struct mfs_buf out = MFS_BUF_INIT;
    int rc;

    (void)state;
    if (!pusher) {
        rc = mfs_ctl_reply_printf(reply, "{\"status\":\"none\",\"error\":\"this mount does "
                                  "not push (read-only or offline)\"}\n");
        return rc < 0 ? mfs_err_set(err, rc, "cannot answer 'push': out of memory") : 0;
    }
    rc = mfs_push_last_json(pusher, &out, err);
    if (rc == 0)
        rc = reply_buf(reply, &out, "push", err);
    mfs_buf_release(&out);
    return rc;
}

/* ---- config ---------------------------------------------------------------------------- */

static int settings_json(struct mfs_view *view, struct mfs_ctl_reply *reply,
                         struct mfs_err *err)
{
    struct mfs_view_settings s;
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    int rc = 0;

    mfs_view_settings_get(view, &s);
    if (o) {
        cJSON_AddStringToObject(o, "repo_id", mfs_view_repo_id(view));
        cJSON_AddStringToObject(o, "revision", mfs_view_revision(view));
        cJSON_AddBoolToObject(o, "writable", mfs_view_stage(view) != NULL);
        cJSON_AddBoolToObject(o, "pushes", mfs_view_pusher(view) != NULL);
        cJSON_AddNumberToObject(o, "max_shard_size", (double)s.max_shard_size);
        cJSON_AddBoolToObject(o, "create_pr", s.create_pr);
        cJSON_AddStringToObject(o, "commit_message", s.commit_message);
        cJSON_AddStringToObject(o, "commit_description", s.commit_description);
        text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    if (!text || mfs_ctl_reply_printf(reply, "%s\n", text) < 0)
        rc = mfs_err_set(err, -ENOMEM, "cannot answer 'config': out of memory");
    free(text);
    return rc;
}

/* Next `key=value` pair of req[*pos..len): key into key[ksize], the value
 * (quotes and escapes undone) into val[vsize].  Returns 1 with a pair, 0 at
 * the end, -EINVAL. */
static int next_pair(const char *req, size_t len, size_t *pos, char *key, size_t ksize,
                     char *val, size_t vsize, struct mfs_err *err)
{
    size_t i = *pos;
    size_t k = 0;
    size_t v = 0;

    while (i < len && strchr(" \t\r\n", req[i]))
        i++;
    if (i == len) {
        *pos = i;
        return 0;
    }
    while (i < len && req[i] != '=' && !strchr(" \t\r\n", req[i])) {
        if (k + 1 >= ksize)
            return mfs_err_set(err, -EINVAL, "invalid config request: key too long");
        key[k++] = req[i++];
    }
    key[k] = '\0';
    if (i == len || req[i] != '=')
        return mfs_err_set(err, -EINVAL, "invalid config request: '%.64s' is not key=value",
                           key);
    i++;
    if (i < len && req[i] == '"') {
        i++;
        for (;;) {
            if (i == len)
                return mfs_err_set(err, -EINVAL, "invalid config request: unterminated quote "
                                   "in '%.64s'", key);
            if (req[i] == '"')
                break;
            if (req[i] == '\\' && i + 1 < len && (req[i + 1] == '"' || req[i + 1] == '\\'))
                i++;
            if (v + 1 >= vsize)
                return mfs_err_set(err, -EINVAL, "invalid config request: value of '%.64s' "
                                   "too long", key);
            val[v++] = req[i++];
        }
        i++;
        if (i < len && !strchr(" \t\r\n", req[i]))
            return mfs_err_set(err, -EINVAL, "invalid config request: text after the quoted "
                               "value of '%.64s'", key);
    } else {
        while (i < len && !strchr(" \t\r\n", req[i])) {
            if (v + 1 >= vsize)
                return mfs_err_set(err, -EINVAL, "invalid config request: value of '%.64s' "
                                   "too long", key);
            val[v++] = req[i++];
        }
    }
    val[v] = '\0';
    *pos = i;
    return 1;
}

static int parse_bool(const char *key, const char *v, bool *out, struct mfs_err *err)
{
    if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes"))
        *out = true;
    else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no"))
        *out = false;
    else
        return mfs_err_set(err, -EINVAL, "invalid config request: '%s' must be 0, 1, true or "
                           "false, not '%.64s'", key, v);
    return 0;
}

static int set_text(const char *key, const char *v, char *dst, size_t size,
                    struct mfs_err *err)
{
    if (strlen(v) >= size)
        return mfs_err_set(err, -EINVAL, "invalid config request: '%s' is longer than %zu "
                           "bytes", key, size - 1);
    snprintf(dst, size, "%s", v);
    return 0;
}

static int config_request(struct mfs_view *view, void *state, const char *req, size_t len,
                          struct mfs_ctl_reply *reply, struct mfs_err *err)
{
    struct mfs_view_settings s;
    char key[64];
    char *val;
    size_t pos = 0;
    bool changed = false;
    int rc;

    (void)state;
    if (memchr(req, '\0', len))
        return mfs_err_set(err, -EINVAL, "invalid config request: NUL byte");
    val = malloc(CFG_VALUE_MAX);
    if (!val)
        return mfs_err_set(err, -ENOMEM, "cannot take the config request: out of memory");
    mfs_view_settings_get(view, &s);
    for (;;) {
        rc = next_pair(req, len, &pos, key, sizeof(key), val, CFG_VALUE_MAX, err);
        if (rc <= 0)
            break;
        changed = true;
        if (!strcmp(key, "max_shard_size")) {
            rc = mfs_size_parse(val, 0, &s.max_shard_size, err);
            if (rc == 0 && s.max_shard_size == 0)
                rc = mfs_err_set(err, -EINVAL, "max_shard_size must be more than 0");
            if (rc < 0)
                mfs_err_wrap(err, -EINVAL, "invalid config request");
        } else if (!strcmp(key, "create_pr")) {
            rc = parse_bool(key, val, &s.create_pr, err);
        } else if (!strcmp(key, "commit_message")) {
            rc = set_text(key, val, s.commit_message, sizeof(s.commit_message), err);
        } else if (!strcmp(key, "commit_description")) {
            rc = set_text(key, val, s.commit_description, sizeof(s.commit_description), err);
        } else {
            rc = mfs_err_set(err, -EINVAL, "invalid config request: unknown key '%.64s' (keys: "
                             "max_shard_size, create_pr, commit_message, commit_description)",
                             key);
        }
        if (rc < 0)
            break;
    }
    free(val);
    if (rc < 0)
        return rc;
    if (changed) {
        rc = mfs_view_settings_set(view, &s, err);
        if (rc < 0)
            return rc;
    }
    return settings_json(view, reply, err);
}

static int config_show(struct mfs_view *view, void *state, struct mfs_ctl_reply *reply,
                       struct mfs_err *err)
{
    (void)state;
    return settings_json(view, reply, err);
}

const struct mfs_ctl_handler mfs_ctl_push = {
    "push", push_request, push_show, NULL, NULL,
};

const struct mfs_ctl_handler mfs_ctl_config = {
    "config", config_request, config_show, NULL, NULL,
};
