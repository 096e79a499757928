package proxy

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"runtime/metrics"
	"strings"
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

// BenchmarkIdleConnMemory holds idleConns keep-alive connections idle, each after one GET
// answered, through the router and through a plain httputil.ReverseProxy (cmd/bare), and
// reports what the process holds per idle connection (runtime/metrics after a GC):
// goroutine stacks (stack-B/conn), live heap objects (heap-B/conn) and both together
// (live-B/conn). The client ends of the connections are in the same process (a netFD
// each, about 0.3 KB, counted in heap-B/conn). `parity bench` measures the same thing
// from outside as RSS growth (docs/benchmarks.md, idle memory), which also counts the
// heap the garbage collector has not returned. It takes seconds per iteration, so it
// runs only when named (`go test -run '^$' -bench IdleConnMemory -benchtime 1x
// ./internal/proxy`), not in the hot-path table's `-bench .`.
func BenchmarkIdleConnMemory(b *testing.B) {
	if !strings.Contains(flag.Lookup("test.bench").Value.String(), "IdleConnMemory") {
		b.Skip("run by name: -bench IdleConnMemory -benchtime 1x")
	}
	const idleConns = 2000
	body := make([]byte, 64)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	measure := func(b *testing.B, addr string) {
		for b.Loop() {
			before := liveMemory()
			conns := make([]net.Conn, 0, idleConns)
			buf := make([]byte, 4096)
			for range idleConns {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: bench\r\nX-Routing-Key: bench\r\n\r\n")); err != nil {
					b.Fatal(err)
				}
				// The answer is a short head and 64 bytes: read until the body's last byte.
				for got := 0; ; {
					n, err := c.Read(buf[got:])
					if err != nil {
						b.Fatal(err)
					}
					got += n
					if i := bytes.Index(buf[:got], []byte("\r\n\r\n")); i >= 0 && got-i-4 >= len(body) {
						break
					}
				}
				conns = append(conns, c)
			}
			after := liveMemory()
			for i, name := range []string{"stack-B/conn", "heap-B/conn", "live-B/conn"} {
				b.ReportMetric(float64(after[i]-before[i])/idleConns, name)
			}
			for _, c := range conns {
				c.Close()
			}
		}
	}
	b.Run("router", func(b *testing.B) {
		r := newRouter(b, doc(`"bench":"bench"`, `"bench":`+placement(hostPort(up.URL), "", 100000, 30000, "")))
		measure(b, hostPort(r.url))
	})
	b.Run("bare", func(b *testing.B) {
		target, _ := url.Parse(up.URL)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 0, upstream.MaxIdleConnsPerHost
		srv := httptest.NewServer(&httputil.ReverseProxy{
			Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport:     tr,
			FlushInterval: -1,
		})
		b.Cleanup(srv.Close)
		measure(b, hostPort(srv.URL))
	})
}

// liveMemory returns goroutine stack bytes, live heap object bytes and their sum after a
// GC (stacks of idle goroutines are shrunk by it when they use under a quarter).
func liveMemory() [3]int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	st, heap := int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64())
	return [3]int64{st, heap, st + heap}
}
