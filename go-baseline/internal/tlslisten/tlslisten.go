// Package tlslisten is the TLS side of the data listener (docs/spec.md section 3, "TLS and
// HTTP/2 on the listener"):
//
//   - Certs holds the server's TLS settings read from --tls-cert, --tls-key and
//     --client-ca, swapped atomically by Reload (SIGHUP) so that new handshakes use the
//     new files without a restart;
//   - Listener completes each TLS handshake before net/http sees the connection, counts
//     it (router_tls_* metrics), and hands net/http a *tls.Conn for an "h2" connection
//     (net/http's built-in HTTP/2 server takes it through Server.TLSNextProto) and the
//     HTTP/1.1 request gate (proxy.Listener.Wrap) over the TLS connection otherwise, so
//     that HTTP/1.1 over TLS gets the same gate as on a plain listener.
package tlslisten

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"pingora-parity/go-baseline/internal/metrics"
)

// ALPN protocol IDs offered by the listener, in order of preference (RFC 7301; "h2":
// RFC 9113 section 3.2).
var NextProtos = []string{"h2", "http/1.1"}

// HandshakeTimeout bounds one handshake, from accept to its end: the same 60 s net/http
// gives a TLS handshake and a request head (http.Server.ReadHeaderTimeout in
// internal/server).
const HandshakeTimeout = 60 * time.Second

// Files names the PEM files of the listener's TLS settings. ClientCA "" means no client
// certificate is asked for.
type Files struct {
	Cert     string // certificate chain, leaf first
	Key      string // the leaf's private key (PKCS#8, PKCS#1 RSA or SEC 1 EC)
	ClientCA string // CA bundle client certificates are verified against; "": none
}

// Load reads the files into one server tls.Config: TLS 1.2 and 1.3, ALPN NextProtos, the
// certificate and, with ClientCA, RequireAndVerifyClientCert against that bundle. Errors
// name the file that failed.
func (f Files) Load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("certificate %s / key %s: %w", f.Cert, f.Key, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   NextProtos,
		Certificates: []tls.Certificate{cert},
	}
	if f.ClientCA != "" {
		pem, err := os.ReadFile(f.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no PEM certificate", f.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Certs is the listener's current TLS settings. The tls.Config given to connections
// (ServerConfig) stays the same for the process's life and owns the session ticket keys
// (crypto/tls creates the first at the first handshake, a new one every 24 h, each valid
// for 7 days); it returns the current settings from GetConfigForClient, so a reload
// changes certificates and client CAs but keeps the ticket keys.
type Certs struct {
	files  Files
	cur    atomic.Pointer[tls.Config]
	server *tls.Config
}

// NewCerts loads files (an error if any of them cannot be read or parsed).
func NewCerts(files Files) (*Certs, error) {
	cfg, err := files.Load()
	if err != nil {
		return nil, err
	}
	c := &Certs{files: files}
	c.cur.Store(cfg)
	c.server = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: NextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.cur.Load(), nil
		},
	}
	return c, nil
}

// Reload reads the files again and, only if all of them load, makes them the settings of
// the handshakes that start from now on; open connections keep theirs. On an error the
// old settings stay, whole.
func (c *Certs) Reload() error {
	cfg, err := c.files.Load()
	if err != nil {
		return err
	}
	c.cur.Store(cfg)
	return nil
}

// ServerConfig is the tls.Config of the listener's connections.
func (c *Certs) ServerConfig() *tls.Config { return c.server }

// Listener accepts TCP connections from an inner listener, runs each TLS handshake in its
// own goroutine (a slow client holds up nobody), and returns from Accept the connections
// whose handshake succeeded: a *tls.Conn when the client chose "h2", else H1(conn).
type Listener struct {
	inner   net.Listener
	config  *tls.Config
	metrics *metrics.TLS
	h1      func(net.Conn) net.Conn

	ctx    context.Context // cancelled by Close: handshakes in progress end
	cancel context.CancelFunc
	ready  chan accepted
	once   sync.Once

	// firstBytes counts the connections from which a handshake has read a byte (what
	// makes a failed one a handshake error); tests wait on it before ending handshakes.
	firstBytes atomic.Int64
}

type accepted struct {
	c   net.Conn
	err error
}

// New starts accepting on inner. config is Certs.ServerConfig(); m counts handshakes; h1
// wraps a connection that negotiated HTTP/1.1 (or no ALPN) before net/http reads it.
func New(inner net.Listener, config *tls.Config, m *metrics.TLS, h1 func(net.Conn) net.Conn) *Listener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{inner: inner, config: config, metrics: m, h1: h1, ctx: ctx, cancel: cancel,
		ready: make(chan accepted)}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case l.ready <- accepted{err: err}:
			case <-l.ctx.Done():
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // net/http backs off and calls Accept again
			}
			return
		}
		go l.handshake(c)
	}
}

// handshake runs the server handshake of raw within HandshakeTimeout, counts it, and
// queues the connection for Accept.
func (l *Listener) handshake(raw net.Conn) {
	rc := &readCount{Conn: raw, first: &l.firstBytes}
	tc := tls.Server(rc, l.config)
	ctx, cancel := context.WithTimeout(l.ctx, HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if rc.read {
			// A connection closed before its first byte (a port probe, a client that
			// gave up) is not a handshake.
			l.metrics.HandshakeErrors.Inc()
		}
		_ = raw.Close()
		return
	}
	state := tc.ConnectionState()
	l.metrics.Handshake(state.DidResume)
	var c net.Conn = tc
	if state.NegotiatedProtocol != "h2" {
		c = l.h1(tc)
	}
	select {
	case l.ready <- accepted{c: c}:
	case <-l.ctx.Done():
		_ = c.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.ready:
		return a.c, a.err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting and ends the handshakes in progress. Connections already
// returned by Accept are not touched.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// readCount notes whether any byte was read from the connection. The handshake goroutine
// reads the flag only after its handshake, before the connection is handed on.
type readCount struct {
	net.Conn
	read  bool
	first *atomic.Int64 // incremented once, at the first byte
}

func (r *readCount) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 && !r.read {
		r.read = true
		r.first.Add(1)
	}
	return n, err
}
