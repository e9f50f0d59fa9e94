/*
 * dynqd's entry point: arguments and config, `-n`, the engine (kernel
 * choice, OpenBLAS set-up), then the server (server.c) on one libuv loop.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "dynqd.h"
#include "engine.h"

int main(int argc, char **argv) {
  dynqd_config_t cfg;
  dynqd_server_t srv;
  uv_loop_t loop;
  int rc;

  rc = dynqd__config_parse(&cfg, argc, argv);
  if (rc != 0) {
    dynqd__config_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  dynqd__log_init(cfg.log_level);
  dynqd__log_configure(cfg.log_level, cfg.log_rate);
  if (cfg.check_only) {
    rc = dynqd__check_config(&cfg);
    dynqd__config_free(&cfg);
    return rc;
  }
  signal(SIGPIPE, SIG_IGN);  /* a client gone mid-write is an EPIPE, not a death */
  if (dynqd__registry_guard_install() != 0)
    log_warn("cannot install the SIGBUS handler: a model file cut short while "
             "loaded will stop dynqd");

  const char *kmsg = NULL;
  const char *kenv = getenv("DYNQ_KERNEL");
  if (dynq__engine_init(kenv, &kmsg) != 0) {
    log_err("cannot select an INT8 kernel (DYNQ_KERNEL=%s): %s",
            kenv ? kenv : "", kmsg ? kmsg : "unknown reason");
    dynqd__config_free(&cfg);
    return 1;
  }
  log_notice("dynqd %s: kernel %s (%s), openblas core %s, %d workers", DYNQ_VERSION,
             dynq__engine_kernel_name(), dynq__engine_kernel_isa(), dynq__engine_blas_core(),
             cfg.workers);

  rc = uv_loop_init(&loop);
  if (rc != 0) {
    log_err("cannot create the event loop: %s", uv_strerror(rc));
    dynqd__config_free(&cfg);
    return 1;
  }
  int code = 1;
  rc = dynqd__server_init(&srv, &loop, &cfg);
  if (rc == 0) {
    code = dynqd__server_run(&srv);
  } else if (rc < 0 && rc > -4096) {
    log_err("start-up failed: %s", strerror(-rc));
  } else {
    log_err("start-up failed: %s", dynq_strerror(rc));
  }
  dynqd__server_fini(&srv);
  uv_loop_close(&loop);
  dynqd__config_free(&cfg);
  return code;
}
