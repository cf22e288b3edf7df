/* SPDX-License-Identifier: MIT */
/* What a committed alert does besides its PUB message: a log line, the run's stop file
 * (RUN_DIR/.emerge/STOP, written atomically, the alert's JSON), and the user's command
 * (argv without a shell, the alert in EMERGE_* variables, killed after exec_timeout).
 * Loop thread; nothing here blocks: the stop file is written on libuv's threadpool and
 * the command runs in its own process. When an alert's deliveries are done
 * the delivered callback runs, so the store can mark it; an alert a crash interrupted
 * is redone at the next start. */
#ifndef EM_DELIVER_H
#define EM_DELIVER_H

#include <stdint.h>
#include <uv.h>

#include "em_alert.h"
#include "em_rules.h"

typedef void (*em_delivered_fn)(void *ctx, int64_t seq);
typedef struct em_deliver em_deliver_t;

int em_deliver_start(em_deliver_t **out, uv_loop_t *loop, em_delivered_fn delivered, void *ctx);
/* Replaces the on_alert settings (copied); alerts delivered from now on use them. */
int em_deliver_configure(em_deliver_t *d, const em_on_alert_t *on_alert);
/* Delivers one committed alert (copied). */
void em_deliver_alert(em_deliver_t *d, const em_alert_t *alert);
/* Kills commands still running (their alerts stay undelivered: redone at the next
 * start) and closes every handle. */
void em_deliver_stop(em_deliver_t **self_p);

#endif
