/* SPDX-License-Identifier: MIT */
/* The systemd notify protocol (sd_notify(3)) written by hand: one datagram to
 * $NOTIFY_SOCKET. No libsystemd. Does nothing outside systemd. */
#ifndef EM_NOTIFY_H
#define EM_NOTIFY_H

#include <stdint.h>

/* Sends "READY=1", "STATUS=...", "STOPPING=1", "WATCHDOG=1", ... */
void em_notify(const char *state);
/* $WATCHDOG_USEC when the watchdog is meant for this process, else 0. */
uint64_t em_notify_watchdog_usec(void);

#endif
