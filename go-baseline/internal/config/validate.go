package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one rejection: a code, a JSON Pointer (RFC 6901) to the offending field
// ("" for the document itself) and a free-text message that is not compared.
type Error struct {
	Code    Code
	Path    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s at %q: %s", e.Code, e.Path, e.Message) }

func fail(code Code, path, format string, args ...any) *Error {
	return &Error{Code: code, Path: path, Message: fmt.Sprintf(format, args...)}
}

// EscapePointer escapes one JSON Pointer reference token (RFC 6901 section 3):
// "~" becomes "~0" and "/" becomes "~1".
func EscapePointer(token string) string {
	if !strings.ContainsAny(token, "~/") {
		return token
	}
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

var placementIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate parses and validates one config document (its exact bytes), reporting the
// first fault in the order of docs/spec.md section 2 (steps 1 to 4; the stale-version
// rule is the caller's, see CheckVersion).
func Validate(raw []byte) (*Config, *Error) {
	if len(raw) > MaxDocumentBytes {
		return nil, fail(CodeTooLarge, "", "document is %d bytes, over %d", len(raw), MaxDocumentBytes)
	}
	// encoding/json silently replaces invalid UTF-8; RFC 8259 section 8.1 requires UTF-8.
	if !utf8.Valid(raw) || !json.Valid(raw) || !strictJSON(raw) {
		return nil, fail(CodeMalformedJSON, "", "not valid JSON (or nested too deep, a number beyond a double, a lone surrogate escape)")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fail(CodeMalformedJSON, "", "not valid JSON: %v", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fail(CodeMalformedJSON, "", "top level is not a JSON object")
	}
	cfg, err := structural(root)
	if err != nil {
		return nil, err
	}
	cfg.doc = root
	if err := references(cfg); err != nil {
		return nil, err
	}
	if err := chains(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// CheckVersion applies the control plane's version rule (docs/spec.md section 6):
// a higher version applies (apply=true); an equal version with the same content is a
// re-ack (apply=false, err=nil); a lower one, or equal with other content, is
// stale_version at /version.
func CheckVersion(current, next *Config) (apply bool, err *Error) {
	if current == nil || next.Version > current.Version {
		return true, nil
	}
	if next.Version == current.Version && SameContent(current, next) {
		return false, nil
	}
	return false, fail(CodeStaleVersion, "/version", "version %d is not above the current %d (or differs in content)", next.Version, current.Version)
}

// checkKeys reports unknown keys (the smallest in byte order) and then missing required
// keys (in the order given).
func checkKeys(path string, obj map[string]any, known, required []string) *Error {
	var unknown []string
	for k := range obj {
		found := false
		for _, kk := range known {
			if k == kk {
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fail(CodeUnknownField, path+"/"+EscapePointer(unknown[0]), "unknown field %q", unknown[0])
	}
	for _, k := range required {
		if _, ok := obj[k]; !ok {
			return fail(CodeMissingField, path+"/"+k, "missing required field %q", k)
		}
	}
	return nil
}

func asObject(path string, v any) (map[string]any, *Error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fail(CodeInvalidValue, path, "expected an object, got %s", jsonType(v))
	}
	return m, nil
}

func asString(path string, v any) (string, *Error) {
	s, ok := v.(string)
	if !ok {
		return "", fail(CodeInvalidValue, path, "expected a string, got %s", jsonType(v))
	}
	return s, nil
}

// asInt accepts a JSON number written without fraction or exponent, within [lo, hi].
func asInt(path string, v any, lo, hi int64) (int64, *Error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fail(CodeInvalidValue, path, "expected an integer, got %s", jsonType(v))
	}
	s := n.String()
	if strings.ContainsAny(s, ".eE") {
		return 0, fail(CodeInvalidValue, path, "expected an integer, got %s", s)
	}
	i, err := strconv.ParseInt(s, 10, 64)
	if err != nil || i < lo || i > hi {
		return 0, fail(CodeInvalidValue, path, "%s is out of range %d ..= %d", s, lo, hi)
	}
	return i, nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "an unknown type"
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func structural(root map[string]any) (*Config, *Error) {
	if err := checkKeys("", root, []string{"version", "routes", "placements"}, []string{"version", "routes", "placements"}); err != nil {
		return nil, err
	}
	cfg := &Config{Routes: map[string]string{}, Placements: map[string]*Placement{}}
	v, err := asInt("/version", root["version"], 0, 9007199254740991)
	if err != nil {
		return nil, err
	}
	cfg.Version = v

	routes, err := asObject("/routes", root["routes"])
	if err != nil {
		return nil, err
	}
	for _, key := range sortedKeys(routes) {
		p := "/routes/" + EscapePointer(key)
		if len(key) < 1 || len(key) > 256 {
			return nil, fail(CodeInvalidValue, p, "routing key must be 1 ..= 256 bytes, is %d", len(key))
		}
		id, err := asString(p, routes[key])
		if err != nil {
			return nil, err
		}
		cfg.Routes[key] = id
	}

	placements, err := asObject("/placements", root["placements"])
	if err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(placements) {
		p := "/placements/" + EscapePointer(id)
		if !placementIDRe.MatchString(id) {
			return nil, fail(CodeInvalidValue, p, "placement id %q does not match ^[A-Za-z0-9._-]{1,64}$", id)
		}
		obj, err := asObject(p, placements[id])
		if err != nil {
			return nil, err
		}
		pl, err := placement(p, id, obj)
		if err != nil {
			return nil, err
		}
		cfg.Placements[id] = pl
		cfg.PlacementIDs = append(cfg.PlacementIDs, id)
	}
	return cfg, nil
}

// MaxEndpoints is the most entries a placement's endpoints may have.
const MaxEndpoints = 256

func placement(path, id string, obj map[string]any) (*Placement, *Error) {
	known := []string{"endpoint", "endpoints", "selection", "hash_key", "fallback", "max_concurrency", "timeouts", "health_check", "circuit_breaker", "tls", "protocol"}
	// "endpoint" stands for "endpoint or endpoints" in the missing-keys step; hash_key's
	// conditional requirement is checked at its place below (spec section 2, Order).
	required := []string{"endpoint", "max_concurrency", "timeouts"}
	if _, ok := obj["endpoints"]; ok {
		required = required[1:]
	}
	if err := checkKeys(path, obj, known, required); err != nil {
		return nil, err
	}
	pl := &Placement{ID: id}
	v, hasEndpoint := obj["endpoint"]
	if hasEndpoint {
		s, err := asString(path+"/endpoint", v)
		if err != nil {
			return nil, err
		}
		ep, ok := ParseEndpoint(s)
		if !ok {
			return nil, fail(CodeInvalidEndpoint, path+"/endpoint", "endpoint %q is not scheme://host:port[/]", s)
		}
		pl.Endpoints = []WeightedEndpoint{{Endpoint: ep, Weight: 1}}
	}
	if v, present := obj["endpoints"]; present {
		eps, err := endpoints(path+"/endpoints", v, hasEndpoint)
		if err != nil {
			return nil, err
		}
		pl.Endpoints = eps
	}
	pl.Endpoint = pl.Endpoints[0].Endpoint
	if v, present := obj["selection"]; present {
		s, _ := v.(string)
		switch s {
		case "round_robin":
			pl.Selection = RoundRobin
		case "random":
			pl.Selection = Random
		case "consistent_hash":
			pl.Selection = ConsistentHash
		default:
			return nil, fail(CodeInvalidValue, path+"/selection", "selection must be round_robin, random or consistent_hash")
		}
	}
	hk, hasHashKey := obj["hash_key"]
	switch {
	case !hasHashKey && pl.Selection == ConsistentHash:
		return nil, fail(CodeMissingField, path+"/hash_key", "consistent_hash requires hash_key")
	case hasHashKey && pl.Selection != ConsistentHash:
		return nil, fail(CodeInvalidValue, path+"/hash_key", "hash_key is only allowed with consistent_hash")
	case hasHashKey:
		s, _ := hk.(string)
		key, ok := parseHashKey(s)
		if !ok {
			return nil, fail(CodeInvalidValue, path+"/hash_key", "hash_key must be routing_key, path or header:<token>")
		}
		pl.HashKey = key
	}
	if v, present := obj["fallback"]; present {
		s, err := asString(path+"/fallback", v)
		if err != nil {
			return nil, err
		}
		pl.Fallback, pl.HasFallback = s, true
	}
	mc, err := asInt(path+"/max_concurrency", obj["max_concurrency"], 1, 100000)
	if err != nil {
		return nil, err
	}
	pl.MaxConcurrency = int(mc)

	tp := path + "/timeouts"
	to, err := asObject(tp, obj["timeouts"])
	if err != nil {
		return nil, err
	}
	if err := checkKeys(tp, to, []string{"connect_ms", "request_ms"}, []string{"connect_ms", "request_ms"}); err != nil {
		return nil, err
	}
	if pl.Timeouts.ConnectMS, err = asInt(tp+"/connect_ms", to["connect_ms"], 1, 60000); err != nil {
		return nil, err
	}
	if pl.Timeouts.RequestMS, err = asInt(tp+"/request_ms", to["request_ms"], 1, 600000); err != nil {
		return nil, err
	}

	if v, present := obj["health_check"]; present {
		hp := path + "/health_check"
		hc, err := asObject(hp, v)
		if err != nil {
			return nil, err
		}
		names := []string{"path", "interval_ms", "timeout_ms", "unhealthy_threshold", "healthy_threshold"}
		if err := checkKeys(hp, hc, names, names); err != nil {
			return nil, err
		}
		h := &HealthCheck{}
		if h.Path, err = asString(hp+"/path", hc["path"]); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(h.Path, "/") || len(h.Path) > 1024 {
			return nil, fail(CodeInvalidValue, hp+"/path", "health check path must start with / and be at most 1024 bytes")
		}
		if h.IntervalMS, err = asInt(hp+"/interval_ms", hc["interval_ms"], 10, 3600000); err != nil {
			return nil, err
		}
		if h.TimeoutMS, err = asInt(hp+"/timeout_ms", hc["timeout_ms"], 1, 60000); err != nil {
			return nil, err
		}
		if h.UnhealthyThreshold, err = asInt(hp+"/unhealthy_threshold", hc["unhealthy_threshold"], 1, 100); err != nil {
			return nil, err
		}
		if h.HealthyThreshold, err = asInt(hp+"/healthy_threshold", hc["healthy_threshold"], 1, 100); err != nil {
			return nil, err
		}
		pl.HealthCheck = h
	}

	if v, present := obj["circuit_breaker"]; present {
		bp := path + "/circuit_breaker"
		cb, err := asObject(bp, v)
		if err != nil {
			return nil, err
		}
		names := []string{"failure_threshold", "open_ms", "half_open_max_requests", "success_threshold"}
		if err := checkKeys(bp, cb, names, names); err != nil {
			return nil, err
		}
		b := &CircuitBreaker{}
		if b.FailureThreshold, err = asInt(bp+"/failure_threshold", cb["failure_threshold"], 1, 1000); err != nil {
			return nil, err
		}
		if b.OpenMS, err = asInt(bp+"/open_ms", cb["open_ms"], 1, 3600000); err != nil {
			return nil, err
		}
		if b.HalfOpenMaxRequests, err = asInt(bp+"/half_open_max_requests", cb["half_open_max_requests"], 1, 1000); err != nil {
			return nil, err
		}
		if b.SuccessThreshold, err = asInt(bp+"/success_threshold", cb["success_threshold"], 1, 1000); err != nil {
			return nil, err
		}
		pl.CircuitBreaker = b
	}

	if v, present := obj["tls"]; present {
		tp := path + "/tls"
		tm, err := asObject(tp, v)
		if err != nil {
			return nil, err
		}
		names := []string{"ca_file", "server_name", "client_cert_file", "client_key_file"}
		if err := checkKeys(tp, tm, names, nil); err != nil {
			return nil, err
		}
		t := &TLS{}
		fields := []**string{&t.CAFile, &t.ServerName, &t.ClientCertFile, &t.ClientKeyFile}
		for i, name := range names {
			if fv, ok := tm[name]; ok {
				s, err := asString(tp+"/"+name, fv)
				if err != nil {
					return nil, err
				}
				*fields[i] = &s
			}
		}
		if pl.Endpoint.Scheme != "https" {
			return nil, fail(CodeInvalidValue, tp, "tls is only allowed on https:// endpoints")
		}
		if t.ClientCertFile != nil && t.ClientKeyFile == nil {
			return nil, fail(CodeMissingField, tp+"/client_key_file", "client_cert_file requires client_key_file")
		}
		if t.ClientKeyFile != nil && t.ClientCertFile == nil {
			return nil, fail(CodeMissingField, tp+"/client_cert_file", "client_key_file requires client_cert_file")
		}
		pl.TLS = t
	}
	if v, present := obj["protocol"]; present {
		s, _ := v.(string)
		switch s {
		case "http/1.1":
			pl.Protocol = HTTP11
		case "h2":
			if pl.Endpoint.Scheme != "https" {
				return nil, fail(CodeInvalidValue, path+"/protocol", "protocol h2 is only allowed on https:// endpoints")
			}
			pl.Protocol = H2
		default:
			return nil, fail(CodeInvalidValue, path+"/protocol", "protocol must be http/1.1 or h2")
		}
	}
	return pl, nil
}

func references(cfg *Config) *Error {
	keys := make([]string, 0, len(cfg.Routes))
	for k := range cfg.Routes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := cfg.Placements[cfg.Routes[k]]; !ok {
			return fail(CodeUnknownPlacement, "/routes/"+EscapePointer(k), "route %q names unknown placement %q", k, cfg.Routes[k])
		}
	}
	for _, id := range cfg.PlacementIDs {
		pl := cfg.Placements[id]
		if pl.HasFallback {
			if _, ok := cfg.Placements[pl.Fallback]; !ok {
				return fail(CodeUnknownPlacement, "/placements/"+EscapePointer(id)+"/fallback", "fallback names unknown placement %q", pl.Fallback)
			}
		}
	}
	return nil
}

func chains(cfg *Config) *Error {
	for _, id := range cfg.PlacementIDs {
		seen := map[string]bool{id: true}
		cur := cfg.Placements[id]
		n := 1
		for cur.HasFallback {
			next := cur.Fallback
			n++
			if seen[next] || n > MaxChainLength {
				return fail(CodeFallbackCycle, "/placements/"+EscapePointer(id)+"/fallback", "the chain from %q returns to %q or is longer than %d", id, next, MaxChainLength)
			}
			seen[next] = true
			cur = cfg.Placements[next]
		}
	}
	return nil
}

// ParseEndpoint parses `SCHEME "://" HOST ":" PORT [ "/" ]` (docs/spec.md section 2,
// "Endpoint") by hand: SCHEME is http or https (lower case); HOST a DNS name
// ([A-Za-z0-9.-]+, not starting or ending with '.' or '-'), a dotted IPv4 address or a
// bracketed IPv6 address; PORT decimal 1 ..= 65535 in 1 to 5 digits
// without a leading 0. Anything else is invalid.
func ParseEndpoint(s string) (Endpoint, bool) {
	var ep Endpoint
	ep.Raw = s
	rest := s
	switch {
	case strings.HasPrefix(rest, "http://"):
		ep.Scheme, rest = "http", rest[len("http://"):]
	case strings.HasPrefix(rest, "https://"):
		ep.Scheme, rest = "https", rest[len("https://"):]
	default:
		return ep, false
	}
	rest = strings.TrimSuffix(rest, "/")
	var host, port string
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 || end+1 >= len(rest) || rest[end+1] != ':' {
			return ep, false
		}
		inner := rest[1:end]
		addr, err := netip.ParseAddr(inner)
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return ep, false
		}
		host, port = rest[:end+1], rest[end+2:]
	} else {
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return ep, false
		}
		host, port = rest[:i], rest[i+1:]
		if !validDNSOrIPv4(host) {
			return ep, false
		}
	}
	if len(port) == 0 || len(port) > 5 || port[0] == '0' {
		return ep, false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		c := port[i]
		if c < '0' || c > '9' {
			return ep, false
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return ep, false
	}
	ep.Host, ep.Port = host, n
	return ep, true
}

// validDNSOrIPv4 accepts [A-Za-z0-9.-]+ not starting or ending with '.' or '-'. A dotted
// IPv4 address is a special case of this character rule.
func validDNSOrIPv4(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	first, last := h[0], h[len(h)-1]
	return first != '.' && first != '-' && last != '.' && last != '-'
}

// endpoints checks a placement's `endpoints` array (docs/spec.md section 2, Order):
// both `endpoint` and `endpoints` present, then the array's type and length, then each
// entry fully in index order: its type, keys, url (type, grammar), weight, then the same
// endpoint as an earlier entry, then a scheme other than entry 0's.
func endpoints(path string, v any, hasEndpoint bool) ([]WeightedEndpoint, *Error) {
	if hasEndpoint {
		return nil, fail(CodeInvalidValue, path, "a placement has endpoint or endpoints, not both")
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fail(CodeInvalidValue, path, "expected an array, got %s", jsonType(v))
	}
	if len(arr) < 1 || len(arr) > MaxEndpoints {
		return nil, fail(CodeInvalidValue, path, "endpoints must have 1 ..= %d entries, has %d", MaxEndpoints, len(arr))
	}
	out := make([]WeightedEndpoint, 0, len(arr))
	for i, item := range arr {
		ip := path + "/" + strconv.Itoa(i)
		obj, err := asObject(ip, item)
		if err != nil {
			return nil, err
		}
		if err := checkKeys(ip, obj, []string{"url", "weight"}, []string{"url"}); err != nil {
			return nil, err
		}
		s, err := asString(ip+"/url", obj["url"])
		if err != nil {
			return nil, err
		}
		ep, ok := ParseEndpoint(s)
		if !ok {
			return nil, fail(CodeInvalidEndpoint, ip+"/url", "url %q is not scheme://host:port[/]", s)
		}
		w := int64(1)
		if wv, present := obj["weight"]; present {
			if w, err = asInt(ip+"/weight", wv, 1, 1000); err != nil {
				return nil, err
			}
		}
		for j := range out {
			if out[j].SameAddress(ep) {
				return nil, fail(CodeInvalidValue, ip, "entry %d is the same endpoint as entry %d", i, j)
			}
		}
		if i > 0 && ep.Scheme != out[0].Scheme {
			return nil, fail(CodeInvalidValue, ip, "entry %d's scheme differs from entry 0's", i)
		}
		out = append(out, WeightedEndpoint{Endpoint: ep, Weight: int(w)})
	}
	return out, nil
}

// parseHashKey parses a hash_key: "routing_key", "path" or "header:<token>" (RFC 9110
// section 5.6.2).
func parseHashKey(s string) (HashKey, bool) {
	switch s {
	case "routing_key":
		return HashKey{Kind: HashRoutingKey}, true
	case "path":
		return HashKey{Kind: HashPath}, true
	}
	name, ok := strings.CutPrefix(s, "header:")
	if !ok || name == "" {
		return HashKey{}, false
	}
	for i := 0; i < len(name); i++ {
		if !isTchar(name[i]) {
			return HashKey{}, false
		}
	}
	return HashKey{Kind: HashHeader, Header: name}, true
}

// isTchar reports whether c is a tchar of RFC 9110 section 5.6.2.
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
