package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custode/custode/ledger/diskspace"
	"github.com/custode/custode/ledger/driver"
	badgerdriver "github.com/custode/custode/ledger/driver/badger"
	"github.com/custode/custode/ledger/verify"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Defaults for Options. Each is a trade-off measured on a 2-core machine
// (see the package benchmarks).
const (
	// DefaultMaxBatchEntries bounds the entries one group commit writes:
	// large enough that one fsync serves hundreds of appenders, small enough
	// that a commit stays well under the store's transaction limits.
	DefaultMaxBatchEntries = 4096
	// MaxAppendEvents bounds the events of one Append call, which are
	// committed atomically together.
	MaxAppendEvents = 4096
	// maxBatchBytes bounds the estimated bytes of one driver write batch.
	maxBatchBytes = 6 << 20
)

// Options configure a Ledger.
type Options struct {
	// Dir is the directory of the ledger: its journal, its index and,
	// unless Driver is set, its store (a badger store in Dir/entries).
	// Required.
	Dir string
	// Driver, if set, is the store of entries, tree nodes, checkpoints and
	// the head, instead of the badger store in Dir/entries; the ledger
	// takes it over and closes it on Close (and when Open fails). It must
	// be opened read-only if ReadOnly is set. Tests of the ledger's logic
	// use ledger/driver/mem.
	Driver driver.Driver
	// ReadOnly opens the store for reading and verification only: Append
	// fails and no checkpoints are made. Any consistency problem is left for
	// Verify to report rather than refused at open.
	ReadOnly bool
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// MaxBatchEntries bounds one group commit; 0 means DefaultMaxBatchEntries.
	MaxBatchEntries int
	// Checkpoints, if set, makes the ledger sign and timestamp checkpoints.
	Checkpoints *CheckpointOptions
	// MinFreeBytes is the free space Append keeps on the filesystem of
	// Dir: while less is free it fails with a *diskspace.LowSpaceError,
	// which wraps syscall.ENOSPC. 0 means diskspace.DefaultReserve.
	MinFreeBytes uint64
	// MaxEventDelay, if positive, makes Append refuse, with a
	// *LateEventError, an event not marked imported (DetailImported)
	// whose riferimento temporale is earlier than the ledger's clock
	// (CheckpointOptions.Now when given, else the system's), or
	// the time of the newest timestamped checkpoint if that is later,
	// minus MaxEventDelay: such an event would be covered by a first
	// timestamp later than the bound a verifier allows. (The clock counts
	// too: after days without traffic the newest checkpoint is days old,
	// and an event dated then would still be let in.)
	// DefaultMaxEventDelay gives the bound for a checkpoint interval.
	// 0 checks nothing.
	MaxEventDelay time.Duration

	// journalSegmentBytes is the size of a new journal segment; 0 means
	// journalSegmentBytes (64 MiB). Tests make it small: each segment is
	// written full of zeros and synced before use.
	journalSegmentBytes int64
}

// EventDelaySlack is what DefaultMaxEventDelay adds to the checkpoint
// interval: verify.EventDelaySlack, the bound a verifier holds to.
const EventDelaySlack = verify.EventDelaySlack

// DefaultMaxEventDelay returns the longest an event's riferimento
// temporale may precede the first timestamp that covers it, for
// checkpoints made every interval (0 means DefaultCheckpointInterval): the
// interval plus EventDelaySlack.
func DefaultMaxEventDelay(interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = DefaultCheckpointInterval
	}
	return interval + EventDelaySlack
}

// LateEventError reports an event, not marked imported, dated too long
// before the ledger's clock or its newest timestamped checkpoint.
type LateEventError struct {
	Time       time.Time     // the event's riferimento temporale
	Checkpoint time.Time     // the later of the ledger's clock and the newest timestamped checkpoint's time
	Max        time.Duration // Options.MaxEventDelay
}

func (e *LateEventError) Error() string {
	return fmt.Sprintf("riferimento_temporale %s is %v before the ledger's time (%s, its clock or its newest timestamped checkpoint), more than the %v allowed: an event recorded late must be marked %q",
		e.Time.UTC().Format(time.RFC3339Nano), e.Checkpoint.Sub(e.Time).Round(time.Millisecond),
		e.Checkpoint.UTC().Format(time.RFC3339Nano), e.Max, DetailImported)
}

// spaceCheckEvery is how long Append trusts the last look at the free
// space: at 100,000 appends/s the ledger writes about 7 MB in that time,
// well inside any reserve.
const spaceCheckEvery = 10 * time.Millisecond

// Ledger is an append-only evidence log over a driver.Driver (badger by
// default). Its methods are safe for concurrent use.
type Ledger struct {
	db       driver.Driver // entries, tree nodes, checkpoints, head: made durable by jnl
	index    *indexStore   // the indexes: derived from the entries
	jnl      *journal      // the write-ahead journal, owned by the sequencer
	log      *slog.Logger
	readOnly bool
	maxBatch int

	kick     chan struct{}  // cap 1: a group is open
	storeq   chan *group    // sealed groups, to the store writer
	finishq  chan finishReq // journaled groups, to the finisher
	finished chan struct{}  // closed when the finisher has ended
	imports  chan importReq
	maint    chan maintReq
	stop     chan struct{}
	stopped  chan struct{} // closed when the committer has ended

	// The sequencer's state: the end of the ledger as if every group
	// sealed or open were committed. Under seqMu once Open has returned.
	seqMu   sync.Mutex
	size    uint64
	last    [32]byte
	rng     *compact.Range
	rangf   *compact.RangeFactory
	leafH   leafHasher
	open    *group // the group appends join, nil if none
	closing bool   // appends are refused

	mu        sync.Mutex
	head      Head          // last durable size and root, for readers
	applied   uint64        // entries the store holds, at least up to head
	appliedCh chan struct{} // closed when applied grows or broken is set
	broken    error         // set when the store failed after the journal: appends are refused
	closeErr  error
	closed    bool

	cp *checkpointer

	// maxDelay is Options.MaxEventDelay; stamped the time of the newest
	// timestamped checkpoint, in Unix nanoseconds (0: none yet).
	maxDelay time.Duration
	stamped  atomic.Int64
	// now is the ledger's clock for maxDelay: CheckpointOptions.Now when
	// given, else time.Now.
	now func() time.Time

	guard    *diskspace.Guard
	prealloc *diskspace.Preallocator    // nil when read-only
	space    atomic.Pointer[spaceCheck] // the last look, read without spaceMu
	spaceMu  sync.Mutex                 // one look at a time; guards lowSince, lowCause
	lowSince time.Time                  // when appends were first refused for space; zero if not, or recorded
	lowCause string

	idxMu       sync.Mutex
	idxQueue    []indexWork   // under idxMu
	idxPostings int           // postings in idxQueue, under idxMu
	idxClosed   bool          // under idxMu
	idxSignal   chan struct{} // cap 1: the queue grew or closed
	idxRoom     chan struct{} // cap 1: the indexer took the queue
	indexerDone chan struct{}
	indexed     uint64        // entries indexed, under mu
	indexedCh   chan struct{} // closed when indexed grows, under mu

	commitNanos atomic.Uint64
	onCommit    atomic.Pointer[func(entries uint64, d time.Duration)] // see ObserveCommits
	groups      atomic.Uint64                                         // group commits made
	entries     atomic.Uint64                                         // entries in them
}

// Stats counts the work of the sequencer since Open.
type Stats struct {
	Groups     uint64        // group commits (one fsync each)
	Entries    uint64        // entries appended
	CommitTime time.Duration // spent waiting for group commits to be durable
}

// Stats returns the counts of the sequencer since Open.
func (l *Ledger) Stats() Stats {
	return Stats{Groups: l.groups.Load(), Entries: l.entries.Load(), CommitTime: time.Duration(l.commitNanos.Load())}
}

// ObserveCommits makes the ledger call fn after each group commit is
// durable, with the entries it made durable and the time from the first
// append's arrival to then (what those appends waited). fn runs on the
// commit path: it MUST be quick and MUST NOT call the ledger. A nil fn
// stops the calls.
func (l *Ledger) ObserveCommits(fn func(entries uint64, d time.Duration)) {
	if fn == nil {
		l.onCommit.Store(nil)
		return
	}
	l.onCommit.Store(&fn)
}

// Head describes the ledger as of its last durable commit.
type Head struct {
	Size     uint64   // number of entries
	Root     [32]byte // RFC 6962 root of the tree over all entries
	LastLeaf [32]byte // leaf hash of entry Size-1
}

var hasher = rfc6962.DefaultHasher

// store keys
const (
	prefixEntry      = 'e' // e seq(8) -> canonical entry bytes
	prefixNode       = 'n' // n level(1) index(8) -> node hash, levels 4, 8, 12, …
	prefixCheckpoint = 'c' // c size(8) -> checkpoint record
)

var keyHead = []byte("m:head") // size(8) last leaf(32)

// storedLevelStep is the spacing of the tree levels whose node hashes are
// stored: a node at any other level is recomputed from at most
// 2^(storedLevelStep-1) stored nodes (or entries, below the first stored
// level).
const storedLevelStep = 4

func entryKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func nodeKey(level uint, index uint64) []byte {
	k := make([]byte, 10)
	k[0] = prefixNode
	k[1] = byte(level)
	binary.BigEndian.PutUint64(k[2:], index)
	return k
}

// Open opens or creates the ledger in opts.Dir. A store left by a crash
// reopens at its last durable commit: entries are committed atomically, so
// there is no torn entry and no gap.
func Open(ctx context.Context, opts Options) (*Ledger, error) {
	if opts.Dir == "" {
		return nil, errors.New("ledger: open: no directory")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db := opts.Driver
	if db == nil {
		// The store does not sync: the journal makes entries durable.
		bdb, err := badgerdriver.Open(filepath.Join(opts.Dir, "entries"), badgerdriver.Options{ReadOnly: opts.ReadOnly, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("ledger: open %s: %w", opts.Dir, err)
		}
		db = bdb
	}
	if !opts.ReadOnly {
		if err := removeOldIndex(opts.Dir, log); err != nil {
			db.Close()
			return nil, fmt.Errorf("ledger: open %s: %w", opts.Dir, err)
		}
	}
	idx, err := openIndexStore(filepath.Join(opts.Dir, indexDirName), opts.ReadOnly, log)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: open %s: index: %w", opts.Dir, err)
	}
	l := &Ledger{
		db:       db,
		index:    idx,
		log:      log,
		readOnly: opts.ReadOnly,
		maxBatch: opts.MaxBatchEntries,
		rangf:    &compact.RangeFactory{Hash: hashChildren},
		guard:    diskspace.NewGuard(opts.Dir, opts.MinFreeBytes),
		maxDelay: opts.MaxEventDelay,
		now:      time.Now,
	}
	if opts.Checkpoints != nil && opts.Checkpoints.Now != nil {
		l.now = opts.Checkpoints.Now
	}
	if l.maxBatch <= 0 {
		l.maxBatch = DefaultMaxBatchEntries
	}
	if err := l.load(ctx); err != nil {
		db.Close()
		idx.close()
		return nil, err
	}
	l.applied, l.appliedCh = l.size, make(chan struct{})
	if err := l.recoverJournal(ctx, filepath.Join(opts.Dir, "journal"), opts.journalSegmentBytes); err != nil {
		db.Close()
		idx.close()
		return nil, err
	}
	if opts.ReadOnly {
		return l, nil
	}
	if opts.Driver == nil {
		// Badger's sparse files get their blocks (see package diskspace).
		if l.prealloc, err = diskspace.Preallocate(filepath.Join(opts.Dir, "entries"), log); err != nil {
			l.jnl.close()
			db.Close()
			idx.close()
			return nil, fmt.Errorf("ledger: open %s: %w", opts.Dir, err)
		}
	}
	fail := func(err error) (*Ledger, error) {
		if l.prealloc != nil {
			l.prealloc.Close()
		}
		l.jnl.close()
		db.Close()
		idx.close()
		return nil, err
	}
	if l.maxDelay > 0 {
		if err := l.loadStamped(); err != nil {
			return fail(err)
		}
	}
	if opts.Checkpoints != nil {
		cp, err := newCheckpointer(ctx, l, *opts.Checkpoints)
		if err != nil {
			return fail(err)
		}
		l.cp = cp
	}
	l.indexedCh = make(chan struct{})
	if err := l.catchUpIndex(ctx); err != nil {
		return fail(err)
	}
	l.idxSignal = make(chan struct{}, 1)
	l.idxRoom = make(chan struct{}, 1)
	l.indexerDone = make(chan struct{})
	go l.runIndexer()
	l.kick = make(chan struct{}, 1)
	l.storeq = make(chan *group, 4)
	l.finishq = make(chan finishReq, 4)
	l.finished = make(chan struct{})
	l.imports = make(chan importReq)
	l.maint = make(chan maintReq)
	l.stop = make(chan struct{})
	l.stopped = make(chan struct{})
	go l.runStore()
	go l.runFinisher()
	go l.runCommitter()
	if l.cp != nil {
		go l.cp.run()
	}
	return l, nil
}

// load reads the head and rebuilds the right edge of the tree.
func (l *Ledger) load(ctx context.Context) error {
	return l.db.View(ctx, func(txn driver.Reader) error {
		v, err := txn.Get(keyHead)
		if errors.Is(err, driver.ErrNotFound) {
			l.rng = l.rangf.NewEmptyRange(0)
			l.head = Head{Root: emptyRoot()}
			return nil
		}
		if err != nil {
			return fmt.Errorf("ledger: open: read head: %w", err)
		}
		if len(v) != 40 {
			return fmt.Errorf("ledger: open: head record is %d bytes, want 40", len(v))
		}
		l.size = binary.BigEndian.Uint64(v[:8])
		copy(l.last[:], v[8:])
		ids := compact.RangeNodes(0, l.size, nil)
		hashes := make([][]byte, len(ids))
		for i, id := range ids {
			if hashes[i], err = l.subtreeHash(txn, id); err != nil {
				return fmt.Errorf("ledger: open: rebuild tree: %w", err)
			}
		}
		if l.rng, err = l.rangf.NewRange(0, l.size, hashes); err != nil {
			return fmt.Errorf("ledger: open: rebuild tree: %w", err)
		}
		// A read-only open serves verify, which must reach a store whose
		// entries were altered to name them: it checks no entry here.
		if l.size > 0 && !l.readOnly {
			raw, err := txn.Get(entryKey(l.size - 1))
			if err != nil {
				return fmt.Errorf("ledger: open: last entry %d: %w", l.size-1, err)
			}
			if storedLeaf(raw) != l.last {
				return fmt.Errorf("ledger: open: entry %d does not match the head: run ledger verify", l.size-1)
			}
		}
		if _, err := txn.Get(entryKey(l.size)); err == nil && !l.readOnly {
			return fmt.Errorf("ledger: open: entry %d exists beyond the head: run ledger verify", l.size)
		}
		root, err := l.rng.GetRootHash(nil)
		if err != nil {
			return fmt.Errorf("ledger: open: root: %w", err)
		}
		l.head = Head{Size: l.size, LastLeaf: l.last}
		copy(l.head.Root[:], root)
		return ctx.Err()
	})
}

func emptyRoot() [32]byte {
	var r [32]byte
	copy(r[:], hasher.EmptyRoot())
	return r
}

// Head returns the size and root of the ledger as of its last durable commit.
func (l *Ledger) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head
}

// ErrClosed is returned by calls on a closed ledger.
var ErrClosed = errors.New("ledger: closed")

// ErrReadOnly is returned by Append on a ledger opened read-only.
var ErrReadOnly = errors.New("ledger: opened read-only")

type appendReq struct {
	events []encodedEvent
	bytes  int
	first  uint64 // set by addToGroup
}

// Append adds events to the ledger, in order and atomically together, and
// returns their sequence numbers.
//
// Append MUST NOT return a sequence number before the entry is durable: when
// it returns without error the entries have been fsynced and survive a crash.
// Callers MUST NOT acknowledge anything (an SMTP reply, a receipt) that
// depends on an event before Append has returned for it. Concurrent calls
// share fsyncs (group commit).
//
// An invalid event fails the whole call with an error naming the event and
// its field. If ctx is done before Append returns, the events may or may not
// have been appended.
func (l *Ledger) Append(ctx context.Context, events ...Event) ([]uint64, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	if len(events) == 0 {
		return nil, nil
	}
	if len(events) > MaxAppendEvents {
		return nil, fmt.Errorf("ledger: append: %d events, more than %d", len(events), MaxAppendEvents)
	}
	req := &appendReq{events: make([]encodedEvent, len(events))}
	var oldest time.Time // events may not be dated before it
	if l.maxDelay > 0 {
		ref := l.now()
		if ns := l.stamped.Load(); ns != 0 && time.Unix(0, ns).After(ref) {
			ref = time.Unix(0, ns)
		}
		oldest = ref.Add(-l.maxDelay)
	}
	for i := range events {
		err := events[i].Validate()
		if err == nil && events[i].Time.Before(oldest) && !events[i].Imported() {
			err = &LateEventError{Time: events[i].Time, Checkpoint: oldest.Add(l.maxDelay), Max: l.maxDelay}
		}
		if err != nil {
			return nil, fmt.Errorf("ledger: append event %d (%s %s): %w", i, events[i].Kind, events[i].Identificativo, err)
		}
		req.events[i] = encodeEvent(&events[i])
		req.events[i].index = indexTerms(&events[i])
		req.bytes += req.events[i].size()
	}
	if req.bytes > maxBatchBytes {
		return nil, fmt.Errorf("ledger: append: %d bytes in one call, more than %d", req.bytes, maxBatchBytes)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger: append: %w", err)
	}
	if err := l.checkSpace(ctx); err != nil {
		return nil, fmt.Errorf("ledger: append: %w", err)
	}
	g, err := l.enqueue(req)
	if err != nil {
		return nil, err
	}
	select {
	case <-g.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("ledger: append: %w (the events may have been appended)", ctx.Err())
	}
	if g.res != nil {
		return nil, g.res
	}
	seqs := make([]uint64, len(events))
	for i := range seqs {
		seqs[i] = req.first + uint64(i)
	}
	return seqs, nil
}

// noteStamped records that the checkpoint of time t has its timestamp
// token: events dated more than maxDelay before it are refused.
func (l *Ledger) noteStamped(t time.Time) {
	ns := t.UnixNano()
	for {
		cur := l.stamped.Load()
		if ns <= cur || l.stamped.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// loadStamped finds the newest checkpoint with a timestamp token, newest
// first (only the last few wait for one).
func (l *Ledger) loadStamped() error {
	err := l.db.View(context.Background(), func(txn driver.Reader) error {
		for kv, err := range txn.Scan([]byte{prefixCheckpoint}, nil, true) {
			if err != nil {
				return err
			}
			c, err := decodeCheckpointRecord(kv.Value)
			if err != nil {
				return fmt.Errorf("at key %x: %w", kv.Key, err)
			}
			if !c.Pending() {
				l.noteStamped(c.Time)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ledger: newest timestamped checkpoint: %w", err)
	}
	return nil
}

// spaceCheck is the outcome of one look at the free space.
type spaceCheck struct {
	at  time.Time
	err error
}

// checkSpace returns nil while the filesystem has the reserve free. It
// asks the kernel at most every spaceCheckEvery. When space comes back
// after appends were refused, it records the refusals as an outage of
// the ledger's storage (the audit's P02 rows), before the append that
// found the space goes on.
func (l *Ledger) checkSpace(ctx context.Context) error {
	fresh := func(c *spaceCheck, now time.Time) bool {
		age := now.Sub(c.at)
		return age >= 0 && age < spaceCheckEvery
	}
	if c := l.space.Load(); c != nil && fresh(c, time.Now()) {
		return c.err
	}
	l.spaceMu.Lock()
	now := time.Now()
	if c := l.space.Load(); c != nil && fresh(c, now) {
		l.spaceMu.Unlock()
		return c.err
	}
	err := l.guard.Check()
	l.space.Store(&spaceCheck{at: now, err: err})
	if err != nil {
		if l.lowSince.IsZero() {
			l.lowSince, l.lowCause = now, err.Error()
			l.log.Warn("ledger: refusing appends: the disk is nearly full", "err", err)
		}
		l.spaceMu.Unlock()
		return err
	}
	since, cause := l.lowSince, l.lowCause
	l.lowSince, l.lowCause = time.Time{}, ""
	l.spaceMu.Unlock()
	if !since.IsZero() {
		l.log.Info("ledger: taking appends again: the disk has room", "dir", l.guard.Dir(), "refused_since", since)
		if rerr := l.RecordOutage(ctx, "", "storage", since, now, "appends refused: "+cause); rerr != nil {
			l.log.Error("ledger: record the storage outage; trying again on the next append", "err", rerr)
			l.spaceMu.Lock()
			if l.lowSince.IsZero() {
				l.lowSince, l.lowCause = since, cause
			}
			l.spaceMu.Unlock()
		}
	}
	return nil
}

func (p *encodedEvent) size() int {
	return p.Len() + 180
}

func headValue(size uint64, last [32]byte) []byte {
	v := make([]byte, 40)
	binary.BigEndian.PutUint64(v, size)
	copy(v[8:], last[:])
	return v
}

// recoverJournal opens the journal and brings the store and the journal
// level: entries the journal holds beyond the store (lost by the store in a
// crash) are replayed into it, and entries the store holds beyond the
// journal (a group whose journal write a crash cut short, never answered)
// are written to the journal. On a read-only ledger it only reports entries
// the store lacks.
func (l *Ledger) recoverJournal(ctx context.Context, dir string, segBytes int64) error {
	j, recs, err := openJournal(dir, l.size, l.readOnly, segBytes)
	if err != nil {
		return fmt.Errorf("ledger: open: journal: %w", err)
	}
	if l.readOnly {
		if j.next > l.size {
			return fmt.Errorf("ledger: open: the journal holds entries %d-%d that the store lacks; open the ledger for writing once to replay them", l.size, j.next-1)
		}
		return nil
	}
	l.jnl = j
	fail := func(err error) error {
		j.close()
		return fmt.Errorf("ledger: open: journal: %w", err)
	}
	if j.next > l.size {
		from := l.size
		if err := l.replay(ctx, recs); err != nil {
			return fail(err)
		}
		l.log.Info("ledger: replayed entries from the journal", "from", from, "to", l.size)
	}
	if j.next < l.size {
		from := j.next
		var raws [][]byte
		var bytes int
		flush := func() error {
			if len(raws) == 0 {
				return nil
			}
			err := j.append(encodeJournalRecord(j.next, raws), len(raws))
			raws, bytes = raws[:0], 0
			return err
		}
		err := l.scanEntries(ctx, j.next, l.size, func(seq uint64, raw []byte) error {
			if _, _, ok := parsePurged(raw); ok {
				return fmt.Errorf("entry %d, beyond the journal, is purged", seq)
			}
			raws = append(raws, raw)
			bytes += len(raw)
			if len(raws) == MaxAppendEvents || bytes >= maxBatchBytes {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fail(err)
		}
		l.log.Info("ledger: journaled entries the store held beyond the journal", "from", from, "to", l.size)
	}
	return nil
}

// replay writes into the store the journaled entries from l.size on,
// checking that each continues the chain.
func (l *Ledger) replay(ctx context.Context, recs []journalRecord) error {
	var kvs []kv
	visit := func(id compact.NodeID, h []byte) {
		if id.Level > 0 && id.Level%storedLevelStep == 0 {
			kvs = append(kvs, kv{nodeKey(id.Level, id.Index), h})
		}
	}
	flush := func() error {
		if len(kvs) == 0 {
			return nil
		}
		var b driver.Batch
		for _, e := range append(kvs, kv{keyHead, headValue(l.size, l.last)}) {
			b.Set(e.k, e.v)
		}
		kvs = kvs[:0]
		return l.db.Write(ctx, &b)
	}
	for _, rec := range recs {
		for i, raw := range rec.entries {
			seq := rec.first + uint64(i)
			if seq < l.size {
				continue
			}
			e, err := DecodeEntry(raw)
			if err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
			if e.Seq != seq || e.Prev != l.last {
				return fmt.Errorf("entry %d does not continue the store's chain", seq)
			}
			kvs = append(kvs, kv{entryKey(seq), raw})
			leaf := LeafHash(raw)
			if err := l.rng.Append(leaf[:], visit); err != nil {
				return fmt.Errorf("entry %d: tree: %w", seq, err)
			}
			l.last = leaf
			l.size++
			if len(kvs) >= 1024 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	root, err := l.rng.GetRootHash(nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.head = Head{Size: l.size, LastLeaf: l.last}
	copy(l.head.Root[:], root)
	l.mu.Unlock()
	l.setApplied(l.size)
	return l.db.Sync(ctx)
}

// Close stops the checkpointer and the sequencer, fails appends still
// queued, and closes the store.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	l.mu.Unlock()
	if l.cp != nil {
		l.cp.close()
	}
	if l.stop != nil {
		close(l.stop)
		<-l.stopped
		l.idxMu.Lock()
		l.idxClosed = true
		l.idxMu.Unlock()
		signal(l.idxSignal)
		<-l.indexerDone
	}
	var jerr, perr error
	if l.jnl != nil {
		jerr = l.jnl.close()
	}
	if l.prealloc != nil {
		perr = l.prealloc.Close()
	}
	err := errors.Join(jerr, l.index.close(), l.db.Close(), perr)
	if err != nil {
		err = fmt.Errorf("ledger: close: %w", err)
	}
	l.mu.Lock()
	l.closeErr = err
	l.mu.Unlock()
	return err
}

// Entry returns entry seq as stored, with its canonical bytes. For an entry
// purged past retention it returns a *PurgedError (errors.Is ErrPurged).
func (l *Ledger) Entry(ctx context.Context, seq uint64) (*Entry, []byte, error) {
	if !l.readOnly && seq >= l.Head().Size {
		// Possibly in the store, but not yet durable.
		return nil, nil, fmt.Errorf("ledger: entry %d: %w", seq, ErrNotFound)
	}
	if err := l.waitApplied(ctx, seq+1); err != nil {
		return nil, nil, fmt.Errorf("ledger: entry %d: %w", seq, err)
	}
	var raw []byte
	err := l.db.View(ctx, func(txn driver.Reader) error {
		var err error
		raw, err = txn.Get(entryKey(seq))
		return err
	})
	if errors.Is(err, driver.ErrNotFound) {
		return nil, nil, fmt.Errorf("ledger: entry %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: entry %d: %w", seq, err)
	}
	if leaf, by, ok := parsePurged(raw); ok {
		return nil, nil, &PurgedError{Seq: seq, By: by, Leaf: leaf}
	}
	e, err := DecodeEntry(raw)
	if err != nil {
		return nil, raw, err
	}
	if e.Seq != seq {
		return nil, raw, fmt.Errorf("ledger: entry %d: stored entry says seq %d", seq, e.Seq)
	}
	return e, raw, nil
}

// ErrNotFound is returned for an entry, checkpoint or node the ledger does
// not hold.
var ErrNotFound = errors.New("not found")

// scanEntries calls fn with the canonical bytes of entries [from, to) in
// order, stopping at the first error. A missing entry is reported as a gap.
func (l *Ledger) scanEntries(ctx context.Context, from, to uint64, fn func(seq uint64, raw []byte) error) error {
	if err := l.waitApplied(ctx, to); err != nil {
		return err
	}
	return l.db.View(ctx, func(txn driver.Reader) error {
		want := from
		for e, err := range txn.Scan([]byte{prefixEntry}, entryKey(from), false) {
			if err != nil {
				return fmt.Errorf("ledger: read entry %d: %w", want, err)
			}
			if want >= to {
				break
			}
			if want%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			k := e.Key
			if len(k) != 9 {
				return fmt.Errorf("ledger: malformed entry key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[1:])
			if seq != want {
				return &GapError{Seq: want}
			}
			if err := fn(seq, e.Value); err != nil {
				return err
			}
			want++
		}
		if want < to {
			return &GapError{Seq: want}
		}
		return nil
	})
}

// GapError reports a sequence number missing from the store.
type GapError struct{ Seq uint64 }

func (e *GapError) Error() string { return fmt.Sprintf("ledger: entry %d is missing", e.Seq) }

// put writes one key in its own batch.
func (l *Ledger) put(ctx context.Context, key, value []byte) error {
	var b driver.Batch
	b.Set(key, value)
	return l.db.Write(ctx, &b)
}
