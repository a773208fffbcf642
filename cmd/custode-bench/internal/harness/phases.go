package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/queue"
)

// Timeouts of the checks after each phase.
const (
	// DrainTimeout bounds the wait for every acknowledged message's
	// ricevuta di avvenuta consegna.
	DrainTimeout = 3 * time.Minute
	// SealTimeout bounds the wait for sealing to reach the newest
	// checkpoint; the sealer backs off up to 30 s after an archive outage.
	SealTimeout = 75 * time.Second
)

// submit starts the run's clients against gestore A for phase.
func (h *harness) submit(ctx context.Context, phase string) (*loadRun, error) {
	return startLoad(ctx, phase, h.opts.Clients, loadTarget{addr: h.a.submission, caFile: h.a.ca(), auth: true, track: h.track, ids: &h.ids})
}

// loadPhase measures the gestori under load: the clients submit for
// opts.Load, then the harness waits for the last ricevuta di avvenuta
// consegna.
func (h *harness) loadPhase(ctx context.Context) error {
	if err := h.startAll(ctx); err != nil {
		return err
	}
	cpuA0, _ := h.a.proc.usage()
	cpuB0, _ := h.b.proc.usage()
	l, err := h.submit(ctx, "load")
	if err != nil {
		return err
	}
	sleep(ctx, h.opts.Load)
	l.stop()
	drained, _ := h.waitDrained(ctx)
	end := time.Now()
	cpuA1, rssA := h.a.proc.usage()
	cpuB1, rssB := h.b.proc.usage()
	toAck, toConsegna := h.track.latencies("load")
	r := &LoadResult{
		Seconds: l.elapsed.Seconds(), Clients: h.opts.Clients, Attempts: int(l.attempts.Load()), Accepted: int(l.acked.Load()),
		Delivered: len(toConsegna), AllDelivered: drained, Errors: l.errorCounts(),
		AckP50ms: percentile(toAck, 0.5), AckP99ms: percentile(toAck, 0.99),
		ConsegnaP50ms: percentile(toConsegna, 0.5), ConsegnaP99ms: percentile(toConsegna, 0.99),
	}
	r.AcceptedPerSec = float64(r.Accepted) / l.elapsed.Seconds()
	if last := h.track.lastConsegna("load"); !last.IsZero() {
		r.DeliveredPerSec = float64(r.Delivered) / last.Sub(l.start).Seconds()
		r.DrainSeconds = last.Sub(l.start).Seconds() - l.elapsed.Seconds()
	}
	window := end.Sub(l.start).Seconds()
	for _, g := range []struct {
		name       string
		cpu0, cpu1 time.Duration
		rss        int64
	}{{"gestore A (accesso)", cpuA0, cpuA1, rssA}, {"gestore B (ricezione, consegna)", cpuB0, cpuB1, rssB}} {
		cpu := (g.cpu1 - g.cpu0).Seconds()
		u := ProcUsage{Name: g.name, CPUSeconds: cpu, CPUCores: cpu / window, PeakRSSMiB: float64(g.rss) / (1 << 20)}
		if r.Accepted > 0 {
			u.CPUmsPerMessage = cpu * 1000 / float64(r.Accepted)
		}
		r.Processes = append(r.Processes, u)
	}
	h.res.Load = r
	f := h.settle(ctx, "load", l, l.start, time.Time{})
	f.Detail = fmt.Sprintf("%d clients for %s, no fault", h.opts.Clients, h.opts.Load)
	h.res.Faults = append(h.res.Faults, f)
	if f.ledgerEntries > 0 {
		r.LedgerEntriesPerSec = float64(f.ledgerEntries) / window
	}
	return nil
}

// waitDrained waits until every acknowledged message has its ricevuta di
// avvenuta consegna; it returns whether they all have, and how long it
// waited.
func (h *harness) waitDrained(ctx context.Context) (bool, time.Duration) {
	start := time.Now()
	for time.Since(start) < DrainTimeout && ctx.Err() == nil {
		if len(h.track.undelivered()) == 0 {
			return true, time.Since(start)
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return len(h.track.undelivered()) == 0, time.Since(start)
}

// waitSealed waits until g's log shows a sealed segment that reaches its
// newest checkpoint, that is, until the timestamps and the sealing have
// caught up.
func (h *harness) waitSealed(ctx context.Context, g *gestore) (bool, logFacts) {
	start := time.Now()
	var f logFacts
	for time.Since(start) < SealTimeout && ctx.Err() == nil {
		f = readLogFacts(g.proc.logPath)
		if f.lastCheckpoint > 0 && f.sealedTo >= f.lastCheckpoint {
			// Stable for a second: no newer checkpoint was about to come.
			sleep(ctx, time.Second)
			if g2 := readLogFacts(g.proc.logPath); g2.sealedTo >= g2.lastCheckpoint {
				return true, g2
			}
			continue
		}
		sleep(ctx, 250*time.Millisecond)
	}
	return false, f
}

// settle ends a phase with its checks: drain, sealing caught up, a clean
// stop of both gestori, then every acknowledged message in A's ledger and
// delivered or queued, queues empty, ledger verify with timestamps
// required, and the audit report of the phase's period. The gestori stay
// stopped.
func (h *harness) settle(ctx context.Context, phase string, l *loadRun, since, auditTo time.Time) FaultResult {
	f := FaultResult{Fault: phase, Acked: len(h.track.acked(phase)), ClientErrors: l.errorCounts(), Attempts: int(l.attempts.Load())}
	for _, g := range []*gestore{h.a, h.b} {
		if done, err := g.proc.exited(); done {
			f.Crashes = append(f.Crashes, fmt.Sprintf("%s exited on its own: %v", g.proc.name, err))
			g.proc.kill() // forget the incarnation
			if err := h.startGestore(ctx, g); err != nil {
				f.Notes = append(f.Notes, "restart after crash: "+err.Error())
			}
		}
	}
	var wait time.Duration
	f.Drained, wait = h.waitDrained(ctx)
	f.DrainSeconds = wait.Seconds()
	var facts logFacts
	f.SealCaughtUp, facts = h.waitSealed(ctx, h.a)
	f.SealedTo, f.LastCheckpoint = facts.sealedTo, facts.lastCheckpoint
	if okB, _ := h.waitSealed(ctx, h.b); !okB {
		f.SealCaughtUp = false
		f.Notes = append(f.Notes, "gestore B's sealing did not reach its newest checkpoint")
	}
	f.PendingStampWarnings = facts.pendingStamps - h.seenFacts.pendingStamps
	f.SealRetries = facts.sealRetries - h.seenFacts.sealRetries
	f.LogErrors = map[string]int{}
	for k, v := range facts.lines {
		if d := v - h.seenFacts.lines[k]; d > 0 {
			f.LogErrors[k] = d
		}
	}
	h.seenFacts = facts
	if err := h.stopGestori(); err != nil {
		f.Notes = append(f.Notes, "stop: "+err.Error())
	}

	// Every acknowledged message of the run so far: in A's ledger, and
	// delivered or still queued.
	missing, entries, avg, err := h.checkLedger(ctx, h.track.acked(""))
	if err != nil {
		f.Notes = append(f.Notes, err.Error())
	}
	f.MissingFromLedger = len(missing)
	f.LedgerSizeA = entries
	f.ledgerEntries = entries - h.lastEntries
	h.lastEntries = entries
	if avg > 0 && h.res.avgEntrySize == 0 {
		h.res.avgEntrySize = avg
	}
	undelivered := h.track.undelivered()
	f.Undelivered = len(undelivered)
	queued, qa, err := queuedMessages(ctx, filepath.Join(h.a.data, "queue"), undelivered)
	if err != nil {
		f.Notes = append(f.Notes, err.Error())
	}
	_, qb, err := queuedMessages(ctx, filepath.Join(h.b.data, "queue"), nil)
	if err != nil {
		f.Notes = append(f.Notes, err.Error())
	}
	f.QueueA, f.QueueB = qa, qb
	lost := map[string]bool{}
	for _, m := range missing {
		lost[m] = true
	}
	for _, m := range undelivered {
		if !queued[m] {
			lost[m] = true
		}
	}
	f.Lost = len(lost)
	for m := range lost {
		if len(f.LostExamples) < 5 {
			f.LostExamples = append(f.LostExamples, m)
		}
	}
	f.DuplicateConsegne = h.track.duplicates()

	for _, g := range []*gestore{h.a, h.b} {
		out, code, err := h.cli(ctx, "", "ledger", "verify", "-require-timestamps", "-data", g.data)
		ok := err == nil && code == 0
		if g == h.a {
			f.LedgerVerifyA = ok
		} else {
			f.LedgerVerifyB = ok
		}
		if !ok {
			f.Notes = append(f.Notes, fmt.Sprintf("ledger verify %s: %s", g.domain, tail(strings.TrimSpace(out), 400)))
		}
	}
	if auditTo.IsZero() {
		auditTo = time.Now().Add(time.Second)
	}
	f.Audit = h.audit(ctx, phase, since, auditTo)
	// A gestore must ride out every fault, refusing or deferring what it
	// cannot take: dying of one fails the phase even when nothing
	// acknowledged is lost.
	f.OK = f.Lost == 0 && f.MissingFromLedger == 0 && f.LedgerVerifyA && f.LedgerVerifyB && f.Drained && f.SealCaughtUp &&
		f.QueueA == 0 && f.QueueB == 0 && len(f.Crashes) == 0
	return f
}

// checkLedger opens A's ledger read-write, without a checkpointer (so
// that after a crash the journal is replayed and the indexes catch up),
// and returns the
// acknowledged messages without both their accettazione and their busta di
// trasporto entries, the ledger's size, and the mean size of its entries.
func (h *harness) checkLedger(ctx context.Context, acked []string) (missing []string, size uint64, avgEntry int, err error) {
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(h.a.data, "ledger")})
	if err != nil {
		return acked, 0, 0, fmt.Errorf("open A's ledger: %w", err)
	}
	defer l.Close()
	have := map[string]int{}
	for _, k := range []ledger.Kind{ledger.KindAccettazione, ledger.KindPostaCertificata} {
		q := ledger.Query{Kind: k, Limit: 1000}
		for {
			page, err := l.Find(ctx, q)
			if err != nil {
				return acked, 0, 0, fmt.Errorf("gestore A's ledger: %w", err)
			}
			for _, e := range page.Entries {
				have[e.ClientMessageID]++
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
	}
	for _, m := range acked {
		if have[m] < 2 {
			missing = append(missing, m)
		}
	}
	size = l.Head().Size
	var total, n int
	for i := uint64(0); i < size && n < 500; i += max(1, size/500) {
		if _, raw, err := l.Entry(ctx, i); err == nil {
			total += len(raw)
			n++
		}
	}
	if n > 0 {
		avgEntry = total / n
	}
	return missing, size, avgEntry, nil
}

// queuedMessages opens a stopped gestore's queue and returns which of mids
// a queued message carries, and the queue's length.
func queuedMessages(ctx context.Context, dir string, mids []string) (map[string]bool, int, error) {
	q, err := queue.Open(ctx, queue.Options{Dir: dir})
	if err != nil {
		return nil, 0, fmt.Errorf("open queue %s: %w", dir, err)
	}
	defer q.Close()
	items, err := q.Items(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("queue %s: %w", dir, err)
	}
	found := map[string]bool{}
	for _, it := range items {
		for _, m := range mids {
			if bytes.Contains(it.Message, []byte(m)) {
				found[m] = true
			}
		}
	}
	return found, len(items), nil
}

// audit runs custode audit on A for [from, to) and summarises what it
// shows.
func (h *harness) audit(ctx context.Context, phase string, from, to time.Time) AuditSummary {
	dir := filepath.Join(h.dir, "audit-"+phase)
	os.RemoveAll(dir)
	_ = os.MkdirAll(dir, 0o755)
	s := AuditSummary{From: from.UTC().Format(time.RFC3339), To: to.UTC().Format(time.RFC3339), Dir: dir}
	out, code, err := h.cli(ctx, "", "audit", "-data", h.a.data, "-from", from.UTC().Format(time.RFC3339), "-to", to.UTC().Format(time.RFC3339),
		"-out", dir, "-cod-gest-pec", "ALFA", "-actor", "custode-bench")
	if err != nil || (code != 0 && code != 1) {
		s.Error = fmt.Sprintf("custode audit: exit %d %v: %s", code, err, tail(out, 400))
		return s
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		s.Error = err.Error()
		return s
	}
	var rep struct {
		Transactions  int
		Checkpoints   int
		TimestampGaps []string
		Findings      []struct{ Check, Identificativo, Detail string }
		DeliveryP50   float64
		DeliveryMax   float64
		Integrity     struct{ Problems []any }
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		s.Error = "report.json: " + err.Error()
		return s
	}
	s.OK = code == 0
	s.Transactions, s.TimestampGaps = rep.Transactions, rep.TimestampGaps
	s.DeliveryP50s, s.DeliveryMaxs = rep.DeliveryP50, rep.DeliveryMax
	s.IntegrityProblems = len(rep.Integrity.Problems)
	for _, f := range rep.Findings {
		if len(s.Findings) < 5 {
			s.Findings = append(s.Findings, strings.TrimSpace(fmt.Sprintf("[%s] %s %s", f.Check, f.Identificativo, f.Detail)))
		}
		s.FindingCount++
	}
	if p02, err := os.ReadFile(filepath.Join(dir, "P02.csv")); err == nil {
		lines := strings.Split(strings.TrimSpace(string(p02)), "\n")
		s.P02Rows = max(0, len(lines)-1)
	}
	s.ShowsOutage = len(s.TimestampGaps) > 0 || s.FindingCount > 0 || s.P02Rows > 0 || s.IntegrityProblems > 0
	return s
}

// killPhase kills gestore A with SIGKILL opts.Kills times at random
// moments under load; after each kill, before the restart, every message
// acknowledged so far must be in its ledger.
func (h *harness) killPhase(ctx context.Context) error {
	if err := h.startAll(ctx); err != nil {
		return err
	}
	since := time.Now()
	l, err := h.submit(ctx, "kill")
	if err != nil {
		return err
	}
	var after []KillCheck
	for i := range h.opts.Kills {
		sleep(ctx, time.Duration(300+rand.IntN(900))*time.Millisecond)
		if ctx.Err() != nil {
			break
		}
		h.a.proc.kill()
		acked := h.track.acked("")
		missing, _, _, err := h.checkLedger(ctx, acked)
		k := KillCheck{Kill: i + 1, Acked: len(acked), Missing: len(missing)}
		if err != nil {
			k.Error = err.Error()
		}
		after = append(after, k)
		if err := h.startGestore(ctx, h.a); err != nil {
			l.stop()
			return fmt.Errorf("restart after kill %d: %w", i+1, err)
		}
	}
	l.stop()
	f := h.settle(ctx, "kill", l, since, time.Time{})
	f.Detail = fmt.Sprintf("gestore A killed with SIGKILL %d times, 0.3-1.2 s apart, under load", h.opts.Kills)
	f.AfterKill = after
	for _, k := range after {
		if k.Missing > 0 || k.Error != "" {
			f.OK = false
		}
	}
	h.res.Faults = append(h.res.Faults, f)
	return nil
}

// outage runs a fault under load: the clients submit for a third of
// opts.Outage, then down is called, the fault lasts opts.Outage, up is
// called, and the clients go on for another third.
func (h *harness) outage(ctx context.Context, phase, detail string, down, up func() error, auditTo func(time.Time) time.Time) error {
	if err := h.startAll(ctx); err != nil {
		return err
	}
	since := time.Now()
	l, err := h.submit(ctx, phase)
	if err != nil {
		return err
	}
	sleep(ctx, h.opts.Outage/3)
	var notes []string
	var ackedDuring atomic.Int64
	before := l.acked.Load()
	if err := down(); err != nil {
		l.stop()
		return fmt.Errorf("%s: start the fault: %w", phase, err)
	}
	if phase != "clock" { // the clock fault's down takes its own time
		sleep(ctx, h.opts.Outage)
	}
	ackedDuring.Store(l.acked.Load() - before)
	if done, err := h.a.proc.exited(); done {
		notes = append(notes, fmt.Sprintf("gestore A exited during the fault: %v", err))
	}
	if err := up(); err != nil {
		l.stop()
		return fmt.Errorf("%s: end the fault: %w", phase, err)
	}
	sleep(ctx, h.opts.Outage/3)
	l.stop()
	var to time.Time
	if auditTo != nil {
		to = auditTo(time.Now())
	}
	f := h.settle(ctx, phase, l, since, to)
	f.Detail = detail
	f.AckedDuringFault = int(ackedDuring.Load())
	f.Notes = append(notes, f.Notes...)
	h.res.Faults = append(h.res.Faults, f)
	return nil
}

// s3Phase stops the MinIO that A seals to, under load, and starts it again.
func (h *harness) s3Phase(ctx context.Context) error {
	if h.minio == nil {
		return nil // skipped at setup, with its reason
	}
	return h.outage(ctx, "s3", fmt.Sprintf("A's MinIO (sealing) stopped for %s under load, then restarted", h.opts.Outage),
		func() error { return h.minio.proc.stop(20 * time.Second) },
		func() error { return h.minio.start(ctx) }, nil)
}

// tsaPhase stops A's TSA under load and starts it again: checkpoints stay
// pending, then catch up (ledger verify -require-timestamps checks that
// none is left pending).
func (h *harness) tsaPhase(ctx context.Context) error {
	return h.outage(ctx, "tsa", fmt.Sprintf("A's TSA (custode tsa serve) stopped for %s under load, then restarted", h.opts.Outage),
		func() error { return h.tsa.stop(20 * time.Second) },
		func() error {
			if err := h.tsa.start(ctx); err != nil {
				return err
			}
			return waitListening(ctx, h.tsa, h.tsaAddr, startTimeout)
		}, nil)
}

// diskPhase fills the filesystem of A's data under load, then frees it.
func (h *harness) diskPhase(ctx context.Context) error {
	if h.disk == nil {
		return nil // skipped at setup, with its reason
	}
	var filler string
	var filled int64
	err := h.outage(ctx, "disk", "", func() error {
		var err error
		filler, filled, err = h.disk.fill()
		return err
	}, func() error {
		return os.Remove(filler)
	}, nil)
	if err != nil {
		return err
	}
	f := &h.res.Faults[len(h.res.Faults)-1]
	f.Detail = fmt.Sprintf("the ext4 filesystem (a loop device of its own) holding all of A's data filled to the last block (%d MiB filler) for %s under load, then freed",
		filled>>20, h.opts.Outage)
	f.Notes = append(f.Notes, fmt.Sprintf("SMTP 452 (insufficient system storage) answers during the phase: %d", f.ClientErrors["452"]))
	return nil
}

// clockPhase jumps A's clock two hours forward, back to the real time,
// then four minutes behind it, and right again, under load. (Four, not
// more: the ledger refuses events dated more than the checkpoint interval
// plus 5 minutes before its newest timestamped checkpoint, ledger/FORMAT.md
// §2.1, so a gestore further behind defers its messages with 4xx.) (Further
// behind, before the development certificates' NotBefore, A takes B's
// ricevute for buste di anomalia: see the results' notes.) The audit
// covers from three hours before to three hours after, so that it sees
// the transactions stamped with the jumped clock; a second audit of the
// real period counts what an auditor asking for it would see.
func (h *harness) clockPhase(ctx context.Context) error {
	set := func(d string) error { return os.WriteFile(h.a.clockFile, []byte(d), 0o644) }
	if err := set("0s"); err != nil {
		return err
	}
	start := time.Now()
	step := h.opts.Outage / 3
	err := h.outage(ctx, "clock", fmt.Sprintf("A's clock +2h, back to the real time, then -4m, %s each, then right again, under load", step),
		func() error {
			for _, d := range []string{"2h", "0s", "-4m"} {
				if err := set(d); err != nil {
					return err
				}
				sleep(ctx, step)
			}
			return nil
		},
		func() error { return set("0s") },
		func(now time.Time) time.Time { return now.Add(3 * time.Hour) })
	if err != nil {
		return err
	}
	f := &h.res.Faults[len(h.res.Faults)-1]
	real := h.audit(ctx, "clock-real-period", start, time.Now().Add(time.Second))
	wide := h.audit(ctx, "clock-wide", start.Add(-3*time.Hour), time.Now().Add(3*time.Hour))
	f.Notes = append(f.Notes, fmt.Sprintf("audit of the real period [%s, now): %d transactions; of [-3h, +3h]: %d transactions; acknowledged in the phase: %d",
		start.UTC().Format(time.RFC3339), real.Transactions, wide.Transactions, f.Acked))
	return nil
}
