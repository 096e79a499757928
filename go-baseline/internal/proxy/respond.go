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
// It also sees that the client gets at most one "100 Continue" (RFC 9110 section
// 10.1.1). Two sources could send one: net/http's server writes it by itself on the first
// read of a body whose request expects it, and ReverseProxy forwards the upstream's (the
// Expect field goes upstream, and the transport waits for the upstream's 100 before it
// reads the body, see upstream.ExpectContinueWait). Whichever comes first is sent: the
// body's first read marks the 100 as sent (bodyRead, via reqBodyWatch) and a forwarded
// 100 after it is dropped; a forwarded 100 before it goes out, and WriteHeader(100)
// turns net/http's own off.
type respWriter struct {
	http.ResponseWriter
	status   int
	http10   bool // the client speaks HTTP/1.0: no interim (1xx) responses
	hijacked bool // Hijack succeeded (a 101's tunnel): net/http no longer serves the connection

	continueMu sync.Mutex // the transport's reader and writer goroutines both reach here
	continued  bool       // a 100 Continue was sent or is being sent by net/http
}

// bodyRead is called before each read of the client's request body: net/http sends its
// own 100 Continue on the first one, if the request expects it.
func (w *respWriter) bodyRead() {
	w.continueMu.Lock()
	w.continued = true
	w.continueMu.Unlock()
}

func (w *respWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols && w.http10 {
		// ReverseProxy forwards an upstream's interim responses; a server must not send
		// a 1xx to an HTTP/1.0 client (RFC 9110 section 15.2).
		return
	}
	if code == http.StatusContinue {
		w.continueMu.Lock()
		defer w.continueMu.Unlock()
		if w.continued {
			return
		}
		w.continued = true
	}
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
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
