package gestore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

const (
	trackOurs   = "Alfa PEC S.p.A."
	trackTheirs = "Beta PEC S.p.A."
)

var trackStart = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// trackLog is a TrackerLedger in memory: a slice of entries, with Find
// over identificativo (own or related) and kind, paged as the ledger pages.
// It counts what the tracker reads.
type trackLog struct {
	entries   []*ledger.Entry
	finds     int   // Find calls
	read      int   // entries EntriesFrom yielded
	failNext  error // the next EntriesFrom fails with it after one entry
	failFinds error // Find fails with it
}

func (l *trackLog) Head() ledger.Head { return ledger.Head{Size: uint64(len(l.entries))} }

func (l *trackLog) EntriesFrom(ctx context.Context, seq uint64) iter.Seq2[*ledger.Entry, error] {
	return func(yield func(*ledger.Entry, error) bool) {
		fail := l.failNext
		l.failNext = nil
		for i := seq; i < uint64(len(l.entries)); i++ {
			if fail != nil && i > seq {
				yield(nil, fail)
				return
			}
			l.read++
			if !yield(l.entries[i], nil) {
				return
			}
		}
	}
}

func (l *trackLog) Find(_ context.Context, q ledger.Query) (*ledger.Page, error) {
	l.finds++
	if l.failFinds != nil {
		return nil, l.failFinds
	}
	from := 0
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil {
			return nil, err
		}
		from = n
	}
	limit := q.Limit
	if limit <= 0 {
		limit = ledger.DefaultQueryLimit
	}
	page := &ledger.Page{}
	for i := from; i < len(l.entries); i++ {
		if !q.Matches(l.entries[i]) {
			continue
		}
		if len(page.Entries) == limit {
			page.Next = strconv.Itoa(i)
			break
		}
		page.Entries = append(page.Entries, l.entries[i])
	}
	return page, nil
}

// add appends an event at trackStart+at and returns its entry.
func (l *trackLog) add(ev ledger.Event, at time.Duration) *ledger.Entry {
	ev.Time = trackStart.Add(at)
	e := &ledger.Entry{Seq: uint64(len(l.entries)), Event: ev}
	l.entries = append(l.entries, e)
	return e
}

func busta(id string, rcpts ...ledger.Recipient) ledger.Event {
	return ledger.Event{Kind: ledger.KindPostaCertificata, Identificativo: id, Gestore: trackOurs,
		Mittente: "mario@pec.alfa.test", Oggetto: "Prova", Destinatari: rcpts}
}

func certificato(a string) ledger.Recipient {
	return ledger.Recipient{Address: a, Tipo: ledger.TipoCertificato}
}

func receipt(kind ledger.Kind, id, key, value string) ledger.Event {
	return ledger.Event{Kind: kind, Identificativo: id, Gestore: trackTheirs, Details: map[string]string{key: value}}
}

// avviso is what one emitted avviso looks like to the test.
type avviso struct {
	id, rcpt string
	after    pec.Timeout
}

// trackRun drives a tracker over a trackLog, recording the avvisi it emits
// in the log as the server's commit does.
type trackRun struct {
	log     *trackLog
	tr      *tracker
	avvisi  []avviso
	failing error // emit fails with it, once
}

func newTrackRun() *trackRun {
	l := &trackLog{}
	return &trackRun{log: l, tr: newTracker(l, trackOurs)}
}

func (r *trackRun) emit(_ context.Context, b *ledger.Entry, d deadline) error {
	if r.failing != nil {
		err := r.failing
		r.failing = nil
		return err
	}
	kind := ledger.KindPreavvisoErroreConsegna12
	if d.after == pec.Timeout24h {
		kind = ledger.KindPreavvisoErroreConsegna24
	}
	r.avvisi = append(r.avvisi, avviso{b.Identificativo, d.rcpt, d.after})
	r.log.add(ledger.Event{Kind: kind, Identificativo: b.Identificativo, Gestore: trackOurs,
		Details: map[string]string{"destinatario": d.rcpt}}, 0)
	return nil
}

func (r *trackRun) tick(t *testing.T, at time.Duration) int {
	t.Helper()
	n, err := r.tr.tick(context.Background(), trackStart.Add(at), r.emit)
	if err != nil {
		t.Fatalf("tick at %v: %v", at, err)
	}
	return n
}

// TestTrackTable checks the rules of RFC 6109 §3.1.6 on the deadline
// table: each case is a busta sent at 0, the entries that follow it, and
// the avvisi wanted after ticks every 30 minutes up to 30 hours.
func TestTrackTable(t *testing.T) {
	const id = "opec.1@pec.alfa.test"
	const lucia, anna = "lucia@pec.beta.test", "anna@pec.beta.test"
	type later struct {
		at time.Duration
		ev ledger.Event
	}
	tests := []struct {
		name  string
		busta ledger.Event
		later []later
		want  []avviso
	}{
		{"neither presa in carico nor consegna: both", busta(id, certificato(lucia)), nil,
			[]avviso{{id, lucia, pec.Timeout12h}, {id, lucia, pec.Timeout24h}}},
		{"presa in carico, no consegna: 24 hours only", busta(id, certificato(lucia)),
			[]later{{time.Hour, receipt(ledger.KindPresaInCarico, id, "ricezione", lucia)}},
			[]avviso{{id, lucia, pec.Timeout24h}}},
		{"consegna after 12 hours: 12 hours only", busta(id, certificato(lucia)),
			[]later{{13 * time.Hour, receipt(ledger.KindAvvenutaConsegna, id, "destinatario", lucia)}},
			[]avviso{{id, lucia, pec.Timeout12h}}},
		{"both in time: none", busta(id, certificato(lucia)),
			[]later{{time.Minute, receipt(ledger.KindPresaInCarico, id, "ricezione", lucia)},
				{2 * time.Minute, receipt(ledger.KindAvvenutaConsegna, id, "destinatario", lucia)}},
			nil},
		{"errore di consegna counts as consegna", busta(id, certificato(lucia)),
			[]later{{time.Minute, receipt(ledger.KindErroreConsegna, id, "destinatario", lucia)}},
			nil},
		{"consegna found by a related identificativo", busta(id, certificato(lucia)),
			[]later{{time.Minute, ledger.Event{Kind: ledger.KindAvvenutaConsegna, Identificativo: "opec.other@pec.beta.test",
				Related: []string{id}, Gestore: trackTheirs, Details: map[string]string{"destinatario": lucia}}}},
			nil},
		{"recipients apart; presa in carico covers a list", busta(id, certificato(lucia), certificato("Anna@PEC.beta.test")),
			[]later{{time.Minute, receipt(ledger.KindPresaInCarico, id, "ricezione", "x@pec.beta.test "+strings.ToUpper(anna))},
				{2 * time.Minute, receipt(ledger.KindAvvenutaConsegna, id, "destinatario", lucia)}},
			[]avviso{{id, anna, pec.Timeout24h}}},
		{"consegna of another recipient settles nothing", busta(id, certificato(lucia)),
			[]later{{time.Minute, receipt(ledger.KindAvvenutaConsegna, id, "destinatario", anna)}},
			[]avviso{{id, lucia, pec.Timeout12h}, {id, lucia, pec.Timeout24h}}},
		{"an ordinary recipient has no deadline", busta(id, ledger.Recipient{Address: "x@example.com", Tipo: ledger.TipoEsterno}), nil, nil},
		{"a busta of another gestore is not ours", func() ledger.Event { b := busta(id, certificato(lucia)); b.Gestore = trackTheirs; return b }(), nil, nil},
		{"a recipient listed twice gets one avviso of each", busta(id, certificato(lucia), certificato(lucia)), nil,
			[]avviso{{id, lucia, pec.Timeout12h}, {id, lucia, pec.Timeout24h}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTrackRun()
			r.tick(t, 0) // the table is built on an empty ledger
			r.log.add(tt.busta, 0)
			for at := 30 * time.Minute; at <= 30*time.Hour; at += 30 * time.Minute {
				for _, l := range tt.later {
					if l.at <= at && l.at > at-30*time.Minute {
						r.log.add(l.ev, l.at)
					}
				}
				r.tick(t, at)
			}
			if fmt.Sprint(r.avvisi) != fmt.Sprint(tt.want) {
				t.Errorf("avvisi %v, want %v", r.avvisi, tt.want)
			}
			if len(r.tr.table) != 0 || len(r.tr.open) != 0 {
				t.Errorf("after 30 hours the table holds %d deadlines of %d transactions", len(r.tr.table), len(r.tr.open))
			}
		})
	}
}

// TestTrackTableBoundary: a deadline is due at its instant, not before.
func TestTrackTableBoundary(t *testing.T) {
	r := newTrackRun()
	r.log.add(busta("opec.b@pec.alfa.test", certificato("lucia@pec.beta.test")), 0)
	if n := r.tick(t, 12*time.Hour-time.Nanosecond); n != 0 {
		t.Errorf("%d avvisi before 12 hours", n)
	}
	if n := r.tick(t, 12*time.Hour); n != 1 {
		t.Errorf("%d avvisi at 12 hours, want 1", n)
	}
	if n := r.tick(t, 24*time.Hour-time.Nanosecond); n != 0 {
		t.Errorf("%d avvisi before 24 hours", n)
	}
	if n := r.tick(t, 24*time.Hour); n != 1 {
		t.Errorf("%d avvisi at 24 hours, want 1", n)
	}
}

// TestTrackTableReadsOnlyNew checks the follower: after the first tick, a
// tick reads only the entries appended since the last one, and asks the
// index only about deadlines that have come and that the entries read have
// not settled, however many entries the ledger holds.
func TestTrackTableReadsOnlyNew(t *testing.T) {
	r := newTrackRun()
	// 2,000 old, settled transactions, beyond the rebuild's window.
	for j := range 1000 {
		id := fmt.Sprintf("opec.old%d@pec.alfa.test", j)
		r.log.add(busta(id, certificato("lucia@pec.beta.test")), -100*time.Hour)
		r.log.add(receipt(ledger.KindAvvenutaConsegna, id, "destinatario", "lucia@pec.beta.test"), -100*time.Hour)
	}
	r.tick(t, 0)
	if r.log.read != 0 {
		t.Errorf("the first tick read %d entries; the rebuild should use the index only", r.log.read)
	}
	r.log.finds, r.log.read = 0, 0
	// Three new buste: one delivered, one taken in charge, one silent.
	for i, after := range []ledger.Kind{ledger.KindAvvenutaConsegna, ledger.KindPresaInCarico, ""} {
		id := fmt.Sprintf("opec.new%d@pec.alfa.test", i)
		r.log.add(busta(id, certificato("lucia@pec.beta.test")), time.Minute)
		switch after {
		case ledger.KindAvvenutaConsegna:
			r.log.add(receipt(after, id, "destinatario", "lucia@pec.beta.test"), 2*time.Minute)
		case ledger.KindPresaInCarico:
			r.log.add(receipt(after, id, "ricezione", "lucia@pec.beta.test"), 2*time.Minute)
		}
	}
	r.tick(t, time.Hour)
	if r.log.read != 5 || r.log.finds != 0 {
		t.Errorf("a tick read %d entries and ran %d queries, want the 5 new and none", r.log.read, r.log.finds)
	}
	r.log.finds, r.log.read = 0, 0
	r.tick(t, 13*time.Hour)
	// Only the silent busta's 12-hour deadline needs the ledger.
	if r.log.read != 0 || r.log.finds != 1 || len(r.avvisi) != 1 {
		t.Errorf("at 13 hours: read %d, %d queries, avvisi %v; want 0, 1 and one", r.log.read, r.log.finds, r.avvisi)
	}
	r.log.finds, r.log.read = 0, 0
	r.tick(t, 25*time.Hour)
	// The avviso just emitted is read; two 24-hour deadlines need the
	// ledger (taken in charge and silent).
	if r.log.read != 1 || r.log.finds != 2 || len(r.avvisi) != 3 {
		t.Errorf("at 25 hours: read %d, %d queries, avvisi %v; want 1, 2 and three", r.log.read, r.log.finds, r.avvisi)
	}
}

// TestTrackTableRebuild: a tracker started on a ledger with history finds
// the buste of the window through the index, emits only what the ledger
// does not already hold, and follows what is appended after.
func TestTrackTableRebuild(t *testing.T) {
	l := &trackLog{}
	const lucia = "lucia@pec.beta.test"
	l.add(busta("opec.old@pec.alfa.test", certificato(lucia)), -80*time.Hour) // beyond the window
	l.add(busta("opec.done@pec.alfa.test", certificato(lucia)), -30*time.Hour)
	l.add(ledger.Event{Kind: ledger.KindPreavvisoErroreConsegna12, Identificativo: "opec.done@pec.alfa.test", Gestore: trackOurs,
		Details: map[string]string{"destinatario": lucia}}, -18*time.Hour)
	l.add(ledger.Event{Kind: ledger.KindPreavvisoErroreConsegna24, Identificativo: "opec.done@pec.alfa.test", Gestore: trackOurs,
		Details: map[string]string{"destinatario": lucia}}, -6*time.Hour)
	l.add(busta("opec.half@pec.alfa.test", certificato(lucia)), -30*time.Hour)
	l.add(ledger.Event{Kind: ledger.KindPreavvisoErroreConsegna12, Identificativo: "opec.half@pec.alfa.test", Gestore: trackOurs,
		Details: map[string]string{"destinatario": lucia}}, -18*time.Hour)
	l.add(busta("opec.young@pec.alfa.test", certificato(lucia)), -time.Hour)

	r := &trackRun{log: l, tr: newTracker(l, trackOurs)}
	r.tick(t, 0)
	want := []avviso{{"opec.half@pec.alfa.test", lucia, pec.Timeout24h}}
	if fmt.Sprint(r.avvisi) != fmt.Sprint(want) {
		t.Errorf("after the rebuild: %v, want %v", r.avvisi, want)
	}
	// A second tracker on the same ledger (a restart) emits nothing.
	r2 := &trackRun{log: l, tr: newTracker(l, trackOurs)}
	if n := r2.tick(t, time.Minute); n != 0 {
		t.Errorf("a restart emitted %v", r2.avvisi)
	}
	l.add(busta("opec.after@pec.alfa.test", certificato(lucia)), time.Minute)
	r.tick(t, 13*time.Hour)
	want = append(want, avviso{"opec.young@pec.alfa.test", lucia, pec.Timeout12h}, avviso{"opec.after@pec.alfa.test", lucia, pec.Timeout12h})
	if fmt.Sprint(r.avvisi) != fmt.Sprint(want) {
		t.Errorf("at 13 hours: %v, want %v", r.avvisi, want)
	}
}

// TestTrackTableFailures: a failed read, query or emission loses nothing:
// the next tick goes on from where the failed one stopped.
func TestTrackTableFailures(t *testing.T) {
	const lucia = "lucia@pec.beta.test"
	boom := errors.New("boom")
	r := newTrackRun()
	r.tick(t, 0)
	r.log.add(busta("opec.1@pec.alfa.test", certificato(lucia)), 0)
	r.log.add(busta("opec.2@pec.alfa.test", certificato(lucia)), 0)

	r.log.failNext = boom
	if _, err := r.tr.tick(context.Background(), trackStart.Add(time.Minute), r.emit); !errors.Is(err, boom) {
		t.Fatalf("a failed read: %v", err)
	}
	if r.tr.cursor != 1 {
		t.Errorf("cursor %d after reading one entry, want 1", r.tr.cursor)
	}
	r.tick(t, 2*time.Minute)
	if r.tr.cursor != 2 || len(r.tr.table) != 4 {
		t.Errorf("after the retry: cursor %d, %d deadlines; want 2 and 4", r.tr.cursor, len(r.tr.table))
	}

	r.log.failFinds = boom
	if _, err := r.tr.tick(context.Background(), trackStart.Add(12*time.Hour), r.emit); !errors.Is(err, boom) {
		t.Fatalf("a failed query: %v", err)
	}
	r.log.failFinds = nil
	r.failing = boom
	if n, err := r.tr.tick(context.Background(), trackStart.Add(12*time.Hour), r.emit); !errors.Is(err, boom) || n != 0 {
		t.Fatalf("a failed emission: %d, %v", n, err)
	}
	if n := r.tick(t, 12*time.Hour); n != 2 {
		t.Errorf("the retry emitted %d avvisi, want 2", n)
	}
	if n := r.tick(t, 12*time.Hour); n != 0 {
		t.Errorf("a tick after the retry emitted %d more", n)
	}
}

// synthLog is a TrackerLedger of any size that holds nothing: entry seq is
// computed when asked for. Transaction j is entries 4j to 4j+3, one every
// synthStep: our accettazione, our busta di trasporto to one certified
// recipient, the other gestore's presa in carico and consegna; one
// transaction in ten gets neither (its last two entries are of another
// transaction), so both its avvisi are due.
type synthLog struct {
	size  uint64
	finds int
}

// synthStep is the time between entries: 100 million entries over 30
// months.
const synthStep = 788 * time.Millisecond

func synthID(j uint64) string { return "opec." + strconv.FormatUint(j, 10) + "@pec.alfa.test" }

func (l *synthLog) entry(seq uint64) *ledger.Entry {
	j := seq / 4
	rcpt := "dest" + strconv.FormatUint(j%1000, 10) + "@pec.beta.test"
	e := &ledger.Entry{Seq: seq}
	e.Time = trackStart.Add(time.Duration(seq) * synthStep)
	e.Identificativo = synthID(j)
	e.Mittente = "mario@pec.alfa.test"
	e.Gestore = trackOurs
	switch seq % 4 {
	case 0:
		e.Kind = ledger.KindAccettazione
	case 1:
		e.Kind = ledger.KindPostaCertificata
		e.Destinatari = []ledger.Recipient{certificato(rcpt), {Address: "x@example.com", Tipo: ledger.TipoEsterno}}
	case 2, 3:
		if j%10 == 0 {
			e.Kind, e.Identificativo = ledger.KindAccettazione, "other"+e.Identificativo
		} else if seq%4 == 2 {
			e.Kind, e.Gestore, e.Details = ledger.KindPresaInCarico, trackTheirs, map[string]string{"ricezione": rcpt}
		} else {
			e.Kind, e.Gestore, e.Details = ledger.KindAvvenutaConsegna, trackTheirs, map[string]string{"destinatario": rcpt}
		}
	}
	return e
}

func (l *synthLog) Head() ledger.Head { return ledger.Head{Size: l.size} }

func (l *synthLog) EntriesFrom(ctx context.Context, seq uint64) iter.Seq2[*ledger.Entry, error] {
	return func(yield func(*ledger.Entry, error) bool) {
		for ; seq < l.size; seq++ {
			if !yield(l.entry(seq), nil) {
				return
			}
		}
	}
}

func (l *synthLog) Find(_ context.Context, q ledger.Query) (*ledger.Page, error) {
	l.finds++
	page := &ledger.Page{}
	switch {
	case q.Identificativo != "":
		j, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(q.Identificativo, "opec."), "@pec.alfa.test"), 10, 64)
		if err != nil {
			return page, nil
		}
		for seq := 4 * j; seq < min(4*j+4, l.size); seq++ {
			if e := l.entry(seq); q.Matches(e) {
				page.Entries = append(page.Entries, e)
			}
		}
	case q.Kind == ledger.KindPostaCertificata:
		j := uint64(0)
		if q.Cursor != "" {
			j, _ = strconv.ParseUint(q.Cursor, 10, 64)
		} else if d := q.From.Sub(trackStart); d > 0 {
			j = uint64(d/synthStep) / 4
		}
		for ; 4*j+1 < l.size; j++ {
			e := l.entry(4*j + 1)
			if !q.Matches(e) {
				continue
			}
			if len(page.Entries) == q.Limit {
				page.Next = strconv.FormatUint(j, 10)
				break
			}
			page.Entries = append(page.Entries, e)
		}
	default:
		return nil, fmt.Errorf("synthLog: query %+v not supported", q)
	}
	return page, nil
}

// BenchmarkTrackerTick measures one tick of the tracker's deadline table
// (reading the entries since the last tick, the deadlines that have come,
// and the ledger's answer for those the entries have not settled) on
// ledgers of a thousand and of 100 million entries. Each tick adds 30
// seconds and the entries of those 30 seconds (about 38, 9 buste); the
// tracker first runs a day of ticks, so that deadlines fall due in every
// one. Emitting an avviso (an RSA signature and a commit) is left out: its
// cost is per avviso, not per tick.
func BenchmarkTrackerTick(b *testing.B) {
	for _, age := range []uint64{1_000, 100_000_000} {
		b.Run(fmt.Sprintf("entries=%d", age), func(b *testing.B) {
			l := &synthLog{size: age}
			tr := newTracker(l, trackOurs)
			ctx := context.Background()
			now := trackStart.Add(time.Duration(age) * synthStep)
			emitted := 0
			emit := func(context.Context, *ledger.Entry, deadline) error { emitted++; return nil }
			const tick = 30 * time.Second
			perTick := uint64(tick / synthStep)
			step := func() {
				now = now.Add(tick)
				l.size += perTick
				if _, err := tr.tick(ctx, now, emit); err != nil {
					b.Fatal(err)
				}
			}
			for range 24 * time.Hour / tick {
				step()
			}
			emitted, l.finds = 0, 0
			ticks := 0
			for b.Loop() {
				step()
				ticks++
			}
			b.ReportMetric(float64(emitted)/float64(ticks), "avvisi/op")
			b.ReportMetric(float64(l.finds)/float64(ticks), "queries/op")
			b.ReportMetric(float64(len(tr.table)), "deadlines")
		})
	}
}
