package record

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/custode/custode/ledger/durable"
)

// UncleanStopCause is the cause recorded for an outage of a server that
// stopped without shutting down.
const UncleanStopCause = "custode serve stopped without shutting down (crash, kill or power loss) and was restarted"

// Running is the marker file a server keeps while it runs. Found at start,
// it tells that the previous run never stopped cleanly (a crash, a kill,
// a full disk, a power loss), and its modification time, refreshed by
// Heartbeat, since when the service was down.
type Running struct {
	Path    string // the marker file
	Service string // what was down: "gestore"
}

// Start records an outage of r.Service with rec if the marker is there
// (the previous run did not stop cleanly), from the marker's time until
// now, and then marks this run as running. It returns the outage's start,
// zero when there was none.
func (r Running) Start(ctx context.Context, rec *Recorder, now time.Time) (time.Time, error) {
	var from time.Time
	st, err := os.Stat(r.Path)
	switch {
	case err == nil:
		from = st.ModTime()
		if _, err := rec.Outage(ctx, r.Service, from, now, UncleanStopCause); err != nil {
			return time.Time{}, fmt.Errorf("record the outage: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return time.Time{}, fmt.Errorf("record: running marker: %w", err)
	}
	return from, durable.WriteFile(r.Path, fmt.Appendf(nil, "pid %d\n", os.Getpid()), 0o644)
}

// Heartbeat touches the marker every interval until ctx is done; fail is
// told of each touch that fails.
func (r Running) Heartbeat(ctx context.Context, interval time.Duration, fail func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := os.Chtimes(r.Path, now, now); err != nil {
				fail(err)
			}
		}
	}
}

// Stop removes the marker: the run stopped cleanly.
func (r Running) Stop() error {
	if err := os.Remove(r.Path); err != nil {
		return fmt.Errorf("record: running marker: %w", err)
	}
	return nil
}
