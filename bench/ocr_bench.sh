#!/bin/sh
# PaddleOCR PP-OCRv4 text recognition, one line at width 320 (the first
# line of tests/fixtures/ocr, PaddleOCR's preprocessing, zeros to width
# 320), one pinned core: ONNX Runtime 1.30 FP32 (bench/ort/run.js) and
# dynq INT8 and FP32 (build/bench/model-bench), in alternating blocks of
# rounds within one run so that load changes hit both; prints each
# block's medians, then the median over all rounds and the ratios to ORT
# FP32.  dynq's outputs are checked against ORT's (relL2).
#
#   bench/ocr_bench.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPU] [BLOCKS] [CLOCK]
#
# CLOCK is wall (default: a quiet machine) or cpu: each run's CPU time
# (model-bench --cpu, run.js --cpu), what a run costs when other
# processes share the core and wall times mostly measure waiting.
# NODE_MODULES holds onnxruntime-node 1.30 (in a scratch folder:
# ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0).
# The model comes from models/fetch-ppocr.sh's cache.  WORK_DIR (default
# /tmp/ocr-bench) keeps the converted models and the input; BLOCKS
# (default 6) blocks of 5 rounds per system.
set -eu
USAGE="usage: ocr_bench.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPU] [BLOCKS] [wall|cpu]"
BUILD=$(cd "${1:?$USAGE}" && pwd)
NODE_PATH=$(cd "${2:?$USAGE}" && pwd)
WORK=${3:-/tmp/ocr-bench}
CPU=${4:-1}
BLOCKS=${5:-6}
CLOCK=${6:-wall}
case $CLOCK in wall) CFLAG= ;; cpu) CFLAG=--cpu ;; *) echo "$USAGE" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${DYNQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dynq}
ONNX=$CACHE/ch_PP-OCRv4_rec_infer.onnx
export NODE_PATH
[ -f "$ONNX" ] || { echo "ocr_bench: $ONNX missing: run models/fetch-ppocr.sh" >&2; exit 1; }
mkdir -p "$WORK"

/usr/bin/python3 - "$ROOT/tests/fixtures/ocr" "$WORK" <<'PY'
import sys, numpy as np
src, work = sys.argv[1], sys.argv[2]
w = int(open(f"{src}/lines.tsv", encoding="utf-8").readline().split("\t")[0])
px = np.fromfile(f"{src}/lines.u8", np.uint8)[:48 * w].reshape(48, w).astype(np.float32)
x = np.zeros((1, 3, 48, 320), np.float32)
x[0, :, :, :w] = (px / 255.0 - 0.5) / 0.5
x.tofile(f"{work}/x.f32")
PY
cat >"$WORK/spec.json" <<JSON
{"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 48, 320], "file": "x.f32"}]}
JSON
"$BUILD/models/dynq-quantize" "$ONNX" "$WORK/rec.dynq" >"$WORK/quantize.log"
grep -m1 'model name' /proc/cpuinfo
echo "dynq: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); cpu $CPU; $BLOCKS blocks x 5 rounds each; $CLOCK time"

: >"$WORK/times.txt"
taskset -c "$CPU" node "$HERE/ort/run.js" --spec "$WORK/spec.json" --model "$ONNX" --reps 0 \
	--out "$WORK/ort" >/dev/null
REF=$WORK/ort/ch_PP-OCRv4_rec_infer.softmax_2.tmp_0.f32
[ -f "$REF" ] || REF=$(ls "$WORK"/ort/*.f32 | head -n 1)
b=0
while [ "$b" -lt "$BLOCKS" ]; do
	taskset -c "$CPU" node "$HERE/ort/run.js" --spec "$WORK/spec.json" --model "$ONNX" --reps 5 $CFLAG |
		/usr/bin/python3 -c 'import json,sys; print("ort_fp32", json.loads(sys.stdin.readline())["median_us"])' \
		>>"$WORK/times.txt"
	taskset -c "$CPU" "$BUILD/bench/model-bench" "$WORK/rec.dynq" \
		--input "x:f32:1x3x48x320=$WORK/x.f32" --rounds 5 --ref "$REF" --json $CFLAG |
		/usr/bin/python3 -c 'import json,sys; j=json.loads(sys.stdin.readline()); print("dynq_int8", j["int8_us"]); print("dynq_fp32", j["fp32_us"]); print("relL2", j["int8_rel_l2"]); print("fp32_max_rel", j["fp32_max_rel"])' \
		>>"$WORK/times.txt"
	b=$((b + 1))
done
/usr/bin/python3 - "$WORK/times.txt" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
get = lambda k: [float(v) for n, v in rows if n == k]
o, i8, f32 = get("ort_fp32"), get("dynq_int8"), get("dynq_fp32")
print("block medians (ms):")
for k in range(len(o)):
    print(f"  {k}: ORT FP32 {o[k]/1e3:7.2f}  dynq INT8 {i8[k]/1e3:7.2f}  dynq FP32 {f32[k]/1e3:7.2f}")
mo, mi, mf = st.median(o), st.median(i8), st.median(f32)
print(f"median of block medians: ORT FP32 {mo/1e3:.2f} ms, dynq INT8 {mi/1e3:.2f} ms "
      f"({mi/mo:.2f}x ORT FP32), dynq FP32 {mf/1e3:.2f} ms ({mf/mo:.2f}x)")
print(f"per-block ratio INT8/ORT: median {st.median([a/b for a, b in zip(i8, o)]):.2f}, "
      f"range {min(a/b for a, b in zip(i8, o)):.2f}-{max(a/b for a, b in zip(i8, o)):.2f}")
print(f"vs ORT FP32 output: dynq INT8 relL2 {get('relL2')[0]:.5f}, dynq FP32 max rel {get('fp32_max_rel')[0]:.2e}")
PY
