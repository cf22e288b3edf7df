/* SPDX-License-Identifier: MIT */
/* Names that daemon, client and training job must agree on (proto/PROTOCOL.md): the
 * checkpoint states, PUB topics, and where a run's stop file lives. */
#ifndef EM_WIRE_H
#define EM_WIRE_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The folder emerge owns inside a watch root and inside each run directory. */
#define EM_DOT_DIR ".emerge"
#define EM_STOP_FILE "STOP"       /* RUN_DIR/.emerge/STOP: an alert asks the job to stop */

typedef enum em_state {
  EM_STATE_QUEUED,
  EM_STATE_DONE,
  EM_STATE_FAILED,       /* with the error */
  EM_STATE_VANISHED,     /* deleted before it could be read */
  EM_STATE_NONFINITE,    /* NaN/Inf among the weights read */
  EM_STATE_UNSUPPORTED,  /* a format this version cannot read, with the reason and advice */
  EM_STATE_COUNT
} em_state_t;

const char *em_state_name(em_state_t s);
/* -1 when name is no state. */
int em_state_parse(const char *name, em_state_t *out);

/* "<kind>/<run>/" (kind: "result", "alert", "checkpoint") or "status/" (run NULL) into buf; false
 * when it does not fit. */
bool em_topic(char *buf, size_t len, const char *kind, const char *run);
/* RUN_DIR/.emerge and RUN_DIR/.emerge/STOP; false when they do not fit. */
bool em_stop_dir(char *buf, size_t len, const char *run_dir);
bool em_stop_path(char *buf, size_t len, const char *run_dir);

/* Adds key: number, or null when has is false. */
void em_json_add_opt(cJSON *o, const char *key, bool has, double v);
/* Fields of untrusted objects: a string (NULL when absent or not one), a number (NaN
 * when absent or not one). */
const char *em_json_str(const cJSON *o, const char *key);
double em_json_num(const cJSON *o, const char *key);
/* An integer field: false unless it is a number that is an integer in int64 range. */
bool em_json_int(const cJSON *o, const char *key, int64_t *out);

/* A checkpoint's place in its run (PROTOCOL.md "Steps"): its training step, or, when
 * nothing names one (by_arrival), "step": null and "arrival": the number the daemon gave
 * it in the order it first saw the run's checkpoints. place orders a run either way. */
void em_json_add_place(cJSON *o, int64_t place, bool by_arrival);
/* Reads it back; false when neither an integer step nor an integer arrival is there. */
bool em_json_place(const cJSON *o, int64_t *place, bool *by_arrival);

#endif
