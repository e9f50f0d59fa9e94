#!/bin/sh
# Op-by-op sweep (BENCHMARKS.md): each model of bench/ops/make_ops.py run by
# dynq (model-bench --only fp32 --cpu: CPU time of one run, median of 20)
# and by ONNX Runtime (bench/ort/run.js --cpu, one thread, median of 20),
# alternated, ROUNDS times.  ORT's figure includes run.js moving tensors
# between JavaScript and the session: compare it with the "ident" line.
#
#   bench/ops/sweep.sh BUILD OUTDIR [ROUNDS] [NAME...]
#   (NODE_PATH must find onnxruntime-node; OUTDIR from make_ops.py;
#   NO_ORT=1: dynq only, e.g. to compare two builds)
set -u
[ $# -ge 2 ] || { sed -n '2,9p' "$0"; exit 2; }
build=$(cd "$1" && pwd); dir=$2; rounds=${3:-2}; shift 2; [ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
cd "$dir" || exit 2
names=${*:-$(ls *.onnx | sed 's/\.onnx$//')}
for n in $names; do
  "$build/models/dynq-quantize" "$n.onnx" "$n.dynq" >/dev/null 2>&1 || { echo "$n: dynq-quantize failed"; continue; }
  ins=$(/usr/bin/python3 -c "
import json; s = json.load(open('$n.json'))
print(' '.join('--input %s:f32:%s=%s' % (i['name'], 'x'.join(map(str, i['shape'])), i['file'])
               for i in s['inputs']))")
  d=""; o=""
  for r in $(seq "$rounds"); do
    d="$d $("$build/bench/model-bench" "$n.dynq" $ins --rounds 20 --only fp32 --cpu 2>&1 |
            sed -n 's/.*fp32 \([0-9.]*\) us.*/\1/p')"
    [ -n "${NO_ORT:-}" ] || o="$o $(node "$here/../ort/run.js" --spec "$n.json" --model "$n.onnx" --reps 20 --threads 1 \
            --cpu 2>&1 | sed -n 's/.*"median_us":\([0-9]*\).*/\1/p')"
  done
  printf "%-16s dynq us:%s   ort us:%s\n" "$n" "$d" "$o"
done
