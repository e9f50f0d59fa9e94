#!/bin/sh
# Read a line of text with PaddleOCR's PP-OCRv4 recogniser, quantized to
# INT8 by dynq-quantize and served by dynqd, through dynqctl:
#
#   models/demo/ocr.sh ["TEXT"]                 render TEXT and read it back
#   models/demo/ocr.sh --image line.png         read a picture of one line
#
# Options: --font FILE and --size PX (rendering; default DejaVu Sans, or Noto
# CJK for CJK text, 30 px), --png FILE (keep the rendered line),
# --precision int8|fp32 (default int8), --socket PATH --model NAME (use a
# running dynqd that serves the recogniser as NAME instead of starting a
# private one).  Prints the text drawn (if any) and the text read.
#
# Needs the model and key file from models/fetch-ppocr.sh (same cache:
# $DYNQ_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/dynq), python3-numpy,
# python3-pil and fonts-dejavu-core / fonts-noto-cjk.  Binaries come from
# $BUILD_DIR (default: build/ in this tree) when built there, else from PATH.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/models/demo"
cache=${DYNQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dynq}
onnx="$cache/ch_PP-OCRv4_rec_infer.onnx"
keys="$cache/ppocr_keys_v1.txt"
py=/usr/bin/python3

die() { printf 'ocr.sh: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

text="" image="" font="" size=30 png="" precision=int8 socket="" model=""
while [ $# -gt 0 ]; do
	case $1 in
	--image|--font|--size|--png|--precision|--socket|--model)
		[ $# -ge 2 ] || die "$1 needs an argument"
		case $1 in
		--image) image=$2 ;; --font) font=$2 ;; --size) size=$2 ;; --png) png=$2 ;;
		--precision) precision=$2 ;; --socket) socket=$2 ;; --model) model=$2 ;;
		esac
		shift 2 ;;
	-h|--help) usage ;;
	--) shift; text=${1:-}; shift $(( $# > 0 ? 1 : 0 )) ;;
	-*) die "unknown option '$1' (--help lists them)" ;;
	*) [ -z "$text" ] || die "one TEXT only (quote it): '$1'"; text=$1; shift ;;
	esac
done
case $precision in int8|fp32) ;; *) die "--precision must be int8 or fp32, not '$precision'" ;; esac
[ -z "$image" ] || [ -z "$text" ] || die "give TEXT or --image, not both"
[ -n "$image" ] || [ -n "$text" ] || text="Hello dynq 2026"
if [ -n "$socket" ] || [ -n "$model" ]; then
	[ -n "$socket" ] && [ -n "$model" ] || die "--socket and --model go together"
fi
[ -r "$onnx" ] && [ -r "$keys" ] ||
	die "PP-OCRv4 is not in $cache: run models/fetch-ppocr.sh first"

bin() { # name, path under the build directory
	b=${BUILD_DIR:-$root/build}
	if [ -x "$b/$2" ]; then echo "$b/$2"
	elif command -v "$1" >/dev/null 2>&1; then command -v "$1"
	else die "$1 not found: build the tree (ninja -C build) or install dynq"
	fi
}
ctl=$(bin dynqctl client/dynqctl)

tmp=$(mktemp -d /tmp/dynq-ocr.XXXXXX)
pid=""
# our own dynqd (if we started one) drains on TERM; the scratch files go
cleanup() {
	if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$image" ]; then
	"$py" "$here/ocr_line.py" image "$image" "$tmp/x.npy"
else
	set -- render "$text" "$tmp/x.npy" --size "$size"
	[ -z "$font" ] || set -- "$@" --font "$font"
	[ -z "$png" ] || set -- "$@" --png "$png"
	"$py" "$here/ocr_line.py" "$@"
fi

if [ -z "$socket" ]; then
	mkdir "$tmp/models"
	model=ocr
	"$(bin dynq-quantize models/dynq-quantize)" "$onnx" "$tmp/models/$model.dynq" \
		>"$tmp/quantize.log" 2>&1 || { cat "$tmp/quantize.log" >&2; die "dynq-quantize failed"; }
	socket="$tmp/dynqd.sock"
	"$(bin dynqd daemon/dynqd)" --socket "$socket" --models "$tmp/models" 2>"$tmp/dynqd.log" &
	pid=$!
	i=0
	until "$ctl" --socket "$socket" ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 400 ] || ! kill -0 "$pid" 2>/dev/null; then
			cat "$tmp/dynqd.log" >&2
			die "dynqd did not start"
		fi
		sleep 0.05
	done
fi

mkdir "$tmp/out"
"$ctl" --socket "$socket" infer "$model" --precision "$precision" --input "x=$tmp/x.npy" \
	--output-dir "$tmp/out" >/dev/null
set -- "$tmp"/out/*.npy
[ $# -eq 1 ] && [ -f "$1" ] || die "model '$model' did not give one output (is it PP-OCRv4 recognition?)"
read=$("$py" "$here/ocr_line.py" decode "$1" "$keys")

[ -z "$text" ] || printf 'drawn: %s\n' "$text"
printf 'read:  %s\n' "$read"
