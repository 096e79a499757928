package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/store"
	"pingora-parity/go-baseline/internal/upstream"
)

// rawUpstream is a TCP upstream that records each request's request line and answers
// every request with the bytes answer (then closes the connection).
type rawUpstream struct {
	ln     net.Listener
	mu     sync.Mutex
	lines  []string
	answer string
}

func newRawUpstream(t *testing.T, answer string) *rawUpstream {
	t.Helper()
	u := &rawUpstream{answer: answer}
	u.ln = acceptLoop(t, u.serve)
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	u.mu.Lock()
	u.lines = append(u.lines, strings.TrimRight(line, "\r\n"))
	u.mu.Unlock()
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" || l == "\n" {
			break
		}
	}
	_, _ = io.WriteString(c, u.answer)
}

func (u *rawUpstream) requestLines() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.lines...)
}

// The request-target reaches the upstream byte for byte (RFC 9110 section 7.7): no
// query re-encoding (';', malformed escapes), no path re-escaping; an absolute-form
// target (RFC 9112 section 3.2.2) is forwarded as its origin-form part.
func TestRequestTargetForwardedByteForByte(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, tc := range []struct{ sent, want string }{
		{"/q?a=1;b=2&c=%zz&d=%7e", ""},
		{"/p%7e/%2F/%2f/x%20y?z=%2B+1", ""},
		{"/a\"b{c}|d^e\\f?g{h}|i^j`k", ""},
		{"/p?", ""},
		{"/p?&&a==b&", ""},
		{"/", ""},
		{"//double//slash?x=%zz", ""},
		{"//\"", ""}, // net/url would escape these: the request line is rewritten (upstream.HeadConn.RewriteTarget)
		{"//{x}", ""},
		{"//a|b^c?d", ""},
		{"http://front.example:8080//a|b", "//a|b"},
		{"http://front.example:8080/abs/p?x=1;y", "/abs/p?x=1;y"},
		{"http://front.example:8080?x", "/?x"},
		{"http://front.example:8080", "/"},
	} {
		want := tc.want
		if want == "" {
			want = tc.sent
		}
		before := len(up.requestLines())
		out := rawExchange(t, r.url, "GET "+tc.sent+" HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200") {
			t.Fatalf("%q: %.80q", tc.sent, out)
		}
		lines := up.requestLines()
		if len(lines) != before+1 || lines[before] != "GET "+want+" HTTP/1.1" {
			t.Fatalf("sent %q, upstream got %q, want %q", tc.sent, lines[before:], "GET "+want+" HTTP/1.1")
		}
	}
}

// A status line that is not HTTP/1.x, or whose status is outside 100..599 (RFC 9110
// section 15), is 502 upstream_protocol_error (section 3 step 7): a breaker failure of
// kind protocol, not retried.
func TestNonHTTP1StatusLineIs502(t *testing.T) {
	// HTTP/1.2 and HTTP/1.9 too: only HTTP/1.0 and HTTP/1.1 are read, as by the Pingora
	// router's parser (parity fuzz: "HTTP/1.2 304" forwarded by Go, 502 by Pingora).
	for _, line := range []string{"HTTP/2.0 200 OK", "HTTP/0.9 200 OK", "HTTP/3.0 200 OK", "HTTP/1.1 099 Low",
		"HTTP/1.1 000 Zero", "HTTP/1.1 600 High", "HTTP/1.1 999 Odd", "HTTP/1.2 200 OK", "HTTP/1.9 304 Odd"} {
		proto := line
		up := newRawUpstream(t, line+"\r\nContent-Length: 2\r\n\r\nok")
		fb := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "fb", 4, 1000,
			`,"circuit_breaker":{"failure_threshold":1,"open_ms":60000,"half_open_max_requests":1,"success_threshold":1}`),
			`"fb":`+placement(fb.ln.Addr().String(), "", 4, 1000, "")))
		wantRouterError(t, get(t, r.url, "k"), 502, "upstream_protocol_error", "p")
		if counter(t, r, "failures", "p", "protocol") != 1 || len(fb.requestLines()) != 0 {
			t.Fatalf("%s: protocol failures %v, fallback hits %d", proto, counter(t, r, "failures", "p", "protocol"), len(fb.requestLines()))
		}
		// The breaker (threshold 1) has opened: the next request goes to the fallback.
		if resp := get(t, r.url, "k"); resp.StatusCode != 200 || resp.Header.Get("X-Router-Placement") != "fb" {
			t.Fatalf("%s: after the failure: %d from %q", proto, resp.StatusCode, resp.Header.Get("X-Router-Placement"))
		}
	}
	// HTTP/1.0 and HTTP/1.1 pass, and so do the edges of 100..599.
	for _, line := range []string{"HTTP/1.0 200 OK", "HTTP/1.1 200 OK", "HTTP/1.1 599 Edge", "HTTP/1.1 299 Odd"} {
		up := newRawUpstream(t, line+"\r\nContent-Length: 2\r\n\r\nok")
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
		want, _ := strconv.Atoi(strings.Fields(line)[1])
		if resp := get(t, r.url, "k"); resp.StatusCode != want || readAll(t, resp) != "ok" {
			t.Fatalf("%s: %d", line, resp.StatusCode)
		}
	}
}

// orderlyExchange writes req on a new connection (in the background, the router may
// answer before it has read it all) and reads until the router closes. It returns what
// was read and the read's error: nil for an orderly close (FIN), an error such as
// "connection reset by peer" when the router closed with unread input.
func orderlyExchange(t *testing.T, addr string, req []byte) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = c.Write(req) }()
	// Let the router answer and close while the request bytes are still arriving or
	// unread, as a client that reads only after sending would.
	time.Sleep(50 * time.Millisecond)
	b, err := io.ReadAll(c)
	return string(b), err
}

// Every answer to a request that was not read whole reaches the client and ends in an
// orderly close, not a reset (RFC 9112 section 9.6): the gate's 431 and 400 (a bad
// header line, Content-Length + Transfer-Encoding), and router-made answers to a request
// whose body was never read.
func TestAnswersToUnreadRequestsCloseOrderly(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	entered, release := make(chan struct{}, 1), make(chan struct{})
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer busy.Close()
	defer close(release)
	r := newRouter(t, doc(`"k":"p","full":"lim"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, ""),
		`"lim":`+placement(hostPort(busy.URL), "", 1, 10000, "")))
	empty := newRouter(t, "")
	go func() { // holds lim's only slot
		if resp, err := http.DefaultClient.Do(mustRequest(r.url, "full")); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	body := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name, url, req, want string
	}{
		{"431", r.url, "GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nCookie: " + strings.Repeat("c", 70000) + "\r\n\r\n",
			"HTTP/1.1 431 "},
		{"400 bad header", r.url, "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n" + body, "HTTP/1.1 400 "},
		{"400 CL+TE", r.url, "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"100000\r\n" + body + "\r\n0\r\n\r\n", "HTTP/1.1 400 "},
		{"503 no_config", empty.url, "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: 1048576\r\n\r\n" + body,
			"HTTP/1.1 503 "},
		{"404 unknown key, chunked", r.url, "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: nope\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"100000\r\n" + body + "\r\n0\r\n\r\n", "HTTP/1.1 404 "},
		{"503 concurrency_limit", r.url, "POST / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: full\r\nContent-Length: 1048576\r\n\r\n" + body,
			"HTTP/1.1 503 "},
	} {
		out, err := orderlyExchange(t, hostPort(tc.url), []byte(tc.req))
		if err != nil || !strings.HasPrefix(out, tc.want) {
			t.Errorf("%s: read %.40q, error %v; want %q and an orderly close", tc.name, out, err, tc.want)
		}
	}
}

func mustRequest(url, key string) *http.Request {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("X-Routing-Key", key)
	return req
}

// floodUntilClosed writes req, then writes without end, and returns how long it took
// until a write failed (the router closed the socket for good).
func floodUntilClosed(t *testing.T, addr, req string) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, req); err != nil {
		return time.Since(start)
	}
	chunk := make([]byte, 16<<10)
	for {
		if _, err := c.Write(chunk); err != nil {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond) // ~16 MB/s: a byte bound of 16 MiB is about a second away
	}
}

// The lingering close is bounded in time and in bytes: a client that keeps sending
// after the answer is cut off.
func TestLingeringCloseIsBounded(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: x\r\nCookie: " + strings.Repeat("c", 70000) + "\r\n\r\n"
	byTime := newRouterWith(t, "", Listener{LingerTime: 300 * time.Millisecond})
	if d := floodUntilClosed(t, hostPort(byTime.url), head); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("time bound 300 ms: closed after %v", d)
	}
	byBytes := newRouterWith(t, "", Listener{LingerTime: time.Minute, LingerBytes: 256 << 10})
	if d := floodUntilClosed(t, hostPort(byBytes.url), head); d > 5*time.Second {
		t.Fatalf("byte bound 256 KiB: closed after %v", d)
	}
}

// An upstream that answers before it has the whole request body, and sends its own body
// later, gets the rest of the request body and its answer reaches the client whole.
// net/http's server, when the response head is written, reads ("discards") what is left
// of the request body and closes it unless the handler declared full duplex; the
// transport still streaming that body upstream then failed with "invalid Read on closed
// Body", closed the upstream connection and the client got the head and a cut body: the
// intermittent large-upload failure, made deterministic here.
func TestUpstreamAnswersBeforeTheBodyEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		first := make([]byte, 5)
		_, _ = io.ReadFull(req.Body, first)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
		rest, _ := io.ReadAll(req.Body)
		got <- string(first) + string(rest)
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(c, "received")
		time.Sleep(100 * time.Millisecond)
	}()
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(ln.Addr().String(), "", 4, 5000, "")))
	c, err := net.Dial("tcp", hostPort(r.url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: 10\r\n\r\nhello")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "world") // the rest of the request body, after the response head
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "received" || err != nil {
		t.Fatalf("%d %q %v", resp.StatusCode, body, err)
	}
	select {
	case b := <-got:
		if b != "helloworld" {
			t.Fatalf("upstream got body %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream did not get the body")
	}
	if counter(t, r, "failures", "p", "aborted") != 0 {
		t.Fatal("counted as an aborted response")
	}
}

// slowLastWrite delays the transport's writer goroutine after the write that completes
// the request body, as a busy 2-core machine can.
type slowLastWrite struct {
	net.Conn
	total, after int
	slept        bool
}

func (c *slowLastWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.total += n
	if c.total >= c.after && !c.slept {
		c.slept = true
		time.Sleep(100 * time.Millisecond)
	}
	return n, err
}

// The large-upload shape of the same race: the upstream has the whole body and answers
// while the transport's writer has not yet made its final read of the request body; the
// server had closed that body when the response head was written, so the final read
// failed, the upstream connection was closed and the response body was cut.
func TestUploadAnsweredWhileTheWriterLags(t *testing.T) {
	const size = 1 << 20
	ln := scriptedUpstream(t, func(c net.Conn, _ *http.Request, n int64) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Received-Bytes: %d\r\n\r\n", n)
		time.Sleep(300 * time.Millisecond) // after the lagging writer's last read
		_, _ = io.WriteString(c, "received")
		return true
	})
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(ln.Addr().String(), "", 4, 5000, "")))
	tr := r.store.Load().Placements["p"].Peers[0].Upstream.(*upstream.Upstream).Transport
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowLastWrite{Conn: c, after: size}, nil
	}
	req, _ := http.NewRequest("POST", r.url, strings.NewReader(strings.Repeat("a", size)))
	req.Header.Set("X-Routing-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Received-Bytes") != strconv.Itoa(size) || string(body) != "received" || err != nil {
		t.Fatalf("%d %q body %q err %v", resp.StatusCode, resp.Header.Get("X-Received-Bytes"), body, err)
	}
	if counter(t, r, "failures", "p", "aborted") != 0 {
		t.Fatal("counted as an aborted response")
	}
}

// The authority-form belongs to CONNECT and the asterisk-form to OPTIONS (RFC 9112
// sections 3.2.3, 3.2.4); with another method they are a bad request, not forwarded.
func TestTargetFormsOutOfPlaceAre400(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, line := range []string{"GET front.example:443 HTTP/1.1", "GET * HTTP/1.1", "POST * HTTP/1.1"} {
		out := rawExchange(t, r.url, line+"\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") {
			t.Fatalf("%q: %.80q", line, out)
		}
	}
	if n := len(up.requestLines()); n != 0 {
		t.Fatalf("upstream got %d requests", n)
	}
	if targetFormAllowed("CONNECT", "a:443") || !targetFormAllowed("OPTIONS", "*") ||
		!targetFormAllowed("GET", "http://a/b") || !targetFormAllowed("GET", "/") {
		t.Fatal("allowed forms refused")
	}
}

// An upstream's interim (1xx) responses reach an HTTP/1.1 client but not an HTTP/1.0
// one (RFC 9110 section 15.2).
func TestNoInterimResponsesToHTTP10Clients(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	out := rawExchange(t, r.url, "GET / HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(out, "ok") {
		t.Fatalf("HTTP/1.0 client got %q", out)
	}
	out = rawExchange(t, r.url, "GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 103 Early Hints\r\n") || !strings.Contains(out, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("HTTP/1.1 client got %q", out)
	}
}

// A Host whose port is not a number is a bad request (RFC 9110 section 7.2).
func TestHostWithBadPortIs400(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"a.example", true}, {"a.example:80", true}, {"a.example:", true}, {"[::1]:80", true}, {"[::1]", true},
		{"", true}, {"a.example:abc", false}, {"a.example:8o", false}, {"[::1]x", false}, {"[::1", false},
	} {
		if hostPortValid(tc.host) != tc.ok {
			t.Fatalf("hostPortValid(%q) = %v", tc.host, !tc.ok)
		}
	}
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	out := rawExchange(t, r.url, "GET /hp HTTP/1.1\r\nHost: a.example:abc\r\nX-Routing-Key: k\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") || len(up.requestLines()) != 0 {
		t.Fatalf("%.80q, upstream got %v", out, up.requestLines())
	}
}

// Transfer-Encoding in an HTTP/1.0 request is faulty framing (RFC 9112 section 6.1):
// 400 and close, nothing forwarded; net/http would ignore it and, on a keep-alive
// connection, read the chunked body as a second request.
func TestHTTP10TransferEncodingIs400(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	smuggled := "GET /smuggled HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n"
	out, err := orderlyExchange(t, hostPort(r.url), []byte("POST /t HTTP/1.0\r\nConnection: keep-alive\r\nX-Routing-Key: k\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n"+fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)))
	if err != nil || !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") ||
		strings.Count(out, "HTTP/1.") != 1 {
		t.Fatalf("%q %v", out, err)
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %v", lines)
	}
}

// CONNECT is refused whatever its target (the router proxies no tunnels): a router-made
// 400 bad_request, counted, with Connection: close, and nothing reaches the upstream.
func TestConnectIs400(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	targets := []string{up.ln.Addr().String(), "/c", "http://a.example/c"}
	for _, target := range targets {
		out := rawExchange(t, r.url, "CONNECT "+target+" HTTP/1.1\r\nHost: "+up.ln.Addr().String()+"\r\nX-Routing-Key: k\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") ||
			!strings.Contains(out, "Connection: close") || !strings.Contains(out, `{"error":"bad_request"`) {
			t.Fatalf("CONNECT %s: %q", target, out)
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %v", lines)
	}
	if n := counter(t, r, "errors", "bad_request"); n != float64(len(targets)) {
		t.Fatalf("router_errors_total{code=bad_request} = %v", n)
	}
}

// "OPTIONS *" is forwarded as "OPTIONS *" (RFC 9110 section 9.3.7), byte for byte, and
// the upstream's answer reaches the client.
func TestOptionsAsteriskForwarded(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 204 No Content\r\nAllow: GET, OPTIONS\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	out := rawExchange(t, r.url, "OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 204 ") || !strings.Contains(out, "Allow: GET, OPTIONS") {
		t.Fatalf("client got %q", out)
	}
	if lines := up.requestLines(); len(lines) != 1 || lines[0] != "OPTIONS * HTTP/1.1" {
		t.Fatalf("upstream got %q", lines)
	}
}

// Host (RFC 9112 section 3.2): an HTTP/1.1 request without Host, with two, or with an
// invalid one is the router's 400 (X-Router-Error, counted) and is not forwarded: the
// gate answers the kinds net/http would refuse itself, the handler the empty Host and the
// bad port. An HTTP/1.0 request without Host is forwarded, with no X-Forwarded-Host at all.
func TestHostRules(t *testing.T) {
	up, seenHeaders := headerUpstream(t)
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(hostPort(up.URL), "", 4, 1000, "")))
	for _, tc := range []struct{ name, host string }{
		{"no Host", ""},
		{"two Hosts", "Host: a.example\r\nHost: b.example\r\n"},
		{"space", "Host: a b.example\r\n"},
		{"slash", "Host: a.example/evil\r\n"},
		{"empty", "Host: \r\n"},
		{"empty, no space", "Host:\r\n"},
		{"port not a number", "Host: a.example:8o\r\n"},
	} {
		out := rawExchange(t, r.url, "GET /h HTTP/1.1\r\n"+tc.host+"X-Routing-Key: k\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") {
			t.Errorf("%s: %.120q", tc.name, out)
		}
	}
	if n := len(seenHeaders()); n != 0 {
		t.Fatalf("upstream got %d requests", n)
	}
	if got := counter(t, r, "errors", "bad_request"); got != 7 {
		t.Fatalf("router_errors_total{code=bad_request} = %v, want 7", got)
	}

	out := rawExchange(t, r.url, "GET /h10 HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.0 200 ") {
		t.Fatalf("HTTP/1.0 without Host: %q", out)
	}
	out = rawExchange(t, r.url, "GET /h10 HTTP/1.0\r\nHost: front.example\r\nX-Routing-Key: k\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.0 200 ") {
		t.Fatalf("HTTP/1.0 with Host: %q", out)
	}
	seen := seenHeaders()
	if len(seen) != 2 {
		t.Fatalf("upstream got %d requests, want 2", len(seen))
	}
	if v, ok := seen[0]["X-Forwarded-Host"]; ok {
		t.Fatalf("HTTP/1.0 without Host: X-Forwarded-Host %q sent", v)
	}
	if v := seen[1].Get("X-Forwarded-Host"); v != "front.example" {
		t.Fatalf("HTTP/1.0 with Host: X-Forwarded-Host %q", v)
	}
}

// expectExchange sends the head of a request with "Expect: 100-continue" and a body of
// len(body) bytes, waits up to wait for the router to answer something, sends the body
// unless the connection has closed, and returns everything read until the close.
func expectExchange(t *testing.T, url, path, body string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", hostPort(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: %d\r\n"+
		"Expect: 100-continue\r\nConnection: close\r\n\r\n", path, len(body))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	got = append(got, buf[:n]...)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		_, _ = io.WriteString(c, body)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, _ := io.ReadAll(c)
	return string(append(got, rest...))
}

// "Expect: 100-continue": the client receives one 100 Continue for the upstream's one (RFC 9110
// section 10.1.1), the upstream's when it sends one, and none when the upstream answers
// with a final status without reading the body.
func TestExpectContinueAtMostOne100(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusExpectationFailed) // body never read: net/http sends no 100
			return
		}
		b, _ := io.ReadAll(r.Body) // net/http sends its 100 Continue on this read
		_, _ = io.WriteString(w, "got "+string(b))
	}))
	defer up.Close()
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(hostPort(up.URL), "", 4, 5000, "")))
	for i := 0; i < 20; i++ {
		out := expectExchange(t, r.url, "/e", "hello", 3*time.Second)
		if n := strings.Count(out, "100 Continue"); n != 1 || !strings.HasPrefix(out, "HTTP/1.1 100 Continue\r\n") ||
			!strings.Contains(out, "HTTP/1.1 200 OK") || !strings.HasSuffix(out, "got hello") {
			t.Fatalf("run %d: %d 100 Continue in %q", i, n, out)
		}
	}
	out := expectExchange(t, r.url, "/refuse", "hello", 3*time.Second)
	if strings.Contains(out, "100 Continue") || !strings.HasPrefix(out, "HTTP/1.1 417 ") {
		t.Fatalf("refused upload: %q", out)
	}

	// An upstream that ignores the expectation (sends no 100, waits for the body): after
	// upstream.ExpectContinueWait the body is sent anyway, and the 100 the client gets is
	// net/http's, once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for { // the head
			if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
				break
			}
		}
		body := make([]byte, 5)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\ngot "+string(body))
	}()
	silent := newRouter(t, doc(`"k":"p"`, `"p":`+placement(ln.Addr().String(), "", 4, 5000, "")))
	out = expectExchange(t, silent.url, "/silent", "hello", 3*time.Second)
	if n := strings.Count(out, "100 Continue"); n != 1 || !strings.HasSuffix(out, "got hello") {
		t.Fatalf("silent upstream: %d 100 Continue in %q", n, out)
	}
}

// sizedHead is a GET head of exactly size bytes (request line through the final CRLF)
// that routes to key k, padded with an X-Pad field.
func sizedHead(size int) string {
	const pre, post = "GET /sized HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\nX-Pad: ", "\r\n\r\n"
	return pre + strings.Repeat("p", size-len(pre)-len(post)) + post
}

// Every request head net/http would refuse before the handler runs (its own text/plain
// 400, 431, 501, 505, 417), and every one the router refuses that net/http would accept
// (folded lines, CL+TE, Transfer-Encoding in HTTP/1.0), gets the router's own answer
// (docs/spec.md section 3): the status, X-Router-Error, Content-Type: application/json,
// the JSON body, counted in router_errors_total{code}; nothing reaches the upstream, and
// the connection ends with FIN (no reset), even when the client is still sending. The
// only head limit is 64 KiB of bytes: 257 small header lines, or a head of exactly 65536
// bytes, are forwarded.
func TestRefusedHeadsGetTheRoutersAnswer(t *testing.T) {
	const ok, key = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "X-Routing-Key: k\r\n"
	many := strings.Repeat("X-Field-n: v\r\n", 257) // 257 lines of 14 bytes
	for _, tc := range []struct {
		name, req string
		status    int    // 0: forwarded, 200
		code      string // X-Router-Error
	}{
		{"missing Host", "GET /a HTTP/1.1\r\n" + key + "\r\n", 400, "bad_request"},
		{"Host with a space", "GET /a HTTP/1.1\r\nHost: a b.example\r\n" + key + "\r\n", 400, "bad_request"},
		{"Host with a slash", "GET /a HTTP/1.1\r\nHost: a.example/evil\r\n" + key + "\r\n", 400, "bad_request"},
		{"two Hosts", "GET /a HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n" + key + "\r\n", 400, "bad_request"},
		{"/% target", "GET /% HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"/%zz target", "GET /%zz HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"CTL in target", "GET /a\x01b HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"bad request line", "GET /a\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"two spaces in request line", "GET  /a HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"method not a token", "G(T /a HTTP/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"version HTTP/2.0", "GET /a HTTP/2.0\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"version garbage", "GET /a HTTX/1.1\r\nHost: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"bad header name byte", "GET /a HTTP/1.1\r\nHost: x\r\nX\"Bad: 1\r\n" + key + "\r\n", 400, "bad_request"},
		{"space before colon", "GET /a HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n" + key + "\r\n", 400, "bad_request"},
		{"no colon", "GET /a HTTP/1.1\r\nHost: x\r\nBad Header\r\n" + key + "\r\n", 400, "bad_request"},
		{"empty name", "GET /a HTTP/1.1\r\nHost: x\r\n: v\r\n" + key + "\r\n", 400, "bad_request"},
		{"CTL in value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n" + key + "\r\n", 400, "bad_request"},
		{"bare CR in value", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n" + key + "\r\n", 400, "bad_request"},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n" + key + "\r\n", 400, "bad_request"},
		{"first field line folded", "GET /a HTTP/1.1\r\n Host: x\r\n" + key + "\r\n", 400, "bad_request"},
		{"CL two values", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400, "bad_request"},
		{"CL 1,1", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 1,1\r\n\r\na", 400, "bad_request"},
		{"CL +5", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: +5\r\n\r\nabcde", 400, "bad_request"},
		{"CL -1", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: -1\r\n\r\n", 400, "bad_request"},
		{"CL empty", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length:\r\n\r\n", 400, "bad_request"},
		{"CL over 2^63-1", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 9223372036854775808\r\n\r\n", 400, "bad_request"},
		{"TE gzip", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: gzip\r\n\r\n", 400, "bad_request"},
		{"TE gzip, chunked", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"TE twice", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"TE in HTTP/1.0", "POST /a HTTP/1.0\r\n" + key + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"Trailer: Content-Length", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Transfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n", 400, "bad_request"},
		{"Expect: foo", "POST /a HTTP/1.1\r\nHost: x\r\n" + key + "Expect: foo\r\nContent-Length: 1\r\n\r\na", 400, "bad_request"},
		{"head of 65537 bytes", sizedHead(MaxHeadBytes + 1), 431, "request_headers_too_large"},
		{"70,000-byte Cookie", "GET /a HTTP/1.1\r\nHost: x\r\n" + key + "Cookie: " + strings.Repeat("c", 70000) + "\r\n\r\n", 431, "request_headers_too_large"},
		{"head of 65536 bytes", sizedHead(MaxHeadBytes), 0, ""},
		{"257 header lines", "GET /many HTTP/1.1\r\nHost: x\r\n" + key + many + "Connection: close\r\n\r\n", 0, ""},
		{"empty lines before the request line", "\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n" + key + "Connection: close\r\n\r\n", 0, ""},
	} {
		up := newRawUpstream(t, ok)
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
		out, err := orderlyExchange(t, hostPort(r.url), []byte(tc.req))
		if err != nil {
			t.Errorf("%s: the connection did not end with FIN: %v", tc.name, err)
			continue
		}
		resp, rerr := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
		if rerr != nil {
			t.Errorf("%s: unreadable answer %.100q: %v", tc.name, out, rerr)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if tc.status == 0 {
			if resp.StatusCode != 200 || string(body) != "ok" || len(up.requestLines()) != 1 {
				t.Errorf("%s: %d %q, upstream got %q; want it forwarded", tc.name, resp.StatusCode, body, up.requestLines())
			}
			continue
		}
		want := ""
		for _, c := range errcode.All() {
			if c.String() == tc.code {
				want = `{"error":"` + tc.code + `","message":"` + c.Message() + `"}`
			}
		}
		if resp.StatusCode != tc.status || resp.Header.Get("X-Router-Error") != tc.code ||
			resp.Header.Get("Content-Type") != "application/json" || !resp.Close ||
			string(body) != want || !json.Valid(body) {
			t.Errorf("%s: %d error=%q ct=%q close=%v body %q", tc.name, resp.StatusCode, resp.Header.Get("X-Router-Error"),
				resp.Header.Get("Content-Type"), resp.Close, body)
		}
		if n := counter(t, r, "errors", tc.code); n != 1 {
			t.Errorf("%s: router_errors_total{code=%q} = %v", tc.name, tc.code, n)
		}
		if lines := up.requestLines(); len(lines) != 0 {
			t.Errorf("%s: upstream got %q", tc.name, lines)
		}
		if strings.Count(out, "HTTP/1.") != 1 {
			t.Errorf("%s: more than one answer: %q", tc.name, out)
		}
	}
}

// A refused head behind pipelined requests: those before it are forwarded and answered
// in order, then the router's 400, then FIN; nothing after the refused head is read as a
// request.
func TestRefusedHeadAfterPipelinedRequests(t *testing.T) {
	// Connection: close, as rawUpstream closes after each answer: without it the POST
	// could go to a pooled connection the upstream is closing, and a request with a body
	// is not retried (a 502, not what this test is about).
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	req := "GET /one HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /bad HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nX-Routing-Key: k\r\n\r\n" +
		"GET /after HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n"
	out, err := orderlyExchange(t, hostPort(r.url), []byte(req))
	if err != nil {
		t.Fatalf("no FIN: %v", err)
	}
	br := bufio.NewReader(strings.NewReader(out))
	for i, want := range []int{200, 200, 400} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v in %q", i, err, out)
		}
		_, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != want || (want == 400 && resp.Header.Get("X-Router-Error") != "bad_request") {
			t.Fatalf("answer %d: %d %q", i, resp.StatusCode, resp.Header.Get("X-Router-Error"))
		}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("after the 400: %q", rest)
	}
	if lines := up.requestLines(); len(lines) != 2 || lines[0] != "GET /one HTTP/1.1" || lines[1] != "POST /two HTTP/1.1" {
		t.Fatalf("upstream got %q", lines)
	}
}

// syncBuffer is a bytes.Buffer safe for the access log's writer and the test's reader.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The access-log line of a refused head names the head's method and path, not the
// stand-in's, with the status and the error code.
func TestRefusedHeadAccessLog(t *testing.T) {
	st := store.New()
	t.Cleanup(st.Close)
	var logBuf syncBuffer
	srv := httptest.NewUnstartedServer(New(st, metrics.New(st), &logBuf))
	srv.Listener = Listener{Listener: srv.Listener}
	srv.Config.ConnContext = ConnContext
	srv.Config.MaxHeaderBytes = ServerMaxHeaderBytes
	srv.Start()
	t.Cleanup(srv.Close)
	out := rawExchange(t, srv.URL, "PUT /x%zz?q=1 HTTP/1.1\r\nHost: a\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 400 ") {
		t.Fatalf("%q", out)
	}
	var line struct {
		Method, Path, Error string
		Status              int
	}
	waitFor(t, "the access-log line", func() bool { return strings.Contains(logBuf.String(), "\n") })
	if err := json.Unmarshal([]byte(logBuf.String()), &line); err != nil {
		t.Fatalf("%v: %q", err, logBuf.String())
	}
	if line.Method != "PUT" || line.Path != "/x%zz" || line.Status != 400 || line.Error != "bad_request" {
		t.Fatalf("access log %q", logBuf.String())
	}
}

// A response field named in the upstream's Connection is hop-by-hop even when that
// Connection also says "close" (RFC 9110 section 7.6.1), on a plain response and on the
// final response after an interim one; net/http deletes such a Connection before
// ReverseProxy sees it.
func TestConnectionCloseNominatedResponseFieldsRemoved(t *testing.T) {
	for _, answer := range []string{
		"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nconnection: x-hop\r\nConnection: Close\r\nX-Hop: 1\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close,X-Hop\r\nX-Hop: 1\r\nX-Kept: 1\r\n\r\nok",
	} {
		up := newRawUpstream(t, answer)
		r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
		resp := get(t, r.url, "k")
		if body := readAll(t, resp); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%q: %d %q", answer, resp.StatusCode, body)
		}
		if _, ok := resp.Header["X-Hop"]; ok || resp.Header.Get("X-Kept") != "1" {
			t.Fatalf("%q: client got %v", answer, resp.Header)
		}
	}
}

// headerUpstream is an upstream that records the header of each request it serves.
func headerUpstream(t *testing.T) (*httptest.Server, func() []http.Header) {
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	return up, func() []http.Header {
		mu.Lock()
		defer mu.Unlock()
		return append([]http.Header(nil), seen...)
	}
}

// An HTTP/1.0 request is never an upgrade (RFC 9110 section 7.8): its Upgrade and its
// "Connection: upgrade" are hop-by-hop and go no further; the same head in HTTP/1.1 is
// an upgrade request and goes up with "Connection: Upgrade".
func TestHTTP10UpgradeNotForwarded(t *testing.T) {
	up, seen := headerUpstream(t)
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(hostPort(up.URL), "", 4, 1000, "")))
	out := rawExchange(t, r.url, "GET /u HTTP/1.0\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Routing-Key: k\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.0 200 ") {
		t.Fatalf("HTTP/1.0 client got %q", out)
	}
	h := seen()
	if len(h) != 1 {
		t.Fatalf("upstream got %d requests", len(h))
	}
	if v, ok := h[0]["Upgrade"]; ok {
		t.Fatalf("Upgrade %q forwarded for an HTTP/1.0 request", v)
	}
	if v, ok := h[0]["Connection"]; ok {
		t.Fatalf("Connection %q forwarded for an HTTP/1.0 request", v)
	}
	rawExchange(t, r.url, "GET /u HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Routing-Key: k\r\n\r\n")
	if h = seen(); len(h) != 2 || h[1].Get("Upgrade") != "websocket" || h[1].Get("Connection") != "Upgrade" {
		t.Fatalf("HTTP/1.1 upgrade request went up as %v", h)
	}
}

// An X-Forwarded-For named in Connection is hop-by-hop: the incoming value is dropped and
// the router's X-Forwarded-For is the client address alone (the Pingora router's
// upstream_request does the same).
func TestNominatedXForwardedForIsNotAppendedTo(t *testing.T) {
	up, seen := headerUpstream(t)
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(hostPort(up.URL), "", 4, 1000, "")))
	for _, conn := range []string{"X-Forwarded-For", "close, x-forwarded-for", "keep-alive,  X-FORWARDED-FOR "} {
		rawExchange(t, r.url, "GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: "+conn+"\r\nX-Forwarded-For: 10.0.0.1\r\n"+
			"X-Forwarded-For: 10.0.0.2\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
	}
	rawExchange(t, r.url, "GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: close, X-Other\r\nX-Forwarded-For: 10.0.0.1\r\nX-Routing-Key: k\r\n\r\n")
	h := seen()
	if len(h) != 4 {
		t.Fatalf("upstream got %d requests", len(h))
	}
	for i, hh := range h[:3] {
		if v := hh["X-Forwarded-For"]; len(v) != 1 || v[0] != "127.0.0.1" {
			t.Fatalf("request %d: X-Forwarded-For %q", i, v)
		}
	}
	if v := h[3]["X-Forwarded-For"]; len(v) != 1 || v[0] != "10.0.0.1, 127.0.0.1" {
		t.Fatalf("not nominated: X-Forwarded-For %q", v)
	}
}

// With an absolute-form target the received Host is ignored (RFC 9112 section 3.2.2):
// whatever its value, the request is forwarded with the target's origin-form and
// X-Forwarded-Host = the target's authority, as the Pingora router does. One Host line
// at most still, and HTTP/1.1 still needs one.
func TestAbsoluteFormIgnoresTheReceivedHost(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	hu, seen := headerUpstream(t)
	r := newRouter(t, doc(`"k":"p","h":"q"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, ""),
		`"q":`+placement(hostPort(hu.URL), "", 4, 1000, "")))
	hosts := []string{"Host: a b.example\r\n", "Host: a.example/evil\r\n", "Host: a.example:abc\r\n", "Host: \r\n",
		"Host:\r\n", "Host: u@a.example\r\n", "Host: a, b\r\n"}
	for _, host := range hosts {
		for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
			out := rawExchange(t, r.url, "GET HTTP://front.example:8080/p?x=1 "+proto+"\r\n"+host+"X-Routing-Key: k\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, proto+" 200 ") {
				t.Fatalf("%s %q: %.120q", proto, host, out)
			}
			rawExchange(t, r.url, "GET http://front.example:8080/p?x=1 "+proto+"\r\n"+host+"X-Routing-Key: h\r\nConnection: close\r\n\r\n")
		}
	}
	if lines := up.requestLines(); len(lines) != 2*len(hosts) || lines[0] != "GET /p?x=1 HTTP/1.1" {
		t.Fatalf("upstream got %q", lines)
	}
	for i, h := range seen() {
		if v := h["X-Forwarded-Host"]; len(v) != 1 || v[0] != "front.example:8080" {
			t.Fatalf("request %d: X-Forwarded-Host %q", i, v)
		}
	}
	for _, tc := range []string{
		"GET http://front.example/p HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
		"GET http://front.example/p HTTP/1.1\r\n",
	} {
		out := rawExchange(t, r.url, tc+"X-Routing-Key: k\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") {
			t.Fatalf("%q: %.120q", tc, out)
		}
	}
	// HTTP/1.0 without Host: the target's authority is the client's host.
	rawExchange(t, r.url, "GET http://front.example/p HTTP/1.0\r\nX-Routing-Key: h\r\n\r\n")
	if h := seen(); h[len(h)-1].Get("X-Forwarded-Host") != "front.example" {
		t.Fatalf("HTTP/1.0 without Host: X-Forwarded-Host %q", h[len(h)-1]["X-Forwarded-Host"])
	}
}

// An empty Host field line is a bad request in HTTP/1.0 too (docs/spec.md section 3,
// Host: a Host an HTTP/1.0 request sends follows the same rules); a missing one is not.
func TestHTTP10EmptyHostIs400(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, host := range []string{"Host:\r\n", "Host: \r\n", "Host: \t \r\n"} {
		out := rawExchange(t, r.url, "GET /e HTTP/1.0\r\n"+host+"X-Routing-Key: k\r\n\r\n")
		if !strings.Contains(out, " 400 ") || !strings.Contains(out, "X-Router-Error: bad_request") {
			t.Fatalf("%q: %.120q", host, out)
		}
	}
	if lines := up.requestLines(); len(lines) != 0 {
		t.Fatalf("upstream got %q", lines)
	}
	if out := rawExchange(t, r.url, "GET /e HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.0 200 ") {
		t.Fatalf("HTTP/1.0 without Host: %.120q", out)
	}
}

// White space between a field name and the colon in an upstream response is removed
// before the response goes on (RFC 9112 section 5.1): "Content-Length : 2" frames the
// body as Content-Length 2, not as a body read to the close.
func TestWhiteSpaceBeforeTheColonRemovedFromResponses(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length : 2\r\nX-Pad \t: v\r\n\r\nok")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	out := rawExchange(t, r.url, "GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "\r\nContent-Length: 2") ||
		strings.Contains(head, "Transfer-Encoding") || !strings.Contains(head, "\r\nX-Pad: v") || body != "ok" {
		t.Fatalf("client got %q", out)
	}
}

// keep-alive in any Connection line of an HTTP/1.0 request keeps the connection after a
// response with a length (RFC 9110 section 5.3: the lines are one list; RFC 9112 section
// 9.3; docs/spec.md section 3, "HTTP/1.0 clients"): net/http's wantsHttp10KeepAlive reads
// the first line only and closed it (parity fuzz seed 1 case 93020,
// http10.client-header-connection); the gate now puts keep-alive in a first line. The head
// arrives whole (passed in place) or split across writes (held).
func TestHTTP10KeepAliveInALaterConnectionLine(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	first := "GET /1 HTTP/1.0\r\nX-Routing-Key: k\r\nConnection: x-a\r\nConnection: upgrade, keep-alive\r\n\r\n"
	second := "GET /2 HTTP/1.0\r\nX-Routing-Key: k\r\nConnection: vvv\r\nConnection: Keep-Alive\r\n\r\nGET /3 HTTP/1.0\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n"
	// (the first request's upgrade token does not turn the gate off: an HTTP/1.0 request is
	// never an upgrade, so the second head is followed too)
	for _, writes := range [][]string{{first + second}, {first[:40], first[40:], second}} {
		c, err := net.Dial("tcp", hostPort(r.url))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		for _, w := range writes {
			if _, err := io.WriteString(c, w); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // most likely separate reads; either way the same answer
		}
		b, err := io.ReadAll(c)
		c.Close()
		out := string(b)
		if err != nil || strings.Count(out, "HTTP/1.0 200 OK\r\n") != 3 || strings.Count(out, "\r\nConnection: keep-alive\r\n") != 2 ||
			!strings.Contains(out, "\r\nConnection: close\r\n") {
			t.Fatalf("%q: want three responses, keep-alive twice then close: got %q %v", writes, out, err)
		}
	}
	if got := up.requestLines(); len(got) != 6 || got[0] != "GET /1 HTTP/1.1" || got[2] != "GET /3 HTTP/1.1" {
		t.Fatalf("upstream request lines %q", got)
	}
}

// close in any Connection line of an HTTP/1.0 request ends the connection after the
// response, which says Connection: close (RFC 9112 section 9.6), also when a first line
// lists keep-alive and the response has a length: net/http's wantsHttp10KeepAlive reads the
// first line only and kept such a connection open, and it writes no Connection on an
// HTTP/1.0 response it closes after (edge-http10; the Pingora router writes the same).
func TestHTTP10CloseInAnyConnectionLine(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for _, conn := range []string{"Connection: keep-alive\r\nConnection: close\r\n", "Connection: keep-alive, close\r\n",
		"Connection: close\r\n", "Connection: x-a\r\nConnection: Close\r\n"} {
		out, err := orderlyExchange(t, hostPort(r.url), []byte("GET / HTTP/1.0\r\nX-Routing-Key: k\r\n"+conn+"\r\n"))
		if err != nil || !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(out, "\r\n\r\nok") ||
			!strings.Contains(out, "\r\nConnection: close\r\n") {
			t.Fatalf("%q: %q %v", conn, out, err)
		}
	}
	// after a 1xx the router drops (ReverseProxy clears the header map after each 1xx;
	// parity fuzz seed 3, http10.client-header-connection)
	up100 := newRawUpstream(t, "HTTP/1.1 100 Info\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	r100 := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up100.ln.Addr().String(), "", 4, 1000, "")))
	out, err := orderlyExchange(t, hostPort(r100.url), []byte("GET / HTTP/1.0\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n"))
	if err != nil || !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || !strings.Contains(out, "\r\nConnection: close\r\n") {
		t.Fatalf("after a 1xx: %q %v", out, err)
	}
	// without close, a connection the response cannot keep ends without the field
	out, err = orderlyExchange(t, hostPort(r.url), []byte("GET / HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n"))
	if err != nil || !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || strings.Contains(out, "Connection:") {
		t.Fatalf("no Connection: %q %v", out, err)
	}
}
