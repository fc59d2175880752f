/*
 * tests/check_db.h - looking into a cache directory's modelfs.db from a
 * test, on a connection of its own, as a second process would see it.
 */
#ifndef MFS_TESTS_CHECK_DB_H
#define MFS_TESTS_CHECK_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The first column of the first row of sql on DIR/modelfs.db, or -1. */
static inline int64_t check_db_int(const char *dir, const char *sql)
{
    char path[1100];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    snprintf(path, sizeof(path), "%s/modelfs.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Whether PRAGMA integrity_check on DIR/modelfs.db says "ok". */
static inline bool check_db_integrity_ok(const char *dir)
{
    char path[1100];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    bool ok = false;

    snprintf(path, sizeof(path), "%s/modelfs.db", dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok = !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

#endif
