/* SPDX-License-Identifier: MIT */
#include "em_zip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unzip.h>

#include "em_err.h"
#include "em_hash.h"

/* ---------------------------------------------------------------- minizip's I/O on our fd */

typedef struct em_zip_io {
  int fd;
  uint64_t pos, size;
  bool failed;
} io_t;

static voidpf io_open(voidpf opaque, const void *name, int mode)
{
  (void)opaque;
  (void)mode;
  return (voidpf)name; /* the io_t passed as the "path" */
}

static uLong io_read(voidpf opaque, voidpf stream, void *buf, uLong size)
{
  (void)opaque;
  io_t *io = stream;
  uLong got = 0;
  while (got < size) {
    ssize_t r = pread(io->fd, (char *)buf + got, size - got, (off_t)(io->pos + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      io->failed = r < 0;
      break;
    }
    got += (uLong)r;
  }
  io->pos += got;
  return got;
}

static uLong io_write(voidpf opaque, voidpf stream, const void *buf, uLong size)
{
  (void)opaque;
  (void)stream;
  (void)buf;
  (void)size;
  return 0; /* read only */
}

static ZPOS64_T io_tell(voidpf opaque, voidpf stream)
{
  (void)opaque;
  return ((io_t *)stream)->pos;
}

static long io_seek(voidpf opaque, voidpf stream, ZPOS64_T offset, int origin)
{
  (void)opaque;
  io_t *io = stream;
  uint64_t base = origin == ZLIB_FILEFUNC_SEEK_SET ? 0 : origin == ZLIB_FILEFUNC_SEEK_CUR ? io->pos : io->size;
  if (offset > UINT64_MAX - base)
    return -1;
  io->pos = base + offset;
  return 0;
}

static int io_close(voidpf opaque, voidpf stream)
{
  (void)opaque;
  (void)stream;
  return 0; /* the fd is the caller's */
}

static int io_error(voidpf opaque, voidpf stream)
{
  (void)opaque;
  return ((io_t *)stream)->failed;
}

/* ---------------------------------------------------------------- the directory */

/* Records the entry minizip is on: its name, where its data lies, whether stored. */
static int add_entry(em_zip_t *z, const char *path, em_err_t *err)
{
  unz_file_info64 info;
  char name[4096];
  if (unzGetCurrentFileInfo64(z->unz, &info, name, sizeof(name), NULL, 0, NULL, 0) != UNZ_OK ||
      info.size_filename >= sizeof(name))
    return em_err_set(err, -EINVAL, "%s: zip entry %zu: unreadable central directory record", path, z->n);
  if (info.flag & 1)
    return em_err_set(err, -EINVAL, "%s: zip entry '%s' is encrypted", path, name);
  if (info.compression_method != 0 && info.compression_method != Z_DEFLATED)
    return em_err_set(err, -EINVAL, "%s: zip entry '%s' is compressed with method %lu (torch stores entries, or "
                      "deflates them)", path, name, (unsigned long)info.compression_method);
  unz64_file_pos where;
  if (unzGetFilePos64(z->unz, &where) != UNZ_OK)
    return em_err_set(err, -EINVAL, "%s: zip entry '%s': unreadable central directory record", path, name);
  if (unzOpenCurrentFile(z->unz) != UNZ_OK) /* reads and checks the local header */
    return em_err_set(err, -EINVAL, "%s: zip entry '%s': bad local header (incomplete?)", path, name);
  uint64_t offset = unzGetCurrentFileZStreamPos64(z->unz);
  unzCloseCurrentFile(z->unz);
  if (offset > z->file_size || info.compressed_size > z->file_size - offset)
    return em_err_set(err, -EINVAL, "%s: zip entry '%s' lies outside the file (incomplete, or not a zip torch wrote)",
                      path, name);
  em_zip_entry_t *e = &z->entries[z->n];
  *e = (em_zip_entry_t){.where = where, .offset = offset, .size = info.compressed_size,
                        .uncompressed = info.uncompressed_size,
                        .stored = info.compression_method == 0 && info.compressed_size == info.uncompressed_size};
  if (!(e->name = strdup(name)))
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  z->n++;
  if (em_hash_get(&z->by_name, e->name, strlen(e->name)))
    return em_err_set(err, -EINVAL, "%s: zip entry '%s' appears twice", path, e->name);
  if (em_hash_put(&z->by_name, e->name, strlen(e->name), e) != 0)
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  return 0;
}

static int read_directory(em_zip_t *z, const char *path, em_err_t *err)
{
  unz_global_info64 gi;
  if (unzGetGlobalInfo64(z->unz, &gi) != UNZ_OK)
    return em_err_set(err, -EINVAL, "%s: unreadable zip central directory", path);
  if (gi.number_entry == 0 || gi.number_entry > EM_ZIP_MAX_ENTRIES)
    return em_err_set(err, -EINVAL, "%s: a zip of %llu entries (1 to %u are read)", path,
                      (unsigned long long)gi.number_entry, EM_ZIP_MAX_ENTRIES);
  if (!(z->entries = calloc((size_t)gi.number_entry, sizeof(*z->entries))))
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  int rc = unzGoToFirstFile(z->unz), e = 0;
  while (rc == UNZ_OK && z->n < gi.number_entry && !(e = add_entry(z, path, err)))
    rc = unzGoToNextFile(z->unz);
  if (e)
    return e;
  if (z->n != gi.number_entry || (rc != UNZ_OK && rc != UNZ_END_OF_LIST_OF_FILE))
    return em_err_set(err, -EINVAL, "%s: the zip central directory lists %llu entries but holds %zu", path,
                      (unsigned long long)gi.number_entry, z->n);
  return 0;
}

int em_zip_open(int fd, const char *path, em_zip_t *out, em_err_t *err)
{
  memset(out, 0, sizeof(*out));
  struct stat st;
  if (fstat(fd, &st) != 0)
    return em_err_set(err, -errno, "%s: %s", path, strerror(errno));
  out->fd = fd;
  em_hash_init(&out->by_name);
  out->file_size = (uint64_t)st.st_size;
  if (!(out->io = calloc(1, sizeof(*out->io))))
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  *out->io = (io_t){.fd = fd, .size = out->file_size};
  zlib_filefunc64_def fns = {io_open, io_read, io_write, io_tell, io_seek, io_close, io_error, NULL};
  out->unz = unzOpen2_64(out->io, &fns);
  int rc = out->unz ? read_directory(out, path, err)
                    : em_err_set(err, -EINVAL, "%s: no zip end-of-central-directory record (incomplete, or not a zip)",
                                 path);
  if (rc)
    em_zip_close(out);
  return rc;
}

void em_zip_close(em_zip_t *z)
{
  if (z->unz)
    unzClose(z->unz);
  for (size_t i = 0; i < z->n; i++)
    free(z->entries[i].name);
  free(z->entries);
  em_hash_free(&z->by_name);
  free(z->io);
  memset(z, 0, sizeof(*z));
  z->fd = -1;
}

const em_zip_entry_t *em_zip_find(const em_zip_t *z, const char *name)
{
  return em_hash_get(&z->by_name, name, strlen(name));
}

int em_zip_read_all(em_zip_t *z, const em_zip_entry_t *e, size_t max, char **out, size_t *len, em_err_t *err)
{
  *out = NULL;
  if (e->uncompressed > max)
    return em_err_set(err, -EINVAL, "zip entry '%s' holds %llu bytes (at most %zu are read)", e->name,
                      (unsigned long long)e->uncompressed, max);
  char *buf = malloc((size_t)e->uncompressed + 1);
  if (!buf)
    return em_err_set(err, -ENOMEM, "zip entry '%s': out of memory", e->name);
  int got = -1;
  /* by position: unzLocateFile refuses names of 256 bytes or more, which torch writes for long file names */
  if (unzGoToFilePos64(z->unz, &e->where) == UNZ_OK && unzOpenCurrentFile(z->unz) == UNZ_OK) {
    got = e->uncompressed ? unzReadCurrentFile(z->unz, buf, (unsigned)e->uncompressed) : 0;
    if (unzCloseCurrentFile(z->unz) == UNZ_CRCERROR)
      got = -1;
  }
  if (got < 0 || (uint64_t)got != e->uncompressed) {
    free(buf);
    return em_err_set(err, -EINVAL, "zip entry '%s': unreadable (corrupt, or not the size its directory says)",
                      e->name);
  }
  buf[got] = 0;
  *out = buf;
  *len = (size_t)got;
  return 0;
}
