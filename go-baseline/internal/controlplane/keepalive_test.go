package controlplane

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// pingCP is a control plane that reads every frame (so coder/websocket would answer
// pings) and lets the test decide, per connection, whether its pings get a Pong.
type pingCP struct {
	mu     sync.Mutex
	conns  int // connections accepted
	pings  int // pings received, answered or not
	closed int // connections whose session ended
	srv    *httptest.Server
}

// newPingCP starts a control plane; answer(n) says whether connection n (1, 2, ...)
// answers pings. A connection that does not is a silent black hole: it sends nothing.
func newPingCP(t *testing.T, answer func(n int) bool) *pingCP {
	p := &pingCP{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.conns++
		n := p.conns
		p.mu.Unlock()
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			OnPingReceived: func(context.Context, []byte) bool {
				p.mu.Lock()
				p.pings++
				p.mu.Unlock()
				return answer(n)
			},
		})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				break
			}
		}
		p.mu.Lock()
		p.closed++
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *pingCP) counts() (conns, pings, closed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, p.pings, p.closed
}

// runClient runs c.Run against url until the test ends.
func runClient(t *testing.T, c *Client, url string, ka Keepalive) {
	c.url = url
	c.ka = ka
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A session whose control plane stops answering (no Pong, no other frame, the
// connection left open) is closed after an unanswered ping, counted, and replaced by a
// new session; without the keepalive it would stay "connected" for ever.
func TestKeepaliveClosesASilentSessionAndReconnects(t *testing.T) {
	cp := newPingCP(t, func(n int) bool { return n > 1 })
	c, st, m, _ := newClient(t)
	start := time.Now()
	runClient(t, c, "ws"+strings.TrimPrefix(cp.srv.URL, "http"), Keepalive{Ping: 30 * time.Millisecond, PongTimeout: 60 * time.Millisecond})

	waitFor(t, "first session closed by the router", func() bool { _, _, closed := cp.counts(); return closed >= 1 })
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Fatalf("session closed after %v, before a ping could time out", took)
	}
	waitFor(t, "second session", func() bool { conns, _, _ := cp.counts(); return conns == 2 && connected(st) })
	if got := testutil.ToFloat64(m.ControlPlanePongTimeouts); got != 1 {
		t.Fatalf("router_control_plane_pong_timeouts_total = %v, want 1", got)
	}
	if reconnects(st) != 1 {
		t.Fatalf("reconnects %d, want 1", reconnects(st))
	}
	// the second session answers: pings go on and it stays up
	_, before, _ := cp.counts()
	waitFor(t, "five more answered pings", func() bool { _, pings, _ := cp.counts(); return pings >= before+5 })
	if conns, _, closed := cp.counts(); conns != 2 || closed != 1 || !connected(st) ||
		testutil.ToFloat64(m.ControlPlanePongTimeouts) != 1 {
		t.Fatalf("answered session ended: conns %d closed %d connected %v", conns, closed, connected(st))
	}
}

// A config being applied holds the ping back (the reply goes first), and a config frame
// arriving while a ping waits answers it: a control plane that pushes configs but never
// sends a Pong keeps its session only as long as it keeps pushing.
func TestKeepaliveAnyFrameAnswersAPing(t *testing.T) {
	frames := make(chan string)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			OnPingReceived: func(context.Context, []byte) bool { return false },
		})
		if err != nil {
			return
		}
		defer c.CloseNow()
		go func() {
			for {
				if _, _, err := c.Read(r.Context()); err != nil {
					return
				}
			}
		}()
		for f := range frames {
			if c.Write(r.Context(), websocket.MessageText, []byte(f)) != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, st, m, _ := newClient(t)
	runClient(t, c, "ws"+strings.TrimPrefix(srv.URL, "http"), Keepalive{Ping: 20 * time.Millisecond, PongTimeout: 500 * time.Millisecond})
	waitFor(t, "session", func() bool { return connected(st) })
	// a frame every 50 ms (well inside the timeout) for 10 frames: the session stays
	for i := 0; i < 10; i++ {
		select {
		case frames <- `{"type":"config","config":` + cfgDoc(i+1, 9001) + `}`:
		case <-time.After(5 * time.Second):
			t.Fatal("control plane could not push")
		}
		time.Sleep(50 * time.Millisecond) // the pace of the pushes, not a wait for state
	}
	if !connected(st) || reconnects(st) != 0 || testutil.ToFloat64(m.ControlPlanePongTimeouts) != 0 {
		t.Fatalf("session lost while frames kept arriving: connected %v reconnects %d", connected(st), reconnects(st))
	}
	close(frames)
}
