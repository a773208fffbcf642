package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/export"
	"github.com/custode/custode/ledger"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -run %s -update rewrites it):\ngot:\n%s\nwant:\n%s", name, t.Name(), got, want)
	}
}

// auditLedger is a ledger of gestore Alfa over April and May 2026, with
// every outcome the audit counts.
func auditLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	ctx := context.Background()
	l, err := ledger.Open(ctx, ledger.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	const us, them = "Alfa PEC", "Beta PEC"
	at := func(s string) time.Time {
		tt, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	ev := func(kind ledger.Kind, id, gestore, when string, details ...string) ledger.Event {
		e := ledger.Event{Kind: kind, Time: at(when), Identificativo: id, Mittente: "mario@pec.alfa.test", Gestore: gestore,
			Destinatari: []ledger.Recipient{{Address: "lucia@pec.beta.test", Tipo: ledger.TipoCertificato}}}
		if len(details) > 0 {
			e.Details = map[string]string{}
			for i := 0; i+1 < len(details); i += 2 {
				e.Details[details[i]] = details[i+1]
			}
		}
		return e
	}
	rcpt := "lucia@pec.beta.test"
	events := []ledger.Event{
		// Sent and delivered in April (quadrimestre 1).
		ev(ledger.KindAccettazione, "t1@alfa", us, "2026-04-02T09:00:00Z"),
		ev(ledger.KindPostaCertificata, "t1@alfa", us, "2026-04-02T09:00:01Z"),
		ev(ledger.KindPresaInCarico, "t1@alfa", them, "2026-04-02T09:00:03Z", "ricezione", rcpt),
		ev(ledger.KindAvvenutaConsegna, "t1@alfa", them, "2026-04-02T09:00:05Z", "destinatario", rcpt),
		// Refused for a virus at our punto di accesso.
		ev(ledger.KindNonAccettazione, "t2@alfa", us, "2026-04-03T09:00:00Z", "errore", "virus"),
		// Refused for a formal error.
		ev(ledger.KindNonAccettazione, "t2b@alfa", us, "2026-04-03T10:00:00Z", "errore", "altro"),
		// Received from Beta at 00:30 on 1 May in Rome (still 30 April in
		// UTC): quadrimestre 2.
		ev(ledger.KindPresaInCarico, "t5@beta", us, "2026-04-30T22:30:00Z", "ricezione", rcpt),
		ev(ledger.KindAvvenutaConsegna, "t5@beta", us, "2026-04-30T22:30:02Z", "destinatario", rcpt),
		// Received with a virus.
		ev(ledger.KindPresaInCarico, "t6@beta", us, "2026-05-04T08:00:00Z", "ricezione", rcpt),
		ev(ledger.KindRilevazioneVirus, "t6@beta", us, "2026-05-04T08:00:01Z", "destinatario", rcpt),
		ev(ledger.KindErroreConsegna, "t6@beta", us, "2026-05-04T08:00:01Z", "destinatario", rcpt, "errore", "virus"),
		// Not a PEC message.
		ev(ledger.KindBustaAnomalia, "t7@other", us, "2026-05-05T08:00:00Z"),
		// Still open at the end of the period: one not yet taken in
		// charge, one taken in charge but not delivered.
		ev(ledger.KindAccettazione, "t3@alfa", us, "2026-05-31T18:00:00Z"),
		ev(ledger.KindPostaCertificata, "t3@alfa", us, "2026-05-31T18:00:01Z"),
		ev(ledger.KindAccettazione, "t4@alfa", us, "2026-05-31T19:00:00Z"),
		ev(ledger.KindPostaCertificata, "t4@alfa", us, "2026-05-31T19:00:01Z"),
		ev(ledger.KindPresaInCarico, "t4@alfa", them, "2026-05-31T19:00:02Z", "ricezione", rcpt),
		// After the period: not counted.
		ev(ledger.KindAccettazione, "t8@alfa", us, "2026-06-01T09:00:00Z"),
	}
	if _, err := l.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordOutage(ctx, us, "gestore", at("2026-04-10T10:00:00Z"), at("2026-04-10T10:19:30Z"), "unclean stop"); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordOutage(ctx, us, "tsa", at("2026-05-02T21:50:00Z"), at("2026-05-02T22:35:00Z"), "no timestamp token"); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAuditGolden: the audit of April and May 2026 (days in
// Europe/Rome) counts every outcome, splits P01 by quadrimestre, writes
// P02 with its types and SLA, and durations in seconds in its JSON.
func TestAuditGolden(t *testing.T) {
	t.Parallel()
	l := auditLedger(t)
	from, err := export.ParseDay("2026-04-01")
	if err != nil {
		t.Fatal(err)
	}
	to, err := export.ParseDay("2026-06-01")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := export.Audit(context.Background(), export.AuditOptions{Ledger: l, From: from, To: to, Gestore: "Alfa PEC"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"accettazioni", rep.Accettazioni, 3},
		{"non accettazioni", rep.NonAccettazioni, 2},
		{"virus in uscita", rep.VirusUscita, 1},
		{"prese in carico", rep.PreseInCaricoEmesse, 2},
		{"consegne", rep.Consegne, 1},
		{"mancate consegne", rep.MancateConsegne, 1},
		{"anomalie", rep.Anomalie, 1},
		{"virus in ingresso", rep.VirusIngresso, 1},
		{"transactions", rep.Transactions, 3},
		{"open", rep.OpenTransactions, 2},
		{"awaiting presa in carico", rep.AwaitingPresaInCarico, 1},
		{"awaiting consegna", rep.AwaitingConsegna, 1},
		{"quadrimestri", len(rep.Quadrimestri), 2},
		{"outages", len(rep.Outages), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if len(rep.Findings) != 0 {
		t.Errorf("findings: %+v", rep.Findings)
	}
	p01, err := rep.P01("ALFA01", 1, 12)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "audit/P01.csv", p01)
	golden(t, "audit/P02.csv", rep.P02())
	golden(t, "audit/report.txt", []byte(rep.Text()))
	rep.Integrity.Elapsed = 1500 * time.Millisecond // the only figure that varies
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"ElapsedSeconds": 1.5`)) || bytes.Contains(js, []byte(`"Elapsed":`)) {
		t.Errorf("report.json does not give the verification's duration in seconds:\n%s", js)
	}
	golden(t, "audit/report.json", append(js, '\n'))
}

func TestAuditP01Refuses(t *testing.T) {
	t.Parallel()
	l := auditLedger(t)
	from, _ := export.ParseDay("2026-04-01")
	to, _ := export.ParseDay("2026-05-01")
	rep, err := export.Audit(context.Background(), export.AuditOptions{Ledger: l, From: from, To: to, Gestore: "Alfa PEC"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		code               string
		domains, mailboxes int
		want               string
	}{
		{"", 1, 2, "CodGestPEC is empty"},
		{"  ", 1, 2, "CodGestPEC is empty"},
		{"ALFA01", 1, -1, "not counted"},
		{"ALFA01", -1, 2, "not counted"},
	} {
		if _, err := rep.P01(c.code, c.domains, c.mailboxes); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("P01(%q, %d, %d): %v, want an error with %q", c.code, c.domains, c.mailboxes, err, c.want)
		}
	}
	if _, err := export.Audit(context.Background(), export.AuditOptions{Ledger: l, From: to, To: from, Gestore: "Alfa PEC"}); err == nil {
		t.Error("an audit of an empty period")
	}
}
