package config

import (
	"math"
	"strconv"
)

// MaxNesting is the deepest accepted nesting of arrays and objects (the top-level object
// is level 1). serde_json, which the Pingora router uses, refuses a 128th level.
const MaxNesting = 127

// strictJSON reports whether raw, already known to be valid JSON (json.Valid), also
// passes the checks that serde_json makes and encoding/json does not (docs/spec.md
// section 2, malformed_json): nesting at most MaxNesting levels, no number whose
// magnitude overflows an IEEE 754 double, and no \u escape of an unpaired UTF-16
// surrogate.
func strictJSON(raw []byte) bool {
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '{' || c == '[':
			depth++
			if depth > MaxNesting {
				return false
			}
		case c == '}' || c == ']':
			depth--
		case c == '"':
			end, ok := scanString(raw, i+1)
			if !ok {
				return false
			}
			i = end
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(raw) && isNumberByte(raw[j]) {
				j++
			}
			if f, _ := strconv.ParseFloat(string(raw[i:j]), 64); math.IsInf(f, 0) {
				return false
			}
			i = j - 1
		}
	}
	return true
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// scanString checks the escapes of the string starting at raw[i] (after the opening
// quote) and returns the index of the closing quote.
func scanString(raw []byte, i int) (int, bool) {
	pendingHigh := false // the previous escape was a high surrogate
	for ; i < len(raw); i++ {
		c := raw[i]
		if c == '"' {
			return i, !pendingHigh
		}
		if c != '\\' {
			if pendingHigh {
				return 0, false
			}
			continue
		}
		i++
		if raw[i] != 'u' {
			if pendingHigh {
				return 0, false
			}
			continue
		}
		v, err := strconv.ParseUint(string(raw[i+1:i+5]), 16, 16)
		if err != nil {
			return 0, false
		}
		i += 4
		switch {
		case v >= 0xD800 && v <= 0xDBFF:
			if pendingHigh {
				return 0, false
			}
			pendingHigh = true
		case v >= 0xDC00 && v <= 0xDFFF:
			if !pendingHigh {
				return 0, false
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return 0, false
			}
		}
	}
	return 0, false
}
