package ledger

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// RecordOutage appends an outage event: service was unavailable from from
// until to (when it came back), for cause. The audit report lists these as
// the AgID P02 dataset. Cause is made valid for a detail (see outageCause),
// so that no error text can make the outage itself unrecordable.
func (l *Ledger) RecordOutage(ctx context.Context, gestore, service string, from, to time.Time, cause string) error {
	cause = outageCause(cause)
	_, err := l.Append(ctx, Event{Kind: KindOutage, Time: to.UTC(), Gestore: gestore, Details: map[string]string{
		DetailOutageService: service,
		DetailOutageFrom:    from.UTC().Format(time.RFC3339Nano),
		DetailOutageCause:   cause,
	}})
	return err
}

// maxOutageCause is the most bytes of an outage's cause that are kept.
const maxOutageCause = 4096

// outageCause returns cause as a detail can hold it: invalid UTF-8 replaced
// by U+FFFD, NUL bytes removed, cut at a character boundary to at most
// maxOutageCause bytes, and "unknown" for an empty cause.
func outageCause(cause string) string {
	cause = strings.ReplaceAll(strings.ToValidUTF8(cause, "\uFFFD"), "\x00", "")
	if len(cause) > maxOutageCause {
		cut := maxOutageCause
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
