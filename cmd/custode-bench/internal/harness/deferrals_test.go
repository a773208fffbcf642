package harness

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestDeferrals checks the count of a gestore's deferred deliveries to a
// destination, read from its log past an offset.
func TestDeferrals(t *testing.T) {
	before := `time=T level=WARN msg="queue: delivery failed, will retry" item=busta/1 destination=pec.beta.test attempts=1 err="gestore: send to 127.0.0.1:1: STARTTLS: server unreachable: SMTP error 421: Too many connections, try again later"` + "\n"
	after := before +
		`time=T level=WARN msg="queue: delivery failed, will retry" item=busta/2 destination=pec.beta.test attempts=1 err="gestore: send to 127.0.0.1:1: end of DATA: SMTP error 451: busy"` + "\n" +
		`time=T level=WARN msg="queue: delivery failed, will retry" item=busta/3 destination=pec.beta.test attempts=2 err="dial tcp: connection refused"` + "\n" +
		`time=T level=WARN msg="queue: delivery failed, will retry" item=busta/4 destination=pec.beta.test.other attempts=1 err="SMTP error 421"` + "\n" +
		`time=T level=INFO msg="accesso: accettazione" destination=pec.beta.test ` + "\n"
	path := filepath.Join(t.TempDir(), "a-serve.log")
	if err := os.WriteFile(path, []byte(before+after), 0o644); err != nil {
		t.Fatal(err)
	}
	got := deferrals(path, int64(len(before)), "pec.beta.test")
	want := map[string]int{"421": 1, "451": 1, "other": 1}
	if !maps.Equal(got, want) {
		t.Errorf("deferrals = %v, want %v", got, want)
	}
	if got := deferrals(filepath.Join(t.TempDir(), "none"), 0, "pec.beta.test"); got != nil {
		t.Errorf("deferrals of a missing log = %v, want nil", got)
	}
}
