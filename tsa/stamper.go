package tsa

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"

	// The hash functions a token may name must be linked in for
	// crypto.Hash.New to work.
	_ "crypto/sha512"
)

// Stamper obtains RFC 3161 time-stamp tokens.
type Stamper interface {
	// Timestamp returns a DER-encoded TimeStampToken (the CMS ContentInfo,
	// not the TimeStampResp around it) over digest, which MUST be a SHA-256
	// digest of 32 bytes; any other length is an error.
	//
	// A returned token has already been checked: its status was granted,
	// its message imprint is SHA-256 and equals digest, its nonce (when one
	// was sent) is the one sent, and its CMS signature is valid. Whether the
	// TSA is trusted is the caller's decision: see Verify.
	Timestamp(ctx context.Context, digest []byte) (token []byte, err error)
}

// Media types of RFC 3161 §3.4 (time-stamp protocol via HTTP).
const (
	// ContentTypeQuery is the media type of a DER TimeStampReq.
	ContentTypeQuery = "application/timestamp-query"
	// ContentTypeReply is the media type of a DER TimeStampResp.
	ContentTypeReply = "application/timestamp-reply"
)

// MaxTokenSize is the largest token Verify parses and the largest response
// Client reads, 1 MiB. A token is a few kilobytes even with a long
// certificate chain; the cap keeps a broken or hostile peer from making us
// buffer or parse without bound.
const MaxTokenSize = 1 << 20

// Object identifiers used in tokens and TSA certificates.
var (
	oidTSTInfo           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidAttrContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidAttrSigningCert   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidAttrSigningCertV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidExtKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidKPTimeStamping    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	oidSHA256            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidRSAEncryption     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECPublicKey       = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// hashForOID returns the hash function a token may use for its message
// imprint or its CMS digest: SHA-256, SHA-384 or SHA-512. Anything else,
// SHA-1 included, is refused.
func hashForOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, true
	case oid.Equal(oidSHA384):
		return crypto.SHA384, true
	case oid.Equal(oidSHA512):
		return crypto.SHA512, true
	}
	return 0, false
}

// oidForHash is the inverse of hashForOID.
func oidForHash(h crypto.Hash) (asn1.ObjectIdentifier, bool) {
	switch h {
	case crypto.SHA256:
		return oidSHA256, true
	case crypto.SHA384:
		return oidSHA384, true
	case crypto.SHA512:
		return oidSHA512, true
	}
	return nil, false
}

// checkDigest reports an error unless digest has the length of a SHA-256
// digest.
func checkDigest(digest []byte) error {
	if len(digest) != sha256.Size {
		return fmt.Errorf("tsa: digest is %d bytes, want a %d-byte SHA-256 digest", len(digest), sha256.Size)
	}
	return nil
}
