#!/bin/sh
# Silero VAD v5 benchmarks in one go (BENCHMARKS.md "Silero VAD"):
#   bench/vad/run.sh [BUILD_DIR] [SEARCH_MAX]
# fetches the model (models/fetch-silero.sh), installs onnxruntime-node into
# bench/vad/node_modules if missing, quantizes, starts a private dynqd on a
# temporary socket, runs vad-bench (engine INT8/FP32, dynqd round trip, ORT,
# client pinned to CPU 1) and vad-load --search, and stops dynqd.
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
MAX=${2:-1000}
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
# dynqd's warm-up runs symbolic dims at 1, too short for the STFT Conv:
# serve a copy with the dims pinned to one chunk (see fix_shapes.py).
/usr/bin/python3 bench/vad/fix_shapes.py "$onnx" "$tmp/vad_b1.onnx"
"$B/models/dynq-quantize" --set sr=16000 "$tmp/vad_b1.onnx" "$tmp/models/vad.dynq" >/dev/null
"$B/daemon/dynqd" --socket "$tmp/s.sock" --models "$tmp/models" 2>"$tmp/dynqd.log" &
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
	--socket "$tmp/s.sock" --served vad
"$B/bench/vad-load" --socket "$tmp/s.sock" --model vad --search "$MAX" --seconds 5
kill -TERM "$pid"
wait "$pid" || true
pid=""
