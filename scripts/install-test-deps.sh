#!/usr/bin/env bash
# Installs what the tests need, pinned: Debian's openssl, libxml2-utils
# (xmllint), clamav-daemon (clamd, run by scripts/clamd.sh with a local
# EICAR-only signature database), swaks and postfix (custode-bench's
# baseline relay, run as an instance of its own; the system one never
# starts), prometheus (for promtool, which checks the /metrics exposition;
# the prometheus daemon never starts), and staticcheck built from the
# Go module proxy into
# ~/.cache/custode/bin (outside the checkout, so that fresh clones on this
# machine, CI's included, reuse it). Whatever is already there at the
# pinned version is kept, so repeated runs cost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

STATICCHECK_VERSION=v0.6.1 # staticcheck 2025.1.1; builds with Go 1.26
APT_PACKAGES=(openssl libxml2-utils ca-certificates curl clamav-daemon swaks python3 postfix poppler-utils prometheus)

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v xmllint >/dev/null || missing+=(libxml2-utils)
command -v pdftotext >/dev/null && command -v pdftoppm >/dev/null || missing+=(poppler-utils) # the export PDFs' tests render and read them
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v curl >/dev/null || missing+=(curl)
command -v clamd >/dev/null || missing+=(clamav-daemon)
command -v swaks >/dev/null || missing+=(swaks)
command -v python3 >/dev/null || missing+=(python3) # imaplib, the IMAP client of the gestore tests
[ -x /usr/sbin/postfix ] || missing+=(postfix)      # custode-bench's baseline relay
command -v promtool >/dev/null || missing+=(prometheus) # promtool check metrics (export/metrics)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} from Debian"
	sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
	# clamav-daemon pulls in clamav-freshclam: neither daemon may start (the
	# tests run their own clamd; freshclam would try to reach the internet);
	# nor may prometheus's (only its promtool is wanted).
	# Where no policy-rc.d forbids starting services, put one in place for
	# the install only.
	policy=/usr/sbin/policy-rc.d
	placed_policy=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		placed_policy=1
		trap '$sudo rm -f "$policy"' EXIT
	fi
	# postfix asks how to configure the system's mail: not at all (the
	# bench runs its own instance from a configuration of its own).
	echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
	if [ -n "$placed_policy" ]; then
		$sudo rm -f "$policy"
		trap - EXIT
	fi
fi

BIN="${CUSTODE_TOOLS:-$HOME/.cache/custode/bin}"
mkdir -p "$BIN"
stamp="$BIN/staticcheck.version"
if [ ! -x "$BIN/staticcheck" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$STATICCHECK_VERSION" ]; then
	echo "building staticcheck $STATICCHECK_VERSION"
	GOBIN="$BIN" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	echo "$STATICCHECK_VERSION" > "$stamp"
fi

echo "test tools: $(openssl version); postfix $(dpkg-query -W -f='${Version}' postfix 2>/dev/null); xmllint $(xmllint --version 2>&1 | head -1 | awk '{print $NF}'); $(clamd --version); swaks $(swaks --version 2>&1 | awk '{print $NF; exit}'); promtool $(promtool --version 2>&1 | awk '{print $3; exit}'); staticcheck $("$BIN/staticcheck" -version | awk '{print $2}'); $(go version)"
