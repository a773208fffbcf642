package evidence

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind names what an event records. PEC kinds use the names of the X-Ricevuta
// and X-Trasporto header values of RFC 6109; system kinds record what the
// archive itself does.
type Kind string

// PEC events (RFC 6109 §3), one per message a processing point emits or takes
// in charge.
const (
	KindAccettazione              Kind = "accettazione"                  // ricevuta di accettazione
	KindNonAccettazione           Kind = "non-accettazione"              // avviso di non accettazione (formal or virus)
	KindPostaCertificata          Kind = "posta-certificata"             // busta di trasporto
	KindPresaInCarico             Kind = "presa-in-carico"               // ricevuta di presa in carico
	KindAvvenutaConsegna          Kind = "avvenuta-consegna"             // ricevuta di avvenuta consegna
	KindErroreConsegna            Kind = "errore-consegna"               // avviso di mancata consegna
	KindPreavvisoErroreConsegna12 Kind = "preavviso-errore-consegna-12h" // avviso di mancata consegna, 12 hours
	KindPreavvisoErroreConsegna24 Kind = "preavviso-errore-consegna-24h" // avviso di mancata consegna, 24 hours
	KindRilevazioneVirus          Kind = "rilevazione-virus"             // avviso di rilevazione virus
	KindBustaAnomalia             Kind = "busta-anomalia"                // busta di anomalia
)

// System events: what the archive does and what people ask of it.
const (
	KindCheckpoint   Kind = "checkpoint"    // a signed checkpoint was made
	KindQuery        Kind = "query"         // somebody queried the ledger
	KindExport       Kind = "export"        // somebody exported evidence
	KindPolicyChange Kind = "policy-change" // a policy file was applied
	KindLegalHold    Kind = "legal-hold"    // a legal hold was placed or released
	KindPurge        Kind = "purge"         // data past retention was purged
	KindOutage       Kind = "outage"        // a service was unavailable (AgID P02)
	// KindLoginFailures counts the failed and throttled logins of one
	// account from one remote address within one aggregation window.
	KindLoginFailures Kind = "login-failures"
	// KindRefusal records a message the gestore refused or gave up, with
	// no PEC message emitted.
	KindRefusal Kind = "refusal"
)

// Details of a login-failures event, whose riferimento temporale is the
// last attempt it counts.
const (
	DetailLoginAccount   = "account"   // the account as the client named it; "*" for the overflow record
	DetailLoginRemote    = "remote"    // the client's address (IPv6 /64 prefixes as such); "*" for the overflow record
	DetailLoginFailed    = "failed"    // password checks that failed, decimal
	DetailLoginThrottled = "throttled" // attempts refused unchecked, decimal
	DetailLoginFrom      = "from"      // the first attempt counted, RFC 3339 with nanoseconds, UTC
	DetailLoginServices  = "services"  // where: comma-separated smtp, imap, api
)

var pecKinds = map[Kind]bool{
	KindAccettazione: true, KindNonAccettazione: true, KindPostaCertificata: true,
	KindPresaInCarico: true, KindAvvenutaConsegna: true, KindErroreConsegna: true,
	KindPreavvisoErroreConsegna12: true, KindPreavvisoErroreConsegna24: true,
	KindRilevazioneVirus: true, KindBustaAnomalia: true,
}

var systemKinds = map[Kind]bool{
	KindCheckpoint: true, KindQuery: true, KindExport: true,
	KindPolicyChange: true, KindLegalHold: true, KindPurge: true, KindOutage: true,
	KindLoginFailures: true,
	KindRefusal:       true,
}

// IsPEC reports whether k is a PEC transaction kind.
func (k Kind) IsPEC() bool { return pecKinds[k] }

// IsSystem reports whether k is one of the archive's own event kinds.
func (k Kind) IsSystem() bool { return systemKinds[k] }

// Kinds returns every kind the ledger accepts, each once, PEC kinds first:
// exactly the kinds for which IsPEC or IsSystem is true.
func Kinds() []Kind {
	return []Kind{
		KindAccettazione, KindNonAccettazione, KindPostaCertificata, KindPresaInCarico,
		KindAvvenutaConsegna, KindErroreConsegna, KindPreavvisoErroreConsegna12,
		KindPreavvisoErroreConsegna24, KindRilevazioneVirus, KindBustaAnomalia,
		KindCheckpoint, KindQuery, KindExport, KindPolicyChange, KindLegalHold, KindPurge,
		KindOutage,
		KindLoginFailures,
		KindRefusal,
	}
}

// Tipo tells a certified recipient from an ordinary one, as daticert.xml does.
type Tipo string

// Recipient types of daticert.xml's destinatari.
const (
	TipoCertificato Tipo = "certificato" // the recipient's domain is managed by a PEC gestore
	TipoEsterno     Tipo = "esterno"     // an ordinary mailbox
)

// Recipient is one destinatario of the original message.
type Recipient struct {
	Address string
	Tipo    Tipo
}

// Event is one operation the log must keep (RFC 6109 §2.3), or one action of
// the archive itself. The ledger stores it exactly as given: the caller fixes
// the riferimento temporale of the transaction.
type Event struct {
	// Kind is what happened.
	Kind Kind
	// Identificativo is the PEC msgid of the message the event is about
	// (the busta di trasporto's Message-ID, daticert <identificativo>).
	Identificativo string
	// ClientMessageID is the Message-ID the sender's client set, which the
	// gestore replaced (X-Riferimento-Message-ID, daticert <msgid>).
	ClientMessageID string
	// Time is the riferimento temporale of the transaction. It is stored in
	// UTC with nanoseconds.
	Time time.Time
	// Mittente is the sender of the original message (the SMTP reverse path).
	Mittente string
	// Destinatari are the recipients of the original message.
	Destinatari []Recipient
	// Oggetto is the subject of the original message.
	Oggetto string
	// Related holds the identificativi of the messages the event generated
	// (ricevute, avvisi, buste), in the form of the identificativo: the
	// msg-id without angle brackets (see NormalizeRelated).
	Related []string
	// Gestore names the gestore that emitted the message the event is about.
	Gestore string
	// SHA256 is the SHA-256 of the signed message the event produced or
	// received, in the exact bytes that were sent or that arrived: without
	// the trace fields (Received, Return-Path, Delivered-To) the receiving
	// gestore adds when it stores the message in a mailbox.
	SHA256 []byte
	// ArchiveKey is where that message is kept in the archive, if it is.
	ArchiveKey string
	// Actor is who caused a system event (an operator, a titolare, an
	// auditor); empty for events the server causes by itself.
	Actor string
	// Details holds further facts named by lower-case keys
	// (consegna, errore, tipo_ricevuta, virus, tree_size, …).
	Details map[string]string
}

// Limits on one event, far above anything a real transaction needs, so that a
// bad caller cannot make one entry unbounded.
const (
	MaxFieldBytes  = 4096 // any single string field
	MaxRecipients  = 1000 // destinatari of one event
	MaxRelated     = 2000 // related identificativi of one event
	MaxDetails     = 64   // keys in Details
	MaxDetailBytes = 16 << 10
	// MaxEntryBytes bounds the canonical bytes of one entry: DecodeEntry
	// refuses anything longer.
	MaxEntryBytes = 1 << 20
)

// FieldError reports an event field that is missing or malformed.
type FieldError struct {
	Field  string // the field's name in the canonical encoding
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("field %s: %s", e.Field, e.Reason)
}

// Validate reports the first field that makes e unfit for the ledger, as a
// *FieldError naming it.
func (e *Event) Validate() error {
	if e.Kind == "" {
		return &FieldError{"kind", "missing"}
	}
	if !e.Kind.IsPEC() && !e.Kind.IsSystem() {
		return &FieldError{"kind", fmt.Sprintf("unknown kind %q", e.Kind)}
	}
	if e.Time.IsZero() {
		return &FieldError{"riferimento_temporale", "missing"}
	}
	if e.Time.Before(time.Unix(0, 0)) || e.Time.Year() > 9999 {
		return &FieldError{"riferimento_temporale", "outside 1970-9999"}
	}
	if e.Kind.IsPEC() {
		for _, f := range []struct{ name, v string }{
			{"identificativo", e.Identificativo},
			{"mittente", e.Mittente},
			{"gestore", e.Gestore},
		} {
			if f.v == "" {
				return &FieldError{f.name, "missing"}
			}
		}
		if len(e.Destinatari) == 0 {
			return &FieldError{"destinatari", "missing"}
		}
	}
	switch e.Kind {
	case KindQuery, KindExport, KindPolicyChange, KindLegalHold:
		if e.Actor == "" {
			return &FieldError{"actor", "missing"}
		}
	case KindLoginFailures:
		if err := validLoginFailures(e.Details); err != nil {
			return err
		}
	}
	strs := []struct{ name, v string }{
		{"identificativo", e.Identificativo},
		{"client_message_id", e.ClientMessageID},
		{"mittente", e.Mittente},
		{"oggetto", e.Oggetto},
		{"gestore", e.Gestore},
		{"archive_key", e.ArchiveKey},
		{"actor", e.Actor},
	}
	for _, f := range strs {
		if err := checkString(f.name, f.v, MaxFieldBytes); err != nil {
			return err
		}
	}
	if len(e.Destinatari) > MaxRecipients {
		return &FieldError{"destinatari", fmt.Sprintf("%d recipients, more than %d", len(e.Destinatari), MaxRecipients)}
	}
	// Field names are formatted only for an error: Validate runs on every
	// append.
	for i, r := range e.Destinatari {
		if r.Address == "" {
			return &FieldError{fmt.Sprintf("destinatari[%d].indirizzo", i), "missing"}
		}
		if err := checkString("", r.Address, MaxFieldBytes); err != nil {
			err.Field = fmt.Sprintf("destinatari[%d].indirizzo", i)
			return err
		}
		if r.Tipo != TipoCertificato && r.Tipo != TipoEsterno {
			return &FieldError{fmt.Sprintf("destinatari[%d].tipo", i), fmt.Sprintf("%q is neither certificato nor esterno", r.Tipo)}
		}
	}
	if len(e.Related) > MaxRelated {
		return &FieldError{"related", fmt.Sprintf("%d identificativi, more than %d", len(e.Related), MaxRelated)}
	}
	for i, r := range e.Related {
		if r == "" {
			return &FieldError{fmt.Sprintf("related[%d]", i), "empty"}
		}
		if err := checkString("", r, MaxFieldBytes); err != nil {
			err.Field = fmt.Sprintf("related[%d]", i)
			return err
		}
	}
	if e.SHA256 != nil && len(e.SHA256) != 32 {
		return &FieldError{"sha256", fmt.Sprintf("%d bytes, want 32", len(e.SHA256))}
	}
	if len(e.Details) > MaxDetails {
		return &FieldError{"details", fmt.Sprintf("%d keys, more than %d", len(e.Details), MaxDetails)}
	}
	for k, v := range e.Details {
		if !validDetailKey(k) {
			return &FieldError{"details", fmt.Sprintf("key %q: want 1-64 of [a-z0-9_-]", k)}
		}
		if v == "" {
			return &FieldError{"details." + k, "empty"}
		}
		if err := checkString("", v, MaxDetailBytes); err != nil {
			err.Field = "details." + k
			return err
		}
	}
	return nil
}

// checkString returns a *FieldError for field if v is too long, not UTF-8
// or holds a NUL, and nil (a nil *FieldError) otherwise.
func checkString(field, v string, max int) *FieldError {
	if len(v) > max {
		return &FieldError{field, fmt.Sprintf("%d bytes, more than %d", len(v), max)}
	}
	if !utf8.ValidString(v) {
		return &FieldError{field, "not valid UTF-8"}
	}
	if strings.IndexByte(v, 0) >= 0 {
		return &FieldError{field, "contains a NUL byte"}
	}
	return nil
}

func validDetailKey(k string) bool {
	if len(k) == 0 || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ErrNotCanonical is wrapped by decoding errors for bytes that parse but are
// not the one canonical encoding of their content.
var ErrNotCanonical = errors.New("not in canonical form")

// validLoginFailures checks the details of a login-failures event: a
// remote, a first attempt, and counts in plain decimal of which at least
// one is positive.
func validLoginFailures(d map[string]string) *FieldError {
	if d[DetailLoginRemote] == "" {
		return &FieldError{"details." + DetailLoginRemote, "missing"}
	}
	if _, err := time.Parse(time.RFC3339Nano, d[DetailLoginFrom]); err != nil {
		return &FieldError{"details." + DetailLoginFrom, "missing or not an RFC 3339 time"}
	}
	positive := false
	for _, k := range []string{DetailLoginFailed, DetailLoginThrottled} {
		v, ok := d[k]
		if !ok {
			continue
		}
		if v == "" || len(v) > 18 || v[0] == '0' || strings.Trim(v, "0123456789") != "" {
			return &FieldError{"details." + k, "not a positive decimal count"}
		}
		positive = true
	}
	if !positive {
		return &FieldError{"details." + DetailLoginFailed, "missing: neither failed nor throttled attempts"}
	}
	return nil
}

// NormalizeRelated returns id in the one form Related holds: a msg-id
// without its angle brackets and surrounding white space, as the
// identificativo is written ("<opec1@pec.it>" and " opec1@pec.it " give
// "opec1@pec.it"). Writers normalise before Append; entries written before
// the rule may hold the bracketed form, which stays as it is (the bytes of
// an entry never change), so readers that show or compare related
// identificativi pass them through NormalizeRelated too.
func NormalizeRelated(id string) string {
	id = strings.TrimSpace(id)
	if len(id) >= 2 && id[0] == '<' && id[len(id)-1] == '>' {
		id = strings.TrimSpace(id[1 : len(id)-1])
	}
	return id
}
