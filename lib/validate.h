/* The graph validator (validate.c): the invariants listed in graph.h. */
#ifndef DYNQ_VALIDATE_H
#define DYNQ_VALIDATE_H

#include <stddef.h>

#include "graph.h"

/* Check every invariant of graph.h; on failure returns DYNQ_EGRAPH (or
 * DYNQ_EUNSUPPORTED for an unknown op) with a message naming the node. */
int dynq__graph_validate(const dynq__graph_t *g, char *err, size_t errlen);

#endif
