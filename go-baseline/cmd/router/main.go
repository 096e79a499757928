// Command go-router is the Go stdlib baseline router of pingora-parity. Flags, exit codes
// and start-up order are docs/spec.md section 1; shutdown is section 8.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pingora-parity/go-baseline/internal/admin"
	"pingora-parity/go-baseline/internal/controlplane"
	"pingora-parity/go-baseline/internal/proxy"
	"pingora-parity/go-baseline/internal/store"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sig, nil))
}

// options are the parsed flags.
type options struct {
	listen, adminListen, controlPlane, stateDir string
	threads                                     int
	grace, reconnectInitial, reconnectMax       time.Duration
	accessLog                                   bool
}

// maxHeaderBytes makes net/http's header limit 64 KiB in all: the server reads up to
// MaxHeaderBytes + 4096 bytes before it answers 431.
const maxHeaderBytes = 64<<10 - 4096

// usageError is a bad-flags error (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func parseFlags(args []string, stdout io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("go-router", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "data-plane listener, HTTP/1.1, host:port")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9090", "admin listener")
	fs.StringVar(&o.controlPlane, "control-plane", "", "control-plane WebSocket URL (ws:// or wss://); none: run on the LKG file alone")
	fs.StringVar(&o.stateDir, "state-dir", "./state", "where last-known-good.json is kept (created if missing)")
	fs.IntVar(&o.threads, "threads", runtime.NumCPU(), "worker threads (GOMAXPROCS), >= 1")
	grace := fs.Int64("shutdown-grace-ms", 5000, "longest wait for in-flight requests on SIGTERM")
	initial := fs.Int64("reconnect-initial-ms", 100, "first reconnect backoff")
	max := fs.Int64("reconnect-max-ms", 5000, "backoff cap")
	fs.BoolVar(&o.accessLog, "access-log", false, "one JSON line per request on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: go-router [flags]   (flags take --name value or --name=value)")
			fs.VisitAll(func(f *flag.Flag) {
				fmt.Fprintf(stdout, "  --%s\n    \t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			})
			return nil, err
		}
		// The flag package names flags with one dash ("-bogus"); the contract's are "--".
		return nil, usageError{strings.Replace(err.Error(), ": -", ": --", 1)}
	}
	switch {
	case fs.NArg() > 0:
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case o.threads < 1:
		return nil, usageError{"--threads must be >= 1"}
	case *grace < 0:
		return nil, usageError{"--shutdown-grace-ms must be >= 0"}
	case *initial < 1 || *max < 1:
		return nil, usageError{"--reconnect-initial-ms and --reconnect-max-ms must be >= 1"}
	case *max < *initial:
		return nil, usageError{"--reconnect-max-ms must be >= --reconnect-initial-ms"}
	case o.stateDir == "":
		return nil, usageError{"--state-dir must not be empty"}
	}
	for name, addr := range map[string]string{"--listen": o.listen, "--admin-listen": o.adminListen} {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, usageError{fmt.Sprintf("%s %q: %v", name, addr, err)}
		}
		// A port outside 0..65535 is a bad flag (exit 2), as in the Pingora router, not
		// a bind failure (exit 1).
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, usageError{fmt.Sprintf("%s %q: port must be a number from 0 to 65535", name, addr)}
		}
	}
	if o.controlPlane != "" {
		u, err := url.Parse(o.controlPlane)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return nil, usageError{fmt.Sprintf("--control-plane %q: want a ws:// or wss:// URL", o.controlPlane)}
		}
	}
	o.grace = time.Duration(*grace) * time.Millisecond
	o.reconnectInitial = time.Duration(*initial) * time.Millisecond
	o.reconnectMax = time.Duration(*max) * time.Millisecond
	return o, nil
}

// run is the whole process: it returns the exit code. ready, when not nil, receives the
// bound data and admin addresses once both listeners are up.
func run(args []string, stdout, stderr io.Writer, sig <-chan os.Signal, ready chan<- [2]string) int {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 2
	}
	runtime.GOMAXPROCS(o.threads)
	logger := log.New(stderr, "go-router: ", 0)
	fatal := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "error: "+format+"\n", args...)
		return 1
	}

	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return fatal("state dir: %v", err)
	}
	lkg, _, err := controlplane.LoadLKG(o.stateDir)
	if err != nil {
		logger.Printf("last-known-good: %v; starting without a config", err)
	}

	dataLn, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fatal("listen %s: %v", o.listen, err)
	}
	adminLn, err := net.Listen("tcp", o.adminListen)
	if err != nil {
		dataLn.Close()
		return fatal("admin listen %s: %v", o.adminListen, err)
	}

	st := store.New()
	defer st.Close()
	if lkg != nil {
		st.Install(lkg) // starts the health checkers
	}
	var cp *controlplane.Client
	if o.controlPlane != "" {
		cp = controlplane.New(o.controlPlane, o.stateDir, o.reconnectInitial, o.reconnectMax, st, logger.Printf)
	}
	var cpStatus admin.ControlPlaneStatus
	if cp != nil {
		cpStatus = cp
	}
	metrics := admin.NewMetrics(st, cpStatus)
	var accessLog io.Writer
	if o.accessLog {
		accessLog = stderr
	}
	discard := log.New(io.Discard, "", 0)
	dataSrv := &http.Server{
		Handler:           proxy.New(st, metrics, accessLog),
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: 60 * time.Second,
		ConnContext:       proxy.ConnContext,
		ErrorLog:          discard,
	}
	adminSrv := &http.Server{Handler: admin.Handler(st, cpStatus, metrics), ErrorLog: discard,
		ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- dataSrv.Serve(proxy.Listener{Listener: dataLn}) }()
	go func() { serveErr <- adminSrv.Serve(adminLn) }()
	logger.Printf("listening on %s, admin on %s", dataLn.Addr(), adminLn.Addr())
	if ready != nil {
		ready <- [2]string{dataLn.Addr().String(), adminLn.Addr().String()}
	}

	cpCtx, cpCancel := context.WithCancel(context.Background())
	defer cpCancel()
	cpDone := make(chan struct{})
	if cp != nil {
		cp.SetMetrics(metrics)
		go func() { defer close(cpDone); cp.Run(cpCtx) }()
	} else {
		close(cpDone)
	}

	select {
	case err := <-serveErr:
		return fatal("serve: %v", err)
	case s := <-sig:
		logger.Printf("%v: draining for up to %v", s, o.grace)
	}
	cpCancel()
	ctx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := dataSrv.Shutdown(ctx); err != nil {
		// Requests still running at the deadline are cut.
		_ = dataSrv.Close()
	}
	_ = adminSrv.Close()
	<-cpDone
	return 0
}
