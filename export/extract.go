package export

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/verify/bundle"
	"github.com/custode/custode/pec/mailaddr"
	romezone "github.com/custode/custode/pec/rome"
	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// Files of a log extract (BUNDLE.md): see package bundle.
const (
	FileExtract     = bundle.FileExtract
	FileExtractCSV  = bundle.FileExtractCSV
	FileExtractLog  = bundle.FileExtractLog
	FileExtractHTML = bundle.FileExtractHTML
	FileExtractPDF  = bundle.FileExtractPDF
)

// MaxExtractEntries bounds one extract; ask for shorter periods beyond it.
const MaxExtractEntries = 100_000

type (
	// ExtractEntry is bundle.ExtractEntry: one transaction of an extract,
	// with its proof.
	ExtractEntry = bundle.ExtractEntry
	// ExtractDoc is bundle.ExtractDoc: extract.json.
	ExtractDoc = bundle.ExtractDoc
)

// ExtractOptions selects a titolare's log extract.
type ExtractOptions struct {
	Ledger *ledger.Ledger
	// Mailbox is the titolare's address. It must have a canonical form
	// (package mailaddr); the extract holds the entries that Concerns that
	// form, compared byte for byte with the canonical forms of the entry's
	// addresses, never with a folding variant of it.
	Mailbox string
	// From and To bound the riferimento temporale: [From, To).
	From, To time.Time
	// Signer signs the manifest: the gestore.
	Signer *smime.Signer
	// Stamper time-stamps the manifest's signature value (CAdES-T) at
	// export; nil leaves it without a signature time-stamp.
	Stamper tsa.Stamper
	// GestoreCA and TSACA are the trust anchors (PEM) to include.
	GestoreCA, TSACA []byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, if not nil, is called with the entries found so far and
	// total 0 while the ledger is searched, then with the entries whose
	// proofs are written and the entries in the extract.
	Progress func(done, total uint64)
}

// Involves reports whether mailbox is the mittente or a destinatario of
// entry e, by mailaddr.Same: their canonical forms are equal byte for byte.
// It is what the ledger's mailbox index selects, not what a titolare may
// see: that is Concerns.
func Involves(e *ledger.Entry, mailbox string) bool {
	if mailaddr.Same(e.Mittente, mailbox) {
		return true
	}
	for _, d := range e.Destinatari {
		if mailaddr.Same(d.Address, mailbox) {
			return true
		}
	}
	return false
}

// Concerns reports whether entry e belongs in the log of the titolare of
// mailbox: in their extract (Extract) and in what the API answers them.
// Addresses are compared by mailaddr.Same. The rule, by event kind and by
// the address field that must name the mailbox:
//
//   - mittente: every PEC entry of which the mailbox is the mittente
//     (accettazione, non-accettazione, posta-certificata, presa-in-carico,
//     avvenuta-consegna, errore-consegna, the preavvisi, rilevazione-virus):
//     a sender sees their own transactions in full.
//   - avvenuta-consegna: the mailbox is a destinatario and the detail
//     "destinatario" (the consegna: the mailbox the busta was delivered to)
//     names it. The busta reached the mailbox.
//   - presa-in-carico: the mailbox is a destinatario and one of the
//     space-separated addresses of the detail "ricezione" names it. The
//     busta was addressed to the mailbox and its gestore took it in charge
//     for it.
//   - busta-anomalia: the mailbox is a destinatario. The busta di anomalia
//     is delivered to every destinatario.
//
// Nothing else: a destinatario never sees accettazione, non-accettazione
// (formal or virus), posta-certificata, errore-consegna, the preavvisi or
// rilevazione-virus entries of another mittente, nor another destinatario's
// consegna: those record what the sender's gestore did, or a message that
// never reached the mailbox, and carry the sender's subject. A mailbox
// that is neither mittente nor destinatario sees nothing, and no system
// event is any titolare's.
func Concerns(e *ledger.Entry, mailbox string) bool {
	if !e.Kind.IsPEC() {
		return false
	}
	if mailaddr.Same(e.Mittente, mailbox) {
		return true
	}
	if !slices.ContainsFunc(e.Destinatari, func(d ledger.Recipient) bool { return mailaddr.Same(d.Address, mailbox) }) {
		return false
	}
	switch e.Kind {
	case ledger.KindAvvenutaConsegna:
		return mailaddr.Same(e.Details["destinatario"], mailbox)
	case ledger.KindPresaInCarico:
		return slices.ContainsFunc(strings.Fields(e.Details["ricezione"]), func(r string) bool { return mailaddr.Same(r, mailbox) })
	case ledger.KindBustaAnomalia:
		return true
	}
	return false
}

// Extract makes the log extract of a mailbox for a period: every entry
// that Concerns it (its own transactions as mittente in full; as
// destinatario, only what reached it), with the RFC 6109
// §2.3 fields, as JSON (with each entry's canonical bytes and inclusion
// proof to one timestamped checkpoint), CSV, the daily key=value lines
// gestori keep, HTML and PDF; plus the checkpoint with its signature and
// token, and a manifest signed by the gestore. Only entries the newest
// timestamped checkpoint covers are included; the extract says up to when.
func Extract(ctx context.Context, opts ExtractOptions) (*Bundle, error) {
	loc := rome()
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if opts.Mailbox == "" || opts.From.IsZero() || opts.To.IsZero() || !opts.From.Before(opts.To) {
		return nil, fmt.Errorf("export: extract: a mailbox and a period [from, to) are required")
	}
	cp, err := opts.Ledger.NewestTimestampedCheckpoint(ctx)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("export: extract: %w", ErrNoCheckpoint)
	}
	if err != nil {
		return nil, fmt.Errorf("export: checkpoints: %w", err)
	}
	mailbox, err := mailaddr.Canonical(opts.Mailbox)
	if err != nil {
		return nil, fmt.Errorf("export: extract: %w", err)
	}
	doc := ExtractDoc{Mailbox: mailbox, From: opts.From.UTC(), To: opts.To.UTC(), Produced: now().UTC(), Entries: []ExtractEntry{}}
	var entries []*ledger.Entry
	q := ledger.Query{Mailbox: mailbox, From: opts.From, To: opts.To, Limit: 1000}
	for e, err := range ledger.FindAll(ctx, opts.Ledger.Find, q) {
		if err != nil {
			return nil, fmt.Errorf("export: extract: %w", err)
		}
		// The ledger's index matches mailboxes case-insensitively
		// (Unicode folding): keep only what is the mailbox's.
		if e.Seq < cp.Size && Concerns(e, mailbox) {
			entries = append(entries, e)
			if opts.Progress != nil {
				opts.Progress(uint64(len(entries)), 0)
			}
		}
		if len(entries) > MaxExtractEntries {
			return nil, fmt.Errorf("export: extract: more than %d entries: ask for a shorter period", MaxExtractEntries)
		}
	}
	seqs := make([]uint64, len(entries))
	for i, e := range entries {
		seqs[i] = e.Seq
	}
	proofs, err := opts.Ledger.InclusionProofs(ctx, seqs, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("export: extract: %w", err)
	}
	for i, e := range entries {
		raw, err := e.Encode()
		if err != nil {
			return nil, err
		}
		hashes := proofs[i]
		leaf := ledger.LeafHash(raw)
		p := Proof{LeafIndex: e.Seq, TreeSize: cp.Size, LeafHash: hex.EncodeToString(leaf[:]), Root: hex.EncodeToString(cp.Root[:]), Hashes: []string{}}
		for _, h := range hashes {
			p.Hashes = append(p.Hashes, hex.EncodeToString(h))
		}
		doc.Entries = append(doc.Entries, ExtractEntry{Entry: string(raw), Proof: p})
		if opts.Progress != nil {
			opts.Progress(uint64(i+1), uint64(len(entries)))
		}
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	b := &Bundle{Checkpoint: cp, files: map[string][]byte{
		FileExtract:       append(js, '\n'),
		FileExtractCSV:    extractCSV(entries),
		FileExtractLog:    extractLog(entries, loc),
		FileCheckpoint:    cp.Body,
		FileCheckpointSig: cp.Signature,
		FileCheckpointTSR: cp.Token,
		FileGestoreCA:     opts.GestoreCA,
		FileTSACA:         opts.TSACA,
	}}
	title := fmt.Sprintf("Estratto del log della casella %s, dal %s al %s", doc.Mailbox, FormatTime(opts.From), FormatTime(opts.To))
	html, err := extractHTML(title, entries, cp, loc)
	if err != nil {
		return nil, err
	}
	b.files[FileExtractHTML] = html
	if b.files[FileExtractPDF], err = extractDocument(gestoreName(signerCertificate(opts.Signer)), title, entries, cp).PDF(now()); err != nil {
		return nil, err
	}
	b.files[FileHowTo] = []byte(howToExtract())
	b.files[FileProofScript] = proofScript
	if opts.Signer != nil {
		b.files[FileGestoreCert] = PEMCertificates(opts.Signer.Certificate.Raw)
	}
	if err := b.sign(ctx, cadesSigner(ctx, opts.Signer, opts.Stamper)); err != nil {
		return nil, err
	}
	return b, nil
}

// rome returns Europe/Rome, which romezone.Location's embedded
// time/tzdata guarantees is there.
func rome() *time.Location {
	loc, err := romezone.Location()
	if err != nil {
		panic("export: Europe/Rome: " + err.Error()) // unreachable with time/tzdata
	}
	return loc
}

// extractDocument is what extract.pdf shows: an introduction, then each
// entry as a table under its time and kind.
func extractDocument(issuer, title string, entries []*ledger.Entry, cp *ledger.Checkpoint) *document {
	d := &document{Issuer: issuer, Title: title}
	d.Blocks = append(d.Blocks, block{Text: fmt.Sprintf("%d transazioni. Il log fino alla voce %d è firmato dal gestore e marcato temporalmente il %s (checkpoint.txt, checkpoint.p7s, checkpoint.tsr): ogni voce di extract.json ha la sua prova di inclusione.",
		len(entries), cp.Size-1, FormatTime(cp.Time))})
	for _, e := range entries {
		var rows [][2]string
		for _, r := range entryRows(e) {
			if extractRows[r[0]] {
				rows = append(rows, r)
			}
		}
		d.Blocks = append(d.Blocks, block{Heading: FormatTime(e.Time) + " – " + KindName(e.Kind, e.Details), Rows: rows})
	}
	return d
}

// extractRows are the facts extract.pdf gives of each entry; extract.json
// has them all.
var extractRows = map[string]bool{
	"Identificativo": true, "Mittente": true, "Destinatari": true, "Oggetto": true,
	"Gestore che ha emesso il messaggio": true, "Numero nel log": true,
	detailName("destinatario"): true, detailName("errore"): true, detailName("errore_esteso"): true,
	detailName("motivo"): true, detailName("virus"): true,
}

// logLabel is the label real gestori's logs give a kind (PEC.md §3.2).
func logLabel(e *ledger.Entry) string {
	virus := e.Details["errore"] == "virus"
	switch e.Kind {
	case ledger.KindAccettazione:
		return "Accettazione"
	case ledger.KindNonAccettazione:
		if virus {
			return "NonAccettazioneVirus"
		}
		return "NonAccettazione"
	case ledger.KindPostaCertificata:
		return "BustaTrasporto"
	case ledger.KindPresaInCarico:
		return "PresaInCarico"
	case ledger.KindAvvenutaConsegna:
		return "Consegna"
	case ledger.KindErroreConsegna:
		if virus {
			return "MancataConsegnaVirus"
		}
		return "MancataConsegna"
	case ledger.KindPreavvisoErroreConsegna12:
		return "MancataConsegna12h"
	case ledger.KindPreavvisoErroreConsegna24:
		return "MancataConsegna24h"
	case ledger.KindRilevazioneVirus:
		return "RilevazioneVirus"
	case ledger.KindBustaAnomalia:
		return "BustaAnomalia"
	}
	return string(e.Kind)
}

func destinatari(e *ledger.Entry) string {
	var d []string
	for _, r := range e.Destinatari {
		d = append(d, r.Address+" ("+string(r.Tipo)+")")
	}
	return strings.Join(d, ", ")
}

// logValue keeps a value on one line of the key=value log.
func logValue(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ", ": ", ":\u00a0").Replace(s)
}

// extractLog writes the entries as the daily log lines real gestori keep:
// date, identificativo, then key=value fields separated by ": ".
func extractLog(entries []*ledger.Entry, loc *time.Location) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s: tipo=%s (%s): mittente=%s: destinatari=%s: oggetto=%s: message-id=%s: gestore=%s",
			e.Time.In(loc).Format("Jan _2 15:04:05 2006"), e.Identificativo, e.Kind, logLabel(e),
			logValue(e.Mittente), logValue(destinatari(e)), logValue(e.Oggetto), logValue(e.ClientMessageID), logValue(e.Gestore))
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, ": %s=%s", k, logValue(e.Details[k]))
		}
		fmt.Fprintf(&b, ": seq=%d\n", e.Seq)
	}
	return b.Bytes()
}

func extractCSV(entries []*ledger.Entry) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"seq", "riferimento_temporale", "tipo", "etichetta", "identificativo", "message_id_client", "mittente", "destinatari", "oggetto", "gestore", "consegna", "errore", "tipo_ricevuta", "sha256", "archive_key"})
	for _, e := range entries {
		w.Write([]string{fmt.Sprint(e.Seq), e.Time.UTC().Format(time.RFC3339Nano), string(e.Kind), logLabel(e), e.Identificativo,
			e.ClientMessageID, e.Mittente, destinatari(e), csvSafe(e.Oggetto), e.Gestore, e.Details["destinatario"], e.Details["errore"],
			e.Details["tipo_ricevuta"], hex.EncodeToString(e.SHA256), e.ArchiveKey})
	}
	w.Flush()
	return b.Bytes()
}

// csvSafe keeps a spreadsheet from taking a subject for a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

var extractTemplate = template.Must(template.New("extract").Parse(`<!DOCTYPE html>
<html lang="it"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 6px;font-size:90%;vertical-align:top}th{background:#eee}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{len .Entries}} transazioni. Il log fino alla voce {{.Last}} è firmato dal gestore e marcato temporalmente il {{.Time}}: ogni voce di <code>extract.json</code> ha la sua prova di inclusione.</p>
<table><tr><th>#</th><th>Riferimento temporale</th><th>Evento</th><th>Mittente</th><th>Destinatari</th><th>Oggetto</th><th>Identificativo</th><th>Dettagli</th></tr>
{{range .Entries}}<tr><td>{{.Seq}}</td><td>{{.When}}</td><td>{{.Label}}</td><td>{{.Mittente}}</td><td>{{.Destinatari}}</td><td>{{.Oggetto}}</td><td>{{.Identificativo}}</td><td>{{.Details}}</td></tr>
{{end}}</table></body></html>
`))

func extractHTML(title string, entries []*ledger.Entry, cp *ledger.Checkpoint, loc *time.Location) ([]byte, error) {
	type row struct {
		Seq                                                                  uint64
		When, Label, Mittente, Destinatari, Oggetto, Identificativo, Details string
	}
	data := struct {
		Title   string
		Last    uint64
		Time    string
		Entries []row
	}{Title: title, Last: cp.Size - 1, Time: cp.Time.In(loc).Format(TimeLayout)}
	for _, e := range entries {
		var d []string
		for k, v := range e.Details {
			d = append(d, detailName(k)+": "+detailValue(k, v))
		}
		slices.Sort(d)
		data.Entries = append(data.Entries, row{e.Seq, e.Time.In(loc).Format(TimeLayout), KindName(e.Kind, e.Details),
			e.Mittente, destinatari(e), e.Oggetto, e.Identificativo, strings.Join(d, "; ")})
	}
	var b bytes.Buffer
	if err := extractTemplate.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
