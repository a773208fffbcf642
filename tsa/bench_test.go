package tsa

import (
	"context"
	"testing"
)

func BenchmarkAuthorityTimestamp(b *testing.B) {
	for _, key := range []string{"ecdsa", "rsa"} {
		b.Run(key, func(b *testing.B) {
			a := newPKI(b, pkiOptions{key: key}).authority(b, nil)
			digest := sum("benchmark")
			ctx := context.Background()
			for b.Loop() {
				if _, err := a.Timestamp(ctx, digest); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, key := range []string{"ecdsa", "rsa"} {
		b.Run(key, func(b *testing.B) {
			p := newPKI(b, pkiOptions{key: key})
			digest := sum("benchmark")
			tok := stamp(b, p.authority(b, nil), digest)
			opts := VerifyOptions{Roots: p.roots}
			for b.Loop() {
				if _, err := Verify(tok, digest, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
