package ledger

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestRecordOutageCause: whatever the cause's bytes, the outage is
// recorded, and the cause kept is valid UTF-8 within the detail's limit.
func TestRecordOutageCause(t *testing.T) {
	tests := []struct {
		name, cause, want string
	}{
		{"empty", "", "unknown"},
		{"plain", "connection refused", "connection refused"},
		{"accent cut in half at the limit", strings.Repeat("a", MaxOutageCause-1) + "è", strings.Repeat("a", MaxOutageCause-1)},
		{"long", strings.Repeat("é", 5000), strings.Repeat("é", MaxOutageCause/2)},
		{"invalid UTF-8", "dial \xff\xfe failed", "dial \uFFFD failed"},
		{"NUL", "a\x00b", "ab"},
		{"only NUL", "\x00", "unknown"},
	}
	l := openTest(t, t.TempDir(), nil)
	ctx := context.Background()
	now := time.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := l.RecordOutage(ctx, "pec.alfa.test", "tsa", now.Add(-time.Minute), now, tt.cause); err != nil {
				t.Fatalf("RecordOutage: %v", err)
			}
			e, _, err := l.Entry(ctx, l.Head().Size-1)
			if err != nil {
				t.Fatal(err)
			}
			got := e.Event.Details[DetailOutageCause]
			if got != tt.want {
				t.Errorf("cause %q (%d bytes), want %q", trim(got), len(got), trim(tt.want))
			}
			if !utf8.ValidString(got) || len(got) > MaxOutageCause {
				t.Errorf("cause is not a valid detail: %d bytes", len(got))
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
