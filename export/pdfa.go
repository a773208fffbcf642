package export

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
)

// pdfProducer is the Producer of every PDF, in the Info dictionary and
// (as pdf:Producer) in the XMP metadata.
const pdfProducer = "Custode (codeberg.org/go-pdf/fpdf)"

// pdfCreator is the Creator (xmp:CreatorTool) of every PDF.
const pdfCreator = "Custode"

// pdfMeta is what a PDF's Info dictionary and its XMP metadata both state.
// PDF/A requires the two to agree, so both are written from one pdfMeta.
type pdfMeta struct {
	Title   string
	Author  string // empty: none
	Created time.Time
}

// setPDFA makes pdf claim PDF/A-2b: the Info dictionary from m, the same
// facts as XMP metadata with the pdfaid schema, and a GTS_PDFA1 output
// intent carrying the sRGB profile of srgbICC. Dates are written in UTC,
// to the second, in both places (fpdf writes Info dates without a zone).
func setPDFA(pdf *fpdf.Fpdf, m pdfMeta) {
	t := m.Created.UTC().Truncate(time.Second)
	pdf.SetTitle(m.Title, true)
	pdf.SetAuthor(m.Author, true)
	pdf.SetCreator(pdfCreator, true)
	pdf.SetProducer(pdfProducer, true)
	pdf.SetCreationDate(t)
	pdf.SetModificationDate(t)
	pdf.SetXmpMetadata(pdfXMP(m.Title, m.Author, t))
	pdf.AddOutputIntent(fpdf.OutputIntentType{
		SubtypeIdent:              fpdf.OutputIntent_GTS_PDFA1,
		OutputConditionIdentifier: "sRGB IEC61966-2.1",
		Info:                      "sRGB IEC61966-2.1",
		ICCProfile:                srgbICC(),
	})
}

// xmlText escapes s for XML character data.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}

// pdfXMP returns the XMP packet of a PDF/A-2b document: pdfaid part 2,
// conformance B, dc:title, dc:creator (when author is not empty),
// xmp:CreateDate, xmp:ModifyDate, xmp:CreatorTool and pdf:Producer, the
// same values as the Info dictionary.
func pdfXMP(title, author string, created time.Time) []byte {
	date := created.UTC().Format("2006-01-02T15:04:05Z")
	var b bytes.Buffer
	b.WriteString("<?xpacket begin=\"\xef\xbb\xbf\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n")
	b.WriteString(`<x:xmpmeta xmlns:x="adobe:ns:meta/">` + "\n")
	b.WriteString(`<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">` + "\n")
	b.WriteString(`<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">` + "\n")
	b.WriteString("<pdfaid:part>2</pdfaid:part>\n<pdfaid:conformance>B</pdfaid:conformance>\n")
	b.WriteString("</rdf:Description>\n")
	b.WriteString(`<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">` + "\n")
	b.WriteString("<dc:format>application/pdf</dc:format>\n")
	fmt.Fprintf(&b, "<dc:title><rdf:Alt><rdf:li xml:lang=\"x-default\">%s</rdf:li></rdf:Alt></dc:title>\n", xmlText(title))
	if author != "" {
		fmt.Fprintf(&b, "<dc:creator><rdf:Seq><rdf:li>%s</rdf:li></rdf:Seq></dc:creator>\n", xmlText(author))
	}
	b.WriteString("</rdf:Description>\n")
	b.WriteString(`<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">` + "\n")
	fmt.Fprintf(&b, "<xmp:CreateDate>%s</xmp:CreateDate>\n<xmp:ModifyDate>%s</xmp:ModifyDate>\n", date, date)
	fmt.Fprintf(&b, "<xmp:CreatorTool>%s</xmp:CreatorTool>\n", xmlText(pdfCreator))
	b.WriteString("</rdf:Description>\n")
	b.WriteString(`<rdf:Description rdf:about="" xmlns:pdf="http://ns.adobe.com/pdf/1.3/">` + "\n")
	fmt.Fprintf(&b, "<pdf:Producer>%s</pdf:Producer>\n", xmlText(pdfProducer))
	b.WriteString("</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n")
	b.WriteString(`<?xpacket end="w"?>`)
	return b.Bytes()
}

// infoObject finds the Info dictionary fpdf writes: the object whose
// dictionary opens with the Producer that setPDFA always sets.
var infoObject = regexp.MustCompile(`\n(\d+) 0 obj\n<<\n/Producer `)

// fixTrailer returns pdf with its trailer made right for PDF/A, and no
// byte offset moved (the trailer follows the cross-reference table):
//   - /Info names the Info dictionary. fpdf names the object before the
//     catalog, which is the ICC profile's stream once an output intent is
//     added, so without this fix readers find no Title and PDF/A's check
//     that Info agrees with the XMP metadata has nothing to compare.
//   - /ID is present, which PDF/A requires and fpdf writes only for
//     encrypted files. Both identifiers are the first 16 bytes of the
//     SHA-256 of pdf as fpdf wrote it.
func fixTrailer(pdf []byte) ([]byte, error) {
	i := bytes.LastIndex(pdf, []byte("\ntrailer\n<<\n"))
	j := bytes.LastIndex(pdf, []byte("\n>>\nstartxref\n"))
	info := infoObject.FindAllSubmatch(pdf, -1)
	if i < 0 || j < i || len(info) != 1 || len(infoRef.FindAll(pdf[i:j], -1)) != 1 || bytes.Contains(pdf[i:j], []byte("/ID")) {
		return nil, fmt.Errorf("export: pdf: unexpected structure (trailer or Info dictionary)")
	}
	trailer := infoRef.ReplaceAll(pdf[i:j], []byte("/Info "+string(info[0][1])+" 0 R"))
	sum := sha256.Sum256(pdf)
	out := make([]byte, 0, len(pdf)+80)
	out = append(out, pdf[:i]...)
	out = append(out, trailer...)
	out = fmt.Appendf(out, "\n/ID [<%x> <%x>]", sum[:16], sum[:16])
	return append(out, pdf[j:]...), nil
}

// infoRef is the trailer's /Info entry.
var infoRef = regexp.MustCompile(`/Info \d+ 0 R`)

// srgbICC returns a minimal ICC v2 display profile ('mntr', RGB to XYZ)
// for sRGB: the D50-adapted (Bradford) sRGB primaries as colorants, D50 as
// white point, and a 2.2 gamma curve for each channel (sRGB's piecewise
// curve differs from it by less than 0.5% of full scale). It is built
// here, so no third-party profile is redistributed.
func srgbICC() []byte {
	s15 := func(v float64) uint32 { return uint32(int32(math.Round(v * 65536))) }
	xyz := func(x, y, z float64) []byte {
		b := []byte("XYZ \x00\x00\x00\x00")
		for _, v := range []float64{x, y, z} {
			b = binary.BigEndian.AppendUint32(b, s15(v))
		}
		return b
	}
	desc := func(s string) []byte { // textDescriptionType
		b := []byte("desc\x00\x00\x00\x00")
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)+1))
		b = append(b, s...)
		b = append(b, 0)
		b = append(b, make([]byte, 4+4+2+1+67)...) // no Unicode, no ScriptCode
		return b
	}
	text := func(s string) []byte { return append([]byte("text\x00\x00\x00\x00"+s), 0) }
	curv := []byte("curv\x00\x00\x00\x00\x00\x00\x00\x01\x02\x33") // gamma 563/256 ≈ 2.2
	tags := []struct {
		sig  string
		data []byte
	}{
		{"desc", desc("sRGB (Custode, gamma 2.2)")},
		{"cprt", text("No copyright, use freely")},
		{"wtpt", xyz(0.9642, 1.0, 0.8249)},
		{"rXYZ", xyz(0.4361, 0.2225, 0.0139)},
		{"gXYZ", xyz(0.3851, 0.7169, 0.0971)},
		{"bXYZ", xyz(0.1431, 0.0606, 0.7141)},
		{"rTRC", curv},
		{"gTRC", curv},
		{"bTRC", curv},
	}
	pad := func(n int) int { return (n + 3) &^ 3 }
	offset := 128 + 4 + 12*len(tags)
	var table, data []byte
	table = binary.BigEndian.AppendUint32(table, uint32(len(tags)))
	for _, t := range tags {
		table = append(table, t.sig...)
		table = binary.BigEndian.AppendUint32(table, uint32(offset+len(data)))
		table = binary.BigEndian.AppendUint32(table, uint32(len(t.data)))
		data = append(data, t.data...)
		data = append(data, make([]byte, pad(len(t.data))-len(t.data))...)
	}
	size := offset + len(data)
	h := make([]byte, 0, 128)
	h = binary.BigEndian.AppendUint32(h, uint32(size))
	h = append(h, 0, 0, 0, 0)             // preferred CMM: none
	h = append(h, 0x02, 0x10, 0, 0)       // version 2.1
	h = append(h, "mntrRGB XYZ "...)      // class, colour space, PCS
	h = append(h, 0x07, 0xd0, 0, 1, 0, 1) // 2000-01-01
	h = append(h, 0, 0, 0, 0, 0, 0)       // 00:00:00
	h = append(h, "acsp"...)
	h = append(h, make([]byte, 4+4+4+4+8+4)...) // platform, flags, manufacturer, model, attributes, intent
	h = append(h, xyz(0.9642, 1.0, 0.8249)[8:]...)
	h = append(h, make([]byte, 128-len(h))...) // creator, reserved
	out := append(h, table...)
	return append(out, data...)
}
