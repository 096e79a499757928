package proxy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// The scanner follows heads, fixed bodies and chunked bodies whatever the read sizes.
func TestFramingScannerAnySplit(t *testing.T) {
	var b strings.Builder
	b.WriteString("\r\nPOST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i := 0; i < 3000; i++ { // many chunks: the per-head byte cap must not trip
		fmt.Fprintf(&b, "%x;ext=1\r\n%s\r\n", 7, "content")
	}
	b.WriteString("0\r\nX-Trailer: 1\r\n\r\n")
	// A body that looks like a conflicting head must not be taken for one.
	body := "GET /fake HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	fmt.Fprintf(&b, "PUT /b HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s", len(body), body)
	b.WriteString("GET /c HTTP/1.1\nHost: x\n\n")            // bare LF line ends
	b.WriteString("PROPFIND /f HTTP/1.1\r\nHost: x\r\n\r\n") // a method outside the common ones
	b.WriteString("POST /d HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n")
	stream := []byte(b.String())
	want := []headInfo{{"POST", "/a", false}, {"PUT", "/b", false}, {"GET", "/c", false}, {"PROPFIND", "/f", false}, {"POST", "/d", true}}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		c := &scanConn{}
		for rest := stream; len(rest) > 0; {
			n := 1 + rng.IntN(min(len(rest), 700))
			c.feed(rest[:n])
			rest = rest[n:]
		}
		if len(c.heads) != len(want) {
			t.Fatalf("round %d: heads %+v", round, c.heads)
		}
		for i := range want {
			if c.heads[i] != want[i] {
				t.Fatalf("round %d: head %d = %+v, want %+v", round, i, c.heads[i], want[i])
			}
		}
		if !c.take("POST", "/d") || c.take("GET", "/c") {
			t.Fatal("take must pop in order up to the matching head")
		}
	}
}

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		b, s string
		want bool
	}{
		{"content-length", "Content-Length", true}, {"CHUNKED", "chunked", true},
		{"chunke", "chunked", false}, {"chunkeD ", "chunked", false}, {"Upgrade", "upgrade", true},
		{"\xc3\xa9", "\xc3\x89", false}, // ASCII only
	} {
		if got := equalFold([]byte(tc.b), tc.s); got != tc.want {
			t.Fatalf("equalFold(%q, %q) = %v", tc.b, tc.s, got)
		}
	}
}

func TestMethodStringAllocs(t *testing.T) {
	m := []byte("OPTIONS")
	if n := testing.AllocsPerRun(100, func() { _ = methodString(m) }); n != 0 || methodString(m) != "OPTIONS" {
		t.Fatalf("%v allocations", n)
	}
}
