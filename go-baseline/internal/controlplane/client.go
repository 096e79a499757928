package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/coder/websocket"

	"pingora-parity/go-baseline/internal/admin"
	"pingora-parity/go-baseline/internal/config"
	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/store"
)

// MaxFrameBytes is the largest control-plane frame read (16 MiB), so that an oversized
// config can still be received and nacked as too_large.
const MaxFrameBytes = 16 << 20

// HandshakeTimeout limits one connection attempt (TCP connect and WebSocket handshake).
const HandshakeTimeout = 10 * time.Second

// Client is the control-plane client. It records its session status in the store
// (Store.ControlPlane), where the admin API and the metrics read it.
type Client struct {
	url      string
	stateDir string
	initial  time.Duration
	max      time.Duration
	ka       Keepalive
	store    *store.Store
	metrics  *metrics.Metrics
	logf     func(format string, args ...any)

	everUp bool // a session has been up before (the next one is a reconnect)
}

// New returns a client of url that applies configs to st, persisting them in stateDir,
// and counts accepted and rejected configs in m. Reconnect waits are
// Backoff(n, initial, max, ...); an established session is checked with ka.
func New(url, stateDir string, initial, max time.Duration, ka Keepalive, st *store.Store, m *metrics.Metrics, logf func(string, ...any)) *Client {
	return &Client{url: url, stateDir: stateDir, initial: initial, max: max, ka: ka, store: st, metrics: m, logf: logf}
}

// Run connects, serves sessions and reconnects with Backoff until ctx ends.
func (c *Client) Run(ctx context.Context) {
	n := 0
	for ctx.Err() == nil {
		if c.session(ctx) {
			n = 0 // a session that ends counts as failed attempt 0
		}
		t := time.NewTimer(Backoff(n, c.initial, c.max, rand.Float64()))
		n++
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session makes one connection attempt and, if the handshake succeeds, serves it until
// it ends (closed, failed, or lost to the Keepalive check). It reports whether the
// handshake succeeded.
func (c *Client) session(ctx context.Context) bool {
	act := newActivity()
	dctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	conn, _, err := websocket.Dial(dctx, c.url, &websocket.DialOptions{
		CompressionMode: websocket.CompressionDisabled,
		// a Ping from the control plane is a frame too (it answers ours); it gets its Pong
		OnPingReceived: func(context.Context, []byte) bool { act.heard(); return true },
	})
	cancel()
	if err != nil {
		c.logf("control plane: connect %s: %v", c.url, err)
		return false
	}
	defer conn.CloseNow()
	conn.SetReadLimit(MaxFrameBytes)
	if c.everUp {
		c.store.CountControlPlaneReconnect()
	}
	c.everUp = true
	c.store.SetControlPlaneConnected(true)
	defer c.store.SetControlPlaneConnected(false)

	hello := struct {
		Type          string `json:"type"`
		Impl          string `json:"impl"`
		ConfigVersion *int64 `json:"config_version"`
	}{Type: "hello", Impl: admin.Impl}
	if cur := c.store.Config(); cur != nil {
		v := cur.Version
		hello.ConfigVersion = &v
	}
	if err := c.send(ctx, conn, hello); err != nil {
		c.logf("control plane: send hello: %v", err)
		return true
	}
	kctx, stop := context.WithCancel(ctx)
	pinger := make(chan struct{})
	go func() { defer close(pinger); c.keepalive(kctx, conn, act) }()
	defer func() { stop(); <-pinger }()
	for {
		// Read also answers the control plane's pings and hands Pongs to the pinger.
		_, data, err := conn.Read(ctx)
		if err != nil {
			c.logf("control plane: session ended: %v", err)
			return true
		}
		act.received()
		err = c.send(ctx, conn, c.Handle(data))
		act.done()
		if err != nil {
			c.logf("control plane: send reply: %v", err)
			return true
		}
	}
}

func (c *Client) send(ctx context.Context, conn *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	return conn.Write(wctx, websocket.MessageText, b)
}

// Ack is the router's positive reply.
type Ack struct {
	Type    string `json:"type"`
	Version int64  `json:"version"`
}

// Nack is the router's negative reply; Version is the config's integer version or null.
type Nack struct {
	Type    string          `json:"type"`
	Version json.RawMessage `json:"version"`
	Error   NackError       `json:"error"`
}

// NackError is a nack's error member.
type NackError struct {
	Code    config.Code `json:"code"` // encodes as its wire name
	Path    string      `json:"path"`
	Message string      `json:"message"`
}

// Handle processes one frame and returns the reply (Ack or Nack). Frames are handled
// one at a time: validate, stale check, write LKG, swap, then ack.
func (c *Client) Handle(frame []byte) any {
	var f map[string]json.RawMessage
	var typ string
	if err := json.Unmarshal(frame, &f); err != nil || f == nil || json.Unmarshal(f["type"], &typ) != nil || typ != "config" || f["config"] == nil {
		return c.nack(nil, &config.Error{Code: config.CodeMalformedJSON, Path: "",
			Message: `frame is not a JSON object with "type":"config" and a config member`})
	}
	raw := []byte(f["config"])
	version := integerVersion(raw)
	cfg, verr := config.Validate(raw)
	if verr != nil {
		return c.nack(version, verr)
	}
	apply, verr := config.CheckVersion(c.store.Config(), cfg)
	if verr != nil {
		return c.nack(version, verr)
	}
	if apply {
		if err := WriteLKG(c.stateDir, raw); err != nil {
			return c.nack(version, &config.Error{Code: config.CodeInternalError, Path: "", Message: fmt.Sprintf("writing the LKG file: %v", err)})
		}
		c.store.Install(cfg)
		c.metrics.ConfigAccepted.Inc()
	}
	return Ack{Type: "ack", Version: cfg.Version}
}

func (c *Client) nack(version json.RawMessage, e *config.Error) Nack {
	c.metrics.ConfigRejected.WithLabelValues(e.Code.String()).Inc()
	if version == nil {
		version = json.RawMessage("null")
	}
	return Nack{Type: "nack", Version: version, Error: NackError{Code: e.Code, Path: e.Path, Message: e.Message}}
}

// integerVersion returns the config's "version" member verbatim when it is a JSON
// number without fraction or exponent, else nil.
func integerVersion(raw []byte) json.RawMessage {
	var doc map[string]json.RawMessage
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	v := bytes.TrimSpace(doc["version"])
	if len(v) == 0 || bytes.ContainsAny(v, ".eE\"") || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return nil
	}
	return v
}
