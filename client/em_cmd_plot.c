/* SPDX-License-Identifier: MIT */
/* emergectl plot RUN [RUN ...] --svg FILE|-: a standalone SVG, written here (no external
 * tools): E against step for up to 8 runs overlaid, each with its ±2 SE band, the
 * trainer's own metric on a second axis when present and the runs' early-stop alerts as
 * marked steps, and the f(alpha) spectra (one run: its baseline and latest checkpoint;
 * several: the latest of each). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_alert.h"
#include "em_wire.h"
#include "em_cli.h"
#include "em_cmd.h"

#define W 900
#define PH 300 /* each panel's height */
#define ML 80
#define MR 80
#define MT 50

typedef struct panel {
  double x0, y0, w, h;           /* pixels */
  double xlo, xhi, ylo, yhi;     /* data range */
} panel_t;

static double px(const panel_t *p, double x) { return p->x0 + (x - p->xlo) / (p->xhi - p->xlo) * p->w; }
static double py(const panel_t *p, double y) { return p->y0 + p->h - (y - p->ylo) / (p->yhi - p->ylo) * p->h; }

static void xml_text(FILE *f, const char *s)
{
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
  }
}

/* Widens a degenerate range and pads it by 5%. */
static void settle(double *lo, double *hi)
{
  if (!(*hi > *lo)) {
    *lo -= 0.5;
    *hi += 0.5;
  }
  double pad = (*hi - *lo) * 0.05;
  *lo -= pad;
  *hi += pad;
}

/* A tick step of 1, 2 or 5 times a power of ten giving about five ticks over [lo, hi]. */
static double nice_step(double lo, double hi)
{
  double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;
  return mag * (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10);
}

static void axes(FILE *f, const panel_t *p, const char *xlabel, const char *ylabel, const char *title)
{
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", p->x0,
          p->y0, p->w, p->h);
  double xs = nice_step(p->xlo, p->xhi), ys = nice_step(p->ylo, p->yhi);
  for (double x = ceil(p->xlo / xs) * xs; x <= p->xhi; x += xs)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%.6g</text>\n", px(p, x),
            p->y0 + p->h + 16, fabs(x) < xs * 1e-9 ? 0.0 : x);
  for (double y = ceil(p->ylo / ys) * ys; y <= p->yhi; y += ys) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.6g</text>\n", p->x0 - 6,
            py(p, y) + 4, fabs(y) < ys * 1e-9 ? 0.0 : y);
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", p->x0, p->x0 + p->w,
            py(p, y), py(p, y));
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">%s</text>\n", p->x0 + p->w / 2,
          p->y0 + p->h + 36, xlabel);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\">"
             "%s</text>\n", p->x0 - 50, p->y0 + p->h / 2, p->x0 - 50, p->y0 + p->h / 2, ylabel);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", p->x0, p->y0 - 10,
          title);
}

static void legend(FILE *f, double x, double y, const char *color, const char *dash, const char *label)
{
  fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", x, x + 24,
          y, y, color, dash);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 30, y + 4);
  xml_text(f, label);
  fputs("</text>\n", f);
}

/* The trainer metric to show beside E: an accuracy if any result has one, else a loss. */
static const char *pick_metric(const em_result_view_t *v, size_t n)
{
  const char *best = NULL;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < v[i].nmetrics; k++) {
      const char *name = v[i].metrics[k].name;
      if (strstr(name, "acc"))
        return name;
      if (strstr(name, "loss") && !best)
        best = name;
    }
  return best;
}

/* The alerts of a reply, decoded; malformed ones are skipped with a word. */
static em_alert_t *decode_alerts(const cJSON *reply, size_t *n)
{
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(reply, "alerts"), *a;
  em_alert_t *v = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*v));
  *n = 0;
  cJSON_ArrayForEach(a, arr)
  {
    char err[200];
    if (v && em_alert_from_json(a, &v[*n], err, sizeof(err)) == 0)
      (*n)++;
    else if (v)
      em_cli_error("plot", "skipping a malformed alert: %s", err);
  }
  return v;
}

/* A dashed vertical line at each alert's step, its rule above, its reason on hover. */
static void alert_marks(FILE *f, const panel_t *p, const em_alert_t *alerts, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    double step = (double)alerts[i].step;
    char at[64];
    if (step < p->xlo || step > p->xhi)
      continue;
    double x = px(p, step);
    em_place_text(at, sizeof(at), alerts[i].step, alerts[i].by_arrival);
    fprintf(f, "<g class=\"alert\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ff7f0e\" "
               "stroke-width=\"1.5\" stroke-dasharray=\"3 3\"/><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
               "fill=\"#ff7f0e\" text-anchor=\"middle\">", x, x, p->y0, p->y0 + p->h, x, p->y0 - 2);
    xml_text(f, alerts[i].rule);
    fprintf(f, "</text><title>%s: ", at);
    xml_text(f, alerts[i].reason);
    fputs("</title></g>\n", f);
  }
}

/* Where a result sits on the x axis: its step, else its arrival number (a run whose
 * checkpoint names carry no step); NaN when it has neither. */
static double xof(const em_result_view_t *r)
{
  int64_t place;
  bool by_arrival;
  return em_result_place(r, &place, &by_arrival) ? (double)place : NAN;
}

/* Results that can be drawn: those with a place and an E. */
static bool drawable(const em_result_view_t *r)
{
  return !isnan(xof(r)) && !isnan(r->emergence);
}

/* "step 300", "checkpoint #3 (arrival order)" or "no step", for titles and legends. */
static void place_label(char *buf, size_t n, const em_result_view_t *r)
{
  int64_t place;
  bool by_arrival;
  if (em_result_place(r, &place, &by_arrival))
    em_place_text(buf, n, place, by_arrival);
  else
    snprintf(buf, n, "no step");
}

static bool any_by_arrival(const em_result_view_t *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!v[i].has_step && v[i].has_arrival)
      return true;
  return false;
}

/* Half the band drawn around E: two standard errors, 0 when unknown. */
static double band(const em_result_view_t *r)
{
  return isnan(r->emergence_se) ? 0 : 2 * r->emergence_se;
}

/* One run of the picture: its results, its alerts, its colour. */
typedef struct series {
  const char *run;
  em_result_view_t *v;
  size_t n;
  em_alert_t *alerts;
  size_t nalerts;
  const char *color;
  cJSON *reply, *alerts_reply;   /* the views borrow their strings */
} series_t;

static const char *const palette[EM_CMD_MAX_RUNS] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                                     "#ff7f0e", "#17becf", "#e377c2", "#7f7f7f"};

/* E +- 2 SE as one filled polygon: the upper edge forward, the lower edge back. */
static void band_polygon(FILE *f, const panel_t *p, const series_t *s)
{
  fprintf(f, "<polygon class=\"band\" fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\" points=\"", s->color);
  for (size_t i = 0; i < s->n; i++)
    if (drawable(&s->v[i]))
      fprintf(f, "%.1f,%.1f ", px(p, xof(&s->v[i])), py(p, s->v[i].emergence + band(&s->v[i])));
  for (size_t i = s->n; i-- > 0;)
    if (drawable(&s->v[i]))
      fprintf(f, "%.1f,%.1f ", px(p, xof(&s->v[i])), py(p, s->v[i].emergence - band(&s->v[i])));
  fputs("\"/>\n", f);
}

/* The metric's range over every run; false when no run has it. */
static bool metric_range(const series_t *s, int ns, const char *metric, double *lo, double *hi)
{
  *lo = INFINITY, *hi = -INFINITY;
  for (int k = 0; k < ns; k++)
    for (size_t i = 0; i < s[k].n; i++) {
      double y = em_result_metric(&s[k].v[i], metric);
      if (!isnan(xof(&s[k].v[i])) && !isnan(y))
        *lo = fmin(*lo, y), *hi = fmax(*hi, y);
    }
  return *hi >= *lo;
}

static void metric_axis(FILE *f, const panel_t *p, const series_t *s, int ns, const char *metric)
{
  panel_t m = *p;
  if (!metric_range(s, ns, metric, &m.ylo, &m.yhi))
    return;
  settle(&m.ylo, &m.yhi);
  for (int k = 0; k < ns; k++) {
    fprintf(f, "<polyline class=\"metric\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\" "
               "points=\"", s[k].color);
    for (size_t i = 0; i < s[k].n; i++) {
      double y = em_result_metric(&s[k].v[i], metric);
      if (!isnan(xof(&s[k].v[i])) && !isnan(y))
        fprintf(f, "%.1f,%.1f ", px(&m, xof(&s[k].v[i])), py(&m, y));
    }
    fputs("\"/>\n", f);
  }
  double ms = nice_step(m.ylo, m.yhi);
  for (double y = ceil(m.ylo / ms) * ms; y <= m.yhi; y += ms)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\">%.6g</text>\n", m.x0 + m.w + 6,
            py(&m, y) + 4, fabs(y) < ms * 1e-9 ? 0.0 : y);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" fill=\"#555\" text-anchor=\"middle\" "
             "transform=\"rotate(90 %.1f %.1f)\">", m.x0 + m.w + 55, m.y0 + m.h / 2, m.x0 + m.w + 55, m.y0 + m.h / 2);
  xml_text(f, metric);
  fputs(" (right axis, dashed)</text>\n", f);
}

static void e_line(FILE *f, const panel_t *p, const series_t *s)
{
  band_polygon(f, p, s);
  fprintf(f, "<polyline class=\"e\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s->color);
  for (size_t i = 0; i < s->n; i++)
    if (drawable(&s->v[i]))
      fprintf(f, "%.1f,%.1f ", px(p, xof(&s->v[i])), py(p, s->v[i].emergence));
  fputs("\"/>\n", f);
  for (size_t i = 0; i < s->n; i++) {
    char at[64];
    if (!drawable(&s->v[i]))
      continue;
    place_label(at, sizeof(at), &s->v[i]);
    fprintf(f, "<circle class=\"point\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>", px(p, xof(&s->v[i])),
            py(p, s->v[i].emergence), s->color);
    xml_text(f, s->run);
    fprintf(f, " %s: E %.4f ± %.4f (SE)</title></circle>\n", at, s->v[i].emergence, band(&s->v[i]) / 2);
  }
  alert_marks(f, p, s->alerts, s->nalerts);
}

/* The modes the runs' results were measured in differ: their E values do not compare. */
static bool modes_differ(const series_t *s, int ns)
{
  for (int k = 0; k < ns; k++)
    for (size_t i = 0; i < s[k].n; i++)
      if (strcmp(s[k].v[i].mode ? s[k].v[i].mode : "", s[0].v[0].mode ? s[0].v[0].mode : "") != 0)
        return true;
  return false;
}

static void series_legend(FILE *f, const series_t *s, int ns)
{
  for (int k = 0; k < ns; k++) {
    char label[1200];
    snprintf(label, sizeof(label), "%s: E ± 2 SE (%s)", s[k].run, s[k].v[s[k].n - 1].mode ? s[k].v[s[k].n - 1].mode : "mode unknown");
    legend(f, ML + 10, MT + 14 + 18 * k, s[k].color, "", label);
  }
  if (modes_differ(s, ns))
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#a4460b\">these runs were measured in different "
               "modes: their E values do not compare</text>\n", ML + 10, MT + 14 + 18 * ns);
}

static void emergence_panel(FILE *f, const series_t *s, int ns)
{
  panel_t p = {ML, MT, W - ML - MR, PH, INFINITY, -INFINITY, INFINITY, -INFINITY};
  bool arrival = false;
  for (int k = 0; k < ns; k++) {
    arrival = arrival || any_by_arrival(s[k].v, s[k].n);
    for (size_t i = 0; i < s[k].n; i++) {
      const em_result_view_t *r = &s[k].v[i];
      if (!isnan(xof(r)))
        p.xlo = fmin(p.xlo, xof(r)), p.xhi = fmax(p.xhi, xof(r));
      if (drawable(r))
        p.ylo = fmin(p.ylo, r->emergence - band(r)), p.yhi = fmax(p.yhi, r->emergence + band(r));
    }
  }
  settle(&p.xlo, &p.xhi);
  settle(&p.ylo, &p.yhi);
  axes(f, &p, arrival ? "checkpoint, in arrival order (no step in the names)" : "training step", "E", "");
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">Degree of emergence E: ", ML, MT - 10);
  for (int k = 0; k < ns; k++) {
    xml_text(f, s[k].run);
    fputs(k + 1 < ns ? ", " : "", f);
  }
  fputs("</text>\n", f);
  for (int k = 0; k < ns; k++)
    e_line(f, &p, &s[k]);
  series_legend(f, s, ns);
  const char *metric = pick_metric(s[0].v, s[0].n);
  if (metric)
    metric_axis(f, &p, s, ns, metric);
}

static void spectrum_line(FILE *f, const panel_t *p, const em_result_view_t *r, const char *color)
{
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
  for (size_t i = 0; i < r->nspec; i++)
    fprintf(f, "%.1f,%.1f ", px(p, r->alpha[i]), py(p, r->f[i]));
  fputs("\"/>\n", f);
}

/* One run: its baseline's spectrum and its latest; several: the latest of each. */
static void spectra_panel(FILE *f, const series_t *s, int ns)
{
  panel_t p = {ML, MT + PH + 90, W - ML - MR, PH, INFINITY, -INFINITY, INFINITY, -INFINITY};
  const em_result_view_t *shown[EM_CMD_MAX_RUNS + 1];
  const char *color[EM_CMD_MAX_RUNS + 1];
  int n = 0;
  if (ns == 1)
    shown[n] = &s[0].v[0], color[n++] = "#7f7f7f";
  for (int k = 0; k < ns; k++)
    shown[n] = &s[k].v[s[k].n - 1], color[n++] = s[k].color;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < shown[k]->nspec; i++) {
      p.xlo = fmin(p.xlo, shown[k]->alpha[i]), p.xhi = fmax(p.xhi, shown[k]->alpha[i]);
      p.ylo = fmin(p.ylo, shown[k]->f[i]), p.yhi = fmax(p.yhi, shown[k]->f[i]);
    }
  settle(&p.xlo, &p.xhi);
  settle(&p.ylo, &p.yhi);
  axes(f, &p, "alpha", "f(alpha)", "Multifractal spectrum f(alpha)");
  for (int k = 0; k < n; k++) {
    char label[1200], at[64];
    spectrum_line(f, &p, shown[k], color[k]);
    place_label(at, sizeof(at), shown[k]);
    snprintf(label, sizeof(label), "%s%s, %s", ns == 1 ? (k == 0 ? "baseline" : "latest") : s[k].run,
             ns == 1 ? "" : ", latest", at);
    legend(f, p.x0 + 10, p.y0 + 14 + 18 * k, color[k], "", label);
  }
}

static int write_svg(const char *path, const series_t *s, int ns)
{
  bool to_stdout = strcmp(path, "-") == 0;
  FILE *f = to_stdout ? stdout : fopen(path, "w");
  if (!f) {
    em_cli_error("plot", "%s: cannot write", path);
    return EM_EXIT_FAIL;
  }
  int height = 2 * PH + 190;
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
             "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n<rect width=\"100%%\" "
             "height=\"100%%\" fill=\"white\"/>\n", W, height, W, height);
  emergence_panel(f, s, ns);
  spectra_panel(f, s, ns);
  fputs("</svg>\n", f);
  if ((to_stdout ? fflush(f) : fclose(f)) != 0 || (to_stdout && ferror(f))) {
    em_cli_error("plot", "%s: write failed", to_stdout ? "standard output" : path);
    return EM_EXIT_FAIL;
  }
  size_t n = 0;
  for (int k = 0; k < ns; k++)
    n += s[k].n;
  fprintf(stderr, "emergectl: plot: %zu results of %d run%s written to %s\n", n, ns, ns > 1 ? "s" : "",
          to_stdout ? "standard output" : path);
  return EM_EXIT_OK;
}

/* One run's results and alerts, through the chosen source. */
static int load_series(em_cmd_opts_t *o, const char *run, series_t *s)
{
  char err[200];
  o->run = run;
  s->run = run;
  int rc = em_cmd_request("plot", o, EM_API_HISTORY, &s->reply);
  if (!rc)
    rc = em_cmd_request("plot", o, EM_API_ALERTS, &s->alerts_reply);
  if (!rc && em_results_decode(s->reply, &s->v, &s->n, err, sizeof(err)) != 0) {
    em_cli_error("plot", "malformed reply for run '%s': %s", run, err);
    rc = EM_EXIT_FAIL;
  } else if (!rc && s->n == 0) {
    em_cli_error("plot", "run '%s' has no results yet", run);
    rc = EM_EXIT_FAIL;
  } else if (!rc) {
    s->alerts = decode_alerts(s->alerts_reply, &s->nalerts);
  }
  return rc;
}

static void free_series(series_t *s)
{
  for (size_t i = 0; i < s->nalerts; i++)
    em_alert_free(&s->alerts[i]);
  free(s->alerts);
  em_results_free(s->v, s->n);
  cJSON_Delete(s->reply);
  cJSON_Delete(s->alerts_reply);
}

int em_cmd_plot(int argc, char **argv)
{
  em_cmd_opts_t o;
  static const em_cmd_spec_t spec = {"plot", EM_RUN_MANY, EM_OPT_SVG,
    "emergectl plot: a standalone SVG of E against step for up to 8 runs overlaid, each with its ±2 SE\n"
    "band, the trainer's accuracy (or loss) on a second axis, alerts marked, and the f(alpha) spectra.\n\n"
    "usage: emergectl plot RUN [RUN...] --svg FILE|- [SOURCE]\n\n"
    "  --svg FILE|-       where to write it (- for standard output)\n" EM_CMD_SOURCE_HELP "\nexamples:\n"
    "  emergectl plot mlp --svg mlp.svg\n  emergectl plot sweep/lr1 sweep/lr2 --svg - > sweep.svg\n\n"
    EM_CMD_EXIT_HELP};
  int rc = em_cmd_parse(&spec, argc, argv, &o);
  if (rc)
    return rc < 0 ? EM_EXIT_OK : rc;
  if (!o.svg) {
    em_cli_error("plot", "--svg FILE is required (- for standard output)");
    return EM_EXIT_USAGE;
  }
  series_t s[EM_CMD_MAX_RUNS] = {0};
  int ns = 0;
  for (; ns < o.nruns && rc == 0; ns++) {
    s[ns].color = palette[ns];
    rc = load_series(&o, o.runs[ns], &s[ns]);
  }
  if (rc == 0)
    rc = write_svg(o.svg, s, ns);
  for (int k = 0; k < ns; k++)
    free_series(&s[k]);
  em_source_close(&o.src);
  return rc;
}

/* ---------------------------------------------------------------- compare */

/* The i-th place of the union of the runs' places (sorted, distinct), into *place; false past the end. */
static bool nth_place(const series_t *s, int ns, int64_t after, bool first, int64_t *place)
{
  bool found = false;
  for (int k = 0; k < ns; k++)
    for (size_t i = 0; i < s[k].n; i++) {
      double x = xof(&s[k].v[i]);
      if (!isnan(x) && (first || (int64_t)x > after) && (!found || (int64_t)x < *place))
        *place = (int64_t)x, found = true;
    }
  return found;
}

static const em_result_view_t *at_place(const series_t *s, int64_t place)
{
  for (size_t i = 0; i < s->n; i++)
    if (!isnan(xof(&s->v[i])) && (int64_t)xof(&s->v[i]) == place)
      return &s->v[i];
  return NULL;
}

static void compare_row_json(cJSON *rows, const series_t *s, int ns, int64_t place)
{
  cJSON *row = cJSON_CreateObject(), *runs = cJSON_CreateObject();
  cJSON_AddNumberToObject(row, "place", (double)place);
  for (int k = 0; k < ns; k++) {
    const em_result_view_t *r = at_place(&s[k], place);
    cJSON *v = r ? cJSON_CreateObject() : cJSON_CreateNull();
    if (r) {
      em_json_add_opt(v, "emergence", !isnan(r->emergence), r->emergence);
      em_json_add_opt(v, "emergence_se", !isnan(r->emergence_se), r->emergence_se);
    }
    cJSON_AddItemToObject(runs, s[k].run, v);
  }
  cJSON_AddItemToObject(row, "runs", runs);
  cJSON_AddItemToArray(rows, row);
}

static void compare_table(const series_t *s, int ns, bool json)
{
  cJSON *doc = json ? cJSON_CreateObject() : NULL, *rows = json ? cJSON_AddArrayToObject(doc, "rows") : NULL;
  if (!json) {
    printf("%10s", "STEP");
    for (int k = 0; k < ns; k++)
      printf("  %24.24s", s[k].run); /* over its E and ± SE columns */
    printf("\n%10s", "");
    for (int k = 0; k < ns; k++)
      printf("  %15s %-8s", "E", s[k].v[s[k].n - 1].mode ? s[k].v[s[k].n - 1].mode : "");
    printf("\n");
  }
  int64_t place = 0;
  for (bool first = true; nth_place(s, ns, place, first, &place); first = false) {
    if (json) {
      compare_row_json(rows, s, ns, place);
      continue;
    }
    char at[32];
    const em_result_view_t *any = NULL;
    for (int k = 0; k < ns && !any; k++)
      any = at_place(&s[k], place);
    em_cmd_fmt_result_place(at, sizeof(at), any);
    printf("%10s", at);
    for (int k = 0; k < ns; k++) {
      const em_result_view_t *r = at_place(&s[k], place);
      char e[24] = "-", se[24] = "";
      if (r && !isnan(r->emergence))
        snprintf(e, sizeof(e), "%+.4f", r->emergence);
      if (r && !isnan(r->emergence_se))
        snprintf(se, sizeof(se), "± %.4f", r->emergence_se);
      printf("  %15s %-8s", e, se);
    }
    printf("\n");
  }
  if (json)
    em_cmd_print_json(doc);
  cJSON_Delete(doc);
}

int em_cmd_compare(int argc, char **argv)
{
  static const em_cmd_spec_t spec = {"compare", EM_RUN_MANY, EM_OPT_SVG,
    "emergectl compare: the E curves of several runs side by side, one row per step, each E with its\n"
    "standard error (and with --svg the same picture as plot).\n\n"
    "usage: emergectl compare RUN RUN... [--svg FILE|-] [SOURCE]\n\n"
    "  --svg FILE|-       also draw them (as emergectl plot)\n" EM_CMD_SOURCE_HELP "\nexamples:\n"
    "  emergectl compare sweep/lr1 sweep/lr2 sweep/lr3\n  emergectl compare lr1 lr2 --json | jq '.rows[-1]'\n\n"
    EM_CMD_EXIT_HELP};
  em_cmd_opts_t o;
  int rc = em_cmd_parse(&spec, argc, argv, &o);
  if (rc)
    return rc < 0 ? EM_EXIT_OK : rc;
  series_t s[EM_CMD_MAX_RUNS] = {0};
  int ns = 0;
  for (; ns < o.nruns && rc == 0; ns++) {
    s[ns].color = palette[ns];
    rc = load_series(&o, o.runs[ns], &s[ns]);
  }
  if (rc == 0 && modes_differ(s, ns))
    em_cli_error("compare", "warning: these runs were measured in different modes: their E values do not compare");
  if (rc == 0)
    compare_table(s, ns, o.json);
  if (rc == 0 && o.svg)
    rc = write_svg(o.svg, s, ns);
  for (int k = 0; k < ns; k++)
    free_series(&s[k]);
  em_source_close(&o.src);
  return rc;
}
