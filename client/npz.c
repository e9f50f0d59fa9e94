/*
 * .npz reading and writing (npz.h).  The ZIP layout used is the plain one
 * (PKWARE APPNOTE 6.3): local headers, a central directory and its end
 * record; zip64 only as far as numpy's writer uses it (an extra field that
 * may carry the sizes and the local header offset).  The central directory
 * is the authority for sizes and offsets; a local header is read only to
 * find where the member's data starts.
 */
#include "npz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "dynq/errors.h"
#include "dynqctl-io.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define LOCAL_LEN 30
#define CENTRAL_LEN 46
#define END_LEN 22

#define fail dynq__io_fail

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void wr32(uint8_t *p, uint32_t v) {
  wr16(p, v);
  wr16(p + 2, v >> 16);
}

void dynq__npz_free(dynq__npz_t *z) {
  if (z == NULL) return;
  for (int i = 0; i < z->n; i++) {
    free((char *)z->t[i].name);
    free(z->t[i].data);
  }
  free(z->t);
  z->t = NULL;
  z->n = 0;
}

const dynq_tensor_t *dynq__npz_find(const dynq__npz_t *z, const char *name) {
  for (int i = 0; i < z->n; i++)
    if (strcmp(z->t[i].name, name) == 0) return &z->t[i];
  return NULL;
}

/* The zip64 extra field (id 1) replaces, in this order, each of the
 * fields that hold 0xffffffff: uncompressed size, compressed size, local
 * header offset. */
static int zip64_fix(const uint8_t *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                     uint64_t *off) {
  while (xlen >= 4) {
    uint16_t id = rd16(x), n = rd16(x + 2);
    if ((size_t)n > xlen - 4) return -1;
    if (id == 1) {
      const uint8_t *q = x + 4, *e = x + 4 + n;
      uint64_t *f[3] = { usize, csize, off };
      for (int k = 0; k < 3; k++) {
        if (*f[k] != 0xffffffffu) continue;
        if (e - q < 8) return -1;
        *f[k] = rd64(q);
        q += 8;
      }
      return 0;
    }
    x += 4 + (size_t)n;
    xlen -= 4 + (size_t)n;
  }
  return 0;
}

/* Both sizes are below 4 GiB here (the archive and the unpacked bound
 * are), so one inflate call with the whole buffers does it. */
static int inflate_member(const uint8_t *src, size_t clen, uint8_t *dst, size_t ulen) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) return -1;
  zs.next_in = (Bytef *)src;
  zs.avail_in = (uInt)clen;
  zs.next_out = dst;
  zs.avail_out = (uInt)ulen;
  int r = inflate(&zs, Z_FINISH);
  int ok = r == Z_STREAM_END && zs.avail_out == 0 && zs.avail_in == 0;
  inflateEnd(&zs);
  return ok ? 0 : -1;
}

int dynq__npz_parse(const void *buf, size_t len, dynq__npz_t *ret, char *err,
                    size_t errlen) {
  const uint8_t *b = buf;
  dynq__npz_t z = { 0, NULL };
  uint8_t *tmp = NULL;
  int rc = 0;
  char name[DYNQ__NPZ_MAX_NAME + 1];

  if (len < END_LEN || (len >= 4 && rd32(b) != SIG_LOCAL && rd32(b) != SIG_END))
    return fail(err, errlen, DYNQ_EFORMAT, "not an .npz file (no ZIP signature; "
                "write it with numpy.savez)");
  /* The end record sits in the last 22 + 65535 (comment) bytes. */
  size_t e = len - END_LEN, stop = len > END_LEN + 65535 ? len - END_LEN - 65535 : 0;
  for (;;) {
    if (rd32(b + e) == SIG_END && (size_t)rd16(b + e + 20) == len - e - END_LEN) break;
    if (e == stop)
      return fail(err, errlen, DYNQ_EFORMAT, "not an .npz file (no ZIP end record: truncated?)");
    e--;
  }
  uint16_t disk = rd16(b + e + 4), cdisk = rd16(b + e + 6);
  uint32_t count = rd16(b + e + 10), cd_size = rd32(b + e + 12), cd_off = rd32(b + e + 16);
  if (disk != 0 || cdisk != 0 || rd16(b + e + 8) != count)
    return fail(err, errlen, DYNQ_EFORMAT, "npz: multi-part ZIP archives are not supported");
  if (count == 0xffff || cd_off == 0xffffffffu)
    return fail(err, errlen, DYNQ_ELIMIT, "npz: zip64 archive (more than 65535 members or "
                "past 4 GiB) is not supported");
  if (count > DYNQ__NPZ_MAX_MEMBERS)
    return fail(err, errlen, DYNQ_ELIMIT, "npz: %u members, at most %d", (unsigned)count,
                DYNQ__NPZ_MAX_MEMBERS);
  if ((size_t)cd_off > e || (size_t)cd_size > e - cd_off)
    return fail(err, errlen, DYNQ_EFORMAT, "npz: central directory outside the file");
  z.t = calloc(count ? count : 1, sizeof(*z.t));
  if (z.t == NULL) return fail(err, errlen, -ENOMEM, "npz: out of memory");

  size_t p = cd_off, cd_end = (size_t)cd_off + cd_size, total = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (cd_end - p < CENTRAL_LEN || rd32(b + p) != SIG_CENTRAL) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: central directory entry %u is damaged", i);
      goto fail;
    }
    const uint8_t *h = b + p;
    uint16_t flags = rd16(h + 8), method = rd16(h + 10);
    uint32_t crc = rd32(h + 16);
    uint64_t csize = rd32(h + 20), usize = rd32(h + 24), off = rd32(h + 42);
    size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
    if (cd_end - p - CENTRAL_LEN < nlen + xlen + clen) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: central directory entry %u runs past its end", i);
      goto fail;
    }
    if (nlen > DYNQ__NPZ_MAX_NAME) {
      rc = fail(err, errlen, DYNQ_ELIMIT, "npz: member %u has a %zu-byte name (at most %d)", i,
                nlen, DYNQ__NPZ_MAX_NAME);
      goto fail;
    }
    memcpy(name, h + CENTRAL_LEN, nlen);
    name[nlen] = 0;
    if (memchr(name, 0, nlen) != NULL || nlen <= 4 || strcmp(name + nlen - 4, ".npy") != 0) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s' is not a named .npy array", name);
      goto fail;
    }
    if (zip64_fix(h + CENTRAL_LEN + nlen, xlen, &usize, &csize, &off) != 0) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s': bad zip64 extra field", name);
      goto fail;
    }
    p += CENTRAL_LEN + nlen + xlen + clen;
    if (flags & 1) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s' is encrypted", name);
      goto fail;
    }
    if (method != 0 && method != 8) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s' uses ZIP compression method %u "
                "(only stored and deflate: numpy.savez or numpy.savez_compressed)", name, method);
      goto fail;
    }
    if (usize > DYNQ__NPZ_MAX_UNPACKED || total + usize > DYNQ__NPZ_MAX_UNPACKED) {
      rc = fail(err, errlen, DYNQ_ELIMIT, "npz: member '%s' unpacks to more than %zu bytes "
                "in all", name, DYNQ__NPZ_MAX_UNPACKED);
      goto fail;
    }
    total += usize;
    /* deflate expands at most ~1032:1: a larger claim is a lie that
     * would only make us allocate */
    if (method == 8 && usize / 1032 > csize + 1) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s' claims %llu bytes from %llu "
                "deflated ones", name, (unsigned long long)usize, (unsigned long long)csize);
      goto fail;
    }
    if (method == 0 && csize != usize) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: stored member '%s' has sizes %llu and %llu",
                name, (unsigned long long)csize, (unsigned long long)usize);
      goto fail;
    }
    /* Local header: only its name and extra lengths matter (they may
     * differ from the central copy: numpy adds a zip64 field there). */
    if (off > cd_off || cd_off - off < LOCAL_LEN || rd32(b + off) != SIG_LOCAL) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s': local header missing at offset %llu",
                name, (unsigned long long)off);
      goto fail;
    }
    uint64_t data = off + LOCAL_LEN + rd16(b + off + 26) + rd16(b + off + 28);
    if (data > cd_off || csize > cd_off - data) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s': data runs past the archive "
                "(truncated?)", name);
      goto fail;
    }
    const uint8_t *member = b + data;
    if (method == 8) {
      tmp = malloc(usize ? usize : 1);
      if (tmp == NULL) {
        rc = fail(err, errlen, -ENOMEM, "npz: out of memory for member '%s'", name);
        goto fail;
      }
      if (inflate_member(member, csize, tmp, usize) != 0) {
        rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s': deflate data is damaged or "
                  "does not unpack to %llu bytes", name, (unsigned long long)usize);
        goto fail;
      }
      member = tmp;
    }
    uLong c = crc32(0L, Z_NULL, 0);
    for (uint64_t o = 0; o < usize;) {
      uInt n = usize - o > (1u << 30) ? (1u << 30) : (uInt)(usize - o);
      c = crc32(c, member + o, n);
      o += n;
    }
    if ((uint32_t)c != crc) {
      rc = fail(err, errlen, DYNQ_EFORMAT, "npz: member '%s': CRC-32 mismatch (damaged file)",
                name);
      goto fail;
    }
    name[nlen - 4] = 0;
    char msg[256];
    rc = dynq__npy_parse(member, usize, &z.t[z.n], msg, sizeof(msg));
    free(tmp);
    tmp = NULL;
    if (rc != 0) {
      fail(err, errlen, rc, "npz: array '%s': %s", name, msg);
      goto fail;
    }
    z.t[z.n].name = strdup(name);
    z.n++;
    if (z.t[z.n - 1].name == NULL) {
      rc = fail(err, errlen, -ENOMEM, "npz: out of memory");
      goto fail;
    }
    for (int k = 0; k + 1 < z.n; k++)
      if (strcmp(z.t[k].name, name) == 0) {
        rc = fail(err, errlen, DYNQ_EFORMAT, "npz: array '%s' appears twice", name);
        goto fail;
      }
  }
  *ret = z;
  return 0;
fail:
  free(tmp);
  dynq__npz_free(&z);
  return rc;
}

int dynq__npz_load(const char *path, dynq__npz_t *ret, char *err, size_t errlen) {
  /* members may unpack to the bound; the archive itself is no larger
   * (stored) plus headers */
  const size_t max = DYNQ__NPZ_MAX_UNPACKED + ((size_t)1 << 20);
  char msg[384];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail(err, errlen, -e, "%s: %s", path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail(err, errlen, DYNQ_EFORMAT, "%s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > max) {
    close(fd);
    return fail(err, errlen, DYNQ_ELIMIT, "%s: larger than %zu bytes", path, max);
  }
  size_t len = (size_t)st.st_size, got = 0;
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL) {
    close(fd);
    return fail(err, errlen, -ENOMEM, "%s: out of memory", path);
  }
  while (got < len) {
    ssize_t r = read(fd, buf + got, len - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  int rc = dynq__npz_parse(buf, got, ret, msg, sizeof(msg));
  free(buf);
  if (rc != 0) fail(err, errlen, rc, "%s: %s", path, msg);
  return rc;
}

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int dynq__npz_write(const char *path, int n, const dynq_tensor_t *t, char *err,
                    size_t errlen) {
  char tmp_path[4096];
  uint8_t hdr[DYNQ__NPY_HEADER_MAX];
  uint32_t *crcs = NULL, *offs = NULL, *sizes = NULL;
  uint64_t pos = 0;
  int rc = 0;
  FILE *f = NULL;

  if (n < 0 || n > DYNQ__NPZ_MAX_MEMBERS)
    return fail(err, errlen, DYNQ_ELIMIT, "npz: %d arrays, at most %d", n, DYNQ__NPZ_MAX_MEMBERS);
  for (int i = 0; i < n; i++) {
    if (t[i].name == NULL || t[i].name[0] == 0 || strlen(t[i].name) + 4 > DYNQ__NPZ_MAX_NAME)
      return fail(err, errlen, DYNQ_EPARAMS, "npz: array %d needs a name of 1..%d bytes", i,
                  DYNQ__NPZ_MAX_NAME - 4);
    for (int k = 0; k < i; k++)
      if (strcmp(t[k].name, t[i].name) == 0)
        return fail(err, errlen, DYNQ_EPARAMS, "npz: array name '%s' given twice", t[i].name);
  }
  if ((size_t)snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", path) >= sizeof(tmp_path))
    return fail(err, errlen, -ENAMETOOLONG, "%s: path too long", path);
  crcs = calloc((size_t)n + 1, sizeof(uint32_t));
  offs = calloc((size_t)n + 1, sizeof(uint32_t));
  sizes = calloc((size_t)n + 1, sizeof(uint32_t));
  if (crcs == NULL || offs == NULL || sizes == NULL) {
    rc = fail(err, errlen, -ENOMEM, "npz: out of memory");
    goto out;
  }
  f = fopen(tmp_path, "wb");
  if (f == NULL) {
    rc = -errno;
    fail(err, errlen, rc, "cannot create %s: %s", tmp_path, strerror(-rc));
    goto out;
  }
  for (int i = 0; i < n; i++) {
    int hl = dynq__npy_header(&t[i], hdr, sizeof(hdr), err, errlen);
    if (hl < 0) {
      rc = hl;
      goto out;
    }
    uint64_t size = (uint64_t)hl + t[i].nbytes;
    size_t nl = strlen(t[i].name) + 4;
    if (size >= 0xffffffffu || pos + LOCAL_LEN + nl + size >= 0xffffffffu) {
      rc = fail(err, errlen, DYNQ_ELIMIT, "npz: archive would pass 4 GiB at '%s'", t[i].name);
      goto out;
    }
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, hdr, (uInt)hl);
    if (t[i].nbytes) c = crc32(c, t[i].data, (uInt)t[i].nbytes);
    crcs[i] = (uint32_t)c;
    offs[i] = (uint32_t)pos;
    sizes[i] = (uint32_t)size;
    uint8_t lh[LOCAL_LEN] = { 0 };
    wr32(lh, SIG_LOCAL);
    wr16(lh + 4, 20);           /* version needed: 2.0 */
    wr16(lh + 12, 0x21);        /* DOS date 1980-01-01: reproducible archives */
    wr32(lh + 14, crcs[i]);
    wr32(lh + 18, sizes[i]);
    wr32(lh + 22, sizes[i]);
    wr16(lh + 26, (uint32_t)nl);
    if (put(f, lh, sizeof(lh)) || put(f, t[i].name, nl - 4) || put(f, ".npy", 4) ||
        put(f, hdr, (size_t)hl) || (t[i].nbytes && put(f, t[i].data, t[i].nbytes)))
      goto io;
    pos += LOCAL_LEN + nl + size;
  }
  uint64_t cd_off = pos;
  for (int i = 0; i < n; i++) {
    size_t nl = strlen(t[i].name) + 4;
    uint8_t ch[CENTRAL_LEN] = { 0 };
    wr32(ch, SIG_CENTRAL);
    wr16(ch + 4, 20);
    wr16(ch + 6, 20);
    wr16(ch + 14, 0x21);
    wr32(ch + 16, crcs[i]);
    wr32(ch + 20, sizes[i]);
    wr32(ch + 24, sizes[i]);
    wr16(ch + 28, (uint32_t)nl);
    wr32(ch + 38, 0644u << 16); /* external attributes: a regular file's mode */
    wr32(ch + 42, offs[i]);
    if (put(f, ch, sizeof(ch)) || put(f, t[i].name, nl - 4) || put(f, ".npy", 4)) goto io;
    pos += CENTRAL_LEN + nl;
  }
  if (pos >= 0xffffffffu) {
    rc = fail(err, errlen, DYNQ_ELIMIT, "npz: archive would pass 4 GiB");
    goto out;
  }
  uint8_t eh[END_LEN] = { 0 };
  wr32(eh, SIG_END);
  wr16(eh + 8, (uint32_t)n);
  wr16(eh + 10, (uint32_t)n);
  wr32(eh + 12, (uint32_t)(pos - cd_off));
  wr32(eh + 16, (uint32_t)cd_off);
  if (put(f, eh, sizeof(eh))) goto io;
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) goto io;
  if (fclose(f) != 0) {
    f = NULL;
    goto io;
  }
  f = NULL;
  if (rename(tmp_path, path) != 0) {
    rc = -errno;
    fail(err, errlen, rc, "cannot rename %s to %s: %s", tmp_path, path, strerror(-rc));
    goto out;
  }
  goto out;
io:
  rc = errno ? -errno : -EIO;
  fail(err, errlen, rc, "cannot write %s: %s", tmp_path, strerror(-rc));
out:
  if (f != NULL) fclose(f);
  if (rc != 0) unlink(tmp_path);
  free(crcs);
  free(offs);
  free(sizes);
  return rc;
}
