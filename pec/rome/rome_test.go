package rome

import (
	"testing"
	"time"
)

func TestLocation(t *testing.T) {
	loc, err := Location()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		t    time.Time
		want int
	}{
		{time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC), 3600},
		{time.Date(2026, 7, 15, 12, 0, 0, 0, time.UTC), 7200},
	} {
		if _, off := tt.t.In(loc).Zone(); off != tt.want {
			t.Errorf("%v: offset %d, want %d", tt.t, off, tt.want)
		}
	}
	if again, _ := Location(); again != loc {
		t.Error("a second call gave another location")
	}
}
