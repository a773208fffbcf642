package retention

import (
	"fmt"
	"io"
	"time"

	"github.com/custode/custode/ledger"
)

// WriteText writes the plan for people: one line per object with why it
// is part of the plan, then the count (and, for a purge, how many were
// kept).
func (p *Plan) WriteText(w io.Writer) error {
	verb := map[string]string{"place": "held", "release": "released", "purge": "purged"}[p.Action]
	if p.DryRun {
		verb = "would be " + verb
	}
	for _, o := range p.Objects {
		if _, err := fmt.Fprintf(w, "%s %s (version %s): %s\n", verb, o.Key, o.VersionID, o.Why); err != nil {
			return err
		}
	}
	kept := ""
	if p.Action == "purge" {
		kept = fmt.Sprintf(", %d kept", p.Kept)
	}
	_, err := fmt.Fprintf(w, "%d objects %s%s\n", len(p.Objects), verb, kept)
	return err
}

// String is the hold on one line, tab-separated: case, state, when and by
// whom it was placed, how many objects it holds, the reason and the scope.
func (h *Hold) String() string {
	state := "in force"
	if !h.Active() {
		state = "released " + h.Released.Format(time.RFC3339)
	}
	return fmt.Sprintf("%s\t%s\tplaced %s by %s\t%d objects\t%s\tscope mailbox=%q ids=%v from=%s to=%s",
		h.Case, state, h.Placed.Format(time.RFC3339), h.Actor, len(h.Objects), h.Reason,
		h.Scope.Mailbox, h.Scope.Identificativi, orDash(h.Scope.From), orDash(h.Scope.To))
}

func orDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// WriteText writes the plan for people: the ranges of entries purged, if
// any, then the counts and the retention they follow.
func (p *LogPlan) WriteText(w io.Writer) error {
	verb := "purged"
	if p.DryRun {
		verb = "would be purged"
	}
	if ranges, _ := ledger.FormatRanges(p.Entries, 0); ranges != "" {
		if _, err := fmt.Fprintf(w, "ledger entries %s: %s (their hashes stay in the tree)\n", verb, ranges); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d ledger entries %s, %d kept under a legal hold, %d kept until sealed (log retention %s, exports %s)\n",
		len(p.Entries), verb, p.Held, p.Unsealed, p.Retention.Log, p.Retention.Exports)
	return err
}
