package tsa

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/custode/custode/pec/smime"
	"github.com/digitorus/pkcs7"
	"github.com/digitorus/timestamp"

	"github.com/custode/custode/pec/connlimit"
)

// Defaults of an Authority and its HTTP server.
const (
	// DefaultAccuracy is the accuracy an Authority claims when
	// AuthorityConfig.Accuracy is zero: one second, the distance from UTC
	// the host clock is trusted to keep. genTime itself is written to the
	// nanosecond, as the clock gives it.
	DefaultAccuracy = time.Second

	// MaxRequestSize is the largest TimeStampReq body ServeHTTP reads. A
	// request is about a hundred bytes; 16 KiB leaves room for extensions
	// while refusing bulk uploads.
	MaxRequestSize = 16 << 10

	// DefaultShutdownTimeout is how long Serve waits, once its context is
	// done, for requests in flight. Signing takes milliseconds.
	DefaultShutdownTimeout = 5 * time.Second

	// serverTimeout bounds reading a request and writing a response, so
	// that slow or stalled clients cannot hold connections open.
	serverTimeout = 30 * time.Second
)

// AuthorityConfig is what an Authority signs with.
type AuthorityConfig struct {
	// Certificate is the TSA certificate. It MUST have the profile of
	// RFC 3161 §2.3 (see CertificateTemplate): a critical extended key
	// usage whose only purpose is timeStamping.
	Certificate *x509.Certificate

	// Signer is the private key of Certificate, ECDSA or RSA.
	Signer crypto.Signer

	// Chain holds the issuers of Certificate, its issuer first, up to the
	// root or short of it. Tokens embed Certificate and Chain when the
	// request asks for certificates. It may be empty.
	Chain []*x509.Certificate

	// Policy is the TSA policy OID written in every token. It is required.
	Policy asn1.ObjectIdentifier

	// Now is the clock. If nil, time.Now is used.
	Now func() time.Time

	// Accuracy is the accuracy claimed in tokens. If zero,
	// DefaultAccuracy.
	Accuracy time.Duration

	// Logger receives one record for each request the Authority fails to
	// answer because of its own fault (a signing error, a clock outside
	// the certificate's validity). If nil, nothing is logged.
	Logger *slog.Logger

	// Limits caps the connections Serve accepts, overall and per client
	// address; the zero value gives connlimit's defaults.
	Limits connlimit.Options
}

// Authority is a built-in time-stamping authority: it signs RFC 3161 tokens
// in-process, as a Stamper, and over HTTP, as an http.Handler. Every token
// has a random serial number of about 160 bits from crypto/rand, so serial
// numbers are unique without shared state; its genTime is the clock's time
// to the nanosecond (trailing zeros left out, RFC 3161 §2.4.2), its nonce
// the one asked for, and it carries an ESS signing-certificate-v2 attribute
// naming the TSA certificate.
//
// An Authority is safe for concurrent use.
type Authority struct {
	cert     *x509.Certificate
	signer   crypto.Signer
	chain    []*x509.Certificate
	policy   asn1.ObjectIdentifier
	now      func() time.Time
	accuracy time.Duration
	logger   *slog.Logger
	limits   connlimit.Options
}

// NewAuthority returns an Authority signing with cfg. It fails if the
// certificate does not have the RFC 3161 profile, if the key is not the
// certificate's, if the chain does not link up, or if no policy is given.
func NewAuthority(cfg AuthorityConfig) (*Authority, error) {
	switch {
	case cfg.Certificate == nil:
		return nil, errors.New("tsa: authority: no certificate")
	case cfg.Signer == nil:
		return nil, errors.New("tsa: authority: no signer")
	case len(cfg.Policy) == 0:
		return nil, errors.New("tsa: authority: no policy OID")
	case cfg.Accuracy < 0:
		return nil, errors.New("tsa: authority: negative accuracy")
	}
	if err := checkTSAProfile(cfg.Certificate); err != nil {
		return nil, fmt.Errorf("tsa: authority: %w", err)
	}
	switch pub := cfg.Signer.Public().(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(cfg.Certificate.PublicKey) {
			return nil, errors.New("tsa: authority: the signer's public key is not the certificate's")
		}
	default:
		// Ed25519 CMS signatures are valid but OpenSSL's ts command cannot
		// check them, and tokens must be checkable with stock tools.
		return nil, fmt.Errorf("tsa: authority: %T keys are not supported; use ECDSA or RSA", pub)
	}
	child := cfg.Certificate
	for i, parent := range cfg.Chain {
		if err := child.CheckSignatureFrom(parent); err != nil {
			return nil, fmt.Errorf("tsa: authority: chain[%d] %q did not issue %q: %w",
				i, parent.Subject.String(), child.Subject.String(), err)
		}
		child = parent
	}
	a := &Authority{
		cert:     cfg.Certificate,
		signer:   cfg.Signer,
		chain:    append([]*x509.Certificate(nil), cfg.Chain...),
		policy:   append(asn1.ObjectIdentifier(nil), cfg.Policy...),
		now:      cfg.Now,
		accuracy: cfg.Accuracy,
		logger:   cfg.Logger,
		limits:   cfg.Limits,
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.accuracy == 0 {
		a.accuracy = DefaultAccuracy
	}
	return a, nil
}

// Certificate returns the TSA certificate the Authority signs with.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// Timestamp returns a token over digest, a 32-byte SHA-256 digest, with the
// TSA certificate and chain embedded and a fresh random 64-bit nonce, as a
// Client would ask for. Before returning it, the Authority verifies its own
// signature and that the token carries that nonce, so a faulty signer cannot
// hand out a broken token. It implements Stamper.
func (a *Authority) Timestamp(ctx context.Context, digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tsa: authority: %w", err)
	}
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), nonceBits))
	if err != nil {
		return nil, fmt.Errorf("tsa: authority: drawing a nonce: %w", err)
	}
	token, err := a.issue(crypto.SHA256, digest, nonce, true)
	if err != nil {
		return nil, fmt.Errorf("tsa: authority: %w", err)
	}
	if _, _, err := checkToken(token, digest, nonce, a.cert); err != nil {
		return nil, fmt.Errorf("tsa: authority: self-check of a new token failed: %w", err)
	}
	return token, nil
}

// tstInfoOut is the TSTInfo of RFC 3161 §2.4.2 as the Authority writes it.
// genTime is a raw GeneralizedTime because encoding/asn1 drops fractions
// of a second.
type tstInfoOut struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint messageImprint
	SerialNumber   *big.Int
	GenTime        asn1.RawValue
	Accuracy       accuracy      `asn1:"optional"`
	Nonce          *big.Int      `asn1:"optional"`
	TSA            asn1.RawValue `asn1:"optional"`
}

// generalizedTime encodes t as a DER GeneralizedTime of RFC 3161 §2.4.2: UTC,
// with the fraction of a second to the nanosecond, trailing zeros and a bare
// decimal point left out.
func generalizedTime(t time.Time) asn1.RawValue {
	return asn1.RawValue{Tag: asn1.TagGeneralizedTime, Bytes: []byte(t.UTC().Format("20060102150405.999999999") + "Z")}
}

// accuracyOf splits d into the seconds, milliseconds and microseconds of an
// RFC 3161 Accuracy, rounding a remainder below a microsecond up.
func accuracyOf(d time.Duration) accuracy {
	if r := d % time.Microsecond; r != 0 {
		d += time.Microsecond - r
	}
	return accuracy{
		Seconds: int64(d / time.Second),
		Millis:  int64(d % time.Second / time.Millisecond),
		Micros:  int64(d % time.Millisecond / time.Microsecond),
	}
}

// issue signs a token: a CMS SignedData of a TSTInfo over hashed, whose
// genTime is the Authority's clock at full precision and whose nonce is
// nonce (none when nil), signed with SHA-256 and carrying an ESS
// signing-certificate-v2 attribute naming the TSA certificate, which is
// embedded with its chain when certs is true.
func (a *Authority) issue(h crypto.Hash, hashed []byte, nonce *big.Int, certs bool) ([]byte, error) {
	now := a.now().UTC()
	if now.Before(a.cert.NotBefore) || now.After(a.cert.NotAfter) {
		return nil, fmt.Errorf("the TSA certificate is not valid at %s (valid %s to %s)",
			now.Format(time.RFC3339Nano), a.cert.NotBefore.UTC().Format(time.RFC3339),
			a.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	hashOID, ok := oidForHash(h)
	if !ok {
		return nil, fmt.Errorf("hash %v is not supported", h)
	}
	// A random positive serial number of at most 160 bits, the size every
	// requester must handle (RFC 3161 §2.4.2): unique without shared state.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	dirName, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: a.cert.RawSubject})
	if err != nil {
		return nil, fmt.Errorf("encoding the TSA name: %w", err)
	}
	info, err := asn1.Marshal(tstInfoOut{
		Version: 1,
		Policy:  a.policy,
		MessageImprint: messageImprint{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: hashOID, Parameters: asn1.NullRawValue},
			HashedMessage: hashed,
		},
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		GenTime:      generalizedTime(now),
		Accuracy:     accuracyOf(a.accuracy),
		Nonce:        nonce,
		TSA:          asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: dirName},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the TSTInfo: %w", err)
	}
	sd, err := pkcs7.NewSignedData(info)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	sd.SetContentType(oidTSTInfo)
	sd.GetSignedData().Version = 3
	ess, err := smime.SigningCertificateV2(a.cert)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	cfg := pkcs7.SignerInfoConfig{ExtraSignedAttributes: []pkcs7.Attribute{ess}, SkipCertificates: !certs}
	if certs && len(a.chain) > 0 {
		err = sd.AddSignerChain(a.cert, a.signer, a.chain, cfg)
	} else {
		err = sd.AddSigner(a.cert, a.signer, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	token, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return token, nil
}

// respond signs a token and returns the DER TimeStampResp, status granted,
// that carries it.
func (a *Authority) respond(h crypto.Hash, hashed []byte, nonce *big.Int, certs bool) ([]byte, error) {
	token, err := a.issue(h, hashed, nonce, certs)
	if err != nil {
		return nil, err
	}
	var r timeStampResp
	r.Token = asn1.RawValue{FullBytes: token}
	resp, err := asn1.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding the response: %w", err)
	}
	return resp, nil
}

// timeStampResp is the TimeStampResp of RFC 3161 §2.4.2, reduced to what
// the Authority needs to take the token out of its own responses.
type timeStampResp struct {
	Status struct {
		Status       int
		StatusString []string       `asn1:"optional,utf8"`
		FailInfo     asn1.BitString `asn1:"optional"`
	}
	Token asn1.RawValue `asn1:"optional"`
}

// ServeHTTP answers RFC 3161 requests over HTTP (RFC 3161 §3.4): a POST of
// a DER TimeStampReq with content type application/timestamp-query gets a
// DER TimeStampResp with content type application/timestamp-reply.
//
// Requests that are not RFC 3161 at all get an HTTP error: 405 for another
// method, 415 for another content type, 413 for a body over
// MaxRequestSize. A TimeStampReq the Authority will not grant gets a
// TimeStampResp with status rejection and a failure reason: badDataFormat
// for a malformed request or an imprint of the wrong length, badAlg for a
// hash other than SHA-256, SHA-384 or SHA-512 (SHA-1 included),
// unacceptedPolicy for a policy other than its own, unacceptedExtension for
// any extension, systemFailure when signing fails.
func (a *Authority) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "tsa: only POST is allowed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != ContentTypeQuery {
		http.Error(w, "tsa: content type must be "+ContentTypeQuery, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestSize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("tsa: request larger than %d bytes", MaxRequestSize), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "tsa: reading request: "+err.Error(), http.StatusBadRequest)
		return
	}

	resp, fail := a.answer(r.Context(), body)
	if fail != nil {
		resp, err = timestamp.CreateErrorResponse(timestamp.Rejection, *fail)
		if err != nil {
			http.Error(w, "tsa: encoding rejection: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", ContentTypeReply)
	w.Header().Set("Content-Length", fmt.Sprint(len(resp)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(resp)
}

// answer returns the TimeStampResp for a DER TimeStampReq, or the failure
// reason to reject it with.
func (a *Authority) answer(ctx context.Context, body []byte) ([]byte, *timestamp.FailureInfo) {
	reject := func(f timestamp.FailureInfo) ([]byte, *timestamp.FailureInfo) { return nil, &f }

	req, err := timestamp.ParseRequest(body)
	if err != nil {
		// ParseRequest does not say whether the hash was unknown or the
		// request malformed; decoding just the imprint tells them apart.
		var head struct {
			Version        int
			MessageImprint messageImprint
		}
		if _, err := asn1.Unmarshal(body, &head); err == nil {
			if _, ok := hashForOID(head.MessageImprint.HashAlgorithm.Algorithm); !ok {
				return reject(timestamp.BadAlgorithm)
			}
		}
		return reject(timestamp.BadDataFormat)
	}
	switch req.HashAlgorithm {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return reject(timestamp.BadAlgorithm)
	}
	if len(req.HashedMessage) != req.HashAlgorithm.Size() {
		return reject(timestamp.BadDataFormat)
	}
	if len(req.TSAPolicyOID) > 0 && !req.TSAPolicyOID.Equal(a.policy) {
		return reject(timestamp.UnacceptedPolicy)
	}
	if len(req.Extensions) > 0 {
		return reject(timestamp.UnacceptedExtension)
	}
	resp, err := a.respond(req.HashAlgorithm, req.HashedMessage, req.Nonce, req.Certificates)
	if err != nil {
		if a.logger != nil {
			a.logger.ErrorContext(ctx, "tsa: cannot grant time-stamp request", "err", err)
		}
		return reject(timestamp.SystemFailure)
	}
	return resp, nil
}

// Serve answers RFC 3161 requests over HTTP on ln until ctx is done, then
// stops accepting, waits up to DefaultShutdownTimeout for requests in flight
// and returns nil. It closes ln. If serving fails first, it returns that
// error. Its connections are capped as AuthorityConfig.Limits says.
func (a *Authority) Serve(ctx context.Context, ln net.Listener) error {
	lo := a.limits
	if lo.Logger == nil {
		lo.Logger = a.logger
	}
	ln = connlimit.NewListener(ln, lo)
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: serverTimeout,
		ReadTimeout:       serverTimeout,
		WriteTimeout:      serverTimeout,
		IdleTimeout:       2 * serverTimeout,
		MaxHeaderBytes:    MaxRequestSize,
	}
	if a.logger != nil {
		srv.ErrorLog = slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("tsa: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("tsa: serve: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("tsa: serve: %w", err)
	}
	return nil
}
