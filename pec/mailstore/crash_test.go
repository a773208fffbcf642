package mailstore

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCrashRecovery kills a process in the middle of deliveries, copies and
// expunges, then checks that the store reopens consistent (every message
// counted is present, quota exact) and that every delivery reported done
// survived.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv("MAILSTORE_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	ctx := context.Background()
	for round := range 2 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MAILSTORE_CRASH_CHILD="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var done []string
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// The kill is armed by the first delivery, not by the start: on a
		// busy machine the child may take seconds to open the store.
		var kill <-chan time.Time
		armed := false
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if k, ok := strings.CutPrefix(l, "delivered "); ok {
					done = append(done, k)
					if !armed {
						armed = true
						kill = time.After(time.Duration(100+round*500) * time.Millisecond)
					}
				}
			case <-kill:
				cmd.Process.Kill()
				kill = nil
			}
		}
		cmd.Wait()
		if len(done) == 0 {
			t.Fatalf("round %d: the child delivered nothing before being killed", round)
		}
		s, err := Open(ctx, Options{Dir: dir, PasswordIterations: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(ctx); err != nil {
			t.Fatalf("round %d after %d deliveries: %v", round, len(done), err)
		}
		for _, k := range done {
			if _, ok, err := s.Delivered(ctx, "mario@example.it", k); !ok || err != nil {
				t.Fatalf("round %d: delivery %s reported done is lost (%v)", round, k, err)
			}
		}
		info, _ := s.Mailbox(ctx, "mario@example.it")
		t.Logf("round %d: killed after %d deliveries; mailbox %+v", round, len(done), info)
		s.Close()
	}
}

func crashChild(dir string) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Dir: dir, PasswordIterations: 1000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	const a = "mario@example.it"
	if err := s.AddMailbox(ctx, a, "pw", 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := s.CreateFolder(ctx, a, "Altro"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		key := fmt.Sprintf("k%d", i)
		r, err := s.Deliver(ctx, Delivery{Address: a, Message: msg(key, rand.IntN(200_000)), Key: key})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("delivered", key)
		switch {
		case i%5 == 4:
			s.StoreFlags(ctx, a, Inbox, []uint32{r.UID - 2, r.UID - 3}, AddFlags, []string{FlagDeleted})
			s.Expunge(ctx, a, Inbox, nil)
		case i%7 == 6:
			s.Copy(ctx, a, Inbox, "Altro", []uint32{r.UID, r.UID - 1})
		case i%11 == 10:
			s.Move(ctx, a, Inbox, "Altro", []uint32{r.UID - 1})
		}
	}
}
