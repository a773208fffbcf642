package ledger

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custode/custode/tsa"
)

// failingStamper fails while down is set.
type failingStamper struct {
	tsa.Stamper
	down atomic.Bool
}

func (s *failingStamper) Timestamp(ctx context.Context, digest []byte) ([]byte, error) {
	if s.down.Load() {
		return nil, errors.New("the TSA is down (test)")
	}
	return s.Stamper.Timestamp(ctx, digest)
}

// TestFirstTimestampedCheckpoint: the first checkpoint of an entry is the
// earliest timestamped one that covers it, a pending one is skipped until
// its token comes, and the consistency proof from it to the newest
// verifies.
func TestFirstTimestampedCheckpoint(t *testing.T) {
	ctx := context.Background()
	st := &failingStamper{Stamper: testAuthority(t, nil)}
	l := openTest(t, t.TempDir(), testCheckpoints(t, st))
	defer l.Close()

	if _, err := l.FirstTimestampedCheckpoint(ctx, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty ledger: %v, want ErrNotFound", err)
	}
	if _, err := l.Append(ctx, pecEvent(0), pecEvent(1), pecEvent(2)); err != nil {
		t.Fatal(err)
	}
	a := waitCheckpoint(t, l, 3)

	// The TSA fails: the next checkpoint stays pending.
	st.down.Store(true)
	seqs, err := l.Append(ctx, pecEvent(3), pecEvent(4))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a pending checkpoint", func() bool {
		c, err := l.LatestCheckpoint(ctx)
		return err == nil && c.Size > seqs[1] && c.Pending()
	})
	if _, err := l.FirstTimestampedCheckpoint(ctx, seqs[1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("entry covered only by a pending checkpoint: %v, want ErrNotFound", err)
	}
	if c, err := l.NewestTimestampedCheckpoint(ctx); err != nil || c.Size != a.Size {
		t.Errorf("newest timestamped while one is pending: %v, %v; want size %d", c, err, a.Size)
	}
	for seq := uint64(0); seq < a.Size; seq++ {
		c, err := l.FirstTimestampedCheckpoint(ctx, seq)
		if err != nil || c.Size != a.Size {
			t.Fatalf("entry %d: %v, %v; want the checkpoint of %d", seq, c, err, a.Size)
		}
	}

	st.down.Store(false)
	b := waitCheckpoint(t, l, seqs[1]+1)
	all, err := l.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(0); seq < b.Size; seq++ {
		var want *Checkpoint
		for _, c := range all {
			if c.Size > seq && !c.Pending() {
				want = c
				break
			}
		}
		got, err := l.FirstTimestampedCheckpoint(ctx, seq)
		if err != nil {
			t.Fatalf("entry %d: %v", seq, err)
		}
		if want == nil || got.Size != want.Size || string(got.Token) != string(want.Token) || string(got.Body) != string(want.Body) {
			t.Fatalf("entry %d: first checkpoint %d, want %v", seq, got.Size, want)
		}
		if seq < a.Size && got.Size != a.Size {
			t.Errorf("entry %d: first checkpoint %d, want %d", seq, got.Size, a.Size)
		}
	}
	newest, err := l.NewestTimestampedCheckpoint(ctx)
	if err != nil || newest.Pending() || newest.Size < b.Size {
		t.Fatalf("newest timestamped: %v, %v", newest, err)
	}
	if _, err := l.FirstTimestampedCheckpoint(ctx, newest.Size+100); !errors.Is(err, ErrNotFound) {
		t.Errorf("entry beyond every checkpoint: %v, want ErrNotFound", err)
	}

	// The consistency proof from the first checkpoint to the newest.
	for _, first := range []*Checkpoint{a, b, newest} {
		p, err := l.ConsistencyProof(ctx, first.Size, newest.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, newest.Size, p, first.Root[:], newest.Root[:]); err != nil {
			t.Errorf("consistency %d→%d: %v", first.Size, newest.Size, err)
		}
		if first.Size < newest.Size {
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, newest.Size, p, newest.Root[:], newest.Root[:]); err == nil {
				t.Errorf("consistency %d→%d verifies with the wrong first root", first.Size, newest.Size)
			}
		}
	}
	if got := l.CheckpointInterval(); got != testCheckpoints(t, nil).Interval {
		t.Errorf("CheckpointInterval = %v", got)
	}
}
