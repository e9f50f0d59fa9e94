/*
 * dynqd configuration: every setting in one table (key, command-line name,
 * kind, bounds, default, reloadable, help).  The same table parses the
 * config file (`key = value`, `#` comments, `[batch.MODEL]` sections),
 * parses the command line (which overrides the file), prints the usage,
 * and decides what SIGHUP may change, so none of them can disagree.
 *
 * Order: built-in defaults, then the file (--config PATH, else
 * $sysconfdir/dynq/dynqd.conf when it exists: /etc/dynq with
 * --sysconfdir=/etc), then the command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq-config.h"
#include "dynqd.h"

#ifdef DYNQD_DEFAULT_CONFIG  /* from meson: $sysconfdir/dynq/dynqd.conf */
#define DEFAULT_CONFIG DYNQD_DEFAULT_CONFIG
#else
#define DEFAULT_CONFIG "/etc/dynq/dynqd.conf"
#endif
#define MAX_LINE 4096              /* bytes per config line */
#define MAX_FILE ((long)DYNQD_CONFIG_MAX_BYTES) /* bytes per config file */

size_t dynqd__config_bytes_read;

enum opt_kind { OPT_STR, OPT_INT, OPT_SIZE, OPT_U64, OPT_LEVEL, OPT_BOOL, OPT_REAL };

typedef struct opt_def {
  const char *key;        /* config file key */
  const char *cli;        /* --name on the command line */
  const char *arg;        /* metavar in usage */
  enum opt_kind kind;
  size_t off;             /* offset into dynqd_config_t */
  long long min, max;     /* INT/SIZE/U64/REAL bounds */
  const char *dflt;       /* parsed like a user value; NULL: computed */
  int reloadable;         /* SIGHUP may change it */
  const char *help;
} opt_def_t;

#define OFF(f) offsetof(dynqd_config_t, f)

static const opt_def_t opts[] = {
  {"socket", "socket", "PATH", OPT_STR, OFF(socket_path), 0, 0, NULL, 0,
   "Unix socket to listen on (ignored under socket activation)"},
  {"models_dir", "models", "DIR", OPT_STR, OFF(models_dir), 0, 0, NULL, 0,
   "serve every *.dynq file in DIR (model paths are confined to it)"},
  {"workers", "workers", "N", OPT_INT, OFF(workers), 1, 64, NULL, 0,
   "inference worker threads (default: number of CPUs)"},
  {"queue", "queue", "N", OPT_INT, OFF(queue), 1, 1 << 20, "1024", 0,
   "requests waiting for a worker; more are refused with EOVERLOAD"},
  {"max_frame", "max-frame", "BYTES", OPT_SIZE, OFF(max_frame), 64,
   (long long)1 << 32, "64M", 1, "largest request frame (suffix K, M or G)"},
  {"max_depth", "max-depth", "N", OPT_INT, OFF(max_depth), 2, 64, "32", 1,
   "msgpack nesting depth of a frame"},
  {"max_elems", "max-elems", "N", OPT_U64, OFF(max_elems), 1, (long long)1 << 32,
   "1M", 1, "declared array elements and map entries per frame"},
  {"max_inflight", "max-inflight", "N", OPT_INT, OFF(max_inflight), 1, 1 << 16,
   "64", 1, "requests in flight per connection before reading pauses"},
  {"max_output", "max-output", "BYTES", OPT_SIZE, OFF(max_output), 4096,
   ((long long)1 << 32) - 1, "256M", 1,
   "unsent response bytes per connection before it is closed"},
  {"max_conns", "max-conns", "N", OPT_INT, OFF(max_conns), 1, 1 << 20, "1024", 1,
   "open client connections"},
  {"max_tensor_elems", "max-tensor-elems", "N", OPT_U64, OFF(max_tensor_elems), 1,
   (long long)1 << 31, "2G", 1, "elements of one request tensor"},
  {"max_value_bytes", "max-value-bytes", "BYTES", OPT_U64, OFF(max_value_bytes), 0,
   (long long)1 << 50, "0", 1,
   "bytes of one tensor a run computes, intermediate or output (0: an eighth of physical "
   "memory); a request needing more is ELIMIT"},
  {"warmup_max_bytes", "warmup-max-bytes", "BYTES", OPT_U64, OFF(warmup_max_bytes), 0,
   (long long)1 << 40, "64M", 1,
   "a model whose warm-up inputs would take more is served without warm-up (0: no cap)"},
  {"max_run_ms", "max-run", "MS", OPT_INT, OFF(max_run_ms), 0, 86400000, "60000", 1,
   "a run (one request, or a batch run together) still computing after this long is "
   "stopped and answered ELIMIT, so no request holds a worker for ever (0: no limit)"},
  {"drain_timeout_s", "drain-timeout", "SECONDS", OPT_INT, OFF(drain_timeout_s), 1,
   3600, "30", 1, "SIGTERM: longest wait for in-flight requests"},
  {"max_sessions", "max-sessions", "N", OPT_INT, OFF(max_sessions), 0, 1 << 20,
   "1024", 1, "open sessions over all connections"},
  {"session_idle_timeout_ms", "session-idle-timeout", "MS", OPT_INT,
   OFF(session_idle_timeout_ms), 1, 86400000, "60000", 1,
   "default and cap of a session's idle timeout"},
  {"max_shm_regions", "max-shm-regions", "N", OPT_INT, OFF(max_shm_regions), 0,
   1 << 16, "64", 1, "shared-memory regions per connection (0: shm.register off)"},
  {"max_shm_bytes", "max-shm-bytes", "BYTES", OPT_U64, OFF(max_shm_bytes), 4096,
   (long long)1 << 40, "1G", 1, "bytes of one shared-memory region"},
  {"max_conns_per_uid", "max-conns-per-uid", "N", OPT_INT, OFF(max_conns_per_uid), 0,
   1 << 20, "256", 1, "open connections of one uid; admin peers exempt (0: no cap)"},
  {"idle_timeout_s", "idle-timeout", "SECONDS", OPT_INT, OFF(idle_timeout_s), 0, 86400,
   "600", 1, "close a connection with nothing in flight and no complete request for "
   "this long (0: never)"},
  {"max_buffers_total", "max-buffers", "BYTES", OPT_U64, OFF(max_buffers_total), 1 << 20,
   (long long)1 << 40, "512M", 1, "read buffers, unsent output and queued requests of all "
   "connections; a request that would pass it is refused (EOVERLOAD), and past it the "
   "connections holding most are closed"},
  {"max_shm_regions_total", "max-shm-regions-total", "N", OPT_INT,
   OFF(max_shm_regions_total), 0, 1 << 20, "4096", 1,
   "shared-memory regions mapped over all connections"},
  {"max_shm_regions_per_uid", "max-shm-regions-per-uid", "N", OPT_INT,
   OFF(max_shm_regions_per_uid), 0, 1 << 20, "1024", 1,
   "shared-memory regions of one uid; admin peers exempt (0: no cap)"},
  {"max_shm_mapped_total", "max-shm-mapped", "BYTES", OPT_U64, OFF(max_shm_mapped_total),
   4096, (long long)1 << 50, "64G", 1, "bytes of shared memory mapped over all connections"},
  {"max_shm_mapped_per_uid", "max-shm-mapped-per-uid", "BYTES", OPT_U64,
   OFF(max_shm_mapped_per_uid), 0, (long long)1 << 50, "16G", 1,
   "bytes of shared memory mapped for one uid; admin peers exempt (0: no cap)"},
  {"max_sessions_per_uid", "max-sessions-per-uid", "N", OPT_INT, OFF(max_sessions_per_uid),
   0, 1 << 20, "256", 1, "open sessions created by one uid; admin peers exempt (0: no cap)"},
  {"batch_max", "batch-max", "N", OPT_INT, OFF(batch_max), 1, 4096, "1", 0,
   "dynamic batching: requests merged per run, all models (1: off)"},
  {"batch_delay_us", "batch-delay", "US", OPT_INT, OFF(batch_delay_us), 0, 1000000,
   "0", 0, "dynamic batching: longest wait to fill a batch"},
  {"coalesce_max", "coalesce-max", "N", OPT_INT, OFF(coalesce_max), 1, 4096, "32", 0,
   "requests for one model already waiting together run as one batch of up to N, "
   "without waiting for more, when the model's batching is off (1: never)"},
  {"worker_spin_us", "worker-spin", "US", OPT_INT, OFF(worker_spin_us), 0, 1000, "0", 0,
   "an idle worker polls for work this long before sleeping (0: sleep at once)"},
  {"inline_max_us", "inline-max", "US", OPT_INT, OFF(inline_max_us), 0, 1000, "50", 0,
   "a request predicted to compute within US runs on the loop thread when nothing "
   "else is waiting, and under load the loop runs the first batch of such requests "
   "of each iteration itself (0: always on a worker)"},
  {"loop_spin_us", "loop-spin", "US", OPT_INT, OFF(loop_spin_us), 0, 1000, "50", 0,
   "after a request or answer, the loop polls this long before sleeping while no "
   "job is on a worker (0: sleep at once)"},
  {"loop_spin_busy", "loop-spin-busy", "0|1", OPT_INT, OFF(loop_spin_busy), 0, 1, "0", 0,
   "1: the loop spin goes on while jobs are on workers too (it yields the CPU "
   "between polls)"},
  {"shadow_rate", "shadow-rate", "FRACTION", OPT_REAL, OFF(shadow_rate), 0, 1, "0", 1,
   "fraction of INT8 requests re-run on the FP32 path on spare capacity, for the "
   "error statistics (0: off, 1: every request; per model: [batch.NAME] shadow_rate)"},
  {"shadow_alert", "shadow-alert", "RELL2", OPT_REAL, OFF(shadow_alert), 0, 1000000, "0", 1,
   "a shadowed request whose INT8 answer is further than this relL2 from FP32 logs a "
   "warning and shows in health (0: off)"},
  {"shadow_window_s", "shadow-window", "SECONDS", OPT_INT, OFF(shadow_window_s), 1, 86400,
   "60", 1, "shadow alerts log at most once per window per model"},
  {"admin_group", "admin-group", "GROUP", OPT_STR, OFF(admin_group), 0, 0, NULL, 1,
   "members may call model.load/unload/reload (root and dynqd's uid always can)"},
  {"log_level", "log-level", "LEVEL", OPT_LEVEL, OFF(log_level), 0, 7, "info", 1,
   "error, warning, notice, info or debug"},
  {"log_rate", "log-rate", "N", OPT_INT, OFF(log_rate), 0, 1000000, "100", 1,
   "log lines per second per message class, then one summary (0: unlimited)"},
  {"watchdog", "watchdog", "BOOL", OPT_BOOL, OFF(watchdog), 0, 1, "yes", 0,
   "send WATCHDOG=1 when systemd sets WATCHDOG_USEC"},
};
#define N_OPTS ((int)(sizeof(opts) / sizeof(opts[0])))

/* Which keys the command line set (bit i = opts[i]): SIGHUP leaves them. */
static uint64_t cli_set;
_Static_assert(sizeof(opts) / sizeof(opts[0]) <= 64, "cli_set is a 64-bit mask");

static void usage(FILE *f) {
  fprintf(f, "Usage: dynqd [OPTION]...\n"
             "Serve INT8-quantized models over msgpack-RPC on a Unix socket.\n\n"
             "  %-28s %s\n  %-28s %s\n  %-28s %s\n  %-28s %s\n",
             "--config PATH", "config file (default " DEFAULT_CONFIG " if it exists)",
             "-n, --check", "check the configuration and the model directory, then exit",
             "--help", "show this help and exit", "--version", "show the version and exit");
  for (int i = 0; i < N_OPTS; i++) {
    char left[64];
    snprintf(left, sizeof(left), "--%s %s", opts[i].cli, opts[i].arg);
    fprintf(f, "  %-28s %s", left, opts[i].help);
    if (opts[i].dflt) fprintf(f, " (default: %s)", opts[i].dflt);
    fputc('\n', f);
  }
  /* The keys that are not the option with dashes as underscores, from the
   * table, so the sentence cannot go stale. */
  fputs("\nEach option is also a config file key (listed below): dashes become\n"
        "underscores, except", f);
  int col = 19, n_odd = 0;  /* "underscores, except" */
  for (int i = 0; i < N_OPTS; i++) {
    char under[64];
    snprintf(under, sizeof(under), "%s", opts[i].cli);
    for (char *c = under; *c; c++)
      if (*c == '-') *c = '_';
    if (strcmp(under, opts[i].key) == 0) continue;
    int len = (int)(strlen(opts[i].cli) + strlen(opts[i].key)) + 8;  /* ", --X is Y" */
    if (col + len > 78) {
      fputs(n_odd++ ? ",\n" : "\n", f);
      col = 0;
    } else {
      fputs(n_odd++ ? ", " : " ", f);
    }
    col += fprintf(f, "--%s is %s", opts[i].cli, opts[i].key);
  }
  fputs(".\nKeys:", f);
  for (int i = 0; i < N_OPTS; i++)
    fprintf(f, "%s%s%s", i % 6 ? " " : "\n  ", opts[i].key, opts[i].reloadable ? "*" : "");
  fprintf(f, "\n  (* = applied on SIGHUP)  and per model, in a [batch.MODEL] section:\n"
             "  max_batch, max_delay_us, axes (NAME:AXIS,... batch axis per input/output),\n"
             "  shadow_rate, warmup (NAME:DIMS,... input shapes of the load-time warm-up).\n"
             "\nThe default socket is $RUNTIME_DIRECTORY/dynqd.sock, else\n"
             "$XDG_RUNTIME_DIR/dynq/dynqd.sock, else /run/dynq/dynqd.sock.\n"
             "Environment: DYNQ_KERNEL=NAME forces an INT8 kernel; LISTEN_FDS/\n"
             "LISTEN_PID (socket activation), NOTIFY_SOCKET and WATCHDOG_USEC are honoured.\n"
             "SIGTERM/SIGINT drain in-flight requests, then exit; SIGHUP re-reads the\n"
             "config file and rescans the model directory.\n");
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

static int parse_bool(const char *s) {
  static const char *const t[] = {"1", "yes", "true", "on"};
  static const char *const f[] = {"0", "no", "false", "off"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, t[i]) == 0) return 1;
    if (strcasecmp(s, f[i]) == 0) return 0;
  }
  return -1;
}

/* A finite decimal number, nothing after it. */
static int parse_real(const char *s, double *ret) {
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (s[0] == '\0' || errno != 0 || *end != '\0' || !isfinite(d)) return -1;
  *ret = d;
  return 0;
}

/* Store one value; on failure writes why into err and returns -1. */
static int set_value(dynqd_config_t *cfg, const opt_def_t *o, const char *val,
                     char *err, size_t errlen) {
  char *base = (char *)cfg;
  long long v;
  switch (o->kind) {
    case OPT_STR: {
      char **dst = (char **)(base + o->off);
      if (val[0] == '\0') {
        snprintf(err, errlen, "needs a non-empty value");
        return -1;
      }
      char *copy = strdup(val);
      if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
      }
      free(*dst);
      *dst = copy;
      return 0;
    }
    case OPT_INT:
    case OPT_SIZE:
    case OPT_U64:
      if (parse_num(val, o->kind != OPT_INT, &v) != 0 || v < o->min || v > o->max) {
        snprintf(err, errlen, "invalid value '%.64s' (expected %lld..%lld%s)", val,
                 o->min, o->max, o->kind != OPT_INT ? ", suffix K, M or G allowed" : "");
        return -1;
      }
      if (o->kind == OPT_INT) *(int *)(base + o->off) = (int)v;
      else if (o->kind == OPT_SIZE) *(size_t *)(base + o->off) = (size_t)v;
      else if (o->off == OFF(max_tensor_elems)) *(int64_t *)(base + o->off) = v;
      else *(uint64_t *)(base + o->off) = (uint64_t)v;
      return 0;
    case OPT_LEVEL: {
      int lv = dynqd__log_level_from_name(val);
      if (lv < 0) {
        snprintf(err, errlen, "unknown level '%.64s' (error, warning, notice, info, "
                 "debug or 0-7)", val);
        return -1;
      }
      *(int *)(base + o->off) = lv;
      return 0;
    }
    case OPT_BOOL: {
      int b = parse_bool(val);
      if (b < 0) {
        snprintf(err, errlen, "invalid value '%.64s' (expected yes or no)", val);
        return -1;
      }
      *(int *)(base + o->off) = b;
      return 0;
    }
    case OPT_REAL: {
      double d;
      if (parse_real(val, &d) != 0 || d < (double)o->min || d > (double)o->max) {
        snprintf(err, errlen, "invalid value '%.64s' (expected a number from %lld to %lld, "
                 "e.g. 0.01)", val, o->min, o->max);
        return -1;
      }
      *(double *)(base + o->off) = d;
      return 0;
    }
  }
  return -1;
}

static void set_defaults(dynqd_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  char err[128];
  for (int i = 0; i < N_OPTS; i++)
    if (opts[i].dflt) set_value(cfg, &opts[i], opts[i].dflt, err, sizeof(err));
  cfg->workers = default_workers();
  /* The protocol scanner's own defaults stay the single source. */
  cfg->max_frame = dynq__scan_limits_default.max_frame;
  cfg->max_depth = dynq__scan_limits_default.max_depth;
  cfg->max_elems = dynq__scan_limits_default.max_elems;
  cfg->max_tensor_elems = DYNQ_MAX_ELEMS;
}

int64_t dynqd__value_cap(const dynqd_config_t *cfg) {
  if (cfg->max_value_bytes > 0) return (int64_t)cfg->max_value_bytes;
  static int64_t eighth;  /* physical memory does not change under us */
  if (eighth == 0) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    eighth = pages > 0 && size > 0 ? (int64_t)pages * size / 8 : (int64_t)1 << 30;
  }
  return eighth;
}

/* Names are used in protocol strings, log lines and config sections
 * ([batch.NAME]): keep them tame.  Here, in the base layer, because the
 * config's sections and the registry both need the rule. */
int dynqd__model_name_ok(const char *s, size_t n) {
  if (n == 0 || n > 63 || s[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int find_key(const char *key) {
  for (int i = 0; i < N_OPTS; i++)
    if (strcmp(opts[i].key, key) == 0) return i;
  return -1;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                   s[n - 1] == '\n'))
    s[--n] = '\0';
  return s;
}

/* A `NAME:VALUE[,NAME:VALUE...]` list (axes, warmup): each item split at
 * its last ':', names 1..127 characters and given once, at most 64 items.
 * names and vals point into work, which the caller frees. */
#define MAX_PAIRS 64
typedef struct pairs {
  char *work;
  char *names[MAX_PAIRS], *vals[MAX_PAIRS];
  int n;
} pairs_t;

static int split_pairs(const char *key, const char *form, const char *example,
                       const char *val, pairs_t *p, char *err, size_t errlen) {
  memset(p, 0, sizeof(*p));
  p->work = strdup(val);
  if (p->work == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char *save = NULL;
  for (char *item = strtok_r(p->work, ",", &save); item != NULL;
       item = strtok_r(NULL, ",", &save)) {
    item = trim(item);
    char *colon = strrchr(item, ':');
    if (colon == NULL || colon == item) {
      snprintf(err, errlen, "%s: '%.64s' is not %s (e.g. %s = %s)", key, item, form, key,
               example);
      return -1;
    }
    *colon = '\0';
    char *name = trim(item);
    if (name[0] == '\0' || strlen(name) > 127) {
      snprintf(err, errlen, "%s: a name must be 1..127 characters", key);
      return -1;
    }
    for (int k = 0; k < p->n; k++) {
      if (strcmp(p->names[k], name) == 0) {
        snprintf(err, errlen, "%s: '%.64s' is given twice", key, name);
        return -1;
      }
    }
    if (p->n == MAX_PAIRS) {
      snprintf(err, errlen, "%s: at most %d entries", key, MAX_PAIRS);
      return -1;
    }
    p->names[p->n] = name;
    p->vals[p->n++] = trim(colon + 1);
  }
  if (p->n == 0) {
    snprintf(err, errlen, "%s: empty (expected %s[,%s...], e.g. %s = %s)", key, form, form,
             key, example);
    return -1;
  }
  return 0;
}

/* Copies of the n names of p (NULL when out of memory, err set). */
static char **dup_names(const pairs_t *p, char *err, size_t errlen) {
  char **names = calloc(MAX_PAIRS, sizeof(*names));
  for (int k = 0; names != NULL && k < p->n; k++) {
    names[k] = strdup(p->names[k]);
    if (names[k] == NULL) {
      for (int q = 0; q < k; q++) free(names[q]);
      free(names);
      names = NULL;
    }
  }
  if (names == NULL) snprintf(err, errlen, "out of memory");
  return names;
}

static void free_names(char **names, int n) {
  for (int k = 0; names != NULL && k < n; k++) free(names[k]);
  free(names);
}

/* `NAME:AXIS[,NAME:AXIS...]` into rule (replacing what it held). */
static int axes_set(dynqd_batch_rule_t *r, const char *val, char *err, size_t errlen) {
  pairs_t p;
  char *text = NULL, **names = NULL;
  int *vals = NULL;
  if (split_pairs("axes", "NAME:AXIS", "input:0,state:1,output:0,stateN:1", val, &p, err,
                  errlen) != 0)
    goto fail;
  vals = calloc(MAX_PAIRS, sizeof(*vals));
  text = strdup(val);
  if (vals == NULL || text == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (int k = 0; k < p.n; k++) {
    long long v;
    if (parse_num(p.vals[k], 0, &v) != 0 || v < 0 || v >= DYNQ_MAX_RANK) {
      snprintf(err, errlen, "axes: '%.64s' has axis '%.16s' (expected 0..%d)", p.names[k],
               p.vals[k], DYNQ_MAX_RANK - 1);
      goto fail;
    }
    vals[k] = (int)v;
  }
  if ((names = dup_names(&p, err, errlen)) == NULL) goto fail;
  free_names(r->axis_names, r->n_axes);
  free(r->axis_vals);
  free(r->axes_text);
  r->axes_text = text;
  r->axis_names = names;
  r->axis_vals = vals;
  r->n_axes = p.n;
  free(p.work);
  return 0;

fail:
  free(vals);
  free(text);
  free(p.work);
  return -1;
}

/* `NAME:DIMS[,NAME:DIMS...]`, DIMS as 1x512 or `scalar`, into rule. */
static int warmup_set(dynqd_batch_rule_t *r, const char *val, char *err, size_t errlen) {
  pairs_t p;
  char *text = NULL, **names = NULL;
  int *ranks = NULL;
  int64_t(*dims)[DYNQ_MAX_RANK] = NULL;
  if (split_pairs("warmup", "NAME:DIMS", "input:1x512,state:2x1x128", val, &p, err,
                  errlen) != 0)
    goto fail;
  ranks = calloc(MAX_PAIRS, sizeof(*ranks));
  dims = calloc(MAX_PAIRS, sizeof(*dims));
  text = strdup(val);
  if (ranks == NULL || dims == NULL || text == NULL) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  for (int k = 0; k < p.n; k++) {
    char *v = p.vals[k];
    if (strcmp(v, "scalar") == 0) continue;  /* rank 0 */
    int rank = 0;
    for (const char *d = v;; ) {
      char num[24];
      size_t len = strcspn(d, "x");
      long long n = -1;
      if (len > 0 && len < sizeof(num)) {
        memcpy(num, d, len);
        num[len] = '\0';
        if (parse_num(num, 0, &n) != 0) n = -1;
      }
      if (rank == DYNQ_MAX_RANK || n < 0 || n > DYNQ_MAX_ELEMS) {
        snprintf(err, errlen, "warmup: '%.64s' has shape '%.64s' (expected up to %d "
                 "dimensions like 1x512, each 0..%lld, or 'scalar')", p.names[k], v,
                 DYNQ_MAX_RANK, (long long)DYNQ_MAX_ELEMS);
        goto fail;
      }
      dims[k][rank++] = n;
      if (d[len] == '\0') break;
      d += len + 1;
    }
    ranks[k] = rank;
  }
  if ((names = dup_names(&p, err, errlen)) == NULL) goto fail;
  free_names(r->warm_names, r->n_warm);
  free(r->warm_rank);
  free(r->warm_dims);
  free(r->warmup_text);
  r->warmup_text = text;
  r->warm_names = names;
  r->warm_rank = ranks;
  r->warm_dims = dims;
  r->n_warm = p.n;
  free(p.work);
  return 0;

fail:
  free(ranks);
  free(dims);
  free(text);
  free(p.work);
  return -1;
}

static int batch_set(dynqd_config_t *cfg, const char *model, const char *key,
                     const char *val, char *err, size_t errlen) {
  long long v = 0;
  int is_batch = strcmp(key, "max_batch") == 0, is_axes = strcmp(key, "axes") == 0;
  int is_shadow = strcmp(key, "shadow_rate") == 0, is_warmup = strcmp(key, "warmup") == 0;
  double rate = 0;
  if (!is_batch && !is_axes && !is_shadow && !is_warmup && strcmp(key, "max_delay_us") != 0) {
    snprintf(err, errlen, "unknown key in a [batch.%s] section (max_batch, "
             "max_delay_us, axes, shadow_rate, warmup)", model);
    return -1;
  }
  if (is_shadow && (parse_real(val, &rate) != 0 || rate < 0 || rate > 1)) {
    snprintf(err, errlen, "invalid value '%.64s' (expected a number from 0 to 1)", val);
    return -1;
  }
  long long max = is_batch ? 4096 : 1000000;
  if (!is_axes && !is_shadow && !is_warmup &&
      (parse_num(val, 0, &v) != 0 || v < (is_batch ? 1 : 0) || v > max)) {
    snprintf(err, errlen, "invalid value '%.64s' (expected %d..%lld)", val,
             is_batch ? 1 : 0, max);
    return -1;
  }
  int i;
  for (i = 0; i < cfg->n_batch_rules; i++)
    if (strcmp(cfg->batch_rules[i].model, model) == 0) break;
  if (i == cfg->n_batch_rules) {
    if (cfg->n_batch_rules >= 1024) {
      snprintf(err, errlen, "too many [batch.*] sections (at most 1024)");
      return -1;
    }
    dynqd_batch_rule_t *nb = realloc(cfg->batch_rules, (size_t)(i + 1) * sizeof(*nb));
    if (nb == NULL) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    cfg->batch_rules = nb;
    memset(&nb[i], 0, sizeof(nb[i]));
    nb[i].model = strdup(model);
    if (nb[i].model == NULL) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    /* Unset keys of a section take the global defaults. */
    nb[i].max_batch = cfg->batch_max;
    nb[i].max_delay_us = cfg->batch_delay_us;
    nb[i].shadow_rate = -1;
    cfg->n_batch_rules++;
  }
  if (is_axes) return axes_set(&cfg->batch_rules[i], val, err, errlen);
  if (is_warmup) return warmup_set(&cfg->batch_rules[i], val, err, errlen);
  if (is_shadow) {
    cfg->batch_rules[i].shadow_rate = rate;
    return 0;
  }
  if (is_batch) cfg->batch_rules[i].max_batch = (int)v;
  else cfg->batch_rules[i].max_delay_us = (int)v;
  return 0;
}

/* The whole file in a NUL-terminated buffer (malloc'd), read through one
 * fd: O_NONBLOCK so that a FIFO or a device put in its place cannot block
 * the open, fstat on that fd so the type checked is the type read, and at
 * most MAX_FILE + 1 bytes read whatever the file claims (/dev/zero never
 * ends).  0, 1 when missing_ok and the file does not exist, -1 after
 * printing why. */
static int slurp(const char *path, int missing_ok, char **ret_buf, size_t *ret_len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (missing_ok && errno == ENOENT) return 1;
    fprintf(stderr, "dynqd: cannot read config file %s: %s\n", path, strerror(errno));
    return -1;
  }
  char *buf = NULL;
  struct stat st;
  dynqd__config_bytes_read = 0;
  if (fstat(fd, &st) != 0) {
    fprintf(stderr, "dynqd: cannot read config file %s: %s\n", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    fprintf(stderr, "dynqd: config file %s is not a regular file (a %s); give the path "
            "of a plain file\n", path,
            S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "FIFO" :
            S_ISCHR(st.st_mode) ? "character device" : S_ISBLK(st.st_mode) ? "block device" :
            S_ISSOCK(st.st_mode) ? "socket" : "special file");
    goto fail;
  }
  buf = malloc((size_t)MAX_FILE + 2);
  if (buf == NULL) {
    fprintf(stderr, "dynqd: out of memory reading config file %s\n", path);
    goto fail;
  }
  size_t len = 0;
  while (len <= (size_t)MAX_FILE) {  /* one byte past the cap proves it is too big */
    ssize_t r = read(fd, buf + len, (size_t)MAX_FILE + 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      fprintf(stderr, "dynqd: cannot read config file %s: %s\n", path, strerror(errno));
      goto fail;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  dynqd__config_bytes_read = len;
  if (len > (size_t)MAX_FILE) {
    fprintf(stderr, "dynqd: config file %s is larger than %ld bytes\n", path, MAX_FILE);
    goto fail;
  }
  const char *nul = memchr(buf, '\0', len);
  if (nul != NULL) {
    int lineno = 1;
    for (const char *p = buf; p < nul; p++) lineno += *p == '\n';
    fprintf(stderr, "dynqd: %s:%d: NUL byte at offset %zu (a config file is text)\n",
            path, lineno, (size_t)(nul - buf));
    goto fail;
  }
  buf[len] = '\0';
  close(fd);
  *ret_buf = buf;
  *ret_len = len;
  return 0;
fail:
  free(buf);
  close(fd);
  return -1;
}

/* Parse the file into cfg.  missing_ok: a missing file is not an error.
 * Errors are printed as "PATH:LINE: key 'K': why". */
static int parse_file(dynqd_config_t *cfg, const char *path, int missing_ok) {
  char *text = NULL;
  size_t text_len = 0;
  int rc = slurp(path, missing_ok, &text, &text_len);
  if (rc != 0) return rc > 0 ? 0 : -1;
  char line[MAX_LINE + 2];
  char section[80] = "";
  int lineno = 0;
  int set_on[N_OPTS];
  memset(set_on, 0, sizeof(set_on));
  for (size_t pos = 0; pos < text_len;) {
    lineno++;
    const char *nl = memchr(text + pos, '\n', text_len - pos);
    size_t len = nl ? (size_t)(nl - (text + pos)) + 1 : text_len - pos;
    if (len - (nl != NULL) > MAX_LINE) {
      fprintf(stderr, "dynqd: %s:%d: line longer than %d bytes\n", path, lineno, MAX_LINE);
      goto bad;
    }
    memcpy(line, text + pos, len);
    line[len] = '\0';
    pos += len;
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';') continue;
    if (*s == '[') {
      char *end = strchr(s, ']');
      if (end == NULL || trim(end + 1)[0] != '\0') {
        fprintf(stderr, "dynqd: %s:%d: malformed section header '%.64s' "
                "(expected [batch.MODEL])\n", path, lineno, s);
        goto bad;
      }
      *end = '\0';
      char *name = trim(s + 1);
      if (strncmp(name, "batch.", 6) != 0 ||
          !dynqd__model_name_ok(name + 6, strlen(name + 6))) {
        fprintf(stderr, "dynqd: %s:%d: unknown section '[%.64s]' (the only "
                "sections are [batch.MODEL])\n", path, lineno, name);
        goto bad;
      }
      snprintf(section, sizeof(section), "%s", name + 6);
      continue;
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      fprintf(stderr, "dynqd: %s:%d: expected 'key = value', got '%.64s'\n", path,
              lineno, s);
      goto bad;
    }
    *eq = '\0';
    char *key = trim(s);
    char *val = trim(eq + 1);
    /* A comment after the value needs whitespace before '#'. */
    for (char *h = val; (h = strchr(h, '#')) != NULL; h++)
      if (h > val && (h[-1] == ' ' || h[-1] == '\t')) {
        *h = '\0';
        val = trim(val);
        break;
      }
    size_t vl = strlen(val);
    if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
      val[vl - 1] = '\0';
      val++;
    }
    if (*key == '\0') {
      fprintf(stderr, "dynqd: %s:%d: missing key before '='\n", path, lineno);
      goto bad;
    }
    char err[256];
    if (section[0]) {
      if (batch_set(cfg, section, key, val, err, sizeof(err)) != 0) {
        fprintf(stderr, "dynqd: %s:%d: key '%.64s': %s\n", path, lineno, key, err);
        goto bad;
      }
      continue;
    }
    int i = find_key(key);
    if (i < 0) {
      fprintf(stderr, "dynqd: %s:%d: key '%.64s': unknown key (dynqd --help lists "
              "them)\n", path, lineno, key);
      goto bad;
    }
    if (set_on[i]) {
      fprintf(stderr, "dynqd: %s:%d: key '%s': already set on line %d\n", path, lineno,
              key, set_on[i]);
      goto bad;
    }
    set_on[i] = lineno;
    if (set_value(cfg, &opts[i], val, err, sizeof(err)) != 0) {
      fprintf(stderr, "dynqd: %s:%d: key '%s': %s\n", path, lineno, key, err);
      goto bad;
    }
  }
  goto out;
bad:
  rc = -1;
out:
  free(text);
  return rc;
}

static int bad_cli(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_cli(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "dynqd: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n\n");
  usage(stderr);
  return -1;
}

enum { O_CONFIG = 2000, O_CHECK, O_HELP, O_VERSION };

int dynqd__config_parse(dynqd_config_t *cfg, int argc, char **argv) {
  set_defaults(cfg);
  cli_set = 0;

  struct option lo[N_OPTS + 5];
  for (int i = 0; i < N_OPTS; i++) {
    lo[i].name = opts[i].cli;
    lo[i].has_arg = required_argument;
    lo[i].flag = NULL;
    lo[i].val = 1000 + i;
  }
  lo[N_OPTS] = (struct option){"config", required_argument, NULL, O_CONFIG};
  lo[N_OPTS + 1] = (struct option){"check", no_argument, NULL, O_CHECK};
  lo[N_OPTS + 2] = (struct option){"help", no_argument, NULL, O_HELP};
  lo[N_OPTS + 3] = (struct option){"version", no_argument, NULL, O_VERSION};
  memset(&lo[N_OPTS + 4], 0, sizeof(lo[0]));

  /* Pass 1: --config, -n, --help, --version; pass 2: the rest over the file. */
  const char *config = NULL;
  for (int pass = 1; pass <= 2; pass++) {
    opterr = 0;
    optind = 0;  /* full re-initialisation of getopt */
    for (;;) {
      int idx = -1;
      int c = getopt_long(argc, argv, ":n", lo, &idx);
      if (c == -1) break;
      if (c == '?')
        return bad_cli("unknown option '%s'", argv[optind - 1]);
      if (c == ':')
        return bad_cli("option '%s' needs a value", argv[optind - 1]);
      if (pass == 1) {
        if (c == O_HELP) {
          usage(stdout);
          return 1;
        }
        if (c == O_VERSION) {
          printf("dynqd %s (protocol %d)\n", DYNQ_VERSION, DYNQ_PROTOCOL_VERSION);
          return 1;
        }
        if (c == O_CONFIG) config = optarg;
        if (c == 'n' || c == O_CHECK) cfg->check_only = 1;
        continue;
      }
      if (c < 1000 || c >= 1000 + N_OPTS) continue;
      const opt_def_t *o = &opts[c - 1000];
      char err[256];
      if (set_value(cfg, o, optarg, err, sizeof(err)) != 0)
        return bad_cli("--%s: %s", o->cli, err);
      cli_set |= (uint64_t)1 << (c - 1000);
    }
    if (pass == 1) {
      if (optind < argc) return bad_cli("unexpected argument '%s'", argv[optind]);
      if (config != NULL && config[0] == '\0')
        return bad_cli("--config needs a non-empty path");
      cfg->config_path = strdup(config ? config : DEFAULT_CONFIG);
      if (cfg->config_path == NULL) return bad_cli("out of memory");
      cfg->config_optional = config == NULL;
      if (parse_file(cfg, cfg->config_path, cfg->config_optional) != 0) return -1;
    }
  }
  return 0;
}

void dynqd__config_free(dynqd_config_t *cfg) {
  if (cfg == NULL) return;
  for (int i = 0; i < N_OPTS; i++)
    if (opts[i].kind == OPT_STR) {
      char **p = (char **)((char *)cfg + opts[i].off);
      free(*p);
      *p = NULL;
    }
  free(cfg->config_path);
  cfg->config_path = NULL;
  for (int i = 0; i < cfg->n_batch_rules; i++) {
    dynqd_batch_rule_t *r = &cfg->batch_rules[i];
    free(r->model);
    free_names(r->axis_names, r->n_axes);
    free(r->axis_vals);
    free(r->axes_text);
    free_names(r->warm_names, r->n_warm);
    free(r->warm_rank);
    free(r->warm_dims);
    free(r->warmup_text);
  }
  free(cfg->batch_rules);
  cfg->batch_rules = NULL;
  cfg->n_batch_rules = 0;
}

/* Value of opts[i] in cfg as text, for comparisons and log lines. */
static void show(const dynqd_config_t *cfg, int i, char *buf, size_t n) {
  const char *base = (const char *)cfg;
  const opt_def_t *o = &opts[i];
  switch (o->kind) {
    case OPT_STR: {
      const char *s = *(char *const *)(base + o->off);
      snprintf(buf, n, "%s", s ? s : "(unset)");
      break;
    }
    case OPT_INT: case OPT_LEVEL: case OPT_BOOL:
      snprintf(buf, n, "%d", *(const int *)(base + o->off));
      break;
    case OPT_SIZE:
      snprintf(buf, n, "%zu", *(const size_t *)(base + o->off));
      break;
    case OPT_U64:
      snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)(base + o->off));
      break;
    case OPT_REAL:
      snprintf(buf, n, "%.17g", *(const double *)(base + o->off));
      break;
  }
}

static int same_text(const char *a, const char *b) {
  return (a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0);
}

int dynqd__config_reload(dynqd_config_t *cfg) {
  dynqd_config_t fresh;
  set_defaults(&fresh);
  /* A --config file must exist now as at start-up (gone, it is an error,
   * not the defaults); only the default path may be absent. */
  int have_file = cfg->config_path != NULL && access(cfg->config_path, F_OK) == 0;
  if (cfg->config_path == NULL ||
      parse_file(&fresh, cfg->config_path, cfg->config_optional) != 0) {
    log_err("SIGHUP: config file %s has errors (see above); keeping the current "
            "configuration", cfg->config_path ? cfg->config_path : "(none)");
    dynqd__config_free(&fresh);
    return -1;
  }
  int changed = 0;
  for (int i = 0; i < N_OPTS; i++) {
    if (cli_set & ((uint64_t)1 << i)) continue;  /* the command line wins */
    char a[256], b[256];
    show(cfg, i, a, sizeof(a));
    show(&fresh, i, b, sizeof(b));
    if (strcmp(a, b) == 0) continue;
    if (!opts[i].reloadable) {
      log_warn("SIGHUP: %s changed (%s -> %s) but needs a restart; ignored",
               opts[i].key, a, b);
      continue;
    }
    const opt_def_t *o = &opts[i];
    char *dst = (char *)cfg + o->off, *src = (char *)&fresh + o->off;
    switch (o->kind) {
      case OPT_STR: {
        char **d = (char **)dst, **s = (char **)src;
        free(*d);
        *d = *s;
        *s = NULL;
        break;
      }
      case OPT_INT: case OPT_LEVEL: case OPT_BOOL:
        memcpy(dst, src, sizeof(int));
        break;
      case OPT_SIZE:
        memcpy(dst, src, sizeof(size_t));
        break;
      case OPT_U64:
        memcpy(dst, src, sizeof(uint64_t));
        break;
      case OPT_REAL:
        memcpy(dst, src, sizeof(double));
        break;
    }
    log_notice("SIGHUP: %s = %s (was %s)", o->key, b, a);
    changed++;
  }
  /* The sections are fixed after start-up: model loads read them on the
   * thread pool (the warm-up shapes) without a lock. */
  int bsame = fresh.n_batch_rules == cfg->n_batch_rules;
  for (int i = 0; bsame && i < fresh.n_batch_rules; i++) {
    const dynqd_batch_rule_t *f = &fresh.batch_rules[i], *c = &cfg->batch_rules[i];
    bsame = strcmp(f->model, c->model) == 0 && f->max_batch == c->max_batch &&
            f->max_delay_us == c->max_delay_us && f->shadow_rate == c->shadow_rate &&
            same_text(f->axes_text, c->axes_text) &&
            same_text(f->warmup_text, c->warmup_text);
  }
  if (!bsame) log_warn("SIGHUP: [batch.*] sections changed but need a restart; ignored");
  log_info("SIGHUP: %s %s (%d change%s applied)",
           have_file ? "configuration re-read from" : "no config file at", cfg->config_path,
           changed, changed == 1 ? "" : "s");
  dynqd__config_free(&fresh);
  return 0;
}

const dynqd_batch_rule_t *dynqd__batch_rule(const dynqd_config_t *cfg, const char *model) {
  const dynqd_batch_rule_t *r = NULL;
  for (int i = 0; i < cfg->n_batch_rules; i++)
    if (cfg->batch_rules[i].model != NULL && strcmp(cfg->batch_rules[i].model, model) == 0)
      r = &cfg->batch_rules[i];
  return r;
}

void dynqd__batch_config(const dynqd_config_t *cfg, const char *model, int *ret_max,
                         int *ret_delay_us) {
  int mx = cfg->batch_max, dl = cfg->batch_delay_us;
  const dynqd_batch_rule_t *r = dynqd__batch_rule(cfg, model);
  if (r != NULL) {
    mx = r->max_batch;
    dl = r->max_delay_us;
  }
  *ret_max = mx > 1 ? mx : 0;
  *ret_delay_us = dl > 0 ? dl : 0;
}
