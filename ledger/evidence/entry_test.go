package evidence

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in ../testdata/")

var baseTime = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)

// pecEvent returns a plausible PEC event number i (the same as the ledger's
// tests use).
func pecEvent(i int) Event {
	kinds := []Kind{KindAccettazione, KindPostaCertificata, KindPresaInCarico, KindAvvenutaConsegna}
	return Event{
		Kind:            kinds[i%len(kinds)],
		Identificativo:  fmt.Sprintf("opec001.20261123093000.%08d.01.1.1@pec.test.example", i/4),
		ClientMessageID: fmt.Sprintf("<%d.client@mua.example>", i/4),
		Time:            baseTime.Add(time.Duration(i) * time.Millisecond),
		Mittente:        fmt.Sprintf("mittente%d@pec.test.example", i%97),
		Destinatari: []Recipient{
			{Address: fmt.Sprintf("dest%d@pec.altro.example", i%89), Tipo: TipoCertificato},
			{Address: "ufficio@example.com", Tipo: TipoEsterno},
		},
		Oggetto: fmt.Sprintf("Fattura n. %d — \"saldo\"", i),
		Related: []string{fmt.Sprintf("opec001.20261123093000.%08d.02.1.1@pec.test.example", i)},
		Gestore: "Custode Test PEC S.p.A.",
		SHA256:  make([]byte, 32),
		Details: map[string]string{"tipo_ricevuta": "completa"},
	}
}

func TestEntryGolden(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
	}{
		{"pec", Entry{Seq: 42, Prev: [32]byte{1, 2, 3}, Event: pecEvent(5)}},
		{"system", Entry{Seq: 7, Event: Event{
			Kind: KindExport, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600)),
			Actor: "avv.rossi@studio.example", Details: map[string]string{"case": "RG 123/2026", "format": "bundle"},
		}}},
		{"escapes", Entry{Seq: 0, Event: Event{
			Kind: KindQuery, Time: baseTime, Actor: "a\"b\\c\n\t\x01\u2028é😀/",
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := tt.entry.Encode()
			if err != nil {
				t.Fatal(err)
			}
			// The golden entries stay in ledger/testdata, where FORMAT.md
			// and export's test of its snippet read them.
			golden := filepath.Join("..", "testdata", "entry-"+tt.name+".json")
			if *update {
				if err := os.WriteFile(golden, raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(raw, want) {
				t.Errorf("encoding changed:\n got %s\nwant %s", raw, want)
			}
			back, err := DecodeEntry(raw)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := back.Encode()
			if !bytes.Equal(again, raw) {
				t.Errorf("decode/encode round trip differs:\n%s\n%s", again, raw)
			}
			if !back.Time.Equal(tt.entry.Time) {
				t.Errorf("time %v, want %v", back.Time, tt.entry.Time)
			}
		})
	}
}

func TestDecodeRejectsNonCanonical(t *testing.T) {
	e := Entry{Seq: 3, Event: Event{Kind: KindQuery, Time: baseTime, Actor: "op", SHA256: bytes.Repeat([]byte{0xab}, 32)}}
	raw, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	variants := map[string]string{
		"space after colon": strings.Replace(s, `"actor":"op"`, `"actor": "op"`, 1),
		"key order":         strings.Replace(s, `{"actor":"op",`, `{`, 1)[:len(s)-len(`"actor":"op",`)-1] + `,"actor":"op"}`,
		"upper-case hex":    strings.Replace(s, strings.Repeat("ab", 32), strings.Repeat("AB", 32), 1),
		"needless escape":   strings.Replace(s, `"op"`, `"\u006fp"`, 1),
		"duplicate key":     strings.Replace(s, `{"actor":"op",`, `{"actor":"x","actor":"op",`, 1),
		"empty optional":    strings.Replace(s, `{"actor":"op",`, `{"actor":"op","archive_key":"",`, 1),
		"unknown field":     strings.Replace(s, `{"actor":"op",`, `{"actor":"op","zz":"1",`, 1),
		"trailing data":     s + " ",
		"number form":       strings.Replace(s, `"seq":3`, `"seq":3.0`, 1),
		"version":           strings.Replace(s, `"v":1`, `"v":2`, 1),
		"time zone":         strings.Replace(s, `.000000000Z`, `.000000000+00:00`, 1),
	}
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			if v == s {
				t.Fatal("variant equals the canonical form")
			}
			if _, err := DecodeEntry([]byte(v)); err == nil {
				t.Errorf("accepted %s", v)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	ok := pecEvent(1)
	tests := []struct {
		field  string
		mutate func(e *Event)
	}{
		{"kind", func(e *Event) { e.Kind = "" }},
		{"kind", func(e *Event) { e.Kind = "consegna" }},
		{"riferimento_temporale", func(e *Event) { e.Time = time.Time{} }},
		{"identificativo", func(e *Event) { e.Identificativo = "" }},
		{"mittente", func(e *Event) { e.Mittente = "" }},
		{"gestore", func(e *Event) { e.Gestore = "" }},
		{"destinatari", func(e *Event) { e.Destinatari = nil }},
		{"destinatari[1].tipo", func(e *Event) { e.Destinatari[1].Tipo = "pec" }},
		{"destinatari[0].indirizzo", func(e *Event) { e.Destinatari[0].Address = "" }},
		{"oggetto", func(e *Event) { e.Oggetto = "bad \xff utf8" }},
		{"oggetto", func(e *Event) { e.Oggetto = strings.Repeat("x", MaxFieldBytes+1) }},
		{"mittente", func(e *Event) { e.Mittente = "a\x00b" }},
		{"sha256", func(e *Event) { e.SHA256 = []byte{1} }},
		{"related[0]", func(e *Event) { e.Related = []string{""} }},
		{"details", func(e *Event) { e.Details = map[string]string{"Bad Key": "v"} }},
		{"details.x", func(e *Event) { e.Details = map[string]string{"x": ""} }},
		{"actor", func(e *Event) { *e = Event{Kind: KindQuery, Time: baseTime} }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			e := ok
			e.Destinatari = append([]Recipient(nil), ok.Destinatari...)
			tt.mutate(&e)
			err := e.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, tt.field, err)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid event: %v", err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for i := 0; i < 4; i++ {
		e := Entry{Seq: uint64(i), Event: pecEvent(i)}
		raw, _ := e.Encode()
		f.Add(raw)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"v":1,"seq":1e99}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := DecodeEntry(raw)
		if err != nil {
			return
		}
		again, err := e.Encode()
		if err != nil {
			t.Fatalf("decoded entry does not encode: %v", err)
		}
		if !bytes.Equal(again, raw) {
			t.Fatalf("decoded %q but encodes to %q", raw, again)
		}
	})
}

func TestParseEventJSON(t *testing.T) {
	good := `{"kind":"accettazione","identificativo":"id@pec.test","riferimento_temporale":"2026-11-23T10:00:00+01:00","mittente":"a@pec.test","destinatari":[{"indirizzo":"b@pec.test","tipo":"certificato"}],"gestore":"G","sha256":"` + strings.Repeat("ab", 32) + `"}`
	e, err := ParseEventJSON([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Time.Equal(time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)) || len(e.SHA256) != 32 || e.Destinatari[0].Tipo != TipoCertificato {
		t.Errorf("parsed %+v", e)
	}
	bad := map[string]string{
		"riferimento_temporale": `{"kind":"query","actor":"x"}`,
		"sha256":                strings.Replace(good, `"sha256":"ab`, `"sha256":"zz`, 1),
		"mittente":              strings.Replace(good, `"mittente":"a@pec.test",`, ``, 1),
	}
	for field, in := range bad {
		var fe *FieldError
		if _, err := ParseEventJSON([]byte(in)); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s: err = %v, want a FieldError naming %s", in, err, field)
		}
	}
	for _, in := range []string{`{"kind":"query","seq":3}`, `not json`, `{} {}`} {
		if _, err := ParseEventJSON([]byte(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestValidateLoginFailures(t *testing.T) {
	from := baseTime.Format(time.RFC3339Nano)
	tests := []struct {
		name    string
		details map[string]string
		field   string // "" when valid
	}{
		{"failed", map[string]string{"account": "mario@pec.example.it", "remote": "192.0.2.7", "failed": "12", "from": from, "services": "imap"}, ""},
		{"throttled only", map[string]string{"remote": "2001:db8::/64", "throttled": "3", "from": from}, ""},
		{"no remote", map[string]string{"failed": "1", "from": from}, "details.remote"},
		{"no from", map[string]string{"remote": "192.0.2.7", "failed": "1"}, "details.from"},
		{"bad from", map[string]string{"remote": "192.0.2.7", "failed": "1", "from": "yesterday"}, "details.from"},
		{"no count", map[string]string{"remote": "192.0.2.7", "from": from}, "details.failed"},
		{"zero", map[string]string{"remote": "192.0.2.7", "failed": "0", "from": from}, "details.failed"},
		{"leading zero", map[string]string{"remote": "192.0.2.7", "throttled": "07", "from": from}, "details.throttled"},
		{"negative", map[string]string{"remote": "192.0.2.7", "failed": "-1", "from": from}, "details.failed"},
		{"empty count", map[string]string{"remote": "192.0.2.7", "failed": "", "from": from}, "details.failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Event{Kind: KindLoginFailures, Time: baseTime, Details: tt.details}
			err := e.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate() = %v, want a *FieldError on %s", err, tt.field)
			}
		})
	}
	if !KindLoginFailures.IsSystem() {
		t.Error("login-failures is not a system kind")
	}
}
