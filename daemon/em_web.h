/* SPDX-License-Identifier: MIT */
/* The dashboard's files (daemon/web/), compiled into emerged by the Makefile so the
 * daemon serves exactly these and nothing from the filesystem: no path a request names
 * can reach a file (docs/SECURITY.md). */
#ifndef EM_WEB_H
#define EM_WEB_H

#include <stddef.h>

typedef struct em_asset {
  const char *path;            /* "/index.html"; NULL ends the table */
  const unsigned char *data;
  size_t len;
} em_asset_t;

extern const em_asset_t em_web_assets[];

#endif
