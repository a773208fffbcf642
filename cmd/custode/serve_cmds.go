package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/cmd/internal/admin"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/ledger/record"
	"github.com/custode/custode/pec/imapserver"
	"github.com/custode/custode/pec/mailstore"
	"github.com/custode/custode/retention"
)

// heartbeatInterval is how often custode serve touches its running marker:
// the precision of the start of an outage recorded after a crash.
const heartbeatInterval = 5 * time.Second

// runServe runs the main job: the ledger with its checkpoints, the built-in
// TSA, the sealing of segments into the archive and, when the data
// directory configures it, the gestore's SMTP and IMAP points.
func runServe(ctx context.Context, e *cli.Env, args []string) error {
	var data, tsaListen string
	var archiveOnly bool
	var clockOffsetFile string
	fs := cli.Flags(e, "serve", &data)
	fs.StringVar(&tsaListen, "tsa-listen", config.DefaultTSAListen, "address of the built-in TSA's HTTP endpoint (empty: none; default: custode.json's tsa_listen, else 127.0.0.1:8318)")
	fs.BoolVar(&archiveOnly, "archive-only", false, "run the ledger, checkpoints and sealing only, without the gestore's SMTP and IMAP points")
	fs.StringVar(&clockOffsetFile, "clock-offset-file", "", "tests only (custode-bench's clock-jump fault): a file holding a duration such as 2h or -30m, added to the gestore's clock")
	setLogFormat := logFormatFlag(fs, e)
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if err := setLogFormat(); err != nil {
		return err
	}
	// Absolute, so that the admin socket's commands, given absolute
	// paths, find the same data directory.
	data, err := config.AbsData(data)
	if err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		if _, statErr := os.Stat(data); !errors.Is(statErr, os.ErrNotExist) {
			return err
		}
		e.Log.Info("no data directory: creating one with a development PKI", "dir", data)
		if c, err = config.Init(data, "Custode Dev PEC", "pec.custode.test", time.Now()); err != nil {
			return err
		}
	}
	tsaListen = c.TSAListenAddr(fs, tsaListen)
	l, err := c.OpenLedger(ctx, e)
	if err != nil {
		return err
	}
	defer l.Close()
	h := l.Head()
	e.Log.Info("ledger open", "dir", c.LedgerDir(), "entries", h.Size, "root", hex.EncodeToString(h.Root[:]))

	var wg sync.WaitGroup
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopBackground()
		wg.Wait()
	}()
	// The running marker: found at start, the previous run never stopped
	// cleanly, and its outage is recorded.
	marker := record.Running{Path: filepath.Join(c.Dir, "serve.running"), Service: "gestore"}
	now := time.Now()
	if from, err := marker.Start(ctx, c.Recorder(l), now); err != nil {
		return err
	} else if !from.IsZero() {
		e.Log.Warn("the previous run did not stop cleanly: outage recorded", "from", from.UTC().Format(time.RFC3339), "to", now.UTC().Format(time.RFC3339))
	}
	// Any return is a clean stop, an error included; a crash or a kill
	// never gets here, and leaves the marker for the next start.
	defer func() {
		if err := marker.Stop(); err != nil {
			e.Log.Error("remove the running marker", "err", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		marker.Heartbeat(bg, heartbeatInterval, func(err error) { e.Log.Warn("heartbeat", "err", err) })
	}()
	if tsaListen != "" && c.TSAURL == "" {
		a, err := c.Authority()
		if err != nil {
			return err
		}
		ln, err := listen(tsaListen)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Serve(bg, ln); err != nil {
				e.Log.Error("tsa: serve", "err", err)
			}
		}()
		e.Log.Info("built-in TSA listening", "url", "http://"+ln.Addr().String()+"/")
	}
	store, err := c.ArchiveStore(ctx)
	if err != nil {
		return err
	}
	// The applied policy's log retention, if any, decides how long sealed
	// segments are locked (never below the legal minimum: the policy
	// check refuses less), as a duration never shorter than it from any
	// day; without one the sealer keeps the legal minimum.
	var retainFor time.Duration
	if pol, err := c.PolicyDir().Active(); err != nil {
		return err
	} else if pol != nil {
		retainFor = retention.LockFor(retention.Of(pol).Log)
	}
	sealer, err := seal.New(seal.Options{Ledger: l, Store: store, Logger: e.Log, RetainFor: retainFor})
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sealer.Run(bg)
	}()

	reload := &admin.Reloaders{Log: e.Log}
	var mailboxes *mailstore.Store
	if !archiveOnly {
		if c.Server == nil {
			c.Server = config.DefaultServerConfig()
		}
		if err := c.WriteTLSCertificate(time.Now()); err != nil {
			return err
		}
		g, err := c.OpenGestore(ctx, e, l, clockWithOffset(clockOffsetFile))
		if err != nil {
			return err
		}
		defer g.Close()
		mailboxes = g.Mailboxes
		// The points serve the newest certificate: renewed, it is read
		// again on SIGHUP.
		if reload.Cert, err = admin.NewCertificate(c.Path(c.Server.TLSCert), c.Path(c.Server.TLSKey)); err != nil {
			return err
		}
		reload.Cert.Use(g.TLS)
		if err := serveGestore(bg, e, c, g, &wg); err != nil {
			return err
		}
		if err := serveAPI(bg, e, c, l, store, g.Mailboxes, reload, &wg); err != nil {
			return err
		}
		if err := serveMetrics(bg, e, c, running{l, sealer, store, g, g.Mailboxes}, &wg); err != nil {
			return err
		}
	} else {
		if mailboxes, err = c.OpenMailboxes(ctx, e, time.Now, l); err != nil {
			return err
		}
		defer mailboxes.Close()
		if err := serveAPI(bg, e, c, l, store, mailboxes, reload, &wg); err != nil {
			return err
		}
		if err := serveMetrics(bg, e, c, running{l, sealer, store, nil, mailboxes}, &wg); err != nil {
			return err
		}
	}
	if err := admin.Serve(bg, e, c, l, mailboxes, reload, adminCommands(), &wg); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		admin.ReloadOnSIGHUP(bg, reload)
	}()
	<-ctx.Done()
	// Stop the listeners, the queue's deliveries and the sealer before the
	// stores they use close (deferred above).
	stopBackground()
	wg.Wait()
	e.Log.Info("stopping: a last checkpoint covers any entries not yet covered")
	return nil
}

// clockWithOffset returns time.Now or, with file set, time.Now plus the
// duration the file holds, re-read at most every 100 ms (a missing or
// unreadable file means no offset). For tests only: custode-bench jumps the
// gestore's clock with it.
func clockWithOffset(file string) func() time.Time {
	if file == "" {
		return time.Now
	}
	var mu sync.Mutex
	var offset time.Duration
	var read time.Time
	return func() time.Time {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if now.Sub(read) >= 100*time.Millisecond {
			read, offset = now, 0
			if b, err := cli.ReadInput(context.Background(), nil, file, cli.InputSmall); err == nil {
				if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
					offset = d
				}
			}
		}
		return now.Add(offset)
	}
}

// serveGestore opens the configured listeners and serves the gestore's
// points on them, and runs its queue and tracker, until ctx is done.
func serveGestore(ctx context.Context, e *cli.Env, c *config.Config, g *config.Gestore, wg *sync.WaitGroup) error {
	s := c.Server
	type point struct {
		name, addr string
		serve      func(net.Listener) error
	}
	imap, err := imapserver.New(imapserver.Options{
		Store: g.Mailboxes, TLSConfig: g.TLS, Logger: e.Log, InsecureAuth: s.InsecureIMAPAuth,
		Greeting: c.Gestore + " IMAP",
	})
	if err != nil {
		return err
	}
	points := []point{
		{"submission (STARTTLS)", s.Submission, func(ln net.Listener) error { return g.Server.ServeSubmission(ln, false) }},
		{"submission (TLS)", s.Submissions, func(ln net.Listener) error { return g.Server.ServeSubmission(ln, true) }},
		{"ricezione", s.Ricezione, g.Server.ServeRicezione},
		{"imap", s.IMAP, imap.Serve},
	}
	var lns []net.Listener
	for _, p := range points {
		if p.addr == "" {
			continue
		}
		ln, err := listen(p.addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("%s: %w", p.name, err)
		}
		lns = append(lns, ln)
		e.Log.Info("gestore listening", "point", p.name, "addr", ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.serve(ln); err != nil && ctx.Err() == nil {
				e.Log.Error("gestore: serve", "point", p.name, "err", err)
			}
		}()
	}
	if g.Archivio != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Archivio.Run(ctx); err != nil {
				e.Log.Error("archivio di sicurezza: run", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := g.Server.Run(ctx); err != nil {
			e.Log.Error("gestore: run", "err", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		imap.Close()
		g.Server.Close()
	}()
	return nil
}
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

func runTSAServe(ctx context.Context, e *cli.Env, args []string) error {
	var data, addr string
	fs := cli.Flags(e, "tsa serve", &data)
	fs.StringVar(&addr, "listen", "127.0.0.1:8318", "address to listen on")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := config.Load(data)
	if err != nil {
		return err
	}
	a, err := c.Authority()
	if err != nil {
		return err
	}
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	e.Log.Info("built-in TSA listening", "url", "http://"+ln.Addr().String()+"/", "certificate", a.Certificate().Subject.String())
	return a.Serve(ctx, ln)
}
