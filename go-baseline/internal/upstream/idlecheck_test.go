//go:build linux

package upstream

import (
	"errors"
	"io"
	"net"
	"testing"

	"pingora-parity/go-baseline/internal/testwait"
)

// tcpPair is a connected loopback TCP pair: the client side in a HeadConn, the server
// side as accepted.
func tcpPair(t *testing.T) (*HeadConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return &HeadConn{Conn: c}, s
}

// The reuse check refuses a pooled connection the upstream has closed, or on which it
// sent bytes no request asked for, at the first write after CheckBeforeWrite, writing
// nothing; an idle connection passes and the request goes out; only that first write is
// checked, and an unarmed connection is never checked (a fresh one, the health probe's).
func TestCheckBeforeWriteRefusesAStalePooledConnection(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		c, s := tcpPair(t)
		c.Begin()
		c.CheckBeforeWrite()
		if n, err := c.Write([]byte("GET")); n != 3 || err != nil {
			t.Fatalf("write on an idle connection: %d %v", n, err)
		}
		got := make([]byte, 3)
		if _, err := io.ReadFull(s, got); err != nil || string(got) != "GET" {
			t.Fatalf("upstream read %q %v", got, err)
		}
		if c.Stale() {
			t.Fatal("an idle connection is not stale")
		}
	})
	for _, tc := range []struct {
		name  string
		upEnd func(net.Conn)
		want  idleState
	}{
		{"closed", func(s net.Conn) { s.Close() }, idleClosed},
		{"unsolicited bytes", func(s net.Conn) { _, _ = io.WriteString(s, "HTTP/1.1 408 Request Timeout\r\n\r\n") }, idleUnsolicited},
		{"reset", func(s net.Conn) { _ = s.(*net.TCPConn).SetLinger(0); s.Close() }, idleBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := tcpPair(t)
			tc.upEnd(s)
			rc := rawConnOf(c.Conn)
			testwait.For(t, "the upstream's end to reach the socket", func() bool { return idleStateOf(rc) == tc.want })
			c.Begin()
			c.CheckBeforeWrite()
			n, err := c.Write([]byte("POST"))
			if n != 0 || !errors.Is(err, ErrStaleConn) || !c.Stale() {
				t.Fatalf("write on a %s connection: %d %v stale=%v, want 0 ErrStaleConn", tc.name, n, err, c.Stale())
			}
			if tc.want == idleClosed {
				// Unarmed (and after the one checked write), a write goes to the kernel,
				// which takes it on a half-closed connection: what the transport did before.
				if n, err := c.Write([]byte("POST")); n != 4 || err != nil {
					t.Fatalf("unchecked write: %d %v", n, err)
				}
			}
		})
	}
}

// rawConnOf reaches the socket through wrappers that offer NetConn (as *tls.Conn does).
func TestRawConnOfUnwraps(t *testing.T) {
	c, _ := tcpPair(t)
	if rawConnOf(netConnWrapper{c.Conn}) == nil || rawConnOf(c.Conn) == nil {
		t.Fatal("no socket under the connection")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if rawConnOf(a) != nil {
		t.Fatal("a pipe has no socket")
	}
}

type netConnWrapper struct{ net.Conn }

func (w netConnWrapper) NetConn() net.Conn { return w.Conn }
