// Package localstore is the local directory driver of archive.Store, the
// embedded default.
//
// It enforces the WORM rules in code: no overwrite, no delete before
// retain-until or under a legal hold, no shortening of a retention. This is
// weaker than real WORM. The lock lives in this process, not in the storage:
// root, the service user or anyone with write access to the directory can
// alter or delete the files, and nothing but the SHA-256 check on read will
// notice. Deployments that need the guarantee use archive/s3store with
// Object Lock COMPLIANCE on machines of their own.
//
// # Layout
//
// Each key is a directory path under dir/objects, with "~v" appended to its
// last segment ('~' is not a key byte, so it cannot collide with a key).
// Each version in it is two files: VERSION.data (the bytes, mode 0444) and
// VERSION.json (the metadata: SHA-256, retention, legal hold). Both are
// written atomically (temporary file, fsync, rename, fsync of the
// directory); the metadata file is renamed last and is the commit point, so
// a crash leaves either a whole version or none. Version ids sort in the
// order they were written.
//
// One process owns a directory: a Store serialises its own writers, but two
// processes writing the same directory could race on Put.
package localstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custode/custode/archive"
	"github.com/custode/custode/ledger/durable"
)

const (
	versionsSuffix = "~v"
	dataExt        = ".data"
	metaExt        = ".json"
	tmpPrefix      = ".tmp-" // temporary files of older versions; durable.WriteFile's end in "tmp" and a number
)

// Options configures a Store.
type Options struct {
	// Now is the clock that decides whether a retain-until date has passed.
	// Nil means time.Now. Tests inject a fake clock to step past retention.
	Now func() time.Time
}

// Store is an archive.Store in a local directory. It is safe for concurrent
// use.
type Store struct {
	root string // dir/objects
	now  func() time.Time
	mu   sync.Mutex // serialises every change to the directory
}

var _ archive.Store = (*Store)(nil)

// Open returns a Store keeping its objects under dir, creating it if needed.
func Open(dir string, opts Options) (*Store, error) {
	root := filepath.Join(dir, "objects")
	if err := mkdirAllSync(root); err != nil {
		return nil, fmt.Errorf("archive: open %s: %w", dir, err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{root: root, now: now}, nil
}

// meta is the JSON form of VERSION.json.
type meta struct {
	Key         string    `json:"key"`
	VersionID   string    `json:"version_id"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Mode        string    `json:"mode"`
	RetainUntil time.Time `json:"retain_until"`
	LegalHold   bool      `json:"legal_hold"`
	Created     time.Time `json:"created"`
}

func (m *meta) info() (archive.ObjectInfo, error) {
	info := archive.ObjectInfo{
		Key:          m.Key,
		VersionID:    m.VersionID,
		Size:         m.Size,
		Retention:    archive.Retention{Mode: archive.Mode(m.Mode), RetainUntil: m.RetainUntil},
		LegalHold:    m.LegalHold,
		LastModified: m.Created,
	}
	sum, err := hex.DecodeString(m.SHA256)
	if err != nil || len(sum) != len(info.SHA256) {
		return info, fmt.Errorf("bad sha256 %q in metadata", m.SHA256)
	}
	copy(info.SHA256[:], sum)
	return info, nil
}

func (s *Store) keyDir(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key)+versionsSuffix)
}

// versions returns the committed version ids of key, oldest first.
func (s *Store) versions(key string) ([]string, error) {
	entries, err := os.ReadDir(s.keyDir(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) || !strings.HasSuffix(name, metaExt) {
			continue
		}
		ids = append(ids, strings.TrimSuffix(name, metaExt))
	}
	slices.Sort(ids)
	return ids, nil
}

func validVersionID(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for _, c := range []byte(v) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == '-') {
			return false
		}
	}
	return true
}

// resolve reads the metadata of key's version versionID ("" = oldest).
// The caller holds s.mu.
func (s *Store) resolve(op, key, versionID string) (*meta, error) {
	if err := archive.ValidateKey(key); err != nil {
		return nil, err
	}
	if versionID == "" {
		ids, err := s.versions(key)
		if err != nil {
			return nil, fmt.Errorf("archive: %s %s: %w", op, key, err)
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("archive: %s %s: %w", op, key, archive.ErrNotFound)
		}
		versionID = ids[0]
	} else if !validVersionID(versionID) {
		// Not one of ours: it cannot name a stored version.
		return nil, fmt.Errorf("archive: %s %s version %q: %w", op, key, versionID, archive.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(s.keyDir(key), versionID+metaExt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("archive: %s %s version %s: %w", op, key, versionID, archive.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: %s %s version %s: %w", op, key, versionID, err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("archive: %s %s version %s: metadata: %w", op, key, versionID, err)
	}
	if m.Key != key || m.VersionID != versionID {
		return nil, fmt.Errorf("archive: %s %s version %s: metadata names %s version %s",
			op, key, versionID, m.Key, m.VersionID)
	}
	return &m, nil
}

// Put implements archive.Store. It refuses a key that holds any version.
func (s *Store) Put(ctx context.Context, key string, data []byte, opts archive.PutOptions) (archive.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: %w", key, err)
	}
	now := s.now()
	if err := archive.ValidatePut(key, data, opts, now); err != nil {
		return archive.ObjectInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	ids, err := s.versions(key)
	if err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: %w", key, err)
	}
	if len(ids) > 0 {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: version %s: %w", key, ids[0], archive.ErrExists)
	}
	dir := s.keyDir(key)
	if err := mkdirAllSync(dir); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: %w", key, err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	vid := fmt.Sprintf("%020d-%s", now.UnixNano(), hex.EncodeToString(rnd[:]))
	sum := archive.Sum(data)
	m := &meta{
		Key:         key,
		VersionID:   vid,
		Size:        int64(len(data)),
		SHA256:      hex.EncodeToString(sum[:]),
		Mode:        string(opts.Retention.Mode),
		RetainUntil: opts.Retention.RetainUntil.UTC(),
		LegalHold:   opts.LegalHold,
		Created:     now.UTC(),
	}
	if err := durable.WriteFile(filepath.Join(dir, vid+dataExt), data, 0o444); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: %w", key, err)
	}
	if err := s.writeMeta(dir, m); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("archive: put %s: %w", key, err)
	}
	return m.info()
}

func (s *Store) writeMeta(dir string, m *meta) error {
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(dir, m.VersionID+metaExt), append(b, '\n'), 0o444)
}

// Get implements archive.Store.
func (s *Store) Get(ctx context.Context, key, versionID string) (*archive.Object, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("archive: get %s: %w", key, err)
	}
	s.mu.Lock()
	m, err := s.resolve("get", key, versionID)
	var data []byte
	if err == nil {
		data, err = os.ReadFile(filepath.Join(s.keyDir(key), m.VersionID+dataExt))
		if err != nil {
			err = fmt.Errorf("archive: get %s version %s: %w", key, m.VersionID, err)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	info, err := m.info()
	if err != nil {
		return nil, fmt.Errorf("archive: get %s version %s: %w", key, m.VersionID, err)
	}
	if err := archive.Verify(key, info.VersionID, data, info.SHA256); err != nil {
		return nil, err
	}
	return &archive.Object{ObjectInfo: info, Data: data}, nil
}

// Stat implements archive.Store.
func (s *Store) Stat(ctx context.Context, key, versionID string) (archive.ObjectInfo, error) {
	if err := ctx.Err(); err != nil {
		return archive.ObjectInfo{}, fmt.Errorf("archive: stat %s: %w", key, err)
	}
	s.mu.Lock()
	m, err := s.resolve("stat", key, versionID)
	s.mu.Unlock()
	if err != nil {
		return archive.ObjectInfo{}, err
	}
	info, err := m.info()
	if err != nil {
		return info, fmt.Errorf("archive: stat %s version %s: %w", key, m.VersionID, err)
	}
	return info, nil
}

// List implements archive.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[archive.ListEntry, error] {
	return func(yield func(archive.ListEntry, error) bool) {
		entries, err := s.list(ctx, prefix)
		if err != nil {
			yield(archive.ListEntry{}, err)
			return
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				yield(archive.ListEntry{}, fmt.Errorf("archive: list %s: %w", prefix, err))
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}

func (s *Store) list(ctx context.Context, prefix string) ([]archive.ListEntry, error) {
	if err := archive.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	// Walk from the deepest directory the prefix fully names.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []archive.ListEntry
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == start {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.IsDir() || path == s.root {
			return nil
		}
		rel, err := filepath.Rel(s.root, path)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(d.Name(), versionsSuffix) {
			// A directory of keys: descend only if keys under it can match.
			sub := filepath.ToSlash(rel) + "/"
			if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
				return fs.SkipDir
			}
			return nil
		}
		key := strings.TrimSuffix(filepath.ToSlash(rel), versionsSuffix)
		if !strings.HasPrefix(key, prefix) {
			return fs.SkipDir
		}
		ids, err := s.versions(key)
		if err != nil {
			return err
		}
		for _, id := range ids {
			m, err := s.resolve("list", key, id)
			if err != nil {
				return err
			}
			out = append(out, archive.ListEntry{Key: key, VersionID: id, Size: m.Size, LastModified: m.Created})
		}
		return fs.SkipDir
	})
	if err != nil {
		return nil, fmt.Errorf("archive: list %s: %w", prefix, err)
	}
	slices.SortStableFunc(out, func(a, b archive.ListEntry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// SetLegalHold implements archive.Store.
func (s *Store) SetLegalHold(ctx context.Context, key, versionID string, on bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("archive: legal-hold %s: %w", key, err)
	}
	if versionID == "" {
		return fmt.Errorf("archive: legal-hold %s: empty version id: %w", key, archive.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolve("legal-hold", key, versionID)
	if err != nil {
		return err
	}
	if m.LegalHold == on {
		return nil
	}
	m.LegalHold = on
	if err := s.writeMeta(s.keyDir(key), m); err != nil {
		return fmt.Errorf("archive: legal-hold %s version %s: %w", key, versionID, err)
	}
	return nil
}

// ExtendRetention implements archive.Store.
func (s *Store) ExtendRetention(ctx context.Context, key, versionID string, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("archive: retention %s: %w", key, err)
	}
	if versionID == "" {
		return fmt.Errorf("archive: retention %s: empty version id: %w", key, archive.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolve("retention", key, versionID)
	if err != nil {
		return err
	}
	if until.Before(m.RetainUntil) {
		return &archive.RefusedError{Op: "retention", Key: key, VersionID: versionID,
			Reason: fmt.Sprintf("retain-until %s is earlier than %s",
				until.UTC().Format(time.RFC3339Nano), m.RetainUntil.Format(time.RFC3339Nano))}
	}
	if until.Equal(m.RetainUntil) {
		return nil
	}
	m.RetainUntil = until.UTC()
	if err := s.writeMeta(s.keyDir(key), m); err != nil {
		return fmt.Errorf("archive: retention %s version %s: %w", key, versionID, err)
	}
	return nil
}

// Delete implements archive.Store.
func (s *Store) Delete(ctx context.Context, key, versionID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("archive: delete %s: %w", key, err)
	}
	if versionID == "" {
		return fmt.Errorf("archive: delete %s: empty version id: %w", key, archive.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.resolve("delete", key, versionID)
	if err != nil {
		return err
	}
	now := s.now()
	switch {
	case m.LegalHold:
		return &archive.RefusedError{Op: "delete", Key: key, VersionID: versionID, Reason: "legal hold is on"}
	case now.Before(m.RetainUntil):
		return &archive.RefusedError{Op: "delete", Key: key, VersionID: versionID,
			Reason: "retained until " + m.RetainUntil.Format(time.RFC3339Nano)}
	}
	dir := s.keyDir(key)
	// The metadata file is the commit point: remove it first.
	if err := os.Remove(filepath.Join(dir, versionID+metaExt)); err != nil {
		return fmt.Errorf("archive: delete %s version %s: %w", key, versionID, err)
	}
	if err := os.Remove(filepath.Join(dir, versionID+dataExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive: delete %s version %s: %w", key, versionID, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("archive: delete %s version %s: %w", key, versionID, err)
	}
	return nil
}

// mkdirAllSync creates dir and its missing parents, fsyncing each parent
// after creating a child so the new entries survive a crash.
func mkdirAllSync(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(parent)
}
