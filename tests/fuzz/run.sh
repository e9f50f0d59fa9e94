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
targets=${*:-fuzz-scan-rpc fuzz-npy-json-wav fuzz-npz fuzz-config fuzz-model fuzz-onnx fuzz-client}
status=0
for t in $targets; do
	d=$work/$t
	# fuzz-npz's seeds are the npz test fixtures
	case $t in
	fuzz-npz) seeds=$src/../fixtures/npz ;;
	*) seeds=$src/corpus/$t ;;
	esac
	if [ ! -d "$seeds" ] || [ ! -x "$build/tests/fuzz/$t" ]; then
		echo "==> $t: no seeds in $seeds or no $build/tests/fuzz/$t" >&2
		status=1
		continue
	fi
	rm -f "$d"/fuzz-*.log
	mkdir -p "$d/corpus" "$d/artifacts"
	echo "==> $t for ${secs}s (log: $d/fuzz-0.log)"
	(cd "$d" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$build/tests/fuzz/$t" -max_total_time="$secs" -jobs=1 -timeout=20 \
		-rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$d/artifacts/" \
		"$d/corpus" "$seeds" > "$d/run.log" 2>&1)
	if ls "$d/artifacts" | grep -q .; then
		echo "    found: $(ls "$d/artifacts" | tr '\n' ' ')"
		status=1
	fi
	if ! grep -q "^#[0-9].*DONE" "$d"/fuzz-*.log 2>/dev/null; then
		echo "    did not finish a run: see $d/run.log and $d/fuzz-0.log" >&2
		status=1
	fi
	grep -h "^#[0-9].*\(DONE\|pulse\|NEW\|REDUCE\)" "$d"/fuzz-*.log 2>/dev/null | tail -1
done
exit $status
