/*
 * dynqd dynamic batching of session requests: concurrent session
 * chunks of one model run as one batched engine run, each session's state
 * one slice of the merged state along its batch axis.  The test sends the
 * chunks of several sessions together to a one-worker dynqd whose batch
 * window (max_batch = the session count, max_delay_us = 1 s) makes the
 * worker wait for all of them, checks each answer says it ran in a batch of
 * that size, and compares every output and every new state bit for bit
 * with the same sessions run one request at a time on an unbatched copy of
 * the model.  Models: tests/fixtures/stateful_batch.onnx (state[2, batch,
 * 8], batch on axis 1; default axis rule) and, when the file is there,
 * Silero VAD v5 itself (axes from the config).  Also: bad `axes` config is
 * refused with a message naming what is wrong, and the answers of a merged
 * batch are the bytes the writer gives for their values.  And the row
 * check (daemon/rowcheck.c): models that look across the axis the rule
 * picks (tests/fixtures/make_mixrows.py) are never merged, by batching or
 * by coalescing, and every answer is the one the request gets alone.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"
#include "testutil.h"

#define N_SESS 6

static char *g_dir, *g_models;
static char g_conf[4096];

static int copy_file(const char *src, const char *dst) {
  size_t n;
  void *p = tu_read_file(src, &n);
  if (p == NULL) return -1;
  int rc = tu_write_file(dst, p, n);
  free(p);
  return rc;
}

/* model (quantized with flag [arg], or none) as models/NAME.dynq for each name */
static int make_models(const char *onnx, const char *flag, const char *arg,
                       const char *const *names) {
  char first[4096], other[4096];
  snprintf(first, sizeof first, "%s/%s.dynq", g_models, names[0]);
  if (tu_quantize(onnx, first, flag, arg, NULL) != 0) return -1;
  for (int i = 1; names[i]; i++) {
    snprintf(other, sizeof other, "%s/%s.dynq", g_models, names[i]);
    if (copy_file(first, other) != 0) return -1;
  }
  return 0;
}

static void setup(void) {
  g_dir = tu_mkdtemp_models(&g_models);
  snprintf(g_conf, sizeof g_conf, "%s/dynqd.conf", g_dir);
  const char *conf =
      "[batch.sb]\nmax_batch = 6\nmax_delay_us = 1000000\n"
      "[batch.vad]\nmax_batch = 6\nmax_delay_us = 1000000\n"
      "axes = input:0, state:1, output:0, stateN:1\n"
      "[batch.sb_bad]\nmax_batch = 4\naxes = nosuch:0\n"
      "[batch.sb_rank]\nmax_batch = 4\naxes = state:3\n"
      "[batch.mlp]\nmax_batch = 6\nmax_delay_us = 1000000\n"
      "[batch.mlpw]\nmax_batch = 16\nmax_delay_us = 1000000\n"
      "[batch.mixb]\nmax_batch = 4\nmax_delay_us = 1000000\n"
      "[batch.attnb]\nmax_batch = 4\nmax_delay_us = 1000000\n"
      "[batch.mlpb]\nmax_batch = 4\nmax_delay_us = 1000000\n";
  ck_assert_int_eq(tu_write_file(g_conf, conf, strlen(conf)), 0);
}

static void teardown(void) {
  if (g_dir) tu_rmtree(g_dir);
  free(g_dir);
  free(g_models);
}

/* Where fetch-silero.sh puts the model (the search order of test-vad.c). */
static int silero_path(char *buf, size_t n) {
  const char *e = getenv("DYNQ_VAD_ONNX");
  if (e && *e) snprintf(buf, n, "%s", e);
  else if ((e = getenv("DYNQ_CACHE_DIR")) && *e) snprintf(buf, n, "%s/silero_vad_v5.onnx", e);
  else if ((e = getenv("XDG_CACHE_HOME")) && *e)
    snprintf(buf, n, "%s/dynq/silero_vad_v5.onnx", e);
  else {
    e = getenv("HOME");
    snprintf(buf, n, "%s/.cache/dynq/silero_vad_v5.onnx", e && *e ? e : "/root");
  }
  return access(buf, R_OK) == 0;
}

static uint64_t open_session(tu_rpc_t *c, uint32_t msgid, const char *model) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "session.open");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  dynq__w_str(&w, "bindings");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "state");
  dynq__w_str(&w, "stateN");
  tu_rpc_send_wbuf(c, &w);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, msgid, &m);
  int64_t id = tu_obj_int_or(dynq__obj_get(m.result, "session"), -1);
  ck_assert_int_ge(id, 1);
  dynq__rpc_free(&m);
  return (uint64_t)id;
}

static void send_step(tu_rpc_t *c, uint32_t msgid, uint64_t sid, const char *in_name,
                      const float *x, int64_t cols) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "session");
  dynq__w_uint(&w, sid);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, in_name);
  int64_t dims[2] = {1, cols};
  tu_w_f32_tensor(&w, 2, dims, x);
  tu_rpc_send_wbuf(c, &w);
}

typedef struct model_case {
  const char *batched, *solo;  /* model names */
  const char *in_name, *out_name;
  int64_t cols;                /* input [1, cols] per chunk */
  size_t n_out, n_state;       /* floats in out_name / stateN for one session */
  int steps;
} model_case_t;

/* Chunk t of session k: a tone whose pitch and loudness differ per session
 * plus a little deterministic noise, so every row gets its own scale. */
static void chunk(float *x, int64_t cols, int k, int t) {
  uint32_t r = 2654435761u * (uint32_t)(k * 131 + t + 1);
  for (int64_t i = 0; i < cols; i++) {
    r = r * 1664525u + 1013904223u;
    double n = (double)(t * cols + i);
    x[i] = (float)((0.1 + 0.15 * k) * sin(n * (0.03 + 0.011 * k)) +
                   0.02 * ((double)(r >> 8) / 16777216.0 - 0.5));
  }
}

/* Every session's step outputs and new states, batched and alone, equal in
 * every bit; every batched answer ran in a batch of N_SESS. */
static void run_case(const model_case_t *mc, const char *sock) {
  tu_rpc_t c;
  tu_rpc_open(&c, sock);
  uint64_t sb[N_SESS], ss[N_SESS];
  for (int k = 0; k < N_SESS; k++) {
    sb[k] = open_session(&c, 1 + (uint32_t)k, mc->batched);
    ss[k] = open_session(&c, 100 + (uint32_t)k, mc->solo);
  }
  float *x = malloc(sizeof(float) * (size_t)mc->cols);
  size_t per = mc->n_out + mc->n_state;
  float *got = malloc(sizeof(float) * per * N_SESS), *want = malloc(sizeof(float) * per);
  ck_assert(x && got && want);
  uint32_t id = 1000;
  for (int t = 0; t < mc->steps; t++) {
    /* all sessions' chunks at once: the worker waits for the whole batch */
    for (int k = 0; k < N_SESS; k++) {
      chunk(x, mc->cols, k, t);
      send_step(&c, id + (uint32_t)k, sb[k], mc->in_name, x, mc->cols);
    }
    for (int k = 0; k < N_SESS; k++) {
      dynq__rpc_msg_t m;
      tu_rpc_expect_ok(&c, id + (uint32_t)k, &m);
      int64_t b = tu_obj_int_or(dynq__obj_get(m.result, "batch"), 1);
      ck_assert_msg(b == N_SESS, "%s step %d session %d ran in a batch of %lld, not %d",
                    mc->batched, t, k, (long long)b, N_SESS);
      tu_get_f32_output(&m, mc->out_name, got + per * (size_t)k, mc->n_out);
      tu_get_f32_output(&m, "stateN", got + per * (size_t)k + mc->n_out, mc->n_state);
      dynq__rpc_free(&m);
    }
    id += N_SESS;
    /* the same chunks one at a time on the unbatched copy */
    for (int k = 0; k < N_SESS; k++) {
      chunk(x, mc->cols, k, t);
      send_step(&c, id, ss[k], mc->in_name, x, mc->cols);
      dynq__rpc_msg_t m;
      tu_rpc_expect_ok(&c, id, &m);
      ck_assert(dynq__obj_is_absent(dynq__obj_get(m.result, "batch")));
      tu_get_f32_output(&m, mc->out_name, want, mc->n_out);
      tu_get_f32_output(&m, "stateN", want + mc->n_out, mc->n_state);
      dynq__rpc_free(&m);
      id++;
      const float *g = got + per * (size_t)k;
      for (size_t i = 0; i < per; i++)
        ck_assert_msg(memcmp(&g[i], &want[i], sizeof(float)) == 0,
                      "%s step %d session %d: %s[%zu] batched %.9g, alone %.9g", mc->batched,
                      t, k, i < mc->n_out ? mc->out_name : "stateN",
                      i < mc->n_out ? i : i - mc->n_out, g[i], want[i]);
    }
    /* sessions differ: the comparison is not between copies of one row */
    ck_assert(memcmp(got, got + per, sizeof(float) * per) != 0);
  }
  free(x);
  free(got);
  free(want);
  tu_rpc_close(&c);
}

/* dynqd on the test's models with its batching config and one worker. */
static void start_batching(tu_daemon_t *d) {
  const char *extra[] = {"--config", g_conf, "--workers", "1", NULL};
  ck_assert_msg(tu_daemon_start(d, g_dir, g_models, extra) == 0, "dynqd did not start");
}

START_TEST(test_sessions_batched_bit_identical) {
  const char *names[] = {"sb", "sb_solo", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/stateful_batch.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  tu_daemon_t d;
  start_batching(&d);
  model_case_t mc = {"sb", "sb_solo", "x", "y", 8, 8, 16, 5};
  run_case(&mc, d.sock);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

START_TEST(test_silero_sessions_batched_bit_identical) {
  char onnx[4096];
  if (!silero_path(onnx, sizeof onnx)) {
    printf("SKIP: Silero VAD model %s not found (models/fetch-silero.sh)\n", onnx);
    return;
  }
  const char *names[] = {"vad", "vad_solo", NULL};
  TU_SKIP_UNLESS(make_models(onnx, "--set", "sr=16000", names) == 0, "dynq-quantize failed");
  tu_daemon_t d;
  start_batching(&d);
  model_case_t mc = {"vad", "vad_solo", "input", "output", 576, 1, 2 * 128, 6};
  run_case(&mc, d.sock);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* The next answer on c as raw bytes (a copy the caller frees). */
static uint8_t *recv_frame(tu_rpc_t *c, size_t *ret_len) {
  for (;;) {
    const uint8_t *f;
    size_t flen = 0;
    int rc = dynq__framer_next(&c->fr, &f, &flen);
    ck_assert_msg(rc >= 0, "daemon sent bytes the scanner refuses (%d)", rc);
    if (rc == 1) {
      uint8_t *copy = malloc(flen);
      ck_assert_ptr_nonnull(copy);
      memcpy(copy, f, flen);
      *ret_len = flen;
      return copy;
    }
    uint8_t *dst;
    size_t room;
    ck_assert_int_eq(dynq__framer_space(&c->fr, 65536, &dst, &room), 0);
    ssize_t r = recv(c->fd, dst, room, 0);
    ck_assert_msg(r > 0, "dynqd closed the connection or recv failed");
    dynq__framer_commit(&c->fr, (size_t)r);
  }
}

/* f[0..len) parsed into *m (the caller frees it): the answer to ids[k]
 * (k < n, returned), successful for the mlp model (y and p, of rows[k]
 * rows) run in a batch of batch (0: of any size), and, byte for byte, what
 * the writer gives for its values in encode's order. */
static int expect_writer_bytes(const uint8_t *f, size_t len, dynq__rpc_msg_t *m,
                               const uint32_t *ids, const int *rows, int n, int batch) {
  char err[256];
  int64_t hint;
  ck_assert_msg(dynq__rpc_parse(f, len, m, &hint, err, sizeof err) == 0, "%s", err);
  int k = 0;
  while (k < n && ids[k] != m->msgid) k++;
  ck_assert_msg(k < n, "answer to unknown msgid %u", m->msgid);
  ck_assert_msg(dynq__obj_is_absent(m->error) || dynq__obj_kind(m->error) == DYNQ_OBJ_NIL,
                "request %u failed", m->msgid);
  dynq__obj_t outs = dynq__obj_get(m->result, "outputs");
  uint32_t n_out = dynq__obj_len(outs);
  ck_assert_uint_eq(n_out, 2);  /* y and p */
  if (batch > 0) ck_assert_int_eq(tu_obj_int_or(dynq__obj_get(m->result, "batch"), 1), batch);
  /* the same answer written field by field */
  dynq__tensor_limits_t lim = {8, 1 << 20};
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, m->msgid);
  dynq__w_map(&w, 5);
  dynq__w_str(&w, "outputs");
  dynq__w_map(&w, n_out);
  for (uint32_t i = 0; i < n_out; i++) {
    const char *name;
    size_t nlen;
    dynq__wtensor_t t;
    ck_assert_int_eq(dynq__obj_str(dynq__obj_key_at(outs, i), &name, &nlen), 0);
    ck_assert_int_eq(dynq__obj_wtensor(dynq__obj_val_at(outs, i), &lim, &t, err, sizeof err), 0);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.dims[0], rows[k]);
    dynq__w_strn(&w, name, nlen);
    dynq__w_wtensor(&w, &t);
  }
  static const char *const keys[] = {"compute_us", "queue_us", "decode_us", "batch"};
  for (int i = 0; i < 4; i++) {
    dynq__w_str(&w, keys[i]);
    dynq__w_int(&w, tu_obj_int_or(dynq__obj_get(m->result, keys[i]), -1));
  }
  ck_assert_int_eq(dynq__wbuf_status(&w), 0);
  ck_assert_msg(w.len == len && memcmp(w.data, f, len) == 0,
                "answer to %u (%lld rows): %zu bytes, not the %zu the writer gives for its "
                "values", m->msgid, (long long)rows[k], len, w.len);
  dynq__wbuf_free(&w);
  return k;
}

/* A merged batch's answers after the first are copied from it around
 * their own msgid, outputs and timings (rpc_infer.c): each must be, byte
 * for byte, what the writer gives for its values in encode's order, with
 * msgids of every length, and a request of two rows (whose answer does
 * not fit the first one's shape) among them. */
START_TEST(test_batched_answers_exact_bytes) {
  const char *names[] = {"mlp", "mlp_solo", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mlp.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  static float x[16 * 64];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/mlp_x.f32", x, 16 * 64), 0);
  tu_daemon_t d;
  start_batching(&d);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  enum { N = 6 };
  static const uint32_t ids[N] = {1, 200, 70000, 2, 4000000000u, 300};
  static const int rows[N] = {1, 1, 1, 2, 1, 1};
  int r0[N];
  for (int k = 0, r = 0; k < N; r += rows[k++]) {
    r0[k] = r;
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    tu_w_infer_f32(&w, ids[k], "mlp", "x", rows[k], 64, x + (size_t)r * 64, -1);
    tu_rpc_send_wbuf(&c, &w);
  }
  /* all the batch's answers first: the solo runs' answers come after */
  uint8_t *frames[N];
  size_t lens[N];
  for (int got = 0; got < N; got++) frames[got] = recv_frame(&c, &lens[got]);
  for (int got = 0; got < N; got++) {
    dynq__rpc_msg_t m;
    int k = expect_writer_bytes(frames[got], lens[got], &m, ids, rows, N, N);
    uint8_t *f = frames[got];
    dynq__wbuf_t w;
    float y[2 * 10], want[2 * 10];
    tu_get_f32_output(&m, "y", y, (size_t)rows[k] * 10);
    dynq__rpc_free(&m);
    free(f);
    /* and its rows are those of the request run alone */
    dynq__wbuf_init(&w);
    tu_w_infer_f32(&w, 9000 + (uint32_t)k, "mlp_solo", "x", rows[k], 64,
                   x + (size_t)r0[k] * 64, -1);
    tu_rpc_send_wbuf(&c, &w);
    tu_rpc_expect_ok(&c, 9000 + (uint32_t)k, &m);
    tu_get_f32_output(&m, "y", want, (size_t)rows[k] * 10);
    dynq__rpc_free(&m);
    ck_assert_msg(memcmp(y, want, sizeof(float) * (size_t)rows[k] * 10) == 0,
                  "request %u: batched output differs from alone", ids[k]);
  }
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* A merged run reads the requests' inputs in place when they lie back to
 * back in batch order (as the loop decodes consecutive requests), and
 * copies them together otherwise; either way every request's outputs
 * are, bit for bit, those of its run alone.  Requests of 1 and 2 rows
 * over one buffer: adjacent, with gaps, adjacent but out of order, and
 * mixed (a gap between otherwise adjacent runs). */
typedef struct layout {
  const char *what;
  int64_t at[6];  /* row where each request's rows begin in the buffer */
  int copied;     /* whether the merged run must copy */
} layout_t;

static void merged_case(dynq__model_t *m, const float *rowsrc, const layout_t *lay) {
  enum { N = 6, COLS = 64 };
  static const int rows[N] = {1, 2, 1, 1, 2, 1};
  const dynq__model_sig_t *g = dynq__model_signature(m);
  float *buf = dynq__aligned_alloc(sizeof(float) * 32 * COLS);
  ck_assert_ptr_nonnull(buf);
  memset(buf, 0xff, sizeof(float) * 32 * COLS);  /* NaN in the gaps */
  dynqd_infer_t req[N], solo;
  dynqd_infer_t *v[N];
  dynq__tensor_t in[N];
  int8_t axes[N][8];
  for (int k = 0, r = 0; k < N; r += rows[k++]) {
    memcpy(buf + lay->at[k] * COLS, rowsrc + (size_t)r * COLS, sizeof(float) * (size_t)rows[k] * COLS);
    memset(&in[k], 0, sizeof(in[k]));
    in[k].dtype = DYNQ_DT_F32;
    in[k].rank = 2;
    in[k].dims[0] = rows[k];
    in[k].dims[1] = COLS;
    in[k].data = buf + lay->at[k] * COLS;
    memset(&req[k], 0, sizeof(req[k]));
    req[k].model = m;
    req[k].precision = DYNQ_PRECISION_INT8;
    req[k].n_inputs = 1;
    req[k].inputs = &in[k];
    ck_assert_int_le(g->n_inputs + g->n_outputs, 8);
    char err[256];
    ck_assert_int_eq(dynqd__batch_axes(g, NULL, NULL, axes[k], err, sizeof err), 0);
    req[k].axes = axes[k];
    v[k] = &req[k];
  }
  for (int k = 1; k < N; k++) ck_assert(dynqd__infer_compatible(v[0], v[k]));
  dynq__tensor_t *keep = NULL;
  ck_assert_int_eq(dynqd__infer_run_merged(v, N, &keep), 0);
  for (int k = 0; k < N; k++) {
    ck_assert_msg(req[k].status == 0, "%s: request %d: %s", lay->what, k, req[k].err);
    ck_assert_int_eq(req[k].batched, N);
    ck_assert_msg((req[k].merge_copied != 0) == lay->copied, "%s: the merged run %s its "
                  "inputs", lay->what, req[k].merge_copied ? "copied" : "did not copy");
    /* the same rows alone, from their own memory */
    dynq__tensor_t own;
    ck_assert_int_eq(dynq__tensor_alloc_uninit(&own, DYNQ_DT_F32, 2, in[k].dims), 0);
    memcpy(own.data, in[k].data, dynq__tensor_nbytes(&own));
    memset(&solo, 0, sizeof(solo));
    solo.model = m;
    solo.precision = DYNQ_PRECISION_INT8;
    solo.n_inputs = 1;
    solo.inputs = &own;
    dynqd__infer_run(&solo);
    ck_assert_int_eq(solo.status, 0);
    for (int o = 0; o < g->n_outputs; o++) {
      size_t nb = dynq__tensor_nbytes(&solo.out[o]);
      ck_assert_uint_eq(dynq__tensor_nbytes(&req[k].out[o]), nb);
      ck_assert_msg(memcmp(req[k].out[o].data, solo.out[o].data, nb) == 0,
                    "%s: request %d output '%s' differs from its run alone", lay->what, k,
                    g->outputs[o].name);
    }
    dynq__tensor_clear(&own);
    dynqd__infer_out_done(&solo);
    dynqd__infer_out_done(&req[k]);
  }
  dynqd__infer_keep_free(m, keep);
  dynq__aligned_free(buf);
}

START_TEST(test_merged_inputs_in_place_or_copied) {
  const char *names[] = {"mlp", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mlp.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  char path[4096], err[256];
  snprintf(path, sizeof path, "%s/mlp.dynq", g_models);
  dynq__model_t *m = NULL;
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof err) == 0, "%s", err);
  static float x[16 * 64];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/mlp_x.f32", x, 16 * 64), 0);
  static const layout_t lays[] = {
      {"adjacent", {0, 1, 3, 4, 5, 7}, 0},
      {"gaps", {0, 2, 5, 7, 9, 12}, 1},
      {"out of order", {1, 3, 0, 5, 6, 8}, 1},
      {"mixed", {0, 1, 3, 4, 6, 8}, 1},  /* one gap, after the fourth */
      {"adjacent elsewhere", {10, 11, 13, 14, 15, 17}, 0},
  };
  for (size_t i = 0; i < sizeof lays / sizeof lays[0]; i++) merged_case(m, x, &lays[i]);
  dynq__model_unref(m);
}
END_TEST

static void send_infer(tu_rpc_t *c, uint32_t msgid, const char *model, const float *x,
                       int rows) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  tu_w_infer_f32(&w, msgid, model, "x", rows, 64, x, -1);
  tu_rpc_send_wbuf(c, &w);
}

/* Through a real dynqd: the loop decodes inputs back to back into its
 * slab, and a batch may mix requests that lie adjacent there with others
 * separated by a request for another model, or by one whose connection
 * closed before it ran (its bytes released while its neighbours wait).
 * Every answer must be its rows' own, bit for bit with the model alone. */
START_TEST(test_batched_slab_neighbours) {
  const char *names[] = {"mlp", "mlp_solo", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mlp.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  static float x[16 * 64];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/mlp_x.f32", x, 16 * 64), 0);
  tu_daemon_t d;
  start_batching(&d);
  tu_rpc_t a, b;
  tu_rpc_open(&a, d.sock);
  tu_rpc_open(&b, d.sock);
  enum { N = 8 };
  /* request k: model, rows, first row in x */
  static const char *const model[N] = {"mlp", "mlp", "mlp_solo", "mlp", "mlp",
                                       "mlp_solo", "mlp", "mlp"};
  static const int rows[N] = {1, 2, 1, 1, 2, 1, 1, 1};
  static const int r0[N] = {0, 1, 3, 4, 5, 7, 8, 9};
  send_infer(&a, 1, model[0], x, rows[0]);
  /* a neighbour on another connection, decoded (its ping answered after
   * it), then gone with its connection */
  send_infer(&b, 50, "mlp", x + 12 * 64, 1);
  tu_rpc_ping_ok(&b, 51);
  tu_rpc_close(&b);
  for (int k = 1; k < N; k++)
    send_infer(&a, 1 + (uint32_t)k, model[k], x + (size_t)r0[k] * 64, rows[k]);
  float got[N][2 * 10];
  int batched = 0;
  for (int k = 0; k < N; k++) {
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&a, 1 + (uint32_t)k, &m);
    batched += tu_obj_int_or(dynq__obj_get(m.result, "batch"), 1) > 1;
    tu_get_f32_output(&m, "y", got[k], (size_t)rows[k] * 10);
    dynq__rpc_free(&m);
  }
  ck_assert_msg(batched >= 2, "only %d of the mlp requests ran in a batch", batched);
  for (int k = 0; k < N; k++) {
    float want[2 * 10];
    dynq__rpc_msg_t m;
    send_infer(&a, 100 + (uint32_t)k, "mlp_solo", x + (size_t)r0[k] * 64, rows[k]);
    tu_rpc_expect_ok(&a, 100 + (uint32_t)k, &m);
    tu_get_f32_output(&m, "y", want, (size_t)rows[k] * 10);
    dynq__rpc_free(&m);
    ck_assert_msg(memcmp(got[k], want, sizeof(float) * (size_t)rows[k] * 10) == 0,
                  "request %d (%s, %d rows): output differs from the model alone", k,
                  model[k], rows[k]);
  }
  tu_rpc_close(&a);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* The slab under pressure: a 1 MiB max_buffers_total gives it four 32 KiB
 * chunks, which 40 pipelined requests of 6 KiB fill at once (the rest go
 * to their blocks' buffers) and then reuse around the ring as batches
 * finish.  No request's input may be overwritten while it waits: every
 * answer is bit for bit that of its rows alone. */
START_TEST(test_batched_slab_full_and_wrapping) {
  const char *names[] = {"mlp", "mlp_solo", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mlp.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  enum { N = 40, ROWS = 24, COLS = 64, NOUT = 10 };
  float *x = malloc(sizeof(float) * N * ROWS * COLS);
  float *got = malloc(sizeof(float) * N * ROWS * NOUT), want[ROWS * NOUT];
  ck_assert(x && got);
  for (int k = 0; k < N; k++) chunk(x + (size_t)k * ROWS * COLS, ROWS * COLS, k % 7, k);
  tu_daemon_t d;
  const char *extra[] = {"--config", g_conf, "--workers", "1", "--max-buffers", "1M", NULL};
  ck_assert_msg(tu_daemon_start(&d, g_dir, g_models, extra) == 0, "dynqd did not start");
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  for (int k = 0; k < N; k++)
    tu_w_infer_f32(&w, 1 + (uint32_t)k, "mlp", "x", ROWS, COLS, x + (size_t)k * ROWS * COLS, -1);
  tu_rpc_send_wbuf(&c, &w);
  int batched = 0;
  for (int k = 0; k < N; k++) {
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&c, 1 + (uint32_t)k, &m);
    batched += tu_obj_int_or(dynq__obj_get(m.result, "batch"), 1) > 1;
    tu_get_f32_output(&m, "y", got + (size_t)k * ROWS * NOUT, ROWS * NOUT);
    dynq__rpc_free(&m);
  }
  ck_assert_msg(batched >= N / 2, "only %d of %d requests ran in a batch", batched, N);
  for (int k = 0; k < N; k++) {
    dynq__rpc_msg_t m;
    dynq__wbuf_init(&w);
    tu_w_infer_f32(&w, 100 + (uint32_t)k, "mlp_solo", "x", ROWS, COLS,
                   x + (size_t)k * ROWS * COLS, -1);
    tu_rpc_send_wbuf(&c, &w);
    tu_rpc_expect_ok(&c, 100 + (uint32_t)k, &m);
    tu_get_f32_output(&m, "y", want, ROWS * NOUT);
    dynq__rpc_free(&m);
    ck_assert_msg(memcmp(got + (size_t)k * ROWS * NOUT, want, sizeof want) == 0,
                  "request %d: batched output differs from the model alone", k);
  }
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
  free(x);
  free(got);
}
END_TEST

/* Bytes waiting in c's socket once they stop growing (the daemon wrote
 * all it could while we did not read), polled for at most 10 s. */
static int settled_unread(tu_rpc_t *c) {
  int last = -1, same = 0;
  for (int i = 0; i < 1000 && same < 5; i++) {
    int q = 0;
    ck_assert_int_eq(ioctl(c->fd, FIONREAD, &q), 0);
    same = q > 0 && q == last ? same + 1 : 0;
    last = q;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return last;
}

/* A merged batch whose answers are more than the socket takes, to a
 * client that reads none until the daemon wrote what it could: the
 * worker's write stops inside an answer (whose output rows it sends from
 * the merged outputs), the rest of that answer and the answers after it
 * go out from the loop.  Every answer must arrive whole, in the order
 * sent, byte for byte what the writer gives, with the rows of its own
 * request (each request's rows are the fixture's inputs rotated
 * differently, checked against one unbatched run of all of them). */
START_TEST(test_batched_answers_past_a_full_socket) {
  const char *names[] = {"mlpw", "mlp_solo", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mlp.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  enum { N = 16, ROWS = 256 };
  static float x[16 * 64], in[ROWS * 64], want[16 * 10], y[ROWS * 10];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/mlp_x.f32", x, 16 * 64), 0);
  tu_daemon_t d;
  start_batching(&d);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  dynq__rpc_msg_t m;
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  tu_w_infer_f32(&w, 1, "mlp_solo", "x", 16, 64, x, -1);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_ok(&c, 1, &m);
  tu_get_f32_output(&m, "y", want, 16 * 10);
  dynq__rpc_free(&m);
  uint32_t ids[N];
  int rows[N];
  for (int k = 0; k < N; k++) {
    ids[k] = 100 + (uint32_t)k;
    rows[k] = ROWS;
    for (int r = 0; r < ROWS; r++) memcpy(in + r * 64, x + ((r + k) % 16) * 64, 64 * sizeof(float));
    dynq__wbuf_init(&w);
    tu_w_infer_f32(&w, ids[k], "mlpw", "x", ROWS, 64, in, -1);
    tu_rpc_send_wbuf(&c, &w);
  }
  /* y and p of 256 x 10 floats each: about 20 KiB an answer, 330 KiB in
   * all, more than a Unix socket holds by default */
  int sndbuf = 0;
  socklen_t sl = sizeof(sndbuf);
  ck_assert_int_eq(getsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl), 0);
  int unread = settled_unread(&c);
  ck_assert_msg(unread > 0 && unread < N * 20 * 1024,
                "%d bytes wait unread (socket buffer %d): the batch's answers should "
                "not all fit", unread, sndbuf);
  for (int k = 0; k < N; k++) {
    size_t len;
    uint8_t *f = recv_frame(&c, &len);
    /* one batch unless the machine is too slow for the batch window: then
     * the later batch finds the socket full */
    int got = expect_writer_bytes(f, len, &m, ids, rows, N, 0);
    ck_assert_msg(got == k, "answer %d is to request %d: not in the order sent", k, got);
    tu_get_f32_output(&m, "y", y, ROWS * 10);
    for (int r = 0; r < ROWS; r++)
      ck_assert_msg(memcmp(y + r * 10, want + ((r + k) % 16) * 10, 10 * sizeof(float)) == 0,
                    "request %d row %d: not the output of its own input row", k, r);
    dynq__rpc_free(&m);
    free(f);
  }
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* The slab takes at most an eighth of max_buffers_total, also after a
 * SIGHUP lowers the limit below what it was made for (1 MiB of 64 MiB,
 * then a 1 MiB limit): a pipelined burst is still served, not refused
 * as over the limit, and no connection is shed.  Across the reload one
 * request holds bytes in the old slab (it waits in mlp's batch window),
 * so the slab cannot go at once; and round 1's first read holds no whole
 * frame, so nothing has used the slab since: what the old slab is
 * counted as while it waits to be retired must shed no one. */
START_TEST(test_slab_follows_lowered_buffer_limit) {
  const char *names[] = {"mlp", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mlp.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  static float x[16 * 64];
  ck_assert_int_eq(tu_load_f32("tests/fixtures/mlp_x.f32", x, 16 * 64), 0);
  char conf[4096];
  snprintf(conf, sizeof conf, "%s/buf.conf", g_dir);
  const char *window = "[batch.mlp]\nmax_batch = 64\nmax_delay_us = 1000000\n";
  char big[256], small[256];
  snprintf(big, sizeof big, "max_buffers_total = 64M\n%s", window);
  snprintf(small, sizeof small, "max_buffers_total = 1M\n%s", window);
  ck_assert_int_eq(tu_write_file(conf, big, strlen(big)), 0);
  tu_daemon_t d;
  const char *extra[] = {"--config", conf, "--workers", "1", NULL};
  ck_assert_msg(tu_daemon_start(&d, g_dir, g_models, extra) == 0, "dynqd did not start");
  enum { N = 24, HELD = 100 };
  tu_rpc_t held;
  for (int round = 0; round < 2; round++) {
    tu_rpc_t c;
    tu_rpc_open(&c, d.sock);
    dynq__wbuf_t w;
    dynq__wbuf_init(&w);
    for (int k = 0; k < N; k++)
      tu_w_infer_f32(&w, 1 + (uint32_t)k, "mlp", "x", 1, 64, x + (size_t)(k % 16) * 64, -1);
    ck_assert_int_eq(w.err, 0);
    tu_rpc_send(&c, w.data, round == 0 ? w.len : 16);
    if (round == 1) {
      usleep(100000);
      tu_rpc_send(&c, w.data + 16, w.len - 16);
    }
    dynq__wbuf_free(&w);
    for (int k = 0; k < N; k++) {
      dynq__rpc_msg_t m;
      char msg[512];
      int rc = tu_rpc_response(&c, &m, 1 + (uint32_t)k, msg, sizeof msg);
      ck_assert_msg(rc == 0, "round %d request %d: %s (%d)", round, k, msg, rc);
      dynq__rpc_free(&m);
    }
    tu_rpc_close(&c);
    if (round == 0) {  /* the slab exists now, made for 64 MiB */
      /* one request into it that waits for its batch to fill; the pong
       * behind it says it was read */
      tu_rpc_open(&held, d.sock);
      dynq__wbuf_init(&w);
      tu_w_infer_f32(&w, HELD, "mlp", "x", 1, 64, x, -1);
      dynq__w_request_head(&w, HELD + 1, "ping");
      dynq__w_nil(&w);
      tu_rpc_send_wbuf(&held, &w);
      tu_rpc_expect_pong(&held, HELD + 1);
      ck_assert_int_eq(tu_write_file(conf, small, strlen(small)), 0);
      ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
      int applied = 0;
      for (int i = 0; i < 1000 && !applied; i++) {
        applied = tu_file_contains(d.log, "max_buffers_total = ");
        if (!applied) usleep(10000);
      }
      ck_assert_msg(applied, "dynqd did not apply the new max_buffers_total");
    }
  }
  dynq__rpc_msg_t m;
  char msg[512];
  int rc = tu_rpc_response(&held, &m, HELD, msg, sizeof msg);
  ck_assert_msg(rc == 0, "the request held across the reload: %s (%d)", msg, rc);
  dynq__rpc_free(&m);
  tu_rpc_close(&held);
  ck_assert_msg(!tu_file_contains(d.log, "closing it"), "a connection was shed");
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* dynqd -n with one [batch.m] axes line: exit status, output in *out. */
static int check_axes(const char *line, char **out) {
  char path[4096], text[512];
  snprintf(path, sizeof path, "%s/axes.conf", g_dir);
  snprintf(text, sizeof text, "[batch.m]\nmax_batch = 4\n%s\n", line);
  ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
  char exe[4096];
  snprintf(exe, sizeof exe, "%s", tu_build("daemon/dynqd"));
  char *argv[] = {exe, "-n", "--config", path, NULL};
  return tu_run(argv, out);
}

START_TEST(test_bad_axes_config_refused) {
  static const struct {
    const char *line, *needle;
  } bad[] = {
    {"axes = input", "NAME:AXIS"},
    {"axes = :1", "NAME:AXIS"},
    {"axes = input:9", "expected 0..7"},
    {"axes = input:-1", "expected 0..7"},
    {"axes = input:x", "expected 0..7"},
    {"axes = input:0,input:1", "given twice"},
    {"axes = ,", "empty"},
    {"axis = input:0", "unknown key"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *out = NULL;
    int rc = check_axes(bad[i].line, &out);
    ck_assert_msg(rc == 2, "'%s': dynqd -n exited %d, not 2: %s", bad[i].line, rc,
                  out ? out : "");
    ck_assert_msg(out && strstr(out, bad[i].needle) && strstr(out, "axes.conf:3"),
                  "'%s': the message does not say '%s' at axes.conf:3: %s", bad[i].line,
                  bad[i].needle, out ? out : "");
    free(out);
  }
  char *out = NULL;
  ck_assert_int_eq(check_axes("axes = input:0, state:1,output:0,stateN:1", &out), 0);
  free(out);
}
END_TEST

/* An axes entry that does not fit the model answers every batchable
 * request EPARAMS naming it (a wrong axis would split the wrong rows). */
START_TEST(test_axes_not_in_model_refused) {
  const char *names[] = {"sb_bad", "sb_rank", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/stateful_batch.onnx", NULL, NULL, names) == 0,
                 "dynq-quantize not built");
  tu_daemon_t d;
  start_batching(&d);
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  float x[8] = {0.5f, -0.25f, 0.125f, 1, 0, 0.75f, -1, 0.3f};
  uint64_t s1 = open_session(&c, 1, "sb_bad");
  send_step(&c, 2, s1, "x", x, 8);
  tu_rpc_expect_error(&c, 2, DYNQ_EPARAMS, "'nosuch', which is neither an input nor an output");
  uint64_t s2 = open_session(&c, 3, "sb_rank");
  send_step(&c, 4, s2, "x", x, 8);
  tu_rpc_expect_error(&c, 4, DYNQ_EPARAMS, "'state' axis 3, but it has rank 3");
  /* the session is usable again (the refusal did not leave it busy) */
  send_step(&c, 5, s2, "x", x, 8);
  tu_rpc_expect_error(&c, 5, DYNQ_EPARAMS, "axis 3");
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* ---- the row check ---- */

/* The verdict for onnx quantized into the test's model dir, measured on
 * shapes with every symbolic dim 2, along the default rule's axes. */
static void row_verdict(const char *onnx, dynqd_rows_t *ret) {
  char path[4096];
  snprintf(path, sizeof path, "%s/rc.dynq", g_models);
  ck_assert_int_eq(tu_quantize(onnx, path, NULL), 0);
  dynq__model_t *m = NULL;
  char err[512];
  ck_assert_msg(dynq__model_open(path, &m, err, sizeof err) == 0, "%s", err);
  const dynq__model_sig_t *sig = dynq__model_signature(m);
  int ranks[8];
  int64_t dims[8][DYNQ_MAX_RANK];
  int8_t axes[16];
  ck_assert_int_le(sig->n_inputs, 8);
  for (int i = 0; i < sig->n_inputs; i++) {
    ranks[i] = sig->inputs[i].rank;
    for (int d = 0; d < ranks[i]; d++)
      dims[i][d] = sig->inputs[i].dims[d] < 0 ? 2 : sig->inputs[i].dims[d];
  }
  ck_assert_int_eq(dynqd__batch_axes(sig, NULL, NULL, axes, err, sizeof err), 0);
  ck_assert_int_eq(dynqd__rows_check(m, ranks, dims, axes, 0, 0, ret), 0);
  dynq__model_unref(m);
}

START_TEST(test_row_check_verdicts) {
  dynqd_rows_t r;
  row_verdict("tests/fixtures/mlp.onnx", &r);  /* rows independent: y and p on axis 0 */
  ck_assert_msg(r.ok, "mlp: %s", r.why ? r.why : "");
  ck_assert(r.out_axes[0] & 1);
  ck_assert(r.out_axes[1] & 1);
  int8_t ax[3] = {0, 0, 0};
  ck_assert(dynqd__rows_allow(&r, ax, 1, 2));
  ax[2] = 1;  /* p split along its classes: not what was measured */
  ck_assert(!dynqd__rows_allow(&r, ax, 1, 2));
  dynqd__rows_clear(&r);
  row_verdict("tests/fixtures/mixrows.onnx", &r);  /* x - mean(x, 0) */
  ck_assert(!r.ok);
  ck_assert_msg(r.why && strstr(r.why, "output 'y'"), "%s", r.why ? r.why : "");
  ck_assert(!dynqd__rows_allow(&r, ax, 1, 1));
  dynqd__rows_clear(&r);
  row_verdict("tests/fixtures/seqattn.onnx", &r);  /* attention across the rule's axis */
  ck_assert(!r.ok);
  dynqd__rows_clear(&r);
  row_verdict("tests/fixtures/stateful_batch.onnx", &r);  /* batch on axis 1 of state */
  ck_assert_msg(r.ok, "stateful_batch: %s", r.why ? r.why : "");
  dynqd__rows_clear(&r);
}
END_TEST

static void send_plain(tu_rpc_t *c, uint32_t msgid, const char *model, int rank,
                       const int64_t *dims, const float *x) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, model);
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  tu_w_f32_tensor(&w, rank, dims, x);
  tu_rpc_send_wbuf(c, &w);
}

/* Each of N requests of model (of the shape dims, its own values) alone,
 * then all N at once, three times: every answer ran alone and has the
 * bits of the lone one (mixrows: exactly 0, a row minus its own mean).
 * The lone runs come first: coalescing starts once the model's cost per
 * element has been measured. */
static void expect_unmerged(const char *sock, const char *model, int rank,
                            const int64_t *dims, int zero) {
  enum { N = 8 };
  size_t n = 1;
  for (int d = 0; d < rank; d++) n *= (size_t)dims[d];
  float *x = malloc(sizeof(float) * n * N), *want = malloc(sizeof(float) * n * N);
  float *got = malloc(sizeof(float) * n);
  ck_assert(x && got && want);
  for (size_t i = 0; i < n * N; i++) x[i] = (float)((i * 37 % 23) - 11) / 8.0f;
  tu_rpc_t c;
  tu_rpc_open(&c, sock);
  uint32_t id = 10;
  for (int k = 0; k < N; k++, id++) {
    send_plain(&c, id, model, rank, dims, x + n * k);
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&c, id, &m);
    tu_get_f32_output(&m, "y", want + n * k, n);
    dynq__rpc_free(&m);
    for (size_t i = 0; zero && i < n; i++)
      ck_assert_msg(want[n * k + i] == 0.0f, "%s: y[%zu] = %.9g", model, i, want[n * k + i]);
  }
  for (int round = 0; round < 3; round++, id += N) {
    for (int k = 0; k < N; k++) send_plain(&c, id + (uint32_t)k, model, rank, dims, x + n * k);
    for (int k = 0; k < N; k++) {
      dynq__rpc_msg_t m;
      tu_rpc_expect_ok(&c, id + (uint32_t)k, &m);
      ck_assert_msg(dynq__obj_is_absent(dynq__obj_get(m.result, "batch")),
                    "%s: request %d ran merged, in a batch of %lld", model, k,
                    (long long)tu_obj_int_or(dynq__obj_get(m.result, "batch"), 1));
      tu_get_f32_output(&m, "y", got, n);
      dynq__rpc_free(&m);
      for (size_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&got[i], &want[n * k + i], sizeof(float)) == 0,
                      "%s request %d: y[%zu] %.9g sent with others, %.9g alone", model, k, i,
                      got[i], want[n * k + i]);
    }
  }
  tu_rpc_close(&c);
  free(x);
  free(got);
  free(want);
}

/* Models that look across the batch axis answer every request as if it
 * came alone: under the default config (coalescing small requests that
 * wait together) and with a batch window that would merge them. */
START_TEST(test_mixing_models_never_merged) {
  const char *mix[] = {"mix", "mixb", NULL}, *attn[] = {"attn", "attnb", NULL};
  const char *mlp[] = {"mlpb", NULL};
  TU_SKIP_UNLESS(make_models("tests/fixtures/mixrows.onnx", NULL, NULL, mix) == 0 &&
                     make_models("tests/fixtures/seqattn.onnx", NULL, NULL, attn) == 0 &&
                     make_models("tests/fixtures/mlp.onnx", NULL, NULL, mlp) == 0,
                 "dynq-quantize not built");
  tu_daemon_t d;
  const char *extra[] = {"--config", g_conf, "--workers", "1", NULL};
  ck_assert_msg(tu_daemon_start(&d, g_dir, g_models, extra) == 0, "dynqd did not start");
  int64_t row[2] = {1, 4}, seq[3] = {1, 3, 4};
  expect_unmerged(d.sock, "mix", 2, row, 1);
  expect_unmerged(d.sock, "mixb", 2, row, 1);
  expect_unmerged(d.sock, "attn", 3, seq, 0);
  expect_unmerged(d.sock, "attnb", 3, seq, 0);
  /* the check is no blanket refusal: mlp still merges under the same config */
  tu_rpc_t c;
  tu_rpc_open(&c, d.sock);
  static float xm[4][64];
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 64; i++) xm[k][i] = (float)((k * 64 + i) % 13) / 13.0f;
  int64_t dm[2] = {1, 64};
  for (int k = 0; k < 4; k++) send_plain(&c, 1 + (uint32_t)k, "mlpb", 2, dm, xm[k]);
  for (int k = 0; k < 4; k++) {
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&c, 1 + (uint32_t)k, &m);
    ck_assert_int_eq(tu_obj_int_or(dynq__obj_get(m.result, "batch"), 1), 4);
    dynq__rpc_free(&m);
  }
  tu_rpc_close(&c);
  ck_assert_int_eq(tu_daemon_stop(&d, SIGTERM), 0);
}
END_TEST

static Suite *batch_suite(void) {
  Suite *s = suite_create("batch");
  TCase *tc = tcase_create("sessions");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_sessions_batched_bit_identical);
  tcase_add_test(tc, test_silero_sessions_batched_bit_identical);
  tcase_add_test(tc, test_bad_axes_config_refused);
  tcase_add_test(tc, test_axes_not_in_model_refused);
  tcase_add_test(tc, test_batched_answers_exact_bytes);
  tcase_add_test(tc, test_merged_inputs_in_place_or_copied);
  tcase_add_test(tc, test_batched_slab_neighbours);
  tcase_add_test(tc, test_batched_answers_past_a_full_socket);
  tcase_add_test(tc, test_batched_slab_full_and_wrapping);
  tcase_add_test(tc, test_slab_follows_lowered_buffer_limit);
  tcase_add_test(tc, test_row_check_verdicts);
  tcase_add_test(tc, test_mixing_models_never_merged);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(batch_suite)
