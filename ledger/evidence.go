package ledger

import "github.com/custode/custode/ledger/evidence"

// The event schema and its canonical form live in package evidence; the
// names below keep the ledger's API as it was. New code should use
// package evidence directly.

// FormatVersion is evidence.FormatVersion.
const FormatVersion = evidence.FormatVersion

// timeLayout is evidence.TimeLayout.
const timeLayout = evidence.TimeLayout

type (
	// Entry is evidence.Entry.
	Entry = evidence.Entry
	// Event is evidence.Event.
	Event = evidence.Event
	// Kind is evidence.Kind.
	Kind = evidence.Kind
	// Tipo is evidence.Tipo.
	Tipo = evidence.Tipo
	// Recipient is evidence.Recipient.
	Recipient = evidence.Recipient
	// FieldError is evidence.FieldError.
	FieldError = evidence.FieldError
)

// Event kinds: see package evidence.
const (
	KindAccettazione              = evidence.KindAccettazione
	KindNonAccettazione           = evidence.KindNonAccettazione
	KindPostaCertificata          = evidence.KindPostaCertificata
	KindPresaInCarico             = evidence.KindPresaInCarico
	KindAvvenutaConsegna          = evidence.KindAvvenutaConsegna
	KindErroreConsegna            = evidence.KindErroreConsegna
	KindPreavvisoErroreConsegna12 = evidence.KindPreavvisoErroreConsegna12
	KindPreavvisoErroreConsegna24 = evidence.KindPreavvisoErroreConsegna24
	KindRilevazioneVirus          = evidence.KindRilevazioneVirus
	KindBustaAnomalia             = evidence.KindBustaAnomalia

	KindCheckpoint    = evidence.KindCheckpoint
	KindQuery         = evidence.KindQuery
	KindExport        = evidence.KindExport
	KindPolicyChange  = evidence.KindPolicyChange
	KindLegalHold     = evidence.KindLegalHold
	KindPurge         = evidence.KindPurge
	KindOutage        = evidence.KindOutage
	KindLoginFailures = evidence.KindLoginFailures
	KindRefusal       = evidence.KindRefusal
)

// Recipient types: see package evidence.
const (
	TipoCertificato = evidence.TipoCertificato
	TipoEsterno     = evidence.TipoEsterno
)

// Details: see package evidence.
const (
	DetailLoginAccount   = evidence.DetailLoginAccount
	DetailLoginRemote    = evidence.DetailLoginRemote
	DetailLoginFailed    = evidence.DetailLoginFailed
	DetailLoginThrottled = evidence.DetailLoginThrottled
	DetailLoginFrom      = evidence.DetailLoginFrom
	DetailLoginServices  = evidence.DetailLoginServices

	DetailOutageService = evidence.DetailOutageService
	DetailOutageFrom    = evidence.DetailOutageFrom
	DetailOutageCause   = evidence.DetailOutageCause

	DetailImported     = evidence.DetailImported
	DetailLedgerRanges = evidence.DetailLedgerRanges
	MaxRangesDetail    = evidence.MaxRangesDetail
)

// Limits on one event: see package evidence.
const (
	MaxFieldBytes  = evidence.MaxFieldBytes
	MaxRecipients  = evidence.MaxRecipients
	MaxRelated     = evidence.MaxRelated
	MaxDetails     = evidence.MaxDetails
	MaxDetailBytes = evidence.MaxDetailBytes
)

// Kinds returns evidence.Kinds().
func Kinds() []Kind { return evidence.Kinds() }

// ParseEventJSON returns evidence.ParseEventJSON(b).
func ParseEventJSON(b []byte) (Event, error) { return evidence.ParseEventJSON(b) }

// DecodeEntry returns evidence.DecodeEntry(raw).
func DecodeEntry(raw []byte) (*Entry, error) { return evidence.DecodeEntry(raw) }

// FormatRanges returns evidence.FormatRanges(seqs, limit).
func FormatRanges(seqs []uint64, limit int) (string, int) { return evidence.FormatRanges(seqs, limit) }

// ParseRanges returns evidence.ParseRanges(s).
func ParseRanges(s string) ([][2]uint64, error) { return evidence.ParseRanges(s) }

func rangesContain(rs [][2]uint64, seq uint64) bool { return evidence.RangesContain(rs, seq) }

// encodedEvent is an event pre-encoded by the appender (evidence.Prepare),
// with its index postings.
type encodedEvent struct {
	evidence.Prepared
	index []posting // without seq
}

func encodeEvent(e *Event) encodedEvent { return encodedEvent{Prepared: evidence.Prepare(e)} }

// assemble returns the canonical bytes of the entry made of p, prev and seq.
func (p *encodedEvent) assemble(dst []byte, prev *[32]byte, seq uint64) []byte {
	return p.AppendEntry(dst, prev, seq)
}
