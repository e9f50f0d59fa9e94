/*
 * The old names of the raw msgpack-RPC test helpers, kept for suites not
 * yet moved to testutil.h's tu_rpc_* API (test-load.c).  New code uses
 * testutil.h directly.
 */
#ifndef DYNQ_RPCUTIL_H
#define DYNQ_RPCUTIL_H

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dynq/errors.h"
#include "proto/proto-tensor.h"
#include "testutil.h"

#define RPC_IO_TIMEOUT_MS TU_RPC_IO_TIMEOUT_MS
#define RPC_STASH_MAX TU_RPC_STASH_MAX

typedef tu_rpc_t rconn_t;

#define rc_open(c, sock) tu_rpc_open(c, sock)
#define rc_close(c) tu_rpc_close(c)
#define rc_send_fd(c, p, n, fd) tu_rpc_send_fd(c, p, n, fd)
#define rc_send_wbuf(c, w) tu_rpc_send_wbuf(c, w)
#define rc_recv(c, m) tu_rpc_recv(c, m)
#define rc_response(c, m, id, msg, len) tu_rpc_response(c, m, id, msg, len)
#define expect_error(c, id, code, needle) tu_rpc_expect_error(c, id, code, needle)
#define expect_ok(c, id, m) tu_rpc_expect_ok(c, id, m)
#define obj_int_or(o, dflt) tu_obj_int_or(o, dflt)
#define send_call0(c, id, method) tu_rpc_call0(c, id, method)
#define send_call_id(c, id, method, key, v) tu_rpc_call_id(c, id, method, key, v)
#define ping_ok(c, id) tu_rpc_ping_ok(c, id)
#define w_f32_tensor(w, rank, dims, data) tu_w_f32_tensor(w, rank, dims, data)
#define get_f32_output(m, name, dst, n) tu_get_f32_output(m, name, dst, n)
/* extra is one flag or NULL. */
#define make_model(onnx_rel, out, extra) tu_quantize(onnx_rel, out, extra, (char *)NULL)
#define load_f32(rel, dst, n) tu_load_f32(rel, dst, n)
#define pid_alive(pid) tu_pid_alive(pid)

#endif
