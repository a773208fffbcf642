package tsa

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
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

	"github.com/digitorus/timestamp"

	"github.com/custode/custode/pec/connlimit"
)

// Defaults of an Authority and its HTTP server.
const (
	// DefaultAccuracy is the accuracy an Authority claims when
	// AuthorityConfig.Accuracy is zero: one second, because genTime is
	// encoded in whole seconds and the host clock is trusted to be within
	// that of UTC.
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
// has a random 160-bit serial number, drawn by
// github.com/digitorus/timestamp from crypto/rand, so serial numbers are
// unique without shared state.
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
// TSA certificate and chain embedded and no nonce. Before returning it, the
// Authority verifies its own signature, so a faulty signer cannot hand out
// a broken token. It implements Stamper.
func (a *Authority) Timestamp(ctx context.Context, digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tsa: authority: %w", err)
	}
	token, err := a.issue(crypto.SHA256, digest, nil, true)
	if err != nil {
		return nil, fmt.Errorf("tsa: authority: %w", err)
	}
	if _, _, err := checkToken(token, digest, nil, a.cert); err != nil {
		return nil, fmt.Errorf("tsa: authority: self-check of a new token failed: %w", err)
	}
	return token, nil
}

// issue signs a token and returns it without the TimeStampResp around it.
func (a *Authority) issue(h crypto.Hash, hashed []byte, nonce *big.Int, certs bool) ([]byte, error) {
	resp, err := a.respond(h, hashed, nonce, certs)
	if err != nil {
		return nil, err
	}
	var r timeStampResp
	rest, err := asn1.Unmarshal(resp, &r)
	if err != nil || len(rest) > 0 || r.Status.Status != 0 || len(r.Token.FullBytes) == 0 {
		return nil, errors.New("the signing library returned a malformed response")
	}
	return r.Token.FullBytes, nil
}

// respond signs a token and returns the DER TimeStampResp that carries it.
func (a *Authority) respond(h crypto.Hash, hashed []byte, nonce *big.Int, certs bool) ([]byte, error) {
	// genTime is written in whole seconds; truncate first so that the
	// validity check sees the time the token will carry.
	now := a.now().UTC().Truncate(time.Second)
	if now.Before(a.cert.NotBefore) || now.After(a.cert.NotAfter) {
		return nil, fmt.Errorf("the TSA certificate is not valid at %s (valid %s to %s)",
			now.UTC().Format(time.RFC3339), a.cert.NotBefore.UTC().Format(time.RFC3339),
			a.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	ts := timestamp.Timestamp{
		HashAlgorithm:     h,
		HashedMessage:     hashed,
		Time:              now,
		Accuracy:          a.accuracy,
		Policy:            a.policy,
		Nonce:             nonce,
		AddTSACertificate: certs,
		Certificates:      a.chain,
	}
	resp, err := ts.CreateResponseWithOpts(a.cert, a.signer, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
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
