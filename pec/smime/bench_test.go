package smime

import (
	"testing"
	"time"
)

// BenchmarkSign signs a ricevuta-sized (4 KB) entity with RSA-2048.
func BenchmarkSign(b *testing.B) {
	p := mustPKI(b, rsaPKI)
	entity := pecEntity(4096, false)
	header := pecHeader(p.address())
	b.SetBytes(int64(len(entity)))
	for b.Loop() {
		if _, err := SignMessage(header, entity, p.signer); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify verifies a busta-sized (15 KB) message signed with
// RSA-2048 through a three-certificate chain.
func BenchmarkVerify(b *testing.B) {
	p := mustPKI(b, rsaPKI)
	msg := signedMsg(b, p, p.address(), pecEntity(15000, true))
	opts := p.opts(time.Now())
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Verify(msg, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifySample verifies the real 2014 busta (13 KB, SHA-1) at its
// signing time against Debian's whole root store.
func BenchmarkVerifySample(b *testing.B) {
	msg := readSample(b, sampleFiles[0])
	opts := VerifyOptions{Roots: systemRoots(b), UseSigningTime: true, AllowSHA1Certificates: true}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Verify(msg, opts); err != nil {
			b.Fatal(err)
		}
	}
}
