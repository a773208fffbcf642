package httpapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
)

func esc(s string) string { return url.QueryEscape(s) }

// assertHidden asks for hidden (something that exists and the principal
// may not see) and for absent (something that does not exist): the two
// answers must be the same but for a number (a sequence number), and the
// first must be recorded in the ledger as denied.
func assertHidden(t *testing.T, f *fixture, base string, w who, actor, hidden, absent string) {
	t.Helper()
	count := func() int {
		return len(f.records(t, ledger.KindQuery, actor)) + len(f.records(t, ledger.KindExport, actor))
	}
	before := count()
	respH, bodyH := get(t, nil, base+hidden, w)
	respA, bodyA := get(t, nil, base+absent, w)
	digits := func(b []byte) string { return regexp.MustCompile(`[0-9]+`).ReplaceAllString(string(b), "N") }
	if respH.StatusCode != http.StatusNotFound || respA.StatusCode != http.StatusNotFound || digits(bodyH) != digits(bodyA) ||
		respH.Header.Get("Content-Type") != respA.Header.Get("Content-Type") {
		t.Errorf("%s: status %d %s; %s: status %d %s", hidden, respH.StatusCode, bodyH, absent, respA.StatusCode, bodyA)
	}
	var recs []*ledger.Entry
	for _, k := range []ledger.Kind{ledger.KindQuery, ledger.KindExport} {
		recs = append(recs, f.records(t, k, actor)...)
	}
	if len(recs) != before+2 {
		t.Fatalf("%d records, want %d", len(recs), before+2)
	}
	slices.SortFunc(recs, func(a, b *ledger.Entry) int { return int(a.Seq) - int(b.Seq) })
	if got := recs[len(recs)-2].Details["outcome"]; got != "denied" {
		t.Errorf("%s recorded as %q, want denied", hidden, got)
	}
	if got := recs[len(recs)-1].Details["outcome"]; got != "not_found" {
		t.Errorf("%s recorded as %q, want not_found", absent, got)
	}
}

// TestTitolare: a titolare sees their own transactions and log only; what
// they ask for, allowed or not, is in the ledger before the answer.
func TestTitolare(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ts := f.server(t, nil)
	exportsBefore := len(f.records(t, ledger.KindExport, "titolare:"+mailA))

	t.Run("own extract", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/v1/exports/extract?from="+esc(since(f)), f.titolareA())
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" {
			t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		f.verifyZip(t, body)
		doc := string(zipFile(t, body, export.FileExtract))
		for _, name := range []string{"a-to-c", "b-to-a"} {
			if !strings.Contains(doc, f.ids[name]) {
				t.Errorf("the extract lacks %s", name)
			}
		}
		if strings.Contains(doc, f.ids["b-to-d"]) {
			t.Error("the extract holds a transaction of another mailbox")
		}
	})

	t.Run("own entries", func(t *testing.T) {
		for _, query := range []string{"kind=accettazione", "mailbox=" + esc(strings.ToUpper(mailA)), "message_id=" + esc("<b-to-a@client>"),
			"identificativo=" + esc(f.ids["b-to-a"])} {
			resp, body := get(t, nil, ts.URL+"/v1/entries?"+query, f.titolareA())
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d: %s", query, resp.StatusCode, body)
			}
			p := decodePage(t, body)
			if len(p.Entries) == 0 {
				t.Errorf("%s: no entries", query)
			}
			for _, e := range p.entries(t) {
				if e.Mittente != mailA && e.Destinatari[0].Address != mailA {
					t.Errorf("%s: entry %d of %s to %s", query, e.Seq, e.Mittente, e.Destinatari[0].Address)
				}
			}
		}
		// Another mailbox's transaction, asked by identificativo: nothing.
		resp, body := get(t, nil, ts.URL+"/v1/entries?identificativo="+esc(f.ids["b-to-d"]), f.titolareA())
		if p := decodePage(t, body); resp.StatusCode != http.StatusOK || len(p.Entries) != 0 {
			t.Errorf("another's identificativo: status %d, %d entries", resp.StatusCode, len(p.Entries))
		}
	})

	t.Run("entry with proof", func(t *testing.T) {
		seq := f.seqOf(t, "b-to-a", ledger.KindAvvenutaConsegna)
		resp, body := get(t, nil, ts.URL+"/v1/entries/"+strconv.FormatUint(seq, 10), f.titolareA())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var got struct {
			Seq        uint64        `json:"seq"`
			Canonical  string        `json:"canonical"`
			Proof      *export.Proof `json:"proof"`
			Checkpoint *struct {
				Size    uint64 `json:"size"`
				Root    string `json:"root"`
				Token   string `json:"token"`
				Pending bool   `json:"pending"`
			} `json:"checkpoint"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		_, raw, err := f.ledger.Entry(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq != seq || got.Canonical != string(raw) || got.Proof == nil || got.Checkpoint == nil ||
			got.Proof.Root != got.Checkpoint.Root || got.Checkpoint.Pending || got.Checkpoint.Token == "" {
			t.Fatalf("answer: %s", body)
		}
		hashes, err := f.ledger.InclusionProof(context.Background(), seq, got.Checkpoint.Size)
		if err != nil || len(hashes) != len(got.Proof.Hashes) {
			t.Errorf("proof of %d hashes, ledger gives %d (%v)", len(got.Proof.Hashes), len(hashes), err)
		}
		// Another's entry is answered as an entry that does not exist
		// (issue 16, finding 13), and recorded as denied.
		other := f.seqOf(t, "b-to-d", ledger.KindAccettazione)
		assertHidden(t, f, ts.URL, f.titolareA(), "titolare:"+mailA,
			"/v1/entries/"+strconv.FormatUint(other, 10), "/v1/entries/"+strconv.FormatUint(f.ledger.Head().Size+1000, 10))
	})

	t.Run("own receipt", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/v1/exports/receipt?kind=avvenuta-consegna&identificativo="+esc(f.ids["b-to-a"]), f.titolareA())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if rep := f.verifyZip(t, body); !rep.Reproduction || rep.Entry.Kind != ledger.KindAvvenutaConsegna {
			t.Errorf("bundle of %v (reproduction %v)", rep.Entry.Kind, rep.Reproduction)
		}
		assertHidden(t, f, ts.URL, f.titolareA(), "titolare:"+mailA,
			"/v1/exports/receipt?identificativo="+esc(f.ids["b-to-d"]), "/v1/exports/receipt?identificativo="+esc("opec-nessuna@pec.alfa.test"))
	})

	t.Run("another's log", func(t *testing.T) {
		for _, path := range []string{
			"/v1/exports/extract?mailbox=" + esc(mailB) + "&from=" + esc(since(f)),
			"/v1/entries?mailbox=" + esc(mailB),
		} {
			before := len(f.records(t, ledger.KindQuery, "titolare:"+mailA)) + len(f.records(t, ledger.KindExport, "titolare:"+mailA))
			resp, body := get(t, nil, ts.URL+path, f.titolareA())
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"code":"forbidden"`) {
				t.Fatalf("%s: status %d: %s", path, resp.StatusCode, body)
			}
			var denied []*ledger.Entry
			for _, k := range []ledger.Kind{ledger.KindQuery, ledger.KindExport} {
				denied = append(denied, f.records(t, k, "titolare:"+mailA)...)
			}
			if len(denied) != before+1 {
				t.Fatalf("%s: %d records, want %d", path, len(denied), before+1)
			}
			slices.SortFunc(denied, func(a, b *ledger.Entry) int { return int(a.Seq) - int(b.Seq) })
			last := denied[len(denied)-1]
			if last.Details["outcome"] != "denied" || !strings.Contains(last.Details["query"], "bruno") || last.Details["auth"] != "basic" {
				t.Errorf("%s: recorded %v", path, last.Details)
			}
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/v1/entries?kind=accettazione", nobody)
		if resp.StatusCode != http.StatusUnauthorized || !slices.ContainsFunc(resp.Header.Values("WWW-Authenticate"), func(v string) bool { return strings.HasPrefix(v, "Basic ") }) {
			t.Errorf("status %d, WWW-Authenticate %q: %s", resp.StatusCode, resp.Header.Values("WWW-Authenticate"), body)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		for _, w := range []who{basic(mailA, "sbagliata"), basic("nessuno@pec.alfa.test", passA), basic(mailA, passB)} {
			resp, body := get(t, nil, ts.URL+"/v1/entries?kind=accettazione", w)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
		}
	})

	t.Run("every export recorded", func(t *testing.T) {
		var allowed int
		for _, e := range f.records(t, ledger.KindExport, "titolare:"+mailA)[exportsBefore:] {
			if e.Details["outcome"] == "allowed" {
				allowed++
				if e.Details["what"] == "" || e.Details["endpoint"] == "" {
					t.Errorf("export record %v", e.Details)
				}
			}
		}
		if allowed != 2 { // the extract and the receipt
			t.Errorf("%d exports recorded as allowed, want 2", allowed)
		}
	})
}

func zipFile(t testing.TB, z []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRoles: operators and auditors see everything, only they get the
// audit report, legal users see what their holds cover and must say why.
func TestRoles(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ts := f.server(t, nil)
	idsOf := func(t *testing.T, body []byte) []string {
		var ids []string
		for _, e := range decodePage(t, body).entries(t) {
			if !slices.Contains(ids, e.Identificativo) {
				ids = append(ids, e.Identificativo)
			}
		}
		slices.Sort(ids)
		return ids
	}
	all := []string{f.ids["a-to-c"], f.ids["b-to-a"], f.ids["b-to-d"]}
	slices.Sort(all)
	period := "from=" + esc(since(f)) + "&to=" + esc(time.Now().Add(time.Hour).Format(time.RFC3339))
	cases := []struct {
		name   string
		who    who
		path   string
		status int
		ids    []string // for /v1/entries
	}{
		{"operator queries", f.as("olga"), "/v1/entries?kind=accettazione", 200, all},
		{"auditor queries", f.as("aldo"), "/v1/entries?kind=accettazione&reason=verifica", 200, all},
		{"operator audit", f.as("olga"), "/v1/audit?" + period, 200, nil},
		{"auditor audit", f.as("aldo"), "/v1/audit?" + period, 200, nil},
		{"titolare audit", f.titolareA(), "/v1/audit?" + period, 403, nil},
		{"legal audit", f.as("lea"), "/v1/audit?reason=causa&" + period, 403, nil},
		{"legal without reason", f.as("lea"), "/v1/entries?kind=accettazione", 400, nil},
		{"legal queries", f.as("lea"), "/v1/entries?kind=accettazione&reason=causa+C-1", 200, []string{f.ids["b-to-d"]}},
		{"legal reason header", f.as("lea"), "/v1/entries?mailbox=" + esc(mailB), 200, []string{f.ids["b-to-d"]}},
		{"legal by mailbox hold", f.as("leo"), "/v1/entries?kind=accettazione&reason=C-2", 200, []string{f.ids["b-to-a"], f.ids["b-to-d"]}},
		{"legal outside holds", f.as("lea"), "/v1/entries?identificativo=" + esc(f.ids["a-to-c"]) + "&reason=x", 200, nil},
		{"legal receipt", f.as("lea"), "/v1/exports/receipt?reason=C-1&identificativo=" + esc(f.ids["b-to-d"]), 200, nil},
		{"legal receipt outside", f.as("lea"), "/v1/exports/receipt?reason=C-1&identificativo=" + esc(f.ids["a-to-c"]), 404, nil},
		{"legal extract covered", f.as("leo"), "/v1/exports/extract?reason=C-2&mailbox=" + esc(mailB) + "&from=" + esc(f.base.Format(time.RFC3339)) + "&to=" + esc(f.base.Add(time.Hour).Format(time.RFC3339)), 200, nil},
		{"legal extract too long", f.as("leo"), "/v1/exports/extract?reason=C-2&mailbox=" + esc(mailB) + "&" + period, 403, nil},
		{"legal extract other mailbox", f.as("leo"), "/v1/exports/extract?reason=C-2&mailbox=" + esc(mailA) + "&from=" + esc(f.base.Format(time.RFC3339)), 403, nil},
		{"operator extract", f.as("olga"), "/v1/exports/extract?mailbox=" + esc(mailB) + "&" + period, 200, nil},
		{"operator receipt", f.as("olga"), "/v1/exports/receipt?kind=busta&identificativo=" + esc(f.ids["a-to-c"]), 200, nil},
		{"checkpoint", f.as("olga"), "/v1/checkpoints/latest", 200, nil},
		{"no role", f.as("nina"), "/v1/checkpoints/latest", 403, nil},
		{"unknown token", bearer("nonesiste"), "/v1/checkpoints/latest", 401, nil},
		{"unknown scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, "/v1/checkpoints/latest", 401, nil},
		{"receipt not found", f.as("olga"), "/v1/exports/receipt?identificativo=nessuno", 404, nil},
		{"entry not found", f.as("olga"), "/v1/entries/999999", 404, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := c.who
			if c.name == "legal reason header" {
				w = func(r *http.Request) { c.who(r); r.Header.Set("X-Reason", "causa C-1") }
			}
			resp, body := get(t, nil, ts.URL+c.path, w)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, c.status, body)
			}
			switch {
			case c.status != 200:
				var e struct{ Error, Code string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q", body)
				}
			case strings.HasPrefix(c.path, "/v1/entries?"):
				if got := idsOf(t, body); !slices.Equal(got, c.ids) {
					t.Errorf("identificativi %q, want %q", got, c.ids)
				}
			case strings.HasPrefix(c.path, "/v1/exports/"):
				f.verifyZip(t, body)
			case strings.HasPrefix(c.path, "/v1/audit"):
				var a struct {
					OK     bool `json:"ok"`
					Report struct {
						Transactions int
						Integrity    struct{ Signatures, Timestamps int }
					} `json:"report"`
				}
				if err := json.Unmarshal(body, &a); err != nil || a.Report.Transactions != 2 || a.Report.Integrity.Signatures == 0 {
					t.Errorf("audit %v: %.500s", err, body)
				}
			}
		})
	}
	// Legal users' requests carry their reason into the ledger.
	recs := f.records(t, ledger.KindQuery, "legal:lea")
	if len(recs) == 0 || !slices.ContainsFunc(recs, func(e *ledger.Entry) bool { return e.Details["reason"] == "causa C-1" }) {
		t.Errorf("legal records: %d", len(recs))
	}
	if recs := f.records(t, ledger.KindQuery, "user:nina"); len(recs) != 1 || recs[0].Details["outcome"] != "denied" {
		t.Errorf("the role-less user's attempt is not recorded as denied: %d", len(recs))
	}
}

// TestPaging: pages follow one another without gaps or repeats, and a
// cursor is refused with another query.
func TestPaging(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ts := f.server(t, nil)
	var seqs []uint64
	next := ""
	for i := 0; ; i++ {
		path := "/v1/entries?kind=accettazione&limit=1"
		if next != "" {
			path += "&cursor=" + next
		}
		resp, body := get(t, nil, ts.URL+path, f.as("olga"))
		if resp.StatusCode != 200 {
			t.Fatalf("page %d: status %d: %s", i, resp.StatusCode, body)
		}
		p := decodePage(t, body)
		for _, e := range p.Entries {
			seqs = append(seqs, e.Seq)
		}
		if next = p.Next; next == "" || i > 10 {
			break
		}
		if resp, body := get(t, nil, ts.URL+"/v1/entries?kind=posta-certificata&limit=1&cursor="+next, f.as("olga")); resp.StatusCode != 400 {
			t.Errorf("cursor of another query: status %d: %s", resp.StatusCode, body)
		}
	}
	if len(seqs) != 3 || !slices.IsSorted(seqs) || seqs[0] == seqs[1] {
		t.Errorf("pages gave %v", seqs)
	}
}

// TestBadInput: malformed requests get a 400 and a JSON error, and never
// a 500.
func TestBadInput(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ts := f.server(t, nil)
	long := strings.Repeat("x", httpapi.MaxQueryBytes)
	cases := []struct{ name, path string }{
		{"day that does not exist", "/v1/entries?kind=accettazione&from=2025-02-30"},
		{"month 13", "/v1/entries?kind=accettazione&from=2025-13-01T00:00:00Z"},
		{"not a date", "/v1/audit?from=ieri"},
		{"from after to", "/v1/entries?kind=accettazione&from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z"},
		{"before 1970", "/v1/entries?kind=accettazione&from=1969-12-31T00:00:00Z"},
		{"bad kind", "/v1/entries?kind=ricevuta"},
		{"limit 0", "/v1/entries?kind=accettazione&limit=0"},
		{"limit too big", "/v1/entries?kind=accettazione&limit=1001"},
		{"limit not a number", "/v1/entries?kind=accettazione&limit=dieci"},
		{"limit negative", "/v1/entries?kind=accettazione&limit=-1"},
		{"garbage cursor", "/v1/entries?kind=accettazione&cursor=%21%21"},
		{"short cursor", "/v1/entries?kind=accettazione&cursor=AAAA"},
		{"nothing to select", "/v1/entries?from=2025-03-01T00:00:00Z"},
		{"oversized query", "/v1/entries?kind=accettazione&identificativo=" + long},
		{"unknown parameter", "/v1/entries?kind=accettazione&sort=asc"},
		{"repeated parameter", "/v1/entries?kind=accettazione&kind=export"},
		{"bad escape", "/v1/entries?kind=%zz"},
		{"invalid UTF-8", "/v1/entries?identificativo=%ff%fe"},
		{"control character", "/v1/entries?identificativo=a%00b"},
		{"bad mailbox", "/v1/entries?mailbox=not-an-address"},
		{"seq not a number", "/v1/entries/uno"},
		{"seq negative", "/v1/entries/-1"},
		{"seq too big", "/v1/entries/99999999999999999999999"},
		{"parameter on entry", "/v1/entries/1?kind=x"},
		{"extract without from", "/v1/exports/extract?mailbox=" + esc(mailA)},
		{"extract without mailbox", "/v1/exports/extract?from=2025-03-01T00:00:00Z"},
		{"receipt without id", "/v1/exports/receipt?kind=accettazione"},
		{"receipt bad kind", "/v1/exports/receipt?identificativo=x&kind=checkpoint"},
		{"audit without from", "/v1/audit"},
		{"reason too long", "/v1/checkpoints/latest?reason=" + strings.Repeat("r", httpapi.MaxReasonBytes+1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := get(t, nil, ts.URL+c.path, f.as("olga"))
			var e struct{ Error, Code string }
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Code != "bad_request" || e.Error == "" {
				t.Errorf("status %d: %.300s", resp.StatusCode, body)
			}
			if strings.Contains(string(body), "PRIVATE KEY") || strings.Contains(string(body), "ledger:") {
				t.Errorf("the error leaks internals: %s", body)
			}
		})
	}
	t.Run("multiple recipients need one", func(t *testing.T) {
		ctx := context.Background()
		ev := func(to string) ledger.Event {
			return ledger.Event{Kind: ledger.KindAvvenutaConsegna, Identificativo: "multi@pec.alfa.test", Time: f.base, Mittente: mailA,
				Destinatari: []ledger.Recipient{{Address: "x@pec.beta.test", Tipo: ledger.TipoCertificato}, {Address: "y@pec.beta.test", Tipo: ledger.TipoCertificato}},
				Gestore:     gestoreName, Details: map[string]string{"destinatario": to}}
		}
		if _, err := f.ledger.Append(ctx, ev("x@pec.beta.test"), ev("y@pec.beta.test")); err != nil {
			t.Fatal(err)
		}
		resp, body := get(t, nil, ts.URL+"/v1/exports/receipt?kind=avvenuta-consegna&identificativo=multi%40pec.alfa.test", f.as("olga"))
		if resp.StatusCode != 400 || !strings.Contains(string(body), "recipient") {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/v2/nothing", f.as("olga"))
		if resp.StatusCode != 404 || !json.Valid(body) {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/entries", nil)
		f.as("olga")(req)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: status %d", r.StatusCode)
		}
	})
}

// TestRateLimit: past its burst a user, or an address, gets 429 with
// Retry-After.
func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	clock := func() time.Time { return now }
	t.Run("per principal", func(t *testing.T) {
		ts := f.server(t, func(o *httpapi.Options) {
			o.Now = clock
			o.PerPrincipal = httpapi.RateLimit{Rate: 0.5, Burst: 2}
		})
		for i := range 3 {
			resp, body := get(t, nil, ts.URL+"/v1/checkpoints/latest", f.as("olga"))
			want := http.StatusOK
			if i == 2 {
				want = http.StatusTooManyRequests
			}
			if resp.StatusCode != want {
				t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, body)
			}
			if i == 2 && resp.Header.Get("Retry-After") != "2" {
				t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
			}
		}
		// Another user is not held back.
		if resp, _ := get(t, nil, ts.URL+"/v1/checkpoints/latest", f.as("aldo")); resp.StatusCode != http.StatusOK {
			t.Errorf("another user: status %d", resp.StatusCode)
		}
	})
	t.Run("per remote", func(t *testing.T) {
		ts := f.server(t, func(o *httpapi.Options) {
			o.Now = clock
			o.PerRemote = httpapi.RateLimit{Rate: 1, Burst: 3}
		})
		var codes []int
		for range 5 {
			resp, _ := get(t, nil, ts.URL+"/v1/checkpoints/latest", nobody)
			codes = append(codes, resp.StatusCode)
		}
		if !slices.Equal(codes, []int{401, 401, 401, 429, 429}) {
			t.Errorf("statuses %v", codes)
		}
	})
}

// TestUnrecorded: when the ledger cannot record a request, the answer is
// 503 and carries no data.
func TestUnrecorded(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ts := f.server(t, nil)
	if err := f.ledger.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/entries?kind=accettazione", "/v1/exports/extract?from=" + esc(since(f)), "/v1/entries/0"} {
		resp, body := get(t, nil, ts.URL+path, f.titolareA())
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") == "application/zip" ||
			strings.Contains(string(body), "opec-") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: status %d: %s", path, resp.StatusCode, body)
		}
	}
}

func TestTokens(t *testing.T) {
	good := "# comment\n\nolga " + strings.Repeat("ab", 32) + "\nolga " + strings.Repeat("CD", 32) + "\n"
	tok, err := httpapi.ParseTokens(strings.NewReader(good))
	if err != nil || tok.Len() != 2 {
		t.Fatalf("%v, %d tokens", err, tok.Len())
	}
	for _, bad := range []string{
		"olga\n",
		"olga abc\n",
		"olga " + strings.Repeat("zz", 32) + "\n",
		"olga " + strings.Repeat("ab", 32) + " extra\n",
		"olga " + strings.Repeat("ab", 32) + "\naldo " + strings.Repeat("ab", 32) + "\n",
	} {
		if _, err := httpapi.ParseTokens(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := httpapi.ParseTokens(strings.NewReader(strings.Repeat("#", httpapi.MaxTokenFileSize+1))); err == nil {
		t.Error("an oversized file was accepted")
	}
	sum := sha256.Sum256([]byte("segreto"))
	if line := httpapi.TokenLine("olga", "segreto"); line != "olga "+hex.EncodeToString(sum[:]) {
		t.Errorf("TokenLine: %q", line)
	}
}

// TestTokenSource checks that the tokens TokenSource returns are the ones
// in force at each request: a token added to it works at once, one
// removed is refused at once.
func TestTokenSource(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var current *httpapi.Tokens
	set := func(lines ...string) {
		tok, err := httpapi.ParseTokens(strings.NewReader(strings.Join(lines, "\n") + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		current = tok
		mu.Unlock()
	}
	ts := f.server(t, func(o *httpapi.Options) {
		o.Tokens = nil
		o.TokenSource = func() *httpapi.Tokens {
			mu.Lock()
			defer mu.Unlock()
			return current
		}
	})
	url := ts.URL + "/v1/checkpoints/latest"
	if resp, _ := get(t, ts.Client(), url, f.as("olga")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no tokens yet: %d, want 401", resp.StatusCode)
	}
	set(httpapi.TokenLine("olga", f.tokens["olga"]))
	if resp, body := get(t, ts.Client(), url, f.as("olga")); resp.StatusCode != http.StatusOK {
		t.Fatalf("a token added: %d %s, want 200", resp.StatusCode, body)
	}
	set("# none")
	if resp, _ := get(t, ts.Client(), url, f.as("olga")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the token removed: %d, want 401", resp.StatusCode)
	}
}
