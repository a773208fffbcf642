package smime

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// corpusSeeds are the seed files kept in testdata/fuzz: one of our own
// signed messages (never the real PEC samples) and its signature.
var corpusSeeds = map[string]string{
	"FuzzVerify":         "signed-busta",
	"FuzzParseSignature": "signed-busta-p7s",
}

func FuzzVerify(f *testing.F) {
	p := mustPKI(f, rsaPKI)
	msg := signedMsg(f, p, p.address(), pecEntity(1500, true))
	f.Add(msg)
	f.Add(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")))
	f.Add(signedMsg(f, p, "b@c.it", nestedMIME(4, false)))
	f.Add(signedMsg(f, p, p.address(), nestedMIME(3, true)))
	f.Add([]byte("Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\n\r\n--x\r\n" +
		"Content-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n--x--\r\n"))
	opts := p.opts(time.Now())
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := Verify(msg, opts)
		var ve *VerifyError
		switch {
		case err == nil:
			if res == nil || len(res.Reasons) != 0 || len(res.Chain) == 0 || res.Signer == nil {
				t.Fatalf("success without a complete result: %+v", res)
			}
		case res != nil:
			if !errors.As(err, &ve) || len(ve.Reasons) == 0 || len(res.Reasons) != len(ve.Reasons) {
				t.Fatalf("result with error %v", err)
			}
		}
		if err != nil && !strings.HasPrefix(err.Error(), "smime: ") {
			t.Fatalf("error without the package prefix: %v", err)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	p := mustPKI(f, rsaPKI)
	res, err := Verify(signedMsg(f, p, p.address(), pecEntity(500, false)), p.opts(time.Now()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(res.Signature)
	f.Add(nestedBER(70, true))
	f.Add(nestedBER(70, false))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, p7s []byte) {
		sig, err := ParseSignature(p7s)
		if len(p7s) > MaxSignatureSize && !errors.Is(err, ErrSignatureTooLarge) {
			t.Fatalf("oversized input not refused: %v", err)
		}
		if err != nil {
			return
		}
		if sig.Signer == nil || sig.Digest == 0 {
			t.Fatalf("parsed signature without a signer or digest")
		}
		_ = sig.CheckContent([]byte("Content-Type: text/plain\r\n\r\nx\r\n"))
	})
}

// TestFuzzCorpus checks the committed seed corpus still holds a signed
// message and its signature; with -update it rewrites the corpus from a
// freshly signed message.
func TestFuzzCorpus(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	if *update {
		msg := signedMsg(t, p, p.address(), pecEntity(1500, true))
		res, err := Verify(msg, p.opts(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		for target, data := range map[string][]byte{"FuzzVerify": msg, "FuzzParseSignature": res.Signature} {
			dir := filepath.Join("testdata", "fuzz", target)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, corpusSeeds[target]), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	seed := func(target string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, corpusSeeds[target]))
		if err != nil {
			t.Fatalf("%v (regenerate with go test -run TestFuzzCorpus -update)", err)
		}
		s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
		if !ok {
			t.Fatalf("%s: not a fuzz corpus file", target)
		}
		q, ok := strings.CutSuffix(strings.TrimSpace(s), ")")
		if !ok {
			t.Fatalf("%s: not a fuzz corpus file", target)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		return []byte(v)
	}
	if _, err := splitSigned(seed("FuzzVerify"), DefaultMaxDepth); err != nil {
		t.Errorf("FuzzVerify seed: %v", err)
	}
	sig, err := ParseSignature(seed("FuzzParseSignature"))
	if err != nil {
		t.Fatalf("FuzzParseSignature seed: %v", err)
	}
	if !strings.Contains(sig.Signer.Subject.CommonName, "Posta Certificata") {
		t.Errorf("FuzzParseSignature seed signed by %v", sig.Signer.Subject)
	}
}
