// Package config holds the router's config model (docs/spec.md section 2) and its
// validation with the contract's stable error codes and JSON Pointer paths.
//
// Validation is pure: it takes the document's raw bytes and returns either a parsed
// *Config or an *Error. It does no I/O (TLS files named in the config are not read here).
package config

import (
	"reflect"
	"strconv"
	"strings"
)

// MaxDocumentBytes is the largest accepted config document (1 MiB); larger is too_large.
const MaxDocumentBytes = 1 << 20

// MaxChainLength is the longest allowed fallback chain, counted in placements.
const MaxChainLength = 8

// Config is one validated config snapshot.
type Config struct {
	// Version is the document's version, 0 ..= 2^53-1.
	Version int64
	// Routes maps routing keys to placement ids (all ids exist in Placements).
	Routes map[string]string
	// Placements by id.
	Placements map[string]*Placement
	// PlacementIDs lists the ids of Placements in byte order.
	PlacementIDs []string
	// doc is the parsed document (json.Number for numbers): two configs have the same
	// content when their parsed values are equal (docs/spec.md section 2), so `endpoint`
	// and a one-entry `endpoints`, or a default written out, are other content, as in
	// the Pingora router (serde_json::Value equality).
	doc any
}

// Placement is one placement: a named unit of routing with one or more endpoints.
type Placement struct {
	ID string
	// Endpoint is the first endpoint in config order (Endpoints[0].Endpoint): the
	// placement's scheme and the admin API's `endpoint`.
	Endpoint Endpoint
	// Endpoints are the placement's endpoints in config order, 1 ..= 256; a document
	// with the single `endpoint` field gives one entry of weight 1.
	Endpoints []WeightedEndpoint
	// Selection is the endpoint selection algorithm (default RoundRobin).
	Selection Selection
	// HashKey is what consistent_hash hashes; the zero value with other algorithms.
	HashKey HashKey
	// Fallback is the next placement's id; empty when HasFallback is false.
	Fallback    string
	HasFallback bool
	// MaxConcurrency is the exact in-flight limit, 1 ..= 100000.
	MaxConcurrency int
	Timeouts       Timeouts
	// HealthCheck is nil when the document has none (always healthy).
	HealthCheck *HealthCheck
	// CircuitBreaker is nil when the document has none (always admits).
	CircuitBreaker *CircuitBreaker
	// TLS is nil when the document has none; only allowed on https endpoints.
	TLS *TLS
	// Protocol is the upstream HTTP version (default HTTP11); H2 only on https
	// endpoints (docs/spec.md section 3, "Upstream HTTP/2").
	Protocol Protocol
}

// Protocol is the HTTP version a placement speaks to its upstreams (the placement field
// `protocol`, docs/spec.md section 2).
type Protocol uint8

// The upstream protocols, named as in the config.
const (
	HTTP11 Protocol = iota // "http/1.1" (the default): HTTP/1.1 over TCP or TLS
	H2                     // "h2": HTTP/2 over TLS, ALPN offering h2 alone (RFC 9113 section 3.2)
)

var protocolNames = [...]string{HTTP11: "http/1.1", H2: "h2"}

// String is the config name of the protocol (also its ALPN protocol ID, RFC 7301).
func (p Protocol) String() string { return protocolNames[p] }

// WeightedEndpoint is one entry of a placement's endpoints.
type WeightedEndpoint struct {
	Endpoint
	// Weight is 1 ..= 1000 (default 1).
	Weight int
}

// Selection is a placement's endpoint selection algorithm (docs/spec.md section 3,
// "Endpoint selection").
type Selection uint8

// The selection algorithms, named as in the config.
const (
	RoundRobin     Selection = iota // "round_robin": Pingora Weighted<RoundRobin>
	Random                          // "random": Pingora Weighted<Random>
	ConsistentHash                  // "consistent_hash": Pingora KetamaHashing
)

var selectionNames = [...]string{RoundRobin: "round_robin", Random: "random", ConsistentHash: "consistent_hash"}

// String is the config name of the algorithm.
func (s Selection) String() string { return selectionNames[s] }

// HashKeyKind says which part of a request consistent_hash hashes.
type HashKeyKind uint8

// The hash_key forms.
const (
	HashNone       HashKeyKind = iota // no hash_key (not consistent_hash)
	HashRoutingKey                    // "routing_key": the X-Routing-Key value
	HashPath                          // "path": the target's path without the query
	HashHeader                        // "header:<name>": the named field's first value
)

// HashKey is a parsed hash_key.
type HashKey struct {
	Kind HashKeyKind
	// Header is the field name of a HashHeader key as written (matched
	// case-insensitively).
	Header string
}

// Timeouts of a placement, in milliseconds.
type Timeouts struct {
	ConnectMS int64 // TCP connect (and TLS handshake) limit, 1 ..= 60000
	RequestMS int64 // wait for response headers after the request is written, 1 ..= 600000
}

// HealthCheck is the active health check of a placement (docs/spec.md section 4).
type HealthCheck struct {
	Path               string
	IntervalMS         int64
	TimeoutMS          int64
	UnhealthyThreshold int64
	HealthyThreshold   int64
}

// CircuitBreaker is the breaker config of a placement (docs/spec.md section 5).
type CircuitBreaker struct {
	FailureThreshold    int64
	OpenMS              int64
	HalfOpenMaxRequests int64
	SuccessThreshold    int64
}

// TLS holds the optional TLS settings of an https endpoint. A nil field is absent.
type TLS struct {
	CAFile         *string
	ServerName     *string
	ClientCertFile *string
	ClientKeyFile  *string
}

// Endpoint is a parsed endpoint `scheme://host:port[/]`.
type Endpoint struct {
	// Raw is the endpoint string exactly as written in the document.
	Raw string
	// Scheme is "http" or "https".
	Scheme string
	// Host is the host as written: a DNS name, dotted IPv4, or bracketed IPv6 ("[::1]").
	Host string
	// Port is 1 ..= 65535.
	Port int
}

// HostPort is "host:port" as used for dialing and for the upstream Host header.
func (e Endpoint) HostPort() string { return e.Host + ":" + strconv.Itoa(e.Port) }

// SameAddress reports whether e and o are the same endpoint in the sense of
// docs/spec.md section 2, "Endpoints": equal scheme, host compared ASCII
// case-insensitively, and port (a trailing "/" in Raw does not matter).
func (e Endpoint) SameAddress(o Endpoint) bool {
	return e.Scheme == o.Scheme && e.Port == o.Port && strings.EqualFold(e.Host, o.Host)
}

// Hostname is the host without IPv6 brackets (used as the default TLS server name).
func (e Endpoint) Hostname() string {
	if len(e.Host) > 1 && e.Host[0] == '[' {
		return e.Host[1 : len(e.Host)-1]
	}
	return e.Host
}

// SameContent reports whether two configs have the same content (docs/spec.md section 2:
// parsed values equal; key order and white space do not matter).
func SameContent(a, b *Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(a, b)
}

// SameHealthCheck reports whether two optional health-check blocks are equal.
func SameHealthCheck(a, b *HealthCheck) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// SameCircuitBreaker reports whether two optional breaker blocks are equal.
func SameCircuitBreaker(a, b *CircuitBreaker) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// SameTLS reports whether two optional tls blocks are equal.
func SameTLS(a, b *TLS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(a, b)
}
