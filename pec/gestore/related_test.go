package gestore

import (
	"slices"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

// TestEventRelatedOneForm checks that the ledger event of a message holds
// its related identificativi in one form, without angle brackets, whether
// they come from a message we built (Built.MessageID, bare) or from one
// another gestore sent (the Message-ID field, bracketed).
func TestEventRelatedOneForm(t *testing.T) {
	tx := &pec.Transaction{Identificativo: "opec1@pec.a.test", Time: time.Unix(0, 0), Mittente: "a@pec.a.test"}
	ev := event(ledger.KindAvvenutaConsegna, tx, "G", []byte("x"), "<opec2@pec.b.test>", "opec3@pec.a.test", " <opec4@pec.b.test> ", "", "<>")
	if want := []string{"opec2@pec.b.test", "opec3@pec.a.test", "opec4@pec.b.test"}; !slices.Equal(ev.Related, want) {
		t.Errorf("Related = %q, want %q", ev.Related, want)
	}
}
