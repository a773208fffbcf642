package retention

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/durable"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/policies"
)

// LegalMinimum is the shortest time the law lets the log be kept (RFC 6109
// §2.3, DM 2 novembre 2005: 30 months). Its one definition is
// policies.MinLogRetention, which the policy check enforces (policies
// cannot import this package); everything else asks for it here.
func LegalMinimum() policies.Period { return policies.MinLogRetention }

// Of returns the retention classes of policy p: its log and exports
// retention, or the legal minimum for a class it leaves unset and for
// both when p is nil (no policy applied). It is the one retention lookup
// of the command line, the API and the sealer.
func Of(p *policies.Policy) LogRetention {
	r := LogRetention{Log: LegalMinimum(), Exports: LegalMinimum()}
	if p == nil {
		return r
	}
	if p.Retention.Log != (policies.Period{}) {
		r.Log = p.Retention.Log
	}
	if p.Retention.Exports != (policies.Period{}) {
		r.Exports = p.Retention.Exports
	}
	return r
}

// SegmentRetainUntil is when a sealed segment of the log may be deleted:
// keep after the later of its checkpoint's time and its last entry's time
// (zero when unknown). The sealer locks a segment until then and the
// verifier of the archive expects at least as much.
func SegmentRetainUntil(checkpoint, lastEntry time.Time, keep policies.Period) time.Time {
	t := checkpoint
	if lastEntry.After(t) {
		t = lastEntry
	}
	return keep.AddTo(t)
}

// EntryReader reads one ledger entry; *ledger.Ledger satisfies it.
type EntryReader interface {
	Entry(ctx context.Context, seq uint64) (*ledger.Entry, []byte, error)
}

// SegmentMinimum returns, for the verifier of the archive, the least
// retain-until of the sealed segment a checkpoint ends: SegmentRetainUntil
// of the checkpoint's time and, when l is not nil and holds it, of the
// time of the segment's last entry, entry Size-1, as the sealer counts it.
// An entry l cannot read (purged, or no ledger) counts from the checkpoint
// alone, which asks less, never more, than the sealer gave.
func SegmentMinimum(ctx context.Context, l EntryReader, keep policies.Period) func(cp *ledger.Checkpoint) time.Time {
	return func(cp *ledger.Checkpoint) time.Time {
		var last time.Time
		if l != nil && cp.Size > 0 {
			if e, _, err := l.Entry(ctx, cp.Size-1); err == nil && e != nil {
				last = e.Time
			}
		}
		return SegmentRetainUntil(cp.Time, last, keep)
	}
}

// LockFor returns the shortest fixed duration that is never shorter than
// keep, whatever the day it is counted from: calendar months and years
// differ in length, so keep.AddTo(now).Sub(now) counted from another day
// can fall days short (30 months from 3 December 2026 are 913 days; from
// 1 March 2027 they are 915). A sealer that takes a duration locks
// segments for LockFor(keep), and none is kept less than keep.
func LockFor(keep policies.Period) time.Duration {
	// Every day of a 400-year Gregorian cycle would be exact; the month
	// lengths repeat within 4 years but for century days, and 8 years
	// around them are enough for any Period.
	start := time.Date(2096, 1, 1, 0, 0, 0, 0, time.UTC)
	var longest time.Duration
	for t := start; t.Before(start.AddDate(8, 0, 0)); t = t.AddDate(0, 0, 1) {
		longest = max(longest, keep.AddTo(t).Sub(t))
	}
	return longest
}

// PolicyDir is the directory of a data directory's applied policies: the
// active one, active.yaml, and a copy of each version applied,
// vN-SHA256PREFIX.yaml.
type PolicyDir string

// ActivePath is the file of the active policy.
func (d PolicyDir) ActivePath() string { return filepath.Join(string(d), "active.yaml") }

// Active returns the active policy, or nil and no error when none was
// ever applied.
func (d PolicyDir) Active() (*policies.Policy, error) {
	p, err := policies.Load(d.ActivePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the active policy: %w", err)
	}
	return p, nil
}

// Retention returns the retention classes of the active policy (see Of).
func (d PolicyDir) Retention() (LogRetention, error) {
	p, err := d.Active()
	if err != nil {
		return LogRetention{}, err
	}
	return Of(p), nil
}

// VersionError refuses a policy whose version is not above the active
// one's.
type VersionError struct{ Version, Active int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("version %d is not above the active policy's %d", e.Version, e.Active)
}

// CheckVersion returns a *VersionError if p's version is not above the
// active policy's.
func (d PolicyDir) CheckVersion(p *policies.Policy) error {
	cur, err := d.Active()
	if err != nil {
		return err
	}
	if cur != nil && p.Version <= cur.Version {
		return &VersionError{p.Version, cur.Version}
	}
	return nil
}

// Applied is a policy made active.
type Applied struct {
	SHA256 string // hex
	Kept   string // the copy kept of this version
	Seq    uint64 // the policy-change entry in the ledger
}

// Apply makes p, read from raw, the active policy: it keeps a copy of this
// version, records the change (actor, version, SHA-256, the copy's name)
// with rec, and only then replaces the active policy. Versions must
// increase: a version not above the active one's is a *VersionError and
// changes nothing.
func (d PolicyDir) Apply(ctx context.Context, rec *record.Recorder, p *policies.Policy, raw []byte, actor string) (*Applied, error) {
	if err := d.CheckVersion(p); err != nil {
		return nil, err
	}
	sum := hex.EncodeToString(p.SHA256[:])
	kept := filepath.Join(string(d), fmt.Sprintf("v%d-%s.yaml", p.Version, sum[:12]))
	if err := durable.WriteFile(kept, raw, 0o644); err != nil {
		return nil, fmt.Errorf("retention: keep policy version %d: %w", p.Version, err)
	}
	seq, err := rec.PolicyChange(ctx, actor, p.Version, sum, filepath.Base(kept))
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(d.ActivePath(), raw, 0o644); err != nil {
		return nil, fmt.Errorf("retention: activate policy version %d: %w", p.Version, err)
	}
	return &Applied{SHA256: sum, Kept: kept, Seq: seq}, nil
}

// Watch returns a function giving the active policy, read again whenever
// its file changes; nil while none is applied. A file that no longer
// parses keeps the last good policy in force, and is logged (nil log:
// not logged).
func (d PolicyDir) Watch(log *slog.Logger) func() *policies.Policy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var mu sync.Mutex
	var cur *policies.Policy
	var read os.FileInfo
	return func() *policies.Policy {
		mu.Lock()
		defer mu.Unlock()
		st, err := os.Stat(d.ActivePath())
		if err != nil {
			cur, read = nil, nil
			return nil
		}
		if !unchanged(read, st) {
			p, err := policies.Load(d.ActivePath())
			if err != nil {
				log.Error("the active policy", "err", err)
				return cur // keep the last good one
			}
			cur, read = p, st
		}
		return cur
	}
}
