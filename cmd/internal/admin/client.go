package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/custode/custode/cmd/internal/cli"
	"github.com/custode/custode/cmd/internal/config"
)

// PathFlags are the flags of remote commands whose values are paths: the
// client makes them absolute, since the server's working directory is not
// the caller's.
var PathFlags = map[string]bool{"data": true, "out": true, "write": true}

// BoolFlags are the boolean flags of the remote commands: they take no
// separate value (TestAdminBoolFlags checks the list against the commands).
var BoolFlags = map[string]bool{
	"all": true, "dry-run": true, "json": true, "keep": true, "no-ledger": true, "require-timestamps": true,
	"h": true, "help": true,
}

// fileArgCommands take a file as their last positional argument.
var fileArgCommands = map[string]bool{"policy apply": true, "ledger append": true}

// stdinLineCommands read only the first line of standard input (a
// password): the client forwards that line, not what follows.
var stdinLineCommands = map[string]bool{"mailbox add": true, "mailbox passwd": true}

// Args returns args (the words after the command's name) with the
// data directory given explicitly and every path made absolute, and the
// data directory.
func Args(name string, args []string) (out []string, data string, err error) {
	data = cli.DefaultDataDir
	out = make([]string, 0, len(args)+2)
	hasData := false
	abs := func(p string) (string, error) {
		if p == "" || p == "-" {
			return p, nil
		}
		return filepath.Abs(p)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			out = append(out, args[i:]...)
			break
		}
		flagName, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !PathFlags[flagName] {
			out = append(out, a)
			if !hasValue && !BoolFlags[flagName] && i+1 < len(args) {
				i++
				out = append(out, args[i]) // the flag's value
			}
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				out = append(out, a)
				continue
			}
			i++
			value = args[i]
		}
		p, err := abs(value)
		if err != nil {
			return nil, "", err
		}
		if flagName == "data" {
			hasData, data = true, value
		}
		out = append(out, "-"+flagName+"="+p)
	}
	if !hasData {
		d, err := abs(data)
		if err != nil {
			return nil, "", err
		}
		out = append([]string{"-data=" + d}, out...)
	}
	if fileArgCommands[name] && len(out) > 0 {
		last := out[len(out)-1]
		if !strings.HasPrefix(last, "-") {
			p, err := abs(last)
			if err != nil {
				return nil, "", err
			}
			out[len(out)-1] = p
		}
	}
	return out, data, nil
}

// RunRemote runs the command of args through the admin socket of the
// server of its data directory, if one answers: ok is false when the
// command must run here (not an administrative command, no
// configuration, no server).
func RunRemote(ctx context.Context, e *cli.Env, cmds Commands, args []string) (code int, ok bool) {
	name, used := cmds.Lookup(args)
	if name == "" || !RemoteCommands[name] {
		return 0, false
	}
	for _, a := range args[used:] {
		if a == "-h" || a == "-help" || a == "--help" {
			return 0, false
		}
	}
	rest, data, err := Args(name, args[used:])
	if err != nil {
		return 0, false
	}
	cfg, err := config.Load(data)
	if err != nil {
		return 0, false
	}
	conn, err := Dial(ctx, cfg.AdminSocketPath())
	if err != nil {
		if !errors.Is(err, ErrNoServer) {
			fmt.Fprintf(e.Stderr, "custode %s: %v\n", name, err)
			return 1, true
		}
		return 0, false
	}
	defer conn.Close()
	req := Request{Version: Version, Args: append(strings.Fields(name), rest...)}
	if req.Stdin, err = ReadStdin(e.Stdin, name, rest); err != nil {
		fmt.Fprintf(e.Stderr, "custode %s: %v\n", name, err)
		return 1, true
	}
	code, err = Exchange(ctx, conn, req, e.Stdout, e.Stderr)
	if err != nil {
		fmt.Fprintf(e.Stderr, "custode %s: through the admin socket %s: %v\n", name, cfg.AdminSocketPath(), err)
		return 1, true
	}
	return code, true
}

// Dial connects to the admin socket at path; ErrNoServer if none
// listens there.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, ErrNoServer
	}
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return conn, nil
}

// ReadStdin returns the standard input forwarded with a command: the first
// line for a password; all of it (bounded) for a "-" file argument or a
// ledger append without a file; nothing otherwise, so that a command never
// waits on a terminal it does not read.
func ReadStdin(in io.Reader, name string, args []string) ([]byte, error) {
	if in == nil {
		return nil, nil
	}
	if stdinLineCommands[name] {
		line, err := bufio.NewReader(io.LimitReader(in, int64(cli.InputPassword.Max)+1)).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		return line, nil
	}
	readsAll := name == "ledger append" && (len(args) == 0 || strings.HasPrefix(args[len(args)-1], "-"))
	for _, a := range args {
		if a == "-" || readsAll {
			b, err := io.ReadAll(io.LimitReader(in, MaxStdin+1))
			if err != nil {
				return nil, fmt.Errorf("standard input: %w", err)
			}
			if len(b) > MaxStdin {
				return nil, fmt.Errorf("standard input: more than %s, the most the admin socket forwards: give a file", cli.ByteCount(MaxStdin))
			}
			return b, nil
		}
	}
	return nil, nil
}

// Exchange sends req on conn and copies the replies to stdout and stderr
// until the last, whose exit status it returns.
func Exchange(ctx context.Context, conn net.Conn, req Request, stdout, stderr io.Writer) (int, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// A server that refuses the connection answers and hangs up without
	// reading the request: a write that fails still leaves its answer to
	// read, which says why.
	werr := WriteFrame(conn, req)
	for {
		var r Reply
		if err := ReadFrame(conn, MaxReply, &r); err != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			if werr != nil {
				return 0, werr
			}
			return 0, err
		}
		if len(r.Stdout) > 0 {
			if _, err := stdout.Write(r.Stdout); err != nil {
				return 0, err
			}
		}
		if len(r.Stderr) > 0 {
			if _, err := stderr.Write(r.Stderr); err != nil {
				return 0, err
			}
		}
		if r.Done {
			return r.Exit, nil
		}
	}
}
