/* SPDX-License-Identifier: MIT */
/* Opening files in a tree that someone else can write (docs/SECURITY.md). Every open of
 * the readers and the daemon goes through here, so one place decides what is followed:
 *
 * - Only regular files are read: a FIFO, socket or device named like a weight file is
 *   refused before anything blocks on it (O_NONBLOCK, then fstat).
 * - Once em_fs_confine(root) is called (the daemon does, before any thread starts), a path
 *   under root is resolved one component at a time from the root's descriptor with
 *   O_NOFOLLOW: no symlink below the root is followed and ".." is refused, so nothing
 *   outside the tree is read or written through it. Paths outside root (and every path
 *   when not confined, as in emergectl analyze, where the user names the files) are
 *   opened as given. */
#ifndef EM_FS_H
#define EM_FS_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "emerge.h"

/* Confines later opens of paths under root (see above); 0 or -errno. Not thread-safe:
 * call before starting threads. */
int em_fs_confine(const char *root);

/* open(2) with the rules above; flags gain O_CLOEXEC and, when confined, O_NOFOLLOW.
 * Returns the descriptor or -errno (-ELOOP: a symlink was refused). */
int em_fs_open(const char *path, int flags, mode_t mode);

/* em_fs_open, but when confined a path outside the root is refused (-EXDEV): for what
 * the daemon writes, which must stay in the tree whatever a stored row says. */
int em_fs_open_inside(const char *path, int flags, mode_t mode);

/* The directory name below the directory parent_fd, made with mode (whatever the umask)
 * if missing, opened without following a link: for the folders the daemon writes in a
 * tree others can write (RUN_DIR/.emerge). The descriptor, or -errno. */
int em_fs_own_dir(int parent_fd, const char *name, mode_t mode);

/* A regular file opened for reading, or -errno with err saying which and why
 * ("path: not a regular file (a FIFO)", "path: a symbolic link, not followed"). */
int em_fs_open_regular(const char *path, em_err_t *err);

/* stat(2), except that under the confinement root no symlink is followed: a link there is
 * reported as the link itself. 0 or -errno. */
int em_fs_stat(const char *path, struct stat *st);

/* A directory, opened with the rules above, for readdir; NULL with errno set. */
DIR *em_fs_opendir(const char *path);

/* Bytes read by em_fs_pread in this process so far (every reader's weight reads go
 * through it): emergectl's progress line. */
uint64_t em_fs_bytes_read(void);

/* pread(2) of exactly len bytes at off: 0, -errno, or EM_ECHANGED when the file ends
 * first (it shrank under us: an error, never SIGBUS as a mapping would give). */
int em_fs_pread(int fd, void *buf, size_t len, uint64_t off);

/* em_fs_pread of a weight file's bytes, with the message readers give: the path, the byte,
 * and "it shrank while being read" for EM_ECHANGED. */
int em_fs_read_at(int fd, const char *path, uint64_t off, size_t len, void *buf, em_err_t *err);

/* The reason text of an open error: strerror, but ELOOP says a symlink was refused. */
const char *em_fs_strerror(int neg_errno);

#endif
