//go:build linux

package upstream

import (
	"io"
	"testing"
)

// RewriteTarget puts the client's target in the request line of the exchange's first
// write, byte for byte, counts the caller's bytes as written, and touches nothing else:
// a later write, a line in another form, the next exchange (Begin forgets it).
func TestRewriteTargetWritesTheTargetVerbatim(t *testing.T) {
	c, s := tcpPair(t)
	c.Begin()
	c.RewriteTarget("//%22?q", `//"?q`)
	line := "GET //%22?q HTTP/1.1\r\nHost: h\r\n\r\n"
	if n, err := c.Write([]byte(line)); n != len(line) || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	if n, err := c.Write([]byte("GET //%22?q HTTP/1.1\r\n")); n != 22 || err != nil { // not the first write
		t.Fatalf("second write: %d %v", n, err)
	}
	c.Begin()
	c.RewriteTarget("//%7Bx%7D", "//{x}")
	if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n")); err != nil { // another form: untouched
		t.Fatal(err)
	}
	want := "GET //\"?q HTTP/1.1\r\nHost: h\r\n\r\nGET //%22?q HTTP/1.1\r\nPRI * HTTP/2.0\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s, got); err != nil || string(got) != want {
		t.Fatalf("upstream read %q %v, want %q", got, err, want)
	}
}
