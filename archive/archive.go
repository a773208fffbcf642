package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
)

// Mode is an Object Lock retention mode.
type Mode string

const (
	// Compliance retention cannot be shortened, switched to another mode or
	// bypassed by anyone until the retain-until date has passed. It is the
	// mode of every evidence class in Custode.
	Compliance Mode = "COMPLIANCE"
	// Governance retention can be bypassed on the server by a specially
	// privileged account. A Store never sends the bypass, so through this
	// package it behaves like Compliance; it exists for buckets whose policy
	// wants an administrator's escape hatch.
	Governance Mode = "GOVERNANCE"
)

// Valid reports whether m is Compliance or Governance.
func (m Mode) Valid() bool { return m == Compliance || m == Governance }

// Retention is how long, and how strictly, a version is locked.
type Retention struct {
	Mode        Mode
	RetainUntil time.Time
}

// PutOptions says how a new object is locked. Mode and RetainUntil are
// required: a Store MUST NOT write an object without an explicit retention.
type PutOptions struct {
	Retention Retention
	// LegalHold, when true, puts a legal hold on the new version at once.
	LegalHold bool
}

// ObjectInfo describes one version of an object.
type ObjectInfo struct {
	Key       string
	VersionID string
	Size      int64
	// SHA256 is the digest of the object's bytes, recorded at write time.
	SHA256       [sha256.Size]byte
	Retention    Retention
	LegalHold    bool
	LastModified time.Time
}

// Object is one version of an object with its bytes, already verified
// against ObjectInfo.SHA256.
type Object struct {
	ObjectInfo
	Data []byte
}

// ListEntry is one version found by [Store.List]. Retention and legal hold
// are not part of a listing; ask [Store.Stat] for them.
type ListEntry struct {
	Key          string
	VersionID    string
	Size         int64
	LastModified time.Time
}

// Store is WORM object storage. Every method MUST honour ctx. All errors are
// wrapped with the operation and key; test them with [errors.Is] against
// [ErrWORM], [ErrNotFound], [ErrExists], [ErrChecksum] and [ErrInvalid].
type Store interface {
	// Put writes data as a new object under key, locked as opts says, and
	// returns the new version. Put MUST NOT overwrite: if key already holds
	// a version, Put MUST fail with ErrExists and leave it untouched. Put
	// MUST send or record the SHA-256 of data, and MUST reject a retention
	// without a valid mode or with a retain-until that is not in the future
	// (ErrInvalid). Put returns only when the object is durable.
	Put(ctx context.Context, key string, data []byte, opts PutOptions) (ObjectInfo, error)

	// Get returns one version of key; versionID "" means the first (oldest)
	// version. Get MUST verify the bytes against the SHA-256 recorded at
	// write time and MUST return ErrChecksum, and no bytes, on a mismatch.
	// A missing key or version is ErrNotFound.
	Get(ctx context.Context, key, versionID string) (*Object, error)

	// Stat describes one version of key as Get would, without the bytes.
	Stat(ctx context.Context, key, versionID string) (ObjectInfo, error)

	// List yields every live version (not delete markers) whose key starts
	// with prefix, in ascending key order; versions of one key come
	// together, in no promised order. Iteration stops at the first error,
	// which is yielded last.
	List(ctx context.Context, prefix string) iter.Seq2[ListEntry, error]

	// SetLegalHold puts (on) or releases (off) the legal hold of one
	// version. While a hold is on, the version MUST NOT be deleted, even
	// after its retain-until date.
	SetLegalHold(ctx context.Context, key, versionID string, on bool) error

	// ExtendRetention moves the retain-until date of one version to until,
	// keeping its mode. A date earlier than the current one MUST be refused
	// with ErrWORM; the same date is accepted and changes nothing.
	ExtendRetention(ctx context.Context, key, versionID string, until time.Time) error

	// Delete removes one version for good (data minimisation after the
	// retention period). versionID MUST NOT be empty. Delete MUST refuse,
	// with ErrWORM, a version whose retain-until has not passed or that is
	// under a legal hold.
	Delete(ctx context.Context, key, versionID string) error
}

var (
	// ErrWORM matches every refusal by the retention lock; the concrete
	// error is a *RefusedError.
	ErrWORM = errors.New("refused by WORM retention")
	// ErrNotFound means the key or version does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means Put found the key already holding a version.
	ErrExists = errors.New("key already exists")
	// ErrChecksum means stored bytes do not match their recorded SHA-256.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrInvalid means the caller passed an invalid key, version or option.
	ErrInvalid = errors.New("invalid argument")
)

// RefusedError is a refusal by the retention lock. It matches ErrWORM under
// errors.Is. Err is the server's own error, when there is one.
type RefusedError struct {
	Op        string // "put", "delete", "retention", "legal-hold"
	Key       string
	VersionID string
	Reason    string
	Err       error
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("archive: %s %s", e.Op, e.Key)
	if e.VersionID != "" {
		s += " version " + e.VersionID
	}
	s += ": " + ErrWORM.Error()
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is reports whether target is ErrWORM.
func (e *RefusedError) Is(target error) bool { return target == ErrWORM }

// Unwrap returns the server's error, if any.
func (e *RefusedError) Unwrap() error { return e.Err }

// MaxKeyLen is the longest key accepted, S3's limit.
const MaxKeyLen = 1024

// ValidateKey checks that key is usable by every driver: 1 to MaxKeyLen
// bytes of ASCII letters, digits and "._-=+", in "/"-separated segments
// none of which is empty, "." or "..". Drivers MUST call it.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("archive: key %q: length must be 1 to %d: %w", key, MaxKeyLen, ErrInvalid)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("archive: key %q: empty, \".\" or \"..\" segment: %w", key, ErrInvalid)
		}
		for _, c := range []byte(seg) {
			if !keyByte(c) {
				return fmt.Errorf("archive: key %q: byte %q not allowed: %w", key, c, ErrInvalid)
			}
		}
	}
	return nil
}

// ValidatePrefix checks a List prefix: "" or a string of key bytes.
func ValidatePrefix(prefix string) error {
	if len(prefix) > MaxKeyLen {
		return fmt.Errorf("archive: prefix too long: %w", ErrInvalid)
	}
	for _, c := range []byte(prefix) {
		if c != '/' && !keyByte(c) {
			return fmt.Errorf("archive: prefix %q: byte %q not allowed: %w", prefix, c, ErrInvalid)
		}
	}
	return nil
}

func keyByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-=+", c) >= 0
}

// ValidatePut checks the arguments of Put at time now. Drivers MUST call it.
func ValidatePut(key string, data []byte, opts PutOptions, now time.Time) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if !opts.Retention.Mode.Valid() {
		return fmt.Errorf("archive: put %s: retention mode %q: %w", key, opts.Retention.Mode, ErrInvalid)
	}
	if !opts.Retention.RetainUntil.After(now) {
		return fmt.Errorf("archive: put %s: retain-until %s is not in the future: %w",
			key, opts.Retention.RetainUntil.UTC().Format(time.RFC3339), ErrInvalid)
	}
	return nil
}

// Sum returns the SHA-256 of data.
func Sum(data []byte) [sha256.Size]byte { return sha256.Sum256(data) }

// ContentKey returns the content-addressed key of data: prefix followed by
// the lowercase hex SHA-256 of data. prefix is used as given (end it with
// "/" for a directory-like layout). Two writes of the same bytes under
// ContentKey name the same object, so the second one's ErrExists is
// harmless; see [PutContent].
func ContentKey(prefix string, data []byte) string {
	sum := Sum(data)
	return prefix + hex.EncodeToString(sum[:])
}

// PutContent writes data under ContentKey(prefix, data). If the key already
// exists, PutContent checks that the stored first version has the same
// SHA-256 and returns it instead of failing; its retention may differ from
// opts (extend it with ExtendRetention if needed).
func PutContent(ctx context.Context, s Store, prefix string, data []byte, opts PutOptions) (ObjectInfo, error) {
	key := ContentKey(prefix, data)
	info, err := s.Put(ctx, key, data, opts)
	if !errors.Is(err, ErrExists) {
		return info, err
	}
	info, err = s.Stat(ctx, key, "")
	if err != nil {
		return ObjectInfo{}, err
	}
	if info.SHA256 != Sum(data) {
		return ObjectInfo{}, fmt.Errorf("archive: put %s: stored object has another SHA-256: %w", key, ErrChecksum)
	}
	return info, nil
}

// Verify checks data against want and returns an error wrapping
// ErrChecksum on a mismatch. Drivers use it in Get.
func Verify(key, versionID string, data []byte, want [sha256.Size]byte) error {
	got := Sum(data)
	if got != want {
		return fmt.Errorf("archive: get %s version %s: stored SHA-256 %x, bytes hash to %x: %w",
			key, versionID, want, got, ErrChecksum)
	}
	return nil
}
