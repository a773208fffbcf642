package main

import (
	"fmt"
	"net"
	"syscall"
)

// peerCredOf returns the credentials of conn's peer (SO_PEERCRED).
func peerCredOf(conn *net.UnixConn) (peerCred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return peerCred{}, fmt.Errorf("admin: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return peerCred{}, fmt.Errorf("admin: peer credentials: %w", err)
	}
	if credErr != nil {
		return peerCred{}, fmt.Errorf("admin: peer credentials: %w", credErr)
	}
	return peerCred{PID: int(cred.Pid), UID: int(cred.Uid)}, nil
}
