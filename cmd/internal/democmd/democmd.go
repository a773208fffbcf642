// Package democmd holds custode demo: two gestori on loopback exchange
// messages, and it prints the receipts and the ledger entries.
package democmd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/igpec"
	"github.com/custode/custode/pec/mailstore"
)

// demoGestore is one of the two gestori of custode demo.
type demoGestore struct {
	name, domain, user string
	c                  *config.Config
	l                  *ledger.Ledger
	g                  *config.Gestore
}

// ServeFunc starts the SMTP and IMAP points of a gestore opened from c,
// serving until ctx is done; wg counts what it started.
type ServeFunc func(ctx context.Context, e *cli.Env, c *config.Config, g *config.Gestore, wg *sync.WaitGroup) error

// Run returns custode demo, which serves each gestore with serve: it
// starts two gestori on loopback, each with its own data directory, keys
// and ledger, sends a message from a titolare of the first to one of the
// second, and prints the messages each titolare receives and the ledger
// entries both gestori wrote.
func Run(serve ServeFunc) func(ctx context.Context, e *cli.Env, args []string) error {
	return func(ctx context.Context, e *cli.Env, args []string) error {
		return run(ctx, e, args, serve)
	}
}

func run(ctx context.Context, e *cli.Env, args []string, serveGestore ServeFunc) error {
	var dir string
	var keep bool
	fs := cli.Flags(e, "demo", nil)
	fs.StringVar(&dir, "dir", "", "where to put the two data directories (default: a temporary directory)")
	fs.BoolVar(&keep, "keep", false, "keep the data directories afterwards")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "custode-demo-")
		if err != nil {
			return err
		}
		dir = tmp
		if !keep {
			defer os.RemoveAll(tmp)
		}
	}
	quiet := &cli.Env{Stdin: e.Stdin, Stdout: e.Stdout, Stderr: e.Stderr, Log: cli.DiscardLogger()}
	gs := []*demoGestore{
		{name: "Alfa PEC S.p.A.", domain: "pec.alfa.test", user: "mario.rossi@pec.alfa.test"},
		{name: "Beta PEC S.p.A.", domain: "pec.beta.test", user: "lucia.bianchi@pec.beta.test"},
	}
	const password = "demo-password"
	var providers []*igpec.Provider
	for _, g := range gs {
		c, err := config.Init(filepath.Join(dir, g.domain), g.name, g.domain, time.Now())
		if err != nil {
			return err
		}
		p, err := c.OwnProvider()
		if err != nil {
			return err
		}
		providers = append(providers, p)
		g.c = c
	}
	var ldif bytes.Buffer
	if err := igpec.WriteLDIF(&ldif, providers...); err != nil {
		return err
	}
	addrs := map[string]string{}
	for _, g := range gs {
		if err := os.WriteFile(g.c.Path("igpec.ldif"), ldif.Bytes(), 0o644); err != nil {
			return err
		}
		for _, point := range []string{"submission", "ricezione", "imap"} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			addrs[g.domain+"/"+point] = ln.Addr().String()
			ln.Close()
		}
	}
	var wg sync.WaitGroup
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stop()
		wg.Wait()
		for _, g := range gs {
			if g.g != nil {
				g.g.Close()
			}
			if g.l != nil {
				g.l.Close()
			}
		}
	}()
	for i, g := range gs {
		other := gs[1-i]
		g.c.Server.Index = "igpec.ldif"
		g.c.Server.PeerCAs = []string{other.c.Path(other.c.CACert)}
		g.c.Server.PasswordIterations = 10000
		// The custode.json kept keeps init's listeners: the demo's ports
		// are its own, for this run only.
		if err := g.c.Save(); err != nil {
			return err
		}
		g.c.Server.Submission, g.c.Server.Submissions = addrs[g.domain+"/submission"], ""
		g.c.Server.Ricezione, g.c.Server.IMAP = addrs[g.domain+"/ricezione"], addrs[g.domain+"/imap"]
		g.c.Server.Routes = map[string]string{other.domain: addrs[other.domain+"/ricezione"]}
		l, err := g.c.OpenLedger(ctx, quiet)
		if err != nil {
			return err
		}
		g.l = l
		rg, err := g.c.OpenGestore(ctx, quiet, l, time.Now)
		if err != nil {
			return err
		}
		g.g = rg
		if err := rg.Mailboxes.AddMailbox(ctx, g.user, password, 0); err != nil {
			return err
		}
		if err := serveGestore(bg, quiet, g.c, rg, &wg); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "gestore %s (%s): submission %s, ricezione %s, imap %s, data %s\n",
			g.name, g.domain, g.c.Server.Submission, g.c.Server.Ricezione, g.c.Server.IMAP, g.c.Dir)
	}

	a, b := gs[0], gs[1]
	msg := "From: " + a.user + "\r\nTo: " + b.user + "\r\nSubject: Contratto di fornitura\r\n" +
		"Message-ID: <demo." + fmt.Sprint(time.Now().UnixNano()) + "@client.example>\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\nGentile Lucia,\r\nle invio il contratto firmato.\r\n"
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(a.c.Path(a.c.CACert)))
	sc, err := smtp.DialStartTLS(a.c.Server.Submission, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		return err
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", a.user, password)); err != nil {
		return err
	}
	if err := sc.SendMail(a.user, []string{b.user}, strings.NewReader(msg)); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	fmt.Fprintf(e.Stdout, "\n%s sent a message to %s through %s: 250\n", a.user, b.user, a.name)

	deadline := time.Now().Add(30 * time.Second)
	var identificativo string
	for _, want := range []struct {
		g *demoGestore
		n int
	}{{a, 2}, {b, 1}} {
		var msgs []*pec.Message
		for {
			if msgs, err = inbox(ctx, want.g.g.Mailboxes, want.g.user); err != nil {
				return err
			}
			if len(msgs) >= want.n || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(msgs) < want.n {
			return fmt.Errorf("%s received %d messages within 30 s, want %d", want.g.user, len(msgs), want.n)
		}
		fmt.Fprintf(e.Stdout, "\nmailbox of %s:\n", want.g.user)
		for _, m := range msgs {
			fmt.Fprintf(e.Stdout, "  %-28s %s\n", m.Kind.Name(), m.Header.Subject)
			if m.Daticert != nil {
				identificativo = m.Daticert.Identificativo
				fmt.Fprintf(e.Stdout, "  %-28s identificativo %s, gestore %s, %s\n", "", m.Daticert.Identificativo,
					m.Daticert.GestoreEmittente, m.Daticert.Time.Format(time.RFC3339))
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // let A record the last ricevuta
	for _, g := range gs {
		page, err := g.l.Find(ctx, ledger.Query{Identificativo: identificativo})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "\nledger of %s, entries of %s:\n", g.name, identificativo)
		for _, en := range page.Entries {
			raw, err := en.Encode()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "  #%d %s\n", en.Seq, raw)
		}
	}
	if keep {
		fmt.Fprintf(e.Stdout, "\ndata directories kept in %s\n", dir)
	}
	return nil
}

// inbox returns the parsed messages of address's INBOX.
func inbox(ctx context.Context, st *mailstore.Store, address string) ([]*pec.Message, error) {
	_, list, err := st.Messages(ctx, address, mailstore.Inbox)
	if err != nil {
		return nil, err
	}
	var out []*pec.Message
	for _, m := range list {
		b, err := st.Body(ctx, address, mailstore.Inbox, m.UID)
		if err != nil {
			return nil, err
		}
		pm, err := pec.Parse(b, pec.ParseOptions{})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("message %d of %s", m.UID, address), err)
		}
		out = append(out, pm)
	}
	return out, nil
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
