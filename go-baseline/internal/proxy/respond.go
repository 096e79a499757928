package proxy

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"

	"pingora-parity/go-baseline/internal/errcode"
)

// writeError sends the router-made response for code (docs/spec.md section 3,
// "Router-made responses"): code's status, X-Router-Error, X-Router-Placement when a
// placement had been chosen (placement != ""), and the JSON body
// {"error":"<code>","message":"<text>"}. It records the code for the access log and
// counts it in router_errors_total{code}.
func (h *Handler) writeError(w http.ResponseWriter, st *reqState, code errcode.Code, placement string) {
	body, _ := json.Marshal(struct {
		Error   errcode.Code `json:"error"`
		Message string       `json:"message"`
	}{code, code.Message()})
	hd := w.Header()
	if placement != "" {
		hd.Set("X-Router-Placement", placement)
	}
	hd.Set("X-Router-Error", code.String())
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code.Status())
	_, _ = w.Write(body)
	st.errCode = code
	h.metrics.RouterError(code)
}

// respWriter records the status sent to the client. Unwrap lets ReverseProxy's
// http.ResponseController reach Flush and Hijack of the real writer.
//
// It also forwards the upstream's interim responses as the Pingora router does: every 1xx
// the upstream sends, in order, 100 Continue included (RFC 9110 section 15.2: a proxy
// forwards 1xx responses), and no 100 Continue of its own beyond them. net/http's server
// writes a 100 Continue by itself on the first read of a body whose request expects one
// (an HTTP/1.1 request with "Expect: 100-continue" and a body); the transport, which waits
// for the upstream's 100 before it reads the body (upstream.ExpectContinueWait), can
// still read it before ReverseProxy forwards that 100. So, for such a request only: the
// body's first read, when no 100 went out before it, stands for the upstream's first 100
// (bodyRead, via reqBodyWatch) and that forwarded 100 is dropped; a forwarded 100 that
// comes first goes out, and WriteHeader(100) turns net/http's own off. A request without
// that expectation gets no 100 from net/http: each forwarded 1xx goes out.
type respWriter struct {
	http.ResponseWriter
	status int
	http10 bool // the client speaks HTTP/1.0: no interim (1xx) responses
	// close10: an HTTP/1.0 request whose Connection lists close; the final response says
	// Connection: close (set at WriteHeader: ReverseProxy clears the header map after
	// each forwarded 1xx, dropped or not)
	close10  bool
	hijacked bool // Hijack succeeded (a 101's tunnel): net/http no longer serves the connection
	// expect100: net/http sends its own 100 Continue on the body's first read (set before
	// the handler forwards anything).
	expect100 bool

	continueMu sync.Mutex // the transport's reader and writer goroutines both reach here
	sent100    bool       // a 100 Continue went out or is going out (forwarded or net/http's)
	own100     bool       // net/http's own 100 went out in place of the upstream's first
}

// bodyRead is called before each read of the client's request body: net/http sends its
// own 100 Continue on the first one, if the request expects it and none was sent.
func (w *respWriter) bodyRead() {
	if !w.expect100 {
		return
	}
	w.continueMu.Lock()
	if !w.sent100 {
		w.sent100, w.own100 = true, true
	}
	w.continueMu.Unlock()
}

func (w *respWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols && w.http10 {
		// ReverseProxy forwards an upstream's interim responses; a server must not send
		// a 1xx to an HTTP/1.0 client (RFC 9110 section 15.2).
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// ReverseProxy copies a 1xx's fields as they came (its removeHopByHopHeaders runs
		// on final responses only): hop-by-hop fields are removed from 1xx too (docs/spec.md
		// section 3, "Headers"; RFC 9110 section 7.6.1), as the Pingora router does.
		removeHopByHop(w.Header())
	}
	if code == http.StatusContinue {
		w.continueMu.Lock()
		defer w.continueMu.Unlock()
		if w.own100 {
			w.own100 = false // the upstream's first 100: net/http has sent it already
			return
		}
		w.sent100 = true
	}
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
		if w.close10 {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *respWriter) Flush() { _ = w.FlushError() }

// FlushError flushes the real writer; ReverseProxy's http.ResponseController calls it
// after every write (FlushInterval -1). Asserting the writer's interfaces directly
// avoids a ResponseController allocation per flush.
func (w *respWriter) FlushError() error {
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands over the client connection (ReverseProxy does for a 101, through
// http.ResponseController) and records that it did.
func (w *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, brw, err
}
