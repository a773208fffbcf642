package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/custode/custode/cmd/internal/admin"
	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/retention"
)

// TestAdminBoolFlags checks admin.BoolFlags against every remote command's flags,
// as its -h lists them: a boolean flag not listed would make the client
// take the next argument for its value.
func TestAdminBoolFlags(t *testing.T) {
	for name := range admin.RemoteCommands {
		c, _ := lookup(strings.Fields(name))
		var out bytes.Buffer
		e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Log: cli.DiscardLogger()}
		c.Run(context.Background(), e, []string{"-h"})
		for line := range strings.Lines(out.String()) {
			f, ok := strings.CutPrefix(line, "  -")
			if !ok {
				continue
			}
			fields := strings.Fields(f)
			isBool := len(fields) == 1 // "-name" alone: boolean; "-name type": a value
			if isBool != admin.BoolFlags[fields[0]] && !admin.PathFlags[fields[0]] {
				t.Errorf("%s: flag -%s boolean=%v, admin.BoolFlags says %v", name, fields[0], isBool, admin.BoolFlags[fields[0]])
			}
		}
	}
}

// adminFixture is a data directory whose ledger is open, as in a running
// server, with its admin socket served.
type adminFixture struct {
	data string
	c    *config.Config
	srv  *admin.Server
	stop func()
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	if code, out := custode(t, "", "init", "-data", data, "-domain", "pec.prova.test"); code != 0 {
		t.Fatalf("init: %s", out)
	}
	c, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	e := &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Log: cli.DiscardLogger()}
	l, err := c.OpenLedger(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := admin.Listen(c.AdminSocketPath())
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(c.AdminSocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket mode %v, want a socket with 0600", st.Mode())
	}
	holds, err := retention.OpenRegistry(c.HoldsFile())
	if err != nil {
		t.Fatal(err)
	}
	s := &admin.Server{Commands: adminCommands(), Live: &cli.Live{Dir: data, Ledger: l, Holds: holds}, Log: cli.DiscardLogger(), UID: os.Getuid()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Serve(ctx, ln); err != nil {
			t.Error(err)
		}
	}()
	f := &adminFixture{data: data, c: c, srv: s}
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			l.Close()
		})
	}
	t.Cleanup(f.stop)
	return f
}

// remote runs args through the fixture's admin socket.
func remote(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	e := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &out, Log: cli.DiscardLogger()}
	code, ok := admin.RunRemote(context.Background(), e, adminCommands(), args)
	if !ok {
		t.Fatalf("custode %s did not go through the admin socket", strings.Join(args, " "))
	}
	return code, out.String()
}

func TestAdminSocketSameOutput(t *testing.T) {
	f := newAdminFixture(t)
	var events strings.Builder
	for i := range 5 {
		fmt.Fprintf(&events, `{"kind":"accettazione","identificativo":"opec%d@pec.prova.test","riferimento_temporale":"2026-11-23T10:00:%02d+01:00","mittente":"a@pec.prova.test","destinatari":[{"indirizzo":"b@pec.altro.test","tipo":"certificato"}],"gestore":"Prova","oggetto":"n. %d"}`+"\n", i, i, i)
	}
	// While the ledger is open here, the command can only have run over
	// the open ledger, through the socket.
	if code, out := remote(t, events.String(), "ledger", "append", "-data", f.data); code != 0 || !strings.HasSuffix(out, "4\n") {
		t.Fatalf("ledger append through the socket: %d %s", code, out)
	}
	code, liveGet := remote(t, "", "ledger", "get", "-data", f.data, "2")
	if code != 0 {
		t.Fatalf("ledger get through the socket: %d %s", code, liveGet)
	}
	code, liveVerify := remote(t, "", "ledger", "verify", "-data", f.data)
	if code != 0 || !strings.Contains(liveVerify, "OK") {
		t.Fatalf("ledger verify through the socket: %d %s", code, liveVerify)
	}
	// A usage error: the same status and message.
	code, liveBad := remote(t, "", "ledger", "get", "-data", f.data, "-nosuchflag")
	if code != 2 {
		t.Fatalf("a bad flag through the socket: exit %d %s, want 2", code, liveBad)
	}
	f.stop()
	if _, ok := admin.RunRemote(context.Background(), &cli.Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, adminCommands(), []string{"ledger", "get", "-data", f.data, "2"}); ok {
		t.Fatal("with the server stopped, the command still went to a socket")
	}
	code, localGet := custode(t, "", "ledger", "get", "-data", f.data, "2")
	if code != 0 || localGet != liveGet {
		t.Fatalf("ledger get: through the socket %q, on the stores %q (%d)", liveGet, localGet, code)
	}
	code, localBad := custode(t, "", "ledger", "get", "-data", f.data, "-nosuchflag")
	if code != 2 || localBad != liveBad {
		t.Fatalf("a bad flag: through the socket %q, on the stores %q", liveBad, localBad)
	}
}

// TestAdminConcurrentHolds places holds through the socket at once: none
// is lost (every command changes them through the server's one registry).
func TestAdminConcurrentHolds(t *testing.T) {
	f := newAdminFixture(t)
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	outs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			e := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Log: cli.DiscardLogger()}
			codes[i], _ = admin.RunRemote(context.Background(), e, adminCommands(), []string{"hold", "place", "-data", f.data, "-case", fmt.Sprintf("causa-%d", i),
				"-mailbox", fmt.Sprintf("m%d@pec.prova.test", i), "-reason", "r", "-actor", "a"})
			outs[i] = out.String()
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 0 {
			t.Fatalf("hold place %d: %d %s", i, codes[i], outs[i])
		}
	}
	f.stop()
	reg, err := retention.OpenRegistry(f.c.HoldsFile())
	if err != nil {
		t.Fatal(err)
	}
	holds, err := reg.Holds()
	if err != nil {
		t.Fatal(err)
	}
	if len(holds) != n {
		t.Fatalf("%d holds in the registry after %d placed at once", len(holds), n)
	}
}

func TestAdminSocketRefusals(t *testing.T) {
	f := newAdminFixture(t)
	other := filepath.Join(t.TempDir(), "other")
	if code, out := custode(t, "", "init", "-data", other, "-domain", "pec.altro.test"); code != 0 {
		t.Fatalf("init: %s", out)
	}
	ask := func(req admin.Request) (int, string) {
		t.Helper()
		conn, err := net.Dial("unix", f.c.AdminSocketPath())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var out bytes.Buffer
		code, err := admin.Exchange(context.Background(), conn, req, &out, &out)
		if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}
	tests := []struct {
		name string
		req  admin.Request
		want string
	}{
		{"a command run only locally", admin.Request{Version: admin.Version, Args: []string{"init", "-data", f.data}}, "not run through the admin socket"},
		{"serve", admin.Request{Version: admin.Version, Args: []string{"serve"}}, "not run through the admin socket"},
		{"unknown", admin.Request{Version: admin.Version, Args: []string{"rm", "-rf"}}, "not run through the admin socket"},
		{"another version", admin.Request{Version: 99, Args: []string{"ledger", "verify"}}, "protocol version 99"},
		{"another data directory", admin.Request{Version: admin.Version, Args: []string{"ledger", "verify", "-data", other}}, "serves the data directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := ask(tt.req)
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d %q, want a failure saying %q", code, out, tt.want)
			}
		})
	}
	// A peer of another uid is refused before its request is read.
	sock := filepath.Join(t.TempDir(), "other.sock")
	ln, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &admin.Server{Commands: adminCommands(), Live: f.srv.Live, Log: cli.DiscardLogger(), UID: os.Getuid(),
		Peer: func(*net.UnixConn) (admin.PeerCred, error) {
			return admin.PeerCred{PID: 7, UID: os.Getuid() + 4242}, nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// The refusal reaches the client even when the server closed the
	// connection while the client was still writing its request (a large
	// standard input: the write fails with a broken pipe).
	for _, stdin := range []int{0, 8 << 20} {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var out bytes.Buffer
		req := admin.Request{Version: admin.Version, Args: []string{"ledger", "append", "-data", f.data}, Stdin: make([]byte, stdin)}
		code, err := admin.Exchange(context.Background(), conn, req, &out, &out)
		if err != nil || code != 1 || !strings.Contains(out.String(), "may not administer") {
			t.Fatalf("another uid, %d bytes of stdin: exit %d %v %q, want a refusal", stdin, code, err, out.String())
		}
	}
}
