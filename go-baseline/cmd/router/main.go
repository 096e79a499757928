// Command go-router is the Go stdlib baseline router of pingora-parity. It parses the
// command line, turns SIGTERM and SIGINT into a context cancellation and exits with the
// code server.Run returns; flags, exit codes and start-up order are docs/spec.md
// section 1 (see internal/server), shutdown is section 8.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"pingora-parity/go-baseline/internal/server"
)

func main() {
	flags, err := server.ParseFlags(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, server.ErrHelp):
		os.Exit(server.ExitOK)
	case err != nil:
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(server.ExitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := server.Run(ctx, flags, os.Stderr)
	stop()
	os.Exit(code)
}
