// SPDX-License-Identifier: MIT
// The emerge dashboard: the runs, E against step for the runs picked (overlaid, with its
// ±2 SE band), a trainer metric on a second axis, alerts on the curve, f(α) of a point on
// click, live from /api/v1/events. Plain SVG and no library: the page is small, loads
// with no network beyond the daemon, and needs no build step (docs/DEPLOY.md).
'use strict';

const COLORS = ['#1f6fd1', '#d1461f', '#2c9c4a', '#8d3fc4', '#c49a12', '#138a8a', '#c23b87', '#555'];
const SVGNS = 'http://www.w3.org/2000/svg';
const state = {
  runs: [],               // the runs reply
  selected: new Set(),    // run names overlaid
  data: new Map(),        // run -> {results: [...], alerts: [...]}
  color: new Map(),
  metric: '',
  smooth: 0,
  picked: null,           // {run, path}
};

const $ = (id) => document.getElementById(id);

async function getJSON(path) {
  const r = await fetch(path, {cache: 'no-store'});
  const j = await r.json();
  if (!j.ok) throw new Error(`${path}: ${j.error}`);
  return j;
}

function el(tag, attrs, parent, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

// A checkpoint's place in its run: its step, or its arrival number when nothing names one.
const place = (o) => (o.step !== null && o.step !== undefined ? o.step : o.arrival);
const placeText = (o) => (o.step !== null && o.step !== undefined ? String(o.step) : `#${o.arrival}`);
const num = (x, d = 4) => (typeof x === 'number' && isFinite(x) ? x.toFixed(d) : '—');

function colorOf(run) {
  if (!state.color.has(run)) state.color.set(run, COLORS[state.color.size % COLORS.length]);
  return state.color.get(run);
}

// ------------------------------------------------------------------ data

function mergeResult(run, r) {
  const d = state.data.get(run);
  if (!d) return false;
  const i = d.results.findIndex((x) => x.path === r.path);
  if (i >= 0 && d.results[i].seq >= r.seq) return false;
  if (i >= 0) d.results[i] = r; else d.results.push(r);
  d.results.sort((a, b) => place(a) - place(b));
  return true;
}

function mergeAlert(run, a) {
  const d = state.data.get(run);
  if (!d || d.alerts.some((x) => x.seq === a.seq)) return false;
  d.alerts.push(a);
  return true;
}

async function loadRun(run) {
  const enc = encodeURIComponent(run);
  const [h, a] = await Promise.all([getJSON(`/api/v1/history?run=${enc}`), getJSON(`/api/v1/alerts?run=${enc}`)]);
  // into what events that arrived while it loaded put there; the newer seq wins
  for (const r of h.results) mergeResult(run, r);
  for (const x of a.alerts) mergeAlert(run, x);
}

let runsTimer = null;
function refreshRunsSoon() {
  clearTimeout(runsTimer);
  runsTimer = setTimeout(() => loadRuns().catch(showError), 250);
}

async function loadRuns() {
  const [runs, status] = await Promise.all([getJSON('/api/v1/runs'), getJSON('/api/v1/status')]);
  state.runs = runs.runs;
  const s = status.status;
  $('status').textContent = `${s.watch} · ${s.mode} · queue ${s.queue} · running ${s.running} · seq ${s.last_seq}`;
  if (state.selected.size === 0 && state.runs.length) await pick(state.runs[0].run, true).catch(showError);
  drawRuns(); // whatever one run's history did: the table is drawn
}

async function pick(run, on) {
  if (on) {
    state.selected.add(run);
    if (!state.data.has(run)) state.data.set(run, {results: [], alerts: []}); // events while it loads
    if (!state.data.get(run).loaded) {
      await loadRun(run);
      state.data.get(run).loaded = true;
    }
  } else {
    state.selected.delete(run);
  }
  drawRuns();
  draw();
}

// ------------------------------------------------------------------ the runs table

function stateText(states) {
  return Object.entries(states || {}).map(([k, v]) => `${k} ${v}`).join(' · ');
}

function lastResult(run) {
  const d = state.data.get(run);
  return d && d.results.length ? d.results[d.results.length - 1] : null;
}

function drawRuns() {
  const body = $('runs').tBodies[0];
  body.replaceChildren();
  for (const r of state.runs) {
    const tr = body.insertRow();
    tr.dataset.run = r.run;
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = state.selected.has(r.run);
    box.dataset.run = r.run;
    box.addEventListener('change', () => pick(r.run, box.checked).catch(showError));
    tr.insertCell().appendChild(box);
    const name = tr.insertCell();
    name.className = 'run';
    name.textContent = r.run;
    name.title = r.dir;
    if (state.selected.has(r.run)) name.style.color = colorOf(r.run);
    tr.insertCell().textContent = `${r.checkpoints} (${stateText(r.states)})`;
    const last = lastResult(r.run);
    tr.insertCell().textContent = last && last.emergence !== null
      ? `${num(last.emergence)} ± ${num(last.emergence_se)}` : num(r.last_emergence);
    tr.insertCell().textContent = r.last_step === null ? '—' : r.last_step;
  }
}

// ------------------------------------------------------------------ the chart

// TensorBoard's smoothing: an exponential moving average, debiased at the start.
function smoothed(values, w) {
  let acc = 0, n = 0;
  return values.map((v) => {
    acc = acc * w + (1 - w) * v;
    n++;
    return w > 0 ? acc / (1 - Math.pow(w, n)) : v;
  });
}

function scale(d0, d1, r0, r1) {
  if (d0 === d1) { d0 -= 1; d1 += 1; }
  const f = (x) => r0 + ((x - d0) / (d1 - d0)) * (r1 - r0);
  f.domain = [d0, d1];
  return f;
}

function ticks(lo, hi, n) {
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n || 1)));
  const k = [1, 2, 5, 10].find((m) => (hi - lo) / (step * m) <= n) * step;
  const out = [];
  for (let t = Math.ceil(lo / k) * k; t <= hi + k * 1e-9; t += k) out.push(Math.abs(t) < k * 1e-6 ? 0 : +t.toPrecision(6));
  return out;
}

function seriesOf(run) {
  const d = state.data.get(run);
  const pts = (d ? d.results : []).filter((r) => typeof r.emergence === 'number');
  const e = smoothed(pts.map((r) => r.emergence), state.smooth);
  return pts.map((r, i) => ({r, x: place(r), e: r.emergence, s: e[i],
    se: typeof r.emergence_se === 'number' ? r.emergence_se : null,
    m: r.trainer && typeof r.trainer[state.metric] === 'number' ? r.trainer[state.metric] : null}));
}

function extent(series, pick) {
  let lo = Infinity, hi = -Infinity;
  for (const s of series) for (const p of s.pts) for (const v of pick(p)) if (v !== null && isFinite(v)) {
    lo = Math.min(lo, v); hi = Math.max(hi, v);
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

function drawAxes(svg, x, y, y2, box) {
  const g = el('g', {class: 'axis'}, svg);
  for (const t of ticks(y.domain[0], y.domain[1], 6)) {
    el('line', {x1: box.l, x2: box.r, y1: y(t), y2: y(t), class: 'grid'}, g);
    el('text', {x: box.l - 6, y: y(t) + 4, 'text-anchor': 'end'}, g, t);
  }
  for (const t of ticks(x.domain[0], x.domain[1], 8))
    el('text', {x: x(t), y: box.b + 16, 'text-anchor': 'middle'}, g, t);
  el('text', {x: box.l, y: box.t - 8}, g, 'E');
  el('text', {x: (box.l + box.r) / 2, y: box.b + 32, 'text-anchor': 'middle'}, g, 'step');
  if (y2) {
    for (const t of ticks(y2.domain[0], y2.domain[1], 6))
      el('text', {x: box.r + 6, y: y2(t) + 4}, g, t);
    el('text', {x: box.r, y: box.t - 8, 'text-anchor': 'end'}, g, state.metric);
  }
}

function drawBand(svg, pts, x, y, color) {
  const seg = [];
  const flush = () => {
    if (seg.length > 1) {
      const up = seg.map((p) => `${x(p.x)},${y(p.e + 2 * p.se)}`);
      const down = seg.slice().reverse().map((p) => `${x(p.x)},${y(p.e - 2 * p.se)}`);
      el('polygon', {points: up.concat(down).join(' '), fill: color, 'fill-opacity': 0.15, class: 'band'}, svg);
    }
    seg.length = 0;
  };
  for (const p of pts) { if (p.se === null) flush(); else seg.push(p); }
  flush();
}

function drawSeries(svg, run, pts, x, y, y2) {
  const color = colorOf(run);
  const g = el('g', {class: 'series', 'data-run': run}, svg);
  drawBand(g, pts, x, y, color);
  const line = (key, sc) => pts.filter((p) => p[key] !== null).map((p) => `${x(p.x)},${sc(p[key])}`).join(' ');
  if (state.smooth > 0) el('polyline', {points: line('e', y), fill: 'none', stroke: color, 'stroke-opacity': 0.3}, g);
  el('polyline', {points: line('s', y), fill: 'none', stroke: color, 'stroke-width': 2, class: 'e-line'}, g);
  if (y2) el('polyline', {points: line('m', y2), fill: 'none', stroke: color, 'stroke-dasharray': '5 4',
    class: 'metric-line'}, g);
  for (const p of pts) {
    const c = el('circle', {cx: x(p.x), cy: y(p.s), r: 4, fill: color, class: 'point',
      'data-run': run, 'data-step': placeText(p.r)}, g);
    if (state.picked && state.picked.run === run && state.picked.path === p.r.path) c.classList.add('picked');
    el('title', {}, c, `${run} step ${placeText(p.r)}: E ${num(p.e)} ± ${num(p.se)}`);
    c.addEventListener('click', () => { state.picked = {run, path: p.r.path}; drawSpectrum(run, p.r); draw(); });
  }
  const d = state.data.get(run);
  for (const a of d ? d.alerts : []) {
    const p = pts.find((q) => q.x === place(a)) || pts[pts.length - 1];
    if (!p) continue;
    const m = el('text', {x: x(p.x), y: y(p.s) - 8, 'text-anchor': 'middle', fill: '#b00', class: 'alert-mark',
      'data-run': run}, g, '▼');
    el('title', {}, m, `${a.rule}: ${a.reason}`);
  }
}

function drawLegend(series) {
  const legend = $('legend');
  legend.replaceChildren();
  for (const s of series) {
    const span = document.createElement('span');
    span.style.color = colorOf(s.run);
    const last = s.pts.length ? s.pts[s.pts.length - 1].r : null;
    span.textContent = `${s.run} (${last ? last.mode : 'no result yet'}, ${s.pts.length} results)`;
    legend.appendChild(span);
  }
  const modes = new Set(series.flatMap((s) => s.pts.map((p) => p.r.mode)));
  $('mode-warning').hidden = modes.size < 2;
}

function updateMetricChoices() {
  const keys = new Set();
  for (const run of state.selected)
    for (const r of (state.data.get(run) || {results: []}).results)
      for (const [k, v] of Object.entries(r.trainer || {})) if (typeof v === 'number') keys.add(k);
  const sel = $('metric');
  const have = new Set([...sel.options].map((o) => o.value));
  for (const k of [...keys].sort()) if (!have.has(k)) sel.add(new Option(k, k));
}

function draw() {
  updateMetricChoices();
  const svg = $('chart');
  svg.replaceChildren();
  const box = {l: 60, r: 840, t: 24, b: 370};
  const series = [...state.selected].map((run) => ({run, pts: seriesOf(run)}));
  const [x0, x1] = extent(series, (p) => [p.x]);
  const [y0, y1] = extent(series, (p) => [p.s, p.se === null ? null : p.e - 2 * p.se,
    p.se === null ? null : p.e + 2 * p.se]);
  const pad = (y1 - y0) * 0.05 || 0.01;
  const x = scale(x0, x1, box.l, box.r), y = scale(y0 - pad, y1 + pad, box.b, box.t);
  const [m0, m1] = extent(series, (p) => [p.m]);
  const y2 = state.metric ? scale(m0, m1, box.b, box.t) : null;
  drawAxes(svg, x, y, y2, box);
  for (const s of series) drawSeries(svg, s.run, s.pts, x, y, y2);
  drawLegend(series);
}

// ------------------------------------------------------------------ the spectrum

function drawSpectrum(run, r) {
  const svg = $('spectrum');
  svg.replaceChildren();
  $('spectrum-title').textContent = `${run}, step ${placeText(r)}`;
  const box = {l: 44, r: 410, t: 28, b: 262};
  const a = r.alpha || [], f = r.f || [];
  const pts = a.map((v, i) => ({x: v, y: f[i]})).filter((p) => isFinite(p.x) && isFinite(p.y));
  const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
  const x = scale(Math.min(...xs, r.alpha0), Math.max(...xs, r.alpha0), box.l, box.r);
  const y = scale(Math.min(...ys), Math.max(...ys), box.b, box.t);
  const g = el('g', {class: 'axis'}, svg);
  for (const t of ticks(x.domain[0], x.domain[1], 6)) el('text', {x: x(t), y: box.b + 16, 'text-anchor': 'middle'}, g, t);
  for (const t of ticks(y.domain[0], y.domain[1], 5)) el('text', {x: box.l - 6, y: y(t) + 4, 'text-anchor': 'end'}, g, t);
  el('text', {x: box.r, y: box.b + 32, 'text-anchor': 'end'}, g, 'α');
  el('text', {x: box.l - 6, y: 12, 'text-anchor': 'end'}, g, 'f(α)');
  el('line', {x1: x(r.alpha0), x2: x(r.alpha0), y1: box.t, y2: box.b, stroke: '#999', 'stroke-dasharray': '3 3'}, svg);
  el('polyline', {points: pts.map((p) => `${x(p.x)},${y(p.y)}`).join(' '), fill: 'none', stroke: colorOf(run),
    'stroke-width': 2, id: 'spectrum-line'}, svg);
  const details = $('details');
  details.replaceChildren();
  const rows = [['E', `${num(r.emergence)} ± ${num(r.emergence_se)}`], ['α0', `${num(r.alpha0)} ± ${num(r.alpha0_se)}`],
    ['width', `${num(r.width)} ± ${num(r.width_se)}`], ['mode', r.mode], ['arch', r.arch], ['nodes', r.nodes],
    ['coverage', typeof r.coverage === 'number' ? `${(r.coverage * 100).toFixed(0)}%` : '—'],
    ['tensors', (r.tensors || []).length], ['skipped', (r.skipped || []).length],
    ['baseline', r.baseline_step === null || r.baseline_step === undefined ? '—' : r.baseline_step],
    ['analysis', `${num(r.elapsed_ms, 1)} ms`], ['path', r.path]];
  for (const [k, v] of Object.entries(r.trainer || {})) rows.push([k, typeof v === 'number' ? num(v) : v]);
  for (const [k, v] of rows) {
    details.appendChild(document.createElement('dt')).textContent = k;
    details.appendChild(document.createElement('dd')).textContent = v;
  }
}

// ------------------------------------------------------------------ live

function follow(since) {
  const es = new EventSource(`/api/v1/events?since=${since}`);
  es.onopen = () => $('live').classList.add('on');
  es.onerror = () => $('live').classList.remove('on'); // the browser reconnects with Last-Event-ID
  es.addEventListener('result', (ev) => {
    const r = JSON.parse(ev.data);
    if (mergeResult(r.run, r) && state.selected.has(r.run)) draw();
    refreshRunsSoon();
  });
  es.addEventListener('alert', (ev) => {
    const a = JSON.parse(ev.data);
    if (mergeAlert(a.run, a) && state.selected.has(a.run)) draw();
  });
  es.addEventListener('checkpoint', () => refreshRunsSoon());
}

function showError(e) {
  $('status').textContent = String(e.message || e);
}

async function start() {
  $('smooth').addEventListener('input', (ev) => {
    state.smooth = +ev.target.value;
    $('smooth-value').textContent = ev.target.value;
    draw();
  });
  $('metric').addEventListener('change', (ev) => { state.metric = ev.target.value; draw(); });
  const status = await getJSON('/api/v1/status');
  follow(status.status.last_seq); // first, so nothing committed while the page loads is missed
  await loadRuns();
  draw();
}

start().catch(showError);
