package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/custode/custode/ledger"
)

// The command line records the period of an access in the one layout of
// ledger/record, as the API does (RFC 3339 with nanoseconds). Before, it
// wrote RFC 3339 without the fraction: an audit asked from
// 10:00:00.123456789 was recorded as asked from 10:00:00.
func TestCLIRecordsAccessTimesAsTheAPI(t *testing.T) {
	data, _ := initData(t)
	const from, to = "2026-11-23T10:00:00.123456789Z", "2026-11-24T00:00:00.5Z"
	// The audit of an empty ledger may find problems: the access is
	// recorded before the report whatever it says.
	custode(t, "", "audit", "-data", data, "-from", from, "-to", to, "-actor", "auditor")
	l, err := ledger.Open(context.Background(), ledger.Options{Dir: filepath.Join(data, "ledger"), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	page, err := l.Find(context.Background(), ledger.Query{Kind: ledger.KindExport})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 {
		t.Fatalf("%d export entries, want the audit's", len(page.Entries))
	}
	d := page.Entries[0].Details
	if d["what"] != "audit report" || d["from"] != from || d["to"] != to || page.Entries[0].Actor != "auditor" {
		t.Errorf("recorded %v by %q, want from %s to %s", d, page.Entries[0].Actor, from, to)
	}
}
