/* SPDX-License-Identifier: MIT */
/* The database as a contract between emerged (the only writer) and its readers (the
 * daemon's API thread, emergectl --db): where it lives, its schema and migrations, and
 * the daemon's own record of itself in `meta`. docs/DESIGN.md "Storage" describes the
 * tables. Nothing here logs or starts threads. */
#ifndef EM_DB_H
#define EM_DB_H

#include <stdbool.h>
#include <stddef.h>

#include "em_sql.h"

#define EM_SCHEMA_VERSION 6
#define EM_DB_DIR ".emerge"       /* inside the watch root (never watched) */
#define EM_DB_FILE "emerge.db"

/* Opens the database at path. write: creates it if missing, WAL, synchronous=NORMAL,
 * migrates to EM_SCHEMA_VERSION (refusing a newer one). Otherwise read-only. Caller owns
 * *out (em_db_close). -EIO with err naming the file and the reason. */
int em_db_open(const char *path, bool write, em_db_t **out, char *err, size_t errlen);
void em_db_close(em_db_t **self_p);

/* A database file; a watch root holding EM_DB_DIR/EM_DB_FILE; or a directory for the
 * database (DIR/EM_DB_FILE): the file's path. */
void em_db_resolve(const char *file_or_root, char *out, size_t len);
/* Where emerged keeps the database of watch root `watch` when --db is not given: inside
 * the root, or under $XDG_STATE_HOME/emerge/ when the root is on a network filesystem
 * (where SQLite's WAL is unsafe; *network says so). Creates the directory. */
int em_db_default_path(const char *watch, char *out, size_t len, bool *network, char *err, size_t errlen);
/* True when path is on NFS, CIFS/SMB, FUSE, Lustre, GPFS, Ceph or 9p. */
bool em_db_network_fs(const char *path);

/* meta(key) as a new string, NULL when absent. */
char *em_db_meta(em_db_t *db, const char *key);

#endif
