/* SPDX-License-Identifier: MIT */
/* emergectl analyze: offline analysis of checkpoint files, no daemon. One result per
 * PATH in step order (those without a step after, as given); E against the baseline
 * (the lowest-step PATH, else the first, unless --baseline). */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "em_ckpt.h"
#include "em_cli.h"
#include "em_coverage.h"
#include "em_fs.h"
#include "em_result_json.h"
#include "emerge.h"

static const char usage_text[] =
  "emergectl analyze: the multifractal spectrum and degree of emergence E (with its standard error) of\n"
  "checkpoint files, here, without a daemon; one line per PATH in step order.\n\n"
  "usage: emergectl analyze [--json] [--baseline PATH] [--samples S] [--neurons L] [--seed K]\n"
  "                         [--threshold T] [--alpha0 central|reference] [--mode M | --full] [--arch A]\n"
  "                         [--q-min Q] [--q-max Q] [--q-step Q] [--threads N] [--check-finite] PATH...\n"
  "\n"
  "PATH is a weight file (.safetensors, or torch's .pt .pth .bin .ckpt, read without running pickle code), an\n"
  "index (model.safetensors.index.json, pytorch_model.bin.index.json), or a checkpoint directory (checkpoint-N/).\n"
  "  --json            one result object per line (see proto/PROTOCOL.md)\n"
  "  --baseline PATH   checkpoint E is measured against (default: lowest step of PATH...)\n"
  "  --samples S       sampled networks per checkpoint (10)\n"
  "  --neurons L       neurons sampled per hidden-width layer (32)\n"
  "  --seed K          sample k uses numpy seed K+k (0)\n"
  "  --threshold T     largest distance 1/|w| kept (150)\n"
  "  --alpha0 RULE     central (default) or reference (the authors' argmax)\n"
  "  --mode M          auto (default: full when the baseline maps at most 50M weights, else\n"
  "                    sampled), sampled (the authors' method) or full (every neuron, no\n"
  "                    sampling: a different graph, see docs/METHOD.md); chosen once, at the\n"
  "                    baseline, for every PATH. --full is --mode full\n"
  "  --arch A          auto, gpt-neox, llama, gpt2, bert, torch-transformer, cnn,\n"
  "                    mlp (auto)\n"
  "  --q-min/--q-max/--q-step   q grid (-3, 3, 0.1)\n"
  "  --threads N       threads per checkpoint (default: the CPUs, at most 8); the results are\n"
  "                    bit-identical for every N\n"
  "  --check-finite    first read every weight for NaN/Inf (the analysis reads only its samples)\n"
  "  -V, --version     the version\n\n"
  "examples:\n"
  "  emergectl analyze out/checkpoint-*                 E ± SE of each checkpoint against the first\n"
  "  emergectl analyze --full --json run/*.pt > e.jsonl  every neuron, as result objects\n\n"
  "exit: 0 ok, 1 a checkpoint could not be analysed, 2 usage\n";

typedef struct item {
  const char *arg;            /* PATH as given */
  int order;                  /* its place among the PATHs */
  em_ckpt_where_t where;
  bool located, done, ok;
  em_result_t res;
  em_trainer_t trainer;
} item_t;

typedef struct opts {
  em_params_t params;
  bool json, check_finite;
  const char *baseline;
} opts_t;

/* The refusal of an option of analyze (see em_cli_bad_option). */
static int bad_option(const char *arg, bool missing, const struct option *longopts)
{
  const char *names[32];
  size_t n = 0;
  for (; longopts[n].name && n < 32; n++)
    names[n] = longopts[n].name;
  return em_cli_bad_option("analyze", arg, missing, names, n);
}

#define P0 1000 /* the vals of the analysis parameters */

/* One checkpoint at a time, as fast as the machine allows: a thread per CPU, up to 8
 * (beyond that the page cache, not the CPUs, sets the pace). */
static int default_threads(void)
{
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
  static const struct option longopts[] = {
    {"json", no_argument, NULL, 'j'},          {"baseline", required_argument, NULL, 'b'},
    /* each its own val: GNU getopt takes an abbreviation of options that share one for any of them */
    {"samples", required_argument, NULL, P0},      {"neurons", required_argument, NULL, P0 + 1},
    {"seed", required_argument, NULL, P0 + 2},     {"threshold", required_argument, NULL, P0 + 3},
    {"alpha0", required_argument, NULL, P0 + 4},   {"full", no_argument, NULL, P0 + 5},
    {"mode", required_argument, NULL, P0 + 6},
    {"arch", required_argument, NULL, P0 + 7},     {"q-min", required_argument, NULL, P0 + 8},
    {"q-max", required_argument, NULL, P0 + 9},    {"q-step", required_argument, NULL, P0 + 10},
    {"threads", required_argument, NULL, P0 + 11},
    {"check-finite", no_argument, NULL, 'f'},  {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
  };
  em_params_default(&o->params);
  o->params.threads = default_threads();
  optind = 0; /* 0, not 1: GNU getopt re-reads its optstring (main scanned with "+") */
  opterr = 0;
  int c, idx;
  while ((c = getopt_long(argc, argv, ":hV", longopts, &idx)) != -1) {
    if (c == 'h' || c == 'V') {
      if (c == 'h')
        fputs(usage_text, stdout);
      else
        printf("emergectl %s\n", EM_VERSION);
      return -1;
    } else if (c == 'j') {
      o->json = em_cli_globals.json = true;
    } else if (c == 'b') {
      o->baseline = optarg;
    } else if (c == 'f') {
      o->check_finite = true;
    } else if (c >= P0) {
      char key[32];
      snprintf(key, sizeof(key), "%s", longopts[idx].name);
      for (char *p = key; *p; p++)
        *p = *p == '-' ? '_' : *p;
      em_err_t err;
      if (em_params_set(&o->params, key, optarg, &err) != 0) {
        em_cli_error("analyze", "--%s", err.msg);
        return EM_EXIT_USAGE;
      }
    } else {
      return bad_option(argv[optind - 1], c == ':', longopts);
    }
  }
  em_err_t err;
  if (em_params_check(&o->params, &err) != 0) {
    em_cli_error("analyze", "%s", err.msg);
    return EM_EXIT_USAGE;
  }
  if (optind >= argc) {
    em_cli_error("analyze", "no PATH given");
    fputs(usage_text, stderr);
    return EM_EXIT_USAGE;
  }
  return 0;
}

/* ---------------------------------------------------------------- progress */

typedef struct job {
  em_ckpt_t *ck;
  const em_params_t *params;
  em_result_t *res;
  em_err_t *err;
  int rc;
  atomic_bool done;
} job_t;

static void *run_job(void *arg)
{
  job_t *j = arg;
  j->rc = em_analyze(j->ck, j->params, j->res, j->err);
  atomic_store(&j->done, true);
  return NULL;
}

/* Seconds after which a progress line appears: 2 on a terminal, EMERGE_PROGRESS_AFTER
 * when set (one line per update then, for logs and tests); < 0: none. */
static double progress_after(bool *lines)
{
  const char *v = getenv("EMERGE_PROGRESS_AFTER");
  *lines = v && *v;
  return *lines ? strtod(v, NULL) : isatty(STDERR_FILENO) ? 2.0 : -1;
}

static double seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void human(char *buf, size_t n, uint64_t bytes)
{
  const char *unit[] = {"B", "KB", "MB", "GB", "TB"};
  double v = (double)bytes;
  int u = 0;
  for (; v >= 1000 && u < 4; u++)
    v /= 1000;
  snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* em_analyze, with a progress line on stderr once it has taken longer than about two
 * seconds: the bytes read of the checkpoint's weight data, and the time. */
static int analyze_with_progress(em_ckpt_t *ck, const em_params_t *p, const char *path, em_result_t *res,
                                 em_err_t *err)
{
  bool lines;
  double after = progress_after(&lines);
  job_t j = {.ck = ck, .params = p, .res = res, .err = err};
  pthread_t t;
  if (after < 0 || pthread_create(&t, NULL, run_job, &j) != 0)
    return em_analyze(ck, p, res, err);
  uint64_t base = em_fs_bytes_read(), total = em_ckpt_data_bytes(ck);
  double t0 = seconds();
  bool shown = false;
  for (bool first = true; !atomic_load(&j.done); first = false) {
    if (!first)
      usleep(100000);
    double el = seconds() - t0;
    if (el < after || atomic_load(&j.done))
      continue;
    char got[32], all[32];
    human(got, sizeof(got), em_fs_bytes_read() - base);
    human(all, sizeof(all), total);
    fprintf(stderr, lines ? "emergectl: analyze: %s: %s of %s read, %.1f s\n" : "\ranalyze: %s: %s of %s read, %.0f s ",
            path, got, all, el);
    shown = true;
  }
  pthread_join(t, NULL);
  if (shown && !lines)
    fputs("\r\033[K", stderr); /* the line goes; the result takes its place on stdout */
  return j.rc;
}

/* Analyses one item once; failures are reported here, where they are handled. */
static void analyze_item(item_t *it, const opts_t *o)
{
  if (it->done)
    return;
  it->done = true;
  em_err_t err = {0};
  if (!it->located) {
    if (em_ckpt_locate(it->arg, &it->where, &err) != 0) {
      em_cli_error("analyze", "%s", err.msg);
      return;
    }
    it->located = true;
  }
  em_ckpt_t *ck = NULL;
  int rc = em_ckpt_open(it->arg, &ck, &err);
  if (!rc && o->check_finite)
    rc = em_ckpt_check_finite(ck, NULL, &err);
  if (!rc)
    rc = analyze_with_progress(ck, &o->params, it->arg, &it->res, &err);
  em_ckpt_destroy(&ck);
  if (rc) {
    bool named = strncmp(err.msg, it->arg, strlen(it->arg)) == 0; /* the library's messages start with the path */
    em_cli_error("analyze", "%s%s%s (%s)", named ? "" : it->arg, named ? "" : ": ", err.msg, em_strerror(rc));
    return;
  }
  it->ok = true;
  char why[600];
  if (em_coverage_low(&it->res, why, sizeof(why)))
    em_cli_error("analyze", "warning: %s: %s", it->arg, why);
  if (it->where.has_step && em_trainer_read(it->where.ckpt_path, it->where.step, &it->trainer, &err) != 0)
    em_cli_error("analyze", "warning: %s (trainer metrics left out)", err.msg);
}

/* Step order; PATHs without a step after those with one, as given. */
static int by_step(const void *pa, const void *pb)
{
  const item_t *a = pa, *b = pb;
  bool sa = a->located && a->where.has_step, sb = b->located && b->where.has_step;
  if (sa != sb)
    return sa ? -1 : 1;
  if (sa && a->where.step != b->where.step)
    return a->where.step < b->where.step ? -1 : 1;
  return a->order - b->order;
}

/* The baseline among items: lowest step, else the first. */
static item_t *pick_baseline(item_t *items, int n)
{
  item_t *best = NULL;
  for (int i = 0; i < n; i++) {
    if (items[i].located && items[i].where.has_step && (!best || items[i].where.step < best->where.step))
      best = &items[i];
  }
  return best ? best : &items[0];
}

static void print_row(const opts_t *o, item_t *it, const item_t *base, bool *header)
{
  em_result_meta_t m = {.run = it->where.run, .path = it->where.ckpt_path, .has_step = it->where.has_step,
                        .step = it->where.step, .trainer = &it->trainer};
  if (base->ok) {
    m.has_baseline_step = base->where.has_step;
    m.baseline_step = base->where.step;
    em_err_t err;
    if (em_emergence(it->res.alpha0, it->res.width, base->res.alpha0, base->res.width, &m.emergence, &err) == 0)
      m.has_emergence = true;
    m.has_emergence_se = m.has_emergence && em_emergence_se(it->res.samples, it->res.nsamples, base->res.samples,
                                                            base->res.nsamples, &m.emergence_se, &err) == 0;
  }
  if (o->json) {
    cJSON *j = em_result_to_json(&it->res, &m);
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    if (s)
      printf("%s\n", s);
    else
      em_cli_error("analyze", "%s: out of memory", it->arg);
    free(s);
    cJSON_Delete(j);
    return;
  }
  if (!*header) {
    printf("%10s  %9s  %7s  %8s  %8s  %6s  %8s  %s\n", "STEP", "E", "±SE", "ALPHA0", "WIDTH", "NODES", "MS", "PATH");
    *header = true;
  }
  char step[24] = "-", e[24] = "-", se[24] = "-";
  if (m.has_step)
    snprintf(step, sizeof(step), "%lld", (long long)m.step);
  if (m.has_emergence)
    snprintf(e, sizeof(e), "%+.4f", m.emergence);
  if (m.has_emergence_se)
    snprintf(se, sizeof(se), "%.4f", m.emergence_se);
  printf("%10s  %9s  %7s  %8.4f  %8.4f  %6zu  %8.0f  %s\n", step, e, se, it->res.alpha0, it->res.width,
         it->res.nodes, it->res.elapsed_ms, m.path);
}

int em_cmd_analyze(int argc, char **argv)
{
  opts_t o = {0};
  int rc = parse_opts(argc, argv, &o);
  if (rc)
    return rc < 0 ? EM_EXIT_OK : rc;
  int n = argc - optind;
  item_t *items = calloc((size_t)n + 1, sizeof(*items));
  if (!items) {
    em_cli_error("analyze", "out of memory");
    return EM_EXIT_FAIL;
  }
  em_err_t err;
  for (int i = 0; i < n; i++) {
    items[i].arg = argv[optind + i];
    items[i].order = i;
    items[i].located = em_ckpt_locate(items[i].arg, &items[i].where, &err) == 0;
    if (!items[i].located) {
      em_cli_error("analyze", "%s", err.msg);
      items[i].done = true;
    }
  }
  qsort(items, (size_t)n, sizeof(*items), by_step);
  item_t *base = &items[n];
  if (o.baseline) {
    base->arg = o.baseline;
    for (int i = 0; i < n; i++)
      if (strcmp(items[i].arg, o.baseline) == 0)
        base = &items[i];
  } else {
    base = pick_baseline(items, n);
  }
  analyze_item(base, &o);
  if (base->ok) /* auto chose at the baseline: every result of the run in that one mode */
    o.params.mode = base->res.params.mode;
  if (!base->ok)
    em_cli_error("analyze", "baseline %s could not be analysed: emergence is left null", base->arg);
  int status = base->ok ? EM_EXIT_OK : EM_EXIT_FAIL;
  bool header = false;
  for (int i = 0; i < n; i++) {
    analyze_item(&items[i], &o);
    if (items[i].ok)
      print_row(&o, &items[i], base, &header);
    else
      status = EM_EXIT_FAIL;
    fflush(stdout);
  }
  for (int i = 0; i <= n; i++) {
    em_result_free(&items[i].res);
    em_trainer_free(&items[i].trainer);
    em_ckpt_where_free(&items[i].where);
  }
  free(items);
  return status;
}
