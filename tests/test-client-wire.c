/*
 * libdynqclient on the wire: the ticket table against a plain model of
 * it, the infer encoder against what the schema's decoder (dynqd's) reads
 * back, and a hostile server on the other end of a socketpair sending a
 * corpus of broken answers, each of which must give its request a clear
 * error (never a crash, a hang or a leak: run under the valgrind setup
 * too), and leave the connection usable when the stream was still whole.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../client/client-internal.h"
#include "dynq/dynqclient.h"
#include "proto/proto-tensor.h"
#include "testutil.h"

/* ---- the ticket table ---- */

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005u + 1442695040888963407u;
  return *s >> 33;
}

START_TEST(tickets_match_a_model) {
  enum { MAXLIVE = 300 };
  struct { uint32_t msgid; int done, reported; } m[MAXLIVE];
  uint32_t order[MAXLIVE * 8];  /* model's completion order (msgids) */
  int n = 0, n_order = 0;
  uint64_t seed = 12345;
  uint32_t next = 1;
  dynq__tickets_t t;
  dynq__tickets_init(&t);
  for (int step = 0; step < 40000; step++) {
    int op = (int)(lcg(&seed) % 10);
    if (step % 5000 == 4999) {
      /* jump: msgids that share buckets with live ones (and wrap 2^32) */
      next += (uint32_t)(lcg(&seed) % 4 + 1) * 4096u * 8u;
      if (step == 29999) next = 0xfffffff0u;
    }
    if ((op < 4 || n == 0) && n < MAXLIVE) {
      dynq__pend_t *p;
      /* msgids wrap past 2^32 skipping 0; the oldest live ones would
       * only come round again after 2^32 requests, which the model's
       * jumps shorten: skip those as they are not new */
      for (int again = 1; again;) {
        again = 0;
        if (next == 0) next = 1;
        for (int k = 0; k < n; k++)
          if (m[k].msgid == next) again = 1;
        if (again) next++;
      }
      ck_assert_int_eq(dynq__tickets_add(&t, next, &p), 0);
      ck_assert_uint_eq(p->msgid, next);
      m[n].msgid = next++;
      m[n].done = m[n].reported = 0;
      n++;
    } else if (op < 7) {                            /* an answer arrives */
      int k = (int)(lcg(&seed) % (uint64_t)n);
      dynq__pend_t *p = dynq__tickets_find(&t, m[k].msgid);
      ck_assert_ptr_nonnull(p);
      dynq__tickets_done(&t, p);
      if (!m[k].done) order[n_order++ % (MAXLIVE * 8)] = m[k].msgid;
      m[k].done = 1;
    } else if (op < 8) {                            /* a poll */
      dynq__pend_t *p = dynq__tickets_take_done(&t);
      /* the model's earliest done, unreported, still live ticket */
      uint32_t want = 0;
      for (int o = 0; o < n_order && want == 0; o++) {
        uint32_t id = order[o];
        for (int k = 0; k < n; k++)
          if (m[k].msgid == id && m[k].done && !m[k].reported) {
            want = id;
            m[k].reported = 1;
          }
      }
      if (want == 0) ck_assert_ptr_null(p);
      else ck_assert_uint_eq(p->msgid, want);
    } else {                                        /* collected or forgotten */
      int k = (int)(lcg(&seed) % (uint64_t)n);
      dynq__pend_t *p = dynq__tickets_find(&t, m[k].msgid);
      ck_assert_ptr_nonnull(p);
      dynq__tickets_remove(&t, p);
      ck_assert_ptr_null(dynq__tickets_find(&t, m[k].msgid));
      for (int o = 0; o < n_order; o++)
        if (order[o] == m[k].msgid) order[o] = 0;
      m[k] = m[--n];
    }
    /* compact the completion log now and then (dropped entries are 0) */
    if (n_order > MAXLIVE * 6) {
      int w = 0;
      for (int o = 0; o < n_order; o++)
        if (order[o] != 0) order[w++] = order[o];
      n_order = w;
    }
    ck_assert_int_eq(t.n, n);
    if (step % 97 == 0) {
      ck_assert(dynq__tickets_check(&t));
      /* send order: the model keeps no order after removals, so compare
       * as sets through find */
      int seen = 0;
      for (dynq__pend_t *p = dynq__tickets_first(&t); p != NULL; p = dynq__tickets_next(&t, p))
        seen++;
      ck_assert_int_eq(seen, n);
    }
    ck_assert_ptr_null(dynq__tickets_find(&t, next + 7));  /* never sent */
  }
  ck_assert(dynq__tickets_check(&t));
  dynq__tickets_free(&t);
}
END_TEST

/* ---- the infer encoder, read back as dynqd reads it ---- */

/* Parse w as one request and decode its infer params into *p (m owns the
 * objects p points into). */
static void read_back(dynq__wbuf_t *w, uint32_t msgid, dynq__rpc_msg_t *m, dynq__p_infer_t *p) {
  char err[256];
  int64_t hint;
  size_t flen = 0;
  ck_assert_int_eq(dynq__wbuf_status(w), 0);
  /* exactly one object: the frame scanner ends where the buffer does */
  ck_assert_int_eq(dynq__mp_scan(w->data, w->len, &dynq__scan_limits_default, &flen), 0);
  ck_assert_uint_eq(flen, w->len);
  ck_assert_int_eq(dynq__rpc_parse(w->data, w->len, m, &hint, err, sizeof err), 0);
  ck_assert_int_eq(m->type, DYNQ_RPC_REQUEST);
  ck_assert_uint_eq(m->msgid, msgid);
  ck_assert_str_eq(m->method, "infer");
  memset(p, 0, sizeof(*p));
  ck_assert_msg(dynq__params_decode(dynq__method_find("infer"), m->params, p, err,
                                    sizeof err) == 0, "%s", err);
}

static void expect_tensor(dynq__obj_t inputs, const dynq_tensor_t *in) {
  dynq__obj_t o = dynq__obj_get(inputs, in->name);
  static const dynq__tensor_limits_t lim = {DYNQ_MAX_RANK, DYNQ_MAX_ELEMS};
  dynq__tensor_t t;
  char err[256];
  memset(&t, 0, sizeof t);
  ck_assert_msg(dynq__obj_tensor(o, &lim, &t, err, sizeof err) == 0, "%s: %s", in->name, err);
  ck_assert_int_eq(t.dtype, in->dtype);
  ck_assert_int_eq(t.rank, in->rank);
  for (int d = 0; d < in->rank; d++) ck_assert_int_eq(t.dims[d], in->shape[d]);
  ck_assert_uint_eq((size_t)dynq__tensor_numel(&t) * dynq__dtype_size(t.dtype), in->nbytes);
  if (in->nbytes > 0) ck_assert_mem_eq(t.data, in->data, in->nbytes);
  dynq__tensor_clear(&t);
}

static uint64_t shm_field(dynq__obj_t ref, const char *key) {
  uint64_t v = UINT64_MAX;
  ck_assert_int_eq(dynq__obj_uint(dynq__obj_get(ref, key), &v), 0);
  return v;
}

static void put_raw(dynq__wbuf_t *w, const void *p, size_t n) {
  uint8_t *d = dynq__wbuf_reserve(w, n);
  ck_assert_ptr_nonnull(d);
  if (n > 0) memcpy(d, p, n);
  w->len += n;
}

/* The request encoded with its large payloads by reference, spliced back
 * together: byte for byte the request encoded with copies (want). */
static int expect_same_with_refs(dynq_client_t *c, const dynq__wbuf_t *want, uint32_t msgid,
                                  const char *model, const dynq_tensor_t *ins, int n_in,
                                  const dynq_infer_opts_t *o) {
  dynq__enc_refs_t refs;
  dynq__wbuf_t w, joined;
  size_t prev = 0;
  dynq__wbuf_init(&w);
  dynq__wbuf_init(&joined);
  ck_assert_int_eq(dynq__encode_infer(c, &w, msgid, model, ins, n_in, o, &refs), 0);
  ck_assert_int_le(refs.n, DYNQ__ENC_MAX_REFS);
  for (int k = 0; k < refs.n; k++) {
    ck_assert_uint_ge(refs.ref[k].len, DYNQ__ENC_REF_MIN);
    ck_assert_uint_ge(refs.ref[k].at, prev);
    put_raw(&joined, w.data + prev, refs.ref[k].at - prev);
    put_raw(&joined, refs.ref[k].data, refs.ref[k].len);
    prev = refs.ref[k].at;
  }
  put_raw(&joined, w.data + prev, w.len - prev);
  ck_assert_uint_eq(joined.len, want->len);
  ck_assert_mem_eq(joined.data, want->data, want->len);
  dynq__wbuf_free(&w);
  dynq__wbuf_free(&joined);
  return refs.n;
}

START_TEST(infer_encoder_as_dynqd_reads_it) {
  dynq_client_t *c = calloc(1, sizeof(*c));
  /* sizes across every header width: fix, 8, 16 and 32 bits */
  static char name31[32], name32[33], name300[301], model63[64];
  memset(name31, 'a', 31);
  memset(name32, 'b', 32);
  memset(name300, 'c', 300);
  memset(model63, 'm', 63);
  int8_t *big = malloc(70000);
  for (int i = 0; i < 70000; i++) big[i] = (int8_t)(i * 7);
  float f[6] = {1, -2, 3.5f, 0, 1e30f, -0.0f};
  int64_t ids[3] = {-1, (int64_t)1 << 40, 0};
  dynq_tensor_t in[20] = {
    {name31, DYNQ_FLOAT32, 2, {2, 3}, f, sizeof f},
    {name32, DYNQ_INT64, 1, {3}, ids, sizeof ids},
    {name300, DYNQ_INT8, 1, {70000}, big, 70000},
    {"s", DYNQ_FLOAT32, 0, {0}, f, 4},                        /* a scalar */
    {"e", DYNQ_UINT8, 3, {4, 0, 70000}, NULL, 0},             /* empty */
    {"r8", DYNQ_INT32, 8, {1, 1, 1, 1, 1, 1, 1, 1}, ids, 4},
  };
  for (int k = 6; k < 20; k++) {                            /* 20 inputs: map16 */
    static char names[20][8];
    snprintf(names[k], sizeof names[k], "in%d", k);
    in[k] = (dynq_tensor_t){names[k], DYNQ_UINT8, 1, {300}, big, 300};
  }
  static const uint32_t msgids[] = {1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffffu};
  for (int round = 0; round < 8; round++) {
    dynq_infer_opts_t o;
    dynq_infer_opts_init(&o);
    int n_in = round == 0 ? 1 : round == 1 ? 0 : 6 + (round > 4 ? 14 : 0);
    const char *model = round == 3 ? NULL : round == 2 ? model63 : "linear";
    dynq_shm_ref_t shm_in[20];
    dynq_output_shm_t shm_out[2] = {
      {"y", {7, 64, 1u << 20}},
      {name32, {0xffffffffffu, 0, 300}},
    };
    if (round == 3) {
      o.use_session = 1;
      o.session = 0x123456789ull;
    }
    if (round >= 4) {
      o.precision = round == 4 ? DYNQ_INFER_FP32 : DYNQ_INFER_INT8;
      o.timeout_ms = round == 4 ? 70000 : 5;
    }
    dynq_tensor_t ins[20];
    memcpy(ins, in, sizeof ins);
    if (round >= 6) {                                       /* shm in and out */
      memset(shm_in, 0, sizeof shm_in);
      shm_in[0] = (dynq_shm_ref_t){3, 128, sizeof f};
      shm_in[2] = (dynq_shm_ref_t){0x1ffffffffull, 0xfffffffffull, 70000};
      ins[0].data = NULL;
      ins[2].data = NULL;
      o.input_shm = shm_in;
      o.output_shm = shm_out;
      o.n_output_shm = round == 6 ? 1 : 2;
    }
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    ck_assert_int_eq(dynq__encode_infer(c, &w, msgids[round], model, ins, n_in, &o, NULL), 0);
    /* the 70000-byte input goes by reference unless it is in shm */
    ck_assert_int_eq(expect_same_with_refs(c, &w, msgids[round], model, ins, n_in, &o) > 0,
                     n_in > 2 && round < 6);
    dynq__rpc_msg_t m;
    dynq__p_infer_t p;
    read_back(&w, msgids[round], &m, &p);
    ck_assert_int_eq(p.has_model, model != NULL);
    if (model != NULL) ck_assert(dynq__pstr_eq(p.model, model));
    ck_assert_int_eq(p.has_precision, round >= 4);
    if (round >= 4) ck_assert(dynq__pstr_eq(p.precision, round == 4 ? "fp32" : "int8"));
    ck_assert_int_eq(p.has_timeout_ms, round >= 4);
    if (round >= 4) ck_assert_uint_eq(p.timeout_ms, o.timeout_ms);
    ck_assert_int_eq(p.has_session, round == 3);
    if (round == 3) ck_assert_uint_eq(p.session, 0x123456789ull);
    ck_assert_uint_eq(dynq__obj_len(p.inputs.obj), (uint32_t)n_in);
    for (int k = 0; k < n_in; k++) {
      if (ins[k].data == NULL && o.input_shm != NULL) {
        dynq__obj_t t = dynq__obj_get(p.inputs.obj, ins[k].name);
        dynq__obj_t ref = dynq__obj_get(t, "shm");
        ck_assert_uint_eq(shm_field(ref, "region"), shm_in[k].region);
        ck_assert_uint_eq(shm_field(ref, "offset"), shm_in[k].offset);
        ck_assert_uint_eq(shm_field(ref, "size"), shm_in[k].size);
        ck_assert_uint_eq(dynq__obj_len(dynq__obj_get(t, "shape")), (uint32_t)ins[k].rank);
      } else {
        expect_tensor(p.inputs.obj, &ins[k]);
      }
    }
    ck_assert_int_eq(p.has_outputs_shm, round >= 6);
    for (int k = 0; round >= 6 && k < o.n_output_shm; k++) {
      dynq__obj_t ref = dynq__obj_get(p.outputs_shm.obj, shm_out[k].name);
      ck_assert_uint_eq(shm_field(ref, "region"), shm_out[k].ref.region);
      ck_assert_uint_eq(shm_field(ref, "offset"), shm_out[k].ref.offset);
      ck_assert_uint_eq(shm_field(ref, "size"), shm_out[k].ref.size);
    }
    dynq__rpc_free(&m);
    dynq__wbuf_free(&w);
  }

  /* Refused before a byte is written, each naming what is wrong. */
  static int8_t one;
  static const struct {
    dynq_tensor_t in;
    int code;
    const char *needle;
  } bad[] = {
    {{"x", DYNQ_INT8, 1, {(int64_t)1 << 31}, &one, (size_t)1 << 31}, 0, NULL},
    {{"x", DYNQ_INT64, 2, {1 << 16, 1 << 15}, &one, (size_t)1 << 34}, DYNQ_ETOOBIG,
     "input 'x': 17179869184 bytes do not fit in one request"},
    {{"x", DYNQ_INT8, 1, {3}, &one, 2}, DYNQ_EDATA, "input 'x': 2 bytes of data, shape needs 3"},
    {{"x", 9, 1, {1}, &one, 1}, DYNQ_EDTYPE, "input 'x': unknown dtype 9"},
    {{"x", DYNQ_INT8, 9, {1}, &one, 1}, DYNQ_ESHAPE, "input 'x': rank 9 outside 0..8"},
    {{"x", DYNQ_INT8, 1, {-1}, &one, 0}, DYNQ_ESHAPE, "input 'x': negative dimension"},
    {{"x", DYNQ_INT8, 1, {1}, NULL, 1}, DYNQ_EDATA, "input 'x': data is NULL"},
    {{"", DYNQ_INT8, 1, {1}, &one, 1}, DYNQ_EPARAMS, "input 0 has no name"},
  };
  for (size_t k = 1; k < sizeof bad / sizeof bad[0]; k++) {
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    int r = dynq__encode_infer(c, &w, 1, "m", &bad[k].in, 1, NULL, NULL);
    ck_assert_msg(r == bad[k].code && strstr(c->errmsg, bad[k].needle) != NULL,
                  "case %zu: %d '%s'", k, r, c->errmsg);
    ck_assert_uint_eq(w.len, 0);
    dynq__wbuf_free(&w);
  }
  {
    /* more large inputs than payloads go by reference: the rest copied */
    static char names[40][8];
    dynq_tensor_t many[40];
    for (int k = 0; k < 40; k++) {
      snprintf(names[k], sizeof names[k], "m%d", k);
      many[k] = (dynq_tensor_t){names[k], DYNQ_INT8, 1, {600 + k}, big + k, (size_t)(600 + k)};
    }
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    ck_assert_int_eq(dynq__encode_infer(c, &w, 9, "linear", many, 40, NULL, NULL), 0);
    ck_assert_int_eq(expect_same_with_refs(c, &w, 9, "linear", many, 40, NULL),
                     DYNQ__ENC_MAX_REFS);
    dynq__wbuf_free(&w);
  }
  free(big);
  free(c);
}
END_TEST

/* ---- a hostile server ---- */

/* A client on one end of a socketpair, the test on the other. */
static dynq_client_t *pair_client(int *ret_srv) {
  int sv[2];
  dynq_client_t *c = NULL;
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ck_assert_int_eq(dynq__client_adopt(sv[0], "socketpair", &c), 0);
  ck_assert_int_eq(dynq_client_set_spin(c, 0), 0);
  *ret_srv = sv[1];
  return c;
}

/* The server takes one request off fd (asserted whole; the only one
 * there: what else its read took is dropped). */
static uint32_t srv_take(int fd) {
  tu_rpc_t srv;
  dynq__rpc_msg_t m;
  memset(&srv, 0, sizeof srv);
  srv.fd = fd;
  ck_assert_int_eq(tu_rpc_recv(&srv, &m), 0);
  uint32_t id = m.msgid;
  dynq__rpc_free(&m);
  dynq__framer_free(&srv.fr);
  return id;
}

static void w_good_result(dynq__wbuf_t *w, uint32_t id) {
  static const float y[2] = {0.5f, -1};
  dynq__w_result_head(w, id);
  dynq__w_map(w, 2);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, "y");
  dynq__wtensor_t t = {DYNQ_FLOAT32, 1, {2}, y, sizeof y};
  dynq__w_wtensor(w, &t);
  dynq__w_str(w, "compute_us");
  dynq__w_int(w, 3);
}

/* A broken answer to request id (and how the stream is left). */
typedef struct bad_answer {
  const char *what;
  void (*write)(dynq__wbuf_t *w, uint32_t id);
  int code;                 /* what the request gets */
  const char *needle;       /* in dynq_client_errmsg */
  int stream_ok;            /* the next request on the connection works */
  int close_after;          /* the server hangs up after writing */
} bad_answer_t;

/* Bytes no writer would produce, appended as they are. */
static void raw(dynq__wbuf_t *w, const uint8_t *b, size_t n) {
  if (w->cap - w->len < n) {
    w->cap = w->len + n;
    w->data = realloc(w->data, w->cap);
    ck_assert_ptr_nonnull(w->data);
  }
  memcpy(w->data + w->len, b, n);
  w->len += n;
}

static void a_truncated(dynq__wbuf_t *w, uint32_t id) {
  w_good_result(w, id);
  w->len -= 3;
}
static void a_not_array(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_map(w, 1);
  dynq__w_uint(w, id);
  dynq__w_nil(w);
}
static void a_three(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 3);
  dynq__w_uint(w, 1);
  dynq__w_uint(w, id);
  dynq__w_nil(w);
}
static void a_msgid_str(dynq__wbuf_t *w, uint32_t id) {
  (void)id;
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_str(w, "1");
  dynq__w_nil(w);
  dynq__w_map(w, 0);
}
static void a_bin_4g(dynq__wbuf_t *w, uint32_t id) {
  static const uint8_t b[] = {0xc6, 0xff, 0xff, 0xff, 0xff};
  dynq__w_result_head(w, id);
  dynq__w_map(w, 1);
  dynq__w_str(w, "outputs");
  raw(w, b, sizeof b);
}
static void a_array_lie(dynq__wbuf_t *w, uint32_t id) {
  static const uint8_t b[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
  dynq__w_result_head(w, id);
  raw(w, b, sizeof b);
}
static void a_depth_bomb(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  for (int i = 0; i < 40; i++) dynq__w_array(w, 1);
  dynq__w_nil(w);
}
static void a_c1(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  raw(w, (const uint8_t[]){0xc1}, 1);
}
static void a_shape_overflow(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  dynq__w_map(w, 1);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, "y");
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype");
  dynq__w_str(w, "float32");
  dynq__w_str(w, "shape");
  dynq__w_array(w, 3);
  dynq__w_int(w, (int64_t)1 << 40);
  dynq__w_int(w, (int64_t)1 << 40);
  dynq__w_int(w, (int64_t)1 << 40);
  dynq__w_str(w, "data");
  dynq__w_bin(w, "", 0);
}
static void a_size_mismatch(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  dynq__w_map(w, 1);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, "y");
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype");
  dynq__w_str(w, "int64");
  dynq__w_str(w, "shape");
  dynq__w_array(w, 1);
  dynq__w_int(w, 2);
  dynq__w_str(w, "data");
  dynq__w_bin(w, "12345678", 8);
}
static void a_result_nil(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  dynq__w_nil(w);
}
static void a_name_not_utf8(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  dynq__w_map(w, 1);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, 1);
  dynq__w_strn(w, "\xc3\x28", 2);
  dynq__w_map(w, 0);
}
static void a_error_str(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_uint(w, id);
  dynq__w_str(w, "it broke");
  dynq__w_nil(w);
}
static void a_error_unknown(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_uint(w, id);
  dynq__w_map(w, 2);
  dynq__w_str(w, "name");
  dynq__w_str(w, "EWHATEVER");
  dynq__w_str(w, "message");
  dynq__w_str(w, "a newer server's error");
  dynq__w_nil(w);
}
static void a_msgid0_error(dynq__wbuf_t *w, uint32_t id) {
  (void)id;
  dynq__w_error_response(w, 0, DYNQ_EPROTO, "your frame made no sense");
}
/* unknown ticket, a notification, then the right answer twice */
static void a_noise_then_dup(dynq__wbuf_t *w, uint32_t id) {
  w_good_result(w, id + 1000);
  dynq__w_array(w, 3);
  dynq__w_uint(w, 2);
  dynq__w_str(w, "event");
  dynq__w_array(w, 0);
  w_good_result(w, id);
  w_good_result(w, id);
}
/* One output "y" given as the map the callback writes. */
static void w_one_output(dynq__wbuf_t *w, uint32_t id, void (*t)(dynq__wbuf_t *w)) {
  dynq__w_result_head(w, id);
  dynq__w_map(w, 1);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, 1);
  dynq__w_str(w, "y");
  t(w);
}
static void t_dtype_int(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_int(w, 1);
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 1);
  dynq__w_str(w, "data"); dynq__w_bin(w, "abcd", 4);
}
static void t_dtype_code(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "float16");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 2);
  dynq__w_str(w, "data"); dynq__w_bin(w, "abcd", 4);
}
/* a dtype string that is not UTF-8 (the reader's fast path for dtype
 * names must not let it through as "unknown dtype" text) */
static void t_dtype_bad_utf8(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_strn(w, "int8\xff", 5);
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 1);
  dynq__w_str(w, "data"); dynq__w_bin(w, "a", 1);
}
static void t_shape_map(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "int8");
  dynq__w_str(w, "shape"); dynq__w_map(w, 0);
  dynq__w_str(w, "data"); dynq__w_bin(w, "a", 1);
}
static void t_dim_negative(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "int8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 2); dynq__w_int(w, 2); dynq__w_int(w, -2);
  dynq__w_str(w, "data"); dynq__w_bin(w, "abcd", 4);
}
static void t_rank9(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "int8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 9);
  for (int i = 0; i < 9; i++) dynq__w_int(w, 1);
  dynq__w_str(w, "data"); dynq__w_bin(w, "a", 1);
}
static void t_data_str(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "int8");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 1);
  dynq__w_str(w, "data"); dynq__w_str(w, "a");
}
static void t_data_long(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "float32");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 1);
  dynq__w_str(w, "data"); dynq__w_bin(w, "abcdefgh", 8);
}
/* a shm reference whose size disagrees with the shape */
static void t_shm_size(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "int32");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 2);
  dynq__w_str(w, "shm"); dynq__w_map(w, 3);
  dynq__w_str(w, "region"); dynq__w_uint(w, 1);
  dynq__w_str(w, "offset"); dynq__w_uint(w, 0);
  dynq__w_str(w, "size"); dynq__w_uint(w, 4);
}
static void t_shm_not_map(dynq__wbuf_t *w) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "dtype"); dynq__w_str(w, "int32");
  dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, 2);
  dynq__w_str(w, "shm"); dynq__w_str(w, "region 1");
}
static void a_dtype_int(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_dtype_int); }
static void a_dtype_code(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_dtype_code); }
static void a_dtype_bad_utf8(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_dtype_bad_utf8); }
static void a_shape_map(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_shape_map); }
static void a_dim_negative(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_dim_negative); }
static void a_rank9(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_rank9); }
static void a_data_str(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_data_str); }
static void a_data_long(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_data_long); }
static void a_shm_size(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_shm_size); }
static void a_shm_not_map(dynq__wbuf_t *w, uint32_t id) { w_one_output(w, id, t_shm_not_map); }
static void a_outputs_array(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  dynq__w_map(w, 1);
  dynq__w_str(w, "outputs");
  dynq__w_array(w, 0);
}
static void a_compute_str(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_result_head(w, id);
  dynq__w_map(w, 2);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, 0);
  dynq__w_str(w, "compute_us");
  dynq__w_str(w, "3");
}
static void a_error_int(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_uint(w, id);
  dynq__w_int(w, -10006);
  dynq__w_nil(w);
}
static void a_error_fields(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_uint(w, id);
  dynq__w_map(w, 3);
  dynq__w_str(w, "name"); dynq__w_int(w, 5);
  dynq__w_str(w, "code"); dynq__w_str(w, "ENOMODEL");
  dynq__w_str(w, "message"); dynq__w_array(w, 0);
  dynq__w_nil(w);
}
/* envelope ints out of range, a request from the server, then the answer */
static void a_envelope_noise(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 0);                            /* a request, not an answer */
  dynq__w_uint(w, id);
  dynq__w_str(w, "ping");
  dynq__w_map(w, 0);
  w_good_result(w, id);
}
static void a_msgid_negative(dynq__wbuf_t *w, uint32_t id) {
  (void)id;
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_int(w, -1);
  dynq__w_nil(w);
  dynq__w_map(w, 0);
}
static void a_msgid_huge(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 1);
  dynq__w_uint(w, ((uint64_t)1 << 32) + id);     /* id modulo 2^32: not ours */
  dynq__w_nil(w);
  dynq__w_map(w, 0);
}
static void a_type_3(dynq__wbuf_t *w, uint32_t id) {
  dynq__w_array(w, 4);
  dynq__w_uint(w, 3);
  dynq__w_uint(w, id);
  dynq__w_nil(w);
  dynq__w_map(w, 0);
}
/* a str whose declared length runs past the frame's end, then EOF */
static void a_str_past_end(dynq__wbuf_t *w, uint32_t id) {
  static const uint8_t b[] = {0xdb, 0x00, 0x00, 0x10, 0x00, 'a', 'b'};
  dynq__w_result_head(w, id);
  raw(w, b, sizeof b);
}
static void a_map_lie(dynq__wbuf_t *w, uint32_t id) {
  static const uint8_t b[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'k'};
  dynq__w_result_head(w, id);
  raw(w, b, sizeof b);
}
static void a_nothing(dynq__wbuf_t *w, uint32_t id) {
  (void)w;
  (void)id;
}

static const bad_answer_t answers[] = {
  {"truncated, then EOF", a_truncated, DYNQ_ECLOSED, "closed by dynqd in the middle of an answer", 0, 1},
  {"hang-up without an answer", a_nothing, DYNQ_ECLOSED, "closed", 0, 1},
  {"a map, not an array", a_not_array, DYNQ_EPROTO, "malformed response", 0, 0},
  {"an array of three", a_three, DYNQ_EPROTO, "malformed response", 0, 0},
  {"msgid a string", a_msgid_str, DYNQ_EPROTO, "malformed response", 0, 0},
  {"bin of 4 GiB declared", a_bin_4g, DYNQ_ETOOBIG, "string or bin longer than the client accepts", 0, 0},
  {"array count of 2^32 - 1", a_array_lie, DYNQ_ELIMIT, "more array or map elements than", 0, 0},
  {"40 nested arrays", a_depth_bomb, DYNQ_EDEPTH, "deeper than 32 levels", 0, 0},
  {"byte 0xc1", a_c1, DYNQ_EPROTO, "not msgpack", 0, 0},
  {"shape product overflows", a_shape_overflow, DYNQ_EPROTO, "output 'y': tensor has more than", 1, 0},
  {"int64 [2] in 8 bytes", a_size_mismatch, DYNQ_EPROTO, "tensor data has 8 bytes, shape and dtype need 16", 1, 0},
  {"result nil", a_result_nil, DYNQ_EPROTO, "'result'", 1, 0},
  {"output name not UTF-8", a_name_not_utf8, DYNQ_EPROTO, "'outputs key'", 1, 0},
  {"error a string", a_error_str, DYNQ_ESERVER, "it broke", 1, 0},
  {"error name unknown", a_error_unknown, DYNQ_ESERVER, "a newer server's error", 1, 0},
  {"msgid 0 error", a_msgid0_error, DYNQ_EPROTO, "your frame made no sense", 0, 0},
  {"unknown ticket, notification, duplicate", a_noise_then_dup, 0, NULL, 1, 0},
  {"dtype an integer", a_dtype_int, DYNQ_EPROTO, "output 'y': tensor field 'dtype' is not a string", 1, 0},
  {"dtype float16", a_dtype_code, DYNQ_EPROTO, "output 'y': unknown tensor dtype 'float16'", 1, 0},
  {"dtype not UTF-8", a_dtype_bad_utf8, DYNQ_EPROTO, "output 'y': tensor field 'dtype' is not a string", 1, 0},
  {"shape a map", a_shape_map, DYNQ_EPROTO, "output 'y': tensor field 'shape' is not an array", 1, 0},
  {"negative dimension", a_dim_negative, DYNQ_EPROTO, "output 'y': tensor shape[1] is negative", 1, 0},
  {"rank 9", a_rank9, DYNQ_EPROTO, "output 'y': tensor rank 9 exceeds", 1, 0},
  {"data a string", a_data_str, DYNQ_EPROTO, "output 'y': tensor field 'data' is not bin", 1, 0},
  {"float32 [1] in 8 bytes", a_data_long, DYNQ_EPROTO, "tensor data has 8 bytes, shape and dtype need 4", 1, 0},
  {"shm size disagrees with shape", a_shm_size, DYNQ_EPROTO, "output 'y': shm reference of 4 bytes does not hold", 1, 0},
  {"shm a string", a_shm_not_map, DYNQ_EPROTO, "output 'y': 'shm' is not a map", 1, 0},
  {"outputs an array", a_outputs_array, DYNQ_EPROTO, "'outputs'", 1, 0},
  {"compute_us a string", a_compute_str, DYNQ_EPROTO, "'compute_us'", 1, 0},
  {"error an integer", a_error_int, DYNQ_ESERVER, "error that is not a map", 1, 0},
  {"error fields of wrong types", a_error_fields, DYNQ_ESERVER, "unknown error", 1, 0},
  {"a request from the server, then the answer", a_envelope_noise, 0, NULL, 1, 0},
  {"msgid -1", a_msgid_negative, DYNQ_EPROTO, "msgid is not an integer in 0..2^32-1", 0, 0},
  {"msgid 2^32 + ticket", a_msgid_huge, DYNQ_EPROTO, "msgid is not an integer in 0..2^32-1", 0, 0},
  {"message type 3", a_type_3, DYNQ_EPROTO, "message type is not 0, 1 or 2", 0, 0},
  {"str past the frame's end, then EOF", a_str_past_end, DYNQ_ECLOSED, "in the middle of an answer (11 bytes", 0, 1},
  {"map count of 2^31 - 1", a_map_lie, DYNQ_ELIMIT, "more array or map elements than", 0, 0},
};

START_TEST(hostile_server_answers) {
  const bad_answer_t *a = &answers[_i];
  int srv;
  dynq_client_t *c = pair_client(&srv);
  float x[2] = {1, 2};
  dynq_tensor_t in = {"x", DYNQ_FLOAT32, 1, {2}, x, sizeof x};
  uint32_t t, got;
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in, 1, NULL, &t), 0);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);         /* sends it */
  ck_assert_uint_eq(srv_take(srv), t);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  a->write(&w, t);
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  if (w.len > 0) tu_write_all(srv, w.data, w.len);
  dynq__wbuf_free(&w);
  if (a->close_after) close(srv);
  /* bounded: an answer that never completes the ticket is a hang */
  ck_assert_msg(dynq_poll(c, 10000, &got) == 1, "%s: no completion", a->what);
  ck_assert_uint_eq(got, t);
  dynq_infer_result_t res;
  int r = dynq_wait_infer(c, t, &res);
  ck_assert_msg(r == a->code, "%s: %d (%s) '%s'", a->what, r, dynq_strerror(r),
                dynq_client_errmsg(c));
  if (r == 0) {
    ck_assert_int_eq(res.n_outputs, 1);
    dynq_infer_result_free(&res);
  } else {
    ck_assert_msg(dynq_client_errmsg(c)[0] != '\0', "%s: no message", a->what);
    ck_assert_msg(strstr(dynq_client_errmsg(c), a->needle) != NULL, "%s: '%s'", a->what,
                  dynq_client_errmsg(c));
  }
  ck_assert_int_eq(dynq_inflight(c), 0);
  /* the next request: answered when the stream was whole, else refused */
  r = dynq_submit_infer(c, "m", &in, 1, NULL, &t);
  if (a->stream_ok) {
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
    ck_assert_uint_eq(srv_take(srv), t);
    dynq__wbuf_init(&w);
    w_good_result(&w, t);
    tu_send_wbuf(srv, &w);
    ck_assert_int_eq(dynq_wait_infer(c, t, &res), 0);
    ck_assert_int_eq(res.n_outputs, 1);
    ck_assert_int_eq(res.compute_us, 3);
    dynq_infer_result_free(&res);
  } else {
    ck_assert_int_eq(r, DYNQ_ECLOSED);
    ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "closed"));
  }
  dynq_close(c);
  if (!a->close_after) close(srv);
}
END_TEST


/* ---- dynqctl against the hostile server ---- */

/* Answers every request on one accepted connection with a bad answer. */
typedef struct ctl_fake {
  int lfd;
  const bad_answer_t *a;
  pthread_t th;
} ctl_fake_t;

static void *ctl_fake_main(void *arg) {
  ctl_fake_t *f = arg;
  tu_rpc_t *rpc = calloc(1, sizeof(*rpc));
  rpc->fd = accept(f->lfd, NULL, NULL);
  if (rpc->fd >= 0) {
    for (;;) {
      struct pollfd pfd = {rpc->fd, POLLIN, 0};
      dynq__rpc_msg_t m;
      /* the client hangs up after its answer: EOF ends the fake */
      if (dynq__framer_pending(&rpc->fr) == 0 &&
          (poll(&pfd, 1, 10000) != 1 || recv(rpc->fd, (char[1]){0}, 1, MSG_PEEK) <= 0))
        break;
      if (tu_rpc_recv(rpc, &m) != 0) break;
      dynq__wbuf_t w;
      dynq__wbuf_init(&w);
      f->a->write(&w, m.msgid);
      dynq__rpc_free(&m);
      if (w.len > 0) tu_write_all(rpc->fd, w.data, w.len);
      dynq__wbuf_free(&w);
      if (f->a->close_after) break;
    }
    close(rpc->fd);
  }
  dynq__framer_free(&rpc->fr);
  free(rpc);
  return NULL;
}

/* dynqctl infer prints what was wrong with the answer and exits 1, never
 * a crash (tu_run reports a signal as 128 + N). */
START_TEST(dynqctl_reports_bad_answers) {
  static const int pick[] = {0, 5, 7, 9, 10, 11, 15};
  char *dir = tu_mkdtemp(), path[512], exe[4096];
  snprintf(path, sizeof path, "%s/fake.sock", dir);
  snprintf(exe, sizeof exe, "%s", tu_build("client/dynqctl"));
  for (size_t k = 0; k < sizeof pick / sizeof pick[0]; k++) {
    const bad_answer_t *a = &answers[pick[k]];
    ctl_fake_t f = {tu_listen_unix(path, 1), a, 0};
    ck_assert_int_ge(f.lfd, 0);
    ck_assert_int_eq(pthread_create(&f.th, NULL, ctl_fake_main, &f), 0);
    char *argv[] = {exe, "--socket", path, "infer", "m", "--input", "x=[1,2]", NULL};
    char *out = NULL;
    int rc = tu_run(argv, &out);
    pthread_join(f.th, NULL);
    close(f.lfd);
    unlink(path);
    ck_assert_msg(rc == 1, "%s: dynqctl exit %d:\n%s", a->what, rc, out);
    ck_assert_msg(strstr(out, "dynqctl: infer: ") != NULL && strstr(out, a->needle) != NULL &&
                      strstr(out, dynq_err_name(a->code)) != NULL,
                  "%s: %s", a->what, out);
    free(out);
  }
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* dynqctl --timeout against a server that never answers: exit 1 naming
 * ETIMEDOUT and what to do; a bad value is a usage error (2). */
START_TEST(dynqctl_timeout) {
  static const bad_answer_t silent = {"silence", a_nothing, -ETIMEDOUT, NULL, 1, 0};
  char *dir = tu_mkdtemp(), path[512], exe[4096];
  snprintf(path, sizeof path, "%s/fake.sock", dir);
  snprintf(exe, sizeof exe, "%s", tu_build("client/dynqctl"));
  ctl_fake_t f = {tu_listen_unix(path, 1), &silent, 0};
  ck_assert_int_eq(pthread_create(&f.th, NULL, ctl_fake_main, &f), 0);
  char *argv[] = {exe, "--socket", path, "--timeout", "200", "ping", NULL};
  char *out = NULL;
  int rc = tu_run(argv, &out);
  pthread_join(f.th, NULL);
  close(f.lfd);
  ck_assert_msg(rc == 1, "dynqctl exit %d:\n%s", rc, out);
  ck_assert_msg(strstr(out, "dynqctl: ping: no answer from dynqd within 200 ms") != NULL &&
                    strstr(out, "(ETIMEDOUT)") != NULL && strstr(out, "--timeout MS") != NULL,
                "%s", out);
  free(out);
  char *bad[] = {exe, "--socket", path, "--timeout", "-1", "ping", NULL};
  rc = tu_run(bad, &out);
  ck_assert_msg(rc == 2 && strstr(out, "--timeout must be a whole number of milliseconds") != NULL,
                "exit %d: %s", rc, out);
  free(out);
  unlink(path);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* An answer for ticket id with k + 1 outputs o0..ok, output j an int32
 * [j + 1] of values id * 100 + j (every third one a shm reference instead),
 * and fields before and after the outputs. */
static void w_answer_k(dynq__wbuf_t *w, uint32_t id, int k) {
  int32_t v[16];
  dynq__w_result_head(w, id);
  dynq__w_map(w, 3);
  dynq__w_str(w, "queue_us");
  dynq__w_uint(w, 7);
  dynq__w_str(w, "outputs");
  dynq__w_map(w, (uint32_t)k + 1);
  for (int j = 0; j <= k; j++) {
    char name[8];
    snprintf(name, sizeof name, "o%d", j);
    dynq__w_str(w, name);
    if (j % 3 == 2) {
      dynq__w_map(w, 3);
      dynq__w_str(w, "dtype"); dynq__w_str(w, "int32");
      dynq__w_str(w, "shape"); dynq__w_array(w, 1); dynq__w_int(w, j + 1);
      dynq__w_str(w, "shm"); dynq__w_map(w, 1); dynq__w_str(w, "size");
      dynq__w_uint(w, (uint64_t)(j + 1) * 4);
      continue;
    }
    for (int e = 0; e <= j; e++) v[e] = (int32_t)id * 100 + j;
    dynq__wtensor_t t = {DYNQ_INT32, 1, {j + 1}, v, (size_t)(j + 1) * 4};
    dynq__w_wtensor(w, &t);
  }
  dynq__w_str(w, "compute_us");
  dynq__w_int(w, id);
}

static void check_answer_k(const dynq_infer_result_t *res, uint32_t id, int k) {
  ck_assert_int_eq(res->n_outputs, k + 1);
  ck_assert_int_eq(res->compute_us, id);
  for (int j = 0; j <= k; j++) {
    const dynq_tensor_t *o = &res->outputs[j];
    char name[16];
    snprintf(name, sizeof name, "o%d", j);
    ck_assert_str_eq(o->name, name);
    ck_assert_int_eq(o->rank, 1);
    ck_assert_int_eq(o->shape[0], j + 1);
    ck_assert_uint_eq(o->nbytes, (size_t)(j + 1) * 4);
    if (j % 3 == 2) {
      ck_assert_ptr_null(o->data);
      continue;
    }
    ck_assert_uint_eq((uintptr_t)o->data % 64, 0);
    for (int e = 0; e <= j; e++) ck_assert_int_eq(((const int32_t *)o->data)[e], (int32_t)id * 100 + j);
  }
}

/* Many answers in one read (each taken off the buffer by its own
 * decoding), in another order than asked, with up to 12 outputs (more than
 * the decoder keeps between its passes), one in an envelope only the
 * framer delimits, and the last split across two writes. */
START_TEST(answers_back_to_back) {
  enum { N = 14 };
  int srv;
  dynq_client_t *c = pair_client(&srv);
  float x[2] = {1, 2};
  dynq_tensor_t in = {"x", DYNQ_FLOAT32, 1, {2}, x, sizeof x};
  uint32_t t[N], got;
  for (int k = 0; k < N; k++) ck_assert_int_eq(dynq_submit_infer(c, "m", &in, 1, NULL, &t[k]), 0);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
  static tu_rpc_t rpc;                            /* one framer: the requests came together */
  memset(&rpc, 0, sizeof rpc);
  rpc.fd = srv;
  for (int k = 0; k < N; k++) {
    dynq__rpc_msg_t m;
    ck_assert_int_eq(tu_rpc_recv(&rpc, &m), 0);
    ck_assert_uint_eq(m.msgid, t[k]);
    dynq__rpc_free(&m);
  }
  dynq__framer_free(&rpc.fr);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  for (int k = N - 2; k >= 0; k--) {
    if (k == 5) {                                 /* array16 envelope */
      size_t at = w.len;
      w_answer_k(&w, t[k], k);
      uint8_t *b = w.data + at;
      ck_assert_uint_eq(b[0], 0x94);
      raw(&w, (const uint8_t[]){0, 0}, 2);        /* room for the longer header */
      memmove(b + 3, b + 1, w.len - at - 3);
      b[0] = 0xdc;
      b[1] = 0;
      b[2] = 4;
      continue;
    }
    w_answer_k(&w, t[k], k % 12);
  }
  size_t whole = w.len;
  w_answer_k(&w, t[N - 1], 11);
  size_t half = whole + (w.len - whole) / 2;
  tu_write_all(srv, w.data, half);
  for (int done = 0; done < N - 1; done++) {
    ck_assert_int_eq(dynq_poll(c, 5000, &got), 1);
    int k = 0;
    while (t[k] != got) k++;
    ck_assert_int_eq(k, N - 2 - done);           /* in the order sent */
    dynq_infer_result_t res;
    ck_assert_int_eq(dynq_wait_infer(c, got, &res), 0);
    check_answer_k(&res, got, k == 5 ? 5 : k % 12);
    dynq_infer_result_free(&res);
  }
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);   /* half an answer: not yet */
  tu_write_all(srv, w.data + half, w.len - half);
  ck_assert_int_eq(dynq_poll(c, 5000, &got), 1);
  ck_assert_uint_eq(got, t[N - 1]);
  dynq_infer_result_t res;
  ck_assert_int_eq(dynq_wait_infer(c, got, &res), 0);
  check_answer_k(&res, got, 11);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(dynq_inflight(c), 0);
  dynq__wbuf_free(&w);
  dynq_close(c);
  close(srv);
}
END_TEST

/* The decoder says how long the map it read was, with more bytes after. */
START_TEST(decoder_reports_its_length) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_answer_k(&w, 9, 10);
  /* the result map starts after [1, 9, nil: 4 bytes */
  size_t maplen = w.len - 4;
  raw(&w, (const uint8_t[]){0x93, 0xc1, 0xc1}, 3);
  dynq_infer_result_t res;
  size_t used = 0;
  char err[256];
  ck_assert_int_eq(dynq__decode_infer_result(w.data + 4, w.len - 4, &res, &used, err, sizeof err),
                   0);
  ck_assert_uint_eq(used, maplen);
  check_answer_k(&res, 9, 10);
  dynq_infer_result_free(&res);
  dynq__wbuf_free(&w);
}
END_TEST

/* The framer's peek/take: frames the owner delimits itself, mixed with
 * scanned ones, and the sticky error still wins. */
START_TEST(framer_peek_take) {
  dynq__framer_t f;
  const uint8_t *p, *frame;
  size_t n, flen;
  dynq__framer_init(&f, NULL);
  ck_assert_int_eq(dynq__framer_peek(&f, &p, &n), 0);
  ck_assert_uint_eq(n, 0);
  static const uint8_t in[] = {0x91, 0x01, 0x92, 0x02, 0x03, 0xc0, 0x07};
  ck_assert_int_eq(dynq__framer_push(&f, in, sizeof in), 0);
  ck_assert_int_eq(dynq__framer_peek(&f, &p, &n), 0);
  ck_assert_uint_eq(n, sizeof in);
  ck_assert_mem_eq(p, in, sizeof in);
  dynq__framer_take(&f, 2);                       /* [1] */
  ck_assert_uint_eq(dynq__framer_pending(&f), 5);
  ck_assert_int_eq(dynq__framer_next(&f, &frame, &flen), 1);  /* [2, 3] scanned */
  ck_assert_uint_eq(flen, 3);
  ck_assert_uint_eq(frame[0], 0x92);
  ck_assert_int_eq(dynq__framer_peek(&f, &p, &n), 0);
  ck_assert_uint_eq(n, 2);
  ck_assert_uint_eq(p[0], 0xc0);
  dynq__framer_take(&f, 1);                       /* nil */
  dynq__framer_hold(&f);                          /* given back: pending again */
  ck_assert_uint_eq(dynq__framer_pending(&f), 2);
  ck_assert_int_eq(dynq__framer_next(&f, &frame, &flen), 1);
  ck_assert_uint_eq(frame[0], 0xc0);
  ck_assert_int_eq(dynq__framer_next(&f, &frame, &flen), 1);
  ck_assert_uint_eq(frame[0], 0x07);
  ck_assert_int_eq(dynq__framer_next(&f, &frame, &flen), 0);
  ck_assert_int_eq(dynq__framer_push(&f, (const uint8_t[]){0xc1}, 1), 0);
  ck_assert_int_eq(dynq__framer_next(&f, &frame, &flen), DYNQ_EPROTO);
  ck_assert_int_eq(dynq__framer_peek(&f, &p, &n), DYNQ_EPROTO);
  dynq__framer_free(&f);
}
END_TEST

/* ---- the client timeout ---- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const float x2[2] = {1, 2};
static const dynq_tensor_t in_x2 = {"x", DYNQ_FLOAT32, 1, {2}, (void *)x2, sizeof x2};

/* A silent server: the call gives up after the timeout with -ETIMEDOUT;
 * the answer that comes late (half of it before the next request, the
 * rest after) is dropped by msgid and the next request is answered. */
START_TEST(timeout_abandons_and_drops_late_answer) {
  int srv;
  dynq_client_t *c = pair_client(&srv);
  dynq_infer_result_t res;
  uint32_t t1, t2, got;
  ck_assert_int_eq(dynq_client_get_timeout(c), 0);
  ck_assert_int_eq(dynq_client_set_timeout(c, -1), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "timeout -1 ms is outside 0.."));
  ck_assert_int_eq(dynq_client_set_timeout(c, DYNQ_CLIENT_TIMEOUT_MAX_MS + 1), DYNQ_EPARAMS);
  ck_assert_int_eq(dynq_client_set_timeout(NULL, 5), -EINVAL);
  ck_assert_int_eq(dynq_client_set_timeout(c, 100), 0);
  ck_assert_int_eq(dynq_client_get_timeout(c), 100);

  uint64_t t0 = now_ms();                                   /* the deadline runs from here */
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t1), 0);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
  ck_assert_uint_eq(srv_take(srv), t1);
  int r = dynq_wait_infer(c, t1, &res);
  uint64_t waited = now_ms() - t0;
  ck_assert_msg(r == -ETIMEDOUT, "%d '%s'", r, dynq_client_errmsg(c));
  ck_assert_str_eq(dynq_err_name(r), "ETIMEDOUT");
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "no answer from dynqd within 100 ms"));
  ck_assert_msg(waited >= 95 && waited < 10000, "waited %llu ms", (unsigned long long)waited);
  ck_assert_int_eq(dynq_inflight(c), 0);
  ck_assert_int_eq(dynq_wait_infer(c, t1, &res), -ENOENT);    /* abandoned: gone */

  dynq__wbuf_t late, w;
  dynq__wbuf_init(&late);
  w_good_result(&late, t1);
  size_t half = late.len / 2;
  tu_write_all(srv, late.data, half);
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t2), 0);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);               /* sent; half a frame read */
  ck_assert_uint_eq(srv_take(srv), t2);
  tu_write_all(srv, late.data + half, late.len - half);
  dynq__wbuf_free(&late);
  dynq__wbuf_init(&w);
  w_answer_k(&w, t2, 2);
  tu_send_wbuf(srv, &w);
  ck_assert_int_eq(dynq_wait_infer(c, t2, &res), 0);
  check_answer_k(&res, t2, 2);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);               /* the late one was no ticket */
  ck_assert_int_eq(dynq_inflight(c), 0);

  /* a blocking call too; the stream stays usable */
  t0 = now_ms();
  ck_assert_int_eq(dynq_ping(c), -ETIMEDOUT);
  ck_assert_uint_ge(now_ms() - t0, 95);
  ck_assert_int_eq(dynq_inflight(c), 0);
  uint32_t pid = srv_take(srv);
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, pid);
  dynq__w_str(&w, "pong");
  w_good_result(&w, pid + 1);                               /* the next ticket's */
  tu_send_wbuf(srv, &w);
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t2), 0);
  ck_assert_uint_eq(t2, pid + 1);
  ck_assert_int_eq(dynq_wait_infer(c, t2, &res), 0);
  ck_assert_int_eq(res.compute_us, 3);
  dynq_infer_result_free(&res);
  dynq_close(c);
  close(srv);
}
END_TEST

/* dynq_poll(-1) on a client with a timeout reports expired tickets as
 * completed (with -ETIMEDOUT when collected) among answered ones; a poll
 * with a shorter timeout of its own still returns 0 first. */
START_TEST(timeout_poll_reports_expired) {
  int srv;
  dynq_client_t *c = pair_client(&srv);
  uint32_t t[3], got;
  dynq_infer_result_t res;
  ck_assert_int_eq(dynq_client_set_timeout(c, 150), 0);
  for (int k = 0; k < 3; k++) ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t[k]), 0);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
  static tu_rpc_t rpc;
  memset(&rpc, 0, sizeof rpc);
  rpc.fd = srv;
  for (int k = 0; k < 3; k++) {
    dynq__rpc_msg_t m;
    ck_assert_int_eq(tu_rpc_recv(&rpc, &m), 0);
    ck_assert_uint_eq(m.msgid, t[k]);
    dynq__rpc_free(&m);
  }
  dynq__framer_free(&rpc.fr);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_good_result(&w, t[1]);
  tu_send_wbuf(srv, &w);
  ck_assert_int_eq(dynq_poll(c, -1, &got), 1);
  ck_assert_uint_eq(got, t[1]);
  ck_assert_int_eq(dynq_wait_infer(c, got, &res), 0);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(dynq_poll(c, 1, &got), 0);                /* not due yet */
  int expired = 0;
  while (dynq_inflight(c) > 0) {
    ck_assert_int_eq(dynq_poll(c, -1, &got), 1);
    ck_assert(got == t[0] || got == t[2]);
    ck_assert_int_eq(dynq_wait_infer(c, got, &res), -ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "within 150 ms"));
    expired++;
  }
  ck_assert_int_eq(expired, 2);
  ck_assert_int_eq(dynq_poll(c, -1, &got), 0);               /* nothing waiting */
  /* a timeout set later applies to later requests only */
  ck_assert_int_eq(dynq_client_set_timeout(c, 0), 0);
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t[0]), 0);
  ck_assert_int_eq(dynq_poll(c, 200, &got), 0);              /* no deadline: still waiting */
  ck_assert_int_eq(dynq_inflight(c), 1);
  dynq_close(c);
  close(srv);
}
END_TEST

/* The fake server of blocking_infer_large_input: takes three requests,
 * checks each input's bytes, answers them last first. */
typedef struct big_srv {
  int fd;
  const int8_t *want;       /* the pattern every input holds */
  size_t lens[3];           /* the inputs' sizes, in the order expected */
  uint32_t ids[3];
  int ok;
} big_srv_t;

static void *big_srv_main(void *arg) {
  big_srv_t *b = arg;
  tu_rpc_t srv;
  memset(&srv, 0, sizeof srv);
  srv.fd = b->fd;
  b->ok = 1;
  for (int k = 0; k < 3; k++) {
    dynq__rpc_msg_t m;
    const void *data;
    size_t n;
    if (tu_rpc_recv(&srv, &m) != 0) {
      b->ok = 0;
      break;
    }
    b->ids[k] = m.msgid;
    dynq__obj_t x = dynq__obj_get(dynq__obj_get(dynq__obj_get(m.params, "inputs"), "x"), "data");
    if (strcmp(m.method, "infer") != 0 || dynq__obj_bin(x, &data, &n) != 0 || n != b->lens[k] ||
        memcmp(data, b->want, n) != 0)
      b->ok = 0;
    dynq__rpc_free(&m);
  }
  for (int k = 2; k >= 0 && b->ok; k--) {
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    w_good_result(&w, b->ids[k]);
    tu_rpc_send_wbuf(&srv, &w);
    dynq__wbuf_free(&w);
  }
  dynq__framer_free(&srv.fr);
  return NULL;
}

/* A blocking infer sends its input from the caller's memory, after the
 * requests queued before it, in the order they were made; an input
 * bigger than the socket takes many partial writes, each resumed at the
 * right byte. */
START_TEST(blocking_infer_large_input) {
  int srv;
  dynq_client_t *c = pair_client(&srv);
  size_t n = (size_t)3 << 20;
  int8_t *big = malloc(n);
  ck_assert_ptr_nonnull(big);
  for (size_t i = 0; i < n; i++) big[i] = (int8_t)(i * 131 + (i >> 12));
  big_srv_t b = {srv, big, {700, 1000, n}, {0}, 0};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, big_srv_main, &b), 0);
  dynq_tensor_t a = {"x", DYNQ_INT8, 1, {700}, big, 700};
  dynq_tensor_t a2 = {"x", DYNQ_INT8, 1, {1000}, big, 1000};
  dynq_tensor_t in = {"x", DYNQ_INT8, 1, {(int64_t)n}, big, n};
  uint32_t t1, t2;
  dynq_infer_result_t res;
  ck_assert_int_eq(dynq_submit_infer(c, "m", &a, 1, NULL, &t1), 0);
  ck_assert_int_eq(dynq_submit_infer(c, "m", &a2, 1, NULL, &t2), 0);
  ck_assert_msg(dynq_infer(c, "m", DYNQ_INFER_DEFAULT, &in, 1, &res) == 0, "%s",
                dynq_client_errmsg(c));
  ck_assert_int_eq(res.n_outputs, 1);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(dynq_wait_infer(c, t2, &res), 0);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(dynq_wait_infer(c, t1, &res), 0);
  dynq_infer_result_free(&res);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert_int_eq(b.ok, 1);
  ck_assert_uint_eq(b.ids[0], t1);
  ck_assert_uint_eq(b.ids[1], t2);
  ck_assert_int_eq(dynq_inflight(c), 0);
  dynq_close(c);
  close(srv);
  free(big);
}
END_TEST

/* A server that stops reading: the request cannot be wholly sent, the
 * stream is lost mid-request, so the connection closes with -ETIMEDOUT. */
START_TEST(timeout_send_stall_closes) {
  int srv;
  dynq_client_t *c = pair_client(&srv);
  size_t n = (size_t)8 << 20;
  int8_t *big = calloc(n, 1);
  ck_assert_ptr_nonnull(big);
  dynq_tensor_t in = {"x", DYNQ_INT8, 1, {(int64_t)n}, big, n};
  dynq_infer_result_t res;
  ck_assert_int_eq(dynq_client_set_timeout(c, 150), 0);
  uint64_t t0 = now_ms();
  int r = dynq_infer(c, "m", DYNQ_INFER_DEFAULT, &in, 1, &res);
  ck_assert_msg(r == -ETIMEDOUT, "%d '%s'", r, dynq_client_errmsg(c));
  ck_assert_uint_ge(now_ms() - t0, 145);
  ck_assert_ptr_nonnull(strstr(dynq_client_errmsg(c), "took no bytes of a request for 150 ms"));
  ck_assert_int_eq(dynq_inflight(c), 0);
  ck_assert_int_eq(dynq_ping(c), DYNQ_ECLOSED);
  dynq_close(c);
  close(srv);
  free(big);
}
END_TEST

/* A listener that never accepts, its queue full (a stopped dynqd). */
START_TEST(timeout_connect_queue_full) {
  char *dir = tu_mkdtemp(), path[512], msg[512];
  snprintf(path, sizeof path, "%s/full.sock", dir);
  int lfd = tu_listen_unix(path, 0);
  int held[64], nh = 0;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  ck_assert_uint_lt(strlen(path), sizeof sa.sun_path);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  for (; nh < 64; nh++) {
    held[nh] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(held[nh], 0);
    if (connect(held[nh], (struct sockaddr *)&sa, sizeof sa) != 0) {
      ck_assert_int_eq(errno, EAGAIN);
      close(held[nh]);
      break;
    }
  }
  ck_assert_int_lt(nh, 64);
  dynq_client_t *c = NULL;
  uint64_t t0 = now_ms();
  int r = dynq_connect_timeout(path, 150, &c, msg, sizeof msg);
  ck_assert_msg(r == -ETIMEDOUT, "%d '%s'", r, msg);
  ck_assert_uint_ge(now_ms() - t0, 145);
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(msg, "accepted no connection in time") != NULL && strstr(msg, path) != NULL,
                "%s", msg);
  ck_assert_int_eq(dynq_connect_timeout(path, -5, &c, msg, sizeof msg), DYNQ_EPARAMS);
  ck_assert_ptr_nonnull(strstr(msg, "timeout -5 ms is outside"));
  /* the environment gives dynq_connect its timeout, and every client its default */
  ck_assert_int_eq(setenv("DYNQ_CLIENT_TIMEOUT_MS", "120", 1), 0);
  ck_assert_int_eq(dynq_connect(path, &c), -ETIMEDOUT);
  int srv;
  c = pair_client(&srv);
  ck_assert_int_eq(dynq_client_get_timeout(c), 120);
  dynq_close(c);
  close(srv);
  ck_assert_int_eq(setenv("DYNQ_CLIENT_TIMEOUT_MS", "12ms", 1), 0);  /* a typo: no limit */
  c = pair_client(&srv);
  ck_assert_int_eq(dynq_client_get_timeout(c), 0);
  dynq_close(c);
  close(srv);
  unsetenv("DYNQ_CLIENT_TIMEOUT_MS");
  for (int k = 0; k < nh; k++) close(held[k]);
  close(lfd);
  tu_rmtree(dir);
  free(dir);
}
END_TEST

/* A server dripping an answer one byte at a time. */
typedef struct drip {
  int fd;
  dynq__wbuf_t w;
  int gap_us;
} drip_t;

static void *drip_main(void *arg) {
  drip_t *d = arg;
  for (size_t i = 0; i < d->w.len; i++) {
    tu_write_all(d->fd, d->w.data + i, 1);
    usleep((useconds_t)d->gap_us);
  }
  return NULL;
}

/* Slow bytes are no progress: a drip longer than the timeout times the
 * request out (and the rest, arriving later, is dropped); without a
 * timeout the drip is simply an answer. */
START_TEST(slow_drip) {
  int srv;
  dynq_client_t *c = pair_client(&srv);
  uint32_t t, got;
  dynq_infer_result_t res;
  for (int with_timeout = 0; with_timeout < 2; with_timeout++) {
    ck_assert_int_eq(dynq_client_set_timeout(c, with_timeout ? 100 : 0), 0);
    ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t), 0);
    ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
    ck_assert_uint_eq(srv_take(srv), t);
    drip_t d = {srv, {0}, with_timeout ? 8000 : 1000};
    dynq__wbuf_init(&d.w);
    w_good_result(&d.w, t);                 /* ~50 bytes: 50 ms, or 400 ms */
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, drip_main, &d), 0);
    int r = dynq_wait_infer(c, t, &res);
    pthread_join(th, NULL);
    dynq__wbuf_free(&d.w);
    if (!with_timeout) {
      ck_assert_int_eq(r, 0);
      ck_assert_int_eq(res.compute_us, 3);
      dynq_infer_result_free(&res);
    } else {
      ck_assert_msg(r == -ETIMEDOUT, "%d '%s'", r, dynq_client_errmsg(c));
    }
  }
  /* the connection is still whole */
  ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t), 0);
  ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
  ck_assert_uint_eq(srv_take(srv), t);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  w_good_result(&w, t);
  tu_send_wbuf(srv, &w);
  ck_assert_int_eq(dynq_wait_infer(c, t, &res), 0);
  dynq_infer_result_free(&res);
  dynq_close(c);
  close(srv);
}
END_TEST

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  ck_assert_ptr_nonnull(d);
  while (readdir(d) != NULL) n++;
  closedir(d);
  return n;
}

/* File descriptors riding on an answer are never taken in (the client
 * reads with recv, so the kernel closes them): none leaks into the
 * caller's process, and the answer is read as usual. */
START_TEST(answer_with_fds_leaks_none) {
  int srv;
  dynq_client_t *c = pair_client(&srv);
  uint32_t t, got;
  dynq_infer_result_t res;
  int pfd[2];
  ck_assert_int_eq(pipe(pfd), 0);
  int before = count_fds();
  for (int round = 0; round < 3; round++) {
    ck_assert_int_eq(dynq_submit_infer(c, "m", &in_x2, 1, NULL, &t), 0);
    ck_assert_int_eq(dynq_poll(c, 0, &got), 0);
    ck_assert_uint_eq(srv_take(srv), t);
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    w_good_result(&w, t);
    struct iovec iov = {w.data, w.len};
    union {
      struct cmsghdr h;
      char buf[CMSG_SPACE(2 * sizeof(int))];
    } cm;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    memset(&cm, 0, sizeof cm);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cm.buf;
    mh.msg_controllen = sizeof cm.buf;
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(2 * sizeof(int));
    memcpy(CMSG_DATA(h), pfd, 2 * sizeof(int));
    ck_assert_int_eq(sendmsg(srv, &mh, 0), (ssize_t)w.len);
    dynq__wbuf_free(&w);
    ck_assert_int_eq(dynq_wait_infer(c, t, &res), 0);
    ck_assert_int_eq(res.n_outputs, 1);
    dynq_infer_result_free(&res);
  }
  ck_assert_int_eq(count_fds(), before);
  close(pfd[0]);
  close(pfd[1]);
  dynq_close(c);
  close(srv);
}
END_TEST

/* Each typed call against a result of the wrong shape: DYNQ_EPROTO naming
 * the call, nothing filled in, and the connection still usable (the frame
 * was whole).  The answer is written before the call, to the msgid the
 * call will take. */
typedef struct typed_case {
  const char *what;
  void (*result)(dynq__wbuf_t *w);   /* the result object */
  int (*call)(dynq_client_t *c);
  const char *needle;
} typed_case_t;

static void r_int(dynq__wbuf_t *w) { dynq__w_int(w, 5); }
static void r_array(dynq__wbuf_t *w) { dynq__w_array(w, 0); }
static void r_map_str(dynq__wbuf_t *w) { dynq__w_map(w, 1); dynq__w_str(w, "a"); dynq__w_int(w, 1); }
static void r_fields_wrong(dynq__wbuf_t *w) {
  dynq__w_map(w, 6);
  dynq__w_str(w, "inputs"); dynq__w_int(w, 5);
  dynq__w_str(w, "region"); dynq__w_str(w, "x");
  dynq__w_str(w, "session"); dynq__w_array(w, 0);
  dynq__w_str(w, "version"); dynq__w_str(w, "1");
  dynq__w_str(w, "models"); dynq__w_str(w, "m");
  dynq__w_str(w, "uptime_s"); dynq__w_str(w, "long");
}

static int c_ping(dynq_client_t *c) { return dynq_ping(c); }
static int c_server_info(dynq_client_t *c) {
  dynq_server_info_t si;
  return dynq_server_info(c, &si);
}
static int c_list(dynq_client_t *c) {
  char **v = NULL;
  int r = dynq_list_models(c, &v);
  if (r == 0) dynq_strv_free(v);
  return r;
}
static int c_model_info(dynq_client_t *c) {
  dynq_model_info_t mi;
  int r = dynq_model_info(c, "m", &mi);
  if (r == 0) dynq_model_info_free(&mi);
  return r;
}
static int c_stats(dynq_client_t *c) {
  dynq_stats_t st;
  int r = dynq_stats(c, &st);
  if (r == 0) dynq_stats_free(&st);
  return r;
}
static int c_shm_register(dynq_client_t *c) {
  uint64_t region = 77;
  int r = dynq_shm_register(c, 0, 16, &region);
  ck_assert_uint_eq(region, 77);                /* untouched on failure */
  return r;
}
static int c_session_open(dynq_client_t *c) {
  uint64_t id = 77;
  int r = dynq_session_open(c, "m", NULL, 0, 0, &id);
  ck_assert_uint_eq(id, 77);
  return r;
}
static int c_load(dynq_client_t *c) {
  uint64_t v = 77;
  int r = dynq_model_load(c, "m", NULL, &v);
  ck_assert_uint_eq(v, 77);
  return r;
}

static const typed_case_t typed_cases[] = {
  {"ping answered 5", r_int, c_ping, "pong"},
  {"server.info an array", r_array, c_server_info, "server.info"},
  {"server.info fields of wrong types", r_fields_wrong, c_server_info, "server.info"},
  {"models.list a map", r_map_str, c_list, "models.list"},
  {"model.info fields of wrong types", r_fields_wrong, c_model_info, "model.info"},
  {"model.info an integer", r_int, c_model_info, "model.info"},
  {"stats an array", r_array, c_stats, "stats"},
  {"shm.register region a string", r_fields_wrong, c_shm_register, "shm.register"},
  {"session.open session an array", r_fields_wrong, c_session_open, "session.open"},
  {"model.load version a string", r_fields_wrong, c_load, "model.load"},
};

START_TEST(typed_calls_refuse_bad_results) {
  const typed_case_t *k = &typed_cases[_i];
  int srv;
  dynq_client_t *c = pair_client(&srv);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, c->next_msgid);
  k->result(&w);
  tu_send_wbuf(srv, &w);
  int r = k->call(c);
  ck_assert_msg(r == DYNQ_EPROTO && strstr(dynq_client_errmsg(c), k->needle) != NULL,
                "%s: %d (%s) '%s'", k->what, r, dynq_err_name(r), dynq_client_errmsg(c));
  ck_assert_int_eq(dynq_inflight(c), 0);
  /* the stream is whole: a ping is answered */
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, c->next_msgid);
  dynq__w_str(&w, "pong");
  tu_send_wbuf(srv, &w);
  ck_assert_int_eq(dynq_ping(c), 0);
  dynq_close(c);
  close(srv);
}
END_TEST

static Suite *client_wire_suite(void) {
  Suite *s = suite_create("client-wire");
  TCase *tc = tcase_create("tickets");
  tcase_add_test(tc, tickets_match_a_model);
  suite_add_tcase(s, tc);
  tc = tcase_create("encoder");
  tcase_add_test(tc, infer_encoder_as_dynqd_reads_it);
  suite_add_tcase(s, tc);
  tc = tcase_create("hostile");
  tcase_add_loop_test(tc, hostile_server_answers, 0, (int)(sizeof answers / sizeof answers[0]));
  tcase_add_loop_test(tc, typed_calls_refuse_bad_results, 0,
                      (int)(sizeof typed_cases / sizeof typed_cases[0]));
  suite_add_tcase(s, tc);
  tc = tcase_create("answers");
  tcase_add_test(tc, answers_back_to_back);
  tcase_add_test(tc, decoder_reports_its_length);
  tcase_add_test(tc, framer_peek_take);
  suite_add_tcase(s, tc);
  tc = tcase_create("timeout");
  tcase_add_test(tc, timeout_abandons_and_drops_late_answer);
  tcase_add_test(tc, timeout_poll_reports_expired);
  tcase_add_test(tc, timeout_send_stall_closes);
  tcase_add_test(tc, blocking_infer_large_input);
  tcase_add_test(tc, timeout_connect_queue_full);
  tcase_add_test(tc, slow_drip);
  tcase_add_test(tc, answer_with_fds_leaks_none);
  suite_add_tcase(s, tc);
  tc = tcase_create("dynqctl");
  tcase_add_test(tc, dynqctl_reports_bad_answers);
  tcase_add_test(tc, dynqctl_timeout);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(client_wire_suite)
