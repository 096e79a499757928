package upstream

// HeadRequest tells the connection that the exchange Begin started is a HEAD request: its
// response, whatever its status and fields, ends with its head (RFC 9110 section 9.3.2,
// RFC 9112 section 6.3 rule 1). Call it after Begin, before the request is written.
//
// Why: bytes an upstream sends behind a response that ends with its head (the body of a
// GET answered to a HEAD) are no response to anything, and the
// connection must not carry another request (RFC 9112 section 6.3: the framing is lost).
// When they arrive in the same read as the head, net/http's transport keeps them in its
// buffer, puts the connection back in its pool, and only its read loop's next look at the
// buffer (which finds no request outstanding) closes it; a request that takes the
// connection from the pool before that look reads them as its response (502
// upstream_protocol_error). Pingora's client drops such a connection at once
// (pingora-core: bytes read past a complete body are "overread", and the session is not
// reused). HeadConn does the same: the read that ends such a head returns the head's bytes
// with io.EOF and drops what follows, so the transport sees the connection end and never
// pools it (persistConn.Read sets sawEOF).
//
// Bytes that arrive in a later read (the upstream writes the body slowly, after the head)
// are read by the transport's idle read loop into its buffer, where the reuse check's
// look at the socket (CheckBeforeWrite) cannot see them, and a request that took the
// connection from the pool meanwhile would read them as its response. So a read that
// brings bytes after such a head, before the next exchange's Begin, or after a reused
// exchange's Begin and before its first write (unsolicitedRead), returns io.EOF
// instead, drops them and marks the connection unsolicited: the read loop closes an idle
// connection at that EOF, and the reuse check refuses it (ErrStaleConn, nothing written,
// so the transport sends the request on another connection).
func (c *HeadConn) HeadRequest() {
	c.mu.Lock()
	c.headReq = true
	c.mu.Unlock()
}

// endsWithHead reports whether the final head just read ends its response with bytes
// behind it to be dropped: the exchange is a HEAD. Called with c.mu. (A 204 or 304 ends
// with its head too; bytes behind one in the same read still go to the transport, whose
// read loop closes the idle connection when it finds them.)
func (c *HeadConn) endsWithHead() bool {
	return c.headReq
}

// unsolicitedRead reports whether bytes read now answer no request: the exchange is a
// HEAD whose final head has been read (its response ended there, and the next exchange
// has not begun), or the reuse check is armed (a reused exchange has not written its
// request yet). Called with c.mu.
func (c *HeadConn) unsolicitedRead() bool {
	return (c.headReq && c.finalSeen && !c.capturing) || c.checkWrite
}
