/*
 * dynq__framer: cutting a byte stream into msgpack frames, the one loop
 * dynqd's connections, libdynqclient, the tests' raw RPC helpers and the
 * benchmarks share.  Bytes come in through _space/_commit (read straight
 * into the buffer) or _push (copy); _next scans the pending bytes with the
 * framer's limits and hands out one complete frame at a time.
 *
 * A frame the owner cannot handle yet (a server parking a request until it
 * is ready for it) goes back with _hold: it stays in the buffer, counts as
 * pending again, and the next _next hands it out again (scanned again:
 * parking is rare, and _next keeps no state between calls).
 *
 * Invariants (checked in debug builds by check_state()):
 *   - frame_len <= off <= len <= cap; buf is NULL only while cap == 0;
 *   - the frame handed out last is buf[off - frame_len .. off);
 *   - after an error nothing is handed out again.
 * Growth is bounded: _space never grows the buffer beyond what the frame
 * being received may still need (max_frame) plus the caller's one read.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <dynq/errors.h>

#include "proto.h"

#define FRAMER_MIN_CAP ((size_t)16 << 10)
/* Capacity kept when the buffer empties after a large frame. */
#define FRAMER_KEEP ((size_t)256 << 10)

#ifndef NDEBUG
static int check_state(const dynq__framer_t *f) {
  if (!(f->frame_len <= f->off && f->off <= f->len && f->len <= f->cap)) return 0;
  return f->buf != NULL || f->cap == 0;
}
#endif

void dynq__framer_init(dynq__framer_t *f, const dynq__scan_limits_t *lim) {
  memset(f, 0, sizeof(*f));
  f->lim = lim != NULL ? *lim : dynq__scan_limits_default;
  f->keep = FRAMER_KEEP;
}

void dynq__framer_free(dynq__framer_t *f) {
  if (f == NULL) return;
  free(f->buf);
  f->buf = NULL;
  f->cap = f->off = f->len = f->frame_len = 0;
}

/* Forget the frame handed out last; slide pending bytes to the front when
 * nothing or little is pending. */
static void consume(dynq__framer_t *f) {
  f->frame_len = 0;
  if (f->off == f->len) {
    f->off = f->len = 0;
    if (f->cap > f->keep) {
      free(f->buf);
      f->buf = NULL;
      f->cap = 0;
    }
  }
}

size_t dynq__framer_pending(const dynq__framer_t *f) { return f->len - f->off; }

void dynq__framer_hold(dynq__framer_t *f) {
  assert(check_state(f));
  f->off -= f->frame_len;
  f->frame_len = 0;
}

void dynq__framer_discard(dynq__framer_t *f) {
  f->off = f->len = f->frame_len = 0;
}

int dynq__framer_space(dynq__framer_t *f, size_t min, uint8_t **ret_p, size_t *ret_n) {
  assert(check_state(f));
  if (f->err) return f->err;
  consume(f);
  if (min == 0) min = 1;
  if (f->cap - f->len < min && f->off > 0) {
    memmove(f->buf, f->buf + f->off, f->len - f->off);
    f->len -= f->off;
    f->off = 0;
  }
  if (f->cap - f->len < min) {
    /* The scanner refused anything above max_frame already, so pending
     * bytes are at most max_frame: the buffer stays within max_frame plus
     * one read. */
    size_t need = f->len + min, cap = f->cap ? f->cap : FRAMER_MIN_CAP;
    while (cap < need) {
      if (cap > SIZE_MAX / 2) return -ENOMEM;
      cap *= 2;
    }
    size_t bound = f->lim.max_frame + min;
    if (bound >= need && cap > bound) cap = bound;
    uint8_t *nb = realloc(f->buf, cap);
    if (nb == NULL) return -ENOMEM;
    f->buf = nb;
    f->cap = cap;
  }
  *ret_p = f->buf + f->len;
  *ret_n = f->cap - f->len;
  return 0;
}

void dynq__framer_commit(dynq__framer_t *f, size_t n) {
  assert(n <= f->cap - f->len);
  f->len += n;
}

int dynq__framer_push(dynq__framer_t *f, const void *p, size_t n) {
  uint8_t *dst;
  size_t room;
  if (n == 0) return f->err;
  int rc = dynq__framer_space(f, n, &dst, &room);
  if (rc < 0) return rc;
  memcpy(dst, p, n);
  dynq__framer_commit(f, n);
  return 0;
}

int dynq__framer_peek(dynq__framer_t *f, const uint8_t **ret_p, size_t *ret_n) {
  assert(check_state(f));
  if (f->err) return f->err;
  consume(f);
  *ret_p = f->buf != NULL ? f->buf + f->off : NULL;
  *ret_n = f->len - f->off;
  return 0;
}

void dynq__framer_take(dynq__framer_t *f, size_t n) {
  assert(check_state(f) && !f->err && f->frame_len == 0 && n > 0 && n <= f->len - f->off);
  f->off += n;
  f->frame_len = n;
}

int dynq__framer_next(dynq__framer_t *f, const uint8_t **ret_frame, size_t *ret_len) {
  assert(check_state(f));
  if (f->err) return f->err;
  consume(f);
  size_t avail = f->len - f->off, flen = 0;
  if (avail == 0) return 0;
  int rc = dynq__mp_scan(f->buf + f->off, avail, &f->lim, &flen);
  if (rc == -EAGAIN) {
    /* The scanner refuses a frame above max_frame from its header alone;
     * this only guards that promise. */
    if (avail > f->lim.max_frame) rc = DYNQ_ETOOBIG;
    else return 0;
  } else if (rc == 0 && (flen == 0 || flen > avail)) {
    rc = DYNQ_EPROTO;  /* never trust a length, even our own */
  }
  if (rc < 0) {
    f->err = rc;
    return rc;
  }
  *ret_frame = f->buf + f->off;
  *ret_len = flen;
  f->off += flen;
  f->frame_len = flen;
  return 1;
}
