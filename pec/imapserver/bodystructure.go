package imapserver

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits on the MIME structure the server walks. Every level of nesting
// costs another pass over the bytes below it, so a crafted message nesting
// thousands of levels would cost quadratic time (and deep recursion).
const (
	// maxDepth is the deepest part described or extracted; real messages,
	// PEC buste included, nest fewer than ten levels.
	maxDepth = 32
	// maxChildren is the most parts of one multipart described.
	maxChildren = 1000
)

// bodyStructure returns the BODYSTRUCTURE of a message, as go-imap's
// ExtractBodyStructure does, but describing parts deeper than maxDepth as
// opaque application/octet-stream and at most maxChildren parts per
// multipart.
func bodyStructure(msg []byte) imap.BodyStructure {
	br := bufio.NewReader(bytes.NewReader(msg))
	h, _ := textproto.ReadHeader(br)
	return structure(h, br, 0)
}

func structure(raw textproto.Header, r io.Reader, depth int) imap.BodyStructure {
	header := gomessage.Header{Header: raw}
	mediaType, params, _ := header.ContentType()
	if mediaType == "" {
		mediaType, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	primary, sub, _ := strings.Cut(mediaType, "/")
	if primary == "multipart" && depth < maxDepth {
		bs := &imap.BodyStructureMultiPart{Subtype: sub}
		mr := textproto.NewMultipartReader(r, params["boundary"])
		for len(bs.Children) < maxChildren {
			part, _ := mr.NextPart()
			if part == nil {
				break
			}
			bs.Children = append(bs.Children, structure(part.Header, part, depth+1))
		}
		if len(bs.Children) == 0 {
			// IMAP needs at least one part.
			bs.Children = append(bs.Children, &imap.BodyStructureSinglePart{
				Type: "text", Subtype: "plain", Encoding: "7bit",
				Text: &imap.BodyStructureText{}, Extended: &imap.BodyStructureSinglePartExt{},
			})
		}
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      params,
			Disposition: disposition(header),
			Language:    language(header),
			Location:    header.Get("Content-Location"),
		}
		return bs
	}
	if primary == "multipart" {
		primary, sub, params = "application", "octet-stream", nil
	}
	body, _ := io.ReadAll(r)
	bs := &imap.BodyStructureSinglePart{
		Type:        primary,
		Subtype:     sub,
		Params:      params,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    header.Get("Content-Transfer-Encoding"),
		Size:        uint32(min(len(body), int(^uint32(0)))),
	}
	if mediaType == "message/rfc822" || mediaType == "message/global" {
		br := bufio.NewReader(bytes.NewReader(body))
		child, _ := textproto.ReadHeader(br)
		var inner imap.BodyStructure
		if depth < maxDepth {
			inner = structure(child, br, depth+1)
		} else {
			inner = &imap.BodyStructureSinglePart{
				Type: "application", Subtype: "octet-stream",
				Extended: &imap.BodyStructureSinglePartExt{},
			}
		}
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      goimapserver.ExtractEnvelope(child),
			BodyStructure: inner,
			NumLines:      int64(bytes.Count(body, []byte("\n"))),
		}
	}
	if primary == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: int64(bytes.Count(body, []byte("\n")))}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: disposition(header),
		Language:    language(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

func disposition(h gomessage.Header) *imap.BodyStructureDisposition {
	disp, params, _ := h.ContentDisposition()
	if disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func language(h gomessage.Header) []string {
	v := h.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i := range l {
		l[i] = strings.TrimSpace(l[i])
	}
	return l
}
