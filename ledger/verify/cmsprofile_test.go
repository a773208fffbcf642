package verify

import (
	"testing"
	"time"

	"github.com/digitorus/pkcs7"

	"github.com/custode/custode/pec/pki"
)

// FuzzCheckSignatureProfile feeds CheckSignatureProfile and VerifyDetached
// variations of a real detached signature: whatever the bytes, they
// return, with an error or without, and never panic.
func FuzzCheckSignatureProfile(f *testing.F) {
	now := time.Now().UTC()
	d, err := pki.NewDevSet("Custode Test PEC S.p.A.", "pec.test.example", now.Add(-time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	data := []byte("pec.test.example/custode\n1\n")
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		f.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(d.Gestore.Certificate, d.Gestore.Key, pkcs7.SignerInfoConfig{}); err != nil {
		f.Fatal(err)
	}
	sd.Detach()
	sig, err := sd.Finish()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sig)
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	roots := d.Roots()
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckSignatureProfile(b) == nil {
			// A signature of the form: the verifier must come to an
			// answer on it too.
			_, _ = VerifyDetached(data, b, roots, nil, now)
		}
	})
}
