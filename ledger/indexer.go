package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The indexes are derived data: they are written by the indexer after the
// entries they point to are durable, in larger transactions of their own, so
// that they stay off the path of Append. The watermark m:indexed, written in
// the same transaction as the keys, says how many entries are indexed; after
// a crash Open indexes the rest from the entries themselves.

var keyIndexed = []byte("m:indexed") // entries indexed (8)

// maxIndexBacklog bounds the index keys waiting for the indexer; beyond it
// the sequencer waits, so that a slow indexer slows appends rather than
// growing memory without bound.
const maxIndexBacklog = 1 << 20

// maxIndexBatch bounds the keys of one index transaction.
const maxIndexBatch = 50000

// indexWork is the index keys of one group commit, sequence numbers
// included, and the ledger size after it.
type indexWork struct {
	keys [][]byte
	upTo uint64
}

func (l *Ledger) readIndexed(txn *badger.Txn) (uint64, error) {
	v, err := getValue(txn, keyIndexed)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("index watermark is %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// catchUpIndex indexes the entries that a crash left unindexed.
func (l *Ledger) catchUpIndex(ctx context.Context) error {
	var from uint64
	if err := l.idx.View(func(txn *badger.Txn) (err error) {
		from, err = l.readIndexed(txn)
		return err
	}); err != nil {
		return fmt.Errorf("ledger: open: %w", err)
	}
	if from > l.size {
		return fmt.Errorf("ledger: open: %d entries indexed but only %d stored", from, l.size)
	}
	var keys [][]byte
	flush := func(upTo uint64) error {
		err := l.writeIndex(indexWork{keys: keys, upTo: upTo})
		keys = keys[:0]
		return err
	}
	err := l.scanEntries(ctx, from, l.size, func(seq uint64, raw []byte) error {
		e, err := DecodeEntry(raw)
		if err != nil {
			return err
		}
		for _, k := range indexKeys(&e.Event) {
			keys = append(keys, binary.BigEndian.AppendUint64(k, seq))
		}
		if len(keys) >= maxIndexBatch/2 {
			return flush(seq + 1)
		}
		return nil
	})
	if err == nil && from < l.size {
		err = flush(l.size)
	}
	if err != nil {
		return fmt.Errorf("ledger: open: index entries %d-%d: %w", from, l.size, err)
	}
	if from < l.size {
		l.log.Info("ledger: indexed entries left by a crash", "from", from, "to", l.size)
	}
	l.setIndexed(l.size)
	return nil
}

func (l *Ledger) writeIndex(w indexWork) error {
	txn := l.idx.NewTransaction(true)
	defer txn.Discard()
	for _, k := range w.keys {
		if err := txn.Set(k, nil); err != nil {
			return err
		}
	}
	if err := txn.Set(keyIndexed, binary.BigEndian.AppendUint64(nil, w.upTo)); err != nil {
		return err
	}
	return txn.Commit()
}

// queueIndex hands the index keys of a durable group to the indexer. It
// never waits for an index write, only for room when the backlog is full.
func (l *Ledger) queueIndex(w indexWork) {
	for {
		l.idxMu.Lock()
		if l.idxKeys < maxIndexBacklog || len(l.idxQueue) == 0 {
			l.idxQueue = append(l.idxQueue, w)
			l.idxKeys += len(w.keys)
			l.idxMu.Unlock()
			signal(l.idxSignal)
			return
		}
		l.idxMu.Unlock()
		<-l.idxRoom
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// runIndexer writes the index keys of durable groups: everything queued
// since its last write goes into one transaction.
func (l *Ledger) runIndexer() {
	defer close(l.indexerDone)
	for {
		<-l.idxSignal
		l.idxMu.Lock()
		queue, closed := l.idxQueue, l.idxClosed
		l.idxQueue, l.idxKeys = nil, 0
		l.idxMu.Unlock()
		signal(l.idxRoom)
		for len(queue) > 0 {
			w := indexWork{upTo: queue[0].upTo}
			n := 0
			for n < len(queue) && (n == 0 || len(w.keys)+len(queue[n].keys) <= maxIndexBatch) {
				w.keys = append(w.keys, queue[n].keys...)
				w.upTo = queue[n].upTo
				n++
			}
			queue = queue[n:]
			for {
				err := l.writeIndex(w)
				if err == nil {
					break
				}
				// The entries are durable; their index keys can wait.
				// Queries wait with them, and the next Open rebuilds what
				// is missing.
				l.log.Error("ledger: write index", "up_to", w.upTo, "err", err)
				if closed {
					return
				}
				<-afterRetry()
			}
			l.setIndexed(w.upTo)
		}
		if closed {
			return
		}
	}
}

func (l *Ledger) setIndexed(n uint64) {
	l.mu.Lock()
	if n > l.indexed {
		l.indexed = n
		close(l.indexedCh)
		l.indexedCh = make(chan struct{})
	}
	l.mu.Unlock()
}

// waitIndexed waits until the first n entries are indexed.
func (l *Ledger) waitIndexed(ctx context.Context, n uint64) error {
	if l.readOnly {
		return nil
	}
	for {
		l.mu.Lock()
		done, ch := l.indexed >= n, l.indexedCh
		l.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// afterRetry is how long the indexer waits before writing again after a
// failure.
func afterRetry() <-chan time.Time { return time.After(time.Second) }
