/* SPDX-License-Identifier: MIT */
/* emergectl plot RUN --svg FILE: a standalone SVG, written here (no external tools):
 * E against step, with the trainer's own metric on a second axis when present and the
 * run's early-stop alerts as marked steps, and the f(alpha) spectra of the baseline and
 * the latest checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_alert.h"
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

/* E +- 2 SE as one filled polygon: the upper edge forward, the lower edge back. */
static void band_polygon(FILE *f, const panel_t *p, const em_result_view_t *v, size_t n)
{
  fputs("<polygon class=\"band\" fill=\"#1f77b4\" fill-opacity=\"0.18\" stroke=\"none\" points=\"", f);
  for (size_t i = 0; i < n; i++)
    if (drawable(&v[i]))
      fprintf(f, "%.1f,%.1f ", px(p, xof(&v[i])), py(p, v[i].emergence + band(&v[i])));
  for (size_t i = n; i-- > 0;)
    if (drawable(&v[i]))
      fprintf(f, "%.1f,%.1f ", px(p, xof(&v[i])), py(p, v[i].emergence - band(&v[i])));
  fputs("\"/>\n", f);
}

static void metric_axis(FILE *f, const panel_t *p, const em_result_view_t *v, size_t n, const char *metric)
{
  panel_t m = *p;
  m.ylo = INFINITY, m.yhi = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double y = em_result_metric(&v[i], metric);
    if (!isnan(xof(&v[i])) && !isnan(y))
      m.ylo = fmin(m.ylo, y), m.yhi = fmax(m.yhi, y);
  }
  if (!(m.yhi >= m.ylo))
    return;
  settle(&m.ylo, &m.yhi);
  fputs("<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"6 4\" points=\"", f);
  for (size_t i = 0; i < n; i++) {
    double y = em_result_metric(&v[i], metric);
    if (!isnan(xof(&v[i])) && !isnan(y))
      fprintf(f, "%.1f,%.1f ", px(&m, xof(&v[i])), py(&m, y));
  }
  fputs("\"/>\n", f);
  double ms = nice_step(m.ylo, m.yhi);
  for (double y = ceil(m.ylo / ms) * ms; y <= m.yhi; y += ms)
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#d62728\">%.6g</text>\n", m.x0 + m.w + 6,
            py(&m, y) + 4, fabs(y) < ms * 1e-9 ? 0.0 : y);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" fill=\"#d62728\" text-anchor=\"middle\" "
             "transform=\"rotate(90 %.1f %.1f)\">", m.x0 + m.w + 55, m.y0 + m.h / 2, m.x0 + m.w + 55, m.y0 + m.h / 2);
  xml_text(f, metric);
  fputs(" (right axis)</text>\n", f);
  legend(f, ML + 10, MT + 32, "#d62728", " stroke-dasharray=\"6 4\"", metric);
}

static void emergence_panel(FILE *f, const em_result_view_t *v, size_t n, const em_alert_t *alerts, size_t nalerts,
                            const char *run)
{
  panel_t p = {ML, MT, W - ML - MR, PH, INFINITY, -INFINITY, INFINITY, -INFINITY};
  for (size_t i = 0; i < n; i++) {
    if (!isnan(xof(&v[i])))
      p.xlo = fmin(p.xlo, xof(&v[i])), p.xhi = fmax(p.xhi, xof(&v[i]));
    if (drawable(&v[i]))
      p.ylo = fmin(p.ylo, v[i].emergence - band(&v[i])), p.yhi = fmax(p.yhi, v[i].emergence + band(&v[i]));
  }
  settle(&p.xlo, &p.xhi);
  settle(&p.ylo, &p.yhi);
  axes(f, &p, any_by_arrival(v, n) ? "checkpoint, in arrival order (no step in the names)" : "training step", "E",
       "");
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">Degree of emergence E: ", ML, MT - 10);
  xml_text(f, run);
  fputs("</text>\n", f);
  band_polygon(f, &p, v, n);
  fputs("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"", f);
  for (size_t i = 0; i < n; i++)
    if (drawable(&v[i]))
      fprintf(f, "%.1f,%.1f ", px(&p, xof(&v[i])), py(&p, v[i].emergence));
  fputs("\"/>\n", f);
  for (size_t i = 0; i < n; i++) {
    char at[64];
    if (!drawable(&v[i]))
      continue;
    place_label(at, sizeof(at), &v[i]);
    fprintf(f, "<circle class=\"point\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#1f77b4\"><title>%s: "
               "E %.4f ± %.4f (SE)</title></circle>\n", px(&p, xof(&v[i])), py(&p, v[i].emergence), at,
            v[i].emergence, band(&v[i]) / 2);
  }
  alert_marks(f, &p, alerts, nalerts);
  legend(f, ML + 10, MT + 14, "#1f77b4", "", "E ± 2 SE (left axis)");
  const char *metric = pick_metric(v, n);
  if (metric)
    metric_axis(f, &p, v, n, metric);
}

static void spectrum_line(FILE *f, const panel_t *p, const em_result_view_t *r, const char *color)
{
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
  for (size_t i = 0; i < r->nspec; i++)
    fprintf(f, "%.1f,%.1f ", px(p, r->alpha[i]), py(p, r->f[i]));
  fputs("\"/>\n", f);
}

static void spectra_panel(FILE *f, const em_result_view_t *base, const em_result_view_t *last)
{
  panel_t p = {ML, MT + PH + 90, W - ML - MR, PH, INFINITY, -INFINITY, INFINITY, -INFINITY};
  const em_result_view_t *pair[2] = {base, last};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < pair[k]->nspec; i++) {
      p.xlo = fmin(p.xlo, pair[k]->alpha[i]), p.xhi = fmax(p.xhi, pair[k]->alpha[i]);
      p.ylo = fmin(p.ylo, pair[k]->f[i]), p.yhi = fmax(p.yhi, pair[k]->f[i]);
    }
  settle(&p.xlo, &p.xhi);
  settle(&p.ylo, &p.yhi);
  axes(f, &p, "alpha", "f(alpha)", "Multifractal spectrum f(alpha)");
  spectrum_line(f, &p, base, "#7f7f7f");
  spectrum_line(f, &p, last, "#2ca02c");
  char label[96], at[64];
  place_label(at, sizeof(at), base);
  snprintf(label, sizeof(label), "baseline, %s", at);
  legend(f, p.x0 + 10, p.y0 + 14, "#7f7f7f", "", label);
  place_label(at, sizeof(at), last);
  snprintf(label, sizeof(label), "latest, %s", at);
  legend(f, p.x0 + 10, p.y0 + 32, "#2ca02c", "", label);
}

static int write_svg(const char *path, const em_result_view_t *v, size_t n, const em_alert_t *alerts, size_t nalerts,
                     const char *run)
{
  FILE *f = fopen(path, "w");
  if (!f) {
    em_cli_error("plot", "%s: cannot write", path);
    return EM_EXIT_FAIL;
  }
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
             "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n<rect width=\"100%%\" "
             "height=\"100%%\" fill=\"white\"/>\n", W, 2 * PH + 190, W, 2 * PH + 190);
  emergence_panel(f, v, n, alerts, nalerts, run);
  spectra_panel(f, &v[0], &v[n - 1]);
  fputs("</svg>\n", f);
  if (fclose(f) != 0) {
    em_cli_error("plot", "%s: write failed", path);
    return EM_EXIT_FAIL;
  }
  fprintf(stderr, "emergectl: plot: %zu results of %s written to %s\n", n, run, path);
  return EM_EXIT_OK;
}

int em_cmd_plot(int argc, char **argv)
{
  em_cmd_opts_t o;
  int rc = em_cmd_parse("plot", argc, argv, &o, EM_RUN_REQUIRED);
  if (rc) {
    if (rc < 0)
      printf("usage: emergectl plot RUN --svg FILE [--api ENDPOINT | --db FILE|ROOT]\n");
    return rc < 0 ? EM_EXIT_OK : rc;
  }
  if (!o.svg) {
    em_cli_error("plot", "--svg FILE is required");
    return EM_EXIT_USAGE;
  }
  cJSON *reply = NULL, *alerts_reply = NULL;
  em_result_view_t *v = NULL;
  em_alert_t *alerts = NULL;
  size_t n = 0, nalerts = 0;
  char err[200];
  if ((rc = em_cmd_request("plot", &o, EM_API_HISTORY, &reply)) != 0 ||
      (rc = em_cmd_request("plot", &o, EM_API_ALERTS, &alerts_reply)) != 0)
    goto out;
  if (em_results_decode(reply, &v, &n, err, sizeof(err)) != 0) {
    em_cli_error("plot", "malformed reply: %s", err);
    rc = EM_EXIT_FAIL;
  } else if (n == 0) {
    em_cli_error("plot", "run '%s' has no results yet", o.run);
    rc = EM_EXIT_FAIL;
  } else {
    alerts = decode_alerts(alerts_reply, &nalerts);
    rc = write_svg(o.svg, v, n, alerts, nalerts, o.run);
  }
out:
  for (size_t i = 0; i < nalerts; i++)
    em_alert_free(&alerts[i]);
  free(alerts);
  em_results_free(v, n);
  cJSON_Delete(reply);
  cJSON_Delete(alerts_reply);
  em_source_close(&o.src);
  return rc;
}
