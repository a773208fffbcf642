package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// process is one child process the harness runs: a gestore, the TSA, MinIO
// or Postfix. It may be started again after it stopped.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string // added to the harness's environment
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's result, once done is closed
	// stats of every incarnation, by pid, updated by sample.
	stats map[int]procSample
}

// procSample is what /proc said of one incarnation of a process.
type procSample struct {
	cpu      time.Duration // user + system
	childCPU time.Duration // of its children it has waited for
	vmHWM    int64         // peak resident set, bytes
}

// start runs the process, appending its output to its log file.
func (p *process) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a Ctrl-C of the harness reaches the
	// harness only, which stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// pid returns the running incarnation's pid, or 0.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// exited reports whether the process was started and has exited since,
// with its status.
func (p *process) exited() (bool, error) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return false, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// signal sends sig and waits up to timeout for the process to exit, then
// kills it; it returns the exit status and forgets the incarnation.
func (p *process) signal(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	p.sample()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.err
	p.cmd, p.done, p.err = nil, nil, nil
	if sig == syscall.SIGKILL {
		return nil
	}
	return err
}

// kill stops the process with SIGKILL.
func (p *process) kill() { _ = p.signal(syscall.SIGKILL, 10*time.Second) }

// stop stops the process with SIGTERM, as an operator would, and returns
// an error if it did not exit cleanly within timeout.
func (p *process) stop(timeout time.Duration) error {
	if err := p.signal(syscall.SIGTERM, timeout); err != nil {
		return fmt.Errorf("%s: exit: %w", p.name, err)
	}
	return nil
}

// sample reads the running incarnation's CPU time and peak RSS.
func (p *process) sample() {
	pid := p.pid()
	if pid == 0 {
		return
	}
	s, err := readProc(pid)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stats == nil {
		p.stats = map[int]procSample{}
	}
	p.stats[pid] = s
}

// usage returns the CPU time of every incarnation so far and the largest
// peak RSS of any.
func (p *process) usage() (cpu time.Duration, peakRSS int64) {
	p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.stats {
		cpu += s.cpu
		peakRSS = max(peakRSS, s.vmHWM)
	}
	return cpu, peakRSS
}

// readProc reads utime and stime from /proc/pid/stat and VmHWM from
// /proc/pid/status.
func readProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	cutime, _ := strconv.ParseInt(f[13], 10, 64) // field 16
	cstime, _ := strconv.ParseInt(f[14], 10, 64) // field 17
	s.childCPU = time.Duration(cutime+cstime) * time.Second / clockTicks
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(st))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.vmHWM = kb << 10
		}
	}
	return s, nil
}

// freeAddr returns a loopback address nothing listens on now, for a
// process started later. The port is drawn below Linux's ephemeral range
// (32768-60999), so that no socket bound to port 0 meanwhile, in this
// process or another, can be given it before that process binds it.
func freeAddr() (string, error) {
	var err error
	for range 100 {
		var ln net.Listener
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000)))
		if err == nil {
			defer ln.Close()
			return ln.Addr().String(), nil
		}
	}
	return "", fmt.Errorf("free port: %w", err)
}

// waitListening waits until addr accepts connections, the process exits,
// or timeout passes.
func waitListening(ctx context.Context, p *process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if done, exitErr := p.exited(); done {
			return fmt.Errorf("%s exited before listening on %s (%v); see %s", p.name, addr, exitErr, p.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s after %v; see %s", p.name, addr, timeout, p.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cli runs the custode binary with args and stdin and returns its combined
// output and exit status; err is set only when it could not run.
func (h *harness) cli(ctx context.Context, stdin string, args ...string) (string, int, error) {
	cmd := exec.CommandContext(ctx, h.opts.Binary, args...)
	cmd.Env = append(os.Environ(), h.s3Env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return string(out), exit.ExitCode(), nil
	}
	if err != nil {
		return string(out), -1, fmt.Errorf("custode %s: %w", strings.Join(args, " "), err)
	}
	return string(out), 0, nil
}

// mustCLI runs the custode binary and fails unless it exits 0.
func (h *harness) mustCLI(ctx context.Context, stdin string, args ...string) (string, error) {
	out, code, err := h.cli(ctx, stdin, args...)
	if err != nil {
		return out, err
	}
	if code != 0 {
		return out, fmt.Errorf("custode %s: exit %d: %s", strings.Join(args, " "), code, tail(out, 2000))
	}
	return out, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// editConfig reads dir/custode.json, lets edit change it as generic JSON
// (so that fields this package does not know survive), and writes it back.
func editConfig(dir string, edit func(c map[string]any)) error {
	path := filepath.Join(dir, "custode.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	edit(c)
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// section returns c[name] as an object, creating it if needed.
func section(c map[string]any, name string) map[string]any {
	s, ok := c[name].(map[string]any)
	if !ok {
		s = map[string]any{}
		c[name] = s
	}
	return s
}

var (
	logCheckpoint = regexp.MustCompile(`msg="ledger: checkpoint" size=(\d+)`)
	logSealed     = regexp.MustCompile(`msg="seal: segment archived" from=\d+ to=(\d+)`)
)

// logFacts is what a gestore's log says about checkpoints and sealing.
type logFacts struct {
	lastCheckpoint uint64 // size of the newest checkpoint made
	sealedTo       uint64 // end of the newest sealed segment
	pendingStamps  int    // "checkpoint timestamp pending" warnings
	sealRetries    int    // "seal: will retry" warnings
	lines          map[string]int
}

// readLogFacts scans a serve log.
func readLogFacts(path string) logFacts {
	f := logFacts{lines: map[string]int{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return f
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m := logCheckpoint.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			f.lastCheckpoint = max(f.lastCheckpoint, n)
		}
		if m := logSealed.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			f.sealedTo = max(f.sealedTo, n)
		}
		if strings.Contains(line, "checkpoint timestamp pending") {
			f.pendingStamps++
		}
		if strings.Contains(line, "seal: will retry") {
			f.sealRetries++
		}
		if strings.Contains(line, "level=ERROR") {
			if _, msg, ok := strings.Cut(line, "msg="); ok {
				if q, err := strconv.QuotedPrefix(msg); err == nil {
					msg = q
				}
				f.lines[msg]++
			}
		}
	}
	return f
}
