package evidence

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Details that are read back, by the kinds that write them. The stored
// bytes are the map Event.Details; the accessors below are the one place
// that knows a key's name and the form of its value.
const (
	// DetailDestinatario is the recipient a per-recipient event is about
	// (avvenuta consegna, errore consegna, preavvisi, rilevazione virus).
	DetailDestinatario = "destinatario"
	// DetailErrore is daticert's <errore> for an avviso or a refusal
	// (nessuno, no-dest, no-dominio, virus, altro).
	DetailErrore = "errore"
	// DetailTipoRicevuta is the kind of ricevuta di avvenuta consegna asked
	// for (completa, breve, sintetica).
	DetailTipoRicevuta = "tipo_ricevuta"
	// DetailRicezione lists the recipients a presa in carico covers,
	// separated by single spaces.
	DetailRicezione = "ricezione"

	// DetailTreeSize, DetailRoot and DetailPrevCheckpoint describe the
	// signed checkpoint a checkpoint event records: its size in decimal,
	// its root and the SHA-256 of the previous checkpoint's body, both in
	// lower-case hex.
	DetailTreeSize       = "tree_size"
	DetailRoot           = "root"
	DetailPrevCheckpoint = "prev_checkpoint"

	// DetailImported marks an entry as imported: appended by hand
	// (custode ledger append) or from another log, not by the gestore as
	// the event happened. Its value is the time it was appended (UTC,
	// TimeLayout). The time of an imported entry is only what the importer
	// claims: the ledger's MaxEventDelay does not apply to it, and a
	// verifier reports it as imported rather than holding it to the delay
	// bound.
	DetailImported = "imported"
)

// Details of an outage event, whose riferimento temporale is when the
// service came back.
const (
	DetailOutageService = "service" // what was unavailable: gestore, tsa, archive, storage
	DetailOutageFrom    = "from"    // since when, RFC 3339 with nanoseconds, UTC
	DetailOutageCause   = "cause"   // what was seen
)

// DetailLedgerRanges is the detail of a purge event that lists the entries
// whose contents it removed, as comma-separated ranges "a-b" (inclusive) or
// single numbers, in ascending order.
const DetailLedgerRanges = "ledger_ranges"

// MaxRangesDetail bounds the ledger_ranges detail of one purge event,
// below the 16 KiB limit of a detail value.
const MaxRangesDetail = 15 << 10

// Destinatario returns the recipient a per-recipient event is about, or "".
func (e *Event) Destinatario() string { return e.Details[DetailDestinatario] }

// Errore returns daticert's <errore> the event records, or "".
func (e *Event) Errore() string { return e.Details[DetailErrore] }

// TipoRicevuta returns the kind of ricevuta di avvenuta consegna asked
// for, or "".
func (e *Event) TipoRicevuta() string { return e.Details[DetailTipoRicevuta] }

// Ricezione returns the recipients a presa in carico covers, as stored
// (not case-folded), or nil.
func (e *Event) Ricezione() []string {
	v := e.Details[DetailRicezione]
	if v == "" {
		return nil
	}
	return strings.Fields(v)
}

// Imported reports whether the entry is marked as imported (DetailImported).
func (e *Event) Imported() bool { return e.Details[DetailImported] != "" }

// CheckpointRecord is what a checkpoint event says of the signed checkpoint
// it records.
type CheckpointRecord struct {
	Size uint64
	Root [32]byte
	Prev [32]byte // SHA-256 of the previous checkpoint's body; zero for the first
}

// Checkpoint reads the details of a checkpoint event. It fails, naming the
// detail, if one is missing or not in its one form.
func (e *Event) Checkpoint() (CheckpointRecord, error) {
	var r CheckpointRecord
	if e.Kind != KindCheckpoint {
		return r, fmt.Errorf("evidence: a %s event is not a checkpoint", e.Kind)
	}
	v := e.Details[DetailTreeSize]
	size, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != v {
		return r, &FieldError{"details." + DetailTreeSize, fmt.Sprintf("%q is not a decimal size", v)}
	}
	r.Size = size
	for _, f := range []struct {
		key string
		dst *[32]byte
	}{{DetailRoot, &r.Root}, {DetailPrevCheckpoint, &r.Prev}} {
		if err := decodeHash(f.dst, e.Details[f.key]); err != nil {
			return r, &FieldError{"details." + f.key, err.Error()}
		}
	}
	return r, nil
}

// decodeHash reads 64 lower-case hex digits into dst.
func decodeHash(dst *[32]byte, v string) error {
	if len(v) != 64 || strings.ToLower(v) != v {
		return fmt.Errorf("%q is not 64 lower-case hex digits", v)
	}
	if _, err := hex.Decode(dst[:], []byte(v)); err != nil {
		return fmt.Errorf("%q is not 64 lower-case hex digits", v)
	}
	return nil
}

// Outage is what an outage event records.
type Outage struct {
	Service  string    // DetailOutageService
	From, To time.Time // To is the event's riferimento temporale
	Cause    string    // DetailOutageCause
}

// Outage reads the details of an outage event. It fails, naming the
// detail, if the start is missing or not an RFC 3339 time.
func (e *Event) Outage() (Outage, error) {
	o := Outage{Service: e.Details[DetailOutageService], To: e.Time, Cause: e.Details[DetailOutageCause]}
	if e.Kind != KindOutage {
		return o, fmt.Errorf("evidence: a %s event is not an outage", e.Kind)
	}
	from, err := time.Parse(time.RFC3339Nano, e.Details[DetailOutageFrom])
	if err != nil {
		return o, &FieldError{"details." + DetailOutageFrom, fmt.Sprintf("%q is not an RFC 3339 time", e.Details[DetailOutageFrom])}
	}
	o.From = from
	return o, nil
}

// LedgerRanges reads the DetailLedgerRanges of a purge event (ParseRanges).
func (e *Event) LedgerRanges() ([][2]uint64, error) {
	if e.Kind != KindPurge {
		return nil, fmt.Errorf("evidence: a %s event is not a purge", e.Kind)
	}
	return ParseRanges(e.Details[DetailLedgerRanges])
}

// FormatRanges writes ascending, distinct sequence numbers as the ranges of
// DetailLedgerRanges. It returns the text for a prefix of seqs no longer
// than limit bytes (all of them if limit is 0) and how many it covers.
func FormatRanges(seqs []uint64, limit int) (string, int) {
	var b strings.Builder
	n := 0
	for n < len(seqs) {
		end := n
		for end+1 < len(seqs) && seqs[end+1] == seqs[end]+1 {
			end++
		}
		part := strconv.FormatUint(seqs[n], 10)
		if end > n {
			part += "-" + strconv.FormatUint(seqs[end], 10)
		}
		if b.Len() > 0 {
			part = "," + part
		}
		if limit > 0 && b.Len()+len(part) > limit {
			if b.Len() == 0 {
				// A single range always fits: it is two numbers.
				b.WriteString(part)
				n = end + 1
			}
			break
		}
		b.WriteString(part)
		n = end + 1
	}
	return b.String(), n
}

// ParseRanges reads the DetailLedgerRanges text of a purge event. It
// refuses anything not in ascending order.
func ParseRanges(s string) ([][2]uint64, error) {
	if s == "" {
		return nil, nil
	}
	var out [][2]uint64
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("evidence: ranges %q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil {
				return nil, fmt.Errorf("evidence: ranges %q: %w", part, err)
			}
		}
		if b < a || (len(out) > 0 && a <= out[len(out)-1][1]) {
			return nil, fmt.Errorf("evidence: ranges %q: not ascending", part)
		}
		out = append(out, [2]uint64{a, b})
	}
	return out, nil
}

// RangesContain reports whether ranges as ParseRanges returns them hold seq.
func RangesContain(rs [][2]uint64, seq uint64) bool {
	i, _ := slices.BinarySearchFunc(rs, seq, func(r [2]uint64, s uint64) int {
		switch {
		case r[1] < s:
			return -1
		case r[0] > s:
			return 1
		}
		return 0
	})
	return i < len(rs) && rs[i][0] <= seq && seq <= rs[i][1]
}
