package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custode/custode/ledger/driver"
	"github.com/transparency-dev/merkle/compact"
)

// Segment returns entries [from, to) as a segment, with the checkpoint of
// size to, which must exist.
func (l *Ledger) Segment(ctx context.Context, from, to uint64) (*Segment, error) {
	if from >= to || to > l.Head().Size {
		return nil, fmt.Errorf("ledger: segment %d-%d: outside the ledger of %d entries", from, to, l.Head().Size)
	}
	s := &Segment{From: from, To: to}
	if err := l.waitApplied(ctx, to); err != nil {
		return nil, fmt.Errorf("ledger: segment %d-%d: %w", from, to, err)
	}
	err := l.db.View(ctx, func(txn driver.Reader) error {
		v, err := txn.Get(checkpointKey(to))
		if errors.Is(err, driver.ErrNotFound) {
			return fmt.Errorf("no checkpoint of size %d", to)
		}
		if err != nil {
			return err
		}
		if s.Checkpoint, err = decodeCheckpointRecord(v); err != nil {
			return err
		}
		for _, id := range compact.RangeNodes(0, from, nil) {
			h, err := l.subtreeHash(txn, id)
			if err != nil {
				return err
			}
			s.Start = append(s.Start, h)
		}
		return nil
	})
	if err == nil {
		err = l.scanEntries(ctx, from, to, func(seq uint64, raw []byte) error {
			if leaf, by, ok := parsePurged(raw); ok {
				return &PurgedError{Seq: seq, By: by, Leaf: leaf}
			}
			s.Entries = append(s.Entries, raw)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: segment %d-%d: %w", from, to, err)
	}
	return s, nil
}

// Seal records where a segment was archived.
type Seal struct {
	From        uint64    `json:"from"`
	To          uint64    `json:"to"`
	Key         string    `json:"key"`
	VersionID   string    `json:"version_id"`
	SHA256      string    `json:"sha256"` // hex, of the segment's bytes
	RetainUntil time.Time `json:"retain_until"`
	Sealed      time.Time `json:"sealed"`
}

const prefixSeal = 's' // s to(8) -> Seal JSON

func sealKey(to uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixSeal}, to)
}

// RecordSeal records, durably, that segment [s.From, s.To) was archived.
// Seals are recorded in order: s.From must be where the last seal ended.
func (l *Ledger) RecordSeal(ctx context.Context, s Seal) error {
	if l.readOnly {
		return ErrReadOnly
	}
	last, err := l.LastSeal(ctx)
	if err != nil {
		return err
	}
	if want := sealEnd(last); s.From != want || s.To <= s.From {
		return fmt.Errorf("ledger: record seal %d-%d: the last seal ends at %d", s.From, s.To, want)
	}
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := l.put(ctx, sealKey(s.To), v); err != nil {
		return fmt.Errorf("ledger: record seal %d-%d: %w", s.From, s.To, err)
	}
	if err := l.db.Sync(ctx); err != nil {
		return fmt.Errorf("ledger: record seal %d-%d: %w", s.From, s.To, err)
	}
	return nil
}

func sealEnd(s *Seal) uint64 {
	if s == nil {
		return 0
	}
	return s.To
}

// Seals returns the recorded seals in order. It reads them all: a
// consumer that needs the seals from a position on uses SealsFrom.
func (l *Ledger) Seals(ctx context.Context) ([]Seal, error) {
	var seals []Seal
	for s, err := range l.SealsFrom(ctx, 0) {
		if err != nil {
			return nil, err
		}
		seals = append(seals, s)
	}
	return seals, nil
}

// LastSeal returns the last recorded seal, or nil if there is none.
func (l *Ledger) LastSeal(ctx context.Context) (*Seal, error) {
	var last *Seal
	err := l.db.View(ctx, func(txn driver.Reader) error {
		v, err := lastValue(txn, prefixSeal)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		last = new(Seal)
		return json.Unmarshal(v, last)
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: last seal: %w", err)
	}
	return last, ctx.Err()
}

// Import appends a checked segment's entries, byte for byte, and its
// checkpoint to a ledger whose size is s.From: the way a lost store is
// rebuilt from the archive. Call s.Check first.
func (l *Ledger) Import(ctx context.Context, s *Segment) error {
	if l.readOnly {
		return ErrReadOnly
	}
	done := make(chan error, 1)
	select {
	case l.imports <- importReq{s, done}:
	case <-l.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-l.stopped:
		return ErrClosed
	}
}

type importReq struct {
	s    *Segment
	done chan error
}

// importSegment runs in the committer, with seqMu held and no group open.
func (l *Ledger) importSegment(s *Segment) error {
	if s.From != l.size {
		return fmt.Errorf("ledger: import segment %d-%d: the ledger has %d entries", s.From, s.To, l.size)
	}
	if err := l.jnl.append(encodeJournalRecord(s.From, s.Entries), len(s.Entries)); err != nil {
		return fmt.Errorf("ledger: import segment %d-%d: %w", s.From, s.To, err)
	}
	if err := l.replay(context.Background(), []journalRecord{{first: s.From, entries: s.Entries}}); err != nil {
		return fmt.Errorf("ledger: import segment %d-%d: %w", s.From, s.To, err)
	}
	l.mu.Lock()
	head := l.head
	l.mu.Unlock()
	if head.Root != s.Checkpoint.Root {
		return fmt.Errorf("ledger: import segment %d-%d: root %x does not match the checkpoint", s.From, s.To, head.Root[:8])
	}
	if err := l.putCheckpoint(s.Checkpoint); err != nil {
		return fmt.Errorf("ledger: import segment %d-%d: %w", s.From, s.To, err)
	}
	var ps []posting
	for i, raw := range s.Entries {
		e, err := DecodeEntry(raw)
		if err != nil {
			return fmt.Errorf("ledger: import segment %d-%d: entry %d: %w", s.From, s.To, s.From+uint64(i), err)
		}
		for _, p := range indexTerms(&e.Event) {
			p.seq = s.From + uint64(i)
			ps = append(ps, p)
		}
	}
	l.queueIndex(indexWork{postings: ps, upTo: s.To})
	return nil
}
