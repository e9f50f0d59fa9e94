/*
 * Recorded calls as dynq-quantize reads them (--calibrate DIR, --diagnose
 * ... --input DIR|FILE.npz): one .npz per call in name order, each holding
 * that call's inputs by name, checked against a model's inputs; for a
 * model with declared state pairs the calls are one stream and the state
 * is carried from call to call as a dynqd session carries it (zeros first,
 * symbolic dims = the batch; a file that holds a state input overrides
 * the carried value for that call).  Errors are printed (naming the file)
 * through dynq__imp_errorf.
 */
#ifndef DYNQ_MODELS_CALLS_H
#define DYNQ_MODELS_CALLS_H

#include "graph.h"
#include "tensor.h"

typedef struct dynq__calls {
  const char *what;         /* option named in messages ("--calibrate") */
  const char *src;          /* the directory or file given */
  int n_files;
  char **files;             /* owned [n_files], full paths, sorted */
  int n_in;                 /* graph inputs */
  dynq__tensor_t *in;       /* owned [n_files * n_in]: dtype INVALID = carried state */
  int n_state;
  int *st_in, *st_out;      /* owned [n_state]: graph input / output positions */
} dynq__calls_t;

/* List src: a directory of .npz files (anything else but hidden entries
 * is an error), or one .npz file.  0 or -1 after a message. */
int dynq__calls_list(dynq__calls_t *c, const char *what, const char *src);
/* Read every file and check it against g's inputs; g's state pairs decide
 * which inputs may be absent (carried).  0 or -1 after a message. */
int dynq__calls_load(dynq__calls_t *c, const dynq__graph_t *g);
void dynq__calls_free(dynq__calls_t *c);

/* Call f's inputs into ins[0..n_in) (views), the carried state state[]
 * (allocated zeros on first use) filling the inputs the file lacks.
 * 0 or -1 after a message. */
int dynq__calls_inputs(const dynq__calls_t *c, const dynq__graph_t *g, int f,
                       dynq__tensor_t *state, dynq__tensor_t *ins);
/* After call f ran: the state outputs of outs[] move into state[]. */
void dynq__calls_carry(const dynq__calls_t *c, dynq__tensor_t *state, dynq__tensor_t *outs);

#endif
