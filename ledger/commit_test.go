package ledger

import (
	"context"
	"errors"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// TestFailedGroupCommitCause fails the journal write of one group while the
// next group is open behind it, as a disk that fills while the first
// journal segment is written does. The appends of both groups are refused
// with the cause, so that a caller can tell a full disk (errors.Is
// syscall.ENOSPC) from a fault; the ledger holds none of their entries and
// takes the next append.
func TestFailedGroupCommitCause(t *testing.T) {
	l := openTest(t, t.TempDir(), nil)
	defer l.Close()
	ctx := context.Background()
	// The first record starts the first segment from the spare, which
	// this test hands over when both groups are in place.
	spare := make(chan spareResult)
	l.jnl.spare = spare
	waitFor := func(cond func() bool) {
		for {
			l.seqMu.Lock()
			ok := cond()
			l.seqMu.Unlock()
			if ok {
				return
			}
			runtime.Gosched()
		}
	}
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := l.Append(ctx, pecEvent(0)); errA <- err }()
	// A's group is sealed: the committer waits for the spare.
	waitFor(func() bool { return l.size == 1 && l.open == nil })
	go func() { _, err := l.Append(ctx, pecEvent(1), pecEvent(2)); errB <- err }()
	// B's group is open, built on A's.
	waitFor(func() bool { return l.open != nil && l.size == 3 })
	spare <- spareResult{err: &os.PathError{Op: "write", Path: spareName, Err: syscall.ENOSPC}}

	for name, ch := range map[string]chan error{"the failed group": errA, "the group behind it": errB} {
		err := <-ch
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("append in %s: %v, want an error wrapping ENOSPC", name, err)
		}
	}
	seqs, err := l.Append(ctx, pecEvent(3))
	if err != nil {
		t.Fatalf("append after the failure: %v", err)
	}
	if len(seqs) != 1 || seqs[0] != 0 {
		t.Errorf("append after the failure got %v, want [0]: the refused entries must not stay", seqs)
	}
	if h := l.Head(); h.Size != 1 {
		t.Errorf("head size %d after one acknowledged entry", h.Size)
	}
}
