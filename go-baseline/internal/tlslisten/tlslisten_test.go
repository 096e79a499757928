package tlslisten

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/store"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 (serial) and its key.
func selfSigned(t *testing.T, dir string, serial int64) Files {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	f := Files{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}
	if err := os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// wrapped marks connections the h1 function wrapped.
type wrapped struct{ net.Conn }

func listen(t *testing.T) (*Listener, *metrics.TLS, *Certs, Files) {
	t.Helper()
	files := selfSigned(t, t.TempDir(), 1)
	certs, err := NewCerts(files)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(store.New()).EnableTLS()
	l := New(inner, certs.ServerConfig(), m, func(c net.Conn) net.Conn { return wrapped{c} })
	t.Cleanup(func() { l.Close() })
	return l, m, certs, files
}

type acceptResult struct {
	c   net.Conn
	err error
}

func acceptAsync(l *Listener) chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

func dial(addr string, protos ...string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: protos})
}

// A client that connects and sends nothing holds up nobody: the next client's handshake
// completes and is accepted. "h2" comes out as the *tls.Conn, anything else wrapped.
func TestSilentClientDoesNotBlockAccept(t *testing.T) {
	l, m, _, _ := listen(t)
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, c := range []struct {
		protos []string
		h2     bool
	}{{[]string{"h2", "http/1.1"}, true}, {[]string{"http/1.1"}, false}, {nil, false}} {
		got := acceptAsync(l)
		cc, err := dial(l.Addr().String(), c.protos...)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r.err != nil {
				t.Fatal(r.err)
			}
			_, isTLS := r.c.(*tls.Conn)
			_, isWrapped := r.c.(wrapped)
			if isTLS != c.h2 || isWrapped == c.h2 {
				t.Errorf("offer %v: accepted %T", c.protos, r.c)
			}
			r.c.Close()
		case <-time.After(5 * time.Second):
			t.Fatalf("offer %v: not accepted while a silent client is connected", c.protos)
		}
		cc.Close()
	}
	if n := testutil.ToFloat64(m.Handshakes.WithLabelValues("false")); n != 3 {
		t.Fatalf("%v handshakes counted, want 3", n)
	}
}

// Close ends the handshakes in progress and Accept returns net.ErrClosed.
func TestCloseEndsPendingHandshakes(t *testing.T) {
	l, m, _, _ := listen(t)
	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, _ = silent.Write([]byte{0x16}) // a first byte, so its end is a handshake error
	// Close only once the handshake has read that byte: a connection still in the
	// backlog, or one whose handshake had not read yet, is no handshake error.
	deadline := time.Now().Add(5 * time.Second)
	for l.firstBytes.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the handshake never read the first byte")
		}
		time.Sleep(2 * time.Millisecond)
	}
	got := acceptAsync(l)
	l.Close()
	if r := <-got; !errors.Is(r.err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", r.err)
	}
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("pending handshake not ended by Close: %v", err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.HandshakeErrors) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("handshake errors %v, want 1", testutil.ToFloat64(m.HandshakeErrors))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Reload swaps the certificate for new handshakes; a failed one keeps the old whole.
func TestReload(t *testing.T) {
	l, _, certs, files := listen(t)
	serial := func() string {
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := dial(l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if s := serial(); s != "1" {
		t.Fatalf("serial %s", s)
	}
	selfSigned(t, filepath.Dir(files.Cert), 2)
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := serial(); s != "2" {
		t.Fatalf("serial %s after reload", s)
	}
	if err := os.WriteFile(files.Cert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := certs.Reload(); err == nil {
		t.Fatal("a garbage certificate reloaded")
	}
	if s := serial(); s != "2" {
		t.Fatalf("serial %s after a failed reload", s)
	}
}
