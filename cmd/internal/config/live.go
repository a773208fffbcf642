package config

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/ledger"
	"github.com/custode/custode/retention"
)

// Live returns the running server's stores if e runs inside one, after
// checking that c is that server's data directory; nil outside a server.
func (c *Config) Live(e *cli.Env) (*cli.Live, error) {
	if e == nil || e.Live == nil {
		return nil, nil
	}
	if !sameDir(c.Dir, e.Live.Dir) {
		return nil, fmt.Errorf("this admin socket serves the data directory %s, not %s", e.Live.Dir, c.Dir)
	}
	return e.Live, nil
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(sa, sb)
}

// AdminSocketPath is where the running server's admin socket is.
func (c *Config) AdminSocketPath() string {
	if c.AdminSocket == "" {
		return c.Path(DefaultAdminSocket)
	}
	return c.Path(c.AdminSocket)
}

// AbsData returns dir made absolute.
func AbsData(dir string) (string, error) {
	a, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data directory %s: %w", dir, err)
	}
	return a, nil
}

// OpenHolds returns the registry of legal holds: inside a running server,
// the one its commands share.
func (c *Config) OpenHolds(e *cli.Env) (*retention.Registry, error) {
	live, err := c.Live(e)
	if err != nil {
		return nil, err
	}
	if live != nil && live.Holds != nil {
		return live.Holds, nil
	}
	return retention.OpenRegistry(c.HoldsFile())
}

// liveLedger returns the running server's ledger, or err.
func liveLedger(live *cli.Live, err error) (*ledger.Ledger, error) {
	if err != nil {
		return nil, err
	}
	return live.Ledger, nil
}
