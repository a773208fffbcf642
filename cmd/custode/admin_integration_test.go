package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/pki"
)

// runBinary runs the custode binary with stdin and returns its exit status and
// its output (stdout, then stderr).
func runBinary(t *testing.T, bin, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatalf("custode %s: %v", strings.Join(args, " "), err)
	}
	return 0, stdout.String(), stderr.String()
}

// waitFor calls cond until it returns true or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within the deadline", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestIntegrationAdmin runs every administrative command through the CLI
// against a live custode serve under SMTP load: each goes through the
// server's admin socket, and takes effect without a restart.
func TestIntegrationAdmin(t *testing.T) {
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
	run := func(stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := runBinary(t, bin, stdin, args...)
		if code != 0 {
			t.Fatalf("custode %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	// The SMTP load: every transaction must get its 250.
	var sent, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				msg := fmt.Sprintf("From: mario.rossi@pec.alfa.test\r\nTo: lucia.bianchi@pec.beta.test\r\nSubject: load %d-%d\r\nMessage-ID: <load-%d-%d@client.test>\r\n\r\ncarico\r\n", w, n, w, n)
				if err := submitOnce(a.submission, roots, msg); err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				} else {
					sent.Add(1)
				}
			}
		}()
	}
	defer func() {
		stopLoad()
		wg.Wait()
	}()
	waitFor(t, "the first messages of the load", func() bool { return sent.Load() >= 3 })

	// mailbox add: the new mailbox receives mail at once.
	out := run("secret-giulia-1\n", "mailbox", "add", "-data", a.data, "giulia.verdi@pec.alfa.test")
	t.Logf("mailbox add: %s", out)
	if !strings.Contains(run("", "mailbox", "list", "-data", a.data), "giulia.verdi@pec.alfa.test") {
		t.Fatal("mailbox list through the admin socket does not list the mailbox added")
	}
	msg := "From: mario.rossi@pec.alfa.test\r\nTo: giulia.verdi@pec.alfa.test\r\nSubject: benvenuta\r\nMessage-ID: <giulia-1@client.test>\r\n\r\nciao\r\n"
	if err := submitTo(a.submission, roots, "giulia.verdi@pec.alfa.test", msg); err != nil {
		t.Fatalf("mail to the mailbox added: %v", err)
	}
	waitFor(t, "the busta in the mailbox added", func() bool {
		for _, raw := range imapFetchAll(t, a.imap, "giulia.verdi@pec.alfa.test", "secret-giulia-1", caA) {
			if m, err := pec.Parse(raw, pec.ParseOptions{}); err == nil && m.Kind == pec.KindBustaTrasporto {
				return true
			}
		}
		return false
	})

	// hold place: the next object archived in mario's archivio di
	// sicurezza is under legal hold.
	store, err := localstore.Open(filepath.Join(a.data, "worm"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	listKeys := func() map[string]bool {
		keys := map[string]bool{}
		for e, err := range store.List(context.Background(), sicurezza.DefaultPrefix) {
			if err != nil {
				t.Fatal(err)
			}
			keys[e.Key] = true
		}
		return keys
	}
	out = run("", "hold", "place", "-data", a.data, "-case", "causa-1", "-mailbox", "mario.rossi@pec.alfa.test", "-reason", "giudizio", "-actor", "avv.rossi")
	t.Logf("hold place: %d lines", strings.Count(out, "\n"))
	if !strings.Contains(run("", "hold", "list", "-data", a.data), "causa-1") {
		t.Fatal("hold list does not list the hold placed")
	}
	before := listKeys()
	waitFor(t, "an object archived after the hold", func() bool {
		n := 0
		for key := range listKeys() {
			if before[key] {
				continue
			}
			info, err := store.Stat(context.Background(), key, "")
			if err != nil {
				t.Fatal(err)
			}
			if !info.LegalHold {
				t.Fatalf("%s, archived after the hold was placed on its mailbox, is not under legal hold", key)
			}
			n++
		}
		return n > 0
	})

	// api token and policy apply: a token for a user no policy names is
	// refused with 403; once a policy making it an operator is applied,
	// the same token works: neither needed a restart.
	token := strings.TrimSpace(run("", "api", "token", "-data", a.data, "-user", "ops1"))
	apiGet := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+a.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := apiGet("/v1/checkpoints/latest"); code != http.StatusForbidden {
		t.Fatalf("the new token without a role: HTTP %d, want 403 (authenticated, no role)", code)
	}
	// Ordinary mail to giulia is delivered in a busta di anomalia until
	// the policy below rejects it.
	ordinary := func() error {
		c, err := smtp.Dial(a.ricezione)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.SendMail("qualcuno@example.org", []string{"giulia.verdi@pec.alfa.test"},
			strings.NewReader("From: qualcuno@example.org\r\nTo: giulia.verdi@pec.alfa.test\r\nSubject: ordinaria\r\nMessage-ID: <ordinaria@example.org>\r\n\r\nciao\r\n"))
	}
	if err := ordinary(); err != nil {
		t.Fatalf("ordinary mail before the policy: %v", err)
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(`version: 1
retention:
  log: 30 months
  archivio_di_sicurezza: 10 years
  virus_quarantine: 30 months
  exports: 30 months
domains:
  pec.alfa.test:
    non_pec: anomalia
    archivio_di_sicurezza: false
mailboxes:
  mario.rossi@pec.alfa.test:
    archivio_di_sicurezza: true
  giulia.verdi@pec.alfa.test:
    non_pec: reject
roles:
  operators: [ops1]
  auditors: []
  legal: {}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("policy apply: %s", run("", "policy", "apply", "-data", a.data, "-actor", "admin", policy))
	waitFor(t, "the applied policy's operator allowed", func() bool { return apiGet("/v1/checkpoints/latest") == http.StatusOK })
	var se *smtp.SMTPError
	if err := ordinary(); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("ordinary mail to a mailbox the applied policy makes reject it: %v, want 550", err)
	}

	// Exports of a ricevuta and of a titolare's log.
	var id string
	for _, raw := range imapFetchAll(t, a.imap, "mario.rossi@pec.alfa.test", "secret-mario-1", caA) {
		if m, err := pec.Parse(raw, pec.ParseOptions{}); err == nil && m.Kind == pec.KindAccettazione && m.Daticert != nil {
			id = m.Daticert.Identificativo
			break
		}
	}
	if id == "" {
		t.Fatal("no ricevuta di accettazione in mario's mailbox")
	}
	dir := t.TempDir()
	run("", "export", "receipt", "-data", a.data, "-id", id, "-kind", "accettazione", "-out", filepath.Join(dir, "acc.zip"), "-actor", "avv.rossi")
	day := time.Now().Format("2006-01-02")
	run("", "export", "extract", "-data", a.data, "-mailbox", "mario.rossi@pec.alfa.test", "-from", day, "-out", filepath.Join(dir, "extract.zip"), "-actor", "avv.rossi")
	if _, err := os.Stat(filepath.Join(dir, "acc.zip")); err != nil {
		t.Errorf("export receipt wrote no bundle: %v", err)
	}
	run("", "verify", "-anchor", caA, filepath.Join(dir, "acc.zip"))

	// The audit and both verifications, read-only against the live ledger.
	// Under load a snapshot may catch the newest checkpoint waiting for
	// its token, or a transaction between its receipts, which the audit
	// reports (exit 1): it passes once they caught up.
	var auditOut string
	var audits int
	defer func() {
		if t.Failed() {
			t.Logf("the last audit:\n%s", auditOut)
		}
	}()
	waitFor(t, "a clean audit", func() bool {
		code, out, errOut := runBinary(t, bin, "", "audit", "-data", a.data, "-from", day, "-actor", "revisore")
		auditOut = out + errOut
		audits++
		if code != 0 && code != 1 {
			t.Fatalf("audit: exit %d\n%s", code, auditOut)
		}
		return code == 0
	})
	t.Logf("audits run until a clean one: %d", audits)
	t.Logf("audit: %s", auditOut)
	if out := run("", "ledger", "verify", "-data", a.data); !strings.Contains(out, "OK") {
		t.Errorf("ledger verify: %s", out)
	}
	waitFor(t, "a sealed segment", func() bool {
		for _, err := range store.List(context.Background(), seal.DefaultPrefix) {
			return err == nil
		}
		return false
	})
	t.Logf("archive verify: %s", run("", "archive", "verify", "-data", a.data))
	run("", "ledger", "checkpoints", "-data", a.data)

	// The rest of the administrative commands, through the socket too.
	run("", "ledger", "get", "-data", a.data, "1")
	run("", "ledger", "proof", "-data", a.data, "1")
	run("", "archive", "find", "-data", a.data, "-mailbox", "mario.rossi@pec.alfa.test", "-reason", "verifica", "-actor", "revisore")
	run("", "quarantine", "list", "-data", a.data)
	run("", "purge", "-data", a.data, "-dry-run", "-actor", "admin")
	run("", "hold", "release", "-data", a.data, "-case", "causa-1", "-actor", "avv.rossi")
	run("", "mailbox", "quota", "-data", a.data, "giulia.verdi@pec.alfa.test", "2G")
	run("secret-giulia-2\n", "mailbox", "passwd", "-data", a.data, "giulia.verdi@pec.alfa.test")
	imapFetchAll(t, a.imap, "giulia.verdi@pec.alfa.test", "secret-giulia-2", caA) // fails on a refused login
	run(`{"kind":"accettazione","identificativo":"importato-1@pec.alfa.test","riferimento_temporale":"2026-11-23T10:00:00+01:00","mittente":"a@pec.alfa.test","destinatari":[{"indirizzo":"b@pec.beta.test","tipo":"certificato"}],"gestore":"Alfa","oggetto":"importato"}`+"\n",
		"ledger", "append", "-data", a.data)
	if out := run("", "ledger", "verify", "-data", a.data); !strings.Contains(out, "OK") {
		t.Errorf("ledger verify after the append: %s", out)
	}
	// Each went to the server: none could have opened the stores itself
	// while it runs, and the server logged each.
	logs, err := os.ReadFile(filepath.Join(a.data, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(logs), "admin: command"); n < 20 {
		t.Errorf("the server logged %d commands from its admin socket, want at least 20", n)
	}

	// SIGHUP: a renewed TLS certificate is served without a restart.
	cfg, err := config.Load(a.data)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.WriteTLSCertificate(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	renewed, err := os.ReadFile(cfg.Path(cfg.Server.TLSCert))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(renewed)
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate served", func() bool {
		conn, err := tls.Dial("tcp", a.api, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			return false
		}
		defer conn.Close()
		return bytes.Equal(conn.ConnectionState().PeerCertificates[0].Raw, blk.Bytes)
	})
	if code := apiGet("/v1/checkpoints/latest"); code != http.StatusOK {
		t.Errorf("after SIGHUP the token gets HTTP %d", code)
	}

	stopLoad()
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d SMTP transactions failed while administering (of %d): %v", n, n+sent.Load(), failures[:min(5, len(failures))])
	}
	t.Logf("%d SMTP transactions, %d failed", sent.Load(), failed.Load())
	a.stop(t)
	b.stop(t)
}

// submitTo submits msg from mario to rcpt, returning any refusal.
func submitTo(addr string, roots *x509.CertPool, rcpt, msg string) error {
	c, err := smtp.DialStartTLS(addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "mario.rossi@pec.alfa.test", "secret-mario-1")); err != nil {
		return err
	}
	return c.SendMail("mario.rossi@pec.alfa.test", []string{rcpt}, strings.NewReader(msg))
}
