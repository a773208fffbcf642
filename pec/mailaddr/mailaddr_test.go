package mailaddr_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/custode/custode/pec/mailaddr"
)

func TestCanonical(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []struct {
		name, in, want string // want "" means refused
	}{
		{"plain", "sara@pec.alfa.test", "sara@pec.alfa.test"},
		{"upper case is the same mailbox", "SARA@PEC.Alfa.TEST", "sara@pec.alfa.test"},
		{"atext", "o'brien.x_y-z!#$%&*/=?^`{|}~@pec.alfa.test", "o'brien.x_y-z!#$%&*/=?^`{|}~@pec.alfa.test"},
		{"plus is part of the local part", "sara+x@pec.alfa.test", "sara+x@pec.alfa.test"},
		{"64-byte local part", long + "@d.test", long + "@d.test"},
		{"digits and hyphens in domain", "a@x-1.2b.test", "a@x-1.2b.test"},

		{"long s U+017F", "\u017fara@pec.alfa.test", ""},
		{"Kelvin sign U+212A", "\u212aatia@pec.alfa.test", ""},
		{"Kelvin sign in domain", "katia@pec.\u212a.test", ""},
		{"fullwidth s", "\uff53ara@pec.alfa.test", ""},
		{"Cyrillic a", "\u0430nna@pec.alfa.test", ""},
		{"dotless i", "\u0131rene@pec.alfa.test", ""},
		{"dotted capital I U+0130 (ToLower gives i)", "mar\u0130o@pec.alfa.test", ""},
		{"non-ASCII domain", "sara@p\u00e9c.test", ""},
		{"invalid UTF-8", "sara\xff@pec.alfa.test", ""},
		{"trailing dot", "sara@pec.alfa.test.", ""},
		{"quoted local part", `"sara"@pec.alfa.test`, ""},
		{"quoted with @", `"anna@example.org"@pec.alfa.test`, ""},
		{"NUL", "sara\x00@pec.alfa.test", ""},
		{"tab", "sara\t@pec.alfa.test", ""},
		{"DEL", "sara\x7f@pec.alfa.test", ""},
		{"space", "sa ra@pec.alfa.test", ""},
		{"empty", "", ""},
		{"no @", "sara.pec.alfa.test", ""},
		{"empty local", "@pec.alfa.test", ""},
		{"empty domain", "sara@", ""},
		{"two @", "sara@x@pec.alfa.test", ""},
		{"leading dot", ".sara@pec.alfa.test", ""},
		{"trailing dot local", "sara.@pec.alfa.test", ""},
		{"double dot", "sa..ra@pec.alfa.test", ""},
		{"empty label", "sara@pec..test", ""},
		{"leading dot domain", "sara@.pec.test", ""},
		{"hyphen label", "sara@-pec.test", ""},
		{"address literal", "sara@[192.0.2.1]", ""},
		{"underscore in domain", "sara@pec_alfa.test", ""},
		{"local too long", long + "a@d.test", ""},
		{"label too long", "a@" + strings.Repeat("b", 64) + ".test", ""},
		{"too long", "a@" + strings.Repeat(strings.Repeat("b", 60)+".", 5) + "test", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := mailaddr.Canonical(c.in)
			if c.want == "" {
				if err == nil || !errors.Is(err, mailaddr.ErrInvalid) {
					t.Fatalf("Canonical(%q) = %q, %v; want an ErrInvalid", c.in, got, err)
				}
				if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
					t.Errorf("error is not printable ASCII: %q", err)
				}
				if mailaddr.Valid(c.in) || mailaddr.IsCanonical(c.in) {
					t.Errorf("Valid or IsCanonical(%q) is true", c.in)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Canonical(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
			if again, err := mailaddr.Canonical(got); err != nil || again != got || !mailaddr.IsCanonical(got) {
				t.Errorf("not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
}

// TestSameFoldingVariants: no folding variant of a mailbox names it; case
// is the one thing that does.
func TestSameFoldingVariants(t *testing.T) {
	cases := []struct {
		name, a, b string
		same       bool
	}{
		{"identical", "sara@pec.alfa.test", "sara@pec.alfa.test", true},
		{"ASCII upper case", "SARA@PEC.ALFA.TEST", "sara@pec.alfa.test", true},
		{"long s U+017F", "\u017fara@pec.alfa.test", "sara@pec.alfa.test", false},
		{"long s upper", "\u017fARA@pec.alfa.test", "SARA@pec.alfa.test", false},
		{"Kelvin sign", "\u212aatia@pec.alfa.test", "katia@pec.alfa.test", false},
		{"Kelvin sign, upper", "\u212aATIA@pec.alfa.test", "KATIA@pec.alfa.test", false},
		{"dotted capital I U+0130", "mar\u0130o@pec.alfa.test", "mario@pec.alfa.test", false},
		{"fullwidth", "\uff53ara@pec.alfa.test", "sara@pec.alfa.test", false},
		{"Cyrillic", "\u0430nna@pec.alfa.test", "anna@pec.alfa.test", false},
		{"trailing dot", "sara@pec.alfa.test.", "sara@pec.alfa.test", false},
		{"plus-addressing", "sara+x@pec.alfa.test", "sara@pec.alfa.test", false},
		{"plus-addressing empty tag", "sara+@pec.alfa.test", "sara@pec.alfa.test", false},
		{"dots", "s.ara@pec.alfa.test", "sara@pec.alfa.test", false},
		{"two non-canonical, same bytes", "\u017fara@x.test", "\u017fara@x.test", true},
		{"two non-canonical, folding", "\u017fara@x.test", "\u017fARA@x.test", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := mailaddr.Same(c.a, c.b); got != c.same {
				t.Errorf("Same(%q, %q) = %v", c.a, c.b, got)
			}
			if got := mailaddr.Same(c.b, c.a); got != c.same {
				t.Errorf("Same(%q, %q) = %v (not symmetric)", c.b, c.a, got)
			}
			// The Unicode-folding comparisons this package replaces
			// would say yes to the attacks.
			if !c.same && strings.EqualFold(c.a, c.b) && mailaddr.Same(c.a, c.b) {
				t.Error("Same agrees with EqualFold on a variant")
			}
		})
	}
}

func TestConfusable(t *testing.T) {
	cases := []struct {
		a, b       string
		confusable bool
	}{
		{"mario@d.test", "rnario@d.test", true},
		{"anna@d.test", "arma@d.test", false},
		{"arma@d.test", "arrna@d.test", true},
		{"olga@d.test", "0lga@d.test", true},
		{"lia@d.test", "1ia@d.test", true},
		{"lia@d.test", "iia@d.test", true},
		{"lia@d.test", "lla@d.test", true},
		{"walter@d.test", "vvalter@d.test", true},
		{"dario@d.test", "clario@d.test", true},
		{"sara@d.test", "sara@d.test", false}, // the same address
		{"sara@d.test", "sara+x@d.test", false},
		{"sara@d.test", "sera@d.test", false},
		{"anna@pec.alfa.test", "anna@pec.a1fa.test", true},
	}
	for _, c := range cases {
		if got := mailaddr.Confusable(c.a, c.b); got != c.confusable {
			t.Errorf("Confusable(%q, %q) = %v (skeletons %q, %q)", c.a, c.b, got, mailaddr.Skeleton(c.a), mailaddr.Skeleton(c.b))
		}
		if got := mailaddr.Confusable(c.b, c.a); got != c.confusable {
			t.Errorf("Confusable(%q, %q) = %v, not symmetric", c.b, c.a, got)
		}
	}
}

func TestDomain(t *testing.T) {
	for in, want := range map[string]string{"sara@pec.alfa.test": "pec.alfa.test", "nodomain": "", "a@": ""} {
		if got := mailaddr.Domain(in); got != want {
			t.Errorf("Domain(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"sara@pec.alfa.test", "\u017fara@x", "SARA@X.", `"a"@b`, "a@b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := mailaddr.Canonical(s)
		if err != nil {
			return
		}
		for i := 0; i < len(c); i++ {
			if c[i] < 0x21 || c[i] > 0x7e || c[i] >= 'A' && c[i] <= 'Z' {
				t.Fatalf("Canonical(%q) = %q holds byte %#x", s, c, c[i])
			}
		}
		if again, err := mailaddr.Canonical(c); err != nil || again != c {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, c, again, err)
		}
		if !strings.EqualFold(s, c) || len(s) != len(c) {
			t.Fatalf("Canonical(%q) = %q changed more than ASCII case", s, c)
		}
	})
}
