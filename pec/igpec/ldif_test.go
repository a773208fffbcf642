package igpec

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// minimalEntry returns a valid provider entry using the alfa certificate,
// one attribute a line, for the malformed-input cases to break.
func minimalEntry(t testing.TB) string {
	var buf bytes.Buffer
	p := &Provider{Name: "Alfa PEC S.p.A.", MailReceipt: "ricevute@pec.alfa.example", ManagedDomains: []string{"pec.alfa.example"}}
	p.AddCertificate(loadCert(t, "alfa").Raw)
	if err := WriteLDIF(&buf, p); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestParseLDIFErrors(t *testing.T) {
	entry := minimalEntry(t)
	// entry lines: 1 dn, 2-3 objectclass, 4 providerName, 5 hash,
	// 6-13 certificate (folded), 14 mailReceipt, 15 managedDomains.
	other := strings.NewReplacer("Alfa PEC S.p.A.", "Beta PEC S.p.A.").Replace(entry)
	tests := []struct {
		name string
		ldif string
		line int    // 0: no SyntaxError expected
		msg  string // substring of the message
		err  error  // errors.Is target, if any
	}{
		{"continuation first", " dn: o=postacert\n", 1, "continuation line", nil},
		{"continuation after blank line", entry + "\n continued\n", 17, "continuation line", nil},
		{"no colon", strings.Replace(entry, "mailReceipt: ", "mailReceipt ", 1), 14, "no colon", nil},
		{"bad attribute name", strings.Replace(entry, "mailReceipt:", "mail Receipt:", 1), 14, "invalid attribute description", nil},
		{"empty option", strings.Replace(entry, "providerCertificate;binary", "providerCertificate;", 1), 6, "invalid attribute description", nil},
		{"bad base64", strings.Replace(entry, "providerCertificate;binary:: MII", "providerCertificate;binary:: M!I", 1), 6, "bad base64", nil},
		{"URL value", strings.Replace(entry, "mailReceipt: ", "mailReceipt:< file:///etc/", 1), 14, "URL values", nil},
		{"no dn", strings.Replace(entry, "dn: ", "cn: ", 1), 1, "want dn:", nil},
		{"empty dn", strings.Replace(entry, "dn: providerName=Alfa PEC S.p.A.,o=postacert", "dn:", 1), 1, "empty dn", nil},
		{"two dn in one entry", entry + "dn: o=postacert\n", 16, "second dn", nil},
		{"change record", strings.Replace(entry, "objectclass: top", "changetype: add", 1), 2, "change records", nil},
		{"repeated dn", entry + "\n" + strings.Replace(other, "dn: providerName=Beta", "dn: providername=alfa", 1), 17, "repeats the entry of line 1", nil},
		{"version 2", "version: 2\n\n" + entry, 1, "version", nil},
		{"bad hash", strings.Replace(entry, "providerCertificateHash: 8A84", "providerCertificateHash: ZZ84", 1), 5, "SHA-1", nil},
		{"short hash", strings.Replace(entry, "providerCertificateHash: 8A84", "providerCertificateHash: 84", 1), 5, "SHA-1", nil},
		{"no mailReceipt", strings.Replace(entry, "mailReceipt: ricevute@pec.alfa.example\n", "", 1), 1, "mailReceipt: missing", nil},
		{"no managedDomains", strings.Replace(entry, "managedDomains: pec.alfa.example\n", "", 1), 1, "managedDomains: missing", nil},
		{"no certificate", entry[:strings.Index(entry, "providerCertificate;")] + entry[strings.Index(entry, "mailReceipt"):], 1, "providerCertificate: missing", nil},
		{"no hash", strings.Replace(entry, "providerCertificateHash: 8A84003C0A303E8F342DF3845FA33147EEE0A3A9\n", "", 1), 1, "providerCertificateHash: missing", nil},
		{"no providerName", strings.Replace(entry, "providerName: Alfa PEC S.p.A.\n", "", 1), 1, "providerName: missing", nil},
		{"two providerName", strings.Replace(entry, "providerName: Alfa PEC S.p.A.\n", "providerName: A\nproviderName: B\n", 1), 5, "providerName given twice", nil},
		{"two mailReceipt", entry + "mailReceipt: altro@pec.alfa.example\n", 16, "mailReceipt given twice", nil},
		{"empty certificate", strings.Replace(entry, "mailReceipt:", "providerCertificate:: \nmailReceipt:", 1), 14, "providerCertificate: empty", nil},
		{"domain of two gestori", entry + "\n" + other, 17, "already managed by", nil},
		{"invalid UTF-8 value", strings.Replace(entry, "pec.alfa.example\n", "pec.\xffalfa.example\n", 1), 14, "UTF-8", nil},
		{"NUL in value", strings.Replace(entry, "managedDomains: pec.alfa.example", "managedDomains: pec\x00.alfa.example", 1), 15, "NUL", nil},
		{"invalid UTF-8 in base64 name", strings.Replace(entry, "providerName: Alfa PEC S.p.A.", "providerName:: /w==", 1), 1, "providerName: not valid UTF-8", nil},
		{"logical line too long", "dn: o=postacert\ndescription: x\n" + strings.Repeat(" "+strings.Repeat("y", 1023)+"\n", MaxLineLength/1023+1), 2, "longer than", nil},
		{"physical line too long", "dn: o=postacert\ndescription: " + strings.Repeat("y", MaxLineLength) + "\n", 2, "longer than", nil},
		{"too large", strings.Repeat("#\n", MaxLDIFSize/2+1), 0, "too large", ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.ldif) < 64<<10 {
				writeSeed(t, "error-"+tt.name, []byte(tt.ldif))
			}
			ix, err := ParseLDIF(strings.NewReader(tt.ldif))
			if err == nil {
				t.Fatalf("ParseLDIF succeeded with %d providers", len(ix.Providers()))
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "igpec: parse LDIF: ") {
				t.Errorf("error %q lacks the package context", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("error %v is not %v", err, tt.err)
			}
			var se *SyntaxError
			switch {
			case tt.line == 0:
			case !errors.As(err, &se):
				t.Errorf("error %v is not a *SyntaxError", err)
			case se.Line != tt.line:
				t.Errorf("error at line %d, want line %d: %v", se.Line, tt.line, err)
			case !strings.Contains(err.Error(), "line "+strconv.Itoa(tt.line)+":"):
				t.Errorf("error %q does not name line %d", err, tt.line)
			}
		})
	}
}

// TestParseLDIFLayout checks the layouts RFC 2849 allows: CRLF line ends,
// folding anywhere, several blank lines, no final newline, an empty input.
func TestParseLDIFLayout(t *testing.T) {
	entry := minimalEntry(t)
	want, err := ParseLDIF(strings.NewReader(entry))
	if err != nil {
		t.Fatal(err)
	}
	refold := func(s string) string { // unfold, then fold every 7 bytes
		var out []string
		for _, l := range strings.Split(strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n ", ""), "\n") {
			out = append(out, l[:min(7, len(l))])
			for l = l[min(7, len(l)):]; len(l) > 0; l = l[min(7, len(l)):] {
				out = append(out, " "+l[:min(7, len(l))])
			}
		}
		return strings.Join(out, "\n") + "\n"
	}
	tests := []struct{ name, ldif string }{
		{"as written", entry},
		{"CRLF", strings.ReplaceAll(entry, "\n", "\r\n")},
		{"no final newline", strings.TrimSuffix(entry, "\n")},
		{"blank lines around", "\n\n\n" + entry + "\n\n\n"},
		{"version line", "version: 1\n" + entry},
		{"comments between attributes", strings.Replace(entry, "mailReceipt:", "# commento\n#  piegato\n  ancora\nmailReceipt:", 1)},
		{"folded every 7 bytes", refold(entry)},
		{"attribute names in other case", strings.NewReplacer("providerName:", "PROVIDERNAME:", "mailReceipt:", "mailreceipt:").Replace(entry)},
		{"spaces after the colon", strings.Replace(entry, "mailReceipt: ", "mailReceipt:      ", 1)},
		{"no space after the colon", strings.Replace(entry, "mailReceipt: ", "mailReceipt:", 1)},
		{"base64 plain values", strings.Replace(entry, "mailReceipt: ricevute@pec.alfa.example", "mailReceipt:: cmljZXZ1dGVAcGVjLmFsZmEuZXhhbXBsZQ==", 1)},
		{"certificate without ;binary", strings.Replace(entry, "providerCertificate;binary::", "providerCertificate::", 1)},
		{"hash in lower case with colons", strings.Replace(entry, "8A84003C0A303E8F342DF3845FA33147EEE0A3A9", "8a:84:00:3c:0a:30:3e:8f:34:2d:f3:84:5f:a3:31:47:ee:e0:a3:a9", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeSeed(t, "layout-"+tt.name, []byte(tt.ldif))
			ix, err := ParseLDIF(strings.NewReader(tt.ldif))
			if err != nil {
				t.Fatalf("ParseLDIF: %v\n%s", err, tt.ldif)
			}
			if !reflect.DeepEqual(ix.Providers(), want.Providers()) {
				t.Fatalf("got %+v\nwant %+v", ix.Providers(), want.Providers())
			}
		})
	}
	ix, err := ParseLDIF(strings.NewReader(""))
	if err != nil || len(ix.Providers()) != 0 {
		t.Fatalf("empty LDIF: %v, %v", ix, err)
	}
}

// writeSeed writes b to the fuzz seed corpus of FuzzParseLDIF under -update.
func writeSeed(t *testing.T, name string, b []byte) {
	t.Helper()
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseLDIF")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
	body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseLDIF checks that ParseLDIF never panics, and that the records it
// accepts write out and read back unchanged.
func FuzzParseLDIF(f *testing.F) {
	for _, name := range []string{"igpec.ldif", "mismatch.ldif", "custode.ldif"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParseLDIF(bytes.NewReader(b))
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without line number: %v", err)
			}
			if se != nil && se.Line < 1 {
				t.Fatalf("line number %d: %v", se.Line, err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteLDIF(&buf, ix.Providers()...); err != nil {
			t.Fatalf("WriteLDIF of parsed records: %v", err)
		}
		back, err := ParseLDIF(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("ParseLDIF(WriteLDIF(records)): %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(ix.Providers(), back.Providers()) {
			t.Fatalf("round trip changed the records\nfirst:  %+v\nsecond: %+v", ix.Providers(), back.Providers())
		}
	})
}
