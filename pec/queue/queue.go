package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Limits on the fields of an Item.
const (
	// MaxIDLength is the longest Item.ID, in bytes.
	MaxIDLength = 200
	// maxField bounds Destination, Ref, From and each address of To.
	maxField = 998
	// maxRecipients bounds To.
	maxRecipients = 10000
	// maxLastError bounds Item.LastError, in bytes.
	maxLastError = 1000
)

// Defaults of Options.
const (
	// DefaultMinBackoff is the wait after a first failure.
	DefaultMinBackoff = 30 * time.Second
	// DefaultMaxBackoff is the longest wait between attempts.
	DefaultMaxBackoff = time.Hour
	// DefaultWorkers is how many deliveries run at once.
	DefaultWorkers = 8
	// DefaultPoll is how often Run looks for due items.
	DefaultPoll = time.Second
)

var (
	// ErrExists is wrapped by the error of an Enqueue naming an ID that the
	// queue already holds (or that the same call names twice).
	ErrExists = errors.New("item already queued")
	// ErrNotFound is wrapped by the error of a Remove naming an ID that the
	// queue does not hold.
	ErrNotFound = errors.New("item not queued")
	// ErrClosed is wrapped by the errors of calls on a closed Queue.
	ErrClosed = errors.New("queue closed")
)

// An Item is a message to deliver, with its envelope and its delivery
// state. Enqueue refuses an item whose ID is not as described below, whose
// Destination, Ref, From or recipients are longer than 998 bytes, not
// UTF-8 or hold control characters (CR and LF included), whose Destination
// is empty or holds spaces, or that has no recipient or an empty Message.
type Item struct {
	// ID names the item, unique in the queue and chosen by the caller (for
	// example an identificativo, "/" and a destination): 1 to MaxIDLength
	// bytes of A-Z a-z 0-9 . _ @ + = / -, without "..".
	ID string
	// Destination routes the item (a domain such as "b.example", or
	// "local"): after a DestinationError, the destination's items wait
	// together. Required.
	Destination string
	// Ref is free for the caller (the identificativo of the transaction,
	// say): kept with the item and handed back, never interpreted.
	Ref string
	// From is the envelope sender; it may be empty (the null sender).
	From string
	// To are the envelope recipients: at least one.
	To []string
	// Message is the message, as it will be sent. Required.
	Message []byte
	// Enqueued is when Enqueue took the item; Enqueue sets it.
	Enqueued time.Time
	// Attempts counts the failed delivery attempts so far; Enqueue sets
	// it to zero.
	Attempts int
	// NextAttempt is when the item is next due. A future NextAttempt given
	// to Enqueue delays the first attempt; otherwise Enqueue sets it to
	// Enqueued.
	NextAttempt time.Time
	// LastError is the error of the last failed attempt, cut to 1000
	// bytes; Enqueue clears it.
	LastError string
}

// A PermanentError, returned (possibly wrapped) by a delivery function,
// means the item can never be delivered: the queue removes it instead of
// retrying, after calling Options.OnPermanent.
type PermanentError struct {
	Err error
}

// Error returns the message of the underlying error.
func (e *PermanentError) Error() string {
	if e == nil || e.Err == nil {
		return "permanent delivery failure"
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *PermanentError) Unwrap() error { return e.Err }

// A DestinationError, returned (possibly wrapped) by a delivery function,
// means that the item's destination could not be reached at all (a
// connection refused, a DNS failure, a timeout before the server spoke):
// a temporary failure of the destination rather than of the item. Only
// such failures put the destination in backoff, so that its other items
// wait with it; any other temporary failure backs off the failing item
// alone, and an item that keeps failing never delays another. A delivery
// function that delivers in process (the gestore's "local" destination)
// never returns one.
type DestinationError struct {
	Err error
}

// Error returns the message of the underlying error.
func (e *DestinationError) Error() string {
	if e == nil || e.Err == nil {
		return "destination unreachable"
	}
	return e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *DestinationError) Unwrap() error { return e.Err }

// Options configure a Queue.
type Options struct {
	// Dir holds the queue; it is created if missing. Required.
	Dir string
	// Now returns the current time; time.Now if nil. Tests give a clock
	// they advance by hand: due times are reckoned with Now, while polling
	// uses real time.
	Now func() time.Time
	// Logger receives warnings (damaged files, failed attempts) and
	// errors; slog.Default() if nil.
	Logger *slog.Logger
	// MinBackoff is the wait after a first failure; it doubles with each
	// further failure of the item (or, after DestinationErrors, each round
	// of failures of its destination), up to MaxBackoff. Defaults:
	// DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Workers is how many deliveries run at once; DefaultWorkers if zero or
	// less. A destination gets any number of them, and one while it is
	// unreachable (after a DestinationError).
	Workers int
	// Poll is how often Run looks for due items when nothing else wakes it;
	// DefaultPoll if zero or less.
	Poll time.Duration
	// OnPermanent, if not nil, is called by Run with an item whose delivery
	// failed with a PermanentError (err is the error returned by the
	// delivery function), before the item is removed: the gestore builds
	// its avviso di mancata consegna there. If it returns an error the item
	// is kept and retried as after a temporary failure, so that what
	// OnPermanent does is never lost.
	OnPermanent func(ctx context.Context, it Item, err error) error
}

// A Queue is a durable queue of outbound messages in a directory. Its
// methods are safe for concurrent use. Only one Queue, in one process, may
// have a directory open at a time.
type Queue struct {
	opts                  Options
	log                   *slog.Logger
	items, tmp, damaged   string // directories
	lock                  *os.File
	wake                  chan struct{}
	commits               committer
	ops                   sync.WaitGroup // calls under way, waited for by Close
	runDone               chan struct{}  // closed when Run returns; nil if not running
	runStop               context.CancelFunc
	mu                    sync.Mutex
	entries               map[string]*entry // by ID
	pending               map[string]bool   // IDs being written or removed
	dests                 map[string]*dest
	running, closed       bool
	quarantined, orphaned int          // counts, for tests; guarded by mu after Open
	syncs                 atomic.Int64 // fsyncs, for tests
}

// entry is an item in the queue: its metadata in memory (Message nil), its
// record on disk.
type entry struct {
	it       Item
	b        *batch // its batch file; set before the entry is in Queue.entries
	off, n   int64  // where its record is in b
	inflight bool   // guarded by Queue.mu
	gone     bool   // removed from entries; guarded by Queue.mu
	fileMu   sync.Mutex
	hasState bool // a state file may exist; guarded by fileMu
}

// dest is the delivery state of a destination.
type dest struct {
	failures int       // consecutive rounds of failures; 0 when healthy
	until    time.Time // no attempt before
	epoch    uint64    // counts successes and rounds of failures
	inflight int
}

// Open opens the queue in opts.Dir, creating it if needed. It deletes the
// temporary files of interrupted writes and the files of items already
// done, and rebuilds the queue from the batch files and their done marks.
// It verifies every record: a batch file with a damaged record, or a file
// that the queue did not write, is moved into Dir/damaged/ with a warning
// on the Logger naming it, after the intact records of the batch that are
// not done have been copied, durably, into a new batch file. Item files
// of the first layout of the queue, one item per file, are read as
// batches of one item. Open fails if the directory cannot be used or
// another Queue has it open.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: open: no directory")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("queue: open %s: MaxBackoff %v is shorter than MinBackoff %v", opts.Dir, opts.MaxBackoff, opts.MinBackoff)
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	q := &Queue{
		opts:    opts,
		log:     opts.Logger,
		items:   filepath.Join(opts.Dir, "items"),
		tmp:     filepath.Join(opts.Dir, "tmp"),
		damaged: filepath.Join(opts.Dir, "damaged"),
		wake:    make(chan struct{}, 1),
		commits: committer{
			wake: make(chan struct{}, 1),
			stop: make(chan struct{}),
			done: make(chan struct{}),
		},
		entries: map[string]*entry{},
		pending: map[string]bool{},
		dests:   map[string]*dest{},
	}
	if err := q.open(ctx); err != nil {
		if q.lock != nil {
			q.lock.Close()
		}
		return nil, fmt.Errorf("queue: open %s: %w", opts.Dir, err)
	}
	go q.runCommitter()
	return q, nil
}

// scan is what Open finds in a batch file.
type scan struct {
	b        *batch
	legacyID string // for an item file of the first layout
	data     []byte // the content, kept only if damaged
	recs     []record
	damage   []string
	marks    map[string]markKind
	live     []*entry
}

func (q *Queue) open(ctx context.Context) error {
	for _, d := range []string{q.opts.Dir, q.items, q.tmp, q.damaged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The entries of Dir in its parent and of the subdirectories in Dir.
	for _, d := range []string{filepath.Dir(filepath.Clean(q.opts.Dir)), q.opts.Dir} {
		if err := q.syncDir(d); err != nil {
			return err
		}
	}
	lock, err := lockDir(filepath.Join(q.opts.Dir, "lock"))
	if err != nil {
		return err
	}
	q.lock = lock

	// Temporary files are writes that never completed.
	tmps, err := os.ReadDir(q.tmp)
	if err != nil {
		return err
	}
	for _, de := range tmps {
		if err := os.RemoveAll(filepath.Join(q.tmp, de.Name())); err != nil {
			return err
		}
	}
	if len(tmps) > 0 {
		q.log.InfoContext(ctx, "queue: removed temporary files of interrupted writes", "dir", q.tmp, "count", len(tmps))
	}

	des, err := os.ReadDir(q.items)
	if err != nil {
		return err
	}
	var scans []*scan
	dones := map[string]bool{}    // names of done files
	states := map[string]string{} // ID -> name of its state file
	for _, de := range des {
		name := de.Name()
		isBatch := func(name string) bool {
			_, ok := seqOf(name)
			_, suffix, legacy := idOf(name)
			return ok || legacy && suffix == itemSuffix
		}
		seq, ok := seqOf(name)
		id, suffix, idOK := idOf(name)
		switch {
		case !de.Type().IsRegular():
			if err := q.quarantine(ctx, name, "not a file of the queue"); err != nil {
				return err
			}
		case ok:
			scans = append(scans, &scan{b: &batch{name: name, seq: seq}})
		case idOK && suffix == itemSuffix:
			scans = append(scans, &scan{b: &batch{name: name}, legacyID: id})
		case idOK && suffix == stateSuffix:
			states[id] = name
		case strings.HasSuffix(name, doneSuffix) && isBatch(strings.TrimSuffix(name, doneSuffix)):
			dones[name] = true
		default:
			if err := q.quarantine(ctx, name, "not a file of the queue"); err != nil {
				return err
			}
		}
	}
	for _, s := range scans {
		if err := q.scan(ctx, s, dones); err != nil {
			return err
		}
	}
	for name := range dones {
		// The marks of a batch whose deletion was interrupted.
		if err := removeIfExists(filepath.Join(q.items, name)); err != nil {
			return err
		}
		q.orphaned++
	}

	// The latest record of an ID decides: an ID is enqueued again only
	// once its earlier item is done, even if a crash lost the mark.
	slices.SortFunc(scans, func(a, b *scan) int {
		return cmp.Or(cmp.Compare(a.b.seq, b.b.seq), cmp.Compare(a.b.name, b.b.name))
	})
	latest := map[string]*scan{}
	for _, s := range scans {
		q.commits.seq = max(q.commits.seq, s.b.seq)
		for _, r := range s.recs {
			latest[r.it.ID] = s
		}
	}
	for _, s := range scans {
		for _, r := range s.recs {
			if latest[r.it.ID] != s || s.marks[r.it.ID] != 0 {
				continue
			}
			e := &entry{it: r.it, b: s.b, off: r.off, n: r.n}
			s.live = append(s.live, e)
			q.entries[e.it.ID] = e
		}
		s.b.live = len(s.live)
	}
	if err := q.loadStates(ctx, states); err != nil {
		return err
	}
	for _, s := range scans {
		switch {
		case len(s.damage) > 0:
			if err := q.salvage(ctx, s); err != nil {
				return err
			}
		case len(s.live) == 0:
			if err := q.endBatch(ctx, s.b); err != nil {
				return err
			}
		}
	}
	// Makes durable what Open changed, and the names of the done files.
	if err := q.syncDir(q.items); err != nil {
		return err
	}
	for _, s := range scans {
		s.b.doneDir = s.b.hasDone
	}
	// A destination whose items have failed before starts with a probe.
	for _, e := range q.entries {
		if e.it.Attempts > 0 {
			q.dest(e.it.Destination).failures = 1
		}
	}
	return nil
}

// scan reads the batch file of s, and its done file if dones has it.
func (q *Queue) scan(ctx context.Context, s *scan, dones map[string]bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(q.items, s.b.name))
	if err != nil {
		return err
	}
	s.recs, s.damage = parseBatch(data, s.legacyID)
	if len(s.damage) > 0 {
		s.data = data
	}
	done := s.b.name + doneSuffix
	if !dones[done] {
		return nil
	}
	delete(dones, done)
	path := filepath.Join(q.items, done)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var bad int
	s.marks, bad = parseDone(b)
	s.b.hasDone = true
	for _, k := range s.marks {
		s.b.durable = s.b.durable || k.durable()
		s.b.damaged = s.b.damaged || k == markDamaged
	}
	if bad > 0 {
		// Marks cut by a crash: their items are delivered again.
		q.log.WarnContext(ctx, "queue: ignoring damaged done marks", "file", path, "lines", bad)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		// A mark cut short: the next one starts on a line of its own.
		if err := q.appendFile(path, []byte{'\n'}, false); err != nil {
			return err
		}
	}
	return nil
}

// loadStates applies the state files to the entries they belong to, and
// deletes the others.
func (q *Queue) loadStates(ctx context.Context, states map[string]string) error {
	for id, name := range states {
		path := filepath.Join(q.items, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		e := q.entries[id]
		s, err := decodeState(b)
		if err == nil && s.ID != id {
			err = fmt.Errorf("holds the state of %q", s.ID)
		}
		if err != nil && e != nil {
			// Attempts are advisory: start them again, but say so.
			q.log.WarnContext(ctx, "queue: ignoring a damaged state file", "file", path, "err", err)
			e.hasState = true
			continue
		}
		if e == nil || s.Batch != e.b.name && (s.Batch != "" || e.b.seq != 0) {
			// The state of an item whose removal was interrupted.
			if err := removeIfExists(path); err != nil {
				return err
			}
			q.orphaned++
			continue
		}
		e.it.Attempts, e.it.NextAttempt, e.it.LastError = s.Attempts, s.NextAttempt, s.LastError
		e.hasState = true
	}
	return nil
}

// salvage copies the intact records of s that are not done into a new
// batch file, durably, then moves the file of s into damaged/.
func (q *Queue) salvage(ctx context.Context, s *scan) error {
	reason := strings.Join(s.damage, "; ")
	if len(s.live) > 0 {
		parts := make([][]byte, len(s.live))
		var off int64
		offs := make([]int64, len(s.live))
		for i, e := range s.live {
			parts[i] = s.data[e.off : e.off+e.n]
			offs[i] = off
			off += e.n
		}
		b, err := q.writeBatch(parts)
		if err != nil {
			return err
		}
		b.live = len(s.live)
		for i, e := range s.live {
			e.b, e.off = b, offs[i]
			if e.hasState && e.it.Attempts > 0 {
				st := fileState{ID: e.it.ID, Batch: b.name, Attempts: e.it.Attempts,
					NextAttempt: e.it.NextAttempt.UTC(), LastError: e.it.LastError}
				if err := q.saveState(e, st); err != nil {
					q.log.ErrorContext(ctx, "queue: cannot save the state of an item", "item", e.it.ID, "err", err)
				}
			}
		}
		reason = fmt.Sprintf("%s; its %d intact items not yet done were copied into %s", reason, len(s.live), b.name)
	}
	s.b.live = 0
	return q.quarantine(ctx, s.b.name, reason)
}

// quarantine moves the file name of items/ into damaged/, durably, deletes
// its done file if any, and says so on the Logger.
func (q *Queue) quarantine(ctx context.Context, name, reason string) error {
	to := freeName(q.damaged, name)
	if err := os.Rename(filepath.Join(q.items, name), to); err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	for _, d := range []string{q.damaged, q.items} {
		if err := q.syncDir(d); err != nil {
			return err
		}
	}
	q.mu.Lock()
	q.quarantined++
	q.mu.Unlock()
	q.log.WarnContext(ctx, "queue: damaged file moved aside, not delivered",
		"file", filepath.Join(q.items, name), "moved_to", to, "reason", reason)
	return removeIfExists(filepath.Join(q.items, name+doneSuffix))
}

// begin registers a call under way, or reports that the queue is closed.
// The caller must call q.ops.Done.
func (q *Queue) begin() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.ops.Add(1)
	return nil
}

// Close stops Run if it is running (waiting for the deliveries under way),
// waits for the other calls under way and releases the directory. Calls on
// a closed Queue fail with ErrClosed.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	stop, done := q.runStop, q.runDone
	q.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	q.ops.Wait()
	close(q.commits.stop)
	<-q.commits.done
	if err := q.lock.Close(); err != nil {
		return fmt.Errorf("queue: close %s: %w", q.opts.Dir, err)
	}
	return nil
}

// Enqueue adds items to the queue. When it returns nil, every item is on
// disk durably and Run will deliver it. Concurrent calls are committed
// together: their items are written into one batch file, which is fsynced
// and renamed into place, and the directory fsynced, once for them all.
//
// Each item is validated first (see Item); an ID already in the queue, or
// being enqueued, or named twice, fails the call with an error wrapping
// ErrExists. A call that fails leaves none of its items queued, and does
// not affect the other calls committed with it, unless writing the batch
// file fails. If ctx ends before the call's items are being written, the
// call fails with ctx's error and none of them is queued; once they are
// being written, the call waits for the end of the write. Enqueue sets
// Enqueued (the same time for all items of a call), Attempts and
// LastError, and NextAttempt unless it is in the future. It wakes Run.
func (q *Queue) Enqueue(ctx context.Context, items ...Item) error {
	if len(items) == 0 {
		return nil
	}
	if err := q.begin(); err != nil {
		return fmt.Errorf("queue: enqueue: %w", err)
	}
	defer q.ops.Done()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("queue: enqueue: %w", err)
	}
	for i := range items {
		if err := items[i].validate(); err != nil {
			return fmt.Errorf("queue: enqueue %q: %w", items[i].ID, err)
		}
	}
	req, err := q.prepare(ctx, items)
	if err != nil {
		return err
	}
	if err := q.reserve(items); err != nil {
		return err
	}
	if err := q.commit(ctx, req); err != nil {
		q.mu.Lock()
		for _, it := range items {
			delete(q.pending, it.ID)
		}
		q.mu.Unlock()
		return err
	}
	return nil
}

// prepare returns the request to the committer that enqueues items.
func (q *Queue) prepare(ctx context.Context, items []Item) (*commitReq, error) {
	now := q.opts.Now().Round(0)
	req := &commitReq{
		ctx:     ctx,
		entries: make([]*entry, len(items)),
		heads:   make([][]byte, len(items)),
		msgs:    make([][]byte, len(items)),
		res:     make(chan error, 1),
	}
	for i, it := range items {
		it.To = slices.Clone(it.To)
		it.Enqueued = now
		it.Attempts = 0
		it.LastError = ""
		if it.NextAttempt.Before(now) {
			it.NextAttempt = now
		}
		head, err := encodeItem(&it)
		if err != nil {
			return nil, fmt.Errorf("queue: enqueue %s: %w", it.ID, err)
		}
		req.heads[i], req.msgs[i] = head, it.Message
		req.size += len(head) + len(it.Message)
		it.Message = nil
		req.entries[i] = &entry{it: it}
	}
	return req, nil
}

// reserve marks the IDs of items as being written, or fails with ErrExists.
func (q *Queue) reserve(items []Item) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		if q.entries[it.ID] != nil || q.pending[it.ID] || seen[it.ID] {
			return fmt.Errorf("queue: enqueue %s: %w", it.ID, ErrExists)
		}
		seen[it.ID] = true
	}
	for id := range seen {
		q.pending[id] = true
	}
	return nil
}

// Items returns a snapshot of the queue, messages included (read from
// disk), sorted by Enqueued then ID. Items in the middle of a delivery are
// included.
func (q *Queue) Items(ctx context.Context) ([]Item, error) {
	if err := q.begin(); err != nil {
		return nil, fmt.Errorf("queue: items: %w", err)
	}
	defer q.ops.Done()
	q.mu.Lock()
	entries := make([]*entry, 0, len(q.entries))
	for _, e := range q.entries {
		entries = append(entries, e)
	}
	q.mu.Unlock()
	slices.SortFunc(entries, func(a, b *entry) int { return compareItems(&a.it, &b.it) })
	out := make([]Item, 0, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("queue: items: %w", err)
		}
		it, err := q.load(ctx, e)
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile, or damaged
		}
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

func compareItems(a, b *Item) int {
	if c := a.Enqueued.Compare(b.Enqueued); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// load reads e's record and returns its item, with the state kept in
// memory. A damaged record, or a missing batch file, drops the entry and
// the error wraps ErrNotFound, like that of an item removed meanwhile; a
// batch file with a damaged record is moved into damaged/ once its other
// items are done.
func (q *Queue) load(ctx context.Context, e *entry) (Item, error) {
	e.fileMu.Lock()
	defer e.fileMu.Unlock()
	q.mu.Lock()
	gone, it := e.gone, e.it
	q.mu.Unlock()
	if gone {
		return Item{}, fmt.Errorf("queue: read %s: %w", it.ID, ErrNotFound)
	}
	path := filepath.Join(q.items, e.b.name)
	buf, err := readAt(path, e.off, e.n)
	switch {
	case errors.Is(err, os.ErrNotExist):
		q.log.WarnContext(ctx, "queue: batch file removed behind the queue's back", "item", it.ID, "file", path)
		if _, err := q.dropLocked(ctx, e, markMissing); err != nil {
			q.log.ErrorContext(ctx, "queue: cannot drop a missing item", "item", it.ID, "err", err)
		}
		return Item{}, fmt.Errorf("queue: read %s: %w", it.ID, ErrNotFound)
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return Item{}, fmt.Errorf("queue: read %s: %w", it.ID, err)
	}
	var full Item
	if err == nil {
		var n int
		full, n, err = decodeRecord(buf)
		switch {
		case err != nil:
		case full.ID != it.ID:
			err = fmt.Errorf("holds item %q", full.ID)
		case int64(n) != e.n:
			err = fmt.Errorf("record of %d bytes, want %d", n, e.n)
		}
	}
	if err != nil {
		q.log.WarnContext(ctx, "queue: damaged record, not delivered; the file will be moved into damaged/",
			"item", it.ID, "file", path, "offset", e.off, "reason", err)
		if _, derr := q.dropLocked(ctx, e, markDamaged); derr != nil {
			q.log.ErrorContext(ctx, "queue: cannot mark a damaged record", "item", it.ID, "err", derr)
		}
		return Item{}, fmt.Errorf("queue: read %s: %v: %w", it.ID, err, ErrNotFound)
	}
	it.Message = full.Message
	it.To = slices.Clone(it.To)
	return it, nil
}

// readAt returns the n bytes of the file path at offset off; if the file
// is shorter, the error wraps io.ErrUnexpectedEOF.
func readAt(path string, off, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// Remove removes the item id from the queue, durably, whether or not a
// delivery of it is under way: once Remove returns nil, the item is never
// delivered again (a delivery under way may still complete), even after a
// crash or a power loss; for that, Remove fsyncs its mark. It fails with an
// error wrapping ErrNotFound if the queue does not hold id.
func (q *Queue) Remove(ctx context.Context, id string) error {
	if err := q.begin(); err != nil {
		return fmt.Errorf("queue: remove %s: %w", id, err)
	}
	defer q.ops.Done()
	q.mu.Lock()
	e := q.entries[id]
	q.mu.Unlock()
	if e == nil {
		return fmt.Errorf("queue: remove %s: %w", id, ErrNotFound)
	}
	removed, err := q.drop(ctx, e, markRemoved)
	if err != nil {
		return fmt.Errorf("queue: remove %s: %w", id, err)
	}
	if !removed {
		return fmt.Errorf("queue: remove %s: %w", id, ErrNotFound)
	}
	return nil
}

// drop removes e from the queue and marks it done in its batch, for the
// reason kind. It returns false if e was already gone.
func (q *Queue) drop(ctx context.Context, e *entry, kind markKind) (bool, error) {
	e.fileMu.Lock()
	defer e.fileMu.Unlock()
	return q.dropLocked(ctx, e, kind)
}

// dropLocked is drop with e.fileMu held. While the mark is being written
// the ID stays reserved, so that an Enqueue of the same ID cannot race
// with it.
func (q *Queue) dropLocked(ctx context.Context, e *entry, kind markKind) (bool, error) {
	id := e.it.ID
	q.mu.Lock()
	if e.gone {
		q.mu.Unlock()
		return false, nil
	}
	e.gone = true
	delete(q.entries, id)
	q.pending[id] = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.pending, id)
		q.mu.Unlock()
	}()
	err := q.mark(ctx, e.b, id, kind)
	if e.hasState {
		// Not synced: a state file that comes back is deleted by Open.
		if serr := removeIfExists(filepath.Join(q.items, fileName(id, stateSuffix))); serr != nil {
			err = errors.Join(err, serr)
		}
		e.hasState = false
	}
	return true, err
}

// Len returns the number of items in the queue, those being delivered
// included.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// Oldest returns the enqueue time of the oldest item in the queue, those
// being delivered included; ok is false when the queue is empty.
func (q *Queue) Oldest() (t time.Time, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.entries {
		if !ok || e.it.Enqueued.Before(t) {
			t, ok = e.it.Enqueued, true
		}
	}
	return t, ok
}

// Kick wakes Run to look for due items now rather than at its next poll.
// It does not change when items are due: see KickDestination.
func (q *Queue) Kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// KickDestination forgets the failures of destination: its backoff is
// reset and all of its items are due now (for example when the
// destination is known to be back). It wakes Run.
func (q *Queue) KickDestination(destination string) {
	q.mu.Lock()
	if d := q.dests[destination]; d != nil {
		d.failures, d.until = 0, time.Time{}
		d.epoch++
	}
	q.makeDue(destination, q.opts.Now())
	q.mu.Unlock()
	q.Kick()
}

// makeDue makes the items of destination that are waiting due at now.
// q.mu must be held.
func (q *Queue) makeDue(destination string, now time.Time) {
	for _, e := range q.entries {
		if e.it.Destination == destination && !e.inflight && e.it.NextAttempt.After(now) {
			e.it.NextAttempt = now
		}
	}
}

// dest returns the state of destination name, created if needed. q.mu must
// be held.
func (q *Queue) dest(name string) *dest {
	d := q.dests[name]
	if d == nil {
		d = &dest{}
		q.dests[name] = d
	}
	return d
}

// validate checks the fields of it that Enqueue stores.
func (it *Item) validate() error {
	if err := validID(it.ID); err != nil {
		return err
	}
	if it.Destination == "" {
		return errors.New("no destination")
	}
	if err := validField("destination", it.Destination); err != nil {
		return err
	}
	if strings.ContainsAny(it.Destination, " \t") {
		return fmt.Errorf("destination %q has spaces", it.Destination)
	}
	if err := validField("ref", it.Ref); err != nil {
		return err
	}
	if err := validField("from", it.From); err != nil {
		return err
	}
	if len(it.To) == 0 {
		return errors.New("no recipients")
	}
	if len(it.To) > maxRecipients {
		return fmt.Errorf("%d recipients, more than %d", len(it.To), maxRecipients)
	}
	for _, to := range it.To {
		if to == "" {
			return errors.New("empty recipient")
		}
		if err := validField("recipient", to); err != nil {
			return err
		}
	}
	if len(it.Message) == 0 {
		return errors.New("empty message")
	}
	return nil
}

// validID checks an Item.ID.
func validID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLength {
		return fmt.Errorf("ID of %d bytes, want 1 to %d", len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("._@+=/-", c) >= 0:
		default:
			return fmt.Errorf("ID has the character %q: want only A-Z a-z 0-9 . _ @ + = / -", c)
		}
	}
	if strings.Contains(id, "..") {
		return errors.New(`ID has ".."`)
	}
	return nil
}

// validField checks an envelope field: valid UTF-8, no control
// characters, at most maxField bytes.
func validField(what, s string) error {
	if len(s) > maxField {
		return fmt.Errorf("%s of %d bytes, more than %d", what, len(s), maxField)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not UTF-8", what, s)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%s %q has control characters", what, s)
	}
	return nil
}
