package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custode/custode/cmd/custode-bench/internal/harness"
)

// TestIntegrationBench runs custode-bench -short as CI does: two gestori
// under load with the baselines, repeated SIGKILL, the S3 server and the
// TSA stopped, the disk filled and the clock jumped, then tampering with
// the ledger, sealed segments and evidence bundles. Every acknowledged
// message must survive every fault and every flip must be detected; the
// results are logged, and kept in $CUSTODE_BENCH_OUT when it names a
// directory.
func TestIntegrationBench(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	bin := buildBench(t)
	out := os.Getenv("CUSTODE_BENCH_OUT")
	if out == "" {
		out = t.TempDir()
	}
	jsonFile, mdFile := filepath.Join(out, "bench.json"), filepath.Join(out, "bench.md")
	cmd := exec.Command(bin, "-short", "-json", jsonFile, "-md", mdFile)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	t.Logf("custode-bench -short:\n%s", stdout)
	b, readErr := os.ReadFile(jsonFile)
	if readErr != nil {
		t.Fatalf("no results (%v): %v\n%s", err, readErr, tail([]byte(stderr.String()), 4000))
	}
	var res harness.Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("bench.json: %v", err)
	}
	for _, e := range res.Errors {
		t.Errorf("phase error: %s", e)
	}
	if res.Load == nil || res.Load.Accepted == 0 || !res.Load.AllDelivered {
		t.Errorf("load phase: %+v", res.Load)
	}
	for _, f := range res.Faults {
		if f.Lost > 0 || f.MissingFromLedger > 0 {
			t.Errorf("%s: %d acknowledged messages lost, %d not in the ledger", f.Fault, f.Lost, f.MissingFromLedger)
		}
		if !f.LedgerVerifyA || !f.LedgerVerifyB {
			t.Errorf("%s: ledger verify failed after the fault: %v", f.Fault, f.Notes)
		}
		if !f.OK {
			// Backlogs that do not drain in time are findings for the
			// integrator (see the results), not lost evidence.
			t.Logf("FINDING %s: checks failed (drained %v, queues %d/%d, sealing caught up %v): %v",
				f.Fault, f.Drained, f.QueueA, f.QueueB, f.SealCaughtUp, f.Notes)
		}
	}
	for _, tr := range res.Tamper {
		if tr.Flips == 0 || tr.Detected != tr.Flips {
			t.Errorf("%s: %d of %d flips detected: %v", tr.Target, tr.Detected, tr.Flips, tr.Misses)
		}
	}
	if err != nil && res.Pass {
		t.Errorf("custode-bench: %v, yet the results pass", err)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", tail([]byte(stderr.String()), 4000))
	}
}

// buildBench builds custode-bench and, beside it, the custode binary its
// gestori run; it returns custode-bench's path.
func buildBench(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, pkg := range map[string]string{"custode": "../custode", "custode-bench": "."} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return filepath.Join(dir, "custode-bench")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
