#!/usr/bin/env bash
# Installs what the tests need, pinned: Debian's openssl and libxml2-utils
# (xmllint), and staticcheck built from the Go module proxy into
# ~/.cache/custode/bin (outside the checkout, so that fresh clones on this
# machine, CI's included, reuse it). Whatever is already there at the
# pinned version is kept, so repeated runs cost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

STATICCHECK_VERSION=v0.6.1 # staticcheck 2025.1.1; builds with Go 1.26
APT_PACKAGES=(openssl libxml2-utils ca-certificates curl)

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v xmllint >/dev/null || missing+=(libxml2-utils)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} from Debian"
	sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

BIN="${CUSTODE_TOOLS:-$HOME/.cache/custode/bin}"
mkdir -p "$BIN"
stamp="$BIN/staticcheck.version"
if [ ! -x "$BIN/staticcheck" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$STATICCHECK_VERSION" ]; then
	echo "building staticcheck $STATICCHECK_VERSION"
	GOBIN="$BIN" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	echo "$STATICCHECK_VERSION" > "$stamp"
fi

echo "test tools: $(openssl version); xmllint $(xmllint --version 2>&1 | head -1 | awk '{print $NF}'); staticcheck $("$BIN/staticcheck" -version | awk '{print $2}'); $(go version)"
