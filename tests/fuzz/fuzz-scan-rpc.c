/*
 * fuzz-scan-rpc: arbitrary bytes through the wire protocol's reader the
 * way dynqd and libdynqclient use it: dynq__mp_scan() frames the stream,
 * each accepted frame goes to dynq__rpc_parse(), and every object reachable
 * from params / result / error is walked with the dynq__obj_* accessors,
 * dynq__obj_tensor() and dynq__rpc_error().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto-tensor.h"

/* Small limits so the fuzzer reaches the limit paths too. */
static const dynq__scan_limits_t k_lim = {1 << 16, 8, 4096};
static const dynq__tensor_limits_t k_tlim = {DYNQ_MAX_RANK, 1 << 16};

static void walk(dynq__obj_t o, int depth) {
  char err[128], buf[64];
  int64_t i;
  double d;
  int b;
  const char *s;
  const void *p;
  size_t n;
  (void)dynq__obj_kind(o);
  (void)dynq__obj_is_absent(o);
  (void)dynq__obj_bool(o, &b);
  (void)dynq__obj_int(o, &i);
  (void)dynq__obj_double(o, &d);
  if (dynq__obj_str(o, &s, &n) == 0 && n > 0) (void)((volatile const char *)s)[n - 1];
  if (dynq__obj_bin(o, &p, &n) == 0 && n > 0) (void)((volatile const uint8_t *)p)[n - 1];
  (void)dynq__obj_strcpy(o, buf, sizeof(buf));
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  if (dynq__obj_tensor(o, &k_tlim, &t, err, sizeof(err)) == 0) dynq__tensor_clear(&t);
  (void)dynq__rpc_error(o, err, sizeof(err));
  if (depth > 8) return;
  uint32_t len = dynq__obj_len(o);
  /* one past the end too: the accessors must return absent */
  for (uint32_t k = 0; k <= len && k < 64; k++) {
    if (dynq__obj_kind(o) == DYNQ_OBJ_MAP) {
      walk(dynq__obj_key_at(o, k), depth + 1);
      walk(dynq__obj_val_at(o, k), depth + 1);
    } else {
      walk(dynq__obj_at(o, k), depth + 1);
    }
  }
  (void)dynq__obj_get(o, "dtype");
  (void)dynq__obj_get(o, "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  for (int frames = 0; off < size && frames < 16; frames++) {
    size_t flen = 0;
    int rc = dynq__mp_scan(data + off, size - off, &k_lim, &flen);
    if (rc != 0) break;
    if (flen == 0 || flen > size - off) __builtin_trap(); /* scanner contract */
    /* The parser gets an exact-size copy so ASan sees any over-read. */
    uint8_t *frame = malloc(flen);
    if (frame == NULL) return 0;
    memcpy(frame, data + off, flen);
    dynq__rpc_msg_t m;
    int64_t hint = -1;
    char err[128];
    if (dynq__rpc_parse(frame, flen, &m, &hint, err, sizeof(err)) == 0) {
      if (m.method != NULL && strlen(m.method) > 63) __builtin_trap();
      walk(m.params, 0);
      walk(m.result, 0);
      walk(m.error, 0);
      dynq__rpc_free(&m);
    }
    free(frame);
    off += flen;
  }
  return 0;
}
