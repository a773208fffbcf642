package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/pki"
)

// testGestore is a custode serve process of an integration test.
type testGestore struct {
	name, domain, data string
	submission, imap   string
	ricezione, api     string
	metrics            string
	cmd                *exec.Cmd
	log                *os.File
}

// buildCustode builds the command into a temporary directory.
func buildCustode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "custode")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on now, for a
// process started later. The port is drawn below Linux's ephemeral range
// (32768-60999), so that no socket bound to port 0 meanwhile can be given
// it before that process binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	var err error
	for range 100 {
		var ln net.Listener
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err == nil {
			defer ln.Close()
			return ln.Addr().String()
		}
	}
	t.Fatal(err)
	return ""
}

// twoGestori makes the data directories of gestori A and B, each in the
// other's indice dei gestori and routes, with one mailbox each.
func twoGestori(t *testing.T) (a, b *testGestore) {
	t.Helper()
	root := t.TempDir()
	a = &testGestore{name: "Alfa PEC S.p.A.", domain: "pec.alfa.test", data: filepath.Join(root, "a")}
	b = &testGestore{name: "Beta PEC S.p.A.", domain: "pec.beta.test", data: filepath.Join(root, "b")}
	var providers []*igpec.Provider
	for _, g := range []*testGestore{a, b} {
		if code, out := custode(t, "", "init", "-data", g.data, "-gestore", g.name, "-domain", g.domain); code != 0 {
			t.Fatalf("init: %s", out)
		}
		g.submission, g.ricezione, g.imap, g.api = freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
		g.metrics = freeAddr(t)
		c, err := config.Load(g.data)
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.OwnProvider()
		if err != nil {
			t.Fatal(err)
		}
		providers = append(providers, p)
	}
	var ldif bytes.Buffer
	if err := igpec.WriteLDIF(&ldif, providers...); err != nil {
		t.Fatal(err)
	}
	for i, g := range []*testGestore{a, b} {
		other := []*testGestore{b, a}[i]
		if err := os.WriteFile(filepath.Join(g.data, "igpec.ldif"), ldif.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(g.data)
		if err != nil {
			t.Fatal(err)
		}
		c.Server.Submission, c.Server.Ricezione, c.Server.IMAP, c.Server.Submissions = g.submission, g.ricezione, g.imap, ""
		c.Server.Index = "igpec.ldif"
		c.Server.Routes = map[string]string{other.domain: other.ricezione}
		c.Server.PeerCAs = []string{filepath.Join(other.data, "pki", "ca.pem")}
		c.Server.PasswordIterations = 1000
		c.CheckpointInterval = "1s"
		c.API = &config.APIConfig{Listen: g.api}
		c.Metrics = &config.MetricsConfig{Listen: g.metrics}
		if g == a {
			c.Server.Archivio = []sicurezza.Policy{{Mailbox: "mario.rossi@pec.alfa.test", Quota: 100 << 20}}
		}
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := custode(t, "secret-mario-1\n", "mailbox", "add", "-data", a.data, "mario.rossi@pec.alfa.test"); code != 0 {
		t.Fatalf("mailbox add: %s", out)
	}
	if code, out := custode(t, "secret-lucia-1\n", "mailbox", "add", "-data", b.data, "lucia.bianchi@pec.beta.test"); code != 0 {
		t.Fatalf("mailbox add: %s", out)
	}
	return a, b
}

// start runs custode serve on g's data directory and waits until its
// submission port answers.
func (g *testGestore) start(t *testing.T, bin string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(g.data, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	g.log = f
	g.cmd = exec.Command(bin, "serve", "-data", g.data, "-tsa-listen", "")
	g.cmd.Stdout, g.cmd.Stderr = f, f
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", g.submission)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			g.kill()
			logs, _ := os.ReadFile(f.Name())
			t.Fatalf("custode serve did not start:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(g.kill)
}

// kill stops the process with SIGKILL.
func (g *testGestore) kill() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Kill()
	g.cmd.Wait()
	g.cmd = nil
	g.log.Close()
}

// stop stops the process with SIGTERM and waits for it.
func (g *testGestore) stop(t *testing.T) {
	t.Helper()
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			logs, _ := os.ReadFile(g.log.Name())
			t.Errorf("custode serve exited with %v:\n%s", err, tail(logs, 3000))
		}
	case <-time.After(60 * time.Second):
		g.cmd.Process.Kill()
		<-done
		t.Error("custode serve did not stop within 60 s")
	}
	g.cmd = nil
	g.log.Close()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// ledgerEntries opens g's ledger read-only and returns the entries of
// identificativo.
func (g *testGestore) ledgerEntries(t *testing.T, identificativo string) []*ledger.Entry {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Options{Dir: filepath.Join(g.data, "ledger"), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	page, err := l.Find(context.Background(), ledger.Query{Identificativo: identificativo})
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

// ledgerKind opens g's ledger read-only and returns its entries of kind k.
func (g *testGestore) ledgerKind(t *testing.T, k ledger.Kind) []*ledger.Entry {
	t.Helper()
	l, err := ledger.Open(context.Background(), ledger.Options{Dir: filepath.Join(g.data, "ledger"), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	page, err := l.Find(context.Background(), ledger.Query{Kind: k})
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

// ledgerKinds returns the kinds of g's entries of identificativo, prefixed
// with "received:" when another gestore emitted them.
func (g *testGestore) ledgerKinds(t *testing.T, identificativo string) []string {
	t.Helper()
	var out []string
	for _, e := range g.ledgerEntries(t, identificativo) {
		k := string(e.Kind)
		if e.Gestore != g.name {
			k = "received:" + k
		}
		out = append(out, k)
	}
	return out
}

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run scripts/install-test-deps.sh", name)
	}
	return p
}

// imapFetchAll reads every message of user's INBOX with Python's imaplib
// over STARTTLS and returns them.
func imapFetchAll(t *testing.T, addr, user, password, caFile string) [][]byte {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out := t.TempDir()
	script := `
import imaplib, ssl, sys, os
host, port, user, password, ca, out = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4(host, int(port))
m.starttls(ssl_context=ctx)
m.login(user, password)
typ, _ = m.select('INBOX')
assert typ == 'OK', typ
typ, data = m.search(None, 'ALL')
assert typ == 'OK', typ
for num in data[0].split():
    typ, msg = m.fetch(num, '(BODY.PEEK[])')
    assert typ == 'OK', typ
    with open(os.path.join(out, num.decode() + '.eml'), 'wb') as f:
        f.write(msg[0][1])
m.logout()
`
	cmd := exec.Command(tool(t, "python3"), "-c", script, host, port, user, password, caFile, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("imaplib: %v\n%s", err, b)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for i := 1; i <= len(entries); i++ {
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%d.eml", i)))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

func opensslSmimeVerify(t *testing.T, msg []byte, caFile string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool(t, "openssl"), "smime", "-verify", "-in", in, "-CAfile", caFile, "-purpose", "any", "-out", os.DevNull).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification successful")) {
		t.Errorf("openssl smime -verify: %v: %s", err, out)
	}
}

// TestIntegrationGestoreEndToEnd: swaks submits to gestore A; the sender
// reads the ricevute with Python's imaplib, the recipient on B the busta
// with curl; both ledgers agree; openssl verifies every signed message.
func TestIntegrationGestoreEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	bin := buildCustode(t)
	a, b := twoGestori(t)
	a.start(t, bin)
	b.start(t, bin)
	caA, caB := filepath.Join(a.data, "pki", "ca.pem"), filepath.Join(b.data, "pki", "ca.pem")

	host, port, _ := net.SplitHostPort(a.submission)
	swaks := exec.Command(tool(t, "swaks"), "--server", host, "--port", port, "--tls", "--tls-verify", "--tls-ca-path", caA,
		"--auth", "PLAIN", "--auth-user", "mario.rossi@pec.alfa.test", "--auth-password", "secret-mario-1",
		"--from", "mario.rossi@pec.alfa.test", "--to", "lucia.bianchi@pec.beta.test",
		"--header", "Subject: Contratto firmato", "--body", "In allegato il contratto.")
	if out, err := swaks.CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}

	var sent [][]byte
	deadline := time.Now().Add(30 * time.Second)
	for len(sent) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		sent = imapFetchAll(t, a.imap, "mario.rossi@pec.alfa.test", "secret-mario-1", caA)
	}
	if len(sent) != 2 {
		t.Fatalf("the sender has %d messages, want the ricevuta di accettazione and the ricevuta di avvenuta consegna", len(sent))
	}
	acc, err := pec.Parse(sent[0], pec.ParseOptions{})
	if err != nil || acc.Kind != pec.KindAccettazione {
		t.Fatalf("first message: %v %v, want the ricevuta di accettazione", acc.Kind, err)
	}
	consegna, err := pec.Parse(sent[1], pec.ParseOptions{})
	if err != nil || consegna.Kind != pec.KindConsegnaCompleta {
		t.Fatalf("second message: %v %v, want the ricevuta di avvenuta consegna", consegna.Kind, err)
	}
	opensslSmimeVerify(t, sent[0], caA)
	opensslSmimeVerify(t, sent[1], caB)
	id := acc.Daticert.Identificativo

	curl := exec.Command(tool(t, "curl"), "-s", "--ssl-reqd", "--cacert", caB,
		"imap://"+b.imap+"/INBOX;UID=1", "-u", "lucia.bianchi@pec.beta.test:secret-lucia-1")
	busta, err := curl.Output()
	if err != nil {
		t.Fatalf("curl imap: %v", err)
	}
	bm, err := pec.Parse(busta, pec.ParseOptions{})
	if err != nil || bm.Kind != pec.KindBustaTrasporto || bm.Daticert.Identificativo != id {
		t.Fatalf("curl fetched %v (%v), want the busta di trasporto of %s", bm.Kind, err, id)
	}
	opensslSmimeVerify(t, busta, caA)

	// The HTTP API, with curl: mario sees his own log, not lucia's (403,
	// recorded); no credentials get 401.
	api := func(user, path string) (int, string) {
		t.Helper()
		args := []string{"-s", "--cacert", caA, "-w", "\n%{http_code}", "https://" + a.api + path}
		if user != "" {
			args = append(args, "-u", user)
		}
		out, err := exec.Command(tool(t, "curl"), args...).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", path, err)
		}
		i := max(strings.LastIndex(string(out), "\n"), 0) // -w puts the status after a newline
		n, _ := strconv.Atoi(strings.TrimSpace(string(out[i:])))
		return n, string(out[:i])
	}
	mario := "mario.rossi@pec.alfa.test:secret-mario-1"
	if code, body := api(mario, "/v1/entries?mailbox=mario.rossi@pec.alfa.test&reason=prova"); code != 200 || !strings.Contains(body, id) {
		t.Errorf("mario's own entries over the API: %d %s", code, body)
	}
	if code, body := api(mario, "/v1/entries?mailbox=lucia.bianchi@pec.beta.test"); code != 403 {
		t.Errorf("mario asking for lucia's log: %d %s, want 403", code, body)
	}
	if code, _ := api("", "/v1/entries?mailbox=mario.rossi@pec.alfa.test"); code != 401 {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if code, body := api("", "/openapi.json"); code != 200 || !strings.Contains(body, "openapi") {
		t.Errorf("/openapi.json: %d", code)
	}

	checkMetrics(t, a.metrics)

	a.stop(t)
	b.stop(t)
	queries := a.ledgerKind(t, ledger.KindQuery)
	var denied bool
	for _, e := range queries {
		if e.Actor == "titolare:mario.rossi@pec.alfa.test" && e.Details["outcome"] == "denied" {
			denied = true
		}
	}
	if len(queries) < 2 || !denied {
		t.Errorf("the API's queries in A's ledger: %d, a denied one: %v", len(queries), denied)
	}
	if code, out := custode(t, "", "archive", "find", "-data", a.data, "-mailbox", "mario.rossi@pec.alfa.test", "-reason", "test"); code != 0 || !strings.Contains(out, "checked segments") {
		t.Errorf("archive find: %d\n%s", code, out)
	}
	wantA := []string{"accettazione", "posta-certificata", "received:avvenuta-consegna", "received:presa-in-carico"}
	wantB := []string{"avvenuta-consegna", "presa-in-carico"}
	if got := sortedCopy(a.ledgerKinds(t, id)); strings.Join(got, ",") != strings.Join(wantA, ",") {
		t.Errorf("A's ledger for %s: %v, want %v", id, got, wantA)
	}
	if got := sortedCopy(b.ledgerKinds(t, id)); strings.Join(got, ",") != strings.Join(wantB, ",") {
		t.Errorf("B's ledger for %s: %v, want %v", id, got, wantB)
	}
	for _, g := range []*testGestore{a, b} {
		if code, out := custode(t, "", "ledger", "verify", "-data", g.data); code != 0 {
			t.Errorf("ledger verify %s: %s", g.domain, out)
		}
	}

	// Mario's archivio di sicurezza holds the ricevute, byte-identical,
	// under the keys A's ledger gives.
	store, err := localstore.Open(filepath.Join(a.data, "worm"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	archived := 0
	for _, e := range a.ledgerEntries(t, id) {
		if e.ArchiveKey == "" {
			continue
		}
		obj, err := store.Get(context.Background(), e.ArchiveKey, "")
		if err != nil {
			t.Errorf("%s entry's archive key %s: %v", e.Kind, e.ArchiveKey, err)
			continue
		}
		if sum := sha256.Sum256(obj.Data); !bytes.Equal(sum[:], e.SHA256) {
			t.Errorf("%s: archived object differs from the ledger's SHA-256", e.Kind)
		}
		archived++
	}
	for _, read := range [][]byte{sent[0], sent[1]} {
		// The archivio keeps the message as the gestore signed it; the
		// mailbox's copy has the delivery's trace fields on top.
		want := withoutTrace(read)
		if _, err := store.Get(context.Background(), archive.ContentKey(sicurezza.DefaultPrefix, want), ""); err != nil {
			t.Errorf("a ricevuta mario read over IMAP is not in his archivio di sicurezza: %v", err)
		}
	}
	if archived < 3 {
		t.Errorf("%d of A's entries name an archived object, want at least 3 (accettazione, busta, consegna)", archived)
	}

	// A lawyer's evidence bundles: the ricevuta di accettazione (signed by
	// A) and the ricevuta di avvenuta consegna (signed by B), originals from
	// mario's archivio di sicurezza, checked offline against both CAs.
	anchors := filepath.Join(t.TempDir(), "anchors.pem")
	caApem, _ := os.ReadFile(caA)
	caBpem, _ := os.ReadFile(caB)
	if err := os.WriteFile(anchors, append(caApem, caBpem...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ kind, recipient string }{{"accettazione", ""}, {"avvenuta-consegna", "lucia.bianchi@pec.beta.test"}} {
		bundle := filepath.Join(t.TempDir(), k.kind+".zip")
		args := []string{"export", "receipt", "-data", a.data, "-id", id, "-kind", k.kind, "-out", bundle, "-actor", "avv.rossi"}
		if k.recipient != "" {
			args = append(args, "-recipient", k.recipient)
		}
		if code, out := custode(t, "", args...); code != 0 || !strings.Contains(out, "the original receipt") {
			t.Fatalf("export %s: %d\n%s", k.kind, code, out)
		}
		if code, out := custode(t, "", "verify", "-anchor", anchors, bundle); code != 0 || !strings.Contains(out, "the bundle verifies") ||
			!strings.Contains(out, "the ORIGINAL, byte for byte") {
			t.Errorf("verify %s: %d\n%s", k.kind, code, out)
		}
		if code, out := custode(t, "", "verify", "-anchor", caB, bundle); code != 1 || !strings.Contains(out, "does NOT verify") {
			t.Errorf("verify %s against B's CA alone: %d\n%s", k.kind, code, out)
		}
	}
	extract := filepath.Join(t.TempDir(), "extract.zip")
	if code, out := custode(t, "", "export", "extract", "-data", a.data, "-mailbox", "mario.rossi@pec.alfa.test",
		"-from", time.Now().Add(-time.Hour).Format(time.RFC3339), "-out", extract, "-actor", "mario"); code != 0 {
		t.Fatalf("export extract: %d\n%s", code, out)
	}
	if code, out := custode(t, "", "verify", "-anchor", anchors, extract); code != 0 || !strings.Contains(out, "entries of mario.rossi@pec.alfa.test") {
		t.Errorf("verify the extract: %d\n%s", code, out)
	}
	auditDir := t.TempDir()
	if code, out := custode(t, "", "audit", "-data", a.data, "-from", time.Now().Add(-time.Hour).Format(time.RFC3339),
		"-out", auditDir, "-cod-gest-pec", "ALFA"); code != 0 || !strings.Contains(out, "NESSUN PROBLEMA") || !strings.Contains(out, "Transazioni inviate nel periodo: 1") {
		t.Errorf("audit: %d\n%s", code, out)
	}
	if p01, err := os.ReadFile(filepath.Join(auditDir, "P01.csv")); err != nil || !strings.Contains(string(p01), "\nALFA,") {
		t.Errorf("P01.csv: %s %v", p01, err)
	}
	if kinds := a.ledgerKinds(t, id); !slices.Contains(kinds, "export") {
		t.Errorf("the exports are not in A's ledger: %v", kinds)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestIntegrationGestoreCrash kills gestore A with SIGKILL at random
// moments, at least 20 times, while clients submit. After each kill every
// message that got a 250 has its ledger entries and its busta is queued or
// delivered; at the end every acknowledged message is in the recipient's
// mailbox exactly once.
func TestIntegrationGestoreCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	bin := buildCustode(t)
	a, b := twoGestori(t)
	b.start(t, bin)
	a.start(t, bin)
	caA := filepath.Join(a.data, "pki", "ca.pem")
	roots, err := pki.LoadPool(caA)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{} // client Message-IDs that got a 250
		seq   atomic.Int64
	)
	ctx, stopClients := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := seq.Add(1)
				mid := fmt.Sprintf("<crash-%d@client.test>", n)
				msg := "From: mario.rossi@pec.alfa.test\r\nTo: lucia.bianchi@pec.beta.test\r\nSubject: crash " + fmt.Sprint(n) +
					"\r\nMessage-ID: " + mid + "\r\n\r\nmessaggio " + fmt.Sprint(n) + "\r\n"
				if submitOnce(a.submission, roots, msg) == nil {
					mu.Lock()
					acked[mid] = true
					mu.Unlock()
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	const kills = 20
	for i := range kills {
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		a.kill()
		mu.Lock()
		snapshot := make([]string, 0, len(acked))
		for mid := range acked {
			snapshot = append(snapshot, mid)
		}
		mu.Unlock()
		checkAcknowledged(t, a, snapshot)
		if t.Failed() {
			stopClients()
			wg.Wait()
			t.FailNow()
		}
		t.Logf("kill %d: %d messages acknowledged so far, all in the ledger and queued or delivered", i+1, len(snapshot))
		a.start(t, bin)
	}
	stopClients()
	wg.Wait()

	// Let the queues drain, then check every acknowledged message was
	// delivered exactly once.
	mu.Lock()
	all := make([]string, 0, len(acked))
	for mid := range acked {
		all = append(all, mid)
	}
	mu.Unlock()
	if len(all) < 20 {
		t.Fatalf("only %d messages acknowledged in the whole run", len(all))
	}
	deadline := time.Now().Add(2 * time.Minute)
	var counts map[string]int
	for {
		counts = deliveredCounts(t, b, "lucia.bianchi@pec.beta.test", "secret-lucia-1")
		missing := 0
		for _, mid := range all {
			if counts[mid] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages never delivered", missing, len(all))
		}
		time.Sleep(time.Second)
	}
	for mid, n := range counts {
		if n > 1 {
			t.Errorf("%s delivered %d times", mid, n)
		}
	}
	a.stop(t)
	b.stop(t)
	for _, g := range []*testGestore{a, b} {
		if code, out := custode(t, "", "ledger", "verify", "-data", g.data); code != 0 {
			t.Errorf("ledger verify %s: %s", g.domain, out)
		}
	}
	// Each restart after a kill recorded the gestore's outage (P02).
	var outages int
	for _, e := range a.ledgerKind(t, ledger.KindOutage) {
		if e.Details[ledger.DetailOutageService] == "gestore" {
			outages++
		}
	}
	if outages != kills {
		t.Errorf("%d gestore outages in A's ledger after %d kills", outages, kills)
	}
	t.Logf("%d messages acknowledged across %d kills; each delivered exactly once", len(all), kills)
}

func submitOnce(addr string, roots *x509.CertPool, msg string) error {
	c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "mario.rossi@pec.alfa.test", "secret-mario-1")); err != nil {
		return err
	}
	return c.SendMail("mario.rossi@pec.alfa.test", []string{"lucia.bianchi@pec.beta.test"}, strings.NewReader(msg))
}

// checkAcknowledged opens the dead gestore's ledger and queue and checks
// that every acknowledged message has its accettazione and busta entries,
// and that its busta is still queued or already handed to B.
func checkAcknowledged(t *testing.T, g *testGestore, acked []string) {
	t.Helper()
	ctx := context.Background()
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(g.data, "ledger")})
	if err != nil {
		t.Fatalf("reopen the ledger after SIGKILL: %v", err)
	}
	defer l.Close()
	if rep, err := l.Verify(ctx, ledger.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("ledger verify after SIGKILL: %v %v", err, rep)
	}
	for _, mid := range acked {
		page, err := l.Find(ctx, ledger.Query{ClientMessageID: mid})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[ledger.Kind]bool{}
		for _, e := range page.Entries {
			kinds[e.Kind] = true
		}
		if !kinds[ledger.KindAccettazione] || !kinds[ledger.KindPostaCertificata] {
			t.Errorf("acknowledged %s: ledger holds %v", mid, kinds)
		}
	}
}

// deliveredCounts reads the recipient's INBOX over IMAP and counts the
// buste per client Message-ID.
func deliveredCounts(t *testing.T, g *testGestore, user, password string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, raw := range imapFetchAll(t, g.imap, user, password, filepath.Join(g.data, "pki", "ca.pem")) {
		m, err := pec.Parse(raw, pec.ParseOptions{})
		if err != nil || m.Kind != pec.KindBustaTrasporto || m.Daticert == nil {
			t.Errorf("unexpected message in the recipient's mailbox: %v %v", m.Kind, err)
			continue
		}
		counts[m.Daticert.MessageID]++
	}
	return counts
}

// withoutTrace returns msg without the trace fields that final delivery
// puts on top of it (Return-Path, Delivered-To, and the Received fields
// of our points), with their continuation lines.
func withoutTrace(msg []byte) []byte {
	for {
		i := bytes.IndexByte(msg, ':')
		if i < 0 {
			return msg
		}
		switch strings.ToLower(string(msg[:i])) {
		case "return-path", "delivered-to", "received":
		default:
			return msg
		}
		end := 0
		for {
			n := bytes.IndexByte(msg[end:], '\n')
			if n < 0 {
				return msg
			}
			end += n + 1
			if end >= len(msg) || (msg[end] != ' ' && msg[end] != '\t') {
				break
			}
		}
		msg = msg[end:]
	}
}
