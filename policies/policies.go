package policies

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a policy file.
const MaxFileSize = 1 << 20

// MinLogRetention is the shortest retention of the log the law allows: 30
// months (DPR 68/2005, art. 11).
var MinLogRetention = Period{Months: 30}

// Period is a retention period in calendar units: years, months and days
// are added as the calendar says (AddTo), the rest as a fixed duration.
type Period struct {
	Years, Months, Days int
	Rest                time.Duration
}

// AddTo returns t plus the period.
func (p Period) AddTo(t time.Time) time.Time {
	return t.AddDate(p.Years, p.Months, p.Days).Add(p.Rest)
}

// AtLeast reports whether p is never shorter than q, checked from ref.
func (p Period) AtLeast(q Period, ref time.Time) bool {
	return !p.AddTo(ref).Before(q.AddTo(ref))
}

// String writes the period as a policy file does.
func (p Period) String() string {
	var parts []string
	for _, u := range []struct {
		n    int
		name string
	}{{p.Years, "years"}, {p.Months, "months"}, {p.Days, "days"}} {
		if u.n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", u.n, u.name))
		}
	}
	if p.Rest != 0 || len(parts) == 0 {
		parts = append(parts, p.Rest.String())
	}
	return strings.Join(parts, " ")
}

var periodRE = regexp.MustCompile(`^(\d+)\s*(years?|months?|days?|hours?|minutes?|seconds?)$`)

// ParsePeriod reads a period: a number and a unit ("30 months", "10
// years", "90 days", "36 hours"), several joined by spaces ("1 year 6
// months"), or a Go duration ("36h").
func ParsePeriod(s string) (Period, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Period{}, errors.New("empty period")
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return Period{}, fmt.Errorf("period %q is not positive", s)
		}
		return Period{Rest: d}, nil
	}
	fields := strings.Fields(s)
	if len(fields)%2 != 0 {
		return Period{}, fmt.Errorf("bad period %q: want a number and a unit (years, months, days, hours, minutes, seconds), or a duration like 36h", s)
	}
	var p Period
	for i := 0; i < len(fields); i += 2 {
		m := periodRE.FindStringSubmatch(fields[i] + " " + fields[i+1])
		if m == nil {
			return Period{}, fmt.Errorf("bad period %q: want a number and a unit (years, months, days, hours, minutes, seconds), or a duration like 36h", s)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 1000 {
			return Period{}, fmt.Errorf("bad period %q: number out of range", s)
		}
		switch strings.TrimSuffix(m[2], "s") {
		case "year":
			p.Years += n
		case "month":
			p.Months += n
		case "day":
			p.Days += n
		case "hour":
			p.Rest += time.Duration(n) * time.Hour
		case "minute":
			p.Rest += time.Duration(n) * time.Minute
		case "second":
			p.Rest += time.Duration(n) * time.Second
		}
	}
	if p == (Period{}) {
		return Period{}, fmt.Errorf("period %q is zero", s)
	}
	return p, nil
}

// NonPEC values: what the punto di ricezione does with ordinary mail.
var nonPECValues = []string{"anomalia", "reject", "folder", "forward"}

// Options are the choices for a domain or a mailbox. Empty fields of a
// mailbox inherit its domain's.
type Options struct {
	// NonPEC is the handling of ordinary mail: anomalia, reject, folder
	// or forward.
	NonPEC string
	// ForwardTo is where forward sends ordinary mail.
	ForwardTo string
	// NotifyTo is an ordinary address for notices of arrival.
	NotifyTo string
	// Archivio turns the archivio di sicurezza on (nil: inherit).
	Archivio *bool
	// Quota bounds the archivio di sicurezza, in bytes; 0 means none.
	Quota int64
	// ContractEnd is the end of the titolare's contract; the archivio di
	// sicurezza keeps objects until then instead of its retention.
	ContractEnd time.Time
}

// Retention holds the retention classes.
type Retention struct {
	Log             Period // the log, at least MinLogRetention
	Archivio        Period // the archivio di sicurezza, without a contract end
	VirusQuarantine Period // messages found infected (RFC 6109 §2.2.4)
	Exports         Period // records of queries and exports
}

// Roles are the access rules: who may do what, beyond titolari (who see
// their own mailbox only, authenticated by its credentials).
type Roles struct {
	Operators []string            // run the gestore: holds, purges, policies
	Auditors  []string            // read the whole log and audit reports
	Legal     map[string][]string // a legal user's cases: they see only what a case's holds cover
}

// Policy is one version of a gestore's policy file.
type Policy struct {
	// Version numbers the policy; each applied policy must have a higher
	// one than the last.
	Version int
	// Retention are the retention classes.
	Retention Retention
	// Domains and Mailboxes are the options per PEC domain and per
	// mailbox, keyed in lower case.
	Domains   map[string]Options
	Mailboxes map[string]Options
	// Roles are the access rules.
	Roles Roles
	// SHA256 is the digest of the file as read.
	SHA256 [32]byte
}

// Error is a problem at a place in a policy file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Load reads and validates the policy file at path. Every problem found is
// reported, each as an *Error with the file and line, joined.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policies: %s: %w", path, err)
	}
	return Parse(path, b)
}

// Parse reads and validates a policy file's contents; name is used in
// errors.
func Parse(name string, data []byte) (*Policy, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{name, 1, fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{name, 1, "empty policy file"}
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, &Error{name, 1, te.Error()}
		}
		return nil, &Error{name, lineOf(err.Error()), "not YAML: " + err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{name, extra.Line, "more than one YAML document"}
	}
	p := &parser{name: name, pol: &Policy{Domains: map[string]Options{}, Mailboxes: map[string]Options{}, Roles: Roles{Legal: map[string][]string{}}}}
	p.pol.SHA256 = sha256.Sum256(data)
	if len(doc.Content) != 1 {
		return nil, &Error{name, 1, "empty policy file"}
	}
	p.top(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.pol, nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func lineOf(msg string) int {
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}

type parser struct {
	name string
	pol  *Policy
	errs []error
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{p.name, n.Line, fmt.Sprintf(format, args...)})
}

// mapping walks a mapping node, calling field for each key it knows and
// reporting unknown and repeated keys.
func (p *parser) mapping(n *yaml.Node, what string, keys map[string]func(v *yaml.Node)) {
	if n.Kind == yaml.AliasNode {
		p.errorf(n, "%s: aliases are not allowed", what)
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: want a mapping", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			p.errorf(k, "%s: %q given twice", what, k.Value)
			continue
		}
		seen[k.Value] = true
		f, ok := keys[k.Value]
		if !ok {
			known := make([]string, 0, len(keys))
			for k := range keys {
				known = append(known, k)
			}
			slices.Sort(known)
			p.errorf(k, "%s: unknown key %q (known: %s)", what, k.Value, strings.Join(known, ", "))
			continue
		}
		if v.Kind == yaml.AliasNode {
			p.errorf(v, "%s.%s: aliases are not allowed", what, k.Value)
			continue
		}
		f(v)
	}
}

func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s: want a single value", what)
		return "", false
	}
	return n.Value, true
}

func (p *parser) period(n *yaml.Node, what string, dst *Period) {
	s, ok := p.scalar(n, what)
	if !ok {
		return
	}
	per, err := ParsePeriod(s)
	if err != nil {
		p.errorf(n, "%s: %v", what, err)
		return
	}
	*dst = per
}

func (p *parser) top(n *yaml.Node) {
	var hasVersion, hasRetention bool
	p.mapping(n, "policy", map[string]func(*yaml.Node){
		"version": func(v *yaml.Node) {
			hasVersion = true
			s, ok := p.scalar(v, "version")
			if !ok {
				return
			}
			ver, err := strconv.Atoi(s)
			if err != nil || ver < 1 {
				p.errorf(v, "version: want a positive integer, got %q", s)
				return
			}
			p.pol.Version = ver
		},
		"retention": func(v *yaml.Node) { hasRetention = true; p.retention(v) },
		"domains": func(v *yaml.Node) {
			p.entries(v, "domains", func(k, v *yaml.Node) {
				d := strings.ToLower(strings.TrimSpace(k.Value))
				if d == "" || strings.ContainsAny(d, "@ /") || !strings.Contains(d, ".") {
					p.errorf(k, "domains: %q is not a domain", k.Value)
					return
				}
				p.pol.Domains[d] = p.options(v, "domains."+d)
			})
		},
		"mailboxes": func(v *yaml.Node) {
			p.entries(v, "mailboxes", func(k, v *yaml.Node) {
				m := strings.ToLower(strings.TrimSpace(k.Value))
				if !validAddress(m) {
					p.errorf(k, "mailboxes: %q is not a mailbox address", k.Value)
					return
				}
				p.pol.Mailboxes[m] = p.options(v, "mailboxes."+m)
			})
		},
		"roles": func(v *yaml.Node) { p.roles(v) },
	})
	if !hasVersion {
		p.errorf(n, "policy: version is required")
	}
	if !hasRetention {
		p.errorf(n, "policy: retention is required")
	}
}

func (p *parser) entries(n *yaml.Node, what string, each func(k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: want a mapping", what)
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := strings.ToLower(k.Value)
		if seen[key] {
			p.errorf(k, "%s: %q given twice", what, k.Value)
			continue
		}
		seen[key] = true
		if v.Kind == yaml.AliasNode {
			p.errorf(v, "%s.%s: aliases are not allowed", what, k.Value)
			continue
		}
		each(k, v)
	}
}

func (p *parser) retention(n *yaml.Node) {
	r := &p.pol.Retention
	var logNode, vqNode *yaml.Node
	p.mapping(n, "retention", map[string]func(*yaml.Node){
		"log":                   func(v *yaml.Node) { logNode = v; p.period(v, "retention.log", &r.Log) },
		"archivio_di_sicurezza": func(v *yaml.Node) { p.period(v, "retention.archivio_di_sicurezza", &r.Archivio) },
		"virus_quarantine":      func(v *yaml.Node) { vqNode = v; p.period(v, "retention.virus_quarantine", &r.VirusQuarantine) },
		"exports":               func(v *yaml.Node) { p.period(v, "retention.exports", &r.Exports) },
	})
	ref := time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC) // a month end: the shortest months ahead
	switch {
	case logNode == nil:
		p.errorf(n, "retention.log is required (at least %s)", MinLogRetention)
	case r.Log != (Period{}) && !r.Log.AtLeast(MinLogRetention, ref):
		p.errorf(logNode, "retention.log: %s is shorter than the legal minimum of %s", r.Log, MinLogRetention)
	}
	if r.VirusQuarantine != (Period{}) && !r.VirusQuarantine.AtLeast(MinLogRetention, ref) {
		p.errorf(vqNode, "retention.virus_quarantine: %s is shorter than the %s RFC 6109 §2.2.4 requires", r.VirusQuarantine, MinLogRetention)
	}
	if r.Archivio == (Period{}) {
		r.Archivio = Period{Years: 10}
	}
	if r.VirusQuarantine == (Period{}) {
		r.VirusQuarantine = MinLogRetention
	}
	if r.Exports == (Period{}) {
		r.Exports = MinLogRetention
	}
}

func (p *parser) options(n *yaml.Node, what string) Options {
	var o Options
	p.mapping(n, what, map[string]func(*yaml.Node){
		"non_pec": func(v *yaml.Node) {
			s, ok := p.scalar(v, what+".non_pec")
			if ok && !slices.Contains(nonPECValues, s) {
				p.errorf(v, "%s.non_pec: %q is not one of %s", what, s, strings.Join(nonPECValues, ", "))
				return
			}
			o.NonPEC = s
		},
		"forward_to": func(v *yaml.Node) {
			if s, ok := p.scalar(v, what+".forward_to"); ok {
				if !validAddress(strings.ToLower(s)) {
					p.errorf(v, "%s.forward_to: %q is not an address", what, s)
				}
				o.ForwardTo = s
			}
		},
		"notify_to": func(v *yaml.Node) {
			if s, ok := p.scalar(v, what+".notify_to"); ok {
				if !validAddress(strings.ToLower(s)) {
					p.errorf(v, "%s.notify_to: %q is not an address", what, s)
				}
				o.NotifyTo = s
			}
		},
		"archivio_di_sicurezza": func(v *yaml.Node) {
			if s, ok := p.scalar(v, what+".archivio_di_sicurezza"); ok {
				b, err := strconv.ParseBool(s)
				if err != nil {
					p.errorf(v, "%s.archivio_di_sicurezza: want true or false, got %q", what, s)
					return
				}
				o.Archivio = &b
			}
		},
		"quota": func(v *yaml.Node) {
			if s, ok := p.scalar(v, what+".quota"); ok {
				q, err := ParseSize(s)
				if err != nil {
					p.errorf(v, "%s.quota: %v", what, err)
					return
				}
				o.Quota = q
			}
		},
		"contract_end": func(v *yaml.Node) {
			if s, ok := p.scalar(v, what+".contract_end"); ok {
				t, err := time.Parse("2006-01-02", s)
				if err != nil {
					if t, err = time.Parse(time.RFC3339, s); err != nil {
						p.errorf(v, "%s.contract_end: want a date (2031-12-31) or an RFC 3339 time, got %q", what, s)
						return
					}
				}
				o.ContractEnd = t
			}
		},
	})
	if o.NonPEC == "forward" && o.ForwardTo == "" {
		p.errorf(n, "%s: non_pec forward needs forward_to", what)
	}
	return o
}

func (p *parser) roles(n *yaml.Node) {
	r := &p.pol.Roles
	list := func(v *yaml.Node, what string) []string {
		if v.Kind != yaml.SequenceNode {
			p.errorf(v, "%s: want a list of user names", what)
			return nil
		}
		var out []string
		for _, e := range v.Content {
			if s, ok := p.scalar(e, what); ok {
				if s == "" || strings.ContainsAny(s, " \t") {
					p.errorf(e, "%s: %q is not a user name", what, s)
					continue
				}
				out = append(out, s)
			}
		}
		return out
	}
	p.mapping(n, "roles", map[string]func(*yaml.Node){
		"operators": func(v *yaml.Node) { r.Operators = list(v, "roles.operators") },
		"auditors":  func(v *yaml.Node) { r.Auditors = list(v, "roles.auditors") },
		"legal": func(v *yaml.Node) {
			p.entries(v, "roles.legal", func(k, v *yaml.Node) {
				r.Legal[k.Value] = list(v, "roles.legal."+k.Value)
			})
		},
	})
}

// ParseSize reads a size in bytes with an optional K, M or G suffix
// (powers of 1024).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.TrimSpace(s)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: want a number of bytes, optionally with K, M or G", s)
	}
	return n * mult, nil
}

func validAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	return at > 0 && at < len(a)-1 && len(a) <= 254 && !strings.ContainsAny(a, " \t\r\n<>,;") && strings.Contains(a[at:], ".")
}

// MailboxOptions returns the options of mailbox: its own, with what it
// leaves empty taken from its domain's.
func (p *Policy) MailboxOptions(mailbox string) Options {
	mailbox = strings.ToLower(mailbox)
	o := p.Mailboxes[mailbox]
	var d Options
	if at := strings.LastIndexByte(mailbox, '@'); at >= 0 {
		d = p.Domains[mailbox[at+1:]]
	}
	if o.NonPEC == "" {
		o.NonPEC, o.ForwardTo = d.NonPEC, d.ForwardTo
	}
	if o.NotifyTo == "" {
		o.NotifyTo = d.NotifyTo
	}
	if o.Archivio == nil {
		o.Archivio = d.Archivio
	}
	if o.Quota == 0 {
		o.Quota = d.Quota
	}
	if o.ContractEnd.IsZero() {
		o.ContractEnd = d.ContractEnd
	}
	return o
}
