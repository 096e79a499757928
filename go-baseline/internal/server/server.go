// Package server is the router process of docs/spec.md sections 1 and 8: its flags, the
// start-up order (state dir, last-known-good file, both listeners, health checkers,
// control plane) and the run until shutdown, returning the exit code. cmd/router only
// parses the command line, turns SIGTERM/SIGINT into a context cancellation and exits
// with Run's code.
package server

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"pingora-parity/go-baseline/internal/admin"
	"pingora-parity/go-baseline/internal/controlplane"
	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/proxy"
	"pingora-parity/go-baseline/internal/store"
)

// Exit codes (spec section 1).
const (
	ExitOK    = 0 // clean shutdown
	ExitFatal = 1 // start-up failure (state dir, bind) or a listener that stopped serving
	ExitUsage = 2 // bad flags
)

// Run is the whole router process: it starts everything in the order of spec section 1,
// serves until ctx is cancelled (the caller cancels it on SIGTERM or SIGINT), drains
// in-flight requests for up to flags.ShutdownGrace, and returns the exit code. Log lines
// and fatal "error: ..." lines go to stderr, as do access-log lines when enabled.
func Run(ctx context.Context, flags Flags, stderr io.Writer) int {
	return run(ctx, flags, stderr, nil)
}

// run is Run; ready, when not nil, is called with the bound data and admin addresses once
// both listeners are up (tests bind port 0).
func run(ctx context.Context, f Flags, stderr io.Writer, ready func(data, admin net.Addr)) int {
	runtime.GOMAXPROCS(f.Threads)
	logger := log.New(stderr, "go-router: ", 0)
	fatal := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "error: "+format+"\n", args...)
		return ExitFatal
	}

	if err := os.MkdirAll(f.StateDir, 0o755); err != nil {
		return fatal("state dir: %v", err)
	}
	lkg, _, err := controlplane.LoadLKG(f.StateDir)
	if err != nil {
		logger.Printf("last-known-good: %v; starting without a config", err)
	}

	dataLn, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fatal("listen %s: %v", f.Listen, err)
	}
	adminLn, err := net.Listen("tcp", f.AdminListen)
	if err != nil {
		dataLn.Close()
		return fatal("admin listen %s: %v", f.AdminListen, err)
	}

	st := store.New()
	defer st.Close()
	if lkg != nil {
		st.Install(lkg) // starts the health checkers
	}
	m := metrics.New(st)
	var cp *controlplane.Client
	if f.ControlPlane != "" {
		cp = controlplane.New(f.ControlPlane, f.StateDir, f.ReconnectInitial, f.ReconnectMax,
			controlplane.Keepalive{Ping: f.CPPing, PongTimeout: f.CPPongTimeout}, st, m, logger.Printf)
	}
	var accessLog io.Writer
	if f.AccessLog {
		accessLog = stderr
	}
	discard := log.New(io.Discard, "", 0)
	dataSrv := &http.Server{
		Handler: proxy.New(st, m, accessLog),
		// The 64 KiB head limit (spec section 3, "Headers") is the gate's, exact on the
		// head's bytes (proxy.MaxHeadBytes); net/http's own is set above it.
		MaxHeaderBytes:    proxy.ServerMaxHeaderBytes,
		ReadHeaderTimeout: 60 * time.Second,
		ConnContext:       proxy.ConnContext,
		ErrorLog:          discard,
		// "OPTIONS *" is forwarded like any request (RFC 9110 section 9.3.7: it asks the
		// server, here the upstream); net/http would answer it 200 itself.
		DisableGeneralOptionsHandler: true,
	}
	adminSrv := &http.Server{Handler: admin.Handler(st, m), ErrorLog: discard,
		ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- dataSrv.Serve(proxy.Listener{Listener: dataLn}) }()
	go func() { serveErr <- adminSrv.Serve(adminLn) }()
	logger.Printf("listening on %s, admin on %s", dataLn.Addr(), adminLn.Addr())
	if ready != nil {
		ready(dataLn.Addr(), adminLn.Addr())
	}

	cpCtx, cpCancel := context.WithCancel(context.Background())
	defer cpCancel()
	cpDone := make(chan struct{})
	if cp != nil {
		go func() { defer close(cpDone); cp.Run(cpCtx) }()
	} else {
		close(cpDone)
	}

	select {
	case err := <-serveErr:
		return fatal("serve: %v", err)
	case <-ctx.Done():
		logger.Printf("shutting down: draining for up to %v", f.ShutdownGrace)
	}
	cpCancel()
	drainCtx, cancel := context.WithTimeout(context.Background(), f.ShutdownGrace)
	defer cancel()
	if err := dataSrv.Shutdown(drainCtx); err != nil {
		// Requests still running at the deadline are cut.
		_ = dataSrv.Close()
	}
	_ = adminSrv.Close()
	<-cpDone
	return ExitOK
}
