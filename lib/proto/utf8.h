/*
 * Strict UTF-8 validation (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), shared by the model decoder and the protocol
 * decoder: text that a peer or a file gave us is checked once, where it
 * enters, so every msgpack str dynqd sends (names in errors, model.info)
 * is valid UTF-8 that strict clients can decode.
 */
#ifndef DYNQ_UTF8_H
#define DYNQ_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the longest valid prefix of p[0, n): n when all of it is valid. */
static inline size_t dynq__utf8_valid_prefix(const void *p, size_t n) {
  const uint8_t *s = p;
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;  /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) len = 3, lo = 0xa0;
    else if (c == 0xed) len = 3, hi = 0x9f;  /* no surrogates */
    else if (c >= 0xe1 && c <= 0xef) len = 3;
    else if (c == 0xf0) len = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) len = 4, hi = 0x8f;
    else return i;
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xbf) return i;
    i += len;
  }
  return n;
}

static inline int dynq__utf8_valid(const void *p, size_t n) {
  return dynq__utf8_valid_prefix(p, n) == n;
}

#endif
