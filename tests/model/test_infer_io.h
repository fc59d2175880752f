/*
 * tests/model/test_infer_io.h - helpers for the inference tests: a repo
 * as a plain directory under $MFS_DATA/models/<name> (the mount passes
 * its cache-backed reader instead; tests read the folder directly), and
 * reading golden JSON.
 */
#ifndef MFS_TESTS_TEST_INFER_IO_H
#define MFS_TESTS_TEST_INFER_IO_H

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "model/model.h"

#define TI_MAX_FILES 64

struct ti_repo {
    char dir[1024];
    size_t n;
    struct mfs_ckpt_file files[TI_MAX_FILES];
    char names[TI_MAX_FILES][256];
    struct mfs_ckpt_io io;
};

static inline ssize_t ti_read(void *ctx, const char *path, uint64_t off, size_t len, void *buf,
                       struct mfs_err *err)
{
    struct ti_repo *r = ctx;
    char real[1400];

    if (strstr(path, ".."))
        return mfs_err_set(err, -EINVAL, "bad path '%s'", path);
    snprintf(real, sizeof(real), "%s/%s", r->dir, path);
    return check_pread_file(real, off, len, buf, err);
}

static inline int ti_cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct mfs_ckpt_file *)a)->path, ((const struct mfs_ckpt_file *)b)->path);
}

/* List the files of folder dir into r.  0 or -1. */
static inline int ti_repo_open_dir(struct ti_repo *r, const char *dir)
{
    struct dirent *d;
    DIR *dp;

    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    dp = opendir(r->dir);
    if (!dp)
        return -1;
    while ((d = readdir(dp)) && r->n < TI_MAX_FILES) {
        char real[1400];
        struct stat st;

        if (d->d_name[0] == '.')
            continue;
        snprintf(real, sizeof(real), "%s/%s", r->dir, d->d_name);
        if (stat(real, &st) || !S_ISREG(st.st_mode))
            continue;
        snprintf(r->names[r->n], sizeof(r->names[0]), "%s", d->d_name);
        r->files[r->n].path = r->names[r->n];
        r->files[r->n].size = (uint64_t)st.st_size;
        r->n++;
    }
    closedir(dp);
    qsort(r->files, r->n, sizeof(r->files[0]), ti_cmp_file);
    r->io.read = ti_read;
    r->io.log = NULL;
    r->io.ctx = r;
    return 0;
}

/* List $MFS_DATA/models/<model> into r.  0 or -1. */
static inline int ti_repo_open(struct ti_repo *r, const char *model)
{
    char dir[1024];

    snprintf(dir, sizeof(dir), "%s/models/%s", check_data_dir(), model);
    return ti_repo_open_dir(r, dir);
}

/* Whole file into memory (NUL-terminated); NULL on failure. */
#define ti_slurp check_slurp

/* $MFS_DATA/golden/<rel> parsed; NULL on failure. */
static inline cJSON *ti_golden(const char *rel)
{
    char path[1024];
    cJSON *j;
    char *text;

    snprintf(path, sizeof(path), "%s/golden/%s", check_data_dir(), rel);
    text = ti_slurp(path, NULL);
    if (!text)
        return NULL;
    j = cJSON_Parse(text);
    free(text);
    return j;
}

/* ids of a golden record into a malloc'ed array. */
static inline int32_t *ti_ids(const cJSON *arr, size_t *n)
{
    int32_t *ids;
    int i;

    *n = (size_t)cJSON_GetArraySize(arr);
    ids = calloc(*n + 1, sizeof(*ids));
    for (i = 0; ids && i < (int)*n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

/* Load the model in $MFS_DATA/models/<model>, or in folder model when it
 * starts with '/', with load words opts_text. */
static inline int ti_load(const char *model, const char *opts_text, struct mfs_model **m,
                          struct mfs_err *err)
{
    struct mfs_model_load_opts opts;
    struct ti_repo *r = calloc(1, sizeof(*r));
    int rc;

    *m = NULL;
    if (!r)
        return -ENOMEM;
    if ((model[0] == '/' ? ti_repo_open_dir(r, model) : ti_repo_open(r, model)) < 0) {
        free(r);
        return mfs_err_set(err, -ENOENT, "no model folder '%s'", model);
    }
    rc = mfs_model_load_opts_parse(opts_text, strlen(opts_text), &opts, err);
    if (rc == 0)
        rc = mfs_model_load(r->files, r->n, &r->io, &opts, m, err);
    free(r);
    return rc;
}

#endif
