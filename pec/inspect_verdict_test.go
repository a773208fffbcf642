package pec

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"crypto/x509"
	"github.com/custode/custode/pec/pki"
)

// headerAndBody splits a message at its first empty line.
func headerAndBody(t *testing.T, msg []byte) (string, string) {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatal("no end of header")
	}
	return string(msg[:i+2]), string(msg[i+4:])
}

// contentFields returns the Content-* fields of a header, and the rest.
func contentFields(header string) (content, rest string) {
	var c, r strings.Builder
	cur := &r
	for _, l := range strings.SplitAfter(header, "\r\n") {
		if l == "" {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			cur = &r
			if strings.HasPrefix(strings.ToLower(l), "content-") {
				cur = &c
			}
		}
		cur.WriteString(l)
	}
	return c.String(), r.String()
}

// TestInspectVerdicts: a broken signature is "invalid" (exit 1), an intact
// one by a certificate outside the given roots "untrusted" (exit 3), no
// signature "unsigned" (exit 4); a busta a mailing list wrapped in
// multipart/mixed with a footer, or that a user forwarded as a base64
// attachment, is found and verified where it is, and the report says where.
func TestInspectVerdicts(t *testing.T) {
	busta, _, _ := builtMessages(t)
	other, err := pki.NewDevSet("Gamma PEC S.p.A.", "pec.gamma.test", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	header, body := headerAndBody(t, busta.Message)
	content, rest := contentFields(header)
	_ = rest
	altered := bytes.Replace(busta.Message, []byte("Content-Type: text/plain"), []byte("Content-Type: text/plain "), 1)
	if bytes.Equal(altered, busta.Message) {
		t.Fatal("nothing to alter")
	}
	listed := rest + "Content-Type: multipart/mixed; boundary=\"list-footer\"\r\n\r\n" +
		"--list-footer\r\n" + content + "\r\n" + body + "\r\n--list-footer\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nLista pec-avvocati: per cancellarsi scrivere a ...\r\n--list-footer--\r\n"
	var b64 strings.Builder
	enc := base64.StdEncoding.EncodeToString(busta.Message)
	for len(enc) > 76 {
		b64.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b64.WriteString(enc + "\r\n")
	forwarded := "From: avvocato@example.com\r\nTo: collega@example.com\r\nSubject: Fwd: la busta\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"fwd\"\r\n\r\n--fwd\r\nContent-Type: text/plain\r\n\r\nTi inoltro la busta.\r\n--fwd\r\n" +
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=busta.eml\r\n\r\n" +
		b64.String() + "--fwd--\r\n"
	plain := "From: a@example.com\r\nTo: b@example.com\r\nSubject: ciao\r\n\r\nnessuna firma\r\n"

	for _, tc := range []struct {
		name     string
		msg      string
		roots    func() []*x509.Certificate
		verdict  string
		exit     int
		location string
	}{
		{name: "valid", msg: string(busta.Message), verdict: VerdictValid, exit: 0},
		{name: "other roots", msg: string(busta.Message), roots: func() []*x509.Certificate { return []*x509.Certificate{other.CA.Certificate} }, verdict: VerdictUntrusted, exit: 3},
		{name: "altered", msg: string(altered), verdict: VerdictInvalid, exit: 1},
		{name: "unsigned", msg: plain, verdict: VerdictUnsigned, exit: 4},
		{name: "mailing list", msg: listed, verdict: VerdictValid, exit: 0, location: "part 1 of multipart/mixed"},
		{name: "forwarded base64", msg: forwarded, verdict: VerdictValid, exit: 0, location: "part 2 of multipart/mixed (attached message)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots := devRoots(t)
			if tc.roots != nil {
				roots = tc.roots()
			}
			r, err := Inspect([]byte(tc.msg), InspectOptions{Roots: roots, At: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if r.Signature.Verdict != tc.verdict || r.ExitCode() != tc.exit || r.Signature.Location != tc.location {
				t.Errorf("verdict %q, exit %d, location %q; want %q, %d, %q\n%s", r.Signature.Verdict, r.ExitCode(), r.Signature.Location,
					tc.verdict, tc.exit, tc.location, r)
			}
			if tc.name != "unsigned" && r.Kind != KindBustaTrasporto {
				t.Errorf("kind %s", r.Kind)
			}
			if tc.verdict == VerdictUntrusted && !strings.Contains(r.String(), "Signature: untrusted (the signature is intact") {
				t.Errorf("text report:\n%s", r)
			}
		})
	}
}
