package retention_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/s3store"
	"github.com/custode/custode/archive/sicurezza"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/pec"
	"github.com/custode/custode/pec/gestore"
	"github.com/custode/custode/policies"
	"github.com/custode/custode/retention"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is a ledger, an archivio di sicurezza over a store, and the holds.
type world struct {
	t        *testing.T
	now      func() time.Time
	ledger   *ledger.Ledger
	archive  *sicurezza.Archive
	store    archive.Store
	registry *retention.Registry
	manager  *retention.Manager
}

func newWorld(t *testing.T, store archive.Store, now func() time.Time, keep time.Duration) *world {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := ledger.Open(ctx, ledger.Options{Dir: filepath.Join(dir, "ledger")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	reg, err := retention.OpenRegistry(filepath.Join(dir, "holds.json"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := sicurezza.Open(ctx, sicurezza.Options{
		Store: store, Dir: filepath.Join(dir, "sicurezza"), Now: now, Holds: reg,
		Policies:   []sicurezza.Policy{{Mailbox: "@pec.alfa.test", Retention: keep}},
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &world{t: t, now: now, ledger: l, archive: a, store: store, registry: reg,
		manager: &retention.Manager{Ledger: l, Store: store, Registry: reg, Now: now, Gestore: "Alfa PEC S.p.A."}}
}

// transaction archives a message of mailbox and records its ledger entry.
func (w *world) transaction(mailbox, id string) string {
	w.t.Helper()
	ctx := context.Background()
	msg := []byte(fmt.Sprintf("From: posta-certificata@pec.alfa.test\r\nSubject: ACCETTAZIONE: %s\r\n\r\n%s\r\n", id, id))
	at := w.now()
	key, err := w.archive.Archive(ctx, gestore.ArchivedMessage{Mailbox: mailbox, Kind: pec.KindAccettazione, Identificativo: id, Message: msg, Time: at})
	if err != nil || key == "" {
		w.t.Fatalf("archive: %q %v", key, err)
	}
	sum := sha256.Sum256(msg)
	if _, err := w.ledger.Append(ctx, ledger.Event{
		Kind: ledger.KindAccettazione, Identificativo: id, Time: at, Mittente: mailbox, Gestore: "Alfa PEC S.p.A.",
		Destinatari: []ledger.Recipient{{Address: "x@pec.beta.test", Tipo: ledger.TipoCertificato}},
		SHA256:      sum[:], ArchiveKey: key,
	}); err != nil {
		w.t.Fatal(err)
	}
	w.upload()
	return key
}

// upload runs the archive's uploader until its spool is empty.
func (w *world) upload() {
	w.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.archive.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for w.archive.Backlog() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if w.archive.Backlog() > 0 {
		w.t.Fatal("the archive did not upload its spool")
	}
}

// seqOf returns the sequence number of the accettazione of id.
func (w *world) seqOf(id string) uint64 {
	w.t.Helper()
	page, err := w.ledger.Find(context.Background(), ledger.Query{Identificativo: id})
	if err != nil || len(page.Entries) != 1 {
		w.t.Fatalf("entry of %s: %v", id, err)
	}
	return page.Entries[0].Seq
}

// verifyLedger checks that the ledger verifies with purged entries purged.
func (w *world) verifyLedger(purged int) {
	w.t.Helper()
	rep, err := w.ledger.Verify(context.Background(), ledger.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Purged != purged {
		w.t.Fatalf("ledger verify: %+v %v, want %d purged", rep, err, purged)
	}
}

// proves checks entry seq's inclusion proof against the current root.
func (w *world) proves(seq uint64) {
	w.t.Helper()
	ctx := context.Background()
	_, raw, err := w.ledger.Entry(ctx, seq)
	if err != nil {
		w.t.Fatal(err)
	}
	size := w.ledger.Head().Size
	p, err := w.ledger.InclusionProof(ctx, seq, size)
	if err != nil {
		w.t.Fatal(err)
	}
	root, err := w.ledger.RootAt(ctx, size)
	if err != nil {
		w.t.Fatal(err)
	}
	leaf := ledger.LeafHash(raw)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, seq, size, leaf[:], p, root[:]); err != nil {
		w.t.Fatalf("entry %d no longer proves: %v", seq, err)
	}
}

func (w *world) exists(key string) bool {
	_, err := w.store.Stat(context.Background(), key, "")
	return err == nil
}

func keys(p *retention.Plan) []string {
	var out []string
	for _, o := range p.Objects {
		out = append(out, o.Key)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestTimeTravel: with an injected clock and ten-second retention, data
// past retention is purged from the archive; data under a legal hold
// outlives its retention and is purged only after release; a hold placed
// on a mailbox also covers what is archived after it; dry runs change
// nothing; holds and purges are in the ledger, which still verifies.
func TestTimeTravel(t *testing.T) {
	clk := &clock{t: time.Now()}
	store, err := localstore.Open(t.TempDir(), localstore.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, store, clk.Now, 10*time.Second)
	ctx := context.Background()
	m := w.manager

	mario1 := w.transaction("mario@pec.alfa.test", "id-1@pec.alfa.test")
	mario2 := w.transaction("mario@pec.alfa.test", "id-2@pec.alfa.test")
	anna := w.transaction("anna@pec.alfa.test", "id-3@pec.alfa.test")

	hold := retention.Hold{Case: "RG-2026-123", Scope: retention.Scope{Mailbox: "mario@pec.alfa.test"},
		Reason: "causa civile", Actor: "avv.rossi"}
	plan, err := m.Place(ctx, hold, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(plan); !slices.Equal(got, sorted(mario1, mario2)) {
		t.Fatalf("dry-run hold plan: %v", got)
	}
	if hs, _ := w.registry.Holds(); len(hs) != 0 {
		t.Fatal("a dry run placed a hold")
	}
	if _, err := m.Place(ctx, hold, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Place(ctx, hold, false); err == nil {
		t.Error("the same case held twice")
	}
	// Archived after the hold: covered too.
	mario3 := w.transaction("mario@pec.alfa.test", "id-4@pec.alfa.test")
	if info, err := store.Stat(ctx, mario3, ""); err != nil || !info.LegalHold {
		t.Fatalf("an object archived after the hold is not held: %+v %v", info, err)
	}

	clk.Advance(11 * time.Second)
	var progress [][2]uint64 // the Progress calls since the last check
	m.Progress = func(done, total uint64) { progress = append(progress, [2]uint64{done, total}) }
	checkProgress := func(what string, want ...[2]uint64) {
		t.Helper()
		if !slices.Equal(progress, want) {
			t.Errorf("%s: progress %v, want %v", what, progress, want)
		}
		progress = nil
	}
	plan, err = m.Purge(ctx, []string{sicurezza.DefaultPrefix}, "sweeper", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(plan); !slices.Equal(got, []string{anna}) || plan.Kept != 3 {
		t.Fatalf("dry-run purge: %v, kept %d", got, plan.Kept)
	}
	if !w.exists(anna) {
		t.Fatal("a dry run purged")
	}
	// The ledger: anna's entry is past retention, mario's are held.
	keep := retention.LogRetention{Log: policies.Period{Rest: 10 * time.Second}, Exports: policies.Period{Rest: 10 * time.Second}}
	annaSeq := w.seqOf("id-3@pec.alfa.test")
	lplan, err := m.PurgeLog(ctx, keep, "sweeper", true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(lplan.Entries, []uint64{annaSeq}) || lplan.Held != 3 || len(lplan.Events) != 0 {
		t.Fatalf("dry-run log purge: %+v", lplan)
	}
	if _, _, err := w.ledger.Entry(ctx, annaSeq); err != nil {
		t.Fatal("a dry run purged the ledger")
	}
	checkProgress("dry runs")
	if lplan, err = m.PurgeLog(ctx, keep, "sweeper", false); err != nil || len(lplan.Events) != 1 {
		t.Fatalf("log purge: %+v %v", lplan, err)
	}
	checkProgress("log purge", [2]uint64{1, 1})
	if _, _, err := w.ledger.Entry(ctx, annaSeq); !errors.Is(err, ledger.ErrPurged) {
		t.Fatalf("anna's entry after the log purge: %v", err)
	}
	w.verifyLedger(1)
	if _, err := m.Purge(ctx, []string{sicurezza.DefaultPrefix}, "sweeper", false); err != nil {
		t.Fatal(err)
	}
	checkProgress("purge", [2]uint64{1, 1})
	for key, want := range map[string]bool{anna: false, mario1: true, mario2: true, mario3: true} {
		if w.exists(key) != want {
			t.Errorf("after the purge, %s exists = %v, want %v", key, !want, want)
		}
	}

	plan, err = m.Release(ctx, "RG-2026-123", "avv.rossi", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(plan); !slices.Equal(got, sorted(mario1, mario2, mario3)) {
		t.Errorf("release: %v", got)
	}
	if _, err := m.Purge(ctx, []string{sicurezza.DefaultPrefix}, "sweeper", false); err != nil {
		t.Fatal(err)
	}
	checkProgress("purge after the release", [2]uint64{1, 3}, [2]uint64{2, 3}, [2]uint64{3, 3})
	for _, key := range []string{mario1, mario2, mario3} {
		if w.exists(key) {
			t.Errorf("%s outlived its released hold", key)
		}
	}
	if lplan, err = m.PurgeLog(ctx, keep, "sweeper", false); err != nil || len(lplan.Entries) != 3 || lplan.Held != 0 {
		t.Fatalf("log purge after the release: %+v %v", lplan, err)
	}
	w.verifyLedger(4)

	// The ledger recorded it all and still verifies.
	var kinds []string
	page, err := w.ledger.Find(ctx, ledger.Query{Kind: ledger.KindLegalHold})
	if err != nil {
		t.Fatal(err)
	}
	var holdSeqs []uint64
	for _, e := range page.Entries {
		kinds = append(kinds, e.Details["action"])
		holdSeqs = append(holdSeqs, e.Seq)
	}
	if !slices.Equal(kinds, []string{"place", "release"}) {
		t.Errorf("legal-hold entries: %v", kinds)
	}
	page, err = w.ledger.Find(ctx, ledger.Query{Kind: ledger.KindPurge})
	if err != nil {
		t.Fatal(err)
	}
	var objects, ranges []string
	for _, e := range page.Entries {
		if v, ok := e.Details["objects"]; ok {
			objects = append(objects, v)
		}
		if v, ok := e.Details[ledger.DetailLedgerRanges]; ok {
			ranges = append(ranges, v)
		}
	}
	if !slices.Equal(objects, []string{"1", "3"}) || len(ranges) != 2 {
		t.Errorf("purge entries: %+v", page.Entries)
	}
	// Surviving entries still prove against the current tree.
	for _, e := range page.Entries {
		w.proves(e.Seq)
	}
	for _, seq := range holdSeqs {
		w.proves(seq)
	}
}

func TestHoldErrors(t *testing.T) {
	store, err := localstore.Open(t.TempDir(), localstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, store, time.Now, time.Hour)
	ctx := context.Background()
	tests := []struct {
		name string
		hold retention.Hold
	}{
		{"no scope", retention.Hold{Case: "C1", Reason: "r", Actor: "a"}},
		{"no case", retention.Hold{Scope: retention.Scope{Mailbox: "m@pec.alfa.test"}, Reason: "r", Actor: "a"}},
		{"no reason", retention.Hold{Case: "C1", Scope: retention.Scope{Mailbox: "m@pec.alfa.test"}, Actor: "a"}},
		{"empty range", retention.Hold{Case: "C1", Scope: retention.Scope{From: time.Now(), To: time.Now().Add(-time.Hour)}, Reason: "r", Actor: "a"}},
		{"non-ASCII mailbox", retention.Hold{Case: "C1", Scope: retention.Scope{Mailbox: "\u017fara@pec.alfa.test"}, Reason: "r", Actor: "a"}},
		{"upper-case mailbox", retention.Hold{Case: "C1", Scope: retention.Scope{Mailbox: "Sara@pec.alfa.test"}, Reason: "r", Actor: "a"}},
		{"trailing dot", retention.Hold{Case: "C1", Scope: retention.Scope{Mailbox: "sara@pec.alfa.test."}, Reason: "r", Actor: "a"}},
	}
	for _, tt := range tests {
		if _, err := w.manager.Place(ctx, tt.hold, false); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	if _, err := w.manager.Release(ctx, "nessuno", "a", false); err == nil {
		t.Error("released a case that has no hold")
	}
}

// TestScopeFoldingVariants: issue 16 finding 1. A hold's mailbox covers
// that mailbox's transactions only: no folding variant of the address
// (U+017F, the Kelvin sign, fullwidth, Cyrillic, trailing dot,
// plus-addressing) falls in it, nor does it fall in a hold on a variant.
func TestScopeFoldingVariants(t *testing.T) {
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, scope, mailbox string
		covers               bool
	}{
		{"same", "sara@pec.alfa.test", "sara@pec.alfa.test", true},
		{"upper case in the entry", "sara@pec.alfa.test", "SARA@PEC.ALFA.TEST", true},
		{"long s in the entry", "sara@pec.alfa.test", "\u017fara@pec.alfa.test", false},
		{"long s in the scope", "\u017fara@pec.alfa.test", "sara@pec.alfa.test", false},
		{"long s upper in the scope", "\u017fara@pec.alfa.test", "SARA@pec.alfa.test", false},
		{"Kelvin sign in the entry", "katia@pec.alfa.test", "\u212aatia@pec.alfa.test", false},
		{"Kelvin sign in the scope", "\u212aatia@pec.alfa.test", "katia@pec.alfa.test", false},
		{"fullwidth", "sara@pec.alfa.test", "\uff53ara@pec.alfa.test", false},
		{"Cyrillic", "anna@pec.alfa.test", "\u0430nna@pec.alfa.test", false},
		{"trailing dot", "sara@pec.alfa.test", "sara@pec.alfa.test.", false},
		{"plus-addressing", "sara@pec.alfa.test", "sara+x@pec.alfa.test", false},
		{"plus-addressing in the scope", "sara+x@pec.alfa.test", "sara@pec.alfa.test", false},
	}
	for _, c := range cases {
		s := retention.Scope{Mailbox: c.scope}
		if got := s.Covers([]string{"altro@pec.beta.test", c.mailbox}, "id@pec.alfa.test", at); got != c.covers {
			t.Errorf("%s: hold on %q covers %q: %v, want %v", c.name, c.scope, c.mailbox, got, c.covers)
		}
	}
}

// TestHeldObjectMinIO: against the real MinIO, an object under a legal
// hold cannot be deleted by a direct S3 call, even after its retention;
// once released, it can.
func TestHeldObjectMinIO(t *testing.T) {
	endpoint := os.Getenv("CUSTODE_TEST_MINIO")
	if endpoint == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CUSTODE_TEST_MINIO is not set (CI is set: S3 tests must run)")
		}
		t.Skip("CUSTODE_TEST_MINIO is not set: run `eval \"$(scripts/s3-servers.sh start)\"` first")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	store, err := s3store.New(s3store.Config{
		Endpoint: endpoint, Bucket: "custode-holds-" + hex.EncodeToString(rnd[:]),
		AccessKey: os.Getenv("CUSTODE_TEST_S3_ACCESS_KEY"), SecretKey: os.Getenv("CUSTODE_TEST_S3_SECRET_KEY"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, store, time.Now, 2*time.Second)
	key := w.transaction("mario@pec.alfa.test", "id-1@pec.alfa.test")
	if _, err := w.manager.Place(ctx, retention.Hold{Case: "RG-1", Scope: retention.Scope{Identificativi: []string{"id-1@pec.alfa.test"}},
		Reason: "indagine", Actor: "operatore"}, false); err != nil {
		t.Fatal(err)
	}
	info, err := store.Stat(ctx, key, "")
	if err != nil || !info.LegalHold {
		t.Fatalf("not held on MinIO: %+v %v", info, err)
	}
	time.Sleep(time.Until(info.Retention.RetainUntil) + time.Second)
	err = store.Client().RemoveObject(ctx, store.Bucket(), key, minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true})
	if err == nil {
		t.Fatal("MinIO deleted an object under a legal hold")
	}
	if _, err := w.manager.Release(ctx, "RG-1", "operatore", false); err != nil {
		t.Fatal(err)
	}
	if err := store.Client().RemoveObject(ctx, store.Bucket(), key, minio.RemoveObjectOptions{VersionID: info.VersionID}); err != nil {
		t.Errorf("delete after release and retention: %v", err)
	}
}
