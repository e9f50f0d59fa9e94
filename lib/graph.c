/* The graph IR's helpers: attribute lookup by name (for load-time
 * parsing; ops read their prepared state at run time). */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

const dynq__attr_t *dynq__node_attr(const dynq__node_t *n, const char *name) {
  /* first byte before strcmp: most names differ at once */
  for (int i = 0; i < n->n_attr; i++)
    if (n->attr[i].name[0] == name[0] && strcmp(n->attr[i].name, name) == 0) return &n->attr[i];
  return NULL;
}

int64_t dynq__node_attr_i(const dynq__node_t *n, const char *name, int64_t dflt) {
  const dynq__attr_t *a = dynq__node_attr(n, name);
  return a != NULL && a->type == DYNQ_ATTR_INT ? a->i : dflt;
}

float dynq__node_attr_f(const dynq__node_t *n, const char *name, float dflt) {
  const dynq__attr_t *a = dynq__node_attr(n, name);
  if (a == NULL) return dflt;
  if (a->type == DYNQ_ATTR_FLOAT) return a->f;
  if (a->type == DYNQ_ATTR_INT) return (float)a->i;
  return dflt;
}

