package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"pingora-parity/go-baseline/internal/errcode"
)

// accessLog writes one JSON object per line (docs/spec.md section 8).
type accessLog struct {
	mu sync.Mutex
	w  io.Writer
}

type accessLine struct {
	TS         string        `json:"ts"`
	Method     string        `json:"method"`
	Path       string        `json:"path"`
	Key        *string       `json:"key"`
	Placement  *string       `json:"placement"`
	Status     int           `json:"status"`
	Error      *errcode.Code `json:"error"`
	DurationMS float64       `json:"duration_ms"`
}

// write logs r; for the stand-in of a refused head (rf not nil) the method and path are
// the refused head's.
func (l *accessLog) write(start time.Time, r *http.Request, rf *refusal, placement string, status int, code errcode.Code, d time.Duration) {
	line := accessLine{TS: start.UTC().Format(time.RFC3339Nano), Method: r.Method, Path: r.URL.Path,
		Status: status, DurationMS: float64(d.Microseconds()) / 1000}
	if rf != nil {
		line.Method, line.Path = rf.method, rf.path
	}
	if k := r.Header["X-Routing-Key"]; len(k) > 0 {
		line.Key = &k[0]
	}
	if placement != "" {
		line.Placement = &placement
	}
	if code != 0 {
		line.Error = &code
	}
	b, _ := json.Marshal(line)
	b = append(b, '\n')
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
}
