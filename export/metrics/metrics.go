// Package metrics exposes a running Custode server to Prometheus and to
// its supervisor: /metrics in the Prometheus text format, /healthz
// (liveness) and /readyz (readiness), and systemd's READY=1.
//
// The registry belongs to the server that makes it (no global default
// registry). The collectors read the components through the functions of
// Sources, so that this package depends on none of them: each function may
// be nil, and its metrics are then left out.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custode/custode/ledger"
)

// Namespace prefixes every metric name.
const Namespace = "custode"

// DefaultCollectTimeout bounds the reads of one scrape (ledger scans,
// checkpoint and seal lookups): a slow store makes a scrape late, never
// stuck.
const DefaultCollectTimeout = 10 * time.Second

// AppendBuckets are the bounds, in seconds, of the ledger append latency
// histogram: a group commit waits for one fsync, from a fraction of a
// millisecond on a fast disk to seconds on a loaded one.
var AppendBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Sources are what the collectors read. Every field may be nil (zero):
// the metrics it feeds are then not exported.
type Sources struct {
	// LedgerSize is the number of entries of the ledger.
	LedgerSize func() uint64
	// LedgerScan calls fn with each entry of [from, to) in order, as
	// ledger.(*Ledger).Scan does. The messages counters are read from the
	// entries appended since the registry was made.
	LedgerScan func(ctx context.Context, from, to uint64, fn func(e *ledger.Entry) error) error
	// LatestCheckpoint returns the newest checkpoint, or an error
	// wrapping ledger.ErrNotFound when there is none yet.
	LatestCheckpoint func(ctx context.Context) (*ledger.Checkpoint, error)
	// PendingTimestamps is the number of checkpoints waiting for their
	// token.
	PendingTimestamps func() int
	// SealBacklog returns the entries and checkpoints covered by a
	// timestamped checkpoint but not yet sealed into the archive.
	SealBacklog func(ctx context.Context) (entries uint64, checkpoints int, err error)
	// QueueLen is the number of items in the delivery queue.
	QueueLen func() int
	// QueueOldest is the enqueue time of the oldest item; ok is false when
	// the queue is empty.
	QueueOldest func() (t time.Time, ok bool)
	// LoginFailures returns, for service (smtp, imap, api), the failed
	// password checks and the attempts refused by the throttle since the
	// server started.
	LoginFailures func(service string) (failed, throttled uint64)
	// LoginServices are the services LoginFailures is asked about.
	LoginServices []string
	// AntivirusConfigured says whether a virus scanner is configured.
	AntivirusConfigured bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Metrics is a registry with Custode's collectors and the health probes.
type Metrics struct {
	reg    *prometheus.Registry
	src    Sources
	health *Health
	log    *slog.Logger

	appendSeconds prometheus.Histogram

	scanMu   sync.Mutex // one ledger scan at a time
	scanned  uint64     // entries counted into messages, under scanMu
	messages *prometheus.CounterVec
	entries  *prometheus.CounterVec
}

// New returns the metrics of a server reading src, with h's probes as
// health gauges (h may be nil). log receives collection errors; nil
// discards them. The messages counters start at the ledger's current
// size: they count what this process appends.
func New(src Sources, h *Health, log *slog.Logger) (*Metrics, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), src: src, health: h, log: log}
	if src.LedgerSize != nil {
		m.scanned = src.LedgerSize()
	}
	m.appendSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "append_duration_seconds",
		Help:    "Time from an append's arrival to its group commit being durable (one fsync), per group commit.",
		Buckets: AppendBuckets,
	})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "pec_messages_total",
		Help: "PEC messages recorded in the ledger since the server started, by kind (ricevuta, avviso or busta, as the ledger names it) and outcome.",
	}, []string{"kind", "outcome"})
	m.entries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "ledger", Name: "entries_total",
		Help: "Ledger entries appended since the server started, by kind.",
	}, []string{"kind"})
	// Every PEC kind is there from the start, at zero, so that rate()
	// sees the first one.
	for _, k := range ledger.Kinds() {
		m.entries.WithLabelValues(string(k))
		if k.IsPEC() {
			for _, o := range outcomesOf(k) {
				m.messages.WithLabelValues(string(k), o)
			}
		}
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.appendSeconds, (*collector)(m),
	}
	if src.QueueLen != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "queue", Name: "items",
			Help: "Items in the delivery queue (buste and ricevute waiting for, or in, delivery).",
		}, func() float64 { return float64(src.QueueLen()) }))
	}
	if src.QueueOldest != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "queue", Name: "oldest_item_age_seconds",
			Help: "Age of the oldest item of the delivery queue; 0 when it is empty.",
		}, func() float64 {
			t, ok := src.QueueOldest()
			if !ok {
				return 0
			}
			return max(0, m.now().Sub(t).Seconds())
		}))
	}
	if src.PendingTimestamps != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "checkpoint", Name: "pending_timestamps",
			Help: "Checkpoints made but still waiting for the TSA's token.",
		}, func() float64 { return float64(src.PendingTimestamps()) }))
	}
	if src.LoginFailures != nil {
		for _, svc := range src.LoginServices {
			cs = append(cs,
				prometheus.NewCounterFunc(prometheus.CounterOpts{
					Namespace: Namespace, Subsystem: "login", Name: "failures_total",
					Help:        "Failed password checks since the server started, by service.",
					ConstLabels: prometheus.Labels{"service": svc},
				}, func() float64 { f, _ := src.LoginFailures(svc); return float64(f) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{
					Namespace: Namespace, Subsystem: "login", Name: "throttled_total",
					Help:        "Login attempts refused unchecked by the throttle since the server started, by service.",
					ConstLabels: prometheus.Labels{"service": svc},
				}, func() float64 { _, t := src.LoginFailures(svc); return float64(t) }))
		}
	}
	av := 0.0
	if src.AntivirusConfigured {
		av = 1
	}
	cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "antivirus", Name: "configured",
		Help: "1 if a virus scanner (clamd) is configured, 0 if messages are not scanned.",
	}, func() float64 { return av }))
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Registry returns the registry, to add a collector of one's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveAppend records the latency of one group commit of the ledger;
// ledger.(*Ledger).ObserveCommits takes it.
func (m *Metrics) ObserveAppend(entries uint64, d time.Duration) {
	m.appendSeconds.Observe(d.Seconds())
}

func (m *Metrics) now() time.Time {
	if m.src.Now != nil {
		return m.src.Now()
	}
	return time.Now()
}

// outcomesOf lists the outcomes a PEC kind is counted under.
func outcomesOf(k ledger.Kind) []string {
	switch k {
	case ledger.KindNonAccettazione, ledger.KindErroreConsegna:
		return []string{"virus", "no-dest", "no-dominio", "altro"}
	}
	return []string{"ok"}
}

// outcome is the outcome label of a PEC entry: "ok", or for an avviso of
// non accettazione or mancata consegna its daticert errore (virus, no-dest,
// no-dominio, altro; anything else counts as altro).
func outcome(e *ledger.Entry) string {
	switch e.Kind {
	case ledger.KindNonAccettazione, ledger.KindErroreConsegna:
		if o := e.Details["errore"]; slices.Contains(outcomesOf(e.Kind), o) {
			return o
		}
		return "altro"
	}
	return "ok"
}

// countNew counts the entries appended since the last scrape.
func (m *Metrics) countNew(ctx context.Context) error {
	if m.src.LedgerSize == nil || m.src.LedgerScan == nil {
		return nil
	}
	m.scanMu.Lock()
	defer m.scanMu.Unlock()
	size := m.src.LedgerSize()
	if size <= m.scanned {
		return nil
	}
	next := m.scanned
	err := m.src.LedgerScan(ctx, m.scanned, size, func(e *ledger.Entry) error {
		m.entries.WithLabelValues(string(e.Kind)).Inc()
		if e.Kind.IsPEC() {
			m.messages.WithLabelValues(string(e.Kind), outcome(e)).Inc()
		}
		next = e.Seq + 1
		return nil
	})
	if err == nil {
		next = size // entries purged past retention are skipped by the scan
	}
	m.scanned = next
	if err != nil {
		return fmt.Errorf("metrics: ledger scan from %d: %w", next, err)
	}
	return nil
}

// collector exports what is read at scrape time with a context: the
// checkpoint and seal lags and the health of the dependencies.
type collector Metrics

var (
	descCheckpointLagEntries = prometheus.NewDesc(Namespace+"_checkpoint_lag_entries",
		"Ledger entries not yet covered by a checkpoint.", nil, nil)
	descCheckpointAge = prometheus.NewDesc(Namespace+"_checkpoint_age_seconds",
		"Time since the newest checkpoint was made.", nil, nil)
	descSealLagEntries = prometheus.NewDesc(Namespace+"_seal_lag_entries",
		"Ledger entries covered by a timestamped checkpoint but not yet sealed into the WORM archive.", nil, nil)
	descSealLagCheckpoints = prometheus.NewDesc(Namespace+"_seal_lag_checkpoints",
		"Timestamped checkpoints not yet sealed into the WORM archive.", nil, nil)
	descUp = prometheus.NewDesc(Namespace+"_dependency_up",
		"1 if the dependency answered its last health probe, 0 if not.", []string{"dependency"}, nil)
	descProbeTime = prometheus.NewDesc(Namespace+"_dependency_last_probe_timestamp_seconds",
		"When the dependency was last probed, as a Unix time.", []string{"dependency"}, nil)
	descCollectErrors = prometheus.NewDesc(Namespace+"_scrape_errors",
		"Reads of this scrape that failed (the server's log says which); their metrics are missing.", nil, nil)
)

// Describe sends the descriptions of the metrics Collect sends.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCheckpointLagEntries, descCheckpointAge, descSealLagEntries,
		descSealLagCheckpoints, descUp, descProbeTime, descCollectErrors} {
		ch <- d
	}
	c.messages.Describe(ch)
	c.entries.Describe(ch)
}

// Collect reads the lags and the health and sends them.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCollectTimeout)
	defer cancel()
	var errs []error
	// The counters are sent after the scan that brings them up to date.
	errs = append(errs, m.countNew(ctx))
	m.messages.Collect(ch)
	m.entries.Collect(ch)
	if m.src.LatestCheckpoint != nil && m.src.LedgerSize != nil {
		size := m.src.LedgerSize()
		cp, err := m.src.LatestCheckpoint(ctx)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			ch <- prometheus.MustNewConstMetric(descCheckpointLagEntries, prometheus.GaugeValue, float64(size))
		case err != nil:
			errs = append(errs, fmt.Errorf("metrics: latest checkpoint: %w", err))
		default:
			ch <- prometheus.MustNewConstMetric(descCheckpointLagEntries, prometheus.GaugeValue, float64(size-min(size, cp.Size)))
			ch <- prometheus.MustNewConstMetric(descCheckpointAge, prometheus.GaugeValue, max(0, m.now().Sub(cp.Time).Seconds()))
		}
	}
	if m.src.SealBacklog != nil {
		entries, cps, err := m.src.SealBacklog(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("metrics: seal backlog: %w", err))
		} else {
			ch <- prometheus.MustNewConstMetric(descSealLagEntries, prometheus.GaugeValue, float64(entries))
			ch <- prometheus.MustNewConstMetric(descSealLagCheckpoints, prometheus.GaugeValue, float64(cps))
		}
	}
	if m.health != nil {
		for _, r := range m.health.Last() {
			up := 0.0
			if r.Err == nil {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, r.Name)
			if !r.At.IsZero() {
				ch <- prometheus.MustNewConstMetric(descProbeTime, prometheus.GaugeValue, float64(r.At.UnixNano())/1e9, r.Name)
			}
		}
	}
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
			m.log.Warn("metrics: collect", "err", err)
		}
	}
	ch <- prometheus.MustNewConstMetric(descCollectErrors, prometheus.GaugeValue, float64(n))
}

// Handler returns the HTTP handler of /metrics, /healthz and /readyz.
//
// /healthz answers 200 "ok" while the process serves HTTP at all.
// /readyz runs the health probes marked for readiness and answers 200
// when they all pass, 503 with the failures otherwise.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if m.health == nil {
			fmt.Fprintln(w, "ok")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), DefaultProbeTimeout)
		defer cancel()
		res := m.health.Check(ctx)
		var failed []string
		for _, p := range res {
			if p.Ready && p.Err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", p.Name, p.Err))
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, f := range failed {
				fmt.Fprintln(w, "not ready:", f)
			}
			return
		}
		for _, p := range res {
			if p.Ready {
				fmt.Fprintf(w, "%s: ok\n", p.Name)
			}
		}
	})
	return mux
}

// Serve serves Handler on ln until ctx is done.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve %s: %w", ln.Addr(), err)
	}
	return nil
}
