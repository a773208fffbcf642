package ledger

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestHashersMatchRFC6962(t *testing.T) {
	var lh leafHasher
	for _, raw := range [][]byte{nil, []byte("{}"), bytes.Repeat([]byte("x"), 1000)} {
		if got, want := lh.leafHash(raw), LeafHash(raw); got != want {
			t.Errorf("leafHash(%d bytes) = %x, want %x", len(raw), got, want)
		}
	}
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	for _, pair := range [][2][]byte{{a[:], b[:]}, {b[:], a[:]}, {a[:4], b[:]}} {
		// The reference, written out: SHA-256(0x01 || l || r).
		want := sha256.Sum256(append(append([]byte{1}, pair[0]...), pair[1]...))
		if got := hashChildren(pair[0], pair[1]); !bytes.Equal(got, want[:]) {
			t.Errorf("hashChildren(%x, %x) = %x, want %x", pair[0], pair[1], got, want)
		}
	}
}
