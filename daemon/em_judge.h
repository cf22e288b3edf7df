/* SPDX-License-Identifier: MIT */
/* The store thread's half of the early-stop rules. After a result commits (or a
 * checkpoint is found non-finite), each rule replays the run's history and every firing
 * not yet recorded becomes an alert row with its own seq, in the same transaction: rows
 * exactly once, published only after the commit. */
#ifndef EM_JUDGE_H
#define EM_JUDGE_H

#include <sqlite3.h>

#include "em_rules.h"
#include "em_store.h"

/* Judges run rid (named op->run) after a new result: every rule over its results in
 * step order. Alert messages are added to op. An SQLite code. */
int em_judge_results(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op, int64_t rid);
/* Judges a checkpoint of run rid just recorded non-finite (op->path, op->error). */
int em_judge_nonfinite(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op, int64_t rid, int64_t step);

/* Records the rules in the `rules` table and sets each one's since_seq: kept for a rule
 * whose definition is unchanged, the current last seq for a new or changed one (it judges
 * only later results). Rules no longer configured are forgotten. An SQLite code. */
int em_judge_set_rules(sqlite3 *db, em_rules_t *rules);

#endif
