package upstream

// ChunkLineVerdict is what ChunkLine.Scan found.
type ChunkLineVerdict uint8

const (
	ChunkLineMore    ChunkLineVerdict = iota // the line goes on in the next bytes
	ChunkLineEnd                             // its CRLF has been read: the line is valid
	ChunkLineRefused                         // a byte no continuation can make valid
)

// chunkLineState is where the next byte of a chunk-size line falls.
type chunkLineState uint8

const (
	clSizeStart  chunkLineState = iota // the first byte: a hex digit
	clSize                             // after 1..16 hex digits
	clBWS                              // SP/HTAB after the size or after an extension
	clNameStart                        // after ";" (BWS allowed): a token character
	clName                             // inside a chunk-ext-name
	clNameBWS                          // SP/HTAB after a name: "=", ";" or CR
	clValueStart                       // after "=" (BWS allowed): a token or DQUOTE
	clToken                            // inside a token value
	clQuoted                           // inside a quoted-string value
	clQuotedPair                       // after a backslash in a quoted-string
	clCR                               // the CR ending the line: LF
)

// maxChunkDigits is the longest chunk size net/http and httparse read: 16 hex digits.
const maxChunkDigits = 16

// MaxChunkLineBytes bounds a chunk-size line, extensions included: at most this many
// bytes before its LF (its CR counted). The byte past it is refused (docs/spec.md section
// 3, "Request framing"; RFC 9112 section 7.1.1: a recipient ought to limit the length of
// chunk extensions). The Pingora router's chunk reader refuses a line once more than
// 8192 bytes of it have been read without its LF (pingora-core body.rs
// PARTIAL_CHUNK_HEAD_LIMIT).
const MaxChunkLineBytes = 8 << 10

// ChunkLine follows one chunk-size line of a chunked body, its CRLF included, byte by
// byte, and refuses it at the first byte no continuation can make valid (RFC 9112 sections
// 7.1 and 7.1.1; section 2.2: a message that does not match the grammar is refused):
//
//	chunk-line     = chunk-size [ chunk-ext ] BWS CRLF
//	chunk-size     = 1*HEXDIG                        ; at most 16 digits
//	chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-name = token
//	chunk-ext-val  = token / quoted-string           ; RFC 9110 section 5.6.4
//
// The BWS before the CRLF (after the size or an extension) is outside RFC 9112's grammar
// but taken by net/http's chunked reader and httparse alike, so it stays accepted. The
// 16-digit limit is theirs too; a line longer than MaxChunkLineBytes is refused at the
// byte past the limit. Everything else is refused at its byte, in particular a
// CTL (NUL, a bare LF, HTAB outside BWS and quoted-strings), a CR not followed by LF, a
// separator in a name, an empty name or value: net/http's reader takes any byte but CR and
// LF after the first ";" and httparse any byte but CR, so a bare LF inside an extension
// ended the line for one router and not for the other (parity fuzz framing.client-status,
// "f; a=1\nab...": two framings of one body).
//
// Both routers apply this rule to request bodies (the Go router's gate) and response
// bodies (HeadConn); the Pingora router's patched pingora-core does the same
// (body.rs, chunk_line_check). The zero value is the start of a line.
type ChunkLine struct {
	state  chunkLineState
	digits int    // hex digits read
	size   uint64 // the chunk size read so far
	n      int    // bytes of the line read, its LF excluded (MaxChunkLineBytes)
}

// Size is the chunk size of the line (valid once Scan has reported ChunkLineEnd).
func (l *ChunkLine) Size() uint64 { return l.size }

// Scan follows b, the next bytes of the line. With ChunkLineEnd, n is the number of b's
// bytes up to and including the line's LF; with ChunkLineRefused, the offset in b of the
// refused byte; with ChunkLineMore, len(b). After End or Refused the ChunkLine is spent
// (a new line starts from the zero value).
func (l *ChunkLine) Scan(b []byte) (n int, v ChunkLineVerdict) {
	for i, ch := range b {
		if !l.next(ch) {
			return i, ChunkLineRefused
		}
		if l.state == clCR && ch == '\n' {
			return i + 1, ChunkLineEnd
		}
		if l.n++; l.n > MaxChunkLineBytes {
			return i, ChunkLineRefused // too long: refused at the byte past the limit
		}
	}
	return len(b), ChunkLineMore
}

// next moves past ch; false: ch is refused. Reaching the line's LF leaves the state at
// clCR with ch == '\n' (Scan reports the end).
func (l *ChunkLine) next(ch byte) bool {
	ws := ch == ' ' || ch == '\t'
	switch l.state {
	case clSizeStart, clSize:
		if v, ok := hexValue(ch); ok {
			if l.digits == maxChunkDigits {
				return false
			}
			l.digits++
			l.size = l.size<<4 | uint64(v)
			l.state = clSize
			return true
		}
		if l.state == clSizeStart {
			return false // chunk-size = 1*HEXDIG
		}
		return l.afterItem(ch, ws)
	case clBWS, clToken:
		if l.state == clToken && TokenByte[ch] {
			return true
		}
		return l.afterItem(ch, ws)
	case clNameStart:
		switch {
		case ws:
		case TokenByte[ch]:
			l.state = clName
		default:
			return false // an empty name
		}
	case clName, clNameBWS:
		switch {
		case l.state == clName && TokenByte[ch]:
		case ws:
			l.state = clNameBWS
		case ch == '=':
			l.state = clValueStart
		case ch == ';':
			l.state = clNameStart
		case ch == '\r':
			l.state = clCR
		default:
			return false
		}
	case clValueStart:
		switch {
		case ws:
		case ch == '"':
			l.state = clQuoted
		case TokenByte[ch]:
			l.state = clToken
		default:
			return false // an empty value
		}
	case clQuoted:
		switch {
		case ch == '"':
			l.state = clBWS
		case ch == '\\':
			l.state = clQuotedPair
		case ch == '\t' || ch == ' ' || ch >= 0x21 && ch != 0x7f:
			// qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
		default:
			return false // a CTL, DEL
		}
	case clQuotedPair:
		// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
		if ch != '\t' && (ch < 0x20 || ch == 0x7f) {
			return false
		}
		l.state = clQuoted
	case clCR:
		return ch == '\n'
	}
	return true
}

// afterItem moves past ch after the size, a value or BWS: more BWS, ";" (an extension),
// or the CR of the line end.
func (l *ChunkLine) afterItem(ch byte, ws bool) bool {
	switch {
	case ws:
		l.state = clBWS
	case ch == ';':
		l.state = clNameStart
	case ch == '\r':
		l.state = clCR
	default:
		return false // a bare LF, a CTL, a byte that is no part of the line
	}
	return true
}
