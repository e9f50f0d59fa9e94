/*
 * Per-uid accounting: what the peers running as one uid hold (connections,
 * sessions, shm regions and bytes), so that per-uid caps can say no to one
 * local user without locking out the others.  The uid comes from the
 * kernel (SO_PEERCRED at accept), never from the peer.
 */
#include <stdlib.h>

#include "dynqd.h"

dynqd_peer_t *dynqd__peer_get(dynqd_peers_t *p, uint32_t uid) {
  for (int i = 0; i < p->n; i++)
    if (p->v[i]->uid == uid) return p->v[i];
  if (p->n >= DYNQD_MAX_PEER_UIDS) return NULL;
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 16;
    dynqd_peer_t **nv = realloc(p->v, (size_t)cap * sizeof(*nv));
    if (nv == NULL) return NULL;
    p->v = nv;
    p->cap = cap;
  }
  dynqd_peer_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->uid = uid;
  p->v[p->n++] = r;
  return r;
}

void dynqd__peers_free(dynqd_peers_t *p) {
  for (int i = 0; i < p->n; i++) free(p->v[i]);
  free(p->v);
  p->v = NULL;
  p->n = p->cap = 0;
}
