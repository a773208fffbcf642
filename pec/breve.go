package pec

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"mime"
	"strings"
)

// HashSuffix is the extension of the files that replace the attachments of
// the original in a ricevuta di avvenuta consegna breve.
const HashSuffix = ".hash"

// unnamedMessage names an attached message that has no file name.
const unnamedMessage = "messaggio.eml"

// Breve returns the original message msg as a ricevuta di avvenuta consegna
// breve carries it (RFC 6109 §3.3.2.2): every part that has a file name
// (the filename parameter of its Content-Disposition or the name parameter
// of its Content-Type) and every attached message (message/rfc822) is
// replaced by a text/plain part named "<name>.hash" whose content is the
// SHA-1 of the part, 40 lower-case hexadecimal digits. An attached message
// without a name is named "messaggio.eml".
//
// The hash is computed, as the rules ask, over the part's body as
// transmitted: its transfer encoding kept (the base64 text of a base64
// part), lines ending in CRLF, without the line break that precedes the
// next boundary. Everything else (the header of the message, the parts
// without a name, preambles, epilogues and boundaries) is kept byte for
// byte.
//
// S/MIME originals: in a multipart/signed entity the signature part is kept
// (the sender's signature then no longer verifies, as the rules accept); an
// application/pkcs7-mime entity is kept whole, so its breve is its completa.
func Breve(msg []byte) ([]byte, error) {
	w := &walker{maxDepth: DefaultMaxDepth}
	root, err := w.parse(msg, 1)
	if err != nil {
		return nil, fmt.Errorf("%w (in the original of a ricevuta breve)", limitError(err, DefaultMaxDepth))
	}
	var b bytes.Buffer
	b.Grow(len(msg))
	if !replaceable(root) {
		writeBreve(&b, root)
		return b.Bytes(), nil
	}
	// The whole message is one attachment: keep the fields that are not
	// about its content and replace the rest.
	skip := false
	for i := 0; i < len(root.raw)-len(root.body); {
		l, next := line(root.raw, i)
		if len(l) == 0 {
			break
		}
		if l[0] != ' ' && l[0] != '\t' {
			name, _, _ := bytes.Cut(l, []byte(":"))
			skip = strings.HasPrefix(strings.ToLower(strings.TrimSpace(string(name))), "content-")
		}
		if !skip {
			b.Write(root.raw[i:next])
			if next == len(l)+i { // a last line without line break
				b.WriteString("\r\n")
			}
		}
		i = next
	}
	writeHashPart(&b, root)
	return b.Bytes(), nil
}

// replaceable reports whether a breve replaces e by its hash.
func replaceable(e *entity) bool {
	switch {
	case strings.HasPrefix(e.typ, "multipart/"):
		return false
	case e.typ == "application/pkcs7-mime" || e.typ == "application/x-pkcs7-mime":
		return false
	case e.typ == "message/rfc822" || e.typ == "message/global":
		return true
	}
	return e.filename() != ""
}

// writeBreve writes e with its named parts replaced by their hashes.
func writeBreve(b *bytes.Buffer, e *entity) {
	if len(e.parts) == 0 {
		b.Write(e.raw)
		return
	}
	b.Write(e.raw[:len(e.raw)-len(e.body)]) // header and empty line
	prev := 0
	for i, p := range e.parts {
		s := e.spans[i]
		b.Write(e.body[prev:s.start])
		switch {
		case e.typ == "multipart/signed" && i > 0:
			b.Write(p.raw) // the signature
		case replaceable(p):
			writeHashPart(b, p)
		default:
			writeBreve(b, p)
		}
		prev = s.end
	}
	b.Write(e.body[prev:])
}

// writeHashPart writes the part that replaces e: its header and the SHA-1
// of its body as transmitted, in canonical CRLF form.
func writeHashPart(b *bytes.Buffer, e *entity) {
	name := oneLine(e.filename())
	if name == "" {
		name = unnamedMessage
	}
	name += HashSuffix
	disp := "attachment"
	if d, _ := disposition(e.header.value("Content-Disposition")); d == "inline" {
		disp = "inline"
	}
	h := sha1.New()
	canonicalWrite(h, e.body)
	b.WriteString("Content-Type: " + mime.FormatMediaType("text/plain", map[string]string{"charset": "us-ascii", "name": name}) + "\r\n")
	b.WriteString("Content-Disposition: " + mime.FormatMediaType(disp, map[string]string{"filename": name}) + "\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
	b.WriteString(hex.EncodeToString(h.Sum(nil)))
}

// canonicalWrite writes b to w with every bare LF turned into CRLF.
func canonicalWrite(w interface{ Write([]byte) (int, error) }, b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.Write(b)
			return
		}
		if i > 0 && b[i-1] == '\r' {
			w.Write(b[:i+1])
		} else {
			w.Write(b[:i])
			w.Write([]byte("\r\n"))
		}
		b = b[i+1:]
	}
}

// isHashPart reports whether e looks like a part a breve put in place of
// an attachment: text/plain, named "*.hash", holding 40 hexadecimal digits.
func isHashPart(e *entity) bool {
	if e.typ != "text/plain" || !strings.HasSuffix(strings.ToLower(e.filename()), HashSuffix) {
		return false
	}
	body, err := e.decodeBody()
	if err != nil {
		return false
	}
	body = bytes.TrimSpace(body)
	if len(body) != 40 {
		return false
	}
	_, err = hex.Decode(make([]byte, 20), body)
	return err == nil
}
