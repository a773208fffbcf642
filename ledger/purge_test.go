package ledger

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/transparency-dev/merkle/proof"
)

func TestFormatRanges(t *testing.T) {
	tests := []struct {
		seqs  []uint64
		limit int
		want  string
		n     int
	}{
		{nil, 0, "", 0},
		{[]uint64{7}, 0, "7", 1},
		{[]uint64{1, 2, 3, 5, 9, 10}, 0, "1-3,5,9-10", 6},
		{[]uint64{1, 2, 3, 5, 9, 10}, 6, "1-3,5", 4},
		{[]uint64{100, 101}, 3, "100-101", 2}, // one range always fits
	}
	for _, tt := range tests {
		got, n := FormatRanges(tt.seqs, tt.limit)
		if got != tt.want || n != tt.n {
			t.Errorf("FormatRanges(%v, %d) = %q, %d; want %q, %d", tt.seqs, tt.limit, got, n, tt.want, tt.n)
		}
		if rs, err := ParseRanges(got); err != nil {
			t.Errorf("ParseRanges(%q): %v", got, err)
		} else {
			for _, s := range tt.seqs[:n] {
				if !rangesContain(rs, s) {
					t.Errorf("ParseRanges(%q) lacks %d", got, s)
				}
			}
		}
	}
	for _, bad := range []string{"x", "3-1", "1,1", "5,2", "1-", "-", "1,,2"} {
		if _, err := ParseRanges(bad); err == nil {
			t.Errorf("ParseRanges(%q) accepted", bad)
		}
	}
}

// purgeEvent appends a purge event listing seqs and returns its number.
func purgeEvent(t *testing.T, l *Ledger, seqs []uint64) uint64 {
	t.Helper()
	text, n := FormatRanges(seqs, 0)
	if n != len(seqs) {
		t.Fatal("ranges cut short")
	}
	got, err := l.Append(context.Background(), Event{Kind: KindPurge, Time: time.Now().UTC(), Actor: "test",
		Details: map[string]string{DetailLedgerRanges: text}})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s < to; s++ {
		out = append(out, s)
	}
	return out
}

func TestPurgeKeepsTreeAndProofs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := testPKI(t)
	l := openTest(t, dir, testCheckpoints(t, testAuthority(t, nil)))
	const n = 1000
	appendN(t, l, 0, n)
	cp := waitCheckpoint(t, l, n)

	_, victim, err := l.Entry(ctx, 150)
	if err != nil {
		t.Fatal(err)
	}
	victim = bytes.Clone(victim)
	victimEntry, _ := DecodeEntry(victim)
	var purged []uint64 // 100-399 but for the checkpoints among them
	for _, s := range seqRange(100, 400) {
		if e, _, err := l.Entry(ctx, s); err != nil {
			t.Fatal(err)
		} else if e.Kind != KindCheckpoint {
			purged = append(purged, s)
		}
	}
	by := purgeEvent(t, l, purged)
	if err := l.Purge(ctx, by, purged); err != nil {
		t.Fatal(err)
	}

	var pe *PurgedError
	if _, _, err := l.Entry(ctx, 150); !errors.As(err, &pe) || !errors.Is(err, ErrPurged) || pe.By != by || pe.Leaf != LeafHash(victim) {
		t.Fatalf("Entry(150) after purge: %v", err)
	}
	page, err := l.Find(ctx, Query{Identificativo: victimEntry.Identificativo})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if e.Seq >= 100 && e.Seq < 400 {
			t.Fatalf("Find returned purged entry %d", e.Seq)
		}
	}
	if page, err := l.Find(ctx, Query{Mailbox: "mittente5@pec.test.example"}); err != nil || len(page.Entries) == 0 {
		t.Fatalf("Find of surviving entries: %v, %d", err, len(page.Entries))
	}

	// The tree is unchanged: proofs of survivors and of purged entries
	// still verify against the checkpoint taken before the purge.
	for _, seq := range []uint64{0, 99, 150, 400, n - 1} {
		p, err := l.InclusionProof(ctx, seq, cp.Size)
		if err != nil {
			t.Fatalf("proof %d: %v", seq, err)
		}
		var leaf [32]byte
		if e, raw, err := l.Entry(ctx, seq); err == nil {
			leaf = LeafHash(raw)
			_ = e
		} else if errors.As(err, &pe) {
			leaf = pe.Leaf
		} else {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(hasher, seq, cp.Size, leaf[:], p, cp.Root[:]); err != nil {
			t.Fatalf("proof %d: %v", seq, err)
		}
	}
	if _, err := l.Segment(ctx, 0, cp.Size); !errors.Is(err, ErrPurged) {
		t.Fatalf("Segment over purged entries: %v", err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(d.CA.Certificate)
	verify := func(l *Ledger) *Report {
		t.Helper()
		r, err := l.Verify(ctx, VerifyOptions{Roots: roots})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := verify(l); !r.OK() || r.Purged != len(purged) {
		t.Fatalf("verify after purge: purged %d, problems %v", r.Purged, r.Problems)
	}
	// Verify from inside and from just after the purged range.
	for _, from := range []uint64{150, 400} {
		r, err := l.Verify(ctx, VerifyOptions{From: from})
		if err != nil || !r.OK() {
			t.Fatalf("verify from %d: %v %v", from, err, r.Problems)
		}
	}

	// The journal no longer holds the purged bytes.
	jdir := filepath.Join(dir, "journal")
	files, _ := os.ReadDir(jdir)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(jdir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, victim) {
			t.Fatalf("journal %s still holds purged entry 150", f.Name())
		}
	}

	// Appends go on, and the ledger reopens (the journal replays only
	// what follows the purge).
	appendN(t, l, n, 50)
	if err := l.Close(); err != nil { // adds a last checkpoint
		t.Fatal(err)
	}
	head := l.Head()
	l = openTest(t, dir, nil)
	if l.Head() != head {
		t.Fatalf("head after reopen %+v, want %+v", l.Head(), head)
	}
	if r := verify(l); !r.OK() || r.Purged != len(purged) {
		t.Fatalf("verify after reopen: purged %d, problems %v", r.Purged, r.Problems)
	}

	// Purge refuses what its event does not list, and never removes a
	// checkpoint or a purge event.
	if err := l.Purge(ctx, by, []uint64{500}); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Fatalf("purge of an unlisted entry: %v", err)
	}
	if err := l.Purge(ctx, 0, []uint64{0}); err == nil {
		t.Fatal("purge by a non-purge event accepted")
	}
	cpSeq := findKind(t, l, KindCheckpoint)
	by2 := purgeEvent(t, l, []uint64{cpSeq})
	if err := l.Purge(ctx, by2, []uint64{cpSeq}); err == nil || !strings.Contains(err.Error(), "never purged") {
		t.Fatalf("purge of a checkpoint event: %v", err)
	}
	l.Close()
}

// TestVerifyCatchesForgedPurges: a marker that no purge event lists, or
// that hides a different hash, is reported with the entry's number.
func TestVerifyCatchesForgedPurges(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	appendN(t, l, 0, 300)
	purged := seqRange(10, 20)
	by := purgeEvent(t, l, purged)
	if err := l.Purge(ctx, by, purged); err != nil {
		t.Fatal(err)
	}
	l.Close()

	forge := func(seq uint64, leaf func([32]byte) [32]byte, by uint64) string {
		t.Helper()
		c := t.TempDir()
		copyTree(t, dir, c)
		db, err := badger.Open(badger.DefaultOptions(filepath.Join(c, "entries")).WithLogger(nil).WithSyncWrites(true))
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(txn *badger.Txn) error {
			raw, err := getValue(txn, entryKey(seq))
			if err != nil {
				return err
			}
			return txn.Set(entryKey(seq), purgedValue(leaf(storedLeaf(raw)), by))
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	same := func(h [32]byte) [32]byte { return h }
	changed := func(h [32]byte) [32]byte { h[0] ^= 1; return h }
	tests := []struct {
		name string
		dir  string
		seq  int64
	}{
		{"unlisted entry, right hash", forge(50, same, by), 50},
		{"marker naming a non-purge event", forge(60, same, 3), 60},
		{"listed entry, wrong hash, the chain checks it", forge(19, changed, by), 19},
		// Inside a purged run only the tree binds the hashes: the stored
		// nodes, and the checkpoints' roots, no longer match.
		{"listed entry, wrong hash, only the tree checks it", forge(15, changed, by), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(ctx, Options{Dir: tt.dir, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			r, err := l.Verify(ctx, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || r.Problems[0].Seq != tt.seq || (tt.seq < 0 && !strings.Contains(r.Problems[0].Message, "entries 0-15")) {
				t.Fatalf("problems %v, want the first naming entry %d", r.Problems, tt.seq)
			}
		})
	}
}

func waitCheckpoint(t *testing.T, l *Ledger, size uint64) *Checkpoint {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := l.LatestCheckpoint(context.Background())
		if err == nil && c != nil && c.Size >= size && !c.Pending() {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no timestamped checkpoint of %d entries", size)
	return nil
}

func findKind(t *testing.T, l *Ledger, k Kind) uint64 {
	t.Helper()
	page, err := l.Find(context.Background(), Query{Kind: k, Limit: 1})
	if err != nil || len(page.Entries) == 0 {
		t.Fatalf("no %s entry: %v", k, err)
	}
	return page.Entries[0].Seq
}
