package pec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/smime"
)

// builtMessages builds the test transaction's busta di trasporto, ricevuta
// di accettazione and ricevuta di avvenuta consegna breve.
func builtMessages(t testing.TB) (busta, accettazione, breve *Built) {
	t.Helper()
	g := newGestore(t)
	tx := newTransaction(t, g)
	var err error
	if busta, err = g.BustaTrasporto(tx); err != nil {
		t.Fatal(err)
	}
	if accettazione, err = g.Accettazione(tx); err != nil {
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
	rx.Receipt = daticert.ReceiptBreve
	if breve, err = g.AvvenutaConsegna(rx, anna, daticert.ReceiptBreve); err != nil {
		t.Fatal(err)
	}
	return busta, accettazione, breve
}

// replaceField replaces the value of the outer header field name (matched
// case-insensitively) by "newName: value", or deletes it when newName is
// empty. The outer header is not signed: the signature still verifies.
func replaceField(t testing.TB, msg []byte, name, newName, value string) []byte {
	t.Helper()
	_, body, err := splitHeader(msg)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?mi)^` + regexp.QuoteMeta(name) + `:[^\r\n]*\r?\n([ \t][^\r\n]*\r?\n)*`)
	loc := re.FindIndex(msg[:body])
	if loc == nil {
		t.Fatalf("no field %s", name)
	}
	repl := ""
	if newName != "" {
		repl = newName + ": " + value + "\r\n"
	}
	return slices.Concat(msg[:loc[0]], []byte(repl), msg[loc[1]:])
}

// wrap returns msg forwarded as a message/rfc822 attachment of a mailing
// list message, in the given transfer encoding.
func wrap(msg []byte, cte string) []byte {
	var b bytes.Buffer
	b.WriteString("From: Lista Avvocati <lista@lists.example>\r\nTo: iscritti@lists.example\r\n" +
		"Subject: [avvocati] POSTA CERTIFICATA: inoltro\r\nList-Id: <avvocati.lists.example>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"list-boundary\"\r\n\r\n" +
		"--list-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nMessaggio inoltrato dalla lista.\r\n" +
		"--list-boundary\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n")
	if cte == "base64" {
		b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
		enc := base64.StdEncoding.EncodeToString(msg)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	} else {
		b.WriteString("\r\n")
		b.Write(msg)
		b.WriteString("\r\n")
	}
	b.WriteString("--list-boundary\r\nContent-Type: text/plain\r\n\r\n_______________\r\nLista avvocati\r\n--list-boundary--\r\n")
	return b.Bytes()
}

// tolerance returns the variants of our own messages that real gestori and
// mail systems produce, with the kind each must parse as.
func tolerance(t testing.TB) []struct {
	name      string
	msg       []byte
	kind      Kind
	forwarded bool
} {
	busta, acc, breve := builtMessages(t)
	latin1 := mime.BEncoding.Encode("iso-8859-1", "ACCETTAZIONE: Perch\xe9 no")
	return []struct {
		name      string
		msg       []byte
		kind      Kind
		forwarded bool
	}{
		{"busta", busta.Message, KindBustaTrasporto, false},
		{"accettazione", acc.Message, KindAccettazione, false},
		{"consegna-breve", breve.Message, KindConsegnaBreve, false},
		{"recased-headers", replaceField(t, replaceField(t, busta.Message, "X-Trasporto", "x-trasporto", "Posta-Certificata"),
			"X-TipoRicevuta", "X-Tiporicevuta", "completa"), KindBustaTrasporto, false},
		{"recased-x-ricevuta", replaceField(t, acc.Message, "X-Ricevuta", "X-RICEVUTA", "ACCETTAZIONE"), KindAccettazione, false},
		{"lf-line-endings", bytes.ReplaceAll(busta.Message, []byte("\r\n"), []byte("\n")), KindBustaTrasporto, false},
		{"missing-x-tiporicevuta", replaceField(t, busta.Message, "X-TipoRicevuta", "", ""), KindBustaTrasporto, false},
		{"rfc2047-iso-8859-1-subject", replaceField(t, acc.Message, "Subject", "Subject", latin1), KindAccettazione, false},
		{"mailing-list", wrap(busta.Message, "7bit"), KindBustaTrasporto, true},
		{"mailing-list-base64", wrap(busta.Message, "base64"), KindBustaTrasporto, true},
		{"mailing-list-lf", bytes.ReplaceAll(wrap(acc.Message, "7bit"), []byte("\r\n"), []byte("\n")), KindAccettazione, true},
	}
}

func TestParseTolerance(t *testing.T) {
	for _, c := range tolerance(t) {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(c.msg, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != c.kind || m.Forwarded != c.forwarded {
				t.Errorf("Kind %s forwarded %v, want %s %v", m.Kind, m.Forwarded, c.kind, c.forwarded)
			}
			if !m.Consistent() {
				t.Errorf("problems: %q", m.Problems)
			}
			if m.Daticert == nil || m.Daticert.Tipo != c.kind.Tipo() {
				t.Errorf("daticert %+v", m.Daticert)
			}
			// The outer header is not signed and LF endings are
			// canonicalised: every variant still verifies.
			r, err := Inspect(c.msg, InspectOptions{Roots: devRoots(t), At: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if r.Signature.Verdict != VerdictValid {
				t.Errorf("verdict %s: %q", r.Signature.Verdict, r.Signature.Reasons)
			}
			switch c.name {
			case "rfc2047-iso-8859-1-subject":
				if m.Header.Subject != "ACCETTAZIONE: Perché no" {
					t.Errorf("Subject %q", m.Header.Subject)
				}
			case "missing-x-tiporicevuta":
				if m.Header.TipoRicevuta != "" {
					t.Errorf("X-TipoRicevuta %q", m.Header.TipoRicevuta)
				}
				tx, err := TransactionFromBusta(m, deliveredAt)
				if err != nil || tx.Receipt != daticert.ReceiptCompleta {
					t.Errorf("TransactionFromBusta: %v, receipt %q", err, tx.Receipt)
				}
			case "recased-headers":
				if m.Header.TipoRicevuta != "completa" {
					t.Errorf("X-Tiporicevuta read as %q", m.Header.TipoRicevuta)
				}
			}
			if c.kind == KindBustaTrasporto && !bytes.Contains(m.Original, []byte("Perché no?")) {
				t.Error("postacert.eml lost its content")
			}
		})
	}
}

// TestParseEncodings reads daticert.xml and postacert.eml in each transfer
// encoding real gestori use, in an unsigned message (flagged as such).
func TestParseEncodings(t *testing.T) {
	_, acc, _ := builtMessages(t)
	xml, err := daticert.Marshal(acc.Daticert)
	if err != nil {
		t.Fatal(err)
	}
	original := "From: a@b.example\r\nSubject: prova\r\n\r\nTesto.\r\n"
	for _, cte := range []string{"base64", "quoted-printable", "7bit", "8bit"} {
		t.Run(cte, func(t *testing.T) {
			var body []byte
			switch cte {
			case "base64":
				body = []byte(base64.StdEncoding.EncodeToString(xml))
			case "quoted-printable":
				var b bytes.Buffer
				w := quotedprintable.NewWriter(&b)
				w.Write(xml)
				w.Close()
				body = b.Bytes()
			default:
				body = xml
			}
			origCTE, origBody := "7bit", original
			if cte == "base64" {
				origCTE, origBody = "base64", base64.StdEncoding.EncodeToString([]byte(original))
			}
			msg := "From: posta-certificata@pec.custode.test\r\nSubject: ACCETTAZIONE: prova\r\nX-Ricevuta: accettazione\r\n" +
				"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
				"--b\r\nContent-Type: text/plain\r\n\r\ntesto\r\n" +
				"--b\r\nContent-Type: application/xml; name=daticert.xml\r\nContent-Transfer-Encoding: " + cte + "\r\n\r\n" + string(body) + "\r\n" +
				"--b\r\nContent-Type: message/rfc822; name=postacert.eml\r\nContent-Transfer-Encoding: " + origCTE + "\r\n\r\n" + origBody + "\r\n--b--\r\n"
			m, err := Parse([]byte(msg), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != KindAccettazione || m.Daticert == nil || !sameDaticert(m.Daticert, acc.Daticert) {
				t.Errorf("Kind %s, daticert %+v, problems %q", m.Kind, m.Daticert, m.Problems)
			}
			if string(m.Original) != original {
				t.Errorf("Original %q", m.Original)
			}
			// Unsigned: flagged.
			if m.Signed || len(m.Problems) != 1 || !strings.Contains(m.Problems[0], "not signed") {
				t.Errorf("Signed %v, problems %q", m.Signed, m.Problems)
			}
		})
	}
}

// TestParseInconsistent checks that contradictions are flagged, not
// resolved silently.
func TestParseInconsistent(t *testing.T) {
	busta, acc, breve := builtMessages(t)
	for _, c := range []struct {
		name    string
		msg     []byte
		kind    Kind
		problem string
	}{
		{"header-vs-daticert", replaceField(t, breve.Message, "X-Ricevuta", "X-Ricevuta", "accettazione"), KindAccettazione, "daticert tipo is avvenuta-consegna"},
		{"both-fields", replaceField(t, busta.Message, "X-TipoRicevuta", "X-Ricevuta", "accettazione"), KindUnknown, "both X-Ricevuta"},
		{"unknown-ricevuta", replaceField(t, acc.Message, "X-Ricevuta", "X-Ricevuta", "ricevuta-inventata"), KindUnknown, "unknown X-Ricevuta"},
		{"no-pec-fields", replaceField(t, acc.Message, "X-Ricevuta", "", ""), KindAccettazione, "classified from daticert.xml"},
		{"riferimento", replaceField(t, acc.Message, "X-Riferimento-Message-ID", "X-Riferimento-Message-ID", "<altro@client.example>"), KindAccettazione, "differs from the daticert msgid"},
		{"tipo-ricevuta", replaceField(t, busta.Message, "X-TipoRicevuta", "X-TipoRicevuta", "sintetica"), KindBustaTrasporto, "differs from the daticert ricevuta"},
		{"virus-header", replaceField(t, acc.Message, "X-Ricevuta", "X-Ricevuta", "non-accettazione\r\nX-VerificaSicurezza: errore"), KindNonAccettazioneVirus, "not virus"},
		{"subject", replaceField(t, acc.Message, "Subject", "Subject", "Re: qualcosa"), KindAccettazione, "Subject does not start"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(c.msg, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != c.kind {
				t.Errorf("Kind %s, want %s", m.Kind, c.kind)
			}
			if m.Consistent() || !strings.Contains(strings.Join(m.Problems, "\n"), c.problem) {
				t.Errorf("problems %q, want one with %q", m.Problems, c.problem)
			}
		})
	}
}

// TestAlteredByte checks that a change of one byte of the signed part is
// detected, with a clear reason.
func TestAlteredByte(t *testing.T) {
	busta, _, _ := builtMessages(t)
	res, err := smime.Verify(busta.Message, smime.VerifyOptions{Roots: devRoots(t), CurrentTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(busta.Message, res.Signed[:200])
	for _, off := range []int{len(res.Signed) / 3, len(res.Signed) / 2, len(res.Signed) - 50} {
		msg := bytes.Clone(busta.Message)
		i := start + off
		if msg[i] == 'A' {
			msg[i] = 'B'
		} else {
			msg[i] = 'A'
		}
		r, err := Inspect(msg, InspectOptions{Roots: devRoots(t), At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if r.Signature.Verdict != VerdictInvalid || len(r.Signature.Reasons) != 1 ||
			!strings.Contains(r.Signature.Reasons[0], "does not match the signed content") {
			t.Errorf("byte %d altered: verdict %s, reasons %q", off, r.Signature.Verdict, r.Signature.Reasons)
		}
		m, _ := Parse(msg, ParseOptions{})
		if _, err := m.Verify(smime.VerifyOptions{Roots: devRoots(t), CurrentTime: time.Now()}); !errors.Is(err, smime.ErrContentMismatch) {
			t.Errorf("Verify: %v, want ErrContentMismatch", err)
		}
		if !strings.Contains(r.String(), "Signature: invalid") {
			t.Errorf("report text:\n%s", r)
		}
	}
}

// nested returns a message whose MIME structure is depth levels deep, by
// multipart or by attached messages.
func nested(depth int, byMessage bool) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@b.example\r\nX-Ricevuta: accettazione\r\n")
	for i := 0; i < depth; i++ {
		if byMessage {
			b.WriteString("Content-Type: message/rfc822\r\n\r\nFrom: a@b.example\r\n")
		} else {
			fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
		}
	}
	b.WriteString("\r\nfondo\r\n")
	if !byMessage {
		for i := depth - 1; i >= 0; i-- {
			fmt.Fprintf(&b, "--b%d--\r\n", i)
		}
	}
	return b.Bytes()
}

func TestParseHostile(t *testing.T) {
	busta, _, _ := builtMessages(t)
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	for _, c := range []struct {
		name string
		msg  []byte
		opts ParseOptions
		want error
	}{
		{"empty", nil, ParseOptions{}, ErrMalformed},
		{"blank", []byte("\r\n\r\n  \n"), ParseOptions{}, ErrMalformed},
		{"garbage", garbage, ParseOptions{}, ErrMalformed},
		{"no-header", []byte("questo non è un messaggio\r\n"), ParseOptions{}, ErrMalformed},
		{"1000-deep-multipart", nested(1000, false), ParseOptions{}, ErrTooDeep},
		{"1000-deep-messages", nested(1000, true), ParseOptions{}, ErrTooDeep},
		{"1000-deep-limit-2000", nested(1000, false), ParseOptions{MaxDepth: 2000}, nil},
		{"truncated", busta.Message[:len(busta.Message)*2/3], ParseOptions{}, ErrMalformed},
		{"truncated-before-signature", busta.Message[:bytes.Index(busta.Message, []byte("application/x-pkcs7-signature;"))], ParseOptions{}, ErrMalformed},
		{"too-large", busta.Message, ParseOptions{MaxMessageSize: 4096}, ErrTooLarge},
		{"many-parts", manyParts(20000), ParseOptions{}, ErrTooManyParts},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(c.msg, c.opts)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Parse: %v (message %v), want %v", err, m, c.want)
			}
			if !strings.HasPrefix(err.Error(), "pec: ") {
				t.Errorf("error %q lacks the pec: prefix", err)
			}
			t.Logf("%v", err)
		})
	}

	// Every truncation of a busta either parses or fails with a clear
	// error; none panics.
	for n := 0; n < len(busta.Message); n += 97 {
		if _, err := Parse(busta.Message[:n], ParseOptions{}); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated at %d: %v", n, err)
		}
	}

	// ParseReader stops at the limit.
	_, err := ParseReader(endless{}, ParseOptions{MaxMessageSize: 1 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("ParseReader of an endless stream: %v", err)
	}
}

// endless is a reader that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// manyParts returns a message of n empty parts.
func manyParts(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n; i++ {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	return b.Bytes()
}

// bigBusta returns a busta di trasporto of about size bytes whose original
// carries a large base64 attachment. It is assembled around the parts of a
// built busta without signing it again (Parse does not verify), which keeps
// the test fast under the race detector.
func bigBusta(t testing.TB, size int) []byte {
	busta, _, _ := builtMessages(t)
	m, err := Parse(busta.Message, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := smime.Verify(busta.Message, smime.VerifyOptions{Roots: devRoots(t), CurrentTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.StdEncoding.EncodeToString(res.Signature)
	var b bytes.Buffer
	b.Grow(size + 64<<10)
	b.WriteString("From: \"Per conto di: mario.rossi@pec.custode.test\" <posta-certificata@pec.custode.test>\r\n" +
		"Subject: POSTA CERTIFICATA: grande\r\nX-Trasporto: posta-certificata\r\nX-Riferimento-Message-ID: " + m.Daticert.MessageID + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"S\"\r\n\r\n" +
		"--S\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\nContent-Type: text/plain\r\n\r\nQuesto è un messaggio di posta certificata.\r\n" +
		"--M\r\nContent-Type: application/xml; name=\"daticert.xml\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(m.DaticertXML) + "\r\n" +
		"--M\r\nContent-Type: message/rfc822; name=\"postacert.eml\"\r\n\r\n" +
		"From: mario.rossi@pec.custode.test\r\nSubject: grande\r\nContent-Type: multipart/mixed; boundary=\"O\"\r\n\r\n" +
		"--O\r\nContent-Type: text/plain\r\n\r\nIn allegato.\r\n--O\r\nContent-Type: application/octet-stream; name=\"dati.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76] + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	b.WriteString("--O--\r\n\r\n--M--\r\n\r\n--S\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		sig + "\r\n--S--\r\n")
	return b.Bytes()
}

// Test60MB parses a 60 MB busta with the default limit (64 MiB) and checks
// that memory beyond the message itself stays small: Parse works in place.
// With a lower limit, it is refused with ErrTooLarge.
func Test60MB(t *testing.T) {
	msg := bigBusta(t, 60<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	m, err := Parse(msg, ParseOptions{})
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindBustaTrasporto || m.Daticert == nil || len(m.Original) < 59<<20 {
		t.Errorf("Kind %s, daticert %v, original %d bytes", m.Kind, m.Daticert != nil, len(m.Original))
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("60 MB busta: parsed in %v, %d KiB allocated", elapsed, alloc>>10)
	if alloc > 4<<20 {
		t.Errorf("Parse of a %d MB message allocated %d MiB, want less than 4", len(msg)>>20, alloc>>20)
	}
	if _, err := Parse(msg, ParseOptions{MaxMessageSize: 32 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("with a 32 MiB limit: %v, want ErrTooLarge", err)
	}
}
