package proxy

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// net/http accepts a request with both Content-Length and Transfer-Encoding: chunked
// (RFC 9112 section 6.3 allows it) and deletes Content-Length before the handler runs,
// so the handler cannot see the conflict the contract answers with 400. The connection
// wrapper of conn.go therefore follows the HTTP/1.1 framing of every connection's byte stream (request
// heads, fixed and chunked bodies) and records, per request head, whether it carried both
// headers; the handler looks its request up by method and request-target.

// conflictingFraming reports whether r's head had framing the router refuses: both
// Content-Length and Transfer-Encoding, or Transfer-Encoding in an HTTP/1.0 request.
func conflictingFraming(r *http.Request) bool {
	sc, ok := r.Context().Value(connKey{}).(*scanConn)
	if !ok {
		return false
	}
	return sc.take(r.Method, r.RequestURI)
}

type headInfo struct {
	method, target string
	conflict       bool
}

type scanState int

const (
	sHead scanState = iota
	sFixed
	sChunkSize
	sChunkData
	sChunkDataEnd
	sTrailers
	sOff // an upgrade, an unparseable head: stop following (net/http closes or tunnels)
)

const maxHeadBytes = 1 << 20

// scanConn is an accepted client connection: it feeds what it reads to the framing
// scanner (this file) and ends with a lingering close (conn.go).
type scanConn struct {
	net.Conn
	mu    sync.Mutex
	heads []headInfo

	lingerTime  time.Duration // see Listener
	lingerBytes int64
	closeOnce   sync.Once

	// scanner state, touched only by Read (one reader at a time)
	state     scanState
	line      []byte
	headBytes int
	cur       headInfo
	started   bool
	hasCL     bool
	hasTE     bool
	clBad     bool
	cl        int64
	teChunked bool
	upgrade   bool
	http10    bool
	remaining int64
}

func (c *scanConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.state != sOff {
		c.feed(p[:n])
	}
	return n, err
}

// take pops the recorded heads up to and including the one for method and target.
func (c *scanConn) take(method, target string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.heads) > 0 {
		h := c.heads[0]
		n := copy(c.heads, c.heads[1:]) // keep the backing array: no allocation per head
		c.heads = c.heads[:n]
		if h.method == method && h.target == target {
			return h.conflict
		}
	}
	return false
}

func (c *scanConn) feed(b []byte) {
	for len(b) > 0 && c.state != sOff {
		switch c.state {
		case sFixed, sChunkData:
			n := int64(len(b))
			if n > c.remaining {
				n = c.remaining
			}
			c.remaining -= n
			b = b[n:]
			if c.remaining == 0 {
				if c.state == sFixed {
					c.state = sHead
				} else {
					c.state = sChunkDataEnd
				}
			}
		default: // line-oriented states
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				c.appendLine(b)
				return
			}
			c.appendLine(b[:i])
			b = b[i+1:]
			c.lineDone(bytes.TrimSuffix(c.line, []byte{'\r'}))
			c.line = c.line[:0]
			if c.state != sHead || !c.started {
				c.headBytes = 0 // the cap is per head, or per line inside a body
			}
		}
	}
}

func (c *scanConn) appendLine(b []byte) {
	c.headBytes += len(b)
	if c.headBytes > maxHeadBytes {
		c.state = sOff
		return
	}
	c.line = append(c.line, b...)
}

func (c *scanConn) lineDone(line []byte) {
	switch c.state {
	case sHead:
		if !c.started {
			if len(line) == 0 {
				return // empty lines before a request line are skipped
			}
			c.started = true
			// Split like net/http's parseRequestLine: METHOD SP request-target SP version.
			method, rest, ok1 := bytes.Cut(line, []byte{' '})
			target, proto, ok2 := bytes.Cut(rest, []byte{' '})
			if ok1 && ok2 {
				c.cur.method, c.cur.target = methodString(method), string(target)
			}
			// net/http ignores Transfer-Encoding below HTTP/1.1.
			c.http10 = ok1 && ok2 && bytes.Equal(proto, []byte("HTTP/1.0"))
			return
		}
		if len(line) > 0 {
			c.header(line)
			return
		}
		c.endHead()
	case sChunkSize:
		size := line
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := parseHex(bytes.TrimSpace(size))
		switch {
		case err != nil || n < 0:
			c.state = sOff
		case n == 0:
			c.state = sTrailers
		default:
			c.state, c.remaining = sChunkData, n
		}
	case sChunkDataEnd:
		c.state = sChunkSize
	case sTrailers:
		if len(line) == 0 {
			c.state = sHead
		}
	}
}

// equalFold reports whether b equals the ASCII string s ignoring ASCII case (header
// names and these tokens are case-insensitive, RFC 9110 sections 5.1 and 7.6.1).
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (c *scanConn) header(line []byte) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return
	}
	name, value := line[:i], bytes.TrimSpace(line[i+1:])
	switch {
	case equalFold(name, "Content-Length"):
		n, err := strconv.ParseInt(string(value), 10, 64)
		if err != nil || n < 0 || (c.hasCL && n != c.cl) {
			c.clBad = true
		}
		c.hasCL, c.cl = true, n
	case equalFold(name, "Transfer-Encoding"):
		c.teChunked = !c.hasTE && equalFold(value, "chunked")
		c.hasTE = true
	case equalFold(name, "Connection"):
		for _, tok := range bytes.Split(value, []byte{','}) {
			if equalFold(bytes.TrimSpace(tok), "upgrade") {
				c.upgrade = true
			}
		}
	}
}

// methodString is string(m), without an allocation for the common methods.
func methodString(m []byte) string {
	switch string(m) { // no allocation: the compiler compares the bytes in place
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "HEAD":
		return "HEAD"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	}
	return string(m)
}

// parseHex parses a chunk size (1 to 15 hex digits).
func parseHex(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 15 {
		return 0, strconv.ErrSyntax
	}
	var n int64
	for _, ch := range b {
		switch {
		case ch >= '0' && ch <= '9':
			n = n<<4 | int64(ch-'0')
		case ch >= 'a' && ch <= 'f':
			n = n<<4 | int64(ch-'a'+10)
		case ch >= 'A' && ch <= 'F':
			n = n<<4 | int64(ch-'A'+10)
		default:
			return 0, strconv.ErrSyntax
		}
	}
	return n, nil
}

func (c *scanConn) endHead() {
	// Content-Length with Transfer-Encoding, or Transfer-Encoding in an HTTP/1.0
	// message, whose framing must be treated as faulty (RFC 9112 section 6.1); net/http
	// ignores Transfer-Encoding below HTTP/1.1 and would read the chunked body as the
	// next request on a keep-alive connection.
	c.cur.conflict = c.hasTE && (c.hasCL || c.http10)
	c.mu.Lock()
	c.heads = append(c.heads, c.cur)
	c.mu.Unlock()
	switch {
	case c.cur.conflict || c.upgrade || c.clBad || (c.hasTE && !c.teChunked && !c.http10):
		// The router closes after a conflict; net/http rejects bad framing and closes;
		// an upgrade may turn the connection into a tunnel.
		c.state = sOff
	case c.hasTE && !c.http10:
		c.state = sChunkSize
	case c.hasCL && c.cl > 0:
		c.state, c.remaining = sFixed, c.cl
	default:
		c.state = sHead
	}
	c.cur, c.started, c.hasCL, c.hasTE, c.clBad, c.cl, c.teChunked, c.upgrade, c.http10, c.headBytes =
		headInfo{}, false, false, false, false, 0, false, false, false, 0
}
