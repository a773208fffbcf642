package gestore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestMailFromFoldingVariants: issue 16, finding 1, at submission. The
// reverse path must be the authenticated mailbox in its canonical form,
// byte for byte: no folding variant of it (U+017F, the Kelvin sign,
// fullwidth, Cyrillic, a trailing dot, a subaddress) is accepted, and none
// logs in; the From field is held to the same rule.
func TestMailFromFoldingVariants(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	const katia = "katia@pec.alfa.test"
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.a.addMailbox(t, katia, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	roots := x509.NewCertPool()
	roots.AddCert(p.a.dev.CA.Certificate)
	dial := func(t *testing.T, user string) (*smtp.Client, error) {
		c, err := smtp.DialStartTLS(p.a.submission, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c, c.Auth(sasl.NewPlainClient("", user, pw))
	}
	cases := []struct {
		name, user, from string
	}{
		{"long s", mario, "mario.ro\u017f\u017fi@pec.alfa.test"},
		{"long s, upper case", mario, "MARIO.RO\u017f\u017fI@pec.alfa.test"},
		{"Kelvin sign", katia, "\u212aatia@pec.alfa.test"},
		{"fullwidth", mario, "\uff4dario.rossi@pec.alfa.test"},
		{"Cyrillic", mario, "m\u0430rio.rossi@pec.alfa.test"},
		{"trailing dot", mario, "mario.rossi@pec.alfa.test."},
		{"plus-addressing", mario, "mario.rossi+x@pec.alfa.test"},
		{"another mailbox", mario, katia},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := dial(t, c.user)
			if err != nil {
				t.Fatalf("login as %s: %v", c.user, err)
			}
			var se *smtp.SMTPError
			if err := cl.Mail(c.from, nil); !errors.As(err, &se) || se.Code != 553 {
				t.Errorf("MAIL FROM:<%s> as %s: %v, want 553", c.from, c.user, err)
			}
			// The variant does not log in with the victim's password.
			if c.from != katia {
				if _, err := dial(t, c.from); !errors.As(err, &se) || se.Code != 535 {
					t.Errorf("login as %q with the password of %s: %v, want 535", c.from, c.user, err)
				}
			}
		})
	}
	t.Run("upper case is the same mailbox", func(t *testing.T) {
		cl, err := dial(t, strings.ToUpper(mario))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Mail(strings.ToUpper(mario), nil); err != nil {
			t.Errorf("MAIL FROM in upper case: %v", err)
		}
	})
	t.Run("From field", func(t *testing.T) {
		before := len(p.a.messages(t, mario))
		err := p.a.submit(t, mario, pw, []string{lucia}, message("mario.ro\u017f\u017fi@pec.alfa.test", lucia, "", "From piegato"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 {
			t.Fatalf("submit with a folded From: %v, want 554 non accettazione", err)
		}
		waitFor(t, "avviso di non accettazione", 10*time.Second, func() (bool, error) {
			return len(p.a.messages(t, mario)) > before, nil
		})
		if m := p.a.parsed(t, mario)[before]; m.Kind != pec.KindNonAccettazione || !strings.Contains(m.Daticert.ErroreEsteso, "From") {
			t.Errorf("got %s %q, want non accettazione for the From", m.Kind, m.Daticert.ErroreEsteso)
		}
	})
}
