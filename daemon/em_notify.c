/* SPDX-License-Identifier: MIT */
#include "em_notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void em_notify(const char *state)
{
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  memcpy(addr.sun_path, path, n);
  if (path[0] == '@')
    addr.sun_path[0] = 0; /* abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return;
  ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
  (void)w;
  close(fd);
}

uint64_t em_notify_watchdog_usec(void)
{
  const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
  if (!usec || (pid && atol(pid) != (long)getpid()))
    return 0;
  return strtoull(usec, NULL, 10);
}
