package diskspace_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/diskspace"
	"github.com/custode/custode/pec/mailstore"
)

// smallExt4 makes and mounts an ext4 filesystem of size bytes in a file,
// or skips the test, saying why, where that needs what is not here (root,
// mkfs.ext4, a loop device).
func smallExt4(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a loop filesystem needs root")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	// -m 0: no blocks reserved for root, who runs this test.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("no loop mount here: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		for range 40 {
			if err := syscall.Unmount(mnt, 0); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Errorf("unmount %s: still busy", mnt)
	})
	return mnt
}

// fill takes every free block of the filesystem at mnt with one file, as
// another process filling the disk would, and returns its path.
func fill(t *testing.T, mnt string) string {
	t.Helper()
	path := filepath.Join(mnt, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	var off int64
	if free := int64(st.Bavail) * st.Bsize; syscall.Fallocate(int(f.Fd()), 0, 0, free) == nil {
		off = free
	}
	// Write until ENOSPC, and again while the stores free blocks (a
	// file they delete) until none is left.
	buf := make([]byte, 4<<10)
	for round := 0; ; round++ {
		for {
			n, err := f.WriteAt(buf, off)
			off += int64(n)
			if err != nil {
				break
			}
		}
		if err := syscall.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		if st.Bavail == 0 {
			return path
		}
		if round == 100 {
			t.Fatalf("after filling 100 times, %d blocks are still free", st.Bavail)
		}
	}
}

func event(i int) ledger.Event {
	return ledger.Event{
		Kind:            ledger.KindAccettazione,
		Identificativo:  fmt.Sprintf("opec001.20261123093000.%08d.01.1.1@pec.test.example", i),
		ClientMessageID: fmt.Sprintf("<%d.client@mua.example>", i),
		Time:            time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Mittente:        fmt.Sprintf("mittente%d@pec.test.example", i%97),
		Destinatari:     []ledger.Recipient{{Address: "dest@pec.altro.example", Tipo: ledger.TipoCertificato}},
		Oggetto:         fmt.Sprintf("Fattura n. %d", i),
		Gestore:         "Custode Test PEC S.p.A.",
		SHA256:          make([]byte, 32),
		Details:         map[string]string{"pad": string(bytes.Repeat([]byte("x"), 400))},
	}
}

// TestFullDisk fills, under load, the filesystem that holds a ledger and a
// mailbox store, as another process would, to the last block. The writes
// under way must end or fail with ENOSPC, not kill the process (badger
// writes through memory maps, where a full disk raises SIGBUS); once the
// ledger has refused an append for lack of space it acknowledges none
// until the disk is freed; every append acknowledged must survive; once
// the disk is freed both take writes again. Each phase waits for what it
// needs to have happened, not for a time.
func TestFullDisk(t *testing.T) {
	mnt := smallExt4(t, 768<<20)
	ctx := context.Background()
	const reserve = 32 << 20
	ldir := filepath.Join(mnt, "ledger")
	l, err := ledger.Open(ctx, ledger.Options{Dir: ldir, MinFreeBytes: reserve})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ms, err := mailstore.Open(ctx, mailstore.Options{Dir: filepath.Join(mnt, "mail"), MinFreeBytes: reserve, PasswordIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	const mailbox = "titolare@pec.test.example"
	if err := ms.AddMailbox(ctx, mailbox, "a long enough password", 0); err != nil {
		t.Fatal(err)
	}

	var (
		stop atomic.Bool
		full atomic.Bool // the filler has run: refusals are expected
		// refusing: an append was refused by the ledger's guard, whose
		// verdict every append that starts afterwards shares until the
		// disk is freed.
		refusing atomic.Bool
		freed    atomic.Bool // the filler is removed
		next     atomic.Int64
		mu       sync.Mutex
		acked    []uint64
		refused  = map[string]int{}
		wg       sync.WaitGroup
		unexpect = make(chan error, 64)
		// Counted under mu.
		delivered      int // deliveries before the disk filled
		refusedGuarded int // appends refused that started with refusing set
		ackedGuarded   int // appends acknowledged that started with refusing set, before freed
		ackedFreed     int // appends acknowledged that started after freed
	)
	t.Cleanup(func() { stop.Store(true); wg.Wait() })
	refuse := func(what string, err error) {
		if errors.Is(err, syscall.ENOSPC) && full.Load() {
			mu.Lock()
			refused[what]++
			mu.Unlock()
			time.Sleep(time.Millisecond)
			return
		}
		select {
		case unexpect <- fmt.Errorf("%s: %w", what, err):
		default:
		}
	}
	// waitUntil polls cond, under mu, until it holds.
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			if time.Since(start) > 2*time.Minute {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("still waiting after 2 minutes for %s: refusals %v, %d entries acknowledged", what, refused, len(acked))
			}
		}
	}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				guarded, afterFree := refusing.Load(), freed.Load()
				i := int(next.Add(4))
				seqs, err := l.Append(ctx, event(i), event(i+1), event(i+2), event(i+3))
				if err != nil {
					var low *diskspace.LowSpaceError
					if errors.As(err, &low) {
						refusing.Store(true)
					}
					if guarded && !afterFree {
						mu.Lock()
						refusedGuarded++
						mu.Unlock()
					}
					refuse("append", err)
					continue
				}
				mu.Lock()
				acked = append(acked, seqs...)
				switch {
				case afterFree:
					ackedFreed++
				case guarded:
					ackedGuarded++
				}
				mu.Unlock()
			}
		}()
	}
	msg := append([]byte("From: a@pec.test.example\r\nSubject: x\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef"), 4<<10)...)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				before := !full.Load()
				if _, err := ms.Deliver(ctx, mailstore.Delivery{Address: mailbox, Message: msg}); err != nil {
					refuse("deliver", err)
				} else if before {
					mu.Lock()
					delivered++
					mu.Unlock()
				}
			}
		}()
	}

	// Both stores take writes before the disk fills, so that there is
	// something acknowledged to lose.
	waitUntil("an append and a delivery before the disk fills", func() bool { return len(acked) > 0 && delivered > 0 })
	full.Store(true)
	filler := fill(t, mnt)
	// Appends under way when the disk filled may end either way; once the
	// guard has refused one, every append that starts is refused.
	waitUntil("appends refused by the guard and deliveries refused", func() bool {
		return refusedGuarded >= 64 && refused["deliver"] > 0
	})
	mu.Lock()
	ackedFull := len(acked)
	if ackedGuarded != 0 {
		t.Errorf("%d appends acknowledged that started after the ledger refused one for lack of space, with the disk still full", ackedGuarded)
	}
	t.Logf("disk full: refusals %v; %d entries acknowledged before", refused, ackedFull)
	mu.Unlock()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed.Store(true)
	waitUntil("an append acknowledged after the disk was freed", func() bool { return ackedFreed > 0 })
	stop.Store(true)
	wg.Wait()
	close(unexpect)
	for err := range unexpect {
		t.Errorf("unexpected error: %v", err)
	}
	if _, err := ms.Deliver(ctx, mailstore.Delivery{Address: mailbox, Message: msg}); err != nil {
		t.Errorf("deliver after the disk was freed: %v", err)
	}
	// The refusals are on record, as an outage of the ledger's storage.
	page, err := l.Find(ctx, ledger.Query{Kind: ledger.KindOutage})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Details[ledger.DetailOutageService] != "storage" ||
		!strings.Contains(page.Entries[0].Details[ledger.DetailOutageCause], "no space left on device") {
		t.Errorf("outage entries after the disk was freed: %+v, want one of the storage, for lack of space", page.Entries)
	} else {
		t.Logf("outage recorded: %v", page.Entries[0].Details)
	}
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = ledger.Open(ctx, ledger.Options{Dir: ldir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	size := l.Head().Size
	for _, seq := range acked {
		if seq >= size {
			t.Fatalf("acknowledged entry %d is beyond the reopened head %d", seq, size)
		}
	}
	rep, err := l.Verify(ctx, ledger.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verify: %v", rep.Problems)
	}
	t.Logf("%d entries acknowledged, %d in the reopened ledger, verified", len(acked), size)
}
