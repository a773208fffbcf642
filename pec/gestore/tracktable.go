package gestore

import (
	"container/heap"
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

// TrackerLedger is what the tracker reads from the ledger: the entries
// after its cursor, as a follower, and the entries of one transaction or
// of one kind through the index. A *ledger.Ledger is one.
type TrackerLedger interface {
	// Head returns the ledger's durable size.
	Head() ledger.Head
	// EntriesFrom yields the entries from seq to the head, in order.
	EntriesFrom(ctx context.Context, seq uint64) iter.Seq2[*ledger.Entry, error]
	// Find returns a page of the entries q selects.
	Find(ctx context.Context, q ledger.Query) (*ledger.Page, error)
}

// A deadline is when one avviso di mancata consegna may fall due: 12 or 24
// hours after a busta di trasporto, for one certified recipient.
type deadline struct {
	at    time.Time
	seq   uint64 // the busta's entry
	id    string // the transaction's identificativo
	rcpt  string // lower-cased
	after pec.Timeout
}

// deadlines is a min-heap of deadlines, earliest first (then by busta and
// recipient, so that the order is the same on every run).
type deadlines []deadline

func (h deadlines) Len() int { return len(h) }
func (h deadlines) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	if h[i].seq != h[j].seq {
		return h[i].seq < h[j].seq
	}
	if h[i].rcpt != h[j].rcpt {
		return h[i].rcpt < h[j].rcpt
	}
	return h[i].after < h[j].after
}
func (h deadlines) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deadlines) Push(x any)   { *h = append(*h, x.(deadline)) }
func (h *deadlines) Pop() any {
	old := *h
	d := old[len(old)-1]
	*h = old[:len(old)-1]
	return d
}

// seen is what the entries followed so far say of one recipient of one
// transaction. Each flag only ever goes from false to true, as the rules
// of RFC 6109 §3.1.6 do: once set, the avviso it rules out is never due.
type seen struct {
	presa, consegna, avviso12, avviso24 bool
	open                                int // deadlines of the table for it
}

// settles reports whether what was seen rules out the avviso of d.
func (s *seen) settles(after pec.Timeout) bool {
	if after == pec.Timeout12h {
		return s.presa || s.consegna || s.avviso12
	}
	return s.consegna || s.avviso24
}

// tracker keeps the table of the deadlines of the buste di trasporto a
// gestore sent: a follower of the ledger, whose cursor is the sequence
// number after the last entry it read. Each tick reads only the entries
// appended since the last one (adding the deadlines of new buste and
// noting receipts and avvisi of open ones) and the deadlines that have
// come, so that it costs the same on a ledger of a day and on one of
// thirty months.
//
// The table lives in memory; the ledger is its durable form. On the first
// tick (after a start or a crash) it is rebuilt from the ledger: the buste
// of the last trackWindow, found through the index, then followed from
// the head. Whether an avviso is due is always decided on the
// transaction's entries in the ledger, never on the table alone: the table
// only says when to look, and what the followed entries have already ruled
// out.
type tracker struct {
	ledger  TrackerLedger
	gestore string // the name of the gestore whose buste are tracked

	built  bool
	cursor uint64
	table  deadlines
	open   map[string]map[string]*seen // identificativo, recipient
}

func newTracker(l TrackerLedger, gestore string) *tracker {
	return &tracker{ledger: l, gestore: gestore, open: map[string]map[string]*seen{}}
}

// rebuild fills the table with the deadlines of the buste of the window
// before now, and puts the cursor at the head.
func (t *tracker) rebuild(ctx context.Context, now time.Time) error {
	head := t.ledger.Head().Size
	q := ledger.Query{Kind: ledger.KindPostaCertificata, From: now.Add(-trackWindow), Limit: ledger.DefaultQueryLimit}
	for e, err := range ledger.FindAll(ctx, t.ledger.Find, q) {
		if err != nil {
			return fmt.Errorf("gestore: tracker: rebuild: %w", err)
		}
		if e.Seq < head { // the later ones are followed
			t.addBusta(e)
		}
	}
	t.cursor, t.built = head, true
	return nil
}

// follow reads the entries after the cursor into the table, rebuilding it
// first if it has not been built. The cursor moves past each entry read,
// so that after a failure the next call goes on where this one stopped.
func (t *tracker) follow(ctx context.Context, now time.Time) error {
	if !t.built {
		if err := t.rebuild(ctx, now); err != nil {
			return err
		}
	}
	for e, err := range t.ledger.EntriesFrom(ctx, t.cursor) {
		if err != nil {
			return fmt.Errorf("gestore: tracker: follow from %d: %w", t.cursor, err)
		}
		if e.Seq < t.cursor {
			return fmt.Errorf("gestore: tracker: the ledger gave entry %d when asked for those from %d", e.Seq, t.cursor)
		}
		t.observe(e)
		t.cursor = e.Seq + 1
	}
	return nil
}

// observe notes one entry: a busta we sent opens deadlines; a presa in
// carico, a consegna or an avviso of an open transaction settles some.
func (t *tracker) observe(e *ledger.Entry) {
	if e.Kind == ledger.KindPostaCertificata && e.Gestore == t.gestore {
		t.addBusta(e)
	}
	switch e.Kind {
	case ledger.KindPresaInCarico, ledger.KindAvvenutaConsegna, ledger.KindErroreConsegna,
		ledger.KindPreavvisoErroreConsegna12, ledger.KindPreavvisoErroreConsegna24:
	default:
		return
	}
	// The transaction's entries are those Find gives for its
	// identificativo: by their own or a related one.
	t.note(e, e.Identificativo)
	for i, r := range e.Related {
		if r != e.Identificativo && !slices.Contains(e.Related[:i], r) {
			t.note(e, r)
		}
	}
}

func (t *tracker) note(e *ledger.Entry, id string) {
	rcpts := t.open[id]
	if rcpts == nil {
		return
	}
	if e.Kind == ledger.KindPresaInCarico {
		for rcpt, s := range rcpts {
			if coversAll(e.Details["ricezione"], []string{rcpt}) {
				s.presa = true
			}
		}
		return
	}
	s := rcpts[recipientOf(e)]
	if s == nil {
		return
	}
	switch e.Kind {
	case ledger.KindAvvenutaConsegna, ledger.KindErroreConsegna:
		s.consegna = true
	case ledger.KindPreavvisoErroreConsegna12:
		s.avviso12 = true
	case ledger.KindPreavvisoErroreConsegna24:
		s.avviso24 = true
	}
}

// addBusta opens the two deadlines of each certified recipient of busta.
func (t *tracker) addBusta(busta *ledger.Entry) {
	for _, d := range busta.Destinatari {
		if d.Tipo != ledger.TipoCertificato {
			continue
		}
		rcpt := strings.ToLower(d.Address)
		rcpts := t.open[busta.Identificativo]
		if rcpts == nil {
			rcpts = map[string]*seen{}
			t.open[busta.Identificativo] = rcpts
		}
		s := rcpts[rcpt]
		if s == nil {
			s = &seen{}
			rcpts[rcpt] = s
		}
		for _, after := range []pec.Timeout{pec.Timeout12h, pec.Timeout24h} {
			heap.Push(&t.table, deadline{at: busta.Time.Add(time.Duration(after) * time.Hour),
				seq: busta.Seq, id: busta.Identificativo, rcpt: rcpt, after: after})
			s.open++
		}
	}
}

// next returns the earliest deadline if it has come at now.
func (t *tracker) next(now time.Time) (deadline, bool) {
	if len(t.table) == 0 || t.table[0].at.After(now) {
		return deadline{}, false
	}
	return t.table[0], true
}

// settled reports whether the entries followed already rule out the avviso
// of d, so that the ledger need not be asked.
func (t *tracker) settled(d deadline) bool {
	s := t.open[d.id][d.rcpt]
	return s != nil && s.settles(d.after)
}

// done removes the earliest deadline, which next returned, once it has
// been dealt with.
func (t *tracker) done() {
	d := heap.Pop(&t.table).(deadline)
	rcpts := t.open[d.id]
	if s := rcpts[d.rcpt]; s != nil {
		if s.open--; s.open <= 0 {
			delete(rcpts, d.rcpt)
			if len(rcpts) == 0 {
				delete(t.open, d.id)
			}
		}
	}
}

// check reads the transaction of d from the ledger and returns its busta
// and whether the avviso of d is due: the decision, on the ledger's
// entries, of RFC 6109 §3.1.6. A busta no longer in the ledger (purged)
// has nothing due.
func (t *tracker) check(ctx context.Context, d deadline) (*ledger.Entry, bool, error) {
	var busta *ledger.Entry
	var s seen
	q := ledger.Query{Identificativo: d.id, Limit: ledger.DefaultQueryLimit}
	for e, err := range ledger.FindAll(ctx, t.ledger.Find, q) {
		if err != nil {
			return nil, false, fmt.Errorf("gestore: tracker: ledger lookup %s: %w", d.id, err)
		}
		switch e.Kind {
		case ledger.KindPostaCertificata:
			if e.Seq == d.seq {
				busta = e
			}
		case ledger.KindPresaInCarico:
			s.presa = s.presa || coversAll(e.Details["ricezione"], []string{d.rcpt})
		case ledger.KindAvvenutaConsegna, ledger.KindErroreConsegna:
			s.consegna = s.consegna || recipientOf(e) == d.rcpt
		case ledger.KindPreavvisoErroreConsegna12:
			s.avviso12 = s.avviso12 || recipientOf(e) == d.rcpt
		case ledger.KindPreavvisoErroreConsegna24:
			s.avviso24 = s.avviso24 || recipientOf(e) == d.rcpt
		}
	}
	if busta == nil {
		return nil, false, nil
	}
	return busta, !s.settles(d.after), nil
}

// tick follows the ledger, then deals with every deadline that has come at
// now, earliest first: one the followed entries rule out is dropped; for
// the others the ledger decides, and emit is called with the busta of each
// avviso due. It returns how many avvisi emit was called for. A deadline
// whose check or emit fails stays in the table, for the next tick.
func (t *tracker) tick(ctx context.Context, now time.Time, emit func(ctx context.Context, busta *ledger.Entry, d deadline) error) (int, error) {
	if err := t.follow(ctx, now); err != nil {
		return 0, err
	}
	emitted := 0
	for {
		d, ok := t.next(now)
		if !ok {
			return emitted, nil
		}
		if !t.settled(d) {
			busta, due, err := t.check(ctx, d)
			if err != nil {
				return emitted, err
			}
			if due {
				if err := emit(ctx, busta, d); err != nil {
					return emitted, err
				}
				emitted++
				// The avviso is in the ledger now; the next follow
				// reads it, and this note spares the check until then.
				if s := t.open[d.id][d.rcpt]; s != nil {
					if d.after == pec.Timeout12h {
						s.avviso12 = true
					} else {
						s.avviso24 = true
					}
				}
			}
		}
		t.done()
	}
}
