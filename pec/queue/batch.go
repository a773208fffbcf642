package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Bounds on what one group commit writes. A call larger than these is
// written alone.
const (
	maxBatchBytes = 32 << 20
	maxBatchItems = 4096
)

// A batch is a batch file in items/: the records of one group commit, or
// an item file of the first layout.
type batch struct {
	name string // base name in items/
	seq  uint64 // order of writing; 0 for an item file of the first layout

	mu      sync.Mutex // serializes the done file and the end of the batch
	live    int        // records not yet done
	hasDone bool       // the done file exists
	doneDir bool       // and its name is durable in items/
	durable bool       // the done file holds durable marks
	damaged bool       // a record was found damaged: keep the file in damaged/
}

// A commitReq is an Enqueue call waiting for the committer.
type commitReq struct {
	ctx     context.Context
	entries []*entry // Message nil
	heads   [][]byte // the first line and header of each record
	msgs    [][]byte // the message of each record
	size    int
	res     chan error // buffered
}

// committer batches the writes of concurrent Enqueue calls: a group
// commit.
type committer struct {
	mu      sync.Mutex
	waiting []*commitReq
	wake    chan struct{} // buffered
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the committer returns
	seq     uint64        // of the last batch written or found
	batches int           // written, for tests; guarded by mu
	// beforeTake, if not nil, is called before each batch is put together;
	// tests use it to hold the committer.
	beforeTake func()
}

// commit hands req to the committer and waits until its items are durable
// or have failed. If ctx ends before the committer takes req, req is
// withdrawn and nothing of it is written.
func (q *Queue) commit(ctx context.Context, req *commitReq) error {
	c := &q.commits
	c.mu.Lock()
	c.waiting = append(c.waiting, req)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-req.res:
		return err
	case <-ctx.Done():
	}
	c.mu.Lock()
	i := slices.Index(c.waiting, req)
	if i >= 0 {
		c.waiting = slices.Delete(c.waiting, i, i+1)
	}
	c.mu.Unlock()
	if i >= 0 {
		return fmt.Errorf("queue: enqueue: %w", ctx.Err())
	}
	// Being written: its fate is sealed, and soon known.
	return <-req.res
}

// runCommitter writes the waiting calls, all of them in one batch file, as
// long as there are some, until Close.
func (q *Queue) runCommitter() {
	c := &q.commits
	defer close(c.done)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		for {
			if c.beforeTake != nil {
				c.beforeTake()
			}
			reqs := q.take()
			if len(reqs) == 0 {
				break
			}
			q.commitBatch(reqs)
		}
	}
}

// take removes from the waiting calls those that the next batch writes.
func (q *Queue) take() []*commitReq {
	c := &q.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	size, n, i := 0, 0, 0
	for ; i < len(c.waiting); i++ {
		r := c.waiting[i]
		if i > 0 && (size+r.size > maxBatchBytes || n+len(r.entries) > maxBatchItems) {
			break
		}
		size += r.size
		n += len(r.entries)
	}
	reqs := slices.Clone(c.waiting[:i])
	c.waiting = slices.Delete(c.waiting, 0, i)
	return reqs
}

// commitBatch writes the items of reqs into one batch file and tells each
// call how it went. Calls whose context has ended are left out.
func (q *Queue) commitBatch(reqs []*commitReq) {
	var parts [][]byte
	var batched []*commitReq
	var off int64
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.res <- fmt.Errorf("queue: enqueue: %w", err)
			continue
		}
		batched = append(batched, r)
		for i, e := range r.entries {
			parts = append(parts, r.heads[i], r.msgs[i])
			e.off = off
			e.n = int64(len(r.heads[i]) + len(r.msgs[i]))
			off += e.n
		}
	}
	if len(batched) == 0 {
		return
	}
	b, err := q.writeBatch(parts)
	if err != nil {
		err = fmt.Errorf("queue: enqueue: %w", err)
		for _, r := range batched {
			r.res <- err
		}
		return
	}
	for _, r := range batched {
		b.live += len(r.entries)
	}
	q.mu.Lock()
	for _, r := range batched {
		for _, e := range r.entries {
			e.b = b
			q.entries[e.it.ID] = e
			delete(q.pending, e.it.ID)
		}
	}
	q.mu.Unlock()
	for _, r := range batched {
		r.res <- nil
	}
	q.Kick()
}

// writeBatch writes the concatenation of parts durably as a new batch
// file: written in tmp/, fsynced, renamed into items/, items/ fsynced. On
// error nothing is left behind. It does not use durable.WriteFile: the
// temporary file lives in tmp/, which Open empties, so that a scan of
// items/ never meets a partial batch, and its fsyncs are counted by
// q.syncFile.
func (q *Queue) writeBatch(parts [][]byte) (_ *batch, err error) {
	c := &q.commits
	c.mu.Lock()
	// After every batch written or found, even if the clock went back;
	// after every batch deleted too, unless it went back across a restart.
	c.seq = max(c.seq+1, uint64(time.Now().UnixNano()))
	b := &batch{name: batchName(c.seq), seq: c.seq}
	c.mu.Unlock()
	f, err := os.CreateTemp(q.tmp, b.name+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("write batch: %w", err)
	}
	final := filepath.Join(q.items, b.name)
	renamed := false
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			if renamed {
				os.Remove(final)
			}
			err = fmt.Errorf("write batch %s: %w", b.name, err)
		}
	}()
	// One write: Grow does not clear the memory that it allocates.
	var buf bytes.Buffer
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	buf.Grow(size)
	for _, p := range parts {
		buf.Write(p)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	if err := q.syncFile(f); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return nil, err
	}
	renamed = true
	if err := q.syncDir(q.items); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.batches++
	c.mu.Unlock()
	return b, nil
}

// mark records that the queue is done with item id of b, for the reason
// kind (see markKind), and ends b when it was its last item. Durable marks
// are fsynced, with the name of the done file; others are not. A mark is
// counted even if writing it fails: the item is gone from the queue's
// memory, and only a crash could bring it back.
func (q *Queue) mark(ctx context.Context, b *batch, id string, kind markKind) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	if kind != markMissing {
		done := filepath.Join(q.items, b.name+doneSuffix)
		if err := q.appendFile(done, markLine(kind, id), kind.durable()); err != nil {
			errs = append(errs, fmt.Errorf("mark %s done in %s: %w", id, done, err))
		} else {
			b.hasDone = true
			if kind.durable() {
				b.durable = true
				if !b.doneDir {
					if err := q.syncDir(q.items); err != nil {
						errs = append(errs, err)
					} else {
						b.doneDir = true
					}
				}
			}
		}
	}
	if kind == markDamaged {
		b.damaged = true
	}
	b.live--
	if b.live == 0 {
		errs = append(errs, q.endBatch(ctx, b))
	}
	return errors.Join(errs...)
}

// endBatch deletes b, whose items are all done, or moves it into damaged/
// if one of its records is damaged. b.mu must be held.
func (q *Queue) endBatch(ctx context.Context, b *batch) error {
	if b.damaged {
		return q.quarantine(ctx, b.name, "a record is damaged (see the earlier warning); the other items are done")
	}
	if err := removeIfExists(filepath.Join(q.items, b.name)); err != nil {
		return fmt.Errorf("delete batch %s: %w", b.name, err)
	}
	if !b.hasDone {
		return nil
	}
	if b.durable {
		// Durable marks outlive the batch file: without them, a crash
		// could bring back the batch alone, and a removed item with it.
		if err := q.syncDir(q.items); err != nil {
			return err
		}
	}
	if err := removeIfExists(filepath.Join(q.items, b.name+doneSuffix)); err != nil {
		return fmt.Errorf("delete batch %s: %w", b.name, err)
	}
	return nil
}
