/* SPDX-License-Identifier: MIT */
/* A restricted unpickler: a pickle VM (protocols 2-5, the binary opcodes torch.save and
 * Python's pickle write) that only builds data. It never imports or calls anything: a
 * GLOBAL becomes a placeholder naming module and name, and what REDUCE, NEWOBJ and BUILD
 * would have made by calling it is an EM_PY_OBJECT recording the callable and its
 * arguments, for the caller to interpret (lib/em_torch.c knows _rebuild_tensor_v2). The
 * one exception is collections.OrderedDict(), which becomes a plain dict, so that the
 * SETITEMS that fill it apply.
 *
 * Everything it builds lives in one arena, freed at once, so cyclic structures (a list
 * appended to itself through the memo) cost nothing to free; walkers use `seen`. The
 * arena, the stack and the memo together are bounded by EM_PICKLE_MAX_ALLOC; a file that
 * needs more is refused, as is an unknown or text-protocol opcode, a truncated stream or
 * a memo index out of range. Messages give the byte offset, never the stream's bytes. */
#ifndef EM_PICKLE_H
#define EM_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emerge.h"

#define EM_PICKLE_MAX_ALLOC (512u << 20)

typedef enum em_py_kind {
  EM_PY_NONE, EM_PY_BOOL, EM_PY_INT, EM_PY_BIGINT, EM_PY_FLOAT, EM_PY_STR, EM_PY_BYTES,
  EM_PY_TUPLE, EM_PY_LIST, EM_PY_SET, EM_PY_DICT,
  EM_PY_GLOBAL,       /* module.name, never imported */
  EM_PY_OBJECT,       /* what calling a global would have made, never called */
  EM_PY_PERSID        /* a persistent id: what the loader's persistent_load resolves */
} em_py_kind_t;

typedef struct em_py em_py_t;
typedef struct em_py_seq {
  em_py_t **items;
  size_t n, cap;
} em_py_seq_t;

struct em_py {
  em_py_kind_t kind;
  bool seen;                  /* free for the caller's walks */
  union {
    bool b;
    int64_t i;                /* INT; a BIGINT keeps only its sign here */
    double f;
    struct { const char *s; size_t len; } str;         /* STR, BYTES: NUL-terminated copies */
    em_py_seq_t seq;                                    /* TUPLE, LIST, SET */
    struct { em_py_seq_t keys, values; } dict;
    struct { const char *module, *name; } global;
    struct {
      em_py_t *callable, *args; /* the GLOBAL (or other value) and its argument tuple */
      em_py_t *state;           /* BUILD's argument, or NULL */
      em_py_t *items;           /* a DICT of what SETITEMS added, or NULL */
      em_py_t *list;            /* a LIST of what APPENDS added, or NULL */
    } obj;
    em_py_t *pid;             /* PERSID */
  } u;
};

typedef struct em_pickle em_pickle_t;

/* Runs the pickle in data[0..len) to its STOP; *root is the value it returns. what names
 * the stream in messages ("model.pt: data.pkl"). Caller frees *out (em_pickle_free), which
 * owns every value. -EINVAL (malformed, unsupported) or -ENOMEM (over the bound). */
int em_pickle_load(const void *data, size_t len, const char *what, em_pickle_t **out, em_py_t **root, em_err_t *err);
void em_pickle_free(em_pickle_t **self_p);

/* The value of a DICT's string key, or NULL. */
const em_py_t *em_py_get(const em_py_t *dict, const char *key);
/* Whether v is the GLOBAL module.name. */
bool em_py_is_global(const em_py_t *v, const char *module, const char *name);
/* Whether v is an OBJECT made by calling the GLOBAL module.name. */
bool em_py_is_call(const em_py_t *v, const char *module, const char *name);
/* The i-th item of a TUPLE or LIST, or NULL. */
const em_py_t *em_py_item(const em_py_t *seq, size_t i);
/* An INT's value when v is one (or a BOOL), else false. */
bool em_py_int(const em_py_t *v, int64_t *out);

#endif
