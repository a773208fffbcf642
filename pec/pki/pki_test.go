package pki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadCertificates: a chain loads in order; a file with no
// certificate, or one over MaxCertificateFile (a file that never ends, as
// /dev/zero), is refused with an error naming it.
func TestLoadCertificates(t *testing.T) {
	dev, err := NewDevSet("Prova PEC", "pec.prova.test", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := dev.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	certs, err := LoadCertificates(filepath.Join(dir, CACertFile))
	if err != nil || len(certs) != 1 || !certs[0].Equal(dev.CA.Certificate) {
		t.Fatalf("the CA file: %d certificates, %v", len(certs), err)
	}
	empty := filepath.Join(dir, "empty.pem")
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(empty, []byte("no PEM here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, MaxCertificateFile+1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{empty, "holds no PEM certificate"},
		{big, "larger than"},
		{"/dev/zero", "larger than"},
	} {
		if _, err := LoadCertificates(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("%s: %v, want an error naming it and %q", tt.path, err, tt.want)
		}
	}
}
