package httpapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
)

// TestTitolarePrivacy: through the API, a recipient sees the avvenuta
// consegna of a message to them and never the sender's non accettazione
// (nor its subject); a third mailbox sees nothing; the sender sees their
// transactions in full. Entries, single entries and the extract agree.
func TestTitolarePrivacy(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ctx := context.Background()
	const mailC, passC = "carla@pec.alfa.test", "la password di carla"
	if err := f.mail.AddMailbox(ctx, mailC, passC, 0); err != nil {
		t.Fatal(err)
	}
	// anna (sender) to bruno: one refused, one delivered.
	// After the fixture's transactions, and before now: the extract's
	// period runs from start to now.
	start := time.Now().UTC().Add(-30 * time.Second)
	at := start
	ev := func(kind ledger.Kind, id, oggetto string, details map[string]string) ledger.Event {
		at = at.Add(time.Second)
		return ledger.Event{Kind: kind, Identificativo: id, Time: at, Mittente: mailA, Oggetto: oggetto, Gestore: gestoreName,
			Destinatari: []ledger.Recipient{{Address: mailB, Tipo: ledger.TipoCertificato}}, SHA256: make([]byte, 32), Details: details}
	}
	const refused, delivered = "opec-priv-rifiutato@pec.alfa.test", "opec-priv-ok@pec.alfa.test"
	events := []ledger.Event{
		ev(ledger.KindNonAccettazione, refused, "Oggetto riservato", map[string]string{"errore": "virus", "virus": "Eicar-Signature"}),
		ev(ledger.KindAccettazione, delivered, "Oggetto consegnato", nil),
		ev(ledger.KindPostaCertificata, delivered, "Oggetto consegnato", nil),
		ev(ledger.KindAvvenutaConsegna, delivered, "Oggetto consegnato", map[string]string{"destinatario": mailB}),
	}
	seqs, err := f.ledger.Append(ctx, events...)
	if err != nil {
		t.Fatal(err)
	}
	waitCovered(t, f.ledger, f.logs, f.ledger.Head().Size)
	ts := f.server(t, nil)
	from := esc(start.Format(time.RFC3339Nano))

	type seen struct{ id, kind string }
	cases := []struct {
		name string
		who  who
		want []seen
	}{
		{"sender", basic(mailA, passA), []seen{{refused, "non-accettazione"}, {delivered, "accettazione"}, {delivered, "posta-certificata"}, {delivered, "avvenuta-consegna"}}},
		{"recipient", basic(mailB, passB), []seen{{delivered, "avvenuta-consegna"}}},
		{"third mailbox", basic(mailC, passC), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The entries of the period.
			resp, body := get(t, nil, ts.URL+"/v1/entries?from="+from, c.who)
			if resp.StatusCode != 200 {
				t.Fatalf("entries: status %d: %s", resp.StatusCode, body)
			}
			var got []seen
			for _, e := range decodePage(t, body).entries(t) {
				got = append(got, seen{e.Identificativo, string(e.Kind)})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("entries:\n got %v\nwant %v", got, c.want)
			}
			// Each entry by its number, and the refused one by its identificativo.
			for i, e := range events {
				resp, _ := get(t, nil, ts.URL+"/v1/entries/"+strconv.FormatUint(seqs[i], 10), c.who)
				if want := slices.Contains(c.want, seen{e.Identificativo, string(e.Kind)}); (resp.StatusCode == 200) != want {
					t.Errorf("entry %d (%s %s): status %d, visible %v", seqs[i], e.Kind, e.Identificativo, resp.StatusCode, want)
				}
			}
			resp, body = get(t, nil, ts.URL+"/v1/entries?identificativo="+esc(refused), c.who)
			if n := len(decodePage(t, body).Entries); resp.StatusCode != 200 || (n > 0) != (c.name == "sender") {
				t.Errorf("the non accettazione by identificativo: status %d, %d entries", resp.StatusCode, n)
			}
			// The extract.
			resp, body = get(t, nil, ts.URL+"/v1/exports/extract?from="+from, c.who)
			if resp.StatusCode != 200 {
				t.Fatalf("extract: status %d: %s", resp.StatusCode, body)
			}
			var doc export.ExtractDoc
			if err := json.Unmarshal(zipFile(t, body, export.FileExtract), &doc); err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, xe := range doc.Entries {
				e, err := ledger.DecodeEntry([]byte(xe.Entry))
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, seen{e.Identificativo, string(e.Kind)})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("extract:\n got %v\nwant %v", got, c.want)
			}
			if c.name != "sender" && strings.Contains(string(zipFile(t, body, export.FileExtractCSV)), "Oggetto riservato") {
				t.Error("the extract names the subject of a message that never reached the mailbox")
			}
		})
	}
}
