package verify

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// LeafHash returns the RFC 6962 leaf hash of canonical entry bytes,
// SHA-256(0x00 || raw). It is both the entry's Merkle leaf and the value its
// successor's Prev must hold.
func LeafHash(raw []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(raw)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// LeafHasher computes leaf hashes as LeafHash does, reusing one hash state
// and one output buffer, for a caller that hashes every entry. Its zero
// value is ready to use; it is not safe for concurrent use.
type LeafHasher struct {
	h   hash.Hash
	buf []byte // the prefix byte, then Sum's output
}

// LeafHash returns LeafHash(raw).
func (lh *LeafHasher) LeafHash(raw []byte) [32]byte {
	if lh.h == nil {
		lh.h, lh.buf = sha256.New(), make([]byte, 1, 33)
	}
	lh.h.Reset()
	lh.h.Write(lh.buf[:1]) // 0x00, the RFC 6962 leaf prefix
	lh.h.Write(raw)
	var out [32]byte
	copy(out[:], lh.h.Sum(lh.buf[1:1])[:32])
	return out
}

// HashChildren is the RFC 6962 interior node hash, SHA-256(0x01 || l || r),
// as rfc6962.DefaultHasher.HashChildren computes it, with one allocation
// rather than three.
func HashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return rfc6962.DefaultHasher.HashChildren(l, r)
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	h := sha256.Sum256(b[:])
	return h[:]
}

// EmptyRoot returns the root of the empty tree, SHA-256 of nothing.
func EmptyRoot() [32]byte { return sha256.Sum256(nil) }

// ErrProof is wrapped by the errors of Inclusion and Consistency for a proof
// that does not prove what it is said to.
var ErrProof = errors.New("proof does not verify")

// Inclusion checks an RFC 6962/9162 inclusion proof: that the entry whose
// leaf hash is leaf is entry index of the tree of size entries whose root
// is root.
func Inclusion(index, size uint64, leaf [32]byte, p [][]byte, root [32]byte) error {
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, leaf[:], p, root[:]); err != nil {
		return fmt.Errorf("verify: inclusion of entry %d in tree %d: %w: %w", index, size, ErrProof, err)
	}
	return nil
}

// Consistency checks an RFC 6962/9162 consistency proof: that the tree of
// size1 entries with root root1 is a prefix of the tree of size2 entries
// with root root2.
func Consistency(size1, size2 uint64, p [][]byte, root1, root2 [32]byte) error {
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, size1, size2, p, root1[:], root2[:]); err != nil {
		return fmt.Errorf("verify: consistency of tree %d with tree %d: %w: %w", size1, size2, ErrProof, err)
	}
	return nil
}
