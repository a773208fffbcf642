package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Index types, the byte after prefixIndex.
const (
	indexIdentificativo = 'i' // identificativo, and each related identificativo
	indexClientMsgID    = 'c' // client Message-ID
	indexMailbox        = 'm' // mittente and each destinatario, lower-cased, by time
	indexKind           = 'k' // kind, by time
)

// indexKeys returns the index keys of e without their trailing sequence
// number, which the sequencer appends.
func indexKeys(e *Event) [][]byte {
	keys := make([][]byte, 0, 4+len(e.Related)+len(e.Destinatari))
	t := uint64(e.Time.UnixNano())
	add := func(typ byte, field string, withTime bool) {
		k := make([]byte, 0, 2+len(field)+1+16)
		k = append(k, prefixIndex, typ)
		k = append(k, field...)
		k = append(k, 0)
		if withTime {
			k = binary.BigEndian.AppendUint64(k, t)
		}
		keys = append(keys, k)
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
	boxes := make([]string, 0, 1+len(e.Destinatari))
	addBox := func(a string) {
		a = strings.ToLower(a)
		if a != "" && !slices.Contains(boxes, a) {
			boxes = append(boxes, a)
			add(indexMailbox, a, true)
		}
	}
	addBox(e.Mittente)
	for _, r := range e.Destinatari {
		addBox(r.Address)
	}
	add(indexKind, string(e.Kind), true)
	return keys
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

	lastKey []byte
}

// DefaultQueryLimit is the page size of a query that sets none.
const DefaultQueryLimit = 1000

// Find runs q. It sees every entry appended before it was called: it waits
// until the indexer has reached them. On a ledger opened read-only after a
// crash, entries the indexer had not reached are found only once the ledger
// has been opened for writing again, which indexes them.
func (l *Ledger) Find(ctx context.Context, q Query) (*Page, error) {
	var prefix []byte
	var timed bool
	switch {
	case q.Identificativo != "":
		prefix = indexPrefix(indexIdentificativo, q.Identificativo)
	case q.ClientMessageID != "":
		prefix = indexPrefix(indexClientMsgID, q.ClientMessageID)
	case q.Mailbox != "":
		prefix, timed = indexPrefix(indexMailbox, strings.ToLower(q.Mailbox)), true
	case q.Kind != "":
		prefix, timed = indexPrefix(indexKind, string(q.Kind)), true
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
	start := prefix
	if timed && !q.From.IsZero() {
		start = binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(max(q.From.UnixNano(), 0)))
	}
	var after []byte
	if q.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || !bytes.HasPrefix(c, prefix) {
			return nil, errors.New("ledger: find: the cursor does not belong to this query")
		}
		start, after = c, c
	}
	page := &Page{}
	err := l.idx.View(func(itxn *badger.Txn) error {
		txn := l.db.NewTransaction(false)
		defer txn.Discard()
		it := itxn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if after != nil && bytes.Equal(k, after) {
				continue
			}
			rest := k[len(prefix):]
			if timed {
				if len(rest) != 16 {
					return fmt.Errorf("malformed index key %x", k)
				}
				t := time.Unix(0, int64(binary.BigEndian.Uint64(rest[:8])))
				if !q.To.IsZero() && !t.Before(q.To) {
					break
				}
				rest = rest[8:]
			}
			if len(rest) != 8 {
				return fmt.Errorf("malformed index key %x", k)
			}
			if len(page.Entries) == limit {
				page.Next = base64.RawURLEncoding.EncodeToString(page.lastKey)
				break
			}
			seq := binary.BigEndian.Uint64(rest)
			raw, err := getValue(txn, entryKey(seq))
			if err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
			e, err := DecodeEntry(raw)
			if err != nil {
				return err
			}
			if !q.matches(e) {
				continue
			}
			page.Entries = append(page.Entries, e)
			page.lastKey = append(page.lastKey[:0], k...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: find: %w", err)
	}
	return page, nil
}

func indexPrefix(typ byte, field string) []byte {
	k := make([]byte, 0, 3+len(field))
	k = append(k, prefixIndex, typ)
	k = append(k, field...)
	return append(k, 0)
}

func (q *Query) matches(e *Entry) bool {
	if q.Identificativo != "" && e.Identificativo != q.Identificativo && !contains(e.Related, q.Identificativo) {
		return false
	}
	if q.ClientMessageID != "" && e.ClientMessageID != q.ClientMessageID {
		return false
	}
	if q.Kind != "" && e.Kind != q.Kind {
		return false
	}
	if q.Mailbox != "" && !e.involves(q.Mailbox) {
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
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// involves reports whether mailbox is the event's mittente or one of its
// destinatari, case-insensitively.
func (e *Event) involves(mailbox string) bool {
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
