/* SPDX-License-Identifier: MIT */
/* The journal thread: what each committed message also becomes outside the database, in
 * commit order, off the loop thread (these are file writes in a tree others write to).
 *
 * - RUN_DIR/.emerge/results.jsonl: every committed result, alert and checkpoint event of
 *   the run, one JSON object per line (proto/PROTOCOL.md "results.jsonl"), so the training
 *   job's callbacks read E without a ZeroMQ client. Each line is one write(2) with
 *   O_APPEND; one that fails half-way is cut back, so readers never meet half a line
 *   before a complete one.
 * - With `tensorboard` set, TENSORBOARD/<run>/events.out.tfevents.0.emerged: TensorBoard
 *   scalars of each result (proto/em_tfevents.h). A record torn by a crash is cut off the
 *   first time the file is opened again. */
#ifndef EM_JOURNAL_H
#define EM_JOURNAL_H

#include <uv.h>

#include "em_store.h"

#define EM_RESULTS_FILE "results.jsonl"
#define EM_TB_FILE "events.out.tfevents.0.emerged"

typedef struct em_journal em_journal_t;

/* tensorboard: the event files' root, or NULL. 0, or -errno with err. Loop thread. */
int em_journal_start(em_journal_t **out, uv_loop_t *loop, const char *tensorboard, char *err, size_t errlen);
/* A message of run (its directory run_dir), committed. Loop thread. */
void em_journal_append(em_journal_t *j, const char *run, const char *run_dir, const em_pub_t *pub);
/* Writes what is queued, then stops. Loop thread. */
void em_journal_stop(em_journal_t **self_p);

#endif
