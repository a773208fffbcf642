package gestore

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestReasonTables checks that every reason has a reply and a kind, that
// the class of its reply agrees with its kind, and that every reason an
// avviso states has an Italian sentence.
func TestReasonTables(t *testing.T) {
	for r, ri := range reasons {
		rep, ok := replies[r]
		if !ok {
			t.Errorf("reason %s has no reply", r)
			continue
		}
		class := rep.code / 100
		switch {
		case ri.kind == Temporary && class != 4,
			ri.kind == Permanent && class != 5,
			ri.kind == Success && class != 2:
			t.Errorf("reason %s: kind %d but reply %d", r, ri.kind, rep.code)
		}
		if rep.enh[0] != class {
			t.Errorf("reason %s: reply %d with enhanced code %v", r, rep.code, rep.enh)
		}
		if strings.HasPrefix(string(r), "anomalia-") && r != ReasonAnomaliaImpossible && ri.testo == "" {
			t.Errorf("reason %s makes a busta di anomalia but has no Italian sentence", r)
		}
	}
	for r := range replies {
		if _, ok := reasons[r]; !ok {
			t.Errorf("reply of %s, which is not a reason", r)
		}
	}
	// The formal checks of the punto di accesso: each states its reason
	// in the avviso di non accettazione.
	for _, r := range []Reason{ReasonTooLarge, ReasonTooManyRecipients, ReasonUnreadable, ReasonBcc, ReasonFromCount,
		ReasonFromAddresses, ReasonFromMismatch, ReasonSenderCount, ReasonSenderInvalid, ReasonSenderMismatch,
		ReasonToInvalid, ReasonCcInvalid, ReasonNoTo, ReasonNotListed, ReasonBadRecipient, ReasonStructure, ReasonVirus} {
		if reasons[r].testo == "" || reasons[r].kind != Permanent {
			t.Errorf("formal reason %s: %+v, want a permanent reason with an Italian sentence", r, reasons[r])
		}
	}
}

// TestReply checks the mapping of outcomes to SMTP replies.
func TestReply(t *testing.T) {
	const id = "20261203101500.0123abcd@pec.alfa.test"
	secret := errors.New("open /var/lib/custode/ledger/000123.vlog: read tcp 10.0.0.5:25->10.0.0.9:4431: i/o timeout")
	withID := func(o *Outcome) *Outcome { o.Identificativo = id; return o }
	tests := []struct {
		name string
		o    *Outcome
		code int
		enh  smtp.EnhancedCode
		text string // the whole text, or "" when nil is expected
	}{
		{"nil", nil, 0, smtp.EnhancedCode{}, ""},
		{"accepted", accepted(id), 250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as " + id},
		{"accepted, no identificativo", accepted(""), 250, smtp.EnhancedCode{2, 0, 0}, "Ok"},
		{"auth required", outcome(ReasonAuthRequired, "", nil), 530, smtp.EnhancedCode{5, 7, 0}, "Authentication required"},
		{"auth failed", outcome(ReasonAuthFailed, "", secret), 535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid"},
		{"throttled", outcome(ReasonAuthThrottled, "30", nil), 454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins from your address, try again in 30 seconds"},
		{"reverse path", outcome(ReasonReversePath, "mario.rossi@pec.alfa.test", nil), 553, smtp.EnhancedCode{5, 7, 1}, "The reverse path must be the authenticated mailbox mario.rossi@pec.alfa.test"},
		{"relay", outcome(ReasonRelay, "", nil), 550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: not a domain of this gestore"},
		{"no mailbox", outcome(ReasonNoMailbox, "", nil), 550, smtp.EnhancedCode{5, 1, 1}, "No such mailbox"},
		{"too large, avviso sent", withID(outcome(ReasonTooLarge, "31457280", secret)), 552, smtp.EnhancedCode{5, 3, 4},
			"Message too large: size times recipients exceeds 31457280 bytes; avviso di non accettazione sent, identificativo " + id},
		{"too large, ricezione", outcome(ReasonTooLarge, "31457280", nil), 552, smtp.EnhancedCode{5, 3, 4},
			"Message too large: size times recipients exceeds 31457280 bytes"},
		{"bcc, avviso sent", withID(outcome(ReasonBcc, "", nil)), 554, smtp.EnhancedCode{5, 6, 0},
			"Bcc header field not allowed; avviso di non accettazione sent, identificativo " + id},
		{"virus", withID(outcome(ReasonVirus, "Eicar-Test-Signature", nil)), 554, smtp.EnhancedCode{5, 7, 1},
			"Virus found (Eicar-Test-Signature); avviso di non accettazione sent, identificativo " + id},
		{"storage", deferred("ledger", &os.PathError{Op: "write", Path: "/var/lib/x", Err: syscall.ENOSPC}), 452, smtp.EnhancedCode{4, 3, 1},
			"Insufficient system storage (ledger), try again later"},
		{"unavailable", deferred("ledger", secret), 451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure (ledger), try again later"},
		{"mailbox full, retry", outcome(ReasonMailboxBusy, "x@pec.alfa.test", nil), 452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full, try again later"},
		{"unknown reason", &Outcome{Reason: "no-such-reason", Detail: secret}, 451, smtp.EnhancedCode{4, 3, 0}, "Local error, try again later"},
		{"subject with CRLF", outcome(ReasonPECOnly, "a@pec.alfa.test\r\n250 fake", nil), 550, smtp.EnhancedCode{5, 7, 1},
			"Mailbox accepts certified mail (PEC) only: a@pec.alfa.test 250 fake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reply(tt.o)
			if tt.text == "" {
				if err != nil {
					t.Fatalf("reply(nil) = %v", err)
				}
				return
			}
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				t.Fatalf("reply = %T %v", err, err)
			}
			if se.Code != tt.code || se.EnhancedCode != tt.enh || se.Message != tt.text {
				t.Errorf("reply = %d %v %q, want %d %v %q", se.Code, se.EnhancedCode, se.Message, tt.code, tt.enh, tt.text)
			}
			if strings.Contains(se.Message, "/var/lib") || strings.Contains(se.Message, "10.0.0") {
				t.Errorf("reply carries the technical detail: %q", se.Message)
			}
		})
	}
}

// TestSessionErrors checks what becomes of the errors that are not the
// engine's: go-smtp's size limit is the size rule, and no internal text
// reaches a client.
func TestSessionErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
	}{
		{"go-smtp size limit", smtp.ErrDataTooLarge, 552},
		{"lost connection", io.ErrUnexpectedEOF, 451},
		{"internal", errors.New("open /var/lib/custode/spool: permission denied"), 451},
		{"outcome", outcome(ReasonNoMailbox, "", nil), 550},
		{"a reply as it is", &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "x"}, 421},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			se := publicError(tt.err)
			if se.Code != tt.code || strings.Contains(se.Message, "/var/lib") {
				t.Errorf("publicError(%v) = %d %q, want %d", tt.err, se.Code, se.Message, tt.code)
			}
		})
	}
	if o := fromSessionError(smtp.ErrDataTooLarge); o.Reason != ReasonTooLarge {
		t.Errorf("go-smtp's size limit is %s, want %s", o.Reason, ReasonTooLarge)
	}
}

// TestOutcomeItalian checks that an outcome's Italian sentence names its
// subject and never carries the technical detail.
func TestOutcomeItalian(t *testing.T) {
	detail := errors.New("pec: transaction: the message header cannot be read: malformed MIME header line")
	tests := []struct {
		o    *Outcome
		want string
	}{
		{outcome(ReasonUnreadable, "", detail), "il messaggio non è un messaggio di posta elettronica leggibile: la sua intestazione non rispetta il formato Internet (RFC 5322)"},
		{outcome(ReasonTooLarge, "31457280", detail), "la dimensione del messaggio moltiplicata per il numero dei destinatari supera il limite di 31457280 byte"},
		{outcome(ReasonNotListed, "x@pec.beta.test", nil), "il destinatario x@pec.beta.test non compare nei campi To o Cc"},
		{outcome(ReasonStructure, "", detail), "la struttura MIME del messaggio è troppo complessa per essere trasportata (troppe parti o troppi livelli annidati)"},
		{outcome(ReasonAnomaliaInconsistent, "", detail), "il messaggio di posta certificata non è corretto: le sue intestazioni e i suoi dati di certificazione non concordano"},
		{outcome(ReasonNoMailbox, "", detail), ""},
	}
	for _, tt := range tests {
		if tt.o.Testo != tt.want {
			t.Errorf("%s: %q, want %q", tt.o.Reason, tt.o.Testo, tt.want)
		}
		if !strings.Contains(tt.o.Error(), "malformed") && tt.o.Detail != nil {
			t.Errorf("%s: Error() %q lost the detail", tt.o.Reason, tt.o.Error())
		}
	}
	if k := (*Outcome)(nil).Kind(); k != Success {
		t.Errorf("nil outcome: kind %d", k)
	}
}

// TestPublicErrorOutcomeFirst checks that an outcome whose detail wraps a
// reply is answered as the outcome says (before the fix: go-smtp's bare
// "Maximum message size exceeded", without the avviso it had sent).
func TestPublicErrorOutcomeFirst(t *testing.T) {
	o := outcome(ReasonTooLarge, "65536", smtp.ErrDataTooLarge)
	o.Identificativo = "x@pec.alfa.test"
	se := publicError(o)
	if se.Code != 552 || !strings.Contains(se.Message, "avviso di non accettazione sent, identificativo x@pec.alfa.test") {
		t.Errorf("publicError = %d %q", se.Code, se.Message)
	}
	if isReply(o) {
		t.Error("isReply of an outcome")
	}
}

// TestAuthErrors checks that a malformed SASL exchange fails the
// authentication with a reply of ours (before: go-smtp's 454 4.7.0 with
// the mechanism's text, "identity must be the username").
func TestAuthErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
	}{
		{"mechanism error", errors.New("identity must be the username"), 535},
		{"throttled", reply(outcome(ReasonAuthThrottled, "30", nil)), 454},
	}
	for _, tt := range tests {
		var se *smtp.SMTPError
		if err := authError(tt.err); !errors.As(err, &se) || se.Code != tt.code || strings.Contains(se.Message, "identity") {
			t.Errorf("%s: %v, want %d", tt.name, err, tt.code)
		}
	}
}

// errAfter is a reader that gives data, then err.
type errAfter struct {
	data []byte
	err  error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSpoolKeepsHead checks that a message cut short (here by go-smtp's
// size limit) keeps its first bytes, in memory or spooled to a file, so
// that the avviso of a message too large can name its Subject.
func TestSpoolKeepsHead(t *testing.T) {
	msg := "From: a@pec.alfa.test\r\nSubject: =?utf-8?q?Fattura_n=C2=B0_12?=\r\n\r\n" + strings.Repeat("x", 100<<10)
	for _, threshold := range []int64{1 << 20, 8 << 10} {
		s := &Server{opts: Options{SpoolThreshold: threshold, SpoolDir: t.TempDir()}}
		_, err := s.spool(&errAfter{data: []byte(msg), err: smtp.ErrDataTooLarge})
		var u *unreadMessage
		if !errors.As(err, &u) || !errors.Is(err, smtp.ErrDataTooLarge) {
			t.Fatalf("threshold %d: %v", threshold, err)
		}
		if len(u.head) != maxHeadKept || subjectOf(u.head) != "Fattura n° 12" {
			t.Errorf("threshold %d: kept %d bytes, subject %q", threshold, len(u.head), subjectOf(u.head))
		}
		if o := fromSessionError(err); o.Reason != ReasonTooLarge {
			t.Errorf("threshold %d: %s", threshold, o.Reason)
		}
	}
	if got := subjectOf([]byte("Subject: a\r\n\tb\x01c\r\n\r\n")); got != "a b c" {
		t.Errorf("subjectOf: %q", got)
	}
}
