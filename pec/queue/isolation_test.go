package queue

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestItemFailureDelaysNoOther checks that the temporary failures of one
// item (a poison item of the "local" destination, say) never delay the
// other items of its destination: only a DestinationError backs off a
// destination. The clock never moves, so an item that waited for any
// backoff would never be delivered.
func TestItemFailureDelaysNoOther(t *testing.T) {
	tests := []struct {
		name   string
		fail   error
		wantOK bool // whether the healthy items get through before the clock moves
	}{
		{"item failure", errors.New("451 local error"), true},
		{"wrapped item failure", errors.Join(errors.New("x"), errors.New("452 mailbox full")), true},
		{"destination unreachable", &DestinationError{Err: errors.New("connection refused")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff, Workers: 2})
			var mu sync.Mutex
			var delivered []string
			unreachable := true
			q.run(t, func(ctx context.Context, it Item) error {
				mu.Lock()
				defer mu.Unlock()
				if it.ID == "poison1" || it.ID == "poison2" {
					return tt.fail
				}
				if _, ok := tt.fail.(*DestinationError); ok && unreachable {
					return tt.fail
				}
				delivered = append(delivered, it.ID)
				return nil
			})
			if err := q.Enqueue(t.Context(), item("poison1", "local", 5), item("poison2", "local", 5)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the poison's first failures", func() bool {
				its := itemsByID(t, q)
				return its["poison1"].Attempts >= 1 && its["poison2"].Attempts >= 1
			})
			var ids []string
			for _, id := range []string{"ok1", "ok2", "ok3"} {
				if err := q.Enqueue(t.Context(), item(id, "local", 5)); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			if !tt.wantOK {
				// The destination is down: its items wait with it, until
				// it is known to be back.
				mu.Lock()
				unreachable = false
				mu.Unlock()
				q.KickDestination("local")
			}
			waitFor(t, "the healthy items", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(delivered) == len(ids)
			})
			mu.Lock()
			got := slices.Clone(delivered)
			mu.Unlock()
			slices.Sort(got)
			if !slices.Equal(got, ids) {
				t.Fatalf("delivered %v, want %v", got, ids)
			}
			if its := itemsByID(t, q); its["poison1"].ID == "" || its["poison2"].ID == "" {
				t.Fatalf("the poison items are gone: %v", its)
			}
		})
	}
}

// TestAnswerEndsDestinationBackoff checks that a destination in backoff
// is healthy again as soon as it answers, even with a failure of the
// probed item, and stays in backoff when the queue itself fails.
func TestAnswerEndsDestinationBackoff(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  error
		healthy bool
	}{
		{"item refused", errors.New("452 mailbox full"), true},
		{"unreachable again", &DestinationError{Err: errors.New("connection refused")}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			q := openTest(t, t.TempDir(), Options{Now: clock.Now, MinBackoff: time.Minute, MaxBackoff: time.Hour, Workers: 1})
			var calls atomic.Int32
			q.run(t, func(ctx context.Context, it Item) error {
				if calls.Add(1) == 1 {
					return &DestinationError{Err: errors.New("connection refused")}
				}
				return tt.answer
			})
			if err := q.Enqueue(t.Context(), item("probe", "b.example", 5)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the destination down", func() bool { return itemsByID(t, q)["probe"].Attempts == 1 })
			clock.Advance(time.Minute)
			waitFor(t, "the probe's answer", func() bool { return itemsByID(t, q)["probe"].Attempts == 2 })
			q.mu.Lock()
			d := q.dests["b.example"]
			healthy := d == nil || d.failures == 0
			q.mu.Unlock()
			if healthy != tt.healthy {
				t.Fatalf("destination healthy: %v, want %v", healthy, tt.healthy)
			}
		})
	}
}
