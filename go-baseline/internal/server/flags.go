package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"pingora-parity/go-baseline/internal/controlplane"
)

// Flags are the router's command-line flags (docs/spec.md section 1), parsed and checked.
type Flags struct {
	Listen       string // data-plane listener, host:port (port 0: any free port)
	AdminListen  string // admin listener, host:port
	ControlPlane string // ws:// or wss:// URL; "": run on the LKG file alone
	StateDir     string // where last-known-good.json is kept (created if missing)
	Threads      int    // GOMAXPROCS, >= 1

	ShutdownGrace    time.Duration // longest wait for in-flight requests at shutdown, >= 0
	ReconnectInitial time.Duration // first control-plane reconnect backoff, >= 1 ms
	ReconnectMax     time.Duration // backoff cap, >= ReconnectInitial
	CPPing           time.Duration // control-plane keepalive ping interval, >= 1 ms (section 6)
	CPPongTimeout    time.Duration // longest wait for an answer to a ping, >= 1 ms (section 6)
	AccessLog        bool          // one JSON line per request on stderr (section 8)

	// TLS on the data listener (section 3, "TLS and HTTP/2 on the listener"): TLSCert and
	// TLSKey are both set or both empty; ClientCA only with them.
	TLSCert  string // PEM certificate chain; "": plain HTTP/1.1 listener
	TLSKey   string // PEM private key of the certificate
	ClientCA string // PEM CA bundle client certificates must chain to; "": none asked
}

// TLS reports whether the data listener is TLS.
func (f Flags) TLS() bool { return f.TLSCert != "" }

// UsageError is a bad command line: the caller prints "error: <msg>" and exits 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// ErrHelp is returned by ParseFlags after it printed the usage for --help / -h (exit 0).
var ErrHelp = flag.ErrHelp

// ParseFlags parses args (without the program name). Flags take "--name value" or
// "--name=value". It returns ErrHelp after writing the usage to stdout, a UsageError for
// anything else that is wrong.
func ParseFlags(args []string, stdout io.Writer) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet("go-router", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.Listen, "listen", "127.0.0.1:8080", "data-plane listener, host:port: HTTP/1.1, or TLS with HTTP/2 and HTTP/1.1 with --tls-cert")
	fs.StringVar(&f.AdminListen, "admin-listen", "127.0.0.1:9090", "admin listener")
	fs.StringVar(&f.ControlPlane, "control-plane", "", "control-plane WebSocket URL (ws:// or wss://); none: run on the LKG file alone")
	fs.StringVar(&f.StateDir, "state-dir", "./state", "where last-known-good.json is kept (created if missing)")
	fs.IntVar(&f.Threads, "threads", runtime.NumCPU(), "worker threads (GOMAXPROCS), >= 1")
	grace := fs.Int64("shutdown-grace-ms", 5000, "longest wait for in-flight requests on SIGTERM")
	initial := fs.Int64("reconnect-initial-ms", 100, "first reconnect backoff")
	max := fs.Int64("reconnect-max-ms", 5000, "backoff cap")
	ping := fs.Int64("cp-ping-ms", controlplane.DefaultKeepalive.Ping.Milliseconds(), "control-plane keepalive: ping the control plane after this long without an answer")
	pongTimeout := fs.Int64("cp-pong-timeout-ms", controlplane.DefaultKeepalive.PongTimeout.Milliseconds(), "control-plane keepalive: session lost without an answer to a ping within this long")
	fs.BoolVar(&f.AccessLog, "access-log", false, "one JSON line per request on stderr")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "PEM certificate chain: with --tls-key the data listener is TLS (1.2, 1.3) with HTTP/2 and HTTP/1.1; none: plain HTTP/1.1")
	fs.StringVar(&f.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.ClientCA, "client-ca", "", "PEM CA bundle: client certificates are required and verified against it; none: no client certificate asked")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "usage: go-router [flags]   (flags take --name value or --name=value)")
			fs.VisitAll(func(fl *flag.Flag) {
				fmt.Fprintf(stdout, "  --%s\n    \t%s (default %q)\n", fl.Name, fl.Usage, fl.DefValue)
			})
			return Flags{}, ErrHelp
		}
		// The flag package names flags with one dash ("-bogus"); the contract's are "--".
		return Flags{}, UsageError{strings.Replace(err.Error(), ": -", ": --", 1)}
	}
	switch {
	case fs.NArg() > 0:
		return Flags{}, UsageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case f.Threads < 1:
		return Flags{}, UsageError{"--threads must be >= 1"}
	case *grace < 0:
		return Flags{}, UsageError{"--shutdown-grace-ms must be >= 0"}
	case *initial < 1 || *max < 1:
		return Flags{}, UsageError{"--reconnect-initial-ms and --reconnect-max-ms must be >= 1"}
	case *max < *initial:
		return Flags{}, UsageError{"--reconnect-max-ms must be >= --reconnect-initial-ms"}
	case *ping < 1 || *pongTimeout < 1:
		return Flags{}, UsageError{"--cp-ping-ms and --cp-pong-timeout-ms must be >= 1"}
	case f.StateDir == "":
		return Flags{}, UsageError{"--state-dir must not be empty"}
	case (f.TLSCert == "") != (f.TLSKey == ""):
		return Flags{}, UsageError{"--tls-cert and --tls-key go together: give both or neither"}
	case f.ClientCA != "" && f.TLSCert == "":
		return Flags{}, UsageError{"--client-ca requires --tls-cert and --tls-key"}
	}
	for _, l := range [...]struct{ name, addr string }{{"--listen", f.Listen}, {"--admin-listen", f.AdminListen}} {
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			return Flags{}, UsageError{fmt.Sprintf("%s %q: %v", l.name, l.addr, err)}
		}
		// A port outside 0..65535 is a bad flag (exit 2), as in the Pingora router, not
		// a bind failure (exit 1).
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return Flags{}, UsageError{fmt.Sprintf("%s %q: port must be a number from 0 to 65535", l.name, l.addr)}
		}
	}
	if f.ControlPlane != "" {
		u, err := url.Parse(f.ControlPlane)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			return Flags{}, UsageError{fmt.Sprintf("--control-plane %q: want a ws:// or wss:// URL", f.ControlPlane)}
		}
	}
	f.ShutdownGrace = time.Duration(*grace) * time.Millisecond
	f.ReconnectInitial = time.Duration(*initial) * time.Millisecond
	f.ReconnectMax = time.Duration(*max) * time.Millisecond
	f.CPPing = time.Duration(*ping) * time.Millisecond
	f.CPPongTimeout = time.Duration(*pongTimeout) * time.Millisecond
	return f, nil
}
