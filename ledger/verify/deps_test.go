package verify

import (
	"os/exec"
	"strings"
	"testing"
)

// What a court's expert runs years later links no database: go list of
// each offline package, and of the custode-verify command, names no
// badger and nothing of dgraph-io among its dependencies (issue 17, "a
// small verifier"; issue 20, ledger/verify).
func TestNoDatabaseDependency(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH")
	}
	pkgs := []string{
		"github.com/custode/custode/ledger/evidence",
		"github.com/custode/custode/ledger/verify",
		"github.com/custode/custode/ledger/verify/bundle",
		"github.com/custode/custode/cmd/custode-verify",
	}
	args := append([]string{"list", "-f", `{{.ImportPath}} {{join .Deps " "}}`}, pkgs...)
	out, err := exec.Command(gotool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(pkgs) {
		t.Fatalf("go list printed %d packages, want %d:\n%s", len(lines), len(pkgs), out)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			t.Fatalf("go list printed no dependencies: %q", line)
		}
		for _, p := range fields[1:] {
			if strings.Contains(p, "badger") || strings.Contains(p, "dgraph-io") {
				t.Errorf("%s depends on %s", fields[0], p)
			}
		}
	}
}
