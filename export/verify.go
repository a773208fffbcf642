package export

import (
	"crypto/x509"
	"io"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/verify/bundle"
)

// The offline verifier of bundles and extracts lives in package
// ledger/verify/bundle, which links no database; the names below keep
// this package's API as it was. New code should use package bundle.

type (
	// Check is bundle.Check: one verification step and its outcome.
	Check = bundle.Check
	// SignatureTime is bundle.SignatureTime: at what time one signature
	// was validated, and why that time.
	SignatureTime = bundle.SignatureTime
	// VerifyReport is bundle.Report: the outcome of verifying a bundle.
	VerifyReport = bundle.Report
	// VerifyOptions is bundle.Options: the trust anchors of an offline
	// verification.
	VerifyOptions = bundle.Options
	// Part is bundle.Part: one ZIP file of a bundle written in parts.
	Part = bundle.Part
)

// The delay rule (BUNDLE.md §5): see package bundle.
const (
	// EventDelaySlack is bundle.EventDelaySlack.
	EventDelaySlack = bundle.EventDelaySlack
	// ClockTolerance is bundle.ClockTolerance.
	ClockTolerance = bundle.ClockTolerance
)

// OIDSignatureTimeStampToken is bundle.OIDSignatureTimeStampToken
// (id-aa-signatureTimeStampToken, CAdES-T).
var OIDSignatureTimeStampToken = bundle.OIDSignatureTimeStampToken

// VerifyBundle returns bundle.Verify(r, size, opts): it checks an evidence
// bundle or a log extract offline, with nothing but the bundle and the
// trust anchors.
func VerifyBundle(r io.ReaderAt, size int64, opts VerifyOptions) (*VerifyReport, error) {
	return bundle.Verify(r, size, opts)
}

// VerifyBundleParts returns bundle.VerifyParts(parts, opts): it checks a
// bundle written in parts, given in any order.
func VerifyBundleParts(parts []Part, opts VerifyOptions) (*VerifyReport, error) {
	return bundle.VerifyParts(parts, opts)
}

// CheckGestoreRole returns bundle.CheckGestoreRole(cert): whether cert has
// the role of a gestore's signing certificate.
func CheckGestoreRole(cert *x509.Certificate) error { return bundle.CheckGestoreRole(cert) }

// SameGestore returns bundle.SameGestore(cert, gestore): whether cert is
// another signing certificate of the gestore whose certificate is gestore.
func SameGestore(cert, gestore *x509.Certificate) bool { return bundle.SameGestore(cert, gestore) }

// ReproductionFacts returns bundle.ReproductionFacts(e): the lines a
// reproduction's signed text ends with, which a verifier compares with the
// entry it carries.
func ReproductionFacts(e *ledger.Entry) []string { return bundle.ReproductionFacts(e) }
