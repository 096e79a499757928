package proxy

import (
	"net/http"
	"net/http/httputil"
	"strings"

	"pingora-parity/go-baseline/internal/routing"
	"pingora-parity/go-baseline/internal/upstream"
)

// Header rules of docs/spec.md section 3, "Headers".
//
// Hop-by-hop headers (RFC 9110 section 7.6.1): Connection, Keep-Alive,
// Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
// Transfer-Encoding, Upgrade and every header named in Connection are removed in both
// directions by ReverseProxy itself (its removeHopByHopHeaders runs on the outgoing
// request before Rewrite and on the response before ModifyResponse), keeping
// "TE: trailers" on requests (RFC 9110 section 10.1.4) and re-adding Connection/Upgrade
// only for an upgrade request (RFC 9110 section 7.8). What ReverseProxy does not do, or
// does differently from the contract, is done here and in proxy.go: the fields nominated
// by a response Connection that also lists "close" (net/http deletes that Connection
// first; removeNominated with upstream.HeadConn's record), an HTTP/1.0 request's Upgrade
// (never an upgrade), an X-Forwarded-For that the request's Connection nominates.

// forwardRequestHeaders applies the request-side rules to the outgoing request:
//   - X-Forwarded-For: the client's IP appended to any incoming value (trust nothing,
//     record everything; Rewrite mode starts from an empty value, so the incoming one is
//     copied back first), unless the request's Connection names X-Forwarded-For: then
//     the incoming value is hop-by-hop and the client's IP is the whole value;
//   - X-Forwarded-Host: the client's Host; X-Forwarded-Proto: proto ("http" on a plain
//     listener, "https" on a TLS one), both replacing incoming values;
//   - Forwarded (RFC 7239) passes through like any end-to-end header the contract does
//     not name (Rewrite mode would drop it);
//   - request trailers are not forwarded (Trailer is hop-by-hop).
//
// Host is set by target.
func forwardRequestHeaders(pr *httputil.ProxyRequest, proto string) {
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok && !connectionNominates(pr.In.Header["Connection"], "X-Forwarded-For") {
		// An X-Forwarded-For named in Connection is hop-by-hop (RFC 9110 section 7.6.1):
		// it is not passed on, and the router's value is then the client address alone,
		// as the Pingora router's upstream_request does.
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	if pr.In.Host == "" {
		// An HTTP/1.0 request without Host (the only kind hostValid lets through with no
		// Host): there is no client Host to record, and an empty X-Forwarded-Host would
		// claim one.
		pr.Out.Header.Del("X-Forwarded-Host")
	}
	pr.Out.Header.Set("X-Forwarded-Proto", proto)
	if fwd, ok := pr.In.Header["Forwarded"]; ok {
		pr.Out.Header["Forwarded"] = fwd
	}
	pr.Out.Trailer = nil
}

// connectionNominates reports whether the Connection field values conn (one entry per
// field line, each a comma-separated list of tokens) name the field name, compared
// case-insensitively (RFC 9110 section 7.6.1).
func connectionNominates(conn []string, name string) bool {
	for _, v := range conn {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(t, " \t"), name) {
				return true
			}
		}
	}
	return false
}

// hopByHop are the hop-by-hop fields of RFC 9110 section 7.6.1 (and Proxy-Connection,
// Proxy-Authenticate, Proxy-Authorization, as net/http's ReverseProxy lists them).
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop deletes from h the fields its Connection nominates, then every hop-by-hop
// field (for heads ReverseProxy does not clean itself: forwarded 1xx responses).
func removeHopByHop(h http.Header) {
	removeNominated(h, h["Connection"])
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// removeNominated deletes from h every field named in the Connection field values conn
// (RFC 9110 section 7.6.1: hop-by-hop whatever else Connection lists, "close" included).
// Tokens that are not field names in h delete nothing.
func removeNominated(h http.Header, conn []string) {
	for _, v := range conn {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.Trim(t, " \t"); t != "" {
				h.Del(t)
			}
		}
	}
}

// targetFormAllowed reports whether requestURI has a request-target form the router
// forwards for method (RFC 9112 section 3.2): origin-form ("/..."), absolute-form
// ("scheme://authority..."), forwarded as its origin-form part, and the asterisk-form
// ("*") with OPTIONS only (section 3.2.4), forwarded as "*" (RFC 9110 section 9.3.7).
// The authority-form ("host:port") belongs to CONNECT (section 3.2.3), which the router
// refuses whatever its target; net/http accepts these forms with any method, and
// forwarded as they are they would be neither. The request gate (framing.go,
// targetFormAllowedBytes) refuses these heads first; this stays as the handler's backstop.
func targetFormAllowed(method, requestURI string) bool {
	switch {
	case strings.HasPrefix(requestURI, "/"):
		return !strings.Contains(requestURI, "#")
	case strings.Contains(requestURI, "://"):
		return targetFormAllowedBytes([]byte(method), []byte(requestURI))
	case requestURI == "*":
		return method == http.MethodOptions
	default: // authority-form
		return false
	}
}

// hostValid reports whether r's Host is acceptable (RFC 9112 section 3.2, RFC 9110
// section 7.2): present and not empty in an HTTP/1.1 request, with a valid port, if any.
// The request gate (framing.go) has already refused an HTTP/1.1 request without a Host
// field, with more than one Host field and with a Host byte outside the URI authority's
// (space, '/', ...), as net/http would, so this adds only what net/http lets through: an
// empty Host in HTTP/1.1 and a port that is not a number. An HTTP/1.0 request may have
// no Host (net/http cannot tell an empty Host from none there): it is forwarded without
// X-Forwarded-Host. The gate now refuses both cases first (so that the answer to an
// HTTP/1.0 head says HTTP/1.1); this stays as the handler's backstop.
func hostValid(r *http.Request) bool {
	if r.Host == "" {
		return !r.ProtoAtLeast(1, 1)
	}
	return hostPortValid(r.Host)
}

// hostPortValid reports whether host (the request's Host, as net/http accepted it) has a
// valid port, if any: Host = uri-host [ ":" port ], port = *DIGIT (RFC 9110 section 7.2,
// RFC 3986 section 3.2.3). net/http checks the characters of Host but not that the port
// is a number.
func hostPortValid(host string) bool {
	if strings.HasPrefix(host, "[") { // IP-literal
		i := strings.IndexByte(host, ']')
		if i < 0 {
			return false
		}
		host = host[i+1:]
		if host == "" {
			return true
		}
		if host[0] != ':' {
			return false
		}
	}
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return true
	}
	for _, c := range []byte(host[i+1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// forwardRequestTarget makes out's request-target the client's, byte for byte: an
// intermediary must not rewrite the target (RFC 9110 section 7.7), but net/http
// normalises it twice: ReverseProxy re-encodes a query holding ';' or a malformed
// %-escape (dropping those parameters), and the transport writes the path re-escaped from
// its decoded form. requestURI is the target as received (http.Request.RequestURI).
//
// The origin-form part is forwarded: an absolute-form target (RFC 9112 section 3.2.2)
// loses its scheme and authority, "http://h/p?q" → "/p?q" (and "http://h" → "/"). The
// asterisk-form goes out as "*"; anything unexpected is left as net/http parsed it.
//
// A path that starts with "//" cannot be written verbatim through out.URL (see below):
// forwardRequestTarget then returns the target the request line must carry, which the
// upstream connection puts in place of net/http's form (upstream.HeadConn.RewriteTarget);
// otherwise it returns "".
func forwardRequestTarget(out *http.Request, requestURI string) (wire string) {
	raw := requestURI
	if raw == "*" {
		out.URL.Opaque, out.URL.RawQuery, out.URL.ForceQuery = "*", "", false // URL.RequestURI writes it verbatim
		return ""
	}
	if !strings.HasPrefix(raw, "/") {
		_, rest, ok := strings.Cut(raw, "://")
		if !ok {
			return ""
		}
		i := strings.IndexAny(rest, "/?")
		switch {
		case i < 0:
			raw = "/"
		case rest[i] == '?':
			raw = "/" + rest[i:]
		default:
			raw = rest[i:]
		}
	}
	path, query, hasQuery := strings.Cut(raw, "?")
	out.URL.RawQuery, out.URL.ForceQuery = query, hasQuery && query == ""
	if strings.HasPrefix(path, "//") {
		// An opaque "//..." would be written as scheme ":" opaque (absolute form). Keep the
		// parsed path and offer the raw one: the transport writes it when it is a valid
		// escaping of the path in net/url's sense; when it is not (`//"`, `//{x}`,
		// `//a|b`), the upstream connection rewrites the request line to raw.
		out.URL.Opaque, out.URL.RawPath = "", path
		if out.URL.RequestURI() != raw {
			return raw
		}
		return ""
	}
	out.URL.Opaque = path // written verbatim by URL.RequestURI
	return ""
}

// target points out at endpoint p (of the chosen placement). Host is left empty so that net/http sends
// the endpoint's host:port as Host (as nginx's default proxy_set_header Host
// $proxy_host); the client's Host is in X-Forwarded-Host.
func target(out *http.Request, p *routing.Peer) {
	up := p.Upstream.(*upstream.Upstream)
	out.URL.Scheme = up.Endpoint.Scheme
	out.URL.Host = up.HostPort
	out.Host = ""
}

// forwardResponseHeaders applies the response-side rules: X-Router-Placement names the
// placement that served (also on a 101, since ModifyResponse runs before it is written),
// and response trailers are dropped: with resp.Trailer unset ReverseProxy announces none,
// and bodyWatch.Close clears what the transport fills in at the end of the body, so none
// are copied either.
func forwardResponseHeaders(resp *http.Response, placement string) {
	resp.Header.Set("X-Router-Placement", placement)
	resp.Trailer = nil
}
