package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/custode/custode/cmd/internal/archivecmd"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/cmd/internal/ledgercmd"
	"github.com/custode/custode/cmd/internal/verifycmd"
)

// custodeJSON runs the command line in process and decodes its standard
// output, which must be one JSON document, into v. It returns the exit
// status and standard error.
func custodeJSON(t *testing.T, v any, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Log: cli.DiscardLogger()}
	code := dispatch(context.Background(), e, args)
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v: exit %d, stdout is not one JSON document: %v\n%s\nstderr: %s", args, code, err, out.String(), errOut.String())
	}
	if dec.More() {
		t.Fatalf("%v: more than one JSON document on stdout", args)
	}
	return code, errOut.String()
}

// initWithEvents makes a data directory holding 54 entries (two of them
// checkpoints, timestamped).
func initWithEvents(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	var events strings.Builder
	for i := range 50 {
		fmt.Fprintf(&events, `{"kind":"accettazione","identificativo":"opec%d@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:%02d+01:00","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","oggetto":"n. %d"}`+"\n", i, i, i)
	}
	if code, out := custode(t, events.String(), "ledger", "append", "-data", data); code != 0 {
		t.Fatalf("append: %d %s", code, out)
	}
	return data
}

func TestLedgerVerifyJSON(t *testing.T) {
	data := initWithEvents(t)
	tests := []struct {
		name     string
		args     []string
		flip     bool // alter entry 23 first
		wantCode int
		check    func(t *testing.T, r ledgercmd.VerifyReport)
	}{
		{"whole ledger", []string{"-require-timestamps"}, false, 0, func(t *testing.T, r ledgercmd.VerifyReport) {
			if !r.OK || r.From != 0 || r.To < 50 || len(r.Problems) != 0 || r.Checkpoints == 0 || r.Signatures != r.Checkpoints {
				t.Errorf("report %+v", r)
			}
		}},
		{"a range", []string{"-from", "10", "-to", "20"}, false, 0, func(t *testing.T, r ledgercmd.VerifyReport) {
			if !r.OK || r.From != 10 || r.To != 20 {
				t.Errorf("report %+v", r)
			}
		}},
		{"an altered entry", nil, true, 1, func(t *testing.T, r ledgercmd.VerifyReport) {
			if r.OK || len(r.Problems) == 0 {
				t.Fatalf("report %+v", r)
			}
			p := r.Problems[0]
			if p.Seq == nil || *p.Seq != 23 || p.Checkpoint != nil || !strings.HasPrefix(p.Text, "entry 23:") {
				t.Errorf("first problem %+v, want entry 23's", p)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.flip {
				flipEntry(t, data, 23)
			}
			var r ledgercmd.VerifyReport
			code, stderr := custodeJSON(t, &r, append([]string{"ledger", "verify", "-data", data, "-json"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.wantCode, stderr)
			}
			// Tests do not run on a terminal: no progress on stderr.
			if strings.Contains(stderr, "\r") {
				t.Errorf("progress written to a non-terminal: %q", stderr)
			}
			tt.check(t, r)
		})
	}
}

func TestArchiveVerifyJSON(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	if code, out := custode(t, "", "ledger", "append", "-data", data, filepath.Join("..", "..", "testdata", "events.jsonl")); code != 0 {
		t.Fatalf("append: %d %s", code, out)
	}
	// Nothing sealed yet: an empty archive verifies.
	var empty archivecmd.VerifyReport
	if code, stderr := custodeJSON(t, &empty, "archive", "verify", "-data", data, "-json"); code != 0 || !empty.OK ||
		empty.Segments != 0 || empty.SealsRecorded == nil || *empty.SealsRecorded != 0 || empty.LastCheckpoint != nil {
		t.Fatalf("empty archive: exit %d %+v %s", code, empty, stderr)
	}
	sealOnce(t, data)
	tests := []struct {
		name     string
		args     []string
		remove   bool
		wantCode int
		check    func(t *testing.T, r archivecmd.VerifyReport)
	}{
		{"with the ledger", nil, false, 0, func(t *testing.T, r archivecmd.VerifyReport) {
			if !r.OK || r.Segments != 1 || r.Entries != 4 || r.SealsRecorded == nil || *r.SealsRecorded != 1 ||
				r.LastCheckpoint == nil || r.LastCheckpoint.Size != 4 || len(r.LastCheckpoint.Root) != 64 || len(r.Problems) != 0 {
				t.Errorf("report %+v", r)
			}
		}},
		{"without the ledger", []string{"-no-ledger"}, false, 0, func(t *testing.T, r archivecmd.VerifyReport) {
			if !r.OK || r.Segments != 1 || r.SealsRecorded != nil {
				t.Errorf("report %+v", r)
			}
		}},
		{"a segment lost", nil, true, 1, func(t *testing.T, r archivecmd.VerifyReport) {
			if r.OK || r.Segments != 0 || len(r.Problems) == 0 || !strings.Contains(r.Problems[0], "00000000000000000000-00000000000000000004.seg") {
				t.Errorf("report %+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.remove {
				if err := os.Remove(findSegment(t, data)); err != nil {
					t.Fatal(err)
				}
			}
			var r archivecmd.VerifyReport
			code, stderr := custodeJSON(t, &r, append([]string{"archive", "verify", "-data", data, "-json"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.wantCode, stderr)
			}
			if strings.Contains(stderr, "\r") {
				t.Errorf("progress written to a non-terminal: %q", stderr)
			}
			tt.check(t, r)
		})
	}
}

// sealOnce runs the archive until the entries appended are sealed, with
// its fixed-port listeners off (quietListeners).
func sealOnce(t *testing.T, data string) {
	t.Helper()
	quietListeners(t, data)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	sealed := sealedSignal{once: new(sync.Once), sealed: make(chan struct{})}
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Log: slog.New(sealed)}
	done := make(chan int)
	go func() { done <- dispatch(ctx, e, []string{"run", "-data", data, "-tsa-listen", "", "-archive-only"}) }()
	// Not until the seal is recorded: the segment is in the archive a
	// moment before, and a stop in between leaves it unrecorded.
	select {
	case <-sealed.sealed:
	case code := <-done:
		t.Fatalf("run ended before sealing: %d %s", code, out.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("run: %d %s", code, out.String())
	}
}

// findSegment returns the first file under data's archive that holds a
// sealed segment's bytes.
func findSegment(t *testing.T, data string) string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(path, "segments") && strings.HasSuffix(path, ".data") {
			found = append(found, path)
		}
		return err
	})
	if err != nil || len(found) == 0 {
		t.Fatalf("no segment file under %s: %v", data, err)
	}
	return found[0]
}

// flipEntry alters one byte of entry seq in data's ledger store.
func flipEntry(t *testing.T, data string, seq byte) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(data, "ledger", "entries")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	key := append([]byte{'e'}, 0, 0, 0, 0, 0, 0, 0, seq)
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, _ := item.ValueCopy(nil)
		v[len(v)/2] ^= 0x20
		return txn.Set(key, v)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// auditJSON is the part of audit -json's document the test reads.
type auditJSON struct {
	From, To  time.Time
	Entries   uint64
	Findings  []struct{ Check, Detail string }
	Integrity *struct {
		From, To       uint64
		Problems       []any
		ElapsedSeconds float64
	}
	Antivirus string
}

func TestAuditJSON(t *testing.T) {
	data := initWithEvents(t)
	out := filepath.Join(t.TempDir(), "out")
	tests := []struct {
		name       string
		args       []string
		wantStderr string
		wantFile   string
	}{
		{"to stdout", nil, "", ""},
		{"and to files", []string{"-out", out, "-cod-gest-pec", "999"}, "written to " + out, filepath.Join(out, "report.json")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r auditJSON
			var all map[string]any
			args := append([]string{"audit", "-data", data, "-json", "-from", "2026-11-23", "-to", "2026-11-24"}, tt.args...)
			var stdout, stderr bytes.Buffer
			e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Log: cli.DiscardLogger()}
			code := dispatch(context.Background(), e, args)
			if err := json.Unmarshal(stdout.Bytes(), &all); err != nil {
				t.Fatalf("exit %d: stdout is not one JSON document: %v\n%s\n%s", code, err, stdout.String(), stderr.String())
			}
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			wantCode := 0
			if len(r.Findings) > 0 {
				wantCode = 1 // the text report fails as well
			}
			if code != wantCode {
				t.Errorf("exit %d with %d findings: %+v\n%s", code, len(r.Findings), r.Findings, stderr.String())
			}
			if r.Entries < 50 || r.Integrity == nil || r.Integrity.To != r.Entries ||
				r.Antivirus != "not configured" || r.From.IsZero() || r.To.Sub(r.From) != 24*time.Hour {
				t.Errorf("report %+v (integrity %+v)", r, r.Integrity)
			}
			if _, ok := all["DeliveryP50"]; !ok {
				t.Errorf("no DeliveryP50 in %v", all)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.wantStderr)
			}
			if tt.wantFile != "" {
				if _, err := os.Stat(tt.wantFile); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestVerifyJSON(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	ev := `{"kind":"accettazione","identificativo":"opec3@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:00+01:00","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","oggetto":"n. 3"}` + "\n"
	if code, out := custode(t, ev, "ledger", "append", "-data", data); code != 0 {
		t.Fatalf("append: %d %s", code, out)
	}
	bundle := filepath.Join(t.TempDir(), "b.zip")
	if code, out := custode(t, "", "export", "receipt", "-data", data, "-id", "opec3@pec.prova.test", "-out", bundle, "-actor", "avv.rossi"); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	notZip := filepath.Join(t.TempDir(), "x.zip")
	if err := os.WriteFile(notZip, []byte("PK not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	ca, gestore, tsa := filepath.Join(data, "pki", "ca.pem"), filepath.Join(data, "pki", "gestore.pem"), filepath.Join(data, "pki", "tsa.pem")
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantOK    bool
		wantError bool // unreadable: no checks, an error
	}{
		{"verifies", []string{"-anchor", ca, "-gestore", gestore, bundle}, 0, true, false},
		{"another gestore", []string{"-anchor", ca, "-gestore", tsa, bundle}, 1, false, false},
		{"not a bundle", []string{"-anchor", ca, notZip}, 1, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r verifycmd.Report
			code, stderr := custodeJSON(t, &r, append([]string{"verify", "-json"}, tt.args...)...)
			if code != tt.wantCode || r.OK != tt.wantOK || (r.Error != "") != tt.wantError {
				t.Fatalf("exit %d, report %+v; want exit %d ok %v error %v\n%s", code, r, tt.wantCode, tt.wantOK, tt.wantError, stderr)
			}
			failed := 0
			for _, c := range r.Checks {
				if c.Name == "" {
					t.Errorf("a check without a name: %+v", c)
				}
				if !c.OK {
					failed++
				}
			}
			if tt.wantError != (len(r.Checks) == 0) || tt.wantOK != (failed == 0 && len(r.Checks) > 0) {
				t.Errorf("%d checks, %d failed, with ok %v: %+v", len(r.Checks), failed, r.OK, r.Checks)
			}
		})
	}
}

// quietListeners turns off the API and metrics listeners of the
// configuration in data: init gives them fixed default ports, which
// another test, or another program on a shared machine, may hold.
func quietListeners(t *testing.T, data string) {
	t.Helper()
	cfg := filepath.Join(data, config.File)
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "metrics")
	if api, ok := m["api"].(map[string]any); ok {
		api["listen"] = ""
	}
	if raw, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sealedSignal is a log handler that closes sealed when the sealer logs
// that it archived a segment, which it does once the seal is recorded in
// the ledger. It drops every record.
type sealedSignal struct {
	once   *sync.Once
	sealed chan struct{}
}

func (h sealedSignal) Enabled(context.Context, slog.Level) bool { return true }

func (h sealedSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "seal: segment archived" {
		h.once.Do(func() { close(h.sealed) })
	}
	return nil
}

func (h sealedSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h sealedSignal) WithGroup(string) slog.Handler      { return h }
