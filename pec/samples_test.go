package pec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
)

// TestRealSamples classifies the real Aruba messages of 2014 in
// shared/pec-samples, reads their daticert and verifies their signatures at
// the signing time (their certificates have expired; the chain ends at
// Baltimore CyberTrust Root and is signed with SHA-1).
func TestRealSamples(t *testing.T) {
	roots := systemRoots(t)
	for _, c := range []struct {
		file     string
		kind     Kind
		tipo     daticert.Tipo
		ident    string
		msgid    string
		mittente string
		dest     string
		oggetto  string
		receipt  daticert.ReceiptType
		consegna string
		data     string
		original bool
		tipoHdr  string
	}{
		{
			file: "01_aruba_2014_busta-trasporto_completa.eml", kind: KindBustaTrasporto, tipo: daticert.TipoPostaCertificata,
			ident:    "opec275.20141107165200.03048.08.1.17@pec.aruba.it",
			msgid:    "<NEOEQO$8B558E13C0664DE7004C1EFB790D1A09@pec.it>",
			mittente: "thinkstudio@pec.it", dest: "l.battistini@pec.it", oggetto: "Re: archetipo",
			receipt: daticert.ReceiptCompleta, data: "2014-11-07T16:52:00+01:00", original: true, tipoHdr: "completa",
		},
		{
			file: "02_aruba_2014_ricevuta-accettazione.eml", kind: KindAccettazione, tipo: daticert.TipoAccettazione,
			ident:    "opec275.20141114182632.23219.07.1.48@pec.aruba.it",
			msgid:    "<1415985992.182905912399292.346704098667155-openerp-private@elbati-Vostro-3550>",
			mittente: "l.battistini@pec.it", dest: "thinkstudio@pec.it", oggetto: "test private",
			data: "2014-11-14T18:26:32+01:00",
		},
		{
			file: "03_aruba_2014_ricevuta-avvenuta-consegna_completa.eml", kind: KindConsegnaCompleta, tipo: daticert.TipoAvvenutaConsegna,
			ident:    "opec275.20141114182632.23219.07.1.48@pec.aruba.it",
			msgid:    "<1415985992.182905912399292.346704098667155-openerp-private@elbati-Vostro-3550>",
			mittente: "l.battistini@pec.it", dest: "thinkstudio@pec.it", oggetto: "test private",
			receipt: daticert.ReceiptCompleta, consegna: "thinkstudio@pec.it", data: "2014-11-14T18:26:32+01:00", original: true,
		},
	} {
		t.Run(c.file, func(t *testing.T) {
			msg := readSample(t, c.file)
			m, err := Parse(msg, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != c.kind {
				t.Errorf("Kind = %s, want %s", m.Kind, c.kind)
			}
			if !m.Consistent() {
				t.Errorf("problems: %q", m.Problems)
			}
			if m.Micalg != "sha1" || !m.Signed || m.Signer == nil {
				t.Errorf("Signed %v, micalg %q, signer %v", m.Signed, m.Micalg, m.Signer)
			}
			if m.Header.TipoRicevuta != c.tipoHdr {
				t.Errorf("X-TipoRicevuta (X-Tiporicevuta on the wire) = %q, want %q", m.Header.TipoRicevuta, c.tipoHdr)
			}
			d := m.Daticert
			if d == nil {
				t.Fatal("no daticert")
			}
			if d.Tipo != c.tipo || d.Identificativo != c.ident || d.MessageID != c.msgid || d.Mittente != c.mittente ||
				len(d.Destinatari) != 1 || d.Destinatari[0].Address != c.dest || d.Destinatari[0].Tipo != daticert.DestinatarioCertificato ||
				d.Oggetto != c.oggetto || d.Receipt != c.receipt || d.Consegna != c.consegna ||
				d.GestoreEmittente != "ARUBA PEC S.p.A." || d.Time.Format(time.RFC3339) != c.data {
				t.Errorf("daticert %+v", d)
			}
			if (m.Original != nil) != c.original {
				t.Errorf("has postacert.eml = %v, want %v", m.Original != nil, c.original)
			}
			if c.original && !strings.Contains(string(m.Original), "Message-ID: <"+c.ident+">") {
				t.Error("postacert.eml does not carry the identificativo as Message-ID")
			}

			// The signature verifies at the signing time.
			r, err := Inspect(msg, InspectOptions{Roots: roots, AtSigningTime: true, AllowSHA1Certificates: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Signature.Verdict != VerdictValid {
				t.Errorf("verdict %s: %q", r.Signature.Verdict, r.Signature.Reasons)
			}
			if n := len(r.Signature.Chain); n != 3 || !strings.Contains(r.Signature.Chain[n-1], "Baltimore CyberTrust Root") {
				t.Errorf("chain %q, want three certificates up to Baltimore CyberTrust Root", r.Signature.Chain)
			}
			if r.Signature.Signer == nil || r.Signature.Signer.SHA1 != "AA:A7:1B:FD:2D:BC:9F:E6:7A:A2:3C:9F:33:AA:F3:31:6D:F1:AA:66" {
				t.Errorf("signer %+v", r.Signature.Signer)
			}
			text := r.String()
			for _, want := range []string{c.kind.Name(), "identificativo:", c.ident, "Signature: valid", "ARUBA PEC S.p.A.", "(the signing time)"} {
				if !strings.Contains(text, want) {
					t.Errorf("report text lacks %q:\n%s", want, text)
				}
			}
			if _, err := json.Marshal(r); err != nil {
				t.Error(err)
			}
			t.Logf("custode pec inspect %s --at signing-time:\n%s", c.file, text)

			// Verified now, the expired certificates are not trusted; the
			// signatures are still intact.
			r, err = Inspect(msg, InspectOptions{Roots: roots, At: time.Now(), AllowSHA1Certificates: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Signature.Verdict != VerdictUntrusted || !strings.Contains(strings.Join(r.Signature.Reasons, "\n"), "expired") &&
				!strings.Contains(strings.Join(r.Signature.Reasons, "\n"), "not valid") {
				t.Errorf("verified now: verdict %s, reasons %q", r.Signature.Verdict, r.Signature.Reasons)
			}
		})
	}
}
