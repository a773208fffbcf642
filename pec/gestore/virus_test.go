package gestore

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/quarantine"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/clamd"
	"github.com/custode/custode/pec/clamd/clamdtest"
	"github.com/custode/custode/policies"
)

// eicar returns the EICAR anti-virus test file, put together at run time
// so that no file of the repository holds it.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-" + "FILE!$H+H*")
}

func infectedMessage(from, to string) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\nTo: " + to + "\nSubject: Fattura con allegato\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\n\n" +
		"--b1\nContent-Type: text/plain; charset=utf-8\n\nIn allegato.\n" +
		"--b1\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"fattura.com\"\n" +
		"Content-Transfer-Encoding: base64\n\n")
	b.WriteString(base64.StdEncoding.EncodeToString(eicar()))
	b.WriteString("\n--b1--\n")
	return b.String()
}

// TestVirus runs the three virus flows with a real clamd: the punto di
// accesso refuses an infected message (avviso di non accettazione per
// virus); the punto di ricezione of a gestore that finds a virus the
// sender's gestore missed sends the avviso di rilevazione virus, and the
// sender's gestore the avviso di mancata consegna per virus.
func TestVirus(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	socket, _ := clamdtest.Start(t)
	scanner := &clamd.Client{Network: "unix", Address: socket}

	t.Run("punto di accesso", func(t *testing.T) {
		p := newPair(t, startOptions{scanner: scanner})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 || !strings.Contains(se.Message, "Virus found") {
			t.Fatalf("submit: %v, want 554 for a virus", err)
		}
		m := p.a.waitKinds(t, mario, pec.KindNonAccettazioneVirus)[0]
		if m.Daticert.Errore != "virus" || m.Header.VerificaSicurezza != "errore" {
			t.Errorf("avviso: errore %q, X-VerificaSicurezza %q", m.Daticert.Errore, m.Header.VerificaSicurezza)
		}
		opensslVerify(t, m.Raw, p.a.caFile)
		if kinds := p.a.kinds(t, m.Daticert.Identificativo); !slices.Equal(kinds, []string{"non-accettazione"}) {
			t.Errorf("ledger: %v", kinds)
		}
	})

	t.Run("punto di ricezione", func(t *testing.T) {
		p := newPair(t, startOptions{scannerB: scanner})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		if err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia)); err != nil {
			t.Fatalf("submit: %v", err)
		}
		got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindMancataConsegnaVirus)
		m := first(got, pec.KindMancataConsegnaVirus)
		if m.Daticert.Errore != "virus" || m.Daticert.Consegna != lucia {
			t.Errorf("avviso di mancata consegna per virus: errore %q consegna %q", m.Daticert.Errore, m.Daticert.Consegna)
		}
		opensslVerify(t, m.Raw, p.a.caFile)
		id := m.Daticert.Identificativo
		if got := sorted(p.b.kinds(t, id)); !slices.Equal(got, []string{"rilevazione-virus"}) {
			t.Errorf("B's ledger: %v", got)
		}
		want := []string{"accettazione", "errore-consegna", "posta-certificata", "received:rilevazione-virus"}
		if got := sorted(p.a.kinds(t, id)); !slices.Equal(got, want) {
			t.Errorf("A's ledger: %v, want %v", got, want)
		}
		if n := len(p.b.messages(t, lucia)); n != 0 {
			t.Errorf("the infected busta was delivered: %d messages", n)
		}
	})
}

// TestVirusQuarantine: EICAR found by a real clamd, at the punto di
// accesso and at the punto di ricezione, ends in the quarantine on WORM,
// locked in Compliance mode for 30 months from the event, listed and
// exportable; the ledger entry of the virus event names the object's key
// and SHA-256.
func TestVirusQuarantine(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	socket, _ := clamdtest.Start(t)
	scanner := &clamd.Client{Network: "unix", Address: socket}
	ctx := context.Background()
	newQuarantine := func(t *testing.T) (*quarantine.Store, archive.Store) {
		store, err := localstore.Open(filepath.Join(t.TempDir(), "worm"), localstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		q, err := quarantine.New(quarantine.Options{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		return q, store
	}
	// check finds the one record of identificativo at point, and checks
	// the object, its retention, its export and the ledger entries.
	check := func(t *testing.T, q *quarantine.Store, store archive.Store, g *testGestore, identificativo, point string, kind ledger.Kind) {
		t.Helper()
		recs, err := q.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Identificativo != identificativo || recs[0].Point != point || recs[0].Virus == "" {
			t.Fatalf("quarantine: %+v, want one record of %s at %s", recs, identificativo, point)
		}
		r := recs[0]
		if want := policies.MinLogRetention.AddTo(r.Time); !r.RetainUntil.Equal(want) || !r.RetainUntil.After(time.Now().AddDate(0, 29, 0)) {
			t.Errorf("retain until %s, want %s (30 months after %s)", r.RetainUntil, want, r.Time)
		}
		info, err := store.Stat(ctx, r.Key, "")
		if err != nil {
			t.Fatal(err)
		}
		if info.Retention.Mode != archive.Compliance || !info.Retention.RetainUntil.Equal(r.RetainUntil) {
			t.Errorf("the object is locked %s until %s, want COMPLIANCE until %s", info.Retention.Mode, info.Retention.RetainUntil, r.RetainUntil)
		}
		if err := store.Delete(ctx, r.Key, info.VersionID); !errors.Is(err, archive.ErrWORM) {
			t.Errorf("deleting the quarantined message: %v, want ErrWORM", err)
		}
		it, err := q.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(it.Data); hex.EncodeToString(sum[:]) != r.SHA256 || !bytes.Contains(it.Data, []byte(base64.StdEncoding.EncodeToString(eicar()))) {
			t.Errorf("the quarantined message is not the infected one (%d bytes)", len(it.Data))
		}
		var z bytes.Buffer
		if err := q.Export(ctx, r.ID, &z); err != nil {
			t.Fatal(err)
		}
		zr, err := zip.NewReader(bytes.NewReader(z.Bytes()), int64(z.Len()))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			if f.Name == quarantine.FileMessage {
				rc, _ := f.Open()
				b, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(b, it.Data) {
					t.Error("the export's message differs from the stored one")
				}
			}
		}
		if want := []string{quarantine.FileMessage, quarantine.FileRecords, quarantine.FileObject, quarantine.FileSums}; !slices.Equal(names, want) {
			t.Errorf("export: %v, want %v", names, want)
		}
		entries, err := g.srv.entriesOf(ctx, identificativo)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range entries {
			if e.Kind != kind || e.Gestore != g.name {
				continue
			}
			n++
			if e.Details["quarantena"] != r.Key || e.Details["sha256_quarantena"] != r.SHA256 {
				t.Errorf("ledger %s entry: quarantena %q sha256 %q, want %q %q", kind, e.Details["quarantena"], e.Details["sha256_quarantena"], r.Key, r.SHA256)
			}
		}
		if n == 0 {
			t.Errorf("no %s entry of %s", kind, identificativo)
		}
	}

	t.Run("punto di accesso", func(t *testing.T) {
		q, store := newQuarantine(t)
		p := newPair(t, startOptions{scannerA: scanner, limits: func(o *Options) { o.Quarantine = q }})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 {
			t.Fatalf("submit: %v, want 554 for a virus", err)
		}
		m := p.a.waitKinds(t, mario, pec.KindNonAccettazioneVirus)[0]
		check(t, q, store, p.a, m.Daticert.Identificativo, quarantine.PointAccesso, ledger.KindNonAccettazione)
	})

	t.Run("punto di ricezione", func(t *testing.T) {
		q, store := newQuarantine(t)
		p := newPair(t, startOptions{scannerB: scanner, limits: func(o *Options) { o.Quarantine = q }})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		if err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia)); err != nil {
			t.Fatalf("submit: %v", err)
		}
		m := first(p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindMancataConsegnaVirus), pec.KindMancataConsegnaVirus)
		check(t, q, store, p.b, m.Daticert.Identificativo, quarantine.PointRicezione, ledger.KindRilevazioneVirus)
	})

	// A quarantine that cannot keep the message: the submission gets a
	// temporary error and nothing is recorded or sent, so the client
	// keeps it and retries; nothing acknowledged is lost.
	t.Run("quarantine down", func(t *testing.T) {
		p := newPair(t, startOptions{scannerA: scanner, limits: func(o *Options) { o.Quarantine = failingQuarantine{} }})
		p.a.addMailbox(t, mario, pw, 0)
		p.b.addMailbox(t, lucia, pw, 0)
		err := p.a.submit(t, mario, pw, []string{lucia}, infectedMessage(mario, lucia))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code/100 != 4 {
			t.Fatalf("submit: %v, want a temporary error", err)
		}
		for seq := range p.a.ledger.Head().Size {
			e, _, err := p.a.ledger.Entry(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kind.IsPEC() {
				t.Errorf("the ledger has a %s entry of %s", e.Kind, e.Identificativo)
			}
		}
	})
}

type failingQuarantine struct{}

func (failingQuarantine) Put(context.Context, quarantine.Message) (quarantine.Record, error) {
	return quarantine.Record{}, errors.New("the WORM store is down")
}

// TestHostileClients: protocol abuse gets protocol errors, never a crash,
// and the server goes on serving.
func TestHostileClients(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	p.a.addMailbox(t, "anna@pec.alfa.test", pw, 0)

	tests := []struct {
		name   string
		addr   func() string
		script []string // lines to send; a reply is read after each
		want   []string // a substring of each reply, "" for any
	}{
		{"auth before TLS", func() string { return p.a.submission }, []string{"EHLO x", "AUTH PLAIN " + plain(mario, pw)}, []string{"250", "523"}},
		{"mail before auth", func() string { return p.a.submission }, []string{"EHLO x", "MAIL FROM:<" + mario + ">"}, []string{"250", "530 5.7.0 Authentication required"}},
		{"relay refused", func() string { return p.b.ricezione }, []string{"EHLO x", "MAIL FROM:<x@example.org>", "RCPT TO:<y@example.org>"}, []string{"250", "250", "550"}},
		{"over-long line", func() string { return p.b.ricezione }, []string{"EHLO x", strings.Repeat("A", 100000)}, []string{"250", "500"}},
		{"unknown command", func() string { return p.b.ricezione }, []string{"EHLO x", "FOO BAR"}, []string{"250", "501"}},
		{"data before rcpt", func() string { return p.b.ricezione }, []string{"EHLO x", "DATA"}, []string{"250", "502"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replies := converse(t, tt.addr(), tt.script)
			for i, want := range tt.want {
				if i >= len(replies) || !strings.Contains(replies[i], want) {
					t.Errorf("reply %d: %q, want %q (all: %q)", i, at(replies, i), want, replies)
				}
			}
		})
	}

	t.Run("10000 RCPT", func(t *testing.T) {
		var script, want []string
		script = append(script, "EHLO x", "MAIL FROM:<x@example.org>")
		want = append(want, "250", "250")
		for i := range 10000 {
			script = append(script, "RCPT TO:<"+lucia+">")
			if i < MaxProtocolRecipients {
				want = append(want, "250")
			} else {
				want = append(want, "452")
			}
		}
		replies := converse(t, p.b.ricezione, script)
		for i := range want {
			if i >= len(replies) || !strings.HasPrefix(replies[i], want[i]) {
				t.Fatalf("reply %d: %q, want %s", i, at(replies, i), want[i])
			}
		}
	})

	t.Run("pipelining and truncated DATA", func(t *testing.T) {
		msg := strings.ReplaceAll(message("x@example.org", lucia, "", "Troncato"), "\n", "\r\n")
		raw := "EHLO x\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<" + lucia + ">\r\nDATA\r\n" + msg[:len(msg)/2]
		before := len(p.b.messages(t, lucia))
		sendAndClose(t, p.b.ricezione, raw)
		if after := len(p.b.messages(t, lucia)); after != before {
			t.Errorf("a truncated message was delivered")
		}
	})

	t.Run("100 wrong passwords", func(t *testing.T) {
		var codes []int
		for range 100 {
			err := p.a.submit(t, "anna@pec.alfa.test", "wrong password", []string{lucia}, message("anna@pec.alfa.test", lucia, "", "x"))
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				t.Fatalf("wrong password accepted: %v", err)
			}
			codes = append(codes, se.Code)
		}
		if !slices.Contains(codes, 454) {
			t.Errorf("100 wrong passwords were never rate-limited: %v", codes)
		}
		// The right password is refused too while the limit holds.
		err := p.a.submit(t, "anna@pec.alfa.test", pw, []string{lucia}, message("anna@pec.alfa.test", lucia, "", "x"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 454 {
			t.Errorf("right password during the lockout: %v, want 454", err)
		}
		// Anna's failures throttle anna at this address, not the address:
		// another titolare behind it submits at once.
		if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Subito")); err != nil {
			t.Errorf("another titolare at the same address: %v", err)
		}
	})

	// After all that, and once the lockout of the client's address has
	// passed, the gestori still work.
	p.clock.Advance(16 * time.Minute)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Dopo")); err != nil {
		t.Fatalf("submit after the abuse: %v", err)
	}
	p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "<none>"
}

func plain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}
