package config

import (
	"encoding/json"
	"testing"
)

// Every Code has its wire name of spec sections 2 and 6, the names are distinct, and a
// Code encodes as its name.
func TestEveryCodeHasAName(t *testing.T) {
	want := []string{"too_large", "malformed_json", "unknown_field", "missing_field", "invalid_value",
		"invalid_endpoint", "unknown_placement", "fallback_cycle", "stale_version", "internal_error"}
	all := All()
	if len(all) != len(want) {
		t.Fatalf("%d codes, want %d", len(all), len(want))
	}
	for i, c := range all {
		if c.String() != want[i] {
			t.Errorf("code %d is %q, want %q", i, c, want[i])
		}
	}
	b, err := json.Marshal(struct{ C Code }{CodeStaleVersion})
	if err != nil || string(b) != `{"C":"stale_version"}` {
		t.Fatalf("%s %v", b, err)
	}
}
