package proxy

import (
	"strings"
	"testing"
)

// refusalVersionCases: one HTTP/1.0 head per refusal reason of the gate, and the status
// line the Pingora router gives it (probed against rust-pingora's pingora-router; the
// table is docs/design-go.md's). Where Pingora's own HTTP/1 parser refuses the head
// (faultParser) its bare 400 says HTTP/1.1; where the router's request_filter refuses it
// (faultRouter) the answer says HTTP/1.0 (docs/spec.md section 3, "HTTP/1.0 clients").
// The Go router gives the contract's status (431 where Pingora's parser says 400) in the
// same version.
var refusalVersionCases = []struct {
	name, head, status string
}{
	// Request line: httparse.
	{"method not a token", "G@T / HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"two SP", "GET  / HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"CTL in target", "GET /a\x01 HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"DEL in target", "GET /a\x7f HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"invalid UTF-8 in target", "GET /\x80 HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	// Request-target: pingora-core's authority checks, the http crate.
	{"absolute-form userinfo", "GET http://u@h/ HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form other scheme, userinfo", "GET ftp://u@h/x HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form empty authority", "GET http:///x HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form unclosed IP literal", "GET http://[::1/ HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form % in authority", "GET http://a%41/ HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form two port colons", "GET http://a:1:2/ HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form bad scheme", "GET ht_tp://h/x HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"absolute-form other scheme, Host differs", "GET ftp://h/x HTTP/1.0\r\nHost: g\r\n\r\n", "HTTP/1.1 400 "},
	{"CONNECT userinfo", "CONNECT u@a.example:443 HTTP/1.0\r\n\r\n", "HTTP/1.1 400 "},
	{"CONNECT Host differs", "CONNECT a.example:443 HTTP/1.0\r\nHost: b.example:443\r\n\r\n", "HTTP/1.1 400 "},
	// Request-target: the router.
	{"bad % in path", "GET /a%2 HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"no form", "GET foo HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"asterisk with GET", "GET * HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"authority-form with GET", "GET a.example:443 HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"CONNECT", "CONNECT a.example:443 HTTP/1.0\r\nHost: a.example:443\r\n\r\n", "HTTP/1.0 400 "},
	{"CONNECT, Host its host", "CONNECT a.example:443 HTTP/1.0\r\nHost: a.example\r\n\r\n", "HTTP/1.0 400 "},
	{"CONNECT without port", "CONNECT a.example HTTP/1.0\r\nHost: b.example\r\n\r\n", "HTTP/1.0 400 "},
	{"absolute-form bad port", "GET http://a:b/ HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"absolute-form bad % in path", "GET http://a/%zz HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"fragment", "GET /f#frag HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"fragment in the query", "GET /x?q=http://a/b?c#frag HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"absolute-form fragment", "GET http://h/#f HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	{"absolute-form other scheme", "GET ftp://h/x HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "},
	// Field lines: httparse, validate_request.
	{"obs-fold", "GET / HTTP/1.0\r\nA: 1\r\n b\r\n\r\n", "HTTP/1.1 400 "},
	{"first field line folded", "GET / HTTP/1.0\r\n A: 1\r\n\r\n", "HTTP/1.1 400 "},
	{"space before colon", "GET / HTTP/1.0\r\nA : 1\r\n\r\n", "HTTP/1.1 400 "},
	{"name not a token", "GET / HTTP/1.0\r\nA@: 1\r\n\r\n", "HTTP/1.1 400 "},
	{"no colon", "GET / HTTP/1.0\r\nBad Header\r\n\r\n", "HTTP/1.1 400 "},
	{"CTL in value", "GET / HTTP/1.0\r\nA: 1\x01\r\n\r\n", "HTTP/1.1 400 "},
	{"DEL in value", "GET / HTTP/1.0\r\nA: 1\x7f\r\n\r\n", "HTTP/1.1 400 "},
	{"bare CR in value", "GET / HTTP/1.0\r\nA: 1\r\r\n\r\n", "HTTP/1.1 400 "},
	{"two Host", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", "HTTP/1.1 400 "},
	{"@ in Host", "GET / HTTP/1.0\r\nHost: u@a\r\n\r\n", "HTTP/1.1 400 "},
	{"Content-Length values differ", "POST / HTTP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "HTTP/1.1 400 "},
	{"Content-Length +2", "POST / HTTP/1.0\r\nContent-Length: +2\r\n\r\nab", "HTTP/1.1 400 "},
	{"Content-Length abc", "POST / HTTP/1.0\r\nContent-Length: abc\r\n\r\nab", "HTTP/1.1 400 "},
	{"Content-Length 0x2", "POST / HTTP/1.0\r\nContent-Length: 0x2\r\n\r\nab", "HTTP/1.1 400 "},
	{"Content-Length empty", "POST / HTTP/1.0\r\nContent-Length:\r\n\r\nab", "HTTP/1.1 400 "},
	{"Content-Length too big", "POST / HTTP/1.0\r\nContent-Length: 99999999999999999999999\r\n\r\nab", "HTTP/1.1 400 "},
	{"Transfer-Encoding chunked", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 "},
	{"Transfer-Encoding gzip", "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", "HTTP/1.1 400 "},
	{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 "},
	{"Transfer-Encoding chunked, chunked", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 "},
	{"Content-Length and Transfer-Encoding", "POST / HTTP/1.0\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 "},
	// Field lines: the router.
	{"Host with SP", "GET / HTTP/1.0\r\nHost: a b\r\n\r\n", "HTTP/1.0 400 "},
	{"Host with /", "GET / HTTP/1.0\r\nHost: a/evil\r\n\r\n", "HTTP/1.0 400 "},
	{"Host a list", "GET / HTTP/1.0\r\nHost: a, b\r\n\r\n", "HTTP/1.0 400 "},
	{"Host port not a number", "GET / HTTP/1.0\r\nHost: a:abc\r\n\r\n", "HTTP/1.0 400 "},
	{"Host empty", "GET / HTTP/1.0\r\nHost:\r\n\r\n", "HTTP/1.0 400 "},
	{"Host byte 0x80", "GET / HTTP/1.0\r\nHost: \x80\r\n\r\n", "HTTP/1.0 400 "},
	{"Content-Length list", "POST / HTTP/1.0\r\nContent-Length: 2, 2\r\n\r\nab", "HTTP/1.0 400 "},
	{"Expect other than 100-continue", "POST / HTTP/1.0\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n1", "HTTP/1.0 400 "},
	// A parser fault anywhere in the head wins over a router fault before it.
	{"no form, then obs-fold", "GET foo HTTP/1.0\r\nA: 1\r\n b\r\n\r\n", "HTTP/1.1 400 "},
	{"bad Host, then two Host", "GET / HTTP/1.0\r\nHost: a b\r\nHost: c\r\n\r\n", "HTTP/1.1 400 "},
	{"Expect, then Content-Length abc", "POST / HTTP/1.0\r\nExpect: foo\r\nContent-Length: abc\r\n\r\n", "HTTP/1.1 400 "},
	{"CONNECT, then Transfer-Encoding", "CONNECT a:443 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400 "},
	// Size: the router's 431 (request_filter checks it first); a request line over the
	// limit is refused before its version is read (Pingora: its parser's 400, the http
	// crate's URI length limit).
	{"head over 64 KiB", "GET / HTTP/1.0\r\nA: " + strings.Repeat("a", 70000) + "\r\n\r\n", "HTTP/1.0 431 "},
	{"bad % in path, head over 64 KiB", "GET /a%2 HTTP/1.0\r\nA: " + strings.Repeat("a", 70000) + "\r\n\r\n", "HTTP/1.0 431 "},
	{"request line over 64 KiB", "GET /" + strings.Repeat("a", 70000) + " HTTP/1.0\r\n\r\n", "HTTP/1.1 431 "},
}

// Every refusal of an HTTP/1.0 head is the router's answer (X-Router-Error), nothing
// reaches the upstream, and its status line's version is the one the Pingora router gives
// the same head (refusalVersionCases).
func TestHTTP10RefusalVersionFollowsPingora(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, tc := range refusalVersionCases {
		out, err := orderlyExchange(t, hostPort(r.url), []byte(tc.head))
		code := "bad_request"
		if strings.Contains(tc.status, " 431 ") {
			code = "request_headers_too_large"
		}
		if err != nil || !strings.HasPrefix(out, tc.status) || !strings.Contains(out, "\r\nX-Router-Error: "+code+"\r\n") {
			t.Errorf("%s: want %q, got %.100q (%v)", tc.name, tc.status, out, err)
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %q", lines)
	}
}

// The same heads in HTTP/1.1 (with Host, where they had none) are answered HTTP/1.1,
// whatever refuses them.
func TestHTTP11RefusalsSayHTTP11(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, tc := range refusalVersionCases {
		head := strings.Replace(tc.head, " HTTP/1.0\r\n", " HTTP/1.1\r\nX-Routing-Key: k\r\n", 1)
		if !strings.Contains(tc.head, "\r\nHost:") && !strings.HasPrefix(tc.head, "CONNECT") {
			head = strings.Replace(head, "X-Routing-Key: k\r\n", "X-Routing-Key: k\r\nHost: x\r\n", 1)
		}
		if strings.Contains(tc.head, "Transfer-Encoding: chunked\r\n") && !strings.Contains(tc.head, "Content-Length") &&
			!strings.HasPrefix(tc.head, "CONNECT") {
			continue // valid in HTTP/1.1
		}
		out, err := orderlyExchange(t, hostPort(r.url), []byte(head))
		if err != nil || !strings.HasPrefix(out, "HTTP/1.1 4") || !strings.Contains(out, "X-Router-Error: ") {
			t.Errorf("%s: %.100q (%v)", tc.name, out, err)
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %q", lines)
	}
}
