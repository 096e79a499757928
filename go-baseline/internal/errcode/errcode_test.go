package errcode

import (
	"encoding/json"
	"regexp"
	"testing"
)

// Every Code has a snake_case wire name, a 4xx/5xx status and a message, and the wire
// names are distinct.
func TestEveryCodeIsWired(t *testing.T) {
	if len(All()) != 10 {
		t.Fatalf("%d codes, the spec's table has 10", len(All()))
	}
	name := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[string]bool{}
	for _, c := range All() {
		if !name.MatchString(c.String()) || seen[c.String()] {
			t.Fatalf("Code(%d): name %q", uint8(c), c.String())
		}
		seen[c.String()] = true
		if c.Status() < 400 || c.Status() > 599 || c.Message() == "" {
			t.Fatalf("%s: status %d message %q", c, c.Status(), c.Message())
		}
	}
}

// The table of docs/spec.md section 3, "Router-made responses".
func TestSpecTable(t *testing.T) {
	want := map[string]int{
		"no_config": 503, "missing_routing_key": 400, "unknown_routing_key": 404,
		"no_healthy_upstream": 503, "concurrency_limit": 503, "upstream_connect_failed": 502,
		"upstream_timeout": 504, "upstream_protocol_error": 502,
		"request_headers_too_large": 431, "bad_request": 400,
	}
	for _, c := range All() {
		if want[c.String()] != c.Status() {
			t.Fatalf("%s: status %d, spec says %d", c, c.Status(), want[c.String()])
		}
		delete(want, c.String())
	}
	if len(want) != 0 {
		t.Fatalf("spec codes without a Code: %v", want)
	}
}

func TestZeroAndUnknownPanic(t *testing.T) {
	for _, c := range []Code{0, numCodes} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("Code(%d).String() did not panic", uint8(c))
				}
			}()
			_ = c.String()
		}()
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal(struct{ E Code }{UpstreamTimeout})
	if err != nil || string(b) != `{"E":"upstream_timeout"}` {
		t.Fatalf("%s %v", b, err)
	}
}
