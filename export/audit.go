package export

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
)

// AuditOptions selects the period and the checks of an audit report.
type AuditOptions struct {
	Ledger *ledger.Ledger
	// Store, if not nil, is the archive whose sealed segments are checked
	// for retention.
	Store archive.Store
	// Roots and TSARoots anchor the checkpoints' signatures and tokens.
	Roots, TSARoots *x509.CertPool
	// From and To bound the riferimento temporale of the transactions
	// examined: [From, To).
	From, To time.Time
	// Gestore is our gestore's name, as the entries write it.
	Gestore string
	// CodGestPEC is the gestore's code for the AgID statistics.
	CodGestPEC string
	// MinRetainUntil gives, for a sealed segment's last entry time, the
	// retain-until the policy requires (30 months after it by default).
	MinRetainUntil func(last time.Time) time.Time
	// Domains and Mailboxes are counted in the P01 dataset.
	Domains, Mailboxes int
	// Antivirus is the gestore's virus scanner as the report states it,
	// "antivirus: " and this ("not configured" when there is none); empty
	// states nothing.
	Antivirus string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Finding is one problem an audit found.
type Finding struct {
	Check          string `json:"check"`
	Identificativo string `json:"identificativo,omitempty"`
	Detail         string `json:"detail"`
}

// AuditReport is the audit of a period.
type AuditReport struct {
	From, To     time.Time
	Entries      uint64 // the ledger's size
	Checkpoints  int
	Transactions int // buste di trasporto we sent in the period
	// Integrity is the ledger's own verification.
	Integrity *ledger.Report
	// TimestampGaps lists the intervals between consecutive timestamped
	// checkpoints longer than an hour: time the log was not anchored.
	TimestampGaps []string
	// Findings are incomplete or inconsistent transactions and retention
	// problems.
	Findings []Finding
	// SLA figures, in seconds: from the busta to each ricevuta di
	// avvenuta consegna, and how many 12h and 24h avvisi were sent.
	DeliveryP50, DeliveryP99, DeliveryMax float64
	Deliveries, Avvisi12h, Avvisi24h      int

	// What our gestore issued in the period, by outcome: ricevute di
	// accettazione, avvisi di non accettazione (VirusUscita of them for a
	// virus), ricevute di presa in carico, ricevute di avvenuta consegna,
	// avvisi di mancata consegna, buste di anomalia, avvisi di rilevazione
	// virus (VirusIngresso).
	Accettazioni, NonAccettazioni, PreseInCaricoEmesse int
	Consegne, MancateConsegne, Anomalie                int
	VirusIngresso, VirusUscita                         int
	// Transactions we sent in the period that are still open: a certified
	// recipient has neither a ricevuta di consegna nor an avviso di
	// mancata consegna yet. AwaitingPresaInCarico of them have a recipient
	// whose gestore has not taken the busta in charge (still in our
	// delivery queue, or in transit); AwaitingConsegna, one taken in
	// charge but not yet delivered.
	OpenTransactions, AwaitingPresaInCarico, AwaitingConsegna int
	// Quadrimestri are the figures of the AgID P01 dataset for each
	// four-month period (Europe/Rome) the audit's period overlaps, in
	// order.
	Quadrimestri []Quadrimestre

	SealedSegments int
	// PurgedSegments counts sealed segments deleted from the archive
	// after their retain-until, as retention requires.
	PurgedSegments int
	// Outages are the services found unavailable in the period, from the
	// ledger's outage events: the AgID P02 dataset.
	Outages []Outage
	// Antivirus is AuditOptions.Antivirus.
	Antivirus string `json:",omitempty"`
}

// Outage is one time a service was unavailable.
type Outage struct {
	Service string    `json:"service"` // gestore, tsa or archive
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Minutes int       `json:"minutes"` // rounded up: P02's Durata
	Cause   string    `json:"cause"`
	Seq     uint64    `json:"seq"` // the ledger entry that records it
}

// TipoDisservizio is the outage's type in the AgID P02 dataset: 02
// (incidente) when the gestore itself was down, 03 (malfunzione) when it
// ran without its TSA or its WORM archive. Custode records no planned
// interruption (01, pianificato): the gestore adds those rows itself.
func (o Outage) TipoDisservizio() string {
	if o.Service == "gestore" {
		return "02"
	}
	return "03"
}

// SLA is P02's SLA column: S when the outage lasted at most 30 minutes, N
// otherwise (a conservative reading of DM 2 novembre 2005 art. 12).
func (o Outage) SLA() string {
	if o.Minutes > 30 {
		return "N"
	}
	return "S"
}

// Quadrimestre is one four-month period of the AgID statistics
// (January-April, May-August, September-December, in Europe/Rome) with
// the P01 figures of the part of it the audit covered.
type Quadrimestre struct {
	Anno         int
	Quadrimestre int // 1, 2 or 3
	// From and To are the part of the quadrimestre within the audit's
	// period; Partial is true when that is not all of it.
	From, To time.Time
	Partial  bool
	// MsgUscita counts the ricevute di accettazione we issued,
	// MsgIngresso the ricevute di presa in carico, VirusIngresso the
	// avvisi di rilevazione virus, VirusUscita the avvisi di non
	// accettazione for a virus.
	MsgUscita, MsgIngresso, VirusIngresso, VirusUscita int
}

// quadrimestreOf returns the year and four-month period (1-3) of t in
// Europe/Rome, and that period's bounds.
func quadrimestreOf(t time.Time) (year, q int, from, to time.Time) {
	t = t.In(rome())
	q = (int(t.Month())-1)/4 + 1
	from = time.Date(t.Year(), time.Month((q-1)*4+1), 1, 0, 0, 0, 0, rome())
	return t.Year(), q, from, from.AddDate(0, 4, 0)
}

// quadrimestri returns the four-month periods [from, to) overlaps.
func quadrimestri(from, to time.Time) []Quadrimestre {
	var out []Quadrimestre
	for t := from; t.Before(to); {
		y, q, qf, qt := quadrimestreOf(t)
		part := Quadrimestre{Anno: y, Quadrimestre: q, From: maxTime(qf, from), To: minTime(qt, to)}
		part.Partial = !part.From.Equal(qf) || !part.To.Equal(qt)
		out = append(out, part)
		t = qt
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// outages collects the outage events of the period.
func outages(ctx context.Context, rep *AuditReport, opts AuditOptions) error {
	q := ledger.Query{Kind: ledger.KindOutage, From: opts.From, To: opts.To, Limit: 1000}
	for e, err := range ledger.FindAll(ctx, opts.Ledger.Find, q) {
		if err != nil {
			return fmt.Errorf("export: audit: outages: %w", err)
		}
		from, err := time.Parse(time.RFC3339Nano, e.Details[ledger.DetailOutageFrom])
		if err != nil || from.After(e.Time) {
			rep.Findings = append(rep.Findings, Finding{Check: "outage", Detail: fmt.Sprintf("entry %d: an outage with a malformed start %q", e.Seq, e.Details[ledger.DetailOutageFrom])})
			continue
		}
		rep.Outages = append(rep.Outages, Outage{Service: e.Details[ledger.DetailOutageService], From: from, To: e.Time,
			Minutes: int(math.Ceil(e.Time.Sub(from).Minutes())), Cause: e.Details[ledger.DetailOutageCause], Seq: e.Seq})
	}
	return nil
}

// clockTolerance is how far a riferimento temporale may stray from the
// checkpoints around it before the audit reports the gestore's clock.
const clockTolerance = time.Minute

// clockCheck reports PEC entries whose riferimento temporale is after the
// time of the checkpoint that covers them, or before the time of the
// checkpoint before them: the gestore's clock was off (checkpoint times
// are anchored by the TSA's tokens). Only our own gestore's entries are
// checked: another gestore's carry its clock, and arrive when they arrive.
func clockCheck(rep *AuditReport, byID map[string][]*ledger.Entry, cps []*ledger.Checkpoint, gestore string) {
	if len(cps) == 0 {
		return
	}
	var ahead, behind int
	var firstAhead, firstBehind *ledger.Entry
	for _, es := range byID {
		for _, e := range es {
			if e.Gestore != gestore {
				continue
			}
			i := sort.Search(len(cps), func(i int) bool { return cps[i].Size > e.Seq })
			if i < len(cps) && e.Time.After(cps[i].Time.Add(clockTolerance)) {
				ahead++
				if firstAhead == nil || e.Seq < firstAhead.Seq {
					firstAhead = e
				}
			}
			if i > 0 && e.Time.Before(cps[i-1].Time.Add(-clockTolerance)) {
				behind++
				if firstBehind == nil || e.Seq < firstBehind.Seq {
					firstBehind = e
				}
			}
		}
	}
	if ahead > 0 {
		rep.Findings = append(rep.Findings, Finding{Check: "clock", Identificativo: firstAhead.Identificativo, Detail: fmt.Sprintf(
			"%d entries carry a riferimento temporale after the checkpoint that covers them (the first, entry %d, at %s): the gestore's clock ran ahead",
			ahead, firstAhead.Seq, firstAhead.Time.UTC().Format(time.RFC3339))})
	}
	if behind > 0 {
		rep.Findings = append(rep.Findings, Finding{Check: "clock", Identificativo: firstBehind.Identificativo, Detail: fmt.Sprintf(
			"%d entries carry a riferimento temporale before the checkpoint that precedes them (the first, entry %d, at %s): the gestore's clock ran behind",
			behind, firstBehind.Seq, firstBehind.Time.UTC().Format(time.RFC3339))})
	}
}

// OK reports whether the audit found nothing wrong.
func (r *AuditReport) OK() bool {
	return r.Integrity != nil && r.Integrity.OK() && len(r.Findings) == 0
}

// Audit examines the ledger: integrity of chain, tree and checkpoints;
// continuity of the timestamps; for every transaction we sent in the
// period, one accettazione and one busta, and per certified recipient one
// presa in carico and one consegna or mancata consegna (or the 24-hour
// avviso), with virus notices paired; and, with a store, that every sealed
// segment is there, retained at least as the policy requires.
func Audit(ctx context.Context, opts AuditOptions) (*AuditReport, error) {
	if !opts.From.Before(opts.To) {
		return nil, fmt.Errorf("export: audit: the period from %s to %s is empty", opts.From.Format(time.RFC3339), opts.To.Format(time.RFC3339))
	}
	rep := &AuditReport{From: opts.From, To: opts.To, Entries: opts.Ledger.Head().Size, Quadrimestri: quadrimestri(opts.From, opts.To), Antivirus: opts.Antivirus}
	var err error
	if rep.Integrity, err = opts.Ledger.Verify(ctx, ledger.VerifyOptions{Roots: opts.Roots, TSARoots: opts.TSARoots}); err != nil {
		return nil, fmt.Errorf("export: audit: verify: %w", err)
	}
	cps, err := opts.Ledger.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("export: audit: %w", err)
	}
	rep.Checkpoints = len(cps)
	var last time.Time
	for _, cp := range cps {
		if cp.Pending() {
			rep.Findings = append(rep.Findings, Finding{Check: "timestamp", Detail: fmt.Sprintf("checkpoint %d has no timestamp yet", cp.Size)})
			continue
		}
		if !last.IsZero() && cp.Time.Sub(last) > time.Hour {
			rep.TimestampGaps = append(rep.TimestampGaps, fmt.Sprintf("%s to %s (%d s)", last.UTC().Format(time.RFC3339), cp.Time.UTC().Format(time.RFC3339), int64(cp.Time.Sub(last).Seconds())))
		}
		last = cp.Time
	}

	// Every PEC entry of the period, grouped by transaction.
	byID := map[string][]*ledger.Entry{}
	var ids []string
	for _, k := range ledger.Kinds() {
		if !k.IsPEC() {
			continue
		}
		q := ledger.Query{Kind: k, From: opts.From, To: opts.To, Limit: 1000}
		for e, err := range ledger.FindAll(ctx, opts.Ledger.Find, q) {
			if err != nil {
				return nil, fmt.Errorf("export: audit: %w", err)
			}
			if byID[e.Identificativo] == nil {
				ids = append(ids, e.Identificativo)
			}
			byID[e.Identificativo] = append(byID[e.Identificativo], e)
			countP01(rep, e, opts.Gestore)
		}
	}
	slices.Sort(ids)
	clockCheck(rep, byID, cps, opts.Gestore)
	if err := outages(ctx, rep, opts); err != nil {
		return nil, err
	}
	var delays []float64
	for _, id := range ids {
		delays = append(delays, completeness(rep, id, byID[id], opts)...)
	}
	sort.Float64s(delays)
	rep.Deliveries = len(delays)
	if len(delays) > 0 {
		rep.DeliveryP50 = delays[len(delays)/2]
		rep.DeliveryP99 = delays[min(len(delays)-1, len(delays)*99/100)]
		rep.DeliveryMax = delays[len(delays)-1]
	}

	if opts.Store != nil {
		seals, err := opts.Ledger.Seals(ctx)
		if err != nil {
			return nil, fmt.Errorf("export: audit: %w", err)
		}
		rep.SealedSegments = len(seals)
		now := time.Now()
		if opts.Now != nil {
			now = opts.Now()
		}
		for _, s := range seals {
			info, err := opts.Store.Stat(ctx, s.Key, s.VersionID)
			if errors.Is(err, archive.ErrNotFound) && !s.RetainUntil.After(now) {
				// Deleted once its retention had passed: what the
				// policy asks for, not a fault.
				rep.PurgedSegments++
				continue
			}
			if err != nil {
				rep.Findings = append(rep.Findings, Finding{Check: "retention", Detail: fmt.Sprintf("sealed segment %s: %v", s.Key, err)})
				continue
			}
			if info.Retention.Mode != archive.Compliance {
				rep.Findings = append(rep.Findings, Finding{Check: "retention", Detail: fmt.Sprintf("sealed segment %s is not in COMPLIANCE mode", s.Key)})
			}
			if opts.MinRetainUntil != nil {
				if last, err := lastEntryTime(ctx, opts.Ledger, s); err == nil && info.Retention.RetainUntil.Before(opts.MinRetainUntil(last)) {
					rep.Findings = append(rep.Findings, Finding{Check: "retention", Detail: fmt.Sprintf("sealed segment %s retained until %s, the policy wants %s",
						s.Key, info.Retention.RetainUntil.UTC().Format(time.RFC3339), opts.MinRetainUntil(last).UTC().Format(time.RFC3339))})
				}
			}
		}
	}
	return rep, nil
}

func lastEntryTime(ctx context.Context, l *ledger.Ledger, s ledger.Seal) (time.Time, error) {
	if s.To == 0 {
		return time.Time{}, fmt.Errorf("empty segment")
	}
	e, _, err := l.Entry(ctx, s.To-1)
	if err != nil {
		return time.Time{}, err
	}
	return e.Time, nil
}

// countP01 counts what e records, if our gestore issued it, into the
// report and into its quadrimestre.
func countP01(rep *AuditReport, e *ledger.Entry, gestore string) {
	if e.Gestore != gestore {
		return
	}
	var q *Quadrimestre
	for i := range rep.Quadrimestri {
		if p := &rep.Quadrimestri[i]; !e.Time.Before(p.From) && e.Time.Before(p.To) {
			q = p
		}
	}
	if q == nil {
		q = new(Quadrimestre) // outside the period: Find does not return those
	}
	switch e.Kind {
	case ledger.KindAccettazione:
		rep.Accettazioni++
		q.MsgUscita++
	case ledger.KindNonAccettazione:
		rep.NonAccettazioni++
		if e.Details["errore"] == "virus" {
			rep.VirusUscita++
			q.VirusUscita++
		}
	case ledger.KindPresaInCarico:
		rep.PreseInCaricoEmesse++
		q.MsgIngresso++
	case ledger.KindAvvenutaConsegna:
		rep.Consegne++
	case ledger.KindErroreConsegna:
		rep.MancateConsegne++
	case ledger.KindBustaAnomalia:
		rep.Anomalie++
	case ledger.KindRilevazioneVirus:
		rep.VirusIngresso++
		q.VirusIngresso++
	case ledger.KindPreavvisoErroreConsegna12:
		rep.Avvisi12h++
	case ledger.KindPreavvisoErroreConsegna24:
		rep.Avvisi24h++
	}
}

// completeness checks one transaction we sent (PEC.md §3.2, the checks
// auditors run) and returns its delivery delays in seconds.
func completeness(rep *AuditReport, id string, entries []*ledger.Entry, opts AuditOptions) []float64 {
	count := func(k ledger.Kind, match func(*ledger.Entry) bool) (n int, first *ledger.Entry) {
		for _, e := range entries {
			if e.Kind == k && (match == nil || match(e)) {
				if first == nil {
					first = e
				}
				n++
			}
		}
		return n, first
	}
	nBusta, busta := count(ledger.KindPostaCertificata, func(e *ledger.Entry) bool { return e.Gestore == opts.Gestore })
	if nBusta == 0 {
		return nil // not sent by us: the sender's gestore audits it
	}
	rep.Transactions++
	add := func(check, detail string) {
		rep.Findings = append(rep.Findings, Finding{Check: check, Identificativo: id, Detail: detail})
	}
	if nBusta > 1 {
		add("busta", fmt.Sprintf("%d buste di trasporto, want one", nBusta))
	}
	if n, _ := count(ledger.KindAccettazione, func(e *ledger.Entry) bool { return e.Gestore == opts.Gestore }); n != 1 {
		add("accettazione", fmt.Sprintf("%d ricevute di accettazione, want one", n))
	}
	var delays []float64
	var open, awaitingPresa, awaitingConsegna bool
	for _, d := range busta.Destinatari {
		if d.Tipo != ledger.TipoCertificato {
			continue
		}
		rcpt := strings.ToLower(d.Address)
		forRcpt := func(e *ledger.Entry) bool { return strings.EqualFold(e.Details["destinatario"], rcpt) }
		presa, _ := count(ledger.KindPresaInCarico, func(e *ledger.Entry) bool {
			return slices.Contains(strings.Fields(strings.ToLower(e.Details["ricezione"])), rcpt)
		})
		consegne, consegna := count(ledger.KindAvvenutaConsegna, forRcpt)
		errori, _ := count(ledger.KindErroreConsegna, forRcpt)
		virus, _ := count(ledger.KindRilevazioneVirus, forRcpt)
		avviso24, _ := count(ledger.KindPreavvisoErroreConsegna24, forRcpt)
		if consegne+errori == 0 && virus == 0 && avviso24 == 0 {
			open = true
			if presa == 0 {
				awaitingPresa = true
			} else {
				awaitingConsegna = true
			}
		}
		if presa > 1 {
			add("presa-in-carico", fmt.Sprintf("%s: %d ricevute di presa in carico, want one", rcpt, presa))
		}
		switch {
		case consegne+errori > 1:
			add("consegna", fmt.Sprintf("%s: %d ricevute of consegna or mancata consegna, want one", rcpt, consegne+errori))
		case consegne+errori == 0 && avviso24 == 0 && opts.To.Sub(busta.Time) > 24*time.Hour:
			add("consegna", fmt.Sprintf("%s: neither consegna, mancata consegna nor the 24-hour avviso", rcpt))
		case presa == 0 && virus == 0 && consegne+errori == 1:
			add("presa-in-carico", fmt.Sprintf("%s: consegna without a ricevuta di presa in carico", rcpt))
		}
		if virus > 0 {
			if n, _ := count(ledger.KindErroreConsegna, func(e *ledger.Entry) bool { return forRcpt(e) && e.Details["errore"] == "virus" }); n == 0 {
				add("virus", fmt.Sprintf("%s: avviso di rilevazione virus without the avviso di mancata consegna per virus", rcpt))
			}
		}
		if consegna != nil {
			delays = append(delays, consegna.Time.Sub(busta.Time).Seconds())
		}
	}
	if open {
		rep.OpenTransactions++
	}
	if awaitingPresa {
		rep.AwaitingPresaInCarico++
	}
	if awaitingConsegna {
		rep.AwaitingConsegna++
	}
	return delays
}

// P01 returns the AgID dataset P01 "Statistiche PEC" (PEC.md §3.3), one
// row per quadrimestre of the report's period: CodGestPEC, Quadrimestre,
// Anno, NumDomini, NumCaselle, MsgUscita (ricevute di accettazione),
// MsgIngresso (ricevute di presa in carico), VirusIngresso, VirusUscita.
// domains and mailboxes are the gestore's counts now, written in every
// row. It fails, rather than write a figure it does not have, when
// codGestPEC is empty or a count is not given (negative).
func (r *AuditReport) P01(codGestPEC string, domains, mailboxes int) ([]byte, error) {
	if strings.TrimSpace(codGestPEC) == "" {
		return nil, errors.New("export: P01: CodGestPEC is empty: give the gestore's code in AgID's statistics (custode.json's cod_gest_pec, or -cod-gest-pec)")
	}
	if domains < 0 || mailboxes < 0 {
		return nil, fmt.Errorf("export: P01: NumDomini %d, NumCaselle %d: not counted", domains, mailboxes)
	}
	if len(r.Quadrimestri) == 0 {
		return nil, errors.New("export: P01: the report covers no quadrimestre")
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"CodGestPEC", "Quadrimestre", "Anno", "NumDomini", "NumCaselle", "MsgUscita", "MsgIngresso", "VirusIngresso", "VirusUscita"})
	for _, q := range r.Quadrimestri {
		w.Write([]string{codGestPEC, strconv.Itoa(q.Quadrimestre), strconv.Itoa(q.Anno), strconv.Itoa(domains), strconv.Itoa(mailboxes),
			strconv.Itoa(q.MsgUscita), strconv.Itoa(q.MsgIngresso), strconv.Itoa(q.VirusIngresso), strconv.Itoa(q.VirusUscita)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, fmt.Errorf("export: P01: %w", err)
	}
	return b.Bytes(), nil
}

// P02 returns the AgID dataset P02 "Indisponibilità del servizio PEC":
// Giorno, TipoDisservizio, Durata, SLA. Each outage the ledger recorded
// in the period is a row: the day it began (Europe/Rome), its
// TipoDisservizio, its duration in minutes (rounded up) and its SLA.
func (r *AuditReport) P02() []byte {
	var b strings.Builder
	b.WriteString("Giorno,TipoDisservizio,Durata,SLA\n")
	for _, o := range r.Outages {
		fmt.Fprintf(&b, "%s,%s,%d,%s\n", o.From.In(rome()).Format("02/01/2006"), o.TipoDisservizio(), o.Minutes, o.SLA())
	}
	return []byte(b.String())
}

// MarshalJSON writes the report with every duration in seconds: the
// integrity check's Elapsed becomes ElapsedSeconds.
func (r *AuditReport) MarshalJSON() ([]byte, error) {
	type plain AuditReport // without this method
	type integrity struct {
		From, To          uint64
		Checkpoints       int
		Signatures        int
		Timestamps        int
		PendingTimestamps int
		Purged            int
		Notes             []string
		Problems          []ledger.Problem
		ElapsedSeconds    float64
	}
	out := struct {
		*plain
		Integrity *integrity
	}{plain: (*plain)(r)}
	if i := r.Integrity; i != nil {
		out.Integrity = &integrity{From: i.From, To: i.To, Checkpoints: i.Checkpoints, Signatures: i.Signatures, Timestamps: i.Timestamps,
			PendingTimestamps: i.PendingTimestamps, Purged: i.Purged, Notes: i.Notes, Problems: i.Problems, ElapsedSeconds: i.Elapsed.Seconds()}
	}
	return json.Marshal(out)
}

// Text renders the report for people (the PDF and HTML say the same).
func (r *AuditReport) Text() string {
	var s strings.Builder
	fmt.Fprintf(&s, "Rapporto di audit del log, dal %s al %s (escluso)\n\n", FormatTime(r.From), FormatTime(r.To))
	verdict := "NESSUN PROBLEMA"
	if !r.OK() {
		verdict = "PROBLEMI TROVATI"
	}
	fmt.Fprintf(&s, "Esito: %s\n\n", verdict)
	fmt.Fprintf(&s, "Integrita' (catena, albero, checkpoint): %d voci, %d checkpoint verificati, %d marche temporali",
		r.Integrity.To-r.Integrity.From, r.Integrity.Checkpoints, r.Integrity.Timestamps)
	if r.Integrity.OK() {
		fmt.Fprintf(&s, ": OK\n")
	} else {
		fmt.Fprintf(&s, ": ERRORE\n")
		for _, p := range r.Integrity.Problems {
			fmt.Fprintf(&s, "  - %v\n", p)
		}
	}
	fmt.Fprintf(&s, "Continuità delle marche temporali: %d intervalli oltre un'ora\n", len(r.TimestampGaps))
	for _, g := range r.TimestampGaps {
		fmt.Fprintf(&s, "  - %s\n", g)
	}
	fmt.Fprintf(&s, "Transazioni inviate nel periodo: %d; segmenti sigillati: %d, di cui eliminati alla scadenza della conservazione: %d\n", r.Transactions, r.SealedSegments, r.PurgedSegments)
	if r.Integrity != nil && r.Integrity.Purged > 0 {
		fmt.Fprintf(&s, "Voci del registro eliminate alla scadenza della conservazione: %d (ne resta l'impronta nell'albero)\n", r.Integrity.Purged)
	}
	fmt.Fprintf(&s, "Consegne: %d; tempo busta -> consegna: mediana %.1f s, 99%% %.1f s, massimo %.1f s\n", r.Deliveries, r.DeliveryP50, r.DeliveryP99, r.DeliveryMax)
	fmt.Fprintf(&s, "Avvisi di mancata consegna per superamento dei tempi: 12 ore %d, 24 ore %d\n", r.Avvisi12h, r.Avvisi24h)
	fmt.Fprintf(&s, "Emessi dal gestore: ricevute di accettazione %d, avvisi di non accettazione %d (per virus %d), ricevute di presa in carico %d,\n",
		r.Accettazioni, r.NonAccettazioni, r.VirusUscita, r.PreseInCaricoEmesse)
	fmt.Fprintf(&s, "  ricevute di avvenuta consegna %d, avvisi di mancata consegna %d, buste di anomalia %d, avvisi di rilevazione virus %d\n",
		r.Consegne, r.MancateConsegne, r.Anomalie, r.VirusIngresso)
	fmt.Fprintf(&s, "Transazioni ancora aperte: %d (in attesa della presa in carico %d, della consegna %d)\n",
		r.OpenTransactions, r.AwaitingPresaInCarico, r.AwaitingConsegna)
	for _, q := range r.Quadrimestri {
		partial := ""
		if q.Partial {
			partial = fmt.Sprintf(", solo dal %s al %s", FormatTime(q.From), FormatTime(q.To))
		}
		fmt.Fprintf(&s, "Dataset P01, quadrimestre %d/%d%s: MsgUscita %d, MsgIngresso %d, VirusIngresso %d, VirusUscita %d\n",
			q.Quadrimestre, q.Anno, partial, q.MsgUscita, q.MsgIngresso, q.VirusIngresso, q.VirusUscita)
	}
	if r.Antivirus != "" {
		fmt.Fprintf(&s, "antivirus: %s\n", r.Antivirus)
	}
	fmt.Fprintf(&s, "\nProblemi (%d):\n", len(r.Findings))
	for _, f := range r.Findings {
		fmt.Fprintf(&s, "  - [%s] %s %s\n", f.Check, f.Identificativo, f.Detail)
	}
	fmt.Fprintf(&s, "\nInterruzioni del servizio registrate nel periodo (dataset P02): %d\n", len(r.Outages))
	for _, o := range r.Outages {
		fmt.Fprintf(&s, "  - %s dal %s al %s (%d minuti, tipo %s, SLA %s), voce %d: %s\n", o.Service, FormatTime(o.From),
			FormatTime(o.To), o.Minutes, o.TipoDisservizio(), o.SLA(), o.Seq, o.Cause)
	}
	return s.String()
}

// PDF renders Text as a PDF.
func (r *AuditReport) PDF() []byte {
	return textPDF("Rapporto di audit - log del gestore PEC", r.Text())
}
