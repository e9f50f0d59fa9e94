/*
 * The .dynq v1 on-disk layout (docs/FORMAT.md).  Little-endian, every
 * struct a fixed size checked by static_assert; every offset in the file
 * is absolute.  Nothing in a file is trusted: format.c validates each
 * field before the graph built from it is used.
 *
 *   [header 64][section table n*32][sections ... ][DATA (64-aligned)]
 */
#ifndef DYNQ_FORMAT_H
#define DYNQ_FORMAT_H

#include <assert.h>
#include <stdint.h>

#include "graph.h"

#define DYNQ_FILE_MAGIC "DYNQMODL"
#define DYNQ_FILE_VERSION 1
#define DYNQ_FILE_MAX_SECTIONS 16
#define DYNQ_FILE_MAX_VALUES (1 << 20)
#define DYNQ_FILE_MAX_NODES (1 << 20)
#define DYNQ_FILE_MAX_ARITY 64   /* inputs or outputs of one node */
#define DYNQ_FILE_MAX_ATTRS 64   /* per node */

enum dynq__section_kind {
  DYNQ_SEC_STRINGS = 1, /* NUL-terminated strings; offset 0 is "" */
  DYNQ_SEC_VALUES = 2,  /* dynq__fvalue_t[count] */
  DYNQ_SEC_NODES = 3,   /* dynq__fnode_t[count] */
  DYNQ_SEC_REFS = 4,    /* int32_t[count]: value indices, -1 = omitted */
  DYNQ_SEC_ATTRS = 5,   /* dynq__fattr_t[count] */
  DYNQ_SEC_META = 6,    /* one dynq__fmeta_t */
  DYNQ_SEC_DATA = 7,    /* constant payloads, each 64-aligned */
  DYNQ_SEC__COUNT
};

/* Header flags: each marks a feature that a reader without it would
 * misread silently (new attributes on an old op are ignored, not
 * refused), so such a reader must refuse the file instead.  Readers of
 * version 1 require flags == 0; a reader refuses any bit it does not know. */
#define DYNQ_FFLAG_CONV_EPILOGUE 0x1u /* Conv/QConv nodes carry fused act/pre_/post_ attributes */
/* AveragePool nodes with a dilation > 1 and count_include_pad (readers
 * before opset 19's dilations divided by the undilated window) */
#define DYNQ_FFLAG_AVGPOOL_DILATED 0x2u
/* Resize nodes with opset 18's antialias, axes or keep_aspect_ratio_policy
 * (readers before them ignored the attributes) */
#define DYNQ_FFLAG_RESIZE18 0x4u
/* Cast nodes to bfloat16 (attribute bf16; readers before it cast to
 * float32 and kept every bit) */
#define DYNQ_FFLAG_CAST_BF16 0x8u
#define DYNQ_FFLAGS_KNOWN \
  (DYNQ_FFLAG_CONV_EPILOGUE | DYNQ_FFLAG_AVGPOOL_DILATED | DYNQ_FFLAG_RESIZE18 | \
   DYNQ_FFLAG_CAST_BF16)

typedef struct dynq__fhdr {
  char magic[8];          /* "DYNQMODL" */
  uint32_t version;       /* DYNQ_FILE_VERSION */
  uint32_t header_size;   /* sizeof(dynq__fhdr_t) */
  uint64_t file_size;     /* must equal the real file size */
  uint64_t sections_off;  /* section table, 8-aligned */
  uint32_t n_sections;    /* 1..DYNQ_FILE_MAX_SECTIONS */
  uint32_t flags;         /* DYNQ_FFLAG_*: features the file needs */
  uint32_t table_crc;     /* CRC-32C of the section table */
  uint8_t reserved[16];   /* 0 */
  uint32_t header_crc;    /* CRC-32C of bytes [0, 60) */
} dynq__fhdr_t;
static_assert(sizeof(dynq__fhdr_t) == 64, "header is 64 bytes");

typedef struct dynq__fsection {
  uint32_t kind;          /* dynq__section_kind, each present once */
  uint32_t crc;           /* CRC-32C of the section bytes */
  uint64_t offset;        /* 8-aligned (DATA: 64-aligned) */
  uint64_t size;          /* bytes */
  uint64_t count;         /* records (size == count * record size) */
} dynq__fsection_t;
static_assert(sizeof(dynq__fsection_t) == 32, "section entry is 32 bytes");

#define DYNQ_FVALUE_CONST 1u

typedef struct dynq__fvalue {
  uint32_t name;          /* string offset */
  uint8_t dtype;          /* dynq_dtype_t */
  int8_t rank;            /* -1 unknown, else 0..DYNQ_MAX_RANK */
  uint16_t flags;         /* DYNQ_FVALUE_CONST */
  int64_t dims[DYNQ_MAX_RANK]; /* -1 symbolic; constants: all >= 0 */
  uint64_t data_off;      /* constants: absolute, 64-aligned, inside DATA */
  uint64_t data_size;     /* constants: numel * dtype size */
  uint8_t reserved[8];
} dynq__fvalue_t;
static_assert(sizeof(dynq__fvalue_t) == 96, "value record is 96 bytes");

typedef struct dynq__fnode {
  uint32_t op;            /* dynq_op_t */
  uint32_t name;          /* string offset */
  uint32_t in_first;      /* index into REFS */
  uint32_t out_first;     /* index into REFS */
  uint16_t n_in, n_out;   /* <= DYNQ_FILE_MAX_ARITY */
  uint32_t attr_first;    /* index into ATTRS */
  uint32_t n_attr;        /* <= DYNQ_FILE_MAX_ATTRS */
  uint32_t reserved;
} dynq__fnode_t;
static_assert(sizeof(dynq__fnode_t) == 32, "node record is 32 bytes");

typedef struct dynq__fattr {
  uint32_t name;          /* string offset */
  uint32_t type;          /* DYNQ_ATTR_* */
  int64_t i;              /* INT value; INTS: value index */
  float f;                /* FLOAT */
  uint32_t s;             /* STRING: string offset */
  uint8_t reserved[8];
} dynq__fattr_t;
static_assert(sizeof(dynq__fattr_t) == 32, "attr record is 32 bytes");

typedef struct dynq__fmeta {
  uint32_t producer;      /* string offset */
  uint32_t n_inputs;
  uint32_t inputs_first;  /* index into REFS */
  uint32_t n_outputs;
  uint32_t outputs_first; /* index into REFS */
  uint32_t n_state;       /* state pairs (0 in files written before them) */
  uint64_t source_hash;
  uint32_t state_first;   /* index into REFS of 2 * n_state value indices */
  uint8_t reserved[28];
} dynq__fmeta_t;
static_assert(sizeof(dynq__fmeta_t) == 64, "meta record is 64 bytes");

uint32_t dynq__crc32c(uint32_t crc, const void *p, size_t n);
uint64_t dynq__fnv1a64(uint64_t h, const void *p, size_t n);
#define DYNQ_FNV1A64_INIT 0xcbf29ce484222325ull

/* A decoded graph whose arrays are owned by `arena` (one malloc) and whose
 * strings/constant data point into `base` (the mapping). */
typedef struct dynq__fgraph {
  dynq__graph_t g;
  void *arena;
} dynq__fgraph_t;

/* Validate and decode the file image base[0, size) (already mapped);
 * `fd` is used to checksum DATA with pread() so that weight pages are not
 * faulted into this process.  On success fills ret and returns 0. */
int dynq__format_decode(const uint8_t *base, uint64_t size, int fd,
                        dynq__fgraph_t *ret, char *err, size_t errlen);
void dynq__format_free(dynq__fgraph_t *fg);

#endif
