package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stampedLedger returns the directory of a closed ledger of 300 PEC events
// whose checkpoints are all signed and timestamped.
func stampedLedger(t *testing.T) string {
	t.Helper()
	srv := startTSA(t)
	dir := t.TempDir()
	l := openLogicTest(t, dir, testCheckpoints(t, srv.client()))
	appendN(t, l, 0, 300)
	ctx := context.Background()
	waitFor(t, "stamped checkpoints", func() bool {
		c, err := l.LatestCheckpoint(ctx)
		return err == nil && c.Size >= 300 && l.PendingTimestamps() == 0
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A checkpoint entry is checked against the signed checkpoints: one made
// by hand with an arbitrary size and root fails verify, named by its seq
// (issue 16, finding 12). Before, only entries' hashes were checked, and
// such an entry verified.
func TestVerifyChecksCheckpointEntries(t *testing.T) {
	dir := stampedLedger(t)
	ctx := context.Background()
	d := testPKI(t)
	opts := VerifyOptions{Roots: d.Roots(), TSARoots: d.Roots(), RequireTimestamps: true}

	l, err := Open(ctx, Options{Dir: dir, ReadOnly: true, Driver: storeFor(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	cps, err := l.Checkpoints(ctx)
	if err != nil || len(cps) < 2 {
		t.Fatalf("checkpoints: %d, %v", len(cps), err)
	}
	r, err := l.Verify(ctx, opts)
	if err != nil || !r.OK() {
		t.Fatalf("the genuine ledger: %v %+v", err, r)
	}
	signed := map[uint64]bool{}
	for _, c := range cps {
		signed[c.Size] = true
	}
	var unsigned uint64 = 7
	for signed[unsigned] {
		unsigned++
	}
	unsignedRoot, err := l.RootAt(ctx, unsigned)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	real := cps[0]
	realSum := real.Hash()
	details := func(size uint64, root []byte, prev [32]byte) map[string]string {
		return map[string]string{
			"tree_size":       strconv.FormatUint(size, 10),
			"root":            hex.EncodeToString(root),
			"prev_checkpoint": hex.EncodeToString(prev[:]),
		}
	}
	arbitrary := sha256.Sum256([]byte("arbitrary"))
	cases := []struct {
		name string
		ev   Event
		want string // "" for an entry that must verify
	}{
		{"arbitrary size and root", Event{Kind: KindCheckpoint, Details: details(5, arbitrary[:], [32]byte{}), SHA256: arbitrary[:]},
			"not the tree's at that size"},
		{"signed size, another root", Event{Kind: KindCheckpoint, Details: details(real.Size, arbitrary[:], real.Prev), SHA256: realSum[:]},
			"is not the signed checkpoint"},
		{"signed size and root, another body", Event{Kind: KindCheckpoint, Details: details(real.Size, real.Root[:], real.Prev), SHA256: arbitrary[:]},
			"sha256"},
		{"signed size and root, another prev", Event{Kind: KindCheckpoint, Details: details(real.Size, real.Root[:], arbitrary), SHA256: realSum[:]},
			"prev_checkpoint"},
		{"beyond itself", Event{Kind: KindCheckpoint, Details: details(100000, arbitrary[:], [32]byte{})},
			"covers entries before its own record"},
		{"size not a number", Event{Kind: KindCheckpoint, Details: map[string]string{"tree_size": "many", "root": hex.EncodeToString(arbitrary[:])}},
			"tree_size"},
		{"no root", Event{Kind: KindCheckpoint, Details: map[string]string{"tree_size": "5"}},
			"root"},
		{"copy of a signed one", Event{Kind: KindCheckpoint, Details: details(real.Size, real.Root[:], real.Prev), SHA256: realSum[:]},
			""},
		{"the tree at an unsigned size", Event{Kind: KindCheckpoint, Details: details(unsigned, unsignedRoot[:], [32]byte{})},
			""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := t.TempDir()
			copyLedger(t, dir, cp)
			l := openLogicTest(t, cp, nil)
			c.ev.Time = time.Now()
			seqs, err := l.Append(ctx, c.ev)
			if err != nil {
				t.Fatal(err)
			}
			r, err := l.Verify(ctx, opts)
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "" {
				if !r.OK() {
					t.Fatalf("want OK, got %v", r.Problems)
				}
				return
			}
			if r.OK() {
				t.Fatalf("a hand-made checkpoint entry %d verified", seqs[0])
			}
			p := r.Problems[0]
			if p.Seq != int64(seqs[0]) || !strings.Contains(p.Message, c.want) || !strings.Contains(p.String(), "entry "+strconv.FormatUint(seqs[0], 10)) {
				t.Fatalf("want a problem in entry %d with %q, got %v", seqs[0], c.want, r.Problems)
			}
		})
	}
}

// The ledger refuses an event, not marked imported, dated before its
// newest timestamped checkpoint by more than MaxEventDelay; an imported
// one, or one within the bound, is taken (issue 17, finding 4). Before, any
// time was taken.
func TestAppendRefusesLateEvents(t *testing.T) {
	srv := startTSA(t)
	dir := t.TempDir()
	ctx := context.Background()
	const maxDelay = time.Minute
	open := func() *Ledger {
		l, err := Open(ctx, Options{Dir: dir, Checkpoints: testCheckpoints(t, srv.client()), MaxEventDelay: maxDelay})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	at := func(i int, t time.Time) Event {
		ev := pecEvent(i)
		ev.Time = t
		return ev
	}
	l := open()
	if _, err := l.Append(ctx, at(0, time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a stamped checkpoint", func() bool {
		c, err := l.LatestCheckpoint(ctx)
		return err == nil && !c.Pending() && l.PendingTimestamps() == 0
	})
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late := at(1, cp.Time.Add(-10*maxDelay))
	check := func(l *Ledger) {
		t.Helper()
		_, err := l.Append(ctx, late)
		var le *LateEventError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "riferimento_temporale") || !strings.Contains(err.Error(), DetailImported) {
			t.Fatalf("an event dated 10 minutes before a timestamped checkpoint: got %v, want a *LateEventError", err)
		}
		if le.Max != maxDelay || !le.Checkpoint.Equal(cp.Time) && le.Checkpoint.Before(cp.Time) {
			t.Fatalf("error %+v: want the bound %v and the checkpoint time %v or later", le, maxDelay, cp.Time)
		}
		// Within the bound, or imported: taken.
		if _, err := l.Append(ctx, at(2, time.Now().Add(-maxDelay/2))); err != nil {
			t.Fatalf("an event within the bound: %v", err)
		}
		imp := late
		imp.Details = map[string]string{DetailImported: time.Now().UTC().Format(timeLayout)}
		if _, err := l.Append(ctx, imp); err != nil {
			t.Fatalf("an imported event: %v", err)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart, the bound comes from the stored checkpoints.
	l = open()
	defer l.Close()
	check(l)
}

// An idle ledger's newest checkpoint is old: the bound counts from the
// ledger's clock too, so an event dated ten days back is refused even
// when no checkpoint has been made since (before, it was taken).
func TestAppendRefusesLateEventsOnIdleLedger(t *testing.T) {
	srv := startTSA(t)
	ctx := context.Background()
	opts := testCheckpoints(t, srv.client())
	later := 10 * 24 * time.Hour
	opts.Now = func() time.Time { return time.Now().Add(later) }
	l, err := Open(ctx, Options{Dir: t.TempDir(), Checkpoints: opts, MaxEventDelay: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ev := pecEvent(0)
	ev.Time = time.Now()
	if _, err := l.Append(ctx, ev); !errors.As(err, new(*LateEventError)) {
		t.Fatalf("an event ten days before the ledger's clock: got %v, want a *LateEventError", err)
	}
	ev.Time = time.Now().Add(later)
	if _, err := l.Append(ctx, ev); err != nil {
		t.Fatalf("an event dated by the ledger's clock: %v", err)
	}
}
