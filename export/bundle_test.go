package export_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

type fixture struct {
	dev    *pki.DevSet
	ledger *ledger.Ledger
	store  archive.Store
	signer *smime.Signer
	caPEM  []byte
	caFile string
	seqs   map[string]uint64 // "original", "reproduction"
}

// fixtureDev is the development PKI of the fixtures: three 2048-bit RSA
// keys, made once per package run instead of once per test (they were a
// large part of the package's time under -race). The tests only read it.
var fixtureDev = sync.OnceValues(func() (*pki.DevSet, error) {
	return pki.NewDevSet("Alfa PEC S.p.A.", "pec.alfa.test", time.Now().Add(-time.Hour))
})

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dev, err := fixtureDev()
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, dev)
}

// newFixtureWith is newFixture with the given PKI.
func newFixtureWith(t *testing.T, dev *pki.DevSet) *fixture {
	t.Helper()
	return newFixtureIn(t, dev, t.TempDir(), t.Cleanup)
}

// newFixtureIn is newFixtureWith in directory dir, the ledger closed by
// a function given to cleanup.
func newFixtureIn(t *testing.T, dev *pki.DevSet, dir string, cleanup func(func())) *fixture {
	t.Helper()
	ctx := context.Background()
	if err := dev.WriteDir(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{Certificate: dev.TSA.Certificate, Signer: dev.TSA.Key,
		Chain: []*x509.Certificate{dev.CA.Certificate}, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(dir, "ledger"), Checkpoints: &ledger.CheckpointOptions{
		Origin: "pec.alfa.test/custode", Every: 1000, Interval: 50 * time.Millisecond,
		Signer:  &ledger.CMSSigner{Certificate: dev.Gestore.Certificate, Key: dev.Gestore.Key},
		Stamper: a, RetryInterval: 20 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	cleanup(func() { l.Close() })
	store, err := localstore.Open(filepath.Join(dir, "worm"), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signer := &smime.Signer{Certificate: dev.Gestore.Certificate, Key: dev.Gestore.Key}
	g, err := pec.NewGestore("Alfa PEC S.p.A.", "pec.alfa.test", signer, pec.RandomIDs(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dev: dev, ledger: l, store: store, signer: signer, seqs: map[string]uint64{},
		caFile: filepath.Join(dir, "pki", pki.CACertFile)}
	if f.caPEM, err = os.ReadFile(f.caFile); err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{"original", "reproduction"} {
		msg := "From: mario@pec.alfa.test\r\nTo: lucia@pec.beta.test\r\nSubject: Contratto " + which + "\r\nMessage-ID: <1@client>\r\n\r\nTesto\r\n"
		tx, err := g.NewTransaction([]byte(msg), pec.Envelope{Mittente: "mario@pec.alfa.test",
			Destinatari: []daticert.Destinatario{{Address: "lucia@pec.beta.test", Tipo: daticert.DestinatarioCertificato}}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		acc, err := g.Accettazione(tx)
		if err != nil {
			t.Fatal(err)
		}
		key := ""
		if which == "original" {
			info, err := archive.PutContent(ctx, store, "sicurezza/", acc.Message, archive.PutOptions{
				Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: time.Now().AddDate(10, 0, 0)}})
			if err != nil {
				t.Fatal(err)
			}
			key = info.Key
		}
		sum := sha256.Sum256(acc.Message)
		seqs, err := l.Append(ctx, ledger.Event{Kind: ledger.KindAccettazione, Identificativo: tx.Identificativo, ClientMessageID: tx.MessageID,
			Time: tx.Time, Mittente: tx.Mittente, Oggetto: tx.Subject, Gestore: "Alfa PEC S.p.A.", SHA256: sum[:], ArchiveKey: key,
			Destinatari: []ledger.Recipient{{Address: "lucia@pec.beta.test", Tipo: ledger.TipoCertificato}}, Related: []string{acc.MessageID}})
		if err != nil {
			t.Fatal(err)
		}
		f.seqs[which] = seqs[0]
		// Each entry has a timestamped checkpoint of its own before the
		// next is appended: the first checkpoint of "original" never
		// covers "reproduction", whatever the machine's speed (the tamper
		// table swaps one for the other).
		waitStamped(t, l, seqs[0])
	}
	return f
}

// waitStamped waits for a timestamped checkpoint that covers entry seq.
func waitStamped(t *testing.T, l *ledger.Ledger, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a bound on a hang, not on speed
	for {
		cp, err := l.LatestCheckpoint(context.Background())
		if err == nil && cp.Size > seq && !cp.Pending() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no timestamped checkpoint covers entry %d", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) bundle(t *testing.T, which string) []byte {
	t.Helper()
	b, err := export.Build(context.Background(), export.BundleOptions{Ledger: f.ledger, Store: f.store, Seq: f.seqs[which],
		Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	if b.Reproduction != (which == "reproduction") {
		t.Fatalf("%s: Reproduction = %v", which, b.Reproduction)
	}
	var buf bytes.Buffer
	if err := b.WriteZip(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func verify(t *testing.T, f *fixture, zipped []byte) *export.VerifyReport {
	t.Helper()
	rep, err := export.VerifyBundle(bytes.NewReader(zipped), int64(len(zipped)), export.VerifyOptions{Anchors: []*x509.Certificate{f.dev.CA.Certificate}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func failures(rep *export.VerifyReport) string {
	var out []string
	for _, c := range rep.Checks {
		if !c.OK {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return strings.Join(out, "\n")
}

func TestBundleVerifies(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, which := range []string{"original", "reproduction"} {
		t.Run(which, func(t *testing.T) {
			z := f.bundle(t, which)
			rep := verify(t, f, z)
			if !rep.OK() {
				t.Fatalf("bundle does not verify:\n%s", failures(rep))
			}
			if rep.Reproduction != (which == "reproduction") {
				t.Errorf("Reproduction = %v", rep.Reproduction)
			}
			byHand(t, f, z, which)
		})
	}
}

// byHand runs the commands VERIFY.txt gives, with stock tools.
func byHand(t *testing.T, f *fixture, z []byte, which string) {
	t.Helper()
	dir := t.TempDir()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	for _, zf := range zr.File {
		rc, _ := zf.Open()
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		p := filepath.Join(dir, zf.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("sha256sum", "-c", "manifest.sha256")
	run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "manifest.p7s", "-content", "manifest.sha256", "-CAfile", f.caFile, "-purpose", "any", "-out", os.DevNull)
	run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "checkpoint.p7s", "-content", "checkpoint.txt", "-CAfile", f.caFile, "-purpose", "any", "-out", os.DevNull)
	if out := run("openssl", "ts", "-verify", "-token_in", "-in", "checkpoint.tsr", "-data", "checkpoint.txt", "-CAfile", f.caFile); !strings.Contains(out, "OK") {
		t.Errorf("openssl ts -verify: %s", out)
	}
	if which == "extract" {
		if pdf, _ := os.ReadFile(filepath.Join(dir, "extract.pdf")); !bytes.HasPrefix(pdf, []byte("%PDF-1.")) {
			t.Error("extract.pdf is not a PDF")
		}
		return
	}
	run("openssl", "smime", "-verify", "-in", "receipt.eml", "-CAfile", f.caFile, "-purpose", "any", "-out", os.DevNull)
	if pdf, _ := os.ReadFile(filepath.Join(dir, "attestation.pdf")); !bytes.HasPrefix(pdf, []byte("%PDF-1.")) || !bytes.HasSuffix(pdf, []byte("%%EOF\n")) {
		t.Error("attestation.pdf is not a PDF")
	}
	if which == "original" {
		entry, _ := os.ReadFile(filepath.Join(dir, "entry.json"))
		receipt, _ := os.ReadFile(filepath.Join(dir, "receipt.eml"))
		sum := sha256.Sum256(receipt)
		if !bytes.Contains(entry, []byte(strings.ToLower(hexString(sum[:])))) {
			t.Error("entry.json does not record the receipt's SHA-256")
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestTamperedBundles: a byte flipped in any file, a file added or
// removed, or the wrong anchor: the verifier fails and says where.
func TestTamperedBundles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	orig := f.bundle(t, "original")
	names := []string{export.FileReceipt, export.FileEntry, export.FileProof, export.FileCheckpoint, export.FileCheckpointSig,
		export.FileCheckpointTSR, export.FileManifest, export.FileManifestSig, export.FileAttestation}
	for _, name := range names {
		t.Run("flip in "+name, func(t *testing.T) {
			z := rewrite(t, orig, func(n string, b []byte) []byte {
				if n == name && len(b) > 0 {
					b = bytes.Clone(b)
					b[len(b)/2] ^= 0x01
				}
				return b
			})
			rep := verify(t, f, z)
			if rep.OK() {
				t.Fatalf("a flipped byte in %s went unnoticed", name)
			}
			if !strings.Contains(failures(rep), name) {
				t.Errorf("a flipped byte in %s: the failures do not name it:\n%s", name, failures(rep))
			}
		})
	}
	t.Run("extra file", func(t *testing.T) {
		z := rewrite(t, orig, nil, "extra.txt")
		if rep := verify(t, f, z); rep.OK() {
			t.Error("an added file went unnoticed")
		}
	})
	t.Run("wrong anchor", func(t *testing.T) {
		other, err := pki.NewDevSet("Altro", "pec.altro.test", time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := export.VerifyBundle(bytes.NewReader(orig), int64(len(orig)), export.VerifyOptions{Anchors: []*x509.Certificate{other.CA.Certificate}})
		if err != nil || rep.OK() {
			t.Errorf("verified against another CA: %v", err)
		}
	})
	t.Run("not a zip", func(t *testing.T) {
		if _, err := export.VerifyBundle(bytes.NewReader([]byte("PK garbage")), 10, export.VerifyOptions{Anchors: []*x509.Certificate{f.dev.CA.Certificate}}); err == nil {
			t.Error("garbage accepted")
		}
	})
}

// TestBundleInParts: a bundle over the limit is written in parts, each
// within it, that verify together in any order; a missing part, a changed
// piece or a changed note fails, naming the file.
func TestBundleInParts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	b, err := export.Build(context.Background(), export.BundleOptions{Ledger: f.ledger, Store: f.store, Seq: f.seqs["original"],
		Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	// The same Bundle written whole: a second Build would sign at another
	// instant, so its bytes are not comparable.
	var whole bytes.Buffer
	if err := b.WriteZip(&whole); err != nil {
		t.Fatal(err)
	}
	one, err := b.WriteParts(0)
	if err != nil || len(one) != 1 || !bytes.Equal(one[0], whole.Bytes()) {
		t.Fatalf("a bundle that fits is not one part as WriteZip writes it: %d parts, %v", len(one), err)
	}
	// A limit that cuts the bundle in a few parts, whatever its size.
	limit := whole.Len() / 4
	parts, err := b.WriteParts(limit)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("%d parts: the test wants a bundle larger than %d bytes", len(parts), limit)
	}
	for i, p := range parts {
		if len(p) > limit {
			t.Errorf("part %d is %d bytes, over %d", i+1, len(p), limit)
		}
	}
	check := func(parts [][]byte) *export.VerifyReport {
		t.Helper()
		var ps []export.Part
		for _, p := range parts {
			ps = append(ps, export.Part{R: bytes.NewReader(p), Size: int64(len(p))})
		}
		rep, err := export.VerifyBundleParts(ps, export.VerifyOptions{Anchors: []*x509.Certificate{f.dev.CA.Certificate}})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := check(parts); !rep.OK() {
		t.Fatalf("parts do not verify:\n%s", failures(rep))
	}
	reversed := slices.Clone(parts)
	slices.Reverse(reversed)
	if rep := check(reversed); !rep.OK() {
		t.Fatalf("parts in reverse order do not verify:\n%s", failures(rep))
	}
	// A part's file, as a filer would see it.
	firstFile := func(z []byte) string {
		zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
		if err != nil || len(zr.File) == 0 {
			t.Fatal(err)
		}
		return zr.File[0].Name
	}
	last := parts[len(parts)-1]
	flip := func(z []byte, name string) []byte {
		return rewrite(t, z, func(n string, b []byte) []byte {
			if n == name {
				b = bytes.Clone(b)
				b[len(b)/2] ^= 1
			}
			return b
		})
	}
	tests := []struct {
		name  string
		parts [][]byte
		want  string
	}{
		{"first part only", parts[:1], "give every part"},
		{"last part missing", parts[:len(parts)-1], firstFile(last)},
		{"piece changed", append(slices.Clone(parts[:len(parts)-1]), flip(last, firstFile(last))), firstFile(last)},
		{"note changed", append([][]byte{flip(parts[0], export.FileSplitNote)}, parts[1:]...), export.FileSplitNote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := check(tt.parts)
			if rep.OK() || !strings.Contains(failures(rep), tt.want) {
				t.Errorf("want a failure naming %q, got:\n%s", tt.want, failures(rep))
			}
		})
	}
}

// rewrite copies a ZIP, passing each file through change, and adds files.
func rewrite(t *testing.T, z []byte, change func(name string, b []byte) []byte, add ...string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := newTestZipWriter(&out)
	for _, zf := range zr.File {
		rc, _ := zf.Open()
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		data := b.Bytes()
		if change != nil {
			data = change(zf.Name, data)
		}
		w, _ := zw.Create(zf.Name)
		w.Write(data)
	}
	for _, n := range add {
		w, _ := zw.Create(n)
		w.Write([]byte("added"))
	}
	zw.Close()
	return out.Bytes()
}

func TestExtract(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var progress [][2]uint64
	b, err := export.Extract(ctx, export.ExtractOptions{Ledger: f.ledger, Mailbox: "Mario@pec.alfa.test",
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM,
		Progress: func(done, total uint64) { progress = append(progress, [2]uint64{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	// Two entries found (total not known yet), then their two proofs.
	if want := [][2]uint64{{1, 0}, {2, 0}, {1, 2}, {2, 2}}; !slices.Equal(progress, want) {
		t.Errorf("progress %v, want %v", progress, want)
	}
	var buf bytes.Buffer
	if err := b.WriteZip(&buf); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, f, buf.Bytes())
	if !rep.OK() {
		t.Fatalf("extract does not verify:\n%s", failures(rep))
	}
	if !strings.Contains(rep.Checks[len(rep.Checks)-3].Detail, "2 entries") {
		t.Errorf("checks: %+v", rep.Checks)
	}
	logLines := string(b.File(export.FileExtractLog))
	if strings.Count(logLines, "tipo=accettazione (Accettazione): mittente=mario@pec.alfa.test: destinatari=lucia@pec.beta.test (certificato)") != 2 {
		t.Errorf("extract.log:\n%s", logLines)
	}
	if csv := string(b.File(export.FileExtractCSV)); strings.Count(csv, "\n") != 3 || !strings.HasPrefix(csv, "seq,riferimento_temporale,tipo") {
		t.Errorf("extract.csv:\n%s", csv)
	}
	if html := string(b.File(export.FileExtractHTML)); !strings.Contains(html, "Ricevuta di accettazione") || !strings.Contains(html, "<table>") {
		t.Errorf("extract.html:\n%s", html)
	}
	byHand(t, f, buf.Bytes(), "extract")
	// Tampering with one entry of extract.json is caught.
	z := rewrite(t, buf.Bytes(), func(n string, data []byte) []byte {
		if n == export.FileExtract {
			return bytes.Replace(data, []byte("Contratto original"), []byte("Contratto originaL"), 1)
		}
		return data
	})
	if rep := verify(t, f, z); rep.OK() {
		t.Error("a changed entry in the extract went unnoticed")
	}
	// Another mailbox's transactions are not in it.
	other, err := export.Extract(ctx, export.ExtractOptions{Ledger: f.ledger, Mailbox: "nessuno@pec.beta.test",
		From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(other.File(export.FileExtract)), "mario@") {
		t.Error("another mailbox's extract holds mario's transactions")
	}
}

func TestAudit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	start := time.Now().Add(-30 * time.Hour)
	rcpt := []ledger.Recipient{{Address: "lucia@pec.beta.test", Tipo: ledger.TipoCertificato}}
	ev := func(kind ledger.Kind, id, gestore string, at time.Duration, details map[string]string) ledger.Event {
		return ledger.Event{Kind: kind, Identificativo: id, Time: start.Add(at), Mittente: "mario@pec.alfa.test", Gestore: gestore,
			Destinatari: rcpt, SHA256: make([]byte, 32), Details: details}
	}
	const us, them = "Alfa PEC S.p.A.", "Beta PEC S.p.A."
	lucia := map[string]string{"destinatario": "lucia@pec.beta.test"}
	events := []ledger.Event{
		// complete
		ev(ledger.KindAccettazione, "ok", us, 0, nil), ev(ledger.KindPostaCertificata, "ok", us, 0, nil),
		ev(ledger.KindPresaInCarico, "ok", them, time.Second, map[string]string{"ricezione": "lucia@pec.beta.test"}),
		ev(ledger.KindAvvenutaConsegna, "ok", them, 3*time.Second, lucia),
		// no accettazione, two consegne
		ev(ledger.KindPostaCertificata, "bad", us, time.Minute, nil),
		ev(ledger.KindPresaInCarico, "bad", them, time.Minute, map[string]string{"ricezione": "lucia@pec.beta.test"}),
		ev(ledger.KindAvvenutaConsegna, "bad", them, time.Minute, lucia), ev(ledger.KindAvvenutaConsegna, "bad", them, 2*time.Minute, lucia),
		// never delivered, no 24-hour avviso
		ev(ledger.KindAccettazione, "lost", us, time.Hour, nil), ev(ledger.KindPostaCertificata, "lost", us, time.Hour, nil),
	}
	if _, err := f.ledger.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	// A TSA outage of 45 minutes, as the checkpointer records one.
	if err := f.ledger.RecordOutage(ctx, us, "tsa", start.Add(2*time.Hour), start.Add(2*time.Hour+45*time.Minute), "no timestamp token"); err != nil {
		t.Fatal(err)
	}
	for {
		cp, err := f.ledger.LatestCheckpoint(ctx)
		if err == nil && cp.Size > f.ledger.Head().Size-2 && !cp.Pending() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.dev.CA.Certificate)
	rep, err := export.Audit(ctx, export.AuditOptions{Ledger: f.ledger, Roots: roots, TSARoots: roots, Gestore: us,
		From: start.Add(-time.Minute), To: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Integrity.OK() {
		t.Errorf("integrity: %+v", rep.Integrity.Problems)
	}
	got := map[string]string{}
	var clock []string
	for _, fd := range rep.Findings {
		if fd.Check == "clock" {
			// The events above are back-dated 30 hours, after a
			// checkpoint made now: the audit sees a clock running behind
			// (in the five entries of our own gestore).
			clock = append(clock, fd.Detail)
			continue
		}
		got[fd.Identificativo] += fd.Check + ";"
	}
	if len(clock) != 1 || !strings.Contains(clock[0], "5 entries") || !strings.Contains(clock[0], "clock ran behind") {
		t.Errorf("clock findings: %q", clock)
	}
	if p02 := string(rep.P02()); !strings.HasSuffix(p02, ",03,45,N\n") || len(rep.Outages) != 1 { // the TSA's: a malfunzione
		t.Errorf("P02:\n%s", p02)
	}
	want := map[string]string{"bad": "accettazione;consegna;", "lost": "consegna;"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("findings for %s: %q, want %q", id, got[id], w)
		}
	}
	if got["ok"] != "" {
		t.Errorf("the complete transaction has findings: %s", got["ok"])
	}
	if rep.OK() || rep.Transactions != 3 || rep.Deliveries != 2 || rep.DeliveryP50 < 3 {
		t.Errorf("report: ok %v, %d transactions, %d deliveries, p50 %.1f", rep.OK(), rep.Transactions, rep.Deliveries, rep.DeliveryP50)
	}
	p01b, err := rep.P01("PEC01", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	p01 := string(p01b)
	if !strings.HasPrefix(p01, "CodGestPEC,Quadrimestre,Anno,NumDomini,NumCaselle,MsgUscita,MsgIngresso,VirusIngresso,VirusUscita\nPEC01,") ||
		!strings.Contains(p01, ",1,2,4,0,0,0\n") {
		t.Errorf("P01:\n%s", p01)
	}
	if txt := rep.Text(); !strings.Contains(txt, "PROBLEMI TROVATI") || !strings.Contains(txt, "[consegna] lost") {
		t.Errorf("text:\n%s", txt)
	}
}
