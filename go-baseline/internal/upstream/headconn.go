package upstream

import (
	"bytes"
	"net"
	"sync"
)

// maxCapture bounds what HeadConn keeps of one exchange while it looks for the final
// response head: the response head limit of docs/spec.md section 3 ("Limits", 1 MiB)
// plus room for interim heads. A head that is not complete by then is not inspected
// (the transport refuses it anyway).
const maxCapture = 1<<20 + 64<<10

// HeadConn is an upstream connection that keeps the Connection field values of the
// final response head of the current exchange, as the upstream sent them.
//
// Why: net/http's transport deletes a response's Connection field when it lists
// "close" (transfer.go, shouldClose), so httputil.ReverseProxy no longer sees the field
// names that Connection nominates and passes them to the client. RFC 9110 section 7.6.1
// (docs/spec.md section 3, "Headers") makes every nominated field hop-by-hop, whatever
// else Connection lists: "Connection: close, X-Hop" removes X-Hop.
//
// Begin starts an exchange (call it when the transport hands the connection to a
// request, before the request is written); Read copies the bytes the transport reads
// until the end of the first head whose status is not 1xx (interim heads are skipped,
// a 101 counts as final), then stops copying. Safe for the transport's read loop and
// the request's goroutine at once.
type HeadConn struct {
	net.Conn

	mu        sync.Mutex
	capturing bool
	buf       []byte   // bytes read since Begin, while capturing
	start     int      // offset in buf of the head being looked for
	conn      []string // Connection values of the final head; nil: none or not read
	finalSeen bool
}

// Begin starts a new exchange: what the previous one recorded is dropped.
func (c *HeadConn) Begin() {
	c.mu.Lock()
	c.capturing, c.buf, c.start, c.conn, c.finalSeen = true, c.buf[:0], 0, nil, false
	c.mu.Unlock()
}

// FinalConnection returns the values of the Connection field lines of the final
// response head read since Begin (surrounding white space trimmed, one entry per line),
// and whether that head has been read whole.
func (c *HeadConn) FinalConnection() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn, c.finalSeen
}

// Read reads from the connection, copying what it reads while the final head of the
// exchange is still incomplete.
func (c *HeadConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.capturing {
			c.capture(p[:n])
		}
		c.mu.Unlock()
	}
	return n, err
}

// capture appends b and looks for the end of heads from c.start on. Called with c.mu.
func (c *HeadConn) capture(b []byte) {
	from := len(c.buf)
	c.buf = append(c.buf, b...)
	for {
		// A head ends with an empty line: CRLF CRLF, or bare LFs (RFC 9112 section 2.2).
		scan := max(c.start, from-3)
		i := headEnd(c.buf[scan:])
		if i < 0 {
			break
		}
		end := scan + i
		head := c.buf[c.start:end]
		if interim(head) {
			c.start, from = end, end
			continue
		}
		c.conn, c.finalSeen = connectionValues(head), true
		c.capturing, c.start = false, 0
		if cap(c.buf) > 64<<10 {
			c.buf = nil // do not keep a large buffer for the connection's lifetime
		} else {
			c.buf = c.buf[:0]
		}
		return
	}
	if len(c.buf) > maxCapture {
		c.capturing, c.buf, c.start = false, nil, 0
	}
}

// headEnd returns the offset just past the first empty line in b ("\n\r\n" or "\n\n"),
// or -1.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// interim reports whether head's status line is a 1xx other than 101 ("HTTP/1.x 1yz").
func interim(head []byte) bool {
	const prefix = len("HTTP/1.x ")
	if len(head) < prefix+3 || !bytes.HasPrefix(head, []byte("HTTP/")) {
		return false
	}
	s := head[prefix : prefix+3]
	return s[0] == '1' && !(s[1] == '0' && s[2] == '1')
}

// connectionValues returns the values of head's Connection field lines (name matched
// case-insensitively), each trimmed of SP/HTAB.
func connectionValues(head []byte) []string {
	var vals []string
	lines := bytes.Split(head, []byte("\n"))
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || !bytes.EqualFold(name, []byte("Connection")) {
			continue
		}
		vals = append(vals, string(bytes.Trim(value, " \t\r")))
	}
	return vals
}
