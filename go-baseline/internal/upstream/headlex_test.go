package upstream

import "testing"

// HeadLexer refuses a head at the first byte httparse 1.10.1 refuses (the Pingora router's
// parser) and accepts every prefix of a head it accepts: the request grammar (the zero
// value) and the response grammar (ResponseHead) with Pingora's response options.
func TestHeadLexer(t *testing.T) {
	for _, tc := range []struct {
		response bool
		head     string
		refused  int // offset of the first refused byte; -1: accepted whole
	}{
		// request heads
		{false, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", -1},
		{false, "\r\n\nPOST /a?b HTTP/1.0\nX: \x80 v\t\n\n", -1},
		{false, "GET  / HTTP/1.1\r\n", 4},               // empty target
		{false, "GET / HTTP/1.2\r\n", 13},               // version
		{false, "G(T / HTTP/1.1\r\n", 1},                // not a token
		{false, "GET / HTTP/1.1\r\nX : 1\r\n", 17},      // white space before a request field's colon
		{false, "GET / HTTP/1.1\r\nX: 1\r\n y\r\n", 22}, // obs-fold in a request
		{false, "GET / HTTP/1.1\r\nX: a\x01\r\n", 20},
		{false, "GET /\x7f HTTP/1.1\r\n", 5},
		{false, "GET / HTTP/1.1\rx", 15},
		// response heads
		{true, "HTTP/1.1 200 OK\r\nX: a\r\n\r\n", -1},
		{true, "\r\nHTTP/1.0 404\nX \t: 1\nY:\n z\n\tw\n\n", -1},
		{true, "HTTP/1.1 999 \xff\t!\r\n\r\n", -1},
		{true, "HTTP/1.1 20", -1}, // a prefix: more may come
		{true, "GET / HTTP/1.1\r\n", 0},
		{true, "HTTP/1.1\r\n", 8},
		{true, "HTTP/1.1 20 OK\r\n", 11},
		{true, "HTTP/1.1 2000 OK\r\n", 12},
		{true, "HTTP/1.1 200 OK\r\n\tX: 1\r\n", 17}, // white space before the first field line
		{true, "HTTP/1.1 200 OK\r\nX y: 1\r\n", 19},
		{true, "HTTP/1.1 200 OK\r\nX: 1\r\n\r\r", 24},
		{true, "HTTP/1.1 200 OK\r\nX\x00: 1\r\n", 18},
	} {
		l := HeadLexer{}
		if tc.response {
			l = ResponseHead()
		}
		n, ok := l.Scan([]byte(tc.head))
		want := tc.refused
		if ok {
			n = -1
		}
		if n != want || ok != (want < 0) {
			t.Errorf("response %v %q: refused at %d (ok %v), want %d", tc.response, tc.head, n, ok, want)
		}
	}
}
