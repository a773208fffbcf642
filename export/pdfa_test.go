package export

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/xml"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/custode/custode/ledger"
)

// TestSRGBICC checks the structure of the built sRGB profile: the size
// field is the length, a multiple of 4; the header names a v2 RGB display
// profile with the XYZ connection space and the 'acsp' signature; every
// tag of a three-component matrix/TRC profile is there once, with its type,
// 4-byte aligned, after the tag table and within the profile; the
// colorants add up to the D50 white point.
func TestSRGBICC(t *testing.T) {
	t.Parallel()
	p := srgbICC()
	be := binary.BigEndian
	if len(p) < 132 || int(be.Uint32(p)) != len(p) || len(p)%4 != 0 {
		t.Fatalf("size field %d, length %d", be.Uint32(p), len(p))
	}
	for _, c := range []struct {
		off  int
		want string
	}{{12, "mntr"}, {16, "RGB "}, {20, "XYZ "}, {36, "acsp"}} {
		if got := string(p[c.off : c.off+4]); got != c.want {
			t.Errorf("header at %d: %q, want %q", c.off, got, c.want)
		}
	}
	if p[8] != 2 {
		t.Errorf("major version %d, want 2", p[8])
	}
	s15 := func(b []byte) float64 { return float64(int32(be.Uint32(b))) / 65536 }
	if x, y, z := s15(p[68:]), s15(p[72:]), s15(p[76:]); math.Abs(x-0.9642) > 1e-4 || y != 1 || math.Abs(z-0.8249) > 1e-4 {
		t.Errorf("illuminant %v %v %v, want D50", x, y, z)
	}
	n := int(be.Uint32(p[128:]))
	end := 132 + 12*n
	if n == 0 || end > len(p) {
		t.Fatalf("tag count %d", n)
	}
	types := map[string]string{"desc": "desc", "cprt": "text", "wtpt": "XYZ ", "rXYZ": "XYZ ", "gXYZ": "XYZ ",
		"bXYZ": "XYZ ", "rTRC": "curv", "gTRC": "curv", "bTRC": "curv"}
	data := map[string][]byte{}
	for i := range n {
		e := p[132+12*i:]
		sig, off, size := string(e[:4]), int(be.Uint32(e[4:])), int(be.Uint32(e[8:]))
		if off%4 != 0 || off < end || size < 8 || off+size > len(p) {
			t.Errorf("tag %q: offset %d size %d out of bounds or unaligned (table ends at %d, profile %d)", sig, off, size, end, len(p))
			continue
		}
		if _, dup := data[sig]; dup {
			t.Errorf("tag %q twice", sig)
		}
		data[sig] = p[off : off+size]
		if want, ok := types[sig]; ok && string(p[off:off+4]) != want {
			t.Errorf("tag %q has type %q, want %q", sig, p[off:off+4], want)
		}
	}
	for sig := range types {
		if data[sig] == nil {
			t.Errorf("tag %q missing", sig)
		}
	}
	var sum [3]float64
	for _, sig := range []string{"rXYZ", "gXYZ", "bXYZ"} {
		if d := data[sig]; len(d) == 20 {
			for i := range sum {
				sum[i] += s15(d[8+4*i:])
			}
		}
	}
	if math.Abs(sum[0]-0.9642) > 2e-3 || math.Abs(sum[1]-1) > 2e-3 || math.Abs(sum[2]-0.8249) > 2e-3 {
		t.Errorf("colorants add up to %v, not D50", sum)
	}
	if d := data["rTRC"]; len(d) != 14 || be.Uint32(d[8:]) != 1 || math.Abs(float64(be.Uint16(d[12:]))/256-2.2) > 0.01 {
		t.Errorf("rTRC is not a 2.2 gamma curve: % x", d)
	}
}

// pdfFile is a PDF as fpdf writes it (a classic cross-reference table, no
// object streams), read enough to check its PDF/A metadata.
type pdfFile struct {
	data    []byte
	offsets map[int]int
	trailer string
}

var (
	xrefEntry = regexp.MustCompile(`^(\d{10}) (\d{5}) ([nf]) ?$`)
	refTo     = func(key string) *regexp.Regexp { return regexp.MustCompile(key + ` (\d+) 0 R`) }
)

func parsePDF(t *testing.T, data []byte) *pdfFile {
	t.Helper()
	s := bytes.LastIndex(data, []byte("startxref\n"))
	if s < 0 {
		t.Fatal("no startxref")
	}
	xref, err := strconv.Atoi(strings.Fields(string(data[s+len("startxref\n"):]))[0])
	if err != nil || xref <= 0 || xref >= len(data) || !bytes.HasPrefix(data[xref:], []byte("xref\n")) {
		t.Fatalf("startxref %d does not point to a cross-reference table", xref)
	}
	lines := strings.Split(string(data[xref:]), "\n")
	first, count := 0, 0
	if _, err := fmtSscan(lines[1], &first, &count); err != nil {
		t.Fatalf("xref subsection %q: %v", lines[1], err)
	}
	f := &pdfFile{data: data, offsets: map[int]int{}}
	for i := range count {
		m := xrefEntry.FindStringSubmatch(lines[2+i])
		if m == nil {
			t.Fatalf("xref entry %q", lines[2+i])
		}
		if m[3] == "n" {
			off, _ := strconv.Atoi(m[1])
			num := first + i
			if !bytes.HasPrefix(data[off:], []byte(strconv.Itoa(num)+" 0 obj")) {
				t.Errorf("xref: object %d at %d is not there", num, off)
			}
			f.offsets[num] = off
		}
	}
	rest := strings.Join(lines[2+count:], "\n")
	if !strings.HasPrefix(rest, "trailer\n<<") {
		t.Fatalf("no trailer after the xref table: %.40q", rest)
	}
	f.trailer = rest[:strings.Index(rest, ">>")]
	return f
}

// fmtSscan reads "first count".
func fmtSscan(s string, first, count *int) (int, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, io.ErrUnexpectedEOF
	}
	var err error
	if *first, err = strconv.Atoi(f[0]); err != nil {
		return 0, err
	}
	*count, err = strconv.Atoi(f[1])
	return 2, err
}

// ref returns the object number key refers to in s.
func (f *pdfFile) ref(t *testing.T, s, key string) int {
	t.Helper()
	m := refTo(key).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %s reference in %.200q", key, s)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// object returns object n's dictionary and, if it has one, its stream.
func (f *pdfFile) object(t *testing.T, n int) (dict string, stream []byte) {
	t.Helper()
	off, ok := f.offsets[n]
	if !ok {
		t.Fatalf("object %d not in the xref table", n)
	}
	body := f.data[off:]
	if i := bytes.Index(body, []byte("\nstream\n")); i >= 0 && i < bytes.Index(body, []byte("endobj")) {
		dict = string(body[:i])
		m := regexp.MustCompile(`/Length (\d+)`).FindStringSubmatch(dict)
		if m == nil {
			t.Fatalf("object %d: stream without /Length", n)
		}
		l, _ := strconv.Atoi(m[1])
		stream = body[i+len("\nstream\n") : i+len("\nstream\n")+l]
		if !bytes.HasPrefix(body[i+len("\nstream\n")+l:], []byte("\nendstream")) {
			t.Errorf("object %d: /Length %d does not end at endstream", n, l)
		}
		return dict, stream
	}
	return string(body[:bytes.Index(body, []byte("endobj"))]), nil
}

// pdfString decodes the literal string after key in dict: PDF escapes,
// then UTF-16BE when it starts with the byte order mark.
func pdfString(t *testing.T, dict, key string) string {
	t.Helper()
	i := strings.Index(dict, key+" (")
	if i < 0 {
		t.Fatalf("no %s string in %.200q", key, dict)
	}
	s := dict[i+len(key)+2:]
	var b []byte
	depth := 0
	for j := 0; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '\\' && j+1 < len(s):
			j++
			switch e := s[j]; e {
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			default:
				if e >= '0' && e <= '7' {
					k := j
					for k < len(s) && k < j+3 && s[k] >= '0' && s[k] <= '7' {
						k++
					}
					v, _ := strconv.ParseUint(s[j:k], 8, 8)
					b = append(b, byte(v))
					j = k - 1
				} else {
					b = append(b, e)
				}
			}
		case c == '(':
			depth++
			b = append(b, c)
		case c == ')' && depth == 0:
			if len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff {
				u := make([]uint16, 0, len(b)/2)
				for k := 2; k+1 < len(b); k += 2 {
					u = append(u, uint16(b[k])<<8|uint16(b[k+1]))
				}
				return string(utf16.Decode(u))
			}
			return string(b)
		case c == ')':
			depth--
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
	t.Fatalf("unterminated %s string", key)
	return ""
}

// xmpFacts is what the checks read from the XMP packet.
type xmpFacts struct {
	Part, Conformance, Title, Creator, CreateDate, ModifyDate, CreatorTool, Producer string
}

func parseXMP(t *testing.T, x []byte) xmpFacts {
	t.Helper()
	var f xmpFacts
	d := xml.NewDecoder(bytes.NewReader(x))
	var path []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("XMP is not well-formed XML: %v\n%s", err, x)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			path = append(path, tok.Name.Space+" "+tok.Name.Local)
		case xml.EndElement:
			path = path[:len(path)-1]
		case xml.CharData:
			in := func(ns, local string) bool {
				for _, p := range path {
					if p == ns+" "+local {
						return true
					}
				}
				return false
			}
			s := string(tok)
			switch {
			case in("http://www.aiim.org/pdfa/ns/id/", "part"):
				f.Part += s
			case in("http://www.aiim.org/pdfa/ns/id/", "conformance"):
				f.Conformance += s
			case in("http://purl.org/dc/elements/1.1/", "title") && path[len(path)-1] == "http://www.w3.org/1999/02/22-rdf-syntax-ns# li":
				f.Title += s
			case in("http://purl.org/dc/elements/1.1/", "creator") && path[len(path)-1] == "http://www.w3.org/1999/02/22-rdf-syntax-ns# li":
				f.Creator += s
			case in("http://ns.adobe.com/xap/1.0/", "CreateDate"):
				f.CreateDate += s
			case in("http://ns.adobe.com/xap/1.0/", "ModifyDate"):
				f.ModifyDate += s
			case in("http://ns.adobe.com/xap/1.0/", "CreatorTool"):
				f.CreatorTool += s
			case in("http://ns.adobe.com/pdf/1.3/", "Producer"):
				f.Producer += s
			}
		}
	}
	return f
}

// checkPDFA checks what this package claims of PDF/A-2b in pdf: the
// catalog has /Metadata (an unfiltered XMP packet with pdfaid part 2,
// conformance B) and a GTS_PDFA1 output intent whose profile is srgbICC;
// the Info dictionary (the trailer's /Info) and the XMP state the same
// title, author, creator, producer and dates; the trailer has an /ID; no
// encryption, nothing transparent, and every font descriptor has its font
// program. The file's cross-reference table points at every object.
func checkPDFA(t *testing.T, pdf []byte) {
	t.Helper()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.")) {
		t.Fatalf("not a PDF: %.10q", pdf)
	}
	if nl := bytes.IndexByte(pdf, '\n'); len(pdf) < nl+6 || pdf[nl+1] != '%' || pdf[nl+2] < 128 || pdf[nl+3] < 128 || pdf[nl+4] < 128 || pdf[nl+5] < 128 {
		t.Errorf("no binary comment after the header: %.20q", pdf)
	}
	f := parsePDF(t, pdf)
	if !regexp.MustCompile(`/ID \[<[0-9a-f]{32}> <[0-9a-f]{32}>\]`).MatchString(f.trailer) {
		t.Errorf("trailer has no /ID: %q", f.trailer)
	}
	if strings.Contains(f.trailer, "/Encrypt") {
		t.Errorf("trailer has /Encrypt")
	}
	catalog, _ := f.object(t, f.ref(t, f.trailer, "/Root"))
	if !strings.Contains(catalog, "/Type /Catalog") {
		t.Fatalf("/Root is not the catalog: %.200q", catalog)
	}
	mdict, xmp := f.object(t, f.ref(t, catalog, "/Metadata"))
	if !strings.Contains(mdict, "/Type /Metadata /Subtype /XML") || strings.Contains(mdict, "/Filter") {
		t.Errorf("metadata stream dictionary %q", mdict)
	}
	x := parseXMP(t, xmp)
	if x.Part != "2" || x.Conformance != "B" {
		t.Errorf("pdfaid part %q conformance %q, want 2 B", x.Part, x.Conformance)
	}
	oi := regexp.MustCompile(`/OutputIntents \[\n<< /Type /OutputIntent /S /GTS_PDFA1 /OutputConditionIdentifier \(([^)]*)\) [^>]*/DestOutputProfile (\d+) 0 R >>\n\]`).FindStringSubmatch(catalog)
	if oi == nil {
		t.Fatalf("catalog has no GTS_PDFA1 output intent: %q", catalog)
	}
	n, _ := strconv.Atoi(oi[2])
	pdict, z := f.object(t, n)
	if !strings.Contains(pdict, "/N 3") || !strings.Contains(pdict, "/FlateDecode") {
		t.Errorf("ICC stream dictionary %q", pdict)
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	icc, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(icc, srgbICC()) {
		t.Errorf("the output intent's profile is not srgbICC (%d bytes, %v)", len(icc), err)
	}

	info, _ := f.object(t, f.ref(t, f.trailer, "/Info"))
	date := func(key string) string {
		d := pdfString(t, info, key)
		tm, err := time.Parse("D:20060102150405", d)
		if err != nil {
			t.Errorf("Info %s %q: %v", key, d, err)
		}
		return tm.UTC().Format("2006-01-02T15:04:05Z")
	}
	for _, c := range []struct{ what, info, xmp string }{
		{"title", pdfString(t, info, "/Title"), x.Title},
		{"producer", pdfString(t, info, "/Producer"), x.Producer},
		{"creator tool", pdfString(t, info, "/Creator"), x.CreatorTool},
		{"creation date", date("/CreationDate"), x.CreateDate},
		{"modification date", date("/ModDate"), x.ModifyDate},
	} {
		if c.info != c.xmp || (c.info == "" && c.what != "title") {
			t.Errorf("Info and XMP disagree on the %s: %q, %q", c.what, c.info, c.xmp)
		}
	}
	if strings.Contains(info, "/Author") {
		if a := pdfString(t, info, "/Author"); a != x.Creator {
			t.Errorf("Info and XMP disagree on the author: %q, %q", a, x.Creator)
		}
	} else if x.Creator != "" {
		t.Errorf("XMP has dc:creator %q, Info no /Author", x.Creator)
	}

	// fpdf gives each page a transparency group dictionary (allowed in
	// PDF/A-2, not in PDF/A-1), in the output intent's colour space; nothing
	// in the pages is transparent.
	groups := regexp.MustCompile(`/Group <<[^>]*>>`).FindAll(pdf, -1)
	for _, g := range groups {
		if string(g) != "/Group <</Type /Group /S /Transparency /CS /DeviceRGB>>" {
			t.Errorf("page group %q", g)
		}
	}
	for _, bad := range []string{"/SMask", "/CA ", "/ca ", "/BM ", "/Encrypt", "/JavaScript"} {
		if bytes.Contains(pdf, []byte(bad)) {
			t.Errorf("the PDF has %s", bad)
		}
	}
	if fd, ff := bytes.Count(pdf, []byte("/Type /FontDescriptor")), bytes.Count(pdf, []byte("/FontFile2 ")); fd == 0 || fd != ff {
		t.Errorf("%d font descriptors, %d embedded font programs", fd, ff)
	}
}

// TestPDFA: every kind of PDF this package writes (attestation, extract,
// audit report) carries the PDF/A-2b metadata, with Info and XMP in
// agreement, also for titles with characters PDF strings and XML escape.
func TestPDFA(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 12, 3, 19, 15, 7, 0, time.FixedZone("CET", 3600))
	e := testEntry(12, when, "Perché la consegna è già avvenuta – ricorso n. 42/2026")
	b := &Bundle{Entry: e, Reproduction: true, Checkpoint: &ledger.Checkpoint{Size: 40, Time: when.Add(time.Minute)}}
	att, err := attestation(b, "Alfa PEC S.p.A. <&> (\"x\") \\", when).PDF(when)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := extractDocument("Alfa PEC S.p.A.", "Estratto – (a) <b> & \\c è", []*ledger.Entry{e}, b.Checkpoint).PDF(when)
	if err != nil {
		t.Fatal(err)
	}
	for name, pdf := range map[string][]byte{
		"attestation": att,
		"extract":     ext,
		"audit":       textPDF("Rapporto di audit – log del gestore PEC", "riga 1\nriga è 2"),
		"hostile":     mustPDF(t, &document{Title: "a\x00b\x1bc\td ) ( \\ \xff 日本 😀 ]]> <?x?>", Issuer: "\u202e"}),
	} {
		t.Run(name, func(t *testing.T) { checkPDFA(t, pdf) })
	}
}

func mustPDF(t *testing.T, d *document) []byte {
	t.Helper()
	pdf, err := d.PDF(time.Unix(1e9, 0))
	if err != nil {
		t.Fatal(err)
	}
	return pdf
}
