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

// Bytes of a HEAD's response that arrive after the read that ended its head (the upstream
// writes the body slowly; parity fuzz seed 7 case 2714) are read by the transport's idle
// read loop, not left in the socket for the reuse check: that read returns io.EOF and
// drops them, and the next exchange's checked write refuses the connection, writing
// nothing. The same for bytes read after a reused exchange began and before it wrote.
func TestReuseCheckRefusesBytesReadBehindAHeadResponse(t *testing.T) {
	t.Run("after a HEAD", func(t *testing.T) {
		c, s := tcpPair(t)
		c.Begin()
		c.HeadRequest()
		head := "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
		if _, err := io.WriteString(s, head); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(head))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != head {
			t.Fatalf("head: %q %v", got, err)
		}
		if _, err := io.WriteString(s, "abcdef"); err != nil { // the body, after the head's read
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if n, err := c.Read(buf); n != 0 || err != io.EOF { // the idle read loop's read
			t.Fatalf("read behind the HEAD's head: %q %v, want io.EOF", buf[:n], err)
		}
		c.Begin()
		c.CheckBeforeWrite()
		if n, err := c.Write([]byte("PUT")); n != 0 || !errors.Is(err, ErrStaleConn) || !c.Stale() {
			t.Fatalf("write after unsolicited bytes were read: %d %v, want 0 ErrStaleConn", n, err)
		}
	})
	t.Run("before a reused exchange's write", func(t *testing.T) {
		c, s := tcpPair(t)
		c.Begin()
		c.CheckBeforeWrite()
		if _, err := io.WriteString(s, "HTTP/1.1 408 Request Timeout\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if n, err := c.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("read before the request: %q %v, want io.EOF", buf[:n], err)
		}
		if n, err := c.Write([]byte("PUT")); n != 0 || !errors.Is(err, ErrStaleConn) {
			t.Fatalf("write: %d %v, want 0 ErrStaleConn", n, err)
		}
	})
	t.Run("a GET's body passes", func(t *testing.T) {
		c, s := tcpPair(t)
		c.Begin()
		resp := "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
		if _, err := io.WriteString(s, resp); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(resp))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(s, "abcdef"); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, 6)
		if _, err := io.ReadFull(c, body); err != nil || string(body) != "abcdef" {
			t.Fatalf("body: %q %v", body, err)
		}
	})
}
