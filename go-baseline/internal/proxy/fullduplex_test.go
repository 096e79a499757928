package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/upstream"
)

// stuckAfterFirstWrite is an upstream connection whose first Write goes out and then does
// not return until release is closed: the transport's writer goroutine is held after it
// has sent the request head, before it reads the request body.
type stuckAfterFirstWrite struct {
	net.Conn
	release <-chan struct{}
	once    sync.Once
}

func (c *stuckAfterFirstWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.once.Do(func() { <-c.release })
	return n, err
}

// A request body the transport has not read when the response is complete, followed on
// the connection by a pipelined request. The body was left to net/http, whose
// finishRequest closes it after aborting the connection's background read; that Close
// reads the body to its end, which starts a new background read (golang/go#68560, with
// EnableFullDuplex). The pipelined request is then read from the buffer, and the next
// read of the connection found that background read in progress: "panic: invalid
// concurrent Body.Read call", in the serving goroutine for a bodiless request (recovered
// by net/http, the connection dropped) and in the transport's writer goroutine, which
// crashes the process, for one with a body (the Go router's crash found by parity fuzz).
// The handler now ends the body itself before it returns.
func TestUnreadBodyThenPipelinedRequest(t *testing.T) {
	for _, tc := range []struct{ name, second string }{
		{"second with a body", "POST /next HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: 3\r\n\r\nabc"},
		{"second bodiless", "GET /next HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := acceptLoop(t, func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/early" {
						// Answered on the head alone, as an upstream may (RFC 9110
						// section 15: a response can come before the request is complete).
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
						_, _ = io.Copy(io.Discard, br)
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"); err != nil {
						return
					}
				}
			})
			r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(ln.Addr().String(), "", 4, 5000, "")))
			release := make(chan struct{})
			t.Cleanup(func() { close(release) }) // before the router closes (cleanups run last first)
			tr := r.store.Load().Placements["p"].Peers[0].Upstream.(*upstream.Upstream).Transport
			dial := tr.DialContext
			var dials sync.Mutex
			first := true
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				dials.Lock()
				defer dials.Unlock()
				if first {
					first = false
					return &stuckAfterFirstWrite{Conn: c, release: release}, nil
				}
				return c, nil
			}

			c, err := net.Dial("tcp", hostPort(r.url))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "POST /early HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: 5\r\n\r\nhello"+tc.second)
			br := bufio.NewReader(c)
			for _, want := range []string{"early", "next"} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %q: %v", want, err)
				}
				body, err := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != want || err != nil {
					t.Fatalf("got %d %q %v, want 200 %q", resp.StatusCode, body, err, want)
				}
			}
		})
	}
}
