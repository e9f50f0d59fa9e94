/*
 * dynqctl's WAV reader: RIFF/WAVE files holding 16-bit PCM mono, the input
 * of `dynqctl stream`.  The whole RIFF structure is checked (RIFF size
 * against the file, every chunk's size against its parent, one fmt chunk
 * before the data chunk, fmt fields consistent with each other); anything
 * else is refused with a message naming the field, never read past.
 */
#include "dynqctl-io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

#define WAVE_FORMAT_PCM 0x0001
#define WAVE_FORMAT_EXTENSIBLE 0xfffe

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
  va_list ap;
  if (err != NULL && errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* A chunk id for messages: printable bytes, else hex. */
static void id_str(char out[20], const uint8_t *id) {
  int printable = 1;
  for (int i = 0; i < 4; i++)
    if (id[i] < 0x20 || id[i] > 0x7e) printable = 0;
  if (printable)
    snprintf(out, 20, "'%c%c%c%c'", id[0], id[1], id[2], id[3]);
  else
    snprintf(out, 20, "0x%02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
}

/* The GUID tail every KSDATAFORMAT_SUBTYPE_* shares; the first two bytes
 * carry the plain format tag. */
static const uint8_t guid_tail[14] = { 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                       0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71 };

static int check_fmt(const uint8_t *p, uint32_t size, uint32_t *ret_rate,
                     char *err, size_t errlen) {
  uint16_t tag, channels, align, bits;
  uint32_t rate, byte_rate;

  if (size < 16)
    return fail(err, errlen, DYNQ_EFORMAT, "fmt chunk is %u bytes, at least 16 needed", size);
  tag = le16(p);
  channels = le16(p + 2);
  rate = le32(p + 4);
  byte_rate = le32(p + 8);
  align = le16(p + 12);
  bits = le16(p + 14);
  if (tag == WAVE_FORMAT_EXTENSIBLE) {
    uint16_t cb;
    if (size < 40)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "fmt chunk is WAVE_FORMAT_EXTENSIBLE but only %u bytes (40 needed)", size);
    cb = le16(p + 16);
    if (cb < 22)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "WAVE_FORMAT_EXTENSIBLE extension is %u bytes (22 needed)", cb);
    if (memcmp(p + 26, guid_tail, sizeof(guid_tail)) != 0)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "WAVE_FORMAT_EXTENSIBLE with an unknown sub-format GUID");
    tag = le16(p + 24);
  }
  if (tag != WAVE_FORMAT_PCM)
    return fail(err, errlen, DYNQ_EFORMAT,
                "audio format %u is not PCM (1): only 16-bit PCM is supported "
                "(convert with e.g. 'sox in.wav -e signed -b 16 out.wav')", tag);
  if (channels != 1)
    return fail(err, errlen, DYNQ_EFORMAT,
                "%u channels: only mono is supported (convert with e.g. "
                "'sox in.wav -c 1 out.wav')", channels);
  if (bits != 16)
    return fail(err, errlen, DYNQ_EFORMAT,
                "%u bits per sample: only 16-bit PCM is supported", bits);
  if (rate == 0 || rate > DYNQ__WAV_MAX_RATE)
    return fail(err, errlen, DYNQ_EFORMAT, "sample rate %u Hz outside 1..%u", rate,
                DYNQ__WAV_MAX_RATE);
  if (align != 2)
    return fail(err, errlen, DYNQ_EFORMAT,
                "block align %u does not match 16-bit mono (2)", align);
  if (byte_rate != rate * 2u)
    return fail(err, errlen, DYNQ_EFORMAT,
                "byte rate %u does not match %u Hz 16-bit mono (%u)", byte_rate, rate,
                rate * 2u);
  *ret_rate = rate;
  return 0;
}

int dynq__wav_parse(const void *buf, size_t len, dynq__wav_t *ret, char *err,
                    size_t errlen) {
  const uint8_t *b = buf;
  uint32_t riff_size, rate = 0;
  const uint8_t *data = NULL;
  uint32_t data_size = 0;
  int have_fmt = 0;
  size_t off, end;
  int16_t *samples;
  char id[20];

  if (b == NULL || ret == NULL) return -EINVAL;
  if (len < 12)
    return fail(err, errlen, DYNQ_EFORMAT, "%zu bytes: too short for a RIFF header (12)", len);
  if (memcmp(b, "RIFF", 4) != 0) {
    if (memcmp(b, "RIFX", 4) == 0 || memcmp(b, "RF64", 4) == 0)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "%.4s file: only little-endian RIFF WAV is supported", (const char *)b);
    return fail(err, errlen, DYNQ_EFORMAT, "not a WAV file (no RIFF magic)");
  }
  if (memcmp(b + 8, "WAVE", 4) != 0)
    return fail(err, errlen, DYNQ_EFORMAT, "RIFF file of form %.4s, not WAVE",
                (const char *)(b + 8));
  riff_size = le32(b + 4);
  if (riff_size < 4)
    return fail(err, errlen, DYNQ_EFORMAT, "RIFF size %u is smaller than its form type",
                riff_size);
  if ((uint64_t)riff_size + 8 > len)
    return fail(err, errlen, DYNQ_EFORMAT,
                "RIFF size says %llu bytes but the file has %zu (truncated?)",
                (unsigned long long)riff_size + 8, len);
  /* Bytes past the RIFF chunk are not ours to interpret: ignored. */
  end = (size_t)riff_size + 8;

  for (off = 12; off < end;) {
    uint32_t size;
    if (end - off < 8)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "%zu stray bytes at offset %zu: too short for a chunk header", end - off, off);
    id_str(id, b + off);
    size = le32(b + off + 4);
    if (size > end - off - 8)
      return fail(err, errlen, DYNQ_EFORMAT,
                  "chunk %s at offset %zu declares %u bytes, only %zu left in the RIFF data",
                  id, off, size, end - off - 8);
    if (memcmp(b + off, "fmt ", 4) == 0) {
      int r;
      if (have_fmt)
        return fail(err, errlen, DYNQ_EFORMAT, "second fmt chunk at offset %zu", off);
      r = check_fmt(b + off + 8, size, &rate, err, errlen);
      if (r < 0) return r;
      have_fmt = 1;
    } else if (memcmp(b + off, "data", 4) == 0) {
      if (!have_fmt)
        return fail(err, errlen, DYNQ_EFORMAT, "data chunk before the fmt chunk");
      if (data != NULL)
        return fail(err, errlen, DYNQ_EFORMAT, "second data chunk at offset %zu", off);
      if (size % 2 != 0)
        return fail(err, errlen, DYNQ_EFORMAT,
                    "data chunk of %u bytes is not a whole number of 16-bit samples", size);
      data = b + off + 8;
      data_size = size;
    }
    /* Chunks are padded to even sizes; a missing pad byte at the very end
     * is tolerated since many writers omit it. */
    off += 8 + (size_t)size;
    if (size % 2) off += off < end ? 1 : 0;
  }
  if (!have_fmt) return fail(err, errlen, DYNQ_EFORMAT, "no fmt chunk");
  if (data == NULL) return fail(err, errlen, DYNQ_EFORMAT, "no data chunk");
  if (data_size / 2 > DYNQ__WAV_MAX_SAMPLES)
    return fail(err, errlen, DYNQ_ELIMIT, "%u samples (limit %llu)", data_size / 2,
                (unsigned long long)DYNQ__WAV_MAX_SAMPLES);

  samples = malloc(data_size ? data_size : 1);
  if (samples == NULL) return fail(err, errlen, -ENOMEM, "out of memory");
  for (uint32_t i = 0; i < data_size / 2; i++) samples[i] = (int16_t)le16(data + 2 * i);
  ret->rate = rate;
  ret->n = data_size / 2;
  ret->samples = samples;
  return 0;
}

void dynq__wav_free(dynq__wav_t *w) {
  if (w == NULL) return;
  free(w->samples);
  memset(w, 0, sizeof(*w));
}

int dynq__wav_load(const char *path, dynq__wav_t *ret, char *err, size_t errlen) {
  /* the largest image dynq__wav_parse can accept, plus room for chunks */
  const size_t max = ((size_t)DYNQ__WAV_MAX_SAMPLES * 2) + ((size_t)1 << 20);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    int e = errno;
    return fail(err, errlen, -e, "%s: %s", path, strerror(e));
  }
  size_t len = 0, cap = 1 << 20;
  unsigned char *buf = malloc(cap);
  int rc = 0;
  while (buf != NULL) {
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) break;
    if (len == cap) {
      unsigned char *nb = cap < max ? realloc(buf, cap * 2 < max ? cap * 2 : max) : NULL;
      if (nb == NULL) {
        rc = cap < max ? fail(err, errlen, -ENOMEM, "%s: out of memory", path)
                       : fail(err, errlen, DYNQ_ELIMIT, "%s: larger than %zu bytes", path, max);
        break;
      }
      cap = cap * 2 < max ? cap * 2 : max;
      buf = nb;
    }
  }
  if (rc == 0 && buf == NULL) rc = fail(err, errlen, -ENOMEM, "%s: out of memory", path);
  if (rc == 0 && ferror(f)) rc = fail(err, errlen, -EIO, "%s: read error", path);
  fclose(f);
  if (rc == 0) rc = dynq__wav_parse(buf, len, ret, err, errlen);
  free(buf);
  return rc;
}

int dynq__wav_load_f32(const char *path, uint32_t rate, size_t min_n, float **ret,
                       size_t *ret_n, char *err, size_t errlen) {
  dynq__wav_t w;
  int rc = dynq__wav_load(path, &w, err, errlen);
  if (rc != 0) return rc;
  if (w.rate != rate || w.n < min_n) {
    rc = fail(err, errlen, DYNQ_EFORMAT, "%s: %u Hz, %zu samples; need %u Hz and at least %zu",
              path, (unsigned)w.rate, w.n, (unsigned)rate, min_n);
  } else if ((*ret = malloc(sizeof(float) * (w.n ? w.n : 1))) == NULL) {
    rc = fail(err, errlen, -ENOMEM, "%s: out of memory", path);
  } else {
    for (size_t i = 0; i < w.n; i++) (*ret)[i] = (float)w.samples[i] / 32768.0f;
    *ret_n = w.n;
  }
  dynq__wav_free(&w);
  return rc;
}
