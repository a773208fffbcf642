package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/ledger/evidence"
	"github.com/custode/custode/tsa"
)

// Checkpoint commits to the first Size entries of a ledger. Its Body is
// signed by the gestore (detached CMS) and timestamped (RFC 3161); see
// FORMAT.md for the exact text.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   [32]byte
	// Prev is the SHA-256 of the previous checkpoint's body, all zeros for
	// the first checkpoint.
	Prev [32]byte
	Time time.Time

	Body      []byte // the signed text
	Signature []byte // detached CMS SignedData, DER
	Token     []byte // RFC 3161 TimeStampToken over SHA-256(Body), DER; nil while pending
}

// Hash returns SHA-256(Body), the value the next checkpoint's Prev holds and
// the imprint of the timestamp token.
func (c *Checkpoint) Hash() [32]byte { return sha256.Sum256(c.Body) }

// Pending reports whether the checkpoint still waits for its timestamp.
func (c *Checkpoint) Pending() bool { return len(c.Token) == 0 }

// CheckpointBody returns the text a checkpoint signs (FORMAT.md):
//
//	<origin>
//	<size>
//	<base64 root>
//	prev <hex SHA-256 of the previous body>
//	time <RFC 3339 UTC, nanoseconds>
func CheckpointBody(origin string, size uint64, root, prev [32]byte, t time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\nprev %s\ntime %s\n", origin, size,
		base64.StdEncoding.EncodeToString(root[:]), hex.EncodeToString(prev[:]), t.UTC().Format(evidence.TimeLayout))
	return b.Bytes()
}

// ParseCheckpointBody parses the signed text of a checkpoint. It fails
// unless body is exactly the form FORMAT.md gives.
func ParseCheckpointBody(body []byte) (*Checkpoint, error) {
	lines := strings.Split(string(body), "\n")
	if len(lines) != 6 || lines[5] != "" {
		return nil, errors.New("verify: checkpoint: want 5 lines ending in a newline")
	}
	c := &Checkpoint{Origin: lines[0], Body: append([]byte(nil), body...)}
	var err error
	if c.Size, err = strconv.ParseUint(lines[1], 10, 64); err != nil {
		return nil, fmt.Errorf("verify: checkpoint: size: %w", err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return nil, errors.New("verify: checkpoint: root is not 32 bytes of base64")
	}
	copy(c.Root[:], root)
	prev, ok := strings.CutPrefix(lines[3], "prev ")
	if p, err := hex.DecodeString(prev); !ok || err != nil || len(p) != 32 {
		return nil, errors.New("verify: checkpoint: bad prev line")
	} else {
		copy(c.Prev[:], p)
	}
	ts, ok := strings.CutPrefix(lines[4], "time ")
	if c.Time, err = time.Parse(evidence.TimeLayout, ts); !ok || err != nil {
		return nil, errors.New("verify: checkpoint: bad time line")
	}
	if !bytes.Equal(CheckpointBody(c.Origin, c.Size, c.Root, c.Prev, c.Time), body) {
		return nil, fmt.Errorf("verify: checkpoint: %w", evidence.ErrNotCanonical)
	}
	return c, nil
}

// CheckpointError reports what is wrong with one checkpoint.
type CheckpointError struct {
	Size uint64 // the checkpoint's size
	Err  error
}

func (e *CheckpointError) Error() string {
	return fmt.Sprintf("verify: checkpoint %d: %v", e.Size, e.Err)
}

// Unwrap returns e.Err.
func (e *CheckpointError) Unwrap() error { return e.Err }

func (c *Checkpoint) fail(format string, a ...any) error {
	return &CheckpointError{Size: c.Size, Err: fmt.Errorf(format, a...)}
}

// Verify checks the checkpoint's CMS signature against roots, at the
// checkpoint's time, and its RFC 3161 token against tsaRoots (VerifyToken).
// A pending checkpoint fails. Errors are *CheckpointError.
func (c *Checkpoint) Verify(roots, tsaRoots *x509.CertPool) error {
	if _, err := verifyDetached(c.Body, c.Signature, roots, nil, c.Time); err != nil {
		return &CheckpointError{Size: c.Size, Err: err}
	}
	if c.Pending() {
		return c.fail("no timestamp token")
	}
	if _, err := c.VerifyToken(tsaRoots); err != nil {
		return err
	}
	return nil
}

// VerifyToken checks the checkpoint's RFC 3161 token against tsaRoots: it
// must be over Hash() and not more than a minute older than the
// checkpoint's time. It returns the token's time. Errors are
// *CheckpointError.
func (c *Checkpoint) VerifyToken(tsaRoots *x509.CertPool) (time.Time, error) {
	if c.Pending() {
		return time.Time{}, c.fail("no timestamp token")
	}
	sum := c.Hash()
	info, err := tsa.Verify(c.Token, sum[:], tsa.VerifyOptions{Roots: tsaRoots})
	if err != nil {
		return time.Time{}, c.fail("timestamp: %w", err)
	}
	if info.GenTime.Before(c.Time.Add(-time.Minute)) {
		return time.Time{}, c.fail("timestamp %s is before the checkpoint time %s", info.GenTime, c.Time)
	}
	return info.GenTime, nil
}

// Follows checks that c is the checkpoint made after prev: that its Prev is
// prev's Hash and that it covers no fewer entries. A nil prev means c is
// the first checkpoint, whose Prev is all zeros. Errors are
// *CheckpointError.
func (c *Checkpoint) Follows(prev *Checkpoint) error {
	if prev == nil {
		if c.Prev != ([32]byte{}) {
			return c.fail("first checkpoint has a non-zero prev")
		}
		return nil
	}
	if want := prev.Hash(); c.Prev != want {
		return c.fail("prev %s does not match checkpoint %d (%s)",
			hex.EncodeToString(c.Prev[:8]), prev.Size, hex.EncodeToString(want[:8]))
	}
	if c.Size < prev.Size {
		return c.fail("follows checkpoint %d, which covers more entries", prev.Size)
	}
	return nil
}

// WriteFiles writes the checkpoint to dir as checkpoint-<size>.txt (the
// signed body), .p7s (the detached CMS signature, DER) and, once stamped,
// .tsr (the RFC 3161 token, DER), and returns the paths written.
func (c *Checkpoint) WriteFiles(dir string) ([]string, error) {
	base := filepath.Join(dir, fmt.Sprintf("checkpoint-%d", c.Size))
	files := []struct {
		ext  string
		data []byte
	}{{".txt", c.Body}, {".p7s", c.Signature}, {".tsr", c.Token}}
	var paths []string
	for _, f := range files {
		if len(f.data) == 0 {
			continue
		}
		p := base + f.ext
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return paths, fmt.Errorf("verify: write checkpoint %d: %w", c.Size, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
