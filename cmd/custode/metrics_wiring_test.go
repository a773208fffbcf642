package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/custode/custode/archive/localstore"
)

// checkMetrics scrapes a running serve's metrics listener: /metrics
// passes promtool check metrics and has counted the accettazione of the
// test's message; /healthz and /readyz answer 200.
func checkMetrics(t *testing.T, addr string) {
	t.Helper()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get(p); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	m := regexp.MustCompile(`(?m)^custode_pec_messages_total\{kind="accettazione",outcome="ok"\} (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Errorf("/metrics has no accettazione counter:\n%s", body)
	} else if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("/metrics counted %d accettazioni, want at least the test's one", n)
	}
	for _, want := range []string{"custode_queue_items ", "custode_ledger_append_duration_seconds_count ",
		`custode_dependency_up{dependency="ledger"} 1`, `custode_dependency_up{dependency="archive"} 1`, "custode_antivirus_configured 0"} {
		if !bytes.Contains([]byte(body), []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed (Debian's prometheus package: run scripts/install-test-deps.sh)")
		}
		t.Log("promtool not installed: /metrics not checked with it")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader([]byte(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestProbes(t *testing.T) {
	ctx := t.Context()
	tsa := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "POST a timestamp query", http.StatusMethodNotAllowed)
	}))
	defer tsa.Close()
	if err := probeTSA(ctx, tsa.URL); err != nil {
		t.Errorf("a TSA that answers 405: %v", err)
	}
	if err := probeTSA(ctx, ""); err != nil {
		t.Errorf("the built-in TSA: %v", err)
	}
	if err := probeTSA(ctx, "http://127.0.0.1:0/"); err == nil {
		t.Error("no error for a TSA nobody serves")
	}
	dir := t.TempDir()
	if err := writableDir(dir); err != nil {
		t.Errorf("a writable directory: %v", err)
	}
	if err := writableDir(filepath.Join(dir, "none")); err == nil {
		t.Error("no error for a missing ledger directory")
	}
	store, err := localstore.Open(filepath.Join(dir, "worm"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := probeArchive(ctx, store); err != nil {
		t.Errorf("a local archive: %v", err)
	}
	if err := probeArchive(ctx, nil); err == nil {
		t.Error("no error without an archive")
	}
}
