package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/custode/custode/ledger"
	"github.com/custode/custode/policies"
)

// activePolicy is where the applied policy is kept in the data directory.
func (c *config) activePolicy() string { return filepath.Join(c.dir, "policies", "active.yaml") }

func runPolicyCheck(ctx context.Context, e *env, args []string) error {
	fs := flags(e, "policy check", nil)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{"want one policy file"}
	}
	raw, err := readInput(ctx, e, fs.Arg(0), inputPolicy)
	if err != nil {
		return err
	}
	p, err := policies.Parse(fs.Arg(0), raw)
	if err != nil {
		fmt.Fprintln(e.stdout, err)
		return &failedError{"the policy has errors"}
	}
	fmt.Fprintf(e.stdout, "%s: OK, version %d, sha256 %s\n", fs.Arg(0), p.Version, hex.EncodeToString(p.SHA256[:]))
	fmt.Fprintf(e.stdout, "retention: log %s, archivio di sicurezza %s, virus quarantine %s, exports %s\n",
		p.Retention.Log, p.Retention.Archivio, p.Retention.VirusQuarantine, p.Retention.Exports)
	fmt.Fprintf(e.stdout, "%d domains, %d mailboxes, %d operators, %d auditors, %d legal users\n",
		len(p.Domains), len(p.Mailboxes), len(p.Roles.Operators), len(p.Roles.Auditors), len(p.Roles.Legal))
	return nil
}

// runPolicyApply checks a policy file, makes it the data directory's
// active policy and records the change (who, when, the file's SHA-256 and
// version) in the ledger. Versions must increase.
func runPolicyApply(ctx context.Context, e *env, args []string) error {
	var data, actor string
	fs := flags(e, "policy apply", &data)
	fs.StringVar(&actor, "actor", "", "who applies the policy (default: the user running the command)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &usageError{"want one policy file"}
	}
	if actor == "" {
		if u, err := user.Current(); err == nil {
			actor = u.Username
		}
	}
	if actor == "" {
		return &usageError{"give -actor: who applies the policy"}
	}
	c, err := loadConfig(data)
	if err != nil {
		return err
	}
	// One read: the bytes kept and recorded are the bytes checked.
	raw, err := readInput(ctx, e, fs.Arg(0), inputPolicy)
	if err != nil {
		return err
	}
	p, err := policies.Parse(fs.Arg(0), raw)
	if err != nil {
		fmt.Fprintln(e.stdout, err)
		return &failedError{"the policy has errors: nothing applied"}
	}
	if cur, err := policies.Load(c.activePolicy()); err == nil && p.Version <= cur.Version {
		return &failedError{fmt.Sprintf("version %d is not above the active policy's %d: nothing applied", p.Version, cur.Version)}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the active policy: %w", err)
	}
	l, err := c.openLedger(ctx, e)
	if err != nil {
		return err
	}
	defer l.Close()
	sum := hex.EncodeToString(p.SHA256[:])
	kept := filepath.Join(c.dir, "policies", fmt.Sprintf("v%d-%s.yaml", p.Version, sum[:12]))
	if err := writeFileSync(kept, raw); err != nil {
		return err
	}
	seqs, err := l.Append(ctx, ledger.Event{
		Kind: ledger.KindPolicyChange, Time: time.Now().UTC(), Actor: actor, Gestore: c.Gestore,
		Details: map[string]string{"version": strconv.Itoa(p.Version), "sha256": sum, "file": filepath.Base(kept)},
	})
	if err != nil {
		return err
	}
	if err := writeFileSync(c.activePolicy(), raw); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "policy version %d applied by %s (sha256 %s), ledger entry %d; restart custode serve to use it\n",
		p.Version, actor, sum, seqs[0])
	return nil
}

// writeFileSync writes data to path durably: a temporary file, fsync,
// rename.
func writeFileSync(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
