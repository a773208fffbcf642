package pec

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/charset"
)

// This file reads MIME entities (RFC 2045, RFC 2046) straight from the
// message bytes, keeping the exact byte range of every entity: the signature
// of a PEC message covers exact bytes, the original message travels
// unmodified, and the hashes of a ricevuta breve are computed over the parts
// as transmitted. Every walk is bounded in depth and in the number of
// entities, and nothing is copied except what is decoded on request.

// maxHeaderFields bounds the fields of one header block. Real messages carry
// a few dozen (mostly Received); the bound keeps a hostile header block from
// costing more than a small constant per entity.
const maxHeaderFields = 5000

// maxEntities bounds the MIME entities one message may hold. A busta with a
// user's message of a few hundred attachments stays far below; the bound
// keeps a hostile message made of millions of tiny parts from costing memory
// proportional to their count.
const maxEntities = 10000

// field is one header field: its name as written and its raw value,
// continuation lines included.
type field struct {
	name  string
	raw   []byte
	start int // offset of raw in the header block
}

// header is a header block, fields in their order.
type header []field

// get returns the unfolded, trimmed value of the first field named name,
// compared case-insensitively (real gestori write X-Tiporicevuta for
// X-TipoRicevuta), and whether there was one.
func (h header) get(name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return unfold(f.raw), true
		}
	}
	return "", false
}

// value returns the unfolded, trimmed value of the first field named name,
// or "".
func (h header) value(name string) string {
	v, _ := h.get(name)
	return v
}

// values returns the unfolded values of every field named name, in order.
func (h header) values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, unfold(f.raw))
		}
	}
	return vs
}

// unfold removes the line breaks of a folded value (RFC 5322 §2.2.3) and
// trims the surrounding white space.
func unfold(raw []byte) string {
	if !bytes.ContainsAny(raw, "\r\n") {
		return strings.TrimSpace(string(raw))
	}
	var b strings.Builder
	b.Grow(len(raw))
	for _, c := range raw {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

// line returns the line of b that starts at i, without its terminator (LF
// or CRLF), and the offset of the next line.
func line(b []byte, i int) (l []byte, next int) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return b[i:], len(b)
	}
	l = b[i : i+j]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l, i + j + 1
}

// validFieldName reports whether name can be a header field name (RFC 5322
// §3.6.8: printable ASCII except colon).
func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// errNoHeader means an entity does not start with a header field.
var errNoHeader = errors.New("no header field at the start")

// splitHeader reads the header block at the start of the entity b and
// returns it with the offset of the body. LF and CRLF line endings are
// accepted. The first line must be a field; a later line that is neither a
// field nor a continuation ends the header block as an empty line would, as
// mail transfer agents do. An entity starting with an empty line has an
// empty header.
func splitHeader(b []byte) (header, int, error) {
	var h header
	i := 0
	for i < len(b) {
		l, next := line(b, i)
		if len(l) == 0 {
			return h, next, nil
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(h) == 0 {
				return nil, 0, errNoHeader
			}
			// Extend the value over the line break to the end of
			// this continuation line.
			last := &h[len(h)-1]
			last.raw = b[last.start : i+len(l) : i+len(l)]
			i = next
			continue
		}
		colon := bytes.IndexByte(l, ':')
		if colon < 0 || !validFieldName(bytes.TrimRight(l[:colon], " \t")) {
			if len(h) == 0 {
				return nil, 0, errNoHeader
			}
			return h, i, nil
		}
		if len(h) == maxHeaderFields {
			return nil, 0, fmt.Errorf("more than %d header fields", maxHeaderFields)
		}
		h = append(h, field{
			name:  string(bytes.TrimRight(l[:colon], " \t")),
			raw:   b[i+colon+1 : i+len(l) : i+len(l)],
			start: i + colon + 1,
		})
		i = next
	}
	return h, len(b), nil
}

// mediaType parses a Content-Type value. An empty value is text/plain, as
// RFC 2045 §5.2 says. It is lenient: what mime.ParseMediaType refuses (an
// unquoted parameter holding a tspecial, a duplicate parameter) is parsed
// again by a simpler rule, as mail readers do. The type is lower case.
func mediaType(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	typ, params := parseParams(v)
	if !strings.Contains(typ, "/") {
		typ = "application/octet-stream"
	}
	return typ, params
}

// disposition parses a Content-Disposition value: its lower-case type
// (inline, attachment) and parameters, leniently as mediaType does.
func disposition(v string) (string, map[string]string) {
	return parseParams(v)
}

// parseParams parses a value of the form "value; name=value; ...".
func parseParams(v string) (string, map[string]string) {
	typ, params, err := mime.ParseMediaType(v)
	if err == nil || (errors.Is(err, mime.ErrInvalidMediaParameter) && typ != "") {
		if params == nil {
			params = map[string]string{}
		}
		return typ, params
	}
	return lenientMediaType(v)
}

// lenientMediaType splits v at semicolons that are not inside a quoted
// string and reads each parameter as name=value, the value being a quoted
// string or the text up to the next semicolon. The first occurrence of a
// parameter wins.
func lenientMediaType(v string) (string, map[string]string) {
	params := map[string]string{}
	var segs []string
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				segs = append(segs, v[start:i])
				start = i + 1
			}
		}
	}
	segs = append(segs, v[start:])
	typ := strings.ToLower(strings.TrimSpace(segs[0]))
	for _, s := range segs[1:] {
		k, val, ok := strings.Cut(s, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = strings.ReplaceAll(val[1:len(val)-1], `\"`, `"`)
		}
		if _, dup := params[k]; !dup {
			params[k] = val
		}
	}
	return typ, params
}

// entity is one MIME entity of a message, its bytes shared with the
// message.
type entity struct {
	raw    []byte // the whole entity: header and body
	header header
	body   []byte // the body as transmitted
	typ    string // lower-case media type
	params map[string]string

	// parts are the body parts of a multipart entity, in order; closed
	// reports whether its close delimiter was found.
	parts  []*entity
	spans  []span // where each part lies in body
	closed bool
	// embedded is the message carried by a message/rfc822 entity whose
	// body is not transfer-encoded (7bit, 8bit, binary).
	embedded *entity
	// depth is the nesting level: 1 for a whole message.
	depth int
}

// walker parses the MIME tree of a message within its limits.
type walker struct {
	maxDepth int
	entities int
}

// errTooDeep and errTooManyEntities are wrapped into the exported errors by
// the callers that know the limits.
var (
	errTooDeep         = errors.New("MIME entities nested too deep")
	errTooManyEntities = fmt.Errorf("more than %d MIME entities", maxEntities)
)

// parse builds the entity tree of b at nesting level depth. A part whose
// header cannot be read is kept as a leaf with an empty header: the signed
// content of a PEC message need not be well formed for the message to be
// classified. Exceeding the depth or entity limit is an error.
func (w *walker) parse(b []byte, depth int) (*entity, error) {
	if depth > w.maxDepth {
		return nil, fmt.Errorf("%w: deeper than %d levels", errTooDeep, w.maxDepth)
	}
	w.entities++
	if w.entities > maxEntities {
		return nil, errTooManyEntities
	}
	e := &entity{raw: b, depth: depth}
	h, off, err := splitHeader(b)
	if err != nil {
		if depth == 1 {
			return nil, err
		}
		off = 0
		h = nil
	}
	e.header, e.body = h, b[off:]
	e.typ, e.params = mediaType(h.value("Content-Type"))
	switch {
	case strings.HasPrefix(e.typ, "multipart/"):
		boundary := e.params["boundary"]
		if boundary == "" {
			return e, nil
		}
		spans, closed := splitMultipart(e.body, boundary)
		e.spans, e.closed = spans, closed
		for _, s := range spans {
			p, err := w.parse(e.body[s.start:s.end:s.end], depth+1)
			if err != nil {
				return nil, err
			}
			e.parts = append(e.parts, p)
		}
	case e.typ == "message/rfc822" || e.typ == "message/global":
		if identityEncoding(h.value("Content-Transfer-Encoding")) && len(e.body) > 0 {
			m, err := w.parse(e.body, depth+1)
			if err != nil && !errors.Is(err, errNoHeader) {
				return nil, err
			}
			e.embedded = m
		}
	}
	return e, nil
}

// identityEncoding reports whether a Content-Transfer-Encoding leaves the
// body as it is.
func identityEncoding(cte string) bool {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// span is a byte range [start, end).
type span struct{ start, end int }

// splitMultipart finds the body parts of a multipart body delimited by
// boundary (RFC 2046 §5.1.1). A delimiter is "--boundary" at the start of a
// line, optionally followed by "--" (the close delimiter) and white space;
// the line break before it belongs to the delimiter. The spans exclude the
// delimiters. closed reports whether the close delimiter was found; when it
// was not, the last part runs to the end of body.
func splitMultipart(body []byte, boundary string) (parts []span, closed bool) {
	delim := []byte("--" + boundary)
	start := -1
	for pos := 0; pos < len(body); {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		i += pos
		pos = i + 1
		if i > 0 && body[i-1] != '\n' {
			continue
		}
		j := i + len(delim)
		isClose := bytes.HasPrefix(body[j:], []byte("--"))
		if isClose {
			j += 2
		}
		for j < len(body) && (body[j] == ' ' || body[j] == '\t') {
			j++
		}
		switch {
		case j == len(body):
		case body[j] == '\n':
			j++
		case body[j] == '\r' && j+1 < len(body) && body[j+1] == '\n':
			j += 2
		case body[j] == '\r' && j+1 == len(body):
			j++
		default:
			continue // "--boundary" followed by other text
		}
		if start >= 0 {
			end := i
			if end > start && body[end-1] == '\n' {
				end--
				if end > start && body[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, span{start, end})
		}
		if isClose {
			return parts, true
		}
		start, pos = j, j
	}
	if start >= 0 {
		parts = append(parts, span{start, len(body)})
	}
	return parts, false
}

// filename returns the file name of an entity: the filename parameter of
// its Content-Disposition or else the name parameter of its Content-Type,
// RFC 2231 and RFC 2047 encodings decoded; "" if it has none.
func (e *entity) filename() string {
	if d := e.header.value("Content-Disposition"); d != "" {
		if _, p := disposition(d); p["filename"] != "" {
			return decodeWords(p["filename"])
		}
	}
	return decodeWords(e.params["name"])
}

// decodeBody returns the body of e with its Content-Transfer-Encoding
// removed. Identity encodings return the body itself, not a copy. Base64 is
// decoded tolerantly (white space and stray characters skipped); quoted-
// printable that does not decode is returned as transmitted.
func (e *entity) decodeBody() ([]byte, error) {
	cte := strings.ToLower(strings.TrimSpace(e.header.value("Content-Transfer-Encoding")))
	switch cte {
	case "", "7bit", "8bit", "binary":
		return e.body, nil
	case "base64":
		return decodeBase64(e.body), nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(e.body)))
		if err != nil {
			return e.body, nil
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", truncate(cte, 40))
}

// decodeBase64 decodes base64 text, skipping every byte outside the
// alphabet and stopping at the first padding character, as tolerant mail
// readers do. A trailing group of a single character is dropped.
func decodeBase64(b []byte) []byte {
	enc := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			enc = append(enc, c)
		case c == '=':
			goto done
		}
	}
done:
	if len(enc)%4 == 1 {
		enc = enc[:len(enc)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(enc)))
	n, _ := base64.RawStdEncoding.Decode(out, enc)
	return out[:n]
}

// decodeWords decodes the RFC 2047 encoded words of a header value, in any
// charset go-message knows (ISO-8859-x, windows-125x and the others real
// mail uses). A value that does not decode is returned as it is.
func decodeWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	d, err := dec.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// truncate shortens s for use in an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
