package verify

import (
	"os/exec"
	"strings"
	"testing"
)

// The offline checks link no database: go list -deps of this package names
// no badger and nothing of dgraph-io (issue 17, "a small verifier").
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
	if len(deps) == 0 || deps[len(deps)-1] != "github.com/custode/custode/ledger/verify" {
		t.Fatalf("go list -deps printed no dependencies of this package:\n%s", out)
	}
	for _, p := range deps {
		if strings.Contains(p, "badger") || strings.Contains(p, "dgraph-io") {
			t.Errorf("depends on %s", p)
		}
	}
}
