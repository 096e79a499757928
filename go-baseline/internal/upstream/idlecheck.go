package upstream

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ErrStaleConn is the write error of a pooled upstream connection that the reuse check
// (HeadConn.CheckBeforeWrite) found unusable before the request was written: the
// upstream had closed or reset it, or had sent bytes no request asked for. Nothing was
// written, so net/http's transport sends the request again on another connection
// (its nothingWrittenError rule: a bodiless request always, one with a body when
// Request.GetBody can give the body again). Pingora's connector makes the same check
// before it reuses a pooled connection (pingora-core connectors::test_reusable_stream);
// docs/spec.md section 4, "Pool identity".
var ErrStaleConn = errors.New("pooled upstream connection closed or sent unsolicited bytes before the request was written")

// idleState is what the reuse check saw on an idle pooled connection's socket.
type idleState uint8

const (
	idleOK          idleState = iota // nothing to read: reusable
	idleClosed                       // end of stream: the upstream closed it
	idleUnsolicited                  // bytes no request asked for
	idleBroken                       // a socket error (reset)
)

func (s idleState) String() string {
	return [...]string{"idle", "closed by the upstream", "unsolicited bytes", "socket error"}[s]
}

// rawConnOf is the socket under c: through a *tls.Conn (NetConn) and any wrapper that
// offers NetConn, down to a syscall.Conn; nil when there is none.
func rawConnOf(c net.Conn) syscall.RawConn {
	for i := 0; i < 8; i++ {
		if sc, ok := c.(syscall.Conn); ok {
			rc, err := sc.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// CheckBeforeWrite arms the reuse check for the exchange Begin started: call it when the
// transport hands out a connection from its idle pool (httptrace.GotConnInfo.Reused). The
// next Write first looks at the socket (idleStateOf) and, when the upstream has closed the
// connection, reset it or sent unsolicited bytes (in the socket, or already read and
// dropped by Read: overread.go), returns ErrStaleConn without writing.
//
// Why at the first write and not when the response before ended: net/http's transport
// learns that an idle connection closed only from its read loop's next read, which runs
// after the connection went back to the pool; a request that takes the connection in
// between (a pipelined request right behind a response the upstream closes after) is
// written on the dead connection, and one with a body is then not retried (502). The
// first write of the next exchange is the latest moment before anything is sent. One
// syscall per reused exchange; a fresh connection is not checked.
func (c *HeadConn) CheckBeforeWrite() {
	c.mu.Lock()
	c.checkWrite, c.stale = true, false
	c.mu.Unlock()
}

// Checking reports whether the reuse check is armed and the exchange has not written yet:
// while it is, what the transport reads of the request body may have to be sent again on
// another connection (proxy/replay.go keeps it only then).
func (c *HeadConn) Checking() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkWrite
}

// Stale reports whether the reuse check refused this connection for the current exchange
// (its Write returned ErrStaleConn).
func (c *HeadConn) Stale() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stale
}

// Write writes p to the connection, after the reuse check when CheckBeforeWrite armed it.
func (c *HeadConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	check, unasked := c.checkWrite, c.unasked
	from, to := c.targetFrom, c.targetTo
	c.checkWrite, c.targetFrom, c.targetTo = false, "", ""
	c.mu.Unlock()
	if check {
		s := idleOK
		if unasked {
			s = idleUnsolicited // read already, by the transport's read loop (overread.go)
		} else if rc := rawConnOf(c.Conn); rc != nil {
			s = idleStateOf(rc)
		}
		if s != idleOK {
			c.mu.Lock()
			c.stale = true
			c.mu.Unlock()
			return 0, fmt.Errorf("%w (%s)", ErrStaleConn, s)
		}
	}
	if from != "" {
		if q, ok := rewriteTarget(p, from, to); ok {
			// The first write of the exchange, its request line's target replaced
			// (target.go): what the caller wrote is counted in its own bytes.
			n, err := c.Conn.Write(q)
			switch {
			case n == len(q):
				n = len(p)
			case n >= len(p):
				n = len(p) - 1
			}
			return n, err
		}
	}
	return c.Conn.Write(p)
}
