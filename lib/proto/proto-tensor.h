/*
 * The wire's tensors as the engine's dynq__tensor_t, for the programs that
 * link the engine (dynqd, the tests, the benchmarks).  libdynqclient does
 * not: it uses proto.h's dynq__wtensor_t and the public structs only.
 */
#ifndef DYNQ_PROTO_TENSOR_H
#define DYNQ_PROTO_TENSOR_H

#include "../tensor.h"
#include "proto.h"

/* {"dtype": "float32", "shape": [...], "data": bin} (3 entries); an
 * invalid tensor poisons w with DYNQ_EINTERNAL (dynq__w_wtensor). */
void dynq__w_tensor(dynq__wbuf_t *w, const dynq__tensor_t *t);
/* The same but its data bytes (dynq__w_wtensor_head): the caller appends
 * dynq__tensor_nbytes(t) bytes itself. */
void dynq__w_tensor_head(dynq__wbuf_t *w, const dynq__tensor_t *t);

/* dynq__obj_wtensor, then the data copied into an owned aligned tensor:
 * the same errors, plus -ENOMEM.  ret_t untouched on failure. */
int dynq__obj_tensor(dynq__obj_t o, const dynq__tensor_limits_t *lim,
                     dynq__tensor_t *ret_t, char *err, size_t errlen);

#endif
