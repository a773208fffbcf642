// Package seal ships the ledger's sealed segments to WORM storage, checks
// them there, and rebuilds a lost ledger store from them.
//
// One segment is made per timestamped checkpoint, in order: entries from the
// end of the last seal to the checkpoint's size, with the checkpoint and the
// compact range before the first entry (see ledger.Segment). Each is written
// once under a key naming its range, retained in COMPLIANCE mode until the
// time of its last entry plus the log's retention (30 months by default), and
// recorded in the ledger with its version and SHA-256. The queue of work is
// the ledger itself (timestamped checkpoints beyond the last seal), so it is
// as durable as the ledger and a Sealer catches up after any outage.
//
// A Sealer is a follower of the ledger's checkpoints: its cursor is where
// its last seal ended, which it keeps in the ledger's seal records, and each
// look reads only the checkpoints after it. A look costs the same on a
// ledger of a day and on one of thirty months.
package seal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/retention"
)

// DefaultPrefix is where segments are kept in the log bucket.
const DefaultPrefix = "ledger/segments/"

// Ledger is what a Sealer reads from the ledger and records in it; a
// *ledger.Ledger is one.
type Ledger interface {
	// CheckpointsFrom yields the checkpoints of size at least size, oldest
	// first, reading only from size on.
	CheckpointsFrom(ctx context.Context, size uint64) iter.Seq2[*ledger.Checkpoint, error]
	// LastSeal returns the last recorded seal, or nil if there is none:
	// the Sealer's cursor.
	LastSeal(ctx context.Context) (*ledger.Seal, error)
	// Segment returns entries [from, to) with the checkpoint of size to.
	Segment(ctx context.Context, from, to uint64) (*ledger.Segment, error)
	// Entry returns entry seq.
	Entry(ctx context.Context, seq uint64) (*ledger.Entry, []byte, error)
	// RecordSeal records, durably, that a segment was archived; it moves
	// the cursor.
	RecordSeal(ctx context.Context, s ledger.Seal) error
	// RecordOutage records that a service was down.
	RecordOutage(ctx context.Context, gestore, service string, from, to time.Time, cause string) error
}

// Options configure a Sealer.
type Options struct {
	Ledger Ledger        // required
	Store  archive.Store // required
	// Prefix is the key prefix of segments; "" means DefaultPrefix.
	Prefix string
	// RetainFor is added to a segment's last entry time to give its
	// retain-until; 0 means the legal minimum, retention.LegalMinimum.
	RetainFor time.Duration
	// Poll is how often Run looks for new checkpoints; 0 means 1s.
	Poll time.Duration
	// MaxBackoff bounds the wait after a failure; 0 means 30s.
	MaxBackoff time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Sealer writes segments to the archive. Its methods are not safe for
// concurrent use; run one Sealer per ledger.
type Sealer struct {
	opts Options
}

// New returns a Sealer.
func New(opts Options) (*Sealer, error) {
	if opts.Ledger == nil || opts.Store == nil {
		return nil, errors.New("seal: a ledger and a store are required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sealer{opts: opts}, nil
}

// Key returns the object key of segment [from, to) under prefix.
func Key(prefix string, from, to uint64) string {
	return fmt.Sprintf("%s%020d-%020d.seg", prefix, from, to)
}

// retainUntil is when segment s may be deleted.
func (s *Sealer) retainUntil(seg *ledger.Segment, last *ledger.Entry) time.Time {
	t := seg.Checkpoint.Time
	if last != nil && last.Time.After(t) {
		t = last.Time
	}
	if s.opts.RetainFor > 0 {
		return t.Add(s.opts.RetainFor)
	}
	return retention.LegalMinimum().AddTo(t)
}

// Backlog returns how many entries are covered by a timestamped checkpoint
// but not yet sealed, and how many checkpoints that is.
func (s *Sealer) Backlog(ctx context.Context) (entries uint64, checkpoints int, err error) {
	from, err := s.cursor(ctx)
	if err != nil {
		return 0, 0, err
	}
	to := from
	for c, err := range s.todo(ctx, from) {
		if err != nil {
			return 0, 0, err
		}
		to = c.Size
		checkpoints++
	}
	return to - from, checkpoints, nil
}

// cursor returns where the last seal ended: the ledger's entries before it
// are sealed.
func (s *Sealer) cursor(ctx context.Context) (uint64, error) {
	last, err := s.opts.Ledger.LastSeal(ctx)
	if err != nil || last == nil {
		return 0, err
	}
	return last.To, nil
}

// todo yields the timestamped checkpoints beyond from, in order, up to the
// first pending one. It reads the checkpoints from from on only.
func (s *Sealer) todo(ctx context.Context, from uint64) iter.Seq2[*ledger.Checkpoint, error] {
	return func(yield func(*ledger.Checkpoint, error) bool) {
		for c, err := range s.opts.Ledger.CheckpointsFrom(ctx, from+1) {
			if err != nil {
				yield(nil, err)
				return
			}
			if c.Size <= from {
				yield(nil, fmt.Errorf("seal: the ledger gave checkpoint %d when asked for those beyond %d", c.Size, from))
				return
			}
			if c.Pending() || !yield(c, nil) {
				return
			}
		}
	}
}

// SealPending seals, in order, every timestamped checkpoint beyond the last
// seal, and returns how many it sealed. It stops at the first failure.
func (s *Sealer) SealPending(ctx context.Context) (int, error) {
	from, err := s.cursor(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for c, err := range s.todo(ctx, from) {
		if err != nil {
			return n, err
		}
		if err := s.sealOne(ctx, from, c.Size); err != nil {
			return n, err
		}
		from = c.Size
		n++
	}
	return n, nil
}

func (s *Sealer) sealOne(ctx context.Context, from, to uint64) error {
	l := s.opts.Ledger
	seg, err := l.Segment(ctx, from, to)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	data, err := seg.MarshalBinary()
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	last, _, err := l.Entry(ctx, to-1)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	until := s.retainUntil(seg, last)
	if now := s.opts.Now(); !until.After(now) {
		// Entries older than the retention still go to the archive, held
		// for a day so that they can be checked before they expire.
		until = now.Add(24 * time.Hour)
	}
	key := Key(s.opts.Prefix, from, to)
	sum := sha256.Sum256(data)
	info, err := s.opts.Store.Put(ctx, key, data, archive.PutOptions{
		Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: until},
	})
	if errors.Is(err, archive.ErrExists) {
		// An earlier run wrote it and stopped before recording it.
		info, err = s.opts.Store.Stat(ctx, key, "")
		if err == nil && info.SHA256 != sum {
			err = fmt.Errorf("%s already holds other bytes (SHA-256 %x, want %x)", key, info.SHA256[:8], sum[:8])
		}
	}
	if err != nil {
		return fmt.Errorf("seal: segment %d-%d: %w", from, to, err)
	}
	err = l.RecordSeal(ctx, ledger.Seal{
		From: from, To: to, Key: key, VersionID: info.VersionID,
		SHA256: hex.EncodeToString(sum[:]), RetainUntil: info.Retention.RetainUntil, Sealed: s.opts.Now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	s.opts.Logger.Info("seal: segment archived", "from", from, "to", to, "key", key, "version", info.VersionID, "bytes", len(data))
	return nil
}

// Run seals until ctx is done, backing off after failures (an archive that
// is down) and catching up when they end.
//
// The time the archive could not be written is recorded in the ledger as
// an outage once sealing succeeds again (for the audit's P02).
func (s *Sealer) Run(ctx context.Context) {
	wait := s.opts.Poll
	var downSince time.Time
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		_, err := s.SealPending(ctx)
		switch {
		case err == nil:
			wait = s.opts.Poll
			if !downSince.IsZero() {
				if rerr := s.opts.Ledger.RecordOutage(ctx, "", "archive", downSince, time.Now(), "sealing failed: "+lastErr.Error()); rerr != nil {
					s.opts.Logger.Error("seal: record the archive outage", "err", rerr)
				}
				downSince, lastErr = time.Time{}, nil
			}
		case ctx.Err() != nil:
			return
		default:
			if downSince.IsZero() {
				downSince = time.Now()
			}
			lastErr = err
			s.opts.Logger.Warn("seal: will retry", "in", wait, "err", err)
			wait = min(2*wait, s.opts.MaxBackoff)
		}
	}
}
