package upstream

import (
	"bytes"
	"errors"
)

// ErrChunkFraming is the read error of a HeadConn once a chunked response body has a
// byte that cannot continue its framing (RFC 9112 section 7.1): a chunk-size line
// ChunkLine refuses (no hex digit first, more than 16 of them, an extension that is not
// token/quoted-string syntax, a CTL, a bare LF or CR); a chunk's data not followed by
// CRLF; a line of the trailer section, or its final empty line, not ended by CRLF
// (net/http's MIME reader would take a bare LF as the line end, see chunkScan). net/http's
// chunked reader refuses some of these only once it has read the whole line, so an
// upstream that sends "excybxz0" and keeps the connection open left the client waiting
// (no body timeout), and takes others (a CTL inside an extension); the Pingora router's
// chunk reader (httparse parse_chunk_size and the patched pingora-core's chunk_line_check)
// refuses each at the byte. The bytes before it are delivered first, so the transport's
// body read fails there: a committed response is aborted as any other upstream failure
// mid-body (docs/spec.md section 3).
var ErrChunkFraming = errors.New("upstream sent a chunked body byte that cannot continue its framing")

// chunkPhase is where a chunked response body's next byte falls.
type chunkPhase uint8

const (
	chOff           chunkPhase = iota // no chunked body being followed (or it has ended)
	chSize                            // in a chunk-size line, CRLF included (ChunkLine)
	chData                            // inside a chunk's data (remain bytes left)
	chDataCR                          // the CR after a chunk's data
	chDataLF                          // the LF after a chunk's data
	chTrailer                         // first byte of a trailer line (or of the final CRLF)
	chTrailerLine                     // inside a trailer line: up to its CR
	chTrailerLineCR                   // the CR ending a trailer line: LF
	chTrailerCR                       // a CR opened the line: LF ends the body
)

// chunkScan follows the framing of a chunked response body byte by byte. Up to the
// last chunk it refuses what ChunkLine refuses in a chunk-size line (net/http's chunked
// reader refuses most of it at the line end; a CTL in an extension it takes) and chunk
// data not followed by CRLF. Of a chunk-size line only the size digits and the CRLF are
// delivered: the transport's chunked reader ignores extensions (the Pingora router drops
// them too) but refuses a line of 4096 bytes and counts every line's bytes in a 16 KiB
// budget of non-data (net/http/internal chunked.go: maxLineLength, excess), where the
// Pingora router takes lines of up to MaxChunkLineBytes and has no budget. In the trailer
// section (RFC 9112 section 7.1.2:
// *( field-line CRLF ), then CRLF) every line, the final empty one included, must end
// with CRLF: a bare LF or a CR not followed by LF is refused (docs/spec.md *Upstream
// responses*; RFC 9112 section 2.2 leaves accepting a bare LF to the recipient, and the
// Pingora router's chunked reader refuses it, as both routers do in a request's trailer
// section), where net/http's MIME reader would take a bare LF as a line end. The lines'
// contents are not checked (net/http's MIME reader checks them whole).
type chunkScan struct {
	phase chunkPhase
	line  ChunkLine // the current chunk-size line
	size  uint64    // the data bytes left of the current chunk
}

// start begins following a chunked body at its first chunk-size line.
func (s *chunkScan) start() { *s = chunkScan{phase: chSize} }

// scan follows b and compacts it in place to the bytes to deliver: it returns how many
// bytes of b's start are to be delivered (b's framing-correct bytes, less the extensions
// and BWS of chunk-size lines: net/http's chunked reader gets the size digits and CRLF,
// see chunkScan), and ok false when a byte cannot continue the framing (the bytes before
// it are the ones returned).
func (s *chunkScan) scan(b []byte) (n int, ok bool) {
	w := 0 // b[:w] is what is delivered
	for i := 0; i < len(b); i++ {
		if s.phase == chOff {
			return w + copy(b[w:], b[i:]), true
		}
		ch := b[i]
		switch s.phase {
		case chSize:
			_, v := s.line.Scan(b[i : i+1])
			if v == ChunkLineRefused {
				return w, false
			}
			if s.line.state == clSize || s.line.state == clCR {
				b[w] = ch // a size digit, the CR or the LF
				w++
			}
			if v == ChunkLineMore {
				continue
			}
			s.size, s.line = s.line.Size(), ChunkLine{}
			if s.size == 0 {
				s.phase = chTrailer // last-chunk
			} else {
				s.phase = chData
			}
		case chData:
			take := uint64(len(b) - i)
			if take > s.size {
				take = s.size
			}
			s.size -= take
			w += copy(b[w:], b[i:i+int(take)])
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
				return w, false
			}
			b[w] = ch
			w++
			if s.phase == chDataCR {
				s.phase = chDataLF
			} else {
				s.phase = chSize
			}
		case chTrailer:
			switch ch {
			case '\r':
				s.phase = chTrailerCR
			case '\n':
				return w, false // a bare LF ends no line here
			default:
				s.phase = chTrailerLine
			}
			b[w] = ch
			w++
		case chTrailerCR, chTrailerLineCR:
			if ch != '\n' {
				return w, false // a CR not followed by LF
			}
			b[w] = ch
			w++
			if s.phase == chTrailerCR {
				s.phase = chOff // the final CRLF: the body ends here
			} else {
				s.phase = chTrailer
			}
		case chTrailerLine:
			j := bytes.IndexAny(b[i:], "\r\n")
			if j < 0 {
				return w + copy(b[w:], b[i:]), true
			}
			w += copy(b[w:], b[i:i+j])
			i += j
			if b[i] == '\n' {
				return w, false // a bare LF ends no line here
			}
			b[w] = b[i]
			w++
			s.phase = chTrailerLineCR
		}
	}
	return w, true
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
