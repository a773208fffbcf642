package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/custode/custode/cmd/internal/cli"
)

// custode runs the command line in process and returns its exit status and
// output.
func custode(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &out, Log: cli.DiscardLogger()}
	code := dispatch(context.Background(), e, args)
	return code, out.String()
}

func TestLedgerCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	if code, _ := custode(t, "", "init", "-data", data); code == 0 {
		t.Fatal("init over an existing data directory succeeded")
	}
	var events strings.Builder
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&events, `{"kind":"accettazione","identificativo":"opec%d@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:%02d+01:00","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","oggetto":"n. %d"}`+"\n", i, i, i)
	}
	if code, out := custode(t, events.String(), "ledger", "append", "-data", data); code != 0 || !strings.HasSuffix(out, "49\n") {
		t.Fatalf("append: %d %s", code, out)
	}
	// The sample events of the README.
	if code, out := custode(t, "", "ledger", "append", "-data", data, filepath.Join("..", "..", "testdata", "events.jsonl")); code != 0 || len(strings.Fields(out)) != 4 {
		t.Fatalf("append testdata/events.jsonl: %d %s", code, out)
	}
	code, out := custode(t, "", "ledger", "verify", "-data", data, "-require-timestamps")
	if code != 0 || !strings.Contains(out, "\nOK\n") || !strings.Contains(out, "2 timestamps verified") {
		t.Fatalf("verify: %d %s", code, out)
	}
	if code, out := custode(t, "", "ledger", "proof", "-data", data, "17"); code != 0 || !strings.Contains(out, `"inclusion_proof"`) {
		t.Fatalf("proof: %d %s", code, out)
	}

	// Bad input: exit 2 with a message, nothing appended.
	bad := []struct {
		stdin string
		args  []string
		want  string
	}{
		{`{"kind":"accettazione"}`, []string{"ledger", "append", "-data", data}, "riferimento_temporale"},
		{`{"kind":"accettazione","riferimento_temporale":"2026-01-01T00:00:00Z"}`, []string{"ledger", "append", "-data", data}, "identificativo"},
		{`not json`, []string{"ledger", "append", "-data", data}, "line 1"},
		{``, []string{"ledger", "verify", "-data", data, "-from", "x"}, "invalid value"},
		{``, []string{"ledger", "verify", "-data", data, "-from", "5", "-to", "3"}, "must be after"},
		{``, []string{"ledger", "get", "-data", data, "minus-one"}, "sequence number"},
		{``, []string{"ledger", "frobnicate"}, "unknown command"},
		{``, []string{"pec", "inspect", "-at", "yesterday", "x.eml"}, "-at"},
	}
	for _, b := range bad {
		if code, out := custode(t, b.stdin, b.args...); code != 2 || !strings.Contains(out, b.want) {
			t.Errorf("%v: exit %d, want 2 with %q:\n%s", b.args, code, b.want, out)
		}
	}

	// A flipped byte: verify exits 1 and names the entry.
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(data, "ledger", "entries")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{'e'}, 0, 0, 0, 0, 0, 0, 0, 23)
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		v[len(v)/2] ^= 0x20
		return txn.Set(key, v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out = custode(t, "", "ledger", "verify", "-data", data)
	if code != 1 || !strings.Contains(out, "FIRST INCONSISTENCY: entry 23:") {
		t.Fatalf("verify after a flip: exit %d\n%s", code, out)
	}
}

func TestPECInspectSample(t *testing.T) {
	sample := filepath.Join("..", "..", "..", "shared", "pec-samples", "02_aruba_2014_ricevuta-accettazione.eml")
	if _, err := os.Stat(sample); err != nil {
		t.Fatalf("the PEC samples must be in ../shared beside the checkout: %v", err)
	}
	code, out := custode(t, "", "pec", "inspect", "-at", "signing-time", sample)
	if code != 0 || !strings.Contains(out, "ricevuta di accettazione") || !strings.Contains(out, "Signature: valid") {
		t.Fatalf("inspect at signing time: %d\n%s", code, out)
	}
	code, out = custode(t, "", "pec", "inspect", sample)
	if code != 3 || !strings.Contains(out, "expired") || !strings.Contains(out, "Signature: untrusted") {
		t.Fatalf("inspect now: exit %d, want 3 (untrusted) with an expiry\n%s", code, out)
	}
}

func TestArchiveCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	if code, out := custode(t, "", "ledger", "append", "-data", data, filepath.Join("..", "..", "testdata", "events.jsonl")); code != 0 {
		t.Fatalf("append: %d %s", code, out)
	}
	// run seals the checkpoints the appends left, then stops, however
	// long a loaded machine takes (the test's own timeout bounds it).
	sealOnce(t, data)
	code, got := custode(t, "", "archive", "verify", "-data", data)
	if code != 0 || !strings.Contains(got, "archive verify: OK") || !strings.Contains(got, "seals recorded in the ledger: 1") {
		t.Fatalf("archive verify: %d %s", code, got)
	}

	// Lost disk: the ledger directory is gone; rebuild from the archive.
	if code, got := custode(t, "", "ledger", "rebuild", "-data", data); code != 2 {
		t.Fatalf("rebuild without --from-archive: %d %s", code, got)
	}
	if code, got := custode(t, "", "ledger", "rebuild", "-data", data, "--from-archive"); code == 0 || !strings.Contains(got, "exists") {
		t.Fatalf("rebuild over a ledger: %d %s", code, got)
	}
	if err := os.RemoveAll(filepath.Join(data, "ledger")); err != nil {
		t.Fatal(err)
	}
	code, got = custode(t, "", "ledger", "rebuild", "-data", data, "--from-archive")
	if code != 0 || !strings.Contains(got, "rebuilt 4 entries") {
		t.Fatalf("rebuild: %d %s", code, got)
	}
	if code, got := custode(t, "", "ledger", "verify", "-data", data, "-require-timestamps"); code != 0 {
		t.Fatalf("verify the rebuilt ledger: %d %s", code, got)
	}
	if code, got := custode(t, "", "archive", "verify", "-data", data); code != 0 {
		t.Fatalf("archive verify after rebuild: %d %s", code, got)
	}
}

func TestMailboxAndDomainCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %s", out)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"add", "una password lunga\n", []string{"mailbox", "add", "-data", data, "-quota", "10M", "Anna@pec.prova.test"}, 0, "anna@pec.prova.test created, quota 10485760"},
		{"add again", "una password lunga\n", []string{"mailbox", "add", "-data", data, "anna@pec.prova.test"}, 1, "exists"},
		{"short password", "corta\n", []string{"mailbox", "add", "-data", data, "bruno@pec.prova.test"}, 2, "at least 8"},
		{"no password", "", []string{"mailbox", "add", "-data", data, "bruno@pec.prova.test"}, 2, "standard input"},
		{"foreign domain", "una password lunga\n", []string{"mailbox", "add", "-data", data, "x@altro.test"}, 2, "not in one of this gestore's domains"},
		{"bad quota", "una password lunga\n", []string{"mailbox", "add", "-data", data, "-quota", "lots", "bruno@pec.prova.test"}, 2, "bad size"},
		{"no address", "", []string{"mailbox", "add", "-data", data}, 2, "want 1 argument"},
		{"domain add", "", []string{"domain", "add", "-data", data, "PEC.Ente.test"}, 0, "domain pec.ente.test added"},
		{"domain add again", "", []string{"domain", "add", "-data", data, "pec.ente.test"}, 2, "already"},
		{"bad domain", "", []string{"domain", "add", "-data", data, "not a domain"}, 2, "bad domain"},
		{"domain list", "", []string{"domain", "list", "-data", data}, 0, "pec.prova.test\npec.ente.test\n"},
		{"add in new domain", "altra password\n", []string{"mailbox", "add", "-data", data, "ufficio@pec.ente.test"}, 0, "created"},
		{"look-alike", "altra password\n", []string{"mailbox", "add", "-data", data, "uff1cio@pec.ente.test"}, 1, "looks like the existing mailbox ufficio@pec.ente.test"},
		{"long s", "una password lunga\n", []string{"mailbox", "add", "-data", data, "\u017fara@pec.prova.test"}, 2, "non-ASCII"},
		{"fullwidth", "una password lunga\n", []string{"mailbox", "add", "-data", data, "\uff53ara@pec.prova.test"}, 2, "non-ASCII"},
		{"Cyrillic", "una password lunga\n", []string{"mailbox", "add", "-data", data, "\u0430nna@pec.prova.test"}, 2, "non-ASCII"},
		{"trailing dot", "una password lunga\n", []string{"mailbox", "add", "-data", data, "sara@pec.prova.test."}, 2, "trailing dot"},
		{"quoted", "una password lunga\n", []string{"mailbox", "add", "-data", data, `"anna@example.org"@pec.prova.test`}, 2, "quoted"},
		{"passwd non-ASCII", "nuova password\n", []string{"mailbox", "passwd", "-data", data, "\u0430nna@pec.prova.test"}, 2, "non-ASCII"},
		{"quota", "", []string{"mailbox", "quota", "-data", data, "anna@pec.prova.test", "1G"}, 0, "1073741824"},
		{"quota unknown", "", []string{"mailbox", "quota", "-data", data, "nobody@pec.prova.test", "1G"}, 1, "no such mailbox"},
		{"passwd", "nuova password\n", []string{"mailbox", "passwd", "-data", data, "anna@pec.prova.test"}, 0, "changed"},
		{"list", "", []string{"mailbox", "list", "-data", data}, 0, "anna@pec.prova.test\tmessages=0\tused=0\tquota=1073741824\nufficio@pec.ente.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := custode(t, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want %d; output %q, want it to contain %q", code, tt.code, out, tt.want)
			}
			if strings.Contains(out, "una password lunga") || strings.Contains(out, "nuova password") {
				t.Errorf("a password appears in the output: %q", out)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	code, out := custode(t, "", "demo")
	if code != 0 {
		t.Fatalf("demo: %d\n%s", code, out)
	}
	for _, want := range []string{"ricevuta di accettazione", "ricevuta di avvenuta consegna completa", "busta di trasporto",
		`"kind":"accettazione"`, `"kind":"presa-in-carico"`, `"kind":"avvenuta-consegna"`} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestPolicyCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data); code != 0 {
		t.Fatalf("init: %s", out)
	}
	def := filepath.Join("..", "..", "policies", "default.yaml")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 2\nretention:\n  log: 24 months\n  colour: blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(t.TempDir(), "v2.yaml")
	b, err := os.ReadFile(def)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v2, bytes.Replace(b, []byte("version: 1"), []byte("version: 2"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"check default", []string{"policy", "check", def}, 0, []string{"OK, version 1", "log 30 months"}},
		{"check bad", []string{"policy", "check", bad}, 1, []string{"bad.yaml:3: retention.log: 24 months is shorter than the legal minimum", "bad.yaml:4: retention: unknown key \"colour\""}},
		{"check missing", []string{"policy", "check", filepath.Join(t.TempDir(), "none.yaml")}, 1, []string{"no such file"}},
		{"check no argument", []string{"policy", "check"}, 2, []string{"want one policy file"}},
		{"apply bad", []string{"policy", "apply", "-data", data, "-actor", "operatore", bad}, 1, []string{"nothing applied"}},
		{"apply default", []string{"policy", "apply", "-data", data, "-actor", "operatore", def}, 0, []string{"policy version 1 applied by operatore", "ledger entry 0"}},
		{"apply the same version", []string{"policy", "apply", "-data", data, "-actor", "operatore", def}, 1, []string{"not above the active policy's 1"}},
		{"apply version 2", []string{"policy", "apply", "-data", data, "-actor", "operatore", v2}, 0, []string{"policy version 2 applied"}},
		{"ledger holds both", []string{"ledger", "get", "-data", data, "2"}, 0, []string{`"kind":"policy-change"`, `"actor":"operatore"`, `"version":"2"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := custode(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s", code, tt.code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestHoldCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data); code != 0 {
		t.Fatalf("init: %s", out)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no case", []string{"hold", "place", "-data", data, "-mailbox", "m@pec.custode.test", "-reason", "r"}, 2, "-case and -reason are required"},
		{"no scope", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "r"}, 2, "needs a mailbox"},
		{"bad date", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "r", "-from", "ieri"}, 2, "want a date"},
		{"non-ASCII mailbox", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "r", "-mailbox", "\u017fara@pec.custode.test"}, 2, "non-ASCII"},
		{"trailing dot", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "r", "-mailbox", "m@pec.custode.test."}, 2, "trailing dot"},
		{"dry run", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "causa", "-actor", "op", "-mailbox", "m@pec.custode.test", "-dry-run"}, 0, "0 objects would be held"},
		{"list after dry run", []string{"hold", "list", "-data", data}, 0, ""},
		{"place", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "causa", "-actor", "op", "-mailbox", "m@pec.custode.test"}, 0, "0 objects held"},
		{"place again", []string{"hold", "place", "-data", data, "-case", "RG-1", "-reason", "causa", "-actor", "op", "-mailbox", "m@pec.custode.test"}, 1, "already in force"},
		{"list", []string{"hold", "list", "-data", data}, 0, "RG-1\tin force"},
		{"purge dry run", []string{"purge", "-data", data, "-dry-run"}, 0, "0 objects would be purged, 0 kept"},
		{"purge dry run, ledger", []string{"purge", "-data", data, "-dry-run"}, 0, "0 ledger entries would be purged, 0 kept under a legal hold, 0 kept until sealed (log retention 30 months, exports 30 months)"},
		{"purge", []string{"purge", "-data", data}, 0, "0 ledger entries purged"},
		{"release unknown", []string{"hold", "release", "-data", data, "-case", "RG-9", "-actor", "op"}, 1, "no hold in force"},
		{"release", []string{"hold", "release", "-data", data, "-case", "RG-1", "-actor", "op"}, 0, "0 objects released"},
		{"list all", []string{"hold", "list", "-data", data, "-all"}, 0, "RG-1\treleased"},
		{"ledger verify", []string{"ledger", "verify", "-data", data}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := custode(t, "", tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want %d; output %q, want %q", code, tt.code, out, tt.want)
			}
		})
	}
}
