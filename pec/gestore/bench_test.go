package gestore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

// BenchmarkEndToEnd measures messages per second between two gestori on
// loopback: from the first MAIL FROM to the ricevuta di avvenuta consegna
// in the sender's mailbox, for every message, with 16 clients each on its
// own SMTP connection. Every message costs four RSA signatures (ricevuta
// di accettazione and busta on A; presa in carico and consegna on B),
// three ledger appends and four queue items; compare with
// BenchmarkRSASignBound.
func BenchmarkEndToEnd(b *testing.B) {
	p := newPair(b, startOptions{})
	const clients = 16
	senders := make([]string, clients)
	for i := range clients {
		senders[i] = fmt.Sprintf("s%d@pec.alfa.test", i)
		if err := p.a.mailboxes.AddMailbox(context.Background(), senders[i], pw, 0); err != nil {
			b.Fatal(err)
		}
		if err := p.b.mailboxes.AddMailbox(context.Background(), fmt.Sprintf("r%d@pec.beta.test", i), pw, 0); err != nil {
			b.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.a.dev.CA.Certificate)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.DialStartTLS(p.a.submission, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Auth(sasl.NewPlainClient("", senders[i], pw)); err != nil {
				errs <- err
				return
			}
			to := fmt.Sprintf("r%d@pec.beta.test", i)
			for next.Add(1) <= int64(b.N) {
				msg := strings.ReplaceAll(message(senders[i], to, "", "Bench"), "\n", "\r\n")
				if err := c.SendMail(senders[i], []string{to}, strings.NewReader(msg)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	accepted := time.Since(start)
	// Wait for every ricevuta di avvenuta consegna.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n := 0
		for _, s := range senders {
			mi, err := p.a.mailboxes.Mailbox(context.Background(), s)
			if err != nil {
				b.Fatal(err)
			}
			n += mi.Messages
		}
		if n >= 2*b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d ricevute after 10 minutes", n, 2*b.N)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
}

// BenchmarkRSASignBound measures the signatures per second of one gestore
// key (a ricevuta di accettazione, the cheapest signed message): the bound
// on end-to-end messages per second is this divided by the four
// signatures each message needs on this one machine.
func BenchmarkRSASignBound(b *testing.B) {
	g := newTestGestore(b, "Alfa PEC S.p.A.", "pec.alfa.test")
	pg, err := pec.NewGestore(g.name, g.domain, &smime.Signer{Certificate: g.dev.Gestore.Certificate, Key: g.dev.Gestore.Key}, pec.RandomIDs(nil))
	if err != nil {
		b.Fatal(err)
	}
	env := pec.Envelope{Mittente: mario, Destinatari: []daticert.Destinatario{destinatario(lucia)}}
	tx, err := pg.NewTransaction([]byte(strings.ReplaceAll(message(mario, lucia, "", "Bench"), "\n", "\r\n")), env, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pg.Accettazione(tx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sign/s")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/4, "msg/s-bound")
}
