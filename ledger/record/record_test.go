package record

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/custode/custode/ledger"
)

// memLog is an in-memory Appender that keeps what it is given, or fails.
type memLog struct {
	events []ledger.Event
	err    error
}

func (m *memLog) Append(_ context.Context, events ...ledger.Event) ([]uint64, error) {
	if m.err != nil {
		return nil, m.err
	}
	var seqs []uint64
	for _, e := range events {
		seqs = append(seqs, uint64(len(m.events)))
		m.events = append(m.events, e)
	}
	return seqs, nil
}

var clock = time.Date(2026, 12, 3, 23, 0, 0, 123456789, time.FixedZone("CET", 3600))

func TestBeforeRecordsFirst(t *testing.T) {
	log := &memLog{events: make([]ledger.Event, 5)}
	r := New(log, "Gestore", func() time.Time { return clock })
	var answered bool
	err := r.Before(context.Background(), Access{Export: true, Actor: "op", What: "audit report"}, func(seq uint64) error {
		if len(log.events) != 6 {
			t.Fatalf("answer called with %d events in the ledger, want the access recorded first", len(log.events))
		}
		if seq != 5 {
			t.Errorf("seq %d, want 5", seq)
		}
		answered = true
		return nil
	})
	if err != nil || !answered {
		t.Fatalf("Before: %v, answered %v", err, answered)
	}
	ev := log.events[5]
	if ev.Kind != ledger.KindExport || ev.Gestore != "Gestore" || ev.Actor != "op" || ev.Details["what"] != "audit report" {
		t.Errorf("recorded %+v", ev)
	}
	if !ev.Time.Equal(clock) || ev.Time.Location() != time.UTC {
		t.Errorf("time %v, want %v in UTC", ev.Time, clock)
	}
}

func TestBeforeRefusesWhenRecordingFails(t *testing.T) {
	boom := errors.New("disk full")
	tests := []struct {
		name string
		r    *Recorder
		want error
	}{
		{"append fails", New(&memLog{err: boom}, "G", nil), boom},
		{"invalid event", New(&memLog{}, "G", nil), nil},
		{"no ledger", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Access{Actor: "op", What: "archive find"}
			if tt.name == "invalid event" {
				a.Details = map[string]string{"Bad Key": "x"}
			}
			err := tt.r.Before(context.Background(), a, func(uint64) error {
				t.Fatal("answered although the access was not recorded")
				return nil
			})
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want it to wrap %v", err, tt.want)
			}
		})
	}
}

func TestOneTimeFormat(t *testing.T) {
	log := &memLog{}
	r := New(log, "G", func() time.Time { return clock })
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	to := from.Add(36*time.Hour + 7*time.Nanosecond)
	ctx := context.Background()
	if _, err := r.Access(ctx, Access{Actor: "op", What: "log extract", From: from, To: to}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Outage(ctx, "gestore", from, to, "crash"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ got, want string }{
		{log.events[0].Details["from"], "2026-10-31T23:00:00Z"},
		{log.events[0].Details["to"], "2026-11-02T11:00:00.000000007Z"},
		{log.events[1].Details[DetailOutageFrom], "2026-10-31T23:00:00Z"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
		if p, err := time.Parse(TimeLayout, tt.got); err != nil || FormatTime(p) != tt.got {
			t.Errorf("%q does not round-trip through TimeLayout: %v", tt.got, err)
		}
	}
	if !log.events[1].Time.Equal(to) {
		t.Errorf("outage time %v, want its end %v", log.events[1].Time, to)
	}
}

func TestOutageCause(t *testing.T) {
	long := strings.Repeat("a", ledger.MaxOutageCause-1) + "è" // the è straddles the limit
	tests := []struct{ cause, want string }{
		{"", "unknown"},
		{"tsa down", "tsa down"},
		{"a\x00b\xffc", "ab\uFFFDc"},
		{long, strings.Repeat("a", ledger.MaxOutageCause-1)},
	}
	for _, tt := range tests {
		log := &memLog{}
		if _, err := New(log, "G", nil).Outage(context.Background(), "tsa", clock.Add(-time.Hour), clock, tt.cause); err != nil {
			t.Fatalf("cause %.20q: %v", tt.cause, err)
		}
		got := log.events[0].Details[DetailOutageCause]
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("cause %.20q recorded as %.20q (len %d), want %.20q (len %d)", tt.cause, got, len(got), tt.want, len(tt.want))
		}
	}
}

func TestKinds(t *testing.T) {
	log := &memLog{}
	r := New(log, "G", nil)
	ctx := context.Background()
	steps := []struct {
		kind ledger.Kind
		do   func() (uint64, error)
	}{
		{ledger.KindQuery, func() (uint64, error) { return r.Access(ctx, Access{Actor: "op", What: "q"}) }},
		{ledger.KindExport, func() (uint64, error) { return r.Access(ctx, Access{Export: true, Actor: "op", What: "e"}) }},
		{ledger.KindPolicyChange, func() (uint64, error) { return r.PolicyChange(ctx, "op", 3, "ab", "v3.yaml") }},
		{ledger.KindLegalHold, func() (uint64, error) { return r.Hold(ctx, "op", map[string]string{"case": "c"}) }},
		{ledger.KindPurge, func() (uint64, error) { return r.Purge(ctx, "op", map[string]string{"objects": "0"}) }},
	}
	for i, s := range steps {
		seq, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.kind, err)
		}
		if seq != uint64(i) || log.events[i].Kind != s.kind || log.events[i].Gestore != "G" {
			t.Errorf("step %d: seq %d, event %+v, want kind %s", i, seq, log.events[i], s.kind)
		}
	}
	if d := log.events[2].Details; d["version"] != "3" || d["sha256"] != "ab" || d["file"] != "v3.yaml" {
		t.Errorf("policy change details %v", d)
	}
}

func TestRunningStart(t *testing.T) {
	ctx := context.Background()
	r := Running{Path: t.TempDir() + "/serve.running", Service: "gestore"}
	log := &memLog{}
	rec := New(log, "G", nil)
	now := time.Now()
	// A clean first start records nothing.
	if from, err := r.Start(ctx, rec, now); err != nil || !from.IsZero() || len(log.events) != 0 {
		t.Fatalf("first start: %v, %v, %d events", from, err, len(log.events))
	}
	// The marker left by a run that never stopped: an outage from its time.
	was := now.Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(r.Path, was, was); err != nil {
		t.Fatal(err)
	}
	from, err := r.Start(ctx, rec, now)
	if err != nil || !from.Equal(was) || len(log.events) != 1 {
		t.Fatalf("restart: %v, %v, %d events", from, err, len(log.events))
	}
	ev := log.events[0]
	if ev.Kind != ledger.KindOutage || ev.Details[DetailOutageFrom] != FormatTime(was) || !ev.Time.Equal(now) || ev.Details[DetailOutageCause] != UncleanStopCause {
		t.Errorf("outage %+v", ev)
	}
	// If the outage cannot be recorded, the start fails.
	if _, err := r.Start(ctx, New(&memLog{err: errors.New("full")}, "G", nil), now); err == nil {
		t.Error("started although the outage was not recorded")
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Path); !os.IsNotExist(err) {
		t.Errorf("marker still there after Stop: %v", err)
	}
}

func TestReadImports(t *testing.T) {
	at := time.Date(2026, 12, 3, 22, 0, 0, 5, time.UTC)
	good := `{"kind":"accettazione","identificativo":"opec1@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:00Z","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","details":{"imported":"whatever"}}`
	tests := []struct {
		name, in string
		n        int
		line     int    // of the *LineError, 0: none
		want     string // in the error
	}{
		{"one", good + "\n", 1, 0, ""},
		{"blank lines", "\n" + good + "\n\n" + good, 2, 0, ""},
		{"system kind", good + "\n" + `{"kind":"checkpoint","riferimento_temporale":"2026-11-23T10:00:00Z","actor":"op"}`, 0, 2, `kind "checkpoint" is one custode records itself`},
		{"not json", "not json", 0, 1, ""},
		{"invalid", `{"kind":"accettazione"}`, 0, 1, "riferimento_temporale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := ReadImports(context.Background(), strings.NewReader(tt.in), at)
			var le *LineError
			if tt.line != 0 {
				if !errors.As(err, &le) || le.Line != tt.line || !strings.Contains(err.Error(), tt.want) || evs != nil {
					t.Fatalf("got %d events, %v; want a refusal of line %d with %q", len(evs), err, tt.line, tt.want)
				}
				return
			}
			if err != nil || len(evs) != tt.n {
				t.Fatalf("got %d events, %v; want %d", len(evs), err, tt.n)
			}
			for _, e := range evs {
				if e.Details[ledger.DetailImported] != "2026-12-03T22:00:00.000000005Z" {
					t.Errorf("imported mark %q", e.Details[ledger.DetailImported])
				}
			}
		})
	}
	_, err := ReadImports(context.Background(), strings.NewReader(strings.Repeat("x", MaxImportLine+1)), at)
	if !errors.Is(err, bufio.ErrTooLong) {
		t.Errorf("long line: %v", err)
	}
}
