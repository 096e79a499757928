package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// These tests pin the request-line rules the Go router shares with the Pingora router,
// whose parser is httparse 1.10.1 (rust-pingora's Cargo.lock) and which answers 400 to a
// request line httparse refuses (rust-pingora/vendor/pingora-core.patch: no
// percent-escaping and forwarding of such lines any more).

// httparseRefusesTargetByte is the expected verdict for the target "/a" + b + "b", taken
// from httparse 1.10.1 src/lib.rs: URI_MAP = byte_map!(b'!'..=0x7e | 0x80..=0xFF) is what
// parse_uri's byte scan (simd::match_uri_vectored) accepts, and parse_uri then requires
// the target to be valid UTF-8 (str::from_utf8, else Error::Token). So a byte is refused
// when it is outside URI_MAP (0x00-0x20, 0x7F; SP ends the target early and the rest is
// no version), and a lone byte 0x80-0xFF is refused because it is not UTF-8. Checked by
// running httparse 1.10.1's Request::parse on all 256 inputs: exactly these are Err.
func httparseRefusesTargetByte(b byte) bool {
	inURIMap := b >= '!' && b <= 0x7e || b >= 0x80
	loneByteIsUTF8 := b < 0x80
	return !inURIMap || !loneByteIsUTF8
}

// httpCrateRefusesTargetByte is the expected verdict of the Pingora router's request
// header on a byte httparse accepted, in the path (query false) or the query of an
// origin-form target: pingora-http 0.9.1 RequestHeader::set_raw_path parses the target as an
// http 1.5 PathAndQuery, whose PATH_MAP refuses '<', '>' and '`' and whose QUERY_MAP refuses
// '"', '<' and '>' (src/uri/path.rs build_path_map, build_query_map); the header cannot be
// built and Pingora answers its own 400. Checked on the Pingora router: "/a<b", "/a>b",
// "/a`b", "/?a\"b", "/?a<b", "/?a>b" are 400; "/a\"b", "/a{b", "/?a`b", "/?a{b" are
// forwarded.
func httpCrateRefusesTargetByte(b byte, query bool) bool {
	switch b {
	case '<', '>':
		return true
	case '`':
		return !query
	case '"':
		return query
	}
	return false
}

// Every byte 0x00-0xFF in the request-target, in the query and in the path: the gate
// refuses exactly those httparse refuses, those the http crate's PathAndQuery refuses, '#'
// anywhere (the router's rule), and in the path also '%' not followed by two hex digits
// ("/a%b": the lead's decision, RFC 3986 section 2.1; the query's bytes are forwarded as
// they are).
func TestGateTargetBytesAsHttparse(t *testing.T) {
	refused := 0
	for i := 0; i < 256; i++ {
		b := byte(i)
		want := httparseRefusesTargetByte(b)
		for _, target := range []string{"/a?q" + string([]byte{b}) + "z", "/a" + string([]byte{b}) + "b"} {
			// '#' is the router's refusal, not httparse's: a fragment is never part of a
			// request-target (RFC 9112 section 3.2; rust-pingora proxy/target.rs classify).
			query := strings.Contains(target, "?")
			w := want || httpCrateRefusesTargetByte(b, query) || b == '%' && !query || b == '#'

			accepted, ref := gateVerdict([]byte("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"))
			if ref != w || accepted == w {
				t.Errorf("byte 0x%02x in %q: gate accepted=%v refused=%v, want refused=%v", b, target, accepted, ref, w)
			}
		}
		if want {
			refused++
		}
	}
	if refused != 0x21+1+0x80 {
		t.Fatalf("expected set has %d refused bytes", refused)
	}
}

// Bytes >= 0x80 pass only as valid UTF-8 (httparse's str::from_utf8, which like Go's
// utf8.Valid refuses overlong forms and surrogates), in the query too and in every
// target form; the rest of printable ASCII passes but for the http crate's refusals
// (httpCrateRefusesTargetByte), which apply to an absolute-form target's path and query
// too, and only before a '#' (Pingora drops the fragment first; the router refuses '#').
func TestGateTargetUTF8AsHttparse(t *testing.T) {
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/\xc3\xa9", true},                    // é
		{"/\xf0\x9f\x98\x80?q=\xc3\xa9", true}, // 😀, é in the query
		{"/a\"b{d}|e\\f^g?h`i{j}|k^l", true},
		{"/a<b", false},
		{"/?a\"b", false},
		{"http://h.example/a`b", false},
		{"http://h.example/?a>b", false},
		{"http://h.example?a\"b", false},
		{"ftp://h.example/a<b", false},
		{"http://h.example/\xc3\xa9", true},
		{"/\xc3", false},         // truncated sequence
		{"/\xc0\x80", false},     // overlong NUL
		{"/\xed\xa0\x80", false}, // UTF-16 surrogate
		{"/?q=\xff", false},
		{"http://h.example/\xff", false},
		{"http://h.example/a\x7fb", false},
	} {
		accepted, refused := gateVerdict([]byte("GET " + tc.target + " HTTP/1.1\r\nHost: x\r\n\r\n"))
		if accepted != tc.ok || refused == tc.ok {
			t.Errorf("%q: accepted=%v refused=%v, want accepted=%v", tc.target, accepted, refused, tc.ok)
		}
	}
}

// The version is exactly HTTP/1.0 or HTTP/1.1 (httparse parse_version); net/http would
// serve HTTP/1.2 .. HTTP/1.9 as HTTP/1.1.
func TestGateVersionExactlyHTTP10Or11(t *testing.T) {
	for _, tc := range []struct {
		version string
		ok      bool
	}{
		{"HTTP/1.0", true}, {"HTTP/1.1", true},
		{"HTTP/1.2", false}, {"HTTP/1.9", false}, {"HTTP/2.0", false}, {"HTTP/1.01", false},
		{"HTTP/1.", false}, {"HTTP/0.9", false}, {"http/1.1", false}, {"HTTP/1.1 ", false},
	} {
		accepted, refused := gateVerdict([]byte("GET / " + tc.version + "\r\nHost: x\r\n\r\n"))
		if accepted != tc.ok || refused == tc.ok {
			t.Errorf("%q: accepted=%v refused=%v, want accepted=%v", tc.version, accepted, refused, tc.ok)
		}
	}
}

// End to end: such request lines get the router's 400 bad_request and reach no
// upstream; a valid UTF-8 target is forwarded byte for byte.
func TestHttparseRefusalsAre400(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, line := range []string{"GET /a HTTP/1.2", "GET /a HTTP/1.9", "GET /a HTTP/1.01", "GET /a\x80 HTTP/1.1", "GET /?q=\xff HTTP/1.1"} {
		out := rawExchange(t, r.url, line+"\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") {
			t.Errorf("%q: %.100q", line, out)
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %q", lines)
	}
	out := rawExchange(t, r.url, "GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n")
	if lines := up.requestLines(); !strings.HasPrefix(out, "HTTP/1.1 200 ") || len(lines) != 1 || lines[0] != "GET /\xc3\xa9 HTTP/1.1" {
		t.Fatalf("UTF-8 target: %.80q, upstream got %q", out, lines)
	}
}

// The answer to a refused HTTP/1.0 head says HTTP/1.1 when the Pingora router's parser
// refuses it, HTTP/1.0 when the router's own checks do (fault; refusalVersionCases has one
// head per reason), and closes the connection.
func TestRefusedHTTP10HeadAnswerVersion(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, tc := range []struct{ name, req, status, code string }{
		{"CTL in target", "GET /a\x01 HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.1 400", "bad_request"},
		{"'\"' in the query", "GET /?a\"b HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.1 400", "bad_request"},
		{"'<' in the path, then a fragment", "GET /a<b#f HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.1 400", "bad_request"},
		{"'<' in a fragment", "GET /a#<b HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.0 400", "bad_request"},
		{"obs-fold", "GET /a HTTP/1.0\r\nX-A: 1\r\n b\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.1 400", "bad_request"},
		{"Expect: foo", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\nExpect: foo\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.0 400", "bad_request"},
		{"CONNECT", "CONNECT a.example:443 HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.0 400", "bad_request"},
		{"authority-form GET", "GET a.example:443 HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.0 400", "bad_request"},
		{"asterisk GET", "GET * HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.0 400", "bad_request"},
		{"Host port not a number", "GET /a HTTP/1.0\r\nHost: a.example:x\r\nX-Routing-Key: k\r\n\r\n", "HTTP/1.0 400", "bad_request"},
		{"oversized head", "GET /a HTTP/1.0\r\nX-Big: " + strings.Repeat("b", MaxHeadBytes) + "\r\n\r\n", "HTTP/1.0 431", "request_headers_too_large"},
	} {
		out, err := orderlyExchange(t, hostPort(r.url), []byte(tc.req))
		head, _, _ := strings.Cut(out, "\r\n\r\n")
		if err != nil || !strings.HasPrefix(out, tc.status+" ") || !strings.Contains(head, "\r\nConnection: close") ||
			!strings.Contains(head, "\r\nX-Router-Error: "+tc.code) {
			t.Errorf("%s: %.120q %v", tc.name, out, err)
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %q", lines)
	}
}

// Expect with any expectation other than 100-continue is the router's 400 bad_request
// (net/http's would be 417; RFC 9110 section 10.1.1 lets a server answer 417), on both
// versions; 100-continue itself is honoured.
func TestExpectOtherThan100ContinueIs400(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, v := range []string{"foo", "200-ok", "100-continuex", "101-continue"} {
		for _, version := range []string{"HTTP/1.1", "HTTP/1.0"} {
			req := fmt.Sprintf("POST /e %s\r\nHost: x\r\nX-Routing-Key: k\r\nExpect: %s\r\nContent-Length: 1\r\n\r\na", version, v)
			out, err := orderlyExchange(t, hostPort(r.url), []byte(req))
			// The Pingora router's request_filter refuses it: the answer is in the
			// request's version.
			if err != nil || !strings.HasPrefix(out, version+" 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") {
				t.Errorf("Expect: %s (%s): %.100q %v", v, version, out, err)
			}
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %q", lines)
	}
	if accepted, _ := gateVerdict([]byte("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na")); !accepted {
		t.Fatal("Expect: 100-continue refused")
	}
}
