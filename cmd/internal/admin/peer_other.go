//go:build !linux

package admin

import (
	"errors"
	"net"
)

// peerCredOf cannot read a peer's credentials on this system: every
// connection is refused, and commands run with the server stopped.
func peerCredOf(*net.UnixConn) (PeerCred, error) {
	return PeerCred{}, errors.New("admin: peer credentials are checked on Linux only: stop the server to run this command")
}
