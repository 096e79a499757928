package metrics

import (
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/store"
)

// Every router error code reaches router_errors_total{code} under its wire name. The
// spec pre-declares no series (a labelled counter appears once incremented), so none
// exists before the first increment.
func TestEveryErrorCodeCounted(t *testing.T) {
	st := store.New()
	defer st.Close()
	m := New(st)
	if n := testutil.CollectAndCount(m.Errors); n != 0 {
		t.Fatalf("%d router_errors_total series before any error", n)
	}
	var want strings.Builder
	want.WriteString("# HELP router_errors_total Router-made responses by code.\n# TYPE router_errors_total counter\n")
	for i, c := range errcode.All() {
		for range i + 1 {
			m.RouterError(c)
		}
	}
	// The exposition sorts series by label value.
	lines := []string{}
	for i, c := range errcode.All() {
		lines = append(lines, `router_errors_total{code="`+c.String()+`"} `+strconv.Itoa(i+1))
	}
	sort.Strings(lines)
	for _, l := range lines {
		want.WriteString(l + "\n")
	}
	if err := testutil.CollectAndCompare(m.Errors, strings.NewReader(want.String())); err != nil {
		t.Fatal(err)
	}
}

// The status label is the status in decimal, from the table or not.
func TestStatusLabel(t *testing.T) {
	for _, s := range []int{0, 99, 100, 101, 200, 404, 503, 599, 600, 999} {
		if got, want := statusLabel(s), strconv.Itoa(s); got != want {
			t.Fatalf("statusLabel(%d) = %q, want %q", s, got, want)
		}
	}
}
