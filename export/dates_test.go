package export

import (
	"testing"
	"time"
)

func TestParseDay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string // want in UTC, "" for an error
		hours    int    // length of the day in hours
	}{
		{"2026-12-03", "2026-12-02T23:00:00Z", 24},
		{"2026-07-01", "2026-06-30T22:00:00Z", 24},
		// Daylight saving time starts on 29 March 2026 (02:00 CET -> 03:00 CEST).
		{"2026-03-28", "2026-03-27T23:00:00Z", 24},
		{"2026-03-29", "2026-03-28T23:00:00Z", 23},
		{"2026-03-30", "2026-03-29T22:00:00Z", 24},
		// and ends on 25 October 2026 (03:00 CEST -> 02:00 CET).
		{"2026-10-25", "2026-10-24T22:00:00Z", 25},
		{"2026-10-26", "2026-10-25T23:00:00Z", 24},
		{"2026-02-30", "", 0},
		{"03/12/2026", "", 0},
		{"2026-12-03T00:00:00Z", "", 0},
		{"", "", 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDay(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ParseDay(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := got.UTC().Format(time.RFC3339); s != tc.want {
				t.Errorf("ParseDay(%q) = %s, want %s", tc.in, s, tc.want)
			}
			next, err := ParseDay(got.AddDate(0, 0, 1).Format(DayLayout))
			if err != nil {
				t.Fatal(err)
			}
			if h := next.Sub(got).Hours(); h != float64(tc.hours) {
				t.Errorf("%s lasts %v hours, want %d", tc.in, h, tc.hours)
			}
			if f := FormatTime(got); f[:10] != tc.in[8:10]+"/"+tc.in[5:7]+"/"+tc.in[:4] || f[11:19] != "00:00:00" {
				t.Errorf("FormatTime(ParseDay(%q)) = %s, want that day at 00:00:00", tc.in, f)
			}
		})
	}
}

func TestParseTimeOrDay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"2026-12-03", "2026-12-02T23:00:00Z"},
		{"2026-12-03T00:00:00Z", "2026-12-03T00:00:00Z"},
		{"2026-12-03T10:00:00+01:00", "2026-12-03T09:00:00Z"},
		{"2026-12-03T10:00:00.5Z", "2026-12-03T10:00:00.5Z"},
		{"2026-12-03 10:00", ""},
		{"yesterday", ""},
	} {
		got, err := ParseTimeOrDay(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("ParseTimeOrDay(%q) = %v, want an error", tc.in, got)
		case tc.want != "" && err != nil:
			t.Errorf("ParseTimeOrDay(%q): %v", tc.in, err)
		case tc.want != "" && got.UTC().Format(time.RFC3339Nano) != tc.want:
			t.Errorf("ParseTimeOrDay(%q) = %s, want %s", tc.in, got.UTC().Format(time.RFC3339Nano), tc.want)
		}
	}
}
