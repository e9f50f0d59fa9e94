/*
 * Shared-memory regions: a client's sealed memfd (received by the
 * transport with its shm.register frame) mapped as a region of its owner's
 * set, and tensor references {region, offset, size} into them for infer
 * inputs and outputs_shm.
 *
 * Safety: the memfd must carry F_SEAL_SHRINK, so the client cannot shrink
 * it under our mapping (a SIGBUS on the worker otherwise).  Offsets and
 * sizes are checked for overflow against the region.  A region is owned by
 * its owner (a connection) and refcounted by the requests that use it (loop thread
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

void dynqd__shm_unref(dynqd_shm_t *r) {
  if (r == NULL || --r->refs > 0) return;
  if (r->base != NULL) munmap(r->base, (size_t)r->size);
  r->tot->n--;
  r->tot->bytes -= r->size;
  if (r->peer != NULL) {
    r->peer->shm_regions--;
    r->peer->shm_bytes -= r->size;
  }
  free(r);
}

void dynqd__shm_set_clear(dynqd_shm_set_t *set) {
  dynqd_shm_t *r = set->list;
  set->list = NULL;
  set->n = 0;
  while (r != NULL) {
    dynqd_shm_t *n = r->next;
    r->next = NULL;
    dynqd__shm_unref(r);
    r = n;
  }
}

void dynqd__shm_refs_clear(dynqd_shm_refs_t *refs) {
  for (int i = 0; i < refs->n; i++) dynqd__shm_unref(refs->v[i]);
  free(refs->v);
  refs->v = NULL;
  refs->n = 0;
}

int dynqd__shm_register(dynqd_shm_set_t *set, dynqd_shm_totals_t *tot, dynqd_peer_t *peer,
                        int fd, uint64_t size, const dynqd_shm_limits_t *lim,
                        uint64_t *ret_id, char *err, size_t errlen) {
  dynqd_shm_t *r = NULL;
  int rc;
  if (size > lim->max_bytes) {
    snprintf(err, errlen, "shm.register: size %llu exceeds the %llu-byte region limit",
             (unsigned long long)size, (unsigned long long)lim->max_bytes);
    rc = DYNQ_ELIMIT;
    goto fail;
  }
  if (set->n >= lim->max_regions) {
    snprintf(err, errlen, "shm.register: this connection already has %d regions (limit "
             "%d); shm.unregister some first", set->n, lim->max_regions);
    rc = DYNQ_ELIMIT;
    goto fail;
  }
  /* Mappings cost address space and vm.max_map_count entries whatever
   * the memfd holds (sparse files map for free): bounded per uid and in
   * total, so one local user cannot exhaust them for dynqd. */
  if (tot->n >= lim->total_regions || size > lim->total_bytes - (tot->bytes < lim->total_bytes ? tot->bytes : lim->total_bytes)) {
    snprintf(err, errlen, "shm.register: dynqd maps %d regions of %llu bytes (limits "
             "max_shm_regions_total %d, max_shm_mapped %llu); retry later",
             tot->n, (unsigned long long)tot->bytes, lim->total_regions,
             (unsigned long long)lim->total_bytes);
    rc = DYNQ_EOVERLOAD;
    goto fail;
  }
  if (peer != NULL &&
      ((lim->uid_regions > 0 && peer->shm_regions >= lim->uid_regions) ||
       (lim->uid_bytes > 0 && size > lim->uid_bytes - (peer->shm_bytes < lim->uid_bytes ? peer->shm_bytes : lim->uid_bytes)))) {
    snprintf(err, errlen, "shm.register: uid %u already has %d regions of %llu bytes "
             "mapped (limits max_shm_regions_per_uid %d, max_shm_mapped_per_uid %llu)",
             (unsigned)peer->uid, peer->shm_regions, (unsigned long long)peer->shm_bytes,
             lim->uid_regions, (unsigned long long)lim->uid_bytes);
    rc = DYNQ_ELIMIT;
    goto fail;
  }
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    snprintf(err, errlen, "shm.register: the file descriptor cannot carry seals (%s); "
             "use memfd_create(..., MFD_ALLOW_SEALING) and add F_SEAL_SHRINK",
             strerror(errno));
    rc = DYNQ_ESEAL;
    goto fail;
  }
  if (!(seals & F_SEAL_SHRINK)) {
    snprintf(err, errlen, "shm.register: the memfd lacks F_SEAL_SHRINK (fcntl(fd, "
             "F_ADD_SEALS, F_SEAL_SHRINK) before sending it)");
    rc = DYNQ_ESEAL;
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "shm.register: the file descriptor is not a regular memfd");
    rc = DYNQ_EPARAMS;
    goto fail;
  }
  if ((uint64_t)st.st_size < size) {
    snprintf(err, errlen, "shm.register: the memfd is %lld bytes, smaller than size %llu",
             (long long)st.st_size, (unsigned long long)size);
    rc = DYNQ_EPARAMS;
    goto fail;
  }
  r = calloc(1, sizeof(*r));
  if (r == NULL) {
    snprintf(err, errlen, "shm.register: out of memory");
    rc = -ENOMEM;
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
    snprintf(err, errlen, "shm.register: cannot map %llu bytes: %s",
             (unsigned long long)size, strerror(e));
    rc = -e;
    goto fail;
  }
  close(fd);
  r->base = base;
  r->size = size;
  r->refs = 1;
  r->tot = tot;
  r->peer = peer;
  if (peer != NULL) {
    peer->shm_regions++;
    peer->shm_bytes += size;
  }
  r->id = ++tot->next_id;
  r->next = set->list;
  set->list = r;
  set->n++;
  tot->n++;
  tot->bytes += size;
  log_debug("shm region %llu: %llu bytes%s", (unsigned long long)r->id,
            (unsigned long long)size, r->writable ? "" : " (read-only)");
  *ret_id = r->id;
  return 0;

fail:
  free(r);
  close(fd);
  return rc;
}

int dynqd__shm_unregister(dynqd_shm_set_t *set, uint64_t id) {
  dynqd_shm_t **pp = &set->list;
  while (*pp != NULL && (*pp)->id != id) pp = &(*pp)->next;
  if (*pp == NULL) return DYNQ_ENOREGION;
  dynqd_shm_t *r = *pp;
  *pp = r->next;
  r->next = NULL;
  set->n--;
  dynqd__shm_unref(r);  /* running requests keep their own refs */
  return 0;
}

int dynqd__shm_ref(dynqd_shm_set_t *set, dynqd_shm_refs_t *refs, uint64_t id,
                   uint64_t off, uint64_t size, dynqd_shm_ref_t *ret, char *err,
                   size_t errlen) {
  dynqd_shm_t *r = set->list;
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
  for (int i = 0; i < refs->n && !have; i++) have = refs->v[i] == r;
  if (!have) {
    dynqd_shm_t **nv = realloc(refs->v, (size_t)(refs->n + 1) * sizeof(*nv));
    if (nv == NULL) {
      snprintf(err, errlen, "out of memory");
      return -ENOMEM;
    }
    refs->v = nv;
    refs->v[refs->n++] = r;
    r->refs++;
  }
  ret->region = r;
  ret->region_id = id;
  ret->offset = off;
  ret->size = size;
  return 0;
}

int dynqd__shm_tensor(const dynqd_shm_ref_t *ref, dynq_dtype_t dt, int rank,
                      const int64_t *dims, int64_t max_elems, dynq__tensor_t *ret_t,
                      char *err, size_t errlen) {
  dynq__tensor_t t;
  memset(&t, 0, sizeof(t));
  t.dtype = dt;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  int64_t numel = dynq__shape_numel(t.rank, t.dims);
  if (numel < 0 || numel > max_elems) {
    snprintf(err, errlen, "tensor has more than %lld elements", (long long)max_elems);
    return DYNQ_ELIMIT;
  }
  size_t nbytes = (size_t)numel * dynq__dtype_size(dt);
  if (ref->size != nbytes) {
    snprintf(err, errlen, "shm size %llu does not match the tensor's %zu bytes",
             (unsigned long long)ref->size, nbytes);
    return DYNQ_EDATA;
  }
  uint8_t *p = ref->region->base + ref->offset;
  if (((uintptr_t)p % dynq__dtype_size(dt)) == 0) {
    t.data = p;  /* zero copy: the request holds a ref on the region */
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
