package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/custode/custode/pec/mailstore"
)

// Authenticator checks a titolare's mailbox credentials, throttles and
// records the failures. *mailstore.Store satisfies it. Login MUST return an
// error wrapping mailstore.ErrAuthFailed for a wrong password or an
// unknown address, and one wrapping mailstore.ErrRateLimited (a
// *mailstore.ThrottledError, to say when to come back) when it refuses to
// check at all; it records both. RecordFailedLogin records a failure of
// credentials the server checks itself (a bearer token, a client
// certificate), or a request refused by the per-address limit before its
// credentials were checked.
type Authenticator interface {
	Login(ctx context.Context, a mailstore.LoginAttempt) error
	RecordFailedLogin(service, account, remote string, throttled bool)
}

// MaxTokenFileSize bounds a token file.
const MaxTokenFileSize = 1 << 20

// maxUserName bounds the name of a user of a token or a certificate.
const maxUserName = 256

// Tokens are the bearer tokens of operators, auditors and legal users. Only
// the SHA-256 of each token is held. A Tokens is read-only once made and
// safe for concurrent use; a nil *Tokens holds none.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	user string
	sum  [32]byte
}

// ParseTokens reads a token file: one token per line, as
//
//	user sha256hex
//
// where user is the name the policy's roles use (no spaces) and sha256hex
// is the lower- or upper-case hex SHA-256 of the token, as [TokenLine]
// writes it. A user may have several tokens (to rotate them). Blank lines
// and lines starting with # are ignored. A malformed line, or a digest
// given twice, is an error naming the line.
func ParseTokens(r io.Reader) (*Tokens, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxTokenFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("httpapi: tokens: %w", err)
	}
	if len(data) > MaxTokenFileSize {
		return nil, fmt.Errorf("httpapi: tokens: larger than %d bytes", MaxTokenFileSize)
	}
	t := &Tokens{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), MaxTokenFileSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("httpapi: tokens: line %d: want \"user sha256hex\"", n)
		}
		if !validUserName(f[0]) || strings.ContainsRune(f[0], ' ') {
			return nil, fmt.Errorf("httpapi: tokens: line %d: bad user name", n)
		}
		sum, err := hex.DecodeString(f[1])
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("httpapi: tokens: line %d: want the 64 hex digits of a SHA-256", n)
		}
		e := tokenEntry{user: f[0]}
		copy(e.sum[:], sum)
		if slices.ContainsFunc(t.entries, func(o tokenEntry) bool { return o.sum == e.sum }) {
			return nil, fmt.Errorf("httpapi: tokens: line %d: the same token is listed twice", n)
		}
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("httpapi: tokens: %w", err)
	}
	return t, nil
}

// LoadTokens reads the token file at path (see [ParseTokens]).
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("httpapi: tokens: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// NewToken returns a new random bearer token (256 bits, base64url).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("httpapi: new token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// TokenLine returns the line of a token file that gives token to user.
func TokenLine(user, token string) string {
	sum := sha256.Sum256([]byte(token))
	return user + " " + hex.EncodeToString(sum[:])
}

// lookup returns the user of token. It compares the token's digest with
// every digest, in constant time each, whether or not one matched.
func (t *Tokens) lookup(token string) (string, bool) {
	if t == nil || token == "" {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	user, found := "", 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			user, found = e.user, 1
		}
	}
	return user, found == 1
}

// validUserName accepts a printable, one-line name of a reasonable size.
func validUserName(s string) bool {
	if s == "" || len(s) > maxUserName || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// TLSConfig returns a TLS configuration for the API server: cert is the
// server's certificate; client certificates, when a client offers one, are
// verified against clientCAs and name the user (see [Options]). With a nil
// clientCAs no client certificate is asked for: Go would otherwise verify
// them against the system roots, which must never vouch for an operator.
func TLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.NoClientCert,
	}
	if clientCAs != nil {
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.ClientCAs = clientCAs
	}
	return c
}

// Roles of a principal. A titolare is a mailbox; the others are policy roles.
const (
	roleTitolare = "titolare"
	roleOperator = "operator"
	roleAuditor  = "auditor"
	roleLegal    = "legal"
	roleNone     = "user" // authenticated, but the policy gives no role
)

// principal is who makes a request, and what the policy lets them do.
type principal struct {
	role   string
	name   string   // mailbox address for a titolare, user name otherwise
	method string   // basic, bearer or mtls
	cases  []string // a legal user's cases
}

func (p *principal) actor() string { return p.role + ":" + p.name }

// authError is an authentication that failed, with the status to answer.
type authError struct {
	status   int
	msg      string
	retry    int  // seconds, for 429
	recorded bool // the Authenticator recorded the failure
}

func (e *authError) Error() string { return e.msg }

// authenticate finds who makes r: a bearer token or Basic credentials in
// the Authorization header, else a verified client certificate. It returns
// (nil, nil) when r carries no credentials.
func (s *Server) authenticate(r *http.Request, remote string) (*principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		switch strings.ToLower(scheme) {
		case "bearer":
			user, ok := s.tokens().lookup(strings.TrimSpace(rest))
			if !ok {
				return nil, &authError{http.StatusUnauthorized, "bad credentials", 0, false}
			}
			return s.withRole(&principal{name: user, method: "bearer"}), nil
		case "basic":
			return s.authenticateBasic(r, remote)
		default:
			return nil, &authError{http.StatusUnauthorized, "unsupported authorization scheme: use Basic or Bearer", 0, false}
		}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		name := leaf.Subject.CommonName
		if name == "" && len(leaf.EmailAddresses) > 0 {
			name = leaf.EmailAddresses[0]
		}
		if !validUserName(name) {
			return nil, &authError{http.StatusUnauthorized, "the client certificate names no user (subject CN or email)", 0, false}
		}
		return s.withRole(&principal{name: name, method: "mtls"}), nil
	}
	return nil, nil
}

func (s *Server) authenticateBasic(r *http.Request, remote string) (*principal, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || user == "" {
		return nil, &authError{http.StatusUnauthorized, "malformed Basic credentials", 0, false}
	}
	if s.mailboxes == nil {
		return nil, &authError{http.StatusUnauthorized, "Basic authentication is not enabled", 0, false}
	}
	err := s.mailboxes.Login(r.Context(), mailstore.LoginAttempt{Service: mailstore.ServiceAPI, Address: user, Password: pass, Remote: remote})
	var te *mailstore.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &te):
		retry := int((te.RetryAfter + time.Second - 1) / time.Second)
		return nil, &authError{http.StatusTooManyRequests, "too many failed logins from this address: try again later", retry, true}
	case errors.Is(err, mailstore.ErrAuthFailed):
		return nil, &authError{http.StatusUnauthorized, "bad credentials", 0, true}
	default:
		s.log.Error("httpapi: authenticate", "remote", remote, "err", err)
		return nil, &authError{http.StatusServiceUnavailable, "cannot check credentials now", 0, true}
	}
	addr, err := mailstore.NormalizeAddress(user)
	if err != nil {
		return nil, &authError{http.StatusUnauthorized, "bad credentials", 0, false}
	}
	return &principal{role: roleTitolare, name: addr, method: "basic"}, nil
}

// withRole gives a token or certificate user their role in the current
// policy: operator first, then auditor, then legal.
func (s *Server) withRole(p *principal) *principal {
	p.role = roleNone
	pol := s.policy()
	if pol == nil {
		return p
	}
	switch {
	case slices.Contains(pol.Roles.Operators, p.name):
		p.role = roleOperator
	case slices.Contains(pol.Roles.Auditors, p.name):
		p.role = roleAuditor
	default:
		if cases, ok := pol.Roles.Legal[p.name]; ok {
			p.role, p.cases = roleLegal, slices.Clone(cases)
		}
	}
	return p
}
