package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadArguments: every bad invocation exits with status 2 and says why,
// before anything is started.
func TestBadArguments(t *testing.T) {
	custode := filepath.Join(t.TempDir(), "custode")
	if err := os.WriteFile(custode, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{nil, "want exactly one of -short and -long"},
		{[]string{"-short", "-long"}, "want exactly one of -short and -long"},
		{[]string{"-short", "extra"}, "unexpected arguments: extra"},
		{[]string{"-short", "-duration", "-1s"}, "-duration: -1s is negative"},
		{[]string{"-short", "-fuzztime", "1s"}, "-fuzztime is for the long mode"},
		{[]string{"-short", "-custode", custode, "-phases", "load,nosuch"}, "nosuch"},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			code := run(context.Background(), tt.args, io.Discard, &stderr, slog.New(slog.DiscardHandler))
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}
