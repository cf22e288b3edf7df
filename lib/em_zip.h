/* SPDX-License-Identifier: MIT */
/* The zip archives torch.save writes (torch >= 1.6), read with Debian's minizip through
 * our own descriptor. Opening checks what makes an archive complete, the zip analogue of
 * the safetensors size equation: the end-of-central-directory record is found, the
 * central directory parses, and every entry's data lies inside the file. Entries torch
 * writes are stored, not compressed, so a tensor's bytes are read in place with pread at
 * the offset recorded here: faithful mode reads only the sampled rows. */
#ifndef EM_ZIP_H
#define EM_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <unzip.h>

#include "em_hash.h"
#include "emerge.h"

#define EM_ZIP_MAX_ENTRIES (1u << 20)

typedef struct em_zip_entry {
  char *name;
  unz64_file_pos where;       /* minizip's position of its directory record */
  uint64_t offset;            /* of its data in the file */
  uint64_t size;              /* of its data as stored */
  uint64_t uncompressed;
  bool stored;                /* not compressed: readable in place */
} em_zip_entry_t;

typedef struct em_zip {
  int fd;                     /* the caller's; not closed here */
  uint64_t file_size;
  em_zip_entry_t *entries;
  size_t n;
  em_hash_t by_name;           /* entries by name */
  void *unz;                  /* minizip's handle, until em_zip_close */
  struct em_zip_io *io;
} em_zip_t;

/* Reads the central directory of the archive open on fd (path names it in messages).
 * -EINVAL when it is not a complete zip (the message says which check failed). */
int em_zip_open(int fd, const char *path, em_zip_t *out, em_err_t *err);
void em_zip_close(em_zip_t *z);
const em_zip_entry_t *em_zip_find(const em_zip_t *z, const char *name);
/* The whole of entry e (stored or deflated), at most max bytes, into a malloc'ed buffer
 * (NUL-terminated, for text entries). */
int em_zip_read_all(em_zip_t *z, const em_zip_entry_t *e, size_t max, char **out, size_t *len, em_err_t *err);

#endif
