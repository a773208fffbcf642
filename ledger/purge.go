package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/custode/custode/ledger/driver"
)

// Purging.
//
// Data protection asks that the log be kept 30 months and then not longer
// than needed; the tree must still verify and the entries that remain must
// still prove. So a purge removes an entry's contents, never its place: the
// stored value becomes a marker holding the entry's leaf hash and the
// sequence number of the purge event that removed it,
//
//	"\x00purged\x00" || leaf hash (32 bytes) || purge event seq (uint64 BE)
//
// Leaf hashes are all the tree and the chain need of an entry: the tree is
// recomputed from them, the next entry's prev is checked against them, and
// the signed checkpoints, which commit to the roots, bind them. Verify
// checks each marker against the purge event it names, which must list the
// entry's sequence number in its ledger_ranges detail.

// purgedMagic starts the stored value of a purged entry. Canonical entry
// bytes start with '{', so the two cannot be confused.
var purgedMagic = []byte("\x00purged\x00")

const purgedValueLen = 8 + 32 + 8

// ErrPurged is returned, wrapped in a *PurgedError, for an entry whose
// contents were purged past retention.
var ErrPurged = errors.New("purged past retention")

// PurgedError reports an entry purged past retention: only its leaf hash
// remains, and the purge event By says when and why.
type PurgedError struct {
	Seq  uint64   // the purged entry
	By   uint64   // the purge event that removed its contents
	Leaf [32]byte // its leaf hash, which the tree still holds
}

func (e *PurgedError) Error() string {
	return fmt.Sprintf("ledger: entry %d: %v by entry %d", e.Seq, ErrPurged, e.By)
}

// Unwrap returns ErrPurged.
func (e *PurgedError) Unwrap() error { return ErrPurged }

func purgedValue(leaf [32]byte, by uint64) []byte {
	v := make([]byte, 0, purgedValueLen)
	v = append(v, purgedMagic...)
	v = append(v, leaf[:]...)
	return binary.BigEndian.AppendUint64(v, by)
}

// parsePurged returns the leaf hash and purge event of a purged entry's
// stored value; ok is false for anything else.
func parsePurged(raw []byte) (leaf [32]byte, by uint64, ok bool) {
	if len(raw) != purgedValueLen || !bytes.HasPrefix(raw, purgedMagic) {
		return leaf, 0, false
	}
	copy(leaf[:], raw[8:40])
	return leaf, binary.BigEndian.Uint64(raw[40:]), true
}

// storedLeaf returns the leaf hash of a stored entry value, purged or not.
func storedLeaf(raw []byte) [32]byte {
	if leaf, _, ok := parsePurged(raw); ok {
		return leaf
	}
	return LeafHash(raw)
}

// Purge removes the contents of entries seqs, keeping their leaf hashes, on
// behalf of the purge event by, which must already be in the ledger, be of
// kind purge and list every one of seqs in its ledger_ranges detail. The
// tree, the chain and every proof of the remaining entries are unchanged;
// Entry then returns a *PurgedError for a purged entry and Find skips it.
// Checkpoint and purge entries cannot be purged. Entries already purged are
// left as they are.
//
// The removal is made durable in the store, and the journal segments that
// held the entries are deleted; the store's own files drop the old bytes as
// it compacts and garbage-collects them, which Purge sets going.
func (l *Ledger) Purge(ctx context.Context, by uint64, seqs []uint64) error {
	if l.readOnly {
		return ErrReadOnly
	}
	pe, _, err := l.Entry(ctx, by)
	if err != nil {
		return fmt.Errorf("ledger: purge: the purge event: %w", err)
	}
	if pe.Kind != KindPurge {
		return fmt.Errorf("ledger: purge: entry %d is a %s event, not a purge", by, pe.Kind)
	}
	ranges, err := pe.LedgerRanges()
	if err != nil {
		return fmt.Errorf("ledger: purge: entry %d: %w", by, err)
	}
	for _, s := range seqs {
		if s >= by || !rangesContain(ranges, s) {
			return fmt.Errorf("ledger: purge: entry %d is not listed by purge event %d", s, by)
		}
	}
	if err := l.waitApplied(ctx, by+1); err != nil {
		return fmt.Errorf("ledger: purge: %w", err)
	}
	done := make(chan error, 1)
	select {
	case l.maint <- maintReq{fn: func() error { return l.purgeNow(ctx, by, seqs) }, done: done}:
	case <-l.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err = <-done:
	case <-l.stopped:
		return ErrClosed
	}
	if err != nil {
		return err
	}
	l.compact()
	return nil
}

// maintReq is work the committer runs with no group sealed and every group
// before it answered.
type maintReq struct {
	fn   func() error
	done chan error
}

// purgeNow runs in the committer: it replaces the entries by markers,
// syncs the store, and retires the journal segments that held them.
func (l *Ledger) purgeNow(ctx context.Context, by uint64, seqs []uint64) error {
	const perTxn = 10000
	for len(seqs) > 0 {
		chunk := seqs[:min(perTxn, len(seqs))]
		seqs = seqs[len(chunk):]
		var b driver.Batch
		err := l.db.View(ctx, func(txn driver.Reader) error {
			for _, s := range chunk {
				raw, err := txn.Get(entryKey(s))
				if err != nil {
					return fmt.Errorf("entry %d: %w", s, err)
				}
				if _, _, ok := parsePurged(raw); ok {
					continue
				}
				e, err := DecodeEntry(raw)
				if err != nil {
					return fmt.Errorf("entry %d: %w", s, err)
				}
				if e.Kind == KindCheckpoint || e.Kind == KindPurge {
					return fmt.Errorf("entry %d: a %s event is never purged", s, e.Kind)
				}
				b.Set(entryKey(s), purgedValue(LeafHash(raw), by))
			}
			return nil
		})
		if err == nil {
			err = l.db.Write(ctx, &b)
		}
		if err != nil {
			return fmt.Errorf("ledger: purge: %w", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := l.db.Sync(ctx); err != nil {
		return fmt.Errorf("ledger: purge: sync: %w", err)
	}
	if err := l.jnl.retire(); err != nil {
		return fmt.Errorf("ledger: purge: %w", err)
	}
	return ctx.Err()
}

// compact asks the store to rewrite its files without the values that
// purges replaced: a compaction drops the old versions from its tables and
// a value-log collection drops them from its logs. Both are best effort; a
// file still being written keeps its bytes until it is full.
func (l *Ledger) compact() {
	if err := l.db.Compact(context.Background()); err != nil {
		l.log.Warn("ledger: purge: compaction", "err", err)
	}
}

// retire closes the current journal segment, if it holds any record, and
// deletes every segment before the one then current: the store, synced,
// holds all their entries. The committer calls it with every group
// answered.
func (j *journal) retire() error {
	if j.f != nil && j.off > 0 {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	firsts, err := journalSegments(j.dir)
	if err != nil {
		return fmt.Errorf("journal: retire: %w", err)
	}
	for _, f := range firsts {
		if f >= j.next {
			continue
		}
		if err := os.Remove(segmentPath(j.dir, f)); err != nil {
			return fmt.Errorf("journal: retire: %w", err)
		}
	}
	return syncDir(j.dir)
}

// Scan calls fn with each entry of [from, to) in order, skipping entries
// purged past retention, and stops at the first error fn returns.
func (l *Ledger) Scan(ctx context.Context, from, to uint64, fn func(e *Entry) error) error {
	if size := l.Head().Size; to > size {
		to = size
	}
	if from >= to {
		return nil
	}
	err := l.scanEntries(ctx, from, to, func(seq uint64, raw []byte) error {
		if _, _, ok := parsePurged(raw); ok {
			return nil
		}
		e, err := DecodeEntry(raw)
		if err != nil {
			return fmt.Errorf("entry %d: %w", seq, err)
		}
		return fn(e)
	})
	if err != nil {
		return fmt.Errorf("ledger: scan %d-%d: %w", from, to, err)
	}
	return nil
}
