package upstream

// HeadLexer follows an HTTP/1.x message head byte by byte with the grammar of httparse
// 1.10.1, the parser of the Pingora router (src/lib.rs: skip_empty_lines, parse_token,
// parse_uri, parse_version, parse_code, parse_reason, parse_headers_iter_uninit), so that
// the Go router refuses a head at the first byte httparse refuses, as Pingora does on the
// read that brings it, instead of at the end of the line as net/http's textproto reader
// does (it reads a whole line first: a peer that sends "dy" and keeps the connection open
// leaves it waiting).
//
// Two heads are followed: a request head (the zero HeadLexer; the request gate of
// internal/proxy, framing.go) and a response head (ResponseHead; HeadConn), with
// the options the Pingora router's client sets for responses (pingora-core v1/client.rs
// parse_resp_buffer: allow_spaces_after_header_name_in_responses,
// allow_obsolete_multiline_headers_in_responses). Only syntax: the size of a head, the
// values of its fields and what a status means are checked elsewhere.
//
// Feed it the head's bytes in order (Next, Scan). Once a byte is refused the head can
// never be valid: the caller stops there. After the empty line that ends a head it reads a
// new line start; start the next head with a new HeadLexer.
type HeadLexer struct {
	state    hlState
	version  uint8 // bytes of "HTTP/1.x" seen
	digits   uint8 // status-code digits seen
	fields   bool  // the start line is complete: lines are field lines
	response bool  // a response head (status line; responses' field line options)
	field    bool  // the line being read (or just ended) is a field line: obs-fold may continue it
}

type hlState uint8

const (
	hlLineStart   hlState = iota // a line begins: empty line, start line or field line
	hlEmptyCR                    // CR of an empty line: LF must follow
	hlMethod                     // request line: inside the method token
	hlTargetStart                // after the method's SP: the target's first byte
	hlTarget                     // inside the request-target
	hlVersion                    // inside "HTTP/1.x"
	hlCodeStart                  // status line: after the version's SP, the status code
	hlCodeEnd                    // after the status code's 3 digits: SP, CR or LF
	hlLineCR                     // CR at the end of a line: LF must follow
	hlName                       // inside a field name
	hlNameWS                     // response: SP/HTAB after a field name, before its colon
	hlValue                      // a field value, a reason phrase, or an obs-fold continuation
)

// ResponseHead returns the start of a response head: optional empty lines (CRLF or LF), then
// the status line "HTTP/1.0" or "HTTP/1.1", SP, 3 digits, then SP and a reason phrase, or
// the line end (RFC 9112 section 4, as httparse reads it: one SP each, no HTTP/1.2, a
// missing reason accepted).
func ResponseHead() HeadLexer { return HeadLexer{response: true} }

// Next follows one byte of the head and reports whether the head can still be valid.
//
// Request line (RFC 9112 section 3): a token method, SP, a target of URIByte bytes, SP,
// HTTP/1.0 or HTTP/1.1. Field lines (section 5): a token name directly followed by ':'
// (responses: SP/HTAB may come between, which the router removes, section 5.1), a value
// of HTAB, SP, VCHAR and obs-text; in a response an obs-fold (a field line's end followed
// by SP/HTAB) continues the value. Every line ends with LF or CRLF (a CR not followed by
// LF is refused, section 2.2); SP/HTAB at the start of the first field line is refused
// (section 2.2: a recipient must refuse or drop it; httparse refuses).
func (l *HeadLexer) Next(ch byte) bool {
	switch l.state {
	case hlLineStart:
		switch {
		case ch == '\r':
			l.state = hlEmptyCR
		case ch == '\n':
			// an empty line: before the start line, skipped; after it, the head's end
		case !l.fields && l.response:
			if ch != 'H' {
				return false // "HTTP/1.x" is the only start of a status line
			}
			l.state, l.version = hlVersion, 1
		case !l.fields && TokenByte[ch]:
			l.state = hlMethod
		case l.fields && TokenByte[ch]:
			l.state, l.field = hlName, true
		case l.fields && l.response && l.field && (ch == ' ' || ch == '\t'):
			l.state = hlValue // obs-fold: the previous field line's value goes on
		default:
			return false // not a token; SP or HTAB at a line's start that folds nothing
		}
	case hlEmptyCR:
		if ch != '\n' {
			return false // a bare CR
		}
		l.state = hlLineStart
	case hlMethod:
		switch {
		case ch == ' ':
			l.state = hlTargetStart
		case !TokenByte[ch]:
			return false
		}
	case hlTargetStart, hlTarget:
		switch {
		case ch == ' ' && l.state == hlTarget:
			l.state, l.version = hlVersion, 0
		case !URIByte[ch]:
			return false // an empty target (two SP), a CTL, DEL
		default:
			l.state = hlTarget
		}
	case hlVersion:
		switch {
		case l.version < 7:
			if ch != "HTTP/1."[l.version] {
				return false
			}
			l.version++
		case l.version == 7:
			if ch != '0' && ch != '1' {
				return false
			}
			l.version++
		case l.response:
			if ch != ' ' {
				return false
			}
			l.state, l.digits = hlCodeStart, 0
		case ch == '\r':
			l.state = hlLineCR
		case ch == '\n':
			l.state, l.fields = hlLineStart, true
		default:
			return false
		}
	case hlCodeStart:
		if ch < '0' || ch > '9' {
			return false
		}
		if l.digits++; l.digits == 3 {
			l.state = hlCodeEnd
		}
	case hlCodeEnd:
		switch ch {
		case ' ':
			l.state = hlValue // the reason phrase: HTAB, SP, VCHAR, obs-text
		case '\r':
			l.state = hlLineCR
		case '\n':
			l.state, l.fields = hlLineStart, true
		default:
			return false
		}
	case hlLineCR:
		if ch != '\n' {
			return false // a bare CR
		}
		l.state, l.fields = hlLineStart, true
	case hlName:
		switch {
		case ch == ':':
			l.state = hlValue
		case l.response && (ch == ' ' || ch == '\t'):
			l.state = hlNameWS
		case !TokenByte[ch]:
			return false // white space before a request field's colon, a CTL, a separator
		}
	case hlNameWS:
		switch ch {
		case ':':
			l.state = hlValue
		case ' ', '\t':
		default:
			return false // the name is followed by something other than its colon
		}
	case hlValue:
		switch {
		case ch == '\r':
			l.state = hlLineCR
		case ch == '\n':
			l.state, l.fields = hlLineStart, true
		case ch < 0x20 && ch != '\t' || ch == 0x7f:
			return false
		}
	}
	return true
}

// Scan follows b, the next bytes of the head, and returns how many of them the head can
// take: len(b) and true, or the offset in b of the first byte refused and false.
func (l *HeadLexer) Scan(b []byte) (int, bool) {
	for i, ch := range b {
		if !l.Next(ch) {
			return i, false
		}
	}
	return len(b), true
}

// TokenByte is RFC 9110 section 5.6.2's token character set (httparse's TOKEN_MAP), indexed
// by byte: true for a tchar. The request gate (proxy) uses the same table.
var TokenByte = func() (t [256]bool) {
	for ch := '0'; ch <= '9'; ch++ {
		t[ch] = true
	}
	for ch := 'a'; ch <= 'z'; ch++ {
		t[ch], t[ch-'a'+'A'] = true, true
	}
	for _, ch := range []byte("!#$%&'*+-.^_`|~") {
		t[ch] = true
	}
	return t
}()

// URIByte is httparse 1.10.1's URI_MAP (src/lib.rs: byte_map!(b'!'..=0x7e | 0x80..=0xFF)),
// indexed by byte: the bytes it accepts in a request-target. Refused: CTL (0x00-0x1F, 0x7F)
// and SP. The request gate (proxy) uses the same table.
var URIByte = func() (t [256]bool) {
	for ch := '!'; ch <= 0x7e; ch++ {
		t[ch] = true
	}
	for ch := 0x80; ch <= 0xff; ch++ {
		t[ch] = true
	}
	return t
}()
