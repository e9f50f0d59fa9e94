#!/bin/sh
# The BERT-base-sized encoder (12 layers, d 768, 12 heads, FF 3072, GELU,
# seq 128; seeded, exported by Debian's PyTorch 1.13 at opset 14), timed in
# one run on one pinned core: ONNX Runtime FP32 and ORT dynamic INT8
# (dq_convert.py: MatMul with constant weights -> DynamicQuantizeMatMul,
# as quantize_dynamic does), interleaved, then dynq INT8 and FP32
# (build/bench/model-bench, interleaved) against ORT FP32's output.
#
#   bench/ort/bert_bench.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPU]
#
# NODE_MODULES holds onnxruntime-node 1.30 (see BENCHMARKS.md).  WORK_DIR
# (default /tmp/bert-base) keeps the generated model between runs.
set -eu
BUILD=${1:?usage: bert_bench.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPU]}
NODE_PATH=${2:?usage: bert_bench.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPU]}
WORK=${3:-/tmp/bert-base}
CPU=${4:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export NODE_PATH

[ -f "$WORK/bert_base_op14.onnx" ] ||
	/usr/bin/python3 "$ROOT/tests/fixtures/make_zoo.py" --bert-base "$WORK" >/dev/null
[ -f "$WORK/bert_base_op14_dq.onnx" ] ||
	/usr/bin/python3 "$HERE/dq_convert.py" "$WORK/bert_base_op14.onnx" "$WORK/bert_base_op14_dq.onnx"
[ -f "$WORK/bert_base.dynq" ] ||
	"$BUILD/models/dynq-quantize" --no-reference "$WORK/bert_base_op14.onnx" "$WORK/bert_base.dynq" >/dev/null
[ -f "$WORK/bert_base_fp32.dynq" ] ||
	"$BUILD/models/dynq-quantize" --fp32 "$WORK/bert_base_op14.onnx" "$WORK/bert_base_fp32.dynq" >/dev/null
ls -l "$WORK"/*.onnx "$WORK"/*.dynq | awk '{print $5, $9}'
grep -m1 'model name' /proc/cpuinfo
for B in 1 8; do
	cat >"$WORK/spec_b$B.json" <<JSON
{"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [$B, 128], "file": "input_ids_b$B.i64"},
            {"name": "attention_mask", "dtype": "int64", "shape": [$B, 128], "file": "attention_mask_b$B.i64"}]}
JSON
	R=$([ "$B" = 1 ] && echo 10 || echo 3)
	echo "== batch $B: ONNX Runtime 1.30 (FP32, dynamic INT8), $R rounds"
	taskset -c "$CPU" node "$HERE/run.js" --spec "$WORK/spec_b$B.json" --reps "$R" \
		--out "$WORK/ort_b$B" --model "$WORK/bert_base_op14.onnx" \
		--model "$WORK/bert_base_op14_dq.onnx" | tee "$WORK/ort_b$B.json"
	/usr/bin/python3 - "$WORK" "$B" <<'PY'
import sys, numpy as np
w, b = sys.argv[1], sys.argv[2]
f = np.fromfile(f"{w}/ort_b{b}/bert_base_op14.y.f32", np.float32)
q = np.fromfile(f"{w}/ort_b{b}/bert_base_op14_dq.y.f32", np.float32)
print(f"ORT dynamic INT8 relL2 vs ORT FP32: {np.linalg.norm(q - f) / np.linalg.norm(f):.5f}")
PY
	echo "== batch $B: dynq (INT8 model, reference dropped; FP32 model)"
	IN="--input input_ids:i64:${B}x128=$WORK/input_ids_b$B.i64 --input attention_mask:i64:${B}x128=$WORK/attention_mask_b$B.i64"
	# shellcheck disable=SC2086
	taskset -c "$CPU" "$BUILD/bench/model-bench" "$WORK/bert_base.dynq" $IN --only int8 --rounds "$R" \
		--ref "$WORK/ort_b$B/bert_base_op14.y.f32"
	# shellcheck disable=SC2086
	taskset -c "$CPU" "$BUILD/bench/model-bench" "$WORK/bert_base_fp32.dynq" $IN --only fp32 --rounds "$R" \
		--ref "$WORK/ort_b$B/bert_base_op14.y.f32"
done
