package admin

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/export/httpapi"
	"github.com/custode/custode/pec/pki"
)

func TestAdminFrames(t *testing.T) {
	var buf bytes.Buffer
	req := Request{Version: Version, Args: []string{"ledger", "get", "1"}, Stdin: []byte("x\x00y")}
	if err := WriteFrame(&buf, req); err != nil {
		t.Fatal(err)
	}
	var got Request
	if err := ReadFrame(bytes.NewReader(buf.Bytes()), MaxRequest, &got); err != nil {
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
			err := ReadFrame(strings.NewReader(tt.frame), 1<<10, &got)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("readFrame: %v, want an error with %q", err, tt.want)
			}
		})
	}
	// A frame just over the bound is refused before its body is read.
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], 1025)
	if err := ReadFrame(bytes.NewReader(h[:]), 1024, &got); err == nil || !strings.Contains(err.Error(), "more than the 1024") {
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
		err := checkPeer(PeerCred{PID: 42, UID: tt.peer}, tt.server)
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
		got, data, err := Args(tt.name, tt.args)
		if err != nil || strings.Join(got, " ") != strings.Join(tt.want, " ") || data != tt.data {
			t.Errorf("Args(%s, %q) = %q, %q, %v; want %q, %q", tt.name, tt.args, got, data, err, tt.want, tt.data)
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
		got, err := ReadStdin(strings.NewReader(tt.stdin), tt.name, tt.args)
		if err != nil || string(got) != tt.want {
			t.Errorf("ReadStdin(%s, %q) = %q, %v; want %q", tt.name, tt.args, got, err, tt.want)
		}
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
	ln2, err := Listen(stale)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln2.Close()
	// Any other file is left alone.
	file := filepath.Join(dir, "precious")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "data" {
		t.Fatalf("the file was touched: %q %v", b, err)
	}
}

func TestTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-tokens")
	tf, err := NewTokenFile(path, cli.DiscardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if n := tf.Get().Len(); n != 0 {
		t.Fatalf("a missing file: %d tokens", n)
	}
	var lines string
	for i := range 3 {
		tok, _ := httpapi.NewToken()
		lines += httpapi.TokenLine(fmt.Sprintf("user%d", i), tok) + "\n"
		if err := os.WriteFile(path, []byte(lines), 0o644); err != nil {
			t.Fatal(err)
		}
		if n := tf.Get().Len(); n != i+1 {
			t.Fatalf("after writing %d tokens, %d in force", i+1, n)
		}
	}
	// A broken file keeps the last good tokens.
	if err := os.WriteFile(path, []byte(lines+"broken line here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := tf.Get().Len(); n != 3 {
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
	c, err := NewCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := c.Get(nil)
	issue()
	if again, _ := c.Get(nil); !bytes.Equal(again.Certificate[0], first.Certificate[0]) {
		t.Fatal("the certificate changed before a reload")
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if renewed, _ := c.Get(nil); bytes.Equal(renewed.Certificate[0], first.Certificate[0]) {
		t.Fatal("reload kept the old certificate")
	}
	if err := os.WriteFile(certFile, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err == nil {
		t.Fatal("a broken certificate file reloaded")
	}
	if kept, _ := c.Get(nil); kept == nil {
		t.Fatal("a failed reload dropped the certificate")
	}
}
