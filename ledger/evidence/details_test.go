package evidence

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// Kinds lists every kind Validate accepts, once: outage was missing.
func TestKindsComplete(t *testing.T) {
	seen := map[Kind]bool{}
	for _, k := range Kinds() {
		if seen[k] {
			t.Errorf("%s listed twice", k)
		}
		seen[k] = true
		if !k.IsPEC() && !k.IsSystem() {
			t.Errorf("%s is neither a PEC nor a system kind", k)
		}
	}
	for k := range pecKinds {
		if !seen[k] {
			t.Errorf("PEC kind %s missing from Kinds()", k)
		}
	}
	for k := range systemKinds {
		if !seen[k] {
			t.Errorf("system kind %s missing from Kinds()", k)
		}
	}
	ks := Kinds()
	last := slices.IndexFunc(ks, func(k Kind) bool { return !k.IsPEC() })
	if last < 0 || slices.ContainsFunc(ks[last:], Kind.IsPEC) {
		t.Errorf("PEC kinds are not first: %v", ks)
	}
}

func TestDetailAccessors(t *testing.T) {
	e := Event{Kind: KindPresaInCarico, Details: map[string]string{
		DetailDestinatario: "b@pec.test", DetailErrore: "virus", DetailTipoRicevuta: "breve",
		DetailRicezione: "b@pec.test C@pec.test", DetailImported: "2026-01-01T00:00:00.000000000Z",
	}}
	if e.Destinatario() != "b@pec.test" || e.Errore() != "virus" || e.TipoRicevuta() != "breve" || !e.Imported() {
		t.Errorf("accessors: %q %q %q %v", e.Destinatario(), e.Errore(), e.TipoRicevuta(), e.Imported())
	}
	if got := e.Ricezione(); !slices.Equal(got, []string{"b@pec.test", "C@pec.test"}) {
		t.Errorf("Ricezione() = %q", got)
	}
	var none Event
	if none.Destinatario() != "" || none.Ricezione() != nil || none.Imported() {
		t.Error("an event without details reads something")
	}
}

func TestCheckpointDetails(t *testing.T) {
	root, prev := strings.Repeat("ab", 32), strings.Repeat("00", 32)
	good := map[string]string{DetailTreeSize: "42", DetailRoot: root, DetailPrevCheckpoint: prev}
	e := Event{Kind: KindCheckpoint, Details: good}
	r, err := e.Checkpoint()
	if err != nil || r.Size != 42 || r.Root[0] != 0xab || r.Prev != ([32]byte{}) {
		t.Fatalf("Checkpoint() = %+v, %v", r, err)
	}
	bad := []struct {
		key, value, field string
	}{
		{DetailTreeSize, "", "details.tree_size"},
		{DetailTreeSize, "042", "details.tree_size"},
		{DetailTreeSize, "-1", "details.tree_size"},
		{DetailRoot, strings.ToUpper(root), "details.root"},
		{DetailRoot, root[:62], "details.root"},
		{DetailPrevCheckpoint, "zz" + prev[2:], "details.prev_checkpoint"},
	}
	for _, tt := range bad {
		d := map[string]string{}
		for k, v := range good {
			d[k] = v
		}
		d[tt.key] = tt.value
		e := Event{Kind: KindCheckpoint, Details: d}
		var fe *FieldError
		if _, err := e.Checkpoint(); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%s=%q: %v, want a FieldError naming %s", tt.key, tt.value, err, tt.field)
		}
	}
	if _, err := (&Event{Kind: KindQuery, Details: good}).Checkpoint(); err == nil {
		t.Error("a query event read as a checkpoint")
	}
}

func TestOutageDetails(t *testing.T) {
	to := baseTime
	from := to.Add(-time.Hour)
	e := Event{Kind: KindOutage, Time: to, Details: map[string]string{
		DetailOutageService: "tsa", DetailOutageFrom: from.Format(time.RFC3339Nano), DetailOutageCause: "refused",
	}}
	o, err := e.Outage()
	if err != nil || o.Service != "tsa" || !o.From.Equal(from) || !o.To.Equal(to) || o.Cause != "refused" {
		t.Fatalf("Outage() = %+v, %v", o, err)
	}
	e.Details[DetailOutageFrom] = "yesterday"
	var fe *FieldError
	if _, err := e.Outage(); !errors.As(err, &fe) || fe.Field != "details.from" {
		t.Errorf("a malformed start: %v", err)
	}
}

func TestRanges(t *testing.T) {
	tests := []struct {
		seqs  []uint64
		limit int
		want  string
		n     int
	}{
		{nil, 0, "", 0},
		{[]uint64{5}, 0, "5", 1},
		{[]uint64{1, 2, 3, 7, 9, 10}, 0, "1-3,7,9-10", 6},
		{[]uint64{1, 2, 3, 7, 9, 10}, 5, "1-3,7", 4},
		{[]uint64{100000, 100001}, 3, "100000-100001", 2},
	}
	for _, tt := range tests {
		got, n := FormatRanges(tt.seqs, tt.limit)
		if got != tt.want || n != tt.n {
			t.Errorf("FormatRanges(%v, %d) = %q, %d; want %q, %d", tt.seqs, tt.limit, got, n, tt.want, tt.n)
		}
		rs, err := ParseRanges(got)
		if err != nil {
			t.Fatalf("ParseRanges(%q): %v", got, err)
		}
		for _, s := range tt.seqs[:n] {
			if !RangesContain(rs, s) {
				t.Errorf("ParseRanges(%q) lacks %d", got, s)
			}
		}
		if RangesContain(rs, 4) || RangesContain(rs, 11) {
			t.Errorf("ParseRanges(%q) holds 4 or 11", got)
		}
	}
	for _, bad := range []string{"3-1", "1,1", "2,1", "a", "1-", ",", "1-2,2"} {
		if _, err := ParseRanges(bad); err == nil {
			t.Errorf("ParseRanges(%q) accepted", bad)
		}
	}
	e := Event{Kind: KindPurge, Details: map[string]string{DetailLedgerRanges: "1-3"}}
	if rs, err := e.LedgerRanges(); err != nil || len(rs) != 1 {
		t.Errorf("LedgerRanges() = %v, %v", rs, err)
	}
}
