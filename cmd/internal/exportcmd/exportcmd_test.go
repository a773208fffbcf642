package exportcmd

import (
	"testing"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
)

// TestPeriodDaysInRome: -from and -to given as days mean those days in
// Europe/Rome (they meant UTC midnight, an hour late in Italian winter).
func TestPeriodDaysInRome(t *testing.T) {
	for _, tc := range []struct{ from, to, wantFrom, wantTo string }{
		{"2026-12-03", "2026-12-04", "2026-12-02T23:00:00Z", "2026-12-03T23:00:00Z"},
		{"2026-03-29", "2026-03-30", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"},
		{"2026-10-25", "2026-10-26", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"},
		{"2026-12-03T00:00:00Z", "2026-12-04", "2026-12-03T00:00:00Z", "2026-12-03T23:00:00Z"},
	} {
		f, to, err := ParsePeriod(tc.from, tc.to)
		if err != nil {
			t.Fatalf("%s..%s: %v", tc.from, tc.to, err)
		}
		if got := f.UTC().Format(time.RFC3339); got != tc.wantFrom {
			t.Errorf("-from %s: %s, want %s", tc.from, got, tc.wantFrom)
		}
		if got := to.UTC().Format(time.RFC3339); got != tc.wantTo {
			t.Errorf("-to %s: %s, want %s", tc.to, got, tc.wantTo)
		}
	}
	if _, err := cli.ParseTimeFlag("from", "03/12/2026"); err == nil {
		t.Error("03/12/2026 accepted")
	}
}
