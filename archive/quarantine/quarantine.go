// Package quarantine keeps the messages in which the virus scanner found a
// virus: the gestore refuses them (avviso di non accettazione per virus at
// the punto di accesso, avviso di rilevazione virus at the punto di
// ricezione) and keeps them, for an audit, in WORM storage under a
// retention class of their own: Compliance mode, 30 months from the event
// by default (policies.MinLogRetention, the legal minimum of the log), or
// the policy's retention.virus_quarantine, never less.
//
// A message is kept once, content-addressed by its SHA-256, as
// Prefix+"<sha256>.eml"; each time it was found (one transaction at one
// point) gets a record beside it, Prefix+"<sha256>.<rid>.json", locked as
// long. The message's ID in the quarantine is its SHA-256 in hex. Put
// returns only once both objects are durable in the store, so that the
// gestore can write the key and SHA-256 in the ledger entry of the virus
// event and then answer: nothing it refused is lost.
package quarantine

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/policies"
)

// DefaultPrefix is where the quarantine keeps its objects.
const DefaultPrefix = "quarantena/"

// Points of the gestore where a virus is found.
const (
	PointAccesso   = "accesso"   // a titolare's submission, refused
	PointRicezione = "ricezione" // a busta from another gestore, not delivered
)

// MaxRecordsPerMessage bounds the records Get and Export read for one
// message: the same bytes found again and again are one object, and an
// audit needs their first occurrences, not an unbounded list.
const MaxRecordsPerMessage = 1000

// Message is a message found infected, as the gestore hands it over.
type Message struct {
	// Identificativo is the transaction's identificativo.
	Identificativo string
	// Mittente and Destinatari are the transaction's addresses.
	Mittente    string
	Destinatari []string
	// Virus is what the scanner named.
	Virus string
	// Point is PointAccesso or PointRicezione.
	Point string
	// Time is the riferimento temporale of the virus event; the retention
	// runs from it. Zero means now.
	Time time.Time
	// Data is the message exactly as received.
	Data []byte
}

// Record is what the quarantine keeps of one finding, beside the message.
type Record struct {
	ID             string    `json:"id"`     // the message's SHA-256, hex
	Key            string    `json:"key"`    // the message's object key
	SHA256         string    `json:"sha256"` // the same as ID, named as the ledger names it
	Size           int64     `json:"size"`
	Identificativo string    `json:"identificativo"`
	Mittente       string    `json:"mittente"`
	Destinatari    []string  `json:"destinatari"`
	Virus          string    `json:"virus"`
	Point          string    `json:"point"`
	Time           time.Time `json:"time"`
	RetainUntil    time.Time `json:"retain_until"`
}

// Options configures a Store.
type Options struct {
	// Store is the WORM store. Required.
	Store archive.Store
	// Prefix is the key prefix of the quarantine; empty means
	// DefaultPrefix.
	Prefix string
	// Retention is how long, from the event, a message and its records
	// are locked; zero means policies.MinLogRetention, and less than that
	// is refused.
	Retention policies.Period
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is the quarantine over a WORM store.
type Store struct {
	opts Options
}

// New checks opts and returns the quarantine.
func New(opts Options) (*Store, error) {
	if opts.Store == nil {
		return nil, errors.New("quarantine: a store is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := archive.ValidatePrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Retention == (policies.Period{}) {
		opts.Retention = policies.MinLogRetention
	}
	if !opts.Retention.AtLeast(policies.MinLogRetention, opts.Now()) {
		return nil, fmt.Errorf("quarantine: retention %s is shorter than the legal %s", opts.Retention, policies.MinLogRetention)
	}
	return &Store{opts: opts}, nil
}

// Retention is the quarantine's retention class.
func (q *Store) Retention() policies.Period { return q.opts.Retention }

// MessageKey is the object key of the message whose SHA-256 is id (hex).
func (q *Store) MessageKey(id string) string { return q.opts.Prefix + id + ".eml" }

func (q *Store) recordKey(id string, m *Message) string {
	h := sha256.Sum256([]byte(m.Point + "\x00" + m.Identificativo))
	return q.opts.Prefix + id + "." + hex.EncodeToString(h[:8]) + ".json"
}

// Put keeps m durably and returns its record: the message (once, whatever
// the number of findings) and a record of this finding, both locked in
// Compliance mode for the retention from m.Time. Putting the same finding
// again (the same point and identificativo: a retry) returns the record
// first kept.
func (q *Store) Put(ctx context.Context, m Message) (Record, error) {
	if len(m.Data) == 0 || m.Identificativo == "" {
		return Record{}, errors.New("quarantine: put: a message and its identificativo are required")
	}
	if m.Point != PointAccesso && m.Point != PointRicezione {
		return Record{}, fmt.Errorf("quarantine: put %s: point %q: want %s or %s", m.Identificativo, m.Point, PointAccesso, PointRicezione)
	}
	at := m.Time
	if at.IsZero() {
		at = q.opts.Now()
	}
	sum := sha256.Sum256(m.Data)
	id := hex.EncodeToString(sum[:])
	r := Record{ID: id, Key: q.MessageKey(id), SHA256: id, Size: int64(len(m.Data)), Identificativo: m.Identificativo,
		Mittente: m.Mittente, Destinatari: m.Destinatari, Virus: m.Virus, Point: m.Point,
		Time: at.UTC(), RetainUntil: q.opts.Retention.AddTo(at).UTC()}
	if r.Destinatari == nil {
		r.Destinatari = []string{}
	}
	opts := archive.PutOptions{Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: r.RetainUntil}}

	// The message first, so that no record names a missing object.
	info, err := q.opts.Store.Put(ctx, r.Key, m.Data, opts)
	if errors.Is(err, archive.ErrExists) {
		if info, err = q.opts.Store.Stat(ctx, r.Key, ""); err != nil {
			return Record{}, fmt.Errorf("quarantine: put %s: %w", r.Key, err)
		}
		if info.SHA256 != sum {
			return Record{}, fmt.Errorf("quarantine: put %s: the stored object has another SHA-256: %w", r.Key, archive.ErrChecksum)
		}
		if info.Retention.RetainUntil.Before(r.RetainUntil) {
			if err := q.opts.Store.ExtendRetention(ctx, r.Key, info.VersionID, r.RetainUntil); err != nil {
				return Record{}, fmt.Errorf("quarantine: put %s: %w", r.Key, err)
			}
		}
	} else if err != nil {
		return Record{}, fmt.Errorf("quarantine: put %s: %w", r.Key, err)
	}

	rkey := q.recordKey(id, &m)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return Record{}, err
	}
	_, err = q.opts.Store.Put(ctx, rkey, append(js, '\n'), opts)
	if errors.Is(err, archive.ErrExists) {
		old, err := q.record(ctx, rkey)
		if err != nil {
			return Record{}, err
		}
		if old.ID != id || old.Identificativo != m.Identificativo {
			return Record{}, fmt.Errorf("quarantine: put %s: it records another message (%s of %s): %w", rkey, old.ID, old.Identificativo, archive.ErrExists)
		}
		return old, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("quarantine: put %s: %w", rkey, err)
	}
	return r, nil
}

// record reads and decodes the record under key.
func (q *Store) record(ctx context.Context, key string) (Record, error) {
	obj, err := q.opts.Store.Get(ctx, key, "")
	if err != nil {
		return Record{}, fmt.Errorf("quarantine: record %s: %w", key, err)
	}
	var r Record
	if err := json.Unmarshal(obj.Data, &r); err != nil {
		return Record{}, fmt.Errorf("quarantine: record %s: %w", key, err)
	}
	return r, nil
}

// List returns every record of the quarantine, oldest first.
func (q *Store) List(ctx context.Context) ([]Record, error) {
	return q.records(ctx, q.opts.Prefix, 0)
}

// records reads the records whose keys start with prefix: at most max
// of them, if max > 0.
func (q *Store) records(ctx context.Context, prefix string, max int) ([]Record, error) {
	var out []Record
	for le, err := range q.opts.Store.List(ctx, prefix) {
		if err != nil {
			return nil, fmt.Errorf("quarantine: list: %w", err)
		}
		if !strings.HasSuffix(le.Key, ".json") {
			continue
		}
		r, err := q.record(ctx, le.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		if max > 0 && len(out) >= max {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b Record) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Item is one quarantined message with its records.
type Item struct {
	Object  archive.ObjectInfo
	Data    []byte
	Records []Record
}

// ErrNotFound is wrapped by the error of Get for an ID the quarantine
// does not hold.
var ErrNotFound = errors.New("quarantine: no such message")

// Get returns the message whose ID (SHA-256, hex) is id, verified by the
// store against the SHA-256 recorded at write time, with its records.
func (q *Store) Get(ctx context.Context, id string) (*Item, error) {
	if b, err := hex.DecodeString(id); err != nil || len(b) != sha256.Size || strings.ToLower(id) != id {
		return nil, fmt.Errorf("quarantine: %q is not an ID: want the message's SHA-256, 64 lower-case hex digits", clip(id))
	}
	obj, err := q.opts.Store.Get(ctx, q.MessageKey(id), "")
	if errors.Is(err, archive.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("quarantine: get %s: %w", id, err)
	}
	if hex.EncodeToString(obj.SHA256[:]) != id {
		return nil, fmt.Errorf("quarantine: get %s: the object's SHA-256 is %x: %w", id, obj.SHA256, archive.ErrChecksum)
	}
	recs, err := q.records(ctx, q.opts.Prefix+id+".", MaxRecordsPerMessage)
	if err != nil {
		return nil, err
	}
	return &Item{Object: obj.ObjectInfo, Data: obj.Data, Records: recs}, nil
}

// Files of an export.
const (
	FileMessage = "message.eml"  // the message, exactly as received: it holds a virus
	FileRecords = "records.json" // the findings (Record), oldest first
	FileObject  = "object.json"  // the WORM object: key, version, SHA-256, retention
	FileSums    = "SHA256SUMS"   // sha256sum -c checks the other files
)

// objectJSON is object.json.
type objectJSON struct {
	Key          string    `json:"key"`
	VersionID    string    `json:"version_id"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	Mode         string    `json:"retention_mode"`
	RetainUntil  time.Time `json:"retain_until"`
	LegalHold    bool      `json:"legal_hold"`
	LastModified time.Time `json:"last_modified"`
}

// Export writes, for an audit, the message whose ID is id as a ZIP:
// FileMessage, FileRecords, FileObject and FileSums.
func (q *Store) Export(ctx context.Context, id string, w io.Writer) error {
	it, err := q.Get(ctx, id)
	if err != nil {
		return err
	}
	recs, err := json.MarshalIndent(it.Records, "", "  ")
	if err != nil {
		return err
	}
	o := it.Object
	obj, err := json.MarshalIndent(objectJSON{Key: o.Key, VersionID: o.VersionID, Size: o.Size, SHA256: hex.EncodeToString(o.SHA256[:]),
		Mode: string(o.Retention.Mode), RetainUntil: o.Retention.RetainUntil.UTC(), LegalHold: o.LegalHold, LastModified: o.LastModified.UTC()}, "", "  ")
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{{FileMessage, it.Data}, {FileRecords, append(recs, '\n')}, {FileObject, append(obj, '\n')}}
	var sums bytes.Buffer
	for _, f := range files {
		s := sha256.Sum256(f.data)
		fmt.Fprintf(&sums, "%x  %s\n", s, f.name)
	}
	files = append(files, struct {
		name string
		data []byte
	}{FileSums, sums.Bytes()})
	zw := zip.NewWriter(w)
	for _, f := range files {
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: o.LastModified.UTC()})
		if err != nil {
			return fmt.Errorf("quarantine: export %s: %w", id, err)
		}
		if _, err := fw.Write(f.data); err != nil {
			return fmt.Errorf("quarantine: export %s: %w", id, err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("quarantine: export %s: %w", id, err)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
