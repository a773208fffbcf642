package evidence

import "testing"

func TestNormalizeRelated(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"opec1.2025@pec.it", "opec1.2025@pec.it"},
		{"<opec1.2025@pec.it>", "opec1.2025@pec.it"},
		{" <opec1.2025@pec.it> ", "opec1.2025@pec.it"},
		{"< opec1@pec.it >", "opec1@pec.it"},
		{"<>", ""},
		{"<", "<"},
		{"<a@b", "<a@b"},
		{"", ""},
	} {
		if got := NormalizeRelated(tt.in); got != tt.want {
			t.Errorf("NormalizeRelated(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
