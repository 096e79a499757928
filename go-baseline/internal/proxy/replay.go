package proxy

import (
	"errors"
	"io"
)

// replayLimit bounds what the router keeps of a request body to send it again: 64 KiB,
// the size of Pingora's retry buffer (pingora-proxy BODY_BUF_LIMIT). Only what the
// transport read before its first write to a pooled connection is ever replayed (its
// 4 KiB write buffer's worth), so the limit is never reached in practice: the bytes are
// kept only while the reuse check is still to come (HeadConn.Checking), so a request on a
// fresh connection, or the rest of a body once the check passed, costs no copy.
const replayLimit = 64 << 10

// errNoReplay is GetBody's answer when the attempt that failed was not refused by the
// reuse check: the transport then gives up with it (docs/spec.md section 4, "Pool
// identity": a request whose bytes were written is retried only when bodiless).
var errNoReplay = errors.New("request body not replayed: the failed attempt was not refused by the reuse check")

// replayBody lets net/http's transport send a request body again on a new connection
// when a pooled connection was refused by the reuse check before the request was written
// (upstream.ErrStaleConn): the transport retries such an attempt (nothingWrittenError)
// only when Request.GetBody can give the body again. It keeps the bytes read from the
// client's body, up to replayLimit, and each attempt reads them again before the rest.
//
// Only that retry: GetBody fails unless the current attempt's connection was refused by
// the reuse check, so the transport's other retry of a written request (an idempotent
// method whose body is replayable, before any response byte) stays off for requests with
// a body, as in the Pingora router (its retry buffer serves only the same check). An
// attempt's Close does not close the client's body when that attempt is to be replayed;
// ReverseProxy closes the client's body when the handler returns.
type replayBody struct {
	src  io.ReadCloser // the client's body (reqBodyWatch)
	st   *reqState
	kept []byte // bytes read from src so far, while they fit in replayLimit
	over bool   // more than replayLimit was read: no replay
}

// replayAttempt is the body one attempt of the transport reads. The transport's attempts
// do not overlap: a retry starts after the failed attempt's writer has finished.
type replayAttempt struct {
	r   *replayBody
	off int // next byte of r.kept to give
}

func (a *replayAttempt) Read(p []byte) (int, error) {
	r := a.r
	if !r.over && a.off < len(r.kept) {
		n := copy(p, r.kept[a.off:])
		a.off += n
		return n, nil
	}
	n, err := r.src.Read(p)
	if n > 0 && !r.over {
		if !r.mayReplay() || len(r.kept)+n > replayLimit {
			r.over, r.kept = true, nil
		} else {
			r.kept = append(r.kept, p[:n]...)
			a.off = len(r.kept)
		}
	}
	return n, err
}

// Close closes the client's body, except when this attempt's connection was refused by
// the reuse check and the body can be replayed: the next attempt still reads it.
func (a *replayAttempt) Close() error {
	if a.r.replayable() {
		return nil
	}
	return a.r.src.Close()
}

// mayReplay reports whether the current attempt can still be refused by the reuse check
// before it writes: only then are the bytes read worth keeping.
func (r *replayBody) mayReplay() bool {
	return r.st.upConn != nil && r.st.upConn.Checking()
}

func (r *replayBody) replayable() bool {
	return !r.over && r.st.upConn != nil && r.st.upConn.Stale()
}

// getBody is the upstream request's GetBody.
func (r *replayBody) getBody() (io.ReadCloser, error) {
	if !r.replayable() {
		return nil, errNoReplay
	}
	return &replayAttempt{r: r}, nil
}
