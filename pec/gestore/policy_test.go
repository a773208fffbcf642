package gestore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

// TestMailboxPolicies: the options the providers offer titolari, per
// mailbox: a notice of arrival to an ordinary address, and ordinary mail
// filed in a folder, forwarded, refused or wrapped in a busta di anomalia.
func TestMailboxPolicies(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	sink := newSink(t)
	policies := map[string]MailboxPolicy{
		lucia:                   {NotifyTo: "lucia@example.org"},
		"ufficio@pec.beta.test": {NonPEC: NonPECFolder},
		"inoltro@pec.beta.test": {NonPEC: NonPECForward, ForwardTo: "inoltro@example.org"},
		"rigida@pec.beta.test":  {NonPEC: NonPECReject},
	}
	p := newPair(t, startOptions{
		routes: map[string]string{"example.org": sink.addr},
		policy: func(mb string) MailboxPolicy { return policies[mb] },
	})
	p.a.addMailbox(t, mario, pw, 0)
	for mb := range policies {
		p.b.addMailbox(t, mb, pw, 0)
	}
	p.b.addMailbox(t, "normale@pec.beta.test", pw, 0)

	t.Run("notice of arrival", func(t *testing.T) {
		if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Con avviso")); err != nil {
			t.Fatal(err)
		}
		p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)
		notice := sink.wait(t)
		if !bytes.Contains(notice, []byte("To: lucia@example.org")) || !bytes.Contains(notice, []byte("Con avviso")) ||
			!bytes.Contains(notice, []byte(mario)) {
			t.Errorf("notice of arrival:\n%s", notice)
		}
	})

	sent := map[string][]byte{}
	ordinary := func(to string) []byte {
		if sent[to] == nil {
			sent[to] = []byte(strings.ReplaceAll(message("qualcuno@example.org", to, "", "Posta ordinaria per "+to), "\n", "\r\n"))
		}
		return sent[to]
	}
	t.Run("folder", func(t *testing.T) {
		const mb = "ufficio@pec.beta.test"
		if err := sendRaw(t, p.b.ricezione, "qualcuno@example.org", []string{mb}, ordinary(mb)); err != nil {
			t.Fatal(err)
		}
		_, msgs, err := p.b.mailboxes.Messages(context.Background(), mb, NonPECFolderName)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("folder %q: %d messages, %v", NonPECFolderName, len(msgs), err)
		}
		body, err := p.b.mailboxes.Body(context.Background(), mb, NonPECFolderName, msgs[0].UID)
		// Filed as sent, under the trace fields of its delivery.
		if err != nil || !bytes.HasSuffix(body, ordinary(mb)) ||
			!bytes.HasPrefix(body, []byte("Return-Path: <qualcuno@example.org>\r\nDelivered-To: "+mb+"\r\nReceived: from ")) {
			t.Errorf("filed message differs from the one sent (%v):\n%.400s", err, body)
		}
		if n := len(p.b.messages(t, mb)); n != 0 {
			t.Errorf("INBOX has %d messages, want none", n)
		}
	})
	t.Run("forward", func(t *testing.T) {
		const mb = "inoltro@pec.beta.test"
		if err := sendRaw(t, p.b.ricezione, "qualcuno@example.org", []string{mb}, ordinary(mb)); err != nil {
			t.Fatal(err)
		}
		if got := sink.wait(t); !bytes.Equal(got, ordinary(mb)) {
			t.Errorf("forwarded message differs:\n%s", got)
		}
	})
	t.Run("reject", func(t *testing.T) {
		const mb = "rigida@pec.beta.test"
		err := sendRaw(t, p.b.ricezione, "qualcuno@example.org", []string{mb}, ordinary(mb))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 {
			t.Fatalf("send: %v, want 550", err)
		}
	})
	t.Run("default: anomalia", func(t *testing.T) {
		const mb = "normale@pec.beta.test"
		if err := sendRaw(t, p.b.ricezione, "qualcuno@example.org", []string{mb}, ordinary(mb)); err != nil {
			t.Fatal(err)
		}
		p.b.waitKinds(t, mb, pec.KindBustaAnomalia)
	})
}

// TestTrackerScenarios checks the three cases of RFC 6109 §3.1.6 on a
// ledger written by hand: neither presa in carico nor consegna gives both
// avvisi; a presa in carico within 12 hours and no consegna only the
// 24-hour one; a consegna after 12 hours without presa in carico only the
// 12-hour one.
func TestTrackerScenarios(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	tests := []struct {
		name     string
		presaAt  time.Duration // 0: never
		consegna time.Duration // 0: never
		want12   bool
		want24   bool
	}{
		{"neither", 0, 0, true, true},
		{"presa in carico, no consegna", time.Hour, 0, false, true},
		{"consegna after 12 hours, no presa in carico", 0, 13 * time.Hour, true, false},
		{"both in time", time.Minute, 2 * time.Minute, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, startOptions{})
			a := p.a
			ctx := context.Background()
			start := p.clock.Now()
			id := "20261123." + strings.ReplaceAll(tt.name, " ", "") + "@pec.alfa.test"
			base := ledger.Event{
				Identificativo: id, Time: start, Mittente: mario, Oggetto: "Scenario",
				Destinatari: []ledger.Recipient{{Address: lucia, Tipo: ledger.TipoCertificato}},
				SHA256:      make([]byte, 32),
			}
			appendAt := func(kind ledger.Kind, gestore string, at time.Duration, details map[string]string) {
				ev := base
				ev.Kind, ev.Gestore, ev.Time, ev.Details = kind, gestore, start.Add(at), details
				if _, err := a.ledger.Append(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			appendAt(ledger.KindPostaCertificata, a.name, 0, nil)
			step := func(to time.Duration) {
				for now := p.clock.Now().Sub(start); now < to; now = p.clock.Now().Sub(start) {
					p.clock.Advance(30 * time.Minute)
					now = p.clock.Now().Sub(start)
					if tt.presaAt != 0 && now >= tt.presaAt && now-30*time.Minute < tt.presaAt {
						appendAt(ledger.KindPresaInCarico, p.b.name, tt.presaAt, map[string]string{"ricezione": lucia})
					}
					if tt.consegna != 0 && now >= tt.consegna && now-30*time.Minute < tt.consegna {
						appendAt(ledger.KindAvvenutaConsegna, p.b.name, tt.consegna, map[string]string{"destinatario": lucia})
					}
					if _, err := a.srv.Track(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			step(25 * time.Hour)
			got := map[ledger.Kind]int{}
			for _, e := range mustEntries(t, a, id) {
				got[e.Kind]++
			}
			if want := b2i(tt.want12); got[ledger.KindPreavvisoErroreConsegna12] != want {
				t.Errorf("12-hour avvisi: %d, want %d", got[ledger.KindPreavvisoErroreConsegna12], want)
			}
			if want := b2i(tt.want24); got[ledger.KindPreavvisoErroreConsegna24] != want {
				t.Errorf("24-hour avvisi: %d, want %d", got[ledger.KindPreavvisoErroreConsegna24], want)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mustEntries(t *testing.T, g *testGestore, id string) []*ledger.Entry {
	t.Helper()
	entries, err := g.srv.entriesOf(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
