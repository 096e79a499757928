// Package config holds the router's config model (docs/spec.md section 2) and its
// validation with the contract's stable error codes and JSON Pointer paths.
//
// Validation is pure: it takes the document's raw bytes and returns either a parsed
// *Config or an *Error. It does no I/O (TLS files named in the config are not read here).
package config

import (
	"reflect"
	"strconv"
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
}

// Placement is one placement: a named unit of routing with exactly one endpoint.
type Placement struct {
	ID       string
	Endpoint Endpoint
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
