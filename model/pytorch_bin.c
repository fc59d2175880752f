/*
 * model/pytorch_bin.c - torch.save zip archives read without pickle (see
 * pytorch_bin.h).
 *
 * Zip (APPNOTE 6.3): the end-of-central-directory record (22 bytes + a
 * comment of up to 64 KiB) is found by scanning back from the end of the
 * file; with zip64 its locator sits just before it and points to the
 * zip64 record.  Central entries (46 bytes + name + extra + comment) give
 * each entry's method, sizes and local-header offset (zip64 extra 0x0001
 * when a field is 0xFFFFFFFF); the data follows the 30-byte local header
 * and its own name and extra (torch pads the extra so data is 64-aligned,
 * which is why the local header must be read).
 *
 * Pickle: a stack machine over a small value type.  Values live in an
 * arena freed in one go, so shared references (memo gets) need no
 * counting and hostile graphs cannot make freeing recurse.  Every opcode
 * allocates at most one value and a stack-sized array, so memory is
 * bounded by a multiple of data.pkl's size.
 */
#include "model/pytorch_bin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CD (64u << 20)                  /* bytes of central directory we accept */
#define MAX_MEMO (1u << 24)                 /* memo slots */
#define MAX_STACK (1u << 24)                /* stack depth */
#define MAX_VALUES (4u << 20)               /* values one pickle may make (~400 MB worst case;
                                               a state dict needs ~10 per tensor) */

/* ---- zip ---------------------------------------------------------------- */

struct zent {
    char *name;                             /* owned, NUL-terminated */
    uint16_t flags;                         /* general purpose bits (bit 0: encrypted) */
    uint16_t method;                        /* 0 = stored */
    uint64_t csize;                         /* compressed bytes */
    uint64_t usize;                         /* uncompressed bytes */
    uint64_t lho;                           /* local header offset */
    uint64_t data;                          /* data offset; 0 until the local header is read */
};

struct zip {
    size_t n;
    struct zent *e;                         /* sorted by name */
};

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

struct src {
    const char *name;
    uint64_t size;
    mfs_pt_read_fn read;
    void *ctx;
};

static int read_at(const struct src *s, uint64_t off, size_t len, void *buf, struct mfs_err *err)
{
    ssize_t r;

    if (off > s->size || len > s->size - off)
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': %zu bytes at %llu run past "
                           "the end", s->name, len, (unsigned long long)off);
    r = s->read(s->ctx, off, len, buf, err);
    if (r < 0)
        return (int)r;
    if ((size_t)r != len)
        return mfs_err_set(err, -EIO, "cannot read '%s': %zd of %zu bytes at %llu", s->name, r,
                           len, (unsigned long long)off);
    return 0;
}

static void zip_release(struct zip *z)
{
    size_t i;

    for (i = 0; i < z->n; i++)
        free(z->e[i].name);
    free(z->e);
    memset(z, 0, sizeof(*z));
}

static int cmp_zent(const void *a, const void *b)
{
    return strcmp(((const struct zent *)a)->name, ((const struct zent *)b)->name);
}

static struct zent *zip_find(struct zip *z, const char *name)
{
    struct zent key;

    key.name = (char *)name;
    return bsearch(&key, z->e, z->n, sizeof(key), cmp_zent);
}

/* Locate the central directory.  OUT: *cd_off, *cd_size, *count. */
static int zip_eocd(const struct src *s, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count,
                    struct mfs_err *err)
{
    size_t tail = s->size < 22 + 65535 + 20 ? (size_t)s->size : 22 + 65535 + 20;
    unsigned char z64[56];
    unsigned char *b;
    size_t pos;
    int found = 0;
    int rc;

    if (s->size < 22)
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': too short for a zip",
                           s->name);
    b = malloc(tail);
    if (!b)
        return mfs_err_set(err, -ENOMEM, "out of memory");
    rc = read_at(s, s->size - tail, tail, b, err);
    if (rc < 0)
        goto out_free;
    for (pos = tail - 22 + 1; pos-- > 0;) {
        if (!memcmp(b + pos, "PK\5\6", 4) && pos + 22 + le16(b + pos + 20) <= tail) {
            found = 1;
            break;
        }
    }
    if (!found) {
        rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': not a zip archive (no end "
                         "of central directory)", s->name);
        goto out_free;
    }
    *count = le16(b + pos + 10);
    *cd_size = le32(b + pos + 12);
    *cd_off = le32(b + pos + 16);
    if (*count == 0xffff || *cd_size == 0xffffffffu || *cd_off == 0xffffffffu) {
        uint64_t z64off;

        if (pos < 20 || memcmp(b + pos - 20, "PK\6\7", 4)) {
            rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': zip64 locator missing",
                             s->name);
            goto out_free;
        }
        z64off = le64(b + pos - 20 + 8);
        rc = read_at(s, z64off, sizeof(z64), z64, err);
        if (rc < 0)
            goto out_free;
        if (memcmp(z64, "PK\6\6", 4)) {
            rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': bad zip64 record",
                             s->name);
            goto out_free;
        }
        *count = le64(z64 + 32);
        *cd_size = le64(z64 + 40);
        *cd_off = le64(z64 + 48);
    }
    if (*cd_off > s->size || *cd_size > s->size - *cd_off || *cd_size > MAX_CD ||
        *count > *cd_size / 46)
        rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': central directory out of "
                         "bounds", s->name);
out_free:
    free(b);
    return rc;
}

static int zip_open(const struct src *s, struct zip *z, struct mfs_err *err)
{
    uint64_t cd_off = 0;
    uint64_t cd_size = 0;
    uint64_t count = 0;
    unsigned char *cd;
    size_t pos = 0;
    size_t i;
    int rc;

    memset(z, 0, sizeof(*z));
    rc = zip_eocd(s, &cd_off, &cd_size, &count, err);
    if (rc < 0)
        return rc;
    cd = malloc((size_t)cd_size + 1);
    z->e = calloc((size_t)count + 1, sizeof(*z->e));
    if (!cd || !z->e) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_free_cd;
    }
    rc = read_at(s, cd_off, (size_t)cd_size, cd, err);
    if (rc < 0)
        goto out_free_cd;
    for (i = 0; i < count; i++) {
        struct zent *e = &z->e[i];
        size_t nl;
        size_t xl;
        size_t cl;
        size_t x;

        if (cd_size - pos < 46 || memcmp(cd + pos, "PK\1\2", 4)) {
            rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': bad central directory "
                             "entry %zu", s->name, i);
            goto out_free_cd;
        }
        nl = le16(cd + pos + 28);
        xl = le16(cd + pos + 30);
        cl = le16(cd + pos + 32);
        if (cd_size - pos - 46 < nl + xl + cl) {
            rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': central directory entry "
                             "%zu runs past its end", s->name, i);
            goto out_free_cd;
        }
        e->flags = le16(cd + pos + 8);
        e->method = le16(cd + pos + 10);
        e->csize = le32(cd + pos + 20);
        e->usize = le32(cd + pos + 24);
        e->lho = le32(cd + pos + 42);
        e->name = strndup((const char *)cd + pos + 46, nl);
        if (!e->name) {
            rc = mfs_err_set(err, -ENOMEM, "out of memory");
            goto out_free_cd;
        }
        z->n++;
        /* zip64 extended information: only the fields that overflowed, in order. */
        for (x = 0; x + 4 <= xl;) {
            const unsigned char *f = cd + pos + 46 + nl + x;
            size_t fl = le16(f + 2);
            size_t k = 4;

            if (x + 4 + fl > xl)
                break;
            if (le16(f) == 1) {
                if (e->usize == 0xffffffffu && k + 8 <= 4 + fl) {
                    e->usize = le64(f + k);
                    k += 8;
                }
                if (e->csize == 0xffffffffu && k + 8 <= 4 + fl) {
                    e->csize = le64(f + k);
                    k += 8;
                }
                if (e->lho == 0xffffffffu && k + 8 <= 4 + fl)
                    e->lho = le64(f + k);
            }
            x += 4 + fl;
        }
        pos += 46 + nl + xl + cl;
    }
    qsort(z->e, z->n, sizeof(*z->e), cmp_zent);
out_free_cd:
    free(cd);
    if (rc < 0)
        zip_release(z);
    return rc;
}

/* OUT: e->data, after checking the entry is stored, unencrypted, in bounds. */
static int zip_data(const struct src *s, struct zent *e, struct mfs_err *err)
{
    unsigned char lh[30];
    int rc;

    if (e->data)
        return 0;
    if (e->method != 0 || (e->flags & 1) || e->csize != e->usize)
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': entry '%.64s' is "
                           "compressed or encrypted", s->name, e->name);
    rc = read_at(s, e->lho, sizeof(lh), lh, err);
    if (rc < 0)
        return rc;
    if (memcmp(lh, "PK\3\4", 4))
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': bad local header of "
                           "'%.64s'", s->name, e->name);
    e->data = e->lho + 30 + le16(lh + 26) + le16(lh + 28);
    if (e->data > s->size || e->usize > s->size - e->data) {
        e->data = 0;
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': entry '%.64s' runs past "
                           "the end", s->name, e->name);
    }
    return 0;
}

/* ---- pickle ------------------------------------------------------------- */

enum pk_kind {
    PK_MARK, PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL, PK_STORAGE, PK_TENSOR,
};

enum pk_global {
    G_ORDERED_DICT, G_REBUILD_V2, G_STORAGE,
};

struct pk_val {
    enum pk_kind kind;
    int64_t i;                              /* INT, BOOL; STORAGE: numel */
    char *s;                                /* STR (NUL-terminated); STORAGE: key */
    size_t slen;                            /* bytes of s */
    struct pk_val **items;                  /* TUPLE, LIST; DICT: key, value, key, ... */
    size_t n;                               /* entries used in items */
    size_t cap;
    enum pk_global g;                       /* GLOBAL */
    enum mfs_st_dtype dtype;                /* GLOBAL storage class, STORAGE, TENSOR */
    struct pk_val *storage;                 /* TENSOR */
    int64_t soff;                           /* TENSOR: storage offset, elements */
    int ndim;                               /* TENSOR */
    struct pk_val *sizes;                   /* TENSOR: tuple of ndim non-negative INTs */
    struct pk_val *strides;                 /* TENSOR: tuple of ndim INTs */
    struct pk_val *next;                    /* arena chain */
};

struct vm {
    const char *name;                       /* file, for messages */
    const unsigned char *p;                 /* data.pkl */
    size_t len;
    size_t pos;
    struct pk_val *arena;
    size_t n_values;                        /* values in the arena */
    struct pk_val **stack;
    size_t sp;
    size_t scap;
    struct pk_val **memo;
    size_t nmemo;                           /* slots allocated */
    size_t memo_len;                        /* highest slot set + 1 (MEMOIZE's next) */
    struct pk_val mark;                     /* the one MARK value */
    struct mfs_err *err;
};

static struct pk_val *vnew(struct vm *vm, enum pk_kind k)
{
    struct pk_val *v;

    if (vm->n_values >= MAX_VALUES)
        return NULL;
    v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    vm->n_values++;
    v->kind = k;
    v->next = vm->arena;
    vm->arena = v;
    return v;
}

static void vm_release(struct vm *vm)
{
    while (vm->arena) {
        struct pk_val *v = vm->arena;

        vm->arena = v->next;
        free(v->s);
        free(v->items);
        free(v);
    }
    free(vm->stack);
    free(vm->memo);
}

static int fail(struct vm *vm, const char *why)
{
    return mfs_err_set(vm->err, -EINVAL, "invalid pickle in '%s' at byte %zu: %s", vm->name,
                       vm->pos, why);
}

/* An allocation failed: hostile input when the value cap was hit. */
static int oom(struct vm *vm)
{
    if (vm->n_values >= MAX_VALUES)
        return fail(vm, "too many values");
    return mfs_err_set(vm->err, -ENOMEM, "out of memory");
}

static int push(struct vm *vm, struct pk_val *v)
{
    if (!v)
        return oom(vm);
    if (vm->sp == vm->scap) {
        size_t cap = vm->scap ? 2 * vm->scap : 64;
        struct pk_val **ns;

        if (cap > MAX_STACK)
            return fail(vm, "stack too deep");
        ns = realloc(vm->stack, cap * sizeof(*ns));
        if (!ns)
            return oom(vm);
        vm->stack = ns;
        vm->scap = cap;
    }
    vm->stack[vm->sp++] = v;
    return 0;
}

/* Pop one value that is not a MARK. */
static struct pk_val *pop(struct vm *vm)
{
    if (vm->sp == 0 || vm->stack[vm->sp - 1]->kind == PK_MARK)
        return NULL;
    return vm->stack[--vm->sp];
}

static struct pk_val *top(struct vm *vm)
{
    if (vm->sp == 0 || vm->stack[vm->sp - 1]->kind == PK_MARK)
        return NULL;
    return vm->stack[vm->sp - 1];
}

/* Index of the topmost MARK, or -1. */
static long find_mark(const struct vm *vm)
{
    size_t i;

    for (i = vm->sp; i-- > 0;)
        if (vm->stack[i]->kind == PK_MARK)
            return (long)i;
    return -1;
}

static int need(struct vm *vm, size_t n)
{
    return vm->len - vm->pos >= n ? 0 : fail(vm, "truncated");
}

static int add_items(struct vm *vm, struct pk_val *c, struct pk_val **src, size_t n)
{
    if (c->n + n > c->cap) {
        size_t cap = c->cap ? c->cap : 8;
        struct pk_val **ni;

        while (cap < c->n + n)
            cap *= 2;
        ni = realloc(c->items, cap * sizeof(*ni));
        if (!ni)
            return oom(vm);
        c->items = ni;
        c->cap = cap;
    }
    if (n)
        memcpy(c->items + c->n, src, n * sizeof(*src));
    c->n += n;
    return 0;
}

/* Make a TUPLE/LIST of the n values on top of the stack (popping them). */
static int collect(struct vm *vm, enum pk_kind k, size_t n)
{
    struct pk_val *t;
    size_t i;
    int rc;

    if (vm->sp < n)
        return fail(vm, "stack underflow");
    for (i = vm->sp - n; i < vm->sp; i++)
        if (vm->stack[i]->kind == PK_MARK)
            return fail(vm, "unexpected mark");
    t = vnew(vm, k);
    if (!t)
        return oom(vm);
    rc = add_items(vm, t, vm->stack + vm->sp - n, n);
    if (rc < 0)
        return rc;
    vm->sp -= n;
    return push(vm, t);
}

static int memo_put(struct vm *vm, size_t idx)
{
    struct pk_val *v = top(vm);

    if (!v)
        return fail(vm, "memo put of nothing");
    if (idx >= MAX_MEMO)
        return fail(vm, "memo index too large");
    if (idx >= vm->nmemo) {
        size_t n = idx + 1 > 2 * vm->nmemo ? idx + 1 : 2 * vm->nmemo;
        struct pk_val **nm = realloc(vm->memo, n * sizeof(*nm));

        if (!nm)
            return oom(vm);
        memset(nm + vm->nmemo, 0, (n - vm->nmemo) * sizeof(*nm));
        vm->memo = nm;
        vm->nmemo = n;
    }
    vm->memo[idx] = v;
    if (idx + 1 > vm->memo_len)
        vm->memo_len = idx + 1;
    return 0;
}

static int memo_get(struct vm *vm, size_t idx)
{
    if (idx >= vm->nmemo || !vm->memo[idx])
        return fail(vm, "memo get of an unset slot");
    return push(vm, vm->memo[idx]);
}

static int push_str(struct vm *vm, size_t n)
{
    struct pk_val *v;
    int rc = need(vm, n);

    if (rc < 0)
        return rc;
    v = vnew(vm, PK_STR);
    if (v)
        v->s = malloc(n + 1);
    if (!v || !v->s)
        return oom(vm);
    memcpy(v->s, vm->p + vm->pos, n);
    v->s[n] = '\0';
    v->slen = n;
    vm->pos += n;
    return push(vm, v);
}

static int push_int(struct vm *vm, int64_t i)
{
    struct pk_val *v = vnew(vm, PK_INT);

    if (v)
        v->i = i;
    return push(vm, v);
}

/* The only callables and classes a state dict needs. */
static int push_global(struct vm *vm, const char *mod, const char *name)
{
    static const struct {
        const char *name;
        enum mfs_st_dtype dtype;
    } storages[] = {
        { "FloatStorage", MFS_ST_F32 },   { "DoubleStorage", MFS_ST_F64 },
        { "HalfStorage", MFS_ST_F16 },    { "BFloat16Storage", MFS_ST_BF16 },
        { "LongStorage", MFS_ST_I64 },    { "IntStorage", MFS_ST_I32 },
        { "ShortStorage", MFS_ST_I16 },   { "CharStorage", MFS_ST_I8 },
        { "ByteStorage", MFS_ST_U8 },     { "BoolStorage", MFS_ST_BOOL },
    };
    struct pk_val *v = vnew(vm, PK_GLOBAL);
    size_t i;

    if (!v)
        return oom(vm);
    if (!strcmp(mod, "collections") && !strcmp(name, "OrderedDict")) {
        v->g = G_ORDERED_DICT;
        return push(vm, v);
    }
    if (!strcmp(mod, "torch._utils") && !strcmp(name, "_rebuild_tensor_v2")) {
        v->g = G_REBUILD_V2;
        return push(vm, v);
    }
    for (i = 0; !strcmp(mod, "torch") && i < sizeof(storages) / sizeof(storages[0]); i++) {
        if (!strcmp(name, storages[i].name)) {
            v->g = G_STORAGE;
            v->dtype = storages[i].dtype;
            return push(vm, v);
        }
    }
    return mfs_err_set(vm->err, -EINVAL, "invalid pickle in '%s': unsupported pickle global "
                       "'%.64s.%.64s'", vm->name, mod, name);
}

static int op_global(struct vm *vm)
{
    const char *mod = (const char *)vm->p + vm->pos;
    const char *nl1 = memchr(mod, '\n', vm->len - vm->pos);
    const char *name;
    const char *nl2;
    char m[128];
    char n[128];

    if (!nl1)
        return fail(vm, "truncated GLOBAL");
    name = nl1 + 1;
    nl2 = memchr(name, '\n', (size_t)((const char *)vm->p + vm->len - name));
    if (!nl2 || nl1 - mod >= (long)sizeof(m) || nl2 - name >= (long)sizeof(n))
        return fail(vm, "bad GLOBAL");
    memcpy(m, mod, (size_t)(nl1 - mod));
    m[nl1 - mod] = '\0';
    memcpy(n, name, (size_t)(nl2 - name));
    n[nl2 - name] = '\0';
    vm->pos = (size_t)(nl2 + 1 - (const char *)vm->p);
    return push_global(vm, m, n);
}

/* BINPERSID: ('storage', <class>, key, location, numel) -> STORAGE. */
static int op_persid(struct vm *vm)
{
    struct pk_val *pid = pop(vm);
    struct pk_val *st;

    if (!pid || pid->kind != PK_TUPLE || pid->n < 5 || pid->items[0]->kind != PK_STR ||
        strcmp(pid->items[0]->s, "storage") || pid->items[1]->kind != PK_GLOBAL ||
        pid->items[1]->g != G_STORAGE || pid->items[2]->kind != PK_STR ||
        pid->items[4]->kind != PK_INT || pid->items[4]->i < 0)
        return fail(vm, "persistent id is not a storage record");
    st = vnew(vm, PK_STORAGE);
    if (st)
        st->s = strdup(pid->items[2]->s);
    if (!st || !st->s)
        return oom(vm);
    st->dtype = pid->items[1]->dtype;
    st->i = pid->items[4]->i;
    return push(vm, st);
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]) -> TENSOR; OrderedDict() -> DICT. */
static int op_reduce(struct vm *vm)
{
    struct pk_val *args = pop(vm);
    struct pk_val *fn = pop(vm);
    struct pk_val *t;
    struct pk_val *size;
    struct pk_val *stride;
    size_t i;

    if (!args || !fn || args->kind != PK_TUPLE || fn->kind != PK_GLOBAL)
        return fail(vm, "REDUCE of something that is not a known callable");
    if (fn->g == G_ORDERED_DICT) {
        if (args->n != 0)
            return fail(vm, "OrderedDict with arguments");
        return push(vm, vnew(vm, PK_DICT));
    }
    if (fn->g != G_REBUILD_V2 || args->n < 4)
        return fail(vm, "REDUCE of a storage class");
    size = args->items[2];
    stride = args->items[3];
    if (args->items[0]->kind != PK_STORAGE || args->items[1]->kind != PK_INT ||
        args->items[1]->i < 0 || size->kind != PK_TUPLE || stride->kind != PK_TUPLE ||
        size->n != stride->n || size->n > MFS_ST_MAX_DIMS)
        return fail(vm, "bad _rebuild_tensor_v2 arguments");
    t = vnew(vm, PK_TENSOR);
    if (!t)
        return oom(vm);
    t->storage = args->items[0];
    t->dtype = t->storage->dtype;
    t->soff = args->items[1]->i;
    t->ndim = (int)size->n;
    for (i = 0; i < size->n; i++) {
        if (size->items[i]->kind != PK_INT || stride->items[i]->kind != PK_INT ||
            size->items[i]->i < 0)
            return fail(vm, "bad tensor size or stride");
    }
    t->sizes = size;
    t->strides = stride;
    return push(vm, t);
}

static int op_setitems(struct vm *vm, long mark)
{
    size_t from = mark < 0 ? vm->sp - 2 : (size_t)mark + 1;
    struct pk_val *d;
    int rc;

    if ((mark < 0 && vm->sp < 3) || (mark >= 0 && (size_t)mark < 1))
        return fail(vm, "stack underflow");
    if ((vm->sp - from) % 2)
        return fail(vm, "odd number of dict items");
    d = vm->stack[mark < 0 ? vm->sp - 3 : (size_t)mark - 1];
    if (d->kind != PK_DICT)
        return fail(vm, "SETITEMS on a non-dict");
    rc = add_items(vm, d, vm->stack + from, vm->sp - from);
    if (rc < 0)
        return rc;
    vm->sp = mark < 0 ? vm->sp - 2 : (size_t)mark;
    return 0;
}

static int op_appends(struct vm *vm, long mark)
{
    size_t from = mark < 0 ? vm->sp - 1 : (size_t)mark + 1;
    struct pk_val *l;
    int rc;

    if ((mark < 0 && vm->sp < 2) || (mark >= 0 && (size_t)mark < 1))
        return fail(vm, "stack underflow");
    l = vm->stack[mark < 0 ? vm->sp - 2 : (size_t)mark - 1];
    if (l->kind != PK_LIST)
        return fail(vm, "APPENDS on a non-list");
    rc = add_items(vm, l, vm->stack + from, vm->sp - from);
    if (rc < 0)
        return rc;
    vm->sp = mark < 0 ? vm->sp - 1 : (size_t)mark;
    return 0;
}

/* Run data.pkl.  OUT: *root, the value STOP returns. */
static int vm_run(struct vm *vm, struct pk_val **root)
{
    int rc = 0;

    vm->mark.kind = PK_MARK;
    while (rc == 0) {
        unsigned op;
        long m;

        if (vm->pos >= vm->len)
            return fail(vm, "no STOP");
        op = vm->p[vm->pos++];
        switch (op) {
        case 0x80:                              /* PROTO */
            rc = need(vm, 1);
            if (rc == 0 && (vm->p[vm->pos] < 2 || vm->p[vm->pos] > 5))
                rc = fail(vm, "unsupported protocol");
            vm->pos++;
            break;
        case 0x95:                              /* FRAME: a hint only */
            rc = need(vm, 8);
            vm->pos += 8;
            break;
        case '.':                               /* STOP */
            *root = pop(vm);
            return *root ? 0 : fail(vm, "STOP with an empty stack");
        case '(':
            rc = push(vm, &vm->mark);
            break;
        case '0':                               /* POP */
            rc = pop(vm) ? 0 : fail(vm, "POP of nothing");
            break;
        case '1':                               /* POP_MARK */
            m = find_mark(vm);
            if (m < 0)
                rc = fail(vm, "no mark");
            else
                vm->sp = (size_t)m;
            break;
        case 'c':
            rc = op_global(vm);
            break;
        case 0x93: {                            /* STACK_GLOBAL */
            struct pk_val *name = pop(vm);
            struct pk_val *mod = pop(vm);

            if (!name || !mod || name->kind != PK_STR || mod->kind != PK_STR)
                rc = fail(vm, "bad STACK_GLOBAL");
            else
                rc = push_global(vm, mod->s, name->s);
            break;
        }
        case 'q':
            rc = need(vm, 1);
            rc = rc ? rc : memo_put(vm, vm->p[vm->pos++]);
            break;
        case 'r':
            rc = need(vm, 4);
            rc = rc ? rc : memo_put(vm, le32(vm->p + vm->pos));
            vm->pos += 4;
            break;
        case 0x94:                              /* MEMOIZE */
            rc = memo_put(vm, vm->memo_len);
            break;
        case 'h':
            rc = need(vm, 1);
            rc = rc ? rc : memo_get(vm, vm->p[vm->pos++]);
            break;
        case 'j':
            rc = need(vm, 4);
            rc = rc ? rc : memo_get(vm, le32(vm->p + vm->pos));
            vm->pos += 4;
            break;
        case ')':
            rc = collect(vm, PK_TUPLE, 0);
            break;
        case 0x85: case 0x86: case 0x87:        /* TUPLE1..3 */
            rc = collect(vm, PK_TUPLE, op - 0x84);
            break;
        case 't': case 'l':                     /* TUPLE, LIST from the mark */
            m = find_mark(vm);
            if (m < 0) {
                rc = fail(vm, "no mark");
                break;
            }
            rc = collect(vm, op == 't' ? PK_TUPLE : PK_LIST, vm->sp - (size_t)m - 1);
            if (rc == 0) {
                vm->stack[m] = vm->stack[vm->sp - 1];
                vm->sp = (size_t)m + 1;
            }
            break;
        case ']':
            rc = push(vm, vnew(vm, PK_LIST));
            break;
        case 'a':
            rc = op_appends(vm, -1);
            break;
        case 'e':
            m = find_mark(vm);
            rc = m < 0 ? fail(vm, "no mark") : op_appends(vm, m);
            break;
        case '}':
            rc = push(vm, vnew(vm, PK_DICT));
            break;
        case 'd':                               /* DICT from the mark */
            m = find_mark(vm);
            if (m < 0) {
                rc = fail(vm, "no mark");
                break;
            }
            if ((vm->sp - (size_t)m - 1) % 2) {
                rc = fail(vm, "odd number of dict items");
                break;
            }
            rc = collect(vm, PK_DICT, vm->sp - (size_t)m - 1);
            if (rc == 0) {
                vm->stack[m] = vm->stack[vm->sp - 1];
                vm->sp = (size_t)m + 1;
            }
            break;
        case 's':
            rc = op_setitems(vm, -1);
            break;
        case 'u':
            m = find_mark(vm);
            rc = m < 0 ? fail(vm, "no mark") : op_setitems(vm, m);
            break;
        case 'K':
            rc = need(vm, 1);
            rc = rc ? rc : push_int(vm, vm->p[vm->pos++]);
            break;
        case 'M':
            rc = need(vm, 2);
            rc = rc ? rc : push_int(vm, le16(vm->p + vm->pos));
            vm->pos += 2;
            break;
        case 'J':
            rc = need(vm, 4);
            rc = rc ? rc : push_int(vm, (int32_t)le32(vm->p + vm->pos));
            vm->pos += 4;
            break;
        case 0x8a: {                            /* LONG1: n-byte two's complement */
            uint64_t u = 0;
            size_t n;
            size_t k;

            rc = need(vm, 1);
            if (rc < 0)
                break;
            n = vm->p[vm->pos++];
            if (n > 8) {
                rc = fail(vm, "integer wider than 64 bits");
                break;
            }
            rc = need(vm, n);
            if (rc < 0)
                break;
            for (k = 0; k < n; k++)
                u |= (uint64_t)vm->p[vm->pos + k] << (8 * k);
            if (n > 0 && n < 8 && (vm->p[vm->pos + n - 1] & 0x80))
                u |= ~0ull << (8 * n);
            vm->pos += n;
            rc = push_int(vm, (int64_t)u);
            break;
        }
        case 'X':
            rc = need(vm, 4);
            vm->pos += rc ? 0 : 4;
            rc = rc ? rc : push_str(vm, le32(vm->p + vm->pos - 4));
            break;
        case 0x8c: case 'U':                    /* SHORT_BINUNICODE, SHORT_BINSTRING */
            rc = need(vm, 1);
            vm->pos += rc ? 0 : 1;
            rc = rc ? rc : push_str(vm, vm->p[vm->pos - 1]);
            break;
        case 'N':
            rc = push(vm, vnew(vm, PK_NONE));
            break;
        case 0x88: case 0x89: {                 /* NEWTRUE, NEWFALSE */
            struct pk_val *b = vnew(vm, PK_BOOL);

            if (b)
                b->i = op == 0x88;
            rc = push(vm, b);
            break;
        }
        case 'G':                               /* BINFLOAT: value unused */
            rc = need(vm, 8);
            vm->pos += rc ? 0 : 8;
            rc = rc ? rc : push(vm, vnew(vm, PK_FLOAT));
            break;
        case 'Q':
            rc = op_persid(vm);
            break;
        case 'R':
            rc = op_reduce(vm);
            break;
        case 'b': {                             /* BUILD: state of an OrderedDict/tensor */
            struct pk_val *state = pop(vm);
            struct pk_val *obj = top(vm);

            if (!state || !obj || (obj->kind != PK_DICT && obj->kind != PK_TENSOR))
                rc = fail(vm, "BUILD on an unsupported object");
            break;
        }
        default: {
            char why[64];

            vm->pos--;
            snprintf(why, sizeof(why), "unsupported pickle opcode 0x%02x", op);
            rc = fail(vm, why);
        }
        }
    }
    return rc;
}

/* ---- the state dict ----------------------------------------------------- */

void mfs_pt_release(struct mfs_pt_file *f)
{
    size_t i;

    if (!f)
        return;
    for (i = 0; i < f->n_tensors; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].storage_key);
    }
    free(f->tensors);
    for (i = 0; i < f->n_skipped; i++)
        free(f->skipped[i]);
    free(f->skipped);
    free(f->prefix);
    memset(f, 0, sizeof(*f));
}

static int skip(struct mfs_pt_file *f, const char *name, const char *why)
{
    char line[320];

    snprintf(line, sizeof(line), "'%.200s': %s", name, why);
    f->skipped[f->n_skipped] = strdup(line);
    if (!f->skipped[f->n_skipped])
        return -ENOMEM;
    f->n_skipped++;
    return 0;
}

/* The archive's top folder: the folder of the one "<x>/data.pkl". */
static int find_prefix(const struct src *s, struct zip *z, struct mfs_pt_file *f,
                       struct mfs_err *err)
{
    size_t i;

    for (i = 0; i < z->n; i++) {
        const char *n = z->e[i].name;
        const char *slash = strchr(n, '/');

        if (slash && !strcmp(slash + 1, "data.pkl")) {
            f->prefix = strndup(n, (size_t)(slash + 1 - n));
            return f->prefix ? 0 : mfs_err_set(err, -ENOMEM, "out of memory");
        }
    }
    return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': no <folder>/data.pkl in the "
                       "zip", s->name);
}

/* Check a tensor against its storage entry and place it.  Returns 1 when
 * kept, 0 when skipped (non-contiguous), or a negative errno. */
static int place(const struct src *s, struct zip *z, struct mfs_pt_file *f,
                 const struct pk_val *key, const struct pk_val *v, struct mfs_err *err)
{
    struct mfs_pt_tensor *t = &f->tensors[f->n_tensors];
    unsigned bytes = mfs_st_dtype_bits(v->dtype) / 8;
    int64_t shape[MFS_ST_MAX_DIMS];
    int64_t stride[MFS_ST_MAX_DIMS];
    uint64_t numel = 1;
    int64_t expect = 1;
    char entry[512];
    struct zent *e;
    size_t i;
    int k;
    int rc;

    for (k = 0; k < v->ndim; k++) {
        shape[k] = v->sizes->items[k]->i;
        stride[k] = v->strides->items[k]->i;
    }
    for (k = 0; k < v->ndim; k++) {
        if (shape[k] && numel > UINT64_MAX / 16 / (uint64_t)shape[k])
            return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': '%.64s' is too large",
                               s->name, key->s);
        numel *= (uint64_t)shape[k];
    }
    for (k = v->ndim - 1; numel && k >= 0; k--) {
        if (shape[k] != 1 && stride[k] != expect)
            return skip(f, key->s, "not contiguous") < 0 ? -ENOMEM : 0;
        expect *= shape[k];
    }
    if ((uint64_t)v->soff > (uint64_t)v->storage->i ||
        numel > (uint64_t)v->storage->i - (uint64_t)v->soff)
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': '%.64s' lies outside its "
                           "storage", s->name, key->s);
    snprintf(entry, sizeof(entry), "%sdata/%s", f->prefix, v->storage->s);
    e = zip_find(z, entry);
    if (!e)
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': storage '%.64s' of "
                           "'%.64s' is not in the zip", s->name, v->storage->s, key->s);
    rc = zip_data(s, e, err);
    if (rc < 0)
        return rc;
    if ((uint64_t)v->storage->i > e->usize / bytes)
        return mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': storage '%.64s' is "
                           "smaller than %lld elements", s->name, v->storage->s,
                           (long long)v->storage->i);
    t->name = strdup(key->s);
    t->storage_key = strdup(v->storage->s);
    if (!t->name || !t->storage_key) {
        free(t->name);
        free(t->storage_key);
        return mfs_err_set(err, -ENOMEM, "out of memory");
    }
    t->dtype = v->dtype;
    t->ndim = v->ndim;
    for (k = 0; k < v->ndim; k++) {
        t->shape[k] = (uint64_t)shape[k];
        t->stride[k] = stride[k];
    }
    t->storage_numel = (uint64_t)v->storage->i;
    t->storage_offset = (uint64_t)v->soff;
    t->offset = e->data + (uint64_t)v->soff * bytes;
    t->nbytes = numel * bytes;
    t->shares_with = -1;
    for (i = 0; i < f->n_tensors; i++) {
        if (!strcmp(f->tensors[i].storage_key, t->storage_key)) {
            t->shares_with = (long)i;
            break;
        }
    }
    f->n_tensors++;
    return 1;
}

struct keyref {
    const char *s;
    size_t i;                               /* pair index */
};

static int cmp_keyref(const void *a, const void *b)
{
    const struct keyref *x = a;
    const struct keyref *y = b;
    int c = strcmp(x->s, y->s);

    return c ? c : (x->i < y->i ? -1 : x->i > y->i);
}

/* OUT: *dupp[k] = 1 when pair k's key comes again later: a repeated key
 * keeps the later value, as a Python dict does.  -ENOMEM. */
static int mark_repeats(const struct pk_val *d, char **dupp)
{
    size_t np = d->n / 2;
    struct keyref *r = calloc(np + 1, sizeof(*r));
    char *dup = calloc(np + 1, 1);
    size_t n = 0;
    size_t k;

    *dupp = dup;
    if (!r || !dup) {
        free(r);
        return -ENOMEM;
    }
    for (k = 0; k < np; k++) {
        if (d->items[2 * k]->kind == PK_STR) {
            r[n].s = d->items[2 * k]->s;
            r[n].i = k;
            n++;
        }
    }
    qsort(r, n, sizeof(*r), cmp_keyref);
    for (k = 0; k + 1 < n; k++)
        if (!strcmp(r[k].s, r[k + 1].s))
            dup[r[k].i] = 1;
    free(r);
    return 0;
}

int mfs_pt_open(const char *name, uint64_t size, mfs_pt_read_fn read, void *ctx,
                struct mfs_pt_file *f, struct mfs_err *err)
{
    struct src s = { name ? name : "", size, read, ctx };
    struct vm vm;
    struct zip z;
    struct zent *pkl;
    struct pk_val *root = NULL;
    unsigned char *data = NULL;
    char *dup = NULL;
    char entry[512];
    size_t i;
    int rc;

    memset(f, 0, sizeof(*f));
    memset(&vm, 0, sizeof(vm));
    rc = zip_open(&s, &z, err);
    if (rc < 0)
        return rc;
    rc = find_prefix(&s, &z, f, err);
    if (rc < 0)
        goto out_release_zip;
    snprintf(entry, sizeof(entry), "%sdata.pkl", f->prefix);
    pkl = zip_find(&z, entry);
    rc = pkl ? zip_data(&s, pkl, err) : -EINVAL;
    if (rc < 0)
        goto out_release_zip;
    if (pkl->usize > MFS_PT_MAX_PICKLE) {
        rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': data.pkl is larger than %u "
                         "bytes", s.name, MFS_PT_MAX_PICKLE);
        goto out_release_zip;
    }
    data = malloc((size_t)pkl->usize + 1);
    if (!data) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_release_zip;
    }
    rc = read_at(&s, pkl->data, (size_t)pkl->usize, data, err);
    if (rc < 0)
        goto out_free_data;
    vm.name = s.name;
    vm.p = data;
    vm.len = (size_t)pkl->usize;
    vm.err = err;
    rc = vm_run(&vm, &root);
    if (rc < 0)
        goto out_release_vm;
    if (root->kind != PK_DICT) {
        rc = mfs_err_set(err, -EINVAL, "invalid pytorch file '%s': the pickle is not a state "
                         "dict", s.name);
        goto out_release_vm;
    }
    f->tensors = calloc(root->n / 2 + 1, sizeof(*f->tensors));
    f->skipped = calloc(root->n / 2 + 1, sizeof(*f->skipped));
    if (!f->tensors || !f->skipped) {
        rc = mfs_err_set(err, -ENOMEM, "out of memory");
        goto out_release_vm;
    }
    rc = mark_repeats(root, &dup);
    if (rc < 0) {
        rc = mfs_err_set(err, rc, "out of memory");
        goto out_release_vm;
    }
    for (i = 0; i + 1 < root->n; i += 2) {
        const struct pk_val *key = root->items[i];
        const struct pk_val *v = root->items[i + 1];

        if (key->kind != PK_STR || strlen(key->s) != key->slen)
            rc = skip(f, "?", "key is not a string");
        else if (v->kind != PK_TENSOR)
            rc = skip(f, key->s, "not a tensor");
        else
            rc = dup[i / 2] ? 0 : place(&s, &z, f, key, v, err);
        if (rc < 0)
            goto out_release_vm;
    }
    rc = 0;
out_release_vm:
    free(dup);
    vm_release(&vm);
out_free_data:
    free(data);
out_release_zip:
    zip_release(&z);
    if (rc == -EINVAL && err && !err->msg[0])
        mfs_err_set(err, rc, "invalid pytorch file '%s'", s.name);
    if (rc < 0)
        mfs_pt_release(f);
    return rc;
}
