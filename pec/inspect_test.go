package pec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/igpec"
)

func TestInspectReport(t *testing.T) {
	busta, _, _ := builtMessages(t)
	s := mustPKI(t)
	index, err := igpec.NewIndex(&igpec.Provider{
		Name:              testProvider,
		CertificateHashes: []string{igpec.CertificateHash(s.Gestore.Certificate.Raw)},
		Certificates:      [][]byte{s.Gestore.Certificate.Raw},
		MailReceipt:       "posta-certificata@" + testDomain,
		ManagedDomains:    []string{testDomain},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(busta.Message, InspectOptions{Roots: devRoots(t), At: time.Now(), Index: index})
	if err != nil {
		t.Fatal(err)
	}
	if r.Signature.Verdict != VerdictValid || r.Signature.Gestore != testProvider || r.Signature.Digest != "SHA-256" {
		t.Errorf("signature %+v", r.Signature)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	dc := got["daticert"].(map[string]any)
	sig := got["signature"].(map[string]any)
	if got["kind"] != "busta-trasporto" || got["kind_name"] != "busta di trasporto" ||
		dc["tipo"] != "posta-certificata" || dc["identificativo"] != busta.MessageID || dc["ricevuta"] != "completa" ||
		dc["data"] != "2025-11-14T18:26:32+01:00" || sig["verdict"] != "valid" ||
		got["header"].(map[string]any)["x_trasporto"] != "posta-certificata" || got["original"] == nil {
		t.Errorf("JSON report:\n%s", b)
	}
	text := r.String()
	for _, want := range []string{
		"Kind:                      busta di trasporto (busta-trasporto)\n",
		"X-Trasporto:               posta-certificata\n",
		"  destinatari:             anna.bianchi@pec.altro.test (certificato)\n",
		"                           ufficio@example.com (esterno)\n",
		"  data:                    14/11/2025 18:26:32 (+0100)\n",
		"Signature: valid\n",
		"  gestore:                 " + testProvider + "\n",
		"  digest:                  SHA-256 (micalg=sha-256)\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// A signer the index does not list makes the verdict untrusted: the
	// signature itself is intact.
	other, err := igpec.NewIndex(&igpec.Provider{
		Name: "Altro", CertificateHashes: []string{strings.Repeat("A", 40)}, Certificates: [][]byte{{1}},
		MailReceipt: "r@altro.test", ManagedDomains: []string{"altro.test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err = Inspect(busta.Message, InspectOptions{Roots: devRoots(t), At: time.Now(), Index: other})
	if err != nil {
		t.Fatal(err)
	}
	if r.Signature.Verdict != VerdictUntrusted || !strings.Contains(strings.Join(r.Signature.Reasons, ""), "indice dei gestori") {
		t.Errorf("unknown signer: %+v", r.Signature)
	}

	// An unsigned message, a message that is not PEC, bad options.
	r, err = Inspect([]byte("From: a@b.example\r\nSubject: ciao\r\n\r\nciao\r\n"), InspectOptions{Roots: devRoots(t), At: time.Now()})
	if err != nil || r.Kind != KindNotPEC || r.Signature.Verdict != VerdictUnsigned || !strings.Contains(r.String(), "Signature: unsigned") {
		t.Errorf("non-PEC: %v %+v", err, r)
	}
	for _, opts := range []InspectOptions{
		{At: time.Now()},
		{Roots: devRoots(t)},
		{Roots: devRoots(t), At: time.Now(), AtSigningTime: true},
	} {
		if _, err := Inspect(busta.Message, opts); err == nil {
			t.Errorf("options %+v accepted", opts)
		}
	}
	if _, err := Inspect(nil, InspectOptions{Roots: devRoots(t), At: time.Now()}); err == nil {
		t.Error("empty message inspected")
	}
}

func TestKind(t *testing.T) {
	for _, c := range buildCases {
		k := c.kind
		if !k.IsPEC() || k.Name() == "" || k.SubjectPrefix() == "" || k.String() != string(k) {
			t.Errorf("%s: %q %q", k, k.Name(), k.SubjectPrefix())
		}
		if (k.Tipo() == "") != (k == KindBustaAnomalia) {
			t.Errorf("%s: tipo %q", k, k.Tipo())
		}
	}
	if KindNotPEC.IsPEC() || KindUnknown.IsPEC() || KindNotPEC.SubjectPrefix() != "" || KindNotPEC.Name() != "messaggio non PEC" {
		t.Error("non-PEC kinds")
	}
}
