#!/usr/bin/env bash
# Runs every test of Custode, as CI does (.ci/run calls this script):
# installs what the tests need, then gofmt, go vet, staticcheck, the unit
# tests with the race detector, and the integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

scripts/install-test-deps.sh
export PATH="${CUSTODE_TOOLS:-$HOME/.cache/custode/bin}:$PATH"

# Real S3 Object Lock servers (MinIO, versitygw) for the archive tests:
# built once per machine, started on 127.0.0.1, stopped on exit.
eval "$(scripts/s3-servers.sh start)"
trap 'scripts/s3-servers.sh stop >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
staticcheck ./...

step "unit tests (race detector)"
go test -race -short -count=1 -timeout 20m ./...

step "integration tests"
# Packages whose tests include integration tests (skipped under -short).
pkgs=$(grep -rlE --include='*_test.go' '^func (TestIntegration|TestCrashRecovery)' . | xargs -n1 dirname | sort -u)
go test -count=1 -timeout 40m -run '^TestIntegration|^TestCrashRecovery$' -v $pkgs
