package evidence

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// FormatVersion is the version of the canonical entry encoding (FORMAT.md).
const FormatVersion = 1

// TimeLayout is the one textual form of a riferimento temporale in an entry
// and of a checkpoint's time: UTC, always nine fractional digits, so that a
// time has one encoding.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// Entry is an event as the ledger holds it: numbered, chained to its
// predecessor, and encoded in one canonical byte form.
type Entry struct {
	// Seq is the entry's position in the ledger, from 0, without gaps.
	Seq uint64
	// Prev is the leaf hash of entry Seq-1, or all zeros for entry 0.
	Prev [32]byte
	Event
}

// Prepared is an event pre-encoded in the three pieces that surround the two
// members only the sequencer knows (prev and seq), so that most of the
// encoding runs in the appender's goroutine rather than in the sequencer.
// Its zero value is not useful: see Prepare.
type Prepared struct {
	a, b, c []byte // {a "prev":…, b "seq":…, c}
}

// Prepare returns the canonical pieces of e, which must be valid (see
// Event.Validate): an invalid event gives bytes DecodeEntry refuses.
func Prepare(e *Event) Prepared {
	n := len(e.Actor) + len(e.ArchiveKey) + len(e.ClientMessageID) + len(e.Gestore) +
		len(e.Identificativo) + len(e.Mittente) + len(e.Oggetto) + 200
	for _, r := range e.Destinatari {
		n += len(r.Address) + 40
	}
	for k, v := range e.Details {
		n += len(k) + len(v) + 6
	}
	a := make([]byte, 0, n+n/8)
	var b, c []byte
	// Keys in ascending order of their UTF-16 code units (all ASCII here):
	// actor archive_key client_message_id destinatari details gestore
	// identificativo kind mittente oggetto | prev | related
	// riferimento_temporale | seq | sha256 v
	a = appendStringField(a, "actor", e.Actor)
	a = appendStringField(a, "archive_key", e.ArchiveKey)
	a = appendStringField(a, "client_message_id", e.ClientMessageID)
	if len(e.Destinatari) > 0 {
		a = append(a, `"destinatari":[`...)
		for i, r := range e.Destinatari {
			if i > 0 {
				a = append(a, ',')
			}
			a = append(a, `{"indirizzo":`...)
			a = appendJSONString(a, r.Address)
			a = append(a, `,"tipo":`...)
			a = appendJSONString(a, string(r.Tipo))
			a = append(a, '}')
		}
		a = append(a, "],"...)
	}
	if len(e.Details) > 0 {
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys) // keys are ASCII: byte order is UTF-16 order
		a = append(a, `"details":{`...)
		for i, k := range keys {
			if i > 0 {
				a = append(a, ',')
			}
			a = appendJSONString(a, k)
			a = append(a, ':')
			a = appendJSONString(a, e.Details[k])
		}
		a = append(a, "},"...)
	}
	a = appendStringField(a, "gestore", e.Gestore)
	a = appendStringField(a, "identificativo", e.Identificativo)
	a = appendStringField(a, "kind", string(e.Kind))
	a = appendStringField(a, "mittente", e.Mittente)
	a = appendStringField(a, "oggetto", e.Oggetto)

	if len(e.Related) > 0 {
		b = append(b, `"related":[`...)
		for i, r := range e.Related {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r)
		}
		b = append(b, "],"...)
	}
	b = appendStringField(b, "riferimento_temporale", e.Time.UTC().Format(TimeLayout))

	if e.SHA256 != nil {
		c = appendStringField(c, "sha256", hex.EncodeToString(e.SHA256))
	}
	c = append(c, `"v":`...)
	c = strconv.AppendInt(c, FormatVersion, 10)
	return Prepared{a: a, b: b, c: c}
}

// Len returns the length of the pieces, without the prev and seq members
// (at most 120 bytes more).
func (p *Prepared) Len() int { return len(p.a) + len(p.b) + len(p.c) }

// AppendEntry appends to dst the canonical bytes of the entry made of p,
// prev and seq, and returns the extended slice.
func (p *Prepared) AppendEntry(dst []byte, prev *[32]byte, seq uint64) []byte {
	dst = append(dst, '{')
	dst = append(dst, p.a...)
	dst = append(dst, `"prev":"`...)
	dst = hex.AppendEncode(dst, prev[:])
	dst = append(dst, `",`...)
	dst = append(dst, p.b...)
	dst = append(dst, `"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ',')
	dst = append(dst, p.c...)
	dst = append(dst, '}')
	return dst
}

// Encode returns the canonical bytes of e (FORMAT.md). It fails if the event
// is invalid.
func (e *Entry) Encode() ([]byte, error) {
	if err := e.Event.Validate(); err != nil {
		return nil, fmt.Errorf("evidence: encode entry %d: %w", e.Seq, err)
	}
	p := Prepare(&e.Event)
	return p.AppendEntry(nil, &e.Prev, e.Seq), nil
}

func appendStringField(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	dst = append(dst, `":`...)
	dst = appendJSONString(dst, v)
	return append(dst, ',')
}

// appendJSONString appends s as an RFC 8785 string: only '"', '\\' and
// control characters are escaped, control characters with the short forms
// where JSON has them and \u00xx (lower-case hex) otherwise.
func appendJSONString(dst []byte, s string) []byte {
	const hexdigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, `\"`...)
		case '\\':
			dst = append(dst, `\\`...)
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexdigits[c>>4], hexdigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

type wireRecipient struct {
	Indirizzo string `json:"indirizzo"`
	Tipo      string `json:"tipo"`
}

// wireEvent is an event's members in the JSON form of FORMAT.md.
type wireEvent struct {
	Actor                string            `json:"actor"`
	ArchiveKey           string            `json:"archive_key"`
	ClientMessageID      string            `json:"client_message_id"`
	Destinatari          []wireRecipient   `json:"destinatari"`
	Details              map[string]string `json:"details"`
	Gestore              string            `json:"gestore"`
	Identificativo       string            `json:"identificativo"`
	Kind                 string            `json:"kind"`
	Mittente             string            `json:"mittente"`
	Oggetto              string            `json:"oggetto"`
	Related              []string          `json:"related"`
	RiferimentoTemporale string            `json:"riferimento_temporale"`
	SHA256               string            `json:"sha256"`
}

// wireEntry is an entry: its event's members and the sequencer's.
type wireEntry struct {
	wireEvent
	Prev string `json:"prev"`
	Seq  uint64 `json:"seq"`
	V    int    `json:"v"`
}

// event returns the event w describes, at time t.
func (w *wireEvent) event(t time.Time) (Event, error) {
	e := Event{
		Kind:            Kind(w.Kind),
		Identificativo:  w.Identificativo,
		ClientMessageID: w.ClientMessageID,
		Time:            t,
		Mittente:        w.Mittente,
		Oggetto:         w.Oggetto,
		Related:         w.Related,
		Gestore:         w.Gestore,
		ArchiveKey:      w.ArchiveKey,
		Actor:           w.Actor,
		Details:         w.Details,
	}
	for _, r := range w.Destinatari {
		e.Destinatari = append(e.Destinatari, Recipient{Address: r.Indirizzo, Tipo: Tipo(r.Tipo)})
	}
	if w.SHA256 != "" {
		sum, err := hex.DecodeString(w.SHA256)
		if err != nil {
			return e, &FieldError{"sha256", "not hex"}
		}
		e.SHA256 = sum
	}
	return e, nil
}

// ParseEventJSON reads one event written as a JSON object with the member
// names of FORMAT.md, without seq, prev and v, and with the
// riferimento_temporale in any RFC 3339 form. Unknown members are refused,
// and the event must be valid; a problem with a member is a *FieldError.
func ParseEventJSON(b []byte) (Event, error) {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Event{}, fmt.Errorf("evidence: parse event: %w", err)
	}
	if dec.More() {
		return Event{}, errors.New("evidence: parse event: more than one JSON value")
	}
	if w.RiferimentoTemporale == "" {
		return Event{}, &FieldError{"riferimento_temporale", "missing"}
	}
	t, err := time.Parse(time.RFC3339Nano, w.RiferimentoTemporale)
	if err != nil {
		return Event{}, &FieldError{"riferimento_temporale", err.Error()}
	}
	e, err := w.event(t)
	if err != nil {
		return e, err
	}
	return e, e.Validate()
}

// DecodeEntry parses canonical entry bytes. It fails unless raw is exactly
// the canonical encoding of a valid entry: any other spelling of the same
// content (spacing, key order, escapes, duplicate keys) is refused.
func DecodeEntry(raw []byte) (*Entry, error) {
	if len(raw) > MaxEntryBytes {
		return nil, fmt.Errorf("evidence: decode entry: %d bytes, more than %d", len(raw), MaxEntryBytes)
	}
	// Unknown members, duplicates and trailing spaces are not refused
	// here: the comparison with the re-encoding below refuses them.
	var w wireEntry
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fmt.Errorf("evidence: decode entry: %w", err)
	}
	if w.V != FormatVersion {
		return nil, fmt.Errorf("evidence: decode entry: format version %d, want %d", w.V, FormatVersion)
	}
	e := &Entry{Seq: w.Seq}
	if len(w.Prev) != 64 {
		return nil, fmt.Errorf("evidence: decode entry %d: prev is not 64 hex digits", w.Seq)
	}
	if _, err := hex.Decode(e.Prev[:], []byte(w.Prev)); err != nil {
		return nil, fmt.Errorf("evidence: decode entry %d: prev: %w", w.Seq, err)
	}
	t, err := time.Parse(TimeLayout, w.RiferimentoTemporale)
	if err != nil {
		return nil, fmt.Errorf("evidence: decode entry %d: riferimento_temporale: %w", w.Seq, err)
	}
	if e.Event, err = w.event(t); err != nil {
		return nil, fmt.Errorf("evidence: decode entry %d: %w", w.Seq, err)
	}
	again, err := e.Encode()
	if err != nil {
		return nil, fmt.Errorf("evidence: decode entry %d: %w", w.Seq, err)
	}
	if !bytes.Equal(again, raw) {
		return nil, fmt.Errorf("evidence: decode entry %d: %w", w.Seq, ErrNotCanonical)
	}
	return e, nil
}
