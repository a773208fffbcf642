package ledger

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/custode/custode/ledger/driver"
	"github.com/transparency-dev/merkle/compact"

	"github.com/custode/custode/ledger/verify"
)

// VerifyOptions say what Verify checks against.
type VerifyOptions struct {
	// From and To bound the entries checked, [From, To); To 0 means the end.
	From, To uint64
	// Roots are the trust anchors of the gestore's checkpoint signatures.
	// Nil skips signature checks (and says so in the report).
	Roots *x509.CertPool
	// TSARoots are the trust anchors of the checkpoint timestamps. Nil skips
	// timestamp checks (and says so in the report).
	TSARoots *x509.CertPool
	// RequireTimestamps makes a checkpoint still waiting for its token a
	// problem rather than a note.
	RequireTimestamps bool
	// MaxProblems stops collecting after this many; 0 means 100.
	MaxProblems int
	// Progress, if not nil, is called as entries are checked with the
	// number done and the number in range, from the goroutine that
	// called Verify; at least once at the end of the range.
	Progress func(done, total uint64)
}

// Problem is one inconsistency Verify found.
type Problem struct {
	// Seq is the entry the problem is in, or -1 if it is not one entry's.
	Seq int64
	// Checkpoint is the size of the checkpoint the problem is in, or -1.
	Checkpoint int64
	Message    string
}

func (p Problem) String() string {
	switch {
	case p.Seq >= 0:
		return fmt.Sprintf("entry %d: %s", p.Seq, p.Message)
	case p.Checkpoint >= 0:
		return fmt.Sprintf("checkpoint %d: %s", p.Checkpoint, p.Message)
	}
	return p.Message
}

// Report is what Verify found.
type Report struct {
	From, To          uint64 // the entries checked, [From, To)
	Checkpoints       int    // checkpoints checked
	Signatures        int    // checkpoint signatures verified
	Timestamps        int    // checkpoint tokens verified
	PendingTimestamps int    // checkpoints still waiting for a token
	Purged            int    // entries purged past retention: only their leaf hash is left
	Notes             []string
	Problems          []Problem // in the order found: the first is the first inconsistency
	Elapsed           time.Duration
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify recomputes the chain and the tree over the stored entries and checks
// every checkpoint in range: its root against the recomputed tree, the chain
// of checkpoints, its signature and its timestamp token. Problems are
// reported, not returned as errors; an error means Verify could not run.
//
// A single altered entry is named by its sequence number: an entry whose
// bytes do not decode, or whose hash no longer matches its successor's prev,
// is the one at fault; an entry whose prev matches neither neighbour is.
func (l *Ledger) Verify(ctx context.Context, opts VerifyOptions) (*Report, error) {
	start := time.Now()
	maxProblems := opts.MaxProblems
	if maxProblems <= 0 {
		maxProblems = 100
	}
	var head Head
	var beyondHead bool // an entry after the head, in the same snapshot
	// The store follows the journal: let it hold every durable entry.
	if err := l.waitApplied(ctx, l.Head().Size); err != nil {
		return nil, fmt.Errorf("ledger: verify: %w", err)
	}
	err := l.db.View(ctx, func(txn driver.Reader) error {
		v, err := txn.Get(keyHead)
		if errors.Is(err, driver.ErrNotFound) {
			_, err := txn.Get(entryKey(0))
			beyondHead = err == nil
			return nil
		}
		if err != nil {
			return err
		}
		if len(v) != 40 {
			return fmt.Errorf("head record is %d bytes, want 40", len(v))
		}
		head.Size = binary.BigEndian.Uint64(v[:8])
		copy(head.LastLeaf[:], v[8:])
		_, err = txn.Get(entryKey(head.Size))
		beyondHead = err == nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: verify: %w", err)
	}
	to := opts.To
	if to == 0 || to > head.Size {
		to = head.Size
	}
	from := opts.From
	if from > to {
		return nil, fmt.Errorf("ledger: verify: from %d is after to %d", from, to)
	}
	r := &Report{From: from, To: to}
	add := func(seq, cp int64, format string, a ...any) {
		if len(r.Problems) < maxProblems {
			r.Problems = append(r.Problems, Problem{Seq: seq, Checkpoint: cp, Message: fmt.Sprintf(format, a...)})
		}
	}

	cps, err := l.Checkpoints(ctx)
	if err != nil {
		add(-1, -1, "checkpoints unreadable: %v", err)
	}
	roots := map[uint64][32]byte{}

	// The tree state just before from, from the stored nodes.
	rng := l.rangf.NewEmptyRange(0)
	var prevLeaf [32]byte
	if from > 0 {
		err := l.db.View(ctx, func(txn driver.Reader) error {
			ids := compact.RangeNodes(0, from, nil)
			hashes, err := l.nodeHashes(txn, ids)
			if err != nil {
				return err
			}
			if rng, err = l.rangf.NewRange(0, from, hashes); err != nil {
				return err
			}
			raw, err := txn.Get(entryKey(from - 1))
			if err != nil {
				return fmt.Errorf("entry %d: %w", from-1, err)
			}
			prevLeaf = storedLeaf(raw)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("ledger: verify: tree before entry %d: %w", from, err)
		}
	}

	// Chain: mismatch[k] says entry k's prev is not the hash of entry k-1.
	// Blame is decided one entry late, once mismatch[k+1] is known.
	blamed := map[uint64]bool{}
	blame := func(seq uint64, format string, a ...any) {
		if !blamed[seq] {
			blamed[seq] = true
			add(int64(seq), -1, format, a...)
		}
	}
	var lastMismatch bool // mismatch[k-1] while processing k
	decide := func(k uint64, mismatchK, mismatchNext bool) {
		// Called for k >= from with mismatch[k] and mismatch[k+1].
		switch {
		case mismatchK && mismatchNext:
			blame(k, "altered: its prev does not match entry %d and its hash does not match entry %d's prev", k-1, k+1)
		case mismatchK && k > 0:
			blame(k-1, "altered: its hash does not match the prev recorded by entry %d", k)
		case mismatchK:
			blame(k, "altered: the first entry's prev is not zero")
		}
	}
	cpEvents := map[[32]byte]bool{}
	var cpEntries []*Entry // entries of kind checkpoint in range
	// Stored-node problems are reported after the entry problems: a node
	// covers many entries, and the chain names the one that changed.
	var nodeProblems []Problem
	nodeProblem := func(format string, a ...any) {
		if len(nodeProblems) < maxProblems {
			nodeProblems = append(nodeProblems, Problem{Seq: -1, Checkpoint: -1, Message: fmt.Sprintf(format, a...)})
		}
	}
	nodeCheck := func(txn driver.Reader) compact.VisitFn {
		return func(id compact.NodeID, h []byte) {
			if id.Level == 0 || id.Level%storedLevelStep != 0 {
				return
			}
			stored, err := txn.Get(nodeKey(id.Level, id.Index))
			if err != nil {
				nodeProblem("tree node %d/%d (entries %d-%d): %v", id.Level, id.Index,
					id.Index<<id.Level, (id.Index+1)<<id.Level-1, err)
				return
			}
			if !bytes.Equal(stored, h) {
				nodeProblem("stored tree node %d/%d does not match entries %d-%d", id.Level, id.Index,
					id.Index<<id.Level, (id.Index+1)<<id.Level-1)
			}
		}
	}
	purged := map[uint64]uint64{} // purged entry → the purge event it names
	purges := map[uint64]*Entry{} // purge events in range
	cpSizes := map[uint64]bool{}
	for _, c := range cps {
		cpSizes[c.Size] = true
	}
	err = l.db.View(ctx, func(txn driver.Reader) error {
		visit := nodeCheck(txn)
		return l.decodeEntries(ctx, from, to, func(seq uint64, raw []byte, leaf [32]byte, e *Entry, derr error) error {
			if done := seq + 1 - from; opts.Progress != nil && (done%1024 == 0 || seq+1 == to) {
				opts.Progress(done, to-from)
			}
			mismatch := true
			var pe *PurgedError
			switch {
			case errors.As(derr, &pe):
				// Only the leaf hash is left: the tree and the next
				// entry's prev check it; its own prev is gone.
				mismatch = false
				purged[seq] = pe.By
				r.Purged++
			case derr != nil:
				blame(seq, "does not decode: %v", derr)
			case e.Seq != seq:
				blame(seq, "stored at %d but says seq %d", seq, e.Seq)
			default:
				mismatch = e.Prev != prevLeaf
				if e.Kind == KindCheckpoint {
					if len(e.SHA256) == 32 {
						cpEvents[[32]byte(e.SHA256)] = true
					}
					cpEntries = append(cpEntries, e)
				}
				if e.Kind == KindPurge {
					purges[seq] = e
				}
			}
			if seq > from {
				decide(seq-1, lastMismatch, mismatch)
			}
			lastMismatch = mismatch
			prevLeaf = leaf
			if err := rng.Append(leaf[:], visit); err != nil {
				return fmt.Errorf("tree at entry %d: %w", seq, err)
			}
			if cpSizes[seq+1] {
				root, err := rng.GetRootHash(nil)
				if err != nil {
					return err
				}
				roots[seq+1] = [32]byte(root)
			}
			return nil
		})
	})
	var gap *GapError
	switch {
	case errors.As(err, &gap):
		add(int64(gap.Seq), -1, "missing: the sequence has a gap")
	case err != nil:
		return nil, fmt.Errorf("ledger: verify: %w", err)
	}
	if to > from && gap == nil {
		// The last entry checked has no successor in range: compare its hash
		// with the next entry's prev, or with the head.
		next, what := true, "the ledger head"
		if to < head.Size {
			what = fmt.Sprintf("entry %d's prev", to)
			_, raw, err := l.Entry(ctx, to)
			if e, derr := DecodeEntry(raw); err == nil && derr == nil {
				next = e.Prev != prevLeaf
			} else if errors.Is(err, ErrPurged) {
				next = false // its prev is gone with it
			}
		} else {
			next = head.LastLeaf != prevLeaf
		}
		decide(to-1, lastMismatch, next)
		if next {
			blame(to-1, "altered: its hash does not match %s", what)
		}
	}
	if from == 0 && to == head.Size && gap == nil && beyondHead {
		add(int64(head.Size), -1, "exists beyond the head (%d entries)", head.Size)
	}

	l.checkPurges(ctx, purged, purges, head.Size, func(seq uint64, format string, a ...any) { blame(seq, format, a...) })

	for _, e := range cpEntries {
		if msg := l.checkCheckpointEntry(ctx, e, cps, head.Size); msg != "" {
			add(int64(e.Seq), -1, "%s", msg)
		}
	}

	for _, p := range nodeProblems {
		add(p.Seq, p.Checkpoint, "%s", p.Message)
	}

	// Checkpoints.
	if opts.Roots == nil {
		r.Notes = append(r.Notes, "checkpoint signatures not checked: no trust anchors given")
	}
	if opts.TSARoots == nil {
		r.Notes = append(r.Notes, "checkpoint timestamps not checked: no TSA trust anchors given")
	}
	var prevCP *Checkpoint
	for _, c := range cps {
		if prevCP != nil || from == 0 {
			if err := c.Follows(prevCP); err != nil {
				add(-1, int64(c.Size), "%v", checkpointProblem(err))
			}
		}
		prevCP = c
		if c.Size <= from || c.Size > to {
			continue
		}
		r.Checkpoints++
		if c.Size > head.Size {
			add(-1, int64(c.Size), "covers %d entries but the ledger has %d", c.Size, head.Size)
			continue
		}
		if root, ok := roots[c.Size]; !ok {
			add(-1, int64(c.Size), "no recomputed root (entries missing)")
		} else if root != c.Root {
			add(-1, int64(c.Size), "root %s does not match the entries (recomputed %s)",
				hex.EncodeToString(c.Root[:8]), hex.EncodeToString(root[:8]))
		}
		if !cpEvents[c.Hash()] && c.Size+1 <= to {
			r.Notes = append(r.Notes, fmt.Sprintf("checkpoint %d: no checkpoint event found in the entries checked", c.Size))
		}
		if opts.Roots != nil {
			if _, err := VerifyDetached(c.Body, c.Signature, opts.Roots, nil, c.Time); err != nil {
				add(-1, int64(c.Size), "signature: %v", err)
			} else {
				r.Signatures++
			}
		}
		if c.Pending() {
			r.PendingTimestamps++
			if opts.RequireTimestamps {
				add(-1, int64(c.Size), "no timestamp token yet")
			}
			continue
		}
		if opts.TSARoots != nil {
			if _, err := c.VerifyToken(opts.TSARoots); err != nil {
				add(-1, int64(c.Size), "%v", checkpointProblem(err))
			} else {
				r.Timestamps++
			}
		}
	}
	if r.PendingTimestamps > 0 && !opts.RequireTimestamps {
		r.Notes = append(r.Notes, fmt.Sprintf("%d checkpoints still wait for their timestamp token", r.PendingTimestamps))
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// checkpointProblem returns what a *verify.CheckpointError says is wrong,
// without naming the checkpoint again: a Problem does.
func checkpointProblem(err error) error {
	var ce *verify.CheckpointError
	if errors.As(err, &ce) {
		return ce.Err
	}
	return err
}

// checkCheckpointEntry checks an entry of kind checkpoint against the
// signed checkpoints: its tree_size, root, prev_checkpoint and sha256 must
// be those of the signed checkpoint of that size or, when the ledger keeps
// none of that size, its root must be the tree's at that size. It returns
// what is wrong, or "".
func (l *Ledger) checkCheckpointEntry(ctx context.Context, e *Entry, cps []*Checkpoint, headSize uint64) string {
	rec, err := e.Checkpoint()
	if err != nil {
		return fmt.Sprintf("checkpoint entry: %v", err)
	}
	size, root := rec.Size, rec.Root
	if size == 0 || size > e.Seq {
		return fmt.Sprintf("checkpoint entry: tree_size %d, but a checkpoint covers entries before its own record (1 to %d)", size, e.Seq)
	}
	for _, c := range cps {
		if c.Size != size {
			continue
		}
		sum := c.Hash()
		switch {
		case root != c.Root:
			return fmt.Sprintf("checkpoint entry: root %s is not the signed checkpoint %d's (%s)", hex.EncodeToString(root[:8]), size, hex.EncodeToString(c.Root[:8]))
		case rec.Prev != c.Prev:
			return fmt.Sprintf("checkpoint entry: prev_checkpoint is not the signed checkpoint %d's", size)
		case e.SHA256 != nil && !bytes.Equal(e.SHA256, sum[:]):
			return fmt.Sprintf("checkpoint entry: sha256 is not that of the signed checkpoint %d's body", size)
		}
		return ""
	}
	if size > headSize {
		return fmt.Sprintf("checkpoint entry: tree_size %d is beyond the ledger's %d entries", size, headSize)
	}
	// No signed checkpoint of that size is kept (a rebuilt ledger keeps
	// only the sealed ones): the root must be the entries'.
	want, err := l.RootAt(ctx, size)
	if err != nil {
		return fmt.Sprintf("checkpoint entry: no signed checkpoint of size %d, and the tree at that size is unreadable: %v", size, err)
	}
	if root != want {
		return fmt.Sprintf("checkpoint entry: no signed checkpoint of size %d, and root %s is not the tree's at that size (%s): not a checkpoint the gestore made",
			size, hex.EncodeToString(root[:8]), hex.EncodeToString(want[:8]))
	}
	return ""
}

// checkPurges checks that every purged entry names a later purge event
// that lists it, and reports the ones that do not through blame.
func (l *Ledger) checkPurges(ctx context.Context, purged map[uint64]uint64, purges map[uint64]*Entry, size uint64, blame func(seq uint64, format string, a ...any)) {
	ranges := map[uint64][][2]uint64{}
	for seq, by := range purged {
		rs, ok := ranges[by]
		if !ok {
			e, found := purges[by]
			if !found && by < size {
				if got, _, err := l.Entry(ctx, by); err == nil {
					e = got
				}
			}
			if e != nil && e.Kind == KindPurge {
				var err error
				if rs, err = e.LedgerRanges(); err != nil {
					rs = nil
				}
			}
			ranges[by] = rs
		}
		if by <= seq || !rangesContain(rs, seq) {
			blame(seq, "purged, but purge event %d does not list it: contents removed without a purge record", by)
		}
	}
}

// decodedEntry is one entry as decodeEntries hands it on.
type decodedEntry struct {
	seq  uint64
	raw  []byte
	leaf [32]byte
	e    *Entry
	err  error
}

// decodeEntries calls fn for entries [from, to) in order, as scanEntries
// does, with each entry already decoded and hashed: decoding, the costly
// part of verification, runs on every core.
func (l *Ledger) decodeEntries(ctx context.Context, from, to uint64, fn func(seq uint64, raw []byte, leaf [32]byte, e *Entry, err error) error) error {
	const chunk = 1024
	type batch struct {
		items []decodedEntry
		done  chan struct{}
	}
	workers := max(runtime.GOMAXPROCS(0), 1)
	todo := make(chan *batch, workers*2)
	ordered := make(chan *batch, workers*4)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range todo {
				for i := range b.items {
					it := &b.items[i]
					if leaf, by, ok := parsePurged(it.raw); ok {
						it.leaf, it.err = leaf, &PurgedError{Seq: it.seq, By: by, Leaf: leaf}
						continue
					}
					it.leaf = LeafHash(it.raw)
					it.e, it.err = DecodeEntry(it.raw)
				}
				close(b.done)
			}
		}()
	}
	scanErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(todo)
		cur := &batch{done: make(chan struct{})}
		send := func() bool {
			select {
			case ordered <- cur:
			case <-ctx.Done():
				return false
			}
			select {
			case todo <- cur:
			case <-ctx.Done():
				return false
			}
			cur = &batch{done: make(chan struct{})}
			return true
		}
		err := l.scanEntries(ctx, from, to, func(seq uint64, raw []byte) error {
			cur.items = append(cur.items, decodedEntry{seq: seq, raw: raw})
			if len(cur.items) == chunk && !send() {
				return ctx.Err()
			}
			return nil
		})
		if len(cur.items) > 0 {
			send()
		}
		scanErr <- err
	}()
	var fnErr error
	for b := range ordered {
		if fnErr != nil {
			continue // drain, so that the scanner can stop
		}
		select {
		case <-b.done:
		case <-ctx.Done():
			fnErr = ctx.Err()
			continue
		}
		for _, it := range b.items {
			if fnErr = fn(it.seq, it.raw, it.leaf, it.e, it.err); fnErr != nil {
				cancel()
				break
			}
		}
	}
	wg.Wait()
	err := <-scanErr
	if fnErr != nil {
		return fnErr
	}
	return err
}
