#!/bin/sh
# models/demo/ocr.sh end to end: lines it renders are read back exactly by
# PP-OCRv4 quantized to INT8 and served by a private dynqd (Latin, a line
# wider than the model's 320-pixel minimum, the FP32 path, a picture given
# with --image, and CJK when fonts-noto-cjk is installed), and bad input is
# refused with exit 2 and a reason.
#
# Without the model (models/fetch-ppocr.sh) this is a skip (exit 77), unless
# DYNQ_REQUIRE_OCR is set.  Run by meson with DYNQ_SRCDIR and DYNQ_BUILDDIR.
set -u

src=${DYNQ_SRCDIR:?}
export BUILD_DIR=${DYNQ_BUILDDIR:?}
demo="$src/models/demo/ocr.sh"
cache=${DYNQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dynq}
fails=0

if [ ! -r "$cache/ch_PP-OCRv4_rec_infer.onnx" ] || [ ! -r "$cache/ppocr_keys_v1.txt" ]; then
	case ${DYNQ_REQUIRE_OCR:-0} in
	''|0) echo "SKIP: PP-OCRv4 not in $cache (run models/fetch-ppocr.sh); set DYNQ_REQUIRE_OCR=1 to make this a failure"
	      exit 77 ;;
	*) echo "FAIL: DYNQ_REQUIRE_OCR is set but PP-OCRv4 is not in $cache: run models/fetch-ppocr.sh"
	   exit 1 ;;
	esac
fi
tmp=$(mktemp -d /tmp/dynq-ocr-test.XXXXXX)
pid=""
trap '[ -z "$pid" ] || { kill -TERM "$pid"; wait "$pid"; }; rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# reads TEXT [demo options]: the demo's "read:" line must be TEXT
reads() {
	want=$1
	shift
	out=$("$demo" "$@" 2>&1)
	st=$?
	got=$(printf '%s\n' "$out" | sed -n 's/^read:  //p')
	if [ $st -ne 0 ] || [ "$got" != "$want" ]; then
		fail "ocr.sh $*: status $st, read '$got', want '$want'"
		printf '%s\n' "$out"
	else
		echo "ok: ocr.sh $* -> '$got'"
	fi
}

# the demo's own private dynqd
reads "Hello dynq 2026" "Hello dynq 2026"

# a running dynqd (--socket, --model): one started here serves the rest
mkdir "$tmp/models"
"$BUILD_DIR/models/dynq-quantize" "$cache/ch_PP-OCRv4_rec_infer.onnx" "$tmp/models/rec.dynq" \
	>"$tmp/q.log" 2>&1 || { cat "$tmp/q.log"; echo "FAIL: dynq-quantize"; exit 1; }
sock="$tmp/d.sock"
"$BUILD_DIR/daemon/dynqd" --socket "$sock" --models "$tmp/models" 2>"$tmp/d.log" &
pid=$!
i=0
until "$BUILD_DIR/client/dynqctl" --socket "$sock" ping >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
		cat "$tmp/d.log"
		echo "FAIL: dynqd did not start"
		exit 1
	fi
	sleep 0.05
done
on="--socket $sock --model rec"
reads "Invoice total: 1,234.56" $on --precision fp32 "Invoice total: 1,234.56"
# 46 characters at 30 px is about 700 pixels: wider than 320, not cut
long="The quick brown fox jumps over the lazy dog 42"
reads "$long" $on --png "$tmp/long.png" "$long"
[ -s "$tmp/long.png" ] || fail "--png $tmp/long.png was not written"
reads "$long" $on --image "$tmp/long.png"
if [ -r /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
	reads "发票金额123.45元" $on "发票金额123.45元"
else
	echo "note: fonts-noto-cjk not installed; the CJK line is not tested"
fi
refused_model() { # a model that is not the recogniser: the demo says so
	out=$("$demo" --socket "$sock" --model nosuch x 2>&1)
	st=$?
	case $out in
	*"nosuch"*) [ $st -ne 0 ] || fail "--model nosuch: status 0: $out" ;;
	*) fail "--model nosuch: output does not name the model: $out" ;;
	esac
}
refused_model

# refusals: exit 2 and the reason
refused() { # needle, demo arguments
	needle=$1
	shift
	out=$("$demo" "$@" 2>&1)
	st=$?
	case $out in
	*"$needle"*) [ $st -eq 2 ] || fail "ocr.sh $*: status $st (want 2): $out" ;;
	*) fail "ocr.sh $*: status $st, output lacks '$needle': $out" ;;
	esac
}
printf 'not a picture' >"$tmp/junk.png"
refused "cannot read image $tmp/junk.png" --image "$tmp/junk.png"
refused "cannot read image $tmp/none.png" --image "$tmp/none.png"
refused "unknown option '--bogus'" --bogus
refused "--precision must be int8 or fp32" --precision int4 x
refused "a glyph size from 8 to 44" --size 100 x
refused "nothing to render" " "
refused "give TEXT or --image, not both" --image "$tmp/long.png" x
refused "--socket and --model go together" --socket /nonexistent x
refused "cannot open font" --font "$tmp/junk.png" x

[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "all ok"
