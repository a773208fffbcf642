package export

import (
	"bytes"
	"fmt"
	"strings"
)

// textPDF returns a PDF document (1.4) showing title and text, a line of
// the text per line of the page, in 10-point Helvetica, on as many A4
// pages as it takes. Characters outside WinAnsi (Latin-1 in practice)
// become '?'. It is enough for an attestation that any PDF reader shows
// and prints; the evidence itself is in the other files.
func textPDF(title, text string) []byte {
	const (
		linesPerPage = 64
		top          = 800
		leading      = 12
	)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var pages [][]string
	for len(lines) > 0 {
		n := min(linesPerPage, len(lines))
		pages = append(pages, lines[:n])
		lines = lines[n:]
	}
	if len(pages) == 0 {
		pages = [][]string{{""}}
	}
	var objs []string // object bodies, numbered from 1
	add := func(body string) int {
		objs = append(objs, body)
		return len(objs)
	}
	catalog := add("") // filled in below
	pagesObj := add("")
	font := add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
	bold := add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
	var kids []string
	for i, pg := range pages {
		var c bytes.Buffer
		fmt.Fprintf(&c, "BT /F2 12 Tf 50 %d Td (%s) Tj ET\n", top+20, pdfString(title))
		fmt.Fprintf(&c, "BT /F1 10 Tf 50 %d Td %d TL\n", top-10, leading)
		for _, l := range pg {
			fmt.Fprintf(&c, "(%s) '\n", pdfString(l))
		}
		fmt.Fprintf(&c, "ET\nBT /F1 8 Tf 50 30 Td (%d / %d) Tj ET\n", i+1, len(pages))
		content := add(fmt.Sprintf("<< /Length %d >>\nstream\n%sendstream", c.Len(), c.String()))
		page := add(fmt.Sprintf("<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> >> /Contents %d 0 R >>",
			pagesObj, font, bold, content))
		kids = append(kids, fmt.Sprintf("%d 0 R", page))
	}
	objs[catalog-1] = fmt.Sprintf("<< /Type /Catalog /Pages %d 0 R >>", pagesObj)
	objs[pagesObj-1] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), len(kids))

	var out bytes.Buffer
	out.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs))
	for i, body := range objs {
		offsets[i] = out.Len()
		fmt.Fprintf(&out, "%d 0 obj\n%s\nendobj\n", i+1, body)
	}
	xref := out.Len()
	fmt.Fprintf(&out, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&out, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&out, "trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, catalog, xref)
	return out.Bytes()
}

// pdfString escapes s for a PDF literal string in WinAnsiEncoding.
func pdfString(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '(' || r == ')' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r >= 0xa0 && r <= 0xff:
			fmt.Fprintf(&b, "\\%03o", r)
		case r == '\t':
			b.WriteString("    ")
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}
