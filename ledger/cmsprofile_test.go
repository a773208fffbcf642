package ledger

import (
	"context"
	"testing"
	"time"
)

// TestVerifyDetachedEveryBitFlip flips each bit of a gestore's detached
// signature (as CMSSigner makes the checkpoints' and manifest.p7s) and
// requires VerifyDetached to refuse every one: the signature value covers
// only the signed attributes, and before CheckSignatureProfile 24 of its
// bytes (the versions, the digestAlgorithms set, the eContentType, lengths
// inside the signed attributes that the parser repairs) could change and
// the signature still verify. In -short mode one bit of each byte is
// flipped, in turn; otherwise every bit.
func TestVerifyDetachedEveryBitFlip(t *testing.T) {
	d := testPKI(t)
	data := []byte("pec.test.example/custode\n42\nq83...\n")
	signer := &CMSSigner{Certificate: d.Gestore.Certificate, Key: d.Gestore.Key}
	sig, err := signer.SignDetached(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if _, err := VerifyDetached(data, sig, d.Roots(), nil, at); err != nil {
		t.Fatalf("the signature as made does not verify: %v", err)
	}
	var verified []int
	flipped := make([]byte, len(sig))
	for i := range sig {
		for bit := range 8 {
			if testing.Short() && bit != i%8 {
				continue
			}
			copy(flipped, sig)
			flipped[i] ^= 1 << bit
			if _, err := VerifyDetached(data, flipped, d.Roots(), nil, at); err == nil {
				verified = append(verified, i*8+bit)
			}
		}
	}
	if len(verified) > 0 {
		t.Errorf("%d bit flips of a %d-byte signature still verify; byte/bit: %v", len(verified), len(sig), verified)
	}
}
