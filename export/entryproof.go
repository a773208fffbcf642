package export

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custode/custode/ledger"
)

// EntryProof is an entry in its canonical bytes with its inclusion proof
// to the newest checkpoint, as custode ledger proof prints it.
type EntryProof struct {
	Seq        uint64   `json:"seq"`
	Entry      string   `json:"entry"`
	LeafHash   string   `json:"leaf_hash"`
	TreeSize   uint64   `json:"tree_size"`
	Root       string   `json:"root"`
	Proof      []string `json:"inclusion_proof"`
	Checkpoint string   `json:"checkpoint"`
}

// ProveEntry returns entry seq of l with its inclusion proof to l's newest
// checkpoint (timestamped or not), checked before it is returned. An entry
// no checkpoint covers yet is an error saying so.
func ProveEntry(ctx context.Context, l *ledger.Ledger, seq uint64) (*EntryProof, error) {
	_, raw, err := l.Entry(ctx, seq)
	if err != nil {
		return nil, err
	}
	cp, err := l.LatestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if cp.Size <= seq {
		return nil, fmt.Errorf("entry %d is not yet covered by a checkpoint (the newest covers %d entries)", seq, cp.Size)
	}
	p, err := l.InclusionProof(ctx, seq, cp.Size)
	if err != nil {
		return nil, err
	}
	leaf := ledger.LeafHash(raw)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, cp.Size, leaf[:], p, cp.Root[:]); err != nil {
		return nil, fmt.Errorf("the proof does not verify against checkpoint %d: %w", cp.Size, err)
	}
	out := &EntryProof{Seq: seq, Entry: string(raw), LeafHash: hex.EncodeToString(leaf[:]), TreeSize: cp.Size,
		Root: hex.EncodeToString(cp.Root[:]), Checkpoint: string(cp.Body)}
	for _, h := range p {
		out.Proof = append(out.Proof, hex.EncodeToString(h))
	}
	return out, nil
}
