/*
 * dynqctl: the command-line client for dynqd.  Links only libdynqclient.
 *
 * Commands come from one static table (name, arguments, help, handler);
 * a command may be abbreviated to any unique prefix, and help is generated
 * from the table.  Exit status: 0 success, 1 the server or the connection
 * failed, 2 the command line or an --input was wrong.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dynq-config.h"
#include "dynq/dynqclient.h"
#include "ctl-acc.h"
#include "dynqctl-io.h"
#include "npz.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Input files larger than this are refused before reading them. */
#define MAX_INPUT_FILE ((long long)1 << 31)
#define MAX_INPUTS 64

typedef struct ctl {
  const char *socket;        /* --socket, else NULL (library default) */
  char sockbuf[4096];        /* the path actually used, for messages */
  int json;                  /* --json */
  long long timeout_ms;      /* --timeout: 0 none; -1 not given (the library's
                                default, $DYNQ_CLIENT_TIMEOUT_MS) */
  const char *cmd;           /* full command name, for messages */
  dynq_client_t *client;     /* owned; closed in main */
  int json_untyped;          /* an --input was JSON without a :DTYPE (for hints) */
  int streaming;             /* the command is stream (for hints) */
} ctl_t;

typedef struct command {
  const char *name;
  const char *args;
  const char *help;
  int (*run)(ctl_t *ctl, int argc, char **argv);
} command_t;

static int cmd_help(ctl_t *ctl, int argc, char **argv);
static int cmd_ping(ctl_t *ctl, int argc, char **argv);
static int cmd_status(ctl_t *ctl, int argc, char **argv);
static int cmd_list(ctl_t *ctl, int argc, char **argv);
static int cmd_info(ctl_t *ctl, int argc, char **argv);
static int cmd_infer(ctl_t *ctl, int argc, char **argv);
static int cmd_health(ctl_t *ctl, int argc, char **argv);
static int cmd_stats(ctl_t *ctl, int argc, char **argv);
static int cmd_load(ctl_t *ctl, int argc, char **argv);
static int cmd_unload(ctl_t *ctl, int argc, char **argv);
static int cmd_reload(ctl_t *ctl, int argc, char **argv);
static int cmd_stream(ctl_t *ctl, int argc, char **argv);
static int cmd_compare(ctl_t *ctl, int argc, char **argv);

static const command_t commands[] = {
  { "ping", "", "check that dynqd answers, and how fast", cmd_ping },
  { "status", "", "show the server's version, kernel, workers and uptime", cmd_status },
  { "list", "", "list the loaded models", cmd_list },
  { "info", "MODEL", "show a model's inputs, outputs and weights", cmd_info },
  { "infer", "MODEL [--input [NAME[:DTYPE]=]FILE|JSON ...] [--precision int8|fp32] "
    "[--output-dir DIR] [--timeout-ms MS] [--record DIR]",
    "run a model on inputs from .npy/.json/.npz files, inline JSON arrays or numbers "
    "(JSON is float32 unless NAME:int64= etc.)", cmd_infer },
  { "health", "", "liveness and readiness (exit 1 unless ready)", cmd_health },
  { "stats", "[--json|--prometheus]",
    "request counts and latency percentiles per model; --prometheus for the textfile "
    "collector", cmd_stats },
  { "load", "NAME [PATH]", "load a model from dynqd's model directory (admin)", cmd_load },
  { "unload", "NAME", "unload a model (admin)", cmd_unload },
  { "reload", "NAME", "re-open a model's file; the old version serves on failure (admin)",
    cmd_reload },
  { "stream", "MODEL --input NAME=AUDIO [--chunk N] [--context N] [--rate HZ] "
    "[--bind IN=OUT ...] [--set NAME=VALUE ...] [--output NAME] [--precision int8|fp32] "
    "[--record DIR] [--compare [--threshold T]]",
    "stream an audio file (WAV, FLAC, Ogg, ...; resampled to --rate, mixed to mono) "
    "through a session, one line per chunk", cmd_stream },
  { "compare", "MODEL [--input [NAME[:DTYPE]=]FILE|JSON ...] [--threshold T] [--timeout-ms MS]",
    "run both precisions on the same inputs: relL2, max |d|, cosine and changed decisions "
    "per output", cmd_compare },
  { "help", "[COMMAND]", "show this help, or one command's (as COMMAND --help does)",
    cmd_help },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void errx_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errx_msg(const char *fmt, ...) {
  va_list ap;
  fputs("dynqctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: dynqctl [--socket PATH] [--json] [--timeout MS] COMMAND [ARGS]\n"
          "\n"
          "Talk to dynqd over its Unix socket (default: $DYNQ_SOCKET, else\n"
          "$XDG_RUNTIME_DIR/dynq/dynqd.sock, else /run/dynq/dynqd.sock).\n"
          "Commands may be abbreviated to a unique prefix.\n"
          "\n"
          "commands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++) {
    char head[256];
    snprintf(head, sizeof(head), "%s %s", commands[i].name, commands[i].args);
    if (strlen(head) > 22)
      fprintf(f, "  %s\n  %-22s  %s\n", head, "", commands[i].help);
    else
      fprintf(f, "  %-22s  %s\n", head, commands[i].help);
  }
  fprintf(f,
          "\n"
          "options:\n"
          "  -s, --socket PATH       dynqd's socket\n"
          "  -j, --json              machine-readable output (one JSON object)\n"
          "  -T, --timeout MS        give up on dynqd after MS ms without an answer\n"
          "                          (0: never; default $DYNQ_CLIENT_TIMEOUT_MS, else never)\n"
          "  -h, --help              this help\n"
          "  -V, --version           print the version\n"
          "\n"
          "exit status: 0 ok, 1 server or connection error, 2 bad command line or input\n");
}

/* Exact name, else the only command the word is a prefix of. */
static const command_t *lookup_command(const char *word) {
  const command_t *found = NULL;
  size_t n = strlen(word);
  int matches = 0;

  if (n == 0) return NULL;
  for (size_t i = 0; i < N_COMMANDS; i++) {
    if (strcmp(commands[i].name, word) == 0) return &commands[i];
    if (strncmp(commands[i].name, word, n) == 0) {
      found = &commands[i];
      matches++;
    }
  }
  if (matches == 1) return found;
  if (matches > 1) {
    fprintf(stderr, "dynqctl: ambiguous command '%s': could be", word);
    for (size_t i = 0; i < N_COMMANDS; i++)
      if (strncmp(commands[i].name, word, n) == 0) fprintf(stderr, " %s", commands[i].name);
    fputc('\n', stderr);
    return NULL;
  }
  errx_msg("unknown command '%s' (try 'dynqctl help')", word);
  return NULL;
}

/* What a failed connect means: only a missing or refused socket says
 * dynqd may not be running; a permission error is about the socket's
 * group (the system socket is 0660 root:dynq; one dynqd made elsewhere has
 * its creator's group, named when path, the one path tried, can be
 * looked at). */
static const char *connect_hint(int r, const char *path, char *buf, size_t cap) {
  if (r == -EACCES || r == -EPERM) {
    if (geteuid() == 0) return "permission denied even as root: check the path and any LSM policy";
    struct stat st;
    const struct group *g;
    if (path != NULL && stat(path, &st) == 0 && (g = getgrgid(st.st_gid)) != NULL &&
        strcmp(g->gr_name, "dynq") != 0) {
      snprintf(buf, cap, "permission denied: the socket belongs to group %s (mode %04o); "
               "join it or use sudo", g->gr_name, (unsigned)(st.st_mode & 07777));
      return buf;
    }
    return "permission denied: the socket belongs to group dynq; "
           "join it (usermod -aG dynq USER, then log in again) or use sudo";
  }
  if (r == -ENOENT || r == -ECONNREFUSED)
    return "is dynqd running? 'systemctl status dynqd.socket'; or set --socket or DYNQ_SOCKET";
  if (r == -ENAMETOOLONG) return "the socket path is too long for a Unix socket";
  if (r == -ETIMEDOUT)
    return "dynqd is not accepting connections (stopped, or its queue is full): "
           "'systemctl status dynqd'";
  return "set --socket or DYNQ_SOCKET";
}

static int ctl_connect(ctl_t *ctl) {
  char tried[1024];
  int r;
  /* --socket is the one path to try; else libdynqclient's search
   * ($DYNQ_SOCKET, $XDG_RUNTIME_DIR/dynq/dynqd.sock, /run/dynq/dynqd.sock). */
  if (ctl->socket != NULL)
    snprintf(ctl->sockbuf, sizeof(ctl->sockbuf), "%s", ctl->socket);
  else
    dynq_default_socket(ctl->sockbuf, sizeof(ctl->sockbuf));
  if (ctl->timeout_ms >= 0)
    r = dynq_connect_timeout(ctl->socket, (int)ctl->timeout_ms, &ctl->client, tried,
                             sizeof(tried));
  else
    r = dynq_connect_msg(ctl->socket, &ctl->client, tried, sizeof(tried));
  if (r < 0) {
    const char *env = getenv("DYNQ_SOCKET");
    char hint[256];
    errx_msg("cannot connect to dynqd: %s (%s)", tried[0] ? tried : dynq_strerror(r),
             connect_hint(r, ctl->socket ? ctl->socket : env && *env ? env : NULL, hint,
                          sizeof(hint)));
    return EXIT_FAIL;
  }
  snprintf(ctl->sockbuf, sizeof(ctl->sockbuf), "%s", dynq_client_path(ctl->client));
  return EXIT_OK;
}

static void print_hint(const ctl_t *ctl, int r);

/* Report a failed call: the server's message when there is one. */
static int call_failed(ctl_t *ctl, int r) {
  const char *m = dynq_client_errmsg(ctl->client);
  if (m == NULL || *m == '\0') m = dynq_strerror(r);
  errx_msg("%s: %s (%s)", ctl->cmd, m, dynq_err_name(r));
  print_hint(ctl, r);
  return EXIT_FAIL;
}

/* What to do next, in dynqctl's own terms (the server's messages are for
 * every client and may name RPC methods). */
static void print_hint(const ctl_t *ctl, int r) {
  const char *h = NULL;
  switch (r) {
  case DYNQ_ENOMODEL: h = "'dynqctl list' shows the loaded models"; break;
  case DYNQ_ENOINPUT:
    if (ctl->streaming) {
      h = "stream sends the audio as the --input tensor and each --set NAME=VALUE as a "
          "scalar; give the model's other inputs with --set (a VAD's sample rate: --set "
          "sr=16000); 'dynqctl info MODEL' lists them";
      break;
    }
    /* fall through */
  case DYNQ_ESHAPE: h = "'dynqctl info MODEL' shows its inputs and their shapes"; break;
  case DYNQ_EDTYPE:
    h = ctl->json_untyped
            ? "JSON inputs are float32 unless typed: --input NAME:int64=VALUE (or :int32, "
              ":int8, :uint8, :float32); 'dynqctl info MODEL' shows each input's dtype"
            : "'dynqctl info MODEL' shows each input's dtype; .npy inputs keep their own, "
              "JSON ones take NAME:DTYPE=VALUE";
    break;
  case DYNQ_ENOREF:
    h = "the model was written with 'dynq-quantize --no-reference'; requantize without it "
        "to use --precision fp32";
    break;
  case DYNQ_EOVERLOAD: h = "dynqd's queue is full: retry later, or raise 'queue' in dynqd.conf"; break;
  case DYNQ_ENOSESSION: h = "the session was closed or timed out (session_idle_timeout_ms)"; break;
  case -ETIMEDOUT:
    h = "dynqd did not answer in time: 'dynqctl health' shows whether it is live; a longer "
        "--timeout MS (0: none) waits more";
    break;
  default: break;
  }
  if (h != NULL) fprintf(stderr, "dynqctl: hint: %s\n", h);
}

/* ---- JSON output helpers ---- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", f);
    else if (*p == '\t')
      fputs("\\t", f);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static const char *dtype_name(int dt) {
  switch (dt) {
  case DYNQ_FLOAT32: return "float32";
  case DYNQ_INT8: return "int8";
  case DYNQ_UINT8: return "uint8";
  case DYNQ_INT32: return "int32";
  case DYNQ_INT64: return "int64";
  default: return "invalid";
  }
}

static void print_shape(FILE *f, int rank, const int64_t *shape) {
  fputc('[', f);
  for (int d = 0; d < rank; d++) fprintf(f, "%s%" PRId64, d ? ", " : "", shape[d]);
  fputc(']', f);
}

/* ---- commands ---- */

static int no_args(ctl_t *ctl, int argc, char **argv) {
  if (argc > 1) {
    errx_msg("%s: unexpected argument '%s'", ctl->cmd, argv[1]);
    return EXIT_USAGE;
  }
  return EXIT_OK;
}

/* One command's usage line and what it does (dynqctl CMD --help). */
static void command_usage(FILE *f, const command_t *c) {
  fprintf(f, "usage: dynqctl [--socket PATH] [--json] [--timeout MS] %s%s%s\n\n%s\n",
          c->name, c->args[0] ? " " : "", c->args, c->help);
}

/* Whether the command's arguments ask for its help: -h or --help before
 * a "--" (it connects to nothing then). */
static int wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
  }
  return 0;
}

static int cmd_help(ctl_t *ctl, int argc, char **argv) {
  (void)ctl;
  if (argc > 2) {
    errx_msg("help: one command at most, not '%s'", argv[2]);
    return EXIT_USAGE;
  }
  if (argc == 2) {
    const command_t *c = lookup_command(argv[1]);
    if (c == NULL) return EXIT_USAGE;
    command_usage(stdout, c);
    return EXIT_OK;
  }
  usage(stdout);
  return EXIT_OK;
}

static int cmd_ping(ctl_t *ctl, int argc, char **argv) {
  struct timespec a, b;
  long long us;
  int r = no_args(ctl, argc, argv);
  if (r != EXIT_OK) return r;
  if ((r = ctl_connect(ctl)) != EXIT_OK) return r;
  clock_gettime(CLOCK_MONOTONIC, &a);
  r = dynq_ping(ctl->client);
  clock_gettime(CLOCK_MONOTONIC, &b);
  if (r < 0) return call_failed(ctl, r);
  us = (long long)(b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
  if (ctl->json)
    printf("{\"pong\": true, \"us\": %lld}\n", us);
  else
    printf("pong in %lld us\n", us);
  return EXIT_OK;
}

static int cmd_status(ctl_t *ctl, int argc, char **argv) {
  dynq_server_info_t si;
  int r = no_args(ctl, argc, argv);
  if (r != EXIT_OK) return r;
  if ((r = ctl_connect(ctl)) != EXIT_OK) return r;
  r = dynq_server_info(ctl->client, &si);
  if (r < 0) return call_failed(ctl, r);
  if (ctl->json) {
    printf("{\"version\": ");
    json_str(stdout, si.version);
    printf(", \"protocol\": %d, \"kernel\": ", si.protocol);
    json_str(stdout, si.kernel);
    printf(", \"openblas_core\": ");
    json_str(stdout, si.openblas_core);
    printf(", \"workers\": %d, \"models\": %d, \"uptime_s\": %.9g, \"socket\": ",
           si.workers, si.models, si.uptime_s);
    json_str(stdout, ctl->sockbuf);
    printf("}\n");
  } else {
    printf("%-15s %s\n", "version:", si.version);
    printf("%-15s %d\n", "protocol:", si.protocol);
    printf("%-15s %s\n", "socket:", ctl->sockbuf);
    printf("%-15s %s\n", "kernel:", si.kernel);
    printf("%-15s %s\n", "openblas core:", si.openblas_core);
    printf("%-15s %d\n", "workers:", si.workers);
    printf("%-15s %d\n", "models:", si.models);
    printf("%-15s %.1f s\n", "uptime:", si.uptime_s);
  }
  return EXIT_OK;
}

static int cmd_list(ctl_t *ctl, int argc, char **argv) {
  char **names = NULL;
  int r = no_args(ctl, argc, argv), n = 0;
  if (r != EXIT_OK) return r;
  if ((r = ctl_connect(ctl)) != EXIT_OK) return r;
  r = dynq_list_models(ctl->client, &names);
  if (r < 0) return call_failed(ctl, r);
  if (ctl->json) printf("{\"models\": [");
  else if (names[0] != NULL)
    printf("%-24s %6s %7s %12s %9s\n", "NAME", "INPUTS", "OUTPUTS", "FILE BYTES", "QUANTIZED");
  for (char **p = names; *p != NULL; p++, n++) {
    dynq_model_info_t mi;
    /* A model may be unloaded between the two calls: show what we have. */
    int have = dynq_model_info(ctl->client, *p, &mi) == 0;
    if (ctl->json) {
      printf("%s{\"name\": ", n ? ", " : "");
      json_str(stdout, *p);
      if (have) {
        printf(", \"path\": ");
        json_str(stdout, mi.path);
        printf(", \"file_bytes\": %" PRIu64 ", \"inputs\": %d, \"outputs\": %d, "
               "\"quantized_layers\": %d",
               mi.file_bytes, mi.n_inputs, mi.n_outputs, mi.quantized_layers);
      }
      printf("}");
    } else if (have) {
      printf("%-24s %6d %7d %12" PRIu64 " %9d\n", *p, mi.n_inputs, mi.n_outputs,
             mi.file_bytes, mi.quantized_layers);
    } else {
      printf("%-24s %6s %7s %12s %9s\n", *p, "?", "?", "?", "?");
    }
    if (have) dynq_model_info_free(&mi);
  }
  if (ctl->json) printf("]}\n");
  else if (n == 0) printf("no models loaded\n");
  dynq_strv_free(names);
  return EXIT_OK;
}

static void print_tensor_infos_json(const char *key, const dynq_tensor_info_t *t, int n) {
  printf(", ");
  json_str(stdout, key);
  printf(": [");
  for (int i = 0; i < n; i++) {
    printf("%s{\"name\": ", i ? ", " : "");
    json_str(stdout, t[i].name);
    printf(", \"dtype\": \"%s\", \"shape\": ", dtype_name(t[i].dtype));
    print_shape(stdout, t[i].rank, t[i].shape);
    printf("}");
  }
  printf("]");
}

static int cmd_info(ctl_t *ctl, int argc, char **argv) {
  dynq_model_info_t mi;
  int r;
  if (argc < 2) {
    errx_msg("info: missing MODEL (usage: dynqctl info MODEL)");
    return EXIT_USAGE;
  }
  if (argc > 2) {
    errx_msg("info: unexpected argument '%s'", argv[2]);
    return EXIT_USAGE;
  }
  if ((r = ctl_connect(ctl)) != EXIT_OK) return r;
  r = dynq_model_info(ctl->client, argv[1], &mi);
  if (r < 0) return call_failed(ctl, r);
  if (ctl->json) {
    printf("{\"name\": ");
    json_str(stdout, mi.name);
    printf(", \"path\": ");
    json_str(stdout, mi.path);
    printf(", \"producer\": ");
    json_str(stdout, mi.producer);
    printf(", \"file_bytes\": %" PRIu64, mi.file_bytes);
    print_tensor_infos_json("inputs", mi.inputs, mi.n_inputs);
    print_tensor_infos_json("outputs", mi.outputs, mi.n_outputs);
    printf(", \"nodes\": %d, \"quantized_layers\": %d, \"int8_weight_bytes\": %" PRIu64
           ", \"fp32_weight_bytes\": %" PRIu64 ", \"reference_weight_bytes\": %" PRIu64
           ", \"has_reference\": %s, \"activation_scales\": \"%s\"}\n",
           mi.n_nodes, mi.quantized_layers, mi.int8_weight_bytes, mi.fp32_weight_bytes,
           mi.reference_weight_bytes, mi.has_reference ? "true" : "false",
           mi.per_tensor ? "per-tensor" : "per-row");
  } else {
    printf("%-19s %s\n", "model:", mi.name);
    printf("%-19s %s\n", "path:", mi.path ? mi.path : "-");
    printf("%-19s %s\n", "producer:", mi.producer ? mi.producer : "-");
    printf("%-19s %" PRIu64 " bytes\n", "file size:", mi.file_bytes);
    printf("%-19s %d (%d quantized)\n", "nodes:", mi.n_nodes, mi.quantized_layers);
    printf("%-19s int8 %" PRIu64 " B, fp32 %" PRIu64 " B, reference %" PRIu64 " B\n",
           "weights:", mi.int8_weight_bytes, mi.fp32_weight_bytes,
           mi.reference_weight_bytes);
    printf("%-19s %s\n", "fp32 reference:", mi.has_reference ? "yes" : "no");
    printf("%-19s %s\n", "activation scales:", mi.per_tensor ? "per-tensor" : "per-row");
    printf("inputs:\n");
    for (int i = 0; i < mi.n_inputs; i++) {
      printf("  %-20s %-8s ", mi.inputs[i].name, dtype_name(mi.inputs[i].dtype));
      print_shape(stdout, mi.inputs[i].rank, mi.inputs[i].shape);
      printf("\n");
    }
    printf("outputs:\n");
    for (int i = 0; i < mi.n_outputs; i++) {
      printf("  %-20s %-8s ", mi.outputs[i].name, dtype_name(mi.outputs[i].dtype));
      print_shape(stdout, mi.outputs[i].rank, mi.outputs[i].shape);
      printf("\n");
    }
  }
  dynq_model_info_free(&mi);
  return EXIT_OK;
}

/* ---- infer ---- */

/* A whole decimal unsigned number within [lo, hi]. */
static int parse_ull(const char *s, unsigned long long lo, unsigned long long hi,
                     unsigned long long *ret) {
  char *end;
  unsigned long long v;
  if (s == NULL || *s < '0' || *s > '9') return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
  *ret = v;
  return 0;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Read a whole input file; NULL with a message on failure. */
static char *slurp(const char *what, const char *path, size_t *ret_len) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  char *buf = NULL;
  size_t n;

  if (f == NULL) {
    errx_msg("%s: cannot open input %s: %s", what, path, strerror(errno));
    return NULL;
  }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    errx_msg("%s: input %s is not a regular file", what, path);
    goto out;
  }
  if ((long long)st.st_size > MAX_INPUT_FILE) {
    errx_msg("%s: input %s is larger than %lld bytes", what, path, MAX_INPUT_FILE);
    goto out;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (buf == NULL) {
    errx_msg("%s: out of memory reading %s", what, path);
    goto out;
  }
  n = fread(buf, 1, (size_t)st.st_size, f);
  if (n != (size_t)st.st_size || ferror(f)) {
    errx_msg("%s: cannot read input %s", what, path);
    free(buf);
    buf = NULL;
    goto out;
  }
  buf[n] = '\0';
  *ret_len = n;
out:
  fclose(f);
  return buf;
}

/* "NAME:DTYPE" (DTYPE one of the wire dtypes) -> NAME, and the dtype in
 * *ret_dtype; any other name (TF-style "input:0" too) is left whole and
 * *ret_dtype is 0. */
static void split_dtype_suffix(char *name, int *ret_dtype) {
  static const int dts[] = { DYNQ_FLOAT32, DYNQ_INT8, DYNQ_UINT8, DYNQ_INT32, DYNQ_INT64 };
  char *colon = strrchr(name, ':');
  *ret_dtype = 0;
  if (colon == NULL) return;
  for (size_t i = 0; i < sizeof(dts) / sizeof(dts[0]); i++) {
    if (strcmp(colon + 1, dtype_name(dts[i])) == 0) {
      *colon = '\0';
      *ret_dtype = dts[i];
      return;
    }
  }
}

/* An inline JSON value: an array, or a bare number (a scalar). */
static int is_inline_json(const char *v) {
  return v[0] == '[' || v[0] == '-' || (v[0] >= '0' && v[0] <= '9');
}

/* "[NAME[:DTYPE]=]FILE.npy", "...=FILE.json", "...=[...]" or "...=NUMBER"
 * -> tensor.  JSON values are float32 unless DTYPE says otherwise (then
 * *ret_json_untyped is 0).  *ret_name is NULL when no name was given
 * (strdup'd otherwise). */
static int load_input(const char *spec, char **ret_name, dynq_tensor_t *ret_t,
                      int *ret_json_untyped) {
  const char *eq = strchr(spec, '='), *val = spec;
  char *name = NULL, *buf = NULL, err[256] = "";
  size_t len = 0;
  int r, dtype = 0;

  /* "name=" only when the part before '=' looks like a name, so paths and
   * inline arrays holding '=' are not split. */
  if (spec[0] != '[' && eq != NULL && memchr(spec, '/', (size_t)(eq - spec)) == NULL) {
    if (eq == spec) {
      errx_msg("infer: --input '%s': empty input name before '='", spec);
      return -1;
    }
    name = strndup(spec, (size_t)(eq - spec));
    if (name == NULL) return -1;
    split_dtype_suffix(name, &dtype);
    if (name[0] == '\0') {
      errx_msg("infer: --input '%s': empty input name before the dtype", spec);
      goto fail;
    }
    val = eq + 1;
  }
  if (val[0] == '\0') {
    errx_msg("infer: --input '%s': nothing after the input name", spec);
    goto fail;
  }
  *ret_json_untyped = dtype == 0;
  if (ends_with(val, ".npy") || ends_with(val, ".json")) {
    buf = slurp("infer", val, &len);
    if (buf == NULL) goto fail;
    if (ends_with(val, ".npy")) {
      r = dynq__npy_parse(buf, len, ret_t, err, sizeof(err));
      *ret_json_untyped = 0;
      if (r == 0 && dtype != 0 && ret_t->dtype != dtype) {
        errx_msg("infer: input %s holds %s, not %s (a .npy file keeps its own dtype; "
                 "drop ':%s' or convert the file)", val, dtype_name(ret_t->dtype),
                 dtype_name(dtype), dtype_name(dtype));
        free(buf);
        dynq__io_tensor_free(ret_t);
        goto fail;
      }
    } else {
      r = dynq__json_parse_as(buf, len, dtype ? dtype : DYNQ_FLOAT32, ret_t, err, sizeof(err));
    }
    free(buf);
    if (r < 0) {
      errx_msg("infer: input %s: %s", val, err);
      goto fail;
    }
  } else if (is_inline_json(val)) {
    r = dynq__json_parse_as(val, strlen(val), dtype ? dtype : DYNQ_FLOAT32, ret_t, err,
                            sizeof(err));
    if (r < 0) {
      errx_msg("infer: --input '%s': %s", spec, err);
      goto fail;
    }
  } else {
    errx_msg("infer: --input '%s': expected [NAME[:DTYPE]=]FILE.npy, FILE.json, a JSON "
             "array or a number", spec);
    goto fail;
  }
  *ret_name = name;
  return 0;

fail:
  free(name);
  return -1;
}

static void print_value(FILE *f, int dtype, const void *data, size_t i, int json) {
  switch (dtype) {
  case DYNQ_FLOAT32: {
    float v;
    memcpy(&v, (const char *)data + i * 4, 4);
    if (json && !isfinite(v))
      fputs("null", f);  /* JSON has no NaN/Inf */
    else
      fprintf(f, json ? "%.9g" : "%.6g", (double)v);
    break;
  }
  case DYNQ_INT8: fprintf(f, "%d", ((const int8_t *)data)[i]); break;
  case DYNQ_UINT8: fprintf(f, "%u", ((const uint8_t *)data)[i]); break;
  case DYNQ_INT32: {
    int32_t v;
    memcpy(&v, (const char *)data + i * 4, 4);
    fprintf(f, "%" PRId32, v);
    break;
  }
  case DYNQ_INT64: {
    int64_t v;
    memcpy(&v, (const char *)data + i * 8, 8);
    fprintf(f, "%" PRId64, v);
    break;
  }
  default: fputs("?", f);
  }
}

static size_t dtype_size(int dt) {
  switch (dt) {
  case DYNQ_FLOAT32: case DYNQ_INT32: return 4;
  case DYNQ_INT8: case DYNQ_UINT8: return 1;
  case DYNQ_INT64: return 8;
  default: return 0;
  }
}

static size_t tensor_numel(const dynq_tensor_t *t) {
  size_t es = dtype_size(t->dtype);
  return es ? t->nbytes / es : 0;
}

/* Rows of the last dimension; long rows and many rows are summarised. */
static void print_tensor_human(const dynq_tensor_t *t) {
  enum { ROW_MAX = 20, ROW_HEAD = 12, ROW_TAIL = 6, ROWS_MAX = 16 };
  size_t numel = tensor_numel(t);
  size_t cols = t->rank > 0 ? (size_t)t->shape[t->rank - 1] : 1;
  size_t rows = cols ? numel / cols : 0;

  printf("%s: %s ", t->name, dtype_name(t->dtype));
  print_shape(stdout, t->rank, t->shape);
  printf("\n");
  for (size_t rw = 0; rw < rows; rw++) {
    if (rows > ROWS_MAX && rw == ROWS_MAX - 2) {
      printf("  ... (%zu more rows)\n", rows - ROWS_MAX + 1);
      rw = rows - 2;
      continue;
    }
    printf("  ");
    for (size_t c = 0; c < cols; c++) {
      if (cols > ROW_MAX && c == ROW_HEAD) {
        printf(" ... (%zu more)", cols - ROW_HEAD - ROW_TAIL);
        c = cols - ROW_TAIL - 1;
        continue;
      }
      if (c) putchar(' ');
      print_value(stdout, t->dtype, t->data, rw * cols + c, 0);
    }
    printf("\n");
  }
}

static void print_tensor_json(const dynq_tensor_t *t) {
  size_t numel = tensor_numel(t);
  json_str(stdout, t->name);
  printf(": {\"dtype\": \"%s\", \"shape\": ", dtype_name(t->dtype));
  print_shape(stdout, t->rank, t->shape);
  printf(", \"data\": [");
  for (size_t i = 0; i < numel; i++) {
    if (i) fputs(", ", stdout);
    print_value(stdout, t->dtype, t->data, i, 1);
  }
  printf("]}");
}

/* Output names come from the server: keep them inside DIR. */
static void safe_file_name(char *buf, size_t cap, const char *name) {
  size_t n = 0;
  if (name[0] == '.' && n + 1 < cap) buf[n++] = '_';
  for (const char *p = name; *p && n + 1 < cap; p++) {
    char ch = *p;
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
             (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    buf[n++] = ok ? ch : '_';
  }
  buf[n] = '\0';
}

/* --threshold T of compare and stream --compare. */
static int parse_threshold(const char *what, const char *arg, double *ret) {
  char *end;
  errno = 0;
  double v = strtod(arg, &end);
  if (errno != 0 || *end != '\0' || !isfinite(v)) {
    errx_msg("%s: --threshold must be a finite number, not '%s'", what, arg);
    return -1;
  }
  *ret = v;
  return 0;
}

/* The arrays of an .npz as inputs (names from the file). */
static int load_npz_inputs(const char *what, const char *path, dynq_tensor_t *inputs,
                           char **names, int *n_in) {
  dynq__npz_t z;
  char err[512];
  if (dynq__npz_load(path, &z, err, sizeof(err)) != 0) {
    errx_msg("%s: input %s", what, err);
    return -1;
  }
  if (*n_in + z.n > MAX_INPUTS) {
    errx_msg("%s: %s: more than %d inputs", what, path, MAX_INPUTS);
    dynq__npz_free(&z);
    return -1;
  }
  for (int i = 0; i < z.n; i++) {
    names[*n_in] = (char *)z.t[i].name; /* ownership moves */
    inputs[*n_in] = z.t[i];
    inputs[*n_in].name = NULL;
    (*n_in)++;
  }
  free(z.t);
  return 0;
}

static int run_infer(ctl_t *ctl, int argc, char **argv, int compare);
static int cmd_infer(ctl_t *ctl, int argc, char **argv) { return run_infer(ctl, argc, argv, 0); }
static int cmd_compare(ctl_t *ctl, int argc, char **argv) { return run_infer(ctl, argc, argv, 1); }

/* Print compare's per-output metrics: a = INT8 path, b = FP32 path. */
static void print_compare(ctl_t *ctl, const dynq_infer_result_t *a, const dynq_infer_result_t *b,
                          double threshold) {
  if (ctl->json) printf("{\"threshold\": %.9g, \"outputs\": [", threshold);
  int first = 1;
  for (int i = 0; i < a->n_outputs; i++) {
    const dynq_tensor_t *x = &a->outputs[i], *r = NULL;
    for (int k = 0; k < b->n_outputs; k++)
      if (strcmp(b->outputs[k].name, x->name) == 0) r = &b->outputs[k];
    if (r == NULL || x->dtype != DYNQ_FLOAT32 || r->dtype != DYNQ_FLOAT32 ||
        x->nbytes != r->nbytes || x->data == NULL || r->data == NULL) {
      if (!ctl->json) printf("%-20s (not float32 on both paths: not compared)\n", x->name);
      continue;
    }
    dynq__cmp_t c;
    memset(&c, 0, sizeof(c));
    size_t row = x->rank > 0 ? (size_t)x->shape[x->rank - 1] : 1;
    dynq__cmp_add(&c, x->data, r->data, x->nbytes / 4, row, threshold);
    if (ctl->json && !first) printf(", ");
    dynq__cmp_print(stdout, x->name, &c, ctl->json);
    first = 0;
  }
  if (ctl->json) printf("], \"compute_us\": {\"int8\": %" PRId64 ", \"fp32\": %" PRId64 "}}\n",
                        a->compute_us, b->compute_us);
  else printf("compute: int8 %" PRId64 " us, fp32 %" PRId64 " us\n", a->compute_us, b->compute_us);
}

static int run_infer(ctl_t *ctl, int argc, char **argv, int compare) {
  static const struct option opts[] = {
    { "input", required_argument, NULL, 'i' },
    { "precision", required_argument, NULL, 'p' },
    { "output-dir", required_argument, NULL, 'o' },
    { "timeout-ms", required_argument, NULL, 't' },
    { "record", required_argument, NULL, 'R' },
    { "threshold", required_argument, NULL, 'T' },
    { "json", no_argument, NULL, 'j' }, /* also accepted after the command */
    { NULL, 0, NULL, 0 },
  };
  const char *what = compare ? "compare" : "infer", *record = NULL;
  double threshold = 0.5;
  dynq_infer_result_t res_fp32;
  dynq__rec_t rec = { NULL, 0 };
  dynq_tensor_t inputs[MAX_INPUTS];
  dynq_infer_opts_t iopts;
  unsigned long long timeout_ms = 0;
  char *names[MAX_INPUTS];
  dynq_infer_result_t res;
  const char *model, *outdir = NULL;
  int n_in = 0, precision = DYNQ_INFER_DEFAULT, ch, rc = EXIT_USAGE, r;

  memset(inputs, 0, sizeof(inputs));
  memset(names, 0, sizeof(names));
  memset(&res, 0, sizeof(res));
  memset(&res_fp32, 0, sizeof(res_fp32));
  optind = 0; /* 0: full re-initialisation of GNU getopt after main() used it */
  opterr = 0;
  dynq_infer_opts_init(&iopts);
  while ((ch = getopt_long(argc, argv, "i:p:o:t:R:T:j", opts, NULL)) != -1) {
    switch (ch) {
    case 'j':
      ctl->json = 1;
      break;
    case 'i':
      if (n_in == MAX_INPUTS) {
        errx_msg("%s: more than %d inputs", what, MAX_INPUTS);
        goto out;
      }
      if (ends_with(optarg, ".npz")) {
        /* every array of a recorded call, by its own name */
        if (load_npz_inputs(what, optarg, inputs, names, &n_in) < 0) goto out;
        break;
      }
      {
        int untyped = 0;
        if (load_input(optarg, &names[n_in], &inputs[n_in], &untyped) < 0) goto out;
        ctl->json_untyped |= untyped;
      }
      n_in++;
      break;
    case 'R':
      record = optarg;
      break;
    case 'T':
      if (parse_threshold(what, optarg, &threshold) < 0) goto out;
      break;
    case 'p':
      if (compare) {
        errx_msg("compare: --precision makes no sense here: compare runs both");
        goto out;
      }
      if (strcmp(optarg, "int8") == 0)
        precision = DYNQ_INFER_INT8;
      else if (strcmp(optarg, "fp32") == 0)
        precision = DYNQ_INFER_FP32;
      else {
        errx_msg("infer: --precision must be int8 or fp32, not '%s'", optarg);
        goto out;
      }
      break;
    case 'o':
      outdir = optarg;
      break;
    case 't':
      if (parse_ull(optarg, 1, UINT32_MAX, &timeout_ms) < 0) {
        errx_msg("infer: --timeout-ms must be an integer from 1 to %u, not '%s'",
                 UINT32_MAX, optarg);
        goto out;
      }
      break;
    case ':':
      errx_msg("infer: option '%s' needs an argument", argv[optind - 1]);
      goto out;
    default:
      if (optopt != 0 && strchr("ipotRT", optopt) != NULL)
        errx_msg("%s: option '%s' needs an argument", what, argv[optind - 1]);
      else
        errx_msg("%s: unknown option '%s'", what, argv[optind - 1]);
      goto out;
    }
  }
  if (compare && (record != NULL || outdir != NULL)) {
    errx_msg("compare: --record and --output-dir go with infer");
    goto out;
  }
  if (!compare && threshold != 0.5) {
    errx_msg("infer: --threshold goes with compare");
    goto out;
  }
  if (optind >= argc) {
    errx_msg("%s: missing MODEL (usage: dynqctl %s %s)", what, what,
             compare ? commands[11].args : commands[4].args);
    goto out;
  }
  if (optind + 1 < argc) {
    errx_msg("infer: unexpected argument '%s' (give inputs with --input)", argv[optind + 1]);
    goto out;
  }
  model = argv[optind];
  for (int i = 0; i < n_in; i++) {
    for (int k = 0; k < i; k++) {
      if (names[i] && names[k] && strcmp(names[i], names[k]) == 0) {
        errx_msg("infer: input '%s' given twice", names[i]);
        goto out;
      }
    }
    if (names[i] == NULL && n_in > 1) {
      errx_msg("infer: with several --input each needs a NAME= prefix");
      goto out;
    }
  }
  if (outdir != NULL) {
    /* made when missing (its parent must exist, as for mkdir) */
    struct stat st;
    if (stat(outdir, &st) != 0 && errno == ENOENT && mkdir(outdir, 0777) != 0) {
      errx_msg("infer: --output-dir %s: cannot create it: %s", outdir, strerror(errno));
      goto out;
    }
    if (stat(outdir, &st) != 0 || !S_ISDIR(st.st_mode)) {
      errx_msg("infer: --output-dir %s is not a directory", outdir);
      goto out;
    }
  }

  if ((rc = ctl_connect(ctl)) != EXIT_OK) goto out;
  if (n_in == 1 && names[0] == NULL) {
    /* One unnamed input: it can only be the model's single input. */
    dynq_model_info_t mi;
    r = dynq_model_info(ctl->client, model, &mi);
    if (r < 0) {
      rc = call_failed(ctl, r);
      goto out;
    }
    if (mi.n_inputs != 1) {
      errx_msg("infer: model '%s' has %d inputs; name them with --input NAME=FILE",
               model, mi.n_inputs);
      dynq_model_info_free(&mi);
      rc = EXIT_USAGE;
      goto out;
    }
    names[0] = strdup(mi.inputs[0].name);
    dynq_model_info_free(&mi);
    if (names[0] == NULL) {
      errx_msg("infer: out of memory");
      rc = EXIT_FAIL;
      goto out;
    }
  }
  for (int i = 0; i < n_in; i++) inputs[i].name = names[i];
  if (record != NULL && dynq__rec_open(&rec, record) < 0) {
    rc = EXIT_USAGE;
    goto out;
  }

  iopts.precision = compare ? DYNQ_INFER_INT8 : precision;
  iopts.timeout_ms = (uint32_t)timeout_ms;
  if (compare) {
    /* both precisions in flight at once (one round trip, and dynqd may run
     * them side by side), each answer collected by its ticket */
    dynq_infer_opts_t o32 = iopts;
    uint32_t t8, t32;
    o32.precision = DYNQ_INFER_FP32;
    r = dynq_submit_infer(ctl->client, model, inputs, n_in, &iopts, &t8);
    if (r == 0) r = dynq_submit_infer(ctl->client, model, inputs, n_in, &o32, &t32);
    if (r == 0) {
      r = dynq_wait_infer(ctl->client, t8, &res);
      if (r < 0) (void)dynq_forget(ctl->client, t32);
    }
    if (r == 0) r = dynq_wait_infer(ctl->client, t32, &res_fp32);
    if (r < 0) {
      rc = call_failed(ctl, r);
      goto out;
    }
    rc = EXIT_OK;
    print_compare(ctl, &res, &res_fp32, threshold);
    goto out;
  }
  r = dynq_infer_ex(ctl->client, model, inputs, n_in, &iopts, &res);
  if (r < 0) {
    rc = call_failed(ctl, r);
    goto out;
  }
  rc = EXIT_OK;
  if (record != NULL && dynq__rec_write(&rec, inputs, n_in) < 0) rc = EXIT_FAIL;
  if (ctl->json) {
    printf("{\"outputs\": {");
    for (int i = 0; i < res.n_outputs; i++) {
      if (i) printf(", ");
      print_tensor_json(&res.outputs[i]);
    }
    printf("}, \"compute_us\": %" PRId64 "}\n", res.compute_us);
  } else {
    for (int i = 0; i < res.n_outputs; i++) print_tensor_human(&res.outputs[i]);
    printf("compute: %" PRId64 " us\n", res.compute_us);
  }
  if (outdir != NULL) {
    for (int i = 0; i < res.n_outputs; i++) {
      char fname[256], path[4096 + 300], err[512] = "";
      safe_file_name(fname, sizeof(fname), res.outputs[i].name);
      snprintf(path, sizeof(path), "%s/%s.npy", outdir, fname);
      if (dynq__npy_write(path, &res.outputs[i], err, sizeof(err)) < 0) {
        errx_msg("infer: %s", err);
        rc = EXIT_FAIL;
        continue;
      }
      if (!ctl->json) printf("wrote %s\n", path);
    }
  }

out:
  dynq_infer_result_free(&res);
  dynq_infer_result_free(&res_fp32);
  dynq__rec_close(&rec);
  for (int i = 0; i < n_in; i++) {
    dynq__io_tensor_free(&inputs[i]);
    free(names[i]);
  }
  return rc;
}

/* ---- health, stats, admin ---- */

static int cmd_health(ctl_t *ctl, int argc, char **argv) {
  dynq_health_t h;
  int r = no_args(ctl, argc, argv);
  if (r != EXIT_OK) return r;
  if ((r = ctl_connect(ctl)) != EXIT_OK) return r;
  r = dynq_health_get(ctl->client, &h);
  if (r < 0) return call_failed(ctl, r);
  enum { MAXQ = 16 };
  dynq_quality_t q[MAXQ];
  int nq = 0;
  r = dynq_health_quality(ctl->client, q, MAXQ, &nq);
  if (r < 0) return call_failed(ctl, r);
  int shown = nq < MAXQ ? nq : MAXQ;
  if (ctl->json) {
    printf("{\"live\": %s, \"ready\": %s, \"models\": %d, \"reason\": ",
           h.live ? "true" : "false", h.ready ? "true" : "false", h.models);
    json_str(stdout, h.reason);
    printf(", \"quality\": [");
    for (int i = 0; i < shown; i++) {
      printf("%s{\"model\": ", i ? ", " : "");
      json_str(stdout, q[i].model);
      printf(", \"rel_l2\": %.6g, \"alert\": %.6g, \"message\": ", q[i].rel_l2, q[i].alert);
      json_str(stdout, q[i].message);
      printf("}");
    }
    printf("]}\n");
  } else {
    printf("%-7s %s\n", "live:", h.live ? "yes" : "no");
    printf("%-7s %s", "ready:", h.ready ? "yes" : "no");
    if (h.reason[0]) printf(" (%s)", h.reason);
    printf("\n%-7s %d\n", "models:", h.models);
    /* Served, but drifting: worth a look, not a readiness failure. */
    for (int i = 0; i < shown; i++)
      printf("%-7s model '%s': INT8 relL2 %.4g above shadow_alert %.4g (%s)\n", "quality:",
             q[i].model, q[i].rel_l2, q[i].alert, q[i].message);
    if (nq > shown) printf("%-7s ... and %d more\n", "quality:", nq - shown);
  }
  return h.live && h.ready ? EXIT_OK : EXIT_FAIL;
}

static int cmd_stats(ctl_t *ctl, int argc, char **argv) {
  enum { TABLE, JSON, PROM } mode = ctl->json ? JSON : TABLE;
  dynq_stats_t st;
  int r;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0) {
      if (mode == PROM) goto both;
      mode = JSON;
    } else if (strcmp(argv[i], "--prometheus") == 0 || strcmp(argv[i], "-p") == 0) {
      if (mode == JSON) goto both;
      mode = PROM;
    } else {
      errx_msg("stats: unexpected argument '%s' (options: --json, --prometheus)", argv[i]);
      return EXIT_USAGE;
    }
  }
  if ((r = ctl_connect(ctl)) != EXIT_OK) return r;
  if (mode == JSON) {
    char *json = NULL;
    r = dynq_stats_json(ctl->client, &json);
    if (r < 0) return call_failed(ctl, r);
    printf("%s\n", json);
    free(json);
    return EXIT_OK;
  }
  r = dynq_stats(ctl->client, &st);
  if (r < 0) return call_failed(ctl, r);
  if (mode == PROM)
    dynq__prom_render(&st, stdout);
  else
    dynq__stats_table(&st, stdout);
  dynq_stats_free(&st);
  return EXIT_OK;

both:
  errx_msg("stats: --json and --prometheus exclude each other");
  return EXIT_USAGE;
}

/* NAME [PATH] arguments of load/unload/reload. */
static int admin_args(ctl_t *ctl, int argc, char **argv, int max_args) {
  if (argc < 2) {
    errx_msg("%s: missing NAME (usage: dynqctl %s NAME%s)", ctl->cmd, ctl->cmd,
             max_args > 1 ? " [PATH]" : "");
    return EXIT_USAGE;
  }
  if (argc > 1 + max_args) {
    errx_msg("%s: unexpected argument '%s'", ctl->cmd, argv[1 + max_args]);
    return EXIT_USAGE;
  }
  if (argv[1][0] == '\0' || (argc > 2 && argv[2][0] == '\0')) {
    errx_msg("%s: empty argument", ctl->cmd);
    return EXIT_USAGE;
  }
  return ctl_connect(ctl);
}

static void print_model_result(ctl_t *ctl, const char *name, const char *verb, int has_version,
                               uint64_t version) {
  if (ctl->json) {
    printf("{\"model\": ");
    json_str(stdout, name);
    if (has_version) printf(", \"version\": %" PRIu64, version);
    printf("}\n");
  } else if (has_version) {
    printf("%s %s (version %" PRIu64 ")\n", verb, name, version);
  } else {
    printf("%s %s\n", verb, name);
  }
}

/* Admin refusals get a hint on what to do. */
static int admin_failed(ctl_t *ctl, int r) {
  const char *m = dynq_client_errmsg(ctl->client);
  int peer = strstr(m, "admin") != NULL || strstr(m, "identify the peer") != NULL;
  call_failed(ctl, r);
  if (r != DYNQ_EDENIED) return EXIT_FAIL;
  /* EDENIED is either the peer check or a model path outside the model
   * directory; root needs no advice to become root. */
  if (!peer)
    fprintf(stderr, "dynqctl: hint: give a path relative to dynqd's model directory, "
                    "without '..'\n");
  else if (geteuid() != 0)
    fprintf(stderr, "dynqctl: hint: run as root, as dynqd's user, or as a member of its "
                    "admin group (admin_group in dynqd.conf)\n");
  else
    fprintf(stderr, "dynqctl: hint: dynqd does not see this root as root (dynqctl in a "
                    "user namespace or container?); it admits root, its own user and its "
                    "admin group as it sees the peer\n");
  return EXIT_FAIL;
}

static int cmd_load(ctl_t *ctl, int argc, char **argv) {
  uint64_t ver = 0;
  int r = admin_args(ctl, argc, argv, 2);
  if (r != EXIT_OK) return r;
  r = dynq_model_load(ctl->client, argv[1], argc > 2 ? argv[2] : NULL, &ver);
  if (r < 0) return admin_failed(ctl, r);
  print_model_result(ctl, argv[1], "loaded", 1, ver);
  return EXIT_OK;
}

static int cmd_unload(ctl_t *ctl, int argc, char **argv) {
  int r = admin_args(ctl, argc, argv, 1);
  if (r != EXIT_OK) return r;
  r = dynq_model_unload(ctl->client, argv[1]);
  if (r < 0) return admin_failed(ctl, r);
  print_model_result(ctl, argv[1], "unloaded", 0, 0);
  return EXIT_OK;
}

static int cmd_reload(ctl_t *ctl, int argc, char **argv) {
  uint64_t ver = 0;
  int r = admin_args(ctl, argc, argv, 1);
  if (r != EXIT_OK) return r;
  r = dynq_model_reload(ctl->client, argv[1], &ver);
  if (r < 0) return admin_failed(ctl, r);
  print_model_result(ctl, argv[1], "reloaded", 1, ver);
  return EXIT_OK;
}

/* ---- stream ---- */

#define MAX_BINDS 32
#define MAX_SETS 16
#define MAX_CHUNK (1u << 20)
#define STREAM_HUMAN_VALUES 8
#define MAX_STREAM_OUTPUTS 16

/* "--set NAME=VALUE": an int64 scalar when VALUE is an integer, else a
 * float32 scalar (e.g. sr=16000 for a VAD's sample-rate input). */
typedef struct set_input {
  char *name;      /* owned */
  int64_t i;
  float f;
  int is_int;
} set_input_t;

static int parse_set(const char *spec, set_input_t *ret) {
  const char *eq = strchr(spec, '=');
  char *end;
  if (eq == NULL || eq == spec || eq[1] == '\0') {
    errx_msg("stream: --set '%s': expected NAME=VALUE", spec);
    return -1;
  }
  errno = 0;
  ret->i = strtoll(eq + 1, &end, 10);
  if (errno == 0 && *end == '\0') {
    ret->is_int = 1;
  } else {
    double d;
    errno = 0;
    d = strtod(eq + 1, &end);
    if (errno != 0 || *end != '\0' || !isfinite(d) || fabs(d) > 3.4e38) {
      errx_msg("stream: --set '%s': VALUE must be an integer or a finite number", spec);
      return -1;
    }
    ret->is_int = 0;
    ret->f = (float)d;
  }
  ret->name = strndup(spec, (size_t)(eq - spec));
  if (ret->name == NULL) {
    errx_msg("stream: out of memory");
    return -1;
  }
  return 0;
}

/* "IN=OUT" -> two strdup'd names. */
static int parse_pair(const char *opt, const char *spec, char **ret_a, char **ret_b) {
  const char *eq = strchr(spec, '=');
  if (eq == NULL || eq == spec || eq[1] == '\0' || strchr(eq + 1, '=') != NULL) {
    errx_msg("stream: %s '%s': expected NAME=%s", opt, spec,
             strcmp(opt, "--bind") == 0 ? "OUTPUT" : "AUDIO");
    return -1;
  }
  *ret_a = strndup(spec, (size_t)(eq - spec));
  *ret_b = strdup(eq + 1);
  if (*ret_a == NULL || *ret_b == NULL) {
    free(*ret_a);
    free(*ret_b);
    errx_msg("stream: out of memory");
    return -1;
  }
  return 0;
}

static void print_stream_line(ctl_t *ctl, size_t index, double t, const dynq_tensor_t *o) {
  size_t numel = tensor_numel(o);
  if (ctl->json) {
    printf("{\"chunk\": %zu, \"time_s\": %.6f, \"output\": ", index, t);
    json_str(stdout, o->name);
    printf(", \"shape\": ");
    print_shape(stdout, o->rank, o->shape);
    printf(", \"values\": [");
    for (size_t i = 0; i < numel && o->data; i++) {
      if (i) fputs(", ", stdout);
      print_value(stdout, o->dtype, o->data, i, 1);
    }
    printf("]}\n");
  } else {
    printf("%6zu %10.3f ", index, t);
    for (size_t i = 0; i < numel && i < STREAM_HUMAN_VALUES && o->data; i++) {
      putchar(' ');
      print_value(stdout, o->dtype, o->data, i, 0);
    }
    if (numel > STREAM_HUMAN_VALUES) printf(" ... (%zu more)", numel - STREAM_HUMAN_VALUES);
    putchar('\n');
  }
}

/* A --set for an input the model does not have is dropped with a note: a
 * model quantized with dynq-quantize --set NAME=VALUE has NAME folded in
 * as a constant, and the same command line should work against either
 * build of the model.  EXIT_OK, or a failure of model.info. */
static int drop_absent_sets(ctl_t *ctl, const char *model, set_input_t *sets, int *n_sets) {
  dynq_model_info_t mi;
  int r = dynq_model_info(ctl->client, model, &mi), kept = 0;
  if (r < 0) return call_failed(ctl, r);
  for (int i = 0; i < *n_sets; i++) {
    int found = 0;
    for (int k = 0; k < mi.n_inputs && !found; k++)
      found = strcmp(mi.inputs[k].name, sets[i].name) == 0;
    if (found) {
      sets[kept++] = sets[i];
      continue;
    }
    fprintf(stderr, "dynqctl: stream: note: model '%s' has no input '%s' (fixed when it was "
                    "quantized with --set?); ignoring --set %s\n", model, sets[i].name,
            sets[i].name);
    free(sets[i].name);
  }
  for (int i = kept; i < *n_sets; i++) sets[i].name = NULL;
  *n_sets = kept;
  dynq_model_info_free(&mi);
  return EXIT_OK;
}

/* The human output's first lines: what is streamed and how, and what the
 * file was before it became mono at the model's rate. */
static void print_stream_header(const char *model, const char *in_name, const char *path,
                                const dynq__audio_t *a, unsigned long long chunk,
                                unsigned long long context, int precision,
                                const char *out_name) {
  printf("# %s: %s = %s (%u Hz, %.2f s", model, in_name, path, (unsigned)a->rate,
         (double)a->n / a->rate);
  if (a->file_rate != a->rate || a->channels != 1)
    printf("; from %s, %u Hz, %d channel%s", a->format, (unsigned)a->file_rate, a->channels,
           a->channels == 1 ? "" : "s");
  printf("), chunk %llu + context %llu samples, precision %s, output '%s'\n", chunk, context,
         precision == DYNQ_INFER_FP32 ? "fp32" : "int8", out_name);
  printf("%6s %10s  %s\n", "#chunk", "time_s", "values");
}

static int cmd_stream(ctl_t *ctl, int argc, char **argv) {
  static const struct option opts[] = {
    { "input", required_argument, NULL, 'i' },
    { "chunk", required_argument, NULL, 'c' },
    { "context", required_argument, NULL, 'x' },
    { "rate", required_argument, NULL, 'r' },
    { "bind", required_argument, NULL, 'b' },
    { "set", required_argument, NULL, 'S' },
    { "output", required_argument, NULL, 'O' },
    { "precision", required_argument, NULL, 'P' },
    { "json", no_argument, NULL, 'j' },
    { "record", required_argument, NULL, 'R' },
    { "compare", no_argument, NULL, 'C' },
    { "threshold", required_argument, NULL, 'T' },
    { NULL, 0, NULL, 0 },
  };
  const char *record = NULL;
  dynq__rec_t rec = { NULL, 0 };
  int compare = 0, have_fp32 = 0;
  uint64_t sid_fp32 = 0;
  double threshold = 0.5;
  dynq__cmp_t *sum = NULL;   /* [MAX_STREAM_OUTPUTS]: compare's totals per output */
  char *sum_names[MAX_STREAM_OUTPUTS];
  int n_sum = 0;
  char *in_name = NULL, *in_path = NULL, *binds[2 * MAX_BINDS], err[512] = "";
  int precision = DYNQ_INFER_DEFAULT;
  const char *model, *want_out = NULL;
  set_input_t sets[MAX_SETS];
  dynq_tensor_t inputs[1 + MAX_SETS];
  unsigned long long chunk = 512, context = 64, rate = 16000, v;
  int n_binds = 0, n_sets = 0, ch, rc = EXIT_USAGE, r, have_session = 0;
  dynq__audio_t wav;
  uint64_t sid = 0;
  float *window = NULL;
  size_t n_chunks;

  memset(sets, 0, sizeof(sets));
  memset(inputs, 0, sizeof(inputs));
  memset(&wav, 0, sizeof(wav));
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, "i:c:x:r:b:S:O:P:jR:CT:", opts, NULL)) != -1) {
    switch (ch) {
    case 'R':
      record = optarg;
      break;
    case 'C':
      compare = 1;
      break;
    case 'T':
      if (parse_threshold("stream", optarg, &threshold) < 0) goto out;
      break;
    case 'P':
      if (strcmp(optarg, "int8") == 0) {
        precision = DYNQ_INFER_INT8;
      } else if (strcmp(optarg, "fp32") == 0) {
        precision = DYNQ_INFER_FP32;
      } else {
        errx_msg("stream: --precision must be int8 or fp32, not '%s'", optarg);
        goto out;
      }
      break;
    case 'i':
      if (in_name != NULL) {
        errx_msg("stream: only one --input (the audio); give scalars with --set");
        goto out;
      }
      if (parse_pair("--input", optarg, &in_name, &in_path) < 0) goto out;
      break;
    case 'c':
    case 'x':
    case 'r':
      if (parse_ull(optarg, ch == 'x' ? 0 : 1, ch == 'r' ? DYNQ__AUDIO_MAX_RATE : MAX_CHUNK,
                    &v) < 0) {
        errx_msg("stream: --%s must be an integer from %d to %u, not '%s'",
                 ch == 'c' ? "chunk" : ch == 'x' ? "context" : "rate", ch == 'x' ? 0 : 1,
                 ch == 'r' ? DYNQ__AUDIO_MAX_RATE : MAX_CHUNK, optarg);
        goto out;
      }
      if (ch == 'c') chunk = v;
      else if (ch == 'x') context = v;
      else rate = v;
      break;
    case 'b':
      if (n_binds == MAX_BINDS) {
        errx_msg("stream: more than %d --bind", MAX_BINDS);
        goto out;
      }
      if (parse_pair("--bind", optarg, &binds[2 * n_binds], &binds[2 * n_binds + 1]) < 0)
        goto out;
      n_binds++;
      break;
    case 'S':
      if (n_sets == MAX_SETS) {
        errx_msg("stream: more than %d --set", MAX_SETS);
        goto out;
      }
      if (parse_set(optarg, &sets[n_sets]) < 0) goto out;
      n_sets++;
      break;
    case 'O':
      want_out = optarg;
      break;
    case 'j':
      ctl->json = 1;
      break;
    default:
      if (strchr("icxrbSORTP", optopt) != NULL && optopt != 0)
        errx_msg("stream: option '%s' needs an argument", argv[optind - 1]);
      else
        errx_msg("stream: unknown option '%s'", argv[optind - 1]);
      goto out;
    }
  }
  if (optind >= argc) {
    errx_msg("stream: missing MODEL (usage: dynqctl stream %s)", commands[10].args);
    goto out;
  }
  if (optind + 1 < argc) {
    errx_msg("stream: unexpected argument '%s'", argv[optind + 1]);
    goto out;
  }
  model = argv[optind];
  if (in_name == NULL) {
    errx_msg("stream: missing --input NAME=AUDIO");
    goto out;
  }
  for (int i = 0; i < n_sets; i++) {
    if (strcmp(sets[i].name, in_name) == 0) {
      errx_msg("stream: '%s' is both the audio --input and a --set", in_name);
      goto out;
    }
    for (int k = 0; k < i; k++)
      if (strcmp(sets[i].name, sets[k].name) == 0) {
        errx_msg("stream: --set '%s' given twice", sets[i].name);
        goto out;
      }
  }
  if (threshold != 0.5 && !compare) {
    errx_msg("stream: --threshold goes with --compare");
    goto out;
  }
  if (compare && precision != DYNQ_INFER_DEFAULT) {
    errx_msg("stream: --compare runs both precisions; drop --precision");
    goto out;
  }
  /* --rate is the model's rate: the file is converted to it, so a
   * recording at any rate and channel count streams as the model expects */
  r = dynq__audio_load(in_path, (uint32_t)rate, &wav, err, sizeof(err));
  if (r < 0) {
    errx_msg("stream: %s", err);
    goto out;
  }
  if (wav.n == 0) {
    errx_msg("stream: %s holds no samples", in_path);
    goto out;
  }
  window = calloc((size_t)(context + chunk), sizeof(float));
  if (window == NULL) {
    errx_msg("stream: out of memory");
    rc = EXIT_FAIL;
    goto out;
  }

  if ((rc = ctl_connect(ctl)) != EXIT_OK) goto out;
  ctl->streaming = 1;
  if (n_sets > 0 && (rc = drop_absent_sets(ctl, model, sets, &n_sets)) != EXIT_OK) goto out;
  r = dynq_session_open(ctl->client, model, (const char *const *)binds, n_binds, 0, &sid);
  if (r < 0) {
    rc = call_failed(ctl, r);
    goto out;
  }
  have_session = 1;
  if (compare) {
    /* the FP32 path needs its own state: a second session, same chunks */
    r = dynq_session_open(ctl->client, model, (const char *const *)binds, n_binds, 0, &sid_fp32);
    if (r < 0) {
      rc = call_failed(ctl, r);
      goto out;
    }
    have_fp32 = 1;
    sum = calloc(MAX_STREAM_OUTPUTS, sizeof(*sum));
    if (sum == NULL) {
      errx_msg("stream: out of memory");
      rc = EXIT_FAIL;
      goto out;
    }
  }
  if (record != NULL && dynq__rec_open(&rec, record) < 0) {
    rc = EXIT_USAGE;
    goto out;
  }

  inputs[0].name = in_name;
  inputs[0].dtype = DYNQ_FLOAT32;
  inputs[0].rank = 2;
  inputs[0].shape[0] = 1;
  inputs[0].shape[1] = (int64_t)(context + chunk);
  inputs[0].data = window;
  inputs[0].nbytes = (size_t)(context + chunk) * sizeof(float);
  for (int i = 0; i < n_sets; i++) {
    dynq_tensor_t *t = &inputs[1 + i];
    t->name = sets[i].name;
    t->rank = 0;
    t->dtype = sets[i].is_int ? DYNQ_INT64 : DYNQ_FLOAT32;
    t->data = sets[i].is_int ? (void *)&sets[i].i : (void *)&sets[i].f;
    t->nbytes = sets[i].is_int ? 8 : 4;
  }

  /* Chunk k covers samples [k*chunk, (k+1)*chunk), preceded by the
   * context samples before it (zeros before the start) and zero-padded
   * past the end, so every call has the same shape. */
  n_chunks = (wav.n + chunk - 1) / chunk;
  for (size_t k = 0; k < n_chunks; k++) {
    dynq_infer_result_t res;
    const dynq_tensor_t *o = NULL;
    long long start = (long long)(k * chunk) - (long long)context;
    for (size_t j = 0; j < context + chunk; j++) {
      long long s = start + (long long)j;
      window[j] = s >= 0 && (size_t)s < wav.n ? wav.samples[s] : 0.0f;
    }
    dynq_infer_opts_t so;
    dynq_infer_opts_init(&so);
    so.use_session = 1;
    so.session = sid;
    so.precision = compare ? DYNQ_INFER_INT8 : precision;
    r = dynq_infer_ex(ctl->client, NULL, inputs, 1 + n_sets, &so, &res);
    if (r < 0) {
      rc = call_failed(ctl, r);
      fprintf(stderr, "dynqctl: stream: stopped at chunk %zu of %zu\n", k, n_chunks);
      goto out;
    }
    if (record != NULL && dynq__rec_write(&rec, inputs, 1 + n_sets) < 0) {
      dynq_infer_result_free(&res);
      rc = EXIT_FAIL;
      goto out;
    }
    if (compare) {
      dynq_infer_result_t ref;
      so.session = sid_fp32;
      so.precision = DYNQ_INFER_FP32;
      r = dynq_infer_ex(ctl->client, NULL, inputs, 1 + n_sets, &so, &ref);
      if (r < 0) {
        dynq_infer_result_free(&res);
        rc = call_failed(ctl, r);
        fprintf(stderr, "dynqctl: stream: stopped at chunk %zu of %zu\n", k, n_chunks);
        goto out;
      }
      int shown = 0;
      for (int i = 0; i < res.n_outputs; i++) {
        const dynq_tensor_t *x = &res.outputs[i], *y = NULL;
        for (int j = 0; j < ref.n_outputs; j++)
          if (strcmp(ref.outputs[j].name, x->name) == 0) y = &ref.outputs[j];
        if (y == NULL || x->dtype != DYNQ_FLOAT32 || y->dtype != DYNQ_FLOAT32 ||
            x->nbytes != y->nbytes || x->data == NULL || y->data == NULL)
          continue;
        int si = 0;
        while (si < n_sum && strcmp(sum_names[si], x->name) != 0) si++;
        if (si == n_sum && n_sum < MAX_STREAM_OUTPUTS && (sum_names[si] = strdup(x->name)) != NULL)
          n_sum++;
        size_t row = x->rank > 0 ? (size_t)x->shape[x->rank - 1] : 1;
        dynq__cmp_t c;
        memset(&c, 0, sizeof(c));
        dynq__cmp_add(&c, x->data, y->data, x->nbytes / 4, row, threshold);
        if (si < n_sum) dynq__cmp_add(&sum[si], x->data, y->data, x->nbytes / 4, row, threshold);
        if (shown || (want_out != NULL ? strcmp(x->name, want_out) != 0 : i != 0)) continue;
        shown = 1;
        double t = (double)(k * chunk) / (double)rate;
        float xv = ((const float *)x->data)[0], yv = ((const float *)y->data)[0];
        if (ctl->json) {
          printf("{\"chunk\": %zu, \"time_s\": %.6f, \"output\": ", k, t);
          json_str(stdout, x->name);
          printf(", \"int8\": %.9g, \"fp32\": %.9g, \"max_abs\": %.9g, \"decision_changed\": %s}\n",
                 (double)xv, (double)yv, c.max_abs, c.thr_changed || c.argmax_changed ? "true" : "false");
        } else {
          printf("%6zu %10.3f  int8 %.6f  fp32 %.6f  max|d| %.3g%s\n", k, t, (double)xv, (double)yv,
                 c.max_abs, c.thr_changed || c.argmax_changed ? "  DECISION CHANGED" : "");
        }
      }
      if (!shown) {
        errx_msg("stream: the model has no float32 output '%s' to compare",
                 want_out ? want_out : "(first)");
        dynq_infer_result_free(&res);
        dynq_infer_result_free(&ref);
        rc = EXIT_FAIL;
        goto out;
      }
      dynq_infer_result_free(&ref);
      dynq_infer_result_free(&res);
      continue;
    }
    for (int i = 0; i < res.n_outputs; i++) {
      if (want_out == NULL || strcmp(res.outputs[i].name, want_out) == 0) {
        o = &res.outputs[i];
        break;
      }
    }
    if (o == NULL) {
      errx_msg("stream: the model has no output '%s'", want_out ? want_out : "(none)");
      dynq_infer_result_free(&res);
      rc = EXIT_FAIL;
      goto out;
    }
    if (k == 0 && !ctl->json)
      print_stream_header(model, in_name, in_path, &wav, chunk, context, precision, o->name);
    print_stream_line(ctl, k, (double)(k * chunk) / (double)rate, o);
    dynq_infer_result_free(&res);
  }
  rc = EXIT_OK;
  if (compare) {
    /* over the whole stream, every float32 output (state included) */
    if (ctl->json) printf("{\"summary\": {\"chunks\": %zu, \"threshold\": %.9g, \"outputs\": [",
                          n_chunks, threshold);
    else printf("summary over %zu chunks (INT8 path vs FP32 path):\n", n_chunks);
    for (int i = 0; i < n_sum; i++) {
      if (ctl->json && i) printf(", ");
      dynq__cmp_print(stdout, sum_names[i], &sum[i], ctl->json);
    }
    if (ctl->json) printf("]}}\n");
  }
  if (record != NULL && !ctl->json)
    fprintf(stderr, "dynqctl: stream: recorded %zu calls in %s (the session's state is not "
            "recorded: dynq-quantize --calibrate carries it)\n", n_chunks, record);

out:
  if (have_session) {
    /* a failure here after a success still leaves nothing behind: the
     * session dies with the connection (not detached) */
    r = dynq_session_close(ctl->client, sid);
    if (r < 0 && rc == EXIT_OK) rc = call_failed(ctl, r);
  }
  if (have_fp32) {
    r = dynq_session_close(ctl->client, sid_fp32);
    if (r < 0 && rc == EXIT_OK) rc = call_failed(ctl, r);
  }
  dynq__rec_close(&rec);
  for (int i = 0; i < n_sum; i++) free(sum_names[i]);
  free(sum);
  free(window);
  dynq__audio_free(&wav);
  free(in_name);
  free(in_path);
  for (int i = 0; i < 2 * n_binds; i++) free(binds[i]);
  for (int i = 0; i < n_sets; i++) free(sets[i].name);
  return rc;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
    { "socket", required_argument, NULL, 's' },
    { "json", no_argument, NULL, 'j' },
    { "timeout", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  const command_t *cmd;
  ctl_t ctl;
  int ch, rc;
  unsigned long long tmo;

  memset(&ctl, 0, sizeof(ctl));
  ctl.timeout_ms = -1;
  opterr = 0;
  /* '+': stop at the command word, its own options are parsed later. */
  while ((ch = getopt_long(argc, argv, "+s:jT:hV", opts, NULL)) != -1) {
    switch (ch) {
    case 's': ctl.socket = optarg; break;
    case 'j': ctl.json = 1; break;
    case 'T':
      if (parse_ull(optarg, 0, DYNQ_CLIENT_TIMEOUT_MAX_MS, &tmo) < 0) {
        errx_msg("--timeout must be a whole number of milliseconds from 0 (no limit) to %d, "
                 "not '%s'", DYNQ_CLIENT_TIMEOUT_MAX_MS, optarg);
        return EXIT_USAGE;
      }
      ctl.timeout_ms = (long long)tmo;
      break;
    case 'h': usage(stdout); return EXIT_OK;
    case 'V': printf("dynqctl %s\n", DYNQ_VERSION); return EXIT_OK;
    default:
      if (optopt == 's' || optopt == 'T')
        errx_msg("option '%s' needs an argument", argv[optind - 1]);
      else
        errx_msg("unknown option '%s' (try 'dynqctl --help')", argv[optind - 1]);
      return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  cmd = lookup_command(argv[optind]);
  if (cmd == NULL) return EXIT_USAGE;
  ctl.cmd = cmd->name;
  if (cmd->run != cmd_help && wants_help(argc - optind, argv + optind)) {
    command_usage(stdout, cmd);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
  }
  rc = cmd->run(&ctl, argc - optind, argv + optind);
  dynq_close(ctl.client);
  if (fflush(stdout) != 0 && rc == EXIT_OK) rc = EXIT_FAIL;
  return rc;
}
