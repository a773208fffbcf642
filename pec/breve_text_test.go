package pec

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

// TestBreveTextExplainsHash checks that the text of a ricevuta breve says
// what its .hash files hold, and that following the text literally on the
// original (the attachment's base64 text with CRLF line ends, without the
// line break before the next boundary) gives the value in the .hash file,
// while sha1sum of the decoded attachment does not.
func TestBreveTextExplainsHash(t *testing.T) {
	g := newGestore(t)
	tx := newTransaction(t, g)
	tx.Receipt = daticert.ReceiptBreve
	b, err := g.AvvenutaConsegna(tx, anna, daticert.ReceiptBreve)
	if err != nil {
		t.Fatal(err)
	}
	res, err := smime.Verify(b.Message, smime.VerifyOptions{Roots: devRoots(t), CurrentTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	plain := textPlain(t, res.Signed)
	for _, want := range []string{`".hash"`, "SHA-1", "così come è stato trasmesso", "base64", "CR LF", "boundary", "sha1sum"} {
		if !strings.Contains(plain, want) {
			t.Errorf("the text of the ricevuta breve does not say %q:\n%s", want, plain)
		}
	}

	// Follow the text on the original.
	const start = "Content-Transfer-Encoding: base64\r\n\r\n"
	orig := string(tx.Original)
	i := strings.Index(orig, "filename=\"contratto.pdf\"\r\n"+start)
	if i < 0 {
		t.Fatal("no PDF part in the original")
	}
	i += len("filename=\"contratto.pdf\"\r\n" + start)
	j := strings.Index(orig[i:], "\r\n--=_b1")
	transmitted := orig[i : i+j]
	asSent := sha1.Sum([]byte(transmitted))
	decoded, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(transmitted, "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	file := sha1.Sum(decoded)
	hashPart := "filename=contratto.pdf.hash\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + hex.EncodeToString(asSent[:])
	if !strings.Contains(string(res.Signed), hashPart) {
		t.Errorf("postacert.eml of the breve lacks %q", hashPart)
	}
	if asSent == file {
		t.Error("the SHA-1 of the decoded file equals the one of the text as transmitted: the test proves nothing")
	}
}

// textPlain returns the decoded text/plain part of a PEC message's signed
// entity (multipart/mixed, then multipart/alternative).
func textPlain(t *testing.T, entity []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(entity))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(ct string, r io.Reader) string
	walk = func(ct string, r io.Reader) string {
		typ, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatal(err)
		}
		if typ == "text/plain" {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		if !strings.HasPrefix(typ, "multipart/") {
			return ""
		}
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return ""
			}
			if s := walk(p.Header.Get("Content-Type"), p); s != "" {
				return s
			}
		}
	}
	return walk(m.Header.Get("Content-Type"), m.Body)
}
