package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/pec/mailaddr"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/retention"
)

// Paging of /v1/entries.
const (
	// DefaultLimit is the page size of a query that sets none.
	DefaultLimit = 100
	// MaxLimit is the largest page a query may ask for.
	MaxLimit = ledger.DefaultQueryLimit
	// maxFindCalls bounds the index reads of one page of a legal user,
	// whose results are filtered by their holds.
	maxFindCalls = 10
)

// entryJSON is one entry in an answer.
type entryJSON struct {
	Seq uint64 `json:"seq"`
	// LeafHash is SHA-256(0x00 || canonical bytes), hex.
	LeafHash string `json:"leaf_hash"`
	// Entry is the canonical entry (ledger/FORMAT.md) as a JSON object.
	Entry json.RawMessage `json:"entry"`
}

func newEntryJSON(e *ledger.Entry, raw []byte) (entryJSON, error) {
	if raw == nil {
		var err error
		if raw, err = e.Encode(); err != nil {
			return entryJSON{}, err
		}
	}
	leaf := ledger.LeafHash(raw)
	return entryJSON{Seq: e.Seq, LeafHash: hex.EncodeToString(leaf[:]), Entry: raw}, nil
}

// pageJSON is the answer of /v1/entries.
type pageJSON struct {
	Entries []entryJSON `json:"entries"`
	Next    string      `json:"next,omitempty"`
}

// checkpointJSON is a checkpoint in an answer.
type checkpointJSON struct {
	Origin    string    `json:"origin"`
	Size      uint64    `json:"size"`
	Root      string    `json:"root"` // hex
	Prev      string    `json:"prev"` // hex
	Time      time.Time `json:"time"`
	Body      string    `json:"body"`            // the signed text
	Signature string    `json:"signature"`       // base64 DER CMS
	Token     string    `json:"token,omitempty"` // base64 DER RFC 3161 token
	Pending   bool      `json:"pending"`
}

func newCheckpointJSON(cp *ledger.Checkpoint) *checkpointJSON {
	return &checkpointJSON{Origin: cp.Origin, Size: cp.Size, Root: hex.EncodeToString(cp.Root[:]), Prev: hex.EncodeToString(cp.Prev[:]),
		Time: cp.Time.UTC(), Body: string(cp.Body), Signature: base64.StdEncoding.EncodeToString(cp.Signature),
		Token: base64.StdEncoding.EncodeToString(cp.Token), Pending: cp.Pending()}
}

// entryProofJSON is the answer of /v1/entries/{seq}.
type entryProofJSON struct {
	entryJSON
	// Canonical is the entry's exact bytes, to hash.
	Canonical  string          `json:"canonical"`
	Proof      *export.Proof   `json:"proof,omitempty"`
	Checkpoint *checkpointJSON `json:"checkpoint,omitempty"`
}

// parseTime reads a time parameter: an RFC 3339 time, or a day
// (2025-03-01) meaning its start in Europe/Rome, as on the command line;
// "" is the zero time.
func parseTime(name, v string) (time.Time, *reply) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := export.ParseTimeOrDay(v)
	if err != nil {
		return time.Time{}, badRequest("%s: want a day such as 2025-03-01 (in Europe/Rome) or an RFC 3339 time such as 2025-03-01T00:00:00Z", name)
	}
	if t.Year() < 1970 {
		return time.Time{}, badRequest("%s: before 1970", name)
	}
	return t, nil
}

// parsePeriod reads from and to. For an export the period is required:
// from must be given, and to defaults to now.
func (c *call) parsePeriod(required bool) (from, to time.Time, rep *reply) {
	if from, rep = parseTime("from", c.params.Get("from")); rep != nil {
		return
	}
	if to, rep = parseTime("to", c.params.Get("to")); rep != nil {
		return
	}
	if from.IsZero() && required {
		return from, to, badRequest("from is required")
	}
	if to.IsZero() && required {
		to = c.s.now()
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, badRequest("from must be before to")
	}
	return from, to, nil
}

// normalizeMailbox reads a mailbox parameter as the mail store keys it.
func normalizeMailbox(v string) (string, *reply) {
	a, err := mailstore.NormalizeAddress(v)
	if err != nil {
		return "", badRequest("mailbox: not an address")
	}
	return a, nil
}

// mailboxes returns the mailboxes an entry concerns: its mittente and
// destinatari.
func mailboxes(e *ledger.Entry) []string {
	out := make([]string, 0, 1+len(e.Destinatari))
	if e.Mittente != "" {
		out = append(out, e.Mittente)
	}
	for _, d := range e.Destinatari {
		out = append(out, d.Address)
	}
	return out
}

// visible reports whether the principal may see entry e: operators and
// auditors see everything; a titolare, the entries that export.Concerns
// their mailbox (their own transactions as mittente; as destinatario, only
// what reached them); a legal user, those an active hold of one of
// their cases covers.
func (c *call) visible(e *ledger.Entry) bool {
	switch c.p.role {
	case roleOperator, roleAuditor:
		return true
	case roleTitolare:
		// c.p.name is canonical: the entry's mailboxes are compared with it
		// byte for byte in their canonical form, never by Unicode folding.
		return export.Concerns(e, c.p.name)
	case roleLegal:
		for _, h := range c.legalHolds() {
			if h.Scope.Covers(mailboxes(e), e.Identificativo, e.Time) {
				return true
			}
		}
	}
	return false
}

// seesTransaction reports whether the principal may see an entry of kind
// of the transaction identificativo.
func (c *call) seesTransaction(ctx context.Context, identificativo string, kind ledger.Kind) (bool, error) {
	q := ledger.Query{Identificativo: identificativo, Kind: kind}
	for e, err := range ledger.FindAll(ctx, c.s.ledger.Find, q) {
		if err != nil {
			return false, err
		}
		if e.Identificativo == identificativo && e.Kind == kind && c.visible(e) {
			return true, nil
		}
	}
	return false, nil
}

// legalHolds returns the active holds of the legal user's cases.
func (c *call) legalHolds() []retention.Hold {
	if c.holdsLoaded {
		return c.holds
	}
	c.holdsLoaded = true
	if c.s.holds == nil {
		return nil
	}
	all, err := c.s.holds.Holds()
	if err != nil {
		c.s.log.Error("httpapi: legal holds", "err", err)
		return nil
	}
	for _, h := range all {
		if h.Active() && slices.Contains(c.p.cases, h.Case) {
			c.holds = append(c.holds, h)
		}
	}
	return c.holds
}

// cursor wraps the ledger's cursor with a digest of the query it belongs
// to, so that a cursor given with another query is refused as such.
func cursorDigest(q ledger.Query) []byte {
	h := sha256.New()
	for _, f := range []string{q.Identificativo, q.ClientMessageID, q.Mailbox, string(q.Kind),
		q.From.UTC().Format(time.RFC3339Nano), q.To.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return h.Sum(nil)[:8]
}

func encodeCursor(q ledger.Query, next string) string {
	if next == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(append(cursorDigest(q), next...))
}

func decodeCursor(q ledger.Query, v string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) <= 8 || !bytes.Equal(b[:8], cursorDigest(q)) {
		return "", false
	}
	return string(b[8:]), true
}

// entries answers GET /v1/entries: a page of the entries a query selects,
// of those the principal may see.
func (s *Server) entries(ctx context.Context, c *call) *reply {
	p := c.params
	q := ledger.Query{Identificativo: p.Get("identificativo"), ClientMessageID: p.Get("message_id")}
	if v := p.Get("mailbox"); v != "" {
		m, rep := normalizeMailbox(v)
		if rep != nil {
			return rep
		}
		q.Mailbox = m
	}
	if v := p.Get("kind"); v != "" {
		k := ledger.Kind(v)
		if !k.IsPEC() && !k.IsSystem() {
			return badRequest("kind: unknown kind %q", clip(v, 64))
		}
		q.Kind = k
	}
	var rep *reply
	if q.From, q.To, rep = c.parsePeriod(false); rep != nil {
		return rep
	}
	limit := DefaultLimit
	if v := p.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return badRequest("limit: want a number from 1 to %d", MaxLimit)
		}
		limit = n
	}
	if c.p.role == roleTitolare {
		if q.Mailbox != "" && q.Mailbox != c.p.name {
			return forbidden("a titolare may query their own mailbox only")
		}
		// Every query of a titolare is bound to their mailbox.
		q.Mailbox = c.p.name
	}
	if q.Identificativo == "" && q.ClientMessageID == "" && q.Mailbox == "" && q.Kind == "" {
		return badRequest("name an identificativo, message_id, mailbox or kind")
	}
	if v := p.Get("cursor"); v != "" {
		next, ok := decodeCursor(q, v)
		if !ok {
			return badRequest("cursor: not the next of a page of this query")
		}
		q.Cursor = next
	}
	out := pageJSON{Entries: []entryJSON{}}
	for calls := 0; ; calls++ {
		q.Limit = limit - len(out.Entries)
		page, err := s.ledger.Find(ctx, q)
		if err != nil {
			// The digest makes this a forged cursor; the ledger has no
			// sentinel error for it.
			if q.Cursor != "" && strings.Contains(err.Error(), "cursor") {
				return badRequest("cursor: not the next of a page of this query")
			}
			s.log.Error("httpapi: find", "err", err)
			return internal()
		}
		for _, e := range page.Entries {
			if !c.visible(e) {
				continue
			}
			ej, err := newEntryJSON(e, nil)
			if err != nil {
				s.log.Error("httpapi: encode entry", "seq", e.Seq, "err", err)
				return internal()
			}
			out.Entries = append(out.Entries, ej)
		}
		out.Next = encodeCursor(q, page.Next)
		if page.Next == "" || len(out.Entries) >= limit || calls+1 >= maxFindCalls {
			break
		}
		q.Cursor = page.Next
	}
	c.details["results"] = strconv.Itoa(len(out.Entries))
	return &reply{status: http.StatusOK, json: out}
}

// entry answers GET /v1/entries/{seq}: the entry, its canonical bytes and
// its inclusion proof to the newest timestamped checkpoint that covers it
// (none yet: no proof).
func (s *Server) entry(ctx context.Context, c *call) *reply {
	seq, err := strconv.ParseUint(c.r.PathValue("seq"), 10, 64)
	if err != nil {
		return badRequest("seq: want a non-negative integer")
	}
	c.details["seq"] = strconv.FormatUint(seq, 10)
	e, raw, err := s.ledger.Entry(ctx, seq)
	noEntry := fmt.Sprintf("the ledger has no entry %d", seq)
	if errors.Is(err, ledger.ErrNotFound) {
		return notFound(noEntry)
	}
	if err != nil {
		s.log.Error("httpapi: entry", "seq", seq, "err", err)
		return internal()
	}
	if !c.visible(e) {
		// The same answer as for an entry that does not exist.
		return hidden(noEntry)
	}
	ej, err := newEntryJSON(e, raw)
	if err != nil {
		return internal()
	}
	out := entryProofJSON{entryJSON: ej, Canonical: string(raw)}
	// Checkpoints only grow: if the newest timestamped one does not cover
	// seq, none does.
	cp, err := s.ledger.NewestTimestampedCheckpoint(ctx)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		s.log.Error("httpapi: checkpoints", "err", err)
		return internal()
	}
	if err == nil && cp.Size > seq {
		hashes, err := s.ledger.InclusionProof(ctx, seq, cp.Size)
		if err != nil {
			s.log.Error("httpapi: inclusion proof", "seq", seq, "size", cp.Size, "err", err)
			return internal()
		}
		pr := &export.Proof{LeafIndex: seq, TreeSize: cp.Size, LeafHash: ej.LeafHash, Root: hex.EncodeToString(cp.Root[:]), Hashes: []string{}}
		for _, h := range hashes {
			pr.Hashes = append(pr.Hashes, hex.EncodeToString(h))
		}
		out.Proof, out.Checkpoint = pr, newCheckpointJSON(cp)
	}
	return &reply{status: http.StatusOK, json: out}
}

// latestCheckpoint answers GET /v1/checkpoints/latest.
func (s *Server) latestCheckpoint(ctx context.Context, c *call) *reply {
	cp, err := s.ledger.LatestCheckpoint(ctx)
	if errors.Is(err, ledger.ErrNotFound) {
		return notFound("the ledger has no checkpoint yet")
	}
	if err != nil {
		s.log.Error("httpapi: latest checkpoint", "err", err)
		return internal()
	}
	return &reply{status: http.StatusOK, json: newCheckpointJSON(cp)}
}

// coversPeriod reports whether a legal user's holds cover every
// transaction of mailbox in [from, to).
func (c *call) coversPeriod(mailbox string, from, to time.Time) bool {
	for _, h := range c.legalHolds() {
		sc := h.Scope
		if len(sc.Identificativi) == 0 && (sc.Mailbox == "" || mailaddr.Same(sc.Mailbox, mailbox)) &&
			(sc.From.IsZero() || !from.Before(sc.From)) && (sc.To.IsZero() || !to.After(sc.To)) {
			return true
		}
	}
	return false
}

// extract answers GET /v1/exports/extract: the titolare's log extract of
// a mailbox for a period, a ZIP.
func (s *Server) extract(ctx context.Context, c *call) *reply {
	mailbox := c.params.Get("mailbox")
	if mailbox == "" && c.p.role == roleTitolare {
		mailbox = c.p.name
	}
	if mailbox == "" {
		return badRequest("mailbox is required")
	}
	mailbox, rep := normalizeMailbox(mailbox)
	if rep != nil {
		return rep
	}
	from, to, rep := c.parsePeriod(true)
	if rep != nil {
		return rep
	}
	c.details["what"] = "log extract"
	c.details["mailbox"] = mailbox
	c.details["from"] = record.FormatTime(from)
	c.details["to"] = record.FormatTime(to)
	switch c.p.role {
	case roleTitolare:
		if mailbox != c.p.name {
			return forbidden("a titolare may have the log of their own mailbox only")
		}
	case roleLegal:
		if !c.coversPeriod(mailbox, from, to) {
			return forbidden("no active hold of your cases covers this mailbox for the whole period")
		}
	}
	// The export is itself evidence: recorded before the extract exists,
	// so that a checkpoint after it covers it.
	if err := c.record(ctx, outcomeAllowed); err != nil {
		return unavailable("the request could not be recorded: try again later")
	}
	b, err := export.Extract(ctx, export.ExtractOptions{Ledger: s.ledger, Mailbox: mailbox, From: from, To: to,
		Signer: s.signer, Stamper: s.stamper, GestoreCA: s.gestoreCA, TSACA: s.tsaCA, Now: s.now})
	return c.zip(ctx, b, err, "extract-"+fileSafe(mailbox)+"-"+from.UTC().Format("20060102T150405Z")+".zip")
}

// zip writes an export as a ZIP reply, or the reply of its failure (which
// it records).
func (c *call) zip(ctx context.Context, b *export.Bundle, err error, filename string) *reply {
	var buf bytes.Buffer
	if err == nil {
		err = b.WriteZip(&buf)
	}
	if err == nil {
		return &reply{status: http.StatusOK, body: buf.Bytes(), contentType: "application/zip", filename: filename}
	}
	var rep *reply
	switch {
	case errors.Is(err, export.ErrNoCheckpoint):
		rep = unavailable("no timestamped checkpoint covers it yet: try again after the next checkpoint")
	case errors.Is(err, export.ErrTooLarge):
		rep = fail(http.StatusUnprocessableEntity, "too_large", "the export is larger than 30 MB: ask for a shorter period")
	case ctx.Err() != nil:
		rep = unavailable("the request was cancelled")
	default:
		c.s.log.Error("httpapi: export", "actor", c.p.actor(), "err", err)
		rep = internal()
	}
	c.details["error"] = rep.msg
	if rerr := c.record(context.WithoutCancel(ctx), outcomeFailed); rerr != nil {
		c.s.log.Error("httpapi: cannot record a failed export", "err", rerr)
	}
	return rep
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		if r == '@' {
			return '_'
		}
		return -1
	}, s)
}

// receipt answers GET /v1/exports/receipt: the evidence bundle of the
// ricevuta of kind of the transaction identificativo (for a consegna, of
// the recipient), a ZIP.
func (s *Server) receipt(ctx context.Context, c *call) *reply {
	id, kindName, recipient := c.params.Get("identificativo"), c.params.Get("kind"), c.params.Get("recipient")
	if id == "" {
		return badRequest("identificativo is required")
	}
	if kindName == "" {
		kindName = "accettazione"
	}
	kind, ok := export.ReceiptKind(kindName)
	if !ok {
		return badRequest("kind: want " + export.ReceiptKindNames)
	}
	c.ident = id
	c.details["what"] = "evidence bundle"
	c.details["kind"] = kindName
	noReceipt := fmt.Sprintf("no %s entry for this identificativo", kindName)
	entry, err := export.FindReceipt(ctx, s.ledger, id, kind, recipient)
	switch {
	case errors.Is(err, export.ErrNoReceipt):
		return notFound(noReceipt)
	case errors.Is(err, export.ErrRecipientNeeded):
		// Telling that the transaction has several recipients tells that
		// it exists: only to those who may see it.
		seen, err := c.seesTransaction(ctx, id, kind)
		if err != nil {
			s.log.Error("httpapi: find", "err", err)
			return internal()
		}
		if !seen {
			return hidden(noReceipt)
		}
		return badRequest("the transaction has several recipients: give recipient")
	case err != nil:
		s.log.Error("httpapi: find", "err", err)
		return internal()
	}
	c.details["seq"] = strconv.FormatUint(entry.Seq, 10)
	if !c.visible(entry) {
		// The same answer as for an identificativo that does not exist.
		return hidden(noReceipt)
	}
	if err := c.record(ctx, outcomeAllowed); err != nil {
		return unavailable("the request could not be recorded: try again later")
	}
	b, err := export.Build(ctx, export.BundleOptions{Ledger: s.ledger, Store: s.store, Seq: entry.Seq,
		Signer: s.signer, Stamper: s.stamper, GestoreCA: s.gestoreCA, TSACA: s.tsaCA, Now: s.now})
	return c.zip(ctx, b, err, "receipt-"+kindName+"-"+strconv.FormatUint(entry.Seq, 10)+".zip")
}

// auditJSON is the answer of /v1/audit.
type auditJSON struct {
	OK     bool                `json:"ok"`
	Report *export.AuditReport `json:"report"`
}

// audit answers GET /v1/audit: the audit report of a period, for
// operators and auditors.
func (s *Server) audit(ctx context.Context, c *call) *reply {
	from, to, rep := c.parsePeriod(true)
	if rep != nil {
		return rep
	}
	c.details["what"] = "audit report"
	c.details["from"] = record.FormatTime(from)
	c.details["to"] = record.FormatTime(to)
	if c.p.role != roleOperator && c.p.role != roleAuditor {
		return forbidden("the audit report is for operators and auditors")
	}
	if err := c.record(ctx, outcomeAllowed); err != nil {
		return unavailable("the request could not be recorded: try again later")
	}
	logRetention := retention.Of(s.policy()).Log
	r, err := export.Audit(ctx, export.AuditOptions{Ledger: s.ledger, Store: s.store, Roots: s.roots, TSARoots: s.tsaRoots,
		From: from, To: to, Gestore: s.gestore, MinRetainUntil: logRetention.AddTo})
	if err != nil {
		rep := internal()
		if ctx.Err() != nil {
			rep = unavailable("the request was cancelled")
		} else {
			s.log.Error("httpapi: audit", "err", err)
		}
		c.details["error"] = rep.msg
		if rerr := c.record(context.WithoutCancel(ctx), outcomeFailed); rerr != nil {
			s.log.Error("httpapi: cannot record a failed audit", "err", rerr)
		}
		return rep
	}
	return &reply{status: http.StatusOK, json: auditJSON{OK: r.OK(), Report: r}}
}
