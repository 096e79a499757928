package proxy

import (
	"strings"
	"testing"
)

// A response to HEAD with Transfer-Encoding and Content-Length reaches the client without
// either: the Transfer-Encoding overrides the Content-Length (RFC 9112 section 6.3 item 3),
// which net/http's transport removes from every response but one to HEAD; a Content-Length
// alone is kept (RFC 9110 section 9.3.2). Found by parity fuzz
// (client-header-content-length: Go forwarded "40", Pingora none).
func TestHeadResponseLosesContentLengthBesideTransferEncoding(t *testing.T) {
	for _, tc := range []struct{ answer, want string }{
		{"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n", ""},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n", ""},
		{"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "7"},
	} {
		up := newRawUpstream(t, tc.answer)
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 3000, "")))
		out := rawExchange(t, r.url, "HEAD / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		cl := ""
		for _, line := range strings.Split(head, "\r\n") {
			if name, v, ok := strings.Cut(line, ": "); ok && strings.EqualFold(name, "Content-Length") {
				cl = v
			}
		}
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") || cl != tc.want || body != "" ||
			strings.Contains(strings.ToLower(head), "transfer-encoding") {
			t.Errorf("%q: Content-Length %q, want %q: %q", tc.answer, cl, tc.want, out)
		}
	}
}

// A 101 to an upgrade request with a body (a POST) carries no Content-Length:
// ReverseProxy's Response.Write added "Content-Length: 0" for a method other than GET and
// HEAD, where the upstream's 101 (and the Pingora router's) has none (RFC 9110 section
// 15.2: a 1xx has no content).
func TestSwitchingProtocolsToAPostHasNoContentLength(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 3000, "")))
	out := rawExchange(t, r.url, "POST /ws HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: upgrade\r\nUpgrade: foo\r\nContent-Length: 2\r\n\r\nab")
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 101 ") || strings.Contains(strings.ToLower(head), "content-length") {
		t.Fatalf("%q", out)
	}
}
