package upstream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
)

// maxCapture bounds what HeadConn keeps of one exchange while it looks for the final
// response head: the response head limit of docs/spec.md section 3 ("Limits", 1 MiB)
// plus room for interim heads. A head that is not complete by then is not inspected
// (the transport refuses it anyway).
const maxCapture = 1<<20 + 64<<10

// emptyLinesLimit is how many bytes of empty lines HeadConn drops before a status line
// before it refuses the head (ErrHeadSyntax): the Pingora router's client refuses a
// response head once more than 1048575 bytes have been read without it being complete
// (pingora-core v1/common.rs MAX_HEADER_SIZE, docs/spec.md section 3, "Limits"), and
// httparse counts the skipped empty lines in it.
const emptyLinesLimit = 1<<20 - 1

// HeadConn is an upstream connection that keeps the Connection field values of the
// final response head of the current exchange, as the upstream sent them, removes white
// space between a field name and its colon in the response heads it reads, drops the
// Transfer-Encoding and Content-Length lines of heads without content and the
// Content-Length lines of heads with a Transfer-Encoding.
//
// Why the Connection record: net/http's transport deletes a response's Connection field
// when it lists "close" (transfer.go, shouldClose), so httputil.ReverseProxy no longer
// sees the field names that Connection nominates and passes them to the client. RFC 9110
// section 7.6.1 (docs/spec.md section 3, "Headers") makes every nominated field
// hop-by-hop, whatever else Connection lists: "Connection: close, X-Hop" removes X-Hop.
//
// Why the clean-up: RFC 9112 section 5.1, "No whitespace is allowed between the field
// name and colon ... A proxy MUST remove any such whitespace from a response message
// before forwarding the message downstream." net/http drops a field line written
// "Content-Length : 2" (and would then read the body to the close), so HeadConn hands the
// transport "Content-Length: 2" instead. Only SP/HTAB that stand between a field name and
// a colon are removed; the status line and every byte after the final head are passed on
// unchanged (a field line whose name is followed by white space and then something other
// than a colon is refused: below). White space at the end of one read is held back until the next byte shows
// whether a colon follows.
//
// Why the Transfer-Encoding drop: a response whose status has no content (1xx other than
// 101, 204, 304) ends with its head whatever its fields say (RFC 9112 section 6.3, rule
// 1), but net/http's transport refuses any head whose Transfer-Encoding is not exactly
// "chunked" before it looks at the status. HeadConn drops the Transfer-Encoding field
// lines of such heads, so that "304 Not Modified" with "Transfer-Encoding: gzip" is
// forwarded (the field is hop-by-hop: the client gets it from neither router), as the
// Pingora router does. Their Content-Length lines go too when they agree on one number
// (a list "16, 16" included, RFC 9110 section 8.6): since Go 1.26 the transport parses
// the field before it looks at the status and refuses a list, and the router removes the
// field from such responses anyway (docs/spec.md section 3, "Upstream responses"). Lines
// that do not agree on a number stay, and the transport refuses the head, as Pingora's
// client does (pingora-core validates the field before it looks at the status). The name
// of each field line of such a head is held back until its colon shows which field it is.
//
// Why Content-Length lines are held: a Transfer-Encoding overrides a Content-Length (RFC
// 9112 section 6.3 item 3), but net/http's transport refuses a head with differing or
// invalid Content-Length values before it looks at the Transfer-Encoding (and keeps the
// field for a response to HEAD). HeadConn holds a head's Content-Length lines until its
// end and passes them, as its last field lines, only when the head has no
// Transfer-Encoding, as the Pingora router ignores them then.
//
// Why the empty-line drop: httparse, the Pingora router's parser, skips any number of
// empty lines (CRLF or a bare LF) before a status line (src/lib.rs skip_empty_lines),
// where net/http's ReadResponse takes the first line read for the status line and
// refuses an empty one. RFC 9112 section 2.2 asks a server to ignore at least one empty
// line before a request line and says nothing of responses; docs/spec.md section 3
// ("Upstream responses", "Head syntax") reads a response head as httparse does, so
// HeadConn drops those bytes before the status line of every head (interim heads
// included), up to the response head limit (emptyLinesLimit); a CR not followed by LF
// among them is refused (ErrHeadSyntax).
//
// Why the syntax check: every response head (interim heads included) is followed byte by
// byte with httparse's grammar (HeadLexer), and the read fails with ErrHeadSyntax at the
// first byte the Pingora router's parser refuses, where net/http's textproto reader would
// wait for the end of the line (RFC 9112 sections 4 and 5).
//
// Begin starts an exchange (call it when the transport hands the connection to a
// request, before the request is written); Read cleans and copies the bytes the transport
// reads until the end of the first head whose status is not 1xx (interim heads are
// skipped, a 101 counts as final), then passes bytes through untouched. Without Begin
// nothing is cleaned or copied. Safe for the transport's read loop and the request's
// goroutine at once.
type HeadConn struct {
	net.Conn

	mu        sync.Mutex
	capturing bool
	buf       []byte   // cleaned bytes of the exchange's heads read since Begin, while capturing
	start     int      // offset in buf of the head being looked for
	conn      []string // Connection values of the final head; nil: none or not read
	finalSeen bool
	finalTE   bool // the final head has a Transfer-Encoding line and content

	state      lineState // where the next byte read falls in the current head
	pending    []byte    // SP/HTAB after a field name (and a held name), held until the next byte is known
	statusLine bool      // the current head's status line is being read
	skipped    int       // empty-line bytes dropped before the current head's status line
	noContent  bool      // the current head's status is 1xx (not 101), 204 or 304
	heldName   int       // in stHeldName/stHeldWS, length of the field name at the start of pending
	heldCL     []byte    // the current head's Content-Length lines, held until its end
	sawTE      bool      // the current head has a Transfer-Encoding line (kept)
	ready      []byte    // cleaned bytes not yet returned by Read
	out        []byte    // scratch for one Read's cleaned bytes
	readErr    error     // the error of the read whose bytes are in ready, returned after them
	bad        error     // ErrHeadSyntax once a head is refused, ErrChunkFraming once a body is
	lex        HeadLexer // the syntax of the head being read, byte by byte (headlex.go)
	headReq    bool      // the exchange's request is a HEAD (HeadRequest, overread.go)
	overread   bool      // bytes followed a final head that ends its response: the connection ends there
	chunks     chunkScan // the framing of the final response's chunked body (chunked.go)
	unasked    bool      // a later read brought such bytes, or bytes before a reused exchange's first write

	checkWrite bool // the next Write runs the reuse check first (CheckBeforeWrite)
	stale      bool // the reuse check refused the connection (idlecheck.go)

	targetFrom string // the request line's target as net/http writes it (RewriteTarget, target.go)
	targetTo   string // the target the request line carries instead
}

// ErrHeadSyntax is the read error of a HeadConn once a response head (interim or final)
// has a byte that cannot continue it (RFC 9112 section 4: status-line = HTTP-version SP
// status-code SP [ reason-phrase ], HTTP-version "HTTP/1.0" or "HTTP/1.1"; section 5:
// field lines; as httparse reads them for the Pingora router's client: HeadLexer): "dy"
// where a status line must start, "HTTP/1.1 2x", another version ("HTTP/2.0 103",
// "HTTP/1.2 304": net/http reads any "HTTP/x.y" and would pass such a 1xx to
// ReverseProxy, which forwards it), a CTL in a field value, a CR not followed by LF. net/http's textproto reader refuses those only once it has read the whole line,
// so an upstream that sends "dy" after a 103 and keeps the connection open made the
// router wait until request_ms (504); the Pingora router's parser refuses at the byte
// (502 upstream_protocol_error). The bytes up to and including the refused one are
// delivered first, so that the transport's read fails inside a response (not a retry of
// a stale connection) whatever the byte's place.
var ErrHeadSyntax = errors.New("upstream sent a response head byte that cannot continue its syntax")

// lineState is where HeadConn's cleaning is within a response head.
type lineState uint8

const (
	stRest      lineState = iota // status line, field value, or a line left as is: copy to LF
	stLineStart                  // first byte of a line after the status line
	stLineCR                     // a CR opened the line: an LF now ends the head
	stName                       // inside a field name
	stNameWS                     // SP/HTAB after a field name (held in pending)
	stHeldName                   // inside a field name that may be Content-Length or Transfer-Encoding (held in pending)
	stHeldWS                     // SP/HTAB after a held field name (held in pending)
	stDrop                       // a Transfer-Encoding line of a head without content: dropped to its LF
	stHoldLine                   // a Content-Length line: copied to heldCL to its LF
)

// Begin starts a new exchange: what the previous one recorded is dropped.
func (c *HeadConn) Begin() {
	c.mu.Lock()
	c.capturing, c.buf, c.start, c.conn, c.finalSeen, c.finalTE = true, c.buf[:0], 0, nil, false, false
	c.headReq = false
	c.targetFrom, c.targetTo = "", ""
	c.chunks = chunkScan{}
	c.state, c.statusLine, c.noContent, c.skipped = stRest, true, false, 0
	c.lex = ResponseHead()
	c.ready = append(c.ready, c.heldCL...) // not expected either
	c.heldCL, c.sawTE = c.heldCL[:0], false
	c.ready = append(c.ready, c.pending...) // not expected: a head cut short by Begin
	c.pending = c.pending[:0]
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

// FinalTransferEncoding reports whether the final response head read since Begin has a
// Transfer-Encoding field line and a status with content (not 1xx, 204, 304). net/http's
// transport deletes the field of an HTTP/1.0 response and reads its body to the close;
// the router refuses such a response (RFC 9112 section 6.1: faulty framing), as the
// Pingora router does, and asks this to know the field was there.
func (c *HeadConn) FinalTransferEncoding() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finalSeen && c.finalTE
}

// Read reads from the connection into p. While the final head of the exchange is
// incomplete, the bytes are cleaned (white space before a field line's colon removed)
// and copied; cleaned bytes that do not fit in p are returned by the next Read. A read
// that yields only held-back white space reads again rather than return 0 bytes.
func (c *HeadConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	if len(c.ready) > 0 {
		n := copy(p, c.ready)
		c.ready = c.ready[n:]
		var err error
		if len(c.ready) == 0 {
			err, c.readErr = c.readErr, nil
		}
		c.mu.Unlock()
		return n, err
	}
	if c.bad != nil {
		c.mu.Unlock()
		return 0, c.bad
	}
	if c.overread {
		c.mu.Unlock()
		return 0, io.EOF
	}
	c.mu.Unlock()
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		if n > 0 && c.unsolicitedRead() {
			// No request asked for these bytes (overread.go): dropped, the connection ends.
			c.unasked, c.overread = true, true
			c.mu.Unlock()
			return 0, io.EOF
		}
		if !c.capturing && len(c.pending) == 0 {
			k, ok := c.chunks.scan(p[:n]) // p[:k]: the bytes to deliver (chunked.go)
			if !ok {
				err, c.bad = ErrChunkFraming, ErrChunkFraming
			}
			c.mu.Unlock()
			if k == 0 && n > 0 && err == nil {
				continue // only bytes of a long chunk-size line, dropped: read on
			}
			return k, err
		}
		c.out = c.clean(c.out[:0], p[:n])
		if c.bad != nil {
			err = c.bad
		}
		if c.overread && err == nil {
			err = io.EOF // bytes behind a response that ended with its head (overread.go)
		}
		if err != nil {
			c.out = c.flushHeld(c.out) // the head ends early: give back what was held
		}
		m := copy(p, c.out)
		c.ready = append(c.ready[:0], c.out[m:]...)
		if len(c.ready) > 0 && err != nil {
			c.readErr, err = err, nil
		}
		c.mu.Unlock()
		if m > 0 || err != nil {
			return m, err
		}
	}
}

// clean appends to out the bytes of b as they are to be delivered, copying the head
// bytes into c.buf and recording the final head when it ends. Called with c.mu.
func (c *HeadConn) clean(out, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		if c.bad != nil {
			return out // the connection is refused: nothing after the bad status line
		}
		if !c.capturing {
			out = c.flushHeld(out)
			if c.finalSeen && c.endsWithHead() {
				c.overread = true // b[i:] is no response: dropped, the connection ends here
				return out
			}
			k, ok := c.chunks.scan(b[i:])
			if !ok {
				c.bad = ErrChunkFraming // the bytes before the bad one are delivered first
			}
			return append(out, b[i:i+k]...)
		}
		ch := b[i]
		if !c.lex.Next(ch) {
			// The byte httparse refuses: what was held goes out, then the byte, then the
			// error (Read).
			c.bad = ErrHeadSyntax
			return append(c.flushHeld(out), ch)
		}
		if c.statusLine && len(c.buf) == c.start && (ch == '\r' || ch == '\n') {
			// An empty line before the status line (the lexer has checked that a CR is
			// followed by LF): dropped, as httparse skips it.
			if c.skipped++; c.skipped > emptyLinesLimit {
				c.bad = ErrHeadSyntax
				return out
			}
			continue
		}
		switch c.state {
		case stDrop:
			if ch == '\n' {
				c.state = stLineStart
			}
			continue
		case stHoldLine:
			c.heldCL = append(c.heldCL, ch)
			if ch == '\n' {
				c.state = stLineStart
			}
			continue
		case stHeldName, stHeldWS:
			out = c.held(out, ch)
			continue
		case stLineStart:
			switch lower(ch) {
			case 'c', 't':
				c.pending = append(c.pending[:0], ch)
				c.heldName, c.state = 1, stHeldName
				continue
			case '\r', '\n':
				// The empty line that ends the head: its Content-Length lines go out now,
				// unless a Transfer-Encoding overrides them or the head has no content
				// and they agree on one number.
				if !c.sawTE && !(c.noContent && oneLength(c.heldCL)) {
					out = append(out, c.heldCL...)
					c.buf = append(c.buf, c.heldCL...)
				}
				c.heldCL = c.heldCL[:0]
			}
		}
		if c.state == stNameWS {
			if ch == ' ' || ch == '\t' {
				c.pending = append(c.pending, ch)
				continue
			}
			if ch != ':' { // not white space before a colon: leave the line as is
				out = append(out, c.pending...)
				c.buf = append(c.buf, c.pending...)
				c.state = stRest
			}
			c.pending = c.pending[:0]
		}
		out = append(out, ch)
		c.buf = append(c.buf, ch)
		switch c.state {
		case stRest:
			if ch == '\n' {
				c.state = stLineStart
				if c.statusLine {
					c.statusLine, c.noContent = false, noContentStatus(c.buf[c.start:])
				}
			}
		case stLineStart, stLineCR:
			switch {
			case ch == '\n':
				c.headEnded()
			case ch == '\r' && c.state == stLineStart:
				c.state = stLineCR
			case ch == ':' || ch == ' ' || ch == '\t' || ch == '\r':
				c.state = stRest
			default:
				c.state = stName
			}
		case stNameWS: // the colon that ended the white space
			c.state = stRest
		case stName:
			switch ch {
			case ' ', '\t':
				out, c.buf = out[:len(out)-1], c.buf[:len(c.buf)-1]
				c.pending = append(c.pending, ch)
				c.state = stNameWS
			case ':':
				c.state = stRest
			case '\n':
				c.state = stLineStart
			}
		}
		if c.capturing && len(c.buf) > maxCapture {
			c.capturing, c.buf, c.start = false, nil, 0
		}
	}
	return out
}

// held follows byte ch of a field line whose name, held in c.pending, may still be
// Content-Length or Transfer-Encoding: a name that cannot goes out and streams on; a
// Transfer-Encoding line of a head without content is dropped, another is recorded; a
// Content-Length line is moved to heldCL. Called with c.mu.
func (c *HeadConn) held(out []byte, ch byte) []byte {
	emit := func(b ...byte) {
		out = append(out, b...)
		c.buf = append(c.buf, b...)
	}
	name := c.pending[:c.heldName]
	switch {
	case ch == ':':
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")) && c.noContent:
			c.sawTE = true // overrides the Content-Length lines too, as in a head with content
			c.pending, c.state = c.pending[:0], stDrop
			return out
		case bytes.EqualFold(name, []byte("Content-Length")):
			c.heldCL = append(append(c.heldCL, name...), ch) // white space before the colon removed
			c.pending, c.state = c.pending[:0], stHoldLine
			return out
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			c.sawTE = true
		}
		emit(name...) // white space before the colon removed
		emit(ch)
		c.pending, c.state = c.pending[:0], stRest
	case ch == ' ' || ch == '\t':
		c.pending, c.state = append(c.pending, ch), stHeldWS
	case c.state == stHeldWS || ch == '\n':
		// Not white space before a colon, or a line without one: left as it is.
		emit(c.pending...)
		emit(ch)
		c.pending, c.state = c.pending[:0], stRest
		if ch == '\n' {
			c.state = stLineStart
		}
	default:
		c.pending = append(c.pending, ch)
		c.heldName++
		if !heldPrefix(c.pending) {
			// Neither field: the name goes out as it is and streams on (stName).
			emit(c.pending...)
			c.pending, c.state = c.pending[:0], stName
		}
	}
	return out
}

// heldPrefix reports whether name is, ASCII case ignored, a prefix of Content-Length or
// Transfer-Encoding.
func heldPrefix(name []byte) bool {
	for _, f := range [...]string{"content-length", "transfer-encoding"} {
		if len(name) <= len(f) && bytes.EqualFold(name, []byte(f[:len(name)])) {
			return true
		}
	}
	return false
}

// flushHeld appends to out what is held back (Content-Length lines, then the line being
// read) and forgets it. Called with c.mu.
func (c *HeadConn) flushHeld(out []byte) []byte {
	out = append(append(out, c.heldCL...), c.pending...)
	c.heldCL, c.pending = c.heldCL[:0], c.pending[:0]
	if c.state == stHeldName || c.state == stHeldWS || c.state == stHoldLine {
		c.state = stRest
	}
	return out
}

// oneLength reports whether the Content-Length lines in held ("Content-Length: v\r\n"
// each) agree on one number: every comma-separated element of every value, trimmed of
// SP/HTAB, is 1*DIGIT (below 2^64) and all are equal. Pingora's client accepts the same
// values (pingora-core content_length_parse_all). No line: false.
func oneLength(held []byte) bool {
	var want uint64
	seen := false
	for _, line := range bytes.SplitAfter(held, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		_, value, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":"))
		for _, el := range bytes.Split(value, []byte(",")) {
			// base 10: digits only, no sign, no underscore
			n, err := strconv.ParseUint(string(bytes.Trim(el, " \t")), 10, 64)
			if err != nil || (seen && n != want) {
				return false
			}
			want, seen = n, true
		}
	}
	return seen
}

func lower(ch byte) byte {
	if 'A' <= ch && ch <= 'Z' {
		return ch + 'a' - 'A'
	}
	return ch
}

// noContentStatus reports whether head's status line ("HTTP/1.x NNN") has a status whose
// response ends with its head whatever its fields say (RFC 9112 section 6.3, rule 1): 1xx
// (101 excepted: its connection becomes a tunnel), 204, 304.
func noContentStatus(head []byte) bool {
	const prefix = len("HTTP/1.x ")
	if len(head) < prefix+3 || !bytes.HasPrefix(head, []byte("HTTP/")) {
		return false
	}
	switch s := string(head[prefix : prefix+3]); {
	case s == "204", s == "304":
		return true
	case s[0] == '1' && s != "101":
		return true
	}
	return false
}

// headEnded handles the empty line that ends the head at c.buf[c.start:]: an interim
// head starts the next one, the final head is recorded and ends the capture. Called with
// c.mu.
func (c *HeadConn) headEnded() {
	head := c.buf[c.start:]
	if interim(head) {
		c.start, c.state, c.statusLine, c.noContent, c.sawTE = len(c.buf), stRest, true, false, false
		c.skipped = 0
		c.lex = ResponseHead()
		return
	}
	c.conn, c.finalSeen, c.finalTE = connectionValues(head), true, c.sawTE && !c.noContent
	if c.finalTE && !c.headReq && bytes.HasPrefix(head, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(head[len("HTTP/1.1 "):], []byte("101")) {
		// A chunked body follows (the transport refuses any other Transfer-Encoding).
		c.chunks.start()
	}
	c.capturing, c.start = false, 0
	if cap(c.buf) > 64<<10 {
		c.buf = nil // do not keep a large buffer for the connection's lifetime
	} else {
		c.buf = c.buf[:0]
	}
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
