package tsa

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/digitorus/timestamp"
)

// DefaultTimeout bounds one Client request when Client.Timeout is zero. A
// TSA answers in well under a second; thirty seconds rides out a slow
// network without holding up the caller for long.
const DefaultTimeout = 30 * time.Second

// nonceBits is the size of request nonces: 64 random bits, as OpenSSL
// sends, which every TSA accepts and which makes a replayed response
// match by chance once in 2^64.
const nonceBits = 64

// Client is a Stamper that asks a time-stamping authority over HTTP
// (RFC 3161 §3.4). Each request is SHA-256, carries a fresh random 64-bit
// nonce and asks for the TSA certificate (certReq true).
//
// Timestamp checks every answer before returning it: the HTTP status and
// content type, the status granted, the imprint and nonce, the CMS
// signature against the embedded TSA certificate and that certificate's
// RFC 3161 profile, the policy if one was requested, and, when Roots is
// set, the chain. A Client is safe for concurrent use; its fields must not
// change while it is in use.
type Client struct {
	// URL is the TSA's HTTP endpoint.
	URL string

	// HTTPClient sends the requests. If nil, http.DefaultClient.
	HTTPClient *http.Client

	// Timeout bounds each request, on top of any deadline of the context.
	// Zero means DefaultTimeout; negative means no bound but the
	// context's.
	Timeout time.Duration

	// Policy, if set, is requested as reqPolicy, and the token must carry
	// it.
	Policy asn1.ObjectIdentifier

	// Roots, if non-nil, are the trusted roots the TSA certificate must
	// chain to at the token's genTime, as Verify checks. If nil, the chain
	// is not checked here and the caller must call Verify before relying
	// on the token.
	Roots *x509.CertPool

	// Intermediates may complete the chain to Roots besides the
	// certificates the token embeds. It may be nil.
	Intermediates *x509.CertPool
}

// Timestamp asks the TSA for a token over digest, a 32-byte SHA-256 digest,
// and returns the checked DER TimeStampToken. It implements Stamper. Errors
// are prefixed with "tsa: request to URL:"; context cancellation and
// deadlines, the context's or Timeout's, remain visible to errors.Is.
func (c *Client) Timestamp(ctx context.Context, digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	token, err := c.timestamp(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("tsa: request to %s: %w", c.URL, err)
	}
	return token, nil
}

func (c *Client) timestamp(ctx context.Context, digest []byte) ([]byte, error) {
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), nonceBits))
	if err != nil {
		return nil, fmt.Errorf("drawing a nonce: %w", err)
	}
	req := timestamp.Request{
		HashAlgorithm: crypto.SHA256,
		HashedMessage: digest,
		Certificates:  true,
		Nonce:         nonce,
		TSAPolicyOID:  c.Policy,
	}
	query, err := req.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}

	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	body, err := c.post(ctx, query)
	if err != nil {
		return nil, err
	}

	var head timeStampResp
	if rest, err := asn1.Unmarshal(body, &head); err != nil {
		return nil, fmt.Errorf("the response is not a TimeStampResp: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("the response has trailing data after the TimeStampResp")
	}
	if st := timestamp.Status(head.Status.Status); st != timestamp.Granted {
		return nil, fmt.Errorf("the TSA did not grant the request: %s", describeStatus(st, head.Status.StatusString, head.Status.FailInfo))
	}
	resp, err := timestamp.ParseResponse(body)
	if err != nil {
		return nil, fmt.Errorf("the response does not parse or its signature does not verify: %w", err)
	}
	token := resp.RawToken

	var info *Info
	if c.Roots != nil {
		info, err = verify(token, digest, VerifyOptions{Roots: c.Roots, Intermediates: c.Intermediates, Nonce: nonce})
	} else {
		info, _, err = checkToken(token, digest, nonce, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("the token fails verification: %w", err)
	}
	if len(c.Policy) > 0 && !info.Policy.Equal(c.Policy) {
		return nil, fmt.Errorf("the token's policy is %v, not the %v requested", info.Policy, c.Policy)
	}
	return token, nil
}

// describeStatus renders a PKIStatusInfo that is not granted, as in
// "the request is rejected (failure: unrecognized or unsupported Algorithm
// Identifier; text: "SHA-1 not accepted")".
func describeStatus(st timestamp.Status, text []string, failInfo asn1.BitString) string {
	var details []string
	for _, f := range []timestamp.FailureInfo{
		timestamp.BadAlgorithm, timestamp.BadRequest, timestamp.BadDataFormat,
		timestamp.TimeNotAvailable, timestamp.UnacceptedPolicy, timestamp.UnacceptedExtension,
		timestamp.AddInfoNotAvailable, timestamp.SystemFailure,
	} {
		if failInfo.At(int(f)) == 1 {
			details = append(details, "failure: "+f.String())
		}
	}
	if len(text) > 0 {
		details = append(details, fmt.Sprintf("text: %q", strings.Join(text, "; ")))
	}
	if len(details) == 0 {
		return st.String()
	}
	return st.String() + " (" + strings.Join(details, "; ") + ")"
}

// post sends a DER TimeStampReq and returns the body of a 200 response of
// content type application/timestamp-reply, at most MaxTokenSize bytes.
func (c *Client) post(ctx context.Context, query []byte) ([]byte, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(query))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", ContentTypeQuery)
	hreq.Header.Set("Accept", ContentTypeReply)
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	hresp, err := hc.Do(hreq)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is already in our prefix
		}
		return nil, err
	}
	defer hresp.Body.Close()

	if hresp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(hresp.Body, 256))
		msg := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?"))
		if msg != "" {
			return nil, fmt.Errorf("HTTP %s: %q", hresp.Status, msg)
		}
		return nil, fmt.Errorf("HTTP %s", hresp.Status)
	}
	ct := hresp.Header.Get("Content-Type")
	// Some TSAs still send the pre-RFC name.
	if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != ContentTypeReply && mt != "application/timestamp-response") {
		return nil, fmt.Errorf("the response has content type %q, not %s", ct, ContentTypeReply)
	}
	body, err := io.ReadAll(io.LimitReader(hresp.Body, MaxTokenSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if len(body) > MaxTokenSize {
		return nil, fmt.Errorf("the response is larger than %d bytes", MaxTokenSize)
	}
	return body, nil
}
