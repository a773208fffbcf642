package retention

import (
	"strings"
	"testing"
	"time"
)

func TestPlanWriteText(t *testing.T) {
	objs := []Object{{Key: "k1", VersionID: "v1", Why: "entry 3"}}
	tests := []struct {
		plan Plan
		want string
	}{
		{Plan{Action: "place", Objects: objs}, "held k1 (version v1): entry 3\n1 objects held\n"},
		{Plan{Action: "release", DryRun: true}, "0 objects would be released\n"},
		{Plan{Action: "purge", Objects: objs, Kept: 4}, "purged k1 (version v1): entry 3\n1 objects purged, 4 kept\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		if err := tt.plan.WriteText(&b); err != nil || b.String() != tt.want {
			t.Errorf("%+v: %q, %v; want %q", tt.plan, b.String(), err, tt.want)
		}
	}
}

func TestHoldString(t *testing.T) {
	placed := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	h := Hold{Case: "C1", Reason: "court", Actor: "op", Placed: placed, Scope: Scope{Mailbox: "a@pec.test", From: placed}, Objects: []string{"x"}}
	want := "C1\tin force\tplaced 2026-11-23T10:00:00Z by op\t1 objects\tcourt\tscope mailbox=\"a@pec.test\" ids=[] from=2026-11-23T10:00:00Z to=-"
	if got := h.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	h.Released = placed.Add(time.Hour)
	if got := h.String(); !strings.Contains(got, "\treleased 2026-11-23T11:00:00Z\t") {
		t.Errorf("released hold: %q", got)
	}
}

func TestLogPlanWriteText(t *testing.T) {
	keep := LogRetention{Log: LegalMinimum(), Exports: LegalMinimum()}
	for _, tt := range []struct {
		plan LogPlan
		want string
	}{
		{LogPlan{Retention: keep}, "0 ledger entries purged, 0 kept under a legal hold, 0 kept until sealed (log retention 30 months, exports 30 months)\n"},
		{LogPlan{DryRun: true, Entries: []uint64{3, 4, 5, 9}, Held: 1, Unsealed: 2, Retention: keep},
			"ledger entries would be purged: 3-5,9 (their hashes stay in the tree)\n4 ledger entries would be purged, 1 kept under a legal hold, 2 kept until sealed (log retention 30 months, exports 30 months)\n"},
	} {
		var b strings.Builder
		if err := tt.plan.WriteText(&b); err != nil || b.String() != tt.want {
			t.Errorf("got %q, %v\nwant %q", b.String(), err, tt.want)
		}
	}
}
