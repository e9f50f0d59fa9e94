/* Op names by code, apart from the registry's table so that the op kit's
 * messages need no link to the ops themselves. */
#include "ops.h"

static const char *const names[DYNQ_OP__COUNT] = {
#define NAME_OF(NAME, code, str, ...) [code] = str,
  DYNQ_OPS(NAME_OF)
#undef NAME_OF
};

const char *dynq__op_name(int op) {
  if (op <= 0 || op >= DYNQ_OP__COUNT || names[op] == NULL) return "?";
  return names[op];
}
