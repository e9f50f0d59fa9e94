/*
 * The tickets of one connection: requests sent and not yet collected,
 * found by msgid in O(1) whatever the number in flight (an answer arrives,
 * a wait or a poll looks its ticket up once per request).
 *
 * Slots live in one array grown by doubling, so a live ticket's index
 * never changes (its pointer does when the array grows); a free list links
 * the unused ones.  An open-addressing table (linear probing, four
 * buckets per slot) maps msgid to
 * slot: msgids are consecutive, so neighbours land in neighbouring buckets
 * and a lookup is one or two probes.  While every live ticket sits in its
 * home bucket (the usual case: the live msgids span less than the table)
 * no probe sequence passes through a removed ticket's bucket, so a
 * removal just empties it.  Otherwise it leaves a tombstone (the backward
 * shift that avoids them would walk the whole run of live consecutive
 * msgids on every removal), and the table is rebuilt once the tombstones
 * reach a quarter of it, at most every cap removals.  Two lists thread the live slots:
 * send order (a broken connection fails its tickets in that order) and
 * the done-but-not-reported ones in completion order (dynq_poll takes the
 * head).
 */
#include "client-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NIL (-1)
#define TOMB (-2)

static uint32_t home(const dynq__tickets_t *t, uint32_t msgid) { return msgid & t->mask; }

void dynq__tickets_init(dynq__tickets_t *t) {
  memset(t, 0, sizeof(*t));
  t->free_head = t->sent_head = t->sent_tail = t->done_head = t->done_tail = NIL;
}

void dynq__tickets_free(dynq__tickets_t *t) {
  free(t->slot);
  free(t->index);
  dynq__tickets_init(t);
}

/* The bucket holding slot s's msgid (present by invariant). */
static uint32_t bucket_of(const dynq__tickets_t *t, int s) {
  uint32_t h = home(t, t->slot[s].msgid);
  while (t->index[h] != s) h = (h + 1) & t->mask;
  return h;
}

static void index_put(dynq__tickets_t *t, int s) {
  uint32_t h0 = home(t, t->slot[s].msgid), h = h0;
  while (t->index[h] >= 0) h = (h + 1) & t->mask;
  if (t->index[h] == TOMB) t->tombs--;
  t->index[h] = s;
  if (h != h0) t->displaced++;
}

static void index_rebuild(dynq__tickets_t *t, int cap) {
  for (uint32_t i = 0; i <= t->mask; i++) t->index[i] = NIL;
  t->tombs = 0;
  t->displaced = 0;
  for (int s = 0; s < cap; s++)
    if (t->slot[s].live) index_put(t, s);
}

/* Twice the slots, and a table of four buckets per slot: live tickets
 * fill at most a quarter of it, tombstones less than another quarter. */
static int grow(dynq__tickets_t *t) {
  int ncap = t->cap ? 2 * t->cap : 8;
  uint32_t nbuckets = 4u * (uint32_t)ncap;
  dynq__pend_t *ns = realloc(t->slot, (size_t)ncap * sizeof(*ns));
  if (ns == NULL) return -ENOMEM;
  t->slot = ns;
  int32_t *ni = malloc((size_t)nbuckets * sizeof(*ni));
  if (ni == NULL) return -ENOMEM;  /* the bigger slot array is kept, unused */
  free(t->index);
  t->index = ni;
  t->mask = nbuckets - 1;
  for (int s = t->cap; s < ncap; s++) {  /* new slots onto the free list */
    t->slot[s].live = 0;
    t->slot[s].snext = s + 1 < ncap ? s + 1 : t->free_head;
  }
  t->free_head = t->cap;
  index_rebuild(t, t->cap);
  t->cap = ncap;
  return 0;
}

int dynq__tickets_add(dynq__tickets_t *t, uint32_t msgid, dynq__pend_t **ret_p) {
  if (t->free_head == NIL) {
    int r = grow(t);
    if (r < 0) return r;
  }
  int s = t->free_head;
  dynq__pend_t *p = &t->slot[s];
  t->free_head = p->snext;
  memset(p, 0, sizeof(*p));
  p->live = 1;
  p->msgid = msgid;
  p->dprev = p->dnext = NIL;
  p->sprev = t->sent_tail;
  p->snext = NIL;
  if (t->sent_tail != NIL) t->slot[t->sent_tail].snext = s;
  else t->sent_head = s;
  t->sent_tail = s;
  index_put(t, s);
  t->n++;
  t->n_waiting++;
  *ret_p = p;
  return 0;
}

dynq__pend_t *dynq__tickets_find(const dynq__tickets_t *t, uint32_t msgid) {
  if (t->n == 0) return NULL;
  for (uint32_t h = home(t, msgid);; h = (h + 1) & t->mask) {
    int s = t->index[h];
    if (s == NIL) return NULL;
    if (s >= 0 && t->slot[s].msgid == msgid) return &t->slot[s];
  }
}

static void done_unlink(dynq__tickets_t *t, dynq__pend_t *p) {
  if (p->dprev != NIL) t->slot[p->dprev].dnext = p->dnext;
  else t->done_head = p->dnext;
  if (p->dnext != NIL) t->slot[p->dnext].dprev = p->dprev;
  else t->done_tail = p->dprev;
  p->dprev = p->dnext = NIL;
}

void dynq__tickets_done(dynq__tickets_t *t, dynq__pend_t *p) {
  int s = (int)(p - t->slot);
  if (p->done) return;
  p->done = 1;
  t->n_waiting--;
  p->dprev = t->done_tail;
  p->dnext = NIL;
  if (t->done_tail != NIL) t->slot[t->done_tail].dnext = s;
  else t->done_head = s;
  t->done_tail = s;
}

dynq__pend_t *dynq__tickets_take_done(dynq__tickets_t *t) {
  if (t->done_head == NIL) return NULL;
  dynq__pend_t *p = &t->slot[t->done_head];
  done_unlink(t, p);
  p->reported = 1;
  return p;
}

void dynq__tickets_remove(dynq__tickets_t *t, dynq__pend_t *p) {
  int s = (int)(p - t->slot);
  if (p->done && !p->reported) done_unlink(t, p);
  if (!p->done) t->n_waiting--;
  if (p->sprev != NIL) t->slot[p->sprev].snext = p->snext;
  else t->sent_head = p->snext;
  if (p->snext != NIL) t->slot[p->snext].sprev = p->sprev;
  else t->sent_tail = p->sprev;
  uint32_t b = bucket_of(t, s);
  p->live = 0;  /* before a rebuild, which keeps the live slots only */
  if (b != home(t, p->msgid)) t->displaced--;
  if (t->displaced == 0) {
    t->index[b] = NIL;  /* no live ticket is found through this bucket */
  } else {
    t->index[b] = TOMB;
    if (++t->tombs >= (int)((t->mask + 1) / 4)) index_rebuild(t, t->cap);
  }
  p->snext = t->free_head;
  t->free_head = s;
  t->n--;
}

dynq__pend_t *dynq__tickets_first(const dynq__tickets_t *t) {
  return t->sent_head != NIL ? &t->slot[t->sent_head] : NULL;
}

dynq__pend_t *dynq__tickets_next(const dynq__tickets_t *t, const dynq__pend_t *p) {
  return p->snext != NIL ? &t->slot[p->snext] : NULL;
}

/* O(cap): for the tests, not the request path. */
int dynq__tickets_check(const dynq__tickets_t *t) {
  int live = 0, waiting = 0, sent = 0, done = 0, inidx = 0;
  for (int s = 0; s < t->cap; s++) {
    if (!t->slot[s].live) continue;
    live++;
    waiting += !t->slot[s].done;
    if (dynq__tickets_find(t, t->slot[s].msgid) != &t->slot[s]) return 0;
  }
  int tombs = 0, displaced = 0;
  for (uint32_t h = 0; t->index != NULL && h <= t->mask; h++) {
    inidx += t->index[h] >= 0;
    tombs += t->index[h] == TOMB;
    displaced += t->index[h] >= 0 && home(t, t->slot[t->index[h]].msgid) != h;
  }
  if (tombs != t->tombs || (t->index != NULL && tombs >= (int)((t->mask + 1) / 4))) return 0;
  if (displaced != t->displaced) return 0;
  for (int s = t->sent_head; s != NIL; s = t->slot[s].snext) sent++;
  for (int s = t->done_head; s != NIL; s = t->slot[s].dnext) {
    if (!t->slot[s].done || t->slot[s].reported) return 0;
    done++;
  }
  return live == t->n && waiting == t->n_waiting && sent == live && inidx == live &&
         done <= live;
}
