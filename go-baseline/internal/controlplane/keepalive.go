package controlplane

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Keepalive is the liveness check of an established control-plane session (docs/spec.md
// section 6, "Keepalive"): a WebSocket Ping (RFC 6455 section 5.5.2) once Ping has passed
// since the session began or since the previous ping was answered, and never while the
// router is applying a config (then right after it). Any frame received after the ping
// answers it (the control plane's Pong, RFC 6455 section 5.5.3, or any other). Without an
// answer within PongTimeout the session is lost: the connection is closed and the client
// reconnects with the backoff, as after any other session end.
type Keepalive struct {
	Ping        time.Duration // --cp-ping-ms, > 0
	PongTimeout time.Duration // --cp-pong-timeout-ms, > 0
}

// DefaultKeepalive is the routers' default: a ping every 10 s, 20 s for its answer.
// The timeout is two ping intervals so that a control plane that is busy, or a large
// config frame on a slow link (the Pong queues behind it), is not taken for a black hole;
// a silent black hole is detected within 30 s.
var DefaultKeepalive = Keepalive{Ping: 10 * time.Second, PongTimeout: 20 * time.Second}

// activity is what the session's reader tells its pinger: how many frames arrived and
// whether one is being applied now.
type activity struct {
	mu      sync.Mutex
	frames  chan struct{} // closed (and replaced) when a frame arrives
	applied chan struct{} // non-nil while a frame is being applied; closed when done
}

func newActivity() *activity { return &activity{frames: make(chan struct{})} }

// heard records a frame the reader handles itself (a Ping from the control plane).
func (a *activity) heard() {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.frames)
	a.frames = make(chan struct{})
}

// received records a data frame and marks the reader busy until done is called.
func (a *activity) received() {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.frames)
	a.frames = make(chan struct{})
	a.applied = make(chan struct{})
}

// done ends the busy time begun by received.
func (a *activity) done() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied != nil {
		close(a.applied)
		a.applied = nil
	}
}

// state returns a channel closed by the next frame and, while a frame is being applied,
// a channel closed when that is done (nil otherwise).
func (a *activity) state() (next, busy <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied != nil {
		return a.frames, a.applied
	}
	return a.frames, nil
}

// keepalive pings conn as Keepalive says until ctx ends or the connection fails. It
// returns true after it closed conn because a ping went unanswered.
func (c *Client) keepalive(ctx context.Context, conn *websocket.Conn, act *activity) bool {
	for {
		t := time.NewTimer(c.ka.Ping)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		// not while a config is being applied: its reply follows, then the ping
		next, busy := act.state()
		for busy != nil {
			select {
			case <-ctx.Done():
				return false
			case <-busy:
			}
			next, busy = act.state()
		}
		pctx, cancel := context.WithCancel(ctx)
		pong := make(chan error, 1)
		go func() { pong <- conn.Ping(pctx) }()
		wait := time.NewTimer(c.ka.PongTimeout)
		lost, failed := false, false
		select {
		case <-ctx.Done():
			failed = true
		case err := <-pong:
			failed = err != nil // the connection failed: the reader sees it too
		case <-next: // any frame answers the ping
		case <-wait.C:
			lost = true
		}
		wait.Stop()
		cancel()
		if lost {
			c.metrics.ControlPlanePongTimeouts.Inc()
			c.logf("control plane: no answer to a ping within %v: closing the session", c.ka.PongTimeout)
			conn.CloseNow()
			return true
		}
		if failed {
			return false
		}
	}
}
