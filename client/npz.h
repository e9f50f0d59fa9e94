/*
 * NumPy .npz archives (a ZIP of .npy members, one per named array), read
 * and written for dynqctl (--record, --input) and dynq-quantize
 * (--calibrate).  A small static library of its own (with npy.c) so both
 * link the same parser; it depends on the public tensor type and zlib.
 *
 * Reading treats the file as hostile: the central directory is located
 * and bounded, every offset and size is checked against the image before
 * use, members are stored (np.savez) or deflated (np.savez_compressed),
 * the CRC-32 of each member is verified, and limits cap the member count,
 * name length and unpacked bytes.  Every failure is a negative code with a
 * message naming the member at fault; nothing is left allocated.
 *
 * Writing produces stored members with plain (non-zip64) headers, which
 * numpy.load reads; an archive past 4 GiB is refused.
 */
#ifndef DYNQ_NPZ_H
#define DYNQ_NPZ_H

#include <stddef.h>

#include "dynq/dynqclient.h"

#define DYNQ__NPZ_MAX_MEMBERS 1024
#define DYNQ__NPZ_MAX_NAME 255                       /* bytes, ".npy" included */
#define DYNQ__NPZ_MAX_UNPACKED ((size_t)1 << 31)     /* per member and in total */

typedef struct dynq__npz {
  int n;                    /* arrays, in archive order */
  dynq_tensor_t *t;         /* owned [n]: t[i].name (owned, without ".npy")
                               and t[i].data (malloc'd) */
} dynq__npz_t;

/* Parse a whole .npz image.  Errors: DYNQ_EFORMAT (not a ZIP, truncated,
 * bad offsets, a member that is not .npy, an unsupported compression,
 * CRC mismatch, duplicate names), DYNQ_ELIMIT (members, name length,
 * unpacked bytes), the npy parser's codes for a bad member, -ENOMEM.
 * err names the member. */
int dynq__npz_parse(const void *buf, size_t len, dynq__npz_t *ret, char *err,
                    size_t errlen);
/* Read the file at path (bounded) and parse it; also -errno, with err
 * naming the file. */
int dynq__npz_load(const char *path, dynq__npz_t *ret, char *err, size_t errlen);
void dynq__npz_free(dynq__npz_t *z); /* NULL-safe; leaves *z empty */

/* The array named `name`, or NULL. */
const dynq_tensor_t *dynq__npz_find(const dynq__npz_t *z, const char *name);

/* Write t[0..n) (each t[i].name set, unique) as an .npz at path, via
 * path.tmp and rename, so a reader never sees half a file.  0, or
 * -errno / DYNQ_EDTYPE / DYNQ_ELIMIT / DYNQ_EPARAMS with err set. */
int dynq__npz_write(const char *path, int n, const dynq_tensor_t *t, char *err,
                    size_t errlen);

#endif
