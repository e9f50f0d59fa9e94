/*
 * The graph validator: every invariant graph.h lists, checked before
 * anything runs a graph (the loader runs it on every file, the writer on
 * every graph it writes).  Op arity and per-op checks come from the
 * registry (lib/ops/ops.h).
 */
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"
#include "ops.h"

#define FAIL(code, ...)                      \
  do {                                       \
    snprintf(err, errlen, __VA_ARGS__);      \
    rc = (code);                             \
    goto out;                                \
  } while (0)

int dynq__graph_validate(const dynq__graph_t *g, char *err, size_t errlen) {
  int rc = 0;
  /* written[v]: 0 never, 1 graph input or constant, 2 node output */
  unsigned char *written = calloc((size_t)g->n_values + 1, 1);
  if (written == NULL) {
    snprintf(err, errlen, "out of memory validating graph");
    return DYNQ_EINTERNAL;
  }
  for (int v = 0; v < g->n_values; v++) {
    const dynq__value_t *val = &g->values[v];
    if (val->name == NULL) FAIL(DYNQ_EGRAPH, "value %d has no name", v);
    if (dynq__dtype_size(val->dtype) == 0)
      FAIL(DYNQ_EGRAPH, "value '%s' has invalid dtype %d", val->name, (int)val->dtype);
    if (val->rank < -1 || val->rank > DYNQ_MAX_RANK)
      FAIL(DYNQ_EGRAPH, "value '%s' has invalid rank %d", val->name, val->rank);
    if (val->data != NULL) {
      int64_t n = dynq__shape_numel(val->rank, val->dims);
      if (val->rank < 0 || n < 0 ||
          (size_t)n * dynq__dtype_size(val->dtype) != val->nbytes)
        FAIL(DYNQ_EGRAPH, "constant '%s': shape does not match its %zu data bytes",
             val->name, val->nbytes);
      written[v] = 1;
    }
  }
  if (g->n_inputs < 0 || g->n_outputs <= 0)
    FAIL(DYNQ_EGRAPH, "graph has %d inputs and %d outputs", g->n_inputs, g->n_outputs);
  for (int i = 0; i < g->n_inputs; i++) {
    int v = g->inputs[i];
    if (v < 0 || v >= g->n_values) FAIL(DYNQ_EGRAPH, "graph input %d: bad value index %d", i, v);
    if (written[v]) FAIL(DYNQ_EGRAPH, "graph input '%s' is a constant or listed twice", g->values[v].name);
    if (g->values[v].rank < 0) FAIL(DYNQ_EGRAPH, "graph input '%s' has unknown rank", g->values[v].name);
    written[v] = 1;
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const dynq__node_t *n = &g->nodes[i];
    const char *nn = n->name ? n->name : "?";
    const dynq__opdef_t *def = dynq__opdef(n->op);
    if (def == NULL) FAIL(DYNQ_EUNSUPPORTED, "node '%s': unknown op code %d", nn, n->op);
    if (n->n_in < def->min_in || n->n_in > def->max_in || n->n_out < def->min_out ||
        n->n_out > def->max_out) {
      if (def->min_out == def->max_out)
        FAIL(DYNQ_EGRAPH, "node '%s' (%s): %d inputs / %d outputs, expected %d..%d / %d",
             nn, def->name, n->n_in, n->n_out, def->min_in, def->max_in, def->min_out);
      FAIL(DYNQ_EGRAPH, "node '%s' (%s): %d inputs / %d outputs, expected %d..%d / %d..%d",
           nn, def->name, n->n_in, n->n_out, def->min_in, def->max_in, def->min_out,
           def->max_out);
    }
    for (int k = 0; k < n->n_in; k++) {
      int v = n->in[k];
      if (v == -1 && k >= def->min_in) continue;
      if (v < 0 || v >= g->n_values) FAIL(DYNQ_EGRAPH, "node '%s' (%s): input %d: bad value index %d", nn, def->name, k, v);
      if (!written[v]) FAIL(DYNQ_EGRAPH, "node '%s' (%s): input '%s' is read before it is written", nn, def->name, g->values[v].name);
    }
    for (int k = 0; k < n->n_out; k++) {
      int v = n->out[k];
      if (v < 0 || v >= g->n_values) FAIL(DYNQ_EGRAPH, "node '%s' (%s): output %d: bad value index %d", nn, def->name, k, v);
      if (written[v]) FAIL(DYNQ_EGRAPH, "node '%s' (%s): output '%s' is written twice (or is a constant/input)", nn, def->name, g->values[v].name);
      written[v] = 2;
    }
    for (int k = 0; k < n->n_attr; k++) {
      const dynq__attr_t *a = &n->attr[k];
      if (a->name == NULL) FAIL(DYNQ_EGRAPH, "node '%s': attribute %d has no name", nn, k);
      if (a->type < DYNQ_ATTR_INT || a->type > DYNQ_ATTR_INTS)
        FAIL(DYNQ_EGRAPH, "node '%s': attribute '%s' has bad type %d", nn, a->name, a->type);
      if (a->type == DYNQ_ATTR_STRING && a->s == NULL)
        FAIL(DYNQ_EGRAPH, "node '%s': attribute '%s' has no string", nn, a->name);
      if (a->type == DYNQ_ATTR_INTS) {
        if (a->i < 0 || a->i >= g->n_values || g->values[a->i].data == NULL ||
            g->values[a->i].dtype != DYNQ_DT_I64 || g->values[a->i].rank != 1)
          FAIL(DYNQ_EGRAPH, "node '%s': attribute '%s' must name a constant int64 1-D value", nn, a->name);
      }
    }
    if ((rc = def->check(g, n, err, errlen)) != 0) goto out;
  }
  for (int i = 0; i < g->n_outputs; i++) {
    int v = g->outputs[i];
    if (v < 0 || v >= g->n_values) FAIL(DYNQ_EGRAPH, "graph output %d: bad value index %d", i, v);
    if (!written[v]) FAIL(DYNQ_EGRAPH, "graph output '%s' is never written", g->values[v].name);
    for (int j = 0; j < i; j++)
      if (g->outputs[j] == v) FAIL(DYNQ_EGRAPH, "graph output '%s' is listed twice", g->values[v].name);
  }
  if (g->n_state < 0 || (g->n_state > 0 && g->state == NULL))
    FAIL(DYNQ_EGRAPH, "bad state pair count %d", g->n_state);
  for (int i = 0; i < g->n_state; i++) {
    int vi = g->state[2 * i], vo = g->state[2 * i + 1], is_in = 0, is_out = 0;
    for (int j = 0; j < g->n_inputs; j++) is_in |= g->inputs[j] == vi;
    for (int j = 0; j < g->n_outputs; j++) is_out |= g->outputs[j] == vo;
    if (!is_in || !is_out)
      FAIL(DYNQ_EGRAPH, "state pair %d must join a graph input to a graph output", i);
    if (g->values[vi].dtype != g->values[vo].dtype || g->values[vi].rank != g->values[vo].rank)
      FAIL(DYNQ_EGRAPH, "state pair '%s' <- '%s': dtype or rank differ", g->values[vi].name,
           g->values[vo].name);
    for (int j = 0; j < i; j++)
      if (g->state[2 * j] == vi) FAIL(DYNQ_EGRAPH, "state input '%s' is bound twice", g->values[vi].name);
  }
out:
  free(written);
  return rc;
}
