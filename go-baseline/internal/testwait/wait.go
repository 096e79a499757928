// Package testwait is the deadline poll the router's tests share.
package testwait

import (
	"testing"
	"time"
)

// Timeout is how long For polls before failing the test: generous, so a loaded
// 2-core machine still passes; a condition that holds returns at once.
const Timeout = 5 * time.Second

// For polls cond every 2 ms until it holds, and fails the test with "timed out
// waiting for <what>" when Timeout passes first. Tests wait on observable state with
// it, never on a bare sleep.
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
