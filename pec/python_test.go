package pec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/custode/custode/pec/daticert"
)

// pythonReport is what pythonCheck's script reports about one message.
type pythonReport struct {
	// Defects are the defects Python's email package records on the
	// message and every part in it, as "Class: text" strings.
	Defects []string `json:"defects"`
	// Subject is the Subject as the default policy decodes it.
	Subject string `json:"subject"`
	// From is email.utils.parseaddr of the raw From field (compat32 policy,
	// which returns it folded as it is on the wire).
	From [2]string `json:"from"`
	// FromDefault is the address of the From field by the default policy.
	FromDefault string `json:"from_default"`
}

// pythonScript reads the messages named in argv and prints a JSON list of
// pythonReport.
const pythonScript = `
import sys, json, email, email.policy, email.utils
out = []
for path in sys.argv[1:]:
    raw = open(path, 'rb').read()
    m = email.message_from_bytes(raw, policy=email.policy.default)
    defects = []
    for part in m.walk():
        for d in part.defects:
            defects.append(type(d).__name__ + ': ' + str(d))
        for k, v in part.items():
            for d in getattr(v, 'defects', ()):
                defects.append(k + ': ' + type(d).__name__ + ': ' + str(d))
    old = email.message_from_bytes(raw)
    addrs = m['From'].addresses if m['From'] is not None else ()
    out.append({
        'defects': defects,
        'subject': str(m['Subject']),
        'from': list(email.utils.parseaddr(old['From'] or '')),
        'from_default': addrs[0].addr_spec if len(addrs) == 1 else '',
    })
json.dump(out, sys.stdout)
`

// pythonCheck runs Python's email package over msgs and returns its report
// on each; it skips the test when python3 is not installed.
func pythonCheck(t *testing.T, msgs ...[]byte) []pythonReport {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	args := []string{"-c", pythonScript}
	for i, m := range msgs {
		p := filepath.Join(dir, strconv.Itoa(i)+".eml")
		if err := os.WriteFile(p, m, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(py, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, stderr.String())
	}
	var reps []pythonReport
	if err := json.Unmarshal(out, &reps); err != nil || len(reps) != len(msgs) {
		t.Fatalf("python3 output %q: %v", out, err)
	}
	return reps
}

// TestFoldingPython builds messages whose header fields must be folded,
// a long mittente in the quoted "Per conto di: …" display name and a long
// subject that is not ASCII, and checks that Python's email package reads
// them as meant: no defects, the subject decoded with the space after the
// prefix, even by a decoder that unfolds carelessly, and the address
// parseaddr finds in From the gestore's.
func TestFoldingPython(t *testing.T) {
	long := strings.Repeat("ufficio.protocollo.generale.", 2) + "direzione@pec.comune-di-esempio-molto-lungo.test"
	subjects := []string{
		"Risposta",
		"Risposta alla vostra richiesta — protocollo n. 42 del 14 novembre",
		strings.Repeat("è", 60),
		"Oggetto con una parola lunghissima: " + strings.Repeat("x", 70) + "é",
		"Averyveryverylongfirstwordthatdoesnotfitontheline" + strings.Repeat("z", 30) + " ò",
		"ASCII only but long:" + strings.Repeat(" parola", 20),
	}
	for i, subj := range subjects {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel() // each waits on its own python3
			g := newGestore(t)
			orig := strings.Replace(testOriginal, "=?utf-8?q?Contratto_di_fornitura_n=2E_42_=E2=80=94_firma?=", mimeQ(subj), 1)
			env := Envelope{Mittente: long, Destinatari: []daticert.Destinatario{{Address: anna, Tipo: daticert.DestinatarioCertificato}}}
			tx, err := g.NewTransaction([]byte(orig), env, acceptedAt)
			if err != nil {
				t.Fatal(err)
			}
			if tx.Subject != subj {
				t.Fatalf("transaction subject %q, want %q", tx.Subject, subj)
			}
			acc, err := g.Accettazione(tx)
			if err != nil {
				t.Fatal(err)
			}
			busta, err := g.BustaTrasporto(tx)
			if err != nil {
				t.Fatal(err)
			}
			reps := pythonCheck(t, acc.Message, busta.Message)
			for j, c := range []struct {
				kind Kind
				from string
			}{{KindAccettazione, g.Address()}, {KindBustaTrasporto, g.Address()}} {
				r := reps[j]
				if len(r.Defects) > 0 {
					t.Errorf("%s: defects %q", c.kind, r.Defects)
				}
				want := c.kind.SubjectPrefix() + subj
				if r.Subject != want {
					t.Errorf("%s: Subject %q, want %q", c.kind, r.Subject, want)
				}
				msg := []*Built{acc, busta}[j].Message
				if got := naiveSubject(t, msg); got != want {
					t.Errorf("%s: Subject unfolded carelessly %q, want %q", c.kind, got, want)
				}
				checkHeaderLines(t, msg)
				if r.From[1] != c.from || r.FromDefault != c.from {
					t.Errorf("%s: parseaddr(From) = %q, default policy %q, want %q", c.kind, r.From, r.FromDefault, c.from)
				}
				if c.kind == KindBustaTrasporto && r.From[0] != "Per conto di: "+long {
					t.Errorf("%s: From display name %q", c.kind, r.From[0])
				}
			}
		})
	}
}

// mimeQ returns s as the original's Subject value: itself when ASCII,
// otherwise one RFC 2047 encoded word (the line is long but legal).
func mimeQ(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	b.WriteString("=?utf-8?b?")
	b.WriteString(b64(s))
	b.WriteString("?=")
	return b.String()
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// naiveSubject returns the Subject of msg as a careless decoder reads it:
// a line break and the white space after it removed before an encoded
// word (as if it were the white space between two encoded words, which RFC
// 2047 §6.2 ignores), other line breaks removed, then the encoded words
// decoded wherever they are.
func naiveSubject(t *testing.T, msg []byte) string {
	t.Helper()
	hdr, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	_, v, ok := bytes.Cut(hdr, []byte("\r\nSubject: "))
	if !ok {
		t.Fatal("no Subject field")
	}
	raw := string(v)
	if i := regexp.MustCompile(`\r\n[^ \t]`).FindStringIndex(raw); i != nil {
		raw = raw[:i[0]]
	}
	raw = regexp.MustCompile(`\r\n[ \t]+(=\?)`).ReplaceAllString(raw, "$1")
	raw = strings.ReplaceAll(raw, "\r\n", "")
	dec, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil {
		t.Fatalf("decoding Subject %q: %v", raw, err)
	}
	return dec
}

// checkHeaderLines fails the test for a header line of msg over 78
// characters that holds encoded words, which can always be cut to fit.
func checkHeaderLines(t *testing.T, msg []byte) {
	t.Helper()
	hdr, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, l := range strings.Split(string(hdr), "\r\n") {
		if len(l) > 78 && strings.Contains(l, "=?utf-8?q?") {
			t.Errorf("header line of %d characters: %q", len(l), l)
		}
	}
}

func TestEncodeWords(t *testing.T) {
	tests := []struct {
		s     string
		first int
	}{
		{"è", 30},
		{"Risposta è pronta", 30},
		{strings.Repeat("è", 100), 24},
		{strings.Repeat("😀", 30), 24},
		{"a_b=c?d e\tf", 75},
		{strings.Repeat("abcdefghij", 30) + "é", 49},
	}
	for _, tt := range tests {
		got := encodeWords(tt.s, tt.first)
		words := strings.Split(got, " ")
		for i, w := range words {
			limit := maxEncodedWord
			if i == 0 {
				limit = tt.first
			}
			if len(w) > limit || !strings.HasPrefix(w, "=?utf-8?q?") || !strings.HasSuffix(w, "?=") {
				t.Errorf("encodeWords(%q, %d): word %d %q (limit %d)", tt.s, tt.first, i, w, limit)
			}
		}
		dec, err := new(mime.WordDecoder).DecodeHeader(got)
		if err != nil || dec != tt.s {
			t.Errorf("encodeWords(%q, %d) = %q, decodes to %q, %v", tt.s, tt.first, got, dec, err)
		}
	}
}
