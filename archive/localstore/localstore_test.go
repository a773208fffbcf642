package localstore

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/archivetest"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestConformance(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	archivetest.Run(t, func(t *testing.T) archive.Store {
		s, err := Open(t.TempDir(), Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, archivetest.Options{
		Now:     clock.Now,
		Advance: clock.Advance,
		Corrupt: func(t *testing.T, st archive.Store, key, versionID string) {
			path := filepath.Join(st.(*Store).keyDir(key), versionID+dataExt)
			// The file is read-only; an intruder with write access to the
			// directory replaces it anyway.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("the altered bytes!"), 0o444); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestReopen checks that what a Store wrote is there for the next process.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	now := time.Now()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ret := archive.Retention{Mode: archive.Compliance, RetainUntil: now.Add(time.Hour)}
	info, err := s.Put(ctx, "seg/1", []byte("sealed"), archive.PutOptions{Retention: ret})
	if err != nil {
		t.Fatal(err)
	}
	// A crash can leave a temporary file behind; it must be ignored.
	if err := os.WriteFile(filepath.Join(s.keyDir("seg/1"), tmpPrefix+"123"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s2.Get(ctx, "seg/1", "")
	if err != nil {
		t.Fatal(err)
	}
	if string(obj.Data) != "sealed" || obj.VersionID != info.VersionID || !obj.Retention.RetainUntil.Equal(ret.RetainUntil.UTC()) {
		t.Errorf("after reopen: %+v", obj)
	}
	if _, err := s2.Put(ctx, "seg/1", []byte("again"), archive.PutOptions{Retention: ret}); err == nil {
		t.Error("Put over an existing key after reopen succeeded")
	}
}
