/* SPDX-License-Identifier: MIT */
/* Filling an em_err_t: one place formats every error the library returns. */
#ifndef EM_ERR_H
#define EM_ERR_H

#include "emerge.h"

/* The file changed (shrank, was replaced) while it was being read. */
#define EM_ECHANGED (-ESTALE)

/* Sets err (when not NULL) to code and the formatted message; returns code. */
int em_err_set(em_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with "prefix: " (keeps the code). */
void em_err_prefix(em_err_t *err, const char *prefix);

#endif
