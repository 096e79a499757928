package upstream

import (
	"bytes"
	"errors"
)

// ErrChunkFraming is the read error of a HeadConn once a chunked response body has a
// byte that cannot continue its framing (RFC 9112 section 7.1): a chunk-size line that
// does not start with a hex digit, has more than 16 of them, or goes on after them with
// something other than BWS, ";" and an extension, or CRLF; a CR not followed by LF; a
// chunk's data not followed by CRLF; a line of the trailer section, or its final empty
// line, not ended by CRLF (net/http's MIME reader would take a bare LF as the line end,
// see chunkScan). net/http's chunked reader refuses the others too, but only once it has
// read the whole line, so an upstream that sends "excybxz0" and
// keeps the connection open left the client waiting (no body timeout); the Pingora
// router's parser (httparse parse_chunk_size) refuses at the byte. The bytes before it
// are delivered first, so the transport's body read fails there: a committed response
// is aborted as any other upstream failure mid-body (docs/spec.md section 3).
var ErrChunkFraming = errors.New("upstream sent a chunked body byte that cannot continue its framing")

// chunkPhase is where a chunked response body's next byte falls.
type chunkPhase uint8

const (
	chOff           chunkPhase = iota // no chunked body being followed (or it has ended)
	chSizeStart                       // first byte of a chunk-size line: a hex digit
	chSize                            // after 1..16 hex digits
	chSizeWS                          // SP/HTAB after the digits
	chExt                             // after ";": any byte up to CR
	chSizeCR                          // the CR ending a chunk-size line: LF
	chData                            // inside a chunk's data (remain bytes left)
	chDataCR                          // the CR after a chunk's data
	chDataLF                          // the LF after a chunk's data
	chTrailer                         // first byte of a trailer line (or of the final CRLF)
	chTrailerLine                     // inside a trailer line: up to its CR
	chTrailerLineCR                   // the CR ending a trailer line: LF
	chTrailerCR                       // a CR opened the line: LF ends the body
)

// maxChunkDigits is the longest chunk size net/http and httparse read: 16 hex digits.
const maxChunkDigits = 16

// chunkScan follows the framing of a chunked response body byte by byte. Up to the
// last chunk it refuses only bytes net/http's chunked reader refuses as well (it would at
// the line end). In the trailer section (RFC 9112 section 7.1.2: *( field-line CRLF ),
// then CRLF) every line, the final empty one included, must end with CRLF: a bare LF or
// a CR not followed by LF is refused (docs/spec.md *Upstream responses*; RFC 9112
// section 2.2 leaves accepting a bare LF to the recipient, and the Pingora router's
// chunked reader refuses it, as both routers do in a request's trailer section), where
// net/http's MIME reader would take a bare LF as a line end. The lines' contents are not
// checked (net/http's MIME reader checks them whole).
type chunkScan struct {
	phase  chunkPhase
	digits int    // hex digits of the current chunk-size line
	size   uint64 // the current chunk's size, then the data bytes left
}

// start begins following a chunked body at its first chunk-size line.
func (s *chunkScan) start() { *s = chunkScan{phase: chSizeStart} }

// scan follows b and returns how many of its bytes are framing-correct: len(b), or the
// offset of the first byte that cannot continue the framing (ok false).
func (s *chunkScan) scan(b []byte) (n int, ok bool) {
	for i := 0; i < len(b); i++ {
		if s.phase == chOff {
			return len(b), true
		}
		ch := b[i]
		switch s.phase {
		case chSizeStart, chSize:
			if v, hex := hexValue(ch); hex {
				if s.digits == maxChunkDigits {
					return i, false
				}
				s.digits++
				s.size = s.size<<4 | uint64(v)
				s.phase = chSize
				continue
			}
			if s.phase == chSizeStart {
				return i, false // chunk-size = 1*HEXDIG
			}
			switch ch {
			case ' ', '\t':
				s.phase = chSizeWS
			case ';':
				s.phase = chExt
			case '\r':
				s.phase = chSizeCR
			default:
				return i, false // bare LF or a byte that is no part of the line
			}
		case chSizeWS:
			switch ch {
			case ' ', '\t':
			case ';':
				s.phase = chExt
			case '\r':
				s.phase = chSizeCR
			default:
				return i, false
			}
		case chExt:
			switch ch {
			case '\r':
				s.phase = chSizeCR
			case '\n':
				return i, false // bare LF
			}
		case chSizeCR:
			if ch != '\n' {
				return i, false
			}
			if s.size == 0 {
				s.phase = chTrailer // last-chunk
			} else {
				s.phase = chData
			}
			s.digits = 0
		case chData:
			take := uint64(len(b) - i)
			if take > s.size {
				take = s.size
			}
			s.size -= take
			i += int(take) - 1
			if s.size == 0 {
				s.phase = chDataCR
			}
		case chDataCR, chDataLF:
			want := byte('\r')
			if s.phase == chDataLF {
				want = '\n'
			}
			if ch != want {
				return i, false
			}
			if s.phase == chDataCR {
				s.phase = chDataLF
			} else {
				s.phase, s.size = chSizeStart, 0
			}
		case chTrailer:
			switch ch {
			case '\r':
				s.phase = chTrailerCR
			case '\n':
				return i, false // a bare LF ends no line here
			default:
				s.phase = chTrailerLine
			}
		case chTrailerCR, chTrailerLineCR:
			if ch != '\n' {
				return i, false // a CR not followed by LF
			}
			if s.phase == chTrailerCR {
				s.phase = chOff // the final CRLF: the body ends here
			} else {
				s.phase = chTrailer
			}
		case chTrailerLine:
			j := bytes.IndexAny(b[i:], "\r\n")
			if j < 0 {
				return len(b), true
			}
			i += j
			if b[i] == '\n' {
				return i, false // a bare LF ends no line here
			}
			s.phase = chTrailerLineCR
		}
	}
	return len(b), true
}

// hexValue returns the value of a hex digit (HEXDIG, either case).
func hexValue(ch byte) (byte, bool) {
	switch {
	case '0' <= ch && ch <= '9':
		return ch - '0', true
	case 'a' <= ch && ch <= 'f':
		return ch - 'a' + 10, true
	case 'A' <= ch && ch <= 'F':
		return ch - 'A' + 10, true
	}
	return 0, false
}
