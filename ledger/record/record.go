// Package record is the one place that writes into the ledger what was
// done with the archive itself: an access (a query or an export), an
// outage, a policy change, a legal hold, a purge. The command line and the
// HTTP API both go through a [Recorder], so that the rule "recorded in the
// ledger before it is answered" is written once, every time is written in
// one layout ([TimeLayout]) and every event carries the same gestore.
package record

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/custode/custode/ledger"
)

// Appender is the part of the ledger a Recorder needs: a durable append
// that returns the events' sequence numbers once they are on disk.
// *ledger.Ledger satisfies it.
type Appender interface {
	Append(ctx context.Context, events ...ledger.Event) ([]uint64, error)
}

// TimeLayout is the layout of every time a Recorder writes into an event's
// details: RFC 3339 with nanoseconds, always in UTC (see [FormatTime]).
const TimeLayout = time.RFC3339Nano

// FormatTime writes t in TimeLayout, in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// Recorder records the archive's own events in a ledger. Its methods are
// safe for concurrent use if its Appender's are.
type Recorder struct {
	log     Appender
	gestore string
	now     func() time.Time
}

// New returns a Recorder appending to log, naming gestore in every event,
// with now as its clock (nil means time.Now).
func New(log Appender, gestore string, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{log: log, gestore: gestore, now: now}
}

// Record appends ev, with the Recorder's gestore and, unless ev has a
// time, the Recorder's clock as its time (in UTC). It returns the entry's
// sequence number once the ledger holds it durably. An event the ledger
// would refuse is refused before anything is appended.
func (r *Recorder) Record(ctx context.Context, ev ledger.Event) (uint64, error) {
	if r == nil || r.log == nil {
		return 0, errors.New("record: no ledger to record in")
	}
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	ev.Time = ev.Time.UTC()
	ev.Gestore = r.gestore
	if err := ev.Validate(); err != nil {
		return 0, fmt.Errorf("record: %s: %w", ev.Kind, err)
	}
	seqs, err := r.log.Append(ctx, ev)
	if err != nil {
		return 0, fmt.Errorf("record: %s: %w", ev.Kind, err)
	}
	if len(seqs) != 1 {
		return 0, fmt.Errorf("record: %s: the ledger returned %d sequence numbers for one event", ev.Kind, len(seqs))
	}
	return seqs[0], nil
}

// Access is one access to the evidence: a query or an export.
type Access struct {
	// Export is true for an export (a bundle, an extract, an audit
	// report), false for a query.
	Export bool
	// Actor is who asks.
	Actor string
	// Identificativo is the transaction asked for, if one is.
	Identificativo string
	// What names the access ("evidence bundle", "log extract", "audit
	// report", "archive find", ...); it is recorded as detail "what".
	What string
	// From and To, if set, bound the period asked for; they are recorded
	// as details "from" and "to" in TimeLayout.
	From, To time.Time
	// Details are further facts (query, reason, outcome, ...); empty
	// values are left out.
	Details map[string]string
}

// Event returns the ledger event that records a.
func (a Access) Event() ledger.Event {
	kind := ledger.KindQuery
	if a.Export {
		kind = ledger.KindExport
	}
	d := make(map[string]string, len(a.Details)+3)
	maps.Copy(d, a.Details)
	if a.What != "" {
		d["what"] = a.What
	}
	if !a.From.IsZero() {
		d["from"] = FormatTime(a.From)
	}
	if !a.To.IsZero() {
		d["to"] = FormatTime(a.To)
	}
	maps.DeleteFunc(d, func(_, v string) bool { return v == "" })
	return ledger.Event{Kind: kind, Actor: a.Actor, Identificativo: a.Identificativo, Details: d}
}

// Access records a and returns its entry's sequence number.
func (r *Recorder) Access(ctx context.Context, a Access) (uint64, error) {
	return r.Record(ctx, a.Event())
}

// Before records a and only then calls answer with the entry's sequence
// number: nothing of the evidence is answered unless its access is in the
// ledger. If the access cannot be recorded, answer is never called and the
// error is returned.
func (r *Recorder) Before(ctx context.Context, a Access, answer func(seq uint64) error) error {
	seq, err := r.Access(ctx, a)
	if err != nil {
		return err
	}
	return answer(seq)
}

// Details of an outage event, whose time is when the service came back.
const (
	DetailOutageService = ledger.DetailOutageService
	DetailOutageFrom    = ledger.DetailOutageFrom
	DetailOutageCause   = ledger.DetailOutageCause
)

// Outage records that service (gestore, tsa, archive) was unavailable from
// from until to, when it came back, for cause. The audit report lists
// outages as the AgID P02 dataset. The event is ledger.OutageEvent's:
// cause is made fit for a detail (valid UTF-8, no NUL, cut at a character
// boundary to at most ledger.MaxOutageCause bytes, "unknown" when empty),
// so that no error text can make the outage itself unrecordable.
func (r *Recorder) Outage(ctx context.Context, service string, from, to time.Time, cause string) (uint64, error) {
	return r.Record(ctx, ledger.OutageEvent(r.gestore, service, from, to, cause))
}

// PolicyChange records that actor applied version of a policy file whose
// SHA-256 is sha256Hex, kept as file.
func (r *Recorder) PolicyChange(ctx context.Context, actor string, version int, sha256Hex, file string) (uint64, error) {
	return r.Record(ctx, ledger.Event{Kind: ledger.KindPolicyChange, Actor: actor,
		Details: map[string]string{"version": strconv.Itoa(version), "sha256": sha256Hex, "file": file}})
}

// Hold records that actor placed or released a legal hold, described by
// details.
func (r *Recorder) Hold(ctx context.Context, actor string, details map[string]string) (uint64, error) {
	return r.Record(ctx, ledger.Event{Kind: ledger.KindLegalHold, Actor: actor, Details: details})
}

// Purge records, before it is carried out, that actor purges what details
// describe.
func (r *Recorder) Purge(ctx context.Context, actor string, details map[string]string) (uint64, error) {
	return r.Record(ctx, ledger.Event{Kind: ledger.KindPurge, Actor: actor, Details: details})
}
