package config

import "fmt"

// Code is one rejection kind of a config document: the validation codes of docs/spec.md
// section 2 ("Validation"), the control plane's stale_version, and internal_error (section
// 6: a valid config the router could not apply). Its wire name (String) is the nack's
// error.code and the code label of router_config_rejected_total; the names are the
// contract and never change.
//
// The zero value is no code and is not in All; its methods panic. Each Code's name comes
// from one switch arm, and All lists every Code by construction (an iota run ending in
// numCodes), so a code cannot exist without its name; TestEveryCodeHasAName checks All.
type Code uint8

// The codes: the validation codes in the order of spec section 2, then stale_version
// and internal_error.
const (
	CodeTooLarge         Code = iota + 1 // document over MaxDocumentBytes
	CodeMalformedJSON                    // not JSON, not an object, or not a config frame
	CodeUnknownField                     // a member the schema does not know
	CodeMissingField                     // a required member is absent
	CodeInvalidValue                     // wrong type or out of range
	CodeInvalidEndpoint                  // endpoint not scheme://host:port[/]
	CodeUnknownPlacement                 // a route or fallback names no placement
	CodeFallbackCycle                    // a fallback chain loops or is too long
	CodeStaleVersion                     // version not above the current one (CheckVersion)
	CodeInternalError                    // a valid config could not be applied (LKG write failed)

	numCodes // not a code: one past the last
)

// All returns every Code, in the order of the consts.
func All() []Code {
	all := make([]Code, 0, numCodes-1)
	for c := Code(1); c < numCodes; c++ {
		all = append(all, c)
	}
	return all
}

// String is the wire name, e.g. "malformed_json".
func (c Code) String() string {
	switch c {
	case CodeTooLarge:
		return "too_large"
	case CodeMalformedJSON:
		return "malformed_json"
	case CodeUnknownField:
		return "unknown_field"
	case CodeMissingField:
		return "missing_field"
	case CodeInvalidValue:
		return "invalid_value"
	case CodeInvalidEndpoint:
		return "invalid_endpoint"
	case CodeUnknownPlacement:
		return "unknown_placement"
	case CodeFallbackCycle:
		return "fallback_cycle"
	case CodeStaleVersion:
		return "stale_version"
	case CodeInternalError:
		return "internal_error"
	}
	panic(fmt.Sprintf("config: Code(%d) is not a rejection code", uint8(c)))
}

// MarshalText makes a Code encode as its wire name in JSON.
func (c Code) MarshalText() ([]byte, error) { return []byte(c.String()), nil }
