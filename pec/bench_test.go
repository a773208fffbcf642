package pec

import (
	"testing"
	"time"

	"github.com/custode/custode/pec/smime"
)

// BenchmarkAccettazione builds and signs a ricevuta di accettazione with
// the gestore's RSA-2048 key: the cost the punto di accesso pays for each
// message, besides the busta.
func BenchmarkAccettazione(b *testing.B) {
	g := newGestore(b)
	tx := newTransaction(b, g)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Accettazione(tx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBustaTrasporto builds and signs a busta di trasporto carrying
// the test original.
func BenchmarkBustaTrasporto(b *testing.B) {
	g := newGestore(b)
	tx := newTransaction(b, g)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.BustaTrasporto(tx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseVerifyBusta parses a busta di trasporto and verifies its
// signature and chain: the cost the punto di ricezione pays for each
// incoming busta.
func BenchmarkParseVerifyBusta(b *testing.B) {
	busta, _, _ := builtMessages(b)
	opts := smime.VerifyOptions{Roots: devRoots(b), CurrentTime: time.Now()}
	b.SetBytes(int64(len(busta.Message)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(busta.Message, ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Verify(opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseBusta parses a busta di trasporto without verifying it.
func BenchmarkParseBusta(b *testing.B) {
	busta, _, _ := builtMessages(b)
	b.SetBytes(int64(len(busta.Message)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(busta.Message, ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
