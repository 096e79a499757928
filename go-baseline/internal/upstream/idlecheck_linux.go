//go:build linux

package upstream

import (
	"errors"
	"syscall"
)

// idleStateOf looks at the socket under an idle pooled connection without reading from
// it: recv(MSG_PEEK|MSG_DONTWAIT) of one byte through syscall.RawConn.Control, which does
// not take the connection's read lock, so it neither waits for nor disturbs the
// transport's read loop blocked in a Read of the same connection. Nothing to read
// (EAGAIN): idle. End of stream (0 bytes), bytes the upstream sent before any request
// (a late body, a 408, a TLS alert) or a socket error (ECONNRESET): not reusable. A
// connection whose socket cannot be reached (not a *net.TCPConn underneath) counts as
// idle: no check.
func idleStateOf(rc syscall.RawConn) idleState {
	var buf [1]byte
	var n int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if !errors.Is(rerr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		return idleClosed // the descriptor is gone: closed
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK):
		return idleOK
	case rerr != nil:
		return idleBroken
	case n == 0:
		return idleClosed
	default:
		return idleUnsolicited
	}
}
