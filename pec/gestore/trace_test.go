package gestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
)

// cutTrace splits a stored message into the fields a final delivery put on
// top (Return-Path, Delivered-To and, for a message that came over SMTP,
// one Received field) and the message as it arrived.
func cutTrace(t *testing.T, stored []byte, received bool) (trace string, msg []byte) {
	t.Helper()
	i := 0
	names := []string{"Return-Path:", "Delivered-To:"}
	if received {
		names = append(names, "Received:")
	}
	for _, name := range names {
		if !bytes.HasPrefix(stored[i:], []byte(name)) {
			t.Fatalf("stored message lacks %s at offset %d:\n%.600s", name, i, stored)
		}
		for {
			j := bytes.Index(stored[i:], []byte("\r\n"))
			i += j + 2
			if stored[i] != ' ' && stored[i] != '\t' {
				break
			}
		}
	}
	return string(stored[:i]), stored[i:]
}

// TestTraceHeaders follows a message between two gestori and checks the
// trace fields real gestori write: the punto di accesso's Received at the
// top of the original and of the busta (outside the signed entity), the
// punto di ricezione's Received and the final delivery's Return-Path and
// Delivered-To in the recipient's mailbox, where the busta still verifies
// with openssl; and that the ledgers hash the busta as A signed and sent
// it, without B's trace fields.
func TestTraceHeaders(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.a.addMailbox(t, mario, pw, 0)
	p.b.addMailbox(t, lucia, pw, 0)
	if err := p.a.submit(t, mario, pw, []string{lucia}, message(mario, lucia, "", "Tracce")); err != nil {
		t.Fatalf("submit: %v", err)
	}
	got := p.a.waitKinds(t, mario, pec.KindAccettazione, pec.KindConsegnaCompleta)
	p.b.waitKinds(t, lucia, pec.KindBustaTrasporto)
	id := first(got, pec.KindAccettazione).Daticert.Identificativo

	stored := p.b.messages(t, lucia)[0]
	trace, busta := cutTrace(t, stored, true)
	want := regexp.MustCompile(`^Return-Path: <posta-certificata@pec\.alfa\.test>\r\n` +
		`Delivered-To: ` + regexp.QuoteMeta(lucia) + `\r\n` +
		`Received: from \S+ \(\S+ \[127\.0\.0\.1\]\)\r\n` +
		`\tby pec\.beta\.test \(Custode\) with ESMTPS? id [0-9A-F]{12}\r\n` +
		`\tfor <` + regexp.QuoteMeta(lucia) + `>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n$`)
	if !want.MatchString(trace) {
		t.Errorf("B's trace fields:\n%s\nwant to match %s", trace, want)
	}
	// Inherited by the busta, the field is folded again at its spaces.
	submission := regexp.MustCompile(`^Received: from \S+ \(\S+ \[127\.0\.0\.1\]\) by pec\.alfa\.test \(Custode\) with ESMTPS?A id [0-9A-F]{12} for <` + regexp.QuoteMeta(lucia) + `>;`)
	if !submission.Match(bytes.ReplaceAll(busta, []byte("\r\n "), []byte(" "))) {
		t.Errorf("the busta does not start with A's Received:\n%.400s", busta)
	}
	opensslVerify(t, stored, p.a.caFile)
	if d := pythonDefects(t, stored); d != "" {
		t.Errorf("Python's email package finds defects in the delivered busta: %s", d)
	}
	m, err := pec.Parse(stored, pec.ParseOptions{})
	if err != nil || m.Kind != pec.KindBustaTrasporto || !m.Signed || !bytes.HasPrefix(m.Original, []byte("Received: from ")) {
		t.Fatalf("stored busta: %v, kind %s, signed %v, original starts %.40q", err, m.Kind, m.Signed, m.Original)
	}

	// The ledgers: A's posta-certificata entry and B's presa in carico
	// and avvenuta consegna hash the busta as A sent it.
	sum := sha256.Sum256(busta)
	waitFor(t, "A's ledger to record the ricevute", 10*time.Second, func() (bool, error) {
		return len(p.a.kinds(t, id)) >= 4, nil
	})
	for _, c := range []struct {
		g     *testGestore
		kind  ledger.Kind
		field string
	}{
		{p.a, ledger.KindPostaCertificata, ""},
		{p.b, ledger.KindPresaInCarico, "sha256_busta"},
		{p.b, ledger.KindAvvenutaConsegna, "sha256_busta"},
	} {
		page, err := c.g.ledger.Find(context.Background(), ledger.Query{Identificativo: id, Kind: c.kind, Limit: 10})
		if err != nil || len(page.Entries) != 1 {
			t.Fatalf("%s entries of %s: %d, %v", c.kind, c.g.name, len(page.Entries), err)
		}
		e := page.Entries[0]
		h := hex.EncodeToString(e.SHA256)
		if c.field != "" {
			h = e.Details[c.field]
		}
		if h != hex.EncodeToString(sum[:]) {
			t.Errorf("%s's %s entry: %s %s, want the busta as sent, %x", c.g.name, c.kind, c.field, h, sum)
		}
	}

	// In mario's mailbox: the accettazione, ours, delivered in process
	// (Return-Path and Delivered-To, no Received), and B's ricevuta di
	// avvenuta consegna, which came over SMTP (A's Received too).
	for _, raw := range p.a.messages(t, mario) {
		m, err := pec.Parse(raw, pec.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fromB := m.Kind == pec.KindConsegnaCompleta
		trace, _ := cutTrace(t, raw, fromB)
		want, ca := "Return-Path: <posta-certificata@pec.alfa.test>\r\nDelivered-To: "+mario+"\r\n", p.a.caFile
		if fromB {
			want, ca = "Return-Path: <posta-certificata@pec.beta.test>\r\nDelivered-To: "+mario+"\r\nReceived: from ", p.b.caFile
		}
		if !bytes.HasPrefix([]byte(trace), []byte(want)) || !fromB && bytes.HasPrefix(raw[len(trace):], []byte("Received:")) {
			t.Errorf("%s: trace fields %q, want %q and no other Received", m.Kind, trace, want)
		}
		opensslVerify(t, raw, ca)
	}
}

// TestTraceAnomalia checks that ordinary mail wrapped in a busta di
// anomalia carries the punto di ricezione's Received, as it arrived, in
// postacert.eml and, inherited, on the busta, which still verifies, and
// that the ledger hashes the message as it arrived, without it.
func TestTraceAnomalia(t *testing.T) {
	t.Parallel() // its own gestori, stores and listeners
	p := newPair(t, startOptions{})
	p.b.addMailbox(t, lucia, pw, 0)
	msg := []byte(strings.ReplaceAll(message("someone@example.org", lucia, "", "Ordinaria"), "\n", "\r\n"))
	if err := sendRaw(t, p.b.ricezione, "someone@example.org", []string{lucia}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	m := p.b.waitKinds(t, lucia, pec.KindBustaAnomalia)[0]
	trace, _ := cutTrace(t, m.Raw, false)
	if want := "Return-Path: <posta-certificata@pec.beta.test>\r\nDelivered-To: " + lucia + "\r\n"; trace != want {
		t.Errorf("trace fields %q, want %q", trace, want)
	}
	received := regexp.MustCompile(`^Received: from \S+ \(\S+ \[127\.0\.0\.1\]\)\r\n\tby pec\.beta\.test \(Custode\) with ESMTPS? id [0-9A-F]{12}\r\n\tfor <` + regexp.QuoteMeta(lucia) + `>; [^\r\n]+\r\n`)
	loc := received.FindIndex(m.Original)
	if loc == nil || !bytes.Equal(m.Original[loc[1]:], msg) {
		t.Errorf("postacert.eml is not our Received over the message as sent:\n%.500s", m.Original)
	}
	if !bytes.HasPrefix(m.Raw[len(trace):], []byte("Received: from ")) {
		t.Errorf("the busta di anomalia does not inherit the Received field:\n%.400s", m.Raw)
	}
	opensslVerify(t, m.Raw, p.b.caFile)
	page, err := p.b.ledger.Find(context.Background(), ledger.Query{Kind: ledger.KindBustaAnomalia, Limit: 10})
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("busta-anomalia entries: %d, %v", len(page.Entries), err)
	}
	sum := sha256.Sum256(msg)
	if got := page.Entries[0].Details["sha256_ricevuto"]; got != hex.EncodeToString(sum[:]) {
		t.Errorf("sha256_ricevuto %s, want the message as sent, %x", got, sum)
	}
}

// pythonDefects returns the defects Python's email package (default
// policy) finds in msg and its parts; without python3 it logs so and
// returns none.
func pythonDefects(t *testing.T, msg []byte) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Log("python3 not installed: the message is not checked with Python's email package")
		return ""
	}
	f := filepath.Join(t.TempDir(), "m.eml")
	if err := os.WriteFile(f, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `
import sys, email, email.policy
m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)
d = [type(x).__name__ for p in m.walk() for x in p.defects]
d += [k + ':' + type(x).__name__ for p in m.walk() for k, v in p.items() for x in getattr(v, 'defects', ())]
print(' '.join(d))
`, f).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}
