package ledger

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// RecordOutage appends an outage event: service was unavailable from from
// until to (when it came back), for cause. The audit report lists these as
// the AgID P02 dataset. It appends OutageEvent's event, so that no error
// text can make the outage itself unrecordable.
func (l *Ledger) RecordOutage(ctx context.Context, gestore, service string, from, to time.Time, cause string) error {
	_, err := l.Append(ctx, OutageEvent(gestore, service, from, to, cause))
	return err
}

// OutageEvent returns the event that records that service was unavailable
// from from until to, for cause: its time is to, in UTC, and its details
// DetailOutageService, DetailOutageFrom (RFC 3339 with nanoseconds, in
// UTC) and DetailOutageCause. Cause is made fit for a detail: invalid
// UTF-8 replaced by U+FFFD, NUL bytes removed, cut at a character boundary
// to at most MaxOutageCause bytes, "unknown" when empty. Every outage
// record, the ledger's and record.Recorder's, is built here.
func OutageEvent(gestore, service string, from, to time.Time, cause string) Event {
	return Event{Kind: KindOutage, Time: to.UTC(), Gestore: gestore, Details: map[string]string{
		DetailOutageService: service,
		DetailOutageFrom:    from.UTC().Format(time.RFC3339Nano),
		DetailOutageCause:   outageCause(cause),
	}}
}

// MaxOutageCause is the most bytes of an outage's cause that are kept.
const MaxOutageCause = 4096

// outageCause returns cause as a detail can hold it: invalid UTF-8 replaced
// by U+FFFD, NUL bytes removed, cut at a character boundary to at most
// MaxOutageCause bytes, and "unknown" for an empty cause.
func outageCause(cause string) string {
	cause = strings.ReplaceAll(strings.ToValidUTF8(cause, "\uFFFD"), "\x00", "")
	if len(cause) > MaxOutageCause {
		cut := MaxOutageCause
		for cut > 0 && !utf8.RuneStart(cause[cut]) {
			cut--
		}
		cause = cause[:cut]
	}
	if cause == "" {
		cause = "unknown"
	}
	return cause
}
