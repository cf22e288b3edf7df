/* SPDX-License-Identifier: MIT */
/* Small JSON side files of a checkpoint (index, trainer state): bounded read + parse. */
#ifndef EM_JSONFILE_H
#define EM_JSONFILE_H

#include <cJSON.h>

#include "emerge.h"

#define EM_JSONFILE_MAX (64u << 20) /* 64 MiB: larger side files are refused */

/* Reads and parses PATH. -ENOENT when it does not exist (message set), -EINVAL when it
 * is too large or not JSON. Caller owns *out (cJSON_Delete). */
int em_jsonfile_read(const char *path, cJSON **out, em_err_t *err);

#endif
