package smime

import (
	"bytes"
	"fmt"
	"mime"
	"strings"
)

// maxHeaderFields bounds the number of fields in one header block. Real
// messages carry a few dozen; the bound keeps the memory spent on a hostile
// header block proportional to a small constant.
const maxHeaderFields = 10000

// field is one header field: its name and the raw bytes of its value,
// continuation lines included.
type field struct {
	name  string
	raw   []byte
	start int // offset of raw in the parsed block
}

// header is a parsed header block, fields in order.
type header []field

// get returns the unfolded value of the first field named name (compared
// case-insensitively) and whether it was present.
func (h header) get(name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return unfold(f.raw), true
		}
	}
	return "", false
}

// count returns how many fields are named name.
func (h header) count(name string) int {
	n := 0
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}

// unfold removes the line breaks of a folded field value (RFC 5322 §2.2.3)
// and trims surrounding white space.
func unfold(raw []byte) string {
	var b strings.Builder
	b.Grow(len(raw))
	for _, c := range raw {
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

// nextLine returns the line of b starting at i without its line terminator
// (LF or CRLF), and the index of the next line.
func nextLine(b []byte, i int) (line []byte, next int) {
	j := bytes.IndexByte(b[i:], '\n')
	if j < 0 {
		return b[i:], len(b)
	}
	line = b[i : i+j]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, i + j + 1
}

// parseHeader parses the header block at the start of the MIME entity b and
// returns it with the offset where the body starts. An entity with no empty
// line has no body: body is len(b). LF and CRLF line endings are accepted.
func parseHeader(b []byte) (h header, body int, err error) {
	i := 0
	for i < len(b) {
		line, next := nextLine(b, i)
		if len(line) == 0 {
			return h, next, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(h) == 0 {
				return nil, 0, fmt.Errorf("%w: header starts with a continuation line", ErrMalformed)
			}
			last := &h[len(h)-1]
			// Extend the value over the line break and the
			// continuation line.
			last.raw = b[last.start : i+len(line)]
			i = next
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0, fmt.Errorf("%w: header line %q has no field name", ErrMalformed, truncate(line, 40))
		}
		name := bytes.TrimRight(line[:colon], " \t")
		for _, c := range name {
			if c <= ' ' || c > '~' {
				return nil, 0, fmt.Errorf("%w: invalid header field name %q", ErrMalformed, truncate(name, 40))
			}
		}
		if len(h) == maxHeaderFields {
			return nil, 0, fmt.Errorf("%w: more than %d header fields", ErrMalformed, maxHeaderFields)
		}
		vstart := i + colon + 1
		h = append(h, field{name: string(name), raw: b[vstart : i+len(line)], start: vstart})
		i = next
	}
	return h, len(b), nil
}

// truncate shortens b for use in an error message.
func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// mediaType is a parsed Content-Type value.
type mediaType struct {
	typ    string // lower case, "text/plain" when the field is absent
	params map[string]string
}

// parseContentType parses the Content-Type field of h. It is lenient: a
// value that mime.ParseMediaType refuses (an unquoted boundary holding '=',
// for example) is parsed again by a simpler rule, as mail readers do.
func parseContentType(h header) (mediaType, error) {
	v, ok := h.get("Content-Type")
	if !ok || v == "" {
		return mediaType{typ: "text/plain", params: map[string]string{}}, nil
	}
	typ, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mediaType{typ: typ, params: params}, nil
	}
	typ, params = parseMediaTypeLenient(v)
	if !strings.Contains(typ, "/") {
		return mediaType{}, fmt.Errorf("%w: Content-Type %q: %v", ErrMalformed, truncate([]byte(v), 80), err)
	}
	return mediaType{typ: typ, params: params}, nil
}

// parseMediaTypeLenient splits a Content-Type value at semicolons outside
// quoted strings and reads each parameter as name=value, where value is a
// quoted string or everything up to the next semicolon.
func parseMediaTypeLenient(v string) (string, map[string]string) {
	params := map[string]string{}
	var parts []string
	inQuote, start := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ';' && !inQuote:
			parts = append(parts, v[start:i])
			start = i + 1
		}
	}
	parts = append(parts, v[start:])
	typ := strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			var b strings.Builder
			for i := 1; i < len(value)-1; i++ {
				if value[i] == '\\' && i+1 < len(value)-1 {
					i++
				}
				b.WriteByte(value[i])
			}
			value = b.String()
		}
		if _, dup := params[name]; name != "" && !dup {
			params[name] = value
		}
	}
	return typ, params
}

// forEachPart calls fn with the bytes of each body part of the multipart body
// delimited by boundary (RFC 2046 §5.1.1). The line break before a delimiter
// line belongs to the delimiter, not to the part. Delimiter lines may carry
// trailing white space. closed reports whether the close delimiter was
// found; if it was not, the last part runs to the end of body. Iteration
// stops at the first error fn returns.
func forEachPart(body []byte, boundary string, fn func(part []byte) error) (closed bool, err error) {
	delim := []byte("--" + boundary)
	partStart := -1
	pos := 0
	for pos < len(body) {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		i += pos
		if i > 0 && body[i-1] != '\n' {
			pos = i + 1
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
		var lineEnd int
		switch {
		case j == len(body):
			lineEnd = j
		case body[j] == '\n':
			lineEnd = j + 1
		case body[j] == '\r' && (j+1 == len(body) || body[j+1] == '\n'):
			lineEnd = min(j+2, len(body))
		default:
			// "--boundary" followed by other text is not a delimiter.
			pos = i + 1
			continue
		}
		if partStart >= 0 {
			end := i
			if end > partStart && body[end-1] == '\n' {
				end--
				if end > partStart && body[end-1] == '\r' {
					end--
				}
			}
			if err := fn(body[partStart:end]); err != nil {
				return false, err
			}
		}
		if isClose {
			return true, nil
		}
		partStart, pos = lineEnd, lineEnd
	}
	if partStart >= 0 {
		if err := fn(body[partStart:]); err != nil {
			return false, err
		}
	}
	return false, nil
}

// checkDepth walks the MIME entity b, which sits at nesting level depth (1
// for a whole message), into multipart parts and message/rfc822 bodies, and
// fails with ErrTooDeep if any entity lies deeper than maxDepth. It is
// lenient about everything else: a part whose structure cannot be parsed is
// treated as a leaf, because the signed content of a PEC message (a user's
// original message, for example) need not be well-formed for the gestore's
// signature over it to be checked.
func checkDepth(b []byte, depth, maxDepth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: MIME entities nested deeper than %d levels", ErrTooDeep, maxDepth)
	}
	h, body, err := parseHeader(b)
	if err != nil {
		return nil
	}
	mt, err := parseContentType(h)
	if err != nil {
		return nil
	}
	switch {
	case strings.HasPrefix(mt.typ, "multipart/"):
		boundary := mt.params["boundary"]
		if boundary == "" {
			return nil
		}
		_, err := forEachPart(b[body:], boundary, func(part []byte) error {
			return checkDepth(part, depth+1, maxDepth)
		})
		return err
	case mt.typ == "message/rfc822" || mt.typ == "message/global":
		cte, _ := h.get("Content-Transfer-Encoding")
		switch strings.ToLower(cte) {
		case "", "7bit", "8bit", "binary":
			return checkDepth(b[body:], depth+1, maxDepth)
		}
	}
	return nil
}

// canonicalize returns b with every bare LF turned into CRLF, the canonical
// form that S/MIME signs (RFC 5751 §3.1.1). It returns b itself when b is
// already canonical.
func canonicalize(b []byte) []byte {
	bare := 0
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare++
		}
	}
	if bare == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+bare)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
