/*
 * dynq-quantize's command line: options into dynq__imp_options_t, then
 * one of the conversion (dynq__imp_convert_buffer, models/dynq-quantize.c),
 * the error-budget calibration (calibrate.c) or --diagnose (diagnose.c).
 * Everything else is the static library libdynqimport, which tests and
 * fuzz targets link.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calibrate.h"
#include "diagnose.h"
#include "import.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dynq-quantize [options] in.onnx out.dynq\n"
          "Convert an ONNX model into a .dynq model with INT8 per-channel weights.\n"
          "\n"
          "  --fp32          keep every layer in FP32 (no quantization)\n"
          "  --act-per-tensor\n"
          "                  quantize activations per tensor instead of per row (weights\n"
          "                  are always per output channel; --per-tensor is the old name)\n"
          "  --op-types TYPE[,TYPE...]\n"
          "                  quantize only layers of these op types (MatMul, Gemm, Conv,\n"
          "                  ConvTranspose, LSTM, GRU, RNN, Gather); the others stay FP32\n"
          "  --no-reference  omit the FP32 reference weights (smaller file, no fp32 path)\n"
          "  --no-fuse       keep the exporter's decomposed forms (LayerNorm as\n"
          "                  ReduceMean/Sub/Pow/...; for A/B checks of the fusions)\n"
          "  --fp32-attention, --int8-attention\n"
          "                  attention's activation x activation products (Q K^T, P V)\n"
          "                  FP32, or dynamic INT8 (both operands quantized per request:\n"
          "                  rows of the left, columns of the right).  Default: INT8, or\n"
          "                  with --calibrate whichever the error budget allows\n"
          "  --no-self-check quantize every layer; by default a self-check runs both\n"
          "                  paths on synthetic inputs and keeps FP32 the small layers\n"
          "                  (<= 0.5%% of the INT8 work each, 1%% in all) that carry a\n"
          "                  large share of the INT8 error (e.g. a classifier's last Gemm)\n"
          "  --no-auto-fp32  quantize a signal front end (a Conv with one input channel\n"
          "                  and >= 64 taps) and the layer reading it, and the layer\n"
          "                  reading an STFT's or DFT's output (default: they stay\n"
          "                  FP32; see models/README.md)\n"
          "  --keep-fp32 NODE[,NODE...], --exclude-nodes NODE[,NODE...]\n"
          "                  keep these layers (MatMul, Gemm, Conv, LSTM, GRU, RNN) in FP32;\n"
          "                  a layer matches when its name equals or ends with NODE (the\n"
          "                  summary's layer column lists the names)\n"
          "  --set NAME=V    fix graph input NAME to V (a number, or v0,v1,... for a 1-D\n"
          "                  input) at import: what depends only on it is folded away,\n"
          "                  e.g. --set sr=16000 removes If branches on the sample rate\n"
          "  --const NAME=FILE.pb\n"
          "                  make graph input NAME an initializer read from FILE.pb (a\n"
          "                  serialized ONNX TensorProto, as ONNX test data ships them):\n"
          "                  weights given as inputs are then quantized; the file must\n"
          "                  match the input's declared dtype and shape\n"
          "  --state IN=OUT  declare a streaming state pair: graph output OUT feeds graph\n"
          "                  input IN on the next call of a dynqd session (repeatable)\n"
          "  --quantize-small\n"
          "                  quantize Conv layers too small for INT8 to pay (patch < 16\n"
          "                  values or < 8 output channels per group): accuracy tests\n"
          "%s"
          "  --diagnose MODEL.dynq --input DIR|FILE.npz [--json]\n"
          "                  per node of a converted model: the INT8 error it adds alone\n"
          "                  (on the FP32 path's inputs) and the error accumulated there\n"
          "  --progress      a line per stage on stderr (default when stderr is a terminal)\n"
          "  --help          show this help\n"
          "\n"
          "Exit status: 0 written, 1 conversion failed (nothing written), 2 usage error.\n"
          "See dynq-quantize(1).\n",
          dynq__calib_usage);
}

/* Split a comma-separated option value in place (argv is ours to modify)
 * into dst[*n...]; 0, or -1 after a usage message. */
static int split_list(const char *flag, const char *example, char *list, const char **dst,
                      int *n, int cap) {
  if (list == NULL || list[0] == 0) {
    fprintf(stderr, "%s: %s needs a comma-separated list (e.g. %s %s)\n", dynq__imp_progname,
            flag, flag, example);
    return -1;
  }
  for (char *tok = list, *next; tok != NULL; tok = next) {
    next = strchr(tok, ',');
    if (next) *next++ = 0;
    if (tok[0] == 0) {
      fprintf(stderr, "%s: %s: empty name in the list\n", dynq__imp_progname, flag);
      return -1;
    }
    if (*n == cap) {
      fprintf(stderr, "%s: %s: at most %d names\n", dynq__imp_progname, flag, cap);
      return -1;
    }
    dst[(*n)++] = tok;
  }
  return 0;
}

/* The option's value: after '=' in argv[*i], else the next argument. */
static char *value_of(int argc, char **argv, int *i, size_t flag_len) {
  char *a = argv[*i];
  if (a[flag_len] == '=') return a + flag_len + 1;
  return *i + 1 < argc ? argv[++*i] : NULL;
}

static int is_flag(const char *a, const char *flag) {
  size_t n = strlen(flag);
  return strncmp(a, flag, n) == 0 && (a[n] == 0 || a[n] == '=');
}

static int read_model(const dynq__imp_options_t *opt, const char *in, uint8_t **ret_buf,
                      size_t *ret_len) {
  if (dynq__imp_read_file(in, ret_buf, ret_len) != 0) return -1;
  dynq__imp_progress(opt, "read '%s' (%.1f MB)", in, (double)*ret_len / 1e6);
  return 0;
}

int main(int argc, char **argv) {
  dynq__imp_options_t opt = {0};
  dynq__calib_opts_t copt = {0};
  const char *pos[2];
  int npos = 0, only_pos = 0, r, self_check = 1;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--diagnose") == 0 || strncmp(argv[i], "--diagnose=", 11) == 0)
      return dynq__diagnose_main(argc, argv);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!only_pos && (r = dynq__calib_arg(&copt, argc, argv, &i)) != 0) {
      if (r < 0) return 2;
    } else if (!only_pos && strcmp(a, "--") == 0) {
      only_pos = 1;
    } else if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
      usage(stdout);
      return 0;
    } else if (!only_pos && strcmp(a, "--fp32") == 0) {
      opt.fp32 = 1;
    } else if (!only_pos && (strcmp(a, "--act-per-tensor") == 0 || strcmp(a, "--per-tensor") == 0)) {
      /* The old name read as a weight option to ONNX Runtime users;
       * weights are always per channel. */
      if (strcmp(a, "--per-tensor") == 0)
        fprintf(stderr, "%s: note: --per-tensor is now --act-per-tensor (activations; weights "
                "stay per channel); the old name will go in a later release\n",
                dynq__imp_progname);
      opt.per_tensor = 1;
    } else if (!only_pos && strcmp(a, "--progress") == 0) {
      opt.progress = 1;
    } else if (!only_pos && strcmp(a, "--no-fuse") == 0) {
      opt.no_fuse = 1;
    } else if (!only_pos && (strcmp(a, "--int8-attention") == 0 ||
                             strcmp(a, "--fp32-attention") == 0)) {
      int want_int8 = a[2] == 'i';
      if (want_int8 ? opt.fp32_attention : opt.int8_attention) {
        fprintf(stderr, "%s: --int8-attention and --fp32-attention contradict each other: "
                "give one\n", dynq__imp_progname);
        return 2;
      }
      opt.int8_attention = want_int8;
      opt.fp32_attention = !want_int8;
    } else if (!only_pos && strcmp(a, "--no-self-check") == 0) {
      self_check = 0;
    } else if (!only_pos && strcmp(a, "--no-auto-fp32") == 0) {
      opt.no_auto_fp32 = 1;
    } else if (!only_pos && strcmp(a, "--no-reference") == 0) {
      opt.no_reference = 1;
    } else if (!only_pos && (is_flag(a, "--keep-fp32") || is_flag(a, "--exclude-nodes"))) {
      const char *flag = a[2] == 'k' ? "--keep-fp32" : "--exclude-nodes";
      if (split_list(flag, "/stft/Conv", value_of(argc, argv, &i, strlen(flag)), opt.keep,
                     &opt.n_keep, (int)(sizeof(opt.keep) / sizeof(opt.keep[0]))) != 0)
        return 2;
    } else if (!only_pos && is_flag(a, "--op-types")) {
      int n0 = opt.n_op_types;
      if (split_list("--op-types", "MatMul,Gemm", value_of(argc, argv, &i, 10), opt.op_types,
                     &opt.n_op_types,
                     (int)(sizeof(opt.op_types) / sizeof(opt.op_types[0]))) != 0)
        return 2;
      for (int k = n0; k < opt.n_op_types; k++)
        if (!dynq__imp_quantizable(opt.op_types[k])) {
          fprintf(stderr, "%s: --op-types: dynq-quantize does not quantize '%s' layers (it "
                  "quantizes %s)\n", dynq__imp_progname, opt.op_types[k],
                  dynq__imp_quantizable_list);
          return 2;
        }
    } else if (!only_pos && (strcmp(a, "--state") == 0 || strncmp(a, "--state=", 8) == 0)) {
      const char *kv = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      const char *eq = kv ? strchr(kv, '=') : NULL;
      if (eq == NULL || eq == kv || eq[1] == 0) {
        fprintf(stderr, "%s: --state needs INPUT=OUTPUT (e.g. --state state=stateN)\n",
                dynq__imp_progname);
        return 2;
      }
      if (opt.n_state == (int)(sizeof(opt.state_in) / sizeof(opt.state_in[0]))) {
        fprintf(stderr, "%s: at most %zu --state pairs\n", dynq__imp_progname,
                sizeof(opt.state_in) / sizeof(opt.state_in[0]));
        return 2;
      }
      char *name = (char *)kv; /* split in place, as for --set */
      name[eq - kv] = 0;
      opt.state_in[opt.n_state] = name;
      opt.state_out[opt.n_state++] = eq + 1;
    } else if (!only_pos && (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0)) {
      const char *kv = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
      const char *eq = kv ? strchr(kv, '=') : NULL;
      if (eq == NULL || eq == kv || eq[1] == 0) {
        fprintf(stderr, "%s: --set needs NAME=VALUE (e.g. --set sr=16000)\n", dynq__imp_progname);
        return 2;
      }
      if (opt.n_set == (int)(sizeof(opt.set_name) / sizeof(opt.set_name[0]))) {
        fprintf(stderr, "%s: at most %zu --set options\n", dynq__imp_progname,
                sizeof(opt.set_name) / sizeof(opt.set_name[0]));
        return 2;
      }
      /* argv strings are ours to modify: split NAME=VALUE in place, so
       * nothing is allocated (and nothing leaks on an early return). */
      char *name = (char *)kv;
      name[eq - kv] = 0;
      opt.set_name[opt.n_set] = name;
      opt.set_value[opt.n_set++] = eq + 1;
    } else if (!only_pos && strcmp(a, "--quantize-small") == 0) {
      opt.quantize_small = 1;
    } else if (!only_pos && (strcmp(a, "--const") == 0 || strncmp(a, "--const=", 8) == 0)) {
      const char *kv = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
      const char *eq = kv ? strchr(kv, '=') : NULL;
      if (eq == NULL || eq == kv || eq[1] == 0) {
        fprintf(stderr, "%s: --const needs NAME=FILE.pb (e.g. --const W=test_data_set_0/"
                "input_1.pb)\n", dynq__imp_progname);
        return 2;
      }
      if (opt.n_const == (int)(sizeof(opt.const_name) / sizeof(opt.const_name[0]))) {
        fprintf(stderr, "%s: at most %zu --const options\n", dynq__imp_progname,
                sizeof(opt.const_name) / sizeof(opt.const_name[0]));
        return 2;
      }
      char *name = (char *)kv; /* split in place, like --set */
      name[eq - kv] = 0;
      for (int k = 0; k < opt.n_const; k++)
        if (strcmp(opt.const_name[k], name) == 0) {
          fprintf(stderr, "%s: --const %s given twice\n", dynq__imp_progname, name);
          return 2;
        }
      opt.const_name[opt.n_const] = name;
      opt.const_file[opt.n_const++] = eq + 1;
    } else if (!only_pos && a[0] == '-' && a[1] != 0) {
      fprintf(stderr, "%s: unknown option '%s'\n", dynq__imp_progname, a);
      usage(stderr);
      return 2;
    } else if (npos < 2) {
      pos[npos++] = a;
    } else {
      fprintf(stderr, "%s: too many arguments ('%s')\n", dynq__imp_progname, a);
      usage(stderr);
      return 2;
    }
  }
  if (npos != 2) {
    fprintf(stderr, "%s: expected an input .onnx and an output .dynq path\n", dynq__imp_progname);
    usage(stderr);
    return 2;
  }
  if (opt.fp32 && opt.per_tensor)
    fprintf(stderr, "%s: --act-per-tensor has no effect with --fp32\n", dynq__imp_progname);
  if (opt.fp32 && opt.n_op_types > 0)
    fprintf(stderr, "%s: --op-types has no effect with --fp32\n", dynq__imp_progname);
  if (isatty(STDERR_FILENO)) opt.progress = 1;
  /* Tensors in external data files are read next to the model. */
  const char *slash = strrchr(pos[0], '/');
  char *dir = slash ? strndup(pos[0], slash == pos[0] ? 1 : (size_t)(slash - pos[0])) : NULL;
  if (slash && dir == NULL) {
    fprintf(stderr, "%s: out of memory\n", dynq__imp_progname);
    return 1;
  }
  opt.ext_dir = dir ? dir : ".";
  int ret = 2;
  uint8_t *buf = NULL;
  size_t len = 0;
  if (dynq__calib_check(&copt, &opt) != 0) goto out;
  ret = 1;
  if (read_model(&opt, pos[0], &buf, &len) != 0) goto out;
  if (copt.dir != NULL)
    ret = dynq__calibrate(&opt, &copt, buf, len, pos[0], pos[1]);
  else if (self_check && !opt.fp32)
    ret = dynq__selfcheck(&opt, buf, len, pos[0], pos[1]);
  else
    ret = dynq__imp_convert_buffer(&opt, buf, len, pos[0], pos[1]);
out:
  free(buf);
  free(dir);
  return ret;
}
