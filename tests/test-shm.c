/*
 * dynqd shared-memory tensors: shm.register with a memfd sent by SCM_RIGHTS
 * (frames built and sent with sendmsg here, not through libdynqclient),
 * tensors and outputs_shm referencing regions, and every way to get them
 * wrong: missing or wrong seals, no fd, a short memfd, offsets outside the
 * region or overflowing, unknown regions, a region unregistered or its
 * connection closed while a request uses it.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "testutil.h"

static char *g_dir, *g_models;
static int g_have;
static tu_daemon_t g_d;
static float g_x[16 * 64];
static float *g_slow_x;
#define SLOW_ROWS 2048

static void setup(void) {
  g_dir = tu_mkdtemp_models(&g_models);
  char a[4096], b[4096];
  snprintf(a, sizeof(a), "%s/mlp.dynq", g_models);
  snprintf(b, sizeof(b), "%s/slow.dynq", g_models);
  g_have = tu_quantize("tests/fixtures/mlp.onnx", a, NULL) == 0 &&
           tu_quantize("tests/fixtures/slow.onnx", b, "--no-reference", NULL) == 0 &&
           tu_load_f32("tests/fixtures/mlp_x.f32", g_x, 16 * 64) == 0;
  g_slow_x = tu_ramp_f32((size_t)SLOW_ROWS * 256, 11);
  if (g_have) {
    const char *extra[] = {"--workers", "1", "--max-shm-regions", "3", "--max-shm-bytes",
                           "16M", NULL};
    ck_assert_msg(tu_daemon_start(&g_d, g_dir, g_models, extra) == 0,
                  "dynqd did not start; see %s", g_d.log);
  }
}

static void teardown(void) {
  tu_daemon_teardown(&g_d, "shm");
  if (g_dir) tu_rmtree(g_dir);
  free(g_dir);
  free(g_models);
  free(g_slow_x);
}

#define NEED_MODELS() TU_SKIP_UNLESS(g_have, "dynq-quantize not built")

/* A memfd of n bytes with the given seals, mapped into *ret_map. */
static int make_memfd(size_t n, int seals, void **ret_map) {
  int fd = memfd_create("dynq-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, (off_t)n), 0);
  if (ret_map) {
    *ret_map = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(*ret_map, MAP_FAILED);
  }
  if (seals) ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
  return fd;
}

/* shm.register {size} with fd attached (fd < 0: none); returns the error
 * code, and the region id in *ret_id on success. */
static int do_register(tu_rpc_t *c, uint32_t msgid, int fd, uint64_t size, uint64_t *ret_id,
                       char *msg, size_t msglen) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "shm.register");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "size");
  dynq__w_uint(&w, size);
  ck_assert_int_eq(w.err, 0);
  tu_rpc_send_fd(c, w.data, w.len, fd);
  dynq__wbuf_free(&w);
  dynq__rpc_msg_t m;
  int rc = tu_rpc_response(c, &m, msgid, msg, msglen);
  if (rc == 0 && ret_id) *ret_id = (uint64_t)tu_obj_int_or(dynq__obj_get(m.result, "region"), -1);
  dynq__rpc_free(&m);
  return rc;
}

static void w_ref(dynq__wbuf_t *w, uint64_t region, uint64_t off, uint64_t size) {
  dynq__w_map(w, 3);
  dynq__w_str(w, "region");
  dynq__w_uint(w, region);
  dynq__w_str(w, "offset");
  dynq__w_uint(w, off);
  dynq__w_str(w, "size");
  dynq__w_uint(w, size);
}

/* infer mlp with x = rows from the region at off (or inline when region
 * is 0), and optionally y redirected to (oregion, ooff, osize). */
static void send_infer(tu_rpc_t *c, uint32_t msgid, int rows, uint64_t region, uint64_t off,
                       uint64_t xsize, uint64_t oregion, uint64_t ooff, uint64_t osize) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "infer");
  dynq__w_map(&w, oregion ? 3 : 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  int64_t dims[2] = {rows, 64};
  if (region) {
    dynq__w_map(&w, 3);
    dynq__w_str(&w, "dtype");
    dynq__w_str(&w, "float32");
    dynq__w_str(&w, "shape");
    dynq__w_array(&w, 2);
    dynq__w_int(&w, dims[0]);
    dynq__w_int(&w, dims[1]);
    dynq__w_str(&w, "shm");
    w_ref(&w, region, off, xsize);
  } else {
    tu_w_f32_tensor(&w, 2, dims, g_x);
  }
  if (oregion) {
    dynq__w_str(&w, "outputs_shm");
    dynq__w_map(&w, 1);
    dynq__w_str(&w, "y");
    w_ref(&w, oregion, ooff, osize);
  }
  tu_rpc_send_wbuf(c, &w);
}

static void reference_y(tu_rpc_t *c, int rows, float *y) {
  send_infer(c, 999, rows, 0, 0, 0, 0, 0, 0);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(c, 999, &m);
  tu_get_f32_output(&m, "y", y, (size_t)rows * 10);
  dynq__rpc_free(&m);
}

START_TEST(test_register_and_infer_zero_copy) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  static float ref[16 * 10];
  reference_y(&c, 16, ref);
  size_t n = 1 << 16;
  void *map;
  int fd = make_memfd(n, F_SEAL_SHRINK | F_SEAL_GROW, &map);
  uint64_t id = 0;
  char msg[512];
  ck_assert_msg(do_register(&c, 1, fd, n, &id, msg, sizeof(msg)) == 0, "register: %s", msg);
  close(fd);  /* dynqd has its own mapping */
  ck_assert_uint_ge(id, 1);
  /* x at offset 256 (aligned) and at offset 8194 (misaligned: copied) */
  size_t xb = 16 * 64 * sizeof(float);
  memcpy((char *)map + 256, g_x, xb);
  memcpy((char *)map + 8194, g_x, xb);
  uint64_t offs[2] = {256, 8194};
  for (int k = 0; k < 2; k++) {
    send_infer(&c, 10 + (uint32_t)k, 16, id, offs[k], xb, 0, 0, 0);
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&c, 10 + (uint32_t)k, &m);
    float y[16 * 10];
    tu_get_f32_output(&m, "y", y, 160);
    ck_assert_msg(memcmp(y, ref, sizeof(y)) == 0, "shm input (offset %llu) changed the result",
                  (unsigned long long)offs[k]);
    dynq__rpc_free(&m);
  }
  /* y written into the region; the result carries the same reference */
  uint64_t yoff = 32768, yb = 16 * 10 * sizeof(float);
  memset((char *)map + yoff, 0xff, yb);
  send_infer(&c, 20, 16, id, 256, xb, id, yoff, yb);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 20, &m);
  dynq__obj_t y = dynq__obj_get(dynq__obj_get(m.result, "outputs"), "y");
  dynq__obj_t ref_o = dynq__obj_get(y, "shm");
  ck_assert_int_eq(tu_obj_int_or(dynq__obj_get(ref_o, "region"), -1), (int64_t)id);
  ck_assert_int_eq(tu_obj_int_or(dynq__obj_get(ref_o, "offset"), -1), (int64_t)yoff);
  ck_assert_int_eq(tu_obj_int_or(dynq__obj_get(ref_o, "size"), -1), (int64_t)yb);
  ck_assert_uint_eq(dynq__obj_len(dynq__obj_get(y, "shape")), 2);
  ck_assert_msg(memcmp((char *)map + yoff, ref, yb) == 0, "y in the region differs");
  float p[160];
  tu_get_f32_output(&m, "p", p, 160);  /* other outputs still inline */
  dynq__rpc_free(&m);
  /* stats see it */
  ck_assert_int_eq(tu_rpc_stat(&c, 30, "shm_regions"), 1);
  tu_rpc_call_id(&c, 31, "shm.unregister", "region", id);
  tu_rpc_expect_ok(&c, 31, &m);
  dynq__rpc_free(&m);
  tu_rpc_call_id(&c, 32, "shm.unregister", "region", id);
  tu_rpc_expect_error(&c, 32, DYNQ_ENOREGION, "no shared-memory region");
  send_infer(&c, 33, 16, id, 256, xb, 0, 0, 0);
  tu_rpc_expect_error(&c, 33, DYNQ_ENOREGION, NULL);
  munmap(map, n);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_register_errors) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  char msg[512];
  uint64_t id;
  /* no seals at all */
  int fd = make_memfd(4096, 0, NULL);
  ck_assert_int_eq(do_register(&c, 1, fd, 4096, &id, msg, sizeof(msg)), DYNQ_ESEAL);
  ck_assert_msg(strstr(msg, "F_SEAL_SHRINK") != NULL, "%s", msg);
  close(fd);
  /* sealed, but not against shrinking */
  fd = make_memfd(4096, F_SEAL_GROW, NULL);
  ck_assert_int_eq(do_register(&c, 2, fd, 4096, &id, msg, sizeof(msg)), DYNQ_ESEAL);
  close(fd);
  /* not a memfd: a pipe cannot carry seals */
  int pp[2];
  ck_assert_int_eq(pipe(pp), 0);
  ck_assert_int_eq(do_register(&c, 3, pp[0], 4096, &id, msg, sizeof(msg)), DYNQ_ESEAL);
  ck_assert_msg(strstr(msg, "seals") != NULL, "%s", msg);
  close(pp[0]);
  close(pp[1]);
  /* no fd with the frame */
  ck_assert_int_eq(do_register(&c, 4, -1, 4096, &id, msg, sizeof(msg)), DYNQ_EPARAMS);
  ck_assert_msg(strstr(msg, "SCM_RIGHTS") != NULL, "%s", msg);
  /* memfd shorter than the size claimed */
  fd = make_memfd(4096, F_SEAL_SHRINK, NULL);
  ck_assert_int_eq(do_register(&c, 5, fd, 8192, &id, msg, sizeof(msg)), DYNQ_EPARAMS);
  ck_assert_msg(strstr(msg, "smaller") != NULL, "%s", msg);
  /* size zero, and over --max-shm-bytes (16M) */
  ck_assert_int_eq(do_register(&c, 6, fd, 0, &id, msg, sizeof(msg)), DYNQ_EPARAMS);
  ck_assert_int_eq(do_register(&c, 7, fd, (uint64_t)1 << 40, &id, msg, sizeof(msg)),
                   DYNQ_ELIMIT);
  /* at most 3 regions per connection */
  uint64_t ids[3];
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(do_register(&c, 10 + (uint32_t)i, fd, 4096, &ids[i], msg, sizeof(msg)), 0);
  ck_assert_int_eq(do_register(&c, 13, fd, 4096, &id, msg, sizeof(msg)), DYNQ_ELIMIT);
  ck_assert_msg(strstr(msg, "limit 3") != NULL, "%s", msg);
  close(fd);
  /* read-only (F_SEAL_WRITE) regions serve inputs but not outputs */
  tu_rpc_t d;
  tu_rpc_open(&d, g_d.sock);
  void *map;
  fd = make_memfd(8192, 0, &map);
  memcpy(map, g_x, 64 * sizeof(float));
  munmap(map, 8192);  /* F_SEAL_WRITE needs no writable mapping */
  ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_WRITE), 0);
  uint64_t ro;
  ck_assert_msg(do_register(&d, 1, fd, 8192, &ro, msg, sizeof(msg)) == 0, "%s", msg);
  close(fd);
  send_infer(&d, 2, 1, ro, 0, 64 * 4, 0, 0, 0);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&d, 2, &m);
  dynq__rpc_free(&m);
  send_infer(&d, 3, 1, ro, 0, 64 * 4, ro, 4096, 40);
  tu_rpc_expect_error(&d, 3, DYNQ_EPARAMS, "read-only");
  /* a region of another connection is unknown here */
  send_infer(&d, 4, 1, ids[0], 0, 64 * 4, 0, 0, 0);
  tu_rpc_expect_error(&d, 4, DYNQ_ENOREGION, NULL);
  tu_rpc_close(&d);
  tu_rpc_ping_ok(&c, 99);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_bad_references) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  size_t n = 8192;
  void *map;
  int fd = make_memfd(n, F_SEAL_SHRINK, &map);
  uint64_t id;
  char msg[512];
  ck_assert_int_eq(do_register(&c, 1, fd, n, &id, msg, sizeof(msg)), 0);
  close(fd);
  uint64_t xb = 64 * 4;
  /* offset past the end, offset + size past the end, and overflowing */
  send_infer(&c, 2, 1, id, n + 1, xb, 0, 0, 0);
  tu_rpc_expect_error(&c, 2, DYNQ_EPARAMS, "outside region");
  send_infer(&c, 3, 1, id, n - 8, xb, 0, 0, 0);
  tu_rpc_expect_error(&c, 3, DYNQ_EPARAMS, "outside region");
  send_infer(&c, 4, 1, id, INT64_MAX - 16, xb, 0, 0, 0);
  tu_rpc_expect_error(&c, 4, DYNQ_EPARAMS, "outside region");
  send_infer(&c, 5, 1, id, n - 8, INT64_MAX, 0, 0, 0);  /* a size near INT64_MAX */
  tu_rpc_expect_error(&c, 5, DYNQ_EPARAMS, "outside region");
  send_infer(&c, 14, 1, id, UINT64_MAX, xb, 0, 0, 0);  /* not an int64 */
  tu_rpc_expect_error(&c, 14, DYNQ_EPARAMS, "integers");
  /* size not the tensor's byte size */
  send_infer(&c, 6, 1, id, 0, xb - 4, 0, 0, 0);
  tu_rpc_expect_error(&c, 6, DYNQ_EDATA, "does not match");
  /* outputs_shm: wrong size (checked after the run), outside, unknown name */
  send_infer(&c, 7, 1, id, 0, xb, id, 4096, 44);
  tu_rpc_expect_error(&c, 7, DYNQ_EDATA, "output 'y'");
  send_infer(&c, 8, 1, id, 0, xb, id, n - 4, 40);
  tu_rpc_expect_error(&c, 8, DYNQ_EPARAMS, "outside region");
  send_infer(&c, 9, 1, 424242, 0, xb, 0, 0, 0);
  tu_rpc_expect_error(&c, 9, DYNQ_ENOREGION, "424242");
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 10, "infer");
  dynq__w_map(&w, 3);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  int64_t dims[2] = {1, 64};
  tu_w_f32_tensor(&w, 2, dims, g_x);
  dynq__w_str(&w, "outputs_shm");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "nope");
  w_ref(&w, id, 0, 40);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 10, DYNQ_EPARAMS, "nope");
  /* a reference that is not a map, and shm.unregister without an id */
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, 11, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "mlp");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  dynq__w_map(&w, 3);
  dynq__w_str(&w, "dtype");
  dynq__w_str(&w, "float32");
  dynq__w_str(&w, "shape");
  dynq__w_array(&w, 2);
  dynq__w_int(&w, 1);
  dynq__w_int(&w, 64);
  dynq__w_str(&w, "shm");
  dynq__w_int(&w, 7);
  tu_rpc_send_wbuf(&c, &w);
  tu_rpc_expect_error(&c, 11, DYNQ_EPARAMS, "shm reference");
  tu_rpc_call0(&c, 12, "shm.unregister");
  tu_rpc_expect_error(&c, 12, DYNQ_EPARAMS, "region");
  munmap(map, n);
  tu_rpc_ping_ok(&c, 13);
  tu_rpc_close(&c);
}
END_TEST

static void send_slow(tu_rpc_t *c, uint32_t msgid) {
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_request_head(&w, msgid, "infer");
  dynq__w_map(&w, 2);
  dynq__w_str(&w, "model");
  dynq__w_str(&w, "slow");
  dynq__w_str(&w, "inputs");
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "x");
  int64_t dims[2] = {SLOW_ROWS, 256};
  tu_w_f32_tensor(&w, 2, dims, g_slow_x);
  tu_rpc_send_wbuf(c, &w);
}

START_TEST(test_unregister_mid_request) {
  NEED_MODELS();
  tu_rpc_t c;
  tu_rpc_open(&c, g_d.sock);
  static float ref[16 * 10];
  reference_y(&c, 16, ref);
  size_t n = 1 << 14;
  void *map;
  int fd = make_memfd(n, F_SEAL_SHRINK, &map);
  uint64_t id;
  char msg[512];
  ck_assert_int_eq(do_register(&c, 1, fd, n, &id, msg, sizeof(msg)), 0);
  close(fd);
  size_t xb = 16 * 64 * 4, yb = 160 * 4;
  memcpy(map, g_x, xb);
  memset((char *)map + 8192, 0, yb);
  /* The only worker is busy, so the shm request is queued when the region
   * is unregistered; it must still run on the mapping it holds. */
  send_slow(&c, 2);
  send_infer(&c, 3, 16, id, 0, xb, id, 8192, yb);
  tu_rpc_call_id(&c, 4, "shm.unregister", "region", id);
  dynq__rpc_msg_t m;
  tu_rpc_expect_ok(&c, 4, &m);
  dynq__rpc_free(&m);
  /* unregistered: new references fail at once */
  send_infer(&c, 5, 16, id, 0, xb, 0, 0, 0);
  tu_rpc_expect_error(&c, 5, DYNQ_ENOREGION, NULL);
  tu_rpc_expect_ok(&c, 3, &m);
  dynq__rpc_free(&m);
  ck_assert_msg(memcmp((char *)map + 8192, ref, yb) == 0, "y not written after unregister");
  tu_rpc_expect_ok(&c, 2, &m);
  dynq__rpc_free(&m);
  /* the mapping went once the request was done */
  ck_assert_int_eq(tu_rpc_stat(&c, 6, "shm_regions"), 0);
  munmap(map, n);
  tu_rpc_close(&c);
}
END_TEST

START_TEST(test_connection_closed_mid_request) {
  NEED_MODELS();
  tu_rpc_t c, other;
  tu_rpc_open(&c, g_d.sock);
  tu_rpc_open(&other, g_d.sock);
  size_t n = 1 << 14;
  void *map;
  int fd = make_memfd(n, F_SEAL_SHRINK, &map);
  uint64_t id;
  char msg[512];
  ck_assert_int_eq(do_register(&c, 1, fd, n, &id, msg, sizeof(msg)), 0);
  /* an extra fd sent with no shm.register to claim it is closed with the conn */
  static const uint8_t ping[] = {0x94, 0x00, 0x09, 0xa4, 'p', 'i', 'n', 'g', 0x80};
  tu_rpc_send_fd(&c, ping, sizeof(ping), fd);
  close(fd);
  memcpy(map, g_x, 16 * 64 * 4);
  send_slow(&c, 2);
  send_infer(&c, 3, 16, id, 0, 16 * 64 * 4, id, 8192, 640);
  tu_rpc_close(&c);  /* hang up with the shm request queued */
  for (uint32_t q = 100;; q++) {
    tu_rpc_call0(&other, q, "stats");
    dynq__rpc_msg_t m;
    tu_rpc_expect_ok(&other, q, &m);
    int64_t regions = tu_obj_int_or(dynq__obj_get(m.result, "shm_regions"), -1);
    int64_t busy = tu_obj_int_or(dynq__obj_get(m.result, "inflight"), -1) +
                   tu_obj_int_or(dynq__obj_get(m.result, "queue_depth"), -1);
    dynq__rpc_free(&m);
    if (regions == 0 && busy == 0) break;
    ck_assert_msg(q < 100 + 50000, "region never released");
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  ck_assert_msg(tu_pid_alive(g_d.pid), "dynqd died; see %s", g_d.log);
  tu_rpc_ping_ok(&other, 1);
  munmap(map, n);
  tu_rpc_close(&other);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("shm");
  TCase *tc = tcase_create("shm");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_register_and_infer_zero_copy);
  tcase_add_test(tc, test_register_errors);
  tcase_add_test(tc, test_bad_references);
  tcase_add_test(tc, test_unregister_mid_request);
  tcase_add_test(tc, test_connection_closed_mid_request);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(suite)
