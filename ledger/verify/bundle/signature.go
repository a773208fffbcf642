package bundle

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	"github.com/digitorus/pkcs7"

	"github.com/custode/custode/ledger/evidence"
	"github.com/custode/custode/ledger/verify"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// OIDSignatureTimeStampToken is id-aa-signatureTimeStampToken (RFC 5126
// §6.1.1, CAdES-T): an unsigned attribute of a SignerInfo holding an RFC
// 3161 TimeStampToken whose message imprint is the hash of the
// SignerInfo's signature value.
var OIDSignatureTimeStampToken = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}

// signatureToken finds and checks the signature timestamp of a CMS
// SignedData with one signer: it returns the token's time, or the zero
// time when the signature carries no token. A token that is there but
// does not verify is an error: it is never ignored.
func signatureToken(p7 *pkcs7.PKCS7, roots *x509.CertPool) (time.Time, error) {
	if len(p7.Signers) != 1 {
		return time.Time{}, fmt.Errorf("%d signers, want 1", len(p7.Signers))
	}
	si := p7.Signers[0]
	var token []byte
	for _, a := range si.UnauthenticatedAttributes {
		if !a.Type.Equal(OIDSignatureTimeStampToken) {
			continue
		}
		if token != nil {
			return time.Time{}, errors.New("more than one signature timestamp attribute")
		}
		// The attribute's values: a SET holding exactly one token.
		var v asn1.RawValue
		rest, err := asn1.Unmarshal(a.Value.Bytes, &v)
		if err != nil || len(rest) != 0 {
			return time.Time{}, errors.New("the signature timestamp attribute does not hold exactly one token")
		}
		token = v.FullBytes
	}
	if token == nil {
		return time.Time{}, nil
	}
	// The imprint is a hash of the signature value under the token's
	// algorithm: SHA-256 in practice, SHA-384 or SHA-512 allowed.
	var first error
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := h.New()
		d.Write(si.EncryptedDigest)
		info, err := tsa.Verify(token, d.Sum(nil), tsa.VerifyOptions{Roots: roots})
		if err == nil && info.HashAlgorithm == h {
			return info.GenTime, nil
		}
		if first == nil {
			first = err
		}
	}
	return time.Time{}, fmt.Errorf("its signature timestamp (over SHA-256 of the signature value) does not verify: %w", first)
}

// parseCMS parses a detached CMS SignedData of the form
// verify.CheckSignatureProfile requires and returns it with the signer's
// certificate.
func parseCMS(sig []byte) (*pkcs7.PKCS7, *x509.Certificate, error) {
	if len(sig) == 0 {
		return nil, nil, errors.New("missing")
	}
	if len(sig) > verify.MaxSignatureBytes {
		return nil, nil, fmt.Errorf("%d bytes, more than a signature has", len(sig))
	}
	if err := verify.CheckSignatureProfile(sig); err != nil {
		return nil, nil, fmt.Errorf("not a signature of the form BUNDLE.md §1.1 gives: %w", err)
	}
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return nil, nil, fmt.Errorf("not a CMS signature: %w", err)
	}
	if len(p7.Signers) != 1 {
		return nil, nil, fmt.Errorf("%d signers, want 1", len(p7.Signers))
	}
	ias := p7.Signers[0].IssuerAndSerialNumber
	for _, c := range p7.Certificates {
		if c.SerialNumber != nil && ias.SerialNumber != nil && c.SerialNumber.Cmp(ias.SerialNumber) == 0 && bytes.Equal(c.RawIssuer, ias.IssuerName.FullBytes) {
			return p7, c, nil
		}
	}
	return nil, nil, errors.New("the signer's certificate is not in the signature")
}

// verifyGestoreCMS checks a detached CMS signature sig over data that
// must be the gestore's: made by exactly the certificate gestore, valid,
// and with that certificate chaining to roots (e-mail protection usage)
// at the time of the signature's own timestamp token, or, without one,
// at fallback (the current time, or the checkpoint's token time for the
// checkpoint), never at the signingTime the signer claims.
func verifyGestoreCMS(file string, data, sig []byte, gestore *x509.Certificate, roots *x509.CertPool, fallback time.Time, source string) (SignatureTime, error) {
	return verifyGestoreSignature(file, data, sig, gestore, roots, fallback, source, false)
}

// verifyCheckpointCMS is verifyGestoreCMS for a checkpoint's signature,
// which may also be by an earlier signing certificate of the same
// gestore (SameGestore): a checkpoint signed before the gestore renewed
// its certificate.
func verifyCheckpointCMS(file string, data, sig []byte, gestore *x509.Certificate, roots *x509.CertPool, fallback time.Time, source string) (SignatureTime, error) {
	return verifyGestoreSignature(file, data, sig, gestore, roots, fallback, source, true)
}

func verifyGestoreSignature(file string, data, sig []byte, gestore *x509.Certificate, roots *x509.CertPool, fallback time.Time, source string, earlier bool) (SignatureTime, error) {
	st := SignatureTime{File: file}
	p7, signer, err := parseCMS(sig)
	if err != nil {
		return st, fmt.Errorf("%s: %w", file, err)
	}
	st.Signer = signer
	if gestore == nil {
		return st, fmt.Errorf("%s is signed by %s, and the bundle names no valid gestore's certificate to check it against", file, signer.Subject)
	}
	if !bytes.Equal(signer.Raw, gestore.Raw) {
		if err := CheckGestoreRole(signer); err != nil {
			return st, fmt.Errorf("%s is not the gestore's signature: %w", file, err)
		}
		if !earlier || !SameGestore(signer, gestore) {
			also := ""
			if earlier {
				also = ", nor by an earlier certificate of the same gestore (its subject and subjectAltName)"
			}
			return st, fmt.Errorf("%s is not the gestore's signature: it is signed by %s <%s> (serial %x), not by the certificate %s names (%s <%s>, serial %x)%s",
				file, signer.Subject, strings.Join(signer.EmailAddresses, ", "), signer.SerialNumber, FileGestoreCert, gestore.Subject, strings.Join(gestore.EmailAddresses, ", "), gestore.SerialNumber, also)
		}
		st.Earlier = true
	}
	at, err := signatureToken(p7, roots)
	if err != nil {
		return st, fmt.Errorf("%s: %w", file, err)
	}
	st.At, st.Source = at, "signature timestamp"
	if at.IsZero() {
		st.At, st.Source = fallback, source
	}
	inter := x509.NewCertPool()
	for _, c := range p7.Certificates {
		inter.AddCert(c)
	}
	if _, err := signer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: st.At,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		return st, fmt.Errorf("%s: the gestore's certificate is not valid at %s (%s): %w", file, st.At.UTC().Format(time.RFC3339), st.Source, err)
	}
	p7.Content = data
	if err := p7.VerifyWithOpts(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: st.At,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		return st, fmt.Errorf("%s is not a valid signature over its file: %w", file, err)
	}
	return st, nil
}

// verifyReceipt checks receipt.eml against the entry: an original is the
// bytes whose SHA-256 the entry records, signed by a certificate under
// the anchors, validated at its own signature timestamp or else at the
// checkpoint's (the entry proves the original existed then); anything
// else must be a reproduction signed by the gestore's certificate,
// validated at its signature timestamp or else now, whose signed entity
// carries entry.json byte for byte and states the entry's seq, kind,
// identificativo and riferimento temporale.
func verifyReceipt(rep *Report, receipt, entryRaw []byte, entry *evidence.Entry, gestore *x509.Certificate, anchors []*x509.Certificate, roots *x509.CertPool, now, cpTime time.Time) {
	sum := sha256.Sum256(receipt)
	original := len(entry.SHA256) == sha256.Size && bytes.Equal(sum[:], entry.SHA256)
	rep.Reproduction = !original
	fallback, source := now, "current time"
	if original {
		fallback, source = cpTime, "checkpoint timestamp"
	}
	res, at, source, err := verifySMIME(receipt, anchors, roots, fallback, source)
	name := "receipt signature: receipt.eml is an S/MIME message signed by a certificate that chains to the trust anchor, valid at its timestamp's time"
	if original {
		name += " (or the checkpoint's: the entry records its SHA-256)"
	} else {
		name += " (or now, without one), by the gestore's certificate certs/gestore.pem"
		// Who signed comes first: a certificate that is not the
		// gestore's fails for that, whatever else is wrong with it.
		if res != nil && res.Signer != nil && (gestore == nil || !bytes.Equal(res.Signer.Raw, gestore.Raw)) {
			err = fmt.Errorf("receipt.eml, a reproduction, is not the gestore's signature: it is signed by %s, not by the certificate %s names", res.Signer.Subject, FileGestoreCert)
			if rerr := CheckGestoreRole(res.Signer); rerr != nil {
				err = fmt.Errorf("receipt.eml, a reproduction, is not the gestore's signature: %w", rerr)
			}
		}
	}
	if err == nil {
		rep.addSignature(SignatureTime{File: FileReceipt, Signer: res.Signer, At: at, Source: source}, nil, name)
	} else {
		rep.add(name, err, "")
	}
	if original {
		rep.add("receipt: the ORIGINAL, byte for byte: its SHA-256 is the one the entry records", nil, fmt.Sprintf("%x", sum))
		return
	}
	var bindErr error
	if res == nil {
		bindErr = fmt.Errorf("receipt.eml has SHA-256 %x, not the entry's %x, and is not a signed reproduction either", sum, entry.SHA256)
	} else {
		bindErr = checkReproduction(res, entryRaw, entry)
	}
	rep.add("receipt: a REPRODUCTION from the log, not the original: its signed text carries entry.json byte for byte and states its seq, kind, identificativo and riferimento temporale", bindErr, "")
}

// verifySMIME verifies an S/MIME message at its signature timestamp's
// time, or at fallback when it carries none.
func verifySMIME(msg []byte, anchors []*x509.Certificate, roots *x509.CertPool, fallback time.Time, source string) (*smime.Result, time.Time, string, error) {
	if fallback.IsZero() {
		return nil, fallback, source, fmt.Errorf("receipt.eml: no valid %s to validate it at", source)
	}
	opts := smime.VerifyOptions{Roots: anchors, CurrentTime: fallback, AllowSHA1Certificates: true}
	res, err := smime.Verify(msg, opts)
	if res == nil {
		return nil, fallback, source, fmt.Errorf("receipt.eml: %w", err)
	}
	if p7, _, perr := parseCMS(res.Signature); perr == nil {
		at, terr := signatureToken(p7, roots)
		if terr != nil {
			return res, fallback, source, fmt.Errorf("receipt.eml: %w", terr)
		}
		if !at.IsZero() {
			opts.CurrentTime, source = at, "signature timestamp"
			res, err = smime.Verify(msg, opts)
			if res == nil {
				return nil, at, source, fmt.Errorf("receipt.eml: %w", err)
			}
		}
	}
	if err != nil {
		return res, opts.CurrentTime, source, fmt.Errorf("receipt.eml (validated at %s, %s): %w", opts.CurrentTime.UTC().Format(time.RFC3339), source, err)
	}
	return res, opts.CurrentTime, source, nil
}

// ReproductionFacts is the block of lines a reproduction's signed text
// ends with, which a verifier compares with the entry it carries (and
// BUNDLE.md documents): one "key: value" line each for the entry's seq,
// kind, identificativo and riferimento temporale (in entry.json's form).
func ReproductionFacts(e *evidence.Entry) []string {
	return []string{
		fmt.Sprintf("seq: %d", e.Seq),
		"kind: " + string(e.Kind),
		"identificativo: " + e.Identificativo,
		"riferimento_temporale: " + e.Time.UTC().Format("2006-01-02T15:04:05.000000000Z"),
	}
}

// checkReproduction checks that the signed entity of a reproduction
// carries entryRaw byte for byte, as its attachment entry.json, and that
// its text states the entry's facts (ReproductionFacts).
func checkReproduction(res *smime.Result, entryRaw []byte, entry *evidence.Entry) error {
	text, attached, err := reproductionParts(res.Signed)
	if err != nil {
		return fmt.Errorf("receipt.eml is neither the original (its SHA-256 is not the entry's) nor a reproduction: %w", err)
	}
	if !bytes.Equal(attached, entryRaw) {
		if other, derr := evidence.DecodeEntry(attached); derr == nil {
			return fmt.Errorf("receipt.eml is the reproduction of another entry: it carries seq %d, %s, identificativo %s; entry.json is seq %d, %s, identificativo %s",
				other.Seq, other.Kind, other.Identificativo, entry.Seq, entry.Kind, entry.Identificativo)
		}
		return fmt.Errorf("the entry.json that receipt.eml carries is not entry.json byte for byte")
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range ReproductionFacts(entry) {
		if !lines[want] {
			k, _, _ := strings.Cut(want, ":")
			return fmt.Errorf("the signed text of receipt.eml does not state the entry's %s: no line %q", k, want)
		}
	}
	return nil
}

// maxReproductionParts bounds the parts of a reproduction's entity.
const maxReproductionParts = 8

// reproductionParts takes apart the signed entity of a reproduction: a
// multipart/mixed with one text/plain part and one part named entry.json.
// It returns the decoded text and the attachment's bytes.
func reproductionParts(entity []byte) (text string, attached []byte, err error) {
	msg, err := mail.ReadMessage(bytes.NewReader(entity))
	if err != nil {
		return "", nil, fmt.Errorf("its signed entity does not parse: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		return "", nil, errors.New("its signed entity is not multipart/mixed")
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	texts, attachments := 0, 0
	for i := 0; ; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("its signed entity: %w", err)
		}
		if i >= maxReproductionParts {
			return "", nil, errors.New("its signed entity has too many parts")
		}
		body, err := decodePart(p)
		if err != nil {
			return "", nil, err
		}
		ct, ctParams, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		_, dParams, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		switch {
		case dParams["filename"] == FileEntry || ctParams["name"] == FileEntry:
			attachments++
			attached = body
		case ct == "text/plain":
			texts++
			text = string(body)
		}
	}
	if texts != 1 || attachments != 1 {
		return "", nil, fmt.Errorf("its signed entity has %d text parts and %d entry.json attachments, want one of each", texts, attachments)
	}
	return text, attached, nil
}

// decodePart returns a MIME part's body, its transfer encoding undone.
func decodePart(p *multipart.Part) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(p, maxBundleFile))
	if err != nil {
		return nil, fmt.Errorf("its signed entity: %w", err)
	}
	switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
		return raw, nil
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, raw)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return nil, fmt.Errorf("a part of its signed entity is not valid base64: %w", err)
		}
		return out[:n], nil
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return nil, fmt.Errorf("a part of its signed entity is not valid quoted-printable: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("a part of its signed entity has the transfer encoding %q", cte)
	}
}

// SameGestore reports whether cert is another signing certificate of the
// gestore whose certificate is gestore (an earlier one, before a
// renewal): the same subject and the same subjectAltName extension, byte
// for byte (BUNDLE.md §1). The role and the chain are checked apart.
func SameGestore(cert, gestore *x509.Certificate) bool {
	san := func(c *x509.Certificate) []byte {
		for _, e := range c.Extensions {
			if e.Id.Equal(oidSubjectAltName) {
				return e.Value
			}
		}
		return nil
	}
	a, b := san(cert), san(gestore)
	return bytes.Equal(cert.RawSubject, gestore.RawSubject) && a != nil && bytes.Equal(a, b)
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
