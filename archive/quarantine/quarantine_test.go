package quarantine_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/archive/localstore"
	"github.com/custode/custode/archive/quarantine"
	"github.com/custode/custode/policies"
)

func newStore(t *testing.T, now func() time.Time) (*quarantine.Store, *localstore.Store) {
	t.Helper()
	ls, err := localstore.Open(filepath.Join(t.TempDir(), "worm"), localstore.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	q, err := quarantine.New(quarantine.Options{Store: ls, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return q, ls
}

func TestPutListGetExport(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return at.Add(time.Minute) }
	q, ls := newStore(t, now)
	data := []byte("From: a@pec.alfa.test\r\nSubject: x\r\n\r\nvirus\r\n")
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])

	m := quarantine.Message{Identificativo: "opec-1@pec.alfa.test", Mittente: "a@pec.alfa.test", Destinatari: []string{"b@pec.beta.test"},
		Virus: "Eicar-Signature", Point: quarantine.PointAccesso, Time: at, Data: data}
	r, err := q.Put(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2029, 6, 3, 10, 0, 0, 0, time.UTC) // 30 months later
	if r.ID != id || r.SHA256 != id || r.Key != "quarantena/"+id+".eml" || !r.RetainUntil.Equal(want) || r.Size != int64(len(data)) {
		t.Errorf("record %+v", r)
	}
	info, err := ls.Stat(ctx, r.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	if info.Retention.Mode != archive.Compliance || !info.Retention.RetainUntil.Equal(want) {
		t.Errorf("object retention %+v", info.Retention)
	}
	// The same finding again (a retry) keeps the first record.
	again := m
	again.Time = at.Add(time.Hour)
	if r2, err := q.Put(ctx, again); err != nil || r2.Time != r.Time {
		t.Errorf("retry: %+v, %v", r2, err)
	}
	// The same bytes in another transaction, later: one object, its
	// retention extended, two records.
	later := m
	later.Identificativo, later.Point, later.Time = "opec-2@pec.alfa.test", quarantine.PointRicezione, at.AddDate(0, 1, 0)
	if _, err := q.Put(ctx, later); err != nil {
		t.Fatal(err)
	}
	if info, err := ls.Stat(ctx, r.Key, ""); err != nil || !info.Retention.RetainUntil.Equal(want.AddDate(0, 1, 0)) {
		t.Errorf("retention after the second finding: %+v, %v", info.Retention, err)
	}
	recs, err := q.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Identificativo != "opec-1@pec.alfa.test" || recs[1].Identificativo != "opec-2@pec.alfa.test" {
		t.Fatalf("list: %+v", recs)
	}
	it, err := q.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(it.Data, data) || len(it.Records) != 2 {
		t.Errorf("get: %d bytes, %d records", len(it.Data), len(it.Records))
	}
	var z bytes.Buffer
	if err := q.Export(ctx, id, &z); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(z.Bytes()), int64(z.Len()))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	if !bytes.Equal(files[quarantine.FileMessage], data) {
		t.Error("export: message.eml differs")
	}
	var obj struct {
		Key         string    `json:"key"`
		SHA256      string    `json:"sha256"`
		Mode        string    `json:"retention_mode"`
		RetainUntil time.Time `json:"retain_until"`
	}
	if err := json.Unmarshal(files[quarantine.FileObject], &obj); err != nil || obj.SHA256 != id || obj.Mode != "COMPLIANCE" || obj.Key != r.Key {
		t.Errorf("object.json: %s (%v)", files[quarantine.FileObject], err)
	}
	for line := range strings.Lines(string(files[quarantine.FileSums])) {
		hexSum, name, _ := strings.Cut(strings.TrimSpace(line), "  ")
		s := sha256.Sum256(files[name])
		if hex.EncodeToString(s[:]) != hexSum {
			t.Errorf("SHA256SUMS: %s does not match", name)
		}
	}
	// The quarantine cannot be emptied before its time.
	if err := ls.Delete(ctx, r.Key, info.VersionID); !errors.Is(err, archive.ErrWORM) {
		t.Errorf("delete: %v, want ErrWORM", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	q, _ := newStore(t, nil)
	ok := quarantine.Message{Identificativo: "opec-1@x", Point: quarantine.PointAccesso, Data: []byte("x")}
	cases := []struct {
		name string
		m    func(m *quarantine.Message)
	}{
		{"no data", func(m *quarantine.Message) { m.Data = nil }},
		{"no identificativo", func(m *quarantine.Message) { m.Identificativo = "" }},
		{"unknown point", func(m *quarantine.Message) { m.Point = "consegna" }},
		{"an event too old to keep", func(m *quarantine.Message) { m.Time = time.Now().AddDate(-3, 0, 0) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := ok
			c.m(&m)
			if _, err := q.Put(ctx, m); err == nil {
				t.Error("accepted")
			}
		})
	}
	for _, id := range []string{"", "../x", strings.Repeat("A", 64), strings.Repeat("0", 63), strings.Repeat("0", 64) + "/x"} {
		if _, err := q.Get(ctx, id); err == nil || errors.Is(err, quarantine.ErrNotFound) {
			t.Errorf("Get(%q): %v, want an error naming a bad ID", id, err)
		}
	}
	if _, err := q.Get(ctx, strings.Repeat("0", 64)); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("Get of a missing ID: %v, want ErrNotFound", err)
	}
	if _, err := quarantine.New(quarantine.Options{}); err == nil {
		t.Error("New without a store")
	}
	ls, _ := localstore.Open(t.TempDir(), localstore.Options{})
	if _, err := quarantine.New(quarantine.Options{Store: ls, Retention: policies.Period{Months: 29}}); err == nil {
		t.Error("New with a retention below the legal minimum")
	}
}
