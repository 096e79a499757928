package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every interim response the upstream sends reaches an HTTP/1.1 client, in order, 100
// Continue included and however many (RFC 9110 section 15.2), as the Pingora router
// forwards them; net/http's own 100 Continue (sent on the first read of a body whose
// request expects one) only stands in for the upstream's first. Before, a request body
// read by the transport counted as a 100 sent even without "Expect: 100-continue", so the
// upstream's 100 was dropped, and so was every 100 after the first (parity fuzz,
// client-interim: "100 Continue" then "HTTP/1.1 1000" gave the client the 502 alone).
func TestEveryUpstream1xxIsForwarded(t *testing.T) {
	for _, tc := range []struct {
		name, req, answer string
		want              []string // status lines, in order
	}{
		{"two 100s to a GET",
			"GET /a HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\nLink: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			[]string{"HTTP/1.1 100 Continue", "HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"}},
		{"100 to a POST without Expect, then an invalid status line",
			"POST /b HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 1000 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			[]string{"HTTP/1.1 100 Continue", "HTTP/1.1 502 Bad Gateway"}},
		{"103 and 100 to a chunked POST",
			"POST /c HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
			"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			[]string{"HTTP/1.1 103 Early Hints", "HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"}},
		{"two 100s to a POST expecting one",
			"POST /d HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
			[]string{"HTTP/1.1 100 Continue", "HTTP/1.1 100 Continue", "HTTP/1.1 200 OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The upstream writes the answer on the request head, then reads the body
			// (closing with it unread would reset the connection) and closes; its final
			// response says Connection: close, so that the transport never writes a request
			// to a pooled connection it has closed.
			ln := acceptLoop(t, func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, tc.answer)
				_, _ = io.Copy(io.Discard, req.Body)
			})
			r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(ln.Addr().String(), "", 4, 3000, "")))
			for run := 0; run < 10; run++ {
				out := rawExchange(t, r.url, tc.req)
				var got []string
				for _, line := range strings.Split(out, "\r\n") {
					if strings.HasPrefix(line, "HTTP/1.") {
						got = append(got, line)
					}
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Fatalf("run %d: status lines %q, want %q\n%q", run, got, tc.want, out)
				}
			}
		})
	}
}

// A forwarded 1xx loses its hop-by-hop fields and the ones its Connection names (docs/spec.md
// section 3, "Headers"), as final responses do; ReverseProxy cleans final responses only.
func TestInterimLosesHopByHopFields(t *testing.T) {
	ln := acceptLoop(t, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\nKeep-Alive: timeout=5\r\nConnection: X-Hop\r\nX-Hop: 1\r\nUpgrade: foo\r\nProxy-Connection: x\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(ln.Addr().String(), "", 4, 3000, "")))
	out := rawExchange(t, r.url, "GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
	interim, _, ok := strings.Cut(out, "\r\n\r\n")
	if !ok || !strings.HasPrefix(interim, "HTTP/1.1 103 ") || !strings.Contains(interim, "Link: </s.css>") {
		t.Fatalf("no 103 with its Link first: %q", out)
	}
	for _, f := range []string{"Keep-Alive", "Connection", "X-Hop", "Upgrade", "Proxy-Connection"} {
		if strings.Contains(interim, "\r\n"+f+":") {
			t.Errorf("the 103 kept %s: %q", f, interim)
		}
	}
}
