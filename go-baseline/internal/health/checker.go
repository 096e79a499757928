package health

import (
	"context"
	"io"
	"net/http"
	"time"
)

// Probe performs one check and reports success. It must return by the time ctx ends.
type Probe func(ctx context.Context) bool

// Checker is the goroutine probing one placement: first probe at once, then every
// interval, each limited to timeout.
type Checker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs probe against st until Stop: first at once, then every interval.
func Start(st *State, probe Probe, interval, timeout time.Duration) *Checker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			pctx, pcancel := context.WithTimeout(ctx, timeout)
			ok := probe(pctx)
			pcancel()
			if ctx.Err() != nil {
				return
			}
			st.Record(ok)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return c
}

// Stop ends the checker and waits for its goroutine to exit.
func (c *Checker) Stop() {
	c.cancel()
	<-c.done
}

// HTTPProbe returns a Probe doing `GET url` with client; a 2xx status arriving before the
// probe's deadline is a success. The URL's host:port is the Host header.
func HTTPProbe(client *http.Client, url string) Probe {
	return func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode <= 299
	}
}
