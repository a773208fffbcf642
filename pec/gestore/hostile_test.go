package gestore

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/queue"
)

// crlf turns a test message into the bytes SMTP carries.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// ledgerOf returns the entries of kind in g's ledger.
func (g *testGestore) ledgerOf(t testing.TB, kind ledger.Kind) []*ledger.Entry {
	t.Helper()
	var out []*ledger.Entry
	q := ledger.Query{Kind: kind, Limit: 1000}
	for {
		page, err := g.ledger.Find(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Entries...)
		if page.Next == "" {
			return out
		}
		q.Cursor = page.Next
	}
}

// refusalsAt returns the refusal entries of g's ledger for the point punto.
func (g *testGestore) refusalsAt(t testing.TB, punto string) []*ledger.Entry {
	t.Helper()
	var out []*ledger.Entry
	for _, e := range g.ledgerOf(t, ledger.KindRefusal) {
		if e.Details["punto"] == punto {
			out = append(out, e)
		}
	}
	return out
}

// nestedBomb is ordinary mail whose MIME entities nest depth deep.
func nestedBomb(from, to string, depth int) []byte {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: nested\r\nMessage-ID: <nested." + fmt.Sprint(depth) + "@x.test>\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nfondo\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// wideBomb is ordinary mail of n empty parts.
func wideBomb(from, to string, n int) []byte {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: wide\r\nMessage-ID: <wide." + fmt.Sprint(n) + "@x.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"w\"\r\n\r\n")
	for range n {
		b.WriteString("--w\r\n\r\nx\r\n")
	}
	b.WriteString("--w--\r\n")
	return []byte(b.String())
}

// manyFields is ordinary mail with n header fields.
func manyFields(from, to string, n int) []byte {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: fields\r\nMessage-ID: <fields@x.test>\r\n")
	for i := range n {
		fmt.Fprintf(&b, "X-F%d: v\r\n", i)
	}
	b.WriteString("\r\nbody\r\n")
	return []byte(b.String())
}

// attachedOriginal returns the message a busta di anomalia carries, as
// the recipient gets it: the attached message, or the opaque attachment
// decoded.
func attachedOriginal(t *testing.T, busta []byte) []byte {
	t.Helper()
	m, err := pec.Parse(busta, pec.ParseOptions{})
	if err != nil {
		t.Fatalf("the busta di anomalia does not parse: %v", err)
	}
	orig := m.Original
	hm, err := mail.ReadMessage(bytes.NewReader(orig))
	if err != nil {
		return orig
	}
	mt, params, _ := mime.ParseMediaType(hm.Header.Get("Content-Type"))
	if mt != "application/octet-stream" || !strings.Contains(params["name"], "originale") {
		return orig
	}
	body, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, hm.Body))
	if err != nil {
		t.Fatalf("the opaque original does not decode: %v", err)
	}
	return body
}

// TestMIMEBomb checks finding 2's MIME bomb: the gestore delivers its own
// busta di anomalia, once, whatever the message it wraps, and the queue
// is left empty (before: the busta did not parse back, and each attempt
// wrapped it again, for ever). A header of 100,000 fields gets a busta
// too (before: 451, for ever).
func TestMIMEBomb(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.b.addMailbox(t, lucia, pw, 0)
	const ext = "x@example.org"
	tests := []struct {
		name string
		msg  []byte
	}{
		{"5,000 nested parts", nestedBomb(ext, lucia, 5000)},
		{"300,000 parts", wideBomb(ext, lucia, 300000)},
		{"100,000 header fields", manyFields(ext, lucia, 100000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.b.messages(t, lucia))
			anomalie := len(p.b.ledgerOf(t, ledger.KindBustaAnomalia))
			if err := sendRaw(t, p.b.ricezione, ext, []string{lucia}, tt.msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			waitFor(t, "the busta di anomalia", 20*time.Second, func() (bool, error) {
				return len(p.b.messages(t, lucia)) > before && p.b.queue.Len() == 0, nil
			})
			msgs := p.b.messages(t, lucia)
			if n := len(msgs) - before; n != 1 {
				t.Fatalf("%d messages delivered, want one busta di anomalia", n)
			}
			m, err := pec.Parse(msgs[before], pec.ParseOptions{})
			if err != nil || m.Kind != pec.KindBustaAnomalia {
				t.Fatalf("delivered %v (%v), want a busta di anomalia", m.Kind, err)
			}
			if got := attachedOriginal(t, msgs[before]); !bytes.Equal(got, tt.msg) {
				t.Errorf("the busta di anomalia carries %d bytes, not the %d of the message", len(got), len(tt.msg))
			}
			if n := len(p.b.ledgerOf(t, ledger.KindBustaAnomalia)) - anomalie; n != 1 {
				t.Errorf("%d busta-anomalia entries, want 1", n)
			}
			if drops := p.b.refusalsAt(t, "coda"); len(drops) != 0 {
				t.Errorf("queue drops: %v", drops[0].Details)
			}
		})
	}
}

// TestRecipientNotMailbox checks that the punto di ricezione refuses at
// RCPT what is not a mailbox of ours (before: 250, and a busta di
// anomalia the queue retried for ever), and records the refusals.
func TestRecipientNotMailbox(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.b.addMailbox(t, lucia, pw, 0)
	tests := []struct {
		name, from, rcpt, want string
	}{
		{"mailbox", "x@example.org", lucia, "250"},
		{"quoted local part", "x@example.org", `"anna@example.org"@pec.beta.test`, "550 5.1.1"},
		{"quoted local part from a PEC domain", "posta-certificata@pec.alfa.test", `"anna@example.org"@pec.beta.test`, "550 5.1.1"},
		{"no such mailbox", "x@example.org", "nessuno@pec.beta.test", "550 5.1.1"},
		{"no such mailbox, from a gestore", "posta-certificata@pec.alfa.test", "nessuno@pec.beta.test", "250"},
		{"NUL", "x@example.org", "lucia.bianchi\x00@pec.beta.test", "501 5.1.3"},
		{"non-ASCII", "x@example.org", "lucìa@pec.beta.test", "550 5.1.1"},
		{"service address", "x@example.org", "posta-certificata@pec.beta.test", "250"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.b.refusalsAt(t, "ricezione"))
			replies := converse(t, p.b.ricezione, []string{"EHLO x", "MAIL FROM:<" + tt.from + ">", "RCPT TO:<" + tt.rcpt + ">", "QUIT"})
			if len(replies) < 3 || !strings.HasPrefix(replies[2], tt.want) {
				t.Fatalf("RCPT: %q, want %s", at(replies, 2), tt.want)
			}
			wantRefusals := 0
			if tt.want != "250" {
				wantRefusals = 1
			}
			waitFor(t, "the refusal entry", 10*time.Second, func() (bool, error) {
				return len(p.b.refusalsAt(t, "ricezione"))-before >= wantRefusals, nil
			})
			got := p.b.refusalsAt(t, "ricezione")[before:]
			if len(got) != wantRefusals {
				t.Fatalf("%d refusal entries, want %d", len(got), wantRefusals)
			}
			if wantRefusals == 1 {
				e := got[0]
				if e.Mittente != tt.from || !strings.HasPrefix(e.Details["codice"], tt.want) || e.Details["rifiuti"] != "1" ||
					len(e.Destinatari) != 1 || e.Details["remoto"] == "" {
					t.Errorf("refusal entry: mittente %q destinatari %v details %v", e.Mittente, e.Destinatari, e.Details)
				}
			}
		})
	}
}

// TestPoisonQueue checks finding 2: messages that can never be delivered
// locally (busta di anomalia for a full mailbox, retried) delay no other
// message. The clock stands still until the end: before, the first
// failure put the whole local destination in backoff, on that clock, and
// nothing local was delivered again. At the maximum age, each poison item
// is given up with a recorded outcome.
func TestPoisonQueue(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	const (
		anna  = "anna.verdi@pec.beta.test"
		piena = "piena@pec.beta.test"
		ext   = "x@example.org"
		N     = 6
	)
	p.b.addMailbox(t, lucia, pw, 0)
	p.b.addMailbox(t, anna, pw, 0)
	p.b.addMailbox(t, piena, pw, 1) // every delivery is over quota

	for i := range N {
		msg := crlf(message(ext, piena, "", fmt.Sprintf("Veleno %d", i)))
		if err := sendRaw(t, p.b.ricezione, ext, []string{piena}, msg); err != nil {
			t.Fatalf("poison %d: %v", i, err)
		}
	}
	// A poison item has failed: the destination local would be in
	// backoff, if failures of items counted for it.
	waitFor(t, "the poison's failures", 20*time.Second, func() (bool, error) {
		items, err := p.b.queue.Items(context.Background())
		if err != nil {
			return false, err
		}
		for _, it := range items {
			if strings.HasPrefix(it.ID, "anomalia/") && it.Attempts > 0 {
				return true, nil
			}
		}
		return false, nil
	})

	// Legitimate PEC among titolari of B: each goes through the local
	// destination three times (accettazione, busta, avvenuta consegna).
	const K = 5
	for i := range K {
		if err := p.b.submit(t, lucia, pw, []string{anna}, message(lucia, anna, "", fmt.Sprintf("Legittimo %d", i))); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	waitFor(t, "the legitimate messages", 30*time.Second, func() (bool, error) {
		return len(p.b.messages(t, anna)) == K && len(p.b.messages(t, lucia)) == 2*K, nil
	})
	for _, m := range p.b.parsed(t, anna) {
		if m.Kind != pec.KindBustaTrasporto {
			t.Errorf("anna got a %s", m.Kind)
		}
	}
	accettazioni, consegne := 0, 0
	for _, m := range p.b.parsed(t, lucia) {
		switch m.Kind {
		case pec.KindAccettazione:
			accettazioni++
		case pec.KindConsegnaCompleta:
			consegne++
		}
	}
	if accettazioni != K || consegne != K {
		t.Errorf("lucia got %d accettazioni and %d consegne, want %d of each", accettazioni, consegne, K)
	}
	if n := p.b.queue.Len(); n != N {
		t.Fatalf("%d items queued, want the %d poison items", n, N)
	}
	if drops := p.b.refusalsAt(t, "coda"); len(drops) != 0 {
		t.Fatalf("%d items dropped before their maximum age", len(drops))
	}

	// At the maximum age, the poison is given up, each drop recorded.
	p.clock.Advance(MaxQueueAge + time.Minute)
	waitFor(t, "the poison given up", 20*time.Second, func() (bool, error) {
		return p.b.queue.Len() == 0 && len(p.b.refusalsAt(t, "coda")) == N, nil
	})
	for _, e := range p.b.refusalsAt(t, "coda") {
		if !strings.HasPrefix(e.Details["elemento"], "anomalia/") || !strings.Contains(e.Details["motivo"], "24 hours") ||
			len(e.Destinatari) != 1 || e.Destinatari[0].Address != piena || len(e.SHA256) != 32 {
			t.Errorf("drop entry: destinatari %v details %v", e.Destinatari, e.Details)
		}
	}
}

// TestReplay checks finding 4: a message our gestore signed, sent back to
// its punto di ricezione from outside, is not filed as it is but wrapped
// in a busta di anomalia, recorded (before: filed as is, unrecorded).
func TestReplay(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	const anna = "anna.verdi@pec.beta.test"
	p.b.addMailbox(t, anna, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Originale")); err != nil {
		t.Fatal(err)
	}
	// B's ricevuta di avvenuta consegna, as mario got it.
	consegna := first(p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta), pec.KindConsegnaCompleta)
	// The busta di trasporto A signed, as lucia got it.
	busta := p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)[0]

	tests := []struct {
		name string
		to   *testGestore
		msg  []byte
	}{
		{"a ricevuta of B to B", p.b, consegna.Raw},
		{"a busta of A to A", p.a, busta.Raw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcpt := anna
			if tt.to == p.a {
				rcpt = mario
			}
			before := len(tt.to.messages(t, rcpt))
			anomalie := len(tt.to.ledgerOf(t, ledger.KindBustaAnomalia))
			if err := sendRaw(t, tt.to.ricezione, "replay@example.org", []string{rcpt}, tt.msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			waitFor(t, "delivery", 20*time.Second, func() (bool, error) {
				return len(tt.to.messages(t, rcpt)) > before && tt.to.queue.Len() == 0, nil
			})
			msgs := tt.to.messages(t, rcpt)[before:]
			if len(msgs) != 1 {
				t.Fatalf("%d messages filed, want 1", len(msgs))
			}
			if bytes.Equal(msgs[0], tt.msg) {
				t.Fatal("the replayed message was filed as it is")
			}
			m, err := pec.Parse(msgs[0], pec.ParseOptions{})
			if err != nil || m.Kind != pec.KindBustaAnomalia {
				t.Fatalf("filed %v (%v), want a busta di anomalia", m.Kind, err)
			}
			entries := tt.to.ledgerOf(t, ledger.KindBustaAnomalia)
			if len(entries) != anomalie+1 || !strings.Contains(entries[len(entries)-1].Details["motivo"], "replay") {
				t.Errorf("busta-anomalia entries: %d, want %d, the last saying replay", len(entries), anomalie+1)
			}
		})
	}
}

// TestForgedAuthorship checks finding 10: a second From field, or a
// Sender naming anybody but the mittente, fails the formal checks with an
// avviso di non accettazione (before: accepted, the other titolare shown
// as the author).
func TestForgedAuthorship(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	const other = "anna.verdi@pec.alfa.test"
	p.a.addMailbox(t, other, pw, 0)
	base := message(mario, lucia, "", "Autore")
	tests := []struct {
		name, msg string
		ok        bool
	}{
		{"second From", strings.Replace(base, "\n", "\nFrom: "+other+"\n", 1), false},
		{"Sender of another titolare", "Sender: " + other + "\n" + base, false},
		{"Sender of an outsider", "Sender: someone@example.org\n" + base, false},
		{"two Sender fields", "Sender: " + mario + "\nSender: " + mario + "\n" + base, false},
		{"Sender the mittente", "Sender: Mario Rossi <" + mario + ">\n" + base, true},
		{"Sender the mittente, in capitals", "Sender: " + strings.ToUpper(mario) + "\n" + base, true},
		{"Sender folding to the mittente", "Sender: " + strings.Replace(mario, "s", "\u017f", 1) + "\n" + base, false},
		{"From folding to the mittente", strings.Replace(base, "From: "+mario, "From: "+strings.Replace(mario, "s", "\u017f", 1), 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.a.submit(t, mario, pw, []string{lucia}, tt.msg)
			var se *smtp.SMTPError
			switch {
			case tt.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.ok && (!errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "avviso di non accettazione sent")):
				t.Fatalf("submit: %v, want 554 with an avviso di non accettazione", err)
			}
		})
	}
}

// TestEnvelopeRecipientNotInDaticert checks finding 8: a busta whose
// envelope names a recipient its daticert does not is refused for good
// (5xx), never deferred.
func TestEnvelopeRecipientNotInDaticert(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	const anna = "anna.verdi@pec.beta.test"
	p.b.addMailbox(t, anna, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Solo per Lucia")); err != nil {
		t.Fatal(err)
	}
	busta := p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)[0]
	before := len(p.b.messages(t, anna))
	err := sendRaw(t, p.b.ricezione, "posta-certificata@pec.alfa.test", []string{anna}, busta.Raw)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 5 {
		t.Fatalf("send: %v, want a permanent refusal", err)
	}
	if n := len(p.b.messages(t, anna)); n != before {
		t.Errorf("anna got the busta")
	}
	waitFor(t, "the refusal entry", 10*time.Second, func() (bool, error) {
		for _, e := range p.b.refusalsAt(t, "ricezione") {
			if strings.HasPrefix(e.Details["codice"], "554") && len(e.Destinatari) == 1 && e.Destinatari[0].Address == anna {
				return true, nil
			}
		}
		return false, nil
	})
}

// TestRefusalsRecorded checks finding 7, for refusals after MAIL FROM: a
// 553 for a wrong MAIL FROM and a 552 for size after DATA are recorded in
// the ledger (before: nothing), and a reply never carries the text of an
// internal error.
func TestRefusalsRecorded(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{maxSize: 64 << 10})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)

	// 553: the reverse path is not the authenticated mailbox.
	err := p.a.submitAs(t, mario, pw, "anna.verdi@pec.alfa.test", []string{lucia}, message(mario, lucia, "", "x"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 553 {
		t.Fatalf("wrong MAIL FROM: %v, want 553", err)
	}
	waitFor(t, "the 553 entry", 10*time.Second, func() (bool, error) {
		for _, e := range p.a.refusalsAt(t, "accesso") {
			if strings.HasPrefix(e.Details["codice"], "553") && e.Mittente == mario && e.Details["mail_from"] == "anna.verdi@pec.alfa.test" &&
				strings.HasPrefix(e.Details["elenco"], "MAIL <") {
				return true, nil
			}
		}
		return false, nil
	})

	// 552: too large, found during DATA, at both points.
	big := message(mario, lucia, "", "Grande") + strings.Repeat("0123456789abcdef\n", 8<<10)
	if err := p.a.submit(t, mario, pw, []string{lucia}, big); !errors.As(err, &se) || se.Code != 552 {
		t.Fatalf("large submission: %v, want 552", err)
	}
	if err := sendRaw(t, p.b.ricezione, "x@example.org", []string{lucia}, crlf(big)); !errors.As(err, &se) || se.Code != 552 {
		t.Fatalf("large message to the punto di ricezione: %v, want 552", err)
	}
	for _, g := range []struct {
		g     *testGestore
		punto string
		rcpt  string
	}{{p.a, "accesso", lucia}, {p.b, "ricezione", lucia}} {
		var found *ledger.Entry
		for _, e := range g.g.refusalsAt(t, g.punto) {
			if strings.HasPrefix(e.Details["codice"], "552") {
				found = e
			}
		}
		if found == nil {
			t.Errorf("%s: no refusal entry for the 552", g.punto)
			continue
		}
		if len(found.Destinatari) != 1 || found.Destinatari[0].Address != g.rcpt || !strings.HasPrefix(found.Details["elenco"], "DATA: 552") {
			t.Errorf("%s: 552 entry destinatari %v details %v", g.punto, found.Destinatari, found.Details)
		}
	}
}

func TestPublicError(t *testing.T) {
	internal := fmt.Errorf("read tcp 10.1.2.3:25->192.0.2.9:40000: %w", errors.New("connection reset by peer"))
	for _, err := range []error{internal, fmt.Errorf("open /var/lib/custode/queue/x: %w", io.ErrUnexpectedEOF)} {
		se := publicError(err)
		if strings.Contains(se.Message, "10.1.2.3") || strings.Contains(se.Message, "/var/lib") || se.Code/100 != 4 {
			t.Errorf("publicError(%v) = %d %q", err, se.Code, se.Message)
		}
	}
	want := &smtp.SMTPError{Code: 552, Message: "x"}
	if got := publicError(fmt.Errorf("wrapped: %w", want)); got != want {
		t.Errorf("an SMTP error is not kept: %v", got)
	}
}

func TestRefusalLimiter(t *testing.T) {
	var l refusalLimiter
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	written := 0
	for range refusalBurst + 100 {
		if ok, _ := l.take(now); ok {
			written++
		}
	}
	if written != refusalBurst {
		t.Fatalf("%d written at once, want %d", written, refusalBurst)
	}
	ok, suppressed := l.take(now.Add(time.Second))
	if !ok || suppressed != 100 {
		t.Fatalf("after a second: %v, %d suppressed; want true, 100", ok, suppressed)
	}
}

// TestMIMEBombSubmitted checks that a titolare's MIME bomb, which no
// gestore could read back inside a busta, fails the formal checks: the
// titolare gets the avviso di non accettazione, and nothing is left
// queued (before: the busta was sent, and the punto di ricezione could
// not read it).
func TestMIMEBombSubmitted(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	tests := []struct {
		name string
		msg  []byte
	}{
		{"5,000 nested parts", nestedBomb(mario, lucia, 5000)},
		{"300,000 parts", wideBomb(mario, lucia, 300000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.a.messages(t, mario))
			err := p.a.submit(t, mario, pw, []string{lucia}, strings.ReplaceAll(string(tt.msg), "\r\n", "\n"))
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "avviso di non accettazione sent") {
				t.Fatalf("submit: %v, want 554 with an avviso di non accettazione", err)
			}
			waitFor(t, "the avviso", 20*time.Second, func() (bool, error) {
				return len(p.a.messages(t, mario)) > before && p.a.queue.Len() == 0, nil
			})
			m, err := pec.Parse(p.a.messages(t, mario)[before], pec.ParseOptions{})
			if err != nil || m.Kind != pec.KindNonAccettazione {
				t.Fatalf("mario got %v (%v), want the avviso di non accettazione", m.Kind, err)
			}
			if drops := p.a.refusalsAt(t, "coda"); len(drops) != 0 {
				t.Errorf("queue drops: %v", drops[0].Details)
			}
		})
	}
}

// deferringBackend is an SMTP server that defers every recipient.
type deferringBackend struct{}

func (deferringBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &deferringSession{sinkSession{s: &sink{got: make(chan []byte, 1)}}}, nil
}

type deferringSession struct{ sinkSession }

func (*deferringSession) Rcpt(string, *smtp.RcptOptions) error {
	return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
}

// TestDestinationFailures checks which failures of a remote delivery back
// off the whole destination: only a server that cannot be reached, never
// a reply about one message.
func TestDestinationFailures(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	srv := smtp.NewServer(deferringBackend{})
	srv.Domain = "mx.deferring.test"
	ln := listenAt(t, "")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p := newPair(t, startOptions{routes: map[string]string{
		"unreachable.test": "127.0.0.1:1", // nothing listens on port 1
		"deferring.test":   ln.Addr().String(),
	}})
	for _, tt := range []struct {
		dest        string
		unreachable bool
	}{{"unreachable.test", true}, {"deferring.test", false}} {
		it := queue.Item{ID: "test/" + tt.dest, Destination: tt.dest, From: p.a.srv.g.Address(), To: []string{"x@" + tt.dest}, Message: crlf(message(mario, "x@"+tt.dest, "", "x"))}
		_, err := p.a.srv.sendSMTP(context.Background(), it)
		var de *queue.DestinationError
		if err == nil || errors.As(err, &de) != tt.unreachable {
			t.Errorf("%s: %v; want a DestinationError: %v", tt.dest, err, tt.unreachable)
		}
	}
}

// pickyBackend is an ordinary mail server that refuses one recipient for
// good and keeps, for the others, the envelope recipients it took.
type pickyBackend struct {
	refuse string
	got    chan []string
}

func (b pickyBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &pickySession{b: b}, nil
}

type pickySession struct {
	b     pickyBackend
	rcpts []string
}

func (s *pickySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *pickySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == s.b.refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *pickySession) Reset()        { s.rcpts = nil }
func (s *pickySession) Logout() error { return nil }
func (s *pickySession) Data(r io.Reader) error {
	if _, err := io.ReadAll(r); err != nil {
		return err
	}
	s.b.got <- s.rcpts
	return nil
}

// TestRecipientRefusedAtRCPT checks that a recipient another server
// refuses for good at RCPT costs the others nothing (before: the whole
// busta was refused, for every recipient), and that the mittente gets an
// avviso di mancata consegna for it at once.
func TestRecipientRefusedAtRCPT(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	const someone, nobody = "someone@example.org", "nobody@example.org"
	be := pickyBackend{refuse: nobody, got: make(chan []string, 4)}
	srv := smtp.NewServer(be)
	srv.Domain = "mx.example.org"
	ln := listenAt(t, "")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p := newPair(t, startOptions{routes: map[string]string{"example.org": ln.Addr().String()}})
	p.a.addMailbox(t, mario, pw, 0)
	msg := "From: " + mario + "\nTo: " + someone + ", " + nobody + "\nSubject: Due destinatari\nMessage-ID: <due@client.test>\n\nciao\n"
	if err := p.a.submit(t, mario, pw, []string{someone, nobody}, msg); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-be.got:
		if len(got) != 1 || got[0] != someone {
			t.Errorf("the server took %v, want [%s]", got, someone)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the message never reached the other server")
	}
	ms := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindMancataConsegna)
	m := first(ms, pec.KindMancataConsegna)
	if m.Daticert.Consegna != nobody || m.Daticert.Errore != "no-dest" {
		t.Errorf("mancata consegna: consegna %q errore %q", m.Daticert.Consegna, m.Daticert.Errore)
	}
	waitFor(t, "the queue empty", 10*time.Second, func() (bool, error) { return p.a.queue.Len() == 0, nil })
	if drops := p.a.refusalsAt(t, "coda"); len(drops) != 0 {
		t.Errorf("queue drops: %v", drops[0].Details)
	}
}
