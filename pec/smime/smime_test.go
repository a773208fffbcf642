package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	rsaP, ecP := mustPKI(t, rsaPKI), mustPKI(t, ecdsaPKI)
	lf := bytes.ReplaceAll(pecEntity(4096, true), []byte("\r\n"), []byte("\n"))
	tests := []struct {
		name   string
		pki    *testPKI
		entity []byte
	}{
		{"rsa ricevuta", rsaP, pecEntity(4096, false)},
		{"rsa busta", rsaP, pecEntity(15000, true)},
		{"rsa LF entity", rsaP, lf},
		{"ecdsa", ecP, pecEntity(2000, true)},
		{"single part", rsaP, []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\nciao\r\n")},
		{"no trailing newline", rsaP, []byte("Content-Type: text/plain\r\n\r\nciao")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := signedMsg(t, tt.pki, `"Per conto di: mario.rossi@pec.custode.test" <`+tt.pki.address()+`>`, tt.entity)
			res, err := Verify(msg, tt.pki.opts(time.Now()))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := canonicalize(tt.entity)
			if !bytes.Equal(res.Signed, want) {
				t.Errorf("Signed = %q, want %q", truncate(res.Signed, 200), truncate(want, 200))
			}
			if res.Digest != crypto.SHA256 || res.Micalg != "sha-256" {
				t.Errorf("digest %v, micalg %q; want SHA-256, sha-256", res.Digest, res.Micalg)
			}
			if len(res.Chain) != 3 || !res.Chain[2].Equal(tt.pki.root) {
				t.Errorf("chain of %d certificates, want signer, intermediate, root", len(res.Chain))
			}
			if res.From != tt.pki.address() || !res.Signer.Equal(tt.pki.signer.Certificate) {
				t.Errorf("From %q, signer %v", res.From, res.Signer.Subject)
			}
			if res.SigningTime.IsZero() || time.Since(res.SigningTime) > time.Minute {
				t.Errorf("signing time %v", res.SigningTime)
			}
			// The same message with LF line endings verifies too.
			if _, err := Verify(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), tt.pki.opts(time.Now())); err != nil {
				t.Errorf("LF form: %v", err)
			}
			// And stock OpenSSL agrees.
			content, err := opensslVerify(t, msg, tt.pki.rootPEM())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(canonicalize(content), want) {
				t.Errorf("openssl extracted %q, want %q", truncate(content, 200), truncate(want, 200))
			}
		})
	}
}

func TestSignedMessageShape(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	msg := signedMsg(t, p, p.address(), pecEntity(3000, false))
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"From": p.address(), "X-Ricevuta": "accettazione", "MIME-Version": "1.0",
		"Message-Id": "<opec1.20261107165200.00001.01.1.1@pec.custode.test>",
	} {
		if got := m.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	ct := m.Header.Get("Content-Type")
	for _, want := range []string{"multipart/signed", `protocol="application/x-pkcs7-signature"`, "micalg=sha-256", "boundary="} {
		if !strings.Contains(ct, want) {
			t.Errorf("Content-Type %q lacks %q", ct, want)
		}
	}
	if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("message has bare LF line endings")
	}
	// RFC 6109 and the gestori in service (Aruba's messages in
	// ../shared/pec-samples) write the x- type; a parser matching that
	// exact string must find the signature.
	if !bytes.Contains(msg, []byte("\r\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\n")) {
		t.Error("no application/x-pkcs7-signature part named smime.p7s")
	}
	if !bytes.Contains(msg, []byte(`filename="smime.p7s"`)) {
		t.Error("no smime.p7s part")
	}
	// Never SHA-1: the CMS digest and signature algorithms are SHA-256.
	res, err := Verify(msg, p.opts(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var sd struct {
		Type    asn1.ObjectIdentifier
		Content struct {
			Version int
			Digests []pkix.AlgorithmIdentifier `asn1:"set"`
		} `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(res.Signature, &sd); err != nil {
		t.Fatal(err)
	}
	if len(sd.Content.Digests) != 1 || !sd.Content.Digests[0].Algorithm.Equal(oidSHA256) {
		t.Errorf("digest algorithms %v, want only SHA-256", sd.Content.Digests)
	}
	// The signer certificate and its intermediate are embedded.
	if len(res.Certificates) != 2 {
		t.Errorf("%d certificates embedded, want 2", len(res.Certificates))
	}
}

func TestSignMessageFoldsLongFields(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	var rcpts []string
	for i := range 50 {
		rcpts = append(rcpts, fmt.Sprintf("destinatario.numero%02d@pec.custode.test", i))
	}
	to := strings.Join(rcpts, ", ")
	h := append(pecHeader(p.address()), Field{Name: "To", Value: to})
	msg, err := SignMessage(h, pecEntity(1000, false), p.signer)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(hdr), "\r\n") {
		if len(line) > 78 && !strings.HasPrefix(line, "Content-Type:") {
			t.Errorf("header line of %d characters: %q", len(line), line)
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header["To"][1]; got != to {
		t.Errorf("To unfolds to %q, want %q", got, to)
	}
	if _, err := Verify(msg, p.opts(time.Now())); err != nil {
		t.Error(err)
	}
}

func TestSignRefuses(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakCert, err := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "weak"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}, weak, p.inter, p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "expired"}, NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter: time.Now().Add(-24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}, p.signer.Key, p.inter, p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	noSig, err := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "cert signing only"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}, p.signer.Key, p.inter, p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	entity := pecEntity(500, false)
	withField := func(f Field) []Field { return append(pecHeader(p.address()), f) }
	tests := []struct {
		name   string
		header []Field
		entity []byte
		signer *Signer
		want   string
	}{
		{"RSA 1024", pecHeader("x@y.it"), entity, &Signer{Key: weak, Certificate: weakCert}, "RSA key of 1024 bits is below the 2048-bit minimum"},
		{"key mismatch", pecHeader("x@y.it"), entity, &Signer{Key: weak, Certificate: p.signer.Certificate}, "does not match certificate"},
		{"P-224", pecHeader("x@y.it"), entity, &Signer{Key: p224, Certificate: p.signer.Certificate}, "does not match"},
		{"expired certificate", pecHeader("x@y.it"), entity, &Signer{Key: p.signer.Key, Certificate: expired}, `certificate "expired" expired at`},
		{"no digitalSignature", pecHeader("x@y.it"), entity, &Signer{Key: p.signer.Key, Certificate: noSig}, "does not allow digital signatures"},
		{"nil signer", pecHeader("x@y.it"), entity, nil, "needs a key and a certificate"},
		{"no From", pecHeader("x@y.it")[:2], entity, p.signer, "exactly one From and one Date"},
		{"two From", withField(Field{Name: "from", Value: "a@b.it"}), entity, p.signer, "exactly one From and one Date"},
		{"Content-Type set", withField(Field{Name: "Content-Type", Value: "text/plain"}), entity, p.signer, "is set by SignMessage"},
		{"header injection", withField(Field{Name: "Subject", Value: "a\r\nBcc: x@y.it"}), entity, p.signer, "line break"},
		{"non-ASCII value", withField(Field{Name: "Subject", Value: "però"}), entity, p.signer, "not ASCII"},
		{"bad field name", withField(Field{Name: "Sub ject", Value: "x"}), entity, p.signer, "invalid header field name"},
		{"long word", withField(Field{Name: "X-Long", Value: strings.Repeat("a", 1000)}), entity, p.signer, "longer than 998"},
		{"long entity line", pecHeader("x@y.it"), []byte("Content-Type: text/plain\r\n\r\n" + strings.Repeat("x", 999) + "\r\n"), p.signer, "over the 998-byte SMTP limit"},
		{"empty entity", pecHeader("x@y.it"), nil, p.signer, "empty entity"},
		{"entity without header", pecHeader("x@y.it"), []byte("just text\r\n"), p.signer, "in the entity to sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SignMessage(tt.header, tt.entity, tt.signer)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "smime: ") {
				t.Fatalf("SignMessage error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestVerifyFailures(t *testing.T) {
	p, ec := mustPKI(t, rsaPKI), mustPKI(t, ecdsaPKI)
	entity := pecEntity(3000, true)
	good := signedMsg(t, p, p.address(), entity)
	now := time.Now()
	leaf := p.signer.Certificate

	res, err := Verify(good, p.opts(now))
	if err != nil {
		t.Fatal(err)
	}
	badSigValue := bytes.Clone(res.Signature)
	badSigValue[len(badSigValue)-1] ^= 0x01 // last byte of the RSA signature value

	tests := []struct {
		name  string
		msg   []byte
		opts  VerifyOptions
		want  []error
		words []string
	}{
		{
			name:  "one byte of the signed part altered",
			msg:   bytes.Replace(good, []byte("Buongiorno"), []byte("Buongiornp"), 1),
			opts:  p.opts(now),
			want:  []error{ErrContentMismatch},
			words: []string{"smime: signature does not match the signed content"},
		},
		{
			name:  "signed header altered",
			msg:   bytes.Replace(good, []byte("name=\"daticert.xml\""), []byte("name=\"daticert.xmk\""), 1),
			opts:  p.opts(now),
			want:  []error{ErrContentMismatch},
			words: []string{"does not match the signed content"},
		},
		{
			name:  "signature value altered",
			msg:   withSignature(t, good, badSigValue),
			opts:  p.opts(now),
			want:  []error{ErrInvalidSignature},
			words: []string{`smime: signature value does not verify with the key of "Posta Certificata"`},
		},
		{
			name:  "signed by an untrusted CA",
			msg:   signedMsg(t, ec, ec.address(), entity),
			opts:  p.opts(now),
			want:  []error{ErrUntrusted},
			words: []string{`smime: signer certificate "Posta Certificata" does not chain to a trusted root`},
		},
		{
			name:  "From is not the signer",
			msg:   signedMsg(t, p, `"Mario" <b@c.it>`, entity),
			opts:  p.opts(now),
			want:  []error{ErrSignerMismatch},
			words: []string{"smime: signer posta-certificata@pec.custode.test is not the From address b@c.it"},
		},
		{
			name: "From matches case-insensitively",
			msg:  signedMsg(t, p, "Posta-Certificata@PEC.Custode.Test", entity),
			opts: p.opts(now),
			want: nil,
		},
		{
			name:  "expired",
			msg:   good,
			opts:  p.opts(leaf.NotAfter.Add(time.Hour)),
			want:  []error{ErrExpired},
			words: []string{`smime: certificate "Posta Certificata" expired at ` + leaf.NotAfter.UTC().Format(time.RFC3339)},
		},
		{
			name:  "not yet valid",
			msg:   good,
			opts:  p.opts(leaf.NotBefore.Add(-time.Hour)),
			want:  []error{ErrExpired},
			words: []string{"is not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339)},
		},
		{
			name: "at the signing time",
			msg:  good,
			opts: VerifyOptions{Roots: []*x509.Certificate{p.root}, UseSigningTime: true},
			want: nil,
		},
		{
			name: "trusting the intermediate only",
			msg:  good,
			opts: VerifyOptions{Roots: []*x509.Certificate{p.inter}, CurrentTime: now},
			want: nil,
		},
		{
			name:  "extended key usage not allowed",
			msg:   signedMsg(t, ec, ec.address(), entity),
			opts:  VerifyOptions{Roots: []*x509.Certificate{ec.root}, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			want:  []error{ErrUntrusted},
			words: []string{"not valid for e-mail protection"},
		},
		{
			name: "custom signer check",
			msg:  good,
			opts: VerifyOptions{Roots: []*x509.Certificate{p.root}, CurrentTime: now,
				CheckSigner: func(c *x509.Certificate, from string) error {
					return fmt.Errorf("smime: %s is not in the provider index", from)
				}},
			want:  nil,
			words: []string{"smime: posta-certificata@pec.custode.test is not in the provider index"},
		},
		{
			name:  "every reason is reported",
			msg:   bytes.Replace(signedMsg(t, ec, "b@c.it", entity), []byte("Buongiorno"), []byte("Buongiornp"), 1),
			opts:  p.opts(now),
			want:  []error{ErrContentMismatch, ErrUntrusted, ErrSignerMismatch},
			words: []string{"does not match the signed content", "does not chain to a trusted root", "is not the From address b@c.it"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Verify(tt.msg, tt.opts)
			if len(tt.want) == 0 && len(tt.words) == 0 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Verify succeeded")
			}
			var ve *VerifyError
			if !errors.As(err, &ve) || res == nil || len(res.Reasons) != len(ve.Reasons) {
				t.Fatalf("error %T %v, result %v: want a *VerifyError and its reasons in the result", err, err, res)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not match %v", err, w)
				}
			}
			if len(tt.want) > 0 && len(ve.Reasons) != len(tt.want) {
				t.Errorf("%d reasons, want %d: %v", len(ve.Reasons), len(tt.want), err)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if res.Signer == nil || len(res.Signed) == 0 {
				t.Error("result lacks the signer or the signed content")
			}
		})
	}
}

// withSignature returns msg with the content of its smime.p7s part
// replaced by p7s, base64 encoded.
func withSignature(t *testing.T, msg, p7s []byte) []byte {
	t.Helper()
	start := bytes.Index(msg, []byte("Content-Description: S/MIME Cryptographic Signature\r\n\r\n"))
	if start < 0 {
		t.Fatal("no signature part")
	}
	start += len("Content-Description: S/MIME Cryptographic Signature\r\n\r\n")
	end := bytes.LastIndex(msg, []byte("\r\n\r\n--"))
	enc := base64.StdEncoding.EncodeToString(p7s)
	var b bytes.Buffer
	b.Write(msg[:start])
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.Write(msg[end:])
	return b.Bytes()
}

// boundaryOf returns the outer boundary of a message made by SignMessage.
func boundaryOf(t *testing.T, msg []byte) string {
	t.Helper()
	m := regexp.MustCompile(`boundary="([^"]+)"`).FindSubmatch(msg)
	if m == nil {
		t.Fatal("no boundary")
	}
	return string(m[1])
}

func TestVerifyTolerates(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	good := signedMsg(t, p, p.address(), pecEntity(3000, true))
	b := boundaryOf(t, good)
	ct := `multipart/signed; protocol="application/x-pkcs7-signature"; micalg=sha-256; boundary="` + b + `"`
	setCT := func(v string) []byte { return bytes.Replace(good, []byte(ct), []byte(v), 1) }
	rename := func(nb string) []byte {
		m := bytes.ReplaceAll(good, []byte(`boundary="`+b+`"`), []byte("boundary="+nb))
		return bytes.ReplaceAll(m, []byte("--"+b), []byte("--"+nb))
	}
	sigStart := bytes.Index(good, []byte("Content-Description: S/MIME Cryptographic Signature\r\n\r\n")) + len("Content-Description: S/MIME Cryptographic Signature\r\n\r\n")
	sigEnd := bytes.LastIndex(good, []byte("\r\n\r\n--"))
	refold := func(width int, pad string) []byte {
		enc := strings.ReplaceAll(string(good[sigStart:sigEnd]), "\r\n", "")
		var s strings.Builder
		for len(enc) > width {
			s.WriteString(enc[:width] + pad + "\r\n")
			enc = enc[width:]
		}
		s.WriteString(enc)
		return append(append(bytes.Clone(good[:sigStart]), s.String()...), good[sigEnd:]...)
	}
	tests := []struct {
		name string
		msg  []byte
	}{
		{"as signed", good},
		{"LF line endings", bytes.ReplaceAll(good, []byte("\r\n"), []byte("\n"))},
		{"pkcs7 (RFC 5751) and sha1 micalg", setCT(`multipart/signed; protocol="application/pkcs7-signature"; micalg=sha1; boundary="` + b + `"`)},
		{"micalg sha256, unquoted protocol", setCT(`Multipart/Signed; protocol=application/pkcs7-signature; micalg=SHA256; boundary="` + b + `"`)},
		{"folded Content-Type", setCT("multipart/signed;\r\n\tprotocol=\"application/pkcs7-signature\";\r\n micalg=sha-256;\r\n boundary=\"" + b + "\"")},
		{"unquoted boundary", rename("simple-boundary-123")},
		{"unquoted boundary with =", rename("----=_Part_12_34.56")},
		{"quoted boundary with spaces", bytes.ReplaceAll(rename(`"with space"`), []byte(`--"with space"`), []byte("--with space"))},
		{"no protocol parameter", setCT(`multipart/signed; boundary="` + b + `"`)},
		{"signature folded at 64", refold(64, "")},
		{"signature folded with trailing spaces", refold(72, "  ")},
		{"signature on one line", refold(1<<20, "")},
		{"delimiter with trailing white space", bytes.ReplaceAll(good, []byte("--"+b+"\r\n"), []byte("--"+b+" \t\r\n"))},
		{"preamble and epilogue", append(bytes.Replace(good, []byte("This is an S/MIME signed message"), []byte("--not-a-delimiter\r\n--"+b+"x"), 1), "epilogue\r\n"...)},
		{"pkcs7 (RFC 5751) signature part", bytes.Replace(good, []byte("Content-Type: application/x-pkcs7-signature;"), []byte("Content-Type: application/pkcs7-signature;"), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Verify(tt.msg, p.opts(time.Now())); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyMalformed(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	good := signedMsg(t, p, p.address(), pecEntity(3000, true))
	b := boundaryOf(t, good)
	hdrEnd := bytes.Index(good, []byte("\r\n\r\n")) + 4
	sigPart := good[bytes.LastIndex(good, []byte("--"+b+"\r\nContent-Type: application/x-pkcs7")):]
	tests := []struct {
		name string
		msg  []byte
		opts func(*VerifyOptions)
		want error
		text string
	}{
		{"empty", nil, nil, ErrNotSigned, "not multipart/signed"},
		{"plain text", []byte("From: a@b.it\r\nSubject: x\r\n\r\nciao\r\n"), nil, ErrNotSigned, "Content-Type is text/plain"},
		{"multipart/mixed", bytes.Replace(good, []byte("multipart/signed"), []byte("multipart/mixed"), 1), nil, ErrNotSigned, "multipart/mixed"},
		{"enveloped protocol", bytes.Replace(good, []byte(`protocol="application/x-pkcs7-signature"`), []byte(`protocol="application/pgp-signature"`), 1), nil, ErrNotSigned, "not PKCS #7"},
		{"no boundary", bytes.Replace(good, []byte(`boundary="`+b+`"`), nil, 1), nil, ErrMalformed, "without a boundary"},
		{"wrong boundary", bytes.Replace(good, []byte(`boundary="`+b+`"`), []byte(`boundary="other"`), 1), nil, ErrMalformed, "no part delimited"},
		{"truncated in the signature", good[:len(good)-200], nil, ErrMalformed, "no closing boundary"},
		{"truncated in the first part", good[:len(good)/2], nil, ErrMalformed, "no closing boundary"},
		{"truncated before the body", good[:hdrEnd-10], nil, ErrMalformed, ""},
		{"only the header", good[:hdrEnd], nil, ErrMalformed, "no part delimited"},
		{"three parts", bytes.Replace(good, []byte("--"+b+"--"), append(bytes.Clone(sigPart[:len(sigPart)-len(b)-6]), "\r\n--"+b+"--"...), 1), nil, ErrMalformed, "more than two parts"},
		{"one part", append(bytes.Clone(good[:bytes.LastIndex(good, []byte("\r\n--"+b+"\r\nContent-Type: application/x-pkcs7"))]), "\r\n--"+b+"--\r\n"...), nil, ErrMalformed, "1 parts, want 2"},
		{"second part not a signature", bytes.Replace(good, []byte("Content-Type: application/x-pkcs7-signature;"), []byte("Content-Type: text/plain;"), 1), nil, ErrNotSigned, "second part is text/plain"},
		{"bad base64", bytes.Replace(good, []byte("Content-Description: S/MIME Cryptographic Signature\r\n\r\n"), []byte("Content-Description: S/MIME Cryptographic Signature\r\n\r\n*!"), 1), nil, ErrMalformed, "not valid base64"},
		{"quoted-printable signature", bytes.Replace(good, []byte("Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment"), []byte("Content-Transfer-Encoding: quoted-printable\r\nContent-Disposition: attachment"), 1), nil, ErrMalformed, "Content-Transfer-Encoding"},
		{"garbage signature", withSignature(t, good, []byte("this is not a CMS structure at all")), nil, ErrMalformed, "not valid BER"},
		{"empty signature", withSignature(t, good, nil), nil, ErrMalformed, "empty signature"},
		{"malformed header line", append([]byte("this line has no colon\r\n"), good...), nil, ErrMalformed, "has no field name"},
		{"header starts folded", append([]byte(" folded\r\n"), good...), nil, ErrMalformed, "continuation line"},
		{"message over the limit", good, func(o *VerifyOptions) { o.MaxMessageSize = 1000 }, ErrMessageTooLarge, "the limit is 1000"},
		{"no roots", good, func(o *VerifyOptions) { o.Roots = nil }, nil, "Roots is empty"},
		{"no time", good, func(o *VerifyOptions) { o.CurrentTime = time.Time{} }, nil, "needs CurrentTime or UseSigningTime"},
		{"both times", good, func(o *VerifyOptions) { o.UseSigningTime = true }, nil, "both CurrentTime and UseSigningTime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := p.opts(time.Now())
			if tt.opts != nil {
				tt.opts(&opts)
			}
			res, err := Verify(tt.msg, opts)
			if err == nil {
				t.Fatal("Verify succeeded")
			}
			if res != nil {
				t.Errorf("result %v for a message that does not parse", res)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %q does not match %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) || !strings.HasPrefix(err.Error(), "smime: ") {
				t.Errorf("error %q lacks %q", err, tt.text)
			}
		})
	}
}

func TestVerifyReader(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	good := signedMsg(t, p, p.address(), pecEntity(3000, false))
	if _, err := VerifyReader(bytes.NewReader(good), p.opts(time.Now())); err != nil {
		t.Fatal(err)
	}
	opts := p.opts(time.Now())
	opts.MaxMessageSize = int64(len(good) - 1)
	r := &countingReader{r: bytes.NewReader(append(good, make([]byte, 10<<20)...))}
	if _, err := VerifyReader(r, opts); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("error %v, want ErrMessageTooLarge", err)
	}
	if r.n > int64(len(good))+32<<10 {
		t.Errorf("read %d bytes of an over-long message, limit %d", r.n, len(good)-1)
	}
}

type countingReader struct {
	r *bytes.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// nestedBER returns n nested constructed values: SEQUENCEs of indefinite
// length when indefinite is set, else definite-length ones around a NULL.
func nestedBER(n int, indefinite bool) []byte {
	if indefinite {
		b := bytes.Repeat([]byte{0x30, 0x80}, n)
		return append(b, bytes.Repeat([]byte{0, 0}, n)...)
	}
	inner := []byte{0x05, 0x00}
	for range n {
		l := len(inner)
		var hdr []byte
		switch {
		case l < 0x80:
			hdr = []byte{0x30, byte(l)}
		case l < 0x100:
			hdr = []byte{0x30, 0x81, byte(l)}
		case l < 0x10000:
			hdr = []byte{0x30, 0x82, byte(l >> 8), byte(l)}
		default:
			hdr = []byte{0x30, 0x83, byte(l >> 16), byte(l >> 8), byte(l)}
		}
		inner = append(hdr, inner...)
	}
	return inner
}

func TestHostileSignatures(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	good := signedMsg(t, p, p.address(), pecEntity(2000, false))
	crafted := bytes.Repeat([]byte{0x30, 0x80}, 5<<20) // 10 MiB of nested BER
	tests := []struct {
		name     string
		p7s      []byte
		want     error
		text     string
		maxAlloc uint64
	}{
		{"10 MB nested BER", crafted, ErrSignatureTooLarge, "the limit is 1048576", 64 << 20},
		{"2 MB random", bytes.Repeat([]byte{0x42}, 2<<20), ErrSignatureTooLarge, "the limit is 1048576", 16 << 20},
		{"1 MB nested indefinite BER", nestedBER(MaxSignatureSize/4, true), ErrSignatureTooLarge, "nested deeper than 64 levels", 8 << 20},
		{"nested definite BER", nestedBER(1000, false), ErrSignatureTooLarge, "nested deeper than 64 levels", 8 << 20},
		{"many indefinite elements", append(append([]byte{0x30, 0x80}, bytes.Repeat([]byte{0x01, 0x01, 0xff}, 300000)...), 0, 0), ErrSignatureTooLarge, "too many indefinite-length elements", 8 << 20},
		{"too many elements", append([]byte{0x30, 0x83, 0x0f, 0x42, 0x40}, bytes.Repeat([]byte{0x05, 0x00}, 500000)...), ErrSignatureTooLarge, "more than 100000 values", 8 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := withSignature(t, good, tt.p7s)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Verify(msg, p.opts(time.Now()))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %v, want %v with %q", err, tt.want, tt.text)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > tt.maxAlloc+uint64(len(msg)) {
				t.Errorf("allocated %d bytes verifying a %d-byte message", alloc, len(msg))
			}
			// ParseSignature applies the same bounds.
			if _, err := ParseSignature(tt.p7s); !errors.Is(err, tt.want) {
				t.Errorf("ParseSignature: %v, want %v", err, tt.want)
			}
		})
	}
}

// nestedMIME returns an entity with n levels of multipart/mixed (or of
// message/rfc822 when rfc822 is set) around a text part.
func nestedMIME(n int, rfc822 bool) []byte {
	var head, tail strings.Builder
	for i := range n {
		if rfc822 {
			head.WriteString("Content-Type: message/rfc822\r\n\r\n")
			continue
		}
		fmt.Fprintf(&head, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
		tail.WriteString(fmt.Sprintf("\r\n--b%d--", n-1-i))
	}
	return []byte(head.String() + "Content-Type: text/plain\r\n\r\nfondo" + tail.String() + "\r\n")
}

func TestMIMEDepth(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	tests := []struct {
		name     string
		entity   []byte
		maxDepth int
		wantErr  bool
	}{
		// The message is level 1, its first part level 2: n nested
		// multiparts put the text part at level n+2.
		{"1,000 multiparts deep", nestedMIME(1000, false), 0, true},
		{"1,000 message/rfc822 deep", nestedMIME(1000, true), 0, true},
		{"62 multiparts, limit 64", nestedMIME(62, false), 0, false},
		{"63 multiparts, limit 64", nestedMIME(63, false), 0, true},
		{"3 multiparts, limit 5", nestedMIME(3, false), 5, false},
		{"4 multiparts, limit 5", nestedMIME(4, false), 5, true},
		{"4 message/rfc822, limit 5", nestedMIME(4, true), 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := signedMsg(t, p, p.address(), tt.entity)
			opts := p.opts(time.Now())
			opts.MaxDepth = tt.maxDepth
			_, err := Verify(msg, opts)
			if tt.wantErr != (err != nil) || tt.wantErr && (!errors.Is(err, ErrTooDeep) || !strings.Contains(err.Error(), "nested deeper than")) {
				t.Fatalf("Verify error %v, want ErrTooDeep: %v", err, tt.wantErr)
			}
		})
	}
}

func TestSamples(t *testing.T) {
	roots := systemRoots(t)
	tests := []struct {
		file        string
		signingTime string
	}{
		{sampleFiles[0], "2014-11-07T15:52:01Z"},
		{sampleFiles[1], "2014-11-14T17:26:32Z"},
		{sampleFiles[2], "2014-11-14T17:26:32Z"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			msg := readSample(t, tt.file)
			atSigning := VerifyOptions{Roots: roots, UseSigningTime: true, AllowSHA1Certificates: true}
			res, err := Verify(msg, atSigning)
			if err != nil {
				t.Fatalf("Verify at the signing time: %v", err)
			}
			if got := res.SigningTime.UTC().Format(time.RFC3339); got != tt.signingTime {
				t.Errorf("signing time %s, want %s", got, tt.signingTime)
			}
			if res.Digest != crypto.SHA1 || res.Micalg != "sha1" || res.From != "posta-certificata@pec.aruba.it" {
				t.Errorf("digest %v, micalg %q, From %q", res.Digest, res.Micalg, res.From)
			}
			root := res.Chain[len(res.Chain)-1]
			t.Logf("%s: signer %q, chain of %d, root %q (%s)", tt.file, res.Signer.Subject, len(res.Chain), root.Subject, systemRootsFile)
			if root.Subject.CommonName != "Baltimore CyberTrust Root" || len(res.Chain) != 3 {
				t.Errorf("chain ends at %q after %d certificates, want Baltimore CyberTrust Root after 3", root.Subject, len(res.Chain))
			}
			// The leaf, sign of its age, expired long ago: verifying now fails.
			now := VerifyOptions{Roots: roots, CurrentTime: time.Now(), AllowSHA1Certificates: true}
			if _, err := Verify(msg, now); !errors.Is(err, ErrExpired) || !strings.Contains(err.Error(), `certificate "Posta Certificata ARUBA PEC" expired at 2017-02-10T12:32:21Z`) {
				t.Errorf("Verify now: %v, want an expiry", err)
			}
			// Without AllowSHA1Certificates the SHA-1 signed chain is refused.
			strict := atSigning
			strict.AllowSHA1Certificates = false
			if _, err := Verify(msg, strict); !errors.Is(err, ErrUntrusted) {
				t.Errorf("Verify without SHA-1 certificates: %v, want ErrUntrusted", err)
			}
			// Line endings do not matter.
			crlf := bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
			for _, variant := range [][]byte{crlf, bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))} {
				if _, err := Verify(variant, atSigning); err != nil {
					t.Errorf("line ending variant: %v", err)
				}
			}
			// One byte altered in the signed part.
			i := bytes.Index(msg, []byte("Content-Type: text/plain"))
			altered := bytes.Clone(msg)
			altered[i+len("Content-Type: text/")] = 'P'
			if _, err := Verify(altered, atSigning); !errors.Is(err, ErrContentMismatch) {
				t.Errorf("altered sample: %v, want ErrContentMismatch", err)
			}
			// The signer is not whoever From says.
			_, body, err := parseHeader(msg)
			if err != nil {
				t.Fatal(err)
			}
			fromLine := regexp.MustCompile(`(?m)^From: [^\r\n]*`)
			forged := append(fromLine.ReplaceAll(bytes.Clone(msg[:body]), []byte("From: posta-certificata@pec.other.it")), msg[body:]...)
			if _, err := Verify(forged, atSigning); !errors.Is(err, ErrSignerMismatch) ||
				!strings.Contains(err.Error(), "signer posta-certificata@pec.aruba.it is not the From address posta-certificata@pec.other.it") {
				t.Errorf("forged From: %v", err)
			}
		})
	}
}

func TestCheckSignerAddress(t *testing.T) {
	san := &x509.Certificate{Subject: pkix.Name{CommonName: "Posta Certificata"}, EmailAddresses: []string{"posta-certificata@pec.a.it"}}
	old := &x509.Certificate{Subject: pkix.Name{CommonName: "Old", Names: []pkix.AttributeTypeAndValue{{Type: oidEmailAddress, Value: "Posta-Certificata@Pec.Old.it"}}}}
	none := &x509.Certificate{Subject: pkix.Name{CommonName: "Nobody"}}
	tests := []struct {
		cert *x509.Certificate
		from string
		want string
	}{
		{san, "posta-certificata@pec.a.it", ""},
		{san, "POSTA-CERTIFICATA@PEC.A.IT", ""},
		{old, "posta-certificata@pec.old.it", ""},
		{san, "b@c.it", "smime: signer posta-certificata@pec.a.it is not the From address b@c.it"},
		{none, "b@c.it", `smime: signer certificate "Nobody" carries no e-mail address, From is b@c.it`},
	}
	for _, tt := range tests {
		err := CheckSignerAddress(tt.cert, tt.from)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || err.Error() != tt.want || !errors.Is(err, ErrSignerMismatch)) {
			t.Errorf("CheckSignerAddress(%s, %s) = %v, want %q", tt.cert.Subject.CommonName, tt.from, err, tt.want)
		}
	}
}

func TestNameConstraintMatching(t *testing.T) {
	tests := []struct {
		match      func(string, string) bool
		name, cons string
		want       bool
	}{
		{matchEmail, "posta-certificata@pec.aruba.it", "pec.aruba.it", true},
		{matchEmail, "posta-certificata@PEC.ARUBA.IT", "pec.aruba.it", true},
		{matchEmail, "posta-certificata@x.pec.aruba.it", "pec.aruba.it", false},
		{matchEmail, "posta-certificata@x.pec.aruba.it", ".pec.aruba.it", true},
		{matchEmail, "posta-certificata@pec.aruba.it", ".pec.aruba.it", false},
		{matchEmail, "a@pec.aruba.it", "a@pec.aruba.it", true},
		{matchEmail, "b@pec.aruba.it", "a@pec.aruba.it", false},
		{matchEmail, "no-at-sign", "pec.aruba.it", false},
		{matchDomain, "pec.aruba.it", "aruba.it", true},
		{matchDomain, "pecaruba.it", "aruba.it", false},
		{matchDomain, "aruba.it", ".aruba.it", false},
		{matchDomain, "x.aruba.it", ".aruba.it", true},
	}
	for _, tt := range tests {
		if got := tt.match(tt.name, tt.cons); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.name, tt.cons, got, tt.want)
		}
	}
}

func TestLegacyChainChecks(t *testing.T) {
	// A SHA-1 hierarchy cannot be made with crypto/x509 any more, so the
	// legacy path is exercised on the real samples (TestSamples); here its
	// refusals are checked on the modern test PKI, whose chain it must
	// not accept in place of crypto/x509 either.
	p := mustPKI(t, rsaPKI)
	leaf := p.signer.Certificate
	now := time.Now()
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	if _, err := legacyChain(leaf, []*x509.Certificate{p.inter}, []*x509.Certificate{p.root}, now, usages); !errors.Is(err, errNoSHA1) {
		t.Errorf("SHA-256 chain: %v, want errNoSHA1", err)
	}
	if _, err := legacyChain(leaf, nil, []*x509.Certificate{p.root}, now, usages); !errors.Is(err, ErrUntrusted) {
		t.Errorf("missing intermediate: %v, want ErrUntrusted", err)
	}
	if _, err := legacyChain(leaf, []*x509.Certificate{p.inter}, []*x509.Certificate{p.root}, leaf.NotAfter.Add(time.Hour), usages); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v, want ErrExpired", err)
	}
	if err := checkLink(leaf, leaf, 0, false, now); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "is not a CA") {
		t.Errorf("leaf as issuer: %v", err)
	}
	other := &x509.Certificate{EmailAddresses: []string{"posta-certificata@pec.other.it"}, Subject: pkix.Name{CommonName: "Other"}}
	if err := checkNameConstraints(other, p.inter); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "not permitted by the name constraints") {
		t.Errorf("name constraints: %v", err)
	}
	if err := checkNameConstraints(leaf, p.inter); err != nil {
		t.Errorf("name constraints: %v", err)
	}
	ekuLeaf := &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, Subject: pkix.Name{CommonName: "TLS"}}
	if err := checkUsages([]*x509.Certificate{ekuLeaf, p.root}, usages); !errors.Is(err, ErrUntrusted) {
		t.Errorf("extended key usage: %v", err)
	}
	if err := checkUsages([]*x509.Certificate{leaf, p.inter, p.root}, usages); err != nil {
		t.Errorf("extended key usage: %v", err)
	}
}

func TestCheckBER(t *testing.T) {
	p := mustPKI(t, rsaPKI)
	res, err := Verify(signedMsg(t, p, p.address(), pecEntity(500, false)), p.opts(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"our signature", res.Signature, nil},
		{"indefinite length", []byte{0x30, 0x80, 0x04, 0x01, 0x61, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00}, nil},
		{"high tag number", []byte{0x3f, 0x81, 0x01, 0x02, 0x05, 0x00}, nil},
		{"64 levels", nestedBER(63, false), nil},
		{"65 levels", nestedBER(65, false), ErrSignatureTooLarge},
		{"truncated", res.Signature[:len(res.Signature)-1], ErrMalformed},
		{"trailing data", append(bytes.Clone(res.Signature), 0), ErrMalformed},
		{"indefinite primitive", []byte{0x04, 0x80, 0x00, 0x00}, ErrMalformed},
		{"unterminated indefinite", []byte{0x30, 0x80, 0x05, 0x00}, ErrMalformed},
		{"length beyond input", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x00}, ErrMalformed},
		{"child overruns parent", []byte{0x30, 0x02, 0x04, 0x02, 0x61, 0x62}, ErrMalformed},
		{"five length octets", []byte{0x04, 0x85, 0, 0, 0, 0, 1, 0x61}, ErrMalformed},
		{"long tag", []byte{0x1f, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkBER(tt.in); tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("checkBER: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseKeyPair(t *testing.T) {
	p := mustPKI(t, ecdsaPKI)
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.signer.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.signer.Certificate.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw})...)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Certificate.Equal(p.signer.Certificate) || len(s.Chain) != 1 || !s.Chain[0].Equal(p.inter) {
		t.Fatal("wrong certificates loaded")
	}
	msg, err := SignMessage(pecHeader(p.address()), pecEntity(500, false), s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(msg, p.opts(time.Now())); err != nil {
		t.Fatal(err)
	}
	// A key that is not the certificate's is refused, without showing it.
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := x509.MarshalPKCS8PrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: otherDER})
	_, err = ParseKeyPair(certPEM, otherPEM)
	if err == nil || strings.Contains(err.Error(), string(otherPEM[30:60])) || !strings.HasPrefix(err.Error(), "smime: ") {
		t.Fatalf("mismatched key pair: %v", err)
	}
	if _, err := LoadKeyPair(filepath.Join(dir, "missing.pem"), keyFile); err == nil {
		t.Fatal("missing file accepted")
	}
	roots, err := ParseCertificatesPEM(append([]byte("junk\n"), certPEM...))
	if err != nil || len(roots) != 2 {
		t.Fatalf("ParseCertificatesPEM: %d certificates, %v", len(roots), err)
	}
}

// TestWriteFieldFolding checks where writeField breaks a long value: only
// at spaces outside quoted strings and past Keep, each line within 78
// characters when the units allow it, and the value read back unfolded.
func TestWriteFieldFolding(t *testing.T) {
	long := strings.Repeat("ufficio.protocollo.", 3) + "direzione@pec.comune-di-esempio.test"
	quoted := `"Per conto di: ` + long + `" <posta-certificata@pec.custode.test>`
	word := strings.Repeat("w", 60)
	tests := []struct {
		name  string
		f     Field
		lines []string
	}{
		{"short", Field{Name: "Subject", Value: "ACCETTAZIONE: prova"}, []string{"Subject: ACCETTAZIONE: prova"}},
		{"quoted display name kept whole", Field{Name: "From", Value: quoted}, []string{
			`From: "Per conto di: ` + long + `"`,
			" <posta-certificata@pec.custode.test>",
		}},
		{"escaped quote inside the display name", Field{Name: "From", Value: `"a \" b ` + long + `" <x@y.it>`}, []string{
			`From: "a \" b ` + long + `"`,
			" <x@y.it>",
		}},
		{"prefix folded from its word without Keep", Field{Name: "Subject", Value: "ACCETTAZIONE: " + word}, []string{
			"Subject: ACCETTAZIONE:",
			" " + word,
		}},
		{"Keep holds the prefix with its word", Field{Name: "Subject", Value: "ACCETTAZIONE: " + word + " coda", Keep: len("ACCETTAZIONE: ")}, []string{
			"Subject: ACCETTAZIONE: " + word,
			" coda",
		}},
		{"Keep over a multi-word prefix", Field{Name: "Subject", Value: "POSTA CERTIFICATA: " + word, Keep: len("POSTA CERTIFICATA: ")}, []string{
			"Subject: POSTA CERTIFICATA: " + word,
		}},
		{"double spaces survive", Field{Name: "X-A", Value: word + "  " + word}, []string{
			"X-A: " + word,
			"  " + word,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeField(&b, tt.f); err != nil {
				t.Fatal(err)
			}
			want := strings.Join(tt.lines, "\r\n") + "\r\n"
			if b.String() != want {
				t.Errorf("writeField wrote\n%q\nwant\n%q", b.String(), want)
			}
			// Unfolding (RFC 5322 §2.2.3) gives the value back.
			unfolded := strings.ReplaceAll(strings.TrimSuffix(b.String(), "\r\n"), "\r\n", "")
			if want := tt.f.Name + ": " + tt.f.Value; unfolded != want {
				t.Errorf("unfolds to %q, want %q", unfolded, want)
			}
		})
	}
}
