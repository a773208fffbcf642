package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/export/metrics"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/diskspace"
	"github.com/custode/custode/pec/clamd"
	"github.com/custode/custode/pec/mailstore"
)

// logFormatFlag adds -log-format (text or json) to fs and returns the
// function that, after parsing, sets e's logger accordingly.
func logFormatFlag(fs *flag.FlagSet, e *cli.Env) func() error {
	format := fs.String("log-format", "text", "log format on standard error: text or json")
	return func() error {
		switch *format {
		case "text":
		case "json":
			e.Log = slog.New(slog.NewJSONHandler(e.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		default:
			return &cli.UsageError{Msg: fmt.Sprintf("-log-format: want text or json, got %q", *format)}
		}
		return nil
	}
}

// running is what serve has opened, for the metrics and health endpoints.
// gestore is nil with -archive-only.
type running struct {
	ledger    *ledger.Ledger
	sealer    *seal.Sealer
	store     archive.Store
	gestore   *config.Gestore
	mailboxes *mailstore.Store
}

// serveMetrics serves /metrics, /healthz and /readyz on the configured
// metrics listener (if any) until ctx is done, and then tells systemd
// (when it supervises us) that serve is ready: call it once every other
// listener is open.
func serveMetrics(ctx context.Context, e *cli.Env, c *config.Config, r running, wg *sync.WaitGroup) error {
	if addr := c.MetricsListen(); addr != "" {
		h := metrics.NewHealth(nil, probes(c, r)...)
		src := metrics.Sources{
			LedgerSize:          func() uint64 { return r.ledger.Head().Size },
			LedgerScan:          r.ledger.Scan,
			LatestCheckpoint:    r.ledger.LatestCheckpoint,
			PendingTimestamps:   r.ledger.PendingTimestamps,
			SealBacklog:         r.sealer.Backlog,
			AntivirusConfigured: c.Server != nil && c.Server.Clamd != "",
		}
		if r.gestore != nil {
			src.QueueLen, src.QueueOldest = r.gestore.Queue.Len, r.gestore.Queue.Oldest
		}
		if r.mailboxes != nil {
			src.LoginFailures = r.mailboxes.LoginFailures
			src.LoginServices = []string{mailstore.ServiceSMTP, mailstore.ServiceIMAP, mailstore.ServiceAPI}
		}
		m, err := metrics.New(src, h, e.Log)
		if err != nil {
			return err
		}
		r.ledger.ObserveCommits(m.ObserveAppend)
		ln, err := listen(addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		e.Log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics",
			"healthz", "http://"+ln.Addr().String()+"/healthz", "readyz", "http://"+ln.Addr().String()+"/readyz")
		wg.Add(2)
		go func() {
			defer wg.Done()
			h.Run(ctx, metrics.DefaultProbeInterval)
		}()
		go func() {
			defer wg.Done()
			if err := m.Serve(ctx, ln); err != nil {
				e.Log.Error("metrics: serve", "err", err)
			}
		}()
	}
	if err := metrics.Notify(os.Getenv("NOTIFY_SOCKET"), "READY=1"); err != nil {
		e.Log.Warn("systemd notify", "err", err)
	}
	return nil
}

// probes are the health checks of what serve depends on: the ledger's
// directory writable with room, the WORM archive and the TSA reachable
// (these three decide readiness), and clamd when configured.
func probes(c *config.Config, r running) []metrics.Probe {
	ps := []metrics.Probe{
		{Name: "ledger", Ready: true, Check: func(context.Context) error { return writableDir(c.LedgerDir()) }},
		{Name: "archive", Ready: true, Check: func(ctx context.Context) error { return probeArchive(ctx, r.store) }},
		{Name: "tsa", Ready: true, Check: func(ctx context.Context) error { return probeTSA(ctx, c.TSAURL) }},
	}
	if c.Server != nil && c.Server.Clamd != "" {
		network, addr, _ := strings.Cut(c.Server.Clamd, ":")
		cl := &clamd.Client{Network: network, Address: addr, Timeout: metrics.DefaultProbeTimeout}
		ps = append(ps, metrics.Probe{Name: "clamd", Check: cl.Ping})
	}
	return ps
}

// writableDir checks that dir is writable and its filesystem has the
// reserve the stores keep free.
func writableDir(dir string) error {
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("%s: not writable: %w", dir, err)
	}
	return diskspace.NewGuard(dir, diskspace.DefaultReserve).Check()
}

// probeKey is an object the archive never holds: asking for it shows
// the store answers without reading or writing anything.
const probeKey = "custode-health-probe/absent"

func probeArchive(ctx context.Context, s archive.Store) error {
	if s == nil {
		return errors.New("no archive")
	}
	_, err := s.Stat(ctx, probeKey, "")
	if err == nil || errors.Is(err, archive.ErrNotFound) {
		return nil
	}
	return err
}

// probeTSA checks that a remote TSA answers HTTP at all (any status: a
// GET on an RFC 3161 endpoint is usually refused, and costs no token).
// The built-in TSA runs in process: always there.
func probeTSA(ctx context.Context, url string) error {
	if url == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	cl := &http.Client{Timeout: metrics.DefaultProbeTimeout}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
