package retention

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/custode/custode/ledger/durable"
	"github.com/custode/custode/pec/mailaddr"
)

// Scope selects what a legal hold covers: the transactions of a mailbox,
// or some identificativi, within an optional time range. At least one of
// Mailbox, Identificativi, From and To is set. Mailbox is in the canonical
// form of package mailaddr, and is compared byte for byte in that form:
// no Unicode folding makes another address fall in the scope.
type Scope struct {
	Mailbox        string    `json:"mailbox,omitempty"`
	Identificativi []string  `json:"identificativi,omitempty"`
	From           time.Time `json:"from,omitzero"` // riferimento temporale in [From, To)
	To             time.Time `json:"to,omitzero"`
}

// Validate reports a scope that selects nothing or everything by mistake.
func (s Scope) Validate() error {
	if s.Mailbox == "" && len(s.Identificativi) == 0 && s.From.IsZero() && s.To.IsZero() {
		return errors.New("a hold needs a mailbox, identificativi or a time range")
	}
	if s.Mailbox != "" && !mailaddr.IsCanonical(s.Mailbox) {
		if _, err := mailaddr.Canonical(s.Mailbox); err != nil {
			return fmt.Errorf("hold mailbox: %w", err)
		}
		return fmt.Errorf("hold mailbox %q is not in canonical form (lower case)", s.Mailbox)
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		return fmt.Errorf("empty time range [%s, %s)", s.From.Format(time.RFC3339), s.To.Format(time.RFC3339))
	}
	return nil
}

// Covers reports whether an object of the transaction identificativo, at
// time t, concerning the mailboxes given, falls in the scope. A mailbox
// matches the scope's when mailaddr.Same says so: equal canonical forms,
// byte for byte.
func (s Scope) Covers(mailboxes []string, identificativo string, t time.Time) bool {
	if !s.From.IsZero() && t.Before(s.From) {
		return false
	}
	if !s.To.IsZero() && !t.Before(s.To) {
		return false
	}
	if s.Mailbox != "" && !slices.ContainsFunc(mailboxes, func(m string) bool { return mailaddr.Same(m, s.Mailbox) }) {
		return false
	}
	if len(s.Identificativi) > 0 && !slices.Contains(s.Identificativi, identificativo) {
		return false
	}
	return true
}

// Hold is a legal hold: while it is active, nothing it covers may be
// purged, whatever its retention.
type Hold struct {
	Case     string    `json:"case"`
	Scope    Scope     `json:"scope"`
	Reason   string    `json:"reason"`
	Actor    string    `json:"actor"`
	Placed   time.Time `json:"placed"`
	Released time.Time `json:"released,omitzero"` // zero while active
	// Objects are the archive objects ("key version") the hold put a
	// legal hold on.
	Objects []string `json:"objects,omitempty"`
}

// Active reports whether the hold is in force.
func (h *Hold) Active() bool { return h.Released.IsZero() }

// Registry is the list of legal holds, kept in one JSON file that every
// change rewrites durably. Several processes may read it; one at a time
// may change it (custode serve, which runs the hold commands of its admin
// socket through one Registry, or the CLI with the server stopped).
type Registry struct {
	path string

	mu    sync.Mutex
	holds []Hold
	read  os.FileInfo // the file as last read
}

// unchanged reports whether the file st is the one last read: the same
// file (a durable write renames a new one in place), modification time
// and size.
func unchanged(read, st os.FileInfo) bool {
	return read != nil && os.SameFile(read, st) && st.ModTime().Equal(read.ModTime()) && st.Size() == read.Size()
}

// OpenRegistry reads the registry at path; a missing file is an empty
// registry.
func OpenRegistry(path string) (*Registry, error) {
	r := &Registry{path: path}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload rereads the file if it changed since the last read.
func (r *Registry) reload() error {
	st, err := os.Stat(r.path)
	if errors.Is(err, os.ErrNotExist) {
		r.holds, r.read = nil, nil
		return nil
	}
	if err != nil {
		return fmt.Errorf("retention: holds: %w", err)
	}
	if unchanged(r.read, st) && r.holds != nil {
		return nil
	}
	b, err := os.ReadFile(r.path)
	if err != nil {
		return fmt.Errorf("retention: holds: %w", err)
	}
	var holds []Hold
	if err := json.Unmarshal(b, &holds); err != nil {
		return fmt.Errorf("retention: holds %s: %w", r.path, err)
	}
	r.holds, r.read = holds, st
	return nil
}

// Holds returns every hold, active and released, oldest first.
func (r *Registry) Holds() ([]Hold, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reload(); err != nil {
		return nil, err
	}
	return slices.Clone(r.holds), nil
}

// Covering returns the cases of the active holds that cover an object of
// the transaction identificativo at time t concerning mailboxes. The
// archive asks it for every object it stores, so that a hold also covers
// what is archived after it was placed.
func (r *Registry) Covering(mailboxes []string, identificativo string, t time.Time) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reload(); err != nil {
		return nil, err
	}
	var cases []string
	for _, h := range r.holds {
		if h.Active() && h.Scope.Covers(mailboxes, identificativo, t) {
			cases = append(cases, h.Case)
		}
	}
	return cases, nil
}

// update applies change to the holds and writes them durably.
func (r *Registry) update(change func([]Hold) ([]Hold, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reload(); err != nil {
		return err
	}
	holds, err := change(slices.Clone(r.holds))
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(holds, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(r.path, b, 0o644); err != nil {
		return fmt.Errorf("retention: holds: %w", err)
	}
	r.holds = holds
	if st, err := os.Stat(r.path); err == nil {
		r.read = st
	}
	return nil
}
