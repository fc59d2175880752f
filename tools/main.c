/*
 * tools/main.c - the modelfs command: process-wide set-up, then one
 * subcommand (tools/cli.h).  `mount -t fuse.modelfs` and fstab entries run
 * "modelfs REPO_ID MOUNTPOINT -o opts" through mount.fuse3; an unknown first
 * word is therefore taken as that form of mount.
 */
#include <curl/curl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "compute/backend.h"
#include "tools/cli.h"

static void usage(FILE *f)
{
    fputs("usage: modelfs mount [options] REPO_ID MOUNTPOINT\n"
          "       modelfs umount MOUNTPOINT\n"
          "       modelfs push MOUNTPOINT [-m MESSAGE] [--create-pr]\n"
          "       modelfs run MOUNTPOINT \"prompt\" [--max-new-tokens N] ...\n"
          "       modelfs hub serve --root DIR [--host H] [--port N] [--token-file F]\n"
          "       modelfs hub import SRC_DIR REPO_ID [--root DIR] ...\n"
          "       modelfs cache ls|gc|verify [--cache-dir DIR]\n"
          "       modelfs synth --config FILE --out DIR ...   (benchmark checkpoints)\n"
          "run 'modelfs COMMAND --help' for a command's options\n", f);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        { "mount", mfs_cli_mount },   { "umount", mfs_cli_umount },
        { "push", mfs_cli_push },     { "run", mfs_cli_run },
        { "cache", mfs_cli_cache },   { "synth", mfs_cli_synth },
        { "hub", mfs_hubd_cli },
    };
    size_t i;
    int rc;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    /* Before any thread exists (style.md rule 4). */
    mfs_cpu_process_init(argv);
    sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fputs("modelfs: cannot initialise libcurl\n", stderr);
        return 1;
    }
    for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name))
            break;
    if (i < sizeof(cmds) / sizeof(cmds[0]))
        rc = cmds[i].fn(argc - 1, argv + 1);
    else if (argv[1][0] != '-' && argc >= 3)
        rc = mfs_cli_mount(argc, argv);      /* mount.fuse3 form: argv[0] is "modelfs" */
    else {
        fprintf(stderr, "modelfs: unknown command '%s'\n", argv[1]);
        usage(stderr);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
