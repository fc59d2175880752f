/* common/size.c - see size.h. */
#include "size.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int mfs_size_parse(const char *s, unsigned flags, uint64_t *bytes, struct mfs_err *err)
{
    static const struct { const char *unit; double mult; int binary; } units[] = {
        { "KiB", 1024.0, 1 }, { "MiB", 1048576.0, 1 },
        { "GiB", 1073741824.0, 1 }, { "TiB", 1099511627776.0, 1 },
        { "KB", 1e3, 0 }, { "MB", 1e6, 0 }, { "GB", 1e9, 0 }, { "TB", 1e12, 0 },
    };
    size_t len = s ? strlen(s) : 0;
    char num[64];
    char *end;
    double v;
    size_t i;

    *bytes = 0;
    if (len == 0 || len >= sizeof(num))
        return mfs_err_set(err, -EINVAL, "invalid size '%s'", s ? s : "");
    if (isdigit((unsigned char)s[len - 1])) {
        unsigned long long n;

        errno = 0;
        n = strtoull(s, &end, 10);
        if (errno || *end || s[0] == '-')
            return mfs_err_set(err, -EINVAL, "invalid size '%s'", s);
        *bytes = n;
        return 0;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t ul = strlen(units[i].unit);

        if (len <= ul || strcasecmp(s + len - ul, units[i].unit) != 0)
            continue;
        if (units[i].binary && !(flags & MFS_SIZE_BINARY))
            return mfs_err_set(err, -EINVAL,
                               "invalid size '%s': use decimal units (KB, MB, GB, TB)", s);
        memcpy(num, s, len - ul);
        num[len - ul] = '\0';
        errno = 0;
        v = strtod(num, &end);
        if (errno || *end || end == num || !(v >= 0) || !isfinite(v))
            return mfs_err_set(err, -EINVAL, "invalid size '%s'", s);
        v *= units[i].mult;
        if (v >= 18446744073709551615.0)
            return mfs_err_set(err, -EINVAL, "invalid size '%s': too large", s);
        *bytes = (uint64_t)v;
        return 0;
    }
    return mfs_err_set(err, -EINVAL, "invalid size '%s': unknown unit", s);
}
