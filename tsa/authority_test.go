package tsa

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"
)

// postQuery sends der to a's ServeHTTP as an RFC 3161 HTTP request.
func postQuery(a *Authority, der []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(der))
	r.Header.Set("Content-Type", ContentTypeQuery)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, r)
	return rec
}

// rejection decodes a TimeStampResp and returns its status and failure info.
func rejection(t *testing.T, body []byte) (int, asn1.BitString) {
	t.Helper()
	var r timeStampResp
	if _, err := asn1.Unmarshal(body, &r); err != nil {
		t.Fatalf("response is not a TimeStampResp: %v", err)
	}
	return r.Status.Status, r.Status.FailInfo
}

// oidSHA1 is refused everywhere; only the tests need to name it.
var oidSHA1 = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}

// rawRequest is a TimeStampReq with every field under the test's control.
type rawRequest struct {
	Version        int
	MessageImprint messageImprint
	ReqPolicy      asn1.ObjectIdentifier `asn1:"optional"`
	Nonce          *big.Int              `asn1:"optional"`
	CertReq        bool                  `asn1:"optional,default:false"`
	Extensions     []pkix.Extension      `asn1:"tag:0,optional"`
}

func marshalRequest(t *testing.T, alg asn1.ObjectIdentifier, hashed []byte, edit func(*rawRequest)) []byte {
	t.Helper()
	r := rawRequest{
		Version: 1,
		MessageImprint: messageImprint{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: alg, Parameters: asn1.NullRawValue},
			HashedMessage: hashed,
		},
		Nonce:   big.NewInt(99),
		CertReq: true,
	}
	if edit != nil {
		edit(&r)
	}
	der, err := asn1.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestServeHTTP(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	digest := sum("richiesta")
	valid := marshalRequest(t, oidSHA256, digest, nil)
	sha1Sum := sha1.Sum([]byte("richiesta"))
	sha512Sum := sha512.Sum512([]byte("richiesta"))
	md5OID := asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}

	type want struct {
		httpStatus int
		granted    bool
		failure    timestamp.FailureInfo
	}
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		want        want
	}{
		{"granted", "POST", ContentTypeQuery, valid, want{httpStatus: 200, granted: true}},
		{"granted SHA-512", "POST", ContentTypeQuery, marshalRequest(t, oidSHA512, sha512Sum[:], nil), want{httpStatus: 200, granted: true}},
		{"GET", "GET", "", nil, want{httpStatus: 405}},
		{"PUT", "PUT", ContentTypeQuery, valid, want{httpStatus: 405}},
		{"wrong content type", "POST", "application/octet-stream", valid, want{httpStatus: 415}},
		{"no content type", "POST", "", valid, want{httpStatus: 415}},
		{"oversized", "POST", ContentTypeQuery, make([]byte, MaxRequestSize+1), want{httpStatus: 413}},
		{"garbage", "POST", ContentTypeQuery, []byte("hello"), want{httpStatus: 200, failure: timestamp.BadDataFormat}},
		{"empty", "POST", ContentTypeQuery, nil, want{httpStatus: 200, failure: timestamp.BadDataFormat}},
		{"SHA-1", "POST", ContentTypeQuery, marshalRequest(t, oidSHA1, sha1Sum[:], nil), want{httpStatus: 200, failure: timestamp.BadAlgorithm}},
		{"MD5", "POST", ContentTypeQuery, marshalRequest(t, md5OID, make([]byte, 16), nil), want{httpStatus: 200, failure: timestamp.BadAlgorithm}},
		{"imprint of wrong length", "POST", ContentTypeQuery, marshalRequest(t, oidSHA256, digest[:20], nil), want{httpStatus: 200, failure: timestamp.BadDataFormat}},
		{"other policy", "POST", ContentTypeQuery, marshalRequest(t, oidSHA256, digest, func(r *rawRequest) {
			r.ReqPolicy = asn1.ObjectIdentifier{1, 2, 3, 4}
		}), want{httpStatus: 200, failure: timestamp.UnacceptedPolicy}},
		{"own policy", "POST", ContentTypeQuery, marshalRequest(t, oidSHA256, digest, func(r *rawRequest) {
			r.ReqPolicy = testPolicy
		}), want{httpStatus: 200, granted: true}},
		{"extension", "POST", ContentTypeQuery, marshalRequest(t, oidSHA256, digest, func(r *rawRequest) {
			r.Extensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}}}
		}), want{httpStatus: 200, failure: timestamp.UnacceptedExtension}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/", bytes.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, r)
			if rec.Code != tt.want.httpStatus {
				t.Fatalf("HTTP %d, want %d (%s)", rec.Code, tt.want.httpStatus, rec.Body)
			}
			if rec.Code != 200 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != ContentTypeReply {
				t.Errorf("Content-Type = %q, want %q", ct, ContentTypeReply)
			}
			status, fail := rejection(t, rec.Body.Bytes())
			if tt.want.granted {
				if status != 0 {
					t.Fatalf("status %d, want granted", status)
				}
				ts, err := timestamp.ParseResponse(rec.Body.Bytes())
				if err != nil {
					t.Fatalf("ParseResponse: %v", err)
				}
				if ts.Nonce == nil || ts.Nonce.Int64() != 99 {
					t.Errorf("nonce = %v, want 99", ts.Nonce)
				}
				if len(ts.Certificates) != 2 {
					t.Errorf("%d certificates embedded, want TSA and root", len(ts.Certificates))
				}
				return
			}
			if status != int(timestamp.Rejection) {
				t.Fatalf("status %d, want rejection", status)
			}
			if fail.At(int(tt.want.failure)) != 1 {
				t.Errorf("failure info %x, want bit %d (%v)", fail.Bytes, tt.want.failure, tt.want.failure)
			}
		})
	}
}

func TestServeHTTPCertReq(t *testing.T) {
	p := newPKI(t, pkiOptions{intermediate: true})
	a := p.authority(t, nil)
	for _, certs := range []bool{false, true} {
		tok := issueHTTP(t, a, sum("x"), nil, certs)
		p7, err := pkcs7.Parse(tok)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if certs {
			want = 3 // TSA, intermediate, root
		}
		if len(p7.Certificates) != want {
			t.Errorf("certReq %v: %d certificates embedded, want %d", certs, len(p7.Certificates), want)
		}
	}
}

func TestNewAuthorityRejects(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	weak := newPKI(t, pkiOptions{nonCriticalEKU: true})
	other := newPKI(t, pkiOptions{})
	caAsTSA := p.root
	ed := newPKI(t, pkiOptions{key: "ed25519"})
	tests := []struct {
		name string
		cfg  AuthorityConfig
		want string
	}{
		{"no certificate", AuthorityConfig{Signer: p.tsaKey, Policy: testPolicy}, "no certificate"},
		{"no signer", AuthorityConfig{Certificate: p.tsa, Policy: testPolicy}, "no signer"},
		{"no policy", AuthorityConfig{Certificate: p.tsa, Signer: p.tsaKey}, "no policy"},
		{"non-critical EKU", AuthorityConfig{Certificate: weak.tsa, Signer: weak.tsaKey, Policy: testPolicy}, "not marked critical"},
		{"CA certificate", AuthorityConfig{Certificate: caAsTSA, Signer: p.rootKey, Policy: testPolicy}, "no extended key usage"},
		{"key of another certificate", AuthorityConfig{Certificate: p.tsa, Signer: other.tsaKey, Policy: testPolicy}, "not the certificate's"},
		{"chain of another CA", AuthorityConfig{Certificate: p.tsa, Signer: p.tsaKey, Chain: other.chain, Policy: testPolicy}, "did not issue"},
		{"Ed25519 key", AuthorityConfig{Certificate: ed.tsa, Signer: ed.tsaKey, Policy: testPolicy}, "keys are not supported"},
		{"negative accuracy", AuthorityConfig{Certificate: p.tsa, Signer: p.tsaKey, Policy: testPolicy, Accuracy: -time.Second}, "negative accuracy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAuthority(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewAuthority error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestAuthorityClockOutsideValidity(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, func() time.Time { return p.notAfter.Add(time.Minute) })
	if _, err := a.Timestamp(context.Background(), sum("x")); err == nil || !strings.Contains(err.Error(), "not valid at") {
		t.Errorf("Timestamp error = %v, want a validity error", err)
	}
	rec := postQuery(a, marshalRequest(t, oidSHA256, sum("x"), nil))
	status, fail := rejection(t, rec.Body.Bytes())
	if status != int(timestamp.Rejection) || fail.At(int(timestamp.SystemFailure)) != 1 {
		t.Errorf("status %d failure %x, want rejection with systemFailure", status, fail.Bytes)
	}
}

func TestAuthorityCanceledContext(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.authority(t, nil).Timestamp(ctx, sum("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Timestamp error = %v, want context.Canceled", err)
	}
}

func TestAuthoritySerialsUnique(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	seen := make(map[string]bool)
	for i := range 50 {
		tok := stamp(t, a, sum("x"))
		info, err := Verify(tok, sum("x"), VerifyOptions{Roots: p.roots})
		if err != nil {
			t.Fatal(err)
		}
		s := info.SerialNumber.String()
		if seen[s] {
			t.Fatalf("token %d repeats serial %s", i, s)
		}
		seen[s] = true
	}
}

func TestServe(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	a := p.authority(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()

	c := &Client{URL: "http://" + ln.Addr().String() + "/", Roots: p.roots, Timeout: 10 * time.Second}
	tok := stamp(t, c, sum("via rete"))
	if _, err := Verify(tok, sum("via rete"), VerifyOptions{Roots: p.roots}); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was canceled")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts connections after Serve returned")
	}
}

func TestAuthorityCertificate(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	if got := p.authority(t, nil).Certificate(); !got.Equal(p.tsa) {
		t.Errorf("Certificate() = %q, want the TSA certificate", got.Subject)
	}
}

func TestTimeStampingEKUEncoding(t *testing.T) {
	want, err := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamping})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(timeStampingEKU(), want) {
		t.Errorf("timeStampingEKU() = %x, want %x", timeStampingEKU(), want)
	}
}

// TestAuthorityNonceAndPrecision checks that tokens carry the nonce asked
// for (in-process: one the Authority draws and checks; over HTTP: the
// request's) and genTime to the nanosecond of the clock, not truncated to
// the second.
func TestAuthorityNonceAndPrecision(t *testing.T) {
	p := newPKI(t, pkiOptions{})
	base := time.Now().Truncate(time.Second)
	digest := sum("precisione")
	tests := []struct {
		name  string
		frac  time.Duration
		nonce *big.Int // for the HTTP request; nil means in-process Timestamp
	}{
		{"in-process, nanoseconds", 123456789 * time.Nanosecond, nil},
		{"in-process, milliseconds", 250 * time.Millisecond, nil},
		{"HTTP, nanoseconds", 987654321 * time.Nanosecond, big.NewInt(0x1234abcd)},
		{"HTTP, large nonce", 1 * time.Microsecond, new(big.Int).Lsh(big.NewInt(0xffff), 60)},
		{"HTTP, whole second", 0, big.NewInt(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := base.Add(tt.frac)
			a := p.authority(t, func() time.Time { return at })
			var tok []byte
			if tt.nonce == nil {
				tok = stamp(t, a, digest)
			} else {
				tok = issueHTTP(t, a, digest, tt.nonce, true)
			}
			info, err := Verify(tok, digest, VerifyOptions{Roots: p.roots, Nonce: tt.nonce})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !info.GenTime.Equal(at) {
				t.Errorf("genTime %s, want the clock's %s", info.GenTime.Format(time.RFC3339Nano), at.UTC().Format(time.RFC3339Nano))
			}
			if info.Nonce == nil {
				t.Fatal("the token has no nonce")
			}
			if tt.nonce != nil && info.Nonce.Cmp(tt.nonce) != 0 {
				t.Errorf("nonce %s, want the request's %s", info.Nonce, tt.nonce)
			}
			if info.Accuracy != DefaultAccuracy {
				t.Errorf("accuracy %s, want %s", info.Accuracy, DefaultAccuracy)
			}
		})
	}
}

func TestAccuracyOf(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want accuracy
	}{
		{time.Second, accuracy{Seconds: 1}},
		{1500 * time.Millisecond, accuracy{Seconds: 1, Millis: 500}},
		{2*time.Millisecond + 3*time.Microsecond, accuracy{Millis: 2, Micros: 3}},
		{1, accuracy{Micros: 1}},
	}
	for _, tt := range tests {
		got := accuracyOf(tt.in)
		if got != tt.want {
			t.Errorf("accuracyOf(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
		if d, err := got.duration(); err != nil || d < tt.in {
			t.Errorf("accuracyOf(%s) reads back as %s, %v", tt.in, d, err)
		}
	}
}

func TestGeneralizedTime(t *testing.T) {
	base := time.Date(2026, 12, 3, 20, 1, 2, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		frac time.Duration
		want string
	}{
		{0, "20261203190102Z"},
		{500 * time.Millisecond, "20261203190102.5Z"},
		{123456789, "20261203190102.123456789Z"},
		{1000, "20261203190102.000001Z"},
	}
	for _, tt := range tests {
		if got := string(generalizedTime(base.Add(tt.frac)).Bytes); got != tt.want {
			t.Errorf("generalizedTime(+%s) = %s, want %s", tt.frac, got, tt.want)
		}
	}
}
