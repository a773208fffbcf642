package verify

import (
	"fmt"

	"github.com/custode/custode/ledger/evidence"
)

// Chain checks a run of entries in their canonical bytes: that each decodes
// (evidence.DecodeEntry, which refuses any non-canonical spelling), that
// raws[i] says seq first+i, and that each entry's prev is the leaf hash of
// the one before it, the first's prev being *prev. A nil prev leaves the
// first entry's prev unchecked (the entry before it is not at hand), except
// that entry 0's must be all zeros. It returns the leaf hash of every entry,
// in order, or an error naming the first entry at fault.
func Chain(first uint64, prev *[32]byte, raws [][]byte) ([][32]byte, error) {
	leaves, err := chain(first, prev, raws)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return leaves, nil
}

// chain is Chain, its errors without the package's name.
func chain(first uint64, prev *[32]byte, raws [][]byte) ([][32]byte, error) {
	leaves := make([][32]byte, len(raws))
	var last [32]byte
	known := prev != nil || first == 0
	if prev != nil {
		last = *prev
	}
	var lh LeafHasher
	for i, raw := range raws {
		seq := first + uint64(i)
		e, err := evidence.DecodeEntry(raw)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", seq, err)
		}
		if e.Seq != seq {
			return nil, fmt.Errorf("entry %d says seq %d", seq, e.Seq)
		}
		if (known || i > 0) && e.Prev != last {
			return nil, fmt.Errorf("entry %d: prev does not match entry %d", seq, int64(seq)-1)
		}
		last = lh.LeafHash(raw)
		leaves[i] = last
	}
	return leaves, nil
}
