package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultPolicy(t *testing.T) {
	p, err := Load(filepath.Join(".", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Version != 1 || p.Retention.Log != (Period{Months: 30}) || p.Retention.Archivio != (Period{Years: 10}) {
		t.Errorf("default policy: %+v", p)
	}
	o := p.MailboxOptions("Ufficio@pec.custode.test")
	if o.NonPEC != "anomalia" || o.NotifyTo != "ufficio@example.com" || o.Archivio == nil || !*o.Archivio || o.Quota != 1<<30 {
		t.Errorf("mailbox options: %+v", o)
	}
	if o := p.MailboxOptions("altro@pec.custode.test"); o.Archivio == nil || *o.Archivio {
		t.Errorf("another mailbox inherits its domain's options: %+v", o)
	}
}

func TestErrors(t *testing.T) {
	const head = "version: 2\nretention:\n  log: 30 months\n"
	tests := []struct {
		name, file string
		want       []string // each "line: text" must appear
	}{
		{"unknown top key", head + "colour: blue\n", []string{"p.yaml:4: policy: unknown key \"colour\""}},
		{"unknown retention key", "version: 2\nretention:\n  log: 30 months\n  logs: 3 years\n", []string{"p.yaml:4: retention: unknown key \"logs\""}},
		{"bad duration", "version: 2\nretention:\n  log: thirty months\n", []string{"p.yaml:3: retention.log: bad period"}},
		{"log below the legal minimum", "version: 2\nretention:\n  log: 29 months\n", []string{"p.yaml:3: retention.log: 29 months is shorter than the legal minimum of 30 months"}},
		{"log in days below the minimum", "version: 2\nretention:\n  log: 900 days\n", []string{"p.yaml:3:", "shorter than the legal minimum"}},
		{"virus quarantine too short", head + "  virus_quarantine: 1 year\n", []string{"p.yaml:4: retention.virus_quarantine"}},
		{"no version", "retention:\n  log: 30 months\n", []string{"p.yaml:1: policy: version is required"}},
		{"no log", "version: 1\nretention:\n  exports: 30 months\n", []string{"p.yaml:3: retention.log is required"}},
		{"bad non_pec", head + "domains:\n  pec.a.test:\n    non_pec: bounce\n", []string{"p.yaml:6: domains.pec.a.test.non_pec: \"bounce\""}},
		{"forward without address", head + "mailboxes:\n  a@pec.a.test:\n    non_pec: forward\n", []string{"p.yaml:6: mailboxes.a@pec.a.test: non_pec forward needs forward_to"}},
		{"bad mailbox", head + "mailboxes:\n  not-an-address:\n    quota: 1G\n", []string{"p.yaml:5: mailboxes: \"not-an-address\" is not a mailbox address"}},
		{"bad quota", head + "mailboxes:\n  a@pec.a.test:\n    quota: lots\n", []string{"p.yaml:6: mailboxes.a@pec.a.test.quota: bad size"}},
		{"bad date", head + "mailboxes:\n  a@pec.a.test:\n    contract_end: next year\n", []string{"p.yaml:6:", "contract_end"}},
		{"repeated key", head + "version: 3\n", []string{"p.yaml:4: policy: \"version\" given twice"}},
		{"alias", head + "domains:\n  pec.a.test: &x\n    quota: 1G\n  pec.b.test: *x\n", []string{"p.yaml:7: domains.pec.b.test: aliases are not allowed"}},
		{"not YAML", "version: [1\n", []string{"p.yaml:", "not YAML"}},
		{"empty", "", []string{"p.yaml:1: empty policy file"}},
		{"two errors", "version: 0\nretention:\n  log: 1 day\n", []string{"p.yaml:1: version", "p.yaml:3: retention.log"}},
		{"roles not a list", head + "roles:\n  auditors: revisore\n", []string{"p.yaml:5: roles.auditors: want a list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.file))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParsePeriod(t *testing.T) {
	ref := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"30 months", ref.AddDate(0, 30, 0)},
		{"10 years", ref.AddDate(10, 0, 0)},
		{"1 year 6 months", ref.AddDate(1, 6, 0)},
		{"90 days", ref.AddDate(0, 0, 90)},
		{"36h", ref.Add(36 * time.Hour)},
		{"5 seconds", ref.Add(5 * time.Second)},
	}
	for _, tt := range tests {
		p, err := ParsePeriod(tt.in)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if got := p.AddTo(ref); !got.Equal(tt.want) {
			t.Errorf("%q from %v: %v, want %v", tt.in, ref, got, tt.want)
		}
	}
	for _, bad := range []string{"", "0 days", "-3h", "months", "3 fortnights", "99999 years", "1 year 6"} {
		if _, err := ParsePeriod(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	b, err := readFile("default.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("version: 1\nretention:\n  log: 30 months\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err == nil && (p.Version < 1 || !p.Retention.Log.AtLeast(MinLogRetention, time.Now())) {
			t.Fatalf("accepted an invalid policy: %+v", p)
		}
	})
}

func readFile(name string) ([]byte, error) { return os.ReadFile(name) }
