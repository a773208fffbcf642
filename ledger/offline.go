package ledger

import (
	"crypto/x509"
	"time"

	"github.com/custode/custode/ledger/verify"
)

// The offline checks (checkpoint bodies and signatures, segments, the
// chain and the tree's hashes) live in package verify, which links no
// database; the names below keep the ledger's API as it was.

type (
	// Checkpoint is verify.Checkpoint.
	Checkpoint = verify.Checkpoint
	// Segment is verify.Segment.
	Segment = verify.Segment
	// SegmentEnd is verify.SegmentEnd.
	SegmentEnd = verify.SegmentEnd
)

// MaxSignatureBytes is verify.MaxSignatureBytes.
const MaxSignatureBytes = verify.MaxSignatureBytes

// segmentMagic is verify.SegmentMagic.
const segmentMagic = verify.SegmentMagic

// ParseCheckpointBody returns verify.ParseCheckpointBody(body).
func ParseCheckpointBody(body []byte) (*Checkpoint, error) { return verify.ParseCheckpointBody(body) }

// ParseSegment returns verify.ParseSegment(b).
func ParseSegment(b []byte) (*Segment, error) { return verify.ParseSegment(b) }

// VerifyDetached returns verify.VerifyDetached(data, sig, roots,
// intermediates, at).
func VerifyDetached(data, sig []byte, roots, intermediates *x509.CertPool, at time.Time) (*x509.Certificate, error) {
	return verify.VerifyDetached(data, sig, roots, intermediates, at)
}
