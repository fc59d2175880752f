/* tools/synth.c - stub until its owner lands it. */
#include <stdio.h>

#include "tools/cli.h"

int mfs_cli_synth(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "modelfs: '%s' is not implemented yet\n", argv[0]);
    return 1;
}
