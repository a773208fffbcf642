package ledger

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custode/custode/ledger/driver"

	"github.com/custode/custode/ledger/verify"
	"github.com/custode/custode/tsa"
)

// Defaults for CheckpointOptions.
const (
	// DefaultCheckpointEvery makes a checkpoint at least every 10,000
	// entries, so that a proof never waits long under load.
	DefaultCheckpointEvery = 10000
	// DefaultCheckpointInterval makes a checkpoint at most this long after
	// the first entry it does not yet cover.
	DefaultCheckpointInterval = 10 * time.Second
	// DefaultTimestampRetry is how often a checkpoint whose RFC 3161 token
	// could not be had is tried again.
	DefaultTimestampRetry = 5 * time.Second
	// DefaultTimestampTimeout bounds one request to the TSA.
	DefaultTimestampTimeout = 10 * time.Second
)

// Signer makes a detached CMS signature (SHA-256) over data with the
// gestore's key. [CMSSigner] is the implementation.
type Signer interface {
	SignDetached(ctx context.Context, data []byte) ([]byte, error)
}

// CheckpointOptions configure the checkpoints of a ledger.
type CheckpointOptions struct {
	// Origin names the ledger on the first line of every checkpoint, e.g.
	// "pec.example.it/custode". Required.
	Origin string
	// Every makes a checkpoint once this many entries are not yet covered;
	// 0 means DefaultCheckpointEvery.
	Every uint64
	// Interval makes a checkpoint once the oldest uncovered entry is this
	// old; 0 means DefaultCheckpointInterval.
	Interval time.Duration
	// Signer signs checkpoint bodies. Required.
	Signer Signer
	// Stamper timestamps checkpoint bodies (RFC 3161). Required. While it
	// fails, checkpoints stay pending and are retried; appends go on.
	Stamper tsa.Stamper
	// RetryInterval is how often pending timestamps are retried; 0 means
	// DefaultTimestampRetry.
	RetryInterval time.Duration
	// TimestampTimeout bounds one TSA request; 0 means
	// DefaultTimestampTimeout.
	TimestampTimeout time.Duration
	// Now is the clock of checkpoint times; nil means time.Now.
	Now func() time.Time
}

// checkpointBody returns the text that is signed (verify.CheckpointBody).
func checkpointBody(origin string, size uint64, root, prev [32]byte, t time.Time) []byte {
	return verify.CheckpointBody(origin, size, root, prev, t)
}

type checkpointRecord struct {
	Body      []byte `json:"body"`
	Signature []byte `json:"signature"`
	Token     []byte `json:"token,omitempty"`
}

func checkpointKey(size uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixCheckpoint
	binary.BigEndian.PutUint64(k[1:], size)
	return k
}

func decodeCheckpointRecord(v []byte) (*Checkpoint, error) {
	var r checkpointRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("ledger: checkpoint record: %w", err)
	}
	c, err := ParseCheckpointBody(r.Body)
	if err != nil {
		return nil, err
	}
	c.Signature, c.Token = r.Signature, r.Token
	return c, nil
}

func (l *Ledger) putCheckpoint(c *Checkpoint) error {
	v, err := json.Marshal(checkpointRecord{Body: c.Body, Signature: c.Signature, Token: c.Token})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := l.put(ctx, checkpointKey(c.Size), v); err != nil {
		return err
	}
	// Checkpoints are not journaled: the store itself makes them durable.
	return l.db.Sync(ctx)
}

// Checkpoints returns every checkpoint the ledger holds, oldest first. It
// reads them all: a consumer that follows the ledger uses CheckpointsFrom.
func (l *Ledger) Checkpoints(ctx context.Context) ([]*Checkpoint, error) {
	var out []*Checkpoint
	for c, err := range l.CheckpointsFrom(ctx, 0) {
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// lastValue returns the value of the last key with the one-byte prefix, or
// ErrNotFound.
func lastValue(txn driver.Reader, prefix byte) ([]byte, error) {
	for kv, err := range txn.Scan([]byte{prefix}, nil, true) {
		return kv.Value, err
	}
	return nil, ErrNotFound
}

// LatestCheckpoint returns the newest checkpoint, or ErrNotFound.
func (l *Ledger) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	var c *Checkpoint
	err := l.db.View(ctx, func(txn driver.Reader) error {
		v, err := lastValue(txn, prefixCheckpoint)
		if err != nil {
			return err
		}
		c, err = decodeCheckpointRecord(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: latest checkpoint: %w", err)
	}
	return c, nil
}

// checkpointer makes checkpoints in the background and keeps trying to
// timestamp those still pending.
type checkpointer struct {
	l    *Ledger
	opts CheckpointOptions
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// Owned by run, and by close once run has stopped.
	last    *Checkpoint // newest checkpoint made
	pending []*Checkpoint
	npend   atomic.Int64 // len(pending), for readers
	// lastStampErr is the TSA's last failure, for the outage record.
	lastStampErr error
}

func newCheckpointer(ctx context.Context, l *Ledger, opts CheckpointOptions) (*checkpointer, error) {
	if opts.Origin == "" || strings.ContainsAny(opts.Origin, "\n") {
		return nil, errors.New("ledger: checkpoints: origin must be one non-empty line")
	}
	if opts.Signer == nil || opts.Stamper == nil {
		return nil, errors.New("ledger: checkpoints: a signer and a stamper are required")
	}
	if opts.Every == 0 {
		opts.Every = DefaultCheckpointEvery
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultCheckpointInterval
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = DefaultTimestampRetry
	}
	if opts.TimestampTimeout <= 0 {
		opts.TimestampTimeout = DefaultTimestampTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cp := &checkpointer{l: l, opts: opts, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	if cp.pending, cp.last, err = l.pendingTail(ctx); err != nil {
		return nil, err
	}
	cp.npend.Store(int64(len(cp.pending)))
	return cp, nil
}

// due reports whether the entries not yet covered call for a checkpoint. The
// checkpoint event that records the previous checkpoint does not count.
func (cp *checkpointer) due(h Head, now time.Time, lastMade time.Time) bool {
	var covered uint64
	if cp.last != nil {
		covered = cp.last.Size + 1
	}
	if h.Size <= covered {
		return false
	}
	return h.Size-covered >= cp.opts.Every || now.Sub(lastMade) >= cp.opts.Interval
}

func (cp *checkpointer) run() {
	defer close(cp.done)
	tick := min(cp.opts.Interval/4, cp.opts.RetryInterval/2, time.Second)
	tick = max(tick, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastMade := cp.opts.Now()
	var nextRetry time.Time
	for {
		select {
		case <-cp.stop:
			return
		case <-t.C:
		case <-cp.kick:
		}
		now := cp.opts.Now()
		if cp.due(cp.l.Head(), now, lastMade) {
			if err := cp.make(context.Background()); err != nil {
				cp.l.log.Error("ledger: checkpoint", "err", err)
			}
			lastMade = now
		}
		if len(cp.pending) > 0 && !now.Before(nextRetry) {
			cp.stampPending(context.Background())
			nextRetry = now.Add(cp.opts.RetryInterval)
		}
	}
}

// notify tells the checkpointer that entries were committed.
func (cp *checkpointer) notify() {
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// make signs a checkpoint of the current head, stores it, records it as a
// ledger event, and tries to timestamp it.
func (cp *checkpointer) make(ctx context.Context) error {
	h := cp.l.Head()
	var prev [32]byte
	if cp.last != nil {
		if h.Size <= cp.last.Size {
			return nil
		}
		prev = cp.last.Hash()
	}
	now := cp.opts.Now()
	c := &Checkpoint{Origin: cp.opts.Origin, Size: h.Size, Root: h.Root, Prev: prev, Time: now.UTC()}
	c.Body = checkpointBody(c.Origin, c.Size, c.Root, c.Prev, c.Time)
	sig, err := cp.opts.Signer.SignDetached(ctx, c.Body)
	if err != nil {
		return fmt.Errorf("ledger: checkpoint %d: sign: %w", c.Size, err)
	}
	c.Signature = sig
	// The store must hold the entries before the checkpoint over them.
	if err := cp.l.waitApplied(ctx, c.Size); err != nil {
		return fmt.Errorf("ledger: checkpoint %d: %w", c.Size, err)
	}
	if err := cp.l.putCheckpoint(c); err != nil {
		return fmt.Errorf("ledger: checkpoint %d: store: %w", c.Size, err)
	}
	cp.last = c
	cp.pending = append(cp.pending, c)
	cp.npend.Store(int64(len(cp.pending)))
	sum := c.Hash()
	_, err = cp.l.Append(ctx, Event{
		Kind: KindCheckpoint,
		Time: now,
		Details: map[string]string{
			"tree_size":       strconv.FormatUint(c.Size, 10),
			"root":            hex.EncodeToString(c.Root[:]),
			"prev_checkpoint": hex.EncodeToString(c.Prev[:]),
		},
		SHA256: sum[:],
	})
	if err != nil {
		return fmt.Errorf("ledger: checkpoint %d: record: %w", c.Size, err)
	}
	cp.l.log.Info("ledger: checkpoint", "size", c.Size, "root", hex.EncodeToString(c.Root[:]))
	cp.stampPending(ctx)
	return nil
}

// stampPending asks the TSA for the tokens still missing, oldest first,
// stopping at the first failure.
func (cp *checkpointer) stampPending(ctx context.Context) {
	recorded := false
	for len(cp.pending) > 0 {
		c := cp.pending[0]
		sum := c.Hash()
		tctx, cancel := context.WithTimeout(ctx, cp.opts.TimestampTimeout)
		tok, err := cp.opts.Stamper.Timestamp(tctx, sum[:])
		cancel()
		if err != nil {
			cp.l.log.Warn("ledger: checkpoint timestamp pending", "size", c.Size, "err", err)
			cp.lastStampErr = err
			return
		}
		c.Token = tok
		if err := cp.l.putCheckpoint(c); err != nil {
			c.Token = nil
			cp.l.log.Error("ledger: checkpoint store token", "size", c.Size, "err", err)
			return
		}
		cp.pending = cp.pending[1:]
		cp.l.noteStamped(c.Time)
		cp.npend.Store(int64(len(cp.pending)))
		// A checkpoint whose stamping failed, or that waited longer than
		// one retry (a restart in between), waited for the TSA: an outage
		// of the time-stamping service from the checkpoint's time until
		// now, recorded once per recovery.
		if now := cp.opts.Now(); !recorded && (cp.lastStampErr != nil || now.Sub(c.Time) > cp.opts.RetryInterval+cp.opts.TimestampTimeout) {
			recorded = true
			cause := "no timestamp token for checkpoint " + strconv.FormatUint(c.Size, 10)
			if cp.lastStampErr != nil {
				cause += ": " + cp.lastStampErr.Error()
			}
			if err := cp.l.RecordOutage(ctx, "", "tsa", c.Time, now, cause); err != nil {
				cp.l.log.Error("ledger: record the TSA outage", "err", err)
			}
		}
		cp.lastStampErr = nil
	}
}

// close makes a last checkpoint if one is due, tries once more to
// timestamp what is pending, and stops the checkpointer.
func (cp *checkpointer) close() {
	close(cp.stop)
	<-cp.done
	ctx, cancel := context.WithTimeout(context.Background(), cp.opts.TimestampTimeout)
	defer cancel()
	if cp.due(cp.l.Head(), cp.opts.Now(), time.Time{}) {
		if err := cp.make(ctx); err != nil {
			cp.l.log.Error("ledger: final checkpoint", "err", err)
		}
	}
	cp.stampPending(ctx)
}

// PendingTimestamps returns how many checkpoints wait for their token.
func (l *Ledger) PendingTimestamps() int {
	if l.cp == nil {
		return 0
	}
	return int(l.cp.npend.Load())
}
