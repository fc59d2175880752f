/*
 * tests/hubd/test_hubd_store.c - the local Hub's store (tools/hubd/store.c)
 * without HTTP: name and path rules, LFS pointers and .gitattributes
 * matching, revisions, and commit semantics (parent check, deletes, PRs,
 * .gitattributes lines for new LFS paths, the old commit left intact).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/hash.h"
#include "tools/hubd/hubd.h"

static const struct {
    const char *path;
    bool ok;
} path_cases[] = {
    { "config.json", true },       { "a/b/c.bin", true },        { ".gitattributes", true },
    { "", false },                 { "/etc/passwd", false },     { "../x", false },
    { "a/../b", false },           { "a/./b", false },           { ".", false },
    { "a//b", false },             { "a/", false },              { ".git/config", false },
    { "x/.git/y", false },         { ".github/ci.yml", true },   { "..a", true },
};

static const struct {
    const char *name;
    bool ok;
} name_cases[] = {
    { "gpt2", true },              { "org/model-1.b_c", true },  { "a/b/c", false },
    { "-x/y", false },             { "x/y-", false },            { "x--y/z", false },
    { "x/y..z", false },           { "x/y.git", false },         { "x y/z", false },
    { "", false },                 { "/x", false },              { "x/", false },
};

static const struct {
    const char *attrs;
    const char *path;
    bool lfs;
} attr_cases[] = {
    { NULL, "model.safetensors", true },
    { NULL, "sub/dir/pytorch_model.bin", true },
    { NULL, "config.json", false },
    { NULL, "README.md", false },
    { NULL, "saved_model/x/y.pb", true },
    { NULL, "data.tar.gz", true },
    { "*.custom filter=lfs diff=lfs merge=lfs -text\n", "w/x.custom", true },
    { "big/file.dat filter=lfs diff=lfs merge=lfs -text\n", "big/file.dat", true },
    { "big/file.dat filter=lfs diff=lfs merge=lfs -text\n", "other/file.dat", false },
    { "# *.txt filter=lfs\n", "a.txt", false },
};



static int add_mem(struct mfs_hubd_store *st, struct mfs_hubd_op *op, const char *path,
                   const char *text, bool lfs)
{
    memset(op, 0, sizeof(*op));
    op->kind = MFS_HUBD_OP_ADD;
    op->path = path;
    op->lfs = lfs;
    op->size = strlen(text);
    return mfs_hubd_blob_put_mem(st, text, strlen(text), op->sha256, op->oid, NULL);
}

static int commit(struct mfs_hubd_store *st, int64_t repo, const char *rev, const char *parent,
                  bool pr, const struct mfs_hubd_op *ops, size_t n, char oid[41], int *pr_num,
                  struct mfs_err *err)
{
    struct mfs_hubd_commit_req req = { 0 };

    req.rev = rev;
    req.create_branch = rev == NULL;
    req.create_pr = pr;
    req.parent = parent;
    req.title = "test";
    req.author = "tester";
    req.ops = ops;
    req.nops = n;
    return mfs_hubd_commit_create(st, repo, &req, oid, pr_num, err);
}

static bool has_file(struct mfs_hubd_store *st, const char *c, const char *path)
{
    struct mfs_hubd_file f;
    bool ok = mfs_hubd_file_get(st, c, path, &f, NULL) == 0;

    mfs_hubd_file_release(&f);
    return ok;
}

int main(void)
{
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_hubd_store *st = NULL;
    struct mfs_hubd_repo repo;
    struct mfs_hubd_op ops[4];
    struct mfs_hubd_file f;
    char c1[41];
    char c2[41];
    char c3[41];
    char got[41];
    char ref[MFS_HUBD_REF_MAX];
    char ptr[256];
    char shortid[8];
    char root[256];
    size_t i;
    int pr = 0;
    int rc;

    for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++)
        CHECK(mfs_hubd_path_ok(path_cases[i].path) == path_cases[i].ok, "path_ok('%s') is %d",
              path_cases[i].path, path_cases[i].ok);
    for (i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++)
        CHECK(mfs_hubd_repo_name_ok(name_cases[i].name) == name_cases[i].ok,
              "repo_name_ok('%s') is %d", name_cases[i].name, name_cases[i].ok);
    for (i = 0; i < sizeof(attr_cases) / sizeof(attr_cases[0]); i++)
        CHECK(mfs_hubd_attr_is_lfs(attr_cases[i].attrs, attr_cases[i].path) == attr_cases[i].lfs,
              "attr_is_lfs('%s') is %d (case %zu)", attr_cases[i].path, attr_cases[i].lfs, i);
    /* hub-api.md section 8: a 9-digit size gives a 134-byte pointer whose
     * blob id is 8095a62c...218e. */
    CHECK(mfs_hubd_lfs_pointer("d88b0d6a8a1b2bd0c3b4b5a5de2d8c8c0d5a6cdbd8bbd6af9c97c3a6d7ceabb9",
                               497764107, ptr, sizeof(ptr)) == 134,
          "pointer of a 9-digit size is 134 bytes");

    snprintf(root, sizeof(root), "%s/store", getenv("MFS_TMP") ? getenv("MFS_TMP") : "/tmp");
    rc = mfs_hubd_store_open(root, &st, &err);
    CHECK(rc == 0, "open store: %s", err.msg);
    if (rc < 0)
        return check_done();
    CHECK(mfs_hubd_repo_create(st, "model", "org/m", false, "", &repo, &err) == 0, "create repo");
    CHECK(mfs_hubd_repo_create(st, "model", "org/m", false, "", NULL, &err) == -EEXIST,
          "create it again: -EEXIST");
    CHECK(mfs_hubd_rev_resolve(st, repo.id, "main", got, NULL, NULL) == -ENOENT,
          "an empty repo has no main");

    add_mem(st, &ops[0], "a.txt", "hello\n", false);
    add_mem(st, &ops[1], "dir/w.custom", "weights", true);
    add_mem(st, &ops[2], "dir/sub/x.txt", "x", false);
    rc = commit(st, repo.id, NULL, NULL, false, ops, 3, c1, &pr, &err);
    CHECK(rc == 0, "first commit: %s", err.msg);
    CHECK(mfs_hubd_rev_resolve(st, repo.id, "HEAD", got, ref, NULL) == 0 && !strcmp(got, c1) &&
          !strcmp(ref, "refs/heads/main"), "HEAD resolves to main");
    CHECK(mfs_hubd_file_get(st, c1, "dir/w.custom", &f, NULL) == 0 && f.lfs && f.size == 7,
          "LFS file stored with its real size");
    if (f.path) {
        char poid[41];
        size_t n = mfs_hubd_lfs_pointer(f.sha256, 7, ptr, sizeof(ptr));

        mfs_hash_git_blob_hex(ptr, n, poid);
        CHECK(!strcmp(poid, f.oid), "LFS oid is the git blob id of the pointer");
    }
    mfs_hubd_file_release(&f);
    CHECK(mfs_hubd_file_get(st, c1, ".gitattributes", &f, NULL) == 0,
          ".gitattributes created for the new LFS path");
    mfs_hubd_file_release(&f);

    /* Stale parent: -ESTALE and nothing changes. */
    add_mem(st, &ops[0], "b.txt", "b", false);
    rc = commit(st, repo.id, "main", "0000000", false, ops, 1, c2, &pr, &err);
    CHECK(rc == -ESTALE, "stale parentCommit: -ESTALE (%d)", rc);
    rc = commit(st, repo.id, "main", c1, false, ops, 1, c2, &pr, &err);
    CHECK(rc == 0 && strcmp(c1, c2), "commit on the right parent");
    snprintf(shortid, sizeof(shortid), "%.7s", c2);
    CHECK(mfs_hubd_rev_resolve(st, repo.id, shortid, got, ref, NULL) == 0 &&
          !strcmp(got, c2) && ref[0] == '\0', "7-hex prefix resolves to the commit");

    /* A failing op rolls the whole commit back. */
    memset(&ops[1], 0, sizeof(ops[1]));
    ops[1].kind = MFS_HUBD_OP_DELETE_FILE;
    ops[1].path = "missing.txt";
    add_mem(st, &ops[0], "c.txt", "c", false);
    rc = commit(st, repo.id, "main", NULL, false, ops, 2, c3, &pr, &err);
    CHECK(rc == -ENOENT && strstr(err.msg, "doesn't exist"), "deleting a missing file: -ENOENT");
    CHECK(mfs_hubd_rev_resolve(st, repo.id, "main", got, NULL, NULL) == 0 && !strcmp(got, c2),
          "the failed commit left main where it was");

    /* A file where a folder is, or below a file: refused. */
    add_mem(st, &ops[0], "dir", "x", false);
    CHECK(commit(st, repo.id, "main", NULL, false, ops, 1, c3, &pr, &err) == -EINVAL,
          "a file named like an existing folder: -EINVAL");
    add_mem(st, &ops[0], "a.txt/inner", "x", false);
    CHECK(commit(st, repo.id, "main", NULL, false, ops, 1, c3, &pr, &err) == -EINVAL,
          "a file below an existing file: -EINVAL");

    /* Folder delete and PR. */
    memset(&ops[0], 0, sizeof(ops[0]));
    ops[0].kind = MFS_HUBD_OP_DELETE_FOLDER;
    ops[0].path = "dir";
    rc = commit(st, repo.id, "main", NULL, true, ops, 1, c3, &pr, &err);
    CHECK(rc == 0 && pr == 1, "create_pr opens refs/pr/1 (%d)", pr);
    CHECK(mfs_hubd_rev_resolve(st, repo.id, "refs/pr/1", got, NULL, NULL) == 0 &&
          !strcmp(got, c3), "refs/pr/1 points at the PR commit");
    CHECK(!has_file(st, c3, "dir/sub/x.txt") && !has_file(st, c3, "dir/w.custom") &&
          has_file(st, c3, "a.txt"), "deleted folder is gone in the PR");
    CHECK(has_file(st, c2, "dir/sub/x.txt") && has_file(st, c1, "dir/w.custom"),
          "older commits are intact");
    CHECK(mfs_hubd_rev_resolve(st, repo.id, "main", got, NULL, NULL) == 0 && !strcmp(got, c2),
          "a PR does not move main");

    /* Tags. */
    CHECK(mfs_hubd_ref_set(st, repo.id, "refs/tags/v1", c1, true, NULL) == 0 &&
          mfs_hubd_ref_set(st, repo.id, "refs/tags/v1", c2, true, NULL) == -EEXIST,
          "tag create, then -EEXIST");
    CHECK(mfs_hubd_rev_resolve(st, repo.id, "v1", got, ref, NULL) == 0 && !strcmp(got, c1) &&
          !strcmp(ref, "refs/tags/v1"), "tag resolves");
    CHECK(commit(st, repo.id, "refs/tags/v1", NULL, false, ops, 0, c3, &pr, &err) == -ENOENT,
          "cannot commit to a tag");

    CHECK(mfs_hubd_repo_delete(st, repo.id, &err) == 0 &&
          mfs_hubd_repo_get(st, "model", "org/m", &repo, NULL) == -ENOENT, "delete repo");
    mfs_hubd_store_close(&st);
    mfs_hubd_store_close(&st);
    CHECK(st == NULL, "close twice is harmless");
    return check_done();
}
