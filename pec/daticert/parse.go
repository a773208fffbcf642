package daticert

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxSize is the largest document Parse accepts, in bytes. A real daticert
// is about one kilobyte; even one listing hundreds of recipients stays far
// below this bound, which keeps hostile input from costing memory or time.
const MaxSize = 1 << 20

// MaxDepth is the deepest element nesting Parse accepts. The DTD nests four
// levels (postacert, dati, data, giorno); the margin leaves room for unknown
// extension elements while refusing pathological nesting.
const MaxDepth = 16

// Errors Parse wraps when it refuses hostile input.
var (
	// ErrTooLarge: the document is larger than MaxSize.
	ErrTooLarge = errors.New("document too large")
	// ErrTooDeep: elements are nested deeper than MaxDepth.
	ErrTooDeep = errors.New("elements nested too deeply")
	// ErrDTDSubset: the document carries a DTD internal subset, which is
	// where entity declarations (and entity-expansion attacks) live. Real
	// daticert documents never have one.
	ErrDTDSubset = errors.New("DTD internal subset (entity declarations) refused")
)

const utf8BOM = "\uFEFF"

// Parse reads a daticert.xml document. It is tolerant of what real gestori
// send: white space around values and between elements, any attribute order,
// elements in another order than the DTD's, missing optional elements and a
// missing risposte, unknown elements and attributes (ignored), comments, a
// DOCTYPE without internal subset (never fetched), a UTF-8 byte order mark,
// an ISO-8859-1, windows-1252 or US-ASCII encoding declared in the prolog,
// zona written as +hhmm or +hh:mm, and tipo, errore and ricevuta values (and
// the names of those attributes) in any letter case with spaces or
// underscores for hyphens.
//
// Values that are addresses or identifiers are trimmed of surrounding white
// space; oggetto is kept verbatim. The msgid is returned unescaped, angle
// brackets included. A destinatari element without tipo is certificato, as
// the DTD's default says.
//
// Parse refuses, with an error wrapping [ErrTooLarge], [ErrTooDeep] or
// [ErrDTDSubset], documents larger than [MaxSize], nested deeper than
// [MaxDepth], or declaring a DTD internal subset. A document that lacks a
// mandatory element or attribute, repeats a single-valued one, or holds an
// unknown enumerated value is an error too. Every model Parse returns
// passes [Daticert.Validate], so it can be marshalled again.
func Parse(b []byte) (*Daticert, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("daticert: parse: %w: %d bytes, limit %d", ErrTooLarge, len(b), MaxSize)
	}
	root, err := readTree(bytes.TrimPrefix(b, []byte(utf8BOM)))
	if err != nil {
		return nil, fmt.Errorf("daticert: parse: %w", err)
	}
	d, err := fromTree(root)
	if err != nil {
		return nil, fmt.Errorf("daticert: parse: %w", err)
	}
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("daticert: parse: %w", err)
	}
	return d, nil
}

// node is an element of the document: its local name, attributes, the
// character data directly inside it, and its child elements.
type node struct {
	name     string
	attrs    []xml.Attr
	text     strings.Builder
	children []*node
	line     int
}

// readTree reads the whole document into a tree of nodes, enforcing the
// depth bound and refusing DTD internal subsets and trailing elements.
func readTree(b []byte) (*node, error) {
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	dec.CharsetReader = charsetReader
	var (
		root  *node
		stack []*node
	)
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, fmt.Errorf("element <%s> after the root element", t.Name.Local)
			}
			if len(stack) >= MaxDepth {
				return nil, fmt.Errorf("%w: more than %d levels", ErrTooDeep, MaxDepth)
			}
			line, _ := dec.InputPos()
			n := &node{name: t.Name.Local, attrs: t.Attr, line: line}
			if root == nil {
				root = n
			} else {
				parent := stack[len(stack)-1]
				parent.children = append(parent.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1] // the decoder has matched the tags
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("character data outside the root element")
			}
		case xml.Directive:
			if err := checkDirective(t, root != nil); err != nil {
				return nil, err
			}
		case xml.Comment, xml.ProcInst:
			// Comments and processing instructions carry nothing of ours.
		}
	}
	if root == nil {
		return nil, errors.New("no root element")
	}
	if len(stack) != 0 {
		return nil, errors.New("unexpected end of document")
	}
	return root, nil
}

// checkDirective accepts a DOCTYPE declaration without internal subset
// before the root element, and nothing else.
func checkDirective(dir xml.Directive, afterRoot bool) error {
	s := string(dir)
	if !strings.HasPrefix(s, "DOCTYPE") {
		return fmt.Errorf("markup declaration <!%.20s…> refused", s)
	}
	if strings.ContainsRune(s, '[') {
		return ErrDTDSubset
	}
	if afterRoot {
		return errors.New("DOCTYPE after the root element")
	}
	return nil
}

// fromTree interprets the tree as a postacert document.
func fromTree(root *node) (*Daticert, error) {
	if !nameIs(root.name, "postacert") {
		return nil, fmt.Errorf("root element is <%s>, want <postacert>", root.name)
	}
	attrs, err := attributes(root, "postacert")
	if err != nil {
		return nil, err
	}
	d := new(Daticert)
	tipo, ok := attrs["tipo"]
	if !ok {
		return nil, missing("postacert/@tipo")
	}
	d.Tipo = Tipo(normalizeEnum(tipo))
	if !d.Tipo.Valid() {
		return nil, fieldErrorf("postacert/@tipo", "unknown value %q", tipo)
	}
	d.Errore = ErroreNessuno
	if e, ok := attrs["errore"]; ok && strings.TrimSpace(e) != "" {
		d.Errore = Errore(normalizeEnum(e))
		if !d.Errore.Valid() {
			return nil, fieldErrorf("postacert/@errore", "unknown value %q", e)
		}
	}

	kids := children(root, "intestazione", "dati")
	if err != nil {
		return nil, err
	}
	if err := d.readIntestazione(kids["intestazione"]); err != nil {
		return nil, err
	}
	if err := d.readDati(kids["dati"]); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Daticert) readIntestazione(nodes []*node) error {
	in, err := single(nodes, "intestazione", true)
	if err != nil {
		return err
	}
	kids := children(in, "mittente", "destinatari", "risposte", "oggetto")
	if d.Mittente, err = leafText(kids["mittente"], "intestazione/mittente", true); err != nil {
		return err
	}
	if len(kids["destinatari"]) == 0 {
		return missing("intestazione/destinatari")
	}
	for i, n := range kids["destinatari"] {
		field := fmt.Sprintf("intestazione/destinatari[%d]", i+1)
		addr, err := text(n, field)
		if err != nil {
			return err
		}
		attrs, err := attributes(n, field)
		if err != nil {
			return err
		}
		r := Destinatario{Address: strings.TrimSpace(addr), Tipo: DestinatarioCertificato}
		if t, ok := attrs["tipo"]; ok && strings.TrimSpace(t) != "" {
			r.Tipo = TipoDestinatario(normalizeEnum(t))
			if !r.Tipo.Valid() {
				return fieldErrorf(field+"/@tipo", "unknown value %q", t)
			}
		}
		d.Destinatari = append(d.Destinatari, r)
	}
	if d.ReplyTo, err = leafText(kids["risposte"], "intestazione/risposte", false); err != nil {
		return err
	}
	oggetto, err := single(kids["oggetto"], "intestazione/oggetto", false)
	if err != nil || oggetto == nil {
		return err
	}
	d.Oggetto, err = text(oggetto, "intestazione/oggetto")
	return err
}

func (d *Daticert) readDati(nodes []*node) error {
	dati, err := single(nodes, "dati", true)
	if err != nil {
		return err
	}
	kids := children(dati, "gestore-emittente", "data", "identificativo",
		"msgid", "ricevuta", "consegna", "ricezione", "errore-esteso")
	if d.GestoreEmittente, err = leafText(kids["gestore-emittente"], "dati/gestore-emittente", true); err != nil {
		return err
	}
	data, err := single(kids["data"], "dati/data", true)
	if err != nil {
		return err
	}
	if d.Time, err = readData(data); err != nil {
		return err
	}
	if d.Identificativo, err = leafText(kids["identificativo"], "dati/identificativo", true); err != nil {
		return err
	}
	if d.MessageID, err = leafText(kids["msgid"], "dati/msgid", false); err != nil {
		return err
	}
	ricevuta, err := single(kids["ricevuta"], "dati/ricevuta", false)
	if err != nil {
		return err
	}
	if ricevuta != nil {
		if len(ricevuta.children) > 0 {
			return fieldErrorf("dati/ricevuta", "unexpected element <%s> in an EMPTY element", ricevuta.children[0].name)
		}
		attrs, err := attributes(ricevuta, "dati/ricevuta")
		if err != nil {
			return err
		}
		t, ok := attrs["tipo"]
		if !ok || strings.TrimSpace(t) == "" {
			return missing("dati/ricevuta/@tipo")
		}
		d.Receipt = ReceiptType(normalizeEnum(t))
		if !d.Receipt.Valid() {
			return fieldErrorf("dati/ricevuta/@tipo", "unknown value %q", t)
		}
	}
	if d.Consegna, err = leafText(kids["consegna"], "dati/consegna", false); err != nil {
		return err
	}
	for i, n := range kids["ricezione"] {
		r, err := text(n, fmt.Sprintf("dati/ricezione[%d]", i+1))
		if err != nil {
			return err
		}
		if r = strings.TrimSpace(r); r != "" { // an empty ricezione says nothing
			d.Ricezione = append(d.Ricezione, r)
		}
	}
	d.ErroreEsteso, err = leafText(kids["errore-esteso"], "dati/errore-esteso", false)
	return err
}

// readData reads the data element: zona, giorno and ora.
func readData(n *node) (time.Time, error) {
	attrs, err := attributes(n, "dati/data")
	if err != nil {
		return time.Time{}, err
	}
	zona, ok := attrs["zona"]
	if !ok || strings.TrimSpace(zona) == "" {
		return time.Time{}, missing("dati/data/@zona")
	}
	off, err := parseZona(strings.TrimSpace(zona))
	if err != nil {
		return time.Time{}, &FieldError{Field: "dati/data/@zona", Err: err}
	}
	kids := children(n, "giorno", "ora")
	giorno, err := leafText(kids["giorno"], "dati/data/giorno", true)
	if err != nil {
		return time.Time{}, err
	}
	ora, err := leafText(kids["ora"], "dati/data/ora", true)
	if err != nil {
		return time.Time{}, err
	}
	day, ok := fields(giorno, "/", 2, 2, 4)
	if !ok {
		return time.Time{}, fieldErrorf("dati/data/giorno", "%q is not dd/mm/yyyy", giorno)
	}
	clock, ok := fields(ora, ":", 2, 2, 2)
	if !ok {
		clock, ok = fields(ora, ":", 2, 2) // hh:mm, seconds left out
		if !ok {
			return time.Time{}, fieldErrorf("dati/data/ora", "%q is not hh:mm:ss", ora)
		}
		clock = append(clock, 0)
	}
	if clock[0] > 23 || clock[1] > 59 || clock[2] > 59 {
		return time.Time{}, fieldErrorf("dati/data/ora", "%q is not a time of day", ora)
	}
	t := time.Date(day[2], time.Month(day[1]), day[0], clock[0], clock[1], clock[2], 0, time.FixedZone("", off))
	if t.Day() != day[0] || int(t.Month()) != day[1] || t.Year() != day[2] {
		return time.Time{}, fieldErrorf("dati/data/giorno", "%q is not a date", giorno)
	}
	return t, nil
}

// fields splits s at sep into exactly len(widths) decimal fields, the i-th
// of one to widths[i] digits, the last of exactly widths[len-1] digits when
// that is 4 (a year).
func fields(s, sep string, widths ...int) ([]int, bool) {
	parts := strings.Split(s, sep)
	if len(parts) != len(widths) {
		return nil, false
	}
	out := make([]int, len(parts))
	for i, p := range parts {
		w := widths[i]
		if len(p) == 0 || len(p) > w || (w == 4 && len(p) != 4) {
			return nil, false
		}
		n := 0
		for j := 0; j < len(p); j++ {
			if p[j] < '0' || p[j] > '9' {
				return nil, false
			}
			n = n*10 + int(p[j]-'0')
		}
		out[i] = n
	}
	return out, true
}

// parseZona reads a UTC offset written [+|-]hhmm or [+|-]hh:mm, returning
// seconds east of UTC.
func parseZona(s string) (int, error) {
	bad := fmt.Errorf("%q is not [+|-]hhmm", s)
	if len(s) < 5 || (s[0] != '+' && s[0] != '-') {
		return 0, bad
	}
	digits := s[1:]
	if len(digits) == 5 && digits[2] == ':' {
		digits = digits[:2] + digits[3:]
	}
	if len(digits) != 4 {
		return 0, bad
	}
	for i := 0; i < 4; i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, bad
		}
	}
	hh := int(digits[0]-'0')*10 + int(digits[1]-'0')
	mm := int(digits[2]-'0')*10 + int(digits[3]-'0')
	if hh > 23 || mm > 59 {
		return 0, bad
	}
	off := (hh*60 + mm) * 60
	if s[0] == '-' {
		off = -off
	}
	return off, nil
}

// normalizeEnum folds the spellings of an enumerated value seen in the wild
// into the DTD's: lower case, hyphens for spaces and underscores.
func normalizeEnum(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '_' {
			return '-'
		}
		return r
	}, s)
}

func nameIs(got, want string) bool { return strings.EqualFold(got, want) }

// attributes returns n's attributes by lower-cased local name, refusing an
// attribute given twice.
func attributes(n *node, field string) (map[string]string, error) {
	m := make(map[string]string, len(n.attrs))
	for _, a := range n.attrs {
		if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
			continue
		}
		k := strings.ToLower(a.Name.Local)
		if _, dup := m[k]; dup {
			return nil, fieldErrorf(field+"/@"+k, "attribute given twice")
		}
		m[k] = a.Value
	}
	return m, nil
}

// children groups n's child elements by the known names, matched without
// regard to case; unknown children are ignored.
func children(n *node, known ...string) map[string][]*node {
	m := make(map[string][]*node, len(known))
	for _, c := range n.children {
		for _, k := range known {
			if nameIs(c.name, k) {
				m[k] = append(m[k], c)
				break
			}
		}
	}
	return m
}

// single returns the only node of nodes, nil if there is none and the
// element is optional.
func single(nodes []*node, field string, mandatory bool) (*node, error) {
	switch len(nodes) {
	case 0:
		if mandatory {
			return nil, missing(field)
		}
		return nil, nil
	case 1:
		return nodes[0], nil
	}
	return nil, fieldErrorf(field, "element given %d times (line %d)", len(nodes), nodes[1].line)
}

// leafText returns the trimmed text of the only node of nodes.
func leafText(nodes []*node, field string, mandatory bool) (string, error) {
	n, err := single(nodes, field, mandatory)
	if err != nil || n == nil {
		return "", err
	}
	s, err := text(n, field)
	if err != nil {
		return "", err
	}
	s = strings.TrimSpace(s)
	if s == "" && mandatory {
		return "", missing(field)
	}
	return s, nil
}

// text returns the character data of a #PCDATA element, refusing child
// elements.
func text(n *node, field string) (string, error) {
	if len(n.children) > 0 {
		return "", fieldErrorf(field, "unexpected element <%s> in a text element", n.children[0].name)
	}
	return n.text.String(), nil
}

// charsetReader converts the single-byte encodings gestori may declare into
// UTF-8. encoding/xml handles UTF-8 itself.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	var high []rune // code points of bytes 0x80-0x9F; nil for ISO-8859-1
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf8":
		return input, nil
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso-8859-1:1987", "latin1", "latin-1", "l1",
		"iso-ir-100", "cp819", "ibm819", "us-ascii", "ascii", "iso646-us":
		// ASCII is a subset of ISO-8859-1; a stray high byte is read as Latin-1.
	case "windows-1252", "cp1252", "x-cp1252":
		high = []rune(windows1252High)
	default:
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	raw, err := io.ReadAll(input) // bounded: Parse has checked the size
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(raw)+len(raw)/2)
	for _, c := range raw {
		r := rune(c)
		if high != nil && c >= 0x80 && c < 0xA0 {
			r = high[c-0x80]
		}
		out = utf8.AppendRune(out, r)
	}
	return bytes.NewReader(out), nil
}

// windows1252High holds the characters of bytes 0x80-0x9F of windows-1252,
// in order. The five unassigned bytes stand for the C1 controls of the same
// value, as in the WHATWG encoding standard.
const windows1252High = "\u20AC\u0081\u201A\u0192\u201E\u2026\u2020\u2021" +
	"\u02C6\u2030\u0160\u2039\u0152\u008D\u017D\u008F" +
	"\u0090\u2018\u2019\u201C\u201D\u2022\u2013\u2014" +
	"\u02DC\u2122\u0161\u203A\u0153\u009D\u017E\u0178"
