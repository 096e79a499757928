package proxy

import (
	"context"
	"io"
	"net"
	"time"
)

// Default bounds of the lingering close (see Listener).
const (
	DefaultLingerTime  = 2 * time.Second
	DefaultLingerBytes = 16 << 20
)

// Listener wraps a net.Listener for the data plane's http.Server. Each accepted
// connection is
//
//   - read through the request gate (framing.go): each request head is checked before
//     net/http sees it, and a refused one is answered by the router, not by net/http
//     (use with ConnContext, so that the handler sees the refusals, and with
//     http.Server.MaxHeaderBytes = ServerMaxHeaderBytes), and
//   - closed with a lingering close: Close sends FIN (shutdown of the write side) at once,
//     then reads and discards what the client still sends until it closes its side, for
//     at most LingerTime and LingerBytes, and only then closes the socket.
//
// The lingering close is for answers to requests that were not read whole (the router's
// 431 and 400 for a refused head, any router-made answer to a request whose body was left
// unread): closing a TCP socket with unread input sends RST (RFC 9293 section
// 3.6.1), and a client's TCP stack that receives it may discard the response
// it has not yet read. RFC 9112 section 9.6 asks a server to close in stages for this
// reason: half-close, keep reading until the client's close or a timeout, then close.
// The close itself runs in its own goroutine, so that Server.Shutdown and Close, which
// close connections while holding the server's lock, are not held up.
type Listener struct {
	net.Listener
	LingerTime  time.Duration // longest lingering per connection; 0: DefaultLingerTime
	LingerBytes int64         // most bytes discarded per connection; 0: DefaultLingerBytes
}

// Accept wraps the accepted connection (Wrap).
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.Wrap(c), nil
}

// Wrap puts the request gate and the lingering close over c, an HTTP/1.1 connection: one
// accepted by Accept, or a TLS connection that negotiated HTTP/1.1 (tlslisten.Listener;
// the Listener field is not used then).
func (l Listener) Wrap(c net.Conn) net.Conn {
	sc := &scanConn{Conn: c, lingerTime: l.LingerTime, lingerBytes: l.LingerBytes}
	if sc.lingerTime <= 0 {
		sc.lingerTime = DefaultLingerTime
	}
	if sc.lingerBytes <= 0 {
		sc.lingerBytes = DefaultLingerBytes
	}
	return sc
}

type connKey struct{}

// ConnContext is the http.Server.ConnContext that makes a gated connection visible to
// the handler.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*scanConn); ok {
		return context.WithValue(ctx, connKey{}, sc)
	}
	return ctx
}

// CloseWrite shuts down the writing side (TCP FIN). net/http calls it, when the
// connection has one, before closing after an answer to a request it did not read whole.
func (c *scanConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close starts the lingering close (see Listener) and returns at once. Later calls do
// nothing.
func (c *scanConn) Close() error {
	c.closeOnce.Do(func() { go c.linger() })
	return nil
}

// linger half-closes, discards input until the client's FIN, an error, lingerBytes or
// lingerTime, then closes the socket.
func (c *scanConn) linger() {
	defer c.Conn.Close()
	if _, ok := c.Conn.(interface{ CloseWrite() error }); !ok {
		return // not TCP: nothing to linger on
	}
	_ = c.CloseWrite()
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.lingerTime))
	_, _ = io.CopyN(io.Discard, c.Conn, c.lingerBytes)
}
