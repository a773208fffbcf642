package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/policies"
	"github.com/custode/custode/retention"
)

// anyPassword is an Authenticator that, like a mail store made before
// addresses had one canonical form, holds a mailbox for any spelling:
// every address with password "pw" logs in. It makes the API's own
// decisions the only defence.
type anyPassword struct{}

func (anyPassword) Login(_ context.Context, a mailstore.LoginAttempt) error {
	if a.Password != "pw" {
		return mailstore.ErrAuthFailed
	}
	return nil
}

func (anyPassword) RecordFailedLogin(service, account, remote string, throttled bool) {}

// foldingVariants are the addresses of issue 16, finding 1: each is
// another mailbox than its victim (or none), though Unicode case folding,
// a trailing dot or subaddressing would make it equal.
var foldingVariants = []struct {
	name, addr, victim string
	login              bool // the address is canonical: it logs in, as a mailbox of its own
}{
	{"long s U+017F", "\u017fara@pec.alfa.test", "sara@pec.alfa.test", false},
	{"long s, upper case", "\u017fARA@PEC.ALFA.TEST", "sara@pec.alfa.test", false},
	{"Kelvin sign U+212A", "\u212aatia@pec.alfa.test", "katia@pec.alfa.test", false},
	{"Kelvin sign, upper case", "\u212aATIA@pec.alfa.test", "katia@pec.alfa.test", false},
	{"fullwidth s", "\uff53ara@pec.alfa.test", "sara@pec.alfa.test", false},
	{"Cyrillic a", "\u0430nna@pec.alfa.test", mailA, false},
	{"trailing dot", "sara@pec.alfa.test.", "sara@pec.alfa.test", false},
	{"plus-addressing", "sara+x@pec.alfa.test", "sara@pec.alfa.test", true},
}

// TestFoldingVariants runs every authorization decision of the API (an
// entry by seq, entries by identificativo and by mailbox, a receipt's
// evidence bundle, a log extract, a legal user's hold scope) against the
// folding variants of a mailbox, both ways: a principal who logs in as a
// variant sees nothing of the victim's, and the victim sees nothing of
// transactions of the variant.
func TestFoldingVariants(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ctx := context.Background()

	// One transaction of each victim, one of each variant address.
	at := f.base.Add(10 * time.Minute)
	ids := map[string]string{} // address -> identificativo
	var events []ledger.Event
	addrs := []string{"sara@pec.alfa.test", "katia@pec.alfa.test"}
	for _, v := range foldingVariants {
		addrs = append(addrs, v.addr)
	}
	for i, a := range addrs {
		id := "opec-fold-" + strconv.Itoa(i) + "@pec.alfa.test"
		ids[a] = id
		events = append(events, ledger.Event{Kind: ledger.KindAccettazione, Identificativo: id, Time: at.Add(time.Duration(i) * time.Second),
			Mittente: a, Destinatari: []ledger.Recipient{{Address: "esterno@pec.beta.test", Tipo: ledger.TipoCertificato}},
			Oggetto: "di " + a, Gestore: gestoreName, SHA256: make([]byte, 32)})
	}
	ids[mailA] = f.ids["b-to-a"]
	if _, err := f.ledger.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	waitCovered(t, f.ledger, f.logs, f.ledger.Head().Size)
	seqOf := func(id string) uint64 {
		p, err := f.ledger.Find(ctx, ledger.Query{Identificativo: id, Kind: ledger.KindAccettazione})
		if err != nil || len(p.Entries) == 0 {
			t.Fatalf("no entry of %s: %v", id, err)
		}
		return p.Entries[0].Seq
	}

	// A legal user whose only case holds sara's mailbox.
	holdsFile := filepath.Join(t.TempDir(), "holds.json")
	hb, err := json.Marshal([]retention.Hold{{Case: "C-9", Scope: retention.Scope{Mailbox: "sara@pec.alfa.test"}, Reason: "causa", Actor: "operator:olga", Placed: f.base}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(holdsFile, hb, 0o644); err != nil {
		t.Fatal(err)
	}
	reg, err := retention.OpenRegistry(holdsFile)
	if err != nil {
		t.Fatal(err)
	}
	pol := &policies.Policy{Version: 1, Roles: policies.Roles{Operators: []string{"olga"}, Legal: map[string][]string{"lea": {"C-9"}}}}
	ts := f.server(t, func(o *httpapi.Options) {
		o.Mailboxes = anyPassword{}
		o.Holds = reg
		o.Policy = func() *policies.Policy { return pol }
	})
	period := "from=" + esc(f.base.Add(-time.Hour).Format(time.RFC3339)) + "&to=" + esc(f.base.Add(2*time.Hour).Format(time.RFC3339))

	for _, v := range foldingVariants {
		t.Run(v.name, func(t *testing.T) {
			victimID := ids[v.victim]
			variantID := ids[v.addr]
			// The variant logs in and asks for the victim's.
			attacker := basic(v.addr, "pw")
			for _, path := range []string{
				"/v1/entries/" + strconv.FormatUint(seqOf(victimID), 10),
				"/v1/entries?identificativo=" + esc(victimID),
				"/v1/entries?mailbox=" + esc(v.victim),
				"/v1/entries?kind=accettazione",
				"/v1/exports/receipt?identificativo=" + esc(victimID),
				"/v1/exports/extract?mailbox=" + esc(v.victim) + "&" + period,
				"/v1/exports/extract?" + period,
			} {
				resp, body := get(t, nil, ts.URL+path, attacker)
				if !v.login && resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s as %q: status %d, want 401: %.200s", path, v.addr, resp.StatusCode, body)
				}
				if resp.StatusCode == http.StatusOK && (strings.Contains(string(body), victimID) || strings.HasPrefix(path, "/v1/entries/")) {
					t.Errorf("%s as %q: the victim's transaction in the answer: %.200s", path, v.addr, body)
				}
				if resp.StatusCode == http.StatusOK && strings.HasPrefix(path, "/v1/exports/receipt") {
					t.Errorf("%s as %q: a bundle of the victim's", path, v.addr)
				}
			}

			// The victim asks for the variant's transaction: not theirs.
			victim := basic(v.victim, "pw")
			seq := seqOf(variantID)
			assertHidden(t, f, ts.URL, victim, "titolare:"+v.victim,
				"/v1/entries/"+strconv.FormatUint(seq, 10), "/v1/entries/"+strconv.FormatUint(f.ledger.Head().Size+1000, 10))
			assertHidden(t, f, ts.URL, victim, "titolare:"+v.victim,
				"/v1/exports/receipt?identificativo="+esc(variantID), "/v1/exports/receipt?identificativo="+esc("opec-nessuna@pec.alfa.test"))
			for _, path := range []string{
				"/v1/entries?identificativo=" + esc(variantID),
				"/v1/entries?kind=accettazione",
				"/v1/entries?mailbox=" + esc(strings.ToUpper(v.victim)),
				"/v1/exports/extract?" + period,
			} {
				resp, body := get(t, nil, ts.URL+path, victim)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s as the victim: status %d: %.200s", path, resp.StatusCode, body)
				}
				if strings.Contains(string(body), variantID) {
					t.Errorf("%s as the victim %s: the transaction of %q in the answer", path, v.victim, v.addr)
				}
			}
			// The victim's own transaction is still theirs.
			if resp, body := get(t, nil, ts.URL+"/v1/entries?identificativo="+esc(victimID), victim); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), victimID) {
				t.Errorf("the victim's own transaction: status %d: %.200s", resp.StatusCode, body)
			}

			// A hold on sara's mailbox covers none of the variants'.
			if v.victim == "sara@pec.alfa.test" {
				lea := func(r *http.Request) { f.as("lea")(r); r.Header.Set("X-Reason", "causa C-9") }
				resp, body := get(t, nil, ts.URL+"/v1/entries?kind=accettazione", lea)
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), victimID) || strings.Contains(string(body), variantID) {
					t.Errorf("legal user of a hold on %s: status %d: %.300s", v.victim, resp.StatusCode, body)
				}
				for _, path := range []string{
					"/v1/entries/" + strconv.FormatUint(seq, 10),
					"/v1/exports/receipt?identificativo=" + esc(variantID),
					"/v1/exports/extract?mailbox=" + esc(v.addr) + "&" + period,
				} {
					if resp, body := get(t, nil, ts.URL+path, lea); resp.StatusCode == http.StatusOK {
						t.Errorf("legal user of a hold on %s: %s: status 200: %.200s", v.victim, path, body)
					}
				}
			}
		})
	}

	// Upper case is the one variant that is the same mailbox: ASCII
	// letters only, and it reaches the same answers as the canonical form.
	t.Run("upper case is the same mailbox", func(t *testing.T) {
		resp, body := get(t, nil, ts.URL+"/v1/entries?identificativo="+esc(ids["sara@pec.alfa.test"]), basic("SARA@PEC.ALFA.TEST", "pw"))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), ids["sara@pec.alfa.test"]) {
			t.Errorf("status %d: %.200s", resp.StatusCode, body)
		}
		for _, v := range foldingVariants {
			if strings.Contains(string(body), ids[v.addr]) {
				t.Errorf("SARA sees the transaction of %q", v.addr)
			}
		}
	})
}

// TestReceiptSeveralRecipientsHidden: issue 16, finding 13. "Give
// recipient", for a transaction of several recipients, tells that it
// exists: a titolare who is not a party gets the answer of an
// identificativo that does not exist; a party gets the 400.
func TestReceiptSeveralRecipientsHidden(t *testing.T) {
	t.Parallel() // its own fixture and server
	f := newFixture(t)
	ctx := context.Background()
	id := "opec-multi@pec.alfa.test"
	var events []ledger.Event
	for i, to := range []string{"carla@pec.beta.test", "dario@pec.beta.test"} {
		events = append(events, ledger.Event{Kind: ledger.KindAvvenutaConsegna, Identificativo: id, Time: f.base.Add(time.Duration(20+i) * time.Minute),
			Mittente: mailB, Destinatari: []ledger.Recipient{{Address: to, Tipo: ledger.TipoCertificato}},
			Oggetto: "A due", Gestore: gestoreName, SHA256: make([]byte, 32), Details: map[string]string{"destinatario": to}})
	}
	if _, err := f.ledger.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	ts := f.server(t, nil)
	path := "/v1/exports/receipt?kind=avvenuta-consegna&identificativo="
	assertHidden(t, f, ts.URL, f.titolareA(), "titolare:"+mailA, path+esc(id), path+esc("opec-nessuna@pec.alfa.test"))
	if resp, body := get(t, nil, ts.URL+path+esc(id), basic(mailB, passB)); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "several recipients") {
		t.Errorf("the mittente: status %d: %s", resp.StatusCode, body)
	}
}
