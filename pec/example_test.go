package pec_test

import (
	"crypto/x509"
	"fmt"
	"log"
	"time"

	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
)

// The punto di accesso accepts a message: one transaction, one riferimento
// temporale, a ricevuta di accettazione for the mittente and a busta di
// trasporto for the destinatari. The recipient's side parses the busta and
// answers with a ricevuta di avvenuta consegna.
func Example() {
	dev, err := pki.NewDevSet("Esempio PEC S.p.A.", "pec.esempio.test", time.Now())
	if err != nil {
		log.Fatal(err)
	}
	signer := &smime.Signer{Key: dev.Gestore.Key, Certificate: dev.Gestore.Certificate, Chain: dev.Gestore.Chain}
	// A deterministic source of msgids, for the example; production
	// passes pec.RandomIDs(nil).
	n := 0
	ids := pec.IDFunc(func(at time.Time) (string, error) {
		n++
		return fmt.Sprintf("%s.%d", at.UTC().Format("20060102150405"), n), nil
	})
	g, err := pec.NewGestore("Esempio PEC S.p.A.", "pec.esempio.test", signer, ids)
	if err != nil {
		log.Fatal(err)
	}

	msg := []byte("From: Mario Rossi <mario@pec.esempio.test>\r\n" +
		"To: anna@pec.altro.test\r\n" +
		"Subject: Preventivo\r\n" +
		"Message-ID: <42@client.example>\r\n" +
		"\r\n" +
		"In allegato il preventivo.\r\n")
	env := pec.Envelope{
		Mittente:    "mario@pec.esempio.test",
		Destinatari: []daticert.Destinatario{{Address: "anna@pec.altro.test", Tipo: daticert.DestinatarioCertificato}},
	}
	at := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC) // the riferimento temporale
	tx, err := g.NewTransaction(msg, env, at)
	if err != nil {
		log.Fatal(err)
	}
	ricevuta, err := g.Accettazione(tx)
	if err != nil {
		log.Fatal(err)
	}
	busta, err := g.BustaTrasporto(tx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ricevuta.Kind.Name(), ricevuta.MessageID)
	fmt.Println(busta.Kind.Name(), busta.MessageID)

	// At the punto di consegna.
	m, err := pec.Parse(busta.Message, pec.ParseOptions{})
	if err != nil {
		log.Fatal(err)
	}
	res, err := m.Verify(smime.VerifyOptions{Roots: []*x509.Certificate{dev.CA.Certificate}, CurrentTime: time.Now()})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed by", res.From, "for", m.Daticert.Mittente)
	rx, err := pec.TransactionFromBusta(m, at.Add(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	consegna, err := g.AvvenutaConsegna(rx, "anna@pec.altro.test", rx.ReceiptFor("anna@pec.altro.test"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(consegna.Kind.Name(), consegna.Daticert.Identificativo, consegna.Daticert.Time.In(time.UTC).Format(time.RFC3339))
	// Output:
	// ricevuta di accettazione 20260302093000.2@pec.esempio.test
	// busta di trasporto 20260302093000.1@pec.esempio.test
	// signed by posta-certificata@pec.esempio.test for mario@pec.esempio.test
	// ricevuta di avvenuta consegna completa 20260302093000.1@pec.esempio.test 2026-03-02T09:30:02Z
}
