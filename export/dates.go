package export

import (
	"fmt"
	"time"
	_ "time/tzdata" // Europe/Rome even where the system has no zoneinfo: a date must never silently mean UTC
)

// DayLayout is how a day is written on a command line or in an API query:
// 2026-12-03.
const DayLayout = "2006-01-02"

// Rome returns the Europe/Rome location, in which PEC documents and the
// days given on a command line or in an API query are read.
func Rome() *time.Location { return rome() }

// ParseDay reads a day written as DayLayout and returns its first instant
// in Europe/Rome: 2026-12-03 is 2026-12-02T23:00:00Z, and around a change
// of daylight saving time a day is 23 or 25 hours long.
func ParseDay(s string) (time.Time, error) {
	t, err := time.ParseInLocation(DayLayout, s, rome())
	if err != nil {
		return time.Time{}, fmt.Errorf("export: want a day such as 2026-12-03, got %q", s)
	}
	return t, nil
}

// ParseTimeOrDay reads an RFC 3339 time (2026-12-03T10:00:00+01:00), or a
// day as ParseDay does (its start in Europe/Rome). It is how the command
// line and the HTTP API read -from and -to alike.
func ParseTimeOrDay(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := ParseDay(s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("export: want a day (2026-12-03, in Europe/Rome) or an RFC 3339 time (2026-12-03T10:00:00+01:00), got %q", s)
}
