// Package errcode is the router's error vocabulary: every response the router makes
// itself (docs/spec.md section 3, "Router-made responses") has one Code, and the Code
// alone gives its wire name (X-Router-Error, the JSON body's "error", the access log's
// "error", router_errors_total{code}), its HTTP status and its human message.
//
// A Code's three properties come from one switch arm that must name all of them
// (an unkeyed struct literal), and All lists every Code by construction (the consts are
// an iota run ending in numCodes), so a code cannot exist without a status and a message;
// TestEveryCodeIsWired checks every Code in All.
package errcode

import "fmt"

// Code is one router-made response kind. The zero value is "no router error" and is not
// in All; its methods panic.
type Code uint8

// The router error codes of docs/spec.md section 3, in the spec table's order.
const (
	NoConfig               Code = iota + 1 // 503: no config loaded (step 1)
	MissingRoutingKey                      // 400: X-Routing-Key absent or empty (step 2)
	UnknownRoutingKey                      // 404: key not in routes (step 2)
	NoHealthyUpstream                      // 503: no available placement in the chain (step 3)
	ConcurrencyLimit                       // 503: chosen placement at max_concurrency (step 4)
	UpstreamConnectFailed                  // 502: connect failure, no retry left (step 6)
	UpstreamTimeout                        // 504: no response headers within request_ms (step 7)
	UpstreamProtocolError                  // 502: upstream broke off or is not HTTP/1.x before headers (step 7)
	RequestHeadersTooLarge                 // 431: request head over 64 KiB ("Headers")
	BadRequest                             // 400: malformed request, CL+TE, broken request body ("Headers")

	numCodes // not a code: one past the last
)

// All returns every Code, in the spec table's order.
func All() []Code {
	all := make([]Code, 0, numCodes-1)
	for c := Code(1); c < numCodes; c++ {
		all = append(all, c)
	}
	return all
}

// def is a Code's definition: wire name, HTTP status, human message.
type def struct {
	name    string
	status  int
	message string
}

// def is the one place each Code is defined. Every arm must give all three fields.
func (c Code) def() def {
	switch c {
	case NoConfig:
		return def{"no_config", 503, "no config loaded"}
	case MissingRoutingKey:
		return def{"missing_routing_key", 400, "X-Routing-Key header is missing or empty"}
	case UnknownRoutingKey:
		return def{"unknown_routing_key", 404, "no route for this routing key"}
	case NoHealthyUpstream:
		return def{"no_healthy_upstream", 503, "no available placement in the chain"}
	case ConcurrencyLimit:
		return def{"concurrency_limit", 503, "placement is at max_concurrency"}
	case UpstreamConnectFailed:
		return def{"upstream_connect_failed", 502, "could not connect to the upstream"}
	case UpstreamTimeout:
		return def{"upstream_timeout", 504, "no response headers within request_ms"}
	case UpstreamProtocolError:
		return def{"upstream_protocol_error", 502, "upstream failed before sending complete response headers"}
	case RequestHeadersTooLarge:
		return def{"request_headers_too_large", 431, "request headers exceed 64 KiB"}
	case BadRequest:
		return def{"bad_request", 400, "bad request"}
	}
	panic(fmt.Sprintf("errcode: Code(%d) is not a router error code", uint8(c)))
}

// String is the wire name, e.g. "no_config" (X-Router-Error, the JSON "error" field,
// the access log, the code label of router_errors_total).
func (c Code) String() string { return c.def().name }

// Status is the HTTP status code of the router-made response (spec section 3 table).
func (c Code) Status() int { return c.def().status }

// Message is the body's human-readable "message" (free text, not compared by the suite).
func (c Code) Message() string { return c.def().message }

// MarshalText makes a Code encode as its wire name in JSON.
func (c Code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
