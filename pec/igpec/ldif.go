package igpec

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxLDIFSize is the largest LDIF ParseLDIF reads, in bytes. The whole
// national directory (some tens of gestori, a few certificates and up to
// thousands of domains each) is far smaller.
const MaxLDIFSize = 32 << 20

// MaxLineLength is the longest logical line (after unfolding) ParseLDIF
// accepts, in bytes. A base64 certificate takes a few kilobytes.
const MaxLineLength = 256 << 10

// ErrTooLarge is wrapped by ParseLDIF's error for input over MaxLDIFSize.
var ErrTooLarge = errors.New("LDIF too large")

// A SyntaxError reports malformed LDIF, or an entry the index cannot use,
// at a line of the input (1-based; for an entry, the line of its dn).
type SyntaxError struct {
	Line int
	Err  error
}

// Error returns the line number and what is wrong there.
func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns e.Err.
func (e *SyntaxError) Unwrap() error { return e.Err }

func syntaxErrorf(line int, format string, args ...any) *SyntaxError {
	return &SyntaxError{Line: line, Err: fmt.Errorf(format, args...)}
}

// ParseLDIF reads an LDIF directory (RFC 2849 content records) into an
// Index. It accepts an optional "version: 1" line, LF or CRLF line ends,
// folded lines, comments (folded or not), base64 values ("attr:: ..."),
// attribute names in any case with options (providerCertificate;binary),
// and any number of entries separated by blank lines. It keeps the entries
// whose objectClass includes provider, and the LDIFLocationURL of the root
// entry o=postacert; it ignores other entries and unknown attributes.
//
// It refuses, with a [*SyntaxError] giving the line: change records,
// URL values ("attr:< url", never fetched), malformed lines or base64,
// repeated dn, a provider record that lacks a mandatory attribute or repeats
// providerName, mailReceipt or LDIFLocationURL, and a domain claimed by two
// gestori. Input over [MaxLDIFSize] is refused with [ErrTooLarge], logical
// lines over [MaxLineLength] with a SyntaxError.
func ParseLDIF(r io.Reader) (*Index, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxLDIFSize+1))
	if err != nil {
		return nil, fmt.Errorf("igpec: parse LDIF: %w", err)
	}
	if len(b) > MaxLDIFSize {
		return nil, fmt.Errorf("igpec: parse LDIF: %w: over %d bytes", ErrTooLarge, MaxLDIFSize)
	}
	records, err := readRecords(b)
	if err != nil {
		return nil, fmt.Errorf("igpec: parse LDIF: %w", err)
	}
	ix, err := NewIndex()
	if err != nil {
		return nil, err
	}
	seen := make(map[string]int) // lower-case dn → line
	for _, rec := range records {
		key := strings.ToLower(strings.TrimSpace(rec.dn))
		if first, dup := seen[key]; dup {
			return nil, fmt.Errorf("igpec: parse LDIF: %w", syntaxErrorf(rec.line, "dn %q repeats the entry of line %d", rec.dn, first))
		}
		seen[key] = rec.line
		p, root, err := rec.provider()
		if err != nil {
			return nil, fmt.Errorf("igpec: parse LDIF: %w", err)
		}
		switch {
		case p != nil:
			if err := ix.add(p); err != nil {
				return nil, fmt.Errorf("igpec: parse LDIF: %w", &SyntaxError{Line: rec.line, Err: err})
			}
		case root != "":
			ix.ldifLocationURL = root
		}
	}
	return ix, nil
}

// line is a logical line: folded lines joined, with the number of its
// first physical line.
type line struct {
	text string
	num  int
}

// record is one LDIF entry: its dn and attribute values in order.
type record struct {
	dn    string
	line  int
	attrs []attrValue
}

type attrValue struct {
	name    string // lower case, options removed
	options string // lower case, ";"-separated, "" if none
	value   []byte
	line    int
}

// readRecords splits the input into records of logical lines and parses
// each line.
func readRecords(b []byte) ([]record, error) {
	var (
		records []record
		group   []line // non-comment logical lines of the current record
		buf     []byte // logical line being assembled
		bufNum  int    // its first physical line; 0 when there is none
		comment bool   // the logical line being assembled is a comment
		first   = true // before the first record: version: may appear
	)
	flushLine := func() {
		if bufNum != 0 && !comment {
			group = append(group, line{text: string(buf), num: bufNum})
		}
		buf, bufNum, comment = buf[:0], 0, false
	}
	flushRecord := func() error {
		flushLine()
		if len(group) == 0 {
			return nil
		}
		if first {
			first = false
			if name, v, ok := strings.Cut(group[0].text, ":"); ok && strings.EqualFold(name, "version") {
				if v = strings.TrimSpace(v); v != "1" {
					return syntaxErrorf(group[0].num, "LDIF version %q, want 1", v)
				}
				group = group[1:]
				if len(group) == 0 {
					return nil
				}
			}
		}
		rec, err := parseRecord(group)
		if err != nil {
			return err
		}
		records = append(records, rec)
		group = nil
		return nil
	}

	num := 0
	for len(b) > 0 {
		num++
		var raw []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			raw, b = b[:i], b[i+1:]
		} else {
			raw, b = b, nil
		}
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		switch {
		case len(raw) == 0:
			if err := flushRecord(); err != nil {
				return nil, err
			}
		case raw[0] == ' ':
			if bufNum == 0 {
				return nil, syntaxErrorf(num, "continuation line with no line to continue")
			}
			if !comment {
				if len(buf)+len(raw)-1 > MaxLineLength {
					return nil, syntaxErrorf(bufNum, "logical line longer than %d bytes", MaxLineLength)
				}
				buf = append(buf, raw[1:]...)
			}
		default:
			flushLine()
			if len(raw) > MaxLineLength {
				return nil, syntaxErrorf(num, "logical line longer than %d bytes", MaxLineLength)
			}
			buf, bufNum, comment = append(buf, raw...), num, raw[0] == '#'
		}
	}
	if err := flushRecord(); err != nil {
		return nil, err
	}
	return records, nil
}

// parseRecord parses the logical lines of one entry.
func parseRecord(lines []line) (record, error) {
	var rec record
	for i, l := range lines {
		name, value, err := parseLine(l)
		if err != nil {
			return record{}, err
		}
		base, options, _ := strings.Cut(strings.ToLower(name), ";")
		if i == 0 {
			if base != "dn" || options != "" {
				return record{}, syntaxErrorf(l.num, "entry starts with %q, want dn:", name)
			}
			if !utf8.Valid(value) || bytes.IndexByte(value, 0) >= 0 {
				return record{}, syntaxErrorf(l.num, "dn is not valid UTF-8 text")
			}
			if len(bytes.TrimSpace(value)) == 0 {
				return record{}, syntaxErrorf(l.num, "empty dn")
			}
			rec.dn, rec.line = string(value), l.num
			continue
		}
		switch base {
		case "dn":
			return record{}, syntaxErrorf(l.num, "second dn in one entry (missing blank line?)")
		case "changetype", "control":
			return record{}, syntaxErrorf(l.num, "LDIF change records are not supported")
		}
		rec.attrs = append(rec.attrs, attrValue{name: base, options: options, value: value, line: l.num})
	}
	return rec, nil
}

// parseLine splits a logical line "name: value", "name:: base64" into the
// attribute description and the value.
func parseLine(l line) (string, []byte, error) {
	name, rest, ok := strings.Cut(l.text, ":")
	if !ok {
		return "", nil, syntaxErrorf(l.num, "no colon after the attribute name")
	}
	if !validDescription(name) {
		return "", nil, syntaxErrorf(l.num, "invalid attribute description %q", name)
	}
	switch {
	case strings.HasPrefix(rest, ":"):
		enc := strings.TrimRight(strings.TrimLeft(rest[1:], " "), " ")
		v, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return "", nil, syntaxErrorf(l.num, "%s: bad base64 value: %v", name, err)
		}
		return name, v, nil
	case strings.HasPrefix(rest, "<"):
		return "", nil, syntaxErrorf(l.num, "%s: URL values are not supported", name)
	}
	v := strings.TrimLeft(rest, " ")
	if !utf8.ValidString(v) {
		return "", nil, syntaxErrorf(l.num, "%s: value is not valid UTF-8 (use base64)", name)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return "", nil, syntaxErrorf(l.num, "%s: NUL in value (use base64)", name)
	}
	return name, []byte(v), nil
}

// validDescription reports whether s is an AttributeDescription of RFC 2849:
// a name or OID followed by ";option"s.
func validDescription(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ";") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				return false
			}
		}
	}
	return true
}

// provider interprets rec: a Provider if its objectClass includes provider,
// the LDIFLocationURL if it is the root entry o=postacert, neither otherwise.
func (rec *record) provider() (*Provider, string, error) {
	isProvider := false
	for _, a := range rec.attrs {
		if a.name == "objectclass" && strings.EqualFold(strings.TrimSpace(string(a.value)), "provider") {
			isProvider = true
		}
	}
	if !isProvider {
		if strings.EqualFold(strings.ReplaceAll(rec.dn, " ", ""), "o=postacert") {
			for _, a := range rec.attrs {
				if a.name == "ldiflocationurl" {
					return nil, strings.TrimSpace(string(a.value)), nil
				}
			}
		}
		return nil, "", nil
	}
	p := &Provider{DN: rec.dn}
	single := func(dst *string, a attrValue, attr string) error {
		if *dst != "" {
			return syntaxErrorf(a.line, "%s given twice in one entry", attr)
		}
		*dst = string(a.value)
		return nil
	}
	for _, a := range rec.attrs {
		var err error
		switch a.name {
		case "providername":
			err = single(&p.Name, a, "providerName")
		case "providerunit", "providerunits":
			p.Units = append(p.Units, string(a.value))
		case "providercertificatehash":
			var h string
			if h, err = normalizeHash(string(a.value)); err == nil {
				p.CertificateHashes = append(p.CertificateHashes, h)
			} else {
				err = &SyntaxError{Line: a.line, Err: fmt.Errorf("providerCertificateHash: %w", err)}
			}
		case "providercertificate":
			if len(a.value) == 0 {
				err = syntaxErrorf(a.line, "providerCertificate: empty value")
			}
			p.Certificates = append(p.Certificates, a.value)
		case "mailreceipt":
			err = single(&p.MailReceipt, a, "mailReceipt")
		case "manageddomains":
			p.ManagedDomains = append(p.ManagedDomains, string(a.value))
		case "ldiflocationurl":
			err = single(&p.LDIFLocationURL, a, "LDIFLocationURL")
		case "description":
			p.Description = append(p.Description, string(a.value))
		}
		if err != nil {
			return nil, "", err
		}
	}
	if err := p.validate(); err != nil {
		return nil, "", &SyntaxError{Line: rec.line, Err: fmt.Errorf("entry %q: %w", rec.dn, err)}
	}
	return p, "", nil
}

// WriteLDIF writes provider records as LDIF content records, separated by
// blank lines, in the layout of RFC 6109's example: dn, objectclass top and
// provider, providerName, providerUnit, providerCertificateHash,
// providerCertificate;binary, mailReceipt, LDIFLocationURL, managedDomains,
// description. Values that are not plain ASCII, or that begin with a space,
// colon or less-than sign or end with a space, are written in base64, and
// lines are folded at 76 bytes, as RFC 2849 prescribes; ParseLDIF reads the
// output back to the same records. A record with an empty DN gets
// "providerName=<Name>,o=postacert". Every record must pass
// [Provider.Validate]; nothing is written otherwise.
func WriteLDIF(w io.Writer, providers ...*Provider) error {
	for _, p := range providers {
		if p == nil {
			return errors.New("igpec: write LDIF: nil provider")
		}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("igpec: write LDIF: %w", err)
		}
	}
	bw := bufio.NewWriter(w)
	for i, p := range providers {
		if i > 0 {
			bw.WriteString("\n")
		}
		dn := p.DN
		if dn == "" {
			dn = "providerName=" + escapeDNValue(p.Name) + ",o=postacert"
		}
		writeAttr(bw, "dn", []byte(dn))
		writeAttr(bw, "objectclass", []byte("top"))
		writeAttr(bw, "objectclass", []byte("provider"))
		writeAttr(bw, "providerName", []byte(p.Name))
		for _, u := range p.Units {
			writeAttr(bw, "providerUnit", []byte(u))
		}
		for _, h := range p.CertificateHashes {
			writeAttr(bw, "providerCertificateHash", []byte(h))
		}
		for _, c := range p.Certificates {
			writeBase64(bw, "providerCertificate;binary", c)
		}
		writeAttr(bw, "mailReceipt", []byte(p.MailReceipt))
		if p.LDIFLocationURL != "" {
			writeAttr(bw, "LDIFLocationURL", []byte(p.LDIFLocationURL))
		}
		for _, d := range p.ManagedDomains {
			writeAttr(bw, "managedDomains", []byte(d))
		}
		for _, d := range p.Description {
			writeAttr(bw, "description", []byte(d))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("igpec: write LDIF: %w", err)
	}
	return nil
}

// foldWidth is the longest physical line WriteLDIF writes, as RFC 2849
// recommends for mail-safe LDIF.
const foldWidth = 76

// writeAttr writes "name: value", or "name:: base64" when value is not a
// SAFE-STRING of RFC 2849 (or ends with a space, which the RFC advises to
// encode).
func writeAttr(w *bufio.Writer, name string, value []byte) {
	if len(value) == 0 {
		writeFolded(w, name+":")
		return
	}
	if !safeString(value) {
		writeBase64(w, name, value)
		return
	}
	writeFolded(w, name+": "+string(value))
}

func writeBase64(w *bufio.Writer, name string, value []byte) {
	writeFolded(w, name+":: "+base64.StdEncoding.EncodeToString(value))
}

// writeFolded writes a logical line folded at foldWidth bytes. Callers pass
// ASCII only, so folding never splits a character.
func writeFolded(w *bufio.Writer, s string) {
	width := foldWidth
	for len(s) > width {
		w.WriteString(s[:width])
		w.WriteString("\n ")
		s = s[width:]
		width = foldWidth - 1
	}
	w.WriteString(s)
	w.WriteByte('\n')
}

// safeString reports whether v can be written as a plain LDIF value.
func safeString(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if v[0] == ' ' || v[0] == ':' || v[0] == '<' || v[len(v)-1] == ' ' {
		return false
	}
	for _, c := range v {
		if c == 0 || c == '\n' || c == '\r' || c > 0x7F {
			return false
		}
	}
	return true
}

// escapeDNValue escapes an attribute value for use in a DN (RFC 4514 §2.4).
func escapeDNValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == '=':
			b.WriteByte('\\')
			b.WriteByte(c)
		case (c == ' ' && (i == 0 || i == len(s)-1)) || (c == '#' && i == 0):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == 0:
			b.WriteString(`\00`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
