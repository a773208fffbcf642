package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/pec/pki"
)

// The hostile phase's attack, sized as issue 16 states it.
const (
	// HostileIdle is how many idle connections are opened to B's punto di
	// ricezione, from as many loopback source addresses as needed to pass
	// any per-address cap (HostileIdlePerSource each).
	HostileIdle          = 20000
	HostileIdlePerSource = 10
	// HostileBig is how many anonymous messages of HostileBigBytes are
	// sent to B's punto di ricezione at once, again and again.
	HostileBig      = 16
	HostileBigBytes = 29 << 20
	// HostilePoisonEvery is the pace of the poison stream to B.
	HostilePoisonEvery = 100 * time.Millisecond
	// HostileSprayEvery is the pace of each password sprayer (SMTP AUTH
	// and IMAP LOGIN on A, for the load's own sender mailboxes).
	HostileSprayEvery = 20 * time.Millisecond
)

// What the hostile phase requires of the legitimate traffic (issue 16).
const (
	// MaxHostileRatio bounds the p99 time to the ricevuta di avvenuta
	// consegna under attack, as a multiple of the load phase's.
	MaxHostileRatio = 2.0
	// MaxHostileRSSMiB bounds each gestore's peak RSS under attack.
	MaxHostileRSSMiB = 1024
)

// HostileResult is what the legitimate traffic saw while gestore B's
// punto di ricezione and gestore A's logins were attacked.
type HostileResult struct {
	Seconds float64 `json:"seconds"`
	// Idle connections: dialled, refused at connect, and at the end of
	// the attack still open versus closed by the server.
	IdleDialled int `json:"idle_dialled"`
	IdleRefused int `json:"idle_refused"`
	IdleOpen    int `json:"idle_open_at_end"`
	IdleClosed  int `json:"idle_closed_by_server"`
	SourceAddrs int `json:"source_addresses"`
	// Replies are the attackers' answers, by attack and SMTP code (or
	// "connection", "ok", "no").
	Replies map[string]map[string]int `json:"replies"`
	// Probes are one submission, one IMAP login, one API call and one TSA
	// request made while the attack is held: "ok" or the error.
	Probes map[string]string `json:"probes"`
	// Legitimate traffic, as in the load phase.
	Accepted      int     `json:"accepted"`
	Delivered     int     `json:"delivered"`
	ConsegnaP99ms float64 `json:"consegna_p99_ms"`
	// LoadConsegnaP99ms is the load phase's, for the ratio.
	LoadConsegnaP99ms float64 `json:"load_consegna_p99_ms"`
	Ratio             float64 `json:"consegna_p99_ratio"`
	// Diagnostics of the legitimate traffic's tail: its median and
	// slowest time to the ricevuta di avvenuta consegna, how many took
	// more than MaxHostileRatio times the load phase's p99, and gestore
	// A's deliveries to B deferred during the phase (A's log, "queue:
	// delivery failed, will retry"), by the SMTP code B answered
	// ("other" when it answered none).
	ConsegnaP50ms float64        `json:"consegna_p50_ms"`
	ConsegnaMaxms float64        `json:"consegna_max_ms"`
	OverRatio     int            `json:"over_ratio"`
	DeferralsAtoB map[string]int `json:"a_deferrals_to_b,omitempty"`
	// PeakRSSMiB is each gestore's peak resident memory in the phase.
	PeakRSSMiB map[string]float64 `json:"peak_rss_mib"`
}

// hostileTally counts answers by attack and code.
type hostileTally struct {
	mu sync.Mutex
	m  map[string]map[string]int
}

func (t *hostileTally) add(attack string, err error) {
	key := "ok"
	var se *smtp.SMTPError
	switch {
	case err == nil:
	case errors.As(err, &se):
		key = strconv.Itoa(se.Code)
	case strings.Contains(err.Error(), "NO") || strings.Contains(err.Error(), "BAD"):
		key = "no"
	default:
		key = "connection"
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[attack] == nil {
		t.m[attack] = map[string]int{}
	}
	t.m[attack][key]++
}

// sourceAddr returns loopback source address n, never 127.0.0.1 (the
// legitimate clients' address): 127.1.0.1 onwards.
func sourceAddr(n int) *net.TCPAddr {
	n++
	return &net.TCPAddr{IP: net.IPv4(127, byte(1+n>>16), byte(n>>8), byte(n))}
}

// dialFrom dials addr from source address n.
func dialFrom(ctx context.Context, n int, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: sourceAddr(n), Timeout: 10 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// hostilePhase runs the load's clients against A while B's punto di
// ricezione is held by idle connections, fed a stream of poison messages
// and 16 concurrent 29 MB anonymous messages, and A's logins are sprayed
// with wrong passwords for the load's own mailboxes from other addresses.
// It reports what the legitimate messages saw against the load phase.
func (h *harness) hostilePhase(ctx context.Context) error {
	if err := h.startAll(ctx); err != nil {
		return err
	}
	r := &HostileResult{Probes: map[string]string{}, PeakRSSMiB: map[string]float64{}}
	tally := &hostileTally{m: map[string]map[string]int{}}
	since := time.Now()
	logFrom := fileSize(h.a.proc.logPath)
	l, err := h.submit(ctx, "hostile")
	if err != nil {
		return err
	}
	attackCtx, stopAttack := context.WithCancel(ctx)
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(attackCtx) }()
	}
	idle, err := openIdle(attackCtx, h.b.ricezione)
	if err != nil {
		stopAttack()
		l.stop()
		return err
	}
	dialled := make(chan struct{})
	go func() { defer close(dialled); idle.dialled(r) }()
	run(func(ctx context.Context) { h.poison(ctx, tally) })
	for i := range HostileBig {
		run(func(ctx context.Context) { h.big(ctx, i, tally) })
	}
	run(func(ctx context.Context) { h.spraySMTP(ctx, tally) })
	run(func(ctx context.Context) { h.sprayIMAP(ctx, tally) })

	// Hold the attack for the load phase's length, probing halfway; then
	// stop the legitimate clients before the attackers, so that the phase
	// measures only messages sent under attack.
	held := time.Now()
	sleep(ctx, h.opts.Load/2)
	h.probe(ctx, r)
	h.log.Info("bench: hostile: probed", "after", time.Since(held))
	sleep(ctx, h.opts.Load-time.Since(held))
	l.stop()
	<-dialled
	idle.close(r)
	stopAttack()
	wg.Wait()
	h.log.Info("bench: hostile: attack ended", "after", time.Since(held))
	r.Seconds = l.elapsed.Seconds()
	r.Replies = tally.m
	_, rssA := h.a.proc.usage()
	_, rssB := h.b.proc.usage()
	r.PeakRSSMiB["gestore A"] = float64(rssA) / (1 << 20)
	r.PeakRSSMiB["gestore B"] = float64(rssB) / (1 << 20)
	drained, _ := h.waitDrained(ctx)
	_, toConsegna := h.track.latencies("hostile")
	r.Accepted, r.Delivered = len(h.track.acked("hostile")), len(toConsegna)
	r.ConsegnaP99ms = percentile(toConsegna, 0.99)
	r.ConsegnaP50ms = percentile(toConsegna, 0.5)
	r.ConsegnaMaxms = percentile(toConsegna, 1)
	if h.res.Load != nil {
		r.LoadConsegnaP99ms = h.res.Load.ConsegnaP99ms
		if r.LoadConsegnaP99ms > 0 {
			r.Ratio = r.ConsegnaP99ms / r.LoadConsegnaP99ms
			bound := time.Duration(MaxHostileRatio * r.LoadConsegnaP99ms * float64(time.Millisecond))
			r.OverRatio = len(toConsegna) - sort.Search(len(toConsegna), func(i int) bool { return toConsegna[i] > bound })
		}
	}
	r.DeferralsAtoB = deferrals(h.a.proc.logPath, logFrom, domainB)
	h.res.Hostile = r
	f := h.settle(ctx, "hostile", l, since, time.Time{})
	f.Detail = fmt.Sprintf("%d idle connections, poison every %v, %d × %d MB anonymous, password spray; %d clients", HostileIdle, HostilePoisonEvery, HostileBig, HostileBigBytes>>20, h.opts.Clients)
	if !drained {
		f.Notes = append(f.Notes, "the legitimate messages did not all get their ricevuta di avvenuta consegna")
	}
	h.res.Faults = append(h.res.Faults, f)
	return nil
}

// fileSize returns the size of the file at path, 0 if it cannot say.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// smtpCode finds the SMTP code in a delivery error of the gestore's log.
var smtpCode = regexp.MustCompile(`SMTP error (\d{3})`)

// deferrals counts, in the gestore's log at path from offset from on, the
// deliveries to destination its queue deferred, by the SMTP code in the
// error ("other" without one). It is a diagnostic: a log it cannot read
// gives nil.
func deferrals(path string, from int64, destination string) map[string]int {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil
	}
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="queue: delivery failed, will retry"`) || !strings.Contains(line, "destination="+destination+" ") {
			continue
		}
		key := "other"
		if m := smtpCode.FindStringSubmatch(line); m != nil {
			key = m[1]
		}
		out[key]++
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// holdEnv names the environment variable that makes custode-bench a
// holder of idle connections (see HoldMain) instead of the harness.
const holdEnv = "CUSTODE_BENCH_HOLD"

// HoldersPerAttack is how many processes hold the idle connections: each
// process's open-file limit (20,000 on the machines this runs on, and
// not raisable there) must hold its share with room to spare.
const HoldersPerAttack = 4

// idleHolders are the child processes holding the idle connections.
type idleHolders struct {
	procs []*exec.Cmd
	ins   []io.WriteCloser
	outs  []*bufio.Scanner
}

// openIdle starts the holders, each dialling its share of HostileIdle
// connections to addr from its own source addresses.
func openIdle(ctx context.Context, addr string) (*idleHolders, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("idle holders: %w", err)
	}
	ih := &idleHolders{}
	per := HostileIdle / HoldersPerAttack
	for i := range HoldersPerAttack {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", holdEnv, addr, per, i*per/HostileIdlePerSource))
		in, err := cmd.StdinPipe()
		if err != nil {
			return ih, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return ih, err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return ih, fmt.Errorf("idle holder: %w", err)
		}
		ih.procs, ih.ins, ih.outs = append(ih.procs, cmd), append(ih.ins, in), append(ih.outs, bufio.NewScanner(out))
	}
	return ih, nil
}

// dialled waits for every holder to have dialled its share, and adds up
// what they report.
func (ih *idleHolders) dialled(r *HostileResult) {
	for _, sc := range ih.outs {
		var d, f int
		if sc.Scan() {
			fmt.Sscanf(sc.Text(), "dialled %d refused %d", &d, &f)
		}
		r.IdleDialled += d
		r.IdleRefused += f
	}
	r.SourceAddrs = HostileIdle / HostileIdlePerSource
}

// close tells the holders to count what is still open and exit, and adds
// up their counts.
func (ih *idleHolders) close(r *HostileResult) {
	for _, in := range ih.ins {
		in.Close()
	}
	for i, sc := range ih.outs {
		var o, c int
		if sc.Scan() {
			fmt.Sscanf(sc.Text(), "open %d closed %d", &o, &c)
		}
		r.IdleOpen += o
		r.IdleClosed += c
		ih.procs[i].Wait()
	}
}

// HoldMain is custode-bench as a holder of idle connections, when the
// environment names one ("ADDR,COUNT,FIRST-SOURCE"): it dials COUNT
// connections to ADDR, HostileIdlePerSource from each source address from
// FIRST-SOURCE on, prints "dialled D refused R", holds them silent until
// its standard input closes, then prints "open O closed C" (closed: the
// server ended them) and exits. It returns false when the environment
// names no holder.
func HoldMain() bool {
	spec := os.Getenv(holdEnv)
	if spec == "" {
		return false
	}
	var addr string
	var count, first int
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fmt.Fprintf(os.Stderr, "%s: want ADDR,COUNT,FIRST-SOURCE, not %q\n", holdEnv, spec)
		os.Exit(2)
	}
	addr = parts[0]
	count, _ = strconv.Atoi(parts[1])
	first, _ = strconv.Atoi(parts[2])
	ctx := context.Background()
	var mu sync.Mutex
	var conns []net.Conn
	var refused atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range count {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := dialFrom(ctx, first+i/HostileIdlePerSource, addr)
			if err != nil {
				refused.Add(1)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("dialled %d refused %d\n", len(conns), refused.Load())
	io.Copy(io.Discard, os.Stdin)
	var open, closed atomic.Int64
	for _, c := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if serverClosed(c) {
				closed.Add(1)
			} else {
				open.Add(1)
			}
			c.Close()
		}()
	}
	wg.Wait()
	fmt.Printf("open %d closed %d\n", open.Load(), closed.Load())
	return true
}

// serverClosed reports whether the server has ended c: reading what it
// sent (a greeting, a refusal) reaches EOF or a reset.
func serverClosed(c net.Conn) bool {
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	for {
		if _, err := c.Read(buf); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// poisonMessages are what the stream sends to B, in turn: a quoted local
// part no mailbox can hold, a deeply nested MIME message and one of many
// parts, and a replayed-looking message from A's own service address.
func poisonMessages() []struct{ name, rcpt, msg string } {
	var nested strings.Builder
	const depth = 5000
	nested.WriteString("From: x@evil.test\r\nTo: r0@" + domainB + "\r\nSubject: nested\r\nMIME-Version: 1.0\r\n")
	for i := range depth {
		fmt.Fprintf(&nested, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	nested.WriteString("Content-Type: text/plain\r\n\r\nfondo\r\n")
	var many strings.Builder
	many.WriteString("From: x@evil.test\r\nTo: r0@" + domainB + "\r\nSubject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n")
	for range 300000 {
		many.WriteString("--p\r\n\r\n")
	}
	many.WriteString("--p--\r\n")
	plain := "From: x@evil.test\r\nTo: r0@" + domainB + "\r\nSubject: poison\r\n\r\nciao\r\n"
	return []struct{ name, rcpt, msg string }{
		{"quoted local part", `"anna@example.org"@` + domainB, plain},
		{"nested 5000", "r0@" + domainB, nested.String()},
		{"300000 parts", "r0@" + domainB, many.String()},
		{"no such mailbox", "nessuno@" + domainB, plain},
	}
}

// poison sends the poison messages to B's punto di ricezione in turn,
// anonymously, one every HostilePoisonEvery.
func (h *harness) poison(ctx context.Context, t *hostileTally) {
	msgs := poisonMessages()
	for i := 0; ctx.Err() == nil; i++ {
		m := msgs[i%len(msgs)]
		t.add("poison: "+m.name, h.sendAnon(ctx, 100000+i, m.rcpt, m.msg))
		sleep(ctx, HostilePoisonEvery)
	}
}

// big sends HostileBigBytes anonymous messages to B, one after another.
func (h *harness) big(ctx context.Context, i int, t *hostileTally) {
	body := bytes.Repeat([]byte(strings.Repeat("A", 76)+"\r\n"), HostileBigBytes/78)
	msg := "From: x@evil.test\r\nTo: r0@" + domainB + "\r\nSubject: grande\r\n\r\n" + string(body)
	for ctx.Err() == nil {
		t.add("29 MB anonymous", h.sendAnon(ctx, 200000+i, "r0@"+domainB, msg))
	}
}

// sendAnon sends msg to B's punto di ricezione from source n, as a
// stranger's server would.
func (h *harness) sendAnon(ctx context.Context, n int, rcpt, msg string) error {
	conn, err := dialFrom(ctx, n, h.b.ricezione)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.CommandTimeout, c.SubmissionTimeout = smtpTimeout, smtpTimeout
	return c.SendMail("x@evil.test", []string{rcpt}, strings.NewReader(msg))
}

// spraySMTP tries wrong passwords for the load's sender mailboxes on A's
// submission, from source addresses of its own.
func (h *harness) spraySMTP(ctx context.Context, t *hostileTally) {
	roots, err := pki.LoadPool(h.a.ca())
	if err != nil {
		t.add("spray smtp", err)
		return
	}
	for i := 0; ctx.Err() == nil; i++ {
		err := func() error {
			conn, err := dialFrom(ctx, 300000+i%4, h.a.submission)
			if err != nil {
				return err
			}
			c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
			if err != nil {
				conn.Close()
				return err
			}
			defer c.Close()
			c.CommandTimeout = smtpTimeout
			return c.Auth(sasl.NewPlainClient("", sender(i%h.opts.Clients), "wrong-"+strconv.Itoa(i)))
		}()
		t.add("spray smtp", err)
		sleep(ctx, HostileSprayEvery)
	}
}

// sprayIMAP tries wrong passwords for the load's sender mailboxes on A's
// IMAP, from source addresses of its own.
func (h *harness) sprayIMAP(ctx context.Context, t *hostileTally) {
	roots, err := pki.LoadPool(h.a.ca())
	if err != nil {
		t.add("spray imap", err)
		return
	}
	for i := 0; ctx.Err() == nil; i++ {
		err := func() error {
			conn, err := dialFrom(ctx, 300010+i%4, h.a.imap)
			if err != nil {
				return err
			}
			c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}})
			if err != nil {
				conn.Close()
				return err
			}
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			return c.Login(sender(i%h.opts.Clients), "wrong-"+strconv.Itoa(i)).Wait()
		}()
		t.add("spray imap", err)
		sleep(ctx, HostileSprayEvery)
	}
}

// probe makes, from 127.0.0.1, one submission, one IMAP login, one API
// call and one TSA request while the attack is held.
func (h *harness) probe(ctx context.Context, r *HostileResult) {
	result := func(err error) string {
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	roots, err := pki.LoadPool(h.a.ca())
	if err != nil {
		r.Probes["setup"] = err.Error()
		return
	}
	r.Probes["submission"] = result(func() error {
		c, err := dialSMTP(loadTarget{addr: h.a.submission, auth: true}, roots, sender(0))
		if err != nil {
			return err
		}
		defer c.Close()
		mid := fmt.Sprintf("<probe-%d@client.test>", h.ids.Add(1))
		return c.SendMail(sender(0), []string{recipient(0)}, strings.NewReader(benchMessage(sender(0), recipient(0), mid)))
	}())
	r.Probes["imap login"] = result(func() error {
		c, err := imapclient.DialStartTLS(h.a.imap, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Login(sender(0), password).Wait()
	}())
	r.Probes["api"] = result(h.probeAPI(ctx, roots))
	r.Probes["tsa"] = result(h.probeTSA(ctx))
}

// probeAPI asks A's HTTP API for its latest checkpoint as titolare
// sender(0).
func (h *harness) probeAPI(ctx context.Context, roots *x509.CertPool) error {
	if h.a.api == "" {
		return errors.New("gestore A serves no API")
	}
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+h.a.api+"/v1/checkpoints/latest", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(sender(0), password)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// probeTSA asks the TSA for a token and checks it answers one.
func (h *harness) probeTSA(ctx context.Context) error {
	req, err := timestamp.CreateRequest(strings.NewReader("sonda"), &timestamp.RequestOptions{Hash: crypto.SHA256, Certificates: true})
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+h.tsaAddr+"/", bytes.NewReader(req))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/timestamp-query")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	if _, err := timestamp.ParseResponse(body); err != nil {
		return fmt.Errorf("TSA answer: %w", err)
	}
	return nil
}
