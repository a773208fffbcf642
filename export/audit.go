package export

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
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
	// Counters for the AgID P01 dataset.
	Accettazioni, PreseInCaricoEmesse, VirusIngresso, VirusUscita int
	SealedSegments                                                int
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
	Service  string    `json:"service"` // gestore, tsa or archive
	From, To time.Time `json:"-"`
	Minutes  int       `json:"minutes"`
	Cause    string    `json:"cause"`
	Seq      uint64    `json:"seq"` // the ledger entry that records it
}

// outages collects the outage events of the period.
func outages(ctx context.Context, rep *AuditReport, opts AuditOptions) error {
	q := ledger.Query{Kind: ledger.KindOutage, From: opts.From, To: opts.To, Limit: 1000}
	for {
		page, err := opts.Ledger.Find(ctx, q)
		if err != nil {
			return fmt.Errorf("export: audit: outages: %w", err)
		}
		for _, e := range page.Entries {
			from, err := time.Parse(time.RFC3339Nano, e.Details[ledger.DetailOutageFrom])
			if err != nil || from.After(e.Time) {
				rep.Findings = append(rep.Findings, Finding{Check: "outage", Detail: fmt.Sprintf("entry %d: an outage with a malformed start %q", e.Seq, e.Details[ledger.DetailOutageFrom])})
				continue
			}
			rep.Outages = append(rep.Outages, Outage{Service: e.Details[ledger.DetailOutageService], From: from, To: e.Time,
				Minutes: int(math.Ceil(e.Time.Sub(from).Minutes())), Cause: e.Details[ledger.DetailOutageCause], Seq: e.Seq})
		}
		if page.Next == "" {
			return nil
		}
		q.Cursor = page.Next
	}
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
	rep := &AuditReport{From: opts.From, To: opts.To, Entries: opts.Ledger.Head().Size, Antivirus: opts.Antivirus}
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
			rep.TimestampGaps = append(rep.TimestampGaps, fmt.Sprintf("%s to %s (%s)", last.UTC().Format(time.RFC3339), cp.Time.UTC().Format(time.RFC3339), cp.Time.Sub(last).Round(time.Second)))
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
		for {
			page, err := opts.Ledger.Find(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("export: audit: %w", err)
			}
			for _, e := range page.Entries {
				if byID[e.Identificativo] == nil {
					ids = append(ids, e.Identificativo)
				}
				byID[e.Identificativo] = append(byID[e.Identificativo], e)
				countP01(rep, e, opts.Gestore)
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
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

func countP01(rep *AuditReport, e *ledger.Entry, gestore string) {
	ours := e.Gestore == gestore
	switch {
	case e.Kind == ledger.KindAccettazione && ours:
		rep.Accettazioni++
	case e.Kind == ledger.KindPresaInCarico && ours:
		rep.PreseInCaricoEmesse++
	case e.Kind == ledger.KindRilevazioneVirus && ours:
		rep.VirusIngresso++
	case e.Kind == ledger.KindNonAccettazione && ours && e.Details["errore"] == "virus":
		rep.VirusUscita++
	case e.Kind == ledger.KindPreavvisoErroreConsegna12 && ours:
		rep.Avvisi12h++
	case e.Kind == ledger.KindPreavvisoErroreConsegna24 && ours:
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
	return delays
}

// P01 returns the AgID dataset P01 "Statistiche PEC" for the report's
// period (one row; PEC.md §3.3): CodGestPEC, Quadrimestre, Anno,
// NumDomini, NumCaselle, MsgUscita, MsgIngresso, VirusIngresso,
// VirusUscita.
func (r *AuditReport) P01(codGestPEC string, domains, mailboxes int) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"CodGestPEC", "Quadrimestre", "Anno", "NumDomini", "NumCaselle", "MsgUscita", "MsgIngresso", "VirusIngresso", "VirusUscita"})
	q := (int(r.From.Month())-1)/4 + 1
	w.Write([]string{codGestPEC, strconv.Itoa(q), strconv.Itoa(r.From.Year()), strconv.Itoa(domains), strconv.Itoa(mailboxes),
		strconv.Itoa(r.Accettazioni), strconv.Itoa(r.PreseInCaricoEmesse), strconv.Itoa(r.VirusIngresso), strconv.Itoa(r.VirusUscita)})
	w.Flush()
	return b.Bytes()
}

// P02 returns the AgID dataset P02 "Indisponibilità del servizio PEC":
// Giorno, TipoDisservizio, Durata (minutes), SLA. Custode does not yet
// record service interruptions, so it holds the header only; the report
// text says so.
//
// Each outage is a row: its day (Europe/Rome), TipoDisservizio 02
// (incidente: Custode records only the unplanned ones it sees), its
// duration in minutes, and SLA S when it lasted at most 30 minutes, N
// otherwise (a conservative reading of DM 2 novembre 2005 art. 12).
func (r *AuditReport) P02() []byte {
	var b strings.Builder
	b.WriteString("Giorno,TipoDisservizio,Durata,SLA\n")
	loc := rome()
	for _, o := range r.Outages {
		sla := "S"
		if o.Minutes > 30 {
			sla = "N"
		}
		fmt.Fprintf(&b, "%s,02,%d,%s\n", o.From.In(loc).Format("02/01/2006"), o.Minutes, sla)
	}
	return []byte(b.String())
}

// Text renders the report for people (the PDF and HTML say the same).
func (r *AuditReport) Text() string {
	var s strings.Builder
	fmt.Fprintf(&s, "Rapporto di audit del log, dal %s al %s\n\n", r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
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
	fmt.Fprintf(&s, "Continuita' delle marche temporali: %d intervalli oltre un'ora\n", len(r.TimestampGaps))
	for _, g := range r.TimestampGaps {
		fmt.Fprintf(&s, "  - %s\n", g)
	}
	fmt.Fprintf(&s, "Transazioni inviate nel periodo: %d; segmenti sigillati: %d, di cui eliminati alla scadenza della conservazione: %d\n", r.Transactions, r.SealedSegments, r.PurgedSegments)
	if r.Integrity != nil && r.Integrity.Purged > 0 {
		fmt.Fprintf(&s, "Voci del registro eliminate alla scadenza della conservazione: %d (ne resta l'impronta nell'albero)\n", r.Integrity.Purged)
	}
	fmt.Fprintf(&s, "Consegne: %d; tempo busta -> consegna: mediana %.1f s, 99%% %.1f s, massimo %.1f s\n", r.Deliveries, r.DeliveryP50, r.DeliveryP99, r.DeliveryMax)
	fmt.Fprintf(&s, "Avvisi di mancata consegna per superamento dei tempi: 12 ore %d, 24 ore %d\n", r.Avvisi12h, r.Avvisi24h)
	fmt.Fprintf(&s, "Ricevute di accettazione %d, di presa in carico emesse %d, virus in ingresso %d, in uscita %d\n",
		r.Accettazioni, r.PreseInCaricoEmesse, r.VirusIngresso, r.VirusUscita)
	if r.Antivirus != "" {
		fmt.Fprintf(&s, "antivirus: %s\n", r.Antivirus)
	}
	fmt.Fprintf(&s, "\nProblemi (%d):\n", len(r.Findings))
	for _, f := range r.Findings {
		fmt.Fprintf(&s, "  - [%s] %s %s\n", f.Check, f.Identificativo, f.Detail)
	}
	fmt.Fprintf(&s, "\nInterruzioni del servizio registrate nel periodo (dataset P02): %d\n", len(r.Outages))
	for _, o := range r.Outages {
		fmt.Fprintf(&s, "  - %s dal %s al %s (%d minuti), voce %d: %s\n", o.Service, o.From.In(rome()).Format("02/01/2006 15:04:05"),
			o.To.In(rome()).Format("02/01/2006 15:04:05"), o.Minutes, o.Seq, o.Cause)
	}
	return s.String()
}

// PDF renders Text as a PDF.
func (r *AuditReport) PDF() []byte {
	return textPDF("Rapporto di audit - log del gestore PEC", r.Text())
}
