package metrics

import (
	"fmt"
	"net"
)

// Notify sends state (such as "READY=1") to systemd's notification
// socket, the value of $NOTIFY_SOCKET: a path, or an abstract socket name
// starting with "@". An empty socket means no supervisor asked: Notify
// does nothing and returns nil.
func Notify(socket, state string) error {
	if socket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if socket[0] == '@' {
		addr.Name = "\x00" + socket[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("metrics: notify %s: %w", socket, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("metrics: notify %s: %w", socket, err)
	}
	return nil
}
