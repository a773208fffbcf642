package mailstore

import (
	"context"
	"testing"
)

// TestLoginFailuresCounted: the counts the metrics read, per service,
// failed and throttled apart.
func TestLoginFailuresCounted(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openRecorded(t)
	for range 50 {
		s.Login(ctx, LoginAttempt{Service: ServiceSMTP, Address: mario, Password: "wrong", Remote: hostA})
	}
	for range 2 {
		s.Login(ctx, LoginAttempt{Service: ServiceIMAP, Address: mario, Password: "wrong", Remote: hostB})
	}
	if err := s.Login(ctx, LoginAttempt{Service: ServiceAPI, Address: mario, Password: "secret-" + mario, Remote: hostB}); err != nil {
		t.Fatal(err)
	}
	s.RecordFailedLogin(ServiceAPI, "", hostB+":443", false)
	for _, c := range []struct {
		service           string
		failed, throttled uint64
	}{
		{ServiceSMTP, 3, 47},
		{ServiceIMAP, 2, 0},
		{ServiceAPI, 1, 0},
		{"pop3", 0, 0},
	} {
		if f, th := s.LoginFailures(c.service); f != c.failed || th != c.throttled {
			t.Errorf("LoginFailures(%s) = %d, %d; want %d, %d", c.service, f, th, c.failed, c.throttled)
		}
	}
}
