package pec

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

func TestNewTransaction(t *testing.T) {
	g := newGestore(t)
	for _, c := range []struct {
		name     string
		msg      string
		wantRef  string
		replyTo  string
		receipt  daticert.ReceiptType
		subject  string
		lfEnding bool
	}{
		{
			name:    "crlf",
			msg:     "From: a@pec.custode.test\r\nMessage-ID: <1@client>\r\nX-Riferimento-Message-ID: <forged@x>\r\nSubject: prova\r\nReply-To: \"Ufficio\" <u@x.example>, v@x.example\r\nX-TipoRicevuta: Breve\r\n\r\ncorpo\r\n",
			wantRef: "<1@client>", replyTo: "u@x.example, v@x.example", receipt: daticert.ReceiptBreve, subject: "prova",
		},
		{
			name:    "lf-folded-message-id",
			msg:     "From: a@pec.custode.test\nMessage-ID:\n <2@client>\nSubject: =?iso-8859-1?q?perch=E9?=\n\ncorpo\n",
			wantRef: "<2@client>", receipt: daticert.ReceiptCompleta, subject: "perché", lfEnding: true,
		},
		{
			name:    "no-message-id",
			msg:     "From: a@pec.custode.test\r\nSubject: senza id\r\nX-TipoRicevuta: qualcosa\r\n\r\ncorpo\r\n",
			receipt: daticert.ReceiptCompleta, subject: "senza id",
		},
		{
			name:    "raw-latin1-subject",
			msg:     "From: a@pec.custode.test\r\nSubject: perch\xe9\x01no\r\n\r\ncorpo\r\n",
			receipt: daticert.ReceiptCompleta, subject: "perché no",
		},
		{
			name:    "header-only",
			msg:     "From: a@pec.custode.test\r\nSubject: solo intestazione",
			receipt: daticert.ReceiptCompleta, subject: "solo intestazione",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			tx, err := g.NewTransaction([]byte(c.msg), testEnvelope, acceptedAt)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`^20251114172632\.test\d{4}@pec\.custode\.test$`).MatchString(tx.Identificativo) {
				t.Errorf("identificativo %q", tx.Identificativo)
			}
			want := c.wantRef
			if want == "" {
				want = "<" + tx.Identificativo + ">"
			}
			if tx.MessageID != want || tx.ReplyTo != c.replyTo || tx.Receipt != c.receipt || tx.Subject != c.subject {
				t.Errorf("MessageID %q ReplyTo %q Receipt %q Subject %q", tx.MessageID, tx.ReplyTo, tx.Receipt, tx.Subject)
			}
			h, body, err := splitHeader(tx.Original)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.values("Message-ID"); len(got) != 1 || got[0] != "<"+tx.Identificativo+">" {
				t.Errorf("Message-ID fields %q", got)
			}
			if got := h.values(HeaderRiferimentoMessageID); len(got) != 1 || got[0] != want {
				t.Errorf("X-Riferimento-Message-ID fields %q", got)
			}
			// Everything else is kept byte for byte.
			if strings.Contains(c.msg, "corpo") && string(tx.Original[body:]) != c.msg[strings.Index(c.msg, "corpo"):] {
				t.Errorf("body changed: %q", tx.Original[body:])
			}
			if c.lfEnding && bytes.Contains(tx.Original, []byte("\r\n")) {
				t.Error("LF message got CRLF lines")
			}
			if !bytes.Contains(tx.Original, []byte("From: a@pec.custode.test")) {
				t.Error("From lost")
			}
		})
	}

	// Errors.
	for _, c := range []struct {
		name string
		msg  string
		env  Envelope
		at   time.Time
	}{
		{"zero-time", testOriginal, testEnvelope, time.Time{}},
		{"no-mittente", testOriginal, Envelope{Destinatari: testEnvelope.Destinatari}, acceptedAt},
		{"no-destinatari", testOriginal, Envelope{Mittente: "a@b.example"}, acceptedAt},
		{"bad-tipo", testOriginal, Envelope{Mittente: "a@b.example", Destinatari: []daticert.Destinatario{{Address: "c@d", Tipo: "boh"}}}, acceptedAt},
		{"no-header", "non è un messaggio", testEnvelope, acceptedAt},
	} {
		if _, err := g.NewTransaction([]byte(c.msg), c.env, c.at); err == nil || !strings.HasPrefix(err.Error(), "pec: ") {
			t.Errorf("%s: error %v", c.name, err)
		}
	}
}

func TestReceiptFor(t *testing.T) {
	g := newGestore(t)
	tx := newTransaction(t, g)
	for _, c := range []struct {
		asked     daticert.ReceiptType
		recipient string
		want      daticert.ReceiptType
	}{
		{daticert.ReceiptCompleta, anna, daticert.ReceiptCompleta},
		{daticert.ReceiptCompleta, "ANNA.Bianchi@pec.altro.test", daticert.ReceiptCompleta},
		{daticert.ReceiptCompleta, ufficio, daticert.ReceiptCompleta},
		{daticert.ReceiptCompleta, legale, daticert.ReceiptSintetica}, // only in Cc
		{daticert.ReceiptCompleta, "ignoto@x.example", daticert.ReceiptCompleta},
		{"", legale, daticert.ReceiptSintetica},
		{daticert.ReceiptBreve, anna, daticert.ReceiptBreve},
		{daticert.ReceiptSintetica, anna, daticert.ReceiptSintetica},
	} {
		x := *tx
		x.Receipt = c.asked
		if got := x.ReceiptFor(c.recipient); got != c.want {
			t.Errorf("asked %q, %s: %s, want %s", c.asked, c.recipient, got, c.want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	g := newGestore(t)
	tx := newTransaction(t, g)
	noOriginal := *tx
	noOriginal.Original = nil
	zero := *tx
	zero.Time = time.Time{}
	badID := *tx
	badID.Identificativo = "<x@y>"
	for _, c := range []struct {
		name  string
		build func() (*Built, error)
	}{
		{"zero-time", func() (*Built, error) { return g.Accettazione(&zero) }},
		{"bad-identificativo", func() (*Built, error) { return g.Accettazione(&badID) }},
		{"busta-without-original", func() (*Built, error) { return g.BustaTrasporto(&noOriginal) }},
		{"completa-without-original", func() (*Built, error) { return g.AvvenutaConsegna(&noOriginal, anna, daticert.ReceiptCompleta) }},
		{"breve-not-asked", func() (*Built, error) { return g.AvvenutaConsegna(tx, anna, daticert.ReceiptBreve) }},
		{"unknown-form", func() (*Built, error) { return g.AvvenutaConsegna(tx, anna, "lunga") }},
		{"recipient-not-destinatario", func() (*Built, error) { return g.AvvenutaConsegna(tx, "x@y.example", daticert.ReceiptSintetica) }},
		{"empty-reason", func() (*Built, error) { return g.NonAccettazione(tx, " \r\n") }},
		{"unnamed-virus", func() (*Built, error) { return g.NonAccettazioneVirus(tx, "") }},
		{"bad-timeout", func() (*Built, error) { return g.PreavvisoMancataConsegna(tx, anna, 6) }},
		{"presa-in-carico-stranger", func() (*Built, error) { return g.PresaInCarico(tx, []string{"x@y.example"}, receipt) }},
		{"presa-in-carico-no-mailbox", func() (*Built, error) { return g.PresaInCarico(tx, []string{anna}, "") }},
		{"mancata-consegna-virus-errore", func() (*Built, error) { return g.MancataConsegna(tx, anna, daticert.ErroreVirus, "virus") }},
		{"anomalia-no-reason", func() (*Built, error) {
			return g.BustaAnomalia(Anomalia{Received: []byte(testOriginal), Time: acceptedAt})
		}},
		{"anomalia-no-sender", func() (*Built, error) {
			return g.BustaAnomalia(Anomalia{Received: []byte("Subject: x\r\n\r\ny"), Time: acceptedAt, Reason: "r"})
		}},
	} {
		b, err := c.build()
		if err == nil || b != nil {
			t.Errorf("%s: built, want an error", c.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "pec: ") {
			t.Errorf("%s: error %q lacks the pec: prefix", c.name, err)
		}
	}
}

func TestNewGestore(t *testing.T) {
	s := mustPKI(t)
	signer := &smime.Signer{Key: s.Gestore.Key, Certificate: s.Gestore.Certificate, Chain: s.Gestore.Chain}
	for _, c := range []struct {
		name, provider, domain string
		signer                 *smime.Signer
		ids                    IDSource
	}{
		{"no-name", "", testDomain, signer, seqIDs()},
		{"bad-domain", testProvider, "a b", signer, seqIDs()},
		{"other-domain", testProvider, "pec.altro.test", signer, seqIDs()},
		{"no-signer", testProvider, testDomain, nil, seqIDs()},
		{"no-ids", testProvider, testDomain, signer, nil},
	} {
		if _, err := NewGestore(c.provider, c.domain, c.signer, c.ids); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	g, err := NewGestore(testProvider, "PEC.Custode.TEST", signer, RandomIDs(nil))
	if err != nil {
		t.Fatal(err)
	}
	if g.Address() != "posta-certificata@pec.custode.test" || g.Name() != testProvider || g.Domain() != testDomain {
		t.Errorf("gestore %q %q %q", g.Name(), g.Domain(), g.Address())
	}
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id, err := g.NewMsgID(acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^20251114172632\.[0-9a-f]{32}@pec\.custode\.test$`).MatchString(id) || seen[id] {
			t.Fatalf("msgid %q (repeated: %v)", id, seen[id])
		}
		seen[id] = true
	}
	var zero Gestore
	if _, err := zero.Accettazione(newTransaction(t, g)); err == nil {
		t.Error("the zero Gestore built a message")
	}
	if _, err := zero.BustaAnomalia(Anomalia{Received: []byte(testOriginal), Time: acceptedAt, Reason: "r"}); err == nil {
		t.Error("the zero Gestore built a busta di anomalia")
	}
	if _, err := (*Gestore)(nil).NewMsgID(acceptedAt); err == nil {
		t.Error("a nil Gestore made a msgid")
	}
	bad, _ := NewGestore(testProvider, testDomain, signer, IDFunc(func(time.Time) (string, error) { return "a b", nil }))
	if _, err := bad.NewMsgID(acceptedAt); err == nil {
		t.Error("an IDSource returning a space was accepted")
	}
	failing, _ := NewGestore(testProvider, testDomain, signer, IDFunc(func(time.Time) (string, error) { return "", errors.New("no entropy") }))
	if _, err := failing.Accettazione(newTransaction(t, g)); err == nil || !strings.Contains(err.Error(), "no entropy") {
		t.Errorf("failing IDSource: %v", err)
	}
}

// TestSummerTime checks the zona of the riferimento temporale in summer.
func TestSummerTime(t *testing.T) {
	g := newGestore(t)
	tx, err := g.NewTransaction([]byte(testOriginal), testEnvelope, summerAt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Accettazione(tx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b.Message, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Daticert.Time.Format("02/01/2006 15:04:05 -0700"); got != "03/07/2025 10:05:09 +0200" {
		t.Errorf("daticert data %s", got)
	}
	if got := m.Header.Date.Format(time.RFC1123Z); got != "Thu, 03 Jul 2025 10:05:09 +0200" {
		t.Errorf("Date %s", got)
	}
	res, err := smime.Verify(b.Message, smime.VerifyOptions{Roots: devRoots(t), CurrentTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(res.Signed, []byte("Il giorno 03/07/2025 alle ore 10:05:09 (+0200) il messaggio con Oggetto")) {
		t.Error("the text does not state the riferimento temporale in summer time")
	}
}

func TestBreve(t *testing.T) {
	const pdf = "JVBERi0xLjQKJcTl8uXrp/Og0MTGCjEgMCBvYmoKPDwgL1R5cGUgL0NhdGFsb2cgPj4KZW5kb2Jq\r\n" +
		"CnRyYWlsZXIKPDwgL1Jvb3QgMSAwIFIgPj4KJSVFT0YK"
	sum := func(s string) string { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

	out, err := Breve([]byte(testOriginal))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(testOriginal,
		"Content-Type: application/pdf; name=\"contratto.pdf\"\r\nContent-Disposition: attachment; filename=\"contratto.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"+pdf,
		"Content-Type: text/plain; charset=us-ascii; name=contratto.pdf.hash\r\nContent-Disposition: attachment; filename=contratto.pdf.hash\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"+sum(pdf), 1)
	want = strings.Replace(want,
		"Content-Type: message/rfc822\r\n\r\nFrom: ufficio@example.com\r\nSubject: bozza\r\n\r\nBozza del contratto.",
		"Content-Type: text/plain; charset=us-ascii; name=messaggio.eml.hash\r\nContent-Disposition: attachment; filename=messaggio.eml.hash\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"+
			sum("From: ufficio@example.com\r\nSubject: bozza\r\n\r\nBozza del contratto."), 1)
	if string(out) != want {
		t.Errorf("Breve:\n%s\nwant:\n%s", out, want)
	}
	// The same message with LF endings hashes the same (canonical form).
	lf, err := Breve([]byte(strings.ReplaceAll(testOriginal, "\r\n", "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(lf, []byte(sum(pdf))) {
		t.Error("LF original: hash differs")
	}

	// S/MIME originals: the signature part and pkcs7-mime are kept.
	signed := "From: a@b\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n" +
		"--s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nciao\r\n" +
		"--m\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\r\nPDF\r\n--m--\r\n" +
		"--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n--s--\r\n"
	out, err = Breve([]byte(signed))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB")) || !bytes.Contains(out, []byte("a.pdf.hash")) || bytes.Contains(out, []byte("\r\nPDF\r\n")) {
		t.Errorf("signed original:\n%s", out)
	}
	enveloped := "From: a@b\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n"
	if out, err := Breve([]byte(enveloped)); err != nil || string(out) != enveloped {
		t.Errorf("pkcs7-mime original: %v\n%s", err, out)
	}

	// A message that is one attachment keeps its other fields.
	single := "From: a@b\r\nSubject: solo\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n"
	out, err = Breve([]byte(single))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "From: a@b\r\nSubject: solo\r\nContent-Type: text/plain; charset=us-ascii; name=x.pdf.hash\r\n") ||
		!strings.HasSuffix(string(out), sum("QUJD\r\n")) {
		t.Errorf("single attachment:\n%s", out)
	}
	if _, err := Breve(nested(1000, false)); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Breve of a 1000-deep message: %v", err)
	}
}

// TestBuildDifficultOriginal builds from an original that old or careless
// clients send: LF line endings, raw 8-bit header fields (UTF-8 in To,
// ISO-8859-1 in Subject), no Message-ID and a line longer than SMTP
// carries, which makes postacert.eml base64.
func TestBuildDifficultOriginal(t *testing.T) {
	g := newGestore(t)
	orig := "From: mario.rossi@pec.custode.test\n" +
		"To: \"Anna Bianchì\" <anna.bianchi@pec.altro.test>\n" +
		"Subject: perch\xe9 no\n" +
		"Content-Type: text/plain; charset=utf-8\n\n" +
		strings.Repeat("lunga ", 300) + "\n"
	tx, err := g.NewTransaction([]byte(orig), testEnvelope, acceptedAt)
	if err != nil {
		t.Fatal(err)
	}
	busta, err := g.BustaTrasporto(tx)
	if err != nil {
		t.Fatal(err)
	}
	if err := opensslVerify(t, busta.Message); err != nil {
		t.Error(err)
	}
	m, err := Parse(busta.Message, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindBustaTrasporto || !m.Consistent() || m.Header.Subject != "POSTA CERTIFICATA: perché no" ||
		!strings.Contains(decodeWords(m.Header.To), "Anna Bianchì") {
		t.Errorf("Kind %s, problems %q, Subject %q, To %q", m.Kind, m.Problems, m.Header.Subject, m.Header.To)
	}
	if !bytes.Equal(m.Original, tx.Original) {
		t.Error("postacert.eml differs from the original")
	}
	rx, err := TransactionFromBusta(m, deliveredAt)
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []daticert.ReceiptType{daticert.ReceiptCompleta, daticert.ReceiptSintetica} {
		b, err := g.AvvenutaConsegna(rx, anna, form)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := Parse(b.Message, ParseOptions{}); err != nil || !m.Consistent() {
			t.Errorf("%s: %v %q", form, err, m.Problems)
		}
	}
}
