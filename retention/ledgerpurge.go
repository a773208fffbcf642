package retention

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/policies"
)

// LogRetention says how long each class of ledger entries keeps its
// contents. Checkpoint, policy-change, legal-hold and purge entries, the
// record of how the ledger itself was kept, are never purged.
type LogRetention struct {
	// Log is the retention of PEC transactions (the log of RFC 6109 §2.3),
	// counted from each entry's riferimento temporale: 30 months by law.
	Log policies.Period
	// Exports is the retention of the records of queries and exports.
	Exports policies.Period
}

// expiry returns when e's contents may go, and false for entries that are
// kept for good.
func (r LogRetention) expiry(e *ledger.Entry) (time.Time, bool) {
	switch {
	case e.Kind.IsPEC():
		return r.Log.AddTo(e.Time), true
	case e.Kind == ledger.KindQuery || e.Kind == ledger.KindExport:
		return r.Exports.AddTo(e.Time), true
	}
	return time.Time{}, false
}

// LogPlan is what a purge of the ledger removes, or would remove with a dry
// run.
type LogPlan struct {
	DryRun bool
	// Retention is what the plan was made for.
	Retention LogRetention
	// Entries are the sequence numbers whose contents go (their leaf
	// hashes stay), ascending.
	Entries []uint64
	// Held counts entries past retention kept by a legal hold.
	Held int
	// Unsealed counts entries past retention kept because they are not yet
	// in a sealed segment in WORM storage.
	Unsealed int
	// Events are the purge events recorded, one per run of at most
	// ledger.MaxRangesDetail bytes of ranges.
	Events []uint64
}

// PurgeLog removes from the ledger the contents of entries past their
// retention and under no active legal hold, keeping their leaf hashes so
// that the tree still verifies and the remaining entries still prove. When
// the manager has a SegmentPrefix, only entries already sealed to WORM
// storage are purged. Each purge is first recorded as a purge event that
// lists the entries (detail ledger_ranges), then carried out; a run cut
// short is completed by the next. With dryRun it only returns the plan.
func (m *Manager) PurgeLog(ctx context.Context, r LogRetention, actor string, dryRun bool) (*LogPlan, error) {
	plan := &LogPlan{DryRun: dryRun, Retention: r}
	holds, err := m.Registry.Holds()
	if err != nil {
		return nil, fmt.Errorf("retention: purge log: %w", err)
	}
	var active []Hold
	for _, h := range holds {
		if h.Active() {
			active = append(active, h)
		}
	}
	size := m.Ledger.Head().Size
	sealedTo := size
	if m.SegmentPrefix != "" {
		last, err := m.Ledger.LastSeal(ctx)
		if err != nil {
			return nil, fmt.Errorf("retention: purge log: %w", err)
		}
		sealedTo = 0
		if last != nil {
			sealedTo = last.To
		}
	}
	now := m.now()
	err = m.Ledger.Scan(ctx, 0, size, func(e *ledger.Entry) error {
		until, ok := r.expiry(e)
		if !ok || now.Before(until) {
			return nil
		}
		if e.Seq >= sealedTo {
			plan.Unsealed++
			return nil
		}
		mailboxes := []string{e.Mittente}
		for _, d := range e.Destinatari {
			mailboxes = append(mailboxes, d.Address)
		}
		for _, h := range active {
			if h.Scope.Covers(mailboxes, e.Identificativo, e.Time) {
				plan.Held++
				return nil
			}
		}
		plan.Entries = append(plan.Entries, e.Seq)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retention: purge log: %w", err)
	}
	if dryRun || len(plan.Entries) == 0 {
		return plan, nil
	}
	rest := plan.Entries
	for len(rest) > 0 {
		ranges, n := ledger.FormatRanges(rest, ledger.MaxRangesDetail)
		chunk := rest[:n]
		rest = rest[n:]
		seq, err := record.New(m.Ledger, m.Gestore, func() time.Time { return now }).Purge(ctx, actor, map[string]string{
			ledger.DetailLedgerRanges: ranges,
			"ledger_entries":          strconv.Itoa(len(chunk)),
			"retention_log":           r.Log.String(),
			"retention_exports":       r.Exports.String(),
			"held":                    strconv.Itoa(plan.Held),
			"unsealed":                strconv.Itoa(plan.Unsealed),
		})
		if err != nil {
			return nil, fmt.Errorf("retention: purge log: record: %w", err)
		}
		plan.Events = append(plan.Events, seq)
		if err := m.Ledger.Purge(ctx, seq, chunk); err != nil {
			return nil, fmt.Errorf("retention: purge log: %w", err)
		}
		if m.Progress != nil {
			m.Progress(uint64(len(plan.Entries)-len(rest)), uint64(len(plan.Entries)))
		}
	}
	return plan, nil
}
