package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"

	"github.com/custode/custode/cmd/internal/cli"
)

// lockedWriter serialises the reply frames of one connection.
type lockedWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (l *lockedWriter) frame(r Reply) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.err = WriteFrame(l.w, r)
	return l.err
}

// PeerCred is the identity the kernel gives of a unix socket's peer.
type PeerCred struct {
	PID, UID int
}

// checkPeer admits a peer running as the server's own user or as root, and
// refuses any other with an error naming both.
func checkPeer(peer PeerCred, serverUID int) error {
	if peer.UID == serverUID || peer.UID == 0 {
		return nil
	}
	return fmt.Errorf("admin: uid %d (pid %d) may not administer this server: only uid %d or root may", peer.UID, peer.PID, serverUID)
}

// peerUser is the name of the user uid, or "uid N" if it has none.
func peerUser(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

// Commands is the command table whose commands the admin socket runs.
type Commands struct {
	// Lookup returns the name of the command that the leading words of
	// args name, and how many words name it; "" if none does.
	Lookup func(args []string) (name string, used int)
	// Dispatch runs the command line args and returns its exit status.
	Dispatch func(ctx context.Context, e *cli.Env, args []string) int
}

// Server answers the admin socket of a running server.
type Server struct {
	// Live are the server's open stores, lent to every command it runs.
	Live *cli.Live
	// Commands is the command table the socket runs commands of.
	Commands Commands
	// Log receives who ran what, and refused connections.
	Log *slog.Logger
	// UID is the server's user: only it and root may connect.
	UID int
	// peer returns a connection's peer credentials; nil means
	// peerCredOf (SO_PEERCRED).
	Peer func(*net.UnixConn) (PeerCred, error)
}

// Listen creates the admin socket at path, mode 0600, replacing a
// stale one (the server holds the data directory's lock: no other server
// of it runs).
func Listen(path string) (*net.UnixListener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin socket %s: a file that is not a socket is there: move it, or set admin_socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	// Before the first Accept; connecting needs write permission, so no
	// one else may connect in between either unless the umask allowed it,
	// and every peer's credentials are checked anyway.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// Serve accepts connections until ctx is done, each in its own goroutine.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("admin: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			s.handle(ctx, conn)
		}()
	}
}

// handle runs the one command a connection asks for.
func (s *Server) handle(ctx context.Context, conn *net.UnixConn) {
	out := &lockedWriter{w: conn}
	fail := func(code int, format string, a ...any) {
		out.frame(Reply{Stderr: fmt.Appendf(nil, "custode: "+format+"\n", a...)})
		out.frame(Reply{Done: true, Exit: code})
	}
	credOf := s.Peer
	if credOf == nil {
		credOf = peerCredOf
	}
	peer, err := credOf(conn)
	if err == nil {
		err = checkPeer(peer, s.UID)
	}
	if err != nil {
		s.Log.Warn("admin: connection refused", "err", err)
		fail(1, "%v", err)
		return
	}
	var req Request
	if err := ReadFrame(conn, MaxRequest, &req); err != nil {
		fail(2, "%v", err)
		return
	}
	if req.Version != Version {
		fail(2, "admin: protocol version %d, this server speaks %d: use the custode of the server", req.Version, Version)
		return
	}
	name, _ := s.Commands.Lookup(req.Args)
	if name == "" || !RemoteCommands[name] {
		fail(2, "admin: %q is not run through the admin socket", req.Args)
		return
	}
	// A client that goes away cancels its command: after the request,
	// nothing more comes, so a read returns only when it hangs up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var b [1]byte
		conn.Read(b[:])
		cancel()
	}()
	stderr := frameWriter{w: out, stderr: true}
	e := &cli.Env{
		Stdin:  bytes.NewReader(req.Stdin),
		Stdout: frameWriter{w: out},
		Stderr: stderr,
		Log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Live:   s.Live,
		Actor:  peerUser(peer.UID),
	}
	s.Log.Info("admin: command", "args", name, "uid", peer.UID, "pid", peer.PID)
	code := s.Commands.Dispatch(ctx, e, req.Args)
	if s.Live.Changed != nil {
		s.Live.Changed()
	}
	out.frame(Reply{Done: true, Exit: code})
}
