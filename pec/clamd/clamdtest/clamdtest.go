// Package clamdtest starts a real clamd for tests, with a signature
// database that detects only the EICAR test file.
package clamdtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Start returns the unix socket and TCP address of a clamd whose database
// detects EICAR: the one named by CUSTODE_TEST_CLAMD_SOCKET and
// CUSTODE_TEST_CLAMD_TCP, or else one started for tb with the project's
// scripts/clamd.sh and stopped when tb ends. It skips tb when clamd is not
// installed and no clamd is named.
func Start(tb testing.TB) (socket, tcp string) {
	tb.Helper()
	socket, tcp = os.Getenv("CUSTODE_TEST_CLAMD_SOCKET"), os.Getenv("CUSTODE_TEST_CLAMD_TCP")
	if socket != "" || tcp != "" {
		return socket, tcp
	}
	if _, err := exec.LookPath("clamd"); err != nil {
		tb.Skip("clamd is not installed (Debian package clamav-daemon: run scripts/install-test-deps.sh) " +
			"and CUSTODE_TEST_CLAMD_SOCKET and CUSTODE_TEST_CLAMD_TCP are unset")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "clamd.sh")
	dir := tb.TempDir()
	tb.Cleanup(func() {
		if out, err := exec.Command(script, "stop", dir).CombinedOutput(); err != nil {
			tb.Errorf("%s stop: %v\n%s", script, err, out)
		}
	})
	var stderr bytes.Buffer
	cmd := exec.Command(script, "start", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s start: %v\n%s", script, err, stderr.Bytes())
	}
	for line := range strings.Lines(string(out)) {
		k, v, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "export ")), "=")
		switch k {
		case "CUSTODE_TEST_CLAMD_SOCKET":
			socket = v
		case "CUSTODE_TEST_CLAMD_TCP":
			tcp = v
		}
	}
	if socket == "" || tcp == "" {
		tb.Fatalf("%s start printed no addresses:\n%s", script, out)
	}
	return socket, tcp
}
