package ledger

import (
	"crypto/sha256"
	"hash"
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

// leafHasher computes leaf hashes as LeafHash does, reusing one hash state
// and one output buffer: the sequencer hashes every entry. It is not safe
// for concurrent use.
type leafHasher struct {
	h   hash.Hash
	buf []byte // the prefix byte, then Sum's output
}

func (lh *leafHasher) leafHash(raw []byte) [32]byte {
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

// hashChildren is the RFC 6962 interior node hash, SHA-256(0x01 || l || r),
// as rfc6962.DefaultHasher.HashChildren computes it, with one allocation
// rather than three.
func hashChildren(l, r []byte) []byte {
	if len(l) != sha256.Size || len(r) != sha256.Size {
		return hasher.HashChildren(l, r)
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l)
	copy(b[1+sha256.Size:], r)
	h := sha256.Sum256(b[:])
	return h[:]
}
