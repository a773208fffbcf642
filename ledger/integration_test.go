package ledger

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestIntegrationMillionEntries appends a million events, verifies the ledger, then
// flips one byte in each of 200 random entries of a copy and checks that
// verify names every one of them.
func TestIntegrationMillionEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short (scripts/test.sh)")
	}
	const n = 1_000_000
	dir := t.TempDir()
	cp := testCheckpoints(t, testAuthority(t, nil))
	cp.Every, cp.Interval = 100_000, time.Second
	l := openTest(t, dir, cp)
	start := time.Now()
	fillParallel(t, l, 0, n)
	fill := time.Since(start)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("appended %d events in %v (%.0f/s, %.0f entries per group commit)", n, fill, n/fill.Seconds(),
		float64(n)/float64(max(l.Stats().Groups, 1)))

	d := testPKI(t)
	opts := VerifyOptions{Roots: d.Roots(), TSARoots: d.Roots(), RequireTimestamps: true, MaxProblems: 1000}
	l, err := Open(context.Background(), Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Verify(context.Background(), opts)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("verify: %v", r.Problems[:min(len(r.Problems), 5)])
	}
	size := r.To
	t.Logf("verify: %d entries, %d checkpoints in %v (%.0f entries/s)", size, r.Checkpoints, r.Elapsed, float64(size)/r.Elapsed.Seconds())

	copyDir := t.TempDir()
	copyTree(t, dir, copyDir)
	rng := rand.New(rand.NewPCG(7, 8))
	flipped := map[uint64]bool{}
	for len(flipped) < 200 {
		s := uint64(rng.IntN(int(size)))
		if !flipped[s] && !flipped[s-1] && !flipped[s+1] {
			flipped[s] = true
		}
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(copyDir, "entries")).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for s := range flipped {
			raw, err := getValue(txn, entryKey(s))
			if err != nil {
				return err
			}
			raw[rng.IntN(len(raw))] ^= byte(1 + rng.IntN(255))
			if err := txn.Set(entryKey(s), raw); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err = Open(context.Background(), Options{Dir: copyDir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err = l.Verify(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	named := map[uint64]bool{}
	for _, p := range r.Problems {
		if p.Seq >= 0 {
			named[uint64(p.Seq)] = true
		}
	}
	var missed, wrong []uint64
	for s := range flipped {
		if !named[s] {
			missed = append(missed, s)
		}
	}
	for s := range named {
		if !flipped[s] {
			wrong = append(wrong, s)
		}
	}
	sort.Slice(missed, func(i, j int) bool { return missed[i] < missed[j] })
	if len(missed) > 0 || len(wrong) > 0 {
		t.Fatalf("flipped 200 entries: %d not named (%v), %d named wrongly (%v)", len(missed), missed, len(wrong), wrong)
	}
	t.Logf("200 flipped entries: all 200 named by verify; first problem: %s", r.Problems[0])
}
