#!/bin/sh
# Silero VAD v5 benchmarks in one go (BENCHMARKS.md "Silero VAD"):
#   bench/vad/run.sh [BUILD_DIR] [SEARCH_MAX] [MAX_DELAY_US] [MAX_BATCH]
# fetches the model (models/fetch-silero.sh), installs onnxruntime-node into
# bench/vad/node_modules if missing, quantizes, starts a private dynqd on a
# temporary socket with session batching on for the model ([batch.vad]
# max_batch MAX_BATCH, default 64, max_delay_us MAX_DELAY_US, default 1000;
# 0 turns batching off; past 64-128 chunks a batch costs more per chunk,
# which under overload feeds on itself), runs vad-bench (engine INT8/FP32,
# batched engine runs, dynqd round trip, ORT, client pinned to CPU 1) and vad-load --search (with the
# generator's and dynqd's CPU per chunk), and stops dynqd.
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
MAX=${2:-1000}
DELAY=${3:-1000}
MAXB=${4:-64}
for f in models/dynq-quantize daemon/dynqd client/dynqctl bench/vad-bench bench/vad-load; do
	[ -x "$B/$f" ] || { echo "run.sh: $B/$f not built (ninja -C $B)" >&2; exit 1; }
done
onnx=$(models/fetch-silero.sh)
if [ ! -d bench/vad/node_modules/onnxruntime-node ]; then
	(cd bench/vad && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund)
fi
tmp=$(mktemp -d /tmp/dynq-vad.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/models"
# dynqd serves the model as converted (its warm-up at symbolic dims 1 fails
# in the STFT Conv, which it logs and skips); fix_shapes.py is no longer
# needed.  Batch axes follow the declared shapes (input 0, state 1; stateN
# is bound to state); written out here for the reader.
"$B/models/dynq-quantize" --set sr=16000 "$onnx" "$tmp/models/vad.dynq" >/dev/null
# vad1: the same file without batching, for the one-stream round trip (a
# lone chunk on a batched model waits max_delay_us for batch mates)
cp "$tmp/models/vad.dynq" "$tmp/models/vad1.dynq"
if [ "$DELAY" -gt 0 ]; then
	printf '[batch.vad]\nmax_batch = %s\nmax_delay_us = %s\naxes = input:0,state:1,output:0,stateN:1\n' \
		"$MAXB" "$DELAY" >"$tmp/dynqd.conf"
else
	: >"$tmp/dynqd.conf"
fi
"$B/daemon/dynqd" --socket "$tmp/s.sock" --models "$tmp/models" --config "$tmp/dynqd.conf" \
	--max-sessions 4096 --max-conns 4096 2>"$tmp/dynqd.log" &
pid=$!
i=0
until "$B/client/dynqctl" --socket "$tmp/s.sock" info vad >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
		cat "$tmp/dynqd.log" >&2
		echo "run.sh: dynqd did not serve the model" >&2
		exit 1
	fi
	sleep 0.05
done
date -u +"date: %Y-%m-%d %H:%M UTC"
echo "load: $(cat /proc/loadavg)"
taskset -c 1 "$B/bench/vad-bench" --model "$tmp/models/vad.dynq" --ort "$onnx" \
	--socket "$tmp/s.sock" --served vad1 --batch 8,32,128,256
# vad-load: one generator thread, 32 sessions per connection, pipelined;
# --pid adds dynqd's CPU per chunk next to the generator's
"$B/bench/vad-load" --socket "$tmp/s.sock" --model vad --search "$MAX" --seconds 5 --pid "$pid"
kill -TERM "$pid"
wait "$pid" || true
pid=""
