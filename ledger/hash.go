package ledger

import "github.com/custode/custode/ledger/verify"

// LeafHash returns verify.LeafHash(raw): the RFC 6962 leaf hash of
// canonical entry bytes, SHA-256(0x00 || raw).
func LeafHash(raw []byte) [32]byte { return verify.LeafHash(raw) }

// leafHasher computes leaf hashes as LeafHash does, reusing one hash state:
// the sequencer hashes every entry. It is not safe for concurrent use.
type leafHasher struct{ verify.LeafHasher }

func (lh *leafHasher) leafHash(raw []byte) [32]byte { return lh.LeafHash(raw) }

// hashChildren is verify.HashChildren, the RFC 6962 interior node hash.
func hashChildren(l, r []byte) []byte { return verify.HashChildren(l, r) }
