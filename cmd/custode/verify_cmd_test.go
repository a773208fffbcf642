package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/verifycmd"
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

// custode-verify, the small verifier, takes the same flags and prints the
// same report with the same exit status as custode verify, on a good
// bundle, a refused one and bad invocations: both run package verifycmd.
// Without -short, the binary itself is built and run.
func TestCustodeVerifySameOutput(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %d %s", code, out)
	}
	ev := `{"kind":"accettazione","identificativo":"opec2@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:00+01:00","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","oggetto":"n. 2"}` + "\n"
	if code, out := custode(t, ev, "ledger", "append", "-data", data); code != 0 {
		t.Fatalf("append: %d %s", code, out)
	}
	bundle := filepath.Join(t.TempDir(), "b.zip")
	if code, out := custode(t, "", "export", "receipt", "-data", data, "-id", "opec2@pec.prova.test", "-out", bundle, "-actor", "avv.rossi"); code != 0 {
		t.Fatalf("export: %d %s", code, out)
	}
	ca, tsa := filepath.Join(data, "pki", "ca.pem"), filepath.Join(data, "pki", "tsa.pem")
	notZip := filepath.Join(t.TempDir(), "x.zip")
	if err := os.WriteFile(notZip, []byte("PK not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := ""
	if !testing.Short() {
		gotool, err := exec.LookPath("go")
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(t.TempDir(), "custode-verify")
		if out, err := exec.Command(gotool, "build", "-o", bin, "../custode-verify").CombinedOutput(); err != nil {
			t.Fatalf("go build ../custode-verify: %v\n%s", err, out)
		}
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"good bundle", []string{"-anchor", ca, bundle}, 0, "the bundle verifies"},
		{"pinned to the TSA", []string{"-anchor", ca, "-gestore", tsa, bundle}, 1, "not the gestore's certificate given to verify"},
		{"not a ZIP", []string{"-anchor", ca, notZip}, 1, "not a ZIP file"},
		{"no anchor", []string{bundle}, 2, "want -anchor CA.pem"},
		{"bad flag", []string{"-nope", bundle}, 2, "flag provided but not defined"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Log: cli.DiscardLogger()}
			code := dispatch(context.Background(), e, append([]string{"verify"}, tt.args...))
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.want) {
				t.Fatalf("custode verify: %d, want %d and %q\n%s%s", code, tt.code, tt.want, &out, &errOut)
			}
			wantErr := strings.ReplaceAll(errOut.String(), "custode verify", "custode-verify")
			var vout, verr bytes.Buffer
			if vcode := verifycmd.Run(context.Background(), "custode-verify", tt.args, strings.NewReader(""), &vout, &verr); vcode != code || vout.String() != out.String() || verr.String() != wantErr {
				t.Errorf("verifycmd.Run: %d\n%s%s\ncustode verify: %d\n%s%s", vcode, &vout, &verr, code, &out, &errOut)
			}
			if bin == "" {
				return
			}
			cmd := exec.Command(bin, tt.args...)
			var bout, berr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &bout, &berr
			err := cmd.Run()
			var ee *exec.ExitError
			bcode := 0
			if errors.As(err, &ee) {
				bcode = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if bcode != code || bout.String() != out.String() || berr.String() != wantErr {
				t.Errorf("custode-verify: %d\n%s%s\ncustode verify: %d\n%s%s", bcode, &bout, &berr, code, &out, &errOut)
			}
		})
	}
}
