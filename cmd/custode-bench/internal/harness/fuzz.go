package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// fuzzPhase runs every fuzz target of the module for opts.FuzzTime each:
// go test -run '^$' -fuzz '^Name$' -fuzztime D pkg.
func (h *harness) fuzzPhase(ctx context.Context) error {
	if h.opts.FuzzTime <= 0 {
		h.res.skip("fuzz", "-fuzztime is 0")
		return nil
	}
	src := h.opts.Source
	if src == "" {
		out, err := h.goCmd(ctx, "", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			h.res.skip("fuzz", "not run inside the module's source tree and no -src given")
			return nil
		}
		src = strings.TrimSuffix(strings.TrimSpace(string(out)), "/go.mod")
	}
	out, err := h.goCmd(ctx, src, "test", "-list", "^Fuzz", "./...").CombinedOutput()
	if err != nil {
		return fmt.Errorf("fuzz: go test -list: %w: %s", err, tail(string(out), 1000))
	}
	// go test -list prints a package's test names, then "ok  pkg  0.01s".
	var pending []string
	type target struct{ pkg, name string }
	var targets []target
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "Fuzz"):
			pending = append(pending, f[0])
		case len(f) >= 2 && f[0] == "ok":
			for _, n := range pending {
				targets = append(targets, target{f[1], n})
			}
			pending = nil
		}
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		start := time.Now()
		cmd := h.goCmd(ctx, src, "test", "-run", "^$", "-fuzz", "^"+t.name+"$", "-fuzztime", h.opts.FuzzTime.String(), "-parallel", "2", t.pkg)
		out, err := cmd.CombinedOutput()
		r := FuzzResult{Package: t.pkg, Target: t.name, Seconds: time.Since(start).Seconds(), OK: err == nil}
		if err != nil {
			r.Output = tail(string(out), 2000)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "execs:") {
				r.LastStatus = strings.TrimSpace(l)
			}
		}
		h.log.Info("bench: fuzz", "target", t.name, "ok", r.OK)
		h.res.Fuzz = append(h.res.Fuzz, r)
	}
	return nil
}

func (h *harness) goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	return cmd
}
