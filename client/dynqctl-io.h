/*
 * dynqctl's file formats: NumPy .npy read/write, JSON number arrays and
 * audio files (audio.c); and its renderings of dynqd's stats (prom.c).
 * Private to dynqctl (and compiled into tests/test-client); not part of
 * libdynqclient.  Parsers treat their input as hostile: every failure is a
 * negative code with a message naming what was wrong, never a crash.
 *
 * Tensors produced here are dynq_tensor_t with name NULL and data malloc'd
 * (free with dynq__io_tensor_free).
 */
#ifndef DYNQ_DYNQCTL_IO_H
#define DYNQ_DYNQCTL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dynq/dynqclient.h"

/* Largest tensor these parsers build (elements); matches the server's
 * per-tensor bound. */
#define DYNQ__IO_MAX_ELEMS ((int64_t)1 << 31)

/* Deepest JSON nesting accepted (one array level per dimension). */
#define DYNQ__JSON_MAX_DEPTH DYNQ_CLIENT_MAX_RANK

/* vsnprintf into err (when non-NULL) and return code: the parsers' one
 * failure path. */
int dynq__io_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parse a whole .npy image (format 1.0, 2.0 or 3.0; little-endian f4, i1,
 * u1, i4, i8; C order).  Errors: DYNQ_EFORMAT (magic, header),
 * DYNQ_EDTYPE, DYNQ_ESHAPE (rank), DYNQ_ELIMIT (too many elements),
 * DYNQ_EDATA (data shorter or longer than the shape), -ENOMEM. */
int dynq__npy_parse(const void *buf, size_t len, dynq_tensor_t *ret,
                    char *err, size_t errlen);

/* The .npy (format 1.0) preamble and header for t, padded so the data
 * starts 64-aligned, into buf[0, cap): its length, or DYNQ_EDTYPE /
 * DYNQ_ESHAPE / DYNQ_ELIMIT (cap too small; DYNQ__NPY_HEADER_MAX always
 * suffices). */
#define DYNQ__NPY_HEADER_MAX 576
int dynq__npy_header(const dynq_tensor_t *t, uint8_t *buf, size_t cap, char *err,
                     size_t errlen);

/* Write t as a .npy (format 1.0) file at path.  0 or -errno/DYNQ_EDTYPE. */
int dynq__npy_write(const char *path, const dynq_tensor_t *t, char *err,
                    size_t errlen);

/* Parse JSON nested arrays of numbers into a float32 tensor whose shape is
 * the nesting.  Errors: DYNQ_EFORMAT (not JSON / not an array of numbers),
 * DYNQ_ESHAPE (ragged), DYNQ_EDEPTH (deeper than DYNQ__JSON_MAX_DEPTH),
 * DYNQ_ENUMERIC (number outside float32 range), DYNQ_ELIMIT, -ENOMEM. */
int dynq__json_parse(const char *s, size_t len, dynq_tensor_t *ret,
                     char *err, size_t errlen);
/* The same as a tensor of dtype (DYNQ_FLOAT32 ... DYNQ_INT64), and a bare
 * number as a rank-0 tensor.  Integer dtypes take integers only (no '.' or
 * exponent: DYNQ_EDTYPE), converted exactly and range-checked
 * (DYNQ_ENUMERIC). */
int dynq__json_parse_as(const char *s, size_t len, int dtype, dynq_tensor_t *ret,
                        char *err, size_t errlen);

void dynq__io_tensor_free(dynq_tensor_t *t);

/* Decoded audio: mono float samples at `rate` Hz (audio.c, libsndfile and
 * libsamplerate).  Channels are averaged; integer encodings are scaled by
 * libsndfile to [-1, 1) (16-bit: sample / 32768). */
typedef struct dynq__audio {
  uint32_t rate;          /* Hz of samples[] (the target, or the file's) */
  uint32_t file_rate;     /* Hz the file was recorded at */
  int channels;           /* the file's, 1..DYNQ__AUDIO_MAX_CHANNELS */
  char format[64];        /* libsndfile's container name, e.g. "FLAC" */
  size_t n;               /* samples, <= DYNQ__AUDIO_MAX_SAMPLES */
  float *samples;         /* owned; malloc'd; dynq__audio_free() */
} dynq__audio_t;

#define DYNQ__AUDIO_MAX_RATE 768000u
#define DYNQ__AUDIO_MAX_CHANNELS 256
/* 2^28 floats (1 GiB): about 4.6 hours at 16 kHz, per channel and after
 * conversion. */
#define DYNQ__AUDIO_MAX_SAMPLES ((uint64_t)1 << 28)

/* Decode the audio file at path and convert it to mono at `rate` Hz (0:
 * keep the file's rate).  Errors, with err naming the file: -errno (open,
 * a directory is -EISDIR), DYNQ_EFORMAT (libsndfile cannot read it, with
 * its reason; rate or channel count out of bounds; a decode error part
 * way; a rate ratio libsamplerate cannot convert, beyond 256 either way),
 * DYNQ_ELIMIT, -ENOMEM.  An empty file is not an error (n == 0). */
int dynq__audio_load(const char *path, uint32_t rate, dynq__audio_t *ret, char *err,
                     size_t errlen);
/* The same on an in-memory file image (messages say "buffer"). */
int dynq__audio_decode(const void *buf, size_t len, uint32_t rate, dynq__audio_t *ret,
                       char *err, size_t errlen);
void dynq__audio_free(dynq__audio_t *a);

/* Stats as Prometheus text exposition format (HELP/TYPE lines, metric
 * names dynq_*), and as the human table of `dynqctl stats`. */
void dynq__prom_render(const dynq_stats_t *s, FILE *f);
void dynq__stats_table(const dynq_stats_t *s, FILE *f);

#endif
