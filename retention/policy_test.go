package retention

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/policies"
)

func TestOf(t *testing.T) {
	months := func(n int) policies.Period { return policies.Period{Months: n} }
	tests := []struct {
		name string
		p    *policies.Policy
		want LogRetention
	}{
		{"no policy", nil, LogRetention{Log: LegalMinimum(), Exports: LegalMinimum()}},
		{"longer log", &policies.Policy{Retention: policies.Retention{Log: months(36)}}, LogRetention{Log: months(36), Exports: LegalMinimum()}},
		{"both", &policies.Policy{Retention: policies.Retention{Log: months(40), Exports: months(31)}}, LogRetention{Log: months(40), Exports: months(31)}},
	}
	for _, tt := range tests {
		if got := Of(tt.p); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if LegalMinimum() != months(30) {
		t.Errorf("legal minimum %v, want 30 months", LegalMinimum())
	}
}

func TestSegmentRetainUntil(t *testing.T) {
	cp := time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		last time.Time
		want time.Time
	}{
		{"no last entry", time.Time{}, time.Date(2029, 9, 1, 10, 0, 0, 0, time.UTC)},
		{"last entry before the checkpoint", cp.Add(-time.Hour), time.Date(2029, 9, 1, 10, 0, 0, 0, time.UTC)},
		{"last entry after it (imported)", cp.Add(48 * time.Hour), time.Date(2029, 9, 3, 10, 0, 0, 0, time.UTC)},
	} {
		if got := SegmentRetainUntil(cp, tt.last, LegalMinimum()); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// appendLog is an in-memory record.Appender that can fail.
type appendLog struct {
	events []ledger.Event
	err    error
}

func (a *appendLog) Append(_ context.Context, evs ...ledger.Event) ([]uint64, error) {
	if a.err != nil {
		return nil, a.err
	}
	var seqs []uint64
	for _, e := range evs {
		seqs = append(seqs, uint64(len(a.events)))
		a.events = append(a.events, e)
	}
	return seqs, nil
}

func TestPolicyDirApply(t *testing.T) {
	raw, err := os.ReadFile("../policies/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	parse := func(version string) (*policies.Policy, []byte) {
		b := bytes.Replace(raw, []byte("version: 1"), []byte("version: "+version), 1)
		p, err := policies.Parse("p.yaml", b)
		if err != nil {
			t.Fatal(err)
		}
		return p, b
	}
	ctx := context.Background()
	d := PolicyDir(filepath.Join(t.TempDir(), "policies"))
	if p, err := d.Active(); p != nil || err != nil {
		t.Fatalf("empty dir: %v, %v", p, err)
	}
	log := &appendLog{}
	rec := record.New(log, "G", nil)

	// Recording fails: the policy does not become active.
	p1, b1 := parse("1")
	if _, err := d.Apply(ctx, record.New(&appendLog{err: errors.New("disk full")}, "G", nil), p1, b1, "op"); err == nil {
		t.Fatal("applied although the change could not be recorded")
	}
	if p, _ := d.Active(); p != nil {
		t.Fatal("policy active although its change is not in the ledger")
	}

	a, err := d.Apply(ctx, rec, p1, b1, "op")
	if err != nil {
		t.Fatal(err)
	}
	if len(log.events) != 1 || log.events[0].Kind != ledger.KindPolicyChange || log.events[0].Details["sha256"] != a.SHA256 ||
		log.events[0].Details["file"] != filepath.Base(a.Kept) || log.events[0].Actor != "op" {
		t.Errorf("recorded %+v, applied %+v", log.events, a)
	}
	if got, _ := d.Active(); got == nil || got.Version != 1 {
		t.Fatalf("active %+v", got)
	}
	var ve *VersionError
	if _, err := d.Apply(ctx, rec, p1, b1, "op"); !errors.As(err, &ve) || ve.Active != 1 {
		t.Errorf("same version again: %v, want *VersionError", err)
	}
	p2, b2 := parse("2")
	if _, err := d.Apply(ctx, rec, p2, b2, "op"); err != nil {
		t.Fatal(err)
	}
	if r, err := d.Retention(); err != nil || r != Of(p2) {
		t.Errorf("retention %+v, %v", r, err)
	}
	watch := d.Watch(nil)
	if got := watch(); got == nil || got.Version != 2 {
		t.Errorf("watch: %+v", got)
	}
}

// A segment is never locked for less than the policy's log retention,
// whatever the day the sealer started. Before, the sealer's duration was
// the period counted from the start of custode serve: started on
// 3 December 2026 with 30 months, a segment sealed on 1 March 2027 was
// locked 2 days short of the legal minimum.
func TestLockFor(t *testing.T) {
	for _, keep := range []policies.Period{LegalMinimum(), {Years: 10}, {Months: 31, Days: 3}} {
		d := LockFor(keep)
		for day := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC); day.Year() < 2031; day = day.AddDate(0, 0, 1) {
			if got, want := day.Add(d), keep.AddTo(day); got.Before(want) {
				t.Fatalf("%s counted from %s: locked until %s, want at least %s", keep, day.Format("2006-01-02"), got, want)
			}
		}
	}
	started := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	old := LegalMinimum().AddTo(started).Sub(started)
	sealed := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	if !sealed.Add(old).Before(LegalMinimum().AddTo(sealed)) {
		t.Fatal("the old duration was long enough: this test shows nothing")
	}
	if sealed.Add(LockFor(LegalMinimum())).Before(LegalMinimum().AddTo(sealed)) {
		t.Error("LockFor is short too")
	}
}

// entryTimes is an EntryReader of entries with given times.
type entryTimes map[uint64]time.Time

func (m entryTimes) Entry(_ context.Context, seq uint64) (*ledger.Entry, []byte, error) {
	t, ok := m[seq]
	if !ok {
		return nil, nil, errors.New("purged")
	}
	e := &ledger.Entry{}
	e.Time = t
	return e, nil, nil
}

// The verifier of the archive asks of a segment what the sealer gave it:
// the retention counted from its last entry when that is later than its
// checkpoint (an imported entry). Before, archive verify counted from the
// checkpoint alone and accepted a segment locked for less.
func TestSegmentMinimum(t *testing.T) {
	cp := &ledger.Checkpoint{Size: 10, Time: time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC)}
	later := cp.Time.Add(72 * time.Hour)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		l    EntryReader
		want time.Time
	}{
		{"no ledger", nil, LegalMinimum().AddTo(cp.Time)},
		{"last entry purged", entryTimes{}, LegalMinimum().AddTo(cp.Time)},
		{"last entry before", entryTimes{9: cp.Time.Add(-time.Minute)}, LegalMinimum().AddTo(cp.Time)},
		{"last entry after", entryTimes{9: later}, LegalMinimum().AddTo(later)},
	} {
		if got := SegmentMinimum(ctx, tt.l, LegalMinimum())(cp); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
