package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/retention"
)

func TestAdminFrames(t *testing.T) {
	var buf bytes.Buffer
	req := adminRequest{Version: adminVersion, Args: []string{"ledger", "get", "1"}, Stdin: []byte("x\x00y")}
	if err := writeFrame(&buf, req); err != nil {
		t.Fatal(err)
	}
	var got adminRequest
	if err := readFrame(bytes.NewReader(buf.Bytes()), maxAdminRequest, &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(req) {
		t.Fatalf("round trip: %v, want %v", got, req)
	}
	tests := []struct {
		name, frame, want string
	}{
		{"larger than the bound", "\x7f\xff\xff\xff{}", "more than"},
		{"truncated header", "\x00\x00", "read"},
		{"truncated body", "\x00\x00\x00\x10{}", "read"},
		{"not JSON", "\x00\x00\x00\x03abc", "bad frame"},
		{"empty", "", "read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readFrame(strings.NewReader(tt.frame), 1<<10, &got)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("readFrame: %v, want an error with %q", err, tt.want)
			}
		})
	}
	// A frame just over the bound is refused before its body is read.
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], 1025)
	if err := readFrame(bytes.NewReader(h[:]), 1024, &got); err == nil || !strings.Contains(err.Error(), "more than the 1024") {
		t.Fatalf("a 1025-byte frame with a bound of 1024: %v", err)
	}
}

func TestCheckPeer(t *testing.T) {
	tests := []struct {
		peer, server int
		ok           bool
	}{
		{1000, 1000, true},
		{0, 1000, true},
		{1001, 1000, false},
		{1000, 0, false},
		{0, 0, true},
	}
	for _, tt := range tests {
		err := checkPeer(peerCred{PID: 42, UID: tt.peer}, tt.server)
		if (err == nil) != tt.ok {
			t.Errorf("peer uid %d, server uid %d: %v, want ok=%v", tt.peer, tt.server, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("uid %d", tt.peer)) {
			t.Errorf("the refusal does not name the peer: %v", err)
		}
	}
}

func TestPeerUser(t *testing.T) {
	if got := peerUser(0); got != "root" {
		t.Errorf("peerUser(0) = %q, want root", got)
	}
	if got := peerUser(1 << 30); got != "uid 1073741824" {
		t.Errorf("a uid without a user: %q", got)
	}
}

func TestAdminArgs(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string { return filepath.Join(wd, p) }
	tests := []struct {
		name string
		args []string
		want []string
		data string
	}{
		{"ledger get", []string{"5"}, []string{"-data=" + abs(cli.DefaultDataDir), "5"}, cli.DefaultDataDir},
		{"export receipt", []string{"-data", "d", "-id", "x", "-out", "b.zip"}, []string{"-data=" + abs("d"), "-id", "x", "-out=" + abs("b.zip")}, "d"},
		{"ledger checkpoints", []string{"--data=/abs/d", "-write=cps"}, []string{"-data=/abs/d", "-write=" + abs("cps")}, "/abs/d"},
		{"policy apply", []string{"-data", "d", "-actor", "me", "p.yaml"}, []string{"-data=" + abs("d"), "-actor", "me", abs("p.yaml")}, "d"},
		{"policy apply", []string{"-data", "d", "-"}, []string{"-data=" + abs("d"), "-"}, "d"},
		{"hold place", []string{"-dry-run", "-case", "c", "-out", "o"}, []string{"-data=" + abs(cli.DefaultDataDir), "-dry-run", "-case", "c", "-out=" + abs("o")}, cli.DefaultDataDir},
		{"mailbox add", []string{"-data=d", "a@b.test"}, []string{"-data=" + abs("d"), "a@b.test"}, "d"},
	}
	for _, tt := range tests {
		got, data, err := adminArgs(tt.name, tt.args)
		if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") || data != tt.data {
			t.Errorf("adminArgs(%s, %q) = %q, %q, %v; want %q, %q", tt.name, tt.args, got, data, err, tt.want, tt.data)
		}
	}
}

// TestAdminBoolFlags checks boolFlags against every remote command's flags,
// as its -h lists them: a boolean flag not listed would make the client
// take the next argument for its value.
func TestAdminBoolFlags(t *testing.T) {
	for name := range remoteCommands {
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
			if isBool != boolFlags[fields[0]] && !pathFlags[fields[0]] {
				t.Errorf("%s: flag -%s boolean=%v, boolFlags says %v", name, fields[0], isBool, boolFlags[fields[0]])
			}
		}
	}
}

func TestAdminStdin(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"mailbox add", []string{"-data=/d", "a@b.test"}, "password1\nmore\n", "password1\n"},
		{"ledger append", []string{"-data=/d"}, "{}\n{}\n", "{}\n{}\n"},
		{"ledger append", []string{"-data=/d", "/f.jsonl"}, "{}\n", ""},
		{"policy apply", []string{"-data=/d", "-"}, "version: 1\n", "version: 1\n"},
		{"ledger verify", []string{"-data=/d"}, "ignored", ""},
	}
	for _, tt := range tests {
		got, err := adminStdin(strings.NewReader(tt.stdin), tt.name, tt.args)
		if err != nil || string(got) != tt.want {
			t.Errorf("adminStdin(%s, %q) = %q, %v; want %q", tt.name, tt.args, got, err, tt.want)
		}
	}
}

// adminFixture is a data directory whose ledger is open, as in a running
// server, with its admin socket served.
type adminFixture struct {
	data string
	c    *config.Config
	srv  *adminServer
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
	ln, err := listenAdmin(c.AdminSocketPath())
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
	s := &adminServer{live: &cli.Live{Dir: data, Ledger: l, Holds: holds}, log: cli.DiscardLogger(), uid: os.Getuid()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.serve(ctx, ln); err != nil {
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
	code, ok := runRemote(context.Background(), e, args)
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
	if _, ok := runRemote(context.Background(), &cli.Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, []string{"ledger", "get", "-data", f.data, "2"}); ok {
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
			codes[i], _ = runRemote(context.Background(), e, []string{"hold", "place", "-data", f.data, "-case", fmt.Sprintf("causa-%d", i),
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
	ask := func(req adminRequest) (int, string) {
		t.Helper()
		conn, err := net.Dial("unix", f.c.AdminSocketPath())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var out bytes.Buffer
		code, err := exchange(context.Background(), conn, req, &out, &out)
		if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	}
	tests := []struct {
		name string
		req  adminRequest
		want string
	}{
		{"a command run only locally", adminRequest{Version: adminVersion, Args: []string{"init", "-data", f.data}}, "not run through the admin socket"},
		{"serve", adminRequest{Version: adminVersion, Args: []string{"serve"}}, "not run through the admin socket"},
		{"unknown", adminRequest{Version: adminVersion, Args: []string{"rm", "-rf"}}, "not run through the admin socket"},
		{"another version", adminRequest{Version: 99, Args: []string{"ledger", "verify"}}, "protocol version 99"},
		{"another data directory", adminRequest{Version: adminVersion, Args: []string{"ledger", "verify", "-data", other}}, "serves the data directory"},
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
	ln, err := listenAdmin(sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &adminServer{live: f.srv.live, log: cli.DiscardLogger(), uid: os.Getuid(),
		peer: func(*net.UnixConn) (peerCred, error) { return peerCred{PID: 7, UID: os.Getuid() + 4242}, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	code, err := exchange(context.Background(), conn, adminRequest{Version: adminVersion, Args: []string{"ledger", "verify", "-data", f.data}}, &out, &out)
	if err != nil || code != 1 || !strings.Contains(out.String(), "may not administer") {
		t.Fatalf("another uid: exit %d %v %q, want a refusal", code, err, out.String())
	}
}

func TestListenAdmin(t *testing.T) {
	dir := t.TempDir()
	// A stale socket of a server that crashed is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := listenAdmin(stale)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln2.Close()
	// Any other file is left alone.
	file := filepath.Join(dir, "precious")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listenAdmin(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "data" {
		t.Fatalf("the file was touched: %q %v", b, err)
	}
}

func TestTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-tokens")
	tf, err := newTokenFile(path, cli.DiscardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if n := tf.get().Len(); n != 0 {
		t.Fatalf("a missing file: %d tokens", n)
	}
	var lines string
	for i := range 3 {
		tok, _ := httpapi.NewToken()
		lines += httpapi.TokenLine(fmt.Sprintf("user%d", i), tok) + "\n"
		if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
		if n := tf.get().Len(); n != i+1 {
			t.Fatalf("after writing %d tokens, %d in force", i+1, n)
		}
	}
	// A broken file keeps the last good tokens.
	if err := os.WriteFile(path, []byte(lines+"broken line here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := tf.get().Len(); n != 3 {
		t.Fatalf("a broken file: %d tokens in force, want the 3 read before", n)
	}
}

func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.NewDevSet("Prova", "pec.prova.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
	issue := func() {
		kp, err := pki.IssueTLSServer(ca.CA, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := kp.WriteFiles(certFile, keyFile); err != nil {
			t.Fatal(err)
		}
	}
	issue()
	c, err := newCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := c.get(nil)
	issue()
	if again, _ := c.get(nil); !bytes.Equal(again.Certificate[0], first.Certificate[0]) {
		t.Fatal("the certificate changed before a reload")
	}
	if err := c.reload(); err != nil {
		t.Fatal(err)
	}
	if renewed, _ := c.get(nil); bytes.Equal(renewed.Certificate[0], first.Certificate[0]) {
		t.Fatal("reload kept the old certificate")
	}
	if err := os.WriteFile(certFile, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.reload(); err == nil {
		t.Fatal("a broken certificate file reloaded")
	}
	if kept, _ := c.get(nil); kept == nil {
		t.Fatal("a failed reload dropped the certificate")
	}
}
