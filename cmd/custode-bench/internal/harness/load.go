package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/pec/pki"
)

// smtpTimeout bounds every SMTP command of a client: a gestore that hangs
// (a full disk) shows as errors, not as a stuck harness.
const smtpTimeout = 30 * time.Second

// msgRecord is one submitted message that got its 250.
type msgRecord struct {
	phase    string
	sent     time.Time // MAIL FROM
	acked    time.Time // the 250 after DATA
	consegna time.Time // the ricevuta di avvenuta consegna seen in the sender's mailbox
}

// tracker holds every acknowledged message of the run, by client
// Message-ID, and the ricevute the IMAP watchers saw.
type tracker struct {
	mu    sync.Mutex
	msgs  map[string]*msgRecord
	early map[string]time.Time // consegne seen before their 250 was recorded
	// consegne counts ricevute di avvenuta consegna, duplicates included.
	consegne map[string]int
}

func newTracker() *tracker {
	return &tracker{msgs: map[string]*msgRecord{}, early: map[string]time.Time{}, consegne: map[string]int{}}
}

func (t *tracker) ack(mid, phase string, sent, acked time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &msgRecord{phase: phase, sent: sent, acked: acked}
	if at, ok := t.early[mid]; ok {
		r.consegna = at
		delete(t.early, mid)
	}
	t.msgs[mid] = r
}

func (t *tracker) consegna(mid string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.consegne[mid]++
	r, ok := t.msgs[mid]
	if !ok {
		t.early[mid] = at
		return
	}
	if r.consegna.IsZero() {
		r.consegna = at
	}
}

// acked returns the Message-IDs of the acknowledged messages, of phase
// only unless phase is empty.
func (t *tracker) acked(phase string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for mid, r := range t.msgs {
		if phase == "" || r.phase == phase {
			out = append(out, mid)
		}
	}
	slices.Sort(out)
	return out
}

// undelivered returns the acknowledged messages without their ricevuta di
// avvenuta consegna.
func (t *tracker) undelivered() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for mid, r := range t.msgs {
		if r.consegna.IsZero() {
			out = append(out, mid)
		}
	}
	slices.Sort(out)
	return out
}

// duplicates counts messages whose ricevuta di avvenuta consegna came more
// than once.
func (t *tracker) duplicates() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.consegne {
		if c > 1 {
			n++
		}
	}
	return n
}

// latencies returns, for phase's messages, the times to the 250 and to the
// ricevuta di avvenuta consegna, sorted.
func (t *tracker) latencies(phase string) (toAck, toConsegna []time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.msgs {
		if r.phase != phase {
			continue
		}
		toAck = append(toAck, r.acked.Sub(r.sent))
		if !r.consegna.IsZero() {
			toConsegna = append(toConsegna, r.consegna.Sub(r.sent))
		}
	}
	slices.Sort(toAck)
	slices.Sort(toConsegna)
	return toAck, toConsegna
}

// lastConsegna returns when phase's last ricevuta di avvenuta consegna was
// seen.
func (t *tracker) lastConsegna(phase string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	var last time.Time
	for _, r := range t.msgs {
		if r.phase == phase && r.consegna.After(last) {
			last = r.consegna
		}
	}
	return last
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(float64(len(sorted))*p))
	return float64(sorted[i].Microseconds()) / 1000
}

// loadRun is a set of SMTP clients submitting until stopped.
type loadRun struct {
	phase    string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	start    time.Time
	attempts atomic.Int64
	acked    atomic.Int64
	mu       sync.Mutex
	errors   map[string]int // by SMTP code, or "connection"
	elapsed  time.Duration
}

// loadTarget is where the clients submit and how.
type loadTarget struct {
	addr   string
	caFile string
	auth   bool     // AUTH PLAIN as the client's sender mailbox
	track  *tracker // nil: the messages are not followed
	ids    *atomic.Int64
}

// startLoad starts clients SMTP clients, client i submitting as sender(i)
// to recipient(i), each on one connection it reopens after any error.
func startLoad(ctx context.Context, phase string, clients int, tgt loadTarget) (*loadRun, error) {
	roots, err := pki.LoadPool(tgt.caFile)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &loadRun{phase: phase, cancel: cancel, start: time.Now(), errors: map[string]int{}}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.client(ctx, i, tgt, roots)
		}()
	}
	return l, nil
}

func (l *loadRun) client(ctx context.Context, i int, tgt loadTarget, pool *x509.CertPool) {
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	from, to := sender(i), recipient(i)
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = dialSMTP(tgt, pool, from); err != nil {
				l.fail(err)
				sleep(ctx, 100*time.Millisecond)
				continue
			}
		}
		mid := fmt.Sprintf("<bench-%d-%d@client.test>", i, tgt.ids.Add(1))
		msg := benchMessage(from, to, mid)
		l.attempts.Add(1)
		sent := time.Now()
		err := c.SendMail(from, []string{to}, strings.NewReader(msg))
		if err != nil {
			l.fail(err)
			c.Close()
			c = nil
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		acked := time.Now()
		l.acked.Add(1)
		if tgt.track != nil {
			tgt.track.ack(mid, l.phase, sent, acked)
		}
	}
}

func dialSMTP(tgt loadTarget, roots *x509.CertPool, user string) (*smtp.Client, error) {
	c, err := smtp.DialStartTLS(tgt.addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	c.CommandTimeout, c.SubmissionTimeout = smtpTimeout, smtpTimeout
	if tgt.auth {
		if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (l *loadRun) fail(err error) {
	key := "connection"
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		key = strconv.Itoa(se.Code)
	}
	l.mu.Lock()
	l.errors[key]++
	l.mu.Unlock()
}

// stop stops the clients and waits for them.
func (l *loadRun) stop() {
	l.cancel()
	l.wg.Wait()
	l.elapsed = time.Since(l.start)
}

func (l *loadRun) errorCounts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.errors)
}

// benchBody is the text of every message: about 2 KB, a short letter with
// its quoted thread.
var benchBody = strings.Repeat("Gentile collega, in allegato la documentazione richiesta per la pratica.\r\n", 28)

func benchMessage(from, to, mid string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: bench " + mid + "\r\nMessage-ID: " + mid +
		"\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + benchBody
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// watcher follows one mailbox over IMAP IDLE and reports each ricevuta di
// avvenuta consegna to the tracker as it arrives.
type watcher struct {
	addr, user, caFile string
	track              *tracker
	next               imap.UID // first UID not yet seen
}

// watchers runs a watcher per client's sender mailbox on A until ctx is
// done; it reconnects whenever A goes away.
func (h *harness) startWatchers(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range h.opts.Clients {
		w := &watcher{addr: h.a.imap, user: sender(i), caFile: h.a.ca(), track: h.track, next: 1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := w.watch(ctx); err != nil && ctx.Err() == nil {
					sleep(ctx, 200*time.Millisecond)
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func (w *watcher) watch(ctx context.Context) error {
	roots, err := pki.LoadPool(w.caFile)
	if err != nil {
		return err
	}
	notify := make(chan struct{}, 1)
	c, err := imapclient.DialStartTLS(w.addr, &imapclient.Options{
		TLSConfig: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case notify <- struct{}{}:
				default:
				}
			}
		}},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.Login(w.user, password).Wait(); err != nil {
		return err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return err
	}
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	for ctx.Err() == nil {
		var set imap.UIDSet
		set.AddRange(w.next, 0)
		msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{header}}).Collect()
		if err != nil {
			return err
		}
		now := time.Now()
		for _, m := range msgs {
			if m.UID < w.next {
				continue // n:* names the last message even when it is below n
			}
			w.next = m.UID + 1
			kind, mid := receiptHeader(m.FindBodySection(header))
			if kind == "avvenuta-consegna" && mid != "" {
				w.track.consegna(mid, now)
			}
		}
		idle, err := c.Idle()
		if err != nil {
			return err
		}
		select {
		case <-notify:
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
		if err := idle.Close(); err != nil {
			return err
		}
		if err := idle.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// receiptHeader returns a ricevuta's X-Ricevuta and X-Riferimento-Message-ID.
func receiptHeader(b []byte) (kind, mid string) {
	hdr, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(b, "\r\n\r\n"...)))).ReadMIMEHeader()
	if err != nil && len(hdr) == 0 {
		return "", ""
	}
	return strings.TrimSpace(hdr.Get("X-Ricevuta")), strings.TrimSpace(hdr.Get("X-Riferimento-Message-ID"))
}
