package ledger

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/ledger/driver"
)

// Index types, mixed into the term hash.
const (
	indexIdentificativo = 'i' // identificativo, and each related identificativo
	indexClientMsgID    = 'c' // client Message-ID
	indexMailbox        = 'm' // mittente and each destinatario, lower-cased, by time
	indexKind           = 'k' // kind, by time
)

// A posting says that entry seq has a term. The indexes are sorted lists of
// postings, ordered by term, then time, then seq: all entries with one term
// are adjacent, in time order for the timed terms (mailbox and kind) and in
// sequence order for the others, whose time is 0.
//
// The term is a 64-bit hash of the index type and the field, so different
// fields may share a term: Find re-checks every entry it reads and drops
// those that do not match.
type posting struct {
	term, time, seq uint64
}

// postingSize is the size of an encoded posting: term, time and seq, each
// uint64 big-endian, so that the byte order of encoded postings is their
// order.
const postingSize = 24

func comparePostings(a, b posting) int {
	if c := cmp.Compare(a.term, b.term); c != 0 {
		return c
	}
	if c := cmp.Compare(a.time, b.time); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

func (p posting) append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, p.term)
	dst = binary.BigEndian.AppendUint64(dst, p.time)
	return binary.BigEndian.AppendUint64(dst, p.seq)
}

func decodePosting(b []byte) posting {
	return posting{
		term: binary.BigEndian.Uint64(b),
		time: binary.BigEndian.Uint64(b[8:]),
		seq:  binary.BigEndian.Uint64(b[16:]),
	}
}

// termHash returns the term of field in the index typ: FNV-1a (64 bits)
// over typ and the field's bytes.
func termHash(typ byte, field string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	h = (h ^ uint64(typ)) * prime
	for i := 0; i < len(field); i++ {
		h = (h ^ uint64(field[i])) * prime
	}
	return h
}

// indexTerms returns the postings of e without their sequence number,
// which the sequencer sets.
func indexTerms(e *Event) []posting {
	terms := make([]posting, 0, 4+len(e.Related)+len(e.Destinatari))
	t := uint64(max(e.Time.UnixNano(), 0))
	add := func(typ byte, field string, timed bool) {
		p := posting{term: termHash(typ, field)}
		if timed {
			p.time = t
		}
		terms = append(terms, p)
	}
	if e.Identificativo != "" {
		add(indexIdentificativo, e.Identificativo, false)
	}
	for i, r := range e.Related {
		if r != e.Identificativo && !slices.Contains(e.Related[:i], r) {
			add(indexIdentificativo, r, false)
		}
	}
	if e.ClientMessageID != "" {
		add(indexClientMsgID, e.ClientMessageID, false)
	}
	var boxes [8]string
	seen := boxes[:0]
	addBox := func(a string) {
		a = strings.ToLower(a)
		if a != "" && !slices.Contains(seen, a) {
			seen = append(seen, a)
			add(indexMailbox, a, true)
		}
	}
	addBox(e.Mittente)
	for _, r := range e.Destinatari {
		addBox(r.Address)
	}
	add(indexKind, string(e.Kind), true)
	return terms
}

// Query selects entries through one index. The first non-empty of
// Identificativo, ClientMessageID, Mailbox and Kind chooses the index; the
// others, and From and To, filter what it yields.
type Query struct {
	Identificativo  string    // the transaction's identificativo, or a related one
	ClientMessageID string    // the sender client's Message-ID
	Mailbox         string    // a mittente or destinatario, case-insensitive
	Kind            Kind      // the kind of event
	From, To        time.Time // riferimento temporale in [From, To); zero means unbounded
	Limit           int       // at most this many entries; 0 means 1000
	Cursor          string    // Page.Next of the previous page
}

// Page is one page of query results, in index order (time order for mailbox
// and kind queries, sequence order otherwise).
type Page struct {
	Entries []*Entry
	// Next is the cursor of the following page; empty on the last page.
	Next string
}

// DefaultQueryLimit is the page size of a query that sets none.
const DefaultQueryLimit = 1000

// Find runs q. It sees every entry appended before it was called: it waits
// until the indexer has reached them. On a ledger opened read-only after a
// crash, entries the indexer had not reached are found only once the ledger
// has been opened for writing again, which indexes them. Entries purged past
// retention are not found.
func (l *Ledger) Find(ctx context.Context, q Query) (*Page, error) {
	var term uint64
	var timed bool
	switch {
	case q.Identificativo != "":
		term = termHash(indexIdentificativo, q.Identificativo)
	case q.ClientMessageID != "":
		term = termHash(indexClientMsgID, q.ClientMessageID)
	case q.Mailbox != "":
		term, timed = termHash(indexMailbox, strings.ToLower(q.Mailbox)), true
	case q.Kind != "":
		term, timed = termHash(indexKind, string(q.Kind)), true
	default:
		return nil, errors.New("ledger: find: the query names no identificativo, Message-ID, mailbox or kind")
	}
	if err := l.waitIndexed(ctx, l.Head().Size); err != nil {
		return nil, fmt.Errorf("ledger: find: %w", err)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultQueryLimit
	}
	start := posting{term: term}
	if timed && !q.From.IsZero() {
		start.time = uint64(max(q.From.UnixNano(), 0))
	}
	var after *posting
	if q.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(c) != postingSize || decodePosting(c).term != term {
			return nil, errors.New("ledger: find: the cursor does not belong to this query")
		}
		p := decodePosting(c)
		start, after = p, &p
	}
	snap := l.index.acquire()
	defer l.index.release(snap)
	it, err := snap.seek(start)
	if err != nil {
		return nil, fmt.Errorf("ledger: find: %w", err)
	}
	page := &Page{}
	var last posting
	err = l.db.View(ctx, func(txn driver.Reader) error {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			p, ok, err := it.next()
			if err != nil {
				return err
			}
			if !ok || p.term != term {
				return nil
			}
			if after != nil && p == *after {
				continue
			}
			if timed && !q.To.IsZero() && int64(p.time) >= q.To.UnixNano() {
				return nil
			}
			if len(page.Entries) == limit {
				page.Next = base64.RawURLEncoding.EncodeToString(last.append(nil))
				return nil
			}
			raw, err := txn.Get(entryKey(p.seq))
			if err != nil {
				return fmt.Errorf("entry %d: %w", p.seq, err)
			}
			if _, _, ok := parsePurged(raw); ok {
				continue // purged past retention: nothing left to match
			}
			e, err := DecodeEntry(raw)
			if err != nil {
				return err
			}
			if !q.Matches(e) {
				continue
			}
			page.Entries = append(page.Entries, e)
			last = p
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: find: %w", err)
	}
	return page, nil
}

// Matches reports whether e satisfies every field q sets: the check Find
// makes of each entry an index yields, and the filter of a query over
// entries read from elsewhere (sealed segments).
func (q *Query) Matches(e *Entry) bool {
	if q.Identificativo != "" && e.Identificativo != q.Identificativo && !contains(e.Related, q.Identificativo) {
		return false
	}
	if q.ClientMessageID != "" && e.ClientMessageID != q.ClientMessageID {
		return false
	}
	if q.Kind != "" && e.Kind != q.Kind {
		return false
	}
	if q.Mailbox != "" && !involves(&e.Event, q.Mailbox) {
		return false
	}
	if !q.From.IsZero() && e.Time.Before(q.From) {
		return false
	}
	if !q.To.IsZero() && !e.Time.Before(q.To) {
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	return slices.Contains(list, s)
}

// involves reports whether mailbox is the event's mittente or one of its
// destinatari, case-insensitively.
func involves(e *Event, mailbox string) bool {
	if strings.EqualFold(e.Mittente, mailbox) {
		return true
	}
	for _, r := range e.Destinatari {
		if strings.EqualFold(r.Address, mailbox) {
			return true
		}
	}
	return false
}
