/*
 * dynqctl's audio input: any file libsndfile decodes (WAV in its integer
 * and float encodings, FLAC, Ogg Vorbis/Opus, AIFF, AU, ...), at any rate
 * and channel count, turned into the one thing a streaming model takes:
 * mono float samples in [-1, 1] at the model's rate.  Channels are
 * averaged; the rate is converted with libsamplerate's sinc converter.
 *
 * The file is hostile input: libsndfile does the parsing, and everything
 * it reports (rate, channels, frame count, read errors) is checked here
 * against our own bounds before memory is sized from it.  Every failure is
 * a negative code with a message naming the file (or "buffer") and, where
 * libsndfile or libsamplerate refused, their own reason.
 */
#include "dynqctl-io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <samplerate.h>
#include <sndfile.h>

#include "dynq/errors.h"

/* Frames decoded per sf_readf_float call: bounds the interleaved scratch
 * buffer at BLOCK * channels floats whatever the file claims. */
#define BLOCK 4096

#define fail dynq__io_fail /* npy.c's: the I/O layer's one error formatter */

/* libsndfile's name for the container ("WAV (Microsoft)", "FLAC", ...),
 * or "?" for one it cannot name. */
static void format_name(int format, char *out, size_t cap) {
  SF_FORMAT_INFO fi;
  memset(&fi, 0, sizeof(fi));
  fi.format = format & SF_FORMAT_TYPEMASK;
  if (sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof(fi)) == 0 && fi.name != NULL)
    snprintf(out, cap, "%s", fi.name);
  else
    snprintf(out, cap, "?");
}

/* Decode every frame of sf (already open, described by si) into mono
 * floats.  A file that stops early (truncated, or frames counted wrong in
 * its header) gives the frames that decoded; a decode error mid-way is an
 * error, not a silent short clip. */
static int read_mono(SNDFILE *sf, const SF_INFO *si, const char *name, float **ret,
                     size_t *ret_n, char *err, size_t errlen) {
  const size_t ch = (size_t)si->channels;
  float *block = malloc(sizeof(float) * BLOCK * ch);
  float *mono = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;

  if (block == NULL) return fail(err, errlen, -ENOMEM, "%s: out of memory", name);
  for (;;) {
    sf_count_t got = sf_readf_float(sf, block, BLOCK);
    if (got <= 0) break;
    if ((uint64_t)n + (uint64_t)got > DYNQ__AUDIO_MAX_SAMPLES) {
      rc = fail(err, errlen, DYNQ_ELIMIT, "%s: more than %llu samples per channel", name,
                (unsigned long long)DYNQ__AUDIO_MAX_SAMPLES);
      goto fail;
    }
    if (n + (size_t)got > cap) {
      size_t ncap = cap ? cap * 2 : BLOCK * 16;
      while (ncap < n + (size_t)got) ncap *= 2;
      if (ncap > DYNQ__AUDIO_MAX_SAMPLES) ncap = DYNQ__AUDIO_MAX_SAMPLES;
      float *nm = realloc(mono, sizeof(float) * ncap);
      if (nm == NULL) {
        rc = fail(err, errlen, -ENOMEM, "%s: out of memory", name);
        goto fail;
      }
      mono = nm;
      cap = ncap;
    }
    /* Averaging keeps a mono signal duplicated to N channels unchanged and
     * can never leave [-1, 1] for in-range input. */
    for (sf_count_t f = 0; f < got; f++) {
      const float *fr = block + (size_t)f * ch;
      double s = 0;
      for (size_t c = 0; c < ch; c++) s += fr[c];
      mono[n + (size_t)f] = (float)(s / (double)ch);
    }
    n += (size_t)got;
  }
  if (sf_error(sf) != SF_ERR_NO_ERROR) {
    rc = fail(err, errlen, DYNQ_EFORMAT, "%s: decoding failed after %zu frames: %s", name, n,
              sf_strerror(sf));
    goto fail;
  }
  free(block);
  *ret = mono;
  *ret_n = n;
  return 0;

fail:
  free(block);
  free(mono);
  return rc;
}

/* Convert in[0, n) from `from` Hz to `to` Hz into a malloc'd buffer. */
static int resample(const float *in, size_t n, uint32_t from, uint32_t to, const char *name,
                    float **ret, size_t *ret_n, char *err, size_t errlen) {
  double ratio = (double)to / (double)from;
  /* a few frames beyond n*ratio: the converter rounds per call */
  double want = (double)n * ratio + 16;
  SRC_DATA d;
  float *out;
  int r;

  if (want > (double)DYNQ__AUDIO_MAX_SAMPLES)
    return fail(err, errlen, DYNQ_ELIMIT, "%s: %zu samples at %u Hz are more than %llu at %u Hz",
                name, n, from, (unsigned long long)DYNQ__AUDIO_MAX_SAMPLES, to);
  out = malloc(sizeof(float) * (size_t)want);
  if (out == NULL) return fail(err, errlen, -ENOMEM, "%s: out of memory", name);
  memset(&d, 0, sizeof(d));
  d.data_in = in;
  d.input_frames = (long)n;
  d.data_out = out;
  d.output_frames = (long)want;
  d.src_ratio = ratio;
  /* Medium sinc: flat to well above what speech models use, and several
   * times faster than the best converter on long files. */
  r = src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 1);
  if (r != 0) {
    free(out);
    return fail(err, errlen, DYNQ_EFORMAT, "%s: resampling %u Hz to %u Hz failed: %s", name,
                from, to, src_strerror(r));
  }
  *ret = out;
  *ret_n = (size_t)d.output_frames_gen;
  return 0;
}

/* Everything after the open: check what libsndfile says, decode, convert.
 * Closes sf. */
static int decode(SNDFILE *sf, const SF_INFO *si, const char *name, uint32_t rate,
                  dynq__audio_t *ret, char *err, size_t errlen) {
  dynq__audio_t a;
  float *mono = NULL;
  size_t n = 0;
  int rc;

  memset(&a, 0, sizeof(a));
  format_name(si->format, a.format, sizeof(a.format));
  if (si->samplerate <= 0 || (uint32_t)si->samplerate > DYNQ__AUDIO_MAX_RATE) {
    rc = fail(err, errlen, DYNQ_EFORMAT, "%s: sample rate %d Hz outside 1..%u", name,
              si->samplerate, DYNQ__AUDIO_MAX_RATE);
    goto out;
  }
  if (si->channels <= 0 || si->channels > DYNQ__AUDIO_MAX_CHANNELS) {
    rc = fail(err, errlen, DYNQ_EFORMAT, "%s: %d channels outside 1..%d", name, si->channels,
              DYNQ__AUDIO_MAX_CHANNELS);
    goto out;
  }
  a.file_rate = (uint32_t)si->samplerate;
  a.channels = si->channels;
  a.rate = rate ? rate : a.file_rate;
  /* checked before decoding: a rate that cannot be converted is refused
   * as such even when the file holds no samples */
  if (a.rate != a.file_rate && !src_is_valid_ratio((double)a.rate / a.file_rate)) {
    rc = fail(err, errlen, DYNQ_EFORMAT,
              "%s: cannot resample %u Hz to %u Hz (libsamplerate converts ratios from 1/256 "
              "to 256)", name, a.file_rate, a.rate);
    goto out;
  }
  rc = read_mono(sf, si, name, &mono, &n, err, errlen);
  if (rc != 0) goto out;
  if (a.rate != a.file_rate && n > 0) {
    rc = resample(mono, n, a.file_rate, a.rate, name, &a.samples, &a.n, err, errlen);
    free(mono);
    if (rc != 0) goto out;
  } else {
    a.samples = mono;
    a.n = n;
  }
  *ret = a;
out:
  sf_close(sf);
  return rc;
}

int dynq__audio_load(const char *path, uint32_t rate, dynq__audio_t *ret, char *err,
                     size_t errlen) {
  SF_INFO si;
  SNDFILE *sf;
  struct stat st;
  int fd;

  if (path == NULL || ret == NULL) return -EINVAL;
  if (rate > DYNQ__AUDIO_MAX_RATE)
    return fail(err, errlen, -EINVAL, "%s: target rate %u Hz outside 1..%u", path, rate,
                DYNQ__AUDIO_MAX_RATE);
  /* Opened here rather than by sf_open so a missing or unreadable file is
   * reported as the system's error, and a directory is not handed to a
   * decoder. */
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail(err, errlen, -e, "%s: %s", path, strerror(e));
  }
  if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
    close(fd);
    return fail(err, errlen, -e, "%s: %s", path, strerror(e));
  }
  memset(&si, 0, sizeof(si));
  sf = sf_open_fd(fd, SFM_READ, &si, 1);
  if (sf == NULL) {
    /* libsndfile leaves the descriptor to us when the open fails */
    close(fd);
    return fail(err, errlen, DYNQ_EFORMAT, "%s: not an audio file libsndfile can read: %s",
                path, sf_strerror(NULL));
  }
  return decode(sf, &si, path, rate, ret, err, errlen);
}

/* ---- an in-memory image through libsndfile's virtual I/O ---- */

typedef struct membuf {
  const unsigned char *b;
  sf_count_t len, pos;
} membuf_t;

static sf_count_t mem_len(void *u) { return ((membuf_t *)u)->len; }

static sf_count_t mem_seek(sf_count_t off, int whence, void *u) {
  membuf_t *m = u;
  sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
  /* out-of-range seeks are refused rather than clamped, so the decoder
   * sees the failure instead of reading the wrong bytes */
  if ((off < 0 && -off > base) || (off > 0 && off > m->len - base)) return -1;
  m->pos = base + off;
  return m->pos;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *u) {
  membuf_t *m = u;
  sf_count_t left = m->len - m->pos;
  if (count < 0) return 0;
  if (count > left) count = left;
  memcpy(ptr, m->b + m->pos, (size_t)count);
  m->pos += count;
  return count;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *u) {
  (void)ptr, (void)count, (void)u;
  return 0;
}

static sf_count_t mem_tell(void *u) { return ((membuf_t *)u)->pos; }

int dynq__audio_decode(const void *buf, size_t len, uint32_t rate, dynq__audio_t *ret,
                       char *err, size_t errlen) {
  SF_VIRTUAL_IO io = { mem_len, mem_seek, mem_read, mem_write, mem_tell };
  membuf_t m = { buf, (sf_count_t)len, 0 };
  SF_INFO si;
  SNDFILE *sf;

  if ((buf == NULL && len > 0) || ret == NULL) return -EINVAL;
  if (rate > DYNQ__AUDIO_MAX_RATE)
    return fail(err, errlen, -EINVAL, "buffer: target rate %u Hz outside 1..%u", rate,
                DYNQ__AUDIO_MAX_RATE);
  if (buf == NULL) m.b = (const unsigned char *)"";
  memset(&si, 0, sizeof(si));
  sf = sf_open_virtual(&io, SFM_READ, &si, &m);
  if (sf == NULL)
    return fail(err, errlen, DYNQ_EFORMAT, "not an audio file libsndfile can read: %s",
                sf_strerror(NULL));
  return decode(sf, &si, "buffer", rate, ret, err, errlen);
}

void dynq__audio_free(dynq__audio_t *a) {
  if (a == NULL) return;
  free(a->samples);
  memset(a, 0, sizeof(*a));
}
