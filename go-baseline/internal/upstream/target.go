package upstream

import "bytes"

// RewriteTarget makes the request line of the exchange Begin started carry the
// request-target to instead of from, the form net/http's Request.Write produces for it
// (URL.RequestURI). Call it after Begin, before the request is written; Begin forgets it.
//
// Why: an intermediary never re-encodes a target (RFC 9110 section 7.7; docs/spec.md
// section 3), but net/http cannot write every origin-form target verbatim: a path that
// starts with "//" cannot go through URL.Opaque (written as scheme ":" opaque), and its
// RawPath is used only when it is a valid escaping in net/url's sense, so `//"`, `//{x}`
// or `//a|b` would go out as `//%22`, `//%7Bx%7D`, `//a%7Cb`. The transport writes the
// request line, whole, at the start of the exchange's first Write (it formats the line
// into its 4 KiB buffer, or writes a longer one directly); that Write replaces from with
// to when the line is "METHOD SP from SP HTTP/1.1 CRLF" and leaves anything else
// untouched (an HTTP/2 preface, a line in an unexpected form).
func (c *HeadConn) RewriteTarget(from, to string) {
	c.mu.Lock()
	c.targetFrom, c.targetTo = from, to
	c.mu.Unlock()
}

// rewriteTarget returns p with its request line's target from replaced by to, and
// whether it was. p must begin with "METHOD SP from SP HTTP/1.1\r\n".
func rewriteTarget(p []byte, from, to string) ([]byte, bool) {
	sp := bytes.IndexByte(p, ' ')
	if sp <= 0 || !bytes.HasPrefix(p[sp+1:], []byte(from+" HTTP/1.1\r\n")) {
		return p, false
	}
	out := make([]byte, 0, len(p)-len(from)+len(to))
	out = append(append(append(out, p[:sp+1]...), to...), p[sp+1+len(from):]...)
	return out, true
}
