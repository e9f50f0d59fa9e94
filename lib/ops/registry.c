/* The registry's table, built from the rows in ops.h. */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#include "dynq/errors.h"

#define ROW(NAME, code_, str, since_, until_, mi, xi, mo, xo, check_, prepare_, run_) \
  [code_] = {.code = code_, .name = str, .since = since_, .until = until_,          \
             .min_in = mi, .max_in = xi, .min_out = mo, .max_out = xo,               \
             .check = dynq__check_##check_, .prepare = dynq__prep_##prepare_,       \
             .run = dynq__run_##run_},
static const dynq__opdef_t table[DYNQ_OP__COUNT] = {DYNQ_OPS(ROW)};
#undef ROW
_Static_assert(DYNQ_OP__END <= DYNQ_OP__COUNT, "raise DYNQ_OP__COUNT");

const dynq__opdef_t *dynq__opdef(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT || table[op].run == NULL) return NULL;
  return &table[op];
}

const dynq__opdef_t *dynq__opdef_onnx(const char *type) {
  for (int i = 1; i < DYNQ_OP__COUNT; i++)
    if (table[i].run != NULL && table[i].since > 0 && strcmp(table[i].name, type) == 0)
      return &table[i];
  return NULL;
}

int dynq__op_from_name(const char *s) {
  for (int i = 1; i < DYNQ_OP__COUNT; i++)
    if (table[i].run != NULL && strcmp(table[i].name, s) == 0) return i;
  return DYNQ_OP_INVALID;
}

int dynq__op_run1(const dynq__graph_t *g, dynq__op_ctx_t *ctx, const dynq__tensor_t *const *in,
                  dynq__tensor_t *out) {
  const dynq__opdef_t *def = dynq__opdef(ctx->node->op);
  if (def == NULL) {
    snprintf(ctx->err, ctx->errlen, "node '%s': unknown op code %d",
             ctx->node->name ? ctx->node->name : "?", ctx->node->op);
    return DYNQ_EUNSUPPORTED;
  }
  dynq__opstate_t st;
  memset(&st, 0, sizeof(st));
  int rc = def->prepare(g, ctx->node, &st, ctx->err, ctx->errlen);
  if (rc != 0) return rc;
  ctx->st = &st;
  rc = def->run(ctx, in, out);
  ctx->st = NULL;
  dynq__opstate_release(ctx->node, &st);
  return rc;
}

int dynq__check_none(const dynq__graph_t *g, const dynq__node_t *n, char *err, size_t errlen) {
  (void)g, (void)n, (void)err, (void)errlen;
  return 0;
}

int dynq__prep_none(const dynq__graph_t *g, const dynq__node_t *n, dynq__opstate_t *st,
                    char *err, size_t errlen) {
  (void)g, (void)n, (void)st, (void)err, (void)errlen;
  return 0;
}
