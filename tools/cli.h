/*
 * tools/cli.h - the modelfs subcommands.  Each takes the arguments after
 * its own name (argv[0] is the subcommand name) and returns the process
 * exit status: 0 on success, 1 on failure (after printing a one-line
 * reason to stderr prefixed "modelfs: "), 2 on a usage error.
 * Called from tools/main.c after process-wide setup (curl_global_init,
 * sqlite3_config), from the main thread only.
 */
#ifndef MFS_TOOLS_CLI_H
#define MFS_TOOLS_CLI_H

int mfs_cli_mount(int argc, char **argv);    /* tools/cli_mount.c: mount, and mount.fuse3 form */
int mfs_cli_umount(int argc, char **argv);   /* tools/cli_mount.c */
int mfs_cli_push(int argc, char **argv);     /* tools/cli_push.c */
int mfs_cli_run(int argc, char **argv);      /* tools/cli_run.c */
int mfs_cli_cache(int argc, char **argv);    /* tools/cli_cache.c: ls | gc | verify */
int mfs_cli_synth(int argc, char **argv);    /* tools/synth.c: benchmark checkpoints */
int mfs_hubd_cli(int argc, char **argv);     /* tools/hubd/cli.c: hub serve | hub import */

#endif
