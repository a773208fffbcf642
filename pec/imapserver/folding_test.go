package imapserver

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestLoginFoldingVariants: issue 16, finding 1, at IMAP. A login name
// reaches a mailbox only through its canonical form (package mailaddr):
// no Unicode folding (U+0130 lower-cases to ASCII 'i' under
// strings.ToLower, as the Kelvin sign does to 'k'; U+017F, fullwidth and
// Cyrillic letters fold or look alike), no trailing dot, no subaddress. ASCII upper case is the
// same mailbox.
func TestLoginFoldingVariants(t *testing.T) {
	cases := []struct {
		name, user string
	}{
		{"dotted capital I U+0130", "mar\u0130o.rossi@pec.example.it"},
		{"long s U+017F", "mario.ro\u017f\u017fi@pec.example.it"},
		{"fullwidth m", "\uff4dario.rossi@pec.example.it"},
		{"Cyrillic a", "m\u0430rio.rossi@pec.example.it"},
		{"trailing dot", "mario.rossi@pec.example.it."},
		{"plus-addressing", "mario.rossi+x@pec.example.it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			cl := e.dial(t, nil)
			if err := cl.Login(c.user, marioPW).Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
				t.Fatalf("LOGIN %q with mario's password = %v, want NO [AUTHENTICATIONFAILED]", c.user, err)
			}
		})
	}
	t.Run("upper case is the same mailbox", func(t *testing.T) {
		e := newEnv(t, nil)
		e.login(t, strings.ToUpper(mario), marioPW, nil)
	})
}
