package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// vector is one file of spec/vectors/config (format in notes/coord.md).
type vector struct {
	Description string          `json:"description"`
	Input       json.RawMessage `json:"input"`
	InputText   *string         `json:"input_text"`
	PadToBytes  int             `json:"pad_to_bytes"`
	Current     json.RawMessage `json:"current"`
	Expect      struct {
		Result string `json:"result"`
		Code   string `json:"code"`
		Path   string `json:"path"`
	} `json:"expect"`
}

const vectorDir = "../../../spec/vectors/config"

// loadVectors reads every *.json vector in byte order of file name.
func loadVectors(t testing.TB) (names []string, vs []vector) {
	entries, err := os.ReadDir(vectorDir)
	if err != nil {
		t.Fatalf("reading %s: %v", vectorDir, err)
	}
	for _, e := range entries {
		if !e.IsDir() && filepath.Ext(e.Name()) == ".json" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(vectorDir, n))
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: bad vector file: %v", n, err)
		}
		vs = append(vs, v)
	}
	return names, vs
}

// document returns the exact bytes a vector feeds to the validator.
func (v vector) document() []byte {
	var doc []byte
	if v.InputText != nil {
		doc = []byte(*v.InputText)
	} else {
		doc = append([]byte(nil), v.Input...)
	}
	if v.PadToBytes > len(doc) {
		doc = append(doc, bytes.Repeat([]byte(" "), v.PadToBytes-len(doc))...)
	}
	return doc
}

func TestVectors(t *testing.T) {
	names, vs := loadVectors(t)
	if len(names) == 0 {
		t.Skip("no vectors in spec/vectors/config yet")
	}
	for i, v := range vs {
		v := v
		t.Run(names[i], func(t *testing.T) {
			if v.Input == nil && v.InputText == nil {
				t.Fatal("vector has neither input nor input_text")
			}
			cfg, verr := Validate(v.document())
			if verr == nil && v.Current != nil {
				cur, cerr := Validate(v.Current)
				if cerr != nil {
					t.Fatalf("current config is invalid: %v", cerr)
				}
				_, verr = CheckVersion(cur, cfg)
			}
			switch v.Expect.Result {
			case "accepted":
				if verr != nil {
					t.Fatalf("%s: want accepted, got %v", v.Description, verr)
				}
			case "rejected":
				if verr == nil {
					t.Fatalf("%s: want %s at %q, got accepted", v.Description, v.Expect.Code, v.Expect.Path)
				}
				if verr.Code.String() != v.Expect.Code || verr.Path != v.Expect.Path {
					t.Fatalf("%s: want %s at %q, got %s at %q (%s)", v.Description, v.Expect.Code, v.Expect.Path, verr.Code, verr.Path, verr.Message)
				}
			default:
				t.Fatalf("unknown expect.result %q", v.Expect.Result)
			}
		})
	}
}
