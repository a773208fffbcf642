package seal

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
)

// FindOptions select entries from the sealed segments in the archive.
type FindOptions struct {
	Prefix string // "" means DefaultPrefix
	// Query selects the entries, as ledger.Find does; its Cursor is the
	// Next of the previous page and its Limit defaults to 1000.
	Query ledger.Query
	// Roots and TSARoots are the trust anchors of checkpoint signatures
	// and timestamp tokens. Required: an entry is returned only from a
	// segment whose chain, tree and signed, timestamped checkpoint check.
	Roots, TSARoots *x509.CertPool
}

// Page is one page of entries found in sealed segments, in sequence order.
type Page struct {
	Entries []*ledger.Entry
	// Next is the cursor of the following page; empty on the last page.
	Next string
	// Segments counts the segments read for this page.
	Segments int
}

// Find reads the sealed segments in the archive, in order, and returns the
// entries q selects: the query of the log for ranges the ledger no longer
// holds (purged locally, or a ledger lost and not yet rebuilt), needing
// nothing but the archive and the trust anchors. Every segment read is
// checked first, as Verify checks it (its entries chain to the previous
// segment's, its tree's root is the one its checkpoint signs, the signature
// and the token verify); one that does not is an error, never a silent
// skip. It reads every segment from the cursor on, there being no index in
// the archive.
func Find(ctx context.Context, store archive.Store, opts FindOptions) (*Page, error) {
	if opts.Roots == nil || opts.TSARoots == nil {
		return nil, errors.New("seal: find: trust anchors are required")
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	q := opts.Query
	limit := q.Limit
	if limit <= 0 {
		limit = ledger.DefaultQueryLimit
	}
	var after uint64
	if q.Cursor != "" {
		n, err := strconv.ParseUint(q.Cursor, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seal: find: bad cursor %q", q.Cursor)
		}
		after = n
	}
	var problems []string
	objs, err := listSegments(ctx, store, prefix, func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) })
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("seal: find: %s", problems[0])
	}
	page := &Page{}
	var prev *ledger.SegmentEnd
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if o.to <= after {
			continue // before the cursor: each segment checks on its own
		}
		obj, err := store.Get(ctx, o.key, "") // the first version: WORM keeps it, whatever was written after
		if err != nil {
			return nil, fmt.Errorf("seal: find: %s: %w", o.key, err)
		}
		seg, err := ledger.ParseSegment(obj.Data)
		if err != nil {
			return nil, fmt.Errorf("seal: find: %s: %w", o.key, err)
		}
		var chainFrom *ledger.SegmentEnd
		if prev != nil && prev.Size == seg.From {
			chainFrom = prev
		}
		end, err := seg.Check(chainFrom)
		if err != nil {
			return nil, fmt.Errorf("seal: find: %s: %w", o.key, err)
		}
		if err := seg.Checkpoint.Verify(opts.Roots, opts.TSARoots); err != nil {
			return nil, fmt.Errorf("seal: find: %s: %w", o.key, err)
		}
		prev = end
		page.Segments++
		for i, raw := range seg.Entries {
			seq := seg.From + uint64(i)
			if seq < after {
				continue
			}
			e, err := ledger.DecodeEntry(raw)
			if err != nil {
				return nil, fmt.Errorf("seal: find: %s: entry %d: %w", o.key, seq, err)
			}
			if !q.Matches(e) {
				continue
			}
			if len(page.Entries) == limit {
				page.Next = strconv.FormatUint(seq, 10)
				return page, nil
			}
			page.Entries = append(page.Entries, e)
		}
	}
	return page, nil
}
