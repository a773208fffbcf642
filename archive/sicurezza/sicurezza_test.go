package sicurezza

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/s3store"
	"github.com/custode/custode/pec"
)

func msg(n int, size int) []byte {
	b := bytes.Repeat([]byte("x"), size)
	copy(b, fmt.Sprintf("message %d\r\n", n))
	return b
}

// exercise archives for a mailbox with the archivio and one without,
// uploads, and checks the objects: byte-identical, COMPLIANCE, retained
// at least ten years; then the quota.
func exercise(t *testing.T, store archive.Store) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{Store: store, Dir: dir, Prefix: "sicurezza-" + randomHex() + "/", Policies: []Policy{
		{Mailbox: "mario@pec.alfa.test", Quota: 50_000},
		{Mailbox: "@pec.ente.test"},
	}, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	a, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i, mb := range []string{"mario@pec.alfa.test", "Ufficio@PEC.ente.test"} {
		k, err := a.Archive(ctx, Message{Mailbox: mb, Kind: pec.KindAccettazione, Message: msg(i, 10_000)})
		if err != nil || k == "" {
			t.Fatalf("archive for %s: %q %v", mb, k, err)
		}
		keys = append(keys, k)
	}
	if k, err := a.Archive(ctx, Message{Mailbox: "lucia@pec.beta.test", Message: msg(9, 100)}); k != "" || err != nil {
		t.Errorf("a mailbox without the archivio: %q %v", k, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	deadline := time.Now().Add(30 * time.Second)
	for a.Backlog() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if a.Backlog() != 0 {
		t.Fatalf("backlog %d after 30 s", a.Backlog())
	}
	for i, k := range keys {
		obj, err := store.Get(ctx, k, "")
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if !bytes.Equal(obj.Data, msg(i, 10_000)) {
			t.Errorf("%s is not byte-identical", k)
		}
		if obj.ObjectInfo.Retention.Mode != archive.Compliance || obj.ObjectInfo.Retention.RetainUntil.Before(time.Now().AddDate(9, 11, 0)) {
			t.Errorf("%s retention %+v, want COMPLIANCE for ten years", k, obj.ObjectInfo.Retention)
		}
		if err := store.Delete(ctx, k, obj.ObjectInfo.VersionID); !errors.Is(err, archive.ErrWORM) {
			t.Errorf("delete %s: %v, want the WORM refusal", k, err)
		}
	}
	// The quota: 50,000 bytes, 10,000 used.
	for i := 0; i < 4; i++ {
		if _, err := a.Archive(ctx, Message{Mailbox: "mario@pec.alfa.test", Message: msg(100+i, 10_000)}); err != nil {
			t.Fatalf("within the quota: %v", err)
		}
	}
	if _, err := a.Archive(ctx, Message{Mailbox: "mario@pec.alfa.test", Message: msg(200, 10)}); !errors.Is(err, ErrOverQuota) {
		t.Errorf("over the quota: %v, want ErrOverQuota", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened, the accounting and the spool are still there.
	a, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if used := a.Used("mario@pec.alfa.test"); used != 50_000 {
		t.Errorf("used after reopen: %d, want 50000", used)
	}
	if a.Backlog() != 4 {
		t.Errorf("backlog after reopen: %d, want the 4 messages not uploaded", a.Backlog())
	}
}

func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func TestArchiveLocalStore(t *testing.T) {
	store, err := localstore.Open(t.TempDir(), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, store)
}

func minio(tb testing.TB) *s3store.Store {
	tb.Helper()
	endpoint := os.Getenv("CUSTODE_TEST_MINIO")
	if endpoint == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("CUSTODE_TEST_MINIO is not set (CI is set: S3 tests must run)")
		}
		tb.Skip("CUSTODE_TEST_MINIO is not set: run `eval \"$(scripts/s3-servers.sh start)\"` first")
	}
	s, err := s3store.New(s3store.Config{
		Endpoint:  endpoint,
		AccessKey: os.Getenv("CUSTODE_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("CUSTODE_TEST_S3_SECRET_KEY"),
		Bucket:    "custode-sicurezza-" + randomHex(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestArchiveMinIO(t *testing.T) {
	exercise(t, minio(t))
}

// BenchmarkArchiveMinIO measures messages archived per second to MinIO:
// spooled durably, uploaded with COMPLIANCE retention and a checksum.
// Messages are 20 KB, about a busta di trasporto with a small attachment.
func BenchmarkArchiveMinIO(b *testing.B) {
	store := minio(b)
	ctx := context.Background()
	a, err := Open(ctx, Options{Store: store, Dir: b.TempDir(), Policies: []Policy{{Mailbox: "@pec.alfa.test"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	b.ResetTimer()
	for i := range b.N {
		if _, err := a.Archive(ctx, Message{Mailbox: "mario@pec.alfa.test", Message: msg(i, 20_000)}); err != nil {
			b.Fatal(err)
		}
	}
	for a.Backlog() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// SetPolicies changes which mailboxes are archived from the next message
// (a policy applied while the gestore serves); invalid policies are
// refused and the ones before kept.
func TestSetPolicies(t *testing.T) {
	store, err := localstore.Open(t.TempDir(), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := Open(ctx, Options{Store: store, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	archived := func(n int) bool {
		t.Helper()
		k, err := a.Archive(ctx, Message{Mailbox: "mario@pec.alfa.test", Message: msg(n, 100)})
		if err != nil {
			t.Fatal(err)
		}
		return k != ""
	}
	if archived(1) {
		t.Fatal("archived with no policy")
	}
	if err := a.SetPolicies([]Policy{{Mailbox: "@pec.alfa.test"}}); err != nil {
		t.Fatal(err)
	}
	if !archived(2) {
		t.Fatal("not archived after the domain's policy was set")
	}
	if err := a.SetPolicies([]Policy{{Mailbox: "no-at-sign"}}); err == nil {
		t.Fatal("an invalid policy was taken")
	}
	if !archived(3) {
		t.Fatal("an invalid policy replaced the ones before")
	}
	if err := a.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	if archived(4) {
		t.Fatal("archived after the policies were removed")
	}
}
