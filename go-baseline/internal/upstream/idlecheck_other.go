//go:build !linux

package upstream

import "syscall"

// idleStateOf is the reuse check's socket look (idlecheck_linux.go); elsewhere there is
// none and a pooled connection is used as net/http's transport hands it out.
func idleStateOf(syscall.RawConn) idleState { return idleOK }
