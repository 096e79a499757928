package upstream

import (
	"strings"
	"testing"
)

// Every valid chunk-size line form (RFC 9112 section 7.1.1: BWS around ";" and "=",
// token and quoted-string values, escapes, obs-text, several extensions; BWS before the
// CRLF, which net/http and httparse take) ends with its LF whatever the reads' boundaries,
// with its size; an invalid one is refused at its first bad byte, the bytes before it
// taken, without waiting for a line end. Found by parity fuzz (framing.client-status seed 1
// case 28792, "f; a=1\nab32b1cdaba31eb\r\n"): httparse took the bare LF as part of the
// extension, net/http as the line's (refused) end, so the two routers framed one body
// differently.
func TestChunkLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		size uint64
	}{
		{"0\r\n", 0},
		{"f\r\n", 15},
		{"000A\r\n", 10},
		{"ffffffffffffffff\r\n", 1<<64 - 1},
		{"1 \t\r\n", 1},
		{"1;a\r\n", 1},
		{"1;a=b\r\n", 1},
		{"1;a=1;b\r\n", 1},
		{"1; a=1\r\n", 1},
		{"1 ;a\r\n", 1},
		{"1\t; \ta \t= \tb \t; c\t\r\n", 1},
		{"1;a=\"\"\r\n", 1},
		{"1;a=\"q\"\r\n", 1},
		{"1;a=\"x;y=z \t!#[]~\x80\xff\"\r\n", 1},
		{"1;a=\"\\\"\\\\\\ \\\t\\\xff\"\r\n", 1},
		{"1;a=\"q\" ;b=c\r\n", 1},
		{"1;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~\r\n", 1},
		{"1;a \r\n", 1},
		{"1;a=b \r\n", 1},
	} {
		for cut := 0; cut <= len(tc.line); cut++ {
			var l ChunkLine
			n1, v1 := l.Scan([]byte(tc.line[:cut]))
			if v1 != ChunkLineMore || n1 != cut {
				if cut == len(tc.line) && v1 == ChunkLineEnd && n1 == cut {
					if l.Size() != tc.size {
						t.Fatalf("%q: size %d, want %d", tc.line, l.Size(), tc.size)
					}
					continue
				}
				t.Fatalf("%q cut at %d: first part %d %v", tc.line, cut, n1, v1)
			}
			n2, v2 := l.Scan([]byte(tc.line[cut:] + "data"))
			if v2 != ChunkLineEnd || n2 != len(tc.line)-cut || l.Size() != tc.size {
				t.Fatalf("%q cut at %d: %d %v size %d", tc.line, cut, n2, v2, l.Size())
			}
		}
	}
	for _, tc := range []struct {
		line, before string // before: the bytes taken before the refused one
	}{
		{"f; a=1\nab32b1cdaba31eb\r\n", "f; a=1"}, // the fuzz finding
		{"1;a\n", "1;a"},
		{"1\n", "1"},
		{"1;a=\"q\"\n", "1;a=\"q\""},
		{"1 \n", "1 "},
		{"1;a\rb\r\n", "1;a\r"},
		{"1\r\r\n", "1\r"},
		{"x\r\n", ""},
		{";a\r\n", ""},
		{" 1\r\n", ""},
		{"00000000000000001\r\n", "0000000000000000"},
		{"1x\r\n", "1"},
		{"1 2\r\n", "1 "},
		{"1;\r\n", "1;"},
		{"1;;a\r\n", "1;"},
		{"1;=b\r\n", "1;"},
		{"1;a=\r\n", "1;a="},
		{"1;a=;b\r\n", "1;a="},
		{"1;a b\r\n", "1;a "},
		{"1;a=b c\r\n", "1;a=b "},
		{"1;a=b\"c\"\r\n", "1;a=b"},
		{"1;a=\"q\"b\r\n", "1;a=\"q\""},
		{"1;a(b\r\n", "1;a"},
		{"1;a=b/c\r\n", "1;a=b"},
		{"1;a\x00\r\n", "1;a"},
		{"1;a=\x01\r\n", "1;a="},
		{"1;a=b\x7f\r\n", "1;a=b"},
		{"1;a=\"\x01\"\r\n", "1;a=\""},
		{"1;a=\"\r\n\"\r\n", "1;a=\""},
		{"1;a=\"\x7f\"\r\n", "1;a=\""},
		{"1;a=\"\\\x01\"\r\n", "1;a=\"\\"},
		{"1;a=\"\\\r\"\r\n", "1;a=\"\\"},
		{"1;\xff\r\n", "1;"},
		{"1;a=\xff\r\n", "1;a="},
	} {
		for cut := 0; cut <= len(tc.line); cut++ {
			var l ChunkLine
			n, v := l.Scan([]byte(tc.line[:cut]))
			if v == ChunkLineMore {
				if cut > len(tc.before) {
					t.Fatalf("%q cut at %d: not refused at byte %d", tc.line, cut, len(tc.before))
				}
				n, v = l.Scan([]byte(tc.line[cut:]))
				n += cut
			}
			if v != ChunkLineRefused || n != len(tc.before) {
				t.Fatalf("%q cut at %d: %d %v, want refused at %d", tc.line, cut, n, v, len(tc.before))
			}
		}
	}
	// a long quoted-string is still one line
	var l ChunkLine
	if _, v := l.Scan([]byte("1;a=\"" + strings.Repeat("x\\\"", 2000) + "\"\r\n")); v != ChunkLineEnd {
		t.Fatalf("long quoted-string: %v", v)
	}
}

// A chunk-size line may have MaxChunkLineBytes bytes before its LF (Pingora's
// PARTIAL_CHUNK_HEAD_LIMIT, 8 KiB): the byte past them is refused, whatever the reads.
func TestChunkLineLimit(t *testing.T) {
	for _, tc := range []struct {
		pad     int // extension bytes: "1;e=" + pad x's + CR is the line before its LF
		refused bool
	}{
		{MaxChunkLineBytes - 5, false}, // exactly MaxChunkLineBytes before the LF
		{MaxChunkLineBytes - 4, true},  // one more: the CR is the byte past the limit
		{MaxChunkLineBytes, true},
	} {
		line := "1;e=" + strings.Repeat("x", tc.pad) + "\r\n"
		for _, cut := range []int{0, 1, 4000, MaxChunkLineBytes - 1, MaxChunkLineBytes, len(line) - 1} {
			var l ChunkLine
			n, v := l.Scan([]byte(line[:cut]))
			if v == ChunkLineMore {
				n, v = l.Scan([]byte(line[cut:]))
				n += cut
			}
			switch {
			case tc.refused && (v != ChunkLineRefused || n != MaxChunkLineBytes):
				t.Fatalf("pad %d cut %d: %d %v, want refused at %d", tc.pad, cut, n, v, MaxChunkLineBytes)
			case !tc.refused && (v != ChunkLineEnd || n != len(line) || l.Size() != 1):
				t.Fatalf("pad %d cut %d: %d %v", tc.pad, cut, n, v)
			}
		}
	}
}
