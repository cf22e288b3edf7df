/* SPDX-License-Identifier: MIT */
#include "em_tfevents.h"

#include <stdlib.h>
#include <string.h>

#include "em_crc32c.h"
#include "tfevent.pb-c.h"

#define DT_STRING 7
#define MAX_SCALARS 16

static uint32_t masked_crc(const void *data, size_t len)
{
  uint32_t c = em_crc32c(data, len);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *p, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes)
{
  uint64_t v = 0;
  for (int i = bytes; i-- > 0;)
    v = v << 8 | p[i];
  return v;
}

/* The event, packed and framed. */
static uint8_t *frame(const Emerge__Tf__Event *ev, size_t *len)
{
  size_t n = emerge__tf__event__get_packed_size(ev);
  uint8_t *r = malloc(n + 16);
  if (!r)
    return NULL;
  put_le(r, n, 8);
  put_le(r + 8, masked_crc(r, 8), 4);
  emerge__tf__event__pack(ev, r + 12);
  put_le(r + 12 + n, masked_crc(r + 12, n), 4);
  *len = n + 16;
  return r;
}

uint8_t *em_tf_version_record(double wall_time, size_t *len)
{
  Emerge__Tf__Event ev = EMERGE__TF__EVENT__INIT;
  ev.wall_time = wall_time;
  ev.what_case = EMERGE__TF__EVENT__WHAT_FILE_VERSION;
  ev.file_version = "brain.Event:2";
  return frame(&ev, len);
}

uint8_t *em_tf_scalars_record(double wall_time, int64_t step, const em_tf_scalar_t *v, size_t n, size_t *len)
{
  Emerge__Tf__Summary__Value values[MAX_SCALARS], *ptrs[MAX_SCALARS];
  if (n > MAX_SCALARS)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    values[i] = (Emerge__Tf__Summary__Value)EMERGE__TF__SUMMARY__VALUE__INIT;
    values[i].tag = (char *)v[i].tag;
    values[i].value_case = EMERGE__TF__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    values[i].simple_value = v[i].value;
    ptrs[i] = &values[i];
  }
  Emerge__Tf__Summary summary = EMERGE__TF__SUMMARY__INIT;
  summary.n_value = n;
  summary.value = ptrs;
  Emerge__Tf__Event ev = EMERGE__TF__EVENT__INIT;
  ev.wall_time = wall_time;
  ev.step = step;
  ev.what_case = EMERGE__TF__EVENT__WHAT_SUMMARY;
  ev.summary = &summary;
  return frame(&ev, len);
}

/* The custom-scalars layout: E with its band as a margin chart, alpha0 and width as lines. */
static uint8_t *packed_layout(size_t *len)
{
  Emerge__Tf__MarginChartContent__Series series = EMERGE__TF__MARGIN_CHART_CONTENT__SERIES__INIT, *sp = &series;
  series.value = "emerge/emergence";
  series.lower = "emerge/emergence_lo";
  series.upper = "emerge/emergence_hi";
  Emerge__Tf__MarginChartContent margin = EMERGE__TF__MARGIN_CHART_CONTENT__INIT;
  margin.n_series = 1;
  margin.series = &sp;
  char *spectrum_tags[] = {"emerge/alpha0", "emerge/width"};
  Emerge__Tf__MultilineChartContent lines = EMERGE__TF__MULTILINE_CHART_CONTENT__INIT;
  lines.n_tag = 2;
  lines.tag = spectrum_tags;
  Emerge__Tf__Chart e = EMERGE__TF__CHART__INIT, spectrum = EMERGE__TF__CHART__INIT, *charts[] = {&e, &spectrum};
  e.title = "degree of emergence E ± 2 SE";
  e.content_case = EMERGE__TF__CHART__CONTENT_MARGIN;
  e.margin = &margin;
  spectrum.title = "spectrum: alpha0 and width";
  spectrum.content_case = EMERGE__TF__CHART__CONTENT_MULTILINE;
  spectrum.multiline = &lines;
  Emerge__Tf__Category cat = EMERGE__TF__CATEGORY__INIT, *cp = &cat;
  cat.title = "emerge";
  cat.n_chart = 2;
  cat.chart = charts;
  Emerge__Tf__Layout layout = EMERGE__TF__LAYOUT__INIT;
  layout.n_category = 1;
  layout.category = &cp;
  *len = emerge__tf__layout__get_packed_size(&layout);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf)
    emerge__tf__layout__pack(&layout, buf);
  return buf;
}

uint8_t *em_tf_layout_record(double wall_time, size_t *len)
{
  ProtobufCBinaryData bytes;
  bytes.data = packed_layout(&bytes.len);
  if (!bytes.data)
    return NULL;
  Emerge__Tf__TensorShapeProto shape = EMERGE__TF__TENSOR_SHAPE_PROTO__INIT;
  Emerge__Tf__TensorProto tensor = EMERGE__TF__TENSOR_PROTO__INIT;
  tensor.dtype = DT_STRING;
  tensor.tensor_shape = &shape;
  tensor.n_string_val = 1;
  tensor.string_val = &bytes;
  Emerge__Tf__SummaryMetadata__PluginData plugin = EMERGE__TF__SUMMARY_METADATA__PLUGIN_DATA__INIT;
  plugin.plugin_name = "custom_scalars";
  Emerge__Tf__SummaryMetadata meta = EMERGE__TF__SUMMARY_METADATA__INIT;
  meta.plugin_data = &plugin;
  Emerge__Tf__Summary__Value value = EMERGE__TF__SUMMARY__VALUE__INIT, *vp = &value;
  value.tag = "custom_scalars__config__";
  value.metadata = &meta;
  value.value_case = EMERGE__TF__SUMMARY__VALUE__VALUE_TENSOR;
  value.tensor = &tensor;
  Emerge__Tf__Summary summary = EMERGE__TF__SUMMARY__INIT;
  summary.n_value = 1;
  summary.value = &vp;
  Emerge__Tf__Event ev = EMERGE__TF__EVENT__INIT;
  ev.wall_time = wall_time;
  ev.what_case = EMERGE__TF__EVENT__WHAT_SUMMARY;
  ev.summary = &summary;
  uint8_t *r = frame(&ev, len);
  free(bytes.data);
  return r;
}

size_t em_tf_valid_prefix(const uint8_t *buf, size_t len)
{
  size_t off = 0;
  while (len - off >= 16) {
    uint64_t n = get_le(buf + off, 8);
    if (get_le(buf + off + 8, 4) != masked_crc(buf + off, 8) || n > len - off - 16 ||
        get_le(buf + off + 12 + n, 4) != masked_crc(buf + off + 12, (size_t)n))
      break;
    off += 16 + (size_t)n;
  }
  return off;
}
