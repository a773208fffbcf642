package pec

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/smime"
)

// InspectOptions says what Inspect trusts and when it verifies. Roots and
// one of At and AtSigningTime are required: Inspect never reads the clock.
type InspectOptions struct {
	// Roots are the trusted root certificates.
	Roots []*x509.Certificate
	// Intermediates may complete the chain, in addition to those the
	// signature carries.
	Intermediates []*x509.Certificate
	// At is the time to check the certificates at, typically now.
	At time.Time
	// AtSigningTime checks the certificates at the signature's own
	// signingTime instead: for archived messages whose certificates have
	// since expired (the "--at signing-time" of custode pec inspect).
	AtSigningTime bool
	// AllowSHA1Certificates accepts certificate chains signed with SHA-1,
	// as the gestori certificates issued until about 2016 are.
	AllowSHA1Certificates bool
	// Index, if not nil, is the indice dei gestori in which the signer
	// certificate must be listed (RFC 6109 §2.2.2); the report names the
	// gestore found.
	Index *igpec.Index
	// Parse bounds the message.
	Parse ParseOptions
}

// The signature verdicts of a Report, and the exit status custode pec
// inspect gives each (Report.ExitCode).
const (
	// VerdictValid: the signature is intact, its certificate chains to
	// the given roots and was valid at the verification time, and it is
	// the From address's. Exit status 0.
	VerdictValid = "valid"
	// VerdictInvalid: the signature is broken: the signed content was
	// altered, the signature value does not verify, it cannot be parsed,
	// or its certificate is not the From address's. Exit status 1.
	VerdictInvalid = "invalid"
	// VerdictUntrusted: the signature is intact and is the From
	// address's, but nothing establishes trust in its certificate: it
	// does not chain to the given roots, was not valid at the
	// verification time, or is not in the given indice dei gestori.
	// Reasons say which. Exit status 3.
	VerdictUntrusted = "untrusted"
	// VerdictUnsigned: the message carries no signature. Exit status 4.
	VerdictUnsigned = "unsigned"
)

// HeaderRiproduzione marks a reproduction custode export makes from its
// log when the original ricevuta is not archived: it holds "log seq N".
const HeaderRiproduzione = "X-Riproduzione"

// ExitCode is the exit status of custode pec inspect for the report's
// verdict: 0 valid, 1 invalid, 3 untrusted, 4 unsigned (2 is a bad
// invocation).
func (r *Report) ExitCode() int {
	switch r.Signature.Verdict {
	case VerdictValid:
		return 0
	case VerdictUntrusted:
		return 3
	case VerdictUnsigned:
		return 4
	}
	return 1
}

// Report is what Inspect tells about a message. It marshals to JSON (the
// "--json" of custode pec inspect) and prints as text (WriteText).
type Report struct {
	Kind      Kind            `json:"kind"`
	KindName  string          `json:"kind_name"`
	Forwarded bool            `json:"forwarded,omitempty"`
	Header    Header          `json:"header"`
	Daticert  *DaticertReport `json:"daticert,omitempty"`
	Original  *OriginalReport `json:"original,omitempty"`
	Signature SignatureReport `json:"signature"`
	// Reproduction, when not nil, says the message is not PEC but a
	// reproduction from the log of a gestore running Custode.
	Reproduction *ReproductionReport `json:"reproduction,omitempty"`
	// Problems are the inconsistencies Parse found (Message.Problems).
	Problems []string `json:"problems,omitempty"`
}

// ReproductionReport describes a reproduction from the log: a message the
// gestore signs, in place of a ricevuta it no longer holds, carrying the
// ledger entry (entry.json) it reproduces.
type ReproductionReport struct {
	// Of is the X-Riproduzione field: "log seq N".
	Of string `json:"of"`
	// EntrySHA256 is the SHA-256 of the attached entry.json, hex; empty
	// when there is none.
	EntrySHA256 string `json:"entry_sha256,omitempty"`
	// Kind, Identificativo, RiferimentoTemporale and Gestore are read
	// from entry.json.
	Kind                 string `json:"kind,omitempty"`
	Identificativo       string `json:"identificativo,omitempty"`
	RiferimentoTemporale string `json:"riferimento_temporale,omitempty"`
	Gestore              string `json:"gestore,omitempty"`
}

// DaticertReport is the dati di certificazione, under the DTD's names.
type DaticertReport struct {
	Tipo             string         `json:"tipo"`
	Errore           string         `json:"errore"`
	Mittente         string         `json:"mittente"`
	Destinatari      []Destinatario `json:"destinatari"`
	Risposte         string         `json:"risposte,omitempty"`
	Oggetto          string         `json:"oggetto"`
	GestoreEmittente string         `json:"gestore_emittente"`
	Data             time.Time      `json:"data"` // in the zona the document states
	Identificativo   string         `json:"identificativo"`
	MsgID            string         `json:"msgid,omitempty"`
	Ricevuta         string         `json:"ricevuta,omitempty"`
	Consegna         string         `json:"consegna,omitempty"`
	Ricezione        []string       `json:"ricezione,omitempty"`
	ErroreEsteso     string         `json:"errore_esteso,omitempty"`
}

// Destinatario is a recipient in a DaticertReport.
type Destinatario struct {
	Address string `json:"address"`
	Tipo    string `json:"tipo"`
}

// OriginalReport describes postacert.eml.
type OriginalReport struct {
	Size      int    `json:"size"`
	SHA256    string `json:"sha256"`
	Subject   string `json:"subject,omitempty"`
	From      string `json:"from,omitempty"`
	MessageID string `json:"message_id,omitempty"`
}

// SignatureReport is the signature verdict and what it rests on.
type SignatureReport struct {
	Verdict string `json:"verdict"`
	// Reasons lists every check that failed.
	Reasons []string           `json:"reasons,omitempty"`
	Signer  *CertificateReport `json:"signer,omitempty"`
	// Chain names the certificates from the signer to the trusted root,
	// when the chain verified.
	Chain []string `json:"chain,omitempty"`
	// Gestore is the gestore the indice dei gestori lists the signer
	// under, when an index was given and lists it.
	Gestore string `json:"gestore,omitempty"`
	// Location says where the signed entity was found when it is not the
	// message itself: a busta forwarded or re-wrapped by a mailing list.
	Location      string    `json:"location,omitempty"`
	Digest        string    `json:"digest,omitempty"`
	Micalg        string    `json:"micalg,omitempty"`
	SigningTime   time.Time `json:"signing_time,omitzero"`
	VerifiedAt    time.Time `json:"verified_at,omitzero"`
	AtSigningTime bool      `json:"at_signing_time,omitempty"`
}

// CertificateReport describes a certificate.
type CertificateReport struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	Addresses []string  `json:"addresses,omitempty"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	SHA1      string    `json:"sha1"`
	SHA256    string    `json:"sha256"`
}

// Inspect parses msg (see Parse) and verifies its signature as opts says,
// and reports kind, header, dati di certificazione, original, signer and
// verdict. A signature that does not verify is a verdict in the Report, with
// its reasons, not an error: the error is for options that cannot be used
// and for messages Parse refuses.
func Inspect(msg []byte, opts InspectOptions) (*Report, error) {
	switch {
	case len(opts.Roots) == 0:
		return nil, errors.New("pec: inspect: no trusted roots")
	case opts.At.IsZero() && !opts.AtSigningTime:
		return nil, errors.New("pec: inspect: say when to verify: At or AtSigningTime")
	case !opts.At.IsZero() && opts.AtSigningTime:
		return nil, errors.New("pec: inspect: At and AtSigningTime both set")
	}
	m, err := Parse(msg, opts.Parse)
	if err != nil {
		return nil, err
	}
	r := &Report{
		Kind:      m.Kind,
		KindName:  m.Kind.Name(),
		Forwarded: m.Forwarded,
		Header:    m.Header,
		Problems:  m.Problems,
	}
	if d := m.Daticert; d != nil {
		dr := &DaticertReport{
			Tipo:             string(d.Tipo),
			Errore:           string(d.Errore),
			Mittente:         d.Mittente,
			Risposte:         d.ReplyTo,
			Oggetto:          d.Oggetto,
			GestoreEmittente: d.GestoreEmittente,
			Data:             d.Time,
			Identificativo:   d.Identificativo,
			MsgID:            d.MessageID,
			Ricevuta:         string(d.Receipt),
			Consegna:         d.Consegna,
			Ricezione:        d.Ricezione,
			ErroreEsteso:     d.ErroreEsteso,
		}
		if dr.Errore == "" {
			dr.Errore = "nessuno"
		}
		for _, ds := range d.Destinatari {
			dr.Destinatari = append(dr.Destinatari, Destinatario{Address: ds.Address, Tipo: string(ds.Tipo)})
		}
		r.Daticert = dr
	}
	if m.Original != nil {
		sum := sha256.Sum256(m.Original)
		or := &OriginalReport{Size: len(m.Original), SHA256: hex.EncodeToString(sum[:])}
		if h, _, err := splitHeader(m.Original); err == nil {
			or.Subject = oneLine(decodeWords(h.value("Subject")))
			or.From = h.value("From")
			or.MessageID = h.value("Message-ID")
		}
		r.Original = or
	}
	if m.Kind == KindNotPEC {
		if h, _, err := splitHeader(msg); err == nil && h.value(HeaderRiproduzione) != "" {
			r.Reproduction = reproductionReport(msg, h.value(HeaderRiproduzione), opts.Parse)
			r.KindName = "riproduzione dal log del gestore (non è un messaggio PEC)"
		}
	}
	r.Signature = verifySignature(msg, m, opts)
	return r, nil
}

// reproductionReport reads the entry.json a reproduction carries.
func reproductionReport(msg []byte, of string, opts ParseOptions) *ReproductionReport {
	rr := &ReproductionReport{Of: oneLine(of)}
	raw := attachmentNamed(msg, "entry.json", opts)
	if raw == nil {
		return rr
	}
	sum := sha256.Sum256(raw)
	rr.EntrySHA256 = hex.EncodeToString(sum[:])
	var e struct {
		Kind                 string `json:"kind"`
		Identificativo       string `json:"identificativo"`
		RiferimentoTemporale string `json:"riferimento_temporale"`
		Gestore              string `json:"gestore"`
	}
	if json.Unmarshal(raw, &e) == nil {
		rr.Kind, rr.Identificativo, rr.RiferimentoTemporale, rr.Gestore = e.Kind, e.Identificativo, e.RiferimentoTemporale, e.Gestore
	}
	return rr
}

// attachmentNamed returns the decoded body of the first part of msg,
// at any depth of multipart nesting, whose file name is name; nil if none.
func attachmentNamed(msg []byte, name string, opts ParseOptions) []byte {
	w := &walker{maxDepth: opts.maxDepth()}
	root, err := w.parse(msg, 1)
	if err != nil {
		return nil
	}
	var found []byte
	var walk func(e *entity)
	walk = func(e *entity) {
		for _, p := range e.parts {
			if found == nil {
				walk(p)
			}
		}
		if found == nil && len(e.parts) == 0 && strings.EqualFold(strings.TrimSpace(e.filename()), name) {
			if b, err := e.decodeBody(); err == nil {
				found = b
			}
		}
	}
	walk(root)
	return found
}

// nestedSigned finds, in msg, a multipart/signed entity below the top
// (a busta a mailing list wrapped in multipart/mixed with a footer, or
// a message attached to another), and returns it as a message to verify,
// with the From field of the message around it, and where it was found
// ("part 1 of multipart/mixed").
func nestedSigned(msg []byte, opts ParseOptions) ([]byte, string) {
	w := &walker{maxDepth: opts.maxDepth()}
	root, err := w.parse(msg, 1)
	if err != nil {
		return nil, ""
	}
	var walk func(e *entity, from, where string) ([]byte, string)
	walk = func(e *entity, from, where string) ([]byte, string) {
		for i, p := range e.parts {
			at := fmt.Sprintf("part %d of %s", i+1, e.typ)
			if where != "" {
				at = where + ", " + at
			}
			if p.typ == "multipart/signed" {
				out := append([]byte("From: "+from+"\r\n"), p.raw...)
				return out, at
			}
			if b, loc := walk(p, from, at); b != nil {
				return b, loc
			}
			if inner, err := w.embedded(p); err == nil && inner != nil {
				at += " (attached message)"
				if inner.typ == "multipart/signed" {
					return inner.raw, at
				}
				if b, loc := walk(inner, inner.header.value("From"), at); b != nil {
					return b, loc
				}
			}
		}
		return nil, ""
	}
	return walk(root, root.header.value("From"), "")
}

// verifySignature verifies the signature of m, parsed from msg, as opts
// says.
func verifySignature(msg []byte, m *Message, opts InspectOptions) SignatureReport {
	sr := SignatureReport{Micalg: m.Micalg, SigningTime: m.SigningTime, AtSigningTime: opts.AtSigningTime}
	signer := m.Signer
	if m.Digest != 0 {
		sr.Digest = m.Digest.String()
	}
	vo := smime.VerifyOptions{
		Roots:                 opts.Roots,
		Intermediates:         opts.Intermediates,
		CurrentTime:           opts.At,
		UseSigningTime:        opts.AtSigningTime,
		AllowSHA1Certificates: opts.AllowSHA1Certificates,
		MaxMessageSize:        opts.Parse.maxSize(),
		MaxDepth:              opts.Parse.maxDepth(),
	}
	var res *smime.Result
	var err error
	switch {
	case m.Signed:
		res, err = m.Verify(vo)
		if m.Forwarded {
			_, sr.Location = nestedSigned(msg, opts.Parse)
		}
	default:
		// Not signed where Parse looked: the message itself may still be
		// S/MIME (a reproduction, any signed mail), or hold the signed
		// busta deeper (a mailing list's multipart/mixed).
		res, err = smime.Verify(m.Raw, vo)
		if errors.Is(err, smime.ErrNotSigned) {
			nested, where := nestedSigned(m.Raw, opts.Parse)
			if nested == nil {
				sr.Verdict = VerdictUnsigned
				return sr
			}
			sr.Location = where
			res, err = smime.Verify(nested, vo)
		}
		if res != nil {
			sr.Micalg, sr.SigningTime = res.Micalg, res.SigningTime
			if res.Digest != 0 {
				sr.Digest = res.Digest.String()
			}
		}
	}
	if res != nil {
		signer = res.Signer
		sr.VerifiedAt = res.VerifiedAt
		for _, c := range res.Chain {
			sr.Chain = append(sr.Chain, c.Subject.String())
		}
	}
	if err != nil {
		var ve *smime.VerifyError
		if errors.As(err, &ve) {
			for _, r := range ve.Reasons {
				sr.Reasons = append(sr.Reasons, r.Error())
			}
		} else {
			sr.Reasons = append(sr.Reasons, err.Error())
		}
	}
	if signer != nil {
		sr.Signer = certificateReport(signer)
		if opts.Index != nil {
			p, err := opts.Index.ProviderByCertificate(signer)
			if err != nil {
				sr.Reasons = append(sr.Reasons, "indice dei gestori: "+err.Error())
			} else {
				sr.Gestore = p.Name
			}
		}
	}
	sr.Verdict = verdict(res, err, len(sr.Reasons) > 0)
	return sr
}

// verdict classifies the outcome of smime.Verify: invalid when the
// signature is broken or cannot be read, untrusted when it is intact but
// its certificate is not trusted (chain, validity, indice dei gestori:
// failed is true when any such check failed).
func verdict(res *smime.Result, err error, failed bool) string {
	var ve *smime.VerifyError
	switch {
	case err == nil && !failed:
		return VerdictValid
	case err != nil && !errors.As(err, &ve):
		return VerdictInvalid // unreadable
	case err != nil:
		for _, r := range ve.Reasons {
			if errors.Is(r, smime.ErrContentMismatch) || errors.Is(r, smime.ErrInvalidSignature) || errors.Is(r, smime.ErrSignerMismatch) ||
				!(errors.Is(r, smime.ErrUntrusted) || errors.Is(r, smime.ErrExpired)) {
				return VerdictInvalid
			}
		}
	}
	return VerdictUntrusted
}

func certificateReport(c *x509.Certificate) *CertificateReport {
	s1 := sha1.Sum(c.Raw)
	s256 := sha256.Sum256(c.Raw)
	return &CertificateReport{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    c.SerialNumber.Text(16),
		Addresses: smime.CertificateAddresses(c),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		SHA1:      colonHex(s1[:]),
		SHA256:    colonHex(s256[:]),
	}
}

// colonHex writes b as upper-case hexadecimal pairs separated by colons, as
// openssl prints fingerprints.
func colonHex(b []byte) string {
	s := strings.ToUpper(hex.EncodeToString(b))
	var out strings.Builder
	for i := 0; i < len(s); i += 2 {
		if i > 0 {
			out.WriteByte(':')
		}
		out.WriteString(s[i : i+2])
	}
	return out.String()
}

// verdictNote explains a verdict on the text report's line.
var verdictNote = map[string]string{
	VerdictInvalid:   " (the signature is broken: the message was altered or not signed by this certificate)",
	VerdictUntrusted: " (the signature is intact, but its certificate is not trusted: see the reasons)",
	VerdictUnsigned:  " (the message carries no signature)",
}

// String returns the report as WriteText prints it.
func (r *Report) String() string {
	var b strings.Builder
	_ = r.WriteText(&b)
	return b.String()
}

// WriteText prints the report for people, as custode pec inspect shows it:
// the kind, the header fields that matter, the dati di certificazione, the
// original, the signature verdict with its reasons, and the problems.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	kv := func(indent, k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s%-*s %s\n", indent, 26-len(indent), k+":", v)
		}
	}
	kind := r.KindName + " (" + string(r.Kind) + ")"
	if r.Reproduction != nil {
		kind = r.KindName
	}
	if r.Forwarded {
		kind += ", forwarded inside another message"
	}
	kv("", "Kind", kind)
	h := r.Header
	kv("", "Subject", h.Subject)
	kv("", "From", h.From)
	kv("", "To", h.To)
	kv("", "Cc", h.Cc)
	if !h.Date.IsZero() {
		kv("", "Date", h.Date.Format(time.RFC1123Z))
	}
	kv("", "Message-ID", h.MessageID)
	kv("", HeaderRicevuta, h.Ricevuta)
	kv("", HeaderTrasporto, h.Trasporto)
	kv("", HeaderRiferimentoMessageID, h.RiferimentoMessageID)
	kv("", HeaderTipoRicevuta, h.TipoRicevuta)
	kv("", HeaderVerificaSicurezza, h.VerificaSicurezza)
	kv("", HeaderMittente, h.Mittente)

	if d := r.Daticert; d != nil {
		b.WriteString("\nDati di certificazione (daticert.xml):\n")
		const in = "  "
		kv(in, "tipo", d.Tipo)
		kv(in, "errore", d.Errore)
		kv(in, "mittente", d.Mittente)
		for i, ds := range d.Destinatari {
			label := ""
			if i == 0 {
				label = "destinatari:"
			}
			fmt.Fprintf(&b, "%s%-24s %s (%s)\n", in, label, ds.Address, ds.Tipo)
		}
		kv(in, "risposte", d.Risposte)
		kv(in, "oggetto", d.Oggetto)
		kv(in, "gestore-emittente", d.GestoreEmittente)
		kv(in, "data", d.Data.Format("02/01/2006 15:04:05")+" ("+d.Data.Format("-0700")+")")
		kv(in, "identificativo", d.Identificativo)
		kv(in, "msgid", d.MsgID)
		kv(in, "ricevuta", d.Ricevuta)
		kv(in, "consegna", d.Consegna)
		kv(in, "ricezione", strings.Join(d.Ricezione, ", "))
		kv(in, "errore-esteso", d.ErroreEsteso)
	}
	if o := r.Original; o != nil {
		b.WriteString("\nOriginal message (postacert.eml):\n")
		kv("  ", "size", fmt.Sprintf("%d bytes", o.Size))
		kv("  ", "sha-256", o.SHA256)
		kv("  ", "subject", o.Subject)
		kv("  ", "from", o.From)
		kv("  ", "message-id", o.MessageID)
	}

	if rp := r.Reproduction; rp != nil {
		b.WriteString("\nReproduction from the gestore's log (custode export), not the original message:\n")
		kv("  ", HeaderRiproduzione, rp.Of)
		kv("  ", "kind", rp.Kind)
		kv("  ", "identificativo", rp.Identificativo)
		kv("  ", "riferimento temporale", rp.RiferimentoTemporale)
		kv("  ", "gestore", rp.Gestore)
		kv("  ", "entry.json sha-256", rp.EntrySHA256)
	}

	s := r.Signature
	b.WriteString("\nSignature: " + s.Verdict + verdictNote[s.Verdict] + "\n")
	kv("  ", "found at", s.Location)
	for _, reason := range s.Reasons {
		b.WriteString("  - " + reason + "\n")
	}
	if c := s.Signer; c != nil {
		kv("  ", "signer", c.Subject)
		kv("  ", "addresses", strings.Join(c.Addresses, ", "))
		kv("  ", "issuer", c.Issuer)
		kv("  ", "serial", c.Serial)
		kv("  ", "valid", c.NotBefore.Format(time.RFC3339)+" to "+c.NotAfter.Format(time.RFC3339))
		kv("  ", "sha-1", c.SHA1)
		kv("  ", "sha-256", c.SHA256)
	}
	kv("  ", "gestore", s.Gestore)
	if s.Digest != "" || s.Micalg != "" {
		kv("  ", "digest", s.Digest+" (micalg="+s.Micalg+")")
	}
	if !s.SigningTime.IsZero() {
		kv("  ", "signing time", s.SigningTime.UTC().Format(time.RFC3339))
	}
	if !s.VerifiedAt.IsZero() {
		at := s.VerifiedAt.UTC().Format(time.RFC3339)
		if s.AtSigningTime {
			at += " (the signing time)"
		}
		kv("  ", "verified at", at)
	}
	if len(s.Chain) > 0 {
		kv("  ", "chain", strings.Join(s.Chain, " -> "))
	}

	if len(r.Problems) > 0 {
		b.WriteString("\nProblems:\n")
		for _, p := range r.Problems {
			b.WriteString("  - " + p + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
