package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/testwait"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Bad command lines are UsageErrors (main prints "error: <msg>" on one line and exits 2),
// named with the contract's two dashes; --help prints the usage.
func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--bogus"},
		{"--threads", "0"},
		{"--threads=x"},
		{"--listen", "nope"},
		{"--listen=127.0.0.1:99999"},
		{"--admin-listen", "127.0.0.1:-1"},
		{"--control-plane", "http://127.0.0.1:1"},
		{"--reconnect-initial-ms", "500", "--reconnect-max-ms", "100"},
		{"--cp-ping-ms", "0"},
		{"--cp-pong-timeout-ms=0"},
		{"--shutdown-grace-ms", "-1"},
		{"--state-dir", ""},
		{"extra"},
	} {
		var out bytes.Buffer
		_, err := ParseFlags(args, &out)
		var ue UsageError
		if !errors.As(err, &ue) || strings.Contains(ue.Msg, "\n") || out.Len() != 0 {
			t.Fatalf("%v: %v (stdout %q), want a one-line UsageError", args, err, out.String())
		}
		if args[0] == "--bogus" && !strings.Contains(ue.Msg, "--bogus") {
			t.Fatalf("unknown flag named %q, want it as --bogus", ue.Msg)
		}
	}
	var out bytes.Buffer
	if _, err := ParseFlags([]string{"--help"}, &out); !errors.Is(err, ErrHelp) ||
		!strings.Contains(out.String(), "--listen") || !strings.Contains(out.String(), "--shutdown-grace-ms") {
		t.Fatalf("--help: %v, %q", err, out.String())
	}
	f, err := ParseFlags([]string{"--listen=127.0.0.1:1", "--shutdown-grace-ms", "250", "--access-log"}, io.Discard)
	if err != nil || f.Listen != "127.0.0.1:1" || f.AdminListen != "127.0.0.1:9090" ||
		f.ShutdownGrace != 250*time.Millisecond || f.ReconnectInitial != 100*time.Millisecond ||
		f.ReconnectMax != 5*time.Second || f.CPPing != 10*time.Second || f.CPPongTimeout != 20*time.Second || !f.AccessLog || f.StateDir != "./state" || f.Threads < 1 {
		t.Fatalf("%+v %v", f, err)
	}
}

// mustFlags parses args that are known to be good.
func mustFlags(t *testing.T, args ...string) Flags {
	t.Helper()
	f, err := ParseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestBindFailureExit1(t *testing.T) {
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	var errb syncBuf
	code := Run(context.Background(), mustFlags(t, "--listen", strings.TrimPrefix(busy.URL, "http://"),
		"--admin-listen", "127.0.0.1:0", "--state-dir", t.TempDir()), &errb)
	if code != 1 || !strings.Contains(errb.String(), "error:") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

type proc struct {
	cancel context.CancelFunc
	done   chan int
	data   string
	admin  string
	stderr *syncBuf
	hup    chan struct{} // a send is a SIGHUP
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &proc{cancel: cancel, done: make(chan int, 1), stderr: &syncBuf{}, hup: make(chan struct{})}
	ready := make(chan [2]string, 1)
	f := mustFlags(t, append([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)...)
	go func() {
		p.done <- run(ctx, f, p.stderr, func(data, admin net.Addr) { ready <- [2]string{data.String(), admin.String()} }, p.hup)
	}()
	select {
	case a := <-ready:
		p.data, p.admin = "http://"+a[0], "http://"+a[1]
	case code := <-p.done:
		t.Fatalf("exited %d: %s", code, p.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	return p
}

func (p *proc) stop(t *testing.T) int {
	p.cancel()
	select {
	case code := <-p.done:
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("router did not exit")
	}
	return -1
}

func body(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func lkg(host string) string {
	return fmt.Sprintf(`{"version":7,"routes":{"k":"p"},"placements":{"p":{"endpoint":"http://%s","max_concurrency":8,"timeouts":{"connect_ms":200,"request_ms":10000}}}}`, host)
}

// The router serves its LKG file with the control plane unreachable, and drains an
// in-flight request at shutdown (SIGTERM in main) before exiting 0.
func TestServesLKGAndDrainsOnSIGTERM(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "from upstream")
	}))
	defer up.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "last-known-good.json"), []byte(lkg(strings.TrimPrefix(up.URL, "http://"))), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--state-dir", dir, "--control-plane", "ws://127.0.0.1:1/", "--shutdown-grace-ms", "10000", "--access-log")
	if code, b := body(t, p.admin+"/healthz"); code != 200 || b != "ok" {
		t.Fatalf("healthz %d %q", code, b)
	}
	if code, b := body(t, p.admin+"/readyz"); code != 200 || b != `{"ready":true}` {
		t.Fatalf("readyz %d %q", code, b)
	}
	if code, b := body(t, p.data+"/", "X-Routing-Key", "k"); code != 200 || b != "from upstream" {
		t.Fatalf("proxied %d %q", code, b)
	}
	if _, b := body(t, p.admin+"/admin/state"); !strings.Contains(b, `"config_version":7`) || !strings.Contains(b, `"connected":false`) {
		t.Fatalf("state %s", b)
	}
	// The response is counted when the handler returns, which may be just after the
	// client has read the body.
	testwait.For(t, "the proxied request in the metrics", func() bool {
		_, b := body(t, p.admin+"/metrics")
		return strings.Contains(b, "router_config_version 7") &&
			strings.Contains(b, `router_requests_total{placement="p",status="200"} 1`)
	})

	slow := getAsync(http.DefaultClient, p.data+"/slow")
	<-entered
	p.cancel() // what main does on SIGTERM
	// New connections are refused once shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := http.Get(p.data + "/")
		if err != nil {
			break
		}
		c.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case code := <-p.done:
		t.Fatalf("exited (%d) with a request in flight", code)
	default:
	}
	close(release)
	r := <-slow
	if r.err != nil || r.code != 200 || r.body != "from upstream" {
		t.Fatalf("in-flight request: %+v", r)
	}
	select {
	case code := <-p.done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after drain")
	}
	if !strings.Contains(p.stderr.String(), `"path":"/slow","key":"k","placement":"p","status":200,"error":null`) {
		t.Fatalf("access log: %s", p.stderr.String())
	}
}

// Requests still running at the grace deadline are cut and the router exits 0.
func TestGraceDeadlineCutsRequests(t *testing.T) {
	entered := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	defer up.Close()
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "last-known-good.json"), []byte(lkg(strings.TrimPrefix(up.URL, "http://"))), 0o644)
	p := start(t, "--state-dir", dir, "--shutdown-grace-ms", "100")
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", p.data+"/", nil)
		req.Header.Set("X-Routing-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	started := time.Now()
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if el := time.Since(started); el < 100*time.Millisecond || el > 5*time.Second {
		t.Fatalf("exit after %v with a 100 ms grace", el)
	}
	if err := <-errc; err == nil {
		t.Fatal("cut request completed")
	}
}

func TestCorruptLKGStartsWithoutConfig(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "last-known-good.json"), []byte(`{"version":1,`), 0o644)
	p := start(t, "--state-dir", dir)
	if code, _ := body(t, p.admin+"/readyz"); code != 503 {
		t.Fatalf("readyz %d", code)
	}
	if code, _ := body(t, p.data+"/", "X-Routing-Key", "k"); code != 503 {
		t.Fatalf("no_config %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "last-known-good.json.corrupt")); err != nil {
		t.Fatal("corrupt file not set aside")
	}
	if _, b := body(t, p.admin+"/admin/state"); !strings.Contains(b, `"config_version":null`) || !strings.Contains(b, `"placements":{}`) {
		t.Fatalf("state %s", b)
	}
	if _, b := body(t, p.admin+"/metrics"); !strings.Contains(b, "router_config_version -1") {
		t.Fatal("config version gauge")
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(p.stderr.String(), "corrupt") {
		t.Fatalf("no log line: %s", p.stderr.String())
	}
}

// "OPTIONS *" reaches the upstream as "OPTIONS *" (RFC 9110 section 9.3.7): the data
// plane's http.Server must not answer it itself (DisableGeneralOptionsHandler).
func TestOptionsAsteriskReachesTheUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lines := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		lines <- strings.TrimRight(line, "\r\n")
		for { // the rest of the head
			if l, err := br.ReadString('\n'); err != nil || l == "\r\n" {
				break
			}
		}
		_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nAllow: OPTIONS\r\nConnection: close\r\n\r\n")
	}()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "last-known-good.json"), []byte(lkg(ln.Addr().String())), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "--state-dir", dir)
	c, err := net.Dial("tcp", strings.TrimPrefix(p.data, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
	out, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(out), "HTTP/1.1 204 ") || !strings.Contains(string(out), "Allow: OPTIONS") {
		t.Fatalf("client got %q", out)
	}
	select {
	case l := <-lines:
		if l != "OPTIONS * HTTP/1.1" {
			t.Fatalf("upstream got %q", l)
		}
	default:
		t.Fatal("upstream got nothing")
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// result is what getAsync's request got: the status and body, or the error.
type result struct {
	code int
	body string
	err  error
}

// getAsync sends GET url with routing key k on c in its own goroutine; the channel gets
// the answer once its body is read whole (or the error).
func getAsync(c *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("X-Routing-Key", "k")
		resp, err := c.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- result{resp.StatusCode, string(b), err}
	}()
	return ch
}
