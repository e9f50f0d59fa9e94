/*
 * libdynqclient shared-memory tensors: creating a sealed memfd, handing it
 * to dynqd with SCM_RIGHTS (shm.register) and dropping the region again.
 * The region's bytes are the caller's to fill; tensors refer to them
 * through dynq_infer_ex()'s input_shm/output_shm (api.c).
 */
#include "client-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int dynq_shm_create(size_t size, int *ret_fd, void **ret_ptr) {
  void *p = MAP_FAILED;
  int fd = -1, r;

  if (ret_fd == NULL || ret_ptr == NULL || size == 0 || size > (size_t)INT64_MAX)
    return -EINVAL;
  /* ALLOW_SEALING: dynqd refuses a region that could shrink under it
   * (a shrink would turn its reads into SIGBUS). */
  fd = memfd_create("dynq-tensor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  if (ftruncate(fd, (off_t)size) != 0) {
    r = -errno;
    goto fail;
  }
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
    r = -errno;
    goto fail;
  }
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    r = -errno;
    goto fail;
  }
  *ret_fd = fd;
  *ret_ptr = p;
  return 0;

fail:
  close(fd);
  return r;
}

void dynq_shm_destroy(int fd, void *ptr, size_t size) {
  if (ptr != NULL && ptr != MAP_FAILED && size > 0) munmap(ptr, size);
  if (fd >= 0) close(fd);
}

int dynq_shm_register(dynq_client_t *c, int fd, uint64_t size,
                      uint64_t *ret_region) {
  dynq__p_shm_register_t p;
  dynq__wbuf_t w;
  dynq__rpc_msg_t m;
  dynq__obj_t reg;
  uint64_t region;
  uint32_t id;
  int r;

  if (c == NULL || ret_region == NULL) return -EINVAL;
  c->errmsg[0] = '\0';
  if (fd < 0) return dynq__client_fail(c, -EBADF, "shm.register: no file descriptor");
  if (size == 0) return dynq__client_fail(c, DYNQ_EPARAMS, "shm.register: size is 0");
  memset(&p, 0, sizeof(p));
  p.size = size;
  p.has_size = 1;
  dynq__wbuf_init(&w);
  id = dynq__client_next_id(c);
  dynq__w_request(&w, id, DYNQ_M_shm_register, &p);
  r = dynq__client_call_fd(c, &w, id, NULL, 0, fd, &m);
  dynq__wbuf_free(&w);
  if (r < 0) return r;
  reg = dynq__obj_get(m.result, "region");
  if (dynq__obj_kind(m.result) != DYNQ_OBJ_MAP || dynq__obj_is_absent(reg) ||
      dynq__get_u64(reg, &region) < 0) {
    dynq__rpc_free(&m);
    return dynq__bad_field(c, "shm.register", "region");
  }
  dynq__rpc_free(&m);
  *ret_region = region;
  return 0;
}

int dynq_shm_unregister(dynq_client_t *c, uint64_t region) {
  dynq__p_shm_unregister_t p;
  dynq__rpc_msg_t m;
  int r;

  if (c == NULL) return -EINVAL;
  memset(&p, 0, sizeof(p));
  p.region = region;
  p.has_region = 1;
  r = dynq__client_rpc(c, DYNQ_M_shm_unregister, &p, &m);
  if (r < 0) return r;
  dynq__rpc_free(&m);
  return 0;
}
