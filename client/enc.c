/*
 * The infer request encoder: every request of dynq_infer and
 * dynq_submit_infer goes through here, so it writes the frame's bytes in
 * one pass straight into the send queue, with every container's count
 * known before its header (no self-counting map to patch and shift
 * afterwards) and one capacity check per input rather than one per item.
 * The bytes are plain msgpack: the same request the schema's generic
 * encoder (methods.def, `infer` params) would write, keys in its order.
 */
#include "client-internal.h"

#include <errno.h>
#include <string.h>

/* Most bytes the header of one item (type byte + a 64-bit value or a
 * 32-bit length) takes. */
#define HDR_MAX 9

/* The put_ helpers are inlined wherever they are used: most of their
 * arguments are constants (the header forms, the keys' literal lengths),
 * which then fold into a byte store or two instead of a call per item. */
#define PUT static inline __attribute__((always_inline))

PUT uint8_t *put_be(uint8_t *p, uint64_t v, unsigned bytes) {
  for (unsigned i = bytes; i-- > 0;) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
  return p + bytes;
}

/* A length or count header: the fix form (fix | n) when n <= fixmax
 * (fixmax 0 with fix 0: none), else the first of the 8-bit (b8, 0: none),
 * 16-bit (b16) and 32-bit (b16 + 1) forms that holds n. */
PUT uint8_t *put_len(uint8_t *p, uint64_t n, uint8_t fix, uint64_t fixmax, uint8_t b8,
                        uint8_t b16) {
  if (fix != 0 && n <= fixmax) {
    *p = (uint8_t)(fix | n);
    return p + 1;
  }
  if (b8 != 0 && n <= 0xff) {
    *p = b8;
    return put_be(p + 1, n, 1);
  }
  if (n <= 0xffff) {
    *p = b16;
    return put_be(p + 1, n, 2);
  }
  *p = (uint8_t)(b16 + 1);
  return put_be(p + 1, n, 4);
}

PUT uint8_t *put_map(uint8_t *p, uint32_t n) { return put_len(p, n, 0x80, 15, 0, 0xde); }
PUT uint8_t *put_array(uint8_t *p, uint32_t n) { return put_len(p, n, 0x90, 15, 0, 0xdc); }
PUT uint8_t *put_bin_head(uint8_t *p, size_t n) { return put_len(p, n, 0, 0, 0xc4, 0xc5); }

PUT uint8_t *put_uint(uint8_t *p, uint64_t v) {
  if (v <= 0x7f) {
    *p = (uint8_t)v;
    return p + 1;
  }
  if (v <= 0xff) { *p = 0xcc; return put_be(p + 1, v, 1); }
  if (v <= 0xffff) { *p = 0xcd; return put_be(p + 1, v, 2); }
  if (v <= 0xffffffffu) { *p = 0xce; return put_be(p + 1, v, 4); }
  *p = 0xcf;
  return put_be(p + 1, v, 8);
}

PUT uint8_t *put_str(uint8_t *p, const char *s, size_t n) {
  p = put_len(p, n, 0xa0, 31, 0xd9, 0xda);
  memcpy(p, s, n);
  return p + n;
}

/* A literal key or value: its length known at compile time. */
#define PUT_LIT(p, lit) put_str((p), (lit), sizeof(lit) - 1)

static uint8_t *put_shm_ref(uint8_t *p, const dynq_shm_ref_t *ref) {
  p = put_map(p, 3);
  p = PUT_LIT(p, "region");
  p = put_uint(p, ref->region);
  p = PUT_LIT(p, "offset");
  p = put_uint(p, ref->offset);
  p = PUT_LIT(p, "size");
  return put_uint(p, ref->size);
}

/* Bytes one shm reference takes at most: its keys and three uint64s. */
#define SHM_REF_MAX (1 + 7 + 7 + 5 + 3 * HDR_MAX)

/* Check a caller's input before it goes on the wire, so a mistake is
 * reported here with the input's name rather than as a server error.
 * shm (may be NULL) is the region reference replacing in->data. */
static int check_input(dynq_client_t *c, const dynq_tensor_t *in, int i,
                       const dynq_shm_ref_t *shm) {
  int64_t numel;
  size_t esz;

  if (in->name == NULL || in->name[0] == '\0')
    return dynq__client_fail(c, DYNQ_EPARAMS, "input %d has no name", i);
  if (dynq__dt_size(in->dtype) == 0)
    return dynq__client_fail(c, DYNQ_EDTYPE, "input '%s': unknown dtype %d",
                             in->name, in->dtype);
  if (in->rank < 0 || in->rank > DYNQ_CLIENT_MAX_RANK)
    return dynq__client_fail(c, DYNQ_ESHAPE, "input '%s': rank %d outside 0..%d",
                             in->name, in->rank, DYNQ_CLIENT_MAX_RANK);
  numel = dynq__dt_numel(in->rank, in->shape);
  if (numel < 0)
    return dynq__client_fail(c, DYNQ_ESHAPE,
                             "input '%s': negative dimension or too many elements",
                             in->name);
  esz = dynq__dt_size(in->dtype);
  if ((size_t)numel * esz != in->nbytes)
    return dynq__client_fail(c, DYNQ_EDATA,
                             "input '%s': %zu bytes of data, shape needs %zu",
                             in->name, in->nbytes, (size_t)numel * esz);
  if (shm != NULL) {
    if (shm->size != (uint64_t)in->nbytes)
      return dynq__client_fail(c, DYNQ_EDATA,
                               "input '%s': shm reference of %llu bytes, shape needs %zu",
                               in->name, (unsigned long long)shm->size, in->nbytes);
    if (shm->offset > UINT64_MAX - shm->size)
      return dynq__client_fail(c, DYNQ_EPARAMS,
                               "input '%s': shm offset + size overflows", in->name);
  } else if (in->data == NULL && in->nbytes > 0) {
    return dynq__client_fail(c, DYNQ_EDATA, "input '%s': data is NULL", in->name);
  } else if (in->nbytes > UINT32_MAX) {
    /* msgpack's bin holds at most 4 GiB */
    return dynq__client_fail(c, DYNQ_ETOOBIG,
                             "input '%s': %zu bytes do not fit in one request "
                             "(at most 4 GiB inline; pass it through shm)",
                             in->name, in->nbytes);
  }
  return 0;
}

static const dynq_shm_ref_t *input_shm(const dynq_infer_opts_t *opts,
                                       const dynq_tensor_t *inputs, int k) {
  if (opts->input_shm != NULL && inputs[k].data == NULL) return &opts->input_shm[k];
  return NULL;
}

/* One input {dtype, shape, data} or {dtype, shape, shm} at the end of w
 * (checked already); with refs, a large inline payload is recorded there
 * instead of copied (see dynq__enc_refs_t). */
static void w_input(dynq__wbuf_t *w, const dynq_tensor_t *in, const dynq_shm_ref_t *shm,
                    dynq__enc_refs_t *refs) {
  size_t nlen = strlen(in->name);
  const char *dt = dynq__dt_name(in->dtype);
  size_t dtlen = strlen(dt);
  /* rank <= 8 is checked; the caller's struct is read once more here, so
   * the bound below holds whatever the fields say now */
  int rank = in->rank < 0 ? 0 : in->rank > DYNQ_CLIENT_MAX_RANK ? DYNQ_CLIENT_MAX_RANK : in->rank;
  int by_ref = shm == NULL && refs != NULL && in->nbytes >= DYNQ__ENC_REF_MIN &&
               refs->n < DYNQ__ENC_MAX_REFS;
  size_t payload = shm != NULL ? SHM_REF_MAX : by_ref ? 0 : in->nbytes;
  uint8_t *p = dynq__wbuf_reserve(w, HDR_MAX + nlen + 1 + 6 + HDR_MAX + dtlen + 6 + 1 +
                           (size_t)rank * HDR_MAX + 6 + HDR_MAX + payload);
  if (p == NULL) return;
  p = put_str(p, in->name, nlen);
  p = put_map(p, 3);
  p = PUT_LIT(p, "dtype");
  p = put_str(p, dt, dtlen);
  p = PUT_LIT(p, "shape");
  p = put_array(p, (uint32_t)rank);
  /* dims were checked non-negative: the unsigned forms, as msgpack-c's */
  for (int d = 0; d < rank; d++) p = put_uint(p, (uint64_t)in->shape[d]);
  if (shm != NULL) {
    p = PUT_LIT(p, "shm");
    p = put_shm_ref(p, shm);
  } else {
    p = PUT_LIT(p, "data");
    p = put_bin_head(p, in->nbytes);
    if (by_ref) {
      refs->ref[refs->n].at = (size_t)(p - w->data);
      refs->ref[refs->n].data = in->data;
      refs->ref[refs->n].len = in->nbytes;
      refs->n++;
    } else {
      if (in->nbytes > 0) memcpy(p, in->data, in->nbytes);
      p += in->nbytes;
    }
  }
  w->len = (size_t)(p - w->data);
}

int dynq__encode_infer(dynq_client_t *c, dynq__wbuf_t *w, uint32_t msgid,
                       const char *model, const dynq_tensor_t *inputs, int n_inputs,
                       const dynq_infer_opts_t *opts, dynq__enc_refs_t *refs) {
  static const dynq_infer_opts_t defaults;
  uint8_t *p;
  uint32_t n_params;
  size_t mlen;
  int r;

  if (opts == NULL) opts = &defaults;
  if (c == NULL || n_inputs < 0 || (inputs == NULL && n_inputs > 0) ||
      (model == NULL && !opts->use_session) || opts->n_output_shm < 0 ||
      (opts->output_shm == NULL && opts->n_output_shm > 0))
    return -EINVAL;
  c->errmsg[0] = '\0';
  if (opts->precision != DYNQ_INFER_DEFAULT && opts->precision != DYNQ_INFER_INT8 &&
      opts->precision != DYNQ_INFER_FP32)
    return dynq__client_fail(c, DYNQ_EPARAMS, "unknown precision %d", opts->precision);
  for (int k = 0; k < opts->n_output_shm; k++) {
    const dynq_output_shm_t *os = &opts->output_shm[k];
    if (os->name == NULL || os->name[0] == '\0')
      return dynq__client_fail(c, DYNQ_EPARAMS, "output_shm[%d] has no name", k);
    if (os->ref.offset > UINT64_MAX - os->ref.size)
      return dynq__client_fail(c, DYNQ_EPARAMS,
                               "output '%s': shm offset + size overflows", os->name);
  }
  for (int k = 0; k < n_inputs; k++) {
    r = check_input(c, &inputs[k], k, input_shm(opts, inputs, k));
    if (r < 0) return r;
  }

  n_params = 1u + (model != NULL) + (opts->precision != DYNQ_INFER_DEFAULT) +
             (opts->timeout_ms > 0) + (opts->use_session != 0) + (opts->n_output_shm > 0);
  mlen = model != NULL ? strlen(model) : 0;
  /* [0, msgid, "infer", {model, inputs: {...} */
  p = dynq__wbuf_reserve(w, 1 + 1 + HDR_MAX + 6 + 1 + 6 + HDR_MAX + mlen + 7 + HDR_MAX);
  if (p == NULL) return 0;  /* w->err: queue_end reports it */
  *p++ = 0x94;
  *p++ = DYNQ_RPC_REQUEST;
  p = put_uint(p, msgid);
  p = PUT_LIT(p, "infer");
  p = put_map(p, n_params);
  if (model != NULL) {
    p = PUT_LIT(p, "model");
    p = put_str(p, model, mlen);
  }
  p = PUT_LIT(p, "inputs");
  p = put_map(p, (uint32_t)n_inputs);
  w->len = (size_t)(p - w->data);
  if (refs != NULL) refs->n = 0;
  for (int k = 0; k < n_inputs; k++) w_input(w, &inputs[k], input_shm(opts, inputs, k), refs);
  /* precision, timeout_ms, session: 11 + 10 + 8 bytes of keys at most */
  p = dynq__wbuf_reserve(w, 3 * (HDR_MAX + 11) + 12);
  if (p == NULL) return 0;
  if (opts->precision != DYNQ_INFER_DEFAULT) {
    p = PUT_LIT(p, "precision");
    p = opts->precision == DYNQ_INFER_FP32 ? PUT_LIT(p, "fp32") : PUT_LIT(p, "int8");
  }
  if (opts->timeout_ms > 0) {
    p = PUT_LIT(p, "timeout_ms");
    p = put_uint(p, opts->timeout_ms);
  }
  if (opts->use_session) {
    p = PUT_LIT(p, "session");
    p = put_uint(p, opts->session);
  }
  if (opts->n_output_shm > 0) {
    p = PUT_LIT(p, "outputs_shm");
    p = put_map(p, (uint32_t)opts->n_output_shm);
  }
  w->len = (size_t)(p - w->data);
  for (int k = 0; k < opts->n_output_shm; k++) {
    const dynq_output_shm_t *os = &opts->output_shm[k];
    size_t nlen = strlen(os->name);
    p = dynq__wbuf_reserve(w, HDR_MAX + nlen + SHM_REF_MAX);
    if (p == NULL) return 0;
    p = put_str(p, os->name, nlen);
    p = put_shm_ref(p, &os->ref);
    w->len = (size_t)(p - w->data);
  }
  return 0;
}
