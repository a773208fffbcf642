package gestore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/queue"
)

// The engine tests drive the RFC 6109 engine (accept, receive, deliver,
// Track, the recording session) directly, on the in-memory fakes of
// fakes_test.go: no network, no badger, keys made once.

// engMsg returns a message from mario to the To field to, CRLF-ended,
// with extra header lines (each "Name: value") before the others.
func engMsg(to string, extra ...string) []byte {
	h := ""
	for _, x := range extra {
		h += x + "\n"
	}
	m := h + message(engMario, to, "", "Prova del motore")
	return []byte(strings.ReplaceAll(m, "\n", "\r\n"))
}

// opVerbs returns the first word of each op: "enqueue", "append", ...
func opVerbs(ops []string) []string {
	out := make([]string, len(ops))
	for i, op := range ops {
		out[i], _, _ = strings.Cut(op, " ")
	}
	return out
}

// TestEngineCommitOrdering checks the rule of commit: the messages of a
// step are queued (held back) and its events appended to the ledger
// before the step answers; when the ledger refuses the events, the step's
// messages leave the queue, nothing is delivered, and the answer is
// temporary (451), so that the client tries again.
func TestEngineCommitOrdering(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		e := newEngine(t)
		o := e.s.accept(context.Background(), engMario, []string{engLaura}, engMsg(engLaura))
		if o.Reason != ReasonOK || o.Identificativo == "" {
			t.Fatalf("accept: %v, want ok with an identificativo", o)
		}
		ops := e.ops.list()
		// Queued (held back), then recorded, then answered: no delivery
		// before the ledger has the events.
		if want := []string{"enqueue", "append"}; !slices.Equal(opVerbs(ops), want) {
			t.Fatalf("ops before the reply %q, want %v", ops, want)
		}
		if ops[1] != "append accettazione posta-certificata" {
			t.Errorf("ledger append %q, want the accettazione and the busta in one append", ops[1])
		}
		if got := e.out.ids(); len(got) != 2 || !strings.HasPrefix(got[0], "accettazione/") || !strings.HasPrefix(got[1], "busta/") {
			t.Errorf("queued %q, want the accettazione and the busta", got)
		}
		if code := publicError(o).Code; code != 250 {
			t.Errorf("reply %d, want 250", code)
		}
		e.drain(t)
		// The accettazione and the ricevuta di consegna reach mario, the
		// busta laura.
		if got := kindsOf(e.boxes.messages(t, engMario)); !slices.Equal(got, []pec.Kind{pec.KindAccettazione, pec.KindConsegnaCompleta}) {
			t.Errorf("mario's mailbox %v", got)
		}
		if got := kindsOf(e.boxes.messages(t, engLaura)); !slices.Equal(got, []pec.Kind{pec.KindBustaTrasporto}) {
			t.Errorf("laura's mailbox %v", got)
		}
		want := []ledger.Kind{ledger.KindAccettazione, ledger.KindPostaCertificata, ledger.KindPresaInCarico, ledger.KindAvvenutaConsegna}
		if got := e.led.kinds(); !slices.Equal(got, want) {
			t.Errorf("ledger %v, want %v", got, want)
		}
	})

	t.Run("ledger fails", func(t *testing.T) {
		e := newEngine(t)
		e.led.failAppend = errors.New("the ledger's disk is gone")
		o := e.s.accept(context.Background(), engMario, []string{engLaura}, engMsg(engLaura))
		if o.Kind() != Temporary {
			t.Fatalf("accept with the ledger failing: %v (kind %d), want a temporary outcome", o, o.Kind())
		}
		if se := publicError(o); se.Code/100 != 4 {
			t.Errorf("reply %d %s, want 4xx", se.Code, se.Message)
		}
		ops := e.ops.list()
		if want := []string{"enqueue", "append-failed", "remove", "remove"}; !slices.Equal(opVerbs(ops), want) {
			t.Fatalf("ops %q, want %v", ops, want)
		}
		if got := e.out.ids(); len(got) != 0 {
			t.Errorf("left in the queue %q, want nothing", got)
		}
		e.drain(t)
		if got := e.ops.list(); len(got) != len(ops) {
			t.Errorf("after the failure: %q", got[len(ops):])
		}
		if got := e.led.kinds(); len(got) != 0 {
			t.Errorf("ledger %v, want empty", got)
		}

		// The client tries again once the ledger is back: accepted, the
		// failed commit holding nothing.
		e.led.failAppend = nil
		if o := e.s.accept(context.Background(), engMario, []string{engLaura}, engMsg(engLaura)); o.Reason != ReasonOK {
			t.Fatalf("retry: %v", o)
		}
		e.drain(t)
		if got := len(e.boxes.messages(t, engLaura)); got != 1 {
			t.Errorf("laura has %d messages after the retry, want 1", got)
		}
	})
}

// TestEngineUnrecordedNotDelivered checks the other half of the rule: a
// message queued by a step that never recorded its events (a crash
// between the queue and the ledger, in an earlier run) is never
// delivered, and nothing about it is written as if it had been.
func TestEngineUnrecordedNotDelivered(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	const id = "opec.crashed@pec.alfa.test"
	it := queue.Item{ID: itemID("busta", id, localDestination), Destination: localDestination, Ref: id,
		From: "posta-certificata@" + engDomA, To: []string{engLaura}, Message: engMsg(engLaura)}
	if err := e.out.Enqueue(ctx, it); err != nil {
		t.Fatal(err)
	}
	err := e.s.deliver(ctx, it)
	var pe *queue.PermanentError
	if !errors.As(err, &pe) || !errors.Is(err, errNeverRecorded) {
		t.Fatalf("deliver: %v, want a permanent errNeverRecorded", err)
	}
	if got := e.boxes.messages(t, engLaura); len(got) != 0 {
		t.Errorf("laura got %d messages, want none", len(got))
	}
	if got := e.led.kinds(); len(got) != 0 {
		t.Errorf("ledger %v, want nothing recorded", got)
	}
}

// engBusta returns a busta di trasporto signed by Beta, from anna to
// laura, and its identificativo.
func engBusta(t *testing.T, e *engine) (msg []byte, identificativo string) {
	t.Helper()
	env := pec.Envelope{Mittente: engAnna, Destinatari: []daticert.Destinatario{{Address: engLaura, Tipo: daticert.DestinatarioCertificato}}}
	raw := strings.ReplaceAll(message(engAnna, engLaura, "", "Da Beta"), "\n", "\r\n")
	tx, err := e.beta.NewTransaction([]byte(raw), env, e.now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.beta.BustaTrasporto(tx)
	if err != nil {
		t.Fatal(err)
	}
	return b.Message, tx.Identificativo
}

// TestEnginePresaInCaricoIdempotent checks that a busta received twice
// (the sending gestore retrying after a lost 250, or after our temporary
// refusal) is taken in charge once: one presa in carico, one delivery to
// the mailbox, one ricevuta of each kind queued, and the same answer.
func TestEnginePresaInCaricoIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		firstFail bool // the first attempt's ledger append fails
	}{
		{"retry after a lost 250", false},
		{"retry after a failed append", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t)
			ctx := context.Background()
			busta, id := engBusta(t, e)
			rcpts := []string{engLaura}
			if tc.firstFail {
				e.led.failAppend = errors.New("ledger unavailable")
			}
			o := e.s.receive(ctx, engAnna, rcpts, busta, "")
			if tc.firstFail {
				if o.Kind() != Temporary {
					t.Fatalf("first attempt with the ledger failing: %v, want temporary", o)
				}
				if got := e.out.ids(); len(got) != 0 {
					t.Fatalf("queued after the failed append: %q", got)
				}
				e.led.failAppend = nil
			} else if o.Reason != ReasonOK || o.Identificativo != id {
				t.Fatalf("first attempt: %v, want ok for %s", o, id)
			}
			queued := len(e.out.ids())
			o = e.s.receive(ctx, engAnna, rcpts, busta, "")
			if o.Reason != ReasonOK || o.Identificativo != id {
				t.Fatalf("second attempt: %v, want ok for %s", o, id)
			}
			if !tc.firstFail && len(e.out.ids()) != queued {
				t.Errorf("the retry queued more: %q", e.out.ids())
			}
			if n := len(e.led.entries(ledger.KindPresaInCarico)); n != 1 {
				t.Errorf("%d presa in carico entries, want 1", n)
			}
			if n := len(e.led.entries(ledger.KindAvvenutaConsegna)); n != 1 {
				t.Errorf("%d avvenuta consegna entries, want 1", n)
			}
			if got := e.boxes.messages(t, engLaura); len(got) != 1 || got[0].Kind != pec.KindBustaTrasporto {
				t.Errorf("laura's mailbox %v, want the busta once", kindsOf(got))
			}
			// The presa in carico and the ricevuta di consegna go to
			// Beta, once each.
			ids := e.out.ids()
			if len(ids) != 2 || !strings.HasPrefix(ids[0], "presa-in-carico/") || !strings.HasPrefix(ids[1], string(ledger.KindAvvenutaConsegna)+"/") {
				t.Errorf("queued %q, want one presa in carico and one ricevuta di consegna", ids)
			}
		})
	}
}

// TestEnginePresaInCaricoConcurrent checks a busta received again while
// its first processing is still committing (the sender gave up waiting
// and retried on another connection): the second attempt is answered
// 4xx without a second commit, and the next retry, after the first
// commit, gets the first answer. One presa in carico, one delivery.
func TestEnginePresaInCaricoConcurrent(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	busta, id := engBusta(t, e)
	rcpts := []string{engLaura}
	e.led.entered, e.led.proceed = make(chan struct{}), make(chan struct{})
	first := make(chan *Outcome, 1)
	go func() { first <- e.s.receive(ctx, engAnna, rcpts, busta, "") }()
	<-e.led.entered // the first commit is under way, its items held
	e.led.entered = nil
	if o := e.s.receive(ctx, engAnna, rcpts, busta, ""); o.Kind() != Temporary || !errors.Is(o, errBusy) {
		t.Errorf("attempt during the first commit: %v, want temporary, busy", o)
	} else if se := publicError(o); se.Code/100 != 4 {
		t.Errorf("reply %d, want 4xx", se.Code)
	}
	close(e.led.proceed)
	if o := <-first; o.Reason != ReasonOK || o.Identificativo != id {
		t.Fatalf("first attempt: %v", o)
	}
	if o := e.s.receive(ctx, engAnna, rcpts, busta, ""); o.Reason != ReasonOK || o.Identificativo != id {
		t.Fatalf("retry after the commit: %v", o)
	}
	if n := len(e.led.entries(ledger.KindPresaInCarico)); n != 1 {
		t.Errorf("%d presa in carico entries, want 1", n)
	}
	if got := e.boxes.messages(t, engLaura); len(got) != 1 {
		t.Errorf("laura's mailbox has %d messages, want 1", len(got))
	}
}

// TestEngineFormalRefusals checks the refusal path of the punto di
// accesso, through the recording session as the SMTP server calls it: a
// message failing a formal check gets, in this order, its avviso di non
// accettazione queued, the non-accettazione entry, the refusal entry; the
// reply is 5xx with the identificativo; the avviso reaches the titolare.
func TestEngineFormalRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		msg    []byte
		reason Reason
	}{
		{"bcc", engMsg(engLaura, "Bcc: "+engLaura), ReasonBcc},
		{"two from", engMsg(engLaura, "From: "+engMario), ReasonFromCount},
		{"sender of another", engMsg(engLaura, "Sender: "+engLaura), ReasonSenderMismatch},
		{"recipient not listed", engMsg(engMario), ReasonNotListed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t)
			sess := e.s.recording("accesso", nil, &accessoSession{s: e.s, user: engMario})
			if err := sess.Mail(engMario, nil); err != nil {
				t.Fatal(err)
			}
			if err := sess.Rcpt(engLaura, nil); err != nil {
				t.Fatal(err)
			}
			err := sess.Data(strings.NewReader(string(tc.msg)))
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code/100 != 5 {
				t.Fatalf("DATA: %v, want a 5xx reply", err)
			}
			nonAcc := e.led.entries(ledger.KindNonAccettazione)
			if len(nonAcc) != 1 {
				t.Fatalf("%d non-accettazione entries, want 1", len(nonAcc))
			}
			id := nonAcc[0].Identificativo
			if !strings.Contains(se.Message, id) {
				t.Errorf("reply %q does not give the identificativo %s", se.Message, id)
			}
			if got := nonAcc[0].Details["causa"]; got != string(tc.reason) {
				t.Errorf("causa %q, want %q", got, tc.reason)
			}
			ops := e.ops.list()
			want := []string{
				"enqueue " + itemID("non-accettazione", id),
				"append " + string(ledger.KindNonAccettazione),
				"append " + string(ledger.KindRefusal),
			}
			if !slices.Equal(ops, want) {
				t.Fatalf("ops %q, want %q", ops, want)
			}
			ref := e.led.entries(ledger.KindRefusal)[0]
			if ref.Details["punto"] != "accesso" || ref.Details["causa"] != string(tc.reason) || ref.Details["codice"] != "550" && !strings.HasPrefix(ref.Details["codice"], "5") {
				t.Errorf("refusal entry details %v", ref.Details)
			}
			if ref.Mittente != engMario || len(ref.Destinatari) != 1 || ref.Destinatari[0].Address != engLaura {
				t.Errorf("refusal entry mittente %q destinatari %+v", ref.Mittente, ref.Destinatari)
			}
			e.drain(t)
			got := e.boxes.messages(t, engMario)
			if len(got) != 1 || got[0].Kind != pec.KindNonAccettazione || got[0].Daticert == nil || got[0].Daticert.Identificativo != id {
				t.Errorf("mario's mailbox %v, want the avviso di non accettazione of %s", kindsOf(got), id)
			}
			if n := len(e.boxes.messages(t, engLaura)); n != 0 {
				t.Errorf("laura got %d messages, want none", n)
			}
		})
	}
}

// TestEngineTracker checks the tracker through the server on the fakes: a
// busta to another gestore with no ricevuta gives the 12-hour avviso
// after 12 hours, the 24-hour one after 24, each once, committed (queued
// to the mittente and recorded).
func TestEngineTracker(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	o := e.s.accept(ctx, engMario, []string{engAnna}, engMsg(engAnna))
	if o.Reason != ReasonOK {
		t.Fatalf("accept: %v", o)
	}
	e.drain(t) // the accettazione; the busta waits for Beta
	for _, step := range []struct {
		at   time.Duration
		want int
		kind ledger.Kind
	}{
		{11 * time.Hour, 0, ""},
		{12*time.Hour + time.Minute, 1, ledger.KindPreavvisoErroreConsegna12},
		{13 * time.Hour, 0, ""},
		{24*time.Hour + time.Minute, 1, ledger.KindPreavvisoErroreConsegna24},
		{25 * time.Hour, 0, ""},
	} {
		e.now = trackStart.Add(step.at)
		n, err := e.s.Track(ctx)
		if err != nil {
			t.Fatalf("Track at %v: %v", step.at, err)
		}
		if n != step.want {
			t.Fatalf("Track at %v emitted %d avvisi, want %d", step.at, n, step.want)
		}
		if step.kind == "" {
			continue
		}
		got := e.led.entries(step.kind)
		if len(got) != 1 || got[0].Identificativo != o.Identificativo || got[0].Details["destinatario"] != engAnna {
			t.Fatalf("%s entries %+v", step.kind, got)
		}
		e.drain(t)
	}
	var preavvisi int
	for _, m := range e.boxes.messages(t, engMario) {
		if m.Kind == pec.KindPreavvisoMancataConsegna {
			preavvisi++
		}
	}
	if preavvisi != 2 {
		t.Errorf("mario got %d avvisi di mancata consegna, want 2", preavvisi)
	}
}

// TestNewRequiresPorts checks that New refuses a missing port, including
// a nil store of a concrete type (an interface holding a nil pointer),
// with an error instead of a panic on the first message.
func TestNewRequiresPorts(t *testing.T) {
	base := newEngine(t).s.opts
	for _, tc := range []struct {
		name string
		edit func(*Options)
	}{
		{"no ledger", func(o *Options) { o.Ledger = nil }},
		{"nil *ledger.Ledger", func(o *Options) { o.Ledger = (*ledger.Ledger)(nil) }},
		{"no mailboxes", func(o *Options) { o.Mailboxes = nil }},
		{"nil *mailstore.Store", func(o *Options) { o.Mailboxes = (*mailstore.Store)(nil) }},
		{"no queue", func(o *Options) { o.Queue = nil }},
		{"nil *queue.Queue", func(o *Options) { o.Queue = (*queue.Queue)(nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.edit(&o)
			if s, err := New(o); err == nil {
				t.Fatalf("New: %v, want an error", s)
			}
		})
	}
	if _, err := New(base); err != nil {
		t.Fatalf("New with every port: %v", err)
	}
}
