// Package driver declares the seam between the ledger and the store that
// keeps its bytes: a sorted key-value store with consistent read snapshots,
// ordered prefix scans, atomic write batches, an explicit sync and a
// compaction. The ledger decides what the keys and values mean (see
// ledger/FORMAT.md); a driver only keeps them.
//
// Package ledger/driver/badger is the production driver, package
// ledger/driver/mem an in-memory one for tests, and package
// ledger/drivertest the conformance suite every driver passes.
package driver

import (
	"context"
	"errors"
	"iter"
)

// ErrNotFound is returned by [Reader.Get] for a key the store does not hold.
var ErrNotFound = errors.New("driver: key not found")

// ErrClosed is returned by every call on a driver after Close.
var ErrClosed = errors.New("driver: closed")

// Driver is a sorted key-value store. Keys are compared as byte strings
// (bytes.Compare). Its methods are safe for concurrent use; after Close
// every method returns an error (wrapping ErrClosed) and never panics.
//
// Slices a driver returns (keys and values, from Get and Scan) are the
// caller's own copies: they stay valid forever and changing them changes
// nothing in the store. Slices a caller passes in (to Get, Scan, and a
// Batch) are not retained after the call returns.
type Driver interface {
	// View runs fn with a read snapshot: every read through r sees the
	// store as it was when View began, whatever Write calls land while fn
	// runs. r is valid only until fn returns. fn may call Write from
	// another goroutine but must not call Close. View returns fn's error, or
	// an error of its own (ctx's error if ctx is done before fn runs).
	View(ctx context.Context, fn func(r Reader) error) error
	// Write applies every operation of b, in order, atomically: a View
	// sees all of them or none, and so does the store after a crash. It
	// does not make them durable (see Sync). If ctx is done before the
	// batch is applied, Write applies nothing and returns ctx's error.
	Write(ctx context.Context, b *Batch) error
	// Sync makes every Write that returned before Sync was called durable:
	// it survives a crash of the process or the machine.
	Sync(ctx context.Context) error
	// Compact asks the store to reclaim the space of deleted and
	// overwritten values. It changes no key or value a View sees. It is
	// best effort: it may leave some space unreclaimed.
	Compact(ctx context.Context) error
	// Close releases the store. Writes not made durable by Sync may be
	// lost. Close waits for calls in progress; a second Close returns
	// ErrClosed.
	Close() error
}

// Reader reads one snapshot of a Driver. It is valid only inside the View
// callback that received it, and is not safe for concurrent use.
type Reader interface {
	// Get returns a copy of the value of key, or an error wrapping
	// ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan yields, in key order, the pairs whose key starts with prefix
	// (every pair if prefix is empty). Forwards it starts at the first key
	// >= start, backwards (reverse) at the last key <= start; a nil start
	// means the first (or last) key of the prefix. Keys of other prefixes
	// are never yielded. On an error Scan yields one KV{} with the error
	// and stops. Breaking out of the loop is allowed.
	Scan(prefix, start []byte, reverse bool) iter.Seq2[KV, error]
}

// KV is a key and its value, both the caller's own copies.
type KV struct {
	Key, Value []byte
}

// Op is one operation of a Batch: a set of Key to Value or, if Delete, the
// removal of Key.
type Op struct {
	Key, Value []byte
	Delete     bool
}

// Batch is a list of sets and deletes that Driver.Write applies
// atomically. The zero value is an empty batch. The batch keeps the slices
// given to Set and Delete: the caller must not change them until Write
// returns. A Batch is not safe for concurrent use.
type Batch struct {
	ops   []Op
	bytes int
}

// Set adds the setting of key to value. A later operation on the same key
// in the batch wins.
func (b *Batch) Set(key, value []byte) {
	b.ops = append(b.ops, Op{Key: key, Value: value})
	b.bytes += len(key) + len(value)
}

// Delete adds the removal of key; deleting a missing key is not an error.
func (b *Batch) Delete(key []byte) {
	b.ops = append(b.ops, Op{Key: key, Delete: true})
	b.bytes += len(key)
}

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Bytes returns the total length of the keys and values in the batch.
func (b *Batch) Bytes() int { return b.bytes }

// Ops returns the operations in order. The slice is the batch's own:
// drivers read it and must not change it.
func (b *Batch) Ops() []Op { return b.ops }

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	clear(b.ops)
	b.ops, b.bytes = b.ops[:0], 0
}

// PrefixEnd returns the smallest key greater than every key that starts
// with prefix, or nil if there is none (prefix empty or all 0xff).
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
