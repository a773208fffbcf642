package gestore

import (
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
)

func TestSanitize(t *testing.T) {
	valid := ledger.Event{
		Kind: ledger.KindAccettazione, Identificativo: "id@pec.alfa.test", Time: time.Now(),
		Mittente: mario, Gestore: "Alfa", Destinatari: []ledger.Recipient{{Address: lucia, Tipo: ledger.TipoCertificato}},
	}
	tests := []struct {
		name   string
		change func(*ledger.Event)
	}{
		{"subject not UTF-8", func(e *ledger.Event) { e.Oggetto = "Fattura \xff\xfe" }},
		{"NUL in subject", func(e *ledger.Event) { e.Oggetto = "a\x00b" }},
		{"subject too long", func(e *ledger.Event) { e.Oggetto = strings.Repeat("è", ledger.MaxFieldBytes) }},
		{"empty mittente", func(e *ledger.Event) { e.Mittente = "" }},
		{"recipient not UTF-8", func(e *ledger.Event) { e.Destinatari[0].Address = "x\xff@pec.beta.test" }},
		{"detail with NUL", func(e *ledger.Event) { e.Details = map[string]string{"motivo": "x\x00y"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := valid
			ev.Destinatari = append([]ledger.Recipient(nil), valid.Destinatari...)
			tt.change(&ev)
			if ev.Validate() == nil {
				t.Fatal("the ledger accepts the event as it is: the case tests nothing")
			}
			sanitize(&ev)
			if err := ev.Validate(); err != nil {
				t.Errorf("after sanitize: %v", err)
			}
		})
	}
}
