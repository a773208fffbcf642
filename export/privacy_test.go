package export_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
)

// A titolare's log holds their own transactions as mittente and, as
// destinatario, only what reached them (export.Concerns).
func TestConcerns(t *testing.T) {
	t.Parallel()
	const a, b, c = "anna@pec.alfa.test", "bruno@pec.alfa.test", "carla@pec.alfa.test"
	to := func(rcpts ...string) []ledger.Recipient {
		var r []ledger.Recipient
		for _, x := range rcpts {
			r = append(r, ledger.Recipient{Address: x, Tipo: ledger.TipoCertificato})
		}
		return r
	}
	entry := func(kind ledger.Kind, details map[string]string, rcpts ...string) *ledger.Entry {
		return &ledger.Entry{Event: ledger.Event{Kind: kind, Identificativo: "id", Mittente: a, Destinatari: to(rcpts...), Oggetto: "segreto", Details: details}}
	}
	consegna := func(r string) map[string]string { return map[string]string{"destinatario": r} }
	cases := []struct {
		name    string
		e       *ledger.Entry
		a, b, c bool // whether anna (mittente), bruno and carla see it
	}{
		{"accettazione", entry(ledger.KindAccettazione, nil, b), true, false, false},
		{"non accettazione", entry(ledger.KindNonAccettazione, map[string]string{"errore": "altro"}, b), true, false, false},
		{"non accettazione per virus", entry(ledger.KindNonAccettazione, map[string]string{"errore": "virus"}, b), true, false, false},
		{"busta di trasporto", entry(ledger.KindPostaCertificata, nil, b), true, false, false},
		{"presa in carico for bruno", entry(ledger.KindPresaInCarico, map[string]string{"ricezione": b + " " + c}, b, c), true, true, true},
		{"presa in carico for carla only", entry(ledger.KindPresaInCarico, map[string]string{"ricezione": c}, b, c), true, false, true},
		{"avvenuta consegna to bruno", entry(ledger.KindAvvenutaConsegna, consegna(b), b), true, true, false},
		{"avvenuta consegna to bruno, in capitals", entry(ledger.KindAvvenutaConsegna, consegna("BRUNO@pec.alfa.test"), b), true, true, false},
		{"avvenuta consegna to carla", entry(ledger.KindAvvenutaConsegna, consegna(c), b, c), true, false, true},
		{"avvenuta consegna without a consegna", entry(ledger.KindAvvenutaConsegna, nil, b), true, false, false},
		{"avvenuta consegna to a non-destinatario", entry(ledger.KindAvvenutaConsegna, consegna(c), b), true, false, false},
		{"errore consegna", entry(ledger.KindErroreConsegna, consegna(b), b), true, false, false},
		{"preavviso 12h", entry(ledger.KindPreavvisoErroreConsegna12, consegna(b), b), true, false, false},
		{"preavviso 24h", entry(ledger.KindPreavvisoErroreConsegna24, consegna(b), b), true, false, false},
		{"rilevazione virus", entry(ledger.KindRilevazioneVirus, consegna(b), b), true, false, false},
		{"busta di anomalia", entry(ledger.KindBustaAnomalia, nil, b), true, true, false},
		{"system event", &ledger.Entry{Event: ledger.Event{Kind: ledger.KindExport, Mittente: a, Destinatari: to(b), Actor: "operator:olga"}}, false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range []struct {
				mailbox string
				want    bool
			}{{a, tc.a}, {"Anna@pec.alfa.test", tc.a}, {b, tc.b}, {c, tc.c}} {
				if got := export.Concerns(tc.e, w.mailbox); got != w.want {
					t.Errorf("Concerns(%s) = %v, want %v", w.mailbox, got, w.want)
				}
			}
		})
	}
}

// TestExtractPrivacy: the sender's non accettazione to a recipient is not
// in the recipient's extract, the avvenuta consegna is; a third mailbox
// sees nothing; the sender sees everything.
func TestExtractPrivacy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	const a, b, c = "anna@pec.alfa.test", "bruno@pec.alfa.test", "carla@pec.alfa.test"
	base := time.Now().Add(-time.Minute)
	ev := func(kind ledger.Kind, id, oggetto string, details map[string]string) ledger.Event {
		base = base.Add(time.Millisecond)
		return ledger.Event{Kind: kind, Identificativo: id, Time: base, Mittente: a, Oggetto: oggetto, Gestore: "Alfa PEC S.p.A.",
			Destinatari: []ledger.Recipient{{Address: b, Tipo: ledger.TipoCertificato}}, SHA256: make([]byte, 32), Details: details}
	}
	events := []ledger.Event{
		ev(ledger.KindNonAccettazione, "opec-rifiutato@pec.alfa.test", "Rifiutato", map[string]string{"errore": "altro"}),
		ev(ledger.KindNonAccettazione, "opec-virus@pec.alfa.test", "Con virus", map[string]string{"errore": "virus", "virus": "Eicar-Signature"}),
		ev(ledger.KindAccettazione, "opec-ok@pec.alfa.test", "Consegnato", nil),
		ev(ledger.KindPostaCertificata, "opec-ok@pec.alfa.test", "Consegnato", nil),
		ev(ledger.KindPresaInCarico, "opec-ok@pec.alfa.test", "Consegnato", map[string]string{"ricezione": b}),
		ev(ledger.KindAvvenutaConsegna, "opec-ok@pec.alfa.test", "Consegnato", map[string]string{"destinatario": b}),
		ev(ledger.KindErroreConsegna, "opec-perso@pec.alfa.test", "Perso", map[string]string{"destinatario": b, "errore": "altro"}),
	}
	seqs, err := f.ledger.Append(ctx, events...)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute) // a bound on a hang, not on speed
	for {
		cp, err := f.ledger.LatestCheckpoint(ctx)
		if err == nil && cp.Size > seqs[len(seqs)-1] && !cp.Pending() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no timestamped checkpoint")
		}
		time.Sleep(20 * time.Millisecond)
	}
	type seen struct{ id, kind string }
	cases := []struct {
		mailbox string
		want    []seen
	}{
		{a, []seen{{"opec-rifiutato@pec.alfa.test", "non-accettazione"}, {"opec-virus@pec.alfa.test", "non-accettazione"},
			{"opec-ok@pec.alfa.test", "accettazione"}, {"opec-ok@pec.alfa.test", "posta-certificata"}, {"opec-ok@pec.alfa.test", "presa-in-carico"},
			{"opec-ok@pec.alfa.test", "avvenuta-consegna"}, {"opec-perso@pec.alfa.test", "errore-consegna"}}},
		{b, []seen{{"opec-ok@pec.alfa.test", "presa-in-carico"}, {"opec-ok@pec.alfa.test", "avvenuta-consegna"}}},
		{c, nil},
	}
	for _, tc := range cases {
		t.Run(tc.mailbox, func(t *testing.T) {
			x, err := export.Extract(ctx, export.ExtractOptions{Ledger: f.ledger, Mailbox: tc.mailbox,
				From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
			if err != nil {
				t.Fatal(err)
			}
			var doc export.ExtractDoc
			if err := json.Unmarshal(x.File(export.FileExtract), &doc); err != nil {
				t.Fatal(err)
			}
			// BUNDLE.md: entries is an array, possibly empty, never null
			// (verify_proof.py iterates it).
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(x.File(export.FileExtract), &raw); err != nil || !strings.HasPrefix(string(raw["entries"]), "[") {
				t.Errorf("extract.json entries: %s (%v)", raw["entries"], err)
			}
			var got []seen
			for _, xe := range doc.Entries {
				e, err := ledger.DecodeEntry([]byte(xe.Entry))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, seen{e.Identificativo, string(e.Kind)})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("extract of %s:\n got %v\nwant %v", tc.mailbox, got, tc.want)
			}
			for _, name := range []string{export.FileExtractCSV, export.FileExtractLog, export.FileExtractHTML} {
				body := string(x.File(name))
				for _, subject := range []string{"Rifiutato", "Con virus", "Perso"} {
					if tc.mailbox != a && strings.Contains(body, subject) {
						t.Errorf("%s of %s names the subject %q of a message that never reached it", name, tc.mailbox, subject)
					}
				}
			}
		})
	}
}
