package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// entrySize is the size of a typical encoded entry, for the badger baseline.
func entrySize(b *testing.B) int {
	e := Entry{Seq: 123456, Event: pecEvent(123456)}
	raw, err := e.Encode()
	if err != nil {
		b.Fatal(err)
	}
	return len(raw)
}

// BenchmarkBadgerBatchedSync is the baseline: raw badger, batches of 256
// records of an entry's size, one synced commit per batch.
func BenchmarkBadgerBatchedSync(b *testing.B) {
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).WithLogger(nil).WithDetectConflicts(false))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	val := make([]byte, entrySize(b))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; {
		txn := db.NewTransaction(true)
		for j := 0; j < 256 && i < b.N; j, i = j+1, i+1 {
			k := binary.BigEndian.AppendUint64([]byte{prefixEntry}, uint64(i))
			if err := txn.Set(k, val); err != nil {
				b.Fatal(err)
			}
		}
		if err := txn.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkAppend measures durable appends with 1, 16 and 256 concurrent
// appenders, one event per call.
func BenchmarkAppend(b *testing.B) {
	for _, appenders := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l, err := Open(context.Background(), Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			evs := make([]Event, 4096)
			for i := range evs {
				evs[i] = pecEvent(i)
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < appenders; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if _, err := l.Append(context.Background(), evs[i%4096]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			st := l.Stats()
			b.ReportMetric(float64(st.Entries)/float64(max(st.Groups, 1)), "entries/group")
			b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(max(st.Groups, 1)), "µs/commit")
		})
	}
}

// BenchmarkAppendLatency offers 10,000 appends per second, each from its own
// goroutine, for about two seconds per run, and reports the latency of each
// until it is durable.
func BenchmarkAppendLatency(b *testing.B) {
	const rate = 10000
	l, err := Open(context.Background(), Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ev := pecEvent(1)
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Millisecond)
		start := time.Now()
		sent := 0
		for time.Since(start) < 2*time.Second {
			<-tick.C
			due := int(time.Since(start).Seconds() * rate)
			for ; sent < due; sent++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t0 := time.Now()
					if _, err := l.Append(context.Background(), ev); err != nil {
						b.Error(err)
					}
					d := time.Since(t0)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}()
			}
		}
		tick.Stop()
		wg.Wait()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkVerify reports how many entries per second Verify checks.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	l, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	appendN(b, l, 0, 100000)
	l.Close()
	l, err = Open(context.Background(), Options{Dir: dir, ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r, err := l.Verify(context.Background(), VerifyOptions{})
		if err != nil || !r.OK() {
			b.Fatal(err, r.Problems)
		}
	}
	b.ReportMetric(float64(b.N*100000)/time.Since(start).Seconds(), "entries/s")
}

// BenchmarkInclusionProof measures proofs in a tree of 10 million entries.
// The store is built directly (fillDirect), not through Append, so that it
// takes about a minute rather than many; set CUSTODE_BENCH_10M to a
// directory to keep it between runs.
func BenchmarkInclusionProof(b *testing.B) {
	const size = 10_000_000
	dir := os.Getenv("CUSTODE_BENCH_10M")
	if dir == "" {
		dir = b.TempDir()
	}
	if _, err := os.Stat(filepath.Join(dir, "entries")); err != nil {
		fillDirect(b, dir, size)
	}
	l, err := Open(context.Background(), Options{Dir: dir, ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	root, err := l.RootAt(context.Background(), size)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		idx := uint64(i*7919) % size
		p, err := l.InclusionProof(context.Background(), idx, size)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			_, raw, err := l.Entry(context.Background(), idx)
			if err != nil {
				b.Fatal(err)
			}
			leaf := LeafHash(raw)
			if err := proof.VerifyInclusion(hasher, idx, size, leaf[:], p, root[:]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// fillDirect writes a ledger of n small system events straight into the
// entries store, with the tree nodes and head Append would write, in
// unsynced batches; the index holds one empty run over all of them. For
// benchmarks of reads only.
func fillDirect(b *testing.B, dir string, n uint64) {
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "entries")).WithLogger(nil).WithSyncWrites(false))
	if err != nil {
		b.Fatal(err)
	}
	wb := db.NewWriteBatch()
	rng := (&compact.RangeFactory{Hash: hasher.HashChildren}).NewEmptyRange(0)
	var last [32]byte
	visit := func(id compact.NodeID, h []byte) {
		if id.Level > 0 && id.Level%storedLevelStep == 0 {
			if err := wb.Set(nodeKey(id.Level, id.Index), bytes.Clone(h)); err != nil {
				b.Fatal(err)
			}
		}
	}
	for seq := uint64(0); seq < n; seq++ {
		e := Entry{Seq: seq, Prev: last, Event: Event{Kind: KindQuery, Actor: "bench", Time: baseTime.Add(time.Duration(seq))}}
		raw, err := e.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if err := wb.Set(entryKey(seq), raw); err != nil {
			b.Fatal(err)
		}
		leaf := LeafHash(raw) // the range keeps the slice: one array per leaf
		last = leaf
		if err := rng.Append(leaf[:], visit); err != nil {
			b.Fatal(err)
		}
	}
	head := binary.BigEndian.AppendUint64(nil, n)
	if err := wb.Set(keyHead, append(head, last[:]...)); err != nil {
		b.Fatal(err)
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	idx := filepath.Join(dir, indexDirName)
	if err := os.MkdirAll(idx, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := writeRunFile(idx, 0, n, &sliceSource{}); err != nil {
		b.Fatal(err)
	}
}

// fillParallel appends n events from 64 goroutines in calls of 64 events.
func fillParallel(tb testing.TB, l *Ledger, from, n int) {
	var next atomic.Int64
	next.Store(int64(from))
	end := int64(from + n)
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]Event, 0, 64)
			for {
				i := next.Add(64) - 64
				if i >= end {
					return
				}
				batch = batch[:0]
				for j := i; j < min(i+64, end); j++ {
					batch = append(batch, pecEvent(int(j)))
				}
				if _, err := l.Append(context.Background(), batch...); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
