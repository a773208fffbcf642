package diskspace

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		dir     string
		reserve uint64
		wantErr string
		enospc  bool
	}{
		{"room for the default reserve", dir, 0, "", false},
		{"below the reserve", dir, math.MaxUint64, "kept in reserve", true},
		{"no such directory", filepath.Join(dir, "missing"), 0, "statfs", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewGuard(tt.dir, tt.reserve).Check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check: %v, want an error containing %q", err, tt.wantErr)
			}
			if got := errors.Is(err, syscall.ENOSPC); got != tt.enospc {
				t.Fatalf("errors.Is(%v, ENOSPC) = %v, want %v", err, got, tt.enospc)
			}
			var low *LowSpaceError
			if tt.enospc && (!errors.As(err, &low) || low.Dir != tt.dir || low.Reserve != tt.reserve) {
				t.Fatalf("Check: %#v, want a *LowSpaceError for %s", err, tt.dir)
			}
		})
	}
}
