#!/usr/bin/env bash
# Real S3 Object Lock servers for the archive tests: MinIO and versitygw,
# pinned, built from source into ~/.cache/custode/bin, run on 127.0.0.1 with
# throw-away data directories.
#
#   eval "$(scripts/s3-servers.sh)"    # build if needed, start both, export env
#   GOTOOLCHAIN=local go test -race ./archive/...
#   scripts/s3-servers.sh stop         # stop both, remove their data
#
# Subcommands: start (the default), build, env (print the export lines of
# the running servers again), stop. Only the export lines go to stdout;
# progress and errors go to stderr. Logs and pid files live in
# .cache/s3-servers/.
#
# The binaries are rebuilt only when missing or built from another version
# (read back with `go version -m`). MinIO takes about 4 minutes and 150 MB
# to build, versitygw about 2 minutes. MinIO's community edition is AGPL and
# in maintenance mode: a test peer only, never shipped with Custode.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
VERSITYGW_MODULE=github.com/versity/versitygw
VERSITYGW_VERSION=v1.8.0

# Outside the checkout, so that every clone on this machine (CI runs in a
# fresh one) reuses the binaries.
BIN="${CUSTODE_TOOLS:-$HOME/.cache/custode/bin}"
STATE="$PWD/.cache/s3-servers"
ACCESS_KEY=custodetest
SECRET_KEY=custodetest-secret-key

log() { printf 's3-servers: %s\n' "$*" >&2; }

# built_version BINARY MODULE prints the version of MODULE that BINARY was
# built from, or nothing.
built_version() {
	[ -x "$1" ] || return 0
	go version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3 }'
}

# ensure NAME PACKAGE MODULE VERSION builds PACKAGE@VERSION into $BIN/NAME
# unless it is already there at VERSION.
ensure() {
	local name=$1 pkg=$2 module=$3 version=$4
	local have
	have=$(built_version "$BIN/$name" "$module")
	if [ "$have" = "$version" ]; then
		return 0
	fi
	log "building $name $version (have: ${have:-none}); this takes minutes"
	mkdir -p "$BIN"
	local start=$SECONDS
	# nice: builds share the machine with other work.
	GOBIN="$BIN" nice -n 10 go install "$pkg@$version" >&2
	log "built $name in $((SECONDS - start))s"
}

build() {
	ensure minio "$MINIO_MODULE" "$MINIO_MODULE" "$MINIO_VERSION"
	ensure versitygw "$VERSITYGW_MODULE/cmd/versitygw" "$VERSITYGW_MODULE" "$VERSITYGW_VERSION"
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	log "no free port found"
	return 1
}

# wait_http NAME URL PID waits until URL answers with any HTTP status.
wait_http() {
	local name=$1 url=$2 pid=$3 code
	for _ in $(seq 1 150); do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited; its log:"
			tail -n 30 "$STATE/$name.log" >&2
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
		if [ -n "$code" ] && [ "$code" != 000 ]; then
			return 0
		fi
		sleep 0.2
	done
	log "$name did not answer at $url within 30s; its log:"
	tail -n 30 "$STATE/$name.log" >&2
	return 1
}

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start_minio() {
	local port data pid
	port=$(free_port)
	data=$(mktemp -d "${TMPDIR:-/tmp}/custode-minio.XXXXXX")
	MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
		MINIO_BROWSER=off MINIO_UPDATE=off \
		setsid "$BIN/minio" server --quiet --address "127.0.0.1:$port" "$data" \
		>"$STATE/minio.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$STATE/minio.pid"
	echo "$data" >"$STATE/minio.data"
	wait_http minio "http://127.0.0.1:$port/minio/health/live" "$pid"
	echo "http://127.0.0.1:$port" >"$STATE/minio.url"
	log "minio listening on 127.0.0.1:$port (pid $pid, data $data)"
}

start_versitygw() {
	local port data pid
	port=$(free_port)
	data=$(mktemp -d "${TMPDIR:-/tmp}/custode-versitygw.XXXXXX")
	mkdir -p "$data/gw" "$data/versions"
	# Without --versioning-dir, lock-enabled buckets are unversioned.
	setsid "$BIN/versitygw" --access "$ACCESS_KEY" --secret "$SECRET_KEY" \
		--port "127.0.0.1:$port" \
		posix --versioning-dir "$data/versions" "$data/gw" \
		>"$STATE/versitygw.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$STATE/versitygw.pid"
	echo "$data" >"$STATE/versitygw.data"
	wait_http versitygw "http://127.0.0.1:$port/" "$pid"
	echo "http://127.0.0.1:$port" >"$STATE/versitygw.url"
	log "versitygw listening on 127.0.0.1:$port (pid $pid, data $data)"
}

print_env() {
	local ok=0
	if running minio; then
		echo "export CUSTODE_TEST_MINIO=$(cat "$STATE/minio.url")"
		# Outage tests start and stop a MinIO of their own.
		echo "export CUSTODE_TEST_MINIO_BIN=$BIN/minio"
		ok=1
	fi
	if running versitygw; then
		echo "export CUSTODE_TEST_VERSITYGW=$(cat "$STATE/versitygw.url")"
		# Its posix backend keeps objects as plain files: the tests alter
		# one there to check that Get detects it.
		echo "export CUSTODE_TEST_VERSITYGW_DIR=$(cat "$STATE/versitygw.data")/gw"
		ok=1
	fi
	if [ "$ok" = 1 ]; then
		echo "export CUSTODE_TEST_S3_ACCESS_KEY=$ACCESS_KEY"
		echo "export CUSTODE_TEST_S3_SECRET_KEY=$SECRET_KEY"
	else
		log "no server is running; run: scripts/s3-servers.sh start"
		return 1
	fi
}

stop_one() {
	local name=$1 pid
	if [ -f "$STATE/$name.pid" ]; then
		pid=$(cat "$STATE/$name.pid")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid"
			for _ in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
			log "stopped $name (pid $pid)"
		fi
		rm -f "$STATE/$name.pid" "$STATE/$name.url"
	fi
	if [ -f "$STATE/$name.data" ]; then
		rm -rf "$(cat "$STATE/$name.data")"
		rm -f "$STATE/$name.data"
	fi
}

cmd=${1:-start}
case "$cmd" in
build)
	build
	;;
start)
	build
	mkdir -p "$STATE"
	for name in minio versitygw; do
		if running "$name"; then
			log "$name already running (pid $(cat "$STATE/$name.pid"))"
		else
			stop_one "$name" # clear stale state
			"start_$name"
		fi
	done
	print_env
	;;
env)
	print_env
	;;
stop)
	stop_one minio
	stop_one versitygw
	;;
*)
	echo "usage: $0 [start|build|env|stop]" >&2
	exit 2
	;;
esac
