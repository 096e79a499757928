package upstream

import (
	"io"
	"net"
	"slices"
	"testing"
)

// HeadConn records the Connection values of the final head of an exchange, whatever the
// reads' boundaries, skipping interim heads and ignoring the body; Begin starts afresh.
func TestHeadConnRecordsTheFinalHeadsConnection(t *testing.T) {
	stream := "HTTP/1.1 100 Continue\r\nConnection: x-early\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nconnection:\tX-Two \r\nContent-Length: 30\r\n\r\n" +
		"Connection: not-a-head\r\n\r\nxxx"
	for _, step := range []int{1, 2, 3, 7, len(stream)} {
		a, b := net.Pipe()
		c := &HeadConn{Conn: a}
		c.Begin()
		go func() {
			for i := 0; i < len(stream); i += step {
				_, _ = b.Write([]byte(stream[i:min(i+step, len(stream))]))
			}
			b.Close()
		}()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
		got, ok := c.FinalConnection()
		if !ok || !slices.Equal(got, []string{"close, X-Hop", "X-Two"}) {
			t.Fatalf("step %d: %q %v", step, got, ok)
		}
		c.Begin()
		if got, ok := c.FinalConnection(); ok || got != nil {
			t.Fatalf("after Begin: %q %v", got, ok)
		}
		a.Close()
	}
	// Bare LF line ends; a 101 is a final head.
	a, b := net.Pipe()
	c := &HeadConn{Conn: a}
	c.Begin()
	go func() { _, _ = b.Write([]byte("HTTP/1.1 101 Switching\nConnection: upgrade\n\nframes")); b.Close() }()
	_, _ = io.ReadAll(c)
	if got, ok := c.FinalConnection(); !ok || !slices.Equal(got, []string{"upgrade"}) {
		t.Fatalf("101: %q %v", got, ok)
	}
}
