package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/custode/custode/policies"
)

func TestArchivioFromPolicy(t *testing.T) {
	p, err := policies.Load(filepath.Join("..", "..", "..", "policies", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := ArchivioFromPolicy(p, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	if len(got) != 1 || got[0].Mailbox != "ufficio@pec.custode.test" || got[0].Quota != 1<<30 ||
		!got[0].ContractEnd.Equal(time.Date(2031, 12, 31, 0, 0, 0, 0, time.UTC)) || got[0].Retention < 3650*24*time.Hour {
		t.Errorf("archivio di sicurezza from the default policy: %+v", got)
	}
}
