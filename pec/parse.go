package pec

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

// DefaultMaxMessageSize is the message size Parse accepts when
// ParseOptions.MaxMessageSize is zero: 64 MiB. PEC caps a message at 30 MB
// (RFC 6109 §3.1.1); base64 and a busta wrapping the original bring that to
// about 41 MB, and the bound leaves room above. It is the bound of
// pec/smime's verification too.
const DefaultMaxMessageSize = 64 << 20

// DefaultMaxDepth is the MIME nesting Parse accepts when
// ParseOptions.MaxDepth is zero. The message is level 1; a busta nests the
// user's message at level 4 and a busta forwarded by a mailing list at
// level 6; each PEC message forwarded inside adds about four.
const DefaultMaxDepth = 64

// Errors Parse wraps when it refuses a message; match them with errors.Is.
var (
	// ErrTooLarge: the message is larger than the size limit.
	ErrTooLarge = errors.New("message too large")
	// ErrTooDeep: MIME entities are nested deeper than the limit.
	ErrTooDeep = errors.New("MIME structure nested too deep")
	// ErrTooManyParts: the message holds more MIME entities than a
	// message can reasonably hold (10,000).
	ErrTooManyParts = errors.New("too many MIME parts")
	// ErrMalformed: the message cannot be read as a mail message, or its
	// PEC structure is broken (a truncated multipart/signed, for example).
	ErrMalformed = errors.New("malformed message")
)

// ParseOptions bounds what Parse reads. The zero value applies the
// defaults.
type ParseOptions struct {
	// MaxMessageSize bounds the message in bytes; zero means
	// DefaultMaxMessageSize.
	MaxMessageSize int64
	// MaxDepth bounds the MIME nesting; zero means DefaultMaxDepth.
	MaxDepth int
}

func (o ParseOptions) maxSize() int64 {
	if o.MaxMessageSize > 0 {
		return o.MaxMessageSize
	}
	return DefaultMaxMessageSize
}

func (o ParseOptions) maxDepth() int {
	if o.MaxDepth > 0 {
		return o.MaxDepth
	}
	return DefaultMaxDepth
}

// Header holds the header fields of a PEC message that matter, unfolded.
// Field names are matched case-insensitively, as real gestori vary their
// case (X-Tiporicevuta).
type Header struct {
	Subject   string    `json:"subject"` // RFC 2047 encoded words decoded
	From      string    `json:"from"`
	Sender    string    `json:"sender,omitempty"`
	To        string    `json:"to,omitempty"`
	Cc        string    `json:"cc,omitempty"`
	ReplyTo   string    `json:"reply_to,omitempty"`
	Date      time.Time `json:"date,omitzero"` // zero when absent or unreadable
	MessageID string    `json:"message_id,omitempty"`

	Ricevuta             string `json:"x_ricevuta,omitempty"`
	Trasporto            string `json:"x_trasporto,omitempty"`
	RiferimentoMessageID string `json:"x_riferimento_message_id,omitempty"`
	TipoRicevuta         string `json:"x_tipo_ricevuta,omitempty"`
	VerificaSicurezza    string `json:"x_verifica_sicurezza,omitempty"`
	Mittente             string `json:"x_mittente,omitempty"`
}

// Message is a parsed PEC message, or a message found not to be one.
type Message struct {
	// Kind is the type of message, from its X-Trasporto and X-Ricevuta
	// fields, cross-checked with its daticert.
	Kind Kind
	// Header holds the fields that matter.
	Header Header
	// Forwarded reports that the PEC message was found inside another
	// message, as an attached message/rfc822 (a mailing list, a user's
	// forward); everything else describes the inner message.
	Forwarded bool
	// Signed reports that the message is multipart/signed with a PKCS #7
	// signature part.
	Signed bool
	// Micalg is the micalg parameter of multipart/signed, as written.
	Micalg string
	// Signer is the signer certificate the signature carries, not
	// verified (see Verify); nil when unsigned or unreadable.
	Signer *x509.Certificate
	// SigningTime is the signature's signingTime attribute, the
	// signer's own claim; zero when absent.
	SigningTime time.Time
	// Digest is the digest algorithm of the signature.
	Digest crypto.Hash
	// Daticert is the dati di certificazione; nil when the message has
	// no daticert.xml or it does not parse (see Problems).
	Daticert *daticert.Daticert
	// DaticertXML is daticert.xml as carried, transfer encoding removed.
	DaticertXML []byte
	// Original is postacert.eml, the message the busta or ricevuta
	// carries, transfer encoding removed; nil when absent.
	Original []byte
	// Raw is the PEC message itself: the whole input, or the attached
	// message when Forwarded. It shares memory with the input.
	Raw []byte
	// Problems lists what is inconsistent or missing: fields that
	// contradict each other or the daticert, a missing signature, a
	// daticert that does not parse. Empty for a well-formed message.
	Problems []string
}

// Consistent reports whether m has no Problems.
func (m *Message) Consistent() bool { return len(m.Problems) == 0 }

// Verify checks m's signature with pec/smime (see smime.Verify), over Raw,
// so that a forwarded busta is verified as its gestore signed it.
func (m *Message) Verify(opts smime.VerifyOptions) (*smime.Result, error) {
	if !m.Signed {
		return nil, fmt.Errorf("pec: verify: %w", smime.ErrNotSigned)
	}
	return smime.Verify(m.Raw, opts)
}

func (m *Message) problemf(format string, args ...any) {
	m.Problems = append(m.Problems, fmt.Sprintf(format, args...))
}

// ParseReader reads a message from r, up to the size limit, and parses it
// as Parse does. It stops reading, and fails with an error wrapping
// ErrTooLarge, as soon as the limit is passed, so memory stays bounded
// whatever r holds.
func ParseReader(r io.Reader, opts ParseOptions) (*Message, error) {
	limit := opts.maxSize()
	msg, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("pec: reading the message: %w", err)
	}
	if int64(len(msg)) > limit {
		return nil, fmt.Errorf("pec: %w: more than %d bytes", ErrTooLarge, limit)
	}
	return Parse(msg, opts)
}

// Parse reads a message and tells what PEC message it is.
//
// Classification is from the header first: X-Trasporto (busta di trasporto,
// busta di anomalia) or X-Ricevuta (every ricevuta and avviso), then
// X-VerificaSicurezza and the daticert errore for the virus avvisi, and the
// presence of postacert.eml and of ".hash" parts for the three forms of the
// ricevuta di avvenuta consegna. The daticert cross-checks the header: any
// disagreement, or a missing piece the rules require, is listed in
// Message.Problems rather than silently resolved; a message whose PEC fields
// contradict each other is KindUnknown. A message with no PEC field but a
// daticert in a multipart/signed body is classified from the daticert, with
// a Problem saying so. A message that is not PEC but carries one as an
// attachment (a busta forwarded by a mailing list) yields the attached one,
// Forwarded. Anything else is KindNotPEC, with no error.
//
// Parse accepts what real gestori send: field names in any case, a missing
// X-TipoRicevuta, multipart/alternative text, micalg=sha1, RFC 2047
// subjects, LF or CRLF line endings, base64, quoted-printable and identity
// transfer encodings. It does not verify the signature: see Message.Verify
// and Inspect.
//
// Parse works on msg in place: memory beyond msg is bounded by the decoded
// daticert and original (at most the size of msg) and a small cost per MIME
// entity. It refuses, with an error wrapping ErrTooLarge, ErrTooDeep,
// ErrTooManyParts or ErrMalformed, a message over the size limit, nested
// deeper than the depth limit, holding more than 10,000 entities, that does
// not start with a header field, or whose multipart/signed structure is
// truncated. It never panics.
func Parse(msg []byte, opts ParseOptions) (*Message, error) {
	if limit := opts.maxSize(); int64(len(msg)) > limit {
		return nil, fmt.Errorf("pec: %w: %d bytes, the limit is %d", ErrTooLarge, len(msg), limit)
	}
	if len(bytes.TrimSpace(msg)) == 0 {
		return nil, fmt.Errorf("pec: %w: the message is empty", ErrMalformed)
	}
	w := &walker{maxDepth: opts.maxDepth()}
	root, err := w.parse(msg, 1)
	if err != nil {
		return nil, limitError(err, w.maxDepth)
	}
	if isPEC(root.header) || (root.typ == "multipart/signed" && len(findParts(root.signedContent()).daticert) > 0) {
		return readPEC(root, false)
	}
	if inner, err := w.findForwarded(root); err != nil {
		return nil, limitError(err, w.maxDepth)
	} else if inner != nil {
		return readPEC(inner, true)
	}
	return &Message{Kind: KindNotPEC, Header: readHeader(root.header), Raw: msg}, nil
}

// limitError maps the walker's errors to the exported ones.
func limitError(err error, maxDepth int) error {
	switch {
	case errors.Is(err, errTooDeep):
		return fmt.Errorf("pec: %w: MIME entities nested deeper than %d levels", ErrTooDeep, maxDepth)
	case errors.Is(err, errTooManyEntities):
		return fmt.Errorf("pec: %w: more than %d MIME entities", ErrTooManyParts, maxEntities)
	case errors.Is(err, errNoHeader):
		return fmt.Errorf("pec: %w: not a mail message: it does not start with a header field", ErrMalformed)
	}
	return fmt.Errorf("pec: %w: %v", ErrMalformed, err)
}

// isPEC reports whether a header marks a PEC message.
func isPEC(h header) bool {
	return h.value(HeaderRicevuta) != "" || h.value(HeaderTrasporto) != ""
}

// findForwarded looks in the parts of e, and in the messages they attach,
// for a PEC message, and returns the first one found.
func (w *walker) findForwarded(e *entity) (*entity, error) {
	for _, p := range e.parts {
		if f, err := w.findForwarded(p); f != nil || err != nil {
			return f, err
		}
	}
	inner, err := w.embedded(e)
	if err != nil || inner == nil {
		return nil, err
	}
	if isPEC(inner.header) {
		return inner, nil
	}
	return w.findForwarded(inner)
}

// embedded returns the message a message/rfc822 entity carries, decoding a
// transfer-encoded one, or nil.
func (w *walker) embedded(e *entity) (*entity, error) {
	if e.embedded != nil || (e.typ != "message/rfc822" && e.typ != "message/global") {
		return e.embedded, nil
	}
	body, err := e.decodeBody()
	if err != nil || len(body) == 0 {
		return nil, nil
	}
	inner, err := w.parse(body, e.depth+1)
	if errors.Is(err, errNoHeader) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.embedded = inner
	return inner, nil
}

// signedContent returns the entity a multipart/signed e signs, or e itself.
func (e *entity) signedContent() *entity {
	if e.typ == "multipart/signed" && len(e.parts) > 0 {
		return e.parts[0]
	}
	return e
}

// pecParts are the parts of a PEC message's signed content.
type pecParts struct {
	daticert []*entity
	original []*entity
}

// findParts finds daticert.xml and postacert.eml among the parts of e,
// whatever the multipart nesting, without looking inside attached messages.
func findParts(e *entity) pecParts {
	var pp pecParts
	var walk func(*entity)
	walk = func(e *entity) {
		if strings.HasPrefix(e.typ, "multipart/") {
			for _, p := range e.parts {
				walk(p)
			}
			return
		}
		name := strings.ToLower(strings.TrimSpace(e.filename()))
		switch {
		case name == "daticert.xml":
			pp.daticert = append(pp.daticert, e)
		case name == "postacert.eml" || e.typ == "message/rfc822" || e.typ == "message/global":
			pp.original = append(pp.original, e)
		}
	}
	if strings.HasPrefix(e.typ, "multipart/") {
		walk(e)
	}
	return pp
}

// readHeader extracts the fields that matter.
func readHeader(h header) Header {
	hd := Header{
		Subject:              oneLine(decodeWords(h.value("Subject"))),
		From:                 h.value("From"),
		Sender:               h.value("Sender"),
		To:                   h.value("To"),
		Cc:                   h.value("Cc"),
		ReplyTo:              h.value("Reply-To"),
		MessageID:            h.value("Message-ID"),
		Ricevuta:             h.value(HeaderRicevuta),
		Trasporto:            h.value(HeaderTrasporto),
		RiferimentoMessageID: h.value(HeaderRiferimentoMessageID),
		TipoRicevuta:         h.value(HeaderTipoRicevuta),
		VerificaSicurezza:    h.value(HeaderVerificaSicurezza),
		Mittente:             h.value(HeaderMittente),
	}
	if d := h.value("Date"); d != "" {
		if t, err := mail.ParseDate(d); err == nil {
			hd.Date = t
		}
	}
	return hd
}

// readPEC reads the PEC message e.
func readPEC(e *entity, forwarded bool) (*Message, error) {
	m := &Message{Raw: e.raw, Forwarded: forwarded, Header: readHeader(e.header)}
	content := e
	if e.typ == "multipart/signed" {
		switch {
		case !e.closed:
			return nil, fmt.Errorf("pec: %w: multipart/signed has no closing boundary (truncated message?)", ErrMalformed)
		case len(e.parts) != 2:
			return nil, fmt.Errorf("pec: %w: multipart/signed has %d parts, want 2", ErrMalformed, len(e.parts))
		}
		content = e.parts[0]
		m.Micalg = e.params["micalg"]
		m.readSignature(e.parts[1])
	} else {
		m.problemf("the message is not signed: it is %s, not multipart/signed", e.typ)
	}
	pp := findParts(content)
	if len(pp.daticert) > 1 {
		m.problemf("%d daticert.xml parts; the first is read", len(pp.daticert))
	}
	if len(pp.daticert) > 0 {
		xml, err := pp.daticert[0].decodeBody()
		switch {
		case err != nil:
			m.problemf("daticert.xml: %v", err)
		default:
			m.DaticertXML = xml
			if d, err := daticert.Parse(xml); err != nil {
				m.problemf("daticert.xml does not parse: %v", err)
			} else {
				m.Daticert = d
			}
		}
	}
	if len(pp.original) > 1 {
		m.problemf("%d attached messages; the first is read as postacert.eml", len(pp.original))
	}
	var original *entity
	if len(pp.original) > 0 {
		original = pp.original[0]
		body, err := original.decodeBody()
		if err != nil {
			m.problemf("postacert.eml: %v", err)
		} else {
			m.Original = body
		}
	}
	m.classify(original)
	return m, nil
}

// readSignature reads the signature part of a multipart/signed message.
func (m *Message) readSignature(p *entity) {
	if p.typ != "application/pkcs7-signature" && p.typ != "application/x-pkcs7-signature" {
		m.problemf("the second part of multipart/signed is %s, not a PKCS #7 signature", p.typ)
		return
	}
	m.Signed = true
	// Base64 takes four bytes for three, plus line breaks: a body more
	// than twice the bound cannot decode within it.
	if len(p.body) > 2*smime.MaxSignatureSize {
		m.problemf("the signature part is %d bytes, too large to be read", len(p.body))
		return
	}
	der, err := p.decodeBody()
	if err != nil {
		m.problemf("signature: %v", err)
		return
	}
	sig, err := smime.ParseSignature(der)
	if err != nil {
		m.problemf("the signature does not parse: %v", err)
		return
	}
	m.Signer, m.SigningTime, m.Digest = sig.Signer, sig.SigningTime, sig.Digest
}

// classify sets m.Kind from the header, checking it against the daticert
// and the structure. original is the postacert.eml entity, or nil.
func (m *Message) classify(original *entity) {
	ric := strings.ToLower(m.Header.Ricevuta)
	tra := strings.ToLower(m.Header.Trasporto)
	dc := m.Daticert
	switch {
	case ric != "" && tra != "":
		m.problemf("the message has both X-Ricevuta (%s) and X-Trasporto (%s)", m.Header.Ricevuta, m.Header.Trasporto)
		m.Kind = KindUnknown
		return
	case tra == "posta-certificata":
		m.Kind = KindBustaTrasporto
	case tra == "errore":
		m.Kind = KindBustaAnomalia
	case tra != "":
		m.problemf("unknown X-Trasporto value %q", truncate(m.Header.Trasporto, 60))
		m.Kind = KindUnknown
		return
	case ric != "":
		var ok bool
		if m.Kind, ok = kindOfTipo(daticert.Tipo(ric)); !ok {
			m.problemf("unknown X-Ricevuta value %q", truncate(m.Header.Ricevuta, 60))
			m.Kind = KindUnknown
			return
		}
	case dc != nil:
		m.Kind, _ = kindOfTipo(dc.Tipo)
		m.problemf("no X-Ricevuta or X-Trasporto field: classified from daticert.xml (tipo %s)", dc.Tipo)
	default:
		m.Kind = KindUnknown
		return
	}

	virusHeader := strings.EqualFold(m.Header.VerificaSicurezza, "errore")
	virusDaticert := dc != nil && dc.Errore == daticert.ErroreVirus
	switch m.Kind {
	case KindNonAccettazione, KindMancataConsegna:
		if virusHeader || virusDaticert {
			if m.Kind == KindNonAccettazione {
				m.Kind = KindNonAccettazioneVirus
			} else {
				m.Kind = KindMancataConsegnaVirus
			}
		}
		if virusHeader && dc != nil && !virusDaticert {
			m.problemf("X-VerificaSicurezza says errore but the daticert errore is %s, not virus", dc.Errore)
		}
	case KindConsegnaCompleta:
		m.Kind = m.consegnaForm(original)
	}

	ki := rules(m.Kind)
	if m.Kind != KindBustaAnomalia {
		switch {
		case dc == nil && m.DaticertXML == nil:
			m.problemf("no daticert.xml, which every %s carries", ki.name)
		case dc != nil && dc.Tipo != ki.tipo:
			m.problemf("the header says %s but the daticert tipo is %s", ki.name, dc.Tipo)
		}
	}
	if dc != nil && m.Header.RiferimentoMessageID != "" && dc.MessageID != "" &&
		normalizeMsgID(dc.MessageID) != normalizeMsgID(m.Header.RiferimentoMessageID) {
		m.problemf("X-Riferimento-Message-ID %s differs from the daticert msgid %s", m.Header.RiferimentoMessageID, dc.MessageID)
	}
	if !strings.HasPrefix(strings.ToUpper(m.Header.Subject), strings.TrimSpace(ki.prefix)) {
		m.problemf("the Subject does not start with %q", strings.TrimSpace(ki.prefix))
	}
	switch m.Kind {
	case KindBustaTrasporto:
		if original == nil {
			m.problemf("the busta di trasporto carries no postacert.eml")
		}
		if dc != nil && m.Header.TipoRicevuta != "" && dc.Receipt != "" &&
			!strings.EqualFold(m.Header.TipoRicevuta, string(dc.Receipt)) {
			m.problemf("X-TipoRicevuta %s differs from the daticert ricevuta %s", m.Header.TipoRicevuta, dc.Receipt)
		}
	case KindBustaAnomalia:
		if original == nil {
			m.problemf("the busta di anomalia carries no message")
		}
	case KindNonAccettazione, KindNonAccettazioneVirus, KindPreavvisoMancataConsegna, KindRilevazioneVirus:
		if original != nil {
			m.problemf("the %s carries the original message, which the rules exclude", ki.name)
		}
	}
}

// consegnaForm tells the form of a ricevuta di avvenuta consegna: sintetica
// without the original, breve when the daticert says so or the original's
// attachments are hashes, completa otherwise.
func (m *Message) consegnaForm(original *entity) Kind {
	var asked daticert.ReceiptType
	if m.Daticert != nil {
		asked = m.Daticert.Receipt
	}
	if original == nil {
		return KindConsegnaSintetica
	}
	if asked == daticert.ReceiptSintetica {
		m.problemf("the daticert ricevuta is sintetica but the ricevuta carries the original")
	}
	hashed := hasHashParts(original, m.Original)
	switch {
	case asked == daticert.ReceiptBreve:
		return KindConsegnaBreve
	case hashed:
		if asked == daticert.ReceiptCompleta {
			m.problemf("the daticert ricevuta is completa but the original's attachments are replaced by %s files", HashSuffix)
		}
		return KindConsegnaBreve
	}
	return KindConsegnaCompleta
}

// hasHashParts reports whether the original (entity e, decoded body b)
// holds a part a breve put in place of an attachment.
func hasHashParts(e *entity, b []byte) bool {
	inner := e.embedded
	if inner == nil {
		if len(b) == 0 {
			return false
		}
		w := &walker{maxDepth: DefaultMaxDepth}
		var err error
		if inner, err = w.parse(b, 1); err != nil {
			return false
		}
	}
	var walk func(*entity) bool
	walk = func(e *entity) bool {
		if isHashPart(e) {
			return true
		}
		for _, p := range e.parts {
			if walk(p) {
				return true
			}
		}
		return false
	}
	return walk(inner)
}

// kindOfTipo maps an X-Ricevuta value or daticert tipo to a kind: the
// variants (virus, forms of consegna) are resolved by the caller.
func kindOfTipo(t daticert.Tipo) (Kind, bool) {
	switch t {
	case daticert.TipoPostaCertificata:
		return KindBustaTrasporto, true
	case daticert.TipoAccettazione:
		return KindAccettazione, true
	case daticert.TipoNonAccettazione:
		return KindNonAccettazione, true
	case daticert.TipoPresaInCarico:
		return KindPresaInCarico, true
	case daticert.TipoAvvenutaConsegna:
		return KindConsegnaCompleta, true
	case daticert.TipoErroreConsegna:
		return KindMancataConsegna, true
	case daticert.TipoPreavvisoErroreConsegna:
		return KindPreavvisoMancataConsegna, true
	case daticert.TipoRilevazioneVirus:
		return KindRilevazioneVirus, true
	}
	return "", false
}

// normalizeMsgID returns a Message-ID value without angle brackets and
// surrounding space, for comparison.
func normalizeMsgID(s string) string {
	return strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "<>"))
}
