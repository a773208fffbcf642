package gestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/smime"
)

const (
	mario = "mario.rossi@pec.alfa.test"
	lucia = "lucia.bianchi@pec.beta.test"
	pw    = "correct horse battery"
)

func message(from, to, cc, subject string) string {
	h := "From: " + from + "\nTo: " + to + "\n"
	if cc != "" {
		h += "Cc: " + cc + "\n"
	}
	return h + "Subject: " + subject + "\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@client.test>\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0100\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nBuongiorno,\nin allegato nulla.\n"
}

// parsed returns the PEC messages in address's mailbox, parsed.
func (g *testGestore) parsed(t *testing.T, address string) []*pec.Message {
	t.Helper()
	var out []*pec.Message
	for _, raw := range g.messages(t, address) {
		m, err := pec.Parse(raw, pec.ParseOptions{})
		if err != nil {
			t.Fatalf("mailbox %s: %v", address, err)
		}
		out = append(out, m)
	}
	return out
}

func kindsOf(ms []*pec.Message) []pec.Kind {
	var out []pec.Kind
	for _, m := range ms {
		out = append(out, m.Kind)
	}
	return out
}

// waitKinds waits until address's mailbox holds messages of every kind of
// want, and returns the messages.
func (g *testGestore) waitKinds(t *testing.T, address string, want ...pec.Kind) []*pec.Message {
	t.Helper()
	var got []*pec.Message
	waitFor(t, fmt.Sprintf("%v in %s", want, address), 20*time.Second, func() (bool, error) {
		got = g.parsed(t, address)
		have := kindsOf(got)
		for _, k := range want {
			if !slices.Contains(have, k) {
				return false, nil
			}
		}
		return true, nil
	})
	return got
}

func first(ms []*pec.Message, k pec.Kind) *pec.Message {
	for _, m := range ms {
		if m.Kind == k {
			return m
		}
	}
	return nil
}

// opensslVerify checks msg with openssl smime -verify against caFile.
func opensslVerify(t *testing.T, msg []byte, caFile string) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not found: run scripts/install-test-deps.sh")
	}
	in := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "smime", "-verify", "-in", in, "-CAfile", caFile, "-purpose", "any", "-out", os.DevNull).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification successful")) {
		t.Errorf("openssl smime -verify: %v: %s", err, out)
	}
}

func TestDeliveryBetweenGestori(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)

	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Fattura 12")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
	busta := p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)[0]
	acc, consegna := first(got, pec.KindAccettazione), first(got, pec.KindConsegnaCompleta)
	id := acc.Daticert.Identificativo
	if busta.Daticert.Identificativo != id || consegna.Daticert.Identificativo != id {
		t.Errorf("identificativi differ: accettazione %s, busta %s, consegna %s", id, busta.Daticert.Identificativo, consegna.Daticert.Identificativo)
	}
	if consegna.Daticert.Consegna != lucia {
		t.Errorf("consegna for %q, want %s", consegna.Daticert.Consegna, lucia)
	}
	opensslVerify(t, acc.Raw, p.a.caFile)
	opensslVerify(t, busta.Raw, p.a.caFile)
	opensslVerify(t, consegna.Raw, p.b.caFile)

	waitFor(t, "A's ledger to record the ricevute", 10*time.Second, func() (bool, error) {
		return len(p.a.kinds(t, id)) >= 4, nil
	})
	wantA := []string{"accettazione", "posta-certificata", "received:presa-in-carico", "received:avvenuta-consegna"}
	wantB := []string{"presa-in-carico", "avvenuta-consegna"}
	if got := sorted(p.a.kinds(t, id)); !slices.Equal(got, sorted(wantA)) {
		t.Errorf("A's ledger: %v, want %v", got, wantA)
	}
	if got := sorted(p.b.kinds(t, id)); !slices.Equal(got, sorted(wantB)) {
		t.Errorf("B's ledger: %v, want %v", got, wantB)
	}
	// Nothing is emitted twice: the queues drain and stay empty.
	waitFor(t, "queues to drain", 10*time.Second, func() (bool, error) {
		return p.a.queue.Len() == 0 && p.b.queue.Len() == 0, nil
	})
	if n := len(p.b.messages(t, lucia)); n != 1 {
		t.Errorf("lucia has %d messages, want 1", n)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestSameGestore(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	anna := "anna@pec.alfa.test"
	p.a.addMailbox(t, mario, pw, 0)
	p.a.addMailbox(t, anna, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{anna}, message(mario, anna, "", "Interna")); err != nil {
		t.Fatal(err)
	}
	got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
	id := first(got, pec.KindAccettazione).Daticert.Identificativo
	p.a.waitKinds(t, anna, pec.KindBustaTrasporto)
	want := []string{"accettazione", "avvenuta-consegna", "posta-certificata", "presa-in-carico"}
	if got := sorted(p.a.kinds(t, id)); !slices.Equal(got, want) {
		t.Errorf("ledger: %v, want %v", got, want)
	}
}

func TestNonAccettazione(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	tests := []struct {
		name   string
		rcpts  []string
		msg    string
		reason string
	}{
		{"bcc", []string{lucia}, "Bcc: " + lucia + "\n" + message(mario, lucia, "", "Con Bcc"), "Bcc"},
		{"from differs", []string{lucia}, message("altro@pec.alfa.test", lucia, "", "From falso"), "From"},
		{"recipient not in To or Cc", []string{lucia, "x@pec.beta.test"}, message(mario, lucia, "", "Nascosto"), "To o Cc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.a.messages(t, mario))
			err := p.a.submit(t, mario, pw, tt.rcpts, tt.msg)
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "avviso di non accettazione sent") {
				t.Fatalf("submit: %v, want 554 non accettazione", err)
			}
			waitFor(t, "avviso di non accettazione", 10*time.Second, func() (bool, error) {
				return len(p.a.messages(t, mario)) > before, nil
			})
			m := p.a.parsed(t, mario)[before]
			if m.Kind != pec.KindNonAccettazione || !strings.Contains(m.Daticert.ErroreEsteso, tt.reason) {
				t.Errorf("got %s %q, want non accettazione mentioning %q", m.Kind, m.Daticert.ErroreEsteso, tt.reason)
			}
			if kinds := p.a.kinds(t, m.Daticert.Identificativo); !slices.Equal(kinds, []string{"non-accettazione"}) {
				t.Errorf("ledger: %v", kinds)
			}
			opensslVerify(t, m.Raw, p.a.caFile)
		})
	}
}

func TestMancataConsegna(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	nobody := "nessuno@pec.beta.test"
	if err := p.a.submit(t, mario, pw, []string{nobody}, message(mario, nobody, "", "A nessuno")); err != nil {
		t.Fatal(err)
	}
	got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindMancataConsegna)
	m := first(got, pec.KindMancataConsegna)
	if m.Daticert.Consegna != nobody || m.Daticert.Errore != "no-dest" {
		t.Errorf("mancata consegna: consegna %q errore %q", m.Daticert.Consegna, m.Daticert.Errore)
	}
	opensslVerify(t, m.Raw, p.b.caFile)
	id := m.Daticert.Identificativo
	waitFor(t, "ledger", 10*time.Second, func() (bool, error) { return len(p.a.kinds(t, id)) >= 4, nil })
	if got := sorted(p.b.kinds(t, id)); !slices.Equal(got, []string{"errore-consegna", "presa-in-carico"}) {
		t.Errorf("B's ledger: %v", got)
	}
}

// sendRaw delivers msg to addr's punto di ricezione as an ordinary SMTP
// client would, without TLS.
func sendRaw(t *testing.T, addr, from string, rcpts []string, msg []byte) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.SendMail(from, rcpts, bytes.NewReader(msg))
}

func TestAnomalia(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)

	// A genuine busta from A, to be forged below.
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Originale")); err != nil {
		t.Fatal(err)
	}
	genuine := p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)[0].Raw
	forged := bytes.Replace(genuine, []byte("Buongiorno"), []byte("Buonasera!"), 1)
	if bytes.Equal(forged, genuine) {
		t.Fatal("could not forge the busta")
	}
	// A gestore not in the index signs a busta of its own.
	stranger := newTestGestore(t, "Ignoto PEC", "pec.ignoto.test")
	sg, err := pec.NewGestore(stranger.name, stranger.domain, &smime.Signer{Certificate: stranger.dev.Gestore.Certificate, Key: stranger.dev.Gestore.Key}, pec.RandomIDs(nil))
	if err != nil {
		t.Fatal(err)
	}
	env := pec.Envelope{Mittente: "x@pec.ignoto.test", Destinatari: nil}
	env.Destinatari = append(env.Destinatari, destinatario(lucia))
	tx, err := sg.NewTransaction([]byte(strings.ReplaceAll(message("x@pec.ignoto.test", lucia, "", "Da ignoto"), "\n", "\r\n")), env, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := sg.BustaTrasporto(tx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		msg    []byte
		reason string
	}{
		{"unsigned ordinary mail", []byte(strings.ReplaceAll(message("someone@example.org", lucia, "", "Ordinaria"), "\n", "\r\n")), "non è un messaggio di posta certificata"},
		{"forged signature", forged, "firma"},
		{"unknown gestore", unknown.Message, "indice dei gestori"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.b.messages(t, lucia))
			if err := sendRaw(t, p.b.ricezione, "someone@example.org", []string{lucia}, tt.msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			waitFor(t, "busta di anomalia", 10*time.Second, func() (bool, error) {
				return len(p.b.messages(t, lucia)) > before, nil
			})
			m := p.b.parsed(t, lucia)[before]
			if m.Kind != pec.KindBustaAnomalia {
				t.Fatalf("got %s, want busta di anomalia", m.Kind)
			}
			opensslVerify(t, m.Raw, p.b.caFile)
			if !bytes.Contains(m.Raw, []byte(tt.reason)) && !bytes.Contains(m.Raw, []byte(qp(tt.reason))) {
				t.Errorf("the busta di anomalia does not say %q", tt.reason)
			}
			id := m.Header.MessageID
			// The busta di anomalia keeps the Message-ID of what it wraps:
			// for the forged busta, the identificativo of the genuine one.
			if kinds := p.b.kinds(t, strings.Trim(id, "<>")); len(kinds) == 0 || kinds[len(kinds)-1] != "busta-anomalia" {
				t.Errorf("ledger for %s: %v", id, kinds)
			}
		})
	}
}

// qp is s as quoted-printable writes its non-ASCII letters, roughly.
func qp(s string) string {
	return strings.NewReplacer("è", "=C3=A8", "à", "=C3=A0").Replace(s)
}

func TestNonPECRecipient(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	sink := newSink(t)
	p := newPair(t, startOptions{routes: map[string]string{"example.org": sink.addr}})
	p.a.addMailbox(t, mario, pw, 0)
	ext := "someone@example.org"
	if err := p.a.submit(t, mario, pw, []string{ext}, message(mario, ext, "", "Verso esterno")); err != nil {
		t.Fatal(err)
	}
	acc := p.a.waitKinds(t, mario, pec.KindAccettazione)[0]
	if d := acc.Daticert.Destinatari; len(d) != 1 || d[0].Tipo != "esterno" {
		t.Errorf("accettazione destinatari: %+v, want one esterno", d)
	}
	msg := sink.wait(t)
	m, err := pec.Parse(msg, pec.ParseOptions{})
	if err != nil || m.Kind != pec.KindBustaTrasporto {
		t.Fatalf("the ordinary recipient got %v (%v), want the busta di trasporto", m.Kind, err)
	}
	opensslVerify(t, msg, p.a.caFile)
}

func TestTimeoutAvvisi(t *testing.T) {
	tests := []struct {
		name string
		// presa says whether B takes the busta in charge (and then loses
		// the consegna); otherwise B is down.
		presa bool
		want  []string
	}{
		{"B down: both avvisi", false, []string{ledgerKind(ledger.KindPreavvisoErroreConsegna12), ledgerKind(ledger.KindPreavvisoErroreConsegna24)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, startOptions{})
			p.a.addMailbox(t, mario, pw, 0)
			p.b.stop()
			if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Attesa")); err != nil {
				t.Fatal(err)
			}
			acc := p.a.waitKinds(t, mario, pec.KindAccettazione)[0]
			id := acc.Daticert.Identificativo
			p.clock.Advance(11 * time.Hour)
			time.Sleep(200 * time.Millisecond)
			if n := len(p.a.parsed(t, mario)); n != 1 {
				t.Fatalf("%d messages before 12 hours, want 1", n)
			}
			p.clock.Advance(time.Hour + time.Second)
			p.a.waitKinds(t, mario, pec.KindPreavvisoMancataConsegna)
			p.clock.Advance(12 * time.Hour)
			waitFor(t, "the 24-hour avviso", 10*time.Second, func() (bool, error) {
				return len(p.a.parsed(t, mario)) == 3, nil
			})
			for _, m := range p.a.parsed(t, mario)[1:] {
				if m.Kind != pec.KindPreavvisoMancataConsegna {
					t.Errorf("got %s", m.Kind)
				}
				opensslVerify(t, m.Raw, p.a.caFile)
			}
			got := p.a.kinds(t, id)
			for _, k := range tt.want {
				if !slices.Contains(got, k) {
					t.Errorf("ledger %v lacks %s", got, k)
				}
			}
			// A restart does not repeat them.
			p.a.stop()
			p.a.start(t, startOptions{index: p.index, clock: p.clock, peers: []*testGestore{p.b},
				routes: map[string]string{p.b.domain: p.b.ricezione}})
			n, err := p.a.srv.Track(context.Background())
			if err != nil || n != 0 {
				t.Errorf("Track after restart: %d avvisi, %v; want none", n, err)
			}
		})
	}
}

func ledgerKind(k ledger.Kind) string { return string(k) }

// TestReceiptForms: the ricevuta di avvenuta consegna is completa for a
// To recipient, sintetica for a Cc one, breve when the sender asks for it
// (X-TipoRicevuta); a full mailbox gets the avviso di mancata consegna.
func TestReceiptForms(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	cc := "carla@pec.beta.test"
	full := "piena@pec.beta.test"
	p.b.addMailbox(t, lucia, pw, 0)
	p.b.addMailbox(t, cc, pw, 0)
	p.b.addMailbox(t, full, pw, 100)

	withAttachment := "X-TipoRicevuta: breve\n" + strings.Replace(message(mario, lucia, "", "Breve"),
		"Content-Type: text/plain; charset=utf-8\n\nBuongiorno,\nin allegato nulla.\n",
		"Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nTesto\n--b1\n"+
			"Content-Type: application/pdf; name=contratto.pdf\nContent-Disposition: attachment; filename=contratto.pdf\n"+
			"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b1--\n", 1)
	tests := []struct {
		name  string
		rcpts []string
		msg   string
		want  []pec.Kind
	}{
		{"To and Cc", []string{lucia, cc}, message(mario, lucia, cc, "Completa e sintetica"), []pec.Kind{pec.KindConsegnaCompleta, pec.KindConsegnaSintetica}},
		{"breve", []string{lucia}, withAttachment, []pec.Kind{pec.KindConsegnaBreve}},
		{"over quota", []string{full}, message(mario, full, "", "Casella piena"), []pec.Kind{pec.KindMancataConsegna}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(p.a.messages(t, mario))
			if err := p.a.submit(t, mario, pw, tt.rcpts, tt.msg); err != nil {
				t.Fatal(err)
			}
			want := 1 + len(tt.want) // the accettazione, then one per recipient
			waitFor(t, "ricevute", 20*time.Second, func() (bool, error) {
				return len(p.a.messages(t, mario)) >= before+want, nil
			})
			got := kindsOf(p.a.parsed(t, mario)[before:])
			for _, k := range tt.want {
				if !slices.Contains(got, k) {
					t.Errorf("ricevute %v lack %s", got, k)
				}
			}
			for _, m := range p.a.parsed(t, mario)[before:] {
				if m.Kind == pec.KindConsegnaBreve && !bytes.Contains(m.Raw, []byte("contratto.pdf.hash")) {
					t.Error("the ricevuta breve does not replace the attachment with its hash")
				}
				if m.Kind == pec.KindMancataConsegna && !strings.Contains(m.Daticert.ErroreEsteso, "piena") {
					t.Errorf("mancata consegna for a full mailbox says %q", m.Daticert.ErroreEsteso)
				}
			}
		})
	}
}

// TestHostileHeaders: a subject that is not UTF-8, an over-long one and a
// Message-ID with spaces do not stop a message: the ledger keeps them
// cleaned, the original travels unchanged.
func TestHostileHeaders(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	// The long subject is folded: SMTP lines stay within 1000 bytes.
	subjects := []string{"Fattura \xff\xfe n. 3", strings.Repeat("molto lungo\n ", 1000)}
	for _, subj := range subjects {
		msg := strings.Replace(message(mario, lucia, "", subj), "Message-ID: <", "Message-ID: <con spazi ", 1)
		if err := p.a.submit(t, mario, pw, []string{lucia}, msg); err != nil {
			t.Fatalf("submit with subject %.20q: %v", subj, err)
		}
	}
	waitFor(t, "both buste", 20*time.Second, func() (bool, error) { return len(p.b.messages(t, lucia)) == 2, nil })
}

// TestReceiptToFullMailbox: a ricevuta for a full mailbox is not dropped:
// it waits in the queue until the titolare has room.
func TestReceiptToFullMailbox(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 1) // one byte: nothing fits
	p.b.addMailbox(t, lucia, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Casella del mittente piena")); err != nil {
		t.Fatal(err)
	}
	p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)
	time.Sleep(300 * time.Millisecond)
	if n := len(p.a.messages(t, mario)); n != 0 {
		t.Fatalf("%d messages in a full mailbox", n)
	}
	if p.a.queue.Len() == 0 {
		t.Fatal("the ricevute for the full mailbox are not queued")
	}
	if err := p.a.mailboxes.SetQuota(context.Background(), mario, 0); err != nil {
		t.Fatal(err)
	}
	// The queues' backoff runs on the test clock.
	p.clock.Advance(time.Minute)
	p.a.queue.Kick()
	p.b.queue.Kick()
	p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
}
