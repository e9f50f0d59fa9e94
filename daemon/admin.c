/*
 * The peer check that guards admin methods (the method table in
 * dispatch.c marks them): SO_PEERCRED says uid 0, dynqd's own uid, or a
 * peer whose own gid or supplementary groups (SO_PEERGROUPS, not the user
 * database) include admin_group.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define MAX_GROUPS 65536  /* NGROUPS_MAX on Linux */

/* Whether the peer's own credentials include group want: the gid it ran
 * with when it connected (SO_PEERCRED) and its supplementary groups as
 * the kernel had them (SO_PEERGROUPS), never the user database, which
 * says what groups a uid would get at login, not what the process has
 * (it may have dropped them with setgroups).  -1 when the kernel cannot
 * tell (no SO_PEERGROUPS: Linux < 4.13): then only the gid counts. */
static int peer_in_group(int fd, gid_t gid, gid_t want) {
  if (gid == want) return 1;
#ifdef SO_PEERGROUPS
  gid_t small[64];
  gid_t *groups = small;
  socklen_t len = sizeof(small);
  int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
  if (rc != 0 && errno == ERANGE && len <= MAX_GROUPS * sizeof(gid_t)) {
    groups = malloc(len);  /* len now says what it needs */
    if (groups == NULL) return 0;
    rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
  }
  int found = 0;
  if (rc == 0)
    for (size_t i = 0; i < len / sizeof(gid_t); i++) found |= groups[i] == want;
  if (groups != small) free(groups);
  return rc == 0 ? found : -1;
#else
  (void)fd;
  return -1;
#endif
}

int dynqd__admin_peer_ok(int fd, const char *admin_group, char *why,
                         size_t whylen) {
  struct ucred cr;
  socklen_t len = sizeof(cr);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
    snprintf(why, whylen, "cannot identify the peer: %s", strerror(errno));
    return 0;
  }
  if (cr.uid == 0 || cr.uid == geteuid()) return 1;
  if (admin_group && admin_group[0]) {
    struct group *gr = getgrnam(admin_group);
    if (gr != NULL && peer_in_group(fd, cr.gid, gr->gr_gid) == 1) return 1;
    snprintf(why, whylen, "peer uid %u gid %u (pid %d) is not root, not dynqd's uid %u "
             "and its groups do not include admin group '%s'", (unsigned)cr.uid,
             (unsigned)cr.gid, (int)cr.pid, (unsigned)geteuid(), admin_group);
  } else {
    snprintf(why, whylen, "peer uid %u (pid %d) is not root and not dynqd's uid "
             "%u (no admin_group configured)", (unsigned)cr.uid, (int)cr.pid,
             (unsigned)geteuid());
  }
  return 0;
}
