// Package harness is custode-bench: a load, fault and tamper harness for the
// gestore, with its baselines measured in the same run.
//
// It runs two gestori (custode serve) as child processes on loopback, each
// in the other's indice dei gestori, with a TSA of their own (custode tsa
// serve) and, when a MinIO binary is at hand, sealing to a MinIO of its own.
// Concurrent SMTP clients submit to the first while IMAP clients watch the
// senders' mailboxes for the ricevute. It measures throughput, latency, CPU
// and memory; the same run measures the RSA signing bound, raw badger synced
// writes, and a Postfix relay fed by the same clients. Then, under load, it
// kills the gestore, stops the S3 server and the TSA, fills the disk and
// jumps the clock; after each fault it checks that every acknowledged
// message is in the ledger and delivered, that the ledger verifies, that
// the backlogs drain, and what the audit report shows. Last, it flips bytes
// in the ledger, in sealed segments and in evidence bundles, and counts how
// many the verifiers catch; the long mode also runs every fuzz target.
package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Phases are the parts of a run, in the order they run; Options.Phases
// selects some of them.
var Phases = []string{"load", "hostile", "baselines", "kill", "s3", "tsa", "disk", "clock", "tamper", "fuzz"}

// optInPhases run only when Options.Phases names them.
var optInPhases = []string{"hostile"}

// Options configure a run.
type Options struct {
	// Binary is the custode executable the gestori run. Required.
	Binary string
	// Dir is the work directory; empty means a new temporary one, removed
	// at the end unless Keep.
	Dir  string
	Keep bool
	// Long selects the long mode's defaults and enables fuzzing.
	Long bool
	// Phases lists the parts to run; empty means all of the mode's.
	Phases []string

	// Clients is the number of concurrent SMTP clients.
	Clients int
	// Load is how long the measured load phase submits.
	Load time.Duration
	// Kills is how many times the gestore is killed with SIGKILL.
	Kills int
	// Outage is how long each other fault lasts.
	Outage time.Duration
	// Flips is how many bytes are flipped in the ledger and in evidence
	// bundles; SegmentFlips in sealed segments.
	Flips, SegmentFlips int
	// FuzzTime is how long each fuzz target runs (long mode).
	FuzzTime time.Duration
	// Source is the module's root, for the fuzz targets; empty means the
	// current directory's module.
	Source string
	// MinIO is the MinIO server binary; empty means $CUSTODE_TEST_MINIO_BIN
	// or ~/.cache/custode/bin/minio. Without one the S3 phase is skipped.
	MinIO string
	// Postfix is Postfix's postfix command; empty means /usr/sbin/postfix.
	Postfix string

	Logger *slog.Logger
}

// Defaults of the two modes. The short mode fits well under ten minutes on
// two busy cores; the long mode takes about an hour with fuzzing.
const (
	DefaultShortClients  = 6
	DefaultShortLoad     = 15 * time.Second
	DefaultShortKills    = 5
	DefaultShortOutage   = 6 * time.Second
	DefaultShortFlips    = 20
	DefaultShortSegFlips = 3

	DefaultLongClients  = 16
	DefaultLongLoad     = 60 * time.Second
	DefaultLongKills    = 20
	DefaultLongOutage   = 30 * time.Second
	DefaultLongFlips    = 200
	DefaultLongSegFlips = 20
	DefaultLongFuzzTime = 30 * time.Second
)

// withDefaults fills the zero fields from the mode's defaults.
func (o Options) withDefaults() Options {
	pick := func(v *int, short, long int) {
		if *v == 0 {
			*v = short
			if o.Long {
				*v = long
			}
		}
	}
	pickD := func(v *time.Duration, short, long time.Duration) {
		if *v == 0 {
			*v = short
			if o.Long {
				*v = long
			}
		}
	}
	pick(&o.Clients, DefaultShortClients, DefaultLongClients)
	pick(&o.Kills, DefaultShortKills, DefaultLongKills)
	pick(&o.Flips, DefaultShortFlips, DefaultLongFlips)
	pick(&o.SegmentFlips, DefaultShortSegFlips, DefaultLongSegFlips)
	pickD(&o.Load, DefaultShortLoad, DefaultLongLoad)
	pickD(&o.Outage, DefaultShortOutage, DefaultLongOutage)
	pickD(&o.FuzzTime, 0, DefaultLongFuzzTime)
	if len(o.Phases) == 0 {
		for _, p := range Phases {
			if !slices.Contains(optInPhases, p) && (o.Long || p != "fuzz") {
				o.Phases = append(o.Phases, p)
			}
		}
	}
	if o.MinIO == "" {
		o.MinIO = os.Getenv("CUSTODE_TEST_MINIO_BIN")
	}
	if o.MinIO == "" {
		if home, err := os.UserHomeDir(); err == nil {
			o.MinIO = filepath.Join(home, ".cache", "custode", "bin", "minio")
		}
	}
	if o.Postfix == "" {
		o.Postfix = "/usr/sbin/postfix"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports the first invalid option.
func (o Options) Validate() error {
	if o.Binary == "" {
		return errors.New("the custode binary is required")
	}
	for _, p := range o.Phases {
		if !slices.Contains(Phases, p) {
			return fmt.Errorf("unknown phase %q (phases: %s)", p, strings.Join(Phases, ", "))
		}
	}
	switch {
	case o.Clients < 0 || o.Clients > 256:
		return fmt.Errorf("clients: %d, want 1 to 256", o.Clients)
	case o.Kills < 0 || o.Kills > 1000:
		return fmt.Errorf("kills: %d, want 0 to 1000", o.Kills)
	case o.Flips < 0 || o.SegmentFlips < 0:
		return errors.New("flips: want 0 or more")
	case o.Load < 0 || o.Outage < 0 || o.FuzzTime < 0:
		return errors.New("durations: want 0 or more")
	}
	return nil
}

// harness is one run's state.
type harness struct {
	opts  Options
	log   *slog.Logger
	dir   string
	a, b  *gestore
	tsa   *process
	minio *minioServer // nil without S3
	disk  *smallDisk   // nil when A's data is not on a filesystem of its own
	s3Env []string     // the S3 credentials, for every custode process
	track *tracker
	res   *Results

	tsaAddr     string
	ids         atomic.Int64 // Message-ID counter of the clients
	seenFacts   logFacts     // A's log as the previous phase left it
	lastEntries uint64       // A's ledger size after the previous phase

	samplerStop  func()
	watchersStop func()
}

// Run runs the harness and returns its results. The results are returned
// also when a phase fails: the failure is in Results.Errors.
func Run(ctx context.Context, opts Options) (*Results, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	h := &harness{opts: opts, log: opts.Logger, track: newTracker()}
	mode := "short"
	if opts.Long {
		mode = "long"
	}
	h.res = &Results{Mode: mode, Started: time.Now().UTC(), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		Clients: opts.Clients, Phases: opts.Phases}
	start := time.Now()
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "custode-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: work directory: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: work directory: %w", err)
	}
	h.dir = dir
	h.res.Dir = dir
	defer func() {
		h.shutdown()
		if opts.Dir == "" && !opts.Keep {
			os.RemoveAll(dir)
		}
	}()
	err := h.run(ctx)
	if err != nil {
		h.res.Errors = append(h.res.Errors, err.Error())
	}
	h.res.WallSeconds = time.Since(start).Seconds()
	h.res.conclude()
	return h.res, nil
}

func (h *harness) want(phase string) bool { return slices.Contains(h.opts.Phases, phase) }

// run is Run's body: setup, then each phase in order. A failing phase is
// recorded and the next one runs, unless the gestori cannot run at all.
func (h *harness) run(ctx context.Context) error {
	if err := h.setup(ctx); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := h.startAll(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	h.startSampler()
	h.watchersStop = h.startWatchers(ctx)
	steps := []struct {
		phase string
		run   func(context.Context) error
	}{
		{"load", h.loadPhase},
		{"hostile", h.hostilePhase},
		{"baselines", h.baselines},
		{"kill", h.killPhase},
		{"s3", h.s3Phase},
		{"tsa", h.tsaPhase},
		{"disk", h.diskPhase},
		{"clock", h.clockPhase},
		{"tamper", h.tamperPhase},
		{"fuzz", h.fuzzPhase},
	}
	for _, s := range steps {
		if !h.want(s.phase) {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.Info("bench: phase", "phase", s.phase)
		t0 := time.Now()
		if err := s.run(ctx); err != nil {
			h.log.Error("bench: phase failed", "phase", s.phase, "err", err)
			h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: %v", s.phase, err))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A failed phase may leave the gestori stopped: bring them back.
			if err := h.startAll(ctx); err != nil {
				return fmt.Errorf("restart after %s: %w", s.phase, err)
			}
		}
		h.res.PhaseSeconds = append(h.res.PhaseSeconds, PhaseTime{Phase: s.phase, Seconds: time.Since(t0).Seconds()})
	}
	return nil
}

// startSampler samples the gestori's CPU and memory every 250 ms, so that
// the figures of an incarnation killed with SIGKILL are known.
func (h *harness) startSampler() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.a.proc.sample()
				h.b.proc.sample()
			}
		}
	}()
	h.samplerStop = func() { cancel(); wg.Wait() }
}

// shutdown stops every child process and undoes the setup.
func (h *harness) shutdown() {
	if h.watchersStop != nil {
		h.watchersStop()
	}
	if h.samplerStop != nil {
		h.samplerStop()
	}
	for _, g := range []*gestore{h.a, h.b} {
		if g != nil && g.proc != nil {
			_ = g.proc.stop(30 * time.Second)
		}
	}
	if h.tsa != nil {
		_ = h.tsa.stop(10 * time.Second)
	}
	if h.minio != nil {
		h.minio.close()
	}
	if h.disk != nil {
		if err := h.disk.close(); err != nil {
			h.log.Error("bench: unmount", "err", err)
		}
	}
}
