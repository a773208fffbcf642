package harness

import (
	"slices"
	"testing"
)

// TestSourceAddr: the attackers' source addresses are loopback, distinct,
// and never the legitimate clients' 127.0.0.1.
func TestSourceAddr(t *testing.T) {
	seen := map[string]bool{}
	for n := range 310000 {
		a := sourceAddr(n)
		s := a.IP.String()
		if !a.IP.IsLoopback() || s == "127.0.0.1" || seen[s] {
			t.Fatalf("source %d: %s (loopback %v, seen %v)", n, s, a.IP.IsLoopback(), seen[s])
		}
		seen[s] = true
	}
}

// TestHostileOptIn: the hostile phase runs only when asked for.
func TestHostileOptIn(t *testing.T) {
	for _, long := range []bool{false, true} {
		o := Options{Binary: "custode", Long: long}.withDefaults()
		if slices.Contains(o.Phases, "hostile") {
			t.Errorf("long %v: default phases %v include hostile", long, o.Phases)
		}
	}
	o := Options{Binary: "custode", Phases: []string{"load", "hostile"}}.withDefaults()
	if err := o.Validate(); err != nil || !slices.Equal(o.Phases, []string{"load", "hostile"}) {
		t.Errorf("phases %v: %v", o.Phases, err)
	}
}
