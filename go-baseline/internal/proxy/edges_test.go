package proxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawUpstream is a TCP upstream that records each request's request line and answers
// every request with the bytes answer (then closes the connection).
type rawUpstream struct {
	ln     net.Listener
	mu     sync.Mutex
	lines  []string
	answer string
}

func newRawUpstream(t *testing.T, answer string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, answer: answer}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	u.mu.Lock()
	u.lines = append(u.lines, strings.TrimRight(line, "\r\n"))
	u.mu.Unlock()
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" || l == "\n" {
			break
		}
	}
	_, _ = io.WriteString(c, u.answer)
}

func (u *rawUpstream) requestLines() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.lines...)
}

// The request-target reaches the upstream byte for byte (RFC 9110 section 7.7): no
// query re-encoding (';', malformed escapes), no path re-escaping; an absolute-form
// target (RFC 9112 section 3.2.2) is forwarded as its origin-form part.
func TestRequestTargetForwardedByteForByte(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, tc := range []struct{ sent, want string }{
		{"/q?a=1;b=2&c=%zz&d=%7e", ""},
		{"/p%7e/%2F/%2f/x%20y?z=%2B+1", ""},
		{"/a\"b{c}|d^e`f", ""},
		{"/p?", ""},
		{"/p?&&a==b&", ""},
		{"/", ""},
		{"//double//slash?x=%zz", ""},
		{"/x?q=http://a/b?c#frag", ""},
		{"http://front.example:8080/abs/p?x=1;y", "/abs/p?x=1;y"},
		{"http://front.example:8080?x", "/?x"},
		{"http://front.example:8080", "/"},
	} {
		want := tc.want
		if want == "" {
			want = tc.sent
		}
		before := len(up.requestLines())
		out := rawExchange(t, r.url, "GET "+tc.sent+" HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("%q: %.80q", tc.sent, out)
		}
		lines := up.requestLines()
		if len(lines) != before+1 || lines[before] != "GET "+want+" HTTP/1.1" {
			t.Fatalf("sent %q, upstream got %q, want %q", tc.sent, lines[before:], "GET "+want+" HTTP/1.1")
		}
	}
}

// A status line that is not HTTP/1.x is 502 upstream_protocol_error (section 3 step 7):
// a breaker failure of kind protocol, not retried.
func TestNonHTTP1StatusLineIs502(t *testing.T) {
	for _, proto := range []string{"HTTP/2.0", "HTTP/0.9", "HTTP/3.0"} {
		up := newRawUpstream(t, proto+" 200 OK\r\nContent-Length: 2\r\n\r\nok")
		fb := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "fb", 4, 1000,
			`,"circuit_breaker":{"failure_threshold":1,"open_ms":60000,"half_open_max_requests":1,"success_threshold":1}`),
			`"fb":`+placement(fb.ln.Addr().String(), "", 4, 1000, "")))
		wantRouterError(t, get(t, r.url, "k"), 502, "upstream_protocol_error", "p")
		if counter(t, r, "failures", "p", "protocol") != 1 || len(fb.requestLines()) != 0 {
			t.Fatalf("%s: protocol failures %v, fallback hits %d", proto, counter(t, r, "failures", "p", "protocol"), len(fb.requestLines()))
		}
		// The breaker (threshold 1) has opened: the next request goes to the fallback.
		if resp := get(t, r.url, "k"); resp.StatusCode != 200 || resp.Header.Get("X-Router-Placement") != "fb" {
			t.Fatalf("%s: after the failure: %d from %q", proto, resp.StatusCode, resp.Header.Get("X-Router-Placement"))
		}
	}
	// HTTP/1.0 and HTTP/1.1 pass.
	for _, proto := range []string{"HTTP/1.0", "HTTP/1.1"} {
		up := newRawUpstream(t, proto+" 200 OK\r\nContent-Length: 2\r\n\r\nok")
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
		if resp := get(t, r.url, "k"); resp.StatusCode != 200 || readAll(t, resp) != "ok" {
			t.Fatalf("%s: %d", proto, resp.StatusCode)
		}
	}
}
