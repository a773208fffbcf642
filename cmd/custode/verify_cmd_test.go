package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyGestorePin: custode verify -gestore CERT accepts a bundle
// signed by that certificate and refuses one checked against another;
// the report names the gestore's certificate and each signature's time.
func TestVerifyGestorePin(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	ev := `{"kind":"accettazione","identificativo":"opec1@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:00+01:00","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","oggetto":"n. 1"}` + "\n"
	if code, out := custode(t, ev, "ledger", "append", "-data", data); code != 0 {
		t.Fatalf("append: %d %s", code, out)
	}
	bundle := filepath.Join(t.TempDir(), "b.zip")
	if code, out := custode(t, "", "export", "receipt", "-data", data, "-id", "opec1@pec.prova.test", "-kind", "accettazione", "-out", bundle, "-actor", "avv.rossi"); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	pkiDir := filepath.Join(data, "pki")
	for _, f := range []string{"ca.pem", "gestore.pem", "tsa.pem"} {
		if _, err := os.Stat(filepath.Join(pkiDir, f)); err != nil {
			t.Fatalf("init wrote no %s: %v", f, err)
		}
	}
	ca, gestore, tsa := filepath.Join(pkiDir, "ca.pem"), filepath.Join(pkiDir, "gestore.pem"), filepath.Join(pkiDir, "tsa.pem")
	code, out := custode(t, "", "verify", "-anchor", ca, "-gestore", gestore, bundle)
	if code != 0 || !strings.Contains(out, "the bundle verifies") || !strings.Contains(out, "validated at") || !strings.Contains(out, "SHA-256") {
		t.Fatalf("verify -gestore with the gestore's certificate: %d\n%s", code, out)
	}
	code, out = custode(t, "", "verify", "-anchor", ca, "-gestore", tsa, bundle)
	if code != 1 || !strings.Contains(out, "not the gestore's certificate given to verify") {
		t.Fatalf("verify -gestore with the TSA's certificate: %d\n%s", code, out)
	}
	if code, out := custode(t, "", "verify", "-anchor", ca, "-gestore", filepath.Join(pkiDir, "missing.pem"), bundle); code != 2 || !strings.Contains(out, "-gestore") {
		t.Fatalf("verify -gestore with a missing file: %d\n%s", code, out)
	}
}
