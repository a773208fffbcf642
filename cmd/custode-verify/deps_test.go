package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The small verifier links no database: go list -deps of it names no
// badger and nothing of dgraph-io, nor package ledger, which links them
// (issue 17, "a small verifier").
func TestNoDatabaseDependency(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH")
	}
	out, err := exec.Command(gotool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/custode/custode/cmd/custode-verify" {
		t.Fatalf("go list -deps printed no dependencies of this command:\n%s", out)
	}
	for _, p := range deps {
		if strings.Contains(p, "badger") || strings.Contains(p, "dgraph-io") || p == "github.com/custode/custode/ledger" || p == "github.com/custode/custode/export" {
			t.Errorf("depends on %s", p)
		}
	}
}
