package gestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

// memArchive is an archivio di sicurezza in memory for the mailboxes it
// lists, content-addressed like archive/sicurezza.
type memArchive struct {
	mailboxes map[string]bool
	mu        sync.Mutex
	objects   map[string][]byte
	kept      map[string][]pec.Kind // mailbox -> kinds archived for it
}

func (a *memArchive) Archive(_ context.Context, m ArchivedMessage) (string, error) {
	if !a.mailboxes[strings.ToLower(m.Mailbox)] {
		return "", nil
	}
	sum := sha256.Sum256(m.Message)
	key := "sicurezza/" + hex.EncodeToString(sum[:])
	a.mu.Lock()
	defer a.mu.Unlock()
	a.objects[key] = bytes.Clone(m.Message)
	a.kept[strings.ToLower(m.Mailbox)] = append(a.kept[strings.ToLower(m.Mailbox)], m.Kind)
	return key, nil
}

// TestArchivioSameGestore: between two mailboxes of the same gestore that
// both have the archivio di sicurezza, the ricevuta di avvenuta consegna
// is kept for the mittente, and every archived entry's key holds the bytes
// whose SHA-256 the entry records (the consegna's key used to be the
// busta's, so the export of the ricevuta failed).
func TestArchivioSameGestore(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	anna := "anna@pec.alfa.test"
	arch := &memArchive{mailboxes: map[string]bool{mario: true, anna: true}, objects: map[string][]byte{}, kept: map[string][]pec.Kind{}}
	p := newPair(t, startOptions{archive: arch})
	p.a.addMailbox(t, mario, pw, 0)
	p.a.addMailbox(t, anna, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{anna}, message(mario, anna, "", "Interna")); err != nil {
		t.Fatal(err)
	}
	got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
	id := first(got, pec.KindAccettazione).Daticert.Identificativo
	p.a.waitKinds(t, anna, pec.KindBustaTrasporto)

	entries, err := p.a.srv.entriesOf(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	arch.mu.Lock()
	defer arch.mu.Unlock()
	archived := map[ledger.Kind]bool{}
	for _, e := range entries {
		if e.ArchiveKey == "" {
			continue
		}
		archived[e.Kind] = true
		obj, ok := arch.objects[e.ArchiveKey]
		if !ok {
			t.Errorf("%s: archive key %s holds nothing", e.Kind, e.ArchiveKey)
			continue
		}
		if sum := sha256.Sum256(obj); !bytes.Equal(sum[:], e.SHA256) {
			t.Errorf("%s: archive key %s holds bytes with SHA-256 %x, the entry records %x", e.Kind, e.ArchiveKey, sum, e.SHA256)
		}
	}
	for _, k := range []ledger.Kind{ledger.KindAccettazione, ledger.KindPostaCertificata, ledger.KindAvvenutaConsegna} {
		if !archived[k] {
			t.Errorf("the %s entry has no archive key", k)
		}
	}
	if !contains(arch.kept[mario], pec.KindConsegnaCompleta) {
		t.Errorf("mario's archivio keeps %v, no ricevuta di avvenuta consegna", arch.kept[mario])
	}
	if !contains(arch.kept[anna], pec.KindBustaTrasporto) {
		t.Errorf("anna's archivio keeps %v, no busta di trasporto", arch.kept[anna])
	}
}

func contains(ks []pec.Kind, k pec.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
