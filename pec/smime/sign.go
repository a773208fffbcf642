package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/digitorus/pkcs7"
)

// MinRSABits is the smallest RSA key Sign accepts, the minimum the PEC
// technical rules set for gestori signing keys.
const MinRSABits = 2048

// maxLineLength is the longest line SMTP carries (RFC 5321 §4.5.3.1.6),
// without its CRLF. A longer line would be broken in transit, and the
// signature with it.
const maxLineLength = 998

// A Signer is the identity a gestore signs with: a private key, its
// certificate and the chain of CA certificates above it.
type Signer struct {
	// Key is the private key. RSA keys of at least MinRSABits and ECDSA
	// keys on P-256, P-384 or P-521 are accepted. It may live in an HSM.
	Key crypto.Signer
	// Certificate is the signer certificate; its public key is Key's.
	Certificate *x509.Certificate
	// Chain holds the CA certificates to embed, the signer's issuer first;
	// the root may be left out.
	Chain []*x509.Certificate
	// Stamp, if set, is applied to every CMS signature made with s before
	// it is written out, to add unsigned attributes: in practice a CAdES-T
	// signature time-stamp, with tsa.StampSignature. It must return a DER
	// CMS SignedData that still verifies over the same content; Sign
	// checks that it does.
	Stamp func(p7s []byte) ([]byte, error)
}

// check validates s for signing at time now.
func (s *Signer) check(now time.Time) error {
	if s == nil || s.Key == nil || s.Certificate == nil {
		return fmt.Errorf("smime: signer needs a key and a certificate")
	}
	pub, ok := s.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(s.Certificate.PublicKey) {
		return fmt.Errorf("smime: the signing key does not match certificate %s", certName(s.Certificate))
	}
	switch k := s.Key.Public().(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("smime: RSA key of %d bits is below the %d-bit minimum", bits, MinRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("smime: unsupported ECDSA curve %s", k.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("smime: unsupported key type %T: use RSA or ECDSA", k)
	}
	if !validAt(s.Certificate, now) {
		return validityReason(s.Certificate, now, nil)
	}
	if ku := s.Certificate.KeyUsage; ku != 0 && ku&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("smime: certificate %s does not allow digital signatures (key usage)", certName(s.Certificate))
	}
	return nil
}

// Sign wraps entity, a complete MIME entity (header fields, an empty line,
// body), into a multipart/signed entity (RFC 5751 §3.5) signed by s with a
// detached CMS SignedData over SHA-256 that embeds the signer certificate and
// its chain. Bare LF line endings in entity are turned into CRLF before
// signing. It returns the value of the Content-Type field (with
// protocol="application/x-pkcs7-signature", micalg=sha-256 and a random
// boundary) and the body that goes with it, in CRLF form. The signature
// part is application/x-pkcs7-signature named smime.p7s, the spelling of
// RFC 6109 and of every gestore in service (Verify accepts the
// application/pkcs7-signature of RFC 5751 too).
//
// The CMS signingTime attribute is the time of signing by this machine's
// clock. Sign refuses a certificate that is not valid at that time, entity
// lines longer than 998 bytes, which SMTP would break, and an entity without
// a parsable header section.
func Sign(entity []byte, s *Signer) (contentType string, body []byte, err error) {
	if err := s.check(time.Now()); err != nil {
		return "", nil, err
	}
	entity = canonicalize(entity)
	if err := checkEntity(entity); err != nil {
		return "", nil, err
	}
	p7s, err := signDetached(entity, s)
	if err != nil {
		return "", nil, err
	}
	boundary, err := newBoundary(entity)
	if err != nil {
		return "", nil, err
	}
	var b bytes.Buffer
	b.Grow(len(entity) + len(p7s)*4/3 + 512)
	b.WriteString("This is an S/MIME signed message\r\n\r\n--" + boundary + "\r\n")
	b.Write(entity)
	b.WriteString("\r\n--" + boundary + "\r\n" +
		"Content-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n" +
		"Content-Description: S/MIME Cryptographic Signature\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(p7s)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n\r\n--" + boundary + "--\r\n")
	contentType = `multipart/signed; protocol="application/x-pkcs7-signature"; micalg=sha-256; boundary="` + boundary + `"`
	return contentType, b.Bytes(), nil
}

// A Field is a header field of a message that SignMessage writes: its name
// and its value, ASCII, already encoded (RFC 2047) where needed, unfolded.
type Field struct {
	Name, Value string
	// Keep is how many leading bytes of Value stay together: SignMessage
	// never folds at a space among them, so that a prefix such as
	// "ACCETTAZIONE: " stays on one line with the text that follows it.
	Keep int
}

// SignMessage returns a complete RFC 5322 message: the header fields of
// header in order, then MIME-Version and Content-Type, then the
// multipart/signed body that Sign makes of entity. Long field values are
// folded at spaces. header must hold exactly one From and one Date field and
// no MIME-Version, Content-Type or Content-Transfer-Encoding field; names
// must be valid field names and values ASCII without line breaks.
func SignMessage(header []Field, entity []byte, s *Signer) ([]byte, error) {
	var h bytes.Buffer
	var from, date int
	for _, f := range header {
		if err := checkField(f); err != nil {
			return nil, err
		}
		switch strings.ToLower(f.Name) {
		case "from":
			from++
		case "date":
			date++
		case "mime-version", "content-type", "content-transfer-encoding":
			return nil, fmt.Errorf("smime: header field %s is set by SignMessage", f.Name)
		}
		if err := writeField(&h, f); err != nil {
			return nil, err
		}
	}
	if from != 1 || date != 1 {
		return nil, fmt.Errorf("smime: the header needs exactly one From and one Date field, it has %d and %d", from, date)
	}
	ct, body, err := Sign(entity, s)
	if err != nil {
		return nil, err
	}
	h.WriteString("MIME-Version: 1.0\r\n")
	if err := writeField(&h, Field{Name: "Content-Type", Value: ct}); err != nil {
		return nil, err
	}
	h.WriteString("\r\n")
	h.Write(body)
	return h.Bytes(), nil
}

// checkField validates a header field for SignMessage.
func checkField(f Field) error {
	if f.Name == "" {
		return fmt.Errorf("smime: empty header field name")
	}
	for i := 0; i < len(f.Name); i++ {
		if c := f.Name[i]; c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("smime: invalid header field name %q", f.Name)
		}
	}
	for i := 0; i < len(f.Value); i++ {
		switch c := f.Value[i]; {
		case c == '\r' || c == '\n':
			return fmt.Errorf("smime: header field %s: value has a line break", f.Name)
		case c >= 0x80:
			return fmt.Errorf("smime: header field %s: value is not ASCII (encode it with mime.QEncoding)", f.Name)
		case c < ' ' && c != '\t', c == 0x7f:
			return fmt.Errorf("smime: header field %s: value has a control character", f.Name)
		}
	}
	return nil
}

// writeField writes f, folding its value so that lines stay within 78
// characters where possible and within 998 always (RFC 5322 §2.1.1). It
// folds only at spaces outside quoted strings and past f.Keep: a quoted
// display name such as "Per conto di: …" is never broken, which some
// address parsers (Python's email.utils.parseaddr) do not read back.
func writeField(b *bytes.Buffer, f Field) error {
	line := f.Name + ":"
	for i, w := range foldUnits(strings.TrimSpace(f.Value), f.Keep) {
		if i > 0 && len(line)+1+len(w) > 78 && strings.TrimSpace(line) != "" {
			if len(line) > maxLineLength {
				return fmt.Errorf("smime: header field %s has a word longer than %d bytes", f.Name, maxLineLength)
			}
			b.WriteString(line + "\r\n")
			line = ""
		}
		line += " " + w
	}
	if len(line) > maxLineLength {
		return fmt.Errorf("smime: header field %s has a word longer than %d bytes", f.Name, maxLineLength)
	}
	b.WriteString(line + "\r\n")
	return nil
}

// foldUnits splits v at the spaces where a header field may be folded:
// spaces outside quoted strings (a backslash escapes the next character in
// one) at offset keep or beyond. Runs of spaces are kept inside a unit, so
// that joining the units with single spaces gives v back.
func foldUnits(v string, keep int) []string {
	var units []string
	start, inQuote := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ' ' && !inQuote && i >= keep && i > start:
			units = append(units, v[start:i])
			start = i + 1
		}
	}
	return append(units, v[start:])
}

// checkEntity checks that the canonical entity can be signed and sent.
func checkEntity(entity []byte) error {
	if len(entity) == 0 {
		return fmt.Errorf("smime: empty entity")
	}
	for i := 0; i < len(entity); {
		line, next := nextLine(entity, i)
		if len(line) > maxLineLength {
			return fmt.Errorf("smime: entity line at offset %d is %d bytes long, over the %d-byte SMTP limit", i, len(line), maxLineLength)
		}
		i = next
	}
	if _, _, err := parseHeader(entity); err != nil {
		return fmt.Errorf("%w (in the entity to sign)", err)
	}
	return nil
}

// signDetached returns a detached CMS SignedData over content, SHA-256,
// with the signer certificate and chain embedded and an ESS
// signing-certificate-v2 attribute naming it, passed through s.Stamp when
// set. It checks its own output:
// the signature parses, uses SHA-256 and verifies over content.
func signDetached(content []byte, s *Signer) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, fmt.Errorf("smime: %w", err)
	}
	// The library defaults to SHA-1: set SHA-256 every time.
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	ess, err := SigningCertificateV2(s.Certificate)
	if err != nil {
		return nil, err
	}
	if err := sd.AddSignerChain(s.Certificate, s.Key, s.Chain, pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{ess}}); err != nil {
		return nil, fmt.Errorf("smime: signing: %w", err)
	}
	sd.Detach()
	p7s, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("smime: encoding the signature: %w", err)
	}
	if s.Stamp != nil {
		if p7s, err = s.Stamp(p7s); err != nil {
			return nil, fmt.Errorf("smime: stamping the signature: %w", err)
		}
	}
	sig, err := ParseSignature(p7s)
	if err != nil {
		return nil, fmt.Errorf("smime: the signature made does not parse: %w", err)
	}
	if sig.Digest != crypto.SHA256 {
		return nil, fmt.Errorf("smime: the signature made uses %v, not SHA-256", sig.Digest)
	}
	if err := sig.CheckContent(content); err != nil {
		return nil, fmt.Errorf("smime: the signature made does not verify: %w", err)
	}
	return p7s, nil
}

// newBoundary returns a random multipart boundary that does not occur in
// entity.
func newBoundary(entity []byte) (string, error) {
	for range 4 {
		var r [18]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", fmt.Errorf("smime: boundary: %w", err)
		}
		b := "----=_smime_" + hex.EncodeToString(r[:])
		if !bytes.Contains(entity, []byte(b)) {
			return b, nil
		}
	}
	return "", fmt.Errorf("smime: cannot choose a boundary absent from the entity")
}
