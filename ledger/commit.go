package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custode/custode/ledger/driver"
	"github.com/transparency-dev/merkle/compact"
)

// Group commit.
//
// Appenders number, chain and encode their events themselves, under seqMu,
// into the open group. One goroutine, the committer, makes groups durable:
// it seals the open group (a new one opens for the appenders that follow),
// hands it to the store writer, writes and fsyncs its journal record, and
// answers its appenders once the store has it too. It seals the next group
// as soon as an fsync returns, before it answers the group just made
// durable, so that nothing scheduled between the two delays the next fsync:
// every append that arrives during an fsync joins the next one.
//
// The store writer commits groups to the store (the driver) in order,
// without a sync, while their journal records are written; the finisher
// answers each group once both are done, so the committer never waits for
// the store.

// group is one group commit: the appends in it and what it writes.
type group struct {
	reqs    []*appendReq
	kvs     []kv     // what the group writes to the store, in order
	raws    [][]byte // the canonical bytes of its entries, for the journal
	before  state    // the sequencer's state before the group
	head    Head     // the head once the group is durable
	index   []posting
	entries int
	bytes   int
	err     error         // a failure while adding to the group
	sealed  chan struct{} // closed when the committer takes the group
	stored  chan error    // the store writer's outcome
	done    chan struct{} // closed when the group is answered; result in res
	res     error
	t0      time.Time
}

// kv is one key and value a group writes.
type kv struct{ k, v []byte }

// state is the sequencer's view of the end of the ledger.
type state struct {
	size   uint64
	last   [32]byte
	hashes [][]byte // the compact range [0, size)
}

func (l *Ledger) snapshot() state {
	return state{size: l.size, last: l.last, hashes: append([][]byte(nil), l.rng.Hashes()...)}
}

func (l *Ledger) restore(s state) {
	l.size, l.last = s.size, s.last
	l.rng, _ = l.rangf.NewRange(0, s.size, s.hashes)
}

// enqueue adds r to the open group and returns the group. Called without
// seqMu.
func (l *Ledger) enqueue(r *appendReq) (*group, error) {
	l.seqMu.Lock()
	for {
		if l.closing {
			l.seqMu.Unlock()
			return nil, ErrClosed
		}
		g := l.open
		if g == nil || g.entries+len(r.events) <= l.maxBatch && g.bytes+r.bytes <= maxBatchBytes {
			break
		}
		// Full: wait for the committer to take it.
		l.seqMu.Unlock()
		<-g.sealed
		l.seqMu.Lock()
	}
	if l.open == nil {
		l.open = &group{before: l.snapshot(), sealed: make(chan struct{}), done: make(chan struct{})}
	}
	g := l.open
	l.addToGroup(g, r)
	l.seqMu.Unlock()
	signal(l.kick)
	return g, nil
}

// addToGroup numbers, chains and encodes r into g, advancing the
// sequencer's state as if g were committed. Called with seqMu held.
func (l *Ledger) addToGroup(g *group, r *appendReq) {
	g.reqs = append(g.reqs, r)
	g.entries += len(r.events)
	g.bytes += r.bytes
	if g.err != nil {
		return
	}
	visit := func(id compact.NodeID, h []byte) {
		if id.Level > 0 && id.Level%storedLevelStep == 0 {
			g.kvs = append(g.kvs, kv{nodeKey(id.Level, id.Index), h})
		}
	}
	r.first = l.size
	buf := make([]byte, 0, r.bytes)
	for i := range r.events {
		ev := &r.events[i]
		start := len(buf)
		buf = ev.assemble(buf, &l.last, l.size)
		raw := buf[start:len(buf):len(buf)]
		leaf := l.leafH.leafHash(raw)
		g.kvs = append(g.kvs, kv{entryKey(l.size), raw})
		g.raws = append(g.raws, raw)
		for _, p := range ev.index {
			p.seq = l.size
			g.index = append(g.index, p)
		}
		if err := l.rng.Append(leaf[:], visit); err != nil && g.err == nil {
			g.err = fmt.Errorf("tree: %w", err)
		}
		l.last = leaf
		l.size++
	}
	if g.err != nil {
		g.err = fmt.Errorf("ledger: append entries %d-%d: %w", g.before.size, l.size-1, g.err)
	}
}

// sealOpen takes the open group, fixes the head it will publish and hands
// it to the store writer. It returns nil if no group is open, or if the
// open group failed, which it answers.
func (l *Ledger) sealOpen() *group {
	l.seqMu.Lock()
	g := l.open
	if g == nil {
		l.seqMu.Unlock()
		return nil
	}
	l.open = nil
	close(g.sealed)
	err := g.err
	if err == nil {
		l.mu.Lock()
		err = l.broken
		l.mu.Unlock()
	}
	var root []byte
	if err == nil {
		root, err = l.rng.GetRootHash(nil)
	}
	if err != nil {
		l.restore(g.before)
		l.seqMu.Unlock()
		l.answer(g, err)
		return nil
	}
	g.head = Head{Size: l.size, LastLeaf: l.last}
	copy(g.head.Root[:], root)
	l.seqMu.Unlock()
	g.kvs = append(g.kvs, kv{keyHead, headValue(g.head.Size, g.head.LastLeaf)})
	g.stored = make(chan error, 1)
	g.t0 = time.Now()
	l.storeq <- g
	return g
}

// runCommitter is the committer goroutine.
func (l *Ledger) runCommitter() {
	defer close(l.stopped)
	defer func() {
		close(l.storeq)
		close(l.finishq)
		<-l.finished
	}()
	var cur *group // sealed, not yet journaled
	var rec []byte // the journal record of cur: its storage is reused
	for {
		if cur == nil {
			if cur = l.sealOpen(); cur == nil {
				select {
				case <-l.kick:
				case req := <-l.imports:
					req.done <- l.importNow(req.s)
				case req := <-l.maint:
					req.done <- l.maintainNow(req.fn)
				case <-l.stop:
					l.seqMu.Lock()
					l.closing = true
					l.seqMu.Unlock()
					if cur = l.sealOpen(); cur == nil {
						return
					}
				}
				continue
			}
		}
		rec = appendJournalRecord(rec, cur.before.size, cur.raws)
		jerr := l.jnl.append(rec, len(cur.raws))
		if jerr != nil {
			// Wait for the groups before cur to be answered, then take
			// cur back out of the store.
			done := make(chan struct{})
			l.finishq <- finishReq{flush: done}
			<-done
			err := l.settle(cur, jerr, <-cur.stored)
			err = fmt.Errorf("ledger: append entries %d-%d: %w", cur.before.size, cur.head.Size-1, err)
			l.rewind(cur, err)
			l.log.Error("ledger: group commit failed", "err", err)
			l.answer(cur, err)
			cur = nil
			continue
		}
		// cur is durable. Seal the next group before cur is answered, so
		// that the goroutines of cur's appenders do not delay it, and
		// let the finisher wait for the store.
		next := l.sealOpen()
		l.publish(cur)
		l.finishq <- finishReq{g: cur}
		cur = next
	}
}

// finishReq is a durable group to answer once the store has it, or a
// request to say when the groups before it are answered.
type finishReq struct {
	g     *group
	flush chan struct{}
}

// runFinisher waits, in order, for the store to take durable groups, then
// marks them applied and hands them to the indexer.
func (l *Ledger) runFinisher() {
	defer close(l.finished)
	for r := range l.finishq {
		if r.flush != nil {
			close(r.flush)
			continue
		}
		g := r.g
		if err := l.settle(g, nil, <-g.stored); err != nil {
			l.log.Error("ledger: store write failed", "err", err)
			continue
		}
		l.setApplied(g.head.Size)
		l.queueIndex(indexWork{postings: g.index, upTo: g.head.Size})
		if l.cp != nil {
			l.cp.notify()
		}
	}
}

// importNow imports s once the groups before it are answered, with appends
// waiting. The committer calls it with no group sealed.
func (l *Ledger) importNow(s *Segment) error {
	done := make(chan struct{})
	l.finishq <- finishReq{flush: done}
	<-done
	l.seqMu.Lock()
	defer l.seqMu.Unlock()
	if l.open != nil {
		return errors.New("ledger: import: appends are under way; try again")
	}
	return l.importSegment(s)
}

// maintainNow runs fn once the groups before it are answered, with appends
// waiting. The committer calls it with no group sealed.
func (l *Ledger) maintainNow(fn func() error) error {
	done := make(chan struct{})
	l.finishq <- finishReq{flush: done}
	<-done
	l.seqMu.Lock()
	defer l.seqMu.Unlock()
	return fn()
}

// rewind sets the sequencer back to the state before g, which failed with
// cause, and fails the open group, which was built on it, with cause too:
// its appends were refused for the same reason (a full disk, say).
func (l *Ledger) rewind(g *group, cause error) {
	l.seqMu.Lock()
	l.restore(g.before)
	open := l.open
	l.open = nil
	l.seqMu.Unlock()
	if open != nil {
		close(open.sealed)
		l.answer(open, fmt.Errorf("ledger: append: an earlier group commit failed; try again: %w", cause))
	}
}

func (l *Ledger) answer(g *group, err error) {
	g.res = err
	close(g.done)
}

// runStore is the store writer: it commits sealed groups to the store in
// order, without a sync. After a failure it writes nothing more, so that the
// store never holds a group after one it lacks.
func (l *Ledger) runStore() {
	var failed error
	var b driver.Batch
	for g := range l.storeq {
		if failed != nil {
			g.stored <- fmt.Errorf("an earlier store write failed: %w", failed)
			continue
		}
		b.Reset()
		for _, e := range g.kvs {
			b.Set(e.k, e.v)
		}
		failed = l.db.Write(context.Background(), &b)
		g.stored <- failed
	}
}

// settle decides a group commit from its two writes. Entries in the journal
// are durable: if the store failed to take them, the ledger refuses further
// appends until it is reopened, which replays them. Entries the journal
// failed to take are taken back out of the store.
func (l *Ledger) settle(g *group, jerr, serr error) error {
	switch {
	case jerr == nil && serr == nil:
		return nil
	case jerr == nil:
		err := fmt.Errorf("ledger: the journal holds entries %d-%d but the store failed to take them (%w); reopen the ledger to replay them", g.before.size, g.head.Size-1, serr)
		l.setBroken(err)
		return err
	case serr == nil:
		if rerr := l.unwrite(g); rerr != nil {
			err := fmt.Errorf("ledger: entries %d-%d: journal: %w; taking them back out of the store: %w; reopen the ledger", g.before.size, g.head.Size-1, jerr, rerr)
			l.setBroken(err)
			return err
		}
	}
	return errors.Join(jerr, serr)
}

// unwrite removes a group's entries from the store and restores the head
// before it.
func (l *Ledger) unwrite(g *group) error {
	var b driver.Batch
	for seq := g.before.size; seq < g.head.Size; seq++ {
		b.Delete(entryKey(seq))
	}
	if g.before.size == 0 {
		b.Delete(keyHead)
	} else {
		b.Set(keyHead, headValue(g.before.size, g.before.last))
	}
	return l.db.Write(context.Background(), &b)
}

// publish makes the head of a durable group the ledger's, and answers the
// group's appends. Readers of the store wait until the store has the group
// too (see waitApplied).
func (l *Ledger) publish(g *group) {
	l.mu.Lock()
	l.head = g.head
	l.mu.Unlock()
	d := time.Since(g.t0)
	l.commitNanos.Add(uint64(d))
	l.groups.Add(1)
	l.entries.Add(g.head.Size - g.before.size)
	if fn := l.onCommit.Load(); fn != nil {
		(*fn)(g.head.Size-g.before.size, d)
	}
	l.answer(g, nil)
}

// setApplied records that the store holds the first n entries.
func (l *Ledger) setApplied(n uint64) {
	l.mu.Lock()
	if n > l.applied {
		l.applied = n
		close(l.appliedCh)
		l.appliedCh = make(chan struct{})
	}
	l.mu.Unlock()
}

// setBroken refuses further appends with err, and wakes the readers waiting
// for the store.
func (l *Ledger) setBroken(err error) {
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
		close(l.appliedCh)
		l.appliedCh = make(chan struct{})
	}
	l.mu.Unlock()
}

// waitApplied waits until the store holds the first n entries: the head is
// published as soon as the journal holds them, and the store follows.
func (l *Ledger) waitApplied(ctx context.Context, n uint64) error {
	if l.readOnly {
		return nil
	}
	for {
		l.mu.Lock()
		done, broken, ch := l.applied >= n, l.broken, l.appliedCh
		l.mu.Unlock()
		if done {
			return nil
		}
		if broken != nil {
			return broken
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
