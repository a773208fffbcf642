package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custode/custode/cmd/internal/config"
)

func TestConfigCheckCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", dir); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	code, out := custode(t, "", "config", "check", "-data", dir)
	if code != 0 || !strings.Contains(out, "custode.json: OK") {
		t.Fatalf("config check of init's configuration: %d\n%s", code, out)
	}
	// init writes every listener: config check lists them.
	for _, l := range []string{"tsa", "submission", "submissions", "ricezione", "imap", "api", "metrics", "admin"} {
		if !strings.Contains(out, "listener "+l+" ") {
			t.Errorf("config check does not list the %s listener:\n%s", l, out)
		}
	}
	other := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(other, []byte(`{"gestore": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = custode(t, "", "config", "check", "-config", other)
	if code != 1 || !strings.Contains(out, other+": domain: required") {
		t.Errorf("config check of a bad file: %d\n%s", code, out)
	}
}

// TestDemoKeepsInitListeners: the custode.json the demo keeps has init's
// listeners, not the random ports of its run (which would clash later, or
// point routes at nothing).
func TestDemoKeepsInitListeners(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	dir := t.TempDir()
	if code, out := custode(t, "", "demo", "-dir", dir, "-keep"); code != 0 {
		t.Fatalf("demo: %d\n%s", code, out)
	}
	def := config.DefaultServerConfig()
	for _, d := range []string{"pec.alfa.test", "pec.beta.test"} {
		c, err := config.Load(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		s := c.Server
		if s.Submission != def.Submission || s.Submissions != def.Submissions || s.Ricezione != def.Ricezione || s.IMAP != def.IMAP || len(s.Routes) != 0 {
			t.Errorf("%s's custode.json: submission %q, submissions %q, ricezione %q, imap %q, routes %v; want init's listeners and no routes",
				d, s.Submission, s.Submissions, s.Ricezione, s.IMAP, s.Routes)
		}
		if s.Index != "igpec.ldif" || len(s.PeerCAs) != 1 {
			t.Errorf("%s's custode.json lost the demo's index or peer CAs: %q %v", d, s.Index, s.PeerCAs)
		}
	}
}
