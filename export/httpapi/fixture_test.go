package httpapi_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/export"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/policies"
	"github.com/custode/custode/retention"
	"github.com/custode/custode/tsa"
)

const (
	gestoreName = "Alfa PEC S.p.A."
	mailA       = "anna@pec.alfa.test"
	mailB       = "bruno@pec.alfa.test"
	passA       = "la password di anna"
	passB       = "la password di bruno"
)

// fixture is a real ledger with checkpoints (built-in TSA), a local WORM
// store, a mail store with two mailboxes, tokens, a policy and holds.
type fixture struct {
	logs   *lockedBuffer // the ledger's warnings, for failure messages
	dir    string
	dev    *pki.DevSet
	caPEM  []byte
	ledger *ledger.Ledger
	store  archive.Store
	mail   *mailstore.Store
	signer *smime.Signer
	tokens map[string]string // user -> token
	opts   httpapi.Options
	// base dates the fixture's transactions: minutes before now, so that
	// their first timestamp comes within the delay bound a bundle is
	// held to (export/BUNDLE.md §5).
	base time.Time
	ids  map[string]string // transaction name -> identificativo
}

// fixtureDev is the development PKI of the fixtures: three 2048-bit RSA
// keys, made once per package run instead of once per test. The tests
// only read it.
var fixtureDev = sync.OnceValues(func() (*pki.DevSet, error) {
	return pki.NewDevSet(gestoreName, "pec.alfa.test", time.Now().Add(-time.Hour))
})

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	dev, err := fixtureDev()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.WriteDir(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "pki", pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{Certificate: dev.TSA.Certificate, Signer: dev.TSA.Key,
		Chain: []*x509.Certificate{dev.CA.Certificate}, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(dir, "ledger"), Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})), Checkpoints: &ledger.CheckpointOptions{
		Origin: "pec.alfa.test/custode", Every: 1000, Interval: 50 * time.Millisecond,
		Signer:  &ledger.CMSSigner{Certificate: dev.Gestore.Certificate, Key: dev.Gestore.Key},
		Stamper: a, RetryInterval: 20 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	store, err := localstore.Open(filepath.Join(dir, "worm"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mailstore.Open(ctx, mailstore.Options{Dir: filepath.Join(dir, "mail"), PasswordIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	for addr, pw := range map[string]string{mailA: passA, mailB: passB} {
		if err := ms.AddMailbox(ctx, addr, pw, 0); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{logs: logs, dir: dir, dev: dev, caPEM: caPEM, ledger: l, store: store, mail: ms,
		signer: &smime.Signer{Certificate: dev.Gestore.Certificate, Key: dev.Gestore.Key},
		tokens: map[string]string{}, base: time.Now().Add(-4 * time.Minute).UTC(), ids: map[string]string{}}

	// Tokens of an operator, an auditor, two legal users and a user the
	// policy does not know.
	var lines []string
	for _, u := range []string{"olga", "aldo", "lea", "leo", "nina"} {
		tok, err := httpapi.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[u] = tok
		lines = append(lines, httpapi.TokenLine(u, tok))
	}
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# API tokens\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := httpapi.LoadTokens(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	pol := &policies.Policy{Version: 1, Roles: policies.Roles{
		Operators: []string{"olga", "mtls-operator"},
		Auditors:  []string{"aldo", "revisore@studio.test"},
		Legal:     map[string][]string{"lea": {"C-1"}, "leo": {"C-2"}},
	}}

	// Three transactions: anna to an outside recipient, bruno to anna,
	// bruno to an outside recipient.
	var events []ledger.Event
	tx := func(name, from, to string, at time.Duration, kinds ...ledger.Kind) {
		id := "opec-" + name + "@pec.alfa.test"
		f.ids[name] = id
		for i, k := range kinds {
			e := ledger.Event{Kind: k, Identificativo: id, ClientMessageID: "<" + name + "@client>", Time: f.base.Add(at + time.Duration(i)*time.Second),
				Mittente: from, Destinatari: []ledger.Recipient{{Address: to, Tipo: ledger.TipoCertificato}},
				Oggetto: "Oggetto " + name, Gestore: gestoreName, SHA256: make([]byte, 32)}
			if k == ledger.KindAvvenutaConsegna {
				e.Details = map[string]string{"destinatario": to}
			}
			events = append(events, e)
		}
	}
	tx("a-to-c", mailA, "carla@pec.beta.test", time.Minute, ledger.KindAccettazione, ledger.KindPostaCertificata)
	tx("b-to-a", mailB, mailA, 2*time.Minute, ledger.KindAccettazione, ledger.KindPostaCertificata, ledger.KindAvvenutaConsegna)
	tx("b-to-d", mailB, "dario@pec.beta.test", 3*time.Minute, ledger.KindAccettazione)
	if _, err := l.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	waitCovered(t, l, logs, l.Head().Size)

	holds := []retention.Hold{
		{Case: "C-1", Scope: retention.Scope{Identificativi: []string{f.ids["b-to-d"]}}, Reason: "causa", Actor: "operator:olga", Placed: f.base},
		{Case: "C-2", Scope: retention.Scope{Mailbox: mailB, From: f.base.Add(-time.Hour), To: f.base.Add(2 * time.Hour)}, Reason: "causa", Actor: "operator:olga", Placed: f.base},
		{Case: "C-1", Scope: retention.Scope{Mailbox: mailA}, Reason: "rilasciata", Actor: "operator:olga", Placed: f.base, Released: f.base},
	}
	hb, err := json.Marshal(holds)
	if err != nil {
		t.Fatal(err)
	}
	holdsFile := filepath.Join(dir, "holds.json")
	if err := os.WriteFile(holdsFile, hb, 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := retention.OpenRegistry(holdsFile)
	if err != nil {
		t.Fatal(err)
	}
	f.opts = httpapi.Options{Ledger: l, Store: store, Mailboxes: ms, Tokens: tokens, Policy: func() *policies.Policy { return pol },
		Holds: reg, Signer: f.signer, GestoreCA: caPEM, Gestore: gestoreName,
		PerPrincipal: httpapi.RateLimit{Rate: 1000, Burst: 1000}, PerRemote: httpapi.RateLimit{Rate: 1000, Burst: 1000}}
	return f
}

// waitCovered waits for a timestamped checkpoint of at least size entries.
// On giving up it reports what it saw and the ledger's warnings.
func waitCovered(t testing.TB, l *ledger.Ledger, logs *lockedBuffer, size uint64) {
	t.Helper()
	// A size read from Head may end with the event that records a
	// checkpoint, made while the caller was descheduled: no checkpoint
	// will cover that event until something else is appended, and the one
	// it records covers everything before it.
	if size > 0 {
		e, _, err := l.Entry(context.Background(), size-1)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == ledger.KindCheckpoint {
			size--
		}
	}
	deadline := time.Now().Add(60 * time.Second) // a hang guard, not a speed bound
	for {
		cp, err := l.LatestCheckpoint(context.Background())
		if err == nil && cp.Size >= size && !cp.Pending() {
			return
		}
		if time.Now().After(deadline) {
			var got string
			if cp != nil {
				got = fmt.Sprintf("the newest checkpoint covers %d entries, pending %v", cp.Size, cp.Pending())
			}
			t.Fatalf("no timestamped checkpoint of %d entries: head %d, %d checkpoints wait for a token, %s (err %v); the ledger's warnings:\n%s",
				size, l.Head().Size, l.PendingTimestamps(), got, err, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// server starts the API over plain HTTP with f.opts, changed by change.
func (f *fixture) server(t testing.TB, change func(*httpapi.Options)) *httptest.Server {
	t.Helper()
	opts := f.opts
	if change != nil {
		change(&opts)
	}
	s, err := httpapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// who sets the credentials of a request.
type who func(*http.Request)

func basic(user, pass string) who { return func(r *http.Request) { r.SetBasicAuth(user, pass) } }
func bearer(tok string) who {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}
func nobody(*http.Request) {}

func (f *fixture) titolareA() who { return basic(mailA, passA) }
func (f *fixture) as(user string) who {
	return bearer(f.tokens[user])
}

// get makes a request and returns the status and body.
func get(t testing.TB, c *http.Client, url string, w who) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	w(req)
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// page is the answer of /v1/entries.
type page struct {
	Entries []struct {
		Seq      uint64          `json:"seq"`
		LeafHash string          `json:"leaf_hash"`
		Entry    json.RawMessage `json:"entry"`
	} `json:"entries"`
	Next string `json:"next"`
}

func decodePage(t testing.TB, body []byte) page {
	t.Helper()
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a page: %v\n%s", err, body)
	}
	return p
}

// entries returns a page's entries, decoded with the ledger's own parser.
func (p page) entries(t testing.TB) []*ledger.Entry {
	t.Helper()
	var out []*ledger.Entry
	for _, e := range p.Entries {
		en, err := ledger.DecodeEntry(e.Entry)
		if err != nil {
			t.Fatalf("entry %d: %v", e.Seq, err)
		}
		out = append(out, en)
	}
	return out
}

// verifyZip checks an export with the offline verifier.
func (f *fixture) verifyZip(t testing.TB, z []byte) *export.VerifyReport {
	t.Helper()
	rep, err := export.VerifyBundle(bytes.NewReader(z), int64(len(z)), export.VerifyOptions{Anchors: []*x509.Certificate{f.dev.CA.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var bad []string
		for _, c := range rep.Checks {
			if !c.OK {
				bad = append(bad, c.Name+": "+c.Detail)
			}
		}
		t.Fatalf("export does not verify:\n%s", strings.Join(bad, "\n"))
	}
	return rep
}

// records returns the ledger's events of kind by actor, oldest first.
func (f *fixture) records(t testing.TB, kind ledger.Kind, actor string) []*ledger.Entry {
	t.Helper()
	var out []*ledger.Entry
	q := ledger.Query{Kind: kind}
	for {
		p, err := f.ledger.Find(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			if e.Actor == actor {
				out = append(out, e)
			}
		}
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
}

func (f *fixture) seqOf(t testing.TB, name string, kind ledger.Kind) uint64 {
	t.Helper()
	p, err := f.ledger.Find(context.Background(), ledger.Query{Identificativo: f.ids[name], Kind: kind})
	if err != nil || len(p.Entries) == 0 {
		t.Fatalf("no %s entry of %s: %v", kind, name, err)
	}
	return p.Entries[0].Seq
}

func since(f *fixture) string {
	return f.base.Add(-time.Hour).Format(time.RFC3339)
}

// lockedBuffer collects a ledger's log lines for a failure message; the
// ledger's goroutines write to it concurrently.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
