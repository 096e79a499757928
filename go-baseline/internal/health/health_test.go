package health

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/testwait"
)

func TestThresholds(t *testing.T) {
	s := NewState(&config.HealthCheck{UnhealthyThreshold: 2, HealthyThreshold: 3})
	if !s.Healthy() {
		t.Fatal("must start healthy")
	}
	steps := []struct {
		ok      bool
		healthy bool
	}{
		{false, true}, {true, true}, // a success resets the failure run
		{false, true}, {false, false}, // 2 consecutive failures
		{true, false}, {true, false}, {false, false}, // reset
		{true, false}, {true, false}, {true, true}, // 3 consecutive successes
	}
	for i, st := range steps {
		s.Record(st.ok)
		if s.Healthy() != st.healthy {
			t.Fatalf("step %d (ok=%v): healthy=%v, want %v", i, st.ok, s.Healthy(), st.healthy)
		}
	}
}

func TestThresholdOne(t *testing.T) {
	s := NewState(&config.HealthCheck{UnhealthyThreshold: 1, HealthyThreshold: 1})
	if !s.Record(false) || s.Healthy() {
		t.Fatal("one failure must flip with threshold 1")
	}
	if !s.Record(true) || !s.Healthy() {
		t.Fatal("one success must flip with threshold 1")
	}
}

func TestNilAlwaysHealthy(t *testing.T) {
	var s *State
	s.Record(false)
	if !s.Healthy() {
		t.Fatal("nil state unhealthy")
	}
}

func TestCheckerProbesAtOnceAndStops(t *testing.T) {
	s := NewState(&config.HealthCheck{UnhealthyThreshold: 1, HealthyThreshold: 1})
	var n atomic.Int64
	c := Start(s, func(ctx context.Context) bool { n.Add(1); return false }, time.Hour, time.Second)
	testwait.For(t, "the first probe (run at once)", func() bool { return !s.Healthy() })
	c.Stop()
	if n.Load() != 1 {
		t.Fatalf("want 1 probe with an hour's interval, got %d", n.Load())
	}
}
