package export_test

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// largeLedger is a ledger of many PEC entries, every one covered by a
// timestamped checkpoint, built once for the benchmarks that need it.
type largeLedger struct {
	dir    string
	ledger *ledger.Ledger
	signer *smime.Signer
	caPEM  []byte
	size   uint64
}

var (
	largeOnce sync.Once
	large     *largeLedger
	largeErr  error
)

// benchLedgerEntries is the size of the benchmarks' large ledger: 200,000
// by default, CUSTODE_BENCH_LEDGER_ENTRIES to change it (10000000 for the
// figure the closing notes give).
func benchLedgerEntries() (int, error) {
	v := os.Getenv("CUSTODE_BENCH_LEDGER_ENTRIES")
	if v == "" {
		return 200_000, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		return 0, fmt.Errorf("CUSTODE_BENCH_LEDGER_ENTRIES=%q: want a number of at least 1000", v)
	}
	return n, nil
}

// TestMain removes the benchmarks' large ledger, if one was built, and the
// tests' shared tamper kit.
func TestMain(m *testing.M) {
	code := m.Run()
	removeSharedKit()
	if large != nil {
		large.ledger.Close()
		os.RemoveAll(large.dir)
	}
	os.Exit(code)
}

func openLarge(b *testing.B) *largeLedger {
	largeOnce.Do(func() { large, largeErr = buildLarge() })
	if largeErr != nil {
		b.Fatal(largeErr)
	}
	return large
}

func buildLarge() (*largeLedger, error) {
	n, err := benchLedgerEntries()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "custode-bench-ledger-")
	if err != nil {
		return nil, err
	}
	dev, err := pki.NewDevSet("Alfa PEC S.p.A.", "pec.alfa.test", time.Now().Add(-time.Hour))
	if err != nil {
		return nil, err
	}
	caPEM := export.PEMCertificates(dev.CA.Certificate.Raw)
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{Certificate: dev.TSA.Certificate, Signer: dev.TSA.Key,
		Chain: []*x509.Certificate{dev.CA.Certificate}, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}})
	if err != nil {
		return nil, err
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(dir, "ledger"), Checkpoints: &ledger.CheckpointOptions{
		Origin: "pec.alfa.test/custode", Every: 100_000, Interval: time.Second,
		Signer:  &ledger.CMSSigner{Certificate: dev.Gestore.Certificate, Key: dev.Gestore.Key},
		Stamper: a, RetryInterval: 100 * time.Millisecond,
	}})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	const workers, batch = 64, 256
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	per := (n + workers - 1) / workers
	base := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * per; i < min(n, (w+1)*per); {
				evs := make([]ledger.Event, 0, batch)
				for ; i < min(n, (w+1)*per) && len(evs) < batch; i++ {
					evs = append(evs, ledger.Event{Kind: ledger.KindAccettazione,
						Identificativo: fmt.Sprintf("opec001.20261123090000.%08d.01.1.1@pec.alfa.test", i),
						Time:           base.Add(time.Duration(i) * time.Millisecond),
						Mittente:       fmt.Sprintf("titolare%d@pec.alfa.test", i%5000),
						Destinatari:    []ledger.Recipient{{Address: fmt.Sprintf("dest%d@pec.beta.test", i%7919), Tipo: ledger.TipoCertificato}},
						Oggetto:        fmt.Sprintf("Fattura n. %d", i), Gestore: "Alfa PEC S.p.A.", SHA256: make([]byte, 32)})
				}
				if _, err := l.Append(ctx, evs...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	size := l.Head().Size
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		cp, err := l.LatestCheckpoint(ctx)
		if err == nil && cp.Size >= size && !cp.Pending() {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no timestamped checkpoint of %d entries", size)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: ledger of %d entries built in %s in %s\n", size, time.Since(start).Round(time.Second), dir)
	return &largeLedger{dir: dir, ledger: l, size: size, caPEM: caPEM,
		signer: &smime.Signer{Certificate: dev.Gestore.Certificate, Key: dev.Gestore.Key}}, nil
}

// BenchmarkBundleLargeLedger builds the evidence bundle of one receipt,
// chosen at random, on a large ledger (CUSTODE_BENCH_LEDGER_ENTRIES): the
// receipt is reproduced from the log and signed, the proof computed, the
// manifest signed, the ZIP written. It reports p50 and p99 per bundle.
func BenchmarkBundleLargeLedger(b *testing.B) {
	ll := openLarge(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var took []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		seq := rng.Uint64N(ll.size - 1000) // past the checkpoint entries at the end
		bu, err := export.Build(ctx, export.BundleOptions{Ledger: ll.ledger, Seq: seq, Signer: ll.signer, GestoreCA: ll.caPEM, TSACA: ll.caPEM})
		if err != nil {
			b.Fatalf("entry %d: %v", seq, err)
		}
		if err := bu.WriteZip(io.Discard); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[min(len(took)-1, len(took)*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(ll.size), "entries")
}
