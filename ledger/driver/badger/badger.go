// Package badger is the ledger's production driver: a [driver.Driver] over
// a badger v4 store in one directory.
//
// The store does not sync its writes: the ledger's journal makes entries
// durable, and the ledger calls Sync for what it writes outside the
// journal. Values of more than 256 bytes (entries) go to the value log,
// written once, rather than into the LSM tree, which compactions rewrite.
package badger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"

	"github.com/custode/custode/ledger/driver"
	"github.com/dgraph-io/badger/v4"
)

// Options configure Open.
type Options struct {
	// ReadOnly opens the store for reading. A store left by a crash has a
	// log to replay, which badger does only when it may write: if the
	// read-only open fails, Open opens it writable (and the caller writes
	// nothing).
	ReadOnly bool
	// Logger receives badger's warnings and errors; nil discards them.
	Logger *slog.Logger
}

// Value log and memtable sizes. Badger writes them through memory maps of
// sparse files twice these sizes; the ledger's Preallocator gives them
// their blocks (see package ledger/diskspace), which must fit on small
// disks too.
const (
	ValueLogFileSize = 64 << 20
	MemTableSize     = 32 << 20
	ValueThreshold   = 256
)

// DB is a badger store behind the driver.Driver interface. Its methods are
// safe for concurrent use.
type DB struct {
	dir    string
	mu     sync.RWMutex // held for reading by every call, for writing by Close
	closed bool
	db     *badger.DB
}

var _ driver.Driver = (*DB)(nil)

// Open opens or creates the badger store in dir.
func Open(dir string, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := badger.DefaultOptions(dir).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithLogger(logger{log}).
		WithLoggingLevel(badger.WARNING).
		WithValueThreshold(ValueThreshold).
		WithValueLogFileSize(ValueLogFileSize).
		WithMemTableSize(MemTableSize)
	if opts.ReadOnly {
		db, err := badger.Open(o.WithReadOnly(true))
		if err == nil {
			return &DB{dir: dir, db: db}, nil
		}
		log.Info("ledger: opening writable to replay the log", "dir", dir, "read_only_err", err)
	}
	db, err := badger.Open(o)
	if err != nil {
		return nil, fmt.Errorf("badger: open %s: %w", dir, err)
	}
	return &DB{dir: dir, db: db}, nil
}

// Badger returns the underlying store, for tests and tools that read it
// directly. Writing to it bypasses nothing the driver guarantees, but it
// must not be used after Close.
func (d *DB) Badger() *badger.DB { return d.db }

func (d *DB) enter(op string) error {
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return fmt.Errorf("badger: %s %s: %w", op, d.dir, driver.ErrClosed)
	}
	return nil
}

// View implements driver.Driver.
func (d *DB) View(ctx context.Context, fn func(r driver.Reader) error) error {
	if err := d.enter("view"); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.db.View(func(txn *badger.Txn) error {
		return fn(&reader{ctx: ctx, txn: txn})
	})
}

// Write implements driver.Driver.
func (d *DB) Write(ctx context.Context, b *driver.Batch) error {
	if err := d.enter("write"); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	txn := d.db.NewTransaction(true)
	defer txn.Discard()
	for _, op := range b.Ops() {
		var err error
		if op.Delete {
			err = txn.Delete(op.Key)
		} else {
			err = txn.Set(op.Key, op.Value)
		}
		if err != nil {
			return fmt.Errorf("badger: write: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("badger: write: %w", err)
	}
	return nil
}

// Sync implements driver.Driver.
func (d *DB) Sync(ctx context.Context) error {
	if err := d.enter("sync"); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := d.db.Sync(); err != nil {
		return fmt.Errorf("badger: sync %s: %w", d.dir, err)
	}
	return nil
}

// Compact implements driver.Driver: a compaction to one level drops the
// old versions from the tables, and value-log collections (at most 16)
// drop them from the logs. A file still being written keeps its bytes
// until it is full.
func (d *DB) Compact(ctx context.Context) error {
	if err := d.enter("compact"); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	var errs []error
	if err := d.db.Flatten(1); err != nil {
		errs = append(errs, fmt.Errorf("compaction: %w", err))
	}
	for range 16 {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := d.db.RunValueLogGC(0.01); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) {
				errs = append(errs, fmt.Errorf("value log collection: %w", err))
			}
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("badger: compact %s: %w", d.dir, err)
	}
	return nil
}

// Close implements driver.Driver.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("badger: close %s: %w", d.dir, driver.ErrClosed)
	}
	d.closed = true
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("badger: close %s: %w", d.dir, err)
	}
	return nil
}

type reader struct {
	ctx context.Context
	txn *badger.Txn
}

func (r *reader) Get(key []byte) ([]byte, error) {
	if len(key) == 0 {
		// Badger refuses the empty key, which it can never hold.
		return nil, fmt.Errorf("badger: get of the empty key: %w", driver.ErrNotFound)
	}
	item, err := r.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("badger: get %x: %w", key, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("badger: get %x: %w", key, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("badger: get %x: %w", key, err)
	}
	return v, nil
}

// scanPrefetch is how many values a forward scan reads ahead, in
// parallel: the ledger's entry scans (verify, followers) read thousands
// in order, as they did with 256 before the driver seam.
const scanPrefetch = 256

func (r *reader) Scan(prefix, start []byte, reverse bool) iter.Seq2[driver.KV, error] {
	prefix, start = bytes.Clone(prefix), bytes.Clone(start)
	return func(yield func(driver.KV, error) bool) {
		opt := badger.IteratorOptions{Reverse: reverse}
		var seek []byte
		if !reverse {
			opt.PrefetchValues, opt.PrefetchSize = true, scanPrefetch
			opt.Prefix = prefix
			seek = prefix
			if bytes.Compare(start, prefix) > 0 {
				seek = start
			}
		} else {
			end := driver.PrefixEnd(prefix)
			if start != nil && (end == nil || bytes.Compare(start, end) < 0) {
				seek, opt.Prefix = start, prefix
			} else {
				// Badger's Valid is false on a key outside opt.Prefix:
				// seeking from end, which may be a key, needs no prefix.
				seek = end
			}
		}
		it := r.txn.NewIterator(opt)
		defer it.Close()
		n := 0
		for it.Seek(seek); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if !bytes.HasPrefix(k, prefix) {
				if reverse && bytes.Compare(k, prefix) > 0 {
					continue // end itself
				}
				return
			}
			if n++; n%1024 == 0 {
				if err := r.ctx.Err(); err != nil {
					yield(driver.KV{}, err)
					return
				}
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				yield(driver.KV{}, fmt.Errorf("badger: read %x: %w", k, err))
				return
			}
			if !yield(driver.KV{Key: item.KeyCopy(nil), Value: v}, nil) {
				return
			}
		}
	}
}

// logger routes badger's logs to slog.
type logger struct{ l *slog.Logger }

func msg(f string, a []any) string {
	return "badger: " + string(bytes.TrimSpace(fmt.Appendf(nil, f, a...)))
}

func (b logger) Errorf(f string, a ...any)   { b.l.Error(msg(f, a)) }
func (b logger) Warningf(f string, a ...any) { b.l.Warn(msg(f, a)) }
func (b logger) Infof(f string, a ...any)    { b.l.Info(msg(f, a)) }
func (b logger) Debugf(f string, a ...any)   { b.l.Debug(msg(f, a)) }

// Dir returns the directory of the store.
func (d *DB) Dir() string { return d.dir }
