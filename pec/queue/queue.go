package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	// "local"): backoff after failures is per destination. Required.
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
	// further failure, up to MaxBackoff. Defaults: DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Workers is how many deliveries run at once; DefaultWorkers if zero or
	// less. A destination gets any number of them while its deliveries
	// succeed, and one while it is failing.
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
	ops                   sync.WaitGroup // calls under way, waited for by Close
	runDone               chan struct{}  // closed when Run returns; nil if not running
	runStop               context.CancelFunc
	mu                    sync.Mutex
	entries               map[string]*entry // by ID
	pending               map[string]bool   // IDs being written or removed
	dests                 map[string]*dest
	running, closed       bool
	quarantined, orphaned int // counts, for tests; guarded by mu after Open
}

// entry is an item in the queue: its metadata in memory (Message nil), the
// message on disk.
type entry struct {
	it       Item
	inflight bool // guarded by Queue.mu
	gone     bool // removed from entries; guarded by Queue.mu
	fileMu   sync.Mutex
}

// dest is the delivery state of a destination.
type dest struct {
	failures int       // consecutive rounds of failures; 0 when healthy
	until    time.Time // no attempt before
	epoch    uint64    // counts successes and rounds of failures
	inflight int
}

// Open opens the queue in opts.Dir, creating it if needed. It deletes the
// temporary files of interrupted writes, verifies every item file and moves
// damaged ones into Dir/damaged/ with a warning on the Logger. It fails if
// the directory cannot be used or another Queue has it open.
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
	return q, nil
}

func (q *Queue) open(ctx context.Context) error {
	for _, d := range []string{q.opts.Dir, q.items, q.tmp, q.damaged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The entries of Dir in its parent and of the subdirectories in Dir.
	for _, d := range []string{filepath.Dir(filepath.Clean(q.opts.Dir)), q.opts.Dir} {
		if err := syncDir(d); err != nil {
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
	states := map[string]string{} // ID -> file name
	changed := false
	for _, de := range des {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		id, suffix, ok := idOf(name)
		switch {
		case !ok || !de.Type().IsRegular():
			if err := q.quarantine(ctx, name, "not a file of the queue"); err != nil {
				return err
			}
			changed = true
		case suffix == stateSuffix:
			states[id] = name
		default:
			b, err := os.ReadFile(filepath.Join(q.items, name))
			if err != nil {
				return err
			}
			it, err := decodeItem(b)
			if err == nil && it.ID != id {
				err = fmt.Errorf("holds item %q", it.ID)
			}
			if err != nil {
				if err := q.quarantine(ctx, name, err.Error()); err != nil {
					return err
				}
				changed = true
				continue
			}
			it.Message = nil
			q.entries[id] = &entry{it: it}
		}
	}
	for id, name := range states {
		e := q.entries[id]
		if e == nil {
			// The state of an item whose removal was interrupted.
			if err := removeIfExists(filepath.Join(q.items, name)); err != nil {
				return err
			}
			q.orphaned++
			changed = true
			continue
		}
		b, err := os.ReadFile(filepath.Join(q.items, name))
		if err != nil {
			return err
		}
		s, err := decodeState(b)
		if err == nil && s.ID != id {
			err = fmt.Errorf("holds the state of %q", s.ID)
		}
		if err != nil {
			// Attempts are advisory: start them again, but say so.
			q.log.WarnContext(ctx, "queue: ignoring a damaged state file", "file", filepath.Join(q.items, name), "err", err)
			continue
		}
		e.it.Attempts, e.it.NextAttempt, e.it.LastError = s.Attempts, s.NextAttempt, s.LastError
	}
	if changed {
		if err := syncDir(q.items); err != nil {
			return err
		}
	}
	// A destination whose items have failed before starts with a probe.
	for _, e := range q.entries {
		if e.it.Attempts > 0 {
			q.dest(e.it.Destination).failures = 1
		}
	}
	return nil
}

// quarantine moves the file name of items/ into damaged/, with its state
// file if any, and says so on the Logger.
func (q *Queue) quarantine(ctx context.Context, name, reason string) error {
	to := freeName(q.damaged, name)
	if err := os.Rename(filepath.Join(q.items, name), to); err != nil {
		return fmt.Errorf("quarantine %s: %w", name, err)
	}
	if err := syncDir(q.damaged); err != nil {
		return err
	}
	q.mu.Lock()
	q.quarantined++
	q.mu.Unlock()
	q.log.WarnContext(ctx, "queue: damaged file moved aside, not delivered",
		"file", filepath.Join(q.items, name), "moved_to", to, "reason", reason)
	if id, suffix, ok := idOf(name); ok && suffix == itemSuffix {
		return removeIfExists(filepath.Join(q.items, fileName(id, stateSuffix)))
	}
	return nil
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
	if err := q.lock.Close(); err != nil {
		return fmt.Errorf("queue: close %s: %w", q.opts.Dir, err)
	}
	return nil
}

// Enqueue adds items to the queue. When it returns nil, every item is on
// disk durably (written and fsynced, the directory fsynced once for the
// call) and Run will deliver it. Each item is validated first (see Item);
// an ID already in the queue, or named twice, fails the call with an error
// wrapping ErrExists. A call that fails leaves none of its items queued
// (only a crash in the middle of the call may leave some for the next Open
// to find). Enqueue sets Enqueued (the same time for all items of a call),
// Attempts and LastError, and NextAttempt unless it is in the future. It
// wakes Run.
func (q *Queue) Enqueue(ctx context.Context, items ...Item) error {
	if len(items) == 0 {
		return nil
	}
	if err := q.begin(); err != nil {
		return fmt.Errorf("queue: enqueue: %w", err)
	}
	defer q.ops.Done()
	for i := range items {
		if err := items[i].validate(); err != nil {
			return fmt.Errorf("queue: enqueue %q: %w", items[i].ID, err)
		}
	}
	if err := q.reserve(items); err != nil {
		return err
	}
	entries, err := q.write(ctx, items)
	q.mu.Lock()
	for _, it := range items {
		delete(q.pending, it.ID)
	}
	for _, e := range entries {
		q.entries[e.it.ID] = e
	}
	q.mu.Unlock()
	if err != nil {
		return err
	}
	q.Kick()
	return nil
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

// write writes the files of items durably and returns their entries, or
// an error and no entries, having removed what it wrote.
func (q *Queue) write(ctx context.Context, items []Item) (_ []*entry, err error) {
	now := q.opts.Now().Round(0)
	var tmps, renamed []string
	defer func() {
		if err != nil {
			for _, p := range tmps {
				os.Remove(p)
			}
			for _, p := range renamed {
				os.Remove(p)
			}
		}
	}()
	files := make([]*os.File, 0, len(items))
	entries := make([]*entry, len(items))
	for i := range items {
		if err = ctx.Err(); err == nil {
			it := items[i]
			it.To = slices.Clone(it.To)
			it.Enqueued = now
			it.Attempts = 0
			it.LastError = ""
			if it.NextAttempt.Before(now) {
				it.NextAttempt = now
			}
			var head []byte
			if head, err = encodeItem(&it); err == nil {
				var f *os.File
				if f, err = createTemp(q.tmp, head, it.Message); err == nil {
					files = append(files, f)
					tmps = append(tmps, f.Name())
					it.Message = nil
					entries[i] = &entry{it: it}
				}
			}
		}
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("queue: enqueue %s: %w", items[i].ID, err)
		}
	}
	if err := syncClose(files); err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	for i, p := range tmps {
		final := filepath.Join(q.items, fileName(items[i].ID, itemSuffix))
		if err := os.Rename(p, final); err != nil {
			return nil, fmt.Errorf("queue: enqueue %s: %w", items[i].ID, err)
		}
		renamed = append(renamed, final)
	}
	tmps = nil
	if err := syncDir(q.items); err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	return entries, nil
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
			continue // removed meanwhile, or damaged and moved aside
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

// load reads e's file and returns its item, with the state kept in
// memory. A damaged or missing file drops the entry (a damaged one is moved
// aside) and the error wraps ErrNotFound, like that of an item removed
// meanwhile.
func (q *Queue) load(ctx context.Context, e *entry) (Item, error) {
	e.fileMu.Lock()
	defer e.fileMu.Unlock()
	q.mu.Lock()
	gone, it := e.gone, e.it
	q.mu.Unlock()
	if gone {
		return Item{}, fmt.Errorf("queue: read %s: %w", it.ID, ErrNotFound)
	}
	name := fileName(it.ID, itemSuffix)
	b, err := os.ReadFile(filepath.Join(q.items, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Item{}, fmt.Errorf("queue: read %s: %w", it.ID, err)
	}
	var full Item
	if err == nil {
		full, err = decodeItem(b)
		if err == nil && full.ID != it.ID {
			err = fmt.Errorf("holds item %q", full.ID)
		}
		if err != nil {
			if qerr := q.quarantine(ctx, name, err.Error()); qerr != nil {
				// Left in place: Open will try again.
				q.log.ErrorContext(ctx, "queue: cannot move a damaged file aside", "file", name, "err", qerr)
			}
		}
	} else {
		q.log.WarnContext(ctx, "queue: item file removed behind the queue's back", "item", it.ID, "file", filepath.Join(q.items, name))
	}
	if err != nil {
		q.mu.Lock()
		if !e.gone {
			e.gone = true
			delete(q.entries, it.ID)
		}
		q.mu.Unlock()
		return Item{}, fmt.Errorf("queue: read %s: %v: %w", it.ID, err, ErrNotFound)
	}
	it.Message = full.Message
	it.To = slices.Clone(it.To)
	return it, nil
}

// Remove removes the item id from the queue, durably, whether or not a
// delivery of it is under way. It fails with an error wrapping ErrNotFound
// if the queue does not hold id.
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
	removed, err := q.drop(e)
	if err != nil {
		return fmt.Errorf("queue: remove %s: %w", id, err)
	}
	if !removed {
		return fmt.Errorf("queue: remove %s: %w", id, ErrNotFound)
	}
	return nil
}

// drop removes e from the queue and its files from the disk, durably. It
// returns false if e was already gone. While the files are being removed the
// ID stays reserved, so that an Enqueue of the same ID cannot race with it.
func (q *Queue) drop(e *entry) (bool, error) {
	e.fileMu.Lock()
	defer e.fileMu.Unlock()
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
	// The item first: a state file left alone is removed by Open.
	if err := removeIfExists(filepath.Join(q.items, fileName(id, itemSuffix))); err != nil {
		return true, err
	}
	if err := removeIfExists(filepath.Join(q.items, fileName(id, stateSuffix))); err != nil {
		return true, err
	}
	return true, syncDir(q.items)
}

// Len returns the number of items in the queue, those being delivered
// included.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
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
