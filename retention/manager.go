package retention

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/ledger/record"
)

// Object is one archive object a hold or a purge acts on, and why.
type Object struct {
	Key       string
	VersionID string
	Size      int64
	// Why says what makes it part of the plan: the ledger entry or sealed
	// segment it belongs to, or its expired retention.
	Why string
}

func (o Object) id() string { return o.Key + " " + o.VersionID }

// Plan is what a hold, a release or a purge changes, or would change with
// a dry run.
type Plan struct {
	Action  string // "place", "release" or "purge"
	Case    string
	Objects []Object
	DryRun  bool
	// Kept counts objects a purge looked at and kept (retention not
	// passed, or under a legal hold).
	Kept int
}

// Manager places and releases legal holds on archive objects and purges
// what has expired and is not held, recording each action in the ledger.
type Manager struct {
	Ledger   *ledger.Ledger
	Store    archive.Store
	Registry *Registry
	// SegmentPrefix is where sealed segments are; empty means none are
	// held.
	SegmentPrefix string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Gestore names the gestore in the ledger events.
	Gestore string
	// Progress, if not nil, is called as a purge deletes: by Purge with
	// the archive objects deleted and planned, by PurgeLog with the
	// ledger entries purged and planned. A dry run never calls it.
	Progress func(done, total uint64)
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Matching returns the archive objects scope covers: the objects the
// ledger's entries in scope name (archivio di sicurezza), and the sealed
// segments that hold those entries.
func (m *Manager) Matching(ctx context.Context, scope Scope) ([]Object, error) {
	entries, err := m.entries(ctx, scope)
	if err != nil {
		return nil, err
	}
	// The seals of the segments that can hold entries (sorted by Seq):
	// read from the first entry's to past the last's, not the whole
	// history.
	var seals []ledger.Seal
	if m.SegmentPrefix != "" && len(entries) > 0 {
		last := entries[len(entries)-1].Seq
		for s, err := range m.Ledger.SealsFrom(ctx, entries[0].Seq) {
			if err != nil {
				return nil, fmt.Errorf("retention: seals: %w", err)
			}
			if s.From > last {
				break
			}
			seals = append(seals, s)
		}
	}
	seen := map[string]bool{}
	var out []Object
	add := func(o Object) {
		if !seen[o.id()] {
			seen[o.id()] = true
			out = append(out, o)
		}
	}
	for _, e := range entries {
		if e.ArchiveKey != "" {
			info, err := m.Store.Stat(ctx, e.ArchiveKey, "")
			switch {
			case errors.Is(err, archive.ErrNotFound):
				// Spooled, not uploaded yet: the archive holds it on
				// upload (Registry.Covering).
			case err != nil:
				return nil, fmt.Errorf("retention: %s: %w", e.ArchiveKey, err)
			default:
				add(Object{Key: info.Key, VersionID: info.VersionID, Size: info.Size, Why: fmt.Sprintf("entry %d (%s %s)", e.Seq, e.Kind, e.Identificativo)})
			}
		}
		i, ok := slices.BinarySearchFunc(seals, e.Seq, func(s ledger.Seal, seq uint64) int {
			switch {
			case s.To <= seq:
				return -1
			case s.From > seq:
				return 1
			}
			return 0
		})
		if ok {
			s := seals[i]
			add(Object{Key: s.Key, VersionID: s.VersionID, Why: fmt.Sprintf("segment [%d, %d) holds entry %d", s.From, s.To, e.Seq)})
		}
	}
	return out, nil
}

// entries returns the PEC entries of the ledger in scope.
func (m *Manager) entries(ctx context.Context, scope Scope) ([]*ledger.Entry, error) {
	var queries []ledger.Query
	switch {
	case len(scope.Identificativi) > 0:
		for _, id := range scope.Identificativi {
			queries = append(queries, ledger.Query{Identificativo: id, From: scope.From, To: scope.To})
		}
	case scope.Mailbox != "":
		queries = append(queries, ledger.Query{Mailbox: scope.Mailbox, From: scope.From, To: scope.To})
	default:
		for _, k := range ledger.Kinds() {
			if k.IsPEC() {
				queries = append(queries, ledger.Query{Kind: k, From: scope.From, To: scope.To})
			}
		}
	}
	var out []*ledger.Entry
	seen := map[uint64]bool{}
	for _, q := range queries {
		q.Limit = 1000
		for e, err := range ledger.FindAll(ctx, m.Ledger.Find, q) {
			if err != nil {
				return nil, fmt.Errorf("retention: ledger: %w", err)
			}
			mailboxes := []string{e.Mittente}
			for _, d := range e.Destinatari {
				mailboxes = append(mailboxes, d.Address)
			}
			if !seen[e.Seq] && scope.Covers(mailboxes, e.Identificativo, e.Time) {
				seen[e.Seq] = true
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b *ledger.Entry) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, nil
}

// Place puts the legal hold h on every object its scope covers, records
// the hold (which the archive then applies to objects stored later) and
// appends a legal-hold event to the ledger. With dryRun it only returns
// the plan.
func (m *Manager) Place(ctx context.Context, h Hold, dryRun bool) (*Plan, error) {
	if h.Case == "" || strings.ContainsAny(h.Case, " \t\n") {
		return nil, fmt.Errorf("retention: hold: bad case id %q", h.Case)
	}
	if h.Actor == "" || h.Reason == "" {
		return nil, errors.New("retention: hold: who places it and why are required")
	}
	if err := h.Scope.Validate(); err != nil {
		return nil, fmt.Errorf("retention: hold %s: %w", h.Case, err)
	}
	holds, err := m.Registry.Holds()
	if err != nil {
		return nil, err
	}
	for _, old := range holds {
		if old.Active() && old.Case == h.Case {
			return nil, fmt.Errorf("retention: hold %s is already in force", h.Case)
		}
	}
	objs, err := m.Matching(ctx, h.Scope)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Action: "place", Case: h.Case, Objects: objs, DryRun: dryRun}
	if dryRun {
		return plan, nil
	}
	h.Placed = m.now().UTC()
	h.Released = time.Time{}
	h.Objects = nil
	// Record the hold first: should setting the object holds fail
	// half-way, the hold is in force and its release undoes them all.
	if err := m.Registry.update(func(hs []Hold) ([]Hold, error) { return append(hs, h), nil }); err != nil {
		return nil, err
	}
	var held []string
	for _, o := range objs {
		if err := m.Store.SetLegalHold(ctx, o.Key, o.VersionID, true); err != nil {
			return nil, fmt.Errorf("retention: hold %s on %s: %w", h.Case, o.Key, err)
		}
		held = append(held, o.id())
	}
	if err := m.Registry.update(func(hs []Hold) ([]Hold, error) {
		for i := range hs {
			if hs[i].Case == h.Case && hs[i].Active() {
				hs[i].Objects = held
			}
		}
		return hs, nil
	}); err != nil {
		return nil, err
	}
	return plan, m.record(ctx, ledger.KindLegalHold, h.Actor, map[string]string{
		"case": h.Case, "action": "place", "reason": h.Reason, "scope": scopeText(h.Scope), "objects": strconv.Itoa(len(objs)),
	})
}

// Release ends the hold of case: its objects lose their legal hold unless
// another hold in force covers them. With dryRun it only returns the plan.
func (m *Manager) Release(ctx context.Context, caseID, actor string, dryRun bool) (*Plan, error) {
	if actor == "" {
		return nil, errors.New("retention: release: who releases it is required")
	}
	holds, err := m.Registry.Holds()
	if err != nil {
		return nil, err
	}
	var h *Hold
	keep := map[string]bool{}
	for i := range holds {
		if !holds[i].Active() {
			continue
		}
		if holds[i].Case == caseID {
			h = &holds[i]
			continue
		}
		objs, err := m.Matching(ctx, holds[i].Scope)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			keep[o.id()] = true
		}
		for _, id := range holds[i].Objects {
			keep[id] = true
		}
	}
	if h == nil {
		return nil, fmt.Errorf("retention: no hold in force for case %s", caseID)
	}
	objs, err := m.Matching(ctx, h.Scope)
	if err != nil {
		return nil, err
	}
	for _, id := range h.Objects { // held then, maybe no longer matching
		key, version, _ := strings.Cut(id, " ")
		if !slices.ContainsFunc(objs, func(o Object) bool { return o.id() == id }) {
			objs = append(objs, Object{Key: key, VersionID: version, Why: "held by the case"})
		}
	}
	plan := &Plan{Action: "release", Case: caseID, DryRun: dryRun}
	for _, o := range objs {
		if !keep[o.id()] {
			plan.Objects = append(plan.Objects, o)
		}
	}
	if dryRun {
		return plan, nil
	}
	for _, o := range plan.Objects {
		if err := m.Store.SetLegalHold(ctx, o.Key, o.VersionID, false); err != nil && !errors.Is(err, archive.ErrNotFound) {
			return nil, fmt.Errorf("retention: release %s on %s: %w", caseID, o.Key, err)
		}
	}
	at := m.now().UTC()
	if err := m.Registry.update(func(hs []Hold) ([]Hold, error) {
		for i := range hs {
			if hs[i].Case == caseID && hs[i].Active() {
				hs[i].Released = at
			}
		}
		return hs, nil
	}); err != nil {
		return nil, err
	}
	return plan, m.record(ctx, ledger.KindLegalHold, actor, map[string]string{
		"case": caseID, "action": "release", "objects": strconv.Itoa(len(plan.Objects)),
	})
}

// Purge deletes, under each prefix, every object version whose retention
// has passed and that no legal hold protects, and records a purge report
// (how many, how many bytes, the SHA-256 of the sorted list of keys) in
// the ledger. With dryRun it only returns the plan. Objects under a hold
// in the registry are kept even if the store lost their S3 legal hold.
func (m *Manager) Purge(ctx context.Context, prefixes []string, actor string, dryRun bool) (*Plan, error) {
	plan := &Plan{Action: "purge", DryRun: dryRun}
	holds, err := m.Registry.Holds()
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, h := range holds {
		if h.Active() {
			for _, id := range h.Objects {
				held[id] = true
			}
		}
	}
	now := m.now()
	for _, prefix := range prefixes {
		for le, err := range m.Store.List(ctx, prefix) {
			if err != nil {
				return nil, fmt.Errorf("retention: purge: list %s: %w", prefix, err)
			}
			info, err := m.Store.Stat(ctx, le.Key, le.VersionID)
			if err != nil {
				return nil, fmt.Errorf("retention: purge: %s: %w", le.Key, err)
			}
			o := Object{Key: le.Key, VersionID: le.VersionID, Size: info.Size,
				Why: "retained until " + info.Retention.RetainUntil.UTC().Format(time.RFC3339)}
			if info.LegalHold || held[o.id()] || now.Before(info.Retention.RetainUntil) {
				plan.Kept++
				continue
			}
			plan.Objects = append(plan.Objects, o)
		}
	}
	if dryRun {
		return plan, nil
	}
	var bytes int64
	keys := make([]string, 0, len(plan.Objects))
	for i, o := range plan.Objects {
		if err := m.Store.Delete(ctx, o.Key, o.VersionID); err != nil {
			return nil, fmt.Errorf("retention: purge %s: %w", o.Key, err)
		}
		bytes += o.Size
		keys = append(keys, o.id())
		if m.Progress != nil {
			m.Progress(uint64(i+1), uint64(len(plan.Objects)))
		}
	}
	slices.Sort(keys)
	sum := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return plan, m.record(ctx, ledger.KindPurge, actor, map[string]string{
		"objects": strconv.Itoa(len(keys)), "bytes": strconv.FormatInt(bytes, 10),
		"keys_sha256": hex.EncodeToString(sum[:]), "kept": strconv.Itoa(plan.Kept), "prefixes": strings.Join(prefixes, " "),
	})
}

// recorder is how the manager records its actions: the one Recorder.
func (m *Manager) recorder() *record.Recorder { return record.New(m.Ledger, m.Gestore, m.Now) }

func (m *Manager) record(ctx context.Context, kind ledger.Kind, actor string, details map[string]string) error {
	var err error
	if kind == ledger.KindPurge {
		_, err = m.recorder().Purge(ctx, actor, details)
	} else {
		_, err = m.recorder().Hold(ctx, actor, details)
	}
	if err != nil {
		return fmt.Errorf("retention: record %s: %w", kind, err)
	}
	return nil
}

func scopeText(s Scope) string {
	b, _ := json.Marshal(s)
	return string(b)
}
