/* SPDX-License-Identifier: MIT */
/* What the watcher sees in a directory (docs/DESIGN.md "Checkpoints, runs, steps"): which
 * entries are checkpoints, which are run directories to descend into, and the
 * fingerprints that tell a new version and a file still being written. No libuv. */
#ifndef EM_SCAN_H
#define EM_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum em_entry {
  EM_ENTRY_IGNORE,     /* not ours: hidden, temporary, other files */
  EM_ENTRY_RUN_DIR,    /* a directory that may hold checkpoints */
  EM_ENTRY_CKPT_DIR,   /* a step-named directory: one checkpoint */
  EM_ENTRY_CKPT_FILE   /* a weight file outside a checkpoint directory */
} em_entry_t;

/* Names never looked at: starting with '.' (.emerge, .git, editors' files). */
bool em_scan_hidden(const char *name);
/* What an entry is. Checkpoint names starting with "tmp" or ending in ".tmp" or ".part"
 * are still being written and ignored; a run directory may have any name but a hidden
 * one or a staged "name.tmp"/"name.part". */
em_entry_t em_scan_classify(const char *name, bool is_dir);

typedef struct em_fingerprint {
  uint64_t version;    /* hash of (name, size, mtime ns, inode) of every weight file; 0: none */
  uint64_t quiet;      /* hash of (name, size, mtime ns) of every file: changes while written */
  int nweights;        /* weight files found */
} em_fingerprint_t;

/* Fingerprints a checkpoint (directory or file). -ENOENT when it is gone. */
int em_scan_fingerprint(const char *path, bool is_dir, em_fingerprint_t *fp);
/* "%016llx" of a version, for the database. */
void em_scan_version_text(uint64_t version, char out[17]);

#endif
