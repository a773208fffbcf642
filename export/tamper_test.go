package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"mime/quotedprintable"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/tsa"
)

// tamperKit is what the tamper table works on: genuine bundles, and the
// keys of everyone who might try to pass for the gestore.
type tamperKit struct {
	f        *fixture
	anchors  []*x509.Certificate
	auth     *tsa.Authority
	gestore  signKey
	tls      signKey // the gestore's TLS server certificate (CN=localhost)
	tsaKey   signKey // its TSA's
	beta     signKey // another gestore, under the same CA
	expired  signKey // the gestore's previous certificate, expired a year ago
	alias    signKey // the gestore's name, another service address
	orig     []byte  // original accettazione, at the newest checkpoint
	older    []byte  // the same, at an earlier checkpoint
	repro    []byte  // reproduction of transaction B
	reproA   []byte  // reproduction of transaction A
	parts    [][]byte
	attacker []signKey
}

// tamperPKI is a development PKI whose CA has been valid for five years,
// so that a certificate that expired a year ago chains to it.
func tamperPKI(t *testing.T) *pki.DevSet {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA(pkix.Name{Country: []string{"IT"}, Organization: []string{"AgID test"}, CommonName: "Test CA1"}, now.AddDate(-5, 0, 0), now.AddDate(10, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	g, err := pki.IssueGestore(ca, "Alfa PEC S.p.A.", "pec.alfa.test", now.Add(-time.Hour), now.AddDate(3, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := pki.IssueTSA(ca, pkix.Name{Country: []string{"IT"}, Organization: []string{"Alfa PEC S.p.A."}, CommonName: "Alfa TSA"}, now.AddDate(-5, 0, 0), now.AddDate(3, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	return &pki.DevSet{CA: ca, Gestore: g, TSA: ts}
}

// sharedKit is the tamper kit of the package run: its four tests only
// read it, and building it (eight RSA keys, a ledger, five bundles and two
// timestamped checkpoints) once instead of once per test is most of their
// time under -race. Its directory and ledger go when TestMain ends.
var sharedKit struct {
	once     sync.Once
	kit      *tamperKit
	dir      string
	cleanups []func()
}

// newTamperKit returns the shared tamper kit, built by the first test
// that asks for it.
func newTamperKit(t *testing.T) *tamperKit {
	t.Helper()
	sharedKit.once.Do(func() {
		dir, err := os.MkdirTemp("", "custode-export-tamperkit-")
		if err != nil {
			t.Fatal(err)
		}
		sharedKit.dir = dir
		sharedKit.kit = buildTamperKit(t, dir, func(f func()) { sharedKit.cleanups = append(sharedKit.cleanups, f) })
	})
	if sharedKit.kit == nil {
		t.Fatal("the shared tamper kit could not be built (see the first test that asked for it)")
	}
	return sharedKit.kit
}

// removeSharedKit closes the shared kit's ledger and removes its directory.
func removeSharedKit() {
	for i := len(sharedKit.cleanups) - 1; i >= 0; i-- {
		sharedKit.cleanups[i]()
	}
	if sharedKit.dir != "" {
		os.RemoveAll(sharedKit.dir)
	}
}

// buildTamperKit builds a tamper kit in dir, the ledger closed by a
// function given to cleanup.
func buildTamperKit(t *testing.T, dir string, cleanup func(func())) *tamperKit {
	t.Helper()
	ctx := context.Background()
	dev := tamperPKI(t)
	f := newFixtureIn(t, dev, dir, cleanup)
	now := time.Now()
	chain := []*x509.Certificate{dev.CA.Certificate}
	k := &tamperKit{f: f, anchors: chain,
		gestore: signKey{"the gestore", dev.Gestore.Certificate, dev.Gestore.Key, chain},
		tsaKey:  signKey{"the TSA key", dev.TSA.Certificate, dev.TSA.Key, chain},
	}
	tlsKP, err := pki.IssueTLSServer(dev.CA, []string{"localhost"}, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	k.tls = signKey{"the TLS key", tlsKP.Certificate, tlsKP.Key, chain}
	betaKP, err := pki.IssueGestore(dev.CA, "Beta PEC S.p.A.", "pec.beta.test", now.Add(-time.Hour), now.AddDate(3, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	k.beta = signKey{"another gestore's key", betaKP.Certificate, betaKP.Key, chain}
	oldKP, err := pki.IssueGestore(dev.CA, "Alfa PEC S.p.A.", "pec.alfa.test", now.AddDate(-4, 0, 0), now.AddDate(-1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	k.expired = signKey{"the expired key, back-dated", oldKP.Certificate, oldKP.Key, chain}
	aliasKP, err := pki.IssueGestore(dev.CA, "Alfa PEC S.p.A.", "pec.alfa-bis.test", now.Add(-time.Hour), now.AddDate(3, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	k.alias = signKey{"the gestore's name with another service address", aliasKP.Certificate, aliasKP.Key, chain}
	k.attacker = []signKey{k.tls, k.tsaKey, k.beta, k.expired}
	if k.auth, err = tsa.NewAuthority(tsa.AuthorityConfig{Certificate: dev.TSA.Certificate, Signer: dev.TSA.Key,
		Chain: chain, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}}); err != nil {
		t.Fatal(err)
	}

	k.older = f.bundle(t, "original")
	k.repro = f.bundle(t, "reproduction")
	b, err := export.Build(ctx, export.BundleOptions{Ledger: f.ledger, Seq: f.seqs["original"], Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := b.WriteZip(&buf); err != nil {
		t.Fatal(err)
	}
	k.reproA = bytes.Clone(buf.Bytes())
	// A newer checkpoint, for the bundle the table tampers with.
	first := b.Checkpoint.Size
	if _, err := f.ledger.Append(ctx, ledger.Event{Kind: ledger.KindQuery, Actor: "test", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute) // a bound on a hang, not on speed
	for {
		cp, err := f.ledger.LatestCheckpoint(ctx)
		if err == nil && cp.Size > first && !cp.Pending() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second timestamped checkpoint")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ob, err := export.Build(ctx, export.BundleOptions{Ledger: f.ledger, Store: f.store, Seq: f.seqs["original"], Signer: f.signer, GestoreCA: f.caPEM, TSACA: f.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := ob.WriteZip(&buf); err != nil {
		t.Fatal(err)
	}
	k.orig = buf.Bytes()
	if k.parts, err = ob.WriteParts(len(k.orig) / 5); err != nil || len(k.parts) < 3 {
		t.Fatalf("parts: %d, %v; the table wants at least three", len(k.parts), err)
	}
	return k
}

// signingTime is when a key claims to sign: the expired key back-dates
// its signature to when it was valid.
func (k *tamperKit) signingTime(s signKey) time.Time {
	if s.cert.NotAfter.Before(time.Now()) {
		return s.cert.NotAfter.AddDate(0, -6, 0)
	}
	return time.Now()
}

// resign lists the files again and signs the manifest by s.
func (k *tamperKit) resign(t *testing.T, files map[string][]byte, s signKey) {
	relist(files)
	files[export.FileManifestSig] = cmsSign(t, files[export.FileManifest], s, k.signingTime(s), nil)
}

// sign makes a detached signature over file by s.
func (k *tamperKit) sign(t *testing.T, files map[string][]byte, file, sig string, s signKey) {
	files[sig] = cmsSign(t, files[file], s, k.signingTime(s), nil)
}

// tamperCase is one attack: a change to a genuine bundle, the verify
// options, and the words the failure must contain.
type tamperCase struct {
	name  string
	parts func(t *testing.T) [][]byte
	opts  export.VerifyOptions
	want  string
}

// edit returns the parts of a one-part bundle z changed by fn.
func edit(z *[]byte, fn func(t *testing.T, files map[string][]byte)) func(t *testing.T) [][]byte {
	return func(t *testing.T) [][]byte {
		files := unzipFiles(t, *z)
		fn(t, files)
		return [][]byte{zipMap(t, files)}
	}
}

// editPart returns the parts with part i changed by fn.
func editPart(parts *[][]byte, i int, fn func(t *testing.T, files map[string][]byte)) func(t *testing.T) [][]byte {
	return func(t *testing.T) [][]byte {
		all := append([][]byte(nil), (*parts)...)
		files := unzipFiles(t, (*parts)[i])
		fn(t, files)
		all[i] = zipMap(t, files)
		return all
	}
}

func (k *tamperKit) cases() []tamperCase {
	var cs []tamperCase
	notGestore := func(file string) string { return file + " is not the gestore's signature" }
	for _, a := range k.attacker {
		wantNamed := map[string]string{
			k.tls.name:     "TLS server certificate",
			k.tsaKey.name:  "time-stamping authority's certificate",
			k.beta.name:    "not the gestore's certificate given to verify",
			k.expired.name: "the gestore's certificate is not valid at",
		}[a.name]
		// A checkpoint may be signed by an earlier certificate of the
		// same gestore (a renewal): the expired key's certificate is one,
		// and fails for its validity at the checkpoint's timestamp.
		notGestoreCP := notGestore
		if a.name == k.expired.name {
			notGestoreCP = func(file string) string { return file + ": the gestore's certificate is not valid at" }
		}
		var pin export.VerifyOptions
		if a.name == k.beta.name {
			pin.Gestore = k.gestore.cert
		}
		cs = append(cs,
			tamperCase{"manifest.p7s re-made with " + a.name, edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				k.sign(t, fs, export.FileManifest, export.FileManifestSig, a)
			}), export.VerifyOptions{}, notGestore(export.FileManifestSig)},
			tamperCase{"checkpoint.p7s and manifest.p7s re-made with " + a.name, edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				k.sign(t, fs, export.FileCheckpoint, export.FileCheckpointSig, a)
				k.resign(t, fs, a)
			}), export.VerifyOptions{}, notGestoreCP(export.FileCheckpointSig)},
			tamperCase{"checkpoint.p7s re-made with " + a.name + ", manifest re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				k.sign(t, fs, export.FileCheckpoint, export.FileCheckpointSig, a)
				k.resign(t, fs, k.gestore)
			}), export.VerifyOptions{}, notGestoreCP(export.FileCheckpointSig)},
			tamperCase{"first-checkpoint.p7s re-made with " + a.name + ", manifest re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				k.sign(t, fs, export.FileFirstCheckpoint, export.FileFirstCheckpointSig, a)
				k.resign(t, fs, k.gestore)
			}), export.VerifyOptions{}, notGestoreCP(export.FileFirstCheckpointSig)},
			tamperCase{"reproduction and manifest.p7s re-made with " + a.name, edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
				fs[export.FileReceipt] = resignSMIME(t, fs[export.FileReceipt], k.anchors, a, k.signingTime(a), nil)
				k.resign(t, fs, a)
			}), export.VerifyOptions{}, "receipt.eml, a reproduction, is not the gestore's signature"},
			tamperCase{"reproduction re-made with " + a.name + ", manifest re-signed by the gestore", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
				fs[export.FileReceipt] = resignSMIME(t, fs[export.FileReceipt], k.anchors, a, k.signingTime(a), nil)
				k.resign(t, fs, k.gestore)
			}), export.VerifyOptions{}, "receipt.eml, a reproduction, is not the gestore's signature"},
			tamperCase{"attestation rewritten, manifest re-signed with " + a.name, edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				fs[export.FileAttestation] = regexp.MustCompile(`Riferimento temporale: [^\n]*`).ReplaceAll(fs[export.FileAttestation], []byte("Riferimento temporale: 01/01/2020 10:00:00 CET"))
				k.resign(t, fs, a)
			}), export.VerifyOptions{}, notGestore(export.FileManifestSig)},
			tamperCase{"certs/gestore.pem, manifest and checkpoint all " + a.name + "'s", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				fs[export.FileGestoreCert] = export.PEMCertificates(a.cert.Raw)
				k.sign(t, fs, export.FileCheckpoint, export.FileCheckpointSig, a)
				k.resign(t, fs, a)
			}), pin, wantNamed},
			tamperCase{"certs/gestore.pem, manifest, checkpoint and reproduction all " + a.name + "'s", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
				fs[export.FileGestoreCert] = export.PEMCertificates(a.cert.Raw)
				fs[export.FileReceipt] = resignSMIME(t, fs[export.FileReceipt], k.anchors, a, k.signingTime(a), nil)
				k.sign(t, fs, export.FileCheckpoint, export.FileCheckpointSig, a)
				k.resign(t, fs, a)
			}), pin, wantNamed},
		)
	}

	// The gestore's own key, after its certificate expired, with a
	// back-dated signingTime and no timestamp token.
	later := k.gestore.cert.NotAfter.AddDate(1, 0, 0)
	cs = append(cs, tamperCase{"manifest.p7s re-made with the gestore's expired key, signingTime back-dated", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		fs[export.FileManifestSig] = cmsSign(t, fs[export.FileManifest], k.gestore, time.Now(), nil)
	}), export.VerifyOptions{Now: later}, "manifest.p7s: the gestore's certificate is not valid at"})
	cs = append(cs, tamperCase{"manifest.p7s with the timestamp token of another signature", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
		other := stamper(t, k.auth)(make([]byte, 32))
		fs[export.FileManifestSig] = cmsSign(t, fs[export.FileManifest], k.gestore, time.Now(), func([]byte) []byte { return other })
	}), export.VerifyOptions{}, "signature timestamp (over SHA-256 of the signature value) does not verify"})
	cs = append(cs, tamperCase{"genuine bundle pinned to another gestore's certificate", edit(&k.orig, func(*testing.T, map[string][]byte) {}),
		export.VerifyOptions{Gestore: k.beta.cert}, "not the gestore's certificate given to verify"})

	// Reproductions bound to their entries.
	swapText := func(from, to string) func(t *testing.T, fs map[string][]byte) {
		return func(t *testing.T, fs map[string][]byte) {
			fs[export.FileReceipt] = resignSMIME(t, fs[export.FileReceipt], k.anchors, k.gestore, time.Now(), func(b []byte) []byte {
				e, _ := ledger.DecodeEntry(fs[export.FileEntry])
				facts := export.ReproductionFacts(e)
				var line string
				for _, l := range facts {
					if strings.HasPrefix(l, from+":") {
						line = l
					}
				}
				// The text part is quoted-printable: a fact line is
				// replaced in its encoded form, soft line breaks included.
				old, repl := qpLine(t, line), qpLine(t, from+": "+to)
				if !bytes.Contains(b, old) {
					t.Fatalf("the reproduction does not hold %q", old)
				}
				return bytes.Replace(b, old, repl, 1)
			})
			k.resign(t, fs, k.gestore)
		}
	}
	cs = append(cs,
		tamperCase{"swapped reproduction: another transaction's genuine reproduction", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileReceipt] = unzipFiles(t, k.reproA)[export.FileReceipt]
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "receipt.eml is the reproduction of another entry"},
		tamperCase{"swapped reproduction, manifest not re-signed", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileReceipt] = unzipFiles(t, k.reproA)[export.FileReceipt]
		}), export.VerifyOptions{}, "receipt.eml has changed"},
		tamperCase{"another transaction's original in a reproduction's bundle", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileReceipt] = unzipFiles(t, k.orig)[export.FileReceipt]
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "neither the original"},
		tamperCase{"reproduction text states another identificativo", edit(&k.repro, swapText("identificativo", "opec.altro@pec.alfa.test")),
			export.VerifyOptions{}, "does not state the entry's identificativo"},
		tamperCase{"reproduction text states another kind", edit(&k.repro, swapText("kind", "avvenuta-consegna")),
			export.VerifyOptions{}, "does not state the entry's kind"},
		tamperCase{"reproduction text states another riferimento temporale", edit(&k.repro, swapText("riferimento_temporale", "2020-01-01T10:00:00.000000000Z")),
			export.VerifyOptions{}, "does not state the entry's riferimento_temporale"},
		tamperCase{"reproduction carries a changed entry.json", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileReceipt] = resignSMIME(t, fs[export.FileReceipt], k.anchors, k.gestore, time.Now(), func(b []byte) []byte {
				i := bytes.Index(b, []byte("filename=entry.json"))
				j := i + bytes.Index(b[i:], []byte("\r\n\r\n")) + 4
				b[j+10] ^= 1 // a base64 letter of the attached entry
				return b
			})
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "not entry.json byte for byte"},
	)

	// Swapped checkpoints.
	older := func(names ...string) func(t *testing.T, fs map[string][]byte) {
		return func(t *testing.T, fs map[string][]byte) {
			old := unzipFiles(t, k.older)
			for _, n := range names {
				fs[n] = old[n]
			}
			k.resign(t, fs, k.gestore)
		}
	}
	cs = append(cs,
		tamperCase{"checkpoint.txt, .p7s, .tsr of an earlier checkpoint, proof of the newer", edit(&k.orig, older(export.FileCheckpoint, export.FileCheckpointSig, export.FileCheckpointTSR)),
			export.VerifyOptions{}, "checkpoint.txt signs"},
		tamperCase{"checkpoint.tsr of another checkpoint", edit(&k.orig, older(export.FileCheckpointTSR)), export.VerifyOptions{}, "checkpoint.tsr is not a valid token"},
		tamperCase{"checkpoint.p7s of another checkpoint", edit(&k.orig, older(export.FileCheckpointSig)), export.VerifyOptions{}, "checkpoint.p7s is not a valid signature"},
		tamperCase{"checkpoint.txt of another checkpoint, its token and signature kept", edit(&k.orig, older(export.FileCheckpoint)), export.VerifyOptions{}, "checkpoint.tsr is not a valid token"},
		tamperCase{"proof.json of another checkpoint", edit(&k.orig, older(export.FileProof)), export.VerifyOptions{}, "checkpoint.txt signs"},
	)

	// The event's time: the first checkpoint and the consistency proof.
	newest := func(names ...[2]string) func(t *testing.T, fs map[string][]byte) {
		return func(t *testing.T, fs map[string][]byte) {
			for _, n := range names {
				fs[n[0]] = fs[n[1]]
			}
			k.resign(t, fs, k.gestore)
		}
	}
	firstFiles := []string{export.FileFirstCheckpoint, export.FileFirstCheckpointSig, export.FileFirstCheckpointTSR}
	editProof := func(re, repl string) func(t *testing.T, fs map[string][]byte) {
		return func(t *testing.T, fs map[string][]byte) {
			p := regexp.MustCompile(re).ReplaceAll(fs[export.FileProof], []byte(repl))
			if bytes.Equal(p, fs[export.FileProof]) {
				t.Fatalf("proof.json has no %s", re)
			}
			fs[export.FileProof] = p
			k.resign(t, fs, k.gestore)
		}
	}
	cpOf := func(t *testing.T, body []byte) *ledger.Checkpoint {
		c, err := ledger.ParseCheckpointBody(body)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cs = append(cs,
		tamperCase{"first-checkpoint.p7s re-made with " + k.alias.name + ", manifest re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			k.sign(t, fs, export.FileFirstCheckpoint, export.FileFirstCheckpointSig, k.alias)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "first-checkpoint.p7s is not the gestore's signature"},
		tamperCase{"checkpoint.p7s re-made with " + k.alias.name + ", manifest re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			k.sign(t, fs, export.FileCheckpoint, export.FileCheckpointSig, k.alias)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "checkpoint.p7s is not the gestore's signature"},
		tamperCase{"first checkpoint swapped for another genuine one (the newest), manifest re-signed by the gestore", edit(&k.orig, newest(
			[2]string{export.FileFirstCheckpoint, export.FileCheckpoint}, [2]string{export.FileFirstCheckpointSig, export.FileCheckpointSig}, [2]string{export.FileFirstCheckpointTSR, export.FileCheckpointTSR})),
			export.VerifyOptions{}, "proof.json's consistency proof is from tree"},
		tamperCase{"first checkpoint swapped for another genuine one, proof.json's first_tree_size and first_root made to match", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			for _, n := range firstFiles {
				fs[n] = fs[strings.Replace(n, "first-", "", 1)]
			}
			c := cpOf(t, fs[export.FileCheckpoint])
			fs[export.FileProof] = regexp.MustCompile(`"first_tree_size": [0-9]+`).ReplaceAll(fs[export.FileProof], []byte(fmt.Sprintf(`"first_tree_size": %d`, c.Size)))
			fs[export.FileProof] = regexp.MustCompile(`"first_root": "[0-9a-f]+"`).ReplaceAll(fs[export.FileProof], []byte(fmt.Sprintf(`"first_root": "%x"`, c.Root)))
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "consistency proof from"},
		tamperCase{"first checkpoint swapped for an earlier genuine one that does not cover the entry, proof.json made to match", edit(&k.repro, func(t *testing.T, fs map[string][]byte) {
			orig := unzipFiles(t, k.orig)
			for _, n := range firstFiles {
				fs[n] = orig[n]
			}
			c := cpOf(t, fs[export.FileFirstCheckpoint])
			fs[export.FileProof] = regexp.MustCompile(`"first_tree_size": [0-9]+`).ReplaceAll(fs[export.FileProof], []byte(fmt.Sprintf(`"first_tree_size": %d`, c.Size)))
			fs[export.FileProof] = regexp.MustCompile(`"first_root": "[0-9a-f]+"`).ReplaceAll(fs[export.FileProof], []byte(fmt.Sprintf(`"first_root": "%x"`, c.Root)))
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "first-checkpoint.txt does not cover the entry"},
		tamperCase{"first checkpoint dropped, manifest re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			for _, n := range firstFiles {
				delete(fs, n)
			}
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "first-checkpoint.txt is missing"},
		tamperCase{"first checkpoint dropped, manifest untouched", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			for _, n := range firstFiles {
				delete(fs, n)
			}
		}), export.VerifyOptions{}, "first-checkpoint.p7s is listed in manifest.sha256 but missing"},
		tamperCase{"consistency proof altered, manifest re-signed by the gestore", edit(&k.orig, editProof(`("consistency": \[\s*"[0-9a-f]{10})[0-9a-f]`, "${1}x")),
			export.VerifyOptions{}, "bad hash"},
		tamperCase{"consistency proof hash replaced by another, manifest re-signed by the gestore", edit(&k.orig, editProof(`("consistency": \[\s*")[0-9a-f]{64}`, "${1}"+strings.Repeat("ab", 32))),
			export.VerifyOptions{}, "does not verify"},
		tamperCase{"consistency proof emptied, manifest re-signed by the gestore", edit(&k.orig, editProof(`"consistency": \[[^\]]*\]`, `"consistency": []`)),
			export.VerifyOptions{}, "does not verify"},
		tamperCase{"first-checkpoint.tsr swapped for the newest checkpoint's token", edit(&k.orig, newest([2]string{export.FileFirstCheckpointTSR, export.FileCheckpointTSR})),
			export.VerifyOptions{}, "first-checkpoint.tsr is not a valid token"},
		tamperCase{"first-checkpoint.p7s swapped for the newest checkpoint's signature", edit(&k.orig, newest([2]string{export.FileFirstCheckpointSig, export.FileCheckpointSig})),
			export.VerifyOptions{}, "first-checkpoint.p7s is not a valid signature"},
		tamperCase{"checkpoint_interval_ms raised to two days, to widen the bound", edit(&k.orig, editProof(`"checkpoint_interval_ms": [0-9]+`, `"checkpoint_interval_ms": 172800000`)),
			export.VerifyOptions{}, "checkpoint_interval_ms 172800000 is not between"},
	)

	// Attestation, manifest and named certificate.
	cs = append(cs,
		tamperCase{"attestation edited, manifest untouched", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileAttestation] = append(fs[export.FileAttestation], "Nota aggiunta.\n"...)
		}), export.VerifyOptions{}, "attestation.txt has changed"},
		tamperCase{"attestation edited, manifest re-listed, signature kept", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileAttestation] = append(fs[export.FileAttestation], "Nota aggiunta.\n"...)
			relist(fs)
		}), export.VerifyOptions{}, "manifest.p7s is not a valid signature"},
		tamperCase{"manifest lines out of order, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			lines := strings.SplitAfter(string(fs[export.FileManifest]), "\n")
			lines[0], lines[1] = lines[1], lines[0]
			fs[export.FileManifest] = []byte(strings.Join(lines, ""))
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, k.gestore)
		}), export.VerifyOptions{}, "manifest.sha256 is not sorted"},
		tamperCase{"manifest line twice, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			first, _, _ := strings.Cut(string(fs[export.FileManifest]), "\n")
			fs[export.FileManifest] = []byte(first + "\n" + string(fs[export.FileManifest]))
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, k.gestore)
		}), export.VerifyOptions{}, "manifest.sha256 is not sorted"},
		tamperCase{"manifest in upper-case hex, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileManifest] = regexp.MustCompile(`(?m)^[0-9a-f]{64}`).ReplaceAllFunc(fs[export.FileManifest], bytes.ToUpper)
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, k.gestore)
		}), export.VerifyOptions{}, "lower-case hex"},
		tamperCase{"manifest with CRLF lines, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileManifest] = bytes.ReplaceAll(fs[export.FileManifest], []byte("\n"), []byte("\r\n"))
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, k.gestore)
		}), export.VerifyOptions{}, "lower-case hex"},
		tamperCase{"manifest without its last newline, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileManifest] = bytes.TrimSuffix(fs[export.FileManifest], []byte("\n"))
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, k.gestore)
		}), export.VerifyOptions{}, "does not end with a newline"},
		tamperCase{"a file left out of the manifest, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileManifest] = regexp.MustCompile(`(?m)^[0-9a-f]{64}  VERIFY.txt\n`).ReplaceAll(fs[export.FileManifest], nil)
			k.sign(t, fs, export.FileManifest, export.FileManifestSig, k.gestore)
		}), export.VerifyOptions{}, "VERIFY.txt is in the bundle but not in manifest.sha256"},
		tamperCase{"a listed file removed", edit(&k.orig, func(t *testing.T, fs map[string][]byte) { delete(fs, export.FileAttestPDF) }),
			export.VerifyOptions{}, "attestation.pdf is listed in manifest.sha256 but missing"},
		tamperCase{"manifest.p7s removed", edit(&k.orig, func(t *testing.T, fs map[string][]byte) { delete(fs, export.FileManifestSig) }),
			export.VerifyOptions{}, "manifest.p7s: missing"},
		tamperCase{"certs/gestore.pem removed, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			delete(fs, export.FileGestoreCert)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "certs/gestore.pem is missing"},
		tamperCase{"certs/gestore.pem with a second certificate, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileGestoreCert] = append(fs[export.FileGestoreCert], export.PEMCertificates(k.beta.cert.Raw)...)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "more than one certificate"},
		tamperCase{"entry.json with a space, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileEntry] = bytes.Replace(fs[export.FileEntry], []byte(`,"kind"`), []byte(`, "kind"`), 1)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "not in canonical form"},
		tamperCase{"entry.json with upper-case hex, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileEntry] = regexp.MustCompile(`"sha256":"[0-9a-f]{64}"`).ReplaceAllFunc(fs[export.FileEntry], bytes.ToUpper)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "not in canonical form"},
		tamperCase{"proof.json with an unknown member, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileProof] = bytes.Replace(fs[export.FileProof], []byte("{"), []byte(`{"extra":1,`), 1)
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "unknown field"},
		tamperCase{"proof.json for another leaf, re-signed by the gestore", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileProof] = regexp.MustCompile(`"leaf_index": [0-9]+`).ReplaceAll(fs[export.FileProof], []byte(`"leaf_index": 1`))
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "proof for leaf 1"},
	)

	// Split pieces and SPLIT.txt.
	pieceOf := func(t *testing.T, part []byte) string {
		for n := range unzipFiles(t, part) {
			return n
		}
		return ""
	}
	last := len(k.parts) - 1
	cs = append(cs,
		tamperCase{"split: the first part alone", func(*testing.T) [][]byte { return k.parts[:1] }, export.VerifyOptions{}, "give every part"},
		tamperCase{"split: the last part missing", func(*testing.T) [][]byte { return k.parts[:last] }, export.VerifyOptions{}, "is missing"},
		tamperCase{"split: a middle part missing", func(*testing.T) [][]byte { return append([][]byte{k.parts[0]}, k.parts[2:]...) }, export.VerifyOptions{}, "is missing: give every part"},
		tamperCase{"split: a piece changed", editPart(&k.parts, last, func(t *testing.T, fs map[string][]byte) {
			for n := range fs {
				fs[n] = bytes.Clone(fs[n])
				fs[n][len(fs[n])/2] ^= 1
			}
		}), export.VerifyOptions{}, "their SHA-256 do not match"},
		tamperCase{"split: two pieces swapped by name", func(t *testing.T) [][]byte {
			a, b := unzipFiles(t, k.parts[1]), unzipFiles(t, k.parts[2])
			na, nb := pieceOf(t, k.parts[1]), pieceOf(t, k.parts[2])
			out := append([][]byte(nil), k.parts...)
			out[1] = zipMap(t, map[string][]byte{na: b[nb]})
			out[2] = zipMap(t, map[string][]byte{nb: a[na]})
			return out
		}, export.VerifyOptions{}, "SPLIT.txt has changed"},
		tamperCase{"split: an extra piece", func(t *testing.T) [][]byte {
			n := pieceOf(t, k.parts[last])
			extra := n[:len(n)-3] + fmt.Sprintf("%03d", len(k.parts))
			return append(append([][]byte(nil), k.parts...), zipMap(t, map[string][]byte{extra: []byte("extra")}))
		}, export.VerifyOptions{}, "SPLIT.txt"},
		tamperCase{"split: a part given twice", func(*testing.T) [][]byte { return append(append([][]byte(nil), k.parts...), k.parts[1]) },
			export.VerifyOptions{}, "appears twice"},
		tamperCase{"split: SPLIT.txt edited", editPart(&k.parts, 0, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileSplitNote] = bytes.Replace(fs[export.FileSplitNote], []byte("Poi seguire"), []byte("Poi ignorare"), 1)
		}), export.VerifyOptions{}, "SPLIT.txt has changed"},
		tamperCase{"split: SPLIT.txt removed", editPart(&k.parts, 0, func(t *testing.T, fs map[string][]byte) { delete(fs, export.FileSplitNote) }),
			export.VerifyOptions{}, "but no SPLIT.txt"},
		tamperCase{"split: a piece and its SPLIT.txt line changed together", func(t *testing.T) [][]byte {
			out := append([][]byte(nil), k.parts...)
			n := pieceOf(t, k.parts[last])
			p := unzipFiles(t, k.parts[last])[n]
			p = append(bytes.Clone(p[:len(p)-1]), p[len(p)-1]^1)
			out[last] = zipMap(t, map[string][]byte{n: p})
			first := unzipFiles(t, k.parts[0])
			old := unzipFiles(t, k.parts[last])[n]
			first[export.FileSplitNote] = bytes.Replace(first[export.FileSplitNote], []byte(fmt.Sprintf("%x", sha256Sum(old))), []byte(fmt.Sprintf("%x", sha256Sum(p))), 1)
			out[0] = zipMap(t, first)
			return out
		}, export.VerifyOptions{}, "SPLIT.txt has changed"},
		tamperCase{"split: SPLIT.txt edited, manifest re-signed with the TLS key", editPart(&k.parts, 0, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileSplitNote] = bytes.Replace(fs[export.FileSplitNote], []byte("Poi seguire"), []byte("Poi ignorare"), 1)
			k.resign(t, fs, k.tls)
		}), export.VerifyOptions{}, "SPLIT.txt has changed"},
		tamperCase{"split: a SPLIT.txt in a bundle of one part", edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
			fs[export.FileSplitNote] = unzipFiles(t, k.parts[0])[export.FileSplitNote]
			k.resign(t, fs, k.gestore)
		}), export.VerifyOptions{}, "give every part"},
	)
	return cs
}

// TestTamperTable: every attack of the table fails, and the failure names
// the problem. The table is logged for the record.
func TestTamperTable(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Log("the table runs in -short mode too: it is the acceptance test of issue 17")
	}
	k := newTamperKit(t)
	// The genuine bundles verify, pinned or not.
	for name, z := range map[string][]byte{"original": k.orig, "older": k.older, "reproduction": k.repro, "reproduction A": k.reproA} {
		for _, pin := range []*x509.Certificate{nil, k.gestore.cert} {
			if rep := verifyParts(t, k, [][]byte{z}, export.VerifyOptions{Gestore: pin}); !rep.OK() {
				t.Fatalf("the genuine %s bundle does not verify:\n%s", name, failures(rep))
			}
		}
	}
	if rep := verifyParts(t, k, k.parts, export.VerifyOptions{}); !rep.OK() {
		t.Fatalf("the genuine parts do not verify:\n%s", failures(rep))
	}
	cases := k.cases()
	if len(cases) < 50 {
		t.Errorf("%d cases, the acceptance wants at least 50", len(cases))
	}
	// The cases run in parallel, each on its own copy of a bundle; the
	// table is logged, in the cases' order, once they are all done.
	results := make([]string, len(cases))
	t.Cleanup(func() {
		var table strings.Builder
		table.WriteString("| # | case | result |\n|---|---|---|\n")
		for i, c := range cases {
			fmt.Fprintf(&table, "| %d | %s | %s |\n", i+1, c.name, strings.ReplaceAll(results[i], "|", "/"))
		}
		t.Logf("tamper table (%d cases):\n%s", len(cases), table.String())
	})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			results[i] = "not run"
			msg, details, ok := runCase(t, k, c)
			result := "fails: " + msg
			switch {
			case ok:
				result = "VERIFIES (should fail)"
				t.Errorf("the attack went unnoticed")
			case !strings.Contains(msg, c.want):
				t.Errorf("the failure does not name the problem (want %q):\n%s", c.want, msg)
			}
			if !ok {
				result = "fails: " + firstLine(details, c.want)
			}
			results[i] = result
		})
	}
}

// runCase verifies the case's parts once and returns its failures in
// words ("name: detail", one a line), the details of the failed checks
// alone (what the table shows), and whether the parts verified.
func runCase(t *testing.T, k *tamperKit, c tamperCase) (msg, details string, ok bool) {
	t.Helper()
	parts := c.parts(t)
	var ps []export.Part
	for _, p := range parts {
		ps = append(ps, export.Part{R: bytes.NewReader(p), Size: int64(len(p))})
	}
	opts := c.opts
	opts.Anchors = k.anchors
	rep, err := export.VerifyBundleParts(ps, opts)
	if err != nil {
		return err.Error(), err.Error(), false
	}
	var out []string
	for _, ch := range rep.Checks {
		if !ch.OK {
			out = append(out, ch.Detail)
		}
	}
	return failures(rep), strings.Join(out, "\n"), rep.OK()
}

func verifyParts(t *testing.T, k *tamperKit, parts [][]byte, opts export.VerifyOptions) *export.VerifyReport {
	t.Helper()
	var ps []export.Part
	for _, p := range parts {
		ps = append(ps, export.Part{R: bytes.NewReader(p), Size: int64(len(p))})
	}
	opts.Anchors = k.anchors
	rep, err := export.VerifyBundleParts(ps, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// firstLine is the failure line that holds want, or the first one,
// shortened for the table.
func firstLine(msg, want string) string {
	line, _, _ := strings.Cut(msg, "\n")
	for _, l := range strings.Split(msg, "\n") {
		if strings.Contains(l, want) {
			line = l
			break
		}
	}
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}

// TestSignatureTimestamps: a signature is validated at the time of its
// signature timestamp (CAdES-T), so a bundle whose manifest and
// reproduction carry one verifies after the gestore's certificate has
// expired; without one, the same bundle is validated at the current time
// and fails; the report gives each signature's time and its source.
func TestSignatureTimestamps(t *testing.T) {
	t.Parallel()
	k := newTamperKit(t)
	stamp := stamper(t, k.auth)
	later := k.gestore.cert.NotAfter.AddDate(1, 0, 0)
	for _, which := range []string{"original", "reproduction"} {
		t.Run(which, func(t *testing.T) {
			z := &k.orig
			if which == "reproduction" {
				z = &k.repro
			}
			stamped := edit(z, func(t *testing.T, fs map[string][]byte) {
				if which == "reproduction" {
					fs[export.FileReceipt] = resignSMIMEStamped(t, fs[export.FileReceipt], k.anchors, k.gestore, time.Now(), nil, stamp)
					relist(fs)
				}
				fs[export.FileManifestSig] = cmsSign(t, fs[export.FileManifest], k.gestore, time.Now(), stamp)
			})(t)
			rep := verifyParts(t, k, stamped, export.VerifyOptions{Now: later})
			if !rep.OK() {
				t.Fatalf("a bundle with signature timestamps does not verify after the certificate expired:\n%s", failures(rep))
			}
			sources := map[string]string{}
			for _, st := range rep.Times {
				sources[st.File] = st.Source
				if st.At.After(time.Now()) || st.At.IsZero() {
					t.Errorf("%s validated at %s", st.File, st.At)
				}
			}
			want := map[string]string{export.FileManifestSig: "signature timestamp", export.FileCheckpointSig: "checkpoint timestamp", export.FileReceipt: "checkpoint timestamp"}
			if which == "reproduction" {
				want[export.FileReceipt] = "signature timestamp"
			}
			for f, w := range want {
				if sources[f] != w {
					t.Errorf("%s validated at its %q, want %q", f, sources[f], w)
				}
			}
			// The genuine bundle, without tokens, fails once the
			// certificate has expired: signingTime is not trusted.
			if rep := verifyParts(t, k, [][]byte{*z}, export.VerifyOptions{Now: later}); rep.OK() || !strings.Contains(failures(rep), "not valid at") {
				t.Errorf("without signature timestamps, verified after the certificate expired:\n%s", failures(rep))
			}
		})
	}
}

// TestProofJSONMembers: proof.json has exactly its members, spelled
// exactly, each once.
func TestProofJSONMembers(t *testing.T) {
	t.Parallel()
	k := newTamperKit(t)
	for name, change := range map[string]func([]byte) []byte{
		"upper-case member": func(b []byte) []byte { return bytes.Replace(b, []byte(`"leaf_index"`), []byte(`"LEAF_INDEX"`), 1) },
		"duplicate member":  func(b []byte) []byte { return bytes.Replace(b, []byte(`"root"`), []byte(`"tree_size": 1, "root"`), 1) },
		"missing member":    func(b []byte) []byte { return regexp.MustCompile(`"leaf_hash": "[0-9a-f]+",`).ReplaceAll(b, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			z := edit(&k.orig, func(t *testing.T, fs map[string][]byte) {
				fs[export.FileProof] = change(fs[export.FileProof])
				k.resign(t, fs, k.gestore)
			})(t)
			if rep := verifyParts(t, k, z, export.VerifyOptions{}); rep.OK() || !strings.Contains(failures(rep), "proof.json") {
				t.Errorf("accepted, or not named:\n%s", failures(rep))
			}
		})
	}
}

// qpLine is line as a quoted-printable body that starts with it encodes it.
func qpLine(t *testing.T, line string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	if _, err := w.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
