package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/custode/custode/ledger"
)

// heartbeatInterval is how often custode serve touches its running marker:
// the precision of the start of an outage recorded after a crash.
const heartbeatInterval = 5 * time.Second

// runningMarker is the file custode serve keeps while it runs. Found at
// start, it tells that the previous run never stopped cleanly (a crash, a
// kill, a full disk, a power loss), and its time since when the gestore was
// down.
func (c *config) runningMarker() string { return filepath.Join(c.dir, "serve.running") }

// recordUncleanStop appends an outage of the gestore to the ledger if the
// previous custode serve did not stop cleanly, then marks this one as
// running.
func recordUncleanStop(ctx context.Context, e *env, c *config, l *ledger.Ledger) error {
	marker := c.runningMarker()
	st, err := os.Stat(marker)
	switch {
	case err == nil:
		from, now := st.ModTime(), time.Now()
		if err := l.RecordOutage(ctx, c.Gestore, "gestore", from, now,
			"custode serve stopped without shutting down (crash, kill or power loss) and was restarted"); err != nil {
			return fmt.Errorf("record the outage: %w", err)
		}
		e.log.Warn("the previous run did not stop cleanly: outage recorded", "from", from.UTC().Format(time.RFC3339), "to", now.UTC().Format(time.RFC3339))
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return writeFileSync(marker, []byte(fmt.Sprintf("pid %d\n", os.Getpid())))
}

// heartbeat touches the running marker until ctx is done.
func heartbeat(ctx context.Context, e *env, c *config) {
	t := time.NewTicker(heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := os.Chtimes(c.runningMarker(), now, now); err != nil {
				e.log.Warn("heartbeat", "err", err)
			}
		}
	}
}
