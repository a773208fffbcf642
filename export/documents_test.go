package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

// appendCovered appends ev and waits for a timestamped checkpoint that
// covers it.
func (f *fixture) appendCovered(t *testing.T, ev ledger.Event) uint64 {
	t.Helper()
	ctx := context.Background()
	seqs, err := f.ledger.Append(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute) // a bound on a hang, not on speed
	for {
		cp, err := f.ledger.LatestCheckpoint(ctx)
		if err == nil && cp.Size > seqs[0] && !cp.Pending() {
			return seqs[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("no timestamped checkpoint")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func consegnaEvent(subject string, signed []byte, key string) ledger.Event {
	sum := sha256.Sum256(signed)
	return ledger.Event{Kind: ledger.KindAvvenutaConsegna, Identificativo: "opec210.20261203.1@pec.alfa.test", ClientMessageID: "<7@client>",
		Time: time.Now(), Mittente: "mario@pec.alfa.test", Oggetto: subject, Gestore: "Beta PEC S.p.A.", SHA256: sum[:], ArchiveKey: key,
		Destinatari: []ledger.Recipient{{Address: "lucia@pec.beta.test", Tipo: ledger.TipoCertificato}},
		Details:     map[string]string{"destinatario": "lucia@pec.beta.test", "tipo_ricevuta": "completa", "ricevuta_da": "gestore"}}
}

// reproductionText returns the decoded text part of a reproduction and
// its Content-Type, checking the MIME structure on the way.
func reproductionText(t *testing.T, receipt []byte) (string, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(receipt))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := multipart.NewReader(msg.Body, params["boundary"]).NextRawPart()
	if err != nil {
		t.Fatal(err)
	}
	_, params, err = mime.ParseMediaType(signed.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := multipart.NewReader(signed, params["boundary"]).NextRawPart()
	if err != nil {
		t.Fatal(err)
	}
	if cte := text.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("the text part is %q, not quoted-printable", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return string(body), text.Header.Get("Content-Type")
}

// TestReproductionDocuments: a reproduction of an avvenuta consegna that
// another gestore issued is UTF-8, keeps the subject's accents and dash,
// says that the gestore keeping the log attests and who issued the
// original; the attestation says the same, with Rome times and names.
func TestReproductionDocuments(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const subject = "Perché la consegna è già avvenuta – ricorso"
	seq := f.appendCovered(t, consegnaEvent(subject, []byte("the ricevuta Beta signed"), ""))
	b, err := export.Build(context.Background(), export.BundleOptions{Ledger: f.ledger, Store: f.store, Seq: seq,
		Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Reproduction {
		t.Fatal("not a reproduction")
	}
	text, ctype := reproductionText(t, b.File(export.FileReceipt))
	if ctype != "text/plain; charset=utf-8" {
		t.Errorf("the text part is %q", ctype)
	}
	flat := strings.Join(strings.Fields(text), " ")
	for _, want := range []string{
		"Oggetto: " + subject,
		"Il gestore di posta elettronica certificata Alfa PEC S.p.A., che tiene il log, attesta che il messaggio originale (Ricevuta di avvenuta consegna, emesso dal gestore Beta PEC S.p.A.) non è conservato",
		"Questa è una riproduzione",
		"Tipo di ricevuta di consegna: completa",
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the reproduction lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "e'") || strings.Contains(text, "tipo_ricevuta") || strings.Contains(text, "?") {
		t.Errorf("the reproduction has e', raw keys or replaced characters:\n%s", text)
	}
	when := regexp.MustCompile(`Riferimento temporale: \d\d/\d\d/\d{4} \d\d:\d\d:\d\d CES?T \(UTC\+0[12]:00\)`)
	if !when.MatchString(text) {
		t.Errorf("the reproduction's riferimento temporale is not a Rome time with its zone:\n%s", text)
	}
	att := strings.Join(strings.Fields(string(b.File(export.FileAttestation))), " ")
	for _, want := range []string{
		"Il gestore di posta elettronica certificata Alfa PEC S.p.A., che tiene il log, attesta",
		"Il messaggio originale (Ricevuta di avvenuta consegna) è stato emesso dal gestore Beta PEC S.p.A.",
		"Oggetto: " + subject,
	} {
		if !strings.Contains(att, want) {
			t.Errorf("attestation.txt lacks %q:\n%s", want, att)
		}
	}
	if !when.MatchString(string(b.File(export.FileAttestation))) {
		t.Errorf("attestation.txt's riferimento temporale is not a Rome time with its zone")
	}
	var z bytes.Buffer
	if err := b.WriteZip(&z); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, f, z.Bytes()); !rep.OK() {
		t.Errorf("the bundle does not verify:\n%s", failures(rep))
	}

	// custode pec inspect knows it for what it is.

	r, err := pec.Inspect(b.File(export.FileReceipt), pec.InspectOptions{Roots: []*x509.Certificate{f.dev.CA.Certificate}, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Reproduction == nil || r.Reproduction.Identificativo != b.Entry.Identificativo || r.Reproduction.Kind != "avvenuta-consegna" ||
		r.Signature.Verdict != pec.VerdictValid || !strings.Contains(r.String(), "riproduzione dal log") || strings.Contains(r.String(), "non PEC") {
		t.Errorf("pec inspect of the reproduction:\n%s", r)
	}
}

// TestExportArchiveMismatch: an entry whose archive key holds other bytes
// (as the avvenuta consegna of earlier versions, keyed to the busta) is
// exported as a reproduction that says why, instead of failing.
func TestExportArchiveMismatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	busta := []byte("From: posta-certificata@pec.alfa.test\r\nSubject: POSTA CERTIFICATA: x\r\n\r\nla busta\r\n")
	info, err := archive.PutContent(ctx, f.store, "sicurezza/", busta, archive.PutOptions{
		Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: time.Now().AddDate(10, 0, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	seq := f.appendCovered(t, consegnaEvent("Interna", []byte("the ricevuta"), info.Key))
	b, err := export.Build(ctx, export.BundleOptions{Ledger: f.ledger, Store: f.store, Seq: seq,
		Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatalf("export of an entry whose archived object does not match: %v", err)
	}
	if !b.Reproduction || !strings.Contains(b.ArchiveProblem, info.Key) {
		t.Fatalf("Reproduction %v, ArchiveProblem %q", b.Reproduction, b.ArchiveProblem)
	}
	att := strings.Join(strings.Fields(string(b.File(export.FileAttestation))), " ")
	if !strings.Contains(att, "RIPRODUZIONE dal log") || !strings.Contains(att, "non è l'originale di questa voce") {
		t.Errorf("attestation.txt does not say why the receipt is reproduced:\n%s", att)
	}
	text, _ := reproductionText(t, b.File(export.FileReceipt))
	if !strings.Contains(strings.Join(strings.Fields(text), " "), "non è l'originale di questa voce") {
		t.Errorf("the reproduction does not say why:\n%s", text)
	}
	var z bytes.Buffer
	if err := b.WriteZip(&z); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, f, z.Bytes()); !rep.OK() {
		t.Errorf("the bundle does not verify:\n%s", failures(rep))
	}
}
