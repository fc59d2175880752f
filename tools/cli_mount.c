/* tools/cli_mount.c - stub until its owner lands it. */
#include <stdio.h>

#include "tools/cli.h"

int mfs_cli_mount(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "modelfs: '%s' is not implemented yet\n", argv[0]);
    return 1;
}

int mfs_cli_umount(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "modelfs: '%s' is not implemented yet\n", argv[0]);
    return 1;
}
