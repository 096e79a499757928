package upstream

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// An upstream that answers a chunked response whose first chunk-size line is no hex
// number and has no line end yet, and keeps the connection open (parity fuzz seed 7 case
// 6302): the transport's body read fails at once with ErrChunkFraming; before, net/http's
// chunked reader waited for the line end and the client hung (RFC 9112 section 7.1:
// chunk-size = 1*HEXDIG; the Pingora router refuses at the byte).
func TestHeadConnRefusesABadChunkSizeByteWithoutWaitingForTheLineEnd(t *testing.T) {
	err := readWithoutWaiting(t, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nexcybxz0",
		func(br *bufio.Reader) error {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			_, err = io.ReadAll(resp.Body)
			return err
		})
	if !errors.Is(err, ErrChunkFraming) {
		t.Fatalf("body read: %v, want ErrChunkFraming", err)
	}
}

// Chunked bodies the transport reads (extensions, white space before them, several
// chunks, trailers) pass whole, less the chunk-size lines' extensions and BWS, whatever
// the reads' boundaries, and the bytes of a next
// exchange are not checked; a body with a byte that cannot continue its framing delivers
// the bytes before that byte, then ErrChunkFraming. Heads without a chunked body (HEAD,
// HTTP/1.0, Content-Length) are not followed.
func TestHeadConnFollowsChunkedFraming(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	good := []struct{ body, want string }{ // want: what the transport reads ("": body)
		{"0\r\n\r\n", ""},
		{"5\r\nhello\r\n0\r\n\r\n", ""},
		{"A;x=y\r\n0123456789\r\n1 \t;ext = \"q\\\"\" ;b\r\nz\r\n00\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
			"A\r\n0123456789\r\n1\r\nz\r\n00\r\nX-T: 1\r\nX-U: 2\r\n\r\n"},
		{"0000000000000010\r\n0123456789abcdef\r\n0 ;z\r\n\r\n", "0000000000000010\r\n0123456789abcdef\r\n0\r\n\r\n"},
	}
	for _, tc := range good {
		stream, want := head+tc.body, head+tc.want
		if tc.want == "" {
			want = stream
		}
		eachSplit(stream, 3, func(i, j int, chunks []string) {
			got, _ := readThrough(t, chunks, 7)
			if got != want {
				t.Fatalf("%q split at %d,%d: got %q", tc.body, i, j, got)
			}
		})
	}
	bad := []struct{ body, before string }{
		{"excybxz0", "e"}, // 'e' is a hex digit, 'x' is not
		{"\r\n", ""},
		{" 5\r\n", ""},
		{";x\r\n", ""},
		{"5x\r\n", "5"},
		{"5\n", "5"},
		{"5 x", "5"},
		{"5;a\n", "5"},
		// chunk extensions are token/quoted-string syntax (ChunkLine; parity fuzz
		// framing.client-status: "f; a=1\nab..." framed two ways)
		{"f; a=1\nab32b1cdaba31eb\r\n", "f"},
		{"5;a\x01\r\n", "5"},
		{"5;a b\r\n", "5"},
		{"5;a=\"\r\n", "5"},
		{"5;\r\n", "5"},
		{"5\rx", "5\r"},
		{"00000000000000001\r\n", "0000000000000000"},
		{"2\r\nabX", "2\r\nab"},
		{"2\r\nab\rX", "2\r\nab\r"},
		{"2\r\nab\r\nq", "2\r\nab\r\n"},
		// The trailer section's lines end with CRLF, the final empty one too (parity
		// fuzz seed 1 case 37787: "0\r\n\nc\r\n0\r\n\r\n"; net/http took the bare LF
		// as the section's end, the Pingora router refuses it).
		{"0\r\n\nc\r\n0\r\n\r\n", "0\r\n"},
		{"0\r\n\r\r\n", "0\r\n\r"},
		{"0\r\nX-T: 1\n\r\n", "0\r\nX-T: 1"},
		{"0\r\nX-T: 1\rX\r\n\r\n", "0\r\nX-T: 1\r"},
		{"0\r\nX-T: 1\r\n\n", "0\r\nX-T: 1\r\n"},
	}
	for _, tc := range bad {
		stream := head + tc.body
		eachSplit(stream, 2, func(i, j int, chunks []string) {
			c := &HeadConn{Conn: &chunkConn{chunks: chunks}}
			c.Begin()
			var got []byte
			p := make([]byte, 5)
			for {
				n, err := c.Read(p)
				got = append(got, p[:n]...)
				if errors.Is(err, ErrChunkFraming) {
					break
				}
				if err != nil {
					t.Fatalf("%q split at %d,%d: %v after %q", tc.body, i, j, err, got)
				}
			}
			if string(got) != head+tc.before {
				t.Fatalf("%q split at %d,%d: delivered %q, want %q", tc.body, i, j, got, head+tc.before)
			}
			if n, err := c.Read(p); n != 0 || !errors.Is(err, ErrChunkFraming) {
				t.Fatalf("%q: read after the refusal: %d %v", tc.body, n, err)
			}
		})
	}
	// Not followed: the bytes are the transport's to judge.
	for _, stream := range []string{
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz",
		"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\nxyz",
	} {
		if got, _ := readThrough(t, []string{stream}, 64); !strings.HasSuffix(got, "xyz") {
			t.Fatalf("%q: got %q", stream, got)
		}
	}
	// A next exchange starts afresh: its bytes are not taken for the old body.
	c := &HeadConn{Conn: &chunkConn{chunks: []string{head + "1\r\na\r\n", "0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz"}}}
	c.Begin()
	p := make([]byte, 256)
	for i := 0; i < 2; i++ {
		if _, err := c.Read(p); err != nil {
			t.Fatal(err)
		}
	}
	c.Begin()
	if n, err := c.Read(p); err != nil || !strings.HasSuffix(string(p[:n]), "xyz") {
		t.Fatalf("next exchange: %q %v", p[:n], err)
	}
}

// A chunk-size line of 4096 bytes or more (net/http's chunked reader refuses it: "header
// line too long"), up to MaxChunkLineBytes before its LF (Pingora's limit), and many
// chunks whose extensions add up past net/http's 16 KiB budget of non-data, reach the
// transport as their size digits and CRLF, so it reads the body whatever the reads
// (1-byte reads too: a read that brings only dropped bytes is not returned empty). One
// byte more than MaxChunkLineBytes is ErrChunkFraming.
func TestHeadConnPassesLongChunkLines(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, pad := range []int{4090, 5000, MaxChunkLineBytes - 5, 100} {
		var body, want strings.Builder
		for range 40 {
			body.WriteString("1;e=" + strings.Repeat("x", pad) + "\r\nh\r\n")
			want.WriteString("h")
		}
		body.WriteString("0\r\n\r\n")
		stream := head + body.String()
		for _, split := range [][]string{{stream}, {stream[:60], stream[60 : len(stream)/2], stream[len(stream)/2:]}} {
			c := &HeadConn{Conn: &chunkConn{chunks: split}}
			c.Begin()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := io.ReadAll(resp.Body); err != nil || string(got) != want.String() {
				t.Fatalf("pad %d: %q %v", pad, got, err)
			}
		}
		if got, _ := readThrough(t, []string{stream}, 1); !strings.HasPrefix(got, head+"1\r\nh\r\n1\r\nh\r\n") {
			t.Fatalf("pad %d: delivered %.80q", pad, got)
		}
	}
	body := "5;e=" + strings.Repeat("x", MaxChunkLineBytes-4) + "\r\nhello\r\n0\r\n\r\n"
	c := &HeadConn{Conn: &chunkConn{chunks: []string{head + body}}}
	c.Begin()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, ErrChunkFraming) {
		t.Fatalf("past MaxChunkLineBytes: %v", err)
	}
}
