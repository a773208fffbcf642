package admin

import (
	"fmt"
	"net"
	"syscall"
)

// peerCredOf returns the credentials of conn's peer (SO_PEERCRED).
func peerCredOf(conn *net.UnixConn) (PeerCred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("admin: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, fmt.Errorf("admin: peer credentials: %w", err)
	}
	if credErr != nil {
		return PeerCred{}, fmt.Errorf("admin: peer credentials: %w", credErr)
	}
	return PeerCred{PID: int(cred.Pid), UID: int(cred.Uid)}, nil
}
