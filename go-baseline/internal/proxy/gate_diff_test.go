package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// netHTTPReference is a plain net/http server (no gate) whose handler counts the
// requests that reach it: the reference for what net/http refuses before a handler.
type netHTTPReference struct {
	srv     *httptest.Server
	reached atomic.Int64
}

func newNetHTTPReference(t testing.TB) *netHTTPReference {
	ref := &netHTTPReference{}
	ref.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref.reached.Add(1)
		w.Header().Set("Connection", "close")
	}))
	ref.srv.Config.DisableGeneralOptionsHandler = true
	ref.srv.Config.MaxHeaderBytes = ServerMaxHeaderBytes
	ref.srv.Start()
	t.Cleanup(ref.srv.Close)
	return ref
}

// handlerReached sends input on a new connection, half-closes, and reports whether
// net/http ran the handler for it.
func (ref *netHTTPReference) handlerReached(t testing.TB, input []byte) bool {
	c, err := net.Dial("tcp", ref.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := ref.reached.Load()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(input)
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
	return ref.reached.Load() > before
}

// gateVerdict runs input through a gate: whether its first head was complete and
// handed over (accepted) or refused.
func gateVerdict(input []byte) (accepted, refused bool) {
	c := &scanConn{}
	c.process(append([]byte(nil), input...), true)
	refused = c.refusedSeq.Load() == 1
	return c.delivered >= 1 && !refused, refused
}

// gateCorpus are heads on both sides of each of net/http's rules.
var gateCorpus = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\n\r\n",
	"CONNECT a:x HTTP/1.1\r\n\r\n",
	"CONNECT [::1 HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.5\r\nHost: x\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET / HTTP/0.9\r\nHost: x\r\n\r\n",
	"GET / http/1.1\r\nHost: x\r\n\r\n",
	"GET /a%2 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a?%2 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET http://a/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET http://a:b/ HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET a.example:443 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n",
	"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
	" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA\x80: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: \x80\xff\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: 1\x7f\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: \t1\t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA:1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA B: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA\t: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n\tA: 1\r\n\r\n",
	"GET / HTTP/1.1\r\n\tHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: \x80\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
	"GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n1234567",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length:  1 \r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 1\r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n",
	"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-A, trailer\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTrailer: Content-Length\r\nContent-Length: 0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue, x\r\nContent-Length: 1\r\n\r\n1",
	"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continuex\r\nContent-Length: 1\r\n\r\n1",
	"POST / HTTP/1.0\r\nExpect: foo\r\nContent-Length: 1\r\n\r\n1",
	"GET / HTTP/1.1\r\nHost: x\r\nExpect:\r\nExpect: foo\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\n\n",
	"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
}

// Every head net/http refuses before its handler, the gate refuses too (the router then
// answers it); the gate refuses more (folded lines, CL+TE, ...), never less. Empty lines
// before the request line are left out: the gate drops them (RFC 9112 section 2.2),
// net/http refuses them except after a POST.
func TestGateRefusesWhatNetHTTPRefuses(t *testing.T) {
	ref := newNetHTTPReference(t)
	for _, in := range gateCorpus {
		checkGateAgainstNetHTTP(t, ref, []byte(in))
	}
}

func checkGateAgainstNetHTTP(t *testing.T, ref *netHTTPReference, in []byte) {
	t.Helper()
	if len(in) == 0 || in[0] == '\r' || in[0] == '\n' || bytes.Count(in, []byte{'\n'}) > 200 {
		return
	}
	accepted, _ := gateVerdict(in)
	if accepted && !ref.handlerReached(t, in) {
		t.Errorf("net/http refuses, the gate accepts: %q", in)
	}
}

// go test -fuzz FuzzGateRefusesWhatNetHTTPRefuses ./internal/proxy
func FuzzGateRefusesWhatNetHTTPRefuses(f *testing.F) {
	for _, in := range gateCorpus {
		f.Add([]byte(in))
	}
	ref := newNetHTTPReference(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		if strings.Contains(string(in), "\x00") && len(in) > 4096 {
			return
		}
		checkGateAgainstNetHTTP(t, ref, in)
	})
}
