package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
)

func appendN(t testing.TB, l *Ledger, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; {
		batch := make([]Event, 0, 64)
		for ; i < from+n && len(batch) < 64; i++ {
			batch = append(batch, pecEvent(i))
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendConcurrentIsContinuous(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	const workers, each = 32, 50
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				n := 1 + i%3
				evs := make([]Event, n)
				for j := range evs {
					evs[j] = pecEvent(w*1000 + i*3 + j)
				}
				seqs, err := l.Append(context.Background(), evs...)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 1; j < len(seqs); j++ {
					if seqs[j] != seqs[j-1]+1 {
						t.Errorf("one call's seqs not consecutive: %v", seqs)
					}
				}
				mu.Lock()
				for _, s := range seqs {
					if seen[s] {
						t.Errorf("seq %d returned twice", s)
					}
					seen[s] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	size := l.Head().Size
	if int(size) != len(seen) {
		t.Fatalf("head %d, %d seqs returned", size, len(seen))
	}
	for s := uint64(0); s < size; s++ {
		if !seen[s] {
			t.Fatalf("seq %d never returned", s)
		}
	}
	r, err := l.Verify(context.Background(), VerifyOptions{})
	if err != nil || !r.OK() {
		t.Fatalf("verify: %v %v", err, r.Problems)
	}
}

func TestAppendRejectsInvalidEvent(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	bad := pecEvent(0)
	bad.Mittente = ""
	_, err := l.Append(context.Background(), pecEvent(1), bad)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "mittente" {
		t.Fatalf("err = %v, want a FieldError naming mittente", err)
	}
	if h := l.Head(); h.Size != 0 {
		t.Errorf("a failed call appended %d entries", h.Size)
	}
}

func TestReopenKeepsHeadAndTree(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, nil)
	appendN(t, l, 0, 1000)
	h1 := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := Open(context.Background(), Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if h2 := ro.Head(); h2 != h1 {
		t.Fatalf("head after a read-only open %+v, want %+v", h2, h1)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, nil)
	defer l.Close()
	if h2 := l.Head(); h2 != h1 {
		t.Fatalf("head after reopen %+v, want %+v", h2, h1)
	}
	appendN(t, l, 1000, 37)
	root, err := l.RootAt(context.Background(), 1037)
	if err != nil {
		t.Fatal(err)
	}
	if root != l.Head().Root {
		t.Fatal("stored tree and in-memory tree disagree after reopen")
	}
	if want := referenceRoot(t, l, 1037); root != want {
		t.Fatal("root differs from the RFC 6962 reference")
	}
}

func TestFind(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	appendN(t, l, 0, 400)
	ctx := context.Background()
	tests := []struct {
		name string
		q    Query
		want int
	}{
		{"identificativo", Query{Identificativo: pecEvent(8).Identificativo}, 4},
		{"related", Query{Identificativo: pecEvent(9).Related[0]}, 1},
		{"client message id", Query{ClientMessageID: "<3.client@mua.example>"}, 4},
		{"mailbox", Query{Mailbox: "MITTENTE5@pec.test.example"}, 5},
		{"mailbox and time", Query{Mailbox: "ufficio@example.com", From: baseTime.Add(100 * time.Millisecond), To: baseTime.Add(200 * time.Millisecond)}, 100},
		{"kind", Query{Kind: KindPresaInCarico}, 100},
		{"kind and mailbox", Query{Kind: KindAccettazione, Mailbox: "dest0@pec.altro.example"}, 2},
		{"none", Query{Identificativo: "nope@x"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []*Entry
			q := tt.q
			q.Limit = 7
			for {
				p, err := l.Find(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p.Entries...)
				if p.Next == "" {
					break
				}
				q.Cursor = p.Next
			}
			if len(got) != tt.want {
				t.Fatalf("%d entries, want %d", len(got), tt.want)
			}
			for _, e := range got {
				if !tt.q.Matches(e) {
					t.Errorf("entry %d does not match", e.Seq)
				}
			}
		})
	}
	if _, err := l.Find(ctx, Query{}); err == nil {
		t.Error("empty query accepted")
	}
	if _, err := l.Find(ctx, Query{Kind: KindAccettazione, Cursor: "garbage!"}); err == nil {
		t.Error("bad cursor accepted")
	}
}

// The reference below follows RFC 6962 §2.1 literally, with crypto/sha256
// only: MTH, PATH and PROOF as the RFC defines them.

func refLeaf(raw []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, raw...))
	return h[:]
}

func refNode(l, r []byte) []byte {
	h := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return h[:]
}

func largestPow2Below(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func refMTH(d [][]byte) []byte {
	switch len(d) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		return refLeaf(d[0])
	}
	k := largestPow2Below(len(d))
	return refNode(refMTH(d[:k]), refMTH(d[k:]))
}

func refPath(m int, d [][]byte) [][]byte {
	if len(d) <= 1 {
		return nil
	}
	k := largestPow2Below(len(d))
	if m < k {
		return append(refPath(m, d[:k]), refMTH(d[k:]))
	}
	return append(refPath(m-k, d[k:]), refMTH(d[:k]))
}

func refSubproof(m int, d [][]byte, b bool) [][]byte {
	n := len(d)
	if m == n {
		if b {
			return nil
		}
		return [][]byte{refMTH(d)}
	}
	k := largestPow2Below(n)
	if m <= k {
		return append(refSubproof(m, d[:k], b), refMTH(d[k:]))
	}
	return append(refSubproof(m-k, d[k:], false), refMTH(d[:k]))
}

func rawEntries(t testing.TB, l *Ledger, n uint64) [][]byte {
	t.Helper()
	var out [][]byte
	err := l.scanEntries(context.Background(), 0, n, func(_ uint64, raw []byte) error {
		out = append(out, raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func referenceRoot(t testing.TB, l *Ledger, n uint64) [32]byte {
	return [32]byte(refMTH(rawEntries(t, l, n)))
}

func TestProofsMatchRFC6962(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	const n = 1500
	appendN(t, l, 0, n)
	ctx := context.Background()
	d := rawEntries(t, l, n)
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 2, 3, 15, 16, 17, 255, 256, 257, 1024, 1499, 1500}
	for i := 0; i < 20; i++ {
		sizes = append(sizes, 1+rng.IntN(n))
	}
	for _, size := range sizes {
		root, err := l.RootAt(ctx, uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if want := refMTH(d[:size]); !bytes.Equal(root[:], want) {
			t.Fatalf("root at %d differs from the reference", size)
		}
		idxs := []int{0, size - 1, rng.IntN(size)}
		batch, err := l.InclusionProofs(ctx, []uint64{uint64(idxs[0]), uint64(idxs[1]), uint64(idxs[2])}, uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		for k, idx := range idxs {
			p, err := l.InclusionProof(ctx, uint64(idx), uint64(size))
			if err != nil {
				t.Fatal(err)
			}
			if want := refPath(idx, d[:size]); !equalProofs(p, want) || !equalProofs(batch[k], want) {
				t.Fatalf("inclusion proof %d@%d differs from RFC 6962 PATH", idx, size)
			}
			if err := proof.VerifyInclusion(hasher, uint64(idx), uint64(size), refLeaf(d[idx]), p, root[:]); err != nil {
				t.Fatalf("inclusion %d@%d: %v", idx, size, err)
			}
		}
		size1 := 1 + rng.IntN(size)
		p, err := l.ConsistencyProof(ctx, uint64(size1), uint64(size))
		if err != nil {
			t.Fatal(err)
		}
		if want := refSubproof(size1, d[:size], true); !equalProofs(p, want) {
			t.Fatalf("consistency proof %d→%d differs from RFC 6962 PROOF", size1, size)
		}
		root1 := refMTH(d[:size1])
		if err := proof.VerifyConsistency(hasher, uint64(size1), uint64(size), p, root1, root[:]); err != nil {
			t.Fatalf("consistency %d→%d: %v", size1, size, err)
		}
	}
	if _, err := l.InclusionProof(ctx, 5, n+1); err == nil {
		t.Error("proof beyond the head accepted")
	}
}

func equalProofs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// flipEntryByte changes one byte of stored entry seq in the store at dir,
// as an operator with access to the store could, and returns the offset.
func flipEntryByte(t testing.TB, dir string, seq uint64, rng *rand.Rand) int {
	t.Helper()
	pos := -1
	alterEntry(t, dir, seq, func(raw []byte) []byte {
		pos = rng.IntN(len(raw))
		raw[pos] ^= byte(1 + rng.IntN(255))
		return raw
	})
	return pos
}

// copyTree copies directory src into dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			os.MkdirAll(filepath.Join(dst, e.Name()), 0o755)
			copyTree(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := writeSparse(filepath.Join(dst, e.Name()), b); err != nil {
			t.Fatal(err)
		}
	}
}

// writeSparse writes b to a new file at path, leaving holes where b has
// blocks of zeros: the file reads back as b, but the journal segment's
// 64 MiB of zeros written ahead of need cost no writes (a copy per trial
// made TestVerifyNamesTheAlteredEntry spend a minute writing zeros).
func writeSparse(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	const block = 64 << 10
	for off := 0; off < len(b) && err == nil; off += block {
		chunk := b[off:min(off+block, len(b))]
		if !allZero(chunk) {
			_, err = f.WriteAt(chunk, int64(off))
		}
	}
	if err == nil {
		err = f.Truncate(int64(len(b)))
	}
	return errors.Join(err, f.Close())
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestVerifyNamesTheAlteredEntry(t *testing.T) {
	dir := t.TempDir()
	l := openLogicTest(t, dir, nil)
	const n = 300
	appendN(t, l, 0, n)
	l.Close()
	// The trials are independent, each on its own copy: they run in
	// parallel, each with its own random source.
	for trial := range 60 {
		rng := rand.New(rand.NewPCG(3, uint64(trial)))
		seq := uint64(rng.IntN(n))
		switch trial {
		case 0:
			seq = 0
		case 1:
			seq = n - 1
		}
		t.Run(fmt.Sprintf("entry %d", seq), func(t *testing.T) {
			t.Parallel()
			copyDir := t.TempDir()
			copyLedger(t, dir, copyDir)
			pos := flipEntryByte(t, copyDir, seq, rng)
			l, err := Open(context.Background(), Options{Dir: copyDir, ReadOnly: true, Driver: storeFor(t, copyDir)})
			if err != nil {
				t.Fatal(err)
			}
			r, err := l.Verify(context.Background(), VerifyOptions{})
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() {
				t.Fatalf("entry %d byte %d: verify passed after a byte flip", seq, pos)
			}
			if got := r.Problems[0].Seq; got != int64(seq) {
				t.Fatalf("entry %d byte %d: first problem %v, want entry %d", seq, pos, r.Problems[0], seq)
			}
		})
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	appendN(t, l, 0, 10)
	l.Close()
	for i := 0; i < 100; i++ {
		if _, err := l.Append(context.Background(), pecEvent(i)); !errors.Is(err, ErrClosed) {
			t.Fatalf("append after close: %v, want ErrClosed", err)
		}
	}
}
