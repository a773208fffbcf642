package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// putTestCheckpoints stores unsigned checkpoint records at the given sizes,
// in one transaction: the iterators read records, not signatures.
func putTestCheckpoints(t *testing.T, l *Ledger, sizes []uint64) {
	t.Helper()
	err := testUpdate(l, func(txn *testTxn) error {
		for _, n := range sizes {
			body := checkpointBody("test/iter", n, [32]byte{byte(n)}, [32]byte{}, baseTime.Add(time.Duration(n)*time.Second))
			v, err := json.Marshal(checkpointRecord{Body: body, Signature: []byte{1}, Token: []byte{byte(n % 2)}})
			if err != nil {
				return err
			}
			if err := txn.Set(checkpointKey(n), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func collect[T any](t *testing.T, seq func(func(T, error) bool)) []T {
	t.Helper()
	var out []T
	for v, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestCheckpointsFrom(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	var sizes []uint64
	for n := uint64(3); n <= 3*150; n += 3 { // 150 records: more than two pages
		sizes = append(sizes, n)
	}
	putTestCheckpoints(t, l, sizes)

	all, err := l.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from uint64
		want []uint64
	}{
		{0, sizes},
		{3, sizes},
		{4, sizes[1:]},
		{3 * 64, sizes[63:]},
		{3*64 + 1, sizes[64:]},
		{3 * 150, sizes[149:]},
		{3*150 + 1, nil},
		{1 << 63, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.from), func(t *testing.T) {
			var got []uint64
			for _, c := range collect(t, l.CheckpointsFrom(ctx, tt.from)) {
				got = append(got, c.Size)
				if i := slices.Index(sizes, c.Size); string(all[i].Body) != string(c.Body) || string(all[i].Token) != string(c.Token) {
					t.Errorf("checkpoint %d differs from the one Checkpoints returns", c.Size)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("CheckpointsFrom(%d): %d checkpoints %v…, want %d", tt.from, len(got), got[:min(len(got), 3)], len(tt.want))
			}
		})
	}

	// A loop that breaks stops the iterator.
	n := 0
	for _, err := range l.CheckpointsFrom(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 70 {
			break
		}
	}
	if n != 70 {
		t.Errorf("break after 70: %d", n)
	}
}

func TestCheckpointsFromBadRecord(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	putTestCheckpoints(t, l, []uint64{1, 2})
	if err := testUpdate(l, func(txn *testTxn) error { return txn.Set(checkpointKey(3), []byte("{")) }); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	var errs int
	for c, err := range l.CheckpointsFrom(context.Background(), 0) {
		if err != nil {
			errs++
			continue
		}
		got = append(got, c.Size)
	}
	// The page holding the bad record fails as a whole, once.
	if errs != 1 || len(got) != 0 {
		t.Errorf("got %v and %d errors, want one error", got, errs)
	}
}

func TestEntriesFrom(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	const n = 150
	events := make([]Event, n)
	for i := range events {
		events[i] = pecEvent(i)
	}
	if _, err := l.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{0, 1, 63, 64, 65, 149, 150, 1000} {
		var got []uint64
		for _, e := range collect(t, l.EntriesFrom(ctx, from)) {
			got = append(got, e.Seq)
			if e.Oggetto != events[e.Seq].Oggetto {
				t.Errorf("entry %d: oggetto %q, want %q", e.Seq, e.Oggetto, events[e.Seq].Oggetto)
			}
		}
		var want []uint64
		for s := from; s < n; s++ {
			want = append(want, s)
		}
		if !slices.Equal(got, want) {
			t.Errorf("EntriesFrom(%d): %d entries, want %d", from, len(got), len(want))
		}
	}

	// Entries appended while a loop runs are yielded too: the follower
	// shape, where the consumer's cursor is the last Seq it saw plus one.
	seen := 0
	for e, err := range l.EntriesFrom(ctx, n-1) {
		if err != nil {
			t.Fatal(err)
		}
		seen++
		if e.Seq == n-1 {
			if _, err := l.Append(ctx, pecEvent(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if seen != 2 {
		t.Errorf("following from %d saw %d entries, want 2", n-1, seen)
	}

	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	for _, err := range l.EntriesFrom(ctx2, 0) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v", err)
		}
	}
}

func TestSealsFrom(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	// Seals are written as RecordSeal writes them, without one sync each.
	var seals []Seal
	err := testUpdate(l, func(txn *testTxn) error {
		for i := uint64(0); i < 70; i++ {
			s := Seal{From: 10 * i, To: 10 * (i + 1), Key: fmt.Sprint(i)}
			seals = append(seals, s)
			v, _ := json.Marshal(s)
			if err := txn.Set(sealKey(s.To), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		from  uint64
		first int // index of the first seal wanted; len(seals) for none
	}{
		{0, 0}, {9, 0}, {10, 1}, {15, 1}, {640, 64}, {699, 69}, {700, 70}, {1 << 62, 70},
	}
	for _, tt := range tests {
		got := collect(t, l.SealsFrom(ctx, tt.from))
		if !slices.Equal(got, seals[tt.first:]) {
			t.Errorf("SealsFrom(%d): %d seals, want %d from %d", tt.from, len(got), len(seals)-tt.first, tt.first)
		}
	}
	all, err := l.Seals(ctx)
	if err != nil || !slices.Equal(all, seals) {
		t.Errorf("Seals: %d, %v", len(all), err)
	}
}

func TestFindAll(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	var events []Event
	for i := range 100 {
		events = append(events, pecEvent(i))
	}
	if _, err := l.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i, ev := range events {
		if ev.Kind == KindPostaCertificata {
			want = append(want, uint64(i))
		}
	}
	for _, limit := range []int{1, 7, 25, 1000} {
		calls := 0
		find := func(ctx context.Context, q Query) (*Page, error) {
			calls++
			return l.Find(ctx, q)
		}
		var got []uint64
		for _, e := range collect(t, FindAll(ctx, find, Query{Kind: KindPostaCertificata, Limit: limit})) {
			got = append(got, e.Seq)
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: %v, want %v", limit, got, want)
		}
		if wantCalls := len(want)/limit + 1; calls > wantCalls {
			t.Errorf("limit %d: %d pages read, want at most %d", limit, calls, wantCalls)
		}
	}

	boom := errors.New("boom")
	var errs []error
	for _, err := range FindAll(ctx, func(context.Context, Query) (*Page, error) { return nil, boom }, Query{Kind: KindPostaCertificata}) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], boom) {
		t.Errorf("errors %v, want boom once", errs)
	}
	// A pager that returns its own cursor again does not loop forever.
	pages := 0
	stuck := func(_ context.Context, q Query) (*Page, error) {
		pages++
		return &Page{Entries: []*Entry{{Seq: 1}}, Next: "again"}, nil
	}
	if got := collect(t, FindAll(ctx, stuck, Query{Kind: KindPostaCertificata})); len(got) != 2 || pages != 2 {
		t.Errorf("a stuck cursor: %d entries over %d pages, want 2 over 2", len(got), pages)
	}
}

// BenchmarkCheckpointsFrom measures what a follower of the checkpoints
// pays on a real store for a look at what is new (the last checkpoint,
// found with a seek), against the ledger's age in checkpoints; "all" is
// the read of every checkpoint that the sealer made before, for contrast.
func BenchmarkCheckpointsFrom(b *testing.B) {
	for _, n := range []uint64{1_000, 100_000} {
		l := openTest(b, b.TempDir(), nil)
		wb := &testWriteBatch{l: l}
		for k := uint64(1); k <= n; k++ {
			body := checkpointBody("test/iter", 10*k, [32]byte{byte(k)}, [32]byte{}, baseTime.Add(time.Duration(k)*10*time.Second))
			v, err := json.Marshal(checkpointRecord{Body: body, Signature: make([]byte, 1500), Token: make([]byte, 3000)})
			if err != nil {
				b.Fatal(err)
			}
			if err := wb.Set(checkpointKey(10*k), v); err != nil {
				b.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.Run(fmt.Sprintf("checkpoints=%d/new", n), func(b *testing.B) {
			for b.Loop() {
				got := 0
				for c, err := range l.CheckpointsFrom(ctx, 10*n) {
					if err != nil || c.Size != 10*n {
						b.Fatal(c, err)
					}
					got++
				}
				if got != 1 {
					b.Fatal(got)
				}
			}
		})
		if n <= 1_000 || !testing.Short() {
			b.Run(fmt.Sprintf("checkpoints=%d/all", n), func(b *testing.B) {
				for b.Loop() {
					if cps, err := l.Checkpoints(ctx); err != nil || uint64(len(cps)) != n {
						b.Fatal(len(cps), err)
					}
				}
			})
		}
		l.Close()
	}
}

// TestPendingTail: the checkpointer's start reads back from the newest
// checkpoint to the newest with a token, and finds the pending ones in
// order; LatestTimestamped finds that one.
func TestPendingTail(t *testing.T) {
	tests := []struct {
		name         string
		n, stampedTo uint64 // checkpoints 1..n; 1..stampedTo have a token
		wantPending  []uint64
		wantLast     uint64 // 0: none
	}{
		{"empty", 0, 0, nil, 0},
		{"all stamped", 100, 100, nil, 100},
		{"three pending", 100, 97, []uint64{98, 99, 100}, 100},
		{"none stamped", 3, 0, []uint64{1, 2, 3}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := openTest(t, t.TempDir(), nil)
			defer l.Close()
			err := testUpdate(l, func(txn *testTxn) error {
				for k := uint64(1); k <= tt.n; k++ {
					r := checkpointRecord{Body: checkpointBody("test/iter", k, [32]byte{}, [32]byte{}, baseTime), Signature: []byte{1}}
					if k <= tt.stampedTo {
						r.Token = []byte{2}
					}
					v, _ := json.Marshal(r)
					if err := txn.Set(checkpointKey(k), v); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			pending, last, err := l.pendingTail(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, c := range pending {
				got = append(got, c.Size)
			}
			if !slices.Equal(got, tt.wantPending) {
				t.Errorf("pending %v, want %v", got, tt.wantPending)
			}
			if (last == nil) != (tt.wantLast == 0) || (last != nil && last.Size != tt.wantLast) {
				t.Errorf("last %v, want %d", last, tt.wantLast)
			}
			stamped, err := l.LatestTimestamped(context.Background())
			switch {
			case tt.stampedTo == 0 && !errors.Is(err, ErrNotFound):
				t.Errorf("LatestTimestamped with none: %v, %v", stamped, err)
			case tt.stampedTo > 0 && (err != nil || stamped.Size != tt.stampedTo):
				t.Errorf("LatestTimestamped: %v, %v; want %d", stamped, err, tt.stampedTo)
			}
		})
	}
}
