package metrics

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultProbeTimeout bounds one round of health probes.
const DefaultProbeTimeout = 5 * time.Second

// DefaultProbeInterval is how often Run probes the dependencies.
const DefaultProbeInterval = 15 * time.Second

// Probe checks one dependency: nil means it answers.
type Probe struct {
	// Name is the dependency's label: ledger, archive, tsa, clamd.
	Name string
	// Ready marks a dependency the server cannot serve without: /readyz
	// fails while it fails.
	Ready bool
	// Check returns nil when the dependency answers. It MUST return by
	// ctx's deadline.
	Check func(ctx context.Context) error
}

// Result is the outcome of a probe.
type Result struct {
	Name  string
	Ready bool
	Err   error     // nil: up
	At    time.Time // when it was probed; zero: not yet
}

// Health runs probes and keeps their last results.
type Health struct {
	probes []Probe
	now    func() time.Time

	mu   sync.Mutex
	last []Result // under mu, in the order of probes
}

// NewHealth returns the health of probes. now is the clock; nil means
// time.Now.
func NewHealth(now func() time.Time, probes ...Probe) *Health {
	if now == nil {
		now = time.Now
	}
	h := &Health{probes: probes, now: now, last: make([]Result, len(probes))}
	for i, p := range probes {
		h.last[i] = Result{Name: p.Name, Ready: p.Ready, Err: errors.New("not probed yet")}
	}
	return h
}

// Check runs every probe at once, bounded by ctx, records the results as
// the last ones and returns them in the order of the probes.
func (h *Health) Check(ctx context.Context) []Result {
	res := make([]Result, len(h.probes))
	var wg sync.WaitGroup
	for i, p := range h.probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Check(ctx)
			if err == nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			res[i] = Result{Name: p.Name, Ready: p.Ready, Err: err, At: h.now()}
		}()
	}
	wg.Wait()
	h.mu.Lock()
	copy(h.last, res)
	h.mu.Unlock()
	return res
}

// Last returns the results of the last Check.
func (h *Health) Last() []Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Result(nil), h.last...)
}

// Run probes every interval (DefaultProbeInterval if 0), each round
// bounded by DefaultProbeTimeout, until ctx is done.
func (h *Health) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultProbeInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, DefaultProbeTimeout)
		h.Check(pctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
