package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
)

// TestMain runs the command line itself when a test re-executes the test
// binary with CUSTODE_TEST_MAIN=1, so that signals reach a real process.
func TestMain(m *testing.M) {
	if os.Getenv("CUSTODE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// initData makes a data directory and returns it with its CA's PEM file.
func initData(t *testing.T) (data, ca string) {
	t.Helper()
	data = filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	c, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, c.Path(c.CACert)
}

// Every input the command line reads has a limit: /dev/zero as any of them
// is refused, naming the file and the limit (issue 16, finding 11). Before,
// pec inspect /dev/zero grew until the OOM killer ended it.
func TestInputsAreBounded(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	data, ca := initData(t)
	bundle := filepath.Join(t.TempDir(), "bundle.zip")
	if err := os.WriteFile(bundle, []byte("PK not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big.zip")
	if err := os.Truncate(mustCreate(t, big), cli.InputBundlePart.Max+1); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pec", "inspect", "-roots", ca, "/dev/zero"}, 1, "/dev/zero: message larger than 64 MiB"},
		{[]string{"pec", "inspect", "-roots", "/dev/zero", "x.eml"}, 1, "/dev/zero: file of trusted roots larger than 8 MiB"},
		{[]string{"pec", "inspect", "-roots", ca, "-igpec", "/dev/zero", "x.eml"}, 1, "/dev/zero: indice dei gestori (LDIF) larger than 32 MiB"},
		{[]string{"verify", "-anchor", "/dev/zero", bundle}, 2, "/dev/zero: certificate file larger than 1 MiB"},
		{[]string{"verify", "-anchor", ca, "/dev/zero"}, 1, "/dev/zero: bundle part larger than"},
		{[]string{"verify", "-anchor", ca, big}, 1, big + ": bundle part larger than"},
		{[]string{"policy", "check", "/dev/zero"}, 1, "/dev/zero: policy file larger than 1 MiB"},
		{[]string{"policy", "apply", "-data", data, "-actor", "op", "/dev/zero"}, 1, "/dev/zero: policy file larger than 1 MiB"},
		{[]string{"igpec", "show", "/dev/zero"}, 1, "/dev/zero: indice dei gestori (LDIF) larger than 32 MiB"},
		{[]string{"ledger", "append", "-data", data, "/dev/zero"}, 2, "/dev/zero: a line longer than 2 MiB"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[:2], " "), func(t *testing.T) {
			code, out := custode(t, "", c.args...)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Fatalf("%v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.want, out)
			}
		})
	}
}

func mustCreate(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return name
}

// ledger append refuses every kind custode writes itself, and marks what
// it appends as imported (issue 16, finding 12). Before, a checkpoint entry
// with an arbitrary size and root was appended.
func TestLedgerAppendRefusesSystemKinds(t *testing.T) {
	data, _ := initData(t)
	for _, k := range ledger.Kinds() {
		if k.IsPEC() {
			continue
		}
		for _, kind := range []ledger.Kind{k, ledger.KindOutage} {
			line := fmt.Sprintf(`{"kind":%q,"riferimento_temporale":"2026-11-23T10:00:00Z","actor":"op","details":{"tree_size":"5","root":"%s"}}`, kind, strings.Repeat("ab", 32))
			code, out := custode(t, line, "ledger", "append", "-data", data)
			if code != 2 || !strings.Contains(out, fmt.Sprintf("kind %q", kind)) || !strings.Contains(out, "PEC events only") {
				t.Errorf("append %s: exit %d, want 2 naming the kind:\n%s", kind, code, out)
			}
		}
	}
	line := `{"kind":"accettazione","identificativo":"opec1@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:00Z","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","details":{"imported":"whatever"}}`
	code, out := custode(t, line, "ledger", "append", "-data", data)
	if code != 0 {
		t.Fatalf("append a PEC event: %d %s", code, out)
	}
	seq := strings.TrimSpace(out)
	code, raw := custode(t, "", "ledger", "get", "-data", data, seq)
	if code != 0 {
		t.Fatalf("get %s: %d %s", seq, code, raw)
	}
	e, err := ledger.DecodeEntry([]byte(strings.TrimSpace(raw)))
	if err != nil {
		t.Fatal(err)
	}
	at, err := time.Parse(record.ImportedLayout, e.Details[ledger.DetailImported])
	if err != nil || !e.Imported() || e.Kind != ledger.KindAccettazione {
		t.Fatalf("entry %s is not marked imported with a time: %s (%v)", seq, raw, err)
	}
	if d := time.Since(at); d < 0 || d > time.Hour {
		t.Fatalf("imported at %v, not the time of the append", at)
	}
	if code, out := custode(t, "", "ledger", "verify", "-data", data); code != 0 {
		t.Fatalf("verify: %d %s", code, out)
	}
}

// A command blocked reading a FIFO that never ends stops at SIGTERM with
// an error naming the file (issue 16, finding 11: it ignored SIGTERM).
// The test's own deadline bounds the wait: a hang fails by timeout.
func TestSignalEndsABlockedRead(t *testing.T) {
	_, ca := initData(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		args func(fifo string) []string
	}{
		{"pec inspect SIGTERM", syscall.SIGTERM, func(fifo string) []string { return []string{"pec", "inspect", "-roots", ca, fifo} }},
		{"verify -anchor SIGINT", syscall.SIGINT, func(fifo string) []string { return []string{"verify", "-anchor", fifo, "x.zip"} }},
		{"policy check SIGTERM", syscall.SIGTERM, func(fifo string) []string { return []string{"policy", "check", fifo} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fifo := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Skip("mkfifo:", err)
			}
			// Held open for reading and writing: the child's open does not
			// block, and its reads never see an end.
			w, err := os.OpenFile(fifo, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.Write([]byte("partial")); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], tc.args(fifo)...)
			cmd.Env = append(os.Environ(), "CUSTODE_TEST_MAIN=1")
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// The child has opened the FIFO: it is reading it.
			waitOpen(t, cmd.Process.Pid, fifo, done)
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			err = <-done
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() < 1 {
				t.Fatalf("exit: %v, want a failure status\n%s", err, stderr.String())
			}
			// Ended by the command itself (status 1 or 2 with the error),
			// not by the stop deadline.
			if ee.ExitCode() > 2 || !strings.Contains(stderr.String(), fifo) || !strings.Contains(stderr.String(), "interrupted by") {
				t.Fatalf("exit %d, want 1 or 2 naming %s and the signal:\n%s", ee.ExitCode(), fifo, stderr.String())
			}
		})
	}
}

// waitOpen waits until process pid has file name open; it fails if the
// process ends first.
func waitOpen(t *testing.T, pid int, name string, done <-chan error) {
	t.Helper()
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	for {
		select {
		case err := <-done:
			t.Fatalf("the command ended before reading %s: %v", name, err)
		default:
		}
		ents, err := os.ReadDir(fds)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Skip("no /proc:", err)
		}
		for _, e := range ents {
			if target, _ := os.Readlink(filepath.Join(fds, e.Name())); target == name {
				return
			}
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not a timing assumption
	}
}

// A first signal cancels the command; one that does not return by the
// grace period is ended with the signal's status; a second signal ends
// any command, a server's too, at once.
func TestStopOnSignal(t *testing.T) {
	cases := []struct {
		name  string
		sigs  []os.Signal
		grace time.Duration
		want  int
	}{
		{"no return within the grace", []os.Signal{syscall.SIGTERM}, time.Millisecond, 143},
		{"second signal, server", []os.Signal{syscall.SIGTERM, os.Interrupt}, 0, 130},
		{"second signal, before the grace", []os.Signal{os.Interrupt, os.Interrupt}, time.Hour, 130},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sigs := make(chan os.Signal, len(c.sigs))
			for _, s := range c.sigs {
				sigs <- s
			}
			var cause error
			cancel := func(err error) { cause = err }
			exited := make(chan int, 1)
			var stderr bytes.Buffer
			stopOnSignal(sigs, cancel, &stderr, c.grace, func(code int) { exited <- code })
			select {
			case code := <-exited:
				if code != c.want {
					t.Fatalf("exit %d, want %d", code, c.want)
				}
			default:
				t.Fatal("stopOnSignal returned without exiting")
			}
			var ie *interruptedError
			if !errors.As(cause, &ie) || ie.sig != c.sigs[0] {
				t.Fatalf("context cancelled with %v, want the first signal", cause)
			}
		})
	}
	// A command that returns: the watcher is released by closing sigs.
	sigs := make(chan os.Signal)
	close(sigs)
	stopOnSignal(sigs, func(error) { t.Fatal("cancelled without a signal") }, io.Discard, time.Millisecond, func(int) { t.Fatal("exited without a signal") })
}

// mailbox add reads its password line through a limit: a line with no end
// is refused, naming standard input, and no mailbox is made.
func TestMailboxAddPasswordBounded(t *testing.T) {
	data, _ := initData(t)
	code, out := custode(t, strings.Repeat("p", 5<<10), "mailbox", "add", "-data", data, "anna@pec.custode.test")
	if code != 2 || !strings.Contains(out, "standard input: password line larger than") {
		t.Fatalf("exit %d, want 2 naming the limit:\n%s", code, out)
	}
	if code, out := custode(t, "", "mailbox", "list", "-data", data); code != 0 || strings.Contains(out, "anna@") {
		t.Errorf("mailbox list after the refusal: exit %d\n%s", code, out)
	}
	if code, out := custode(t, "una-password-lunga\n", "mailbox", "add", "-data", data, "anna@pec.custode.test"); code != 0 {
		t.Errorf("a password of normal length: exit %d\n%s", code, out)
	}
}
