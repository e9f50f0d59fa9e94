/*
 * What fuzz-config needs from daemon/main.c, which it cannot link (it has
 * main).  Only the connection code calls it; the config parser never does.
 */
#include <stdlib.h>

#include "dynqd.h"

void dynqd__server_check_drained(dynqd_server_t *s) {
  (void)s;
  abort(); /* unreachable from the config parser */
}
