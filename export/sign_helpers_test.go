package export_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"io"
	"mime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/pec/smime"
	"github.com/custode/custode/tsa"
)

// signKey is a key and certificate a test signs with: the gestore's, or
// an attacker's.
type signKey struct {
	name  string
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate
}

// tlv encodes one DER element.
func tlv(tag byte, content ...[]byte) []byte {
	body := bytes.Join(content, nil)
	n := len(body)
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, body...)
}

func mustDER(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSigTST        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
)

// cmsSign makes a detached CMS SignedData over data by k, with the
// signingTime the signer chooses to claim and, when stamp is not nil, a
// signature timestamp (CAdES-T) that stamp returns for SHA-256 of the
// signature value.
func cmsSign(t *testing.T, data []byte, k signKey, signingTime time.Time, stamp func(digest []byte) []byte) []byte {
	t.Helper()
	digest := sha256.Sum256(data)
	attr := func(oid asn1.ObjectIdentifier, value []byte) []byte {
		return tlv(0x30, mustDER(t, oid), tlv(0x31, value))
	}
	attrs := [][]byte{
		attr(oidContentType, mustDER(t, oidData)),
		attr(oidSigningTime, mustDER(t, signingTime.UTC())),
		attr(oidMessageDigest, mustDER(t, digest[:])),
	}
	slices.SortFunc(attrs, bytes.Compare)
	signedAttrs := tlv(0x31, attrs...)
	h := sha256.Sum256(signedAttrs)
	sig, err := k.key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	algo := func(oid asn1.ObjectIdentifier) []byte { return tlv(0x30, mustDER(t, oid), asn1.NullBytes) }
	si := [][]byte{
		mustDER(t, 1),
		tlv(0x30, k.cert.RawIssuer, mustDER(t, k.cert.SerialNumber)),
		algo(oidSHA256),
		tlv(0xa0, attrs...),
		algo(oidRSA),
		mustDER(t, sig),
	}
	if stamp != nil {
		d := sha256.Sum256(sig)
		si = append(si, tlv(0xa1, attr(oidSigTST, stamp(d[:]))))
	}
	var certs [][]byte
	for _, c := range append([]*x509.Certificate{k.cert}, k.chain...) {
		certs = append(certs, c.Raw)
	}
	sd := tlv(0x30,
		mustDER(t, 1),
		tlv(0x31, algo(oidSHA256)),
		tlv(0x30, mustDER(t, oidData)),
		tlv(0xa0, certs...),
		tlv(0x31, tlv(0x30, si...)),
	)
	return tlv(0x30, mustDER(t, oidSignedData), tlv(0xa0, sd))
}

// stamper returns a function that timestamps digests with the TSA a.
func stamper(t *testing.T, a *tsa.Authority) func([]byte) []byte {
	return func(d []byte) []byte {
		tok, err := a.Timestamp(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// resignSMIME signs the signed entity of the S/MIME message msg again, by
// k, after edit changes it (nil keeps it).
func resignSMIME(t *testing.T, msg []byte, anchors []*x509.Certificate, k signKey, signingTime time.Time, edit func([]byte) []byte) []byte {
	return resignSMIMEStamped(t, msg, anchors, k, signingTime, edit, nil)
}

// resignSMIMEStamped is resignSMIME with a signature timestamp from stamp.
func resignSMIMEStamped(t *testing.T, msg []byte, anchors []*x509.Certificate, k signKey, signingTime time.Time, edit func([]byte) []byte, stamp func([]byte) []byte) []byte {
	t.Helper()
	res, _ := smime.Verify(msg, smime.VerifyOptions{Roots: anchors, UseSigningTime: true})
	if res == nil {
		t.Fatal("the message to sign again does not parse")
	}
	entity := res.Signed
	if edit != nil {
		entity = edit(bytes.Clone(entity))
	}
	header := string(res.Header)
	i := strings.Index(strings.ToLower(header), "\ncontent-type:")
	ctLine := header[i+1:]
	if j := strings.Index(ctLine, "\r\n"); j >= 0 {
		for j+2 < len(ctLine) && (ctLine[j+2] == ' ' || ctLine[j+2] == '\t') {
			k := strings.Index(ctLine[j+2:], "\r\n")
			if k < 0 {
				j = len(ctLine)
				break
			}
			j += 2 + k
		}
		ctLine = ctLine[:min(j, len(ctLine))]
	}
	_, params, err := mime.ParseMediaType(strings.TrimSpace(strings.SplitN(strings.ReplaceAll(ctLine, "\r\n", ""), ":", 2)[1]))
	if err != nil {
		t.Fatalf("content type %q: %v", ctLine, err)
	}
	b := params["boundary"]
	p7s := cmsSign(t, entity, k, signingTime, stamp)
	enc := base64.StdEncoding.EncodeToString(p7s)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	var out bytes.Buffer
	out.WriteString(strings.TrimRight(header, "\r\n"))
	out.WriteString("\r\n\r\n--" + b + "\r\n")
	out.Write(entity)
	out.WriteString("\r\n--" + b + "\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7s\r\n\r\n")
	out.WriteString(strings.Join(lines, "\r\n"))
	out.WriteString("\r\n--" + b + "--\r\n")
	return out.Bytes()
}

// unzipFiles reads a ZIP into a map.
func unzipFiles(t *testing.T, z []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		files[zf.Name] = b.Bytes()
	}
	return files
}

// zipMap writes files as a ZIP, in name order.
func zipMap(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := newTestZipWriter(&out)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// newTestZipWriter is a zip.Writer that deflates at flate.BestSpeed: the
// tests re-zip bundles by the hundred, and the level is not what they
// check (the reader is the same for every level).
func newTestZipWriter(w io.Writer) *zip.Writer {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestSpeed)
	})
	return zw
}

// relist writes manifest.sha256 again for files, as the exporter does.
func relist(files map[string][]byte) {
	var names []string
	for n := range files {
		if n != "manifest.sha256" && n != "manifest.p7s" && !isPiece(n, files) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var m strings.Builder
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		m.WriteString(hex.EncodeToString(sum[:]) + "  " + n + "\n")
	}
	files["manifest.sha256"] = []byte(m.String())
}

// isPiece reports whether n is a piece of a file cut in parts.
func isPiece(n string, files map[string][]byte) bool {
	i := strings.LastIndexByte(n, '.')
	if i < 0 || len(n)-i != 4 {
		return false
	}
	for _, c := range n[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	_, whole := files[n[:i]]
	return !whole
}
