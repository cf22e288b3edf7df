/* SPDX-License-Identifier: MIT */
/* The opcodes are those of CPython's Lib/pickletools.py, which documents each one. */
#include "em_pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"

#define CHUNK (64u << 10)
#define MAX_MEMO (1u << 22)        /* entries; torch writes a few per tensor */

typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  max_align_t data[];
} chunk_t;

struct em_pickle {
  chunk_t *chunks;
  size_t total;               /* every byte allocated for this load, arena or not */
};

typedef struct vm {
  em_pickle_t *pk;
  const uint8_t *start, *p, *end;
  const char *what;
  em_err_t *err;
  em_py_seq_t stack;          /* malloc'ed: realloc keeps it compact */
  size_t *marks, nmarks, cap_marks;
  em_py_t **memo;
  size_t nmemo;               /* slots allocated */
  size_t memo_len;            /* slots filled: Python's len(memo), where MEMOIZE stores */
} vm_t;

/* ---------------------------------------------------------------- allocation */

static bool charge(vm_t *vm, size_t bytes)
{
  if (bytes > EM_PICKLE_MAX_ALLOC - vm->pk->total)
    return false;
  vm->pk->total += bytes;
  return true;
}

static void *arena_alloc(vm_t *vm, size_t size)
{
  size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
  chunk_t *c = vm->pk->chunks;
  if (!c || c->cap - c->used < size) {
    size_t cap = size > CHUNK ? size : CHUNK;
    if (!charge(vm, sizeof(*c) + cap) || !(c = malloc(sizeof(*c) + cap)))
      return NULL;
    c->used = 0;
    c->cap = cap;
    c->next = vm->pk->chunks;
    vm->pk->chunks = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += size;
  return memset(p, 0, size);
}

static em_py_t *new_value(vm_t *vm, em_py_kind_t kind)
{
  em_py_t *v = arena_alloc(vm, sizeof(*v));
  if (v)
    v->kind = kind;
  return v;
}

/* Appends v to an arena sequence, doubling it in the arena (the old copy is dropped). */
static bool seq_push(vm_t *vm, em_py_seq_t *s, em_py_t *v)
{
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 4;
    em_py_t **items = arena_alloc(vm, cap * sizeof(*items));
    if (!items)
      return false;
    if (s->n)
      memcpy(items, s->items, s->n * sizeof(*items));
    s->items = items;
    s->cap = cap;
  }
  s->items[s->n++] = v;
  return true;
}

/* ---------------------------------------------------------------- errors, input */

static int fail(vm_t *vm, int rc, const char *why)
{
  return em_err_set(vm->err, rc, "%s: byte %zu: %s", vm->what, (size_t)(vm->p - vm->start), why);
}

static int oom(vm_t *vm)
{
  return em_err_set(vm->err, -ENOMEM, "%s: needs more than %u MiB to unpickle: refused", vm->what,
                    EM_PICKLE_MAX_ALLOC >> 20);
}

static bool take(vm_t *vm, size_t n, const uint8_t **out)
{
  if ((size_t)(vm->end - vm->p) < n)
    return false;
  *out = vm->p;
  vm->p += n;
  return true;
}

static bool take_le(vm_t *vm, size_t n, uint64_t *out)
{
  const uint8_t *b;
  if (!take(vm, n, &b))
    return false;
  *out = 0;
  for (size_t i = n; i-- > 0;)
    *out = (*out << 8) | b[i];
  return true;
}

/* ---------------------------------------------------------------- the stack */

static int push(vm_t *vm, em_py_t *v)
{
  if (!v)
    return oom(vm);
  if (vm->stack.n == vm->stack.cap) {
    size_t cap = vm->stack.cap ? 2 * vm->stack.cap : 64;
    em_py_t **items = charge(vm, (cap - vm->stack.cap) * sizeof(*items)) ? realloc(vm->stack.items, cap * sizeof(*items))
                                                                          : NULL;
    if (!items)
      return oom(vm);
    vm->stack.items = items;
    vm->stack.cap = cap;
  }
  vm->stack.items[vm->stack.n++] = v;
  return 0;
}

static em_py_t *top(vm_t *vm) { return vm->stack.n ? vm->stack.items[vm->stack.n - 1] : NULL; }

static em_py_t *pop(vm_t *vm) { return vm->stack.n ? vm->stack.items[--vm->stack.n] : NULL; }

static int push_mark(vm_t *vm)
{
  if (vm->nmarks == vm->cap_marks) {
    size_t cap = vm->cap_marks ? 2 * vm->cap_marks : 16;
    size_t *m = charge(vm, (cap - vm->cap_marks) * sizeof(*m)) ? realloc(vm->marks, cap * sizeof(*m)) : NULL;
    if (!m)
      return oom(vm);
    vm->marks = m;
    vm->cap_marks = cap;
  }
  vm->marks[vm->nmarks++] = vm->stack.n;
  return 0;
}

/* The items above the last mark: *first their index; the mark is popped. */
static int pop_mark(vm_t *vm, size_t *first)
{
  if (!vm->nmarks)
    return fail(vm, -EINVAL, "no MARK to pop");
  *first = vm->marks[--vm->nmarks];
  if (*first > vm->stack.n)
    return fail(vm, -EINVAL, "MARK above the stack");
  return 0;
}

/* ---------------------------------------------------------------- values */

static em_py_t *new_str(vm_t *vm, em_py_kind_t kind, const uint8_t *s, size_t len)
{
  em_py_t *v = new_value(vm, kind);
  char *copy = v ? arena_alloc(vm, len + 1) : NULL;
  if (!copy)
    return NULL;
  memcpy(copy, s, len);
  v->u.str.s = copy;
  v->u.str.len = len;
  return v;
}

static int push_str(vm_t *vm, em_py_kind_t kind, size_t lenbytes)
{
  uint64_t len;
  const uint8_t *s;
  if (!take_le(vm, lenbytes, &len) || len > (uint64_t)(vm->end - vm->p) || !take(vm, (size_t)len, &s))
    return fail(vm, -EINVAL, "a string runs past the end of the stream");
  return push(vm, new_str(vm, kind, s, (size_t)len));
}

static int push_int(vm_t *vm, int64_t i)
{
  em_py_t *v = new_value(vm, EM_PY_INT);
  if (v)
    v->u.i = i;
  return push(vm, v);
}

/* LONG1 / LONG4: a little-endian two's complement integer of n bytes. */
static int push_long(vm_t *vm, size_t lenbytes)
{
  uint64_t n;
  const uint8_t *b;
  if (!take_le(vm, lenbytes, &n) || n > (uint64_t)(vm->end - vm->p) || !take(vm, (size_t)n, &b))
    return fail(vm, -EINVAL, "a long integer runs past the end of the stream");
  if (n > 8) {
    em_py_t *v = new_value(vm, EM_PY_BIGINT);
    if (v)
      v->u.i = (b[n - 1] & 0x80) ? -1 : 1;
    return push(vm, v);
  }
  uint64_t u = 0;
  for (size_t i = n; i-- > 0;)
    u = (u << 8) | b[i];
  if (n > 0 && n < 8 && (b[n - 1] & 0x80))
    u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
  return push_int(vm, (int64_t)u);
}

static int push_float(vm_t *vm)
{
  const uint8_t *b;
  if (!take(vm, 8, &b))
    return fail(vm, -EINVAL, "a float runs past the end of the stream");
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) /* big-endian */
    u = (u << 8) | b[i];
  em_py_t *v = new_value(vm, EM_PY_FLOAT);
  if (v)
    memcpy(&v->u.f, &u, sizeof(v->u.f));
  return push(vm, v);
}

static em_py_t *new_global(vm_t *vm, const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen)
{
  em_py_t *v = new_value(vm, EM_PY_GLOBAL);
  char *m = v ? arena_alloc(vm, mlen + 1) : NULL, *n = m ? arena_alloc(vm, nlen + 1) : NULL;
  if (!n)
    return NULL;
  memcpy(m, module, mlen);
  memcpy(n, name, nlen);
  v->u.global.module = m;
  v->u.global.name = n;
  return v;
}

/* A NUL byte would let "torch._utils\0x" compare equal to torch._utils. */
static int push_global(vm_t *vm, const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen)
{
  if (memchr(module, 0, mlen) || memchr(name, 0, nlen))
    return fail(vm, -EINVAL, "a global whose name holds a NUL byte");
  return push(vm, new_global(vm, module, mlen, name, nlen));
}

/* GLOBAL: "module\nname\n", never imported. */
static int op_global(vm_t *vm)
{
  const uint8_t *m = vm->p, *nl1 = memchr(m, '\n', (size_t)(vm->end - m));
  const uint8_t *n = nl1 ? nl1 + 1 : NULL, *nl2 = n ? memchr(n, '\n', (size_t)(vm->end - n)) : NULL;
  if (!nl2)
    return fail(vm, -EINVAL, "GLOBAL without its two lines");
  vm->p = nl2 + 1;
  return push_global(vm, m, (size_t)(nl1 - m), n, (size_t)(nl2 - n));
}

static int op_stack_global(vm_t *vm)
{
  em_py_t *name = pop(vm), *module = pop(vm);
  if (!name || !module || name->kind != EM_PY_STR || module->kind != EM_PY_STR)
    return fail(vm, -EINVAL, "STACK_GLOBAL needs two strings");
  return push_global(vm, (const uint8_t *)module->u.str.s, module->u.str.len, (const uint8_t *)name->u.str.s,
                     name->u.str.len);
}

/* ---------------------------------------------------------------- containers */

static int push_seq(vm_t *vm, em_py_kind_t kind, size_t first)
{
  em_py_t *v = new_value(vm, kind);
  if (!v)
    return oom(vm);
  for (size_t i = first; i < vm->stack.n; i++)
    if (!seq_push(vm, &v->u.seq, vm->stack.items[i]))
      return oom(vm);
  vm->stack.n = first;
  return push(vm, v);
}

static int push_tuple_n(vm_t *vm, size_t n)
{
  if (vm->stack.n < n)
    return fail(vm, -EINVAL, "TUPLE of more items than the stack holds");
  return push_seq(vm, EM_PY_TUPLE, vm->stack.n - n);
}

static int push_marked(vm_t *vm, em_py_kind_t kind)
{
  size_t first = 0;
  int rc = pop_mark(vm, &first);
  return rc ? rc : push_seq(vm, kind, first);
}

/* The dict that SETITEM(S) on target fill: target itself, or an object's own. */
static em_py_t *dict_of(vm_t *vm, em_py_t *target)
{
  if (target && target->kind == EM_PY_DICT)
    return target;
  if (!target || target->kind != EM_PY_OBJECT)
    return NULL;
  if (!target->u.obj.items)
    target->u.obj.items = new_value(vm, EM_PY_DICT);
  return target->u.obj.items;
}

/* The sequence that APPEND(S) and ADDITEMS fill: target's, or an object's own list. */
static em_py_seq_t *seq_of(vm_t *vm, em_py_t *target)
{
  if (target && (target->kind == EM_PY_LIST || target->kind == EM_PY_SET))
    return &target->u.seq;
  if (!target || target->kind != EM_PY_OBJECT)
    return NULL;
  if (!target->u.obj.list)
    target->u.obj.list = new_value(vm, EM_PY_LIST);
  return target->u.obj.list ? &target->u.obj.list->u.seq : NULL;
}

/* Adds stack[first..] (key, value pairs when dict) to the value below them. */
static int add_items(vm_t *vm, size_t first, bool dict)
{
  if (first == 0)
    return fail(vm, -EINVAL, "nothing below the items to add them to");
  em_py_t *target = vm->stack.items[first - 1];
  if (dict && (vm->stack.n - first) % 2)
    return fail(vm, -EINVAL, "SETITEMS with a key and no value");
  em_py_t *d = dict ? dict_of(vm, target) : NULL;
  em_py_seq_t *s = dict ? NULL : seq_of(vm, target);
  if (dict ? !d : !s)
    return fail(vm, -EINVAL, dict ? "SETITEM on a value that is not a dict" : "APPEND on a value that is not a list");
  for (size_t i = first; i < vm->stack.n; i += dict ? 2 : 1) {
    bool ok = dict ? seq_push(vm, &d->u.dict.keys, vm->stack.items[i]) &&
                         seq_push(vm, &d->u.dict.values, vm->stack.items[i + 1])
                   : seq_push(vm, s, vm->stack.items[i]);
    if (!ok)
      return oom(vm);
  }
  vm->stack.n = first;
  return 0;
}

static int op_add_marked(vm_t *vm, bool dict)
{
  size_t first = 0;
  int rc = pop_mark(vm, &first);
  return rc ? rc : add_items(vm, first, dict);
}

static int op_add_one(vm_t *vm, bool dict)
{
  size_t need = dict ? 3 : 2;
  if (vm->stack.n < need)
    return fail(vm, -EINVAL, dict ? "SETITEM needs a dict, a key and a value" : "APPEND needs a list and a value");
  return add_items(vm, vm->stack.n - need + 1, dict);
}

/* ---------------------------------------------------------------- calls, never made */

static int op_reduce(vm_t *vm, bool kwargs)
{
  em_py_t *kw = kwargs ? pop(vm) : NULL, *args = pop(vm), *callable = pop(vm);
  if (!args || !callable || (kwargs && !kw))
    return fail(vm, -EINVAL, "REDUCE or NEWOBJ needs a callable and its arguments");
  (void)kw;
  if (em_py_is_global(callable, "collections", "OrderedDict"))
    return push(vm, new_value(vm, EM_PY_DICT)); /* filled by the SETITEMS that follow */
  em_py_t *v = new_value(vm, EM_PY_OBJECT);
  if (v) {
    v->u.obj.callable = callable;
    v->u.obj.args = args;
  }
  return push(vm, v);
}

static int op_build(vm_t *vm)
{
  em_py_t *state = pop(vm), *target = top(vm);
  if (!state || !target)
    return fail(vm, -EINVAL, "BUILD needs an object and its state");
  if (target->kind == EM_PY_OBJECT)
    target->u.obj.state = state; /* other targets (a dict's __setstate__) keep what they hold */
  return 0;
}

static int op_persid(vm_t *vm)
{
  em_py_t *pid = pop(vm), *v = pid ? new_value(vm, EM_PY_PERSID) : NULL;
  if (!pid)
    return fail(vm, -EINVAL, "BINPERSID with an empty stack");
  if (v)
    v->u.pid = pid;
  return push(vm, v);
}

/* ---------------------------------------------------------------- the memo */

static int memo_put(vm_t *vm, uint64_t index)
{
  if (!top(vm))
    return fail(vm, -EINVAL, "PUT with an empty stack");
  if (index >= MAX_MEMO)
    return fail(vm, -EINVAL, "a memo index beyond 2^22");
  if (index >= vm->nmemo) {
    size_t n = index + 1 > 2 * vm->nmemo ? (size_t)index + 1 : 2 * vm->nmemo;
    em_py_t **m = charge(vm, (n - vm->nmemo) * sizeof(*m)) ? realloc(vm->memo, n * sizeof(*m)) : NULL;
    if (!m)
      return oom(vm);
    memset(m + vm->nmemo, 0, (n - vm->nmemo) * sizeof(*m));
    vm->memo = m;
    vm->nmemo = n;
  }
  vm->memo_len += vm->memo[index] == NULL;
  vm->memo[index] = top(vm);
  return 0;
}

static int memo_get(vm_t *vm, uint64_t index)
{
  if (index >= vm->nmemo || !vm->memo[index])
    return fail(vm, -EINVAL, "GET of a memo index never PUT");
  return push(vm, vm->memo[index]);
}

static int op_memo(vm_t *vm, uint8_t op)
{
  uint64_t index;
  bool get = op == 'h' || op == 'j';
  if (op == 0x94) /* MEMOIZE: at len(memo), as pickle's Unpickler */
    return memo_put(vm, vm->memo_len);
  if (!take_le(vm, op == 'h' || op == 'q' ? 1 : 4, &index))
    return fail(vm, -EINVAL, "a memo index runs past the end of the stream");
  return get ? memo_get(vm, index) : memo_put(vm, index);
}

/* ---------------------------------------------------------------- dispatch */

static int op_scalar(vm_t *vm, uint8_t op)
{
  uint64_t u;
  switch (op) {
  case 'N': return push(vm, new_value(vm, EM_PY_NONE));
  case 0x88: case 0x89: {
    em_py_t *v = new_value(vm, EM_PY_BOOL);
    if (v)
      v->u.b = op == 0x88;
    return push(vm, v);
  }
  case 'J':
    return take_le(vm, 4, &u) ? push_int(vm, (int32_t)(uint32_t)u) : fail(vm, -EINVAL, "truncated BININT");
  case 'K': case 'M':
    return take_le(vm, op == 'K' ? 1 : 2, &u) ? push_int(vm, (int64_t)u) : fail(vm, -EINVAL, "truncated BININT");
  case 0x8a: case 0x8b: return push_long(vm, op == 0x8a ? 1 : 4);
  case 'G': return push_float(vm);
  case 'X': case 'T': return push_str(vm, op == 'X' ? EM_PY_STR : EM_PY_BYTES, 4);
  case 0x8c: case 'U': return push_str(vm, op == 0x8c ? EM_PY_STR : EM_PY_BYTES, 1);
  case 0x8d: return push_str(vm, EM_PY_STR, 8);
  case 'B': return push_str(vm, EM_PY_BYTES, 4);
  case 'C': return push_str(vm, EM_PY_BYTES, 1);
  case 0x8e: case 0x96: return push_str(vm, EM_PY_BYTES, 8);
  default: return 1; /* not a scalar */
  }
}

/* DICT: the pairs above the mark become a new dict. */
static int op_dict(vm_t *vm)
{
  size_t first = 0;
  int rc = pop_mark(vm, &first);
  em_py_t *d = rc ? NULL : new_value(vm, EM_PY_DICT);
  if (rc || !d)
    return rc ? rc : oom(vm);
  if ((vm->stack.n - first) % 2)
    return fail(vm, -EINVAL, "DICT with a key and no value");
  for (size_t i = first; i < vm->stack.n; i += 2)
    if (!seq_push(vm, &d->u.dict.keys, vm->stack.items[i]) || !seq_push(vm, &d->u.dict.values, vm->stack.items[i + 1]))
      return oom(vm);
  vm->stack.n = first;
  return push(vm, d);
}

static int op_structure(vm_t *vm, uint8_t op)
{
  switch (op) {
  case '(': return push_mark(vm);
  case ')': return push(vm, new_value(vm, EM_PY_TUPLE));
  case ']': return push(vm, new_value(vm, EM_PY_LIST));
  case '}': return push(vm, new_value(vm, EM_PY_DICT));
  case 0x8f: return push(vm, new_value(vm, EM_PY_SET));
  case 't': return push_marked(vm, EM_PY_TUPLE);
  case 'l': return push_marked(vm, EM_PY_LIST);
  case 0x91: return push_marked(vm, EM_PY_SET);
  case 0x85: case 0x86: case 0x87: return push_tuple_n(vm, (size_t)(op - 0x84));
  case 'd': return op_dict(vm);
  case 'a': return op_add_one(vm, false);
  case 'e': case 0x90: return op_add_marked(vm, false);
  case 's': return op_add_one(vm, true);
  case 'u': return op_add_marked(vm, true);
  default: return 1;
  }
}

static int op_other(vm_t *vm, uint8_t op)
{
  uint64_t u;
  size_t first = 0;
  switch (op) {
  case 0x80: return take_le(vm, 1, &u) ? 0 : fail(vm, -EINVAL, "truncated PROTO");
  case 0x95: return take_le(vm, 8, &u) ? 0 : fail(vm, -EINVAL, "truncated FRAME"); /* framing only */
  case '0': return pop(vm) ? 0 : fail(vm, -EINVAL, "POP with an empty stack");
  case '1': {
    int rc = pop_mark(vm, &first);
    if (!rc)
      vm->stack.n = first;
    return rc;
  }
  case '2': return top(vm) ? push(vm, top(vm)) : fail(vm, -EINVAL, "DUP with an empty stack");
  case 'c': return op_global(vm);
  case 0x93: return op_stack_global(vm);
  case 'R': case 0x81: return op_reduce(vm, false);
  case 0x92: return op_reduce(vm, true);
  case 'b': return op_build(vm);
  case 'Q': return op_persid(vm);
  case 'h': case 'j': case 'q': case 'r': case 0x94: return op_memo(vm, op);
  default: return 1;
  }
}

static int run(vm_t *vm)
{
  while (vm->p < vm->end) {
    uint8_t op = *vm->p++;
    if (op == '.') {
      if (vm->stack.n != 1 || vm->nmarks)
        return fail(vm, -EINVAL, "STOP with other than one value on the stack");
      return 0;
    }
    int rc = op_scalar(vm, op);
    if (rc == 1)
      rc = op_structure(vm, op);
    if (rc == 1)
      rc = op_other(vm, op);
    if (rc == 1) {
      vm->p--;
      char why[96];
      snprintf(why, sizeof(why), "opcode 0x%02x is not one this reader accepts (text protocols, extensions, "
               "out-of-band buffers)", op);
      return fail(vm, -EINVAL, why);
    }
    if (rc)
      return rc;
  }
  return fail(vm, -EINVAL, "the stream ends without STOP");
}

int em_pickle_load(const void *data, size_t len, const char *what, em_pickle_t **out, em_py_t **root, em_err_t *err)
{
  *out = NULL;
  *root = NULL;
  em_pickle_t *pk = calloc(1, sizeof(*pk));
  if (!pk)
    return em_err_set(err, -ENOMEM, "%s: out of memory", what);
  vm_t vm = {.pk = pk, .start = data, .p = data, .end = (const uint8_t *)data + len, .what = what, .err = err};
  int rc = run(&vm);
  if (!rc)
    *root = vm.stack.items[0];
  free(vm.stack.items);
  free(vm.marks);
  free(vm.memo);
  if (rc)
    em_pickle_free(&pk);
  *out = pk;
  return rc;
}

void em_pickle_free(em_pickle_t **self_p)
{
  em_pickle_t *pk = *self_p;
  if (!pk)
    return;
  for (chunk_t *c = pk->chunks, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(pk);
  *self_p = NULL;
}

/* ---------------------------------------------------------------- reading values */

const em_py_t *em_py_get(const em_py_t *dict, const char *key)
{
  if (!dict || dict->kind != EM_PY_DICT)
    return NULL;
  for (size_t i = dict->u.dict.keys.n; i-- > 0;) { /* a key set twice holds its last value, as in Python */
    const em_py_t *k = dict->u.dict.keys.items[i];
    if (k->kind == EM_PY_STR && k->u.str.len == strlen(key) && memcmp(k->u.str.s, key, k->u.str.len) == 0)
      return dict->u.dict.values.items[i];
  }
  return NULL;
}

bool em_py_is_global(const em_py_t *v, const char *module, const char *name)
{
  return v && v->kind == EM_PY_GLOBAL && strcmp(v->u.global.module, module) == 0 &&
         strcmp(v->u.global.name, name) == 0;
}

bool em_py_is_call(const em_py_t *v, const char *module, const char *name)
{
  return v && v->kind == EM_PY_OBJECT && em_py_is_global(v->u.obj.callable, module, name);
}

const em_py_t *em_py_item(const em_py_t *seq, size_t i)
{
  if (!seq || (seq->kind != EM_PY_TUPLE && seq->kind != EM_PY_LIST) || i >= seq->u.seq.n)
    return NULL;
  return seq->u.seq.items[i];
}

bool em_py_int(const em_py_t *v, int64_t *out)
{
  if (v && v->kind == EM_PY_INT)
    *out = v->u.i;
  else if (v && v->kind == EM_PY_BOOL)
    *out = v->u.b;
  else
    return false;
  return true;
}
