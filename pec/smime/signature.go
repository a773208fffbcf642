package smime

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/digitorus/pkcs7"
)

// MaxSignatureSize is the largest decoded signature (CMS SignedData) that is
// parsed. A real PEC signature with its certificate chain is a few KiB; the
// bound keeps crafted encodings away from the CMS parser, whose recursion a
// deeply nested input of a few MiB turns into a fatal stack overflow.
const MaxSignatureSize = 1 << 20

const (
	// maxBERDepth bounds the nesting of constructed ASN.1 values in a
	// signature. A CMS SignedData with X.509 certificates nests about ten
	// levels deep.
	maxBERDepth = 64
	// maxBERElements bounds the number of ASN.1 values in a signature; a
	// signature with a long certificate chain holds a few thousand.
	maxBERElements = 100000
	// maxBERScan bounds the bytes the CMS parser scans looking for the end
	// of indefinite-length values: it searches the rest of the input after
	// every element of such a value, which a crafted input turns into
	// quadratic work.
	maxBERScan = 64 << 20
)

// Object identifiers of CMS (RFC 5652) and of the algorithms a PEC
// signature uses.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	oidRSA       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSASHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidRSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidRSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidRSASHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}

	oidECPublicKey  = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSASHA1    = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSASHA256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512  = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidCurveP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521    = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	rsaFamilyOIDs   = []asn1.ObjectIdentifier{oidRSA, oidRSASHA1, oidRSASHA256, oidRSASHA384, oidRSASHA512}
	ecdsaFamilyOIDs = []asn1.ObjectIdentifier{oidECPublicKey, oidECDSASHA1, oidECDSASHA256, oidECDSASHA384, oidECDSASHA512, oidCurveP256, oidCurveP384, oidCurveP521}
)

// A Signature is a parsed detached CMS SignedData with exactly one signer,
// as carried in the smime.p7s part of a multipart/signed message. Parsing
// does not check the signature: see CheckContent.
type Signature struct {
	// Certificates are the certificates the signature carries, in order.
	Certificates []*x509.Certificate
	// Signer is the certificate of the signer, one of Certificates.
	Signer *x509.Certificate
	// Digest is the digest algorithm the signer used (SHA-1 in real PEC
	// messages of 2014-2024, SHA-256 in those this package signs).
	Digest crypto.Hash
	// SigningTime is the signingTime signed attribute, the signer's own
	// claim of when it signed; zero when absent.
	SigningTime time.Time

	sigAlg     x509.SignatureAlgorithm
	sigValue   []byte
	signedAttr []byte // DER of the signed attributes as signed; nil if none
	msgDigest  []byte // messageDigest attribute; nil if no signed attributes
	essV2      []byte // values of the signing-certificate-v2 attribute; nil if absent
}

// ParseSignature parses a detached CMS SignedData (DER or BER) with exactly
// one signer whose certificate it includes. It refuses inputs larger than
// MaxSignatureSize and encodings nested too deep before they reach the CMS
// parser. It does not check the signature: see CheckContent.
func ParseSignature(p7s []byte) (*Signature, error) {
	if len(p7s) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes, the limit is %d", ErrSignatureTooLarge, len(p7s), MaxSignatureSize)
	}
	if err := checkBER(p7s); err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(p7s)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot parse CMS signature: %v", ErrMalformed, err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%w: signature has %d signers, want exactly one", ErrMalformed, len(p7.Signers))
	}
	if len(p7.Content) != 0 {
		return nil, fmt.Errorf("%w: signature is not detached: it embeds %d bytes of content", ErrMalformed, len(p7.Content))
	}
	si := p7.Signers[0]
	s := &Signature{Certificates: p7.Certificates, sigValue: si.EncryptedDigest}
	for _, c := range p7.Certificates {
		if bytes.Equal(c.RawIssuer, si.IssuerAndSerialNumber.IssuerName.FullBytes) &&
			si.IssuerAndSerialNumber.SerialNumber != nil &&
			c.SerialNumber.Cmp(si.IssuerAndSerialNumber.SerialNumber) == 0 {
			s.Signer = c
			break
		}
	}
	if s.Signer == nil {
		return nil, fmt.Errorf("%w: the signer's certificate is not included in the signature", ErrMalformed)
	}
	if s.Digest, err = digestForOID(si.DigestAlgorithm.Algorithm); err != nil {
		return nil, err
	}
	if s.sigAlg, err = signatureAlgorithm(si.DigestEncryptionAlgorithm.Algorithm, s.Digest); err != nil {
		return nil, err
	}
	if len(si.AuthenticatedAttributes) == 0 {
		return s, nil
	}
	// RFC 5652 §5.4: the signature covers the DER encoding of the
	// attributes as a SET OF, in the order they were sent.
	var attrs []byte
	var nType, nDigest, nTime, nESS int
	for _, a := range si.AuthenticatedAttributes {
		oid, err := asn1.Marshal(a.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: signed attribute: %v", ErrMalformed, err)
		}
		seq, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: append(oid, a.Value.FullBytes...)})
		if err != nil {
			return nil, fmt.Errorf("%w: signed attribute: %v", ErrMalformed, err)
		}
		attrs = append(attrs, seq...)
		switch {
		case a.Type.Equal(oidContentType):
			nType++
			var ct asn1.ObjectIdentifier
			if err := unmarshalSingle(a.Value.Bytes, &ct); err != nil {
				return nil, fmt.Errorf("%w: invalid contentType signed attribute: %v", ErrMalformed, err)
			}
			if !ct.Equal(oidData) {
				return nil, fmt.Errorf("%w: signed content type is %v, want id-data", ErrMalformed, ct)
			}
		case a.Type.Equal(oidMessageDigest):
			nDigest++
			if err := unmarshalSingle(a.Value.Bytes, &s.msgDigest); err != nil {
				return nil, fmt.Errorf("%w: invalid messageDigest signed attribute: %v", ErrMalformed, err)
			}
		case a.Type.Equal(OIDSigningCertificateV2):
			nESS++
			s.essV2 = append([]byte{}, a.Value.Bytes...)
		case a.Type.Equal(oidSigningTime):
			nTime++
			if err := unmarshalSingle(a.Value.Bytes, &s.SigningTime); err != nil {
				return nil, fmt.Errorf("%w: invalid signingTime signed attribute: %v", ErrMalformed, err)
			}
		}
	}
	if nType != 1 || nDigest != 1 || nTime > 1 || nESS > 1 {
		return nil, fmt.Errorf("%w: signed attributes must hold one contentType, one messageDigest and at most one signingTime and one signingCertificateV2", ErrMalformed)
	}
	if s.msgDigest == nil {
		s.msgDigest = []byte{}
	}
	s.signedAttr, err = asn1.Marshal(asn1.RawValue{Tag: asn1.TagSet, IsCompound: true, Bytes: attrs})
	if err != nil {
		return nil, fmt.Errorf("%w: signed attributes: %v", ErrMalformed, err)
	}
	return s, nil
}

// unmarshalSingle decodes the only value of an attribute's SET.
func unmarshalSingle(b []byte, out any) error {
	rest, err := asn1.Unmarshal(b, out)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("attribute has more than one value")
	}
	return nil
}

// CheckContent checks that the signature is valid over content, the exact
// signed bytes (for S/MIME, the first part of the multipart/signed entity
// in canonical CRLF form). It does not check the certificate chain. It
// returns an error matching ErrContentMismatch when content is not what
// was signed and ErrInvalidSignature when the signature value does not
// verify with the signer's public key or when an ESS signing-certificate-v2
// attribute (RFC 5035) names another certificate than the signer's.
func (s *Signature) CheckContent(content []byte) error {
	h := s.Digest.New()
	h.Write(content)
	sum := h.Sum(nil)
	signed := content
	if s.signedAttr != nil {
		if subtle.ConstantTimeCompare(sum, s.msgDigest) != 1 {
			return newReason(ErrContentMismatch, nil, "signature does not match the signed content")
		}
		signed = s.signedAttr
	}
	if err := s.Signer.CheckSignature(s.sigAlg, signed, s.sigValue); err != nil {
		if s.signedAttr == nil {
			// Without signed attributes the signature is over the
			// content itself: a mismatch cannot be told from a bad
			// signature value.
			return newReason(ErrContentMismatch, err, "signature does not match the signed content: "+err.Error())
		}
		return newReason(ErrInvalidSignature, err, "signature value does not verify with the key of "+certName(s.Signer)+": "+err.Error())
	}
	if s.essV2 != nil {
		if err := CheckSigningCertificateV2(s.essV2, s.Signer); err != nil {
			return newReason(ErrInvalidSignature, err, err.Error())
		}
	}
	return nil
}

// digestForOID maps a CMS digest algorithm identifier to a hash.
func digestForOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA1):
		return crypto.SHA1, nil
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("%w: unsupported digest algorithm %v", ErrMalformed, oid)
}

// signatureAlgorithm maps a CMS signature algorithm identifier and the
// digest to an x509 signature algorithm. The digest decides: the RSA
// PKCS #1 v1.5 signature binds it anyway.
func signatureAlgorithm(oid asn1.ObjectIdentifier, h crypto.Hash) (x509.SignatureAlgorithm, error) {
	in := func(set []asn1.ObjectIdentifier) bool {
		for _, o := range set {
			if o.Equal(oid) {
				return true
			}
		}
		return false
	}
	switch {
	case in(rsaFamilyOIDs):
		switch h {
		case crypto.SHA1:
			return x509.SHA1WithRSA, nil
		case crypto.SHA256:
			return x509.SHA256WithRSA, nil
		case crypto.SHA384:
			return x509.SHA384WithRSA, nil
		case crypto.SHA512:
			return x509.SHA512WithRSA, nil
		}
	case in(ecdsaFamilyOIDs):
		switch h {
		case crypto.SHA1:
			return x509.ECDSAWithSHA1, nil
		case crypto.SHA256:
			return x509.ECDSAWithSHA256, nil
		case crypto.SHA384:
			return x509.ECDSAWithSHA384, nil
		case crypto.SHA512:
			return x509.ECDSAWithSHA512, nil
		}
	}
	return 0, fmt.Errorf("%w: unsupported signature algorithm %v with %v", ErrMalformed, oid, h)
}

// checkBER walks the BER encoding b without recursion and refuses it unless
// it is a single well-formed value nested at most maxBERDepth levels, with
// at most maxBERElements values, whose indefinite-length values would not
// make the CMS parser scan more than maxBERScan bytes. The CMS parser
// recurses once per level of nesting, so this keeps its stack bounded.
func checkBER(b []byte) error {
	type open struct {
		end        int // end of contents; -1 for indefinite length
		indefinite bool
	}
	var stack []open
	pos, elements, scanned := 0, 0, 0
	nextEOC := -1 // first "00 00" at or after the last scan position
	tooComplex := func(what string) error {
		return fmt.Errorf("%w: signature encoding %s", ErrSignatureTooLarge, what)
	}
	malformed := func(what string) error {
		return fmt.Errorf("%w: signature is not valid BER: %s at offset %d", ErrMalformed, what, pos)
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty signature", ErrMalformed)
	}
	for {
		// Close the values that end here.
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.indefinite {
				// The CMS parser looks for the end-of-contents
				// marker after each element by searching the rest
				// of the input for "00 00": account for that scan.
				if nextEOC < pos {
					if i := bytes.Index(b[pos:], []byte{0, 0}); i < 0 {
						nextEOC = len(b)
					} else {
						nextEOC = pos + i
					}
				}
				scanned += nextEOC - pos
				if scanned > maxBERScan {
					return tooComplex("has too many indefinite-length elements")
				}
				if pos+1 < len(b) && b[pos] == 0 && b[pos+1] == 0 {
					pos += 2
					stack = stack[:len(stack)-1]
					continue
				}
				break
			}
			if pos > top.end {
				return malformed("value overruns its container")
			}
			if pos < top.end {
				break
			}
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 && pos > 0 {
			if pos != len(b) {
				return malformed("trailing data")
			}
			return nil
		}
		if pos >= len(b) {
			return malformed("truncated value")
		}
		elements++
		if elements > maxBERElements {
			return tooComplex(fmt.Sprintf("has more than %d values", maxBERElements))
		}
		// Identifier octets.
		constructed := b[pos]&0x20 != 0
		if b[pos]&0x1f == 0x1f {
			n := 0
			for {
				pos++
				n++
				if pos >= len(b) || n > 4 {
					return malformed("invalid tag")
				}
				if b[pos]&0x80 == 0 {
					break
				}
			}
		}
		pos++
		// Length octets.
		if pos >= len(b) {
			return malformed("missing length")
		}
		l := int(b[pos])
		pos++
		var length int
		switch {
		case l == 0x80:
			if !constructed {
				return malformed("indefinite length on a primitive value")
			}
			if len(stack) >= maxBERDepth {
				return tooComplex(fmt.Sprintf("is nested deeper than %d levels", maxBERDepth))
			}
			stack = append(stack, open{end: -1, indefinite: true})
			continue
		case l < 0x80:
			length = l
		default:
			n := l & 0x7f
			if n > 4 || pos+n > len(b) {
				return malformed("invalid length")
			}
			for i := 0; i < n; i++ {
				length = length<<8 | int(b[pos+i])
			}
			pos += n
		}
		end := pos + length
		if length < 0 || end > len(b) {
			return malformed("length beyond the end of the input")
		}
		if len(stack) > 0 && !stack[len(stack)-1].indefinite && end > stack[len(stack)-1].end {
			return malformed("value overruns its container")
		}
		if !constructed {
			pos = end
			continue
		}
		if len(stack) >= maxBERDepth {
			return tooComplex(fmt.Sprintf("is nested deeper than %d levels", maxBERDepth))
		}
		stack = append(stack, open{end: end})
	}
}
