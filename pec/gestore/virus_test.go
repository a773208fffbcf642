package gestore

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/clamd"
	"github.com/custode/custode/pec/clamd/clamdtest"
)

// eicar returns the EICAR anti-virus test file, put together at run time
// so that no file of the repository holds it.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-" + "FILE!$H+H*")
}

func infectedMessage(from, to string) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\nTo: " + to + "\nSubject: Fattura con allegato\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain; charset=utf-8\n\nIn allegato.\n" +
		"--b1\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"fattura.com\"\n" +
		"Content-Transfer-Encoding: base64\n\n")
	b.WriteString(base64.StdEncoding.EncodeToString(eicar()))
	b.WriteString("\n--b1--\n")
	return b.String()
}

// TestVirus runs the three virus flows with a real clamd: the punto di
// accesso refuses an infected message (avviso di non accettazione per
// virus); the punto di ricezione of a gestore that finds a virus the
// sender's gestore missed sends the avviso di rilevazione virus, and the
// sender's gestore the avviso di mancata consegna per virus.
func TestVirus(t *testing.T) {
	socket, _ := clamdtest.Start(t)
	scanner := &clamd.Client{Network: "unix", Address: socket}

	t.Run("punto di accesso", func(t *testing.T) {
		p := newPair(t, startOptions{scanner: scanner})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "Virus found") {
			t.Fatalf("submit: %v, want 554 for a virus", err)
		}
		m := p.a.waitKinds(t, mario, pec.KindNonAccettazioneVirus)[0]
		if m.Daticert.Errore != "virus" || m.Header.VerificaSicurezza != "errore" {
			t.Errorf("avviso: errore %q, X-VerificaSicurezza %q", m.Daticert.Errore, m.Header.VerificaSicurezza)
		}
		opensslVerify(t, m.Raw, p.a.caFile)
		if kinds := p.a.kinds(t, m.Daticert.Identificativo); !slices.Equal(kinds, []string{"non-accettazione"}) {
			t.Errorf("ledger: %v", kinds)
		}
	})

	t.Run("punto di ricezione", func(t *testing.T) {
		p := newPair(t, startOptions{scannerB: scanner})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		if err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia)); err != nil {
			t.Fatalf("submit: %v", err)
		}
		got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindMancataConsegnaVirus)
		m := first(got, pec.KindMancataConsegnaVirus)
		if m.Daticert.Errore != "virus" || m.Daticert.Consegna != lucia {
			t.Errorf("avviso di mancata consegna per virus: errore %q consegna %q", m.Daticert.Errore, m.Daticert.Consegna)
		}
		opensslVerify(t, m.Raw, p.a.caFile)
		id := m.Daticert.Identificativo
		if got := sorted(p.b.kinds(t, id)); !slices.Equal(got, []string{"rilevazione-virus"}) {
			t.Errorf("B's ledger: %v", got)
		}
		want := []string{"accettazione", "errore-consegna", "posta-certificata", "received:rilevazione-virus"}
		if got := sorted(p.a.kinds(t, id)); !slices.Equal(got, want) {
			t.Errorf("A's ledger: %v, want %v", got, want)
		}
		if n := len(p.b.messages(t, lucia)); n != 0 {
			t.Errorf("the infected busta was delivered: %d messages", n)
		}
	})
}

// TestHostileClients: protocol abuse gets protocol errors, never a crash,
// and the server goes on serving.
func TestHostileClients(t *testing.T) {
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	p.a.addMailbox(t, "anna@pec.alfa.test", pw, 0)

	tests := []struct {
		name   string
		addr   func() string
		script []string // lines to send; a reply is read after each
		want   []string // a substring of each reply, "" for any
	}{
		{"auth before TLS", func() string { return p.a.submission }, []string{"EHLO x", "AUTH PLAIN " + plain(mario, pw)}, []string{"250", "523"}},
		{"mail before auth", func() string { return p.a.submission }, []string{"EHLO x", "MAIL FROM:<" + mario + ">"}, []string{"250", "530 5.7.0 Authentication required"}},
		{"relay refused", func() string { return p.b.ricezione }, []string{"EHLO x", "MAIL FROM:<x@example.org>", "RCPT TO:<y@example.org>"}, []string{"250", "250", "550"}},
		{"over-long line", func() string { return p.b.ricezione }, []string{"EHLO x", strings.Repeat("A", 100000)}, []string{"250", "500"}},
		{"unknown command", func() string { return p.b.ricezione }, []string{"EHLO x", "FOO BAR"}, []string{"250", "501"}},
		{"data before rcpt", func() string { return p.b.ricezione }, []string{"EHLO x", "DATA"}, []string{"250", "502"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replies := converse(t, tt.addr(), tt.script)
			for i, want := range tt.want {
				if i >= len(replies) || !strings.Contains(replies[i], want) {
					t.Errorf("reply %d: %q, want %q (all: %q)", i, at(replies, i), want, replies)
				}
			}
		})
	}

	t.Run("10000 RCPT", func(t *testing.T) {
		var script, want []string
		script = append(script, "EHLO x", "MAIL FROM:<x@example.org>")
		want = append(want, "250", "250")
		for i := range 10000 {
			script = append(script, "RCPT TO:<"+lucia+">")
			if i < MaxProtocolRecipients {
				want = append(want, "250")
			} else {
				want = append(want, "452")
			}
		}
		replies := converse(t, p.b.ricezione, script)
		for i := range want {
			if i >= len(replies) || !strings.HasPrefix(replies[i], want[i]) {
				t.Fatalf("reply %d: %q, want %s", i, at(replies, i), want[i])
			}
		}
	})

	t.Run("pipelining and truncated DATA", func(t *testing.T) {
		msg := strings.ReplaceAll(message("x@example.org", lucia, "", "Troncato"), "\n", "\r\n")
		raw := "EHLO x\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<" + lucia + ">\r\nDATA\r\n" + msg[:len(msg)/2]
		before := len(p.b.messages(t, lucia))
		sendAndClose(t, p.b.ricezione, raw)
		if after := len(p.b.messages(t, lucia)); after != before {
			t.Errorf("a truncated message was delivered")
		}
	})

	t.Run("100 wrong passwords", func(t *testing.T) {
		var codes []int
		for range 100 {
			err := p.a.submit(t, "anna@pec.alfa.test", "wrong password", []string{lucia}, message("anna@pec.alfa.test", lucia, "", "x"))
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				t.Fatalf("wrong password accepted: %v", err)
			}
			codes = append(codes, se.Code)
		}
		if !slices.Contains(codes, 454) {
			t.Errorf("100 wrong passwords were never rate-limited: %v", codes)
		}
		// The right password is refused too while the limit holds.
		err := p.a.submit(t, "anna@pec.alfa.test", pw, []string{lucia}, message("anna@pec.alfa.test", lucia, "", "x"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 454 {
			t.Errorf("right password during the lockout: %v, want 454", err)
		}
		// Anna's failures throttle anna at this address, not the address:
		// another titolare behind it submits at once.
		if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Subito")); err != nil {
			t.Errorf("another titolare at the same address: %v", err)
		}
	})

	// After all that, and once the lockout of the client's address has
	// passed, the gestori still work.
	p.clock.Advance(16 * time.Minute)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Dopo")); err != nil {
		t.Fatalf("submit after the abuse: %v", err)
	}
	p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<none>"
}

func plain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}
