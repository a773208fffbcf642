package pec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

// buildCase is one message type built from the test transaction.
type buildCase struct {
	name string
	kind Kind
	// build builds the message; tx is the transaction at the punto di
	// accesso, rx the one the punto di ricezione/consegna reads from the
	// busta it built.
	build func(g *Gestore, tx, rx *Transaction) (*Built, error)
	// headers are fields the message must carry, name to value.
	headers map[string]string
	// original says whether the message carries postacert.eml.
	original bool
}

const (
	anna    = "anna.bianchi@pec.altro.test"
	ufficio = "ufficio@example.com"
	legale  = "legale@pec.altro.test"
	receipt = "posta-certificata@pec.mittente.test" // mailReceipt of the sender's gestore
)

var buildCases = []buildCase{
	{
		name: "accettazione", kind: KindAccettazione,
		build:   func(g *Gestore, tx, _ *Transaction) (*Built, error) { return g.Accettazione(tx) },
		headers: map[string]string{"X-Ricevuta": "accettazione", "To": "mario.rossi@pec.custode.test"},
	},
	{
		name: "non-accettazione", kind: KindNonAccettazione,
		build: func(g *Gestore, tx, _ *Transaction) (*Built, error) {
			return g.NonAccettazione(tx, "il campo Bcc non è ammesso")
		},
		headers: map[string]string{"X-Ricevuta": "non-accettazione"},
	},
	{
		name: "non-accettazione-virus", kind: KindNonAccettazioneVirus,
		build: func(g *Gestore, tx, _ *Transaction) (*Built, error) {
			return g.NonAccettazioneVirus(tx, "Eicar-Test-Signature")
		},
		headers: map[string]string{"X-Ricevuta": "non-accettazione", "X-VerificaSicurezza": "errore"},
	},
	{
		name: "busta-trasporto", kind: KindBustaTrasporto,
		build: func(g *Gestore, tx, _ *Transaction) (*Built, error) { return g.BustaTrasporto(tx) },
		headers: map[string]string{
			"X-Trasporto":    "posta-certificata",
			"X-TipoRicevuta": "completa",
			"From":           `"Per conto di: mario.rossi@pec.custode.test" <posta-certificata@pec.custode.test>`,
			"Sender":         `"Per conto di: mario.rossi@pec.custode.test" <posta-certificata@pec.custode.test>`,
			"Reply-To":       "mario.rossi@pec.custode.test",
			"Cc":             legale,
		},
		original: true,
	},
	{
		name: "preavviso-12h", kind: KindPreavvisoMancataConsegna,
		build: func(g *Gestore, tx, _ *Transaction) (*Built, error) {
			t := *tx
			t.Time = tx.Time.Add(12 * time.Hour)
			return g.PreavvisoMancataConsegna(&t, legale, Timeout12h)
		},
		headers: map[string]string{"X-Ricevuta": "preavviso-errore-consegna"},
	},
	{
		name: "preavviso-24h", kind: KindPreavvisoMancataConsegna,
		build: func(g *Gestore, tx, _ *Transaction) (*Built, error) {
			t := *tx
			t.Time = tx.Time.Add(24 * time.Hour)
			return g.PreavvisoMancataConsegna(&t, legale, Timeout24h)
		},
		headers: map[string]string{"X-Ricevuta": "preavviso-errore-consegna"},
	},
	{
		name: "presa-in-carico", kind: KindPresaInCarico,
		build: func(g *Gestore, _, rx *Transaction) (*Built, error) {
			return g.PresaInCarico(rx, []string{anna, legale}, receipt)
		},
		headers: map[string]string{"X-Ricevuta": "presa-in-carico", "To": receipt},
	},
	{
		name: "busta-anomalia", kind: KindBustaAnomalia,
		build: func(g *Gestore, _, _ *Transaction) (*Built, error) {
			return g.BustaAnomalia(Anomalia{
				Received: []byte(testOriginal),
				Time:     deliveredAt,
				Reason:   "il messaggio non proviene da un gestore di posta elettronica certificata",
			})
		},
		headers: map[string]string{
			"X-Trasporto": "errore",
			"From":        `"Per conto di: mario.rossi@pec.custode.test" <posta-certificata@pec.custode.test>`,
			"Message-ID":  "<20251114182628.1234@client.example>",
		},
		original: true,
	},
	{
		name: "rilevazione-virus", kind: KindRilevazioneVirus,
		build: func(g *Gestore, _, rx *Transaction) (*Built, error) {
			return g.RilevazioneVirus(rx, anna, receipt, "Eicar-Test-Signature")
		},
		headers: map[string]string{"X-Ricevuta": "rilevazione-virus", "X-Mittente": "mario.rossi@pec.custode.test", "To": receipt},
	},
	{
		name: "mancata-consegna-virus", kind: KindMancataConsegnaVirus,
		build: func(g *Gestore, tx, _ *Transaction) (*Built, error) {
			t := *tx
			t.Time = deliveredAt
			return g.MancataConsegnaVirus(&t, anna, "Eicar-Test-Signature")
		},
		headers: map[string]string{"X-Ricevuta": "errore-consegna", "X-VerificaSicurezza": "errore"},
	},
	{
		name: "consegna-completa", kind: KindConsegnaCompleta,
		build: func(g *Gestore, _, rx *Transaction) (*Built, error) {
			return g.AvvenutaConsegna(rx, anna, rx.ReceiptFor(anna))
		},
		headers:  map[string]string{"X-Ricevuta": "avvenuta-consegna"},
		original: true,
	},
	{
		name: "consegna-breve", kind: KindConsegnaBreve,
		build: func(g *Gestore, _, rx *Transaction) (*Built, error) {
			t := *rx
			t.Receipt = daticert.ReceiptBreve
			return g.AvvenutaConsegna(&t, anna, t.ReceiptFor(anna))
		},
		headers:  map[string]string{"X-Ricevuta": "avvenuta-consegna"},
		original: true,
	},
	{
		name: "consegna-sintetica", kind: KindConsegnaSintetica,
		build: func(g *Gestore, _, rx *Transaction) (*Built, error) {
			// legale is in Cc: a ricevuta completa is sintetica for
			// him (RFC 6109 §3.3.2.1).
			return g.AvvenutaConsegna(rx, legale, rx.ReceiptFor(legale))
		},
		headers: map[string]string{"X-Ricevuta": "avvenuta-consegna"},
	},
	{
		name: "mancata-consegna", kind: KindMancataConsegna,
		build: func(g *Gestore, _, rx *Transaction) (*Built, error) {
			return g.MancataConsegna(rx, anna, daticert.ErroreNoDest, "5.1.1 - Custode Test PEC S.p.A. - indirizzo non valido")
		},
		headers: map[string]string{"X-Ricevuta": "errore-consegna"},
	},
}

// buildAll builds every case with a fresh gestore, in order, so that msgids
// are deterministic.
func buildCaseMessage(t *testing.T, c buildCase) (*Gestore, *Built) {
	t.Helper()
	g := newGestore(t)
	tx := newTransaction(t, g)
	busta, err := g.BustaTrasporto(tx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(busta.Message, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rx, err := TransactionFromBusta(m, deliveredAt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.build(g, tx, rx)
	if err != nil {
		t.Fatalf("building %s: %v", c.name, err)
	}
	return g, b
}

// boundaryParam matches the random boundary pec/smime gives multipart/signed.
var boundaryParam = regexp.MustCompile(`boundary="[^"]*"`)

// goldenForm returns the deterministic parts of a signed message: its header
// with the multipart/signed boundary masked, an empty line, and the signed
// entity exactly as signed (text, daticert.xml, postacert.eml). The
// signature, its signing time and random padding, and the boundary around
// it are left out.
func goldenForm(t *testing.T, msg []byte) []byte {
	t.Helper()
	res, err := smime.Verify(msg, smime.VerifyOptions{Roots: devRoots(t), CurrentTime: time.Now()})
	if err != nil {
		t.Fatalf("smime.Verify: %v", err)
	}
	var b bytes.Buffer
	b.Write(boundaryParam.ReplaceAll(res.Header, []byte(`boundary="SIGNED-BOUNDARY"`)))
	b.WriteString("--- signed entity ---\r\n")
	b.Write(res.Signed)
	return b.Bytes()
}

func TestBuildGolden(t *testing.T) {
	for _, c := range buildCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // each builds its own messages and waits on openssl and xmllint
			g, b := buildCaseMessage(t, c)
			if b.Kind != c.kind {
				t.Errorf("Built.Kind = %s, want %s", b.Kind, c.kind)
			}

			// 1. The deterministic parts match the golden file.
			got := goldenForm(t, b.Message)
			golden := filepath.Join("testdata", "golden", c.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestBuildGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the built message (go test -update rewrites it); got:\n%s", golden, got)
			}
			// Building again gives the same deterministic parts.
			_, again := buildCaseMessage(t, c)
			if !bytes.Equal(goldenForm(t, again.Message), got) {
				t.Error("two builds from the same data differ in their signed entity")
			}

			// 2. openssl accepts the signature.
			if err := opensslVerify(t, b.Message); err != nil {
				t.Error(err)
			}

			// 3. Our parser reads back the kind and fields.
			m, err := Parse(b.Message, ParseOptions{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if m.Kind != c.kind {
				t.Errorf("Parse: Kind = %s, want %s", m.Kind, c.kind)
			}
			if !m.Consistent() {
				t.Errorf("Parse: problems %q", m.Problems)
			}
			if !m.Signed || m.Signer == nil || !m.Signer.Equal(mustPKI(t).Gestore.Certificate) {
				t.Errorf("Parse: Signed %v, signer %v, want the gestore certificate", m.Signed, m.Signer)
			}
			if (m.Original != nil) != c.original {
				t.Errorf("Parse: has postacert.eml = %v, want %v", m.Original != nil, c.original)
			}
			if !strings.HasPrefix(m.Header.Subject, c.kind.SubjectPrefix()+"Contratto di fornitura n. 42 — firma") {
				t.Errorf("Parse: Subject %q, want prefix %q and the original subject", m.Header.Subject, c.kind.SubjectPrefix())
			}
			if m.Header.From == "" || smime.CheckSignerAddress(m.Signer, firstAddress(m.Header.From)) != nil {
				t.Errorf("Parse: From %q is not the signer's address", m.Header.From)
			}
			if m.Header.Sender != m.Header.From {
				t.Errorf("Sender %q differs from From %q", m.Header.Sender, m.Header.From)
			}
			hv := headerValues(t, b.Message)
			for name, want := range c.headers {
				if got := hv[strings.ToLower(name)]; got != want {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			if c.kind != KindBustaAnomalia {
				if hv["x-riferimento-message-id"] != "<20251114182628.1234@client.example>" {
					t.Errorf("X-Riferimento-Message-ID = %q", hv["x-riferimento-message-id"])
				}
			}

			// 4. The daticert validates against the DTD and reads back
			// as built.
			if c.kind == KindBustaAnomalia {
				if m.Daticert != nil || m.DaticertXML != nil || b.Daticert != nil {
					t.Error("the busta di anomalia carries a daticert")
				}
			} else {
				if err := xmllintValidate(t, m.DaticertXML); err != nil {
					t.Error(err)
				}
				if m.Daticert == nil {
					t.Fatal("Parse: no daticert")
				}
				if !sameDaticert(m.Daticert, b.Daticert) {
					t.Errorf("Parse: daticert\n%+v\nwant\n%+v", m.Daticert, b.Daticert)
				}
				if m.Daticert.Tipo != c.kind.Tipo() {
					t.Errorf("daticert tipo %s, want %s", m.Daticert.Tipo, c.kind.Tipo())
				}
			}

			// 5. Python's email package reads it without defects, with
			// the subject and sender meant (skipped without python3).
			if _, err := exec.LookPath("python3"); err == nil {
				r := pythonCheck(t, b.Message)[0]
				if len(r.Defects) > 0 {
					t.Errorf("Python: defects %q", r.Defects)
				}
				if want := c.kind.SubjectPrefix() + "Contratto di fornitura n. 42 — firma"; r.Subject != want {
					t.Errorf("Python: Subject %q, want %q", r.Subject, want)
				}
				if r.From[1] != g.Address() || r.FromDefault != g.Address() {
					t.Errorf("Python: parseaddr(From) = %q, default policy %q, want %q", r.From, r.FromDefault, g.Address())
				}
			}

			// 6. Inspect verifies it.
			r, err := Inspect(b.Message, InspectOptions{Roots: devRoots(t), At: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if r.Signature.Verdict != VerdictValid || r.Kind != c.kind {
				t.Errorf("Inspect: %s", r)
			}
		})
	}
}

// headerValues returns the top-level header fields of msg, lower-case
// name to unfolded value (the first of each name).
func headerValues(t *testing.T, msg []byte) map[string]string {
	t.Helper()
	h, _, err := splitHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range h {
		k := strings.ToLower(f.name)
		if _, ok := out[k]; !ok {
			out[k] = unfold(f.raw)
		}
	}
	return out
}

// sameDaticert compares two daticert models, times as instants.
func sameDaticert(a, b *daticert.Daticert) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	if !x.Time.Equal(y.Time) {
		return false
	}
	x.Time, y.Time = time.Time{}, time.Time{}
	if x.Errore == "" {
		x.Errore = daticert.ErroreNessuno
	}
	if y.Errore == "" {
		y.Errore = daticert.ErroreNessuno
	}
	return x.Tipo == y.Tipo && x.Errore == y.Errore && x.Mittente == y.Mittente &&
		slices.Equal(x.Destinatari, y.Destinatari) && x.ReplyTo == y.ReplyTo && x.Oggetto == y.Oggetto &&
		x.GestoreEmittente == y.GestoreEmittente && x.Identificativo == y.Identificativo &&
		x.MessageID == y.MessageID && x.Receipt == y.Receipt && x.Consegna == y.Consegna &&
		slices.Equal(x.Ricezione, y.Ricezione) && x.ErroreEsteso == y.ErroreEsteso
}
