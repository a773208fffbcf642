package ledger

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/tsa"
)

var (
	devOnce sync.Once
	devSet  *pki.DevSet
	devErr  error
)

// testPKI returns one development PKI shared by the tests of this package
// (RSA key generation is slow).
func testPKI(t testing.TB) *pki.DevSet {
	t.Helper()
	devOnce.Do(func() {
		devSet, devErr = pki.NewDevSet("Custode Test PEC S.p.A.", "pec.test.example", time.Now())
	})
	if devErr != nil {
		t.Fatal(devErr)
	}
	return devSet
}

var testPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}

func testAuthority(t testing.TB, now func() time.Time) *tsa.Authority {
	t.Helper()
	return testAuthorityFrom(t, testPKI(t), now)
}

func testAuthorityFrom(t testing.TB, d *pki.DevSet, now func() time.Time) *tsa.Authority {
	t.Helper()
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{
		Certificate: d.TSA.Certificate,
		Signer:      d.TSA.Key,
		Chain:       []*x509.Certificate{d.CA.Certificate},
		Policy:      testPolicy,
		Now:         now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func testCheckpoints(t testing.TB, stamper tsa.Stamper) *CheckpointOptions {
	d := testPKI(t)
	return &CheckpointOptions{
		Origin:        "pec.test.example/custode",
		Every:         100,
		Interval:      50 * time.Millisecond,
		Signer:        &CMSSigner{Certificate: d.Gestore.Certificate, Key: d.Gestore.Key},
		Stamper:       stamper,
		RetryInterval: 20 * time.Millisecond,
	}
}

func openTest(t testing.TB, dir string, cp *CheckpointOptions) *Ledger {
	t.Helper()
	l, err := Open(context.Background(), Options{Dir: dir, Checkpoints: cp, journalSegmentBytes: testSegmentBytes()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testSegmentBytes is the journal segment size of test ledgers: 1 MiB in
// -short mode, where writing and syncing 64 MiB of zeros for each ledger a
// test opens was most of the package's time; the production size
// otherwise.
func testSegmentBytes() int64 {
	if testing.Short() {
		return 1 << 20
	}
	return 0
}

var baseTime = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)

// pecEvent returns a plausible PEC event number i.
func pecEvent(i int) Event {
	kinds := []Kind{KindAccettazione, KindPostaCertificata, KindPresaInCarico, KindAvvenutaConsegna}
	return Event{
		Kind:            kinds[i%len(kinds)],
		Identificativo:  fmt.Sprintf("opec001.20261123093000.%08d.01.1.1@pec.test.example", i/4),
		ClientMessageID: fmt.Sprintf("<%d.client@mua.example>", i/4),
		Time:            baseTime.Add(time.Duration(i) * time.Millisecond),
		Mittente:        fmt.Sprintf("mittente%d@pec.test.example", i%97),
		Destinatari: []Recipient{
			{Address: fmt.Sprintf("dest%d@pec.altro.example", i%89), Tipo: TipoCertificato},
			{Address: "ufficio@example.com", Tipo: TipoEsterno},
		},
		Oggetto: fmt.Sprintf("Fattura n. %d — \"saldo\"", i),
		Related: []string{fmt.Sprintf("opec001.20261123093000.%08d.02.1.1@pec.test.example", i)},
		Gestore: "Custode Test PEC S.p.A.",
		SHA256:  make([]byte, 32),
		Details: map[string]string{"tipo_ricevuta": "completa"},
	}
}
