package smime

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"
)

// DefaultMaxMessageSize is the message size limit Verify applies when
// VerifyOptions.MaxMessageSize is zero. PEC caps a message at 30 MB (RFC
// 6109 §3.1.1); base64 transfer encoding and a busta wrapping the original
// bring that to about 41 MB, and the limit leaves room above.
const DefaultMaxMessageSize = 64 << 20

// DefaultMaxDepth is the MIME nesting limit Verify applies when
// VerifyOptions.MaxDepth is zero. The message is level 1; a PEC busta
// nests its user's message at level 4, and each forwarded PEC message
// inside adds about four more.
const DefaultMaxDepth = 64

// VerifyOptions says what Verify trusts and when. Roots and one of
// CurrentTime and UseSigningTime are required.
type VerifyOptions struct {
	// Roots are the trusted root certificates.
	Roots []*x509.Certificate
	// Intermediates are certificates that may complete the chain, in
	// addition to those the signature carries.
	Intermediates []*x509.Certificate
	// CurrentTime is the time to check the certificates at: now for
	// incoming mail, the time the message was received or archived for
	// evidence.
	CurrentTime time.Time
	// UseSigningTime checks the certificates at the CMS signingTime
	// attribute instead of CurrentTime. That time is the signer's own
	// claim: use it for archived evidence whose time is corroborated
	// elsewhere (a ledger entry, an RFC 3161 timestamp).
	UseSigningTime bool
	// KeyUsages are the extended key usages the signer certificate must
	// allow; nil means x509.ExtKeyUsageEmailProtection. Certificates that
	// list no extended key usage allow any.
	KeyUsages []x509.ExtKeyUsage
	// AllowSHA1Certificates accepts certificate chains signed with SHA-1,
	// which crypto/x509 refuses, as PEC certificates issued until about
	// 2016 are. Set it to verify archived evidence of those years. SHA-1
	// CMS digests are accepted regardless: gestori still use them.
	AllowSHA1Certificates bool
	// CheckSigner, if not nil, replaces the check that the signer
	// certificate carries the From address (CheckSignerAddress). from is
	// the bare address of the From field.
	CheckSigner func(signer *x509.Certificate, from string) error
	// MaxMessageSize bounds the message in bytes; zero means
	// DefaultMaxMessageSize.
	MaxMessageSize int64
	// MaxDepth bounds the MIME nesting; zero means DefaultMaxDepth.
	MaxDepth int
}

// A Result describes a verified or partly verified message. Header, Signed
// and Signature may share memory with the message passed to Verify.
type Result struct {
	// Signer is the signer certificate.
	Signer *x509.Certificate
	// Chain runs from Signer to a trusted root; nil when the chain did
	// not verify.
	Chain []*x509.Certificate
	// Certificates are those the signature carries.
	Certificates []*x509.Certificate
	// Digest is the CMS digest algorithm (crypto.SHA1 or crypto.SHA256 in
	// practice).
	Digest crypto.Hash
	// Micalg is the micalg parameter the message declares, as written.
	Micalg string
	// SigningTime is the CMS signingTime attribute; zero when absent.
	SigningTime time.Time
	// VerifiedAt is the time the certificates were checked at.
	VerifiedAt time.Time
	// From is the bare address of the message's From field.
	From string
	// Header is the raw header section of the message, which the
	// signature does not cover.
	Header []byte
	// Signed is the signed entity: the first part of the multipart/signed
	// body, in canonical CRLF form, exactly the bytes the signature covers.
	Signed []byte
	// Signature is the decoded smime.p7s part.
	Signature []byte
	// Reasons lists every reason verification failed; empty on success.
	Reasons []error
}

// Verify checks the S/MIME multipart/signed message msg, a whole RFC 5322
// message: that its signature is valid over the signed entity, that the
// signer certificate chains to opts.Roots at the chosen time and that it
// carries the address of the From field.
//
// Verify returns a nil error only if every check passed. A message that
// cannot be parsed (too large, too deep, not multipart/signed, malformed)
// yields a nil Result and an error matching ErrMessageTooLarge,
// ErrSignatureTooLarge, ErrTooDeep, ErrNotSigned or ErrMalformed. A message
// that parses but does not verify yields a Result with Reasons and a
// *VerifyError listing them, each matching ErrContentMismatch,
// ErrInvalidSignature, ErrExpired, ErrUntrusted or ErrSignerMismatch.
func Verify(msg []byte, opts VerifyOptions) (*Result, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if limit := opts.maxMessageSize(); int64(len(msg)) > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(msg), limit)
	}
	m, err := splitSigned(msg, opts.maxDepth())
	if err != nil {
		return nil, err
	}
	sig, err := ParseSignature(m.p7s)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Signer:       sig.Signer,
		Certificates: sig.Certificates,
		Digest:       sig.Digest,
		Micalg:       m.micalg,
		SigningTime:  sig.SigningTime,
		From:         m.from,
		Header:       m.header,
		Signed:       m.signed,
		Signature:    m.p7s,
	}
	if err := sig.CheckContent(m.signed); err != nil {
		res.Reasons = append(res.Reasons, err)
	}

	res.VerifiedAt = opts.CurrentTime
	if opts.UseSigningTime {
		res.VerifiedAt = sig.SigningTime
	}
	switch {
	case res.VerifiedAt.IsZero():
		res.Reasons = append(res.Reasons, newReason(ErrUntrusted, nil, "the signature has no signingTime attribute to verify the certificates at"))
	default:
		if !opts.UseSigningTime && !sig.SigningTime.IsZero() && !validAt(sig.Signer, sig.SigningTime) {
			res.Reasons = append(res.Reasons, newReason(ErrExpired, nil, fmt.Sprintf("signing time %s is outside the validity of %s (%s to %s)",
				sig.SigningTime.UTC().Format(time.RFC3339), certName(sig.Signer),
				sig.Signer.NotBefore.UTC().Format(time.RFC3339), sig.Signer.NotAfter.UTC().Format(time.RFC3339))))
		}
		inter := append(append([]*x509.Certificate(nil), opts.Intermediates...), sig.Certificates...)
		chain, err := verifyChain(sig.Signer, inter, opts.Roots, res.VerifiedAt, opts.keyUsages(), opts.AllowSHA1Certificates)
		if err != nil {
			res.Reasons = append(res.Reasons, err)
		}
		res.Chain = chain
	}

	switch {
	case m.fromErr != nil:
		res.Reasons = append(res.Reasons, m.fromErr)
	case opts.CheckSigner != nil:
		if err := opts.CheckSigner(sig.Signer, m.from); err != nil {
			res.Reasons = append(res.Reasons, err)
		}
	default:
		if err := CheckSignerAddress(sig.Signer, m.from); err != nil {
			res.Reasons = append(res.Reasons, err)
		}
	}
	if len(res.Reasons) > 0 {
		return res, &VerifyError{Reasons: res.Reasons}
	}
	return res, nil
}

// SignatureOf returns the decoded signature (the smime.p7s part, a CMS
// SignedData) of the multipart/signed message msg without checking it,
// bounded as Verify bounds it (DefaultMaxMessageSize, DefaultMaxDepth,
// MaxSignatureSize). It is the first step of validating a signature at the
// time of its CAdES-T time-stamp: read the token's time from the
// signature (tsa.VerifySignatureTimestamp), then Verify with that time as
// VerifyOptions.CurrentTime.
func SignatureOf(msg []byte) ([]byte, error) {
	if int64(len(msg)) > DefaultMaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(msg), int64(DefaultMaxMessageSize))
	}
	m, err := splitSigned(msg, DefaultMaxDepth)
	if err != nil {
		return nil, err
	}
	return m.p7s, nil
}

// VerifyReader reads a message from r, up to opts.MaxMessageSize bytes
// (DefaultMaxMessageSize if zero), and verifies it as Verify does. It stops
// reading, and fails with ErrMessageTooLarge, as soon as the limit is
// passed.
func VerifyReader(r io.Reader, opts VerifyOptions) (*Result, error) {
	limit := opts.maxMessageSize()
	msg, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("smime: reading the message: %w", err)
	}
	if int64(len(msg)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrMessageTooLarge, limit)
	}
	return Verify(msg, opts)
}

func (o *VerifyOptions) check() error {
	switch {
	case len(o.Roots) == 0:
		return fmt.Errorf("smime: VerifyOptions.Roots is empty")
	case o.CurrentTime.IsZero() && !o.UseSigningTime:
		return fmt.Errorf("smime: VerifyOptions needs CurrentTime or UseSigningTime")
	case !o.CurrentTime.IsZero() && o.UseSigningTime:
		return fmt.Errorf("smime: VerifyOptions sets both CurrentTime and UseSigningTime")
	case o.MaxMessageSize < 0 || o.MaxDepth < 0:
		return fmt.Errorf("smime: negative VerifyOptions limit")
	}
	return nil
}

func (o *VerifyOptions) maxMessageSize() int64 {
	if o.MaxMessageSize > 0 {
		return o.MaxMessageSize
	}
	return DefaultMaxMessageSize
}

func (o *VerifyOptions) maxDepth() int {
	if o.MaxDepth > 0 {
		return o.MaxDepth
	}
	return DefaultMaxDepth
}

func (o *VerifyOptions) keyUsages() []x509.ExtKeyUsage {
	if o.KeyUsages != nil {
		return o.KeyUsages
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
}

// signedMessage is a multipart/signed message taken apart.
type signedMessage struct {
	header  []byte // raw header section
	micalg  string
	from    string // bare address of the From field
	fromErr error  // why from is empty
	signed  []byte // first part, canonical CRLF
	p7s     []byte // decoded signature part
}

// splitSigned takes apart the multipart/signed message msg: the header, the
// first part's exact bytes and the decoded signature, bounding the nesting
// depth and the signature size.
func splitSigned(msg []byte, maxDepth int) (*signedMessage, error) {
	h, bodyStart, err := parseHeader(msg)
	if err != nil {
		return nil, err
	}
	mt, err := parseContentType(h)
	if err != nil {
		return nil, err
	}
	if mt.typ != "multipart/signed" {
		return nil, fmt.Errorf("%w (Content-Type is %s)", ErrNotSigned, mt.typ)
	}
	if p, ok := mt.params["protocol"]; ok && !isSignatureType(p) {
		return nil, fmt.Errorf("%w: multipart/signed protocol %q is not PKCS #7", ErrNotSigned, p)
	}
	boundary := mt.params["boundary"]
	if boundary == "" {
		return nil, fmt.Errorf("%w: multipart/signed without a boundary", ErrMalformed)
	}
	m := &signedMessage{header: msg[:bodyStart], micalg: mt.params["micalg"]}
	m.from, m.fromErr = fromAddress(h)

	var parts [][]byte
	closed, err := forEachPart(msg[bodyStart:], boundary, func(part []byte) error {
		if len(parts) == 2 {
			return fmt.Errorf("%w: multipart/signed has more than two parts", ErrMalformed)
		}
		parts = append(parts, part)
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case len(parts) == 0:
		return nil, fmt.Errorf("%w: no part delimited by boundary %q", ErrMalformed, boundary)
	case !closed:
		return nil, fmt.Errorf("%w: multipart/signed has no closing boundary (truncated message?)", ErrMalformed)
	case len(parts) != 2:
		return nil, fmt.Errorf("%w: multipart/signed has %d parts, want 2", ErrMalformed, len(parts))
	}
	if err := checkDepth(parts[0], 2, maxDepth); err != nil {
		return nil, err
	}
	m.signed = canonicalize(parts[0])
	if m.p7s, err = decodeSignaturePart(parts[1]); err != nil {
		return nil, err
	}
	return m, nil
}

// isSignatureType reports whether t names a PKCS #7 detached signature.
func isSignatureType(t string) bool {
	t = strings.ToLower(strings.TrimSpace(t))
	return t == "application/pkcs7-signature" || t == "application/x-pkcs7-signature"
}

// fromAddress returns the bare address of the single From field of h.
func fromAddress(h header) (string, error) {
	switch n := h.count("From"); n {
	case 0:
		return "", newReason(ErrSignerMismatch, nil, "the message has no From field")
	case 1:
	default:
		return "", newReason(ErrSignerMismatch, nil, fmt.Sprintf("the message has %d From fields", n))
	}
	v, _ := h.get("From")
	list, err := mail.ParseAddressList(v)
	if err != nil {
		// Fall back to the last angle-bracketed address, which real
		// mail with odd display names still carries.
		if i, j := strings.LastIndexByte(v, '<'), strings.LastIndexByte(v, '>'); i >= 0 && j > i+1 {
			if a, err := mail.ParseAddress(v[i : j+1]); err == nil {
				return a.Address, nil
			}
		}
		return "", newReason(ErrSignerMismatch, err, fmt.Sprintf("cannot parse the From field %q: %v", truncate([]byte(v), 80), err))
	}
	if len(list) != 1 {
		return "", newReason(ErrSignerMismatch, nil, fmt.Sprintf("the From field holds %d addresses, want one", len(list)))
	}
	return list[0].Address, nil
}

// decodeSignaturePart checks the signature part's type and decodes its
// body, refusing one that would decode to more than MaxSignatureSize bytes
// before decoding it.
func decodeSignaturePart(part []byte) ([]byte, error) {
	h, bodyStart, err := parseHeader(part)
	if err != nil {
		return nil, fmt.Errorf("%w (in the signature part)", err)
	}
	mt, err := parseContentType(h)
	if err != nil {
		return nil, err
	}
	if !isSignatureType(mt.typ) {
		return nil, fmt.Errorf("%w: the second part is %s, not a PKCS #7 signature", ErrNotSigned, mt.typ)
	}
	body := part[bodyStart:]
	cte, _ := h.get("Content-Transfer-Encoding")
	switch strings.ToLower(cte) {
	case "binary", "8bit":
		if len(body) > MaxSignatureSize {
			return nil, fmt.Errorf("%w: signature part is %d bytes, the limit is %d", ErrSignatureTooLarge, len(body), MaxSignatureSize)
		}
		return body, nil
	case "base64", "":
	default:
		return nil, fmt.Errorf("%w: signature part has Content-Transfer-Encoding %q", ErrMalformed, cte)
	}
	// Drop the white space between base64 lines, bounding the size first.
	n, data := 0, 0
	for _, c := range body {
		if !isSpace(c) {
			n++
			if c != '=' {
				data++
			}
		}
	}
	if decoded := data / 4 * 3; decoded > MaxSignatureSize {
		return nil, fmt.Errorf("%w: signature part decodes to about %d bytes, the limit is %d", ErrSignatureTooLarge, decoded, MaxSignatureSize)
	}
	enc := make([]byte, 0, n)
	for _, c := range body {
		if !isSpace(c) {
			enc = append(enc, c)
		}
	}
	enc = bytes.TrimRight(enc, "=")
	p7s, err := base64.RawStdEncoding.DecodeString(string(enc))
	if err != nil {
		return nil, fmt.Errorf("%w: signature part is not valid base64: %v", ErrMalformed, err)
	}
	if len(p7s) == 0 {
		return nil, fmt.Errorf("%w: empty signature part", ErrMalformed)
	}
	return p7s, nil
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}
