/*
 * dynq__mp_scan(): the allocation-free msgpack pre-scanner.
 *
 * msgpack-c allocates for every declared container and string before it
 * has seen the bytes (five bytes can ask it for ~96 GB), so every frame
 * passes through here first.  The scanner walks one object's extent with
 * an explicit stack of remaining-item counts (no recursion, no malloc) and
 * refuses the frame as soon as what it has already seen breaks a limit.
 *
 * Invariants kept at the top of the loop (checked by check_state() in
 * debug builds each time a container opens or closes):
 *   - depth open containers, stack[i] > 0 items still due in each;
 *   - pending counts the items still to read, the one at pos included:
 *     1 at top level, else sum(stack[i]) - (depth - 1) because each outer
 *     count still includes the open container nested in it;
 *   - pos + pending <= max_frame: each pending item needs at least one
 *     byte, so a frame that cannot fit is refused before its bytes come.
 *
 * Error choices (documented in proto.h):
 *   - a container count that cannot fit in the remaining frame budget even
 *     at one byte per item -> DYNQ_EPROTO (a lie about its size, not data
 *     that merely overflows);
 *   - a header, string, bin or ext that runs past max_frame -> DYNQ_ETOOBIG,
 *     decided from the declared length alone, before its payload arrives;
 *   - max_depth larger than DYNQ__SCAN_STACK is clamped to it.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <dynq/errors.h>

#include "proto.h"

/* Hard cap on nesting the scanner can track; far above any sane limit
 * (msgpack-c itself refuses more than 32). */
#define DYNQ__SCAN_STACK 128

const dynq__scan_limits_t dynq__scan_limits_default = {
  .max_frame = (size_t)64 << 20,
  .max_depth = 32,
  .max_elems = (uint64_t)1 << 20,
};

/* Shape of one msgpack header, decided from its first byte. */
enum {
  K_SCALAR,   /* hdr bytes only (fixint, nil, bool, numbers) */
  K_PAYLOAD,  /* hdr then n bytes (str, bin, ext) */
  K_ARRAY,    /* hdr then n items */
  K_MAP,      /* hdr then 2n items */
  K_INVALID,  /* 0xc1 */
};

typedef struct scan_hdr {
  int kind;
  unsigned hdr;     /* header bytes including the type byte */
  unsigned lenw;    /* width of a big-endian length field after the type
                       byte (0: length is in the type byte or fixed) */
  uint32_t n;       /* fixed payload length or count when lenw == 0 */
} scan_hdr_t;

static scan_hdr_t classify(uint8_t b) {
  scan_hdr_t h = {K_SCALAR, 1, 0, 0};
  if (b <= 0x7f || b >= 0xe0) return h;  /* positive / negative fixint */
  if (b <= 0x8f) { h.kind = K_MAP; h.n = b & 0x0f; return h; }
  if (b <= 0x9f) { h.kind = K_ARRAY; h.n = b & 0x0f; return h; }
  if (b <= 0xbf) { h.kind = K_PAYLOAD; h.n = b & 0x1f; return h; }
  switch (b) {
  case 0xc0: case 0xc2: case 0xc3: return h;      /* nil false true */
  case 0xc1: h.kind = K_INVALID; return h;
  case 0xc4: h.kind = K_PAYLOAD; h.hdr = 2; h.lenw = 1; return h;  /* bin8 */
  case 0xc5: h.kind = K_PAYLOAD; h.hdr = 3; h.lenw = 2; return h;
  case 0xc6: h.kind = K_PAYLOAD; h.hdr = 5; h.lenw = 4; return h;
  /* ext: length field, then one type byte */
  case 0xc7: h.kind = K_PAYLOAD; h.hdr = 3; h.lenw = 1; return h;
  case 0xc8: h.kind = K_PAYLOAD; h.hdr = 4; h.lenw = 2; return h;
  case 0xc9: h.kind = K_PAYLOAD; h.hdr = 6; h.lenw = 4; return h;
  case 0xca: h.hdr = 5; return h;                 /* float32 */
  case 0xcb: h.hdr = 9; return h;                 /* float64 */
  case 0xcc: case 0xd0: h.hdr = 2; return h;      /* (u)int8 */
  case 0xcd: case 0xd1: h.hdr = 3; return h;
  case 0xce: case 0xd2: h.hdr = 5; return h;
  case 0xcf: case 0xd3: h.hdr = 9; return h;
  /* fixext 1/2/4/8/16: type byte + ext type, then the fixed payload */
  case 0xd4: h.kind = K_PAYLOAD; h.hdr = 2; h.n = 1; return h;
  case 0xd5: h.kind = K_PAYLOAD; h.hdr = 2; h.n = 2; return h;
  case 0xd6: h.kind = K_PAYLOAD; h.hdr = 2; h.n = 4; return h;
  case 0xd7: h.kind = K_PAYLOAD; h.hdr = 2; h.n = 8; return h;
  case 0xd8: h.kind = K_PAYLOAD; h.hdr = 2; h.n = 16; return h;
  case 0xd9: h.kind = K_PAYLOAD; h.hdr = 2; h.lenw = 1; return h;  /* str8 */
  case 0xda: h.kind = K_PAYLOAD; h.hdr = 3; h.lenw = 2; return h;
  case 0xdb: h.kind = K_PAYLOAD; h.hdr = 5; h.lenw = 4; return h;
  case 0xdc: h.kind = K_ARRAY; h.hdr = 3; h.lenw = 2; return h;
  case 0xdd: h.kind = K_ARRAY; h.hdr = 5; h.lenw = 4; return h;
  case 0xde: h.kind = K_MAP; h.hdr = 3; h.lenw = 2; return h;
  case 0xdf: h.kind = K_MAP; h.hdr = 5; h.lenw = 4; return h;
  default: break;
  }
  h.kind = K_INVALID;  /* unreachable: every byte is covered above */
  return h;
}

static uint32_t read_be(const uint8_t *p, unsigned w) {
  uint32_t v = 0;
  for (unsigned i = 0; i < w; i++) v = (v << 8) | p[i];
  return v;
}

#ifndef NDEBUG
static int check_state(const uint64_t *stack, int depth, uint64_t pending,
                       size_t pos, size_t max_frame) {
  uint64_t sum = 0;
  for (int i = 0; i < depth; i++) {
    if (stack[i] == 0) return 0;
    sum += stack[i];
  }
  if (depth == 0 ? pending != 1 : pending != sum - (uint64_t)(depth - 1))
    return 0;
  return pos <= max_frame && pending <= max_frame - pos;
}
#endif

int dynq__mp_scan(const uint8_t *buf, size_t len,
                  const dynq__scan_limits_t *lim, size_t *ret_len) {
  uint64_t stack[DYNQ__SCAN_STACK];  /* items still due per open container */
  const size_t max_frame = lim->max_frame;
  const int max_depth = lim->max_depth < DYNQ__SCAN_STACK
                            ? lim->max_depth : DYNQ__SCAN_STACK;
  uint64_t pending = 1;  /* items still to read, the current one included */
  uint64_t elems = 0;    /* declared array elements + map entries so far */
  size_t pos = 0;
  int depth = 0;

  if (max_frame == 0) return DYNQ_ETOOBIG;

  for (;;) {
    /* The whole invariant is O(depth): checked where the stack changes
     * (below); per item only its O(1) part, which every item moves. */
    assert(pos <= max_frame && pending <= max_frame - pos);
    if (pos >= len) return -EAGAIN;

    scan_hdr_t h = classify(buf[pos]);
    if (h.kind == K_INVALID) return DYNQ_EPROTO;
    /* Room after this item for the pending[-1] items that follow it. */
    size_t room = max_frame - pos - (size_t)(pending - 1);
    if (h.hdr > room) return DYNQ_ETOOBIG;
    if (h.hdr > len - pos) return -EAGAIN;
    uint64_t n = h.lenw ? read_be(buf + pos + 1, h.lenw) : h.n;
    room -= h.hdr;
    pos += h.hdr;
    pending--;

    if (h.kind == K_SCALAR || h.kind == K_PAYLOAD) {
      if (n > room) return DYNQ_ETOOBIG;
      if (n > len - pos) return -EAGAIN;
      pos += (size_t)n;
    } else {
      if (depth >= max_depth) return DYNQ_EDEPTH;
      if (n > lim->max_elems - elems) return DYNQ_ELIMIT;
      elems += n;
      uint64_t items = h.kind == K_MAP ? 2 * n : n;
      if (items > room) return DYNQ_EPROTO;
      if (items > 0) {
        stack[depth++] = items;
        pending += items;
        assert(check_state(stack, depth, pending, pos, max_frame));
        continue;
      }
    }

    /* One item finished: close every container it completes. */
    if (depth > 0 && --stack[depth - 1] == 0) {
      do depth--;
      while (depth > 0 && --stack[depth - 1] == 0);
      assert(depth == 0 || check_state(stack, depth, pending, pos, max_frame));
    }
    if (depth == 0) {
      assert(pending == 0);
      *ret_len = pos;
      return 0;
    }
  }
}
