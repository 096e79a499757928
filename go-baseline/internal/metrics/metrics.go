// Package admin serves the admin API of docs/spec.md section 7 (/healthz, /readyz,
// /admin/state, /metrics) and owns the Prometheus metrics, named exactly as there.
// Package metrics is the router's Prometheus registry and metric families, named and
// labelled exactly as docs/spec.md section 7. Counters and the duration histogram are
// updated by the data plane and the control-plane client; per-placement gauges and the
// config and control-plane gauges are computed at scrape time from the store.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"pingora-parity/go-baseline/internal/errcode"
	"pingora-parity/go-baseline/internal/store"
)

// DurationBuckets returns router_request_duration_seconds' bucket bounds in seconds
// (spec section 7).
func DurationBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// Metrics holds the router's counters and histogram; per-placement gauges and the
// config/control-plane gauges are computed at scrape time by a custom Collector.
type Metrics struct {
	Registry         *prometheus.Registry
	Requests         *prometheus.CounterVec // placement, status
	Errors           *prometheus.CounterVec // code
	UpstreamFailures *prometheus.CounterVec // placement, kind
	PeerRequests     *prometheus.CounterVec // placement, endpoint
	PeerFailures     *prometheus.CounterVec // placement, endpoint, kind
	Failovers        *prometheus.CounterVec // from, to
	ConfigAccepted   prometheus.Counter
	ConfigRejected   *prometheus.CounterVec // code
	// ControlPlanePongTimeouts counts control-plane sessions closed because a ping went
	// unanswered (docs/spec.md section 6, "Keepalive").
	ControlPlanePongTimeouts prometheus.Counter
	Duration                 *prometheus.HistogramVec
}

// New registers all metrics on a fresh registry; the scrape-time gauges read st.
func New(st *store.Store) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_requests_total",
			Help: "Responses sent to clients."}, []string{"placement", "status"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_errors_total",
			Help: "Router-made responses by code."}, []string{"code"}),
		UpstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_upstream_failures_total",
			Help: "Upstream failures by kind."}, []string{"placement", "kind"}),
		PeerRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_peer_requests_total",
			Help: "Attempts sent to an endpoint that got a connection."}, []string{"placement", "endpoint"}),
		PeerFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_peer_failures_total",
			Help: "Upstream failures of one endpoint by kind."}, []string{"placement", "endpoint", "kind"}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_failovers_total",
			Help: "Steps down a fallback chain."}, []string{"from", "to"}),
		ConfigAccepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "router_config_accepted_total",
			Help: "Configs applied from the control plane."}),
		ConfigRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_config_rejected_total",
			Help: "Configs nacked, by code."}, []string{"code"}),
		ControlPlanePongTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "router_control_plane_pong_timeouts_total",
			Help: "Control-plane sessions closed because a ping went unanswered."}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "router_request_duration_seconds",
			Help: "From arrival to the end of the response.", Buckets: DurationBuckets()}, []string{"placement"}),
	}
	m.Registry.MustRegister(m.Requests, m.Errors, m.UpstreamFailures, m.PeerRequests, m.PeerFailures, m.Failovers,
		m.ConfigAccepted, m.ConfigRejected, m.ControlPlanePongTimeouts, m.Duration, &collector{st: st})
	return m
}

// TLS holds the data listener's TLS counters (docs/spec.md section 7:
// router_tls_handshakes_total{resumed}, router_tls_handshake_errors_total,
// router_tls_reloads_total{result}). They exist only when the listener is TLS: see
// Metrics.EnableTLS.
type TLS struct {
	Handshakes      *prometheus.CounterVec // resumed: "false", "true"
	HandshakeErrors prometheus.Counter
	Reloads         *prometheus.CounterVec // result: "ok", "error"
}

// EnableTLS registers the TLS counters with every series present at 0 (both values of
// resumed and of result), as the spec asks of a TLS listener; a plain router never calls
// it, so the series are absent. Call it once.
func (m *Metrics) EnableTLS() *TLS {
	t := &TLS{
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_tls_handshakes_total",
			Help: "Completed TLS handshakes on the data listener, by whether a session was resumed."}, []string{"resumed"}),
		HandshakeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "router_tls_handshake_errors_total",
			Help: "Failed TLS handshakes on the data listener."}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "router_tls_reloads_total",
			Help: "SIGHUP reloads of the TLS files, by result."}, []string{"result"}),
	}
	for _, v := range [...]string{"false", "true"} {
		t.Handshakes.WithLabelValues(v)
	}
	for _, v := range [...]string{"ok", "error"} {
		t.Reloads.WithLabelValues(v)
	}
	m.Registry.MustRegister(t.Handshakes, t.HandshakeErrors, t.Reloads)
	return t
}

// Handshake counts one completed handshake; resumed is ConnectionState.DidResume.
func (t *TLS) Handshake(resumed bool) {
	t.Handshakes.WithLabelValues(strconv.FormatBool(resumed)).Inc()
}

// Reload counts one SIGHUP reload of the TLS files, ok or not.
func (t *TLS) Reload(ok bool) {
	result := "error"
	if ok {
		result = "ok"
	}
	t.Reloads.WithLabelValues(result).Inc()
}

// FailureKind is the kind label of router_upstream_failures_total (docs/spec.md
// section 7; when each is counted: section 3 steps 6 to 9).
type FailureKind string

// The upstream failure kinds.
const (
	KindConnect   FailureKind = "connect"    // step 6: refused, unreachable, connect or TLS failure
	KindTimeout   FailureKind = "timeout"    // step 7: no response headers within request_ms
	KindProtocol  FailureKind = "protocol"   // step 7: broken or non-HTTP/1.x response before headers
	KindStatus5xx FailureKind = "status_5xx" // step 9: upstream status >= 500
	KindAborted   FailureKind = "aborted"    // step 8: upstream failed after headers were sent
)

// RouterError counts one router-made response (router_errors_total{code}).
func (m *Metrics) RouterError(code errcode.Code) {
	m.Errors.WithLabelValues(code.String()).Inc()
}

// UpstreamFailure counts one upstream failure of endpoint (its url as written) of
// placement: router_upstream_failures_total{placement,kind} and
// router_peer_failures_total{placement,endpoint,kind}.
func (m *Metrics) UpstreamFailure(placement, endpoint string, kind FailureKind) {
	m.UpstreamFailures.WithLabelValues(placement, string(kind)).Inc()
	m.PeerFailures.WithLabelValues(placement, endpoint, string(kind)).Inc()
}

// PeerRequest counts one attempt sent to endpoint of placement that got a connection
// (router_peer_requests_total{placement,endpoint}).
func (m *Metrics) PeerRequest(placement, endpoint string) {
	m.PeerRequests.WithLabelValues(placement, endpoint).Inc()
}

// ObserveRequest counts one response sent to a client.
func (m *Metrics) ObserveRequest(placement string, status int, d time.Duration) {
	m.Requests.WithLabelValues(placement, statusLabel(status)).Inc()
	m.Duration.WithLabelValues(placement).Observe(d.Seconds())
}

// statusLabels holds the decimal text of the statuses 100 to 599, so that the status
// label costs no allocation per request. Filled once at package init, read-only after.
var statusLabels = func() (l [500]string) {
	for i := range l {
		l[i] = strconv.Itoa(100 + i)
	}
	return l
}()

// statusLabel is strconv.Itoa(status).
func statusLabel(status int) string {
	if status >= 100 && status < 600 {
		return statusLabels[status-100]
	}
	return strconv.Itoa(status)
}

var (
	descBreaker   = prometheus.NewDesc("router_breaker_state", "0 closed, 1 open, 2 half_open.", []string{"placement"}, nil)
	descHealthy   = prometheus.NewDesc("router_endpoint_healthy", "1 healthy, 0 unhealthy.", []string{"placement"}, nil)
	descPeerBrk   = prometheus.NewDesc("router_peer_breaker_state", "One endpoint's breaker: 0 closed, 1 open, 2 half_open.", []string{"placement", "endpoint"}, nil)
	descPeerOK    = prometheus.NewDesc("router_peer_healthy", "One endpoint's health: 1 healthy, 0 unhealthy.", []string{"placement", "endpoint"}, nil)
	descInflight  = prometheus.NewDesc("router_inflight", "Requests in flight.", []string{"placement"}, nil)
	descVersion   = prometheus.NewDesc("router_config_version", "Current config version, -1 without a config.", nil, nil)
	descConnected = prometheus.NewDesc("router_control_plane_connected", "1 connected, 0 not.", nil, nil)
	descReconn    = prometheus.NewDesc("router_control_plane_reconnects_total", "Successful control-plane connections after the first.", nil, nil)
)

// collector reads the current snapshot at scrape time, so per-placement gauges exist
// exactly for the placements of the current config.
type collector struct{ st *store.Store }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBreaker, descHealthy, descPeerBrk, descPeerOK, descInflight, descVersion, descConnected, descReconn} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	version := -1.0
	if snap := c.st.Load(); snap != nil {
		version = float64(snap.Config.Version)
		for id, p := range snap.Placements {
			ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, float64(p.BreakerState(now)), id)
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, gauge(p.Healthy()), id)
			for _, q := range p.Peers {
				ch <- prometheus.MustNewConstMetric(descPeerBrk, prometheus.GaugeValue, float64(q.Breaker.State(now)), id, q.URL())
				ch <- prometheus.MustNewConstMetric(descPeerOK, prometheus.GaugeValue, gauge(q.Health.Healthy()), id, q.URL())
			}
			ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(p.Limiter.InFlight()), id)
		}
	}
	ch <- prometheus.MustNewConstMetric(descVersion, prometheus.GaugeValue, version)
	up, reconnects := c.st.ControlPlane()
	connected := 0.0
	if up {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descReconn, prometheus.CounterValue, float64(reconnects))
}

// gauge is 1 for true, 0 for false.
func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
