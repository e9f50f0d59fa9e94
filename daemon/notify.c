/*
 * A self-contained sd_notify: one datagram to $NOTIFY_SOCKET, so dynqd does
 * not link libsystemd.  Like systemd, an address starting with '@' is in the
 * abstract namespace (the '@' becomes a NUL byte and the length is exact).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dynqd.h"

int dynqd__notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (path == NULL || path[0] == '\0') return 0;  /* not under systemd */
  size_t plen = strlen(path);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(sa.sun_path))
    return -EINVAL;
  memcpy(sa.sun_path, path, plen);
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  if (path[0] == '@')
    sa.sun_path[0] = '\0';
  else
    salen += 1;  /* include the terminating NUL for a filesystem path */

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  int ret = 0;
  ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                     (struct sockaddr *)&sa, salen);
  if (n < 0) ret = -errno;
  close(fd);
  return ret;
}

int dynqd__notifyf(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return dynqd__notify(buf);
}
