/*
 * Shared-memory tensors: regions a client registers by passing a sealed
 * memfd (SCM_RIGHTS) with its shm.register frame, and tensor references
 * {region, offset, size} into them for infer inputs and outputs_shm.
 *
 * Receiving the fd: connections are libuv IPC pipes (uv_pipe_init(.., 1)),
 * so libuv's own recvmsg collects SCM_RIGHTS fds and queues them on the
 * handle.  libuv 1.44 hands a pending fd out only through uv_accept() into
 * a stream handle (uv_pipe_pending_type() says UV_UNKNOWN_HANDLE for a
 * memfd, but uv_accept into a uv_pipe_t still just adopts the fd), so we
 * accept it into a throw-away uv_pipe_t, dup the fd and close that handle.
 * This is done at the top of every read callback, while reading is active,
 * so libuv's re-arming of POLLIN in uv_accept never outlives a read stop.
 * The fds are queued per connection in arrival order; each shm.register
 * claims the oldest.  An fd travels with the first byte of its frame, so by
 * the time that frame is complete its fd is queued.
 *
 * Safety: the memfd must carry F_SEAL_SHRINK, so the client cannot shrink
 * it under our mapping (a SIGBUS on the worker otherwise).  Offsets and
 * sizes are checked for overflow against the region.  A region is owned by
 * its connection and refcounted by the jobs that use it (loop thread
 * only): shm.unregister or a closing connection just drops the list's ref,
 * and a running request keeps the mapping until it is back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "dynqd.h"

#define DEFAULT_MAX_BYTES ((uint64_t)1 << 30)

/* 0 turns shm.register off (config.c sets the default). */
static int max_regions(const dynqd_config_t *cfg) { return cfg->max_shm_regions; }

static uint64_t max_bytes(const dynqd_config_t *cfg) {
  return cfg->max_shm_bytes > 0 ? cfg->max_shm_bytes : DEFAULT_MAX_BYTES;
}

static void on_tmp_close(uv_handle_t *h) { free(h); }

void dynqd__shm_take_fds(dynqd_conn_t *c) {
  while (uv_pipe_pending_count(&c->pipe) > 0) {
    uv_pipe_t *tmp = malloc(sizeof(*tmp));
    if (tmp == NULL) return;  /* libuv keeps the fd queued; it closes it with the conn */
    uv_pipe_init(c->srv->loop, tmp, 0);
    int rc = uv_accept((uv_stream_t *)&c->pipe, (uv_stream_t *)tmp);
    int fd = -1;
    uv_os_fd_t ofd;
    if (rc == 0 && uv_fileno((uv_handle_t *)tmp, &ofd) == 0)
      fd = fcntl(ofd, F_DUPFD_CLOEXEC, 0);
    uv_close((uv_handle_t *)tmp, on_tmp_close);  /* closes libuv's copy */
    if (fd < 0) continue;
    if (c->n_fds == (int)(sizeof(c->fds) / sizeof(c->fds[0]))) {
      log_info("conn %llu: more than %d file descriptors sent without a "
               "shm.register to claim them; closing the extra one",
               (unsigned long long)c->id, c->n_fds);
      close(fd);
      continue;
    }
    c->fds[c->n_fds++] = fd;
  }
}

void dynqd__shm_unref(dynqd_shm_t *r) {
  if (r == NULL || --r->refs > 0) return;
  if (r->base != NULL) munmap(r->base, (size_t)r->size);
  r->srv->n_shm--;
  r->srv->shm_bytes -= r->size;
  free(r);
}

void dynqd__shm_conn_closed(dynqd_conn_t *c) {
  for (int i = 0; i < c->n_fds; i++) close(c->fds[i]);
  c->n_fds = 0;
  dynqd_shm_t *r = c->regions;
  c->regions = NULL;
  c->n_regions = 0;
  while (r != NULL) {
    dynqd_shm_t *n = r->next;
    r->next = NULL;
    dynqd__shm_unref(r);
    r = n;
  }
}

static int get_uint(dynq__obj_t o, uint64_t *ret) {
  int64_t v;
  if (dynq__obj_int(o, &v) != 0 || v < 0) return DYNQ_EPARAMS;
  *ret = (uint64_t)v;
  return 0;
}

void dynqd__m_shm_register(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  dynqd_server_t *s = c->srv;
  int fd = -1;
  dynqd_shm_t *r = NULL;
  uint64_t size = 0;
  /* The fd (if any) belongs to this frame: claim it first so an error
   * below does not leave it to be claimed by the next register. */
  if (c->n_fds > 0) {
    fd = c->fds[0];
    memmove(c->fds, c->fds + 1, (size_t)(c->n_fds - 1) * sizeof(c->fds[0]));
    c->n_fds--;
  }
  if (dynq__obj_kind(params) == DYNQ_OBJ_ARRAY && dynq__obj_len(params) == 1)
    params = dynq__obj_at(params, 0);
  if (get_uint(dynq__obj_get(params, "size"), &size) != 0 || size == 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "shm.register: params.size must be a positive integer "
                           "(bytes of the region)");
    goto fail;
  }
  if (fd < 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "shm.register: no file descriptor came with the frame (send "
                           "one memfd with SCM_RIGHTS in the same sendmsg as the frame's "
                           "first byte)");
    goto fail;
  }
  if (size > max_bytes(s->cfg)) {
    dynqd__conn_send_error(c, msgid, DYNQ_ELIMIT,
                           "shm.register: size %llu exceeds the %llu-byte region limit",
                           (unsigned long long)size,
                           (unsigned long long)max_bytes(s->cfg));
    goto fail;
  }
  if (c->n_regions >= max_regions(s->cfg)) {
    dynqd__conn_send_error(c, msgid, DYNQ_ELIMIT,
                           "shm.register: this connection already has %d regions (limit "
                           "%d); shm.unregister some first", c->n_regions,
                           max_regions(s->cfg));
    goto fail;
  }
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_ESEAL,
                           "shm.register: the file descriptor cannot carry seals (%s); "
                           "use memfd_create(..., MFD_ALLOW_SEALING) and add F_SEAL_SHRINK",
                           strerror(errno));
    goto fail;
  }
  if (!(seals & F_SEAL_SHRINK)) {
    dynqd__conn_send_error(c, msgid, DYNQ_ESEAL,
                           "shm.register: the memfd lacks F_SEAL_SHRINK (fcntl(fd, "
                           "F_ADD_SEALS, F_SEAL_SHRINK) before sending it)");
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "shm.register: the file descriptor is not a regular memfd");
    goto fail;
  }
  if ((uint64_t)st.st_size < size) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "shm.register: the memfd is %lld bytes, smaller than size %llu",
                           (long long)st.st_size, (unsigned long long)size);
    goto fail;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    dynqd__conn_send_error(c, msgid, -ENOMEM, "shm.register: out of memory");
    goto fail;
  }
  r->writable = 1;
  void *base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED && (errno == EPERM || errno == EACCES)) {
    /* F_SEAL_WRITE or a read-only fd: inputs only. */
    r->writable = 0;
    base = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
  }
  if (base == MAP_FAILED) {
    int e = errno;
    dynqd__conn_send_error(c, msgid, -e, "shm.register: cannot map %llu bytes: %s",
                           (unsigned long long)size, strerror(e));
    goto fail;
  }
  close(fd);
  fd = -1;
  r->base = base;
  r->size = size;
  r->refs = 1;
  r->srv = s;
  r->id = ++s->next_shm_id;
  r->next = c->regions;
  c->regions = r;
  c->n_regions++;
  s->n_shm++;
  s->shm_bytes += size;
  log_debug("conn %llu: shm region %llu: %llu bytes%s", (unsigned long long)c->id,
            (unsigned long long)r->id, (unsigned long long)size,
            r->writable ? "" : " (read-only)");

  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "region");
  dynq__w_uint(&w, r->id);
  dynqd__conn_send_wbuf(c, &w);
  return;

fail:
  free(r);
  if (fd >= 0) close(fd);
}

void dynqd__m_shm_unregister(dynqd_conn_t *c, uint32_t msgid, dynq__obj_t params) {
  uint64_t id;
  if (dynq__obj_kind(params) == DYNQ_OBJ_ARRAY && dynq__obj_len(params) == 1)
    params = dynq__obj_at(params, 0);
  if (get_uint(dynq__obj_get(params, "region"), &id) != 0) {
    dynqd__conn_send_error(c, msgid, DYNQ_EPARAMS,
                           "shm.unregister: params.region must be a region id");
    return;
  }
  dynqd_shm_t **pp = &c->regions;
  while (*pp != NULL && (*pp)->id != id) pp = &(*pp)->next;
  if (*pp == NULL) {
    dynqd__conn_send_error(c, msgid, DYNQ_ENOREGION,
                           "no shared-memory region %llu on this connection",
                           (unsigned long long)id);
    return;
  }
  dynqd_shm_t *r = *pp;
  *pp = r->next;
  r->next = NULL;
  c->n_regions--;
  dynqd__shm_unref(r);  /* running requests keep their own refs */
  dynq__wbuf_t w;
  dynq__wbuf_init(&w);
  dynq__w_result_head(&w, msgid);
  dynq__w_map(&w, 1);
  dynq__w_str(&w, "region");
  dynq__w_uint(&w, id);
  dynqd__conn_send_wbuf(c, &w);
}

int dynqd__shm_ref(dynqd_conn_t *c, dynqd_job_t *j, dynq__obj_t o,
                   dynqd_shm_ref_t *ret, char *err, size_t errlen) {
  uint64_t id, off, size;
  if (dynq__obj_kind(o) != DYNQ_OBJ_MAP) {
    snprintf(err, errlen, "shm reference must be a map {region, offset, size}");
    return DYNQ_EPARAMS;
  }
  if (get_uint(dynq__obj_get(o, "region"), &id) != 0) {
    snprintf(err, errlen, "shm.region must be a region id");
    return DYNQ_EPARAMS;
  }
  if (get_uint(dynq__obj_get(o, "offset"), &off) != 0 ||
      get_uint(dynq__obj_get(o, "size"), &size) != 0) {
    snprintf(err, errlen, "shm.offset and shm.size must be non-negative integers");
    return DYNQ_EPARAMS;
  }
  dynqd_shm_t *r = c->regions;
  while (r != NULL && r->id != id) r = r->next;
  if (r == NULL) {
    snprintf(err, errlen, "no shared-memory region %llu on this connection",
             (unsigned long long)id);
    return DYNQ_ENOREGION;
  }
  if (off > r->size || size > r->size - off) {
    snprintf(err, errlen, "shm offset %llu + size %llu is outside region %llu of %llu bytes",
             (unsigned long long)off, (unsigned long long)size, (unsigned long long)id,
             (unsigned long long)r->size);
    return DYNQ_EPARAMS;
  }
  int have = 0;
  for (int i = 0; i < j->n_shm && !have; i++) have = j->shm[i] == r;
  if (!have) {
    dynqd_shm_t **nv = realloc(j->shm, (size_t)(j->n_shm + 1) * sizeof(*nv));
    if (nv == NULL) {
      snprintf(err, errlen, "out of memory");
      return -ENOMEM;
    }
    j->shm = nv;
    j->shm[j->n_shm++] = r;
    r->refs++;
  }
  ret->region = r;
  ret->region_id = id;
  ret->offset = off;
  ret->size = size;
  return 0;
}

int dynqd__shm_tensor(dynqd_conn_t *c, dynqd_job_t *j, dynq__obj_t o,
                      const dynq__tensor_limits_t *lim, dynq__tensor_t *ret_t,
                      char *err, size_t errlen) {
  char dts[16];
  if (dynq__obj_strcpy(dynq__obj_get(o, "dtype"), dts, sizeof(dts)) != 0) {
    snprintf(err, errlen, "dtype must be a string such as \"float32\"");
    return DYNQ_EPARAMS;
  }
  dynq_dtype_t dt = dynq__dtype_from_name(dts);
  if (dt == DYNQ_DT_INVALID) {
    snprintf(err, errlen, "unknown dtype '%s'", dts);
    return DYNQ_EDTYPE;
  }
  dynq__obj_t so = dynq__obj_get(o, "shape");
  if (dynq__obj_kind(so) != DYNQ_OBJ_ARRAY) {
    snprintf(err, errlen, "shape must be an array of dimensions");
    return DYNQ_EPARAMS;
  }
  uint32_t rank = dynq__obj_len(so);
  if (rank > (uint32_t)lim->max_rank) {
    snprintf(err, errlen, "rank %u exceeds the limit of %d", rank, lim->max_rank);
    return DYNQ_ESHAPE;
  }
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = dt;
  t.rank = (int)rank;
  for (uint32_t i = 0; i < rank; i++) {
    int64_t d;
    if (dynq__obj_int(dynq__obj_at(so, i), &d) != 0 || d < 0) {
      snprintf(err, errlen, "shape[%u] must be a non-negative integer", i);
      return DYNQ_ESHAPE;
    }
    t.dims[i] = d;
  }
  int64_t numel = dynq__shape_numel(t.rank, t.dims);
  if (numel < 0 || numel > lim->max_elems) {
    snprintf(err, errlen, "tensor has more than %lld elements",
             (long long)lim->max_elems);
    return DYNQ_ELIMIT;
  }
  dynqd_shm_ref_t ref;
  int rc = dynqd__shm_ref(c, j, dynq__obj_get(o, "shm"), &ref, err, errlen);
  if (rc != 0) return rc;
  size_t nbytes = (size_t)numel * dynq__dtype_size(dt);
  if (ref.size != nbytes) {
    snprintf(err, errlen, "shm size %llu does not match the tensor's %zu bytes",
             (unsigned long long)ref.size, nbytes);
    return DYNQ_EDATA;
  }
  uint8_t *p = ref.region->base + ref.offset;
  if (((uintptr_t)p % dynq__dtype_size(dt)) == 0) {
    t.data = p;  /* zero copy: the job holds a ref on the region */
    t.owned = 0;
  } else {
    /* Kernels may assume element alignment: copy a misaligned tensor. */
    t.data = dynq__aligned_alloc(nbytes ? nbytes : 1);
    if (t.data == NULL) {
      snprintf(err, errlen, "out of memory");
      return -ENOMEM;
    }
    memcpy(t.data, p, nbytes);
    t.owned = 1;
  }
  *ret_t = t;
  return 0;
}
