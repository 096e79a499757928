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
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"pingora-parity/go-baseline/internal/admin"
	"pingora-parity/go-baseline/internal/controlplane"
	"pingora-parity/go-baseline/internal/metrics"
	"pingora-parity/go-baseline/internal/proxy"
	"pingora-parity/go-baseline/internal/store"
	"pingora-parity/go-baseline/internal/tlslisten"
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
//
// SIGHUP reloads the TLS files of a TLS listener (docs/spec.md section 3, "TLS and HTTP/2
// on the listener") and is otherwise ignored.
func Run(ctx context.Context, flags Flags, stderr io.Writer) int {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return run(ctx, flags, stderr, nil, reload)
}

// run is Run; ready, when not nil, is called with the bound data and admin addresses once
// both listeners are up (tests bind port 0); each receive from reload is a SIGHUP.
func run(ctx context.Context, f Flags, stderr io.Writer, ready func(data, admin net.Addr), reload <-chan struct{}) int {
	runtime.GOMAXPROCS(f.Threads)
	logger := log.New(stderr, "go-router: ", 0)
	fatal := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "error: "+format+"\n", args...)
		return ExitFatal
	}

	if err := os.MkdirAll(f.StateDir, 0o755); err != nil {
		return fatal("state dir: %v", err)
	}
	var certs *tlslisten.Certs
	if f.TLS() {
		c, err := tlslisten.NewCerts(tlslisten.Files{Cert: f.TLSCert, Key: f.TLSKey, ClientCA: f.ClientCA})
		if err != nil {
			return fatal("tls: %v", err)
		}
		certs = c
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
	handler := proxy.New(st, m, accessLog)
	// The listener's connections reach net/http through the HTTP/1.1 request gate
	// (proxy.Listener); on a TLS listener the handshake comes first and an "h2"
	// connection goes to net/http's HTTP/2 server as a *tls.Conn (tlslisten).
	var dataServe net.Listener = proxy.Listener{Listener: dataLn}
	var tlsMetrics *metrics.TLS
	if certs != nil {
		handler.ListenerTLS()
		tlsMetrics = m.EnableTLS()
		dataServe = tlslisten.New(dataLn, certs.ServerConfig(), tlsMetrics, proxy.Listener{}.Wrap)
	}
	dataSrv := &http.Server{
		Handler: handler,
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
	go func() { serveErr <- dataSrv.Serve(dataServe) }()
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

serving:
	for {
		select {
		case err := <-serveErr:
			return fatal("serve: %v", err)
		case <-reload:
			if certs == nil {
				continue // SIGHUP without TLS: nothing to reload
			}
			if err := certs.Reload(); err != nil {
				tlsMetrics.Reload(false)
				logger.Printf("tls reload failed, keeping the current certificate: %v", err)
			} else {
				tlsMetrics.Reload(true)
				logger.Printf("tls reload: new handshakes use the files read now")
			}
		case <-ctx.Done():
			logger.Printf("shutting down: draining for up to %v", f.ShutdownGrace)
			break serving
		}
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
