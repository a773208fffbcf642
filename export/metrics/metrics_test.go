package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
)

func pecEvent(kind ledger.Kind, id, errore string, at time.Time) ledger.Event {
	ev := ledger.Event{Kind: kind, Time: at, Identificativo: id, Mittente: "a@pec.a.test", Gestore: "A",
		Destinatari: []ledger.Recipient{{Address: "b@pec.b.test", Tipo: ledger.TipoCertificato}}}
	if errore != "" {
		ev.Details = map[string]string{"errore": errore}
	}
	return ev
}

// scrape returns the body of GET path from h.
func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// lookPromtool returns promtool's path. Without it the test is skipped
// locally, and fails under CI (CI=true), which must have it.
func lookPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not installed (Debian's prometheus package: run scripts/install-test-deps.sh)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// TestMetricsPromtool scrapes /metrics of a registry fed by a real ledger
// and checks the exposition with promtool check metrics (Debian's
// prometheus package; scripts/install-test-deps.sh installs it).
func TestMetricsPromtool(t *testing.T) {
	ctx := context.Background()
	l, err := ledger.Open(ctx, ledger.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Now().UTC()
	// Before the registry: not counted (counters count this process's work).
	if _, err := l.Append(ctx, pecEvent(ledger.KindAccettazione, "old@a", "", now)); err != nil {
		t.Fatal(err)
	}
	enqueued := now.Add(-90 * time.Second)
	h := NewHealth(nil,
		Probe{Name: "ledger", Ready: true, Check: func(context.Context) error { return nil }},
		Probe{Name: "clamd", Check: func(context.Context) error { return errors.New("connection refused") }},
	)
	h.Check(ctx)
	m, err := New(Sources{
		LedgerSize:        func() uint64 { return l.Head().Size },
		LedgerScan:        l.Scan,
		LatestCheckpoint:  l.LatestCheckpoint,
		PendingTimestamps: l.PendingTimestamps,
		SealBacklog:       func(context.Context) (uint64, int, error) { return 7, 2, nil },
		QueueLen:          func() int { return 3 },
		QueueOldest:       func() (time.Time, bool) { return enqueued, true },
		LoginFailures: func(svc string) (uint64, uint64) {
			if svc == "imap" {
				return 5, 2
			}
			return 0, 0
		},
		LoginServices:       []string{"smtp", "imap", "api"},
		AntivirusConfigured: true,
		Now:                 func() time.Time { return now },
	}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.ObserveCommits(m.ObserveAppend)
	for _, ev := range []ledger.Event{
		pecEvent(ledger.KindAccettazione, "1@a", "", now),
		pecEvent(ledger.KindAccettazione, "2@a", "", now),
		pecEvent(ledger.KindNonAccettazione, "3@a", "virus", now),
		pecEvent(ledger.KindErroreConsegna, "4@a", "no-dest", now),
		pecEvent(ledger.KindErroreConsegna, "5@a", "something else", now),
	} {
		if _, err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	code, body := scrape(t, m.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`custode_pec_messages_total{kind="accettazione",outcome="ok"} 2`,
		`custode_pec_messages_total{kind="non-accettazione",outcome="virus"} 1`,
		`custode_pec_messages_total{kind="errore-consegna",outcome="no-dest"} 1`,
		`custode_pec_messages_total{kind="errore-consegna",outcome="altro"} 1`,
		`custode_pec_messages_total{kind="avvenuta-consegna",outcome="ok"} 0`,
		`custode_ledger_entries_total{kind="accettazione"} 2`,
		`custode_ledger_append_duration_seconds_count 5`,
		`custode_queue_items 3`,
		`custode_queue_oldest_item_age_seconds 90`,
		`custode_checkpoint_lag_entries 6`,
		`custode_seal_lag_entries 7`,
		`custode_seal_lag_checkpoints 2`,
		`custode_login_failures_total{service="imap"} 5`,
		`custode_login_throttled_total{service="imap"} 2`,
		`custode_antivirus_configured 1`,
		`custode_dependency_up{dependency="ledger"} 1`,
		`custode_dependency_up{dependency="clamd"} 0`,
		`custode_scrape_errors 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}

	promtool := lookPromtool(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
}

// TestPromtoolCatchesBadNames makes sure the promtool check above can fail:
// a counter without _total is refused.
func TestPromtoolCatchesBadNames(t *testing.T) {
	promtool := lookPromtool(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader("# HELP custode_things Things.\n# TYPE custode_things counter\ncustode_things 1\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("promtool accepted a counter without _total:\n%s", out)
	}
}

func TestHealthEndpoints(t *testing.T) {
	down := errors.New("dial tcp 127.0.0.1:8318: connection refused")
	tsaErr := down
	h := NewHealth(nil,
		Probe{Name: "ledger", Ready: true, Check: func(context.Context) error { return nil }},
		Probe{Name: "tsa", Ready: true, Check: func(context.Context) error { return tsaErr }},
		Probe{Name: "clamd", Check: func(context.Context) error { return down }}, // not for readiness
	)
	m, err := New(Sources{}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := scrape(t, m.Handler(), "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := scrape(t, m.Handler(), "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: tsa: dial tcp") || strings.Contains(body, "clamd") {
		t.Errorf("/readyz with the TSA down: %d %q", code, body)
	}
	tsaErr = nil
	code, body = scrape(t, m.Handler(), "/readyz")
	if code != http.StatusOK || body != "ledger: ok\ntsa: ok\n" {
		t.Errorf("/readyz with everything up: %d %q", code, body)
	}
	if _, body := scrape(t, m.Handler(), "/metrics"); !strings.Contains(body, `custode_dependency_up{dependency="clamd"} 0`) ||
		!strings.Contains(body, `custode_dependency_up{dependency="tsa"} 1`) {
		t.Errorf("/metrics after /readyz:\n%s", body)
	}
}

func TestNotify(t *testing.T) {
	if err := Notify("", "READY=1"); err != nil {
		t.Fatalf("no socket: %v", err)
	}
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := Notify(path, "READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "READY=1" {
		t.Errorf("got %q", buf[:n])
	}
	if err := Notify(filepath.Join(t.TempDir(), "none"), "READY=1"); err == nil {
		t.Error("no error for a missing socket")
	}
}
