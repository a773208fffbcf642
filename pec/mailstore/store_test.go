package mailstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// clock is an injectable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)} }

func testOptions(dir string, c *clock) Options {
	return Options{Dir: dir, Now: c.Now, PasswordIterations: 1000, MaxFailures: 3, MaxAddressFailures: 6, MaxLoginDelay: 10 * time.Minute}
}

func openTest(t *testing.T) (*Store, *clock, string) {
	t.Helper()
	c := newClock()
	dir := t.TempDir()
	s, err := Open(context.Background(), testOptions(dir, c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c, dir
}

func msg(subject string, n int) []byte {
	return []byte("From: a@example.it\r\nTo: b@example.it\r\nSubject: " + subject + "\r\n\r\n" + strings.Repeat("x", n) + "\r\n")
}

func mustAdd(t *testing.T, s *Store, addr string, quota int64) {
	t.Helper()
	if err := s.AddMailbox(context.Background(), addr, "secret-"+addr, quota); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAddMailbox(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "Mario.Rossi@Example.IT", 1000)
	tests := []struct {
		name     string
		addr     string
		password string
		quota    int64
		want     error
	}{
		{"ok", "anna@pec.example.it", "pw", 0, nil},
		{"exists, other case", "mario.rossi@example.it", "pw", 0, ErrMailboxExists},
		{"empty", "", "pw", 0, ErrInvalid},
		{"no at", "mario.example.it", "pw", 0, ErrInvalid},
		{"two ats", "a@b@example.it", "pw", 0, ErrInvalid},
		{"space", "mario rossi@example.it", "pw", 0, ErrInvalid},
		{"newline", "mario@example.it\r\nX: y", "pw", 0, ErrInvalid},
		{"nul", "mario\x00@example.it", "pw", 0, ErrInvalid},
		{"empty local", "@example.it", "pw", 0, ErrInvalid},
		{"empty domain", "mario@", "pw", 0, ErrInvalid},
		{"dot dot", "ma..rio@example.it", "pw", 0, ErrInvalid},
		{"bad domain", "mario@-example.it", "pw", 0, ErrInvalid},
		{"empty label", "mario@example..it", "pw", 0, ErrInvalid},
		{"too long", strings.Repeat("a", 60) + "@" + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 10) + ".it", "pw", 0, ErrInvalid},
		{"long local", strings.Repeat("a", 65) + "@example.it", "pw", 0, ErrInvalid},
		{"not utf8", "mar\xffio@example.it", "pw", 0, ErrInvalid},
		{"empty password", "luca@example.it", "", 0, ErrInvalid},
		{"negative quota", "luca@example.it", "pw", -1, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.AddMailbox(ctx, tt.addr, tt.password, tt.quota)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("AddMailbox(%q) = %v, want %v", tt.addr, err, tt.want)
			}
		})
	}
	info, err := s.Mailbox(ctx, "MARIO.ROSSI@example.it")
	if err != nil {
		t.Fatal(err)
	}
	if want := (MailboxInfo{Address: "mario.rossi@example.it", Quota: 1000}); info != want {
		t.Fatalf("Mailbox = %+v, want %+v", info, want)
	}
	if _, err := s.Mailbox(ctx, "nobody@example.it"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("Mailbox(nobody) = %v, want ErrNoSuchMailbox", err)
	}
	folders, err := s.Folders(ctx, "anna@pec.example.it")
	if err != nil || len(folders) != 1 || folders[0].Name != Inbox {
		t.Fatalf("Folders = %+v, %v; want INBOX only", folders, err)
	}
	check(t, s)
}

// TestLookAlikeMailboxes: issue 16 finding 9. A mailbox whose address
// folds (Unicode case folding) or looks like an existing one is refused,
// and no lookup reaches one mailbox through a folding variant of its
// address.
func TestLookAlikeMailboxes(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	for _, a := range []string{"sara@pec.alfa.test", "anna@pec.alfa.test", "mario@pec.alfa.test", "katia@pec.alfa.test"} {
		mustAdd(t, s, a, 0)
	}
	add := []struct {
		name, addr string
		want       error
	}{
		{"long s U+017F", "\u017fara@pec.alfa.test", ErrInvalid},
		{"fullwidth s", "\uff53ara@pec.alfa.test", ErrInvalid},
		{"Cyrillic a", "\u0430nna@pec.alfa.test", ErrInvalid},
		{"Kelvin sign", "\u212aatia@pec.alfa.test", ErrInvalid},
		{"trailing dot", "sara@pec.alfa.test.", ErrInvalid},
		{"quoted", `"anna@example.org"@pec.alfa.test`, ErrInvalid},
		{"upper case", "SARA@pec.alfa.test", ErrMailboxExists},
		{"rn for m", "rnario@pec.alfa.test", ErrConfusable},
		{"zero for o", "rnari0@pec.alfa.test", ErrConfusable},
		{"one for l", "1uca@pec.alfa.test", nil},
		{"l after 1", "luca@pec.alfa.test", ErrConfusable},
		{"plus-addressing is a mailbox of its own", "sara+x@pec.alfa.test", nil},
	}
	for _, c := range add {
		t.Run(c.name, func(t *testing.T) {
			err := s.AddMailbox(ctx, c.addr, "pw", 0)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("AddMailbox(%q) = %v, want %v", c.addr, err, c.want)
			}
			if errors.Is(err, ErrConfusable) && !strings.Contains(err.Error(), "looks like the existing mailbox") {
				t.Errorf("unclear error: %v", err)
			}
		})
	}
	list, err := s.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list {
		got = append(got, m.Address)
	}
	if want := []string{"1uca@pec.alfa.test", "anna@pec.alfa.test", "katia@pec.alfa.test", "mario@pec.alfa.test", "sara+x@pec.alfa.test", "sara@pec.alfa.test"}; !slices.Equal(got, want) {
		t.Fatalf("mailboxes %q, want %q", got, want)
	}
	// Lookups and logins through a folding variant reach nothing.
	for _, v := range []string{"\u017fara@pec.alfa.test", "\uff53ara@pec.alfa.test", "\u0430nna@pec.alfa.test", "\u212aATIA@pec.alfa.test", "sara@pec.alfa.test."} {
		if _, err := s.Mailbox(ctx, v); !errors.Is(err, ErrInvalid) {
			t.Errorf("Mailbox(%q) = %v, want ErrInvalid", v, err)
		}
		if _, err := s.Folders(ctx, v); !errors.Is(err, ErrInvalid) {
			t.Errorf("Folders(%q) = %v, want ErrInvalid", v, err)
		}
		if err := s.Authenticate(ctx, v, "secret-"+strings.ToLower(v), ""); !errors.Is(err, ErrAuthFailed) {
			t.Errorf("Authenticate(%q) = %v, want ErrAuthFailed", v, err)
		}
	}
	if err := s.Authenticate(ctx, "SARA@PEC.ALFA.TEST", "secret-sara@pec.alfa.test", ""); err != nil {
		t.Errorf("upper-case login: %v", err)
	}
	if err := s.Authenticate(ctx, "sara+x@pec.alfa.test", "secret-sara@pec.alfa.test", ""); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("plus-addressed login with the password of sara: %v", err)
	}
}

func TestMailboxesSortedAndQuota(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	for _, a := range []string{"zeta@example.it", "alfa@example.it", "mike@example.it"} {
		mustAdd(t, s, a, 0)
	}
	if err := s.SetQuota(ctx, "mike@example.it", 5000); err != nil {
		t.Fatal(err)
	}
	if err := s.SetQuota(ctx, "mike@example.it", -5); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetQuota(-5) = %v, want ErrInvalid", err)
	}
	if err := s.SetQuota(ctx, "nobody@example.it", 5); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("SetQuota(nobody) = %v, want ErrNoSuchMailbox", err)
	}
	if _, err := s.Deliver(ctx, Delivery{Address: "mike@example.it", Message: msg("hi", 100)}); err != nil {
		t.Fatal(err)
	}
	list, err := s.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list {
		got = append(got, m.Address)
	}
	if want := []string{"alfa@example.it", "mike@example.it", "zeta@example.it"}; !slices.Equal(got, want) {
		t.Fatalf("Mailboxes = %v, want %v", got, want)
	}
	if m := list[1]; m.Quota != 5000 || m.Messages != 1 || m.Used != int64(len(msg("hi", 100))) {
		t.Fatalf("mike = %+v", m)
	}
}

func TestSetPassword(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 0)
	if err := s.Authenticate(ctx, "mario@example.it", "secret-mario@example.it", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "mario@example.it", "nuova"); err != nil {
		t.Fatal(err)
	}
	if err := s.Authenticate(ctx, "mario@example.it", "secret-mario@example.it", ""); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("old password: %v, want ErrAuthFailed", err)
	}
	if err := s.Authenticate(ctx, "Mario@Example.it", "nuova", ""); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := s.SetPassword(ctx, "mario@example.it", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty password: %v", err)
	}
	if err := s.SetPassword(ctx, "nobody@example.it", "x"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("unknown address: %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 0)
	const pw = "secret-mario@example.it"
	tests := []struct {
		name, addr, pw string
		want           error
	}{
		{"ok", "mario@example.it", pw, nil},
		{"ok upper case address", "MARIO@EXAMPLE.IT", pw, nil},
		{"wrong password", "mario@example.it", "wrong", ErrAuthFailed},
		{"empty password", "mario@example.it", "", ErrAuthFailed},
		{"password case", "mario@example.it", strings.ToUpper(pw), ErrAuthFailed},
		{"unknown address", "nobody@example.it", pw, ErrAuthFailed},
		{"invalid address", "not an address", pw, ErrAuthFailed},
		{"huge password", "mario@example.it", strings.Repeat("p", 1<<20), ErrAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A remote per case, so the limiter does not interfere.
			err := s.Authenticate(ctx, tt.addr, tt.pw, "192.0.2."+fmt.Sprint(len(tt.name)))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Authenticate = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), tt.pw) && tt.pw != "" {
				t.Fatalf("error %q reveals the password", err)
			}
			// A success resets the address's count.
			s.Authenticate(ctx, "mario@example.it", pw, "")
		})
	}
}

func TestDeliverIdempotent(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 0)
	d := Delivery{Address: "mario@example.it", Message: msg("uno", 10), Key: "opec.1234@pec.example.it"}
	first, err := s.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if first.UID != 1 || first.Duplicate || first.UIDValidity == 0 {
		t.Fatalf("first = %+v", first)
	}
	d.Message = msg("uno bis", 20)
	second, err := s.Deliver(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Delivered{UID: 1, UIDValidity: first.UIDValidity, Duplicate: true}); second != want {
		t.Fatalf("second = %+v, want %+v", second, want)
	}
	got, ok, err := s.Delivered(ctx, "mario@example.it", d.Key)
	if err != nil || !ok || got.UID != 1 || got.UIDValidity != first.UIDValidity {
		t.Fatalf("Delivered = %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := s.Delivered(ctx, "mario@example.it", "other"); ok || err != nil {
		t.Fatalf("Delivered(other) = %v, %v", ok, err)
	}
	// Without a key, every delivery stores a message.
	for i := range 2 {
		r, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: msg("x", 1)})
		if err != nil || r.Duplicate || r.UID != uint32(2+i) {
			t.Fatalf("delivery %d = %+v, %v", i, r, err)
		}
	}
	info, _ := s.Mailbox(ctx, "mario@example.it")
	if info.Messages != 3 {
		t.Fatalf("Messages = %d, want 3", info.Messages)
	}
	body, err := s.Body(ctx, "mario@example.it", "", 1)
	if err != nil || !bytes.Equal(body, msg("uno", 10)) {
		t.Fatalf("Body = %q, %v", body, err)
	}
	check(t, s)
}

func TestDeliverErrors(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 1000)
	m := msg("a", 10)
	tests := []struct {
		name string
		d    Delivery
		want error
	}{
		{"no mailbox", Delivery{Address: "nobody@example.it", Message: m}, ErrNoSuchMailbox},
		{"bad address", Delivery{Address: "nobody", Message: m}, ErrInvalid},
		{"no folder", Delivery{Address: "mario@example.it", Folder: "Archivio", Message: m}, ErrNoSuchFolder},
		{"bad folder", Delivery{Address: "mario@example.it", Folder: "a//b", Message: m}, ErrInvalid},
		{"empty", Delivery{Address: "mario@example.it"}, ErrInvalid},
		{"bad flag", Delivery{Address: "mario@example.it", Message: m, Flags: []string{`\Bogus`}}, ErrInvalid},
		{"flag with space", Delivery{Address: "mario@example.it", Message: m, Flags: []string{"a b"}}, ErrInvalid},
		{"over quota", Delivery{Address: "mario@example.it", Message: bytes.Repeat([]byte("x"), 1001)}, ErrOverQuota},
		{"huge key", Delivery{Address: "mario@example.it", Message: m, Key: strings.Repeat("k", MaxKeySize+1)}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Deliver(ctx, tt.d); !errors.Is(err, tt.want) {
				t.Fatalf("Deliver = %v, want %v", err, tt.want)
			}
		})
	}
	info, _ := s.Mailbox(ctx, "mario@example.it")
	if info.Used != 0 || info.Messages != 0 {
		t.Fatalf("failed deliveries stored something: %+v", info)
	}
}

func TestOverQuota(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 100)
	fill := bytes.Repeat([]byte("x"), 60)
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: fill}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: fill, Key: "k"}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("second = %v, want ErrOverQuota", err)
	}
	if _, ok, _ := s.Delivered(ctx, "mario@example.it", "k"); ok {
		t.Fatal("a refused delivery recorded its key")
	}
	// Exactly up to the quota is fine.
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: fill[:40]}); err != nil {
		t.Fatalf("up to the quota: %v", err)
	}
	// Expunging frees the quota.
	if _, err := s.StoreFlags(ctx, "mario@example.it", Inbox, []uint32{1}, AddFlags, []string{`\deleted`}); err != nil {
		t.Fatal(err)
	}
	gone, err := s.Expunge(ctx, "mario@example.it", Inbox, nil)
	if err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("Expunge = %v, %v", gone, err)
	}
	if info, _ := s.Mailbox(ctx, "mario@example.it"); info.Used != 40 || info.Messages != 1 {
		t.Fatalf("after expunge: %+v", info)
	}
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: fill}); err != nil {
		t.Fatalf("after expunge: %v", err)
	}
	// Quota 0 is unlimited.
	if err := s.SetQuota(ctx, "mario@example.it", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: bytes.Repeat([]byte("y"), 10000)}); err != nil {
		t.Fatal(err)
	}
	check(t, s)
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	dir := t.TempDir()
	s, err := Open(ctx, testOptions(dir, c))
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, "mario@example.it", 1<<20)
	if err := s.CreateFolder(ctx, "mario@example.it", "Archivio/2026"); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	d1, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: msg("a", 5), Key: "k1", Flags: []string{"$Label1", `\flagged`}, Time: when})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Folder: "Archivio/2026", Message: msg("b", 7)}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Mailbox(ctx, "mario@example.it")
	beforeFolders, _ := s.Folders(ctx, "mario@example.it")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailbox(ctx, "mario@example.it"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}

	s, err = Open(ctx, testOptions(dir, c))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after, err := s.Mailbox(ctx, "mario@example.it")
	if err != nil || after != before {
		t.Fatalf("after reopen %+v, %v; before %+v", after, err, before)
	}
	afterFolders, _ := s.Folders(ctx, "mario@example.it")
	if !slices.Equal(afterFolders, beforeFolders) {
		t.Fatalf("folders after reopen %+v, before %+v", afterFolders, beforeFolders)
	}
	if err := s.Authenticate(ctx, "mario@example.it", "secret-mario@example.it", ""); err != nil {
		t.Fatal(err)
	}
	dup, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: msg("a", 5), Key: "k1"})
	if err != nil || !dup.Duplicate || dup.UID != d1.UID {
		t.Fatalf("duplicate after reopen = %+v, %v", dup, err)
	}
	_, msgs, err := s.Messages(ctx, "mario@example.it", "inbox")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("Messages = %+v, %v", msgs, err)
	}
	m := msgs[0]
	if !m.Time.Equal(when) || !slices.Equal(m.Flags, []string{"$Label1", FlagFlagged}) || m.Size != int64(len(msg("a", 5))) {
		t.Fatalf("message after reopen = %+v", m)
	}
	// A new folder after reopen gets a new UIDVALIDITY.
	if err := s.CreateFolder(ctx, "mario@example.it", "Nuova"); err != nil {
		t.Fatal(err)
	}
	fs, _ := s.Folders(ctx, "mario@example.it")
	seen := map[uint32]bool{}
	for _, f := range fs {
		if seen[f.UIDValidity] {
			t.Fatalf("UIDVALIDITY %d reused: %+v", f.UIDValidity, fs)
		}
		seen[f.UIDValidity] = true
	}
	check(t, s)
}

func TestConcurrentDeliver(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 0)
	mustAdd(t, s, "anna@example.it", 0)
	const workers, each = 32, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	uids := map[string]map[uint32]bool{"mario@example.it": {}, "anna@example.it": {}}
	var size int64
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				addr := "mario@example.it"
				if i%2 == 1 {
					addr = "anna@example.it"
				}
				m := msg(fmt.Sprintf("%d-%d", w, i), w*10+i)
				r, err := s.Deliver(ctx, Delivery{Address: addr, Message: m, Key: fmt.Sprintf("%d-%d", w, i)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if uids[addr][r.UID] {
					errs <- fmt.Errorf("UID %d given twice in %s", r.UID, addr)
				}
				uids[addr][r.UID] = true
				if addr == "mario@example.it" {
					size += int64(len(m))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	info, _ := s.Mailbox(ctx, "mario@example.it")
	if info.Messages != workers*each/2 || info.Used != size {
		t.Fatalf("mario = %+v, want %d messages of %d bytes", info, workers*each/2, size)
	}
	for u := uint32(1); u <= workers*each/2; u++ {
		if !uids["mario@example.it"][u] {
			t.Fatalf("UID %d missing: UIDs not dense", u)
		}
	}
	check(t, s)
}

func TestFolders(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	const a = "mario@example.it"
	mustAdd(t, s, a, 0)
	names := func() []string {
		fs, err := s.Folders(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	steps := []struct {
		name string
		do   func() error
		want error
		list []string
	}{
		{"create nested", func() error { return s.CreateFolder(ctx, a, "Archivio/2026") }, nil, []string{"INBOX", "Archivio", "Archivio/2026"}},
		{"create exists", func() error { return s.CreateFolder(ctx, a, "Archivio") }, ErrFolderExists, nil},
		{"create inbox", func() error { return s.CreateFolder(ctx, a, "inbox") }, ErrFolderExists, nil},
		{"create wildcard", func() error { return s.CreateFolder(ctx, a, "a*") }, ErrInvalid, nil},
		{"create trailing slash", func() error { return s.CreateFolder(ctx, a, "a/") }, ErrInvalid, nil},
		{"create control", func() error { return s.CreateFolder(ctx, a, "a\r\nb") }, ErrInvalid, nil},
		{"create under inbox", func() error { return s.CreateFolder(ctx, a, "inbox/Sub") }, nil, []string{"INBOX", "Archivio", "Archivio/2026", "INBOX/Sub"}},
		{"delete inbox", func() error { return s.DeleteFolder(ctx, a, "Inbox") }, ErrNotPermitted, nil},
		{"delete with children", func() error { return s.DeleteFolder(ctx, a, "Archivio") }, ErrNotPermitted, nil},
		{"delete missing", func() error { return s.DeleteFolder(ctx, a, "Nope") }, ErrNoSuchFolder, nil},
		{"rename tree", func() error { return s.RenameFolder(ctx, a, "Archivio", "Vecchi/Archivio") }, nil, []string{"INBOX", "INBOX/Sub", "Vecchi", "Vecchi/Archivio", "Vecchi/Archivio/2026"}},
		{"rename under itself", func() error { return s.RenameFolder(ctx, a, "Vecchi", "Vecchi/x") }, ErrNotPermitted, nil},
		{"rename onto existing", func() error { return s.RenameFolder(ctx, a, "Vecchi/Archivio/2026", "INBOX/Sub") }, ErrFolderExists, nil},
		{"rename missing", func() error { return s.RenameFolder(ctx, a, "Nope", "Altro") }, ErrNoSuchFolder, nil},
		{"delete leaf", func() error { return s.DeleteFolder(ctx, a, "Vecchi/Archivio/2026") }, nil, []string{"INBOX", "INBOX/Sub", "Vecchi", "Vecchi/Archivio"}},
		{"no mailbox", func() error { return s.CreateFolder(ctx, "nobody@example.it", "x") }, ErrNoSuchMailbox, nil},
	}
	for _, st := range steps {
		err := st.do()
		if !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
		if st.list != nil {
			if got := names(); !slices.Equal(got, st.list) {
				t.Fatalf("%s: folders %v, want %v", st.name, got, st.list)
			}
		}
	}
}

func TestDeleteFolderFreesQuota(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	const a = "mario@example.it"
	mustAdd(t, s, a, 0)
	if err := s.CreateFolder(ctx, a, "Cestino"); err != nil {
		t.Fatal(err)
	}
	for i := range 250 { // more than one purge batch
		if _, err := s.Deliver(ctx, Delivery{Address: a, Folder: "Cestino", Message: msg(fmt.Sprint(i), 100)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Deliver(ctx, Delivery{Address: a, Message: msg("keep", 1)}); err != nil {
		t.Fatal(err)
	}
	old, _ := s.Folder(ctx, a, "Cestino")
	if err := s.DeleteFolder(ctx, a, "Cestino"); err != nil {
		t.Fatal(err)
	}
	info, _ := s.Mailbox(ctx, a)
	if info.Messages != 1 || info.Used != int64(len(msg("keep", 1))) {
		t.Fatalf("after delete: %+v", info)
	}
	// Re-created, it is a new folder: new UIDVALIDITY, empty.
	if err := s.CreateFolder(ctx, a, "Cestino"); err != nil {
		t.Fatal(err)
	}
	f, _ := s.Folder(ctx, a, "Cestino")
	if f.UIDValidity == old.UIDValidity || f.Messages != 0 || f.UIDNext != 1 {
		t.Fatalf("re-created folder %+v, old %+v", f, old)
	}
	check(t, s)
	// The purge runs in the background; wait for it.
	deadline := time.Now().Add(60 * time.Second) // a hang guard, not a speed bound
	for {
		n := 0
		s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pMeta}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d message records left, want 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFlagsExpungeCopyMove(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	const a = "mario@example.it"
	mustAdd(t, s, a, 0)
	if err := s.CreateFolder(ctx, a, "Altro"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Deliver(ctx, Delivery{Address: a, Message: msg(fmt.Sprint(i), i)}); err != nil {
			t.Fatal(err)
		}
	}
	flagTests := []struct {
		op    FlagOp
		uids  []uint32
		flags []string
		want  map[uint32][]string
	}{
		{AddFlags, []uint32{1, 2, 99}, []string{`\SEEN`, "Lavoro"}, map[uint32][]string{1: {FlagSeen, "Lavoro"}, 2: {FlagSeen, "Lavoro"}}},
		{AddFlags, []uint32{2}, []string{"lavoro", `\Deleted`}, map[uint32][]string{2: {FlagSeen, "Lavoro", FlagDeleted}}},
		{RemoveFlags, []uint32{1}, []string{"LAVORO"}, map[uint32][]string{1: {FlagSeen}}},
		{SetFlags, []uint32{3, 4}, []string{`\Deleted`, `\Recent`}, map[uint32][]string{3: {FlagDeleted}, 4: {FlagDeleted}}},
	}
	for i, tt := range flagTests {
		got, err := s.StoreFlags(ctx, a, Inbox, tt.uids, tt.op, tt.flags)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if len(got) != len(tt.want) {
			t.Fatalf("%d: got %+v, want %v", i, got, tt.want)
		}
		for _, m := range got {
			if !slices.Equal(m.Flags, tt.want[m.UID]) {
				t.Fatalf("%d: message %d flags %v, want %v", i, m.UID, m.Flags, tt.want[m.UID])
			}
		}
	}
	if _, err := s.StoreFlags(ctx, a, Inbox, []uint32{1}, AddFlags, []string{`\Bogus`}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad flag: %v", err)
	}
	f, _ := s.Folder(ctx, a, Inbox)
	if f.Unseen != 3 || f.Messages != 5 {
		t.Fatalf("INBOX %+v, want 3 unseen of 5", f)
	}

	cp, err := s.Copy(ctx, a, Inbox, "Altro", []uint32{1, 2, 42})
	if err != nil {
		t.Fatal(err)
	}
	altro, _ := s.Folder(ctx, a, "Altro")
	if cp.UIDValidity != altro.UIDValidity || !slices.Equal(cp.SourceUIDs, []uint32{1, 2}) || !slices.Equal(cp.DestUIDs, []uint32{1, 2}) {
		t.Fatalf("Copy = %+v", cp)
	}
	body, _ := s.Body(ctx, a, "Altro", 2)
	if !bytes.Equal(body, msg("1", 1)) {
		t.Fatalf("copied body %q", body)
	}

	// UID EXPUNGE semantics: only \Deleted messages among the UIDs.
	gone, err := s.Expunge(ctx, a, Inbox, []uint32{1, 2, 3})
	if err != nil || !slices.Equal(gone, []uint32{2, 3}) {
		t.Fatalf("Expunge(1,2,3) = %v, %v", gone, err)
	}
	gone, err = s.Expunge(ctx, a, Inbox, nil)
	if err != nil || !slices.Equal(gone, []uint32{4}) {
		t.Fatalf("Expunge(nil) = %v, %v", gone, err)
	}
	before, _ := s.Mailbox(ctx, a)
	mv, err := s.Move(ctx, a, Inbox, "Altro", []uint32{1, 5})
	if err != nil || !slices.Equal(mv.DestUIDs, []uint32{3, 4}) {
		t.Fatalf("Move = %+v, %v", mv, err)
	}
	after, _ := s.Mailbox(ctx, a)
	if after != before {
		t.Fatalf("Move changed the account: %+v -> %+v", before, after)
	}
	if _, msgs, _ := s.Messages(ctx, a, Inbox); len(msgs) != 0 {
		t.Fatalf("INBOX after move: %+v", msgs)
	}
	if _, err := s.Move(ctx, a, "Altro", "Altro", []uint32{1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Move to itself: %v", err)
	}
	if _, err := s.Copy(ctx, a, "Altro", "Nope", []uint32{1}); !errors.Is(err, ErrNoSuchFolder) {
		t.Fatalf("Copy to missing: %v", err)
	}
	// Copy over quota copies nothing.
	if err := s.SetQuota(ctx, a, after.Used+1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(ctx, a, "Altro", Inbox, []uint32{1, 2}); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("Copy over quota: %v", err)
	}
	if _, err := s.Body(ctx, a, Inbox, 1); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("Body of expunged: %v", err)
	}
	check(t, s)
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	const a = "mario@example.it"
	mustAdd(t, s, a, 0)
	var mu sync.Mutex
	var got []string
	stop, err := s.Watch("MARIO@example.it", func(c Change) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%v %s %d %v", c.Kind, c.Folder, c.UID, c.Flags))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch("bad", func(Change) {}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Watch(bad) = %v", err)
	}
	mustAdd(t, s, "other@example.it", 0)
	s.Deliver(ctx, Delivery{Address: "other@example.it", Message: msg("x", 1)})
	s.Deliver(ctx, Delivery{Address: a, Message: msg("x", 1), Flags: []string{"$x"}})
	s.StoreFlags(ctx, a, Inbox, []uint32{1}, AddFlags, []string{`\Deleted`})
	s.StoreFlags(ctx, a, Inbox, []uint32{1}, AddFlags, []string{`\Deleted`}) // no change, no report
	s.Expunge(ctx, a, Inbox, nil)
	s.CreateFolder(ctx, a, "X")
	s.RenameFolder(ctx, a, "X", "Y")
	s.DeleteFolder(ctx, a, "Y")
	stop()
	s.Deliver(ctx, Delivery{Address: a, Message: msg("x", 1)})
	want := []string{
		`MessageAdded INBOX 1 [$x]`,
		`FlagsChanged INBOX 1 [$x \Deleted]`,
		`MessageExpunged INBOX 1 []`,
		`FolderCreated X 0 []`,
		`FolderRenamed Y 0 []`,
		`FolderDeleted Y 0 []`,
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestHeaderOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"A: b\r\n\r\nbody", "A: b\r\n\r\n"},
		{"A: b\n\nbody\r\n\r\n", "A: b\n\n"},
		{"\r\nbody", "\r\n"},
		{"\nbody", "\n"},
		{"A: b\r\n", "A: b\r\n"},
		{"A: b\r\nC: d\r\n\r\n", "A: b\r\nC: d\r\n\r\n"},
	}
	for _, tt := range tests {
		if got := string(HeaderSection([]byte(tt.in))); got != tt.want {
			t.Errorf("HeaderSection(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHeaderStored(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 0)
	m := msg("header", 50)
	if _, err := s.Deliver(ctx, Delivery{Address: "mario@example.it", Message: m}); err != nil {
		t.Fatal(err)
	}
	h, err := s.Header(ctx, "mario@example.it", Inbox, 1)
	if err != nil || string(h) != string(m[:bytes.Index(m, []byte("\r\n\r\n"))+4]) {
		t.Fatalf("Header = %q, %v", h, err)
	}
	if _, err := s.Header(ctx, "mario@example.it", Inbox, 2); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("Header(2) = %v", err)
	}
}

func TestNormalizeFolder(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", Inbox, true},
		{"inbox", Inbox, true},
		{"iNbOx/Sub", "INBOX/Sub", true},
		{"Inboxes", "Inboxes", true},
		{"Posta inviata", "Posta inviata", true},
		{"Città/Perù", "Città/Perù", true},
		{"/a", "", false},
		{"a/", "", false},
		{"a//b", "", false},
		{"a%", "", false},
		{"a\x00b", "", false},
		{"a\tb", "", false},
		{strings.Repeat("x", 256), "", false},
		{"\xff", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeFolder(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizeFolder(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("NormalizeFolder(%q) error %v does not wrap ErrInvalid", tt.in, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Options{}); err == nil {
		t.Fatal("Open with no directory succeeded")
	}
	if _, err := Open(ctx, Options{Dir: t.TempDir(), MaxFailures: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative option: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Open(cctx, Options{Dir: t.TempDir()}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

// TestFinalDelivery checks the fields a final delivery adds (RFC 5321
// §4.4): Return-Path, Delivered-To and the trace, in the message's line
// endings, above the message kept byte for byte; none without an Envelope
// (IMAP APPEND); a hostile reverse path that cannot break the field; and a
// trace that is not header fields refused.
func TestFinalDelivery(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t)
	mustAdd(t, s, "mario@example.it", 0)
	received := "Received: from mx.altro.test (mx.altro.test [192.0.2.1])\r\n\tby mx.example.it (Custode) with ESMTPS id ABC; Fri, 14 Nov 2025 18:26:30 +0100\r\n"
	crlf := msg("uno", 10)
	lf := bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n"))
	tests := []struct {
		name string
		ctx  context.Context
		msg  []byte
		want string
	}{
		{"no envelope", ctx, crlf, string(crlf)},
		{"busta over SMTP", WithEnvelope(ctx, Envelope{ReturnPath: "posta-certificata@pec.altro.test", Trace: received}), crlf,
			"Return-Path: <posta-certificata@pec.altro.test>\r\nDelivered-To: mario@example.it\r\n" + received + string(crlf)},
		{"message of ours, null reverse path", WithEnvelope(ctx, Envelope{}), crlf,
			"Return-Path: <>\r\nDelivered-To: mario@example.it\r\n" + string(crlf)},
		{"LF message", WithEnvelope(ctx, Envelope{ReturnPath: "a@b.it", Trace: received}), lf,
			strings.ReplaceAll("Return-Path: <a@b.it>\r\nDelivered-To: mario@example.it\r\n"+received, "\r\n", "\n") + string(lf)},
		{"hostile reverse path", WithEnvelope(ctx, Envelope{ReturnPath: "a>\r\nBcc: x@y.it\r\n<b@c.it"}), crlf,
			"Return-Path: <aBcc: x@y.itb@c.it>\r\nDelivered-To: mario@example.it\r\n" + string(crlf)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.Deliver(tt.ctx, Delivery{Address: "Mario@Example.it", Message: tt.msg})
			if err != nil {
				t.Fatal(err)
			}
			if r.UID != uint32(i+1) {
				t.Fatalf("UID %d, want %d", r.UID, i+1)
			}
			got, err := s.Body(ctx, "mario@example.it", "", r.UID)
			if err != nil || string(got) != tt.want {
				t.Fatalf("stored %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"Received: x", "Received: x\r\n\r\nBcc: y\r\n", " x\r\n", "no colon\r\n", "A: b\nC: d\r\n"} {
		_, err := s.Deliver(WithEnvelope(ctx, Envelope{Trace: bad}), Delivery{Address: "mario@example.it", Message: crlf})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("trace %q: %v, want ErrInvalid", bad, err)
		}
	}
	check(t, s)
}
