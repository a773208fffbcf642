package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// attempt is a delivery under way.
type attempt struct {
	e     *entry
	epoch uint64 // of its destination when it started
}

// Run delivers the queue until ctx is done or the Queue is closed. It hands
// each due item, message included, to deliver, up to Options.Workers at a
// time, oldest first, with a ctx that ends with Run's. When deliver returns:
//
//   - nil: the item is removed from the queue.
//   - an error wrapping a *PermanentError: Options.OnPermanent is called,
//     then the item is removed.
//   - any other error: Attempts, LastError and NextAttempt are updated and
//     saved, and the item waits for its backoff (see Options). If the
//     error wraps a *DestinationError, the item's destination is backed
//     off too, and its other items wait with it; otherwise the failure is
//     the item's alone and delays no other item.
//
// Delivery is at least once: the removal after a delivery is marked on
// disk without an fsync, so an operating system crash or a power loss may
// forget it, and Run then delivers the item again after the next Open (so
// does a crash between a delivery and its mark). deliver must therefore
// tolerate a repeated item, recognizing it by its ID; items taken back by
// Remove are the exception: they are never delivered again.
//
// An error returned because ctx ended counts as no attempt. Run looks for
// due items every Options.Poll, and at once after Enqueue, Kick,
// KickDestination and the end of each delivery. When ctx is done it waits
// for the deliveries under way and returns nil; when the Queue is closed it
// returns an error wrapping ErrClosed. Only one Run at a time may run on a
// Queue.
func (q *Queue) Run(ctx context.Context, deliver func(ctx context.Context, it Item) error) error {
	if deliver == nil {
		return errors.New("queue: run: nil delivery function")
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return fmt.Errorf("queue: run: %w", ErrClosed)
	case q.running:
		q.mu.Unlock()
		return errors.New("queue: run: already running")
	}
	q.running = true
	done := make(chan struct{})
	q.runStop, q.runDone = stop, done
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running, q.runStop, q.runDone = false, nil, nil
		q.mu.Unlock()
		close(done)
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	finished := make(chan struct{}, q.opts.Workers)
	free := q.opts.Workers
	ticker := time.NewTicker(q.opts.Poll)
	defer ticker.Stop()
	for {
		if ctx.Err() == nil {
			for _, a := range q.due(free) {
				free--
				wg.Add(1)
				go func() {
					defer wg.Done()
					q.try(ctx, a, deliver)
					finished <- struct{}{}
				}()
			}
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			q.mu.Lock()
			closed := q.closed
			q.mu.Unlock()
			if closed {
				return fmt.Errorf("queue: run: %w", ErrClosed)
			}
			return nil
		case <-finished:
			free++
		case <-q.wake:
		case <-ticker.C:
		}
	}
}

// due picks up to n due items, oldest first, and marks them in flight.
// An item is due when its NextAttempt and its destination's backoff have
// passed. A destination that is failing gets one delivery at a time, a
// probe: the due item with the fewest attempts, so that an item that keeps
// failing on its own does not hold its destination down.
func (q *Queue) due(n int) []attempt {
	if n <= 0 {
		return nil
	}
	now := q.opts.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	var cands []*entry
	probes := map[string]*entry{} // failing destination -> its probe
	// Times reckoned by a clock that has since gone back are not waited
	// for: an item never tried and not delayed on purpose is due at once,
	// and a backoff never reaches further than MaxBackoff.
	latest := now.Add(q.opts.MaxBackoff)
	for _, e := range q.entries {
		switch {
		case e.it.Attempts == 0 && !e.it.NextAttempt.After(e.it.Enqueued) && e.it.NextAttempt.After(now):
			e.it.NextAttempt = now
		case e.it.Attempts > 0 && e.it.NextAttempt.After(latest):
			e.it.NextAttempt = now
		}
		if e.inflight || e.it.NextAttempt.After(now) {
			continue
		}
		d := q.dests[e.it.Destination]
		if d != nil && d.until.After(latest) {
			d.until = now
		}
		if d != nil && d.until.After(now) {
			continue
		}
		if d != nil && d.failures > 0 {
			if d.inflight > 0 {
				continue
			}
			if p := probes[e.it.Destination]; p != nil {
				if c := cmp.Compare(e.it.Attempts, p.it.Attempts); c > 0 || c == 0 && compareItems(&e.it, &p.it) > 0 {
					continue
				}
			}
			probes[e.it.Destination] = e
		}
		cands = append(cands, e)
	}
	slices.SortFunc(cands, func(a, b *entry) int { return compareItems(&a.it, &b.it) })
	var out []attempt
	for _, e := range cands {
		if p, failing := probes[e.it.Destination]; failing && p != e {
			continue
		}
		d := q.dest(e.it.Destination)
		e.inflight = true
		d.inflight++
		out = append(out, attempt{e: e, epoch: d.epoch})
		if len(out) == n {
			break
		}
	}
	return out
}

// try makes one delivery attempt of a.
func (q *Queue) try(ctx context.Context, a attempt, deliver func(context.Context, Item) error) {
	it, err := q.load(ctx, a.e)
	if errors.Is(err, ErrNotFound) {
		q.release(a, false)
		return
	}
	if err != nil {
		q.failed(ctx, a, err, failedHere)
		return
	}
	derr := deliver(ctx, it)
	var perm *PermanentError
	switch {
	case derr == nil:
		if _, err := q.drop(ctx, a.e, markDone); err != nil {
			q.log.ErrorContext(ctx, "queue: delivered, but marking it done failed: it may be delivered again",
				"item", it.ID, "err", err)
		}
		q.release(a, true)
		q.log.DebugContext(ctx, "queue: delivered", "item", it.ID, "destination", it.Destination, "attempts", it.Attempts+1)
	case ctx.Err() != nil:
		// Run is stopping: not the destination's fault.
		q.release(a, false)
	case errors.As(derr, &perm):
		if q.opts.OnPermanent != nil {
			if err := q.opts.OnPermanent(ctx, it, derr); err != nil {
				q.failed(ctx, a, fmt.Errorf("permanent failure (%v), but OnPermanent failed: %w", derr, err), failedHere)
				return
			}
		}
		if _, err := q.drop(ctx, a.e, markDone); err != nil {
			q.log.ErrorContext(ctx, "queue: marking an undeliverable item done failed", "item", it.ID, "err", err)
		}
		q.release(a, false)
		q.log.WarnContext(ctx, "queue: undeliverable, removed", "item", it.ID, "destination", it.Destination,
			"attempts", it.Attempts+1, "err", derr)
	default:
		var de *DestinationError
		if errors.As(derr, &de) {
			q.failed(ctx, a, derr, unreachable)
		} else {
			q.failed(ctx, a, derr, answered)
		}
	}
}

// release ends attempt a. After a success, its destination is healthy
// again, and its waiting items due.
func (q *Queue) release(a attempt, success bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	a.e.inflight = false
	d := q.dest(a.e.it.Destination)
	d.inflight--
	if success {
		failing := d.failures > 0
		d.failures, d.until = 0, time.Time{}
		d.epoch++
		if failing {
			q.makeDue(a.e.it.Destination, q.opts.Now())
		}
	}
	if d.failures == 0 && d.inflight == 0 {
		delete(q.dests, a.e.it.Destination) // nothing to remember
	}
}

// failure says what a failed attempt tells of its destination.
type failure int

const (
	failedHere  failure = iota // in the queue (reading the item, OnPermanent): nothing
	answered                   // the destination answered: it is reachable
	unreachable                // the destination could not be reached
)

// failed records a temporary failure of attempt a: the item's Attempts,
// LastError and NextAttempt, saved in its state file, and, for a
// destination that could not be reached, when no other failure of it was
// recorded since a started, one more round of failures for the
// destination. A failure of the item alone leaves its destination as it
// is, or healthy again if it answered: one item's failures never delay
// another item.
func (q *Queue) failed(ctx context.Context, a attempt, err error, what failure) {
	now := q.opts.Now()
	msg := err.Error()
	if len(msg) > maxLastError {
		msg = strings.ToValidUTF8(msg[:maxLastError], "")
	}
	e := a.e
	q.mu.Lock()
	d := q.dest(e.it.Destination)
	switch {
	case what == unreachable && a.epoch == d.epoch:
		d.failures++
		d.epoch++
		d.until = now.Add(q.backoff(d.failures))
	case what == answered && d.failures > 0:
		// The destination answered: it is reachable again, and its
		// other items need not wait for this one.
		d.failures, d.until = 0, time.Time{}
		d.epoch++
		q.makeDue(e.it.Destination, now)
	}
	e.it.Attempts++
	e.it.LastError = msg
	e.it.NextAttempt = now.Add(q.backoff(e.it.Attempts))
	if d.until.After(e.it.NextAttempt) {
		e.it.NextAttempt = d.until
	}
	st := fileState{ID: e.it.ID, Batch: e.b.name, Attempts: e.it.Attempts, NextAttempt: e.it.NextAttempt.UTC(), LastError: msg}
	q.mu.Unlock()
	q.log.WarnContext(ctx, "queue: delivery failed, will retry", "item", st.ID, "destination", e.it.Destination,
		"attempts", st.Attempts, "next_attempt", st.NextAttempt, "err", msg)
	if err := q.saveState(e, st); err != nil {
		q.log.ErrorContext(ctx, "queue: cannot save the state of an item", "item", st.ID, "err", err)
	}
	q.release(a, false)
}

// backoff returns the wait after n failures: MinBackoff doubled n-1 times,
// at most MaxBackoff.
func (q *Queue) backoff(n int) time.Duration {
	d := q.opts.MinBackoff
	for i := 1; i < n && d < q.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, q.opts.MaxBackoff)
}

// saveState writes the state file of e, unless e is gone. The file is
// fsynced but the directory is not: losing the latest state to a power
// failure only makes an attempt come sooner.
func (q *Queue) saveState(e *entry, st fileState) error {
	e.fileMu.Lock()
	defer e.fileMu.Unlock()
	q.mu.Lock()
	gone := e.gone
	q.mu.Unlock()
	if gone {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	p, err := q.writeTemp(q.tmp, "*.state.tmp", b)
	if err != nil {
		return err
	}
	e.hasState = true
	if err := os.Rename(p, filepath.Join(q.items, fileName(st.ID, stateSuffix))); err != nil {
		os.Remove(p)
		return err
	}
	return nil
}
