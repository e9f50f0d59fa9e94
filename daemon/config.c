/*
 * dynqd configuration: every setting in one table (name, kind, bounds,
 * default, help), used both to parse the command line and to print the
 * usage, so the two never disagree.
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dynq-config.h"
#include "dynqd.h"

enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_LEVEL, OPT_FLAG };

typedef struct opt_def {
  const char *name;
  const char *arg;        /* metavar in usage; NULL for flags */
  enum opt_kind kind;
  size_t off;             /* offset into dynqd_config_t */
  long long min, max;     /* INT and SIZE bounds */
  const char *dflt;       /* shown in usage */
  const char *help;
} opt_def_t;

#define OFF(f) offsetof(dynqd_config_t, f)

static const opt_def_t opts[] = {
  {"socket", "PATH", OPT_STR, OFF(socket_path), 0, 0, "see below",
   "Unix socket to listen on (ignored under socket activation)"},
  {"models", "DIR", OPT_STR, OFF(models_dir), 0, 0, "none",
   "load every *.dynq file in DIR at start"},
  {"workers", "N", OPT_INT, OFF(workers), 1, 64, "number of CPUs",
   "inference worker threads"},
  {"queue", "N", OPT_INT, OFF(queue), 1, 1 << 20, "1024",
   "requests waiting for a worker; more are refused with EOVERLOAD"},
  {"max-frame", "BYTES", OPT_SIZE, OFF(max_frame), 64, (long long)1 << 32, "64M",
   "largest request frame (suffix K, M or G)"},
  {"max-inflight", "N", OPT_INT, OFF(max_inflight), 1, 1 << 16, "64",
   "requests in flight per connection before reading pauses"},
  {"max-output", "BYTES", OPT_SIZE, OFF(max_output), 4096, ((long long)1 << 32) - 1, "256M",
   "unsent response bytes per connection before it is closed"},
  {"max-conns", "N", OPT_INT, OFF(max_conns), 1, 1 << 20, "1024",
   "open client connections"},
  {"log-level", "LEVEL", OPT_LEVEL, OFF(log_level), 0, 7, "info",
   "error, warning, notice, info or debug"},
  {"help", NULL, OPT_FLAG, 0, 0, 0, NULL, "show this help and exit"},
  {"version", NULL, OPT_FLAG, 0, 0, 0, NULL, "show the version and exit"},
};
#define N_OPTS ((int)(sizeof(opts) / sizeof(opts[0])))

static void usage(FILE *f) {
  fprintf(f, "Usage: dynqd [OPTION]...\n"
             "Serve INT8-quantized models over msgpack-RPC on a Unix socket.\n\n");
  for (int i = 0; i < N_OPTS; i++) {
    char left[64];
    snprintf(left, sizeof(left), "--%s%s%s", opts[i].name,
             opts[i].arg ? " " : "", opts[i].arg ? opts[i].arg : "");
    fprintf(f, "  %-22s %s", left, opts[i].help);
    if (opts[i].dflt) fprintf(f, " (default: %s)", opts[i].dflt);
    fputc('\n', f);
  }
  fprintf(f, "\nThe default socket is $RUNTIME_DIRECTORY/dynqd.sock, else\n"
             "$XDG_RUNTIME_DIR/dynq/dynqd.sock, else /run/dynq/dynqd.sock.\n"
             "Environment: DYNQ_KERNEL=NAME forces an INT8 kernel; LISTEN_FDS/\n"
             "LISTEN_PID (socket activation) and NOTIFY_SOCKET are honoured.\n"
             "SIGTERM/SIGINT drain in-flight requests, then exit.\n");
}

static int default_workers(void) {
  cpu_set_t set;
  int n = 0;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n <= 0) n = 1;
  return n > 64 ? 64 : n;
}

/* Integer with an optional K/M/G (binary) suffix; -1 on junk. */
static int parse_num(const char *s, int allow_suffix, long long *ret) {
  if (*s == '\0' || *s == '-' || *s == '+') return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s) return -1;
  unsigned shift = 0;
  if (allow_suffix && *end != '\0') {
    switch (*end) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      default: return -1;
    }
    end++;
  }
  if (*end != '\0') return -1;
  if (v > (1ULL << 62) >> shift) return -1;
  *ret = (long long)(v << shift);
  return 0;
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "dynqd: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n");
  usage(stderr);
  return -1;
}

int dynqd__config_parse(dynqd_config_t *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->workers = default_workers();
  cfg->queue = 1024;
  cfg->max_frame = dynq__scan_limits_default.max_frame;
  cfg->max_depth = dynq__scan_limits_default.max_depth;
  cfg->max_elems = dynq__scan_limits_default.max_elems;
  cfg->max_inflight = 64;
  cfg->max_output = (size_t)256 << 20;
  cfg->max_conns = 1024;
  cfg->max_tensor_elems = DYNQ_MAX_ELEMS;
  cfg->drain_timeout_s = 30;
  cfg->log_level = 6;

  struct option lo[N_OPTS + 1];
  for (int i = 0; i < N_OPTS; i++) {
    lo[i].name = opts[i].name;
    lo[i].has_arg = opts[i].arg ? required_argument : no_argument;
    lo[i].flag = NULL;
    lo[i].val = 1000 + i;
  }
  memset(&lo[N_OPTS], 0, sizeof(lo[N_OPTS]));

  opterr = 0;
  optind = 1;
  for (;;) {
    int idx = -1;
    int c = getopt_long(argc, argv, ":", lo, &idx);
    if (c == -1) break;
    if (c == '?')
      return bad("unknown option '%s'", argv[optind - 1]);
    if (c == ':')
      return bad("option '%s' needs a value", argv[optind - 1]);
    const opt_def_t *o = &opts[c - 1000];
    char *base = (char *)cfg;
    long long v;
    switch (o->kind) {
      case OPT_FLAG:
        if (strcmp(o->name, "help") == 0) {
          usage(stdout);
        } else {
          printf("dynqd %s (protocol %d)\n", DYNQ_VERSION, DYNQ_PROTOCOL_VERSION);
        }
        return 1;
      case OPT_STR: {
        char **dst = (char **)(base + o->off);
        if (optarg[0] == '\0') return bad("--%s needs a non-empty value", o->name);
        free(*dst);
        *dst = strdup(optarg);
        if (*dst == NULL) return bad("out of memory");
        break;
      }
      case OPT_INT:
      case OPT_SIZE:
        if (parse_num(optarg, o->kind == OPT_SIZE, &v) != 0 || v < o->min || v > o->max) {
          char range[96];
          snprintf(range, sizeof(range), "expected %lld..%lld", o->min, o->max);
          fprintf(stderr, "dynqd: --%s: invalid value '%s' (%s)\n\n", o->name, optarg, range);
          usage(stderr);
          return -1;
        }
        if (o->kind == OPT_INT)
          *(int *)(base + o->off) = (int)v;
        else
          *(size_t *)(base + o->off) = (size_t)v;
        break;
      case OPT_LEVEL: {
        int lv = dynqd__log_level_from_name(optarg);
        if (lv < 0) return bad("--log-level: unknown level '%s'", optarg);
        cfg->log_level = lv;
        break;
      }
    }
  }
  if (optind < argc)
    return bad("unexpected argument '%s'", argv[optind]);
  return 0;
}

void dynqd__config_free(dynqd_config_t *cfg) {
  if (cfg == NULL) return;
  free(cfg->socket_path);
  free(cfg->models_dir);
  cfg->socket_path = cfg->models_dir = NULL;
}
