/*
 * The peer check that guards admin methods (the method table in
 * dispatch.c marks them): SO_PEERCRED says uid 0, dynqd's own uid, or a
 * member of admin_group by primary or supplementary group.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define MAX_GROUPS 1024  /* supplementary groups we look at per peer */

static int in_group(uid_t uid, gid_t gid, gid_t want) {
  if (gid == want) return 1;
  struct passwd *pw = getpwuid(uid);
  if (pw == NULL) return 0;
  gid_t groups[MAX_GROUPS];
  int n = MAX_GROUPS;
  if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0) n = MAX_GROUPS;
  for (int i = 0; i < n; i++)
    if (groups[i] == want) return 1;
  return 0;
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
    if (gr != NULL && in_group(cr.uid, cr.gid, gr->gr_gid)) return 1;
    snprintf(why, whylen, "peer uid %u (pid %d) is not root, not dynqd's uid %u "
             "and not in admin group '%s'", (unsigned)cr.uid, (int)cr.pid,
             (unsigned)geteuid(), admin_group);
  } else {
    snprintf(why, whylen, "peer uid %u (pid %d) is not root and not dynqd's uid "
             "%u (no admin_group configured)", (unsigned)cr.uid, (int)cr.pid,
             (unsigned)geteuid());
  }
  return 0;
}
