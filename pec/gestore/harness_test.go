package gestore

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/daticert"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/pec/queue"
	"github.com/custode/custode/pec/smime"
)

// clock is a test clock that moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testGestore is one gestore of a test: its PKI, stores and listeners.
type testGestore struct {
	name, domain string
	dir          string
	dev          *pki.DevSet
	tls          *pki.KeyPair
	provider     *igpec.Provider

	ledger    *ledger.Ledger
	mailboxes *mailstore.Store
	queue     *queue.Queue
	srv       *Server

	submission, ricezione string // listener addresses
	// ricezioneLn, when set, is the punto di ricezione's listener, bound
	// before start so that its address can be routed to without a window
	// in which another process could take the port.
	ricezioneLn net.Listener
	caFile      string
	cancel      context.CancelFunc
	done        chan struct{}
}

// pkiCache holds the PKI of each gestore the tests make, by name and
// domain: four 2048-bit RSA keys a gestore, made once per package run
// instead of once per test (they were a large part of the package's time
// under -race). The tests only read them.
var pkiCache struct {
	sync.Mutex
	m map[[2]string]*cachedPKI
}

type cachedPKI struct {
	once sync.Once
	dev  *pki.DevSet
	tls  *pki.KeyPair
	err  error
}

// testPKI returns the development PKI and the TLS server key pair of the
// gestore name of domain, made on first use.
func testPKI(name, domain string) (*pki.DevSet, *pki.KeyPair, error) {
	pkiCache.Lock()
	if pkiCache.m == nil {
		pkiCache.m = map[[2]string]*cachedPKI{}
	}
	c := pkiCache.m[[2]string{name, domain}]
	if c == nil {
		c = new(cachedPKI)
		pkiCache.m[[2]string{name, domain}] = c
	}
	pkiCache.Unlock()
	c.once.Do(func() {
		now := time.Now()
		if c.dev, c.err = pki.NewDevSet(name, domain, now.Add(-time.Hour)); c.err != nil {
			return
		}
		c.tls, c.err = pki.IssueTLSServer(c.dev.CA, []string{"127.0.0.1", "localhost"}, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	})
	return c.dev, c.tls, c.err
}

// newTestGestore makes the PKI and provider record of a gestore; start
// opens its stores and serves it.
func newTestGestore(t testing.TB, name, domain string) *testGestore {
	t.Helper()
	dir := t.TempDir()
	dev, tlsKP, err := testPKI(name, domain)
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.WriteDir(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	p := &igpec.Provider{Name: name, MailReceipt: "posta-certificata@" + domain, ManagedDomains: []string{domain}}
	p.AddCertificate(dev.Gestore.Certificate.Raw)
	return &testGestore{name: name, domain: domain, dir: dir, dev: dev, tls: tlsKP, provider: p,
		caFile: filepath.Join(dir, "pki", pki.CACertFile)}
}

type startOptions struct {
	index   *igpec.Index
	routes  map[string]string
	peers   []*testGestore
	clock   *clock
	scanner Scanner // both gestori
	// scannerA and scannerB, when set, replace scanner for one gestore.
	scannerA, scannerB Scanner
	policy             func(string) MailboxPolicy // B's mailbox policies
	nonPEC             NonPECPolicy
	maxSize            int64
	archive            Archiver // both gestori
	// limits, if set, adjusts the Options of both gestori.
	limits func(*Options)
}

func (g *testGestore) start(t testing.TB, o startOptions) {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("gestore", g.domain)
	}
	var err error
	if g.ledger == nil {
		if g.ledger, err = ledger.Open(ctx, ledger.Options{Dir: filepath.Join(g.dir, "ledger"), Logger: logger}); err != nil {
			t.Fatal(err)
		}
	}
	if g.mailboxes == nil {
		if g.mailboxes, err = mailstore.Open(ctx, mailstore.Options{Dir: filepath.Join(g.dir, "mailboxes"), Now: o.clock.Now, Logger: logger, PasswordIterations: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	if g.queue == nil {
		if g.queue, err = queue.Open(ctx, queue.Options{Dir: filepath.Join(g.dir, "queue"), Now: o.clock.Now, Logger: logger,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Poll: 20 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	signer := &smime.Signer{Certificate: g.dev.Gestore.Certificate, Key: g.dev.Gestore.Key}
	pg, err := pec.NewGestore(g.name, g.domain, signer, pec.RandomIDs(nil))
	if err != nil {
		t.Fatal(err)
	}
	serverCert := tls.Certificate{Certificate: [][]byte{g.tls.Certificate.Raw}, PrivateKey: g.tls.Key, Leaf: g.tls.Certificate}
	roots := x509.NewCertPool()
	roots.AddCert(g.dev.CA.Certificate)
	for _, p := range o.peers {
		roots.AddCert(p.dev.CA.Certificate)
	}
	opts := Options{
		Gestore:       pg,
		Index:         o.index,
		Ledger:        g.ledger,
		Mailboxes:     g.mailboxes,
		Queue:         g.queue,
		Scanner:       o.scanner,
		Routes:        o.routes,
		TLS:           &tls.Config{Certificates: []tls.Certificate{serverCert}},
		ClientTLS:     &tls.Config{RootCAs: roots},
		NonPEC:        o.nonPEC,
		Policy:        o.policy,
		MaxSize:       o.maxSize,
		Archive:       o.archive,
		TrackInterval: 50 * time.Millisecond,
		Now:           o.clock.Now,
		Logger:        logger,
	}
	if o.limits != nil {
		o.limits(&opts)
	}
	g.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	sub := listenAt(t, g.submission)
	ric := g.ricezioneLn
	g.ricezioneLn = nil
	if ric == nil {
		ric = listenAt(t, g.ricezione)
	}
	g.submission, g.ricezione = sub.Addr().String(), ric.Addr().String()
	go g.srv.ServeSubmission(sub, false)
	go g.srv.ServeRicezione(ric)
	runCtx, cancel := context.WithCancel(ctx)
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		g.srv.Run(runCtx)
	}()
	t.Cleanup(g.stop)
}

// stop stops the servers and closes the stores.
func (g *testGestore) stop() {
	if g.cancel == nil {
		return
	}
	g.srv.Close()
	g.cancel()
	<-g.done
	g.cancel = nil
	g.queue.Close()
	g.mailboxes.Close()
	g.ledger.Close()
	g.queue, g.mailboxes, g.ledger = nil, nil, nil
}

func listenAt(t testing.TB, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // a restarted gestore takes its old port back
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

// pair is two gestori, A and B, each in the other's indice dei gestori.
type pair struct {
	a, b  *testGestore
	index *igpec.Index
	clock *clock
}

func newPair(t testing.TB, o startOptions) *pair {
	t.Helper()
	a := newTestGestore(t, "Alfa PEC S.p.A.", "pec.alfa.test")
	b := newTestGestore(t, "Beta PEC S.p.A.", "pec.beta.test")
	ix, err := igpec.NewIndex(a.provider, b.provider)
	if err != nil {
		t.Fatal(err)
	}
	if o.clock == nil {
		o.clock = newClock()
	}
	p := &pair{a: a, b: b, index: ix, clock: o.clock}
	// Bind both puntos di ricezione first, so that each can route to the
	// other; the listeners are handed to start, never closed and re-bound.
	b.ricezioneLn = listenAt(t, "")
	b.ricezione = b.ricezioneLn.Addr().String()
	a.ricezioneLn = listenAt(t, "")
	a.ricezione = a.ricezioneLn.Addr().String()
	routes := map[string]string{a.domain: a.ricezione, b.domain: b.ricezione}
	for k, v := range o.routes {
		routes[k] = v
	}
	ao, bo := o, o
	ao.index, bo.index = ix, ix
	ao.routes, bo.routes = routes, routes
	ao.peers, bo.peers = []*testGestore{b}, []*testGestore{a}
	if o.scannerA != nil {
		ao.scanner = o.scannerA
	}
	if o.scannerB != nil {
		bo.scanner = o.scannerB
	}
	ao.policy = nil
	a.start(t, ao)
	b.start(t, bo)
	return p
}

func (g *testGestore) addMailbox(t testing.TB, address, password string, quota int64) {
	t.Helper()
	if err := g.mailboxes.AddMailbox(context.Background(), address, password, quota); err != nil {
		t.Fatal(err)
	}
}

// submit sends msg through g's punto di accesso as user, over STARTTLS
// with AUTH PLAIN, and returns the server's error, if any.
func (g *testGestore) submit(t testing.TB, user, password string, rcpts []string, msg string) error {
	t.Helper()
	return g.submitAs(t, user, password, user, rcpts, msg)
}

// submitAs is submit with a reverse path other than the user.
func (g *testGestore) submitAs(t testing.TB, user, password, from string, rcpts []string, msg string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(g.dev.CA.Certificate)
	c, err := smtp.DialStartTLS(g.submission, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("dial %s: %v", g.submission, err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		return err
	}
	return c.SendMail(from, rcpts, strings.NewReader(strings.ReplaceAll(msg, "\n", "\r\n")))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kinds returns the kinds of the ledger entries of identificativo, in
// order, each prefixed by the gestore that emitted it when it is not g.
func (g *testGestore) kinds(t testing.TB, identificativo string) []string {
	t.Helper()
	entries, err := g.srv.entriesOf(context.Background(), identificativo)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		k := string(e.Kind)
		if e.Gestore != g.name {
			k = "received:" + k
		}
		out = append(out, k)
	}
	return out
}

func destinatario(address string) daticert.Destinatario {
	return daticert.Destinatario{Address: address, Tipo: daticert.DestinatarioCertificato}
}

// sink is an ordinary mail server that keeps what it receives.
type sink struct {
	addr string
	got  chan []byte
}

func newSink(t testing.TB) *sink {
	t.Helper()
	s := &sink{got: make(chan []byte, 16)}
	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = "mx.example.org"
	ln := listenAt(t, "")
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) wait(t testing.TB) []byte {
	t.Helper()
	select {
	case m := <-s.got:
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("the ordinary mail server received nothing")
		return nil
	}
}

type sinkBackend struct{ s *sink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: b.s}, nil }

type sinkSession struct{ s *sink }

func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *sinkSession) Reset()                               {}
func (s *sinkSession) Logout() error                        { return nil }
func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err == nil {
		s.s.got <- b
	}
	return err
}

// messages returns the messages in address's INBOX, in UID order.
func (g *testGestore) messages(t testing.TB, address string) [][]byte {
	t.Helper()
	ctx := context.Background()
	_, msgs, err := g.mailboxes.Messages(ctx, address, mailstore.Inbox)
	if err != nil {
		t.Fatalf("messages of %s: %v", address, err)
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := g.mailboxes.Body(ctx, address, mailstore.Inbox, m.UID)
		if err != nil {
			t.Fatalf("message %d of %s: %v", m.UID, address, err)
		}
		out = append(out, b)
	}
	return out
}

// converse speaks SMTP line by line on a raw connection: it reads the
// greeting, then sends each line of script and reads one reply for it.
// It returns the replies (their last lines); a closed connection ends it.
func converse(t testing.TB, addr string, script []string) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := readReply(r); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	var replies []string
	for _, line := range script {
		if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
			break
		}
		reply, err := readReply(r)
		if err != nil {
			break
		}
		replies = append(replies, reply)
	}
	return replies
}

// readReply reads one SMTP reply and returns its last line.
func readReply(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line, nil
		}
	}
}

// sendAndClose writes raw to addr and closes the connection without
// waiting for anything.
func sendAndClose(t testing.TB, addr, raw string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte(raw))
	time.Sleep(200 * time.Millisecond)
	conn.Close()
	time.Sleep(200 * time.Millisecond)
}
