package retention

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRegistryReload checks that a registry sees every change another
// process makes to the file, even one within the file system's timestamp
// granularity (the same modification time).
func TestRegistryReload(t *testing.T) {
	write := func(t *testing.T, path string, holds []Hold, inPlace bool, mtime time.Time) {
		t.Helper()
		b, err := json.Marshal(holds)
		if err != nil {
			t.Fatal(err)
		}
		target := path
		if !inPlace {
			target = path + ".new"
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(target, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if !inPlace {
			if err := os.Rename(target, path); err != nil {
				t.Fatal(err)
			}
		}
	}
	mtime := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	one := []Hold{{Case: "A", Scope: Scope{Mailbox: "a@pec.test"}, Reason: "r", Actor: "x", Placed: mtime}}
	tests := []struct {
		name    string
		next    []Hold
		inPlace bool
	}{
		{"rewritten in place, another size", append(one, Hold{Case: "B", Scope: Scope{Mailbox: "b@pec.test"}, Reason: "r", Actor: "x", Placed: mtime}), true},
		{"renamed in place, the same size", []Hold{{Case: "Z", Scope: Scope{Mailbox: "a@pec.test"}, Reason: "r", Actor: "x", Placed: mtime}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "holds.json")
			write(t, path, one, true, mtime)
			r, err := OpenRegistry(path)
			if err != nil {
				t.Fatal(err)
			}
			write(t, path, tt.next, tt.inPlace, mtime)
			got, err := r.Holds()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.next) || got[len(got)-1].Case != tt.next[len(tt.next)-1].Case {
				t.Fatalf("after the change: %+v, want %+v", got, tt.next)
			}
		})
	}
}

// TestWatchReload checks that Watch sees a policy applied within the file
// system's timestamp granularity: a file of the same size and time renamed
// in place.
func TestWatchReload(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "policies", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := PolicyDir(t.TempDir())
	mtime := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	put := func(version string) {
		t.Helper()
		b := []byte(strings.Replace(string(raw), "version: 1", "version: "+version, 1))
		tmp := d.ActivePath() + ".new"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, d.ActivePath()); err != nil {
			t.Fatal(err)
		}
	}
	put("1")
	active := d.Watch(nil)
	if p := active(); p == nil || p.Version != 1 {
		t.Fatalf("first: %+v", p)
	}
	put("2")
	if p := active(); p == nil || p.Version != 2 {
		t.Fatalf("after version 2 was put in place: version %v", p.Version)
	}
}
