package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"slices"

	"github.com/custode/custode/ledger/driver"
)

// iterPage is how many items an iterator reads from the store in one read
// transaction. No transaction is held while the caller's loop body runs, so
// a consumer may append, record a seal or take its time between items.
const iterPage = 64

// paged yields the items of successive pages from pos on. page reads the
// page at pos and returns its items, the position after it and whether
// more may follow; the sequence ends after a page that says none do, or at
// the first error (yielded once, with the zero item).
func paged[T any](ctx context.Context, pos uint64, page func(pos uint64) ([]T, uint64, bool, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		for {
			if err := ctx.Err(); err != nil {
				yield(zero, err)
				return
			}
			items, next, more, err := page(pos)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if !more || next <= pos {
				return
			}
			pos = next
		}
	}
}

// CheckpointsFrom returns the checkpoints of size at least size, oldest
// first, as they are when each page of them is read: a checkpoint made
// while the loop runs may be yielded. It seeks to size and decodes only
// what the loop consumes (in pages of a few dozen), so reading the new
// checkpoints of a years-old ledger costs what reading them from a new one
// does. Iteration stops at the first error, which is yielded.
func (l *Ledger) CheckpointsFrom(ctx context.Context, size uint64) iter.Seq2[*Checkpoint, error] {
	return paged(ctx, size, func(pos uint64) ([]*Checkpoint, uint64, bool, error) {
		var out []*Checkpoint
		err := l.db.View(ctx, func(txn driver.Reader) error {
			for kv, err := range txn.Scan([]byte{prefixCheckpoint}, checkpointKey(pos), false) {
				if err != nil {
					return err
				}
				c, err := decodeCheckpointRecord(kv.Value)
				if err != nil {
					return fmt.Errorf("at key %x: %w", kv.Key, err)
				}
				if out = append(out, c); len(out) == iterPage {
					break
				}
			}
			return nil
		})
		if err != nil {
			return nil, 0, false, fmt.Errorf("ledger: checkpoints from %d: %w", pos, err)
		}
		if len(out) == 0 {
			return nil, pos, false, nil
		}
		return out, out[len(out)-1].Size + 1, len(out) == iterPage, nil
	})
}

// SealsFrom returns the recorded seals that end after position from (the
// seal covering entry from, if any, then every later one), in order.
// Iteration stops at the first error, which is yielded.
func (l *Ledger) SealsFrom(ctx context.Context, from uint64) iter.Seq2[Seal, error] {
	return paged(ctx, from+1, func(pos uint64) ([]Seal, uint64, bool, error) {
		var out []Seal
		err := l.db.View(ctx, func(txn driver.Reader) error {
			for kv, err := range txn.Scan([]byte{prefixSeal}, sealKey(pos), false) {
				if err != nil {
					return err
				}
				var s Seal
				if err := json.Unmarshal(kv.Value, &s); err != nil {
					return fmt.Errorf("seal record %x: %w", kv.Key, err)
				}
				if k := kv.Key; len(k) != 9 || binary.BigEndian.Uint64(k[1:]) != s.To {
					return fmt.Errorf("seal record %x says it ends at %d", k, s.To)
				}
				if out = append(out, s); len(out) == iterPage {
					break
				}
			}
			return nil
		})
		if err != nil {
			return nil, 0, false, fmt.Errorf("ledger: seals from %d: %w", pos, err)
		}
		if len(out) == 0 {
			return nil, pos, false, nil
		}
		return out, out[len(out)-1].To + 1, len(out) == iterPage, nil
	})
}

// EntriesFrom returns the entries from seq to the durable head, in order,
// skipping entries purged past retention (they have no content left); the
// head is read again for each page, so entries appended while the loop runs
// are yielded too. It reads only from seq on. A missing entry is an error
// (a *GapError); iteration stops at the first error, which is yielded.
func (l *Ledger) EntriesFrom(ctx context.Context, seq uint64) iter.Seq2[*Entry, error] {
	return paged(ctx, seq, func(pos uint64) ([]*Entry, uint64, bool, error) {
		size := l.Head().Size
		if pos >= size {
			return nil, pos, false, nil
		}
		to := min(size, pos+iterPage)
		out := make([]*Entry, 0, to-pos)
		err := l.scanEntries(ctx, pos, to, func(seq uint64, raw []byte) error {
			if _, _, ok := parsePurged(raw); ok {
				return nil
			}
			e, err := DecodeEntry(raw)
			if err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
			if e.Seq != seq {
				return fmt.Errorf("entry %d: stored entry says seq %d", seq, e.Seq)
			}
			out = append(out, e)
			return nil
		})
		if err != nil {
			return nil, 0, false, fmt.Errorf("ledger: entries from %d: %w", pos, err)
		}
		return out, to, true, nil
	})
}

// FindAll returns every entry q selects, reading the pages of find (a
// Ledger's Find, or anything that pages the same way) one after another
// from q.Cursor on: the one paging loop for every consumer of a query.
// q.Limit is the page size. Iteration stops at the first error, which is
// yielded.
func FindAll(ctx context.Context, find func(context.Context, Query) (*Page, error), q Query) iter.Seq2[*Entry, error] {
	return func(yield func(*Entry, error) bool) {
		for {
			page, err := find(ctx, q)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, e := range page.Entries {
				if !yield(e, nil) {
					return
				}
			}
			if page.Next == "" || page.Next == q.Cursor {
				return
			}
			q.Cursor = page.Next
		}
	}
}

// checkpointsBack calls fn with the checkpoints from the newest back, until
// fn returns false.
func (l *Ledger) checkpointsBack(ctx context.Context, fn func(c *Checkpoint) bool) error {
	return l.db.View(ctx, func(txn driver.Reader) error {
		for kv, err := range txn.Scan([]byte{prefixCheckpoint}, nil, true) {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			c, err := decodeCheckpointRecord(kv.Value)
			if err != nil {
				return fmt.Errorf("at key %x: %w", kv.Key, err)
			}
			if !fn(c) {
				return nil
			}
		}
		return nil
	})
}

// LatestTimestamped returns the newest checkpoint with a timestamp token,
// or ErrNotFound: it is NewestTimestampedCheckpoint, which reads back from
// the newest checkpoint over the few still pending, not the whole history.
// Since checkpoints grow, it covers entry seq if any timestamped checkpoint
// does (Size > seq).
func (l *Ledger) LatestTimestamped(ctx context.Context) (*Checkpoint, error) {
	return l.NewestTimestampedCheckpoint(ctx)
}

// pendingTail returns the checkpoints still waiting for a timestamp token,
// oldest first, and the newest checkpoint (nil if there is none). Tokens
// are added oldest first and a new checkpoint is the newest, so the pending
// checkpoints are the newest ones: it reads back from the newest to the
// first with a token, not the whole history.
func (l *Ledger) pendingTail(ctx context.Context) ([]*Checkpoint, *Checkpoint, error) {
	var pending []*Checkpoint
	var last *Checkpoint
	err := l.checkpointsBack(ctx, func(c *Checkpoint) bool {
		if last == nil {
			last = c
		}
		if !c.Pending() {
			return false
		}
		pending = append(pending, c)
		return true
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: pending checkpoints: %w", err)
	}
	slices.Reverse(pending)
	return pending, last, nil
}
