package verify

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestHashersMatchRFC6962(t *testing.T) {
	var lh LeafHasher
	for _, raw := range [][]byte{nil, []byte("{}"), bytes.Repeat([]byte("x"), 1000)} {
		// The reference, written out: SHA-256(0x00 || raw).
		if want := sha256.Sum256(append([]byte{0}, raw...)); LeafHash(raw) != want {
			t.Errorf("LeafHash(%d bytes) = %x, want %x", len(raw), LeafHash(raw), want)
		}
		if got, want := lh.LeafHash(raw), LeafHash(raw); got != want {
			t.Errorf("LeafHasher.LeafHash(%d bytes) = %x, want %x", len(raw), got, want)
		}
	}
	a, b := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	for _, pair := range [][2][]byte{{a[:], b[:]}, {b[:], a[:]}, {a[:4], b[:]}} {
		// The reference, written out: SHA-256(0x01 || l || r).
		want := sha256.Sum256(append(append([]byte{1}, pair[0]...), pair[1]...))
		if got := HashChildren(pair[0], pair[1]); !bytes.Equal(got, want[:]) {
			t.Errorf("HashChildren(%x, %x) = %x, want %x", pair[0], pair[1], got, want)
		}
	}
}
