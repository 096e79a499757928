package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scriptedUpstream is an upstream that writes its responses as raw bytes: for each request
// on a connection it reads the whole body, then calls answer(c, req, n) with the number of
// body bytes read; answer writes the response on c and returns false to close the
// connection. The listener closes when the test ends.
func scriptedUpstream(t *testing.T, answer func(c net.Conn, req *http.Request, n int64) bool) net.Listener {
	t.Helper()
	return acceptLoop(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, req.Body)
			if !answer(c, req, n) {
				return
			}
		}
	})
}

// acceptLoop listens on a fresh loopback port and runs serve in its own goroutine for
// every connection accepted, until the test ends (the listener closes then).
func acceptLoop(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}

// harnessUpstream answers like the suite's upstreams: it reads each request whole, then
// writes the head and the body "hello from backup" in two writes, keeping the connection.
func harnessUpstream(t *testing.T) net.Listener {
	t.Helper()
	return scriptedUpstream(t, func(c net.Conn, req *http.Request, _ int64) bool {
		body := "hello from backup"
		if req.URL.Path == "/healthz" {
			body = "health"
		}
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Upstream-Name: backup\r\nContent-Length: %d\r\n\r\n", len(body)); err != nil {
			return false
		}
		_, err := io.WriteString(c, body)
		return err == nil
	})
}

// suiteExchange sends one request like the suite's client: a fresh connection, the head
// and the body in two writes, then reads the response head and its Content-Length body.
func suiteExchange(addr, method, body string, linger time.Duration) (status int, got string, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	// The suite's client watches the connection for a while after the response, then
	// closes it: the close reaches the router while the next request is in flight.
	defer time.AfterFunc(linger, func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	head := fmt.Sprintf("%s / HTTP/1.1\r\nHost: %s\r\nX-Routing-Key: tenant-a\r\n", method, addr)
	if body != "" {
		head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		return 0, "", err
	}
	if body != "" {
		if _, err := io.WriteString(c, body); err != nil {
			return 0, "", err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// The endpoint-down scenario in a loop: the primary is down, bodiless requests fail over
// through the connect-failure continuation, then (the primary marked unhealthy) POSTs go
// to the fallback directly. Every answer must be the fallback's whole body. Written for a
// cut seen once in the suite (endpoint-down step 6: a 200 head, 0 of 17 body bytes, FIN);
// it has not reproduced it here, nor in several hundred suite runs.
func TestFailoverBodiesComeWhole(t *testing.T) {
	fb := harnessUpstream(t)
	dead := deadAddr(t)
	hc := `,"health_check":{"path":"/healthz","interval_ms":50,"timeout_ms":200,"unhealthy_threshold":2,"healthy_threshold":2}`
	r := newRouter(t, doc(`"tenant-a":"p"`, `"p":`+placement(dead, "fb", 32, 3000, hc), `"fb":`+placement(fb.Addr().String(), "", 32, 3000, "")))
	addr := strings.TrimPrefix(r.url, "http://")
	rounds := 300
	if testing.Short() {
		rounds = 30
	}
	for i := 0; i < 5; i++ {
		if st, got, err := suiteExchange(addr, "GET", "", 0); err != nil || st != 200 || got != "hello from backup" {
			t.Fatalf("connect-failure failover %d: status %d body %q err %v", i, st, got, err)
		}
	}
	waitFor(t, "p unhealthy", func() bool { return !r.store.Load().Placements["p"].Peers[0].Health.Healthy() })
	for i := 0; i < rounds; i++ {
		method, body := "GET", ""
		if i%2 == 0 {
			method, body = "POST", "payload"
		}
		st, got, err := suiteExchange(addr, method, body, time.Duration(i%20)*time.Millisecond)
		if err != nil || st != 200 || got != "hello from backup" {
			t.Fatalf("round %d %s: status %d body %q err %v", i, method, st, got, err)
		}
	}
}
