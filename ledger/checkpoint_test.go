package ledger

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"

	"github.com/custode/custode/tsa"
)

// tsaServer runs the built-in TSA over HTTP on a fixed loopback address,
// and can be stopped and started again to make an outage.
type tsaServer struct {
	t      *testing.T
	a      *tsa.Authority
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startTSA(t *testing.T) *tsaServer {
	s := &tsaServer{t: t, a: testAuthority(t, nil), addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *tsaServer) start() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a stop
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.a.Serve(ctx, ln) }()
}

func (s *tsaServer) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
}

func (s *tsaServer) client() *tsa.Client {
	return &tsa.Client{URL: "http://" + s.addr + "/", Timeout: 2 * time.Second, Roots: testPKI(s.t).Roots()}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	// A hang guard, not a speed bound: 5 minutes, or until shortly before
	// go test's -timeout, whichever comes first.
	deadline := time.Now().Add(5 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Add(-5*time.Second).Before(deadline) {
		deadline = d.Add(-5 * time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/test.sh, which installs what the tests need", name)
	}
	return p
}

func TestCheckpointsSignedAndTimestamped(t *testing.T) {
	srv := startTSA(t)
	dir := t.TempDir()
	l := openTest(t, dir, testCheckpoints(t, srv.client()))
	appendN(t, l, 0, 1000)
	ctx := context.Background()
	waitFor(t, "a stamped checkpoint covering every entry", func() bool {
		c, err := l.LatestCheckpoint(ctx)
		return err == nil && c.Size >= 1000 && l.PendingTimestamps() == 0
	})
	cps, err := l.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) < 2 {
		t.Fatalf("%d checkpoints, want several", len(cps))
	}
	// Consistency between consecutive checkpoints, and their chain.
	for i := 1; i < len(cps); i++ {
		a, b := cps[i-1], cps[i]
		if b.Prev != a.Hash() {
			t.Fatalf("checkpoint %d does not chain to %d", b.Size, a.Size)
		}
		p, err := l.ConsistencyProof(ctx, a.Size, b.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyConsistency(hasher, a.Size, b.Size, p, a.Root[:], b.Root[:]); err != nil {
			t.Fatalf("checkpoints %d→%d: %v", a.Size, b.Size, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = Open(ctx, Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := testPKI(t)
	r, err := l.Verify(ctx, VerifyOptions{Roots: d.Roots(), TSARoots: d.Roots(), RequireTimestamps: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Checkpoints == 0 || r.Signatures != r.Checkpoints || r.Timestamps != r.Checkpoints {
		t.Fatalf("verify: %+v", r)
	}

	// Stock tools accept the newest checkpoint's signature and token.
	c, err := l.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := c.WriteFiles(out); err != nil {
		t.Fatal(err)
	}
	caPEM := filepath.Join(out, "ca.pem")
	if err := os.WriteFile(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.CA.Certificate.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(out, "checkpoint-"+strconv.FormatUint(c.Size, 10))
	openssl := needTool(t, "openssl")
	runOK(t, "Verification successful", openssl, "cms", "-verify", "-binary", "-inform", "DER",
		"-in", base+".p7s", "-content", base+".txt", "-CAfile", caPEM, "-purpose", "any", "-out", os.DevNull)
	runOK(t, "Verification: OK", openssl, "ts", "-verify", "-token_in", "-in", base+".tsr",
		"-data", base+".txt", "-CAfile", caPEM)
	// And refuse them for other content.
	other := filepath.Join(out, "other.txt")
	os.WriteFile(other, append([]byte("x"), c.Body...), 0o644)
	if err := exec.Command(openssl, "ts", "-verify", "-token_in", "-in", base+".tsr", "-data", other, "-CAfile", caPEM).Run(); err == nil {
		t.Error("openssl ts accepted the token for other data")
	}
}

func runOK(t *testing.T, want string, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), want) {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestCheckpointsPendingWhileTSADown(t *testing.T) {
	srv := startTSA(t)
	srv.stop()
	l := openTest(t, t.TempDir(), testCheckpoints(t, srv.client()))
	defer l.Close()
	appendN(t, l, 0, 500)
	ctx := context.Background()
	waitFor(t, "checkpoints pending", func() bool { return l.PendingTimestamps() >= 2 })
	// Appends go on while the TSA is down.
	appendN(t, l, 500, 200)
	if c, err := l.LatestCheckpoint(ctx); err != nil || !c.Pending() {
		t.Fatalf("latest checkpoint %v, %v: want one pending", c, err)
	}
	srv.start()
	waitFor(t, "pending timestamps to drain", func() bool {
		c, err := l.LatestCheckpoint(ctx)
		return l.PendingTimestamps() == 0 && err == nil && c.Size >= 700
	})
	// The interval may make one more checkpoint meanwhile, stamped a
	// moment later: every checkpoint ends up stamped and verifies.
	d := testPKI(t)
	waitFor(t, "every checkpoint stamped and verified", func() bool {
		r, err := l.Verify(ctx, VerifyOptions{Roots: d.Roots(), TSARoots: d.Roots(), RequireTimestamps: true})
		return err == nil && r.OK()
	})
	// The outage is in the ledger, for the audit's P02.
	page, err := l.Find(ctx, Query{Kind: KindOutage})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Details[DetailOutageService] != "tsa" ||
		!strings.Contains(page.Entries[0].Details[DetailOutageCause], "no timestamp token") {
		t.Fatalf("outage entries: %v %+v", err, page)
	}
}

func TestCheckpointsPendingWhileTSAMisbehaves(t *testing.T) {
	tests := map[string]http.HandlerFunc{
		"garbage": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/timestamp-reply")
			w.Write([]byte("\x30\x03garbage, not a TimeStampResp"))
		},
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select { // far beyond the client's timeout, short enough for srv.Close
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		},
		"error": func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		},
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			opts := testCheckpoints(t, &tsa.Client{URL: srv.URL, Timeout: 200 * time.Millisecond})
			opts.TimestampTimeout = 300 * time.Millisecond
			l := openTest(t, t.TempDir(), opts)
			// Two batches, each waited for: on a busy machine one
			// checkpoint may cover everything appended before it runs,
			// and nothing more would ever be due.
			appendN(t, l, 0, 250)
			waitFor(t, "a pending checkpoint", func() bool { return l.PendingTimestamps() >= 1 })
			appendN(t, l, 250, 100)
			waitFor(t, "a second pending checkpoint", func() bool { return l.PendingTimestamps() >= 2 })
			appendN(t, l, 350, 100)
			if h := l.Head(); h.Size < 450 {
				t.Fatalf("head %d, want at least 450", h.Size)
			}
			l.Close()
		})
	}
}

func TestVerifyRejectsTamperedCheckpoint(t *testing.T) {
	srv := startTSA(t)
	dir := t.TempDir()
	l := openTest(t, dir, testCheckpoints(t, srv.client()))
	appendN(t, l, 0, 300)
	ctx := context.Background()
	waitFor(t, "stamped checkpoints", func() bool {
		c, err := l.LatestCheckpoint(ctx)
		return err == nil && c.Size >= 300 && l.PendingTimestamps() == 0
	})
	l.Close()
	d := testPKI(t)
	cases := map[string]func(c *Checkpoint){
		"signature byte": func(c *Checkpoint) { c.Signature[len(c.Signature)-10] ^= 1 },
		"token byte":     func(c *Checkpoint) { c.Token[len(c.Token)-10] ^= 1 },
		"token of another checkpoint": func(c *Checkpoint) {
			c.Token = nil
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cp := t.TempDir()
			copyTree(t, dir, cp)
			l, err := Open(ctx, Options{Dir: cp})
			if err != nil {
				t.Fatal(err)
			}
			cps, _ := l.Checkpoints(ctx)
			c := cps[len(cps)/2]
			if name == "token of another checkpoint" {
				tok := cps[0].Token
				mutate(c)
				c.Token = tok
			} else {
				mutate(c)
			}
			if err := l.putCheckpoint(c); err != nil {
				t.Fatal(err)
			}
			r, err := l.Verify(ctx, VerifyOptions{Roots: d.Roots(), TSARoots: d.Roots()})
			l.Close()
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() || r.Problems[0].Checkpoint != int64(c.Size) {
				t.Fatalf("want a problem in checkpoint %d, got %+v", c.Size, r.Problems)
			}
		})
	}
}
