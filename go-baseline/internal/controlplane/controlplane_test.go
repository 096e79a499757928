package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/store"
	"pingora-parity/go-baseline/internal/testwait"
)

func TestBackoffBounds(t *testing.T) {
	initial, max := 100*time.Millisecond, 5*time.Second
	for n := 0; n < 70; n++ {
		d := initial << min(n, 40)
		if d > max || d <= 0 {
			d = max
		}
		lo, hi := Backoff(n, initial, max, 0), Backoff(n, initial, max, 1)
		if lo != d/2 || hi != d {
			t.Fatalf("n=%d: bounds [%v, %v], want [%v, %v]", n, lo, hi, d/2, d)
		}
		for _, u := range []float64{0.25, 0.5, 0.999} {
			if w := Backoff(n, initial, max, u); w < d/2 || w > d {
				t.Fatalf("n=%d u=%v: %v outside [%v, %v]", n, u, w, d/2, d)
			}
		}
	}
	if Backoff(0, 100*time.Millisecond, 5*time.Second, 0.5) != 75*time.Millisecond {
		t.Fatal("midpoint of [50ms, 100ms] must be 75ms")
	}
	if Backoff(3, 100*time.Millisecond, 5*time.Second, 1) != 800*time.Millisecond {
		t.Fatal("n=3: d = 800ms")
	}
}

func cfgDoc(version int, endpointPort int) string {
	return fmt.Sprintf(`{"version":%d,"routes":{"k":"p"},"placements":{"p":{"endpoint":"http://127.0.0.1:%d","max_concurrency":4,"timeouts":{"connect_ms":100,"request_ms":1000}}}}`, version, endpointPort)
}

func TestLKGWriteLoadAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	if cfg, _, err := LoadLKG(dir); cfg != nil || err != nil {
		t.Fatalf("missing file: %v %v", cfg, err)
	}
	doc := cfgDoc(4, 9001)
	if err := WriteLKG(dir, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	cfg, raw, err := LoadLKG(dir)
	if err != nil || cfg.Version != 4 || string(raw) != doc {
		t.Fatalf("load: %v %v", cfg, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
	// An older .corrupt is replaced by the newer corrupt file.
	lkg := filepath.Join(dir, LKGFile)
	for i, bad := range []string{`{"version":`, `{"version":1}`} {
		if err := os.WriteFile(lkg, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := LoadLKG(dir)
		if cfg != nil || err == nil {
			t.Fatalf("corrupt file %d loaded", i)
		}
		if _, err := os.Stat(lkg); !os.IsNotExist(err) {
			t.Fatal("corrupt file still in place")
		}
		got, _ := os.ReadFile(lkg + CorruptSuffix)
		if string(got) != bad {
			t.Fatalf(".corrupt holds %q, want %q", got, bad)
		}
	}
}

func newClient(t *testing.T) (*Client, *store.Store, *metrics.Metrics, string) {
	dir := t.TempDir()
	st := store.New()
	t.Cleanup(st.Close)
	m := metrics.New(st)
	c := New("ws://unused", dir, 10*time.Millisecond, 50*time.Millisecond, DefaultKeepalive, st, m, t.Logf)
	return c, st, m, dir
}

func connected(st *store.Store) bool { up, _ := st.ControlPlane(); return up }

func reconnects(st *store.Store) int64 { _, n := st.ControlPlane(); return n }

func reply(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandleAckNackStale(t *testing.T) {
	c, st, m, dir := newClient(t)
	frame := func(cfg string) []byte { return []byte(`{"type":"config","config":` + cfg + `}`) }
	cases := []struct {
		frame []byte
		want  string
	}{
		{frame(cfgDoc(5, 9001)), `{"type":"ack","version":5}`},
		{frame(cfgDoc(5, 9001)), `{"type":"ack","version":5}`}, // re-ack, nothing changes
		{frame(cfgDoc(5, 9002)), `{"type":"nack","version":5,"error":{"code":"stale_version","path":"/version",`},
		{frame(cfgDoc(4, 9001)), `{"type":"nack","version":4,"error":{"code":"stale_version","path":"/version",`},
		{frame(`{"version":9,"routes":{}}`), `{"type":"nack","version":9,"error":{"code":"missing_field","path":"/placements",`},
		{frame(`{"version":"9"}`), `{"type":"nack","version":null,"error":{"code":"missing_field","path":"/routes",`},
		{[]byte(`{"type":"config"}`), `{"type":"nack","version":null,"error":{"code":"malformed_json","path":"",`},
		{[]byte(`{"type":"hello","config":{}}`), `{"type":"nack","version":null,"error":{"code":"malformed_json","path":"",`},
		{[]byte(`[1]`), `{"type":"nack","version":null,"error":{"code":"malformed_json","path":"",`},
		{frame(`{"version":7,"pad":"` + strings.Repeat("x", 1<<20) + `"}`), `{"type":"nack","version":7,"error":{"code":"too_large","path":"",`},
		{frame(cfgDoc(6, 9003)), `{"type":"ack","version":6}`},
	}
	for i, tc := range cases {
		got := reply(t, c.Handle(tc.frame))
		if !strings.HasPrefix(got, tc.want) {
			t.Fatalf("case %d: got %s, want prefix %s", i, got, tc.want)
		}
	}
	if v := st.Config().Version; v != 6 {
		t.Fatalf("current version %d", v)
	}
	saved, _ := os.ReadFile(filepath.Join(dir, LKGFile))
	if string(saved) != cfgDoc(6, 9003) {
		t.Fatalf("LKG file holds %s", saved)
	}
	if n := testutil.ToFloat64(m.ConfigAccepted); n != 2 {
		t.Fatalf("accepted %v, want 2 (re-acks not counted)", n)
	}
	if n := testutil.ToFloat64(m.ConfigRejected.WithLabelValues("stale_version")); n != 2 {
		t.Fatalf("rejected stale %v", n)
	}
}

// fakeCP is a control plane: it records hellos, sends configs, collects replies.
type fakeCP struct {
	mu      sync.Mutex
	hellos  []string
	replies []string
	conns   int
	srv     *httptest.Server
	onConn  func(ctx context.Context, c *websocket.Conn, n int)
}

func newFakeCP(t *testing.T, onConn func(ctx context.Context, c *websocket.Conn, n int)) *fakeCP {
	f := &fakeCP{onConn: onConn}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		_, hello, err := c.Read(r.Context())
		if err != nil {
			return
		}
		f.mu.Lock()
		f.hellos = append(f.hellos, string(hello))
		f.conns++
		n := f.conns
		f.mu.Unlock()
		f.onConn(r.Context(), c, n)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCP) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") }

func (f *fakeCP) snapshot() (hellos, replies []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.hellos...), append([]string(nil), f.replies...)
}

// waitFor is the shared deadline poll (testwait.For).
var waitFor = testwait.For

func TestSessionHelloConfigAckAndReconnect(t *testing.T) {
	f := newFakeCP(t, nil)
	f.onConn = func(ctx context.Context, c *websocket.Conn, n int) {
		if n == 1 {
			_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"config","config":`+cfgDoc(3, 9001)+`}`))
			_, r, err := c.Read(ctx)
			if err == nil {
				f.mu.Lock()
				f.replies = append(f.replies, string(r))
				f.mu.Unlock()
			}
			return // drop the connection: the client must reconnect
		}
		<-ctx.Done()
	}
	c, st, _, _ := newClient(t)
	c.url = f.url()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "second session", func() bool { h, _ := f.snapshot(); return len(h) == 2 && connected(st) })
	hellos, replies := f.snapshot()
	if hellos[0] != `{"type":"hello","impl":"go","config_version":null}` {
		t.Fatalf("first hello %s", hellos[0])
	}
	if hellos[1] != `{"type":"hello","impl":"go","config_version":3}` {
		t.Fatalf("second hello %s", hellos[1])
	}
	if len(replies) != 1 || replies[0] != `{"type":"ack","version":3}` {
		t.Fatalf("replies %v", replies)
	}
	if st.Config().Version != 3 || reconnects(st) != 1 {
		t.Fatalf("version %d reconnects %d", st.Config().Version, reconnects(st))
	}
}

func TestRunRetriesAnUnreachableControlPlane(t *testing.T) {
	c, st, _, _ := newClient(t)
	c.url = "ws://127.0.0.1:1/"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c.Run(ctx) // returns when ctx ends, never connected
	if time.Since(start) < 250*time.Millisecond || connected(st) || reconnects(st) != 0 {
		t.Fatal("Run must keep retrying until its context ends")
	}
}
