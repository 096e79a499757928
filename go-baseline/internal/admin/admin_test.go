package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/store"
	"pingora-parity/go-baseline/internal/testwait"
)

func fetch(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestAdminAPI(t *testing.T) {
	st := store.New()
	defer st.Close()
	st.SetControlPlaneConnected(true)
	for range 3 {
		st.CountControlPlaneReconnect()
	}
	m := metrics.New(st)
	srv := httptest.NewServer(Handler(st, m))
	defer srv.Close()

	if code, _, b := fetch(t, srv.URL+"/healthz"); code != 200 || b != "ok" {
		t.Fatalf("healthz %d %q", code, b)
	}
	if code, _, b := fetch(t, srv.URL+"/readyz"); code != 503 || b != `{"ready":false}` {
		t.Fatalf("readyz without config %d %q", code, b)
	}
	if _, _, b := fetch(t, srv.URL+"/admin/state"); strings.TrimSpace(b) !=
		`{"impl":"go","config_version":null,"control_plane":{"connected":true,"reconnects":3},"placements":{}}` {
		t.Fatalf("state without config %s", b)
	}

	cfg, verr := config.Validate([]byte(`{"version":7,"routes":{"k":"a"},"placements":{
	 "a":{"endpoint":"http://127.0.0.1:9","fallback":"b","max_concurrency":64,"timeouts":{"connect_ms":1,"request_ms":1},
	      "circuit_breaker":{"failure_threshold":1,"open_ms":20,"half_open_max_requests":1,"success_threshold":1}},
	 "b":{"endpoint":"http://127.0.0.1:10/","max_concurrency":2,"timeouts":{"connect_ms":1,"request_ms":1}}}}`))
	if verr != nil {
		t.Fatal(verr)
	}
	st.Install(cfg)
	a := st.Load().Placements["a"]
	p, _ := a.Peers[0].Breaker.Admit(time.Now())
	a.Peers[0].Breaker.Record(p, false, time.Now())

	if code, _, b := fetch(t, srv.URL+"/readyz"); code != 200 || b != `{"ready":true}` {
		t.Fatalf("readyz %d %q", code, b)
	}
	var s State
	_, _, b := fetch(t, srv.URL+"/admin/state")
	if err := json.Unmarshal([]byte(b), &s); err != nil {
		t.Fatal(err)
	}
	if *s.ConfigVersion != 7 || s.Placements["a"].Breaker != "open" || *s.Placements["a"].Fallback != "b" ||
		s.Placements["b"].Fallback != nil || s.Placements["b"].Endpoint != "http://127.0.0.1:10/" || s.Placements["b"].MaxConcurrency != 2 {
		t.Fatalf("state %s", b)
	}
	if ea := s.Placements["a"].Endpoints; s.Placements["a"].Selection != "round_robin" || len(ea) != 1 ||
		ea[0] != (EndpointState{URL: "http://127.0.0.1:9", Weight: 1, Healthy: true, Breaker: "open"}) {
		t.Fatalf("selection/endpoints %s", b)
	}
	if !strings.Contains(b, `"fallback":null`) {
		t.Fatalf("absent fallback must be null: %s", b)
	}
	// open_ms later the breaker reports half_open before any request.
	testwait.For(t, "breaker half_open in /admin/state", func() bool {
		_, _, b = fetch(t, srv.URL+"/admin/state")
		return strings.Contains(b, `"breaker":"half_open"`)
	})

	m.ObserveRequest("a", 200, time.Millisecond)
	m.RouterError(errcode.NoConfig)
	m.UpstreamFailure("a", "http://127.0.0.1:9", metrics.KindConnect)
	m.PeerRequest("a", "http://127.0.0.1:9")
	m.Failovers.WithLabelValues("a", "b").Inc()
	m.ConfigAccepted.Inc()
	m.ConfigRejected.WithLabelValues("stale_version").Inc()
	_, ct, text := fetch(t, srv.URL+"/metrics")
	if !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", ct)
	}
	for _, want := range []string{
		"# TYPE router_requests_total counter", `router_requests_total{placement="a",status="200"} 1`,
		"# TYPE router_errors_total counter", `router_errors_total{code="no_config"} 1`,
		"# TYPE router_upstream_failures_total counter", `router_upstream_failures_total{kind="connect",placement="a"} 1`,
		"# TYPE router_failovers_total counter", `router_failovers_total{from="a",to="b"} 1`,
		"# TYPE router_breaker_state gauge", `router_breaker_state{placement="a"} 2`, `router_breaker_state{placement="b"} 0`,
		"# TYPE router_endpoint_healthy gauge", `router_endpoint_healthy{placement="a"} 1`,
		"# TYPE router_peer_failures_total counter", `router_peer_failures_total{endpoint="http://127.0.0.1:9",kind="connect",placement="a"} 1`,
		"# TYPE router_peer_requests_total counter", `router_peer_requests_total{endpoint="http://127.0.0.1:9",placement="a"} 1`,
		"# TYPE router_peer_breaker_state gauge", `router_peer_breaker_state{endpoint="http://127.0.0.1:9",placement="a"} 2`,
		`router_peer_breaker_state{endpoint="http://127.0.0.1:10/",placement="b"} 0`,
		"# TYPE router_peer_healthy gauge", `router_peer_healthy{endpoint="http://127.0.0.1:10/",placement="b"} 1`,
		"# TYPE router_inflight gauge", `router_inflight{placement="b"} 0`,
		"# TYPE router_config_version gauge", "router_config_version 7",
		"# TYPE router_config_accepted_total counter", "router_config_accepted_total 1",
		"# TYPE router_config_rejected_total counter", `router_config_rejected_total{code="stale_version"} 1`,
		"# TYPE router_control_plane_connected gauge", "router_control_plane_connected 1",
		"# TYPE router_control_plane_reconnects_total counter", "router_control_plane_reconnects_total 3",
		"# TYPE router_request_duration_seconds histogram", `router_request_duration_seconds_bucket{placement="a",le="0.0005"} 0`,
		`router_request_duration_seconds_bucket{placement="a",le="0.001"} 1`, `router_request_duration_seconds_bucket{placement="a",le="10"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Fatalf("metrics lack %q:\n%s", want, text)
		}
	}
	// Per-placement gauges follow the current config.
	cfg2, _ := config.Validate([]byte(`{"version":8,"routes":{},"placements":{"c":{"endpoint":"http://127.0.0.1:9","max_concurrency":1,"timeouts":{"connect_ms":1,"request_ms":1}}}}`))
	st.Install(cfg2)
	_, _, text = fetch(t, srv.URL+"/metrics")
	if strings.Contains(text, `router_inflight{placement="a"}`) || !strings.Contains(text, `router_inflight{placement="c"} 0`) {
		t.Fatalf("gauges of a removed placement:\n%s", text)
	}
}
