package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/pec/gestore"
)

// Listener is one address serve opens.
type Listener struct {
	Name, Addr string // addr is host:port, or a path for a unix socket
	Unix       bool
}

// Listeners returns every listener the configuration names, in the order
// serve opens them, with the defaults filled in; those configured empty
// (not served) are left out.
func (c *Config) Listeners() []Listener {
	var ls []Listener
	if c.TSAURL == "" {
		addr := DefaultTSAListen
		if c.TSAListen != nil {
			addr = *c.TSAListen
		}
		ls = append(ls, Listener{Name: "tsa", Addr: addr})
	}
	s := c.Server
	if s == nil {
		s = DefaultServerConfig()
	}
	ls = append(ls,
		Listener{Name: "submission", Addr: s.Submission},
		Listener{Name: "submissions", Addr: s.Submissions},
		Listener{Name: "ricezione", Addr: s.Ricezione},
		Listener{Name: "imap", Addr: s.IMAP},
		Listener{Name: "api", Addr: c.EffectiveAPI().Listen},
		Listener{Name: "metrics", Addr: c.MetricsListen()},
	)
	if c.AdminSocket != "" {
		ls = append(ls, Listener{Name: "admin", Addr: c.Path(c.AdminSocket), Unix: true})
	}
	out := ls[:0]
	for _, l := range ls {
		if l.Addr != "" {
			out = append(out, l)
		}
	}
	return out
}

// RunCheck, the command config check, validates a custode.json without opening any store or
// listener: it exits 1 with every problem found, one a line, or prints
// the listeners and OK.
func RunCheck(ctx context.Context, e *cli.Env, args []string) error {
	var data, file string
	fs := cli.Flags(e, "config check", &data)
	fs.StringVar(&file, "config", "", "the configuration file to check (default: custode.json in the data directory); relative paths in it are relative to its directory")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	if file == "" {
		file = filepath.Join(data, File)
	}
	b, err := cli.ReadInput(ctx, e, file, cli.InputConfig)
	if err != nil {
		return err
	}
	c, problems, warnings := Check(b, filepath.Dir(file))
	for _, p := range problems {
		fmt.Fprintf(e.Stdout, "%s: %s\n", file, p)
	}
	for _, w := range warnings {
		fmt.Fprintf(e.Stdout, "%s: warning: %s\n", file, w)
	}
	if len(problems) > 0 {
		return &cli.FailedError{Msg: fmt.Sprintf("%s: %d problems", file, len(problems))}
	}
	for _, l := range c.Listeners() {
		fmt.Fprintf(e.Stdout, "listener %-12s %s\n", l.Name, l.Addr)
	}
	fmt.Fprintf(e.Stdout, "%s: OK\n", file)
	return nil
}

// Check parses and validates the bytes of a custode.json whose
// relative paths are relative to dir. It returns the configuration (nil
// if it does not parse), every problem found, and warnings: what serve
// accepts but an operator should see to.
func Check(b []byte, dir string) (_ *Config, problems, warnings []string) {
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(b, se.Offset)
			add("line %d, column %d: %v", line, col, se)
		case errors.As(err, &te):
			line, col := position(b, te.Offset)
			add("line %d, column %d: %s: want a JSON %s, got %s", line, col, te.Field, jsonType(te.Type.Kind().String()), te.Value)
		case errors.Is(err, io.EOF):
			add("empty file")
		default:
			add("%v", err) // unknown fields: `json: unknown field "x"`
		}
		return nil, problems, nil
	}
	if dec.More() {
		add("data after the configuration object")
	}
	c.Dir = dir
	for _, f := range []struct{ name, v string }{
		{"gestore", c.Gestore}, {"domain", c.Domain}, {"origin", c.Origin},
		{"ca_cert", c.CACert}, {"gestore_cert", c.GestoreCert}, {"gestore_key", c.GestoreKey},
	} {
		if strings.TrimSpace(f.v) == "" {
			add("%s: required", f.name)
		}
	}
	if c.TSAURL == "" && (c.TSACert == "" || c.TSAKey == "") {
		add("tsa_url, or tsa_cert and tsa_key: required (a remote TSA, or the built-in one's key pair)")
	}
	if c.CodGestPEC == "" {
		warnings = append(warnings, "cod_gest_pec is empty: set the gestore's code in AgID's statistics (the audit cannot write P01 without it)")
	}
	files := []struct{ name, v string }{
		{"ca_cert", c.CACert}, {"gestore_cert", c.GestoreCert}, {"gestore_key", c.GestoreKey},
		{"tsa_cert", c.TSACert}, {"tsa_key", c.TSAKey}, {"tsa_roots", c.TSARoots},
	}
	if c.Server != nil {
		files = append(files, struct{ name, v string }{"server.tls_cert", c.Server.TLSCert}, struct{ name, v string }{"server.tls_key", c.Server.TLSKey},
			struct{ name, v string }{"server.index", c.Server.Index})
		for i, p := range c.Server.PeerCAs {
			files = append(files, struct{ name, v string }{fmt.Sprintf("server.peer_cas[%d]", i), p})
		}
	}
	if c.API != nil {
		files = append(files, struct{ name, v string }{"api.client_ca", c.API.ClientCA})
	}
	for _, f := range files {
		if f.v == "" {
			continue
		}
		if st, err := os.Stat(c.Path(f.v)); err != nil {
			add("%s: %v", f.name, err)
		} else if st.IsDir() {
			add("%s: %s is a directory", f.name, c.Path(f.v))
		}
	}
	if c.TSAURL != "" && !strings.HasPrefix(c.TSAURL, "http://") && !strings.HasPrefix(c.TSAURL, "https://") {
		add("tsa_url: want an http:// or https:// URL, got %q", c.TSAURL)
	}
	if c.CheckpointInterval != "" {
		if d, err := time.ParseDuration(c.CheckpointInterval); err != nil || d <= 0 {
			add("checkpoint_interval: want a positive duration such as 10s, got %q", c.CheckpointInterval)
		}
	}
	if a := c.Archive; a != nil && a.S3Endpoint != "" && a.S3Bucket == "" {
		add("archive.s3_bucket: required with s3_endpoint")
	}
	if s := c.Server; s != nil {
		if s.Clamd != "" {
			if network, addr, ok := strings.Cut(s.Clamd, ":"); !ok || addr == "" || (network != "unix" && network != "tcp") {
				add(`server.clamd: want "unix:/path/clamd.sock" or "tcp:host:port", got %q`, s.Clamd)
			}
		}
		switch gestore.NonPECPolicy(s.NonPEC) {
		case "", gestore.NonPECAnomalia, gestore.NonPECReject, gestore.NonPECFolder:
		default:
			add("server.non_pec: want anomalia, reject or folder, got %q", s.NonPEC)
		}
		for mb, p := range s.Mailboxes {
			switch gestore.NonPECPolicy(p.NonPEC) {
			case "", gestore.NonPECAnomalia, gestore.NonPECReject, gestore.NonPECFolder:
			case gestore.NonPECForward:
				if p.ForwardTo == "" {
					add("server.mailboxes[%q]: non_pec forward needs forward_to", mb)
				}
			default:
				add("server.mailboxes[%q].non_pec: want anomalia, reject, folder or forward, got %q", mb, p.NonPEC)
			}
		}
		for d, r := range s.Routes {
			if err := checkHostPort(r); err != nil {
				add("server.routes[%q]: %v", d, err)
			}
		}
		if s.MaxSize < 0 || s.MaxRecipients < 0 || s.PasswordIterations < 0 {
			add("server: max_size, max_recipients and password_iterations cannot be negative")
		}
	}
	seen := map[string]string{}
	for _, l := range c.Listeners() {
		if l.Unix {
			if st, err := os.Stat(filepath.Dir(l.Addr)); err != nil || !st.IsDir() {
				add("%s: the directory of %s does not exist", l.Name, l.Addr)
			}
			continue
		}
		if err := checkHostPort(l.Addr); err != nil {
			add("%s listener: %v", l.Name, err)
			continue
		}
		if _, port, _ := net.SplitHostPort(l.Addr); port == "0" {
			continue // a port of the kernel's choosing never clashes
		}
		if other, ok := seen[l.Addr]; ok {
			add("%s listener: %s is %s's too", l.Name, l.Addr, other)
		}
		seen[l.Addr] = l.Name
	}
	return &c, problems, warnings
}

// checkHostPort checks a host:port address.
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("want a port from 0 to 65535 in %q", addr)
	}
	return nil
}

// position returns the line and column of byte offset off of b.
func position(b []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(b)))
	before := b[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// jsonType names a Go kind as JSON does.
func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "ptr":
		return "value"
	}
	return "number"
}

// RunInit is the command init: it creates a data directory (Init) and
// prints what it made.
func RunInit(ctx context.Context, e *cli.Env, args []string) error {
	var data, gestore, domain string
	fs := cli.Flags(e, "init", &data)
	fs.StringVar(&gestore, "gestore", "Custode Dev PEC", "the gestore's name (providerName)")
	fs.StringVar(&domain, "domain", "pec.custode.test", "the gestore's PEC domain")
	if err := cli.Parse(fs, args, 0); err != nil {
		return err
	}
	c, err := Init(data, gestore, domain, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "created %s: development PKI in %s, configuration in %s\n",
		data, c.Path("pki"), c.Path(File))
	fmt.Fprintln(e.Stdout, "the development CA is not for production: point custode.json at real keys and certificates")
	return nil
}
