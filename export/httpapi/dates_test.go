package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/custode/custode/export"
)

// TestPlainDay: from and to accept a day, meaning its start in
// Europe/Rome as on the command line: the same answer as the RFC 3339
// instant export.ParseDay gives.
func TestPlainDay(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ts := f.server(t, nil)
	count := func(from, to string) int {
		t.Helper()
		resp, body := get(t, nil, ts.URL+"/v1/entries?kind=accettazione&from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to), f.as("olga"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("from=%s&to=%s: %d %s", from, to, resp.StatusCode, body)
		}
		var page struct {
			Entries []json.RawMessage `json:"entries"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Entries)
	}
	rome := export.Rome()
	day := f.base.In(rome).Format(export.DayLayout)
	after := f.base.In(rome).AddDate(0, 0, 2).Format(export.DayLayout)
	asInstant := func(d string) string {
		t.Helper()
		x, err := export.ParseDay(d)
		if err != nil {
			t.Fatal(err)
		}
		return x.Format(time.RFC3339)
	}
	n := count(day, after)
	if n == 0 {
		t.Fatalf("no accettazione from %s to %s", day, after)
	}
	if m := count(asInstant(day), asInstant(after)); m != n {
		t.Errorf("days %s..%s: %d entries; the same as RFC 3339 instants: %d", day, after, n, m)
	}
	if m := count(after, f.base.In(rome).AddDate(0, 0, 3).Format(export.DayLayout)); m != 0 {
		t.Errorf("%d entries in the days after the fixture's", m)
	}
}
