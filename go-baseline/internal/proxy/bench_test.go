package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"pingora-parity/go-baseline/internal/upstream"
)

// BenchmarkProxyGet measures one keep-alive GET through the router against the same
// request through a plain httputil.ReverseProxy (what cmd/bare runs), both in front of
// the same in-process upstream and driven over one client connection. The difference
// between the two sub-benchmarks (ns/op, allocs/op) is the cost of the router's own
// logic; profile it with -cpuprofile / -memprofile.
func BenchmarkProxyGet(b *testing.B) {
	body := make([]byte, 64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Name", "bench")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)

	b.Run("router", func(b *testing.B) {
		r := newRouter(b, doc(`"bench":"bench"`, `"bench":`+placement(hostPort(up.URL), "", 100000, 30000, "")))
		benchGet(b, hostPort(r.url))
	})
	b.Run("bare", func(b *testing.B) {
		target, _ := url.Parse(up.URL)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// The contract's pool (docs/spec.md section 1), as cmd/bare sets it.
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 0, upstream.MaxIdleConnsPerHost
		tr.IdleConnTimeout = upstream.IdleConnTimeout
		srv := httptest.NewServer(&httputil.ReverseProxy{
			Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport:     tr,
			FlushInterval: -1,
		})
		b.Cleanup(srv.Close)
		benchGet(b, hostPort(srv.URL))
	})
}

// benchGet sends b.N GETs with X-Routing-Key: bench over one keep-alive connection.
func benchGet(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nX-Routing-Key: bench\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkGateHead is the gate's cost per request head (the head of BenchmarkProxyGet,
// arriving whole in one read, handed over in place).
func BenchmarkGateHead(b *testing.B) {
	head := []byte("GET / HTTP/1.1\r\nHost: bench\r\nX-Routing-Key: bench\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, len(head))
	c := &scanConn{}
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	for b.Loop() {
		copy(buf, head)
		if c.process(buf, true) != len(head) {
			b.Fatal("head not handed over")
		}
	}
}
