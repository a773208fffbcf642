package gestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/igpec"
)

// newSingle starts one gestore, alone in its indice dei gestori: its
// titolari write to each other through its punto di accesso and the
// in-process punto di ricezione.
func newSingle(t *testing.T, o startOptions) *testGestore {
	t.Helper()
	g := newTestGestore(t, "Alfa PEC S.p.A.", "pec.alfa.test")
	ix, err := igpec.NewIndex(g.provider)
	if err != nil {
		t.Fatal(err)
	}
	o.index = ix
	if o.clock == nil {
		o.clock = newClock()
	}
	g.start(t, o)
	return g
}

// smtplibScript speaks to the punto di accesso with Python's smtplib, as a
// mail client does, and prints the replies as JSON: MAIL before AUTH,
// EHLO after STARTTLS, RCPTMAX+1 RCPT commands, and a message.
const smtplibScript = `
import base64, json, re, smtplib, ssl, sys
host, port, cafile, user, password, rcpt, msgfile = sys.argv[1:8]
out = {}
ctx = ssl.create_default_context(cafile=cafile)
s = smtplib.SMTP(host, int(port), timeout=120)
s.ehlo("client.test")
s.starttls(context=ctx)
code, text = s.ehlo("client.test")
out["ehlo"] = text.decode()
code, text = s.mail(user)
out["mail_before_auth"] = [code, text.decode()]
code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(("someone.else@pec.alfa.test\0%s\0%s" % (user, password)).encode()).decode())
out["auth_identity"] = [code, text.decode()]
s.login(user, password)
m = re.search(r"LIMITS RCPTMAX=(\d+)", out["ehlo"])
n = int(m.group(1)) if m else 0
s.mail(user)
rcpts = []
for i in range(n + 1):
    code, text = s.rcpt("destinatario%d@pec.alfa.test" % i)
    rcpts.append([code, text.decode()])
out["rcpt"] = rcpts
s.rset()
code, text = s.mail(user)
out["mail"] = [code, text.decode()]
code, text = s.rcpt(rcpt)
out["rcpt_one"] = [code, text.decode()]
code, text = s.data(open(msgfile, "rb").read())
out["data"] = [code, text.decode()]
s.quit()
print(json.dumps(out))
`

// TestRepliesToAMailClient checks the replies a mail client (Python's
// smtplib) gets from the punto di accesso: 530 5.7.0 for MAIL before AUTH
// (before: 502), 535 5.7.8 for AUTH PLAIN with another identity (before:
// 454 4.7.0 "identity must be the username"), the recipients limit that EHLO advertises (LIMITS
// RCPTMAX=N, RFC 9422) enforced exactly (before: 1000 advertised, the 51st
// recipient refused after DATA), and a final 250 that gives the
// identificativo of the transaction (before: "OK: queued").
func TestRepliesToAMailClient(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	g := newSingle(t, startOptions{})
	const anna = "anna.verdi@pec.alfa.test"
	g.addMailbox(t, mario, pw, 0)
	g.addMailbox(t, anna, pw, 0)
	dir := t.TempDir()
	script, msgFile := filepath.Join(dir, "client.py"), filepath.Join(dir, "msg.eml")
	if err := os.WriteFile(script, []byte(smtplibScript), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msgFile, crlf(message(mario, anna, "", "Risposte")), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(g.submission)
	out, err := exec.Command(python, script, host, port, g.caFile, mario, pw, anna, msgFile).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("smtplib: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		EHLO           string  `json:"ehlo"`
		MailBeforeAuth []any   `json:"mail_before_auth"`
		AuthIdentity   []any   `json:"auth_identity"`
		Rcpt           [][]any `json:"rcpt"`
		Mail           []any   `json:"mail"`
		RcptOne        []any   `json:"rcpt_one"`
		Data           []any   `json:"data"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	line := func(r []any) string { return fmt.Sprintf("%v %v", r[0], r[1]) }

	if l := line(got.MailBeforeAuth); l != "530 5.7.0 Authentication required" {
		t.Errorf("MAIL before AUTH: %q, want 530 5.7.0 Authentication required", l)
	}
	if l := line(got.AuthIdentity); l != "535 5.7.8 Authentication credentials invalid" {
		t.Errorf("AUTH PLAIN as another identity: %q, want 535 5.7.8", l)
	}
	want := "LIMITS RCPTMAX=" + strconv.Itoa(DefaultMaxRecipients)
	if !strings.Contains(got.EHLO, want) {
		t.Errorf("EHLO does not advertise %s:\n%s", want, got.EHLO)
	}
	if len(got.Rcpt) != DefaultMaxRecipients+1 {
		t.Fatalf("%d RCPT replies, want %d", len(got.Rcpt), DefaultMaxRecipients+1)
	}
	for i, r := range got.Rcpt[:DefaultMaxRecipients] {
		if r[0] != float64(250) {
			t.Fatalf("RCPT %d of %d: %s, want 250", i+1, DefaultMaxRecipients, line(r))
		}
	}
	if l := line(got.Rcpt[DefaultMaxRecipients]); !strings.HasPrefix(l, "452 4.5.3 ") {
		t.Errorf("RCPT %d: %q, want 452 4.5.3", DefaultMaxRecipients+1, l)
	}
	for _, r := range [][]any{got.Mail, got.RcptOne} {
		if l := line(r); !strings.HasPrefix(l, "250 ") {
			t.Errorf("reply %q, want 250", l)
		}
	}

	m := regexp.MustCompile(`^250 2\.0\.0 Ok: queued as (\S+)$`).FindStringSubmatch(line(got.Data))
	if m == nil {
		t.Fatalf("end of DATA: %q, want 250 2.0.0 Ok: queued as IDENTIFICATIVO", line(got.Data))
	}
	id := m[1]
	if kinds := g.kinds(t, id); !slices.Contains(kinds, string(ledger.KindAccettazione)) {
		t.Errorf("the identificativo %s of the 250 has entries %v, want an accettazione", id, kinds)
	}
	acc := first(g.waitKinds(t, mario, pec.KindAccettazione), pec.KindAccettazione)
	if acc.Daticert.Identificativo != id {
		t.Errorf("the 250 says %s, the ricevuta di accettazione %s", id, acc.Daticert.Identificativo)
	}
}

// TestFinalReplyRicezione checks that the punto di ricezione's final 250
// names what it made of the message: here the identificativo of the busta
// di anomalia around ordinary mail (before: "OK: queued").
func TestFinalReplyRicezione(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	g := newSingle(t, startOptions{})
	g.addMailbox(t, mario, pw, 0)
	c, err := smtp.Dial(g.ricezione)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("x@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(mario, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(crlf(message("x@example.org", mario, "", "Ordinaria"))); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	const queued = "Ok: queued as "
	_, id, ok := strings.Cut(resp.StatusText, queued)
	if !ok || id == "" {
		t.Fatalf("end of DATA: %q, want 250 2.0.0 %s…", resp.StatusText, queued)
	}
	if kinds := g.kinds(t, id); !slices.Equal(kinds, []string{string(ledger.KindBustaAnomalia)}) {
		t.Errorf("the identificativo %s of the 250 has entries %v, want a busta di anomalia", id, kinds)
	}
}

// TestSizeRefusals checks that a message over the size limit gets the
// same treatment however the excess is found: by size × recipients after
// DATA (the 20 MB to two recipients), or while DATA reads it (25
// MB to one recipient: before, a bare 552 with neither an avviso nor a
// reason). Each gets 552 5.3.4 naming the avviso di non accettazione, an
// avviso with the Italian sentence of ReasonTooLarge, its ledger entry,
// and a refusal entry, all under the same reason. The limit is scaled
// down (64 KiB) so that the test moves kilobytes, not megabytes.
func TestSizeRefusals(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	const maxSize = 64 << 10
	// Messages over 16 KiB are spooled to a file: the one refused while
	// read is cut short there.
	g := newSingle(t, startOptions{maxSize: maxSize, limits: func(o *Options) { o.SpoolThreshold = 16 << 10 }})
	const anna, luca = "anna.verdi@pec.alfa.test", "luca.neri@pec.alfa.test"
	g.addMailbox(t, mario, pw, 0)
	g.addMailbox(t, anna, pw, 0)
	g.addMailbox(t, luca, pw, 0)
	pad := func(msg string, size int) string {
		return msg + strings.Repeat(strings.Repeat("x", 63)+"\n", size/64)
	}
	tests := []struct {
		name, subject string
		rcpts         []string
		msg           string
	}{
		// 40 KiB × 2 = 80 KiB > 64 KiB: found by the formal check.
		{"size times recipients", "Due destinatari", []string{anna, luca}, pad(message(mario, anna, luca, "Due destinatari"), 40<<10)},
		// 80 KiB > 64 KiB: found while DATA reads it.
		{"one recipient, during DATA", "Un destinatario", []string{anna}, pad(message(mario, anna, "", "Un destinatario"), 80<<10)},
	}
	wantTesto := reasons[ReasonTooLarge].testo
	wantTesto = strings.Replace(wantTesto, "%s", strconv.Itoa(maxSize), 1)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(g.messages(t, mario))
			refusalsBefore := len(g.refusalsAt(t, "accesso"))
			err := g.submit(t, mario, pw, tt.rcpts, tt.msg)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
				t.Fatalf("submit: %v, want 552 5.3.4", err)
			}
			m := regexp.MustCompile(`avviso di non accettazione sent, identificativo (\S+)$`).FindStringSubmatch(se.Message)
			if m == nil {
				t.Fatalf("reply %q names no avviso di non accettazione", se.Message)
			}
			id := m[1]
			var avviso *pec.Message
			waitFor(t, "the avviso di non accettazione", 20*time.Second, func() (bool, error) {
				msgs := g.parsed(t, mario)
				if len(msgs) > before {
					avviso = msgs[before]
					return true, nil
				}
				return false, nil
			})
			d := avviso.Daticert
			if avviso.Kind != pec.KindNonAccettazione || d.Identificativo != id || d.Errore != daticert.ErroreAltro || d.ErroreEsteso != wantTesto {
				t.Errorf("avviso %s %s errore %s %q, want non accettazione %s with %q", avviso.Kind, d.Identificativo, d.Errore, d.ErroreEsteso, id, wantTesto)
			}
			if d.Oggetto != tt.subject {
				t.Errorf("the avviso's oggetto is %q, want the message's %q", d.Oggetto, tt.subject)
			}
			var dest []string
			for _, x := range d.Destinatari {
				dest = append(dest, x.Address)
			}
			if !slices.Equal(dest, tt.rcpts) {
				t.Errorf("the avviso names %v, want %v", dest, tt.rcpts)
			}
			entries, err := g.srv.entriesOf(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Kind != ledger.KindNonAccettazione || entries[0].Details["causa"] != string(ReasonTooLarge) {
				t.Errorf("ledger entries of %s: %v", id, entries)
			}
			var refusal *ledger.Entry
			waitFor(t, "the refusal entry", 10*time.Second, func() (bool, error) {
				r := g.refusalsAt(t, "accesso")
				if len(r) > refusalsBefore {
					refusal = r[len(r)-1]
					return true, nil
				}
				return false, nil
			})
			if refusal.Details["causa"] != string(ReasonTooLarge) || refusal.Details["codice"] != "552 5.3.4" ||
				refusal.Mittente != mario || !strings.Contains(refusal.Details["motivo"], id) {
				t.Errorf("refusal entry: %s %v", refusal.Mittente, refusal.Details)
			}
		})
	}
}

// TestUnreadableHeaderAvviso checks that the avviso di non accettazione of
// a message whose header cannot be read states the Italian reason of the
// table, and not the English error of the parser (before: "il messaggio
// non è un messaggio di posta elettronica leggibile (pec: transaction:
// the message header cannot be read…)").
func TestUnreadableHeaderAvviso(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	g := newSingle(t, startOptions{})
	const anna = "anna.verdi@pec.alfa.test"
	g.addMailbox(t, mario, pw, 0)
	err := g.submit(t, mario, pw, []string{anna}, "From: "+mario+"\nTo: "+anna+"\nnot a header line\n\nCiao\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "avviso di non accettazione sent") {
		t.Fatalf("submit: %v, want 554 with an avviso di non accettazione", err)
	}
	msgs := g.waitKinds(t, mario, pec.KindNonAccettazione)
	got := first(msgs, pec.KindNonAccettazione).Daticert.ErroreEsteso
	if want := reasons[ReasonUnreadable].testo; got != want {
		t.Errorf("errore-esteso %q, want %q", got, want)
	}
}
