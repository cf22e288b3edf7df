/* SPDX-License-Identifier: MIT */
#include "em_db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

static const char *const schema_v1 =
  "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
  "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, dir TEXT NOT NULL,"
  "  next_arrival INTEGER NOT NULL DEFAULT 0);"
  "CREATE TABLE IF NOT EXISTS checkpoints(id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
  "  path TEXT NOT NULL, step INTEGER NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, error TEXT,"
  "  updated REAL NOT NULL, UNIQUE(run_id, path));"
  "CREATE TABLE IF NOT EXISTS results(id INTEGER PRIMARY KEY, checkpoint_id INTEGER NOT NULL"
  "  REFERENCES checkpoints(id), version TEXT NOT NULL, seq INTEGER UNIQUE NOT NULL, alpha0 REAL NOT NULL,"
  "  width REAL NOT NULL, emergence REAL, json TEXT NOT NULL, ts REAL NOT NULL, UNIQUE(checkpoint_id, version));"
  "CREATE TABLE IF NOT EXISTS alerts(id INTEGER PRIMARY KEY, seq INTEGER UNIQUE NOT NULL, run_id INTEGER NOT NULL,"
  "  rule TEXT NOT NULL, step INTEGER, json TEXT NOT NULL, ts REAL NOT NULL);"
  "CREATE INDEX IF NOT EXISTS results_seq ON results(seq);"
  "INSERT OR IGNORE INTO meta(key, value) VALUES('last_seq', 0);";

/* v2: early-stop rules. An alert knows its condition and whether its deliveries (stop
 * file, exec) finished; a rule remembers from which seq it judges. */
static const char *const schema_v2 =
  "ALTER TABLE alerts ADD COLUMN condition TEXT;"
  "ALTER TABLE alerts ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;"
  "UPDATE alerts SET delivered = 1;" /* rows from before deliveries existed are not redone */
  "CREATE INDEX IF NOT EXISTS alerts_rule ON alerts(run_id, rule, condition);"
  "CREATE TABLE IF NOT EXISTS rules(name TEXT PRIMARY KEY, spec TEXT NOT NULL, since_seq INTEGER NOT NULL,"
  "  keep INTEGER NOT NULL DEFAULT 1);";

/* v3: uncertainty. E's standard error and the mode each result was measured in;
 * results from before know their mode from their params, not their SE (left NULL). */
static const char *const schema_v3 =
  "ALTER TABLE results ADD COLUMN emergence_se REAL;"
  "ALTER TABLE results ADD COLUMN mode TEXT;"
  "UPDATE results SET mode = CASE WHEN json_extract(json, '$.params.full') THEN 'full' ELSE 'sampled' END;";

/* v4: steps as the protocol says. A checkpoint nothing names a step for keeps its
 * arrival number in step (the run's order) with named = 0, and is published with
 * "step": null, "arrival": n. Rows from before were published with the number as their
 * step and keep it. */
static const char *const schema_v4 = "ALTER TABLE checkpoints ADD COLUMN named INTEGER NOT NULL DEFAULT 1;";

/* v5: checkpoint events. A checkpoint that fails, vanishes, is non-finite or unsupported
 * gets a seq of the daemon-wide sequence and its event object (PROTOCOL.md "checkpoint"),
 * so `since` and the HTTP event stream replay it beside results and alerts. */
static const char *const schema_v5 =
  "ALTER TABLE checkpoints ADD COLUMN seq INTEGER;"
  "ALTER TABLE checkpoints ADD COLUMN event TEXT;"
  "CREATE INDEX IF NOT EXISTS checkpoints_seq ON checkpoints(seq);";

/* v6: judging that does not grow with the history (docs/DESIGN.md "Rules"). rule_state
 * keeps each rule's running state over each run's results, so a result after the run's
 * last is judged from it; a full replay (any other result) reads the run's points from
 * results_judged alone, an index holding every value the rules judge (the SEs become
 * columns for it: read from a row, any column after json walks its overflow pages), in
 * step order through checkpoints_step, which also finds a run's baseline and newest
 * results without reading all of them. alerts_recorded (for alerts_rule) finds what a
 * rule recorded, each condition's latest step, without reading all its alerts. */
#define INDEXES_V6                                                                                     \
  "CREATE INDEX IF NOT EXISTS checkpoints_step ON checkpoints(run_id, step);"                          \
  "CREATE INDEX IF NOT EXISTS results_judged ON results(checkpoint_id, version, seq, emergence, alpha0, width," \
  "  emergence_se, alpha0_se, width_se);"                                                             \
  "CREATE INDEX IF NOT EXISTS alerts_recorded ON alerts(run_id, rule, condition, step, seq);"
static const char *const schema_v6 =
  "ALTER TABLE results ADD COLUMN alpha0_se REAL;"
  "ALTER TABLE results ADD COLUMN width_se REAL;"
  "UPDATE results SET alpha0_se = json_extract(json, '$.alpha0_se'), width_se = json_extract(json, '$.width_se');"
  "CREATE TABLE IF NOT EXISTS rule_state(run_id INTEGER NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,"
  "  PRIMARY KEY(run_id, rule)) WITHOUT ROWID;"
  "DROP INDEX IF EXISTS alerts_rule;" INDEXES_V6;
/* ...and at every open for writing, should a hand have dropped one: the judged query names
 * results_judged, and a statement naming a missing index does not prepare, so every
 * result's transaction would fail. */
static const char *const indexes = INDEXES_V6;

static const char *const migrations[] = {NULL, schema_v1, schema_v2, schema_v3, schema_v4, schema_v5,
                                         schema_v6}; /* keyed on version */

/* Each migration in its own transaction, with the version it reaches. */
static int migrate(em_db_t *db, char *err, size_t errlen)
{
  int rc = SQLITE_OK;
  int version = (int)em_sql_int(em_sql_prepare(db, "PRAGMA user_version", NULL), 0, &rc);
  if (rc == SQLITE_OK && version > EM_SCHEMA_VERSION) {
    snprintf(err, errlen, "database %s: schema version %d is newer than this emerge (%d)", db->path, version,
             EM_SCHEMA_VERSION);
    return SQLITE_ERROR;
  }
  for (int v = version + 1; rc == SQLITE_OK && v <= EM_SCHEMA_VERSION; v++) {
    char bump[160];
    snprintf(bump, sizeof(bump), "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', %d);"
             "PRAGMA user_version=%d; COMMIT", v, v);
    rc = em_sql_exec(db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
      rc = em_sql_exec(db, migrations[v]);
    if (rc == SQLITE_OK)
      rc = em_sql_exec(db, bump);
    if (rc != SQLITE_OK) { /* say why before ROLLBACK puts its own message there */
      snprintf(err, errlen, "database %s: migrating to schema %d: %s", db->path, v, sqlite3_errmsg(db->h));
      em_sql_exec(db, "ROLLBACK");
    }
  }
  return rc;
}

/* The database and its WAL, shared-memory and journal files must be plain files of their
 * own: a symlink or a second hard link planted beside them (the default location is in
 * the watched tree) would make a daemon running as root write elsewhere (docs/SECURITY.md). */
static int check_db_files(const char *path, char *err, size_t errlen)
{
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof(suffix) / sizeof(*suffix); i++) {
    char f[4200];
    struct stat st;
    snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
    if (lstat(f, &st) != 0)
      continue;
    const char *why = S_ISLNK(st.st_mode) ? "is a symbolic link" : !S_ISREG(st.st_mode) ? "is not a regular file"
                      : st.st_nlink > 1 ? "has more than one hard link"
                      : st.st_uid != geteuid() ? "belongs to another user"
                      : st.st_mode & (S_IWGRP | S_IWOTH) ? "is writable by other users" : NULL;
    if (why) {
      snprintf(err, errlen, "database file %s %s: refusing to open it (docs/SECURITY.md; use --db)", f, why);
      return -EPERM;
    }
  }
  return 0;
}

/* Why a directory holding the database, or that directory's parent, is not safe to
 * write a database in, or NULL: whoever else can write there (or owns it) can swap the
 * files between our checks and SQLite's opens, which go by name. As ssh and sudo judge
 * their files: owned by us or root, and writable by no one else unless sticky. */
static const char *unsafe_dir(const struct stat *st, char *why, size_t len)
{
  if (S_ISLNK(st->st_mode))
    snprintf(why, len, "is a symbolic link");
  else if (st->st_uid != geteuid() && st->st_uid != 0)
    snprintf(why, len, "is owned by uid %u, not by this process (uid %u) or root", (unsigned)st->st_uid,
             (unsigned)geteuid());
  else if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
    snprintf(why, len, "is writable by %s", st->st_mode & S_IWOTH ? "every user" : "its group");
  else
    return NULL;
  return why;
}

static int check_db_dir(const char *path, char *err, size_t errlen)
{
  char dir[4200], why[128];
  snprintf(dir, sizeof(dir), "%s", path);
  for (int level = 0; level < 2; level++) { /* the database's directory, then its parent */
    char *slash = strrchr(dir, '/');
    if (slash == dir)
      slash[1] = 0;
    else if (slash)
      *slash = 0;
    else
      snprintf(dir, sizeof(dir), ".");
    struct stat st;
    if (lstat(dir, &st) != 0)
      return 0; /* SQLite reports a missing directory */
    if (unsafe_dir(&st, why, sizeof(why))) {
      snprintf(err, errlen, "database directory %s %s: another user could replace the database; refusing "
               "it (docs/SECURITY.md; use --db with a directory of the daemon's own)", dir, why);
      return -EPERM;
    }
    if (strcmp(dir, "/") == 0 || strcmp(dir, ".") == 0)
      break;
  }
  return 0;
}

int em_db_open(const char *path, bool write, em_db_t **out, char *err, size_t errlen)
{
  *out = NULL;
  int bad = write ? check_db_dir(path, err, errlen) : 0;
  if (!bad && write)
    bad = check_db_files(path, err, errlen);
  if (bad)
    return bad;
  em_db_t *db = calloc(1, sizeof(*db));
  if (!db || !(db->path = strdup(path))) {
    free(db);
    snprintf(err, errlen, "database %s: out of memory", path);
    return -ENOMEM;
  }
  int flags = write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW : SQLITE_OPEN_READONLY;
  int rc = sqlite3_open_v2(path, &db->h, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_busy_timeout(db->h, write ? 5000 : 2000);
  if (rc == SQLITE_OK && write)
    rc = em_sql_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  err[0] = 0;
  if (rc == SQLITE_OK && write)
    rc = migrate(db, err, errlen);
  if (rc == SQLITE_OK && write)
    rc = em_sql_exec(db, indexes);
  if (rc != SQLITE_OK) {
    if (!err[0])
      snprintf(err, errlen, "database %s: %s", path, db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
    em_db_close(&db);
    return -EIO;
  }
  *out = db;
  return 0;
}

void em_db_close(em_db_t **self_p)
{
  em_db_t *db = *self_p;
  if (!db)
    return;
  em_sql_forget(db);
  sqlite3_close(db->h);
  free(db->path);
  free(db);
  *self_p = NULL;
}

void em_db_resolve(const char *file_or_root, char *out, size_t len)
{
  struct stat st;
  if (stat(file_or_root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(out, len, "%s", file_or_root);
    return;
  }
  /* a watch root holds it in .emerge/; any other directory is the database's own */
  snprintf(out, len, "%s/" EM_DB_DIR "/" EM_DB_FILE, file_or_root);
  if (stat(out, &st) != 0)
    snprintf(out, len, "%s/" EM_DB_FILE, file_or_root);
}

bool em_db_network_fs(const char *path)
{
  struct statfs sf;
  if (statfs(path, &sf) != 0)
    return false;
  switch ((unsigned long)sf.f_type) {
  case 0x6969:     /* NFS */
  case 0xFF534D42: /* CIFS */
  case 0xFE534D42: /* SMB2 */
  case 0x517B:     /* SMB */
  case 0x65735546: /* FUSE */
  case 0x0BD00BD0: /* Lustre */
  case 0x47504653: /* GPFS */
  case 0x00C36400: /* Ceph */
  case 0x01021997: /* 9p */
    return true;
  default:
    return false;
  }
}

/* mkdir -p dir. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
    int e = errno;
    snprintf(err, errlen, "database directory %s: %s", tmp, strerror(e));
    return -e;
  }
  struct stat st = {0}; /* ROOT/.emerge is in the watched tree: a directory, not a link */
  if (lstat(tmp, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "database directory %s is %s: refusing to use it (docs/SECURITY.md; use --db)", tmp,
             S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory");
    return -EPERM;
  }
  return 0;
}

int em_db_default_path(const char *watch, char *out, size_t len, bool *network, char *err, size_t errlen)
{
  char dir[4096];
  *network = em_db_network_fs(watch);
  if (*network) { /* WAL is unsafe on network filesystems: keep the database local */
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char *real = realpath(watch, NULL);
    const char *base = real && strrchr(real, '/') ? strrchr(real, '/') + 1 : "root";
    if (state && *state)
      snprintf(dir, sizeof(dir), "%s/emerge", state);
    else
      snprintf(dir, sizeof(dir), "%s/.local/state/emerge", home ? home : "/tmp");
    snprintf(out, len, "%s/%s.db", dir, base);
    free(real);
  } else {
    snprintf(dir, sizeof(dir), "%s/" EM_DB_DIR, watch);
    snprintf(out, len, "%s/" EM_DB_FILE, dir);
  }
  return make_dirs(dir, err, errlen);
}

char *em_db_meta(em_db_t *db, const char *key)
{
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT value FROM meta WHERE key = ?", "t", key);
  char *v = NULL;
  if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    v = strdup((const char *)sqlite3_column_text(st, 0));
  em_sql_done(st);
  return v;
}
