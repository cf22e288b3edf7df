/* SPDX-License-Identifier: MIT */
/* libFuzzer target: any bytes as a pickle stream for the restricted unpickler. It must
 * never crash, leak, hang or run past its allocation bound; what it builds is walked. */
#include <stddef.h>
#include <stdint.h>

#include "em_pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every value once (the memo can make cycles: `seen` stops them). */
static size_t walk(em_py_t *v, int depth)
{
  if (!v || v->seen || depth > 64)
    return 0;
  v->seen = true;
  size_t n = 1;
  switch (v->kind) {
  case EM_PY_TUPLE: case EM_PY_LIST: case EM_PY_SET:
    for (size_t i = 0; i < v->u.seq.n; i++)
      n += walk(v->u.seq.items[i], depth + 1);
    break;
  case EM_PY_DICT:
    for (size_t i = 0; i < v->u.dict.keys.n; i++)
      n += walk(v->u.dict.keys.items[i], depth + 1) + walk(v->u.dict.values.items[i], depth + 1);
    break;
  case EM_PY_OBJECT:
    n += walk(v->u.obj.callable, depth + 1) + walk(v->u.obj.args, depth + 1) + walk(v->u.obj.state, depth + 1) +
         walk(v->u.obj.items, depth + 1) + walk(v->u.obj.list, depth + 1);
    break;
  case EM_PY_PERSID:
    n += walk(v->u.pid, depth + 1);
    break;
  case EM_PY_STR: case EM_PY_BYTES:
    if (v->u.str.s[v->u.str.len] != 0) /* every string is NUL-terminated */
      __builtin_trap();
    break;
  default:
    break;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  em_pickle_t *pk = NULL;
  em_py_t *root = NULL;
  em_err_t err;
  if (em_pickle_load(data, size, "fuzz.pkl", &pk, &root, &err) == 0) {
    if (!root)
      __builtin_trap();
    walk(root, 0);
  }
  em_pickle_free(&pk);
  return 0;
}
