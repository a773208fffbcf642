package export

import (
	"testing"

	"github.com/custode/custode/ledger"
)

// TestEntryRowsRelatedOneForm checks that an attestation shows related
// identificativi in one form, whichever an entry holds (older entries keep
// the bracketed form their bytes were written with).
func TestEntryRowsRelatedOneForm(t *testing.T) {
	t.Parallel()
	e := &ledger.Entry{}
	e.Related = []string{"<opec2@pec.b.test>", "opec3@pec.a.test", "opec2@pec.b.test"}
	for _, row := range entryRows(e) {
		if row[0] == "Messaggi collegati" {
			if want := "opec2@pec.b.test, opec3@pec.a.test"; row[1] != want {
				t.Errorf("Messaggi collegati = %q, want %q", row[1], want)
			}
			return
		}
	}
	t.Error("no Messaggi collegati row")
}
