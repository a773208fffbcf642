package ledger

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custode/custode/pec/pki"
)

const crashChildEnv = "CUSTODE_LEDGER_CRASH_CHILD"

// TestCrashChild is the child of TestCrashRecovery: it appends from many
// goroutines until it is killed, printing every sequence number as soon as
// Append has returned it. Run alone it does nothing.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		return
	}
	set, err := pki.LoadDevSet(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	a := testAuthorityFrom(t, set, nil)
	l, err := Open(context.Background(), Options{Dir: filepath.Join(dir, "store"), Checkpoints: &CheckpointOptions{
		Origin:   "pec.test.example/custode",
		Every:    500,
		Interval: 20 * time.Millisecond,
		Signer:   &CMSSigner{Certificate: set.Gestore.Certificate, Key: set.Gestore.Key},
		Stamper:  a,
	}})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := 0; w < 32; w++ {
		go func() {
			for i := 0; ; i++ {
				evs := make([]Event, 1+i%4)
				for j := range evs {
					evs[j] = pecEvent(w*1_000_000 + i*4 + j)
				}
				seqs, err := l.Append(context.Background(), evs...)
				if err != nil {
					fmt.Println("append:", err)
					os.Exit(4)
				}
				var b strings.Builder
				for _, s := range seqs {
					b.WriteString(strconv.FormatUint(s, 10))
					b.WriteByte(' ')
				}
				mu.Lock()
				out.WriteString(b.String() + "\n")
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	set := testPKI(t)
	if err := set.WriteDir(filepath.Join(dir, "pki")); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	rng := rand.New(rand.NewPCG(5, 6))
	kills := 20
	if testing.Short() {
		kills = 5
	}
	acked := map[uint64]bool{}
	var maxAcked uint64
	for round := 0; round < kills; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill at a random moment once appends are flowing.
		first := <-lines
		time.AfterFunc(time.Duration(20+rng.IntN(400))*time.Millisecond, func() {
			cmd.Process.Signal(syscall.SIGKILL)
		})
		n := 0
		for _, line := range append([]string{first}, drain(lines)...) {
			for _, f := range strings.Fields(line) {
				s, err := strconv.ParseUint(f, 10, 64)
				if err != nil {
					t.Fatalf("child said %q", line)
				}
				acked[s] = true
				maxAcked = max(maxAcked, s)
				n++
			}
		}
		cmd.Wait()

		l, err := Open(context.Background(), Options{Dir: store})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		h := l.Head()
		for s := range acked {
			if s >= h.Size {
				t.Fatalf("round %d: seq %d was acknowledged but the ledger has %d entries", round, s, h.Size)
			}
		}
		r, err := l.Verify(context.Background(), VerifyOptions{Roots: set.Roots(), TSARoots: set.Roots()})
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			t.Fatalf("round %d: verify after SIGKILL: %v", round, r.Problems)
		}
		// Numbering continues without a gap.
		seqs, err := l.Append(context.Background(), pecEvent(round))
		if err != nil || seqs[0] != h.Size {
			t.Fatalf("round %d: next append got %v, %v; want seq %d", round, seqs, err, h.Size)
		}
		acked[seqs[0]] = true
		l.Close()
		t.Logf("round %d: %d seqs acknowledged before the kill, ledger has %d entries, %d checkpoints",
			round, n, h.Size+1, r.Checkpoints)
	}
	if len(acked) == 0 || maxAcked == 0 {
		t.Fatal("the child acknowledged nothing")
	}
}

// drain returns what is left in lines once it is closed.
func drain(lines <-chan string) []string {
	var out []string
	for l := range lines {
		out = append(out, l)
	}
	return out
}
