#!/bin/sh
# Interleaved A/B of one INT8 kernel file at two revisions, in one process
# (bench/kernel-ab.c says how it measures).
#
#   bench/kernel-ab.sh [--kernel avx2|avxvnni|avx512vnni] [--rounds R]
#                      [--heap-shift BYTES] A B [MxKxN ...]
#
# A and B: git revisions (each built with its own lib/kernels headers) or
# the word "worktree" for the files as they are now.  Runs on CPU 1.
set -eu
usage() {
  sed -n 's/^#   //p' "$0" >&2
  exit 2
}
kernel=avx2
rounds=21
shift_bytes=0
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) [ $# -ge 2 ] || usage; kernel=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || usage; rounds=$2; shift 2 ;;
    --heap-shift) [ $# -ge 2 ] || usage; shift_bytes=$2; shift 2 ;;
    -h|--help) usage ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || usage
case $kernel in
  avx2) flags="-mavx2 -mfma -mf16c" ;;
  avxvnni) flags="-mavx2 -mfma -mavxvnni" ;;
  avx512vnni) flags="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni" ;;
  *) echo "kernel-ab: unknown kernel '$kernel' (avx2, avxvnni, avx512vnni)" >&2; exit 2 ;;
esac
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Put revision $1's lib/kernels in $tmp/$2 and compile its $kernel.c with
# the kernel object renamed to $3.
side() {
  mkdir -p "$tmp/$2"
  if [ "$1" = worktree ]; then
    cp -r "$src/lib/kernels" "$tmp/$2/"
  else
    git -C "$src" archive "$1" lib/kernels | tar -x -C "$tmp/$2" --strip-components=1
  fi
  cc -O2 -std=gnu11 $flags -I"$tmp/$2/kernels" "-Ddynq__kernel_$kernel=$3" \
    -c "$tmp/$2/kernels/$kernel.c" -o "$tmp/$3.o"
}
name_a=$(git -C "$src" rev-parse --short "$1" 2>/dev/null || echo "$1")
name_b=$(git -C "$src" rev-parse --short "$2" 2>/dev/null || echo "$2")
side "$1" a kern_a
side "$2" b kern_b
shift 2
cc -O2 -std=gnu11 -I"$src/lib/kernels" "$src/bench/kernel-ab.c" "$tmp/kern_a.o" \
  "$tmp/kern_b.o" -lm -o "$tmp/kernel-ab"
echo "A = $name_a, B = $name_b, CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
taskset -c 1 "$tmp/kernel-ab" --rounds "$rounds" --heap-shift "$shift_bytes" "$@"
