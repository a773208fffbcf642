package seal

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
)

// Rebuild fills l, an empty ledger, from the segments under prefix, in
// order, taking the first version of each key: every segment is checked
// (chain, root, checkpoint signature and timestamp against roots and
// tsaRoots) before its entries are imported byte for byte, and its seal is
// recorded again. It returns the last checkpoint, whose root the rebuilt
// ledger's head then equals.
func Rebuild(ctx context.Context, store archive.Store, prefix string, l *ledger.Ledger, roots, tsaRoots *x509.CertPool) (*ledger.Checkpoint, error) {
	return RebuildWith(ctx, store, l, RebuildOptions{Prefix: prefix, Roots: roots, TSARoots: tsaRoots})
}

// RebuildOptions are the options of RebuildWith.
type RebuildOptions struct {
	Prefix string // "" means DefaultPrefix
	// Roots and TSARoots are the trust anchors of checkpoint signatures
	// and timestamp tokens.
	Roots, TSARoots *x509.CertPool
	// Progress, if not nil, is called after each segment is imported with
	// the number of segments done and the number listed.
	Progress func(done, total uint64)
}

// RebuildWith is Rebuild with options.
func RebuildWith(ctx context.Context, store archive.Store, l *ledger.Ledger, opts RebuildOptions) (*ledger.Checkpoint, error) {
	prefix, roots, tsaRoots := opts.Prefix, opts.Roots, opts.TSARoots
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if n := l.Head().Size; n != 0 {
		return nil, fmt.Errorf("seal: rebuild: the ledger already holds %d entries", n)
	}
	var bad []string
	objs, err := listSegments(ctx, store, prefix, func(f string, a ...any) { bad = append(bad, fmt.Sprintf(f, a...)) })
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("seal: rebuild: %s", bad[0])
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("seal: rebuild: no segments under %s", prefix)
	}
	var prev *ledger.SegmentEnd
	var last *ledger.Checkpoint
	for i, o := range objs {
		obj, err := store.Get(ctx, o.key, "")
		if err != nil {
			return nil, fmt.Errorf("seal: rebuild: %w", err)
		}
		seg, err := ledger.ParseSegment(obj.Data)
		if err != nil {
			return nil, fmt.Errorf("seal: rebuild: %s: %w", o.key, err)
		}
		if seg.From != o.from || seg.To != o.to {
			return nil, fmt.Errorf("seal: rebuild: %s holds entries %d-%d", o.key, seg.From, seg.To)
		}
		if prev == nil && seg.From != 0 {
			return nil, fmt.Errorf("seal: rebuild: the first segment %s does not start at entry 0", o.key)
		}
		if prev != nil && seg.From != prev.Size {
			return nil, fmt.Errorf("seal: rebuild: entries %d-%d: no segment", prev.Size, seg.From-1)
		}
		end, err := seg.Check(prev)
		if err != nil {
			return nil, fmt.Errorf("seal: rebuild: %s: %w", o.key, err)
		}
		if err := seg.Checkpoint.Verify(roots, tsaRoots); err != nil {
			return nil, fmt.Errorf("seal: rebuild: %s: %w", o.key, err)
		}
		if last != nil && seg.Checkpoint.Prev != last.Hash() {
			return nil, fmt.Errorf("seal: rebuild: %s: checkpoint %d does not follow checkpoint %d", o.key, seg.Checkpoint.Size, last.Size)
		}
		if err := l.Import(ctx, seg); err != nil {
			return nil, fmt.Errorf("seal: rebuild: %w", err)
		}
		err = l.RecordSeal(ctx, ledger.Seal{
			From: seg.From, To: seg.To, Key: o.key, VersionID: obj.VersionID,
			SHA256: hex.EncodeToString(obj.SHA256[:]), RetainUntil: obj.Retention.RetainUntil, Sealed: obj.LastModified.UTC(),
		})
		if err != nil {
			return nil, fmt.Errorf("seal: rebuild: %w", err)
		}
		prev, last = end, seg.Checkpoint
		if opts.Progress != nil {
			opts.Progress(uint64(i+1), uint64(len(objs)))
		}
	}
	if h := l.Head(); h.Size != last.Size || h.Root != last.Root {
		return nil, errors.New("seal: rebuild: the rebuilt head does not match the last checkpoint")
	}
	return last, nil
}
