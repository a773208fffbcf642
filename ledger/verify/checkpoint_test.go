package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"

	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// signed returns a checkpoint signed by the gestore of d and stamped by
// d's TSA, as the ledger makes them.
func signed(t *testing.T, d *pki.DevSet, now time.Time, size uint64) *Checkpoint {
	t.Helper()
	c := &Checkpoint{Origin: "pec.test.example/custode", Size: size, Root: LeafHash([]byte("x")), Time: now}
	c.Body = CheckpointBody(c.Origin, c.Size, c.Root, c.Prev, c.Time)
	sd, err := pkcs7.NewSignedData(c.Body)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	ess, err := smime.SigningCertificateV2(d.Gestore.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSigner(d.Gestore.Certificate, d.Gestore.Key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{ess}}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	if c.Signature, err = sd.Finish(); err != nil {
		t.Fatal(err)
	}
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{
		Certificate: d.TSA.Certificate, Signer: d.TSA.Key, Chain: []*x509.Certificate{d.CA.Certificate},
		Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := c.Hash()
	if c.Token, err = a.Timestamp(context.Background(), sum[:]); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckpointVerify(t *testing.T) {
	now := time.Now().UTC()
	d, err := pki.NewDevSet("Custode Test PEC S.p.A.", "pec.test.example", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	good := signed(t, d, now, 42)
	if err := good.Verify(d.Roots(), d.Roots()); err != nil {
		t.Fatalf("a good checkpoint: %v", err)
	}
	if at, err := good.VerifyToken(d.Roots()); err != nil || !at.Equal(now) {
		t.Fatalf("VerifyToken = %v, %v; want %v", at, err, now)
	}
	other := signed(t, d, now, 43)
	clone := func() *Checkpoint {
		c := *good
		c.Body, c.Signature, c.Token = bytes.Clone(c.Body), bytes.Clone(c.Signature), bytes.Clone(c.Token)
		return &c
	}
	tests := []struct {
		name   string
		mutate func(c *Checkpoint)
		roots  *x509.CertPool
		want   string
	}{
		{"body altered", func(c *Checkpoint) { c.Body[len(c.Body)-3] ^= 1 }, d.Roots(), "signature"},
		{"another checkpoint's signature", func(c *Checkpoint) { c.Signature = other.Signature }, d.Roots(), "signature"},
		{"another checkpoint's token", func(c *Checkpoint) { c.Token = other.Token }, d.Roots(), "timestamp"},
		{"pending", func(c *Checkpoint) { c.Token = nil }, d.Roots(), "no timestamp token"},
		{"signature too large", func(c *Checkpoint) { c.Signature = make([]byte, MaxSignatureBytes+1) }, d.Roots(), "more than"},
		{"untrusted", func(c *Checkpoint) {}, x509.NewCertPool(), "signature"},
		{"no anchors", func(c *Checkpoint) {}, nil, "no trust anchors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clone()
			tt.mutate(c)
			err := c.Verify(tt.roots, d.Roots())
			var ce *CheckpointError
			if !errors.As(err, &ce) || ce.Size != 42 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want a *CheckpointError for 42 with %q", err, tt.want)
			}
		})
	}
	// A token dated long before the checkpoint's time is refused.
	early := signed(t, d, now, 44)
	early.Time = now.Add(2 * time.Minute)
	if _, err := early.VerifyToken(d.Roots()); err == nil || !strings.Contains(err.Error(), "before the checkpoint time") {
		t.Errorf("an early token: %v", err)
	}
}
