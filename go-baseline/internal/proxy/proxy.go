// Package proxy is the data plane of docs/spec.md section 3 on httputil.ReverseProxy.
//
// Layout:
//   - proxy.go: Handler (steps 1 to 4 before ReverseProxy runs) and ReverseProxy's hooks:
//     Rewrite points the request at the chosen placement, the Transport field is a
//     RoundTripper over the per-placement http.Transport that does the connect-failure
//     retry (step 6), ErrorHandler maps upstream failures (step 7), ModifyResponse tags
//     the response and watches the body for a committed abort (step 8); finish settles
//     breaker, slot, metrics and access log for every request.
//   - headers.go: the header rules of section 3, "Headers" (hop-by-hop, X-Forwarded-*,
//     Host, trailers), for both directions.
//   - respond.go: router-made responses (errcode.Code → status, headers, JSON body) and
//     the response writer that records the status sent.
//   - framing.go: the request gate between the socket and net/http: it checks each request
//     head before net/http parses it and has the router answer the heads it refuses
//     (malformed, over 64 KiB, conflicting framing), which net/http would answer itself
//     or hide from the handler.
//   - accesslog.go: the --access-log line (section 8).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"pingora-parity/go-baseline/internal/breaker"
	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/routing"
	"pingora-parity/go-baseline/internal/store"
	"pingora-parity/go-baseline/internal/upstream"
)

// Handler is the data-plane http.Handler.
type Handler struct {
	store   *store.Store
	metrics *metrics.Metrics
	log     *accessLog // nil: off
	rp      *httputil.ReverseProxy
	now     func() time.Time
	proto   string // X-Forwarded-Proto: "http", or "https" after ListenerTLS
}

// ListenerTLS tells the handler that its listener is TLS (--tls-cert): requests go
// upstream with X-Forwarded-Proto: https (docs/spec.md section 3, "Headers"). Call it
// before serving.
func (h *Handler) ListenerTLS() { h.proto = "https" }

// headerListSize is an HTTP/2 request's header list size (RFC 9113 section 6.5.2: per
// field, name and value lengths plus 32), pseudo-header fields included, as decoded: the
// measure the head limit uses over HTTP/2. net/http's server joins Cookie fields with
// "; " and gives no :scheme back (the listener is TLS, so "https" is counted).
func headerListSize(r *http.Request) int {
	const overhead = 32
	n := len(":method") + len(r.Method) + len(":scheme") + len("https") +
		len(":authority") + len(r.Host) + len(":path") + len(r.RequestURI) + 4*overhead
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + overhead
		}
	}
	return n
}

// closeAfter marks the response as the connection's last (Connection: close, RFC 9112
// section 9.6) on HTTP/1.x. An HTTP/2 response never carries Connection (RFC 9113 section
// 8.2.2), and net/http's HTTP/2 server takes "Connection: close" from a handler as an
// order to send GOAWAY and end the connection, which the contract does not ask for a
// router-made answer on one stream: nothing is set there.
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// New returns the data-plane handler. logW, when not nil, receives one JSON line per
// request (docs/spec.md section 8).
func New(st *store.Store, m *metrics.Metrics, logW io.Writer) *Handler {
	h := &Handler{store: st, metrics: m, now: time.Now, proto: "http"}
	if logW != nil {
		h.log = &accessLog{w: logW}
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      &retryTransport{h: h},
		FlushInterval:  -1,
		ErrorHandler:   h.errorHandler,
		ModifyResponse: h.modifyResponse,
		ErrorLog:       log.New(io.Discard, "", 0),
		BufferPool:     &bufferPool{},
	}
	return h
}

// copyBufferSize is the size of the buffers ReverseProxy copies response bodies through
// (its own default, allocated afresh per request when no BufferPool is set).
const copyBufferSize = 32 << 10

// bufferPool is an httputil.BufferPool over sync.Pool, one per Handler: it reuses
// ReverseProxy's body-copy buffers across requests. Without it every response allocates
// (and zeroes) 32 KiB, which is most of the garbage a proxied request makes, so most of
// the garbage collector's work. It holds array pointers, so that neither Get nor Put
// allocates.
type bufferPool struct{ p sync.Pool }

// Get returns a buffer of copyBufferSize bytes.
func (b *bufferPool) Get() []byte {
	if a, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return a[:]
	}
	return make([]byte, copyBufferSize)
}

// Put gives back a buffer obtained from Get.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < copyBufferSize {
		return
	}
	b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}

type ctxKey struct{}

// reqState follows one request from selection to the end of its response.
type reqState struct {
	chain      []*routing.Placement
	idx        int
	cur        *routing.Placement // placement tried last
	peer       *routing.Peer      // cur's endpoint tried last
	tried      routing.Tried      // cur's endpoints tried by this request
	permit     breaker.Permit
	outcomeDue bool // permit of peer still needs a Record or Release
	connected  bool // the current attempt got an upstream connection (gotConn)
	slot       bool // holds cur's concurrency slot
	bodiless   bool
	fullDuplex bool                // EnableFullDuplex is on: the handler ends the request body itself (endBody)
	failKind   metrics.FailureKind // timeout or protocol, decided before headers
	upStatus   int                 // upstream response status
	bodyErr    error               // upstream body read error
	clientGone bool
	errCode    errcode.Code // router-made response code, 0: none

	refused *refusal      // the gate refused the head: r is its stand-in (the access log names the head)
	req     *http.Request // the client's request (consistent-hash keys)

	upConn *upstream.HeadConn // the upstream connection of the current attempt (set by gotConn)

	// wireTarget is the request-target the upstream request line must carry when net/http
	// would write it re-encoded ("" otherwise; forwardRequestTarget), wireFrom net/http's form.
	wireTarget, wireFrom string

	mu         sync.Mutex // reqBodyErr is set by the transport's body-writing goroutine
	reqBodyErr error      // client request body read error

	rw respWriter // the client's response writer (one allocation with the state)
}

func stateOf(ctx context.Context) *reqState { return ctx.Value(ctxKey{}).(*reqState) }

// ServeHTTP runs steps 1 to 9 of docs/spec.md section 3 for one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	st := &reqState{}
	rw := &st.rw
	rw.ResponseWriter = w
	rw.http10 = r.ProtoMajor == 1 && r.ProtoMinor == 0
	// net/http's own condition for its automatic 100 Continue (server.go, expectContinueReader).
	rw.expect100 = r.ProtoAtLeast(1, 1) && r.ContentLength != 0 && hasToken([]byte(r.Header.Get("Expect")), "100-continue")
	defer h.finish(rw, r, st, start)

	if rw.http10 && slices.ContainsFunc(r.Header["Connection"], func(v string) bool { return hasToken([]byte(v), "close") }) {
		// close in any Connection line ends the connection after the response, which
		// says so (RFC 9112 section 9.6: the server SHOULD send close; docs/spec.md
		// section 3, "HTTP/1.0 clients"). net/http writes no Connection on an HTTP/1.0
		// response it closes after, and keeps a connection whose first Connection line
		// lists keep-alive (wantsHttp10KeepAlive reads that line only) when the response
		// has a length, whatever says close: the field set here does both (again at the
		// final WriteHeader, after any 1xx cleared the header map).
		closeAfter(w, r)
		rw.close10 = true
	}
	if rf := refusedHead(r); rf != nil {
		// The stand-in for a head the connection's gate refused (framing.go): the
		// router's answer to what net/http would have answered itself, or accepted.
		st.refused = rf
		closeAfter(w, r)
		h.writeError(rw, st, rf.code, "")
		return
	}
	if r.ProtoMajor == 2 {
		// No gate reads HTTP/2 heads: the handler checks what the contract adds to
		// net/http's HTTP/2 server (docs/spec.md section 3, "TLS and HTTP/2 on the
		// listener").
		if headerListSize(r) > MaxHeadBytes {
			h.writeError(rw, st, errcode.RequestHeadersTooLarge, "")
			return
		}
		if cl, ok := r.Header["Content-Length"]; ok && (len(cl) != 1 || cl[0] != strconv.FormatInt(r.ContentLength, 10)) {
			// A content-length the stream's DATA cannot match (RFC 9113 section 8.1.1):
			// net/http takes a HEADERS frame that ends the stream as a bodiless request
			// (ContentLength 0) whatever the field says, and an unparsable value as 0.
			h.writeError(rw, st, errcode.BadRequest, "")
			return
		}
	}
	if r.Method == http.MethodConnect || !targetFormAllowed(r.Method, r.RequestURI) || !hostValid(r) {
		// CONNECT (RFC 9110 section 9.3.6) is refused whatever its target: the router
		// proxies no tunnels, and forwarding "CONNECT h:p" to an origin asks it for one.
		closeAfter(w, r)
		h.writeError(rw, st, errcode.BadRequest, "")
		return
	}
	st.req = r
	d := routing.Select(h.store.Load(), r.Header["X-Routing-Key"], st, start)
	h.countFailovers(d.Failovers)
	if d.Err != 0 {
		h.writeError(rw, st, d.Err, "")
		return
	}
	if !d.Placement.Limiter.TryAcquire() {
		d.Peer.Breaker.Release(d.Permit)
		h.writeError(rw, st, errcode.ConcurrencyLimit, d.Placement.ID)
		return
	}
	st.chain, st.idx, st.cur, st.peer, st.permit, st.outcomeDue, st.slot = d.Chain, d.Index, d.Placement, d.Peer, d.Permit, true, true
	st.tried.Add(d.Peer.Index)
	st.bodiless = r.ContentLength == 0 && len(r.TransferEncoding) == 0
	if !st.bodiless {
		// The request body streams upstream while the response may already stream back
		// (section 3, "Streaming"). Without full duplex net/http's server, when the
		// response head is written, reads what is left of the request body itself and
		// closes it: the head waited for the whole body, and the transport still sending
		// it upstream could fail on the closed body and cut the response.
		if fd, ok := w.(interface{ EnableFullDuplex() error }); ok {
			st.fullDuplex = fd.EnableFullDuplex() == nil
		}
	}
	h.rp.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
}

func (h *Handler) countFailovers(steps []routing.Step) {
	for _, s := range steps {
		h.metrics.Failovers.WithLabelValues(s.From, s.To).Inc()
	}
}

// rewrite is ReverseProxy's Rewrite hook: it builds the upstream request from the
// client's (headers: forwardRequestHeaders) and points it at the chosen placement's
// endpoint (target). It watches the request body for a client fault.
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	forwardRequestHeaders(pr, h.proto)
	if !pr.In.ProtoAtLeast(1, 1) {
		// RFC 9110 section 7.8: an HTTP/1.0 request is never an upgrade. ReverseProxy has
		// re-added "Connection: Upgrade" and the Upgrade value whatever the version.
		pr.Out.Header.Del("Connection")
		pr.Out.Header.Del("Upgrade")
	}
	pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{GotConn: st.gotConn}))
	st.wireTarget = forwardRequestTarget(pr.Out, pr.In.RequestURI)
	if pr.Out.Body != nil && pr.Out.Body != http.NoBody {
		pr.Out.Body = &reqBodyWatch{ReadCloser: pr.Out.Body, st: st}
		if up, ok := st.peer.Upstream.(*upstream.Upstream); ok && up.Protocol != config.H2 {
			// A pooled connection refused by the reuse check: the body goes again on a
			// new connection (replay.go).
			rb := &replayBody{src: pr.Out.Body, st: st}
			pr.Out.Body, pr.Out.GetBody = &replayAttempt{r: rb}, rb.getBody
		}
	}
	target(pr.Out, st.peer)
	if st.wireTarget != "" {
		st.wireFrom = pr.Out.URL.RequestURI()
	}
}

// gotConn is the ClientTrace hook called when the transport hands an upstream connection
// to an attempt, before the request is written: it starts the connection's record of the
// response head (upstream.HeadConn), which modifyResponse reads, and for a connection from
// the idle pool arms the reuse check of its first write (HeadConn.CheckBeforeWrite).
func (st *reqState) gotConn(info httptrace.GotConnInfo) {
	st.connected = true
	st.upConn = nil
	if hc, ok := info.Conn.(*upstream.HeadConn); ok {
		hc.Begin()
		if st.req != nil && st.req.Method == http.MethodHead {
			hc.HeadRequest() // its response ends with its head (upstream/overread.go)
		}
		if info.Reused {
			hc.CheckBeforeWrite()
		}
		if st.wireTarget != "" {
			hc.RewriteTarget(st.wireFrom, st.wireTarget) // never re-encoded (RFC 9110 section 7.7)
		}
		st.upConn = hc
	}
}

// reqBodyWatch remembers a failed read of the client's request body, so that a client
// fault (aborted upload, broken chunked framing) is not blamed on the upstream.
type reqBodyWatch struct {
	io.ReadCloser
	st  *reqState
	eof bool // the body has ended (only the transport's writer goroutine reads it)
}

func (b *reqBodyWatch) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	b.st.rw.bodyRead()
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		// The transport reads once more after Content-Length bytes; answer it here, so
		// that it never meets the server's body after the handler has closed it.
		b.eof = true
	}
	if err != nil && err != io.EOF {
		b.st.mu.Lock()
		if b.st.reqBodyErr == nil {
			b.st.reqBodyErr = err
		}
		b.st.mu.Unlock()
	}
	return n, err
}

// HashKey is routing.KeySource: the request's consistent-hash key for k (docs/spec.md
// section 3, "Endpoint selection").
func (st *reqState) HashKey(k config.HashKey) string {
	switch k.Kind {
	case config.HashRoutingKey:
		if v := st.req.Header["X-Routing-Key"]; len(v) > 0 {
			return v[0]
		}
	case config.HashPath:
		return targetPath(st.req.RequestURI)
	case config.HashHeader:
		return st.req.Header.Get(k.Header)
	}
	return ""
}

// targetPath is a request-target's path as received, without the query: origin-form up
// to the first '?'; absolute-form from the first '/' after the authority ("/" when there
// is none); asterisk-form "*".
func targetPath(target string) string {
	if !strings.HasPrefix(target, "/") {
		i := strings.Index(target, "://")
		if i < 0 {
			return target // "*" (authority-form never reaches routing)
		}
		rest := target[i+3:]
		j := strings.IndexAny(rest, "/?#")
		if j < 0 || rest[j] != '/' {
			return "/"
		}
		target = rest[j:]
	}
	if q := strings.IndexByte(target, '?'); q >= 0 {
		return target[:q]
	}
	return target
}

func (st *reqState) clientBodyFailed() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.reqBodyErr != nil
}

// clientBodyCut reports whether the client's request body read failed because its
// connection ended before the body's end (net/http's HTTP/1 body reader says
// io.ErrUnexpectedEOF for a short Content-Length body and a chunked one alike).
func (st *reqState) clientBodyCut() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return errors.Is(st.reqBodyErr, io.ErrUnexpectedEOF)
}

// retryTransport sends the request to the current endpoint's transport and, on a connect
// failure of a request without a body, continues with the placement's next available
// endpoint, then down the chain (step 6).
type retryTransport struct{ h *Handler }

// errNotHTTP1 is an upstream response whose status line is not a valid HTTP/1.x one: its
// version is not HTTP/1.x or its status is outside 100..599.
type errNotHTTP1 struct {
	proto  string
	status int
}

func (e errNotHTTP1) Error() string {
	return fmt.Sprintf("upstream answered %s %03d, not a valid HTTP/1.x status line", e.proto, e.status)
}

// errFaultyFraming is an HTTP/1.0 upstream response with Transfer-Encoding (RFC 9112
// section 6.1); ErrorHandler makes it upstream_protocol_error.
type errFaultyFraming struct{}

func (errFaultyFraming) Error() string {
	return "upstream answered HTTP/1.0 with Transfer-Encoding: faulty framing"
}

// routerError carries a router-made response out of the RoundTripper to ErrorHandler.
type routerError struct {
	code      errcode.Code
	placement string
}

func (e *routerError) Error() string { return e.code.String() }

func (t *retryTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	h := t.h
	st := stateOf(out.Context())
	for {
		up := st.peer.Upstream.(*upstream.Upstream)
		st.connected = false
		resp, err := up.Transport.RoundTrip(out)
		if st.connected {
			h.metrics.PeerRequest(st.cur.ID, st.peer.URL())
		}
		if err == nil {
			if badVersion(up.Protocol, resp) || resp.StatusCode < 100 || resp.StatusCode > 599 {
				// net/http parses any "HTTP/x.y" status line and any three-digit status; the
				// contract proxies HTTP/1.0 and HTTP/1.1 responses only (section 3 step 7: the
				// Pingora router's parser, httparse parse_version, reads no other), and a
				// status outside 100..599 is not a valid one (RFC 9110 section 15).
				// ErrorHandler makes it upstream_protocol_error.
				resp.Body.Close()
				return nil, errNotHTTP1{resp.Proto, resp.StatusCode}
			}
			if resp.ProtoMajor == 1 && resp.ProtoMinor == 0 && st.upConn != nil && st.upConn.FinalTransferEncoding() {
				// An HTTP/1.0 response with Transfer-Encoding: its framing is faulty (RFC 9112
				// section 6.1; docs/spec.md section 3, "Upstream responses"). net/http deleted
				// the field and would read the chunked bytes to the close as the body; the
				// Pingora router decodes them. Both answer 502 upstream_protocol_error.
				resp.Body.Close()
				return nil, errFaultyFraming{}
			}
			return resp, nil
		}
		if out.Context().Err() != nil {
			st.clientGone = true
			return nil, err
		}
		if !upstream.IsConnect(err) {
			return nil, err
		}
		now := h.now()
		h.metrics.UpstreamFailure(st.cur.ID, st.peer.URL(), metrics.KindConnect)
		st.peer.Breaker.Record(st.permit, false, now)
		st.outcomeDue = false
		if !st.bodiless {
			st.cur.Limiter.Release()
			st.slot = false
			return nil, &routerError{errcode.UpstreamConnectFailed, st.cur.ID}
		}
		if peer, permit, ok := st.cur.Pick(st, &st.tried, now); ok {
			// A new select in the same placement, refusing the endpoints already tried
			// (as the Pingora router's upstream_peer after fail_to_connect), keeping
			// the placement's slot.
			st.peer, st.permit, st.outcomeDue = peer, permit, true
			st.tried.Add(peer.Index)
			out = out.Clone(out.Context())
			out.Body = nil
			target(out, st.peer)
			continue
		}
		st.cur.Limiter.Release()
		st.slot = false
		d := routing.SelectFrom(st.chain, st.idx+1, st, now)
		h.countFailovers(d.Failovers)
		if d.Err != 0 {
			return nil, &routerError{errcode.UpstreamConnectFailed, st.cur.ID}
		}
		if !d.Placement.Limiter.TryAcquire() {
			d.Peer.Breaker.Release(d.Permit)
			st.cur, st.peer = d.Placement, d.Peer
			return nil, &routerError{errcode.ConcurrencyLimit, d.Placement.ID}
		}
		st.idx, st.cur, st.peer, st.permit, st.outcomeDue, st.slot = d.Index, d.Placement, d.Peer, d.Permit, true, true
		st.tried = routing.Tried{}
		st.tried.Add(d.Peer.Index)
		out = out.Clone(out.Context())
		out.Body = nil // bodiless: nothing for RoundTrip to have consumed or closed
		target(out, st.peer)
	}
}

// badVersion reports whether resp's version is not the one the placement speaks: HTTP/1.0
// or HTTP/1.1, or HTTP/2 for an "h2" placement.
func badVersion(p config.Protocol, resp *http.Response) bool {
	if p == config.H2 {
		return resp.ProtoMajor != 2
	}
	return resp.ProtoMajor != 1 || resp.ProtoMinor > 1
}

func (h *Handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	var re *routerError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		if !st.bodiless && re.code == errcode.UpstreamConnectFailed {
			// The transport closed the request body it could not send: net/http will end
			// the connection, so the answer says so (RFC 9112 section 9.6), as the
			// Pingora router's does.
			closeAfter(w, r)
		}
		h.writeError(w, st, re.code, re.placement)
	case st.clientBodyCut():
		// The client's connection ended before its body did (RFC 9112 section 8: an
		// incomplete message; a cancelled upload): a client that goes away (docs/spec.md
		// section 3, step 9), not a malformed body. Nobody to answer, nothing counted, as
		// in the Pingora router: a 400 here went to a half-closed client only, and was
		// counted in router_requests_total though a closed one never had it (parity fuzz
		// seed 1 case 66016: a HEAD with Content-Length 18 and 17 bytes).
		st.clientGone = true
		panic(http.ErrAbortHandler)
	case st.clientBodyFailed():
		// The client's body is malformed (chunked framing, a trailer section): 400,
		// neither an upstream failure nor a success.
		st.clientGone = true
		closeAfter(w, r)
		h.writeError(w, st, errcode.BadRequest, st.cur.ID)
	case st.clientGone || r.Context().Err() != nil:
		// Nobody to answer. Abort rather than return, or net/http would send an empty 200.
		st.clientGone = true
		panic(http.ErrAbortHandler)
	case errors.As(err, &ne) && ne.Timeout():
		st.failKind = metrics.KindTimeout
		h.metrics.UpstreamFailure(st.cur.ID, st.peer.URL(), metrics.KindTimeout)
		h.writeError(w, st, errcode.UpstreamTimeout, st.cur.ID)
	default: // broke off, garbage, or a status line that is not HTTP/1.x (errNotHTTP1)
		st.failKind = metrics.KindProtocol
		h.metrics.UpstreamFailure(st.cur.ID, st.peer.URL(), metrics.KindProtocol)
		h.writeError(w, st, errcode.UpstreamProtocolError, st.cur.ID)
	}
}

// modifyResponse is ReverseProxy's ModifyResponse hook: it runs once the upstream's
// response head is in, before anything is written to the client (so also before a 101).
// It applies the response header rules, counts a 5xx and watches the body for a
// committed abort (step 8).
func (h *Handler) modifyResponse(resp *http.Response) error {
	st := stateOf(resp.Request.Context())
	if resp.Close && resp.StatusCode != http.StatusSwitchingProtocols && st.upConn != nil {
		// net/http deleted a Connection field that lists "close" before ReverseProxy could
		// remove the fields it nominates: remove them here, from the head as received.
		if conn, ok := st.upConn.FinalConnection(); ok {
			removeNominated(resp.Header, conn)
		}
	}
	if resp.Request.Method == http.MethodHead && len(resp.TransferEncoding) > 0 {
		// A Transfer-Encoding overrides a Content-Length (RFC 9112 section 6.3 item 3),
		// which is removed (docs/spec.md section 3, "Upstream responses"); net/http's
		// transport does that for every response but one to HEAD, whose Content-Length it
		// keeps (and the Transfer-Encoding is hop-by-hop).
		resp.Header.Del("Content-Length")
	}
	forwardResponseHeaders(resp, st.cur.ID)
	st.upStatus = resp.StatusCode
	if resp.StatusCode >= 500 {
		h.metrics.UpstreamFailure(st.cur.ID, st.peer.URL(), metrics.KindStatus5xx)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy writes the 101 with Response.Write, which adds "Content-Length: 0"
		// when the request's method is neither GET nor HEAD (a POST upgrade); a 101 has no
		// content (RFC 9110 section 15.2) and the upstream's carries no such field, nor
		// does the Pingora router's. Response.Write reads the method from resp.Request
		// only (ReverseProxy checks the upgrade against its own request).
		req := *resp.Request
		req.Method = http.MethodGet
		resp.Request = &req
	} else {
		if _, ok := resp.Header["Content-Type"]; !ok {
			// The client gets the upstream's fields only. net/http's server, when the
			// body's first bytes are written before the head is flushed and the header map
			// has no Content-Type, sniffs the body and adds one ("text/plain;
			// charset=utf-8"); a nil value is its documented way to suppress that
			// (http.ResponseWriter.Write), and writes no field. ReverseProxy copies
			// resp.Header into this map after this hook and adds nothing for the key.
			st.rw.Header()["Content-Type"] = nil
		}
		resp.Body = &bodyWatch{ReadCloser: resp.Body, st: st, resp: resp}
	}
	return nil
}

// bodyWatch remembers a failed read of the upstream body (committed abort, step 8).
type bodyWatch struct {
	io.ReadCloser
	st   *reqState
	resp *http.Response
}

// Close closes the upstream body and drops the trailers read with it (Trailer is
// hop-by-hop, see forwardResponseHeaders).
func (b *bodyWatch) Close() error {
	err := b.ReadCloser.Close()
	b.resp.Trailer = nil
	return err
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.st.bodyErr == nil {
		b.st.bodyErr = err
	}
	return n, err
}

// finish settles the breaker outcome and the slot, counts the response and writes the
// access-log line. It also sees the http.ErrAbortHandler panic ReverseProxy raises when
// a committed response cannot be completed, and re-raises it so the server aborts the
// client connection.
func (h *Handler) finish(rw *respWriter, r *http.Request, st *reqState, start time.Time) {
	rec := recover()
	now := h.now()
	if st.peer != nil && st.outcomeDue {
		b := st.peer.Breaker
		switch {
		case st.failKind != "":
			b.Record(st.permit, false, now)
		case rec != nil || st.bodyErr != nil:
			if st.bodyErr != nil && r.Context().Err() == nil {
				h.metrics.UpstreamFailure(st.cur.ID, st.peer.URL(), metrics.KindAborted)
				b.Record(st.permit, false, now)
			} else {
				b.Release(st.permit) // the client went away
			}
		case st.clientGone:
			b.Release(st.permit)
		case st.upStatus >= 500:
			b.Record(st.permit, false, now)
		case st.upStatus > 0:
			b.Record(st.permit, true, now)
		default:
			b.Release(st.permit)
		}
	}
	if st.slot {
		st.cur.Limiter.Release()
	}
	status := rw.status
	if status == 0 && st.upStatus == http.StatusSwitchingProtocols {
		status = st.upStatus // ReverseProxy writes the 101 on the hijacked connection
	}
	placement := rw.Header().Get("X-Router-Placement")
	dur := now.Sub(start)
	if status != 0 {
		h.metrics.ObserveRequest(placement, status, dur)
	}
	if h.log != nil {
		h.log.write(start, r, st.refused, placement, status, st.errCode, dur)
	}
	if rec != nil {
		if rec == http.ErrAbortHandler && st.bodyErr != nil && rw.status >= 200 && !rw.hijacked && r.Context().Err() == nil {
			// The upstream's body failed after its head came whole (step 8, committed):
			// the head goes out, then the abort, as when the failure comes after body
			// bytes (ReverseProxy flushes each write). Before the first body byte the
			// head is still in net/http's buffer and the abort would drop it. Only on
			// this error path: the fast path keeps one write per response.
			_ = rw.FlushError()
		}
		panic(rec)
	}
	endBody(rw, r, st)
}

// endBody ends the client's request body before the handler returns, when net/http would
// otherwise do it after: with full duplex on, a body the transport has not read whole
// (the response came first, or the upstream stopped reading) is left to net/http's
// finishRequest, which aborts the connection's background read and only then closes the
// body, reading what is left of it (up to 256 KiB) to its end. That end starts a new
// background read nobody aborts, and the next read of the connection (the next request's
// head, or the transport reading a pipelined request's body) panics with "invalid
// concurrent Body.Read call" (golang/go#68560): the Go router's crash under parity fuzz.
//
// Closed here, the body is read to its end inside the handler (its background read is
// then aborted by finishRequest as usual), and its Close waits for a read the transport's
// writer goroutine has in progress: that goroutine can no longer read the connection after
// the handler returned (its next read fails with http.ErrBodyReadAfterClose). A read in
// progress waits for the client's bytes, as the Pingora router's proxy loop waits for the
// request body before it ends the exchange.
//
// Not done where net/http closes the connection after the answer and so reads nothing
// more from it: a request expecting 100-continue (net/http closes unless its body had
// ended when the head was written; a client waiting for a 100 may never send the body),
// a hijacked connection (101), a panic (client gone).
func endBody(rw *respWriter, r *http.Request, st *reqState) {
	if !st.fullDuplex || rw.hijacked || rw.expect100 {
		return
	}
	_ = r.Body.Close()
}
