// Package upstream builds the per-endpoint HTTP client side: one http.Transport per
// endpoint of each placement with the contract's pool values (docs/spec.md section 1), the connect
// timeout, ResponseHeaderTimeout = request_ms and the placement's TLS settings.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"pingora-parity/go-baseline/internal/config"
)

// Pool values shared with the Pingora router (docs/spec.md section 1). MaxIdleConnsPerHost
// is sized above any concurrency one process can hold, so the count never closes a
// connection the next burst of requests needs (with 256, 1024 client connections made the
// transport close and redial an upstream connection for about 0.2-0.5 requests in 1,
// issue 14); idle connections still close after IdleConnTimeout.
const (
	MaxIdleConnsPerHost = 16384
	IdleConnTimeout     = 60 * time.Second
)

// ExpectContinueWait is how long the transport waits, after sending the head of a request
// that carries "Expect: 100-continue", for the upstream's 100 Continue (or its final
// answer) before it sends the body anyway (RFC 9110 section 10.1.1: a client that sends
// the expectation need not wait long; 1 s is curl's wait). Waiting lets the upstream
// decide: its 100 is what the client gets, and a final answer instead (417, 401, ...)
// reaches the client before it has sent the body. Without the wait the transport read the
// client's body at once, net/http's server sent its own 100 for that read, and the
// upstream's 100 followed as a second one.
const ExpectContinueWait = time.Second

// ConnectError marks a failure to connect: TCP refused/unreachable/timeout or a TLS
// handshake or verification failure. It is what section 3 step 6 calls a connect failure.
type ConnectError struct{ Err error }

func (e *ConnectError) Error() string { return "connect: " + e.Err.Error() }
func (e *ConnectError) Unwrap() error { return e.Err }

// IsConnect reports whether err is (or wraps) a ConnectError.
func IsConnect(err error) bool {
	var ce *ConnectError
	return errors.As(err, &ce)
}

// Upstream is the client side of one endpoint of a placement.
type Upstream struct {
	// Transport carries proxied requests.
	Transport *http.Transport
	// Probe is the health-check client (its own small pool, same TLS settings).
	Probe *http.Client
	// Endpoint is the parsed endpoint.
	Endpoint config.Endpoint
	// Protocol is the placement's upstream protocol: with H2 both Transport and Probe
	// speak HTTP/2 only (docs/spec.md section 3, "Upstream HTTP/2").
	Protocol config.Protocol
	// HostPort is Endpoint.HostPort(), computed once: the upstream URL's host and the
	// Host header of every proxied request.
	HostPort string
}

// Same reports whether an Upstream built for endpoint aep of placement a can serve
// endpoint bep of b unchanged: same endpoint, timeouts, tls block and protocol.
func Same(a *config.Placement, aep config.Endpoint, b *config.Placement, bep config.Endpoint) bool {
	return aep == bep && a.Timeouts == b.Timeouts && config.SameTLS(a.TLS, b.TLS) && a.Protocol == b.Protocol
}

// Resolve is the socket address the endpoint selection orders and hashes the endpoint
// by (docs/spec.md section 3, "Endpoint selection"): its IP literal, or for a DNS name
// the first address the resolver returns (the unspecified IPv4 address when it fails).
func Resolve(ep config.Endpoint) netip.AddrPort {
	if a, err := netip.ParseAddr(ep.Hostname()); err == nil {
		return netip.AddrPortFrom(a, uint16(ep.Port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", ep.Host); err == nil && len(as) > 0 {
		return netip.AddrPortFrom(as[0].Unmap(), uint16(ep.Port))
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(ep.Port))
}

// New builds the Upstream of endpoint ep of placement p. A TLS file that cannot be
// loaded makes every connection attempt fail with a ConnectError (there is no fallback
// to plaintext).
func New(p *config.Placement, ep config.Endpoint) *Upstream {
	connect := time.Duration(p.Timeouts.ConnectMS) * time.Millisecond
	var tlsCfg *tls.Config
	var tlsErr error
	if ep.Scheme == "https" {
		tlsCfg, tlsErr = TLSConfig(p, ep)
	}
	t := newTransport(ep.Scheme, p.Protocol, connect, tlsCfg, tlsErr)
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	t.IdleConnTimeout = IdleConnTimeout
	t.ResponseHeaderTimeout = time.Duration(p.Timeouts.RequestMS) * time.Millisecond
	t.ExpectContinueTimeout = ExpectContinueWait

	pt := newTransport(ep.Scheme, p.Protocol, connect, tlsCfg, tlsErr)
	pt.MaxIdleConnsPerHost = 1
	pt.IdleConnTimeout = IdleConnTimeout
	return &Upstream{Transport: t, Probe: &http.Client{Transport: pt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		Endpoint: ep, HostPort: ep.HostPort(), Protocol: p.Protocol}
}

// Close drops idle connections of both pools (in-flight requests finish).
func (u *Upstream) Close() {
	u.Transport.CloseIdleConnections()
	u.Probe.CloseIdleConnections()
}

// ErrNoH2 is the connect failure of an "h2" placement whose upstream did not select h2 in
// ALPN (docs/spec.md section 3, "Upstream HTTP/2").
var ErrNoH2 = errors.New("upstream did not negotiate h2 (ALPN)")

func newTransport(scheme string, proto config.Protocol, connect time.Duration, tlsCfg *tls.Config, tlsErr error) *http.Transport {
	if proto == config.H2 {
		return newH2Transport(connect, tlsCfg, tlsErr)
	}
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:              nil,
		DisableCompression: true, // pass encodings through untouched
		ForceAttemptHTTP2:  false,
		TLSNextProto:       map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &ConnectError{err}
			}
			return &HeadConn{Conn: c}, nil
		},
	}
	if scheme == "https" {
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc, err := dialTLS(ctx, d, connect, network, addr, tlsCfg, tlsErr)
			if err != nil {
				return nil, err
			}
			return &HeadConn{Conn: tc}, nil
		}
	}
	return t
}

// newH2Transport is the transport of an "h2" placement (https endpoints only): TLS with
// ALPN offering "h2" alone, a connection that did not select it failing as a connect
// failure, then net/http's bundled HTTP/2 client (http.Transport with Protocols = HTTP/2
// only), which keeps one connection per endpoint and multiplexes the requests on it,
// dialling another only when the server's SETTINGS_MAX_CONCURRENT_STREAMS is reached.
// Its connections are *tls.Conn as dialled (the HTTP/2 client needs one): the HTTP/1
// response-head filter (HeadConn) is not on them.
func newH2Transport(connect time.Duration, tlsCfg *tls.Config, tlsErr error) *http.Transport {
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	var cfg *tls.Config
	if tlsCfg != nil {
		cfg = tlsCfg.Clone()
		cfg.NextProtos = []string{"h2"}
	}
	var protos http.Protocols
	protos.SetHTTP2(true)
	return &http.Transport{
		Proxy:              nil,
		DisableCompression: true, // pass encodings through untouched
		Protocols:          &protos,
		TLSClientConfig:    cfg,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			tc, err := dialTLS(ctx, d, connect, network, addr, cfg, tlsErr)
			if err != nil {
				return nil, err
			}
			if tc.ConnectionState().NegotiatedProtocol != "h2" {
				tc.Close()
				return nil, &ConnectError{ErrNoH2}
			}
			return tc, nil
		},
	}
}

// dialTLS dials addr and runs the client TLS handshake with cfg, both within connect
// (connect_ms covers TCP connect and the TLS handshake together, docs/spec.md section 2).
// Every failure, tlsErr (the placement's TLS settings did not load) included, is a
// *ConnectError, so the request counts as a connect failure (failover, breaker kind
// connect). The returned connection has completed its handshake.
func dialTLS(ctx context.Context, d *net.Dialer, connect time.Duration, network, addr string, cfg *tls.Config, tlsErr error) (*tls.Conn, error) {
	if tlsErr != nil {
		return nil, &ConnectError{tlsErr}
	}
	cctx, cancel := context.WithTimeout(ctx, connect)
	defer cancel()
	c, err := d.DialContext(cctx, network, addr)
	if err != nil {
		return nil, &ConnectError{err}
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(cctx); err != nil {
		c.Close()
		return nil, &ConnectError{err}
	}
	return tc, nil
}

// TLSConfig builds the client TLS config of https endpoint ep of placement p: roots from
// tls.ca_file (else the system roots), server name tls.server_name (absent or empty: the
// endpoint host) used for SNI and verification, and the client certificate when
// configured.
func TLSConfig(p *config.Placement, ep config.Endpoint) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: ep.Hostname()}
	t := p.TLS
	if t == nil {
		return cfg, nil
	}
	if t.ServerName != nil && *t.ServerName != "" {
		cfg.ServerName = *t.ServerName
	}
	if t.CAFile != nil && *t.CAFile != "" {
		pem, err := os.ReadFile(*t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificates", *t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.ClientCertFile != nil && t.ClientKeyFile != nil {
		cert, err := tls.LoadX509KeyPair(*t.ClientCertFile, *t.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
