/* SPDX-License-Identifier: MIT */
/* TensorBoard event files: TFRecord framing (length, masked CRC-32C of the length, the
 * data, masked CRC-32C of the data) around TensorFlow Event protocol buffers, encoded
 * with protobuf-c from proto/tfevent.proto (TensorFlow's field numbers). What emerged
 * writes per run (daemon/em_journal.c): a file_version event, a custom-scalars layout
 * drawing E with its ±2 SE band as one margin chart, and per result the scalars
 * emerge/emergence, emerge/emergence_lo, emerge/emergence_hi, emerge/alpha0,
 * emerge/width at the checkpoint's step. */
#ifndef EM_TFEVENTS_H
#define EM_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

typedef struct em_tf_scalar {
  const char *tag;
  float value;
} em_tf_scalar_t;

/* Each returns one framed record (caller frees), *len its size; NULL on OOM. */
uint8_t *em_tf_version_record(double wall_time, size_t *len);
uint8_t *em_tf_layout_record(double wall_time, size_t *len);
uint8_t *em_tf_scalars_record(double wall_time, int64_t step, const em_tf_scalar_t *v, size_t n, size_t *len);

/* How many leading bytes of buf are whole records with both CRCs right: a file torn by
 * a crash is cut back to this, so no reader ever stops at a corrupt record. */
size_t em_tf_valid_prefix(const uint8_t *buf, size_t len);

#endif
