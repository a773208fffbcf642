package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
)

// benchServer is the API's handler over the fixture, without a network.
func benchServer(b *testing.B, f *fixture) http.Handler {
	b.Helper()
	opts := f.opts
	opts.PerPrincipal = httpapi.RateLimit{Rate: 1e9, Burst: 1 << 30}
	opts.PerRemote = opts.PerPrincipal
	s, err := httpapi.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	return s.Handler()
}

func serve(b *testing.B, h http.Handler, path string, w who) int {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w(req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s: status %d: %.300s", path, rec.Code, rec.Body.Bytes())
	}
	return rec.Body.Len()
}

// BenchmarkExtract: a titolare's extract of a mailbox with 10,000
// transactions (accettazione and busta each), through the API: Basic
// authentication, the record in the ledger, the extract with 20,000
// inclusion proofs, signing, ZIP.
func BenchmarkExtract(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	const n = 10_000
	start := f.base.Add(time.Hour)
	events := make([]ledger.Event, 0, 1000)
	for i := range n {
		id := fmt.Sprintf("opec-bench-%d@pec.alfa.test", i)
		for j, k := range []ledger.Kind{ledger.KindAccettazione, ledger.KindPostaCertificata} {
			events = append(events, ledger.Event{Kind: k, Identificativo: id, ClientMessageID: fmt.Sprintf("<%d@client>", i),
				Time: start.Add(time.Duration(i)*time.Second + time.Duration(j)*time.Millisecond), Mittente: mailA,
				Destinatari: []ledger.Recipient{{Address: fmt.Sprintf("r%d@pec.beta.test", i%50), Tipo: ledger.TipoCertificato}},
				Oggetto:     fmt.Sprintf("Fattura n. %d", i), Gestore: gestoreName, SHA256: make([]byte, 32)})
		}
		if len(events) == cap(events) {
			if _, err := f.ledger.Append(ctx, events...); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}
	waitCovered(b, f.ledger, f.logs, f.ledger.Head().Size)
	h := benchServer(b, f)
	path := "/v1/exports/extract?from=" + esc(start.Format(time.RFC3339)) + "&to=" + esc(start.Add(n*time.Second).Format(time.RFC3339))
	var size int
	b.ResetTimer()
	for b.Loop() {
		size = serve(b, h, path, f.titolareA())
	}
	b.ReportMetric(float64(size), "zip-bytes")
}

// BenchmarkBundle: the evidence bundle of one receipt through the API,
// reproduced from the log and signed.
func BenchmarkBundle(b *testing.B) {
	f := newFixture(b)
	h := benchServer(b, f)
	path := "/v1/exports/receipt?kind=accettazione&identificativo=" + esc(f.ids["a-to-c"])
	b.ResetTimer()
	for b.Loop() {
		serve(b, h, path, f.titolareA())
	}
}
