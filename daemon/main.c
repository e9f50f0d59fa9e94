/*
 * dynqd's entry point: arguments and config, `-n`, the engine (kernel
 * choice, OpenBLAS set-up), then the server (server.c) on one libuv loop.
 */
#include <cblas.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dynq-config.h"
#include "dynq/errors.h"
#include "dynqd.h"

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
  if (dynq__kernels_init(kenv, &kmsg) != 0) {
    log_err("cannot select an INT8 kernel (DYNQ_KERNEL=%s): %s",
            kenv ? kenv : "", kmsg ? kmsg : "unknown reason");
    dynqd__config_free(&cfg);
    return 1;
  }
  /* Several workers call OpenBLAS at once: each call must stay on its thread. */
  openblas_set_num_threads(1);
  /* OpenBLAS sets up its buffers on the first call (4-27 ms measured here):
   * pay that now rather than in the first FP32 request's latency. */
  {
    float a[16] = {0}, b[16] = {0}, c[16];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 4, 4, 4, 1.0f, a, 4, b, 4, 0.0f, c, 4);
  }
  const char *core = openblas_get_corename();
  log_notice("dynqd %s: kernel %s (%s), openblas core %s, %d workers", DYNQ_VERSION,
             dynq__kernel()->name, dynq__kernel()->isa ? dynq__kernel()->isa : "",
             core ? core : "unknown", cfg.workers);

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
