package proxy

import (
	"bytes"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/upstream"
)

// The request gate. net/http answers a request head it refuses itself, before any
// handler runs (its own text/plain 400, 431, 501, 505 and 417), and it accepts, hiding the
// fact from handlers, heads the contract refuses (Content-Length with Transfer-Encoding,
// Transfer-Encoding in HTTP/1.0, folded header lines). So that every refusal is the
// router's own answer (docs/spec.md section 3: status, X-Router-Error, JSON body, counted
// in router_errors_total), the connection wrapper of conn.go reads ahead of net/http and
// follows the HTTP/1.1 framing of the byte stream (request heads, fixed and chunked bodies):
//
//   - a request head is held back until it is complete and has been checked (checkRequestLine,
//     checkField, endHead: the rules net/http applies before the handler, plus the
//     router's); body bytes pass at once, and a head that arrives whole in one read is
//     handed over in place, without a copy;
//   - in a chunked body, a chunk-size line is held until its line end (net/http gets its
//     size digits and CRLF, extensions and BWS dropped) and the trailer section is
//     checked by the gate (trailerLexer) and never handed over: net/http gets an empty
//     section, or one its chunked reader refuses in place of a refused one;
//   - a head that passes is handed to net/http byte for byte;
//   - a head that is refused never reaches net/http: in its place net/http gets a stand-in
//     head ("GET / HTTP/1.1", or HTTP/1.0 where the answer says HTTP/1.0: fault, refuse;
//     no body), and the handler, which counts the requests of its connection
//     (refusedHead), answers the stand-in with the refusal's code and Connection: close.
//     Everything the client sends after the refused head is discarded (the lingering
//     close of conn.go then ends the connection with FIN).
//
// Limit: after an HTTP/1.1 request that asks for an Upgrade the gate stops following the
// stream (it may have become a tunnel); net/http's own rules apply to what follows on that
// connection. An HTTP/1.0 request is never an upgrade (the router removes Upgrade).

// MaxHeadBytes is the contract's only request-head limit (docs/spec.md section 3,
// "Headers"): a head whose request line, header lines and final empty line (CRLF
// included; empty lines before the request line not counted) are more than MaxHeadBytes
// bytes is answered 431 request_headers_too_large. There is no limit on the number of
// header lines.
const MaxHeadBytes = 64 << 10

// ServerMaxHeaderBytes is the http.Server.MaxHeaderBytes to use with Listener: above
// MaxHeadBytes plus net/http's read-ahead (one 4 KiB buffer), so that net/http's own 431
// never comes before the gate's.
const ServerMaxHeaderBytes = 2 * MaxHeadBytes

// maxBodyLineBytes bounds a chunk-size or trailer line the gate copies to parse; past it
// the gate stops following the stream (net/http's chunked reader refuses such a body).
const maxBodyLineBytes = 1 << 20

// directReadMin: a Read with a smaller buffer (net/http's 1-byte background read, made
// for every request while its handler runs) reads from the socket into a small buffer
// of this size from smallBufs instead.
const directReadMin = 512

// smallBufs holds the gate's small read buffers (directReadMin bytes): one is taken for a
// small Read or a discard and given back after it, so that a keep-alive connection waiting
// idle for its next request holds none (issue 14: 512 bytes less per idle connection; the
// Pingora router likewise frees its header buffer while idle). Shared by every connection
// like net/http's own pooled bufio buffers; a buffer holds nothing between uses.
var smallBufs = sync.Pool{New: func() any { return new([directReadMin]byte) }}

// keepBufBytes: a pending or hold buffer that grew past this (a large head) is dropped
// once empty, so that an idle connection does not keep it.
const keepBufBytes = 16 << 10

type scanState uint8

const (
	sHead scanState = iota
	sFixed
	sChunkSize
	sChunkData
	sChunkDataEnd
	sTrailers
	sOff     // after an upgrade, or a chunked body the gate cannot follow: pass through
	sRefused // a head was refused: nothing more reaches net/http
)

// fault says who, in the Pingora router, refuses a head the gate refuses, which decides
// the version of the answer's status line (docs/spec.md section 3, "HTTP/1.0 clients";
// docs/design-go.md, "The request gate"): Pingora's own HTTP/1 parser answers HTTP/1.1
// whatever the head said, the router's request_filter answers in the head's version.
type fault uint8

const (
	faultNone fault = iota
	// faultParser: refused by Pingora's parser (httparse, HttpSession::read_request and
	// validate_request in rust-pingora/vendor/pingora-core): request-line syntax, field-line
	// syntax, a repeated Host, '@' in Host or in an absolute-form authority, an authority the
	// http crate cannot parse, Content-Length that is not one number, Transfer-Encoding in
	// HTTP/1.0, a CONNECT or non-http absolute-form authority that differs from Host.
	// Answered HTTP/1.1.
	faultParser
	// faultRouter: refused by the Pingora router's request_filter (target form, '%' in the
	// path, CONNECT, a Host value, an empty Host, a Content-Length list, Expect, 431).
	// Answered HTTP/1.0 to an HTTP/1.0 head.
	faultRouter
)

// refusal is a refused head as the handler needs it.
type refusal struct {
	code   errcode.Code
	method string // from the request line, "" when it had none that could be split
	path   string // the request-target up to '?'
	http10 bool   // the answer's status line says HTTP/1.0 (an HTTP/1.0 head, faultRouter)
}

// headCheck is what the gate has learnt of the head being read. Values are checked as
// their line completes; nothing here points into a read buffer.
type headCheck struct {
	bytes     int  // head bytes so far, request line included
	lineStart int  // offset in the head of the line being read
	rlLen     int  // length of the request line (without its line end)
	started   bool // the request line has been read
	http10    bool // HTTP/1.0 (no Host needed; Transfer-Encoding refused)
	// routerFault: an HTTP/1.0 head has a faultRouter fault; it is refused at its end
	// (or at the size limit), unless a faultParser fault comes first: Pingora's parser
	// sees the whole head before the router's checks run.
	routerFault bool
	connect     bool // the method is CONNECT
	otherAbs    bool // absolute-form of a scheme outside the http family (Host must equal its authority)
	hosts       int
	hostEmpty   bool // the Host field is empty
	absolute    bool // the target is absolute-form with an http/https/ws/wss scheme and no userinfo
	cls         int  // Content-Length fields
	clDiffer    bool // two Content-Length fields with different values
	tes         int  // Transfer-Encoding fields
	teChunked   bool // the first Transfer-Encoding field is exactly "chunked"
	trailer     bool // a Trailer field names Transfer-Encoding, Trailer or Content-Length
	expect      bool // an Expect field has been seen (only the first counts)
	upgrade     bool // Connection names upgrade
	conns       int  // Connection fields
	kaFirst     bool // the first Connection field lists keep-alive
	kaLater     bool // a later Connection field lists keep-alive
	connClose   bool // a Connection field lists close
	// the head's syntax byte by byte (the zero value: a request head)
	lex upstream.HeadLexer
}

// scanConn is an accepted client connection: the gate (this file) between the socket
// and net/http, and the lingering close (conn.go).
type scanConn struct {
	net.Conn

	lingerTime  time.Duration // see Listener
	lingerBytes int64
	closeOnce   sync.Once

	// Gate state, touched only by Read (net/http reads one call at a time).
	state     scanState
	pending   []byte // checked bytes net/http has not taken yet
	pendOff   int
	hold      []byte             // the head being read, when it did not arrive within one read
	line      []byte             // a chunk-size line, or the end of chunk data, split across reads
	chunkLine upstream.ChunkLine // the syntax of the chunk-size line being read
	trailers  trailerLexer
	h         headCheck
	clFirst   []byte // the first Content-Length value of the head (reused)
	hostFirst []byte // the first Host value of the head (reused)
	tgtAuth   []byte // the authority of a CONNECT or non-http absolute-form target (reused)
	remaining int64  // bytes left in a fixed body or chunk
	delivered uint64 // heads handed to net/http, the stand-in included
	// addKeepAlive: the head that just passed is HTTP/1.0 and lists keep-alive in a
	// Connection field other than the first (and close in none); see keepAliveFirst.
	addKeepAlive bool

	// Shared with the handler (net/http's serving goroutine).
	refusedSeq atomic.Uint64 // ordinal of the stand-in head on this connection; 0: none
	refused    refusal       // written before refusedSeq is stored
	served     uint64        // requests the handler has seen (serving goroutine only)
}

// refusedHead reports whether r is the stand-in for a head the gate refused, and which
// (nil: not a stand-in). It must be called once for every request the handler gets, in
// order.
func refusedHead(r *http.Request) *refusal {
	sc, ok := r.Context().Value(connKey{}).(*scanConn)
	if !ok {
		return nil
	}
	sc.served++
	if seq := sc.refusedSeq.Load(); seq != 0 && seq == sc.served {
		return &sc.refused
	}
	return nil
}

// Read hands net/http the bytes the gate has passed (see the top of this file).
func (c *scanConn) Read(p []byte) (int, error) {
	for {
		if c.pendOff < len(c.pending) {
			n := copy(p, c.pending[c.pendOff:])
			c.pendOff += n
			if c.pendOff == len(c.pending) {
				c.pending, c.pendOff = c.pending[:0], 0
				if cap(c.pending) > keepBufBytes {
					c.pending = nil
				}
			}
			return n, nil
		}
		switch c.state {
		case sOff:
			return c.Conn.Read(p)
		case sRefused:
			return 0, c.discard()
		}
		var n, k int
		var err error
		if len(p) >= directReadMin {
			n, err = c.Conn.Read(p)
			if n > 0 {
				k = c.process(p[:n], true)
			}
		} else {
			small := smallBufs.Get().(*[directReadMin]byte)
			n, err = c.Conn.Read(small[:])
			if n > 0 {
				c.process(small[:n], false) // copies what it keeps
			}
			smallBufs.Put(small)
		}
		if k > 0 {
			return k, nil // an error recurs on the next read
		}
		if c.pendOff < len(c.pending) {
			continue
		}
		if err != nil {
			return 0, err
		}
		// Everything read belongs to a head not yet complete: read on.
	}
}

// discard reads and drops what the client sends after a refused head, until the read
// fails (net/http aborting its background read, the client's close, the lingering close).
func (c *scanConn) discard() error {
	small := smallBufs.Get().(*[directReadMin]byte)
	defer smallBufs.Put(small)
	for {
		if _, err := c.Conn.Read(small[:]); err != nil {
			return err
		}
	}
}

// process runs the gate over b, just read. It returns k: b[:k] is to be handed to
// net/http as it is (only when direct, b being net/http's own buffer); bytes after
// it that pass are appended to c.pending, the head being read is kept in c.hold.
func (c *scanConn) process(b []byte, direct bool) int {
	k := 0
	inPlace := direct && len(c.pending) == 0 && len(c.hold) == 0 && len(c.line) == 0
	hs := -1 // start in b of the head being read in place
	i := 0
	for i < len(b) {
		switch c.state {
		case sOff:
			if inPlace {
				return len(b)
			}
			c.pending = append(c.pending, b[i:]...)
			return k
		case sRefused:
			return k
		case sFixed, sChunkData:
			m := int64(len(b) - i)
			if m > c.remaining {
				m = c.remaining
			}
			k = c.pass(b, i, i+int(m), k, inPlace)
			i += int(m)
			c.remaining -= m
			if c.remaining == 0 {
				if c.state == sFixed {
					c.state = sHead
				} else {
					c.state = sChunkDataEnd
				}
			}
		case sChunkSize:
			// A chunk-size line is followed byte by byte (upstream.ChunkLine: RFC 9112
			// section 7.1.1's extension syntax, CRLF) and held until its LF (it may come
			// over several reads), so that net/http gets the size digits and CRLF alone
			// whatever the reads. A refused line never reaches net/http: it gets
			// refusedChunkLine in its place at once, without waiting for a line end.
			n, verdict := c.chunkLine.Scan(b[i:])
			switch verdict {
			case upstream.ChunkLineMore:
				c.line = append(c.line, b[i:]...)
				i = len(b)
				if len(c.line) > maxBodyLineBytes {
					c.pending = append(c.pending, c.line...)
					c.line = c.line[:0]
					c.state = sOff
				}
				continue
			case upstream.ChunkLineRefused:
				c.chunkLine = upstream.ChunkLine{}
				c.line = c.line[:0]
				c.pending = append(c.pending, refusedChunkLine...)
				inPlace = false // what follows passes after the substitute
				i += n + 1
				c.state = sOff
				continue
			}
			c.chunkLine = upstream.ChunkLine{}
			end := i + n
			whole := b[i:end] // the line, CRLF included
			if len(c.line) > 0 {
				c.line = append(c.line, whole...)
				whole = c.line
			}
			d := 0
			for d < len(whole) && isHexDigit(whole[d]) {
				d++
			}
			line := whole[:d] // the size digits
			switch {
			case d < len(whole)-2:
				// Extensions or BWS after the size: net/http gets the size digits and the
				// CRLF (it ignores extensions, as the Pingora router does, but refuses a
				// line of 4096 bytes and counts every line's bytes in its 16 KiB budget
				// of non-data, where the Pingora router takes up to
				// upstream.MaxChunkLineBytes per line and has no budget).
				c.pending = append(append(c.pending, line...), '\r', '\n')
				inPlace = false // what follows passes after the shortened line
			case len(c.line) == 0:
				k = c.pass(b, i, end, k, inPlace)
			default:
				c.pending = append(c.pending, c.line...)
			}
			i = end
			c.chunkSizeLine(line)
			c.line = c.line[:0]
		case sChunkDataEnd:
			// The line end after chunk data passes as it comes (net/http checks it is CRLF).
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				k = c.pass(b, i, len(b), k, inPlace)
				i = len(b)
				continue
			}
			end := i + j + 1
			k = c.pass(b, i, end, k, inPlace)
			i = end
			c.state = sChunkSize
		case sTrailers:
			// The trailer section is checked here and never reaches net/http (the router
			// forwards no request trailers): net/http gets an empty one, or, for a section
			// the contract refuses, one its chunked reader refuses, which the handler
			// answers 400 bad_request as any malformed chunked body.
			n, verdict := c.trailers.scan(b[i:])
			i += n
			inPlace = false // what follows passes after the dropped bytes
			switch verdict {
			case trailersEnd:
				c.pending = append(c.pending, '\r', '\n')
				c.state = sHead
			case trailersRefused:
				c.pending = append(c.pending, refusedTrailerSection...)
				c.state = sOff
			}
		case sHead:
			j := bytes.IndexByte(b[i:], '\n')
			end := len(b)
			if j >= 0 {
				end = i + j + 1
			}
			if inPlace && hs < 0 {
				hs = i
			}
			if !inPlace {
				c.hold = append(c.hold, b[i:end]...)
			}
			c.h.bytes += end - i
			start := i
			i = end
			if c.h.bytes > MaxHeadBytes {
				// The Pingora router's request_filter checks the size first: 431 in the
				// head's version, once the request line (and so the version) is known.
				c.refuse(errcode.RequestHeadersTooLarge, c.headSoFar(b, hs, i, inPlace), faultRouter)
				continue
			}
			if _, ok := c.h.lex.Scan(b[start:end]); !ok {
				// A byte no completion of the line can make valid: refused now, as the
				// Pingora router's parser does on the read that brings it, not at the
				// line's end (which may never come).
				head := c.headSoFar(b, hs, i, inPlace)
				if !c.h.started {
					c.h.started, c.h.rlLen = true, len(trimCR(bytes.TrimSuffix(head, []byte{'\n'})))
				}
				c.refuse(errcode.BadRequest, head, faultParser)
				continue
			}
			if j < 0 {
				continue
			}
			head := c.headSoFar(b, hs, i, inPlace)
			line := trimCR(head[c.h.lineStart : len(head)-1])
			c.h.lineStart = c.h.bytes
			if !c.h.started {
				if len(line) == 0 {
					// Empty lines before a request line are dropped (RFC 9112 section 2.2).
					if inPlace {
						inPlace, hs = false, -1
					} else {
						c.hold = c.hold[:0]
					}
					c.h.bytes, c.h.lineStart = 0, 0
					continue
				}
				c.h.started, c.h.rlLen = true, len(line)
				c.fault(c.checkRequestLine(line), head)
				continue
			}
			if len(line) > 0 {
				c.fault(c.checkField(line), head)
				continue
			}
			if f := c.endHead(); f != faultNone {
				c.refuse(errcode.BadRequest, head, f)
				continue
			}
			if c.addKeepAlive {
				c.addKeepAlive = false
				c.pending = keepAliveFirst(c.pending, head)
				if inPlace {
					inPlace, hs = false, -1 // what follows passes after the rewritten head
				} else {
					c.hold = c.hold[:0]
					if cap(c.hold) > keepBufBytes {
						c.hold = nil
					}
				}
				continue
			}
			if inPlace {
				k, hs = i, -1
			} else {
				c.pending = append(c.pending, c.hold...)
				c.hold = c.hold[:0]
				if cap(c.hold) > keepBufBytes {
					c.hold = nil
				}
			}
		}
	}
	if hs >= 0 && c.state == sHead {
		c.hold = append(c.hold, b[hs:]...) // the head goes on in the next read
	}
	return k
}

// keepAliveFirst appends head (a complete HTTP/1.0 request head) to dst with a line
// "Connection: keep-alive" inserted after its request line. net/http decides whether an
// HTTP/1.0 connection persists from the first Connection field only
// (Request.wantsHttp10KeepAlive), while the option counts in any of its lines (RFC 9110
// section 5.3: the lines are one list; RFC 9112 section 9.3; docs/spec.md section 3,
// "HTTP/1.0 clients"), as in the Pingora router. Connection and the fields it nominates
// are hop-by-hop, so nothing of the added line goes upstream.
func keepAliveFirst(dst, head []byte) []byte {
	rl := bytes.IndexByte(head, '\n') + 1
	dst = append(dst, head[:rl]...)
	dst = append(dst, "Connection: keep-alive\r\n"...)
	return append(dst, head[rl:]...)
}

// pass lets b[from:to] through: in place when inPlace (then from == k), else queued.
func (c *scanConn) pass(b []byte, from, to, k int, inPlace bool) int {
	if inPlace {
		return to
	}
	c.pending = append(c.pending, b[from:to]...)
	return k
}

// headSoFar is the head being read, up to b[:i].
func (c *scanConn) headSoFar(b []byte, hs, i int, inPlace bool) []byte {
	if inPlace && hs >= 0 {
		return b[hs:i]
	}
	return c.hold
}

// trimCR drops one CR before the line's LF (already cut off): bare LF ends a line too.
func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// fault acts on a fault found in a line of the head: a faultParser one refuses the head
// now; a faultRouter one refuses an HTTP/1.1 head now (its answer says HTTP/1.1 either
// way) and is held for an HTTP/1.0 head until its end (endHead), where a faultParser
// fault found after it wins, as in the Pingora router.
func (c *scanConn) fault(f fault, head []byte) {
	switch {
	case f == faultNone:
	case f == faultRouter && c.h.http10:
		c.h.routerFault = true
	default:
		c.refuse(errcode.BadRequest, head, f)
	}
}

// refuse replaces the head being read (head: its bytes so far) by the stand-in and
// records why for the handler; from here on nothing more reaches net/http. f decides the
// answer's version: HTTP/1.0 for a faultRouter refusal of an HTTP/1.0 head, else HTTP/1.1.
func (c *scanConn) refuse(code errcode.Code, head []byte, f fault) {
	var rf refusal
	rf.code = code
	rf.http10 = f == faultRouter && c.h.started && c.h.http10
	if c.h.started {
		rl := head[:c.h.rlLen]
		if m, rest, ok := bytes.Cut(rl, []byte{' '}); ok {
			target, _, _ := bytes.Cut(rest, []byte{' '})
			path, _, _ := bytes.Cut(target, []byte{'?'})
			rf.method, rf.path = string(m), string(path)
		}
	}
	// The stand-in's version is the answer's (net/http answers in the request's version):
	// HTTP/1.0 where the Pingora router's request_filter answers an HTTP/1.0 head, else
	// HTTP/1.1, as Pingora's own 400 says (fault). Connection: close (the handler) ends
	// the connection.
	// A refused HEAD gets a HEAD stand-in, so that net/http sends the answer's head without
	// its document (RFC 9110 section 9.3.2), as the Pingora router does.
	const standIn11 = "GET / HTTP/1.1\r\nHost: refused.invalid\r\n\r\n"
	const standIn10 = "GET / HTTP/1.0\r\nHost: refused.invalid\r\n\r\n"
	const standInHead11 = "HEAD / HTTP/1.1\r\nHost: refused.invalid\r\n\r\n"
	const standInHead10 = "HEAD / HTTP/1.0\r\nHost: refused.invalid\r\n\r\n"
	c.state = sRefused
	c.hold = c.hold[:0]
	isHead := rf.method == "HEAD"
	switch {
	case rf.http10 && isHead:
		c.pending = append(c.pending, standInHead10...)
	case rf.http10:
		c.pending = append(c.pending, standIn10...)
	case isHead:
		c.pending = append(c.pending, standInHead11...)
	default:
		c.pending = append(c.pending, standIn11...)
	}
	c.delivered++
	c.refused = rf
	c.refusedSeq.Store(c.delivered)
}

// checkRequestLine checks the request line: method a token, version exactly HTTP/1.0 or
// HTTP/1.1, a target validTarget accepts. It refuses (the router's bad_request) all that
// net/http's readRequest refuses (its 400 and 505), what the Pingora router's parser
// refuses besides (other HTTP/1.x versions, target bytes, authorities), CONNECT and target
// forms out of place; it records the version. The fault says which part of the Pingora
// router refuses the line (fault).
func (c *scanConn) checkRequestLine(line []byte) fault {
	method, rest, ok1 := bytes.Cut(line, []byte{' '})
	target, proto, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || !isToken(method) {
		return faultParser // httparse: method token, one SP between the parts
	}
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		c.h.http10 = true
	default:
		// Exactly HTTP/1.0 or HTTP/1.1, as the Pingora router's parser (httparse
		// parse_version) accepts: HTTP/1.2 .. 1.9, which net/http would serve as
		// HTTP/1.1 (RFC 9112 section 2.3), are refused too, and so is everything
		// net/http answers 400 (malformed) or 505 (HTTP/0.x, 2 and later).
		return faultParser
	}
	if !targetBytesValid(target) {
		return faultParser // httparse parse_uri
	}
	if !pathAndQueryValid(targetPathAndQuery(target)) {
		return faultParser // pingora-http set_raw_path: http::uri::PathAndQuery
	}
	c.h.connect = string(method) == http.MethodConnect
	if f := c.targetAuthority(target); f != faultNone {
		return f
	}
	c.h.absolute = absoluteHTTPTarget(target)
	// CONNECT is refused whatever its target (the router proxies no tunnels, RFC 9110
	// section 9.3.6), and a target form out of place (targetFormAllowed) too, as the
	// Pingora router's request_filter does.
	if c.h.connect || !targetFormAllowedBytes(method, target) || !targetSyntaxValid(target) {
		return faultRouter
	}
	return faultNone
}

// targetAuthority applies to target the authority checks of Pingora's
// validate_request_authority (pingora-core protocols/http/authority.rs, over pingora-http's
// raw_target_authority): for CONNECT, userinfo or more than one port separator in the
// authority; for an absolute-form target, a scheme that is not an RFC 3986 scheme before
// "//", userinfo, an http-family authority the http crate cannot parse (httpAuthorityValid).
// It keeps the authority that endHead compares with Host (CONNECT, other schemes).
func (c *scanConn) targetAuthority(target []byte) fault {
	c.h.otherAbs, c.tgtAuth = false, c.tgtAuth[:0]
	if c.h.connect {
		auth := target
		if i := bytes.IndexAny(target, "/?#"); i >= 0 {
			auth = target[:i]
		}
		if bytes.IndexByte(auth, '@') >= 0 || ambiguousPortSuffix(auth) {
			return faultParser
		}
		c.tgtAuth = append(c.tgtAuth[:0], auth...)
		return faultNone
	}
	if len(target) == 0 || target[0] == '/' {
		return faultNone
	}
	colon := bytes.IndexByte(target, ':')
	if colon < 0 || !bytes.HasPrefix(target[colon+1:], []byte("//")) {
		return faultNone
	}
	scheme, auth := target[:colon], target[colon+3:]
	if i := bytes.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	if !isScheme(scheme) || bytes.IndexByte(auth, '@') >= 0 {
		return faultParser // ambiguous authority; userinfo (RFC 9110 section 4.2.4)
	}
	if equalFold(scheme, "http") || equalFold(scheme, "https") || equalFold(scheme, "ws") || equalFold(scheme, "wss") {
		if !httpAuthorityValid(auth) {
			return faultParser
		}
		return faultNone
	}
	c.h.otherAbs = true
	c.tgtAuth = append(c.tgtAuth[:0], auth...)
	return faultNone
}

// isScheme reports whether b is an RFC 3986 section 3.1 scheme: ALPHA *( ALPHA / DIGIT /
// "+" / "-" / "." ).
func isScheme(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i, ch := range b {
		alpha := 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z'
		if !alpha && (i == 0 || !('0' <= ch && ch <= '9' || ch == '+' || ch == '-' || ch == '.')) {
			return false
		}
	}
	return true
}

// httpAuthorityValid reports whether the http crate (1.5, uri/authority.rs
// validate_authority_bytes) parses auth, an authority without userinfo: not empty, bytes of
// RFC 3986 section 3.2 (unreserved, sub-delims, ':', '[', ']'), one IP literal in brackets,
// no '%' outside it, at most one ':' outside it.
func httpAuthorityValid(auth []byte) bool {
	if len(auth) == 0 {
		return false
	}
	colons, open, closed, percent := 0, false, false, false
	for _, ch := range auth {
		switch {
		case ch == ':':
			colons++
		case ch == '[':
			if percent || open {
				return false
			}
			open = true
		case ch == ']':
			if !open || closed {
				return false
			}
			closed, colons, percent = true, 0, false
		case ch == '%':
			percent = true
		case ch < 0x80 && (upstream.TokenByte[ch] || ch == '(' || ch == ')' || ch == ',' || ch == ';' || ch == '='):
			if ch == '^' || ch == '`' || ch == '|' || ch == '#' {
				return false
			}
		default:
			return false
		}
	}
	return open == closed && colons <= 1 && !percent
}

// ambiguousPortSuffix is pingora-core's has_ambiguous_port_suffix: an unbalanced bracket
// or more than one ':' outside an IP literal.
func ambiguousPortSuffix(auth []byte) bool {
	inside := len(auth) > 0 && auth[0] == '['
	colon := false
	for i, ch := range auth {
		if inside {
			if i == 0 {
				continue
			}
			switch ch {
			case '[':
				return true
			case ']':
				inside = false
			}
			continue
		}
		switch ch {
		case '[', ']':
			return true
		case ':':
			if colon {
				return true
			}
			colon = true
		}
	}
	return inside
}

// absoluteHTTPTarget reports whether target is absolute-form (RFC 9112 section 3.2.2)
// with a scheme of the http family (http, https, ws, wss, any case) and an authority
// without userinfo: the targets whose authority replaces the received Host, as the
// Pingora router's patched parser does (rust-pingora/vendor/README.md, patch 1).
func absoluteHTTPTarget(target []byte) bool {
	scheme, rest, ok := bytes.Cut(target, []byte("://"))
	if !ok {
		return false
	}
	switch {
	case equalFold(scheme, "http"), equalFold(scheme, "https"), equalFold(scheme, "ws"), equalFold(scheme, "wss"):
	default:
		return false
	}
	authority := rest
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		authority = rest[:i]
	}
	return len(authority) > 0 && bytes.IndexByte(authority, '@') < 0
}

// targetFormAllowedBytes is targetFormAllowed (headers.go) on the request line's bytes,
// with the two rules the Pingora router's request_filter adds (rust-pingora
// proxy/target.rs, classify): a '#' anywhere is refused (a fragment is never part of a
// request-target, RFC 9112 section 3.2, and Pingora's URI would drop it, so the target
// could not go up byte for byte), and an absolute-form target must be "scheme://" with
// the scheme http, https, ws or wss (any case) before the first ':'.
func targetFormAllowedBytes(method, target []byte) bool {
	if bytes.IndexByte(target, '#') >= 0 {
		return false
	}
	switch {
	case len(target) > 0 && target[0] == '/':
		return true
	case bytes.Contains(target, []byte("://")):
		return absoluteSchemeAllowed(target)
	case string(target) == "*":
		return string(method) == http.MethodOptions
	default: // authority-form: CONNECT's
		return false
	}
}

// absoluteSchemeAllowed reports whether the absolute-form target starts with "scheme://"
// where scheme (everything before the first ':') is http, https, ws or wss, compared
// without regard to case (RFC 3986 section 3.1: schemes are case-insensitive).
func absoluteSchemeAllowed(target []byte) bool {
	colon := bytes.IndexByte(target, ':')
	if colon < 0 || !bytes.HasPrefix(target[colon+1:], []byte("//")) {
		return false
	}
	scheme := target[:colon]
	for _, s := range [...]string{"http", "https", "ws", "wss"} {
		if bytes.EqualFold(scheme, []byte(s)) {
			return true
		}
	}
	return false
}

// validTarget reports whether target is a request-target both routers accept:
// targetBytesValid and targetSyntaxValid.
func validTarget(target []byte) bool {
	return targetBytesValid(target) && targetSyntaxValid(target)
}

// targetBytesValid reports whether target's bytes are those httparse 1.10.1 (the Pingora
// router's parser) accepts in a request-target: upstream.URIByte, and valid UTF-8 as a whole when
// it has bytes >= 0x80 (parse_uri: simd::match_uri_vectored over URI_MAP, then
// str::from_utf8). RFC 9112 section 3 and RFC 3986 section 2 allow no raw SP, CTL or
// non-ASCII byte at all; RFC 9112 section 3 answers an invalid request-line with 400.
func targetBytesValid(target []byte) bool {
	nonASCII := false
	for _, ch := range target {
		if !upstream.URIByte[ch] {
			return false
		}
		nonASCII = nonASCII || ch >= 0x80
	}
	return !nonASCII || utf8.Valid(target)
}

// targetSyntaxValid reports whether net/http's url.ParseRequestURI accepts target. The
// origin-form, the common case, is checked here without allocating: every '%' in the path
// (before the first '?') followed by two hex digits (RFC 3986 section 2.1).
func targetSyntaxValid(target []byte) bool {
	if len(target) > 0 && target[0] == '/' {
		for i := 0; i < len(target); i++ {
			switch target[i] {
			case '?':
				return true // the query's bytes are forwarded as they are
			case '%':
				if i+2 >= len(target) || !isHexDigit(target[i+1]) || !isHexDigit(target[i+2]) {
					return false
				}
			}
		}
		return true
	}
	_, err := url.ParseRequestURI(string(target))
	return err == nil
}

// targetPathAndQuery is the part of target that the Pingora router's request header
// (pingora-http 0.9.1 RequestHeader::set_raw_path, parse_request_target) parses as an
// http::uri::PathAndQuery, the fragment cut off first: the whole target when it is
// origin-form, asterisk-form or starts with '?'; for an absolute-form target of any RFC 3986
// scheme followed by "//" (raw_target_authority's Absolute), what follows the authority
// ('/' prepended when it does not start with one); nil for every other target (CONNECT's
// authority-form, opaque and ambiguous targets), which is not parsed.
func targetPathAndQuery(target []byte) []byte {
	if i := bytes.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	if len(target) == 0 || target[0] == '/' || target[0] == '?' {
		return target
	}
	colon := bytes.IndexByte(target, ':')
	if colon < 0 || !isScheme(target[:colon]) || !bytes.HasPrefix(target[colon+1:], []byte("//")) {
		return nil
	}
	rest := target[colon+3:]
	i := bytes.IndexAny(rest, "/?")
	if i < 0 {
		return nil
	}
	return rest[i:] // a leading '?' gets a '/' in front, which pathAndQueryValid does not see
}

// pathAndQueryValid reports whether the http crate (1.5, uri/path.rs scan_path_and_query:
// PATH_MAP, QUERY_MAP) accepts pq's ASCII bytes: in the path (up to the first '?') not '<',
// '>' nor '`'; in the query not '"', '<' nor '>'. The RFC 3986 section 2 sets are stricter;
// these are the bytes the Pingora router refuses with its parser's 400 (httparse already
// accepted them). CTL, SP and DEL are targetBytesValid's.
func pathAndQueryValid(pq []byte) bool {
	query := false
	for _, ch := range pq {
		switch ch {
		case '?':
			query = true
		case '<', '>':
			return false
		case '`':
			if !query {
				return false
			}
		case '"':
			if query {
				return false
			}
		}
	}
	return true
}

// checkField checks one header line (RFC 9112 section 5, RFC 9110 section 5.5), as
// net/http's textproto reader and server do, and records the fields endHead needs. A line
// that begins with SP or HTAB (obs-fold, RFC 9112 section 5.2, or a first field line
// beginning with whitespace) is refused: net/http joins a folded line to the previous
// one; the router answers 400, as section 5.2 allows. The fault says which part of the
// Pingora router refuses the line (fault).
func (c *scanConn) checkField(line []byte) fault {
	if line[0] == ' ' || line[0] == '\t' {
		return faultParser
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) { // no name, or a byte outside tchar (a space too)
		return faultParser
	}
	name, value := line[:colon], line[colon+1:]
	for _, ch := range value {
		if ch < 0x20 && ch != '\t' || ch == 0x7f {
			return faultParser // httparse's header value bytes
		}
	}
	value = trimOWS(value)
	switch len(name) {
	case 4:
		if equalFold(name, "Host") {
			// Bytes of net/http's table, and a port, if any, of digits only (net/http
			// does not check that; hostPortValid). An empty Host is absent in HTTP/1.0
			// and refused in HTTP/1.1 (endHead).
			c.h.hosts++
			c.h.hostEmpty = len(value) == 0
			if c.h.hosts > 1 {
				return faultParser // pingora-core validate_request_authority_fields
			}
			c.hostFirst = append(c.hostFirst[:0], value...)
			if c.h.absolute {
				// RFC 9112 section 3.2.2: with an absolute-form target the received Host
				// is ignored (net/http takes the target's authority as r.Host too), so its
				// value is not checked; only one line is allowed, as the Pingora router
				// requires. net/http would still refuse bytes outside its table: they are
				// overwritten (same length, in the head net/http reads) with 'x'.
				for i, ch := range value {
					if !hostByte[ch] {
						value[i] = 'x'
					}
				}
				return faultNone
			}
			if bytes.IndexByte(value, '@') >= 0 {
				return faultParser // userinfo in Host: validate_request_authority_fields
			}
			if !validHost(value) || !hostPortValid(string(value)) {
				return faultRouter
			}
			return faultNone
		}
	case 6:
		if equalFold(name, "Expect") && !c.h.expect {
			// net/http answers 417 itself to an expectation other than 100-continue
			// (RFC 9110 section 10.1.1).
			c.h.expect = true
			if len(value) == 0 || hasToken(value, "100-continue") {
				return faultNone
			}
			return faultRouter
		}
	case 7:
		if equalFold(name, "Trailer") {
			// net/http refuses a chunked request announcing these as trailers.
			for _, el := range bytes.Split(value, []byte{','}) {
				el = trimOWS(el)
				if equalFold(el, "Transfer-Encoding") || equalFold(el, "Trailer") || equalFold(el, "Content-Length") {
					c.h.trailer = true
				}
			}
		}
	case 10:
		if equalFold(name, "Connection") {
			for _, tok := range bytes.Split(value, []byte{','}) {
				if equalFold(trimOWS(tok), "upgrade") {
					c.h.upgrade = true
				}
			}
			c.h.conns++
			ka := hasToken(value, "keep-alive")
			c.h.kaFirst = c.h.kaFirst || ka && c.h.conns == 1
			c.h.kaLater = c.h.kaLater || ka && c.h.conns > 1
			c.h.connClose = c.h.connClose || hasToken(value, "close")
		}
	case 14:
		if equalFold(name, "Content-Length") {
			c.h.cls++
			if c.h.cls == 1 {
				c.clFirst = append(c.clFirst[:0], value...)
			} else if !bytes.Equal(value, c.clFirst) {
				c.h.clDiffer = true
			}
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			c.h.tes++
			if c.h.tes == 1 {
				c.h.teChunked = equalFold(value, "chunked")
			}
		}
	}
	return faultNone
}

// endHead decides a complete head (framing, RFC 9112 sections 6.1 to 6.3, and Host,
// section 3.2) and, when it passes, sets up following its body. The checks Pingora's
// parser makes on the whole head come first (faultParser), then a faultRouter fault held
// since a line of the head (scanConn.fault), then the router's own.
func (c *scanConn) endHead() fault {
	h := &c.h
	if f := c.parserHeadFault(); f != faultNone {
		return f
	}
	if h.routerFault {
		return faultRouter
	}
	if !h.http10 && h.hosts == 0 {
		return faultRouter // HTTP/1.1 without Host (RFC 9112 section 3.2)
	}
	if h.hostEmpty && !h.absolute {
		// An empty Host field line, in HTTP/1.1 and in HTTP/1.0 alike (docs/spec.md section
		// 3, Host: a Host an HTTP/1.0 request sends follows the same rules; net/http cannot
		// tell it from none there). An absolute-form target's authority replaces it.
		return faultRouter
	}
	var cl int64
	if h.cls > 0 {
		var ok bool
		if cl, ok = parseContentLength(c.clFirst); !ok || h.clDiffer {
			return faultRouter // a list of one repeated number (parserHeadFault: the rest)
		}
	}
	if h.tes > 0 {
		// Transfer-Encoding in HTTP/1.0 (net/http would ignore it and read the body as the
		// next request), with Content-Length (RFC 9112 section 6.1: faulty framing), or
		// other than one field saying exactly "chunked" (net/http's 501; RFC 9112 section
		// 6.1 lets a server answer 400 or 501).
		if h.http10 || h.cls > 0 || h.tes != 1 || !h.teChunked || h.trailer {
			return faultRouter
		}
	}
	c.delivered++
	c.addKeepAlive = h.http10 && h.kaLater && !h.kaFirst && !h.connClose
	switch {
	case h.upgrade && !h.http10:
		// An HTTP/1.0 request is never an upgrade (docs/spec.md section 3, Upgrade: the
		// router removes the field), so the gate goes on following its connection.
		c.state = sOff // may become a tunnel
	case h.tes > 0:
		c.state = sChunkSize
	case cl > 0:
		c.state, c.remaining = sFixed, cl
	default:
		c.state = sHead
	}
	*h = headCheck{}
	return faultNone
}

// parserHeadFault is faultParser when Pingora's HttpSession::validate_request refuses the
// complete head (a repeated Host and '@' in Host were refused at their line):
//   - a CONNECT target whose authority is not Host, nor Host the authority's host
//     (reconcile_connect_host), an absolute-form target of a scheme outside the http family
//     whose authority is not Host;
//   - Content-Length: lines with different values, or a value that is not one number or a
//     comma list of one repeated number (validate_content_length), when there is no
//     Transfer-Encoding;
//   - Transfer-Encoding in HTTP/1.0 (RFC 9112 section 6.1).
func (c *scanConn) parserHeadFault() fault {
	h := &c.h
	if h.hosts == 1 && len(c.tgtAuth) > 0 && !bytes.Equal(c.hostFirst, c.tgtAuth) {
		switch {
		case h.otherAbs:
			return faultParser
		case h.connect:
			// Compared only when the authority has a port the http crate reads (a u16):
			// without one pingora-core leaves Host alone.
			i := bytes.LastIndexByte(c.tgtAuth, ':')
			if i < 0 || bytes.IndexByte(c.tgtAuth[i:], ']') >= 0 {
				break
			}
			if _, err := strconv.ParseUint(string(c.tgtAuth[i+1:]), 10, 16); err == nil &&
				!bytes.Equal(c.hostFirst, c.tgtAuth[:i]) {
				return faultParser
			}
		}
	}
	if h.tes > 0 {
		if h.http10 {
			return faultParser
		}
		return faultNone
	}
	if h.cls > 0 && (h.clDiffer || !contentLengthList(c.clFirst)) {
		return faultParser
	}
	return faultNone
}

// contentLengthList reports whether v is one or more comma-separated copies of the same
// number (optional whitespace around each), as pingora-core's validate_content_length
// accepts (RFC 9110 section 8.6).
func contentLengthList(v []byte) bool {
	if _, ok := parseContentLength(v); ok {
		return true // the common case, without allocating
	}
	var first []byte
	for _, el := range bytes.Split(v, []byte{','}) {
		el = trimOWS(el)
		if _, ok := parseContentLength(el); !ok {
			return false
		}
		if first == nil {
			first = el
		} else if !bytes.Equal(el, first) {
			return false
		}
	}
	return true
}

// chunkSizeLine follows a chunked body's chunk-size line (without its line end): the
// next state is the chunk's data, the trailer section after the last chunk, or, for a
// size net/http's chunked reader refuses, pass-through (the handler answers 400).
func (c *scanConn) chunkSizeLine(line []byte) {
	size := line
	if i := bytes.IndexByte(size, ';'); i >= 0 {
		size = size[:i]
	}
	n, err := parseHex(bytes.TrimSpace(size))
	switch {
	case err != nil:
		c.state = sOff
	case n == 0:
		c.state, c.trailers = sTrailers, trailerLexer{}
	default:
		c.state, c.remaining = sChunkData, n
	}
}

// refusedChunkLine is what net/http gets in place of a chunk-size line the gate refuses
// (upstream.ChunkLine): a line its chunked reader refuses ("invalid byte in chunk
// length"), so that the body read fails and the handler answers 400 bad_request, as for
// any malformed chunked body. net/http's reader alone takes any byte but CR and LF in an
// extension, and would take the line as it is.
const refusedChunkLine = "x\r\n"

// MaxTrailerSectionBytes bounds a chunked request's trailer section: its field lines and
// the final empty line, CRLFs included, counted from the byte after the last chunk's
// line (docs/spec.md section 3, "Request framing"). A longer one is 400 bad_request.
const MaxTrailerSectionBytes = 64 << 10

// refusedTrailerSection is what net/http gets in place of a trailer section the contract
// refuses: a line without a colon, which its chunked reader (textproto's ReadMIMEHeader)
// refuses, so that the body read fails and the handler answers 400 bad_request.
const refusedTrailerSection = "x\r\n\r\n"

// trailerVerdict is what trailerLexer.scan found.
type trailerVerdict uint8

const (
	trailersMore    trailerVerdict = iota // the section goes on in the next bytes
	trailersEnd                           // its final empty line has been read
	trailersRefused                       // a byte the section's grammar refuses, or too long
)

// trailerLexer follows a chunked request's trailer section byte by byte (RFC 9112 section
// 7.1.2: trailer-section = *( field-line CRLF ), then CRLF; field lines as in the head,
// section 5: a token name directly followed by ':', a value of HTAB, SP, VCHAR and
// obs-text; no obs-fold), refusing at the first byte no continuation can make valid, as
// the Pingora router's patched chunked reader does (pingora-core body.rs, TrailerCheck).
// Unlike a head, every line ends with CRLF (a bare LF is refused, as by Pingora's reader
// and net/http's). Its zero value is the start of a section.
type trailerLexer struct {
	state trailerState
	bytes int // section bytes so far
}

type trailerState uint8

const (
	tlLineStart trailerState = iota
	tlEmptyCR                // the CR of the final empty line
	tlName
	tlValue
	tlLineCR // the CR ending a field line
)

// scan follows b, the next bytes of the section. It returns how many bytes of b belong to
// the section (all of b while it goes on; up to and including the final LF, or the byte
// refused) and what it found.
func (l *trailerLexer) scan(b []byte) (int, trailerVerdict) {
	for i, ch := range b {
		l.bytes++
		if l.bytes > MaxTrailerSectionBytes {
			return i + 1, trailersRefused
		}
		ok := true
		switch l.state {
		case tlLineStart:
			switch {
			case ch == '\r':
				l.state = tlEmptyCR
			case upstream.TokenByte[ch]:
				l.state = tlName
			default:
				ok = false // a bare LF, white space (obs-fold), an empty name
			}
		case tlEmptyCR:
			if ch != '\n' {
				return i + 1, trailersRefused
			}
			return i + 1, trailersEnd
		case tlName:
			switch {
			case ch == ':':
				l.state = tlValue
			case !upstream.TokenByte[ch]:
				ok = false // white space before the colon, a separator, a CTL
			}
		case tlValue:
			switch {
			case ch == '\r':
				l.state = tlLineCR
			case ch < 0x20 && ch != '\t' || ch == 0x7f:
				ok = false // a CTL (a bare LF included), DEL
			}
		case tlLineCR:
			if ch != '\n' {
				ok = false // a bare CR
			}
			l.state = tlLineStart
		}
		if !ok {
			return i + 1, trailersRefused
		}
	}
	return len(b), trailersMore
}

// parseContentLength parses a Content-Length value as net/http does: one or more digits
// (leading zeros allowed), at most 2^63-1; no sign, no list (RFC 9110 section 8.6).
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(v), 10, 63) // no allocation: the string does not escape
	return int64(n), err == nil
}

// isToken reports whether b is a non-empty token (RFC 9110 section 5.6.2).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, ch := range b {
		if !upstream.TokenByte[ch] {
			return false
		}
	}
	return true
}

// hostByte is the byte set net/http accepts in Host (x/net/http/httpguts.ValidHostHeader):
// those of uri-host and port (RFC 3986 section 3.2.2), '[' and ']' included.
var hostByte = func() (t [256]bool) {
	for ch := '0'; ch <= '9'; ch++ {
		t[ch] = true
	}
	for ch := 'a'; ch <= 'z'; ch++ {
		t[ch], t[ch-'a'+'A'] = true, true
	}
	for _, ch := range []byte("!$%&()*+,-.:;=[']_~") {
		t[ch] = true
	}
	return t
}()

func validHost(v []byte) bool {
	for _, ch := range v {
		if !hostByte[ch] {
			return false
		}
	}
	return true
}

// trimOWS drops SP and HTAB at both ends (RFC 9110 section 5.6.3).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasToken reports whether v contains token as a comma- or space-separated element,
// ignoring ASCII case: net/http's test for "Expect: 100-continue".
func hasToken(v []byte, token string) bool {
	for sp := 0; sp+len(token) <= len(v); sp++ {
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if equalFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

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

// isHexDigit reports whether ch is a HEXDIG (either case).
func isHexDigit(ch byte) bool {
	return '0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F'
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
