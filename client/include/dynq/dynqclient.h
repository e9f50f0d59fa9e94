/*
 * libdynqclient: a blocking client for dynqd.
 *
 * One dynq_client_t is one connection; calls on it are not thread-safe (use
 * one client per thread).  Every fallible call returns 0 or a negative code
 * (see errors.h); dynq_client_errmsg() then holds the server's or the
 * library's message for the last failure.  Compiles as C99 and C++.
 */
#ifndef DYNQ_DYNQCLIENT_H
#define DYNQ_DYNQCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dynq_client dynq_client_t;

/* Same numbering as the wire/file format. */
typedef enum dynq_client_dtype {
  DYNQ_FLOAT32 = 1, DYNQ_INT8 = 2, DYNQ_UINT8 = 3, DYNQ_INT32 = 4,
  DYNQ_INT64 = 5
} dynq_client_dtype_t;

#define DYNQ_CLIENT_MAX_RANK 8

typedef struct dynq_tensor {
  const char *name;       /* input/output name */
  int dtype;              /* dynq_client_dtype_t */
  int rank;
  int64_t shape[DYNQ_CLIENT_MAX_RANK];
  void *data;             /* inputs: caller's; outputs: owned by the result */
  size_t nbytes;
} dynq_tensor_t;

typedef struct dynq_infer_result {
  int n_outputs;
  dynq_tensor_t *outputs;   /* owned; dynq_infer_result_free() */
  int64_t compute_us;
} dynq_infer_result_t;

typedef struct dynq_tensor_info {
  char *name;               /* owned by the containing struct */
  int dtype;
  int rank;
  int64_t shape[DYNQ_CLIENT_MAX_RANK]; /* -1 = chosen per request */
} dynq_tensor_info_t;

typedef struct dynq_model_info {
  char *name, *path, *producer;
  uint64_t file_bytes;
  int n_inputs, n_outputs;
  dynq_tensor_info_t *inputs, *outputs;
  int n_nodes, quantized_layers;
  uint64_t int8_weight_bytes, fp32_weight_bytes, reference_weight_bytes;
  int has_reference;
  int per_tensor;           /* activation scales: 0 per-row, 1 per-tensor */
} dynq_model_info_t;

typedef struct dynq_server_info {
  char version[32];
  int protocol;
  char kernel[32];
  char openblas_core[64];
  int workers;
  int models;
  double uptime_s;
} dynq_server_info_t;

/* Socket path: explicit, else $DYNQ_SOCKET, else $XDG_RUNTIME_DIR/dynq/dynqd.sock,
 * else /run/dynq/dynqd.sock.  Writes the chosen path into buf. */
const char *dynq_default_socket(char *buf, size_t cap);

/* socket_path NULL: dynq_default_socket().  Errors are -errno from the
 * socket calls (-ENOENT, -ECONNREFUSED, -EACCES, ...) or -ENAMETOOLONG when
 * the path does not fit a sockaddr_un. */
int dynq_connect(const char *socket_path, dynq_client_t **ret_client);
void dynq_close(dynq_client_t *c);                    /* NULL-safe */
/* Message for the last failed call on c (the server's message for server
 * errors); each call clears it first, so it is "" after a success. */
const char *dynq_client_errmsg(const dynq_client_t *c);

int dynq_ping(dynq_client_t *c);
int dynq_server_info(dynq_client_t *c, dynq_server_info_t *ret_info);

/* Model names, NULL-terminated array; dynq_strv_free(). */
int dynq_list_models(dynq_client_t *c, char ***ret_names);
void dynq_strv_free(char **v);

int dynq_model_info(dynq_client_t *c, const char *model,
                    dynq_model_info_t *ret_info);
void dynq_model_info_free(dynq_model_info_t *info);

/* precision argument of dynq_infer() */
enum { DYNQ_INFER_DEFAULT = 0, DYNQ_INFER_INT8 = 1, DYNQ_INFER_FP32 = 2 };

int dynq_infer(dynq_client_t *c, const char *model, int precision,
               const dynq_tensor_t *inputs, int n_inputs,
               dynq_infer_result_t *ret_result);
void dynq_infer_result_free(dynq_infer_result_t *r);

/* Raw call for methods without a typed wrapper: params/result as msgpack
 * bytes.  *ret_result is malloc'd. */
int dynq_call_raw(dynq_client_t *c, const char *method, const void *params,
                  size_t params_len, void **ret_result, size_t *ret_len);

#ifdef __cplusplus
}
#endif

#endif
