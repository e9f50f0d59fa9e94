/*
 * The drain's end: once SIGTERM started it (server.c), dynqd exits when no
 * request, load or connection is left.  Apart so that every layer can ask
 * without calling up into the server.
 */
#include "dynqd.h"

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void dynqd__server_check_drained(dynqd_server_t *s) {
  if (!s->draining || s->exit_code >= 0) return;
  if (s->sched.outstanding > 0 || s->loads_outstanding > 0 || s->n_conns > 0) return;
  log_notice("drained: all requests answered; exiting");
  s->exit_code = 0;
  uv_walk(s->loop, close_walk, NULL);
}
