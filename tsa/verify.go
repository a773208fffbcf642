package tsa

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/digitorus/pkcs7"
)

// VerifyOptions says what Verify trusts and when. It follows
// crypto/x509.VerifyOptions.
type VerifyOptions struct {
	// Roots are the trusted root certificates the TSA certificate must
	// chain to. It MUST be set: unlike crypto/x509, Verify does not fall
	// back to the system roots, which vouch for web servers, not for
	// time-stamping authorities.
	Roots *x509.CertPool

	// Intermediates are extra certificates that may complete the chain,
	// besides those the token embeds. It may be nil.
	Intermediates *x509.CertPool

	// CurrentTime is the time at which the TSA certificate and its chain
	// must be valid. The zero value means the token's own genTime: the
	// question an archive asks is whether the TSA's certificate was valid
	// when it signed, not whether it still is today. Set it to time.Now()
	// to require a chain that is valid now as well. Whatever CurrentTime
	// is, genTime must lie within the TSA certificate's validity.
	CurrentTime time.Time

	// Nonce, if non-nil, is the nonce that was sent in the request; the
	// token must carry the same.
	Nonce *big.Int

	// TSACertificate, if non-nil, is the TSA's signing certificate, for
	// tokens that embed none (requested with certReq false). It is used
	// only if the token embeds no certificate that its signer identifier
	// names and if it is the one named.
	TSACertificate *x509.Certificate
}

// Info describes a verified time-stamp token.
type Info struct {
	// GenTime is the time at which the TSA says it created the token.
	GenTime time.Time
	// Accuracy is how far GenTime may be from the true time either way;
	// zero if the token does not say.
	Accuracy time.Duration
	// Ordering reports the TSTInfo ordering flag.
	Ordering bool
	// SerialNumber is the TSA's serial number of the token.
	SerialNumber *big.Int
	// Policy is the TSA policy under which the token was issued.
	Policy asn1.ObjectIdentifier
	// Nonce is the token's nonce, or nil.
	Nonce *big.Int
	// HashAlgorithm is the hash of the message imprint: SHA-256, SHA-384
	// or SHA-512.
	HashAlgorithm crypto.Hash
	// Certificate is the TSA certificate that signed the token.
	Certificate *x509.Certificate
	// Chain is the verified chain from Certificate to a root in
	// VerifyOptions.Roots, Certificate first.
	Chain []*x509.Certificate
}

// Verify checks that token, a DER TimeStampToken, time-stamps digest, and
// returns what the token says. digest is the hash of the data under the
// algorithm of the token's message imprint; for tokens from a Stamper that is
// SHA-256.
//
// Verify checks, and fails with an error saying which failed:
//   - the token is a CMS SignedData with one signer whose content is a
//     TSTInfo of version 1, at most MaxTokenSize bytes;
//   - the message imprint uses SHA-256, SHA-384 or SHA-512 and equals digest;
//   - the nonce equals opts.Nonce, when that is set;
//   - the signer's certificate, embedded in the token or given as
//     opts.TSACertificate, is named by the signer identifier and by the ESS
//     signing-certificate attribute;
//   - the signed attributes name TSTInfo as the content type and carry the
//     message digest of the TSTInfo, and the signature over them is valid;
//   - the TSA certificate has the critical timeStamping extended key usage
//     of RFC 3161 §2.3 and genTime lies within its validity;
//   - the TSA certificate chains to opts.Roots at opts.CurrentTime (genTime
//     when zero) with the timeStamping extended key usage.
//
// Revocation is not checked.
func Verify(token, digest []byte, opts VerifyOptions) (*Info, error) {
	info, err := verify(token, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("tsa: verify: %w", err)
	}
	return info, nil
}

// verify is Verify without the error prefix.
func verify(token, digest []byte, opts VerifyOptions) (*Info, error) {
	if opts.Roots == nil {
		return nil, errors.New("no trusted roots: VerifyOptions.Roots is nil")
	}
	info, tok, err := checkToken(token, digest, opts.Nonce, opts.TSACertificate)
	if err != nil {
		return nil, err
	}
	if info.Chain, err = verifyChain(tok, info, opts); err != nil {
		return nil, err
	}
	return info, nil
}

// verifyChain checks that the signer of tok chains to opts.Roots.
func verifyChain(tok *pkcs7.PKCS7, info *Info, opts VerifyOptions) ([]*x509.Certificate, error) {
	at := opts.CurrentTime
	if at.IsZero() {
		at = info.GenTime
	}
	cert := info.Certificate
	if at.After(cert.NotAfter) {
		return nil, fmt.Errorf("the TSA certificate expired at %s, before the verification time %s",
			cert.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	if at.Before(cert.NotBefore) {
		return nil, fmt.Errorf("the TSA certificate is not valid until %s, after the verification time %s",
			cert.NotBefore.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	if opts.Intermediates != nil {
		inter = opts.Intermediates.Clone()
	}
	for _, c := range tok.Certificates {
		if c != cert {
			inter.AddCert(c)
		}
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         opts.Roots,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	})
	if err != nil {
		return nil, fmt.Errorf("the TSA certificate %q does not chain to a trusted root at %s: %w",
			cert.Subject.String(), at.UTC().Format(time.RFC3339), err)
	}
	return chains[0], nil
}

// tstInfo is the TSTInfo of RFC 3161 §2.4.2.
type tstInfo struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint messageImprint
	SerialNumber   *big.Int
	GenTime        time.Time        `asn1:"generalized"`
	Accuracy       accuracy         `asn1:"optional"`
	Ordering       bool             `asn1:"optional,default:false"`
	Nonce          *big.Int         `asn1:"optional"`
	TSA            asn1.RawValue    `asn1:"tag:0,optional"`
	Extensions     []pkix.Extension `asn1:"tag:1,optional"`
}

// messageImprint is the MessageImprint of RFC 3161 §2.4.1.
type messageImprint struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	HashedMessage []byte
}

// accuracy is the Accuracy of RFC 3161 §2.4.2.
type accuracy struct {
	Seconds int64 `asn1:"optional"`
	Millis  int64 `asn1:"tag:0,optional"`
	Micros  int64 `asn1:"tag:1,optional"`
}

func (a accuracy) duration() (time.Duration, error) {
	if a.Seconds < 0 || a.Millis < 0 || a.Millis > 999 || a.Micros < 0 || a.Micros > 999 {
		return 0, errors.New("the TSTInfo accuracy is out of range")
	}
	if a.Seconds > math.MaxInt64/int64(time.Second)-1 {
		return 0, errors.New("the TSTInfo accuracy is out of range")
	}
	return time.Duration(a.Seconds)*time.Second +
		time.Duration(a.Millis)*time.Millisecond +
		time.Duration(a.Micros)*time.Microsecond, nil
}

// essCertIDv2 is the ESSCertIDv2 of RFC 5035; the hash algorithm defaults to
// SHA-256.
type essCertIDv2 struct {
	HashAlgorithm pkix.AlgorithmIdentifier `asn1:"optional"`
	CertHash      []byte
	IssuerSerial  asn1.RawValue `asn1:"optional"`
}

type signingCertificateV2 struct {
	Certs    []essCertIDv2
	Policies asn1.RawValue `asn1:"optional"`
}

// essCertID is the ESSCertID of RFC 2634: a SHA-1 certificate hash.
type essCertID struct {
	CertHash     []byte
	IssuerSerial asn1.RawValue `asn1:"optional"`
}

type signingCertificate struct {
	Certs    []essCertID
	Policies asn1.RawValue `asn1:"optional"`
}

// signedAttribute is the CMS Attribute of RFC 5652 §5.3, re-encoded to
// rebuild the DER SET that the signature covers.
type signedAttribute struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

// checkToken checks everything Verify promises except the certificate chain,
// so that a Client without roots can still refuse a token that is not what
// it asked for. tsaCert, if non-nil, is a candidate signer certificate.
func checkToken(token, digest []byte, nonce *big.Int, tsaCert *x509.Certificate) (*Info, *pkcs7.PKCS7, error) {
	switch {
	case len(token) == 0:
		return nil, nil, errors.New("the token is empty")
	case len(token) > MaxTokenSize:
		return nil, nil, fmt.Errorf("the token is %d bytes, more than the %d allowed", len(token), MaxTokenSize)
	}
	p7, err := pkcs7.Parse(token)
	if err != nil {
		return nil, nil, fmt.Errorf("the token is not a CMS SignedData: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, nil, fmt.Errorf("the token has %d signers, want exactly one", len(p7.Signers))
	}
	var tst tstInfo
	rest, err := asn1.Unmarshal(p7.Content, &tst)
	if err != nil {
		return nil, nil, fmt.Errorf("the token's content is not a TSTInfo: %w", err)
	}
	if len(rest) > 0 {
		return nil, nil, errors.New("the token's TSTInfo has trailing data")
	}
	if tst.Version != 1 {
		return nil, nil, fmt.Errorf("the token's TSTInfo has version %d, want 1", tst.Version)
	}
	if len(tst.Policy) == 0 {
		return nil, nil, errors.New("the token's TSTInfo has no policy")
	}
	acc, err := tst.Accuracy.duration()
	if err != nil {
		return nil, nil, err
	}

	// The message imprint: what the token is about.
	h, ok := hashForOID(tst.MessageImprint.HashAlgorithm.Algorithm)
	if !ok {
		return nil, nil, fmt.Errorf("the message imprint uses hash algorithm %v; only SHA-256, SHA-384 and SHA-512 are accepted",
			tst.MessageImprint.HashAlgorithm.Algorithm)
	}
	if len(tst.MessageImprint.HashedMessage) != h.Size() {
		return nil, nil, fmt.Errorf("the message imprint is %d bytes, not the %d of %v",
			len(tst.MessageImprint.HashedMessage), h.Size(), h)
	}
	if len(digest) != h.Size() {
		return nil, nil, fmt.Errorf("the digest is %d bytes but the message imprint is a %d-byte %v digest",
			len(digest), h.Size(), h)
	}
	if !bytes.Equal(tst.MessageImprint.HashedMessage, digest) {
		return nil, nil, errors.New("message imprint does not match the data")
	}
	if nonce != nil {
		switch {
		case tst.Nonce == nil:
			return nil, nil, errors.New("the token has no nonce, but one was sent")
		case tst.Nonce.Cmp(nonce) != 0:
			return nil, nil, errors.New("the token's nonce is not the one sent")
		}
	}

	// The signer and its certificate.
	si := p7.Signers[0]
	cert := findSigner(si.IssuerAndSerialNumber.IssuerName.FullBytes, si.IssuerAndSerialNumber.SerialNumber, tsaCert, p7.Certificates)
	if cert == nil {
		if len(p7.Certificates) == 0 && tsaCert == nil {
			return nil, nil, errors.New("the token embeds no certificate; the TSA certificate must be given (VerifyOptions.TSACertificate)")
		}
		return nil, nil, errors.New("the certificate of the token's signer is neither embedded nor given")
	}
	if err := checkSignature(p7, cert); err != nil {
		return nil, nil, err
	}
	if err := checkTSAProfile(cert); err != nil {
		return nil, nil, err
	}
	if tst.GenTime.Before(cert.NotBefore) || tst.GenTime.After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("genTime %s is outside the TSA certificate's validity (%s to %s)",
			tst.GenTime.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339),
			cert.NotAfter.UTC().Format(time.RFC3339))
	}

	info := &Info{
		GenTime:       tst.GenTime,
		Accuracy:      acc,
		Ordering:      tst.Ordering,
		SerialNumber:  tst.SerialNumber,
		Policy:        tst.Policy,
		Nonce:         tst.Nonce,
		HashAlgorithm: h,
		Certificate:   cert,
	}
	return info, p7, nil
}

// findSigner returns the certificate, among those embedded and then tsaCert,
// whose issuer and serial number are those given, or nil. An embedded
// certificate is no weaker than a given one: either must match the ESS
// signing-certificate hash and chain to the roots.
func findSigner(issuer []byte, serial *big.Int, tsaCert *x509.Certificate, embedded []*x509.Certificate) *x509.Certificate {
	if serial == nil {
		return nil
	}
	match := func(c *x509.Certificate) bool {
		return c != nil && c.SerialNumber != nil && c.SerialNumber.Cmp(serial) == 0 && bytes.Equal(c.RawIssuer, issuer)
	}
	for _, c := range embedded {
		if match(c) {
			return c
		}
	}
	if match(tsaCert) {
		return tsaCert
	}
	return nil
}

// checkSignature checks the one SignerInfo of p7 against cert: the signed
// attributes must be present, name TSTInfo as content type, carry the digest
// of the content and an ESS signing certificate naming cert, and the
// signature over them must verify with cert's key.
func checkSignature(p7 *pkcs7.PKCS7, cert *x509.Certificate) error {
	si := p7.Signers[0]
	h, ok := hashForOID(si.DigestAlgorithm.Algorithm)
	if !ok {
		return fmt.Errorf("the signature's digest algorithm %v is not accepted; only SHA-256, SHA-384 and SHA-512 are",
			si.DigestAlgorithm.Algorithm)
	}
	if len(si.AuthenticatedAttributes) == 0 {
		return errors.New("the token's signature has no signed attributes")
	}
	attrs := make([]signedAttribute, 0, len(si.AuthenticatedAttributes))
	var contentType, messageDigest, essV1, essV2 *asn1.RawValue
	for _, a := range si.AuthenticatedAttributes {
		attrs = append(attrs, signedAttribute{Type: a.Type, Value: a.Value})
		var slot **asn1.RawValue
		switch {
		case a.Type.Equal(oidAttrContentType):
			slot = &contentType
		case a.Type.Equal(oidAttrMessageDigest):
			slot = &messageDigest
		case a.Type.Equal(oidAttrSigningCert):
			slot = &essV1
		case a.Type.Equal(oidAttrSigningCertV2):
			slot = &essV2
		default:
			continue
		}
		if *slot != nil {
			return fmt.Errorf("the signed attribute %v appears more than once", a.Type)
		}
		v := a.Value
		*slot = &v
	}

	var ct asn1.ObjectIdentifier
	if contentType == nil {
		return errors.New("the signed attributes have no content type")
	}
	if err := unmarshalSingle(contentType.Bytes, &ct); err != nil {
		return fmt.Errorf("the content-type attribute is malformed: %w", err)
	}
	if !ct.Equal(oidTSTInfo) {
		return fmt.Errorf("the signed content type is %v, not TSTInfo", ct)
	}

	var md []byte
	if messageDigest == nil {
		return errors.New("the signed attributes have no message digest")
	}
	if err := unmarshalSingle(messageDigest.Bytes, &md); err != nil {
		return fmt.Errorf("the message-digest attribute is malformed: %w", err)
	}
	d := h.New()
	d.Write(p7.Content)
	if !bytes.Equal(md, d.Sum(nil)) {
		return errors.New("the signed message digest does not match the TSTInfo: the token was altered")
	}

	if err := checkESS(essV1, essV2, cert); err != nil {
		return err
	}

	alg, err := signatureAlgorithm(si.DigestEncryptionAlgorithm.Algorithm, h)
	if err != nil {
		return err
	}
	signed, err := asn1.MarshalWithParams(attrs, "set")
	if err != nil {
		return fmt.Errorf("re-encoding the signed attributes: %w", err)
	}
	if err := cert.CheckSignature(alg, signed, si.EncryptedDigest); err != nil {
		return fmt.Errorf("the signature does not verify with the TSA certificate %q: %w", cert.Subject.String(), err)
	}
	return nil
}

// unmarshalSingle decodes the values of an attribute, which must be exactly
// one, into out.
func unmarshalSingle(values []byte, out any) error {
	rest, err := asn1.Unmarshal(values, out)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return errors.New("more than one value")
	}
	return nil
}

// checkESS checks that the ESS signing-certificate attribute (v2 preferred,
// RFC 5035; else v1, RFC 2634) is present and that its first certificate
// identifier is the hash of cert, as RFC 3161 §2.4.2 requires.
func checkESS(v1, v2 *asn1.RawValue, cert *x509.Certificate) error {
	switch {
	case v2 != nil:
		var sc signingCertificateV2
		if err := unmarshalSingle(v2.Bytes, &sc); err != nil {
			return fmt.Errorf("the signing-certificate-v2 attribute is malformed: %w", err)
		}
		if len(sc.Certs) == 0 {
			return errors.New("the signing-certificate-v2 attribute names no certificate")
		}
		id := sc.Certs[0]
		h := crypto.SHA256
		if len(id.HashAlgorithm.Algorithm) > 0 {
			var ok bool
			if h, ok = hashForOID(id.HashAlgorithm.Algorithm); !ok {
				return fmt.Errorf("the signing-certificate-v2 attribute uses hash algorithm %v, which is not accepted", id.HashAlgorithm.Algorithm)
			}
		}
		d := h.New()
		d.Write(cert.Raw)
		if !bytes.Equal(id.CertHash, d.Sum(nil)) {
			return errors.New("the signing-certificate-v2 attribute names another certificate than the signer's")
		}
	case v1 != nil:
		var sc signingCertificate
		if err := unmarshalSingle(v1.Bytes, &sc); err != nil {
			return fmt.Errorf("the signing-certificate attribute is malformed: %w", err)
		}
		if len(sc.Certs) == 0 {
			return errors.New("the signing-certificate attribute names no certificate")
		}
		// ESS v1 identifies certificates by SHA-1; finding a second
		// certificate with the same SHA-1 is still out of reach.
		sum := sha1.Sum(cert.Raw)
		if !bytes.Equal(sc.Certs[0].CertHash, sum[:]) {
			return errors.New("the signing-certificate attribute names another certificate than the signer's")
		}
	default:
		return errors.New("the signed attributes have no ESS signing-certificate attribute (RFC 3161 §2.4.2)")
	}
	return nil
}

// signatureAlgorithm maps a SignerInfo signature algorithm and its digest
// algorithm h to an x509.SignatureAlgorithm. Where the signature algorithm
// names a hash, it must be h.
func signatureAlgorithm(sigAlg asn1.ObjectIdentifier, h crypto.Hash) (x509.SignatureAlgorithm, error) {
	byHash := func(s256, s384, s512 x509.SignatureAlgorithm) x509.SignatureAlgorithm {
		switch h {
		case crypto.SHA384:
			return s384
		case crypto.SHA512:
			return s512
		}
		return s256
	}
	named := func(want crypto.Hash, alg x509.SignatureAlgorithm) (x509.SignatureAlgorithm, error) {
		if want != h {
			return x509.UnknownSignatureAlgorithm, fmt.Errorf("the signature algorithm %v does not go with the digest algorithm %v", sigAlg, h)
		}
		return alg, nil
	}
	switch {
	case sigAlg.Equal(oidRSAEncryption):
		return byHash(x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA), nil
	case sigAlg.Equal(oidSHA256WithRSA):
		return named(crypto.SHA256, x509.SHA256WithRSA)
	case sigAlg.Equal(oidSHA384WithRSA):
		return named(crypto.SHA384, x509.SHA384WithRSA)
	case sigAlg.Equal(oidSHA512WithRSA):
		return named(crypto.SHA512, x509.SHA512WithRSA)
	case sigAlg.Equal(oidECPublicKey):
		return byHash(x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512), nil
	case sigAlg.Equal(oidECDSAWithSHA256):
		return named(crypto.SHA256, x509.ECDSAWithSHA256)
	case sigAlg.Equal(oidECDSAWithSHA384):
		return named(crypto.SHA384, x509.ECDSAWithSHA384)
	case sigAlg.Equal(oidECDSAWithSHA512):
		return named(crypto.SHA512, x509.ECDSAWithSHA512)
	}
	// Ed25519 and RSA-PSS are left out: OpenSSL's ts command cannot check
	// CMS signatures of the former, and no TSA we know of uses the latter.
	return x509.UnknownSignatureAlgorithm, fmt.Errorf("the signature algorithm %v is not supported; only RSA PKCS #1 v1.5 and ECDSA are", sigAlg)
}
