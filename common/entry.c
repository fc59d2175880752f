/* common/entry.c - see entry.h. */
#include "entry.h"

#include <stdlib.h>

void mfs_entries_free(struct mfs_entry *entries, size_t n)
{
    size_t i;

    if (!entries)
        return;
    for (i = 0; i < n; i++)
        free(entries[i].path);
    free(entries);
}
