package ledger

import (
	"context"
	"time"
)

// Details of an outage event, whose riferimento temporale is when the
// service came back.
const (
	DetailOutageService = "service" // what was unavailable: gestore, tsa, archive
	DetailOutageFrom    = "from"    // since when, RFC 3339 with nanoseconds, UTC
	DetailOutageCause   = "cause"   // what was seen
)

// RecordOutage appends an outage event: service was unavailable from from
// until to (when it came back), for cause. The audit report lists these as
// the AgID P02 dataset. Cause is cut to a detail's limit.
func (l *Ledger) RecordOutage(ctx context.Context, gestore, service string, from, to time.Time, cause string) error {
	if len(cause) > 4096 {
		cause = cause[:4096]
	}
	if cause == "" {
		cause = "unknown"
	}
	_, err := l.Append(ctx, Event{Kind: KindOutage, Time: to.UTC(), Gestore: gestore, Details: map[string]string{
		DetailOutageService: service,
		DetailOutageFrom:    from.UTC().Format(time.RFC3339Nano),
		DetailOutageCause:   cause,
	}})
	return err
}
