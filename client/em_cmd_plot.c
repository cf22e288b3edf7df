/* SPDX-License-Identifier: MIT */
/* emergectl plot RUN --svg FILE: a standalone SVG, written here (no external tools):
 * E against step, with the trainer's own metric on a second axis when present and the
 * run's early-stop alerts as marked steps, and the f(alpha) spectra of the baseline and
 * the latest checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
static const char *pick_metric(const cJSON *results)
{
  const char *best = NULL;
  const cJSON *r, *m;
  cJSON_ArrayForEach(r, results)
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(r, "trainer"))
    {
      if (cJSON_IsNumber(m) && strstr(m->string, "acc"))
        return m->string;
      if (cJSON_IsNumber(m) && strstr(m->string, "loss") && !best)
        best = m->string;
    }
  return best;
}

static double field(const cJSON *o, const char *k)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* A dashed vertical line at each alert's step, its rule above, its reason on hover. */
static void alert_marks(FILE *f, const panel_t *p, const cJSON *alerts)
{
  const cJSON *a;
  cJSON_ArrayForEach(a, alerts)
  {
    double step = field(a, "step");
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(a, "rule");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(a, "reason");
    if (isnan(step) || step < p->xlo || step > p->xhi)
      continue;
    double x = px(p, step);
    fprintf(f, "<g class=\"alert\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ff7f0e\" "
               "stroke-width=\"1.5\" stroke-dasharray=\"3 3\"/><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
               "fill=\"#ff7f0e\" text-anchor=\"middle\">", x, x, p->y0, p->y0 + p->h, x, p->y0 - 2);
    xml_text(f, cJSON_IsString(rule) ? rule->valuestring : "alert");
    fprintf(f, "</text><title>step %.0f: ", step);
    xml_text(f, cJSON_IsString(reason) ? reason->valuestring : "");
    fputs("</title></g>\n", f);
  }
}

static void emergence_panel(FILE *f, const cJSON *results, const cJSON *alerts, const char *run)
{
  panel_t p = {ML, MT, W - ML - MR, PH, INFINITY, -INFINITY, INFINITY, -INFINITY};
  const char *metric = pick_metric(results);
  double mlo = INFINITY, mhi = -INFINITY;
  const cJSON *r;
  cJSON_ArrayForEach(r, results)
  {
    double x = field(r, "step"), y = field(r, "emergence"), m = NAN;
    if (metric)
      m = field(cJSON_GetObjectItemCaseSensitive(r, "trainer"), metric);
    p.xlo = fmin(p.xlo, x), p.xhi = fmax(p.xhi, x);
    if (!isnan(y))
      p.ylo = fmin(p.ylo, y), p.yhi = fmax(p.yhi, y);
    if (!isnan(m))
      mlo = fmin(mlo, m), mhi = fmax(mhi, m);
  }
  settle(&p.xlo, &p.xhi);
  settle(&p.ylo, &p.yhi);
  char title[1200];
  snprintf(title, sizeof(title), "Degree of emergence E: ");
  axes(f, &p, "training step", "E", "");
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">%s", ML, MT - 10, title);
  xml_text(f, run);
  fputs("</text>\n", f);
  fputs("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"", f);
  cJSON_ArrayForEach(r, results)
    if (!isnan(field(r, "emergence")))
      fprintf(f, "%.1f,%.1f ", px(&p, field(r, "step")), py(&p, field(r, "emergence")));
  fputs("\"/>\n", f);
  cJSON_ArrayForEach(r, results)
    if (!isnan(field(r, "emergence")))
      fprintf(f, "<circle class=\"point\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#1f77b4\"><title>step %.0f: "
                 "E %.4f</title></circle>\n", px(&p, field(r, "step")), py(&p, field(r, "emergence")),
              field(r, "step"), field(r, "emergence"));
  alert_marks(f, &p, alerts);
  legend(f, ML + 10, MT + 14, "#1f77b4", "", "E (left axis)");
  if (!metric || !(mhi >= mlo))
    return;
  panel_t m = p;
  m.ylo = mlo, m.yhi = mhi;
  settle(&m.ylo, &m.yhi);
  fputs("<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"6 4\" points=\"", f);
  cJSON_ArrayForEach(r, results)
  {
    double v = field(cJSON_GetObjectItemCaseSensitive(r, "trainer"), metric);
    if (!isnan(v))
      fprintf(f, "%.1f,%.1f ", px(&m, field(r, "step")), py(&m, v));
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

static void spectrum_line(FILE *f, const panel_t *p, const cJSON *r, const char *color)
{
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(r, "alpha"), *fa = cJSON_GetObjectItemCaseSensitive(r, "f");
  fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
  for (int i = 0; i < cJSON_GetArraySize(a) && i < cJSON_GetArraySize(fa); i++)
    fprintf(f, "%.1f,%.1f ", px(p, cJSON_GetArrayItem(a, i)->valuedouble),
            py(p, cJSON_GetArrayItem(fa, i)->valuedouble));
  fputs("\"/>\n", f);
}

static void spectra_panel(FILE *f, const cJSON *base, const cJSON *last)
{
  panel_t p = {ML, MT + PH + 90, W - ML - MR, PH, INFINITY, -INFINITY, INFINITY, -INFINITY};
  const cJSON *pair[2] = {base, last};
  for (int k = 0; k < 2; k++) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(pair[k], "alpha"), *v;
    cJSON_ArrayForEach(v, a) p.xlo = fmin(p.xlo, v->valuedouble), p.xhi = fmax(p.xhi, v->valuedouble);
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(pair[k], "f"))
      p.ylo = fmin(p.ylo, v->valuedouble), p.yhi = fmax(p.yhi, v->valuedouble);
  }
  settle(&p.xlo, &p.xhi);
  settle(&p.ylo, &p.yhi);
  axes(f, &p, "alpha", "f(alpha)", "Multifractal spectrum f(alpha)");
  spectrum_line(f, &p, base, "#7f7f7f");
  spectrum_line(f, &p, last, "#2ca02c");
  char label[64];
  snprintf(label, sizeof(label), "baseline, step %.0f", field(base, "step"));
  legend(f, p.x0 + 10, p.y0 + 14, "#7f7f7f", "", label);
  snprintf(label, sizeof(label), "latest, step %.0f", field(last, "step"));
  legend(f, p.x0 + 10, p.y0 + 32, "#2ca02c", "", label);
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
  cJSON *reply = NULL, *alerts = NULL;
  if ((rc = em_cmd_request("plot", &o, EM_API_HISTORY, &reply)) != 0 ||
      (rc = em_cmd_request("plot", &o, EM_API_ALERTS, &alerts)) != 0)
    goto out;
  const cJSON *results = cJSON_GetObjectItemCaseSensitive(reply, "results");
  int n = cJSON_GetArraySize(results);
  if (n == 0) {
    em_cli_error("plot", "run '%s' has no results yet", o.run);
    rc = EM_EXIT_FAIL;
    goto out;
  }
  FILE *f = fopen(o.svg, "w");
  if (!f) {
    em_cli_error("plot", "%s: cannot write", o.svg);
    rc = EM_EXIT_FAIL;
    goto out;
  }
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
             "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n<rect width=\"100%%\" "
             "height=\"100%%\" fill=\"white\"/>\n", W, 2 * PH + 190, W, 2 * PH + 190);
  emergence_panel(f, results, cJSON_GetObjectItemCaseSensitive(alerts, "alerts"), o.run);
  spectra_panel(f, cJSON_GetArrayItem(results, 0), cJSON_GetArrayItem(results, n - 1));
  fputs("</svg>\n", f);
  if (fclose(f) != 0) {
    em_cli_error("plot", "%s: write failed", o.svg);
    rc = EM_EXIT_FAIL;
  } else {
    fprintf(stderr, "emergectl: plot: %d results of %s written to %s\n", n, o.run, o.svg);
  }
out:
  cJSON_Delete(reply);
  cJSON_Delete(alerts);
  em_source_close(&o.src);
  return rc;
}
