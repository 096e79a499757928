// Command bare is the smallest reverse proxy the Go standard library allows, for the
// benchmarks: a plain httputil.ReverseProxy to one upstream, with the same
// Transport pool settings as the router (docs/spec.md section 1: no global idle cap,
// 16384 idle connections per host, 60 s idle timeout) and FlushInterval -1. It lets
// `parity bench` tell the cost of the Go stack apart from the router's own logic.
//
// With --tls-cert and --tls-key the listener is TLS 1.2/1.3 with ALPN h2 and http/1.1
// (net/http's ServeTLS: its built-in HTTP/2 server, crypto/tls's session tickets), as the
// router's (docs/spec.md section 3, "TLS and HTTP/2 on the listener"), for the TLS and
// HTTP/2 benchmarks; X-Forwarded-Proto is then https.
//
// Usage: go-bare --listen ADDR --upstream HOST:PORT --threads N [--tls-cert FILE --tls-key FILE]
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"time"
)

func main() {
	fs := flag.NewFlagSet("go-bare", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "listener address, host:port")
	upstream := fs.String("upstream", "", "the one upstream, host:port (plain HTTP/1.1)")
	threads := fs.Int("threads", runtime.NumCPU(), "GOMAXPROCS, N >= 1")
	certFile := fs.String("tls-cert", "", "PEM certificate chain: with --tls-key the listener is TLS with HTTP/2 and HTTP/1.1")
	keyFile := fs.String("tls-key", "", "PEM private key of --tls-cert")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *upstream == "" || *threads < 1 {
		fmt.Fprintln(os.Stderr, "error: --upstream HOST:PORT is required and --threads must be >= 1")
		os.Exit(2)
	}
	if (*certFile == "") != (*keyFile == "") {
		fmt.Fprintln(os.Stderr, "error: --tls-cert and --tls-key go together: give both or neither")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*threads)

	target := &url.URL{Scheme: "http", Host: *upstream}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = 16384 // as the router (docs/spec.md section 1)
	transport.IdleConnTimeout = 60 * time.Second
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		Transport:     transport,
		FlushInterval: -1,
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: listen %s: %v\n", *listen, err)
		os.Exit(1)
	}
	if *certFile != "" {
		srv := &http.Server{Handler: proxy, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
		err = srv.ServeTLS(ln, *certFile, *keyFile)
	} else {
		err = http.Serve(ln, proxy)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: serve: %v\n", err)
		os.Exit(1)
	}
}
