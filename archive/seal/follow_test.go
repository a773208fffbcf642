package seal_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/ledger"
)

var fakeStart = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// fakeLedger is a seal.Ledger of any age that holds nothing: checkpoint k
// (1 ≤ k ≤ checkpoints) covers the first k·per entries and is computed
// when asked for, timestamped if k ≤ stamped. It counts the checkpoints it
// yields, so that a test sees what a look at the ledger read.
type fakeLedger struct {
	per         uint64 // entries per checkpoint
	checkpoints uint64
	stamped     uint64
	last        *ledger.Seal
	outages     int
	failAt      uint64 // CheckpointsFrom fails at this checkpoint; 0 never
	read        int    // checkpoints yielded
}

func (f *fakeLedger) checkpoint(k uint64) *ledger.Checkpoint {
	size := k * f.per
	t := fakeStart.Add(time.Duration(k) * 10 * time.Second)
	c := &ledger.Checkpoint{
		Origin: "fake/seal", Size: size, Time: t,
		Body:      fmt.Appendf(nil, "fake/seal\n%d\n%032d\nprev %064d\ntime %s\n", size, k, k-1, t.Format(time.RFC3339Nano)),
		Signature: []byte("signature"),
	}
	if k <= f.stamped {
		c.Token = []byte("token")
	}
	return c
}

func (f *fakeLedger) CheckpointsFrom(ctx context.Context, size uint64) iter.Seq2[*ledger.Checkpoint, error] {
	return func(yield func(*ledger.Checkpoint, error) bool) {
		k := max((size+f.per-1)/f.per, 1)
		for ; k <= f.checkpoints; k++ {
			if k == f.failAt {
				yield(nil, errors.New("fake: checkpoint unreadable"))
				return
			}
			f.read++
			if !yield(f.checkpoint(k), nil) {
				return
			}
		}
	}
}

func (f *fakeLedger) LastSeal(context.Context) (*ledger.Seal, error) {
	if f.last == nil {
		return nil, nil
	}
	s := *f.last
	return &s, nil
}

func (f *fakeLedger) Segment(_ context.Context, from, to uint64) (*ledger.Segment, error) {
	if from >= to || to%f.per != 0 || to/f.per > f.checkpoints {
		return nil, fmt.Errorf("fake: no segment %d-%d", from, to)
	}
	s := &ledger.Segment{From: from, To: to, Checkpoint: f.checkpoint(to / f.per)}
	for range 40 { // a compact range of a ledger of 2^40 entries
		s.Start = append(s.Start, make([]byte, 32))
	}
	for seq := from; seq < to; seq++ {
		s.Entries = append(s.Entries, strconv.AppendUint([]byte("entry "), seq, 10))
	}
	return s, nil
}

func (f *fakeLedger) Entry(_ context.Context, seq uint64) (*ledger.Entry, []byte, error) {
	if seq >= f.checkpoints*f.per {
		return nil, nil, ledger.ErrNotFound
	}
	e := &ledger.Entry{Seq: seq}
	e.Time = fakeStart.Add(time.Duration(seq) * time.Second)
	return e, nil, nil
}

func (f *fakeLedger) RecordSeal(_ context.Context, s ledger.Seal) error {
	var end uint64
	if f.last != nil {
		end = f.last.To
	}
	if s.From != end || s.To <= s.From {
		return fmt.Errorf("fake: seal %d-%d after one ending at %d", s.From, s.To, end)
	}
	f.last = &s
	return nil
}

func (f *fakeLedger) RecordOutage(context.Context, string, string, time.Time, time.Time, string) error {
	f.outages++
	return nil
}

// memStore is an archive.Store in memory that keeps what Put is given; it
// supports what a Sealer uses (Put and Stat).
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	fail    error // Put fails with it, if not nil
}

func (m *memStore) Put(_ context.Context, key string, data []byte, opts archive.PutOptions) (archive.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return archive.ObjectInfo{}, m.fail
	}
	if _, ok := m.objects[key]; ok {
		return archive.ObjectInfo{}, archive.ErrExists
	}
	if m.objects == nil {
		m.objects = map[string][]byte{}
	}
	m.objects[key] = bytes.Clone(data)
	return m.info(key, opts.Retention), nil
}

func (m *memStore) info(key string, r archive.Retention) archive.ObjectInfo {
	data := m.objects[key]
	return archive.ObjectInfo{Key: key, VersionID: "v1", Size: int64(len(data)), SHA256: sha256.Sum256(data), Retention: r}
}

func (m *memStore) Stat(_ context.Context, key, _ string) (archive.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[key]; !ok {
		return archive.ObjectInfo{}, archive.ErrNotFound
	}
	return m.info(key, archive.Retention{}), nil
}

func (m *memStore) Get(context.Context, string, string) (*archive.Object, error) {
	return nil, errors.ErrUnsupported
}

func (m *memStore) List(context.Context, string) iter.Seq2[archive.ListEntry, error] {
	return func(yield func(archive.ListEntry, error) bool) { yield(archive.ListEntry{}, errors.ErrUnsupported) }
}

func (m *memStore) SetLegalHold(context.Context, string, string, bool) error {
	return errors.ErrUnsupported
}

func (m *memStore) ExtendRetention(context.Context, string, string, time.Time) error {
	return errors.ErrUnsupported
}

func (m *memStore) Delete(context.Context, string, string) error { return errors.ErrUnsupported }

func newFakeSealer(t testing.TB, l seal.Ledger, store archive.Store) *seal.Sealer {
	t.Helper()
	s, err := seal.New(seal.Options{Ledger: l, Store: store, Now: func() time.Time { return fakeStart }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealerFollows checks that a Sealer reads only the checkpoints after
// its cursor (the end of the last seal), whatever the ledger's age, seals
// the timestamped ones in order and stops at the first pending one.
func TestSealerFollows(t *testing.T) {
	tests := []struct {
		name                  string
		checkpoints, stamped  uint64
		sealedTo              uint64 // checkpoint the last seal ends at; 0 none
		wantSealed, wantReads int
	}{
		{"new ledger", 3, 3, 0, 3, 3},
		{"caught up", 1_000_000, 1_000_000, 1_000_000, 0, 0},
		{"caught up, one pending", 1_000_000, 999_999, 999_999, 0, 1},
		{"ten behind", 1_000_000, 1_000_000, 999_990, 10, 10},
		{"five stamped, then pending", 1_000_000, 999_995, 999_990, 5, 6},
		{"pending first", 1_000_000, 999_990, 999_990, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := &fakeLedger{per: 10, checkpoints: tt.checkpoints, stamped: tt.stamped}
			if tt.sealedTo > 0 {
				f.last = &ledger.Seal{From: (tt.sealedTo - 1) * 10, To: tt.sealedTo * 10}
			}
			store := &memStore{}
			s := newFakeSealer(t, f, store)
			entries, cps, err := s.Backlog(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cps != tt.wantSealed || entries != uint64(tt.wantSealed)*10 {
				t.Errorf("backlog: %d entries in %d checkpoints, want %d in %d", entries, cps, tt.wantSealed*10, tt.wantSealed)
			}
			f.read = 0
			n, err := s.SealPending(ctx)
			if err != nil || n != tt.wantSealed {
				t.Fatalf("SealPending: %d, %v; want %d", n, err, tt.wantSealed)
			}
			if f.read != tt.wantReads {
				t.Errorf("read %d checkpoints of %d, want %d", f.read, tt.checkpoints, tt.wantReads)
			}
			if len(store.objects) != tt.wantSealed {
				t.Errorf("%d objects in the store, want %d", len(store.objects), tt.wantSealed)
			}
			if want := min(tt.checkpoints, tt.stamped); f.last == nil || f.last.To != want*10 {
				t.Errorf("last seal %+v, want one ending at %d", f.last, want*10)
			}
			// A second look finds nothing more and reads at most the
			// pending checkpoint.
			f.read = 0
			if n, err := s.SealPending(ctx); n != 0 || err != nil {
				t.Errorf("second SealPending: %d, %v", n, err)
			}
			if f.read > 1 {
				t.Errorf("second look read %d checkpoints", f.read)
			}
		})
	}
}

// TestSealerFailures: a failed read or write stops the Sealer where it is,
// its cursor still at the last seal recorded, and a ledger that yields a
// checkpoint at or before the cursor is an error, not a seal over sealed
// entries.
func TestSealerFailures(t *testing.T) {
	ctx := context.Background()

	f := &fakeLedger{per: 10, checkpoints: 100, stamped: 100, failAt: 5}
	s := newFakeSealer(t, f, &memStore{})
	n, err := s.SealPending(ctx)
	if n != 4 || err == nil || f.last.To != 40 {
		t.Errorf("unreadable checkpoint 5: sealed %d (%v), cursor %d; want 4, an error, 40", n, err, f.last.To)
	}

	store := &memStore{fail: errors.New("archive down")}
	f = &fakeLedger{per: 10, checkpoints: 10, stamped: 10}
	s = newFakeSealer(t, f, store)
	if n, err := s.SealPending(ctx); n != 0 || err == nil || f.last != nil {
		t.Errorf("archive down: sealed %d (%v), last %+v", n, err, f.last)
	}
	store.fail = nil
	if n, err := s.SealPending(ctx); n != 10 || err != nil {
		t.Errorf("archive back: sealed %d, %v", n, err)
	}

	s = newFakeSealer(t, backwards{f}, &memStore{})
	if _, err := s.SealPending(ctx); err == nil {
		t.Error("a checkpoint before the cursor was accepted")
	}
}

// backwards is a ledger whose CheckpointsFrom ignores the position.
type backwards struct{ *fakeLedger }

func (b backwards) CheckpointsFrom(ctx context.Context, _ uint64) iter.Seq2[*ledger.Checkpoint, error] {
	return b.fakeLedger.CheckpointsFrom(ctx, 0)
}

// BenchmarkSealerTick measures one look of the Sealer (SealPending) on
// ledgers of 1,000 and 10 million checkpoints (10 and 100 million
// entries): "idle" finds only a checkpoint not yet timestamped, "one" finds
// one new timestamped checkpoint and seals it (segment, archive write,
// seal record). The cost should not depend on the age.
func BenchmarkSealerTick(b *testing.B) {
	for _, age := range []uint64{1_000, 10_000_000} {
		b.Run(fmt.Sprintf("checkpoints=%d/idle", age), func(b *testing.B) {
			f := &fakeLedger{per: 10, checkpoints: age, stamped: age - 1,
				last: &ledger.Seal{From: (age - 2) * 10, To: (age - 1) * 10}}
			s := newFakeSealer(b, f, &memStore{})
			ctx := context.Background()
			for b.Loop() {
				if n, err := s.SealPending(ctx); n != 0 || err != nil {
					b.Fatal(n, err)
				}
			}
		})
		b.Run(fmt.Sprintf("checkpoints=%d/one", age), func(b *testing.B) {
			f := &fakeLedger{per: 10, checkpoints: age, stamped: age,
				last: &ledger.Seal{From: (age - 1) * 10, To: age * 10}}
			s := newFakeSealer(b, f, &memStore{})
			ctx := context.Background()
			for b.Loop() {
				f.checkpoints++
				f.stamped++
				if n, err := s.SealPending(ctx); n != 1 || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}
