package pec

import (
	"net/mail"
	"strings"
	"testing"
	"time"
)

func TestReceivedField(t *testing.T) {
	at := time.Date(2025, 11, 14, 18, 26, 30, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		r    Received
		want string
	}{
		{"submission", Received{Helo: "client.example", RemoteHost: "client.example", RemoteIP: "192.0.2.10", By: "smtp.pec.custode.test", With: "ESMTPSA", ID: "DDF69805391D", For: "anna.bianchi@pec.altro.test", Time: at},
			"Received: from client.example (client.example [192.0.2.10])\r\n" +
				"\tby smtp.pec.custode.test (Custode) with ESMTPSA id DDF69805391D\r\n" +
				"\tfor <anna.bianchi@pec.altro.test>; Fri, 14 Nov 2025 18:26:30 +0100\r\n"},
		{"several recipients, no rDNS, default protocol", Received{Helo: "[192.0.2.10]", RemoteIP: "192.0.2.10", By: "mx.pec.custode.test", ID: "opec1.2025@pec.altro.test", Time: at},
			"Received: from 192.0.2.10 (unknown [192.0.2.10])\r\n" +
				"\tby mx.pec.custode.test (Custode) with ESMTP id opec1.2025@pec.altro.test\r\n" +
				"\t; Fri, 14 Nov 2025 18:26:30 +0100\r\n"},
		{"hostile HELO cannot add a field", Received{Helo: "evil\r\nBcc: x@y.it (a) [b] <c>;", RemoteIP: "2001:db8::1", By: "mx", With: "ESMTPS", Time: at},
			"Received: from evilBcc:x@y.itabc (unknown [2001:db8::1])\r\n" +
				"\tby mx (Custode) with ESMTPS\r\n" +
				"\t; Fri, 14 Nov 2025 18:26:30 +0100\r\n"},
		{"no HELO, non-ASCII recipient", Received{RemoteIP: "192.0.2.1", By: "mx", With: "ESMTP", For: "però@pec.it", Time: at},
			"Received: from unknown (unknown [192.0.2.1])\r\n" +
				"\tby mx (Custode) with ESMTP\r\n" +
				"\tfor <per@pec.it>; Fri, 14 Nov 2025 18:26:30 +0100\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.r.Field()
			if got != tt.want {
				t.Errorf("Field() =\n%q\nwant\n%q", got, tt.want)
			}
			m, err := mail.ReadMessage(strings.NewReader(got + "\r\nbody\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Header) != 1 || len(m.Header["Received"]) != 1 {
				t.Errorf("header %v, want one Received field", m.Header)
			}
			for _, l := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
				if len(l) > 78 {
					t.Errorf("line of %d characters: %q", len(l), l)
				}
			}
		})
	}
}

func TestNewQueueID(t *testing.T) {
	a, b := NewQueueID(), NewQueueID()
	if len(a) != 12 || strings.ToUpper(a) != a || a == b {
		t.Errorf("NewQueueID() = %q, %q", a, b)
	}
}

// TestTraceInOriginal checks that Envelope.Trace heads the original, in its
// line endings, that the busta di trasporto inherits it as real gestori do,
// outside the signed entity, and that a trace that is not header fields is
// refused.
func TestTraceInOriginal(t *testing.T) {
	g := newGestore(t)
	field := Received{Helo: "client.example", RemoteIP: "192.0.2.10", By: "smtp.pec.custode.test", With: "ESMTPSA", ID: "ABC", Time: acceptedAt}.Field()
	env := testEnvelope
	env.Trace = field
	for _, eol := range []string{"\r\n", "\n"} {
		orig := strings.ReplaceAll(testOriginal, "\r\n", eol)
		tx, err := g.NewTransaction([]byte(orig), env, acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(field, "\r\n", eol) + orig[:10]; !strings.HasPrefix(string(tx.Original), want) {
			t.Errorf("original starts %q, want %q", truncate(string(tx.Original), 300), want)
		}
		busta, err := g.BustaTrasporto(tx)
		if err != nil {
			t.Fatal(err)
		}
		// Inherited, the field is folded again at its spaces.
		if refolded := strings.ReplaceAll(field, "\r\n\t", " "); !strings.HasPrefix(strings.ReplaceAll(string(busta.Message), "\r\n ", " "), refolded) {
			t.Errorf("the busta does not start with the trace field: %q", truncate(string(busta.Message), 300))
		}
		if err := opensslVerify(t, busta.Message); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"Received: x", "Received: x\r\n\r\nBcc: y\r\n", "not a field\r\n", " continuation\r\n", "A: b\nC: d\r\n"} {
		env.Trace = bad
		if _, err := g.NewTransaction([]byte(testOriginal), env, acceptedAt); err == nil {
			t.Errorf("trace %q accepted", bad)
		}
	}
}
