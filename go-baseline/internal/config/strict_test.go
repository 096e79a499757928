package config

import (
	"strings"
	"testing"
)

func TestStrictJSONMatchesSerde(t *testing.T) {
	nest := func(n int) string {
		return `{"version":` + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + `}`
	}
	cases := []struct {
		doc  string
		code Code
	}{
		{nest(127), CodeMissingField}, // 127 levels: parses (then /routes is missing)
		{nest(128), CodeMalformedJSON},
		{`{"version":1e400}`, CodeMalformedJSON},
		{`{"version":-1e309}`, CodeMalformedJSON},
		{`{"version":` + strings.Repeat("9", 400) + `}`, CodeMalformedJSON},
		{`{"version":1e-400}`, CodeMissingField},               // underflows to 0: parses
		{`{"version":99999999999999999999}`, CodeMissingField}, // above u64, fits a double
		{`{"version":"\ud800"}`, CodeMalformedJSON},
		{`{"version":"\udc00"}`, CodeMalformedJSON},
		{`{"version":"\ud800x"}`, CodeMalformedJSON},
		{`{"version":"\ud800\u0041"}`, CodeMalformedJSON},
		{`{"version":"\ud83d\ude00 \\ \" \u00e9"}`, CodeMissingField},
		{`{"a\"[[[":1}`, CodeUnknownField}, // brackets inside strings do not nest
	}
	for _, tc := range cases {
		_, err := Validate([]byte(tc.doc))
		if err == nil || err.Code != tc.code {
			t.Fatalf("%.60s: got %v, want %s", tc.doc, err, tc.code)
		}
	}
}
