package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
)

// TestLoginThrottle: Basic failures of one titolare are throttled for
// that titolare at that address only (429 with the store's Retry-After,
// no lockout of the others), and every failed or throttled login, a bad
// bearer token and a refusal by the per-address limit included, is in
// the ledger once the window closes, aggregated per account and address.
func TestLoginThrottle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	ms, err := mailstore.Open(ctx, mailstore.Options{Dir: t.TempDir(), PasswordIterations: 1000, Now: clock,
		MaxFailures: 3, LoginDelay: time.Hour, MaxLoginDelay: 2 * time.Hour, Ledger: f.ledger})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	for addr, pw := range map[string]string{mailA: passA, mailB: passB} {
		if err := ms.AddMailbox(ctx, addr, pw, 0); err != nil {
			t.Fatal(err)
		}
	}
	ts := f.server(t, func(o *httpapi.Options) {
		o.Mailboxes = ms
		o.Now = clock
		o.PerRemote = httpapi.RateLimit{Rate: 0.001, Burst: 6}
	})
	url := ts.URL + "/v1/entries?kind=accettazione"
	steps := []struct {
		name  string
		who   who
		want  int
		retry string
	}{
		{"wrong 1", basic(mailA, "sbagliata"), http.StatusUnauthorized, ""},
		{"wrong 2", basic(mailA, "sbagliata"), http.StatusUnauthorized, ""},
		{"wrong 3", basic(mailA, "sbagliata"), http.StatusUnauthorized, ""},
		{"right, throttled", basic(mailA, passA), http.StatusTooManyRequests, "3600"},
		{"another titolare from the same address", basic(mailB, passB), http.StatusOK, ""},
		{"bad bearer token", bearer("not-a-token"), http.StatusUnauthorized, ""},
		{"past the per-address limit", basic(mailA, "sbagliata"), http.StatusTooManyRequests, ""},
	}
	for _, st := range steps {
		resp, body := get(t, nil, url, st.who)
		if resp.StatusCode != st.want {
			t.Fatalf("%s: status %d, want %d: %s", st.name, resp.StatusCode, st.want, body)
		}
		if st.retry != "" && resp.Header.Get("Retry-After") != st.retry {
			t.Fatalf("%s: Retry-After %q, want %q", st.name, resp.Header.Get("Retry-After"), st.retry)
		}
	}
	// Close ends the window: the counts go to the ledger.
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := f.ledger.Find(ctx, ledger.Query{Kind: ledger.KindLoginFailures})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]string{}
	for _, e := range p.Entries {
		got[e.Details[ledger.DetailLoginAccount]] = e.Details
	}
	if len(p.Entries) != 2 {
		t.Fatalf("%d login-failures entries, want 2: %v", len(p.Entries), got)
	}
	if a := got[mailA]; a[ledger.DetailLoginFailed] != "3" || a[ledger.DetailLoginThrottled] != "2" ||
		a[ledger.DetailLoginRemote] != "127.0.0.1" || a[ledger.DetailLoginServices] != "api" {
		t.Errorf("entry of %s: %v", mailA, a)
	}
	if b := got[""]; b[ledger.DetailLoginFailed] != "1" || b[ledger.DetailLoginThrottled] != "" {
		t.Errorf("entry of the bad token: %v", b)
	}
}
