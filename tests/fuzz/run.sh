#!/bin/sh
# Run one or every fuzz target for a while (docs/FUZZING.md).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# BUILD_DIR was set up with
#   CC=clang meson setup BUILD_DIR -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false
# Targets run one after another (-jobs=1), each on a scratch copy of its
# committed seeds in $FUZZ_WORK (default /tmp/dynq-fuzz/TARGET); crashes are
# written to $FUZZ_WORK/TARGET/artifacts/ and the script exits 1 when any
# target found one.
set -u
[ $# -ge 2 ] || { sed -n '2,12p' "$0"; exit 2; }
build=$(cd "$1" && pwd); secs=$2; shift 2
src=$(cd "$(dirname "$0")" && pwd)
work=${FUZZ_WORK:-/tmp/dynq-fuzz}
targets=${*:-fuzz-scan-rpc fuzz-npy-json-wav fuzz-config fuzz-model fuzz-onnx fuzz-client}
status=0
for t in $targets; do
	d=$work/$t
	mkdir -p "$d/corpus" "$d/artifacts"
	echo "==> $t for ${secs}s (log: $d/fuzz-0.log)"
	(cd "$d" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$build/tests/fuzz/$t" -max_total_time="$secs" -jobs=1 -timeout=20 \
		-rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$d/artifacts/" \
		"$d/corpus" "$src/corpus/$t" > "$d/run.log" 2>&1)
	if ls "$d/artifacts" | grep -q .; then
		echo "    found: $(ls "$d/artifacts" | tr '\n' ' ')"
		status=1
	fi
	grep -h "^#[0-9].*\(DONE\|pulse\|NEW\|REDUCE\)" "$d"/fuzz-*.log 2>/dev/null | tail -1
done
exit $status
