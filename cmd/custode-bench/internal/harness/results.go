package harness

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Results is what a run measured and found; it is written as JSON and
// summarised as Markdown.
type Results struct {
	Mode         string      `json:"mode"`
	Started      time.Time   `json:"started"`
	WallSeconds  float64     `json:"wall_seconds"`
	CPUs         int         `json:"cpus"`
	GoVersion    string      `json:"go_version"`
	Clients      int         `json:"clients"`
	Phases       []string    `json:"phases"`
	PhaseSeconds []PhaseTime `json:"phase_seconds"`
	Dir          string      `json:"dir"`

	Load *LoadResult `json:"load,omitempty"`
	// Hostile is the hostile phase: what the legitimate traffic saw under
	// attack.
	Hostile   *HostileResult `json:"hostile,omitempty"`
	Baselines *Baselines     `json:"baselines,omitempty"`
	// Ratios compare the gestore with the baselines of the same run.
	Ratios map[string]float64 `json:"ratios,omitempty"`
	Faults []FaultResult      `json:"faults,omitempty"`
	Tamper []TamperResult     `json:"tamper,omitempty"`
	Fuzz   []FuzzResult       `json:"fuzz,omitempty"`

	// Skipped lists what did not run, and why.
	Skipped map[string]string `json:"skipped,omitempty"`
	// Findings are what the integrator should know: losses, missed
	// tampering, outages the audit does not show.
	Findings []string `json:"findings,omitempty"`
	// Errors are phases that could not complete.
	Errors []string `json:"errors,omitempty"`
	// Pass is true when nothing acknowledged was lost, every check after
	// every fault passed, every flip was detected and every fuzz target
	// passed.
	Pass bool `json:"pass"`

	avgEntrySize int
}

// PhaseTime is how long a phase took.
type PhaseTime struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

// LoadResult is the measured load phase.
type LoadResult struct {
	Seconds             float64        `json:"seconds"`
	Clients             int            `json:"clients"`
	Attempts            int            `json:"attempts"`
	Accepted            int            `json:"accepted"`
	Delivered           int            `json:"delivered"`
	AllDelivered        bool           `json:"all_delivered"`
	AcceptedPerSec      float64        `json:"accepted_per_sec"`
	DeliveredPerSec     float64        `json:"delivered_per_sec"` // delivered / (first submission to last ricevuta di avvenuta consegna)
	DrainSeconds        float64        `json:"drain_seconds"`     // after the clients stopped, to the last ricevuta
	AckP50ms            float64        `json:"ack_p50_ms"`        // MAIL FROM to the 250 after DATA
	AckP99ms            float64        `json:"ack_p99_ms"`
	ConsegnaP50ms       float64        `json:"consegna_p50_ms"` // MAIL FROM to the ricevuta di avvenuta consegna in the sender's mailbox
	ConsegnaP99ms       float64        `json:"consegna_p99_ms"`
	LedgerEntriesPerSec float64        `json:"ledger_entries_per_sec"` // gestore A's
	Errors              map[string]int `json:"errors,omitempty"`
	Processes           []ProcUsage    `json:"processes"`
}

// ProcUsage is one gestore process's use of the machine during the load
// phase (submission to the last ricevuta).
type ProcUsage struct {
	Name            string  `json:"name"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	CPUCores        float64 `json:"cpu_cores"`
	CPUmsPerMessage float64 `json:"cpu_ms_per_message"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"` // VmHWM
}

// Baselines are measured in the same run, with the gestori stopped.
type Baselines struct {
	RSA     *RSABaseline     `json:"rsa,omitempty"`
	Badger  *BadgerBaseline  `json:"badger,omitempty"`
	Postfix *PostfixBaseline `json:"postfix,omitempty"`
}

// RSABaseline is the signing bound with the gestore's key on every core.
type RSABaseline struct {
	KeyBits          int     `json:"key_bits"`
	Signatures       int     `json:"signatures"`
	SignaturesPerSec float64 `json:"signatures_per_sec"`
	PerMessage       int     `json:"signatures_per_message"`
	MessagesPerSec   float64 `json:"messages_per_sec"`
}

// BadgerBaseline is raw badger: batches of synced records of a ledger
// entry's mean size.
type BadgerBaseline struct {
	Records       int     `json:"records"`
	RecordBytes   int     `json:"record_bytes"`
	Batch         int     `json:"batch"`
	RecordsPerSec float64 `json:"records_per_sec"`
}

// PostfixBaseline is Postfix relaying the same messages from the same
// clients to its discard transport.
type PostfixBaseline struct {
	Skipped        string         `json:"skipped,omitempty"`
	Version        string         `json:"version,omitempty"`
	Seconds        float64        `json:"seconds,omitempty"`
	Accepted       int            `json:"accepted,omitempty"`
	AcceptedPerSec float64        `json:"accepted_per_sec,omitempty"`
	AckP50ms       float64        `json:"ack_p50_ms,omitempty"`
	AckP99ms       float64        `json:"ack_p99_ms,omitempty"`
	CPUSeconds     float64        `json:"cpu_seconds,omitempty"`
	Errors         map[string]int `json:"errors,omitempty"`
}

// FaultResult is one phase under load (the plain load phase included) and
// the checks after it.
type FaultResult struct {
	Fault            string         `json:"fault"`
	Detail           string         `json:"detail"`
	Attempts         int            `json:"attempts"`
	Acked            int            `json:"acked"`
	AckedDuringFault int            `json:"acked_during_fault,omitempty"`
	ClientErrors     map[string]int `json:"client_errors,omitempty"`
	AfterKill        []KillCheck    `json:"after_kill,omitempty"`
	Crashes          []string       `json:"crashes,omitempty"`

	// Checks after the phase, for every message acknowledged in the run
	// so far.
	MissingFromLedger    int            `json:"missing_from_ledger"`
	Undelivered          int            `json:"undelivered"`
	Lost                 int            `json:"lost"` // not in the ledger, or neither delivered nor queued
	LostExamples         []string       `json:"lost_examples,omitempty"`
	DuplicateConsegne    int            `json:"duplicate_consegne"`
	Drained              bool           `json:"drained"`
	DrainSeconds         float64        `json:"drain_seconds"`
	QueueA               int            `json:"queue_a"`
	QueueB               int            `json:"queue_b"`
	LedgerSizeA          uint64         `json:"ledger_size_a"`
	SealCaughtUp         bool           `json:"seal_caught_up"`
	SealedTo             uint64         `json:"sealed_to"`
	LastCheckpoint       uint64         `json:"last_checkpoint"`
	PendingStampWarnings int            `json:"pending_timestamp_warnings"`
	SealRetries          int            `json:"seal_retries"`
	LogErrors            map[string]int `json:"log_errors,omitempty"`
	LedgerVerifyA        bool           `json:"ledger_verify_a"`
	LedgerVerifyB        bool           `json:"ledger_verify_b"`
	Audit                AuditSummary   `json:"audit"`
	Notes                []string       `json:"notes,omitempty"`
	OK                   bool           `json:"ok"`

	ledgerEntries uint64
}

// KillCheck is the check right after one SIGKILL.
type KillCheck struct {
	Kill    int    `json:"kill"`
	Acked   int    `json:"acked"`
	Missing int    `json:"missing"`
	Error   string `json:"error,omitempty"`
}

// AuditSummary is what custode audit reported for a phase's period.
type AuditSummary struct {
	From, To          string   `json:"-"`
	Dir               string   `json:"dir"`
	OK                bool     `json:"ok"`
	Transactions      int      `json:"transactions"`
	TimestampGaps     []string `json:"timestamp_gaps,omitempty"`
	FindingCount      int      `json:"finding_count"`
	Findings          []string `json:"findings,omitempty"`
	IntegrityProblems int      `json:"integrity_problems"`
	DeliveryP50s      float64  `json:"delivery_p50_s"`
	DeliveryMaxs      float64  `json:"delivery_max_s"`
	P02Rows           int      `json:"p02_rows"`
	// ShowsOutage: a timestamp gap, a finding, an integrity problem or a
	// P02 (service unavailability) row.
	ShowsOutage bool   `json:"shows_outage"`
	Error       string `json:"error,omitempty"`
}

// TamperResult counts the flips in one kind of evidence and what the
// verifier caught.
type TamperResult struct {
	Target   string   `json:"target"`
	Verifier string   `json:"verifier"`
	Flips    int      `json:"flips"`
	Detected int      `json:"detected"`
	Named    int      `json:"named"` // detected, naming the entry, segment or file
	Misses   []string `json:"misses,omitempty"`
}

// FuzzResult is one fuzz target's run.
type FuzzResult struct {
	Package    string  `json:"package"`
	Target     string  `json:"target"`
	Seconds    float64 `json:"seconds"`
	OK         bool    `json:"ok"`
	LastStatus string  `json:"last_status,omitempty"`
	Output     string  `json:"output,omitempty"`
}

func (r *Results) skip(what, why string) {
	if r.Skipped == nil {
		r.Skipped = map[string]string{}
	}
	r.Skipped[what] = why
}

// conclude computes the ratios, the findings and the verdict.
func (r *Results) conclude() {
	r.Ratios = map[string]float64{}
	if r.Load != nil && r.Baselines != nil {
		b := r.Baselines
		if b.RSA != nil && b.RSA.MessagesPerSec > 0 {
			r.Ratios["delivered_per_sec / rsa_bound_msg_per_sec"] = r.Load.DeliveredPerSec / b.RSA.MessagesPerSec
			r.Ratios["accepted_per_sec / rsa_bound_msg_per_sec"] = r.Load.AcceptedPerSec / b.RSA.MessagesPerSec
		}
		if b.Badger != nil && b.Badger.RecordsPerSec > 0 {
			r.Ratios["ledger_entries_per_sec / badger_records_per_sec"] = r.Load.LedgerEntriesPerSec / b.Badger.RecordsPerSec
		}
		if b.Postfix != nil && b.Postfix.AcceptedPerSec > 0 {
			r.Ratios["accepted_per_sec / postfix_accepted_per_sec"] = r.Load.AcceptedPerSec / b.Postfix.AcceptedPerSec
			if b.Postfix.AckP50ms > 0 {
				r.Ratios["ack_p50 / postfix_ack_p50"] = r.Load.AckP50ms / b.Postfix.AckP50ms
			}
		}
	}
	pass := len(r.Errors) == 0
	for _, f := range r.Faults {
		if f.Lost > 0 || f.MissingFromLedger > 0 {
			r.Findings = append(r.Findings, fmt.Sprintf("%s: %d acknowledged messages lost (%d not in the ledger), e.g. %v", f.Fault, f.Lost, f.MissingFromLedger, f.LostExamples))
		}
		for _, k := range f.AfterKill {
			if k.Missing > 0 {
				r.Findings = append(r.Findings, fmt.Sprintf("kill %d: %d of %d acknowledged messages not in the ledger right after SIGKILL", k.Kill, k.Missing, k.Acked))
			}
		}
		for _, c := range f.Crashes {
			r.Findings = append(r.Findings, fmt.Sprintf("%s: %s (see its serve log in the work directory)", f.Fault, c))
		}
		if !f.OK {
			pass = false
			r.Findings = append(r.Findings, fmt.Sprintf("%s: checks failed (drained %v, sealing caught up %v, queues %d/%d, ledger verify A %v B %v, crashes %v) %s",
				f.Fault, f.Drained, f.SealCaughtUp, f.QueueA, f.QueueB, f.LedgerVerifyA, f.LedgerVerifyB, f.Crashes, strings.Join(f.Notes, "; ")))
		}
		if f.Fault != "load" && f.Fault != "hostile" && !f.Audit.ShowsOutage {
			r.Findings = append(r.Findings, fmt.Sprintf("%s: the audit report of the period does not show the outage (no timestamp gap, finding or P02 row; delivery max %.1f s)", f.Fault, f.Audit.DeliveryMaxs))
		}
	}
	if hr := r.Hostile; hr != nil {
		for _, p := range slices.Sorted(maps.Keys(hr.Probes)) {
			if hr.Probes[p] != "ok" {
				pass = false
				r.Findings = append(r.Findings, fmt.Sprintf("hostile: the %s probe failed under attack: %s", p, hr.Probes[p]))
			}
		}
		if hr.Ratio > MaxHostileRatio || hr.Delivered == 0 {
			pass = false
			r.Findings = append(r.Findings, fmt.Sprintf("hostile: p99 time to the ricevuta di avvenuta consegna %.0f ms, %.2f× the load phase's (at most %.0f×)", hr.ConsegnaP99ms, hr.Ratio, MaxHostileRatio))
		}
		for _, g := range slices.Sorted(maps.Keys(hr.PeakRSSMiB)) {
			if hr.PeakRSSMiB[g] >= MaxHostileRSSMiB {
				pass = false
				r.Findings = append(r.Findings, fmt.Sprintf("hostile: %s peak RSS %.0f MiB under attack (under %d wanted)", g, hr.PeakRSSMiB[g], MaxHostileRSSMiB))
			}
		}
	}
	for _, t := range r.Tamper {
		if t.Detected < t.Flips || t.Named < t.Flips || len(t.Misses) > 0 {
			pass = false
			r.Findings = append(r.Findings, fmt.Sprintf("%s: %d of %d flips detected, %d named: %v", t.Target, t.Detected, t.Flips, t.Named, t.Misses))
		}
	}
	for _, f := range r.Fuzz {
		if !f.OK {
			pass = false
			r.Findings = append(r.Findings, fmt.Sprintf("fuzz %s %s failed", f.Package, f.Target))
		}
	}
	r.Pass = pass
}

// Markdown renders the results as short tables.
func (r *Results) Markdown() string {
	var s strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&s, "## custode-bench (%s mode): %s\n\n", r.Mode, verdict)
	fmt.Fprintf(&s, "%s, %d CPUs, %s, %d clients, wall time %.0f s\n\n", r.Started.Format(time.RFC3339), r.CPUs, r.GoVersion, r.Clients, r.WallSeconds)
	if l := r.Load; l != nil {
		fmt.Fprintf(&s, "### Load (%.0f s, %d clients)\n\n| measure | value |\n|---|---|\n", l.Seconds, l.Clients)
		fmt.Fprintf(&s, "| accepted (250) | %d, %.1f msg/s |\n", l.Accepted, l.AcceptedPerSec)
		fmt.Fprintf(&s, "| delivered (ricevuta di avvenuta consegna in the sender's mailbox) | %d, %.1f msg/s (all: %v, drain %.1f s) |\n", l.Delivered, l.DeliveredPerSec, l.AllDelivered, l.DrainSeconds)
		fmt.Fprintf(&s, "| time to 250, p50 / p99 | %.1f / %.1f ms |\n", l.AckP50ms, l.AckP99ms)
		fmt.Fprintf(&s, "| time to ricevuta di avvenuta consegna, p50 / p99 | %.1f / %.1f ms |\n", l.ConsegnaP50ms, l.ConsegnaP99ms)
		fmt.Fprintf(&s, "| gestore A ledger entries/s | %.1f |\n", l.LedgerEntriesPerSec)
		for _, p := range l.Processes {
			fmt.Fprintf(&s, "| %s | %.1f CPU s (%.2f cores, %.1f ms/msg), peak RSS %.0f MiB |\n", p.Name, p.CPUSeconds, p.CPUCores, p.CPUmsPerMessage, p.PeakRSSMiB)
		}
		if len(l.Errors) > 0 {
			fmt.Fprintf(&s, "| client errors | %s |\n", counts(l.Errors))
		}
		s.WriteString("\n")
	}
	if hr := r.Hostile; hr != nil {
		fmt.Fprintf(&s, "### Hostile (%.0f s under attack)\n\n| measure | value |\n|---|---|\n", hr.Seconds)
		fmt.Fprintf(&s, "| legitimate: accepted, delivered | %d, %d |\n", hr.Accepted, hr.Delivered)
		fmt.Fprintf(&s, "| legitimate: time to ricevuta di avvenuta consegna p99 | %.0f ms (load phase %.0f ms, ratio %.2f) |\n", hr.ConsegnaP99ms, hr.LoadConsegnaP99ms, hr.Ratio)
		for _, g := range slices.Sorted(maps.Keys(hr.PeakRSSMiB)) {
			fmt.Fprintf(&s, "| %s peak RSS | %.0f MiB |\n", g, hr.PeakRSSMiB[g])
		}
		fmt.Fprintf(&s, "| idle connections to B's ricezione | %d dialled from %d addresses, %d refused at connect; at the end %d open, %d closed by B |\n",
			hr.IdleDialled, hr.SourceAddrs, hr.IdleRefused, hr.IdleOpen, hr.IdleClosed)
		for _, a := range slices.Sorted(maps.Keys(hr.Replies)) {
			fmt.Fprintf(&s, "| %s | %s |\n", a, counts(hr.Replies[a]))
		}
		for _, p := range slices.Sorted(maps.Keys(hr.Probes)) {
			fmt.Fprintf(&s, "| probe under attack: %s | %s |\n", p, hr.Probes[p])
		}
		s.WriteString("\n")
	}
	if b := r.Baselines; b != nil {
		s.WriteString("### Baselines (same run)\n\n| baseline | result |\n|---|---|\n")
		if b.RSA != nil {
			fmt.Fprintf(&s, "| RSA-%d signing, gestore's key, all cores | %.0f signatures/s = %.1f msg/s at %d per message |\n", b.RSA.KeyBits, b.RSA.SignaturesPerSec, b.RSA.MessagesPerSec, b.RSA.PerMessage)
		}
		if b.Badger != nil {
			fmt.Fprintf(&s, "| raw badger, synced batches of %d records of %d bytes | %.0f records/s |\n", b.Badger.Batch, b.Badger.RecordBytes, b.Badger.RecordsPerSec)
		}
		if p := b.Postfix; p != nil {
			if p.Skipped != "" {
				fmt.Fprintf(&s, "| Postfix relay to discard | not run: %s |\n", p.Skipped)
			} else {
				fmt.Fprintf(&s, "| Postfix %s relay to discard, same clients (STARTTLS, no AUTH) | %.1f msg/s accepted, 250 p50 / p99 %.1f / %.1f ms, %.1f CPU s |\n", p.Version, p.AcceptedPerSec, p.AckP50ms, p.AckP99ms, p.CPUSeconds)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(r.Ratios)) {
			fmt.Fprintf(&s, "| ratio %s | %.3f |\n", k, r.Ratios[k])
		}
		s.WriteString("\n")
	}
	if len(r.Faults) > 0 {
		s.WriteString("### Faults under load, and the checks after each\n\n")
		s.WriteString("| phase | acked (during fault) | client errors | lost | in ledger | drained | queues A/B | sealing caught up | ledger verify A/B | audit | OK |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range r.Faults {
			audit := fmt.Sprintf("%d tx, %d findings, %d ts gaps, P02 %d rows, delivery max %.1f s", f.Audit.Transactions, f.Audit.FindingCount, len(f.Audit.TimestampGaps), f.Audit.P02Rows, f.Audit.DeliveryMaxs)
			if f.Audit.Error != "" {
				audit = "error: " + f.Audit.Error
			}
			if f.Fault != "load" {
				audit += fmt.Sprintf("; shows the outage: %v", f.Audit.ShowsOutage)
			}
			fmt.Fprintf(&s, "| %s | %d (%d) | %s | %d | %d missing | %v (%.1f s) | %d/%d | %v (%d/%d; %d ts pending warnings, %d seal retries) | %v/%v | %s | %v |\n",
				f.Fault, f.Acked, f.AckedDuringFault, counts(f.ClientErrors), f.Lost, f.MissingFromLedger, f.Drained, f.DrainSeconds, f.QueueA, f.QueueB,
				f.SealCaughtUp, f.SealedTo, f.LastCheckpoint, f.PendingStampWarnings, f.SealRetries, f.LedgerVerifyA, f.LedgerVerifyB, audit, f.OK)
		}
		s.WriteString("\n")
		for _, f := range r.Faults {
			if f.Detail != "" {
				fmt.Fprintf(&s, "- %s: %s", f.Fault, f.Detail)
				if len(f.AfterKill) > 0 {
					missing := 0
					for _, k := range f.AfterKill {
						missing += k.Missing
					}
					fmt.Fprintf(&s, "; after each of the %d kills, acknowledged messages missing from the ledger: %d", len(f.AfterKill), missing)
				}
				if len(f.Crashes) > 0 {
					fmt.Fprintf(&s, "; crashes: %s", strings.Join(f.Crashes, "; "))
				}
				if len(f.LogErrors) > 0 {
					fmt.Fprintf(&s, "; A's log errors: %s", counts(f.LogErrors))
				}
				for _, n := range f.Notes {
					fmt.Fprintf(&s, "; %s", n)
				}
				s.WriteString("\n")
			}
		}
		s.WriteString("\n")
	}
	if len(r.Tamper) > 0 {
		s.WriteString("### Tampering\n\n| evidence | verifier | flips | detected | named |\n|---|---|---|---|---|\n")
		for _, t := range r.Tamper {
			fmt.Fprintf(&s, "| %s | %s | %d | %d | %d |\n", t.Target, t.Verifier, t.Flips, t.Detected, t.Named)
		}
		s.WriteString("\n")
	}
	if len(r.Fuzz) > 0 {
		s.WriteString("### Fuzzing\n\n| package | target | seconds | ok |\n|---|---|---|---|\n")
		for _, f := range r.Fuzz {
			fmt.Fprintf(&s, "| %s | %s | %.0f | %v |\n", f.Package, f.Target, f.Seconds, f.OK)
		}
		s.WriteString("\n")
	}
	if len(r.Skipped) > 0 {
		s.WriteString("### Not run\n\n")
		for _, k := range slices.Sorted(maps.Keys(r.Skipped)) {
			fmt.Fprintf(&s, "- %s: %s\n", k, r.Skipped[k])
		}
		s.WriteString("\n")
	}
	if len(r.Findings) > 0 {
		s.WriteString("### Findings\n\n")
		for _, f := range r.Findings {
			fmt.Fprintf(&s, "- %s\n", f)
		}
		s.WriteString("\n")
	}
	if len(r.Errors) > 0 {
		s.WriteString("### Errors\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&s, "- %s\n", e)
		}
	}
	return s.String()
}

// counts writes a map of counts as "key n, key n" in key order, "none"
// when empty.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
