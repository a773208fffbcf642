package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/progress"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// On a terminal, ledger verify shows its progress on stderr and ends the
// line; stdout is unchanged.
func TestLedgerVerifyProgressOnTerminal(t *testing.T) {
	data := initWithEvents(t)
	master, slave := openPTY(t)
	if !progress.IsTerminal(slave) {
		t.Fatal("a pseudo-terminal is not taken for a terminal")
	}
	var out bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: slave, Log: cli.DiscardLogger()}
	if code := dispatch(context.Background(), e, []string{"ledger", "verify", "-data", data}); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if strings.Contains(out.String(), "\r") || !strings.HasSuffix(out.String(), "OK\n") {
		t.Errorf("stdout changed: %q", out.String())
	}
	// What the command wrote is in the terminal's buffer, before a mark
	// the test writes after it: read up to the mark.
	if _, err := slave.WriteString("END-OF-TEST"); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte("END-OF-TEST")) {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("read the terminal: %v (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	got = bytes.TrimSuffix(got, []byte("END-OF-TEST"))
	// The terminal turns the final "\n" into "\r\n".
	if !bytes.Contains(got, []byte(" (100%)\r\n")) {
		t.Errorf("terminal got %q, want the last line at 100%% and a newline", got)
	}
	if !bytes.HasPrefix(got, []byte("\rledger verify: entries: ")) || !bytes.Contains(got, []byte(" of ")) {
		t.Errorf("terminal got %q", got)
	}
}
