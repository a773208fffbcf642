package main

import (
	"archive/zip"
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/archive/quarantine"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/policies"
)

// TestAntivirusProfile: without a virus scanner the gestore warns at
// start and says so (ScannerConfigured); a production profile refuses to
// start without one unless scanning is disabled explicitly, with an error
// naming the settings.
func TestAntivirusProfile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c, err := config.Init(dir, "Custode Dev PEC", "pec.custode.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := c.OpenLedger(ctx, &cli.Env{Log: cli.DiscardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const warning = "antivirus: not configured"
	cases := []struct {
		name      string
		set       func(s *config.ServerConfig)
		err       []string // substrings of the error; nil: it starts
		warns     bool
		scanning  bool
		auditLine string
	}{
		{"development, no scanner", func(s *config.ServerConfig) {}, nil, true, false, "antivirus: not configured\n"},
		{"production, no scanner", func(s *config.ServerConfig) { s.Profile = "production" }, []string{"server.clamd", `"antivirus": {"disabled": true}`}, false, false, ""},
		{"production, scanning disabled", func(s *config.ServerConfig) {
			s.Profile = "production"
			s.Antivirus = &config.AntivirusConfig{Disabled: true}
		}, nil, true, false, "antivirus: not configured (disabled in custode.json)\n"},
		{"production, clamd", func(s *config.ServerConfig) {
			s.Profile = "production"
			s.Clamd = "tcp:127.0.0.1:3310"
		}, nil, false, true, "antivirus: clamd tcp:127.0.0.1:3310\n"},
		{"unknown profile", func(s *config.ServerConfig) { s.Profile = "prod" }, []string{"server.profile", `"prod"`}, false, false, ""},
		{"clamd and disabled", func(s *config.ServerConfig) {
			s.Clamd = "unix:/run/clamd.sock"
			s.Antivirus = &config.AntivirusConfig{Disabled: true}
		}, []string{"server.clamd", "server.antivirus.disabled"}, false, false, ""},
		{"bad clamd", func(s *config.ServerConfig) { s.Clamd = "clamd.sock" }, []string{"server.clamd", "unix:/path"}, false, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			cc.Server = config.DefaultServerConfig()
			tc.set(cc.Server)
			var logs bytes.Buffer
			e := &cli.Env{Stdout: &logs, Stderr: &logs, Log: slog.New(slog.NewTextHandler(&logs, nil))}
			g, err := cc.OpenGestore(ctx, e, l, time.Now)
			if tc.err != nil {
				if err == nil {
					g.Close()
					t.Fatal("it started")
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %s", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			warned := strings.Contains(logs.String(), "level=WARN msg=\""+warning)
			if warned != tc.warns {
				t.Errorf("warned %v, want %v; logs:\n%s", warned, tc.warns, logs.String())
			}
			if got := g.Server.ScannerConfigured(); got != tc.scanning {
				t.Errorf("ScannerConfigured() = %v, want %v", got, tc.scanning)
			}
			if got := "antivirus: " + cc.AntivirusStatus() + "\n"; got != tc.auditLine {
				t.Errorf("audit line %q, want %q", got, tc.auditLine)
			}
		})
	}
	// The audit report of a data directory without a scanner says so.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out := custode(t, "", "audit", "-data", dir, "-from", time.Now().Add(-time.Hour).Format(time.RFC3339)); !strings.Contains(out, "\nantivirus: not configured\n") {
		t.Errorf("audit: %d\n%s", code, out)
	}
}

// TestQuarantineCommands: quarantine list shows what the gestore kept,
// quarantine export writes it as a ZIP and records the export.
func TestQuarantineCommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c, err := config.Init(dir, "Custode Dev PEC", "pec.custode.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q, err := c.OpenQuarantine(ctx, policies.Period{})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: mario@pec.custode.test\r\nSubject: fattura\r\n\r\nEICAR\r\n")
	r, err := q.Put(ctx, quarantine.Message{Identificativo: "opec-1@pec.custode.test", Mittente: "mario@pec.custode.test",
		Destinatari: []string{"lucia@pec.custode.test"}, Virus: "Eicar-Signature\x1b[2J", Point: quarantine.PointAccesso, Data: msg})
	if err != nil {
		t.Fatal(err)
	}
	code, out := custode(t, "", "quarantine", "list", "-data", dir)
	if code != 0 || !strings.Contains(out, r.ID+"\t") || !strings.Contains(out, "opec-1@pec.custode.test") ||
		!strings.Contains(out, "retain until "+r.RetainUntil.UTC().Format(time.RFC3339)) || !strings.Contains(out, "1 findings") || strings.Contains(out, "\x1b") {
		t.Errorf("list: %d\n%q", code, out)
	}
	zipFile := filepath.Join(t.TempDir(), "q.zip")
	if code, out := custode(t, "", "quarantine", "export", "-data", dir, "-out", zipFile, "-actor", "revisore", r.ID); code != 0 {
		t.Fatalf("export: %d\n%s", code, out)
	}
	z, err := zip.OpenReader(zipFile)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if len(z.File) != 4 || z.File[0].Name != quarantine.FileMessage {
		t.Errorf("export holds %d files", len(z.File))
	}
	if code, out := custode(t, "", "ledger", "get", "-data", dir, "0"); code != 0 || !strings.Contains(out, `"actor":"revisore"`) || !strings.Contains(out, r.ID) {
		t.Errorf("the export is not recorded: %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"quarantine", "export", "-data", dir, "-out", zipFile},
		{"quarantine", "export", "-data", dir, r.ID},
		{"quarantine", "export", "-data", dir, "-out", zipFile, "nope"},
		{"quarantine", "export", "-data", dir, "-out", zipFile, strings.Repeat("0", 64)},
	} {
		if code, out := custode(t, "", args...); code == 0 {
			t.Errorf("%v: exit 0\n%s", args, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "worm")); err != nil {
		t.Errorf("the quarantine is not in the data directory's archive: %v", err)
	}
}
