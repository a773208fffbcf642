package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/custode/custode/ledger/driver"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// subtreeHash returns the hash of the perfect subtree id. Node hashes are
// stored at levels 4, 8, 12, …; any other node is recomputed from the stored
// level below it, or from the entries themselves below level 4.
func (l *Ledger) subtreeHash(txn driver.Reader, id compact.NodeID) ([]byte, error) {
	if id.Level > 0 && id.Level%storedLevelStep == 0 {
		h, err := txn.Get(nodeKey(id.Level, id.Index))
		if err != nil {
			return nil, fmt.Errorf("node %d/%d: %w", id.Level, id.Index, err)
		}
		if len(h) != 32 {
			return nil, fmt.Errorf("node %d/%d: %d bytes, want 32", id.Level, id.Index, len(h))
		}
		return h, nil
	}
	base := id.Level - id.Level%storedLevelStep
	shift := id.Level - base
	first := id.Index << shift
	count := uint64(1) << shift
	hashes := make([][]byte, count)
	for i := uint64(0); i < count; i++ {
		if base == 0 {
			raw, err := txn.Get(entryKey(first + i))
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", first+i, err)
			}
			leaf := storedLeaf(raw)
			hashes[i] = leaf[:]
			continue
		}
		h, err := txn.Get(nodeKey(base, first+i))
		if err != nil {
			return nil, fmt.Errorf("node %d/%d: %w", base, first+i, err)
		}
		hashes[i] = h
	}
	for len(hashes) > 1 {
		for i := 0; i < len(hashes)/2; i++ {
			hashes[i] = hashChildren(hashes[2*i], hashes[2*i+1])
		}
		hashes = hashes[:len(hashes)/2]
	}
	return hashes[0], nil
}

func (l *Ledger) nodeHashes(txn driver.Reader, ids []compact.NodeID) ([][]byte, error) {
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := l.subtreeHash(txn, id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return hashes, nil
}

// checkSize checks that the tree of size entries exists, and waits until
// the store holds it.
func (l *Ledger) checkSize(ctx context.Context, size uint64) error {
	if h := l.Head(); size > h.Size && !l.readOnly {
		return fmt.Errorf("tree size %d is beyond the ledger's %d entries", size, h.Size)
	}
	return l.waitApplied(ctx, size)
}

// InclusionProof returns the RFC 6962 inclusion proof of entry index in the
// tree of the first size entries.
func (l *Ledger) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, fmt.Errorf("ledger: inclusion proof %d@%d: %w", index, size, err)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("ledger: inclusion proof %d@%d: %w", index, size, err)
	}
	return l.rehash(ctx, nodes, fmt.Sprintf("inclusion proof %d@%d", index, size))
}

// InclusionProofs returns the RFC 6962 inclusion proofs of entries indexes
// in the tree of the first size entries, in the order given. It reads the
// store once, and each tree node once however many proofs share it: the
// way to prove many entries, as a log extract does.
func (l *Ledger) InclusionProofs(ctx context.Context, indexes []uint64, size uint64) ([][][]byte, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, fmt.Errorf("ledger: inclusion proofs @%d: %w", size, err)
	}
	out := make([][][]byte, len(indexes))
	cache := map[compact.NodeID][]byte{}
	err := l.db.View(ctx, func(txn driver.Reader) error {
		for i, index := range indexes {
			if i%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			nodes, err := proof.Inclusion(index, size)
			if err != nil {
				return fmt.Errorf("%d: %w", index, err)
			}
			hashes := make([][]byte, len(nodes.IDs))
			for j, id := range nodes.IDs {
				h, ok := cache[id]
				if !ok {
					if h, err = l.subtreeHash(txn, id); err != nil {
						return fmt.Errorf("%d: %w", index, err)
					}
					cache[id] = h
				}
				hashes[j] = h
			}
			if out[i], err = nodes.Rehash(hashes, hasher.HashChildren); err != nil {
				return fmt.Errorf("%d: %w", index, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: inclusion proofs @%d: %w", size, err)
	}
	return out, nil
}

// ConsistencyProof returns the RFC 6962 consistency proof between the trees
// of the first size1 and size2 entries.
func (l *Ledger) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, size2); err != nil {
		return nil, fmt.Errorf("ledger: consistency proof %d→%d: %w", size1, size2, err)
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, fmt.Errorf("ledger: consistency proof %d→%d: %w", size1, size2, err)
	}
	return l.rehash(ctx, nodes, fmt.Sprintf("consistency proof %d→%d", size1, size2))
}

func (l *Ledger) rehash(ctx context.Context, nodes proof.Nodes, what string) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ledger: %s: %w", what, err)
	}
	var hashes [][]byte
	err := l.db.View(ctx, func(txn driver.Reader) error {
		var err error
		hashes, err = l.nodeHashes(txn, nodes.IDs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: %s: %w", what, err)
	}
	p, err := nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("ledger: %s: %w", what, err)
	}
	return p, nil
}

// RootAt returns the RFC 6962 root of the tree of the first size entries.
func (l *Ledger) RootAt(ctx context.Context, size uint64) ([32]byte, error) {
	var root [32]byte
	if err := l.checkSize(ctx, size); err != nil {
		return root, fmt.Errorf("ledger: root at %d: %w", size, err)
	}
	if err := ctx.Err(); err != nil {
		return root, fmt.Errorf("ledger: root at %d: %w", size, err)
	}
	ids := compact.RangeNodes(0, size, nil)
	var hashes [][]byte
	err := l.db.View(ctx, func(txn driver.Reader) error {
		var err error
		hashes, err = l.nodeHashes(txn, ids)
		return err
	})
	if errors.Is(err, driver.ErrNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return root, fmt.Errorf("ledger: root at %d: %w", size, err)
	}
	r, err := l.rangf.NewRange(0, size, hashes)
	if err != nil {
		return root, fmt.Errorf("ledger: root at %d: %w", size, err)
	}
	h, err := r.GetRootHash(nil)
	if err != nil {
		return root, fmt.Errorf("ledger: root at %d: %w", size, err)
	}
	copy(root[:], h)
	return root, nil
}
