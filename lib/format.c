/*
 * .dynq v1 writer and validating decoder (layout in format.h, prose in
 * docs/FORMAT.md).  The decoder trusts nothing: every offset, size, count,
 * string and index is bounds-checked, sections may not overlap each other
 * or the header, constants may not overlap each other, and each section's
 * CRC-32C must match before its bytes are interpreted.
 */
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "ops.h"
#include "proto/utf8.h"
#include "validate.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .dynq format is little-endian and read in place");

static const size_t rec_size[DYNQ_SEC__COUNT] = {
  [DYNQ_SEC_STRINGS] = 1,
  [DYNQ_SEC_VALUES] = sizeof(dynq__fvalue_t),
  [DYNQ_SEC_NODES] = sizeof(dynq__fnode_t),
  [DYNQ_SEC_REFS] = sizeof(int32_t),
  [DYNQ_SEC_ATTRS] = sizeof(dynq__fattr_t),
  [DYNQ_SEC_META] = sizeof(dynq__fmeta_t),
  [DYNQ_SEC_DATA] = 1,
};

static const char *const sec_name[DYNQ_SEC__COUNT] = {
  [DYNQ_SEC_STRINGS] = "strings", [DYNQ_SEC_VALUES] = "values",
  [DYNQ_SEC_NODES] = "nodes",     [DYNQ_SEC_REFS] = "refs",
  [DYNQ_SEC_ATTRS] = "attrs",     [DYNQ_SEC_META] = "meta",
  [DYNQ_SEC_DATA] = "data",
};

/* ------------------------------------------------------------------ */
/* writer                                                              */

typedef struct growbuf {
  uint8_t *p;
  size_t len, cap;
  int oom;
} growbuf_t;

static size_t gb_append(growbuf_t *b, const void *p, size_t n) {
  size_t at = b->len;
  if (b->oom) return at;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    uint8_t *q = realloc(b->p, cap);
    if (q == NULL) {
      b->oom = 1;
      return at;
    }
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
  return at;
}

static uint32_t gb_str(growbuf_t *b, const char *s) {
  if (s == NULL || *s == 0) return 0;  /* offset 0 is "" */
  return (uint32_t)gb_append(b, s, strlen(s) + 1);
}

static int write_all(int fd, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* The DYNQ_FFLAG_* bits the graph needs of a reader. */
static uint32_t needed_flags(const dynq__graph_t *g) {
  static const char *const epilogue[] = {"act", "act_a", "act_b", "pre_mul", "pre_add",
                                         "post_mul", "post_add"};
  uint32_t f = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    if (n->op == DYNQ_OP_AVERAGEPOOL && dynq__node_attr_i(n, "count_include_pad", 0) != 0) {
      static const char *const dil[] = {"dilations0", "dilations1", "dilations2"};
      for (int k = 0; k < 3; k++)
        if (dynq__node_attr_i(n, dil[k], 1) != 1) f |= DYNQ_FFLAG_AVGPOOL_DILATED;
    }
    if (n->op == DYNQ_OP_RESIZE &&
        (dynq__node_attr_i(n, "antialias", 0) != 0 || dynq__node_attr_i(n, "naxes", 0) != 0 ||
         dynq__node_attr_i(n, "policy", 0) != 0))
      f |= DYNQ_FFLAG_RESIZE18;
    if (n->op == DYNQ_OP_CAST && dynq__node_attr_i(n, "bf16", 0) != 0) f |= DYNQ_FFLAG_CAST_BF16;
    if (n->op != DYNQ_OP_CONV && n->op != DYNQ_OP_QCONV) continue;
    for (size_t k = 0; k < sizeof(epilogue) / sizeof(epilogue[0]); k++)
      if (dynq__node_attr(n, epilogue[k]) != NULL) f |= DYNQ_FFLAG_CONV_EPILOGUE;
  }
  return f;
}

int dynq__graph_write(const dynq__graph_t *g, const char *path, char *err,
                      size_t errlen) {
  growbuf_t sec[DYNQ_SEC__COUNT];
  memset(sec, 0, sizeof(sec));
  char tmp[PATH_MAX];
  int fd = -1, rc = 0;
  uint64_t *data_rel = NULL;

  rc = dynq__graph_validate(g, err, errlen);
  if (rc != 0) return rc;

  gb_append(&sec[DYNQ_SEC_STRINGS], "", 1);

  /* Constants go to DATA in value order, each 64-aligned; offsets are
   * relative here and made absolute once the DATA offset is known. */
  data_rel = calloc((size_t)g->n_values + 1, sizeof(*data_rel));
  if (data_rel == NULL) {
    rc = -ENOMEM;
    goto fail;
  }
  uint64_t data_size = 0;
  for (int v = 0; v < g->n_values; v++) {
    if (g->values[v].data == NULL) continue;
    data_rel[v] = data_size;
    data_size = align_up(data_size + g->values[v].nbytes, 64);
  }

  /* refs: node inputs/outputs, then graph inputs/outputs */
  growbuf_t *refs = &sec[DYNQ_SEC_REFS];
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    dynq__fnode_t fn;
    memset(&fn, 0, sizeof(fn));
    fn.op = (uint32_t)n->op;
    fn.name = gb_str(&sec[DYNQ_SEC_STRINGS], n->name);
    fn.n_in = (uint16_t)n->n_in;
    fn.n_out = (uint16_t)n->n_out;
    fn.in_first = (uint32_t)(refs->len / 4);
    gb_append(refs, n->in, sizeof(int32_t) * (size_t)n->n_in);
    fn.out_first = (uint32_t)(refs->len / 4);
    gb_append(refs, n->out, sizeof(int32_t) * (size_t)n->n_out);
    fn.attr_first = (uint32_t)(sec[DYNQ_SEC_ATTRS].len / sizeof(dynq__fattr_t));
    fn.n_attr = (uint32_t)n->n_attr;
    for (int k = 0; k < n->n_attr; k++) {
      const dynq__attr_t *a = &n->attr[k];
      dynq__fattr_t fa;
      memset(&fa, 0, sizeof(fa));
      fa.name = gb_str(&sec[DYNQ_SEC_STRINGS], a->name);
      fa.type = (uint32_t)a->type;
      fa.i = a->i;
      fa.f = a->f;
      if (a->type == DYNQ_ATTR_STRING) fa.s = gb_str(&sec[DYNQ_SEC_STRINGS], a->s);
      gb_append(&sec[DYNQ_SEC_ATTRS], &fa, sizeof(fa));
    }
    gb_append(&sec[DYNQ_SEC_NODES], &fn, sizeof(fn));
  }
  dynq__fmeta_t meta;
  memset(&meta, 0, sizeof(meta));
  meta.producer = gb_str(&sec[DYNQ_SEC_STRINGS], g->producer);
  meta.n_inputs = (uint32_t)g->n_inputs;
  meta.inputs_first = (uint32_t)(refs->len / 4);
  gb_append(refs, g->inputs, sizeof(int32_t) * (size_t)g->n_inputs);
  meta.n_outputs = (uint32_t)g->n_outputs;
  meta.outputs_first = (uint32_t)(refs->len / 4);
  gb_append(refs, g->outputs, sizeof(int32_t) * (size_t)g->n_outputs);
  meta.n_state = (uint32_t)g->n_state;
  meta.state_first = (uint32_t)(refs->len / 4);
  gb_append(refs, g->state, sizeof(int32_t) * 2 * (size_t)g->n_state);
  meta.source_hash = g->source_hash;
  gb_append(&sec[DYNQ_SEC_META], &meta, sizeof(meta));

  /* values last among the small sections: they need name offsets only */
  for (int v = 0; v < g->n_values; v++) {
    const dynq__value_t *val = &g->values[v];
    dynq__fvalue_t fv;
    memset(&fv, 0, sizeof(fv));
    fv.name = gb_str(&sec[DYNQ_SEC_STRINGS], val->name);
    fv.dtype = (uint8_t)val->dtype;
    fv.rank = (int8_t)val->rank;
    for (int d = 0; d < DYNQ_MAX_RANK; d++) fv.dims[d] = d < val->rank ? val->dims[d] : 0;
    if (val->data != NULL) {
      fv.flags = DYNQ_FVALUE_CONST;
      fv.data_size = val->nbytes;
    }
    gb_append(&sec[DYNQ_SEC_VALUES], &fv, sizeof(fv));
  }
  for (int s = 1; s < DYNQ_SEC__COUNT; s++)
    if (sec[s].oom) {
      rc = -ENOMEM;
      goto fail;
    }

  /* layout */
  const int nsec = DYNQ_SEC__COUNT - 1;
  dynq__fsection_t table[DYNQ_SEC__COUNT - 1];
  uint64_t off = sizeof(dynq__fhdr_t) + sizeof(table);
  for (int s = 1; s < DYNQ_SEC__COUNT; s++) {
    dynq__fsection_t *t = &table[s - 1];
    memset(t, 0, sizeof(*t));
    t->kind = (uint32_t)s;
    if (s == DYNQ_SEC_DATA) {
      off = align_up(off, 64);
      t->offset = off;
      t->size = data_size;
      t->count = data_size;
    } else {
      off = align_up(off, 8);
      t->offset = off;
      t->size = sec[s].len;
      t->count = sec[s].len / rec_size[s];
      t->crc = dynq__crc32c(0, sec[s].p, sec[s].len);
    }
    off += t->size;
  }
  const uint64_t data_off = table[DYNQ_SEC_DATA - 1].offset;
  const uint64_t file_size = off;

  /* constants' absolute offsets, patched into the value records, and the
   * DATA checksum computed in the same pass order as the file */
  dynq__fvalue_t *fvals = (dynq__fvalue_t *)sec[DYNQ_SEC_VALUES].p;
  uint32_t data_crc = 0;
  {
    static const uint8_t zeros[64];
    uint64_t pos = 0;
    for (int v = 0; v < g->n_values; v++) {
      if (g->values[v].data == NULL) continue;
      fvals[v].data_off = data_off + data_rel[v];
      data_crc = dynq__crc32c(data_crc, zeros, data_rel[v] - pos);
      data_crc = dynq__crc32c(data_crc, g->values[v].data, g->values[v].nbytes);
      pos = data_rel[v] + g->values[v].nbytes;
    }
    data_crc = dynq__crc32c(data_crc, zeros, data_size - pos);
  }
  table[DYNQ_SEC_VALUES - 1].crc =
      dynq__crc32c(0, sec[DYNQ_SEC_VALUES].p, sec[DYNQ_SEC_VALUES].len);
  table[DYNQ_SEC_DATA - 1].crc = data_crc;

  dynq__fhdr_t h;
  memset(&h, 0, sizeof(h));
  memcpy(h.magic, DYNQ_FILE_MAGIC, 8);
  h.version = DYNQ_FILE_VERSION;
  h.header_size = sizeof(h);
  h.file_size = file_size;
  h.sections_off = sizeof(h);
  h.n_sections = (uint32_t)nsec;
  h.flags = needed_flags(g);
  h.table_crc = dynq__crc32c(0, table, sizeof(table));
  h.header_crc = dynq__crc32c(0, &h, offsetof(dynq__fhdr_t, header_crc));

  if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= sizeof(tmp)) {
    snprintf(err, errlen, "%s: path too long", path);
    rc = -ENAMETOOLONG;
    goto fail;
  }
  fd = mkstemp(tmp);
  if (fd < 0) {
    rc = -errno;
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    goto fail;
  }
  fchmod(fd, 0644);
  uint64_t pos = 0;
  static const uint8_t pad[64];
#define EMIT(p, n)                                   \
  do {                                               \
    if ((rc = write_all(fd, (p), (n))) != 0) goto io; \
    pos += (n);                                      \
  } while (0)
  EMIT(&h, sizeof(h));
  EMIT(table, sizeof(table));
  for (int s = 1; s < DYNQ_SEC__COUNT; s++) {
    const dynq__fsection_t *t = &table[s - 1];
    EMIT(pad, t->offset - pos);
    if (s != DYNQ_SEC_DATA) {
      EMIT(sec[s].p, t->size);
      continue;
    }
    uint64_t dpos = 0;
    for (int v = 0; v < g->n_values; v++) {
      if (g->values[v].data == NULL) continue;
      EMIT(pad, data_rel[v] - dpos);
      EMIT(g->values[v].data, g->values[v].nbytes);
      dpos = data_rel[v] + g->values[v].nbytes;
    }
    EMIT(pad, data_size - dpos);
  }
#undef EMIT
  if (fsync(fd) != 0) {
    rc = -errno;
    goto io;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = -errno;
    goto io;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = -errno;
    goto io;
  }
  goto done;
io:
  snprintf(err, errlen, "writing %s: %s", path, strerror(-rc));
  if (fd >= 0) close(fd);
  unlink(tmp);
  goto done;
fail:
  if (rc == -ENOMEM) snprintf(err, errlen, "out of memory writing %s", path);
done:
  for (int s = 0; s < DYNQ_SEC__COUNT; s++) free(sec[s].p);
  free(data_rel);
  return rc;
}

/* ------------------------------------------------------------------ */
/* decoder                                                             */

#define BAD(code, ...)                       \
  do {                                       \
    snprintf(err, errlen, __VA_ARGS__);      \
    rc = (code);                             \
    goto fail;                               \
  } while (0)

typedef struct span {
  uint64_t off, end;
  int idx;
} span_t;

static int span_cmp(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* A string offset into the strings section, NUL-terminated inside it. */
static const char *get_str(const uint8_t *strs, uint64_t size, uint32_t off) {
  if (off >= size) return NULL;
  if ((strs[off] & 0xc0) == 0x80) return NULL;  /* inside a UTF-8 character */
  if (memchr(strs + off, 0, size - off) == NULL) return NULL;
  return (const char *)strs + off;
}

static int crc_of_fd(int fd, uint64_t off, uint64_t size, uint32_t *ret) {
  enum { CHUNK = 1 << 20 };
  uint8_t *buf = malloc(CHUNK);
  if (buf == NULL) return -ENOMEM;
  uint32_t crc = 0;
  while (size > 0) {
    size_t want = size < CHUNK ? (size_t)size : CHUNK;
    ssize_t r = pread(fd, buf, want, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(buf);
      return r < 0 ? -errno : -EIO;
    }
    crc = dynq__crc32c(crc, buf, (size_t)r);
    off += (uint64_t)r;
    size -= (uint64_t)r;
  }
  free(buf);
  *ret = crc;
  return 0;
}

int dynq__format_decode(const uint8_t *base, uint64_t size, int fd,
                        dynq__fgraph_t *ret, char *err, size_t errlen) {
  int rc = 0;
  void *arena = NULL;
  span_t *spans = NULL;
  dynq__fhdr_t h;
  if (size < sizeof(h)) BAD(DYNQ_EFORMAT, "file is %llu bytes, shorter than the %zu-byte header (truncated?)", (unsigned long long)size, sizeof(h));
  memcpy(&h, base, sizeof(h));
  if (memcmp(h.magic, DYNQ_FILE_MAGIC, 8) != 0) BAD(DYNQ_EFORMAT, "not a .dynq model (bad magic)");
  if (h.header_crc != dynq__crc32c(0, &h, offsetof(dynq__fhdr_t, header_crc)))
    BAD(DYNQ_ECHECKSUM, "header checksum mismatch (corrupted file)");
  if (h.version != DYNQ_FILE_VERSION) BAD(DYNQ_EVERSION, "format version %u, this build reads version %u", h.version, DYNQ_FILE_VERSION);
  if (h.header_size != sizeof(h)) BAD(DYNQ_EFORMAT, "bad header size %u", h.header_size);
  if (h.flags & ~DYNQ_FFLAGS_KNOWN)
    BAD(DYNQ_EVERSION, "the file needs features %#x this build lacks (made by a newer "
        "dynq-quantize? re-convert it with this one)", h.flags & ~DYNQ_FFLAGS_KNOWN);
  if (h.file_size != size) BAD(DYNQ_EFORMAT, "header says %llu bytes but the file has %llu (truncated or extended)", (unsigned long long)h.file_size, (unsigned long long)size);
  if (h.n_sections == 0 || h.n_sections > DYNQ_FILE_MAX_SECTIONS) BAD(DYNQ_EFORMAT, "bad section count %u", h.n_sections);
  uint64_t tsize = (uint64_t)h.n_sections * sizeof(dynq__fsection_t);
  if (h.sections_off < sizeof(h) || h.sections_off % 8 || h.sections_off > size || tsize > size - h.sections_off)
    BAD(DYNQ_EFORMAT, "section table out of bounds");
  const dynq__fsection_t *tab = (const dynq__fsection_t *)(base + h.sections_off);
  if (h.table_crc != dynq__crc32c(0, tab, tsize)) BAD(DYNQ_ECHECKSUM, "section table checksum mismatch");

  const dynq__fsection_t *sec[DYNQ_SEC__COUNT] = {0};
  span_t regions[DYNQ_FILE_MAX_SECTIONS + 2];
  int nreg = 0;
  regions[nreg++] = (span_t){0, sizeof(h), -1};
  regions[nreg++] = (span_t){h.sections_off, h.sections_off + tsize, -2};
  for (uint32_t i = 0; i < h.n_sections; i++) {
    const dynq__fsection_t *s = &tab[i];
    if (s->kind == 0 || s->kind >= DYNQ_SEC__COUNT) BAD(DYNQ_EFORMAT, "section %u has unknown kind %u", i, s->kind);
    const char *nm = sec_name[s->kind];
    if (sec[s->kind] != NULL) BAD(DYNQ_EFORMAT, "section '%s' appears twice", nm);
    sec[s->kind] = s;
    if (s->offset > size || s->size > size - s->offset) BAD(DYNQ_EFORMAT, "section '%s' lies outside the file (offset %llu size %llu)", nm, (unsigned long long)s->offset, (unsigned long long)s->size);
    if (s->offset % (s->kind == DYNQ_SEC_DATA ? 64 : 8)) BAD(DYNQ_EFORMAT, "section '%s' is misaligned", nm);
    if (s->count > s->size || s->count * rec_size[s->kind] != s->size) BAD(DYNQ_EFORMAT, "section '%s': %llu records do not fill %llu bytes", nm, (unsigned long long)s->count, (unsigned long long)s->size);
    regions[nreg++] = (span_t){s->offset, s->offset + s->size, (int)s->kind};
  }
  for (int k = 1; k < DYNQ_SEC__COUNT; k++)
    if (sec[k] == NULL) BAD(DYNQ_EFORMAT, "section '%s' is missing", sec_name[k]);
  qsort(regions, (size_t)nreg, sizeof(span_t), span_cmp);
  /* Sorted by offset: no region may start before every earlier one ended.
   * The gaps between them are covered by no checksum: they must be zero. */
  uint64_t reach = 0;
  for (int i = 0; i < nreg; i++) {
    if (regions[i].end == regions[i].off) continue;
    if (regions[i].off < reach)
      BAD(DYNQ_EFORMAT, "sections overlap at offset %llu", (unsigned long long)regions[i].off);
    for (uint64_t p = reach; p < regions[i].off; p++)
      if (base[p] != 0) BAD(DYNQ_EFORMAT, "nonzero padding byte at offset %llu", (unsigned long long)p);
    reach = regions[i].end;
  }
  for (uint64_t p = reach; p < size; p++)
    if (base[p] != 0) BAD(DYNQ_EFORMAT, "nonzero padding byte at offset %llu", (unsigned long long)p);
  for (int k = 1; k < DYNQ_SEC__COUNT; k++) {
    uint32_t crc = 0;
    if (k == DYNQ_SEC_DATA && fd >= 0) {
      if ((rc = crc_of_fd(fd, sec[k]->offset, sec[k]->size, &crc)) != 0)
        BAD(rc, "reading section 'data': %s", strerror(-rc));
    } else {
      crc = dynq__crc32c(0, base + sec[k]->offset, sec[k]->size);
    }
    if (crc != sec[k]->crc) BAD(DYNQ_ECHECKSUM, "section '%s' checksum mismatch (corrupted file)", sec_name[k]);
  }

  const uint64_t strs_size = sec[DYNQ_SEC_STRINGS]->size;
  if (strs_size == 0 || base[sec[DYNQ_SEC_STRINGS]->offset] != 0) BAD(DYNQ_EFORMAT, "strings section must start with an empty string");
  const dynq__fvalue_t *fv = (const dynq__fvalue_t *)(base + sec[DYNQ_SEC_VALUES]->offset);
  const dynq__fnode_t *fn = (const dynq__fnode_t *)(base + sec[DYNQ_SEC_NODES]->offset);
  const int32_t *refs = (const int32_t *)(base + sec[DYNQ_SEC_REFS]->offset);
  const dynq__fattr_t *fa = (const dynq__fattr_t *)(base + sec[DYNQ_SEC_ATTRS]->offset);
  const uint64_t nv = sec[DYNQ_SEC_VALUES]->count, nn = sec[DYNQ_SEC_NODES]->count;
  const uint64_t nrefs = sec[DYNQ_SEC_REFS]->count, nattr = sec[DYNQ_SEC_ATTRS]->count;
  if (nv > DYNQ_FILE_MAX_VALUES || nn > DYNQ_FILE_MAX_NODES || nattr > (uint64_t)DYNQ_FILE_MAX_NODES * DYNQ_FILE_MAX_ATTRS)
    BAD(DYNQ_ELIMIT, "model too large: %llu values, %llu nodes", (unsigned long long)nv, (unsigned long long)nn);
  if (sec[DYNQ_SEC_META]->count != 1) BAD(DYNQ_EFORMAT, "meta section must hold one record");
  dynq__fmeta_t meta;
  memcpy(&meta, base + sec[DYNQ_SEC_META]->offset, sizeof(meta));

  /* One arena: values, nodes, attrs, refs, then copies of the strings and
   * of the int64 constants (shapes, axes, INTS attributes).  What decides
   * control flow and sizes must not change under us when the file is
   * overwritten in place after load: only the weights (numbers) stay in
   * the mapping.  The int64 constants are bounded by the file size. */
  uint64_t i64_bytes = 0;
  for (uint64_t v = 0; v < nv; v++)
    if ((fv[v].flags & DYNQ_FVALUE_CONST) && fv[v].dtype == DYNQ_DT_I64 &&
        fv[v].data_size <= size)
      i64_bytes += (fv[v].data_size + 63) & ~(uint64_t)63;
  if (i64_bytes > size) i64_bytes = size;  /* overlapping claims are refused below */
  size_t sz_v = sizeof(dynq__value_t) * (size_t)nv, sz_n = sizeof(dynq__node_t) * (size_t)nn;
  size_t sz_a = sizeof(dynq__attr_t) * (size_t)nattr, sz_r = sizeof(int32_t) * (size_t)nrefs;
  size_t sz_s = (size_t)sec[DYNQ_SEC_STRINGS]->size;
  size_t head = (sz_v + sz_n + sz_a + sz_r + sz_s + 8 + 63) & ~(size_t)63;
  arena = dynq__aligned_alloc(head + (size_t)i64_bytes + 64);
  if (arena == NULL) BAD(-ENOMEM, "out of memory decoding model");
  memset(arena, 0, head);
  dynq__value_t *vals = arena;
  dynq__node_t *nodes = (dynq__node_t *)((char *)arena + sz_v);
  dynq__attr_t *attrs = (dynq__attr_t *)((char *)nodes + sz_n);
  int32_t *refcopy = (int32_t *)((char *)attrs + sz_a);
  memcpy(refcopy, refs, sz_r);
  uint8_t *strcopy = (uint8_t *)refcopy + sz_r;
  memcpy(strcopy, base + sec[DYNQ_SEC_STRINGS]->offset, sz_s);
  uint8_t *i64copy = (uint8_t *)arena + head;
  uint64_t i64_used = 0;
  const uint8_t *strs = strcopy;
  {
    /* Names reach clients as msgpack str (errors, model.info): valid UTF-8
     * only.  The whole section valid and every string starting on a
     * character boundary (get_str) makes each string valid. */
    size_t ok = dynq__utf8_valid_prefix(strs, (size_t)strs_size);
    if (ok != strs_size) BAD(DYNQ_EFORMAT, "strings section: invalid UTF-8 at offset %zu", ok);
  }

  const dynq__fsection_t *ds = sec[DYNQ_SEC_DATA];
  spans = calloc((size_t)nv + 1, sizeof(*spans));
  if (spans == NULL) BAD(-ENOMEM, "out of memory decoding model");
  int nspans = 0;
  for (uint64_t v = 0; v < nv; v++) {
    dynq__value_t *o = &vals[v];
    o->name = get_str(strs, strs_size, fv[v].name);
    if (o->name == NULL) BAD(DYNQ_EFORMAT, "value %llu: bad name offset", (unsigned long long)v);
    o->dtype = (dynq_dtype_t)fv[v].dtype;
    o->rank = fv[v].rank;
    if (dynq__dtype_size(o->dtype) == 0) BAD(DYNQ_EFORMAT, "value '%s': bad dtype %u", o->name, fv[v].dtype);
    if (o->rank < -1 || o->rank > DYNQ_MAX_RANK) BAD(DYNQ_EFORMAT, "value '%s': bad rank %d", o->name, o->rank);
    for (int d = 0; d < DYNQ_MAX_RANK; d++) {
      o->dims[d] = fv[v].dims[d];
      if (d < o->rank && o->dims[d] < -1) BAD(DYNQ_EFORMAT, "value '%s': bad dim %lld", o->name, (long long)o->dims[d]);
    }
    if (fv[v].flags & ~DYNQ_FVALUE_CONST) BAD(DYNQ_EFORMAT, "value '%s': unknown flags %#x", o->name, fv[v].flags);
    if (!(fv[v].flags & DYNQ_FVALUE_CONST)) continue;
    int64_t numel = dynq__shape_numel(o->rank, o->dims);
    if (o->rank < 0 || numel < 0) BAD(DYNQ_EFORMAT, "constant '%s': bad shape", o->name);
    uint64_t want = (uint64_t)numel * dynq__dtype_size(o->dtype);
    uint64_t off = fv[v].data_off, n = fv[v].data_size;
    if (n != want) BAD(DYNQ_EFORMAT, "constant '%s': %llu data bytes, shape needs %llu", o->name, (unsigned long long)n, (unsigned long long)want);
    if (off % 64) BAD(DYNQ_EFORMAT, "constant '%s': data offset %llu not 64-byte aligned", o->name, (unsigned long long)off);
    if (off < ds->offset || off > ds->offset + ds->size || n > ds->offset + ds->size - off)
      BAD(DYNQ_EFORMAT, "constant '%s': data [%llu, +%llu) outside the data section", o->name, (unsigned long long)off, (unsigned long long)n);
    o->data = base + off;
    o->nbytes = (size_t)n;
    if (o->dtype == DYNQ_DT_I64 && n > 0 && i64_used + n <= i64_bytes) {
      memcpy(i64copy + i64_used, base + off, (size_t)n);
      o->data = i64copy + i64_used;
      i64_used += (n + 63) & ~(uint64_t)63;
    }
    if (n > 0) spans[nspans++] = (span_t){off, off + n, (int)v};
  }
  qsort(spans, (size_t)nspans, sizeof(span_t), span_cmp);
  for (int i = 1, far = 0; i < nspans; i++) {
    if (spans[i].off < spans[far].end)
      BAD(DYNQ_EFORMAT, "constants '%s' and '%s' overlap", vals[spans[far].idx].name, vals[spans[i].idx].name);
    far = i;  /* no overlap so far: spans[i] ends last */
  }

  for (uint64_t i = 0; i < nn; i++) {
    dynq__node_t *o = &nodes[i];
    o->op = (int)fn[i].op;
    o->name = get_str(strs, strs_size, fn[i].name);
    if (o->name == NULL) BAD(DYNQ_EFORMAT, "node %llu: bad name offset", (unsigned long long)i);
    if (fn[i].n_in > DYNQ_FILE_MAX_ARITY || fn[i].n_out > DYNQ_FILE_MAX_ARITY ||
        fn[i].in_first > nrefs || fn[i].n_in > nrefs - fn[i].in_first ||
        fn[i].out_first > nrefs || fn[i].n_out > nrefs - fn[i].out_first)
      BAD(DYNQ_EFORMAT, "node '%s': input/output references out of bounds", o->name);
    if (fn[i].n_attr > DYNQ_FILE_MAX_ATTRS || fn[i].attr_first > nattr || fn[i].n_attr > nattr - fn[i].attr_first)
      BAD(DYNQ_EFORMAT, "node '%s': attributes out of bounds", o->name);
    o->n_in = fn[i].n_in;
    o->n_out = fn[i].n_out;
    o->in = refcopy + fn[i].in_first;
    o->out = refcopy + fn[i].out_first;
    o->n_attr = (int)fn[i].n_attr;
    o->attr = attrs + fn[i].attr_first;
  }
  for (uint64_t i = 0; i < nattr; i++) {
    attrs[i].name = get_str(strs, strs_size, fa[i].name);
    attrs[i].type = (int)fa[i].type;
    attrs[i].i = fa[i].i;
    attrs[i].f = fa[i].f;
    if (attrs[i].name == NULL) BAD(DYNQ_EFORMAT, "attribute %llu: bad name offset", (unsigned long long)i);
    if (attrs[i].type == DYNQ_ATTR_STRING) {
      attrs[i].s = get_str(strs, strs_size, fa[i].s);
      if (attrs[i].s == NULL) BAD(DYNQ_EFORMAT, "attribute '%s': bad string offset", attrs[i].name);
    }
  }
  if (meta.n_inputs > DYNQ_FILE_MAX_VALUES || meta.inputs_first > nrefs || meta.n_inputs > nrefs - meta.inputs_first ||
      meta.n_outputs > DYNQ_FILE_MAX_VALUES || meta.outputs_first > nrefs || meta.n_outputs > nrefs - meta.outputs_first)
    BAD(DYNQ_EFORMAT, "graph inputs/outputs out of bounds");
  if (meta.n_state > DYNQ_FILE_MAX_VALUES || meta.state_first > nrefs ||
      2 * (uint64_t)meta.n_state > nrefs - meta.state_first)
    BAD(DYNQ_EFORMAT, "state pairs out of bounds");

  dynq__graph_t *g = &ret->g;
  memset(g, 0, sizeof(*g));
  g->n_values = (int)nv;
  g->values = vals;
  g->n_nodes = (int)nn;
  g->nodes = nodes;
  g->n_inputs = (int)meta.n_inputs;
  g->inputs = refcopy + meta.inputs_first;
  g->n_outputs = (int)meta.n_outputs;
  g->outputs = refcopy + meta.outputs_first;
  g->n_state = (int)meta.n_state;
  g->state = refcopy + meta.state_first;
  g->producer = get_str(strs, strs_size, meta.producer);
  if (g->producer == NULL) BAD(DYNQ_EFORMAT, "bad producer string offset");
  g->source_hash = meta.source_hash;
  if ((rc = dynq__graph_validate(g, err, errlen)) != 0) goto fail;
  ret->arena = arena;
  free(spans);
  return 0;
fail:
  free(spans);
  dynq__aligned_free(arena);
  memset(ret, 0, sizeof(*ret));
  return rc;
}

void dynq__format_free(dynq__fgraph_t *fg) {
  if (fg == NULL) return;
  dynq__aligned_free(fg->arena);
  memset(fg, 0, sizeof(*fg));
}
