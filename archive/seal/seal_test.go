package seal_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/s3store"
	"github.com/custode/custode/archive/seal"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec/pki"
	"github.com/custode/custode/retention"
	"github.com/custode/custode/tsa"
	"github.com/minio/minio-go/v7"
)

var (
	pkiOnce sync.Once
	devSet  *pki.DevSet
	pkiErr  error
)

func testPKI(t testing.TB) *pki.DevSet {
	t.Helper()
	pkiOnce.Do(func() {
		devSet, pkiErr = pki.NewDevSet("Custode Test PEC S.p.A.", "pec.test.example", time.Now())
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return devSet
}

func openLedger(t testing.TB, dir string, checkpoints bool) *ledger.Ledger {
	t.Helper()
	d := testPKI(t)
	opts := ledger.Options{Dir: dir}
	if checkpoints {
		a, err := tsa.NewAuthority(tsa.AuthorityConfig{
			Certificate: d.TSA.Certificate, Signer: d.TSA.Key,
			Chain:  []*x509.Certificate{d.CA.Certificate},
			Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		opts.Checkpoints = &ledger.CheckpointOptions{
			Origin:        "pec.test.example/custode",
			Every:         1000,
			Interval:      100 * time.Millisecond,
			Signer:        &ledger.CMSSigner{Certificate: d.Gestore.Certificate, Key: d.Gestore.Key},
			Stamper:       a,
			RetryInterval: 50 * time.Millisecond,
		}
	}
	l, err := ledger.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func event(i int) ledger.Event {
	return ledger.Event{
		Kind:           ledger.KindAccettazione,
		Identificativo: fmt.Sprintf("opec001.20261123093000.%08d.01.1.1@pec.test.example", i),
		Time:           time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		Mittente:       fmt.Sprintf("mittente%d@pec.test.example", i%97),
		Destinatari:    []ledger.Recipient{{Address: "dest@pec.altro.example", Tipo: ledger.TipoCertificato}},
		Oggetto:        fmt.Sprintf("Fattura n. %d", i),
		Gestore:        "Custode Test PEC S.p.A.",
	}
}

func appendEvents(t testing.TB, l *ledger.Ledger, from, n int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < from+n; i += 16 {
				if _, err := l.Append(ctx, event(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// sealAll waits until every entry up to the latest checkpoint, which covers
// at least n entries, is sealed.
func sealAll(t testing.TB, l *ledger.Ledger, s *seal.Sealer, n uint64) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := s.SealPending(ctx); err != nil {
			t.Logf("seal: %v", err)
		}
		last, err := l.LastSeal(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp, err := l.LatestCheckpoint(ctx); err == nil && last != nil && last.To == cp.Size && cp.Size >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("segments not sealed in time")
}

func verifyOpts(seals []ledger.Seal) seal.VerifyOptions {
	d := devSet
	return seal.VerifyOptions{
		Seals: seals, Roots: d.Roots(), TSARoots: d.Roots(),
		MinRetainUntil: func(c *ledger.Checkpoint) time.Time { return retention.LegalMinimum().AddTo(c.Time) },
	}
}

func mustVerify(t testing.TB, store archive.Store, seals []ledger.Seal) *seal.Report {
	t.Helper()
	opts := verifyOpts(seals)
	var calls [][2]uint64
	opts.Progress = func(done, total uint64) { calls = append(calls, [2]uint64{done, total}) }
	r, err := seal.Verify(context.Background(), store, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("archive verify: %s", strings.Join(r.Problems, "\n"))
	}
	// One call per segment, the last with every segment done.
	n := uint64(r.Segments)
	if uint64(len(calls)) != n || n > 0 && calls[n-1] != [2]uint64{n, n} {
		t.Errorf("progress calls %v, want 1..%d of %d", calls, n, n)
	}
	return r
}

// roundTrip seals a ledger into store, verifies the archive, rebuilds the
// ledger from it alone, and checks the rebuilt ledger.
func roundTrip(t *testing.T, store archive.Store) {
	ctx := context.Background()
	l := openLedger(t, t.TempDir(), true)
	defer l.Close()
	s, err := seal.New(seal.Options{Ledger: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, l, 0, 5000)
	sealAll(t, l, s, 5000)
	seals, err := l.Seals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, store, seals)
	t.Logf("%d segments, %d entries, last checkpoint %d", r.Segments, r.Entries, r.Checkpoint.Size)

	// Queries from the archive alone find what the ledger finds, page by
	// page.
	for _, q := range []ledger.Query{{Mailbox: "mittente5@pec.test.example", Limit: 7}, {Identificativo: event(1234).Identificativo}} {
		want, err := l.Find(ctx, ledger.Query{Mailbox: q.Mailbox, Identificativo: q.Identificativo})
		if err != nil {
			t.Fatal(err)
		}
		var got []*ledger.Entry
		for {
			page, err := seal.Find(ctx, store, seal.FindOptions{Query: q, Roots: devSet.Roots(), TSARoots: devSet.Roots()})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page.Entries...)
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
		if len(got) != len(want.Entries) || len(got) == 0 {
			t.Fatalf("find %+v in the archive: %d entries, the ledger has %d", q, len(got), len(want.Entries))
		}
		// The ledger's mailbox index is in time order, the archive in
		// sequence order.
		slices.SortFunc(want.Entries, func(a, b *ledger.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
		for i := range got {
			if got[i].Seq != want.Entries[i].Seq {
				t.Fatalf("find %+v in the archive: entry %d is %d, the ledger says %d", q, i, got[i].Seq, want.Entries[i].Seq)
			}
		}
	}
	if _, err := seal.Find(ctx, store, seal.FindOptions{Query: ledger.Query{Cursor: "x"}, Roots: devSet.Roots(), TSARoots: devSet.Roots()}); err == nil {
		t.Error("a bad cursor accepted")
	}

	// A seal the archive lacks is reported.
	extra := append(seals[:len(seals):len(seals)], ledger.Seal{From: 1 << 40, To: 1<<40 + 1, Key: seal.Key(seal.DefaultPrefix, 1<<40, 1<<40+1)})
	r, err = seal.Verify(ctx, store, verifyOpts(extra))
	if err != nil || r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), "missing from the archive") {
		t.Fatalf("verify with a seal missing from the archive: %v %v", err, r.Problems)
	}

	// Lost disk: rebuild from the archive alone.
	rebuilt := openLedger(t, t.TempDir(), false)
	defer rebuilt.Close()
	var progress [][2]uint64
	last, err := seal.RebuildWith(ctx, store, rebuilt, seal.RebuildOptions{Roots: devSet.Roots(), TSARoots: devSet.Roots(),
		Progress: func(done, total uint64) { progress = append(progress, [2]uint64{done, total}) }})
	if n := uint64(len(progress)); err == nil && (n == 0 || progress[n-1] != [2]uint64{n, n}) {
		t.Errorf("rebuild progress %v, want 1..n of n", progress)
	}
	if err != nil {
		t.Fatal(err)
	}
	if h := rebuilt.Head(); h.Size != last.Size || h.Root != last.Root {
		t.Fatalf("rebuilt head %d %x, last checkpoint %d %x", h.Size, h.Root[:8], last.Size, last.Root[:8])
	}
	rr, err := rebuilt.Verify(ctx, ledger.VerifyOptions{Roots: devSet.Roots(), TSARoots: devSet.Roots(), RequireTimestamps: true})
	if err != nil || !rr.OK() {
		t.Fatalf("verify the rebuilt ledger: %v %+v", err, rr)
	}
	page, err := rebuilt.Find(ctx, ledger.Query{Identificativo: event(1234).Identificativo})
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("find in the rebuilt ledger: %v %v", err, page)
	}
	rseals, err := rebuilt.Seals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustVerify(t, store, rseals)
}

func TestSealLocalStore(t *testing.T) {
	store, err := localstore.Open(t.TempDir(), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, store)
}

func newMinIOStore(t *testing.T, endpoint string) *s3store.Store {
	t.Helper()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	s, err := s3store.New(s3store.Config{
		Endpoint:  endpoint,
		AccessKey: os.Getenv("CUSTODE_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("CUSTODE_TEST_S3_SECRET_KEY"),
		Bucket:    "custode-seal-" + hex.EncodeToString(rnd[:]),
	})
	if err != nil {
		t.Fatal(err)
	}
	// A MinIO just started may still answer "Server not initialized yet".
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.EnsureBucket(t.Context())
		if err == nil {
			return s
		}
		if !strings.Contains(err.Error(), "not initialized") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func requireEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		msg := name + " is not set: run `eval \"$(scripts/s3-servers.sh)\"` first"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (CI is set: S3 tests must run)")
		}
		t.Skip(msg)
	}
	return v
}

func TestSealMinIO(t *testing.T) {
	store := newMinIOStore(t, requireEnv(t, "CUSTODE_TEST_MINIO"))
	roundTrip(t, store)

	// Tamper: a segment rewritten through the S3 API, as a new version.
	ctx := context.Background()
	var key string
	for le, err := range store.List(ctx, seal.DefaultPrefix) {
		if err != nil {
			t.Fatal(err)
		}
		key = le.Key
	}
	obj, err := store.Get(ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	forged := []byte(strings.Replace(string(obj.Data), "Fattura", "Fatture", 1))
	if _, err := store.Client().PutObject(ctx, store.Bucket(), key, strings.NewReader(string(forged)), int64(len(forged)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := seal.Verify(ctx, store, verifyOpts(nil))
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), key+": rewritten: 2 versions") {
		t.Fatalf("a rewritten segment was not flagged: %v", r.Problems)
	}
}

// minioProcess is a MinIO server of the test's own, to stop and restart.
type minioProcess struct {
	bin, dir, addr string
	cmd            *exec.Cmd
}

func (m *minioProcess) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, m.dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+os.Getenv("CUSTODE_TEST_S3_ACCESS_KEY"),
		"MINIO_ROOT_PASSWORD="+os.Getenv("CUSTODE_TEST_S3_SECRET_KEY"), "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		// ready, not live: live answers before the object layer is up
		// ("Server not initialized yet").
		resp, err := http.Get("http://" + m.addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("minio did not start")
}

func (m *minioProcess) stop() {
	if m.cmd != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
		m.cmd = nil
	}
}

// freeAddr returns a loopback address nothing listens on now, for a
// process started later. The port is drawn below Linux's ephemeral range
// (32768-60999), so that no socket bound to port 0 meanwhile can be given
// it before that process binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	var err error
	for range 100 {
		var ln net.Listener
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12000)))
		if err == nil {
			defer ln.Close()
			return ln.Addr().String()
		}
	}
	t.Fatal(err)
	return ""
}

// TestIntegrationMinIOOutage stops MinIO for 60 s while 100,000 events are
// appended: appends go on, nothing is lost, and once MinIO is back the
// backlog drains and the archive verifies.
func TestIntegrationMinIOOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("an outage of 60 s")
	}
	bin := requireEnv(t, "CUSTODE_TEST_MINIO_BIN")
	m := &minioProcess{bin: bin, dir: t.TempDir(), addr: freeAddr(t)}
	m.start(t)
	defer m.stop()
	store := newMinIOStore(t, "http://"+m.addr)

	l := openLedger(t, t.TempDir(), true)
	defer l.Close()
	s, err := seal.New(seal.Options{Ledger: l, Store: store, Poll: 200 * time.Millisecond, MaxBackoff: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	appendEvents(t, l, 0, 10000)
	sealAll(t, l, s, 10000)

	m.stop()
	outage := time.Now()
	appendEvents(t, l, 10000, 100000)
	appended := time.Since(outage)
	backlog, cps, err := s.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("100,000 events appended in %v with MinIO down; backlog %d entries in %d checkpoints", appended, backlog, cps)
	if backlog < 50000 {
		t.Fatalf("backlog %d: the archive did not look down", backlog)
	}
	time.Sleep(time.Until(outage.Add(60 * time.Second)))
	m.start(t)
	restarted := time.Now()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		last, err := l.LastSeal(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cp, err := l.LatestCheckpoint(context.Background())
		if err == nil && last != nil && last.To == cp.Size && cp.Size >= 110000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog did not drain: sealed to %v", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("backlog drained %v after MinIO returned", time.Since(restarted))
	// The outage is in the ledger, for the audit's P02.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) { // a hang guard, not a speed bound
		page, err := l.Find(context.Background(), ledger.Query{Kind: ledger.KindOutage})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Entries) > 0 && page.Entries[0].Details[ledger.DetailOutageService] == "archive" {
			from, _ := time.Parse(time.RFC3339Nano, page.Entries[0].Details[ledger.DetailOutageFrom])
			t.Logf("outage recorded: %s to %s: %s", from.Format(time.RFC3339), page.Entries[0].Time.Format(time.RFC3339), page.Entries[0].Details[ledger.DetailOutageCause])
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the archive's outage is not in the ledger")
		}
	}
	seals, err := l.Seals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, store, seals)
	if r.Entries < 110000 {
		t.Fatalf("archive holds %d entries, want at least 110000", r.Entries)
	}
	lr, err := l.Verify(context.Background(), ledger.VerifyOptions{Roots: devSet.Roots(), TSARoots: devSet.Roots()})
	if err != nil || !lr.OK() || lr.To < 110000 {
		t.Fatalf("ledger verify: %v %+v", err, lr)
	}
}

// BenchmarkSealMinIO measures segment seal-and-upload throughput to MinIO
// on loopback: b.N entries are appended first (not timed), with a
// checkpoint every 10,000 entries as in production; then every pending
// segment is read from the ledger, encoded, uploaded with COMPLIANCE
// retention and a checksum, and recorded in the ledger.
func BenchmarkSealMinIO(b *testing.B) {
	endpoint := os.Getenv("CUSTODE_TEST_MINIO")
	if endpoint == "" {
		b.Skip("CUSTODE_TEST_MINIO is not set: run `eval \"$(scripts/s3-servers.sh start)\"` first")
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	store, err := s3store.New(s3store.Config{
		Endpoint: endpoint, Bucket: "custode-seal-bench-" + hex.EncodeToString(rnd[:]),
		AccessKey: os.Getenv("CUSTODE_TEST_S3_ACCESS_KEY"), SecretKey: os.Getenv("CUSTODE_TEST_S3_SECRET_KEY"),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := store.EnsureBucket(ctx); err != nil {
		b.Fatal(err)
	}
	d := testPKI(b)
	a, err := tsa.NewAuthority(tsa.AuthorityConfig{
		Certificate: d.TSA.Certificate, Signer: d.TSA.Key, Chain: []*x509.Certificate{d.CA.Certificate},
		Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1},
	})
	if err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(ctx, ledger.Options{Dir: b.TempDir(), Checkpoints: &ledger.CheckpointOptions{
		Origin: "pec.test.example/custode", Every: uint64(min(10000, b.N)), Interval: time.Second,
		Signer:  &ledger.CMSSigner{Certificate: d.Gestore.Certificate, Key: d.Gestore.Key},
		Stamper: a, RetryInterval: 50 * time.Millisecond,
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	appendEvents(b, l, 0, b.N)
	for {
		cp, err := l.LatestCheckpoint(ctx)
		if err == nil && cp.Size >= uint64(b.N) && l.PendingTimestamps() == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s, err := seal.New(seal.Options{Ledger: l, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	segments := 0
	for {
		n, err := s.SealPending(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		segments += n
	}
	b.StopTimer()
	last, err := l.LastSeal(ctx)
	if err != nil || last == nil {
		b.Fatalf("no seal: %v", err)
	}
	b.ReportMetric(float64(last.To)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(segments), "segments")
}
