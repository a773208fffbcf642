package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
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
)

const (
	crashChildEnv = "CUSTODE_QUEUE_CRASH_CHILD"
	crashRoundEnv = "CUSTODE_QUEUE_CRASH_ROUND"
)

// TestQueueCrashChild is the child of TestIntegrationQueueCrash: it
// enqueues from many goroutines at once, so that their calls are committed
// together, and removes some of the items, while Run delivers, until it is
// killed. It prints "A id..." once Enqueue has returned for those IDs,
// "R id" before a delivery that may remove id, "x id" before a Remove of
// id and "X id" once it has returned. Run alone it does nothing.
func TestQueueCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		return
	}
	round := os.Getenv(crashRoundEnv)
	ctx := context.Background()
	q, err := Open(ctx, Options{Dir: dir, Poll: time.Millisecond, MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.WriteString(line + "\n")
	}
	// Deliveries: a third succeed, a third fail for good, a third fail and
	// are retried (their state files rewritten) forever.
	go q.Run(ctx, func(ctx context.Context, it Item) error {
		n, _ := strconv.Atoi(it.ID[strings.LastIndexByte(it.ID, '/')+1:])
		switch n % 3 {
		case 0:
			say("R " + it.ID)
			return nil
		case 1:
			say("R " + it.ID)
			return &PermanentError{Err: errors.New("550 no")}
		default:
			return errors.New("421 later")
		}
	})
	removals := make(chan string, 64)
	go func() {
		for id := range removals {
			say("x " + id)
			if err := q.Remove(ctx, id); err == nil {
				say("X " + id)
			} else if !errors.Is(err, ErrNotFound) {
				fmt.Println("remove:", err)
				os.Exit(4)
			}
		}
	}()
	for g := range 16 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for n := 0; ; {
				items := make([]Item, 1+rng.IntN(8))
				ids := make([]string, len(items))
				for i := range items {
					ids[i] = fmt.Sprintf("r%s/g%d/%d", round, g, n)
					items[i] = item(ids[i], fmt.Sprintf("d%d.example", n%5), 100+rng.IntN(16<<10))
					n++
				}
				if err := q.Enqueue(ctx, items...); err != nil {
					fmt.Println("enqueue:", err)
					os.Exit(4)
				}
				say("A " + strings.Join(ids, " "))
				if rng.IntN(4) == 0 {
					select {
					case removals <- ids[rng.IntN(len(ids))]:
					default:
					}
				}
			}
		}()
	}
	time.Sleep(20 * time.Second) // in case nobody kills it
	os.Exit(5)
}

// TestIntegrationQueueCrash kills a child process that enqueues, removes
// and delivers at random moments with SIGKILL, then checks that every
// acknowledged item not yet handed to a delivery nor removed is there,
// that no removed item is, and that every file is intact.
func TestIntegrationQueueCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	const rounds = 24
	acked := map[string]bool{}
	removable := map[string]bool{}
	removed := map[string]bool{}
	start := time.Now()
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestQueueCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			r := bufio.NewReader(stdout)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return // EOF: a last line without its newline is not acknowledged
				}
				lines <- strings.TrimSuffix(line, "\n")
			}
		}()
		var out []string
		// Kill at a random moment once enqueues are flowing.
		select {
		case first, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("round %d: the child said nothing", round)
			}
			out = append(out, first)
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: the child said nothing in 30s", round)
		}
		kill := time.AfterFunc(time.Duration(rng.IntN(300))*time.Millisecond, func() {
			cmd.Process.Signal(syscall.SIGKILL)
		})
		for l := range lines {
			out = append(out, l)
		}
		kill.Stop()
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: the child was not killed: %v; it said:\n%s", round, err, strings.Join(out, "\n"))
		}
		n := 0
		for _, l := range out {
			kind, ids, _ := strings.Cut(l, " ")
			switch kind {
			case "A":
				for _, id := range strings.Fields(ids) {
					acked[id] = true
					n++
				}
			case "R", "x":
				removable[ids] = true
			case "X":
				removed[ids] = true
			default:
				t.Fatalf("round %d: the child said %q", round, l)
			}
		}

		q, err := Open(t.Context(), Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		if q.quarantined != 0 {
			t.Fatalf("round %d: %d damaged files after SIGKILL", round, q.quarantined)
		}
		if f, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(f) != 0 {
			t.Fatalf("round %d: %d temporary files left after Open", round, len(f))
		}
		items, err := q.Items(t.Context()) // reads and verifies every file again
		if err != nil {
			t.Fatal(err)
		}
		present := map[string]bool{}
		for _, it := range items {
			present[it.ID] = true
		}
		for id := range acked {
			if !present[id] && !removable[id] && !removed[id] {
				t.Fatalf("round %d: %s was acknowledged, never delivered nor removed, and is gone", round, id)
			}
		}
		for id := range removed {
			if present[id] {
				t.Fatalf("round %d: %s was removed, and is back", round, id)
			}
		}
		des, err := os.ReadDir(filepath.Join(dir, "items"))
		if err != nil {
			t.Fatal(err)
		}
		batches := 0
		for _, de := range des {
			name := de.Name()
			if _, ok := seqOf(name); ok {
				batches++
			} else if !strings.HasSuffix(name, doneSuffix) && !strings.HasSuffix(name, stateSuffix) {
				t.Fatalf("round %d: items/ holds %s", round, name)
			}
		}
		if q.Len() != len(items) {
			t.Fatalf("round %d: Len %d, Items %d", round, q.Len(), len(items))
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d items acknowledged before the kill; %d queued in %d batch files, %d orphaned files removed",
			round, n, len(items), batches, q.orphaned)
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	if d, _ := os.ReadDir(filepath.Join(dir, "damaged")); len(d) != 0 {
		t.Fatalf("damaged/ holds %d files", len(d))
	}
	if len(removed) == 0 {
		t.Fatal("nothing was removed")
	}
	t.Logf("%d rounds in %v: %d items acknowledged, %d handed to deliveries, %d removed",
		rounds, time.Since(start).Round(time.Millisecond), len(acked), len(removable), len(removed))
}
