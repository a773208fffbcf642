package seal

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
)

// VerifyOptions say what the archive is checked against.
type VerifyOptions struct {
	Prefix string // "" means DefaultPrefix
	// Seals are the ledger's records of what it archived; nil when the
	// ledger is lost, in which case only the archive's own consistency is
	// checked.
	Seals []ledger.Seal
	// Roots and TSARoots are the trust anchors of checkpoint signatures
	// and timestamp tokens. Required.
	Roots, TSARoots *x509.CertPool
	// MinRetainUntil, if set, gives the least retain-until each segment
	// must have, from its last checkpoint.
	MinRetainUntil func(c *ledger.Checkpoint) time.Time
	// Progress, if not nil, is called after each segment is checked with
	// the number of segments done and the number listed.
	Progress func(done, total uint64)
}

// Report is the outcome of Verify.
type Report struct {
	Segments   int    // segments read and checked
	Entries    uint64 // entries in them
	Checkpoint *ledger.Checkpoint
	Problems   []string
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

type segmentObject struct {
	key      string
	from, to uint64
	versions []archive.ListEntry
}

// listSegments groups the versions under prefix by key, in key order.
func listSegments(ctx context.Context, store archive.Store, prefix string, problem func(string, ...any)) ([]*segmentObject, error) {
	var objs []*segmentObject
	for le, err := range store.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("seal: list %s: %w", prefix, err)
		}
		if n := len(objs); n > 0 && objs[n-1].key == le.Key {
			objs[n-1].versions = append(objs[n-1].versions, le)
			continue
		}
		from, to, ok := parseKey(prefix, le.Key)
		if !ok {
			problem("%s: not a segment key", le.Key)
			continue
		}
		objs = append(objs, &segmentObject{key: le.Key, from: from, to: to, versions: []archive.ListEntry{le}})
	}
	slices.SortFunc(objs, func(a, b *segmentObject) int { return cmp.Compare(a.from, b.from) })
	return objs, nil
}

func parseKey(prefix, key string) (from, to uint64, ok bool) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return 0, 0, false
	}
	name, ok = strings.CutSuffix(name, ".seg")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(name, "-")
	if !ok {
		return 0, 0, false
	}
	from, err1 := strconv.ParseUint(a, 10, 64)
	to, err2 := strconv.ParseUint(b, 10, 64)
	return from, to, err1 == nil && err2 == nil && from < to && Key(prefix, from, to) == key
}

// Verify re-reads every segment from the archive and checks, from the
// archive alone: each segment's SHA-256 as recorded by the store, its
// entries' chain, the tree root against its checkpoint, the checkpoint's
// signature and timestamp, the chain of checkpoints, that segments follow
// each other without gap from entry 0, and that each key holds one version
// only (a second version is a rewrite). With the ledger's seals it also
// reports segments missing from the archive, objects the ledger never
// recorded, and versions or digests that differ from the recorded ones.
func Verify(ctx context.Context, store archive.Store, opts VerifyOptions) (*Report, error) {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	r := &Report{}
	problem := func(format string, a ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, a...)) }
	objs, err := listSegments(ctx, store, prefix, problem)
	if err != nil {
		return nil, err
	}
	sealed := map[string]ledger.Seal{}
	for _, s := range opts.Seals {
		sealed[s.Key] = s
	}
	var prev *ledger.SegmentEnd
	var prevCP *ledger.Checkpoint
	for i, o := range objs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if opts.Progress != nil && i > 0 {
			opts.Progress(uint64(i), uint64(len(objs)))
		}
		seal, recorded := sealed[o.key]
		delete(sealed, o.key)
		if opts.Seals != nil && !recorded {
			problem("%s: in the archive but not recorded in the ledger", o.key)
		}
		if len(o.versions) > 1 {
			ids := make([]string, len(o.versions))
			for i, v := range o.versions {
				ids[i] = v.VersionID
			}
			problem("%s: rewritten: %d versions (%s)", o.key, len(o.versions), strings.Join(ids, ", "))
		}
		version := "" // the first
		if recorded {
			version = seal.VersionID
		}
		obj, err := store.Get(ctx, o.key, version)
		if err != nil {
			problem("%s: %v", o.key, err)
			prev = nil
			continue
		}
		if recorded {
			if got := hex.EncodeToString(obj.SHA256[:]); got != seal.SHA256 {
				problem("%s: SHA-256 %s, the ledger recorded %s", o.key, got, seal.SHA256)
			}
		}
		seg, err := ledger.ParseSegment(obj.Data)
		if err != nil {
			problem("%s: %v", o.key, err)
			prev = nil
			continue
		}
		if seg.From != o.from || seg.To != o.to {
			problem("%s: holds entries %d-%d", o.key, seg.From, seg.To)
		}
		switch {
		case prev == nil && seg.From != 0 && r.Segments == 0:
			problem("entries 0-%d: no segment", seg.From-1)
		case prev != nil && seg.From > prev.Size:
			problem("entries %d-%d: no segment", prev.Size, seg.From-1)
		case prev != nil && seg.From < prev.Size:
			problem("%s: overlaps the segment before it (which ends at %d)", o.key, prev.Size)
		}
		var chainFrom *ledger.SegmentEnd
		if prev != nil && prev.Size == seg.From {
			chainFrom = prev
		}
		end, err := seg.Check(chainFrom)
		if err != nil {
			problem("%s: %v", o.key, err)
		}
		if err := seg.Checkpoint.Verify(opts.Roots, opts.TSARoots); err != nil {
			problem("%s: %v", o.key, err)
		}
		if prevCP != nil && seg.Checkpoint.Prev != prevCP.Hash() {
			problem("%s: checkpoint %d does not follow checkpoint %d", o.key, seg.Checkpoint.Size, prevCP.Size)
		}
		if opts.MinRetainUntil != nil {
			info, err := store.Stat(ctx, o.key, obj.VersionID)
			switch want := opts.MinRetainUntil(seg.Checkpoint); {
			case err != nil:
				problem("%s: %v", o.key, err)
			case info.Retention.Mode != archive.Compliance:
				problem("%s: retention mode %q, want COMPLIANCE", o.key, info.Retention.Mode)
			case info.Retention.RetainUntil.Before(want):
				problem("%s: retained until %s, policy wants at least %s", o.key, info.Retention.RetainUntil.Format(time.RFC3339), want.Format(time.RFC3339))
			}
		}
		prev, prevCP = end, seg.Checkpoint
		r.Segments++
		r.Entries += uint64(len(seg.Entries))
		r.Checkpoint = seg.Checkpoint
	}
	if opts.Progress != nil && len(objs) > 0 {
		opts.Progress(uint64(len(objs)), uint64(len(objs)))
	}
	for _, s := range opts.Seals {
		if _, missing := sealed[s.Key]; missing {
			problem("%s: recorded in the ledger (entries %d-%d) but missing from the archive", s.Key, s.From, s.To)
		}
	}
	return r, nil
}
