/*
 * PaddleOCR PP-OCRv4 text recognition served by dynqd: the real model
 * (models/fetch-ppocr.sh) converted by dynq-quantize in the test, run on
 * the 120 rendered lines of tests/fixtures/ocr (make_ocr.py) with
 * PaddleOCR's preprocessing and greedy CTC decoding over the package's key
 * file, against what ONNX Runtime 1.30 FP32 read on the same images.
 *
 * Acceptance:
 *  - INT8: the same string as ORT FP32 on >= 97 % of the lines, and a
 *    character error rate (against the text drawn) at most 0.5 points
 *    above ORT FP32's;
 *  - FP32 path: the same string as ORT FP32 on every line.
 * Prints the lines that differ.
 *
 * PP-OCRv4 text detection on the rendered page of tests/fixtures/det
 * (make_det.py), with PaddleOCR's detection preprocessing, against ORT
 * FP32's probability map:
 *  - FP32 path: relL2 <= 1e-5;
 *  - both paths: the same count of text regions (DB post-processing,
 *    simplified as make_det.py describes) as ORT FP32's map, and INT8's
 *    text pixels (probability > 0.3) overlap ORT's with IoU >= 0.9.
 *
 * Without the models the tests pass with a SKIP line, unless
 * DYNQ_REQUIRE_OCR is set.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq/dynqclient.h"
#include "testutil.h"

enum { H = 48, W = 320, MAX_LINES = 256, MAX_KEYS = 8192, MAX_TEXT = 256 };

typedef struct line {
  int w;
  const uint8_t *px;        /* [48, w] gray, into pixels */
  char truth[MAX_TEXT], ort[MAX_TEXT];
} line_t;

static char onnx_path[4096], keys_path[4096], det_path[4096];
static char *keys_buf;            /* the key file, '\n' turned into '\0' */
static const char *keys[MAX_KEYS]; /* class i >= 1 -> keys[i - 1] */
static int n_keys;
static uint8_t *pixels;
static line_t lines[MAX_LINES];
static int n_lines;
static char *dir;
static tu_daemon_t daemon_;
static int daemon_up;

static int have_model(void) {
  int ok = tu_cache_file("ch_PP-OCRv4_rec_infer.onnx", onnx_path, sizeof onnx_path) &&
           tu_cache_file("ppocr_keys_v1.txt", keys_path, sizeof keys_path) &&
           tu_cache_file("ch_PP-OCRv4_det_infer.onnx", det_path, sizeof det_path);
  if (ok) return 1;
  const char *req = getenv("DYNQ_REQUIRE_OCR");
  ck_assert_msg(!(req && *req && strcmp(req, "0") != 0),
                "DYNQ_REQUIRE_OCR is set but %s is missing: run models/fetch-ppocr.sh",
                onnx_path);
  printf("SKIP: PP-OCRv4 model %s not found (run models/fetch-ppocr.sh); "
         "set DYNQ_REQUIRE_OCR=1 to make this a failure\n", onnx_path);
  return 0;
}

/* The key file's lines, then " " (PaddleOCR's use_space_char). */
static void load_keys(void) {
  size_t len = 0;
  keys_buf = tu_read_file(keys_path, &len);
  ck_assert_ptr_nonnull(keys_buf);
  char *p = keys_buf, *end = keys_buf + len;
  while (p < end && n_keys < MAX_KEYS - 1) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) nl = end;          /* the last line has no newline */
    *nl = 0;
    keys[n_keys++] = p;
    p = nl + 1;
  }
  keys[n_keys++] = " ";
}

static void load_lines(void) {
  size_t len = 0, off = 0;
  pixels = tu_read_file(tu_src("tests/fixtures/ocr/lines.u8"), &len);
  ck_assert_ptr_nonnull(pixels);
  FILE *f = fopen(tu_src("tests/fixtures/ocr/lines.tsv"), "r");
  ck_assert_ptr_nonnull(f);
  char buf[1024];
  while (fgets(buf, sizeof buf, f) && n_lines < MAX_LINES) {
    line_t *l = &lines[n_lines];
    buf[strcspn(buf, "\n")] = 0;
    char *t1 = strchr(buf, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    ck_assert_msg(t1 && t2, "bad lines.tsv line %d", n_lines + 1);
    *t1 = *t2 = 0;
    l->w = atoi(buf);
    ck_assert(l->w > 0 && l->w <= W);
    snprintf(l->truth, sizeof l->truth, "%s", t1 + 1);
    snprintf(l->ort, sizeof l->ort, "%s", t2 + 1);
    ck_assert_uint_le(off + (size_t)(H * l->w), len);
    l->px = pixels + off;
    off += (size_t)(H * l->w);
    n_lines++;
  }
  fclose(f);
  ck_assert_uint_eq(off, len);
  ck_assert_int_ge(n_lines, 100);
}

static void setup(void) {
  if (!have_model()) return;
  load_keys();
  ck_assert_int_eq(n_keys, 6624); /* + blank = the model's 6625 classes */
  load_lines();
  char *md = NULL, out[4200];
  dir = tu_mkdtemp_models(&md);
  snprintf(out, sizeof out, "%s/rec.dynq", md);
  ck_assert_msg(tu_quantize(onnx_path, out, (char *)NULL) == 0, "dynq-quantize %s failed",
                onnx_path);
  snprintf(out, sizeof out, "%s/det.dynq", md);
  ck_assert_msg(tu_quantize(det_path, out, (char *)NULL) == 0, "dynq-quantize %s failed",
                det_path);
  ck_assert_int_eq(tu_daemon_start(&daemon_, dir, md, NULL), 0);
  daemon_up = 1;
  free(md);
}

static void teardown(void) {
  if (daemon_up) tu_daemon_stop(&daemon_, SIGKILL);
  if (dir) tu_rmtree(dir);
  free(dir);
  free(keys_buf);
  free(pixels);
}

/* PaddleOCR's resize_norm_img for a line already 48 high: the same gray
 * value on the three channels, (x / 255 - 0.5) / 0.5, zeros to width 320. */
static void preprocess(const line_t *l, float *x) {
  memset(x, 0, sizeof(float) * 3 * H * W);
  for (int y = 0; y < H; y++)
    for (int i = 0; i < l->w; i++) {
      float v = ((float)l->px[y * l->w + i] / 255.0f - 0.5f) / 0.5f;
      for (int ch = 0; ch < 3; ch++) x[(ch * H + y) * W + i] = v;
    }
}

/* Greedy CTC: argmax per step, repeats collapsed, blank (0) dropped. */
static void ctc_decode(const float *p, int64_t steps, int64_t classes, char *out, size_t cap) {
  size_t n = 0;
  int64_t prev = -1;
  out[0] = 0;
  for (int64_t t = 0; t < steps; t++) {
    const float *r = p + t * classes;
    int64_t best = 0;
    for (int64_t k = 1; k < classes; k++)
      if (r[k] > r[best]) best = k;
    if (best != prev && best != 0 && best <= n_keys) {
      size_t kl = strlen(keys[best - 1]);
      if (n + kl < cap) {
        memcpy(out + n, keys[best - 1], kl);
        n += kl;
        out[n] = 0;
      }
    }
    prev = best;
  }
}

/* UTF-8 code points of s into cp (at most cap); the count. */
static int codepoints(const char *s, int *cp, int cap) {
  int n = 0;
  const unsigned char *u = (const unsigned char *)s;
  while (*u && n < cap) {
    int c = *u, len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    int v = len == 1 ? c : c & (0x3f >> (len - 1));
    for (int k = 1; k < len && u[k]; k++) v = (v << 6) | (u[k] & 0x3f);
    for (int k = 0; k < len && *u; k++) u++;
    cp[n++] = v;
  }
  return n;
}

/* Edit distance between two strings, in code points. */
static int edit_distance(const char *a, const char *b) {
  int ca[MAX_TEXT], cb[MAX_TEXT], d[MAX_TEXT + 1];
  int na = codepoints(a, ca, MAX_TEXT), nb = codepoints(b, cb, MAX_TEXT);
  for (int j = 0; j <= nb; j++) d[j] = j;
  for (int i = 1; i <= na; i++) {
    int diag = d[0];
    d[0] = i;
    for (int j = 1; j <= nb; j++) {
      int up = d[j], best = diag + (ca[i - 1] != cb[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (d[j - 1] + 1 < best) best = d[j - 1] + 1;
      diag = up;
      d[j] = best;
    }
  }
  return d[nb];
}

static void read_line(dynq_client_t *c, const line_t *l, int precision, float *x, char *text) {
  preprocess(l, x);
  dynq_tensor_t in = {.name = "x", .dtype = DYNQ_FLOAT32, .rank = 4, .shape = {1, 3, H, W},
                      .data = x, .nbytes = sizeof(float) * 3 * H * W};
  dynq_infer_result_t r;
  int rc = dynq_infer(c, "rec", precision, &in, 1, &r);
  ck_assert_msg(rc == 0, "infer failed: %d %s", rc, dynq_client_errmsg(c));
  ck_assert_int_eq(r.n_outputs, 1);
  const dynq_tensor_t *y = &r.outputs[0];
  ck_assert_int_eq(y->rank, 3);
  ck_assert_int_eq(y->shape[0], 1);
  ck_assert_int_eq(y->shape[2], n_keys + 1);
  ctc_decode(y->data, y->shape[1], y->shape[2], text, MAX_TEXT);
  dynq_infer_result_free(&r);
}

static void check_precision(int precision) {
  if (!daemon_up) return;
  const char *what = precision == DYNQ_INFER_INT8 ? "int8" : "fp32";
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(daemon_.sock, &c), 0);
  float *x = malloc(sizeof(float) * 3 * H * W);
  ck_assert_ptr_nonnull(x);
  int same = 0, chars = 0, err_ort = 0, err_dynq = 0;
  for (int i = 0; i < n_lines; i++) {
    char text[MAX_TEXT];
    int cp[MAX_TEXT];
    read_line(c, &lines[i], precision, x, text);
    same += strcmp(text, lines[i].ort) == 0;
    if (strcmp(text, lines[i].ort) != 0)
      printf("ocr %s line %d: drawn '%s', ORT FP32 '%s', dynq '%s'\n", what, i,
             lines[i].truth, lines[i].ort, text);
    chars += codepoints(lines[i].truth, cp, MAX_TEXT);
    err_ort += edit_distance(lines[i].ort, lines[i].truth);
    err_dynq += edit_distance(text, lines[i].truth);
  }
  free(x);
  dynq_close(c);
  double agree = 100.0 * same / n_lines;
  double cer_ort = 100.0 * err_ort / chars, cer = 100.0 * err_dynq / chars;
  printf("ocr %s: %d/%d lines read as ORT FP32 does (%.1f %%); CER vs drawn text %.2f %% "
         "(ORT FP32 %.2f %%)\n", what, same, n_lines, agree, cer, cer_ort);
  if (precision == DYNQ_INFER_FP32) {
    ck_assert_msg(same == n_lines, "fp32 path differs from ORT FP32 on %d lines",
                  n_lines - same);
  } else {
    ck_assert_msg(agree >= 97.0, "int8 agrees with ORT FP32 on %.1f %% of lines (< 97)", agree);
    ck_assert_msg(cer <= cer_ort + 0.5, "int8 CER %.2f %% > ORT FP32's %.2f %% + 0.5", cer,
                  cer_ort);
  }
}

/* ---- detection ---- */

enum { DH = 256, DW = 320 };

/* make_det.py's region count: pixels above 0.3, 4-connected components
 * of >= 16 pixels whose mean probability is >= 0.6. */
static int count_regions(const float *p) {
  uint8_t *seen = calloc(DH * DW, 1);
  int *stack = malloc(sizeof(int) * DH * DW);
  ck_assert(seen && stack);
  int count = 0;
  for (int s0 = 0; s0 < DH * DW; s0++) {
    if (!(p[s0] > 0.3f) || seen[s0]) continue;
    int top = 0, npix = 0;
    double sum = 0;
    stack[top++] = s0;
    seen[s0] = 1;
    while (top > 0) {
      int i = stack[--top], y = i / DW, x = i % DW;
      npix++;
      sum += p[i];
      int nb[4] = {y > 0 ? i - DW : -1, y + 1 < DH ? i + DW : -1, x > 0 ? i - 1 : -1,
                   x + 1 < DW ? i + 1 : -1};
      for (int k = 0; k < 4; k++)
        if (nb[k] >= 0 && p[nb[k]] > 0.3f && !seen[nb[k]]) {
          seen[nb[k]] = 1;
          stack[top++] = nb[k];
        }
    }
    count += npix >= 16 && sum / npix >= 0.6;
  }
  free(seen);
  free(stack);
  return count;
}

static void check_det(int precision) {
  if (!daemon_up) return;
  const char *what = precision == DYNQ_INFER_INT8 ? "int8" : "fp32";
  size_t len = 0, rlen = 0;
  uint8_t *page = tu_read_file(tu_src("tests/fixtures/det/page.u8"), &len);
  float *ref = tu_read_file(tu_src("tests/fixtures/det/ort.f32"), &rlen);
  char *meta = tu_read_file(tu_src("tests/fixtures/det/meta.txt"), NULL);
  ck_assert(page && ref && meta);
  ck_assert_uint_eq(len, DH * DW);
  ck_assert_uint_eq(rlen, sizeof(float) * DH * DW);
  int mh = 0, mw = 0, drawn = 0, ort_regions = 0;
  ck_assert_int_eq(sscanf(meta, "%d %d %d %d", &mh, &mw, &drawn, &ort_regions), 4);
  ck_assert(mh == DH && mw == DW && ort_regions > 0);
  /* PaddleOCR's NormalizeImage: x / 255, minus mean, over std, per channel */
  static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  float *x = malloc(sizeof(float) * 3 * DH * DW);
  ck_assert_ptr_nonnull(x);
  for (int ch = 0; ch < 3; ch++)
    for (int i = 0; i < DH * DW; i++) x[ch * DH * DW + i] = ((float)page[i] / 255.0f - mean[ch]) / sd[ch];
  dynq_client_t *c = NULL;
  ck_assert_int_eq(dynq_connect(daemon_.sock, &c), 0);
  dynq_tensor_t in = {.name = "x", .dtype = DYNQ_FLOAT32, .rank = 4, .shape = {1, 3, DH, DW},
                      .data = x, .nbytes = sizeof(float) * 3 * DH * DW};
  dynq_infer_result_t r;
  int rc = dynq_infer(c, "det", precision, &in, 1, &r);
  ck_assert_msg(rc == 0, "det infer failed: %d %s", rc, dynq_client_errmsg(c));
  ck_assert_int_eq(r.n_outputs, 1);
  const dynq_tensor_t *y = &r.outputs[0];
  ck_assert(y->rank == 4 && y->shape[0] == 1 && y->shape[1] == 1 && y->shape[2] == DH &&
            y->shape[3] == DW);
  const float *p = y->data;
  double rel = tu_rel_l2(p, ref, (size_t)DH * DW);
  int both = 0, either = 0;
  for (int i = 0; i < DH * DW; i++) {
    both += p[i] > 0.3f && ref[i] > 0.3f;
    either += p[i] > 0.3f || ref[i] > 0.3f;
  }
  double iou = either ? (double)both / either : 1.0;
  int regions = count_regions(p);
  printf("det %s: relL2 %.3g vs ORT FP32, text pixels IoU %.4f, %d text regions (ORT FP32 %d, "
         "%d lines drawn)\n", what, rel, iou, regions, ort_regions, drawn);
  ck_assert_int_eq(count_regions(ref), ort_regions);
  ck_assert_msg(regions == ort_regions, "%s finds %d text regions, ORT FP32 %d", what, regions,
                ort_regions);
  if (precision == DYNQ_INFER_FP32) ck_assert_msg(rel <= 1e-5, "fp32 relL2 %.3g > 1e-5", rel);
  else ck_assert_msg(iou >= 0.9, "int8 text pixels IoU %.4f < 0.9", iou);
  dynq_infer_result_free(&r);
  dynq_close(c);
  free(x);
  free(page);
  free(ref);
  free(meta);
}

START_TEST(det_int8) { check_det(DYNQ_INFER_INT8); }
END_TEST

START_TEST(det_fp32) { check_det(DYNQ_INFER_FP32); }
END_TEST

START_TEST(ocr_int8) { check_precision(DYNQ_INFER_INT8); }
END_TEST

START_TEST(ocr_fp32) { check_precision(DYNQ_INFER_FP32); }
END_TEST

static Suite *ocr_suite(void) {
  Suite *s = suite_create("ocr");
  TCase *tc = tcase_create("rec");
  tcase_set_timeout(tc, 600);
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_add_test(tc, ocr_int8);
  tcase_add_test(tc, ocr_fp32);
  tcase_add_test(tc, det_int8);
  tcase_add_test(tc, det_fp32);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(ocr_suite)
