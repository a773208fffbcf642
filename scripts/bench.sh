#!/usr/bin/env bash
# Runs custode-bench, the load, fault and tamper harness, from this
# checkout:
#
#   scripts/bench.sh                 # the short mode (about 5 minutes on 2 cores)
#   scripts/bench.sh -long           # the long mode, fuzzing included (about an hour)
#   scripts/bench.sh -long -fuzztime 1m -keep -dir /tmp/bench
#
# Results go to .cache/bench/bench.json and .cache/bench/bench.md (and are printed) unless
# -json or -md are given. It needs root for the disk-full fault (a loop
# mounted ext4) and the Postfix baseline, and builds the pinned MinIO once
# per machine for the S3 fault (scripts/s3-servers.sh build).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

scripts/s3-servers.sh build
export CUSTODE_TEST_MINIO_BIN="${CUSTODE_TOOLS:-$HOME/.cache/custode/bin}/minio"
bin=$(mktemp -d "${TMPDIR:-/tmp}/custode-bench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/custode" ./cmd/custode
go build -o "$bin/custode-bench" ./cmd/custode-bench

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-short)
case " ${args[*]} " in *" -json "*) ;; *) mkdir -p .cache/bench; args+=(-json .cache/bench/bench.json) ;; esac
case " ${args[*]} " in *" -md "*) ;; *) mkdir -p .cache/bench; args+=(-md .cache/bench/bench.md) ;; esac
"$bin/custode-bench" "${args[@]}"
