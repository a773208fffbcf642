package smime

import (
	"errors"
	"strings"
)

// Errors that classify why a message was refused or did not verify. They are
// matched with errors.Is; the error values returned carry the details.
var (
	// ErrMessageTooLarge means the message exceeds the configured size limit.
	ErrMessageTooLarge = errors.New("smime: message too large")
	// ErrSignatureTooLarge means the signature part exceeds MaxSignatureSize
	// or its ASN.1 encoding is too deep or too complex to parse safely.
	ErrSignatureTooLarge = errors.New("smime: signature too large or too complex")
	// ErrTooDeep means the MIME structure is nested deeper than allowed.
	ErrTooDeep = errors.New("smime: MIME structure too deep")
	// ErrNotSigned means the message is not a multipart/signed S/MIME message.
	ErrNotSigned = errors.New("smime: message is not multipart/signed")
	// ErrMalformed means the MIME structure or the signature cannot be parsed.
	ErrMalformed = errors.New("smime: malformed message")
	// ErrContentMismatch means the signed content differs from what was signed.
	ErrContentMismatch = errors.New("smime: signature does not match the signed content")
	// ErrInvalidSignature means the signature value is not valid for the
	// signer certificate's key.
	ErrInvalidSignature = errors.New("smime: invalid signature value")
	// ErrExpired means a certificate was expired or not yet valid at the
	// verification time.
	ErrExpired = errors.New("smime: certificate not valid at the verification time")
	// ErrUntrusted means the signer certificate does not chain to a trusted
	// root or the chain breaks a constraint.
	ErrUntrusted = errors.New("smime: certificate chain not trusted")
	// ErrSignerMismatch means the signer certificate does not carry the
	// address in the message's From field.
	ErrSignerMismatch = errors.New("smime: signer is not the From address")
)

// reason is an error with its own message that matches a classifying
// sentinel (kind) and, when known, the underlying cause.
type reason struct {
	kind  error
	cause error
	msg   string
}

func (r *reason) Error() string { return r.msg }

func (r *reason) Unwrap() []error {
	if r.cause == nil {
		return []error{r.kind}
	}
	return []error{r.kind, r.cause}
}

// newReason returns an error with message msg, prefixed "smime: ", that
// matches kind and cause (which may be nil) with errors.Is and errors.As.
func newReason(kind, cause error, msg string) error {
	return &reason{kind: kind, cause: cause, msg: "smime: " + msg}
}

// VerifyError is returned by Verify when a message was parsed but did not
// verify. It lists every reason found, not only the first.
type VerifyError struct {
	Reasons []error
}

// Error joins the reasons with "; ".
func (e *VerifyError) Error() string {
	msgs := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		msgs[i] = r.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the reasons, so that errors.Is matches any of them.
func (e *VerifyError) Unwrap() []error { return e.Reasons }
