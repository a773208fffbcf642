package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/custode/custode/ledger/driver"
)

// FirstTimestampedCheckpoint returns the earliest checkpoint that covers
// entry seq (its size is more than seq) and carries its timestamp token:
// the first time-stamp of the entry, which dates the event. It seeks to
// the first checkpoint larger than seq and reads forward only past those
// still pending. It returns ErrNotFound when no timestamped checkpoint
// covers the entry yet.
func (l *Ledger) FirstTimestampedCheckpoint(ctx context.Context, seq uint64) (*Checkpoint, error) {
	if seq == math.MaxUint64 {
		return nil, fmt.Errorf("ledger: first checkpoint of %d: %w", seq, ErrNotFound)
	}
	c, err := l.seekStamped(ctx, checkpointKey(seq+1), false)
	if err != nil {
		return nil, fmt.Errorf("ledger: first checkpoint of %d: %w", seq, err)
	}
	return c, nil
}

// NewestTimestampedCheckpoint returns the newest checkpoint that carries
// its timestamp token, reading backwards from the newest only past those
// still pending, or ErrNotFound.
func (l *Ledger) NewestTimestampedCheckpoint(ctx context.Context) (*Checkpoint, error) {
	c, err := l.seekStamped(ctx, checkpointKey(math.MaxUint64), true)
	if err != nil {
		return nil, fmt.Errorf("ledger: newest timestamped checkpoint: %w", err)
	}
	return c, nil
}

// seekStamped returns the first checkpoint with a token from key on,
// forwards or backwards.
func (l *Ledger) seekStamped(ctx context.Context, key []byte, reverse bool) (*Checkpoint, error) {
	var c *Checkpoint
	err := l.db.View(ctx, func(txn driver.Reader) error {
		for kv, err := range txn.Scan([]byte{prefixCheckpoint}, key, reverse) {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			v := kv.Value
			// Only the token member is decoded to skip a pending one.
			var tok struct {
				Token []byte `json:"token"`
			}
			if err := json.Unmarshal(v, &tok); err != nil {
				return fmt.Errorf("at key %x: %w", kv.Key, err)
			}
			if len(tok.Token) == 0 {
				continue
			}
			if c, err = decodeCheckpointRecord(v); err != nil {
				return fmt.Errorf("at key %x: %w", kv.Key, err)
			}
			return nil
		}
		return ErrNotFound
	})
	return c, err
}

// CheckpointInterval returns the longest the ledger waits before a
// checkpoint covers a new entry (CheckpointOptions.Interval, or its
// default): the interval a bundle states for its delay bound. A ledger
// without checkpoints returns DefaultCheckpointInterval.
func (l *Ledger) CheckpointInterval() time.Duration {
	if l.cp == nil {
		return DefaultCheckpointInterval
	}
	return l.cp.opts.Interval
}
