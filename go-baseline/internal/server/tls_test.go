package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"pingora-parity/go-baseline/internal/testwait"
)

// echoUpstream answers every request with what the router sent: the version it arrived
// in and the forwarded fields.
func echoUpstream(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "proto=%s xfp=%s xfh=%s host=%s", r.Proto, r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Host)
}

// startTLS runs the router with the PKI's certificate (and --client-ca when clientCA) on
// a state dir holding config (a config document) and returns it with the data address.
func startTLS(t *testing.T, pki *testPKI, clientCA bool, config string, args ...string) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	if config != "" {
		write(t, filepath.Join(dir, "last-known-good.json"), []byte(config))
	}
	a := append([]string{"--state-dir", dir, "--tls-cert", pki.certFile, "--tls-key", pki.keyFile}, args...)
	if clientCA {
		a = append(a, "--client-ca", pki.caFile)
	}
	p := start(t, a...)
	return p, strings.TrimPrefix(p.data, "http://")
}

// clientTLS is a client config trusting the test CA, presenting cert when not nil and
// offering protos in ALPN.
func (p *testPKI) clientTLS(cert *tls.Certificate, protos ...string) *tls.Config {
	c := &tls.Config{RootCAs: p.roots, ServerName: "localhost", NextProtos: protos}
	if cert != nil {
		// Presented whatever CAs the server names (Go's client would otherwise send no
		// certificate of another CA).
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

// httpsClient makes requests over TLS: HTTP/2 when h2 (ALPN h2), else HTTP/1.1 (no ALPN).
func httpsClient(cfg *tls.Config, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Routing-Key", "k")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp, string(b)
}

// metricsText is the admin /metrics page.
func metricsText(t *testing.T, p *proc) string {
	t.Helper()
	_, b := body(t, p.admin+"/metrics")
	return b
}

// waitMetric waits until /metrics has the line "series value".
func waitMetric(t *testing.T, p *proc, series string, value int) {
	t.Helper()
	want := fmt.Sprintf("%s %d\n", series, value)
	testwait.For(t, want, func() bool { return strings.Contains(metricsText(t, p), want) })
}

func lkgTo(upURL string, extra string) string {
	return fmt.Sprintf(`{"version":1,"routes":{"k":"p"},"placements":{"p":{"endpoint":"%s","max_concurrency":8,"timeouts":{"connect_ms":500,"request_ms":10000}%s}}}`, upURL, extra)
}

func TestTLSFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-cert", "c.pem"},
		{"--tls-key", "k.pem"},
		{"--client-ca", "ca.pem"},
		{"--client-ca", "ca.pem", "--tls-key", "k.pem"},
	} {
		_, err := ParseFlags(args, io.Discard)
		var ue UsageError
		if !errors.As(err, &ue) || strings.Contains(ue.Msg, "\n") || !strings.Contains(ue.Msg, "--") {
			t.Errorf("%v: %v, want a one-line UsageError naming the flags", args, err)
		}
	}
	pki := newTestPKI(t)
	garbage := filepath.Join(pki.dir, "garbage.pem")
	write(t, garbage, []byte("not PEM"))
	for _, c := range []struct{ cert, key, ca string }{
		{filepath.Join(pki.dir, "missing.pem"), pki.keyFile, ""},
		{pki.certFile, garbage, ""},
		{pki.caFile, pki.keyFile, ""}, // the key is not the certificate's
		{pki.certFile, pki.keyFile, garbage},
		{pki.certFile, pki.keyFile, filepath.Join(pki.dir, "missing-ca.pem")},
	} {
		args := []string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--state-dir", t.TempDir(),
			"--tls-cert", c.cert, "--tls-key", c.key}
		if c.ca != "" {
			args = append(args, "--client-ca", c.ca)
		}
		var errb syncBuf
		code := Run(context.Background(), mustFlags(t, args...), &errb)
		if code != ExitFatal || !strings.HasPrefix(errb.String(), "error: tls: ") || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%+v: exit %d, stderr %q; want 1 and one 'error: tls:' line", c, code, errb.String())
		}
	}
}

// A plain listener has no router_tls_* series; a TLS one has all five at 0 from start.
func TestTLSMetricsPresentOnlyWithTLS(t *testing.T) {
	plain := start(t, "--state-dir", t.TempDir())
	if m := metricsText(t, plain); strings.Contains(m, "router_tls_") {
		t.Fatalf("plain listener exports TLS series:\n%s", m)
	}
	plain.stop(t)
	p, _ := startTLS(t, newTestPKI(t), false, "")
	m := metricsText(t, p)
	for _, s := range []string{`router_tls_handshakes_total{resumed="false"} 0`, `router_tls_handshakes_total{resumed="true"} 0`,
		`router_tls_handshake_errors_total 0`, `router_tls_reloads_total{result="ok"} 0`, `router_tls_reloads_total{result="error"} 0`} {
		if !strings.Contains(m, s+"\n") {
			t.Errorf("missing %s", s)
		}
	}
}

// --client-ca: a good client certificate is served; none, or one of another CA, fails the
// handshake with Go's alerts (spec section 3) and counts as a handshake error.
func TestTLSClientCertificates(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(echoUpstream))
	defer up.Close()
	pki := newTestPKI(t)
	p, addr := startTLS(t, pki, true, lkgTo(up.URL, ""))

	resp, b := get(t, httpsClient(pki.clientTLS(&pki.client), false), "https://"+addr+"/")
	if resp.StatusCode != 200 || !strings.Contains(b, "xfp=https") {
		t.Fatalf("with a good certificate: %d %q", resp.StatusCode, b)
	}
	// handshake dials with cfg and reads: a TLS 1.3 client learns of the server's verdict
	// on its first read.
	handshake := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: k\r\n\r\n")
		_, err = c.Read(make([]byte, 1))
		return err
	}
	cases := []struct {
		name  string
		cfg   *tls.Config
		alert string
	}{
		{"no certificate, TLS 1.3", pki.clientTLS(nil), "certificate required"},
		{"no certificate, TLS 1.2", withMax(pki.clientTLS(nil), tls.VersionTLS12), "handshake failure"},
		{"wrong CA, TLS 1.3", pki.clientTLS(&pki.wrongCAClient), "unknown certificate authority"},
		{"wrong CA, TLS 1.2", withMax(pki.clientTLS(&pki.wrongCAClient), tls.VersionTLS12), "unknown certificate authority"},
	}
	for _, c := range cases {
		err := handshake(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.alert) {
			t.Errorf("%s: %v, want the alert %q", c.name, err, c.alert)
		}
	}
	waitMetric(t, p, "router_tls_handshake_errors_total", len(cases))
	waitMetric(t, p, `router_tls_handshakes_total{resumed="false"}`, 1)
	// A connection closed before its first byte is no handshake.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ok := pki.clientTLS(&pki.client)
	if err := handshake(ok); err != nil {
		t.Fatalf("good certificate again: %v", err)
	}
	waitMetric(t, p, `router_tls_handshakes_total{resumed="false"}`, 2)
	if !strings.Contains(metricsText(t, p), fmt.Sprintf("router_tls_handshake_errors_total %d\n", len(cases))) {
		t.Fatal("an empty connection was counted as a handshake error")
	}
}

func withMax(c *tls.Config, v uint16) *tls.Config { c.MaxVersion = v; return c }

// ALPN: h2 is preferred, no ALPN or http/1.1 alone is HTTP/1.1 through the same request
// gate as the plain listener, an unknown protocol alone fails the handshake; every
// request goes upstream in HTTP/1.1 with X-Forwarded-Proto: https.
func TestTLSALPNAndForwardedProto(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(echoUpstream))
	defer up.Close()
	pki := newTestPKI(t)
	_, addr := startTLS(t, pki, false, lkgTo(up.URL, ""))

	for _, c := range []struct {
		offer []string
		want  string
	}{{[]string{"h2", "http/1.1"}, "h2"}, {[]string{"http/1.1", "h2"}, "h2"}, {[]string{"http/1.1"}, "http/1.1"}, {nil, ""}} {
		conn, err := tls.Dial("tcp", addr, pki.clientTLS(nil, c.offer...))
		if err != nil {
			t.Fatalf("offer %v: %v", c.offer, err)
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != c.want {
			t.Errorf("offer %v: negotiated %q, want %q", c.offer, got, c.want)
		}
		conn.Close()
	}
	if _, err := tls.Dial("tcp", addr, pki.clientTLS(nil, "foo/1")); err == nil || !strings.Contains(err.Error(), "no application protocol") {
		t.Errorf("offer foo/1: %v, want the no_application_protocol alert", err)
	}
	old := pki.clientTLS(nil)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := tls.Dial("tcp", addr, old); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 client: %v, want the protocol_version alert", err)
	}

	resp, b := get(t, httpsClient(pki.clientTLS(nil), true), "https://"+addr+"/x")
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || b != "proto=HTTP/1.1 xfp=https xfh="+addr+" host="+strings.TrimPrefix(up.URL, "http://") {
		t.Fatalf("h2: %s %d %q", resp.Proto, resp.StatusCode, b)
	}
	if resp.Header.Get("X-Router-Placement") != "p" || resp.Header.Get("Connection") != "" {
		t.Fatalf("h2 response header %v", resp.Header)
	}
	resp, b = get(t, httpsClient(pki.clientTLS(nil), false), "https://"+addr+"/x")
	if resp.ProtoMajor != 1 || resp.StatusCode != 200 || !strings.Contains(b, "xfp=https") {
		t.Fatalf("h1 over TLS: %s %d %q", resp.Proto, resp.StatusCode, b)
	}

	// The HTTP/1.1 request gate is on TLS connections too: two differing Content-Length
	// lines get the router's 400, not net/http's.
	conn, err := tls.Dial("tcp", addr, pki.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: k\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(r.Body)
	if r.StatusCode != 400 || r.Header.Get("X-Router-Error") != "bad_request" || !strings.Contains(string(rb), `"error":"bad_request"`) {
		t.Fatalf("gate over TLS: %d %v %q", r.StatusCode, r.Header, rb)
	}
}

// A second connection with the first's session ticket resumes (TLS 1.3 and 1.2) and is
// counted as resumed.
func TestTLSSessionResumption(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(echoUpstream))
	defer up.Close()
	pki := newTestPKI(t)
	p, addr := startTLS(t, pki, true, lkgTo(up.URL, ""))
	for i, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cfg := withMax(pki.clientTLS(&pki.client), v)
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for n, wantResumed := range []bool{false, true} {
			conn, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			// A TLS 1.3 ticket arrives after the handshake: read a response to take it in.
			_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n")
			if _, err := io.ReadAll(conn); err != nil {
				t.Fatal(err)
			}
			if got := conn.ConnectionState().DidResume; got != wantResumed {
				t.Fatalf("version %x connection %d: resumed %v, want %v", v, n, got, wantResumed)
			}
			conn.Close()
		}
		waitMetric(t, p, `router_tls_handshakes_total{resumed="true"}`, i+1)
		waitMetric(t, p, `router_tls_handshakes_total{resumed="false"}`, i+1)
	}
}

// serialOf handshakes with addr and returns the serial of the router's certificate.
func serialOf(t *testing.T, pki *testPKI, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, pki.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// SIGHUP reloads the files: new handshakes get the new certificate, an open connection
// goes on; a file that does not load keeps the current certificate, logs a line and
// counts an error.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(echoUpstream))
	defer up.Close()
	pki := newTestPKI(t)
	p, addr := startTLS(t, pki, false, lkgTo(up.URL, ""))
	if s := serialOf(t, pki, addr); s != "100" {
		t.Fatalf("serial %s at start", s)
	}
	old := httpsClient(pki.clientTLS(nil), true)
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	do := func() {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "https://"+addr+"/", nil)
		req.Header.Set("X-Routing-Key", "k")
		resp, err := old.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do()

	pki.writeServer(t, 101)
	p.hup <- struct{}{}
	waitMetric(t, p, `router_tls_reloads_total{result="ok"}`, 1)
	if s := serialOf(t, pki, addr); s != "101" {
		t.Fatalf("serial %s after the reload, want 101", s)
	}
	do()
	if !reused {
		t.Fatal("the connection open before the reload was not kept")
	}

	write(t, pki.keyFile, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"))
	p.hup <- struct{}{}
	waitMetric(t, p, `router_tls_reloads_total{result="error"}`, 1)
	if s := serialOf(t, pki, addr); s != "101" {
		t.Fatalf("serial %s after a failed reload, want 101 kept", s)
	}
	if n := strings.Count(p.stderr.String(), "tls reload failed"); n != 1 {
		t.Fatalf("%d log lines for the failed reload: %s", n, p.stderr.String())
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// A plain router ignores SIGHUP.
func TestSIGHUPWithoutTLSIsIgnored(t *testing.T) {
	p := start(t, "--state-dir", t.TempDir())
	p.hup <- struct{}{}
	if code, b := body(t, p.admin+"/healthz"); code != 200 || b != "ok" {
		t.Fatalf("healthz after SIGHUP: %d %q", code, b)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// Over h2, an upstream that dies mid-body resets that stream (INTERNAL_ERROR) and the
// connection and its other streams go on; streams hitting max_concurrency get the same
// 503 JSON as HTTP/1.1 requests.
func TestH2ResetOnMidBodyAbortAndConcurrencyLimit(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "0123456789")
			w.(http.Flusher).Flush()
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		case "/slow":
			entered <- struct{}{}
			<-release
			_, _ = io.WriteString(w, "slow done")
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	defer up.Close()
	pki := newTestPKI(t)
	config := strings.Replace(lkgTo(up.URL, ""), `"max_concurrency":8`, `"max_concurrency":2`, 1)
	p, addr := startTLS(t, pki, false, config)
	client := httpsClient(pki.clientTLS(nil), true)

	slow := getAsync(client, "https://"+addr+"/slow")
	<-entered

	req, _ := http.NewRequest("GET", "https://"+addr+"/abort", nil)
	req.Header.Set("X-Routing-Key", "k")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") || string(b) != "0123456789" {
		t.Fatalf("aborted stream: %s, read %q, err %v; want the 10 bytes then RST_STREAM INTERNAL_ERROR", resp.Proto, b, err)
	}

	// The connection lives on: a second slow stream takes the last slot, a third gets 503.
	go func() {
		req, _ := http.NewRequest("GET", "https://"+addr+"/slow", nil)
		req.Header.Set("X-Routing-Key", "k")
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-entered
	resp, b2 := get(t, client, "https://"+addr+"/limited")
	if resp.StatusCode != 503 || resp.Header.Get("X-Router-Error") != "concurrency_limit" ||
		resp.Header.Get("X-Router-Placement") != "p" || !strings.HasPrefix(b2, `{"error":"concurrency_limit","message":`) {
		t.Fatalf("limit over h2: %d %v %q", resp.StatusCode, resp.Header, b2)
	}
	close(release)
	if r := <-slow; r.err != nil || r.code != 200 || r.body != "slow done" {
		t.Fatalf("stream beside the reset one: %+v", r)
	}
	if !strings.Contains(metricsText(t, p), `router_tls_handshakes_total{resumed="false"} 1`+"\n") {
		t.Fatal("the h2 streams did not share one connection")
	}
	waitMetric(t, p, `router_upstream_failures_total{kind="aborted",placement="p"}`, 1)
}

// h2Conn is a raw HTTP/2 client connection (x/net/http2's Framer) for what net/http's
// client does not show: GOAWAY frames and requests with connection-specific fields.
type h2Conn struct {
	t   *testing.T
	c   *tls.Conn
	fr  *http2.Framer
	buf bytes.Buffer
	enc *hpack.Encoder
	mu  sync.Mutex
}

func dialH2(t *testing.T, pki *testPKI, addr string) *h2Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, pki.clientTLS(nil, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{t: t, c: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// request opens stream id with a GET of path and the fields hdr (name, value pairs).
func (h *h2Conn) request(id uint32, path string, hdr ...string) {
	h.t.Helper()
	h.send(id, "GET", path, nil, hdr...)
}

// send opens stream id with method and path, the fields hdr and, when body is not nil, a
// DATA frame carrying it that ends the stream.
func (h *h2Conn) send(id uint32, method, path string, body []byte, hdr ...string) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	kv := append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path, "x-routing-key", "k"}, hdr...)
	for i := 0; i+1 < len(kv); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	// The block goes in frames of at most 16384 bytes (the default SETTINGS_MAX_FRAME_SIZE):
	// HEADERS, then CONTINUATION frames.
	block := h.buf.Bytes()
	const max = 16384
	first := block[:min(len(block), max)]
	block = block[len(first):]
	err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: body == nil, EndHeaders: len(block) == 0})
	for err == nil && len(block) > 0 {
		next := block[:min(len(block), max)]
		block = block[len(next):]
		err = h.fr.WriteContinuation(id, len(block) == 0, next)
	}
	if err == nil && body != nil {
		err = h.fr.WriteData(id, true, body)
	}
	if err != nil {
		h.t.Fatal(err)
	}
}

// response reads frames until stream id's response head and returns its :status and
// x-router-error.
func (h *h2Conn) response(id uint32) (status, routerError string) {
	h.t.Helper()
	h.frames(func(f http2.Frame) bool {
		if m, ok := f.(*http2.MetaHeadersFrame); ok && m.StreamID == id {
			status = m.PseudoValue("status")
			for _, hf := range m.RegularFields() {
				if hf.Name == "x-router-error" {
					routerError = hf.Value
				}
			}
			return true
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == id {
			status = "RST " + r.ErrCode.String()
			return true
		}
		return false
	})
	return status, routerError
}

// The 64 KiB head limit over h2 counts the header list size (RFC 9113 section 6.5.2:
// name + value + 32 per field, pseudo-fields included): 65536 passes, 65537 is the
// router's 431.
func TestH2HeadLimit(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(echoUpstream))
	defer up.Close()
	pki := newTestPKI(t)
	_, addr := startTLS(t, pki, false, lkgTo(up.URL, ""))
	h := dialH2(t, pki, addr)
	// :method GET 42, :scheme https 44, :authority localhost 51, :path / 38,
	// x-routing-key k 46, x-pad 37 + its value.
	const fixed = 42 + 44 + 51 + 38 + 46 + 37
	for i, c := range []struct {
		size         int
		status, code string
	}{{65536, "200", ""}, {65537, "431", "request_headers_too_large"}} {
		id := uint32(2*i + 1)
		h.request(id, "/", "x-pad", strings.Repeat("a", c.size-fixed))
		if status, code := h.response(id); status != c.status || code != c.code {
			t.Errorf("header list of %d bytes: %s %q, want %s %q", c.size, status, code, c.status, c.code)
		}
	}
	// Over net/http's own limit (http.Server.MaxHeaderBytes, 128 KiB, plus its allowance)
	// the HTTP/2 server answers 431 itself, without the router's fields.
	var pads []string
	for i := range 4 {
		pads = append(pads, fmt.Sprintf("x-pad%d", i), strings.Repeat("a", 40000))
	}
	h.request(5, "/", pads...)
	if status, code := h.response(5); status != "431" || code != "" {
		t.Errorf("header list over net/http's limit: %s %q, want net/http's 431", status, code)
	}
}

// frames reads frames until stop returns true for one, answering SETTINGS and PING.
func (h *h2Conn) frames(stop func(http2.Frame) bool) {
	h.t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("reading frames: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			h.mu.Lock()
			_ = h.fr.WriteSettingsAck()
			h.mu.Unlock()
		}
		if stop(f) {
			return
		}
	}
}

// SIGTERM: an h2 connection gets GOAWAY (NO_ERROR); its open stream finishes, a stream
// opened after the GOAWAY is never processed, and the router exits 0.
func TestH2GoawayOnDrain(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- r.URL.Path
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}))
	defer up.Close()
	pki := newTestPKI(t)
	p, addr := startTLS(t, pki, false, lkgTo(up.URL, ""), "--shutdown-grace-ms", "10000")
	h := dialH2(t, pki, addr)
	h.request(1, "/slow")
	if got := <-entered; got != "/slow" {
		t.Fatalf("upstream saw %s", got)
	}
	p.cancel() // what main does on SIGTERM
	var away *http2.GoAwayFrame
	h.frames(func(f http2.Frame) bool { away, _ = f.(*http2.GoAwayFrame); return away != nil })
	if away.ErrCode != http2.ErrCodeNo || away.LastStreamID < 1 {
		t.Fatalf("GOAWAY %v last stream %d", away.ErrCode, away.LastStreamID)
	}
	h.request(3, "/late") // after the GOAWAY: refused
	close(release)
	var status string
	ended := false
	h.frames(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				status = f.PseudoValue("status")
			}
		case *http2.DataFrame:
			if f.StreamID == 1 && f.StreamEnded() {
				ended = true
			}
		}
		return ended
	})
	if status != "200" {
		t.Fatalf("in-flight stream: status %q", status)
	}
	select {
	case code := <-p.done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after the drain")
	}
	select {
	case path := <-entered:
		t.Fatalf("a stream opened after GOAWAY reached the upstream: %s", path)
	default:
	}
}

// Malformed h2 requests. One carrying a connection-specific field (RFC 9113 section
// 8.2.2): net/http answers it 400 itself and the router never routes it; the connection
// goes on.
func TestH2MalformedRequests(t *testing.T) {
	seen := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.URL.Path
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	pki := newTestPKI(t)
	_, addr := startTLS(t, pki, false, lkgTo(up.URL, ""))
	h := dialH2(t, pki, addr)
	// Extended CONNECT (RFC 8441) is not offered.
	h.frames(func(f http2.Frame) bool {
		sf, ok := f.(*http2.SettingsFrame)
		if ok && !sf.IsAck() {
			if v, has := sf.Value(http2.SettingEnableConnectProtocol); has && v != 0 {
				t.Errorf("SETTINGS_ENABLE_CONNECT_PROTOCOL %d", v)
			}
		}
		return ok && !sf.IsAck()
	})
	statuses := map[uint32]string{}
	for i, f := range [][]string{{"connection", "keep-alive"}, {"upgrade", "websocket"}, {"transfer-encoding", "chunked"}, {"te", "gzip"}, {"te", "trailers"}} {
		id := uint32(2*i + 1)
		h.request(id, "/"+f[0], f...)
		statuses[id], _ = h.response(id)
	}
	// Other malformed messages (RFC 9113 section 8.1.1): an upper-case field name makes
	// net/http's HTTP/2 server reset the stream (PROTOCOL_ERROR); a content-length on a
	// HEADERS frame that ends the stream, which net/http takes as a bodiless request, is
	// the router's 400.
	h.request(11, "/upper", "X-Upper", "1")
	statuses[11], _ = h.response(11)
	var code string
	h.request(13, "/cl", "content-length", "5")
	statuses[13], code = h.response(13)
	if code != "bad_request" {
		t.Errorf("content-length 5 without DATA: X-Router-Error %q", code)
	}
	h.request(15, "/cl0", "content-length", "0")
	statuses[15], _ = h.response(15)
	// DATA shorter than the content-length: the client's body broke off (the router's
	// 400); longer: net/http resets the stream.
	h.send(17, "POST", "/short", []byte("abc"), "content-length", "5")
	statuses[17], _ = h.response(17)
	h.send(19, "POST", "/long", []byte("abcdefg"), "content-length", "5")
	statuses[19], _ = h.response(19)
	want := map[uint32]string{1: "400", 3: "400", 5: "400", 7: "400", 9: "200", 11: "RST PROTOCOL_ERROR", 13: "400", 15: "200",
		17: "400", 19: "RST PROTOCOL_ERROR"}
	for id, s := range want {
		if statuses[id] != s {
			t.Errorf("stream %d: %q, want %q", id, statuses[id], s)
		}
	}
	// Those refused from their head never reach the upstream; a body that breaks its
	// content-length is found while it is forwarded.
	for _, want := range []string{"/te", "/cl0"} {
		if got := <-seen; got != want {
			t.Fatalf("upstream saw %s, want %s", got, want)
		}
	}
	for {
		select {
		case path := <-seen:
			if path != "/short" && path != "/long" {
				t.Fatalf("a malformed request reached the upstream: %s", path)
			}
		default:
			return
		}
	}
}

// A placement with "protocol": "h2" speaks HTTP/2 to an https upstream that selects h2,
// multiplexing on one connection; an upstream that offers only http/1.1 is a connect
// failure (502 upstream_connect_failed).
func TestUpstreamH2(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	probes := make(chan string, 100)
	h2up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			select {
			case probes <- r.Proto:
			default:
			}
			return
		}
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		echoUpstream(w, r)
	}))
	h2up.EnableHTTP2 = true
	h2up.StartTLS()
	defer h2up.Close()
	h1up := httptest.NewUnstartedServer(http.HandlerFunc(echoUpstream))
	h1up.Config.ErrorLog = log.New(io.Discard, "", 0) // its refusal of ALPN h2 is expected
	h1up.StartTLS()
	defer h1up.Close()
	pki := newTestPKI(t)
	caFile := filepath.Join(pki.dir, "upstream-ca.pem")
	write(t, caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h2up.Certificate().Raw}))
	h1CA := filepath.Join(pki.dir, "upstream-h1-ca.pem")
	write(t, h1CA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h1up.Certificate().Raw}))
	config := fmt.Sprintf(`{"version":1,"routes":{"k":"p","k1":"q"},"placements":{
		"p":{"endpoint":"%s","max_concurrency":8,"timeouts":{"connect_ms":1000,"request_ms":10000},"tls":{"ca_file":%q,"server_name":"example.com"},"protocol":"h2",
		     "health_check":{"path":"/healthz","interval_ms":50,"timeout_ms":1000,"unhealthy_threshold":1,"healthy_threshold":1}},
		"q":{"endpoint":"%s","max_concurrency":8,"timeouts":{"connect_ms":1000,"request_ms":10000},"tls":{"ca_file":%q,"server_name":"example.com"},"protocol":"h2"}}}`,
		h2up.URL, caFile, h1up.URL, h1CA)
	_, addr := startTLS(t, pki, false, config)
	for _, h2 := range []bool{true, false} {
		resp, b := get(t, httpsClient(pki.clientTLS(nil), h2), "https://"+addr+"/")
		if resp.StatusCode != 200 || !strings.HasPrefix(b, "proto=HTTP/2.0 xfp=https") || !strings.HasSuffix(b, "host="+strings.TrimPrefix(h2up.URL, "https://")) {
			t.Fatalf("client h2=%v: %d %q", h2, resp.StatusCode, b)
		}
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d upstream connections, want one multiplexed", n)
	}
	select {
	case proto := <-probes:
		if proto != "HTTP/2.0" {
			t.Fatalf("health probe of an h2 placement came in %s", proto)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no health probe")
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
	req.Header.Set("X-Routing-Key", "k1")
	resp, err := httpsClient(pki.clientTLS(nil), false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get("X-Router-Error") != "upstream_connect_failed" {
		t.Fatalf("h1-only upstream: %d %q", resp.StatusCode, b)
	}
}

// An h2 request body goes upstream in HTTP/1.1: with its content-length when the client
// sent one, chunked otherwise.
func TestH2RequestBodies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "cl=%d te=%v body=%s", r.ContentLength, r.TransferEncoding, b)
	}))
	defer up.Close()
	pki := newTestPKI(t)
	_, addr := startTLS(t, pki, false, lkgTo(up.URL, ""))
	client := httpsClient(pki.clientTLS(nil), true)
	for _, c := range []struct {
		body io.Reader
		want string
	}{
		{strings.NewReader("hello"), "cl=5 te=[] body=hello"},
		{io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")), "cl=-1 te=[chunked] body=hello"},
	} {
		req, _ := http.NewRequest("POST", "https://"+addr+"/", c.body)
		req.Header.Set("X-Routing-Key", "k")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(b) != c.want {
			t.Errorf("%s %d %q, want %q", resp.Proto, resp.StatusCode, b, c.want)
		}
	}
}

// An h2 request's "Expect: 100-continue" is net/http's: its HTTP/2 server removes the
// field and sends its own 100 when the router first reads the body, so the upstream never
// sees the expectation (docs/divergences.md).
func TestH2ExpectContinue(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "expect=%q body=%s", r.Header.Get("Expect"), b)
	}))
	defer up.Close()
	pki := newTestPKI(t)
	_, addr := startTLS(t, pki, false, lkgTo(up.URL, ""))
	h := dialH2(t, pki, addr)
	h.send(1, "POST", "/", []byte("hello"), "expect", "100-continue", "content-length", "5")
	var statuses []string
	var body []byte
	h.frames(func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			statuses = append(statuses, f.PseudoValue("status"))
		case *http2.DataFrame:
			body = append(body, f.Data()...)
			return f.StreamEnded()
		}
		return false
	})
	if strings.Join(statuses, " ") != "100 200" || string(body) != `expect="" body=hello` {
		t.Fatalf("statuses %v, body %q", statuses, body)
	}
}
