// Package mem is an in-memory [driver.Driver], sorted and safe for
// concurrent use, for fast unit tests of the ledger's logic. Nothing it
// holds survives Close: Sync only checks that the store is open.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"

	"github.com/custode/custode/ledger/driver"
)

// version is one value of a key, written by the batch numbered seq.
type version struct {
	seq uint64
	val []byte
	del bool
}

// DB is an in-memory driver. Each Write gets a sequence number; a View
// reads the versions numbered at most the one current when it began, so
// old versions stay until Compact finds no View that needs them.
type DB struct {
	mu     sync.RWMutex
	closed bool
	seq    uint64               // the last Write's number
	keys   [][]byte             // every key with a version, sorted
	vers   map[string][]version // by key, oldest first
	views  map[uint64]int       // open Views by snapshot number
}

var _ driver.Driver = (*DB)(nil)

// New returns an empty store.
func New() *DB {
	return &DB{vers: make(map[string][]version), views: make(map[uint64]int)}
}

func errClosed(op string) error { return fmt.Errorf("mem: %s: %w", op, driver.ErrClosed) }

// View implements driver.Driver.
func (d *DB) View(ctx context.Context, fn func(r driver.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errClosed("view")
	}
	snap := d.seq
	d.views[snap]++
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if d.views[snap]--; d.views[snap] == 0 {
			delete(d.views, snap)
		}
		d.mu.Unlock()
	}()
	return fn(&reader{ctx: ctx, d: d, snap: snap})
}

// Write implements driver.Driver.
func (d *DB) Write(ctx context.Context, b *driver.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed("write")
	}
	d.seq++
	for _, op := range b.Ops() {
		k := string(op.Key)
		vs, ok := d.vers[k]
		if !ok {
			i, _ := slices.BinarySearchFunc(d.keys, op.Key, bytes.Compare)
			d.keys = slices.Insert(d.keys, i, []byte(k))
		}
		v := version{seq: d.seq, del: op.Delete}
		if !op.Delete {
			v.val = bytes.Clone(op.Value)
			if v.val == nil {
				v.val = []byte{}
			}
		}
		d.vers[k] = append(vs, v)
	}
	return nil
}

// Sync implements driver.Driver; an in-memory store has nothing to sync.
func (d *DB) Sync(ctx context.Context) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return errClosed("sync")
	}
	return ctx.Err()
}

// Compact implements driver.Driver: it drops the versions no open View
// and no later one can see, and the keys left with none.
func (d *DB) Compact(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed("compact")
	}
	oldest := d.seq
	for s := range d.views {
		oldest = min(oldest, s)
	}
	keys := d.keys[:0]
	for _, k := range d.keys {
		vs := d.vers[string(k)]
		// Keep the newest version visible at oldest, and every later one.
		i := len(vs) - 1
		for i > 0 && vs[i].seq > oldest {
			i--
		}
		vs = vs[i:]
		if len(vs) == 1 && vs[0].del && vs[0].seq <= oldest {
			delete(d.vers, string(k))
			continue
		}
		d.vers[string(k)] = slices.Clip(vs)
		keys = append(keys, k)
	}
	clear(d.keys[len(keys):])
	d.keys = keys
	return nil
}

// Close implements driver.Driver. It drops everything the store held.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed("close")
	}
	d.closed = true
	d.keys, d.vers = nil, nil
	return nil
}

type reader struct {
	ctx  context.Context
	d    *DB
	snap uint64
}

// visible returns the value of k at the snapshot. Called with d.mu held.
func (r *reader) visible(k []byte) ([]byte, bool) {
	vs := r.d.vers[string(k)]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].seq <= r.snap {
			if vs[i].del {
				return nil, false
			}
			return vs[i].val, true
		}
	}
	return nil, false
}

func (r *reader) Get(key []byte) ([]byte, error) {
	r.d.mu.RLock()
	defer r.d.mu.RUnlock()
	if r.d.closed {
		return nil, errClosed("get")
	}
	v, ok := r.visible(key)
	if !ok {
		return nil, fmt.Errorf("mem: get %x: %w", key, driver.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// next returns the first visible pair (and the store's own key) after (or, reverse, before) the
// key at, or from start inclusive if first. Called with d.mu held.
func (r *reader) next(prefix, at []byte, first, reverse bool) (driver.KV, []byte, bool) {
	keys := r.d.keys
	var i int
	if !reverse {
		var found bool
		i, found = slices.BinarySearchFunc(keys, at, bytes.Compare)
		if found && !first {
			i++
		}
		for ; i < len(keys) && bytes.HasPrefix(keys[i], prefix); i++ {
			if v, ok := r.visible(keys[i]); ok {
				return driver.KV{Key: bytes.Clone(keys[i]), Value: bytes.Clone(v)}, keys[i], true
			}
		}
		return driver.KV{}, nil, false
	}
	if at == nil {
		i = len(keys) - 1
	} else {
		j, found := slices.BinarySearchFunc(keys, at, bytes.Compare)
		i = j - 1
		if found && first {
			i = j
		}
	}
	for ; i >= 0; i-- {
		if !bytes.HasPrefix(keys[i], prefix) {
			if bytes.Compare(keys[i], prefix) > 0 {
				continue
			}
			break
		}
		if v, ok := r.visible(keys[i]); ok {
			return driver.KV{Key: bytes.Clone(keys[i]), Value: bytes.Clone(v)}, keys[i], true
		}
	}
	return driver.KV{}, nil, false
}

func (r *reader) Scan(prefix, start []byte, reverse bool) iter.Seq2[driver.KV, error] {
	prefix, start = bytes.Clone(prefix), bytes.Clone(start)
	if prefix == nil {
		prefix = []byte{}
	}
	at := start
	if !reverse && bytes.Compare(at, prefix) < 0 {
		at = prefix
	}
	if reverse {
		if end := driver.PrefixEnd(prefix); start == nil || (end != nil && bytes.Compare(start, end) >= 0) {
			at = end // nil: from the last key
		}
	}
	return func(yield func(driver.KV, error) bool) {
		at, first := at, true
		for n := 1; ; n++ {
			if n%1024 == 0 {
				if err := r.ctx.Err(); err != nil {
					yield(driver.KV{}, err)
					return
				}
			}
			r.d.mu.RLock()
			if r.d.closed {
				r.d.mu.RUnlock()
				yield(driver.KV{}, errClosed("scan"))
				return
			}
			// at is the store's own key, which no caller can change.
			kv, key, ok := r.next(prefix, at, first, reverse)
			r.d.mu.RUnlock()
			if !ok || !yield(kv, nil) {
				return
			}
			at, first = key, false
		}
	}
}

// Clone returns a new store holding the pairs d holds now, as a View
// begun now would see them, or an error wrapping driver.ErrClosed.
func (d *DB) Clone() (*DB, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, errClosed("clone")
	}
	c := New()
	c.seq = 1
	r := &reader{d: d, snap: d.seq}
	for _, k := range d.keys {
		if v, ok := r.visible(k); ok {
			c.keys = append(c.keys, k)
			c.vers[string(k)] = []version{{seq: 1, val: bytes.Clone(v)}}
		}
	}
	return c, nil
}
