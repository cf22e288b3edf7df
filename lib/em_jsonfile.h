/* SPDX-License-Identifier: MIT */
/* Small JSON side files of a checkpoint (index, trainer state): bounded read + parse. */
#ifndef EM_JSONFILE_H
#define EM_JSONFILE_H

#include <cJSON.h>

#include "emerge.h"

#define EM_JSONFILE_MAX (64u << 20) /* 64 MiB: larger side files are refused */
/* and so are files of more values (~128 MiB parsed; a trainer_state.json logging every
 * step for 100,000 steps holds ~600,000) */
#define EM_JSONFILE_MAX_VALUES (2u << 20)

/* Reads and parses PATH. -ENOENT when it does not exist (message set), -EINVAL when it
 * is too large, holds too many values or is not JSON. Caller owns *out (cJSON_Delete). */
int em_jsonfile_read(const char *path, cJSON **out, em_err_t *err);

#endif
