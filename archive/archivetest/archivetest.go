// Package archivetest is the conformance suite every archive.Store driver
// must pass: one [Run] call from the driver's tests, with a constructor for
// fresh, empty stores and the hooks the driver can offer.
package archivetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custode/custode/archive"
)

// DefaultShortRetention is the retain-until offset of the cases that wait
// for a retention to pass: long enough for a put and a legal hold to reach
// a real server first, short enough to keep the suite quick when Advance
// really sleeps.
const DefaultShortRetention = 3 * time.Second

// Options are a driver's hooks into the suite. The zero value runs the
// cases that need no hook, on the wall clock.
type Options struct {
	// Now is the store's clock. Nil means time.Now.
	Now func() time.Time
	// Advance moves the store's clock forward by d. Nil means time.Sleep,
	// for servers that keep their own time.
	Advance func(d time.Duration)
	// ShortRetention is the retain-until offset of the cases that wait it
	// out. Zero means DefaultShortRetention.
	ShortRetention time.Duration
	// Corrupt, if set, alters the stored bytes of one version behind the
	// store's back (as a disk fault or an intruder would); the suite then
	// expects Get to fail with archive.ErrChecksum. Nil skips that case.
	Corrupt func(t *testing.T, s archive.Store, key, versionID string)
	// Overwrite, if set, writes data under key the way a foreign client
	// could (on S3: a plain PUT, which makes a new version); the suite
	// then checks that the locked version survives and that reads by its
	// version id, and reads with an empty version id, still return it. Nil
	// skips that case (for stores where no foreign write is possible).
	Overwrite func(t *testing.T, s archive.Store, key string, data []byte)
	// KnownGaps names cases the backing server is known to fail, each with
	// the reason; they are skipped with that reason in the test log. Use it
	// for server bugs only, never for the driver's own shortcomings.
	KnownGaps map[string]string
}

type suite struct {
	Options
	newStore func(t *testing.T) archive.Store
}

func (s *suite) short() time.Duration {
	if s.ShortRetention > 0 {
		return s.ShortRetention
	}
	return DefaultShortRetention
}

func (s *suite) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// waitPast returns once the store's clock is past t (plus a margin for the
// server's rounding).
func (s *suite) waitPast(t time.Time) {
	d := time.Until(t) + 1100*time.Millisecond
	if s.Now != nil {
		d = t.Sub(s.Now()) + 1100*time.Millisecond
	}
	if d <= 0 {
		return
	}
	if s.Advance != nil {
		s.Advance(d)
		return
	}
	time.Sleep(d)
}

// long is a retention that outlives the test, to the second (S3 keeps
// retain-until dates to the second).
func (s *suite) long() archive.Retention {
	return archive.Retention{Mode: archive.Compliance, RetainUntil: s.now().Add(24 * time.Hour).Truncate(time.Second)}
}

// Run runs every conformance case as a subtest of t. newStore MUST return a
// fresh store with no objects for each call.
func Run(t *testing.T, newStore func(t *testing.T) archive.Store, opts Options) {
	s := &suite{Options: opts, newStore: newStore}
	cases := []struct {
		name string
		run  func(t *testing.T, st archive.Store)
	}{
		{"PutGetCompliance", s.putGet},
		{"SecondPutRefused", s.secondPut},
		{"ContentKey", s.contentKey},
		{"ForeignOverwriteKeepsLockedVersion", s.foreignOverwrite},
		{"DeleteLockedRefused", s.deleteLocked},
		{"ShortenRefused", s.shorten},
		{"ExtendAllowed", s.extend},
		{"LegalHoldBlocksDeleteAfterExpiry", s.legalHold},
		{"ListPrefix", s.list},
		{"NotFound", s.notFound},
		{"InvalidArguments", s.invalid},
		{"CorruptionDetected", s.corrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if why, ok := s.KnownGaps[c.name]; ok {
				t.Skip("known server gap: " + why)
			}
			c.run(t, s.newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, st archive.Store, key string, data []byte, opts archive.PutOptions) archive.ObjectInfo {
	t.Helper()
	info, err := st.Put(ctx(t), key, data, opts)
	if err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
	if info.VersionID == "" {
		t.Fatalf("Put(%s) returned no version id", key)
	}
	return info
}

// checkInfo compares what a store reports with what was written.
func checkInfo(t *testing.T, what string, got archive.ObjectInfo, key string, data []byte, ret archive.Retention, hold bool) {
	t.Helper()
	if got.Key != key {
		t.Errorf("%s: key %q, want %q", what, got.Key, key)
	}
	if got.Size != int64(len(data)) {
		t.Errorf("%s: size %d, want %d", what, got.Size, len(data))
	}
	if got.SHA256 != archive.Sum(data) {
		t.Errorf("%s: sha256 %x, want %x", what, got.SHA256, archive.Sum(data))
	}
	if got.Retention.Mode != ret.Mode {
		t.Errorf("%s: mode %q, want %q", what, got.Retention.Mode, ret.Mode)
	}
	if !got.Retention.RetainUntil.Equal(ret.RetainUntil) {
		t.Errorf("%s: retain-until %v, want %v", what, got.Retention.RetainUntil, ret.RetainUntil)
	}
	if got.LegalHold != hold {
		t.Errorf("%s: legal hold %v, want %v", what, got.LegalHold, hold)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one matching %q", what, err, target)
	}
}

func (s *suite) putGet(t *testing.T, st archive.Store) {
	data := []byte("busta di trasporto, firmata\r\n")
	ret := s.long()
	info := mustPut(t, st, "pec/2026/msg-1.eml", data, archive.PutOptions{Retention: ret})
	checkInfo(t, "Put", info, "pec/2026/msg-1.eml", data, ret, false)

	for _, v := range []string{info.VersionID, ""} {
		obj, err := st.Get(ctx(t), "pec/2026/msg-1.eml", v)
		if err != nil {
			t.Fatalf("Get(version %q): %v", v, err)
		}
		if !bytes.Equal(obj.Data, data) {
			t.Errorf("Get(version %q) = %q, want %q", v, obj.Data, data)
		}
		if obj.VersionID != info.VersionID {
			t.Errorf("Get(version %q): version %q, want %q", v, obj.VersionID, info.VersionID)
		}
		checkInfo(t, "Get", obj.ObjectInfo, "pec/2026/msg-1.eml", data, ret, false)

		st2, err := st.Stat(ctx(t), "pec/2026/msg-1.eml", v)
		if err != nil {
			t.Fatalf("Stat(version %q): %v", v, err)
		}
		checkInfo(t, "Stat", st2, "pec/2026/msg-1.eml", data, ret, false)
	}

	// An empty object is an object too.
	ret2 := s.long()
	e := mustPut(t, st, "empty", nil, archive.PutOptions{Retention: ret2, LegalHold: true})
	obj, err := st.Get(ctx(t), "empty", e.VersionID)
	if err != nil {
		t.Fatalf("Get(empty): %v", err)
	}
	checkInfo(t, "Get(empty)", obj.ObjectInfo, "empty", nil, ret2, true)
}

func (s *suite) secondPut(t *testing.T, st archive.Store) {
	first := []byte("first")
	info := mustPut(t, st, "seg/000001", first, archive.PutOptions{Retention: s.long()})
	_, err := st.Put(ctx(t), "seg/000001", []byte("second"), archive.PutOptions{Retention: s.long()})
	wantErr(t, "second Put", err, archive.ErrExists)
	for _, v := range []string{info.VersionID, ""} {
		obj, err := st.Get(ctx(t), "seg/000001", v)
		if err != nil {
			t.Fatalf("Get(version %q) after refused Put: %v", v, err)
		}
		if !bytes.Equal(obj.Data, first) || obj.VersionID != info.VersionID {
			t.Errorf("Get(version %q) after refused Put = %q version %s, want %q version %s",
				v, obj.Data, obj.VersionID, first, info.VersionID)
		}
	}
}

func (s *suite) contentKey(t *testing.T, st archive.Store) {
	data := []byte("checkpoint 42")
	a, err := archive.PutContent(ctx(t), st, "cas/", data, archive.PutOptions{Retention: s.long()})
	if err != nil {
		t.Fatalf("PutContent: %v", err)
	}
	if want := archive.ContentKey("cas/", data); a.Key != want {
		t.Errorf("PutContent key %q, want %q", a.Key, want)
	}
	b, err := archive.PutContent(ctx(t), st, "cas/", data, archive.PutOptions{Retention: s.long()})
	if err != nil {
		t.Fatalf("second PutContent: %v", err)
	}
	if a.VersionID != b.VersionID {
		t.Errorf("second PutContent made version %s, want the first, %s", b.VersionID, a.VersionID)
	}
}

func (s *suite) foreignOverwrite(t *testing.T, st archive.Store) {
	if s.Overwrite == nil {
		t.Skip("the store offers no foreign write")
	}
	data := []byte("locked original")
	info := mustPut(t, st, "ricevute/r1", data, archive.PutOptions{Retention: s.long()})
	s.Overwrite(t, st, "ricevute/r1", []byte("forged"))
	for _, v := range []string{info.VersionID, ""} {
		obj, err := st.Get(ctx(t), "ricevute/r1", v)
		if err != nil {
			t.Fatalf("Get(version %q) after foreign write: %v", v, err)
		}
		if !bytes.Equal(obj.Data, data) || obj.VersionID != info.VersionID {
			t.Errorf("Get(version %q) after foreign write = %q version %s, want %q version %s",
				v, obj.Data, obj.VersionID, data, info.VersionID)
		}
	}
	// Our own Put still refuses the key.
	_, err := st.Put(ctx(t), "ricevute/r1", []byte("again"), archive.PutOptions{Retention: s.long()})
	wantErr(t, "Put after foreign write", err, archive.ErrExists)
}

func (s *suite) deleteLocked(t *testing.T, st archive.Store) {
	data := []byte("do not delete")
	info := mustPut(t, st, "log/seg-1", data, archive.PutOptions{Retention: s.long()})
	err := st.Delete(ctx(t), "log/seg-1", info.VersionID)
	wantErr(t, "Delete of a locked version", err, archive.ErrWORM)
	var re *archive.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("Delete error %T is not a *archive.RefusedError", err)
	}
	if _, err := st.Get(ctx(t), "log/seg-1", info.VersionID); err != nil {
		t.Fatalf("Get after refused Delete: %v", err)
	}
	wantErr(t, "Delete with empty version", st.Delete(ctx(t), "log/seg-1", ""), archive.ErrInvalid)
}

func (s *suite) shorten(t *testing.T, st archive.Store) {
	ret := s.long()
	info := mustPut(t, st, "k", []byte("x"), archive.PutOptions{Retention: ret})
	err := st.ExtendRetention(ctx(t), "k", info.VersionID, ret.RetainUntil.Add(-time.Hour))
	wantErr(t, "shortening ExtendRetention", err, archive.ErrWORM)
	got, err := st.Stat(ctx(t), "k", info.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Retention.RetainUntil.Equal(ret.RetainUntil) || got.Retention.Mode != archive.Compliance {
		t.Errorf("retention after refused shortening = %v, want %v", got.Retention, ret)
	}
}

func (s *suite) extend(t *testing.T, st archive.Store) {
	ret := s.long()
	info := mustPut(t, st, "k", []byte("x"), archive.PutOptions{Retention: ret})
	later := ret.RetainUntil.Add(48 * time.Hour)
	if err := st.ExtendRetention(ctx(t), "k", info.VersionID, later); err != nil {
		t.Fatalf("ExtendRetention: %v", err)
	}
	got, err := st.Stat(ctx(t), "k", info.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	want := archive.Retention{Mode: archive.Compliance, RetainUntil: later}
	if !got.Retention.RetainUntil.Equal(later) || got.Retention.Mode != archive.Compliance {
		t.Errorf("retention after extension = %v, want %v", got.Retention, want)
	}
}

func (s *suite) legalHold(t *testing.T, st archive.Store) {
	until := s.now().Add(s.short()).Truncate(time.Second)
	if !until.After(s.now()) {
		until = until.Add(time.Second)
	}
	ret := archive.Retention{Mode: archive.Compliance, RetainUntil: until}
	held := mustPut(t, st, "hold/a", []byte("held"), archive.PutOptions{Retention: ret})
	free := mustPut(t, st, "hold/b", []byte("free"), archive.PutOptions{Retention: ret})
	if err := st.SetLegalHold(ctx(t), "hold/a", held.VersionID, true); err != nil {
		t.Fatalf("SetLegalHold(on): %v", err)
	}
	got, err := st.Stat(ctx(t), "hold/a", held.VersionID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LegalHold {
		t.Errorf("Stat after SetLegalHold(on): no legal hold")
	}

	s.waitPast(until)

	wantErr(t, "Delete under legal hold after retain-until",
		st.Delete(ctx(t), "hold/a", held.VersionID), archive.ErrWORM)
	if err := st.Delete(ctx(t), "hold/b", free.VersionID); err != nil {
		t.Fatalf("Delete after retain-until, no hold: %v", err)
	}
	if err := st.SetLegalHold(ctx(t), "hold/a", held.VersionID, false); err != nil {
		t.Fatalf("SetLegalHold(off): %v", err)
	}
	if err := st.Delete(ctx(t), "hold/a", held.VersionID); err != nil {
		t.Fatalf("Delete after hold released: %v", err)
	}
	_, err = st.Get(ctx(t), "hold/a", held.VersionID)
	wantErr(t, "Get of a deleted version", err, archive.ErrNotFound)
}

func (s *suite) list(t *testing.T, st archive.Store) {
	keys := []string{"a/2", "a/1", "a/10/x", "ab", "b/1"}
	versions := map[string]string{}
	for _, k := range keys {
		versions[k] = mustPut(t, st, k, []byte(k), archive.PutOptions{Retention: s.long()}).VersionID
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/10/x", "a/2"}},
		{"a", []string{"a/1", "a/10/x", "a/2", "ab"}},
		{"a/1", []string{"a/1", "a/10/x"}},
		{"", []string{"a/1", "a/10/x", "a/2", "ab", "b/1"}},
		{"c/", nil},
	}
	for _, tt := range tests {
		var got []string
		for e, err := range st.List(ctx(t), tt.prefix) {
			if err != nil {
				t.Fatalf("List(%q): %v", tt.prefix, err)
			}
			if e.VersionID != versions[e.Key] {
				t.Errorf("List(%q): %s version %q, want %q", tt.prefix, e.Key, e.VersionID, versions[e.Key])
			}
			if e.Size != int64(len(e.Key)) {
				t.Errorf("List(%q): %s size %d, want %d", tt.prefix, e.Key, e.Size, len(e.Key))
			}
			got = append(got, e.Key)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.prefix, got, tt.want)
		}
	}
}

func (s *suite) notFound(t *testing.T, st archive.Store) {
	_, err := st.Get(ctx(t), "missing", "")
	wantErr(t, "Get of a missing key", err, archive.ErrNotFound)
	_, err = st.Stat(ctx(t), "missing", "")
	wantErr(t, "Stat of a missing key", err, archive.ErrNotFound)

	info := mustPut(t, st, "present", []byte("x"), archive.PutOptions{Retention: s.long()})
	other := mustPut(t, st, "other", []byte("y"), archive.PutOptions{Retention: s.long()})
	_, err = st.Get(ctx(t), "present", other.VersionID)
	wantErr(t, "Get with another key's version id", err, archive.ErrNotFound)
	_, err = st.Get(ctx(t), "missing", info.VersionID)
	wantErr(t, "Get of a missing key with a version id", err, archive.ErrNotFound)
}

func (s *suite) invalid(t *testing.T, st archive.Store) {
	tests := []struct {
		name string
		key  string
		opts archive.PutOptions
	}{
		{"no mode", "k", archive.PutOptions{Retention: archive.Retention{RetainUntil: s.long().RetainUntil}}},
		{"bad mode", "k", archive.PutOptions{Retention: archive.Retention{Mode: "FOREVER", RetainUntil: s.long().RetainUntil}}},
		{"no retain-until", "k", archive.PutOptions{Retention: archive.Retention{Mode: archive.Compliance}}},
		{"past retain-until", "k", archive.PutOptions{Retention: archive.Retention{Mode: archive.Compliance, RetainUntil: s.now().Add(-time.Minute)}}},
		{"empty key", "", archive.PutOptions{Retention: s.long()}},
		{"dot-dot key", "a/../b", archive.PutOptions{Retention: s.long()}},
		{"leading slash", "/a", archive.PutOptions{Retention: s.long()}},
		{"space in key", "a b", archive.PutOptions{Retention: s.long()}},
	}
	for _, tt := range tests {
		_, err := st.Put(ctx(t), tt.key, []byte("x"), tt.opts)
		wantErr(t, "Put with "+tt.name, err, archive.ErrInvalid)
	}
	for e, err := range st.List(ctx(t), "") {
		t.Errorf("invalid Puts left %v (err %v)", e, err)
	}
}

func (s *suite) corrupt(t *testing.T, st archive.Store) {
	if s.Corrupt == nil {
		t.Skip("the store offers no way to corrupt an object")
	}
	info := mustPut(t, st, "evidence/e1", []byte("the original bytes"), archive.PutOptions{Retention: s.long()})
	s.Corrupt(t, st, "evidence/e1", info.VersionID)
	obj, err := st.Get(ctx(t), "evidence/e1", info.VersionID)
	if obj != nil {
		t.Errorf("Get of a corrupted object returned bytes %q", obj.Data)
	}
	wantErr(t, "Get of a corrupted object", err, archive.ErrChecksum)
}
