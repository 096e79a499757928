package proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientCert makes a self-signed client certificate and returns its files and pool.
func clientCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "router"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return writePEM(t, dir, "client.pem", "CERTIFICATE", der), writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", kder), pool
}

func TestHTTPSEndpoints(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, clientPool := clientCert(t, dir)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "tls sni=%s", r.TLS.ServerName)
	}))
	up.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientPool}
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	up.StartTLS()
	defer up.Close()
	mtls := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "mtls ok")
	}))
	mtls.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool}
	mtls.Config.ErrorLog = log.New(io.Discard, "", 0)
	mtls.StartTLS()
	defer mtls.Close()
	ca := writePEM(t, dir, "ca.pem", "CERTIFICATE", up.Certificate().Raw)
	mca := writePEM(t, dir, "mca.pem", "CERTIFICATE", mtls.Certificate().Raw)
	hp := strings.TrimPrefix(up.URL, "https://")
	mhp := strings.TrimPrefix(mtls.URL, "https://")
	p := func(host, tlsBlock string) string {
		return fmt.Sprintf(`{"endpoint":"https://%s","max_concurrency":4,"timeouts":{"connect_ms":1000,"request_ms":2000},"tls":%s}`, host, tlsBlock)
	}
	r := newRouter(t, doc(`"ca":"ca","sni":"sni","badname":"badname","noroots":"noroots","mtls":"mtls","nocert":"nocert"`,
		`"ca":`+p(hp, fmt.Sprintf(`{"ca_file":%q}`, ca)),
		`"sni":`+p(hp, fmt.Sprintf(`{"ca_file":%q,"server_name":"example.com"}`, ca)),
		`"badname":`+p(hp, fmt.Sprintf(`{"ca_file":%q,"server_name":"wrong.test"}`, ca)),
		`"noroots":`+p(hp, `{}`),
		`"mtls":`+p(mhp, fmt.Sprintf(`{"ca_file":%q,"client_cert_file":%q,"client_key_file":%q}`, mca, certFile, keyFile)),
		`"nocert":`+p(mhp, fmt.Sprintf(`{"ca_file":%q}`, mca))))
	check := func(key string, status int, want string) {
		t.Helper()
		resp := get(t, r.url, key)
		b := readAll(t, resp)
		if resp.StatusCode != status || !strings.Contains(b, want) {
			t.Fatalf("%s: %d %q, want %d %q", key, resp.StatusCode, b, status, want)
		}
	}
	// An IP literal is verified against the certificate's IP SAN but never sent as SNI
	// (RFC 6066 section 3; crypto/tls omits it).
	check("ca", 200, "tls sni=")
	check("sni", 200, "tls sni=example.com")
	check("badname", 502, "upstream_connect_failed")
	check("noroots", 502, "upstream_connect_failed")
	check("mtls", 200, "mtls ok")
	check("nocert", 502, "upstream")
	if counter(t, r, "failures", "badname", "connect") != 1 || counter(t, r, "failures", "noroots", "connect") != 1 {
		t.Fatal("TLS verification failures must be connect failures")
	}
}

func TestUpgradeTunnelAfter101(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.WriteHeader(400)
			return
		}
		c, brw, _ := http.NewResponseController(w).Hijack()
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
	}))
	defer up.Close()
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(hostPort(up.URL), "", 4, 1000, "")))
	c, err := net.Dial("tcp", hostPort(r.url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Router-Placement") != "p" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	_, _ = io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: ping\n" {
		t.Fatalf("tunnel: %q %v", line, err)
	}
}
