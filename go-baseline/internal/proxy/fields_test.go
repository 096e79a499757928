package proxy

import (
	"testing"
)

// A response whose upstream sent no Content-Type reaches the client without one: net/http
// must not sniff the body and add "text/plain; charset=utf-8" (the router forwards the
// upstream's fields, docs/spec.md section 3, "Headers"). Sniffing happens only when the
// body's first bytes are written before the head is flushed, so several requests are
// made; on the unfixed router most of them got the sniffed field.
func TestNoContentTypeAddedToUpstreamResponse(t *testing.T) {
	up := newRawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nhello from backup")
	r := newRouter(t, doc(`"k":"p"`, `"p":`+placement(up.ln.Addr().String(), "", 4, 1000, "")))
	for i := 0; i < 50; i++ {
		resp := get(t, r.url, "k")
		body := readAll(t, resp)
		if resp.StatusCode != 200 || body != "hello from backup" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if ct, ok := resp.Header["Content-Type"]; ok {
			t.Fatalf("request %d: Content-Type %q added to an upstream response that had none", i, ct)
		}
	}
	// Router-made answers keep theirs.
	wantRouterError(t, get(t, r.url, "other"), 404, "unknown_routing_key", "")
	r = newRouter(t, doc(`"k":"p"`, `"p":`+placement(deadAddr(t), "", 4, 1000, "")))
	wantRouterError(t, get(t, r.url, "k"), 502, "upstream_connect_failed", "p")
}
