package export

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
)

// Page geometry of the PDFs, in millimetres (A4).
const (
	pdfMargin     = 20.0 // left, right
	pdfTop        = 28.0 // below the header
	pdfBottom     = 22.0 // above the footer
	pdfLabelWidth = 58.0 // the first column of a table
	pdfLine       = 4.6  // line height of 9-point text
	pdfTextSize   = 9.0
	pdfMinSize    = 5.0 // the smallest a table cell's text shrinks to
)

// PDF renders the document on A4 pages with the Go fonts (embedded, so
// every character of the text shows as it is): the issuer's name at the
// top of each page, "Pagina N di M" at the bottom, paragraphs, and tables
// whose rows never run into the footer. A block goes to the next page
// whole when it does not fit in what is left of the current one. created
// is the document's creation date. The result claims PDF/A-2b (see
// setPDFA): XMP metadata that agrees with the Info dictionary, an sRGB
// output intent, every font embedded, no transparency, no encryption and a
// trailer /ID; no PDF/A validator checks it here.
func (d *document) PDF(created time.Time) ([]byte, error) {
	d, err := d.showable()
	if err != nil {
		return nil, err
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.AddUTF8FontFromBytes("go", "", goregular.TTF)
	pdf.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	setPDFA(pdf, pdfMeta{Title: d.Title, Author: d.Issuer, Created: created})
	pdf.SetLang("it-IT")
	pdf.SetMargins(pdfMargin, pdfTop, pdfMargin)
	pdf.SetAutoPageBreak(false, pdfBottom)
	pdf.AliasNbPages("{nb}")
	pageW, pageH := pdf.GetPageSize()
	width := pageW - 2*pdfMargin
	limit := pageH - pdfBottom

	pdf.SetHeaderFunc(func() {
		pdf.SetFont("go", "B", 12)
		pdf.SetXY(pdfMargin, 12)
		pdf.CellFormat(width, 6, d.Issuer, "", 0, "L", false, 0, "")
		pdf.SetDrawColor(120, 120, 120)
		pdf.Line(pdfMargin, 20, pageW-pdfMargin, 20)
		pdf.SetXY(pdfMargin, pdfTop)
	})
	pdf.SetFooterFunc(func() {
		pdf.SetDrawColor(120, 120, 120)
		pdf.Line(pdfMargin, pageH-17, pageW-pdfMargin, pageH-17)
		pdf.SetFont("go", "", 8)
		pdf.SetXY(pdfMargin, pageH-15)
		pdf.CellFormat(width, 4, fmt.Sprintf("Pagina %d di {nb}", pdf.PageNo()), "", 0, "L", false, 0, "")
	})
	pdf.AddPage()

	// newPageIf starts a new page when h more millimetres do not fit.
	newPageIf := func(h float64) {
		if pdf.GetY()+h > limit {
			pdf.AddPage()
		}
	}
	lines := func(s string, w float64) []string {
		var out []string
		for _, para := range strings.Split(s, "\n") {
			if para == "" {
				out = append(out, "")
				continue
			}
			out = append(out, pdf.SplitText(para, w)...)
		}
		return out
	}

	pdf.SetFont("go", "B", 13)
	for _, l := range lines(d.Title, width) {
		pdf.CellFormat(width, 6.5, l, "", 1, "L", false, 0, "")
	}
	pdf.Ln(3)

	for _, b := range d.Blocks {
		pdf.SetFont("go", "", pdfTextSize)
		var para []string
		if b.Text != "" {
			para = lines(b.Text, width)
		}
		rows := make([]pdfRow, len(b.Rows))
		for i, r := range b.Rows {
			rows[i] = layoutRow(pdf, r[0]+":", r[1], width)
		}
		h := float64(len(para)) * pdfLine
		if b.Heading != "" {
			h += 7
		}
		for _, r := range rows {
			h += r.height()
		}
		newPageIf(h) // a block that fits on a page is not split
		if b.Heading != "" {
			newPageIf(7 + pdfLine)
			pdf.SetFont("go", "B", 10.5)
			pdf.SetX(pdfMargin)
			pdf.CellFormat(width, 7, b.Heading, "", 1, "L", false, 0, "")
		}
		pdf.SetFont("go", "", pdfTextSize)
		for _, l := range para {
			newPageIf(pdfLine)
			pdf.SetX(pdfMargin)
			pdf.CellFormat(width, pdfLine, l, "", 1, "L", false, 0, "")
		}
		for _, r := range rows {
			r.draw(pdf, width, limit)
		}
		pdf.Ln(3)
	}
	if err := pdf.Error(); err != nil {
		return nil, fmt.Errorf("export: pdf: %w", err)
	}
	var out bytes.Buffer
	if err := pdf.Output(&out); err != nil {
		return nil, fmt.Errorf("export: pdf: %w", err)
	}
	return fixTrailer(out.Bytes())
}

// showable returns a copy of d with what the Go fonts cannot show
// replaced: characters without a glyph (and beyond the Basic Multilingual
// Plane, which fpdf cannot embed) by U+FFFD, invalid UTF-8 likewise, and
// control characters by spaces. The text version keeps them as they are.
func (d *document) showable() (*document, error) {
	font, err := sfnt.Parse(goregular.TTF)
	if err != nil {
		return nil, fmt.Errorf("export: pdf: the Go font: %w", err)
	}
	var buf sfnt.Buffer
	has := map[rune]bool{}
	clean := func(s string) string {
		s = strings.ToValidUTF8(s, "\uFFFD")
		return strings.Map(func(r rune) rune {
			switch {
			case r == '\n':
				return r
			case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
				return ' '
			case r > 0xffff:
				return '\uFFFD'
			}
			ok, seen := has[r]
			if !seen {
				g, err := font.GlyphIndex(&buf, r)
				ok = err == nil && g != 0
				has[r] = ok
			}
			if !ok {
				return '\uFFFD'
			}
			return r
		}, s)
	}
	out := &document{Issuer: clean(d.Issuer), Title: clean(d.Title)}
	for _, b := range d.Blocks {
		nb := block{Heading: clean(b.Heading), Text: clean(b.Text)}
		for _, r := range b.Rows {
			nb.Rows = append(nb.Rows, [2]string{clean(r[0]), clean(r[1])})
		}
		out.Blocks = append(out.Blocks, nb)
	}
	return out, nil
}

// pdfRow is a table row laid out: its label and value lines, and the
// font size of the value (smaller when a word would not fit otherwise).
type pdfRow struct {
	label, value []string
	size         float64
}

func (r pdfRow) lineHeight() float64 { return pdfLine * r.size / pdfTextSize }

func (r pdfRow) height() float64 {
	return max(float64(len(r.label))*pdfLine, float64(len(r.value))*r.lineHeight()) + 1.2
}

// layoutRow splits label and value into the lines of their columns. The
// value's font shrinks, down to pdfMinSize, until its longest word fits,
// so that a digest is never broken.
func layoutRow(pdf *fpdf.Fpdf, label, value string, width float64) pdfRow {
	const pad = 2.0
	valueW := width - pdfLabelWidth - pad
	r := pdfRow{size: pdfTextSize}
	pdf.SetFont("go", "B", pdfTextSize)
	r.label = pdf.SplitText(label, pdfLabelWidth-pad)
	pdf.SetFont("go", "", pdfTextSize)
	widest := 0.0
	for _, w := range strings.Fields(value) {
		widest = max(widest, pdf.GetStringWidth(w))
	}
	if widest > valueW {
		r.size = max(pdfMinSize, pdfTextSize*valueW/widest*0.98)
	}
	pdf.SetFontSize(r.size)
	for _, para := range strings.Split(value, "\n") {
		if para == "" {
			r.value = append(r.value, "")
			continue
		}
		r.value = append(r.value, pdf.SplitText(para, valueW)...)
	}
	pdf.SetFontSize(pdfTextSize)
	return r
}

// draw writes the row at the current position: the label, then the
// value line by line, going to a new page when a line would reach the
// footer; a thin rule under it.
func (r pdfRow) draw(pdf *fpdf.Fpdf, width, limit float64) {
	// A row that fits on a page is not split; a taller one starts on a
	// fresh page if fewer than two of its lines fit here.
	if h := r.height(); pdf.GetY()+h > limit && (h <= limit-pdfTop || pdf.GetY()+2*r.lineHeight() > limit) {
		pdf.AddPage()
	}
	y := pdf.GetY()
	pdf.SetFont("go", "B", pdfTextSize)
	for i, l := range r.label {
		pdf.SetXY(pdfMargin, y+float64(i)*pdfLine)
		pdf.CellFormat(pdfLabelWidth, pdfLine, l, "", 0, "L", false, 0, "")
	}
	labelEnd := y + float64(len(r.label))*pdfLine
	pdf.SetFont("go", "", r.size)
	ly := y
	for _, l := range r.value {
		if ly+r.lineHeight() > limit {
			pdf.AddPage()
			pdf.SetFont("go", "", r.size)
			ly, labelEnd = pdf.GetY(), 0
		}
		pdf.SetXY(pdfMargin+pdfLabelWidth, ly)
		pdf.CellFormat(width-pdfLabelWidth, r.lineHeight(), l, "", 0, "L", false, 0, "")
		ly += r.lineHeight()
	}
	end := max(ly, labelEnd) + 0.6
	pdf.SetDrawColor(200, 200, 200)
	pdf.Line(pdfMargin, end, pdfMargin+width, end)
	pdf.SetXY(pdfMargin, end+0.6)
	pdf.SetFontSize(pdfTextSize)
}

// textPDF renders text, a paragraph per line, under title: for reports
// whose text version is free text. It returns nil only if the PDF cannot
// be made, which the embedded fonts rule out.
func textPDF(title, text string) []byte {
	d := &document{Title: title, Blocks: []block{{Text: strings.TrimRight(text, "\n")}}}
	out, err := d.PDF(time.Now())
	if err != nil {
		return nil
	}
	return out
}
