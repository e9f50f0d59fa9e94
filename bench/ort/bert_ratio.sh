#!/bin/sh
# dynq against ONNX Runtime 1.30 (and optionally PyTorch 1.13) on the
# BERT-base-sized encoder, in interleaved blocks: each block times ORT's
# dynamic-INT8 graph (dq_convert.py), dynq INT8, and with the options ORT
# FP32 / dynq FP32 and PyTorch quantize_dynamic, each for REPS runs right
# after one another, so that the load of a shared machine hits every
# system alike within a block.  Prints each block's medians and the
# median over blocks of the per-block ratios.
#
#   bench/ort/bert_ratio.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPUS] [BATCH] [BLOCKS] [REPS] [fp32] [torch]
#
# CPUS (default 1) is a taskset list; with two CPUs ("0,1") every system
# runs two threads.  WORK_DIR (default /tmp/bert-base) is prepared by
# bert_bench.sh (the models and inputs; run it once first).
set -eu
BUILD=${1:?usage: bert_ratio.sh BUILD_DIR NODE_MODULES [WORK_DIR] [CPUS] [BATCH] [BLOCKS] [REPS] [fp32] [torch]}
NODE_PATH=${2:?usage: bert_ratio.sh BUILD_DIR NODE_MODULES ...}
WORK=${3:-/tmp/bert-base}
CPUS=${4:-1}
B=${5:-1}
BLOCKS=${6:-5}
REPS=${7:-3}
shift $(($# < 7 ? $# : 7))
FP32=0 TORCH=0
for o in "$@"; do
	case $o in fp32) FP32=1 ;; torch) TORCH=1 ;; *) echo "unknown option $o" >&2; exit 2 ;; esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
export NODE_PATH
T=$(echo "$CPUS" | awk -F, '{print NF}')
LOG=$WORK/ratio_b${B}_t$T.log
: >"$LOG"
cat >"$WORK/spec_b$B.json" <<JSON
{"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [$B, 128], "file": "input_ids_b$B.i64"},
            {"name": "attention_mask", "dtype": "int64", "shape": [$B, 128], "file": "attention_mask_b$B.i64"}]}
JSON
IN="--input input_ids:i64:${B}x128=$WORK/input_ids_b$B.i64 --input attention_mask:i64:${B}x128=$WORK/attention_mask_b$B.i64"
ORTM="--model $WORK/bert_base_op14_dq.onnx"
[ "$FP32" = 1 ] && ORTM="$ORTM --model $WORK/bert_base_op14.onnx"
grep -m1 'model name' /proc/cpuinfo
echo "batch $B, $T thread(s) on CPUs $CPUS, $BLOCKS blocks of $REPS runs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
while [ $i -lt "$BLOCKS" ]; do
	i=$((i + 1))
	# shellcheck disable=SC2086
	taskset -c "$CPUS" node "$HERE/run.js" --spec "$WORK/spec_b$B.json" --reps "$REPS" \
		--threads "$T" $ORTM | sed "s/^/ort $i /" >>"$LOG"
	# shellcheck disable=SC2086
	taskset -c "$CPUS" "$BUILD/bench/model-bench" "$WORK/bert_base.dynq" $IN --only int8 \
		--rounds "$REPS" --threads "$T" --json | sed "s/^/dynq $i /" >>"$LOG"
	if [ "$FP32" = 1 ]; then
		# shellcheck disable=SC2086
		taskset -c "$CPUS" "$BUILD/bench/model-bench" "$WORK/bert_base_fp32.dynq" $IN --only fp32 \
			--rounds "$REPS" --threads "$T" --json | sed "s/^/dynq32 $i /" >>"$LOG"
	fi
	if [ "$TORCH" = 1 ]; then
		taskset -c "$CPUS" /usr/bin/python3 "$HERE/bert_torch.py" "$WORK" "$B" --reps "$REPS" \
			--threads "$T" | sed "s/^/torch $i /" >>"$LOG"
	fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$LOG" <<'PY'
import json, statistics, sys
blocks = {}
for line in open(sys.argv[1]):
    kind, i, js = line.split(" ", 2)
    r = json.loads(js)
    b = blocks.setdefault(int(i), {})
    if kind == "ort":
        b["ort_int8" if r["model"].endswith("_dq.onnx") else "ort_fp32"] = r["median_us"]
    elif kind == "dynq":
        b["dynq_int8"] = r["int8_us"]
    elif kind == "dynq32":
        b["dynq_fp32"] = r["fp32_us"]
    else:
        b["torch_int8"] = r["median_us"]
pairs = [("dynq_int8", "ort_int8"), ("dynq_int8", "torch_int8"), ("dynq_fp32", "ort_fp32")]
for i in sorted(blocks):
    b = blocks[i]
    print(f"block {i}: " + ", ".join(f"{k} {v / 1000:.1f} ms" for k, v in sorted(b.items())))
for a, o in pairs:
    rs = [b[a] / b[o] for b in blocks.values() if a in b and o in b]
    if rs:
        print(f"{a} / {o}: median {statistics.median(rs):.3f} "
              f"(blocks: {', '.join(f'{r:.2f}' for r in rs)})")
PY
