package pec

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/rome"
	"github.com/custode/custode/pec/smime"
)

// An IDSource makes the unique part of PEC msgids (RFC 6109 §2.2.1): the
// string before "@" in "[alphanumeric string]@[provider mail domain]".
//
// NewID must return a different value on every call, across every process
// that signs for the same mail domain, for as long as the messages are kept;
// it may contain ASCII letters, digits and dots (not at either end, never
// two in a row), at most 128 bytes. at is the riferimento temporale of the
// message the msgid is for; a source may use it to make identifiers sortable
// and readable, as the gestori in service do, but must not rely on it for
// uniqueness.
type IDSource interface {
	NewID(at time.Time) (string, error)
}

// IDFunc adapts a function to the IDSource interface.
type IDFunc func(at time.Time) (string, error)

// NewID calls f.
func (f IDFunc) NewID(at time.Time) (string, error) { return f(at) }

// RandomIDs returns an IDSource whose identifiers are the riferimento
// temporale in UTC (yyyymmddhhmmss), a dot and 128 random bits read from r
// in hexadecimal, for example "20141114172632.3f9a…". A nil r means
// crypto/rand.Reader. The source is safe for concurrent use if r is.
func RandomIDs(r io.Reader) IDSource {
	if r == nil {
		r = rand.Reader
	}
	return IDFunc(func(at time.Time) (string, error) {
		var b [16]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("reading randomness: %w", err)
		}
		return at.UTC().Format("20060102150405") + "." + hex.EncodeToString(b[:]), nil
	})
}

// validID reports whether id can be the local part of a PEC msgid.
func validID(id string) bool {
	if id == "" || len(id) > 128 || id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, "..") {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.') {
			return false
		}
	}
	return true
}

// A Gestore is a PEC provider as a signer of messages: its name as
// daticert's gestore-emittente, its mail domain, its signing identity and
// its source of msgids. It builds every busta, ricevuta and avviso of RFC
// 6109 §3. Its methods do no I/O and never read the clock: the riferimento
// temporale is the caller's, in each Transaction. A Gestore is immutable and
// safe for concurrent use if its IDSource is. Make one with NewGestore: the
// zero Gestore builds nothing.
type Gestore struct {
	name   string
	domain string
	signer *smime.Signer
	ids    IDSource
	rome   *time.Location
}

// NewGestore returns the Gestore called name (the gestore-emittente written
// in every daticert, for example "Custode PEC S.p.A.") whose mail domain is
// domain. Every message it builds is from posta-certificata@domain and signed
// by signer, whose certificate must carry that address (RFC 6109 §2.1, §5.5);
// its msgids are ids' identifiers followed by "@" and domain.
func NewGestore(name, domain string, signer *smime.Signer, ids IDSource) (*Gestore, error) {
	name, domain = strings.TrimSpace(name), strings.ToLower(strings.TrimSpace(domain))
	switch {
	case name == "":
		return nil, errors.New("pec: gestore: the name (gestore-emittente) is empty")
	case domain == "" || strings.ContainsAny(domain, "@ <>\"") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, "."):
		return nil, fmt.Errorf("pec: gestore: invalid mail domain %q", domain)
	case signer == nil || signer.Certificate == nil || signer.Key == nil:
		return nil, errors.New("pec: gestore: a signer with key and certificate is required")
	case ids == nil:
		return nil, errors.New("pec: gestore: an IDSource is required")
	}
	if err := smime.CheckSignerAddress(signer.Certificate, "posta-certificata@"+domain); err != nil {
		return nil, fmt.Errorf("pec: gestore: %w", err)
	}
	loc, err := rome.Location()
	if err != nil {
		return nil, fmt.Errorf("pec: gestore: loading Europe/Rome: %w", err)
	}
	return &Gestore{name: name, domain: domain, signer: signer, ids: ids, rome: loc}, nil
}

// Name returns the gestore's name, the gestore-emittente of its daticert.
func (g *Gestore) Name() string { return g.name }

// Domain returns the gestore's mail domain.
func (g *Gestore) Domain() string { return g.domain }

// Address returns posta-certificata@domain, the From address of every
// message the gestore signs.
func (g *Gestore) Address() string { return "posta-certificata@" + g.domain }

// NewMsgID returns a new PEC msgid, "[identifier]@[domain]" without angle
// brackets, for a message whose riferimento temporale is at.
func (g *Gestore) NewMsgID(at time.Time) (string, error) {
	if err := g.usable(); err != nil {
		return "", fmt.Errorf("pec: %w", err)
	}
	id, err := g.newMsgID(at)
	if err != nil {
		return "", fmt.Errorf("pec: %w", err)
	}
	return id, nil
}

// newMsgID is NewMsgID with an error for callers to prefix.
func (g *Gestore) newMsgID(at time.Time) (string, error) {
	id, err := g.ids.NewID(at)
	if err != nil {
		return "", fmt.Errorf("msgid: %w", err)
	}
	if !validID(id) {
		return "", fmt.Errorf("msgid: the IDSource returned %q, not a string of letters, digits and dots", truncate(id, 40))
	}
	return id + "@" + g.domain, nil
}

// Built is a message a Gestore built and signed.
type Built struct {
	// Kind is the type of message.
	Kind Kind
	// MessageID is the message's own PEC msgid, without angle brackets:
	// for a busta di trasporto the identificativo of the transaction, for
	// a busta di anomalia the Message-ID of the message it wraps, for a
	// ricevuta or avviso a new msgid.
	MessageID string
	// Message is the complete signed message (RFC 5322, CRLF line endings,
	// multipart/signed with a SHA-256 CMS signature).
	Message []byte
	// Daticert is the dati di certificazione attached as daticert.xml;
	// nil for the busta di anomalia, which carries none.
	Daticert *daticert.Daticert
}
